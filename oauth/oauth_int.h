/*
 * oauth_int: what the files of oauth/ share. Not a public header: nothing
 * outside oauth/ includes it.
 */
#ifndef MCPGATE_OAUTH_OAUTH_INT_H
#define MCPGATE_OAUTH_OAUTH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/crypto.h"
#include "common/principal.h"
#include "conf/config.h"
#include "oauth/oauth.h"

struct http_request;
struct http_params;
struct bearer_cache;
struct store_result;

struct oauth_server {
    const struct gw_config *cfg;    /* borrowed; swapped on reload */
    struct event_base *base;        /* borrowed */
    struct store *store;            /* borrowed */
    struct idp_client *idp;         /* borrowed, may be NULL */
    struct bearer_cache *cache;     /* owned */
    struct idp_flight *idp_flights; /* owned: IdP renewals in progress (idp_tokens.c) */
    struct oauth_cimd *cimd;        /* owned: client metadata documents (cimd.c) */
};

/* Store keys (the store adds its own prefix). */
#define KEY_CLIENT "client:"
#define KEY_AUTHREQ "authreq:"
#define KEY_LOGIN "login:"
#define KEY_CODE "code:"
#define KEY_USED_CODE "usedcode:"
#define KEY_GRANT "grant:"
#define KEY_TOKEN "token:"
#define KEY_REFRESH "refresh:"
#define KEY_USED_REFRESH "usedrefresh:"
#define KEY_USER_GRANTS "user:%s:grants"
#define KEY_CLIENT_GRANTS "clientgrants:%s"
#define KEY_GRANT_TOKENS "granttokens:%s"
#define KEY_IDP_TOKENS "idptok:"
#define KEY_REVOKED_GRANT "revokedgrant:"
#define KEY_GRANT_SEEN "grantseen:" /* Unix time of the grant's last use (bearer, refresh) */
#define KEY_ALL_GRANTS "grants:all"
#define KEY_ALL_CLIENTS "clients:all"
#define CHANNEL_REVOKED "revoked"

/* ---- replies: one builder per error surface --------------------------- */

/* RFC 6749 §5.2 JSON error with Cache-Control: no-store. */
void oauth_reply_error(struct http_request *req, int status, const char *error,
                       const char *description);
/* 503 temporarily_unavailable with Retry-After: the store did not answer. */
void oauth_reply_store_down(struct http_request *req, const char *what);

/*
 * Counts one WHAT request from this client address (net_rate_key: an IPv6
 * client counts per /64) in the store, so the limit holds across instances.
 * CB runs (on the loop) with ALLOWED true while the count is within COUNT per
 * WINDOW_MS (COUNT 0: no limit, and no store round trip); otherwise the
 * request was answered here, 429 with Retry-After ({"error":"slow_down"}, or
 * an HTML page when PAGE: a person's browser asked), or 503 when the store is
 * down, and ALLOWED is false.
 */
typedef void (*oauth_rate_fn)(struct http_request *req, bool allowed, void *arg);
void oauth_rate_limit(struct oauth_server *srv, struct http_request *req, const char *what,
                      uint32_t count, uint64_t window_ms, bool page, oauth_rate_fn cb, void *arg);
/* A JSON body with no-store (token responses, registration). Steals BODY. */
void oauth_reply_json(struct http_request *req, int status, json_t *body);
/* Headers for every page a person sees: no caching, no framing, strict CSP. */
void oauth_page_headers(struct http_request *req);
/* An HTML error page for a person (nothing from the request is trusted: all escaped). */
void oauth_reply_html_error(struct http_request *req, int status, const char *title,
                            const char *message);
/* 302 to LOCATION with the headers every OAuth redirect gets. */
void oauth_reply_redirect(struct http_request *req, const char *location);
/*
 * Redirects to the client's REDIRECT_URI with error, error_description,
 * state and iss (RFC 6749 §4.1.2.1, RFC 9207). STATE may be NULL.
 */
void oauth_redirect_error(struct oauth_server *srv, struct http_request *req,
                          const char *redirect_uri, const char *error, const char *description,
                          const char *state);

/* BASE plus query parameters (name, value pairs, NULL-ended; NULL values skipped). Owned. */
char *oauth_url_with_params(const char *base, ...) __attribute__((sentinel));

/* HTML-escapes TEXT (owned). */
char *oauth_html_escape(const char *text);
/*
 * Whether TEXT (valid UTF-8, as jansson guarantees) may be shown to a person
 * as a name: NULL, or why not. Refused: C0 and C1 controls, DEL, the line and
 * paragraph separators, and the bidirectional controls (U+061C, U+200E/F,
 * U+202A-E, U+2066-9) that can make "Evil<U+202E>moc.elgoog" read as another
 * name (F14).
 */
const char *oauth_display_text_check(const char *text);

struct idp_identity;
/* No control characters in any value, no commas in roles and groups (they
 * travel as comma-separated headers). */
bool oauth_identity_is_clean(const struct idp_identity *id);
/* The identity a grant seals ("props"): sub, roles, groups, username, email, name. Owned. */
char *oauth_identity_props(const struct idp_identity *id);

/* ---- cookies ---------------------------------------------------------- */

/*
 * Cookie names get the __Host- prefix when public_url is https (the prefix
 * requires Secure, Path=/ and no Domain); plain names otherwise (tests and
 * the demo on http://127.0.0.1), where browsers would refuse __Host-.
 */
void oauth_cookie_name(const struct oauth_server *srv, const char *base, char *out, size_t cap);
/* The value of cookie BASE (owned), or NULL. */
char *oauth_cookie_dup(const struct oauth_server *srv, struct http_request *req, const char *base);
/* The value of the first cookie NAME in Cookie header text HEADER (owned), or NULL. */
char *oauth_cookie_find(const char *header, const char *name);
/* Sets cookie BASE (HttpOnly, SameSite=Lax, Path=/, Secure on https). max_age 0 deletes. */
void oauth_cookie_set(const struct oauth_server *srv, struct http_request *req, const char *base,
                      const char *value, uint64_t max_age_s);

/* ---- audit ------------------------------------------------------------ */

/* One audit line: event plus string fields (key, value pairs, NULL-ended). No secrets. */
void oauth_audit(const char *request_id, const char *event, ...) __attribute__((sentinel));

/* ---- parallel store writes -------------------------------------------- */

/*
 * A batch counts store operations issued together and calls DONE once, after
 * the last one completes, with ok=false if any failed. Usage:
 *   b = oauth_batch_new(done, arg);
 *   store_put(s, …, oauth_batch_cb, oauth_batch_add(b)); …
 *   oauth_batch_seal(b);
 */
typedef void (*oauth_batch_done_fn)(bool ok, const char *error, void *arg);
struct oauth_batch;
struct oauth_batch *oauth_batch_new(oauth_batch_done_fn done, void *arg);
struct oauth_batch *oauth_batch_add(struct oauth_batch *b);
void oauth_batch_cb(const struct store_result *res, void *arg);
void oauth_batch_seal(struct oauth_batch *b);

/* ---- clients ---------------------------------------------------------- */

struct oauth_client {
    char *client_id;
    char *secret_sha256; /* hex; NULL for public clients */
    enum gw_client_auth auth;
    struct mg_string_list redirect_uris;
    struct mg_string_list grant_types;
    char *client_name; /* may be NULL */
    char *client_uri;  /* may be NULL */
    char *logo_uri;    /* may be NULL */
    bool is_static;    /* from oauth.clients in the config */
};

void oauth_client_free(struct oauth_client *c);
/* Serialised form stored at client:<id> (owned JSON text). */
char *oauth_client_to_json(const struct oauth_client *c, json_t *metadata);
struct oauth_client *oauth_client_from_json(const char *text, size_t len);

enum oauth_lookup {
    OAUTH_FOUND = 0,
    OAUTH_NOT_FOUND,
    OAUTH_STORE_DOWN,     /* the store (or the process) cannot answer now */
    OAUTH_INVALID_CLIENT, /* a client metadata document was refused: WHY says why */
};
/* CLIENT is borrowed for the call; WHY (borrowed, may be NULL) is a reason a person may be
 * shown, set with OAUTH_INVALID_CLIENT. */
typedef void (*oauth_client_fn)(struct oauth_client *client, enum oauth_lookup how, const char *why,
                                void *arg);
/*
 * Finds CLIENT_ID: a static client (oauth.clients), else an https URL through its client
 * metadata document (cimd.h; never the store), else a dynamic registration in the store.
 * CB runs once, inside this call for static and cached clients, otherwise from the loop.
 * REQUEST_ID (may be NULL) goes into the audit lines of refused documents.
 */
void oauth_client_lookup(struct oauth_server *srv, const char *client_id, const char *request_id,
                         oauth_client_fn cb, void *arg);
struct oauth_client *oauth_client_dup(const struct oauth_client *c); /* owned */

/* ---- login.c: the start of an IdP sign-in ---------------------------------- */

/*
 * Sends REQ's browser to the IdP (or answers 503 when it is not ready), with
 * REC (stolen: what /callback needs; "nonce" and "verifier" are added) stored
 * under login:<sha256(state)>. WHO names the client in audit lines.
 */
void oauth_idp_login_start(struct oauth_server *srv, struct http_request *req, json_t *rec,
                           const char *who);

/* ---- grant_view.c: a grant as /account and `grants list` show it ---------- */

struct oauth_grant_view {
    char *grant_id, *subject, *client_id; /* owned */
    char *client_name;                    /* owned, may be NULL */
    char *redirect_host;                  /* owned, may be NULL: of the first redirect URI */
    bool is_static;                       /* the client is from oauth.clients */
    char *scope;                          /* owned, space-separated */
    char *resource;                       /* owned, NULL: every route */
    uint64_t created, last_used;          /* Unix seconds; last_used 0: never seen */
    size_t sessions;                      /* MCP sessions open on it now (every instance) */
};
/* V is borrowed for the call (NULL unless HOW is OAUTH_FOUND). Never synchronous. */
typedef void (*oauth_grant_view_fn)(const struct oauth_grant_view *v, enum oauth_lookup how,
                                    void *arg);
void oauth_grant_view_load(struct oauth_server *srv, const char *grant_id, oauth_grant_view_fn cb,
                           void *arg);
void oauth_grant_view_clear(struct oauth_grant_view *v);

/* Checks a presented secret against the client's (constant time). */
bool oauth_client_secret_ok(const struct oauth_client *c, const char *secret);
bool oauth_client_allows_grant(const struct oauth_client *c, const char *grant_type);

/* ---- grants ------------------------------------------------------------- */

/*
 * Revokes grant ID and every token of it (best effort; the store may be down).
 * DONE (may be NULL) runs once every command has been issued; FOUND says
 * whether the grant existed.
 */
typedef void (*oauth_revoked_fn)(bool found, void *arg);
void oauth_grant_revoke(struct oauth_server *srv, const char *grant_id, const char *why,
                        const char *request_id);
void oauth_grant_revoke_then(struct oauth_server *srv, const char *grant_id, const char *why,
                             const char *request_id, oauth_revoked_fn done, void *arg);

/* Scope helpers: every item of WANT is in the configured scopes. */
bool oauth_scopes_supported(const struct oauth_server *srv, const struct mg_string_list *want);
/* The route whose resource_url equals URL, or NULL; public_url itself gives *is_root. */
const struct gw_route_config *oauth_resource_route(const struct oauth_server *srv, const char *url,
                                                   bool *is_root);

/* Endpoint registration, one per file. */
int oauth_metadata_register(struct oauth_server *srv, struct http_server *http);
int oauth_register_register(struct oauth_server *srv, struct http_server *http);
int oauth_authorize_register(struct oauth_server *srv, struct http_server *http);
int oauth_callback_register(struct oauth_server *srv, struct http_server *http);
int oauth_token_register(struct oauth_server *srv, struct http_server *http);
int oauth_revoke_register(struct oauth_server *srv, struct http_server *http);
int oauth_account_register(struct oauth_server *srv, struct http_server *http);
/* /callback hands a login record marked "account" here, with the IdP's code. */
void oauth_account_callback(struct oauth_server *srv, struct http_request *req, const char *code,
                            const json_t *login);

/* bearer.c */
struct bearer_cache *bearer_cache_new(struct oauth_server *srv);
void bearer_cache_free(struct bearer_cache *cache);

/* ---- grants.c: grants, codes, tokens ---------------------------------------- */

/* What a grant holds, in the clear, while a request works on it. */
struct oauth_grant {
    char *grant_id;      /* owned */
    char *subject;       /* owned */
    char *client_id;     /* owned */
    char *scope;         /* owned, space-separated: the grant's (refresh tokens keep it) */
    char *access_scope;  /* owned, may be NULL: narrower scope of the new access token */
    char *resource;      /* owned, may be NULL */
    char *props_sealed;  /* owned: the identity, sealed under key */
    uint64_t granted_at; /* Unix seconds of the login; 0 for records older than the field */
    unsigned char key[CRYPTO_KEY_LEN];
};
void oauth_grant_clear(struct oauth_grant *g); /* frees fields, wipes the key */

struct oauth_new_grant {
    const char *subject;
    const char *props_json; /* the principal's identity (plain JSON, sealed here) */
    const char *client_id;
    const char *scope;
    const char *resource; /* may be NULL */
    const char *redirect_uri;
    const char *code_challenge;
    const char *idp_tokens_json; /* may be NULL: sealed into idptok:<grant> when set */
    bool redirect_explicit;      /* the token request must repeat redirect_uri */
};
/* CODE is NULL when the store failed; borrowed for the call. */
typedef void (*oauth_code_fn)(const char *code, const char *grant_id, void *arg);
void oauth_grant_create(struct oauth_server *srv, const struct oauth_new_grant *ng,
                        oauth_code_fn cb, void *arg);

/*
 * Mints an access token (and a refresh token when WITH_REFRESH), stores them
 * and gives CB the token response (owned by CB) with STATUS 0; or NULL with
 * -EIO (the store failed) or -EACCES (the grant was revoked meanwhile: the
 * new tokens were deleted again).
 */
typedef void (*oauth_tokens_fn)(json_t *response, int status, void *arg);
void oauth_issue_tokens(struct oauth_server *srv, const struct oauth_grant *g, bool with_refresh,
                        oauth_tokens_fn cb, void *arg);

/* True when some route forwards the user's IdP access token upstream. */
bool oauth_any_route_wants_idp_token(const struct oauth_server *srv);

/* ---- client authentication at /token and /revoke (token.c) --------------- */

/*
 * Authenticates the client of a form request (RFC 6749 §2.3.1: HTTP Basic,
 * client_secret_post, or none for public clients, exactly as registered).
 * On failure it answers 401 invalid_client itself (with WWW-Authenticate:
 * Basic after a Basic attempt), 400 or 503, then calls CB with CLIENT NULL so
 * the caller can release its state. CB may run inside this call.
 */
typedef void (*oauth_client_auth_fn)(struct http_request *req, struct oauth_client *client,
                                     void *arg);
void oauth_authenticate_client(struct oauth_server *srv, struct http_request *req,
                               const struct http_params *form, oauth_client_auth_fn cb, void *arg);
/* Parses an application/x-www-form-urlencoded body; answers 400 itself on failure. */
bool oauth_read_form(struct http_request *req, struct http_params *form);

#endif
