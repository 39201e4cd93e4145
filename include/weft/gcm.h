/* SPDX-License-Identifier: Apache-2.0 */
/* AES-256-GCM engines behind the wolfSSL crypto-callback device (cryptodev.c):
 * OpenSSL's libcrypto (VAES/AVX-512 and AES-NI code, ~3.9 GB/s here) and
 * libsodium's AES-NI code (~1.6 GB/s). Both take the whole record: a 32-byte
 * key, a 12-byte nonce, a 16-byte tag, in place (out == in) allowed; in and
 * out are real pointers even for an empty message. */
#ifndef WEFT_GCM_H
#define WEFT_GCM_H

#include <stddef.h>
#include <stdint.h>

#define GCM_KEY_LEN 32
#define GCM_NONCE_LEN 12
#define GCM_TAG_LEN 16
/* The largest message either engine takes (libcrypto counts in int). */
#define GCM_MAX_LEN (1u << 30)

enum gcm_result {
	GCM_OK = 0,
	GCM_FORGED = -1,	/* open: the tag does not match; out is zeroed */
	GCM_FAILED = -2,	/* the engine itself failed (allocation, library) */
};

struct gcm_engine {
	const char *name;
	/* 0 when the engine can run on this machine, else -ENOTSUP/-EIO. */
	int (*probe)(void);
	int (*seal)(uint8_t *out, uint8_t tag[GCM_TAG_LEN], const uint8_t *in, size_t len,
		    const uint8_t *aad, size_t aad_len, const uint8_t nonce[GCM_NONCE_LEN],
		    const uint8_t key[GCM_KEY_LEN]);
	int (*open)(uint8_t *out, const uint8_t *in, size_t len, const uint8_t tag[GCM_TAG_LEN],
		    const uint8_t *aad, size_t aad_len, const uint8_t nonce[GCM_NONCE_LEN],
		    const uint8_t key[GCM_KEY_LEN]);
	/* Wipe whatever the calling thread keeps of past keys (NULL: none). */
	void (*forget)(void);
};

extern const struct gcm_engine gcm_libcrypto;
extern const struct gcm_engine gcm_libsodium;

#endif
