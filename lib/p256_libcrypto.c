/* SPDX-License-Identifier: Apache-2.0 */
/* P-256 ECDSA through libcrypto (p256.h). EC_KEY and ECDSA_sign/verify are
 * deprecated in OpenSSL 3 in favour of EVP_PKEY, whose provider round trips
 * cost more than the operation itself on a 32-byte hash; under them is the
 * same nistz256 code. A signing key is set up per call and freed with its
 * scalar cleared: nothing secret outlives the call. A verifying key (a
 * public point: the CA's, a peer's) costs ~20 µs to set up and check on the
 * curve next to a ~60 µs verify, and the same few come back handshake after
 * handshake, so each thread keeps the last ones, keyed by the point's bytes
 * (a point that collides just replaces the slot). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <weft/p256.h>

#define P256_VERIFY_SLOTS 16

struct p256_slot {
	EC_KEY *key;
	uint8_t pt[P256_POINT_LEN];
};

static pthread_once_t p256_once = PTHREAD_ONCE_INIT;
static pthread_key_t p256_tls;
static int p256_tls_ok;
static __thread struct p256_slot *p256_mine;

static void p256_cache_free(void *arg)
{
	struct p256_slot *c = arg;

	for (int i = 0; i < P256_VERIFY_SLOTS; i++)
		EC_KEY_free(c[i].key);
	free(c);
}

static void p256_init(void)
{
	p256_tls_ok = pthread_key_create(&p256_tls, p256_cache_free) == 0;
}

/* The key for point pt, from this thread's cache or made (and checked on
 * the curve by o2i); NULL when pt is not a point of the curve. Valid until
 * this thread's next call. */
static EC_KEY *p256_verify_key(const uint8_t pt[P256_POINT_LEN])
{
	const unsigned char *p = pt;
	struct p256_slot *s;
	uint32_t h;

	pthread_once(&p256_once, p256_init);
	if (!p256_mine && p256_tls_ok) {
		p256_mine = calloc(P256_VERIFY_SLOTS, sizeof(*p256_mine));
		if (p256_mine && pthread_setspecific(p256_tls, p256_mine) != 0) {
			free(p256_mine);
			p256_mine = NULL;
		}
	}
	if (!p256_mine)
		return NULL;
	memcpy(&h, pt + 1, sizeof(h));
	s = &p256_mine[h % P256_VERIFY_SLOTS];
	if (s->key && memcmp(s->pt, pt, P256_POINT_LEN) == 0)
		return s->key;
	EC_KEY_free(s->key);
	s->key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	if (!s->key || !o2i_ECPublicKey(&s->key, &p, P256_POINT_LEN)) {
		EC_KEY_free(s->key);
		s->key = NULL;
		return NULL;
	}
	memcpy(s->pt, pt, P256_POINT_LEN);
	return s->key;
}

int p256_probe(void)
{
	EC_KEY *k = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);

	EC_KEY_free(k);
	return k ? 0 : -1;
}

int p256_sign(const uint8_t d[P256_SCALAR_LEN], const uint8_t *hash, size_t hashlen,
	      uint8_t *sig, size_t *siglen)
{
	EC_KEY *ek = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	BIGNUM *bn = BN_secure_new();
	unsigned int n = *siglen > UINT_MAX ? UINT_MAX : (unsigned int)*siglen;
	int ret = -1;

	if (ek && bn && hashlen <= INT_MAX && n >= P256_SIG_MAX &&
	    BN_bin2bn(d, P256_SCALAR_LEN, bn) && EC_KEY_set_private_key(ek, bn) == 1 &&
	    ECDSA_sign(0, hash, (int)hashlen, sig, &n, ek) == 1) {
		*siglen = n;
		ret = 0;
	}
	BN_clear_free(bn);
	EC_KEY_free(ek);
	return ret;
}

int p256_verify(const uint8_t pt[P256_POINT_LEN], const uint8_t *hash, size_t hashlen,
		const uint8_t *sig, size_t siglen)
{
	EC_KEY *ek;

	if (hashlen > INT_MAX || siglen > INT_MAX || !(ek = p256_verify_key(pt)))
		return -1;
	/* 1 valid, 0 invalid, -1 malformed DER: only 1 is a yes. */
	return ECDSA_verify(0, hash, (int)hashlen, sig, (int)siglen, ek) == 1;
}
