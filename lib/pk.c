/* SPDX-License-Identifier: Apache-2.0 */
/* Handshake signatures for the crypto device (pk.h). Stateless, like the
 * AES-GCM half: keys come from wolfSSL's key objects on every call
 * (exported, used, wiped), since wolfSSL reuses those objects. The
 * libcrypto key set-up costs ~15 µs next to a 60 µs verify; nothing is
 * cached, so no private key is copied anywhere that outlives the call. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/cryptocb.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include <sodium.h>

#include <weft/p256.h>
#include <weft/pk.h>

static _Atomic uint64_t pk_served;

int pk_probe(void)
{
	return p256_probe() ? -ENOTSUP : 0;
}

uint64_t pk_calls(void)
{
	return atomic_load_explicit(&pk_served, memory_order_relaxed);
}

static int pk_done(int ret)
{
	if (ret == 0)
		atomic_fetch_add_explicit(&pk_served, 1, memory_order_relaxed);
	return ret;
}

/* --- ECDSA P-256 (libcrypto) ------------------------------------------------- */

static int pk_is_p256(const ecc_key *key)
{
	return key && key->dp && key->dp->id == ECC_SECP256R1;
}

static int pk_ecdsa_sign(ecc_key *key, const uint8_t *hash, word32 hashlen, uint8_t *out,
			 word32 *outlen)
{
	uint8_t d[P256_SCALAR_LEN];
	word32 dlen = sizeof(d);
	size_t siglen;
	int ret;

	if (!pk_is_p256(key) || key->type != ECC_PRIVATEKEY || !hash || !hashlen || !out ||
	    !outlen || *outlen < P256_SIG_MAX)
		return CRYPTOCB_UNAVAILABLE;
	if (wc_ecc_export_private_only(key, d, &dlen) != 0 || dlen != P256_SCALAR_LEN) {
		sodium_memzero(d, sizeof(d));
		return CRYPTOCB_UNAVAILABLE;
	}
	siglen = *outlen;
	ret = p256_sign(d, hash, hashlen, out, &siglen);
	sodium_memzero(d, sizeof(d));
	if (ret)
		return WC_HW_E;
	*outlen = (word32)siglen;
	return 0;
}

static int pk_ecdsa_verify(ecc_key *key, const uint8_t *sig, word32 siglen, const uint8_t *hash,
			   word32 hashlen, int *res)
{
	uint8_t pt[P256_POINT_LEN];
	word32 ptlen = sizeof(pt);
	int ok;

	if (!pk_is_p256(key) || !sig || !siglen || !hash || !hashlen || !res)
		return CRYPTOCB_UNAVAILABLE;
	if (wc_ecc_export_x963(key, pt, &ptlen) != 0 || ptlen != P256_POINT_LEN)
		return CRYPTOCB_UNAVAILABLE;
	ok = p256_verify(pt, hash, hashlen, sig, siglen);
	if (ok < 0)
		return WC_HW_E;
	*res = ok;
	return 0;
}

int pk_run(struct wc_CryptoInfo *info)
{
	switch (info->pk.type) {
	case WC_PK_TYPE_ECDSA_SIGN:
		return pk_done(pk_ecdsa_sign(info->pk.eccsign.key, info->pk.eccsign.in,
					     info->pk.eccsign.inlen, info->pk.eccsign.out,
					     info->pk.eccsign.outlen));
	case WC_PK_TYPE_ECDSA_VERIFY:
		return pk_done(pk_ecdsa_verify(info->pk.eccverify.key, info->pk.eccverify.sig,
					       info->pk.eccverify.siglen, info->pk.eccverify.hash,
					       info->pk.eccverify.hashlen, info->pk.eccverify.res));
	default:
		return CRYPTOCB_UNAVAILABLE;
	}
}

/* --- self-test ------------------------------------------------------------------ */

/* A wolfSSL-made P-256 key, copied into a device key: what one signs the
 * other verifies, and a changed signature is refused. */
static int pk_ecdsa_self_test(int devid, WC_RNG *rng)
{
	ecc_key sw, dev;
	uint8_t d[32], pt[65], hash[32], sig[80], sig2[80];
	word32 dl = sizeof(d), pl = sizeof(pt), sl = sizeof(sig), sl2 = sizeof(sig2);
	int ok = 0, r1 = 0, r2 = 0, r3 = 1;

	memset(hash, 0x5a, sizeof(hash));
	wc_ecc_init_ex(&sw, NULL, INVALID_DEVID);
	wc_ecc_init_ex(&dev, NULL, devid);
	if (wc_ecc_make_key_ex(rng, 32, &sw, ECC_SECP256R1) == 0 &&
	    wc_ecc_export_private_only(&sw, d, &dl) == 0 && wc_ecc_export_x963(&sw, pt, &pl) == 0 &&
	    wc_ecc_import_private_key_ex(d, dl, pt, pl, &dev, ECC_SECP256R1) == 0 &&
	    wc_ecc_sign_hash(hash, sizeof(hash), sig, &sl, rng, &dev) == 0 &&
	    wc_ecc_verify_hash(sig, sl, hash, sizeof(hash), &r1, &sw) == 0 &&
	    wc_ecc_sign_hash(hash, sizeof(hash), sig2, &sl2, rng, &sw) == 0 &&
	    wc_ecc_verify_hash(sig2, sl2, hash, sizeof(hash), &r2, &dev) == 0) {
		sig2[sl2 - 1] ^= 1;
		ok = r1 == 1 && r2 == 1 &&
		     wc_ecc_verify_hash(sig2, sl2, hash, sizeof(hash), &r3, &dev) == 0 && r3 == 0;
	}
	wc_ecc_free(&sw);
	wc_ecc_free(&dev);
	sodium_memzero(d, sizeof(d));
	return ok;
}

int pk_self_test(int devid)
{
	uint64_t n0 = pk_calls();
	WC_RNG rng;
	int ok;

	if (wc_InitRng(&rng) != 0)
		return -EIO;
	ok = pk_ecdsa_self_test(devid, &rng);
	wc_FreeRng(&rng);
	/* A sign and 2 verifies through the device; fewer means wolfSSL ran
	 * them itself. */
	return ok && pk_calls() - n0 >= 3 ? 0 : -EIO;
}
