/* SPDX-License-Identifier: Apache-2.0 */
/* The CA, checked with the openssl CLI: a generated root (files, modes,
 * extensions, reopened unchanged), SVIDs for a CSR (verify, one critical URI
 * SAN, CA:FALSE, critical digitalSignature, server+client EKU, exact TTL),
 * DNS SANs for the agent's own cert, and a given intermediate whose chain
 * of three verifies. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <weft/x509.h>

#include "../../../agent/ca.h"
#include "../../../agent/csr.h"
#include "../check.h"
#include "../../pki.h"

/* The scratch directory, also the cwd: the shell commands use relative paths. */
static char tmpdir[64];

/* A CSR's public key via our own CSR path: x509_csr_make + csr_parse. */
static int csr_pubkey(const char *uri, struct csr *c)
{
	struct x509_key *k = x509_key_generate();
	char *pem = NULL, why[256];
	size_t len;
	int rc;

	if (!k)
		return -1;
	rc = x509_csr_make(k, uri, &pem, &len);
	if (rc == 0)
		rc = csr_parse(pem, len, c, why, sizeof(why));
	free(pem);
	x509_key_free(k);
	return rc;
}

static void test_root(void)
{
	struct ca_opts o = { .trust_domain = "cluster.local" };
	char state[512], err[256] = "", out[16384];
	struct ca *ca;
	struct stat st;
	size_t blen = 0, flen = 0;
	char *file, *first;

	snprintf(state, sizeof(state), "%s/state", tmpdir);
	o.state_dir = state;
	ca = ca_open(&o, err, sizeof(err));
	CHECK(ca != NULL);
	if (!ca) {
		fprintf(stderr, "ca_open: %s\n", err);
		return;
	}
	char p[600];
	snprintf(p, sizeof(p), "%s/ca-key.pem", state);
	CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
	snprintf(p, sizeof(p), "%s/root-cert.pem", state);
	CHECK_EQ_STR(ca_bundle_path(ca), p);
	CHECK(stat(p, &st) == 0);

	const char *bundle = ca_bundle_pem(ca, &blen);
	file = pki_file_read(tmpdir, "state/root-cert.pem", &flen);
	CHECK(bundle && file && blen == flen && memcmp(bundle, file, blen) == 0);
	first = bundle ? strdup(bundle) : NULL;
	free(file);

	CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl x509 -in state/ca-cert.pem -noout -text"), 0);
	CHECK(strstr(out, "Subject: O = weft, CN = weft root CA cluster.local") != NULL);
	CHECK(strstr(out, "X509v3 Basic Constraints: critical\n                CA:TRUE") != NULL);
	CHECK(strstr(out, "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign") != NULL);
	CHECK(strstr(out, "X509v3 Subject Key Identifier") != NULL);
	CHECK(strstr(out, "ecdsa-with-SHA256") && strstr(out, "NIST CURVE: P-256"));
	/* Self-signed and a valid CA for openssl; ~10 years. */
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl verify -CAfile state/root-cert.pem state/ca-cert.pem"), 0);
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl x509 -in state/ca-cert.pem -noout -checkend %d",
			9 * 365 * 86400), 0);
	CHECK(pki_sh(NULL, 0, "openssl x509 -in state/ca-cert.pem -noout -checkend %d",
		 3651 * 86400) != 0);
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl ec -in state/ca-key.pem -check -noout"), 0);
	ca_free(ca);

	/* Reopen: same root, not a new one. */
	ca = ca_open(&o, err, sizeof(err));
	CHECK(ca != NULL);
	if (ca) {
		const char *again = ca_bundle_pem(ca, &blen);
		CHECK(first && again && strcmp(first, again) == 0);
		ca_free(ca);
	}
	free(first);
	ca_free(NULL);

	/* Half a CA in the state dir is refused, not silently replaced. */
	CHECK_EQ_INT(pki_sh(NULL, 0, "mkdir half && cp state/ca-cert.pem half/"), 0);
	snprintf(state, sizeof(state), "%s/half", tmpdir);
	CHECK(ca_open(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "only one of") != NULL);
	o.trust_domain = "Bad.TD";
	CHECK(ca_open(&o, err, sizeof(err)) == NULL);
}

/* Sign for a fresh key with the CA in tmpdir/state and check with openssl. */
static void test_sign(void)
{
	struct ca_opts o = { .trust_domain = "cluster.local" };
	const char *uri = "spiffe://cluster.local/ns/default/sa/a";
	char state[512], err[256], out[16384];
	struct ca *ca;
	struct csr c;
	char **chain = NULL;
	size_t n = 0;
	struct x509_summary s, s2;
	uint8_t *der = NULL;
	size_t derlen, pos;

	snprintf(state, sizeof(state), "%s/state", tmpdir);
	o.state_dir = state;
	ca = ca_open(&o, err, sizeof(err));
	CHECK(ca != NULL);
	if (!ca)
		return;
	CHECK_EQ_INT(csr_pubkey(uri, &c), 0);

	time_t t0 = time(NULL);
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len, uri, NULL, 0, 3600, &chain, &n), 0);
	CHECK_EQ_INT(n, 2);
	if (n != 2)
		goto out;
	CHECK(strcmp(chain[1], ca_bundle_pem(ca, NULL)) == 0);	/* root last */
	CHECK_EQ_INT(pki_file_write(tmpdir, "leaf.pem", chain[0], strlen(chain[0])), 0);
	CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl verify -CAfile state/root-cert.pem leaf.pem"), 0);
	CHECK(strstr(out, "leaf.pem: OK") != NULL);
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl verify -purpose sslserver -CAfile state/root-cert.pem leaf.pem"), 0);
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl verify -purpose sslclient -CAfile state/root-cert.pem leaf.pem"), 0);

	CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl x509 -in leaf.pem -noout -text"), 0);
	CHECK(strstr(out, "Version: 3 (0x2)") != NULL);
	CHECK(strstr(out, "X509v3 Subject Alternative Name: critical\n"
			  "                URI:spiffe://cluster.local/ns/default/sa/a\n") != NULL);
	CHECK_EQ_INT(pki_count(out, "URI:"), 1);
	CHECK_EQ_INT(pki_count(out, "DNS:"), 0);
	CHECK(strstr(out, "X509v3 Basic Constraints: critical\n                CA:FALSE") != NULL);
	CHECK(strstr(out, "X509v3 Key Usage: critical\n                Digital Signature\n") != NULL);
	CHECK(strstr(out, "X509v3 Extended Key Usage: \n"
			  "                TLS Web Server Authentication, TLS Web Client Authentication")
	      != NULL);
	CHECK(strstr(out, "X509v3 Authority Key Identifier") != NULL);
	CHECK(strstr(out, "X509v3 Subject Key Identifier") != NULL);
	CHECK(strstr(out, "Signature Algorithm: ecdsa-with-SHA256") != NULL);
	CHECK(strstr(out, "Issuer: O = weft, CN = weft root CA cluster.local") != NULL);
	CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl x509 -in leaf.pem -noout -subject"), 0);
	CHECK_EQ_STR(out, "subject=\n");

	/* The certified key is the CSR's. */
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl x509 -in leaf.pem -noout -pubkey | "
			"openssl pkey -pubin -outform DER -out leaf.pub"), 0);
	size_t publen = 0;
	char *pub = pki_file_read(tmpdir, "leaf.pub", &publen);
	CHECK(pub && publen == c.pubkey_len && memcmp(pub, c.pubkey_der, publen) == 0);
	free(pub);

	/* Validity: exactly now-60 .. now+3600 (allowing for the clock tick). */
	pos = 0;
	CHECK_EQ_INT(x509_pem_next(chain[0], strlen(chain[0]), &pos, &der, &derlen), 0);
	CHECK_EQ_INT(x509_cert_summary(der, derlen, &s), 0);
	free(der);
	CHECK_EQ_INT(s.not_after - s.not_before, 3660);
	CHECK(s.not_before >= t0 - 61 && s.not_before <= time(NULL) - 59);
	CHECK_EQ_INT(s.is_ca, 0);
	CHECK_EQ_STR(s.uri, uri);
	CHECK_EQ_STR(s.key_type, "ECDSA P-256");
	CHECK_EQ_INT(strlen(s.serial), 32);		/* 128 bits */
	CHECK(s.serial[0] >= '0' && s.serial[0] <= '7');	/* positive */
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl x509 -in leaf.pem -noout -checkend 3500"), 0);
	CHECK(pki_sh(NULL, 0, "openssl x509 -in leaf.pem -noout -checkend 3700") != 0);
	ca_chain_free(chain, n);
	chain = NULL;

	/* A 60 s SVID; serials differ. */
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len, uri, NULL, 0, 60, &chain, &n), 0);
	if (n >= 1) {
		pos = 0;
		CHECK_EQ_INT(x509_pem_next(chain[0], strlen(chain[0]), &pos, &der, &derlen), 0);
		CHECK_EQ_INT(x509_cert_summary(der, derlen, &s2), 0);
		free(der);
		CHECK_EQ_INT(s2.not_after - s2.not_before, 120);
		CHECK(strcmp(s.serial, s2.serial) != 0);
	}
	ca_chain_free(chain, n);
	chain = NULL;

	/* A TTL past the root's expiry is clamped to it. */
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len, uri, NULL, 0, UINT32_MAX, &chain, &n), 0);
	if (n == 2) {
		struct x509_summary r;
		pos = 0;
		CHECK_EQ_INT(x509_pem_next(chain[0], strlen(chain[0]), &pos, &der, &derlen), 0);
		CHECK_EQ_INT(x509_cert_summary(der, derlen, &s2), 0);
		free(der);
		pos = 0;
		CHECK_EQ_INT(x509_pem_next(chain[1], strlen(chain[1]), &pos, &der, &derlen), 0);
		CHECK_EQ_INT(x509_cert_summary(der, derlen, &r), 0);
		free(der);
		CHECK_EQ_INT(s2.not_after, r.not_after);
	}
	ca_chain_free(chain, n);
	chain = NULL;

	/* The agent's serving cert: one URI plus DNS names. */
	const char *dns[] = { "weft-agent", "weft-agent.weft-system.svc", "localhost" };
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len, "spiffe://cluster.local/weft/agent",
			     dns, 3, 86400, &chain, &n), 0);
	if (n == 2) {
		CHECK_EQ_INT(pki_file_write(tmpdir, "agent.pem", chain[0], strlen(chain[0])), 0);
		CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl x509 -in agent.pem -noout -ext subjectAltName"), 0);
		CHECK_EQ_INT(pki_count(out, "URI:"), 1);
		CHECK(strstr(out, "critical") != NULL);
		CHECK(strstr(out, "DNS:weft-agent, DNS:weft-agent.weft-system.svc, DNS:localhost") != NULL);
		CHECK_EQ_INT(pki_sh(NULL, 0, "openssl verify -CAfile state/root-cert.pem "
				"-verify_hostname weft-agent.weft-system.svc agent.pem"), 0);
	}
	ca_chain_free(chain, n);
	chain = NULL;

	/* Bad requests. */
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len, "spiffe://x/a/", NULL, 0, 60, &chain, &n), -EINVAL);
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len, uri, NULL, 0, 0, &chain, &n), -EINVAL);
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len / 2, uri, NULL, 0, 60, &chain, &n), -EINVAL);
	CHECK_EQ_INT(ca_sign(ca, (const uint8_t *)"junk", 4, uri, NULL, 0, 60, &chain, &n), -EINVAL);
	const char *bad_dns[] = { "a b" };
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len, uri, bad_dns, 1, 60, &chain, &n), -EINVAL);
	CHECK(chain == NULL && n == 0);
	ca_chain_free(NULL, 0);
out:
	ca_chain_free(chain, n);
	csr_deinit(&c);
	ca_free(ca);
}

/* A root and an intermediate made by openssl; the CA signs with the
 * intermediate and returns leaf, intermediate, root. */
static void test_intermediate(void)
{
	struct ca_opts o = { .trust_domain = "example.org" };
	char state[512], cert[512], key[512], chainf[512], err[256] = "", out[8192];
	const char *uri = "spiffe://example.org/ns/a/sa/b";
	struct ca *ca;
	struct csr c;
	char **chain = NULL;
	size_t n = 0;

	CHECK_EQ_INT(pki_ca_make(tmpdir, "r", NULL, "/O=Example/CN=Example Root", 30), 0);
	CHECK_EQ_INT(pki_ca_make(tmpdir, "i", "r", "/O=Example/CN=Example Intermediate", 20), 0);
	/* The root's key also as SEC1, for the wrong-key case below. */
	CHECK_EQ_INT(pki_sh(NULL, 0, "openssl ec -in r.key -out r.sec1 && "
			    "openssl req -x509 -new -key i.key -subj '/CN=not a ca' -days 1 "
			    "-addext basicConstraints=CA:FALSE -out leafish.pem"), 0);
	CHECK_EQ_INT(pki_sh(out, sizeof(out), "head -n1 i.key r.sec1"), 0);
	CHECK(strstr(out, "-----BEGIN PRIVATE KEY-----") != NULL);
	CHECK(strstr(out, "-----BEGIN EC PRIVATE KEY-----") != NULL);
	snprintf(state, sizeof(state), "%s/istate", tmpdir);
	snprintf(cert, sizeof(cert), "%s/i.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/i.key", tmpdir);	/* PKCS#8 */
	snprintf(chainf, sizeof(chainf), "%s/r.pem", tmpdir);
	o.state_dir = state;
	o.cert_file = cert;
	o.key_file = key;
	o.chain_file = chainf;
	ca = ca_open(&o, err, sizeof(err));
	CHECK(ca != NULL);
	if (!ca) {
		fprintf(stderr, "ca_open: %s\n", err);
		return;
	}
	/* The bundle is the root, and no key was copied into the state dir. */
	CHECK_EQ_INT(pki_sh(NULL, 0, "cmp istate/root-cert.pem r.pem"), 0);
	CHECK(access("istate/ca-key.pem", F_OK) != 0);

	CHECK_EQ_INT(csr_pubkey(uri, &c), 0);
	CHECK_EQ_INT(ca_sign(ca, c.pubkey_der, c.pubkey_len, uri, NULL, 0, 600, &chain, &n), 0);
	CHECK_EQ_INT(n, 3);
	if (n == 3) {
		pki_file_write(tmpdir, "l3.pem", chain[0], strlen(chain[0]));
		pki_file_write(tmpdir, "i3.pem", chain[1], strlen(chain[1]));
		pki_file_write(tmpdir, "r3.pem", chain[2], strlen(chain[2]));
		CHECK_EQ_INT(pki_sh(NULL, 0, "cmp i3.pem i.pem && cmp r3.pem r.pem"), 0);
		CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl verify -CAfile r3.pem -untrusted i3.pem l3.pem"), 0);
		CHECK(strstr(out, "l3.pem: OK") != NULL);
		/* Without the intermediate it must not verify (the test can fail). */
		CHECK(pki_sh(NULL, 0, "openssl verify -CAfile r3.pem l3.pem") != 0);
		CHECK_EQ_INT(pki_sh(out, sizeof(out), "openssl x509 -in l3.pem -noout -issuer"), 0);
		CHECK(strstr(out, "CN = Example Intermediate") != NULL);
	}
	ca_chain_free(chain, n);
	csr_deinit(&c);
	ca_free(ca);

	/* Misconfigurations, each with a reason. */
	o.chain_file = NULL;
	CHECK(ca_open(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "no chain") != NULL);
	o.chain_file = chainf;
	snprintf(key, sizeof(key), "%s/r.sec1", tmpdir);	/* wrong key */
	CHECK(ca_open(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "does not match") != NULL);
	snprintf(key, sizeof(key), "%s/i.key", tmpdir);
	snprintf(cert, sizeof(cert), "%s/leafish.pem", tmpdir);
	CHECK(ca_open(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not a CA") != NULL);
	snprintf(cert, sizeof(cert), "%s/i.pem", tmpdir);
	snprintf(chainf, sizeof(chainf), "%s/i.pem", tmpdir);	/* chain doesn't lead to a root */
	CHECK(ca_open(&o, err, sizeof(err)) == NULL);
	o.key_file = NULL;
	CHECK(ca_open(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "together") != NULL);
}

int main(void)
{
	int rc = pki_test_begin(tmpdir, sizeof(tmpdir), "test-ca");

	if (rc != 0)
		return rc;
	if (chdir(tmpdir) < 0) {
		perror("chdir");
		return 1;
	}
	test_root();
	test_sign();
	test_intermediate();
	pki_dir_remove(tmpdir);
	return check_done("test_ca");
}
