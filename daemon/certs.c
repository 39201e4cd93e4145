/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's identities: for each SPIFFE ID a fresh ECDSA P-256 key (sodium
 * memory), a CSR, a certificate from the agent, and TLS contexts built
 * from them. Renewal at half the remaining lifetime, exponential backoff
 * (0.5 s -> 150 s) on failure; the old contexts stay in use until the
 * certificate expires. Every renewal uses a new key. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft/grpc.h>
#include <weft/log.h>
#include <weft/promtext.h>
#include <weft/loop.h>
#include <weft/spiffe.h>
#include <weft/registry.h>
#include <weft/tls.h>
#include <weft/x509.h>

#include <weft/agentc.h>
#include "certs.h"

#define CERTS_BACKOFF_MIN_MS	500
#define CERTS_BACKOFF_MAX_MS	150000
#define CERTS_TD_MAX		16	/* accepted peer trust domains */

struct ident {
	struct certs *c;
	struct ident *next, **pprev;
	char id[SPIFFE_ID_MAX];
	unsigned users;			/* certs_get references: enrolled pods */
	struct ident_hold *holds;	/* tunnel keys; they do not keep it renewing */
	unsigned n_holds;
	bool is_node;
	bool inflight;			/* a CreateCertificate is out */
	bool dead;			/* released while in flight: the reply frees it */
	bool ready;
	struct x509_key *pending;	/* key of the CSR in flight */
	struct tls_ctx *client;
	struct tls_ctx *server;		/* node identity only */
	char *chain_pem, *key_pem;	/* what client and server were made from */
	size_t chain_len, key_len;
	struct loop_timer renew;	/* renewal, or retry after a failure */
	struct loop_timer expire;
	uint32_t backoff_ms;
	unsigned failures;		/* in a row */
	unsigned issued;		/* certificates received */
	char serial[64];
	char issuer[256];
	time_t not_before, not_after;
	int64_t renew_at_ms;		/* wall clock */
	char last_error[256];
};

struct certs {
	struct loop *loop;
	struct agentc *ac;
	char *bundle;
	size_t bundle_len;
	/* NULL-terminated: the configured ones, then the federated ones */
	char *tds[CERTS_TD_MAX + REG_BUNDLES_MAX + 1];
	size_t n_own_tds;		/* the configured ones; then the federated */
	struct tls_bundle *fed;		/* federated bundles (owned strings) */
	size_t n_fed;
	uint32_t ttl_s;
	certs_change_fn on_change;
	void *arg;
	struct ident *idents;
	struct ident *node;
};

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

static void ident_request(struct ident *id);

static void certs_fed_free(struct certs *c)
{
	for (size_t i = 0; i < c->n_fed; i++) {
		free((char *)c->fed[i].trust_domain);
		free((char *)c->fed[i].pem);
	}
	free(c->fed);
	c->fed = NULL;
	c->n_fed = 0;
}

/* Certificates are valid in wall-clock time. */
static int64_t certs_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ident_changed(struct ident *id)
{
	if (id->c->on_change)
		id->c->on_change(id->c->arg, id, id->ready);
}

static void ident_cred_free(struct ident *id)
{
	free(id->chain_pem);
	if (id->key_pem)
		x509_secret_free(id->key_pem, id->key_len);
	id->chain_pem = id->key_pem = NULL;
}

static void ident_destroy(struct ident *id)
{
	tls_ctx_free(id->client);
	tls_ctx_free(id->server);
	ident_cred_free(id);
	x509_key_free(id->pending);
	free(id);
}

/* Unlink from certs; the memory goes now, or with the reply in flight. */
static void ident_detach(struct ident *id)
{
	struct loop *l = id->c->loop;

	loop_timer_disarm(l, &id->renew);
	loop_timer_disarm(l, &id->expire);
	*id->pprev = id->next;
	if (id->next)
		id->next->pprev = id->pprev;
	if (id->c->node == id)
		id->c->node = NULL;
	id->c = NULL;
	if (id->inflight)
		id->dead = true;
	else
		ident_destroy(id);
}

static void ident_failed(struct ident *id, const char *why)
{
	snprintf(id->last_error, sizeof(id->last_error), "%s", why);
	id->failures++;
	log_warn("certificate for %s: %s; retrying in %u ms%s", id->id, why, id->backoff_ms,
		 id->ready ? " (the current one stays in use)" : "");
	loop_timer_arm(id->c->loop, &id->renew, id->backoff_ms);
	id->backoff_ms = id->backoff_ms * 2 > CERTS_BACKOFF_MAX_MS ? CERTS_BACKOFF_MAX_MS
								   : id->backoff_ms * 2;
	ident_changed(id);
}

/* The chain as one PEM string, leaf first, each block on its own lines. */
static char *certs_chain_join(char *const *chain, size_t n, size_t *len)
{
	size_t total = 1, o = 0;
	char *out;

	for (size_t i = 0; i < n; i++)
		total += strlen(chain[i]) + 1;
	out = malloc(total);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(chain[i]);

		memcpy(out + o, chain[i], l);
		o += l;
		if (l && chain[i][l - 1] != '\n')
			out[o++] = '\n';
	}
	out[o] = '\0';
	*len = o;
	return out;
}

static struct tls_ctx *certs_ctx_new(struct certs *c, enum tls_role role, const char *chain,
				     size_t chain_len, const char *key, size_t key_len,
				     char *err, size_t errlen)
{
	struct tls_ctx_opts o = {
		.role = role,
		.peer_auth = TLS_PEER_REQUIRE,
		.chain_pem = chain,
		.chain_len = chain_len,
		.key_pem = key,
		.key_len = key_len,
		.bundle_pem = c->bundle,
		.bundle_len = c->bundle_len,
		.trust_domains = (const char *const *)c->tds,
		.alpn = "h2",
		.federated = c->fed,
		.n_federated = c->n_fed,
	};

	return tls_ctx_new(&o, err, errlen);
}

/* The client context, and the server one for the node identity, from a
 * credential and the current bundles. 0, or -1 with err. */
static int ident_ctxs_new(struct ident *id, const char *chain, size_t chain_len,
			  const char *key, size_t key_len, struct tls_ctx **client,
			  struct tls_ctx **server, char *err, size_t errlen)
{
	*server = NULL;
	*client = certs_ctx_new(id->c, TLS_CLIENT, chain, chain_len, key, key_len, err, errlen);
	if (*client && id->is_node)
		*server = certs_ctx_new(id->c, TLS_SERVER, chain, chain_len, key, key_len, err,
					errlen);
	if (*client && (!id->is_node || *server))
		return 0;
	tls_ctx_free(*client);
	*client = NULL;
	return -1;
}

/* The bundles changed: the same certificate, new contexts, at once and
 * without asking the agent. New handshakes use them; live connections
 * are the caller's to check (certs_td_accepted). If the contexts cannot
 * be made, the identity asks for a new certificate. */
static void ident_rebuild(struct ident *id)
{
	struct tls_ctx *client, *server;
	char err[TLS_ERR_MAX];

	if (!id->chain_pem || ident_ctxs_new(id, id->chain_pem, id->chain_len, id->key_pem,
					     id->key_len, &client, &server, err, sizeof(err))) {
		if (id->chain_pem)
			log_warn("certificate for %s: cannot rebuild its TLS contexts with the new "
				 "bundles (%s); renewing", id->id, err);
		if (id->is_node || id->users)
			ident_request(id);
		return;
	}
	tls_ctx_free(id->client);
	tls_ctx_free(id->server);
	id->client = client;
	id->server = server;
}

/* Check the new certificate, build contexts, swap them in. 0 or -errno
 * with why. The key is the caller's. */
static int ident_install(struct ident *id, struct x509_key *key, char *const *chain, size_t n,
			 char *why, size_t whylen)
{
	struct certs *c = id->c;
	struct tls_ctx *client = NULL, *server = NULL;
	struct x509_summary *sum;
	char err[TLS_ERR_MAX];
	char *chain_pem = NULL, *key_pem = NULL;
	size_t pos = 0, derlen, chain_len, key_len = 0;
	uint8_t *der = NULL;
	int64_t now = certs_wall_ms(), start;
	int rc = -EINVAL;

	sum = malloc(sizeof(*sum));
	if (!sum) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (x509_pem_next(chain[0], strlen(chain[0]), &pos, &der, &derlen) < 0 ||
	    x509_cert_summary(der, derlen, sum) < 0) {
		snprintf(why, whylen, "the agent's certificate does not parse");
		goto out;
	}
	if (strcmp(sum->uri, id->id) || sum->n_uri != 1) {
		snprintf(why, whylen, "the agent issued %.200s, not %.200s", sum->uri, id->id);
		goto out;
	}
	if (sum->is_ca) {
		snprintf(why, whylen, "the agent issued a CA certificate");
		goto out;
	}
	if ((int64_t)sum->not_after * 1000 <= now) {
		snprintf(why, whylen, "the agent issued an expired certificate");
		goto out;
	}
	chain_pem = certs_chain_join(chain, n, &chain_len);
	rc = x509_key_to_pem(key, &key_pem, &key_len);
	if (!chain_pem || rc < 0) {
		snprintf(why, whylen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = -EINVAL;
	/* tls_ctx_new also checks that the key matches the leaf. */
	if (ident_ctxs_new(id, chain_pem, chain_len, key_pem, key_len, &client, &server, err,
			   sizeof(err))) {
		snprintf(why, whylen, "cannot use the certificate: %s", err);
		goto out;
	}
	if (id->is_node && agentc_set_identity(c->ac, chain_pem, chain_len, key_pem, key_len))
		log_warn("certificate for %s: the agent client keeps its old credential",
			 id->id);

	/* Connections made with the old contexts keep their references. */
	tls_ctx_free(id->client);
	tls_ctx_free(id->server);
	id->client = client;
	id->server = server;
	client = server = NULL;
	ident_cred_free(id);
	id->chain_pem = chain_pem;
	id->chain_len = chain_len;
	id->key_pem = key_pem;
	id->key_len = key_len;
	chain_pem = key_pem = NULL;
	id->ready = true;
	id->issued++;
	id->failures = 0;
	id->last_error[0] = '\0';
	id->backoff_ms = CERTS_BACKOFF_MIN_MS;
	id->not_before = sum->not_before;
	id->not_after = sum->not_after;
	snprintf(id->serial, sizeof(id->serial), "%s", sum->serial);
	snprintf(id->issuer, sizeof(id->issuer), "%s", sum->issuer);
	/* Half of the lifetime left at issue: the CA back-dates not_before
	 * for clock skew, which must not pull the renewal forward. */
	start = (int64_t)sum->not_before * 1000 > now ? (int64_t)sum->not_before * 1000 : now;
	id->renew_at_ms = start + ((int64_t)sum->not_after * 1000 - start) / 2;
	loop_timer_arm(c->loop, &id->renew, (uint64_t)(id->renew_at_ms - now));
	loop_timer_arm(c->loop, &id->expire, (uint64_t)((int64_t)sum->not_after * 1000 - now));
	rc = 0;
out:
	tls_ctx_free(client);
	tls_ctx_free(server);
	if (key_pem)
		x509_secret_free(key_pem, key_len);
	free(chain_pem);
	free(der);
	free(sum);
	return rc;
}

static void ident_on_cert(void *arg, enum grpc_status st, const char *msg, char *const *chain,
			  size_t n)
{
	struct ident *id = arg;
	struct x509_key *key = id->pending;
	char why[512];

	id->pending = NULL;
	id->inflight = false;
	if (id->dead) {
		x509_key_free(key);
		ident_destroy(id);
		return;
	}
	if (st != GRPC_OK) {
		x509_key_free(key);
		snprintf(why, sizeof(why), "agent refused: %s%s%s", grpc_status_name(st),
			 msg && *msg ? ": " : "", msg ? msg : "");
		ident_failed(id, why);
		return;
	}
	if (n == 0 || ident_install(id, key, chain, n, why, sizeof(why)) < 0) {
		x509_key_free(key);
		if (n == 0)
			snprintf(why, sizeof(why), "empty certificate chain");
		ident_failed(id, why);
		return;
	}
	x509_key_free(key);
	log_info("certificate for %s: serial %s, valid until %ld, renewal in %lld ms", id->id,
		 id->serial, (long)id->not_after,
		 (long long)(id->renew_at_ms - certs_wall_ms()));
	ident_changed(id);
}

static void ident_request(struct ident *id)
{
	struct certs *c = id->c;
	struct x509_key *key;
	char *csr = NULL;
	size_t csr_len;
	int rc;

	if (id->inflight)
		return;
	key = x509_key_generate();
	if (!key) {
		ident_failed(id, "cannot generate a key");
		return;
	}
	rc = x509_csr_make(key, id->id, &csr, &csr_len);
	if (rc < 0) {
		x509_key_free(key);
		ident_failed(id, "cannot make the CSR");
		return;
	}
	/* The node asks for itself with its token or node SVID; workload
	 * identities are asked for on the pods' behalf. */
	rc = agentc_create_cert(c->ac, csr, id->is_node ? NULL : id->id, c->ttl_s,
				ident_on_cert, id);
	free(csr);
	if (rc < 0) {
		char why[128];

		x509_key_free(key);
		snprintf(why, sizeof(why), "cannot reach the agent: %s", strerror(-rc));
		ident_failed(id, why);
		return;
	}
	id->pending = key;
	id->inflight = true;
}

static void ident_on_renew(struct loop_timer *t)
{
	struct ident *id = container_of(t, struct ident, renew);

	/* Only held (by tunnel keys), no pod left: the agent would refuse it,
	 * and nobody needs a new one. */
	if (!id->is_node && !id->users)
		return;
	ident_request(id);
}

/* A pod uses the identity again: renew when due (or now, without a valid
 * certificate). */
static void ident_resume(struct ident *id)
{
	int64_t now = certs_wall_ms();

	if (id->inflight)
		return;
	loop_timer_arm(id->c->loop, &id->renew, id->ready && id->renew_at_ms > now ?
		       (uint64_t)(id->renew_at_ms - now) : 0);
}

/* The last pod let go: stop renewing, tell the holders (they schedule
 * their release), free it if nobody holds it. */
static void ident_unused(struct ident *id)
{
	struct ident_hold *h, *next;

	if (!id->n_holds) {
		ident_detach(id);
		return;
	}
	loop_timer_disarm(id->c->loop, &id->renew);
	log_info("identity %s: no enrolled pod uses it any more; renewal stopped", id->id);
	for (h = id->holds; h; h = next) {
		next = h->next;
		h->on_unused(h);
	}
}

static void ident_on_expire(struct loop_timer *t)
{
	struct ident *id = container_of(t, struct ident, expire);
	int64_t now = certs_wall_ms();

	if ((int64_t)id->not_after * 1000 > now) {
		/* Wall and monotonic clocks drifted apart: look again then. */
		loop_timer_arm(id->c->loop, &id->expire,
			       (uint64_t)((int64_t)id->not_after * 1000 - now));
		return;
	}
	if (!id->ready)
		return;
	log_error("certificate for %s expired (serial %s) before it could be renewed%s%s",
		  id->id, id->serial, id->last_error[0] ? ": " : "", id->last_error);
	id->ready = false;
	tls_ctx_free(id->client);
	tls_ctx_free(id->server);
	id->client = id->server = NULL;
	ident_changed(id);
}

static struct ident *ident_new(struct certs *c, const char *spiffe_id, bool is_node)
{
	struct ident *id = calloc(1, sizeof(*id));

	if (!id)
		return NULL;
	id->c = c;
	id->users = 1;
	id->is_node = is_node;
	id->backoff_ms = CERTS_BACKOFF_MIN_MS;
	id->renew.cb = ident_on_renew;
	id->expire.cb = ident_on_expire;
	snprintf(id->id, sizeof(id->id), "%s", spiffe_id);
	id->next = c->idents;
	if (id->next)
		id->next->pprev = &id->next;
	id->pprev = &c->idents;
	c->idents = id;
	/* Ask from the loop, so no callback runs inside certs_new/certs_get. */
	loop_timer_arm(c->loop, &id->renew, 0);
	return id;
}

/* --- certs ----------------------------------------------------------------------------- */

struct certs *certs_new(struct loop *l, struct agentc *ac, const struct certs_opts *o,
			certs_change_fn on_change, void *arg)
{
	char node_id[SPIFFE_ID_MAX];
	struct certs *c;
	size_t i = 0;

	if (!l || !ac || !o || !o->trust_domain || !o->node || !o->bundle_pem ||
	    (o->gateway ? spiffe_gateway_format : spiffe_node_format)(node_id, sizeof(node_id),
								      o->trust_domain, o->node) < 0) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail_nomem;
	c->loop = l;
	c->ac = ac;
	c->ttl_s = o->ttl_s;
	c->on_change = on_change;
	c->arg = arg;
	c->bundle_len = o->bundle_len ? o->bundle_len : strlen(o->bundle_pem);
	c->bundle = malloc(c->bundle_len + 1);
	if (!c->bundle)
		goto fail_free;
	memcpy(c->bundle, o->bundle_pem, c->bundle_len);
	c->bundle[c->bundle_len] = '\0';
	if (o->trust_domains) {
		for (; o->trust_domains[i] && i < CERTS_TD_MAX; i++) {
			c->tds[i] = strdup(o->trust_domains[i]);
			if (!c->tds[i])
				goto fail_free;
		}
	}
	if (i == 0) {
		c->tds[0] = strdup(o->trust_domain);
		if (!c->tds[0])
			goto fail_free;
		i = 1;
	}
	c->n_own_tds = i;
	c->node = ident_new(c, node_id, true);
	if (!c->node)
		goto fail_free;
	return c;

fail_free:
	certs_free(c);
fail_nomem:
	errno = ENOMEM;
	return NULL;
}

void certs_free(struct certs *c)
{
	if (!c)
		return;
	while (c->idents)
		ident_detach(c->idents);
	for (size_t i = 0; c->tds[i]; i++)
		free(c->tds[i]);
	certs_fed_free(c);
	free(c->bundle);
	free(c);
}

/* Federation changed (the registry's bundles): the accepted trust domains
 * are the configured ones and the federated ones, each federated domain
 * verified against its bundle alone (tls.h). Every identity with a
 * certificate gets new contexts from it at once (ident_rebuild). 1 when
 * something changed, 0 when not, -ENOMEM. */
int certs_set_federation(struct certs *c, const struct reg_bundle *b, size_t n)
{
	struct tls_bundle *fed = NULL;
	size_t k, i;

	if (n == c->n_fed) {
		for (i = 0; i < n; i++)
			if (strcmp(b[i].trust_domain, c->fed[i].trust_domain) ||
			    strcmp(b[i].pem, c->fed[i].pem))
				break;
		if (i == n)
			return 0;
	}
	if (n && !(fed = calloc(n, sizeof(*fed))))
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		fed[i].trust_domain = strdup(b[i].trust_domain);
		fed[i].pem = strdup(b[i].pem);
		fed[i].len = strlen(b[i].pem);
		if (!fed[i].trust_domain || !fed[i].pem) {
			for (k = 0; k <= i; k++) {
				free((char *)fed[k].trust_domain);
				free((char *)fed[k].pem);
			}
			free(fed);
			return -ENOMEM;	/* the old federation stays */
		}
	}
	for (k = c->n_own_tds; c->tds[k]; k++) {
		free(c->tds[k]);
		c->tds[k] = NULL;
	}
	certs_fed_free(c);
	c->fed = fed;
	c->n_fed = n;
	for (i = 0, k = c->n_own_tds; i < n && k < CERTS_TD_MAX + REG_BUNDLES_MAX; i++) {
		bool have = false;

		for (size_t j = 0; j < c->n_own_tds; j++)
			have |= !strcmp(c->tds[j], fed[i].trust_domain);
		if (!have && (c->tds[k] = strdup(fed[i].trust_domain)))
			k++;
	}
	/* One not ready yet gets the new bundles with its first certificate. */
	for (struct ident *id = c->idents; id; id = id->next)
		if (id->ready)
			ident_rebuild(id);
	return 1;
}

int certs_td_accepted(const struct certs *c, const char *td, size_t len)
{
	for (size_t i = 0; c->tds[i]; i++)
		if (strlen(c->tds[i]) == len && !memcmp(c->tds[i], td, len))
			return 1;
	return 0;
}

struct ident *certs_node(struct certs *c)
{
	return c ? c->node : NULL;
}

struct ident *certs_get(struct certs *c, const char *spiffe_id)
{
	struct spiffe_id sid;
	const char *why;
	char ns[128], sa[128];
	struct ident *id;

	if (!c || !spiffe_id ||
	    spiffe_id_parse(spiffe_id, strlen(spiffe_id), &sid, &why) < 0 ||
	    spiffe_id_workload(&sid, ns, sizeof(ns), sa, sizeof(sa)) < 0) {
		errno = EINVAL;
		return NULL;
	}
	for (id = c->idents; id; id = id->next) {
		if (!id->is_node && !strcmp(id->id, spiffe_id)) {
			if (id->users++ == 0)
				ident_resume(id);
			return id;
		}
	}
	id = ident_new(c, spiffe_id, false);
	if (!id)
		errno = ENOMEM;
	return id;
}

void certs_put(struct ident *id)
{
	if (!id || !id->c || id->is_node || !id->users || --id->users > 0)
		return;
	ident_unused(id);
}

void ident_hold(struct ident *id, struct ident_hold *h, ident_unused_fn on_unused)
{
	h->id = id;
	h->on_unused = on_unused;
	h->next = NULL;
	if (!id || id->is_node)
		return;
	h->next = id->holds;
	id->holds = h;
	id->n_holds++;
}

void ident_unhold(struct ident_hold *h)
{
	struct ident *id = h->id;

	h->id = NULL;
	if (!id || id->is_node)
		return;
	for (struct ident_hold **pp = &id->holds; *pp; pp = &(*pp)->next) {
		if (*pp == h) {
			*pp = h->next;
			id->n_holds--;
			break;
		}
	}
	if (!id->n_holds && !id->users && id->c)
		ident_detach(id);
}

int ident_in_use(const struct ident *id)
{
	return id && (id->is_node || id->users > 0);
}

const char *ident_id(const struct ident *id)
{
	return id->id;
}

int ident_ready(const struct ident *id)
{
	return id && id->ready;
}

const char *ident_last_error(const struct ident *id)
{
	return id->last_error;
}

time_t ident_not_after(const struct ident *id)
{
	return id->ready ? id->not_after : 0;
}

struct tls_ctx *ident_client_ctx(const struct ident *id)
{
	return id && id->ready ? id->client : NULL;
}

struct tls_ctx *ident_server_ctx(const struct ident *id)
{
	return id && id->ready ? id->server : NULL;
}

int ident_describe(const struct ident *id, char *buf, size_t len)
{
	char until[32] = "-", renew[32] = "-";
	struct tm tm;
	time_t t;
	int n;

	if (id->not_after) {
		t = id->not_after;
		strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
		t = (time_t)(id->renew_at_ms / 1000);
		strftime(renew, sizeof(renew), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	}
	n = snprintf(buf, len, "%s %s serial=%s not_after=%s renew_at=%s issued=%u failures=%u%s%s",
		     id->id, id->ready ? "ready" : (id->issued ? "expired" : "pending"),
		     id->serial[0] ? id->serial : "-", until, renew, id->issued, id->failures,
		     id->last_error[0] ? " last_error=" : "", id->last_error);
	if (n < 0)
		return -EINVAL;
	return (size_t)n < len ? n : -ENOSPC;
}

static void certs_time(time_t t, char out[32])
{
	struct tm tm;

	if (!t) {
		strcpy(out, "");
		return;
	}
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

size_t certs_json(const struct certs *c, char *buf, size_t len)
{
	size_t o = 0;
	int n;

	n = snprintf(buf, len, "[");
	o += n > 0 ? (size_t)n : 0;
	for (const struct ident *id = c->idents; id; id = id->next) {
		char nb[32], na[32], ra[32];

		certs_time(id->not_before, nb);
		certs_time(id->not_after, na);
		certs_time((time_t)(id->renew_at_ms / 1000), ra);
		/* The strings are SPIFFE IDs, hex serials, our own errors and a
		 * DN made by our CA: no quotes to escape, but be safe anyway. */
		n = snprintf(buf + o, o < len ? len - o : 0,
			     "%s{\"identity\":\"%s\",\"state\":\"%s\",\"serial\":\"%s\","
			     "\"issuer\":\"%s\",\"key\":\"ECDSA P-256\",\"not_before\":\"%s\","
			     "\"not_after\":\"%s\",\"renew_at\":\"%s\",\"issued\":%u,"
			     "\"failures\":%u,\"last_error\":\"%s\",\"pods\":%u,\"holds\":%u,"
			     "\"renewing\":%s}",
			     id == c->idents ? "" : ",", id->id,
			     id->ready ? "ready" : id->issued ? "expired" : "pending", id->serial,
			     strchr(id->issuer, '"') ? "?" : id->issuer, nb, na,
			     id->renew_at_ms ? ra : "", id->issued, id->failures,
			     strchr(id->last_error, '"') ? "(see log)" : id->last_error,
			     id->users, id->n_holds, ident_in_use(id) ? "true" : "false");
		o += n > 0 ? (size_t)n : 0;
	}
	n = snprintf(buf + o, o < len ? len - o : 0, "]");
	o += n > 0 ? (size_t)n : 0;
	return o < len ? o : len;
}

void certs_metrics(const struct certs *c, struct promtext *t)
{
	static const char *const k[] = { "identity" };

	promtext_family(t, "weft_certificate_expiry_timestamp_seconds", "gauge",
			"When each identity's certificate expires (unix time).");
	for (const struct ident *id = c->idents; id; id = id->next) {
		const char *v[] = { id->id };

		if (id->issued)
			promtext_sample_u64(t, "weft_certificate_expiry_timestamp_seconds", k, v,
					    1, (uint64_t)id->not_after);
	}
	promtext_family(t, "weft_certificate_renewals_failed_total", "counter",
			"Certificate requests to the agent that failed, per identity.");
	for (const struct ident *id = c->idents; id; id = id->next) {
		const char *v[] = { id->id };

		promtext_sample_u64(t, "weft_certificate_renewals_failed_total", k, v, 1,
				    id->failures);
	}
}
