/* SPDX-License-Identifier: Apache-2.0 */
/* federation_dir: one <trust-domain>.pem of CA roots per federated domain,
 * sorted; every malformed file refuses the whole directory, in words. The
 * certificates come from the openssl CLI (tests/pki.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include <weft/registry.h>

#include "../check.h"
#include "../../pki.h"
#include "../../../agent/federation.h"

static char dir[64];

static int put(const char *name, const char *from)
{
	char *p;
	size_t n;
	int rc;

	p = pki_file_read(dir, from, &n);
	if (!p)
		return -1;
	rc = pki_file_write(dir, name, p, n);
	free(p);
	return rc;
}

static void expect_fail(const char *sub, const char *want)
{
	struct reg_bundle *b;
	char path[128], err[512];
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	CHECK(federation_load(path, "west.local", &b, &n, err, sizeof(err)) < 0);
	if (!strstr(err, want))
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
	CHECK(strstr(err, want) != NULL);
}

int main(void)
{
	struct reg_bundle *b;
	char err[512], path[128];
	size_t n;
	int rc = pki_test_begin(dir, sizeof(dir), "fed-test");

	if (rc)
		return rc;
	if (pki_ca_make(dir, "east", NULL, NULL, 2) || pki_ca_make(dir, "south", NULL, NULL, 2) ||
	    pki_leaf_make(dir, "leaf", "east", "URI:spiffe://east.local/ns/a/sa/b", NULL, 1) ||
	    pki_sh(NULL, 0, "cd %s && mkdir good good2 bad1 bad2 bad3 bad4 bad5 bad6 bad7", dir)) {
		pki_dir_remove(dir);
		return 1;
	}
	CHECK(put("good/east.local.pem", "east.pem") == 0);
	CHECK(put("good/south.example.pem", "south.pem") == 0);
	CHECK(put("good/README", "east.key") == 0);		/* not .pem: ignored */
	snprintf(path, sizeof(path), "%s/good", dir);
	CHECK_EQ_INT(federation_load(path, "west.local", &b, &n, err, sizeof(err)), 0);
	CHECK_EQ_INT(n, 2);
	if (n == 2) {
		CHECK_EQ_STR(b[0].trust_domain, "east.local");
		CHECK_EQ_STR(b[1].trust_domain, "south.example");
		CHECK(strstr(b[0].pem, "BEGIN CERTIFICATE") != NULL);
		federation_free(b, n);
	}
	CHECK_EQ_INT(federation_load(NULL, "west.local", &b, &n, err, sizeof(err)), 0);
	CHECK_EQ_INT(n, 0);

	CHECK(put("bad1/East.pem", "east.pem") == 0);
	expect_fail("bad1", "East.pem: the name is not <trust-domain>.pem");
	CHECK(put("bad2/west.local.pem", "east.pem") == 0);
	expect_fail("bad2", "west.local.pem is this agent's own trust domain");
	CHECK(put("bad3/east.local.pem", "leaf.pem") == 0);
	expect_fail("bad3", "certificate 1 is not a CA");
	CHECK(pki_file_write(dir, "bad4/east.local.pem", "hello\n", 6) == 0);
	expect_fail("bad4", "no CERTIFICATE in it");
	CHECK(pki_sh(NULL, 0, "head -c 70000 /dev/zero > %s/bad5/east.local.pem", dir) == 0);
	expect_fail("bad5", "over 64 KiB");
	expect_fail("nothere", "No such file or directory");
	/* A key in a bundle file is refused, never forwarded to the nodes. */
	CHECK(pki_sh(NULL, 0, "cd %s && cat east.pem east.key > bad6/east.local.pem", dir) == 0);
	expect_fail("bad6", "holds a private key");
	CHECK(pki_sh(NULL, 0, "cd %s && for i in $(seq 33); do cat east.pem; done > "
		     "bad7/east.local.pem", dir) == 0);
	expect_fail("bad7", "more than 32 certificates");
	/* Only the certificates pass, encoded afresh: no comment, no NUL, no
	 * trailing text reaches the registry stream. */
	CHECK(pki_sh(NULL, 0, "cd %s && { echo '# east, rotated 2026'; cat east.pem; "
		     "printf 'x\\000secret-tail'; } > good2/east.local.pem", dir) == 0);
	snprintf(path, sizeof(path), "%s/good2", dir);
	CHECK_EQ_INT(federation_load(path, "west.local", &b, &n, err, sizeof(err)), 0);
	CHECK_EQ_INT(n, 1);
	if (n == 1) {
		CHECK(strncmp(b[0].pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
		CHECK(strstr(b[0].pem, "rotated") == NULL);
		CHECK(strstr(b[0].pem, "secret") == NULL);
		CHECK_EQ_STR(b[0].pem + strlen(b[0].pem) - 26, "-----END CERTIFICATE-----\n");
		federation_free(b, n);
	}

	/* SPIFFE bundle documents. */
	{
		char b64[4096], doc[8192], *pem = NULL, why[256];

		CHECK(pki_sh(b64, sizeof(b64), "openssl x509 -in %s/east.pem -outform DER | "
			     "base64 -w0", dir) == 0);
		snprintf(doc, sizeof(doc), "{\"spiffe_sequence\": 3, \"keys\": [{\"use\": "
			 "\"jwt-svid\", \"kid\": \"k\"}, {\"use\": \"x509-svid\", \"kty\": \"EC\", "
			 "\"x5c\": [\"%s\"]}]}\n", b64);
		CHECK_EQ_INT(federation_spiffe_to_pem(doc, strlen(doc), &pem, why, sizeof(why)), 0);
		CHECK(pem && strstr(pem, "BEGIN CERTIFICATE"));
		free(pem);
		CHECK(pki_sh(NULL, 0, "mkdir %s/json %s/both", dir, dir) == 0);
		CHECK(pki_file_write(dir, "json/east.local.json", doc, strlen(doc)) == 0);
		snprintf(path, sizeof(path), "%s/json", dir);
		CHECK_EQ_INT(federation_load(path, "west.local", &b, &n, err, sizeof(err)), 0);
		CHECK_EQ_INT(n, 1);
		if (n == 1) {
			char *want = pki_file_read(dir, "east.pem", &n);

			/* The same root as the PEM file, whatever the line breaks. */
			CHECK(want && strstr(b[0].pem, "BEGIN CERTIFICATE") != NULL);
			free(want);
			federation_free(b, 1);
		}
		CHECK(pki_file_write(dir, "both/east.local.json", doc, strlen(doc)) == 0);
		CHECK(put("both/east.local.pem", "east.pem") == 0);
		expect_fail("both", "trust domain east.local has two bundles");
		static const struct {
			const char *doc, *want;
		} bad[] = {
			{ "[]", "no \"keys\" array" },
			{ "{\"keys\": [{\"use\": \"jwt-svid\"}]}", "no key of use x509-svid" },
			{ "{\"keys\": [{\"use\": \"x509-svid\", \"x5c\": []}]}", "exactly one x5c" },
			{ "{\"keys\": [{\"use\": \"x509-svid\", \"x5c\": [\"@@@\"]}]}", "not base64" },
			{ "{\"keys\": [{\"use\": \"x509-svid\", \"x5c\": [\"AAAA\"]}]}", "does not parse" },
			{ "{\"keys\": [{}]}", "has no \"use\"" },
			{ "{\"keys\": [[[[[[[[[[1]]]]]]]]]]}", "nested deeper" },
			{ "{\"keys\": []} x", "not JSON" },
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			CHECK(federation_spiffe_to_pem(bad[i].doc, strlen(bad[i].doc), &pem, why,
						       sizeof(why)) < 0);
			CHECK(pem == NULL);
			if (!strstr(why, bad[i].want))
				fprintf(stderr, "\"%s\": \"%s\" lacks \"%s\"\n", bad[i].doc, why,
					bad[i].want);
			CHECK(strstr(why, bad[i].want) != NULL);
		}
	}
	pki_dir_remove(dir);
	return check_done("federation");
}
