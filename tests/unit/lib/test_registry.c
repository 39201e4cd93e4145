/* SPDX-License-Identifier: Apache-2.0 */
/* Registry file parser: a full file with every field, defaults, endpoint
 * computation, lookups, the shipped example, and one bad file per error
 * class, each checked for its "file:line: message". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include <weft/registry.h>

static const char full_yaml[] =
	"trust_domain: example.org\n"				/* 1 */
	"nodes:\n"						/* 2 */
	"  - name: node1\n"					/* 3 */
	"    address: 10.10.0.1\n"				/* 4 */
	"    hbone_port: 15009\n"				/* 5 */
	"    cluster: c1\n"					/* 6 */
	"    network: n1\n"					/* 7 */
	"  - name: node0\n"					/* 8 */
	"    address: 'fd00:0::0001'\n"				/* 9 */
	"workloads:\n"						/* 10 */
	"  - name: client-1\n"					/* 11 */
	"    namespace: default\n"				/* 12 */
	"    service_account: client\n"				/* 13 */
	"    node: node1\n"					/* 14 */
	"    ips: [10.20.1.2, 'fd00::2']\n"			/* 15 */
	"    uid: custom-uid\n"					/* 16 */
	"    tunnel: NONE\n"					/* 17 */
	"    labels: {zone: a, app: client, example.com/tier: web}\n" /* 18 */
	"  - name: echo-2\n"					/* 19 */
	"    namespace: default\n"				/* 20 */
	"    node: node0\n"					/* 21 */
	"    labels: {app: echo, version: v2}\n"		/* 22 */
	"  - name: echo-1\n"					/* 23 */
	"    namespace: default\n"				/* 24 */
	"    node: node1\n"					/* 25 */
	"    labels: {app: echo, version: v1}\n"		/* 26 */
	"  - name: echo-other\n"				/* 27 */
	"    namespace: other\n"				/* 28 */
	"    node: node1\n"					/* 29 */
	"    labels: {app: echo}\n"				/* 30 */
	"services:\n"						/* 31 */
	"  - name: echo\n"					/* 32 */
	"    namespace: default\n"				/* 33 */
	"    vips: [10.96.0.10]\n"				/* 34 */
	"    ports: [{port: 80, target_port: 8080}, {port: 443}]\n" /* 35 */
	"    selector: {app: echo}\n"				/* 36 */
	"  - name: echo-v1\n"					/* 37 */
	"    namespace: default\n"				/* 38 */
	"    selector: {version: v1, app: echo}\n"		/* 39 */
	"  - name: external\n"					/* 40 */
	"    namespace: default\n"				/* 41 */
	"policies:\n"						/* 42 */
	"  - name: deny-legacy\n"				/* 43 */
	"    namespace: default\n"				/* 44 */
	"    scope: namespace\n"				/* 45 */
	"    action: DENY\n"					/* 46 */
	"    rules:\n"						/* 47 */
	"      - principals: [\"spiffe://example.org/ns/legacy/sa/*\"]\n"
	"        not_principals: [a, b]\n"
	"        namespaces: [legacy]\n"
	"        not_namespaces: [kube-system]\n"
	"        source_ips: [10.20.0.0/16, 10.1.2.3, 'fd00::/8']\n"
	"        not_source_ips: [10.20.9.0/24]\n"
	"        destination_ports: [80, 8080]\n"
	"        not_destination_ports: [22]\n"
	"      - {}\n"
	"  - name: allow-echo\n"
	"    namespace: default\n"
	"    scope: workload\n"
	"    selector: {app: echo}\n"
	"    action: ALLOW\n"
	"  - name: global-deny\n"
	"    scope: global\n"
	"    action: DENY\n";

static void test_full(void)
{
	char err[REG_ERR_MAX];
	struct registry *r = registry_parse(full_yaml, strlen(full_yaml), "full.yaml",
					    err, sizeof(err));
	const struct reg_workload *w;
	const struct reg_service *s;
	const struct reg_policy *po;
	const struct reg_node *n;

	CHECK(r != NULL);
	if (!r) {
		fprintf(stderr, "parse: %s\n", err);
		return;
	}
	CHECK_EQ_STR(r->trust_domain, "example.org");

	/* nodes, sorted by name */
	CHECK_EQ_INT(r->n_nodes, 2);
	CHECK_EQ_STR(r->nodes[0].name, "node0");
	CHECK_EQ_STR(r->nodes[0].address, "fd00::1");	/* canonical */
	CHECK_EQ_INT(r->nodes[0].hbone_port, 15008);
	CHECK_EQ_STR(r->nodes[0].cluster, "");
	CHECK_EQ_STR(r->nodes[0].network, "");
	n = registry_node(r, "node1");
	CHECK(n != NULL);
	if (n) {
		CHECK_EQ_STR(n->address, "10.10.0.1");
		CHECK_EQ_INT(n->hbone_port, 15009);
		CHECK_EQ_STR(n->cluster, "c1");
		CHECK_EQ_STR(n->network, "n1");
	}
	CHECK(registry_node(r, "node2") == NULL);

	/* workloads, sorted by uid */
	CHECK_EQ_INT(r->n_workloads, 4);
	CHECK_EQ_STR(r->workloads[0].uid, "custom-uid");
	CHECK_EQ_STR(r->workloads[1].uid, "default/echo-1");
	CHECK_EQ_STR(r->workloads[2].uid, "default/echo-2");
	CHECK_EQ_STR(r->workloads[3].uid, "other/echo-other");
	w = registry_workload(r, "custom-uid");
	CHECK(w != NULL);
	if (w) {
		CHECK_EQ_STR(w->name, "client-1");
		CHECK_EQ_STR(w->namespace, "default");
		CHECK_EQ_STR(w->service_account, "client");
		CHECK_EQ_STR(w->node, "node1");
		CHECK_EQ_INT(w->n_ips, 2);
		if (w->n_ips == 2) {
			CHECK_EQ_STR(w->ips[0], "10.20.1.2");
			CHECK_EQ_STR(w->ips[1], "fd00::2");
		}
		CHECK_EQ_INT(w->tunnel, REG_TUNNEL_NONE);
		CHECK_EQ_INT(w->n_labels, 3);
		if (w->n_labels == 3) {	/* sorted by key */
			CHECK_EQ_STR(w->labels[0].key, "app");
			CHECK_EQ_STR(w->labels[0].value, "client");
			CHECK_EQ_STR(w->labels[1].key, "example.com/tier");
			CHECK_EQ_STR(w->labels[1].value, "web");
			CHECK_EQ_STR(w->labels[2].key, "zone");
			CHECK_EQ_STR(w->labels[2].value, "a");
		}
	}
	w = registry_workload(r, "default/echo-2");
	CHECK(w != NULL);
	if (w) {	/* defaults */
		CHECK_EQ_STR(w->service_account, "default");
		CHECK_EQ_INT(w->tunnel, REG_TUNNEL_HBONE);
		CHECK_EQ_INT(w->n_ips, 0);
	}
	CHECK(registry_workload(r, "default/client-1") == NULL);

	/* services, sorted by namespace/name, endpoints from selectors */
	CHECK_EQ_INT(r->n_services, 3);
	s = &r->services[0];
	CHECK_EQ_STR(s->name, "echo");
	CHECK_EQ_STR(s->namespace, "default");
	CHECK_EQ_INT(s->n_vips, 1);
	CHECK_EQ_STR(s->vips[0], "10.96.0.10");
	CHECK_EQ_INT(s->n_ports, 2);
	if (s->n_ports == 2) {
		CHECK_EQ_INT(s->ports[0].port, 80);
		CHECK_EQ_INT(s->ports[0].target_port, 8080);
		CHECK_EQ_INT(s->ports[1].port, 443);
		CHECK_EQ_INT(s->ports[1].target_port, 443);
	}
	CHECK_EQ_INT(s->n_selector, 1);
	CHECK_EQ_INT(s->n_endpoints, 2);	/* not the one in "other" */
	if (s->n_endpoints == 2) {
		CHECK_EQ_STR(s->endpoints[0], "default/echo-1");
		CHECK_EQ_STR(s->endpoints[1], "default/echo-2");
	}
	s = &r->services[1];
	CHECK_EQ_STR(s->name, "echo-v1");
	CHECK_EQ_INT(s->n_selector, 2);
	CHECK_EQ_STR(s->selector[0].key, "app");
	CHECK_EQ_STR(s->selector[1].key, "version");
	CHECK_EQ_INT(s->n_endpoints, 1);
	if (s->n_endpoints == 1)
		CHECK_EQ_STR(s->endpoints[0], "default/echo-1");
	s = &r->services[2];
	CHECK_EQ_STR(s->name, "external");
	CHECK_EQ_INT(s->n_endpoints, 0);	/* no selector, no endpoints */
	CHECK_EQ_INT(s->n_ports, 0);

	/* policies, sorted by namespace/name (global has namespace "") */
	CHECK_EQ_INT(r->n_policies, 3);
	po = &r->policies[0];
	CHECK_EQ_STR(po->name, "global-deny");
	CHECK_EQ_STR(po->namespace, "");
	CHECK_EQ_INT(po->scope, REG_SCOPE_GLOBAL);
	CHECK_EQ_INT(po->action, REG_ACTION_DENY);
	CHECK_EQ_INT(po->n_rules, 0);
	po = &r->policies[1];
	CHECK_EQ_STR(po->name, "allow-echo");
	CHECK_EQ_INT(po->scope, REG_SCOPE_WORKLOAD);
	CHECK_EQ_INT(po->action, REG_ACTION_ALLOW);
	CHECK_EQ_INT(po->n_selector, 1);
	CHECK_EQ_STR(po->selector[0].value, "echo");
	po = &r->policies[2];
	CHECK_EQ_STR(po->name, "deny-legacy");
	CHECK_EQ_STR(po->namespace, "default");
	CHECK_EQ_INT(po->scope, REG_SCOPE_NAMESPACE);
	CHECK_EQ_INT(po->action, REG_ACTION_DENY);
	CHECK_EQ_INT(po->n_rules, 2);
	if (po->n_rules == 2) {
		const struct reg_rule *ru = &po->rules[0];

		CHECK_EQ_INT(ru->principals.n, 1);
		CHECK_EQ_STR(ru->principals.v[0], "spiffe://example.org/ns/legacy/sa/*");
		CHECK_EQ_INT(ru->not_principals.n, 2);
		CHECK_EQ_STR(ru->not_principals.v[1], "b");
		CHECK_EQ_INT(ru->namespaces.n, 1);
		CHECK_EQ_STR(ru->namespaces.v[0], "legacy");
		CHECK_EQ_STR(ru->not_namespaces.v[0], "kube-system");
		CHECK_EQ_INT(ru->source_ips.n, 3);
		CHECK_EQ_STR(ru->source_ips.v[0], "10.20.0.0/16");
		CHECK_EQ_STR(ru->source_ips.v[1], "10.1.2.3");
		CHECK_EQ_STR(ru->source_ips.v[2], "fd00::/8");
		CHECK_EQ_STR(ru->not_source_ips.v[0], "10.20.9.0/24");
		CHECK_EQ_INT(ru->ports.n, 2);
		CHECK_EQ_INT(ru->ports.v[0], 80);
		CHECK_EQ_INT(ru->ports.v[1], 8080);
		CHECK_EQ_INT(ru->not_ports.n, 1);
		CHECK_EQ_INT(ru->not_ports.v[0], 22);
		ru = &po->rules[1];	/* {} matches everything */
		CHECK_EQ_INT(ru->principals.n + ru->source_ips.n + ru->ports.n, 0);
	}

	/* node authorization lookup */
	CHECK_EQ_INT(registry_node_has_identity(r, "node1", "default", "client"), 1);
	CHECK_EQ_INT(registry_node_has_identity(r, "node0", "default", "client"), 0);
	CHECK_EQ_INT(registry_node_has_identity(r, "node0", "default", "default"), 1);
	CHECK_EQ_INT(registry_node_has_identity(r, "node1", "other", "default"), 1);
	CHECK_EQ_INT(registry_node_has_identity(r, "node1", "other", "client"), 0);
	CHECK_EQ_INT(registry_node_has_identity(r, "nodeX", "default", "client"), 0);
	registry_free(r);
}

static void test_minimal(void)
{
	static const char *const ok[] = {
		"{}\n",
		"nodes: []\n",
		"nodes:\nworkloads: ~\nservices: null\npolicies: []\n",
		"# comment\nnodes:\n  - {name: n, address: '::1'}\n",
	};
	char err[REG_ERR_MAX];
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct registry *r = registry_parse(ok[i], strlen(ok[i]), "min.yaml",
						    err, sizeof(err));

		CHECK(r != NULL);
		if (!r) {
			fprintf(stderr, "minimal %zu: %s\n", i, err);
			continue;
		}
		CHECK(r->trust_domain == NULL);
		CHECK_EQ_INT(r->n_workloads + r->n_services + r->n_policies, 0);
		registry_free(r);
	}
	registry_free(NULL);
}

#define NODES "nodes:\n  - name: n1\n    address: 10.0.0.1\n"	/* lines 1-3 */

struct bad {
	const char *yaml;
	unsigned line;
	const char *msg;
};

static const struct bad bad[] = {
	/* typo: unknown key */
	{ NODES "workloads:\n  - name: a\n    namespace: default\n    node: n1\n"
	  "    servce_account: x\n", 8, "unknown key \"servce_account\" in workload" },
	{ "nodes: []\nworkload: []\n", 2, "unknown key \"workload\" in the registry" },
	{ NODES "policies:\n  - name: p\n    scope: global\n    action: DENY\n"
	  "    rules:\n      - principal: [a]\n", 9, "unknown key \"principal\" in policy rule" },
	/* missing required fields */
	{ NODES "workloads:\n  - name: a\n    namespace: default\n", 5,
	  "workload is missing required field \"node\"" },
	{ "nodes:\n  - name: n1\n", 2, "node is missing required field \"address\"" },
	{ NODES "workloads:\n  - name: a\n    namespace:\n    node: n1\n", 6,
	  "workload field \"namespace\" must not be empty" },
	{ "policies:\n  - name: p\n    scope: namespace\n    action: ALLOW\n", 2,
	  "missing required field \"namespace\" (required unless scope is global)" },
	{ "policies:\n  - name: p\n    namespace: a\n    scope: workload\n    action: ALLOW\n", 2,
	  "missing required field \"selector\"" },
	{ "policies:\n  - name: p\n    namespace: a\n    scope: namespace\n    action: ALLOW\n"
	  "    selector: {app: x}\n", 6, "selector: only allowed for scope workload" },
	{ "policies:\n  - name: p\n    namespace: a\n    scope: global\n    action: ALLOW\n", 3,
	  "namespace: not allowed for scope global" },
	/* wrong types */
	{ NODES "workloads:\n  - name: a\n    namespace: default\n    node: n1\n"
	  "    ips: 10.0.0.2\n", 8, "workload ips: expected a list, found a scalar" },
	{ NODES "workloads:\n  - name: a\n    namespace: default\n    node: n1\n"
	  "    labels: [a, b]\n", 8, "workload labels: expected a mapping, found a list" },
	{ "nodes:\n  - name: [n1]\n    address: 10.0.0.1\n", 2,
	  "node name: expected a string, found a list" },
	{ "nodes:\n  - name: n1\n    address: 10.0.0.1\n    hbone_port: http\n", 4,
	  "node hbone_port: expected an integer, found \"http\"" },
	{ "nodes:\n  - name: n1\n    address: 10.0.0.1\n    hbone_port: \"15008\"\n", 4,
	  "expected an integer, found the string \"15008\"" },
	{ "nodes:\n  name: n1\n", 2, "nodes: expected a list, found a mapping" },
	{ "nodes:\n  - n1\n", 2, "expected a mapping for node, found a scalar" },
	{ "- a\n- b\n", 1, "expected a mapping for the registry (top level), found a list" },
	/* addresses */
	{ "nodes:\n  - name: n1\n    address: 10.0.0.300\n", 3,
	  "node address: \"10.0.0.300\" is not an IPv4 or IPv6 address" },
	{ "services:\n  - name: s\n    namespace: a\n    vips: [10.96.0.1, 'fe80::1%eth0']\n", 4,
	  "service vips: \"fe80::1%eth0\" is not an IPv4 or IPv6 address" },
	{ "policies:\n  - name: p\n    scope: global\n    action: DENY\n    rules:\n"
	  "      - source_ips:\n        - 10.0.0.0/8\n        - 10.0.0.0/33\n", 8,
	  "\"10.0.0.0/33\" has a prefix length out of range 0..32" },
	{ "policies:\n  - name: p\n    scope: global\n    action: DENY\n    rules:\n"
	  "      - not_source_ips: [10.0.0/8]\n", 6,
	  "\"10.0.0/8\" is not a CIDR (address/prefix length) or IP address" },
	{ "policies:\n  - name: p\n    scope: global\n    action: DENY\n    rules:\n"
	  "      - source_ips: [10.0.0.0/]\n", 6, "is not a CIDR" },
	/* ports */
	{ "services:\n  - name: s\n    namespace: a\n    ports:\n      - port: 80\n"
	  "        target_port: 70000\n", 6,
	  "service port target_port: \"70000\" is out of range 1..65535" },
	{ "services:\n  - name: s\n    namespace: a\n    ports: [{port: 0}]\n", 4,
	  "\"0\" is out of range 1..65535" },
	{ "policies:\n  - name: p\n    scope: global\n    action: DENY\n    rules:\n"
	  "      - destination_ports: [80, 99999999999999999999]\n", 6,
	  "out of range 1..65535" },
	{ "services:\n  - name: s\n    namespace: a\n    ports:\n      - port: 80\n"
	  "      - port: 80\n", 6, "duplicate port 80" },
	/* duplicates */
	{ NODES "  - name: n1\n    address: 10.0.0.2\n", 4,
	  "duplicate node name \"n1\" (first defined on line 2)" },
	{ NODES "workloads:\n  - {name: a, namespace: x, node: n1}\n"
	  "  - {name: b, namespace: x, node: n1}\n  - {name: c, namespace: y, node: n1, uid: x/a}\n",
	  7, "duplicate workload uid \"x/a\" (first defined on line 5)" },
	{ "services:\n  - {name: s, namespace: a}\n  - {name: s, namespace: b}\n"
	  "  - {name: s, namespace: a}\n", 4, "duplicate service \"a/s\" (first defined on line 2)" },
	{ "policies:\n  - {name: p, namespace: a, scope: namespace, action: DENY}\n"
	  "  - {name: p, namespace: a, scope: namespace, action: ALLOW}\n", 3,
	  "duplicate policy \"a/p\"" },
	{ "nodes:\n  - name: n1\n    name: n2\n    address: 10.0.0.1\n", 3,
	  "duplicate key \"name\" in node" },
	{ NODES "workloads:\n  - name: a\n    namespace: default\n    node: n1\n"
	  "    labels:\n      app: x\n      app: y\n", 10, "labels: duplicate key \"app\"" },
	/* references */
	{ NODES "workloads:\n  - {name: a, namespace: x, node: n1}\n"
	  "  - {name: b, namespace: x, node: n2}\n", 6,
	  "workload node \"n2\" is not defined in nodes" },
	/* enums */
	{ NODES "workloads:\n  - name: a\n    namespace: default\n    node: n1\n"
	  "    tunnel: hbone\n", 8, "workload tunnel: \"hbone\" is not one of NONE, HBONE" },
	{ "policies:\n  - {name: p, namespace: a, scope: namespace, action: REJECT}\n", 2,
	  "policy action: \"REJECT\" is not one of ALLOW, DENY" },
	{ "policies:\n  - {name: p, namespace: a, scope: cluster, action: DENY}\n", 2,
	  "\"cluster\" is not one of global, namespace, workload" },
	/* names */
	{ NODES "workloads:\n  - name: a\n    namespace: Default\n    node: n1\n", 6,
	  "workload namespace: \"Default\" is not a valid DNS-1123 label" },
	{ NODES "workloads:\n  - name: a\n    namespace: b\n    node: n1\n"
	  "    service_account: sa_1\n", 8, "service_account: \"sa_1\" is not a valid DNS-1123 label" },
	{ "nodes:\n  - name: -node\n    address: 10.0.0.1\n", 2, "is not a valid DNS-1123 label" },
	{ "nodes:\n  - name: n1234567890123456789012345678901234567890123456789012345678901234\n"
	  "    address: 10.0.0.1\n", 2, "node name: longer than 63 characters" },
	{ NODES "workloads:\n  - name: a\n    namespace: b\n    node: n1\n"
	  "    uid: \"b a\"\n", 8, "workload uid: \"b a\" must not contain spaces" },
	{ "trust_domain: Cluster.Local\n", 1, "is not a valid trust domain" },
	{ "nodes:\n  - name: n1\n    address: 10.0.0.1\n    cluster: \"a\\tb\"\n", 4,
	  "contains a control character" },
	/* labels bounded */
	{ NODES "workloads:\n  - name: a\n    namespace: b\n    node: n1\n    labels:\n"
	  "      app: v234567890123456789012345678901234567890123456789012345678901234\n", 9,
	  "is not a valid label value" },
	{ NODES "workloads:\n  - name: a\n    namespace: b\n    node: n1\n    labels:\n"
	  "      \"bad key\": v\n", 9, "is not a valid label key" },
	{ "services:\n  - name: s\n    namespace: a\n    selector: {app: {x: y}}\n", 4,
	  "value of \"app\": expected a string, found a mapping" },
	/* YAML itself */
	{ "nodes:\n  - name: n1\n    address: 10.0.0.1\n   bad: indent\n", 4, "YAML syntax error" },
	{ "nodes: [a, b\n", 2, "YAML syntax error" },
	{ "nodes: []\nx: \"abc\n", 3, "YAML syntax error" },
	{ "nodes: *nope\n", 1, "YAML syntax error: found undefined alias" },
	{ "nodes: []\n---\nnodes: []\n", 2, "more than one YAML document" },
	{ "", 1, "empty document" },
	{ "# only a comment\n", 1, "empty document" },
	{ "nodes: [\xff]\n", 1, "YAML syntax error" },
};

static void test_bad(void)
{
	char err[REG_ERR_MAX], want[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct registry *r = registry_parse(bad[i].yaml, strlen(bad[i].yaml), "bad.yaml",
						    err, sizeof(err));
		int ok_prefix, ok_msg;

		CHECK(r == NULL);
		registry_free(r);
		snprintf(want, sizeof(want), "bad.yaml:%u: ", bad[i].line);
		ok_prefix = strncmp(err, want, strlen(want)) == 0;
		ok_msg = strstr(err, bad[i].msg) != NULL;
		CHECK(ok_prefix && ok_msg);
		if (getenv("SHOW_ERRORS"))
			printf("%s\n", err);
		if (!ok_prefix || !ok_msg)
			fprintf(stderr, "bad case %zu: got \"%s\", want \"%s...%s\"\n",
				i, err, want, bad[i].msg);
	}
	CHECK(sizeof(bad) / sizeof(bad[0]) >= 15);
}

/* Input bounds: file size, node count, nesting, alias expansion. */
static void test_limits(void)
{
	char err[REG_ERR_MAX];
	size_t big = (16u << 20) + 1, i, off;
	char *buf = malloc(big > 1200000 ? big : 1200000);
	struct registry *r;

	if (!buf) {
		CHECK(0);
		return;
	}
	memset(buf, ' ', big);
	memcpy(buf, "nodes: []", 9);
	r = registry_parse(buf, big, "big.yaml", err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "big.yaml: file too large") == err);

	/* 100,001 scalars in one list */
	off = (size_t)sprintf(buf, "trust_domain: a\nx: [");
	for (i = 0; i < 100000; i++)
		buf[off++] = '1', buf[off++] = ',';
	buf[off++] = ']';
	r = registry_parse(buf, off, "many.yaml", err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "many.yaml:2: document too large") == err);

	/* nesting */
	off = (size_t)sprintf(buf, "nodes: ");
	for (i = 0; i < 40; i++)
		buf[off++] = '[';
	for (i = 0; i < 40; i++)
		buf[off++] = ']';
	r = registry_parse(buf, off, "deep.yaml", err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "deep.yaml:1: nesting deeper than 32 levels") == err);

	/* aliases: few YAML nodes, but their uses add up past the budget */
	off = (size_t)sprintf(buf, "nodes:\n  - &n {name: n1, address: 10.0.0.1}\n"
			      "workloads:\n  - &w\n    name: a\n    namespace: b\n    node: n1\n"
			      "    labels: &l {");
	for (i = 0; i < 2000; i++)
		off += (size_t)sprintf(buf + off, "k%zu: v,", i);
	off += (size_t)sprintf(buf + off, "}\nservices:\n");
	for (i = 0; i < 100; i++)
		off += (size_t)sprintf(buf + off, "  - {name: s%zu, namespace: b, selector: *l}\n", i);
	r = registry_parse(buf, off, "alias.yaml", err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "document too large") != NULL);
	CHECK(strstr(err, "alias") != NULL);

	/* a modest use of aliases is fine */
	r = registry_parse("x: &a {app: e}\n", 15, "a.yaml", err, sizeof(err));
	CHECK(r == NULL);	/* x is unknown, but the alias itself is accepted */
	CHECK(strstr(err, "unknown key \"x\"") != NULL);
	{
		static const char y[] =
			"nodes: [{name: n1, address: 10.0.0.1}]\n"
			"workloads:\n  - {name: a, namespace: b, node: n1, labels: &l {app: e}}\n"
			"services:\n  - {name: s, namespace: b, selector: *l}\n";

		r = registry_parse(y, strlen(y), "a.yaml", err, sizeof(err));
		CHECK(r != NULL);
		if (r) {
			CHECK_EQ_INT(r->services[0].n_endpoints, 1);
			registry_free(r);
		} else {
			fprintf(stderr, "alias ok: %s\n", err);
		}
	}

	/* a truncated error buffer is still terminated */
	r = registry_parse("nodes: 5\n", 9, "t.yaml", err, 8);
	CHECK(r == NULL);
	CHECK_EQ_STR(err, "t.yaml:");
	free(buf);
}

/* Many workloads and services: endpoints stay right and sorted. */
static void test_endpoints_scale(void)
{
	size_t cap = 1 << 20, off = 0, i;
	char *buf = malloc(cap), err[REG_ERR_MAX];
	struct registry *r;

	if (!buf) {
		CHECK(0);
		return;
	}
	off += (size_t)sprintf(buf + off, "nodes: [{name: n1, address: 10.0.0.1}]\nworkloads:\n");
	for (i = 0; i < 300; i++)
		off += (size_t)sprintf(buf + off,
				       "  - {name: w%03zu, namespace: ns%zu, node: n1, "
				       "labels: {app: a%zu, tier: t%zu}}\n",
				       299 - i, (299 - i) % 3, (299 - i) % 5, (299 - i) % 2);
	off += (size_t)sprintf(buf + off, "services:\n");
	for (i = 0; i < 15; i++)
		off += (size_t)sprintf(buf + off,
				       "  - {name: s%zu, namespace: ns%zu, selector: {app: a%zu}}\n",
				       i, i % 3, i % 5);
	r = registry_parse(buf, off, "scale.yaml", err, sizeof(err));
	CHECK(r != NULL);
	if (r) {
		for (i = 0; i < r->n_services; i++) {
			const struct reg_service *s = &r->services[i];
			size_t j, expect = 0;

			/* brute force against the parser's indexed walk */
			for (j = 0; j < r->n_workloads; j++) {
				const struct reg_workload *w = &r->workloads[j];

				expect += !strcmp(w->namespace, s->namespace) &&
					  !strcmp(w->labels[0].value, s->selector[0].value);
			}
			CHECK_EQ_INT(s->n_endpoints, expect);
			CHECK(expect > 0);
			for (j = 1; j < s->n_endpoints; j++)
				CHECK(strcmp(s->endpoints[j - 1], s->endpoints[j]) < 0);
		}
		registry_free(r);
	} else {
		fprintf(stderr, "scale: %s\n", err);
	}
	free(buf);
}

/* The documented example must stay valid. Run from the repository root. */
static void test_example_file(void)
{
	FILE *f = fopen("deploy/examples/registry.yaml", "rb");
	char *buf, err[REG_ERR_MAX];
	struct registry *r;
	size_t n;

	if (!f) {
		fprintf(stderr, "example file not found (not run from the repo root?)\n");
		return;
	}
	buf = malloc(1 << 20);
	n = buf ? fread(buf, 1, 1 << 20, f) : 0;
	fclose(f);
	r = registry_parse(buf, n, "deploy/examples/registry.yaml", err, sizeof(err));
	CHECK(r != NULL);
	if (r) {
		const struct reg_service *s = &r->services[0];

		CHECK_EQ_INT(r->n_nodes, 2);
		CHECK_EQ_INT(r->n_workloads, 3);
		CHECK_EQ_INT(r->n_policies, 3);
		CHECK_EQ_INT(s->n_endpoints, 1);
		CHECK_EQ_INT(registry_node_has_identity(r, "node1", "default", "client"), 1);
		registry_free(r);
	} else {
		fprintf(stderr, "example: %s\n", err);
	}
	free(buf);
}

int main(void)
{
	test_full();
	test_minimal();
	test_bad();
	test_limits();
	test_endpoints_scale();
	test_example_file();
	return check_done("test_registry");
}
