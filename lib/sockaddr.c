/* SPDX-License-Identifier: Apache-2.0 */
/* Socket address text conversions shared by the agent, weftd and conn.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/sockaddr.h>

int sockaddr_from_ip(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*len = sizeof(*s6);
		return 0;
	}
	return -EINVAL;
}

int sockaddr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	const char *colon = strrchr(s, ':');
	char host[64], *end;
	size_t hl;
	long port;

	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	hl = colon - s;
	memcpy(host, s, hl);
	host[hl] = 0;
	/* Digits only: strtol alone would take " 80", "+80" and "-0". */
	if (colon[1] < '0' || colon[1] > '9' || strlen(colon + 1) > 5)
		return -EINVAL;
	port = strtol(colon + 1, &end, 10);
	if (*end || port > 65535)
		return -EINVAL;
	if (host[0] == '[') {
		/* Brackets are required around IPv6 and allowed only there. */
		if (hl < 3 || host[hl - 1] != ']' || !strchr(host, ':'))
			return -EINVAL;
		host[hl - 1] = 0;
		return sockaddr_from_ip(host + 1, (uint16_t)port, ss, len);
	}
	if (strchr(host, ':'))
		return -EINVAL;
	return sockaddr_from_ip(host, (uint16_t)port, ss, len);
}

char *sockaddr_str(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip, ntohs(s->sin6_port));
	} else if (ss->ss_family == AF_UNIX) {
		snprintf(out, len, "unix");
	} else {
		snprintf(out, len, "?");
	}
	return out;
}

uint16_t sockaddr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

/* The IPv4 address of a (or of a v4-mapped IPv6 a) in network order, in *v4;
 * 1 if it has one. */
static int sockaddr_v4(const struct sockaddr *a, uint32_t *v4)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (a->sa_family == AF_INET) {
		*v4 = ((const struct sockaddr_in *)a)->sin_addr.s_addr;
		return 1;
	}
	if (a->sa_family == AF_INET6) {
		const uint8_t *b = ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;

		if (!memcmp(b, mapped, 12)) {
			memcpy(v4, b + 12, 4);
			return 1;
		}
	}
	return 0;
}

int sockaddr_same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
	uint32_t x = 0, y = 0;
	int ax = sockaddr_v4(a, &x), by = sockaddr_v4(b, &y);

	if (ax || by)
		return ax && by && x == y;
	if (a->sa_family != AF_INET6 || b->sa_family != AF_INET6)
		return 0;
	return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		       &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
}

int sockaddr_ip_in(const struct sockaddr_storage *v, size_t n, const struct sockaddr *a)
{
	for (size_t i = 0; i < n; i++)
		if (sockaddr_same_ip((const struct sockaddr *)&v[i], a))
			return 1;
	return 0;
}

const char *sockaddr_special(const struct sockaddr *a)
{
	uint32_t v4;

	if (sockaddr_v4(a, &v4)) {
		uint32_t h = ntohl(v4);

		if ((h >> 24) == 127)
			return "loopback";
		if ((h >> 24) == 0)
			return "unspecified";
		if ((h >> 16) == 0xa9fe)
			return "link-local";
		if ((h >> 28) == 0xe)
			return "multicast";
		if (h == 0xffffffffu)
			return "broadcast";
		return NULL;
	}
	if (a->sa_family == AF_INET6) {
		const struct in6_addr *b = &((const struct sockaddr_in6 *)a)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(b))
			return "loopback";
		if (IN6_IS_ADDR_UNSPECIFIED(b))
			return "unspecified";
		if (IN6_IS_ADDR_LINKLOCAL(b))
			return "link-local";
		if (IN6_IS_ADDR_MULTICAST(b))
			return "multicast";
		return NULL;
	}
	return "not an IP address";
}
