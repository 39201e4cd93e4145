/* SPDX-License-Identifier: Apache-2.0 */
/* A weftd state without loop, sockets or agent, for unit tests and fuzz
 * targets of the decisions that read only the configuration, the registry
 * and the enrolled pods (daemon/boundary.c): node2 of a two-node cluster,
 * trust domain cluster.local, the default ports, no pods enrolled.
 * Include after <weft/registry.h>, <weft/regproto.h> and daemon/regcache.h. */
#ifndef TESTS_WEFTD_FIXTURE_H
#define TESTS_WEFTD_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "../daemon/boundary.h"
#include "../daemon/pods.h"
#include "../daemon/weftd.h"

static const char weftd_fixture_yaml[] =
	"trust_domain: cluster.local\n"
	"nodes:\n"
	"  - {name: node1, address: 10.10.0.1}\n"
	"  - {name: node2, address: 10.10.0.2}\n"
	"  - {name: node3, address: 'fd00:10::3'}\n"
	"workloads:\n"
	"  - {name: a, namespace: default, service_account: sa-a, node: node1,\n"
	"     ips: [10.20.1.2]}\n"
	"  - {name: b, namespace: default, service_account: sa-b, node: node2,\n"
	"     ips: [10.20.2.2]}\n"
	"  - {name: c, namespace: other, service_account: sa-c, node: node3,\n"
	"     ips: ['fd00:20::3']}\n";

/* d as node2 with the registry above; 0, or -1 when it could not be made. */
static int weftd_fixture_init(struct weftd *d)
{
	char err[REG_ERR_MAX];
	struct registry *r;
	uint8_t *msg;
	size_t len;
	int rc;

	memset(d, 0, sizeof(*d));
	d->cfg.node_name = (char *)"node2";
	d->cfg.node_ip = (char *)"10.10.0.2";
	boundary_node_ip_set(d);
	d->cfg.trust_domain = (char *)"cluster.local";
	d->cfg.hbone_port = 15008;
	d->cfg.outbound_port = 15001;
	d->cfg.inbound_plain_port = 15006;
	d->cfg.admin_port = 15000;
	d->cfg.ready_port = 15021;
	d->cfg.metrics_port = 15020;
	r = registry_parse(weftd_fixture_yaml, sizeof(weftd_fixture_yaml) - 1, "fixture", err,
			   sizeof(err));
	if (!r || regproto_snapshot(r, 1, &msg, &len)) {
		registry_free(r);
		return -1;
	}
	registry_free(r);
	d->reg = regcache_new();
	d->pods = pods_new(d);
	rc = d->reg && d->pods ? regcache_apply(d->reg, msg, len, err, sizeof(err)) : -1;
	free(msg);
	return rc ? -1 : 0;
}


static void weftd_fixture_deinit(struct weftd *d)
{
	pods_free(d->pods);
	regcache_free(d->reg);
}

#endif
