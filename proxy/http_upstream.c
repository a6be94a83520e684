/*
 * http_upstream: routes whose MCP server speaks Streamable HTTP itself.
 *
 * The request is forwarded with only the headers MCP needs (an allowlist: so
 * Authorization, Cookie, hop-by-hop headers and any client-sent X-MCP-*
 * identity header never reach the upstream) plus the caller's identity, and
 * the response comes back streamed as it arrives: SSE passes through as the
 * upstream writes it, never buffered whole. A slow client pauses the
 * upstream transfer (backpressure) until the client's buffer drains.
 *
 * The upstream's Mcp-Session-Id is bound to the principal that created it:
 * another subject presenting it gets 404, exactly like an unknown id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <errno.h>

#include "common/httpc.h"
#include "common/panic.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"
#include "proxy/jsonrpc.h"
#include "proxy/policy.h"
#include "proxy/sse.h"
#include "proxy/proxy_int.h"
#include "store/store.h"

#define BINDINGS_MAX 100000

/* ---- session ownership ------------------------------------------------------ */

struct upstream_session {
    char *id;    /* owned: the upstream's Mcp-Session-Id */
    char *owner; /* owned */
    char *route; /* owned */
    struct upstream_session *next;
};

struct http_binding_sessions {
    struct upstream_session *list; /* owned, newest first */
    size_t len;
};

static struct http_binding_sessions *bindings(struct proxy *p)
{
    if (p->http_sessions == NULL)
        p->http_sessions = xcalloc(1, sizeof(*p->http_sessions));
    return p->http_sessions;
}

static struct upstream_session **find_binding(struct proxy *p, const char *id)
{
    struct upstream_session **pp = &bindings(p)->list;
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void binding_free(struct upstream_session *u)
{
    free(u->id);
    free(u->owner);
    free(u->route);
    free(u);
}

static void forget_binding(struct proxy *p, const char *id)
{
    struct upstream_session **pp = find_binding(p, id);
    if (*pp) {
        struct upstream_session *u = *pp;
        *pp = u->next;
        binding_free(u);
        bindings(p)->len--;
    }
}

static void bind_session(struct proxy *p, const char *id, const char *owner, const char *route)
{
    if (*find_binding(p, id))
        return;
    struct http_binding_sessions *b = bindings(p);
    if (b->len >= BINDINGS_MAX) { /* drop the oldest (the list's tail) */
        struct upstream_session **pp = &b->list;
        while ((*pp)->next)
            pp = &(*pp)->next;
        binding_free(*pp);
        *pp = NULL;
        b->len--;
    }
    struct upstream_session *u = xcalloc(1, sizeof(*u));
    u->id = xstrdup(id);
    u->owner = xstrdup(owner);
    u->route = xstrdup(route);
    u->next = b->list;
    b->list = u;
    b->len++;
}

static void bindings_free(struct proxy *p)
{
    if (p->http_sessions == NULL)
        return;
    while (p->http_sessions->list) {
        struct upstream_session *u = p->http_sessions->list;
        p->http_sessions->list = u->next;
        binding_free(u);
    }
    free(p->http_sessions);
    p->http_sessions = NULL;
}

/* ---- one forwarded exchange ----------------------------------------------------- */

enum filter_mode {
    FILTER_NONE = 0, /* bytes pass through as they arrive */
    FILTER_JSON,     /* a list result in one JSON body: read it whole, filter, send */
    FILTER_SSE,      /* a list result in an event stream: parse events, filter, re-emit */
};

struct exchange {
    struct proxy_call *call; /* owned */
    struct httpc_call *up;   /* borrowed from httpc until it ends */
    bool started;            /* the response head went to the client */
    bool initialize;         /* the body was an initialize request */
    char *list_method;       /* owned: tools/list, prompts/list or resources/list, else NULL */
    enum filter_mode filter;
    struct strbuf json;     /* FILTER_JSON: the body so far */
    struct sse_parser *sse; /* owned, FILTER_SSE */
    bool too_big;
    bool is_get;                  /* the long-lived server stream */
    struct exchange *prev, *next; /* in proxy->exchanges */
};

static void exchange_free(struct exchange *x)
{
    struct proxy *p = x->call->proxy;
    if (x->prev)
        x->prev->next = x->next;
    else if (p->exchanges == x)
        p->exchanges = x->next;
    if (x->next)
        x->next->prev = x->prev;
    proxy_call_free(x->call);
    free(x->list_method);
    strbuf_release(&x->json);
    sse_parser_free(x->sse);
    free(x);
}

/* Filters one JSON-RPC message text of a list answer for the caller (owned result, *OUT_LEN),
 * or NULL to send it as it is. */
static char *filtered_text(struct exchange *x, const char *text, size_t len, size_t *out_len)
{
    const struct gw_route_config *route = proxy_call_route(x->call);
    if (route == NULL)
        return NULL;
    return policy_filter_text(text, len, x->list_method, route, x->call->principal, out_len);
}

static void on_sse_event(const struct sse_event *ev, void *arg)
{
    struct exchange *x = arg;
    char *wire;
    if (ev->comment) {
        wire = xasprintf(":%s\n\n", ev->comment);
    } else {
        size_t flen;
        char *f = filtered_text(x, ev->data, strlen(ev->data), &flen);
        wire = sse_format(ev->id, ev->event, f ? f : ev->data);
        free(f);
    }
    http_stream_push(x->call->req, wire, strlen(wire));
    free(wire);
}

static void on_client_gone(struct http_request *req, void *arg)
{
    struct exchange *x = arg;
    (void)req;
    /* The client left: end the upstream transfer too (its own resumability,
     * if any, lets the client pick up with Last-Event-ID). */
    httpc_cancel(x->up);
    x->up = NULL;
    if (x->started)
        http_stream_end(x->call->req);
    else
        http_reply_empty(x->call->req, 502);
    exchange_free(x);
}

static void on_drain(struct http_request *req, void *arg)
{
    struct exchange *x = arg;
    (void)req;
    if (x->up && httpc_call_paused(x->up))
        httpc_resume(x->up);
}

static bool copy_response_header(const char *name, const char *value, void *arg)
{
    struct http_request *req = arg;
    static const char *const passed[] = {"Mcp-Session-Id", "Cache-Control", "MCP-Protocol-Version",
                                         "Retry-After", "WWW-Authenticate"};
    for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++)
        if (strcasecmp(name, passed[i]) == 0)
            http_set_header(req, passed[i], value);
    return true;
}

static void on_up_headers(struct httpc_call *up, long status, void *arg)
{
    struct exchange *x = arg;
    struct proxy_call *call = x->call;
    const char *sid = httpc_call_header(up, "Mcp-Session-Id");
    if (sid && x->initialize && status >= 200 && status < 300)
        bind_session(call->proxy, sid, call->principal->subject, call->route_name);
    if (status == 404 && http_request_header(call->req, "Mcp-Session-Id"))
        forget_binding(call->proxy, http_request_header(call->req, "Mcp-Session-Id"));
    if (http_request_method(call->req) == HTTP_DELETE && status >= 200 && status < 300)
        forget_binding(call->proxy, http_request_header(call->req, "Mcp-Session-Id"));
    httpc_call_foreach_header(up, copy_response_header, call->req);
    const char *ctype = httpc_call_header(up, "Content-Type");
    bool sse = ctype && strncasecmp(ctype, "text/event-stream", 17) == 0;
    if (sse)
        http_set_header(call->req, "X-Accel-Buffering", "no");
    if (x->list_method && status >= 200 && status < 300) {
        x->filter = sse ? FILTER_SSE : FILTER_JSON;
        if (sse)
            x->sse =
                sse_parser_new(call->proxy->cfg->server.limits.max_body_bytes * 4, on_sse_event, x);
    }
    http_stream_start(call->req, (int)status, ctype);
    http_stream_on_drain(call->req, on_drain, x);
    x->started = true;
}

static int on_up_data(struct httpc_call *up, const char *data, size_t len, void *arg)
{
    struct exchange *x = arg;
    (void)up;
    if (x->filter == FILTER_JSON) {
        /* Bounded: a list answer larger than 4 × max_body is cut off (502). */
        if (x->json.len + len > x->call->proxy->cfg->server.limits.max_body_bytes * 4)
            x->too_big = true;
        else
            strbuf_append(&x->json, data, len);
        return HTTPC_CONTINUE;
    }
    if (x->filter == FILTER_SSE) {
        if (sse_parser_feed(x->sse, data, len) < 0)
            x->too_big = true;
        return HTTPC_CONTINUE;
    }
    /* Over the client's high-water mark: pause the upstream until it drains. */
    return http_stream_push(x->call->req, data, len) == HTTP_STREAM_FULL ? HTTPC_PAUSE
                                                                         : HTTPC_CONTINUE;
}

static void on_up_done(struct httpc_call *up, const char *error, void *arg)
{
    struct exchange *x = arg;
    struct http_request *req = x->call->req;
    (void)up;
    x->up = NULL;
    http_request_on_close(req, NULL, NULL);
    if (x->started) {
        if (error)
            gw_log(GW_LOG_WARN, "proxy", http_request_id(req), "upstream stream ended early",
                   "route", x->call->route_name, "error", error, NULL);
        if (x->too_big)
            gw_log(GW_LOG_WARN, "proxy", http_request_id(req),
                   "a list answer exceeded 4 x server.limits.max_body and was cut", "route",
                   x->call->route_name, NULL);
        if (x->filter == FILTER_JSON && !x->too_big && x->json.len) {
            size_t flen = x->json.len;
            char *f = filtered_text(x, x->json.buf, x->json.len, &flen);
            http_stream_push(req, f ? f : x->json.buf, flen);
            free(f);
        }
        http_stream_end(req);
    } else {
        bool slow = error && strstr(error, "timed out");
        char *msg = xasprintf("upstream %s: %s", slow ? "too slow" : "unreachable",
                              error ? error : "no response");
        gw_log(GW_LOG_WARN, "proxy", http_request_id(req), "upstream failed", "route",
               x->call->route_name, "error", error, NULL);
        proxy_reply_rpc_error(req, slow ? 504 : 502, JSONRPC_GATEWAY_UPSTREAM_ERROR, msg);
        free(msg);
    }
    exchange_free(x);
}

/* The request headers the upstream gets: MCP's own, then the caller's identity. */
static size_t build_headers(struct proxy_call *call, struct httpc_header *h, size_t cap,
                            struct identity_headers *ih)
{
    static const char *const forwarded[] = {"Accept",         "Content-Type",
                                            "Mcp-Session-Id", "MCP-Protocol-Version",
                                            "Last-Event-ID",  "User-Agent"};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
        const char *v = http_request_header(call->req, forwarded[i]);
        if (v)
            h[n++] = (struct httpc_header){forwarded[i], v};
    }
    h[n++] = (struct httpc_header){"X-Request-Id", http_request_id(call->req)};
    identity_headers_build(ih, call->proxy, call->route, call->principal);
    GW_ASSERT(n + ih->n <= cap);
    memcpy(h + n, ih->h, ih->n * sizeof(*h));
    return n + ih->n;
}

void http_upstream_handle(struct proxy_call *call, const struct guard_body *body)
{
    struct http_request *req = call->req;
    const char *sid = http_request_header(req, "Mcp-Session-Id");
    if (sid) {
        struct upstream_session *u = *find_binding(call->proxy, sid);
        if (u == NULL || strcmp(u->owner, call->principal->subject) != 0 ||
            strcmp(u->route, call->route->name) != 0) {
            proxy_reply_rpc_error(req, 404, JSONRPC_INVALID_REQUEST,
                                  "unknown or expired session: initialize again");
            proxy_call_free(call);
            return;
        }
    }
    struct exchange *x = xcalloc(1, sizeof(*x));
    x->call = call;
    const struct jsonrpc_msg *first = body && !body->batch ? &body->msgs[0].info : NULL;
    x->initialize = first && first->kind == JSONRPC_REQUEST && jsonrpc_is(first, "initialize");
    /* Parse the answer only when a rule could remove something from it. */
    if (first && first->kind == JSONRPC_REQUEST && policy_list_filtered(call->route, first->method))
        x->list_method = xstrdup(first->method);

    struct httpc_header headers[8 + IDENTITY_MAX_HEADERS];
    struct identity_headers ih;
    size_t n = build_headers(call, headers, sizeof(headers) / sizeof(headers[0]), &ih);
    const struct gw_http_upstream *hu = &call->route->http;
    enum http_method m = http_request_method(req);
    struct httpc_request r = {
        .method = m == HTTP_POST     ? "POST"
                  : m == HTTP_DELETE ? "DELETE"
                                     : "GET",
        .url = hu->url,
        .headers = headers,
        .n_headers = n,
        .body = body ? body->text : NULL, /* httpc copies it */
        .body_len = body ? body->len : 0,
        .connect_timeout_ms = hu->connect_timeout_ms,
        /* A GET is the long-lived server stream: no total deadline for it. */
        .timeout_ms = m == HTTP_GET ? 0 : hu->timeout_ms,
        .low_speed_timeout_ms = m == HTTP_GET ? 0 : hu->idle_timeout_ms,
    };
    static const struct httpc_stream_callbacks cbs = {
        .on_headers = on_up_headers,
        .on_data = on_up_data,
        .on_done = on_up_done,
    };
    x->is_get = m == HTTP_GET;
    x->next = call->proxy->exchanges;
    if (x->next)
        x->next->prev = x;
    call->proxy->exchanges = x;
    http_request_on_close(req, on_client_gone, x);
    x->up = httpc_stream(call->proxy->httpc, &r, &cbs, x);
    identity_headers_clear(&ih);
}

/* Ends one exchange from our side: the upstream transfer, then the client's response. */
static void exchange_abort(struct exchange *x)
{
    struct http_request *req = x->call->req;
    httpc_cancel(x->up);
    x->up = NULL;
    http_request_on_close(req, NULL, NULL);
    if (x->started)
        http_stream_end(req);
    else
        proxy_reply_rpc_error(req, 503, JSONRPC_GATEWAY_UPSTREAM_ERROR,
                              "the gateway is shutting down");
    exchange_free(x);
}

void http_upstream_drain(struct proxy *p)
{
    struct exchange *x = p->exchanges;
    while (x) {
        struct exchange *next = x->next;
        if (x->is_get)
            exchange_abort(x);
        x = next;
    }
}

void http_upstream_free_all(struct proxy *p)
{
    while (p->exchanges)
        exchange_abort(p->exchanges);
    bindings_free(p);
}
