/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's metrics (metrics.h). Byte counters are what the apps wrote and
 * read (the relays' counts), never TLS or HTTP/2 bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft/loop.h>
#include <weft/series.h>
#include <weft/version.h>

#include "certs.h"
#include "inbound.h"
#include "metrics.h"
#include "pods.h"
#include <weft/regcache.h>
#include "tunnel.h"
#include "weftd.h"


/* The counters of one istio_tcp series. */
enum { MV_OPENED = 0, MV_CLOSED, MV_FAILED, MV_SENT, MV_RECEIVED };

static const char *const metrics_deny_keys[] = { "policy", "rule" };

static const char *const metrics_keys[ML_COUNT] = {
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal", "source_app",
	"source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_service", "destination_service_namespace",
	"destination_service_name", "destination_cluster",
	"request_protocol", "response_flags", "connection_security_policy",
};

struct metrics {
	struct weftd *d;
	struct series_table *tcp;
	struct series_table *denies;		/* weft_policy_denies_total */
	uint64_t last_expire_ms;
};

struct metrics *metrics_new(struct weftd *d)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->d = d;
	m->tcp = series_table_new(metrics_keys, ML_COUNT, d->cfg.metrics_max_series,
				  (uint64_t)d->cfg.metrics_idle_s * 1000u);
	m->denies = series_table_new(metrics_deny_keys, 2, 1000, 0);
	if (!m->tcp || !m->denies) {
		series_table_free(m->tcp);
		series_table_free(m->denies);
		free(m);
		return NULL;
	}
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	series_table_free(m->tcp);
	series_table_free(m->denies);
	free(m);
}

void metrics_policy_denied(struct metrics *m, const char *policy, int rule)
{
	char r[16];
	const char *v[] = { policy && policy[0] ? policy : "(no ALLOW policy matched)", r };
	struct series *s;

	if (!m)
		return;
	if (rule >= 0)
		snprintf(r, sizeof(r), "%d", rule);
	else
		snprintf(r, sizeof(r), "none");
	s = series_get(m->denies, v, loop_now_ms(m->d->loop));
	if (s)
		s->v[0]++;
}

/* --- labels ------------------------------------------------------------------ */

void metrics_labels_init(struct metrics_labels *l, int destination_reporter, int mtls)
{
	for (int i = 0; i < ML_COUNT; i++)
		l->v[i] = "unknown";
	l->v[ML_REPORTER] = destination_reporter ? "destination" : "source";
	l->v[ML_PROTOCOL] = "tcp";
	l->v[ML_FLAGS] = "-";
	l->v[ML_SECURITY] = mtls ? "mutual_tls" : "none";
	l->src_principal[0] = l->dst_principal[0] = l->dst_service[0] = 0;
}

static const char *metrics_app(const struct reg_workload *w)
{
	for (size_t i = 0; i < w->n_labels; i++)
		if (!strcmp(w->labels[i].key, "app"))
			return w->labels[i].value;
	for (size_t i = 0; i < w->n_labels; i++)
		if (!strcmp(w->labels[i].key, "app.kubernetes.io/name"))
			return w->labels[i].value;
	return w->name;
}

static const char *metrics_cluster(const struct weftd *d, const struct reg_workload *w)
{
	const struct reg_node *n = d->reg ? regcache_node(d->reg, w->node) : NULL;

	return n && n->cluster && n->cluster[0] ? n->cluster : "Kubernetes";
}

static const char *metrics_td(const struct weftd *d)
{
	const char *td = d->reg ? regcache_trust_domain(d->reg) : "";

	return td[0] ? td : d->cfg.trust_domain;
}

/* One side: workload, namespace, principal, app, cluster at base.. */
static void metrics_side(struct metrics_labels *l, const struct weftd *d, int base,
			 const struct reg_workload *w, const char *principal, char *pbuf,
			 size_t plen)
{
	if (w) {
		l->v[base] = w->name;
		l->v[base + 1] = w->namespace;
		snprintf(pbuf, plen, "spiffe://%s/ns/%s/sa/%s", metrics_td(d), w->namespace,
			 w->service_account);
		l->v[base + 2] = pbuf;
		l->v[base + 3] = metrics_app(w);
	}
	if (principal && principal[0])
		l->v[base + 2] = principal;
	if (w && base == ML_SRC_WORKLOAD)
		l->v[ML_SRC_CLUSTER] = metrics_cluster(d, w);
	else if (w)
		l->v[ML_DST_CLUSTER] = metrics_cluster(d, w);
}

void metrics_labels_source(struct metrics_labels *l, const struct weftd *d,
			   const struct reg_workload *w, const char *principal)
{
	metrics_side(l, d, ML_SRC_WORKLOAD, w, principal, l->src_principal,
		     sizeof(l->src_principal));
}

void metrics_labels_destination(struct metrics_labels *l, const struct weftd *d,
				const struct reg_workload *w, const char *principal)
{
	metrics_side(l, d, ML_DST_WORKLOAD, w, principal, l->dst_principal,
		     sizeof(l->dst_principal));
}

void metrics_labels_service(struct metrics_labels *l, const struct weftd *d,
			    const struct reg_service *svc)
{
	if (!svc)
		return;
	(void)d;
	snprintf(l->dst_service, sizeof(l->dst_service), "%s.%s.svc.cluster.local", svc->name,
		 svc->namespace);
	l->v[ML_DST_SERVICE] = l->dst_service;
	l->v[ML_DST_SERVICE_NAMESPACE] = svc->namespace;
	l->v[ML_DST_SERVICE_NAME] = svc->name;
}

/* --- recording ----------------------------------------------------------------- */

void metrics_conn_start(struct metrics *m, struct metrics_conn *mc, struct metrics_labels *l)
{
	if (!m || mc->s)
		return;
	l->v[ML_FLAGS] = "-";
	mc->s = series_get(m->tcp, l->v, loop_now_ms(m->d->loop));
	if (!mc->s)
		return;
	series_hold(mc->s);
	mc->s->v[MV_OPENED]++;
}

void metrics_conn_end(struct metrics *m, struct metrics_conn *mc, struct metrics_labels *l,
		      const char *flag, uint64_t request_bytes, uint64_t response_bytes)
{
	struct series *s;
	uint64_t now;

	if (!m)
		return;
	now = loop_now_ms(m->d->loop);
	if (!mc->s && l)
		metrics_conn_start(m, mc, l);
	if (!mc->s)
		return;
	s = mc->s;
	if (flag && strcmp(flag, "-")) {
		const char *v[ML_COUNT];

		memcpy(v, s->values, sizeof(v));
		v[ML_FLAGS] = flag;
		s = series_get(m->tcp, v, now);
	}
	if (s) {
		s->v[MV_CLOSED]++;
		s->v[MV_FAILED] += s != mc->s;
		s->v[MV_RECEIVED] += request_bytes;
		s->v[MV_SENT] += response_bytes;
		s->last_ms = now;
	}
	series_put(mc->s);
	mc->s = NULL;
	if (now - m->last_expire_ms >= 10000) {
		m->last_expire_ms = now;
		series_expire(m->tcp, now);
	}
}

/* --- rendering ----------------------------------------------------------------- */

static const struct {
	const char *name, *help;
	int idx;
} metrics_tcp[] = {
	{ "istio_tcp_connections_opened_total", "Connections opened through weft.", MV_OPENED },
	{ "istio_tcp_connections_closed_total", "Connections closed through weft.", MV_CLOSED },
	{ "istio_tcp_connections_failed_total", "Connections that ended with a response flag.",
	  MV_FAILED },
	{ "istio_tcp_sent_bytes_total", "Bytes sent to the client app (responses).", MV_SENT },
	{ "istio_tcp_received_bytes_total", "Bytes received from the client app (requests).",
	  MV_RECEIVED },
};
#define METRICS_TCP_FAMILIES (sizeof(metrics_tcp) / sizeof(metrics_tcp[0]))

void metrics_render_start(struct metrics *m, struct metrics_cursor *c)
{
	memset(c, 0, sizeof(*c));
	series_expire(m->tcp, loop_now_ms(m->d->loop));
}

void metrics_render_stop(struct metrics_cursor *c)
{
	if (c->at)
		series_put(c->at);
	c->at = NULL;
}

static void metrics_rest(struct metrics *m, struct promtext *t);

int metrics_render_next(struct metrics *m, struct metrics_cursor *c, struct promtext *t,
			size_t budget)
{
	size_t end = t->len + budget;

	while ((size_t)c->family < METRICS_TCP_FAMILIES) {
		const char *name = metrics_tcp[c->family].name;
		int idx = metrics_tcp[c->family].idx;
		struct series *s;

		if (!c->started) {
			promtext_family(t, name, "counter", metrics_tcp[c->family].help);
			c->started = 1;
			s = (struct series *)series_first(m->tcp);
		} else {
			s = c->at;
			series_put(s);
			c->at = NULL;
		}
		for (; s; s = s->next) {
			if (t->len >= end) {
				series_hold(s);
				c->at = s;
				return 0;
			}
			if (idx == MV_FAILED && !s->v[MV_FAILED])
				continue;
			promtext_put(t, name, strlen(name));
			promtext_put(t, s->labels, s->labels_len);
			promtext_printf(t, " %llu\n", (unsigned long long)s->v[idx]);
		}
		c->family++;
		c->started = 0;
	}
	metrics_rest(m, t);
	return 1;
}

void metrics_render(struct metrics *m, struct promtext *t)
{
	struct metrics_cursor c;

	metrics_render_start(m, &c);
	while (!metrics_render_next(m, &c, t, SIZE_MAX / 2))
		;
}

/* Everything after the istio_tcp families: small, written in one go. */
static void metrics_rest(struct metrics *m, struct promtext *t)
{
	struct weftd *d = m->d;
	static const char *const bk[] = { "version", "mode" };
	const char *bv[] = { WEFT_VERSION, settings_mode_name(d->cfg.mode) };

	promtext_family(t, "weft_build_info", "gauge", "weftd's version and mode.");
	promtext_sample_u64(t, "weft_build_info", bk, bv, 2, 1);
	promtext_family(t, "weft_connections_live", "gauge", "Proxied connections now.");
	promtext_sample_u64(t, "weft_connections_live", NULL, NULL, 0, d->live);
	promtext_family(t, "weft_tunnels_open", "gauge", "Outbound HBONE tunnels now.");
	promtext_sample_u64(t, "weft_tunnels_open", NULL, NULL, 0,
			    d->tunnels ? tunnels_count(d->tunnels) : 0);
	promtext_family(t, "weft_hbone_connections", "gauge",
			"Inbound HBONE connections now.");
	promtext_sample_u64(t, "weft_hbone_connections", NULL, NULL, 0,
			    d->inbound ? inbound_conn_count(d->inbound) : 0);
	promtext_family(t, "weft_pods_enrolled", "gauge", "Pods enrolled on this node.");
	promtext_sample_u64(t, "weft_pods_enrolled", NULL, NULL, 0,
			    d->pods ? pods_count(d->pods) : 0);
	promtext_family(t, "weft_registry_version", "gauge", "Version of the registry applied.");
	promtext_sample_u64(t, "weft_registry_version", NULL, NULL, 0,
			    d->reg ? regcache_version(d->reg) : 0);
	promtext_family(t, "weft_metrics_series", "gauge", "istio_tcp series kept.");
	promtext_sample_u64(t, "weft_metrics_series", NULL, NULL, 0, series_count(m->tcp));
	promtext_family(t, "weft_metrics_series_dropped_total", "counter",
			"Connections not counted in istio_tcp_* because the series cap "
			"(metrics_max_series) was reached.");
	promtext_sample_u64(t, "weft_metrics_series_dropped_total", NULL, NULL, 0,
			    series_dropped(m->tcp));
	promtext_family(t, "weft_policy_denied_total", "counter",
			"Connections denied by authorization policy.");
	promtext_sample_u64(t, "weft_policy_denied_total", NULL, NULL, 0, d->stats.denied);
	promtext_family(t, "weft_policy_denies_total", "counter",
			"Connections denied, by the policy and rule that decided.");
	for (const struct series *s = series_first(m->denies); s; s = s->next) {
		promtext_put(t, "weft_policy_denies_total", 24);
		promtext_put(t, s->labels, s->labels_len);
		promtext_printf(t, " %llu\n", (unsigned long long)s->v[0]);
	}
	if (d->certs)
		certs_metrics(d->certs, t);
	if (d->tunnels)
		tunnels_metrics(d->tunnels, t);
	promtext_process(t);
}
