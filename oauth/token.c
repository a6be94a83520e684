/*
 * token: POST /token (RFC 6749 §3.2, OAuth 2.1 §3.2) and the client
 * authentication it shares with /revoke.
 *
 * authorization_code: the code is taken once; presenting it again revokes
 * every token of its grant (OAuth 2.1 §4.1.3). The client, redirect_uri,
 * PKCE verifier and resource must match what the authorization stored.
 *
 * refresh_token: a new refresh token every time; the used one dies at once.
 * A used one presented again revokes the whole grant (RFC 9700 §4.14.2),
 * unless it comes within oauth.refresh_grace of its rotation (a client
 * retrying a response it lost): then a fresh pair is issued from it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/b64url.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"
#include "oauth/idp_tokens.h"
#include "oauth/oauth_int.h"
#include "oauth/pkce.h"
#include "oauth/tokens.h"
#include "store/store.h"

#define USED_CODE_TTL_MS (10 * 60 * 1000)

/* ---- forms and client authentication -------------------------------------- */

bool oauth_read_form(struct http_request *req, struct http_params *form)
{
    const char *ctype = http_request_header(req, "Content-Type");
    if (ctype == NULL || strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
        oauth_reply_error(req, 400, "invalid_request",
                          "the body must be application/x-www-form-urlencoded");
        return false;
    }
    size_t len;
    const char *body = http_request_body(req, &len);
    if (http_params_parse(body, len, form) < 0) {
        oauth_reply_error(req, 400, "invalid_request", "the form body is malformed");
        return false;
    }
    /* RFC 6749 §3.2: parameters must not be included more than once. */
    for (size_t i = 0; i < form->len; i++) {
        if (http_params_count(form, form->items[i].name) > 1) {
            char msg[128];
            snprintf(msg, sizeof(msg), "parameter %.64s is repeated", form->items[i].name);
            oauth_reply_error(req, 400, "invalid_request", msg);
            return false;
        }
    }
    return true;
}

struct client_auth {
    struct http_request *req;
    oauth_client_auth_fn cb;
    void *arg;    /* borrowed */
    char *secret; /* owned, presented secret (may be NULL) */
    bool used_basic;
    bool used_post;
};

static void client_auth_free(struct client_auth *ca)
{
    if (ca->secret)
        crypto_wipe(ca->secret, strlen(ca->secret));
    free(ca->secret);
    free(ca);
}

static void reply_invalid_client(struct client_auth *ca, const char *why)
{
    oauth_audit(http_request_id(ca->req), "client authentication failed", "reason", why, "client",
                http_request_client_ip(ca->req), NULL);
    if (ca->used_basic)
        http_set_header(ca->req, "WWW-Authenticate", "Basic realm=\"mcpgate\"");
    oauth_reply_error(ca->req, 401, "invalid_client", why);
}

/* Answers the failure, tells the caller (client NULL) and frees CA. */
static void auth_failed(struct client_auth *ca, const char *why)
{
    if (why)
        reply_invalid_client(ca, why);
    ca->cb(ca->req, NULL, ca->arg);
    client_auth_free(ca);
}

static void on_client_for_auth(struct oauth_client *client, enum oauth_lookup how,
                               const char *refused, void *arg)
{
    struct client_auth *ca = arg;
    const char *why = NULL;
    if (how == OAUTH_STORE_DOWN) {
        oauth_reply_store_down(ca->req, "client authentication");
        auth_failed(ca, NULL);
        return;
    }
    if (how == OAUTH_INVALID_CLIENT)
        why = refused ? refused : "the client metadata document was refused";
    else if (client == NULL)
        why = "unknown client";
    else if (client->auth == GW_CLIENT_AUTH_NONE)
        why = ca->secret && ca->secret[0] ? "this client is public and has no secret" : NULL;
    else if ((client->auth == GW_CLIENT_AUTH_CLIENT_SECRET_BASIC && !ca->used_basic) ||
             (client->auth == GW_CLIENT_AUTH_CLIENT_SECRET_POST && !ca->used_post))
        why = "use the client authentication method you registered";
    else if (!oauth_client_secret_ok(client, ca->secret))
        why = "client authentication failed";
    if (why) {
        auth_failed(ca, why);
        return;
    }
    ca->cb(ca->req, client, ca->arg);
    client_auth_free(ca);
}

/* RFC 6749 §2.3.1: id and secret are form-encoded, then joined by ':'. */
static bool parse_basic(const char *header, char **id, char **secret)
{
    if (strncasecmp(header, "Basic ", 6) != 0)
        return false;
    size_t n = 0;
    unsigned char *raw = b64std_decode_new(header + 6, strlen(header + 6), &n);
    char *colon = raw ? memchr(raw, ':', n) : NULL;
    bool ok = false;
    if (colon && strlen((char *)raw) == n) {
        struct http_params p = {0};
        char *pair = xasprintf("i=%.*s&s=%s", (int)(colon - (char *)raw), raw, colon + 1);
        if (http_params_parse(pair, strlen(pair), &p) == 0 && http_params_get(&p, "i")) {
            *id = xstrdup(http_params_get(&p, "i"));
            *secret = xstrdup(http_params_get(&p, "s") ? http_params_get(&p, "s") : "");
            ok = true;
        }
        crypto_wipe(pair, strlen(pair));
        free(pair);
        http_params_clear(&p);
    }
    if (raw) {
        crypto_wipe(raw, n);
        free(raw);
    }
    return ok;
}

void oauth_authenticate_client(struct oauth_server *srv, struct http_request *req,
                               const struct http_params *form, oauth_client_auth_fn cb, void *arg)
{
    struct client_auth *ca = xcalloc(1, sizeof(*ca));
    ca->req = req;
    ca->cb = cb;
    ca->arg = arg;
    const char *authz = http_request_header(req, "Authorization");
    char *id = NULL;
    const char *form_id = http_params_get(form, "client_id");
    const char *form_secret = http_params_get(form, "client_secret");
    if (authz) {
        ca->used_basic = true;
        if (!parse_basic(authz, &id, &ca->secret)) {
            auth_failed(ca, "malformed Basic credentials");
            return;
        }
        /* RFC 6749 §2.3: one authentication method per request. */
        if (form_secret || (form_id && strcmp(form_id, id) != 0)) {
            free(id);
            oauth_reply_error(req, 400, "invalid_request", "use one client authentication method");
            auth_failed(ca, NULL);
            return;
        }
    } else if (form_id) {
        id = xstrdup(form_id);
        if (form_secret) {
            ca->used_post = true;
            ca->secret = xstrdup(form_secret);
        }
    } else {
        auth_failed(ca, "client authentication is required");
        return;
    }
    oauth_client_lookup(srv, id, http_request_id(req), on_client_for_auth, ca);
    free(id);
}

/* ---- the token request ------------------------------------------------------ */

struct token_req {
    struct oauth_server *srv;    /* borrowed */
    struct http_request *req;    /* borrowed until answered */
    struct http_params form;     /* owned */
    struct oauth_client *client; /* owned copy of the authenticated client */
    char hash[65];               /* of the code or refresh token */
    struct oauth_grant grant;
};

static void token_req_free(struct token_req *t)
{
    http_params_clear(&t->form);
    oauth_client_free(t->client);
    oauth_grant_clear(&t->grant);
    free(t);
}

static struct oauth_client *client_copy(const struct oauth_client *c)
{
    struct oauth_client *d = xcalloc(1, sizeof(*d));
    d->client_id = xstrdup(c->client_id);
    d->auth = c->auth;
    mg_string_list_copy(&d->grant_types, &c->grant_types);
    return d;
}

static void on_tokens(json_t *response, int status, void *arg)
{
    struct token_req *t = arg;
    if (status == -EACCES) {
        oauth_reply_error(t->req, 400, "invalid_grant", "the grant has been revoked");
    } else if (response == NULL) {
        oauth_reply_store_down(t->req, "token issue");
    } else {
        oauth_audit(http_request_id(t->req), "token issued", "grant_id", t->grant.grant_id,
                    "client_id", t->client->client_id, "grant_type",
                    http_params_get(&t->form, "grant_type"), NULL);
        oauth_reply_json(t->req, 200, response);
    }
    token_req_free(t);
}

/* Fills t->grant from a code, refresh or used-refresh record and unwraps its key. */
static bool load_grant(struct token_req *t, json_t *rec, const char *secret_token)
{
    const struct gw_oauth_config *oc = &t->srv->cfg->oauth;
    const char *fields[] = {"grant_id", "sub", "client_id", "scope", "props", "wrapped"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (!json_is_string(json_object_get(rec, fields[i])))
            return false;
    struct oauth_grant *g = &t->grant;
    g->grant_id = xstrdup(json_string_value(json_object_get(rec, "grant_id")));
    g->subject = xstrdup(json_string_value(json_object_get(rec, "sub")));
    g->client_id = xstrdup(json_string_value(json_object_get(rec, "client_id")));
    g->scope = xstrdup(json_string_value(json_object_get(rec, "scope")));
    g->props_sealed = xstrdup(json_string_value(json_object_get(rec, "props")));
    const char *resource = json_string_value(json_object_get(rec, "resource"));
    g->resource = resource ? xstrdup(resource) : NULL;
    g->granted_at = (uint64_t)json_integer_value(json_object_get(rec, "granted"));
    return oauth_grant_key_unwrap(oc->secret, oc->secret_len, secret_token,
                                  json_string_value(json_object_get(rec, "wrapped")), g->key) == 0;
}

/* RFC 8707: a resource in the token request must agree with the grant's. */
static const char *check_resource(struct token_req *t)
{
    const char *resource = http_params_get(&t->form, "resource");
    if (resource == NULL)
        return NULL;
    bool root;
    if (oauth_resource_route(t->srv, resource, &root) == NULL && !root)
        return "resource is not a protected resource of this server";
    if (t->grant.resource && strcmp(t->grant.resource, resource) != 0)
        return "resource differs from the one authorized";
    if (t->grant.resource == NULL && !root)
        t->grant.resource = xstrdup(resource);
    return NULL;
}

/* ---- authorization_code ------------------------------------------------------ */

static void on_used_code(const struct store_result *res, void *arg)
{
    struct token_req *t = arg;
    if (res->status == STORE_OK) {
        /* The mark is the code record the take left (F20), or the grant id the
         * winner wrote over it. */
        json_error_t jerr;
        json_t *rec =
            res->value[0] == '{' ? json_loadb(res->value, res->value_len, 0, &jerr) : NULL;
        const char *id = json_string_value(json_object_get(rec, "grant_id"));
        char *grant_id = id ? xstrdup(id) : xstrndup(res->value, res->value_len);
        json_decref(rec);
        oauth_audit(http_request_id(t->req), "code replay", "grant_id", grant_id, "client_id",
                    t->client->client_id, NULL);
        oauth_grant_revoke(t->srv, grant_id, "authorization code replayed",
                           http_request_id(t->req));
        free(grant_id);
    }
    oauth_reply_error(t->req, 400, "invalid_grant",
                      "the authorization code is invalid, expired or already used");
    token_req_free(t);
}

static const char *check_code(struct token_req *t, json_t *rec)
{
    const char *code = http_params_get(&t->form, "code");
    const char *verifier = http_params_get(&t->form, "code_verifier");
    const char *redirect = http_params_get(&t->form, "redirect_uri");
    const char *challenge = json_string_value(json_object_get(rec, "code_challenge"));
    const char *stored_redirect = json_string_value(json_object_get(rec, "redirect_uri"));
    if (!load_grant(t, rec, code))
        return "the authorization code is invalid";
    if (strcmp(t->grant.client_id, t->client->client_id) != 0)
        return "the authorization code was issued to another client";
    /* RFC 6749 §4.1.3: required when the authorization request had it; equal when sent. */
    bool explicit_uri = json_is_true(json_object_get(rec, "redirect_explicit"));
    if ((redirect == NULL && explicit_uri) ||
        (redirect && (stored_redirect == NULL || strcmp(redirect, stored_redirect) != 0)))
        return "redirect_uri does not match the authorization request";
    /* A verifier for a request that had no challenge is refused as well. */
    if (verifier == NULL || challenge == NULL || !oauth_pkce_verify(verifier, challenge))
        return "code_verifier does not match the code_challenge";
    return check_resource(t);
}

static void on_code_taken(const struct store_result *res, void *arg)
{
    struct token_req *t = arg;
    struct oauth_server *srv = t->srv;
    char key[128];
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(t->req, "code");
        token_req_free(t);
        return;
    }
    if (res->status == STORE_NOT_FOUND) {
        snprintf(key, sizeof(key), KEY_USED_CODE "%s", t->hash);
        if (store_get(srv->store, key, on_used_code, t) < 0) {
            oauth_reply_store_down(t->req, "code");
            token_req_free(t);
        }
        return;
    }
    json_error_t jerr;
    json_t *rec = json_loadb(res->value, res->value_len, 0, &jerr);
    const char *grant_id = json_string_value(json_object_get(rec, "grant_id"));
    if (grant_id) {
        /* The take left the whole record as the replay mark; keep only the grant id. */
        snprintf(key, sizeof(key), KEY_USED_CODE "%s", t->hash);
        store_put_detached(srv->store, key, grant_id, strlen(grant_id), USED_CODE_TTL_MS,
                           "code replay marker");
    }
    const char *why = rec ? check_code(t, rec) : "the authorization code is invalid";
    json_decref(rec);
    if (why) {
        oauth_reply_error(t->req, 400, "invalid_grant", why);
        token_req_free(t);
        return;
    }
    oauth_issue_tokens(srv, &t->grant, oauth_client_allows_grant(t->client, "refresh_token"),
                       on_tokens, t);
}

static void grant_authorization_code(struct token_req *t)
{
    const char *code = http_params_get(&t->form, "code");
    if (code == NULL || http_params_get(&t->form, "code_verifier") == NULL) {
        oauth_reply_error(t->req, 400, "invalid_request", "code and code_verifier are required");
        token_req_free(t);
        return;
    }
    if (!oauth_token_has_shape(code, OAUTH_AUTH_CODE)) {
        oauth_reply_error(t->req, 400, "invalid_grant", "the authorization code is invalid");
        token_req_free(t);
        return;
    }
    oauth_token_hash(code, t->hash);
    char key[128], mark[128];
    snprintf(key, sizeof(key), KEY_CODE "%s", t->hash);
    snprintf(mark, sizeof(mark), KEY_USED_CODE "%s", t->hash);
    if (store_take_mark(t->srv->store, key, mark, USED_CODE_TTL_MS, on_code_taken, t) < 0) {
        oauth_reply_store_down(t->req, "code");
        token_req_free(t);
    }
}

/* ---- refresh_token ------------------------------------------------------------ */

/* Scope may only narrow (RFC 6749 §6). */
static const char *narrow_scope(struct token_req *t)
{
    const char *want = http_params_get(&t->form, "scope");
    if (want == NULL)
        return NULL;
    struct mg_string_list granted = {0}, asked = {0};
    mg_string_list_split(&granted, t->grant.scope);
    mg_string_list_split(&asked, want);
    const char *why = asked.len == 0 ? "scope is empty" : NULL;
    for (size_t i = 0; why == NULL && i < asked.len; i++)
        if (!mg_string_list_contains(&granted, asked.items[i]))
            why = "scope exceeds what was granted";
    if (why == NULL)
        t->grant.access_scope = mg_string_list_join(&asked, " ");
    mg_string_list_clear(&granted);
    mg_string_list_clear(&asked);
    return why;
}

/* Every check of a refresh request; NULL when it may be served. Fills t->grant. */
static const char *check_refresh(struct token_req *t, json_t *rec, const char **error)
{
    const char *refresh = http_params_get(&t->form, "refresh_token");
    const char *why = NULL;
    *error = "invalid_grant";
    if (!load_grant(t, rec, refresh))
        why = "the refresh token is invalid";
    else if (strcmp(t->grant.client_id, t->client->client_id) != 0)
        why = "the refresh token was issued to another client";
    else if ((why = narrow_scope(t)) != NULL)
        *error = "invalid_scope";
    else
        why = check_resource(t);
    return why;
}

/* Serves a checked refresh: remembers the rotation, then issues a new pair. */
static void issue_refreshed(struct token_req *t, json_t *rec, bool from_grace)
{
    if (!from_grace) {
        /* Remember the rotation, with the key wrapped for the old token, so a
         * replay is detected (and, within the grace window, served). */
        json_object_set_new(rec, "rotated_at", json_integer((json_int_t)time(NULL)));
        char *text = json_dumps(rec, JSON_COMPACT);
        char key[128];
        snprintf(key, sizeof(key), KEY_USED_REFRESH "%s", t->hash);
        store_put_detached(t->srv->store, key, text, strlen(text),
                           t->srv->cfg->oauth.refresh_token_ttl_ms, "refresh reuse marker");
        free(text);
    }
    oauth_issue_tokens(t->srv, &t->grant, true, on_tokens, t);
}

/*
 * oauth.max_grant_lifetime: past it, the grant ends and the user signs in
 * again, however often the client refreshed. True when T was answered.
 * Records from before the field have no login time: their clock starts now.
 */
static bool grant_outlived(struct token_req *t)
{
    uint64_t max_s = t->srv->cfg->oauth.max_grant_lifetime_ms / 1000;
    uint64_t now = (uint64_t)time(NULL);
    if (t->grant.granted_at == 0)
        t->grant.granted_at = now;
    if (max_s == 0 || now - t->grant.granted_at <= max_s)
        return false;
    oauth_grant_revoke(t->srv, t->grant.grant_id, "oauth.max_grant_lifetime reached",
                       http_request_id(t->req));
    oauth_reply_error(t->req, 400, "invalid_grant",
                      "this sign-in reached its maximum lifetime; sign in again");
    token_req_free(t);
    return true;
}

static void on_used_refresh(const struct store_result *res, void *arg)
{
    struct token_req *t = arg;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(t->req, "refresh");
        token_req_free(t);
        return;
    }
    json_error_t jerr;
    json_t *rec = res->status == STORE_OK ? json_loadb(res->value, res->value_len, 0, &jerr) : NULL;
    if (rec == NULL) {
        oauth_reply_error(t->req, 400, "invalid_grant", "the refresh token is invalid or expired");
        token_req_free(t);
        return;
    }
    json_int_t rotated = json_integer_value(json_object_get(rec, "rotated_at"));
    uint64_t grace_s = t->srv->cfg->oauth.refresh_grace_ms / 1000;
    const char *grant_id = json_string_value(json_object_get(rec, "grant_id"));
    if (grace_s > 0 && (uint64_t)(time(NULL) - rotated) <= grace_s) {
        const char *error;
        const char *why = check_refresh(t, rec, &error);
        if (why) {
            oauth_reply_error(t->req, 400, error, why);
            token_req_free(t);
        } else if (!grant_outlived(t)) {
            issue_refreshed(t, rec, true);
        }
        json_decref(rec);
        return;
    }
    oauth_audit(http_request_id(t->req), "refresh token reuse", "grant_id", grant_id, "client_id",
                t->client->client_id, NULL);
    if (grant_id)
        oauth_grant_revoke(t->srv, grant_id, "refresh token reused", http_request_id(t->req));
    oauth_reply_error(t->req, 400, "invalid_grant",
                      "the refresh token was already used; the grant is revoked");
    json_decref(rec);
    token_req_free(t);
}

static void to_used_refresh(struct token_req *t)
{
    char key[128];
    snprintf(key, sizeof(key), KEY_USED_REFRESH "%s", t->hash);
    if (store_get(t->srv->store, key, on_used_refresh, t) < 0) {
        oauth_reply_store_down(t->req, "refresh");
        token_req_free(t);
    }
}

struct refresh_take {
    struct token_req *t; /* owned until handed on */
    json_t *rec;         /* owned: the record read and checked */
};

static void on_refresh_taken(const struct store_result *res, void *arg)
{
    struct refresh_take *rt = arg;
    struct token_req *t = rt->t;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(t->req, "refresh");
        token_req_free(t);
    } else if (res->status == STORE_NOT_FOUND) {
        /* Another request took it between our read and our take: that one won,
         * this one is a reuse. */
        to_used_refresh(t);
    } else {
        issue_refreshed(t, rt->rec, false);
    }
    json_decref(rt->rec);
    free(rt);
}

/* Takes the refresh token (REC owned) and, when it was still there, serves the request. */
static void take_refresh(struct token_req *t, json_t *rec)
{
    struct refresh_take *rt = xcalloc(1, sizeof(*rt));
    rt->t = t;
    rt->rec = rec;
    char key[128];
    snprintf(key, sizeof(key), KEY_REFRESH "%s", t->hash);
    if (store_take(t->srv->store, key, on_refresh_taken, rt) < 0) {
        oauth_reply_store_down(t->req, "refresh");
        json_decref(rec);
        free(rt);
        token_req_free(t);
    }
}

struct idp_recheck {
    struct token_req *t; /* owned until handed on */
    json_t *rec;         /* owned: the refresh record read and checked */
};

/*
 * idp.recheck_on_refresh: the IdP renewed the user's sign-in (or refused
 * it) before mcpgate's refresh token is spent, so a refusal or an IdP
 * outage leaves the client its refresh token. Fresh claims replace the
 * sealed identity of the new tokens: changed roles and groups apply now.
 */
static void on_idp_rechecked(const struct oauth_idp_result *r, void *arg)
{
    struct idp_recheck *rc = arg;
    struct token_req *t = rc->t;
    json_t *rec = rc->rec;
    free(rc);
    if (r->status == OAUTH_IDP_UNAVAILABLE) {
        http_set_header(t->req, "Retry-After", "5");
        oauth_reply_error(t->req, 503, "temporarily_unavailable",
                          "the identity provider could not confirm the sign-in; try again");
    } else if (r->status != OAUTH_IDP_OK) {
        if (r->status == OAUTH_IDP_NONE) /* ENDED was revoked by idp_tokens */
            oauth_grant_revoke(t->srv, t->grant.grant_id, r->why, http_request_id(t->req));
        oauth_reply_error(t->req, 400, "invalid_grant",
                          "the identity provider ended this sign-in; sign in again");
    } else {
        if (r->identity && oauth_identity_is_clean(r->identity)) {
            char *props = oauth_identity_props(r->identity);
            char *sealed = NULL;
            if (oauth_props_seal(t->grant.key, t->grant.grant_id, props, &sealed) == 0) {
                free(t->grant.props_sealed);
                t->grant.props_sealed = sealed;
            }
            crypto_wipe(props, strlen(props));
            free(props);
        } else if (r->identity) {
            oauth_audit(http_request_id(t->req), "idp failure", "grant_id", t->grant.grant_id,
                        "error", "renewed claims contain control characters; kept the old ones",
                        NULL);
        }
        take_refresh(t, rec);
        return;
    }
    json_decref(rec);
    token_req_free(t);
}

/*
 * The record is read and checked first, and taken only when the request may
 * be served, so a refused request (wrong client, wider scope, other
 * resource) leaves the refresh token to its owner; the take keeps concurrent
 * valid refreshes to exactly one winner.
 */
static void on_refresh_read(const struct store_result *res, void *arg)
{
    struct token_req *t = arg;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(t->req, "refresh");
        token_req_free(t);
        return;
    }
    if (res->status == STORE_NOT_FOUND) {
        to_used_refresh(t);
        return;
    }
    json_error_t jerr;
    json_t *rec = json_loadb(res->value, res->value_len, 0, &jerr);
    const char *error = "invalid_grant";
    const char *why = rec ? check_refresh(t, rec, &error) : "the refresh token is invalid";
    if (why) {
        oauth_reply_error(t->req, 400, error, why);
        json_decref(rec);
        token_req_free(t);
        return;
    }
    if (grant_outlived(t)) {
        json_decref(rec);
        return;
    }
    if (t->srv->cfg->idp.recheck_on_refresh) {
        struct idp_recheck *rc = xcalloc(1, sizeof(*rc));
        rc->t = t;
        rc->rec = rec;
        oauth_idp_tokens_get(t->srv, t->grant.grant_id, t->grant.key, t->grant.subject, true,
                             http_request_id(t->req), on_idp_rechecked, rc);
        return;
    }
    take_refresh(t, rec);
}

static void grant_refresh_token(struct token_req *t)
{
    const char *refresh = http_params_get(&t->form, "refresh_token");
    if (refresh == NULL) {
        oauth_reply_error(t->req, 400, "invalid_request", "refresh_token is required");
        token_req_free(t);
        return;
    }
    if (!oauth_client_allows_grant(t->client, "refresh_token")) {
        oauth_reply_error(t->req, 400, "unauthorized_client",
                          "this client did not register the refresh_token grant");
        token_req_free(t);
        return;
    }
    if (!oauth_token_has_shape(refresh, OAUTH_REFRESH_TOKEN)) {
        oauth_reply_error(t->req, 400, "invalid_grant", "the refresh token is invalid");
        token_req_free(t);
        return;
    }
    oauth_token_hash(refresh, t->hash);
    char key[128];
    snprintf(key, sizeof(key), KEY_REFRESH "%s", t->hash);
    if (store_get(t->srv->store, key, on_refresh_read, t) < 0) {
        oauth_reply_store_down(t->req, "refresh");
        token_req_free(t);
    }
}

/* ---- dispatch ------------------------------------------------------------ */

static void on_client_authenticated(struct http_request *req, struct oauth_client *client,
                                    void *arg)
{
    struct token_req *t = arg;
    (void)req;
    if (client == NULL) { /* already answered */
        token_req_free(t);
        return;
    }
    t->client = client_copy(client);
    const char *gt = http_params_get(&t->form, "grant_type");
    if (strcmp(gt, "authorization_code") == 0)
        grant_authorization_code(t);
    else
        grant_refresh_token(t);
}

static void on_token_rate_checked(struct http_request *req, bool allowed, void *arg)
{
    struct token_req *t = arg;
    if (allowed)
        oauth_authenticate_client(t->srv, req, &t->form, on_client_authenticated, t);
    else
        token_req_free(t);
}

static void on_token(struct http_request *req, void *arg)
{
    struct token_req *t = xcalloc(1, sizeof(*t));
    t->srv = arg;
    t->req = req;
    if (!oauth_read_form(req, &t->form)) {
        token_req_free(t);
        return;
    }
    const char *gt = http_params_get(&t->form, "grant_type");
    if (gt == NULL) {
        oauth_reply_error(req, 400, "invalid_request", "grant_type is required");
        token_req_free(t);
        return;
    }
    if (strcmp(gt, "authorization_code") != 0 && strcmp(gt, "refresh_token") != 0) {
        oauth_reply_error(req, 400, "unsupported_grant_type",
                          "supported: authorization_code, refresh_token");
        token_req_free(t);
        return;
    }
    const struct gw_oauth_config *oc = &t->srv->cfg->oauth;
    oauth_rate_limit(t->srv, req, "token", oc->token_rate_count, oc->token_rate_window_ms, false,
                     on_token_rate_checked, t);
}

int oauth_token_register(struct oauth_server *srv, struct http_server *http)
{
    struct http_route_options o = {
        .flags = HTTP_ROUTE_CORS, .max_body_bytes = 16384, .label = "/token"};
    return http_route_add(http, "/token", HTTP_POST, on_token, srv, &o);
}
