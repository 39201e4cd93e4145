/* SPDX-License-Identifier: Apache-2.0 */
/* Registry import from remote networks: per configured remote, an agent
 * client (lib/agentc.c, authenticated with this agent's own SVID) keeps a
 * Registry/Watch open on the remote agent and a regcache applies what it
 * sends. Only nodes, workloads and services are taken from it (never its
 * policies, bundles or remotes: a federated agent is trusted for its own
 * network's inventory, not for our trust). Changes are published, at most
 * every REMOTE_DEBOUNCE_MS, as the registry's remote networks. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/agentc.h>
#include <weft/file.h>
#include <weft/log.h>
#include <weft/loop.h>
#include <weft/regcache.h>
#include <weft/registry.h>
#include <weft/regproto.h>

#include "agent.h"
#include "config.h"
#include "regwatch.h"
#include "remote.h"
#include "vips.h"

#define REMOTE_DEBOUNCE_MS 500
/* The registry with every remote network goes to each weftd in one
 * message of at most GRPC_MSG_MAX (4 MiB): a set that would not leave
 * room below that is not published (the last one stays). */
#define REMOTE_PUBLISH_MAX (3u << 20)

struct remote_net {
	struct remote *r;
	const struct agent_remote *cfg;
	struct agentc *ac;		/* NULL while its trust domain is not federated */
	struct regcache *rc;
	char *bundle;			/* the roots ac verifies the remote agent with */
	bool live;			/* rc holds an import of the right trust domain */
	bool dirty;			/* not saved since it changed */
	bool up;
	struct log_rl rl;
	char path[PATH_MAX];		/* the last import, on disk */
	char vips_path[PATH_MAX];	/* the VIPs it was given, on disk */
	struct regcache *vips;		/* those read at start: the first publication's
					 * last assignment; NULL once published */
};

struct remote {
	struct agent *agent;
	struct remote_net nets[CONFIG_REMOTES_MAX];
	size_t n;
	struct loop_timer debounce;
	struct reg_remotes *last;	/* the set last published (our reference) */
	struct remote_stats stats;
};

/* --- the import, pure -------------------------------------------------------------------- */

/* calloc for n elements, NULL-safe for n == 0 (then *p stays NULL). */
static int remote_array(void **p, size_t n, size_t size)
{
	*p = NULL;
	return n && !(*p = calloc(n, size)) ? -ENOMEM : 0;
}

/* A name a remote chose, before it reaches logs, JSON, SPIFFE IDs and
 * tunnel keys here: lowercase DNS characters (and '/' in a uid), 1..max. */
static bool remote_name_ok(const char *s, size_t max, bool slash)
{
	size_t n = s ? strlen(s) : 0;

	return n && n <= max &&
	       strspn(s, slash ? "abcdefghijklmnopqrstuvwxyz0123456789-./"
			       : "abcdefghijklmnopqrstuvwxyz0123456789-.") == n;
}

static bool remote_node_ok(const struct reg_node *n)
{
	return remote_name_ok(n->name, 63, false);
}

static bool remote_workload_ok(const struct reg_workload *w)
{
	return remote_name_ok(w->uid, 127, true) && remote_name_ok(w->name, 63, false) &&
	       remote_name_ok(w->namespace, 63, false) &&
	       remote_name_ok(w->service_account, 63, false);
}

static bool remote_service_ok(const struct reg_service *s)
{
	if (!remote_name_ok(s->name, 63, false) || !remote_name_ok(s->namespace, 63, false))
		return false;
	for (size_t i = 0; i < s->n_endpoints; i++)
		if (!remote_name_ok(s->endpoints[i], 127, true))
			return false;
	return true;
}

static int remote_node_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct reg_node *)elem)->name);
}

int remote_import(const struct agent_remote *cfg, const struct registry *src,
		  const struct registry *local, const struct registry *prev,
		  struct reg_remote *out, size_t *unplaced, size_t *refused)
{
	const struct vips_range vr = { .base = cfg->vip_base, .prefix = cfg->vip_prefix };
	uint32_t *vips = NULL;
	struct registry *r;
	size_t full;

	*out = (struct reg_remote){ .unpooled = cfg->form == CONFIG_FORM_ISTIO };
	*unplaced = *refused = 0;
	if (!(r = out->reg = calloc(1, sizeof(*r))) || !(out->network = strdup(cfg->network)) ||
	    !(out->trust_domain = strdup(cfg->trust_domain)) ||
	    remote_array((void **)&r->nodes, src->n_nodes, sizeof(*r->nodes)) ||
	    remote_array((void **)&r->workloads, src->n_workloads, sizeof(*r->workloads)) ||
	    remote_array((void **)&r->services, src->n_services, sizeof(*r->services)) ||
	    !(vips = calloc(src->n_services ? src->n_services : 1, sizeof(*vips))))
		goto fail;
	for (size_t i = 0; i < src->n_nodes; i++) {
		struct reg_node *n = &r->nodes[r->n_nodes];

		if (!remote_node_ok(&src->nodes[i])) {
			(*refused)++;
			continue;
		}
		if (reg_node_dup(n, &src->nodes[i]))
			goto fail;
		r->n_nodes++;
		/* The remote calls its network what it likes; here it is
		 * the network it was configured as. */
		free(n->network);
		if (!(n->network = strdup(cfg->network)))
			goto fail;
	}
	/* A workload on none of its nodes could not be reached, and weftd
	 * refuses such a remote network whole: it is left out. (src's nodes
	 * are sorted by name, as regcache keeps them.) */
	for (size_t i = 0; i < src->n_workloads; i++) {
		const struct reg_workload *w = &src->workloads[i];

		if (!remote_workload_ok(w)) {
			(*refused)++;
			continue;
		}
		if (!w->node || !r->n_nodes ||
		    !bsearch(w->node, r->nodes, r->n_nodes, sizeof(*r->nodes), remote_node_cmp))
			continue;
		if (reg_workload_dup(&r->workloads[r->n_workloads], w))
			goto fail;
		r->n_workloads++;
	}
	if (vips_assign(&vr, cfg->network, local, prev, src->services, src->n_services, vips,
			&full))
		goto fail;
	for (size_t i = 0; i < src->n_services; i++) {
		struct in_addr a = { .s_addr = htonl(vips[i]) };
		char txt[INET_ADDRSTRLEN], *v[1] = { txt };

		if (!remote_service_ok(&src->services[i])) {
			(*refused)++;
			continue;
		}
		if (!vips[i]) {
			(*unplaced)++;
			continue;
		}
		inet_ntop(AF_INET, &a, txt, sizeof(txt));
		if (reg_service_dup(&r->services[r->n_services], &src->services[i], v, 1))
			goto fail;
		r->n_services++;
	}
	free(vips);
	return 0;
fail:
	free(vips);
	reg_remote_release(out);
	return -ENOMEM;
}

/* --- publication ------------------------------------------------------------------------- */

/* The VIPs rn's services were given (its import's services, as a snapshot
 * that regcache reads back at start), so that a restart gives the same
 * ones even where a collision had moved one off its hash's place. */
static void remote_save_vips(struct remote_net *rn, const struct reg_remote *rm)
{
	struct registry only = { .services = rm->reg->services,
				 .n_services = rm->reg->n_services };
	uint8_t *buf;
	size_t len;
	int rc;

	regcache_free(rn->vips);
	rn->vips = NULL;
	if (regproto_snapshot(&only, 1, &buf, &len))
		return;
	rc = file_write_atomic(rn->vips_path, buf, len, 0600);
	free(buf);
	if (rc)
		log_warn_rl(&rn->rl, "remote network %s: cannot save its VIPs to %s: %s",
			    rn->cfg->network, rn->vips_path, strerror(-rc));
}

/* Every live import, sorted by network, as the registry's remote networks. */
static void remote_publish(struct remote *r)
{
	struct agent *a = r->agent;
	const struct registry *local = regwatch_current(a->reg, NULL);
	struct remote_net *order[CONFIG_REMOTES_MAX];
	struct reg_remotes *rs = NULL;
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++) {
		struct remote_net *rn = &r->nets[i];
		size_t j = n++;

		if (!rn->live) {
			n--;
			continue;
		}
		for (; j && strcmp(order[j - 1]->cfg->network, rn->cfg->network) > 0; j--)
			order[j] = order[j - 1];
		order[j] = rn;
	}
	if (n && !(rs = reg_remotes_new(n)))
		goto oom;
	for (size_t i = 0; i < n; i++) {
		struct remote_net *rn = order[i];
		const struct reg_remote *prev = reg_remotes_find(r->last, rn->cfg->network);
		const struct registry *src = regcache_registry(rn->rc);
		const struct registry *before = prev ? prev->reg :
						rn->vips ? regcache_registry(rn->vips) : NULL;
		size_t unplaced, refused;

		if (remote_import(rn->cfg, src, local, before, &rs->v[i], &unplaced, &refused))
			goto oom;
		if (refused)
			log_warn_rl(&rn->rl, "remote network %s: %zu of its resources left out: names "
				    "that are not lowercase DNS names", rn->cfg->network, refused);
		if (unplaced)
			log_warn_rl(&rn->rl, "remote network %s: %zu of its %zu services get no local "
				    "VIP: vip_cidr %s is full", rn->cfg->network, unplaced,
				    src->n_services, rn->cfg->vip_cidr);
		if (rn->dirty) {
			int rc = regcache_save(rn->rc, rn->path);

			if (rc)
				log_warn_rl(&rn->rl, "remote network %s: cannot save its import to "
					    "%s: %s", rn->cfg->network, rn->path, strerror(-rc));
			rn->dirty = false;
		}
	}
	if (rs) {
		struct registry probe = *local;
		uint8_t *buf;
		size_t len;

		probe.remotes = rs;
		if (regproto_snapshot(&probe, 1, &buf, &len))
			goto oom;
		free(buf);
		if (len > REMOTE_PUBLISH_MAX) {
			log_warn("remote networks not published, keeping the last set: with them the "
				 "registry would take %zu bytes, more than %u a node may be sent",
				 len, REMOTE_PUBLISH_MAX);
			r->stats.refused++;
			reg_remotes_unref(rs);
			return;
		}
	}
	reg_remotes_unref(r->last);
	r->last = rs ? reg_remotes_ref(rs) : NULL;
	r->stats.published++;
	for (size_t i = 0; i < n; i++)
		remote_save_vips(order[i], &rs->v[i]);
	if (regwatch_set_remotes(a->reg, rs))
		log_error("remote networks not published: out of memory");
	return;
oom:
	reg_remotes_unref(rs);
	log_error("remote networks not published: out of memory (retrying)");
	loop_timer_arm(a->loop, &r->debounce, 1000);
}

static void remote_on_debounce(struct loop_timer *t)
{
	remote_publish((struct remote *)((char *)t - offsetof(struct remote, debounce)));
}

static void remote_changed(struct remote *r)
{
	if (!r->debounce.idx)
		loop_timer_arm(r->agent->loop, &r->debounce, REMOTE_DEBOUNCE_MS);
}

/* --- one remote network ------------------------------------------------------------------ */

/* rn->rc holds an export of the trust domain rn is configured with: only
 * nodes, workloads and services (an agent that sends us policies, bundles
 * or remote networks is not serving the export). */
static bool remote_td_ok(struct remote_net *rn)
{
	const struct registry *x = regcache_registry(rn->rc);
	const char *td = regcache_trust_domain(rn->rc), *extra;
	char esc[96];

	if (!regcache_ready(rn->rc))
		return false;
	if (strcmp(td, rn->cfg->trust_domain)) {
		log_warn_rl(&rn->rl, "remote network %s: its agent's registry is of trust domain "
			    "\"%s\", not %s: not imported", rn->cfg->network,
			    log_escape(esc, sizeof(esc), td, strnlen(td, 64)),
			    rn->cfg->trust_domain);
		return false;
	}
	extra = x->n_policies ? "policies" : x->n_bundles ? "federated bundles" :
		x->remotes ? "remote networks" : NULL;
	if (extra) {
		log_warn_rl(&rn->rl, "remote network %s: its agent sent %s, which no export holds: "
			    "not imported", rn->cfg->network, extra);
		return false;
	}
	return true;
}

static void remote_on_watch(void *arg, const uint8_t *msg, size_t len)
{
	struct remote_net *rn = arg;
	struct remote *r = rn->r;
	char err[256];
	bool live;

	if (regcache_apply(rn->rc, msg, len, err, sizeof(err))) {
		r->stats.refused++;
		log_warn_rl(&rn->rl, "remote network %s (agent %s): update refused, keeping the "
			    "last import: %s", rn->cfg->network, rn->cfg->agent_address, err);
		return;
	}
	r->stats.updates++;
	live = remote_td_ok(rn);
	if (!live)
		r->stats.refused++;
	if (!live && !rn->live)
		return;
	rn->live = live;
	rn->dirty = live;
	remote_changed(r);
}

static void remote_on_state(void *arg, int up, const char *why)
{
	struct remote_net *rn = arg;

	if (rn->up == !!up)
		return;
	rn->up = up;
	rn->r->stats.up += up ? 1 : -1;
	if (!up && rn->live)
		log_warn("remote network %s: its agent %s is unreachable (%s): the last import "
			 "stays in service", rn->cfg->network, rn->cfg->agent_address, why);
}

static void remote_stop(struct remote_net *rn)
{
	agentc_free(rn->ac);
	rn->ac = NULL;
	free(rn->bundle);
	rn->bundle = NULL;
	if (rn->up)
		rn->r->stats.up--;
	rn->up = false;
}

static int remote_start(struct remote_net *rn, const char *pem, char *err, size_t errlen)
{
	struct agent *a = rn->r->agent;
	struct agentc_opts o = {
		.addr = rn->cfg->agent_address,
		.server_name = rn->cfg->server_name,
		.trust_domain = rn->cfg->trust_domain,
		.bundle_pem = pem,
		.node = a->cfg->trust_domain,
	};

	if (!(rn->bundle = strdup(pem))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rn->ac = agentc_new(a->loop, &o, err, errlen);
	if (!rn->ac || agentc_set_identity(rn->ac, a->id_chain, a->id_chain_len, a->id_key,
					   a->id_key_len)) {
		if (rn->ac)
			snprintf(err, errlen, "cannot use the agent's identity as a client");
		remote_stop(rn);
		return -EINVAL;
	}
	agentc_watch(rn->ac, remote_on_watch, remote_on_state, rn);
	log_info("remote network %s: importing the registry of %s from its agent %s", 
		 rn->cfg->network, rn->cfg->trust_domain, rn->cfg->agent_address);
	return 0;
}

static const char *remote_bundle_of(const struct registry *reg, const char *td)
{
	for (size_t i = 0; i < reg->n_bundles; i++)
		if (!strcmp(reg->bundles[i].trust_domain, td))
			return reg->bundles[i].pem;
	return NULL;
}

/* Follow the current federated bundles: start, restart with a new bundle,
 * or stop and withdraw. 0 or -errno with err. */
static int remote_follow(struct remote_net *rn, char *err, size_t errlen)
{
	const char *pem = remote_bundle_of(regwatch_current(rn->r->agent->reg, NULL),
					   rn->cfg->trust_domain);

	if (rn->bundle && pem && !strcmp(rn->bundle, pem))
		return 0;
	if (rn->ac)
		remote_stop(rn);
	if (pem)
		return remote_start(rn, pem, err, errlen);
	if (rn->live) {
		struct regcache *fresh = regcache_new();

		log_warn("remote network %s: trust domain %s is no longer federated: import "
			 "stopped, its services withdrawn", rn->cfg->network, rn->cfg->trust_domain);
		rn->live = false;
		unlink(rn->path);
		unlink(rn->vips_path);
		if (fresh) {
			regcache_free(rn->rc);
			rn->rc = fresh;
		}
		remote_changed(rn->r);
	}
	return 0;
}

void remote_local_changed(struct remote *r)
{
	if (r && r->last)
		remote_changed(r);
}

void remote_bundles_changed(struct remote *r)
{
	char err[512];

	for (size_t i = 0; r && i < r->n; i++)
		if (remote_follow(&r->nets[i], err, sizeof(err)))
			log_error("remote network %s: %s", r->nets[i].cfg->network, err);
}

/* --- lifetime ---------------------------------------------------------------------------- */

struct remote *remote_new(struct agent *a, char *err, size_t errlen)
{
	const struct agent_remote *cfgs = a->cfg->remote_networks.v;
	const struct registry *reg = regwatch_current(a->reg, NULL);
	bool loaded = false;
	struct remote *r;

	err[0] = '\0';
	if (!a->cfg->remote_networks.n)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->agent = a;
	r->debounce.cb = remote_on_debounce;
	for (size_t i = 0; i < a->cfg->remote_networks.n; i++) {
		struct remote_net *rn = &r->nets[i];
		char why[256];

		rn->r = r;
		rn->cfg = &cfgs[i];
		r->n++;
		if (!remote_bundle_of(reg, rn->cfg->trust_domain)) {
			snprintf(err, errlen, "remote network %s: trust domain %s is not federated "
				 "(no %s.pem in federation_dir)", rn->cfg->network,
				 rn->cfg->trust_domain, rn->cfg->trust_domain);
			goto fail;
		}
		if (!(rn->rc = regcache_new())) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		snprintf(rn->path, sizeof(rn->path), "%s/remote-%s.snapshot", a->cfg->state_dir,
			 rn->cfg->network);
		snprintf(rn->vips_path, sizeof(rn->vips_path), "%s/remote-%s.vips",
			 a->cfg->state_dir, rn->cfg->network);
		if (!access(rn->vips_path, F_OK) && (rn->vips = regcache_new()) &&
		    regcache_load(rn->vips, rn->vips_path, why, sizeof(why))) {
			log_warn("remote network %s: its VIPs not loaded (they are given again): %s",
				 rn->cfg->network, why);
			regcache_free(rn->vips);
			rn->vips = NULL;
		}
		/* The last import, for a restart while the remote agent is
		 * away; a bad file is only a lost cache. */
		if (!access(rn->path, F_OK)) {
			if (regcache_load(rn->rc, rn->path, why, sizeof(why)))
				log_warn("remote network %s: last import not loaded: %s",
					 rn->cfg->network, why);
			else if ((rn->live = remote_td_ok(rn)))
				loaded = true;
		}
		if (remote_follow(rn, err, errlen))
			goto fail;
	}
	if (loaded)
		remote_publish(r);
	return r;
fail:
	remote_free(r);
	return NULL;
}

void remote_free(struct remote *r)
{
	if (!r)
		return;
	loop_timer_disarm(r->agent->loop, &r->debounce);
	for (size_t i = 0; i < r->n; i++) {
		remote_stop(&r->nets[i]);
		regcache_free(r->nets[i].rc);
		regcache_free(r->nets[i].vips);
		log_rl_forget(&r->nets[i].rl);
	}
	reg_remotes_unref(r->last);
	free(r);
}

const struct remote_stats *remote_stats(const struct remote *r)
{
	static const struct remote_stats none;

	return r ? &r->stats : &none;
}
