/*
 * callback: GET /callback, where the IdP sends the browser back.
 *
 * The IdP state is random, one-time (login:<sha256(state)> is taken, never
 * read) and bound to the browser that started the login by a cookie holding
 * an HMAC of the state. Then the code is exchanged and the ID token verified
 * (idp.c), a grant and a one-time code are created, and the browser goes to
 * the client's redirect_uri with code, state and iss.
 *
 * Failures that the client should learn about (the user refused at the IdP,
 * the IdP failed) go back to the client as access_denied or server_error,
 * with an audit line; failures where the request cannot be trusted (no or
 * replayed state, another browser) end in an HTML page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"
#include "oauth/idp.h"
#include "oauth/oauth_int.h"
#include "oauth/tokens.h"
#include "store/store.h"

struct callback {
    struct oauth_server *srv;  /* borrowed */
    struct http_request *req;  /* borrowed until answered */
    struct http_params params; /* owned */
    char *state;               /* owned (the IdP state) */
    json_t *login;             /* owned: the taken login record */
    char *props_json;          /* owned */
    char *subject;             /* owned */
};

static void callback_free(struct callback *cb)
{
    http_params_clear(&cb->params);
    free(cb->state);
    json_decref(cb->login);
    free(cb->props_json);
    free(cb->subject);
    free(cb);
}

static const char *login_str(const struct callback *cb, const char *key)
{
    return json_string_value(json_object_get(cb->login, key));
}

static void to_client_error(struct callback *cb, const char *error, const char *description)
{
    oauth_redirect_error(cb->srv, cb->req, login_str(cb, "redirect_uri"), error, description,
                         login_str(cb, "state"));
}

static void on_code_created(const char *code, const char *grant_id, void *arg)
{
    struct callback *cb = arg;
    if (code == NULL) {
        oauth_reply_store_down(cb->req, "grant");
        callback_free(cb);
        return;
    }
    oauth_audit(http_request_id(cb->req), "grant created", "grant_id", grant_id, "subject",
                cb->subject, "client_id", login_str(cb, "client_id"), "scope",
                login_str(cb, "scope"), NULL);
    char *url =
        oauth_url_with_params(login_str(cb, "redirect_uri"), "code", code, "state",
                              login_str(cb, "state"), "iss", cb->srv->cfg->server.public_url, NULL);
    oauth_reply_redirect(cb->req, url);
    free(url);
    callback_free(cb);
}

static void on_idp_login(const struct idp_identity *id, const char *error, bool access_denied,
                         void *arg)
{
    struct callback *cb = arg;
    const char *rid = http_request_id(cb->req);
    if (id == NULL) {
        oauth_audit(rid, "idp failure", "client_id", login_str(cb, "client_id"), "error",
                    error ? error : "unknown", NULL);
        to_client_error(cb, access_denied ? "access_denied" : "server_error",
                        access_denied ? "the identity provider refused the login"
                                      : "the identity provider could not complete the login");
        callback_free(cb);
        return;
    }
    if (!oauth_identity_is_clean(id)) {
        oauth_audit(rid, "idp failure", "client_id", login_str(cb, "client_id"), "error",
                    "identity claims contain control characters or commas in roles/groups", NULL);
        to_client_error(cb, "access_denied", "the identity provider returned unusable claims");
        callback_free(cb);
        return;
    }
    cb->props_json = oauth_identity_props(id);
    cb->subject = xstrdup(id->subject);
    char *idp_tokens = NULL;
    if (id->access_token &&
        (oauth_any_route_wants_idp_token(cb->srv) || cb->srv->cfg->idp.recheck_on_refresh)) {
        json_t *t = json_pack("{s:s, s:I}", "at", id->access_token, "exp",
                              (json_int_t)id->access_expires_at);
        if (id->refresh_token)
            json_object_set_new(t, "rt", json_string(id->refresh_token));
        idp_tokens = json_dumps(t, JSON_COMPACT);
        json_decref(t);
    }
    struct oauth_new_grant ng = {
        .subject = id->subject,
        .props_json = cb->props_json,
        .client_id = login_str(cb, "client_id"),
        .scope = login_str(cb, "scope"),
        .resource = login_str(cb, "resource"),
        .redirect_uri = login_str(cb, "redirect_uri"),
        .code_challenge = login_str(cb, "code_challenge"),
        .idp_tokens_json = idp_tokens,
        .redirect_explicit = json_is_true(json_object_get(cb->login, "redirect_explicit")),
    };
    oauth_grant_create(cb->srv, &ng, on_code_created, cb);
    if (idp_tokens) {
        crypto_wipe(idp_tokens, strlen(idp_tokens));
        free(idp_tokens);
    }
}

static void on_login_taken(const struct store_result *res, void *arg)
{
    struct callback *cb = arg;
    struct oauth_server *srv = cb->srv;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(cb->req, "callback");
        callback_free(cb);
        return;
    }
    json_error_t jerr;
    cb->login = res->status == STORE_OK ? json_loadb(res->value, res->value_len, 0, &jerr) : NULL;
    if (json_is_true(json_object_get(cb->login, "account"))) {
        /* A sign-in to the account page: no client, no grant (account.c). */
        if (http_params_get(&cb->params, "error"))
            oauth_reply_html_error(cb->req, 403, "Sign-in failed",
                                   "The identity provider did not sign you in.");
        else
            oauth_account_callback(srv, cb->req, http_params_get(&cb->params, "code"), cb->login);
        callback_free(cb);
        return;
    }
    if (cb->login == NULL || !login_str(cb, "redirect_uri") || !login_str(cb, "verifier") ||
        !login_str(cb, "nonce")) {
        oauth_audit(http_request_id(cb->req), "callback rejected", "reason",
                    "unknown, expired or replayed state", NULL);
        oauth_reply_html_error(cb->req, 400, "This sign-in has expired",
                               "The sign-in link was already used or has expired. Go back to the "
                               "application and start again.");
        callback_free(cb);
        return;
    }
    const char *idp_error = http_params_get(&cb->params, "error");
    if (idp_error) {
        bool denied = strcmp(idp_error, "access_denied") == 0 ||
                      strcmp(idp_error, "login_required") == 0 ||
                      strcmp(idp_error, "consent_required") == 0;
        oauth_audit(http_request_id(cb->req), "idp failure", "client_id",
                    login_str(cb, "client_id"), "error", idp_error, NULL);
        to_client_error(cb, denied ? "access_denied" : "server_error",
                        denied ? "the user did not sign in" : "the identity provider failed");
        callback_free(cb);
        return;
    }
    const char *code = http_params_get(&cb->params, "code");
    if (code == NULL) {
        to_client_error(cb, "server_error", "the identity provider returned no code");
        callback_free(cb);
        return;
    }
    char *callback = xasprintf("%s/callback", srv->cfg->server.public_url);
    idp_login(srv->idp, code, callback, login_str(cb, "verifier"), login_str(cb, "nonce"),
              on_idp_login, cb);
    free(callback);
}

static void callback_allowed(struct http_request *req, bool allowed, void *arg)
{
    struct oauth_server *srv = arg;
    if (!allowed)
        return; /* answered: 429 or 503 */
    struct callback *cb = xcalloc(1, sizeof(*cb));
    cb->srv = srv;
    cb->req = req;
    const char *q = http_request_query(req);
    const char *state = NULL;
    if (q && http_params_parse(q, strlen(q), &cb->params) == 0 &&
        http_params_count(&cb->params, "state") == 1)
        state = http_params_get(&cb->params, "state");
    if (state == NULL || strlen(state) > 200 || srv->idp == NULL) {
        oauth_reply_html_error(req, 400, "Invalid sign-in response",
                               "This address is only for returning from the sign-in page.");
        callback_free(cb);
        return;
    }
    cb->state = xstrdup(state);
    /* Browser binding: this browser started this login. */
    char hex[65], name[64];
    crypto_sha256_hex(state, hex);
    snprintf(name, sizeof(name), "mcpgate_li_%.12s", hex);
    char *mac = oauth_cookie_dup(srv, req, name);
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    if (mac == NULL || !oauth_mac_verify(oc->secret, oc->secret_len, "login", state, mac)) {
        oauth_audit(http_request_id(req), "callback rejected", "reason",
                    "missing browser-binding cookie", NULL);
        oauth_reply_html_error(req, 400, "Sign-in started elsewhere",
                               "This sign-in did not start in this browser. Go back to the "
                               "application and start again.");
        free(mac);
        callback_free(cb);
        return;
    }
    free(mac);
    oauth_cookie_set(srv, req, name, "", 0);
    /* RFC 9207: an iss on the response must be our IdP's issuer (mix-up defence). */
    const char *iss = http_params_get(&cb->params, "iss");
    if (iss && srv->cfg->idp.issuer && strcmp(iss, srv->cfg->idp.issuer) != 0) {
        oauth_audit(http_request_id(req), "callback rejected", "reason", "iss mismatch", NULL);
        oauth_reply_html_error(req, 400, "Invalid sign-in response",
                               "The response came from an unexpected identity provider.");
        callback_free(cb);
        return;
    }
    char key[128];
    snprintf(key, sizeof(key), KEY_LOGIN "%s", hex);
    if (store_take(srv->store, key, on_login_taken, cb) < 0) {
        oauth_reply_store_down(req, "callback");
        callback_free(cb);
    }
}

/* Counted against oauth.callback_rate, per address and across instances (F19). */
static void on_callback(struct http_request *req, void *arg)
{
    struct oauth_server *srv = arg;
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    oauth_rate_limit(srv, req, "callback", oc->callback_rate_count, oc->callback_rate_window_ms,
                     true, callback_allowed, srv);
}

int oauth_callback_register(struct oauth_server *srv, struct http_server *http)
{
    struct http_route_options o = {.label = "/callback"};
    return http_route_add(http, "/callback", HTTP_GET, on_callback, srv, &o);
}
