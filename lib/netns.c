/* SPDX-License-Identifier: Apache-2.0 */
/* Sockets inside another network namespace. A socket belongs to the
 * namespace it was created in, whatever thread uses it later, so weftd
 * enters a pod's namespace only for the socket() call. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/log.h>
#include <weft/netns.h>

static int netns_self = -1;	/* this thread's own namespace, opened once */

int netns_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int netns_socket(int nsfd, int domain, int type, int proto, uint32_t mark)
{
	int fd, err = 0;

	if (netns_self < 0) {
		netns_self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (netns_self < 0)
			return -errno;
	}
	if (setns(nsfd, CLONE_NEWNET) < 0)
		return -errno;
	fd = socket(domain, type | SOCK_CLOEXEC, proto);
	if (fd < 0)
		err = -errno;
	if (setns(netns_self, CLONE_NEWNET) < 0) {
		/* Staying in a pod's namespace would misroute everything
		 * that follows; nothing sane can go on. */
		log_error("netns: cannot return to our own network namespace: %m");
		abort();
	}
	if (err)
		return err;
	if (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}
