/* SPDX-License-Identifier: Apache-2.0 */
/* Registry -> weft.registry.v1.WatchResponse: the snapshot decodes back
 * with every resource and field; deltas carry exactly the new, changed and
 * removed resources; identical registries give no delta; output is
 * byte-for-byte deterministic. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "registry.pb-c.h"
#include <weft/registry.h>
#include <weft/regproto.h>
#include "../regyaml.h"

#define KIND(x) WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_##x
#define CASE(x) WEFT__REGISTRY__V1__RESOURCE__KIND_##x

static const char base_yaml[] =
	"trust_domain: cluster.local\n"
	"nodes:\n"
	"  - {name: node2, address: 10.10.0.2}\n"
	"  - {name: node1, address: 10.10.0.1, hbone_port: 15009, cluster: c1, network: n1}\n"
	"workloads:\n"
	"  - name: echo-1\n"
	"    namespace: default\n"
	"    service_account: echo\n"
	"    node: node2\n"
	"    ips: [10.20.2.2]\n"
	"    labels: {version: v1, app: echo}\n"
	"  - name: client-1\n"
	"    namespace: default\n"
	"    service_account: client\n"
	"    node: node1\n"
	"    ips: [10.20.1.2, 'fd00::2']\n"
	"    tunnel: NONE\n"
	"    labels: {app: client}\n"
	"services:\n"
	"  - name: echo\n"
	"    namespace: default\n"
	"    vips: [10.96.0.10]\n"
	"    ports: [{port: 80, target_port: 8080}]\n"
	"    selector: {app: echo}\n"
	"policies:\n"
	"  - name: deny-legacy\n"
	"    namespace: default\n"
	"    scope: namespace\n"
	"    action: DENY\n"
	"    rules:\n"
	"      - principals: [\"spiffe://cluster.local/ns/legacy/sa/*\"]\n"
	"        not_principals: [x]\n"
	"        namespaces: [legacy]\n"
	"        not_namespaces: [y]\n"
	"        source_ips: [10.20.0.0/16]\n"
	"        not_source_ips: [10.20.9.9]\n"
	"        destination_ports: [80, 443]\n"
	"        not_destination_ports: [22]\n"
	"  - name: allow-echo\n"
	"    namespace: default\n"
	"    scope: workload\n"
	"    selector: {app: echo}\n"
	"    action: ALLOW\n"
	"  - name: g\n"
	"    scope: global\n"
	"    action: DENY\n";

/* base_yaml with one substring replaced (must occur). */
static struct registry *parse_edit(const char *from, const char *to)
{
	return regyaml_edit(base_yaml, from, to);
}

static Weft__Registry__V1__WatchResponse *unpack(const uint8_t *buf, size_t len)
{
	Weft__Registry__V1__WatchResponse *m =
		weft__registry__v1__watch_response__unpack(NULL, len, buf);

	CHECK(m != NULL);
	return m;
}

static void test_snapshot(void)
{
	struct registry *r = regyaml_parse(base_yaml);
	Weft__Registry__V1__WatchResponse *m;
	Weft__Registry__V1__Resource **u;
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;

	if (!r)
		return;
	CHECK_EQ_INT(regproto_snapshot(r, 7, &buf, &len), 0);
	CHECK(buf != NULL && len > 0);
	/* deterministic */
	CHECK_EQ_INT(regproto_snapshot(r, 7, &buf2, &len2), 0);
	CHECK(len == len2 && buf2 && memcmp(buf, buf2, len) == 0);
	free(buf2);

	m = unpack(buf, len);
	if (!m)
		goto out;
	CHECK_EQ_INT(m->version, 7);
	CHECK_EQ_INT(m->snapshot, 1);
	CHECK_EQ_STR(m->trust_domain, "cluster.local");
	CHECK_EQ_INT(m->n_removals, 0);
	CHECK_EQ_INT(m->n_upserts, 2 + 2 + 1 + 3);
	if (m->n_upserts != 8)
		goto out_m;
	u = m->upserts;

	/* nodes first, by name */
	CHECK_EQ_INT(u[0]->kind_case, CASE(NODE));
	CHECK_EQ_STR(u[0]->node->name, "node1");
	CHECK_EQ_STR(u[0]->node->address, "10.10.0.1");
	CHECK_EQ_INT(u[0]->node->hbone_port, 15009);
	CHECK_EQ_STR(u[0]->node->cluster, "c1");
	CHECK_EQ_STR(u[0]->node->network, "n1");
	CHECK_EQ_INT(u[1]->kind_case, CASE(NODE));
	CHECK_EQ_STR(u[1]->node->name, "node2");
	CHECK_EQ_INT(u[1]->node->hbone_port, 15008);
	CHECK_EQ_STR(u[1]->node->cluster, "");

	/* workloads, by uid */
	CHECK_EQ_INT(u[2]->kind_case, CASE(WORKLOAD));
	CHECK_EQ_STR(u[2]->workload->uid, "default/client-1");
	CHECK_EQ_STR(u[2]->workload->name, "client-1");
	CHECK_EQ_STR(u[2]->workload->namespace_, "default");
	CHECK_EQ_STR(u[2]->workload->service_account, "client");
	CHECK_EQ_STR(u[2]->workload->node, "node1");
	CHECK_EQ_INT(u[2]->workload->n_ips, 2);
	CHECK_EQ_STR(u[2]->workload->ips[1], "fd00::2");
	CHECK_EQ_INT(u[2]->workload->tunnel, WEFT__REGISTRY__V1__TUNNEL_PROTOCOL__TUNNEL_NONE);
	CHECK_EQ_INT(u[2]->workload->n_labels, 1);
	CHECK_EQ_INT(u[3]->kind_case, CASE(WORKLOAD));
	CHECK_EQ_STR(u[3]->workload->uid, "default/echo-1");
	CHECK_EQ_INT(u[3]->workload->tunnel, WEFT__REGISTRY__V1__TUNNEL_PROTOCOL__TUNNEL_HBONE);
	CHECK_EQ_INT(u[3]->workload->n_labels, 2);
	if (u[3]->workload->n_labels == 2) {
		CHECK_EQ_STR(u[3]->workload->labels[0]->key, "app");
		CHECK_EQ_STR(u[3]->workload->labels[0]->value, "echo");
		CHECK_EQ_STR(u[3]->workload->labels[1]->key, "version");
		CHECK_EQ_STR(u[3]->workload->labels[1]->value, "v1");
	}

	/* service with computed endpoints */
	CHECK_EQ_INT(u[4]->kind_case, CASE(SERVICE));
	CHECK_EQ_STR(u[4]->service->namespace_, "default");
	CHECK_EQ_STR(u[4]->service->name, "echo");
	CHECK_EQ_INT(u[4]->service->n_vips, 1);
	CHECK_EQ_STR(u[4]->service->vips[0], "10.96.0.10");
	CHECK_EQ_INT(u[4]->service->n_ports, 1);
	CHECK_EQ_INT(u[4]->service->ports[0]->port, 80);
	CHECK_EQ_INT(u[4]->service->ports[0]->target_port, 8080);
	CHECK_EQ_INT(u[4]->service->n_selector, 1);
	CHECK_EQ_STR(u[4]->service->selector[0]->key, "app");
	CHECK_EQ_INT(u[4]->service->n_endpoints, 1);
	CHECK_EQ_STR(u[4]->service->endpoints[0], "default/echo-1");

	/* policies by namespace/name: global ("" namespace) first */
	CHECK_EQ_INT(u[5]->kind_case, CASE(POLICY));
	CHECK_EQ_STR(u[5]->policy->name, "g");
	CHECK_EQ_STR(u[5]->policy->namespace_, "");
	CHECK_EQ_INT(u[5]->policy->scope, WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_GLOBAL);
	CHECK_EQ_INT(u[5]->policy->action, WEFT__REGISTRY__V1__POLICY_ACTION__ACTION_DENY);
	CHECK_EQ_STR(u[6]->policy->name, "allow-echo");
	CHECK_EQ_INT(u[6]->policy->scope, WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_WORKLOAD_SELECTOR);
	CHECK_EQ_INT(u[6]->policy->action, WEFT__REGISTRY__V1__POLICY_ACTION__ACTION_ALLOW);
	CHECK_EQ_INT(u[6]->policy->n_selector, 1);
	CHECK_EQ_STR(u[6]->policy->selector[0]->value, "echo");
	CHECK_EQ_STR(u[7]->policy->name, "deny-legacy");
	CHECK_EQ_INT(u[7]->policy->scope, WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_NAMESPACE);
	CHECK_EQ_INT(u[7]->policy->n_rules, 1);
	if (u[7]->policy->n_rules == 1) {
		const Weft__Registry__V1__PolicyRule *ru = u[7]->policy->rules[0];

		CHECK_EQ_INT(ru->n_principals, 1);
		CHECK_EQ_STR(ru->principals[0], "spiffe://cluster.local/ns/legacy/sa/*");
		CHECK_EQ_STR(ru->not_principals[0], "x");
		CHECK_EQ_STR(ru->namespaces[0], "legacy");
		CHECK_EQ_STR(ru->not_namespaces[0], "y");
		CHECK_EQ_STR(ru->source_ips[0], "10.20.0.0/16");
		CHECK_EQ_STR(ru->not_source_ips[0], "10.20.9.9");
		CHECK_EQ_INT(ru->n_destination_ports, 2);
		CHECK_EQ_INT(ru->destination_ports[0], 80);
		CHECK_EQ_INT(ru->destination_ports[1], 443);
		CHECK_EQ_INT(ru->n_not_destination_ports, 1);
		CHECK_EQ_INT(ru->not_destination_ports[0], 22);
	}
out_m:
	weft__registry__v1__watch_response__free_unpacked(m, NULL);
out:
	free(buf);
	registry_free(r);
}

static void test_empty_snapshot(void)
{
	struct registry *r = regyaml_parse("{}\n");
	Weft__Registry__V1__WatchResponse *m;
	uint8_t *buf = NULL;
	size_t len = 99;

	if (!r)
		return;
	CHECK_EQ_INT(regproto_snapshot(r, 1, &buf, &len), 0);
	CHECK(buf != NULL);
	m = unpack(buf, len);
	if (m) {
		CHECK_EQ_INT(m->snapshot, 1);
		CHECK_EQ_INT(m->version, 1);
		CHECK_EQ_INT(m->n_upserts, 0);
		CHECK_EQ_STR(m->trust_domain, "");
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	free(buf);
	registry_free(r);
}

struct expect {
	int kind;		/* KIND(...) */
	const char *key;	/* name / uid / ns/name of the upsert or removal */
};

static const char *resource_key(const Weft__Registry__V1__Resource *res, char *buf, size_t n)
{
	switch (res->kind_case) {
	case CASE(NODE):
		return res->node->name;
	case CASE(WORKLOAD):
		return res->workload->uid;
	case CASE(SERVICE):
		snprintf(buf, n, "%s/%s", res->service->namespace_, res->service->name);
		return buf;
	case CASE(POLICY):
		snprintf(buf, n, "%s/%s", res->policy->namespace_, res->policy->name);
		return buf;
	default:
		return "?";
	}
}

/* Delta base -> next must hold exactly these upserts and removals, in order. */
static Weft__Registry__V1__WatchResponse *
check_delta(const char *what, const struct registry *prev, const struct registry *next,
	    const struct expect *ups, size_t n_ups, const struct expect *rms, size_t n_rms)
{
	Weft__Registry__V1__WatchResponse *m;
	uint8_t *buf = NULL;
	size_t len = 0, i;
	char kb[256];

	if (!prev || !next)
		return NULL;
	CHECK_EQ_INT(regproto_delta(prev, next, 42, &buf, &len), 0);
	CHECK(buf != NULL);
	if (!buf)
		return NULL;
	m = unpack(buf, len);
	free(buf);
	if (!m)
		return NULL;
	CHECK_EQ_INT(m->snapshot, 0);
	CHECK_EQ_INT(m->version, 42);
	CHECK_EQ_INT(m->n_upserts, n_ups);
	CHECK_EQ_INT(m->n_removals, n_rms);
	if (m->n_upserts != n_ups || m->n_removals != n_rms)
		fprintf(stderr, "%s: %zu upserts, %zu removals\n", what, m->n_upserts, m->n_removals);
	for (i = 0; i < n_ups && i < m->n_upserts; i++) {
		CHECK_EQ_INT(m->upserts[i]->kind_case, ups[i].kind);
		CHECK_EQ_STR(resource_key(m->upserts[i], kb, sizeof(kb)), ups[i].key);
	}
	for (i = 0; i < n_rms && i < m->n_removals; i++) {
		CHECK_EQ_INT(m->removals[i]->kind, rms[i].kind);
		CHECK_EQ_STR(m->removals[i]->key, rms[i].key);
	}
	return m;
}

static void test_delta(void)
{
	struct registry *base = regyaml_parse(base_yaml), *same = regyaml_parse(base_yaml), *next;
	Weft__Registry__V1__WatchResponse *m;
	uint8_t *buf = (uint8_t *)"x";
	size_t len = 5;

	if (!base || !same)
		goto out;

	/* identical: nothing */
	CHECK_EQ_INT(regproto_delta(base, same, 2, &buf, &len), 0);
	CHECK(buf == NULL);
	CHECK_EQ_INT(len, 0);

	/* add a workload: it, and the service whose endpoints it joins */
	next = parse_edit("services:\n",
			  "  - {name: echo-2, namespace: default, node: node1, labels: {app: echo}}\n"
			  "services:\n");
	{
		static const struct expect ups[] = {
			{ CASE(WORKLOAD), "default/echo-2" },
			{ CASE(SERVICE), "default/echo" },
		};
		m = check_delta("add workload", base, next, ups, 2, NULL, 0);
		if (m && m->n_upserts == 2) {
			CHECK_EQ_INT(m->upserts[1]->service->n_endpoints, 2);
			CHECK_EQ_STR(m->upserts[1]->service->endpoints[1], "default/echo-2");
		}
		if (m)
			CHECK_EQ_STR(m->trust_domain, "cluster.local");
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
		/* and back: removal of the workload, service upsert */
		{
			static const struct expect ups2[] = { { CASE(SERVICE), "default/echo" } };
			static const struct expect rms2[] = { { KIND(WORKLOAD), "default/echo-2" } };

			m = check_delta("remove workload", next, base, ups2, 1, rms2, 1);
			weft__registry__v1__watch_response__free_unpacked(m, NULL);
		}
	}
	registry_free(next);

	/* change a workload field that no selector sees */
	next = parse_edit("ips: [10.20.2.2]", "ips: [10.20.2.3]");
	{
		static const struct expect ups[] = { { CASE(WORKLOAD), "default/echo-1" } };

		m = check_delta("change workload ip", base, next, ups, 1, NULL, 0);
		if (m && m->n_upserts == 1)
			CHECK_EQ_STR(m->upserts[0]->workload->ips[0], "10.20.2.3");
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);

	/* label order in the file does not matter (labels are sorted) */
	next = parse_edit("labels: {version: v1, app: echo}", "labels: {app: echo, version: v1}");
	if (next) {
		buf = (uint8_t *)"x";
		CHECK_EQ_INT(regproto_delta(base, next, 3, &buf, &len), 0);
		CHECK(buf == NULL);
	}
	registry_free(next);

	/* change a label: the workload changes and it leaves the service */
	next = parse_edit("labels: {version: v1, app: echo}", "labels: {version: v1, app: echo2}");
	{
		static const struct expect ups[] = {
			{ CASE(WORKLOAD), "default/echo-1" },
			{ CASE(SERVICE), "default/echo" },
		};
		m = check_delta("change label", base, next, ups, 2, NULL, 0);
		if (m && m->n_upserts == 2)
			CHECK_EQ_INT(m->upserts[1]->service->n_endpoints, 0);
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);

	/* add, change, remove services */
	next = parse_edit("    ports: [{port: 80, target_port: 8080}]\n"
			  "    selector: {app: echo}\n",
			  "    ports: [{port: 80, target_port: 8081}]\n"
			  "    selector: {app: echo}\n"
			  "  - {name: db, namespace: data, vips: [10.96.0.20]}\n");
	{
		static const struct expect ups[] = {
			{ CASE(SERVICE), "data/db" },
			{ CASE(SERVICE), "default/echo" },
		};
		m = check_delta("services", base, next, ups, 2, NULL, 0);
		if (m && m->n_upserts == 2)
			CHECK_EQ_INT(m->upserts[1]->service->ports[0]->target_port, 8081);
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);
	next = parse_edit("  - name: echo\n    namespace: default\n",
			  "  - name: echo\n    namespace: other\n");
	{
		static const struct expect ups[] = { { CASE(SERVICE), "other/echo" } };
		static const struct expect rms[] = { { KIND(SERVICE), "default/echo" } };

		m = check_delta("move service", base, next, ups, 1, rms, 1);
		if (m && m->n_upserts == 1)
			CHECK_EQ_INT(m->upserts[0]->service->n_endpoints, 0);
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);

	/* policies: change a rule port, drop the global one, add another */
	next = parse_edit("destination_ports: [80, 443]", "destination_ports: [80, 444]");
	{
		static const struct expect ups[] = { { CASE(POLICY), "default/deny-legacy" } };

		m = check_delta("policy rule", base, next, ups, 1, NULL, 0);
		if (m && m->n_upserts == 1)
			CHECK_EQ_INT(m->upserts[0]->policy->rules[0]->destination_ports[1], 444);
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);
	next = parse_edit("  - name: g\n    scope: global\n    action: DENY\n",
			  "  - {name: h, namespace: legacy, scope: namespace, action: ALLOW}\n");
	{
		static const struct expect ups[] = { { CASE(POLICY), "legacy/h" } };
		static const struct expect rms[] = { { KIND(POLICY), "/g" } };

		m = check_delta("policy add/remove", base, next, ups, 1, rms, 1);
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);
	next = parse_edit("    action: DENY\n    rules:", "    action: ALLOW\n    rules:");
	{
		static const struct expect ups[] = { { CASE(POLICY), "default/deny-legacy" } };

		m = check_delta("policy action", base, next, ups, 1, NULL, 0);
		if (m && m->n_upserts == 1)
			CHECK_EQ_INT(m->upserts[0]->policy->action,
				     WEFT__REGISTRY__V1__POLICY_ACTION__ACTION_ALLOW);
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);

	/* node: change its port */
	next = parse_edit("hbone_port: 15009", "hbone_port: 15010");
	{
		static const struct expect ups[] = { { CASE(NODE), "node1" } };

		m = check_delta("node port", base, next, ups, 1, NULL, 0);
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);

	/* everything gone: removals of every kind, in kind then key order */
	next = regyaml_parse("trust_domain: cluster.local\n");
	{
		static const struct expect rms[] = {
			{ KIND(NODE), "node1" }, { KIND(NODE), "node2" },
			{ KIND(WORKLOAD), "default/client-1" }, { KIND(WORKLOAD), "default/echo-1" },
			{ KIND(SERVICE), "default/echo" },
			{ KIND(POLICY), "/g" }, { KIND(POLICY), "default/allow-echo" },
			{ KIND(POLICY), "default/deny-legacy" },
		};
		m = check_delta("remove all", base, next, NULL, 0, rms, 8);
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);

	/* trust domain change alone is a delta */
	next = parse_edit("trust_domain: cluster.local", "trust_domain: other.local");
	{
		m = check_delta("trust domain", base, next, NULL, 0, NULL, 0);
		if (m)
			CHECK_EQ_STR(m->trust_domain, "other.local");
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
	}
	registry_free(next);
out:
	registry_free(base);
	registry_free(same);
}

int main(void)
{
	test_snapshot();
	test_empty_snapshot();
	test_delta();
	return check_done("test_regproto");
}
