/* SPDX-License-Identifier: Apache-2.0 */
/* The certificate authority: opens a given root or intermediate (with the
 * chain above it), or the root kept in the state directory, or makes a new
 * ECDSA P-256 root there; then signs X.509-SVIDs shaped by the SPIFFE spec
 * (empty subject, one critical URI SAN, CA:FALSE, digitalSignature, server
 * and client auth) with second-exact validity. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <weft/file.h>
#include <weft/spiffe.h>
#include <weft/x509.h>

#include "ca.h"

#define CA_FILE_MAX (1u << 20)		/* PEM files we read */
#define CA_CHAIN_MAX 8			/* certificates above the signing cert */
#define CA_ROOT_DAYS 3650
#define CA_DER_MAX (CTC_MAX_ALT_SIZE + 4096)

struct ca_cert {
	uint8_t *der;
	size_t len;
	char *pem;
	size_t pemlen;
};

struct ca {
	struct x509_key *key;
	struct ca_cert cert;			/* the signing certificate */
	struct ca_cert chain[CA_CHAIN_MAX];	/* above it, nearest first, root last */
	size_t n_chain;
	time_t not_after;			/* of the signing certificate */
	char *bundle;				/* the root, PEM */
	size_t bundle_len;
	char bundle_path[PATH_MAX];
};

static void *fail_msg(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void *fail_msg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return NULL;
}

/* --- files ------------------------------------------------------------- */

/* A PEM file of ours: bounded, and in sodium memory when it holds a key
 * (free with x509_secret_free), else malloc. 0 or -errno. */
static int ca_file_read(const char *path, int secret, char **out, size_t *len)
{
	return secret ? file_read_secret(path, CA_FILE_MAX, out, len)
		      : file_read(path, CA_FILE_MAX, out, len);
}

/* --- DER surgery -------------------------------------------------------- */

/* Read one TLV header at p (avail bytes): *hdr header size, *body length.
 * Only definite lengths up to 3 bytes; 0 or -EINVAL. */
static int der_tlv(const uint8_t *p, size_t avail, size_t *hdr, size_t *body)
{
	size_t n, i, nb;

	if (avail < 2)
		return -EINVAL;
	if (p[1] < 0x80) {
		*hdr = 2;
		n = p[1];
	} else {
		nb = p[1] & 0x7f;
		if (nb == 0 || nb > 3 || avail < 2 + nb)
			return -EINVAL;
		for (n = 0, i = 0; i < nb; i++)
			n = (n << 8) | p[2 + i];
		*hdr = 2 + nb;
	}
	if (n > avail - *hdr)
		return -EINVAL;
	*body = n;
	return 0;
}

/* out = tag || len || a || b || c. Returns the length written; out must
 * hold alen + blen + clen + 5. */
static size_t der_wrap3(uint8_t *out, uint8_t tag, const uint8_t *a, size_t alen,
			const uint8_t *b, size_t blen, const uint8_t *c, size_t clen)
{
	size_t pos = 0;

	out[pos++] = tag;
	pos += x509_der_len_put(out + pos, alen + blen + clen);
	memmove(out + pos, a, alen);
	pos += alen;
	memmove(out + pos, b, blen);
	pos += blen;
	memmove(out + pos, c, clen);
	return pos + clen;
}

/* wolfSSL writes basicConstraints without the critical flag; RFC 5280
 * wants it critical in CA certificates and Istio marks it so in leaves.
 * Rewrite the TBSCertificate in buf[0..*len) with critical=TRUE inserted
 * into that extension. buf has room for *len + 64. */
static int tbs_basic_constraints_critical(uint8_t *buf, size_t *len)
{
	static const uint8_t bc_oid[] = { 0x06, 0x03, 0x55, 0x1d, 0x13 };
	static const uint8_t crit[] = { 0x01, 0x01, 0xff };
	size_t h, b, tbs_h, tbs_b, off, a3_off = 0, a3_h = 0, a3_b = 0;
	size_t exts_h, exts_b, ext_off = 0, ext_h = 0, ext_b = 0;
	uint8_t *t1, *t2;
	size_t n1, n2;
	int found = 0;

	if (der_tlv(buf, *len, &tbs_h, &tbs_b) < 0 || buf[0] != 0x30)
		return -EINVAL;
	for (off = tbs_h; off < tbs_h + tbs_b; off += h + b) {
		if (der_tlv(buf + off, tbs_h + tbs_b - off, &h, &b) < 0)
			return -EINVAL;
		if (buf[off] == 0xa3) {
			a3_off = off;
			a3_h = h;
			a3_b = b;
		}
	}
	if (!a3_off)
		return -EINVAL;
	if (der_tlv(buf + a3_off + a3_h, a3_b, &exts_h, &exts_b) < 0)
		return -EINVAL;
	for (off = a3_off + a3_h + exts_h; off < a3_off + a3_h + exts_h + exts_b; off += h + b) {
		if (der_tlv(buf + off, a3_off + a3_h + exts_h + exts_b - off, &h, &b) < 0)
			return -EINVAL;
		if (b > sizeof(bc_oid) && memcmp(buf + off + h, bc_oid, sizeof(bc_oid)) == 0) {
			ext_off = off;
			ext_h = h;
			ext_b = b;
			found = 1;
		}
	}
	if (!found)
		return -ENOENT;
	if (buf[ext_off + ext_h + sizeof(bc_oid)] == 0x01)
		return 0;	/* already has a critical flag */

	t1 = malloc(*len + 64);
	t2 = malloc(*len + 64);
	if (!t1 || !t2) {
		free(t1);
		free(t2);
		return -ENOMEM;
	}
	/* Extension, then the extensions SEQUENCE, [3], and the TBS. */
	n1 = der_wrap3(t1, 0x30, buf + ext_off + ext_h, sizeof(bc_oid), crit, sizeof(crit),
		       buf + ext_off + ext_h + sizeof(bc_oid), ext_b - sizeof(bc_oid));
	{
		const uint8_t *start = buf + a3_off + a3_h + exts_h;
		const uint8_t *after = buf + ext_off + ext_h + ext_b;
		const uint8_t *end = buf + a3_off + a3_h + exts_h + exts_b;

		n2 = der_wrap3(t2, 0x30, start, (size_t)(buf + ext_off - start), t1, n1,
			       after, (size_t)(end - after));
	}
	n1 = der_wrap3(t1, 0xa3, t2, n2, t2, 0, t2, 0);
	{
		const uint8_t *after = buf + a3_off + a3_h + a3_b;
		const uint8_t *end = buf + tbs_h + tbs_b;

		n2 = der_wrap3(t2, 0x30, buf + tbs_h, a3_off - tbs_h, t1, n1, after,
			       (size_t)(end - after));
	}
	memcpy(buf, t2, n2);
	*len = n2;
	free(t1);
	free(t2);
	return 0;
}

/* --- certificate building ---------------------------------------------- */

/* UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
static int date_put(uint8_t *out, int *outlen, time_t t)
{
	struct tm tm;
	size_t n;

	if (!gmtime_r(&t, &tm))
		return -EINVAL;
	if (tm.tm_year + 1900 < 2050) {
		out[0] = 0x17;	/* UTCTime */
		n = strftime((char *)out + 2, CTC_DATE_SIZE - 2, "%y%m%d%H%M%SZ", &tm);
	} else {
		out[0] = 0x18;	/* GeneralizedTime */
		n = strftime((char *)out + 2, CTC_DATE_SIZE - 2, "%Y%m%d%H%M%SZ", &tm);
	}
	if (n == 0)
		return -EINVAL;
	out[1] = (uint8_t)n;
	*outlen = (int)n + 2;
	return 0;
}

/* 128 random bits, positive (top bit clear) and minimally encoded (first
 * byte non-zero), as CA/B and RFC 5280 ask. */
static void serial_random(Cert *c)
{
	do
		randombytes_buf(c->serial, 16);
	while ((c->serial[0] & 0x7f) == 0);
	c->serial[0] &= 0x7f;
	c->serialSz = 16;
}

/* A DNS name for the agent's own certificate: LDH labels and dots. */
static int dns_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '*'))
			return 0;
	}
	return 1;
}

/* Make the TBS in cert (subject key subj), fix basicConstraints, sign with
 * the issuer key. Returns the DER length in der, or -errno. */
static int cert_make_sign(Cert *cert, ecc_key *subj, ecc_key *issuer, uint8_t *der, size_t cap)
{
	WC_RNG rng;
	size_t len;
	int n, rc = -EINVAL;

	if (wc_InitRng(&rng) != 0)
		return -EIO;
	n = wc_MakeCert_ex(cert, der, (word32)cap, ECC_TYPE, subj, &rng);
	if (n <= 0)
		goto fail_rng;
	len = (size_t)cert->bodySz;
	if (len + 64 > cap || tbs_basic_constraints_critical(der, &len) < 0)
		goto fail_rng;
	n = wc_SignCert_ex((int)len, cert->sigType, der, (word32)cap, ECC_TYPE, issuer, &rng);
	if (n <= 0)
		goto fail_rng;
	rc = n;
fail_rng:
	wc_FreeRng(&rng);
	return rc;
}

/* A fresh Cert signed with SHA-256/ECDSA and a CA_DER_MAX buffer to encode
 * it into; Cert is on the heap because its SAN buffer is 16 KiB. The
 * caller frees both, whatever the result. */
static int cert_alloc(Cert **cert, uint8_t **der)
{
	*cert = calloc(1, sizeof(**cert));
	*der = malloc(CA_DER_MAX);
	if (!*cert || !*der)
		return -ENOMEM;
	if (wc_InitCert(*cert) != 0)
		return -EINVAL;
	(*cert)->sigType = CTC_SHA256wECDSA;
	return 0;
}

static int cert_set_pem(struct ca_cert *c)
{
	return x509_der_to_pem(c->der, c->len, "CERTIFICATE", &c->pem, &c->pemlen);
}

static void cert_clear(struct ca_cert *c)
{
	free(c->der);
	free(c->pem);
	memset(c, 0, sizeof(*c));
}

/* A new self-signed root for td, ECDSA P-256, valid 10 years. */
static int root_generate(struct ca *ca, const char *td)
{
	Cert *cert;
	uint8_t *der;
	time_t now = time(NULL);
	ecc_key *ecc;
	int n, rc = -EINVAL;

	ca->key = x509_key_generate();
	if (!ca->key)
		return -EIO;
	ecc = x509_key_ecc(ca->key);
	rc = cert_alloc(&cert, &der);
	if (rc < 0)
		goto fail;
	rc = -EINVAL;
	cert->isCA = 1;
	cert->selfSigned = 1;
	snprintf(cert->subject.org, CTC_NAME_SIZE, "weft");
	cert->subject.orgEnc = CTC_UTF8;
	/* CN is capped at 64 by X.520; a long trust domain is truncated in
	 * the display name only. */
	snprintf(cert->subject.commonName, CTC_NAME_SIZE, "weft root CA %s", td);
	cert->subject.commonNameEnc = CTC_UTF8;
	serial_random(cert);
	if (date_put(cert->beforeDate, &cert->beforeDateSz, now - 60) < 0 ||
	    date_put(cert->afterDate, &cert->afterDateSz, now + (time_t)CA_ROOT_DAYS * 86400) < 0)
		goto fail;
	if (wc_SetKeyUsage(cert, "keyCertSign,cRLSign") != 0 ||
	    wc_SetSubjectKeyIdFromPublicKey_ex(cert, ECC_TYPE, ecc) != 0)
		goto fail;
	n = cert_make_sign(cert, ecc, ecc, der, CA_DER_MAX);
	if (n < 0) {
		rc = n;
		goto fail;
	}
	ca->cert.der = der;
	ca->cert.len = (size_t)n;
	der = NULL;
	rc = cert_set_pem(&ca->cert);
fail:
	free(der);
	free(cert);
	return rc;
}

/* --- opening ------------------------------------------------------------ */

/* SubjectPublicKeyInfo of a certificate's ECDSA key, re-encoded. */
static int cert_spki(const uint8_t *der, size_t len, uint8_t *out, size_t cap, size_t *outlen,
		     int *is_ca, time_t *not_after)
{
	DecodedCert dc;
	struct x509_summary s;
	ecc_key ecc;
	word32 idx = 0;
	int n, rc = -EINVAL;

	if (x509_cert_summary(der, len, &s) < 0)
		return -EINVAL;
	*is_ca = s.is_ca;
	*not_after = s.not_after;
	wc_InitDecodedCert(&dc, der, (word32)len, NULL);
	if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0 || dc.keyOID != ECDSAk)
		goto fail_dc;
	if (wc_ecc_init(&ecc) != 0)
		goto fail_dc;
	if (wc_EccPublicKeyDecode(dc.publicKey, &idx, &ecc, dc.pubKeySize) == 0) {
		n = wc_EccPublicKeyToDer(&ecc, out, (word32)cap, 1);
		if (n > 0) {
			*outlen = (size_t)n;
			rc = 0;
		}
	}
	wc_ecc_free(&ecc);
fail_dc:
	wc_FreeDecodedCert(&dc);
	return rc;
}

/* Subject and issuer names of a certificate equal (a self-issued root)? */
static int cert_self_issued(const uint8_t *der, size_t len)
{
	struct x509_summary s;

	return x509_cert_summary(der, len, &s) == 0 && strcmp(s.subject, s.issuer) == 0;
}

/* Append every certificate of a PEM bundle to ca->chain. */
static int chain_add_pem(struct ca *ca, const char *pem, size_t len, size_t pos)
{
	struct ca_cert c;
	int rc;

	for (;;) {
		memset(&c, 0, sizeof(c));
		rc = x509_pem_next(pem, len, &pos, &c.der, &c.len);
		if (rc == -ENOENT)
			return 0;
		if (rc < 0)
			return rc;
		if (ca->n_chain == CA_CHAIN_MAX) {
			free(c.der);
			return -E2BIG;
		}
		rc = cert_set_pem(&c);
		if (rc < 0) {
			free(c.der);
			return rc;
		}
		ca->chain[ca->n_chain++] = c;
	}
}

/* Check the signing cert chains up to the root with wolfSSL's verifier. */
static int chain_verify(struct ca *ca, char *err, size_t errlen)
{
	WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
	const struct ca_cert *root;
	int rc = -EINVAL;

	if (!cm)
		return -ENOMEM;
	root = ca->n_chain ? &ca->chain[ca->n_chain - 1] : &ca->cert;
	if (wolfSSL_CertManagerLoadCABuffer(cm, root->der, (long)root->len,
					    WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
		fail_msg(err, errlen, "root certificate is not a usable CA");
		goto out;
	}
	for (size_t i = ca->n_chain; i-- > 0;) {
		const struct ca_cert *c = i == 0 ? &ca->cert : &ca->chain[i - 1];

		if (wolfSSL_CertManagerVerifyBuffer(cm, c->der, (long)c->len,
						    WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
			fail_msg(err, errlen, "%s certificate does not verify against the chain above it",
				 i == 0 ? "CA" : "intermediate");
			goto out;
		}
		if (i > 0 && wolfSSL_CertManagerLoadCABuffer(cm, c->der, (long)c->len,
							     WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
			fail_msg(err, errlen, "intermediate certificate is not a usable CA");
			goto out;
		}
	}
	rc = 0;
out:
	wolfSSL_CertManagerFree(cm);
	return rc;
}

/* Load key_file and cert_file (plus chain_file, plus any further certs in
 * cert_file) and validate them. */
static int ca_load(struct ca *ca, const char *cert_file, const char *key_file,
		   const char *chain_file, char *err, size_t errlen)
{
	char *pem = NULL, *key = NULL;
	size_t len, klen, pos = 0, kpublen = 0, cpublen = 0;
	uint8_t *kpub = NULL, cpub[256];
	int rc, is_ca;

	rc = ca_file_read(key_file, 1, &key, &klen);
	if (rc < 0) {
		fail_msg(err, errlen, "cannot read %s: %s", key_file, strerror(-rc));
		return rc;
	}
	ca->key = x509_key_from_pem(key, klen);
	x509_secret_free(key, klen);
	if (!ca->key) {
		fail_msg(err, errlen, "%s is not an ECDSA P-256 private key", key_file);
		return -EINVAL;
	}
	rc = ca_file_read(cert_file, 0, &pem, &len);
	if (rc < 0) {
		fail_msg(err, errlen, "cannot read %s: %s", cert_file, strerror(-rc));
		return rc;
	}
	rc = x509_pem_next(pem, len, &pos, &ca->cert.der, &ca->cert.len);
	if (rc == 0)
		rc = cert_set_pem(&ca->cert);
	if (rc == 0)
		rc = chain_add_pem(ca, pem, len, pos);
	free(pem);
	if (rc < 0) {
		fail_msg(err, errlen, "%s: no readable certificate", cert_file);
		return rc;
	}
	if (chain_file) {
		rc = ca_file_read(chain_file, 0, &pem, &len);
		if (rc < 0) {
			fail_msg(err, errlen, "cannot read %s: %s", chain_file, strerror(-rc));
			return rc;
		}
		rc = chain_add_pem(ca, pem, len, 0);
		free(pem);
		if (rc < 0) {
			fail_msg(err, errlen, "%s: bad certificate chain", chain_file);
			return rc;
		}
	}

	if (cert_spki(ca->cert.der, ca->cert.len, cpub, sizeof(cpub), &cpublen, &is_ca,
		      &ca->not_after) < 0) {
		fail_msg(err, errlen, "%s: CA key is not ECDSA P-256", cert_file);
		return -EINVAL;
	}
	if (!is_ca) {
		fail_msg(err, errlen, "%s is not a CA certificate (basicConstraints CA:FALSE)",
			 cert_file);
		return -EINVAL;
	}
	rc = x509_key_public_der(ca->key, &kpub, &kpublen);
	if (rc < 0)
		return rc;
	rc = kpublen == cpublen && memcmp(kpub, cpub, cpublen) == 0 ? 0 : -EINVAL;
	free(kpub);
	if (rc < 0) {
		fail_msg(err, errlen, "%s does not match the certificate in %s", key_file, cert_file);
		return rc;
	}
	if (ca->n_chain == 0 && !cert_self_issued(ca->cert.der, ca->cert.len)) {
		fail_msg(err, errlen, "%s is an intermediate but no chain up to the root was given",
			 cert_file);
		return -EINVAL;
	}
	return chain_verify(ca, err, errlen);
}

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
	return snprintf(out, cap, "%s/%s", dir, name) >= (int)cap ? -ENAMETOOLONG : 0;
}

void ca_free(struct ca *ca)
{
	if (!ca)
		return;
	x509_key_free(ca->key);
	cert_clear(&ca->cert);
	for (size_t i = 0; i < ca->n_chain; i++)
		cert_clear(&ca->chain[i]);
	free(ca->bundle);
	free(ca);
}

struct ca *ca_open(const struct ca_opts *o, char *err, size_t errlen)
{
	char cert_path[PATH_MAX], key_path[PATH_MAX];
	const struct ca_cert *root;
	struct ca *ca;
	int rc, have_cert, have_key;

	if (!o || !o->state_dir || !o->trust_domain)
		return fail_msg(err, errlen, "CA needs a state directory and a trust domain");
	if (!spiffe_td_valid(o->trust_domain))
		return fail_msg(err, errlen, "invalid trust domain");
	if (!o->cert_file != !o->key_file)
		return fail_msg(err, errlen, "CA cert and key files must be given together");
	if (sodium_init() < 0)
		return fail_msg(err, errlen, "libsodium init failed");
	if (mkdir(o->state_dir, 0700) < 0 && errno != EEXIST)
		return fail_msg(err, errlen, "cannot create %s: %s", o->state_dir, strerror(errno));
	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return fail_msg(err, errlen, "out of memory");
	if (path_join(cert_path, sizeof(cert_path), o->state_dir, "ca-cert.pem") < 0 ||
	    path_join(key_path, sizeof(key_path), o->state_dir, "ca-key.pem") < 0 ||
	    path_join(ca->bundle_path, sizeof(ca->bundle_path), o->state_dir, "root-cert.pem") < 0) {
		fail_msg(err, errlen, "state directory path too long");
		goto fail;
	}

	if (o->cert_file) {
		if (ca_load(ca, o->cert_file, o->key_file, o->chain_file, err, errlen) < 0)
			goto fail;
	} else {
		have_cert = access(cert_path, F_OK) == 0;
		have_key = access(key_path, F_OK) == 0;
		if (have_cert != have_key) {
			fail_msg(err, errlen, "%s has only one of ca-cert.pem and ca-key.pem; "
				 "refusing to replace it", o->state_dir);
			goto fail;
		}
		if (have_cert) {
			if (ca_load(ca, cert_path, key_path, NULL, err, errlen) < 0)
				goto fail;
		} else {
			char *kpem = NULL;
			size_t klen = 0;
			int is_ca;
			uint8_t spki[256];
			size_t spkilen;

			rc = root_generate(ca, o->trust_domain);
			if (rc < 0) {
				fail_msg(err, errlen, "cannot generate a root CA: %s", strerror(-rc));
				goto fail;
			}
			if (cert_spki(ca->cert.der, ca->cert.len, spki, sizeof(spki), &spkilen,
				      &is_ca, &ca->not_after) < 0) {
				fail_msg(err, errlen, "generated root does not parse");
				goto fail;
			}
			rc = x509_key_to_pem(ca->key, &kpem, &klen);
			if (rc == 0) {
				/* Key first: a cert without its key is useless. */
				rc = file_write_atomic(key_path, kpem, klen, 0600);
				x509_secret_free(kpem, klen);
			}
			if (rc == 0)
				rc = file_write_atomic(cert_path, ca->cert.pem, ca->cert.pemlen, 0644);
			if (rc < 0) {
				fail_msg(err, errlen, "cannot write the CA into %s: %s", o->state_dir,
					 strerror(-rc));
				goto fail;
			}
		}
	}

	root = ca->n_chain ? &ca->chain[ca->n_chain - 1] : &ca->cert;
	ca->bundle = strdup(root->pem);
	if (!ca->bundle) {
		fail_msg(err, errlen, "out of memory");
		goto fail;
	}
	ca->bundle_len = root->pemlen;
	rc = file_write_atomic(ca->bundle_path, ca->bundle, ca->bundle_len, 0644);
	if (rc < 0) {
		fail_msg(err, errlen, "cannot write %s: %s", ca->bundle_path, strerror(-rc));
		goto fail;
	}
	return ca;

fail:
	ca_free(ca);
	return NULL;
}

/* --- signing ------------------------------------------------------------ */

int ca_sign(struct ca *ca, const uint8_t *pubkey_der, size_t pubkey_len,
	    const char *uri, const char *const *dns, size_t n_dns,
	    uint32_t ttl_s, char ***chain, size_t *n)
{
	Cert *cert = NULL;
	uint8_t *der = NULL;
	ecc_key leaf;
	word32 idx = 0;
	time_t now = time(NULL), not_after;
	char **out = NULL;
	size_t i, k = 0, pemlen;
	int len, rc = -EINVAL;

	*chain = NULL;
	*n = 0;
	if (!ca || !pubkey_der || !uri || ttl_s == 0 || (n_dns && !dns))
		return -EINVAL;
	if (spiffe_id_parse(uri, strlen(uri), NULL, NULL) < 0)
		return -EINVAL;
	for (i = 0; i < n_dns; i++)
		if (!dns_valid(dns[i]))
			return -EINVAL;
	not_after = now + (time_t)ttl_s;
	if (not_after > ca->not_after)
		not_after = ca->not_after;	/* never outlive the issuer */
	if (not_after <= now)
		return -EKEYEXPIRED;

	if (wc_ecc_init(&leaf) != 0)
		return -ENOMEM;
	if (wc_EccPublicKeyDecode(pubkey_der, &idx, &leaf, (word32)pubkey_len) != 0 ||
	    !leaf.dp || leaf.dp->id != ECC_SECP256R1)
		goto out;
	rc = cert_alloc(&cert, &der);
	if (rc < 0)
		goto out;
	rc = -EINVAL;
	cert->selfSigned = 0;
	cert->isCA = 0;
	cert->basicConstSet = 1;	/* emit CA:FALSE rather than omit it */
	serial_random(cert);
	/* Issuer copied from the CA's subject, raw bytes included, so path
	 * building matches names byte for byte. Subject stays empty. */
	if (wc_SetIssuerBuffer(cert, ca->cert.der, (int)ca->cert.len) != 0)
		goto out;
	rc = x509_san_build(cert->altNames, sizeof(cert->altNames), uri, dns, n_dns,
			    &cert->altNamesSz);
	if (rc < 0)
		goto out;
	rc = -EINVAL;
	cert->altNamesCrit = 1;	/* required with an empty subject (RFC 5280 4.2.1.6) */
	if (date_put(cert->beforeDate, &cert->beforeDateSz, now - 60) < 0 ||
	    date_put(cert->afterDate, &cert->afterDateSz, not_after) < 0)
		goto out;
	if (wc_SetKeyUsage(cert, "digitalSignature") != 0 ||
	    wc_SetExtKeyUsage(cert, "serverAuth,clientAuth") != 0 ||
	    wc_SetAuthKeyIdFromCert(cert, ca->cert.der, (int)ca->cert.len) != 0 ||
	    wc_SetSubjectKeyIdFromPublicKey_ex(cert, ECC_TYPE, &leaf) != 0)
		goto out;
	len = cert_make_sign(cert, &leaf, x509_key_ecc(ca->key), der, CA_DER_MAX);
	if (len < 0) {
		rc = len;
		goto out;
	}

	out = calloc(ca->n_chain + 2, sizeof(*out));
	if (!out) {
		rc = -ENOMEM;
		goto out;
	}
	rc = x509_der_to_pem(der, (size_t)len, "CERTIFICATE", &out[k], &pemlen);
	if (rc < 0)
		goto fail_out;
	k++;
	out[k] = strdup(ca->cert.pem);
	if (!out[k++]) {
		rc = -ENOMEM;
		goto fail_out;
	}
	for (i = 0; i < ca->n_chain; i++) {
		out[k] = strdup(ca->chain[i].pem);
		if (!out[k++]) {
			rc = -ENOMEM;
			goto fail_out;
		}
	}
	*chain = out;
	*n = k;
	rc = 0;
	goto out;	/* the chain is the caller's now */

fail_out:
	ca_chain_free(out, k);
out:
	wc_ecc_free(&leaf);
	free(der);
	free(cert);
	return rc;
}

void ca_chain_free(char **chain, size_t n)
{
	if (!chain)
		return;
	for (size_t i = 0; i < n; i++)
		free(chain[i]);
	free(chain);
}

const char *ca_bundle_pem(const struct ca *ca, size_t *len)
{
	if (len)
		*len = ca ? ca->bundle_len : 0;
	return ca ? ca->bundle : NULL;
}

const char *ca_bundle_path(const struct ca *ca)
{
	return ca ? ca->bundle_path : NULL;
}

time_t ca_not_after(const struct ca *ca)
{
	return ca->not_after;
}
