/*
 * revoke: POST /revoke (RFC 7009). The client authenticates as at /token.
 * An access token is deleted and its revocation published, so every
 * instance drops it from its cache at once; a refresh token revokes its
 * whole grant. Unknown tokens, and tokens of another client (which are left
 * alone, and audited), get 200 as well: RFC 7009 §2.2 does not let a
 * revocation endpoint become a token-existence oracle.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "http/http.h"
#include "oauth/oauth_int.h"
#include "oauth/tokens.h"
#include "store/store.h"

struct revoke_req {
    struct oauth_server *srv; /* borrowed */
    struct http_request *req; /* borrowed until answered */
    struct http_params form;  /* owned */
    char *client_id;          /* owned */
    char hash[65];
    bool refresh;
};

static void revoke_req_free(struct revoke_req *r)
{
    http_params_clear(&r->form);
    free(r->client_id);
    free(r);
}

static void reply_ok(struct revoke_req *r)
{
    http_set_header(r->req, "Cache-Control", "no-store");
    http_reply_empty(r->req, 200);
    revoke_req_free(r);
}

static void on_record(const struct store_result *res, void *arg)
{
    struct revoke_req *r = arg;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(r->req, "revocation");
        revoke_req_free(r);
        return;
    }
    if (res->status == STORE_NOT_FOUND) {
        reply_ok(r);
        return;
    }
    json_error_t jerr;
    json_t *rec = json_loadb(res->value, res->value_len, 0, &jerr);
    const char *owner = json_string_value(json_object_get(rec, "client_id"));
    const char *grant_id = json_string_value(json_object_get(rec, "grant_id"));
    const char *rid = http_request_id(r->req);
    if (owner == NULL || strcmp(owner, r->client_id) != 0) {
        oauth_audit(rid, "revocation refused", "reason", "token belongs to another client",
                    "client_id", r->client_id, NULL);
    } else if (r->refresh && grant_id) {
        oauth_grant_revoke(r->srv, grant_id, "refresh token revoked by client", rid);
    } else {
        char key[128];
        snprintf(key, sizeof(key), KEY_TOKEN "%s", r->hash);
        store_del_detached(r->srv->store, key, "token revocation");
        store_publish_detached(r->srv->store, CHANNEL_REVOKED, r->hash, strlen(r->hash),
                               "token revocation: broadcast");
        oauth_audit(rid, "token revoked", "grant_id", grant_id, "client_id", r->client_id, NULL);
    }
    json_decref(rec);
    reply_ok(r);
}

static void on_client(struct http_request *req, struct oauth_client *client, void *arg)
{
    struct revoke_req *r = arg;
    (void)req;
    if (client == NULL) {
        revoke_req_free(r);
        return;
    }
    r->client_id = xstrdup(client->client_id);
    const char *token = http_params_get(&r->form, "token");
    bool access = oauth_token_has_shape(token, OAUTH_ACCESS_TOKEN);
    r->refresh = oauth_token_has_shape(token, OAUTH_REFRESH_TOKEN);
    if (!access && !r->refresh) {
        reply_ok(r); /* not one of ours: nothing to revoke */
        return;
    }
    oauth_token_hash(token, r->hash);
    char key[128];
    snprintf(key, sizeof(key), "%s%s", r->refresh ? KEY_REFRESH : KEY_TOKEN, r->hash);
    if (store_get(r->srv->store, key, on_record, r) < 0) {
        oauth_reply_store_down(r->req, "revocation");
        revoke_req_free(r);
    }
}

static void on_revoke(struct http_request *req, void *arg)
{
    struct revoke_req *r = xcalloc(1, sizeof(*r));
    r->srv = arg;
    r->req = req;
    if (!oauth_read_form(req, &r->form)) {
        revoke_req_free(r);
        return;
    }
    if (http_params_get(&r->form, "token") == NULL) {
        oauth_reply_error(req, 400, "invalid_request", "token is required");
        revoke_req_free(r);
        return;
    }
    oauth_authenticate_client(r->srv, req, &r->form, on_client, r);
}

int oauth_revoke_register(struct oauth_server *srv, struct http_server *http)
{
    struct http_route_options o = {
        .flags = HTTP_ROUTE_CORS, .max_body_bytes = 16384, .label = "/revoke"};
    return http_route_add(http, "/revoke", HTTP_POST, on_revoke, srv, &o);
}
