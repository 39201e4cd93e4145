/* SPDX-License-Identifier: Apache-2.0 */
/* cfgmap's list of maps (CFGMAP_TABLES): entries filled by their sub
 * table, required keys, bounds, typos and wrong shapes refused with
 * file:line, everything released. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cfgmap.h>

#include "../check.h"

struct peer {
	char *name;
	char *path;
	uint32_t port;
};

struct conf {
	char *title;
	struct cfgmap_tables peers;
};

static const struct cfgmap_field peer_fields[] = {
	{ .key = "name", .type = CFGMAP_STR, .off = offsetof(struct peer, name) },
	{ .key = "path", .type = CFGMAP_PATH, .off = offsetof(struct peer, path) },
	{ .key = "port", .type = CFGMAP_UINT, .off = offsetof(struct peer, port), .min = 1,
	  .max = 65535 },
};

static const struct cfgmap_field conf_fields[] = {
	{ .key = "title", .type = CFGMAP_STR, .off = offsetof(struct conf, title) },
	{ .key = "peers", .type = CFGMAP_TABLES, .off = offsetof(struct conf, peers), .max = 2,
	  .sub = peer_fields, .n_sub = 3, .sub_required = 1u << 0,
	  .elem_size = sizeof(struct peer) },
};

static int parse(const char *doc, struct conf *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	return cfgmap_parse(doc, strlen(doc), "c.yaml", "/base", conf_fields, 2, c, err, errlen);
}

static void bad(const char *doc, const char *want)
{
	char err[256] = "";
	struct conf c;

	CHECK(parse(doc, &c, err, sizeof(err)) != 0);
	if (!strstr(err, want))
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
	CHECK(strstr(err, want) != NULL);
	cfgmap_release(conf_fields, 2, &c);
}

int main(void)
{
	char err[256] = "";
	struct conf c;
	struct peer *p;

	CHECK_EQ_INT(parse("title: t\npeers:\n  - {name: a, path: x/y, port: 80}\n"
			   "  - name: b\n", &c, err, sizeof(err)), 0);
	CHECK_EQ_INT(c.peers.n, 2);
	p = c.peers.v;
	if (c.peers.n == 2) {
		CHECK_EQ_STR(p[0].name, "a");
		CHECK_EQ_STR(p[0].path, "/base/x/y");
		CHECK_EQ_INT(p[0].port, 80);
		CHECK_EQ_STR(p[1].name, "b");
		CHECK(p[1].path == NULL);
		CHECK_EQ_INT(p[1].port, 0);
	}
	cfgmap_release(conf_fields, 2, &c);
	CHECK(c.peers.v == NULL && c.peers.n == 0 && c.title == NULL);
	CHECK_EQ_INT(parse("peers: []\n", &c, err, sizeof(err)), 0);
	CHECK_EQ_INT(c.peers.n, 0);
	cfgmap_release(conf_fields, 2, &c);

	bad("peers:\n  - {port: 80}\n", "c.yaml:2");
	bad("peers:\n  - {name: a, prot: 80}\n", "prot");
	bad("peers:\n  - {name: a, port: 0}\n", "expected an integer in 1..65535");
	bad("peers:\n  - {name: a}\n  - {name: b}\n  - {name: c}\n", "at most 2");
	bad("peers: {name: a}\n", "expected a list");
	bad("peers:\n  - a\n", "entries must be maps");
	return check_done("test_cfgmap");
}
