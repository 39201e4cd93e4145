/* SPDX-License-Identifier: Apache-2.0 */
/* A gateway's registry for the unit test and the fuzz target of
 * daemon/gateway.c: network east with its gateway gw, two nodes and a
 * service with endpoints on both; an imported node of network west (same
 * underlay addresses are what multi-network means, so it gets its own
 * here) with an endpoint of the same service. Include after
 * <weft/registry.h>, <weft/regproto.h> and daemon/regcache.h. */
#ifndef TESTS_GATEWAY_FIXTURE_H
#define TESTS_GATEWAY_FIXTURE_H

#include <stdlib.h>

#include "../daemon/gateway.h"

static const char gateway_fixture_yaml[] =
	"trust_domain: east.local\n"
	"nodes:\n"
	"  - {name: gw, address: 172.30.0.249, network: east, gateway_address: 192.168.50.2}\n"
	"  - {name: node1, address: 172.30.0.1, network: east}\n"
	"  - {name: node2, address: 172.30.0.2, network: east, hbone_port: 15009}\n"
	"  - {name: lo, address: 127.0.0.1, network: east}\n"
	"  - {name: wnode, address: 172.31.0.1, network: west}\n"
	"workloads:\n"
	"  - {name: e1, namespace: default, node: node1, ips: [10.244.1.2], labels: {app: echo}}\n"
	"  - {name: e2, namespace: default, node: node2, ips: [10.244.2.2], labels: {app: echo}}\n"
	"  - {name: w1, namespace: default, node: wnode, ips: [10.244.1.9], labels: {app: echo}}\n"
	"  - {name: x1, namespace: lonely, node: wnode, ips: [10.244.1.8], labels: {app: x}}\n"
	"services:\n"
	"  - {name: echo, namespace: default, vips: [10.96.0.1], ports: [{port: 80}],\n"
	"     selector: {app: echo}}\n"
	"  - {name: x, namespace: lonely, vips: [10.96.0.2], ports: [{port: 80}],\n"
	"     selector: {app: x}}\n";

static const struct gateway_self gateway_fixture_self = {
	.node = "gw", .trust_domain = "east.local", .allowed = NULL,
};

/* A regcache holding the registry above, or NULL. */
static struct regcache *gateway_fixture_reg(void)
{
	char err[REG_ERR_MAX];
	struct registry *r = registry_parse(gateway_fixture_yaml, sizeof(gateway_fixture_yaml) - 1,
					    "gateway fixture", err, sizeof(err));
	struct regcache *rc = NULL;
	uint8_t *msg = NULL;
	size_t len;

	if (r && !regproto_snapshot(r, 1, &msg, &len) && (rc = regcache_new()) &&
	    regcache_apply(rc, msg, len, err, sizeof(err))) {
		regcache_free(rc);
		rc = NULL;
	}
	registry_free(r);
	free(msg);
	return rc;
}

#endif
