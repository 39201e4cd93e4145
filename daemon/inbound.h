/* SPDX-License-Identifier: Apache-2.0 */
/* Inbound: the HBONE listener on the node IP (15008: mTLS, HTTP/2 CONNECT,
 * delivery into the destination pod's netns) and the per-pod plaintext
 * capture (15006) for traffic from clients outside the mesh. */
#ifndef DAEMON_INBOUND_H
#define DAEMON_INBOUND_H

#include <stddef.h>

struct weftd;
struct pod;
struct inbound;

/* Listen on node_ip:hbone_port. NULL with err. Connections are accepted
 * only while the node has its certificate. */
struct inbound *inbound_new(struct weftd *d, char *err, size_t errlen);
void inbound_drain(struct inbound *in);
void inbound_free(struct inbound *in);
unsigned inbound_conn_count(const struct inbound *in);
/* The accepted trust domains changed: close the HBONE connections whose
 * client's trust domain is no longer one (their streams are reset). */
void inbound_trust_changed(struct inbound *in);

/* fd: a connection captured on the pod's 15006; taken. */
void inbound_plain_accept(struct weftd *d, struct pod *pod, int fd);

#endif
