/*
 * crypto: the few primitives mcpgate uses, all from OpenSSL: SHA-256,
 * HMAC-SHA256, HKDF-SHA256, AES-256-GCM, and constant-time comparison.
 * Nothing here is hand-rolled; this module only fixes the parameters so
 * callers cannot pick weak ones.
 */
#ifndef MCPGATE_COMMON_CRYPTO_H
#define MCPGATE_COMMON_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_KEY_LEN 32
#define CRYPTO_GCM_NONCE_LEN 12
#define CRYPTO_GCM_TAG_LEN 16
/* Sealed size of N plaintext bytes: nonce || ciphertext || tag. */
#define CRYPTO_SEALED_LEN(n) (CRYPTO_GCM_NONCE_LEN + (n) + CRYPTO_GCM_TAG_LEN)

void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN]);
/* Lowercase hex SHA-256 of a NUL-terminated string; out holds 65 bytes. */
void crypto_sha256_hex(const char *text, char out[65]);
void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[CRYPTO_SHA256_LEN]);
/* HKDF-SHA256 (RFC 5869). Returns 0 or -EIO. */
int crypto_hkdf(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
                const char *info, unsigned char *out, size_t out_len);

/*
 * AES-256-GCM with a fresh random 96-bit nonce. OUT receives
 * CRYPTO_SEALED_LEN(len) bytes. AAD binds the ciphertext to its use.
 */
int crypto_seal(const unsigned char key[CRYPTO_KEY_LEN], const void *aad, size_t aad_len,
                const void *plain, size_t len, unsigned char *out);
/* Opens what crypto_seal produced; PLAIN receives sealed_len - 28 bytes. -EBADMSG on forgery. */
int crypto_open(const unsigned char key[CRYPTO_KEY_LEN], const void *aad, size_t aad_len,
                const unsigned char *sealed, size_t sealed_len, unsigned char *plain);

/* Constant-time equality of two equal-length buffers (false when lengths differ). */
bool crypto_equal(const void *a, size_t a_len, const void *b, size_t b_len);
/* Constant-time equality of two strings (length is not secret). */
bool crypto_str_equal(const char *a, const char *b);
/* Wipes memory the compiler may not elide. */
void crypto_wipe(void *p, size_t len);

#endif
