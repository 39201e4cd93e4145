/* SPDX-License-Identifier: Apache-2.0 */
/* Sockets inside another network namespace: enter it, make the socket,
 * come back. weftd runs one loop per thread and the switch is per thread,
 * so nothing else sees the other namespace. */
#ifndef WEFT_NETNS_H
#define WEFT_NETNS_H

#include <stdint.h>

/* Open a netns by path (/var/run/netns/x, /proc/PID/ns/net); fd or -errno. */
int netns_open(const char *path);
/* socket(domain, type, proto) inside the netns nsfd, with SO_MARK mark when
 * mark != 0. Returns the fd or -errno; the thread is always back in its
 * own namespace on return. */
int netns_socket(int nsfd, int domain, int type, int proto, uint32_t mark);
/* Up to n such sockets into fds for one pair of namespace switches. The
 * count made (n unless socket() failed, e.g. EMFILE), or -errno when none
 * could be made. */
int netns_sockets(int nsfd, int domain, int type, int proto, uint32_t mark, int *fds, int n);

#endif
