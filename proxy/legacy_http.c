/*
 * legacy_http: the 2024-11-05 HTTP+SSE transport in front of an HTTP
 * upstream that speaks Streamable HTTP. The old client holds one SSE stream
 * (GET <route>/sse) and POSTs each message to <route>/messages?session_id=…;
 * the gateway plays a Streamable HTTP client for it: every message becomes a
 * POST upstream, and whatever the upstream answers (JSON, or SSE events) goes
 * back to the client's stream as "message" events. After the client's
 * notifications/initialized, a GET stream to the upstream carries
 * server-initiated messages. Closing the client's stream ends the upstream
 * session (DELETE).
 *
 * Nothing is dropped for a slow client (F17): when its stream is over the
 * high-water mark every upstream transfer of the bridge pauses until it
 * drains, and a client that reads nothing for server.limits.request_timeout
 * loses its stream (and so the bridge), as a 2024-11-05 session ends with
 * its stream. Bounded (F19): bridges per caller (max_sessions_per_user) and
 * in all (max_sessions), messages in flight per bridge
 * (max_pending_per_session).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/httpc.h"
#include "common/panic.h"
#include "common/rand.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "http/http.h"
#include "common/log.h"
#include "proxy/jsonrpc.h"
#include "proxy/policy.h"
#include "proxy/proxy_int.h"
#include "proxy/sse.h"

struct bridge {
    char id[PROXY_SESSION_ID_MAX];
    struct proxy *proxy;           /* borrowed */
    char *route_name;              /* owned */
    struct mg_principal *who;      /* owned */
    char *owner;                   /* owned: proxy_call_owner() of the caller that opened it */
    struct http_request *sse;      /* borrowed: the client's stream, NULL once gone */
    char *upstream_session;        /* owned: the upstream's Mcp-Session-Id */
    char *protocol_version;        /* owned: negotiated */
    struct httpc_call *get;        /* the upstream GET stream, or NULL */
    struct sse_parser *get_parser; /* owned */
    size_t posts_in_flight;
    bool closing;
    bool full;            /* the client's stream is over the high-water mark: upstreams paused */
    struct event *stall;  /* owned: armed while full */
    struct relay *relays; /* owned: messages being forwarded */
    struct bridge *next;  /* owned list in the proxy */
};

/* One forwarded message. */
struct relay {
    struct bridge *b; /* borrowed */
    struct httpc_call *up;
    bool initialize;
    bool sse;
    struct sse_parser *parser; /* owned */
    struct strbuf json;        /* JSON answers, read whole (bounded) */
    bool too_big;              /* the JSON answer passed 4 x max_body */
    char *id_json;             /* owned: the request's id, for an error if the upstream fails */
    char *list_method;         /* owned: a list request whose answer is filtered, or NULL */
    struct relay *next;        /* in b->relays */
};

/* A list answer filtered for the bridge's caller (owned text, *OUT_LEN), or NULL to send as is. */
static char *filter_for(struct bridge *b, const char *method, const char *text, size_t len,
                        size_t *out_len)
{
    const struct gw_route_config *r = gw_config_route_by_name(b->proxy->cfg, b->route_name);
    if (method == NULL || r == NULL)
        return NULL;
    return policy_filter_text(text, len, method, r, b->who, out_len);
}
/* ---- to the client ------------------------------------------------------------- */

static void emit(struct bridge *b, const char *data, size_t len)
{
    if (b->sse == NULL || len == 0)
        return;
    char *text = xstrndup(data, len);
    char *wire = sse_format(NULL, "message", text);
    free(text);
    if (http_stream_push(b->sse, wire, strlen(wire)) == HTTP_STREAM_FULL && !b->full) {
        b->full = true; /* the upstream callbacks pause from now on */
        uint64_t ms = b->proxy->cfg->server.limits.request_timeout_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        event_add(b->stall, &tv);
    }
    free(wire);
}

/* Upstream data callbacks answer this: pause while the client's stream is full. */
static int flow(const struct bridge *b)
{
    return b->full ? HTTPC_PAUSE : HTTPC_CONTINUE;
}

/* The client's stream has room again (or is gone): every paused upstream goes on. */
static void resume_all(struct bridge *b)
{
    b->full = false;
    event_del(b->stall);
    for (struct relay *rl = b->relays; rl; rl = rl->next)
        if (rl->up && httpc_call_paused(rl->up))
            httpc_resume(rl->up);
    if (b->get && httpc_call_paused(b->get))
        httpc_resume(b->get);
}

static void on_client_drained(struct http_request *req, void *arg)
{
    struct bridge *b = arg;
    (void)req;
    if (b->full)
        resume_all(b);
}

static void on_event(const struct sse_event *ev, void *arg)
{
    struct bridge *b = arg;
    if (ev->comment == NULL && (ev->event == NULL || strcmp(ev->event, "message") == 0))
        emit(b, ev->data, strlen(ev->data));
}

/* ---- the upstream request headers ------------------------------------------------ */

/* What every upstream request of the bridge carries: MCP's headers, then the caller's identity. */
static size_t bridge_headers(struct bridge *b, struct httpc_header *h, size_t cap,
                             struct identity_headers *ih)
{
    size_t n = 0;
    h[n++] = (struct httpc_header){"Accept", "application/json, text/event-stream"};
    h[n++] = (struct httpc_header){"Content-Type", "application/json"};
    if (b->upstream_session)
        h[n++] = (struct httpc_header){"Mcp-Session-Id", b->upstream_session};
    if (b->protocol_version)
        h[n++] = (struct httpc_header){"MCP-Protocol-Version", b->protocol_version};
    const struct gw_route_config *r = gw_config_route_by_name(b->proxy->cfg, b->route_name);
    memset(ih, 0, sizeof(*ih));
    if (r)
        identity_headers_build(ih, b->proxy, r, b->who);
    GW_ASSERT(n + ih->n <= cap);
    memcpy(h + n, ih->h, ih->n * sizeof(*h));
    return n + ih->n;
}

static void bridge_free(struct bridge *b);

/* ---- the upstream GET stream (server-initiated messages) --------------------------- */

static int on_get_data(struct httpc_call *up, const char *data, size_t len, void *arg)
{
    struct bridge *b = arg;
    (void)up;
    if (sse_parser_feed(b->get_parser, data, len) < 0)
        gw_log(GW_LOG_WARN, "proxy", b->id, "an upstream event was too large", NULL);
    return flow(b);
}

static void on_get_done(struct httpc_call *up, const char *error, void *arg)
{
    struct bridge *b = arg;
    (void)up;
    (void)error;
    b->get = NULL; /* 405 or a closed stream: the server has nothing to push */
}

static void open_get_stream(struct bridge *b, const struct gw_route_config *r)
{
    struct httpc_header h[4 + IDENTITY_MAX_HEADERS];
    struct identity_headers ih;
    size_t n = bridge_headers(b, h, sizeof(h) / sizeof(h[0]), &ih);
    h[0].value = "text/event-stream";
    struct httpc_request req = {.method = "GET",
                                .url = r->http.url,
                                .headers = h,
                                .n_headers = n,
                                .connect_timeout_ms = r->http.connect_timeout_ms};
    static const struct httpc_stream_callbacks cbs = {.on_data = on_get_data,
                                                      .on_done = on_get_done};
    b->get_parser = sse_parser_new(b->proxy->cfg->server.limits.max_body_bytes * 4, on_event, b);
    b->get = httpc_stream(b->proxy->httpc, &req, &cbs, b);
    identity_headers_clear(&ih);
}

/* ---- forwarding one message --------------------------------------------------------- */

static void on_relay_event(const struct sse_event *ev, void *arg)
{
    struct relay *rl = arg;
    if (ev->comment || (ev->event && strcmp(ev->event, "message") != 0))
        return;
    size_t len = strlen(ev->data);
    char *f = filter_for(rl->b, rl->list_method, ev->data, len, &len);
    emit(rl->b, f ? f : ev->data, len);
    free(f);
}

static void relay_free(struct relay *rl)
{
    free(rl->list_method);
    for (struct relay **pp = &rl->b->relays; *pp; pp = &(*pp)->next) {
        if (*pp == rl) {
            *pp = rl->next;
            break;
        }
    }
    sse_parser_free(rl->parser);
    strbuf_release(&rl->json);
    free(rl->id_json);
    free(rl);
}

static void on_relay_headers(struct httpc_call *up, long status, void *arg)
{
    struct relay *rl = arg;
    struct bridge *b = rl->b;
    const char *ctype = httpc_call_header(up, "Content-Type");
    rl->sse = ctype && strncasecmp(ctype, "text/event-stream", 17) == 0;
    if (rl->sse)
        rl->parser =
            sse_parser_new(b->proxy->cfg->server.limits.max_body_bytes * 4, on_relay_event, rl);
    const char *sid = httpc_call_header(up, "Mcp-Session-Id");
    if (rl->initialize && sid && status < 300 && b->upstream_session == NULL)
        b->upstream_session = xstrdup(sid);
}

static int on_relay_data(struct httpc_call *up, const char *data, size_t len, void *arg)
{
    struct relay *rl = arg;
    (void)up;
    if (rl->sse)
        sse_parser_feed(rl->parser, data, len);
    else if (rl->json.len + len <= rl->b->proxy->cfg->server.limits.max_body_bytes * 4)
        strbuf_append(&rl->json, data, len);
    else
        rl->too_big = true;
    return flow(rl->b);
}

static void on_relay_done(struct httpc_call *up, const char *error, void *arg)
{
    struct relay *rl = arg;
    struct bridge *b = rl->b;
    (void)up;
    if (error || rl->too_big) {
        if (rl->id_json) {
            char *msg = error ? xasprintf("upstream unreachable: %s", error)
                              : xstrdup("the upstream's answer exceeds 4 x server.limits.max_body");
            char *text = jsonrpc_error_text(rl->id_json, strlen(rl->id_json),
                                            JSONRPC_GATEWAY_UPSTREAM_ERROR, msg);
            emit(b, text, strlen(text));
            free(text);
            free(msg);
        }
    } else if (!rl->sse && rl->json.len) {
        struct jsonrpc_msg m;
        if (jsonrpc_inspect(rl->json.buf, rl->json.len, &m) == 0 && m.kind != JSONRPC_INVALID) {
            if (rl->initialize) {
                json_error_t jerr;
                json_t *msg = json_loadb(rl->json.buf, rl->json.len, 0, &jerr);
                const char *v = json_string_value(
                    json_object_get(json_object_get(msg, "result"), "protocolVersion"));
                if (v && b->protocol_version == NULL)
                    b->protocol_version = xstrdup(v);
                json_decref(msg);
            }
            size_t len = rl->json.len;
            char *f = filter_for(b, rl->list_method, rl->json.buf, len, &len);
            emit(b, f ? f : rl->json.buf, len);
            free(f);
        }
        jsonrpc_msg_clear(&m);
    }
    b->posts_in_flight--;
    relay_free(rl);
    if (b->closing && b->posts_in_flight == 0)
        bridge_free(b);
}

static void forward(struct bridge *b, const struct gw_route_config *r, const struct guard_msg *g)
{
    struct relay *rl = xcalloc(1, sizeof(*rl));
    rl->b = b;
    const struct jsonrpc_msg *m = &g->info;
    bool request = m->kind == JSONRPC_REQUEST;
    rl->initialize = request && jsonrpc_is(m, "initialize");
    if (request && policy_list_filtered(r, m->method))
        rl->list_method = xstrdup(m->method);
    if (request)
        rl->id_json = xstrndup(g->orig + m->id.off, m->id.len);
    struct httpc_header h[4 + IDENTITY_MAX_HEADERS];
    struct identity_headers ih;
    size_t n = bridge_headers(b, h, sizeof(h) / sizeof(h[0]), &ih);
    struct httpc_request req = {.method = "POST",
                                .url = r->http.url,
                                .headers = h,
                                .n_headers = n,
                                .body = g->text, /* httpc copies it */
                                .body_len = g->len,
                                .connect_timeout_ms = r->http.connect_timeout_ms,
                                .timeout_ms = r->http.timeout_ms};
    static const struct httpc_stream_callbacks cbs = {
        .on_headers = on_relay_headers, .on_data = on_relay_data, .on_done = on_relay_done};
    b->posts_in_flight++;
    rl->next = b->relays;
    b->relays = rl;
    rl->up = httpc_stream(b->proxy->httpc, &req, &cbs, rl);
    identity_headers_clear(&ih);
    if (jsonrpc_is(m, "notifications/initialized") && b->get == NULL)
        open_get_stream(b, r);
}

/* ---- lifetime --------------------------------------------------------------------- */

static void bridge_unlink(struct bridge *b)
{
    for (struct bridge **pp = &b->proxy->bridges; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            return;
        }
    }
}

static void bridge_free(struct bridge *b)
{
    bridge_unlink(b);
    while (b->relays) {
        httpc_cancel(b->relays->up);
        relay_free(b->relays);
    }
    httpc_cancel(b->get);
    sse_parser_free(b->get_parser);
    event_free(b->stall);
    free(b->route_name);
    free(b->owner);
    mg_principal_free(b->who);
    free(b->upstream_session);
    free(b->protocol_version);
    free(b);
}

static void on_client_closed(struct http_request *req, void *arg)
{
    struct bridge *b = arg;
    http_stream_end(req);
    b->sse = NULL;
    b->closing = true;
    resume_all(b); /* messages in flight finish upstream; their answers go nowhere */
    const struct gw_route_config *r = gw_config_route_by_name(b->proxy->cfg, b->route_name);
    if (r && b->upstream_session) { /* end the upstream session too */
        struct httpc_header h[4 + IDENTITY_MAX_HEADERS];
        struct identity_headers ih;
        size_t n = bridge_headers(b, h, sizeof(h) / sizeof(h[0]), &ih);
        struct httpc_request req_del = {.method = "DELETE",
                                        .url = r->http.url,
                                        .headers = h,
                                        .n_headers = n,
                                        .timeout_ms = 5000};
        static const struct httpc_stream_callbacks none = {0};
        httpc_stream(b->proxy->httpc, &req_del, &none, NULL);
        identity_headers_clear(&ih);
    }
    if (b->posts_in_flight == 0)
        bridge_free(b);
}

/* The client read nothing for request_timeout while its stream was full. */
static void on_stall(evutil_socket_t fd, short what, void *arg)
{
    struct bridge *b = arg;
    (void)fd;
    (void)what;
    gw_log(GW_LOG_WARN, "proxy", b->id,
           "legacy client read nothing for server.limits.request_timeout: its stream ends", "route",
           b->route_name, NULL);
    struct http_request *req = b->sse;
    http_request_on_close(req, NULL, NULL);
    on_client_closed(req, b);
}

/* Why a new bridge for OWNER is refused (a static text), or NULL. */
static const char *bridge_refusal(const struct proxy *p, const char *owner)
{
    const struct gw_limits *lim = &p->cfg->server.limits;
    size_t all = 0, mine = 0;
    for (const struct bridge *it = p->bridges; it; it = it->next) {
        if (it->closing)
            continue;
        all++;
        mine += strcmp(it->owner, owner) == 0;
    }
    if (mine >= lim->max_sessions_per_user)
        return "too many 2024-11-05 streams for this user (server.limits.max_sessions_per_user)";
    if (all >= lim->max_sessions)
        return "too many 2024-11-05 streams (server.limits.max_sessions)";
    return NULL;
}

void legacy_http_open(struct proxy_call *call, const char *messages_path)
{
    char *owner = proxy_call_owner(call);
    const char *refused = bridge_refusal(call->proxy, owner);
    if (refused) {
        free(owner);
        http_set_header(call->req, "Retry-After", "5");
        proxy_reply_rpc_error(call->req, 503, JSONRPC_GATEWAY_LIMIT, refused);
        proxy_call_free(call);
        return;
    }
    struct bridge *b = xcalloc(1, sizeof(*b));
    proxy_session_id_new(call->proxy, b->id);
    b->proxy = call->proxy;
    b->route_name = xstrdup(call->route->name);
    b->who = mg_principal_ref(call->principal);
    b->owner = owner;
    b->stall = xevtimer_new(call->proxy->base, on_stall, b);
    if (http_sse_start(call->req) < 0) {
        http_stream_end(call->req);
        bridge_free(b);
        proxy_call_free(call);
        return;
    }
    b->sse = call->req;
    b->next = b->proxy->bridges;
    b->proxy->bridges = b;
    proxy_legacy_stream_open(call->req, messages_path, b->id, on_client_closed, b);
    http_stream_on_drain(call->req, on_client_drained, b);
    proxy_call_free(call);
}

void legacy_http_post(struct proxy_call *call, const char *session_id,
                      const struct guard_body *body, const struct guard_refusal *refusal)
{
    struct bridge *b = NULL;
    for (struct bridge *it = call->proxy->bridges; it && session_id; it = it->next)
        if (strcmp(it->id, session_id) == 0 && !it->closing)
            b = it;
    /* Another user's bridge is answered like an unknown one. */
    char *owner = proxy_call_owner(call);
    bool mine = b && strcmp(b->owner, owner) == 0 && strcmp(b->route_name, call->route->name) == 0;
    free(owner);
    if (!mine) {
        proxy_reply_rpc_error(call->req, 404, JSONRPC_INVALID_REQUEST,
                              "unknown session: open the SSE stream first");
    } else if (refusal == NULL &&
               b->posts_in_flight >= call->proxy->cfg->server.limits.max_pending_per_session) {
        /* Said on the stream too: that is where the client waits for the answer. */
        const struct jsonrpc_msg *m = &body->msgs[0].info;
        static const char why[] =
            "too many requests in flight in this session (server.limits.max_pending_per_session)";
        if (m->kind == JSONRPC_REQUEST) {
            char *text = jsonrpc_error_text(body->msgs[0].orig + m->id.off, m->id.len,
                                            JSONRPC_GATEWAY_LIMIT, why);
            emit(b, text, strlen(text));
            free(text);
        }
        http_set_header(call->req, "Retry-After", "1");
        proxy_reply_rpc_error(call->req, 503, JSONRPC_GATEWAY_LIMIT, why);
    } else if (refusal) {
        /* The client waits for the answer on its stream, not on this POST. */
        emit(b, refusal->body, strlen(refusal->body));
        http_reply_empty(call->req, 202);
    } else {
        forward(b, call->route, &body->msgs[0]);
        http_reply_empty(call->req, 202);
    }
    proxy_call_free(call);
}

size_t legacy_http_bridges(const struct proxy *p)
{
    size_t n = 0;
    for (const struct bridge *b = p->bridges; b; b = b->next)
        n++;
    return n;
}

size_t legacy_http_streams_of_route(const struct proxy *p, const char *route)
{
    size_t n = 0;
    for (const struct bridge *b = p->bridges; b; b = b->next)
        n += b->sse != NULL && strcmp(b->route_name, route) == 0;
    return n;
}

void legacy_http_drain(struct proxy *p)
{
    /* on_client_closed may free the bridge, so look for the next open one from the head. */
    for (;;) {
        struct bridge *b = p->bridges;
        while (b && b->sse == NULL)
            b = b->next;
        if (b == NULL)
            return;
        http_request_on_close(b->sse, NULL, NULL);
        on_client_closed(b->sse, b);
    }
}

void legacy_http_free_all(struct proxy *p)
{
    while (p->bridges) {
        struct bridge *b = p->bridges;
        if (b->sse) {
            http_request_on_close(b->sse, NULL, NULL);
            http_stream_end(b->sse);
            b->sse = NULL;
        }
        bridge_free(b);
    }
}
