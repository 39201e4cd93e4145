/* SPDX-License-Identifier: Apache-2.0 */
/* Local VIPs for a remote network's services (DESIGN §8.1): apps dial a
 * remote service by an address of this cluster, from the remote network's
 * vip_cidr, stable across updates and restarts. Pure: no I/O. */
#ifndef AGENT_VIPS_H
#define AGENT_VIPS_H

#include <stddef.h>
#include <stdint.h>

struct registry;
struct reg_service;

struct vips_range {
	uint32_t base;		/* first address, host order, no host bits */
	uint8_t prefix;		/* 12..30 */
};

/* One IPv4 VIP (host order) for each of the n services svcs of remote
 * network network, into out[i]: the one the service had in prev (the last
 * import; may be NULL) when that is still in the range and free, else the
 * first free address from a hash of network/namespace/name, probing
 * upwards (at most 4096 steps). Never the range's first or last address,
 * nor any VIP, pod or node address of local (the local one wins). 0 in
 * out[i] when no address was found (counted in *full). 0 or -ENOMEM. */
int vips_assign(const struct vips_range *r, const char *network, const struct registry *local,
		const struct registry *prev, const struct reg_service *svcs, size_t n,
		uint32_t *out, size_t *full);

#endif
