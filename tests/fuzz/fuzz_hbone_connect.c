/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for what weftd believes of an HBONE CONNECT (the
 * decisions daemon/inbound.c takes before it opens any socket): the bytes
 * are "authority\nforwarded\nclient-id\ntunnel-peer", each part optional.
 * The authority goes through sockaddr_parse and boundary_is_self, the
 * forwarded value through boundary_source_claim against a small registry.
 * Invariants: a believed claim is a registry workload's unicast address
 * whose identity is the client's, never the destination's own. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/registry.h>
#include <weft/regproto.h>
#include <weft/sockaddr.h>
#include <weft/spiffe.h>

#include "../../daemon/boundary.h"
#include <weft/regcache.h>
#include "../weftd_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct weftd d;

/* The next '\n'-terminated part of [*p, end) as a C string in out; NULL
 * when the input has no more parts. */
static char *next_part(const uint8_t **p, const uint8_t *end, char *out, size_t cap)
{
	const uint8_t *nl;
	size_t n;

	if (*p > end)
		return NULL;
	nl = memchr(*p, '\n', (size_t)(end - *p));
	n = (size_t)((nl ? nl : end) - *p);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, *p, n);
	out[n] = 0;
	*p = nl ? nl + 1 : end + 1;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char auth[256], fwd[256], id[SPIFFE_ID_MAX], peer[128], why[BOUNDARY_WHY_MAX];
	struct sockaddr_storage dst, src, tp, pod_ip;
	const char *fwdp, *idp;
	socklen_t len;

	if (!d.reg && weftd_fixture_init(&d))
		abort();
	if (!next_part(&p, end, auth, sizeof(auth)))
		return 0;
	if (!sockaddr_parse(auth, &dst, &len))
		boundary_is_self(&d, (struct sockaddr *)&dst, why, sizeof(why));
	fwdp = next_part(&p, end, fwd, sizeof(fwd));
	idp = next_part(&p, end, id, sizeof(id));
	if (!next_part(&p, end, peer, sizeof(peer)) || sockaddr_parse(peer, &tp, &len))
		sockaddr_parse("10.10.0.1:40000", &tp, &len);
	sockaddr_from_ip("10.20.2.2", 0, &pod_ip, &len);
	if (fwdp)
		boundary_forwarded_parse(fwdp, &src);
	if (!boundary_source_claim(&d, fwdp, idp ? idp : "", (struct sockaddr *)&tp, &pod_ip, 1,
				   &src, why, sizeof(why)) && src.ss_family != AF_UNSPEC) {
		const struct reg_workload *w =
			regcache_workload_by_ip(d.reg, (struct sockaddr *)&src);

		if (!w || sockaddr_special((struct sockaddr *)&src) ||
		    sockaddr_same_ip((struct sockaddr *)&src, (struct sockaddr *)&pod_ip) ||
		    !idp || !strstr(idp, w->service_account))
			abort();
	}
	return 0;
}
