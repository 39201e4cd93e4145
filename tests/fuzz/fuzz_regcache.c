/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for weftd's registry cache: arbitrary bytes as a
 * WatchResponse, applied to an empty cache (snapshot path) and to a cache
 * holding a small cluster (delta path). Whatever is accepted must satisfy
 * the lookup invariants, and its state must re-encode to a snapshot that a
 * fresh cache accepts and that encodes to the same bytes again. ASan/UBSan
 * catch the rest, LeakSanitizer the leaks. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/registry.h>
#include <weft/sockaddr.h>
#include <weft/regproto.h>

#include <weft/regcache.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char base_yaml[] =
	"trust_domain: cluster.local\n"
	"nodes:\n"
	"  - {name: node1, address: 10.10.0.1}\n"
	"  - {name: node2, address: 'fd00:10::2'}\n"
	"workloads:\n"
	"  - {name: a, namespace: default, node: node1, ips: [10.20.1.2], labels: {app: e}}\n"
	"  - {name: b, namespace: default, node: node2, ips: ['fd00:20::2'], labels: {app: e}}\n"
	"services:\n"
	"  - {name: e, namespace: default, vips: [10.96.0.10], ports: [{port: 80}],\n"
	"     selector: {app: e}}\n"
	"policies:\n"
	"  - {name: g, scope: global, action: DENY}\n";

static uint8_t *base_msg;
static size_t base_len;

static void base_init(void)
{
	char err[REG_ERR_MAX];
	struct registry *r;

	if (base_msg)
		return;
	r = registry_parse(base_yaml, sizeof(base_yaml) - 1, "base", err, sizeof(err));
	if (!r || regproto_snapshot(r, 1, &base_msg, &base_len))
		abort();
	registry_free(r);
}

/* sockaddr for an IP literal (validated by the cache already). */
static int sa_make(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	socklen_t len;

	return sockaddr_from_ip(ip, port, ss, &len) ? -1 : 0;
}

/* The address as the cache keys it: 4 bytes for IPv4 and v4-mapped IPv6,
 * 16 otherwise; returns the length, 0 if invalid. */
static size_t ip_norm(const char *ip, uint8_t out[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (inet_pton(AF_INET, ip, out) == 1)
		return 4;
	if (inet_pton(AF_INET6, ip, out) != 1)
		return 0;
	if (!memcmp(out, mapped, sizeof(mapped))) {
		memmove(out, out + 12, 4);
		return 4;
	}
	return 16;
}

static void check_invariants(struct regcache *rc)
{
	const struct registry *r = regcache_registry(rc);
	struct sockaddr_storage ss;
	size_t i, j, p;

	if (!regcache_ready(rc) || !regcache_trust_domain(rc))
		abort();
	for (i = 0; i < r->n_nodes; i++)
		if (regcache_node(rc, r->nodes[i].name) != &r->nodes[i])
			abort();
	for (i = 0; i < r->n_workloads; i++) {
		const struct reg_workload *w = &r->workloads[i];

		if (regcache_workload(rc, w->uid) != w)
			abort();
		for (j = 0; j < w->n_ips; j++) {
			const struct reg_workload *hit;
			uint8_t want[16], got[16];
			size_t k, n = ip_norm(w->ips[j], want);

			if (!n || sa_make(w->ips[j], 0, &ss))
				abort();	/* an invalid IP got in */
			hit = regcache_workload_by_ip(rc, (struct sockaddr *)&ss);
			if (!hit)
				abort();
			/* with duplicate IPs another workload may own it,
			 * but it must list the address */
			for (k = 0; k < hit->n_ips; k++)
				if (ip_norm(hit->ips[k], got) == n && !memcmp(got, want, n))
					break;
			if (k == hit->n_ips)
				abort();
		}
	}
	for (i = 0; i < r->n_services; i++) {
		const struct reg_service *s = &r->services[i];

		for (j = 0; j < s->n_vips; j++) {
			for (p = 0; p < s->n_ports; p++) {
				uint16_t tp = 0;

				if (sa_make(s->vips[j], s->ports[p].port, &ss))
					abort();
				if (!regcache_service_by_vip(rc, (struct sockaddr *)&ss, &tp) || !tp)
					abort();
			}
		}
		for (j = 0; j < 3; j++) {
			const struct reg_workload *w = regcache_service_pick(rc, s);

			if (w && (!w->n_ips || !regcache_node(rc, w->node)))
				abort();
		}
	}
}

/* The state re-encodes, applies to a fresh cache, and re-encodes the same. */
static void check_roundtrip(struct regcache *rc)
{
	struct regcache *again = regcache_new();
	uint8_t *a = NULL, *b = NULL;
	size_t la, lb;
	char err[256];

	if (!again)
		return;
	if (regproto_snapshot(regcache_registry(rc), regcache_version(rc), &a, &la))
		goto out;
	if (regcache_apply(again, a, la, err, sizeof(err)))
		abort();
	if (regproto_snapshot(regcache_registry(again), regcache_version(again), &b, &lb))
		goto out;
	if (la != lb || memcmp(a, b, la))
		abort();
out:
	free(a);
	free(b);
	regcache_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct regcache *rc;
	char err[256];
	uint64_t v;

	base_init();

	rc = regcache_new();
	if (!rc)
		return 0;
	err[0] = '\0';
	if (regcache_apply(rc, data, size, err, sizeof(err)) == 0) {
		check_invariants(rc);
		check_roundtrip(rc);
	} else if (!err[0] || regcache_ready(rc)) {
		abort();	/* a rejection says why and changes nothing */
	}
	regcache_free(rc);

	rc = regcache_new();
	if (!rc)
		return 0;
	if (regcache_apply(rc, base_msg, base_len, err, sizeof(err)))
		abort();
	v = regcache_version(rc);
	if (regcache_apply(rc, data, size, err, sizeof(err)) == 0) {
		check_invariants(rc);
		check_roundtrip(rc);
	} else if (regcache_version(rc) != v || regcache_registry(rc)->n_workloads != 2) {
		abort();
	}
	regcache_free(rc);
	return 0;
}
