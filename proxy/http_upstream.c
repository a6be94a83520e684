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
#include <sys/queue.h> /* TAILQ: the binding lists */

#include <event2/event.h>

#include "common/crypto.h"
#include "common/hash.h"
#include "common/httpc.h"
#include "common/panic.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "common/xevent.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"
#include "proxy/jsonrpc.h"
#include "proxy/policy.h"
#include "proxy/sse.h"
#include "proxy/proxy_int.h"
#include "store/store.h"

/* ---- session ownership ------------------------------------------------------ */

/*
 * Each upstream Mcp-Session-Id is bound to the (route, principal) that
 * initialized it. The bindings live in a hash table keyed by route and id,
 * with two lists through them: every binding by last use (the global cap,
 * server.limits.max_upstream_sessions, drops the least recently used) and
 * each owner's own (an owner at server.limits.max_sessions_per_user loses
 * its own least recently used, never someone else's: F12). A binding unused
 * for the route's http.session_idle is forgotten when next looked at, and
 * a successful initialize that returns an id already bound re-binds it to
 * the new caller: the upstream has started a new session under that id.
 */
struct upstream_session {
    char *key;       /* owned: "<route>\n<id>" */
    struct owner *o; /* borrowed: the owner's record, freed with its last binding */
    uint64_t used_ms;
    uint64_t checked_ms;                /* when the store last confirmed it (BINDING_TRUST_MS) */
    struct upstream_session *chain;     /* hash bucket */
    TAILQ_ENTRY(upstream_session) all;  /* every binding, least recently used first */
    TAILQ_ENTRY(upstream_session) mine; /* the owner's, likewise */
};
TAILQ_HEAD(binding_list, upstream_session);

struct owner {
    char *subject; /* owned */
    size_t n;
    struct binding_list list; /* this owner's bindings */
    struct owner *chain;
};

struct http_binding_sessions {
    struct upstream_session **buckets; /* owned array of chains */
    size_t n_buckets, len;
    struct binding_list lru;
    struct owner **owners; /* owned array of chains, OWNER_BUCKETS */
};

#define OWNER_BUCKETS 1024u
/*
 * The store holds every binding ("upbind:<sha256(route \\n id)>" = the owner,
 * for http.session_idle), so any instance can serve any session; the table
 * here is a cache of it, trusted for BINDING_TRUST_MS before the store is
 * asked again (a re-bind by initialize on another instance is seen within that).
 */
#define BINDING_TRUST_MS 10000u
#define KEY_UPSTREAM_BINDING "upbind:"
/* A new initialize re-bound "<route>\n<id>": every instance drops its cached copy at once. */
#define CHANNEL_REBOUND "upbind-rebound"

static struct http_binding_sessions *bindings(struct proxy *p)
{
    if (p->http_sessions == NULL) {
        struct http_binding_sessions *b = xcalloc(1, sizeof(*b));
        b->n_buckets = 1024;
        b->buckets = xcalloc(b->n_buckets, sizeof(*b->buckets));
        b->owners = xcalloc(OWNER_BUCKETS, sizeof(*b->owners));
        TAILQ_INIT(&b->lru);
        p->http_sessions = b;
    }
    return p->http_sessions;
}

static char *binding_key(const char *route, const char *id)
{
    return xasprintf("%s\n%s", route, id);
}

/* The store's key of the binding whose table key is BKEY ("<route>\n<id>"). */
static char *store_key_of(const char *bkey)
{
    char hex[65];
    crypto_sha256_hex(bkey, hex);
    return xasprintf(KEY_UPSTREAM_BINDING "%s", hex);
}

static char *store_key(const char *route, const char *id)
{
    char *k = binding_key(route, id);
    char *sk = store_key_of(k);
    free(k);
    return sk;
}

static struct upstream_session **bucket_slot(struct http_binding_sessions *b, const char *key)
{
    struct upstream_session **pp = &b->buckets[hash_str(key) % b->n_buckets];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->chain;
    return pp;
}

static struct owner *owner_get(struct http_binding_sessions *b, const char *subject, bool create)
{
    struct owner **pp = &b->owners[hash_str(subject) % OWNER_BUCKETS];
    while (*pp && strcmp((*pp)->subject, subject) != 0)
        pp = &(*pp)->chain;
    if (*pp == NULL && create) {
        *pp = xcalloc(1, sizeof(**pp));
        (*pp)->subject = xstrdup(subject);
        TAILQ_INIT(&(*pp)->list);
    }
    return *pp;
}

static void lists_unlink(struct http_binding_sessions *b, struct upstream_session *u)
{
    TAILQ_REMOVE(&b->lru, u, all);
    TAILQ_REMOVE(&u->o->list, u, mine);
}

static void lists_push(struct http_binding_sessions *b, struct upstream_session *u)
{
    TAILQ_INSERT_TAIL(&b->lru, u, all);
    TAILQ_INSERT_TAIL(&u->o->list, u, mine);
}

static void binding_drop(struct http_binding_sessions *b, struct upstream_session *u)
{
    struct upstream_session **pp = bucket_slot(b, u->key);
    GW_ASSERT(*pp == u);
    *pp = u->chain;
    lists_unlink(b, u);
    struct owner *o = u->o;
    if (--o->n == 0) {
        struct owner **op = &b->owners[hash_str(o->subject) % OWNER_BUCKETS];
        while (*op != o)
            op = &(*op)->chain;
        *op = o->chain;
        free(o->subject);
        free(o);
    }
    free(u->key);
    free(u);
    b->len--;
}

static void table_grow(struct http_binding_sessions *b)
{
    size_t n = b->n_buckets * 2;
    struct upstream_session **nb = xcalloc(n, sizeof(*nb));
    for (size_t i = 0; i < b->n_buckets; i++)
        for (struct upstream_session *u = b->buckets[i], *next; u; u = next) {
            next = u->chain;
            size_t h = hash_str(u->key) % n;
            u->chain = nb[h];
            nb[h] = u;
        }
    free(b->buckets);
    b->buckets = nb;
    b->n_buckets = n;
}

/* The binding of ID on ROUTE, refreshed, or NULL (unknown or idle too long). */
static struct upstream_session *find_binding(struct proxy *p, const struct gw_route_config *route,
                                             const char *id)
{
    struct http_binding_sessions *b = bindings(p);
    char *key = binding_key(route->name, id);
    struct upstream_session *u = *bucket_slot(b, key);
    free(key);
    if (u == NULL)
        return NULL;
    uint64_t now = time_mono_ms();
    if (now - u->used_ms > route->http.session_idle_ms) {
        binding_drop(b, u);
        return NULL;
    }
    if (p->store && now - u->checked_ms > BINDING_TRUST_MS)
        return NULL; /* ask the store again: it may have been re-bound elsewhere */
    u->used_ms = now;
    lists_unlink(b, u);
    lists_push(b, u);
    return u;
}

static void forget_local(struct proxy *p, const char *route, const char *id)
{
    struct http_binding_sessions *b = bindings(p);
    char *key = binding_key(route, id);
    struct upstream_session *u = *bucket_slot(b, key);
    free(key);
    if (u)
        binding_drop(b, u);
}

static void forget_binding(struct proxy *p, const char *route, const char *id)
{
    forget_local(p, route, id);
    if (p->store) {
        char *sk = store_key(route, id);
        store_del_detached(p->store, sk, "upstream session binding: end");
        free(sk);
    }
}

/* A binding the caps push out. EVICT_STORED: it goes from the store too (a new
 * initialize made room, F12); otherwise only this instance's cache forgets it. */
static void drop_for_room(struct proxy *p, struct upstream_session *u, bool evict_stored)
{
    if (evict_stored && p->store) {
        char *sk = store_key_of(u->key);
        store_del_detached(p->store, sk, "upstream session binding: evicted");
        free(sk);
    }
    binding_drop(bindings(p), u);
}

static void bind_local(struct proxy *p, const char *id, const char *owner, const char *route,
                       bool evict_stored)
{
    struct http_binding_sessions *b = bindings(p);
    const struct gw_limits *lim = &p->cfg->server.limits;
    forget_local(p, route, id); /* a new initialize re-binds the id */
    struct owner *o = owner_get(b, owner, true);
    if (o->n >= lim->max_sessions_per_user)
        drop_for_room(p, TAILQ_FIRST(&o->list), evict_stored); /* frees O with its last */
    if (b->len >= lim->max_upstream_sessions && !TAILQ_EMPTY(&b->lru))
        drop_for_room(p, TAILQ_FIRST(&b->lru), evict_stored);
    o = owner_get(b, owner, true); /* the drop above may have freed it */
    if (b->len >= b->n_buckets * 2)
        table_grow(b);
    struct upstream_session *u = xcalloc(1, sizeof(*u));
    u->key = binding_key(route, id);
    u->o = o;
    u->used_ms = u->checked_ms = time_mono_ms();
    struct upstream_session **slot = bucket_slot(b, u->key);
    *slot = u;
    o->n++;
    lists_push(b, u);
    b->len++;
}

/*
 * The store confirmed that OWNER still holds ID: the cached binding, when it
 * is there and OWNER's, is trusted again in place. Re-making it would cost
 * two allocations per session every BINDING_TRUST_MS, and made while long
 * streams are open they outlive those streams' buffers, pinning heap pages
 * that malloc_trim cannot give back.
 */
static void confirm_local(struct proxy *p, const char *id, const char *owner, const char *route)
{
    struct http_binding_sessions *b = bindings(p);
    char *key = binding_key(route, id);
    struct upstream_session *u = *bucket_slot(b, key);
    free(key);
    if (u == NULL || strcmp(u->o->subject, owner) != 0) {
        bind_local(p, id, owner, route, false);
        return;
    }
    u->used_ms = u->checked_ms = time_mono_ms();
    lists_unlink(b, u);
    lists_push(b, u);
}

static void bind_session(struct proxy *p, const char *id, const char *owner,
                         const struct gw_route_config *route)
{
    bind_local(p, id, owner, route->name, true);
    if (p->store) {
        char *sk = store_key(route->name, id);
        store_put_detached(p->store, sk, owner, strlen(owner), route->http.session_idle_ms,
                           "upstream session binding");
        free(sk);
        char *bkey = binding_key(route->name, id);
        store_publish_detached(p->store, CHANNEL_REBOUND, bkey, strlen(bkey),
                               "upstream session binding: re-bound");
        free(bkey);
    }
}

static void on_rebound(const char *channel, const char *msg, size_t len, void *arg)
{
    struct proxy *p = arg;
    (void)channel;
    char *bkey = xstrndup(msg, len);
    struct http_binding_sessions *b = bindings(p);
    struct upstream_session *u = *bucket_slot(b, bkey);
    /* Ours too when we made it (it comes back to us): the store is asked next time. */
    if (u)
        u->checked_ms = 0;
    free(bkey);
}

int http_upstream_subscribe(struct proxy *p)
{
    return p->store ? store_subscribe(p->store, CHANNEL_REBOUND, on_rebound, p) : 0;
}

size_t http_upstream_bindings(const struct proxy *p)
{
    return p->http_sessions ? p->http_sessions->len : 0;
}

static void bindings_free(struct proxy *p)
{
    struct http_binding_sessions *b = p->http_sessions;
    if (b == NULL)
        return;
    while (!TAILQ_EMPTY(&b->lru))
        binding_drop(b, TAILQ_FIRST(&b->lru));
    free(b->buckets);
    free(b->owners);
    free(b);
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
    bool is_get; /* the long-lived server stream */
    /* http.timeout bounds the wait for the answer's head, and a JSON answer
     * whole; once an event stream has begun only http.idle_timeout applies
     * (F11: a tools/call streaming progress for minutes must not be cut). */
    struct event *deadline; /* owned */
    long status;            /* FILTER_JSON: the upstream's status, answered at the end */
    char *ctype;            /* owned, FILTER_JSON */
    char *body;             /* owned: the request body, kept while the binding is looked up */
    size_t body_len;
    bool lookup_pending; /* the session's binding is being read from the store */
    bool dead;           /* answered and unlinked while the lookup was pending: free it then */
    struct call_obs obs; /* a single request: for the route's metrics */
    struct exchange *prev, *next; /* in proxy->exchanges */
};

size_t http_upstream_streams_of_route(const struct proxy *p, const char *route)
{
    size_t n = 0;
    for (const struct exchange *x = p->exchanges; x; x = x->next)
        n += x->started && x->filter != FILTER_JSON && strcmp(x->call->route_name, route) == 0;
    return n;
}

static void exchange_unlink(struct exchange *x)
{
    struct proxy *p = x->call->proxy;
    if (x->prev)
        x->prev->next = x->next;
    else if (p->exchanges == x)
        p->exchanges = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void exchange_free(struct exchange *x)
{
    if (!x->dead)
        exchange_unlink(x);
    call_obs_end_http(x->call->proxy, x->call->route_name, &x->obs,
                      0); /* no answer: the client left */
    proxy_call_free(x->call);
    if (x->deadline)
        event_free(x->deadline);
    free(x->ctype);
    free(x->body);
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
    if (x->lookup_pending) { /* the store's answer frees it */
        http_reply_empty(x->call->req, 502);
        exchange_unlink(x);
        x->dead = true;
        return;
    }
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
    call_obs_end_http(call->proxy, call->route_name, &x->obs, status);
    const char *sid = httpc_call_header(up, "Mcp-Session-Id");
    const char *asked = http_request_header(call->req, "Mcp-Session-Id");
    if (sid && x->initialize && status >= 200 && status < 300) {
        char *owner = proxy_call_owner(call);
        const struct gw_route_config *route = proxy_call_route(call);
        if (route)
            bind_session(call->proxy, sid, owner, route);
        free(owner);
    }
    if (asked && (status == 404 ||
                  (http_request_method(call->req) == HTTP_DELETE && status >= 200 && status < 300)))
        forget_binding(call->proxy, call->route_name, asked);
    httpc_call_foreach_header(up, copy_response_header, call->req);
    const char *ctype = httpc_call_header(up, "Content-Type");
    bool sse = ctype && strncasecmp(ctype, "text/event-stream", 17) == 0;
    if (sse)
        http_set_header(call->req, "X-Accel-Buffering", "no");
    if (sse && x->deadline)
        event_del(x->deadline);
    if (x->list_method && status >= 200 && status < 300) {
        x->filter = sse ? FILTER_SSE : FILTER_JSON;
        if (sse)
            x->sse =
                sse_parser_new(call->proxy->cfg->server.limits.max_body_bytes * 4, on_sse_event, x);
    }
    if (x->filter == FILTER_JSON) {
        /* Answered whole at the end, so a cut answer can still be a 502. */
        x->status = status;
        x->ctype = xstrdup(ctype ? ctype : "application/json");
        return;
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
    if (error)
        call_obs_end_http(x->call->proxy, x->call->route_name, &x->obs, -1);
    http_request_on_close(req, NULL, NULL);
    if (x->filter == FILTER_JSON && error == NULL) {
        if (x->too_big) {
            gw_log(GW_LOG_WARN, "proxy", http_request_id(req),
                   "a list answer exceeded 4 x server.limits.max_body", "route",
                   x->call->route_name, NULL);
            proxy_reply_rpc_error(req, 502, JSONRPC_GATEWAY_UPSTREAM_ERROR,
                                  "the upstream's list answer exceeds 4 x server.limits.max_body");
        } else {
            size_t flen = x->json.len;
            char *f = filtered_text(x, x->json.buf, x->json.len, &flen);
            http_reply(req, (int)x->status, x->ctype, f ? f : x->json.buf, flen);
            free(f);
        }
    } else if (x->started) {
        if (error)
            gw_log(GW_LOG_WARN, "proxy", http_request_id(req), "upstream stream ended early",
                   "route", x->call->route_name, "error", error, NULL);
        if (x->too_big)
            gw_log(GW_LOG_WARN, "proxy", http_request_id(req),
                   "a list event exceeded 4 x server.limits.max_body and was cut", "route",
                   x->call->route_name, NULL);
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

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct exchange *x = arg;
    struct http_request *req = x->call->req;
    (void)fd;
    (void)what;
    httpc_cancel(x->up);
    x->up = NULL;
    http_request_on_close(req, NULL, NULL);
    gw_log(GW_LOG_WARN, "proxy", http_request_id(req), "upstream too slow: http.timeout passed",
           "route", x->call->route_name, NULL);
    if (x->started)
        http_stream_end(req);
    else
        proxy_reply_rpc_error(req, 504, JSONRPC_GATEWAY_UPSTREAM_ERROR,
                              "upstream too slow: no answer within http.timeout");
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

static void exchange_start(struct exchange *x);

static void refuse_unknown(struct exchange *x)
{
    exchange_unlink(x);
    http_request_on_close(x->call->req, NULL, NULL);
    proxy_reply_rpc_error(x->call->req, 404, JSONRPC_INVALID_REQUEST,
                          "unknown or expired session: initialize again");
    exchange_free(x);
}

/* The store's binding of the session this request names (another instance may have made it). */
static void on_binding(const struct store_result *res, void *arg)
{
    struct exchange *x = arg;
    x->lookup_pending = false;
    if (x->dead) {
        exchange_free(x);
        return;
    }
    struct proxy_call *call = x->call;
    const struct gw_route_config *route = proxy_call_route(call);
    const char *sid = http_request_header(call->req, "Mcp-Session-Id");
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        exchange_unlink(x);
        http_request_on_close(call->req, NULL, NULL);
        http_set_header(call->req, "Retry-After", "1");
        proxy_reply_rpc_error(call->req, 503, JSONRPC_GATEWAY_UPSTREAM_ERROR,
                              "the session store is unavailable");
        exchange_free(x);
        return;
    }
    char *owner = proxy_call_owner(call);
    bool mine = route && sid && res->status == STORE_OK && res->value_len == strlen(owner) &&
                memcmp(res->value, owner, res->value_len) == 0;
    if (mine)
        confirm_local(call->proxy, sid, owner, route->name);
    free(owner);
    if (mine)
        exchange_start(x);
    else
        refuse_unknown(x);
}

void http_upstream_handle(struct proxy_call *call, const struct guard_body *body)
{
    struct http_request *req = call->req;
    struct exchange *x = xcalloc(1, sizeof(*x));
    x->call = call;
    const struct jsonrpc_msg *first = body && !body->batch ? &body->msgs[0].info : NULL;
    x->initialize = first && first->kind == JSONRPC_REQUEST && jsonrpc_is(first, "initialize");
    /* Parse the answer only when a rule could remove something from it. */
    if (first && first->kind == JSONRPC_REQUEST && policy_list_filtered(call->route, first->method))
        x->list_method = xstrdup(first->method);
    if (body) {
        x->body = xstrndup(body->text, body->len);
        x->body_len = body->len;
    }
    if (first && first->kind == JSONRPC_REQUEST)
        call_obs_start(&x->obs, first, body->msgs[0].orig);
    x->next = call->proxy->exchanges;
    if (x->next)
        x->next->prev = x;
    call->proxy->exchanges = x;
    http_request_on_close(req, on_client_gone, x);
    const char *sid = http_request_header(req, "Mcp-Session-Id");
    if (sid == NULL) {
        exchange_start(x);
        return;
    }
    struct upstream_session *u = find_binding(call->proxy, call->route, sid);
    if (u) {
        char *owner = proxy_call_owner(call);
        bool mine = strcmp(u->o->subject, owner) == 0;
        free(owner);
        if (mine)
            exchange_start(x);
        else
            refuse_unknown(x);
        return;
    }
    if (call->proxy->store == NULL) {
        refuse_unknown(x);
        return;
    }
    char *sk = store_key(call->route->name, sid);
    x->lookup_pending = true;
    int rc = store_get(call->proxy->store, sk, on_binding, x);
    free(sk);
    if (rc < 0) {
        x->lookup_pending = false;
        exchange_unlink(x);
        http_request_on_close(req, NULL, NULL);
        proxy_reply_rpc_error(req, 503, JSONRPC_GATEWAY_UPSTREAM_ERROR,
                              "the session store is unavailable");
        exchange_free(x);
    }
}

static void exchange_start(struct exchange *x)
{
    struct proxy_call *call = x->call;
    struct http_request *req = call->req;
    const struct gw_route_config *route = proxy_call_route(call);
    if (route == NULL) { /* removed by a reload while the binding was looked up */
        refuse_unknown(x);
        return;
    }
    call->route = route;
    struct httpc_header headers[8 + IDENTITY_MAX_HEADERS];
    struct identity_headers ih;
    size_t n = build_headers(call, headers, sizeof(headers) / sizeof(headers[0]), &ih);
    const struct gw_http_upstream *hu = &route->http;
    enum http_method m = http_request_method(req);
    struct httpc_request r = {
        .method = m == HTTP_POST     ? "POST"
                  : m == HTTP_DELETE ? "DELETE"
                                     : "GET",
        .url = hu->url,
        .headers = headers,
        .n_headers = n,
        .body = x->body, /* httpc copies it */
        .body_len = x->body_len,
        .connect_timeout_ms = hu->connect_timeout_ms,
        /* No total deadline in libcurl: x->deadline bounds what it must. A GET
         * is the long-lived server stream: quiet for as long as it likes. */
        .timeout_ms = 0,
        .low_speed_timeout_ms = m == HTTP_GET ? 0 : hu->idle_timeout_ms,
    };
    static const struct httpc_stream_callbacks cbs = {
        .on_headers = on_up_headers,
        .on_data = on_up_data,
        .on_done = on_up_done,
    };
    x->is_get = m == HTTP_GET;
    if (!x->is_get && hu->timeout_ms > 0) {
        x->deadline = xevtimer_new(call->proxy->base, on_deadline, x);
        struct timeval tv = {(time_t)(hu->timeout_ms / 1000),
                             (suseconds_t)(hu->timeout_ms % 1000) * 1000};
        event_add(x->deadline, &tv);
    }
    x->up = httpc_stream(call->proxy->httpc, &r, &cbs, x);
    identity_headers_clear(&ih);
}

/* Ends one exchange from our side: the upstream transfer, then the client's response. */
static void exchange_abort(struct exchange *x)
{
    struct http_request *req = x->call->req;
    if (x->lookup_pending) { /* answered now; the store's answer frees it */
        http_request_on_close(req, NULL, NULL);
        proxy_reply_rpc_error(req, 503, JSONRPC_GATEWAY_UPSTREAM_ERROR,
                              "the gateway is shutting down");
        exchange_unlink(x);
        x->dead = true;
        return;
    }
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
