/*
 * bearer: the resource-server check in front of every OAuth-protected MCP
 * route (RFC 6750; MCP authorization "Token Handling").
 *
 * Only the Authorization header carries tokens (a token in the query string
 * is refused). A token's record is looked up by its SHA-256, its expiry
 * checked, its grant key unwrapped with the token itself and the identity
 * opened. A token bound to one route (RFC 8707 resource) is refused at
 * another. Validated tokens are cached in process for at most 30 s and never
 * past their expiry; a revocation published through the store drops the
 * entry on every instance at once. The cache is bounded: when full, the
 * oldest entry goes. It is used only while revocations can reach it (the
 * store's pub/sub is live), and a lookup that raced a revocation message is
 * not cached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/queue.h> /* TAILQ: the eviction order */

#include "common/hash.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"
#include "oauth/idp.h"
#include "oauth/idp_tokens.h"
#include "oauth/oauth_int.h"
#include "oauth/tokens.h"
#include "store/store.h"

#define CACHE_TTL_S 30
#define CACHE_MAX_ENTRIES 20000
#define CACHE_BUCKETS 4096

struct bearer_entry {
    char hash[65];
    struct mg_principal *principal; /* owned */
    uint64_t valid_until;           /* Unix seconds */
    struct bearer_entry *next;      /* bucket chain (owned through the FIFO) */
    TAILQ_ENTRY(bearer_entry) fifo; /* insertion order, for eviction */
};

struct bearer_cache {
    struct oauth_server *srv; /* borrowed */
    struct bearer_entry *buckets[CACHE_BUCKETS];
    TAILQ_HEAD(, bearer_entry) fifo;
    size_t len;
    /* Bumped by every revocation message. A lookup caches its answer only if
     * no revocation arrived while its GET was in flight: the message and the
     * GET reply come on different connections, so a revocation of the very
     * token looked up may be seen before the (stale) record is. */
    uint64_t epoch;
    uint64_t hits, misses; /* checks answered from the cache, checks that read the store */
};

static unsigned bucket_of(const char *hash)
{
    return hash_str(hash) % CACHE_BUCKETS;
}

static void entry_unlink(struct bearer_cache *c, struct bearer_entry *e)
{
    struct bearer_entry **pp = &c->buckets[bucket_of(e->hash)];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    TAILQ_REMOVE(&c->fifo, e, fifo);
    mg_principal_free(e->principal);
    free(e);
    c->len--;
}

static struct bearer_entry *cache_find(struct bearer_cache *c, const char *hash)
{
    for (struct bearer_entry *e = c->buckets[bucket_of(hash)]; e; e = e->next)
        if (strcmp(e->hash, hash) == 0)
            return e;
    return NULL;
}

static void cache_put(struct bearer_cache *c, const char *hash, const struct mg_principal *p,
                      uint64_t now)
{
    struct bearer_entry *old = cache_find(c, hash);
    if (old)
        entry_unlink(c, old);
    if (c->len >= CACHE_MAX_ENTRIES)
        entry_unlink(c, TAILQ_FIRST(&c->fifo));
    struct bearer_entry *e = xcalloc(1, sizeof(*e));
    snprintf(e->hash, sizeof(e->hash), "%s", hash);
    e->principal = mg_principal_ref(p);
    e->valid_until = now + CACHE_TTL_S < p->expires_at ? now + CACHE_TTL_S : p->expires_at;
    unsigned b = bucket_of(hash);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    TAILQ_INSERT_TAIL(&c->fifo, e, fifo);
    c->len++;
}

static void on_revoked(const char *channel, const char *msg, size_t len, void *arg)
{
    struct bearer_cache *c = arg;
    (void)channel;
    c->epoch++;
    if (len != 64)
        return;
    char hash[65];
    memcpy(hash, msg, 64);
    hash[64] = '\0';
    struct bearer_entry *e = cache_find(c, hash);
    if (e)
        entry_unlink(c, e);
}

/*
 * Revocations reach the cache only while the pub/sub connection is live; a
 * message published while it was down is lost. So while it is down nothing is
 * served from the cache or put into it, and what was cached before is dropped.
 */
static bool cache_trusted(struct bearer_cache *c)
{
    struct store_stats st;
    store_get_stats(c->srv->store, &st);
    if (st.subscribed)
        return true;
    while (!TAILQ_EMPTY(&c->fifo))
        entry_unlink(c, TAILQ_FIRST(&c->fifo));
    c->epoch++;
    return false;
}

struct bearer_cache *bearer_cache_new(struct oauth_server *srv)
{
    struct bearer_cache *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    TAILQ_INIT(&c->fifo);
    int rc = store_subscribe(srv->store, CHANNEL_REVOKED, on_revoked, c);
    if (rc < 0) /* only on a programming error: the store is new and the channel valid */
        gw_log(GW_LOG_ERROR, "oauth", NULL, "cannot subscribe to revocations", "error",
               strerror(-rc), NULL);
    return c;
}

void bearer_cache_free(struct bearer_cache *c)
{
    if (c == NULL)
        return;
    while (!TAILQ_EMPTY(&c->fifo))
        entry_unlink(c, TAILQ_FIRST(&c->fifo));
    free(c);
}

size_t oauth_bearer_cache_size(const struct oauth_server *srv)
{
    return srv->cache ? srv->cache->len : 0;
}

void oauth_bearer_cache_counts(const struct oauth_server *srv, uint64_t *hits, uint64_t *misses)
{
    *hits = srv->cache ? srv->cache->hits : 0;
    *misses = srv->cache ? srv->cache->misses : 0;
}

/* ---- challenges ------------------------------------------------------------ */

static char *route_scope_text(const struct oauth_server *srv, const struct gw_route_config *r)
{
    if (r->require.scopes.len) {
        struct mg_string_list l = {r->require.scopes.items, r->require.scopes.len};
        return mg_string_list_join(&l, " ");
    }
    struct mg_string_list l = {srv->cfg->oauth.scopes.keys, srv->cfg->oauth.scopes.len};
    return mg_string_list_join(&l, " ");
}

/* RFC 6750 §3 and RFC 9728 §5.1; ERROR NULL when no token was sent. */
static void challenge(const struct oauth_server *srv, struct http_request *req,
                      const struct gw_route_config *r, int status, const char *error,
                      const char *description)
{
    char *scope = route_scope_text(srv, r);
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "Bearer resource_metadata=\"%s/.well-known/oauth-protected-resource%s\"",
                  srv->cfg->server.public_url, r->path);
    if (scope[0])
        strbuf_printf(&sb, ", scope=\"%s\"", scope);
    if (error)
        strbuf_printf(&sb, ", error=\"%s\", error_description=\"%s\"", error, description);
    http_set_header(req, "WWW-Authenticate", strbuf_str(&sb));
    http_reply_error(req, status, error ? error : "unauthorized",
                     description ? description : "a bearer token is required");
    strbuf_release(&sb);
    free(scope);
}

/* ---- the check ----------------------------------------------------------- */

struct bearer_check {
    struct oauth_server *srv;            /* borrowed */
    struct http_request *req;            /* borrowed until handed on */
    const struct gw_route_config *route; /* borrowed: re-resolved after every round trip */
    char *route_name;                    /* owned */
    mg_authed_fn ok;
    void *arg;   /* borrowed */
    char *token; /* owned (secret) */
    char hash[65];
    uint64_t cache_epoch;              /* the cache's epoch when the GET was sent */
    struct mg_principal *principal;    /* owned, while the IdP token is fetched */
    unsigned char key[CRYPTO_KEY_LEN]; /* the grant key, while the IdP token is fetched */
};

static void check_free(struct bearer_check *bc)
{
    free(bc->route_name);
    crypto_wipe(bc->key, sizeof(bc->key));
    mg_principal_free(bc->principal);
    if (bc->token) {
        crypto_wipe(bc->token, strlen(bc->token));
        free(bc->token);
    }
    free(bc);
}

/* RFC 8707: the token's audience must be this route (or the gateway as a whole). */
static const char *resource_mismatch(const struct oauth_server *srv,
                                     const struct gw_route_config *r, const char *resource)
{
    if (resource == NULL)
        return srv->cfg->oauth.require_resource ? "the token is not bound to a resource" : NULL;
    if (strcmp(resource, r->resource_url) == 0)
        return NULL;
    bool root;
    oauth_resource_route(srv, resource, &root);
    return root ? NULL : "the token was issued for another resource";
}

static char *opt(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? xstrdup(s) : NULL;
}

/* The principal from a token record, or NULL when it does not open. KEY gets
 * the grant key (the caller wipes it). */
static struct mg_principal *principal_from(const struct bearer_check *bc, json_t *rec,
                                           unsigned char key[CRYPTO_KEY_LEN])
{
    const struct gw_oauth_config *oc = &bc->srv->cfg->oauth;
    const char *wrapped = json_string_value(json_object_get(rec, "wrapped"));
    const char *sealed = json_string_value(json_object_get(rec, "props"));
    const char *grant_id = json_string_value(json_object_get(rec, "grant_id"));
    if (!wrapped || !sealed || !grant_id)
        return NULL;
    char *props_text = NULL;
    if (oauth_grant_key_unwrap(oc->secret, oc->secret_len, bc->token, wrapped, key) < 0)
        return NULL;
    int rc = oauth_props_open(key, grant_id, sealed, &props_text);
    if (rc < 0)
        return NULL;
    json_error_t jerr;
    json_t *props = json_loads(props_text, 0, &jerr);
    free(props_text);
    const char *sub = json_string_value(json_object_get(props, "sub"));
    if (sub == NULL) {
        json_decref(props);
        return NULL;
    }
    struct mg_principal *p = mg_principal_new();
    p->subject = xstrdup(sub);
    p->username = opt(props, "username");
    p->email = opt(props, "email");
    p->name = opt(props, "name");
    mg_string_list_add_json(&p->roles, json_object_get(props, "roles"));
    mg_string_list_add_json(&p->groups, json_object_get(props, "groups"));
    mg_string_list_split(&p->scopes, json_string_value(json_object_get(rec, "scope")) ?: "");
    p->client_id = opt(rec, "client_id");
    p->grant_id = xstrdup(grant_id);
    p->resource = opt(rec, "resource");
    p->expires_at = (uint64_t)json_integer_value(json_object_get(rec, "exp"));
    json_decref(props);
    return p;
}

/* The last step of every check that found a valid token: the audience, then OK. */
static void accept_token(struct oauth_server *srv, struct http_request *req,
                         const struct gw_route_config *route, const struct mg_principal *p,
                         mg_authed_fn ok, void *arg)
{
    const char *why = resource_mismatch(srv, route, p->resource);
    if (why) {
        challenge(srv, req, route, 401, "invalid_token", why);
        return;
    }
    ok(req, p, arg);
}

static void accept_principal(struct bearer_check *bc, const struct mg_principal *p)
{
    accept_token(bc->srv, bc->req, bc->route, p, bc->ok, bc->arg);
}

/* After a round trip: a SIGHUP may have freed the config BC->route lived in. */
static bool refresh_route(struct bearer_check *bc)
{
    bc->route = gw_config_route_by_name(bc->srv->cfg, bc->route_name);
    if (bc->route == NULL) {
        http_reply_error(bc->req, 404, "not_found", "this route was removed by a reload");
        check_free(bc);
        return false;
    }
    return true;
}

/* ---- the user's IdP access token, for routes that forward it ---------------------- */

static void on_idp_token(const struct oauth_idp_result *r, void *arg)
{
    struct bearer_check *bc = arg;
    if (!refresh_route(bc))
        return;
    switch (r->status) {
    case OAUTH_IDP_OK:
        bc->principal->idp_access_token = xstrdup(r->access_token);
        accept_principal(bc, bc->principal);
        break;
    case OAUTH_IDP_ENDED:
        challenge(bc->srv, bc->req, bc->route, 401, "invalid_token",
                  "the identity provider ended this sign-in; sign in again");
        break;
    case OAUTH_IDP_NONE:
        /* Nothing to renew with (a grant from before the route forwarded the
         * IdP token, or an IdP that gives no refresh token): a new sign-in gets one. */
        challenge(bc->srv, bc->req, bc->route, 401, "invalid_token",
                  "this route needs a current sign-in at the identity provider; sign in again");
        break;
    case OAUTH_IDP_UNAVAILABLE:
        http_set_header(bc->req, "Retry-After", "5");
        http_reply_error(bc->req, 503, "temporarily_unavailable",
                         "the identity provider could not renew the user's token");
        break;
    }
    check_free(bc);
}

/* For /account and `grants list`: when the grant was last used. Written on a
 * cache miss only, so at most once per token per CACHE_TTL_S per instance. */
static void note_grant_used(struct oauth_server *srv, const char *grant_id)
{
    char key[128], now[24];
    snprintf(key, sizeof(key), KEY_GRANT_SEEN "%s", grant_id);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)time(NULL));
    store_put_detached(srv->store, key, now, strlen(now), srv->cfg->oauth.refresh_token_ttl_ms,
                       "grant last use");
}

static void on_token_record(const struct store_result *res, void *arg)
{
    struct bearer_check *bc = arg;
    if (!refresh_route(bc))
        return;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        oauth_reply_store_down(bc->req, "bearer check");
        check_free(bc);
        return;
    }
    json_error_t jerr;
    json_t *rec = res->status == STORE_OK ? json_loadb(res->value, res->value_len, 0, &jerr) : NULL;
    uint64_t now = (uint64_t)time(NULL);
    struct mg_principal *p = rec ? principal_from(bc, rec, bc->key) : NULL;
    json_decref(rec);
    if (p == NULL || p->expires_at <= now) {
        challenge(bc->srv, bc->req, bc->route, 401, "invalid_token",
                  "the access token is invalid, expired or revoked");
    } else if (bc->route->identity.idp_access_token &&
               resource_mismatch(bc->srv, bc->route, p->resource) == NULL) {
        /* Not cached: the IdP token must be current each time. */
        bc->principal = p;
        oauth_idp_tokens_get(bc->srv, p->grant_id, bc->key, p->subject, false,
                             http_request_id(bc->req), on_idp_token, bc);
        return;
    } else {
        note_grant_used(bc->srv, p->grant_id);
        if (bc->srv->cache->epoch == bc->cache_epoch && cache_trusted(bc->srv->cache))
            cache_put(bc->srv->cache, bc->hash, p, now);
        accept_principal(bc, p);
    }
    mg_principal_free(p);
    check_free(bc);
}

/* The token from "Authorization: Bearer <token>", or NULL. */
static const char *bearer_token(const char *header)
{
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    const char *t = header + 7;
    while (*t == ' ')
        t++;
    return *t ? t : NULL;
}

void oauth_bearer_check(struct oauth_server *srv, struct http_request *req,
                        const struct gw_route_config *route, mg_authed_fn ok, void *arg)
{
    const char *q = http_request_query(req);
    if (q && (strncmp(q, "access_token=", 13) == 0 || strstr(q, "&access_token="))) {
        /* MCP authorization: tokens MUST NOT be in the query string. */
        challenge(srv, req, route, 400, "invalid_request",
                  "send the access token in the Authorization header, not the URL");
        return;
    }
    if (http_request_header_count(req, "Authorization") > 1) {
        challenge(srv, req, route, 400, "invalid_request", "one Authorization header only");
        return;
    }
    const char *header = http_request_header(req, "Authorization");
    const char *token = bearer_token(header);
    if (token == NULL) {
        if (header)
            challenge(srv, req, route, 401, "invalid_token", "use the Bearer scheme");
        else
            challenge(srv, req, route, 401, NULL, NULL);
        return;
    }
    if (!oauth_token_has_shape(token, OAUTH_ACCESS_TOKEN)) {
        challenge(srv, req, route, 401, "invalid_token", "the access token is malformed");
        return;
    }
    char hash[65];
    oauth_token_hash(token, hash);
    uint64_t now = (uint64_t)time(NULL);
    struct bearer_entry *e = cache_trusted(srv->cache) ? cache_find(srv->cache, hash) : NULL;
    if (e && e->valid_until > now && !route->identity.idp_access_token) {
        /* The common case, answered without an allocation or a copy of the token. */
        srv->cache->hits++;
        accept_token(srv, req, route, e->principal, ok, arg);
        return;
    }
    if (e)
        entry_unlink(srv->cache, e);
    srv->cache->misses++;
    struct bearer_check *bc = xcalloc(1, sizeof(*bc));
    bc->srv = srv;
    bc->req = req;
    bc->route = route;
    bc->route_name = xstrdup(route->name);
    bc->ok = ok;
    bc->arg = arg;
    bc->token = xstrdup(token);
    memcpy(bc->hash, hash, sizeof(bc->hash));
    char key[128];
    snprintf(key, sizeof(key), KEY_TOKEN "%s", bc->hash);
    bc->cache_epoch = srv->cache->epoch;
    if (store_get(srv->store, key, on_token_record, bc) < 0) {
        oauth_reply_store_down(req, "bearer check");
        check_free(bc);
    }
}
