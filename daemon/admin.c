/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's small HTTP/1.1 endpoints: the admin API on 127.0.0.1:15000, or in
 * sidecar mode on the unix socket state_dir/admin.sock (mode 0600) outside
 * the pod's network namespace (JSON: /tunnels, /workloads, /services,
 * /policy, /certs, /stats,
 * /config_dump, /logging[?level=], /quitquitquit; the two that change
 * something need POST), readiness on :15021 (/healthz/ready) and Prometheus
 * metrics on :15020 (/metrics, /stats/prometheus; metrics.c). One request
 * per connection, bounded in size, in time (an absolute deadline, not an idle
 * timer a slow client can keep resetting) and in number (per source address
 * and in all), then close. */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <weft/conn.h>
#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>

#include "admin.h"
#include "adminreq.h"
#include "certs.h"
#include "explain.h"
#include "failures.h"
#include "inbound.h"
#include "live.h"
#include "metrics.h"
#include "pods.h"
#include "regcache.h"
#include "regjson.h"
#include "tunnel.h"
#include "weftd.h"

#define ADMIN_REQ_MAX 8192
#define ADMIN_BODY_MAX (256u << 10)
/* From accept to the end of the answer; a request is one short line. */
#define ADMIN_DEADLINE_MS 5000
/* Open connections: readiness is probed by the kubelet (the node's address)
 * and anyone who can reach the node, so one address gets a share only; the
 * admin API has one address (loopback, or the unix socket). */
#define ADMIN_READY_CONNS 256
#define ADMIN_READY_CONNS_PER_ADDR 32
#define ADMIN_API_CONNS 64
#define ADMIN_SOCK_NAME "admin.sock"

enum admin_kind {
	ADMIN_READY = 0,		/* /healthz/ready only */
	ADMIN_API,
	ADMIN_METRICS,
};

struct admin_listener {
	struct admin *a;
	int kind;			/* enum admin_kind */
	struct listener ls;
	struct listener_pending *conns;	/* open connections per address */
	char where[160];		/* "127.0.0.1:15000" or the socket path */
};

struct admin {
	struct weftd *d;
	struct admin_listener l[3];
	void (*on_quit)(struct weftd *d);
	char sock_path[128];		/* sidecar mode: the admin socket we made */
};

struct admin_req {
	struct admin_listener *l;
	struct conn *conn;
	struct loop_timer deadline;
	size_t len;
	int answered;
	struct promtext out;		/* the piece of a scrape being written */
	size_t out_off;
	int scraping;			/* cur is live */
	int scrape_done;		/* the last piece is in out */
	struct metrics_cursor cur;
	char buf[ADMIN_REQ_MAX];
};

static void admin_reply(struct conn *c, int status, const char *ctype, const char *body,
			size_t len)
{
	char head[256];
	int n;

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n", status,
		     status == 200 ? "OK" : status == 404 ? "Not Found" :
		     status == 400 ? "Bad Request" : status == 405 ? "Method Not Allowed" :
		     status == 503 ? "Service Unavailable" : "Error", ctype, len);
	conn_write(c, head, n);
	conn_write(c, body, len);
	conn_close(c, 0, NULL);
}

/* A scrape: pieces of ~64 KiB rendered as the client takes them, so a
 * big exposition neither holds the loop nor a buffer of its whole size.
 * The body ends when the connection closes (no Content-Length). */
#define ADMIN_SCRAPE_PIECE (64u << 10)

static void admin_scrape_more(struct admin_req *q)
{
	struct metrics *m = q->l->a->d->metrics;

	for (;;) {
		while (q->out_off < q->out.len) {
			size_t n = conn_out_space(q->conn);

			if (!n)
				return;		/* on_writable brings us back */
			if (n > q->out.len - q->out_off)
				n = q->out.len - q->out_off;
			if (conn_write(q->conn, q->out.p + q->out_off, n) < 0) {
				conn_abort(q->conn, -EPIPE, "cannot write");
				return;
			}
			q->out_off += n;
		}
		if (q->scrape_done || q->out.oom) {
			conn_close(q->conn, 0, NULL);
			return;
		}
		q->out.len = q->out_off = 0;
		q->scrape_done = metrics_render_next(m, &q->cur, &q->out, ADMIN_SCRAPE_PIECE);
		if (q->scrape_done)
			q->scraping = 0;	/* the cursor holds nothing now */
	}
}

static void admin_on_writable(struct conn *c)
{
	struct admin_req *q = conn_udata(c);

	if (q->out.p)
		admin_scrape_more(q);
}

static void admin_metrics(struct admin_req *q, struct weftd *d)
{
	char head[160];
	int n;

	if (!d->metrics) {
		admin_reply(q->conn, 503, "text/plain", "no metrics\n", 11);
		return;
	}
	n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
		     "Connection: close\r\n\r\n", PROMTEXT_CONTENT_TYPE);
	conn_write(q->conn, head, (size_t)n);
	promtext_init(&q->out);
	metrics_render_start(d->metrics, &q->cur);
	q->scraping = 1;
	admin_scrape_more(q);
}

static void admin_handle(struct admin_req *q, struct conn *c, const char *method,
			 const char *path)
{
	struct admin *a = q->l->a;
	struct weftd *d = a->d;
	char *body;
	size_t n = 0;

	if (!strcmp(path, "/healthz/ready")) {
		static const char ok[] = "ready\n", no[] = "not ready\n";
		if (weftd_ready(d))
			admin_reply(c, 200, "text/plain", ok, sizeof(ok) - 1);
		else
			admin_reply(c, 503, "text/plain", no, sizeof(no) - 1);
		return;
	}
	if (q->l->kind == ADMIN_METRICS) {
		if (strcmp(method, "GET") ||
		    (strcmp(path, "/metrics") && strcmp(path, "/stats/prometheus")))
			admin_reply(c, 404, "text/plain", "not found\n", 10);
		else
			admin_metrics(q, d);
		return;
	}
	if (q->l->kind != ADMIN_API) {
		admin_reply(c, 404, "text/plain", "not found\n", 10);
		return;
	}
	/* Changes need POST: a GET can come from a link, a prefetch or a
	 * confused client, and must never stop the node or flood its log. */
	if (strcmp(method, "POST") &&
	    (!strcmp(path, "/quitquitquit") || (!strncmp(path, "/logging", 8) &&
						strstr(path, "level=")))) {
		static const char msg[] = "use POST to change something\n";
		admin_reply(c, 405, "text/plain", msg, sizeof(msg) - 1);
		return;
	}
	body = malloc(ADMIN_BODY_MAX);
	if (!body) {
		admin_reply(c, 503, "text/plain", "out of memory\n", 14);
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

		if (adminreq_query(path, "src", src, sizeof(src)) ||
		    adminreq_query(path, "dst", dst, sizeof(dst))) {
			free(body);
			admin_reply(c, 400, "text/plain", "explain needs ?src=POD&dst=IP:PORT\n", 35);
			return;
		}
		n = explain_json(d, src, dst, body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/why") || !strncmp(path, "/why?", 5)) {
		char trace[64];

		n = failures_json(adminreq_query(path, "trace", trace, sizeof(trace)) ? NULL : trace,
				  NULL, 20, body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/connections")) {
		n = live_json(loop_now_ms(d->loop), 1000, body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/services")) {
		n = regjson_services(regcache_registry(d->reg), body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/policy")) {
		n = regjson_policies(regcache_registry(d->reg), body, ADMIN_BODY_MAX);
	} else if (!strcmp(path, "/stats") || !strcmp(path, "/config_dump")) {
		n = snprintf(body, ADMIN_BODY_MAX,
			     "{\"node\":\"%s\",\"node_ip\":\"%s\",\"trust_domain\":\"%s\","
			     "\"ready\":%s,\"registry_version\":%llu,\"pods\":%u,\"tunnels\":%u,"
			     "\"hbone_connections\":%u,\"live_connections\":%lu,"
			     "\"outbound\":%llu,\"inbound\":%llu,\"inbound_plaintext\":%llu,"
			     "\"same_node\":%llu,\"passthrough\":%llu,\"failed\":%llu,"
			     "\"same_node_fast_path\":%s,\"unknown_destination\":\"%s\"}",
			     d->cfg.node_name, d->cfg.node_ip, d->cfg.trust_domain,
			     weftd_ready(d) ? "true" : "false",
			     (unsigned long long)regcache_version(d->reg), pods_count(d->pods),
			     tunnels_count(d->tunnels),
			     d->inbound ? inbound_conn_count(d->inbound) : 0, d->live,
			     (unsigned long long)d->stats.outbound,
			     (unsigned long long)d->stats.inbound,
			     (unsigned long long)d->stats.inbound_plain,
			     (unsigned long long)d->stats.same_node,
			     (unsigned long long)d->stats.passthrough,
			     (unsigned long long)d->stats.failed,
			     d->cfg.same_node_fast_path ? "true" : "false",
			     d->cfg.unknown_destination ? "deny" : "passthrough");
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
		admin_reply(c, 404, "text/plain", "not found\n", 10);
		return;
	}
	if (n > ADMIN_BODY_MAX)
		n = ADMIN_BODY_MAX;
	admin_reply(c, 200, "application/json", body, n);
	free(body);
}

static size_t admin_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct admin_req *q = conn_udata(c);
	char method[ADMINREQ_METHOD_MAX], path[ADMINREQ_PATH_MAX];

	if (q->answered)
		return n;
	if (q->len + n > ADMIN_REQ_MAX) {
		q->answered = 1;
		admin_reply(c, 400, "text/plain", "request too large\n", 18);
		return n;
	}
	memcpy(q->buf + q->len, p, n);
	q->len += n;
	switch (adminreq_parse(q->buf, q->len, method, path)) {
	case ADMINREQ_MORE:
		return n;
	case ADMINREQ_BAD:
		q->answered = 1;
		admin_reply(c, 400, "text/plain", "bad request\n", 12);
		return n;
	case ADMINREQ_OK:
		break;
	}
	q->answered = 1;
	admin_handle(q, c, method, path);
	return n;
}

static void admin_on_close(struct conn *c, int err, const char *why)
{
	struct admin_req *q = conn_udata(c);

	(void)err;
	(void)why;
	loop_timer_disarm(q->l->a->d->loop, &q->deadline);
	if (q->scraping)
		metrics_render_stop(&q->cur);
	promtext_release(&q->out);
	free(q);
}

static const struct conn_handler admin_conn_handler = {
	.on_data = admin_on_data,
	.on_writable = admin_on_writable,
	.on_close = admin_on_close,
};

/* The deadline counts from accept: trickling bytes do not extend it. */
static void admin_on_deadline(struct loop_timer *t)
{
	struct admin_req *q = (struct admin_req *)((char *)t - offsetof(struct admin_req,
								       deadline));

	conn_abort(q->conn, -ETIMEDOUT, "request deadline");
}

static void admin_on_accept(struct listener *ls, int fd)
{
	static struct log_rl rl = LOG_RL_INIT;
	struct admin_listener *l = listener_udata(ls);
	struct loop *loop = l->a->d->loop;
	struct conn_opts o = { .pending = l->conns };
	struct admin_req *q;

	q = calloc(1, sizeof(*q));
	if (!q) {
		close(fd);
		return;
	}
	q->l = l;
	q->deadline.cb = admin_on_deadline;
	q->conn = conn_accept(loop, fd, NULL, &admin_conn_handler, &o, q);
	if (!q->conn) {
		const char *why = listener_pending_refusal(errno);

		if (why)
			log_warn_rl(&rl, "%s: connection refused: open connections: %s", l->where,
				    why);
		free(q);
		return;
	}
	loop_timer_arm(loop, &q->deadline, ADMIN_DEADLINE_MS);
}

static int admin_start(struct admin *a, struct admin_listener *l, int fd, int kind,
		       unsigned total, unsigned per_addr)
{
	l->a = a;
	l->kind = kind;
	l->conns = listener_pending_new(total, per_addr);
	if (!l->conns) {
		close(fd);
		return -ENOMEM;
	}
	listener_start(&l->ls, a->d->loop, fd, l->where, admin_on_accept, NULL, l);
	listener_use_reserve(&l->ls);
	return 0;
}

static int admin_listen_tcp(struct admin *a, struct admin_listener *l, const char *ip,
			    uint16_t port, int kind, unsigned total, unsigned per_addr)
{
	static const char *const names[] = { "readiness", "admin", "metrics" };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd;

	inet_pton(AF_INET, ip, &sa.sin_addr);
	snprintf(l->where, sizeof(l->where), "%s %s:%u", names[kind], ip, port);
	fd = listener_socket((struct sockaddr *)&sa, sizeof(sa), 128);
	if (fd < 0)
		return fd;
	return admin_start(a, l, fd, kind, total, per_addr);
}

/* Sidecar mode: the admin API on a unix socket in state_dir, which the
 * pod's processes share no network namespace with (127.0.0.1:15000 would
 * be theirs to reach). Mode 0600 before listen, so there is no window with
 * the umask's looser one. */
static int admin_listen_unix(struct admin *a, struct admin_listener *l)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, n;

	n = snprintf(a->sock_path, sizeof(a->sock_path), "%s/%s", a->d->cfg.state_dir,
		     ADMIN_SOCK_NAME);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path) || (size_t)n >= sizeof(a->sock_path)) {
		a->sock_path[0] = 0;
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, a->sock_path, (size_t)n + 1);
	snprintf(l->where, sizeof(l->where), "admin %s", a->sock_path);
	/* A socket left by a dead weftd; anything else is not ours. */
	if (lstat(a->sock_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			a->sock_path[0] = 0;
			return -EEXIST;
		}
		unlink(a->sock_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(a->sock_path, 0600) < 0 ||
	    listen(fd, 128) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return admin_start(a, l, fd, ADMIN_API, ADMIN_API_CONNS, ADMIN_API_CONNS);
}

struct admin *admin_new(struct weftd *d, void (*on_quit)(struct weftd *d), char *err,
			size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	int rc;

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->d = d;
	a->on_quit = on_quit;
	if (d->cfg.mode == SETTINGS_MODE_SIDECAR)
		rc = admin_listen_unix(a, &a->l[0]);
	else
		rc = admin_listen_tcp(a, &a->l[0], "127.0.0.1", d->cfg.admin_port, ADMIN_API,
				      ADMIN_API_CONNS, ADMIN_API_CONNS);
	if (rc) {
		snprintf(err, errlen, "%s: %s", a->l[0].where, strerror(-rc));
		goto fail;
	}
	rc = admin_listen_tcp(a, &a->l[1], "0.0.0.0", d->cfg.ready_port, ADMIN_READY,
			      ADMIN_READY_CONNS, ADMIN_READY_CONNS_PER_ADDR);
	if (rc) {
		snprintf(err, errlen, "%s: %s", a->l[1].where, strerror(-rc));
		goto fail;
	}
	/* Sidecar mode is for benchmarks only: its pod's 15020 is the app's. */
	if (d->cfg.mode != SETTINGS_MODE_SIDECAR) {
		rc = admin_listen_tcp(a, &a->l[2], "0.0.0.0", d->cfg.metrics_port, ADMIN_METRICS,
				      ADMIN_READY_CONNS, ADMIN_READY_CONNS_PER_ADDR);
		if (rc) {
			snprintf(err, errlen, "%s: %s", a->l[2].where, strerror(-rc));
			goto fail;
		}
	}
	return a;
fail:
	admin_free(a);
	return NULL;
}

const char *admin_where(const struct admin *a)
{
	return a->l[0].where;
}

/* At exit: connections still open are dropped with the loop. */
void admin_free(struct admin *a)
{
	if (!a)
		return;
	for (int i = 0; i < 3; i++) {
		listener_deinit(&a->l[i].ls);
		listener_pending_free(a->l[i].conns);
	}
	if (a->sock_path[0])
		unlink(a->sock_path);
	free(a);
}
