/* SPDX-License-Identifier: Apache-2.0 */
/* The node's trust boundary: destinations that are weftd itself, the
 * forwarded header's grammar, and which source claims are believed. */
#include <errno.h>
#include <netinet/in.h>

#include "../check.h"
#include <weft/registry.h>
#include <weft/regproto.h>
#include <weft/sockaddr.h>

#include "../../../daemon/boundary.h"
#include <weft/regcache.h>
#include "../../weftd_fixture.h"

static struct weftd d;

static int is_self(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char why[BOUNDARY_WHY_MAX] = "";
	int r;

	if (sockaddr_parse(addr, &ss, &len)) {
		fprintf(stderr, "bad test address %s\n", addr);
		exit(1);
	}
	r = boundary_is_self(&d, (struct sockaddr *)&ss, why, sizeof(why));
	if (r && !strstr(why, "would loop into weftd"))
		fprintf(stderr, "why for %s: %s\n", addr, why);
	CHECK(!r || strstr(why, "would loop into weftd"));
	return r;
}

static void test_self(void)
{
	static const char *const self[] = {
		"127.0.0.1:15001", "127.0.0.1:15006", "127.1.2.3:15008", "0.0.0.0:15006",
		"[::1]:15001", "[::ffff:127.0.0.1]:15006", "[::]:15021",
		"10.10.0.2:15008", "10.10.0.2:15000", "10.10.0.2:15020", "10.10.0.1:15008",
		"[fd00:10::3]:15006", "10.20.1.2:15006", "10.20.2.2:15001", "[fd00:20::3]:15008",
		"169.254.1.1:15006", "224.0.0.1:15001",
	};
	static const char *const other[] = {
		"127.0.0.1:8080", "10.20.1.2:8080", "10.10.0.2:22", "10.20.2.2:15007",
		"8.8.8.8:15006", "10.99.0.1:15008", "[fd00:99::1]:15001", "10.20.2.2:0",
	};

	for (size_t i = 0; i < sizeof(self) / sizeof(self[0]); i++) {
		if (!is_self(self[i]))
			fprintf(stderr, "not refused: %s\n", self[i]);
		CHECK(is_self(self[i]));
	}
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		if (is_self(other[i]))
			fprintf(stderr, "refused: %s\n", other[i]);
		CHECK(!is_self(other[i]));
	}
	/* A port moved by configuration moves with it. */
	d.cfg.inbound_plain_port = 16006;
	CHECK(is_self("10.20.1.2:16006"));
	CHECK(!is_self("10.20.1.2:15006"));
	d.cfg.inbound_plain_port = 15006;
}

static void test_forwarded_parse(void)
{
	static const struct { const char *in, *out; } good[] = {
		{ "for=\"10.20.1.2:41000\"", "10.20.1.2:41000" },
		{ "for=10.20.1.2", "10.20.1.2:0" },
		{ "For=\"10.20.1.2\"", "10.20.1.2:0" },
		{ "for=\"[fd00:20::3]:443\"", "[fd00:20::3]:443" },
		{ "for=\"[fd00:20::3]\"", "[fd00:20::3]:0" },
	};
	static const char *const bad[] = {
		"", "for=", "for=\"\"", "for=\"10.20.1.2", "for=10.20.1.2:80", "for=[::1]",
		"for=\"10.20.1.2:\"", "for=\"10.20.1.2:65536\"", "for=\"10.20.1.2:+80\"",
		"for=\"10.20.1.2: 80\"", "for=\"10.20.1.2:80\";by=x", "for=\"10.20.1.2:80\", for=1.2.3.4",
		"for=unknown", "for=\"_hidden\"", "for=\"fd00::1\"", "for=\"[10.20.1.2]:80\"",
		"for=\"[fd00::1\"", "for=\"[fd00::1]x\"", "by=10.20.1.2", " for=10.20.1.2",
		"for=\"10.20.1.2:8080\" ", "for=\"1.2.3.4:123456\"", "for=\"10.20.1.2:80\"x",
	};
	struct sockaddr_storage ss;
	char out[80];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK_EQ_INT(boundary_forwarded_parse(good[i].in, &ss), 0);
		CHECK_EQ_STR(sockaddr_str(&ss, out, sizeof(out)), good[i].out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = boundary_forwarded_parse(bad[i], &ss);

		if (!rc)
			fprintf(stderr, "accepted forwarded \"%s\"\n", bad[i]);
		CHECK(rc < 0);
	}
}

/* The claim fwd from client id over a tunnel from peer, to destination
 * pod 10.20.2.2: 0 (with *src) or -EACCES; why must name the claim. */
static int claim(const char *fwd, const char *id, const char *peer, struct sockaddr_storage *src)
{
	struct sockaddr_storage p, dst;
	socklen_t len;
	char why[BOUNDARY_WHY_MAX] = "";
	int rc;

	sockaddr_parse(peer, &p, &len);
	sockaddr_from_ip("10.20.2.2", 0, &dst, &len);
	rc = boundary_source_claim(&d, fwd, id, (struct sockaddr *)&p, &dst, 1, src, why,
				   sizeof(why));
	if (rc) {
		CHECK(strstr(why, "refused") != NULL);
		CHECK(strstr(why, id) != NULL);
		printf("  refused: %s\n", why);
	}
	return rc;
}

static void test_claims(void)
{
	const char *a = "spiffe://cluster.local/ns/default/sa/sa-a";
	const char *c = "spiffe://cluster.local/ns/other/sa/sa-c";
	struct sockaddr_storage src;
	char out[80];

	/* No header: unknown source. */
	CHECK_EQ_INT(claim(NULL, a, "10.10.0.1:40000", &src), 0);
	CHECK_EQ_INT(src.ss_family, AF_UNSPEC);
	/* The registry backs it: a's IP, a's identity, from a's node. */
	CHECK_EQ_INT(claim("for=\"10.20.1.2:41000\"", a, "10.10.0.1:40000", &src), 0);
	CHECK_EQ_STR(sockaddr_str(&src, out, sizeof(out)), "10.20.1.2:41000");
	CHECK_EQ_INT(claim("for=\"[fd00:20::3]:41000\"", c, "[fd00:10::3]:40000", &src), 0);
	/* Each of the forgeries. */
	CHECK(claim("for=\"10.20.1.2:41000\"", c, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"10.20.1.2:41000\"", a, "10.10.0.3:40000", &src) == -EACCES);
	CHECK(claim("for=\"127.0.0.1:1\"", a, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"0.0.0.0:1\"", a, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"169.254.169.254:1\"", a, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"224.0.0.5:1\"", a, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"10.20.2.2:1\"", a, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"10.10.0.2:1\"", a, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"10.99.9.9:1\"", a, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"10.20.1.2:1\" x", a, "10.10.0.1:40000", &src) == -EACCES);
	CHECK(claim("for=\"10.20.1.2\\\"\"", a, "10.10.0.1:40000", &src) == -EACCES);
	/* A refusal leaves no source behind. */
	CHECK_EQ_INT(src.ss_family, AF_UNSPEC);
	/* Another trust domain cannot claim a local workload either. */
	CHECK(claim("for=\"10.20.1.2:41000\"", "spiffe://other.td/ns/default/sa/sa-a",
		    "10.10.0.1:40000", &src) == -EACCES);
}

static void test_sockaddr_helpers(void)
{
	struct sockaddr_storage a, b;
	socklen_t len;

	sockaddr_parse("10.1.2.3:1", &a, &len);
	sockaddr_parse("[::ffff:10.1.2.3]:2", &b, &len);
	CHECK(sockaddr_same_ip((struct sockaddr *)&a, (struct sockaddr *)&b));
	sockaddr_parse("10.1.2.4:1", &b, &len);
	CHECK(!sockaddr_same_ip((struct sockaddr *)&a, (struct sockaddr *)&b));
	CHECK(sockaddr_special((struct sockaddr *)&a) == NULL);
	sockaddr_parse("[fe80::1]:1", &b, &len);
	CHECK_EQ_STR(sockaddr_special((struct sockaddr *)&b), "link-local");
	sockaddr_parse("255.255.255.255:1", &b, &len);
	CHECK_EQ_STR(sockaddr_special((struct sockaddr *)&b), "broadcast");
	sockaddr_parse("[ff02::1]:1", &b, &len);
	CHECK_EQ_STR(sockaddr_special((struct sockaddr *)&b), "multicast");
}

int main(void)
{
	if (weftd_fixture_init(&d)) {
		fprintf(stderr, "fixture failed\n");
		return 1;
	}
	test_self();
	test_forwarded_parse();
	test_claims();
	test_sockaddr_helpers();
	weftd_fixture_deinit(&d);
	return check_done("test_boundary");
}
