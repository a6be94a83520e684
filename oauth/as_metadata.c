/*
 * as_metadata: the discovery documents. RFC 8414 authorization server
 * metadata at /.well-known/oauth-authorization-server, and RFC 9728
 * protected resource metadata for every OAuth route at
 * /.well-known/oauth-protected-resource<route path>, plus the root form for
 * the gateway as a whole. None needs a token; all allow CORS (browser-based
 * MCP clients read them cross-origin). The issuer is server.public_url,
 * byte-identical wherever it appears (MCP authorization; RFC 8414 §3.3).
 */
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "http/http.h"
#include "oauth/oauth_int.h"

static json_t *string_array(const char *const *items, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(items[i]));
    return a;
}

static json_t *configured_scopes(const struct oauth_server *srv)
{
    const struct gw_string_map *m = &srv->cfg->oauth.scopes;
    return string_array((const char *const *)m->keys, m->len);
}

static void reply_doc(struct http_request *req, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_set_header(req, "Cache-Control", "public, max-age=300");
    http_reply_json_text(req, 200, text);
    free(text);
}

static void on_as_metadata(struct http_request *req, void *arg)
{
    struct oauth_server *srv = arg;
    const char *base = srv->cfg->server.public_url;
    static const char *const auth_methods[] = {"none", "client_secret_basic", "client_secret_post"};
    char *authz = xasprintf("%s/authorize", base);
    char *token = xasprintf("%s/token", base);
    char *revoke = xasprintf("%s/revoke", base);
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:[s], s:[s], s:[s,s], s:[s], s:o, s:o, s:o, s:b}", "issuer", base,
        "authorization_endpoint", authz, "token_endpoint", token, "revocation_endpoint", revoke,
        "response_types_supported", "code", "response_modes_supported", "query",
        "grant_types_supported", "authorization_code", "refresh_token",
        "code_challenge_methods_supported", "S256", "token_endpoint_auth_methods_supported",
        string_array(auth_methods, 3), "revocation_endpoint_auth_methods_supported",
        string_array(auth_methods, 3), "scopes_supported", configured_scopes(srv),
        "authorization_response_iss_parameter_supported", 1);
    /* MCP 2025-11-25 authorization: Client ID Metadata Documents (oauth/cimd.c); "none"
     * above is the method such clients use. */
    if (srv->cfg->oauth.cimd_enabled)
        json_object_set_new(doc, "client_id_metadata_document_supported", json_true());
    if (srv->cfg->oauth.registration_enabled) {
        char *reg = xasprintf("%s/register", base);
        json_object_set_new(doc, "registration_endpoint", json_string(reg));
        free(reg);
    }
    free(authz);
    free(token);
    free(revoke);
    reply_doc(req, doc);
}

static json_t *route_scopes(const struct oauth_server *srv, const struct gw_route_config *r)
{
    if (r->require.scopes.len == 0)
        return configured_scopes(srv);
    return string_array((const char *const *)r->require.scopes.items, r->require.scopes.len);
}

static json_t *prm_document(const struct oauth_server *srv, const char *resource, json_t *scopes,
                            const char *name)
{
    return json_pack("{s:s, s:[s], s:o, s:[s], s:s}", "resource", resource, "authorization_servers",
                     srv->cfg->server.public_url, "scopes_supported", scopes,
                     "bearer_methods_supported", "header", "resource_name", name);
}

/* The route is found from the request path, so a reload that changes a
 * route's description or scopes is served at once. */
static void on_route_prm(struct http_request *req, void *arg)
{
    struct oauth_server *srv = arg;
    const char *prefix = "/.well-known/oauth-protected-resource";
    const struct gw_route_config *r =
        gw_config_route_by_path(srv->cfg, http_request_path(req) + strlen(prefix));
    if (r == NULL || r->auth != GW_ROUTE_AUTH_OAUTH) {
        http_reply_error(req, 404, "not_found", "no protected resource at this path");
        return;
    }
    reply_doc(req, prm_document(srv, r->resource_url, route_scopes(srv, r),
                                r->description ? r->description : r->name));
}

static void on_root_prm(struct http_request *req, void *arg)
{
    struct oauth_server *srv = arg;
    reply_doc(req,
              prm_document(srv, srv->cfg->server.public_url, configured_scopes(srv), "mcpgate"));
}

int oauth_metadata_register(struct oauth_server *srv, struct http_server *http)
{
    struct http_route_options cors = {.flags = HTTP_ROUTE_CORS};
    cors.label = "/.well-known/oauth-authorization-server";
    int rc = http_route_add(http, cors.label, HTTP_GET, on_as_metadata, srv, &cors);
    cors.label = "/.well-known/oauth-protected-resource";
    if (rc == 0)
        rc = http_route_add(http, cors.label, HTTP_GET, on_root_prm, srv, &cors);
    for (size_t i = 0; rc == 0 && i < srv->cfg->n_routes; i++) {
        const struct gw_route_config *r = &srv->cfg->routes[i];
        if (r->auth != GW_ROUTE_AUTH_OAUTH)
            continue;
        char *path = xasprintf("/.well-known/oauth-protected-resource%s", r->path);
        struct http_route_options o = {.flags = HTTP_ROUTE_CORS,
                                       .label = "/.well-known/oauth-protected-resource/<route>"};
        rc = http_route_add(http, path, HTTP_GET, on_route_prm, srv, &o);
        free(path);
    }
    return rc;
}
