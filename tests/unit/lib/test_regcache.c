/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's registry cache: snapshots and deltas (messages made by the
 * agent's own encoder from YAML, or by hand with protobuf-c for what the
 * agent never sends), IPv4/IPv6 lookups, VIP:port -> target port,
 * round-robin that skips unusable endpoints and survives unrelated
 * updates, rejection of bad messages with the state unchanged, save/load,
 * and a 10,000-workload snapshot. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "../../pki.h"
#include <weft/registry.h>
#include <weft/regproto.h>
#include "../regyaml.h"

#include "registry.pb-c.h"
#include <weft/regcache.h>

static const char base_yaml[] =
	"trust_domain: cluster.local\n"
	"nodes:\n"
	"  - {name: node1, address: 10.10.0.1}\n"
	"  - {name: node2, address: 'fd00:10::2', hbone_port: 15009}\n"
	"workloads:\n"
	"  - {name: client, namespace: default, service_account: client, node: node1,\n"
	"     ips: [10.20.1.2, 'fd00:20::2'], labels: {app: client}}\n"
	"  - {name: echo-1, namespace: default, node: node2, ips: [10.20.2.2],\n"
	"     labels: {app: echo}}\n"
	"  - {name: echo-2, namespace: default, node: node1, ips: [10.20.1.3],\n"
	"     labels: {app: echo}}\n"
	"  - {name: echo-3, namespace: default, node: node1, ips: ['fd00:20::3'],\n"
	"     labels: {app: echo}}\n"
	"  - {name: echo-noip, namespace: default, node: node1, labels: {app: echo}}\n"
	"services:\n"
	"  - name: echo\n"
	"    namespace: default\n"
	"    vips: [10.96.0.10, 'fd00:96::10']\n"
	"    ports: [{port: 80, target_port: 8080}, {port: 443}]\n"
	"    selector: {app: echo}\n"
	"  - name: client\n"
	"    namespace: default\n"
	"    vips: [10.96.0.11]\n"
	"    ports: [{port: 9000}]\n"
	"    selector: {app: client}\n"
	"policies:\n"
	"  - {name: deny-legacy, namespace: default, scope: namespace, action: DENY,\n"
	"     rules: [{namespaces: [legacy], source_ips: [10.20.0.0/16], destination_ports: [80]}]}\n"
	"  - {name: g, scope: global, action: ALLOW}\n";

/* base_yaml with one substring replaced (must occur). */
static struct registry *parse_edit(const char *from, const char *to)
{
	return regyaml_edit(base_yaml, from, to);
}

static int apply_snapshot(struct regcache *rc, const struct registry *r, uint64_t version)
{
	char err[256] = "";
	uint8_t *buf;
	size_t len;
	int ret;

	if (regproto_snapshot(r, version, &buf, &len))
		return -ENOMEM;
	ret = regcache_apply(rc, buf, len, err, sizeof(err));
	if (ret)
		fprintf(stderr, "snapshot: %s\n", err);
	free(buf);
	return ret;
}

static int apply_delta(struct regcache *rc, const struct registry *prev,
		       const struct registry *next, uint64_t version, char *err, size_t errlen)
{
	uint8_t *buf;
	size_t len;
	int ret;

	if (regproto_delta(prev, next, version, &buf, &len) || !buf)
		return -ENOMEM;
	ret = regcache_apply(rc, buf, len, err, errlen);
	free(buf);
	return ret;
}

static int apply_msg(struct regcache *rc, const Weft__Registry__V1__WatchResponse *m,
		     char *err, size_t errlen)
{
	size_t len = weft__registry__v1__watch_response__get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	int ret;

	if (!buf)
		return -ENOMEM;
	weft__registry__v1__watch_response__pack(m, buf);
	ret = regcache_apply(rc, buf, len, err, errlen);
	free(buf);
	return ret;
}

/* A delta of hand-built removals. */
static int apply_removals(struct regcache *rc, uint64_t version,
			  const Weft__Registry__V1__ResourceKind *kinds, const char *const *keys,
			  size_t n, char *err, size_t errlen)
{
	Weft__Registry__V1__WatchResponse m = WEFT__REGISTRY__V1__WATCH_RESPONSE__INIT;
	Weft__Registry__V1__Removal rm[8], *rmp[8];
	size_t i;

	for (i = 0; i < n && i < 8; i++) {
		weft__registry__v1__removal__init(&rm[i]);
		rm[i].kind = kinds[i];
		rm[i].key = (char *)keys[i];
		rmp[i] = &rm[i];
	}
	m.version = version;
	m.trust_domain = (char *)"cluster.local";
	m.n_removals = i;
	m.removals = rmp;
	return apply_msg(rc, &m, err, errlen);
}

static struct sockaddr_storage sa(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
			abort();
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
			abort();
	}
	return ss;
}

static const char *uid_at(const struct regcache *rc, const char *ip)
{
	struct sockaddr_storage ss = sa(ip, 0);
	const struct reg_workload *w = regcache_workload_by_ip(rc, (struct sockaddr *)&ss);

	return w ? w->uid : NULL;
}

static const struct reg_service *svc_at(const struct regcache *rc, const char *ip,
					uint16_t port, uint16_t *target)
{
	struct sockaddr_storage ss = sa(ip, port);

	*target = 0;
	return regcache_service_by_vip(rc, (struct sockaddr *)&ss, target);
}

static const struct reg_service *svc_echo(struct regcache *rc)
{
	uint16_t t;

	return svc_at(rc, "10.96.0.10", 80, &t);
}

static void test_snapshot_lookups(void)
{
	struct registry *r = regyaml_parse(base_yaml);
	struct regcache *rc = regcache_new();
	const struct reg_service *s;
	const struct reg_node *n;
	struct sockaddr_in6 mapped = { .sin6_family = AF_INET6 };
	uint16_t t;

	CHECK(rc && r);
	CHECK(!regcache_ready(rc));
	CHECK_EQ_STR(regcache_trust_domain(rc), "");
	CHECK(uid_at(rc, "10.20.1.2") == NULL);
	CHECK_EQ_INT(apply_snapshot(rc, r, 7), 0);
	CHECK(regcache_ready(rc));
	CHECK_EQ_INT(regcache_version(rc), 7);
	CHECK_EQ_STR(regcache_trust_domain(rc), "cluster.local");
	CHECK_EQ_INT(regcache_registry(rc)->n_nodes, 2);
	CHECK_EQ_INT(regcache_registry(rc)->n_workloads, 5);
	CHECK_EQ_INT(regcache_registry(rc)->n_services, 2);
	CHECK_EQ_INT(regcache_registry(rc)->n_policies, 2);

	CHECK_EQ_STR(uid_at(rc, "10.20.1.2"), "default/client");
	CHECK_EQ_STR(uid_at(rc, "fd00:20::2"), "default/client");
	CHECK_EQ_STR(uid_at(rc, "10.20.2.2"), "default/echo-1");
	CHECK_EQ_STR(uid_at(rc, "fd00:20::3"), "default/echo-3");
	CHECK(uid_at(rc, "10.20.2.3") == NULL);
	CHECK(uid_at(rc, "fd00:20::4") == NULL);
	CHECK(uid_at(rc, "10.96.0.10") == NULL);	/* a VIP is not a pod */
	/* dual-stack socket: ::ffff:10.20.1.3 is the IPv4 pod */
	inet_pton(AF_INET6, "::ffff:10.20.1.3", &mapped.sin6_addr);
	CHECK(regcache_workload_by_ip(rc, (struct sockaddr *)&mapped) != NULL &&
	      !strcmp(regcache_workload_by_ip(rc, (struct sockaddr *)&mapped)->uid,
		      "default/echo-2"));

	n = regcache_node(rc, "node2");
	CHECK(n && !strcmp(n->address, "fd00:10::2") && n->hbone_port == 15009);
	n = regcache_node(rc, "node1");
	CHECK(n && n->hbone_port == 15008);
	CHECK(regcache_node(rc, "node3") == NULL);
	CHECK(regcache_workload(rc, "default/echo-1") &&
	      !strcmp(regcache_workload(rc, "default/echo-1")->node, "node2"));
	CHECK(regcache_workload(rc, "default/nope") == NULL);
	CHECK_EQ_STR(regcache_workload(rc, "default/client")->service_account, "client");
	CHECK_EQ_INT(regcache_workload(rc, "default/client")->n_labels, 1);

	s = svc_at(rc, "10.96.0.10", 80, &t);
	CHECK(s && !strcmp(s->name, "echo"));
	CHECK_EQ_INT(t, 8080);
	s = svc_at(rc, "10.96.0.10", 443, &t);
	CHECK(s && !strcmp(s->name, "echo"));
	CHECK_EQ_INT(t, 443);
	s = svc_at(rc, "fd00:96::10", 80, &t);
	CHECK(s && !strcmp(s->name, "echo"));
	CHECK_EQ_INT(t, 8080);
	CHECK(svc_at(rc, "10.96.0.10", 81, &t) == NULL);
	CHECK(svc_at(rc, "10.96.0.12", 80, &t) == NULL);
	s = svc_at(rc, "10.96.0.11", 9000, &t);
	CHECK(s && !strcmp(s->name, "client") && t == 9000);
	CHECK(svc_at(rc, "10.96.0.11", 80, &t) == NULL);
	CHECK(svc_at(rc, "10.20.1.2", 80, &t) == NULL);	/* a pod is not a VIP */
	regcache_free(rc);
	registry_free(r);
}

/* n picks of the echo service, as uids. */
static void picks(struct regcache *rc, const char **out, size_t n)
{
	const struct reg_service *s = svc_echo(rc);
	size_t i;

	for (i = 0; i < n; i++) {
		const struct reg_workload *w = s ? regcache_service_pick(rc, s) : NULL;

		out[i] = w ? w->uid : NULL;
	}
}

static size_t count(const char **v, size_t n, const char *uid)
{
	size_t i, c = 0;

	for (i = 0; i < n; i++)
		c += v[i] && !strcmp(v[i], uid);
	return c;
}

static void test_round_robin(void)
{
	static const Weft__Registry__V1__ResourceKind node_kind[] = {
		WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_NODE };
	static const char *const node2[] = { "node2" };
	struct registry *r = regyaml_parse(base_yaml), *r2;
	struct regcache *rc = regcache_new();
	const char *p[9];
	char err[256];
	size_t i;

	CHECK_EQ_INT(apply_snapshot(rc, r, 1), 0);
	CHECK_EQ_INT(svc_echo(rc)->n_endpoints, 4);
	/* echo-noip has no IP: three usable endpoints, each picked in turn */
	picks(rc, p, 9);
	CHECK_EQ_INT(count(p, 9, "default/echo-1"), 3);
	CHECK_EQ_INT(count(p, 9, "default/echo-2"), 3);
	CHECK_EQ_INT(count(p, 9, "default/echo-3"), 3);
	CHECK_EQ_INT(count(p, 9, "default/echo-noip"), 0);
	for (i = 3; i < 9; i++)
		CHECK(p[i] && p[i - 3] && !strcmp(p[i], p[i - 3]));
	CHECK(p[0] && p[1] && p[2] && strcmp(p[0], p[1]) && strcmp(p[1], p[2]) &&
	      strcmp(p[0], p[2]));

	/* the cursor survives an update that leaves the service alone */
	picks(rc, p, 1);	/* p[0] = the first of a cycle */
	r2 = parse_edit("address: 10.10.0.1}", "address: 10.10.0.1, cluster: c9}");
	CHECK_EQ_INT(apply_delta(rc, r, r2, 2, err, sizeof(err)), 0);
	CHECK_EQ_STR(regcache_node(rc, "node1")->cluster, "c9");
	{
		const char *q[3];

		picks(rc, q, 3);
		CHECK(q[0] && q[1] && q[2] && strcmp(q[0], p[0]) && strcmp(q[1], p[0]));
		CHECK(q[2] && !strcmp(q[2], p[0]));
	}

	/* node2 gone: echo-1 (on node2) is no longer picked */
	CHECK_EQ_INT(apply_removals(rc, 3, node_kind, node2, 1, err, sizeof(err)), 0);
	CHECK(regcache_node(rc, "node2") == NULL);
	CHECK(regcache_workload(rc, "default/echo-1") != NULL);
	picks(rc, p, 6);
	CHECK_EQ_INT(count(p, 6, "default/echo-1"), 0);
	CHECK_EQ_INT(count(p, 6, "default/echo-2"), 3);
	CHECK_EQ_INT(count(p, 6, "default/echo-3"), 3);

	/* the service without usable endpoints picks nothing */
	{
		static const Weft__Registry__V1__ResourceKind wk[] = {
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_WORKLOAD,
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_WORKLOAD };
		static const char *const uids[] = { "default/echo-2", "default/echo-3" };

		CHECK_EQ_INT(apply_removals(rc, 4, wk, uids, 2, err, sizeof(err)), 0);
		picks(rc, p, 2);
		CHECK(p[0] == NULL && p[1] == NULL);
		CHECK(svc_echo(rc) != NULL);
	}
	/* a service pointer from another cache is refused, not dereferenced */
	{
		struct regcache *other = regcache_new();

		CHECK_EQ_INT(apply_snapshot(other, r, 1), 0);
		CHECK(regcache_service_pick(rc, svc_echo(other)) == NULL);
		regcache_free(other);
	}
	regcache_free(rc);
	registry_free(r);
	registry_free(r2);
}

static void test_deltas(void)
{
	struct registry *r = regyaml_parse(base_yaml), *r2, *r3;
	struct regcache *rc = regcache_new();
	char err[256];
	uint16_t t;

	CHECK_EQ_INT(apply_snapshot(rc, r, 10), 0);

	/* upsert of each kind: a new node, a changed workload IP, a changed
	 * service port, a new policy */
	{
		char y[sizeof(base_yaml) + 512];
		const char *x = base_yaml;

		/* several edits at once: build the text step by step */
		snprintf(y, sizeof(y), "%s", x);
#define EDIT(from, to) do {							\
		char *at = strstr(y, from), t2[sizeof(y)];			\
		if (!at) { fprintf(stderr, "no %s\n", from); exit(1); }		\
		snprintf(t2, sizeof(t2), "%.*s%s%s", (int)(at - y), y, to,	\
			 at + strlen(from));					\
		memcpy(y, t2, sizeof(y));					\
	} while (0)
		EDIT("nodes:\n", "nodes:\n  - {name: node3, address: 10.10.0.3}\n");
		EDIT("ips: [10.20.2.2]", "ips: [10.20.2.9]");
		EDIT("{port: 9000}", "{port: 9001, target_port: 9100}");
		EDIT("policies:\n",
		     "policies:\n"
		     "  - {name: extra, namespace: default, scope: namespace, action: ALLOW}\n");
#undef EDIT
		r2 = regyaml_parse(y);
	}
	CHECK_EQ_INT(apply_delta(rc, r, r2, 11, err, sizeof(err)), 0);
	CHECK_EQ_INT(regcache_version(rc), 11);
	CHECK(regcache_node(rc, "node3") && !strcmp(regcache_node(rc, "node3")->address, "10.10.0.3"));
	CHECK_EQ_INT(regcache_registry(rc)->n_nodes, 3);
	CHECK(uid_at(rc, "10.20.2.2") == NULL);
	CHECK_EQ_STR(uid_at(rc, "10.20.2.9"), "default/echo-1");
	CHECK_EQ_STR(uid_at(rc, "10.20.1.2"), "default/client");	/* untouched */
	CHECK(svc_at(rc, "10.96.0.11", 9000, &t) == NULL);
	CHECK(svc_at(rc, "10.96.0.11", 9001, &t) != NULL);
	CHECK_EQ_INT(t, 9100);
	CHECK_EQ_INT(regcache_registry(rc)->n_policies, 3);
	CHECK_EQ_INT(regcache_registry(rc)->n_workloads, 5);
	/* arrays stay sorted: the shared registry lookups work on them */
	CHECK(registry_node(regcache_registry(rc), "node3") != NULL);
	CHECK(registry_workload(regcache_registry(rc), "default/echo-noip") != NULL);

	/* removal of each kind, by its key */
	{
		static const Weft__Registry__V1__ResourceKind k[] = {
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_NODE,
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_WORKLOAD,
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_SERVICE,
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_POLICY,
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_POLICY,
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_WORKLOAD };
		static const char *const keys[] = { "node3", "default/client", "default/client",
						     "/g", "default/extra", "default/absent" };
		const struct registry *cur;

		CHECK_EQ_INT(apply_removals(rc, 12, k, keys, 6, err, sizeof(err)), 0);
		cur = regcache_registry(rc);
		CHECK_EQ_INT(cur->n_nodes, 2);
		CHECK(regcache_node(rc, "node3") == NULL);
		CHECK_EQ_INT(cur->n_workloads, 4);
		CHECK(regcache_workload(rc, "default/client") == NULL);
		CHECK(uid_at(rc, "10.20.1.2") == NULL);
		CHECK(uid_at(rc, "fd00:20::2") == NULL);
		CHECK_EQ_INT(cur->n_services, 1);
		CHECK(svc_at(rc, "10.96.0.11", 9001, &t) == NULL);
		CHECK(svc_at(rc, "10.96.0.10", 80, &t) != NULL);
		CHECK_EQ_INT(cur->n_policies, 1);
		CHECK(cur->n_policies == 1 && !strcmp(cur->policies[0].name, "deny-legacy"));
		CHECK(cur->n_policies == 1 && cur->policies[0].n_rules == 1 &&
		      cur->policies[0].rules[0].ports.n == 1 &&
		      cur->policies[0].rules[0].ports.v[0] == 80);
	}

	/* a delta carrying the trust domain changes it */
	r3 = parse_edit("trust_domain: cluster.local", "trust_domain: other.example");
	CHECK_EQ_INT(apply_delta(rc, r, r3, 13, err, sizeof(err)), 0);
	CHECK_EQ_STR(regcache_trust_domain(rc), "other.example");
	/* and nothing else: r -> r3 differs only there */
	CHECK(regcache_workload(rc, "default/client") == NULL);
	CHECK_EQ_INT(regcache_registry(rc)->n_policies, 1);
	CHECK_EQ_STR(uid_at(rc, "10.20.2.9"), "default/echo-1");
	regcache_free(rc);
	registry_free(r);
	registry_free(r2);
	registry_free(r3);
}

/* Every rejected message leaves version, counts and lookups as they were. */
static void check_unchanged(struct regcache *rc, uint64_t version)
{
	CHECK_EQ_INT(regcache_version(rc), version);
	CHECK_EQ_INT(regcache_registry(rc)->n_workloads, 5);
	CHECK_EQ_INT(regcache_registry(rc)->n_nodes, 2);
	CHECK_EQ_STR(uid_at(rc, "10.20.1.2"), "default/client");
	CHECK(svc_echo(rc) != NULL);
}

static void test_rejects(void)
{
	struct registry *r = regyaml_parse(base_yaml), *r2 = parse_edit("10.20.2.2", "10.20.2.7");
	struct regcache *rc = regcache_new();
	Weft__Registry__V1__WatchResponse m = WEFT__REGISTRY__V1__WATCH_RESPONSE__INIT;
	Weft__Registry__V1__Resource res = WEFT__REGISTRY__V1__RESOURCE__INIT, *resp = &res;
	Weft__Registry__V1__Workload w = WEFT__REGISTRY__V1__WORKLOAD__INIT;
	Weft__Registry__V1__Node nd = WEFT__REGISTRY__V1__NODE__INIT;
	char *ips[] = { (char *)"10.1.2" };
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
	char err[256];

	/* delta before any snapshot */
	err[0] = '\0';
	CHECK_EQ_INT(apply_delta(rc, r, r2, 5, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "before any snapshot") != NULL);
	CHECK(!regcache_ready(rc));
	CHECK(uid_at(rc, "10.20.2.7") == NULL);

	CHECK_EQ_INT(apply_snapshot(rc, r, 5), 0);
	/* backwards and repeated versions */
	err[0] = '\0';
	CHECK_EQ_INT(apply_delta(rc, r, r2, 4, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "version 4") != NULL);
	CHECK_EQ_INT(apply_delta(rc, r, r2, 5, err, sizeof(err)), -EINVAL);
	check_unchanged(rc, 5);
	CHECK_EQ_STR(uid_at(rc, "10.20.2.2"), "default/echo-1");

	/* not protobuf */
	CHECK_EQ_INT(regcache_apply(rc, junk, sizeof(junk), err, sizeof(err)), -EINVAL);
	check_unchanged(rc, 5);
	/* oversized */
	CHECK_EQ_INT(regcache_apply(rc, junk, (size_t)65 << 20, err, sizeof(err)), -EINVAL);

	/* a bad IP in one upsert rejects the whole delta (the node before it too) */
	{
		Weft__Registry__V1__Resource nres = WEFT__REGISTRY__V1__RESOURCE__INIT;
		Weft__Registry__V1__Resource *two[2] = { &nres, &res };

		nd.name = (char *)"node9";
		nd.address = (char *)"10.10.0.9";
		nres.kind_case = WEFT__REGISTRY__V1__RESOURCE__KIND_NODE;
		nres.node = &nd;
		w.uid = (char *)"default/bad";
		w.node = (char *)"node1";
		w.n_ips = 1;
		w.ips = ips;
		res.kind_case = WEFT__REGISTRY__V1__RESOURCE__KIND_WORKLOAD;
		res.workload = &w;
		m.version = 6;
		m.n_upserts = 2;
		m.upserts = two;
		err[0] = '\0';
		CHECK_EQ_INT(apply_msg(rc, &m, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "default/bad") && strstr(err, "bad ip"));
		CHECK(regcache_node(rc, "node9") == NULL);
		check_unchanged(rc, 5);
	}
	/* a bad node address */
	nd.address = (char *)"not-an-ip";
	res.kind_case = WEFT__REGISTRY__V1__RESOURCE__KIND_NODE;
	res.node = &nd;
	m.n_upserts = 1;
	m.upserts = &resp;
	CHECK_EQ_INT(apply_msg(rc, &m, err, sizeof(err)), -EINVAL);
	check_unchanged(rc, 5);
	/* a resource with no kind */
	res.kind_case = WEFT__REGISTRY__V1__RESOURCE__KIND__NOT_SET;
	CHECK_EQ_INT(apply_msg(rc, &m, err, sizeof(err)), -EINVAL);
	check_unchanged(rc, 5);
	/* a removal of an unknown kind, and a service key without '/' */
	{
		static const Weft__Registry__V1__ResourceKind k1[] = {
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_UNSPECIFIED };
		static const Weft__Registry__V1__ResourceKind k2[] = {
			WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_SERVICE };
		static const char *const key[] = { "echo" };

		CHECK_EQ_INT(apply_removals(rc, 6, k1, key, 1, err, sizeof(err)), -EINVAL);
		CHECK_EQ_INT(apply_removals(rc, 6, k2, key, 1, err, sizeof(err)), -EINVAL);
		check_unchanged(rc, 5);
	}
	/* an unknown policy action is not read as ALLOW */
	{
		Weft__Registry__V1__Policy po = WEFT__REGISTRY__V1__POLICY__INIT;

		po.name = (char *)"p";
		po.scope = WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_GLOBAL;
		po.action = 7;
		res.kind_case = WEFT__REGISTRY__V1__RESOURCE__KIND_POLICY;
		res.policy = &po;
		CHECK_EQ_INT(apply_msg(rc, &m, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "action") != NULL);
		check_unchanged(rc, 5);
	}

	/* a good delta still applies after all that; then a snapshot with a
	 * lower version (the agent restarted) replaces everything */
	CHECK_EQ_INT(apply_delta(rc, r, r2, 6, err, sizeof(err)), 0);
	CHECK_EQ_STR(uid_at(rc, "10.20.2.7"), "default/echo-1");
	CHECK_EQ_INT(apply_snapshot(rc, r, 1), 0);
	CHECK_EQ_INT(regcache_version(rc), 1);
	CHECK(uid_at(rc, "10.20.2.7") == NULL);
	CHECK_EQ_STR(uid_at(rc, "10.20.2.2"), "default/echo-1");
	regcache_free(rc);
	registry_free(r);
	registry_free(r2);
}

/* A snapshot's duplicate keys: the later resource wins. */
static void test_duplicate_upserts(void)
{
	Weft__Registry__V1__WatchResponse m = WEFT__REGISTRY__V1__WATCH_RESPONSE__INIT;
	Weft__Registry__V1__Resource res[3] = { WEFT__REGISTRY__V1__RESOURCE__INIT,
						WEFT__REGISTRY__V1__RESOURCE__INIT,
						WEFT__REGISTRY__V1__RESOURCE__INIT };
	Weft__Registry__V1__Resource *resp[3] = { &res[0], &res[1], &res[2] };
	Weft__Registry__V1__Node nd[3] = { WEFT__REGISTRY__V1__NODE__INIT,
					   WEFT__REGISTRY__V1__NODE__INIT,
					   WEFT__REGISTRY__V1__NODE__INIT };
	static const char *const addr[] = { "10.0.0.1", "10.0.0.2", "10.0.0.3" };
	struct regcache *rc = regcache_new();
	char err[256];
	size_t i;

	for (i = 0; i < 3; i++) {
		nd[i].name = (char *)(i == 1 ? "b" : "a");
		nd[i].address = (char *)addr[i];
		res[i].kind_case = WEFT__REGISTRY__V1__RESOURCE__KIND_NODE;
		res[i].node = &nd[i];
	}
	m.snapshot = 1;
	m.version = 1;
	m.n_upserts = 3;
	m.upserts = resp;
	CHECK_EQ_INT(apply_msg(rc, &m, err, sizeof(err)), 0);
	CHECK_EQ_INT(regcache_registry(rc)->n_nodes, 2);
	CHECK(regcache_node(rc, "a") && !strcmp(regcache_node(rc, "a")->address, "10.0.0.3"));
	CHECK_EQ_STR(regcache_trust_domain(rc), "");
	regcache_free(rc);
}

static void test_save_load(void)
{
	char dir[] = "/tmp/test_regcache.XXXXXX", path[128], err[256];
	struct registry *r = regyaml_parse(base_yaml);
	struct regcache *rc = regcache_new(), *rc2 = regcache_new();
	struct stat st;
	uint16_t t;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/registry.pb", dir);
	CHECK_EQ_INT(regcache_save(rc, path), -ENODATA);	/* nothing to save yet */
	CHECK_EQ_INT(regcache_load(rc2, path, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, path) != NULL);

	CHECK_EQ_INT(apply_snapshot(rc, r, 42), 0);
	CHECK_EQ_INT(regcache_save(rc, path), 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK_EQ_INT(regcache_load(rc2, path, err, sizeof(err)), 0);
	CHECK(regcache_ready(rc2));
	CHECK_EQ_INT(regcache_version(rc2), 42);
	CHECK_EQ_STR(regcache_trust_domain(rc2), "cluster.local");
	CHECK_EQ_INT(regcache_registry(rc2)->n_workloads, 5);
	CHECK_EQ_INT(regcache_registry(rc2)->n_policies, 2);
	CHECK_EQ_STR(uid_at(rc2, "fd00:20::3"), "default/echo-3");
	CHECK(svc_at(rc2, "fd00:96::10", 80, &t) != NULL && t == 8080);
	CHECK(regcache_node(rc2, "node2") && regcache_node(rc2, "node2")->hbone_port == 15009);
	/* the reloaded state encodes to the same bytes */
	{
		uint8_t *a, *b;
		size_t la, lb;

		CHECK_EQ_INT(regproto_snapshot(regcache_registry(rc), 42, &a, &la), 0);
		CHECK_EQ_INT(regproto_snapshot(regcache_registry(rc2), 42, &b, &lb), 0);
		CHECK(la == lb && !memcmp(a, b, la));
		free(a);
		free(b);
	}
	/* a delta in the file is not a snapshot to start from */
	{
		struct registry *r2 = parse_edit("10.20.2.2", "10.20.2.7");
		struct regcache *rc3 = regcache_new();
		uint8_t *buf;
		size_t len;
		FILE *f;

		CHECK_EQ_INT(regproto_delta(r, r2, 43, &buf, &len), 0);
		f = fopen(path, "w");
		CHECK(f && fwrite(buf, 1, len, f) == len);
		if (f)
			fclose(f);
		CHECK_EQ_INT(regcache_load(rc3, path, err, sizeof(err)), -EINVAL);
		CHECK(!regcache_ready(rc3));
		free(buf);
		regcache_free(rc3);
		registry_free(r2);
	}
	unlink(path);
	rmdir(dir);
	regcache_free(rc);
	regcache_free(rc2);
	registry_free(r);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		abort();
	return d;
}

/* 10,000 workloads on 100 nodes, 1,000 services of 10 endpoints, built
 * directly as a struct registry (registry_free releases it). */
static struct registry *big_registry(void)
{
	struct registry *r = calloc(1, sizeof(*r));
	char buf[64];
	size_t i;

	if (!r)
		abort();
	r->trust_domain = xstrdup("big.example");
	r->n_nodes = 100;
	r->nodes = calloc(r->n_nodes, sizeof(*r->nodes));
	r->n_workloads = 10000;
	r->workloads = calloc(r->n_workloads, sizeof(*r->workloads));
	r->n_services = 1000;
	r->services = calloc(r->n_services, sizeof(*r->services));
	if (!r->nodes || !r->workloads || !r->services)
		abort();
	for (i = 0; i < r->n_nodes; i++) {
		snprintf(buf, sizeof(buf), "node%03zu", i);
		r->nodes[i].name = xstrdup(buf);
		snprintf(buf, sizeof(buf), "10.10.%zu.1", i);
		r->nodes[i].address = xstrdup(buf);
		r->nodes[i].hbone_port = 15008;
		r->nodes[i].cluster = xstrdup("");
		r->nodes[i].network = xstrdup("");
	}
	for (i = 0; i < r->n_workloads; i++) {
		struct reg_workload *w = &r->workloads[i];

		snprintf(buf, sizeof(buf), "ns/w%05zu", i);
		w->uid = xstrdup(buf);
		w->name = xstrdup(buf + 3);
		w->namespace = xstrdup("ns");
		w->service_account = xstrdup("default");
		snprintf(buf, sizeof(buf), "node%03zu", i % 100);
		w->node = xstrdup(buf);
		w->n_ips = 2;
		w->ips = calloc(2, sizeof(*w->ips));
		if (!w->ips)
			abort();
		snprintf(buf, sizeof(buf), "10.%zu.%zu.%zu", 64 + i / 65536, (i / 256) % 256, i % 256);
		w->ips[0] = xstrdup(buf);
		snprintf(buf, sizeof(buf), "fd00::%zx", i + 1);
		w->ips[1] = xstrdup(buf);
		w->tunnel = REG_TUNNEL_HBONE;
	}
	for (i = 0; i < r->n_services; i++) {
		struct reg_service *s = &r->services[i];
		size_t e;

		snprintf(buf, sizeof(buf), "s%04zu", i);
		s->name = xstrdup(buf);
		s->namespace = xstrdup("ns");
		s->n_vips = 1;
		s->vips = calloc(1, sizeof(*s->vips));
		s->n_ports = 1;
		s->ports = calloc(1, sizeof(*s->ports));
		s->n_endpoints = 10;
		s->endpoints = calloc(10, sizeof(*s->endpoints));
		if (!s->vips || !s->ports || !s->endpoints)
			abort();
		snprintf(buf, sizeof(buf), "10.96.%zu.%zu", i / 256, i % 256);
		s->vips[0] = xstrdup(buf);
		s->ports[0].port = 80;
		s->ports[0].target_port = 8080;
		for (e = 0; e < 10; e++) {
			snprintf(buf, sizeof(buf), "ns/w%05zu", i * 10 + e);
			s->endpoints[e] = xstrdup(buf);
		}
	}
	return r;
}

static void test_big(void)
{
	struct registry *r = big_registry();
	struct regcache *rc = regcache_new();
	struct sockaddr_in sin = { .sin_family = AF_INET };
	uint8_t *buf;
	size_t len, i, misses = 0;
	double t0, t1, t2;
	char err[256];

	CHECK_EQ_INT(regproto_snapshot(r, 1, &buf, &len), 0);
	t0 = now_s();
	CHECK_EQ_INT(regcache_apply(rc, buf, len, err, sizeof(err)), 0);
	t1 = now_s();
	printf("10000-workload snapshot (%zu bytes) applied in %.1f ms\n", len, (t1 - t0) * 1e3);
	CHECK_EQ_INT(regcache_registry(rc)->n_workloads, 10000);
	CHECK(t1 - t0 < 5.0);	/* generous: ASan/valgrind runs; expect ~10 ms */

	/* 1M lookups over every workload IP; each must hit the right one */
	t1 = now_s();
	for (i = 0; i < 1000000; i++) {
		size_t n = (i * 7919) % 10000;
		const struct reg_workload *w;

		sin.sin_addr.s_addr = htonl((10u << 24) | ((64 + n / 65536) << 16) |
					    (((n / 256) % 256) << 8) | (n % 256));
		w = regcache_workload_by_ip(rc, (struct sockaddr *)&sin);
		if (!w || w != &regcache_registry(rc)->workloads[n])
			misses++;
	}
	t2 = now_s();
	printf("1M workload-by-IP lookups in %.1f ms (%.0f ns each)\n", (t2 - t1) * 1e3,
	       (t2 - t1) * 1e3);
	CHECK_EQ_INT(misses, 0);
	{
		uint16_t tp;
		const struct reg_service *s = svc_at(rc, "10.96.3.231", 80, &tp);
		const struct reg_workload *w;

		CHECK(s && !strcmp(s->name, "s0999") && tp == 8080);
		w = s ? regcache_service_pick(rc, s) : NULL;
		CHECK(w && !strncmp(w->uid, "ns/w0999", 8));
		CHECK_EQ_STR(uid_at(rc, "fd00::2710"), "ns/w09999");
	}
	free(buf);
	regcache_free(rc);
	registry_free(r);
}

/* Federated bundles ride along in every response; a delta that changes
 * only them is still a delta; malformed ones refuse the message. */
static void test_bundles(void)
{
	struct registry *r = parse_edit("trust_domain:", "trust_domain:"), *r2;
	struct regcache *rc = regcache_new();
	struct pki_pem ca = { 0 }, leaf = { 0 }, key = { 0 };
	struct reg_bundle *b;
	char err[256], dir[64];
	const char *pem;

	CHECK(r && rc);
	CHECK(pki_test_begin(dir, sizeof(dir), "regcache-test") == 0);
	CHECK(pki_ca_make(dir, "east", NULL, NULL, 1) == 0 &&
	      pki_leaf_make(dir, "leaf", "east", "URI:spiffe://east.local/a", NULL, 1) == 0 &&
	      pki_pem_load(&ca, dir, "east.pem") == 0 && pki_pem_load(&leaf, dir, "leaf.pem") == 0 &&
	      pki_sh(NULL, 0, "cd %s && cat east.pem east.key > keyed", dir) == 0 &&
	      pki_pem_load(&key, dir, "keyed") == 0);
	pki_dir_remove(dir);
	if (!r || !rc || !ca.n || !leaf.n || !key.n)
		goto out;
	pem = ca.p;
	b = calloc(2, sizeof(*b));
	b[0].trust_domain = strdup("east.local");
	b[0].pem = strdup(pem);
	r->bundles = b;
	r->n_bundles = 1;
	CHECK_EQ_INT(apply_snapshot(rc, r, 1), 0);
	CHECK_EQ_INT(regcache_registry(rc)->n_bundles, 1);
	if (regcache_registry(rc)->n_bundles == 1)
		CHECK_EQ_STR(regcache_registry(rc)->bundles[0].trust_domain, "east.local");
	/* Only the bundles change: a delta, and the cache takes the new set. */
	r2 = parse_edit("trust_domain:", "trust_domain:");
	CHECK(r2 != NULL);
	if (r2) {
		CHECK_EQ_INT(apply_delta(rc, r, r2, 2, err, sizeof(err)), 0);
		CHECK_EQ_INT(regcache_registry(rc)->n_bundles, 0);
		registry_free(r2);
	}
	/* Out of order, a bad trust domain, not PEM: refused, cache unchanged. */
	b[1].trust_domain = strdup("alpha.local");
	b[1].pem = strdup(pem);
	r->n_bundles = 2;
	CHECK_EQ_INT(apply_snapshot(rc, r, 3), -EINVAL);
	r->n_bundles = 1;
	free(b[0].trust_domain);
	b[0].trust_domain = strdup("East Local");
	CHECK_EQ_INT(apply_snapshot(rc, r, 3), -EINVAL);
	free(b[0].trust_domain);
	b[0].trust_domain = strdup("east.local");
	/* Not PEM, a leaf, a key along (the agent never sends one): refused. */
	for (int i = 0; i < 3; i++) {
		free(b[0].pem);
		b[0].pem = strdup(i == 0 ? "hello" : i == 1 ? leaf.p : key.p);
		CHECK_EQ_INT(apply_snapshot(rc, r, 3), -EINVAL);
		CHECK_EQ_INT(regcache_version(rc), 2);
	}
	/* Text around the certificate is not kept. */
	free(b[0].pem);
	b[0].pem = malloc(ca.n + 16);
	if (b[0].pem)
		snprintf(b[0].pem, ca.n + 16, "# note\n%s", ca.p);
	CHECK_EQ_INT(apply_snapshot(rc, r, 4), 0);
	if (regcache_registry(rc)->n_bundles == 1)
		CHECK(strncmp(regcache_registry(rc)->bundles[0].pem, "-----BEGIN", 10) == 0);
	r->n_bundles = 2;
out:
	free(ca.p);
	free(leaf.p);
	free(key.p);
	registry_free(r);
	regcache_free(rc);
}

/* A remote network "east" made of base_yaml's nodes, workloads and
 * services (network set), with its policies left out. */
static struct reg_remotes *remotes_east(const char *network, const char *td)
{
	struct registry *src = parse_edit("trust_domain:", "trust_domain:");
	struct reg_remotes *rs = reg_remotes_new(1);
	struct registry *x;

	if (!src || !rs)
		goto fail;
	rs->v[0].network = strdup(network);
	rs->v[0].trust_domain = strdup(td);
	x = rs->v[0].reg = calloc(1, sizeof(*x));
	if (!x)
		goto fail;
	x->nodes = calloc(src->n_nodes, sizeof(*x->nodes));
	x->workloads = calloc(src->n_workloads, sizeof(*x->workloads));
	x->services = calloc(src->n_services, sizeof(*x->services));
	for (size_t i = 0; i < src->n_nodes; i++, x->n_nodes++) {
		CHECK(reg_node_dup(&x->nodes[i], &src->nodes[i]) == 0);
		free(x->nodes[i].network);
		x->nodes[i].network = strdup("east");
	}
	for (size_t i = 0; i < src->n_workloads; i++, x->n_workloads++)
		CHECK(reg_workload_dup(&x->workloads[i], &src->workloads[i]) == 0);
	/* client's VIP is the local client's too: the local one wins. */
	for (size_t i = 0; i < src->n_services; i++, x->n_services++) {
		char *vip = (char *)(strcmp(src->services[i].name, "client") ? "10.97.0.1"
									       : "10.96.0.11");

		CHECK(reg_service_dup(&x->services[i], &src->services[i], &vip, 1) == 0);
	}
	registry_free(src);
	return rs;
fail:
	registry_free(src);
	reg_remotes_unref(rs);
	return NULL;
}

/* Remote networks ride in snapshots and in deltas that change them; a
 * delta that does not keeps them; malformed ones refuse the message. */
static void test_remotes(void)
{
	struct registry *r = parse_edit("trust_domain:", "trust_domain:");
	struct registry *r2 = parse_edit("trust_domain:", "trust_domain:");
	struct regcache *rc = regcache_new();
	const struct reg_remotes *got;
	const struct reg_remote *east;
	struct reg_remotes *rs;
	char err[256] = "";

	CHECK(r && r2 && rc);
	if (!r || !r2 || !rc)
		goto out;
	r->remotes = remotes_east("east", "east.local");
	CHECK(r->remotes != NULL);
	CHECK_EQ_INT(apply_snapshot(rc, r, 1), 0);
	got = regcache_registry(rc)->remotes;
	CHECK(got && got->n == 1);
	east = reg_remotes_find(got, "east");
	CHECK(east != NULL);
	if (east) {
		CHECK_EQ_STR(east->trust_domain, "east.local");
		CHECK_EQ_INT(east->reg->n_nodes, 2);
		CHECK_EQ_INT(east->reg->n_workloads, 5);
		CHECK_EQ_INT(east->reg->n_services, 2);
		CHECK_EQ_INT(east->reg->n_policies, 0);
		CHECK_EQ_STR(east->reg->services[1].name, "echo");
		CHECK_EQ_STR(east->reg->services[1].vips[0], "10.97.0.1");
		CHECK_EQ_INT(east->reg->services[0].n_vips, 1);
	}
	/* A remote service is found by its local VIP, tagged with its
	 * network; its endpoints and their nodes are the remote's, never the
	 * same-named ones here; a local VIP wins over a remote one. */
	if (east) {
		const struct reg_service *s, *l;
		const struct reg_workload *w;
		uint16_t tp;

		s = svc_at(rc, "10.97.0.1", 80, &tp);
		CHECK(s != NULL && s >= east->reg->services &&
		      s < east->reg->services + east->reg->n_services);
		CHECK(regcache_service_remote(rc, s) == east);
		w = s ? regcache_service_pick(rc, s) : NULL;
		CHECK(w != NULL && w >= east->reg->workloads &&
		      w < east->reg->workloads + east->reg->n_workloads);
		CHECK(w && regcache_remote_node(east, w->node) >= east->reg->nodes &&
		      regcache_remote_node(east, w->node) < east->reg->nodes + east->reg->n_nodes);
		CHECK(w && regcache_remote_node(east, w->node) != regcache_node(rc, w->node));
		CHECK(regcache_remote_gateway(east) == NULL);
		l = svc_at(rc, "10.96.0.11", 9000, &tp);
		CHECK(l != NULL && regcache_service_remote(rc, l) == NULL);
		CHECK(regcache_service_remote(rc, NULL) == NULL);
	}
	/* A local change only: a delta without remotes, which stay. */
	r2->remotes = reg_remotes_ref(r->remotes);
	free(r2->workloads[0].service_account);
	r2->workloads[0].service_account = strdup("changed");
	CHECK_EQ_INT(apply_delta(rc, r, r2, 2, err, sizeof(err)), 0);
	CHECK(regcache_registry(rc)->remotes == got);
	/* The remotes go: a delta that says so. */
	reg_remotes_unref(r2->remotes);
	r2->remotes = NULL;
	CHECK_EQ_INT(apply_delta(rc, r, r2, 3, err, sizeof(err)), 0);
	CHECK(regcache_registry(rc)->remotes == NULL);
	/* Refused, cache unchanged: a bad trust domain, a node of another
	 * network, a workload on no node of its network, two networks out of
	 * order, more than REG_REMOTES_MAX. */
	reg_remotes_unref(r->remotes);
	r->remotes = remotes_east("east", "East Local");
	CHECK_EQ_INT(apply_snapshot(rc, r, 4), -EINVAL);
	reg_remotes_unref(r->remotes);
	r->remotes = rs = remotes_east("east", "east.local");
	if (rs) {
		free(rs->v[0].reg->nodes[1].network);
		rs->v[0].reg->nodes[1].network = strdup("west");
		CHECK_EQ_INT(apply_snapshot(rc, r, 4), -EINVAL);
		free(rs->v[0].reg->nodes[1].network);
		rs->v[0].reg->nodes[1].network = strdup("east");
		free(rs->v[0].reg->workloads[2].node);
		rs->v[0].reg->workloads[2].node = strdup("node9");
		CHECK_EQ_INT(apply_snapshot(rc, r, 4), -EINVAL);
	}
	reg_remotes_unref(r->remotes);
	r->remotes = rs = reg_remotes_new(REG_REMOTES_MAX + 1);
	if (rs) {
		for (size_t i = 0; i < rs->n; i++) {
			char name[32];

			snprintf(name, sizeof(name), "n%zu", i);
			rs->v[i].network = strdup(name);
			rs->v[i].trust_domain = strdup("east.local");
			rs->v[i].reg = calloc(1, sizeof(struct registry));
		}
		CHECK_EQ_INT(apply_snapshot(rc, r, 4), -EINVAL);
		rs->n = 2;
		free(rs->v[0].network);
		rs->v[0].network = strdup("z");
		CHECK_EQ_INT(apply_snapshot(rc, r, 4), -EINVAL);
		free(rs->v[0].network);
		rs->v[0].network = strdup("n0 x");
		CHECK_EQ_INT(apply_snapshot(rc, r, 4), -EINVAL);
		rs->n = REG_REMOTES_MAX + 1;
	}
	CHECK_EQ_INT(regcache_version(rc), 3);
	/* A delta may not carry remotes without saying they changed. */
	{
		Weft__Registry__V1__WatchResponse m = WEFT__REGISTRY__V1__WATCH_RESPONSE__INIT;
		Weft__Registry__V1__RemoteNetwork rn = WEFT__REGISTRY__V1__REMOTE_NETWORK__INIT, *rnp = &rn;

		rn.network = (char *)"east";
		rn.trust_domain = (char *)"east.local";
		m.version = 9;
		m.trust_domain = (char *)"cluster.local";
		m.n_remotes = 1;
		m.remotes = &rnp;
		CHECK_EQ_INT(apply_msg(rc, &m, err, sizeof(err)), -EINVAL);
		m.remotes_changed = 1;
		CHECK_EQ_INT(apply_msg(rc, &m, err, sizeof(err)), 0);
		CHECK(regcache_registry(rc)->remotes && regcache_registry(rc)->remotes->n == 1);
	}
out:
	registry_free(r);
	registry_free(r2);
	regcache_free(rc);
}

int main(void)
{
	test_remotes();
	test_bundles();
	test_snapshot_lookups();
	test_round_robin();
	test_deltas();
	test_rejects();
	test_duplicate_upserts();
	test_save_load();
	test_big();
	return check_done("test_regcache");
}
