/* SPDX-License-Identifier: Apache-2.0 */
/* Bootstrap token file parsing and lookup. */
#include "../check.h"
#include "../../../agent/tokens.h"

static void bad(const char *doc, const char *want)
{
	char err[256];
	struct tokens *t = tokens_parse(doc, strlen(doc), "tok", err, sizeof(err));

	CHECK(t == NULL);
	tokens_free(t);
	if (!t && !strstr(err, want))
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
	CHECK(t || strstr(err, want));
}

int main(void)
{
	static const char doc[] =
		"# node token\n"
		"\n"
		"node1 aaaaaaaaaaaaaaaaaaaaaaaa\n"
		"  node2\tbbbbbbbbbbbbbbbbbbbbbbbb  \r\n"
		"node3 cccccccccccccccccccccccc";
	char err[256];
	struct tokens *t = tokens_parse(doc, sizeof(doc) - 1, "tok", err, sizeof(err));

	CHECK(t != NULL);
	if (!t)
		return check_done("tokens");
	CHECK_EQ_INT(tokens_count(t), 3);
	CHECK_EQ_STR(tokens_lookup(t, "aaaaaaaaaaaaaaaaaaaaaaaa", 24), "node1");
	CHECK_EQ_STR(tokens_lookup(t, "bbbbbbbbbbbbbbbbbbbbbbbb", 24), "node2");
	CHECK_EQ_STR(tokens_lookup(t, "cccccccccccccccccccccccc", 24), "node3");
	CHECK(tokens_lookup(t, "aaaaaaaaaaaaaaaaaaaaaaab", 24) == NULL);
	CHECK(tokens_lookup(t, "aaaaaaaaaaaaaaaaaaaaaaa", 23) == NULL);
	CHECK(tokens_lookup(t, "", 0) == NULL);
	tokens_free(t);
	tokens_free(NULL);

	bad("node1\n", "tok:1: expected");
	bad("node1 short\n", "tok:1: token for node1 must be");
	bad("# c\nnode1 aaaaaaaaaaaaaaaaaaaaaaaa\nnode1 bbbbbbbbbbbbbbbbbbbbbbbb\n",
	    "tok:3: second token for node node1");
	bad("node/1 aaaaaaaaaaaaaaaaaaaaaaaa\n", "not a valid node name");
	bad("node1 aaaaaaaaaaaaaaaaaaaaaaaa extra\n", "tok:1: expected");
	return check_done("tokens");
}
