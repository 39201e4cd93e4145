/* SPDX-License-Identifier: Apache-2.0 */
/* The node's trust boundary (DESIGN §5.1): what weftd refuses to believe.
 * A destination that is one of weftd's own listeners is never dialled (no
 * loop through weftd), and the source address a peer claims in a CONNECT's
 * `forwarded` header is used only when the registry backs it. Pure
 * decisions over weftd's state: no sockets, clock or logging here; the
 * callers log the sentence these functions write. */
#ifndef DAEMON_BOUNDARY_H
#define DAEMON_BOUNDARY_H

#include <stddef.h>
#include <sys/socket.h>

struct weftd;

/* Why texts fit in this many bytes. */
#define BOUNDARY_WHY_MAX 320

/* 1 when dst (ip:port) is one of weftd's own listeners: one of its ports
 * (outbound and inbound capture, HBONE, admin, readiness, metrics) on a
 * loopback, unspecified or other special address, this node's address, a
 * registry node, an enrolled pod or a registry workload. why says which.
 * 0 otherwise. */
/* cfg.node_ip changed (start, a sidecar that learned its pod's IP): parse
 * it once into d->node_addr for the checks below and delivery. */
void boundary_node_ip_set(struct weftd *d);

int boundary_is_self(const struct weftd *d, const struct sockaddr *dst, char *why, size_t len);

/* Parse an RFC 7239 `forwarded` value that carries exactly one element with
 * exactly one parameter, `for`: for=1.2.3.4, for="1.2.3.4:5",
 * for="[v6]" or for="[v6]:5" (the port is 0 when absent). Anything else —
 * more elements, other parameters, obfuscated or "unknown" nodes, spaces —
 * is -EINVAL. */
int boundary_forwarded_parse(const char *v, struct sockaddr_storage *out);

/* The source of an HBONE CONNECT. forwarded is the header's value or NULL;
 * client_id the verified SPIFFE ID of the tunnel's client certificate;
 * tunnel_peer the tunnel's TCP peer; dst_ips the destination pod's
 * addresses. Returns 0 with *src the claimed address once the registry has
 * a workload with that IP, whose identity is client_id, on the node the
 * tunnel comes from — or with src->ss_family AF_UNSPEC when there is no
 * header (the source is unknown: no source_ips rule matches it). Returns
 * -EACCES with why (naming the claim and the identity) otherwise. */
int boundary_source_claim(const struct weftd *d, const char *forwarded, const char *client_id,
			  const struct sockaddr *tunnel_peer, const struct sockaddr_storage *dst_ips,
			  size_t n_dst_ips, struct sockaddr_storage *src, char *why, size_t len);

#endif
