/* SPDX-License-Identifier: Apache-2.0 */
/* AES-256-GCM through OpenSSL's libcrypto EVP interface, which has the
 * VAES/AVX-512 and AES-NI code (about 2.4x libsodium's here, DESIGN §11).
 *
 * Setting a key up in EVP (key schedule and GHASH tables, through the
 * provider) costs far more than one small record, so each thread keeps a
 * small direct-mapped cache of contexts keyed by the key's bytes and the
 * direction. It must be keyed by content: wolfSSL reuses its Aes objects
 * and their addresses for new keys. A per-record call only sets the nonce.
 * A collision or a new key simply re-initialises the slot. The cache holds
 * copies of record keys as wolfSSL's own Aes objects do; evicted,
 * forgotten (gcm_engine.forget, every few seconds) and thread-exit slots
 * are wiped (EVP_CIPHER_CTX_free cleanses the schedule). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <weft/gcm.h>

/* Per direction. A tunnel uses one key each way, so 16 slots serve 16
 * tunnels per thread before collisions start costing a re-key per record. */
#define GCM_EVP_SLOTS 16

struct gcm_evp_slot {
	EVP_CIPHER_CTX *ctx;
	uint8_t key[GCM_KEY_LEN];
};

struct gcm_evp_cache {
	struct gcm_evp_slot slot[2][GCM_EVP_SLOTS];	/* [0] open, [1] seal */
};

static pthread_once_t gcm_evp_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *gcm_evp_cipher;
static pthread_key_t gcm_evp_tls;
static int gcm_evp_ready;
static __thread struct gcm_evp_cache *gcm_evp_mine;

static void gcm_evp_slot_clear(struct gcm_evp_slot *s)
{
	EVP_CIPHER_CTX_free(s->ctx);
	s->ctx = NULL;
	OPENSSL_cleanse(s->key, sizeof(s->key));
}

static void gcm_evp_cache_free(void *arg)
{
	struct gcm_evp_cache *c = arg;

	for (int d = 0; d < 2; d++)
		for (int i = 0; i < GCM_EVP_SLOTS; i++)
			gcm_evp_slot_clear(&c->slot[d][i]);
	free(c);
}

static void gcm_evp_init(void)
{
	/* Fetch once: passing a cipher on every init would look it up in the
	 * provider each time. */
	gcm_evp_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (gcm_evp_cipher && pthread_key_create(&gcm_evp_tls, gcm_evp_cache_free) == 0)
		gcm_evp_ready = 1;
}

static int gcm_evp_probe(void)
{
	pthread_once(&gcm_evp_once, gcm_evp_init);
	return gcm_evp_ready ? 0 : -ENOTSUP;
}

/* Record keys are uniformly random: four bytes pick the slot. */
static struct gcm_evp_slot *gcm_evp_slot_of(struct gcm_evp_cache *c,
					    const uint8_t key[GCM_KEY_LEN], int seal)
{
	uint32_t h;

	memcpy(&h, key, sizeof(h));
	return &c->slot[seal][h % GCM_EVP_SLOTS];
}

/* The context for this key and direction, keyed and ready for a nonce. */
static EVP_CIPHER_CTX *gcm_evp_ctx(const uint8_t key[GCM_KEY_LEN], int seal)
{
	struct gcm_evp_cache *c = gcm_evp_mine;
	struct gcm_evp_slot *s;
	int ok;

	if (!c) {
		if (gcm_evp_probe() != 0 || !(c = calloc(1, sizeof(*c))))
			return NULL;
		if (pthread_setspecific(gcm_evp_tls, c) != 0) {
			free(c);
			return NULL;
		}
		gcm_evp_mine = c;
	}
	s = gcm_evp_slot_of(c, key, seal);
	if (s->ctx && CRYPTO_memcmp(s->key, key, GCM_KEY_LEN) == 0)
		return s->ctx;
	if (!s->ctx && !(s->ctx = EVP_CIPHER_CTX_new()))
		return NULL;
	ok = seal ? EVP_EncryptInit_ex2(s->ctx, gcm_evp_cipher, key, NULL, NULL)
		  : EVP_DecryptInit_ex2(s->ctx, gcm_evp_cipher, key, NULL, NULL);
	if (ok != 1) {
		gcm_evp_slot_clear(s);
		return NULL;
	}
	memcpy(s->key, key, GCM_KEY_LEN);
	return s->ctx;
}

/* A context left half-way by a failed call must not serve the next one. */
static int gcm_evp_fail(const uint8_t key[GCM_KEY_LEN], int seal)
{
	struct gcm_evp_cache *c = gcm_evp_mine;

	if (c)
		gcm_evp_slot_clear(gcm_evp_slot_of(c, key, seal));
	return GCM_FAILED;
}

static int gcm_evp_seal(uint8_t *out, uint8_t tag[GCM_TAG_LEN], const uint8_t *in, size_t len,
			const uint8_t *aad, size_t aad_len, const uint8_t nonce[GCM_NONCE_LEN],
			const uint8_t key[GCM_KEY_LEN])
{
	EVP_CIPHER_CTX *ctx;
	int n;

	if (len > GCM_MAX_LEN || aad_len > GCM_MAX_LEN || !(ctx = gcm_evp_ctx(key, 1)))
		return GCM_FAILED;
	if (EVP_EncryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1 ||
	    (aad_len && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1) ||
	    (len && EVP_EncryptUpdate(ctx, out, &n, in, (int)len) != 1) ||
	    EVP_EncryptFinal_ex(ctx, out + len, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_LEN, tag) != 1)
		return gcm_evp_fail(key, 1);
	return GCM_OK;
}

/* EVP releases plaintext before it checks the tag: on a forgery (or a
 * failure half-way) the output is wiped, so unauthenticated bytes never
 * stay behind. */
static int gcm_evp_open(uint8_t *out, const uint8_t *in, size_t len,
			const uint8_t tag[GCM_TAG_LEN], const uint8_t *aad, size_t aad_len,
			const uint8_t nonce[GCM_NONCE_LEN], const uint8_t key[GCM_KEY_LEN])
{
	uint8_t t[GCM_TAG_LEN];
	EVP_CIPHER_CTX *ctx;
	int n;

	if (len > GCM_MAX_LEN || aad_len > GCM_MAX_LEN || !(ctx = gcm_evp_ctx(key, 0)))
		return GCM_FAILED;
	memcpy(t, tag, sizeof(t));
	if (EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1 ||
	    (aad_len && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1) ||
	    (len && EVP_DecryptUpdate(ctx, out, &n, in, (int)len) != 1) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, GCM_TAG_LEN, t) != 1) {
		OPENSSL_cleanse(out, len);
		return gcm_evp_fail(key, 0);
	}
	if (EVP_DecryptFinal_ex(ctx, out + len, &n) != 1) {
		OPENSSL_cleanse(out, len);
		return GCM_FORGED;
	}
	return GCM_OK;
}

/* Keys of closed sessions must not linger in this thread's cache: the
 * owner calls this every few seconds; live sessions set their key up again
 * on their next record (one key set-up each). */
static void gcm_evp_forget(void)
{
	struct gcm_evp_cache *c = gcm_evp_mine;

	for (int d = 0; c && d < 2; d++)
		for (int i = 0; i < GCM_EVP_SLOTS; i++)
			if (c->slot[d][i].ctx)
				gcm_evp_slot_clear(&c->slot[d][i]);
}

const struct gcm_engine gcm_libcrypto = {
	.name = "libcrypto",
	.probe = gcm_evp_probe,
	.seal = gcm_evp_seal,
	.open = gcm_evp_open,
	.forget = gcm_evp_forget,
};
