/*
 * identity: what an upstream learns about the caller (DESIGN §6). For STDIO
 * children: the environment. A child's environment is built from nothing:
 * the route's env, then only the gateway variables named in
 * env_passthrough, then the caller's identity as MCP_USER_* variables (one
 * child serves one session, so one user). The identity goes last so a
 * route's env cannot spoof it. For HTTP upstreams: the request headers
 * (identity_headers_build, one builder for Streamable HTTP and the 2024-11-05
 * bridge). For both: the signed assertion and the optional _meta principal.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/crypto.h"
#include "common/jws.h"
#include "common/panic.h"
#include "common/rand.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "proxy/proxy_int.h"

#define IDENTITY_JWT_MAX_TTL_S 300

struct env_builder {
    char **items; /* owned, NULL-terminated */
    size_t len;
};

static void env_set(struct env_builder *b, const char *name, const char *value)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < b->len; i++) {
        if (strncmp(b->items[i], name, n) == 0 && b->items[i][n] == '=') {
            free(b->items[i]);
            b->items[i] = xasprintf("%s=%s", name, value);
            return;
        }
    }
    b->items = xrealloc(b->items, (b->len + 2) * sizeof(*b->items));
    b->items[b->len++] = xasprintf("%s=%s", name, value);
    b->items[b->len] = NULL;
}

static void env_set_list(struct env_builder *b, const char *name, const struct mg_string_list *l,
                         const char *sep)
{
    char *joined = mg_string_list_join(l, sep);
    env_set(b, name, joined);
    free(joined);
}

char **identity_child_env(const struct proxy *proxy, const struct gw_route_config *route,
                          const struct mg_principal *p)
{
    struct env_builder b = {xcalloc(1, sizeof(char *)), 0};
    const struct gw_stdio_upstream *st = &route->stdio;
    for (size_t i = 0; i < st->env.len; i++)
        env_set(&b, st->env.keys[i], st->env.values[i]);
    for (size_t i = 0; i < st->env_passthrough.len; i++) {
        const char *v = getenv(st->env_passthrough.items[i]);
        if (v)
            env_set(&b, st->env_passthrough.items[i], v);
    }
    if (route->identity.env && p) {
        env_set(&b, "MCP_USER_SUB", p->subject);
        env_set(&b, "MCP_USER_NAME", p->username ? p->username : (p->name ? p->name : ""));
        env_set(&b, "MCP_USER_EMAIL", p->email ? p->email : "");
        env_set_list(&b, "MCP_USER_ROLES", &p->roles, ",");
        env_set_list(&b, "MCP_USER_GROUPS", &p->groups, ",");
        env_set_list(&b, "MCP_SCOPES", &p->scopes, " ");
        env_set(&b, "MCP_CLIENT_ID", p->client_id ? p->client_id : "");
    }
    if (route->identity.idp_access_token && p && p->idp_access_token)
        env_set(&b, "MCP_IDP_ACCESS_TOKEN", p->idp_access_token);
    char *jwt = p ? identity_jwt(proxy, route, p) : NULL;
    if (jwt) {
        env_set(&b, "MCP_IDENTITY_JWT", jwt);
        free(jwt);
    }
    return b.items;
}

void identity_env_free(char **env)
{
    for (char **e = env; e && *e; e++)
        free(*e);
    free(env);
}

/* The claims every form of the identity carries. */
static json_t *principal_claims(const struct mg_principal *p)
{
    char *scope = mg_string_list_join(&p->scopes, " ");
    json_t *o = json_pack("{s:s, s:o, s:o, s:s}", "sub", p->subject, "roles",
                          mg_string_list_to_json(&p->roles), "groups",
                          mg_string_list_to_json(&p->groups), "scope", scope);
    free(scope);
    if (p->username || p->name)
        json_object_set_new(o, "name", json_string(p->username ? p->username : p->name));
    if (p->email)
        json_object_set_new(o, "email", json_string(p->email));
    if (p->client_id)
        json_object_set_new(o, "client_id", json_string(p->client_id));
    return o;
}

char *identity_jwt(const struct proxy *proxy, const struct gw_route_config *route,
                   const struct mg_principal *p)
{
    if (proxy->signer == NULL || !route->identity.jwt || p == NULL)
        return NULL;
    uint64_t ttl = proxy->cfg->identity.jwt_ttl_ms / 1000;
    if (ttl == 0 || ttl > IDENTITY_JWT_MAX_TTL_S)
        ttl = IDENTITY_JWT_MAX_TTL_S;
    time_t now = time(NULL);
    char jti[33];
    rand_hex(jti, 16);
    json_t *claims = principal_claims(p);
    json_object_set_new(claims, "iss", json_string(proxy->cfg->server.public_url));
    json_object_set_new(claims, "aud", json_string(route->resource_url));
    json_object_set_new(claims, "iat", json_integer((json_int_t)now));
    json_object_set_new(claims, "exp", json_integer((json_int_t)(now + (time_t)ttl)));
    json_object_set_new(claims, "jti", json_string(jti));
    char *jwt = jws_sign(proxy->signer, claims);
    json_decref(claims);
    return jwt;
}

static void add_header(struct identity_headers *ih, const char *name, const char *value)
{
    GW_ASSERT(ih->n < IDENTITY_MAX_HEADERS);
    ih->h[ih->n++] = (struct httpc_header){name, value};
}

static const char *own(struct identity_headers *ih, char *value)
{
    GW_ASSERT(ih->n_owned < sizeof(ih->owned) / sizeof(ih->owned[0]));
    return ih->owned[ih->n_owned++] = value;
}

void identity_headers_build(struct identity_headers *ih, const struct proxy *proxy,
                            const struct gw_route_config *route, const struct mg_principal *p)
{
    memset(ih, 0, sizeof(*ih));
    if (p == NULL)
        return;
    if (route->identity.headers) {
        add_header(ih, "X-MCP-User-Sub", p->subject);
        if (p->username || p->name)
            add_header(ih, "X-MCP-User-Name", p->username ? p->username : p->name);
        if (p->email)
            add_header(ih, "X-MCP-User-Email", p->email);
        add_header(ih, "X-MCP-User-Roles", own(ih, mg_string_list_join(&p->roles, ",")));
        add_header(ih, "X-MCP-User-Groups", own(ih, mg_string_list_join(&p->groups, ",")));
        add_header(ih, "X-MCP-Scopes", own(ih, mg_string_list_join(&p->scopes, " ")));
        if (p->client_id)
            add_header(ih, "X-MCP-Client-Id", p->client_id);
    }
    if (route->identity.idp_access_token && p->idp_access_token)
        add_header(ih, "X-MCP-IdP-Access-Token", p->idp_access_token);
    char *jwt = identity_jwt(proxy, route, p);
    if (jwt)
        add_header(ih, "X-MCP-Identity", own(ih, jwt));
}

void identity_headers_clear(struct identity_headers *ih)
{
    for (size_t i = 0; i < ih->n_owned; i++)
        free(ih->owned[i]);
    memset(ih, 0, sizeof(*ih));
}

char *identity_meta_json(const struct mg_principal *p)
{
    json_t *o = principal_claims(p);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text == NULL)
        GW_PANIC("out of memory (json_dumps)");
    return text;
}

static void put_field(struct strbuf *sb, const char *v)
{
    strbuf_puts(sb, v ? v : "");
    strbuf_append(sb, "", 1); /* a NUL between fields: none can run into the next */
}

static void put_list(struct strbuf *sb, const struct mg_string_list *l)
{
    for (size_t i = 0; i < l->len; i++)
        strbuf_printf(sb, "%s,", l->items[i]);
    strbuf_append(sb, "", 1);
}

/* A digest of everything identity.c can tell a child about its caller. */
void identity_caller_digest(const struct mg_principal *p, unsigned char out[CRYPTO_SHA256_LEN])
{
    struct strbuf sb = STRBUF_INIT;
    put_field(&sb, p->subject);
    put_field(&sb, p->username);
    put_field(&sb, p->name);
    put_field(&sb, p->email);
    put_field(&sb, p->client_id);
    put_list(&sb, &p->roles);
    put_list(&sb, &p->groups);
    put_list(&sb, &p->scopes);
    crypto_sha256(sb.buf, sb.len, out);
    strbuf_release(&sb);
}
