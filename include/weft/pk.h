/* SPDX-License-Identifier: Apache-2.0 */
/* The public-key half of the crypto device (cryptodev.c): the handshake's
 * ECDSA P-256 signatures, which Debian's wolfSSL computes in generic C
 * (~80 µs per sign; 80 µs to over 500 µs per verify, depending on whether
 * its fixed-point cache holds the key), done by OpenSSL's libcrypto
 * (nistz256 assembly: ~20 µs sign, ~80 µs verify with the key set-up).
 * wolfSSL 5.5.4 makes its X25519 key shares without the devId, so those
 * stay in wolfSSL. */
#ifndef WEFT_PK_H
#define WEFT_PK_H

#include <stdint.h>

struct wc_CryptoInfo;

/* Serve one WC_ALGO_TYPE_PK call: ECDSA P-256 sign and verify. Anything
 * else, or a shape it does not know, is declined (CRYPTOCB_UNAVAILABLE)
 * before any output is touched. */
int pk_run(struct wc_CryptoInfo *info);
/* 0 when libcrypto can serve it, -ENOTSUP otherwise. */
int pk_probe(void);
/* Prove that wolfCrypt keys made with devid reach pk_run and agree with
 * wolfSSL's own code: a device signature that wolfSSL verifies, a wolfSSL
 * signature the device verifies, a changed one it refuses. 0 or -EIO. */
int pk_self_test(int devid);
/* Calls served, for tests and tlsbench. */
uint64_t pk_calls(void);

#endif
