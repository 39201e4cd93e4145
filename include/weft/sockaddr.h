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

#endif
