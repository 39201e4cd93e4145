/* SPDX-License-Identifier: Apache-2.0 */
/* explain (explain.h). Every step is a line a generalist can read; the
 * verdict is "allow", "deny" (policy or a refusal by configuration) or
 * "fail" (the connection could not be made: no certificate, no route). */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <weft/sockaddr.h>

#include "authz.h"
#include "certs.h"
#include "explain.h"
#include "jsonw.h"
#include "failures.h"
#include "outbound.h"
#include "pods.h"
#include <weft/regcache.h>
#include "tunnel.h"
#include "weftd.h"

#define EXPLAIN_STEPS 8

struct step {
	const char *name, *result;
	char says[512];
};

struct answer {
	struct step s[EXPLAIN_STEPS];
	int n;
	const char *verdict, *flag;
	char sentence[768];
};

static struct step *step(struct answer *a, const char *name, const char *result,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static struct step *step(struct answer *a, const char *name, const char *result,
			 const char *fmt, ...)
{
	struct step *s = &a->s[a->n < EXPLAIN_STEPS ? a->n++ : EXPLAIN_STEPS - 1];
	va_list ap;

	s->name = name;
	s->result = result;
	va_start(ap, fmt);
	vsnprintf(s->says, sizeof(s->says), fmt, ap);
	va_end(ap);
	return s;
}

static size_t answer_json(const struct answer *a, const char *src, const char *dst, char *buf,
			  size_t len)
{
	struct jw w = { buf, len, 0 };

	jw_put(&w, "{\"source\":");
	jw_str(&w, src);
	jw_put(&w, ",\"destination\":");
	jw_str(&w, dst);
	jw_put(&w, ",\"verdict\":\"%s\",\"response_flags\":\"%s\",\"steps\":[", a->verdict,
	       a->flag ? a->flag : "-");
	for (int i = 0; i < a->n; i++) {
		jw_put(&w, "%s{\"step\":\"%s\",\"result\":\"%s\",\"says\":", i ? "," : "",
		       a->s[i].name, a->s[i].result);
		jw_str(&w, a->s[i].says);
		jw_put(&w, "}");
	}
	jw_put(&w, "],\"sentence\":");
	jw_str(&w, a->sentence);
	jw_put(&w, "}");
	return jw_end(&w);
}

static struct pod *explain_pod(struct weftd *d, const char *src)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	if (!sockaddr_from_ip(src, 0, &ss, &sl))
		return pods_by_ip(d->pods, (struct sockaddr *)&ss);
	return pods_by_uid(d->pods, src);
}

static void explain(struct weftd *d, const char *src, const char *dst, struct answer *a)
{
	struct outbound_decision dec;
	struct sockaddr_storage orig;
	socklen_t olen;
	struct pod *pod;
	struct authz_conn az;
	char why[BOUNDARY_WHY_MAX] = "", where[160] = "", until[32] = "?", last[600], ep[64];
	const char *dname;
	time_t na;

	a->verdict = "fail";
	pod = explain_pod(d, src);
	if (!pod) {
		step(a, "capture", "fail", "%s is not a pod enrolled on node %s", src,
		     d->cfg.node_name);
		snprintf(a->sentence, sizeof(a->sentence), "weftd on %s does not see %s's traffic: "
			 "it is not a pod of this node (ask the weftd of its node, or check that "
			 "weft-cni enrolled it)", d->cfg.node_name, src);
		return;
	}
	step(a, "capture", "ok", "%s/%s (%s) is enrolled on %s; its connections are captured",
	     pod->ns, pod->name, pod->ip_str, d->cfg.node_name);
	if (sockaddr_parse(dst, &orig, &olen) || !sockaddr_port(&orig)) {
		step(a, "destination", "fail", "%s is not ip:port", dst);
		snprintf(a->sentence, sizeof(a->sentence), "%s is not a destination (ip:port)", dst);
		return;
	}
	outbound_decide(d, &orig, 1, &dec);
	dname = dec.w ? dec.w->uid : "";
	if (dec.svc)
		step(a, "destination", dec.w ? "ok" : "fail", "%s is service %s/%s; the next "
		     "endpoint is %s", dst, dec.svc->namespace, dec.svc->name,
		     dec.w ? dec.w->uid : "none (no ready endpoint)");
	else if (dec.w)
		step(a, "destination", "ok", "%s is workload %s on node %s", dst, dec.w->uid,
		     dec.w->node);
	else
		step(a, "destination", "ok", "%s is not in the registry (unknown_destination: %s)",
		     dst, d->cfg.unknown_destination == SETTINGS_UNKNOWN_DENY ? "deny" :
		     "passthrough");
	if (dec.route == OUTBOUND_FAIL) {
		a->flag = dec.flag;
		a->verdict = !strcmp(dec.flag, "NO_ROUTE") && !dec.w && !dec.svc ? "deny" : "fail";
		step(a, "route", "fail", "%s [%s]", dec.why, dec.flag);
		snprintf(a->sentence, sizeof(a->sentence), "%s cannot reach %s: %s", pod->name, dst,
			 dec.why);
		return;
	}
	if (dec.route == OUTBOUND_PASSTHROUGH) {
		step(a, "route", "ok", "passthrough: plain TCP from the pod, outside the mesh (no "
		     "mTLS, no policy)");
		a->verdict = "allow";
		snprintf(a->sentence, sizeof(a->sentence), "%s reaches %s directly, outside the "
			 "mesh: weft does not encrypt or authorize it; whether anything answers "
			 "there only that address knows", pod->name, dst);
		return;
	}
	if (dec.route == OUTBOUND_SAME_NODE) {
		step(a, "route", "ok", "same node: delivered by this weftd without TLS (fast path)");
	} else if (dec.route == OUTBOUND_REMOTE) {
		char key[160];

		snprintf(key, sizeof(key), "%s/%s", dec.remote->network, dec.node->name);
		snprintf(where, sizeof(where), " on node %s of network %s", dec.node->name,
			 dec.remote->network);
		step(a, "route", "ok", "network %s (%s): outer tunnel to its gateway %s (%s:%u), "
		     "inside it %s mTLS with node %s (%s:%u) as %s; inner tunnel now: %s",
		     dec.remote->network, dec.remote->trust_domain, dec.gateway->name,
		     dec.gateway->gateway_address, dec.gateway->hbone_port,
		     dec.remote->unpooled ? "a new (unpooled)" : "pooled", dec.node->name,
		     dec.node->address, dec.node->hbone_port,
		     pod->ident ? ident_id(pod->ident) : "(no identity)",
		     tunnels_state(d->tunnels, pod->ident, key));
	} else {
		const char *st = tunnels_state(d->tunnels, pod->ident, dec.node->name);

		snprintf(where, sizeof(where), " on node %s", dec.node->name);
		step(a, "route", "ok", "HBONE tunnel to node %s (%s:%u) as %s; tunnel now: %s",
		     dec.node->name, dec.node->address, dec.node->hbone_port,
		     pod->ident ? ident_id(pod->ident) : "(no identity)", st);
	}
	if (!pod->ident || !ident_ready(pod->ident)) {
		const char *e = pod->ident ? ident_last_error(pod->ident) : "";

		step(a, "certificate", "fail", "%s has no certificate yet%s%s", pod->ident ?
		     ident_id(pod->ident) : "the pod's service account (unknown to the registry)",
		     e[0] ? ": " : "", e);
		if (dec.route == OUTBOUND_TUNNEL || dec.route == OUTBOUND_REMOTE) {
			a->flag = "IDENTITY_ERROR";
			snprintf(a->sentence, sizeof(a->sentence), "%s cannot reach %s yet: its "
				 "certificate has not been issued%s%s (is weft-agent reachable?); "
				 "connections wait %u ms for it, then fail as IDENTITY_ERROR",
				 pod->name, dst, e[0] ? " — " : "", e, d->cfg.connect_timeout_ms);
			return;
		}
	} else {
		struct tm tm;

		na = ident_not_after(pod->ident);
		strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&na, &tm));
		step(a, "certificate", "ok", "%s is valid until %s", ident_id(pod->ident), until);
	}
	if (dec.route == OUTBOUND_REMOTE) {
		/* Its policy is the other network's: only its node decides. */
		step(a, "policy", "info", "decided by node %s of network %s with its own policies "
		     "(not known here)", dec.node->name, dec.remote->network);
		a->verdict = "allow";
		snprintf(a->sentence, sizeof(a->sentence), "%s can reach %s (%s) of network %s "
			 "through its gateway %s, with mutual TLS end to end to node %s, if that "
			 "network's policy allows it", pod->name, dname, dst, dec.remote->network,
			 dec.gateway->name, dec.node->name);
		return;
	}
	memset(&az, 0, sizeof(az));
	snprintf(az.dst_uid, sizeof(az.dst_uid), "%s", dname);
	snprintf(az.principal, sizeof(az.principal), "%s",
		 pod->ident ? ident_id(pod->ident) : "");
	az.src = pod->ips[0];
	az.dst_port = sockaddr_port(&dec.dst);
	/* What real connections toward it met (the endpoint, as the access
	 * log names it): what only the destination knows. */
	sockaddr_str(&dec.dst, ep, sizeof(ep));
	if (!failures_last_toward(ep, last, sizeof(last)))
		last[0] = 0;
	else
		step(a, "history", "info", "%s", last);
	/* No tunnel up and the last one toward that node could not open:
	 * that is what a connection meets now, whatever the policy says. */
	if (dec.route == OUTBOUND_TUNNEL && strcmp(tunnels_state(d->tunnels, pod->ident,
								 dec.node->name), "ready")) {
		const char *e = strstr(last, "[CONNECT] ");

		if (e && strstr(e, "tunnel")) {
			a->flag = "CONNECT";
			snprintf(a->sentence, sizeof(a->sentence), "%s cannot reach %s now: no "
				 "tunnel to node %s is up and the last attempt failed: %s (is weftd "
				 "running on %s, at %s:%u, and does it accept this identity?)",
				 pod->name, dst, dec.node->name, e + 10, dec.node->name,
				 dec.node->address, dec.node->hbone_port);
			return;
		}
	}
	if (authz_decide(d, &az, why, sizeof(why))) {
		a->verdict = "deny";
		a->flag = "DENY";
		step(a, "policy", "deny", "%s", why);
		snprintf(a->sentence, sizeof(a->sentence), "%s may not reach %s: %s", pod->name,
			 dname, why);
		return;
	}
	step(a, "policy", "allow", "%s", why[0] ? why : "allowed");
	a->verdict = "allow";
	snprintf(a->sentence, sizeof(a->sentence), "%s can reach %s (%s)%s%s; whether the app "
		 "listens on port %u only %s knows%s%s", pod->name, dname, dst,
		 dec.route == OUTBOUND_TUNNEL ? " over mutual TLS" : " on this node", where,
		 az.dst_port, dec.route == OUTBOUND_TUNNEL ? dec.node->name : "the pod",
		 last[0] ? " — " : "", last);
}

size_t explain_json(struct weftd *d, const char *src, const char *dst, char *buf, size_t len)
{
	struct answer a;

	memset(&a, 0, sizeof(a));
	explain(d, src, dst, &a);
	return answer_json(&a, src, dst, buf, len);
}
