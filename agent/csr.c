/* SPDX-License-Identifier: Apache-2.0 */
/* CSR policy for X.509-SVIDs: a PEM PKCS#10 request is decoded and its
 * self-signature verified by wolfCrypt, then held to the SPIFFE rules (one
 * URI SAN that is a SPIFFE ID, no other SAN, no CN, an ECDSA P-256 key).
 * Every rejection names the rule broken, because the reason travels back to
 * the node as the gRPC error message. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csr.h"

/* A P-256 CSR with a maximal SPIFFE ID is under 4 KiB of PEM. */
#define CSR_PEM_MAX (64u * 1024)

static int reject(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int reject(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int sig_error(int rc)
{
	return rc == ASN_SIG_CONFIRM_E || rc == ASN_SIG_OID_E || rc == ASN_SIG_HASH_E ||
	       rc == ASN_SIG_KEY_E || rc == SIG_VERIFY_E;
}

/* The CSR's key must be ECDSA P-256; stores its SubjectPublicKeyInfo,
 * re-encoded by us so what we sign later is canonical. */
static int csr_key(struct csr *out, DecodedCert *dc, char *why, size_t whylen)
{
	ecc_key ecc;
	word32 idx = 0;
	uint8_t *der;
	int n, rc;

	if (dc->keyOID == RSAk)
		return reject(why, whylen, "key is RSA; only ECDSA P-256 is accepted");
	if (dc->keyOID != ECDSAk)
		return reject(why, whylen, "key type is not ECDSA P-256");
	if (wc_ecc_init(&ecc) != 0)
		return -ENOMEM;
	if (wc_EccPublicKeyDecode(dc->publicKey, &idx, &ecc, dc->pubKeySize) != 0) {
		rc = reject(why, whylen, "unreadable ECDSA public key");
		goto fail_ecc;
	}
	if (!ecc.dp || ecc.dp->id != ECC_SECP256R1) {
		rc = reject(why, whylen, "ECDSA key is not on curve P-256");
		goto fail_ecc;
	}
	der = malloc(128);
	if (!der) {
		rc = -ENOMEM;
		goto fail_ecc;
	}
	n = wc_EccPublicKeyToDer(&ecc, der, 128, 1);
	if (n <= 0) {
		free(der);
		rc = reject(why, whylen, "unreadable ECDSA public key");
		goto fail_ecc;
	}
	out->pubkey_der = der;
	out->pubkey_len = (size_t)n;
	out->key_is_p256 = 1;
	rc = 0;
fail_ecc:
	wc_ecc_free(&ecc);
	return rc;
}

/* SAN policy: exactly one URI, which must be a SPIFFE ID. */
static int csr_sans(struct csr *out, DecodedCert *dc, char *why, size_t whylen)
{
	const DNS_entry *e, *uri = NULL;
	int n_uri = 0;
	const char *bad;

	if (dc->altEmailNames)
		return reject(why, whylen, "has an email SAN");
	for (e = dc->altNames; e; e = e->next) {
		switch (e->type) {
		case ASN_URI_TYPE:
			if (n_uri++ == 0)
				uri = e;
			break;
		case ASN_DNS_TYPE:
			return reject(why, whylen, "has a DNS SAN");
		case ASN_IP_TYPE:
			return reject(why, whylen, "has an IP SAN");
		case ASN_RFC822_TYPE:
			return reject(why, whylen, "has an email SAN");
		default:
			return reject(why, whylen, "has a SAN that is not a URI (type %d)", e->type);
		}
	}
	if (n_uri == 0)
		return reject(why, whylen, "no URI SAN");
	if (n_uri > 1)
		return reject(why, whylen, "%d URI SANs", n_uri);
	if (!uri->name || uri->len <= 0 || (size_t)uri->len >= sizeof(out->uri))
		return reject(why, whylen, "URI SAN is not a SPIFFE ID: wrong length");
	if (spiffe_id_parse(uri->name, (size_t)uri->len, &out->id, &bad) < 0)
		return reject(why, whylen, "URI SAN is not a SPIFFE ID: %s", bad);
	memcpy(out->uri, uri->name, (size_t)uri->len);
	out->uri[uri->len] = '\0';
	return 0;
}

void csr_deinit(struct csr *c)
{
	if (!c)
		return;
	free(c->pubkey_der);
	memset(c, 0, sizeof(*c));
}

int csr_parse(const char *pem, size_t len, struct csr *out, char *why, size_t whylen)
{
	DecodedCert dc;
	uint8_t *der;
	int derlen, rc;

	memset(out, 0, sizeof(*out));
	if (why && whylen)
		why[0] = '\0';
	if (!pem || len == 0)
		return reject(why, whylen, "not a PEM CSR");
	if (len > CSR_PEM_MAX)
		return reject(why, whylen, "CSR is larger than %u bytes", CSR_PEM_MAX);
	der = malloc(len);	/* DER is shorter than its base64 */
	if (!der)
		return -ENOMEM;
	derlen = wc_CertPemToDer((const byte *)pem, (int)len, der, (int)len, CERTREQ_TYPE);
	if (derlen <= 0) {
		rc = reject(why, whylen, "not a PEM CSR");
		goto fail_der;
	}

	/* With VERIFY, wolfSSL checks a CSR's self-signature against the key
	 * inside it (ASN_SIG_CONFIRM_E on mismatch); the unit tests pin that
	 * down with a tampered CSR. */
	wc_InitDecodedCert(&dc, der, (word32)derlen, NULL);
	rc = wc_ParseCert(&dc, CERTREQ_TYPE, VERIFY, NULL);
	if (rc != 0) {
		if (sig_error(rc))
			rc = reject(why, whylen, "bad signature");
		else
			rc = reject(why, whylen, "unparsable CSR (wolfSSL error %d)", rc);
		goto fail_dc;
	}
	if (!dc.isCSR) {
		rc = reject(why, whylen, "not a PEM CSR");
		goto fail_dc;
	}
	rc = csr_key(out, &dc, why, whylen);
	if (rc < 0)
		goto fail_dc;
	/* Istio puts O in the subject, which is harmless; a CN would make the
	 * certificate name something other than its SPIFFE ID. */
	if (dc.subjectCN && dc.subjectCNLen > 0) {
		rc = reject(why, whylen, "has a common name");
		goto fail_dc;
	}
	rc = csr_sans(out, &dc, why, whylen);
	if (rc < 0)
		goto fail_dc;
	wc_FreeDecodedCert(&dc);
	free(der);
	return 0;

fail_dc:
	wc_FreeDecodedCert(&dc);
	csr_deinit(out);
fail_der:
	free(der);
	return rc;
}
