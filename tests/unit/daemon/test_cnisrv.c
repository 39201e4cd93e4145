/* SPDX-License-Identifier: Apache-2.0 */
/* The enrollment socket end to end: a cnisrv on a temp path served by the
 * io_uring loop in this thread, weft-cni's own client code (cni/enroll.c)
 * or a raw SOCK_SEQPACKET client in another. Covers add (netns fd arrives
 * and is a valid netns), del, handler errors carried in the Ack, protocol
 * errors (no fd, wrong fd, malformed, oversized, Keep), fds never leaked,
 * concurrent clients, socket file mode/stale/in-use handling, a client
 * that is not root turned away by SO_PEERCRED, and free. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include <weft/log.h>
#include <weft/loop.h>

#include "../../../cni/enroll.h"
#include "../../../daemon/cnisrv.h"

#include "../check.h"

static struct loop *L;
static char sock_path[64];
static atomic_int client_done;
static uint64_t run_deadline;

/* --- the handler: records what it got -------------------------------------- */

static struct {
	int adds, dels;
	char uid[128], name[64], ns[64], cid[64], netns_path[128];
	char ips[4][64];
	size_t n_ips;
	int fd_valid;			/* the netns fd is /proc/self/ns/net's inode */
	int fail_ret;			/* next call returns this (with fail_msg) */
	const char *fail_msg;
} hs;

static int on_add(void *arg, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
		  char *err, size_t errlen)
{
	struct stat a, b;

	CHECK(arg == &hs);
	hs.adds++;
	snprintf(hs.uid, sizeof(hs.uid), "%s", add->uid);
	snprintf(hs.name, sizeof(hs.name), "%s", add->name);
	snprintf(hs.ns, sizeof(hs.ns), "%s", add->namespace_);
	snprintf(hs.cid, sizeof(hs.cid), "%s", add->container_id);
	snprintf(hs.netns_path, sizeof(hs.netns_path), "%s", add->netns_path);
	hs.n_ips = add->n_ips < 4 ? add->n_ips : 4;
	for (size_t i = 0; i < hs.n_ips; i++)
		snprintf(hs.ips[i], sizeof(hs.ips[i]), "%s", add->ips[i]);
	hs.fd_valid = fstat(netns_fd, &a) == 0 && stat("/proc/self/ns/net", &b) == 0 &&
		      a.st_ino == b.st_ino && a.st_dev == b.st_dev &&
		      (fcntl(netns_fd, F_GETFD) & FD_CLOEXEC);
	close(netns_fd);	/* ours, success or not */
	if (hs.fail_ret) {
		if (hs.fail_msg)
			snprintf(err, errlen, "%s", hs.fail_msg);
		return hs.fail_ret;
	}
	return 0;
}

static int on_del(void *arg, const char *uid, char *err, size_t errlen)
{
	CHECK(arg == &hs);
	hs.dels++;
	snprintf(hs.uid, sizeof(hs.uid), "%s", uid);
	if (hs.fail_ret) {
		if (hs.fail_msg)
			snprintf(err, errlen, "%s", hs.fail_msg);
		return hs.fail_ret;
	}
	return 0;
}

static const struct cnisrv_handler handler = { .on_add = on_add, .on_del = on_del };

/* --- running the loop while a client thread works -------------------------- */

static void on_poll(struct loop_timer *t)
{
	if (atomic_load(&client_done) || loop_now_ms(L) >= run_deadline) {
		loop_stop(L);
		return;
	}
	loop_timer_arm(L, t, 2);
}

/* Run the loop for ms, or until the client thread says it is done. */
static void loop_for(uint64_t ms)
{
	struct loop_timer t = { .cb = on_poll };

	run_deadline = loop_now_ms(L) + ms;
	loop_timer_arm(L, &t, 1);
	CHECK_EQ_INT(loop_run(L), 0);
	loop_timer_disarm(L, &t);
}

/* cnisrv_free completes asynchronously (the accept is cancelled first);
 * the socket file goes last. Run the loop until it has, up to 3 s. */
static void loop_until_gone(const char *path)
{
	for (int i = 0; i < 150 && access(path, F_OK) == 0; i++)
		loop_for(20);
}

static void run_client(void *(*fn)(void *), void *arg)
{
	pthread_t th;

	atomic_store(&client_done, 0);
	CHECK_EQ_INT(pthread_create(&th, NULL, fn, arg), 0);
	loop_for(10000);
	CHECK(atomic_load(&client_done));
	pthread_join(th, NULL);
	/* Let the server see the client's close and finish its own. */
	atomic_store(&client_done, 0);
	loop_for(30);
}

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* --- clients ---------------------------------------------------------------- */

struct enroll_call {
	int del;			/* else add */
	int fd;				/* netns fd to pass (-1 none) */
	const char *path;
	int in_batch;			/* par_thread signals completion, not us */
	int ret;
	char err[512];
};

static void *enroll_thread(void *arg)
{
	struct enroll_call *c = arg;
	char *ips[] = { "10.244.1.5", "fd00::5" };

	if (c->del) {
		c->ret = enroll_del(c->path, "default/p1", 5000, c->err, sizeof(c->err));
	} else {
		Weft__Cni__V1__AddWorkload add = WEFT__CNI__V1__ADD_WORKLOAD__INIT;

		add.uid = "default/p1";
		add.name = "p1";
		add.namespace_ = "default";
		add.ips = ips;
		add.n_ips = 2;
		add.container_id = "c0ffee";
		add.netns_path = "/run/netns/p1";
		c->ret = enroll_add(c->path, &add, c->fd, 5000, c->err, sizeof(c->err));
	}
	if (!c->in_batch)
		atomic_store(&client_done, 1);
	return NULL;
}

static int call(int del, int fd, struct enroll_call *c)
{
	memset(c, 0, sizeof(*c));
	c->del = del;
	c->fd = fd;
	c->path = sock_path;
	run_client(enroll_thread, c);
	return c->ret;
}

/* A raw client: sends datagrams of its choosing, reports what came back. */
struct raw_call {
	const void *msg;
	size_t len;
	int attach_fd;			/* -1: none */
	const void *msg2;		/* second request on the same connection */
	size_t len2;
	int hello_ok;
	char ack1[256];
	int ack1_ok, ack2_ok;
	char ack2[256];
	int closed_after;		/* recv returned 0 after the (last) Ack */
};

static int raw_ack(int fd, char *out, size_t outlen)
{
	uint8_t buf[1024];
	Weft__Cni__V1__WorkloadResponse *r;
	ssize_t n = recv(fd, buf, sizeof(buf), 0);

	if (n <= 0)
		return 0;
	r = weft__cni__v1__workload_response__unpack(NULL, (size_t)n, buf);
	if (!r || r->payload_case != WEFT__CNI__V1__WORKLOAD_RESPONSE__PAYLOAD_ACK) {
		if (r)
			weft__cni__v1__workload_response__free_unpacked(r, NULL);
		return 0;
	}
	snprintf(out, outlen, "%s", r->ack->error);
	weft__cni__v1__workload_response__free_unpacked(r, NULL);
	return 1;
}

static void *raw_thread(void *arg)
{
	struct raw_call *rc = arg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	Weft__Cni__V1__WorkloadResponse *r;
	uint8_t buf[256];
	ssize_t n;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n > 0) {
		r = weft__cni__v1__workload_response__unpack(NULL, (size_t)n, buf);
		rc->hello_ok = r && r->payload_case == WEFT__CNI__V1__WORKLOAD_RESPONSE__PAYLOAD_HELLO &&
			       r->hello->version == 1;
		if (r)
			weft__cni__v1__workload_response__free_unpacked(r, NULL);
	}
	{
		union {
			struct cmsghdr align;
			char b[CMSG_SPACE(sizeof(int))];
		} cbuf;
		struct iovec iov = { .iov_base = (void *)rc->msg, .iov_len = rc->len };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

		if (rc->attach_fd >= 0) {
			struct cmsghdr *cm;

			memset(&cbuf, 0, sizeof(cbuf));
			m.msg_control = cbuf.b;
			m.msg_controllen = sizeof(cbuf.b);
			cm = CMSG_FIRSTHDR(&m);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &rc->attach_fd, sizeof(int));
		}
		if (sendmsg(fd, &m, MSG_NOSIGNAL) < 0)
			goto out;
	}
	rc->ack1_ok = raw_ack(fd, rc->ack1, sizeof(rc->ack1));
	if (rc->msg2) {
		if (send(fd, rc->msg2, rc->len2, MSG_NOSIGNAL) < 0)
			goto out;
		rc->ack2_ok = raw_ack(fd, rc->ack2, sizeof(rc->ack2));
	}
	rc->closed_after = recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == 0;
	if (!rc->closed_after) {
		/* not closed yet? wait a little (bounded by SO_RCVTIMEO) */
		struct timeval t2 = { .tv_usec = 300000 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t2, sizeof(t2));
		rc->closed_after = recv(fd, buf, sizeof(buf), 0) == 0;
	}
out:
	close(fd);
	atomic_store(&client_done, 1);
	return NULL;
}

/* --- tests ------------------------------------------------------------------ */

static void test_add_del(void)
{
	struct enroll_call c;
	int nsfd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	int base;

	CHECK(nsfd >= 0);
	base = fd_count();
	memset(&hs, 0, sizeof(hs));
	CHECK_EQ_INT(call(0, nsfd, &c), 0);
	if (c.ret)
		fprintf(stderr, "  add: %s\n", c.err);
	CHECK_EQ_INT(hs.adds, 1);
	CHECK_EQ_STR(hs.uid, "default/p1");
	CHECK_EQ_STR(hs.name, "p1");
	CHECK_EQ_STR(hs.ns, "default");
	CHECK_EQ_STR(hs.cid, "c0ffee");
	CHECK_EQ_STR(hs.netns_path, "/run/netns/p1");
	CHECK_EQ_INT(hs.n_ips, 2);
	CHECK_EQ_STR(hs.ips[0], "10.244.1.5");
	CHECK_EQ_STR(hs.ips[1], "fd00::5");
	CHECK(hs.fd_valid);
	/* The client's fd is untouched; the server's copy was the handler's. */
	CHECK(fcntl(nsfd, F_GETFD) >= 0);
	CHECK_EQ_INT(fd_count(), base);

	CHECK_EQ_INT(call(1, -1, &c), 0);
	CHECK_EQ_INT(hs.dels, 1);
	CHECK_EQ_STR(hs.uid, "default/p1");
	CHECK_EQ_INT(fd_count(), base);
	close(nsfd);
}

static void test_handler_errors(void)
{
	struct enroll_call c;
	int nsfd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	int base = fd_count();

	memset(&hs, 0, sizeof(hs));
	hs.fail_ret = -EEXIST;
	hs.fail_msg = "listener on :15001 in pod default/p1: Address already in use";
	CHECK_EQ_INT(call(0, nsfd, &c), -EREMOTEIO);
	CHECK(strstr(c.err, "weftd refused") != NULL);
	CHECK(strstr(c.err, "Address already in use") != NULL);
	CHECK_EQ_INT(hs.adds, 1);

	/* No message from the handler: the errno's text. */
	hs.fail_msg = NULL;
	hs.fail_ret = -ENOENT;
	CHECK_EQ_INT(call(1, -1, &c), -EREMOTEIO);
	CHECK(strstr(c.err, strerror(ENOENT)) != NULL);
	CHECK_EQ_INT(hs.dels, 1);
	hs.fail_ret = 0;

	/* Protocol errors never reach the handler. */
	CHECK_EQ_INT(call(0, -1, &c), -EREMOTEIO);
	CHECK(strstr(c.err, "without the netns fd") != NULL);
	{
		int p[2];

		CHECK_EQ_INT(pipe2(p, O_CLOEXEC), 0);
		CHECK_EQ_INT(call(0, p[0], &c), -EREMOTEIO);
		CHECK(strstr(c.err, "not a network namespace") != NULL);
		close(p[0]);
		close(p[1]);
	}
	CHECK_EQ_INT(hs.adds, 1);
	CHECK_EQ_INT(fd_count(), base);
	close(nsfd);
}

static void test_malformed(void)
{
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12 };
	struct raw_call rc;
	int p[2], base;
	uint8_t *big;

	CHECK_EQ_INT(pipe2(p, O_CLOEXEC), 0);
	base = fd_count();
	memset(&hs, 0, sizeof(hs));

	/* Garbage with an fd attached: error Ack, hang-up, fd closed. */
	memset(&rc, 0, sizeof(rc));
	rc.msg = garbage;
	rc.len = sizeof(garbage);
	rc.attach_fd = p[0];
	run_client(raw_thread, &rc);
	CHECK(rc.hello_ok);
	CHECK(rc.ack1_ok);
	CHECK(strstr(rc.ack1, "malformed") != NULL);
	CHECK(rc.closed_after);
	CHECK_EQ_INT(fd_count(), base);

	/* A request with no payload (only an unknown field) is refused too. */
	memset(&rc, 0, sizeof(rc));
	rc.msg = "\x28\x01";
	rc.len = 2;
	rc.attach_fd = -1;
	run_client(raw_thread, &rc);
	CHECK(rc.ack1_ok);
	CHECK(strstr(rc.ack1, "without a payload") != NULL);
	CHECK(rc.closed_after);

	/* Larger than 64 KiB: truncated by the kernel, refused by us. */
	big = calloc(1, 70000);
	memset(&rc, 0, sizeof(rc));
	rc.msg = big;
	rc.len = 70000;
	rc.attach_fd = -1;
	run_client(raw_thread, &rc);
	CHECK(rc.ack1_ok);
	CHECK(strstr(rc.ack1, "64 KiB") != NULL);
	CHECK(rc.closed_after);
	free(big);

	/* Keep is answered with an error but the connection stays: a Del
	 * on it afterwards works. */
	{
		Weft__Cni__V1__WorkloadRequest req = WEFT__CNI__V1__WORKLOAD_REQUEST__INIT;
		Weft__Cni__V1__KeepWorkload keep = WEFT__CNI__V1__KEEP_WORKLOAD__INIT;
		Weft__Cni__V1__DelWorkload del = WEFT__CNI__V1__DEL_WORKLOAD__INIT;
		uint8_t b1[64], b2[64];
		size_t n1, n2;

		keep.uid = "default/p1";
		req.payload_case = WEFT__CNI__V1__WORKLOAD_REQUEST__PAYLOAD_KEEP;
		req.keep = &keep;
		n1 = weft__cni__v1__workload_request__pack(&req, b1);
		del.uid = "default/p2";
		req.payload_case = WEFT__CNI__V1__WORKLOAD_REQUEST__PAYLOAD_DEL;
		req.del = &del;
		n2 = weft__cni__v1__workload_request__pack(&req, b2);
		memset(&rc, 0, sizeof(rc));
		rc.msg = b1;
		rc.len = n1;
		rc.attach_fd = p[0];	/* an fd on a non-Add message is closed */
		rc.msg2 = b2;
		rc.len2 = n2;
		run_client(raw_thread, &rc);
		CHECK(rc.ack1_ok);
		CHECK(strstr(rc.ack1, "not handled") != NULL);
		CHECK(rc.ack2_ok);
		CHECK_EQ_STR(rc.ack2, "");
		CHECK_EQ_INT(hs.dels, 1);
		CHECK_EQ_STR(hs.uid, "default/p2");
	}
	CHECK_EQ_INT(hs.adds, 0);
	CHECK_EQ_INT(fd_count(), base);
	close(p[0]);
	close(p[1]);
}

#define NPAR 8

static void *par_thread(void *arg)
{
	struct enroll_call *cs = arg;
	pthread_t th[NPAR];

	for (int i = 0; i < NPAR; i++)
		pthread_create(&th[i], NULL, enroll_thread, &cs[i]);
	for (int i = 0; i < NPAR; i++)
		pthread_join(th[i], NULL);
	atomic_store(&client_done, 1);
	return NULL;
}

static void test_concurrent(void)
{
	struct enroll_call cs[NPAR];
	int nsfd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);

	memset(&hs, 0, sizeof(hs));
	memset(cs, 0, sizeof(cs));
	for (int i = 0; i < NPAR; i++) {
		cs[i].fd = nsfd;
		cs[i].path = sock_path;
		cs[i].del = i & 1;
		cs[i].in_batch = 1;
	}
	run_client(par_thread, cs);
	for (int i = 0; i < NPAR; i++)
		CHECK_EQ_INT(cs[i].ret, 0);
	CHECK_EQ_INT(hs.adds, NPAR / 2);
	CHECK_EQ_INT(hs.dels, NPAR / 2);
	close(nsfd);
}

static void test_unreachable(void)
{
	char path[128], err[512];
	int ret;

	snprintf(path, sizeof(path), "%s.none", sock_path);
	ret = enroll_del(path, "default/p1", 1000, err, sizeof(err));
	CHECK_EQ_INT(ret, -ENOENT);
	CHECK(strstr(err, "weftd is not reachable at ") != NULL);
	CHECK(strstr(err, path) != NULL);
}

/* A listener that never answers: the client gives up at its deadline. */
static void test_timeout(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[512];
	int fd, ret;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.mute", sock_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(fd, 4) == 0);
	ret = enroll_del(sa.sun_path, "default/p1", 200, err, sizeof(err));
	CHECK_EQ_INT(ret, -ETIMEDOUT);
	CHECK(strstr(err, "waiting for its Hello") != NULL);
	close(fd);
	unlink(sa.sun_path);
}

static void test_socket_file(struct cnisrv **sp)
{
	char err[256];
	struct stat st;
	struct cnisrv *s2;
	int fd;

	CHECK_EQ_INT(stat(sock_path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ_INT(st.st_mode & 0777, 0600);

	/* A live server's socket is not stolen. */
	s2 = cnisrv_new(L, sock_path, &handler, &hs, err, sizeof(err));
	CHECK(s2 == NULL);
	CHECK(strstr(err, "in use") != NULL);

	/* After free the socket file is gone and a stale one is replaced. */
	cnisrv_free(*sp);
	loop_until_gone(sock_path);
	CHECK(access(sock_path, F_OK) != 0);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
		fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
		close(fd);	/* a dead weftd's leftover */
	}
	*sp = cnisrv_new(L, sock_path, &handler, &hs, err, sizeof(err));
	CHECK(*sp != NULL);

	/* Not a socket: refused, and left alone. */
	{
		char other[128];

		snprintf(other, sizeof(other), "%s.file", sock_path);
		fd = open(other, O_CREAT | O_WRONLY, 0600);
		close(fd);
		s2 = cnisrv_new(L, other, &handler, &hs, err, sizeof(err));
		CHECK(s2 == NULL);
		CHECK(strstr(err, "not a socket") != NULL);
		CHECK_EQ_INT(access(other, F_OK), 0);
		unlink(other);
	}
}

/* loop_sendmsg/loop_recvmsg on their own: an fd and bytes across a
 * socketpair through the ring, MSG_CMSG_CLOEXEC honoured. */
struct msg_op {
	struct loop_op op;
	int res;
	int done;
};

static void on_msg_op(struct loop_op *op, int res, unsigned flags)
{
	struct msg_op *m = (struct msg_op *)op;

	(void)flags;
	m->res = res;
	m->done = 1;
}

static void test_loop_msg(void)
{
	union {
		struct cmsghdr align;
		char b[CMSG_SPACE(sizeof(int))];
	} sbuf, rbuf;
	struct msg_op snd = { .op.cb = on_msg_op }, rcv = { .op.cb = on_msg_op };
	char out[] = "hello", in[16] = "";
	struct iovec siov = { out, 5 }, riov = { in, sizeof(in) };
	struct msghdr sm = { .msg_iov = &siov, .msg_iovlen = 1, .msg_control = sbuf.b,
			     .msg_controllen = sizeof(sbuf.b) };
	struct msghdr rm = { .msg_iov = &riov, .msg_iovlen = 1, .msg_control = rbuf.b,
			     .msg_controllen = sizeof(rbuf.b) };
	struct cmsghdr *cm;
	int sv[2], p[2], got = -1;
	struct stat a, b;

	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_EQ_INT(pipe2(p, O_CLOEXEC), 0);
	memset(&sbuf, 0, sizeof(sbuf));
	cm = CMSG_FIRSTHDR(&sm);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
	CHECK_EQ_INT(loop_recvmsg(L, &rcv.op, sv[1], &rm, MSG_CMSG_CLOEXEC), 0);
	CHECK_EQ_INT(loop_sendmsg(L, &snd.op, sv[0], &sm, 0), 0);
	atomic_store(&client_done, 0);
	for (int i = 0; i < 100 && !(snd.done && rcv.done); i++)
		loop_for(10);
	CHECK_EQ_INT(snd.res, 5);
	CHECK_EQ_INT(rcv.res, 5);
	CHECK(memcmp(in, "hello", 5) == 0);
	cm = CMSG_FIRSTHDR(&rm);
	CHECK(cm && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)));
	if (cm)
		memcpy(&got, CMSG_DATA(cm), sizeof(int));
	CHECK(got >= 0 && got != p[0]);
	CHECK(fstat(got, &a) == 0 && fstat(p[0], &b) == 0 && a.st_ino == b.st_ino);
	CHECK(fcntl(got, F_GETFD) & FD_CLOEXEC);
	CHECK_EQ_INT(rm.msg_flags & (MSG_TRUNC | MSG_CTRUNC), 0);
	if (got >= 0)
		close(got);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

/* SO_PEERCRED: a client that is not root (nor weftd's uid) is closed on
 * without a Hello, even when the socket file lets it connect, and its
 * request never reaches the handler. Needs root (to become someone else). */
static atomic_int peer_result;

static void *peercred_thread(void *arg)
{
	const char *dir = arg;
	pid_t pid;
	int st = 0;

	(void)dir;
	pid = fork();
	if (pid == 0) {
		/* Child: async-signal-safe calls only. */
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		struct timeval tv = { .tv_sec = 3 };
		char b[64];
		ssize_t n;
		int fd;

		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534))
			_exit(10);
		memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
		fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(11);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		n = recv(fd, b, sizeof(b), 0);
		_exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : n > 0 ? 12 : 13);
	}
	if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st))
		atomic_store(&peer_result, WEXITSTATUS(st));
	else
		atomic_store(&peer_result, -1);
	atomic_store(&client_done, 1);
	return NULL;
}

static void test_peercred(const char *dir)
{
	char run[128];
	int fds;

	if (geteuid() != 0) {
		printf("test_peercred: skipped (needs root)\n");
		return;
	}
	snprintf(run, sizeof(run), "%s/run", dir);
	/* Open the way through the file modes: the credential check alone
	 * must hold. */
	CHECK_EQ_INT(chmod(dir, 0711), 0);
	CHECK_EQ_INT(chmod(run, 0711), 0);
	CHECK_EQ_INT(chmod(sock_path, 0666), 0);
	memset(&hs, 0, sizeof(hs));
	fds = fd_count();
	run_client(peercred_thread, (void *)dir);
	CHECK_EQ_INT(atomic_load(&peer_result), 0);	/* connected, closed without Hello */
	CHECK_EQ_INT(hs.adds + hs.dels, 0);
	CHECK_EQ_INT(fd_count(), fds);
	CHECK_EQ_INT(chmod(sock_path, 0600), 0);
	CHECK_EQ_INT(chmod(run, 0755), 0);
	CHECK_EQ_INT(chmod(dir, 0700), 0);
	/* Root (this process) is still served. */
	{
		struct enroll_call c;

		CHECK_EQ_INT(call(1, -1, &c), 0);
		CHECK_EQ_INT(hs.dels, 1);
	}
}

int main(void)
{
	char dir[] = "/tmp/weft-cnisrv-XXXXXX", err[256];
	struct cnisrv *s;

	log_level_set(getenv("WEFT_TEST_DEBUG") ? "debug" : "error");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(sock_path, sizeof(sock_path), "%s/run/cni.sock", dir);	/* run/ made by cnisrv */
	L = loop_new(64);
	CHECK(L != NULL);
	if (!L)
		return check_done("test_cnisrv");
	s = cnisrv_new(L, sock_path, &handler, &hs, err, sizeof(err));
	CHECK(s != NULL);
	if (!s) {
		fprintf(stderr, "cnisrv_new: %s\n", err);
		return check_done("test_cnisrv");
	}
	test_loop_msg();
	test_add_del();
	test_handler_errors();
	test_malformed();
	test_concurrent();
	test_unreachable();
	test_timeout();
	test_socket_file(&s);
	test_peercred(dir);
	/* The server still works after being re-created. */
	{
		struct enroll_call c;

		memset(&hs, 0, sizeof(hs));
		CHECK_EQ_INT(call(1, -1, &c), 0);
		CHECK_EQ_INT(hs.dels, 1);
	}
	cnisrv_free(s);
	loop_until_gone(sock_path);
	CHECK(access(sock_path, F_OK) != 0);
	loop_free(L);
	{
		char sub[128];

		snprintf(sub, sizeof(sub), "%s/run", dir);
		rmdir(sub);
		rmdir(dir);
	}
	return check_done("test_cnisrv");
}
