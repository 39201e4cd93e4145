/* SPDX-License-Identifier: Apache-2.0 */
/* The enrollment client weft-cni uses (and the cnisrv tests use): one
 * connection per request over SOCK_SEQPACKET, a deadline over the whole
 * exchange, the netns fd as SCM_RIGHTS. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cnierr.h"
#include "enroll.h"

static long long enroll_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Receive one datagram before the deadline. Returns its length, 0 on EOF,
 * or -errno (-ETIMEDOUT, -EMSGSIZE for an oversized one). fds that come
 * along are closed: weftd never sends any. */
static ssize_t enroll_recv(int fd, uint8_t *buf, size_t cap, long long deadline)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} cbuf;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
	};
	struct cmsghdr *cm;
	ssize_t n;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = deadline - enroll_now_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return -errno;
		break;
	}
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[4];

			if (nfd > 4)
				nfd = 4;
			memcpy(fds, CMSG_DATA(cm), nfd * sizeof(int));
			for (size_t i = 0; i < nfd; i++)
				close(fds[i]);
		}
	}
	if (msg.msg_flags & MSG_TRUNC)
		return -EMSGSIZE;
	return n;
}

/* Unpack a WorkloadResponse of the expected kind; NULL if it is not one. */
static Weft__Cni__V1__WorkloadResponse *enroll_unpack(const uint8_t *buf, size_t len,
						      Weft__Cni__V1__WorkloadResponse__PayloadCase want)
{
	Weft__Cni__V1__WorkloadResponse *r;

	r = weft__cni__v1__workload_response__unpack(NULL, len, buf);
	if (r && r->payload_case != want) {
		weft__cni__v1__workload_response__free_unpacked(r, NULL);
		return NULL;
	}
	return r;
}

int enroll_request(const char *path, const Weft__Cni__V1__WorkloadRequest *req, int netns_fd,
		   int timeout_ms, char *err, size_t errlen)
{
	long long deadline = enroll_now_ms() + timeout_ms;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	Weft__Cni__V1__WorkloadResponse *resp;
	struct iovec iov;
	struct msghdr msg;
	uint8_t *buf;
	size_t len;
	ssize_t n;
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		cnierr_set(err, errlen, "weftd is not reachable at %s: path too long", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	len = weft__cni__v1__workload_request__get_packed_size(req);
	if (len > ENROLL_MSG_MAX) {
		cnierr_set(err, errlen, "request to weftd too large (%zu bytes)", len);
		return -EMSGSIZE;
	}
	buf = malloc(ENROLL_MSG_MAX);
	if (!buf) {
		cnierr_set(err, errlen, "out of memory");
		return -ENOMEM;
	}

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		cnierr_set(err, errlen, "weftd is not reachable at %s: socket: %s", path,
			   strerror(-ret));
		goto fail_socket;
	}
	/* A blocking connect on AF_UNIX waits only when weftd's backlog is
	 * full; SO_SNDTIMEO bounds that wait, and the send after it. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		cnierr_set(err, errlen, "weftd is not reachable at %s: %s", path, strerror(-ret));
		goto fail_io;
	}

	n = enroll_recv(fd, buf, ENROLL_MSG_MAX, deadline);
	if (n <= 0) {
		ret = n == 0 ? -ECONNRESET : (int)n;
		cnierr_set(err, errlen, "weftd is not reachable at %s: %s (waiting for its Hello)",
			   path, n == 0 ? "connection closed" : strerror(-ret));
		goto fail_io;
	}
	resp = enroll_unpack(buf, (size_t)n, WEFT__CNI__V1__WORKLOAD_RESPONSE__PAYLOAD_HELLO);
	if (!resp) {
		ret = -EPROTO;
		cnierr_set(err, errlen, "weftd at %s: the first message is not a Hello", path);
		goto fail_io;
	}
	if (!resp->hello || resp->hello->version != ENROLL_VERSION) {
		cnierr_set(err, errlen, "weftd at %s speaks enrollment version %u, we speak %u",
			   path, resp->hello ? resp->hello->version : 0, ENROLL_VERSION);
		weft__cni__v1__workload_response__free_unpacked(resp, NULL);
		ret = -EPROTO;
		goto fail_io;
	}
	weft__cni__v1__workload_response__free_unpacked(resp, NULL);

	weft__cni__v1__workload_request__pack(req, buf);
	iov.iov_base = buf;
	iov.iov_len = len;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (netns_fd >= 0) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &netns_fd, sizeof(int));
	}
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) {
		ret = -errno;
		cnierr_set(err, errlen, "weftd is not reachable at %s: send: %s", path,
			   strerror(-ret));
		goto fail_io;
	}

	n = enroll_recv(fd, buf, ENROLL_MSG_MAX, deadline);
	if (n <= 0) {
		ret = n == 0 ? -ECONNRESET : (int)n;
		cnierr_set(err, errlen, "weftd is not reachable at %s: %s (waiting for its Ack)",
			   path, n == 0 ? "connection closed" : strerror(-ret));
		goto fail_io;
	}
	resp = enroll_unpack(buf, (size_t)n, WEFT__CNI__V1__WORKLOAD_RESPONSE__PAYLOAD_ACK);
	if (!resp || !resp->ack) {
		if (resp)
			weft__cni__v1__workload_response__free_unpacked(resp, NULL);
		ret = -EPROTO;
		cnierr_set(err, errlen, "weftd at %s: the answer is not an Ack", path);
		goto fail_io;
	}
	ret = 0;
	if (resp->ack->error && resp->ack->error[0]) {
		ret = -EREMOTEIO;
		cnierr_set(err, errlen, "weftd refused the request: %.400s", resp->ack->error);
	}
	weft__cni__v1__workload_response__free_unpacked(resp, NULL);

fail_io:
	close(fd);
fail_socket:
	free(buf);
	return ret;
}

int enroll_add(const char *path, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
	       int timeout_ms, char *err, size_t errlen)
{
	Weft__Cni__V1__WorkloadRequest req = WEFT__CNI__V1__WORKLOAD_REQUEST__INIT;

	req.payload_case = WEFT__CNI__V1__WORKLOAD_REQUEST__PAYLOAD_ADD;
	req.add = (Weft__Cni__V1__AddWorkload *)add;
	return enroll_request(path, &req, netns_fd, timeout_ms, err, errlen);
}

int enroll_del(const char *path, const char *uid, int timeout_ms, char *err, size_t errlen)
{
	Weft__Cni__V1__WorkloadRequest req = WEFT__CNI__V1__WORKLOAD_REQUEST__INIT;
	Weft__Cni__V1__DelWorkload del = WEFT__CNI__V1__DEL_WORKLOAD__INIT;

	del.uid = (char *)uid;
	req.payload_case = WEFT__CNI__V1__WORKLOAD_REQUEST__PAYLOAD_DEL;
	req.del = &del;
	return enroll_request(path, &req, -1, timeout_ms, err, errlen);
}
