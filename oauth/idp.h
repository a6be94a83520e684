/*
 * idp: the upstream OpenID Connect provider that logs users in (Asgardeo,
 * or any provider with discovery). mcpgate is one static confidential client
 * of it (DESIGN §1, §3 idp:).
 *
 * What it does:
 * - fetches <issuer>/.well-known/openid-configuration at start and every
 *   idp.discovery_refresh, and the JWKS it names; keys are cached by kid and
 *   the JWKS is fetched again on an unknown kid (at most once per 10 s);
 * - builds the authorization URL for a login (the caller brings state, nonce
 *   and its own PKCE challenge);
 * - exchanges an authorization code (client_secret_basic or _post, with the
 *   PKCE verifier), verifies the ID token and returns the user's identity:
 *     * the algorithm is pinned to the JWK's (RS256 and ES256 only;
 *       never HS*, never none: libjwt 1.10 would accept whatever the token
 *       names; PS256 is refused with a message saying so, because libjwt
 *       1.10 has no RSASSA-PSS), signature, iss exact, aud contains the
 *       client id (string or array; azp must be the client id when aud has
 *       several), exp, nbf and iat within idp.leeway, nonce equal;
 *   calls userinfo when the configured role/group claims are absent from the
 *   ID token (and userinfo's sub must equal the ID token's);
 * - HTTPS is required unless the IdP host is loopback (config enforces it;
 *   the outbound client refuses plain http to other hosts as well).
 *
 * All callbacks run on the event loop, never synchronously inside the call.
 */
#ifndef MCPGATE_OAUTH_IDP_H
#define MCPGATE_OAUTH_IDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/principal.h"
#include "conf/config.h"

struct event_base;
struct httpc;
struct idp_client;

/* The user as the IdP describes them, mapped through idp.claims. */
struct idp_identity {
    char *subject;                 /* owned; never NULL on success */
    char *username, *email, *name; /* owned; may be NULL */
    struct mg_string_list roles;
    struct mg_string_list groups;
    char *access_token;         /* owned, the IdP's; may be NULL (secret: never log) */
    char *refresh_token;        /* owned, the IdP's; may be NULL (secret) */
    uint64_t access_expires_at; /* Unix seconds, 0 when unknown */
};

void idp_identity_free(struct idp_identity *id);

/*
 * On success ID is set (owned by the callee: copy what you keep) and ERROR is
 * NULL. On failure ID is NULL and ERROR is a message fit for logs and for the
 * user's error page (it never contains tokens); ACCESS_DENIED is true when
 * the IdP refused the user or the code (invalid_grant), false when the IdP
 * misbehaved or was unreachable (server_error).
 */
typedef void (*idp_login_fn)(const struct idp_identity *id, const char *error, bool access_denied,
                             void *arg);

/* CFG and HTTPC are borrowed and must outlive the client. NULL + *err_out on bad config. */
struct idp_client *idp_client_new(struct event_base *base, struct httpc *httpc,
                                  const struct gw_idp_config *cfg, char **err_out);
/* Accepts NULL. Pending logins and refreshes are dropped: their callbacks never run.
 * Allowed inside an idp_login_fn callback. */
void idp_client_free(struct idp_client *idp);
/* Starts discovery in the background (and its periodic refresh). */
void idp_client_start(struct idp_client *idp);
/* Discovery and JWKS are loaded (readiness). */
bool idp_client_ready(const struct idp_client *idp);
/* Why it is not ready (last error), or NULL. Cleared by a complete load; may be set while
 * ready when a periodic refresh failed (the last good metadata and keys stay in use). */
const char *idp_client_last_error(const struct idp_client *idp);
/* For a reload: the new config (borrowed) if its idp section is unchanged in substance
 * (idp_config_same_provider). */
void idp_client_set_config(struct idp_client *idp, const struct gw_idp_config *cfg);
/* The two sections name the same provider and the same client at it (preset, issuer,
 * organization, base URL, client id and secret, token auth): a reload may keep the client. */
bool idp_config_same_provider(const struct gw_idp_config *a, const struct gw_idp_config *b);
/*
 * For a reload that removes or replaces the IdP: discovery and key refreshes
 * stop at once; logins and refreshes in flight finish normally, with their
 * callbacks, still reading the config the client was given (keep it alive).
 * When the last has ended, DONE(ARG) runs from the loop and the client frees
 * itself. idp_client_free() on a retiring client drops what is left (exit).
 */
void idp_client_retire(struct idp_client *idp, void (*done)(void *arg), void *arg);

/*
 * The URL to send the browser to, or NULL when discovery has not loaded yet.
 * Owned by the caller. redirect_uri is mcpgate's <public_url>/callback.
 */
char *idp_authorize_url(const struct idp_client *idp, const char *redirect_uri, const char *state,
                        const char *nonce, const char *code_challenge);

/* Exchanges CODE and verifies the result; see idp_login_fn. */
void idp_login(struct idp_client *idp, const char *code, const char *redirect_uri,
               const char *code_verifier, const char *nonce, idp_login_fn cb, void *arg);

/*
 * Refreshes the IdP access token with REFRESH_TOKEN (for upstreams that get
 * the user's IdP token). The identity passed to CB carries the new tokens;
 * its refresh_token is the old one when the IdP did not issue a new one
 * (RFC 6749 §6). Its claims come from the refreshed ID token (verified, no
 * nonce: OpenID Connect Core §12.2) or, when the response has none, from
 * userinfo; the caller checks that the subject is still the grant's.
 */
void idp_refresh(struct idp_client *idp, const char *refresh_token, idp_login_fn cb, void *arg);

/*
 * Verifies an ID token against the cached keys, without network access:
 * returns 0 and fills *claims_json_out (owned JSON text of the payload), or
 * -EKEYREJECTED for an unknown kid (the caller may refresh the JWKS and try
 * again), or -EBADMSG with *why_out (static text) for any other failure.
 * NONCE NULL skips the nonce check (refresh responses; a login always has
 * one). NOW is Unix seconds (tests pass a fixed clock). Exposed for unit tests.
 */
int idp_verify_id_token(const struct idp_client *idp, const char *jwt, const char *nonce,
                        int64_t now, char **claims_json_out, const char **why_out);

/* Loads a JWKS document into the key cache (used by discovery and by tests). */
int idp_load_jwks(struct idp_client *idp, const char *jwks_json, char **err_out);

#endif
