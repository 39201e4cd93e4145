/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the gateway's outer CONNECT handling
 * (daemon/gateway.c, gateway_route): the bytes are the :authority, up to
 * 300 of them, against the registry of tests/gateway_fixture.h.
 * Invariant: a route is the HBONE address of a node of the gateway's own
 * network that is not a gateway; a refusal says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/registry.h>
#include <weft/regproto.h>
#include <weft/sockaddr.h>

#include <weft/regcache.h>
#include "../gateway_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct regcache *rc;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char auth[301], why[GATEWAY_WHY_MAX] = "", got[80];
	struct sockaddr_storage to;
	socklen_t len;

	if (!rc && !(rc = gateway_fixture_reg()))
		abort();
	if (size >= sizeof(auth))
		return 0;
	memcpy(auth, data, size);
	auth[size] = '\0';
	if (gateway_route(&gateway_fixture_self, rc, auth, &to, &len, why, sizeof(why))) {
		if (!why[0])
			abort();
		return 0;
	}
	sockaddr_str(&to, got, sizeof(got));
	if (strcmp(got, "172.30.0.1:15008") && strcmp(got, "172.30.0.2:15009"))
		abort();
	return 0;
}
