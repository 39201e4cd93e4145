/* SPDX-License-Identifier: Apache-2.0 */
/* Sidecar mode (`weftd --mode sidecar`): weftd inside one pod's network
 * namespace, serving that pod alone. */
#ifndef DAEMON_SIDECAR_H
#define DAEMON_SIDECAR_H

#include <stddef.h>

#include "cni.pb-c.h"

struct weftd;

/* Enrollment in sidecar mode: admit only the pod of our own netns, only
 * one, owning node_ip when that is set; then enroll it and open HBONE on
 * its IP. Takes netns_fd like pods_add. 0, or -errno with err. */
int sidecar_add(struct weftd *d, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
		char *err, size_t errlen);
/* Open HBONE for the enrolled pod (after a restart re-enrolled it from
 * state_dir). 0, or -errno with err. */
int sidecar_listen(struct weftd *d, char *err, size_t errlen);

#endif
