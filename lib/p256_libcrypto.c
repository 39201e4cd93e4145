/* SPDX-License-Identifier: Apache-2.0 */
/* P-256 ECDSA through libcrypto (p256.h). EC_KEY and ECDSA_sign/verify are
 * deprecated in OpenSSL 3 in favour of EVP_PKEY, whose provider round trips
 * cost more than the operation itself on a 32-byte hash; under them is the
 * same nistz256 code. Keys are set up per call (~15 µs) and freed with
 * their scalars cleared: nothing outlives the call. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>

#include <limits.h>

#include <weft/p256.h>

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
	EC_KEY *ek = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	const unsigned char *p = pt;
	int ok;

	/* o2i refuses a point that is not on the curve. */
	if (!ek || hashlen > INT_MAX || siglen > INT_MAX ||
	    !o2i_ECPublicKey(&ek, &p, P256_POINT_LEN)) {
		EC_KEY_free(ek);
		return -1;
	}
	/* 1 valid, 0 invalid, -1 malformed DER: only 1 is a yes. */
	ok = ECDSA_verify(0, hash, (int)hashlen, sig, (int)siglen, ek);
	EC_KEY_free(ek);
	return ok == 1;
}
