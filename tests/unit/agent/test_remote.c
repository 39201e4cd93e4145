/* SPDX-License-Identifier: Apache-2.0 */
/* A remote network's import (agent/remote.c, agent/vips.c): the remote's
 * nodes tagged with the configured network, workloads on none of its
 * nodes left out, one local VIP per service from vip_cidr that avoids the
 * local VIPs and the range's ends, kept across imports and given again
 * from the name's hash after a restart; a full range is counted. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <weft/registry.h>

#include "../check.h"
#include "../../../agent/config.h"
#include "../../../agent/remote.h"
#include "../../../agent/vips.h"

static struct registry *parse(const char *y)
{
	char err[REG_ERR_MAX];
	struct registry *r = registry_parse(y, strlen(y), "t", err, sizeof(err));

	if (!r)
		fprintf(stderr, "%s\n", err);
	return r;
}

static const char remote_yaml[] =
	"trust_domain: east.local\n"
	"nodes:\n"
	"  - {name: node1, address: 172.30.0.1, network: elsewhere}\n"
	"  - {name: gw, address: 172.30.0.249, gateway_address: 192.168.50.3}\n"
	"workloads:\n"
	"  - {name: a, namespace: default, node: node1, ips: [10.244.1.2], labels: {app: a}}\n"
	"services:\n"
	"  - {name: a, namespace: default, vips: [10.96.0.1], ports: [{port: 80, target_port: 8080}],\n"
	"     selector: {app: a}}\n"
	"  - {name: b, namespace: default, vips: [10.96.0.2], ports: [{port: 80}]}\n"
	"  - {name: c, namespace: other, vips: [10.96.0.3], ports: [{port: 80}]}\n";

static struct agent_remote cfg = {
	.network = "east", .trust_domain = "east.local", .vip_cidr = "10.97.0.0/16",
	.vip_base = 0x0a610000, .vip_prefix = 16,
};

static const char *vip(const struct reg_remote *rm, size_t i)
{
	return rm->reg->services[i].n_vips == 1 ? rm->reg->services[i].vips[0] : "?";
}

static void release(struct reg_remote *rm)
{
	reg_remote_release(rm);
}

int main(void)
{
	struct registry *src = parse(remote_yaml);
	struct registry *local = parse("services:\n  - {name: l, namespace: default, "
				       "vips: [10.97.0.9], ports: [{port: 80}]}\n");
	struct reg_remote a, b, c;
	size_t unplaced, refused;

	CHECK(src && local);
	if (!src || !local)
		return check_done("remote");
	/* The import expects nodes sorted by name, as regcache and
	 * registry_parse keep them: gw before node1. */
	CHECK_EQ_STR(src->nodes[0].name, "gw");
	CHECK_EQ_INT(remote_import(&cfg, src, local, NULL, &a, &unplaced, &refused), 0);
	CHECK_EQ_INT(unplaced, 0);
	CHECK_EQ_STR(a.network, "east");
	CHECK_EQ_STR(a.trust_domain, "east.local");
	CHECK_EQ_INT(a.reg->n_nodes, 2);
	CHECK_EQ_STR(a.reg->nodes[0].network, "east");
	CHECK_EQ_STR(a.reg->nodes[1].network, "east");
	CHECK_EQ_STR(a.reg->nodes[0].gateway_address, "192.168.50.3");
	CHECK_EQ_INT(a.reg->n_workloads, 1);
	CHECK_EQ_INT(a.reg->n_services, 3);
	CHECK_EQ_INT(a.reg->services[0].ports[0].target_port, 8080);
	CHECK_EQ_INT(a.reg->services[0].n_endpoints, src->services[0].n_endpoints);
	for (size_t i = 0; i < 3; i++) {
		CHECK(!strncmp(vip(&a, i), "10.97.", 6));
		CHECK(strcmp(vip(&a, i), "10.97.0.9") != 0);
		CHECK(strcmp(vip(&a, i), "10.97.0.0") != 0);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(vip(&a, i), vip(&a, j)) != 0);
	}
	/* Again with the first as the last import, and again without (a
	 * restart that lost it): the same addresses. */
	CHECK_EQ_INT(remote_import(&cfg, src, local, a.reg, &b, &unplaced, &refused), 0);
	CHECK_EQ_INT(remote_import(&cfg, src, local, NULL, &c, &unplaced, &refused), 0);
	for (size_t i = 0; i < 3; i++) {
		CHECK_EQ_STR(vip(&b, i), vip(&a, i));
		CHECK_EQ_STR(vip(&c, i), vip(&a, i));
	}
	release(&b);
	release(&c);

	/* A local VIP now on a remote service's address: the local one wins,
	 * the remote service moves. */
	free(local->services[0].vips[0]);
	local->services[0].vips[0] = strdup(vip(&a, 1));
	CHECK_EQ_INT(remote_import(&cfg, src, local, a.reg, &b, &unplaced, &refused), 0);
	CHECK_EQ_STR(vip(&b, 0), vip(&a, 0));
	CHECK(strcmp(vip(&b, 1), vip(&a, 1)) != 0);
	CHECK_EQ_STR(vip(&b, 2), vip(&a, 2));
	release(&b);

	/* A /30 has two usable addresses: the third service gets none. */
	struct agent_remote small = cfg;
	small.vip_prefix = 30;
	CHECK_EQ_INT(remote_import(&small, src, NULL, NULL, &b, &unplaced, &refused), 0);
	CHECK_EQ_INT(unplaced, 1);
	CHECK_EQ_INT(b.reg->n_services, 2);
	CHECK(!strcmp(vip(&b, 0), "10.97.0.1") || !strcmp(vip(&b, 0), "10.97.0.2"));
	release(&b);

	/* A workload on a node the remote did not send is left out. */
	free(src->workloads[0].node);
	src->workloads[0].node = strdup("node9");
	CHECK_EQ_INT(remote_import(&cfg, src, local, NULL, &b, &unplaced, &refused), 0);
	CHECK_EQ_INT(b.reg->n_workloads, 0);
	release(&b);

	/* Names a remote chose that are not lowercase DNS names stay out. */
	free(src->services[2].name);
	src->services[2].name = strdup("evil\"name");
	free(src->nodes[1].name);
	src->nodes[1].name = strdup("Node1");
	CHECK_EQ_INT(remote_import(&cfg, src, local, NULL, &b, &unplaced, &refused), 0);
	CHECK_EQ_INT(refused, 2);
	CHECK_EQ_INT(b.reg->n_nodes, 1);
	CHECK_EQ_INT(b.reg->n_services, 2);
	release(&b);

	release(&a);
	registry_free(src);
	registry_free(local);
	return check_done("remote");
}
