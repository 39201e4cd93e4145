/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC handlers of weft-agent. Every call is authenticated as a node
 * (client certificate first, then bootstrap token) when its HEADERS arrive,
 * before its body is read, and charged to that node's quota.
 * CreateCertificate checks the CSR, authorizes the identity against the
 * registry and signs. Watch streams the registry: a snapshot, then a delta
 * per change. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <weft/grpc.h>
#include <weft/log.h>
#include <weft/spiffe.h>

#include "ca.pb-c.h"
#include "registry.pb-c.h"

#include "agent.h"
#include "ca.h"
#include "config.h"
#include "csr.h"
#include <weft/registry.h>
#include <weft/regproto.h>
#include "regwatch.h"
#include "service.h"
#include "tokens.h"

#define SERVICE_META_DEPTH 16
#define SERVICE_WATCH_BACKLOG (8u << 20)	/* bytes queued to one watcher */
/* What one node may hold across all its connections: concurrent calls
 * (a weftd renewing every identity of a full node at once stays well
 * under), request bytes buffered (four messages at the 4 MiB cap; a CSR
 * request is about 1 KiB) and Watch streams (each may queue
 * SERVICE_WATCH_BACKLOG; one per weftd, more only while it reconnects). */
#define SERVICE_NODE_CALLS	256
#define SERVICE_NODE_BYTES	(16u << 20)
#define SERVICE_NODE_WATCHES	4
/* Distinct nodes with a quota entry: one per node that ever authenticated
 * (token or node certificate), so a cap far above any cluster's size only
 * guards against a bug. */
#define SERVICE_NODES_MAX	65536

/* A node's quota, kept for the life of the service: calls of sessions
 * being freed still count down into it. */
struct node_quota {
	struct node_quota *next;
	struct grpc_quota q;
	unsigned watches;
	char node[GRPC_PRINCIPAL_MAX];
};

struct watcher {
	struct watcher *next, **pprev;
	int export;			/* a federated agent: sees service_export */
	struct service *svc;
	struct grpc_call *call;
	struct agent_conn *ac;
	struct node_quota *nq;
	char node[GRPC_PRINCIPAL_MAX];	/* "@<trust domain>" for an export */
};

struct service {
	struct agent *agent;
	struct grpc_method methods[SERVICE_METHODS];
	struct grpc_server grpc;
	struct watcher *watchers;
	struct node_quota *quotas;
	size_t n_quotas;
	struct service_stats stats;
};

static const char *const service_method_names[SERVICE_METHODS] = {
	[SERVICE_CERT] = "CreateCertificate",
	[SERVICE_WATCH] = "Registry/Watch",
};

/* Answer a call with an error, count it by reason and log why, once, in
 * words. */
static void service_refuse(struct service *svc, struct grpc_call *call, enum service_method m,
			   enum service_refusal r, enum grpc_status st, const char *why)
{
	struct agent_conn *ac = grpc_call_conn_ctx(call);

	svc->stats.refused[m][r]++;
	log_warn("%s from %s refused: %s: %s", service_method_names[m], ac->peer,
		 grpc_status_name(st), why);
	grpc_call_finish(call, st, why);
}

/* 1 if td is one we federate with now (its bundle is in the registry). */
static int service_federated(const struct registry *r, const char *td)
{
	for (size_t i = 0; i < r->n_bundles; i++)
		if (!strcmp(r->bundles[i].trust_domain, td))
			return 1;
	return 0;
}

/* export_to: empty lets every federated domain's agent watch the export. */
static int service_exported_to(const struct agent_config *cfg, const char *td)
{
	for (size_t i = 0; i < cfg->export_to.n; i++)
		if (!strcmp(cfg->export_to.v[i], td))
			return 1;
	return cfg->export_to.n == 0;
}

/* Identify the calling node: its client certificate (a node or gateway
 * SVID of our trust domain; a gateway is the node of its name; the agent
 * of a federated trust domain T, whose certificate TLS verified against
 * T's bundle only, is "@T"), else its bootstrap token. 0 with node
 * filled, or -EACCES with why. */
static int service_caller(struct service *svc, struct grpc_call *call,
			  char *node, size_t len, char *why, size_t whylen)
{
	struct agent_conn *ac = grpc_call_conn_ctx(call);
	const char *auth, *tok, *name;
	struct spiffe_id id;
	const char *bad;

	if (ac->peer_id[0]) {
		int parsed = !spiffe_id_parse(ac->peer_id, strlen(ac->peer_id), &id, &bad);

		if (parsed && !strcmp(id.td, svc->agent->cfg->trust_domain) &&
		    (!spiffe_id_node(&id, node, len) || !spiffe_id_gateway(&id, node, len)))
			return 0;
		if (parsed && strcmp(id.td, svc->agent->cfg->trust_domain) &&
		    !strcmp(id.path, "/weft/agent") &&
		    service_federated(regwatch_current(svc->agent->reg, NULL), id.td)) {
			if (!service_exported_to(svc->agent->cfg, id.td)) {
				snprintf(why, whylen, "the agent of %.160s may not watch this "
					 "registry (not in export_to)", id.td);
				return -EACCES;
			}
			if ((size_t)snprintf(node, len, "@%s", id.td) < len)
				return 0;
		}
		snprintf(why, whylen, "client certificate %s is not a node or gateway identity of %s",
			 ac->peer_id, svc->agent->cfg->trust_domain);
		if (!grpc_call_header(call, "authorization"))
			return -EACCES;
	}
	auth = grpc_call_header(call, "authorization");
	if (!auth) {
		snprintf(why, whylen, "no credential: present a node certificate or "
			 "\"authorization: Bearer <node token>\"");
		return -EACCES;
	}
	if (strncasecmp(auth, "Bearer ", 7)) {
		snprintf(why, whylen, "authorization header is not a Bearer token");
		return -EACCES;
	}
	tok = auth + 7;
	name = tokens_lookup(svc->agent->tokens, tok, strlen(tok));
	if (!name) {
		snprintf(why, whylen, "bearer token is not valid for any node");
		return -EACCES;
	}
	snprintf(node, len, "%s", name);
	return 0;
}

static struct node_quota *service_quota(struct service *svc, const char *node)
{
	struct node_quota *nq;

	for (nq = svc->quotas; nq; nq = nq->next)
		if (!strcmp(nq->node, node))
			return nq;
	if (svc->n_quotas >= SERVICE_NODES_MAX || !(nq = calloc(1, sizeof(*nq))))
		return NULL;
	snprintf(nq->node, sizeof(nq->node), "%s", node);
	nq->q.bytes_max = SERVICE_NODE_BYTES;
	nq->next = svc->quotas;
	svc->quotas = nq;
	svc->n_quotas++;
	return nq;
}

/* Which of our methods a call is for; grpc.c refuses unknown paths before
 * the auth hook runs. */
static enum service_method service_method_of(const struct service *svc,
					     const struct grpc_call *call)
{
	const char *path = grpc_call_path(call);

	return path && !strcmp(path, svc->methods[SERVICE_WATCH].path) ? SERVICE_WATCH
									: SERVICE_CERT;
}

/* grpc.c's auth hook: the caller is a node, and that node has room for one
 * more call. Runs on the HEADERS, before any of the body is read. */
static enum grpc_status service_auth(struct grpc_call *call, void *arg, struct grpc_auth *out)
{
	struct service *svc = arg;
	struct agent_conn *ac = grpc_call_conn_ctx(call);
	enum service_method m = service_method_of(svc, call);
	enum service_refusal r = SERVICE_REFUSED_QUOTA;
	struct node_quota *nq;

	if (service_caller(svc, call, out->who, sizeof(out->who), out->why, sizeof(out->why))) {
		svc->stats.refused[m][SERVICE_REFUSED_UNAUTHENTICATED]++;
		log_warn("%s from %s refused: UNAUTHENTICATED: %s", service_method_names[m],
			 ac->peer, out->why);
		return GRPC_UNAUTHENTICATED;
	}
	if (out->who[0] == '@' && m != SERVICE_WATCH) {
		snprintf(out->why, sizeof(out->why), "the agent of %s may only watch this "
			 "network's registry export", out->who + 1);
		svc->stats.refused[m][SERVICE_REFUSED_NOT_AUTHORIZED]++;
		log_warn("%s from %s refused: PERMISSION_DENIED: %s", service_method_names[m],
			 ac->peer, out->why);
		return GRPC_PERMISSION_DENIED;
	}
	nq = service_quota(svc, out->who);
	if (!nq) {
		snprintf(out->why, sizeof(out->why), "out of memory");
		r = SERVICE_REFUSED_UNAVAILABLE;
	} else if (nq->q.calls >= SERVICE_NODE_CALLS) {
		snprintf(out->why, sizeof(out->why), "node %s has %u calls open (at most %u)",
			 out->who, nq->q.calls, SERVICE_NODE_CALLS);
	} else {
		out->quota = &nq->q;
		server_conn_authenticated(ac);
		return GRPC_OK;
	}
	svc->stats.refused[m][r]++;
	log_warn("%s from %s refused: RESOURCE_EXHAUSTED: %s", service_method_names[m], ac->peer,
		 out->why);
	return GRPC_RESOURCE_EXHAUSTED;
}

/* --- metadata depth guard --------------------------------------------------
 * protobuf-c unpacks nested messages recursively with no depth limit, so a
 * 4 MiB request of nested Struct/ListValue would exhaust the stack. Walk
 * the wire format along google.protobuf.Struct's schema first. */

enum pb_kind { PB_REQUEST, PB_STRUCT, PB_ENTRY, PB_VALUE, PB_LIST };

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -EINVAL;
}

static int pb_walk(const uint8_t *p, const uint8_t *end, enum pb_kind kind, unsigned depth)
{
	uint64_t key, v;

	if (depth == 0)
		return -E2BIG;
	while (p < end) {
		if (pb_varint(&p, end, &key))
			return -EINVAL;
		switch (key & 7) {
		case 0:
			if (pb_varint(&p, end, &v))
				return -EINVAL;
			break;
		case 1:
			if (end - p < 8)
				return -EINVAL;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return -EINVAL;
			p += 4;
			break;
		case 2: {
			enum pb_kind sub = PB_REQUEST;
			int nested = 0;
			if (pb_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return -EINVAL;
			switch (kind) {
			case PB_REQUEST: nested = key >> 3 == 4; sub = PB_STRUCT; break;
			case PB_STRUCT:  nested = key >> 3 == 1; sub = PB_ENTRY; break;
			case PB_ENTRY:   nested = key >> 3 == 2; sub = PB_VALUE; break;
			case PB_VALUE:   nested = key >> 3 == 5 || key >> 3 == 6;
					 sub = key >> 3 == 5 ? PB_STRUCT : PB_LIST; break;
			case PB_LIST:    nested = key >> 3 == 1; sub = PB_VALUE; break;
			}
			if (nested) {
				int err = pb_walk(p, p + v, sub, depth - 1);
				if (err)
					return err;
			}
			p += v;
			break;
		}
		default:
			return -EINVAL;
		}
	}
	return 0;
}

int service_request_depth_ok(const uint8_t *msg, size_t len, unsigned max_depth)
{
	return pb_walk(msg, msg + len, PB_REQUEST, max_depth) == 0;
}

static const char *service_impersonated(const Istio__V1__Auth__IstioCertificateRequest *req,
					const char **why)
{
	const Google__Protobuf__Struct *md = req->metadata;

	*why = NULL;
	if (!md)
		return NULL;
	for (size_t i = 0; i < md->n_fields; i++) {
		const Google__Protobuf__Struct__FieldsEntry *e = md->fields[i];
		if (!e->key || strcmp(e->key, "ImpersonatedIdentity"))
			continue;
		if (!e->value || e->value->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE) {
			*why = "metadata ImpersonatedIdentity must be a string";
			return NULL;
		}
		return e->value->string_value;
	}
	return NULL;
}

/* May node have identity want? 0, or -EPERM/-EINVAL with why. */
static int service_authorize(struct service *svc, const char *node, const char *want,
			     int impersonating, char *why, size_t whylen)
{
	const char *td = svc->agent->cfg->trust_domain;
	const struct registry *reg = regwatch_current(svc->agent->reg, NULL);
	char ns[128], sa[128], wnode[128];
	struct spiffe_id id;
	const char *bad;

	if (spiffe_id_parse(want, strlen(want), &id, &bad)) {
		snprintf(why, whylen, "requested identity is not a SPIFFE ID: %s", bad);
		return -EINVAL;
	}
	if (strcmp(id.td, td)) {
		snprintf(why, whylen, "trust domain %s is not this agent's (%s)", id.td, td);
		return -EPERM;
	}
	if (!spiffe_id_node(&id, wnode, sizeof(wnode))) {
		if (strcmp(wnode, node)) {
			snprintf(why, whylen, "node %s may not have the identity of node %s",
				 node, wnode);
			return -EPERM;
		}
		return 0;
	}
	if (!spiffe_id_gateway(&id, wnode, sizeof(wnode))) {
		const struct reg_node *n = registry_node(reg, node);

		if (strcmp(wnode, node)) {
			snprintf(why, whylen, "node %s may not have the identity of gateway %s",
				 node, wnode);
			return -EPERM;
		}
		if (!n || !n->gateway_address) {
			snprintf(why, whylen, "node %s is not a gateway in the registry (no "
				 "gateway_address)", node);
			return -EPERM;
		}
		return 0;
	}
	if (spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa))) {
		snprintf(why, whylen, "%s is neither a workload (/ns/<ns>/sa/<sa>) nor a node "
			 "or gateway identity", want);
		return -EPERM;
	}
	if (!impersonating) {
		snprintf(why, whylen, "node %s asked for workload identity %s without "
			 "ImpersonatedIdentity", node, want);
		return -EPERM;
	}
	if (!registry_node_has_identity(reg, node, ns, sa)) {
		snprintf(why, whylen, "the registry has no workload with namespace %s and "
			 "service account %s on node %s", ns, sa, node);
		return -EPERM;
	}
	return 0;
}

static void service_create_certificate(struct grpc_call *call, const uint8_t *msg,
				       size_t len, void *arg)
{
	struct service *svc = arg;
	struct agent *a = svc->agent;
	Istio__V1__Auth__IstioCertificateRequest *req;
	Istio__V1__Auth__IstioCertificateResponse resp =
		ISTIO__V1__AUTH__ISTIO_CERTIFICATE_RESPONSE__INIT;
	const char *node = grpc_call_principal(call);
	char why[1024], node_id[SPIFFE_ID_MAX];
	const char *imp, *want, *bad;
	struct csr csr = { 0 };
	char **chain = NULL;
	size_t n_chain = 0;
	uint32_t ttl;
	uint8_t *out;
	int err;

	if (!service_request_depth_ok(msg, len, SERVICE_META_DEPTH))
		return service_refuse(svc, call, SERVICE_CERT, SERVICE_REFUSED_MALFORMED,
				      GRPC_INVALID_ARGUMENT,
				      "malformed request (bad protobuf or metadata nested too deep)");
	req = istio__v1__auth__istio_certificate_request__unpack(NULL, len, msg);
	if (!req)
		return service_refuse(svc, call, SERVICE_CERT, SERVICE_REFUSED_MALFORMED,
				      GRPC_INVALID_ARGUMENT, "malformed IstioCertificateRequest");
	imp = service_impersonated(req, &bad);
	if (bad) {
		service_refuse(svc, call, SERVICE_CERT, SERVICE_REFUSED_MALFORMED, GRPC_INVALID_ARGUMENT, bad);
		goto out_req;
	}
	if (csr_parse(req->csr, strlen(req->csr), &csr, why, sizeof(why))) {
		char m[1100];
		snprintf(m, sizeof(m), "bad CSR: %s", why);
		service_refuse(svc, call, SERVICE_CERT, SERVICE_REFUSED_BAD_CSR, GRPC_INVALID_ARGUMENT, m);
		goto out_req;
	}
	spiffe_node_format(node_id, sizeof(node_id), a->cfg->trust_domain, node);
	want = imp && imp[0] ? imp : node_id;
	/* A gateway asks for its own identity as a node asks for its own:
	 * service_authorize checks the registry names it a gateway. */
	if (!(imp && imp[0])) {
		char gw[SPIFFE_ID_MAX];

		if (spiffe_gateway_format(gw, sizeof(gw), a->cfg->trust_domain, node) > 0 &&
		    !strcmp(csr.uri, gw))
			want = csr.uri;
	}
	err = service_authorize(svc, node, want, imp && imp[0], why, sizeof(why));
	if (err) {
		service_refuse(svc, call, SERVICE_CERT, SERVICE_REFUSED_NOT_AUTHORIZED,
			       err == -EINVAL ? GRPC_INVALID_ARGUMENT : GRPC_PERMISSION_DENIED, why);
		goto out_csr;
	}
	if (strcmp(csr.uri, want)) {
		char m[SPIFFE_ID_MAX * 2 + 64];
		snprintf(m, sizeof(m), "CSR is for %s but the request is for %s", csr.uri, want);
		service_refuse(svc, call, SERVICE_CERT, SERVICE_REFUSED_CSR_MISMATCH, GRPC_PERMISSION_DENIED, m);
		goto out_csr;
	}
	ttl = a->cfg->ttl_default_s;
	if (req->validity_duration > 0)
		ttl = req->validity_duration > a->cfg->ttl_max_s ? a->cfg->ttl_max_s
							    : (uint32_t)req->validity_duration;
	err = ca_sign(a->ca, csr.pubkey_der, csr.pubkey_len, want, NULL, 0, ttl, &chain, &n_chain);
	if (err) {
		snprintf(why, sizeof(why), "signing failed: %s", strerror(-err));
		service_refuse(svc, call, SERVICE_CERT, SERVICE_REFUSED_UNAVAILABLE, GRPC_INTERNAL, why);
		goto out_csr;
	}
	resp.cert_chain = chain;
	resp.n_cert_chain = n_chain;
	len = istio__v1__auth__istio_certificate_response__get_packed_size(&resp);
	out = malloc(len ? len : 1);
	if (!out) {
		service_refuse(svc, call, SERVICE_CERT, SERVICE_REFUSED_UNAVAILABLE, GRPC_RESOURCE_EXHAUSTED,
			       "out of memory");
		goto out_chain;
	}
	istio__v1__auth__istio_certificate_response__pack(&resp, out);
	svc->stats.certs_issued++;
	log_info("issued %s to node %s (%s) for %us", want, node,
		 ((struct agent_conn *)grpc_call_conn_ctx(call))->peer, ttl);
	if (grpc_call_send(call, out, len))
		log_warn("CreateCertificate: caller went away before the answer");
	grpc_call_finish(call, GRPC_OK, NULL);
	free(out);
out_chain:
	ca_chain_free(chain, n_chain);
out_csr:
	csr_deinit(&csr);
out_req:
	istio__v1__auth__istio_certificate_request__free_unpacked(req, NULL);
}

static void watcher_remove(struct watcher *w)
{
	w->nq->watches--;
	w->svc->stats.watches--;
	*w->pprev = w->next;
	if (w->next)
		w->next->pprev = w->pprev;
	free(w);
}

static void watcher_on_cancel(struct grpc_call *call, void *arg)
{
	struct watcher *w = arg;

	(void)call;
	log_info("registry watch by node %s (%s) ended", w->node, w->ac->peer);
	watcher_remove(w);
}

/* What a federated agent sees of r: this network's nodes, workloads and
 * services; never its policies, federated bundles or remote networks. A
 * shallow view, valid while r is. */
static struct registry service_export(const struct registry *r)
{
	struct registry x = *r;

	x.bundles = NULL;
	x.n_bundles = 0;
	x.remotes = NULL;
	x.policies = NULL;
	x.n_policies = 0;
	return x;
}

static void service_watch(struct grpc_call *call, const uint8_t *msg, size_t len, void *arg)
{
	struct service *svc = arg;
	Weft__Registry__V1__WatchRequest *req;
	const struct registry *reg;
	const char *node = grpc_call_principal(call);
	struct node_quota *nq;
	struct watcher *w;
	char why[128];
	uint64_t version;
	uint8_t *snap;
	size_t snaplen;

	req = weft__registry__v1__watch_request__unpack(NULL, len, msg);
	if (!req)
		return service_refuse(svc, call, SERVICE_WATCH, SERVICE_REFUSED_MALFORMED, GRPC_INVALID_ARGUMENT,
				      "malformed WatchRequest");
	weft__registry__v1__watch_request__free_unpacked(req, NULL);
	if (svc->agent->draining)
		return service_refuse(svc, call, SERVICE_WATCH, SERVICE_REFUSED_UNAVAILABLE, GRPC_UNAVAILABLE,
				      "agent is shutting down");
	nq = service_quota(svc, node);
	if (!nq)
		return service_refuse(svc, call, SERVICE_WATCH, SERVICE_REFUSED_UNAVAILABLE, GRPC_RESOURCE_EXHAUSTED,
				      "out of memory");
	if (nq->watches >= SERVICE_NODE_WATCHES) {
		snprintf(why, sizeof(why), "node %s has %u registry watches open (at most %u)",
			 node, nq->watches, SERVICE_NODE_WATCHES);
		return service_refuse(svc, call, SERVICE_WATCH, SERVICE_REFUSED_QUOTA, GRPC_RESOURCE_EXHAUSTED, why);
	}
	reg = regwatch_current(svc->agent->reg, &version);
	struct registry view = service_export(reg);
	w = calloc(1, sizeof(*w));
	if (w)
		w->export = node[0] == '@';
	if (!w || regproto_snapshot(w->export ? &view : reg, version, &snap, &snaplen)) {
		free(w);
		return service_refuse(svc, call, SERVICE_WATCH, SERVICE_REFUSED_UNAVAILABLE, GRPC_RESOURCE_EXHAUSTED,
				      "out of memory");
	}
	if (grpc_call_send(call, snap, snaplen)) {
		free(snap);
		free(w);
		grpc_call_finish(call, GRPC_CANCELLED, "caller went away");
		return;
	}
	free(snap);
	w->svc = svc;
	w->nq = nq;
	nq->watches++;
	svc->stats.watches++;
	svc->stats.watches_opened++;
	w->call = call;
	w->ac = grpc_call_conn_ctx(call);
	snprintf(w->node, sizeof(w->node), "%s", node);
	w->next = svc->watchers;
	if (w->next)
		w->next->pprev = &w->next;
	w->pprev = &svc->watchers;
	svc->watchers = w;
	grpc_call_on_cancel(call, watcher_on_cancel, w);
	if (w->export)
		log_info("registry export watched by the agent of %s (%s): snapshot version %llu "
			 "sent (%zu nodes, %zu workloads, %zu services)", node + 1, w->ac->peer,
			 (unsigned long long)version, reg->n_nodes, reg->n_workloads,
			 reg->n_services);
	else
		log_info("registry watch by node %s (%s): snapshot version %llu sent", node,
			 w->ac->peer, (unsigned long long)version);
}

/* Send one delta to the watchers of one kind (export or not). */
static void service_send(struct service *svc, int export, const uint8_t *delta, size_t len)
{
	struct watcher *w, *wn;

	for (w = svc->watchers; w; w = wn) {
		wn = w->next;
		if (w->export != export)
			continue;
		/* A watcher that does not read must not make us buffer without
		 * bound: end its stream; it reconnects and gets a snapshot. */
		if (grpc_call_pending(w->call) + len > SERVICE_WATCH_BACKLOG) {
			log_warn("registry watch by node %s (%s) dropped: %zu bytes unread",
				 w->node, w->ac->peer, grpc_call_pending(w->call));
			grpc_call_finish(w->call, GRPC_UNAVAILABLE,
					 "watcher too slow; reconnect for a fresh snapshot");
			svc->stats.watches_dropped++;
			server_conn_kick(w->ac);
			watcher_remove(w);
			continue;
		}
		grpc_call_send(w->call, delta, len);
		svc->stats.updates_sent++;
		server_conn_kick(w->ac);
	}
}

/* The delta from prev to next to the watchers of one kind. */
static void service_delta(struct service *svc, int export, const struct registry *prev,
			  const struct registry *next, uint64_t version)
{
	uint8_t *delta;
	size_t len;

	if (regproto_delta(prev, next, version, &delta, &len)) {
		log_error("registry version %llu: cannot build the %sdelta (out of memory)",
			  (unsigned long long)version, export ? "export " : "");
		return;
	}
	if (delta)
		service_send(svc, export, delta, len);
	free(delta);
}

/* An agent whose trust domain is no longer federated in next sees no more
 * of the export: its watch ends. Returns the export watches left. */
static unsigned service_exports_prune(struct service *svc, const struct registry *next)
{
	struct watcher *w, *wn;
	unsigned left = 0;

	for (w = svc->watchers; w; w = wn) {
		wn = w->next;
		if (!w->export)
			continue;
		if (service_federated(next, w->node + 1)) {
			left++;
			continue;
		}
		log_warn("registry export watched by the agent of %s (%s) ended: %s is no longer "
			 "federated", w->node + 1, w->ac->peer, w->node + 1);
		grpc_call_finish(w->call, GRPC_PERMISSION_DENIED, "trust domain no longer federated");
		server_conn_kick(w->ac);
		watcher_remove(w);
	}
	return left;
}

void service_registry_changed(void *arg, const struct registry *prev,
			      const struct registry *next, uint64_t version)
{
	struct service *svc = arg;
	struct registry xp = service_export(prev), xn = service_export(next);

	service_delta(svc, 0, prev, next, version);
	if (service_exports_prune(svc, next))
		service_delta(svc, 1, &xp, &xn, version);
}

void service_drain(struct service *svc)
{
	while (svc->watchers) {
		struct watcher *w = svc->watchers;
		grpc_call_finish(w->call, GRPC_UNAVAILABLE, "agent is shutting down");
		server_conn_kick(w->ac);
		watcher_remove(w);
	}
}

struct service *service_new(struct agent *a)
{
	struct service *svc = calloc(1, sizeof(*svc));

	if (!svc)
		return NULL;
	svc->agent = a;
	svc->methods[SERVICE_CERT] = (struct grpc_method){
		.path = "/istio.v1.auth.IstioCertificateService/CreateCertificate",
		.handler = service_create_certificate,
		.arg = svc,
	};
	svc->methods[SERVICE_WATCH] = (struct grpc_method){
		.path = "/weft.registry.v1.Registry/Watch",
		.handler = service_watch,
		.arg = svc,
	};
	svc->grpc.methods = svc->methods;
	svc->grpc.n_methods = SERVICE_METHODS;
	svc->grpc.max_msg = GRPC_MSG_MAX;
	svc->grpc.auth = service_auth;
	svc->grpc.auth_arg = svc;
	return svc;
}

void service_free(struct service *svc)
{
	if (!svc)
		return;
	while (svc->watchers)
		watcher_remove(svc->watchers);
	while (svc->quotas) {
		struct node_quota *nq = svc->quotas;
		svc->quotas = nq->next;
		free(nq);
	}
	free(svc);
}

const struct grpc_server *service_grpc(const struct service *svc)
{
	return &svc->grpc;
}

const struct service_stats *service_stats(const struct service *svc)
{
	return &svc->stats;
}
