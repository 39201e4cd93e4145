/* SPDX-License-Identifier: Apache-2.0 */
/* The crypto device's ECDSA P-256 half (lib/pk.c, lib/p256_libcrypto.c):
 * wolfCrypt keys made with the device's id really reach it (counted);
 * device signatures verify under wolfSSL's own code and the reverse, over
 * many keys and hash sizes; a changed signature, hash or key is refused; a
 * malformed signature is a "no", not a crash; other curves are declined
 * to wolfSSL's software, which still gets them right; switched off, the
 * device leaves signatures to wolfSSL. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <string.h>

#include <weft/cryptodev.h>
#include <weft/pk.h>

#include "../check.h"

static WC_RNG rng;

/* A software key and its copy with the device's id. */
static int keypair(ecc_key *sw, ecc_key *dev, int curve, int size)
{
	uint8_t d[66], pt[133];
	word32 dl = sizeof(d), pl = sizeof(pt);

	wc_ecc_init_ex(sw, NULL, INVALID_DEVID);
	wc_ecc_init_ex(dev, NULL, cryptodev_id());
	return wc_ecc_make_key_ex(&rng, size, sw, curve) == 0 &&
	       wc_ecc_export_private_only(sw, d, &dl) == 0 && wc_ecc_export_x963(sw, pt, &pl) == 0 &&
	       wc_ecc_import_private_key_ex(d, dl, pt, pl, dev, curve) == 0;
}

static int verify(const uint8_t *sig, word32 sl, const uint8_t *h, word32 hl, ecc_key *k)
{
	int res = -1;

	if (wc_ecc_verify_hash(sig, sl, h, hl, &res, k) != 0)
		return -1;
	return res;
}

static void test_agrees_with_wolfssl(void)
{
	static const word32 hash_sizes[] = { 32, 48, 64, 20 };
	int bad = 0;

	for (int i = 0; i < 20; i++) {
		ecc_key sw, dev;
		uint8_t h[64], s1[80], s2[80];
		word32 hl = hash_sizes[i % 4], l1 = sizeof(s1), l2 = sizeof(s2);
		uint64_t n0 = pk_calls();

		wc_RNG_GenerateBlock(&rng, h, sizeof(h));
		if (!keypair(&sw, &dev, ECC_SECP256R1, 32)) {
			bad++;
			continue;
		}
		bad += wc_ecc_sign_hash(h, hl, s1, &l1, &rng, &dev) != 0;
		bad += verify(s1, l1, h, hl, &sw) != 1;		/* device -> wolfSSL */
		bad += wc_ecc_sign_hash(h, hl, s2, &l2, &rng, &sw) != 0;
		bad += verify(s2, l2, h, hl, &dev) != 1;	/* wolfSSL -> device */
		bad += pk_calls() != n0 + 2;
		h[0] ^= 1;
		bad += verify(s2, l2, h, hl, &dev) != 0;	/* another hash */
		h[0] ^= 1;
		s2[l2 / 2] ^= 0x10;
		bad += verify(s2, l2, h, hl, &dev) > 0;		/* a changed signature */
		wc_ecc_free(&sw);
		wc_ecc_free(&dev);
	}
	CHECK_EQ_INT(bad, 0);
}

/* Another key's signature, and garbage where DER should be. */
static void test_refusals(void)
{
	ecc_key a, ad, b, bd;
	uint8_t h[32] = { 7 }, sig[80], junk[72];
	word32 sl = sizeof(sig);

	CHECK(keypair(&a, &ad, ECC_SECP256R1, 32));
	CHECK(keypair(&b, &bd, ECC_SECP256R1, 32));
	CHECK_EQ_INT(wc_ecc_sign_hash(h, sizeof(h), sig, &sl, &rng, &ad), 0);
	CHECK_EQ_INT(verify(sig, sl, h, sizeof(h), &bd), 0);
	memset(junk, 0x30, sizeof(junk));
	CHECK(verify(junk, sizeof(junk), h, sizeof(h), &ad) <= 0);
	CHECK(verify(junk, 1, h, sizeof(h), &ad) <= 0);
	/* A signature with trailing bytes is not the DER that was signed. */
	sig[sl] = 0;
	CHECK(verify(sig, sl + 1, h, sizeof(h), &ad) <= 0);
	wc_ecc_free(&a);
	wc_ecc_free(&ad);
	wc_ecc_free(&b);
	wc_ecc_free(&bd);
}

/* P-384 is not ours: declined before anything is written, and wolfSSL's
 * software gets it right; the device's counter does not move. */
static void test_other_curve_declined(void)
{
	ecc_key sw, dev;
	uint8_t h[48] = { 9 }, sig[120];
	word32 sl = sizeof(sig);
	uint64_t n0 = pk_calls();

	CHECK(keypair(&sw, &dev, ECC_SECP384R1, 48));
	CHECK_EQ_INT(wc_ecc_sign_hash(h, sizeof(h), sig, &sl, &rng, &dev), 0);
	CHECK_EQ_INT(verify(sig, sl, h, sizeof(h), &sw), 1);
	CHECK_EQ_INT(verify(sig, sl, h, sizeof(h), &dev), 1);
	CHECK_EQ_INT(pk_calls(), n0);
	wc_ecc_free(&sw);
	wc_ecc_free(&dev);
}

static void test_switched_off(void)
{
	ecc_key sw, dev;
	uint8_t h[32] = { 3 }, sig[80];
	word32 sl = sizeof(sig);
	uint64_t n0;

	CHECK_EQ_INT(cryptodev_pk_enable(0), 0);
	CHECK_EQ_INT(cryptodev_pk_on(), 0);
	n0 = pk_calls();
	CHECK(keypair(&sw, &dev, ECC_SECP256R1, 32));
	CHECK_EQ_INT(wc_ecc_sign_hash(h, sizeof(h), sig, &sl, &rng, &dev), 0);
	CHECK_EQ_INT(verify(sig, sl, h, sizeof(h), &dev), 1);
	CHECK_EQ_INT(pk_calls(), n0);
	CHECK_EQ_INT(cryptodev_pk_enable(1), 0);
	CHECK_EQ_INT(cryptodev_pk_on(), 1);
	wc_ecc_free(&sw);
	wc_ecc_free(&dev);
}

int main(void)
{
	CHECK_EQ_INT(wolfSSL_Init(), WOLFSSL_SUCCESS);
	CHECK_EQ_INT(cryptodev_init(), CRYPTODEV_ID);
	CHECK_EQ_INT(cryptodev_pk_on(), 1);
	/* The self-test pushed a sign and two verifies through. */
	CHECK(pk_calls() >= 3);
	CHECK_EQ_INT(wc_InitRng(&rng), 0);
	test_agrees_with_wolfssl();
	test_refusals();
	test_other_curve_declined();
	test_switched_off();
	wc_FreeRng(&rng);
	wolfSSL_Cleanup();
	return check_done("test_pk");
}
