/*
 * http: the front end on libevent's evhttp (see http.h for the contract).
 *
 * Owns: the evhttp server, its listeners, the TLS context, the route table,
 * every client connection from accept to close (and through its lingering
 * close), and every struct http_request until the handler finishes it.
 *
 * evhttp 2.1 parses requests itself and offers no hook between accept and a
 * complete request, so the gaps the December review found (F3, F4, F13) are
 * closed here, in front of it:
 * - Connections are ours from accept: evhttp asks on_new_connection() for
 *   each accepted socket's bufferevent (evhttp_set_bevcb), so the count,
 *   max_connections and the per-address cap (checked as soon as the socket
 *   is known, on the next loop turn) apply before a byte is read. accept()
 *   failing with EMFILE/ENFILE pauses the listeners for a moment (an
 *   evconnlistener error callback) instead of spinning on a level-triggered
 *   listener.
 * - The request gate: an evbuffer callback on each connection's input
 *   buffer sees the bytes the socket delivered before evhttp's read callback
 *   does, and moves them into conn->staged. The gate frames requests itself
 *   (http_frame.h: the smuggling rules), routes the head and applies the
 *   route's body limit before any body is buffered, runs the total header
 *   and body deadlines, and hands evhttp one canonical request at a time:
 *   the head rebuilt from the fields it parsed, and the body re-encoded as
 *   chunks, so evhttp never frames anything the gate did not. A request the
 *   gate refuses (400, 408, 413, 501) reaches evhttp as a bodiless head
 *   marked with the verdict (conn->verdict), and on_request answers it with
 *   the route's error format, X-Request-Id and Connection: close.
 * - Lingering close (as nginx does): once such an answer is written, evhttp
 *   closes its descriptor; a duplicate of it keeps reading and discarding
 *   what the client still sends, within lingering_bytes, lingering_time and
 *   lingering_timeout, so the client reads the answer instead of a reset.
 * - evhttp 2.1 stops reading while a request is being handled, so it does
 *   not notice a client that hangs up before the reply. Each connection has
 *   an EV_CLOSED (EPOLLRDHUP) watcher on its socket, which fires the moment
 *   the peer closes.
 * libevent details relied on (2.1.12, checked in its source): the
 *   bufferevent's callback argument is the evhttp_connection (checked with
 *   evhttp_connection_get_bufferevent); evbuffer callbacks on the input run
 *   inside the socket read, before the bufferevent's read callback;
 *   evhttp_send_done() calls a request's on_complete callback before it
 *   decides to close or to read the next request.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
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
#include "common/panic.h"
#include "common/rand.h"
#include "common/timeutil.h"
#include "common/url.h"
#include "common/xalloc.h"
#include "common/log.h"
#include "common/xevent.h"
#include "http/http_frame.h"

#define HTTP_N_METHODS 7
#define HTTP_ROUTE_BUCKETS 64
#define HTTP_MAX_LISTENERS 16
#define HTTP_REQUEST_ID_MAX 64
#define HTTP_DEFAULT_HIGH_WATER (1u << 20)
#define HTTP_DEFAULT_MAX_HEADER (16u << 10)
#define HTTP_DEFAULT_LINGER_BYTES (64ull << 20)
#define HTTP_DEFAULT_LINGER_MS 30000u
#define HTTP_DEFAULT_LINGER_GAP_MS 5000u
#define HTTP_ACCEPT_PAUSE_MS 250u
/* evhttp's own head limit sits above the gate's: a rebuilt head may carry
 * "Transfer-Encoding: chunked" or "Connection: close" the client's did not. */
#define HTTP_HEAD_SLACK 1024u
#define HTTP_CHUNK_LINE_MAX 4096u
/* While a request is with evhttp, input waits in the bufferevent. Past this
 * much its read high-water mark stops reading, so TCP pushes back on a
 * pipelining client (overshoot: one read, HTTP_IO_TURN_BYTES). The mark is
 * set only then (on_input) and cleared when the answer is complete: while it
 * is set, libevent re-arms the read event on every change to the input
 * buffer, a dozen times a request as evhttp parses a head line by line. */
#define HTTP_BUSY_INPUT_MAX (64u << 10)
/* Pipelined bytes staged ahead of the request being answered: past this the
 * client is flooding, and the connection is closed. */
#define HTTP_STAGED_MAX (1u << 20)
/* libevent reads and writes at most 16 KiB per socket per loop turn by default
 * (bufferevent's MAX_SINGLE_READ/WRITE): a 1 MiB body took 64 turns each way,
 * an epoll_wait and a syscall per 16 KiB. A turn moves up to this much now;
 * a read still takes only what the socket holds, so idle connections pay
 * nothing for it. */
#define HTTP_IO_TURN_BYTES (256u << 10)
/* libevent 2.1's evbuffer_read reads at most this much per call
 * (EVBUFFER_MAX_READ in buffer.c, not configurable); see read_more. */
#define LIBEVENT_MAX_READ 4096u
#define HTTP_READ_MORE_STEP (64u << 10)
#define HTTP_IP_BUCKETS 4096u

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

/* Where the gate is in the byte stream of a connection. */
enum gate_rx {
    RX_HEAD = 0,   /* reading a request head */
    RX_LENGTH,     /* a Content-Length body: body_left bytes to come */
    RX_CHUNK_SIZE, /* chunked: a chunk-size line */
    RX_CHUNK_DATA, /* chunked: body_left bytes of chunk data */
    RX_CHUNK_END,  /* chunked: the line end after chunk data */
    RX_TRAILER,    /* chunked: trailer lines up to the empty line */
    RX_DONE,       /* the connection closes after the current answer: input is dropped */
};

/* A refusal the gate made; on_request answers it. */
struct http_verdict {
    int status;        /* 0: none */
    const char *error; /* static: the OAuth-style error code */
    char message[160];
};

/* The number of open connections from one client address (IPv6: its /64). */
struct http_ip_slot {
    unsigned char key[17]; /* address family, then the address bytes */
    uint32_t count;
    struct http_ip_slot *next; /* owned: hash chain */
};

/* One client connection, from accept to close (lingering included). */
struct http_conn {
    struct http_server *srv; /* borrowed */
    struct bufferevent *bev; /* one reference held (bufferevent_incref) until evhttp freed it */
    struct evbuffer_cb_entry *input_cb; /* borrowed: the gate's callback on bev's input */
    struct evhttp_connection
        *evcon; /* borrowed: set up on the loop turn after accept; NULL once freed */
    struct http_request *active; /* borrowed: the request being answered, or NULL */
    bool peer_gone;              /* the peer hung up while no request was being answered */
    struct event *rdhup;         /* owned: EV_CLOSED on the socket, for the whole connection */
    struct event *kick;          /* owned: deferred work (set-up, a close) */
    struct event *deadline;      /* owned: the header or the body deadline */
    struct evbuffer *staged;     /* owned: bytes read and not handed to evhttp yet */
    struct http_ip_slot *ip;     /* borrowed: this connection's address count, NULL if exempt */
    enum gate_rx rx;
    bool set_up;
    bool moving;      /* the gate itself is changing the input buffer */
    bool in_evhttp;   /* a request was handed over and its answer is not complete */
    bool close_after; /* the current answer ends the connection (lingering) */
    bool close_now;   /* the kick closes the connection */
    bool deadline_armed;
    bool line_checked;     /* the request line of the head being read was judged */
    bool input_capped;     /* the read high-water mark (HTTP_BUSY_INPUT_MAX) is set */
    bool idle_timeout_set; /* evhttp's connection timeout is idle_timeout already */
    size_t head_scan;
    uint64_t body_left;
    uint64_t body_seen;
    uint64_t body_limit;
    uint64_t trailer_bytes;
    struct http_verdict verdict;
    int linger_fd;                  /* the socket while lingering, else -1 (linger_bev's) */
    struct bufferevent *linger_bev; /* a reference, held while lingering: it closes the socket */
    struct event *linger_ev;        /* owned */
    uint64_t linger_until_us;
    uint64_t linger_read;
    struct http_conn *next;                /* owned: hash chain keyed by evcon */
    struct http_conn *all_prev, *all_next; /* srv->all: every connection */
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
    bool accept_paused;         /* accept() failed (EMFILE…): listeners off until accept_timer */
    bool listeners_off;         /* the listeners are disabled now */
    struct event *accept_timer; /* owned */
    size_t open_connections;
    size_t in_flight;
    http_observer_fn observer;
    void *observer_arg;        /* borrowed */
    struct http_request *live; /* borrowed list of unfinished requests */
    struct http_conn **conns;  /* owned hash table keyed by evcon (connections set up) */
    size_t n_conn_buckets;
    size_t n_conns_hashed;
    struct http_conn *all;          /* owned list of every connection */
    struct http_ip_slot **ip_slots; /* owned hash table, HTTP_IP_BUCKETS, NULL until needed */
    uint32_t ip_seed;
    /* Request ids: a random prefix per server, then a counter. Unique, not
     * secret (they are logged and echoed), and no RAND_bytes per request:
     * OpenSSL's fork check makes that a getpid(2) each time. */
    char rid_prefix[17];
    time_t date_sec; /* the second DATE was formatted for */
    char date[64];   /* that second as an IMF-fixdate, the Date of every answer in it */
    uint64_t rid_seq;
    uint64_t ip_refused;             /* connections refused by max_connections_per_ip */
    uint64_t ip_refused_logged;      /* ip_refused at the last log line */
    uint64_t ip_refused_log_us;      /* when that line was written */
    struct http_server *next_server; /* the registry the accept error callback searches */
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
    struct event *gone_ev; /* owned: tells a close_fn registered after the peer left */
    void *close_arg;       /* borrowed */
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
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
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
 * Every value of header NAME, in order, joined with ", " (RFC 9110 §5.3: a
 * list field sent as several lines means the same as one line). Owned by
 * the caller; NULL when the header is absent.
 */
static char *joined_header(const struct evkeyvalq *headers, const char *name)
{
    char *out = NULL;
    struct evkeyval *kv;
    TAILQ_FOREACH (kv, headers, next) {
        if (strcasecmp(kv->key, name) != 0)
            continue;
        char *more = out ? xasprintf("%s, %s", out, kv->value) : xstrdup(kv->value);
        free(out);
        out = more;
    }
    return out;
}

/*
 * The client address: the peer, unless the peer is a trusted proxy; then the
 * right-most X-Forwarded-For entry that is not itself a trusted proxy
 * (entries further left are client-controlled and never believed). Every
 * X-Forwarded-For line counts, joined in order: a proxy that adds a line of
 * its own instead of appending to the client's puts the address it saw last.
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

    /* The nearest proxy's word is the last element of the last line. */
    char *proto = joined_header(headers, "X-Forwarded-Proto");
    if (proto) {
        const char *last = strrchr(proto, ',');
        last = last ? last + 1 : proto;
        last += strspn(last, " \t");
        req->https =
            strncasecmp(last, "https", 5) == 0 && strspn(last + 5, " \t") == strlen(last + 5);
        free(proto);
    }
    char *list = joined_header(headers, "X-Forwarded-For");
    if (list == NULL)
        return;
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
    if (req->gone_ev)
        event_free(req->gone_ev);
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
    /* evhttp keeps it for the connection's life: setting it again re-arms two events */
    if (req->conn) {
        if (req->conn->idle_timeout_set)
            return;
        req->conn->idle_timeout_set = true;
    }
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

/* ---- responses -------------------------------------------------------- */

static void add_common_headers(struct http_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    evhttp_add_header(out, "X-Request-Id", req->request_id);
    /* evhttp formats a Date for every answer that has none (time, gmtime_r, snprintf):
     * once a second is enough. */
    struct http_server *srv = req->srv;
    time_t now = time(NULL);
    if (now != srv->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        if (evutil_date_rfc1123(srv->date, sizeof(srv->date), &tm) <= 0)
            srv->date[0] = '\0';
        srv->date_sec = now;
    }
    if (srv->date[0])
        evhttp_add_header(out, "Date", srv->date);
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

/*
 * An answer made outside its request's handler (the upstream answered later)
 * is queued in the connection's output, where libevent would write it on the
 * next turn of the loop, after an epoll_wait that reports the socket writable,
 * which it nearly always is. Writing it now saves that turn; evhttp learns it
 * was written from its write callback, triggered here as libevent would have.
 * What the socket does not take goes the usual way. Not inside a handler:
 * evhttp's read path is still on the stack then, and a finished answer may
 * free its connection. Not on TLS, whose bytes only OpenSSL may write. C may
 * be gone when this returns.
 */
static void write_now(struct http_conn *c)
{
    if (c->srv->tls || c->bev == NULL)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0)
        return;
    int n = evbuffer_write(out, bufferevent_getfd(c->bev));
    if (n > 0 && evbuffer_get_length(out) == 0)
        bufferevent_trigger(c->bev, EV_WRITE, 0);
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
    if (req->method == HTTP_HEAD) {
        /* libevent 2.1 drops Content-Length for HEAD but still writes the
         * body (RFC 9110 §9.3.2 forbids it): send the length, not the bytes. */
        char n[32];
        snprintf(n, sizeof(n), "%zu", len);
        evhttp_add_header(out, "Content-Length", n);
    } else if (len > 0 && evbuffer_add(evhttp_request_get_output_buffer(req->ev), body, len) != 0) {
        GW_PANIC("cannot buffer an answer"); /* out of memory */
    }
    req->bytes_out = req->method == HTTP_HEAD ? 0 : len;
    struct evhttp_request *ev = req->ev;
    struct http_conn *conn = req->in_handler ? NULL : req->conn;
    request_release(req);
    /* the body is in ev's output buffer already: evhttp sends that (no buffer of our own) */
    evhttp_send_reply(ev, status, reason_phrase(status), NULL);
    if (conn)
        write_now(conn);
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

static uint64_t high_water(const struct http_request *req)
{
    return req->srv->opts.sse_high_water_bytes ? req->srv->opts.sse_high_water_bytes
                                               : HTTP_DEFAULT_HIGH_WATER;
}

/* Queues one chunk; the callback fires when evhttp's output buffer has fully drained. */
static int queue_chunk(struct http_request *req, const void *data, size_t len)
{
    struct evbuffer *chunk = evbuffer_new();
    if (chunk == NULL)
        return -ENOMEM;
    evbuffer_add(chunk, data, len);
    req->bytes_out += len;
    evhttp_send_reply_chunk_with_cb(req->ev, chunk, on_chunk_flushed, req);
    evbuffer_free(chunk);
    return 0;
}

static int stream_check(const struct http_request *req)
{
    if (req->ev == NULL || req->client_gone || req->evcon == NULL)
        return -EPIPE;
    return req->streaming ? 0 : -EINVAL;
}

int http_stream_write(struct http_request *req, const void *data, size_t len)
{
    int rc = stream_check(req);
    if (rc < 0)
        return rc;
    if (http_stream_buffered(req) + len > high_water(req) && http_stream_buffered(req) > 0)
        return -ENOBUFS;
    return queue_chunk(req, data, len);
}

int http_stream_push(struct http_request *req, const void *data, size_t len)
{
    int rc = stream_check(req);
    if (rc == 0)
        rc = queue_chunk(req, data, len);
    if (rc < 0)
        return rc;
    return http_stream_buffered(req) > high_water(req) ? HTTP_STREAM_FULL : 0;
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

/* The first field named NAME (ASCII case-insensitive; the gate admits only tchar
 * names). evhttp_find_header does the same a byte at a time through a lower-case
 * table, and a request asks for a dozen names: the first letter rules most out. */
const char *http_request_header(const struct http_request *req, const char *name)
{
    if (req->ev == NULL)
        return NULL;
    unsigned char first = (unsigned char)(name[0] | 0x20);
    struct evkeyval *kv;
    TAILQ_FOREACH (kv, evhttp_request_get_input_headers(req->ev), next) {
        if ((unsigned char)(kv->key[0] | 0x20) == first && strcasecmp(kv->key, name) == 0)
            return kv->value;
    }
    return NULL;
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

static void on_gone_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct http_request *req = arg;
    (void)fd;
    (void)what;
    if (req->close_fn)
        req->close_fn(req, req->close_arg);
}

void http_request_on_close(struct http_request *req, http_close_fn fn, void *arg)
{
    req->close_fn = fn;
    req->close_arg = arg;
    /* The peer already left (before the handler ran): it is told from the loop, never
     * inside this call. */
    if (fn && req->client_gone) {
        if (req->gone_ev == NULL)
            req->gone_ev = xevtimer_new(req->srv->base, on_gone_deferred, req);
        event_active(req->gone_ev, EV_TIMEOUT, 1);
    }
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

/* ---- connections: the table, counts, per-address caps -------------------- */

static void update_accepting(struct http_server *srv);
static void gate_run(struct http_conn *c);
static void conn_destroy(struct http_conn *c);

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

static void conn_hash_insert(struct http_server *srv, struct http_conn *c)
{
    if (srv->n_conn_buckets == 0 || srv->n_conns_hashed >= srv->n_conn_buckets)
        conn_table_grow(srv);
    size_t b = conn_bucket(srv, c->evcon);
    c->next = srv->conns[b];
    srv->conns[b] = c;
    srv->n_conns_hashed++;
}

static void conn_hash_unlink(struct http_server *srv, struct http_conn *c)
{
    if (srv->n_conn_buckets == 0)
        return;
    struct http_conn **pp = &srv->conns[conn_bucket(srv, c->evcon)];
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = c->next;
        srv->n_conns_hashed--;
    }
    c->next = NULL;
}

static struct http_conn *conn_find(const struct http_server *srv,
                                   const struct evhttp_connection *evcon)
{
    if (srv->n_conn_buckets == 0)
        return NULL;
    for (struct http_conn *c = srv->conns[conn_bucket(srv, evcon)]; c; c = c->next)
        if (c->evcon == evcon)
            return c;
    return NULL;
}

/* The per-address key: IPv4 (IPv4-mapped IPv6 too) as is, IPv6 by its /64. */
static bool ip_key(const struct sockaddr_storage *ss, unsigned char key[17])
{
    memset(key, 0, 17);
    if (ss->ss_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return true;
    }
    if (ss->ss_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
        key[0] = 4;
        memcpy(key + 1, a->s6_addr + 12, 4);
    } else {
        key[0] = 6;
        memcpy(key + 1, a->s6_addr, 8); /* one client site is a /64 */
    }
    return true;
}

static uint32_t ip_bucket(const struct http_server *srv, const unsigned char key[17])
{
    uint32_t h = 2166136261u ^ srv->ip_seed;
    for (int i = 0; i < 17; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % HTTP_IP_BUCKETS;
}

static void ip_refused_log(struct http_server *srv, const struct sockaddr_storage *ss)
{
    srv->ip_refused++;
    uint64_t now = time_mono_us();
    if (srv->ip_refused_log_us && now - srv->ip_refused_log_us < 10 * 1000000ull)
        return; /* one line per 10 s: a flood must not flood the log */
    char addr[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, addr, sizeof(addr));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, addr, sizeof(addr));
    struct gw_log_line *l = gw_log_begin(GW_LOG_WARN, "http", NULL,
                                         "connection refused: too many from one client address");
    gw_log_str(l, "client_ip", addr);
    gw_log_int(l, "max_connections_per_ip", srv->opts.max_connections_per_ip);
    gw_log_int(l, "refused_since_last_line", (int64_t)(srv->ip_refused - srv->ip_refused_logged));
    gw_log_end(l);
    srv->ip_refused_logged = srv->ip_refused;
    srv->ip_refused_log_us = now;
}

/*
 * Counts C against its client address. False when the address is at
 * max_connections_per_ip already. The address is the TCP peer: at accept no
 * X-Forwarded-For is known, so trusted proxies (and unix sockets) are not
 * counted; behind a load balancer the cap belongs there.
 */
static bool ip_admit(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    uint32_t cap = srv->opts.max_connections_per_ip;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    unsigned char key[17];
    int fd = bufferevent_getfd(c->bev);
    if (cap == 0 || fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) < 0 ||
        !ip_key(&ss, key) || addr_is_trusted(srv, (const struct sockaddr *)&ss))
        return true;
    if (srv->ip_slots == NULL)
        srv->ip_slots = xcalloc(HTTP_IP_BUCKETS, sizeof(*srv->ip_slots));
    uint32_t b = ip_bucket(srv, key);
    struct http_ip_slot *slot = srv->ip_slots[b];
    while (slot && memcmp(slot->key, key, sizeof(slot->key)) != 0)
        slot = slot->next;
    if (slot && slot->count >= cap) {
        ip_refused_log(srv, &ss);
        return false;
    }
    if (slot == NULL) {
        slot = xcalloc(1, sizeof(*slot));
        memcpy(slot->key, key, sizeof(slot->key));
        slot->next = srv->ip_slots[b];
        srv->ip_slots[b] = slot;
    }
    slot->count++;
    c->ip = slot;
    return true;
}

static void ip_release(struct http_conn *c)
{
    struct http_ip_slot *slot = c->ip;
    c->ip = NULL;
    if (slot == NULL || --slot->count > 0)
        return;
    struct http_ip_slot **pp = &c->srv->ip_slots[ip_bucket(c->srv, slot->key)];
    while (*pp != slot)
        pp = &(*pp)->next;
    *pp = slot->next;
    free(slot);
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
    else
        conn->peer_gone = true; /* a request still in the gate learns it when it is dispatched */
}

static void watch_hangup(struct http_conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd < 0)
        return;
    c->rdhup = xevent_new(c->srv->base, fd, EV_CLOSED | EV_PERSIST, on_conn_rdhup, c);
    event_add(c->rdhup, NULL);
}

/* ---- lingering close --------------------------------------------------------- */

static uint64_t opt_or(uint64_t v, uint64_t dflt)
{
    return v ? v : dflt;
}

static void linger_rearm(struct http_conn *c, uint64_t now_us)
{
    uint64_t gap_ms = opt_or(c->srv->opts.lingering_timeout_ms, HTTP_DEFAULT_LINGER_GAP_MS);
    uint64_t left_ms = c->linger_until_us > now_us ? (c->linger_until_us - now_us) / 1000 : 0;
    uint64_t ms = gap_ms < left_ms ? gap_ms : left_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(c->linger_ev, &tv);
}

static void linger_end(struct http_conn *c);

/* Reads and drops what the client still sends; ends on EOF, an error or a bound. */
static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    uint64_t max = opt_or(c->srv->opts.lingering_bytes, HTTP_DEFAULT_LINGER_BYTES);
    bool end = (what & EV_READ) == 0; /* a timeout: nothing came for lingering_timeout */
    for (int i = 0; !end && i < 16; i++) {
        char buf[16384];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            c->linger_read += (uint64_t)n;
            end = c->linger_read >= max;
            continue;
        }
        end = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
        break;
    }
    uint64_t now = time_mono_us();
    if (!end && now < c->linger_until_us) {
        linger_rearm(c, now);
        return;
    }
    linger_end(c);
    if (c->evcon == NULL)
        conn_destroy(c);
}

/*
 * Called right before evhttp closes C after an answer that ends the
 * connection. The socket outlives evhttp: on_conn_closed keeps a reference to
 * its bufferevent (which closes the socket when the last reference goes) and
 * turns its events off, evhttp sends the FIN (shutdown SHUT_WR), and
 * on_linger reads on. The socket itself, not a dup(): with epoll's change
 * list a duplicate would keep the closed descriptor's registration alive.
 */
static void linger_start(struct http_conn *c)
{
    if (c->linger_fd >= 0 || c->bev == NULL)
        return;
    int fd = bufferevent_getfd(c->bev);
    if (fd < 0)
        return;
    c->linger_fd = fd;
    c->linger_read = 0;
    uint64_t now = time_mono_us();
    c->linger_until_us =
        now + opt_or(c->srv->opts.lingering_time_ms, HTTP_DEFAULT_LINGER_MS) * 1000;
    c->linger_ev = xevent_new(c->srv->base, fd, EV_READ | EV_PERSIST, on_linger, c);
    linger_rearm(c, now);
}

/* The lingering is over: the last reference to the bufferevent closes the socket. */
static void linger_end(struct http_conn *c)
{
    if (c->linger_ev)
        event_del(c->linger_ev); /* before the socket closes */
    if (c->linger_bev)
        bufferevent_decref(c->linger_bev);
    c->linger_bev = NULL;
    c->linger_fd = -1;
}

/* ---- connection lifetime ----------------------------------------------------- */

static void conn_destroy(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    linger_end(c);
    if (c->bev) {
        /* evhttp never set this connection up, or the server is going: our
         * reference is the last one */
        evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_cb);
        bufferevent_decref(c->bev);
    }
    if (c->rdhup)
        event_free(c->rdhup);
    if (c->kick)
        event_free(c->kick);
    if (c->deadline)
        event_free(c->deadline);
    if (c->linger_ev)
        event_free(c->linger_ev);
    if (c->staged)
        evbuffer_free(c->staged);
    ip_release(c);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        srv->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    srv->open_connections--;
    free(c);
    update_accepting(srv);
}

/* evhttp is freeing the connection: the client left, a write failed, a timeout, we closed it. */
static void on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct http_conn *c = arg;
    (void)evcon;
    conn_hash_unlink(c->srv, c);
    c->evcon = NULL;
    struct http_request *req = c->active;
    c->active = NULL;
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_cb);
    if (c->linger_fd >= 0) {
        /* evhttp frees it next; this reference keeps the socket for on_linger */
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        c->linger_bev = c->bev;
    } else {
        bufferevent_decref(c->bev); /* evhttp frees it next */
    }
    c->bev = NULL;
    event_del(c->deadline);
    event_del(c->kick);
    if (c->rdhup) {
        event_free(c->rdhup);
        c->rdhup = NULL;
    }
    if (c->linger_fd < 0)
        conn_destroy(c); /* else the lingering close ends it, counted until then */
    if (req) {
        req->conn = NULL;
        req->evcon = NULL;
        notify_gone(req);
    }
}

/* Closes C from a loop callback (never inside an evhttp callback). */
static void conn_close(struct http_conn *c, bool linger)
{
    if (c->evcon == NULL)
        return;
    if (linger)
        linger_start(c);
    evhttp_connection_free(c->evcon); /* on_conn_closed runs inside */
}

/*
 * The loop turn after accept: evhttp has set the socket and its callbacks
 * on our bufferevent, and nothing was read yet (the socket's first read
 * comes from the next poll). False when C is gone.
 */
static bool conn_setup(struct http_conn *c)
{
    c->set_up = true;
    bufferevent_data_cb readcb = NULL;
    void *cbarg = NULL;
    bufferevent_getcb(c->bev, &readcb, NULL, NULL, &cbarg);
    if (readcb == NULL || cbarg == NULL) {
        conn_destroy(c); /* evhttp gave the socket up while accepting it */
        return false;
    }
    c->evcon = cbarg;
    if (evhttp_connection_get_bufferevent(c->evcon) != c->bev)
        GW_PANIC("libevent's evhttp is not the 2.1 this server was written for");
    /*
     * No Nagle: an answer leaves in several writes (a large body in chunks, an
     * SSE stream event by event), and with Nagle each write after the first
     * waits for the client's ACK of the one before, which a delayed-ACK client
     * holds for up to 40 ms. Fails harmlessly on a unix socket.
     */
    int one = 1;
    (void)setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn_hash_insert(c->srv, c);
    evhttp_connection_set_closecb(c->evcon, on_conn_closed, c);
    watch_hangup(c);
    if (!ip_admit(c)) {
        conn_close(c, false);
        return false;
    }
    return true;
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    if (!c->set_up && !conn_setup(c))
        return;
    if (c->close_now)
        conn_close(c, true);
}

static void deadline_arm(struct http_conn *c, uint64_t ms)
{
    if (ms == 0) {
        event_del(c->deadline);
        c->deadline_armed = false;
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(c->deadline, &tv);
    c->deadline_armed = true;
}

static void deadline_stop(struct http_conn *c)
{
    event_del(c->deadline);
    c->deadline_armed = false;
}

/* ---- the request gate ---------------------------------------------------------- */

static uint64_t header_limit(const struct http_server *srv)
{
    return opt_or(srv->opts.max_header_bytes, HTTP_DEFAULT_MAX_HEADER);
}

/* The body limit of a path: the route's when it is smaller than the server's. */
static uint64_t body_limit_for(const struct http_server *srv, const struct http_route *route)
{
    uint64_t limit = opt_or(srv->opts.max_body_bytes, UINT64_MAX);
    if (route && route->max_body_bytes && route->max_body_bytes < limit)
        limit = route->max_body_bytes;
    return limit;
}

static void format_ms(uint64_t ms, char *out, size_t cap)
{
    if (ms % 1000 == 0)
        snprintf(out, cap, "%llu s", (unsigned long long)(ms / 1000));
    else
        snprintf(out, cap, "%llu ms", (unsigned long long)ms);
}

static bool span_ci(struct http_frame_span s, const char *name)
{
    return s.len == strlen(name) && strncasecmp(s.ptr, name, s.len) == 0;
}

/* Where write_head puts a head: with p == NULL it only counts (len), else it copies. */
struct head_writer {
    char *p;
    size_t len;
};

static void put(struct head_writer *w, const void *s, size_t n)
{
    if (w->p)
        memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void put_span(struct head_writer *w, struct http_frame_span s)
{
    put(w, s.ptr, s.len);
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

/*
 * The head evhttp gets, rebuilt from what the gate parsed: request line, the
 * fields but the framing ones (Content-Length, Transfer-Encoding, Expect),
 * then the framing the gate chose. SYNTHETIC: a refused request (no body,
 * Connection: close; a malformed line becomes "GET /").
 */
static void write_head(struct head_writer *w, const struct http_frame_head *h, bool body,
                       bool synthetic)
{
    bool line = h && h->line_ok;
    if (line && h->known_method)
        put_span(w, h->method);
    else
        PUT_LIT(w, "GET");
    PUT_LIT(w, " ");
    if (line && h->target.ptr[0] == '/')
        put_span(w, h->target);
    else
        PUT_LIT(w, "/");
    if (line && h->minor == 0)
        PUT_LIT(w, " HTTP/1.0\r\n");
    else
        PUT_LIT(w, " HTTP/1.1\r\n");
    for (size_t i = 0; h && i < h->n_fields; i++) {
        const struct http_frame_field *f = &h->fields[i];
        if (span_ci(f->name, "Content-Length") || span_ci(f->name, "Transfer-Encoding") ||
            span_ci(f->name, "Expect") || (synthetic && span_ci(f->name, "Connection")))
            continue;
        put_span(w, f->name);
        PUT_LIT(w, ": ");
        put_span(w, f->value);
        PUT_LIT(w, "\r\n");
    }
    if (body) {
        PUT_LIT(w, "Transfer-Encoding: chunked\r\n");
        /* evhttp answers 100 Continue itself when the head comes alone */
        if (h->expect_continue && h->minor == 1)
            PUT_LIT(w, "Expect: 100-continue\r\n");
    }
    if (synthetic)
        PUT_LIT(w, "Connection: close\r\n");
    PUT_LIT(w, "\r\n");
}

/*
 * Appends write_head's head to OUT in one write (sized by a first, counting
 * pass), so OUT's callbacks (the gate's, libevent's) run once per head.
 */
static void emit_head(struct evbuffer *out, const struct http_frame_head *h, bool body,
                      bool synthetic)
{
    struct head_writer w = {0};
    write_head(&w, h, body, synthetic);
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)w.len, &v, 1) != 1 || v.iov_len < w.len)
        GW_PANIC("cannot buffer a request head"); /* out of memory */
    size_t len = w.len;
    w = (struct head_writer){.p = v.iov_base};
    write_head(&w, h, body, synthetic);
    GW_ASSERT(w.len == len);
    v.iov_len = len;
    if (evbuffer_commit_space(out, &v, 1) != 0)
        GW_PANIC("cannot buffer a request head");
}

static void set_verdict(struct http_conn *c, int status, const char *error, const char *message)
{
    c->verdict.status = status;
    c->verdict.error = error;
    snprintf(c->verdict.message, sizeof(c->verdict.message), "%s", message);
}

/* Refuses the request whose head is H (or unknown, NULL): evhttp gets a bodiless stand-in. */
static void head_verdict(struct http_conn *c, struct evbuffer *in, const struct http_frame_head *h,
                         int status, const char *error, const char *message)
{
    set_verdict(c, status, error, message);
    emit_head(in, h, false, true);
    c->in_evhttp = true;
    c->rx = RX_DONE;
    deadline_stop(c);
    evbuffer_drain(c->staged, evbuffer_get_length(c->staged));
}

/* A head that never completed (too large, too slow): its request line, when there is one. */
static void partial_head_verdict(struct http_conn *c, struct evbuffer *in, int status,
                                 const char *error, const char *message)
{
    size_t avail = evbuffer_get_length(c->staged);
    size_t look = avail < header_limit(c->srv) ? avail : header_limit(c->srv);
    const char *p = (const char *)evbuffer_pullup(c->staged, (ev_ssize_t)look);
    const char *lf = p ? memchr(p, '\n', look) : NULL;
    struct http_frame_head h;
    memset(&h, 0, sizeof(h));
    if (lf)
        http_frame_parse_head(p, (size_t)(lf - p) + 1, &h);
    head_verdict(c, in, lf && h.line_ok ? &h : NULL, status, error, message);
    http_frame_head_clear(&h);
}

/*
 * Refuses the request whose body is arriving: evhttp is inside the chunked
 * body the gate writes, which ends here, so it delivers the request (cut
 * short) and on_request answers with the verdict.
 */
static void body_verdict(struct http_conn *c, struct evbuffer *in, int status, const char *error,
                         const char *message)
{
    set_verdict(c, status, error, message);
    evbuffer_add(in, "0\r\n\r\n", 5);
    c->rx = RX_DONE;
    deadline_stop(c);
    evbuffer_drain(c->staged, evbuffer_get_length(c->staged));
}

static void body_too_large(struct http_conn *c, struct evbuffer *in)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "request body exceeds %llu bytes",
             (unsigned long long)c->body_limit);
    body_verdict(c, in, 413, "request_too_large", msg);
}

static void body_done(struct http_conn *c)
{
    deadline_stop(c);
    c->rx = RX_HEAD;
    c->head_scan = 0;
}

static bool route_allows(const struct http_route *route, const struct http_frame_head *h)
{
    static const char *const names[HTTP_N_METHODS] = {"GET",  "POST", "DELETE", "OPTIONS",
                                                      "HEAD", "PUT",  "PATCH"};
    for (int i = 0; i < HTTP_N_METHODS; i++) {
        if (!span_ci(h->method, names[i]))
            continue;
        unsigned m = 1u << i;
        if (m == HTTP_HEAD)
            m = HTTP_GET;
        return (route->methods & m) != 0;
    }
    return false;
}

/* A complete head of END bytes at P: judge it, route it, hand it over. */
static void gate_take_head(struct http_conn *c, struct evbuffer *in, const char *p, size_t end)
{
    struct http_server *srv = c->srv;
    struct http_frame_head h;
    http_frame_parse_head(p, end, &h);
    deadline_stop(c);
    if (h.status) {
        head_verdict(c, in, &h, h.status, "invalid_request", h.problem);
        http_frame_head_clear(&h);
        return;
    }
    size_t plen = 0;
    while (plen < h.target.len && h.target.ptr[plen] != '?' && h.target.ptr[plen] != '#')
        plen++;
    char *path = xstrndup(h.target.ptr, plen);
    const struct http_route *route = route_find(srv, path);
    free(path);
    uint64_t limit = body_limit_for(srv, route);
    bool body = h.body != HTTP_FRAME_NO_BODY;
    if (h.body == HTTP_FRAME_LENGTH && h.length > limit) {
        /* Known from the head: refused before a byte of the body is read. */
        char msg[96];
        snprintf(msg, sizeof(msg), "request body exceeds %llu bytes", (unsigned long long)limit);
        head_verdict(c, in, &h, 413, "request_too_large", msg);
        http_frame_head_clear(&h);
        return;
    }
    c->in_evhttp = true;
    if (body && (route == NULL || !route_allows(route, &h))) {
        /* 404 or 405: nothing will read the body, so it is not buffered; the
         * answer closes the connection and the body is drained by lingering. */
        emit_head(in, &h, false, false);
        c->close_after = true;
        c->rx = RX_DONE;
    } else if (body) {
        emit_head(in, &h, true, false);
        c->body_limit = limit;
        c->body_seen = 0;
        c->body_left = h.length;
        c->rx = h.body == HTTP_FRAME_LENGTH ? RX_LENGTH : RX_CHUNK_SIZE;
        deadline_arm(c, srv->opts.body_timeout_ms);
    } else {
        emit_head(in, &h, false, false);
    }
    http_frame_head_clear(&h); /* its spans point into STAGED: drain after */
    evbuffer_drain(c->staged, c->rx == RX_DONE ? evbuffer_get_length(c->staged) : end);
    c->head_scan = 0;
    c->line_checked = false;
}

/* RX_HEAD with bytes staged and evhttp free: true when a head was handed over. */
static bool gate_head(struct http_conn *c, struct evbuffer *in)
{
    size_t max = header_limit(c->srv);
    size_t avail = evbuffer_get_length(c->staged);
    size_t look = avail < max ? avail : max;
    const char *p = (const char *)evbuffer_pullup(c->staged, (ev_ssize_t)look);
    if (!c->deadline_armed)
        deadline_arm(c, c->srv->opts.header_timeout_ms); /* from the request's first byte */
    size_t end = http_frame_head_end(p, look, &c->head_scan);
    if (end == 0) {
        if (avail >= max) {
            partial_head_verdict(c, in, 400, "invalid_request",
                                 "request line and headers exceed server.limits.max_header");
        } else if (!http_frame_plausible_start(p, look)) {
            partial_head_verdict(c, in, 400, "invalid_request", "malformed request line");
        } else if (!c->line_checked && memchr(p, '\n', look)) {
            /* the request line is in: refuse a bad one now, not when the head ends */
            c->line_checked = true;
            const char *lf = memchr(p, '\n', look);
            struct http_frame_head h;
            http_frame_parse_head(p, (size_t)(lf - p) + 1, &h);
            if (h.status)
                head_verdict(c, in, &h, h.status, "invalid_request", h.problem);
            http_frame_head_clear(&h);
        }
        return false;
    }
    gate_take_head(c, in, p, end);
    return true;
}

/* Body bytes: re-encoded as one chunk for evhttp. */
static bool gate_data(struct http_conn *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(c->staged);
    size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
    char size_line[24];
    int k = snprintf(size_line, sizeof(size_line), "%zx\r\n", n);
    evbuffer_add(in, size_line, (size_t)k);
    evbuffer_remove_buffer(c->staged, in, n);
    c->body_left -= n;
    bool last = c->rx == RX_LENGTH && c->body_left == 0;
    /* the chunk's end and, after the last, the body's: one write */
    evbuffer_add(in, "\r\n0\r\n\r\n", last ? 7 : 2);
    if (c->rx == RX_LENGTH) {
        c->body_seen += n;
        if (last)
            body_done(c);
    } else if (c->body_left == 0) {
        c->rx = RX_CHUNK_END;
    }
    return true;
}

/* One line of STAGED (chunk-size or trailer): its length without the line end, or -1. */
static ssize_t staged_line(struct http_conn *c, size_t *eol_len)
{
    struct evbuffer_ptr e = evbuffer_search_eol(c->staged, NULL, eol_len, EVBUFFER_EOL_CRLF);
    return e.pos;
}

static bool gate_chunk_size(struct http_conn *c, struct evbuffer *in)
{
    size_t eol_len = 0;
    ssize_t n = staged_line(c, &eol_len);
    if (n < 0 || (size_t)n > HTTP_CHUNK_LINE_MAX) {
        if (n >= 0 || evbuffer_get_length(c->staged) > HTTP_CHUNK_LINE_MAX)
            body_verdict(c, in, 400, "invalid_request", "a chunk-size line is too long");
        return false;
    }
    char line[HTTP_CHUNK_LINE_MAX + 1];
    evbuffer_remove(c->staged, line, (size_t)n);
    evbuffer_drain(c->staged, eol_len);
    uint64_t size;
    if (memchr(line, '\0', (size_t)n) || http_frame_chunk_size(line, (size_t)n, &size) < 0) {
        body_verdict(c, in, 400, "invalid_request", "invalid chunk size");
        return false;
    }
    if (size > c->body_limit - c->body_seen) {
        body_too_large(c, in);
        return false;
    }
    c->body_seen += size;
    c->body_left = size;
    c->rx = size ? RX_CHUNK_DATA : RX_TRAILER;
    c->trailer_bytes = 0;
    return true;
}

static bool gate_chunk_end(struct http_conn *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(c->staged);
    if (avail == 0)
        return false;
    const unsigned char *p = evbuffer_pullup(c->staged, avail < 2 ? (ev_ssize_t)avail : 2);
    size_t n = p[0] == '\n' ? 1 : (p[0] == '\r' && avail >= 2 && p[1] == '\n') ? 2 : 0;
    if (n == 0) {
        if (p[0] == '\r' && avail < 2)
            return false;
        body_verdict(c, in, 400, "invalid_request", "chunk data does not match its size");
        return false;
    }
    evbuffer_drain(c->staged, n);
    c->rx = RX_CHUNK_SIZE;
    return true;
}

/* Trailer fields are read and dropped (nothing here uses them), within max_header. */
static bool gate_trailer(struct http_conn *c, struct evbuffer *in)
{
    size_t eol_len = 0;
    ssize_t n = staged_line(c, &eol_len);
    uint64_t max = header_limit(c->srv);
    if (n < 0) {
        if (c->trailer_bytes + evbuffer_get_length(c->staged) > max)
            body_verdict(c, in, 400, "invalid_request", "the chunked trailer is too large");
        return false;
    }
    c->trailer_bytes += (uint64_t)n + eol_len;
    if (c->trailer_bytes > max) {
        body_verdict(c, in, 400, "invalid_request", "the chunked trailer is too large");
        return false;
    }
    evbuffer_drain(c->staged, (size_t)n + eol_len);
    if (n == 0) {
        evbuffer_add(in, "0\r\n\r\n", 5);
        body_done(c);
    }
    return true;
}

/*
 * libevent's socket bufferevent freezes the end of its input buffer outside
 * its own reads (bufferevent_sock.c); the gate also hands evhttp bytes from
 * a timer and from on_response_done. Thaws the end for that, and says
 * whether to freeze it again (an empty evbuffer_add fails only when frozen).
 */
static bool input_thaw(struct evbuffer *in)
{
    if (evbuffer_add(in, "", 0) == 0)
        return false;
    evbuffer_unfreeze(in, 0);
    return true;
}

/* Moves staged bytes along as far as they go: into evhttp's input, or to a verdict. */
static void gate_run(struct http_conn *c)
{
    if (c->bev == NULL)
        return;
    bool was = c->moving;
    c->moving = true;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    bool thawed = input_thaw(in);
    for (bool more = true; more;) {
        size_t avail = evbuffer_get_length(c->staged);
        switch (c->rx) {
        case RX_HEAD: more = !c->in_evhttp && avail > 0 && gate_head(c, in); break;
        case RX_LENGTH:
        case RX_CHUNK_DATA: more = avail > 0 && gate_data(c, in); break;
        case RX_CHUNK_SIZE: more = gate_chunk_size(c, in); break;
        case RX_CHUNK_END: more = gate_chunk_end(c, in); break;
        case RX_TRAILER: more = gate_trailer(c, in); break;
        case RX_DONE:
            evbuffer_drain(c->staged, avail);
            more = false;
            break;
        }
    }
    if (thawed)
        evbuffer_freeze(in, 0);
    c->moving = was;
}

/*
 * libevent 2.1 reads at most 4 KiB from a socket per turn of the loop
 * (evbuffer_read caps every read at EVBUFFER_MAX_READ), so a 1 MiB body took
 * 256 turns, each an epoll_wait, an ioctl(FIONREAD) and a readv: most of the
 * gateway's CPU on a large request. When a read came back full while a body
 * is coming, the rest of what the socket holds is read here, straight into
 * the staging buffer, up to BUDGET bytes (the turn's share), and moved on.
 * Only for a body (its size is bounded by the gate: max_body_bytes) and only
 * on plain TCP: a TLS connection reads through OpenSSL, which the
 * bufferevent's max single read (HTTP_IO_TURN_BYTES) already sizes. EOF and
 * errors are left to libevent's next read, which sees them again.
 */
static void read_more(struct http_conn *c, size_t budget)
{
    evutil_socket_t fd = c->bev ? bufferevent_getfd(c->bev) : -1;
    while (c->srv->tls == NULL && fd >= 0 && budget > 0 &&
           (c->rx == RX_LENGTH || c->rx == RX_CHUNK_DATA)) {
        size_t want = budget < HTTP_READ_MORE_STEP ? budget : HTTP_READ_MORE_STEP;
        struct evbuffer_iovec v[2];
        int nv = evbuffer_reserve_space(c->staged, (ev_ssize_t)want, v, 2);
        if (nv <= 0)
            return;
        struct iovec iov[2];
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        ssize_t n = readv(fd, iov, nv);
        if (n <= 0) {
            evbuffer_commit_space(c->staged, v, 0);
            return;
        }
        size_t left = (size_t)n;
        int used = 0;
        for (; used < nv && left > 0; used++) {
            if (v[used].iov_len > left)
                v[used].iov_len = left;
            left -= v[used].iov_len;
        }
        evbuffer_commit_space(c->staged, v, used);
        budget -= (size_t)n;
        gate_run(c);
        if ((size_t)n < want)
            return; /* the socket is empty */
    }
}

/*
 * The socket delivered N_ADDED bytes at the end of IN (evbuffer callback,
 * inside the read, before evhttp's read callback). Whatever was in IN before
 * is the gate's own output evhttp has not parsed yet, and stays in front.
 */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct http_conn *c = arg;
    if (c->moving || info->n_added == 0 || c->bev == NULL)
        return;
    if (c->rx == RX_HEAD && c->in_evhttp) {
        /* waits in IN until the answer is complete (on_response_done) */
        if (!c->input_capped && evbuffer_get_length(in) >= HTTP_BUSY_INPUT_MAX) {
            c->input_capped = true; /* suspends reading now: the buffer is past the mark */
            bufferevent_setwatermark(c->bev, EV_READ, 0, HTTP_BUSY_INPUT_MAX);
        }
        return;
    }
    c->moving = true;
    size_t keep = evbuffer_get_length(in) - info->n_added;
    struct evbuffer *front = NULL;
    if (keep > 0) {
        front = xevbuffer_new();
        evbuffer_remove_buffer(in, front, keep);
    }
    if (c->rx == RX_DONE)
        evbuffer_drain(in, evbuffer_get_length(in));
    else
        evbuffer_add_buffer(c->staged, in);
    if (front) {
        evbuffer_prepend_buffer(in, front);
        evbuffer_free(front);
    }
    gate_run(c);
    if (info->n_added >= LIBEVENT_MAX_READ)
        read_more(c, HTTP_IO_TURN_BYTES - info->n_added);
    c->moving = false;
}

/*
 * A deadline passed: the head (header_timeout, from its first byte; from
 * accept for a connection's first request) or the body (body_timeout, from
 * the end of the head). A connection that sent nothing is closed without an
 * answer; otherwise the request gets 408 and the connection closes.
 */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    c->deadline_armed = false;
    if (c->evcon == NULL || c->bev == NULL)
        return;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    char took[32], msg[128];
    if (c->rx == RX_HEAD && !c->in_evhttp && evbuffer_get_length(c->staged) == 0) {
        conn_close(c, false); /* it sent nothing: no answer */
        return;
    }
    if (c->rx == RX_DONE || (c->rx == RX_HEAD && c->in_evhttp))
        return;
    bool was = c->moving;
    c->moving = true;
    bool thawed = input_thaw(in);
    if (c->rx == RX_HEAD) {
        format_ms(c->srv->opts.header_timeout_ms, took, sizeof(took));
        snprintf(msg, sizeof(msg), "request headers not complete within %s", took);
        partial_head_verdict(c, in, 408, "request_timeout", msg);
    } else {
        format_ms(c->srv->opts.body_timeout_ms, took, sizeof(took));
        snprintf(msg, sizeof(msg), "request body not complete within %s", took);
        body_verdict(c, in, 408, "request_timeout", msg);
    }
    if (thawed)
        evbuffer_freeze(in, 0);
    c->moving = was;
    /* Outside a read evhttp does not look at its input by itself. */
    bufferevent_trigger(c->bev, EV_READ, 0);
}

/*
 * evhttp has written the whole answer to a request (evhttp_send_done, just
 * before it closes or starts reading the next request).
 */
static void on_response_done(struct evhttp_request *ev, void *arg)
{
    struct http_conn *c = arg;
    c->in_evhttp = false;
    if (c->input_capped && c->bev) {
        c->input_capped = false; /* reading resumes (evhttp_start_read_ enables it) */
        bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    }
    if (c->verdict.status || c->close_after) {
        c->verdict.status = 0;
        const char *conn_hdr =
            evhttp_find_header(evhttp_request_get_output_headers(ev), "Connection");
        if (conn_hdr && strcasecmp(conn_hdr, "close") == 0) {
            linger_start(c); /* evhttp closes its descriptor once this returns */
        } else {
            c->close_now = true; /* a handler changed the answer's headers: close from the loop */
            event_active(c->kick, EV_TIMEOUT, 0);
        }
        return;
    }
    if (c->bev == NULL)
        return;
    /* What arrived meanwhile waited in the input buffer: stage it, go on. */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    c->moving = true;
    evbuffer_add_buffer(c->staged, in);
    c->moving = false;
    if (evbuffer_get_length(c->staged) > HTTP_STAGED_MAX) {
        c->close_now = true; /* pipelining this far ahead is a flood */
        c->rx = RX_DONE;
        event_active(c->kick, EV_TIMEOUT, 0);
        return;
    }
    gate_run(c); /* evhttp reads what this hands it on its next read (evhttp_start_read_) */
}

/* evhttp asks for each accepted connection's bufferevent: the connection starts here. */
static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    struct http_server *srv = arg;
    struct bufferevent *bev;
    if (srv->tls) {
        SSL *ssl = SSL_new(srv->tls);
        if (ssl == NULL)
            GW_PANIC("SSL_new failed"); /* out of memory; never fall back to plain text */
        bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL)
        GW_PANIC("cannot create a bufferevent");
    struct http_conn *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->bev = bev;
    c->linger_fd = -1;
    bufferevent_incref(bev);
    c->staged = xevbuffer_new();
    c->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    if (c->input_cb == NULL)
        GW_PANIC("cannot watch a connection's input");
    if (bufferevent_set_max_single_read(bev, HTTP_IO_TURN_BYTES) != 0 ||
        bufferevent_set_max_single_write(bev, HTTP_IO_TURN_BYTES) != 0)
        GW_PANIC("cannot size a connection's reads and writes");
    c->kick = xevent_new(base, -1, 0, on_kick, c);
    c->deadline = xevtimer_new(base, on_deadline, c);
    c->all_next = srv->all;
    if (srv->all)
        srv->all->all_prev = c;
    srv->all = c;
    srv->open_connections++;
    event_active(c->kick, EV_TIMEOUT, 0);
    deadline_arm(c, srv->opts.header_timeout_ms); /* the first request's head, from accept */
    update_accepting(srv);
    return bev;
}

/* The verdict of the gate, in the route's error format. */
static void reply_verdict(struct http_request *req, const struct http_verdict *v)
{
    http_set_header(req, "Connection", "close");
    const struct http_route *route = route_find(req->srv, req->path);
    if (route) {
        http_request_set_label(req, route->label);
        req->cors = (route->flags & HTTP_ROUTE_CORS) != 0;
    }
    if (route == NULL || !(route->flags & HTTP_ROUTE_RPC_ERRORS)) {
        http_reply_error(req, v->status, v->error, v->message);
        return;
    }
    /* JSON-RPC 2.0 §5.1: -32600 Invalid Request, id null (the request was not read) */
    json_t *obj = json_pack("{s:s, s:n, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", "error", "code",
                            -32600, "message", v->message);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    http_set_header(req, "Cache-Control", "no-store");
    http_reply_json_text(req, v->status,
                         text ? text
                              : "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                                "\"message\":\"request refused\"}}");
    free(text);
}

/* evhttp's single entry point: every request the gate handed over lands here. */
static void on_request(struct evhttp_request *ev, void *arg)
{
    struct http_server *srv = arg;
    struct http_request *req = xcalloc(1, sizeof(*req));
    req->started_us = time_mono_us();
    req->srv = srv;
    req->ev = ev;
    req->evcon = evhttp_request_get_connection(ev);
    struct http_conn *conn = req->evcon ? conn_find(srv, req->evcon) : NULL;
    if (conn) {
        req->conn = conn;
        conn->active = req;
        req->client_gone = conn->peer_gone; /* hung up before this request was handed over */
        evhttp_request_set_on_complete_cb(ev, on_response_done, conn);
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
        snprintf(req->request_id, sizeof(req->request_id), "%s%016" PRIx64, srv->rid_prefix,
                 ++srv->rid_seq);

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
    if (conn && conn->verdict.status) {
        reply_verdict(req, &conn->verdict);
    } else if (req->method == 0 || req->path[0] != '/') {
        http_reply_error(req, 400, "invalid_request", "unsupported method or request target");
    } else {
        if (conn && conn->close_after)
            http_set_header(req, "Connection", "close");
        dispatch(req);
    }
    req->in_handler = false;
    if (req->finished)
        request_free(req);
}

/* ---- connections and listeners ----------------------------------------- */

static void update_accepting(struct http_server *srv)
{
    bool want =
        srv->accepting && !srv->accept_paused &&
        (srv->opts.max_connections == 0 || srv->open_connections < srv->opts.max_connections);
    if (want == !srv->listeners_off)
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
    srv->listeners_off = !want;
}

/* The servers alive, for the accept error callback (it gets evhttp's pointer, not ours). */
static struct http_server *all_servers;

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;
    (void)fd;
    (void)what;
    srv->accept_paused = false;
    update_accepting(srv);
}

/*
 * accept() failed with an error that is not "try again": EMFILE or ENFILE
 * (out of descriptors), ENOBUFS, ENOMEM. libevent's listener is
 * level-triggered, so the pending connection would wake it again at once:
 * a busy loop and a log line per turn. Stop accepting for a moment instead
 * (the kernel keeps new connections in the backlog), once per pause.
 */
static void on_accept_error(struct evconnlistener *lev, void *ptr)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct http_server *srv = all_servers;
    while (srv && srv->evhttp != ptr)
        srv = srv->next_server;
    if (srv == NULL) {
        evconnlistener_disable(lev);
        return;
    }
    if (srv->accept_paused)
        return;
    srv->accept_paused = true;
    update_accepting(srv);
    struct timeval tv = {0, (suseconds_t)HTTP_ACCEPT_PAUSE_MS * 1000};
    event_add(srv->accept_timer, &tv);
    struct gw_log_line *l =
        gw_log_begin(GW_LOG_ERROR, "http", NULL, "accept() failed: new connections wait a moment");
    gw_log_str(l, "error", strerror(err));
    gw_log_int(l, "pause_ms", HTTP_ACCEPT_PAUSE_MS);
    gw_log_int(l, "open_connections", (int64_t)srv->open_connections);
    gw_log_end(l);
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
    struct evconnlistener *lev = evhttp_bound_socket_get_listener(bound);
    if (lev) {
        evconnlistener_set_error_cb(lev, on_accept_error);
        if (srv->listeners_off)
            evconnlistener_disable(lev);
    }
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
    /* The gate enforces both (per route for bodies); evhttp only ever sees
     * what the gate let through, so its own limits stay out of the way. */
    evhttp_set_max_body_size(srv->evhttp, -1);
    evhttp_set_max_headers_size(srv->evhttp, (ev_ssize_t)(header_limit(srv) + HTTP_HEAD_SLACK));
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
    evhttp_set_bevcb(srv->evhttp, on_new_connection, srv);
    srv->accept_timer = xevtimer_new(base, on_accept_resume, srv);
    rand_bytes(&srv->ip_seed, sizeof(srv->ip_seed));
    rand_hex(srv->rid_prefix, 8);
    srv->next_server = all_servers;
    all_servers = srv;
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
    while (srv->all)
        conn_destroy(srv->all); /* not set up yet, or lingering */
    free(srv->conns);
    free(srv->ip_slots);
    event_free(srv->accept_timer);
    struct http_server **pp = &all_servers;
    while (*pp && *pp != srv)
        pp = &(*pp)->next_server;
    if (*pp)
        *pp = srv->next_server;
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
