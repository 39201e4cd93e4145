/* SPDX-License-Identifier: Apache-2.0 */
/* A wolfSSL crypto-callback device that serves AES-256-GCM (12-byte nonce,
 * 16-byte tag) with a fast engine (gcm.h): OpenSSL's libcrypto when it
 * passes the self-test, else libsodium's AES-NI code; Debian's wolfSSL has
 * no AES-NI and is ~10x slower. Everything else is declined so wolfSSL falls
 * back to its own software path. The device is stateless towards wolfSSL:
 * the key comes from aes->devKey on every call, because wolfSSL reuses Aes
 * objects (and freed addresses) for new keys, so nothing may be cached by
 * Aes pointer (an engine may cache by the key's bytes). */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/cryptocb.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/wc_port.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <sodium.h>

#include <weft/cryptodev.h>
#include <weft/gcm.h>
#include <weft/log.h>
#include <weft/pk.h>

static pthread_mutex_t cdev_lock = PTHREAD_MUTEX_INITIALIZER;
/* 0: not tried yet; > 0: registered; < 0: -errno of the failed attempt. */
static int cdev_state;
static atomic_int cdev_devid = INVALID_DEVID;
/* The engine serving records; switched only under cdev_lock, after the
 * new one passed the self-test. */
static const struct gcm_engine *_Atomic cdev_engine;
/* Handshake public-key operations (pk.c) served: 1 once their self-test
 * passed, unless switched off (cryptodev_pk_enable). */
static atomic_int cdev_pk;
static int cdev_pk_ok;
/* Relaxed counters: they are statistics, and an atomic add per 16 KB record
 * costs nothing next to the record crypto itself. */
static _Atomic uint64_t cdev_enc_calls;
static _Atomic uint64_t cdev_dec_calls;
/* The engines want real pointers even for an empty message; they write none
 * of its bytes, so one shared scratch byte serves every thread. */
static unsigned char cdev_empty[1];

/* In order of preference: libcrypto is ~2.4x libsodium here (DESIGN §11,
 * bench/tlsbench). */
static const struct gcm_engine *const cdev_engines[] = { &gcm_libcrypto, &gcm_libsodium };

/* Only a full AES-256 key with the TLS 1.3 nonce and tag sizes is ours; the
 * check runs before any buffer is touched so a decline leaves wolfSSL free
 * to redo the call in software. */
static int cdev_shape_ok(const Aes *aes, word32 iv_len, word32 tag_len)
{
	return aes && aes->keylen == GCM_KEY_LEN && iv_len == GCM_NONCE_LEN &&
	       tag_len == GCM_TAG_LEN;
}

/* One AES-GCM call in either direction: wolfSSL's encrypt and decrypt
 * argument structs have the same fields, and only the tag's direction
 * differs (written by encrypt, read by decrypt). */
struct cdev_req {
	const Aes *aes;
	unsigned char *out;
	const unsigned char *in;
	word32 sz;
	const unsigned char *iv;
	word32 iv_len;
	const unsigned char *tag;
	word32 tag_len;
	const unsigned char *aad;
	word32 aad_len;
};

#define CDEV_GCM_REQ(a) { (a).aes, (a).out, (a).in, (a).sz, (a).iv, (a).ivSz, \
			(a).authTag, (a).authTagSz, (a).authIn, (a).authInSz }

/* Declines (CRYPTOCB_UNAVAILABLE) what is not ours before any buffer is
 * touched; points an empty message at the scratch byte. */
static int cdev_req_check(struct cdev_req *r)
{
	if (!cdev_shape_ok(r->aes, r->iv_len, r->tag_len) || !r->iv || !r->tag ||
	    (r->sz && (!r->in || !r->out)) || r->sz > GCM_MAX_LEN ||
	    r->aad_len > GCM_MAX_LEN || (r->aad_len && !r->aad))
		return CRYPTOCB_UNAVAILABLE;
	if (!r->sz) {
		r->in = cdev_empty;
		r->out = cdev_empty;
	}
	return 0;
}

static int cdev_run(wc_CryptoInfo *info)
{
	const struct gcm_engine *e = atomic_load_explicit(&cdev_engine, memory_order_acquire);
	int enc = info->cipher.enc;
	struct cdev_req r = enc ? (struct cdev_req)CDEV_GCM_REQ(info->cipher.aesgcm_enc)
				  : (struct cdev_req)CDEV_GCM_REQ(info->cipher.aesgcm_dec);
	const unsigned char *key;
	int rc = cdev_req_check(&r);

	if (rc || !e)
		return rc ? rc : CRYPTOCB_UNAVAILABLE;
	key = (const unsigned char *)r.aes->devKey;
	if (enc) {
		if (e->seal(r.out, info->cipher.aesgcm_enc.authTag, r.in, r.sz, r.aad, r.aad_len,
			    r.iv, key) != GCM_OK)
			return WC_HW_E;
		atomic_fetch_add_explicit(&cdev_enc_calls, 1, memory_order_relaxed);
		return 0;
	}
	atomic_fetch_add_explicit(&cdev_dec_calls, 1, memory_order_relaxed);
	/* A forged record is the same error wolfSSL's software path reports,
	 * so the TLS layer answers bad_record_mac. */
	switch (e->open(r.out, r.in, r.sz, r.tag, r.aad, r.aad_len, r.iv, key)) {
	case GCM_OK:
		return 0;
	case GCM_FORGED:
		return AES_GCM_AUTH_E;
	default:
		return WC_HW_E;
	}
}

/* The device callback. It is global: wolfSSL calls it for every algorithm
 * of every object created with our devId (hashes, ECC, ...), from any
 * thread, so anything unrecognised is declined. */
static int cdev_on_crypto(int devid, wc_CryptoInfo *info, void *ctx)
{
	(void)ctx;
	if (devid != CRYPTODEV_ID || !info)
		return CRYPTOCB_UNAVAILABLE;
	if (info->algo_type == WC_ALGO_TYPE_PK)
		return atomic_load_explicit(&cdev_pk, memory_order_acquire) ? pk_run(info)
									    : CRYPTOCB_UNAVAILABLE;
	if (info->algo_type != WC_ALGO_TYPE_CIPHER || info->cipher.type != WC_CIPHER_AES_GCM)
		return CRYPTOCB_UNAVAILABLE;
	return cdev_run(info);
}

/* NIST GCM test case 16 (AES-256, 96-bit IV, AAD). */
static const unsigned char st_key[32] = {
	0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94,
	0x67, 0x30, 0x83, 0x08, 0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c,
	0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08,
};
static const unsigned char st_iv[12] = {
	0xca, 0xfe, 0xba, 0xbe, 0xfa, 0xce, 0xdb, 0xad, 0xde, 0xca, 0xf8, 0x88,
};
static const unsigned char st_aad[20] = {
	0xfe, 0xed, 0xfa, 0xce, 0xde, 0xad, 0xbe, 0xef, 0xfe, 0xed, 0xfa, 0xce,
	0xde, 0xad, 0xbe, 0xef, 0xab, 0xad, 0xda, 0xd2,
};
static const unsigned char st_pt[60] = {
	0xd9, 0x31, 0x32, 0x25, 0xf8, 0x84, 0x06, 0xe5, 0xa5, 0x59, 0x09, 0xc5,
	0xaf, 0xf5, 0x26, 0x9a, 0x86, 0xa7, 0xa9, 0x53, 0x15, 0x34, 0xf7, 0xda,
	0x2e, 0x4c, 0x30, 0x3d, 0x8a, 0x31, 0x8a, 0x72, 0x1c, 0x3c, 0x0c, 0x95,
	0x95, 0x68, 0x09, 0x53, 0x2f, 0xcf, 0x0e, 0x24, 0x49, 0xa6, 0xb5, 0x25,
	0xb1, 0x6a, 0xed, 0xf5, 0xaa, 0x0d, 0xe6, 0x57, 0xba, 0x63, 0x7b, 0x39,
};
static const unsigned char st_ct[60] = {
	0x52, 0x2d, 0xc1, 0xf0, 0x99, 0x56, 0x7d, 0x07, 0xf4, 0x7f, 0x37, 0xa3,
	0x2a, 0x84, 0x42, 0x7d, 0x64, 0x3a, 0x8c, 0xdc, 0xbf, 0xe5, 0xc0, 0xc9,
	0x75, 0x98, 0xa2, 0xbd, 0x25, 0x55, 0xd1, 0xaa, 0x8c, 0xb0, 0x8e, 0x48,
	0x59, 0x0d, 0xbb, 0x3d, 0xa7, 0xb0, 0x8b, 0x10, 0x56, 0x82, 0x88, 0x38,
	0xc5, 0xf6, 0x1e, 0x63, 0x93, 0xba, 0x7a, 0x0a, 0xbc, 0xc9, 0xf6, 0x62,
};
static const unsigned char st_tag[16] = {
	0x76, 0xfc, 0x6e, 0xce, 0x0f, 0x4e, 0x17, 0x68, 0xcd, 0xdf, 0x88, 0x53,
	0xbb, 0x2d, 0x55, 0x1b,
};

/* Prove that wolfSSL really routes AES-256-GCM through the device: the
 * failure mode otherwise is silent and 10x slower. Encrypts and decrypts the
 * known-answer vector in place (as TLS records are) through wolfCrypt with
 * our devId and checks both the bytes and that the counters moved. */
static int cdev_self_test(int devid)
{
	Aes aes;
	unsigned char buf[sizeof(st_pt)], tag[sizeof(st_tag)];
	uint64_t enc0 = cryptodev_gcm_encrypts(), dec0 = cryptodev_gcm_decrypts();
	int ret = -EIO;

	if (wc_AesInit(&aes, NULL, devid) != 0)
		return -EIO;
	if (wc_AesGcmSetKey(&aes, st_key, sizeof(st_key)) != 0)
		goto out;
	memcpy(buf, st_pt, sizeof(buf));
	if (wc_AesGcmEncrypt(&aes, buf, buf, sizeof(buf), st_iv, sizeof(st_iv), tag,
			     sizeof(tag), st_aad, sizeof(st_aad)) != 0 ||
	    memcmp(buf, st_ct, sizeof(buf)) != 0 || memcmp(tag, st_tag, sizeof(tag)) != 0)
		goto out;
	if (wc_AesGcmDecrypt(&aes, buf, buf, sizeof(buf), st_iv, sizeof(st_iv), tag,
			     sizeof(tag), st_aad, sizeof(st_aad)) != 0 ||
	    memcmp(buf, st_pt, sizeof(buf)) != 0)
		goto out;
	/* A forged tag must be refused as wolfSSL's own path refuses it. */
	memcpy(buf, st_ct, sizeof(buf));
	tag[0] ^= 1;
	if (wc_AesGcmDecrypt(&aes, buf, buf, sizeof(buf), st_iv, sizeof(st_iv), tag,
			     sizeof(tag), st_aad, sizeof(st_aad)) != AES_GCM_AUTH_E)
		goto out;
	if (cryptodev_gcm_encrypts() == enc0 || cryptodev_gcm_decrypts() == dec0) {
		log_error("cryptodev: AES-GCM self-test ran in wolfSSL software, not in the device");
		goto out;
	}
	ret = 0;
out:
	wc_AesFree(&aes);
	sodium_memzero(&aes, sizeof(aes));
	return ret;
}

/* Make e the engine if it runs here and passes the self-test; on failure
 * the previous engine stays. Called with cdev_lock held. */
static int cdev_engine_try(const struct gcm_engine *e)
{
	const struct gcm_engine *old = atomic_load(&cdev_engine);
	int ret = e->probe();

	if (ret < 0)
		return ret;
	atomic_store_explicit(&cdev_engine, e, memory_order_release);
	ret = cdev_self_test(CRYPTODEV_ID);
	if (ret < 0) {
		atomic_store_explicit(&cdev_engine, old, memory_order_release);
		log_error("cryptodev: the %s AES-GCM engine failed the self-test", e->name);
	}
	return ret;
}

static int cdev_register(void)
{
	int ret, err = -ENOTSUP;

	/* Registration before wolfCrypt's init fails (every slot still looks
	 * taken). wolfCrypt_Init is reference-counted, so calling it here is
	 * harmless when wolfSSL_Init already ran, and makes a forgotten
	 * wolfSSL_Init an error we can see rather than a silent fallback. */
	if (wolfCrypt_Init() != 0)
		return -EIO;
	ret = wc_CryptoCb_RegisterDevice(CRYPTODEV_ID, cdev_on_crypto, NULL);
	if (ret != 0) {
		log_error("cryptodev: wolfSSL refused the crypto device (%d)", ret);
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(cdev_engines) / sizeof(cdev_engines[0]); i++) {
		ret = cdev_engine_try(cdev_engines[i]);
		if (ret == 0)
			break;
		if (ret != -ENOTSUP)
			err = ret;
	}
	if (ret && err != -ENOTSUP)
		log_error("cryptodev: no AES-GCM engine passed the self-test; AES-GCM stays in "
			  "wolfSSL software");
	if (pk_probe() == 0) {
		atomic_store(&cdev_pk, 1);
		if (pk_self_test(CRYPTODEV_ID) == 0) {
			cdev_pk_ok = 1;
		} else {
			atomic_store(&cdev_pk, 0);
			log_error("cryptodev: the X25519/P-256 self-test failed; handshakes stay in "
				  "wolfSSL software");
		}
	}
	if (ret == 0 || cdev_pk_ok)
		return CRYPTODEV_ID;
	wc_CryptoCb_UnRegisterDevice(CRYPTODEV_ID);
	return err;
}

int cryptodev_init(void)
{
	int ret;

	pthread_mutex_lock(&cdev_lock);
	if (cdev_state == 0) {
		cdev_state = cdev_register();
		if (cdev_state > 0)
			atomic_store(&cdev_devid, cdev_state);
	}
	ret = cdev_state;
	pthread_mutex_unlock(&cdev_lock);
	return ret;
}

int cryptodev_gcm_select(const char *name)
{
	const struct gcm_engine *e = NULL;
	int ret;

	for (size_t i = 0; i < sizeof(cdev_engines) / sizeof(cdev_engines[0]); i++)
		if (strcmp(cdev_engines[i]->name, name) == 0)
			e = cdev_engines[i];
	if (!e)
		return -ENOENT;
	pthread_mutex_lock(&cdev_lock);
	ret = cdev_state > 0 ? cdev_engine_try(e) : -ENODEV;
	pthread_mutex_unlock(&cdev_lock);
	return ret;
}

int cryptodev_pk_enable(int on)
{
	int ret = 0;

	pthread_mutex_lock(&cdev_lock);
	if (on && !cdev_pk_ok)
		ret = -ENODEV;
	else
		atomic_store_explicit(&cdev_pk, on ? 1 : 0, memory_order_release);
	pthread_mutex_unlock(&cdev_lock);
	return ret;
}

void cryptodev_forget_keys(void)
{
	for (size_t i = 0; i < sizeof(cdev_engines) / sizeof(cdev_engines[0]); i++)
		if (cdev_engines[i]->forget)
			cdev_engines[i]->forget();
}

int cryptodev_pk_on(void)
{
	return atomic_load(&cdev_pk);
}

const char *cryptodev_gcm_engine(void)
{
	const struct gcm_engine *e = atomic_load(&cdev_engine);

	return e ? e->name : NULL;
}

int cryptodev_id(void)
{
	return atomic_load(&cdev_devid);
}

uint64_t cryptodev_gcm_encrypts(void)
{
	return atomic_load_explicit(&cdev_enc_calls, memory_order_relaxed);
}

uint64_t cryptodev_gcm_decrypts(void)
{
	return atomic_load_explicit(&cdev_dec_calls, memory_order_relaxed);
}
