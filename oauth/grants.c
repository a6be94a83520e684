/*
 * grants: the records behind an authorization (DESIGN §5).
 *
 *   grant:<id>            subject, client, scope, resource, sealed identity
 *   code:<sha256>         one-time code → grant (60 s), the grant key wrapped for the code
 *   token:<sha256>        access token → grant, scope, resource, expiry, sealed identity,
 *                         the grant key wrapped for this token
 *   refresh:<sha256>      refresh token → grant, the grant key wrapped for it
 *   granttokens:<id>      set of the grant's token and refresh keys, for revocation
 *   user:<sub>:grants, clientgrants:<client>   sets of grant ids (admin CLI, cascades)
 *
 * Only hashes of codes and tokens appear in keys; identity data appears only
 * sealed under the grant key, which is stored only wrapped per token.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/panic.h"
#include "common/rand.h"
#include "common/xalloc.h"
#include "common/log.h"
#include "oauth/oauth_int.h"
#include "oauth/tokens.h"
#include "store/store.h"

void oauth_grant_clear(struct oauth_grant *g)
{
    free(g->grant_id);
    free(g->subject);
    free(g->client_id);
    free(g->scope);
    free(g->access_scope);
    free(g->resource);
    free(g->props_sealed);
    crypto_wipe(g->key, sizeof(g->key));
    memset(g, 0, sizeof(*g));
}

static void put_json(struct oauth_server *srv, struct oauth_batch *b, const char *key, json_t *o,
                     uint64_t ttl_ms)
{
    char *text = json_dumps(o, JSON_COMPACT);
    if (store_put(srv->store, key, text, strlen(text), ttl_ms, oauth_batch_cb, oauth_batch_add(b)) <
        0) {
        struct store_result fail = {.status = STORE_UNAVAILABLE, .error = "cannot queue"};
        oauth_batch_cb(&fail, b);
    }
    free(text);
}

static void set_add(struct oauth_server *srv, struct oauth_batch *b, const char *key,
                    const char *member, uint64_t ttl_ms)
{
    if (store_set_add(srv->store, key, member, ttl_ms, oauth_batch_cb, oauth_batch_add(b)) < 0) {
        struct store_result fail = {.status = STORE_UNAVAILABLE, .error = "cannot queue"};
        oauth_batch_cb(&fail, b);
    }
}

/* ---- creating a grant and its code ------------------------------------- */

struct grant_creation {
    oauth_code_fn cb;
    void *arg;      /* borrowed */
    char *code;     /* owned (secret) */
    char *grant_id; /* owned */
};

static void on_grant_stored(bool ok, const char *error, void *arg)
{
    struct grant_creation *gc = arg;
    if (!ok)
        gw_log(GW_LOG_WARN, "oauth", NULL, "storing a grant failed", "error", error, NULL);
    gc->cb(ok ? gc->code : NULL, gc->grant_id, gc->arg);
    crypto_wipe(gc->code, strlen(gc->code));
    free(gc->code);
    free(gc->grant_id);
    free(gc);
}

void oauth_grant_create(struct oauth_server *srv, const struct oauth_new_grant *ng,
                        oauth_code_fn cb, void *arg)
{
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    struct grant_creation *gc = xcalloc(1, sizeof(*gc));
    gc->cb = cb;
    gc->arg = arg;
    char id[44];
    rand_handle(id);
    gc->grant_id = xstrdup(id);
    gc->code = oauth_token_mint(OAUTH_AUTH_CODE);

    unsigned char key[CRYPTO_KEY_LEN];
    oauth_grant_key_new(key);
    char *sealed = NULL, *wrapped = NULL, *sealed_idp = NULL;
    if (oauth_props_seal(key, id, ng->props_json, &sealed) < 0 ||
        oauth_grant_key_wrap(oc->secret, oc->secret_len, gc->code, key, &wrapped) < 0 ||
        (ng->idp_tokens_json && oauth_props_seal(key, id, ng->idp_tokens_json, &sealed_idp) < 0))
        GW_PANIC("AES-GCM and HKDF do not fail on valid inputs");
    crypto_wipe(key, sizeof(key));

    json_int_t now = (json_int_t)time(NULL);
    json_t *grant =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "id", id, "sub", ng->subject, "client_id",
                  ng->client_id, "scope", ng->scope, "props", sealed, "created", now);
    json_t *code = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "grant_id", id, "sub",
                             ng->subject, "client_id", ng->client_id, "redirect_uri",
                             ng->redirect_uri, "code_challenge", ng->code_challenge, "scope",
                             ng->scope, "wrapped", wrapped, "props", sealed, "granted", now);
    json_object_set_new(code, "redirect_explicit", json_boolean(ng->redirect_explicit));
    if (ng->resource) {
        json_object_set_new(grant, "resource", json_string(ng->resource));
        json_object_set_new(code, "resource", json_string(ng->resource));
    }
    char key_grant[128], key_code[128], hash[65];
    snprintf(key_grant, sizeof(key_grant), KEY_GRANT "%s", id);
    oauth_token_hash(gc->code, hash);
    snprintf(key_code, sizeof(key_code), KEY_CODE "%s", hash);
    char *key_user = xasprintf(KEY_USER_GRANTS, ng->subject); /* a subject may be 1 KiB */
    char *key_client = xasprintf(KEY_CLIENT_GRANTS, ng->client_id);

    struct oauth_batch *b = oauth_batch_new(on_grant_stored, gc);
    put_json(srv, b, key_grant, grant, oc->refresh_token_ttl_ms);
    put_json(srv, b, key_code, code, oc->code_ttl_ms);
    set_add(srv, b, key_user, id, oc->refresh_token_ttl_ms);
    set_add(srv, b, key_client, id, oc->refresh_token_ttl_ms);
    set_add(srv, b, KEY_ALL_GRANTS, id, 0);
    free(key_user);
    free(key_client);
    if (sealed_idp) {
        /* The IdP's tokens, sealed under the grant key: only a token of this
         * grant can open them, at the bearer check of a route that forwards them. */
        char key_idp[128];
        snprintf(key_idp, sizeof(key_idp), KEY_IDP_TOKENS "%s", id);
        if (store_put(srv->store, key_idp, sealed_idp, strlen(sealed_idp), oc->refresh_token_ttl_ms,
                      oauth_batch_cb, oauth_batch_add(b)) < 0) {
            struct store_result fail = {.status = STORE_UNAVAILABLE, .error = "cannot queue"};
            oauth_batch_cb(&fail, b);
        }
        free(sealed_idp);
    }
    oauth_batch_seal(b);
    json_decref(grant);
    json_decref(code);
    free(sealed);
    free(wrapped);
}

/* ---- issuing tokens ------------------------------------------------------- */

struct issuance {
    struct oauth_server *srv; /* borrowed */
    oauth_tokens_fn cb;
    void *arg;        /* borrowed */
    json_t *response; /* owned */
    char *grant_id;   /* owned */
    char *keys[2];    /* owned: the token and refresh keys written */
    size_t n_keys;
};

static void issuance_finish(struct issuance *is, json_t *response, int status)
{
    is->cb(response, status, is->arg);
    for (size_t i = 0; i < is->n_keys; i++)
        free(is->keys[i]);
    free(is->grant_id);
    free(is);
}

/*
 * Issuance and revocation race: a revocation writes its tombstone before it
 * reads the grant's token set, and issuance looks for the tombstone after it
 * wrote its tokens. Redis orders commands, so either the revocation saw the
 * new tokens, or the issuance sees the tombstone and deletes them.
 */
static void on_tombstone(const struct store_result *res, void *arg)
{
    struct issuance *is = arg;
    if (res->status == STORE_OK) {
        for (size_t i = 0; i < is->n_keys; i++)
            store_del_detached(is->srv->store, is->keys[i], "issue after revocation: token");
        json_decref(is->response);
        issuance_finish(is, NULL, -EACCES);
    } else if (res->status == STORE_NOT_FOUND) {
        issuance_finish(is, is->response, 0);
    } else {
        json_decref(is->response);
        issuance_finish(is, NULL, -EIO);
    }
}

static void on_tokens_stored(bool ok, const char *error, void *arg)
{
    struct issuance *is = arg;
    if (!ok) {
        gw_log(GW_LOG_WARN, "oauth", NULL, "storing tokens failed", "error", error, NULL);
        json_decref(is->response);
        issuance_finish(is, NULL, -EIO);
        return;
    }
    char key[128];
    snprintf(key, sizeof(key), KEY_REVOKED_GRANT "%s", is->grant_id);
    if (store_get(is->srv->store, key, on_tombstone, is) < 0) {
        json_decref(is->response);
        issuance_finish(is, NULL, -EIO);
    }
}

static json_t *token_record(const struct oauth_grant *g, const char *scope, const char *wrapped,
                            uint64_t exp)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "grant_id", g->grant_id, "sub",
                          g->subject, "client_id", g->client_id, "scope", scope, "wrapped", wrapped,
                          "props", g->props_sealed, "exp", (json_int_t)exp);
    if (g->granted_at)
        json_object_set_new(o, "granted", json_integer((json_int_t)g->granted_at));
    if (g->resource)
        json_object_set_new(o, "resource", json_string(g->resource));
    return o;
}

/* Stores one token of G (access or refresh) and adds it to the grant's set. */
static void store_token(struct oauth_server *srv, struct oauth_batch *b, struct issuance *is,
                        const struct oauth_grant *g, const char *token, const char *prefix,
                        uint64_t ttl_ms)
{
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    char *wrapped = NULL;
    if (oauth_grant_key_wrap(oc->secret, oc->secret_len, token, g->key, &wrapped) < 0)
        GW_PANIC("HKDF and AES-GCM do not fail on valid inputs");
    char hash[65], key[128], set[128];
    oauth_token_hash(token, hash);
    snprintf(key, sizeof(key), "%s%s", prefix, hash);
    /* RFC 6749 §6: a narrower scope is for the access token; the refresh token keeps the grant's.
     */
    const char *scope =
        strcmp(prefix, KEY_TOKEN) == 0 && g->access_scope ? g->access_scope : g->scope;
    json_t *rec = token_record(g, scope, wrapped, (uint64_t)time(NULL) + ttl_ms / 1000);
    put_json(srv, b, key, rec, ttl_ms);
    is->keys[is->n_keys++] = xstrdup(key);
    json_decref(rec);
    free(wrapped);
    snprintf(set, sizeof(set), KEY_GRANT_TOKENS, g->grant_id);
    set_add(srv, b, set, key, oc->refresh_token_ttl_ms);
}

/*
 * Each issuance slides what the grant's refresh token keeps alive: the grant
 * record, its IdP tokens and the indexes the admin CLI and cascades read
 * (F7a: a grant refreshed for longer than refresh_token_ttl fell out of
 * user:<sub>:grants, and `grants revoke --user` missed it). Best effort: a
 * failed extension is retried by the next refresh, long before the TTL ends.
 */
static void extend_grant(struct oauth_server *srv, const struct oauth_grant *g)
{
    uint64_t ttl = srv->cfg->oauth.refresh_token_ttl_ms;
    char *key = xasprintf(KEY_USER_GRANTS, g->subject);
    store_set_add_detached(srv->store, key, g->grant_id, ttl, "grant index: user");
    free(key);
    key = xasprintf(KEY_CLIENT_GRANTS, g->client_id);
    store_set_add_detached(srv->store, key, g->grant_id, ttl, "grant index: client");
    free(key);
    key = xasprintf(KEY_GRANT "%s", g->grant_id);
    store_expire_detached(srv->store, key, ttl, "grant record");
    free(key);
    key = xasprintf(KEY_IDP_TOKENS "%s", g->grant_id);
    store_expire_detached(srv->store, key, ttl, "grant IdP tokens");
    free(key);
}

void oauth_issue_tokens(struct oauth_server *srv, const struct oauth_grant *g, bool with_refresh,
                        oauth_tokens_fn cb, void *arg)
{
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    struct issuance *is = xcalloc(1, sizeof(*is));
    is->srv = srv;
    is->cb = cb;
    is->arg = arg;
    is->grant_id = xstrdup(g->grant_id);
    char *access = oauth_token_mint(OAUTH_ACCESS_TOKEN);
    is->response = json_pack("{s:s, s:s, s:I, s:s}", "access_token", access, "token_type", "Bearer",
                             "expires_in", (json_int_t)(oc->access_token_ttl_ms / 1000), "scope",
                             g->access_scope ? g->access_scope : g->scope);
    struct oauth_batch *b = oauth_batch_new(on_tokens_stored, is);
    store_token(srv, b, is, g, access, KEY_TOKEN, oc->access_token_ttl_ms);
    crypto_wipe(access, strlen(access));
    free(access);
    if (with_refresh) {
        char *refresh = oauth_token_mint(OAUTH_REFRESH_TOKEN);
        json_object_set_new(is->response, "refresh_token", json_string(refresh));
        store_token(srv, b, is, g, refresh, KEY_REFRESH, oc->refresh_token_ttl_ms);
        crypto_wipe(refresh, strlen(refresh));
        free(refresh);
    }
    oauth_batch_seal(b);
    extend_grant(srv, g);
}

/* ---- revocation ------------------------------------------------------------- */

struct revocation {
    struct oauth_server *srv; /* borrowed */
    char *grant_id;           /* owned */
    char *why;                /* owned */
    char *request_id;         /* owned, may be NULL */
    oauth_revoked_fn done;
    void *done_arg; /* borrowed */
    bool found;
};

static void revocation_free(struct revocation *rv)
{
    if (rv->done)
        rv->done(rv->found, rv->done_arg);
    free(rv->grant_id);
    free(rv->why);
    free(rv->request_id);
    free(rv);
}

static void on_grant_tokens(const struct store_result *res, void *arg)
{
    struct revocation *rv = arg;
    struct store *st = rv->srv->store;
    for (size_t i = 0; res->status == STORE_OK && i < res->n_members; i++) {
        const char *key = res->members[i];
        store_del_detached(st, key, "grant revocation: token");
        /* Every instance drops the token from its bearer cache at once. */
        const char *colon = strchr(key, ':');
        if (colon && strncmp(key, KEY_TOKEN, strlen(KEY_TOKEN)) == 0)
            store_publish_detached(st, CHANNEL_REVOKED, colon + 1, strlen(colon + 1),
                                   "grant revocation: broadcast");
    }
    char set[128];
    snprintf(set, sizeof(set), KEY_GRANT_TOKENS, rv->grant_id);
    store_del_detached(st, set, "grant revocation: token index");
    revocation_free(rv);
}

static void on_grant_for_revoke(const struct store_result *res, void *arg)
{
    struct revocation *rv = arg;
    struct store *st = rv->srv->store;
    store_set_remove_detached(st, KEY_ALL_GRANTS, rv->grant_id, "grant revocation: grant list");
    if (res->status == STORE_OK) {
        rv->found = true;
        json_error_t jerr;
        json_t *g = json_loadb(res->value, res->value_len, 0, &jerr);
        const char *sub = json_string_value(json_object_get(g, "sub"));
        const char *client = json_string_value(json_object_get(g, "client_id"));
        if (sub) {
            char *key = xasprintf(KEY_USER_GRANTS, sub);
            store_set_remove_detached(st, key, rv->grant_id, "grant revocation: user index");
            free(key);
        }
        if (client) {
            char *key = xasprintf(KEY_CLIENT_GRANTS, client);
            store_set_remove_detached(st, key, rv->grant_id, "grant revocation: client index");
            free(key);
        }
        oauth_audit(rv->request_id, "grant revoked", "grant_id", rv->grant_id, "subject", sub,
                    "client_id", client, "reason", rv->why, NULL);
        json_decref(g);
    }
    char key[128];
    snprintf(key, sizeof(key), KEY_GRANT "%s", rv->grant_id);
    store_del_detached(st, key, "grant revocation: grant record");
    snprintf(key, sizeof(key), KEY_IDP_TOKENS "%s", rv->grant_id);
    store_del_detached(st, key, "grant revocation: IdP tokens");
    snprintf(key, sizeof(key), KEY_GRANT_SEEN "%s", rv->grant_id);
    store_del_detached(st, key, "grant revocation: last use");
    snprintf(key, sizeof(key), KEY_GRANT_TOKENS, rv->grant_id);
    if (store_set_members(st, key, on_grant_tokens, rv) < 0)
        revocation_free(rv);
}

void oauth_grant_revoke(struct oauth_server *srv, const char *grant_id, const char *why,
                        const char *request_id)
{
    oauth_grant_revoke_then(srv, grant_id, why, request_id, NULL, NULL);
}

void oauth_grant_revoke_then(struct oauth_server *srv, const char *grant_id, const char *why,
                             const char *request_id, oauth_revoked_fn done, void *arg)
{
    struct revocation *rv = xcalloc(1, sizeof(*rv));
    rv->done = done;
    rv->done_arg = arg;
    rv->srv = srv;
    rv->grant_id = xstrdup(grant_id);
    rv->why = xstrdup(why);
    rv->request_id = request_id ? xstrdup(request_id) : NULL;
    char key[128];
    /* The tombstone first: tokens issued from now on delete themselves. */
    snprintf(key, sizeof(key), KEY_REVOKED_GRANT "%s", grant_id);
    store_put_detached(srv->store, key, "1", 1, srv->cfg->oauth.refresh_token_ttl_ms,
                       "grant revocation: tombstone");
    /* F7c: every instance ends what is open on this grant (sessions, streams, children). */
    store_publish_detached(srv->store, MG_CHANNEL_GRANT_ENDED, grant_id, strlen(grant_id),
                           "grant revocation: sessions");
    snprintf(key, sizeof(key), KEY_GRANT "%s", grant_id);
    if (store_get(srv->store, key, on_grant_for_revoke, rv) < 0)
        revocation_free(rv);
}
