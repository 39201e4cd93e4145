/* SPDX-License-Identifier: Apache-2.0 */
/* TLS 1.3 over wolfSSL with memory I/O: ciphertext comes in through
 * tls_feed and goes out through tls_out_peek/consume, so the same code runs
 * under io_uring, in unit tests and in the fuzzer. Peers are verified as
 * SPIFFE X.509-SVIDs (chain to the bundle, exactly one URI SAN, an allowed
 * trust domain, optionally an exact expected ID), and every failure leaves a
 * sentence in tls_error(). AES-256-GCM records go to the libsodium device. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/error-ssl.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include <sodium.h>

#include <weft/cryptodev.h>
#include <weft/log.h>
#include <weft/spiffe.h>
#include <weft/tls.h>

/* Largest TLS 1.3 ciphertext record: header + 2^14 + 256 of expansion. */
#define TLS_RECORD_MAX (5 + 16384 + 256)
/* Pending ciphertext from the peer: 64 KiB plus one record. */
#define TLS_IN_MAX (64 * 1024 + TLS_RECORD_MAX)
/* tls_write stops taking plaintext once this much ciphertext is pending;
 * the hard cap leaves room for the record in flight and alerts. */
#define TLS_OUT_SOFT (256 * 1024)
#define TLS_OUT_MAX (TLS_OUT_SOFT + 4 * TLS_RECORD_MAX)
/* Plaintext per wolfSSL_write: one full record. */
#define TLS_WRITE_CHUNK 16384
/* Buffers larger than this are released once drained, so an idle tunnel
 * holds no bulk memory. */
#define TLS_BUF_KEEP (32 * 1024)

#define TLS_DEFAULT_CIPHERS \
	"TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256"

/* ECC work (handshake steps, new contexts: the certificate work that comes
 * with them fills the cache too) since tls_cache_trim last looked, and
 * whether it has already trimmed the cache for this quiet spell. */
static unsigned long tls_ecc_uses;
static int tls_cache_trimmed;

/* With federation: the roots of one trust domain, apart from the others. */
struct tls_td_roots {
	char *td;			/* NULL: our own bundle, for every other domain */
	char *pem;			/* its roots */
	size_t len;
};

/* Federation: at most this many certificates above the leaf (SVID chains
 * are a leaf, an intermediate or two and perhaps the root). */
#define TLS_CHAIN_MAX 8

struct tls_ctx {
	WOLFSSL_CTX *wctx;
	struct tls_td_roots *roots;	/* federation only: [0] is our own bundle */
	size_t n_roots;
	enum tls_role role;
	enum tls_peer_auth peer_auth;
	char **trust_domains;	/* NULL-terminated copies */
	char *alpn;		/* NULL: no ALPN */
	unsigned refs;		/* owners: creator, tls_ctx_ref callers, each tls */
};

struct tls_buf {
	uint8_t *p;
	size_t off;		/* first pending byte */
	size_t len;		/* end of pending bytes */
	size_t cap;
};

struct tls {
	struct tls_ctx *ctx;
	WOLFSSL *ssl;
	struct tls_buf in;	/* ciphertext from the peer */
	struct tls_buf out;	/* ciphertext for the peer */
	char *expect;		/* client: exact server SPIFFE ID required */
	char *peer;		/* the verified peer's SPIFFE ID */
	unsigned done : 1;	/* handshake complete and peer accepted */
	unsigned failed : 1;	/* fatal error; only tls_out_* still work */
	unsigned leaf_checked : 1; /* verify callback accepted the leaf */
	unsigned alpn_ok : 1;	/* ctx->alpn was negotiated */
	uint8_t *chain[TLS_CHAIN_MAX];	/* federation: the peer's certificates above */
	size_t chain_len[TLS_CHAIN_MAX];	/* the leaf, as it sent them */
	size_t n_chain;
	char err[TLS_ERR_MAX];
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_ret;

static void tls_global_init(void)
{
	int ret;

	if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
		tls_init_ret = -EIO;
		return;
	}
	ret = cryptodev_init();
	if (ret > 0)
		log_info("tls: AES-256-GCM records through %s", cryptodev_gcm_engine());
	else if (ret == -ENOTSUP)
		log_warn("tls: no fast AES-256-GCM engine; it runs in wolfSSL software");
	else if (ret < 0)
		log_warn("tls: AES-256-GCM device unavailable (%s); using wolfSSL software",
			 strerror(-ret));
}

static void tls_seterr(struct tls *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Record the first reason only: later errors are usually consequences. */
static void tls_seterr(struct tls *t, const char *fmt, ...)
{
	va_list ap;

	if (t->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
}

static int ctx_seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Context errors go to the caller's buffer. Returns -EINVAL, for
 * "return ctx_seterr(...)". */
static int ctx_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static const char *tls_wolf_reason(int code, char *buf, size_t len)
{
	wolfSSL_ERR_error_string_n((unsigned long)code, buf, (unsigned long)len);
	return buf;
}

/* "what: <wolfSSL's reason for code>" as the context error; -EINVAL. */
static int ctx_wolf_fail(char *err, size_t errlen, const char *what, int code)
{
	char buf[WOLFSSL_MAX_ERROR_SZ];

	return ctx_seterr(err, errlen, "%s: %s", what, tls_wolf_reason(code, buf, sizeof(buf)));
}

/* ---- memory I/O ---------------------------------------------------------- */

static int tls_buf_reserve(struct tls_buf *b, size_t need, size_t max)
{
	size_t cap;
	uint8_t *p;

	if (b->off && b->len + need > b->cap) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + need <= b->cap)
		return 0;
	if (b->len + need > max)
		return -ENOBUFS;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + need)
		cap *= 2;
	if (cap > max)
		cap = max;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void tls_buf_drained(struct tls_buf *b)
{
	b->off = b->len = 0;
	if (b->cap > TLS_BUF_KEEP) {
		free(b->p);
		b->p = NULL;
		b->cap = 0;
	}
}

static int tls_on_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls *t = arg;
	size_t n = t->in.len - t->in.off;

	(void)ssl;
	if (!n)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	if (sz >= 0 && n > (size_t)sz)
		n = (size_t)sz;
	memcpy(buf, t->in.p + t->in.off, n);
	t->in.off += n;
	if (t->in.off == t->in.len)
		tls_buf_drained(&t->in);
	return (int)n;
}

static int tls_on_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls *t = arg;

	(void)ssl;
	if (sz <= 0)
		return 0;
	/* tls_write keeps the pending output under TLS_OUT_SOFT, so hitting
	 * the hard cap means the caller stopped draining; fail loudly rather
	 * than grow without bound. */
	if (tls_buf_reserve(&t->out, (size_t)sz, TLS_OUT_MAX) < 0) {
		tls_seterr(t, "TLS output buffer full (%d bytes pending)",
			   (int)(t->out.len - t->out.off));
		return WOLFSSL_CBIO_ERR_GENERAL;
	}
	memcpy(t->out.p + t->out.len, buf, (size_t)sz);
	t->out.len += (size_t)sz;
	return sz;
}

/* ---- SPIFFE peer verification -------------------------------------------- */

static int tls_td_allowed(const char *const *tds, const char *td)
{
	for (const char *const *p = tds; p && *p; p++)
		if (strcmp(*p, td) == 0)
			return 1;
	return 0;
}

static int tls_svid_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A reason for tls_svid_check's caller. Returns ret, for "return ...". */
static int tls_svid_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* expect is an exact ID, or one ending in '/': then any ID that is it plus
 * one more non-empty segment (a node of a trust domain, whichever). */
static int tls_expect_match(const char *expect, const char *id, size_t len)
{
	size_t n = strlen(expect);

	if (!n || expect[n - 1] != '/')
		return n == len && !memcmp(expect, id, len);
	return len > n && !memcmp(expect, id, n) && !memchr(id + n, '/', len - n);
}

int tls_svid_check(const uint8_t *der, size_t len, int verify,
		   const char *const *trust_domains, const char *expect,
		   char **id_out, char *err, size_t errlen)
{
	struct DecodedCert *dc;
	struct spiffe_id *id = NULL;
	const DNS_entry *uri = NULL;
	char shown[160];
	const char *why = NULL;
	int nuri = 0, ret = -EPROTO;

	*id_out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (len > UINT32_MAX) {
		if (verify)
			tls_svid_fail(err, errlen, 0, "peer certificate does not parse");
		return -EPROTO;
	}
	dc = malloc(sizeof(*dc));
	if (!dc)
		return tls_svid_fail(err, errlen, -ENOMEM,
				     "out of memory checking the peer certificate");
	wc_InitDecodedCert(dc, der, (word32)len, NULL);
	if (wc_ParseCert(dc, CERT_TYPE, NO_VERIFY, NULL) != 0) {
		if (verify)
			tls_svid_fail(err, errlen, 0, "peer certificate does not parse");
		goto out;
	}
	for (const DNS_entry *e = dc->altNames; e; e = e->next) {
		if (e->type == ASN_URI_TYPE) {
			nuri++;
			uri = e;
		}
	}
	if (!verify) {
		ret = 0;
		if (nuri == 1)
			*id_out = strndup(uri->name, (size_t)uri->len);
		goto out;
	}
	if (nuri == 0) {
		tls_svid_fail(err, errlen, 0,
			      "peer certificate has no URI SAN, so it is not a SPIFFE SVID");
		goto out;
	}
	if (nuri > 1) {
		tls_svid_fail(err, errlen, 0,
			      "peer certificate has %d URI SANs; a SPIFFE SVID has exactly one", nuri);
		goto out;
	}
	log_escape(shown, sizeof(shown), uri->name, (size_t)uri->len);
	if (dc->isCA) {
		tls_svid_fail(err, errlen, 0, "peer leaf certificate %s is a CA (cA=true)", shown);
		goto out;
	}
	id = malloc(sizeof(*id));
	if (!id) {
		ret = tls_svid_fail(err, errlen, -ENOMEM,
				    "out of memory checking the peer certificate");
		goto out;
	}
	if (spiffe_id_parse(uri->name, (size_t)uri->len, id, &why) < 0) {
		tls_svid_fail(err, errlen, 0, "peer URI SAN %s is not a SPIFFE ID: %s", shown,
			      why ? why : "invalid");
		goto out;
	}
	if (!tls_td_allowed(trust_domains, id->td)) {
		tls_svid_fail(err, errlen, 0, "peer SPIFFE ID %s not in an allowed trust domain",
			      shown);
		goto out;
	}
	if (expect && !tls_expect_match(expect, uri->name, (size_t)uri->len)) {
		tls_svid_fail(err, errlen, 0, "peer is %s, expected %s%s", shown, expect,
			      expect[0] && expect[strlen(expect) - 1] == '/' ? "<name>" : "");
		goto out;
	}
	*id_out = strndup(uri->name, (size_t)uri->len);
	if (!*id_out) {
		ret = tls_svid_fail(err, errlen, -ENOMEM,
				    "out of memory checking the peer certificate");
		goto out;
	}
	ret = 0;
out:
	free(id);
	wc_FreeDecodedCert(dc);
	free(dc);
	return ret;
}

/* Check the peer's leaf (DER) as an X.509-SVID (tls_svid_check) and
 * remember its ID. Returns 0 or -EPROTO with the reason in t->err. With
 * check == 0 (peer auth NONE) the ID is only recorded, when there is
 * exactly one. */
static int tls_leaf_check(struct tls *t, const uint8_t *der, size_t len, int check)
{
	char why[TLS_ERR_MAX], *id;
	int ret;

	ret = tls_svid_check(der, len, check, (const char *const *)t->ctx->trust_domains,
			     t->expect, &id, why, sizeof(why));
	if (ret < 0) {
		if (why[0])
			tls_seterr(t, "%s", why);
		return ret;
	}
	if (!check) {
		if (!t->peer)
			t->peer = id;
		else
			free(id);
		return 0;
	}
	free(t->peer);
	t->peer = id;
	t->leaf_checked = 1;
	return 0;
}

/* wolfSSL maps its chain errors to OpenSSL's X509_V_ERR codes, but 5.5.4's
 * wolfSSL_X509_verify_cert_error_string names only a few of them: an
 * expired or a self-signed peer certificate came out as "unknown error
 * number". Name the ones a peer can cause. */
static const char *tls_verify_reason(long err)
{
	static __thread char unknown[48];
	const char *s;

	switch (err) {
	case X509_V_ERR_CERT_NOT_YET_VALID:
	case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
		return "certificate is not yet valid (notBefore is in the future)";
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
		return "certificate has expired (notAfter is in the past)";
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		return "self-signed certificate";
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return "self-signed certificate in the chain";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
		return "unable to get local issuer certificate";
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return "certificate signature failure";
	case X509_V_ERR_INVALID_CA:
		return "invalid CA certificate";
	case X509_V_ERR_CERT_CHAIN_TOO_LONG:
	case X509_V_ERR_PATH_LENGTH_EXCEEDED:
		return "certificate chain too long";
	}
	s = wolfSSL_X509_verify_cert_error_string(err);
	if (s && strcmp(s, "unknown error number"))
		return s;
	snprintf(unknown, sizeof(unknown), "X.509 verify error %ld", err);
	return unknown;
}

static int tls_keep_chain(struct tls *t, const unsigned char *der, size_t len)
{
	if (t->n_chain == TLS_CHAIN_MAX) {
		tls_seterr(t, "peer certificate chain longer than %d certificates", TLS_CHAIN_MAX + 1);
		return -E2BIG;
	}
	t->chain[t->n_chain] = malloc(len);
	if (!t->chain[t->n_chain]) {
		tls_seterr(t, "out of memory");
		return -ENOMEM;
	}
	memcpy(t->chain[t->n_chain], der, len);
	t->chain_len[t->n_chain++] = len;
	return 0;
}

/* May this certificate issue others: cA=true, and keyCertSign if it has a
 * key usage. (wolfSSL_CertManagerLoadCABuffer would take a leaf as a CA.) */
static int tls_der_is_issuer(const uint8_t *der, size_t len)
{
	struct DecodedCert *dc = malloc(sizeof(*dc));
	int ok;

	if (!dc)
		return 0;
	wc_InitDecodedCert(dc, der, (word32)len, NULL);
	ok = wc_ParseCert(dc, CERT_TYPE, NO_VERIFY, NULL) == 0 && dc->isCA &&
	     (!dc->extKeyUsageSet || (dc->extKeyUsage & KEYUSE_KEY_CERT_SIGN));
	wc_FreeDecodedCert(dc);
	free(dc);
	return ok;
}

/* Does the leaf reach roots through the certificates the peer sent? A
 * fresh manager holds only those roots; each sent certificate that
 * verifies under it and may issue joins it, in any order, until none
 * does; then the leaf must verify. At most TLS_CHAIN_MAX passes. */
static int tls_chain_reaches(const struct tls *t, const struct tls_td_roots *r,
			     const uint8_t *leaf, size_t len)
{
	WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
	unsigned char in[TLS_CHAIN_MAX] = { 0 };
	int grew = 1, ok = 0;

	if (!cm)
		return 0;
	if (wolfSSL_CertManagerLoadCABuffer(cm, (const unsigned char *)r->pem, (long)r->len,
					    WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
		goto out;
	while (grew) {
		grew = 0;
		for (size_t i = 0; i < t->n_chain; i++) {
			if (in[i] || wolfSSL_CertManagerVerifyBuffer(cm, t->chain[i],
					(long)t->chain_len[i], WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
				continue;
			in[i] = 1;
			if (tls_der_is_issuer(t->chain[i], t->chain_len[i]) &&
			    wolfSSL_CertManagerLoadCABuffer(cm, t->chain[i], (long)t->chain_len[i],
							    WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS)
				grew = 1;
		}
	}
	ok = wolfSSL_CertManagerVerifyBuffer(cm, leaf, (long)len, WOLFSSL_FILETYPE_ASN1) ==
	     WOLFSSL_SUCCESS;
out:
	wolfSSL_CertManagerFree(cm);
	return ok;
}

/* Federation: the verified peer's leaf must reach a root of its own trust
 * domain's bundle through the certificates it sent. wolfSSL verified the
 * chain against all the bundles together, but checks each certificate
 * against its whole store, not that each was issued by the next: a CA of
 * one domain could sign a leaf of another and append any certificate of
 * that domain. So the path is built again here from that domain's roots
 * alone. */
static int tls_td_roots_check(struct tls *t, const uint8_t *leaf, size_t len)
{
	const struct tls_ctx *c = t->ctx;
	const struct tls_td_roots *r = c->n_roots ? &c->roots[0] : NULL;
	const char *td, *slash;
	size_t tdl;

	if (!c->n_roots || !t->peer)
		return 0;
	td = t->peer + strlen("spiffe://");
	slash = strchr(td, '/');
	tdl = slash ? (size_t)(slash - td) : strlen(td);
	for (size_t i = 1; i < c->n_roots; i++)
		if (strlen(c->roots[i].td) == tdl && !memcmp(c->roots[i].td, td, tdl))
			r = &c->roots[i];
	if (tls_chain_reaches(t, r, leaf, len))
		return 0;
	tls_seterr(t, "peer %s does not chain to the bundle of trust domain %.*s%s", t->peer,
		   (int)tdl, td, r->td ? "" : " (ours; a federated CA may not vouch for it)");
	return -EPROTO;
}

/* wolfSSL calls this for every certificate of the peer's chain (it is built
 * with WOLFSSL_ALWAYS_VERIFY_CB), the leaf last at depth 0. Rejecting here,
 * rather than after the handshake, makes wolfSSL send the peer an alert. */
static int tls_on_verify(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
	struct tls *t = store ? store->userCtx : NULL;
	const unsigned char *der;
	int len = 0;

	if (!t)
		return 0;
	if (!preverify) {
		tls_seterr(t, "peer certificate chain does not verify against the trust bundle: %s",
			   tls_verify_reason(store->error));
		return 0;
	}
	der = store->current_cert ? wolfSSL_X509_get_der(store->current_cert, &len) : NULL;
	if (store->error_depth != 0) {
		if (t->ctx->n_roots && der && len > 0 && tls_keep_chain(t, der, (size_t)len))
			return 0;
		return 1;
	}
	if (!der || len <= 0) {
		/* Also called when the peer sent an empty Certificate. */
		if (t->ctx->peer_auth == TLS_PEER_OPTIONAL && t->ctx->role == TLS_SERVER)
			return 1;
		tls_seterr(t, "peer presented no certificate");
		return 0;
	}
	if (tls_leaf_check(t, der, (size_t)len, 1))
		return 0;
	return tls_td_roots_check(t, der, (size_t)len) == 0;
}

/* After the handshake: make sure the SPIFFE checks really ran on the leaf
 * the peer presented (they must have, unless wolfSSL skipped the callback),
 * and in NONE mode record the peer's ID for tls_peer_id. */
static int tls_peer_finish(struct tls *t)
{
	WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(t->ssl);
	int n = chain ? wolfSSL_get_chain_count(chain) : 0;
	enum tls_peer_auth auth = t->ctx->peer_auth;
	const uint8_t *der = NULL;
	int len = 0;

	if (n > 0) {
		der = wolfSSL_get_chain_cert(chain, 0);
		len = wolfSSL_get_chain_length(chain, 0);
	}
	if (auth == TLS_PEER_NONE) {
		if (der && len > 0)
			tls_leaf_check(t, der, (size_t)len, 0);
		return 0;
	}
	if (t->leaf_checked)
		return 0;
	if (!der || len <= 0) {
		if (auth == TLS_PEER_OPTIONAL && t->ctx->role == TLS_SERVER)
			return 0;
		tls_seterr(t, "peer presented no certificate");
		return -EPROTO;
	}
	if (tls_leaf_check(t, der, (size_t)len, 1))
		return -EPROTO;
	for (int i = t->n_chain ? n : 1; t->ctx->n_roots && i < n; i++)
		if (wolfSSL_get_chain_length(chain, i) > 0 &&
		    tls_keep_chain(t, wolfSSL_get_chain_cert(chain, i),
				   (size_t)wolfSSL_get_chain_length(chain, i)))
			return -EPROTO;
	return tls_td_roots_check(t, der, (size_t)len);
}

/* ---- errors -------------------------------------------------------------- */

/* wolfSSL 5.5.4 has no names for the TLS 1.3 additions. */
static const char *tls_alert_name(int code)
{
	static __thread char unknown[32];
	const char *name;

	switch (code) {
	case 109: return "missing_extension";
	case 115: return "unknown_psk_identity";
	case 116: return "certificate_required";
	case 120: return "no_application_protocol";
	}
	name = wolfSSL_alert_desc_string_long(code);
	if (name)
		return name;
	snprintf(unknown, sizeof(unknown), "alert %d", code);
	return unknown;
}

/* Turn wolfSSL's error for the failed call into a sentence (unless the
 * verify callback already wrote a better one) and mark t dead. */
static int tls_fail(struct tls *t, int ret)
{
	int e = wolfSSL_get_error(t->ssl, ret);
	WOLFSSL_ALERT_HISTORY h;
	char buf[WOLFSSL_MAX_ERROR_SZ];

	t->failed = 1;
	if (t->err[0])
		return -EPROTO;
	switch (e) {
	case FATAL_ERROR:
		if (wolfSSL_get_alert_history(t->ssl, &h) == WOLFSSL_SUCCESS &&
		    h.last_rx.code >= 0) {
			tls_seterr(t, "TLS alert from peer: %s", tls_alert_name(h.last_rx.code));
			break;
		}
		tls_seterr(t, "TLS alert from peer");
		break;
	case NO_PEER_CERT:
		tls_seterr(t, "peer presented no certificate");
		break;
	case VERIFY_MAC_ERROR:
	case DECRYPT_ERROR:
	case AES_GCM_AUTH_E:
		tls_seterr(t, "bad record MAC: a TLS record was corrupted or forged");
		break;
	case MATCH_SUITE_ERROR:
		tls_seterr(t, "no TLS 1.3 cipher suite in common with the peer");
		break;
	case VERSION_ERROR:
		tls_seterr(t, "peer does not speak TLS 1.3");
		break;
	case UNKNOWN_ALPN_PROTOCOL_NAME_E:
		tls_seterr(t, "peer does not support ALPN %s", t->ctx->alpn ? t->ctx->alpn : "?");
		break;
	default:
		if (e <= ASN_PARSE_E && e >= ASN_PARSE_E - 100) {
			tls_seterr(t, "peer certificate chain does not verify against the trust bundle: %s",
				   tls_wolf_reason(e, buf, sizeof(buf)));
			break;
		}
		tls_seterr(t, "TLS error: %s (%d)", tls_wolf_reason(e, buf, sizeof(buf)), e);
		break;
	}
	return -EPROTO;
}

/* ---- context ------------------------------------------------------------- */

static void tls_strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

static char **tls_strv_dup(const char *const *v)
{
	size_t n = 0;
	char **c;

	while (v && v[n])
		n++;
	c = calloc(n + 1, sizeof(*c));
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i] = strdup(v[i]);
		if (!c[i]) {
			tls_strv_free(c);
			return NULL;
		}
	}
	return c;
}

/* wolfSSL 5.5.4's wolfSSL_CTX_check_private_key accepts any EC key, so
 * compare public points ourselves: a mismatched key would otherwise only
 * show up as the peer failing CertificateVerify. Returns 0 when they match
 * (or the key is not EC, left to wolfSSL), -EINVAL when they differ. The
 * DER copy of the private key is wiped before it is freed. */
static int tls_key_matches_cert(const struct tls_ctx_opts *o)
{
	struct DecodedCert *dc = NULL;
	uint8_t *kder = NULL, *cder = NULL, pub[133];
	word32 idx = 0, publen = sizeof(pub);
	int klen, clen, ret = 0;
	ecc_key k;

	if (o->key_len > 16384 || o->chain_len > 1 << 20)
		return -EINVAL;
	kder = malloc(o->key_len);
	cder = malloc(o->chain_len);
	dc = malloc(sizeof(*dc));
	if (!kder || !cder || !dc) {
		ret = -ENOMEM;
		goto out_free;
	}
	klen = wc_KeyPemToDer((const unsigned char *)o->key_pem, (int)o->key_len, kder,
			      (int)o->key_len, NULL);
	clen = wc_CertPemToDer((const unsigned char *)o->chain_pem, (int)o->chain_len, cder,
			       (int)o->chain_len, CERT_TYPE);
	if (klen <= 0 || clen <= 0)
		goto out_free;
	/* PKCS#8 ("PRIVATE KEY"): skip to the SEC1 key inside. */
	if (wc_GetPkcs8TraditionalOffset(kder, &idx, (word32)klen) < 0)
		idx = 0;
	if (wc_ecc_init(&k) != 0)
		goto out_free;
	if (wc_EccPrivateKeyDecode(kder, &idx, &k, (word32)klen) != 0)
		goto out_key;	/* not EC: wolfSSL's own loading decides */
	if (k.type == ECC_PRIVATEKEY_ONLY && wc_ecc_make_pub(&k, NULL) != 0)
		goto out_key;
	if (wc_ecc_export_x963(&k, pub, &publen) != 0)
		goto out_key;
	wc_InitDecodedCert(dc, cder, (word32)clen, NULL);
	if (wc_ParseCert(dc, CERT_TYPE, NO_VERIFY, NULL) == 0) {
		/* The certificate's key is the same uncompressed point, possibly
		 * wrapped in SubjectPublicKeyInfo: compare the trailing bytes. */
		if (dc->keyOID != ECDSAk || dc->pubKeySize < publen ||
		    memcmp(dc->publicKey + dc->pubKeySize - publen, pub, publen) != 0)
			ret = -EINVAL;
	}
	wc_FreeDecodedCert(dc);
out_key:
	wc_ecc_free(&k);
	sodium_memzero(&k, sizeof(k));
out_free:
	if (kder)
		sodium_memzero(kder, o->key_len);
	free(kder);
	free(cder);
	free(dc);
	return ret;
}

static int tls_ctx_load_identity(struct tls_ctx *c, const struct tls_ctx_opts *o, char *err,
				 size_t errlen)
{
	int ret;

	if (!o->chain_pem && !o->key_pem) {
		if (o->role == TLS_SERVER)
			return ctx_seterr(err, errlen, "a TLS server needs a certificate chain and key");
		return 0;
	}
	if (!o->chain_pem || !o->key_pem)
		return ctx_seterr(err, errlen, "certificate chain and private key must be given together");
	ret = wolfSSL_CTX_use_certificate_chain_buffer_format(
		c->wctx, (const unsigned char *)o->chain_pem, (long)o->chain_len,
		WOLFSSL_FILETYPE_PEM);
	if (ret != WOLFSSL_SUCCESS)
		return ctx_wolf_fail(err, errlen, "cannot load our certificate chain", ret);
	/* wolfSSL decodes the PEM into its own DER buffer, which it wipes when
	 * freed; no copy of the key is made here. */
	ret = wolfSSL_CTX_use_PrivateKey_buffer(c->wctx, (const unsigned char *)o->key_pem,
						(long)o->key_len, WOLFSSL_FILETYPE_PEM);
	if (ret != WOLFSSL_SUCCESS)
		return ctx_wolf_fail(err, errlen, "cannot load our private key", ret);
	if (wolfSSL_CTX_check_private_key(c->wctx) != WOLFSSL_SUCCESS ||
	    tls_key_matches_cert(o) == -EINVAL)
		return ctx_seterr(err, errlen, "our private key does not match our certificate");
	return 0;
}

/* A copy of a bundle's roots, which must load. */
static int tls_roots_keep(struct tls_td_roots *r, const char *pem, size_t len)
{
	WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
	int ok = cm && wolfSSL_CertManagerLoadCABuffer(cm, (const unsigned char *)pem, (long)len,
						       WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS;

	if (cm)
		wolfSSL_CertManagerFree(cm);
	if (!ok || !(r->pem = malloc(len)))
		return -1;
	memcpy(r->pem, pem, len);
	r->len = len;
	return 0;
}

/* Every federated bundle goes into wolfSSL's store too (so it can build
 * the chain), and each, with ours, is kept apart for tls_td_roots_check. */
static int tls_ctx_federate(struct tls_ctx *c, const struct tls_ctx_opts *o, char *err,
			    size_t errlen)
{
	c->roots = calloc(o->n_federated + 1, sizeof(*c->roots));
	if (!c->roots)
		return ctx_seterr(err, errlen, "out of memory");
	c->n_roots = 1;
	if (tls_roots_keep(&c->roots[0], o->bundle_pem, o->bundle_len))
		return ctx_seterr(err, errlen, "cannot load the trust bundle");
	for (size_t i = 0; i < o->n_federated; i++) {
		const struct tls_bundle *b = &o->federated[i];
		struct tls_td_roots *r = &c->roots[c->n_roots];

		if (!b->trust_domain || !b->trust_domain[0] || strchr(b->trust_domain, '/') ||
		    !b->pem || !b->len)
			return ctx_seterr(err, errlen, "federated bundle %zu: a trust domain and "
					  "its roots are needed", i);
		for (size_t j = 1; j < c->n_roots; j++)
			if (!strcmp(c->roots[j].td, b->trust_domain))
				return ctx_seterr(err, errlen, "trust domain %s has two federated "
						  "bundles", b->trust_domain);
		r->td = strdup(b->trust_domain);
		c->n_roots++;
		if (!r->td || tls_roots_keep(r, b->pem, b->len))
			return ctx_seterr(err, errlen, "cannot load the bundle of trust domain %s",
					  b->trust_domain);
		if (wolfSSL_CTX_load_verify_buffer(c->wctx, (const unsigned char *)b->pem,
						   (long)b->len, WOLFSSL_FILETYPE_PEM) !=
		    WOLFSSL_SUCCESS)
			return ctx_seterr(err, errlen, "cannot load the bundle of trust domain %s",
					  b->trust_domain);
	}
	return 0;
}

static int tls_ctx_setup_peer_auth(struct tls_ctx *c, const struct tls_ctx_opts *o,
				   char *err, size_t errlen)
{
	int mode, ret;

	if (o->peer_auth == TLS_PEER_NONE) {
		wolfSSL_CTX_set_verify(c->wctx, WOLFSSL_VERIFY_NONE, NULL);
		return 0;
	}
	if (!o->bundle_pem || !o->bundle_len)
		return ctx_seterr(err, errlen, "peer verification needs a trust bundle");
	if (!o->trust_domains || !o->trust_domains[0])
		return ctx_seterr(err, errlen, "peer verification needs at least one allowed trust domain");
	ret = wolfSSL_CTX_load_verify_buffer(c->wctx, (const unsigned char *)o->bundle_pem,
					     (long)o->bundle_len, WOLFSSL_FILETYPE_PEM);
	if (ret != WOLFSSL_SUCCESS)
		return ctx_wolf_fail(err, errlen, "cannot load the trust bundle", ret);
	if (o->n_federated && tls_ctx_federate(c, o, err, errlen))
		return -EINVAL;
	mode = WOLFSSL_VERIFY_PEER;
	if (o->peer_auth == TLS_PEER_REQUIRE || o->role == TLS_CLIENT)
		mode |= WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	wolfSSL_CTX_set_verify(c->wctx, mode, tls_on_verify);
	return 0;
}

struct tls_ctx *tls_ctx_new(const struct tls_ctx_opts *o, char *err, size_t errlen)
{
	static int groups[] = { WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1 };
	struct tls_ctx *c;
	int devid;

	__atomic_add_fetch(&tls_ecc_uses, 1, __ATOMIC_RELAXED);
	ctx_seterr(err, errlen, "no error");
	if (!o || (o->role != TLS_CLIENT && o->role != TLS_SERVER) ||
	    o->peer_auth < TLS_PEER_REQUIRE || o->peer_auth > TLS_PEER_NONE) {
		ctx_seterr(err, errlen, "invalid TLS options");
		return NULL;
	}
	pthread_once(&tls_once, tls_global_init);
	if (tls_init_ret < 0) {
		ctx_seterr(err, errlen, "wolfSSL failed to initialise");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail_oom;
	c->refs = 1;
	c->role = o->role;
	c->peer_auth = o->peer_auth;
	c->trust_domains = tls_strv_dup(o->trust_domains);
	if (!c->trust_domains)
		goto fail_oom;
	if (o->alpn && o->alpn[0]) {
		if (strlen(o->alpn) > 255 || strchr(o->alpn, ',')) {
			ctx_seterr(err, errlen, "invalid ALPN protocol \"%s\"", o->alpn);
			goto fail;
		}
		c->alpn = strdup(o->alpn);
		if (!c->alpn)
			goto fail_oom;
	}
	c->wctx = wolfSSL_CTX_new(o->role == TLS_CLIENT ? wolfTLSv1_3_client_method()
							: wolfTLSv1_3_server_method());
	if (!c->wctx)
		goto fail_oom;
	if (wolfSSL_CTX_set_cipher_list(c->wctx, o->ciphers ? o->ciphers : TLS_DEFAULT_CIPHERS) !=
	    WOLFSSL_SUCCESS) {
		ctx_seterr(err, errlen, "no usable TLS 1.3 cipher suite in \"%s\"",
			   o->ciphers ? o->ciphers : TLS_DEFAULT_CIPHERS);
		goto fail;
	}
	if (wolfSSL_CTX_set_groups(c->wctx, groups, 2) != WOLFSSL_SUCCESS) {
		ctx_seterr(err, errlen, "cannot set key exchange groups X25519, P-256");
		goto fail;
	}
	if (tls_ctx_load_identity(c, o, err, errlen) < 0)
		goto fail;
	if (tls_ctx_setup_peer_auth(c, o, err, errlen) < 0)
		goto fail;
	wolfSSL_CTX_SetIORecv(c->wctx, tls_on_recv);
	wolfSSL_CTX_SetIOSend(c->wctx, tls_on_send);
	/* Tunnels are long-lived and never resumed: no tickets, no cache. */
	if (o->role == TLS_SERVER)
		wolfSSL_CTX_no_ticket_TLSv13(c->wctx);
	wolfSSL_CTX_set_session_cache_mode(c->wctx, WOLFSSL_SESS_CACHE_OFF);
	devid = cryptodev_id();
	if (!o->no_crypto_device && devid != INVALID_DEVID &&
	    wolfSSL_CTX_SetDevId(c->wctx, devid) != WOLFSSL_SUCCESS)
		log_warn("tls: cannot attach the AES-256-GCM device; using wolfSSL software");
	return c;

fail_oom:
	ctx_seterr(err, errlen, "out of memory");
fail:
	tls_ctx_free(c);
	return NULL;
}

struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx)
{
	if (ctx)
		ctx->refs++;
	return ctx;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx || --ctx->refs > 0)
		return;
	if (ctx->wctx)
		wolfSSL_CTX_free(ctx->wctx);
	tls_strv_free(ctx->trust_domains);
	for (size_t i = 0; i < ctx->n_roots; i++) {
		free(ctx->roots[i].td);
		free(ctx->roots[i].pem);
	}
	free(ctx->roots);
	free(ctx->alpn);
	free(ctx);
}

/* ---- connection ---------------------------------------------------------- */

struct tls *tls_new(struct tls_ctx *ctx, const char *sni)
{
	struct tls *t;

	if (!ctx)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ssl = wolfSSL_new(ctx->wctx);
	if (!t->ssl)
		goto fail_free;
	t->ctx = tls_ctx_ref(ctx);
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	wolfSSL_SetCertCbCtx(t->ssl, t);
	if (ctx->alpn && wolfSSL_UseALPN(t->ssl, ctx->alpn, (unsigned)strlen(ctx->alpn),
					 WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS)
		goto fail_ssl;
	if (ctx->role == TLS_CLIENT) {
		/* Offer an X25519 key share up front: no HelloRetryRequest. */
		if (wolfSSL_UseKeyShare(t->ssl, WOLFSSL_ECC_X25519) != WOLFSSL_SUCCESS)
			goto fail_ssl;
		if (sni && sni[0] &&
		    wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, sni,
				   (unsigned short)strnlen(sni, 255)) != WOLFSSL_SUCCESS)
			goto fail_ssl;
	}
	return t;

fail_ssl:
	wolfSSL_free(t->ssl);
	tls_ctx_free(t->ctx);
fail_free:
	free(t);
	return NULL;
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	if (t->ssl)
		wolfSSL_free(t->ssl);
	tls_ctx_free(t->ctx);
	/* Plaintext never sits in these buffers, but handshake secrets pass
	 * through wolfSSL's, not ours; ciphertext needs no wiping. */
	free(t->in.p);
	free(t->out.p);
	free(t->expect);
	free(t->peer);
	for (size_t i = 0; i < t->n_chain; i++)
		free(t->chain[i]);
	free(t);
}

int tls_expect_peer(struct tls *t, const char *id)
{
	char *c;

	if (!t || !id || t->ctx->role != TLS_CLIENT || t->done)
		return -EINVAL;
	if (strlen(id) >= SPIFFE_ID_MAX)
		return -EINVAL;
	c = strdup(id);
	if (!c)
		return -ENOMEM;
	free(t->expect);
	t->expect = c;
	return 0;
}

int tls_feed(struct tls *t, const uint8_t *p, size_t n)
{
	int ret;

	if (!n)
		return 0;
	ret = tls_buf_reserve(&t->in, n, TLS_IN_MAX);
	if (ret < 0)
		return ret;
	memcpy(t->in.p + t->in.len, p, n);
	t->in.len += n;
	return 0;
}

int tls_handshake(struct tls *t)
{
	char *proto = NULL;
	unsigned short plen = 0;
	int ret;

	if (t->failed)
		return -EPROTO;
	if (t->done)
		return 0;
	__atomic_add_fetch(&tls_ecc_uses, 1, __ATOMIC_RELAXED);
	ret = t->ctx->role == TLS_CLIENT ? wolfSSL_connect(t->ssl) : wolfSSL_accept(t->ssl);
	if (ret != WOLFSSL_SUCCESS) {
		int e = wolfSSL_get_error(t->ssl, ret);

		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
			return -EAGAIN;
		return tls_fail(t, ret);
	}
	if (tls_peer_finish(t) < 0) {
		t->failed = 1;
		return -EPROTO;
	}
	if (t->ctx->alpn) {
		if (wolfSSL_ALPN_GetProtocol(t->ssl, &proto, &plen) == WOLFSSL_SUCCESS &&
		    proto && plen == strlen(t->ctx->alpn) &&
		    memcmp(proto, t->ctx->alpn, plen) == 0) {
			t->alpn_ok = 1;
		} else {
			tls_seterr(t, "peer did not agree to ALPN %s", t->ctx->alpn);
			t->failed = 1;
			return -EPROTO;
		}
	}
	t->done = 1;
	return 0;
}

int tls_handshake_done(const struct tls *t)
{
	return t && t->done && !t->failed;
}

ssize_t tls_read(struct tls *t, void *buf, size_t len)
{
	int ret, e;

	if (t->failed)
		return -EPROTO;
	if (!t->done)
		return -EAGAIN;
	if (len > INT_MAX)
		len = INT_MAX;
	ret = wolfSSL_read(t->ssl, buf, (int)len);
	if (ret > 0)
		return ret;
	e = wolfSSL_get_error(t->ssl, ret);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return -EAGAIN;
	if (e == WOLFSSL_ERROR_ZERO_RETURN)
		return 0;
	return tls_fail(t, ret);
}

ssize_t tls_write(struct tls *t, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t done = 0;
	int ret;

	if (t->failed || !t->done)
		return -EPROTO;
	while (done < len) {
		size_t chunk = len - done;

		/* Bounded output: the caller gets a short count and drains
		 * tls_out_peek before writing more. */
		if (t->out.len - t->out.off >= TLS_OUT_SOFT)
			break;
		if (chunk > TLS_WRITE_CHUNK)
			chunk = TLS_WRITE_CHUNK;
		ret = wolfSSL_write(t->ssl, p + done, (int)chunk);
		if (ret <= 0)
			return tls_fail(t, ret);
		done += (size_t)ret;
	}
	if (!done && len)
		return -EAGAIN;
	return (ssize_t)done;
}

void tls_shutdown(struct tls *t)
{
	if (!t || t->failed)
		return;
	/* Queues close_notify through tls_on_send; the peer's reply, if any,
	 * is not waited for. */
	wolfSSL_shutdown(t->ssl);
}

size_t tls_out_peek(const struct tls *t, const uint8_t **p)
{
	*p = t->out.p ? t->out.p + t->out.off : NULL;
	return t->out.len - t->out.off;
}

void tls_out_consume(struct tls *t, size_t n)
{
	size_t pending = t->out.len - t->out.off;

	if (n > pending)
		n = pending;
	t->out.off += n;
	if (t->out.off == t->out.len)
		tls_buf_drained(&t->out);
}

const char *tls_error(const struct tls *t)
{
	return t->err;
}

int tls_peer_id(const struct tls *t, char *out, size_t len)
{
	size_t n;

	if (!t->peer)
		return -ENOENT;
	n = strlen(t->peer);
	if (n >= len)
		return -ENOSPC;
	memcpy(out, t->peer, n + 1);
	return 0;
}

const char *tls_cipher_name(const struct tls *t)
{
	int suite;

	if (!t->done)
		return NULL;
	suite = wolfSSL_get_current_cipher_suite(t->ssl);
	if (suite < 0)
		return NULL;
	return wolfSSL_get_cipher_name_iana_from_suite((unsigned char)(suite >> 8),
						       (unsigned char)suite);
}

const char *tls_alpn(const struct tls *t)
{
	return t->alpn_ok ? t->ctx->alpn : NULL;
}

/*
 * Debian's wolfSSL is built with FP_ECC: every P-256 point used twice (the
 * generator, the CA key, each peer key seen in two handshakes) gets a
 * 256-point lookup table of ~0.8 MB, up to 15 of them (~12 MB), kept for the
 * life of the process. A busy node wants them (a warm tunnel handshake takes
 * ~1.5 ms end to end, the first two after a drop ~10 and ~5 ms while the
 * tables are rebuilt), so they are dropped only after a period with no
 * handshake step and no new context (certificate issuance and renewal fill
 * the cache too), once per quiet spell. Giving the freed heap back to the
 * kernel is the caller's (malloc_trim).
 */
int tls_cache_trim(void)
{
	if (__atomic_exchange_n(&tls_ecc_uses, 0, __ATOMIC_RELAXED)) {
		tls_cache_trimmed = 0;
		return 0;
	}
	if (tls_cache_trimmed)
		return 0;
	wc_ecc_fp_free();
	tls_cache_trimmed = 1;
	return 1;
}
