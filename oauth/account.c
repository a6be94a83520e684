/*
 * account: the page where a person sees the applications they connected and
 * takes them back (oauth.account.path, default /account).
 *
 * Signing in here is a login of its own at the IdP: its own PKCE, state and
 * nonce (login.c), a login record marked "account", nothing shared with the
 * flows of clients. The callback hands such a record to
 * oauth_account_callback(), which opens a short session of the page
 * (acctsess:<sha256(handle)> in the store, oauth.account.session_ttl; the
 * browser holds the handle in an HttpOnly cookie, __Host- on https) with a
 * CSRF token of its own that every form carries (synchronizer token, checked
 * in constant time). The page needs no JavaScript, escapes everything, and
 * has the consent page's headers and style.
 *
 * Disconnect revokes the grant (oauth_grant_revoke: its tokens, and through
 * grant-ended its sessions, streams and children on every instance) after
 * checking that the grant is the signed-in person's; "Disconnect all" does
 * it for each of their grants. Each is one audit line naming the actor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "common/crypto.h"
#include "common/rand.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "oauth/consent.h"
#include "oauth/idp.h"
#include "oauth/oauth_int.h"
#include "oauth/redirect_uri.h"
#include "store/store.h"

#define ACCOUNT_COOKIE "mcpgate_acct"
#define KEY_ACCOUNT_SESSION "acctsess:"
#define ACCOUNT_MAX_GRANTS 200 /* shown; a person with more sees the newest 200 */

/* ---- the page's session ------------------------------------------------------ */

struct account_session {
    char *subject; /* owned */
    char *name;    /* owned, may be NULL */
    char *csrf;    /* owned */
};

static void session_clear(struct account_session *s)
{
    free(s->subject);
    free(s->name);
    free(s->csrf);
    memset(s, 0, sizeof(*s));
}

static void session_key(const char *handle, char out[128])
{
    char hex[65];
    crypto_sha256_hex(handle, hex);
    snprintf(out, 128, KEY_ACCOUNT_SESSION "%s", hex);
}

/* One request to the page, from the cookie to the answer. */
struct account_req {
    struct oauth_server *srv; /* borrowed */
    struct http_request *req; /* borrowed until answered */
    char *handle;             /* owned: the session cookie's value */
    struct account_session sess;
    struct http_params form; /* owned: POST */
    char **ids;              /* owned: the person's grant ids */
    size_t n_ids, next;
    struct strbuf cards; /* the rendered cards so far */
    size_t shown;
    size_t revoked;
    bool all; /* disconnect all */
};

static void account_req_free(struct account_req *ar)
{
    free(ar->handle);
    session_clear(&ar->sess);
    http_params_clear(&ar->form);
    for (size_t i = 0; i < ar->n_ids; i++)
        free(ar->ids[i]);
    free(ar->ids);
    strbuf_release(&ar->cards);
    free(ar);
}

static const char *path_of(const struct oauth_server *srv)
{
    return srv->cfg->oauth.account_path;
}

static void see_other(struct account_req *ar)
{
    oauth_page_headers(ar->req);
    char *to = xasprintf("%s%s", ar->srv->cfg->server.public_url, path_of(ar->srv));
    http_set_header(ar->req, "Location", to);
    http_reply_empty(ar->req, 303);
    free(to);
}

/* ---- signing in ------------------------------------------------------------- */

static void start_sign_in(struct account_req *ar)
{
    json_t *rec = json_pack("{s:b}", "account", 1);
    oauth_idp_login_start(ar->srv, ar->req, rec, "(account page)");
    account_req_free(ar);
}

struct account_login {
    struct oauth_server *srv;
    struct http_request *req;
    char handle[RAND_HANDLE_LEN + 1];
    char *subject;
};

static void on_session_stored(const struct store_result *res, void *arg)
{
    struct account_login *al = arg;
    if (res->status != STORE_OK) {
        oauth_reply_store_down(al->req, "account sign-in");
    } else {
        oauth_audit(http_request_id(al->req), "account sign-in", "subject", al->subject, NULL);
        oauth_cookie_set(al->srv, al->req, ACCOUNT_COOKIE, al->handle,
                         al->srv->cfg->oauth.account_session_ttl_ms / 1000);
        oauth_page_headers(al->req);
        char *to = xasprintf("%s%s", al->srv->cfg->server.public_url, path_of(al->srv));
        http_set_header(al->req, "Location", to);
        http_reply_empty(al->req, 303);
        free(to);
    }
    crypto_wipe(al->handle, sizeof(al->handle));
    free(al->subject);
    free(al);
}

static void on_account_identity(const struct idp_identity *id, const char *error,
                                bool access_denied, void *arg)
{
    struct account_login *al = arg;
    if (id == NULL || !oauth_identity_is_clean(id)) {
        oauth_audit(http_request_id(al->req), "idp failure", "client_id", "(account page)", "error",
                    error ? error : "unusable identity claims", NULL);
        oauth_reply_html_error(al->req, access_denied ? 403 : 502, "Sign-in failed",
                               access_denied ? "The identity provider did not sign you in."
                                             : "The identity provider could not complete the "
                                               "sign-in. Try again in a moment.");
        free(al);
        return;
    }
    al->subject = xstrdup(id->subject);
    char csrf[RAND_HANDLE_LEN + 1];
    rand_handle(al->handle);
    rand_handle(csrf);
    json_t *rec = json_pack("{s:s, s:s?, s:s}", "sub", id->subject, "name",
                            id->name ? id->name : id->username, "csrf", csrf);
    char *text = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    char key[128];
    session_key(al->handle, key);
    if (store_put(al->srv->store, key, text, strlen(text),
                  al->srv->cfg->oauth.account_session_ttl_ms, on_session_stored, al) < 0) {
        oauth_reply_store_down(al->req, "account sign-in");
        free(al->subject);
        free(al);
    }
    crypto_wipe(text, strlen(text));
    free(text);
    crypto_wipe(csrf, sizeof(csrf));
}

void oauth_account_callback(struct oauth_server *srv, struct http_request *req, const char *code,
                            const json_t *login)
{
    const char *verifier = json_string_value(json_object_get(login, "verifier"));
    const char *nonce = json_string_value(json_object_get(login, "nonce"));
    if (code == NULL || verifier == NULL || nonce == NULL || srv->idp == NULL) {
        oauth_reply_html_error(req, 400, "Sign-in failed",
                               "The identity provider returned no usable answer. Open the page "
                               "again to start over.");
        return;
    }
    struct account_login *al = xcalloc(1, sizeof(*al));
    al->srv = srv;
    al->req = req;
    char *callback = xasprintf("%s/callback", srv->cfg->server.public_url);
    idp_login(srv->idp, code, callback, verifier, nonce, on_account_identity, al);
    free(callback);
}

/* ---- the page ---------------------------------------------------------------- */

static void put_escaped(struct strbuf *sb, const char *text)
{
    char *e = oauth_html_escape(text ? text : "");
    strbuf_puts(sb, e);
    free(e);
}

static void put_date(struct strbuf *sb, uint64_t t)
{
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
    strbuf_puts(sb, buf);
}

static void put_csrf(struct strbuf *sb, const struct account_req *ar)
{
    strbuf_puts(sb, "<input type=\"hidden\" name=\"csrf\" value=\"");
    put_escaped(sb, ar->sess.csrf);
    strbuf_puts(sb, "\">");
}

static void render_card(struct account_req *ar, const struct oauth_grant_view *v)
{
    struct strbuf *sb = &ar->cards;
    strbuf_puts(sb, "<section class=\"card\" data-grant=\"");
    put_escaped(sb, v->grant_id);
    strbuf_puts(sb, "\"><h2 class=\"app\">");
    put_escaped(sb, v->client_name && v->client_name[0] ? v->client_name : v->client_id);
    strbuf_puts(sb, "</h2><p><small>");
    if (v->is_static) {
        strbuf_puts(sb, "Set up by the administrator");
    } else if (strncmp(v->client_id, "https://", 8) == 0) {
        /* A Client ID Metadata Document: the client is who serves that URL. */
        char *host = oauth_redirect_uri_display_host(v->client_id);
        strbuf_puts(sb, "Verified: from <strong>");
        put_escaped(sb, host);
        strbuf_puts(sb, "</strong>");
        free(host);
    } else {
        strbuf_puts(sb, "Self-registered (its name is not verified)");
    }
    strbuf_puts(sb, "</small></p>");
    if (v->redirect_host) {
        strbuf_puts(sb, "<p>Sends you back to <strong class=\"host\">");
        put_escaped(sb, v->redirect_host);
        strbuf_puts(sb, "</strong></p>");
    }
    struct mg_string_list scopes = {0};
    mg_string_list_split(&scopes, v->scope);
    strbuf_puts(sb, "<p>It can:</p><ul>");
    for (size_t i = 0; i < scopes.len; i++) {
        const char *text = consent_scope_text(ar->srv, scopes.items[i]);
        strbuf_puts(sb, "<li>");
        put_escaped(sb, text ? text : scopes.items[i]);
        strbuf_puts(sb, "</li>");
    }
    mg_string_list_clear(&scopes);
    strbuf_puts(sb, "</ul>");
    consent_render_routes(sb, ar->srv, v->resource);
    strbuf_puts(sb, "<p><small>Approved ");
    put_date(sb, v->created);
    strbuf_puts(sb, " &middot; last used ");
    if (v->last_used)
        put_date(sb, v->last_used);
    else
        strbuf_puts(sb, "never");
    strbuf_printf(sb, " &middot; <span class=\"sessions\">%zu</span> open session%s</small></p>",
                  v->sessions, v->sessions == 1 ? "" : "s");
    strbuf_printf(sb, "<form method=\"post\" action=\"%s\">", path_of(ar->srv));
    put_csrf(sb, ar);
    strbuf_puts(sb, "<input type=\"hidden\" name=\"grant\" value=\"");
    put_escaped(sb, v->grant_id);
    strbuf_puts(sb, "\"><button name=\"action\" value=\"disconnect\" class=\"deny\">Disconnect"
                    "</button></form></section>");
    ar->shown++;
}

static void render_page(struct account_req *ar)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb,
                  "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<title>Connected applications</title><style>%s"
                  ".card{border:1px solid #d0d0d5;border-radius:12px;padding:.75rem 1rem;"
                  "margin:1rem 0}.card h2{font-size:1.1rem;margin:.2rem 0}</style></head><body>"
                  "<main aria-labelledby=\"title\"><h1 id=\"title\">Connected applications</h1>"
                  "<p>Signed in as <strong id=\"who\">",
                  consent_page_style);
    put_escaped(&sb, ar->sess.name ? ar->sess.name : ar->sess.subject);
    strbuf_puts(&sb, "</strong>. These applications can use the servers behind this gateway "
                     "as you. Disconnecting one ends its access at once, everywhere.</p>");
    if (ar->shown == 0)
        strbuf_puts(&sb, "<p id=\"none\">No applications are connected.</p>");
    else
        strbuf_append(&sb, ar->cards.buf, ar->cards.len);
    strbuf_puts(&sb, "<div class=\"actions\">");
    if (ar->shown) {
        strbuf_printf(&sb, "<form method=\"post\" action=\"%s\">", path_of(ar->srv));
        put_csrf(&sb, ar);
        strbuf_puts(&sb, "<button name=\"action\" value=\"disconnect_all\" class=\"deny\">"
                         "Disconnect all</button></form>");
    }
    strbuf_printf(&sb, "<form method=\"post\" action=\"%s\">", path_of(ar->srv));
    put_csrf(&sb, ar);
    strbuf_puts(&sb, "<button name=\"action\" value=\"signout\">Sign out</button></form></div>"
                     "</main></body></html>");
    oauth_page_headers(ar->req);
    http_reply_html(ar->req, 200, sb.buf);
    strbuf_release(&sb);
    account_req_free(ar);
}

static void render_next(struct account_req *ar);

static void on_view(const struct oauth_grant_view *v, enum oauth_lookup how, void *arg)
{
    struct account_req *ar = arg;
    if (how == OAUTH_STORE_DOWN) {
        oauth_reply_store_down(ar->req, "account page");
        account_req_free(ar);
        return;
    }
    /* The index is the person's, but the record decides (an index may be stale). */
    if (how == OAUTH_FOUND && strcmp(v->subject, ar->sess.subject) == 0)
        render_card(ar, v);
    render_next(ar);
}

static void render_next(struct account_req *ar)
{
    if (ar->next == ar->n_ids || ar->shown >= ACCOUNT_MAX_GRANTS) {
        render_page(ar);
        return;
    }
    oauth_grant_view_load(ar->srv, ar->ids[ar->next++], on_view, ar);
}

/* The person's grant ids, for the page or for "disconnect all". */
static void load_ids(struct account_req *ar, store_cb_fn cb)
{
    char *key = xasprintf(KEY_USER_GRANTS, ar->sess.subject);
    int rc = store_set_members(ar->srv->store, key, cb, ar);
    free(key);
    if (rc < 0) {
        oauth_reply_store_down(ar->req, "account page");
        account_req_free(ar);
    }
}

static bool take_ids(struct account_req *ar, const struct store_result *res)
{
    if (res->status != STORE_OK && res->status != STORE_NOT_FOUND) {
        oauth_reply_store_down(ar->req, "account page");
        account_req_free(ar);
        return false;
    }
    size_t n = res->status == STORE_OK ? res->n_members : 0;
    ar->ids = xcalloc(n ? n : 1, sizeof(*ar->ids));
    for (size_t i = 0; i < n; i++)
        ar->ids[i] = xstrndup(res->members[i], res->member_lens[i]);
    ar->n_ids = n;
    return true;
}

static void on_ids_for_page(const struct store_result *res, void *arg)
{
    struct account_req *ar = arg;
    if (take_ids(ar, res))
        render_next(ar);
}

/* ---- the forms ---------------------------------------------------------------- */

static void disconnect_next(struct account_req *ar);

static void on_disconnected(bool found, void *arg)
{
    struct account_req *ar = arg;
    ar->revoked += found;
    if (ar->all) {
        disconnect_next(ar);
    } else {
        see_other(ar);
        account_req_free(ar);
    }
}

static void revoke_one(struct account_req *ar, const char *grant_id)
{
    oauth_audit(http_request_id(ar->req), "grant disconnected", "grant_id", grant_id, "subject",
                ar->sess.subject, "by", "the person, at the account page", NULL);
    oauth_grant_revoke_then(ar->srv, grant_id, "disconnected by the person at the account page",
                            http_request_id(ar->req), on_disconnected, ar);
}

static void on_view_to_revoke(const struct oauth_grant_view *v, enum oauth_lookup how, void *arg)
{
    struct account_req *ar = arg;
    if (how == OAUTH_STORE_DOWN) {
        oauth_reply_store_down(ar->req, "disconnect");
        account_req_free(ar);
    } else if (how == OAUTH_FOUND && strcmp(v->subject, ar->sess.subject) == 0) {
        revoke_one(ar, v->grant_id);
    } else if (ar->all) {
        disconnect_next(ar); /* expired, or not theirs: nothing to do */
    } else {
        /* Someone else's grant, or none: the same answer, nothing revoked. */
        oauth_audit(http_request_id(ar->req), "disconnect refused", "subject", ar->sess.subject,
                    "reason", "not a grant of this person", NULL);
        oauth_reply_html_error(ar->req, 404, "Not found",
                               "That application is not connected to your account.");
        account_req_free(ar);
    }
}

static void disconnect_next(struct account_req *ar)
{
    if (ar->next == ar->n_ids) {
        see_other(ar);
        account_req_free(ar);
        return;
    }
    oauth_grant_view_load(ar->srv, ar->ids[ar->next++], on_view_to_revoke, ar);
}

static void on_ids_for_all(const struct store_result *res, void *arg)
{
    struct account_req *ar = arg;
    if (take_ids(ar, res))
        disconnect_next(ar);
}

static void on_signed_out(const struct store_result *res, void *arg)
{
    struct account_req *ar = arg;
    (void)res; /* the cookie goes in any case; the record expires by itself */
    oauth_cookie_set(ar->srv, ar->req, ACCOUNT_COOKIE, "", 0);
    oauth_audit(http_request_id(ar->req), "account sign-out", "subject", ar->sess.subject, NULL);
    oauth_page_headers(ar->req);
    http_reply_html(ar->req, 200,
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                    "<title>Signed out</title></head><body><main><h1>Signed out</h1>"
                    "<p>You are signed out of this page. Your applications stay connected.</p>"
                    "</main></body></html>");
    account_req_free(ar);
}

static void act(struct account_req *ar)
{
    const char *action = http_params_get(&ar->form, "action");
    const char *grant = http_params_get(&ar->form, "grant");
    if (action && strcmp(action, "disconnect") == 0 && grant && strlen(grant) < 100) {
        oauth_grant_view_load(ar->srv, grant, on_view_to_revoke, ar);
    } else if (action && strcmp(action, "disconnect_all") == 0) {
        ar->all = true;
        load_ids(ar, on_ids_for_all);
    } else if (action && strcmp(action, "signout") == 0) {
        char key[128];
        session_key(ar->handle, key);
        if (store_del(ar->srv->store, key, on_signed_out, ar) < 0) {
            oauth_reply_store_down(ar->req, "sign-out");
            account_req_free(ar);
        }
    } else {
        oauth_reply_html_error(ar->req, 400, "Invalid request", "The form could not be read.");
        account_req_free(ar);
    }
}

/* ---- requests ------------------------------------------------------------------ */

static void on_session(const struct store_result *res, void *arg)
{
    struct account_req *ar = arg;
    bool post = http_request_method(ar->req) == HTTP_POST;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(ar->req, "account page");
        account_req_free(ar);
        return;
    }
    json_error_t jerr;
    json_t *rec = res->status == STORE_OK ? json_loadb(res->value, res->value_len, 0, &jerr) : NULL;
    const char *sub = json_string_value(json_object_get(rec, "sub"));
    const char *csrf = json_string_value(json_object_get(rec, "csrf"));
    if (sub && csrf) {
        const char *name = json_string_value(json_object_get(rec, "name"));
        ar->sess.subject = xstrdup(sub);
        ar->sess.name = name ? xstrdup(name) : NULL;
        ar->sess.csrf = xstrdup(csrf);
    }
    json_decref(rec);
    if (ar->sess.subject == NULL) {
        if (post) { /* an expired session: nothing is done, the person signs in again */
            oauth_reply_html_error(ar->req, 403, "Your session has ended",
                                   "Open the page again and sign in to continue.");
            account_req_free(ar);
        } else {
            start_sign_in(ar);
        }
        return;
    }
    if (!post) {
        load_ids(ar, on_ids_for_page);
        return;
    }
    const char *sent = http_params_get(&ar->form, "csrf");
    if (sent == NULL || http_params_count(&ar->form, "csrf") != 1 ||
        !crypto_str_equal(sent, ar->sess.csrf)) {
        oauth_audit(http_request_id(ar->req), "account form refused", "subject", ar->sess.subject,
                    "reason", "bad CSRF token", NULL);
        oauth_reply_html_error(ar->req, 403, "Request refused",
                               "This form did not come from your account page. Open the page "
                               "again and retry.");
        account_req_free(ar);
        return;
    }
    act(ar);
}

static void account_request(struct http_request *req, bool allowed, void *arg)
{
    struct oauth_server *srv = arg;
    if (!allowed)
        return; /* answered: 429 or 503 */
    struct account_req *ar = xcalloc(1, sizeof(*ar));
    ar->srv = srv;
    ar->req = req;
    if (http_request_method(req) == HTTP_POST) {
        size_t len;
        const char *body = http_request_body(req, &len);
        const char *ctype = http_request_header(req, "Content-Type");
        bool form = ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0;
        if (!form || http_params_parse(body, len, &ar->form) < 0) {
            oauth_reply_html_error(req, 400, "Invalid request", "The form could not be read.");
            account_req_free(ar);
            return;
        }
    }
    ar->handle = oauth_cookie_dup(srv, req, ACCOUNT_COOKIE);
    if (ar->handle == NULL || strlen(ar->handle) != RAND_HANDLE_LEN) {
        struct store_result none = {.status = STORE_NOT_FOUND};
        on_session(&none, ar); /* no session: sign in (GET) or refuse (POST) */
        return;
    }
    char key[128];
    session_key(ar->handle, key);
    if (store_get(srv->store, key, on_session, ar) < 0) {
        oauth_reply_store_down(req, "account page");
        account_req_free(ar);
    }
}

static void on_account(struct http_request *req, void *arg)
{
    struct oauth_server *srv = arg;
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    oauth_rate_limit(srv, req, "account", oc->authorize_rate_count, oc->authorize_rate_window_ms,
                     true, account_request, srv);
}

int oauth_account_register(struct oauth_server *srv, struct http_server *http)
{
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    if (!oc->account_enabled || !srv->cfg->idp.configured || oc->secret == NULL)
        return 0;
    struct http_route_options o = {.label = "/account", .max_body_bytes = 16384};
    return http_route_add(http, oc->account_path, HTTP_GET | HTTP_POST, on_account, srv, &o);
}
