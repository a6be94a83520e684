/*
 * session: MCP sessions in front of STDIO servers (DESIGN §7).
 *
 * One child per session, so one user per process. A session owns its child,
 * its streams and a bounded ring of the SSE events it sent:
 *
 * - Each POST that carries requests gets a stream "p<n>". When the child's
 *   first message for it is the response, the POST is answered as
 *   application/json; when notifications or server requests come first, it
 *   switches to text/event-stream (a priming event first, MCP 2025-11-25)
 *   and streams until the last response.
 * - The GET stream "g" carries what relates to no open POST. A new GET takes
 *   the stream over (the old HTTP response ends), so reconnects never fail.
 * - Every SSE event has the id "<stream>_<seq>" (unique in the session) and
 *   is kept in the ring; GET with Last-Event-ID replays what followed on
 *   that stream, then continues it live if it is still open.
 * - A client that disconnects does not cancel (legacy revisions): the
 *   request runs on and its events wait in the ring.
 *
 * Routing of child messages: responses by JSON-RPC id to the stream of their
 * request; progress notifications by progressToken; anything else to the one
 * open POST stream, else the GET stream (the STDIO transport does not say
 * which request a log line or a server request relates to).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/crypto.h"
#include "common/hash.h"
#include "common/rand.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"
#include "common/panic.h"
#include "common/xevent.h"
#include "proxy/cluster.h"
#include "proxy/jsonrpc.h"
#include "proxy/policy.h"
#include "proxy/proxy_int.h"
#include "proxy/stdio.h"
#include "store/store.h"

struct ring_event {
    char stream[24];
    uint64_t seq;
    char *data; /* owned JSON text ("" for a priming event) */
    size_t len;
};

/* Input the child's stdin did not take yet (it reads slower than clients write). */
struct input {
    char *text; /* owned */
    size_t len;
    uint64_t queued_ms;
    struct input *next;
};

struct proxy_stream;

/*
 * A request the child has not answered. The child sees the client's id and
 * progress token unless another request in flight already uses them: then it
 * sees one of the gateway's (add_pending), and the client gets its own
 * back in the answer and the progress notifications (route_message).
 */
struct pending {
    char *id_key;        /* owned: jsonrpc_id_key of the id the child sees */
    char *id_json;       /* owned: the id as the client wrote it, for answers and errors */
    char *client_key;    /* owned: the client's id key when the child sees another; else NULL */
    char *progress_key;  /* owned, may be NULL: the key of the progress token the child sees */
    char *progress_json; /* owned: the client's token when the child sees another; else NULL */
    char method[JSONRPC_METHOD_MAX];
    struct mg_principal *principal; /* owned: who asked (list results are filtered for them) */
    struct proxy_stream *stream;    /* borrowed */
    struct call_obs obs;            /* for the route's metrics */
    struct pending *next;           /* owned list */
};

struct proxy_stream {
    struct proxy_session *sess; /* borrowed */
    char key[24];
    struct http_request *req; /* borrowed; NULL when no client is attached */
    bool json_ok;             /* nothing sent yet: a JSON answer is still possible */
    bool sse;                 /* an SSE response is running on req */
    bool batch;
    char **batch_out; /* owned: responses held for a JSON batch answer, n_batch_out of them */
    size_t n_batch_out;
    size_t pending;
    uint64_t delivered_seq;    /* last seq written to an attached client (GET stream) */
    struct proxy_stream *next; /* owned list */
};

struct proxy_session {
    char id[PROXY_SESSION_ID_MAX];
    struct proxy *proxy; /* borrowed */
    char *route_name;    /* owned */
    char *owner;         /* owned: the subject, or "anonymous:<address>" (auth: none) */
    char *client_id;     /* owned, may be NULL */
    char *grant_id;      /* owned, NULL on auth: none routes */
    /* Who the child was told its caller is (identity.c): a request whose
     * principal has less than that gets a session of its own (review F10). */
    struct mg_principal *caller; /* owned */
    uint64_t last_used_ms;
    uint64_t started_s;        /* wall clock, for the registry */
    uint64_t record_ms;        /* when the registry record was last written */
    char *protocol_version;    /* owned: negotiated, from InitializeResult */
    struct stdio_child *child; /* owned */
    bool legacy_sse;           /* 2024-11-05 transport: everything goes to "g" */
    bool ended;
    uint64_t next_seq;
    unsigned next_stream;
    uint64_t next_gateway_id;     /* for ids and tokens the child must not see twice */
    struct pending *pending;      /* owned list, newest first */
    struct proxy_stream *streams; /* owned list (POST streams) */
    struct proxy_stream get;      /* the GET stream, always present */
    struct ring_event *ring;      /* owned, capacity ring_cap */
    size_t ring_cap, ring_start, ring_len;
    uint64_t ring_bytes; /* of the events in the ring (server.limits.event_ring_bytes) */
    size_t n_pending;    /* server.limits.max_pending_per_session */
    struct input *in_head, *in_tail; /* owned queue: stdin was full */
    uint64_t in_bytes;
    uint64_t write_timeout_ms;
    struct event *write_timer; /* owned: the child reads none of the queued input */
    /* A warm child (warm.c) was initialized by the gateway: the client's initialize is
     * answered from this InitializeResult (owned) and its initialized notification dropped. */
    char *warm_init;
    bool drop_initialized;
    struct event *idle_timer; /* owned */
    uint64_t idle_timeout_ms;
    struct proxy_session *next; /* bucket chain, or the ended list */
};

/* ---- the session table ---------------------------------------------------- */

static unsigned bucket_of(const char *id)
{
    return hash_str(id) % PROXY_SESSION_BUCKETS;
}

static struct proxy_session *session_lookup(struct proxy *p, const char *id)
{
    for (struct proxy_session *s = p->sessions[bucket_of(id)]; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void table_remove(struct proxy *p, struct proxy_session *s)
{
    struct proxy_session **pp = &p->sessions[bucket_of(s->id)];
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = s->next;
        p->n_sessions--;
    }
    s->next = p->ended;
    p->ended = s;
}

static size_t sessions_of(const struct proxy *p, const char *owner, const char *route)
{
    size_t n = 0;
    for (size_t b = 0; b < PROXY_SESSION_BUCKETS; b++)
        for (const struct proxy_session *s = p->sessions[b]; s; s = s->next)
            if ((owner == NULL || strcmp(s->owner, owner) == 0) &&
                (route == NULL || strcmp(s->route_name, route) == 0))
                n++;
    return n;
}

/* Children of a route that still run: live sessions, and ended ones whose
 * child is still in its stop sequence (a DELETE must not make room early). */
size_t route_children(const struct proxy *p, const char *route)
{
    size_t n = sessions_of_route(p, route) + modern_children_of_route(p, route) +
               warm_children_of_route(p, route);
    return n;
}

void sessions_count(const struct proxy *p, const char *route, size_t *sessions, size_t *streams)
{
    *sessions = *streams = 0;
    for (size_t b = 0; b < PROXY_SESSION_BUCKETS; b++) {
        for (const struct proxy_session *s = p->sessions[b]; s; s = s->next) {
            if (strcmp(s->route_name, route) != 0)
                continue;
            (*sessions)++;
            *streams += s->get.req != NULL;
            for (const struct proxy_stream *st = s->streams; st; st = st->next)
                *streams += st->req != NULL && st->sse;
        }
    }
}

size_t sessions_of_route(const struct proxy *p, const char *route)
{
    size_t n = sessions_of(p, NULL, route);
    for (const struct proxy_session *s = p->ended; s; s = s->next)
        if (strcmp(s->route_name, route) == 0)
            n++;
    return n;
}

/* ---- the ring --------------------------------------------------------------- */

static void ring_drop_oldest(struct proxy_session *s)
{
    struct ring_event *e = &s->ring[s->ring_start];
    s->ring_bytes -= e->len;
    s->proxy->ring_bytes -= e->len;
    free(e->data);
    e->data = NULL;
    s->ring_start = (s->ring_start + 1) % s->ring_cap;
    s->ring_len--;
}

/*
 * Keeps the event for resumption, within three bounds: events per session
 * (event_ring), bytes per session (event_ring_bytes) and bytes of all
 * sessions (event_ring_total), oldest first out (review F8). An event larger
 * than what may be kept is sent live only.
 */
static void ring_push(struct proxy_session *s, const char *stream, uint64_t seq, const char *data,
                      size_t len)
{
    const struct gw_limits *lim = &s->proxy->cfg->server.limits;
    if (s->ring_cap == 0 || len > lim->event_ring_bytes)
        return;
    while (s->ring_len > 0 &&
           (s->ring_len == s->ring_cap || s->ring_bytes + len > lim->event_ring_bytes ||
            s->proxy->ring_bytes + len > lim->event_ring_total_bytes))
        ring_drop_oldest(s);
    if (s->proxy->ring_bytes + len > lim->event_ring_total_bytes) {
        gw_log(GW_LOG_WARN, "proxy", s->id,
               "event not kept for resumption: server.limits.event_ring_total is full", NULL);
        return;
    }
    struct ring_event *e = &s->ring[(s->ring_start + s->ring_len) % s->ring_cap];
    snprintf(e->stream, sizeof(e->stream), "%s", stream);
    e->seq = seq;
    e->data = xstrndup(data, len);
    e->len = len;
    s->ring_len++;
    s->ring_bytes += len;
    s->proxy->ring_bytes += len;
}

/* ---- writing to clients ----------------------------------------------------- */

static void stream_detach(struct proxy_stream *st);

static void stream_switch_to_sse(struct proxy_stream *st);

static void on_client_gone(struct http_request *req, void *arg)
{
    struct proxy_stream *st = arg;
    (void)req;
    stream_detach(st);
    /* Answers held for a JSON batch answer now wait in the ring, as every
     * other answer to a client that left does (review F17). */
    if (st->json_ok && st->batch)
        stream_switch_to_sse(st);
}

static void touch(struct proxy_session *s);
static void session_end(struct proxy_session *s, const char *reason, bool fail_pending);

/* Ends the HTTP response attached to ST (the logical stream may go on). */
static void stream_detach(struct proxy_stream *st)
{
    struct http_request *req = st->req;
    if (req == NULL)
        return;
    st->req = NULL;
    http_request_on_close(req, NULL, NULL);
    if (st->sse)
        http_stream_end(req);
    else
        http_reply_empty(req, 202);
    st->sse = false;
    /* In the 2024-11-05 transport the SSE connection is the session: when it
     * goes (the client left, read too slowly, or another request took it), so
     * does the session and its child (review F5). */
    if (st->sess->legacy_sse && st == &st->sess->get) {
        session_end(st->sess, "the SSE connection closed", false);
        return;
    }
    /* The session may be idle now: its idle timer starts again from here. */
    touch(st->sess);
}

static void sse_begin(struct proxy_stream *st)
{
    if (st->req == NULL || st->sse)
        return;
    if (http_sse_start(st->req) < 0) {
        stream_detach(st);
        return;
    }
    st->sse = true;
    http_sse_keepalive(st->req, PROXY_KEEPALIVE_MS);
}

/* One SSE event on ST: into the ring, and to the client when one is attached. */
static void stream_event(struct proxy_stream *st, const char *data, size_t len)
{
    struct proxy_session *s = st->sess;
    uint64_t seq = ++s->next_seq;
    char id[48];
    snprintf(id, sizeof(id), "%s_%llu", st->key, (unsigned long long)seq);
    ring_push(s, st->key, seq, data, len);
    if (st->req == NULL)
        return;
    sse_begin(st);
    if (st->req == NULL)
        return;
    const char *event = s->legacy_sse && len ? "message" : NULL;
    int rc = http_sse_event(st->req, id, event, data, len);
    if (rc == 0) {
        st->delivered_seq = seq;
    } else {
        /* -ENOBUFS: a slow reader; it resumes from the ring with Last-Event-ID. */
        gw_log(GW_LOG_INFO, "proxy", s->id, "ending a stream to a slow or gone client", "stream",
               st->key, NULL);
        stream_detach(st);
    }
}

static void batch_out_clear(struct proxy_stream *st)
{
    for (size_t i = 0; i < st->n_batch_out; i++)
        free(st->batch_out[i]);
    free(st->batch_out);
    st->batch_out = NULL;
    st->n_batch_out = 0;
}

/* The first SSE event of a POST stream is a priming event with an empty payload. */
static void stream_switch_to_sse(struct proxy_stream *st)
{
    if (!st->json_ok)
        return;
    st->json_ok = false;
    stream_event(st, "", 0);
    for (size_t i = 0; i < st->n_batch_out; i++)
        stream_event(st, st->batch_out[i], strlen(st->batch_out[i]));
    batch_out_clear(st);
}

static void stream_free(struct proxy_stream *st)
{
    batch_out_clear(st);
    free(st);
}

/* A POST stream whose last response went out: end its HTTP response and drop it. */
static void stream_finish(struct proxy_stream *st)
{
    struct proxy_session *s = st->sess;
    if (st->req && st->json_ok && st->batch) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_append(&sb, "[", 1);
        for (size_t i = 0; i < st->n_batch_out; i++)
            strbuf_printf(&sb, "%s%s", i ? "," : "", st->batch_out[i]);
        strbuf_append(&sb, "]", 1);
        struct http_request *req = st->req;
        st->req = NULL;
        http_request_on_close(req, NULL, NULL);
        http_reply(req, 200, "application/json", sb.buf, sb.len);
        strbuf_release(&sb);
    }
    stream_detach(st);
    struct proxy_stream **pp = &s->streams;
    while (*pp && *pp != st)
        pp = &(*pp)->next;
    if (*pp)
        *pp = st->next;
    stream_free(st);
}

/* Delivers a response to the stream of its request. */
static void stream_response(struct proxy_stream *st, const char *text, size_t len)
{
    st->pending--;
    if (st->json_ok && !st->batch && st->req) {
        struct http_request *req = st->req;
        st->req = NULL;
        st->json_ok = false;
        http_request_on_close(req, NULL, NULL);
        http_reply(req, 200, "application/json", text, len);
    } else if (st->json_ok && st->batch) {
        st->batch_out = xrealloc(st->batch_out, (st->n_batch_out + 1) * sizeof(*st->batch_out));
        st->batch_out[st->n_batch_out++] = xstrndup(text, len);
    } else {
        stream_switch_to_sse(st);
        stream_event(st, text, len);
    }
    if (st->pending == 0)
        stream_finish(st);
}

/* ---- idle ----------------------------------------------------------------- */

static bool session_is_idle(const struct proxy_session *s)
{
    return s->pending == NULL && s->get.req == NULL;
}

static void arm_idle(struct proxy_session *s, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(s->idle_timer, &tv);
}

/* The timer runs from the first touch and is moved on only here, when it fires: a busy
 * session then costs no timer update per request. */
static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct proxy_session *s = arg;
    if (!session_is_idle(s) || s->idle_timeout_ms == 0)
        return; /* touch() arms it again once the session is idle */
    uint64_t quiet = time_mono_ms() - s->last_used_ms;
    if (quiet < s->idle_timeout_ms)
        arm_idle(s, s->idle_timeout_ms - quiet);
    else
        session_end(s, "idle timeout", true);
}

static void record_put(struct proxy_session *s);

static void touch(struct proxy_session *s)
{
    s->last_used_ms = time_mono_ms();
    if (!s->ended && s->last_used_ms - s->record_ms >= 10000)
        record_put(s); /* the registry's "last" and "streams", at most every 10 s */
    if (s->idle_timeout_ms == 0 || s->ended || evtimer_pending(s->idle_timer, NULL))
        return;
    arm_idle(s, s->idle_timeout_ms);
}

/* ---- messages from the child -------------------------------------------- */

/* Takes the request the child knows as ID_KEY (unique among those in flight: add_pending) out
 * of the session's list: the caller owns it then. NULL when there is none. */
static struct pending *pending_take(struct proxy_session *s, const char *id_key)
{
    for (struct pending **pp = &s->pending; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id_key, id_key) == 0) {
            struct pending *p = *pp;
            *pp = p->next;
            s->n_pending--;
            return p;
        }
    }
    return NULL;
}

static void pending_free(struct pending *p)
{
    free(p->id_key);
    free(p->id_json);
    free(p->client_key);
    free(p->progress_key);
    free(p->progress_json);
    mg_principal_free(p->principal);
    free(p);
}

/* Where a notification or server request goes when nothing names its stream. */
static struct proxy_stream *unrelated_target(struct proxy_session *s)
{
    if (s->legacy_sse)
        return &s->get;
    size_t open = 0;
    struct proxy_stream *only = NULL;
    for (struct proxy_stream *st = s->streams; st; st = st->next) {
        open++;
        only = st;
    }
    return open == 1 ? only : &s->get;
}

/* The request a notifications/progress (M, inspected from TEXT) reports on, or NULL. */
static struct pending *progress_owner(struct proxy_session *s, const char *text,
                                      const struct jsonrpc_msg *m)
{
    char *key = m->progress.kind ? jsonrpc_id_key(text, &m->progress) : NULL;
    struct pending *owner = NULL;
    for (struct pending *p = s->pending; key && p && !owner; p = p->next)
        if (p->progress_key && strcmp(p->progress_key, key) == 0)
            owner = p;
    free(key);
    return owner;
}

static void remember_protocol(struct proxy_session *s, const struct pending *p, const char *text,
                              size_t len)
{
    if (strcmp(p->method, "initialize") != 0)
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, 0, &jerr);
    const char *v =
        json_string_value(json_object_get(json_object_get(msg, "result"), "protocolVersion"));
    if (v) {
        free(s->protocol_version);
        s->protocol_version = xstrdup(v);
    }
    json_decref(msg);
}

/* List results are filtered for the caller; returns new text (owned, *LEN) or NULL. */
static char *filter_response(struct proxy_session *s, const struct pending *p, const char *text,
                             size_t *len)
{
    const struct gw_route_config *route = gw_config_route_by_name(s->proxy->cfg, s->route_name);
    if (route == NULL || p->principal == NULL || !policy_list_filtered(route, p->method))
        return NULL;
    return policy_filter_text(text, *len, p->method, route, p->principal, len);
}

static void route_message(struct proxy_session *s, const struct jsonrpc_msg *m, const char *text,
                          size_t len)
{
    if (m->kind == JSONRPC_RESPONSE) {
        struct pending *p = m->id_key ? pending_take(s, m->id_key) : NULL;
        if (p == NULL) {
            gw_log(GW_LOG_WARN, "proxy", s->id, "dropping a response to no pending request", NULL);
            return;
        }
        call_obs_end(s->proxy, s->route_name, &p->obs, m, NULL);
        char *restored = p->client_key ? jsonrpc_replace(text, &len, &m->id, p->id_json) : NULL;
        if (restored)
            text = restored;
        remember_protocol(s, p, text, len);
        char *filtered = filter_response(s, p, text, &len);
        if (filtered)
            text = filtered;
        struct proxy_stream *st = s->legacy_sse ? &s->get : p->stream;
        if (st == &s->get)
            stream_event(st, text, len);
        else
            stream_response(st, text, len);
        pending_free(p);
        free(filtered);
        free(restored);
        if (session_is_idle(s))
            touch(s);
        return;
    }
    if (m->kind == JSONRPC_INVALID) {
        gw_log(GW_LOG_WARN, "proxy", s->id, "dropping an invalid message from the upstream",
               "error", m->invalid, NULL);
        return;
    }
    struct pending *owner =
        jsonrpc_is(m, "notifications/progress") ? progress_owner(s, text, m) : NULL;
    char *restored = owner && owner->progress_json
                         ? jsonrpc_replace(text, &len, &m->progress, owner->progress_json)
                         : NULL;
    if (restored)
        text = restored;
    struct proxy_stream *st = owner && !s->legacy_sse ? owner->stream : unrelated_target(s);
    if (st != &s->get)
        stream_switch_to_sse(st);
    stream_event(st, text, len);
    free(restored);
}

static void on_child_message(struct proxy_session *s, const char *text, size_t len)
{
    struct jsonrpc_msg m;
    if (jsonrpc_inspect(text, len, &m) < 0) {
        gw_log(GW_LOG_WARN, "proxy", s->id, "the upstream wrote a line that is not JSON", NULL);
        return;
    }
    route_message(s, &m, text, len);
    jsonrpc_msg_clear(&m);
}

static void on_child_line(struct stdio_child *c, const char *line, size_t len, void *arg)
{
    struct proxy_session *s = arg;
    (void)c;
    if (s->ended)
        return;
    struct json_ref *elems;
    size_t n;
    if (jsonrpc_batch_split(line, len, &elems, &n) < 0) {
        gw_log(GW_LOG_WARN, "proxy", s->id, "the upstream wrote a line that is not JSON", NULL);
        return;
    }
    if (elems == NULL) {
        on_child_message(s, line, len);
        return;
    }
    for (size_t i = 0; i < n && !s->ended; i++) /* a 2025-03-26 batch: route each element */
        on_child_message(s, line + elems[i].off, elems[i].len);
    free(elems);
}

/* ---- stdin backpressure ------------------------------------------------------ */

/*
 * The child's stdin buffer refuses more than its high-water mark (-ENOBUFS);
 * what it refuses waits here, in order, and goes out as the child reads
 * (on_child_writable). A child that reads none of it for stdio.write_timeout
 * is not reading at all: the session ends then, with an error for every
 * pending request. Callers check session_input_room() first, so the queue
 * stays within the same bound as the stdin buffer.
 */
static void input_clear(struct proxy_session *s)
{
    while (s->in_head) {
        struct input *in = s->in_head;
        s->in_head = in->next;
        free(in->text);
        free(in);
    }
    s->in_tail = NULL;
    s->in_bytes = 0;
}

static bool session_input_room(const struct proxy_session *s, uint64_t bytes)
{
    return s->in_head == NULL ||
           s->in_bytes + bytes <= s->proxy->cfg->server.limits.max_body_bytes * 4;
}

static void arm_write_timer(struct proxy_session *s)
{
    uint64_t ms = s->write_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(s->write_timer, &tv);
}

/* Moves queued input to the child while it takes it. */
static void input_flush(struct proxy_session *s)
{
    while (s->in_head && !s->ended) {
        struct input *in = s->in_head;
        int rc = stdio_child_send(s->child, in->text, in->len);
        if (rc == -ENOBUFS)
            return;
        s->in_head = in->next;
        if (s->in_head == NULL)
            s->in_tail = NULL;
        s->in_bytes -= in->len;
        free(in->text);
        free(in);
        if (rc < 0) {
            session_end(s, "the upstream process stopped reading its input", true);
            return;
        }
        arm_write_timer(s); /* progress: the deadline starts again */
    }
    if (s->in_head == NULL)
        evtimer_del(s->write_timer);
}

static void on_child_writable(struct stdio_child *c, void *arg)
{
    (void)c;
    input_flush(arg);
}

static void on_write_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct proxy_session *s = arg;
    if (s->in_head == NULL)
        return;
    gw_log(GW_LOG_WARN, "proxy", s->id, "the upstream does not read its input", NULL);
    session_end(s, "the upstream process stopped reading its input (stdio.write_timeout)", true);
}

/* ---- ending ----------------------------------------------------------------- */

static void fail_pending(struct proxy_session *s, const char *why)
{
    while (s->pending) {
        struct pending *p = s->pending;
        s->pending = p->next;
        s->n_pending--;
        char *text =
            jsonrpc_error_text(p->id_json, strlen(p->id_json), JSONRPC_GATEWAY_UPSTREAM_ERROR, why);
        if (s->legacy_sse || p->stream == &s->get)
            stream_event(&s->get, text, strlen(text));
        else
            stream_response(p->stream, text, strlen(text));
        free(text);
        call_obs_end(s->proxy, s->route_name, &p->obs, NULL, "failed");
        pending_free(p);
    }
}

static void session_free(struct proxy_session *s)
{
    while (s->pending) { /* a session that ended without failing them (its client left) */
        struct pending *p = s->pending;
        s->pending = p->next;
        call_obs_end(s->proxy, s->route_name, &p->obs, NULL, "cancelled");
        pending_free(p);
    }
    s->n_pending = 0;
    while (s->streams)
        stream_finish(s->streams);
    stream_detach(&s->get);
    while (s->ring_len)
        ring_drop_oldest(s);
    free(s->ring);
    input_clear(s);
    if (s->idle_timer)
        event_free(s->idle_timer);
    if (s->write_timer)
        event_free(s->write_timer);
    stdio_child_free(s->child);
    free(s->route_name);
    free(s->owner);
    free(s->client_id);
    free(s->grant_id);
    free(s->protocol_version);
    free(s->warm_init);
    mg_principal_free(s->caller);
    free(s);
}

static void forget_ended(struct proxy *p, struct proxy_session *s)
{
    for (struct proxy_session **pp = &p->ended; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

/* Ends S for new requests at once; its memory goes when the child is reaped. */
static void session_end(struct proxy_session *s, const char *reason, bool failing)
{
    if (s->ended)
        return;
    s->ended = true;
    gw_log(GW_LOG_INFO, "proxy", s->id, "session ended", "route", s->route_name, "reason", reason,
           NULL);
    if (failing)
        fail_pending(s, reason);
    while (s->streams)
        stream_finish(s->streams);
    stream_detach(&s->get);
    evtimer_del(s->idle_timer);
    table_remove(s->proxy, s);
    char key[96];
    snprintf(key, sizeof(key), MG_KEY_SESSION, s->id);
    store_del_detached(s->proxy->store, key, "session end: record");
    store_set_remove_detached(s->proxy->store, MG_KEY_SESSIONS_ALL, s->id, "session end: index");
    if (s->grant_id) {
        char *gkey = xasprintf(MG_KEY_GRANT_SESSIONS, s->grant_id);
        store_set_remove_detached(s->proxy->store, gkey, s->id, "session end: grant index");
        free(gkey);
    }
    stdio_child_stop(s->child);
}

static void on_child_exit(struct stdio_child *c, int status, const char *reason, void *arg)
{
    struct proxy_session *s = arg;
    (void)c;
    if (!s->ended) {
        char why[256];
        if (reason)
            snprintf(why, sizeof(why), "upstream process failed: %s", reason);
        else
            snprintf(why, sizeof(why), "upstream process exited with status %d", status);
        gw_log(GW_LOG_WARN, "proxy", s->id, "upstream process ended", "reason", why, NULL);
        session_end(s, why, true);
    }
    forget_ended(s->proxy, s);
    session_free(s);
}

static size_t attached_streams(const struct proxy_session *s);

/* The registry record (common/principal.h): who, where, since when, last use. */
static void record_put(struct proxy_session *s)
{
    struct proxy *p = s->proxy;
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    char *instance = xasprintf("%s:%d", host, (int)getpid());
    const char *tag = cluster_tag(p->cluster);
    size_t streams = attached_streams(s);
    uint64_t now = time_wall_s();
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?, s:i, s:I, s:I, s:I}", "owner",
                            s->owner, "route", s->route_name, "instance", instance, "tag", tag,
                            "client", s->client_id, "grant", s->grant_id, "pid",
                            (int)stdio_child_pid(s->child), "started", (json_int_t)s->started_s,
                            "last", (json_int_t)now, "streams", (json_int_t)streams);
    free(instance);
    char *text = json_dumps(rec, JSON_COMPACT);
    char *key = xasprintf(MG_KEY_SESSION, s->id);
    /* Outlives the idle timeout a little: an ended session deletes it itself. */
    store_put_detached(p->store, key, text, strlen(text), s->idle_timeout_ms + 60000,
                       "session record");
    free(key);
    free(text);
    json_decref(rec);
    s->record_ms = time_mono_ms();
}

/* ---- creating a session ---------------------------------------------------- */

/* OWNER's least recently used session that has nothing in flight, or NULL. */
static struct proxy_session *idle_session_of(struct proxy *p, const char *owner)
{
    struct proxy_session *best = NULL;
    for (size_t b = 0; b < PROXY_SESSION_BUCKETS; b++)
        for (struct proxy_session *s = p->sessions[b]; s; s = s->next)
            if (strcmp(s->owner, owner) == 0 && session_is_idle(s) && s->in_head == NULL &&
                (best == NULL || s->last_used_ms < best->last_used_ms))
                best = s;
    return best;
}

static struct proxy_session *session_new(struct proxy_call *call, bool legacy, int *status,
                                         const char **why, const char *client_version)
{
    struct proxy *p = call->proxy;
    const struct gw_route_config *r = call->route;
    const struct gw_limits *lim = &p->cfg->server.limits;
    *status = 503;
    if (p->n_sessions >= lim->max_sessions) {
        *why = "session limit reached (server.limits.max_sessions)";
        return NULL;
    }
    char *owner = proxy_call_owner(call);
    if (sessions_of(p, owner, NULL) >= lim->max_sessions_per_user) {
        /* Most clients never send DELETE: the user's least recently used idle
         * session makes room, so abandoned sessions cannot lock the user out. */
        struct proxy_session *old = idle_session_of(p, owner);
        if (old == NULL) {
            free(owner);
            *why = "per-user session limit reached (server.limits.max_sessions_per_user)";
            return NULL;
        }
        session_end(old,
                    "evicted: the least recently used idle session of a user at "
                    "server.limits.max_sessions_per_user",
                    true);
    }
    if (route_children(p, r->name) >= r->stdio.max_processes) {
        free(owner);
        *why = "process limit of this route reached (stdio.max_processes)";
        return NULL;
    }
    struct proxy_session *s = xcalloc(1, sizeof(*s));
    proxy_session_id_new(p, s->id);
    s->proxy = p;
    s->route_name = xstrdup(r->name);
    s->owner = owner;
    s->client_id = call->principal->client_id ? xstrdup(call->principal->client_id) : NULL;
    s->grant_id = call->principal->grant_id ? xstrdup(call->principal->grant_id) : NULL;
    s->caller = mg_principal_ref(call->principal);
    s->last_used_ms = time_mono_ms();
    s->write_timeout_ms = r->stdio.write_timeout_ms ? r->stdio.write_timeout_ms : 30000;
    s->write_timer = xevtimer_new(p->base, on_write_timeout, s);
    s->legacy_sse = legacy;
    s->get.sess = s;
    snprintf(s->get.key, sizeof(s->get.key), "g");
    s->ring_cap = lim->event_ring;
    s->ring = xcalloc(s->ring_cap ? s->ring_cap : 1, sizeof(*s->ring));
    s->idle_timeout_ms = r->stdio.idle_timeout_ms;
    s->idle_timer = xevtimer_new(p->base, on_idle, s);

    static const struct stdio_child_callbacks cbs = {
        .on_line = on_child_line,
        .on_exit = on_child_exit,
        .on_writable = on_child_writable,
    };
    if (!legacy && r->stdio.warm)
        s->child = warm_take(p, r->name, client_version, &s->warm_init);
    if (s->child) {
        stdio_child_set_callbacks(s->child, &cbs, s);
        s->drop_initialized = true;
    }
    char *err = NULL;
    if (s->child == NULL)
        s->child = proxy_spawn_child(p, r, call->principal, s->id, &cbs, s, &err);
    if (s->child == NULL) {
        gw_log(GW_LOG_ERROR, "proxy", http_request_id(call->req), "cannot start the upstream",
               "route", r->name, "error", err, NULL);
        free(err);
        *status = 502;
        *why = "the MCP server of this route could not be started";
        event_free(s->idle_timer);
        event_free(s->write_timer);
        free(s->ring);
        free(s->route_name);
        free(s->owner);
        free(s->client_id);
        free(s->grant_id);
        mg_principal_free(s->caller);
        free(s);
        return NULL;
    }
    unsigned b = bucket_of(s->id);
    s->next = p->sessions[b];
    p->sessions[b] = s;
    p->n_sessions++;
    s->started_s = time_wall_s();
    record_put(s);
    store_set_add_detached(p->store, MG_KEY_SESSIONS_ALL, s->id, 0, "session index");
    if (s->grant_id) {
        char *gkey = xasprintf(MG_KEY_GRANT_SESSIONS, s->grant_id);
        store_set_add_detached(p->store, gkey, s->id, p->cfg->oauth.refresh_token_ttl_ms,
                               "session index: grant");
        free(gkey);
    }
    gw_log(GW_LOG_INFO, "proxy", s->id, "session started", "route", r->name, "subject", s->owner,
           NULL);
    return s;
}

static bool has_all(const struct mg_string_list *have, const struct mg_string_list *want)
{
    for (size_t i = 0; i < want->len; i++)
        if (!mg_string_list_contains(have, want->items[i]))
            return false;
    return true;
}

/*
 * The child believes its caller has what the caller it was started for had
 * (environment, JWT). A later request may carry as much or more (a step-up
 * to a wider scope, a role added), and the child then grants less than it
 * could: safe. It must not carry less (a narrower token, a role removed, a
 * group left) or come from another client: then the child would grant more.
 */
static bool caller_fits(const struct mg_principal *child, const struct mg_principal *now)
{
    bool same_client =
        (child->client_id == NULL && now->client_id == NULL) ||
        (child->client_id && now->client_id && strcmp(child->client_id, now->client_id) == 0);
    return same_client && has_all(&now->scopes, &child->scopes) &&
           has_all(&now->roles, &child->roles) && has_all(&now->groups, &child->groups);
}

/*
 * The session named by the request, if it exists and belongs to this caller:
 * same owner and route, and (unless ANY_CALLER, for DELETE) a principal that
 * fits the one the child was started for (caller_fits). A token of the same
 * user with less, or of another client, gets a session of its own: 404, and
 * the client initializes again (review F10). NULL with *WHY.
 */
static struct proxy_session *session_for(struct proxy_call *call, const char *id, bool any_caller,
                                         const char **why)
{
    struct proxy_session *s = id ? session_lookup(call->proxy, id) : NULL;
    char *owner = proxy_call_owner(call);
    *why = "unknown or expired session: initialize again";
    /* Another user's session id is answered exactly like an unknown one. */
    if (s && (strcmp(s->owner, owner) != 0 || strcmp(s->route_name, call->route->name) != 0))
        s = NULL;
    free(owner);
    if (s && !any_caller && !caller_fits(s->caller, call->principal)) {
        *why = "this session was started for a wider authorization than this token's (fewer "
               "scopes, roles or groups, or another client): initialize a new session";
        s = NULL;
    }
    return s;
}

/* ---- POST ------------------------------------------------------------------------ */

/* 0 (sent, or queued behind earlier input), or -EPIPE when the child's stdin is gone. */
static int send_to_child(struct proxy_session *s, const char *text, size_t len)
{
    if (s->in_head == NULL) {
        int rc = stdio_child_send(s->child, text, len);
        if (rc != -ENOBUFS)
            return rc;
    }
    struct input *in = xcalloc(1, sizeof(*in));
    in->text = xstrndup(text, len);
    in->len = len;
    in->queued_ms = time_mono_ms();
    if (s->in_tail)
        s->in_tail->next = in;
    else
        s->in_head = in;
    s->in_tail = in;
    if (s->in_bytes == 0)
        arm_write_timer(s);
    s->in_bytes += len;
    return 0;
}

/* A request in flight has this id as the child sees it. */
static bool id_in_use(const struct proxy_session *s, const char *key)
{
    for (const struct pending *p = s->pending; p; p = p->next)
        if (strcmp(p->id_key, key) == 0)
            return true;
    return false;
}

static bool token_in_use(const struct proxy_session *s, const char *key)
{
    for (const struct pending *p = s->pending; p; p = p->next)
        if (p->progress_key && strcmp(p->progress_key, key) == 0)
            return true;
    return false;
}

/* The request the client calls KEY; of two that share it, the older. */
static struct pending *pending_of_client(struct proxy_session *s, const char *key)
{
    struct pending *found = NULL;
    for (struct pending *p = s->pending; p; p = p->next)
        if (strcmp(p->client_key ? p->client_key : p->id_key, key) == 0)
            found = p;
    return found;
}

/* G's text with its id and progress token set to ID_JSON and TOKEN_JSON (either may be NULL:
 * unchanged). Owned, *LEN bytes. */
static char *with_ids(const struct guard_msg *g, const char *id_json, const char *token_json,
                      size_t *len)
{
    /* The refs of G->info index the client's text; the guard's may differ (the principal). */
    struct jsonrpc_msg t;
    const struct jsonrpc_msg *m = &g->info;
    bool own = g->text != g->orig;
    if (own) {
        GW_ASSERT(jsonrpc_inspect(g->text, g->len, &t) == 0 && t.kind == JSONRPC_REQUEST);
        m = &t;
    }
    struct json_edit e[2];
    size_t n = 0;
    if (id_json)
        e[n++] = (struct json_edit){m->id.off, m->id.off + m->id.len, id_json, strlen(id_json)};
    if (token_json)
        e[n++] =
            (struct json_edit){m->progress_token.off, m->progress_token.off + m->progress_token.len,
                               token_json, strlen(token_json)};
    if (n == 2 && e[1].start < e[0].start) {
        struct json_edit x = e[0];
        e[0] = e[1];
        e[1] = x;
    }
    char *out = jsonrpc_splice(g->text, g->len, e, n, len);
    if (own)
        jsonrpc_msg_clear(&t);
    return out;
}

/*
 * Registers request G (from WHO) as pending on ST and returns the text the child gets: G's
 * own, or a rewrite owned by *OWNED (*LEN bytes either way).
 *
 * MCP asks a client never to reuse a request id in a session, nor a progress token among
 * its active requests. A client that does anyway (a load generator replaying one body on
 * several connections at once) would make two answers on the child's one pipe look alike,
 * and refusing it would fail a pattern that is harmless once told apart. So an id or token
 * already in flight is replaced by one of the gateway's, "mcpgate:<n>", itself not in
 * flight; route_message() gives the client its own back. Ids the client has stopped using
 * are not remembered: reusing one after its answer is the client's affair, as before.
 */
static const char *add_pending(struct proxy_session *s, struct proxy_stream *st,
                               const struct guard_msg *g, const struct mg_principal *who,
                               char **owned, size_t *len)
{
    const struct jsonrpc_msg *m = &g->info;
    struct pending *p = xcalloc(1, sizeof(*p));
    p->principal = who ? mg_principal_ref(who) : NULL;
    p->id_json = xstrndup(g->orig + m->id.off, m->id.len);
    p->id_key = xstrdup(m->id_key);
    p->progress_key = m->progress_token.kind ? jsonrpc_id_key(g->orig, &m->progress_token) : NULL;
    snprintf(p->method, sizeof(p->method), "%s", m->method);
    bool new_id = id_in_use(s, p->id_key);
    bool new_token = p->progress_key && token_in_use(s, p->progress_key);
    *owned = NULL;
    *len = g->len;
    if (new_id || new_token) {
        char json[40], key[40];
        do {
            snprintf(json, sizeof(json), "\"mcpgate:%llu\"",
                     (unsigned long long)++s->next_gateway_id);
            snprintf(key, sizeof(key), "s:%.*s", (int)strlen(json) - 2, json + 1);
        } while (id_in_use(s, key) || token_in_use(s, key));
        if (new_id) {
            p->client_key = p->id_key;
            p->id_key = xstrdup(key);
        }
        if (new_token) {
            p->progress_json = xstrndup(g->orig + m->progress_token.off, m->progress_token.len);
            free(p->progress_key);
            p->progress_key = xstrdup(key);
        }
        *owned = with_ids(g, new_id ? json : NULL, new_token ? json : NULL, len);
    }
    p->stream = st;
    call_obs_start(&p->obs, m, g->orig);
    p->next = s->pending;
    s->pending = p;
    s->n_pending++;
    st->pending++;
    return *owned ? *owned : g->text;
}

/*
 * The client cancelled a request: the child will not answer it, so end its wait. Returns
 * the notification as the child must get it when the child knows that request by another
 * id (owned, *LEN), else NULL: forward G as it is.
 */
static char *client_cancelled(struct proxy_session *s, const struct guard_msg *g, size_t *len)
{
    const struct json_ref *rid = &g->info.request_id;
    char *key = rid->kind ? jsonrpc_id_key(g->orig, rid) : NULL;
    struct pending *p = key ? pending_of_client(s, key) : NULL;
    free(key);
    if (p == NULL)
        return NULL;
    struct pending *taken = pending_take(s, p->id_key);
    GW_ASSERT(taken == p); /* the ids the child sees are unique among those in flight */
    char *child_text = NULL;
    if (p->client_key) {
        struct jsonrpc_msg t;
        GW_ASSERT(jsonrpc_inspect(g->text, g->len, &t) == 0 && t.request_id.kind);
        /* The child's id is "s:" and the string; as JSON it is that string quoted. */
        char *json = xasprintf("\"%s\"", p->id_key + 2);
        *len = g->len;
        child_text = jsonrpc_replace(g->text, len, &t.request_id, json);
        free(json);
        jsonrpc_msg_clear(&t);
    }
    struct proxy_stream *st = p->stream;
    if (st != &s->get) {
        char *text = jsonrpc_error_text(p->id_json, strlen(p->id_json), JSONRPC_REQUEST_CANCELLED,
                                        "request cancelled");
        /* Nothing more goes out for it (MCP cancellation), but the HTTP
         * exchange still needs an end: the stream closes without this error
         * in SSE mode, and a JSON answer carries it. */
        if (st->json_ok && !st->batch) {
            stream_response(st, text, strlen(text));
        } else {
            st->pending--;
            if (st->pending == 0)
                stream_finish(st);
        }
        free(text);
    }
    call_obs_end(s->proxy, s->route_name, &p->obs, NULL, "cancelled");
    pending_free(p);
    return child_text;
}

/*
 * Message G from WHO goes to the child: a request is registered as pending on ST, a cancel
 * ends the wait of the request it names, and either is rewritten when the child knows that
 * request by the gateway's id. 0 (sent or queued), or -EPIPE when the child's stdin is gone.
 */
static int forward_message(struct proxy_session *s, struct proxy_stream *st,
                           const struct guard_msg *g, const struct mg_principal *who)
{
    char *owned = NULL;
    const char *text = g->text;
    size_t len = g->len;
    if (g->info.kind == JSONRPC_REQUEST)
        text = add_pending(s, st, g, who, &owned, &len);
    else if (g->info.kind == JSONRPC_NOTIFICATION &&
             jsonrpc_is(&g->info, "notifications/cancelled") &&
             (owned = client_cancelled(s, g, &len)) != NULL)
        text = owned;
    int rc = send_to_child(s, text, len);
    free(owned);
    return rc;
}

/* Why the session cannot take BODY now (a limit), or NULL. */
static const char *session_full(const struct proxy_session *s, const struct guard_body *body)
{
    const struct gw_limits *lim = &s->proxy->cfg->server.limits;
    if (s->n_pending + body->requests > lim->max_pending_per_session)
        return "too many requests in flight in this session "
               "(server.limits.max_pending_per_session)";
    uint64_t bytes = 0;
    for (size_t i = 0; i < body->n; i++)
        bytes += body->msgs[i].len;
    if (!session_input_room(s, bytes))
        return "the MCP server is not reading its input fast enough: try again";
    return NULL;
}

static void post_messages(struct proxy_call *call, struct proxy_session *s,
                          const struct guard_body *body, bool created)
{
    const char *full = session_full(s, body);
    if (full) {
        http_set_header(call->req, "Retry-After", "1");
        proxy_reply_rpc_error(call->req, 503, JSONRPC_GATEWAY_LIMIT, full);
        return;
    }
    struct proxy_stream *st = NULL;
    if (body->requests) {
        st = xcalloc(1, sizeof(*st));
        st->sess = s;
        snprintf(st->key, sizeof(st->key), "p%u", ++s->next_stream);
        st->json_ok = true;
        st->batch = body->batch;
        st->req = call->req;
        st->next = s->streams;
        s->streams = st;
        http_request_on_close(call->req, on_client_gone, st);
        if (created)
            http_set_header(call->req, "Mcp-Session-Id", s->id);
    }
    for (size_t i = 0; i < body->n; i++) {
        const struct guard_msg *g = &body->msgs[i];
        /* A warm child heard notifications/initialized from the gateway already. */
        if (s->drop_initialized && g->info.kind == JSONRPC_NOTIFICATION &&
            jsonrpc_is(&g->info, "notifications/initialized")) {
            s->drop_initialized = false;
            continue;
        }
        if (forward_message(s, st, g, call->principal) < 0 && !s->ended) {
            gw_log(GW_LOG_WARN, "proxy", s->id, "the upstream does not take input", NULL);
            session_end(s, "the upstream process stopped reading its input", true);
            break;
        }
    }
    touch(s);
    if (body->requests == 0) {
        if (created)
            http_set_header(call->req, "Mcp-Session-Id", s->id);
        http_reply_empty(call->req, 202);
    }
}

/* The protocol version an initialize request asks for (owned), or NULL. */
static char *initialize_version(const struct guard_msg *g)
{
    if (g->info.params.kind != JSON_KIND_OBJECT)
        return NULL;
    json_error_t jerr;
    json_t *params = json_loadb(g->orig + g->info.params.off, g->info.params.len, 0, &jerr);
    const char *v = json_string_value(json_object_get(params, "protocolVersion"));
    char *out = v ? xstrdup(v) : NULL;
    json_decref(params);
    return out;
}

/* A warm session's initialize, answered from the child's InitializeResult (warm.c). */
static void answer_warm_initialize(struct proxy_call *call, struct proxy_session *s,
                                   const struct guard_msg *g)
{
    char *text = xasprintf("{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"result\":%s}", (int)g->info.id.len,
                           g->orig + g->info.id.off, s->warm_init);
    json_error_t jerr;
    json_t *res = json_loads(s->warm_init, 0, &jerr);
    const char *v = json_string_value(json_object_get(res, "protocolVersion"));
    if (v) {
        free(s->protocol_version);
        s->protocol_version = xstrdup(v);
    }
    json_decref(res);
    free(s->warm_init);
    s->warm_init = NULL;
    http_set_header(call->req, "Mcp-Session-Id", s->id);
    http_reply(call->req, 200, "application/json", text, strlen(text));
    free(text);
    touch(s);
}

void session_handle_post(struct proxy_call *call, const struct guard_body *body)
{
    const char *sid = http_request_header(call->req, "Mcp-Session-Id");
    const struct jsonrpc_msg *first = &body->msgs[0].info;
    bool initialize =
        !body->batch && first->kind == JSONRPC_REQUEST && jsonrpc_is(first, "initialize");
    struct proxy_session *s = NULL;
    bool created = false;
    if (sid == NULL) {
        if (!initialize) {
            proxy_reply_rpc_error(call->req, 400, JSONRPC_INVALID_REQUEST,
                                  "no Mcp-Session-Id: initialize a session first");
            goto out;
        }
        int status;
        const char *why;
        char *version = initialize_version(&body->msgs[0]);
        s = session_new(call, false, &status, &why, version);
        free(version);
        if (s == NULL) {
            if (status == 503)
                http_set_header(call->req, "Retry-After", "5");
            char *text = jsonrpc_error_text(
                body->msgs[0].orig + first->id.off, first->id.len,
                status == 503 ? JSONRPC_GATEWAY_LIMIT : JSONRPC_GATEWAY_UPSTREAM_ERROR, why);
            http_reply_json_text(call->req, status, text);
            free(text);
            goto out;
        }
        created = true;
    } else {
        const char *why;
        s = session_for(call, sid, false, &why);
        if (s == NULL || s->legacy_sse) {
            proxy_reply_rpc_error(call->req, 404, JSONRPC_INVALID_REQUEST,
                                  s ? "unknown or expired session: initialize again" : why);
            goto out;
        }
        /* MCP-Protocol-Version: an unsupported one was refused before this
         * point (route.c); a supported one that differs from the negotiated
         * version is accepted, as the spec asks nothing more (and the official
         * conformance suite sends such requests). */
    }
    if (created && s->warm_init)
        answer_warm_initialize(call, s, &body->msgs[0]);
    else
        post_messages(call, s, body, created);
out:
    proxy_call_free(call);
}

/* ---- GET: the server's stream, or a resumption ---------------------------------- */

static struct proxy_stream *find_stream(struct proxy_session *s, const char *key)
{
    if (strcmp(key, "g") == 0)
        return &s->get;
    for (struct proxy_stream *st = s->streams; st; st = st->next)
        if (strcmp(st->key, key) == 0)
            return st;
    return NULL;
}

/* Replays ring events of STREAM after SEQ to REQ. */
static void replay(struct proxy_session *s, struct http_request *req, const char *stream,
                   uint64_t after)
{
    for (size_t i = 0; i < s->ring_len; i++) {
        const struct ring_event *e = &s->ring[(s->ring_start + i) % s->ring_cap];
        if (e->seq <= after || strcmp(e->stream, stream) != 0)
            continue;
        char id[48];
        snprintf(id, sizeof(id), "%s_%llu", e->stream, (unsigned long long)e->seq);
        if (http_sse_event(req, id, NULL, e->data, strlen(e->data)) < 0)
            return;
    }
}

static void attach(struct proxy_stream *st, struct http_request *req)
{
    stream_detach(st); /* a newer GET takes the stream over */
    st->req = req;
    st->sse = true;
    st->json_ok = false;
    http_request_on_close(req, on_client_gone, st);
    http_sse_keepalive(req, PROXY_KEEPALIVE_MS);
    if (st == &st->sess->get)
        record_put(st->sess); /* the registry shows the stream at once */
}

static size_t attached_streams(const struct proxy_session *s)
{
    size_t n = s->get.req != NULL;
    for (const struct proxy_stream *st = s->streams; st; st = st->next)
        n += st->req != NULL && st->sse;
    return n;
}

void session_handle_get(struct proxy_call *call)
{
    struct http_request *req = call->req;
    const char *accept = http_request_header(req, "Accept");
    if (accept == NULL || strstr(accept, "text/event-stream") == NULL) {
        proxy_reply_rpc_error(req, 406, JSONRPC_INVALID_REQUEST,
                              "GET needs Accept: text/event-stream");
        proxy_call_free(call);
        return;
    }
    const char *why;
    struct proxy_session *s =
        session_for(call, http_request_header(req, "Mcp-Session-Id"), false, &why);
    /* A 2024-11-05 session has its one stream already: it cannot take a GET. */
    if (s == NULL || s->legacy_sse) {
        const char *sid = http_request_header(req, "Mcp-Session-Id");
        proxy_reply_rpc_error(req, sid ? 404 : 400, JSONRPC_INVALID_REQUEST,
                              sid ? (s ? "unknown or expired session: initialize again" : why)
                                  : "no Mcp-Session-Id: initialize a session first");
        proxy_call_free(call);
        return;
    }
    const char *last = http_request_header(req, "Last-Event-ID");
    char key[24] = "g";
    uint64_t after = s->get.delivered_seq;
    if (last) {
        const char *us = strrchr(last, '_');
        if (us && (size_t)(us - last) < sizeof(key)) {
            memcpy(key, last, (size_t)(us - last));
            key[us - last] = '\0';
            after = strtoull(us + 1, NULL, 10);
        }
    }
    struct proxy_stream *target = find_stream(s, key);
    uint32_t max = call->proxy->cfg->server.limits.max_streams_per_session;
    /* Taking over a stream that has a client does not add one. */
    if (max && (target == NULL || target->req == NULL) && attached_streams(s) >= max) {
        http_set_header(req, "Retry-After", "5");
        proxy_reply_rpc_error(req, 503, JSONRPC_GATEWAY_LIMIT,
                              "stream limit of this session reached "
                              "(server.limits.max_streams_per_session)");
        proxy_call_free(call);
        return;
    }
    if (http_sse_start(req) < 0) {
        http_stream_end(req);
        proxy_call_free(call);
        return;
    }
    replay(s, req, key, after);
    struct proxy_stream *st = find_stream(s, key);
    if (st) {
        attach(st, req);
        if (st == &s->get)
            st->delivered_seq = s->next_seq;
    } else {
        http_stream_end(req); /* a finished POST stream: replay was all there is */
    }
    touch(s);
    proxy_call_free(call);
}

void session_handle_delete(struct proxy_call *call)
{
    const char *why;
    struct proxy_session *s =
        session_for(call, http_request_header(call->req, "Mcp-Session-Id"), true, &why);
    if (s == NULL || s->legacy_sse) {
        proxy_reply_rpc_error(call->req, 404, JSONRPC_INVALID_REQUEST,
                              "unknown or expired session");
    } else {
        session_end(s, "deleted by the client", true);
        http_reply_empty(call->req, 204);
    }
    proxy_call_free(call);
}

/* ---- the 2024-11-05 HTTP+SSE transport -------------------------------------------- */

static void on_legacy_gone(struct http_request *req, void *arg)
{
    struct proxy_stream *st = arg;
    (void)req;
    stream_detach(st);
    /* In the old transport the SSE connection is the session. */
    session_end(st->sess, "the SSE connection closed", false);
}

void session_handle_legacy_sse(struct proxy_call *call, const char *messages_path)
{
    int status;
    const char *why;
    struct proxy_session *s = session_new(call, true, &status, &why, NULL);
    if (s == NULL) {
        proxy_reply_rpc_error(call->req, status, JSONRPC_GATEWAY_LIMIT, why);
        proxy_call_free(call);
        return;
    }
    s->idle_timeout_ms = 0; /* lives as long as its SSE connection */
    if (http_sse_start(call->req) < 0) {
        http_stream_end(call->req);
        session_end(s, "client gone", false);
        proxy_call_free(call);
        return;
    }
    s->get.req = call->req;
    s->get.sse = true;
    proxy_legacy_stream_open(call->req, messages_path, s->id, on_legacy_gone, &s->get);
    proxy_call_free(call);
}

void session_handle_legacy_post(struct proxy_call *call, const char *session_id,
                                const struct guard_body *body, const struct guard_refusal *refusal)
{
    const char *why;
    struct proxy_session *s = session_for(call, session_id, false, &why);
    if (s == NULL || !s->legacy_sse) {
        proxy_reply_rpc_error(call->req, 404, JSONRPC_INVALID_REQUEST,
                              "unknown session: open the SSE stream first");
    } else if (refusal) {
        /* The client waits for the answer on its stream, not on this POST. */
        stream_event(&s->get, refusal->body, strlen(refusal->body));
        http_reply_empty(call->req, 202);
    } else {
        const struct guard_msg *g = &body->msgs[0];
        const char *full = session_full(s, body);
        if (full) {
            char *text = jsonrpc_error_text(g->info.id.kind ? g->orig + g->info.id.off : NULL,
                                            g->info.id.len, JSONRPC_GATEWAY_LIMIT, full);
            stream_event(&s->get, text, strlen(text));
            free(text);
        } else {
            if (forward_message(s, &s->get, g, call->principal) < 0)
                session_end(s, "the upstream process stopped reading its input", true);
        }
        http_reply_empty(call->req, 202);
    }
    proxy_call_free(call);
}

/* ---- the whole proxy ------------------------------------------------------------- */

void sessions_end_all(struct proxy *p, const char *reason)
{
    for (size_t b = 0; b < PROXY_SESSION_BUCKETS; b++)
        while (p->sessions[b])
            session_end(p->sessions[b], reason, true);
}

void sessions_end_grant(struct proxy *p, const char *grant_id)
{
    for (size_t b = 0; b < PROXY_SESSION_BUCKETS; b++) {
        struct proxy_session *s = p->sessions[b];
        while (s) {
            struct proxy_session *next = s->next;
            if (s->grant_id && strcmp(s->grant_id, grant_id) == 0)
                session_end(s, "the authorization of this session ended", true);
            s = next;
        }
    }
}

void sessions_end_id(struct proxy *p, const char *id)
{
    for (struct proxy_session *s = p->sessions[bucket_of(id)]; s; s = s->next)
        if (strcmp(s->id, id) == 0) {
            gw_log(GW_LOG_INFO, "audit", s->id, "session ended by an operator", "route",
                   s->route_name, "subject", s->owner, NULL);
            session_end(s, "ended by an operator", true);
            return;
        }
}

void sessions_end_get_streams(struct proxy *p)
{
    for (size_t b = 0; b < PROXY_SESSION_BUCKETS; b++) {
        struct proxy_session *s = p->sessions[b];
        while (s) {
            struct proxy_session *next = s->next;
            /* A 2024-11-05 session is its SSE connection: it ends with it. */
            if (s->legacy_sse)
                session_end(s, "gateway shutting down", true);
            else
                stream_detach(&s->get);
            s = next;
        }
    }
}

void sessions_free_all(struct proxy *p)
{
    sessions_end_all(p, "gateway shutting down");
    while (p->ended) {
        struct proxy_session *s = p->ended;
        p->ended = s->next;
        session_free(s); /* stdio_child_free kills and reaps what still runs */
    }
}
