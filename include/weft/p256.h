/* SPDX-License-Identifier: Apache-2.0 */
/* ECDSA over P-256 with SHA-2 digests, through OpenSSL's libcrypto
 * (nistz256 assembly), on raw bytes: no wolfSSL type crosses this header,
 * since wolfSSL's options.h turns OpenSSL's EC declarations off. */
#ifndef WEFT_P256_H
#define WEFT_P256_H

#include <stddef.h>
#include <stdint.h>

#define P256_SCALAR_LEN 32
#define P256_POINT_LEN 65		/* uncompressed: 0x04 || x || y */
#define P256_SIG_MAX 72			/* DER */

/* 0 when libcrypto has the curve. */
int p256_probe(void);
/* DER signature of hash under private scalar d (big-endian) into sig
 * (*siglen in: room, out: length). 0, or -1 on failure. */
int p256_sign(const uint8_t d[P256_SCALAR_LEN], const uint8_t *hash, size_t hashlen,
	      uint8_t *sig, size_t *siglen);
/* 1: sig (DER) is hash signed by the key at point pt; 0: it is not (also a
 * malformed signature); -1: pt is not a point of the curve, or failure. */
int p256_verify(const uint8_t pt[P256_POINT_LEN], const uint8_t *hash, size_t hashlen,
		const uint8_t *sig, size_t siglen);

#endif
