/* SPDX-License-Identifier: Apache-2.0 */
/* Destination-side authorization: the pure decision is lib/policy.c; this
 * file knows where the facts come from (registry, the connection) and
 * keeps the allowed connections so a policy change can end them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <weft/log.h>
#include <weft/policy.h>
#include <weft/registry.h>
#include <weft/spiffe.h>

#include "authz.h"
#include "metrics.h"
#include <weft/regcache.h>
#include "relay.h"
#include "weftd.h"

static struct authz_conn *authz_live;

static int authz_decision(const struct weftd *d, const struct authz_conn *c,
			  struct policy_decision *out, char *why, size_t whylen);

int authz_check(struct weftd *d, struct authz_conn *c, char *why, size_t whylen)
{
	struct policy_decision dec;
	int rc = authz_decision(d, c, &dec, why, whylen);

	if (rc) {
		d->stats.denied++;
		metrics_policy_denied(d->metrics, dec.policy, dec.rule);
	}
	return rc;
}

int authz_decide(const struct weftd *d, const struct authz_conn *c, char *why, size_t whylen)
{
	struct policy_decision dec;

	return authz_decision(d, c, &dec, why, whylen);
}

static int authz_decision(const struct weftd *d, const struct authz_conn *c,
			  struct policy_decision *out, char *why, size_t whylen)
{
	const struct reg_workload *dst = regcache_workload(d->reg, c->dst_uid);
	struct policy_decision dec;
	struct policy_conn pc = {
		.principal = c->principal[0] ? c->principal : NULL,
		.src = (const struct sockaddr *)&c->src,
		.dst_port = c->dst_port,
	};
	char ns[64], sa[64];
	struct spiffe_id id;
	const char *bad;

	memset(out, 0, sizeof(*out));
	out->rule = -1;
	if (!dst) {
		/* Enrolled but not (yet) in the registry: no policy can name
		 * it, so the default applies. */
		snprintf(why, whylen, "the destination is not in the registry: no policy names it");
		return 0;
	}
	if (pc.principal && !spiffe_id_parse(pc.principal, strlen(pc.principal), &id, &bad) &&
	    !spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa)))
		pc.src_namespace = ns;
	policy_decide(regcache_registry(d->reg), dst, &pc, &dec);
	snprintf(why, whylen, "%s", dec.why);	/* the allow's words too (explain) */
	*out = dec;
	return dec.verdict == POLICY_ALLOW ? 0 : -EACCES;
}

void authz_track(struct authz_conn *c, struct relay *r)
{
	c->relay = r;
	c->next = authz_live;
	if (authz_live)
		authz_live->pprev = &c->next;
	c->pprev = &authz_live;
	authz_live = c;
}

void authz_forget(struct authz_conn *c)
{
	if (!c->pprev)
		return;
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	c->pprev = NULL;
}

void authz_recheck(struct weftd *d)
{
	struct authz_conn *c, *next;
	char why[300];

	for (c = authz_live; c; c = next) {
		next = c->next;
		if (!authz_check(d, c, why, sizeof(why)))
			continue;
		log_warn("%s connection from %s to %s closed [DENY]: policy changed: %s",
			 c->direction, c->principal[0] ? c->principal : "(no identity)",
			 c->dst_uid, why);
		authz_forget(c);
		relay_reset(c->relay, why);
	}
}
