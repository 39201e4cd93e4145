/* SPDX-License-Identifier: Apache-2.0 */
/* Stable local VIPs for remote services: a bitmap of the range's taken
 * addresses (at most 2^20 bits for a /12), the last import's assignments
 * kept first, then a hash of the service's name placing the new ones, so
 * that the same service gets the same address after a restart too. */
#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include <weft/registry.h>

#include "vips.h"

#define VIPS_PROBE_MAX 4096

struct vips_map {
	const struct vips_range *r;
	uint32_t size;		/* addresses in the range */
	uint8_t *taken;		/* one bit per address */
};

static int vips_bit(const struct vips_map *m, uint32_t i)
{
	return m->taken[i >> 3] & (1u << (i & 7));
}

static void vips_take(struct vips_map *m, uint32_t i)
{
	m->taken[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* The index of a textual IPv4 address within the range, or -1. */
static int64_t vips_index(const struct vips_map *m, const char *ip)
{
	struct in_addr a;
	uint32_t h;

	if (!ip || inet_pton(AF_INET, ip, &a) != 1)
		return -1;
	h = ntohl(a.s_addr);
	if ((h & ~(m->size - 1)) != m->r->base)
		return -1;
	return h - m->r->base;
}

static void vips_take_ip(struct vips_map *m, const char *ip)
{
	int64_t k = vips_index(m, ip);

	if (k >= 0)
		vips_take(m, (uint32_t)k);
}

/* The VIP svc had in prev, or -1. prev's services are sorted by
 * namespace, then name (as regcache keeps them). */
static int64_t vips_previous(const struct vips_map *m, const struct registry *prev,
			     const struct reg_service *svc)
{
	size_t lo = 0, hi = prev ? prev->n_services : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct reg_service *p = &prev->services[mid];
		int d = strcmp(p->namespace, svc->namespace);

		if (!d)
			d = strcmp(p->name, svc->name);
		if (!d)
			return p->n_vips ? vips_index(m, p->vips[0]) : -1;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static uint32_t vips_hash(const char *network, const struct reg_service *svc, uint32_t size)
{
	crypto_generichash_state st;
	unsigned char h[8];
	uint64_t v = 0;

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)network, strlen(network) + 1);
	crypto_generichash_update(&st, (const unsigned char *)svc->namespace,
				  strlen(svc->namespace) + 1);
	crypto_generichash_update(&st, (const unsigned char *)svc->name, strlen(svc->name));
	crypto_generichash_final(&st, h, sizeof(h));
	for (size_t i = 0; i < sizeof(h); i++)
		v = v << 8 | h[i];
	return (uint32_t)(v % size);
}

int vips_assign(const struct vips_range *r, const char *network, const struct registry *local,
		const struct registry *prev, const struct reg_service *svcs, size_t n,
		uint32_t *out, size_t *full)
{
	struct vips_map m = { .r = r, .size = 1u << (32 - r->prefix) };
	uint32_t free_n;

	*full = 0;
	m.taken = calloc(m.size / 8 ? m.size / 8 : 1, 1);
	if (!m.taken)
		return -ENOMEM;
	/* The network and broadcast addresses of the range: never given. */
	vips_take(&m, 0);
	vips_take(&m, m.size - 1);
	/* Every local address an app may dial: a remote VIP on one of them
	 * would take its connections to the other network. */
	for (size_t i = 0; local && i < local->n_services; i++)
		for (size_t j = 0; j < local->services[i].n_vips; j++)
			vips_take_ip(&m, local->services[i].vips[j]);
	for (size_t i = 0; local && i < local->n_workloads; i++)
		for (size_t j = 0; j < local->workloads[i].n_ips; j++)
			vips_take_ip(&m, local->workloads[i].ips[j]);
	for (size_t i = 0; local && i < local->n_nodes; i++) {
		vips_take_ip(&m, local->nodes[i].address);
		vips_take_ip(&m, local->nodes[i].gateway_address);
	}
	/* Kept first, so that a new service cannot take an old one's. */
	for (size_t i = 0; i < n; i++) {
		int64_t k = vips_previous(&m, prev, &svcs[i]);

		out[i] = 0;
		if (k >= 0 && !vips_bit(&m, (uint32_t)k)) {
			vips_take(&m, (uint32_t)k);
			out[i] = r->base + (uint32_t)k;
		}
	}
	free_n = 0;
	for (uint32_t k = 0; k < m.size; k++)
		free_n += !vips_bit(&m, k);
	for (size_t i = 0; i < n; i++) {
		uint32_t k;

		if (out[i])
			continue;
		if (!free_n) {
			(*full)++;
			continue;
		}
		/* At most VIPS_PROBE_MAX steps: names chosen to hash into one
		 * run cannot make a publication scan the whole range for each. */
		k = vips_hash(network, &svcs[i], m.size);
		for (uint32_t step = 0; vips_bit(&m, k) && step < VIPS_PROBE_MAX; step++)
			k = (k + 1) & (m.size - 1);
		if (vips_bit(&m, k)) {
			(*full)++;
			continue;
		}
		vips_take(&m, k);
		free_n--;
		out[i] = r->base + k;
	}
	free(m.taken);
	return 0;
}
