/* SPDX-License-Identifier: Apache-2.0 */
/* AES-256-GCM through libsodium's AES-NI code: stateless, its key set-up
 * costs ~19 ns, so the key is expanded on every record. */
#include <errno.h>

#include <sodium.h>

#include <weft/gcm.h>

static int gcm_sodium_probe(void)
{
	if (sodium_init() < 0)
		return -EIO;
	return crypto_aead_aes256gcm_is_available() ? 0 : -ENOTSUP;
}

static int gcm_sodium_seal(uint8_t *out, uint8_t tag[GCM_TAG_LEN], const uint8_t *in, size_t len,
			   const uint8_t *aad, size_t aad_len, const uint8_t nonce[GCM_NONCE_LEN],
			   const uint8_t key[GCM_KEY_LEN])
{
	return crypto_aead_aes256gcm_encrypt_detached(out, tag, NULL, in, len, aad, aad_len, NULL,
						      nonce, key) == 0 ? GCM_OK : GCM_FAILED;
}

/* libsodium checks the tag before it releases any plaintext. */
static int gcm_sodium_open(uint8_t *out, const uint8_t *in, size_t len,
			   const uint8_t tag[GCM_TAG_LEN], const uint8_t *aad, size_t aad_len,
			   const uint8_t nonce[GCM_NONCE_LEN], const uint8_t key[GCM_KEY_LEN])
{
	return crypto_aead_aes256gcm_decrypt_detached(out, NULL, in, len, tag, aad, aad_len, nonce,
						      key) == 0 ? GCM_OK : GCM_FORGED;
}

const struct gcm_engine gcm_libsodium = {
	.name = "libsodium",
	.probe = gcm_sodium_probe,
	.seal = gcm_sodium_seal,
	.open = gcm_sodium_open,
};
