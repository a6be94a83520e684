/*
 * modern: MCP 2026-07-28 ("modern", stateless) requests in front of legacy
 * STDIO servers, on the same route URL that keeps serving legacy clients
 * (research B4; checklist §2).
 *
 * A modern request carries its protocol version and client capabilities in
 * params._meta and names itself in the Mcp-Method / Mcp-Name headers; there
 * is no initialize and no session. It is served by a legacy child that the
 * gateway started and initialized itself, with empty client capabilities
 * (so a compliant legacy server sends no server-to-client requests), kept in
 * a pool per (caller, route): the caller is the same digest that keys
 * legacy sessions (same user, scopes, roles and client), so a child's
 * environment and JWT always describe its caller. `stdio.pool: per-request`
 * starts a child per request instead, for servers that must not share state
 * between requests.
 *
 * Per request: ids and progress tokens are remapped to the gateway's own (a
 * child is shared by the caller's concurrent requests), progress goes out
 * on the request's SSE response, closing the response sends
 * notifications/cancelled to the child, and results become modern ones
 * (resultType, _meta serverInfo, ttlMs/cacheScope on the cacheable methods,
 * -32002 resource-not-found as -32602). server/discover is answered from
 * the child's InitializeResult. A child that crashes fails its requests in
 * flight and is replaced on the next request. What the revision removed
 * (ping, logging/setLevel, resources/subscribe, …) and what cannot be
 * bridged (server-to-client requests: answered -32601 on the child's stdin;
 * subscriptions/listen; MRTR) answers with the revision's errors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/b64url.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/panic.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "http/http.h"
#include "proxy/jsonrpc.h"
#include "proxy/policy.h"
#include "proxy/proxy_int.h"
#include "proxy/stdio.h"

#define MODERN_VERSION "2026-07-28"
#define LEGACY_VERSION "2025-11-25" /* what the gateway asks the child for */
#define ERR_HEADER_MISMATCH (-32020)
#define ERR_UNSUPPORTED_VERSION (-32022)

struct mreq;

/* One pre-initialized legacy child. */
struct mchild {
    struct proxy *proxy; /* borrowed */
    char *route_name;    /* owned */
    char *owner;         /* owned */
    char *grant_id;      /* owned, may be NULL */
    unsigned char caller[CRYPTO_SHA256_LEN];
    bool per_request;
    struct stdio_child *child; /* owned */
    bool ready;                /* initialize answered */
    bool dead;                 /* exited (or stopping): takes no more requests */
    char *init_result;         /* owned: the child's InitializeResult object, JSON text */
    char *server_info;         /* owned: its serverInfo object, JSON text, or NULL */
    uint64_t next_id;
    struct mreq *reqs;        /* borrowed list: requests waiting for or sent to this child */
    struct event *idle_timer; /* owned */
    uint64_t idle_ms;
    struct mchild *next; /* owned list in the proxy */
};

/* One modern request. */
struct mreq {
    struct mchild *c;        /* borrowed */
    struct proxy_call *call; /* owned */
    char *id_json;           /* owned: the client's id */
    uint64_t gw_id;          /* the id the child sees */
    char *token_json;        /* owned: the client's progressToken, or NULL */
    char method[JSONRPC_METHOD_MAX];
    char *text; /* owned: the request as the child gets it (after initialize) */
    size_t len;
    bool sent;
    bool sse;            /* the response switched to SSE (progress came first) */
    bool discover;       /* answered from the InitializeResult */
    struct call_obs obs; /* for the route's metrics */
    struct mreq *next;
};

static void mreq_free(struct mreq *r)
{
    /* Not counted yet: no answer of the child's reached the client. */
    call_obs_end(r->call->proxy, r->call->route_name, &r->obs, NULL, "failed");
    proxy_call_free(r->call);
    free(r->id_json);
    free(r->token_json);
    free(r->text);
    free(r);
}

static void unlink_req(struct mreq *r)
{
    for (struct mreq **pp = &r->c->reqs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            return;
        }
    }
}

static void touch_child(struct mchild *c);

/* ---- answers to the client -------------------------------------------------- */

static void reply_error(struct http_request *req, int status, const char *id_json, int code,
                        const char *message, const char *data_json)
{
    char *text = jsonrpc_error_text(id_json, id_json ? strlen(id_json) : 0, code, message);
    if (data_json) { /* {"code":…,"message":"…"} → add "data" before the error's closing brace */
        size_t n = strlen(text);
        char *with = xasprintf("%.*s,\"data\":%s}}", (int)(n - 2), text, data_json);
        free(text);
        text = with;
    }
    http_reply_json_text(req, status, text);
    free(text);
}

/* Ends R with TEXT, a complete JSON-RPC response, and frees R. */
static void finish(struct mreq *r, const char *text, size_t len)
{
    struct http_request *req = r->call->req;
    http_request_on_close(req, NULL, NULL);
    if (r->sse) {
        http_sse_event(req, NULL, NULL, text, len);
        http_stream_end(req);
    } else {
        http_reply(req, 200, "application/json", text, len);
    }
    struct mchild *c = r->c;
    unlink_req(r);
    mreq_free(r);
    touch_child(c);
}

static void fail(struct mreq *r, int code, const char *message)
{
    char *text = jsonrpc_error_text(r->id_json, strlen(r->id_json), code, message);
    finish(r, text, strlen(text));
    free(text);
}

/* ---- results: legacy to modern --------------------------------------------------- */

static bool cacheable(const char *method)
{
    static const char *const m[] = {
        "server/discover",          "tools/list",    "prompts/list", "resources/list",
        "resources/templates/list", "resources/read"};
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (strcmp(method, m[i]) == 0)
            return true;
    return false;
}

/* The child's response TEXT (inspected as M) as the modern client gets it (owned). */
static char *modern_response(const struct mreq *r, const char *text, size_t len,
                             const struct jsonrpc_msg *m, size_t *out_len)
{
    struct json_edit edits[3];
    size_t n = 0;
    struct strbuf add = STRBUF_INIT;
    edits[n++] =
        (struct json_edit){m->id.off, m->id.off + m->id.len, r->id_json, strlen(r->id_json)};
    if (m->result.kind == JSON_KIND_OBJECT) {
        const char *sep = "";
        if (m->result_type.kind == JSON_KIND_NONE) {
            strbuf_puts(&add, "\"resultType\":\"complete\"");
            sep = ",";
        }
        if (cacheable(r->method)) {
            strbuf_printf(&add, "%s\"ttlMs\":0,\"cacheScope\":\"private\"", sep);
            sep = ",";
        }
        if (m->result_meta.kind == JSON_KIND_NONE && r->c->server_info) {
            strbuf_printf(&add, "%s\"_meta\":{\"io.modelcontextprotocol/serverInfo\":%s}", sep,
                          r->c->server_info);
            sep = ",";
        }
        if (add.len && m->result_members)
            strbuf_puts(&add, ",");
        edits[n++] =
            (struct json_edit){m->result.off + 1, m->result.off + 1, strbuf_str(&add), add.len};
    }
    /* Resource not found is -32602 in this revision (changelog, minor 6). */
    static const char old[] = "-32002", new_code[] = "-32602";
    if (m->error_code.kind == JSON_KIND_NUMBER && m->error_code.len == sizeof(old) - 1 &&
        memcmp(text + m->error_code.off, old, m->error_code.len) == 0)
        edits[n++] = (struct json_edit){m->error_code.off, m->error_code.off + m->error_code.len,
                                        new_code, sizeof(new_code) - 1};
    /* in text order */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && edits[j].start < edits[j - 1].start; j--) {
            struct json_edit t = edits[j];
            edits[j] = edits[j - 1];
            edits[j - 1] = t;
        }
    char *out = jsonrpc_splice(text, len, edits, n, out_len);
    strbuf_release(&add);
    return out;
}

static void answer_discover(struct mreq *r)
{
    struct mchild *c = r->c;
    json_error_t jerr;
    json_t *init = json_loads(c->init_result, 0, &jerr);
    json_t *caps = json_deep_copy(json_object_get(init, "capabilities"));
    if (!json_is_object(caps)) {
        json_decref(caps);
        caps = json_object();
    }
    /* Not bridged: logging (modern has no logging/setLevel), subscriptions (no
     * subscriptions/listen here), list-change notifications (no stream for them). */
    json_object_del(caps, "logging");
    json_t *res = json_object_get(caps, "resources");
    if (json_is_object(res)) {
        json_object_del(res, "subscribe");
        json_object_del(res, "listChanged");
    }
    json_object_del(json_object_get(caps, "tools"), "listChanged");
    json_object_del(json_object_get(caps, "prompts"), "listChanged");
    json_t *result =
        json_pack("{s:s, s:[s], s:o, s:i, s:s}", "resultType", "complete", "supportedVersions",
                  MODERN_VERSION, "capabilities", caps, "ttlMs", 0, "cacheScope", "private");
    json_t *info = json_object_get(init, "serverInfo");
    if (json_is_object(info))
        json_object_set_new(result, "_meta",
                            json_pack("{s:O}", "io.modelcontextprotocol/serverInfo", info));
    json_t *instr = json_object_get(init, "instructions");
    if (json_is_string(instr))
        json_object_set(result, "instructions", instr);
    char *result_text = json_dumps(result, JSON_COMPACT);
    json_decref(result);
    json_decref(init);
    if (result_text == NULL)
        GW_PANIC("out of memory (json_dumps)");
    char *text =
        xasprintf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":%s}", r->id_json, result_text);
    free(result_text);
    finish(r, text, strlen(text));
    free(text);
}

/* ---- the child ------------------------------------------------------------------------ */

static void child_send_line(struct mchild *c, const char *text, size_t len)
{
    if (c->dead)
        return;
    int rc = stdio_child_send(c->child, text, len);
    if (rc < 0 && rc != -ENOBUFS) /* -ENOBUFS: queued anyway beyond the mark (stdio.h) */
        gw_log(GW_LOG_WARN, "proxy", NULL, "a modern-pool child does not take input", "route",
               c->route_name, NULL);
}

static void send_request(struct mreq *r)
{
    r->sent = true;
    child_send_line(r->c, r->text, r->len);
}

static struct mreq *req_by_gw_id(struct mchild *c, const char *key)
{
    for (struct mreq *r = c->reqs; r; r = r->next) {
        char k[32];
        snprintf(k, sizeof(k), "n:%llu", (unsigned long long)r->gw_id);
        if (strcmp(k, key) == 0)
            return r;
    }
    return NULL;
}

static void on_initialized(struct mchild *c, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, 0, &jerr);
    json_t *result = json_object_get(msg, "result");
    if (!json_is_object(result)) {
        gw_log(GW_LOG_WARN, "proxy", NULL, "a modern-pool child refused initialize", "route",
               c->route_name, NULL);
        json_decref(msg);
        c->dead = true;
        stdio_child_stop(c->child);
        return;
    }
    c->init_result = json_dumps(result, JSON_COMPACT);
    json_t *info = json_object_get(result, "serverInfo");
    c->server_info = json_is_object(info) ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(msg);
    c->ready = true;
    static const char initialized[] =
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
    child_send_line(c, initialized, sizeof(initialized) - 1);
    /* The requests that waited for it, in order (the list is newest first). */
    struct mreq *order[64];
    size_t n = 0;
    for (struct mreq *r = c->reqs; r && n < 64; r = r->next)
        order[n++] = r;
    while (n-- > 0) {
        struct mreq *r = order[n];
        if (r->discover)
            answer_discover(r);
        else if (!r->sent)
            send_request(r);
    }
}

/* A progress notification names the gateway's token: the client gets its own back. */
static void on_progress(struct mchild *c, const char *text, size_t len, const struct jsonrpc_msg *m)
{
    char *key = m->progress.kind ? jsonrpc_id_key(text, &m->progress) : NULL;
    struct mreq *r = key ? req_by_gw_id(c, key) : NULL;
    free(key);
    if (r == NULL || r->token_json == NULL)
        return;
    char *out = jsonrpc_replace(text, &len, &m->progress, r->token_json);
    struct http_request *req = r->call->req;
    if (!r->sse) {
        if (http_sse_start(req) == 0) {
            r->sse = true;
            http_sse_keepalive(req, PROXY_KEEPALIVE_MS);
        }
    }
    if (r->sse)
        http_sse_event(req, NULL, NULL, out, len);
    free(out);
}

static void on_child_line(struct stdio_child *sc, const char *line, size_t len, void *arg)
{
    struct mchild *c = arg;
    (void)sc;
    struct jsonrpc_msg m;
    if (jsonrpc_inspect(line, len, &m) < 0 || m.kind == JSONRPC_INVALID) {
        jsonrpc_msg_clear(&m);
        return;
    }
    if (m.kind == JSONRPC_RESPONSE) {
        if (!c->ready && m.id_key && strcmp(m.id_key, "n:0") == 0) {
            on_initialized(c, line, len);
        } else if (m.id_key) {
            struct mreq *r = req_by_gw_id(c, m.id_key);
            if (r) {
                call_obs_end(c->proxy, r->call->route_name, &r->obs, &m, NULL);
                const struct gw_route_config *route =
                    gw_config_route_by_name(c->proxy->cfg, c->route_name);
                size_t flen = len;
                char *filtered =
                    route && policy_list_filtered(route, r->method)
                        ? policy_filter_text(line, len, r->method, route, r->call->principal, &flen)
                        : NULL;
                const char *t = filtered ? filtered : line;
                struct jsonrpc_msg fm;
                if (filtered == NULL || jsonrpc_inspect(t, flen, &fm) < 0)
                    fm = (struct jsonrpc_msg){0};
                size_t out_len;
                char *out = modern_response(r, t, flen, filtered ? &fm : &m, &out_len);
                if (filtered)
                    jsonrpc_msg_clear(&fm);
                finish(r, out, out_len);
                free(out);
                free(filtered);
                if (c->per_request && c->reqs == NULL) {
                    c->dead = true;
                    stdio_child_stop(c->child);
                }
            }
        }
    } else if (m.kind == JSONRPC_REQUEST) {
        /* Server-to-client requests do not exist in the modern revision (MRTR would be
         * needed): the child hears that the method is not available. */
        char *err = jsonrpc_error_text(line + m.id.off, m.id.len, JSONRPC_METHOD_NOT_FOUND,
                                       "not available through this gateway's modern front");
        child_send_line(c, err, strlen(err));
        free(err);
    } else if (jsonrpc_is(&m, "notifications/progress") && m.params.kind == JSON_KIND_OBJECT) {
        on_progress(c, line, len, &m);
    }
    /* Other notifications (logging, list changes) have nowhere to go: dropped. */
    jsonrpc_msg_clear(&m);
}

static void child_unlink_free(struct mchild *c)
{
    for (struct mchild **pp = &c->proxy->modern; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    event_free(c->idle_timer);
    stdio_child_free(c->child);
    free(c->route_name);
    free(c->owner);
    free(c->grant_id);
    free(c->init_result);
    free(c->server_info);
    free(c);
}

static void on_child_exit(struct stdio_child *sc, int status, const char *reason, void *arg)
{
    struct mchild *c = arg;
    (void)sc;
    (void)status;
    c->dead = true;
    char *why = xasprintf("the MCP server stopped (%s); try again", reason ? reason : "exited");
    while (c->reqs)
        fail(c->reqs, JSONRPC_INTERNAL_ERROR, why);
    free(why);
    child_unlink_free(c);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct mchild *c = arg;
    if (c->reqs == NULL && !c->dead) {
        c->dead = true;
        stdio_child_stop(c->child); /* on_child_exit frees it */
    }
}

static void touch_child(struct mchild *c)
{
    if (c->dead || c->reqs)
        return;
    struct timeval tv = {(time_t)(c->idle_ms / 1000), (suseconds_t)(c->idle_ms % 1000) * 1000};
    evtimer_add(c->idle_timer, &tv);
}

static size_t children_of(const struct proxy *p, const char *owner, const char *route)
{
    size_t n = 0;
    for (const struct mchild *c = p->modern; c; c = c->next)
        n += (owner == NULL || strcmp(c->owner, owner) == 0) &&
             (route == NULL || strcmp(c->route_name, route) == 0);
    return n;
}

size_t modern_children_of_route(const struct proxy *p, const char *route)
{
    return children_of(p, NULL, route);
}

static struct mchild *child_new(struct proxy_call *call, const char *owner,
                                const unsigned char caller[CRYPTO_SHA256_LEN], const char **why)
{
    struct proxy *p = call->proxy;
    const struct gw_route_config *r = call->route;
    if (children_of(p, NULL, r->name) + sessions_of_route(p, r->name) >= r->stdio.max_processes) {
        *why = "process limit of this route reached (stdio.max_processes)";
        return NULL;
    }
    if (children_of(p, owner, NULL) >= p->cfg->server.limits.max_sessions_per_user) {
        *why = "per-user limit reached (server.limits.max_sessions_per_user)";
        return NULL;
    }
    struct mchild *c = xcalloc(1, sizeof(*c));
    c->proxy = p;
    c->route_name = xstrdup(r->name);
    c->owner = xstrdup(owner);
    c->grant_id = call->principal->grant_id ? xstrdup(call->principal->grant_id) : NULL;
    memcpy(c->caller, caller, sizeof(c->caller));
    c->per_request = r->stdio.pool == GW_POOL_PER_REQUEST;
    c->next_id = 1;
    c->idle_ms = r->stdio.idle_timeout_ms;
    c->idle_timer = xevtimer_new(p->base, on_idle, c);
    static const struct stdio_child_callbacks cbs = {.on_line = on_child_line,
                                                     .on_exit = on_child_exit};
    char *err = NULL;
    c->child = proxy_spawn_child(p, r, call->principal, r->name, &cbs, c, &err);
    if (c->child == NULL) {
        gw_log(GW_LOG_ERROR, "proxy", http_request_id(call->req), "cannot start the upstream",
               "route", r->name, "error", err, NULL);
        free(err);
        event_free(c->idle_timer);
        free(c->route_name);
        free(c->owner);
        free(c->grant_id);
        free(c);
        *why = "the MCP server of this route could not be started";
        return NULL;
    }
    c->next = p->modern;
    p->modern = c;
    /* The gateway is the child's one client: empty capabilities, so a compliant
     * legacy server sends no server-to-client requests. */
    static const char init[] =
        "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
        "\"" LEGACY_VERSION "\",\"capabilities\":{},\"clientInfo\":{\"name\":\"mcpgate\","
        "\"version\":\"" MCPGATE_VERSION "\"}}}";
    child_send_line(c, init, sizeof(init) - 1);
    gw_log(GW_LOG_INFO, "proxy", NULL, "modern-pool child started", "route", r->name, "subject",
           owner, NULL);
    return c;
}

/* The caller's ready (or starting) child, or a new one. */
static struct mchild *child_for(struct proxy_call *call, const char **why)
{
    char *owner = proxy_call_owner(call);
    unsigned char caller[CRYPTO_SHA256_LEN];
    identity_caller_digest(call->principal, caller);
    struct mchild *found = NULL;
    if (call->route->stdio.pool == GW_POOL_SHARED)
        for (struct mchild *c = call->proxy->modern; c && !found; c = c->next)
            if (!c->dead && !c->per_request && strcmp(c->route_name, call->route->name) == 0 &&
                strcmp(c->owner, owner) == 0 && memcmp(c->caller, caller, sizeof(caller)) == 0)
                found = c;
    if (found == NULL)
        found = child_new(call, owner, caller, why);
    free(owner);
    return found;
}

/* ---- the request ------------------------------------------------------------------------- */

static void on_client_gone(struct http_request *req, void *arg)
{
    struct mreq *r = arg;
    (void)req;
    call_obs_end(r->call->proxy, r->call->route_name, &r->obs, NULL, "cancelled");
    /* Closing the response cancels the request (2026-07-28, cancellation). */
    if (r->sent && !r->c->dead) {
        char *cancel = xasprintf("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                                 "\"params\":{\"requestId\":%llu,\"reason\":\"the client closed "
                                 "the response\"}}",
                                 (unsigned long long)r->gw_id);
        child_send_line(r->c, cancel, strlen(cancel));
        free(cancel);
    }
    struct mchild *c = r->c;
    http_request_on_close(req, NULL, NULL);
    if (r->sse)
        http_stream_end(req);
    else
        http_reply_empty(req, 400); /* nobody reads it: the client left */
    unlink_req(r);
    mreq_free(r);
    touch_child(c);
    if (c->per_request && c->reqs == NULL && !c->dead) {
        c->dead = true;
        stdio_child_stop(c->child);
    }
}

/* Decodes an Mcp-Name header value: "=?base64?…?=" or plain (owned). */
static char *header_value(const char *v)
{
    size_t n = strlen(v);
    if (n >= 11 && strncmp(v, "=?base64?", 9) == 0 && strcmp(v + n - 2, "?=") == 0) {
        size_t out_len;
        unsigned char *d = b64std_decode_new(v + 9, n - 11, &out_len);
        if (d == NULL || memchr(d, '\0', out_len)) {
            free(d);
            return NULL;
        }
        return (char *)d;
    }
    return xstrdup(v);
}

/* The revision's header and _meta rules; NULL or the error already sent. */
static bool valid(struct proxy_call *call, const struct guard_msg *g)
{
    struct http_request *req = call->req;
    const struct jsonrpc_msg *m = &g->info;
    const char *id = m->kind == JSONRPC_REQUEST ? g->orig + m->id.off : NULL;
    char *id_json = id ? xstrndup(id, m->id.len) : NULL;
    const char *hv = http_request_header(req, "MCP-Protocol-Version");
    char *body_version = m->meta_protocol_version.kind == JSON_KIND_STRING
                             ? json_string_dup(g->orig, &m->meta_protocol_version)
                             : NULL;
    bool ok = false;
    if (hv == NULL || body_version == NULL || strcmp(hv, body_version) != 0) {
        reply_error(req, 400, id_json, ERR_HEADER_MISMATCH,
                    "Header mismatch: MCP-Protocol-Version must equal "
                    "_meta[\"io.modelcontextprotocol/protocolVersion\"]",
                    NULL);
    } else if (strcmp(hv, MODERN_VERSION) != 0) {
        json_t *rv = json_string(hv);
        char *req_json = json_dumps(rv, JSON_ENCODE_ANY);
        json_decref(rv);
        char *data = xasprintf("{\"supported\":[\"%s\"],\"requested\":%s}", MODERN_VERSION,
                               req_json ? req_json : "null");
        free(req_json);
        reply_error(req, 400, id_json, ERR_UNSUPPORTED_VERSION, "Unsupported protocol version",
                    data);
        free(data);
    } else if (m->meta_client_capabilities.kind != JSON_KIND_OBJECT) {
        reply_error(req, 400, id_json, JSONRPC_INVALID_PARAMS,
                    "_meta[\"io.modelcontextprotocol/clientCapabilities\"] is required", NULL);
    } else {
        const char *mh = http_request_header(req, "Mcp-Method");
        const struct json_ref *named =
            jsonrpc_is(m, "resources/read")                                 ? &m->uri
            : (jsonrpc_is(m, "tools/call") || jsonrpc_is(m, "prompts/get")) ? &m->name
                                                                            : NULL;
        char *nh = http_request_header(req, "Mcp-Name")
                       ? header_value(http_request_header(req, "Mcp-Name"))
                       : NULL;
        char *nb =
            named && named->kind == JSON_KIND_STRING ? json_string_dup(g->orig, named) : NULL;
        if (mh == NULL || strcmp(mh, m->method) != 0)
            reply_error(req, 400, id_json, ERR_HEADER_MISMATCH,
                        "Header mismatch: Mcp-Method must equal the body's method", NULL);
        else if (named && (nh == NULL || nb == NULL || strcmp(nh, nb) != 0))
            reply_error(req, 400, id_json, ERR_HEADER_MISMATCH,
                        "Header mismatch: Mcp-Name must equal params.name or params.uri", NULL);
        else
            ok = true;
        free(nh);
        free(nb);
    }
    free(body_version);
    free(id_json);
    return ok;
}

static bool removed_method(const char *method)
{
    static const char *const removed[] = {"initialize",
                                          "ping",
                                          "logging/setLevel",
                                          "resources/subscribe",
                                          "resources/unsubscribe",
                                          "subscriptions/listen"};
    for (size_t i = 0; i < sizeof(removed) / sizeof(removed[0]); i++)
        if (strcmp(method, removed[i]) == 0)
            return true;
    return false;
}

/* The request as the child gets it: the gateway's id and progress token (owned). */
static char *child_text(const struct guard_msg *g, uint64_t gw_id, size_t *out_len)
{
    const struct jsonrpc_msg *m = &g->info;
    /* The guard's text may differ from the client's (the principal in _meta): inspect it. */
    struct jsonrpc_msg t;
    if (jsonrpc_inspect(g->text, g->len, &t) < 0)
        return NULL;
    (void)m;
    char id[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)gw_id);
    struct json_edit e[2];
    size_t n = 0;
    e[n++] = (struct json_edit){t.id.off, t.id.off + t.id.len, id, strlen(id)};
    if (t.progress_token.kind)
        e[n++] = (struct json_edit){t.progress_token.off,
                                    t.progress_token.off + t.progress_token.len, id, strlen(id)};
    if (n == 2 && e[1].start < e[0].start) {
        struct json_edit x = e[0];
        e[0] = e[1];
        e[1] = x;
    }
    char *out = jsonrpc_splice(g->text, g->len, e, n, out_len);
    jsonrpc_msg_clear(&t);
    return out;
}

void modern_handle(struct proxy_call *call, const struct guard_body *body)
{
    struct http_request *req = call->req;
    if (body->batch || body->n != 1) {
        proxy_reply_rpc_error(req, 400, JSONRPC_INVALID_REQUEST,
                              "a 2026-07-28 POST carries one request");
        proxy_call_free(call);
        return;
    }
    const struct guard_msg *g = &body->msgs[0];
    const struct jsonrpc_msg *m = &g->info;
    if (m->kind != JSONRPC_REQUEST) {
        /* No client-to-server notification is defined over HTTP in this revision. */
        http_reply_empty(req, m->kind == JSONRPC_NOTIFICATION ? 202 : 400);
        proxy_call_free(call);
        return;
    }
    if (!valid(call, g)) {
        proxy_call_free(call);
        return;
    }
    char *id_json = xstrndup(g->orig + m->id.off, m->id.len);
    if (removed_method(m->method)) {
        reply_error(req, 404, id_json, JSONRPC_METHOD_NOT_FOUND,
                    "Method not found in protocol version " MODERN_VERSION, NULL);
        free(id_json);
        proxy_call_free(call);
        return;
    }
    const char *why = NULL;
    struct mchild *c = child_for(call, &why);
    if (c == NULL) {
        http_set_header(req, "Retry-After", "5");
        reply_error(req, 503, id_json, JSONRPC_GATEWAY_LIMIT, why, NULL);
        free(id_json);
        proxy_call_free(call);
        return;
    }
    evtimer_del(c->idle_timer);
    struct mreq *r = xcalloc(1, sizeof(*r));
    r->c = c;
    r->call = call;
    r->id_json = id_json;
    r->gw_id = c->next_id++;
    snprintf(r->method, sizeof(r->method), "%s", m->method);
    r->token_json = m->progress_token.kind
                        ? xstrndup(g->orig + m->progress_token.off, m->progress_token.len)
                        : NULL;
    r->discover = jsonrpc_is(m, "server/discover");
    r->next = c->reqs;
    c->reqs = r;
    http_request_on_close(req, on_client_gone, r);
    if (r->discover) {
        if (c->ready)
            answer_discover(r);
        return;
    }
    call_obs_start(&r->obs, m, g->orig);
    r->text = child_text(g, r->gw_id, &r->len);
    if (r->text == NULL) {
        fail(r, JSONRPC_INTERNAL_ERROR, "cannot forward the request");
        return;
    }
    if (c->ready)
        send_request(r);
}

void modern_end_grant(struct proxy *p, const char *grant_id)
{
    for (struct mchild *c = p->modern; c; c = c->next)
        if (!c->dead && c->grant_id && strcmp(c->grant_id, grant_id) == 0) {
            c->dead = true;
            stdio_child_stop(c->child); /* its requests fail when it exits */
        }
}

void modern_stop_all(struct proxy *p)
{
    for (struct mchild *c = p->modern; c; c = c->next)
        if (!c->dead) {
            c->dead = true;
            stdio_child_stop(c->child);
        }
}

void modern_free_all(struct proxy *p)
{
    while (p->modern) {
        struct mchild *c = p->modern;
        while (c->reqs)
            fail(c->reqs, JSONRPC_INTERNAL_ERROR, "the gateway is shutting down");
        child_unlink_free(c);
    }
}
