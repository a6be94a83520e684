/*
 * consent: the per-client consent page (the confused-deputy guard the MCP
 * security practices require of a proxy that logs users in through one
 * static IdP client) and the remembered approvals.
 *
 * The page is server-rendered HTML that needs no JavaScript. Every string
 * that a client supplied is HTML-escaped. Approvals are remembered per
 * (browser, client, redirect URI, resource, scopes) in a cookie signed with
 * the server secret for oauth.consent.remember; a remembered approval still
 * goes through the IdP.
 */
#ifndef MCPGATE_OAUTH_CONSENT_H
#define MCPGATE_OAUTH_CONSENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/principal.h"

struct oauth_server;
struct http_request;

struct consent_view {
    const char *client_id;
    const char *client_name;   /* may be NULL: the client_id is shown */
    const char *client_uri;    /* may be NULL */
    const char *verified_host; /* may be NULL: the host of a metadata document client_id */
    const char *redirect_uri;
    const struct mg_string_list *scopes;
    const char *resource; /* may be NULL: every route */
    const char *handle;   /* the pending authorization */
    const char *csrf;
};

/* The style every page a person sees shares (the consent page's). */
extern const char consent_page_style[];
/* The consent text of SCOPE from oauth.scopes, or NULL when it has none. */
const char *consent_scope_text(const struct oauth_server *srv, const char *scope);

/* "On these servers:" and the routes a token for RESOURCE reaches (NULL or the
 * gateway root: every OAuth route), HTML-escaped, appended to SB. */
struct strbuf;
void consent_render_routes(struct strbuf *sb, const struct oauth_server *srv, const char *resource);

/* The whole page (owned). */
char *consent_render(const struct oauth_server *srv, const struct consent_view *v);

/*
 * What one approval covers (F2 of the December review): the client, the
 * registered redirect URI the request matched (a loopback port may vary, RFC
 * 8252 §7.3), the resource (NULL or the gateway root: every route) and the
 * scopes. A request is covered by an approval for the same client, redirect
 * URI and resource, or for the same client and redirect URI and every route,
 * whose scopes include all the requested ones. Anything new shows the page.
 */
struct consent_scope {
    const char *client_id;
    const char *redirect_uri; /* the registered one */
    const char *resource;     /* may be NULL */
    const struct mg_string_list *scopes;
};

/* True when this browser approved what C asks for before and the approval is current. */
bool consent_is_remembered(const struct oauth_server *srv, struct http_request *req,
                           const struct consent_scope *c, uint64_t now);
/*
 * Remembers C in this browser (sets the cookie): joined with what it
 * approved for the same client, redirect URI and resource before; the
 * oldest approvals go first when the cookie would pass CONSENT_COOKIE_MAX.
 * When the joined scopes alone would pass it, C's own scopes replace the
 * earlier ones; when even those would, nothing changes (a warning is logged).
 */
void consent_remember(const struct oauth_server *srv, struct http_request *req,
                      const struct consent_scope *c, uint64_t now);

/* The remembered-approvals cookie never passes this many bytes (browsers keep 4096). */
#define CONSENT_COOKIE_MAX 3600

/*
 * The cookie itself, without a request (the two functions above, the unit
 * tests and tests/fuzz/fuzz_consent_cookie.c). Its value is entries
 * "key~scopes~expiry" joined by ",", newest first, then "." and an HMAC over
 * them under a key derived from the server secret for "consent". KEY is
 * consent_approval_key(); SCOPES the base64url of the scopes joined by
 * spaces; EXPIRY Unix seconds.
 */
#define CONSENT_KEY_LEN 22
#define CONSENT_MAX_APPROVALS 20

struct consent_approval {
    char key[CONSENT_KEY_LEN + 1];
    struct mg_string_list scopes;
    uint64_t until; /* Unix seconds */
};

struct consent_approvals {
    struct consent_approval items[CONSENT_MAX_APPROVALS];
    size_t len;
};

/* 22 base64url characters (132 bits) of SHA-256(client_id NUL redirect_uri NUL resource). */
void consent_approval_key(const char *client_id, const char *redirect_uri, const char *resource,
                          char out[CONSENT_KEY_LEN + 1]);
/*
 * The approvals in cookie VALUE that are current at NOW, newest first, at
 * most CONSENT_MAX_APPROVALS; none when SECRET did not sign VALUE.
 * Malformed entries are skipped. Free with consent_approvals_clear().
 */
void consent_cookie_parse(const unsigned char *secret, size_t secret_len, const char *value,
                          uint64_t now, struct consent_approvals *out);
void consent_approvals_clear(struct consent_approvals *as);
/*
 * The signed cookie value that remembers KEY with SCOPES until UNTIL
 * (owned): first that entry, its scopes joined with those AS held for KEY,
 * then the other approvals of AS in order, as many as fit
 * CONSENT_MAX_APPROVALS and CONSENT_COOKIE_MAX. When the joined scopes do
 * not fit, SCOPES alone; NULL when even they do not.
 */
char *consent_cookie_write(const unsigned char *secret, size_t secret_len,
                           const struct consent_approvals *as, const char *key,
                           const struct mg_string_list *scopes, uint64_t until);

#endif
