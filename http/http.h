/*
 * http: the HTTP/1.1 front end. The only module that includes event2/http.h
 * (DESIGN §1): OAuth and proxy code see struct http_request and nothing of
 * libevent's evhttp, so the server library can change behind this header.
 *
 * Request lifetime. The server creates a struct http_request per request and
 * hands it to the route's handler. The handler (now, or later from another
 * callback) must finish it with exactly one of http_reply*() or
 * http_stream_end(); that call frees it. Finishing is required even after the
 * client went away (the close callback fired): the request is then discarded
 * without writing. A handler that finishes synchronously pays for no
 * disconnect watcher; one that returns with the request pending gets one.
 *
 * Limits enforced here, before a request reaches a handler (http.c frames
 * every request itself in front of libevent's parser): the request line and
 * headers size (400), the body size, the server's or the route's when it is
 * smaller, checked before the body is buffered (413), the framing rules of
 * http_frame.h against request smuggling (400, 501), total deadlines for the
 * head and for the body (408), the connection count from accept (new
 * connections wait in the kernel backlog while at the limit), connections per
 * client address (refused at once), per-connection gap and idle timeouts, and
 * a high-water mark on each streamed response's output buffer. Those answers
 * are JSON (OAuth-style, or JSON-RPC on HTTP_ROUTE_RPC_ERRORS routes), carry
 * X-Request-Id and Connection: close, and are followed by a lingering close:
 * what the client still sends is read and dropped, within bounds, so it reads
 * the answer instead of a connection reset.
 */
#ifndef MCPGATE_HTTP_HTTP_H
#define MCPGATE_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net.h"

struct event_base;
struct http_server;
struct http_request;

enum http_method {
    HTTP_GET = 1u << 0,
    HTTP_POST = 1u << 1,
    HTTP_DELETE = 1u << 2,
    HTTP_OPTIONS = 1u << 3,
    HTTP_HEAD = 1u << 4,
    HTTP_PUT = 1u << 5,
    HTTP_PATCH = 1u << 6,
};

typedef void (*http_handler_fn)(struct http_request *req, void *arg);
/* The client disconnected before the request was finished. */
typedef void (*http_close_fn)(struct http_request *req, void *arg);
/* A streamed response's output buffer has drained below the low-water mark. */
typedef void (*http_drain_fn)(struct http_request *req, void *arg);

/* What the server reports when a request finishes (for the access log and metrics). */
struct http_access_record {
    const char *method; /* "GET" */
    const char *path;   /* without the query */
    const char *route;  /* label set by the handler, or "-" */
    const char *request_id;
    const char *client_ip;
    int status;
    uint64_t bytes_out; /* body bytes queued for the client */
    uint64_t duration_us;
    bool client_gone; /* the client left before the response was complete */
};
typedef void (*http_observer_fn)(const struct http_access_record *rec, void *arg);

/* A 0 limit is "none", except where a default is named. */
struct http_server_options {
    uint64_t max_body_bytes;
    uint64_t max_header_bytes; /* 0: 16 KiB */
    uint32_t max_connections;
    /* Open connections per TCP peer address (IPv6: per /64), counted from
     * accept; trusted proxies and unix sockets are not counted. */
    uint32_t max_connections_per_ip;
    uint64_t request_timeout_ms; /* longest gap between bytes of a request or response */
    uint64_t idle_timeout_ms;    /* keep-alive: how long a connection waits for its next request */
    uint64_t header_timeout_ms;  /* request line + headers, from their first byte (from accept
                                    for a connection's first request) */
    uint64_t body_timeout_ms;    /* a request body, from the end of its head */
    /* Lingering close after an answer that ends the connection: read and drop
     * at most this many bytes (0: 64 MiB), for at most this long (0: 30 s),
     * waiting at most lingering_timeout for each read (0: 5 s). */
    uint64_t lingering_bytes;
    uint64_t lingering_time_ms;
    uint64_t lingering_timeout_ms;
    uint64_t sse_high_water_bytes;
    const char *tls_cert_file; /* NULL: plain HTTP */
    const char *tls_key_file;
    const struct net_cidr *trusted_proxies; /* borrowed; must outlive the server or be reset */
    size_t n_trusted_proxies;
};

struct http_server *http_server_new(struct event_base *base, const struct http_server_options *opts,
                                    char **err_out);
void http_server_free(struct http_server *srv);

/*
 * Listens on "host:port", "[v6addr]:port" or "unix:/path" (a stale socket
 * file is replaced). Port 0 picks a free port; http_server_port() tells it.
 * Returns 0 or -errno with *err_out set (owned by the caller).
 */
int http_server_listen(struct http_server *srv, const char *spec, char **err_out);
/* The TCP port of the first TCP listener, or 0. */
int http_server_port(const struct http_server *srv);

/* Limits and trusted proxies that a reload may change. */
void http_server_set_limits(struct http_server *srv, const struct http_server_options *opts);
void http_server_set_observer(struct http_server *srv, http_observer_fn fn, void *arg);

/* Draining: close the listeners; in-flight requests go on. */
void http_server_stop_accepting(struct http_server *srv);
size_t http_server_in_flight(const struct http_server *srv);
size_t http_server_open_connections(const struct http_server *srv);

/* ---- routing: exact (method, path) ---------------------------------- */

enum http_route_flags {
    HTTP_ROUTE_CORS = 1u << 0, /* Access-Control-Allow-Origin: * and OPTIONS preflight */
    /* The server's own refusals on this path (400, 408, 413) are JSON-RPC
     * error objects (code -32600, id null) instead of OAuth-style JSON. */
    HTTP_ROUTE_RPC_ERRORS = 1u << 1,
};

struct http_route_options {
    unsigned flags;          /* enum http_route_flags */
    uint64_t max_body_bytes; /* 0: the server's; smaller: 413 before the body is read */
    const char *label;       /* route label in access logs and metrics; default the path */
};

/*
 * Adds (or replaces) the handler for PATH and the methods in METHODS (a mask
 * of enum http_method). Paths match exactly, without the query. A path with
 * handlers but not for the request's method answers 405 with Allow. HEAD is
 * served by the GET handler. Returns 0 or -EINVAL.
 */
int http_route_add(struct http_server *srv, const char *path, unsigned methods, http_handler_fn fn,
                   void *arg, const struct http_route_options *opts);
/* Removes every route whose label starts with PREFIX (used when routes reload). */
void http_route_remove_labelled(struct http_server *srv, const char *label_prefix);

/* ---- the request ----------------------------------------------------- */

enum http_method http_request_method(const struct http_request *req);
const char *http_request_method_name(const struct http_request *req);
const char *http_request_path(const struct http_request *req);  /* raw, without query */
const char *http_request_query(const struct http_request *req); /* raw, or NULL */
const char *http_request_id(const struct http_request *req);
/* The client's address after trusted proxies ("203.0.113.9", "::1", "unix"). */
const char *http_request_client_ip(const struct http_request *req);
/*
 * For a request another gateway instance forwarded (its hop already
 * verified): the original client's address and scheme stand in for the
 * peer's. IP is copied (cut to an address's length).
 */
void http_request_set_client_ip(struct http_request *req, const char *ip, bool https);
/* The peer is a loopback address or a unix socket. */
bool http_request_peer_is_local(const struct http_request *req);
/* TLS here, or X-Forwarded-Proto: https from a trusted proxy. */
bool http_request_is_https(const struct http_request *req);

/* First value of a header (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *req, const char *name);
/* How many times a header was sent. */
size_t http_request_header_count(const struct http_request *req, const char *name);
/* Calls FN for every request header in order; stops when FN returns false. */
void http_request_foreach_header(const struct http_request *req,
                                 bool (*fn)(const char *name, const char *value, void *arg),
                                 void *arg);

/* The whole body, NUL-terminated for convenience (not counted in *len). */
const char *http_request_body(struct http_request *req, size_t *len);

void http_request_set_label(struct http_request *req, const char *label); /* copied */
void http_request_on_close(struct http_request *req, http_close_fn fn, void *arg);
bool http_request_client_gone(const struct http_request *req);

/* ---- responses ------------------------------------------------------- */

/* Adds a response header (before the reply starts). */
void http_set_header(struct http_request *req, const char *name, const char *value);

/* Each finishes the request and frees it. */
void http_reply(struct http_request *req, int status, const char *content_type, const void *body,
                size_t len);
void http_reply_json_text(struct http_request *req, int status, const char *json);
void http_reply_html(struct http_request *req, int status, const char *html);
void http_reply_empty(struct http_request *req, int status);
/* {"error": ERROR, "error_description": DESCRIPTION}, Cache-Control: no-store. */
void http_reply_error(struct http_request *req, int status, const char *error,
                      const char *description);

/* Streaming (chunked). */
int http_stream_start(struct http_request *req, int status, const char *content_type);
/*
 * Queues DATA. Returns 0; -EPIPE when the client is gone; -ENOBUFS when the
 * output buffer is over the high-water mark (the slow-reader policy: the
 * caller ends the stream; MCP clients resume with Last-Event-ID).
 */
int http_stream_write(struct http_request *req, const void *data, size_t len);
/*
 * Queues DATA whatever the buffer holds (for producers that can pause, such
 * as an upstream transfer): 0, HTTP_STREAM_FULL when the buffer is now over
 * the high-water mark (pause until the drain callback), or -EPIPE when the
 * client is gone.
 */
#define HTTP_STREAM_FULL 1
int http_stream_push(struct http_request *req, const void *data, size_t len);
size_t http_stream_buffered(const struct http_request *req);
void http_stream_on_drain(struct http_request *req, http_drain_fn fn, void *arg);
void http_stream_end(struct http_request *req);

/* Server-Sent Events on top of streaming: one write (one flush) per event. */
int http_sse_start(struct http_request *req);
/* id and event may be NULL; data may hold newlines (split into data: lines). */
int http_sse_event(struct http_request *req, const char *id, const char *event, const char *data,
                   size_t len);
int http_sse_comment(struct http_request *req, const char *text);
/* Sends ": keep-alive" every INTERVAL_MS while the stream is open (0 stops). */
void http_sse_keepalive(struct http_request *req, uint64_t interval_ms);

/* ---- form and query decoding ------------------------------------------ */

struct http_param {
    char *name;  /* owned, decoded */
    char *value; /* owned, decoded */
};

struct http_params {
    struct http_param *items; /* owned */
    size_t len;
};

/*
 * Decodes application/x-www-form-urlencoded text (also a query string):
 * '&'-separated pairs, '+' is a space, %XX escapes. Returns 0 or -EINVAL for
 * a malformed escape or a NUL byte, raw or decoded (nothing legitimate sends one).
 * The result keeps repeated names; out is reset first.
 */
int http_params_parse(const char *text, size_t len, struct http_params *out);
const char *http_params_get(const struct http_params *params, const char *name);
size_t http_params_count(const struct http_params *params, const char *name);
void http_params_clear(struct http_params *params);

/* Percent-encodes for a query component (RFC 3986 unreserved kept). Owned by the caller. */
char *http_urlencode(const char *text);

#endif
