/*
 * authorize: GET /authorize validates an authorization request and shows
 * the consent page (or, for a remembered approval, goes straight to the
 * IdP); POST /authorize takes the person's decision.
 *
 * Order of checks (RFC 6749 §4.1.2.1, OAuth 2.1 §4.1.2.1): the client
 * exists, then redirect_uri is registered for it. Until both hold, errors
 * are an HTML page and never a redirect (an open redirector otherwise).
 * After, errors go back to the client with error, state and iss (RFC 9207).
 *
 * Pending authorizations live server-side (authreq:<sha256(handle)>, taken
 * once). The browser that saw the consent page holds a cookie whose name is
 * derived from the handle and whose value is the CSRF token; the POST must
 * bring the same token in the form (double submit) and it must equal the one
 * stored with the request. Per-request cookie names let one browser run
 * several authorizations at once without one overwriting another.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/crypto.h"
#include "common/net.h"
#include "common/rand.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "oauth/cimd.h"
#include "oauth/consent.h"
#include "oauth/idp.h"
#include "oauth/oauth_int.h"
#include "oauth/pkce.h"
#include "oauth/redirect_uri.h"
#include "oauth/tokens.h"
#include "store/store.h"

/* The validated request, carried from GET to POST and on to /callback. */
struct authz {
    struct oauth_server *srv;  /* borrowed */
    struct http_request *req;  /* borrowed until answered */
    struct http_params params; /* owned */
    char *client_id;           /* owned */
    char *client_name;         /* owned, may be NULL */
    char *client_uri;          /* owned, may be NULL */
    char *redirect_uri;        /* owned: as presented (or the only registered one) */
    char *redirect_registered; /* owned: the registered URI it matched (consent is per this) */
    char *state;               /* owned, may be NULL */
    char *code_challenge;      /* owned */
    char *resource;            /* owned, may be NULL */
    struct mg_string_list scopes;
    bool force_consent;
    bool redirect_explicit; /* redirect_uri was in the request (RFC 6749 §4.1.3) */
    char handle[44];
    char csrf[44];
};

static void authz_free(struct authz *a)
{
    http_params_clear(&a->params);
    free(a->client_id);
    free(a->client_name);
    free(a->client_uri);
    free(a->redirect_uri);
    free(a->redirect_registered);
    free(a->state);
    free(a->code_challenge);
    free(a->resource);
    mg_string_list_clear(&a->scopes);
    free(a);
}

static char *opt_dup(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* ---- records -------------------------------------------------------------- */

static json_t *authz_to_json(const struct authz *a)
{
    char *scope = mg_string_list_join(&a->scopes, " ");
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "client_id", a->client_id,
                          "redirect_uri", a->redirect_uri, "code_challenge", a->code_challenge,
                          "scope", scope, "csrf", a->csrf, "created", (json_int_t)time(NULL));
    free(scope);
    if (a->state)
        json_object_set_new(o, "state", json_string(a->state));
    if (a->resource)
        json_object_set_new(o, "resource", json_string(a->resource));
    if (a->client_name)
        json_object_set_new(o, "client_name", json_string(a->client_name));
    json_object_set_new(o, "redirect_explicit", json_boolean(a->redirect_explicit));
    json_object_set_new(o, "redirect_registered", json_string(a->redirect_registered));
    return o;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static struct authz *authz_from_json(struct oauth_server *srv, struct http_request *req,
                                     const char *text, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    if (o == NULL || !jstr(o, "client_id") || !jstr(o, "redirect_uri") ||
        !jstr(o, "code_challenge") || !jstr(o, "scope") || !jstr(o, "csrf")) {
        json_decref(o);
        return NULL;
    }
    struct authz *a = xcalloc(1, sizeof(*a));
    a->srv = srv;
    a->req = req;
    a->client_id = xstrdup(jstr(o, "client_id"));
    a->redirect_uri = xstrdup(jstr(o, "redirect_uri"));
    a->redirect_registered =
        xstrdup(jstr(o, "redirect_registered") ? jstr(o, "redirect_registered") : a->redirect_uri);
    a->code_challenge = xstrdup(jstr(o, "code_challenge"));
    a->state = opt_dup(jstr(o, "state"));
    a->resource = opt_dup(jstr(o, "resource"));
    a->client_name = opt_dup(jstr(o, "client_name"));
    mg_string_list_split(&a->scopes, jstr(o, "scope"));
    snprintf(a->csrf, sizeof(a->csrf), "%s", jstr(o, "csrf"));
    a->redirect_explicit = json_is_true(json_object_get(o, "redirect_explicit"));
    json_decref(o);
    return a;
}

/* Cookie name of one pending authorization: derived from its handle. */
static void authreq_cookie(const char *handle, char *out, size_t cap)
{
    char hex[65];
    crypto_sha256_hex(handle, hex);
    snprintf(out, cap, "mcpgate_ar_%.12s", hex);
}

static void authreq_key(const char *handle, char *out, size_t cap)
{
    char hex[65];
    crypto_sha256_hex(handle, hex);
    snprintf(out, cap, KEY_AUTHREQ "%s", hex);
}

/* ---- the IdP leg ----------------------------------------------------------- */

/* Approved (now, or remembered): the IdP login starts (login.c). */
static void start_login(struct authz *a)
{
    oauth_idp_login_start(a->srv, a->req, authz_to_json(a), a->client_id);
    authz_free(a);
}

/* ---- GET /authorize ------------------------------------------------------ */

static void on_authreq_stored(const struct store_result *res, void *arg)
{
    struct authz *a = arg;
    if (res->status != STORE_OK) {
        oauth_reply_store_down(a->req, "authorization request");
        authz_free(a);
        return;
    }
    char cookie[64];
    authreq_cookie(a->handle, cookie, sizeof(cookie));
    oauth_cookie_set(a->srv, a->req, cookie, a->csrf, a->srv->cfg->oauth.authorize_ttl_ms / 1000);
    char *verified = oauth_cimd_is_url(a->client_id) ? oauth_cimd_host(a->client_id) : NULL;
    struct consent_view v = {
        .client_id = a->client_id,
        .client_name = a->client_name,
        .client_uri = a->client_uri,
        .verified_host = verified,
        .redirect_uri = a->redirect_uri,
        .scopes = &a->scopes,
        .resource = a->resource,
        .handle = a->handle,
        .csrf = a->csrf,
    };
    char *page = consent_render(a->srv, &v);
    free(verified);
    oauth_page_headers(a->req);
    http_reply_html(a->req, 200, page);
    free(page);
    authz_free(a);
}

static void store_authreq(struct authz *a);

/* server.limits.max_pending_authorizations: open consent pages per client address. */
static void on_pending_counted(const struct store_result *res, void *arg)
{
    struct authz *a = arg;
    uint32_t max = a->srv->cfg->server.limits.max_pending_authorizations;
    if (res->status != STORE_OK) {
        oauth_reply_store_down(a->req, "authorization request");
        authz_free(a);
    } else if (max && res->integer > (long long)max) {
        http_set_header(a->req, "Retry-After", "60");
        oauth_reply_html_error(a->req, 429, "Too many sign-in attempts",
                               "Too many sign-in requests are open from your address. Finish or "
                               "close them, then try again in a few minutes.");
        authz_free(a);
    } else {
        store_authreq(a);
    }
}

static void show_consent(struct authz *a)
{
    char key[128], ip[NET_RATE_KEY_MAX];
    net_rate_key(http_request_client_ip(a->req), ip);
    snprintf(key, sizeof(key), "pendingauthz:%s",
             ip); /* not ratelimit:authorize: that is the rate */
    if (store_incr(a->srv->store, key, a->srv->cfg->oauth.authorize_ttl_ms, on_pending_counted, a) <
        0) {
        oauth_reply_store_down(a->req, "authorization request");
        authz_free(a);
    }
}

static void store_authreq(struct authz *a)
{
    rand_handle(a->handle);
    rand_handle(a->csrf);
    json_t *rec = authz_to_json(a);
    if (a->client_uri)
        json_object_set_new(rec, "client_uri", json_string(a->client_uri));
    char *text = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    char key[128];
    authreq_key(a->handle, key, sizeof(key));
    if (store_put(a->srv->store, key, text, strlen(text), a->srv->cfg->oauth.authorize_ttl_ms,
                  on_authreq_stored, a) < 0) {
        oauth_reply_store_down(a->req, "authorization request");
        authz_free(a);
    }
    free(text);
}

/* Checks after the redirect is proven; NULL when all is well. */
static const char *check_request(struct authz *a, const char **error)
{
    const struct http_params *p = &a->params;
    const char *rt = http_params_get(p, "response_type");
    *error = "invalid_request";
    if (rt == NULL)
        return "response_type is required";
    if (strcmp(rt, "code") != 0) {
        *error = "unsupported_response_type";
        return "only response_type=code is supported";
    }
    const char *challenge = http_params_get(p, "code_challenge");
    const char *method = http_params_get(p, "code_challenge_method");
    if (challenge == NULL)
        return "code_challenge is required (PKCE)";
    if (method == NULL || strcmp(method, "S256") != 0)
        return "code_challenge_method must be S256";
    if (!oauth_pkce_challenge_is_valid(challenge))
        return "code_challenge is not a valid S256 challenge";
    a->code_challenge = xstrdup(challenge);

    const char *scope = http_params_get(p, "scope");
    if (scope && scope[0]) {
        mg_string_list_split(&a->scopes, scope);
        if (!oauth_scopes_supported(a->srv, &a->scopes)) {
            *error = "invalid_scope";
            return "the requested scope is not supported";
        }
    } else {
        const struct gw_string_map *all = &a->srv->cfg->oauth.scopes;
        for (size_t i = 0; i < all->len; i++)
            mg_string_list_add(&a->scopes, all->keys[i]);
    }
    const char *resource = http_params_get(p, "resource");
    if (http_params_count(p, "resource") > 1) {
        *error = "invalid_target";
        return "one resource per authorization request";
    }
    if (resource) {
        bool root;
        if (oauth_resource_route(a->srv, resource, &root) == NULL && !root) {
            *error = "invalid_target"; /* RFC 8707 §2 */
            return "resource is not a protected resource of this server";
        }
        a->resource = xstrdup(resource);
    } else if (a->srv->cfg->oauth.require_resource) {
        *error = "invalid_target";
        return "this server requires the resource parameter (RFC 8707)";
    }
    const char *prompt = http_params_get(p, "prompt");
    if (prompt && strstr(prompt, "none")) {
        *error = "login_required";
        return "mcpgate always needs an interactive login";
    }
    a->force_consent = prompt && strstr(prompt, "consent");
    return NULL;
}

static void on_client_for_get(struct oauth_client *client, enum oauth_lookup how,
                              const char *refused, void *arg)
{
    struct authz *a = arg;
    if (how == OAUTH_STORE_DOWN) {
        oauth_reply_store_down(a->req, "client lookup");
        authz_free(a);
        return;
    }
    if (how == OAUTH_INVALID_CLIENT) { /* a client metadata document, refused (audited) */
        char *msg = xasprintf("The application that sent you here names itself by the address "
                              "%s, but its client metadata document was refused: %s. Nothing "
                              "was shared. (invalid_client)",
                              a->client_id, refused ? refused : "it is not valid");
        oauth_reply_html_error(a->req, 400, "Application not recognised", msg);
        free(msg);
        authz_free(a);
        return;
    }
    if (client == NULL) {
        oauth_reply_html_error(a->req, 400, "Unknown application",
                               "The application that sent you here is not registered with this "
                               "server. Nothing was shared.");
        authz_free(a);
        return;
    }
    const char *uri = http_params_get(&a->params, "redirect_uri");
    const char *matched = NULL, *registered = NULL;
    for (size_t i = 0; i < client->redirect_uris.len && uri && !matched; i++)
        if (oauth_redirect_uri_matches(client->redirect_uris.items[i], uri)) {
            matched = uri;
            registered = client->redirect_uris.items[i];
        }
    if (uri == NULL && client->redirect_uris.len == 1)
        matched = registered = client->redirect_uris.items[0]; /* RFC 6749 §3.1.2.3 */
    if (matched == NULL) {
        oauth_reply_html_error(a->req, 400, "Unregistered redirect address",
                               "The application asked to send you to an address it has not "
                               "registered. For your safety you were not redirected.");
        authz_free(a);
        return;
    }
    a->redirect_uri = xstrdup(matched);
    a->redirect_registered = xstrdup(registered);
    a->redirect_explicit = uri != NULL;
    a->client_name = opt_dup(client->client_name);
    a->client_uri = opt_dup(client->client_uri);
    const char *error = NULL;
    const char *why = check_request(a, &error);
    if (why) {
        oauth_redirect_error(a->srv, a->req, a->redirect_uri, error, why, a->state);
        authz_free(a);
        return;
    }
    struct consent_scope cs = {a->client_id, a->redirect_registered, a->resource, &a->scopes};
    if (!a->force_consent && consent_is_remembered(a->srv, a->req, &cs, (uint64_t)time(NULL))) {
        oauth_audit(http_request_id(a->req), "consent remembered", "client_id", a->client_id,
                    "redirect_uri", a->redirect_uri, NULL);
        rand_handle(a->csrf);
        start_login(a);
        return;
    }
    show_consent(a);
}

/* RFC 6749 §3.1: request parameters must not be included more than once. */
static const char *repeated_param(const struct http_params *p)
{
    static const char *const single[] = {
        "client_id", "redirect_uri",   "response_type",         "state",
        "scope",     "code_challenge", "code_challenge_method", "prompt"};
    for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++)
        if (http_params_count(p, single[i]) > 1)
            return single[i];
    return NULL;
}

static void authorize_get(struct http_request *req, bool allowed, void *arg)
{
    struct oauth_server *srv = arg;
    if (!allowed)
        return; /* answered: 429 or 503 */
    struct authz *a = xcalloc(1, sizeof(*a));
    a->srv = srv;
    a->req = req;
    const char *q = http_request_query(req);
    if (q == NULL || http_params_parse(q, strlen(q), &a->params) < 0) {
        oauth_reply_html_error(req, 400, "Invalid request",
                               "The authorization request is missing or malformed.");
        authz_free(a);
        return;
    }
    const char *rep = repeated_param(&a->params);
    const char *client_id = http_params_get(&a->params, "client_id");
    if (rep || client_id == NULL) {
        char *msg = rep ? xasprintf("The parameter \"%s\" was sent more than once.", rep)
                        : xstrdup("The request does not name an application (client_id).");
        oauth_reply_html_error(req, 400, "Invalid request", msg);
        free(msg);
        authz_free(a);
        return;
    }
    a->client_id = xstrdup(client_id);
    a->state = opt_dup(http_params_get(&a->params, "state"));
    oauth_client_lookup(srv, client_id, http_request_id(req), on_client_for_get, a);
}

/* ---- POST /authorize: the decision ---------------------------------------- */

struct decision {
    struct oauth_server *srv; /* borrowed */
    struct http_request *req; /* borrowed until answered */
    char *csrf;               /* owned: from the form */
    char *handle;             /* owned */
    bool approve;
};

static void decision_free(struct decision *d)
{
    free(d->csrf);
    free(d->handle);
    free(d);
}

static void on_authreq_taken(const struct store_result *res, void *arg)
{
    struct decision *d = arg;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(d->req, "consent");
        decision_free(d);
        return;
    }
    struct authz *a = res->status == STORE_OK
                          ? authz_from_json(d->srv, d->req, res->value, res->value_len)
                          : NULL;
    if (a == NULL || !crypto_str_equal(a->csrf, d->csrf)) {
        oauth_reply_html_error(d->req, 400, "This request has expired",
                               "The sign-in request has expired, was already used, or did not "
                               "start in this browser. Go back to the application and try again.");
        if (a)
            authz_free(a);
        decision_free(d);
        return;
    }
    char cookie[64];
    authreq_cookie(d->handle, cookie, sizeof(cookie));
    oauth_cookie_set(d->srv, d->req, cookie, "", 0);
    oauth_audit(http_request_id(d->req), d->approve ? "consent approved" : "consent denied",
                "client_id", a->client_id, "redirect_uri", a->redirect_uri, NULL);
    if (!d->approve) {
        oauth_redirect_error(d->srv, d->req, a->redirect_uri, "access_denied",
                             "the user denied the request", a->state);
        authz_free(a);
    } else {
        struct consent_scope cs = {a->client_id, a->redirect_registered, a->resource, &a->scopes};
        consent_remember(d->srv, d->req, &cs, (uint64_t)time(NULL));
        start_login(a);
    }
    decision_free(d);
}

static void authorize_post(struct http_request *req, bool allowed, void *arg)
{
    struct oauth_server *srv = arg;
    if (!allowed)
        return;
    size_t len;
    const char *body = http_request_body(req, &len);
    struct http_params p = {0};
    const char *ctype = http_request_header(req, "Content-Type");
    bool form = ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0;
    if (!form || http_params_parse(body, len, &p) < 0) {
        oauth_reply_html_error(req, 400, "Invalid request", "The form could not be read.");
        http_params_clear(&p);
        return;
    }
    const char *handle = http_params_get(&p, "request");
    const char *csrf = http_params_get(&p, "csrf");
    const char *decision = http_params_get(&p, "decision");
    char *cookie_value = NULL;
    if (handle && strlen(handle) < 100) {
        char cookie[64];
        authreq_cookie(handle, cookie, sizeof(cookie));
        cookie_value = oauth_cookie_dup(srv, req, cookie);
    }
    /* Double submit: the form's token must equal this browser's cookie. */
    if (handle == NULL || csrf == NULL || decision == NULL || cookie_value == NULL ||
        !crypto_str_equal(cookie_value, csrf) ||
        (strcmp(decision, "approve") != 0 && strcmp(decision, "deny") != 0)) {
        oauth_audit(http_request_id(req), "consent rejected", "reason",
                    "missing or mismatched CSRF token", "client", http_request_client_ip(req),
                    NULL);
        oauth_reply_html_error(req, 403, "Request not accepted",
                               "This approval did not come from the page this server showed in "
                               "this browser. Go back to the application and start again.");
        free(cookie_value);
        http_params_clear(&p);
        return;
    }
    struct decision *d = xcalloc(1, sizeof(*d));
    d->srv = srv;
    d->req = req;
    d->csrf = xstrdup(csrf);
    d->handle = xstrdup(handle);
    d->approve = strcmp(decision, "approve") == 0;
    free(cookie_value);
    http_params_clear(&p);
    char key[128];
    authreq_key(d->handle, key, sizeof(key));
    if (store_take(srv->store, key, on_authreq_taken, d) < 0) {
        oauth_reply_store_down(req, "consent");
        decision_free(d);
    }
}

/* Both halves of /authorize count against oauth.authorize_rate, per address and
 * across instances (F19), before anything else is read. */
static void on_authorize_get(struct http_request *req, void *arg)
{
    struct oauth_server *srv = arg;
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    oauth_rate_limit(srv, req, "authorize", oc->authorize_rate_count, oc->authorize_rate_window_ms,
                     true, authorize_get, srv);
}

static void on_authorize_post(struct http_request *req, void *arg)
{
    struct oauth_server *srv = arg;
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    oauth_rate_limit(srv, req, "authorize", oc->authorize_rate_count, oc->authorize_rate_window_ms,
                     true, authorize_post, srv);
}

int oauth_authorize_register(struct oauth_server *srv, struct http_server *http)
{
    struct http_route_options o = {.label = "/authorize", .max_body_bytes = 16384};
    int rc = http_route_add(http, "/authorize", HTTP_GET, on_authorize_get, srv, &o);
    if (rc == 0)
        rc = http_route_add(http, "/authorize", HTTP_POST, on_authorize_post, srv, &o);
    return rc;
}
