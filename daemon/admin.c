/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's small HTTP/1.1 endpoints: the admin API on 127.0.0.1:15000
 * (JSON: /tunnels, /workloads, /certs, /stats, /config_dump,
 * /logging?level=, /quitquitquit) and readiness on :15021
 * (/healthz/ready). One request per connection, bounded, then close. */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/conn.h>
#include <weft/log.h>
#include <weft/loop.h>

#include "admin.h"
#include "certs.h"
#include "inbound.h"
#include "pods.h"
#include "regcache.h"
#include "tunnel.h"
#include "weftd.h"

#define ADMIN_REQ_MAX 8192
#define ADMIN_BODY_MAX (256u << 10)

struct admin_listener {
	struct admin *a;
	int fd;
	int is_admin;			/* 0: readiness only */
	struct loop_op op;
};

struct admin {
	struct weftd *d;
	struct admin_listener l[2];
	void (*on_quit)(struct weftd *d);
};

struct admin_req {
	struct admin_listener *l;
	size_t len;
	int answered;
	char buf[ADMIN_REQ_MAX + 1];
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
		     status == 400 ? "Bad Request" : status == 503 ? "Service Unavailable" :
		     "Error", ctype, len);
	conn_write(c, head, n);
	conn_write(c, body, len);
	conn_close(c, 0, NULL);
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
	if (!q->l->is_admin) {
		admin_reply(c, 404, "text/plain", "not found\n", 10);
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
	} else if (!strcmp(path, "/quitquitquit") && !strcmp(method, "POST")) {
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
	char method[8], path[512];
	char *eol;

	if (q->answered)
		return n;
	if (q->len + n > ADMIN_REQ_MAX) {
		q->answered = 1;
		admin_reply(c, 400, "text/plain", "request too large\n", 18);
		return n;
	}
	memcpy(q->buf + q->len, p, n);
	q->len += n;
	q->buf[q->len] = 0;
	if (!strstr(q->buf, "\r\n\r\n") && !strstr(q->buf, "\n\n"))
		return n;
	q->answered = 1;
	eol = strpbrk(q->buf, "\r\n");
	if (eol)
		*eol = 0;
	if (sscanf(q->buf, "%7s %511s", method, path) != 2) {
		admin_reply(c, 400, "text/plain", "bad request\n", 12);
		return n;
	}
	admin_handle(q, c, method, path);
	return n;
}

static void admin_on_close(struct conn *c, int err, const char *why)
{
	(void)err;
	(void)why;
	free(conn_udata(c));
}

static const struct conn_handler admin_conn_handler = {
	.on_data = admin_on_data,
	.on_close = admin_on_close,
};

static void admin_on_accept(struct loop_op *op, int res, unsigned flags)
{
	struct admin_listener *l = (struct admin_listener *)((char *)op -
							      offsetof(struct admin_listener, op));
	struct conn_opts o = { .idle_timeout_ms = 10000 };
	struct admin_req *q;

	if (!(flags & IORING_CQE_F_MORE) && l->fd >= 0)
		loop_accept(l->a->d->loop, &l->op, l->fd);
	if (res < 0)
		return;
	q = calloc(1, sizeof(*q));
	if (!q) {
		close(res);
		return;
	}
	q->l = l;
	if (!conn_accept(l->a->d->loop, res, NULL, &admin_conn_handler, &o, q))
		free(q);
}

static int admin_listen(struct admin *a, struct admin_listener *l, const char *ip,
			uint16_t port, int is_admin)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;

	l->a = a;
	l->is_admin = is_admin;
	l->op.cb = admin_on_accept;
	inet_pton(AF_INET, ip, &sa.sin_addr);
	l->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		return -errno;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(l->fd, 128)) {
		int err = -errno;
		close(l->fd);
		l->fd = -1;
		return err;
	}
	return loop_accept(a->d->loop, &l->op, l->fd);
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
	a->l[0].fd = a->l[1].fd = -1;
	rc = admin_listen(a, &a->l[0], "127.0.0.1", d->cfg.admin_port, 1);
	if (rc) {
		snprintf(err, errlen, "admin listener 127.0.0.1:%u: %s", d->cfg.admin_port,
			 strerror(-rc));
		goto fail;
	}
	rc = admin_listen(a, &a->l[1], "0.0.0.0", d->cfg.ready_port, 0);
	if (rc) {
		snprintf(err, errlen, "readiness listener :%u: %s", d->cfg.ready_port,
			 strerror(-rc));
		goto fail;
	}
	return a;
fail:
	admin_free(a);
	return NULL;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	for (int i = 0; i < 2; i++)
		if (a->l[i].fd >= 0)
			close(a->l[i].fd);
	free(a);
}
