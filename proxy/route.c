/*
 * route: the HTTP surface of every route.
 *
 * A request to a route path is checked in this order: Origin (DNS
 * rebinding, MCP transports: 403 when present and not allowed), then the
 * caller (the gateway's authentication: 401/403) and the route's require:
 * (guard_route), then the transport rules (Accept 406, Content-Type 415,
 * MCP-Protocol-Version 400), then every message of the body (guard_check:
 * JSON, JSON-RPC, policy, the principal in _meta), and only then is it
 * handed to the STDIO sessions or the HTTP upstream. Routes are found by name in the current config
 * on every request, so a reload applies to new requests at once. The proxy object is proxy.c; the
 * call helpers and JSON-RPC replies are call.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "proxy/cluster.h"
#include "proxy/guard.h"
#include "proxy/jsonrpc.h"
#include "proxy/proxy_int.h"

enum binding_kind {
    BINDING_MCP = 0,     /* <path>: Streamable HTTP */
    BINDING_LEGACY_SSE,  /* <path>/sse */
    BINDING_LEGACY_POST, /* <path>/messages */
};

struct route_binding {
    struct proxy *proxy; /* borrowed */
    char *route_name;    /* owned */
    char *route_path; /* owned: the route's path when it was bound (F16b: a reload may move it) */
    enum binding_kind kind;
    bool internal;              /* on the cluster's internal listener: hops from peers only */
    struct route_binding *next; /* owned list */
};

static const char *const supported_versions[] = {"2025-03-26", "2025-06-18", "2025-11-25"};

/* ---- checks --------------------------------------------------------------- */

static bool origin_allowed(const struct proxy *p, const char *origin)
{
    const struct gw_server_config *s = &p->cfg->server;
    if (strcmp(origin, s->public_url) == 0)
        return true;
    for (size_t i = 0; i < s->allowed_origins.len; i++)
        if (strcmp(origin, s->allowed_origins.items[i]) == 0)
            return true;
    return false;
}

static bool accepts(const char *accept, const char *type)
{
    return accept && (strstr(accept, type) || strstr(accept, "*/*"));
}

/*
 * The 2026-07-28 revision is stateless and drops initialize. A legacy front
 * must answer its requests with 400 and an error that is none of that
 * revision's codes (-32020…-32022), so dual-era clients fall back (MCP
 * versioning, "Backward Compatibility").
 */
static bool is_modern(const char *version, const struct guard_body *gb)
{
    if (version && strcmp(version, "2026-07-28") >= 0)
        return true;
    const struct jsonrpc_msg *m = gb->n ? &gb->msgs[0].info : NULL;
    return m && (jsonrpc_is(m, "server/discover") || m->meta_protocol_version.kind);
}

static const char *version_of(struct http_request *req, bool *bad)
{
    const char *v = http_request_header(req, "MCP-Protocol-Version");
    *bad = false;
    if (v == NULL)
        return PROXY_DEFAULT_PROTOCOL;
    for (size_t i = 0; i < sizeof(supported_versions) / sizeof(supported_versions[0]); i++)
        if (strcmp(v, supported_versions[i]) == 0)
            return v;
    *bad = strcmp(v, "2026-07-28") < 0;
    return v;
}

static void guard_ctx_of(const struct proxy_call *call, bool legacy, struct guard_ctx *ctx)
{
    *ctx = (struct guard_ctx){
        .route = call->route,
        .principal = call->principal,
        .public_url = call->proxy->cfg->server.public_url,
        .request_id = http_request_id(call->req),
        .protocol_version = call->protocol_version,
        .legacy = legacy,
        .one_line = call->route->kind == GW_UPSTREAM_STDIO,
    };
}

/* A refusal answered on the POST itself. */
static void reply_refusal(struct http_request *req, const struct guard_refusal *r)
{
    if (r->www_authenticate)
        http_set_header(req, "WWW-Authenticate", r->www_authenticate);
    http_reply_json_text(req, r->http_status, r->body);
}

/* ---- POST/GET/DELETE on the MCP endpoint ----------------------------------- */

static void mcp_post(struct proxy_call *call)
{
    struct http_request *req = call->req;
    const char *accept = http_request_header(req, "Accept");
    if (!accepts(accept, "application/json") || !accepts(accept, "text/event-stream")) {
        proxy_reply_rpc_error(req, 406, JSONRPC_INVALID_REQUEST,
                              "Accept must list application/json and text/event-stream");
        proxy_call_free(call);
        return;
    }
    const char *ctype = http_request_header(req, "Content-Type");
    if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0) {
        proxy_reply_rpc_error(req, 415, JSONRPC_INVALID_REQUEST,
                              "Content-Type must be application/json");
        proxy_call_free(call);
        return;
    }
    size_t len;
    const char *text = http_request_body(req, &len);
    struct guard_ctx ctx;
    guard_ctx_of(call, false, &ctx);
    struct guard_body gb;
    struct guard_refusal refusal;
    if (guard_check(&ctx, text, len, &gb, &refusal) != GUARD_PASS) {
        call_metrics_refused(call->proxy, call->route_name, refusal.tool);
        reply_refusal(req, &refusal);
        guard_refusal_clear(&refusal);
        proxy_call_free(call);
        return;
    }
    if (is_modern(call->protocol_version, &gb) && call->route->modern &&
        call->route->kind == GW_UPSTREAM_STDIO) {
        modern_handle(call, &gb);
        guard_body_clear(&gb);
        return;
    }
    if (is_modern(call->protocol_version, &gb)) {
        proxy_reply_rpc_error(req, 400, JSONRPC_INVALID_REQUEST,
                              "this endpoint speaks MCP 2025-11-25 and earlier: send "
                              "initialize and use the session it returns");
        guard_body_clear(&gb);
        proxy_call_free(call);
        return;
    }
    if (call->route->kind == GW_UPSTREAM_STDIO)
        session_handle_post(call, &gb);
    else
        http_upstream_handle(call, &gb);
    guard_body_clear(&gb);
}

/* POST <route>/messages?session_id=…: the 2024-11-05 transport. Refusals of a
 * request go to the client's SSE stream, where it waits for the answer. */
static void legacy_post(struct proxy_call *call)
{
    struct http_request *req = call->req;
    const char *q = http_request_query(req);
    struct http_params params = {0};
    const char *sid = NULL;
    if (q && http_params_parse(q, strlen(q), &params) == 0)
        sid = http_params_get(&params, "session_id");
    size_t len;
    const char *text = http_request_body(req, &len);
    struct guard_ctx ctx;
    guard_ctx_of(call, true, &ctx);
    struct guard_body gb;
    struct guard_refusal refusal;
    enum guard_result res = guard_check(&ctx, text, len, &gb, &refusal);
    if (res != GUARD_PASS)
        call_metrics_refused(call->proxy, call->route_name, refusal.tool);
    if (res != GUARD_PASS && !refusal.has_id) {
        reply_refusal(req, &refusal);
        proxy_call_free(call);
    } else if (call->route->kind == GW_UPSTREAM_STDIO) {
        session_handle_legacy_post(call, sid, res == GUARD_PASS ? &gb : NULL,
                                   res == GUARD_PASS ? NULL : &refusal);
    } else {
        legacy_http_post(call, sid, res == GUARD_PASS ? &gb : NULL,
                         res == GUARD_PASS ? NULL : &refusal);
    }
    guard_body_clear(&gb);
    guard_refusal_clear(&refusal);
    http_params_clear(&params);
}

/* B's route in the running config, or NULL when a reload removed it or moved
 * it to another path (F16b: the old path must stop serving it). */
static const struct gw_route_config *binding_route(const struct route_binding *b)
{
    const struct gw_route_config *r = gw_config_route_by_name(b->proxy->cfg, b->route_name);
    return r && strcmp(r->path, b->route_path) == 0 ? r : NULL;
}

static void on_authed(struct http_request *req, const struct mg_principal *principal, void *arg)
{
    struct route_binding *b = arg;
    struct proxy *p = b->proxy;
    const struct gw_route_config *route = binding_route(b);
    if (route == NULL) { /* removed or moved by a reload while we authenticated */
        proxy_reply_rpc_error(req, 404, JSONRPC_INVALID_REQUEST, "no such route");
        return;
    }
    struct proxy_call *call = xcalloc(1, sizeof(*call));
    call->proxy = p;
    call->route = route;
    call->route_name = xstrdup(route->name);
    call->req = req;
    call->principal = mg_principal_ref(principal);
    bool bad_version;
    call->protocol_version = xstrdup(version_of(req, &bad_version));
    if (bad_version) {
        proxy_reply_rpc_error(req, 400, JSONRPC_INVALID_REQUEST,
                              "unsupported MCP-Protocol-Version");
        proxy_call_free(call);
        return;
    }
    struct guard_ctx ctx;
    guard_ctx_of(call, false, &ctx);
    struct guard_refusal refusal;
    if (guard_route(&ctx, &refusal) != GUARD_PASS) {
        reply_refusal(req, &refusal);
        guard_refusal_clear(&refusal);
        proxy_call_free(call);
        return;
    }
    enum http_method m = http_request_method(req);
    if (b->kind == BINDING_LEGACY_SSE) {
        char *messages = xasprintf("%s/messages", route->path);
        if (route->kind == GW_UPSTREAM_STDIO)
            session_handle_legacy_sse(call, messages);
        else
            legacy_http_open(call, messages);
        free(messages);
    } else if (b->kind == BINDING_LEGACY_POST) {
        legacy_post(call);
    } else if (m == HTTP_POST) {
        mcp_post(call);
    } else if (route->kind == GW_UPSTREAM_HTTP) {
        http_upstream_handle(call, NULL);
    } else if (m == HTTP_GET) {
        session_handle_get(call);
    } else {
        session_handle_delete(call);
    }
}

static void anonymous_auth(struct http_request *req, const struct gw_route_config *route,
                           struct route_binding *b)
{
    (void)route;
    on_authed(req, b->proxy->anonymous, b);
}

/* The id of the session the request names, when another instance owns it (then TAG). */
static bool owned_elsewhere(const struct route_binding *b, const struct gw_route_config *route,
                            struct http_request *req, char *tag)
{
    if (b->internal || b->proxy->cluster == NULL)
        return false; /* a hop is never forwarded again */
    if (b->kind == BINDING_LEGACY_POST) {
        const char *q = http_request_query(req);
        struct http_params params = {0};
        bool foreign =
            q && http_params_parse(q, strlen(q), &params) == 0 &&
            cluster_id_is_foreign(b->proxy->cluster, http_params_get(&params, "session_id"), tag);
        http_params_clear(&params);
        return foreign;
    }
    /* On an HTTP route the Mcp-Session-Id is the upstream's, which every instance reaches. */
    return b->kind == BINDING_MCP && route->kind == GW_UPSTREAM_STDIO &&
           cluster_id_is_foreign(b->proxy->cluster, http_request_header(req, "Mcp-Session-Id"),
                                 tag);
}

static void on_route_request(struct http_request *req, void *arg)
{
    struct route_binding *b = arg;
    struct proxy *p = b->proxy;
    const struct gw_route_config *route = binding_route(b);
    if (route == NULL) {
        proxy_reply_rpc_error(req, 404, JSONRPC_INVALID_REQUEST, "no such route");
        return;
    }
    http_request_set_label(req, route->name);
    if (b->internal) {
        const char *why = cluster_verify_hop(p->cluster, req);
        if (why) {
            gw_log(GW_LOG_WARN, "cluster", http_request_id(req), "hop refused", "reason", why,
                   "client", http_request_client_ip(req), NULL);
            proxy_reply_rpc_error(req, 403, JSONRPC_GATEWAY_FORBIDDEN, why);
            return;
        }
    }
    char tag[CLUSTER_TAG_LEN + 1];
    if (owned_elsewhere(b, route, req, tag)) {
        cluster_forward(p->cluster, req, tag);
        return;
    }
    const char *origin = http_request_header(req, "Origin");
    if (origin && !origin_allowed(p, origin)) {
        proxy_reply_rpc_error(req, 403, JSONRPC_GATEWAY_FORBIDDEN,
                              "Origin not allowed (server.allowed_origins)");
        return;
    }
    if (route->auth == GW_ROUTE_AUTH_NONE)
        anonymous_auth(req, route, b);
    else
        p->auth(p->auth_arg, req, route, on_authed, b);
}

/* The binding of (R's name, R's path, KIND, INTERNAL), made on first use;
 * *FRESH says whether it was. Bindings live until proxy_free: a request may
 * be routed to one at any time, and a reload only re-points paths. */
static struct route_binding *binding_get(struct proxy *p, const struct gw_route_config *r,
                                         enum binding_kind kind, bool internal, bool *fresh)
{
    for (struct route_binding *b = p->bindings; b; b = b->next)
        if (b->kind == kind && b->internal == internal && strcmp(b->route_name, r->name) == 0 &&
            strcmp(b->route_path, r->path) == 0)
            return b;
    if (fresh)
        *fresh = true;
    struct route_binding *b = xcalloc(1, sizeof(*b));
    b->proxy = p;
    b->route_name = xstrdup(r->name);
    b->route_path = xstrdup(r->path);
    b->kind = kind;
    b->internal = internal;
    b->next = p->bindings;
    p->bindings = b;
    return b;
}

void route_bindings_free(struct proxy *p)
{
    while (p->bindings) {
        struct route_binding *b = p->bindings;
        p->bindings = b->next;
        free(b->route_name);
        free(b->route_path);
        free(b);
    }
}

/* The MCP endpoint of R and its 2024-11-05 pair, on HTTP. */
static int register_route(struct proxy *p, struct http_server *http,
                          const struct gw_route_config *r, bool internal, bool *fresh)
{
    /* HTTP_ROUTE_RPC_ERRORS: the server's own 400/408/413 here are JSON-RPC errors */
    struct http_route_options o = {.label = r->name, .flags = HTTP_ROUTE_RPC_ERRORS};
    int rc = http_route_add(http, r->path, HTTP_POST | HTTP_GET | HTTP_DELETE, on_route_request,
                            binding_get(p, r, BINDING_MCP, internal, fresh), &o);
    char *sse = xasprintf("%s/sse", r->path);
    char *messages = xasprintf("%s/messages", r->path);
    if (rc == 0)
        rc = http_route_add(http, sse, HTTP_GET, on_route_request,
                            binding_get(p, r, BINDING_LEGACY_SSE, internal, NULL), &o);
    if (rc == 0)
        rc = http_route_add(http, messages, HTTP_POST, on_route_request,
                            binding_get(p, r, BINDING_LEGACY_POST, internal, NULL), &o);
    free(sse);
    free(messages);
    return rc;
}

/* Points every route's paths at it: at start, and after a reload, so a new
 * or moved route is served at once (F16b). A removed or moved route stays
 * registered at its old path unless another route took it, and answers 404
 * there: bindings are looked up by name and checked against the path. */
int proxy_register_routes(struct proxy *p, struct http_server *http)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->cfg->n_routes; i++) {
        const struct gw_route_config *r = &p->cfg->routes[i];
        bool fresh = false;
        rc = register_route(p, http, r, false, &fresh);
        if (fresh && r->auth == GW_ROUTE_AUTH_NONE)
            gw_log(GW_LOG_WARN, "proxy", NULL,
                   "route has auth: none: anyone who can reach it can use it", "route", r->name,
                   "path", r->path, NULL);
    }
    warm_refill_later(p); /* at start, and for what a reload changed */
    return rc;
}

int proxy_register_internal_routes(struct proxy *p, struct http_server *internal)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->cfg->n_routes; i++)
        rc = register_route(p, internal, &p->cfg->routes[i], true, NULL);
    return rc;
}
