/* SPDX-License-Identifier: Apache-2.0 */
/* The enrollment socket weft-cni talks to (/run/weft/cni.sock,
 * SOCK_SEQPACKET): one weft.cni.v1.WorkloadRequest per datagram, the pod's
 * netns fd as SCM_RIGHTS with AddWorkload, one WorkloadResponse (Ack) per
 * request. All I/O on the io_uring loop. */
#ifndef DAEMON_CNISRV_H
#define DAEMON_CNISRV_H

#include <stddef.h>

#include "cni.pb-c.h"

struct loop;
struct cnisrv;

struct cnisrv_handler {
	/* A pod to enroll; netns_fd is ours to keep (close it when done,
	 * and on failure too: cnisrv never touches it after the call).
	 * Return 0 once the pod's listeners are up, or -errno with err set:
	 * the Ack carries err back to weft-cni. */
	int (*on_add)(void *arg, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
		      char *err, size_t errlen);
	/* A pod to forget (its listeners closed, live connections reset). */
	int (*on_del)(void *arg, const char *uid, char *err, size_t errlen);
};

/* Listen on path (removing a stale socket file, mode 0600). NULL with err. */
struct cnisrv *cnisrv_new(struct loop *l, const char *path, const struct cnisrv_handler *h,
			  void *arg, char *err, size_t errlen);
void cnisrv_free(struct cnisrv *s);

#endif
