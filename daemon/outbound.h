/* SPDX-License-Identifier: Apache-2.0 */
/* Outbound capture: a pod's connection redirected to 15001. Finds the
 * original destination, resolves it (service VIP -> endpoint, pod IP ->
 * workload), and carries it: HBONE tunnel to the destination node, direct
 * delivery on the same node, or plaintext passthrough for unknown
 * destinations (or a reset when configured to deny). */
#ifndef DAEMON_OUTBOUND_H
#define DAEMON_OUTBOUND_H

struct weftd;
struct pod;

/* fd: the accepted app socket (in the pod's netns); taken. */
void outbound_accept(struct weftd *d, struct pod *pod, int fd);
/* An identity became ready or the registry changed: resume connections
 * that wait for their source pod's certificate. */
void outbound_identities_changed(struct weftd *d);

#endif
