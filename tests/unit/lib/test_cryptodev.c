/* SPDX-License-Identifier: Apache-2.0 */
/* The AES-256-GCM crypto-callback device, with each engine (libcrypto,
 * libsodium): it registers, its self-test passes, wolfCrypt calls with our
 * devId really reach it and give the same bytes as libsodium, wolfSSL
 * software and the NIST vectors, shapes it does not serve fall back to
 * software, forgeries are refused, and libcrypto's per-thread context cache
 * never serves a record with another key (colliding slots, many keys, two
 * threads at once). */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include <weft/cryptodev.h>

#include "../check.h"

static unsigned char hexval(char c)
{
	return (unsigned char)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
}

static size_t unhex(unsigned char *out, const char *hex)
{
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
	return n;
}

/* NIST GCM spec test cases 4 (AES-128) and 16 (AES-256). */
#define NIST_PT "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" \
		"1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
#define NIST_AAD "feedfacedeadbeeffeedfacedeadbeefabaddad2"
#define NIST_IV "cafebabefacedbaddecaf888"
#define NIST_K128 "feffe9928665731c6d6a8f9467308308"
#define NIST_K256 "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
#define NIST_CT128 "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e" \
		   "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
#define NIST_TAG128 "5bc94fbc3221a5db94fae95ae7121a47"
#define NIST_CT256 "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" \
		   "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
#define NIST_TAG256 "76fc6ece0f4e1768cddf8853bb2d551b"

enum { DEC, ENC };

/* One-shot GCM through wolfCrypt with the given devId, encrypting (ENC:
 * tag is written) or decrypting (DEC: tag is checked); in place when
 * out == in, like TLS records. */
static int gcm(int enc, int devid, const unsigned char *key, size_t klen, unsigned char *out,
	       const unsigned char *in, size_t n, const unsigned char *iv, size_t ivlen,
	       unsigned char *tag, const unsigned char *aad, size_t aadlen)
{
	Aes aes;
	int ret;

	if (wc_AesInit(&aes, NULL, devid) != 0)
		return -1;
	ret = wc_AesGcmSetKey(&aes, key, (word32)klen);
	if (ret == 0 && enc)
		ret = wc_AesGcmEncrypt(&aes, out, in, (word32)n, iv, (word32)ivlen, tag, 16,
				       aad, (word32)aadlen);
	else if (ret == 0)
		ret = wc_AesGcmDecrypt(&aes, out, in, (word32)n, iv, (word32)ivlen, tag, 16,
				       aad, (word32)aadlen);
	wc_AesFree(&aes);
	return ret;
}

static void test_known_answer(int devid)
{
	unsigned char key[32], iv[12], aad[20], pt[60], ct[60], tag[16], buf[60], t[16];
	uint64_t e0 = cryptodev_gcm_encrypts(), d0 = cryptodev_gcm_decrypts();

	unhex(key, NIST_K256);
	unhex(iv, NIST_IV);
	unhex(aad, NIST_AAD);
	unhex(pt, NIST_PT);
	unhex(ct, NIST_CT256);
	unhex(tag, NIST_TAG256);

	memcpy(buf, pt, sizeof(buf));
	CHECK_EQ_INT(gcm(ENC, devid, key, 32, buf, buf, sizeof(buf), iv, 12, t, aad, 20), 0);
	CHECK(memcmp(buf, ct, sizeof(ct)) == 0);
	CHECK(memcmp(t, tag, sizeof(tag)) == 0);
	CHECK_EQ_INT(cryptodev_gcm_encrypts(), e0 + 1);

	CHECK_EQ_INT(gcm(DEC, devid, key, 32, buf, buf, sizeof(buf), iv, 12, t, aad, 20), 0);
	CHECK(memcmp(buf, pt, sizeof(pt)) == 0);
	CHECK_EQ_INT(cryptodev_gcm_decrypts(), d0 + 1);
}

/* Random sizes around the record size: the device must agree byte for byte
 * with libsodium called directly and with wolfSSL's own software. */
static void test_matches_sodium_and_software(int devid)
{
	static const size_t sizes[] = { 0, 1, 15, 16, 17, 255, 4096, 16384 + 1 };
	static unsigned char pt[16400], a[16400], b[16400], c[16400];
	unsigned char key[32], iv[12], aad[5], ta[16], tb[16], tc[16];

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		uint64_t e0 = cryptodev_gcm_encrypts(), d0 = cryptodev_gcm_decrypts();

		randombytes_buf(key, sizeof(key));
		randombytes_buf(iv, sizeof(iv));
		randombytes_buf(aad, sizeof(aad));
		randombytes_buf(pt, n);
		memcpy(a, pt, n);
		CHECK_EQ_INT(gcm(ENC, devid, key, 32, a, a, n, iv, 12, ta, aad, 5), 0);
		CHECK_EQ_INT(cryptodev_gcm_encrypts(), e0 + 1);
		CHECK_EQ_INT(crypto_aead_aes256gcm_encrypt_detached(b, tb, NULL, pt, n, aad, 5,
								     NULL, iv, key), 0);
		CHECK_EQ_INT(gcm(ENC, INVALID_DEVID, key, 32, c, pt, n, iv, 12, tc, aad, 5), 0);
		CHECK(memcmp(a, b, n) == 0 && memcmp(ta, tb, 16) == 0);
		CHECK(memcmp(a, c, n) == 0 && memcmp(ta, tc, 16) == 0);
		/* The software path must not have gone through the device. */
		CHECK_EQ_INT(cryptodev_gcm_encrypts(), e0 + 1);

		CHECK_EQ_INT(gcm(DEC, devid, key, 32, a, a, n, iv, 12, ta, aad, 5), 0);
		CHECK(memcmp(a, pt, n) == 0);
		CHECK_EQ_INT(cryptodev_gcm_decrypts(), d0 + 1);
	}
}

/* wolfSSL reuses Aes objects for new keys; a device that cached anything
 * per Aes pointer would encrypt under the old key here. */
static void test_rekey_same_object(int devid)
{
	Aes aes;
	unsigned char k1[32], k2[32], iv[12], pt[64], out[64], ref[64], tag[16], rtag[16];

	randombytes_buf(k1, sizeof(k1));
	randombytes_buf(k2, sizeof(k2));
	randombytes_buf(iv, sizeof(iv));
	randombytes_buf(pt, sizeof(pt));
	CHECK_EQ_INT(wc_AesInit(&aes, NULL, devid), 0);
	CHECK_EQ_INT(wc_AesGcmSetKey(&aes, k1, 32), 0);
	CHECK_EQ_INT(wc_AesGcmEncrypt(&aes, out, pt, sizeof(pt), iv, 12, tag, 16, NULL, 0), 0);
	CHECK_EQ_INT(wc_AesGcmSetKey(&aes, k2, 32), 0);
	CHECK_EQ_INT(wc_AesGcmEncrypt(&aes, out, pt, sizeof(pt), iv, 12, tag, 16, NULL, 0), 0);
	wc_AesFree(&aes);
	crypto_aead_aes256gcm_encrypt_detached(ref, rtag, NULL, pt, sizeof(pt), NULL, 0, NULL,
					       iv, k2);
	CHECK(memcmp(out, ref, sizeof(ref)) == 0 && memcmp(tag, rtag, 16) == 0);
}

/* Shapes the device does not serve are declined before it touches a buffer:
 * wolfSSL computes them in software, correctly, and the counters stay put. */
static void test_declines(int devid)
{
	unsigned char key[32], iv[16], aad[20], pt[60], ct[60], tag[16], buf[60], t[16];
	unsigned char sw[60], swt[16];
	uint64_t e0, d0;

	unhex(key, NIST_K128);
	unhex(iv, NIST_IV);
	unhex(aad, NIST_AAD);
	unhex(pt, NIST_PT);
	unhex(ct, NIST_CT128);
	unhex(tag, NIST_TAG128);
	e0 = cryptodev_gcm_encrypts();
	d0 = cryptodev_gcm_decrypts();
	memcpy(buf, pt, sizeof(buf));
	CHECK_EQ_INT(gcm(ENC, devid, key, 16, buf, buf, sizeof(buf), iv, 12, t, aad, 20), 0);
	CHECK(memcmp(buf, ct, sizeof(ct)) == 0);
	CHECK(memcmp(t, tag, sizeof(tag)) == 0);
	CHECK_EQ_INT(gcm(DEC, devid, key, 16, buf, buf, sizeof(buf), iv, 12, t, aad, 20), 0);
	CHECK(memcmp(buf, pt, sizeof(pt)) == 0);
	CHECK_EQ_INT(cryptodev_gcm_encrypts(), e0);
	CHECK_EQ_INT(cryptodev_gcm_decrypts(), d0);

	/* AES-256 with a 16-byte IV: not the TLS shape, also software. */
	unhex(key, NIST_K256);
	randombytes_buf(iv, sizeof(iv));
	CHECK_EQ_INT(gcm(ENC, devid, key, 32, buf, pt, sizeof(pt), iv, 16, t, aad, 20), 0);
	CHECK_EQ_INT(gcm(ENC, INVALID_DEVID, key, 32, sw, pt, sizeof(pt), iv, 16, swt, aad, 20), 0);
	CHECK(memcmp(buf, sw, sizeof(sw)) == 0 && memcmp(t, swt, 16) == 0);
	CHECK_EQ_INT(gcm(DEC, devid, key, 32, buf, buf, sizeof(buf), iv, 16, t, aad, 20), 0);
	CHECK(memcmp(buf, pt, sizeof(pt)) == 0);
	CHECK_EQ_INT(cryptodev_gcm_encrypts(), e0);
	CHECK_EQ_INT(cryptodev_gcm_decrypts(), d0);
}

static void test_forgery(int devid)
{
	unsigned char key[32], iv[12], aad[5], pt[100], ct[100], buf[100], tag[16], bad[16];

	randombytes_buf(key, sizeof(key));
	randombytes_buf(iv, sizeof(iv));
	randombytes_buf(aad, sizeof(aad));
	randombytes_buf(pt, sizeof(pt));
	CHECK_EQ_INT(gcm(ENC, devid, key, 32, ct, pt, sizeof(pt), iv, 12, tag, aad, 5), 0);

	memcpy(bad, tag, sizeof(bad));
	bad[7] ^= 0x01;
	CHECK_EQ_INT(gcm(DEC, devid, key, 32, buf, ct, sizeof(ct), iv, 12, bad, aad, 5),
		     AES_GCM_AUTH_E);

	memcpy(buf, ct, sizeof(buf));
	buf[50] ^= 0x80;
	CHECK_EQ_INT(gcm(DEC, devid, key, 32, buf, buf, sizeof(buf), iv, 12, tag, aad, 5),
		     AES_GCM_AUTH_E);

	aad[0] ^= 1;
	CHECK_EQ_INT(gcm(DEC, devid, key, 32, buf, ct, sizeof(ct), iv, 12, tag, aad, 5),
		     AES_GCM_AUTH_E);
	aad[0] ^= 1;
	CHECK_EQ_INT(gcm(DEC, devid, key, 32, buf, ct, sizeof(ct), iv, 12, tag, aad, 5), 0);
	CHECK(memcmp(buf, pt, sizeof(pt)) == 0);
}

/* One record under key k through the device, checked against wolfSSL's
 * software path; 1 when both agree. */
static int agrees(int devid, const unsigned char *k, const unsigned char *pt, size_t n)
{
	unsigned char iv[12], a[512], b[512], ta[16], tb[16];

	if (n > sizeof(a))
		return 0;
	randombytes_buf(iv, sizeof(iv));
	if (gcm(ENC, devid, k, 32, a, pt, n, iv, 12, ta, iv, 5) != 0 ||
	    gcm(ENC, INVALID_DEVID, k, 32, b, pt, n, iv, 12, tb, iv, 5) != 0)
		return 0;
	if (memcmp(a, b, n) != 0 || memcmp(ta, tb, 16) != 0)
		return 0;
	return gcm(DEC, devid, k, 32, a, a, n, iv, 12, ta, iv, 5) == 0 && memcmp(a, pt, n) == 0;
}

/* Keys whose first bytes are equal land in the same cache slot; many keys
 * overflow the cache. Every record must still use its own key. */
static void test_key_cache(int devid)
{
	static unsigned char keys[40][32];
	unsigned char pt[300], k1[32], k2[32];
	int bad = 0;

	randombytes_buf(pt, sizeof(pt));
	randombytes_buf(k1, sizeof(k1));
	memcpy(k2, k1, sizeof(k2));
	k2[31] ^= 0x5a;
	for (int i = 0; i < 8; i++)
		bad += !agrees(devid, i & 1 ? k2 : k1, pt, sizeof(pt));
	for (size_t i = 0; i < 40; i++)
		randombytes_buf(keys[i], 32);
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < 40; i++)
			bad += !agrees(devid, keys[(i * 7 + (size_t)round) % 40], pt, i * 7 % 300);
	CHECK_EQ_INT(bad, 0);
}

struct worker {
	int devid;
	int bad;
};

static void *cache_worker(void *arg)
{
	struct worker *w = arg;
	unsigned char k[4][32], pt[256];

	randombytes_buf(pt, sizeof(pt));
	for (int i = 0; i < 4; i++)
		randombytes_buf(k[i], 32);
	for (int i = 0; i < 400; i++)
		w->bad += !agrees(w->devid, k[i % 4], pt, (size_t)i % sizeof(pt));
	return NULL;
}

/* The cache is per thread: two threads with their own keys at once. */
static void test_threads(int devid)
{
	struct worker w[2] = { { devid, 0 }, { devid, 0 } };
	pthread_t t[2];

	for (int i = 0; i < 2; i++)
		CHECK_EQ_INT(pthread_create(&t[i], NULL, cache_worker, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_INT(w[0].bad + w[1].bad, 0);
}

int main(void)
{
	static const char *const engines[] = { "libcrypto", "libsodium" };
	int devid;

	CHECK_EQ_INT(cryptodev_id(), INVALID_DEVID);
	CHECK_EQ_INT(wolfSSL_Init(), WOLFSSL_SUCCESS);
	/* libsodium is the reference the checks compare against. */
	if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available()) {
		printf("skip: CPU has no AES-NI, libsodium AES-256-GCM unavailable\n");
		return 77;
	}
	devid = cryptodev_init();
	CHECK_EQ_INT(devid, CRYPTODEV_ID);
	/* The self-test already pushed the vector through the device. */
	CHECK(cryptodev_gcm_encrypts() >= 1);
	CHECK(cryptodev_gcm_decrypts() >= 1);
	CHECK_EQ_INT(cryptodev_id(), CRYPTODEV_ID);
	CHECK_EQ_INT(cryptodev_init(), CRYPTODEV_ID);
	/* libcrypto is preferred when it passes its self-test. */
	CHECK(cryptodev_gcm_engine() && strcmp(cryptodev_gcm_engine(), "libcrypto") == 0);
	CHECK_EQ_INT(cryptodev_gcm_select("no-such-engine"), -ENOENT);
	for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++) {
		CHECK_EQ_INT(cryptodev_gcm_select(engines[i]), 0);
		CHECK(strcmp(cryptodev_gcm_engine(), engines[i]) == 0);
		test_known_answer(devid);
		test_matches_sodium_and_software(devid);
		test_rekey_same_object(devid);
		test_declines(devid);
		test_forgery(devid);
		test_key_cache(devid);
		test_threads(devid);
	}
	wolfSSL_Cleanup();
	return check_done("test_cryptodev");
}
