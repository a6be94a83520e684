/*
 * test_httpc: the outbound HTTP client against a real loopback server. The
 * server (http/http.h) and the client share this thread's event loop, so
 * every exchange is real HTTP over 127.0.0.1 and every wait is bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/httpc.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "common/log.h"

#define BIG_BYTES (2u * 1024u * 1024u)
#define SSE_EVENTS 5
#define MAX_HELD 64
#define MAX_JOBS 16

/* ---- fixture: a loopback server and a client on one loop ----------------- */

/* A streamed response the server writes from timers or drain callbacks. */
struct job {
    struct http_request *req; /* pending until finished; NULL after */
    struct event *timer;      /* owned */
    int sent;
    size_t bytes;
};

struct fixture {
    struct event_base *base;
    struct http_server *srv;
    int port;
    struct httpc *hc;
    struct http_request *held[MAX_HELD]; /* /slow requests, finished at teardown */
    size_t n_held;
    struct job jobs[MAX_JOBS];
    size_t n_jobs;
    int refused_fd; /* bound, never listening: connecting to it is refused */
    int refused_port;
    struct evconnlistener *canned; /* raw server for what evhttp cannot send; owned */
    const char *canned_response;   /* borrowed: written verbatim, then the socket closes */
};

static struct fixture fx;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *url(const char *path)
{
    return xasprintf("http://127.0.0.1:%d%s", fx.port, path);
}

static void on_json(struct http_request *req, void *arg)
{
    (void)arg;
    http_set_header(req, "X-Test", "one");
    http_reply_json_text(req, 200, "{\"ok\":true}");
}

static void on_echo(struct http_request *req, void *arg)
{
    (void)arg;
    size_t len = 0;
    const char *body = http_request_body(req, &len);
    const char *auth = http_request_header(req, "Authorization");
    const char *expect = http_request_header(req, "Expect");
    const char *ctype = http_request_header(req, "Content-Type");
    const char *custom = http_request_header(req, "X-Custom");
    const char *query = http_request_query(req);
    char *text = xasprintf("method=%s\nauth=%s\nexpect=%s\nctype=%s\ncustom=%s\nquery=%s\n"
                           "body=%.*s",
                           http_request_method_name(req), auth ? auth : "-", expect ? expect : "-",
                           ctype ? ctype : "-", custom ? custom : "-", query ? query : "-",
                           (int)len, body ? body : "");
    http_reply(req, 200, "text/plain", text, strlen(text));
    free(text);
}

static void on_redirect(struct http_request *req, void *arg)
{
    (void)arg;
    http_set_header(req, "Location", "/json");
    http_reply(req, 302, "text/plain", "moved", 5);
}

static void on_fail(struct http_request *req, void *arg)
{
    (void)arg;
    http_reply(req, 500, "text/plain", "boom", 4);
}

static void on_slow(struct http_request *req, void *arg)
{
    (void)arg;
    assert_true(fx.n_held < MAX_HELD);
    fx.held[fx.n_held++] = req; /* never answered while the test runs */
}

static void on_big(struct http_request *req, void *arg)
{
    (void)arg;
    char *body = xmalloc(BIG_BYTES);
    memset(body, 'x', BIG_BYTES);
    http_reply(req, 200, "application/octet-stream", body, BIG_BYTES);
    free(body);
}

static struct job *job_new(struct http_request *req)
{
    assert_true(fx.n_jobs < MAX_JOBS);
    struct job *job = &fx.jobs[fx.n_jobs++];
    job->req = req;
    return job;
}

static void job_finish(struct job *job)
{
    if (job->req)
        http_stream_end(job->req);
    job->req = NULL;
    if (job->timer)
        event_del(job->timer);
}

/* Chunked, no Content-Length: the client must enforce its limit while reading. */
static void big_chunked_write(struct http_request *req, void *arg)
{
    struct job *job = arg;
    char chunk[64 * 1024];
    memset(chunk, 'y', sizeof(chunk));
    if (job->req == NULL)
        return;
    if (job->bytes >= BIG_BYTES || http_stream_write(req, chunk, sizeof(chunk)) != 0) {
        job_finish(job);
        return;
    }
    job->bytes += sizeof(chunk);
}

static void on_big_chunked(struct http_request *req, void *arg)
{
    (void)arg;
    struct job *job = job_new(req);
    assert_int_equal(http_stream_start(req, 200, "application/octet-stream"), 0);
    http_stream_on_drain(req, big_chunked_write, job);
    big_chunked_write(req, job);
}

static void sse_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct job *job = arg;
    if (job->req == NULL)
        return;
    char id[16], data[32];
    job->sent++;
    snprintf(id, sizeof(id), "%d", job->sent);
    snprintf(data, sizeof(data), "event-%d", job->sent);
    if (http_sse_event(job->req, id, NULL, data, strlen(data)) != 0 || job->sent == SSE_EVENTS) {
        job_finish(job);
        return;
    }
    struct timeval tv = {0, 20 * 1000};
    event_add(job->timer, &tv);
}

/* SSE_EVENTS events, 20 ms apart, then the end of the stream. */
static void on_sse(struct http_request *req, void *arg)
{
    (void)arg;
    struct job *job = job_new(req);
    job->timer = evtimer_new(fx.base, sse_tick, job);
    assert_int_equal(http_sse_start(req), 0);
    struct timeval tv = {0, 5 * 1000};
    event_add(job->timer, &tv);
}

static int open_refused_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = {.sin_family = AF_INET};
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(in);
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    *port = ntohs(in.sin_port);
    return fd; /* bound but not listening: a SYN gets a RST */
}

/* ---- a raw server: heads evhttp never sends (1xx, obs-fold, trailers, truncation) --- */

static void canned_flushed(struct bufferevent *bev, void *arg)
{
    (void)arg;
    bufferevent_free(bev); /* closes: the response ends where the canned text ends */
}

static void canned_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos < 0)
        return; /* the request head is not complete yet */
    evbuffer_drain(in, evbuffer_get_length(in));
    if (fx.canned_response[0] == '\0') {
        bufferevent_free(bev); /* nothing to flush, so no write callback would come */
        return;
    }
    bufferevent_setcb(bev, NULL, canned_flushed, NULL, NULL);
    bufferevent_write(bev, fx.canned_response, strlen(fx.canned_response));
}

static void canned_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int socklen, void *arg)
{
    (void)l;
    (void)sa;
    (void)socklen;
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(fx.base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, canned_read, NULL, NULL, NULL);
    bufferevent_enable(bev, EV_READ);
}

/* Serves RESPONSE to every request; returns the port. */
static int canned_serve(const char *response)
{
    fx.canned_response = response;
    if (fx.canned == NULL) {
        struct sockaddr_in in = {.sin_family = AF_INET};
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fx.canned = evconnlistener_new_bind(fx.base, canned_accept, NULL,
                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                            (struct sockaddr *)&in, sizeof(in));
        assert_non_null(fx.canned);
    }
    struct sockaddr_in bound;
    socklen_t len = sizeof(bound);
    getsockname(evconnlistener_get_fd(fx.canned), (struct sockaddr *)&bound, &len);
    return ntohs(bound.sin_port);
}

static int setup(void **state)
{
    (void)state;
    gw_log_set_level(GW_LOG_ERROR);
    memset(&fx, 0, sizeof(fx));
    fx.base = event_base_new();
    struct http_server_options opts = {.max_body_bytes = 1024 * 1024,
                                       .max_header_bytes = 16384,
                                       .max_connections = 200,
                                       .request_timeout_ms = 10000,
                                       .sse_high_water_bytes = 1024 * 1024};
    char *err = NULL;
    fx.srv = http_server_new(fx.base, &opts, &err);
    assert_non_null(fx.srv);
    assert_int_equal(http_server_listen(fx.srv, "127.0.0.1:0", &err), 0);
    fx.port = http_server_port(fx.srv);
    struct {
        const char *path;
        unsigned methods;
        http_handler_fn fn;
    } routes[] = {
        {"/json", HTTP_GET, on_json},
        {"/echo", HTTP_GET | HTTP_POST | HTTP_DELETE | HTTP_PUT, on_echo},
        {"/redirect", HTTP_GET, on_redirect},
        {"/fail", HTTP_GET, on_fail},
        {"/slow", HTTP_GET, on_slow},
        {"/big", HTTP_GET, on_big},
        {"/big-chunked", HTTP_GET, on_big_chunked},
        {"/sse", HTTP_GET, on_sse},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        assert_int_equal(
            http_route_add(fx.srv, routes[i].path, routes[i].methods, routes[i].fn, NULL, NULL), 0);
    fx.hc = httpc_new(fx.base, &err);
    assert_non_null(fx.hc);
    fx.refused_fd = open_refused_port(&fx.refused_port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    httpc_free(fx.hc);
    for (size_t i = 0; i < fx.n_held; i++)
        http_reply_empty(fx.held[i], 204);
    for (size_t i = 0; i < fx.n_jobs; i++) {
        job_finish(&fx.jobs[i]);
        if (fx.jobs[i].timer)
            event_free(fx.jobs[i].timer);
    }
    http_server_free(fx.srv);
    if (fx.canned)
        evconnlistener_free(fx.canned);
    event_base_free(fx.base);
    close(fx.refused_fd);
    return 0;
}

/* ---- running the loop ------------------------------------------------------ */

typedef bool (*pred_fn)(void *arg);

static void on_poll_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg; /* only wakes the loop so run_until re-checks its predicate */
}

/* Turns the loop until PRED holds or MAX_MS pass; returns PRED. */
static bool run_until(pred_fn pred, void *arg, int max_ms)
{
    uint64_t deadline = mono_ms() + (uint64_t)max_ms;
    struct event *tick = event_new(fx.base, -1, EV_PERSIST, on_poll_tick, NULL);
    struct timeval tv = {0, 2000};
    event_add(tick, &tv);
    while (!(pred && pred(arg)) && mono_ms() < deadline)
        event_base_loop(fx.base, EVLOOP_ONCE);
    event_free(tick);
    return pred && pred(arg);
}

static void run_for(int ms)
{
    run_until(NULL, NULL, ms);
}

/* ---- buffered results ---------------------------------------------------------- */

struct result {
    int calls;
    bool returned;     /* set by the test once httpc_fetch() returned */
    bool saw_returned; /* what the callback saw: false = it ran synchronously */
    long status;
    char *body; /* owned */
    size_t body_len;
    char *error;        /* owned */
    char *location;     /* owned */
    char *x_test;       /* owned */
    char *content_type; /* owned */
    uint64_t at_ms;
    bool cancel_self; /* httpc_cancel(res->call) inside the callback */
};

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void record(const struct httpc_response *res, void *arg)
{
    struct result *r = arg;
    r->calls++;
    r->saw_returned = r->returned;
    r->status = res->status;
    r->body = xstrndup(res->body, res->body_len);
    r->body_len = res->body_len;
    assert_int_equal(res->body[res->body_len], '\0');
    r->error = dup_or_null(res->error);
    r->location = dup_or_null(httpc_response_header(res, "location"));
    r->x_test = dup_or_null(httpc_response_header(res, "X-TEST"));
    r->content_type = dup_or_null(httpc_response_header(res, "Content-Type"));
    r->at_ms = mono_ms();
    if (r->cancel_self)
        httpc_cancel(res->call);
}

static void result_clear(struct result *r)
{
    free(r->body);
    free(r->error);
    free(r->location);
    free(r->x_test);
    free(r->content_type);
    memset(r, 0, sizeof(*r));
}

static bool result_done(void *arg)
{
    return ((struct result *)arg)->calls > 0;
}

/* One buffered exchange, start to callback. */
static void fetch(const struct httpc_request *req, struct result *r)
{
    httpc_fetch(fx.hc, req, record, r);
    r->returned = true;
    assert_true(run_until(result_done, r, 5000));
    assert_int_equal(r->calls, 1);
    assert_true(r->saw_returned);
}

/* ---- tests: buffered ------------------------------------------------------------ */

static bool collect_header(const char *name, const char *value, void *arg)
{
    struct strbuf *sb = arg;
    strbuf_printf(sb, "%s=%s;", name, value);
    return true;
}

struct header_seen {
    struct strbuf all;
};

static void record_all_headers(const struct httpc_response *res, void *arg)
{
    struct header_seen *h = arg;
    httpc_call_foreach_header(res->call, collect_header, &h->all);
}

static bool headers_seen(void *arg)
{
    return ((struct header_seen *)arg)->all.len > 0;
}

static void test_get_json(void **state)
{
    (void)state;
    char *u = url("/json");
    struct httpc_request req = {.method = "GET", .url = u, .timeout_ms = 5000};
    struct result r = {0};
    fetch(&req, &r);
    assert_null(r.error);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"ok\":true}");
    assert_string_equal(r.x_test, "one"); /* looked up as "X-TEST" */
    assert_string_equal(r.content_type, "application/json");
    result_clear(&r);

    struct header_seen h = {STRBUF_INIT};
    httpc_fetch(fx.hc, &req, record_all_headers, &h);
    assert_true(run_until(headers_seen, &h, 5000));
    assert_non_null(strstr(strbuf_str(&h.all), "X-Test=one;"));
    assert_non_null(strstr(strbuf_str(&h.all), "Content-Length=11;"));
    strbuf_release(&h.all);
    free(u);
}

static void test_post_echo_basic_auth_and_no_secrets_logged(void **state)
{
    (void)state;
    FILE *logf = tmpfile();
    gw_log_set_fd(fileno(logf));
    gw_log_set_level(GW_LOG_DEBUG);

    char *u = url("/echo?x=1");
    const char *form = "grant_type=authorization_code&code=s3cret-code";
    struct httpc_header hdrs[] = {{"Content-Type", "application/x-www-form-urlencoded"},
                                  {"X-Custom", "v 1"}};
    /* RFC 7617 §2's example credentials. */
    struct httpc_request req = {.method = "POST",
                                .url = u,
                                .headers = hdrs,
                                .n_headers = 2,
                                .body = form,
                                .body_len = strlen(form),
                                .basic_user = "Aladdin",
                                .basic_password = "open sesame",
                                .timeout_ms = 5000};
    struct result r = {0};
    fetch(&req, &r);
    assert_null(r.error);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "method=POST\n"));
    assert_non_null(strstr(r.body, "auth=Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\n"));
    assert_non_null(strstr(r.body, "expect=-\n")); /* no "Expect: 100-continue" */
    assert_non_null(strstr(r.body, "ctype=application/x-www-form-urlencoded\n"));
    assert_non_null(strstr(r.body, "custom=v 1\n"));
    assert_non_null(strstr(r.body, "query=x=1\n"));
    assert_non_null(strstr(r.body, "body=grant_type=authorization_code&code=s3cret-code"));
    result_clear(&r);

    /* A body without a Content-Type goes without one (no implicit form type). */
    struct httpc_request bare = {.method = "POST", .url = u, .body = "{}", .body_len = 2};
    fetch(&bare, &r);
    assert_non_null(strstr(r.body, "ctype=-\n"));
    assert_non_null(strstr(r.body, "auth=-\n"));
    result_clear(&r);

    struct httpc_request del = {.method = "DELETE", .url = u};
    fetch(&del, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "method=DELETE\n"));
    result_clear(&r);

    gw_log_set_level(GW_LOG_ERROR);
    gw_log_set_fd(2);
    char logbuf[16384] = {0};
    rewind(logf);
    size_t n = fread(logbuf, 1, sizeof(logbuf) - 1, logf);
    fclose(logf);
    assert_true(n > 0);
    assert_non_null(strstr(logbuf, "\"msg\":\"request done\""));
    assert_non_null(strstr(logbuf, "/echo"));
    assert_null(strstr(logbuf, "QWxhZGRpbjpvcGVuIHNlc2FtZQ")); /* no Authorization */
    assert_null(strstr(logbuf, "open sesame"));
    assert_null(strstr(logbuf, "s3cret-code")); /* no body */
    assert_null(strstr(logbuf, "x=1"));         /* no query */
    free(u);
}

static void test_redirect_not_followed(void **state)
{
    (void)state;
    char *u = url("/redirect");
    struct httpc_request req = {.url = u, .timeout_ms = 5000};
    struct result r = {0};
    fetch(&req, &r);
    assert_null(r.error);
    assert_int_equal(r.status, 302);
    assert_string_equal(r.location, "/json");
    assert_string_equal(r.body, "moved");
    result_clear(&r);
    free(u);
}

static void test_500_is_an_answer(void **state)
{
    (void)state;
    char *u = url("/fail");
    struct httpc_request req = {.url = u, .timeout_ms = 5000};
    struct result r = {0};
    fetch(&req, &r);
    assert_null(r.error);
    assert_int_equal(r.status, 500);
    assert_string_equal(r.body, "boom");
    result_clear(&r);
    free(u);
}

static void test_total_timeout(void **state)
{
    (void)state;
    char *u = url("/slow");
    struct httpc_request req = {.url = u, .timeout_ms = 300};
    struct result r = {0};
    uint64_t t0 = mono_ms();
    fetch(&req, &r);
    uint64_t elapsed = r.at_ms - t0;
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "timed out after 300 ms");
    assert_int_equal(r.body_len, 0);
    assert_true(elapsed >= 280 && elapsed < 1000);
    assert_int_equal(fx.n_held, 1); /* it did reach the server */
    result_clear(&r);
    free(u);
}

static void test_low_speed_timeout(void **state)
{
    (void)state;
    char *u = url("/slow");
    struct httpc_request req = {.url = u, .low_speed_timeout_ms = 200};
    struct result r = {0};
    uint64_t t0 = mono_ms();
    fetch(&req, &r);
    uint64_t elapsed = r.at_ms - t0;
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "timed out: no data for 200 ms");
    assert_true(elapsed >= 190 && elapsed < 1000);
    result_clear(&r);
    free(u);
}

static void test_response_too_large(void **state)
{
    (void)state;
    struct result r = {0};
    /* With Content-Length: refused from the head. */
    char *u = url("/big");
    struct httpc_request req = {.url = u, .timeout_ms = 5000, .max_response_bytes = 1024 * 1024};
    fetch(&req, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "response too large (> 1048576 bytes)");
    assert_int_equal(r.body_len, 0);
    result_clear(&r);
    /* Exactly at the limit is fine. */
    req.max_response_bytes = BIG_BYTES;
    fetch(&req, &r);
    assert_null(r.error);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_BYTES);
    result_clear(&r);
    free(u);
    /* Chunked, no Content-Length: refused while reading. */
    u = url("/big-chunked");
    req.url = u;
    req.max_response_bytes = 1024 * 1024;
    fetch(&req, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "response too large (> 1048576 bytes)");
    result_clear(&r);
    free(u);
}

static void test_connection_refused(void **state)
{
    (void)state;
    char *u = xasprintf("http://127.0.0.1:%d/x", fx.refused_port);
    struct httpc_request req = {.url = u, .connect_timeout_ms = 2000};
    struct result r = {0};
    fetch(&req, &r);
    assert_int_equal(r.status, 0);
    char *want = xasprintf("connect to 127.0.0.1:%d failed: Connection refused", fx.refused_port);
    assert_string_equal(r.error, want);
    free(want);
    result_clear(&r);
    free(u);
}

/* A listener whose accept queue is full drops SYNs (Linux): a local black hole. */
static void test_connect_timeout(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = {.sin_family = AF_INET};
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(in);
    assert_int_equal(bind(lfd, (struct sockaddr *)&in, sizeof(in)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&in, &len), 0);
    int fillers[3];
    for (int i = 0; i < 3; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&in, sizeof(in)); /* EINPROGRESS */
    }
    run_for(50);
    char *u = xasprintf("http://127.0.0.1:%d/", ntohs(in.sin_port));
    struct httpc_request req = {.url = u, .connect_timeout_ms = 200, .timeout_ms = 3000};
    struct result r = {0};
    uint64_t t0 = mono_ms();
    fetch(&req, &r);
    uint64_t elapsed = r.at_ms - t0;
    char *want = xasprintf("connect to 127.0.0.1:%d timed out after 200 ms", ntohs(in.sin_port));
    assert_string_equal(r.error, want);
    assert_true(elapsed >= 190 && elapsed < 1000);
    free(want);
    result_clear(&r);
    free(u);
    for (int i = 0; i < 3; i++)
        close(fillers[i]);
    close(lfd);
}

/* https:// to a plain-HTTP port: the handshake fails, reported as TLS. */
static void test_tls_failure(void **state)
{
    (void)state;
    char *u = xasprintf("https://127.0.0.1:%d/json", fx.port);
    struct httpc_request req = {.url = u, .timeout_ms = 5000};
    struct result r = {0};
    fetch(&req, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(r.error);
    assert_true(strncmp(r.error, "TLS: ", 5) == 0);
    result_clear(&r);
    free(u);
}

static void test_https_only_refuses_without_connecting(void **state)
{
    (void)state;
    struct httpc_stats before, after;
    httpc_get_stats(fx.hc, &before);
    struct httpc_request req = {.url = "http://example.com/", .https_only_except_loopback = true};
    struct result r = {0};
    uint64_t t0 = mono_ms();
    fetch(&req, &r);
    assert_true(r.at_ms - t0 < 100);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error,
                        "refused plain http to example.com: https is required for non-loopback "
                        "hosts");
    result_clear(&r);
    httpc_get_stats(fx.hc, &after);
    assert_int_equal(after.requests_started, before.requests_started); /* libcurl never saw it */
    assert_int_equal(after.connections_opened, before.connections_opened);
    assert_int_equal(after.requests_refused, before.requests_refused + 1);

    /* Look-alikes of loopback are not loopback. */
    const char *refused[] = {"http://localhost.example.com/", "http://127.0.0.1.nip.io/",
                             "http://10.0.0.1/", "http://[::2]/", "HTTP://Example.COM:80/a?b"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        req.url = refused[i];
        fetch(&req, &r);
        assert_non_null(strstr(r.error, "https is required"));
        result_clear(&r);
    }
    /* Loopback passes the policy: served, or refused by the TCP stack, not by us. */
    char *ok[] = {url("/json"), xasprintf("http://localhost:%d/json", fx.port),
                  xasprintf("http://127.0.0.2:%d/json", fx.refused_port),
                  xasprintf("http://[::1]:%d/json", fx.refused_port)};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        req.url = ok[i];
        fetch(&req, &r);
        if (r.error)
            assert_null(strstr(r.error, "https"));
        else
            assert_int_equal(r.status, 200);
        result_clear(&r);
        free(ok[i]);
    }
}

/* public_addresses_only (CIMD): the resolved address is judged on the socket libcurl opens;
 * a loopback one never gets a connection, whatever the name says. */
static void test_public_addresses_only(void **state)
{
    (void)state;
    struct httpc_stats before, after;
    httpc_get_stats(fx.hc, &before);
    char *u = xasprintf("https://127.0.0.1:%d/json", fx.port);
    struct httpc_request req = {.url = u, .timeout_ms = 5000, .public_addresses_only = true};
    struct result r = {0};
    fetch(&req, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "refused to connect to 127.0.0.1 (127.0.0.1): loopback address");
    result_clear(&r);
    free(u);
    u = xasprintf("https://localhost:%d/json", fx.port);
    req.url = u;
    fetch(&req, &r);
    assert_non_null(r.error);
    assert_true(strncmp(r.error, "refused to connect to localhost (", 33) == 0);
    assert_non_null(strstr(r.error, "): loopback address"));
    result_clear(&r);
    free(u);
    httpc_get_stats(fx.hc, &after);
    assert_int_equal(after.connections_opened, before.connections_opened);

    /* Plain http is refused before libcurl, loopback or not. */
    u = url("/json");
    req.url = u;
    fetch(&req, &r);
    assert_string_equal(r.error, "refused plain http to 127.0.0.1: https is required");
    result_clear(&r);
    req.public_addresses_only = false;
    req.https_only = true;
    fetch(&req, &r);
    assert_string_equal(r.error, "refused plain http to 127.0.0.1: https is required");
    result_clear(&r);
    free(u);
}

static void test_bad_requests_fail_async(void **state)
{
    (void)state;
    char *u = url("/json");
    struct httpc_header crlf[] = {{"X-A", "v\r\nX-Injected: 1"}};
    struct httpc_header badname[] = {{"X A", "v"}};
    struct {
        struct httpc_request req;
        const char *error;
    } cases[] = {
        {{.url = "not a url"}, "invalid URL"},
        {{.url = "ftp://example.com/"}, "unsupported URL scheme \"ftp\" (http and https only)"},
        {{.url = NULL}, "invalid request: no URL"},
        {{.method = "GE T", .url = u}, "invalid request: bad method"},
        {{.url = u, .headers = crlf, .n_headers = 1}, "invalid request header \"X-A\": bad value"},
        {{.url = u, .headers = badname, .n_headers = 1}, "invalid request header #0: bad name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct result r = {0};
        fetch(&cases[i].req, &r);
        assert_int_equal(r.status, 0);
        assert_non_null(r.error);
        assert_true(strncmp(r.error, cases[i].error, strlen(cases[i].error)) == 0);
        result_clear(&r);
    }
    free(u);
}

static bool all_done(void *arg)
{
    struct result *rs = arg;
    for (int i = 0; i < 50; i++)
        if (rs[i].calls == 0)
            return false;
    return true;
}

static void test_50_concurrent(void **state)
{
    (void)state;
    struct result rs[50];
    memset(rs, 0, sizeof(rs));
    char *urls[50];
    for (int i = 0; i < 50; i++) {
        urls[i] = xasprintf("http://127.0.0.1:%d/echo?i=%d", fx.port, i);
        struct httpc_request req = {.url = urls[i], .timeout_ms = 5000};
        httpc_fetch(fx.hc, &req, record, &rs[i]);
        rs[i].returned = true;
    }
    assert_true(run_until(all_done, rs, 5000));
    for (int i = 0; i < 50; i++) {
        assert_int_equal(rs[i].calls, 1);
        assert_true(rs[i].saw_returned);
        assert_null(rs[i].error);
        assert_int_equal(rs[i].status, 200);
        char *want = xasprintf("query=i=%d\n", i);
        assert_non_null(strstr(rs[i].body, want));
        free(want);
        result_clear(&rs[i]);
        free(urls[i]);
    }
    struct httpc_stats st;
    httpc_get_stats(fx.hc, &st);
    assert_int_equal(st.in_flight, 0);
}

static void test_connection_reused(void **state)
{
    (void)state;
    char *u = url("/json");
    struct httpc_request req = {.url = u, .timeout_ms = 5000};
    struct result r = {0};
    for (int i = 0; i < 3; i++) {
        fetch(&req, &r);
        assert_int_equal(r.status, 200);
        result_clear(&r);
    }
    struct httpc_stats st;
    httpc_get_stats(fx.hc, &st);
    assert_int_equal(st.requests_started, 3);
    assert_int_equal(st.connections_opened, 1);
    free(u);
}

/* A 1xx head first (its fields dropped), then the final head with folded and repeated fields. */
static void test_response_heads_1xx_fold_repeat_trailer(void **state)
{
    (void)state;
    int port = canned_serve("HTTP/1.1 103 Early Hints\r\n"
                            "Link: </style.css>; rel=preload\r\n"
                            "\r\n"
                            "HTTP/1.1 200 OK\r\n"
                            "X-Fold: one\r\n"
                            "  two\r\n"
                            "Set-Cookie: a=1\r\n"
                            "Set-Cookie: b=2\r\n"
                            "X-Spaces:   padded \t\r\n"
                            "Transfer-Encoding: chunked\r\n"
                            "Trailer: X-Trailer\r\n"
                            "Connection: close\r\n"
                            "\r\n"
                            "2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n");
    char *u = xasprintf("http://127.0.0.1:%d/", port);
    struct httpc_request req = {.url = u, .timeout_ms = 5000};
    struct result r = {0};
    struct header_seen h = {STRBUF_INIT};
    httpc_fetch(fx.hc, &req, record_all_headers, &h);
    assert_true(run_until(headers_seen, &h, 5000));
    assert_string_equal(strbuf_str(&h.all), "X-Fold=one two;Set-Cookie=a=1;Set-Cookie=b=2;"
                                            "X-Spaces=padded;Transfer-Encoding=chunked;"
                                            "Trailer=X-Trailer;Connection=close;");
    strbuf_release(&h.all);
    fetch(&req, &r);
    assert_null(r.error);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    result_clear(&r);
    free(u);
}

static void test_response_head_too_large(void **state)
{
    (void)state;
    struct strbuf resp = STRBUF_INIT;
    strbuf_puts(&resp, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 80; i++) /* 80 lines of ~1 KiB: past HTTPC_MAX_HEADER_BYTES */
        strbuf_printf(&resp, "X-H%d: %01000d\r\n", i, 0);
    strbuf_puts(&resp, "Content-Length: 2\r\n\r\nok");
    int port = canned_serve(strbuf_str(&resp));
    char *u = xasprintf("http://127.0.0.1:%d/", port);
    struct httpc_request req = {.url = u, .timeout_ms = 5000};
    struct result r = {0};
    fetch(&req, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "response headers too large (> 65536 bytes)");
    result_clear(&r);
    strbuf_release(&resp);
    free(u);
}

/* A body cut short is an error, and a partial body is never handed over as the body. */
static void test_truncated_body_is_an_error(void **state)
{
    (void)state;
    int port = canned_serve("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
    char *u = xasprintf("http://127.0.0.1:%d/", port);
    struct httpc_request req = {.url = u, .timeout_ms = 5000};
    struct result r = {0};
    fetch(&req, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.body_len, 0);
    assert_non_null(r.error);
    char *where = xasprintf("127.0.0.1:%d: ", port);
    assert_true(strncmp(r.error, where, strlen(where)) == 0);
    free(where);
    result_clear(&r);
    /* Nothing at all. */
    canned_serve("");
    fetch(&req, &r);
    char *want = xasprintf("empty reply from 127.0.0.1:%d", port);
    assert_string_equal(r.error, want);
    free(want);
    result_clear(&r);
    free(u);
}

/* ---- tests: cancel and free -------------------------------------------------- */

static void test_cancel_pending(void **state)
{
    (void)state;
    char *u = url("/slow");
    struct httpc_request req = {.url = u};
    struct result queued = {0}, running = {0};
    /* Cancelled before the loop ever turned: never started. */
    httpc_cancel(httpc_fetch(fx.hc, &req, record, &queued));
    /* Cancelled while the server holds it. */
    struct httpc_call *call = httpc_fetch(fx.hc, &req, record, &running);
    run_for(100);
    assert_int_equal(fx.n_held, 1);
    httpc_cancel(call);
    run_for(100);
    assert_int_equal(queued.calls, 0);
    assert_int_equal(running.calls, 0);
    struct httpc_stats st;
    httpc_get_stats(fx.hc, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.requests_started, 1);
    /* The client still works afterwards. */
    char *j = url("/json");
    struct httpc_request ok = {.url = j};
    fetch(&ok, &running);
    assert_int_equal(running.status, 200);
    result_clear(&running);
    free(j);
    free(u);
}

static void test_cancel_self_in_done(void **state)
{
    (void)state;
    char *u = url("/json");
    struct httpc_request req = {.url = u};
    struct result r = {.cancel_self = true};
    fetch(&req, &r); /* ASan: no double free, no use after free */
    assert_int_equal(r.status, 200);
    result_clear(&r);
    free(u);
}

/* A done callback that cancels a second, still running call. */
struct cancel_other {
    struct httpc_call *victim;
    struct result victim_result;
    int calls;
};

static void cancel_other_done(const struct httpc_response *res, void *arg)
{
    (void)res;
    struct cancel_other *co = arg;
    co->calls++;
    httpc_cancel(co->victim);
}

static bool cancel_other_ran(void *arg)
{
    return ((struct cancel_other *)arg)->calls > 0;
}

static void test_cancel_other_in_callback(void **state)
{
    (void)state;
    char *slow = url("/slow"), *json = url("/json");
    struct cancel_other co = {0};
    struct httpc_request sreq = {.url = slow}, jreq = {.url = json};
    co.victim = httpc_fetch(fx.hc, &sreq, record, &co.victim_result);
    httpc_fetch(fx.hc, &jreq, cancel_other_done, &co);
    assert_true(run_until(cancel_other_ran, &co, 5000));
    run_for(50);
    assert_int_equal(co.victim_result.calls, 0);
    struct httpc_stats st;
    httpc_get_stats(fx.hc, &st);
    assert_int_equal(st.in_flight, 0);
    free(slow);
    free(json);
}

/* Fetches chained from done callbacks: the next one starts from inside the previous. */
struct chain {
    char *url;
    int left;
    int ok;
};

static void chain_done(const struct httpc_response *res, void *arg)
{
    struct chain *ch = arg;
    if (res->status == 200)
        ch->ok++;
    if (--ch->left > 0) {
        struct httpc_request req = {.url = ch->url};
        httpc_fetch(fx.hc, &req, chain_done, ch);
    }
}

static bool chain_finished(void *arg)
{
    return ((struct chain *)arg)->left == 0;
}

static void test_fetch_from_callback(void **state)
{
    (void)state;
    struct chain ch = {.url = url("/json"), .left = 5};
    struct httpc_request req = {.url = ch.url};
    httpc_fetch(fx.hc, &req, chain_done, &ch);
    assert_true(run_until(chain_finished, &ch, 5000));
    assert_int_equal(ch.ok, 5);
    free(ch.url);
}

static int never_called_streams;

static void stream_never_headers(struct httpc_call *call, long status, void *arg)
{
    (void)call;
    (void)status;
    (void)arg;
    never_called_streams++;
}

static int stream_never_data(struct httpc_call *call, const char *data, size_t len, void *arg)
{
    (void)call;
    (void)data;
    (void)len;
    (void)arg;
    never_called_streams++;
    return HTTPC_CONTINUE;
}

static void stream_never_done(struct httpc_call *call, const char *error, void *arg)
{
    (void)call;
    (void)error;
    (void)arg;
    never_called_streams++;
}

static void test_free_with_calls_in_flight(void **state)
{
    (void)state;
    char *err = NULL;
    struct httpc *c = httpc_new(fx.base, &err);
    assert_non_null(c);
    char *slow = url("/slow"), *json = url("/json");
    struct result rs[5];
    memset(rs, 0, sizeof(rs));
    struct httpc_request sreq = {.url = slow}, jreq = {.url = json},
                         bad = {.url = "http://example.com/", .https_only_except_loopback = true};
    httpc_fetch(c, &sreq, record, &rs[0]);
    httpc_fetch(c, &sreq, record, &rs[1]);
    struct httpc_request streq = {.url = slow}; /* in flight, head not yet in */
    struct httpc_stream_callbacks cb = {stream_never_headers, stream_never_data, stream_never_done};
    never_called_streams = 0;
    httpc_stream(c, &streq, &cb, NULL);
    run_for(30);                           /* the three are at the server now */
    httpc_fetch(c, &jreq, record, &rs[2]); /* queued, not started */
    httpc_fetch(c, &bad, record, &rs[3]);  /* queued failure, not reported */
    httpc_free(c);
    run_for(150);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rs[i].calls, 0);
    assert_int_equal(never_called_streams, 0);
    assert_int_equal(fx.n_held, 3);
    free(slow);
    free(json);
}

/* httpc_free() from inside a done callback: the other call never reports. */
struct free_inside {
    struct httpc *c;
    int calls;
};

static void free_inside_done(const struct httpc_response *res, void *arg)
{
    (void)res;
    struct free_inside *fi = arg;
    fi->calls++;
    httpc_free(fi->c);
}

static bool free_inside_ran(void *arg)
{
    return ((struct free_inside *)arg)->calls > 0;
}

static void test_free_inside_callback(void **state)
{
    (void)state;
    char *err = NULL;
    struct free_inside fi = {.c = httpc_new(fx.base, &err)};
    char *json = url("/json"), *slow = url("/slow");
    struct httpc_request jreq = {.url = json}, sreq = {.url = slow};
    httpc_fetch(fi.c, &jreq, free_inside_done, &fi);
    httpc_fetch(fi.c, &jreq, free_inside_done, &fi);
    httpc_fetch(fi.c, &sreq, free_inside_done, &fi);
    assert_true(run_until(free_inside_ran, &fi, 5000));
    run_for(100);
    assert_int_equal(fi.calls, 1);
    free(json);
    free(slow);
}

/* ---- tests: streaming ----------------------------------------------------------- */

struct stream_rec {
    struct httpc_call *call;
    int headers_calls;
    long status;
    char *content_type; /* owned */
    struct strbuf data;
    int data_calls;
    int done_calls;
    char *error; /* owned */
    bool returned;
    bool sync_callback;
    /* behaviour */
    bool pause_first;
    bool pause_every;
    int resume_ms;
    bool cancel_in_headers;
    bool cancel_in_data;
    bool free_in_data;
    struct httpc *owner; /* for free_in_data */
    /* pause bookkeeping */
    struct event *resume_timer; /* owned */
    int pauses;
    bool in_pause;
    bool data_while_paused;
};

static void s_headers(struct httpc_call *call, long status, void *arg)
{
    struct stream_rec *s = arg;
    s->sync_callback |= !s->returned;
    s->headers_calls++;
    s->status = status;
    free(s->content_type);
    s->content_type = dup_or_null(httpc_call_header(call, "content-type"));
    if (s->cancel_in_headers)
        httpc_cancel(call);
}

static int s_data(struct httpc_call *call, const char *data, size_t len, void *arg)
{
    struct stream_rec *s = arg;
    s->data_while_paused |= s->in_pause;
    s->data_calls++;
    strbuf_append(&s->data, data, len);
    if (s->cancel_in_data) {
        httpc_cancel(call);
        return HTTPC_CONTINUE;
    }
    if (s->free_in_data) {
        httpc_free(s->owner);
        return HTTPC_CONTINUE;
    }
    if (s->pause_every || (s->pause_first && s->pauses == 0)) {
        s->pauses++;
        s->in_pause = true;
        struct timeval tv = {0, s->resume_ms * 1000};
        evtimer_add(s->resume_timer, &tv);
        return HTTPC_PAUSE;
    }
    return HTTPC_CONTINUE;
}

static void s_done(struct httpc_call *call, const char *error, void *arg)
{
    (void)call;
    struct stream_rec *s = arg;
    s->done_calls++;
    s->error = dup_or_null(error);
}

static void s_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stream_rec *s = arg;
    assert_true(httpc_call_paused(s->call));
    s->in_pause = false;
    httpc_resume(s->call);
    httpc_resume(s->call); /* twice is harmless */
}

static const struct httpc_stream_callbacks s_callbacks = {s_headers, s_data, s_done};

static void stream_start(struct stream_rec *s, struct httpc *c, const char *path)
{
    char *u = url(path);
    struct httpc_request req = {.url = u, .low_speed_timeout_ms = 2000};
    s->resume_timer = evtimer_new(fx.base, s_resume, s);
    s->call = httpc_stream(c, &req, &s_callbacks, s);
    s->returned = true;
    free(u);
}

static void stream_clear(struct stream_rec *s)
{
    event_free(s->resume_timer);
    free(s->content_type);
    free(s->error);
    strbuf_release(&s->data);
}

static bool stream_done(void *arg)
{
    return ((struct stream_rec *)arg)->done_calls > 0;
}

static char *expected_sse(void)
{
    struct strbuf sb = STRBUF_INIT;
    for (int i = 1; i <= SSE_EVENTS; i++)
        strbuf_printf(&sb, "id: %d\ndata: event-%d\n\n", i, i);
    return strbuf_detach(&sb, NULL);
}

static void test_sse_pause_resume(void **state)
{
    (void)state;
    struct stream_rec s = {.pause_first = true, .resume_ms = 50};
    uint64_t t0 = mono_ms();
    stream_start(&s, fx.hc, "/sse");
    assert_true(run_until(stream_done, &s, 5000));
    assert_false(s.sync_callback);
    assert_int_equal(s.headers_calls, 1);
    assert_int_equal(s.status, 200);
    assert_string_equal(s.content_type, "text/event-stream");
    assert_int_equal(s.done_calls, 1);
    assert_null(s.error);
    assert_int_equal(s.pauses, 1);
    assert_false(s.data_while_paused);
    char *want = expected_sse();
    assert_string_equal(strbuf_str(&s.data), want); /* all, in order, exactly once */
    free(want);
    assert_true(mono_ms() - t0 >= 50);
    stream_clear(&s);
}

/* Pausing on every chunk, the last one included (the end waits for the resume). */
static void test_sse_pause_every_chunk(void **state)
{
    (void)state;
    struct stream_rec s = {.pause_every = true, .resume_ms = 10};
    stream_start(&s, fx.hc, "/sse");
    assert_true(run_until(stream_done, &s, 5000));
    assert_null(s.error);
    assert_false(s.data_while_paused);
    assert_true(s.pauses >= 2);
    assert_int_equal(s.pauses, s.data_calls);
    char *want = expected_sse();
    assert_string_equal(strbuf_str(&s.data), want);
    free(want);
    stream_clear(&s);
}

/* A paused stream is not a slow server: the low-speed timer sleeps while paused. */
static void test_pause_longer_than_low_speed_timeout(void **state)
{
    (void)state;
    struct stream_rec s = {.pause_first = true, .resume_ms = 300};
    char *u = url("/sse");
    struct httpc_request req = {.url = u, .low_speed_timeout_ms = 150};
    s.resume_timer = evtimer_new(fx.base, s_resume, &s);
    s.call = httpc_stream(fx.hc, &req, &s_callbacks, &s);
    s.returned = true;
    assert_true(run_until(stream_done, &s, 5000));
    assert_null(s.error);
    char *want = expected_sse();
    assert_string_equal(strbuf_str(&s.data), want);
    free(want);
    stream_clear(&s);
    free(u);
}

static void test_stream_cancel_in_callbacks(void **state)
{
    (void)state;
    struct stream_rec h = {.cancel_in_headers = true};
    stream_start(&h, fx.hc, "/sse");
    struct stream_rec d = {.cancel_in_data = true};
    stream_start(&d, fx.hc, "/sse");
    run_for(300);
    assert_int_equal(h.headers_calls, 1);
    assert_int_equal(h.data_calls, 0);
    assert_int_equal(h.done_calls, 0);
    assert_int_equal(d.headers_calls, 1);
    assert_int_equal(d.data_calls, 1);
    assert_int_equal(d.done_calls, 0);
    /* Cancelled while paused, from outside any callback. */
    struct stream_rec p = {.pause_first = true, .resume_ms = 1000};
    stream_start(&p, fx.hc, "/sse");
    run_for(100);
    assert_int_equal(p.pauses, 1);
    httpc_cancel(p.call);
    run_for(50);
    assert_int_equal(p.done_calls, 0);
    struct httpc_stats st;
    httpc_get_stats(fx.hc, &st);
    assert_int_equal(st.in_flight, 0);
    stream_clear(&h);
    stream_clear(&d);
    stream_clear(&p);
}

/* httpc_free() from on_data, i.e. while libcurl is on the stack. */
static void test_free_inside_on_data(void **state)
{
    (void)state;
    char *err = NULL;
    struct stream_rec s = {.free_in_data = true};
    s.owner = httpc_new(fx.base, &err);
    stream_start(&s, s.owner, "/sse");
    run_for(300);
    assert_int_equal(s.data_calls, 1);
    assert_int_equal(s.done_calls, 0);
    stream_clear(&s);
}

static void test_stream_refused_reports_through_on_done(void **state)
{
    (void)state;
    struct stream_rec s = {0};
    char *u = xasprintf("http://127.0.0.1:%d/sse", fx.refused_port);
    struct httpc_request req = {.url = u};
    s.resume_timer = evtimer_new(fx.base, s_resume, &s);
    httpc_stream(fx.hc, &req, &s_callbacks, &s);
    s.returned = true;
    assert_true(run_until(stream_done, &s, 5000));
    assert_false(s.sync_callback);
    assert_int_equal(s.headers_calls, 0);
    assert_non_null(strstr(s.error, "Connection refused"));
    stream_clear(&s);
    free(u);
}

int main(void)
{
    /* Hermetic: loopback requests must not go to a proxy from the environment. */
    const char *proxies[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                             "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
        unsetenv(proxies[i]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_echo_basic_auth_and_no_secrets_logged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redirect_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_is_an_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_low_speed_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_only_refuses_without_connecting, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_public_addresses_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests_fail_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_50_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_heads_1xx_fold_repeat_trailer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_response_head_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_body_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_self_in_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_other_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_calls_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_pause_every_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_longer_than_low_speed_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_cancel_in_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_on_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_refused_reports_through_on_done, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("httpc", tests, NULL, NULL);
}
