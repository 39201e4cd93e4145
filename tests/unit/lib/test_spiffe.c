/* SPDX-License-Identifier: Apache-2.0 */
/* SPIFFE-ID parsing against the spec's valid and invalid examples, the
 * reasons given, weft's workload/node shapes and the formatters. */
#include <errno.h>
#include <string.h>

#include <weft/spiffe.h>

#include "../check.h"

static int parse(const char *s, struct spiffe_id *id, const char **why)
{
	return spiffe_id_parse(s, strlen(s), id, why);
}

/* Expect rejection with a reason containing want. */
static void bad(const char *s, const char *want)
{
	struct spiffe_id id;
	const char *why = NULL;
	int rc = parse(s, &id, &why);

	CHECK_EQ_INT(rc, -EINVAL);
	CHECK(why != NULL);
	if (why && !strstr(why, want)) {
		fprintf(stderr, "  %s: reason \"%s\" lacks \"%s\"\n", s, why, want);
		CHECK(0);
	}
}

static void good(const char *s, const char *td, const char *path)
{
	struct spiffe_id id;
	const char *why = "unset";

	CHECK_EQ_INT(parse(s, &id, &why), 0);
	CHECK(why == NULL);
	CHECK_EQ_STR(id.td, td);
	CHECK_EQ_STR(id.path, path);
}

static void test_valid(void)
{
	good("spiffe://example.org", "example.org", "");
	good("spiffe://cluster.local/ns/default/sa/a", "cluster.local", "/ns/default/sa/a");
	good("spiffe://trust_domain-1.x/a/B/c-d_e.f", "trust_domain-1.x", "/a/B/c-d_e.f");
	good("spiffe://td/...", "td", "/...");		/* only . and .. are special */
	good("spiffe://td/.a/a./..b", "td", "/.a/a./..b");
	good("spiffe://1.2.3.4/x", "1.2.3.4", "/x");	/* IPs are fine as names */
	good("spiffe://a/ABCxyz0123456789", "a", "/ABCxyz0123456789");

	/* The whole ID may be up to 2048 bytes; the trust domain up to 255. */
	char big[SPIFFE_ID_MAX + 2];
	char td[SPIFFE_TD_MAX + 2];
	memset(td, 'a', SPIFFE_TD_MAX);
	td[SPIFFE_TD_MAX] = '\0';
	snprintf(big, sizeof(big), "spiffe://%s", td);
	good(big, td, "");
	size_t n = strlen(big);
	big[n++] = '/';
	while (n < SPIFFE_ID_MAX)
		big[n++] = 'p';
	big[n] = '\0';
	struct spiffe_id id;
	CHECK_EQ_INT(spiffe_id_parse(big, n, &id, NULL), 0);
	CHECK_EQ_INT(strlen(id.path), SPIFFE_ID_MAX - 9 - SPIFFE_TD_MAX);

	/* len bounds the input: trailing bytes past len are not looked at. */
	const char *s = "spiffe://td/a?junk";
	CHECK_EQ_INT(spiffe_id_parse(s, 13, &id, NULL), 0);
	CHECK_EQ_STR(id.path, "/a");
	CHECK_EQ_INT(spiffe_id_parse(s, 14, &id, NULL), -EINVAL);
	/* why and out are optional. */
	CHECK_EQ_INT(spiffe_id_parse("spiffe://td", 11, NULL, NULL), 0);
	CHECK_EQ_INT(spiffe_id_parse("spiffe:/td", 10, NULL, NULL), -EINVAL);
}

static void test_invalid(void)
{
	bad("", "scheme must be spiffe");
	bad("http://example.org/a", "scheme must be spiffe");
	bad("spiffe:/example.org", "scheme must be spiffe");
	bad("spiffe:example.org", "scheme must be spiffe");
	bad("SPIFFE://example.org/a", "lowercase spiffe");
	bad("Spiffe://example.org/a", "lowercase spiffe");
	bad("spiffe://", "trust domain is empty");
	bad("spiffe:///path", "trust domain is empty");
	bad("spiffe://Example.org/a", "trust domain must be lowercase");
	bad("spiffe://EXAMPLE.ORG", "trust domain must be lowercase");
	bad("spiffe://example.org:8080/a", "port");
	bad("spiffe://user@example.org/a", "userinfo");
	bad("spiffe://user:pw@example.org/a", "port");	/* ':' seen first */
	bad("spiffe://exa%20mple.org", "percent-encoding");
	bad("spiffe://example.org/a%20b", "percent-encoding");
	bad("spiffe://example.org/", "must not end with a slash");
	bad("spiffe://example.org/a/", "must not end with a slash");
	bad("spiffe://example.org//a", "empty path segment");
	bad("spiffe://example.org/a//b", "empty path segment");
	bad("spiffe://example.org/./a", "'.'");
	bad("spiffe://example.org/a/.", "'.'");
	bad("spiffe://example.org/../a", "'..'");
	bad("spiffe://example.org/a/..", "'..'");
	bad("spiffe://example.org/a?q=1", "query");
	bad("spiffe://example.org?q=1", "query");
	bad("spiffe://example.org/a#f", "fragment");
	bad("spiffe://example.org#f", "fragment");
	bad("spiffe://exam ple.org/a", "trust domain has a character");
	bad("spiffe://ex*ample.org/a", "trust domain has a character");
	bad("spiffe://example.org/a b", "path has a character");
	bad("spiffe://example.org/a+b", "path has a character");
	bad("spiffe://example.org/caf\xc3\xa9", "path has a character");
	bad("spiffe://[::1]/a", "trust domain has a character");

	/* Embedded NUL inside len. */
	struct spiffe_id id;
	const char *why = NULL;
	CHECK_EQ_INT(spiffe_id_parse("spiffe://td/a\0b", 15, &id, &why), -EINVAL);
	CHECK(why && strstr(why, "NUL"));

	/* Too long: trust domain of 256, whole ID of 2049. */
	char big[SPIFFE_ID_MAX + 16];
	memcpy(big, "spiffe://", 9);
	memset(big + 9, 'a', SPIFFE_TD_MAX + 1);
	big[9 + SPIFFE_TD_MAX + 1] = '\0';
	bad(big, "longer than 255");
	memset(big + 9, 'a', 10);
	big[19] = '/';
	memset(big + 20, 'b', SPIFFE_ID_MAX + 1 - 20);
	big[SPIFFE_ID_MAX + 1] = '\0';
	bad(big, "longer than 2048");
}

static void test_helpers(void)
{
	CHECK_EQ_INT(spiffe_td_valid("cluster.local"), 1);
	CHECK_EQ_INT(spiffe_td_valid("a_b-c.9"), 1);
	CHECK_EQ_INT(spiffe_td_valid(""), 0);
	CHECK_EQ_INT(spiffe_td_valid("Cluster.local"), 0);
	CHECK_EQ_INT(spiffe_td_valid("td:1"), 0);
	CHECK_EQ_INT(spiffe_td_valid(NULL), 0);

	CHECK_EQ_INT(spiffe_segment_valid("default"), 1);
	CHECK_EQ_INT(spiffe_segment_valid("Foo_bar-1.2"), 1);
	CHECK_EQ_INT(spiffe_segment_valid("..."), 1);
	CHECK_EQ_INT(spiffe_segment_valid(""), 0);
	CHECK_EQ_INT(spiffe_segment_valid("."), 0);
	CHECK_EQ_INT(spiffe_segment_valid(".."), 0);
	CHECK_EQ_INT(spiffe_segment_valid("a/b"), 0);
	CHECK_EQ_INT(spiffe_segment_valid("a%2f"), 0);
	CHECK_EQ_INT(spiffe_segment_valid(NULL), 0);
}

static void test_shapes(void)
{
	struct spiffe_id id;
	char ns[64], sa[64], node[64];

	CHECK_EQ_INT(parse("spiffe://cluster.local/ns/default/sa/bookinfo-ratings", &id, NULL), 0);
	CHECK_EQ_INT(spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa)), 0);
	CHECK_EQ_STR(ns, "default");
	CHECK_EQ_STR(sa, "bookinfo-ratings");
	CHECK_EQ_INT(spiffe_id_node(&id, node, sizeof(node)), -EINVAL);
	CHECK_EQ_INT(spiffe_id_workload(&id, ns, 4, sa, sizeof(sa)), -ENOSPC);
	CHECK_EQ_INT(spiffe_id_workload(&id, ns, sizeof(ns), sa, 16), -ENOSPC);
	CHECK_EQ_INT(spiffe_id_workload(&id, ns, sizeof(ns), sa, 17), 0);

	CHECK_EQ_INT(parse("spiffe://cluster.local/weft/node/node-1", &id, NULL), 0);
	CHECK_EQ_INT(spiffe_id_node(&id, node, sizeof(node)), 0);
	CHECK_EQ_STR(node, "node-1");
	CHECK_EQ_INT(spiffe_id_node(&id, node, 6), -ENOSPC);
	CHECK_EQ_INT(spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa)), -EINVAL);

	/* Near misses of each shape. */
	const char *not_workload[] = {
		"spiffe://td", "spiffe://td/ns/a/sa", "spiffe://td/ns/a/sa/b/c",
		"spiffe://td/ns/a/SA/b", "spiffe://td/nss/a/sa/b", "spiffe://td/x/ns/a/sa/b",
		"spiffe://td/weft/agent",
	};
	for (size_t i = 0; i < sizeof(not_workload) / sizeof(*not_workload); i++) {
		CHECK_EQ_INT(parse(not_workload[i], &id, NULL), 0);
		CHECK_EQ_INT(spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa)), -EINVAL);
		CHECK_EQ_INT(spiffe_id_node(&id, node, sizeof(node)), -EINVAL);
	}
	const char *not_node[] = {
		"spiffe://td/weft/node", "spiffe://td/weft/node/a/b", "spiffe://td/weft/nodes/a",
		"spiffe://td/Weft/node/a",
	};
	for (size_t i = 0; i < sizeof(not_node) / sizeof(*not_node); i++) {
		CHECK_EQ_INT(parse(not_node[i], &id, NULL), 0);
		CHECK_EQ_INT(spiffe_id_node(&id, node, sizeof(node)), -EINVAL);
	}
}

static void test_format(void)
{
	char buf[128];
	struct spiffe_id id;
	char ns[32], sa[32], node[32];

	CHECK_EQ_INT(spiffe_workload_format(buf, sizeof(buf), "cluster.local", "default", "a"),
		     (int)strlen("spiffe://cluster.local/ns/default/sa/a"));
	CHECK_EQ_STR(buf, "spiffe://cluster.local/ns/default/sa/a");
	/* Formatting then parsing gives the parts back. */
	CHECK_EQ_INT(parse(buf, &id, NULL), 0);
	CHECK_EQ_INT(spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa)), 0);
	CHECK_EQ_STR(ns, "default");
	CHECK_EQ_STR(sa, "a");

	CHECK_EQ_INT(spiffe_node_format(buf, sizeof(buf), "td", "n1"),
		     (int)strlen("spiffe://td/weft/node/n1"));
	CHECK_EQ_STR(buf, "spiffe://td/weft/node/n1");
	CHECK_EQ_INT(parse(buf, &id, NULL), 0);
	CHECK_EQ_INT(spiffe_id_node(&id, node, sizeof(node)), 0);
	CHECK_EQ_STR(node, "n1");

	/* Exactly fitting vs one byte short. */
	size_t need = strlen("spiffe://td/weft/node/n1") + 1;
	CHECK_EQ_INT(spiffe_node_format(buf, need, "td", "n1"), (int)need - 1);
	CHECK_EQ_INT(spiffe_node_format(buf, need - 1, "td", "n1"), -ENOSPC);
	CHECK_EQ_INT(spiffe_workload_format(buf, 10, "td", "ns", "sa"), -ENOSPC);

	CHECK_EQ_INT(spiffe_workload_format(buf, sizeof(buf), "TD", "a", "b"), -EINVAL);
	CHECK_EQ_INT(spiffe_workload_format(buf, sizeof(buf), "td", "a/b", "c"), -EINVAL);
	CHECK_EQ_INT(spiffe_workload_format(buf, sizeof(buf), "td", "a", ".."), -EINVAL);
	CHECK_EQ_INT(spiffe_node_format(buf, sizeof(buf), "td", ""), -EINVAL);
}

int main(void)
{
	test_valid();
	test_invalid();
	test_helpers();
	test_shapes();
	test_format();
	return check_done("test_spiffe");
}
