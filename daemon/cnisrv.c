/* SPDX-License-Identifier: Apache-2.0 */
/* The enrollment socket server: a SOCK_SEQPACKET listener weft-cni connects
 * to, Hello on connect, then one WorkloadRequest -> one Ack at a time per
 * client, the pod netns arriving as SCM_RIGHTS. All socket I/O goes through
 * the io_uring loop; the handler runs synchronously in loop context.
 *
 * Lifetime: each client has at most one recv or send in flight, then the
 * close. A client is freed from a task once nothing in flight points at it;
 * the server once its accept has ended and its last client is gone.
 * A zero-length datagram reads as end of stream (recv returns 0 for both),
 * so it closes the connection without an Ack. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/nsfs.h>
#include <liburing.h>	/* IORING_CQE_F_MORE */

#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>

#include "cnisrv.h"

/* One datagram in either direction; weft-cni's AddWorkload is a few hundred
 * bytes, so anything near this is not weft-cni. */
#define CNISRV_MSG_MAX (64u * 1024)
/* Room for more fds than a valid message carries (one), so that a peer
 * sending a few extra gets them closed instead of MSG_CTRUNC. */
#define CNISRV_FDS_MAX 8
/* Ack or Hello: an error string from the handler plus framing. */
#define CNISRV_OUT_MAX 1024
#define CNISRV_ERR_MAX 512
/* weft-cni connects per request and is gone within seconds; a client that
 * sits idle this long or beyond this count is not one. */
#define CNISRV_IDLE_MS 30000u
#define CNISRV_CLIENTS_MAX 64
#define CNISRV_BACKLOG 64
#define CNISRV_VERSION 1

#define cnisrv_container_of(p, type, m) ((type *)((char *)(p) - offsetof(type, m)))

enum cnisrv_client_state {
	CNISRV_HELLO = 1,	/* sending Hello */
	CNISRV_RECV,		/* waiting for a request */
	CNISRV_ACK,		/* sending an Ack */
	CNISRV_CLOSING,		/* close queued; freed once nops is 0 */
};

struct cnisrv_client {
	struct cnisrv *s;
	struct cnisrv_client *prev, *next;
	int fd;
	enum cnisrv_client_state state;
	unsigned nops;			/* operations in flight that point here */
	int close_after_send;		/* the Ack reports a protocol error */
	struct loop_op io_op;		/* the recv or send in flight */
	struct loop_op close_op;
	struct loop_timer idle;
	struct loop_task free_task;
	struct msghdr msg;
	struct iovec iov;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(CNISRV_FDS_MAX * sizeof(int))];
	} cbuf;
	size_t outlen;
	uint8_t out[CNISRV_OUT_MAX];
	uint8_t in[CNISRV_MSG_MAX];
};

struct cnisrv {
	struct loop *l;
	int fd;
	char *path;
	dev_t dev;			/* the socket file we made, so free */
	ino_t ino;			/* unlinks ours and not a successor's */
	struct cnisrv_handler h;
	void *arg;
	int closing;
	int ls_closed;			/* the listener is done (on_closed came) */
	struct listener ls;		/* owns fd once started */
	struct loop_task free_task;
	struct cnisrv_client *clients;
	unsigned nclients;
};

static void cnisrv_client_close(struct cnisrv_client *c);
static void cnisrv_client_recv(struct cnisrv_client *c);

/* --- server teardown ------------------------------------------------------ */

static void cnisrv_on_free(struct loop_task *t)
{
	struct cnisrv *s = cnisrv_container_of(t, struct cnisrv, free_task);
	struct stat st;

	if (stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	free(s->path);
	free(s);
}

/* The server is freed once its listener has closed (its accept ended and
 * the socket is gone) and every client is done too. */
static void cnisrv_maybe_free(struct cnisrv *s)
{
	if (s->closing && s->ls_closed && !s->nclients)
		loop_task_queue(s->l, &s->free_task);
}

/* --- clients -------------------------------------------------------------- */

static void cnisrv_client_on_free(struct loop_task *t)
{
	struct cnisrv_client *c = cnisrv_container_of(t, struct cnisrv_client, free_task);
	struct cnisrv *s = c->s;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nclients--;
	free(c);
	cnisrv_maybe_free(s);
}

/* Once nothing is in flight: close the socket through the ring, then free
 * from a task after that completion. */
static void cnisrv_client_maybe_free(struct cnisrv_client *c)
{
	if (c->state != CNISRV_CLOSING || c->nops)
		return;
	if (c->fd >= 0) {
		if (loop_close(c->s->l, &c->close_op, c->fd) == 0) {
			c->fd = -1;
			c->nops++;
			return;
		}
		/* No SQE even after a submit: close here rather than leak. */
		close(c->fd);
		c->fd = -1;
	}
	loop_task_queue(c->s->l, &c->free_task);
}

static void cnisrv_client_on_close(struct loop_op *op, int res, unsigned flags)
{
	struct cnisrv_client *c = cnisrv_container_of(op, struct cnisrv_client, close_op);

	(void)res;
	(void)flags;
	c->nops--;
	cnisrv_client_maybe_free(c);
}

/* Stop the client. A recv in flight is ended by shutdown(), which makes it
 * complete with 0 at once; that is more dependable than cancel-by-fd, which
 * can miss a request whose completion is already on its way. The socket is
 * closed only when nothing in flight refers to it. */
static void cnisrv_client_close(struct cnisrv_client *c)
{
	if (c->state == CNISRV_CLOSING)
		return;
	c->state = CNISRV_CLOSING;
	loop_timer_disarm(c->s->l, &c->idle);
	if (c->nops)
		shutdown(c->fd, SHUT_RDWR);
	cnisrv_client_maybe_free(c);
}

static void cnisrv_client_on_idle(struct loop_timer *t)
{
	struct cnisrv_client *c = cnisrv_container_of(t, struct cnisrv_client, idle);

	log_info("cni.sock: closing a client idle for %u s", CNISRV_IDLE_MS / 1000);
	cnisrv_client_close(c);
}

static void cnisrv_client_on_send(struct loop_op *op, int res, unsigned flags)
{
	struct cnisrv_client *c = cnisrv_container_of(op, struct cnisrv_client, io_op);

	(void)flags;
	c->nops--;
	if (c->state == CNISRV_CLOSING) {
		cnisrv_client_maybe_free(c);
		return;
	}
	if (res != (int)c->outlen) {
		log_warn("cni.sock: send to weft-cni: %s",
			 res < 0 ? strerror(-res) : "short write");
		cnisrv_client_close(c);
		return;
	}
	if (c->close_after_send) {
		cnisrv_client_close(c);
		return;
	}
	cnisrv_client_recv(c);
}

static void cnisrv_client_send(struct cnisrv_client *c, const Weft__Cni__V1__WorkloadResponse *r)
{
	int ret;

	/* Bounded by construction: Hello, or an Ack whose error is cut to
	 * CNISRV_ERR_MAX. */
	c->outlen = weft__cni__v1__workload_response__get_packed_size(r);
	if (c->outlen > sizeof(c->out)) {
		log_error("cni.sock: response of %zu bytes does not fit", c->outlen);
		cnisrv_client_close(c);
		return;
	}
	weft__cni__v1__workload_response__pack(r, c->out);
	c->io_op.cb = cnisrv_client_on_send;
	ret = loop_send(c->s->l, &c->io_op, c->fd, c->out, c->outlen);
	if (ret < 0) {
		log_error("cni.sock: queue send: %s", strerror(-ret));
		cnisrv_client_close(c);
		return;
	}
	c->nops++;
}

static void cnisrv_client_ack(struct cnisrv_client *c, const char *error, int close_after)
{
	Weft__Cni__V1__WorkloadResponse r = WEFT__CNI__V1__WORKLOAD_RESPONSE__INIT;
	Weft__Cni__V1__Ack ack = WEFT__CNI__V1__ACK__INIT;

	ack.error = (char *)(error ? error : "");
	r.payload_case = WEFT__CNI__V1__WORKLOAD_RESPONSE__PAYLOAD_ACK;
	r.ack = &ack;
	c->state = CNISRV_ACK;
	c->close_after_send = close_after;
	cnisrv_client_send(c, &r);
}

/* A protocol error: say why in the Ack, then hang up. */
static void cnisrv_client_reject(struct cnisrv_client *c, const char *why)
{
	log_warn("cni.sock: rejecting a request: %s", why);
	cnisrv_client_ack(c, why, 1);
}

/* The fds that came with the message; n is their count (at most
 * CNISRV_FDS_MAX, which the control buffer bounds). */
static size_t cnisrv_client_fds(struct cnisrv_client *c, int *fds)
{
	size_t n = 0;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&c->msg); cm; cm = CMSG_NXTHDR(&c->msg, cm)) {
		size_t k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
		    cm->cmsg_len < CMSG_LEN(0))
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (k > CNISRV_FDS_MAX - n)
			k = CNISRV_FDS_MAX - n;
		memcpy(fds + n, CMSG_DATA(cm), k * sizeof(int));
		n += k;
	}
	return n;
}

static void cnisrv_fds_close(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void cnisrv_client_add(struct cnisrv_client *c, const Weft__Cni__V1__AddWorkload *add,
			      int *fds, size_t nfds)
{
	struct cnisrv *s = c->s;
	char err[CNISRV_ERR_MAX] = "", uid[128];
	int ret, fd;

	if (!add->uid || !add->uid[0]) {
		cnisrv_fds_close(fds, nfds);
		cnisrv_client_reject(c, "AddWorkload without a uid");
		return;
	}
	if (nfds != 1) {
		cnisrv_fds_close(fds, nfds);
		cnisrv_client_reject(c, nfds ? "AddWorkload with more than one fd"
					     : "AddWorkload without the netns fd (SCM_RIGHTS)");
		return;
	}
	fd = fds[0];
	/* The handler will setns() into it: make sure it is a network
	 * namespace, not a socket or a mount namespace. */
	if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
		close(fd);
		cnisrv_client_reject(c, "the fd sent with AddWorkload is not a network namespace");
		return;
	}
	log_escape(uid, sizeof(uid), add->uid, strlen(add->uid));
	ret = s->h.on_add(s->arg, add, fd, err, sizeof(err));	/* fd is the handler's now */
	if (ret < 0) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", strerror(-ret));
		log_warn("cni.sock: enrolling %s failed: %s", uid, err);
		cnisrv_client_ack(c, err, 0);
		return;
	}
	log_info("cni.sock: enrolled %s", uid);
	cnisrv_client_ack(c, NULL, 0);
}

static void cnisrv_client_del(struct cnisrv_client *c, const Weft__Cni__V1__DelWorkload *del)
{
	struct cnisrv *s = c->s;
	char err[CNISRV_ERR_MAX] = "", uid[128];
	int ret;

	if (!del->uid || !del->uid[0]) {
		cnisrv_client_reject(c, "DelWorkload without a uid");
		return;
	}
	log_escape(uid, sizeof(uid), del->uid, strlen(del->uid));
	ret = s->h.on_del(s->arg, del->uid, err, sizeof(err));
	if (ret < 0) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", strerror(-ret));
		log_warn("cni.sock: removing %s failed: %s", uid, err);
		cnisrv_client_ack(c, err, 0);
		return;
	}
	log_info("cni.sock: removed %s", uid);
	cnisrv_client_ack(c, NULL, 0);
}

static void cnisrv_client_on_recv(struct loop_op *op, int res, unsigned flags)
{
	struct cnisrv_client *c = cnisrv_container_of(op, struct cnisrv_client, io_op);
	Weft__Cni__V1__WorkloadRequest *req;
	int fds[CNISRV_FDS_MAX];
	size_t nfds = 0;

	(void)flags;
	c->nops--;
	/* fds arrive with any successful receive, even one we no longer
	 * want; they are ours to close. */
	if (res >= 0)
		nfds = cnisrv_client_fds(c, fds);
	if (c->state == CNISRV_CLOSING) {
		cnisrv_fds_close(fds, nfds);
		cnisrv_client_maybe_free(c);
		return;
	}
	loop_timer_disarm(c->s->l, &c->idle);
	if (res <= 0) {
		if (res < 0 && res != -ECONNRESET)
			log_warn("cni.sock: recv: %s", strerror(-res));
		cnisrv_client_close(c);	/* 0: weft-cni is done */
		return;
	}
	if (c->msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		cnisrv_fds_close(fds, nfds);
		cnisrv_client_reject(c, (c->msg.msg_flags & MSG_TRUNC)
				     ? "request larger than 64 KiB"
				     : "too many file descriptors with the request");
		return;
	}
	req = weft__cni__v1__workload_request__unpack(NULL, (size_t)res, c->in);
	if (!req) {
		cnisrv_fds_close(fds, nfds);
		cnisrv_client_reject(c, "malformed WorkloadRequest");
		return;
	}
	switch (req->payload_case) {
	case WEFT__CNI__V1__WORKLOAD_REQUEST__PAYLOAD_ADD:
		cnisrv_client_add(c, req->add, fds, nfds);
		break;
	case WEFT__CNI__V1__WORKLOAD_REQUEST__PAYLOAD_DEL:
		cnisrv_fds_close(fds, nfds);
		cnisrv_client_del(c, req->del);
		break;
	case WEFT__CNI__V1__WORKLOAD_REQUEST__PAYLOAD_KEEP:
	case WEFT__CNI__V1__WORKLOAD_REQUEST__PAYLOAD_SNAPSHOT_SENT:
		/* weftd reconciles from its own state after a restart, so no
		 * one should send these; say so instead of pretending. */
		cnisrv_fds_close(fds, nfds);
		cnisrv_client_ack(c, "KeepWorkload/SnapshotSent are not handled by this weftd", 0);
		break;
	default:
		cnisrv_fds_close(fds, nfds);
		cnisrv_client_reject(c, "WorkloadRequest without a payload");
		break;
	}
	weft__cni__v1__workload_request__free_unpacked(req, NULL);
}

static void cnisrv_client_recv(struct cnisrv_client *c)
{
	int ret;

	c->state = CNISRV_RECV;
	c->iov.iov_base = c->in;
	c->iov.iov_len = sizeof(c->in);
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = &c->iov;
	c->msg.msg_iovlen = 1;
	c->msg.msg_control = c->cbuf.buf;
	c->msg.msg_controllen = sizeof(c->cbuf.buf);
	c->io_op.cb = cnisrv_client_on_recv;
	/* CLOEXEC: a netns fd must not leak into anything weftd spawns. */
	ret = loop_recvmsg(c->s->l, &c->io_op, c->fd, &c->msg, MSG_CMSG_CLOEXEC);
	if (ret < 0) {
		log_error("cni.sock: queue recvmsg: %s", strerror(-ret));
		cnisrv_client_close(c);
		return;
	}
	c->nops++;
	loop_timer_arm(c->s->l, &c->idle, CNISRV_IDLE_MS);
}

/* Enrollment makes weftd setns() into a netns of the peer's choosing and
 * bind its listeners there: only root may ask (§5.1). The socket file is
 * 0600 already; this holds when its mode or directory is wrong, or the peer
 * bypasses it (CAP_DAC_OVERRIDE). weftd's own uid is admitted too: it is 0
 * on a node, and a process with it could ptrace weftd anyway (unit tests
 * run weftd's server unprivileged). 1 when admitted. */
static int cnisrv_peer_admitted(int fd)
{
	/* A refused client can reconnect at once, for ever: one line, then a
	 * count. */
	static struct log_rl rl = LOG_RL_INIT;
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || len != sizeof(cr)) {
		log_warn_rl(&rl, "cni.sock: refusing a client whose credentials are unknown: %s",
			    strerror(errno));
		return 0;
	}
	if (cr.uid == 0 || cr.uid == geteuid())
		return 1;
	log_warn_rl(&rl, "cni.sock: refusing a client that is not root: pid %ld uid %lu gid %lu",
		    (long)cr.pid, (unsigned long)cr.uid, (unsigned long)cr.gid);
	return 0;
}

static void cnisrv_client_start(struct cnisrv *s, int fd)
{
	Weft__Cni__V1__WorkloadResponse r = WEFT__CNI__V1__WORKLOAD_RESPONSE__INIT;
	Weft__Cni__V1__Hello hello = WEFT__CNI__V1__HELLO__INIT;
	struct cnisrv_client *c;

	if (!cnisrv_peer_admitted(fd)) {
		close(fd);
		return;
	}
	if (s->nclients >= CNISRV_CLIENTS_MAX) {
		log_warn("cni.sock: %u clients connected already; refusing another",
			 s->nclients);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_error("cni.sock: out of memory for a client");
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	c->idle.cb = cnisrv_client_on_idle;
	c->close_op.cb = cnisrv_client_on_close;
	c->free_task.cb = cnisrv_client_on_free;
	c->next = s->clients;
	if (s->clients)
		s->clients->prev = c;
	s->clients = c;
	s->nclients++;

	hello.version = CNISRV_VERSION;
	r.payload_case = WEFT__CNI__V1__WORKLOAD_RESPONSE__PAYLOAD_HELLO;
	r.hello = &hello;
	c->state = CNISRV_HELLO;
	cnisrv_client_send(c, &r);
}

/* --- listener ------------------------------------------------------------- */

/* Accept pauses and backs off by itself on EMFILE and friends (lib/listener). */
static void cnisrv_on_accept(struct listener *ls, int fd)
{
	struct cnisrv *s = listener_udata(ls);

	if (s->closing)
		close(fd);
	else
		cnisrv_client_start(s, fd);
}

static void cnisrv_on_listener_closed(struct listener *ls)
{
	struct cnisrv *s = listener_udata(ls);

	s->ls_closed = 1;
	cnisrv_maybe_free(s);
}

/* Remove a socket file left by a dead weftd; refuse if something is
 * listening on it or it is not a socket. */
static int cnisrv_path_clear(const char *path, const struct sockaddr_un *sa,
			     char *err, size_t errlen)
{
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	if (ret == 0 || errno == EAGAIN) {
		close(fd);
		snprintf(err, errlen, "%s is in use by a running weftd", path);
		return -EADDRINUSE;
	}
	close(fd);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

struct cnisrv *cnisrv_new(struct loop *l, const char *path, const struct cnisrv_handler *h,
			  void *arg, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct cnisrv *s;
	struct stat st;
	char *dir;
	int ret;

	if (!h || !h->on_add || !h->on_del) {
		snprintf(err, errlen, "cni.sock: handler callbacks missing");
		return NULL;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a unix socket", path);
		return NULL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->path = strdup(path);
	if (!s->path) {
		snprintf(err, errlen, "out of memory");
		goto fail_path;
	}
	s->l = l;
	s->h = *h;
	s->arg = arg;
	s->free_task.cb = cnisrv_on_free;

	/* /run/weft may not exist yet on a fresh node; only the last level
	 * is made, a missing /run is not ours to fix. */
	dir = strdup(path);
	if (!dir) {
		snprintf(err, errlen, "out of memory");
		goto fail_socket;
	}
	if (mkdir(dirname(dir), 0755) < 0 && errno != EEXIST)
		log_warn("mkdir %s: %s", dir, strerror(errno));
	free(dir);

	err[0] = '\0';
	ret = cnisrv_path_clear(path, &sa, err, errlen);
	if (ret < 0) {
		if (!err[0])
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		goto fail_socket;
	}
	s->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		snprintf(err, errlen, "cni.sock socket: %s", strerror(errno));
		goto fail_socket;
	}
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "bind %s: %s", path, strerror(errno));
		goto fail_bind;
	}
	/* chmod before listen: until listen() nobody can connect, so there
	 * is no window with the umask's looser mode. */
	if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
		snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
		goto fail_listen;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if (listen(s->fd, CNISRV_BACKLOG) < 0) {
		snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
		goto fail_listen;
	}
	listener_start(&s->ls, l, s->fd, "cni.sock", cnisrv_on_accept, cnisrv_on_listener_closed, s);
	listener_use_reserve(&s->ls);
	log_info("cni.sock: listening on %s", path);
	return s;

fail_listen:
	unlink(path);
fail_bind:
	close(s->fd);
fail_socket:
	free(s->path);
fail_path:
	free(s);
	return NULL;
}

/* Stop listening and drop every client. Operations in flight are
 * cancelled; the memory goes once their completions are reaped, so run the
 * loop (even briefly) before loop_free. */
void cnisrv_free(struct cnisrv *s)
{
	struct cnisrv_client *c, *next;

	if (!s || s->closing)
		return;
	s->closing = 1;
	for (c = s->clients; c; c = next) {
		next = c->next;
		cnisrv_client_close(c);
	}
	listener_close(&s->ls);
	cnisrv_maybe_free(s);
}
