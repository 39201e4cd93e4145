/* SPDX-License-Identifier: Apache-2.0 */
/* CSR policy against CSRs made by the openssl CLI: a good one is accepted
 * with its SPIFFE ID and key; each kind of bad one (DNS/IP/email SAN, CN,
 * two URIs, no URI, not a SPIFFE ID, tampered signature or body, RSA or
 * P-384 key, not a CSR) is rejected with the expected reason. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/x509.h>

#include "../../../agent/csr.h"
#include "../check.h"
#include "../../pki.h"

static char tmpdir[64];

/* Make name.pem: key file, subject, extra openssl req arguments. */
static int mkcsr(const char *name, const char *key, const char *subj, const char *args)
{
	return pki_sh(NULL, 0, "cd %s && openssl req -new -key %s -subj '%s' %s -out %s.pem",
		      tmpdir, key, subj, args, name);
}

/* Parse the file tmpdir/name; expect rejection with a reason containing want. */
static void expect_reject(const char *name, const char *want)
{
	struct csr c;
	char why[256] = "";
	size_t len = 0;
	char *pem = pki_file_read(tmpdir, name, &len);

	CHECK(pem != NULL);
	if (!pem)
		return;
	CHECK_EQ_INT(csr_parse(pem, len, &c, why, sizeof(why)), -EINVAL);
	if (!strstr(why, want)) {
		fprintf(stderr, "  %s: reason \"%s\", expected \"%s\"\n", name, why, want);
		CHECK(0);
	}
	CHECK(c.pubkey_der == NULL);	/* nothing left to free on failure */
	csr_deinit(&c);
	free(pem);
}

static void expect_reject_buf(const char *pem, size_t len, const char *want)
{
	struct csr c;
	char why[256] = "";

	CHECK_EQ_INT(csr_parse(pem, len, &c, why, sizeof(why)), -EINVAL);
	if (!strstr(why, want)) {
		fprintf(stderr, "  reason \"%s\", expected \"%s\"\n", why, want);
		CHECK(0);
	}
	csr_deinit(&c);
}

static void test_good(void)
{
	struct csr c;
	char why[256] = "";
	size_t len = 0, publen = 0;
	char *pem, *pub;

	CHECK_EQ_INT(mkcsr("good", "p256.key", "/",
			   "-addext subjectAltName=URI:spiffe://cluster.local/ns/default/sa/a"), 0);
	CHECK_EQ_INT(pki_sh(NULL, 0, "cd %s && openssl pkey -in p256.key -pubout -outform DER "
			    "-out p256.pub", tmpdir), 0);
	pem = pki_file_read(tmpdir, "good.pem", &len);
	pub = pki_file_read(tmpdir, "p256.pub", &publen);
	CHECK(pem && pub);
	if (!pem || !pub)
		return;
	CHECK_EQ_INT(csr_parse(pem, len, &c, why, sizeof(why)), 0);
	CHECK_EQ_STR(why, "");
	CHECK_EQ_STR(c.uri, "spiffe://cluster.local/ns/default/sa/a");
	CHECK_EQ_STR(c.id.td, "cluster.local");
	CHECK_EQ_STR(c.id.path, "/ns/default/sa/a");
	CHECK_EQ_INT(c.key_is_p256, 1);
	CHECK(c.pubkey_len == publen && memcmp(c.pubkey_der, pub, publen) == 0);
	csr_deinit(&c);
	CHECK(c.pubkey_der == NULL);
	csr_deinit(&c);		/* twice is harmless */
	csr_deinit(NULL);

	/* Tamper with it: a flipped byte in the signature value, and one in
	 * the signed body (the URI), both break the self-signature. */
	uint8_t der[4096];
	int n = wc_CertPemToDer((const byte *)pem, (int)len, der, sizeof(der), CERTREQ_TYPE);
	CHECK(n > 0);
	if (n > 0) {
		char *bad = NULL;
		size_t badlen = 0;

		der[n - 3] ^= 0x01;
		CHECK_EQ_INT(x509_der_to_pem(der, (size_t)n, "CERTIFICATE REQUEST", &bad, &badlen), 0);
		expect_reject_buf(bad, badlen, "bad signature");
		free(bad);
		der[n - 3] ^= 0x01;

		uint8_t *p = memmem(der, (size_t)n, "sa/a", 4);
		CHECK(p != NULL);
		if (p) {
			p[3] = 'b';
			CHECK_EQ_INT(x509_der_to_pem(der, (size_t)n, "CERTIFICATE REQUEST",
						     &bad, &badlen), 0);
			expect_reject_buf(bad, badlen, "bad signature");
			free(bad);
			p[3] = 'a';
		}
		/* Untampered re-encoding is still accepted (the test is fair). */
		CHECK_EQ_INT(x509_der_to_pem(der, (size_t)n, "CERTIFICATE REQUEST", &bad, &badlen), 0);
		CHECK_EQ_INT(csr_parse(bad, badlen, &c, why, sizeof(why)), 0);
		csr_deinit(&c);
		free(bad);
	}
	free(pem);
	free(pub);

	/* Istio puts O=<cluster> in the subject: allowed. */
	CHECK_EQ_INT(mkcsr("org", "p256.key", "/O=cluster.local",
			   "-addext subjectAltName=URI:spiffe://td/weft/node/n1"), 0);
	pem = pki_file_read(tmpdir, "org.pem", &len);
	CHECK_EQ_INT(csr_parse(pem, len, &c, why, sizeof(why)), 0);
	CHECK_EQ_STR(c.uri, "spiffe://td/weft/node/n1");
	csr_deinit(&c);
	free(pem);

	/* Our own CSR maker's output passes our own policy. */
	struct x509_key *k = x509_key_generate();
	char *mine = NULL;
	uint8_t *kpub = NULL;
	size_t kpublen = 0;
	CHECK_EQ_INT(x509_csr_make(k, "spiffe://cluster.local/ns/x/sa/y", &mine, &len), 0);
	CHECK_EQ_INT(csr_parse(mine, len, &c, why, sizeof(why)), 0);
	CHECK_EQ_STR(c.uri, "spiffe://cluster.local/ns/x/sa/y");
	CHECK_EQ_INT(x509_key_public_der(k, &kpub, &kpublen), 0);
	CHECK(c.pubkey_len == kpublen && memcmp(c.pubkey_der, kpub, kpublen) == 0);
	csr_deinit(&c);
	free(kpub);
	free(mine);
	x509_key_free(k);
}

#define URI_A "URI:spiffe://cluster.local/ns/default/sa/a"

static void test_bad(void)
{
	/* Each CSR: file name, key file, subject, subjectAltName (NULL: none),
	 * the reason it must be rejected with. */
	static const struct {
		const char *name, *key, *subj, *san, *want;
	} cases[] = {
		{ "dns", "p256.key", "/", URI_A ",DNS:evil.example", "has a DNS SAN" },
		{ "ip", "p256.key", "/", URI_A ",IP:10.0.0.1", "has an IP SAN" },
		{ "email", "p256.key", "/", URI_A ",email:a@b.example", "has an email SAN" },
		{ "cn", "p256.key", "/O=x/CN=workload", URI_A, "has a common name" },
		{ "two", "p256.key", "/", URI_A ",URI:spiffe://cluster.local/ns/b/sa/b",
		  "2 URI SANs" },
		{ "none", "p256.key", "/O=x", NULL, "no URI SAN" },
		{ "emptyseg", "p256.key", "/", "URI:spiffe://cluster.local/ns//sa/a",
		  "URI SAN is not a SPIFFE ID: empty path segment" },
		{ "upper", "p256.key", "/", "URI:spiffe://Cluster.local/ns/a/sa/a",
		  "URI SAN is not a SPIFFE ID: trust domain must be lowercase" },
		{ "https", "p256.key", "/", "URI:https://cluster.local/ns/a/sa/a",
		  "URI SAN is not a SPIFFE ID: scheme must be spiffe" },
		{ "rsa", "rsa.key", "/", URI_A, "key is RSA" },
		{ "p384", "p384.key", "/", URI_A, "not on curve P-256" },
	};
	char args[512], file[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		args[0] = '\0';
		if (cases[i].san)
			snprintf(args, sizeof(args), "-addext 'subjectAltName=%s'", cases[i].san);
		CHECK_EQ_INT(mkcsr(cases[i].name, cases[i].key, cases[i].subj, args), 0);
		snprintf(file, sizeof(file), "%s.pem", cases[i].name);
		expect_reject(file, cases[i].want);
	}

	/* Not CSRs at all. */
	CHECK_EQ_INT(pki_sh(NULL, 0, "cd %s && openssl req -x509 -new -key p256.key -subj /CN=x "
			    "-days 1 -out cert.pem", tmpdir), 0);
	expect_reject("cert.pem", "not a PEM CSR");
	expect_reject("p256.key", "not a PEM CSR");
	expect_reject_buf("", 0, "not a PEM CSR");
	expect_reject_buf("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
			  74, "");
	char *huge = calloc(1, 70000);
	memset(huge, 'A', 69999);
	expect_reject_buf(huge, 69999, "larger than");
	free(huge);

	/* Truncated good CSR. */
	size_t len = 0;
	char *pem = pki_file_read(tmpdir, "good.pem", &len);
	if (pem) {
		expect_reject_buf(pem, len / 2, "not a PEM CSR");
		free(pem);
	}
}

int main(void)
{
	int rc = pki_test_begin(tmpdir, sizeof(tmpdir), "test-csr");

	if (rc != 0)
		return rc;
	if (pki_sh(NULL, 0, "cd %s && openssl ecparam -name prime256v1 -genkey -noout -out p256.key && "
		   "openssl ecparam -name secp384r1 -genkey -noout -out p384.key && "
		   "openssl genrsa -out rsa.key 2048", tmpdir) != 0) {
		fprintf(stderr, "openssl key generation failed\n");
		return 1;
	}
	test_good();
	test_bad();
	pki_dir_remove(tmpdir);
	return check_done("test_csr");
}
