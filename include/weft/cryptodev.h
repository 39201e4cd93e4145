/* SPDX-License-Identifier: Apache-2.0 */
/* A wolfSSL crypto-callback device: TLS records' AES-256-GCM through
 * OpenSSL's libcrypto or libsodium (gcm.h; Debian's wolfSSL has no AES-NI),
 * and the handshake's ECDSA P-256 signatures through libcrypto (pk.h;
 * wolfSSL's are generic C). wolfSSL keeps the protocol,
 * the certificates and everything else. */
#ifndef WEFT_CRYPTODEV_H
#define WEFT_CRYPTODEV_H

#include <stdint.h>

#define CRYPTODEV_ID 0x77656674	/* "weft" */

/* Register the device; call after wolfSSL_Init(). Self-tests prove that
 * records really reach the callback, through the first AES-GCM engine that
 * runs here and passes (libcrypto, then libsodium), and that the public-key
 * operations do. Returns the devId to pass to wolfSSL_CTX_SetDevId(), or
 * -ENOTSUP when nothing can run (then wolfSSL's software path is used and
 * the caller logs it), or -errno. */
int cryptodev_init(void);
/* Switch the engine ("libcrypto", "libsodium") after the device is up, for
 * benchmarks and tests; the engine must pass the self-test. 0 or -errno
 * (-ENOENT unknown, -ENODEV device not registered). */
int cryptodev_gcm_select(const char *name);
/* The engine serving records, or NULL. */
const char *cryptodev_gcm_engine(void);
/* Serve the handshake's public-key operations (1, once their self-test
 * passed) or leave them to wolfSSL (0), for benchmarks. 0 or -ENODEV. */
int cryptodev_pk_enable(int on);
int cryptodev_pk_on(void);
/* Wipe what the calling thread's engines keep of record keys (contexts
 * cached per key); call every few seconds from each thread that runs TLS,
 * so keys of closed sessions do not outlive them for long. */
void cryptodev_forget_keys(void);
/* The devId registered, or INVALID_DEVID (-2) when unavailable. */
int cryptodev_id(void);
/* Counters for tests and metrics: AES-256-GCM calls served by the engine. */
uint64_t cryptodev_gcm_encrypts(void);
uint64_t cryptodev_gcm_decrypts(void);

#endif
