/* SPDX-License-Identifier: Apache-2.0 */
/* x509 helpers, checked against the openssl CLI as an independent
 * implementation: key generation and PEM round trips (SEC1 and PKCS#8), a
 * CSR that `openssl req -verify` accepts with exactly one URI SAN, PEM
 * bundles and the certificate summary. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft/x509.h>

#include "../check.h"
#include "../../pki.h"

static char tmpdir[64];

static void test_keys(void)
{
	struct x509_key *k = x509_key_generate(), *k2, *k3;
	uint8_t *pub = NULL, *pub2 = NULL, *pub3 = NULL;
	size_t publen = 0, publen2 = 0, publen3 = 0, pemlen = 0, len;
	char *pem = NULL, path[256], out[8192], *p8;

	CHECK(k != NULL);
	if (!k)
		return;
	CHECK(x509_key_ecc(k) != NULL);
	CHECK(x509_key_ecc(NULL) == NULL);
	CHECK_EQ_INT(x509_key_public_der(k, &pub, &publen), 0);
	CHECK_EQ_INT(publen, 91);	/* SPKI of an uncompressed P-256 point */

	/* Two keys differ. */
	k2 = x509_key_generate();
	CHECK_EQ_INT(x509_key_public_der(k2, &pub2, &publen2), 0);
	CHECK(publen2 == publen && memcmp(pub, pub2, publen) != 0);
	x509_key_free(k2);
	free(pub2);
	pub2 = NULL;

	/* SEC1 PEM round trip. */
	CHECK_EQ_INT(x509_key_to_pem(k, &pem, &pemlen), 0);
	CHECK(pem && strstr(pem, "-----BEGIN EC PRIVATE KEY-----") == pem);
	CHECK_EQ_INT(strlen(pem), pemlen);
	k2 = x509_key_from_pem(pem, pemlen);
	CHECK(k2 != NULL);
	CHECK_EQ_INT(x509_key_public_der(k2, &pub2, &publen2), 0);
	CHECK(publen2 == publen && memcmp(pub, pub2, publen) == 0);

	/* openssl reads our PEM and derives the same public key. */
	snprintf(path, sizeof(path), "%s/k.pem", tmpdir);
	CHECK_EQ_INT(pki_file_write(NULL, path, pem, pemlen), 0);
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl ec -in %s -pubout -outform DER -out %s/pub.der",
			    path, tmpdir), 0);
	char *ossl_pub = pki_file_read(tmpdir, "pub.der", &len);
	CHECK(ossl_pub && len == publen && memcmp(ossl_pub, pub, len) == 0);
	free(ossl_pub);

	/* PKCS#8 "PRIVATE KEY" made by openssl decodes to the same key. */
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl pkcs8 -topk8 -nocrypt -in %s/k.pem -out %s/k8.pem",
			    tmpdir, tmpdir), 0);
	p8 = pki_file_read(tmpdir, "k8.pem", &len);
	CHECK(p8 && strstr(p8, "-----BEGIN PRIVATE KEY-----"));
	k3 = p8 ? x509_key_from_pem(p8, len) : NULL;
	CHECK(k3 != NULL);
	if (k3) {
		CHECK_EQ_INT(x509_key_public_der(k3, &pub3, &publen3), 0);
		CHECK(publen3 == publen && memcmp(pub, pub3, publen) == 0);
	}
	free(p8);

	/* Not P-256, not a key, truncated. */
	CHECK_EQ_INT(pki_sh(out, sizeof(out),
			    "openssl ecparam -name secp384r1 -genkey -noout -out %s/k384.pem", tmpdir), 0);
	char *p384 = pki_file_read(tmpdir, "k384.pem", &len);
	CHECK(p384 && x509_key_from_pem(p384, len) == NULL);
	free(p384);
	CHECK(x509_key_from_pem("hello", 5) == NULL);
	CHECK(x509_key_from_pem(pem, pemlen / 2) == NULL);
	CHECK(x509_key_from_pem(NULL, 0) == NULL);

	x509_secret_free(pem, pemlen);
	x509_secret_free(NULL, 0);
	x509_key_free(k);
	x509_key_free(k2);
	x509_key_free(k3);
	x509_key_free(NULL);
	free(pub);
	free(pub2);
	free(pub3);
}

static void test_csr(void)
{
	struct x509_key *k = x509_key_generate();
	const char *uri = "spiffe://cluster.local/ns/default/sa/a";
	char *pem = NULL, path[256], out[16384];
	size_t len = 0;

	CHECK_EQ_INT(x509_csr_make(k, uri, &pem, &len), 0);
	CHECK(pem && strstr(pem, "-----BEGIN CERTIFICATE REQUEST-----") == pem);
	snprintf(path, sizeof(path), "%s/req.pem", tmpdir);
	CHECK_EQ_INT(pki_file_write(NULL, path, pem, len), 0);
	CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl req -in %s -verify -noout -text", path), 0);
	CHECK(strstr(out, "verify OK") != NULL);
	CHECK_EQ_INT(pki_count(out, "URI:"), 1);
	CHECK(strstr(out, "URI:spiffe://cluster.local/ns/default/sa/a") != NULL);
	CHECK_EQ_INT(pki_count(out, "DNS:"), 0);
	CHECK(strstr(out, "ecdsa-with-SHA256") != NULL);
	CHECK(strstr(out, "NIST CURVE: P-256") != NULL);
	/* Empty subject: openssl prints "Subject: " followed by nothing. */
	CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl req -in %s -noout -subject", path), 0);
	CHECK(strcmp(out, "subject=\n") == 0);
	/* The public key in the CSR is ours. */
	uint8_t *pub = NULL;
	size_t publen = 0;
	CHECK_EQ_INT(x509_key_public_der(k, &pub, &publen), 0);
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl req -in %s -pubkey -noout | "
			    "openssl pkey -pubin -outform DER -out %s/csrpub.der", path, tmpdir), 0);
	size_t l2 = 0;
	char *p2 = pki_file_read(tmpdir, "csrpub.der", &l2);
	CHECK(p2 && l2 == publen && memcmp(p2, pub, publen) == 0);
	free(p2);
	free(pub);
	free(pem);

	/* A long (multi-byte DER length) URI still makes a valid CSR. */
	char longuri[600];
	snprintf(longuri, sizeof(longuri), "spiffe://cluster.local/%0500d", 7);
	CHECK_EQ_INT(x509_csr_make(k, longuri, &pem, &len), 0);
	snprintf(path, sizeof(path), "%s/req2.pem", tmpdir);
	CHECK_EQ_INT(pki_file_write(NULL, path, pem, len), 0);
	CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl req -in %s -verify -noout -text", path), 0);
	CHECK(strstr(out, "verify OK") != NULL);
	CHECK_EQ_INT(pki_count(out, "URI:spiffe://cluster.local/0000"), 1);
	free(pem);

	/* Not a SPIFFE ID. */
	pem = NULL;
	CHECK_EQ_INT(x509_csr_make(k, "https://example.org/", &pem, &len), -EINVAL);
	CHECK(pem == NULL);
	CHECK_EQ_INT(x509_csr_make(k, "spiffe://td/a/", &pem, &len), -EINVAL);
	x509_key_free(k);
}

static void test_pem_and_summary(void)
{
	char out[8192], path[256];
	size_t len = 0, pos = 0, derlen = 0, derlen2 = 0, pemlen = 0;
	uint8_t *der = NULL, *der2 = NULL;
	char *bundle, *pem = NULL;
	struct x509_summary s;

	CHECK_EQ_INT(pki_sh(out, sizeof(out),
			    "cd %s && openssl ecparam -name prime256v1 -genkey -noout -out c.key && "
			    "openssl req -x509 -new -key c.key -days 2 -subj '/O=acme/CN=test ca' "
			    "-addext 'subjectAltName=URI:spiffe://a/b,DNS:x.example,DNS:y.example,"
			    "IP:10.1.2.3,email:a@b.example,URI:spiffe://a/c' -out c.pem && "
			    "openssl req -x509 -new -key c.key -days 1 -subj '/CN=second' -out c2.pem && "
			    "cat c.pem c2.pem > bundle.pem", tmpdir), 0);
	bundle = pki_file_read(tmpdir, "bundle.pem", &len);
	CHECK(bundle != NULL);
	if (!bundle)
		return;

	CHECK_EQ_INT(x509_pem_next(bundle, len, &pos, &der, &derlen), 0);
	CHECK(pos > 0 && pos < len);
	CHECK_EQ_INT(x509_cert_summary(der, derlen, &s), 0);
	CHECK_EQ_STR(s.uri, "spiffe://a/b");
	CHECK_EQ_INT(s.n_uri, 2);
	CHECK_EQ_INT(s.n_dns, 2);
	CHECK_EQ_INT(s.n_ip, 1);
	CHECK_EQ_INT(s.n_email, 1);
	CHECK(strstr(s.subject, "O=acme") && strstr(s.subject, "CN=test ca"));
	CHECK(strstr(s.issuer, "CN=test ca") != NULL);
	CHECK_EQ_INT(s.is_ca, 1);	/* openssl req -x509 adds CA:TRUE */
	CHECK_EQ_STR(s.key_type, "ECDSA P-256");
	CHECK_EQ_INT(s.not_after - s.not_before, 2 * 86400);
	CHECK(s.not_before <= time(NULL) + 5 && s.not_before > time(NULL) - 600);
	/* Serial as openssl prints it (uppercase hex, no separators). */
	CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl x509 -in %s/c.pem -noout -serial", tmpdir), 0);
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	CHECK(strncmp(out, "serial=", 7) == 0 && strcasecmp(out + 7, s.serial) == 0);

	/* DER -> PEM -> DER is the identity, and openssl reads our PEM. */
	CHECK_EQ_INT(x509_der_to_pem(der, derlen, "CERTIFICATE", &pem, &pemlen), 0);
	CHECK_EQ_INT(strlen(pem), pemlen);
	size_t p2 = 0;
	CHECK_EQ_INT(x509_pem_next(pem, pemlen, &p2, &der2, &derlen2), 0);
	CHECK(derlen2 == derlen && memcmp(der, der2, derlen) == 0);
	free(der2);
	CHECK_EQ_INT(x509_pem_next(pem, pemlen, &p2, &der2, &derlen2), -ENOENT);
	snprintf(path, sizeof(path), "%s/ours.pem", tmpdir);
	CHECK_EQ_INT(pki_file_write(NULL, path, pem, pemlen), 0);
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl x509 -in %s/ours.pem -noout && cmp -s %s/ours.pem %s/c.pem",
			    tmpdir, tmpdir, tmpdir), 0);
	free(pem);
	free(der);

	/* Second cert of the bundle, then the end. */
	CHECK_EQ_INT(x509_pem_next(bundle, len, &pos, &der, &derlen), 0);
	CHECK_EQ_INT(x509_cert_summary(der, derlen, &s), 0);
	CHECK_EQ_INT(s.n_uri, 0);
	CHECK_EQ_STR(s.uri, "");
	CHECK(strstr(s.subject, "CN=second") != NULL);
	CHECK_EQ_INT(s.not_after - s.not_before, 86400);
	free(der);
	CHECK_EQ_INT(x509_pem_next(bundle, len, &pos, &der, &derlen), -ENOENT);
	CHECK(der == NULL);

	/* Garbage and truncation. */
	pos = 0;
	CHECK_EQ_INT(x509_pem_next("no pem here", 11, &pos, &der, &derlen), -ENOENT);
	pos = 0;
	CHECK_EQ_INT(x509_pem_next(bundle, 100, &pos, &der, &derlen), -EINVAL);
	CHECK_EQ_INT(x509_cert_summary((const uint8_t *)"\x30\x03\x02\x01\x01", 5, &s), -EINVAL);
	free(bundle);
}

int main(void)
{
	int rc = pki_test_begin(tmpdir, sizeof(tmpdir), "test-x509");

	if (rc != 0)
		return rc;
	test_keys();
	test_csr();
	test_pem_and_summary();
	pki_dir_remove(tmpdir);
	return check_done("test_x509");
}
