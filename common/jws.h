/*
 * jws: the ES256 keys mcpgate signs identity assertions with (DESIGN §6:
 * X-MCP-Identity / MCP_IDENTITY_JWT) and the JWKS that publishes them.
 *
 * Signing uses OpenSSL directly: ECDSA P-256 over SHA-256, the DER signature
 * converted to the fixed 64-byte r||s form JWS requires (RFC 7518 §3.4).
 * Key ids are RFC 7638 JWK thumbprints, so they are stable across restarts
 * and distinct per key.
 */
#ifndef MCPGATE_COMMON_JWS_H
#define MCPGATE_COMMON_JWS_H

#include <stdbool.h>

#include <jansson.h>

struct jws_key;

/* Loads an EC P-256 private key (PEM). NULL + *err_out (owned) on failure. */
struct jws_key *jws_key_load(const char *pem_path, char **err_out);
void jws_key_free(struct jws_key *k);
const char *jws_key_id(const struct jws_key *k);
/* The public JWK (new reference). */
json_t *jws_key_public_jwk(const struct jws_key *k);
/* A compact JWS over PAYLOAD (owned). */
char *jws_sign(const struct jws_key *k, const json_t *payload);
/* Writes a new P-256 private key to PATH (mode 0600, refuses to overwrite). 0 or -errno. */
int jws_keygen(const char *path, char **err_out);

#endif
