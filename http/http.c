/*
 * http: the front end on libevent's evhttp (see http.h for the contract).
 *
 * Owns: the evhttp server, its listeners, the TLS context, the route table,
 * and every struct http_request until the handler finishes it.
 *
 * Two evhttp gaps are filled here:
 * - evhttp 2.1 has no connection count and no accept hook. A connection is
 *   counted from its first request (a table keyed by the evhttp connection,
 *   whose close callback removes it); one that never sends a whole request is
 *   closed by evhttp after request_timeout. (Wrapping each socket in a filter
 *   bufferevent to see it freed loses responses: evhttp shuts the socket down
 *   once the filter, not the socket, has taken the last bytes.)
 * - evhttp 2.1 stops reading while a request is being handled, so it does not
 *   notice a client that hangs up before the reply (it finds out only when a
 *   write fails). A pending request gets an EV_CLOSED (EPOLLRDHUP) watcher on
 *   the socket, which fires the moment the peer closes.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/hash.h"
#include "common/net.h"
#include "common/rand.h"
#include "common/timeutil.h"
#include "common/url.h"
#include "common/xalloc.h"
#include "common/log.h"
#include "common/xevent.h"

#define HTTP_N_METHODS 7
#define HTTP_ROUTE_BUCKETS 64
#define HTTP_MAX_LISTENERS 16
#define HTTP_REQUEST_ID_MAX 64
#define HTTP_DEFAULT_HIGH_WATER (1u << 20)

struct http_route {
    char *path;  /* owned */
    char *label; /* owned */
    unsigned methods;
    unsigned flags;
    uint64_t max_body_bytes;
    http_handler_fn handlers[HTTP_N_METHODS];
    void *args[HTTP_N_METHODS]; /* borrowed */
    struct http_route *next;    /* owned: hash chain */
};

/* One client connection that has sent at least one request. */
struct http_conn {
    struct evhttp_connection *evcon; /* borrowed: evhttp frees it, then calls us */
    struct http_server *srv;         /* borrowed */
    struct http_request *active;     /* borrowed: the request being answered, or NULL */
    struct event *rdhup;             /* owned: EV_CLOSED on the socket, for the whole connection */
    struct http_conn *next;          /* owned: hash chain */
};

struct http_listener {
    struct evhttp_bound_socket *bound; /* owned by evhttp */
    char *unix_path;                   /* owned; unlinked on free */
    int port;
};

struct http_server {
    struct event_base *base; /* borrowed */
    struct evhttp *evhttp;   /* owned */
    SSL_CTX *tls;            /* owned, NULL without TLS */
    struct http_server_options opts;
    struct http_route *routes[HTTP_ROUTE_BUCKETS];
    struct http_listener listeners[HTTP_MAX_LISTENERS];
    size_t n_listeners;
    bool accepting;
    bool paused_for_limit;
    size_t open_connections;
    size_t in_flight;
    http_observer_fn observer;
    void *observer_arg;        /* borrowed */
    struct http_request *live; /* borrowed list of unfinished requests */
    struct http_conn **conns;  /* owned hash table keyed by evcon */
    size_t n_conn_buckets;
};

struct http_request {
    struct http_server *srv;         /* borrowed */
    struct evhttp_request *ev;       /* borrowed from evhttp until finished */
    struct evhttp_connection *evcon; /* borrowed; NULL once evhttp dropped it */
    struct http_conn *conn;          /* borrowed; NULL once the connection closed */
    enum http_method method;
    char *path;  /* owned */
    char *query; /* owned, NULL when absent */
    char *label; /* owned, NULL: "-" */
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    char client_ip[INET6_ADDRSTRLEN];
    bool peer_local;
    bool https;
    bool in_handler; /* the handler has not returned yet */
    bool finished;   /* finish() ran; free when the handler returns */
    bool streaming;
    bool client_gone;
    bool cors;
    bool body_terminated;
    int status;
    uint64_t bytes_out;
    uint64_t started_us;
    http_close_fn close_fn;
    void *close_arg; /* borrowed */
    http_drain_fn drain_fn;
    void *drain_arg;                  /* borrowed */
    struct event *keepalive;          /* owned */
    bool orphan;                      /* the server was freed first */
    struct http_request *prev, *next; /* in srv->live */
};

/* ---- small helpers ---------------------------------------------------- */

static unsigned route_bucket(const char *path)
{
    return hash_str(path) % HTTP_ROUTE_BUCKETS;
}

static int method_index(enum http_method m)
{
    for (int i = 0; i < HTTP_N_METHODS; i++)
        if ((unsigned)m == 1u << i)
            return i;
    return -1;
}

static const char *const method_names[HTTP_N_METHODS] = {"GET",  "POST", "DELETE", "OPTIONS",
                                                         "HEAD", "PUT",  "PATCH"};

static enum http_method method_from_ev(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return HTTP_GET;
    case EVHTTP_REQ_POST: return HTTP_POST;
    case EVHTTP_REQ_DELETE: return HTTP_DELETE;
    case EVHTTP_REQ_OPTIONS: return HTTP_OPTIONS;
    case EVHTTP_REQ_HEAD: return HTTP_HEAD;
    case EVHTTP_REQ_PUT: return HTTP_PUT;
    case EVHTTP_REQ_PATCH: return HTTP_PATCH;
    default: return 0;
    }
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 302: return "Found";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* A client-chosen X-Request-Id is kept only when it is short and plain. */
static bool request_id_is_sane(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > HTTP_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static bool addr_is_trusted(const struct http_server *srv, const struct sockaddr *sa)
{
    for (size_t i = 0; i < srv->opts.n_trusted_proxies; i++)
        if (net_cidr_contains(&srv->opts.trusted_proxies[i], sa))
            return true;
    return false;
}

static bool text_to_sockaddr(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

/*
 * The client address: the peer, unless the peer is a trusted proxy; then the
 * right-most X-Forwarded-For entry that is not itself a trusted proxy
 * (entries further left are client-controlled and never believed).
 */
static void resolve_client(struct http_request *req, const struct sockaddr *peer,
                           const struct evkeyvalq *headers)
{
    req->peer_local = net_sockaddr_is_loopback(peer);
    if (peer->sa_family == AF_UNIX) {
        snprintf(req->client_ip, sizeof(req->client_ip), "unix");
    } else if (peer->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, req->client_ip,
                  sizeof(req->client_ip));
    } else if (peer->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, req->client_ip,
                  sizeof(req->client_ip));
    } else {
        snprintf(req->client_ip, sizeof(req->client_ip), "unknown");
    }
    if (peer->sa_family == AF_UNIX || !addr_is_trusted(req->srv, peer))
        return;

    const char *proto = evhttp_find_header(headers, "X-Forwarded-Proto");
    if (proto)
        req->https = strcasecmp(proto, "https") == 0;
    const char *xff = evhttp_find_header(headers, "X-Forwarded-For");
    if (xff == NULL)
        return;
    char *list = xstrdup(xff);
    for (;;) {
        char *comma = strrchr(list, ',');
        char *entry = comma ? comma + 1 : list;
        while (*entry == ' ' || *entry == '\t')
            entry++;
        char *end = entry + strlen(entry);
        while (end > entry && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        struct sockaddr_storage ss;
        if (!text_to_sockaddr(entry, &ss))
            break; /* garbage: stop at the last address we could trust */
        snprintf(req->client_ip, sizeof(req->client_ip), "%s", entry);
        if (!addr_is_trusted(req->srv, (struct sockaddr *)&ss) || comma == NULL)
            break;
        *comma = '\0';
    }
    free(list);
}

/* ---- request lifetime ------------------------------------------------- */

static void live_unlink(struct http_request *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else if (!req->orphan)
        req->srv->live = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void request_free(struct http_request *req)
{
    if (req->keepalive)
        event_free(req->keepalive);
    free(req->path);
    free(req->query);
    free(req->label);
    if (!req->orphan)
        req->srv->in_flight--;
    free(req);
}

/* libevent has one timeout per connection (the longest gap between bytes):
 * once a response is queued, the wait for the next request gets idle_timeout. */
static void set_idle_timeout(struct http_request *req)
{
    uint64_t ms = req->srv->opts.idle_timeout_ms;
    if (ms == 0 || req->evcon == NULL)
        return;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(req->evcon, &tv);
}

static void report_access(struct http_request *req)
{
    struct http_server *srv = req->srv;
    if (srv->observer == NULL)
        return;
    struct http_access_record rec = {
        .method = method_names[method_index(req->method) < 0 ? 0 : method_index(req->method)],
        .path = req->path,
        .route = req->label ? req->label : "-",
        .request_id = req->request_id,
        .client_ip = req->client_ip,
        .status = req->status,
        .bytes_out = req->bytes_out,
        .duration_us = time_mono_us() - req->started_us,
        .client_gone = req->client_gone,
    };
    srv->observer(&rec, srv->observer_arg);
}

/* Detaches from evhttp's connection callbacks: after this, evhttp owns ev. */
static void request_release(struct http_request *req)
{
    if (!req->streaming)
        set_idle_timeout(req);
    if (req->conn && req->conn->active == req)
        req->conn->active = NULL;
    req->conn = NULL;
    req->evcon = NULL;
    req->ev = NULL;
    if (req->keepalive)
        event_del(req->keepalive);
    if (!req->orphan) {
        report_access(req);
        live_unlink(req);
    }
    req->finished = true;
    if (!req->in_handler)
        request_free(req);
}

static void notify_gone(struct http_request *req)
{
    if (req->client_gone)
        return;
    req->client_gone = true;
    if (req->keepalive)
        event_del(req->keepalive);
    if (req->close_fn)
        req->close_fn(req, req->close_arg);
}

/* ---- connection table ---------------------------------------------------- */

static size_t conn_bucket(const struct http_server *srv, const struct evhttp_connection *evcon)
{
    uintptr_t h = (uintptr_t)evcon;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) % srv->n_conn_buckets;
}

static void conn_table_grow(struct http_server *srv)
{
    size_t old_n = srv->n_conn_buckets;
    struct http_conn **old = srv->conns;
    srv->n_conn_buckets = old_n ? old_n * 2 : 256;
    srv->conns = xcalloc(srv->n_conn_buckets, sizeof(*srv->conns));
    for (size_t b = 0; b < old_n; b++) {
        while (old[b]) {
            struct http_conn *c = old[b];
            old[b] = c->next;
            size_t nb = conn_bucket(srv, c->evcon);
            c->next = srv->conns[nb];
            srv->conns[nb] = c;
        }
    }
    free(old);
}

static void conn_unlink(struct http_server *srv, struct http_conn *conn)
{
    struct http_conn **pp = &srv->conns[conn_bucket(srv, conn->evcon)];
    while (*pp && *pp != conn)
        pp = &(*pp)->next;
    if (*pp)
        *pp = conn->next;
}

static void update_accepting(struct http_server *srv);

/* evhttp is freeing the connection: the client left, a write failed, a timeout. */
static void on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct http_conn *conn = arg;
    struct http_server *srv = conn->srv;
    (void)evcon;
    conn_unlink(srv, conn);
    srv->open_connections--;
    struct http_request *req = conn->active;
    if (conn->rdhup)
        event_free(conn->rdhup);
    free(conn);
    if (req) {
        req->conn = NULL;
        req->evcon = NULL;
        notify_gone(req);
    }
    update_accepting(srv);
}

/*
 * EPOLLRDHUP on a connection's socket: the client hung up. One watcher per
 * connection, for its whole life: adding and removing one per request cost
 * four epoll_ctl per request (make bench). With no request pending there is
 * nothing to tell: evhttp reads the EOF itself and closes the connection;
 * the watcher stops so the level-triggered event does not spin meanwhile.
 */
static void on_conn_rdhup(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *conn = arg;
    (void)fd;
    (void)what;
    event_del(conn->rdhup);
    if (conn->active)
        notify_gone(conn->active);
}

static void watch_hangup(struct http_conn *c)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0)
        return;
    c->rdhup = xevent_new(c->srv->base, fd, EV_CLOSED | EV_PERSIST, on_conn_rdhup, c);
    event_add(c->rdhup, NULL);
}

/* The connection of a request, registered on its first request. */
static struct http_conn *conn_for(struct http_server *srv, struct evhttp_connection *evcon)
{
    if (srv->n_conn_buckets == 0 || srv->open_connections >= srv->n_conn_buckets)
        conn_table_grow(srv);
    size_t b = conn_bucket(srv, evcon);
    for (struct http_conn *c = srv->conns[b]; c; c = c->next)
        if (c->evcon == evcon)
            return c;
    struct http_conn *c = xcalloc(1, sizeof(*c));
    c->evcon = evcon;
    c->srv = srv;
    c->next = srv->conns[b];
    srv->conns[b] = c;
    srv->open_connections++;
    evhttp_connection_set_closecb(evcon, on_conn_closed, c);
    watch_hangup(c);
    update_accepting(srv);
    return c;
}

/* ---- responses -------------------------------------------------------- */

static void add_common_headers(struct http_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    evhttp_add_header(out, "X-Request-Id", req->request_id);
    if (req->cors && evhttp_find_header(out, "Access-Control-Allow-Origin") == NULL)
        evhttp_add_header(out, "Access-Control-Allow-Origin", "*");
}

void http_set_header(struct http_request *req, const char *name, const char *value)
{
    if (req->ev == NULL)
        return;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    /* evhttp refuses values with CR/LF itself (returns -1): header injection is impossible. */
    evhttp_add_header(out, name, value);
}

void http_reply(struct http_request *req, int status, const char *content_type, const void *body,
                size_t len)
{
    req->status = status;
    if (req->ev == NULL || req->streaming) {
        /* client gone already (evhttp detached the request), or misuse */
        if (req->ev && req->streaming)
            evhttp_send_reply_end(req->ev);
        request_release(req);
        return;
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    add_common_headers(req);
    if (content_type && len > 0)
        evhttp_add_header(out, "Content-Type", content_type);
    else if (content_type && evhttp_find_header(out, "Content-Type") == NULL)
        evhttp_add_header(out, "Content-Type", content_type);
    struct evbuffer *buf = evbuffer_new();
    if (req->method == HTTP_HEAD) {
        /* libevent 2.1 drops Content-Length for HEAD but still writes the
         * body (RFC 9110 §9.3.2 forbids it): send the length, not the bytes. */
        char n[32];
        snprintf(n, sizeof(n), "%zu", len);
        evhttp_add_header(out, "Content-Length", n);
    } else if (buf && len > 0) {
        evbuffer_add(buf, body, len);
    }
    req->bytes_out = req->method == HTTP_HEAD ? 0 : len;
    struct evhttp_request *ev = req->ev;
    request_release(req);
    evhttp_send_reply(ev, status, reason_phrase(status), buf);
    if (buf)
        evbuffer_free(buf);
}

void http_reply_json_text(struct http_request *req, int status, const char *json)
{
    http_reply(req, status, "application/json", json, strlen(json));
}

void http_reply_html(struct http_request *req, int status, const char *html)
{
    http_reply(req, status, "text/html; charset=utf-8", html, strlen(html));
}

void http_reply_empty(struct http_request *req, int status)
{
    http_reply(req, status, NULL, NULL, 0);
}

void http_reply_error(struct http_request *req, int status, const char *error,
                      const char *description)
{
    json_t *obj = json_pack("{s:s}", "error", error);
    if (description)
        json_object_set_new(obj, "error_description", json_string(description));
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    http_set_header(req, "Cache-Control", "no-store");
    http_reply_json_text(req, status, text ? text : "{\"error\":\"server_error\"}");
    free(text);
}

int http_stream_start(struct http_request *req, int status, const char *content_type)
{
    if (req->ev == NULL || req->client_gone)
        return -EPIPE;
    if (req->streaming)
        return -EALREADY;
    req->status = status;
    req->streaming = true;
    add_common_headers(req);
    if (content_type)
        evhttp_add_header(evhttp_request_get_output_headers(req->ev), "Content-Type", content_type);
    evhttp_send_reply_start(req->ev, status, reason_phrase(status));
    return 0;
}

static struct evbuffer *stream_output(const struct http_request *req)
{
    if (req->evcon == NULL)
        return NULL;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(req->evcon);
    return bev ? bufferevent_get_output(bev) : NULL;
}

size_t http_stream_buffered(const struct http_request *req)
{
    struct evbuffer *out = stream_output(req);
    return out ? evbuffer_get_length(out) : 0;
}

static void on_chunk_flushed(struct evhttp_connection *evcon, void *arg)
{
    struct http_request *req = arg;
    (void)evcon;
    if (req->drain_fn && !req->client_gone && !req->finished)
        req->drain_fn(req, req->drain_arg);
}

int http_stream_write(struct http_request *req, const void *data, size_t len)
{
    if (req->ev == NULL || req->client_gone || req->evcon == NULL)
        return -EPIPE;
    if (!req->streaming)
        return -EINVAL;
    uint64_t high = req->srv->opts.sse_high_water_bytes ? req->srv->opts.sse_high_water_bytes
                                                        : HTTP_DEFAULT_HIGH_WATER;
    if (http_stream_buffered(req) + len > high && http_stream_buffered(req) > 0)
        return -ENOBUFS;
    struct evbuffer *chunk = evbuffer_new();
    if (chunk == NULL)
        return -ENOMEM;
    evbuffer_add(chunk, data, len);
    req->bytes_out += len;
    /* The callback fires when evhttp's output buffer has fully drained. */
    evhttp_send_reply_chunk_with_cb(req->ev, chunk, on_chunk_flushed, req);
    evbuffer_free(chunk);
    return 0;
}

int http_stream_push(struct http_request *req, const void *data, size_t len)
{
    if (req->ev == NULL || req->client_gone || req->evcon == NULL)
        return -EPIPE;
    if (!req->streaming)
        return -EINVAL;
    struct evbuffer *chunk = evbuffer_new();
    if (chunk == NULL)
        return -ENOMEM;
    evbuffer_add(chunk, data, len);
    req->bytes_out += len;
    evhttp_send_reply_chunk_with_cb(req->ev, chunk, on_chunk_flushed, req);
    evbuffer_free(chunk);
    uint64_t high = req->srv->opts.sse_high_water_bytes ? req->srv->opts.sse_high_water_bytes
                                                        : HTTP_DEFAULT_HIGH_WATER;
    return http_stream_buffered(req) > high ? HTTP_STREAM_FULL : 0;
}

void http_stream_on_drain(struct http_request *req, http_drain_fn fn, void *arg)
{
    req->drain_fn = fn;
    req->drain_arg = arg;
}

void http_stream_end(struct http_request *req)
{
    if (!req->streaming) {
        http_reply_empty(req, req->status ? req->status : 204);
        return;
    }
    struct evhttp_request *ev = req->ev;
    request_release(req);
    if (ev)
        evhttp_send_reply_end(ev);
}

int http_sse_start(struct http_request *req)
{
    http_set_header(req, "Cache-Control", "no-cache");
    http_set_header(req, "X-Accel-Buffering", "no");
    return http_stream_start(req, 200, "text/event-stream");
}

int http_sse_event(struct http_request *req, const char *id, const char *event, const char *data,
                   size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL)
        return -ENOMEM;
    if (id)
        evbuffer_add_printf(buf, "id: %s\n", id);
    if (event)
        evbuffer_add_printf(buf, "event: %s\n", event);
    /* SSE: every line of the payload is its own data: field (WHATWG HTML §9.2.6). */
    /* A trailing newline gives an empty last data: line, so the client's
     * parser rebuilds DATA exactly. */
    size_t pos = 0;
    for (;;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
        if (n > 0 && data[pos + n - 1] == '\r')
            n--;
        evbuffer_add(buf, "data: ", 6);
        evbuffer_add(buf, data + pos, n);
        evbuffer_add(buf, "\n", 1);
        if (nl == NULL)
            break;
        pos = (size_t)(nl - data) + 1;
    }
    evbuffer_add(buf, "\n", 1);
    size_t n = evbuffer_get_length(buf);
    int rc = http_stream_write(req, evbuffer_pullup(buf, -1), n);
    evbuffer_free(buf);
    return rc;
}

int http_sse_comment(struct http_request *req, const char *text)
{
    char line[256];
    int n = snprintf(line, sizeof(line), ": %s\n\n", text);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EINVAL;
    return http_stream_write(req, line, (size_t)n);
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_request *req = arg;
    if (http_sse_comment(req, "keep-alive") == -EPIPE)
        notify_gone(req);
}

void http_sse_keepalive(struct http_request *req, uint64_t interval_ms)
{
    if (interval_ms == 0) {
        if (req->keepalive)
            event_del(req->keepalive);
        return;
    }
    if (req->keepalive == NULL)
        req->keepalive = xevent_new(req->srv->base, -1, EV_PERSIST, on_keepalive, req);
    struct timeval tv = {(time_t)(interval_ms / 1000), (suseconds_t)(interval_ms % 1000) * 1000};
    event_add(req->keepalive, &tv);
}

/* ---- request accessors ----------------------------------------------- */

enum http_method http_request_method(const struct http_request *req)
{
    return req->method;
}

const char *http_request_method_name(const struct http_request *req)
{
    int i = method_index(req->method);
    return i < 0 ? "?" : method_names[i];
}

const char *http_request_path(const struct http_request *req)
{
    return req->path;
}

const char *http_request_query(const struct http_request *req)
{
    return req->query;
}

const char *http_request_id(const struct http_request *req)
{
    return req->request_id;
}

const char *http_request_client_ip(const struct http_request *req)
{
    return req->client_ip;
}

void http_request_set_client_ip(struct http_request *req, const char *ip, bool https)
{
    snprintf(req->client_ip, sizeof(req->client_ip), "%s", ip);
    req->https = https;
    req->peer_local = false;
}

bool http_request_peer_is_local(const struct http_request *req)
{
    return req->peer_local;
}

bool http_request_is_https(const struct http_request *req)
{
    return req->https;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
    if (req->ev == NULL)
        return NULL;
    return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

size_t http_request_header_count(const struct http_request *req, const char *name)
{
    if (req->ev == NULL)
        return 0;
    size_t n = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH (kv, evhttp_request_get_input_headers(req->ev), next) {
        if (strcasecmp(kv->key, name) == 0)
            n++;
    }
    return n;
}

void http_request_foreach_header(const struct http_request *req,
                                 bool (*fn)(const char *name, const char *value, void *arg),
                                 void *arg)
{
    if (req->ev == NULL)
        return;
    struct evkeyval *kv;
    TAILQ_FOREACH (kv, evhttp_request_get_input_headers(req->ev), next) {
        if (!fn(kv->key, kv->value, arg))
            return;
    }
}

const char *http_request_body(struct http_request *req, size_t *len)
{
    if (req->ev == NULL) {
        *len = 0;
        return "";
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
    if (!req->body_terminated) {
        evbuffer_add(in, "", 1);
        req->body_terminated = true;
    }
    size_t n = evbuffer_get_length(in);
    *len = n - 1;
    return (const char *)evbuffer_pullup(in, -1);
}

void http_request_set_label(struct http_request *req, const char *label)
{
    free(req->label);
    req->label = label ? xstrdup(label) : NULL;
}

void http_request_on_close(struct http_request *req, http_close_fn fn, void *arg)
{
    req->close_fn = fn;
    req->close_arg = arg;
}

bool http_request_client_gone(const struct http_request *req)
{
    return req->client_gone;
}

/* ---- routing ---------------------------------------------------------- */

static struct http_route *route_find(const struct http_server *srv, const char *path)
{
    for (struct http_route *r = srv->routes[route_bucket(path)]; r; r = r->next)
        if (strcmp(r->path, path) == 0)
            return r;
    return NULL;
}

int http_route_add(struct http_server *srv, const char *path, unsigned methods, http_handler_fn fn,
                   void *arg, const struct http_route_options *opts)
{
    if (path == NULL || path[0] != '/' || fn == NULL || methods == 0)
        return -EINVAL;
    struct http_route *r = route_find(srv, path);
    if (r == NULL) {
        r = xcalloc(1, sizeof(*r));
        r->path = xstrdup(path);
        unsigned b = route_bucket(path);
        r->next = srv->routes[b];
        srv->routes[b] = r;
    }
    if (opts) {
        r->flags |= opts->flags;
        if (opts->max_body_bytes)
            r->max_body_bytes = opts->max_body_bytes;
        if (opts->label) {
            free(r->label);
            r->label = xstrdup(opts->label);
        }
    }
    if (r->label == NULL)
        r->label = xstrdup(path);
    for (int i = 0; i < HTTP_N_METHODS; i++) {
        if (methods & (1u << i)) {
            r->handlers[i] = fn;
            r->args[i] = arg;
        }
    }
    r->methods |= methods;
    return 0;
}

static void route_free(struct http_route *r)
{
    free(r->path);
    free(r->label);
    free(r);
}

void http_route_remove_labelled(struct http_server *srv, const char *label_prefix)
{
    size_t n = strlen(label_prefix);
    for (int b = 0; b < HTTP_ROUTE_BUCKETS; b++) {
        struct http_route **pp = &srv->routes[b];
        while (*pp) {
            struct http_route *r = *pp;
            if (strncmp(r->label, label_prefix, n) == 0) {
                *pp = r->next;
                route_free(r);
            } else {
                pp = &r->next;
            }
        }
    }
}

static void build_allow(unsigned methods, char *out, size_t cap)
{
    out[0] = '\0';
    if (methods & HTTP_GET)
        methods |= HTTP_HEAD;
    for (int i = 0; i < HTTP_N_METHODS; i++) {
        if (!(methods & (1u << i)))
            continue;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", len ? ", " : "", method_names[i]);
    }
}

/* CORS preflight for the routes that allow cross-origin reads (well-known documents). */
static void reply_preflight(struct http_request *req, const struct http_route *route)
{
    char allow[96];
    build_allow(route->methods | HTTP_OPTIONS, allow, sizeof(allow));
    http_set_header(req, "Access-Control-Allow-Methods", allow);
    http_set_header(req, "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, "
                    "Last-Event-ID");
    http_set_header(req, "Access-Control-Max-Age", "86400");
    http_reply_empty(req, 204);
}

static void dispatch(struct http_request *req)
{
    struct http_route *route = route_find(req->srv, req->path);
    if (route == NULL) {
        http_reply_error(req, 404, "not_found", "no such endpoint");
        return;
    }
    http_request_set_label(req, route->label);
    req->cors = (route->flags & HTTP_ROUTE_CORS) != 0;

    enum http_method m = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    int idx = method_index(m);
    if (idx < 0 || !(route->methods & m)) {
        if (req->method == HTTP_OPTIONS && req->cors) {
            reply_preflight(req, route);
            return;
        }
        char allow[96];
        build_allow(route->methods | (req->cors ? HTTP_OPTIONS : 0), allow, sizeof(allow));
        http_set_header(req, "Allow", allow);
        http_reply_error(req, 405, "method_not_allowed", "method not allowed on this endpoint");
        return;
    }
    if (route->max_body_bytes) {
        size_t len = evbuffer_get_length(evhttp_request_get_input_buffer(req->ev));
        if (len > route->max_body_bytes) {
            char msg[96];
            snprintf(msg, sizeof(msg), "request body exceeds %llu bytes",
                     (unsigned long long)route->max_body_bytes);
            http_reply_error(req, 413, "invalid_request", msg);
            return;
        }
    }
    route->handlers[idx](req, route->args[idx]);
}

static bool content_length_conflicts(const struct evkeyvalq *headers)
{
    const char *first = NULL;
    struct evkeyval *kv;
    TAILQ_FOREACH (kv, headers, next) {
        if (strcasecmp(kv->key, "Content-Length") != 0)
            continue;
        if (first == NULL)
            first = kv->value;
        else if (strcmp(first, kv->value) != 0)
            return true;
    }
    return false;
}

/* evhttp's single entry point: every parsed request lands here. */
static void on_request(struct evhttp_request *ev, void *arg)
{
    struct http_server *srv = arg;
    struct http_request *req = xcalloc(1, sizeof(*req));
    req->started_us = time_mono_us();
    req->srv = srv;
    req->ev = ev;
    req->evcon = evhttp_request_get_connection(ev);
    if (req->evcon) {
        req->conn = conn_for(srv, req->evcon);
        req->conn->active = req;
    }
    req->method = method_from_ev(evhttp_request_get_command(ev));
    req->https = srv->tls != NULL;
    srv->in_flight++;
    req->next = srv->live;
    if (srv->live)
        srv->live->prev = req;
    srv->live = req;

    struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
    const char *rid = evhttp_find_header(in, "X-Request-Id");
    if (rid && request_id_is_sane(rid))
        snprintf(req->request_id, sizeof(req->request_id), "%s", rid);
    else
        rand_hex(req->request_id, 16);

    const struct sockaddr *peer = req->evcon ? evhttp_connection_get_addr(req->evcon) : NULL;
    if (peer)
        resolve_client(req, peer, in);
    else
        snprintf(req->client_ip, sizeof(req->client_ip), "unix");
    if (peer == NULL)
        req->peer_local = true;

    const char *uri = evhttp_request_get_uri(ev);
    const char *q = strchr(uri, '?');
    req->path = q ? xstrndup(uri, (size_t)(q - uri)) : xstrdup(uri);
    req->query = q ? xstrdup(q + 1) : NULL;
    char *hash = strchr(req->path, '#');
    if (hash)
        *hash = '\0';

    req->in_handler = true;
    if (content_length_conflicts(in)) {
        /* RFC 9112 §6.3: differing Content-Length values mean the message
         * framing is unknown; libevent used the first and would parse the rest
         * as another request (smuggling). Answer 400 and close. */
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
        http_reply_error(req, 400, "invalid_request", "conflicting Content-Length headers");
    } else if (req->method == 0 || req->path[0] != '/')
        http_reply_error(req, 400, "invalid_request", "unsupported method or request target");
    else
        dispatch(req);
    req->in_handler = false;
    if (req->finished)
        request_free(req);
}

/* ---- connections and listeners ----------------------------------------- */

static void update_accepting(struct http_server *srv)
{
    bool want = srv->accepting && (srv->opts.max_connections == 0 ||
                                   srv->open_connections < srv->opts.max_connections);
    if (want == !srv->paused_for_limit)
        return;
    for (size_t i = 0; i < srv->n_listeners; i++) {
        struct evconnlistener *l = evhttp_bound_socket_get_listener(srv->listeners[i].bound);
        if (l == NULL)
            continue;
        if (want)
            evconnlistener_enable(l);
        else
            evconnlistener_disable(l);
    }
    srv->paused_for_limit = !want;
}

/* TLS: evhttp asks for each accepted connection's bufferevent. */
static struct bufferevent *on_new_tls_connection(struct event_base *base, void *arg)
{
    struct http_server *srv = arg;
    SSL *ssl = SSL_new(srv->tls);
    if (ssl == NULL)
        return NULL;
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static int parse_listen_spec(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        const char *path = spec + 5;
        if (path[0] != '/' || strlen(path) >= sizeof(un->sun_path))
            return -EINVAL;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        *len = sizeof(*un);
        return 0;
    }
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
            return -EINVAL;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535)
        return -EINVAL;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (!text_to_sockaddr(host, ss))
        return -EINVAL;
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
        *len = sizeof(struct sockaddr_in);
    } else {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
        *len = sizeof(struct sockaddr_in6);
    }
    return 0;
}

static int open_listen_socket(const struct sockaddr_storage *ss, socklen_t len, char **err_out,
                              const char *spec)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (ss->ss_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (ss->ss_family == AF_UNIX) {
        const char *path = ((const struct sockaddr_un *)ss)->sun_path;
        struct stat st;
        /* Replace a stale socket left by a crash; never unlink anything else. */
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path);
    }
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 1024) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    *err_out = xasprintf("cannot listen on %s: %s", spec, strerror(e));
    if (fd >= 0)
        close(fd);
    return -e;
}

int http_server_listen(struct http_server *srv, const char *spec, char **err_out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    *err_out = NULL;
    if (srv->n_listeners == HTTP_MAX_LISTENERS) {
        *err_out = xasprintf("too many listeners (at most %d)", HTTP_MAX_LISTENERS);
        return -E2BIG;
    }
    if (parse_listen_spec(spec, &ss, &len) < 0) {
        *err_out = xasprintf("bad listen address \"%s\" (want host:port, [v6]:port or "
                             "unix:/path)",
                             spec);
        return -EINVAL;
    }
    int fd = open_listen_socket(&ss, len, err_out, spec);
    if (fd < 0)
        return fd;
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(srv->evhttp, fd);
    if (bound == NULL) {
        close(fd);
        *err_out = xasprintf("cannot listen on %s: evhttp refused the socket", spec);
        return -EIO;
    }
    struct http_listener *l = &srv->listeners[srv->n_listeners++];
    l->bound = bound;
    if (ss.ss_family == AF_UNIX) {
        l->unix_path = xstrdup(((struct sockaddr_un *)&ss)->sun_path);
    } else {
        struct sockaddr_storage got;
        socklen_t got_len = sizeof(got);
        getsockname(fd, (struct sockaddr *)&got, &got_len);
        l->port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                                 : ((struct sockaddr_in6 *)&got)->sin6_port);
    }
    return 0;
}

int http_server_port(const struct http_server *srv)
{
    for (size_t i = 0; i < srv->n_listeners; i++)
        if (srv->listeners[i].port)
            return srv->listeners[i].port;
    return 0;
}

static SSL_CTX *tls_context_new(const char *cert, const char *key, char **err_out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        goto fail;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        goto fail;
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    return ctx;
fail:;
    char detail[256];
    ERR_error_string_n(ERR_get_error(), detail, sizeof(detail));
    *err_out = xasprintf("TLS setup failed (cert %s, key %s): %s", cert, key, detail);
    SSL_CTX_free(ctx);
    return NULL;
}

void http_server_set_limits(struct http_server *srv, const struct http_server_options *opts)
{
    SSL_CTX *tls = srv->tls;
    srv->opts = *opts;
    srv->tls = tls;
    if (opts->max_body_bytes)
        evhttp_set_max_body_size(srv->evhttp, (ev_ssize_t)opts->max_body_bytes);
    if (opts->max_header_bytes)
        evhttp_set_max_headers_size(srv->evhttp, (ev_ssize_t)opts->max_header_bytes);
    if (opts->request_timeout_ms) {
        struct timeval tv = {(time_t)(opts->request_timeout_ms / 1000),
                             (suseconds_t)(opts->request_timeout_ms % 1000) * 1000};
        evhttp_set_timeout_tv(srv->evhttp, &tv);
    }
    update_accepting(srv);
}

struct http_server *http_server_new(struct event_base *base, const struct http_server_options *opts,
                                    char **err_out)
{
    *err_out = NULL;
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    srv->base = base;
    srv->accepting = true;
    srv->evhttp = evhttp_new(base);
    if (srv->evhttp == NULL) {
        *err_out = xstrdup("cannot create the HTTP server");
        free(srv);
        return NULL;
    }
    if (opts->tls_cert_file) {
        srv->tls = tls_context_new(opts->tls_cert_file, opts->tls_key_file, err_out);
        if (srv->tls == NULL) {
            evhttp_free(srv->evhttp);
            free(srv);
            return NULL;
        }
    }
    evhttp_set_allowed_methods(srv->evhttp, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_OPTIONS | EVHTTP_REQ_HEAD |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(srv->evhttp, "application/json");
    evhttp_set_gencb(srv->evhttp, on_request, srv);
    if (srv->tls)
        evhttp_set_bevcb(srv->evhttp, on_new_tls_connection, srv);
    http_server_set_limits(srv, opts);
    return srv;
}

void http_server_set_observer(struct http_server *srv, http_observer_fn fn, void *arg)
{
    srv->observer = fn;
    srv->observer_arg = arg;
}

void http_server_stop_accepting(struct http_server *srv)
{
    srv->accepting = false;
    for (size_t i = 0; i < srv->n_listeners; i++) {
        if (srv->listeners[i].bound)
            evhttp_del_accept_socket(srv->evhttp, srv->listeners[i].bound);
        srv->listeners[i].bound = NULL;
        if (srv->listeners[i].unix_path) {
            unlink(srv->listeners[i].unix_path);
            free(srv->listeners[i].unix_path);
            srv->listeners[i].unix_path = NULL;
        }
    }
    srv->n_listeners = 0;
}

size_t http_server_in_flight(const struct http_server *srv)
{
    return srv->in_flight;
}

size_t http_server_open_connections(const struct http_server *srv)
{
    return srv->open_connections;
}

void http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    http_server_stop_accepting(srv);
    /*
     * Requests still pending belong to handlers that will finish them later
     * (or never, at exit). Cut them loose from evhttp and from this server
     * first, so a late finish frees only our own struct.
     */
    while (srv->live) {
        struct http_request *req = srv->live;
        srv->live = req->next;
        req->prev = req->next = NULL;
        req->orphan = true;
        req->ev = NULL;
        if (req->conn)
            req->conn->active = NULL;
        req->conn = NULL;
        req->evcon = NULL;
        if (req->keepalive)
            event_del(req->keepalive);
        notify_gone(req);
    }
    evhttp_free(srv->evhttp); /* closes every connection: on_conn_closed empties the table */
    free(srv->conns);
    for (int b = 0; b < HTTP_ROUTE_BUCKETS; b++) {
        while (srv->routes[b]) {
            struct http_route *r = srv->routes[b];
            srv->routes[b] = r->next;
            route_free(r);
        }
    }
    SSL_CTX_free(srv->tls);
    free(srv);
}

/* ---- form and query decoding ------------------------------------------ */

/*
 * libevent's evhttp_parse_query_str() does not decode '+' (it calls
 * evhttp_decode_uri with decode_plus off) and passes malformed escapes such
 * as "%zz" through unchanged; OAuth needs both done right, so decode here.
 */
static char *form_decode(const char *s, size_t n, int *err)
{
    char *out = url_pct_decode(s, n, true, NULL);
    if (out == NULL)
        *err = -EINVAL;
    return out;
}

int http_params_parse(const char *text, size_t len, struct http_params *out)
{
    http_params_clear(out);
    size_t pos = 0;
    int err = 0;
    while (pos < len) {
        const char *start = text + pos;
        const char *amp = memchr(start, '&', len - pos);
        size_t n = amp ? (size_t)(amp - start) : len - pos;
        pos += n + (amp ? 1 : 0);
        if (n == 0)
            continue;
        const char *eq = memchr(start, '=', n);
        size_t name_len = eq ? (size_t)(eq - start) : n;
        char *name = form_decode(start, name_len, &err);
        char *value = eq ? form_decode(eq + 1, n - name_len - 1, &err) : xstrdup("");
        if (name == NULL || value == NULL) {
            free(name);
            free(value);
            http_params_clear(out);
            return -EINVAL;
        }
        out->items = xrealloc(out->items, (out->len + 1) * sizeof(*out->items));
        out->items[out->len].name = name;
        out->items[out->len].value = value;
        out->len++;
    }
    return 0;
}

const char *http_params_get(const struct http_params *params, const char *name)
{
    for (size_t i = 0; i < params->len; i++)
        if (strcmp(params->items[i].name, name) == 0)
            return params->items[i].value;
    return NULL;
}

size_t http_params_count(const struct http_params *params, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < params->len; i++)
        if (strcmp(params->items[i].name, name) == 0)
            n++;
    return n;
}

void http_params_clear(struct http_params *params)
{
    for (size_t i = 0; i < params->len; i++) {
        free(params->items[i].name);
        free(params->items[i].value);
    }
    free(params->items);
    params->items = NULL;
    params->len = 0;
}

char *http_urlencode(const char *text)
{
    return evhttp_uriencode(text, -1, 0);
}
