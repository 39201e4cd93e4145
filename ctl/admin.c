/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl's admin API client (admin.h). Blocking sockets with a poll()
 * deadline: weftctl is a short-lived tool, not a daemon. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <weft/sockaddr.h>

#include "admin.h"

static long ctl_ms_left(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return CTL_TIMEOUT_MS - ((now.tv_sec - t0->tv_sec) * 1000 +
				 (now.tv_nsec - t0->tv_nsec) / 1000000);
}

static int ctl_connect(const char *admin, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (!strncmp(admin, "unix:", 5)) {
		struct sockaddr_un un = { .sun_family = AF_UNIX };

		if (strlen(admin + 5) >= sizeof(un.sun_path)) {
			snprintf(err, errlen, "%s: path too long", admin);
			return -1;
		}
		strcpy(un.sun_path, admin + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0)
			return fd;
	} else {
		if (sockaddr_parse(admin, &ss, &len)) {
			snprintf(err, errlen, "%s: not ip:port or unix:PATH", admin);
			return -1;
		}
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) == 0)
			return fd;
	}
	snprintf(err, errlen, "cannot reach weftd's admin API at %s: %s (is weftd running, "
		 "and is this its network namespace?)", admin, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int ctl_request(const char *admin, const char *method, const char *path, int *status,
		char **body, char *err, size_t errlen)
{
	struct timespec t0;
	char req[1024], *buf = NULL, *hdr_end;
	size_t len = 0, cap = 0;
	int fd, n;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = ctl_connect(admin, err, errlen);
	if (fd < 0)
		return -1;
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: weftd\r\nConnection: close\r\n"
		     "Content-Length: 0\r\n\r\n", method, path);
	if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
		snprintf(err, errlen, "cannot send the request to %s", admin);
		close(fd);
		return -1;
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		long left = ctl_ms_left(&t0);
		ssize_t r;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
			snprintf(err, errlen, "%s did not answer within %d ms", admin,
				 CTL_TIMEOUT_MS);
			goto fail;
		}
		if (len + 65536 + 1 > cap) {
			char *p;

			cap = cap ? cap * 2 : 131072;
			if (cap > CTL_BODY_MAX + 65536) {
				snprintf(err, errlen, "answer from %s is too large", admin);
				goto fail;
			}
			p = realloc(buf, cap);
			if (!p) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			buf = p;
		}
		r = read(fd, buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "reading from %s: %s", admin, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (!buf) {
		snprintf(err, errlen, "%s closed without an answer", admin);
		return -1;
	}
	buf[len] = 0;
	hdr_end = strstr(buf, "\r\n\r\n");
	if (!hdr_end || sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
		snprintf(err, errlen, "%s did not answer in HTTP", admin);
		free(buf);
		return -1;
	}
	memmove(buf, hdr_end + 4, len - (size_t)(hdr_end + 4 - buf) + 1);
	*body = buf;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}
