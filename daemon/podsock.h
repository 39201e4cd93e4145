/* SPDX-License-Identifier: Apache-2.0 */
/* Delivery sockets made ahead inside a pod's network namespace. A socket
 * belongs to the namespace it was made in, and making one there means two
 * setns() calls: the chores thread makes them in batches, and the data path
 * takes a ready one per connection (inbound delivery, same-node delivery,
 * passthrough). An empty reserve is not an error: the socket is then made
 * in place, counted, and the reserve grows for the next burst. */
#ifndef DAEMON_PODSOCK_H
#define DAEMON_PODSOCK_H

struct weftd;
struct podsock;

/* A pod's reserve; netns_fd stays the pod's (each refill dups it). Starts
 * filling for the families in fams (bit 0: IPv4, bit 1: IPv6). NULL when
 * out of memory (then every socket is made in place). */
struct podsock *podsock_new(struct weftd *d, int netns_fd, unsigned fams);
/* The namespace fd changed (a re-enrollment into the same netns). */
void podsock_netns(struct podsock *ps, int netns_fd);
/* A TCP socket in the pod's netns (non-blocking, close-on-exec, marked
 * WEFTD_MARK), fd or -errno. ps may be NULL. */
int podsock_take(struct podsock *ps, struct weftd *d, int netns_fd, int family);
/* From the trim timer: a reserve that gave nothing since the last call
 * shrinks back to its base size. */
void podsock_trim(struct podsock *ps);
/* Sockets in the reserve now (an fd each). */
unsigned podsock_ready(const struct podsock *ps);
/* The pod is gone: close the reserve (a refill in flight closes its
 * sockets when it comes back). NULL is a no-op. */
void podsock_close(struct podsock *ps);

#endif
