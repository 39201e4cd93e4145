/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for weft-agent's import of a remote network's registry
 * (agent/remote.c): arbitrary bytes as the remote agent's WatchResponse
 * snapshot; whatever the cache accepts is imported twice (the second time
 * with the first as the last import). The import's services have one VIP
 * each, inside the range, unique, never a local VIP nor the range's first
 * or last address, the same both times; its nodes are of the configured
 * network; and the result, published as a remote network, is accepted by
 * weftd's registry cache. ASan/UBSan catch the rest. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/regcache.h>
#include <weft/registry.h>
#include <weft/regproto.h>

#include "../../agent/config.h"
#include "../../agent/remote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char local_yaml[] =
	"trust_domain: west.local\n"
	"services:\n"
	"  - {name: l, namespace: default, vips: [10.97.0.5, 10.96.0.1], ports: [{port: 80}]}\n";

static struct agent_remote cfg = {
	.network = "east",
	.trust_domain = "east.local",
	.agent_address = "192.168.50.3:15012",
	.server_name = "weft-agent",
	.vip_cidr = "10.97.0.0/28",
	.vip_base = 0x0a610000,
	.vip_prefix = 28,
};

static struct registry *local;

static uint32_t vip_of(const struct reg_service *s)
{
	struct in_addr a;

	if (s->n_vips != 1 || inet_pton(AF_INET, s->vips[0], &a) != 1)
		abort();
	return ntohl(a.s_addr);
}

static void check(const struct reg_remote *rm, const struct registry *src, size_t unplaced,
		  size_t refused)
{
	uint16_t seen = 0;

	if (rm->reg->n_services + unplaced > src->n_services ||
	    rm->reg->n_services + unplaced + refused < src->n_services ||
	    rm->reg->n_nodes > src->n_nodes || rm->reg->n_nodes + refused < src->n_nodes)
		abort();
	for (size_t i = 0; i < rm->reg->n_nodes; i++)
		if (strcmp(rm->reg->nodes[i].network, "east"))
			abort();
	for (size_t i = 0; i < rm->reg->n_services; i++) {
		uint32_t v = vip_of(&rm->reg->services[i]), k = v - cfg.vip_base;

		if ((v & 0xfffffff0) != cfg.vip_base || k == 0 || k == 15 || k == 5 ||
		    (seen & (1u << k)))
			abort();
		seen |= (uint16_t)(1u << k);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct regcache *rc = regcache_new(), *weftd = regcache_new();
	struct reg_remotes *rs = reg_remotes_new(1);
	struct reg_remote first = { 0 };
	char err[REG_ERR_MAX];
	size_t unplaced, refused, msglen;
	uint8_t *msg;

	if (!local && !(local = registry_parse(local_yaml, sizeof(local_yaml) - 1, "local", err,
					       sizeof(err))))
		abort();
	if (!rc || !weftd || !rs)
		abort();
	if (regcache_apply(rc, data, size, err, sizeof(err)) || !regcache_ready(rc))
		goto out;
	const struct registry *src = regcache_registry(rc);

	if (remote_import(&cfg, src, local, NULL, &first, &unplaced, &refused))
		goto out;
	check(&first, src, unplaced, refused);
	if (remote_import(&cfg, src, local, first.reg, &rs->v[0], &unplaced, &refused))
		goto out;
	check(&rs->v[0], src, unplaced, refused);
	for (size_t i = 0; i < first.reg->n_services; i++)
		if (vip_of(&first.reg->services[i]) != vip_of(&rs->v[0].reg->services[i]))
			abort();
	struct registry wrap = { .trust_domain = "west.local", .remotes = rs };

	if (regproto_snapshot(&wrap, 1, &msg, &msglen))
		goto out;
	if (regcache_apply(weftd, msg, msglen, err, sizeof(err)))
		abort();	/* an import weftd refuses would cut this network off */
	free(msg);
out:
	reg_remote_release(&first);
	reg_remotes_unref(rs);
	regcache_free(rc);
	regcache_free(weftd);
	return 0;
}
