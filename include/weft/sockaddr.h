/* SPDX-License-Identifier: Apache-2.0 */
/* Socket addresses as text: "ip:port" / "[v6]:port" both ways, and IP
 * literals with a port. Numeric only (no name resolution). */
#ifndef WEFT_SOCKADDR_H
#define WEFT_SOCKADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "a.b.c.d:port" or "[v6]:port", port 0..65535. 0 or -EINVAL. */
int sockaddr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* An IPv4 or IPv6 literal and a port. 0 or -EINVAL. */
int sockaddr_from_ip(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);
/* "ip:port", "[v6]:port", "unix" or "?"; returns out. */
char *sockaddr_str(const struct sockaddr_storage *ss, char *out, size_t len);
uint16_t sockaddr_port(const struct sockaddr_storage *ss);
/* 1 when a and b carry the same IP (ports ignored; an IPv4 address equals
 * its v4-mapped IPv6 form). */
int sockaddr_same_ip(const struct sockaddr *a, const struct sockaddr *b);
/* 1 when one of the n addresses in v carries a's IP (sockaddr_same_ip). */
int sockaddr_ip_in(const struct sockaddr_storage *v, size_t n, const struct sockaddr *a);
/* What makes a unfit as a peer's address: "loopback", "unspecified",
 * "link-local", "multicast", "broadcast" or "not an IP address"; NULL for
 * an ordinary unicast address. */
const char *sockaddr_special(const struct sockaddr *a);

#endif
