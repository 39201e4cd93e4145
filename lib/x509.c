/* SPDX-License-Identifier: Apache-2.0 */
/* X.509 helpers on wolfCrypt: ECDSA P-256 keys that live only in
 * sodium_malloc memory (guarded, never swapped, wiped on free), CSRs with a
 * single URI SAN and an empty subject, PEM/DER conversion and a readable
 * summary of a certificate. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include <weft/spiffe.h>
#include <weft/x509.h>

/* Largest PEM we accept as input; certificates and keys are a few KiB. */
#define X509_PEM_MAX (1u << 20)

struct x509_key {
	ecc_key ecc;
};

/* sodium_malloc needs sodium_init (page size, canaries); it is idempotent
 * and thread-safe, so every entry point that allocates calls it. */
static int sodium_ready(void)
{
	return sodium_init() < 0 ? -ENOMEM : 0;
}

static struct x509_key *key_alloc(void)
{
	struct x509_key *k;

	if (sodium_ready() < 0)
		return NULL;
	k = sodium_malloc(sizeof(*k));
	if (!k)
		return NULL;
	memset(k, 0, sizeof(*k));
	if (wc_ecc_init(&k->ecc) != 0) {
		sodium_free(k);
		return NULL;
	}
	return k;
}

void x509_key_free(struct x509_key *k)
{
	if (!k)
		return;
	wc_ecc_free(&k->ecc);
	sodium_free(k);		/* wipes */
}

static int key_is_p256(const ecc_key *ecc)
{
	return ecc->dp && ecc->dp->id == ECC_SECP256R1;
}

struct x509_key *x509_key_generate(void)
{
	struct x509_key *k = key_alloc();
	WC_RNG rng;

	if (!k)
		return NULL;
	if (wc_InitRng(&rng) != 0)
		goto fail_key;
	if (wc_ecc_make_key_ex(&rng, 32, &k->ecc, ECC_SECP256R1) != 0)
		goto fail_rng;
	wc_FreeRng(&rng);
	return k;

fail_rng:
	wc_FreeRng(&rng);
fail_key:
	x509_key_free(k);
	return NULL;
}

struct x509_key *x509_key_from_pem(const char *pem, size_t len)
{
	struct x509_key *k;
	uint8_t *der;
	word32 idx = 0;
	int derlen;

	if (!pem || len == 0 || len > X509_PEM_MAX || sodium_ready() < 0)
		return NULL;
	/* The DER is key material too: decode it into guarded memory. */
	der = sodium_malloc(len);
	if (!der)
		return NULL;
	derlen = wc_KeyPemToDer((const byte *)pem, (int)len, der, (int)len, NULL);
	if (derlen <= 0)
		goto fail_der;
	k = key_alloc();
	if (!k)
		goto fail_der;
	if (wc_EccPrivateKeyDecode(der, &idx, &k->ecc, (word32)derlen) != 0) {
		/* PKCS#8: strip the PrivateKeyInfo wrapper, then decode SEC1. */
		int n = ToTraditional(der, (word32)derlen);

		idx = 0;
		wc_ecc_free(&k->ecc);
		if (n <= 0 || wc_ecc_init(&k->ecc) != 0 ||
		    wc_EccPrivateKeyDecode(der, &idx, &k->ecc, (word32)n) != 0)
			goto fail_key;
	}
	if (!key_is_p256(&k->ecc) || k->ecc.type != ECC_PRIVATEKEY)
		goto fail_key;
	sodium_free(der);
	return k;

fail_key:
	x509_key_free(k);
fail_der:
	sodium_free(der);
	return NULL;
}

int x509_key_to_pem(const struct x509_key *k, char **pem, size_t *len)
{
	ecc_key *ecc = (ecc_key *)&k->ecc;	/* wolfCrypt is not const-clean */
	uint8_t *der;
	char *out;
	int derlen, pemlen, rc = -EINVAL;
	const size_t dercap = 256, pemcap = 512;

	*pem = NULL;
	*len = 0;
	if (sodium_ready() < 0)
		return -ENOMEM;
	der = sodium_malloc(dercap);
	if (!der)
		return -ENOMEM;
	derlen = wc_EccKeyToDer(ecc, der, dercap);
	if (derlen <= 0)
		goto fail_der;
	out = sodium_malloc(pemcap);
	if (!out) {
		rc = -ENOMEM;
		goto fail_der;
	}
	pemlen = wc_DerToPem(der, (word32)derlen, (byte *)out, pemcap - 1, ECC_PRIVATEKEY_TYPE);
	if (pemlen <= 0) {
		sodium_free(out);
		goto fail_der;
	}
	out[pemlen] = '\0';
	*pem = out;
	*len = (size_t)pemlen;
	rc = 0;
fail_der:
	sodium_free(der);
	return rc;
}

void x509_secret_free(char *p, size_t len)
{
	(void)len;	/* sodium_free knows the size and wipes it all */
	if (p)
		sodium_free(p);
}

int x509_key_public_der(const struct x509_key *k, uint8_t **der, size_t *len)
{
	ecc_key *ecc = (ecc_key *)&k->ecc;
	uint8_t *out;
	int n;

	*der = NULL;
	*len = 0;
	out = malloc(256);
	if (!out)
		return -ENOMEM;
	n = wc_EccPublicKeyToDer(ecc, out, 256, 1);
	if (n <= 0) {
		free(out);
		return -EINVAL;
	}
	*der = out;
	*len = (size_t)n;
	return 0;
}

void *x509_key_ecc(struct x509_key *k)
{
	return k ? &k->ecc : NULL;
}

static size_t der_len_size(size_t n)
{
	return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 4;
}

size_t x509_der_len_put(uint8_t *p, size_t n)
{
	if (n < 0x80) {
		p[0] = (uint8_t)n;
		return 1;
	}
	if (n < 0x100) {
		p[0] = 0x81;
		p[1] = (uint8_t)n;
		return 2;
	}
	if (n < 0x10000) {
		p[0] = 0x82;
		p[1] = (uint8_t)(n >> 8);
		p[2] = (uint8_t)n;
		return 3;
	}
	p[0] = 0x83;
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	return 4;
}

int x509_san_build(uint8_t *out, size_t cap, const char *uri,
		   const char *const *dns, size_t n_dns, int *outlen)
{
	size_t body = 0, pos, i, l;

	if (uri)
		body += 1 + der_len_size(strlen(uri)) + strlen(uri);
	for (i = 0; i < n_dns; i++)
		body += 1 + der_len_size(strlen(dns[i])) + strlen(dns[i]);
	if (body > 0xffff || 1 + der_len_size(body) + body > cap)
		return -ENOSPC;
	out[0] = 0x30;
	pos = 1 + x509_der_len_put(out + 1, body);
	if (uri) {
		l = strlen(uri);
		out[pos++] = 0x86;	/* [6] uniformResourceIdentifier */
		pos += x509_der_len_put(out + pos, l);
		memcpy(out + pos, uri, l);
		pos += l;
	}
	for (i = 0; i < n_dns; i++) {
		l = strlen(dns[i]);
		out[pos++] = 0x82;	/* [2] dNSName */
		pos += x509_der_len_put(out + pos, l);
		memcpy(out + pos, dns[i], l);
		pos += l;
	}
	*outlen = (int)pos;
	return 0;
}

int x509_csr_make(struct x509_key *k, const char *uri, char **pem, size_t *len)
{
	Cert *cert;
	WC_RNG rng;
	uint8_t *der;
	size_t dercap;
	int n, rc = -EINVAL;

	*pem = NULL;
	*len = 0;
	if (!k || !uri || spiffe_id_parse(uri, strlen(uri), NULL, NULL) < 0)
		return -EINVAL;
	/* Cert carries a 16 KiB SAN buffer: too big for a daemon's stack. */
	cert = calloc(1, sizeof(*cert));
	if (!cert)
		return -ENOMEM;
	dercap = 1024 + strlen(uri);
	der = malloc(dercap);
	if (!der) {
		rc = -ENOMEM;
		goto fail_cert;
	}
	if (wc_InitRng(&rng) != 0) {
		rc = -EIO;
		goto fail_der;
	}
	if (wc_InitCert(cert) != 0)
		goto fail_rng;
	cert->version = 0;	/* PKCS#10 v1 */
	cert->sigType = CTC_SHA256wECDSA;
	/* Subject stays empty: the identity is the URI SAN alone. */
	if (x509_san_build(cert->altNames, sizeof(cert->altNames), uri, NULL, 0,
			   &cert->altNamesSz) < 0)
		goto fail_rng;
	n = wc_MakeCertReq_ex(cert, der, (word32)dercap, ECC_TYPE, &k->ecc);
	if (n <= 0)
		goto fail_rng;
	n = wc_SignCert_ex(cert->bodySz, cert->sigType, der, (word32)dercap, ECC_TYPE,
			   &k->ecc, &rng);
	if (n <= 0)
		goto fail_rng;
	rc = x509_der_to_pem(der, (size_t)n, "CERTIFICATE REQUEST", pem, len);
fail_rng:
	wc_FreeRng(&rng);
fail_der:
	free(der);
fail_cert:
	free(cert);
	return rc;
}

int x509_pem_next(const char *pem, size_t len, size_t *pos, uint8_t **der, size_t *derlen)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	const char *b, *e;
	size_t blen;
	uint8_t *out;
	int n;

	*der = NULL;
	*derlen = 0;
	if (!pem || *pos >= len)
		return -ENOENT;
	b = memmem(pem + *pos, len - *pos, begin, sizeof(begin) - 1);
	if (!b)
		return -ENOENT;
	e = memmem(b, len - (size_t)(b - pem), end, sizeof(end) - 1);
	if (!e)
		return -EINVAL;
	e += sizeof(end) - 1;
	blen = (size_t)(e - b);
	if (blen > X509_PEM_MAX)
		return -EINVAL;
	out = malloc(blen);	/* base64 is longer than what it decodes to */
	if (!out)
		return -ENOMEM;
	n = wc_CertPemToDer((const byte *)b, (int)blen, out, (int)blen, CERT_TYPE);
	if (n <= 0) {
		free(out);
		return -EINVAL;
	}
	*pos = (size_t)(e - pem);
	*der = out;
	*derlen = (size_t)n;
	return 0;
}

int x509_der_to_pem(const uint8_t *der, size_t len, const char *label, char **pem, size_t *pemlen)
{
	size_t b64len, cap, pos, i;
	char *b64, *out;

	*pem = NULL;
	*pemlen = 0;
	if (!der || len == 0 || len > X509_PEM_MAX)
		return -EINVAL;
	if (!label)
		label = "CERTIFICATE";
	b64len = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	b64 = malloc(b64len);
	if (!b64)
		return -ENOMEM;
	sodium_bin2base64(b64, b64len, der, len, sodium_base64_VARIANT_ORIGINAL);
	b64len = strlen(b64);
	/* Two armour lines, the base64 in 64-column lines, NUL. */
	cap = 2 * (strlen(label) + 17) + b64len + b64len / 64 + 2 + 1;
	out = malloc(cap);
	if (!out) {
		free(b64);
		return -ENOMEM;
	}
	pos = (size_t)snprintf(out, cap, "-----BEGIN %s-----\n", label);
	for (i = 0; i < b64len; i += 64) {
		size_t n = b64len - i < 64 ? b64len - i : 64;

		memcpy(out + pos, b64 + i, n);
		pos += n;
		out[pos++] = '\n';
	}
	pos += (size_t)snprintf(out + pos, cap - pos, "-----END %s-----\n", label);
	free(b64);
	*pem = out;
	*pemlen = pos;
	return 0;
}

static time_t cert_date(const byte *tlv, int len)
{
	const byte *date;
	byte format;
	int dlen;
	struct tm tm;

	if (!tlv || wc_GetDateInfo(tlv, len, &date, &format, &dlen) != 0)
		return 0;
	memset(&tm, 0, sizeof(tm));
	if (wc_GetDateAsCalendarTime(date, dlen, format, &tm) != 0)
		return 0;
	return timegm(&tm);
}

static void copy_bounded(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void key_type_name(DecodedCert *dc, char *out, size_t cap)
{
	if (dc->keyOID == ECDSAk) {
		ecc_key ecc;
		word32 idx = 0;
		int id = -1;

		if (wc_ecc_init(&ecc) == 0) {
			if (wc_EccPublicKeyDecode(dc->publicKey, &idx, &ecc, dc->pubKeySize) == 0 &&
			    ecc.dp)
				id = ecc.dp->id;
			wc_ecc_free(&ecc);
		}
		snprintf(out, cap, "%s", id == ECC_SECP256R1 ? "ECDSA P-256" :
			 id == ECC_SECP384R1 ? "ECDSA P-384" :
			 id == ECC_SECP521R1 ? "ECDSA P-521" : "ECDSA");
	} else if (dc->keyOID == RSAk) {
		snprintf(out, cap, "RSA");
	} else if (dc->keyOID == ED25519k) {
		snprintf(out, cap, "Ed25519");
	} else {
		snprintf(out, cap, "unknown");
	}
}

int x509_cert_summary(const uint8_t *der, size_t len, struct x509_summary *out)
{
	DecodedCert dc;
	DNS_entry *e;
	int n_email_alt = 0, n_email_list = 0;

	memset(out, 0, sizeof(*out));
	if (!der || len == 0 || len > X509_PEM_MAX)
		return -EINVAL;
	wc_InitDecodedCert(&dc, der, (word32)len, NULL);
	/* A summary is for display: expired or untrusted certs are still shown. */
	if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0) {
		wc_FreeDecodedCert(&dc);
		return -EINVAL;
	}
	for (e = dc.altNames; e; e = e->next) {
		switch (e->type) {
		case ASN_URI_TYPE:
			if (out->n_uri++ == 0 && e->name)
				copy_bounded(out->uri, sizeof(out->uri), e->name, (size_t)e->len);
			break;
		case ASN_DNS_TYPE: out->n_dns++; break;
		case ASN_IP_TYPE: out->n_ip++; break;
		case ASN_RFC822_TYPE: n_email_alt++; break;
		}
	}
	/* Depending on build options wolfSSL lists e-mail names in one list,
	 * the other, or both; count the larger. */
	for (e = dc.altEmailNames; e; e = e->next)
		n_email_list++;
	out->n_email = n_email_alt > n_email_list ? n_email_alt : n_email_list;
	copy_bounded(out->subject, sizeof(out->subject), dc.subject, strnlen(dc.subject, sizeof(dc.subject)));
	copy_bounded(out->issuer, sizeof(out->issuer), dc.issuer, strnlen(dc.issuer, sizeof(dc.issuer)));
	for (int i = 0; i < dc.serialSz && (size_t)(2 * i + 2) < sizeof(out->serial); i++)
		snprintf(out->serial + 2 * i, 3, "%02x", dc.serial[i]);
	out->not_before = cert_date(dc.beforeDate, dc.beforeDateLen);
	out->not_after = cert_date(dc.afterDate, dc.afterDateLen);
	out->is_ca = dc.isCA;
	key_type_name(&dc, out->key_type, sizeof(out->key_type));
	wc_FreeDecodedCert(&dc);
	return 0;
}

int x509_ca_append(char **pem, size_t *len, const uint8_t *der, size_t derlen, char *why,
		   size_t whylen)
{
	DecodedCert dc;
	char *block = NULL, *grown;
	size_t blen = 0;
	int ok;

	wc_InitDecodedCert(&dc, der, (word32)derlen, NULL);
	ok = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
	if (ok == 0 && !dc.isCA)
		ok = 1;
	wc_FreeDecodedCert(&dc);
	if (ok) {
		snprintf(why, whylen, "%s", ok < 0 ? "does not parse" : "is not a CA");
		return -EINVAL;
	}
	if (x509_der_to_pem(der, derlen, "CERTIFICATE", &block, &blen) < 0)
		goto oom;
	grown = realloc(*pem, *len + blen + 1);
	if (!grown)
		goto oom;
	*pem = grown;
	memcpy(*pem + *len, block, blen);
	*len += blen;
	(*pem)[*len] = '\0';
	free(block);
	return 0;
oom:
	free(block);
	snprintf(why, whylen, "out of memory");
	return -ENOMEM;
}

int x509_ca_bundle(const char *pem, size_t len, size_t max, size_t cap, char **out,
		   size_t *outlen, char *why, size_t whylen)
{
	size_t pos = 0, derlen, n = 0;
	uint8_t *der;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (memmem(pem, len, "PRIVATE KEY-----", 16)) {
		snprintf(why, whylen, "it holds a private key; a bundle holds CA certificates only");
		return -EINVAL;
	}
	while ((rc = x509_pem_next(pem, len, &pos, &der, &derlen)) == 0) {
		char inner[96];

		rc = ++n > max ? -E2BIG : x509_ca_append(out, outlen, der, derlen, inner,
							sizeof(inner));
		free(der);
		if (!rc && *outlen > cap)
			rc = -EFBIG;
		if (rc) {
			if (rc == -E2BIG)
				snprintf(why, whylen, "more than %zu certificates", max);
			else if (rc == -EFBIG)
				snprintf(why, whylen, "its certificates come to over %zu bytes of PEM",
					 cap);
			else if (rc == -ENOMEM)
				snprintf(why, whylen, "out of memory");
			else
				snprintf(why, whylen, "certificate %zu %s", n, inner);
			goto fail;
		}
	}
	if (rc == -ENOENT && n)
		return 0;
	snprintf(why, whylen, "%s", rc == -ENOMEM ? "out of memory" : n ?
		 "a PEM block does not parse" : "no CERTIFICATE in it");
fail:
	free(*out);
	*out = NULL;
	*outlen = 0;
	return rc == -ENOMEM ? -ENOMEM : -EINVAL;
}
