/* SPDX-License-Identifier: Apache-2.0 */
/* What weftd's small HTTP/1.1 endpoints answer (the bounded serving is
 * lib/httpsrv.c): the admin API on 127.0.0.1:15000, or in sidecar mode on
 * the unix socket state_dir/admin.sock (mode 0600) outside the pod's network
 * namespace (JSON: /tunnels, /workloads, /services, /policy, /certs,
 * /connections, /explain, /why, /stats, /config_dump, /logging[?level=],
 * /quitquitquit; the two that change something need POST), readiness on
 * :15021 (/healthz/ready) and Prometheus metrics on :15020 (/metrics,
 * /stats/prometheus; metrics.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <weft/httpreq.h>
#include <weft/httpsrv.h>
#include <weft/log.h>
#include <weft/loop.h>
#include <weft/registry.h>
#include <weft/sockaddr.h>

#include "admin.h"
#include "certs.h"
#include "explain.h"
#include "failures.h"
#include "inbound.h"
#include "live.h"
#include "metrics.h"
#include "pods.h"
#include "regapply.h"
#include <weft/regcache.h>
#include "jsonw.h"
#include "regjson.h"
#include "tunnel.h"
#include "weftd.h"

#define ADMIN_BODY_MAX (256u << 10)
/* Open connections: readiness is probed by the kubelet (the node's address)
 * and anyone who can reach the node, so one address gets a share only; the
 * admin API has one address (loopback, or the unix socket). */
#define ADMIN_READY_CONNS 256
#define ADMIN_READY_CONNS_PER_ADDR 32
#define ADMIN_API_CONNS 64
#define ADMIN_SOCK_NAME "admin.sock"

struct admin {
	struct weftd *d;
	struct httpsrv *api, *ready, *metrics;
	void (*on_quit)(struct weftd *d);
	char sock_path[128];		/* sidecar mode: the admin socket we made */
};

static void admin_text(struct httpsrv_req *q, int status, const char *msg)
{
	httpsrv_reply(q, status, "text/plain", msg, strlen(msg));
}

/* /healthz/ready, answered on every port; 1 when path was it. */
static int admin_ready(struct httpsrv_req *q, struct weftd *d, const char *path)
{
	if (strcmp(path, "/healthz/ready"))
		return 0;
	if (weftd_ready(d))
		admin_text(q, 200, "ready\n");
	else
		admin_text(q, 503, "not ready\n");
	return 1;
}

static void admin_ready_handle(struct httpsrv_req *q, const char *method, const char *path,
			       void *udata)
{
	struct admin *a = udata;

	(void)method;
	if (!admin_ready(q, a->d, path))
		admin_text(q, 404, "not found\n");
}

/* A scrape: the metrics cursor walks the series as the client reads. */
struct admin_scrape {
	struct metrics *m;
	struct metrics_cursor cur;
};

static int admin_scrape_next(void *st, struct promtext *out, size_t piece)
{
	struct admin_scrape *sc = st;

	return metrics_render_next(sc->m, &sc->cur, out, piece);
}

static void admin_scrape_stop(void *st)
{
	struct admin_scrape *sc = st;

	metrics_render_stop(&sc->cur);
	free(sc);
}

static const struct httpsrv_stream admin_scrape_stream = {
	.next = admin_scrape_next,
	.stop = admin_scrape_stop,
};

static void admin_metrics_handle(struct httpsrv_req *q, const char *method, const char *path,
				 void *udata)
{
	struct admin *a = udata;
	struct admin_scrape *sc;

	if (admin_ready(q, a->d, path))
		return;
	if (strcmp(method, "GET") ||
	    (strcmp(path, "/metrics") && strcmp(path, "/stats/prometheus"))) {
		admin_text(q, 404, "not found\n");
		return;
	}
	if (!a->d->metrics) {
		admin_text(q, 503, "no metrics\n");
		return;
	}
	sc = calloc(1, sizeof(*sc));
	if (!sc) {
		admin_text(q, 503, "out of memory\n");
		return;
	}
	sc->m = a->d->metrics;
	metrics_render_start(sc->m, &sc->cur);
	httpsrv_stream(q, PROMTEXT_CONTENT_TYPE, &admin_scrape_stream, sc);
}

/* /stats (and /config_dump): the node, its counters, the federated trust
 * domains and the remote networks it knows. */
static size_t admin_stats(struct weftd *d, char *body, size_t cap)
{
	const struct registry *r = regcache_registry(d->reg);
	struct jw w = { body, cap, 0 };

	jw_put(&w, "{\"node\":");
	jw_str(&w, d->cfg.node_name);
	jw_put(&w, ",\"node_ip\":");
	jw_str(&w, d->cfg.node_ip);
	jw_put(&w, ",\"trust_domain\":");
	jw_str(&w, d->cfg.trust_domain);
	jw_put(&w, ",\"ready\":%s,\"registry_version\":%llu,\"pods\":%u,\"tunnels\":%u,"
	       "\"hbone_connections\":%u,\"live_connections\":%lu,"
	       "\"outbound\":%llu,\"inbound\":%llu,\"inbound_plaintext\":%llu,"
	       "\"same_node\":%llu,\"passthrough\":%llu,\"failed\":%llu,"
	       "\"same_node_fast_path\":%s,\"unknown_destination\":\"%s\"",
	       weftd_ready(d) ? "true" : "false",
	       (unsigned long long)regcache_version(d->reg), pods_count(d->pods),
	       tunnels_count(d->tunnels), d->inbound ? inbound_conn_count(d->inbound) : 0,
	       d->live, (unsigned long long)d->stats.outbound,
	       (unsigned long long)d->stats.inbound, (unsigned long long)d->stats.inbound_plain,
	       (unsigned long long)d->stats.same_node, (unsigned long long)d->stats.passthrough,
	       (unsigned long long)d->stats.failed, d->cfg.same_node_fast_path ? "true" : "false",
	       d->cfg.unknown_destination ? "deny" : "passthrough");
	jw_put(&w, ",\"gateway_streams\":%llu", (unsigned long long)d->stats.gateway_streams);
	jw_put(&w, ",\"pod_sockets_ahead\":%llu,\"pod_sockets_in_place\":%llu,"
	       "\"pod_sockets_ready\":%lu",
	       (unsigned long long)d->stats.sockets_ahead,
	       (unsigned long long)d->stats.sockets_in_place,
	       d->pods ? pods_sockets_ready(d->pods) : 0);
	jw_put(&w, ",\"registry_updates_pending\":%u,\"registry_apply_ms\":%.1f,"
	       "\"loop_longest_turn_us\":%llu",
	       regapply_pending(d->regapply), regapply_last_ms(d->regapply),
	       (unsigned long long)(d->loop ? loop_turn_max_us(d->loop) : 0));
	jw_put(&w, ",\"federated_trust_domains\":[");
	for (size_t i = 0; i < r->n_bundles; i++) {
		jw_put(&w, i ? "," : "");
		jw_str(&w, r->bundles[i].trust_domain);
	}
	jw_put(&w, "],\"remote_networks\":[");
	for (size_t i = 0; r->remotes && i < r->remotes->n; i++) {
		const struct reg_remote *rm = &r->remotes->v[i];

		jw_put(&w, "%s{\"network\":", i ? "," : "");
		jw_str(&w, rm->network);
		jw_put(&w, ",\"trust_domain\":");
		jw_str(&w, rm->trust_domain);
		jw_put(&w, ",\"nodes\":%zu,\"workloads\":%zu,\"services\":%zu,\"unpooled\":%s}",
		       rm->reg->n_nodes, rm->reg->n_workloads, rm->reg->n_services,
		       rm->unpooled ? "true" : "false");
	}
	jw_put(&w, "]}");
	return jw_end(&w);
}

static void admin_api_handle(struct httpsrv_req *q, const char *method, const char *path,
			     void *udata)
{
	struct admin *a = udata;
	struct weftd *d = a->d;
	char *body;
	size_t n = 0;

	if (admin_ready(q, d, path))
		return;
	/* Changes need POST: a GET can come from a link, a prefetch or a
	 * confused client, and must never stop the node or flood its log. */
	if (strcmp(method, "POST") &&
	    (!strcmp(path, "/quitquitquit") || (!strncmp(path, "/logging", 8) &&
						strstr(path, "level=")))) {
		admin_text(q, 405, "use POST to change something\n");
		return;
	}
	body = malloc(ADMIN_BODY_MAX);
	if (!body) {
		admin_text(q, 503, "out of memory\n");
		return;
	}
	if (!strcmp(path, "/tunnels")) {
		n = tunnels_json(d->tunnels, body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/workloads")) {
		n = pods_json(d->pods, body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/certs")) {
		n = certs_json(d->certs, body, ADMIN_BODY_MAX);
	} else if (!strncmp(path, "/explain?", 9)) {
		char src[256], dst[128];

		if (httpreq_query(path, "src", src, sizeof(src)) ||
		    httpreq_query(path, "dst", dst, sizeof(dst))) {
			free(body);
			admin_text(q, 400, "explain needs ?src=POD&dst=IP:PORT\n");
			return;
		}
		n = explain_json(d, src, dst, body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/why") || !strncmp(path, "/why?", 5)) {
		char trace[64];

		n = failures_json(httpreq_query(path, "trace", trace, sizeof(trace)) ? NULL : trace,
				  NULL, 20, body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/connections")) {
		n = live_json(loop_now_ms(d->loop), 1000, body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/services")) {
		n = regjson_services(regcache_registry(d->reg), body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/policy")) {
		n = regjson_policies(regcache_registry(d->reg), body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/stats") || !strcmp(path, "/config_dump")) {
		n = admin_stats(d, body, ADMIN_BODY_MAX);
	} else if (!strncmp(path, "/logging", 8)) {
		const char *lv = strstr(path, "level=");
		if (lv && log_level_set(lv + 6) == 0)
			log_info("log level set to %s", lv + 6);
		n = snprintf(body, ADMIN_BODY_MAX, "{\"level\":\"%s\"}",
			     log_level_name(log_level));
	} else if (!strcmp(path, "/quitquitquit")) {
		n = snprintf(body, ADMIN_BODY_MAX, "{\"draining\":true}");
		if (a->on_quit)
			a->on_quit(d);
	} else {
		free(body);
		admin_text(q, 404, "not found\n");
		return;
	}
	if (n > ADMIN_BODY_MAX)
		n = ADMIN_BODY_MAX;
	httpsrv_reply(q, 200, "application/json", body, n);
	free(body);
}

/* Serve handle on ip:port; the name goes into logs ("metrics 0.0.0.0:15020"). */
static struct httpsrv *admin_listen_tcp(struct admin *a, const char *what, const char *ip,
					uint16_t port, unsigned total, unsigned per_addr,
					httpsrv_handler handle, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct httpsrv_opts o = {
		.conns = total, .conns_per_addr = per_addr, .use_reserve = 1,
		.handle = handle, .udata = a,
	};
	struct httpsrv *s;
	char name[96];
	socklen_t len;
	int rc;

	snprintf(name, sizeof(name), "%s %s:%u", what, ip, port);
	o.name = name;
	rc = sockaddr_from_ip(ip, port, &ss, &len);
	s = rc ? NULL : httpsrv_tcp(a->d->loop, (struct sockaddr *)&ss, len, &o, &rc);
	if (!s)
		snprintf(err, errlen, "%s: %s", name, strerror(-rc));
	return s;
}

/* Sidecar mode: the admin API on a unix socket in state_dir, which the
 * pod's processes share no network namespace with (127.0.0.1:15000 would
 * be theirs to reach). Mode 0600 before listen, so there is no window with
 * the umask's looser one. */
static struct httpsrv *admin_listen_unix(struct admin *a, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct httpsrv_opts o = {
		.conns = ADMIN_API_CONNS, .conns_per_addr = ADMIN_API_CONNS, .use_reserve = 1,
		.handle = admin_api_handle, .udata = a,
	};
	struct httpsrv *s;
	char name[160];
	struct stat st;
	int fd, n, rc;

	n = snprintf(a->sock_path, sizeof(a->sock_path), "%s/%s", a->d->cfg.state_dir,
		     ADMIN_SOCK_NAME);
	snprintf(name, sizeof(name), "admin %s", a->sock_path);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path) || (size_t)n >= sizeof(a->sock_path)) {
		a->sock_path[0] = 0;
		rc = -ENAMETOOLONG;
		goto fail;
	}
	memcpy(sa.sun_path, a->sock_path, (size_t)n + 1);
	/* A socket left by a dead weftd; anything else is not ours. */
	if (lstat(a->sock_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			a->sock_path[0] = 0;
			rc = -EEXIST;
			goto fail;
		}
		unlink(a->sock_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(a->sock_path, 0600) < 0 ||
	    listen(fd, 128) < 0) {
		rc = -errno;
		close(fd);
		goto fail;
	}
	o.name = name;
	s = httpsrv_new(a->d->loop, fd, &o);
	if (s)
		return s;
	rc = -ENOMEM;
fail:
	snprintf(err, errlen, "%s: %s", name, strerror(-rc));
	return NULL;
}

struct admin *admin_new(struct weftd *d, void (*on_quit)(struct weftd *d), char *err,
			size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	const char *any = "0.0.0.0";

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->d = d;
	a->on_quit = on_quit;
	if (d->cfg.mode == SETTINGS_MODE_SIDECAR)
		a->api = admin_listen_unix(a, err, errlen);
	else
		a->api = admin_listen_tcp(a, "admin", "127.0.0.1", d->cfg.admin_port,
					  ADMIN_API_CONNS, ADMIN_API_CONNS, admin_api_handle,
					  err, errlen);
	if (!a->api)
		goto fail;
	/* A gateway's node_ip faces the WAN: only 15008 listens there. */
	if (d->cfg.mode == SETTINGS_MODE_GATEWAY)
		any = d->cfg.internal_ip;
	a->ready = admin_listen_tcp(a, "readiness", any, d->cfg.ready_port,
				    ADMIN_READY_CONNS, ADMIN_READY_CONNS_PER_ADDR,
				    admin_ready_handle, err, errlen);
	if (!a->ready)
		goto fail;
	/* Sidecar mode is for benchmarks only: its pod's 15020 is the app's. */
	if (d->cfg.mode != SETTINGS_MODE_SIDECAR) {
		a->metrics = admin_listen_tcp(a, "metrics", any, d->cfg.metrics_port,
					      ADMIN_READY_CONNS, ADMIN_READY_CONNS_PER_ADDR,
					      admin_metrics_handle, err, errlen);
		if (!a->metrics)
			goto fail;
	}
	return a;
fail:
	admin_free(a);
	return NULL;
}

const char *admin_where(const struct admin *a)
{
	return httpsrv_where(a->api);
}

/* At exit: connections still open are dropped with the loop. */
void admin_free(struct admin *a)
{
	if (!a)
		return;
	httpsrv_free(a->api);
	httpsrv_free(a->ready);
	httpsrv_free(a->metrics);
	if (a->sock_path[0])
		unlink(a->sock_path);
	free(a);
}
