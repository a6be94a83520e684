/*
 * idp_tokens: the user's own IdP tokens behind one grant, and their renewal.
 *
 * A grant keeps the IdP's access and refresh tokens in idptok:<grant>,
 * sealed under the grant key (only a token of the grant can open them),
 * when a route forwards the IdP token or idp.recheck_on_refresh is on.
 *
 * Renewal is single-flight (F6 of the December review): IdPs that rotate
 * refresh tokens (Asgardeo by default, Okta, Auth0) answer a second use of
 * one refresh token with invalid_grant, and may end the whole sign-in. So:
 * - in one process, one renewal per grant at a time; whoever asks meanwhile
 *   waits for its answer;
 * - across instances, the renewing one holds idplock:<grant> (SET NX PX);
 *   the others re-read idptok:<grant> until it changes or the lock is gone;
 * - an invalid_grant ends the grant only when the stored refresh token is
 *   still the one that was refused: when another renewal replaced it
 *   meanwhile, the newer tokens are used.
 * An ended grant is revoked here, once, whoever was waiting.
 */
#ifndef MCPGATE_OAUTH_IDP_TOKENS_H
#define MCPGATE_OAUTH_IDP_TOKENS_H

#include <stdbool.h>

#include "common/crypto.h"

struct oauth_server;
struct idp_identity;

enum oauth_idp_status {
    OAUTH_IDP_OK,          /* access_token is current */
    OAUTH_IDP_NONE,        /* nothing to renew with: no IdP tokens, or no refresh token */
    OAUTH_IDP_ENDED,       /* the IdP refused the renewal: the grant was revoked */
    OAUTH_IDP_UNAVAILABLE, /* the IdP or the store failed: try again later */
};

struct oauth_idp_result {
    enum oauth_idp_status status;
    const char *access_token; /* OK: the IdP access token (secret: never log) */
    /* OK after a renewal made for this call: what the IdP says of the user
     * now (its subject is the grant's); NULL when the stored token was used. */
    const struct idp_identity *identity;
    const char *why; /* not OK: a reason for logs and audit lines (no secrets) */
};

/* Runs on the loop, never inside oauth_idp_tokens_get; R and what it points to are borrowed. */
typedef void (*oauth_idp_fn)(const struct oauth_idp_result *r, void *arg);

/*
 * The current IdP access token of GRANT_ID (KEY is its grant key, SUBJECT
 * its user). A token within 60 s of expiry is renewed; RENEW asks for a
 * renewal whatever the expiry (idp.recheck_on_refresh). REQUEST_ID (may be
 * NULL) goes to the audit line of an ended grant.
 */
void oauth_idp_tokens_get(struct oauth_server *srv, const char *grant_id,
                          const unsigned char key[CRYPTO_KEY_LEN], const char *subject, bool renew,
                          const char *request_id, oauth_idp_fn cb, void *arg);

/* Drops every renewal in progress without calling back (the server is going away). */
void oauth_idp_tokens_shutdown(struct oauth_server *srv);

#endif
