/* SPDX-License-Identifier: Apache-2.0 */
/* weft-cni's side of the enrollment socket (DESIGN §2, daemon/cnisrv.h):
 * connect, read weftd's Hello, send one WorkloadRequest (with the pod's
 * netns fd as SCM_RIGHTS for AddWorkload), wait for the Ack. Blocking with
 * a deadline: weft-cni is a short-lived process, not an event loop. */
#ifndef CNI_ENROLL_H
#define CNI_ENROLL_H

#include <stddef.h>

#include "cni.pb-c.h"

#define ENROLL_TIMEOUT_MS 10000
#define ENROLL_MSG_MAX (64u * 1024)	/* one datagram, either direction */
#define ENROLL_VERSION 1		/* Hello.version we speak */

/* Send req to the weftd listening at path and wait up to timeout_ms in all
 * for its Ack. netns_fd (-1: none) is passed, not consumed.
 * Returns 0 when weftd acked without error; -EREMOTEIO when it answered
 * with an error (err holds "weftd refused ...: <its message>"); any other
 * -errno when it could not be reached or broke the protocol (err holds
 * "weftd is not reachable at <path>: <why>" or what was wrong). */
int enroll_request(const char *path, const Weft__Cni__V1__WorkloadRequest *req, int netns_fd,
		   int timeout_ms, char *err, size_t errlen);

/* The two requests weft-cni makes, built from plain values. */
int enroll_add(const char *path, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
	       int timeout_ms, char *err, size_t errlen);
int enroll_del(const char *path, const char *uid, int timeout_ms, char *err, size_t errlen);

#endif
