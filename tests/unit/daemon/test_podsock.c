/* SPDX-License-Identifier: Apache-2.0 */
/* A pod's reserve of delivery sockets: filled by the chores thread, taken
 * without entering the netns, each socket marked, non-blocking and
 * close-on-exec; an empty reserve makes one in place and grows; a quiet
 * trim shrinks it back; closing it with a refill in flight leaks nothing.
 * This process's own netns stands in for the pod's (needs root for setns). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/chores.h>
#include <weft/loop.h>

#include "../check.h"
#include "../../../daemon/podsock.h"
#include "../../../daemon/weftd.h"

static struct weftd d;

static int fd_count(void)
{
	DIR *dh = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	while (dh && (de = readdir(dh)))
		n += de->d_name[0] != '.';
	if (dh)
		closedir(dh);
	return n;
}

static void on_stop(struct loop_timer *t)
{
	(void)t;
	loop_stop(d.loop);
}

/* Let the chores thread work and its done callbacks run. */
static void settle(void)
{
	struct loop_timer t = { .cb = on_stop };

	for (int i = 0; i < 20 && chores_queued(d.chores); i++) {
		loop_timer_arm(d.loop, &t, 10);
		loop_run(d.loop);
	}
	loop_timer_arm(d.loop, &t, 20);
	loop_run(d.loop);
}

static int good_socket(int fd)
{
	unsigned mark = 0;
	socklen_t len = sizeof(mark);
	int type = 0;
	socklen_t tl = sizeof(type);

	return fd >= 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK) && (fcntl(fd, F_GETFD) & FD_CLOEXEC) &&
	       getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len) == 0 && mark == WEFTD_MARK &&
	       getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM;
}

int main(void)
{
	int nsfd, base, fds[64], bad = 0;
	struct podsock *ps;

	if (geteuid() != 0) {
		printf("skip: setns needs root\n");
		return 77;
	}
	d.loop = loop_new(16);
	d.chores = chores_start();
	nsfd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	CHECK(d.loop && d.chores && nsfd >= 0);
	/* Each thread keeps its own netns fd open after its first use. */
	ps = podsock_new(&d, nsfd, 1);
	settle();
	podsock_close(ps);
	settle();
	close(podsock_take(NULL, &d, nsfd, AF_INET));
	d.stats.sockets_in_place = 0;
	base = fd_count();

	/* Filled ahead: the first four come from the reserve. */
	ps = podsock_new(&d, nsfd, 1);
	CHECK(ps != NULL);
	settle();
	CHECK_EQ_INT(fd_count(), base + 4);
	for (int i = 0; i < 4; i++) {
		fds[i] = podsock_take(ps, &d, nsfd, AF_INET);
		bad += !good_socket(fds[i]);
	}
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(d.stats.sockets_ahead, 4);
	CHECK_EQ_INT(d.stats.sockets_in_place, 0);

	/* A burst before the refill is back: made in place, the same kind. */
	for (int i = 4; i < 10; i++) {
		fds[i] = podsock_take(ps, &d, nsfd, AF_INET);
		bad += !good_socket(fds[i]);
	}
	CHECK_EQ_INT(bad, 0);
	CHECK(d.stats.sockets_in_place >= 1);
	CHECK_EQ_INT(d.stats.sockets_ahead + d.stats.sockets_in_place, 10);
	for (int i = 0; i < 10; i++)
		close(fds[i]);

	/* The reserve grew: after the refill, more than four in a row come
	 * ahead. */
	settle();
	d.stats.sockets_ahead = d.stats.sockets_in_place = 0;
	for (int i = 0; i < 8; i++)
		fds[i] = podsock_take(ps, &d, nsfd, AF_INET);
	CHECK_EQ_INT(d.stats.sockets_in_place, 0);
	CHECK_EQ_INT(d.stats.sockets_ahead, 8);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	settle();
	CHECK(fd_count() > base + 4);

	/* Two quiet trims: back to four. */
	podsock_trim(ps);
	podsock_trim(ps);
	CHECK_EQ_INT(fd_count(), base + 4);

	/* IPv6 has its own stack; an unknown family is made in place. */
	fds[0] = podsock_take(ps, &d, nsfd, AF_INET6);
	CHECK(fds[0] >= 0);
	close(fds[0]);
	fds[0] = podsock_take(NULL, &d, nsfd, AF_INET);
	CHECK(good_socket(fds[0]));
	close(fds[0]);

	/* Closed with a refill in flight: its sockets are closed on return. */
	fds[0] = podsock_take(ps, &d, nsfd, AF_INET);
	fds[1] = podsock_take(ps, &d, nsfd, AF_INET);
	fds[2] = podsock_take(ps, &d, nsfd, AF_INET);
	close(fds[0]);
	close(fds[1]);
	close(fds[2]);
	podsock_close(ps);
	settle();
	CHECK_EQ_INT(fd_count(), base);
	podsock_close(NULL);

	chores_stop(d.chores);
	loop_free(d.loop);
	close(nsfd);
	return check_done("test_podsock");
}
