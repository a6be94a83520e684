/*
 * consent: rendering and remembered approvals. The remembered-approvals
 * cookie holds "key~scopes~expiry,key~scopes~expiry…" followed by "." and an
 * HMAC over it (key derived from the server secret), so a browser can keep
 * it but not forge or extend it (the format is in consent.h).
 */
#include "oauth/consent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64url.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "oauth/oauth_int.h"
#include "oauth/redirect_uri.h"
#include "oauth/tokens.h"

#define CONSENT_COOKIE "mcpgate_consent"

static void put_escaped(struct strbuf *sb, const char *text)
{
    char *e = oauth_html_escape(text);
    strbuf_puts(sb, e);
    free(e);
}

const char *consent_scope_text(const struct oauth_server *srv, const char *scope)
{
    const struct gw_string_map *m = &srv->cfg->oauth.scopes;
    for (size_t i = 0; i < m->len; i++)
        if (strcmp(m->keys[i], scope) == 0)
            return m->values[i];
    return NULL;
}

const char consent_page_style[] =
    "body{font:16px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f5f5f7;"
    "color:#1d1d1f}main{max-width:30rem;margin:2rem auto;background:#fff;border-radius:14px;"
    "padding:1.5rem 1.75rem;box-shadow:0 1px 4px rgba(0,0,0,.08)}h1{font-size:1.3rem;"
    "margin:.2rem 0 1rem}.redirect{background:#fff4e5;border:1px solid #f0b35a;"
    "border-radius:10px;padding:.75rem 1rem;margin:1rem 0}.redirect strong{font-size:1.1rem;"
    "word-break:break-all}ul{padding-left:1.2rem}li{margin:.35rem 0}code{background:#f0f0f2;"
    "padding:.05rem .3rem;border-radius:4px}.actions{display:flex;gap:.75rem;margin-top:1.5rem}"
    "button{flex:1;font-size:1rem;padding:.75rem;border-radius:10px;border:1px solid #c7c7cc;"
    "background:#fff;cursor:pointer}button.approve{background:#0a66c2;color:#fff;"
    "border-color:#0a66c2}button:focus{outline:3px solid #7fb2e5;outline-offset:2px}"
    "small{color:#555}@media (max-width:480px){main{margin:0;border-radius:0;min-height:100vh}"
    ".actions{flex-direction:column}}";

static void render_scopes(struct strbuf *sb, const struct oauth_server *srv,
                          const struct consent_view *v)
{
    strbuf_puts(sb, "<h2 style=\"font-size:1rem\">It will be able to:</h2><ul>");
    for (size_t i = 0; i < v->scopes->len; i++) {
        const char *text = consent_scope_text(srv, v->scopes->items[i]);
        strbuf_puts(sb, "<li>");
        put_escaped(sb, text ? text : v->scopes->items[i]);
        strbuf_puts(sb, " <small>(<code>");
        put_escaped(sb, v->scopes->items[i]);
        strbuf_puts(sb, "</code>)</small></li>");
    }
    if (v->scopes->len == 0)
        strbuf_puts(sb, "<li>Use the MCP servers behind this gateway as you</li>");
    strbuf_puts(sb, "</ul>");
}

static const char *resource_norm(const struct oauth_server *srv, const char *resource);

void consent_render_routes(struct strbuf *sb, const struct oauth_server *srv, const char *resource)
{
    strbuf_puts(sb, "<h2 style=\"font-size:1rem\">On these servers:</h2><ul>");
    const struct gw_config *cfg = srv->cfg;
    /* No resource, or the gateway root: the token works on every OAuth route (F9). */
    const char *only = resource_norm(srv, resource);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct gw_route_config *r = &cfg->routes[i];
        if (r->auth != GW_ROUTE_AUTH_OAUTH)
            continue;
        if (only[0] && strcmp(only, r->resource_url) != 0)
            continue;
        strbuf_puts(sb, "<li>");
        put_escaped(sb, r->description ? r->description : r->name);
        strbuf_puts(sb, " <small><code>");
        put_escaped(sb, r->path);
        strbuf_puts(sb, "</code></small></li>");
    }
    strbuf_puts(sb, "</ul>");
}

char *consent_render(const struct oauth_server *srv, const struct consent_view *v)
{
    struct strbuf sb = STRBUF_INIT;
    const char *name = v->client_name && v->client_name[0] ? v->client_name : v->client_id;
    char *redirect_host = oauth_redirect_uri_display_host(v->redirect_uri);
    char *client_host = v->client_uri ? oauth_redirect_uri_display_host(v->client_uri) : NULL;

    strbuf_printf(&sb,
                  "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<title>Authorize application</title><style>%s</style></head><body>"
                  "<main aria-labelledby=\"title\"><h1 id=\"title\"><span id=\"client-name\">",
                  consent_page_style);
    put_escaped(&sb, name);
    strbuf_puts(&sb, "</span> wants to use your account</h1>");
    if (v->verified_host) {
        /* draft-ietf-oauth-client-id-metadata-document §6.4: show the client_id's host. */
        strbuf_puts(&sb, "<p>from <strong id=\"client-domain\">");
        put_escaped(&sb, v->verified_host);
        strbuf_puts(&sb, "</strong> <small>(verified: the application publishes its details "
                         "there)</small></p>");
    } else if (client_host) {
        strbuf_puts(&sb, "<p><small>Application site: <span id=\"client-host\">");
        put_escaped(&sb, client_host);
        strbuf_puts(&sb, "</span></small></p>");
    }
    strbuf_puts(&sb, "<div class=\"redirect\" role=\"note\">After you approve, you will be "
                     "sent to<br><strong id=\"redirect-host\">");
    put_escaped(&sb, redirect_host ? redirect_host : v->redirect_uri);
    strbuf_puts(&sb, "</strong><br><small>Approve only if you started this from an app you "
                     "trust and recognise this address.</small></div>");
    render_scopes(&sb, srv, v);
    consent_render_routes(&sb, srv, v->resource);
    strbuf_puts(&sb, "<form method=\"post\" action=\"/authorize\">"
                     "<input type=\"hidden\" name=\"request\" value=\"");
    put_escaped(&sb, v->handle);
    strbuf_puts(&sb, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
    put_escaped(&sb, v->csrf);
    strbuf_puts(&sb, "\"><p><small>You will sign in with your organisation's identity provider "
                     "next.</small></p><div class=\"actions\">"
                     "<button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny"
                     "</button><button type=\"submit\" name=\"decision\" value=\"approve\" "
                     "id=\"approve\" class=\"approve\">Approve</button></div></form>"
                     "<p><small>Client id: <code>");
    put_escaped(&sb, v->client_id);
    strbuf_puts(&sb, "</code></small></p></main></body></html>");
    free(redirect_host);
    free(client_host);
    return strbuf_detach(&sb, NULL);
}

/* The resource an approval is for: "" for every route (NULL, the root). */
static const char *resource_norm(const struct oauth_server *srv, const char *resource)
{
    if (resource == NULL)
        return "";
    bool root = false;
    const struct gw_route_config *r = oauth_resource_route(srv, resource, &root);
    return r ? r->resource_url : "";
}

void consent_approval_key(const char *client_id, const char *redirect_uri, const char *resource,
                          char out[CONSENT_KEY_LEN + 1])
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, client_id);
    strbuf_append(&sb, "", 1);
    strbuf_puts(&sb, redirect_uri);
    strbuf_append(&sb, "", 1);
    strbuf_puts(&sb, resource);
    unsigned char digest[CRYPTO_SHA256_LEN];
    crypto_sha256(sb.buf, sb.len, digest);
    strbuf_release(&sb);
    char full[64];
    b64url_encode(digest, sizeof(digest), full);
    memcpy(out, full, CONSENT_KEY_LEN);
    out[CONSENT_KEY_LEN] = '\0';
}

void consent_approvals_clear(struct consent_approvals *as)
{
    for (size_t i = 0; i < as->len; i++)
        mg_string_list_clear(&as->items[i].scopes);
    as->len = 0;
}

/* One "key~scopes~expiry" entry; false when malformed. */
static bool approval_parse(char *item, struct consent_approval *out)
{
    char *t1 = strchr(item, '~');
    char *t2 = t1 ? strchr(t1 + 1, '~') : NULL;
    if (t2 == NULL || t1 - item != CONSENT_KEY_LEN)
        return false;
    memcpy(out->key, item, CONSENT_KEY_LEN);
    out->key[CONSENT_KEY_LEN] = '\0';
    char *end = NULL;
    out->until = strtoull(t2 + 1, &end, 10);
    if (end == t2 + 1 || *end != '\0')
        return false;
    memset(&out->scopes, 0, sizeof(out->scopes));
    if (t2 == t1 + 1)
        return true; /* no scopes */
    size_t n = 0;
    unsigned char *text = b64url_decode_new(t1 + 1, (size_t)(t2 - t1 - 1), &n);
    if (text == NULL)
        return false;
    if (strlen((char *)text) == n)
        mg_string_list_split(&out->scopes, (char *)text);
    free(text);
    return true;
}

void consent_cookie_parse(const unsigned char *secret, size_t secret_len, const char *value,
                          uint64_t now, struct consent_approvals *as)
{
    as->len = 0;
    char *cookie = xstrdup(value);
    char *dot = strrchr(cookie, '.');
    if (dot)
        *dot = '\0';
    if (dot && oauth_mac_verify(secret, secret_len, "consent", cookie, dot + 1)) {
        for (char *save = NULL, *item = strtok_r(cookie, ",", &save);
             item && as->len < CONSENT_MAX_APPROVALS; item = strtok_r(NULL, ",", &save)) {
            struct consent_approval *a = &as->items[as->len];
            if (!approval_parse(item, a))
                continue;
            if (a->until <= now) {
                mg_string_list_clear(&a->scopes);
                continue;
            }
            as->len++;
        }
    }
    free(cookie);
}

/* This browser's current approvals (signature checked, expired ones dropped). */
static void approvals_read(const struct oauth_server *srv, struct http_request *req, uint64_t now,
                           struct consent_approvals *as)
{
    as->len = 0;
    char *cookie = oauth_cookie_dup(srv, req, CONSENT_COOKIE);
    if (cookie == NULL)
        return;
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    consent_cookie_parse(oc->secret, oc->secret_len, cookie, now, as);
    free(cookie);
}

static bool scopes_cover(const struct mg_string_list *approved, const struct mg_string_list *want)
{
    for (size_t i = 0; i < want->len; i++)
        if (!mg_string_list_contains(approved, want->items[i]))
            return false;
    return true;
}

static const struct consent_approval *approvals_find(const struct consent_approvals *as,
                                                     const char *key)
{
    for (size_t i = 0; i < as->len; i++)
        if (strcmp(as->items[i].key, key) == 0)
            return &as->items[i];
    return NULL;
}

bool consent_is_remembered(const struct oauth_server *srv, struct http_request *req,
                           const struct consent_scope *c, uint64_t now)
{
    if (srv->cfg->oauth.consent_remember_ms == 0)
        return false;
    struct consent_approvals as;
    approvals_read(srv, req, now, &as);
    const char *resource = resource_norm(srv, c->resource);
    char key[CONSENT_KEY_LEN + 1], every[CONSENT_KEY_LEN + 1];
    consent_approval_key(c->client_id, c->redirect_uri, resource, key);
    consent_approval_key(c->client_id, c->redirect_uri, "", every);
    const struct consent_approval *mine = approvals_find(&as, key);
    const struct consent_approval *all = resource[0] ? approvals_find(&as, every) : NULL;
    bool found = (mine && scopes_cover(&mine->scopes, c->scopes)) ||
                 (all && scopes_cover(&all->scopes, c->scopes));
    consent_approvals_clear(&as);
    return found;
}

static void approval_write(struct strbuf *sb, const char *key, const struct mg_string_list *scopes,
                           uint64_t until)
{
    char *joined = mg_string_list_join(scopes, " ");
    char *enc = b64url_encode_new(joined, strlen(joined));
    strbuf_printf(sb, "%s%s~%s~%llu", sb->len ? "," : "", key, enc, (unsigned long long)until);
    free(enc);
    free(joined);
}

/* Whether LEN bytes of entries, with "." and the MAC after them, fit CONSENT_COOKIE_MAX. */
static bool entries_fit(size_t len)
{
    return len + 1 + 43 <= CONSENT_COOKIE_MAX;
}

char *consent_cookie_write(const unsigned char *secret, size_t secret_len,
                           const struct consent_approvals *as, const char *key,
                           const struct mg_string_list *scopes, uint64_t until)
{
    /* What the person approved now, and before for the same key: both hold. */
    struct mg_string_list joined = {0};
    for (size_t i = 0; i < scopes->len; i++)
        mg_string_list_add(&joined, scopes->items[i]);
    const struct consent_approval *old = approvals_find(as, key);
    for (size_t i = 0; old && i < old->scopes.len; i++)
        if (!mg_string_list_contains(&joined, old->scopes.items[i]))
            mg_string_list_add(&joined, old->scopes.items[i]);

    /*
     * The new entry is bounded like the others: when the scopes joined do
     * not fit, the new ones alone (they replace the earlier approval);
     * when even those do not, no cookie (a browser would drop it anyway).
     */
    struct strbuf sb = STRBUF_INIT;
    approval_write(&sb, key, &joined, until);
    mg_string_list_clear(&joined);
    if (!entries_fit(sb.len) && old) {
        strbuf_truncate(&sb, 0);
        approval_write(&sb, key, scopes, until);
    }
    if (!entries_fit(sb.len)) {
        strbuf_release(&sb);
        return NULL;
    }
    size_t kept = 1;
    for (size_t i = 0; i < as->len && kept < CONSENT_MAX_APPROVALS; i++) {
        const struct consent_approval *a = &as->items[i];
        if (a == old)
            continue;
        size_t before = sb.len;
        approval_write(&sb, a->key, &a->scopes, a->until);
        if (!entries_fit(sb.len)) {
            strbuf_truncate(&sb, before);
            break;
        }
        kept++;
    }
    char *mac = oauth_mac_new(secret, secret_len, "consent", strbuf_str(&sb));
    strbuf_printf(&sb, ".%s", mac);
    free(mac);
    return strbuf_detach(&sb, NULL);
}

void consent_remember(const struct oauth_server *srv, struct http_request *req,
                      const struct consent_scope *c, uint64_t now)
{
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    if (oc->consent_remember_ms == 0)
        return;
    struct consent_approvals as;
    approvals_read(srv, req, now, &as);
    char key[CONSENT_KEY_LEN + 1];
    consent_approval_key(c->client_id, c->redirect_uri, resource_norm(srv, c->resource), key);
    char *value = consent_cookie_write(oc->secret, oc->secret_len, &as, key, c->scopes,
                                       now + oc->consent_remember_ms / 1000);
    consent_approvals_clear(&as);
    if (value == NULL) {
        gw_log(GW_LOG_WARN, "oauth", http_request_id(req),
               "consent not remembered: the approved scopes do not fit in a cookie", "client",
               c->client_id, NULL);
        return;
    }
    oauth_cookie_set(srv, req, CONSENT_COOKIE, value, oc->consent_remember_ms / 1000);
    free(value);
}
