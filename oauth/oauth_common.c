/*
 * oauth_common: the pieces every OAuth endpoint shares: error replies (one
 * builder per surface), redirects, cookies, the audit log, batched store
 * writes, client records and grant revocation.
 */
#include "oauth/oauth_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/crypto.h"
#include "common/net.h"
#include "common/xevent.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "oauth/cimd.h"
#include "oauth/idp.h"
#include "common/log.h"
#include "store/store.h"

/* ---- replies ------------------------------------------------------------ */

void oauth_reply_error(struct http_request *req, int status, const char *error,
                       const char *description)
{
    http_set_header(req, "Pragma", "no-cache");
    http_reply_error(req, status, error, description); /* sets Cache-Control: no-store */
}

struct rate_check {
    struct http_request *req; /* borrowed until answered */
    uint32_t count;
    uint64_t window_ms;
    char *what; /* owned */
    oauth_rate_fn cb;
    void *arg;    /* borrowed */
    bool allowed; /* for rate_deferred */
    bool page;    /* answer a person: HTML */
};

static void on_rate_counted(const struct store_result *res, void *arg)
{
    struct rate_check *rc = arg;
    bool allowed = false;
    if (res->status != STORE_OK) {
        oauth_reply_store_down(rc->req, rc->what);
    } else if (res->integer > (long long)rc->count) {
        char retry[32];
        snprintf(retry, sizeof(retry), "%llu", (unsigned long long)(rc->window_ms + 999) / 1000);
        http_set_header(rc->req, "Retry-After", retry);
        char *msg = xasprintf("too many %s requests from this address; try again later", rc->what);
        if (rc->page)
            oauth_reply_html_error(rc->req, 429, "Too many requests",
                                   "Too many sign-in requests came from this address. Wait a "
                                   "minute and try again.");
        else
            oauth_reply_error(rc->req, 429, "slow_down", msg);
        free(msg);
    } else {
        allowed = true;
    }
    rc->cb(rc->req, allowed, rc->arg);
    free(rc->what);
    free(rc);
}

static void rate_deferred(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rate_check *rc = arg;
    rc->cb(rc->req, rc->allowed, rc->arg);
    free(rc->what);
    free(rc);
}

void oauth_rate_limit(struct oauth_server *srv, struct http_request *req, const char *what,
                      uint32_t count, uint64_t window_ms, bool page, oauth_rate_fn cb, void *arg)
{
    struct rate_check *rc = xcalloc(1, sizeof(*rc));
    rc->page = page;
    rc->req = req;
    rc->count = count;
    rc->window_ms = window_ms;
    rc->what = xstrdup(what);
    rc->cb = cb;
    rc->arg = arg;
    char ip[NET_RATE_KEY_MAX];
    net_rate_key(http_request_client_ip(req), ip);
    char *key = xasprintf("ratelimit:%s:%s", what, ip);
    int rcode = count ? store_incr(srv->store, key, window_ms, on_rate_counted, rc) : 1;
    free(key);
    if (rcode < 0)
        oauth_reply_store_down(req, what);
    if (rcode != 0) { /* callbacks never run inside the call */
        rc->allowed = rcode > 0;
        xevent_defer(srv->base, rate_deferred, rc);
    }
}

void oauth_reply_store_down(struct http_request *req, const char *what)
{
    gw_log(GW_LOG_WARN, "oauth", http_request_id(req), "store unavailable", "during", what, NULL);
    http_set_header(req, "Retry-After", "2");
    oauth_reply_error(req, 503, "temporarily_unavailable",
                      "the authorization server's store is unavailable; try again shortly");
}

void oauth_reply_json(struct http_request *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    http_set_header(req, "Cache-Control", "no-store");
    http_set_header(req, "Pragma", "no-cache");
    http_reply_json_text(req, status, text ? text : "{}");
    free(text);
}

const char *oauth_display_text_check(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        uint32_t cp = *p;
        size_t n = 1;
        if (cp >= 0xf0 && p[1] && p[2] && p[3]) {
            cp = ((cp & 0x07u) << 18) | ((p[1] & 0x3fu) << 12) | ((p[2] & 0x3fu) << 6) |
                 (p[3] & 0x3fu);
            n = 4;
        } else if (cp >= 0xe0 && p[1] && p[2]) {
            cp = ((cp & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
            n = 3;
        } else if (cp >= 0xc0 && p[1]) {
            cp = ((cp & 0x1fu) << 6) | (p[1] & 0x3fu);
            n = 2;
        } else if (cp >= 0x80) {
            return "is not valid UTF-8";
        }
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return "contains control characters";
        if (cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
            (cp >= 0x2066 && cp <= 0x2069))
            return "contains bidirectional control characters";
        if (cp == 0x2028 || cp == 0x2029)
            return "contains line separators";
        p += n;
    }
    return NULL;
}

char *oauth_html_escape(const char *text)
{
    struct strbuf sb = STRBUF_INIT;
    for (const char *p = text; *p; p++) {
        switch (*p) {
        case '&': strbuf_puts(&sb, "&amp;"); break;
        case '<': strbuf_puts(&sb, "&lt;"); break;
        case '>': strbuf_puts(&sb, "&gt;"); break;
        case '"': strbuf_puts(&sb, "&quot;"); break;
        case '\'': strbuf_puts(&sb, "&#39;"); break;
        default: strbuf_append(&sb, p, 1);
        }
    }
    return strbuf_detach(&sb, NULL);
}

void oauth_page_headers(struct http_request *req)
{
    http_set_header(req, "Cache-Control", "no-store");
    http_set_header(req, "X-Frame-Options", "DENY");
    http_set_header(req, "X-Content-Type-Options", "nosniff");
    http_set_header(req, "Referrer-Policy", "no-referrer");
    /* No form-action: Chromium applies it to the redirect that follows the
     * form POST (to the IdP, then to the client), which would block login. */
    http_set_header(req, "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
                    "frame-ancestors 'none'; base-uri 'none'");
}

void oauth_reply_html_error(struct http_request *req, int status, const char *title,
                            const char *message)
{
    char *t = oauth_html_escape(title);
    char *m = oauth_html_escape(message);
    char *rid = oauth_html_escape(http_request_id(req));
    char *page =
        xasprintf("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<title>%s</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;"
                  "margin:3rem auto;padding:0 1rem;color:#1d1d1f}h1{font-size:1.4rem}"
                  ".box{border:1px solid #d0d0d5;border-radius:12px;padding:1.25rem 1.5rem}"
                  "small{color:#666}</style></head><body><main class=\"box\" role=\"alert\">"
                  "<h1>%s</h1><p>%s</p><p><small>Request id: %s</small></p></main></body></html>",
                  t, t, m, rid);
    oauth_page_headers(req);
    http_reply_html(req, status, page);
    free(page);
    free(t);
    free(m);
    free(rid);
}

void oauth_reply_redirect(struct http_request *req, const char *location)
{
    http_set_header(req, "Location", location);
    http_set_header(req, "Cache-Control", "no-store");
    http_set_header(req, "Referrer-Policy", "no-referrer");
    http_reply_empty(req, 302);
}

static void append_param(struct strbuf *sb, bool *first, const char *name, const char *value)
{
    char *n = http_urlencode(name);
    char *v = http_urlencode(value);
    strbuf_printf(sb, "%s%s=%s", *first ? "" : "&", n, v);
    *first = false;
    free(n);
    free(v);
}

char *oauth_url_with_params(const char *base, ...)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, base);
    bool first = strchr(base, '?') == NULL;
    if (!first && base[strlen(base) - 1] != '?' && base[strlen(base) - 1] != '&')
        strbuf_puts(&sb, "&");
    else if (first)
        strbuf_puts(&sb, "?");
    first = true;
    va_list ap;
    va_start(ap, base);
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (name == NULL)
            break;
        const char *value = va_arg(ap, const char *);
        if (value)
            append_param(&sb, &first, name, value);
    }
    va_end(ap);
    return strbuf_detach(&sb, NULL);
}

void oauth_redirect_error(struct oauth_server *srv, struct http_request *req,
                          const char *redirect_uri, const char *error, const char *description,
                          const char *state)
{
    char *url =
        oauth_url_with_params(redirect_uri, "error", error, "error_description", description,
                              "state", state, "iss", srv->cfg->server.public_url, NULL);
    oauth_reply_redirect(req, url);
    free(url);
}

/* ---- cookies -------------------------------------------------------------- */

void oauth_cookie_name(const struct oauth_server *srv, const char *base, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", srv->cfg->server.public_url_https ? "__Host-" : "", base);
}

char *oauth_cookie_dup(const struct oauth_server *srv, struct http_request *req, const char *base)
{
    char name[96];
    oauth_cookie_name(srv, base, name, sizeof(name));
    const char *header = http_request_header(req, "Cookie");
    return header ? oauth_cookie_find(header, name) : NULL;
}

char *oauth_cookie_find(const char *header, const char *name)
{
    size_t name_len = strlen(name);
    /* RFC 6265 §4.2.1: "name=value" pairs separated by "; ". */
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t n = strcspn(p, ";");
        if (n > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=')
            return xstrndup(p + name_len + 1, n - name_len - 1);
        p += n;
    }
    return NULL;
}

void oauth_cookie_set(const struct oauth_server *srv, struct http_request *req, const char *base,
                      const char *value, uint64_t max_age_s)
{
    char name[96];
    oauth_cookie_name(srv, base, name, sizeof(name));
    char *cookie = xasprintf("%s=%s; Path=/; Max-Age=%llu; HttpOnly; SameSite=Lax%s", name,
                             max_age_s ? value : "", (unsigned long long)max_age_s,
                             srv->cfg->server.public_url_https ? "; Secure" : "");
    http_set_header(req, "Set-Cookie", cookie);
    free(cookie);
}

/* ---- audit ------------------------------------------------------------------ */

void oauth_audit(const char *request_id, const char *event, ...)
{
    struct gw_log_line *l = gw_log_begin(GW_LOG_INFO, "audit", request_id, event);
    va_list ap;
    va_start(ap, event);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL)
            break;
        gw_log_str(l, key, va_arg(ap, const char *));
    }
    va_end(ap);
    gw_log_end(l);
}

/* ---- batches -------------------------------------------------------------- */

struct oauth_batch {
    oauth_batch_done_fn done;
    void *arg; /* borrowed */
    size_t pending;
    bool sealed;
    bool failed;
    char *error; /* owned: the first failure */
};

struct oauth_batch *oauth_batch_new(oauth_batch_done_fn done, void *arg)
{
    struct oauth_batch *b = xcalloc(1, sizeof(*b));
    b->done = done;
    b->arg = arg;
    return b;
}

struct oauth_batch *oauth_batch_add(struct oauth_batch *b)
{
    b->pending++;
    return b;
}

static void batch_maybe_finish(struct oauth_batch *b)
{
    if (!b->sealed || b->pending > 0)
        return;
    b->done(!b->failed, b->error, b->arg);
    free(b->error);
    free(b);
}

void oauth_batch_cb(const struct store_result *res, void *arg)
{
    struct oauth_batch *b = arg;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        if (!b->failed)
            b->error = xstrdup(res->error ? res->error : "store error");
        b->failed = true;
    }
    b->pending--;
    batch_maybe_finish(b);
}

/* Store callbacks never run inside the issuing call, so sealing after the
 * last add always sees every completion later, never before. */
void oauth_batch_seal(struct oauth_batch *b)
{
    b->sealed = true;
    batch_maybe_finish(b);
}

/* ---- clients ---------------------------------------------------------- */

void oauth_client_free(struct oauth_client *c)
{
    if (c == NULL)
        return;
    free(c->client_id);
    free(c->secret_sha256);
    mg_string_list_clear(&c->redirect_uris);
    mg_string_list_clear(&c->grant_types);
    free(c->client_name);
    free(c->client_uri);
    free(c->logo_uri);
    free(c);
}

static const char *auth_name(enum gw_client_auth a)
{
    switch (a) {
    case GW_CLIENT_AUTH_CLIENT_SECRET_BASIC: return "client_secret_basic";
    case GW_CLIENT_AUTH_CLIENT_SECRET_POST: return "client_secret_post";
    default: return "none";
    }
}

static bool auth_from_name(const char *s, enum gw_client_auth *out)
{
    if (strcmp(s, "none") == 0)
        *out = GW_CLIENT_AUTH_NONE;
    else if (strcmp(s, "client_secret_basic") == 0)
        *out = GW_CLIENT_AUTH_CLIENT_SECRET_BASIC;
    else if (strcmp(s, "client_secret_post") == 0)
        *out = GW_CLIENT_AUTH_CLIENT_SECRET_POST;
    else
        return false;
    return true;
}

char *oauth_client_to_json(const struct oauth_client *c, json_t *metadata)
{
    json_t *o =
        json_pack("{s:s, s:s, s:o, s:o}", "client_id", c->client_id, "auth", auth_name(c->auth),
                  "redirect_uris", mg_string_list_to_json(&c->redirect_uris), "grant_types",
                  mg_string_list_to_json(&c->grant_types));
    if (c->secret_sha256)
        json_object_set_new(o, "secret_sha256", json_string(c->secret_sha256));
    if (c->client_name)
        json_object_set_new(o, "client_name", json_string(c->client_name));
    if (c->client_uri)
        json_object_set_new(o, "client_uri", json_string(c->client_uri));
    if (c->logo_uri)
        json_object_set_new(o, "logo_uri", json_string(c->logo_uri));
    if (metadata)
        json_object_set(o, "metadata", metadata);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static char *opt_string(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

struct oauth_client *oauth_client_from_json(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    struct oauth_client *c = NULL;
    const char *id = o ? json_string_value(json_object_get(o, "client_id")) : NULL;
    const char *auth = o ? json_string_value(json_object_get(o, "auth")) : NULL;
    if (id == NULL || auth == NULL)
        goto out;
    c = xcalloc(1, sizeof(*c));
    c->client_id = xstrdup(id);
    if (!auth_from_name(auth, &c->auth)) {
        oauth_client_free(c);
        c = NULL;
        goto out;
    }
    c->secret_sha256 = opt_string(o, "secret_sha256");
    mg_string_list_add_json(&c->redirect_uris, json_object_get(o, "redirect_uris"));
    mg_string_list_add_json(&c->grant_types, json_object_get(o, "grant_types"));
    c->client_name = opt_string(o, "client_name");
    c->client_uri = opt_string(o, "client_uri");
    c->logo_uri = opt_string(o, "logo_uri");
out:
    json_decref(o);
    return c;
}

static struct oauth_client *client_from_static(const struct gw_static_client *sc)
{
    struct oauth_client *c = xcalloc(1, sizeof(*c));
    c->client_id = xstrdup(sc->client_id);
    c->auth = sc->auth;
    c->is_static = true;
    if (sc->client_secret) {
        char hex[65];
        crypto_sha256_hex(sc->client_secret, hex);
        c->secret_sha256 = xstrdup(hex);
    }
    for (size_t i = 0; i < sc->redirect_uris.len; i++)
        mg_string_list_add(&c->redirect_uris, sc->redirect_uris.items[i]);
    mg_string_list_add(&c->grant_types, "authorization_code");
    mg_string_list_add(&c->grant_types, "refresh_token");
    c->client_name = sc->client_name ? xstrdup(sc->client_name) : NULL;
    return c;
}

struct client_lookup {
    struct oauth_server *srv; /* borrowed */
    oauth_client_fn cb;
    void *arg; /* borrowed */
};

static void on_client_loaded(const struct store_result *res, void *arg)
{
    struct client_lookup *lk = arg;
    struct oauth_client *c = NULL;
    enum oauth_lookup how = OAUTH_NOT_FOUND;
    if (res->status == STORE_OK) {
        c = oauth_client_from_json(res->value, res->value_len);
        how = c ? OAUTH_FOUND : OAUTH_NOT_FOUND;
    } else if (res->status != STORE_NOT_FOUND) {
        how = OAUTH_STORE_DOWN;
    }
    if (c) {
        /* Registrations expire when unused: each use renews client_ttl. */
        char key[300];
        snprintf(key, sizeof(key), KEY_CLIENT "%s", c->client_id);
        store_expire_detached(lk->srv->store, key, lk->srv->cfg->oauth.registration_client_ttl_ms,
                              "client registration renewal");
    }
    lk->cb(c, how, NULL, lk->arg);
    oauth_client_free(c);
    free(lk);
}

struct oauth_client *oauth_client_dup(const struct oauth_client *c)
{
    struct oauth_client *d = xcalloc(1, sizeof(*d));
    d->client_id = xstrdup(c->client_id);
    d->secret_sha256 = c->secret_sha256 ? xstrdup(c->secret_sha256) : NULL;
    d->auth = c->auth;
    mg_string_list_copy(&d->redirect_uris, &c->redirect_uris);
    mg_string_list_copy(&d->grant_types, &c->grant_types);
    d->client_name = c->client_name ? xstrdup(c->client_name) : NULL;
    d->client_uri = c->client_uri ? xstrdup(c->client_uri) : NULL;
    d->logo_uri = c->logo_uri ? xstrdup(c->logo_uri) : NULL;
    d->is_static = c->is_static;
    return d;
}

void oauth_client_lookup(struct oauth_server *srv, const char *client_id, const char *request_id,
                         oauth_client_fn cb, void *arg)
{
    struct client_lookup *lk = xcalloc(1, sizeof(*lk));
    lk->srv = srv;
    lk->cb = cb;
    lk->arg = arg;
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    for (size_t i = 0; i < oc->n_clients; i++) {
        if (strcmp(oc->clients[i].client_id, client_id) == 0) {
            struct oauth_client *c = client_from_static(&oc->clients[i]);
            cb(c, OAUTH_FOUND, NULL, arg);
            oauth_client_free(c);
            free(lk);
            return;
        }
    }
    /* An https client_id is a metadata document URL, never a registration: /register issues
     * base64url ids, and no stored record can stand in for a document (draft §6.9). */
    if (oauth_cimd_is_url(client_id)) {
        free(lk);
        if (oc->cimd_enabled)
            oauth_cimd_lookup(srv, client_id, request_id, cb, arg);
        else
            cb(NULL, OAUTH_NOT_FOUND, NULL, arg);
        return;
    }
    if (strlen(client_id) > 200 || client_id[0] == '\0') {
        cb(NULL, OAUTH_NOT_FOUND, NULL, arg);
        free(lk);
        return;
    }
    char key[300];
    snprintf(key, sizeof(key), KEY_CLIENT "%s", client_id);
    if (store_get(srv->store, key, on_client_loaded, lk) < 0) {
        cb(NULL, OAUTH_STORE_DOWN, NULL, arg);
        free(lk);
    }
}

bool oauth_client_secret_ok(const struct oauth_client *c, const char *secret)
{
    if (c->secret_sha256 == NULL || secret == NULL)
        return false;
    char hex[65];
    crypto_sha256_hex(secret, hex);
    return crypto_str_equal(hex, c->secret_sha256);
}

bool oauth_client_allows_grant(const struct oauth_client *c, const char *grant_type)
{
    return mg_string_list_contains(&c->grant_types, grant_type);
}

/* ---- scopes and resources ------------------------------------------------ */

bool oauth_scopes_supported(const struct oauth_server *srv, const struct mg_string_list *want)
{
    const struct gw_string_map *scopes = &srv->cfg->oauth.scopes;
    for (size_t i = 0; i < want->len; i++) {
        bool found = false;
        for (size_t j = 0; j < scopes->len && !found; j++)
            found = strcmp(scopes->keys[j], want->items[i]) == 0;
        if (!found)
            return false;
    }
    return true;
}

const struct gw_route_config *oauth_resource_route(const struct oauth_server *srv, const char *url,
                                                   bool *is_root)
{
    *is_root = false;
    const struct gw_config *cfg = srv->cfg;
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (strcmp(cfg->routes[i].resource_url, url) == 0)
            return &cfg->routes[i];
    /* The gateway as a whole; tolerate the one trailing slash URL parsers add. */
    size_t n = strlen(cfg->server.public_url);
    if (strcmp(url, cfg->server.public_url) == 0 ||
        (strncmp(url, cfg->server.public_url, n) == 0 && strcmp(url + n, "/") == 0))
        *is_root = true;
    return NULL;
}

bool oauth_any_route_wants_idp_token(const struct oauth_server *srv)
{
    for (size_t i = 0; i < srv->cfg->n_routes; i++)
        if (srv->cfg->routes[i].identity.idp_access_token)
            return true;
    return false;
}

/* Identity values go into HTTP headers and environment variables upstream:
 * refuse control characters at login (and at a renewal), rather than pass them on. */
static bool value_is_clean(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static bool list_is_clean(const struct mg_string_list *l)
{
    for (size_t i = 0; i < l->len; i++)
        if (!value_is_clean(l->items[i]) || strchr(l->items[i], ','))
            return false;
    return true;
}

bool oauth_identity_is_clean(const struct idp_identity *id)
{
    return value_is_clean(id->subject) && value_is_clean(id->username) &&
           value_is_clean(id->email) && value_is_clean(id->name) && list_is_clean(&id->roles) &&
           list_is_clean(&id->groups);
}

char *oauth_identity_props(const struct idp_identity *id)
{
    json_t *o = json_pack("{s:s, s:o, s:o}", "sub", id->subject, "roles",
                          mg_string_list_to_json(&id->roles), "groups",
                          mg_string_list_to_json(&id->groups));
    if (id->username)
        json_object_set_new(o, "username", json_string(id->username));
    if (id->email)
        json_object_set_new(o, "email", json_string(id->email));
    if (id->name)
        json_object_set_new(o, "name", json_string(id->name));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}
