/*
 * consent: rendering and remembered approvals. The remembered-approvals
 * cookie holds "client_id~expiry,client_id~expiry…" followed by "." and an
 * HMAC over it (key derived from the server secret), so a browser can keep
 * it but not forge or extend it.
 */
#include "oauth/consent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/xalloc.h"
#include "oauth/oauth_int.h"
#include "oauth/redirect_uri.h"
#include "oauth/tokens.h"

#define CONSENT_COOKIE "mcpgate_consent"
#define CONSENT_MAX_CLIENTS 20

static void put_escaped(struct strbuf *sb, const char *text)
{
    char *e = oauth_html_escape(text);
    strbuf_puts(sb, e);
    free(e);
}

static const char *scope_text(const struct oauth_server *srv, const char *scope)
{
    const struct gw_string_map *m = &srv->cfg->oauth.scopes;
    for (size_t i = 0; i < m->len; i++)
        if (strcmp(m->keys[i], scope) == 0)
            return m->values[i];
    return NULL;
}

static const char page_style[] =
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
        const char *text = scope_text(srv, v->scopes->items[i]);
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

static void render_routes(struct strbuf *sb, const struct oauth_server *srv,
                          const struct consent_view *v)
{
    strbuf_puts(sb, "<h2 style=\"font-size:1rem\">On these servers:</h2><ul>");
    const struct gw_config *cfg = srv->cfg;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct gw_route_config *r = &cfg->routes[i];
        if (r->auth != GW_ROUTE_AUTH_OAUTH)
            continue;
        if (v->resource && strcmp(v->resource, r->resource_url) != 0)
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
                  page_style);
    put_escaped(&sb, name);
    strbuf_puts(&sb, "</span> wants to use your account</h1>");
    if (client_host) {
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
    render_routes(&sb, srv, v);
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

/* The signed list, or NULL when absent or forged. Owned. */
static char *remembered_list(const struct oauth_server *srv, struct http_request *req)
{
    char *cookie = oauth_cookie_dup(srv, req, CONSENT_COOKIE);
    if (cookie == NULL)
        return NULL;
    char *dot = strrchr(cookie, '.');
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    if (dot == NULL) {
        free(cookie);
        return NULL;
    }
    *dot = '\0';
    if (!oauth_mac_verify(oc->secret, oc->secret_len, "consent", cookie, dot + 1)) {
        free(cookie);
        return NULL;
    }
    return cookie;
}

bool consent_is_remembered(const struct oauth_server *srv, struct http_request *req,
                           const char *client_id, uint64_t now)
{
    if (srv->cfg->oauth.consent_remember_ms == 0)
        return false;
    char *list = remembered_list(srv, req);
    bool found = false;
    for (char *save = NULL, *item = list ? strtok_r(list, ",", &save) : NULL; item && !found;
         item = strtok_r(NULL, ",", &save)) {
        char *tilde = strrchr(item, '~');
        if (tilde == NULL)
            continue;
        *tilde = '\0';
        found = strcmp(item, client_id) == 0 && strtoull(tilde + 1, NULL, 10) > now;
    }
    free(list);
    return found;
}

void consent_remember(const struct oauth_server *srv, struct http_request *req,
                      const char *client_id, uint64_t now)
{
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    if (oc->consent_remember_ms == 0 || strchr(client_id, ',') || strchr(client_id, '~'))
        return;
    uint64_t until = now + oc->consent_remember_ms / 1000;
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "%s~%llu", client_id, (unsigned long long)until);
    char *list = remembered_list(srv, req);
    int kept = 1;
    for (char *save = NULL, *item = list ? strtok_r(list, ",", &save) : NULL;
         item && kept < CONSENT_MAX_CLIENTS; item = strtok_r(NULL, ",", &save)) {
        char *tilde = strrchr(item, '~');
        if (tilde == NULL || strtoull(tilde + 1, NULL, 10) <= now)
            continue;
        if ((size_t)(tilde - item) == strlen(client_id) &&
            strncmp(item, client_id, strlen(client_id)) == 0)
            continue;
        strbuf_printf(&sb, ",%s", item);
        kept++;
    }
    free(list);
    char *mac = oauth_mac_new(oc->secret, oc->secret_len, "consent", strbuf_str(&sb));
    strbuf_printf(&sb, ".%s", mac);
    oauth_cookie_set(srv, req, CONSENT_COOKIE, strbuf_str(&sb), oc->consent_remember_ms / 1000);
    free(mac);
    strbuf_release(&sb);
}
