/*
 * test_http: the HTTP front end over real loopback sockets. The server runs
 * on this thread's event loop; a client thread speaks raw HTTP with blocking
 * sockets so that tests control exactly how bytes are split on the wire.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"

/* ---- fixture ----------------------------------------------------------- */

struct fixture {
    struct event_base *base;
    struct http_server *srv;
    int port;
    struct event *tick;
    /* handler-side observations */
    int closes_seen;
    struct http_request *held; /* a request a handler kept pending */
    int stream_rc;             /* what http_stream_write answered last */
    size_t streamed;
};

static struct fixture fx;

static void on_echo(struct http_request *req, void *arg)
{
    (void)arg;
    const char *q = http_request_query(req);
    size_t body_len;
    http_request_body(req, &body_len);
    char *text = xasprintf("path=%s qlen=%zu body=%zu ip=%s", http_request_path(req),
                           q ? strlen(q) : 0, body_len, http_request_client_ip(req));
    http_reply(req, 200, "text/plain", text, strlen(text));
    free(text);
}

/* Checks a body of the pattern 'a' + i % 26 (large-body tests). */
static void on_pattern(struct http_request *req, void *arg)
{
    (void)arg;
    size_t len, bad = 0;
    const char *body = http_request_body(req, &len);
    for (size_t i = 0; i < len; i++)
        bad += body[i] != (char)('a' + i % 26);
    char *text = xasprintf("pattern body=%zu bad=%zu", len, bad);
    http_reply(req, 200, "text/plain", text, strlen(text));
    free(text);
}

/* Echoes the query verbatim so a test can compare every byte. */
static void on_query(struct http_request *req, void *arg)
{
    (void)arg;
    const char *q = http_request_query(req);
    http_reply(req, 200, "text/plain", q ? q : "", q ? strlen(q) : 0);
}

static void on_hold_close(struct http_request *req, void *arg)
{
    (void)req;
    (void)arg;
    fx.closes_seen++;
}

static void on_hold(struct http_request *req, void *arg)
{
    (void)arg;
    fx.held = req;
    http_request_on_close(req, on_hold_close, NULL);
}

static void on_stream(struct http_request *req, void *arg)
{
    (void)arg;
    fx.held = req;
    http_request_on_close(req, on_hold_close, NULL);
    assert_int_equal(http_sse_start(req), 0);
    assert_int_equal(http_sse_event(req, "1", "message", "line one\nline two", 17), 0);
}

static void setup_server(const struct http_server_options *opts)
{
    memset(&fx, 0, sizeof(fx));
    fx.base = event_base_new();
    char *err = NULL;
    fx.srv = http_server_new(fx.base, opts, &err);
    assert_non_null(fx.srv);
    assert_int_equal(http_server_listen(fx.srv, "127.0.0.1:0", &err), 0);
    fx.port = http_server_port(fx.srv);
    assert_true(fx.port > 0);
    struct http_route_options small = {.max_body_bytes = 64, .label = "small"};
    assert_int_equal(http_route_add(fx.srv, "/users/1234", HTTP_GET, on_echo, NULL, NULL), 0);
    assert_int_equal(http_route_add(fx.srv, "/echo", HTTP_GET | HTTP_POST, on_echo, NULL, NULL), 0);
    assert_int_equal(http_route_add(fx.srv, "/query", HTTP_GET, on_query, NULL, NULL), 0);
    assert_int_equal(http_route_add(fx.srv, "/small", HTTP_POST, on_echo, NULL, &small), 0);
    assert_int_equal(http_route_add(fx.srv, "/hold", HTTP_GET, on_hold, NULL, NULL), 0);
    assert_int_equal(http_route_add(fx.srv, "/stream", HTTP_GET, on_stream, NULL, NULL), 0);
    struct http_route_options cors = {.flags = HTTP_ROUTE_CORS};
    assert_int_equal(http_route_add(fx.srv, "/cors", HTTP_GET, on_echo, NULL, &cors), 0);
}

static int setup_default(void **state)
{
    (void)state;
    gw_log_set_level(GW_LOG_ERROR);
    struct http_server_options opts = {.max_body_bytes = 1024,
                                       .max_header_bytes = 8192,
                                       .max_connections = 100,
                                       .request_timeout_ms = 5000,
                                       .sse_high_water_bytes = 4096};
    setup_server(&opts);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    http_server_free(fx.srv);
    event_base_free(fx.base);
    return 0;
}

/* ---- client thread ----------------------------------------------------- */

struct client_job {
    int port;
    const char *unix_path;
    const char *parts[4]; /* written one by one with a pause between */
    int pause_ms;
    bool shutdown_early; /* close right after sending */
    struct strbuf response;
    atomic_bool done;
};

static int client_connect(int port, const char *unix_path)
{
    int fd;
    if (unix_path) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&in, sizeof(in)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *client_main(void *arg)
{
    struct client_job *job = arg;
    int fd = client_connect(job->port, job->unix_path);
    if (fd >= 0) {
        for (int i = 0; i < 4 && job->parts[i]; i++) {
            if (i > 0 && job->pause_ms)
                usleep((useconds_t)job->pause_ms * 1000);
            size_t n = strlen(job->parts[i]);
            if (send(fd, job->parts[i], n, MSG_NOSIGNAL) != (ssize_t)n)
                break;
        }
        if (!job->shutdown_early) {
            char buf[4096];
            struct pollfd p = {.fd = fd, .events = POLLIN};
            while (poll(&p, 1, 3000) > 0) {
                ssize_t r = recv(fd, buf, sizeof(buf), 0);
                if (r <= 0)
                    break;
                strbuf_append(&job->response, buf, (size_t)r);
            }
        }
        close(fd);
    }
    atomic_store(&job->done, true);
    return NULL;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct client_job *job = arg;
    if (atomic_load(&job->done))
        event_base_loopbreak(fx.base);
}

/* Runs the loop until the client thread is done (or 10 s). */
static void run_client(struct client_job *job)
{
    job->port = job->port ? job->port : fx.port;
    atomic_init(&job->done, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_main, job), 0);
    struct event *tick = event_new(fx.base, -1, EV_PERSIST, on_tick, job);
    struct timeval tv = {0, 5000};
    event_add(tick, &tv);
    struct timeval limit = {10, 0};
    event_base_loopexit(fx.base, &limit);
    event_base_dispatch(fx.base);
    event_free(tick);
    pthread_join(th, NULL);
}

/* Connection: close on every request keeps one exchange per connection. */
static char *exchange(const char *request)
{
    struct client_job job = {.parts = {request}};
    run_client(&job);
    return strbuf_detach(&job.response, NULL);
}

static void run_loop_ms(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(fx.base, &tv);
    event_base_dispatch(fx.base);
}

/* Runs the loop until *FLAG is non-zero, at most 10 s (a loaded machine is slow, never wrong). */
static void run_loop_until(const int *flag)
{
    for (int i = 0; i < 1000 && *flag == 0; i++)
        run_loop_ms(10);
}

/* ---- tests ------------------------------------------------------------- */

/* DESIGN §1: libevhtp parsed "GET /users/12" + "34 HTTP/1.1" as /users/12. */
static void test_split_request_line(void **state)
{
    (void)state;
    struct client_job job = {
        .parts = {"GET /users/12", "34 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"},
        .pause_ms = 100,
    };
    run_client(&job);
    const char *r = strbuf_str(&job.response);
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    assert_non_null(strstr(r, "path=/users/1234 "));
    strbuf_release(&job.response);
}

/* DESIGN §1: libevhtp cut a 6,000-byte query string to 4,089 bytes. */
static void test_long_query_intact(void **state)
{
    (void)state;
    char q[6001];
    for (int i = 0; i < 6000; i++)
        q[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i % 36];
    q[6000] = '\0';
    char *req = xasprintf("GET /query?%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", q);
    char *r = exchange(req);
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    const char *body = strstr(r, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4, q);
    free(req);
    free(r);
}

static void test_long_query_split_across_writes(void **state)
{
    (void)state;
    char q[6001];
    memset(q, 'x', 6000);
    q[6000] = '\0';
    char *head = xasprintf("GET /echo?%.*s", 3000, q);
    char *tail = xasprintf("%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", q + 3000);
    struct client_job job = {.parts = {head, tail}, .pause_ms = 50};
    run_client(&job);
    assert_non_null(strstr(strbuf_str(&job.response), "qlen=6000 "));
    strbuf_release(&job.response);
    free(head);
    free(tail);
}

static void test_body_over_limit_413_then_serves(void **state)
{
    (void)state;
    char body[2048];
    memset(body, 'b', sizeof(body));
    char *req = xasprintf("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n%.*s",
                          sizeof(body), (int)sizeof(body), body);
    char *r = exchange(req);
    assert_non_null(strstr(r, "HTTP/1.1 413"));
    free(r);
    free(req);
    r = exchange("GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    free(r);
}

static void test_route_body_limit_json_413(void **state)
{
    (void)state;
    char body[100];
    memset(body, 'b', sizeof(body));
    char *req = xasprintf("POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n"
                          "Connection: close\r\n\r\n%.*s",
                          100, body);
    char *r = exchange(req);
    assert_non_null(strstr(r, "HTTP/1.1 413"));
    assert_non_null(strstr(r, "application/json"));
    assert_non_null(strstr(r, "\"error\":\"request_too_large\""));
    free(r);
    free(req);
}

static void test_oversized_headers_400_then_serves(void **state)
{
    (void)state;
    char big[9000];
    memset(big, 'h', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *req = xasprintf("GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", big);
    char *r = exchange(req);
    assert_non_null(strstr(r, "HTTP/1.1 400"));
    free(r);
    free(req);
    r = exchange("GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    free(r);
}

static void test_oversized_uri_400_then_serves(void **state)
{
    (void)state;
    char big[10000];
    memset(big, 'u', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *req = xasprintf("GET /echo?%s HTTP/1.1\r\nHost: t\r\n\r\n", big);
    char *r = exchange(req);
    assert_non_null(strstr(r, "HTTP/1.1 400"));
    free(r);
    free(req);
    r = exchange("GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    free(r);
}

static void test_404_and_405_with_allow(void **state)
{
    (void)state;
    char *r = exchange("GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 404"));
    assert_non_null(strstr(r, "\"error\":\"not_found\""));
    free(r);
    r = exchange("DELETE /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 405"));
    assert_non_null(strstr(r, "Allow: GET, POST, HEAD"));
    free(r);
}

static void test_cors_preflight_and_header(void **state)
{
    (void)state;
    char *r = exchange("OPTIONS /cors HTTP/1.1\r\nHost: t\r\nOrigin: https://a.example\r\n"
                       "Connection: close\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 204"));
    assert_non_null(strstr(r, "Access-Control-Allow-Origin: *"));
    assert_non_null(strstr(r, "Access-Control-Allow-Methods: GET"));
    free(r);
    r = exchange("GET /cors HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(r, "Access-Control-Allow-Origin: *"));
    free(r);
    r = exchange("GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_null(strstr(r, "Access-Control-Allow-Origin"));
    free(r);
}

static void test_request_id_echo_and_generation(void **state)
{
    (void)state;
    char *r = exchange("GET /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123_x.y\r\n"
                       "Connection: close\r\n\r\n");
    assert_non_null(strstr(r, "X-Request-Id: abc-123_x.y\r\n"));
    free(r);
    r = exchange("GET /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: <script>\r\n"
                 "Connection: close\r\n\r\n");
    assert_null(strstr(r, "<script>"));
    const char *id = strstr(r, "X-Request-Id: ");
    assert_non_null(id);
    id += strlen("X-Request-Id: ");
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
    free(r);
}

/* A body far larger than one of libevent's 4 KiB reads (read_more takes the
 * rest of what the socket holds), with Content-Length and chunked, each
 * followed in the same write by a pipelined request: every byte arrives, in
 * order, and the next request is still served. */
static void test_large_bodies_then_pipelined_request(void **state)
{
    (void)state;
    struct http_server_options opts = {.max_body_bytes = 4u << 20,
                                       .max_header_bytes = 8192,
                                       .max_connections = 100,
                                       .request_timeout_ms = 5000};
    http_server_set_limits(fx.srv, &opts);
    struct http_route_options big = {.max_body_bytes = 4u << 20, .label = "big"};
    assert_int_equal(http_route_add(fx.srv, "/big", HTTP_POST, on_pattern, NULL, &big), 0);
    size_t n = (1u << 20) + 12345;
    char *body = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + i % 26);
    body[n] = '\0';
    char *req = xasprintf("POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s"
                          "GET /users/1234 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                          n, body);
    struct client_job job = {.parts = {req}};
    run_client(&job);
    char *want = xasprintf("pattern body=%zu bad=0", n);
    assert_non_null(strstr(strbuf_str(&job.response), want));
    assert_non_null(strstr(strbuf_str(&job.response), "path=/users/1234 "));
    strbuf_release(&job.response);
    free(want);
    free(req);

    /* Chunked: three chunks of 300,000 bytes (the pattern runs across them). */
    struct strbuf chunked = STRBUF_INIT;
    strbuf_puts(&chunked, "POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t k = 0; k < 3; k++) {
        strbuf_printf(&chunked, "%x\r\n", 300000u);
        strbuf_append(&chunked, body + k * 300000, 300000);
        strbuf_puts(&chunked, "\r\n");
    }
    strbuf_puts(&chunked,
                "0\r\n\r\nGET /users/1234 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    struct client_job job2 = {.parts = {strbuf_str(&chunked)}};
    run_client(&job2);
    assert_non_null(strstr(strbuf_str(&job2.response), "pattern body=900000 bad=0"));
    assert_non_null(strstr(strbuf_str(&job2.response), "path=/users/1234 "));
    strbuf_release(&job2.response);
    strbuf_release(&chunked);
    free(body);
}

static void test_keepalive_two_requests_one_connection(void **state)
{
    (void)state;
    struct client_job job = {
        .parts = {"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
                  "GET /users/1234 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"},
        .pause_ms = 50,
    };
    run_client(&job);
    const char *r = strbuf_str(&job.response);
    assert_non_null(strstr(r, "path=/echo "));
    assert_non_null(strstr(r, "path=/users/1234 "));
    strbuf_release(&job.response);
}

static void test_client_disconnect_notifies_pending_handler(void **state)
{
    (void)state;
    struct client_job job = {.parts = {"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n"},
                             .shutdown_early = true};
    run_client(&job);
    run_loop_until(&fx.closes_seen);
    assert_non_null(fx.held);
    assert_int_equal(fx.closes_seen, 1);
    assert_true(http_request_client_gone(fx.held));
    assert_int_equal(http_server_in_flight(fx.srv), 1);
    /* Finishing after the client left is required and harmless. */
    http_reply_json_text(fx.held, 200, "{}");
    assert_int_equal(http_server_in_flight(fx.srv), 0);
    strbuf_release(&job.response);
}

/* The server's end of the TCP connection whose peer is the local port PEER, or -1. */
static int server_end_of(uint16_t peer)
{
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in me, them;
        socklen_t ml = sizeof(me), tl = sizeof(them);
        if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0 && me.sin_family == AF_INET &&
            ntohs(me.sin_port) == fx.port && getpeername(fd, (struct sockaddr *)&them, &tl) == 0 &&
            ntohs(them.sin_port) == peer)
            return fd;
    }
    return -1;
}

/*
 * Accepted connections have Nagle off: an answer written in parts (a large
 * body, SSE events one by one) must not wait for the client's delayed ACK
 * (make bench: 1 MiB echo p99 66 ms -> 23 ms).
 */
static void test_accepted_socket_has_nodelay(void **state)
{
    (void)state;
    int cfd = client_connect(fx.port, NULL);
    assert_true(cfd >= 0);
    struct sockaddr_in mine;
    socklen_t len = sizeof(mine);
    assert_int_equal(getsockname(cfd, (struct sockaddr *)&mine, &len), 0);
    const char *req = "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(cfd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    for (int i = 0; i < 1000 && fx.held == NULL; i++)
        run_loop_ms(10);
    assert_non_null(fx.held);
    int sfd = server_end_of(ntohs(mine.sin_port));
    assert_true(sfd >= 0);
    int on = 0;
    socklen_t ol = sizeof(on);
    assert_int_equal(getsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &on, &ol), 0);
    assert_int_equal(on, 1);
    http_reply_json_text(fx.held, 200, "{}");
    close(cfd);
}

static void test_sse_event_framing(void **state)
{
    (void)state;
    struct client_job job = {.parts = {"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"}};
    atomic_init(&job.done, false);
    job.port = fx.port;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_main, &job), 0);
    for (int i = 0; i < 100 && fx.held == NULL; i++)
        run_loop_ms(10);
    assert_non_null(fx.held);
    assert_int_equal(http_sse_comment(fx.held, "keep-alive"), 0);
    run_loop_ms(50);
    http_stream_end(fx.held);
    for (int i = 0; i < 300 && !atomic_load(&job.done); i++)
        run_loop_ms(10);
    pthread_join(th, NULL);
    const char *r = strbuf_str(&job.response);
    assert_non_null(strstr(r, "Content-Type: text/event-stream"));
    assert_non_null(strstr(r, "Cache-Control: no-cache"));
    assert_non_null(strstr(r, "X-Accel-Buffering: no"));
    assert_non_null(strstr(r, "id: 1\nevent: message\ndata: line one\ndata: line two\n\n"));
    assert_non_null(strstr(r, ": keep-alive\n\n"));
    strbuf_release(&job.response);
}

/* A client that never reads: writes pile up until the high-water mark refuses them. */
static void test_sse_slow_reader_hits_high_water(void **state)
{
    (void)state;
    int fd = client_connect(fx.port, NULL);
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    const char *req = "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    for (int i = 0; i < 100 && fx.held == NULL; i++)
        run_loop_ms(10);
    assert_non_null(fx.held);
    char chunk[1024];
    memset(chunk, 'e', sizeof(chunk));
    int rc = 0;
    size_t written = 0;
    /* Bounded: 64 MiB is far past any socket buffer; the mark is 4 KiB. */
    while (written < (64u << 20)) {
        rc = http_sse_event(fx.held, NULL, NULL, chunk, sizeof(chunk));
        if (rc != 0)
            break;
        written += sizeof(chunk);
        run_loop_ms(1);
    }
    assert_int_equal(rc, -ENOBUFS);
    http_stream_end(fx.held);
    close(fd);
    run_loop_ms(50);
}

static void test_unix_socket_listener(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/mcpgate-test-%d.sock", (int)getpid());
    char *err = NULL;
    char *spec = xasprintf("unix:%s", path);
    assert_int_equal(http_server_listen(fx.srv, spec, &err), 0);
    free(spec);
    struct client_job job = {
        .unix_path = path, .parts = {"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"}};
    run_client(&job);
    assert_non_null(strstr(strbuf_str(&job.response), "ip=unix"));
    strbuf_release(&job.response);
}

static void test_bad_listen_specs(void **state)
{
    (void)state;
    const char *bad[] = {"127.0.0.1", "127.0.0.1:99999", "nohost:80",
                         "[::1:80",   "unix:rel",        ":80x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *err = NULL;
        assert_true(http_server_listen(fx.srv, bad[i], &err) < 0);
        assert_non_null(err);
        free(err);
    }
}

/* Sends one keep-alive request and returns how many response bytes arrived. */
static ssize_t send_keepalive_request(int fd, int wait_ms)
{
    const char *req = "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n";
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
        return -1;
    run_loop_ms(wait_ms);
    char buf[4096];
    return recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
}

static void test_max_connections_pauses_accept(void **state)
{
    (void)state;
    struct http_server_options opts = {.max_body_bytes = 1024,
                                       .max_header_bytes = 8192,
                                       .max_connections = 2,
                                       .request_timeout_ms = 5000};
    http_server_set_limits(fx.srv, &opts);
    int a = client_connect(fx.port, NULL);
    int b = client_connect(fx.port, NULL);
    assert_true(send_keepalive_request(a, 100) > 0);
    assert_true(send_keepalive_request(b, 100) > 0);
    assert_int_equal(http_server_open_connections(fx.srv), 2);
    /* A third connects (kernel backlog) but is not served while at the limit. */
    int c = client_connect(fx.port, NULL);
    assert_true(send_keepalive_request(c, 200) < 0);
    assert_int_equal(http_server_open_connections(fx.srv), 2);
    close(a);
    char buf[4096];
    ssize_t got = -1;
    for (int i = 0; i < 1000 && got <= 0; i++) { /* until c is answered, at most 10 s */
        run_loop_ms(10);
        got = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
    }
    assert_true(got > 0); /* c took a's place */
    assert_int_equal(http_server_open_connections(fx.srv), 2);
    close(b);
    close(c);
    run_loop_ms(100);
    assert_int_equal(http_server_open_connections(fx.srv), 0);
}

/* ---- form decoding (table) --------------------------------------------- */

static void test_params_decoding(void **state)
{
    (void)state;
    struct http_params p = {0};
    const char *text = "a=1&b=x+y&c=%41%42%2b&d&&e=&a=2&%7e=t";
    assert_int_equal(http_params_parse(text, strlen(text), &p), 0);
    assert_string_equal(http_params_get(&p, "a"), "1");
    assert_int_equal(http_params_count(&p, "a"), 2);
    assert_string_equal(http_params_get(&p, "b"), "x y");
    assert_string_equal(http_params_get(&p, "c"), "AB+");
    assert_string_equal(http_params_get(&p, "d"), "");
    assert_string_equal(http_params_get(&p, "e"), "");
    assert_string_equal(http_params_get(&p, "~"), "t");
    assert_null(http_params_get(&p, "zz"));
    http_params_clear(&p);

    const char *bad[] = {"a=%zz", "a=%4", "a=%", "a=%00", "%G1=x", "a=b%0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(http_params_parse(bad[i], strlen(bad[i]), &p), -EINVAL);
        assert_int_equal(p.len, 0);
    }
    /* A raw NUL is refused like %00 (it would cut a value short). */
    assert_int_equal(http_params_parse("a=b\0c", 5, &p), -EINVAL);
    assert_int_equal(p.len, 0);
    assert_int_equal(http_params_parse("", 0, &p), 0);
    assert_int_equal(p.len, 0);
}

static void test_urlencode(void **state)
{
    (void)state;
    char *e = http_urlencode("a b&c=d/é~");
    assert_string_equal(e, "a%20b%26c%3Dd%2F%C3%A9~");
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_split_request_line, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_long_query_intact, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_long_query_split_across_writes, setup_default,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_body_over_limit_413_then_serves, setup_default,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_route_body_limit_json_413, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_headers_400_then_serves, setup_default,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_oversized_uri_400_then_serves, setup_default,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_404_and_405_with_allow, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_cors_preflight_and_header, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_request_id_echo_and_generation, setup_default,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_large_bodies_then_pipelined_request, setup_default,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_two_requests_one_connection, setup_default,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_client_disconnect_notifies_pending_handler,
                                        setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_accepted_socket_has_nodelay, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_sse_event_framing, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_sse_slow_reader_hits_high_water, setup_default,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket_listener, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_bad_listen_specs, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections_pauses_accept, setup_default,
                                        teardown),
        cmocka_unit_test(test_params_decoding),
        cmocka_unit_test(test_urlencode),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
