/*
 * pkce: Proof Key for Code Exchange (RFC 7636), S256 only (OAuth 2.1 §4.1.1,
 * MCP authorization: clients MUST use S256). Verifiers are 43–128
 * characters from the unreserved set [A-Za-z0-9-._~] (RFC 7636 §4.1).
 */
#ifndef MCPGATE_OAUTH_PKCE_H
#define MCPGATE_OAUTH_PKCE_H

#include <stdbool.h>

#define OAUTH_PKCE_CHALLENGE_LEN 43

bool oauth_pkce_verifier_is_valid(const char *verifier);
/* An S256 challenge is the base64url of 32 bytes: exactly 43 characters. */
bool oauth_pkce_challenge_is_valid(const char *challenge);
/* BASE64URL(SHA256(verifier)) == challenge, compared in constant time. */
bool oauth_pkce_verify(const char *verifier, const char *challenge);
/* A new verifier (43 chars + NUL) and its challenge, for the IdP leg. */
void oauth_pkce_new(char verifier[44], char challenge[OAUTH_PKCE_CHALLENGE_LEN + 1]);

#endif
