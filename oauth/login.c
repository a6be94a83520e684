/*
 * login: the start of an IdP sign-in, shared by client authorizations
 * (authorize.c) and the /account page (account.c). mcpgate's own PKCE,
 * state and nonce; the record (what the callback needs to go on) is stored
 * under login:<sha256(state)> for oauth.authorize_ttl and taken once by
 * /callback; the browser gets a cookie holding an HMAC of the state, so the
 * callback knows this browser started this login.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/crypto.h"
#include "common/rand.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "oauth/idp.h"
#include "oauth/oauth_int.h"
#include "oauth/pkce.h"
#include "oauth/tokens.h"
#include "store/store.h"

struct login_start {
    struct oauth_server *srv; /* borrowed */
    struct http_request *req; /* borrowed until answered */
    char state[RAND_HANDLE_LEN + 1];
    char *idp_url; /* owned */
};

static void login_start_free(struct login_start *ls)
{
    free(ls->idp_url);
    free(ls);
}

static void on_login_stored(const struct store_result *res, void *arg)
{
    struct login_start *ls = arg;
    if (res->status != STORE_OK) {
        oauth_reply_store_down(ls->req, "login start");
    } else {
        char name[64], hex[65];
        crypto_sha256_hex(ls->state, hex);
        snprintf(name, sizeof(name), "mcpgate_li_%.12s", hex);
        const struct gw_oauth_config *oc = &ls->srv->cfg->oauth;
        char *mac = oauth_mac_new(oc->secret, oc->secret_len, "login", ls->state);
        oauth_cookie_set(ls->srv, ls->req, name, mac, oc->authorize_ttl_ms / 1000);
        free(mac);
        oauth_reply_redirect(ls->req, ls->idp_url);
    }
    login_start_free(ls);
}

void oauth_idp_login_start(struct oauth_server *srv, struct http_request *req, json_t *rec,
                           const char *who)
{
    if (srv->idp == NULL || !idp_client_ready(srv->idp)) {
        const char *why = srv->idp ? idp_client_last_error(srv->idp) : NULL;
        oauth_audit(http_request_id(req), "idp failure", "client_id", who, "error",
                    why ? why : "identity provider not ready", NULL);
        oauth_reply_html_error(req, 503, "Sign-in is unavailable",
                               "The identity provider cannot be reached right now. Close this "
                               "window and try again in a few minutes.");
        json_decref(rec);
        return;
    }
    struct login_start *ls = xcalloc(1, sizeof(*ls));
    ls->srv = srv;
    ls->req = req;
    char nonce[RAND_HANDLE_LEN + 1], verifier[RAND_HANDLE_LEN + 1];
    char challenge[OAUTH_PKCE_CHALLENGE_LEN + 1];
    rand_handle(ls->state);
    rand_handle(nonce);
    oauth_pkce_new(verifier, challenge);
    char *callback = xasprintf("%s/callback", srv->cfg->server.public_url);
    ls->idp_url = idp_authorize_url(srv->idp, callback, ls->state, nonce, challenge);
    free(callback);

    json_object_set_new(rec, "nonce", json_string(nonce));
    json_object_set_new(rec, "verifier", json_string(verifier));
    char *text = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    crypto_wipe(verifier, sizeof(verifier));
    char key[128], hex[65];
    crypto_sha256_hex(ls->state, hex);
    snprintf(key, sizeof(key), KEY_LOGIN "%s", hex);
    int rc = ls->idp_url ? store_put(srv->store, key, text, strlen(text),
                                     srv->cfg->oauth.authorize_ttl_ms, on_login_stored, ls)
                         : -EAGAIN;
    crypto_wipe(text, strlen(text));
    free(text);
    if (rc < 0) {
        if (ls->idp_url == NULL)
            oauth_reply_html_error(req, 503, "Sign-in is unavailable",
                                   "The identity provider is not ready yet. Try again shortly.");
        else
            oauth_reply_store_down(req, "login start");
        login_start_free(ls);
    }
}
