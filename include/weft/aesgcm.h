/* SPDX-License-Identifier: Apache-2.0 */
/* A wolfSSL crypto-callback device that hands AES-256-GCM record crypto to
 * OpenSSL's libcrypto or libsodium (gcm.h); Debian's wolfSSL has no AES-NI. */
#ifndef WEFT_AESGCM_H
#define WEFT_AESGCM_H

#include <stdint.h>

#define AESGCM_DEVID 0x77656674	/* "weft" */

/* Register the device; call after wolfSSL_Init(). Runs a self-test that
 * proves records really reach the callback, through the first engine that
 * runs here and passes it (libcrypto, then libsodium). Returns the devId to
 * pass to wolfSSL_CTX_SetDevId(), or -ENOTSUP when no engine can run (then
 * wolfSSL's software path is used and the caller logs it), or -errno. */
int aesgcm_device_init(void);
/* Switch the engine ("libcrypto", "libsodium") after the device is up, for
 * benchmarks and tests; the engine must pass the self-test. 0 or -errno
 * (-ENOENT unknown, -ENODEV device not registered). */
int aesgcm_engine_select(const char *name);
/* The engine serving records, or NULL. */
const char *aesgcm_engine_name(void);
/* The devId registered, or INVALID_DEVID (-2) when unavailable. */
int aesgcm_device_id(void);
/* Counters for tests and metrics: AES-256-GCM calls served by the engine. */
uint64_t aesgcm_encrypt_calls(void);
uint64_t aesgcm_decrypt_calls(void);

#endif
