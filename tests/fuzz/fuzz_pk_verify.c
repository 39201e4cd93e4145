/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the crypto device's ECDSA verify (lib/pk.c and
 * lib/p256_libcrypto.c): the peer's CertificateVerify and its certificate
 * chain hand their signatures, DER a peer chose, to libcrypto through it.
 * Input: one byte picking the key, 32 bytes of hash, the rest the
 * signature. The device must never say yes where wolfSSL's own verify says
 * no (it may be stricter about DER), and a forged signature must never
 * pass; ASan/UBSan catch the rest. The first run plants one valid
 * signature per key into the corpus directory's view: inputs starting with
 * 0xff carry one, so the fuzzer starts next to the interesting path. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cryptodev.h>

#define KEYS 2

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ecc_key sw[KEYS], dev[KEYS];
static uint8_t good_sig[KEYS][80];
static word32 good_len[KEYS];
static const uint8_t good_hash[32] = { 0x42, 0x17 };

static void setup(void)
{
	WC_RNG rng;

	if (wolfSSL_Init() != WOLFSSL_SUCCESS || cryptodev_init() != CRYPTODEV_ID ||
	    !cryptodev_pk_on() || wc_InitRng(&rng) != 0)
		abort();
	for (int i = 0; i < KEYS; i++) {
		uint8_t d[32], pt[65];
		word32 dl = sizeof(d), pl = sizeof(pt);

		wc_ecc_init_ex(&sw[i], NULL, INVALID_DEVID);
		wc_ecc_init_ex(&dev[i], NULL, cryptodev_id());
		good_len[i] = sizeof(good_sig[i]);
		if (wc_ecc_make_key_ex(&rng, 32, &sw[i], ECC_SECP256R1) != 0 ||
		    wc_ecc_export_private_only(&sw[i], d, &dl) != 0 ||
		    wc_ecc_export_x963(&sw[i], pt, &pl) != 0 ||
		    wc_ecc_import_private_key_ex(d, dl, pt, pl, &dev[i], ECC_SECP256R1) != 0 ||
		    wc_ecc_sign_hash(good_hash, sizeof(good_hash), good_sig[i], &good_len[i], &rng,
				     &sw[i]) != 0)
			abort();
	}
	wc_FreeRng(&rng);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	uint8_t hash[32], sig[256];
	size_t sl;
	int k, rd = -1, rs = -1, ed, es;

	if (!ready) {
		setup();
		ready = 1;
	}
	if (size < 1 + sizeof(hash))
		return 0;
	k = data[0] % KEYS;
	memcpy(hash, data + 1, sizeof(hash));
	sl = size - 1 - sizeof(hash);
	if (sl > sizeof(sig))
		sl = sizeof(sig);
	memcpy(sig, data + 1 + sizeof(hash), sl);
	/* 0xff: start from the key's valid signature of good_hash, with the
	 * input's bytes xored over it (mutations of a real signature). */
	if (data[0] == 0xff) {
		memcpy(hash, good_hash, sizeof(hash));
		for (size_t i = 0; i < good_len[k]; i++)
			sig[i] = good_sig[k][i] ^ (i < sl ? sig[i] : 0);
		sl = good_len[k];
	}
	ed = wc_ecc_verify_hash(sig, (word32)sl, hash, sizeof(hash), &rd, &dev[k]);
	es = wc_ecc_verify_hash(sig, (word32)sl, hash, sizeof(hash), &rs, &sw[k]);
	if (ed == 0 && rd == 1 && !(es == 0 && rs == 1))
		abort();	/* the device said yes where wolfSSL said no */
	return 0;
}
