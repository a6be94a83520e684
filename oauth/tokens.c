/*
 * tokens: see tokens.h. Every key used here is derived from the server
 * secret with HKDF and a purpose label, so one secret never serves two uses.
 */
#include "oauth/tokens.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/b64url.h"
#include "common/panic.h"
#include "common/rand.h"
#include "common/xalloc.h"

static const char *const prefixes[] = {"mcpgate_at_", "mcpgate_rt_", "mcpgate_ac_"};
#define PREFIX_LEN 11

char *oauth_token_mint(enum oauth_token_kind kind)
{
    unsigned char raw[OAUTH_TOKEN_RANDOM_BYTES];
    rand_bytes(raw, sizeof(raw));
    char *out = xmalloc(OAUTH_TOKEN_LEN + 1);
    memcpy(out, prefixes[kind], PREFIX_LEN);
    b64url_encode(raw, sizeof(raw), out + PREFIX_LEN);
    crypto_wipe(raw, sizeof(raw));
    return out;
}

bool oauth_token_has_shape(const char *token, enum oauth_token_kind kind)
{
    return strlen(token) == OAUTH_TOKEN_LEN && memcmp(token, prefixes[kind], PREFIX_LEN) == 0 &&
           b64url_is_valid(token + PREFIX_LEN, OAUTH_TOKEN_LEN - PREFIX_LEN);
}

void oauth_token_hash(const char *token, char out[OAUTH_HASH_HEX_LEN + 1])
{
    crypto_sha256_hex(token, out);
}

void oauth_grant_key_new(unsigned char key[CRYPTO_KEY_LEN])
{
    rand_bytes(key, CRYPTO_KEY_LEN);
}

static int wrapping_key(const unsigned char *secret, size_t secret_len, const char *token,
                        unsigned char out[CRYPTO_KEY_LEN])
{
    /* The token is the high-entropy input; the server secret salts it, so a
     * stolen Redis dump plus a guessed token format is not enough. */
    return crypto_hkdf(token, strlen(token), secret, secret_len, "mcpgate/v1/grant-key-wrap", out,
                       CRYPTO_KEY_LEN);
}

static const char wrap_aad[] = "mcpgate/v1/wrapped-grant-key";

int oauth_grant_key_wrap(const unsigned char *secret, size_t secret_len, const char *token,
                         const unsigned char key[CRYPTO_KEY_LEN], char **wrapped_out)
{
    unsigned char kek[CRYPTO_KEY_LEN];
    unsigned char sealed[CRYPTO_SEALED_LEN(CRYPTO_KEY_LEN)];
    int rc = wrapping_key(secret, secret_len, token, kek);
    if (rc == 0)
        rc = crypto_seal(kek, wrap_aad, sizeof(wrap_aad) - 1, key, CRYPTO_KEY_LEN, sealed);
    if (rc == 0)
        *wrapped_out = b64url_encode_new(sealed, sizeof(sealed));
    crypto_wipe(kek, sizeof(kek));
    return rc;
}

int oauth_grant_key_unwrap(const unsigned char *secret, size_t secret_len, const char *token,
                           const char *wrapped, unsigned char key[CRYPTO_KEY_LEN])
{
    size_t n = 0;
    unsigned char *sealed = b64url_decode_new(wrapped, strlen(wrapped), &n);
    if (sealed == NULL || n != CRYPTO_SEALED_LEN(CRYPTO_KEY_LEN)) {
        free(sealed);
        return -EBADMSG;
    }
    unsigned char kek[CRYPTO_KEY_LEN];
    int rc = wrapping_key(secret, secret_len, token, kek);
    if (rc == 0)
        rc = crypto_open(kek, wrap_aad, sizeof(wrap_aad) - 1, sealed, n, key);
    crypto_wipe(kek, sizeof(kek));
    free(sealed);
    return rc;
}

int oauth_props_seal(const unsigned char key[CRYPTO_KEY_LEN], const char *grant_id,
                     const char *json, char **sealed_out)
{
    size_t len = strlen(json);
    unsigned char *sealed = xmalloc(CRYPTO_SEALED_LEN(len));
    int rc = crypto_seal(key, grant_id, strlen(grant_id), json, len, sealed);
    if (rc == 0)
        *sealed_out = b64url_encode_new(sealed, CRYPTO_SEALED_LEN(len));
    free(sealed);
    return rc;
}

int oauth_props_open(const unsigned char key[CRYPTO_KEY_LEN], const char *grant_id,
                     const char *sealed_text, char **json_out)
{
    size_t n = 0;
    unsigned char *sealed = b64url_decode_new(sealed_text, strlen(sealed_text), &n);
    if (sealed == NULL || n < CRYPTO_SEALED_LEN(0)) {
        free(sealed);
        return -EBADMSG;
    }
    size_t len = n - CRYPTO_SEALED_LEN(0);
    char *plain = xmalloc(len + 1);
    int rc = crypto_open(key, grant_id, strlen(grant_id), sealed, n, (unsigned char *)plain);
    free(sealed);
    if (rc != 0) {
        free(plain);
        return rc;
    }
    plain[len] = '\0';
    *json_out = plain;
    return 0;
}

static void mac_raw(const unsigned char *secret, size_t secret_len, const char *purpose,
                    const char *data, unsigned char out[CRYPTO_SHA256_LEN])
{
    unsigned char key[CRYPTO_KEY_LEN];
    char info[128];
    snprintf(info, sizeof(info), "mcpgate/v1/mac/%s", purpose);
    if (crypto_hkdf(secret, secret_len, "", 0, info, key, sizeof(key)) != 0)
        GW_PANIC("HKDF-SHA256 failed (it is always available in OpenSSL 3)");
    crypto_hmac_sha256(key, sizeof(key), data, strlen(data), out);
    crypto_wipe(key, sizeof(key));
}

char *oauth_mac_new(const unsigned char *secret, size_t secret_len, const char *purpose,
                    const char *data)
{
    unsigned char mac[CRYPTO_SHA256_LEN];
    mac_raw(secret, secret_len, purpose, data, mac);
    return b64url_encode_new(mac, sizeof(mac));
}

bool oauth_mac_verify(const unsigned char *secret, size_t secret_len, const char *purpose,
                      const char *data, const char *mac)
{
    char *expect = oauth_mac_new(secret, secret_len, purpose, data);
    bool ok = crypto_str_equal(expect, mac);
    free(expect);
    return ok;
}
