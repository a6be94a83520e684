/*
 * route: the HTTP surface of every route.
 *
 * A request to a route path is checked in this order: Origin (DNS
 * rebinding, MCP transports: 403 when present and not allowed), then the
 * caller (the gateway's authentication: 401/403), then the transport rules
 * (Accept 406, Content-Type 415, MCP-Protocol-Version 400, JSON 400 with
 * -32700), and only then is it handed to the STDIO sessions or the HTTP
 * upstream. Routes are found by name in the current config on every request,
 * so a reload applies to new requests at once. The proxy object is proxy.c;
 * the call helpers and JSON-RPC replies are call.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "proxy/jsonrpc.h"
#include "proxy/policy.h"
#include "proxy/proxy_int.h"
#include "proxy/stdio.h"

enum binding_kind {
    BINDING_MCP = 0,     /* <path>: Streamable HTTP */
    BINDING_LEGACY_SSE,  /* <path>/sse */
    BINDING_LEGACY_POST, /* <path>/messages */
};

struct route_binding {
    struct proxy *proxy; /* borrowed */
    char *route_name;    /* owned */
    enum binding_kind kind;
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
static bool is_modern(const char *version, const json_t *body)
{
    if (version && strcmp(version, "2026-07-28") >= 0)
        return true;
    const json_t *msg = json_is_array(body) ? json_array_get(body, 0) : body;
    const char *method = jsonrpc_method(msg);
    if (method && strcmp(method, "server/discover") == 0)
        return true;
    return json_object_get(json_object_get(json_object_get(msg, "params"), "_meta"),
                           "io.modelcontextprotocol/protocolVersion") != NULL;
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

/* Every message of a POST body must be JSON-RPC; batches only in 2025-03-26. */
static const char *check_body(const json_t *body, const char *version)
{
    if (json_is_array(body)) {
        if (strcmp(version, "2025-03-26") != 0)
            return "JSON-RPC batches are only part of protocol version 2025-03-26";
        if (json_array_size(body) == 0)
            return "an empty batch";
        size_t i;
        json_t *m;
        json_array_foreach (body, i, m) {
            if (jsonrpc_classify(m) == JSONRPC_INVALID)
                return "a batch element is not a JSON-RPC 2.0 message";
            const char *method = jsonrpc_method(m);
            if (method && strcmp(method, "initialize") == 0)
                return "initialize must not be part of a batch";
        }
        return NULL;
    }
    return jsonrpc_classify(body) == JSONRPC_INVALID ? "not a JSON-RPC 2.0 message" : NULL;
}

/* ---- policy ------------------------------------------------------------------- */

/* 403 with the step-up challenge (MCP authorization, "Runtime Insufficient Scope"). */
static void reply_step_up(struct proxy_call *call, const struct gw_string_list *needed,
                          const char *what)
{
    char *scope = policy_stepup_scope(call->principal, needed);
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb,
                  "Bearer error=\"insufficient_scope\", scope=\"%s\", "
                  "resource_metadata=\"%s/.well-known/oauth-protected-resource%s\", "
                  "error_description=\"this request needs more scope\"",
                  scope, call->proxy->cfg->server.public_url, call->route->path);
    http_set_header(call->req, "WWW-Authenticate", strbuf_str(&sb));
    gw_log(GW_LOG_INFO, "policy", http_request_id(call->req), "step-up requested", "route",
           call->route->name, "subject", call->principal->subject, "scope", scope, NULL);
    char *msg = xasprintf("insufficient scope for %s: ask for \"%s\"", what, scope);
    proxy_reply_rpc_error(call->req, 403, NULL, JSONRPC_GATEWAY_FORBIDDEN, msg);
    free(msg);
    strbuf_release(&sb);
    free(scope);
}

/* The answer the upstream itself gives for a name it does not know, so that a
 * refused tool, prompt or resource looks exactly like a missing one. */
static void reply_unknown(struct proxy_call *call, const json_t *msg, const char *method,
                          const char *name)
{
    int code = JSONRPC_INVALID_PARAMS;
    char *text;
    if (strcmp(method, "tools/call") == 0)
        text = xasprintf("Unknown tool: %s", name);
    else if (strcmp(method, "prompts/get") == 0)
        text = xasprintf("Unknown prompt: %s", name);
    else {
        code = -32002; /* MCP: resource not found */
        text = xasprintf("Resource not found: %s", name);
    }
    proxy_reply_rpc_error(call->req, 200, json_object_get(msg, "id"), code, text);
    free(text);
}

/* Checks every request of BODY; answers and returns true when one is refused. */
static bool refused_by_policy(struct proxy_call *call, const json_t *body)
{
    size_t n = json_is_array(body) ? json_array_size(body) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_is_array(body) ? json_array_get(body, i) : body;
        const char *method = jsonrpc_method(m);
        const char *field = NULL;
        const struct gw_access_rules *rules = policy_rules_for(call->route, method, &field);
        if (rules == NULL || jsonrpc_classify(m) != JSONRPC_REQUEST || strstr(method, "/list"))
            continue;
        const char *name = json_string_value(json_object_get(json_object_get(m, "params"), field));
        if (name == NULL)
            continue; /* malformed params: the upstream answers that itself */
        struct policy_verdict v = policy_check(rules, call->principal, name);
        if (v.decision == POLICY_ALLOW)
            continue;
        char *why = policy_explain(rules, &v, name);
        gw_log(GW_LOG_INFO, "policy", http_request_id(call->req), "request refused", "route",
               call->route->name, "subject", call->principal->subject, "decision", why, NULL);
        free(why);
        if (v.decision == POLICY_DENY_SCOPE)
            reply_step_up(call, v.scopes_needed, name);
        else
            reply_unknown(call, m, method, name);
        return true;
    }
    return false;
}

/* ---- POST/GET/DELETE on the MCP endpoint ----------------------------------- */

static void mcp_post(struct proxy_call *call)
{
    struct http_request *req = call->req;
    const char *accept = http_request_header(req, "Accept");
    if (!accepts(accept, "application/json") || !accepts(accept, "text/event-stream")) {
        proxy_reply_rpc_error(req, 406, NULL, JSONRPC_INVALID_REQUEST,
                              "Accept must list application/json and text/event-stream");
        proxy_call_free(call);
        return;
    }
    const char *ctype = http_request_header(req, "Content-Type");
    if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0) {
        proxy_reply_rpc_error(req, 415, NULL, JSONRPC_INVALID_REQUEST,
                              "Content-Type must be application/json");
        proxy_call_free(call);
        return;
    }
    size_t len;
    const char *text = http_request_body(req, &len);
    json_error_t jerr;
    json_t *body = json_loadb(text, len, 0, &jerr);
    if (body == NULL) {
        proxy_reply_rpc_error(req, 400, NULL, JSONRPC_PARSE_ERROR, "parse error: invalid JSON");
        proxy_call_free(call);
        return;
    }
    if (is_modern(call->protocol_version, body)) {
        proxy_reply_rpc_error(req, 400, NULL, JSONRPC_INVALID_REQUEST,
                              "this endpoint speaks MCP 2025-11-25 and earlier: send "
                              "initialize and use the session it returns");
        json_decref(body);
        proxy_call_free(call);
        return;
    }
    const char *why = check_body(body, call->protocol_version);
    if (why) {
        proxy_reply_rpc_error(req, 400, NULL, JSONRPC_INVALID_REQUEST, why);
        json_decref(body);
        proxy_call_free(call);
        return;
    }
    if (refused_by_policy(call, body)) {
        json_decref(body);
        proxy_call_free(call);
        return;
    }
    if (call->route->identity.meta)
        identity_inject_meta(body, call->principal);
    if (call->route->kind == GW_UPSTREAM_STDIO)
        session_handle_post(call, body);
    else
        http_upstream_handle(call, body);
}

static void on_authed(struct http_request *req, const struct mg_principal *principal, void *arg)
{
    struct route_binding *b = arg;
    struct proxy *p = b->proxy;
    const struct gw_route_config *route = gw_config_route_by_name(p->cfg, b->route_name);
    if (route == NULL) { /* removed by a reload while we authenticated */
        proxy_reply_rpc_error(req, 404, NULL, JSONRPC_INVALID_REQUEST, "no such route");
        return;
    }
    struct proxy_call *call = xcalloc(1, sizeof(*call));
    call->proxy = p;
    call->route = route;
    call->route_name = xstrdup(route->name);
    call->req = req;
    call->principal = mg_principal_dup(principal);
    bool bad_version;
    call->protocol_version = xstrdup(version_of(req, &bad_version));
    if (bad_version) {
        proxy_reply_rpc_error(req, 400, NULL, JSONRPC_INVALID_REQUEST,
                              "unsupported MCP-Protocol-Version");
        proxy_call_free(call);
        return;
    }
    struct policy_verdict rv = policy_route_check(route, call->principal);
    if (rv.decision == POLICY_DENY_SCOPE) {
        reply_step_up(call, rv.scopes_needed, "this server");
        proxy_call_free(call);
        return;
    }
    if (rv.decision == POLICY_DENY) {
        gw_log(GW_LOG_INFO, "policy", http_request_id(req), "route refused", "route", route->name,
               "subject", call->principal->subject, NULL);
        proxy_reply_rpc_error(req, 403, NULL, JSONRPC_GATEWAY_FORBIDDEN,
                              "this server needs a role or group you do not have");
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
        const char *q = http_request_query(req);
        struct http_params params = {0};
        size_t len;
        const char *text = http_request_body(req, &len);
        json_error_t jerr;
        json_t *body = json_loadb(text, len, 0, &jerr);
        const char *sid = NULL;
        if (q && http_params_parse(q, strlen(q), &params) == 0)
            sid = http_params_get(&params, "session_id");
        if (body == NULL) {
            proxy_reply_rpc_error(req, 400, NULL, JSONRPC_PARSE_ERROR, "parse error");
            proxy_call_free(call);
        } else if (refused_by_policy(call, body)) {
            json_decref(body);
            proxy_call_free(call);
        } else {
            if (route->identity.meta)
                identity_inject_meta(body, call->principal);
            if (route->kind == GW_UPSTREAM_STDIO)
                session_handle_legacy_post(call, sid, body);
            else
                legacy_http_post(call, sid, body);
        }
        http_params_clear(&params);
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
    struct mg_principal anon = {.subject = (char *)"anonymous"};
    on_authed(req, &anon, b);
}

static void on_route_request(struct http_request *req, void *arg)
{
    struct route_binding *b = arg;
    struct proxy *p = b->proxy;
    const struct gw_route_config *route = gw_config_route_by_name(p->cfg, b->route_name);
    if (route == NULL) {
        proxy_reply_rpc_error(req, 404, NULL, JSONRPC_INVALID_REQUEST, "no such route");
        return;
    }
    http_request_set_label(req, route->name);
    const char *origin = http_request_header(req, "Origin");
    if (origin && !origin_allowed(p, origin)) {
        proxy_reply_rpc_error(req, 403, NULL, JSONRPC_GATEWAY_FORBIDDEN,
                              "Origin not allowed (server.allowed_origins)");
        return;
    }
    if (route->auth == GW_ROUTE_AUTH_NONE)
        anonymous_auth(req, route, b);
    else
        p->auth(p->auth_arg, req, route, on_authed, b);
}

static struct route_binding *binding_new(struct proxy *p, const char *name, enum binding_kind kind)
{
    struct route_binding *b = xcalloc(1, sizeof(*b));
    b->proxy = p;
    b->route_name = xstrdup(name);
    b->kind = kind;
    b->next = p->bindings;
    p->bindings = b;
    return b;
}

static bool bound(const struct proxy *p, const char *name)
{
    for (const struct route_binding *b = p->bindings; b; b = b->next)
        if (strcmp(b->route_name, name) == 0)
            return true;
    return false;
}

void route_bindings_free(struct proxy *p)
{
    while (p->bindings) {
        struct route_binding *b = p->bindings;
        p->bindings = b->next;
        free(b->route_name);
        free(b);
    }
}

/* Registers the routes not registered yet: at start, and after a reload
 * (removed routes stay registered but answer 404: they are looked up by name). */
int proxy_register_routes(struct proxy *p, struct http_server *http)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->cfg->n_routes; i++) {
        const struct gw_route_config *r = &p->cfg->routes[i];
        if (bound(p, r->name))
            continue;
        struct http_route_options o = {.label = r->name};
        rc = http_route_add(http, r->path, HTTP_POST | HTTP_GET | HTTP_DELETE, on_route_request,
                            binding_new(p, r->name, BINDING_MCP), &o);
        char *sse = xasprintf("%s/sse", r->path);
        char *messages = xasprintf("%s/messages", r->path);
        if (rc == 0)
            rc = http_route_add(http, sse, HTTP_GET, on_route_request,
                                binding_new(p, r->name, BINDING_LEGACY_SSE), &o);
        if (rc == 0)
            rc = http_route_add(http, messages, HTTP_POST, on_route_request,
                                binding_new(p, r->name, BINDING_LEGACY_POST), &o);
        free(sse);
        free(messages);
        if (r->auth == GW_ROUTE_AUTH_NONE)
            gw_log(GW_LOG_WARN, "proxy", NULL,
                   "route has auth: none: anyone who can reach it can use it", "route", r->name,
                   "path", r->path, NULL);
    }
    return rc;
}
