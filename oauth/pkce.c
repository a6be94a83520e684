/* pkce: RFC 7636 S256. */
#include "oauth/pkce.h"

#include <string.h>

#include "common/b64url.h"
#include "common/crypto.h"
#include "common/rand.h"

bool oauth_pkce_verifier_is_valid(const char *verifier)
{
    size_t n = strlen(verifier);
    if (n < 43 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = verifier[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~'))
            return false;
    }
    return true;
}

bool oauth_pkce_challenge_is_valid(const char *challenge)
{
    return strlen(challenge) == OAUTH_PKCE_CHALLENGE_LEN &&
           b64url_is_valid(challenge, OAUTH_PKCE_CHALLENGE_LEN);
}

bool oauth_pkce_verify(const char *verifier, const char *challenge)
{
    if (!oauth_pkce_verifier_is_valid(verifier) || !oauth_pkce_challenge_is_valid(challenge))
        return false;
    unsigned char digest[CRYPTO_SHA256_LEN];
    char computed[OAUTH_PKCE_CHALLENGE_LEN + 1];
    crypto_sha256(verifier, strlen(verifier), digest);
    b64url_encode(digest, sizeof(digest), computed);
    return crypto_equal(computed, OAUTH_PKCE_CHALLENGE_LEN, challenge, strlen(challenge));
}

void oauth_pkce_new(char verifier[44], char challenge[OAUTH_PKCE_CHALLENGE_LEN + 1])
{
    unsigned char raw[32], digest[CRYPTO_SHA256_LEN];
    rand_bytes(raw, sizeof(raw));
    b64url_encode(raw, sizeof(raw), verifier);
    crypto_sha256(verifier, strlen(verifier), digest);
    b64url_encode(digest, sizeof(digest), challenge);
    crypto_wipe(raw, sizeof(raw));
}
