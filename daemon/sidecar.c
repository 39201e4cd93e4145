/* SPDX-License-Identifier: Apache-2.0 */
/* Sidecar mode. A sidecar is weftd inside one pod's network namespace,
 * serving that pod alone, as an Istio sidecar does: its "node" is the pod
 * (its own node name, token and node SVID; node_ip is the pod's IP), so the
 * agent issues it that pod's identity only and peers check it like any
 * node. The pod's weft-cni enrolls the pod into the sidecar's own
 * enrollment socket, so capture and delivery are the node-mode code
 * unchanged. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <weft/log.h>
#include <weft/sockaddr.h>

#include "boundary.h"
#include "inbound.h"
#include "pods.h"
#include "sidecar.h"
#include "weftd.h"

/* 1 when fd is the network namespace this process runs in. */
static int sidecar_netns_is_own(int fd)
{
	struct stat a, b;

	if (fstat(fd, &a) || stat("/proc/self/ns/net", &b))
		return 0;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Whether this sidecar takes the pod: only the pod of its own netns, only
 * one pod, and the pod owns node_ip when that is configured. 0, or -errno
 * with err (which weft-cni reports). */
static int sidecar_admit(struct weftd *d, const Weft__Cni__V1__AddWorkload *add,
			 int netns_fd, char *err, size_t errlen)
{
	const struct pod *cur = pods_first(d->pods);
	const char *uid = add->uid ? add->uid : "";
	struct sockaddr_storage node;
	socklen_t len;

	if (cur && strcmp(cur->uid, uid)) {
		snprintf(err, errlen, "weftd is the sidecar of pod %s and serves no other pod "
			 "(refused %s)", cur->uid, uid);
		return -EBUSY;
	}
	if (!sidecar_netns_is_own(netns_fd)) {
		snprintf(err, errlen, "weftd is a sidecar: it serves only the pod whose network "
			 "namespace it runs in, and pod %s has another", uid);
		return -EXDEV;
	}
	if (d->cfg.node_ip && (sockaddr_from_ip(d->cfg.node_ip, 0, &node, &len) ||
			       !pods_add_has_ip(add, (struct sockaddr *)&node))) {
		snprintf(err, errlen, "pod %s does not have this sidecar's node_ip %s", uid,
			 d->cfg.node_ip);
		return -EINVAL;
	}
	return 0;
}

/* The pod is in: without a configured node_ip the pod's IP is the node IP,
 * and the HBONE listener goes up on it. 0, or -errno with err. */
int sidecar_listen(struct weftd *d, char *err, size_t errlen)
{
	const struct pod *pod = pods_first(d->pods);

	if (d->inbound)
		return 0;
	if (!pod) {
		snprintf(err, errlen, "no pod enrolled");
		return -ENOENT;
	}
	if (!d->cfg.node_ip) {
		d->cfg.node_ip = strdup(pod->ip_str);
		if (!d->cfg.node_ip) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		boundary_node_ip_set(d);
	}
	d->inbound = inbound_new(d, err, errlen);
	if (!d->inbound)
		return -EADDRNOTAVAIL;
	log_info("sidecar of pod %s: HBONE on %s:%u", pod->uid, d->cfg.node_ip,
		 d->cfg.hbone_port);
	return 0;
}

int sidecar_add(struct weftd *d, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
		char *err, size_t errlen)
{
	char e2[64];
	int rc = sidecar_admit(d, add, netns_fd, err, errlen);

	if (rc) {
		log_warn("enrollment refused: %s", err);
		close(netns_fd);
		return rc;
	}
	rc = pods_add(d->pods, add, netns_fd, err, errlen);
	if (rc)
		return rc;
	rc = sidecar_listen(d, err, errlen);
	if (rc) {
		log_error("sidecar: %s", err);
		pods_del(d->pods, add->uid, e2, sizeof(e2));
	}
	return rc;
}
