/*
 * tokens: minting, hashing and the encryption of grant properties (DESIGN §5).
 *
 * Tokens are opaque: a readable prefix (so secret scanners find leaks) and
 * 256 random bits in base64url. The store only ever sees their SHA-256.
 * A grant's properties (the user's identity) are sealed with AES-256-GCM
 * under a per-grant key; that key is stored only wrapped, once per token,
 * under a key derived (HKDF) from the token itself and the server secret.
 * So a Redis dump alone reveals no identity data and no usable token.
 */
#ifndef MCPGATE_OAUTH_TOKENS_H
#define MCPGATE_OAUTH_TOKENS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/crypto.h"

enum oauth_token_kind {
    OAUTH_ACCESS_TOKEN = 0, /* mcpgate_at_… */
    OAUTH_REFRESH_TOKEN,    /* mcpgate_rt_… */
    OAUTH_AUTH_CODE,        /* mcpgate_ac_… */
};

#define OAUTH_TOKEN_RANDOM_BYTES 32
#define OAUTH_TOKEN_LEN (11 + 43) /* prefix + base64url of 32 bytes */
#define OAUTH_HASH_HEX_LEN 64

/* A new token of KIND; owned by the caller (wipe with crypto_wipe before free). */
char *oauth_token_mint(enum oauth_token_kind kind);
/* True when TOKEN has the exact shape of a token of KIND (no store lookup). */
bool oauth_token_has_shape(const char *token, enum oauth_token_kind kind);
/* The store key part: lowercase hex SHA-256 of the token (out holds 65 bytes). */
void oauth_token_hash(const char *token, char out[OAUTH_HASH_HEX_LEN + 1]);

/* A fresh per-grant key. */
void oauth_grant_key_new(unsigned char key[CRYPTO_KEY_LEN]);
/* Wraps KEY for TOKEN; *wrapped_out (owned) is base64url text. 0 or -errno. */
int oauth_grant_key_wrap(const unsigned char *secret, size_t secret_len, const char *token,
                         const unsigned char key[CRYPTO_KEY_LEN], char **wrapped_out);
/* -EBADMSG when WRAPPED was not made for TOKEN under SECRET. */
int oauth_grant_key_unwrap(const unsigned char *secret, size_t secret_len, const char *token,
                           const char *wrapped, unsigned char key[CRYPTO_KEY_LEN]);

/* Seals JSON text for GRANT_ID (the id is bound as AAD); *sealed_out owned. */
int oauth_props_seal(const unsigned char key[CRYPTO_KEY_LEN], const char *grant_id,
                     const char *json, char **sealed_out);
int oauth_props_open(const unsigned char key[CRYPTO_KEY_LEN], const char *grant_id,
                     const char *sealed, char **json_out);

/* HMAC-SHA256 under a key derived from the server secret for PURPOSE, base64url. */
char *oauth_mac_new(const unsigned char *secret, size_t secret_len, const char *purpose,
                    const char *data);
bool oauth_mac_verify(const unsigned char *secret, size_t secret_len, const char *purpose,
                      const char *data, const char *mac);

#endif
