/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's decisions (daemon/gateway.c): which trust domains may use
 * it, and that an outer CONNECT leads only to the HBONE port of a node of
 * its own network — by node address or by service hostname — and never to
 * itself, another network, a special address or any other port. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <weft/registry.h>
#include <weft/regproto.h>
#include <weft/sockaddr.h>

#include "../check.h"
#include <weft/regcache.h>
#include "../../gateway_fixture.h"

static void test_peers(void)
{
	static const char *const only_west[] = { "west.local", NULL };
	struct gateway_self g = gateway_fixture_self;
	char why[GATEWAY_WHY_MAX];

	CHECK_EQ_INT(gateway_peer_allowed(&g, "west.local", why, sizeof(why)), 0);
	CHECK_EQ_INT(gateway_peer_allowed(&g, "east.local", why, sizeof(why)), -EACCES);
	CHECK(strstr(why, "the gateway's own") != NULL);
	g.allowed = only_west;
	CHECK_EQ_INT(gateway_peer_allowed(&g, "west.local", why, sizeof(why)), 0);
	CHECK_EQ_INT(gateway_peer_allowed(&g, "south.local", why, sizeof(why)), -EACCES);
	CHECK(strstr(why, "gateway_trust_domains") != NULL);
	fprintf(stderr, "  south.local: %s\n", why);
}

static void test_routes(struct regcache *rc)
{
	static const struct {
		const char *authority, *to;	/* to: NULL refused */
		int rc;
		const char *why;
	} cases[] = {
		{ "172.30.0.1:15008", "172.30.0.1:15008", 0, NULL },
		{ "172.30.0.2:15009", "172.30.0.2:15009", 0, NULL },
		{ "172.30.0.2:15008", NULL, -ENOENT, "takes HBONE on port 15009 only" },
		{ "172.30.0.1:22", NULL, -ENOENT, "takes HBONE on port 15008 only" },
		{ "172.30.0.249:15008", NULL, -ENOENT, "is a gateway" },
		{ "127.0.0.1:15008", NULL, -ENOENT, "loopback" },
		{ "172.31.0.1:15008", NULL, -ENOENT, "not a node of network east" },
		{ "10.244.1.2:8080", NULL, -ENOENT, "not a node of network east" },
		{ "x.lonely.svc.cluster.local:80", NULL, -EHOSTUNREACH, "no endpoint in network" },
		{ "echo.default.svc:81", NULL, -ENOENT, "no service default/echo with port 81" },
		{ "nope.default.svc:80", NULL, -ENOENT, "no service default/nope" },
		{ "echo.default:80", NULL, -EINVAL, "neither" },
		{ "echo.default.svc.cluster.local", NULL, -EINVAL, "neither" },
		{ "echo.default.svc.cluster.local:99999", NULL, -EINVAL, "neither" },
		{ "Echo.default.svc:80", NULL, -EINVAL, "neither" },
		{ "echo..svc:80", NULL, -EINVAL, "neither" },
		{ "a.b.default.svc:80", NULL, -EINVAL, "neither" },
		{ ":80", NULL, -EINVAL, "neither" },
		{ "", NULL, -EINVAL, "empty" },
	};
	struct gateway_self g = gateway_fixture_self;
	char why[GATEWAY_WHY_MAX], got[80];
	struct sockaddr_storage to;
	socklen_t len;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = gateway_route(&g, rc, cases[i].authority, &to, &len, why, sizeof(why));

		CHECK_EQ_INT(r, cases[i].rc);
		if (!r)
			CHECK_EQ_STR(sockaddr_str(&to, got, sizeof(got)), cases[i].to);
		else if (!strstr(why, cases[i].why))
			fprintf(stderr, "%s: \"%s\" lacks \"%s\"\n", cases[i].authority, why,
				cases[i].why);
		if (r)
			CHECK(strstr(why, cases[i].why) != NULL);
	}
	/* Istio's form: the service's endpoints of this network, in turn; the
	 * imported endpoint on wnode (network west) never. */
	{
		int n1 = 0, n2 = 0;

		for (int i = 0; i < 30; i++) {
			CHECK_EQ_INT(gateway_route(&g, rc, "echo.default.svc.cluster.local:80", &to,
						   &len, why, sizeof(why)), 0);
			sockaddr_str(&to, got, sizeof(got));
			n1 += !strcmp(got, "172.30.0.1:15008");
			n2 += !strcmp(got, "172.30.0.2:15009");
		}
		CHECK_EQ_INT(n1 + n2, 30);
		CHECK(n1 >= 10 && n2 >= 10);
		fprintf(stderr, "  echo.default.svc: node1 %d, node2 %d of 30\n", n1, n2);
	}
	/* A gateway not in its registry routes nothing. */
	g.node = "gw2";
	CHECK_EQ_INT(gateway_route(&g, rc, "172.30.0.1:15008", &to, &len, why, sizeof(why)),
		     -EHOSTUNREACH);
}

int main(void)
{
	struct regcache *rc = gateway_fixture_reg();

	CHECK(rc != NULL);
	test_peers();
	if (rc)
		test_routes(rc);
	regcache_free(rc);
	return check_done("test_gateway");
}
