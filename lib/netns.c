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

static __thread int netns_self = -1;	/* this thread's own namespace, opened once */

int netns_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int netns_sockets(int nsfd, int domain, int type, int proto, uint32_t mark, int *fds, int n)
{
	int made = 0, err = 0;

	if (n <= 0)
		return -EINVAL;
	if (netns_self < 0) {
		netns_self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (netns_self < 0)
			return -errno;
	}
	if (setns(nsfd, CLONE_NEWNET) < 0)
		return -errno;
	while (made < n) {
		int fd = socket(domain, type | SOCK_CLOEXEC, proto);

		if (fd < 0) {
			err = -errno;
			break;
		}
		fds[made++] = fd;
	}
	if (setns(netns_self, CLONE_NEWNET) < 0) {
		/* Staying in a pod's namespace would misroute everything
		 * that follows; nothing sane can go on. */
		log_error("netns: cannot return to our own network namespace: %m");
		abort();
	}
	for (int i = 0; mark && i < made; i++) {
		if (setsockopt(fds[i], SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
			err = -errno;
			while (made)
				close(fds[--made]);
			break;
		}
	}
	return made ? made : err;
}

int netns_socket(int nsfd, int domain, int type, int proto, uint32_t mark)
{
	int fd, ret = netns_sockets(nsfd, domain, type, proto, mark, &fd, 1);

	return ret == 1 ? fd : ret;
}
