/*
 * httpc: libcurl's multi-socket interface on the caller's libevent loop.
 *
 * Owns one CURLM, an event per socket libcurl watches, one timer, and every
 * call until its final callback. The shape follows one rule: no user
 * callback runs inside libcurl. libcurl's own callbacks (write, header,
 * socket, timer) only record what happened; a deferred "kick" event then
 * delivers headers, data and completions from the loop. So a user callback
 * may cancel, start or free anything (libcurl forbids most curl_* calls from
 * inside its callbacks), and nothing is ever reported synchronously.
 *
 * Backpressure: data waits in a small per-call buffer; while the user has
 * paused (or the buffer is full) the write callback answers
 * CURL_WRITEFUNC_PAUSE, so libcurl stops reading the socket and keeps the
 * chunk until curl_easy_pause(CURLPAUSE_CONT), which we call from the kick.
 */
#include "common/httpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "common/strbuf.h"
#include "common/xalloc.h"
#include "gateway/log.h"

#define STREAM_BUFFER_BYTES (256u * 1024u) /* per call, before libcurl is paused */

struct httpc_hdr {
    char *name;  /* owned */
    char *value; /* owned */
};

struct httpc_call {
    struct httpc *c;          /* borrowed */
    CURL *easy;               /* owned; NULL before start or after removal */
    struct curl_slist *slist; /* owned */
    char *body;               /* owned copy of the request body */
    char *url;                /* owned */
    char *method;             /* owned */
    char *host_port;          /* owned: for error messages */
    bool streaming;
    httpc_done_fn done;
    struct httpc_stream_callbacks cbs;
    void *arg;                /* borrowed */
    uint64_t max_bytes;
    uint64_t timeout_ms, connect_timeout_ms, idle_ms;
    struct strbuf data;       /* buffered: the body; streamed: not yet delivered */
    struct httpc_hdr *hdrs;   /* owned: the final response head */
    size_t n_hdrs;
    size_t hdr_bytes;
    long status;
    bool head_complete;       /* a final (non-1xx) head arrived */
    bool body_started;        /* header lines after this are trailers */
    bool pending_start;       /* handed to libcurl from the loop, not inside httpc_fetch */
    struct timespec started;
    bool headers_delivered;
    bool user_paused;
    bool curl_paused;
    bool finished;            /* the transfer is over (result or error set) */
    bool cancelled;
    bool in_todo;
    bool logged;
    char *error;              /* owned: why it failed, NULL on success */
    struct event *idle;       /* owned: no-data timer */
    char errbuf[CURL_ERROR_SIZE];
    struct httpc_call *prev, *next;           /* in c->calls */
    struct httpc_call *todo_next;             /* in c->todo */
};

struct sock {
    struct httpc *c;   /* borrowed */
    curl_socket_t fd;
    struct event *ev;  /* owned */
    struct sock *prev, *next; /* in c->socks */
};

struct httpc {
    struct event_base *base;  /* borrowed */
    CURLM *multi;             /* owned */
    struct event *timer;      /* owned */
    struct event *kick;       /* owned */
    struct httpc_call *calls; /* every live call */
    struct httpc_call *todo;  /* calls with something to deliver */
    struct httpc_call *current; /* the call whose callback is running */
    struct sock *socks;       /* owned: sockets libcurl asked us to watch */
    bool dispatching;
    bool free_requested;
    struct httpc_stats stats;
};

static int curl_users;

static char *curl_acquire(void)
{
    if (curl_users++ == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        curl_users--;
        return xstrdup("curl_global_init failed");
    }
    return NULL;
}

static void curl_release(void)
{
    if (--curl_users == 0)
        curl_global_cleanup();
}

/* ---- bookkeeping ------------------------------------------------------------ */

static void schedule(struct httpc_call *call)
{
    struct httpc *c = call->c;
    if (!call->in_todo) {
        call->in_todo = true;
        call->todo_next = NULL;
        struct httpc_call **pp = &c->todo;
        while (*pp)
            pp = &(*pp)->todo_next;
        *pp = call;
    }
    if (!c->dispatching)
        event_active(c->kick, EV_TIMEOUT, 0);
}

static void unschedule(struct httpc_call *call)
{
    if (!call->in_todo)
        return;
    for (struct httpc_call **pp = &call->c->todo; *pp; pp = &(*pp)->todo_next) {
        if (*pp == call) {
            *pp = call->todo_next;
            break;
        }
    }
    call->in_todo = false;
}

static void detach_easy(struct httpc_call *call)
{
    if (call->easy) {
        curl_multi_remove_handle(call->c->multi, call->easy);
        curl_easy_cleanup(call->easy);
        call->easy = NULL;
    }
    if (call->idle)
        event_del(call->idle);
}

static void call_free(struct httpc_call *call)
{
    struct httpc *c = call->c;
    detach_easy(call);
    unschedule(call);
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    c->stats.in_flight--;
    curl_slist_free_all(call->slist);
    free(call->body);
    free(call->url);
    free(call->method);
    free(call->host_port);
    strbuf_release(&call->data);
    for (size_t i = 0; i < call->n_hdrs; i++) {
        free(call->hdrs[i].name);
        free(call->hdrs[i].value);
    }
    free(call->hdrs);
    free(call->error);
    if (call->idle)
        event_free(call->idle);
    free(call);
}

/* Ends the transfer with an error of our own (idle timer, limits). */
static void fail(struct httpc_call *call, char *error)
{
    if (call->finished) {
        free(error);
        return;
    }
    call->finished = true;
    call->error = error;
    call->c->stats.requests_failed++;
    detach_easy(call);
    schedule(call);
}

/* ---- libcurl callbacks: record only ---------------------------------------- */

static void arm_idle(struct httpc_call *call)
{
    if (call->idle == NULL || call->finished || call->curl_paused)
        return;
    struct timeval tv = {(time_t)(call->idle_ms / 1000), (suseconds_t)(call->idle_ms % 1000) * 1000};
    event_add(call->idle, &tv);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct httpc_call *call = arg;
    fail(call, xasprintf("timed out: no data for %llu ms", (unsigned long long)call->idle_ms));
}

static size_t on_curl_header(char *data, size_t size, size_t n, void *arg)
{
    struct httpc_call *call = arg;
    size_t len = size * n;
    if (call->cancelled || call->finished)
        return 0;
    arm_idle(call);
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new head (after 1xx ones): start over. */
        for (size_t i = 0; i < call->n_hdrs; i++) {
            free(call->hdrs[i].name);
            free(call->hdrs[i].value);
        }
        call->n_hdrs = 0;
        call->hdr_bytes = 0;
        call->head_complete = false;
        const char *sp = memchr(data, ' ', len);
        call->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return len;
    }
    call->hdr_bytes += len;
    if (call->hdr_bytes > HTTPC_MAX_HEADER_BYTES) {
        call->error = xasprintf("response headers too large (> %u bytes)",
                                (unsigned)HTTPC_MAX_HEADER_BYTES);
        return 0;
    }
    if (len <= 2) { /* the blank line ends the head */
        if (call->status >= 200)
            call->head_complete = true;
        return len;
    }
    if (call->body_started)
        return len; /* trailers: not part of the head */
    size_t tl = len;
    while (tl && (data[tl - 1] == '\r' || data[tl - 1] == '\n' || data[tl - 1] == ' ' ||
                  data[tl - 1] == '\t'))
        tl--;
    if ((data[0] == ' ' || data[0] == '\t') && call->n_hdrs) { /* obsolete line folding */
        const char *cont = data;
        while (cont < data + tl && (*cont == ' ' || *cont == '\t'))
            cont++;
        struct httpc_hdr *last = &call->hdrs[call->n_hdrs - 1];
        char *joined = xasprintf("%s %.*s", last->value, (int)(data + tl - cont), cont);
        free(last->value);
        last->value = joined;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (colon == NULL)
        return len;
    size_t vlen = len - (size_t)(colon + 1 - data);
    const char *v = colon + 1;
    while (vlen && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ' ||
                    v[vlen - 1] == '\t'))
        vlen--;
    call->hdrs = xrealloc(call->hdrs, (call->n_hdrs + 1) * sizeof(*call->hdrs));
    call->hdrs[call->n_hdrs].name = xstrndup(data, (size_t)(colon - data));
    call->hdrs[call->n_hdrs].value = xstrndup(v, vlen);
    call->n_hdrs++;
    return len;
}

static size_t on_curl_write(char *data, size_t size, size_t n, void *arg)
{
    struct httpc_call *call = arg;
    size_t len = size * n;
    if (call->cancelled || call->finished)
        return 0;
    call->head_complete = true;
    call->body_started = true;
    if (!call->streaming) {
        if (call->data.len + len > call->max_bytes) {
            call->error = xasprintf("response too large (> %llu bytes)",
                                    (unsigned long long)call->max_bytes);
            return 0;
        }
        strbuf_append(&call->data, data, len);
        arm_idle(call);
        return len;
    }
    if (call->user_paused || call->data.len >= STREAM_BUFFER_BYTES) {
        call->curl_paused = true; /* libcurl keeps this chunk until CURLPAUSE_CONT */
        if (call->idle)
            event_del(call->idle);
        return CURL_WRITEFUNC_PAUSE;
    }
    strbuf_append(&call->data, data, len);
    arm_idle(call);
    schedule(call);
    return len;
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg);

static void sock_free(struct httpc *c, struct sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    event_free(s->ev);
    free(s);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct httpc *c = userp;
    struct sock *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            sock_free(c, s);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        s->c = c;
        s->fd = fd;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    } else {
        event_free(s->ev);
    }
    short ev = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
               ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    s->ev = event_new(c->base, fd, ev, on_sock_event, c);
    event_add(s->ev, NULL);
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct httpc *c = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 0;
}

/* ---- completion ------------------------------------------------------------- */

static char *describe_failure(struct httpc_call *call, CURLcode rc)
{
    if (call->error)
        return NULL; /* ours, already set */
    long os_errno = 0;
    curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &os_errno);
    curl_off_t connect_us = 0;
    curl_easy_getinfo(call->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return xasprintf("connect to %s failed: %s", call->host_port,
                         os_errno ? strerror((int)os_errno) : "connection refused");
    case CURLE_OPERATION_TIMEDOUT:
        if (connect_us == 0 && call->connect_timeout_ms)
            return xasprintf("connect to %s timed out after %llu ms", call->host_port,
                             (unsigned long long)call->connect_timeout_ms);
        return xasprintf("timed out after %llu ms", (unsigned long long)call->timeout_ms);
    case CURLE_GOT_NOTHING:
        return xasprintf("empty reply from %s", call->host_port);
    case CURLE_COULDNT_RESOLVE_HOST:
        return xasprintf("cannot resolve %s", call->host_port);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return xasprintf("TLS: %s", call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
    default:
        return xasprintf("%s: %s", call->host_port,
                         call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
    }
}

static void collect_done(struct httpc *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct httpc_call *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call == NULL || call->finished)
            continue;
        long connects = 0;
        curl_easy_getinfo(call->easy, CURLINFO_NUM_CONNECTS, &connects);
        c->stats.connections_opened += (uint64_t)connects;
        if (msg->data.result != CURLE_OK) {
            char *why = describe_failure(call, msg->data.result);
            if (why)
                call->error = why;
            c->stats.requests_failed++;
        } else {
            curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
            call->head_complete = true;
        }
        call->finished = true;
        detach_easy(call);
        schedule(call);
    }
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    struct httpc *c = arg;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    collect_done(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct httpc *c = arg;
    (void)fd;
    (void)what;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(c);
}

/* ---- delivery (outside libcurl) ------------------------------------------------ */

static void httpc_destroy(struct httpc *c);

/* The one callback of a buffered call, once the transfer is over. */
static void deliver_buffered(struct httpc_call *call)
{
    struct httpc *c = call->c;
    if (!call->finished)
        return;
    struct httpc_response res = {
        .status = call->error ? 0 : call->status,
        .body = call->error ? "" : strbuf_str(&call->data),
        .body_len = call->error ? 0 : call->data.len,
        .error = call->error,
        .call = call,
    };
    c->current = call;
    call->done(&res, call->arg);
    c->current = NULL;
    call_free(call);
}

static void kick_call(struct httpc_call *call);

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct httpc *c = arg;
    (void)fd;
    (void)what;
    c->dispatching = true;
    while (c->todo && !c->free_requested) {
        struct httpc_call *call = c->todo;
        c->todo = call->todo_next;
        call->in_todo = false;
        kick_call(call);
    }
    c->dispatching = false;
    if (c->free_requested)
        httpc_destroy(c);
}

/* Delivers headers, buffered data and the end of one streamed or buffered call. */
static void log_done(const struct httpc_call *call);

static void begin_transfer(struct httpc_call *call)
{
    struct httpc *c = call->c;
    call->pending_start = false;
    clock_gettime(CLOCK_MONOTONIC, &call->started);
    if (curl_multi_add_handle(c->multi, call->easy) != CURLM_OK) {
        curl_easy_cleanup(call->easy);
        call->easy = NULL;
        call->error = xstrdup("libcurl refused the request");
        call->finished = true;
        c->stats.requests_refused++;
        schedule(call);
        return;
    }
    c->stats.requests_started++;
    arm_idle(call);
}

static void kick_call(struct httpc_call *call)
{
    struct httpc *c = call->c;
    if (call->cancelled) {
        call_free(call);
        return;
    }
    if (call->pending_start) {
        begin_transfer(call);
        return;
    }
    if (call->finished && !call->logged) {
        call->logged = true;
        log_done(call);
    }
    if (!call->streaming) {
        deliver_buffered(call);
        return;
    }
    if (call->head_complete && !call->headers_delivered && call->error == NULL) {
        call->headers_delivered = true;
        if (call->cbs.on_headers) {
            c->current = call;
            call->cbs.on_headers(call, call->status, call->arg);
            c->current = NULL;
        }
        if (call->cancelled) {
            call_free(call);
            return;
        }
        if (c->free_requested)
            return;
    }
    if (call->data.len && !call->user_paused && call->headers_delivered) {
        size_t len = call->data.len;
        char *chunk = strbuf_detach(&call->data, NULL);
        int action = HTTPC_CONTINUE;
        if (call->cbs.on_data) {
            c->current = call;
            action = call->cbs.on_data(call, chunk, len, call->arg);
            c->current = NULL;
        }
        free(chunk);
        if (call->cancelled) {
            call_free(call);
            return;
        }
        if (c->free_requested)
            return;
        if (action == HTTPC_PAUSE)
            call->user_paused = true;
    }
    if (call->curl_paused && !call->user_paused && call->easy) {
        call->curl_paused = false;
        arm_idle(call);
        curl_easy_pause(call->easy, CURLPAUSE_CONT); /* may buffer more via on_curl_write */
    }
    if (call->finished && (call->data.len == 0 || call->error) && !call->user_paused) {
        if (call->cbs.on_done) {
            c->current = call;
            call->cbs.on_done(call, call->error, call->arg);
            c->current = NULL;
        }
        call_free(call);
        return;
    }
    if (call->data.len && !call->user_paused)
        schedule(call);
}

/* Debug line per finished call: method, URL without query, status; never headers or bodies. */
static void log_done(const struct httpc_call *call)
{
    if (!gw_log_enabled(GW_LOG_DEBUG))
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - call->started.tv_sec) * 1000000 +
                 (now.tv_nsec - call->started.tv_nsec) / 1000;
    struct gw_log_line *l = gw_log_begin(GW_LOG_DEBUG, "httpc", NULL, "request done");
    gw_log_str(l, "method", call->method);
    gw_log_strn(l, "url", call->url, strcspn(call->url, "?#"));
    gw_log_int(l, "status", call->error ? 0 : call->status);
    gw_log_int(l, "duration_us", us);
    if (call->error)
        gw_log_str(l, "error", call->error);
    gw_log_end(l);
}

/* ---- starting calls ------------------------------------------------------------ */

static bool host_is_loopback(const char *host)
{
    if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
        strcmp(host, "::1") == 0)
        return true;
    return strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") == strlen(host);
}

/* Checks the URL; sets call->host_port; returns an error (owned) or NULL. */
static char *check_url(struct httpc_call *call, const struct httpc_request *req)
{
    if (req->url == NULL)
        return xstrdup("invalid request: no URL");
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    char *err = NULL;
    if (curl_url_set(u, CURLUPART_URL, req->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        err = xasprintf("invalid URL: %s", req->url);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    call->host_port = xasprintf("%s:%s", host, port ? port : "?");
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
        err = xasprintf("unsupported URL scheme \"%s\" (http and https only)", scheme);
    else if (req->https_only_except_loopback && strcasecmp(scheme, "http") == 0 &&
             !host_is_loopback(host))
        err = xasprintf("refused plain http to %s: https is required for non-loopback hosts",
                        host);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return err;
}

/* RFC 9110 §5.1 token characters. */
static bool is_token(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++)
        if (!(((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')) ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return false;
    return true;
}

static char *check_request(const struct httpc_request *req)
{
    if (req->method && !is_token(req->method))
        return xstrdup("invalid request: bad method");
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct httpc_header *h = &req->headers[i];
        if (!is_token(h->name))
            return xasprintf("invalid request header #%zu: bad name", i);
        if (h->value == NULL || strpbrk(h->value, "\r\n"))
            return xasprintf("invalid request header \"%s\": bad value", h->name);
    }
    return NULL;
}

static void setup_easy(struct httpc_call *call, const struct httpc_request *req)
{
    CURL *e = call->easy;
    curl_easy_setopt(e, CURLOPT_URL, call->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_curl_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_curl_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    if (req->connect_timeout_ms)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    if (req->timeout_ms)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    const char *method = req->method ? req->method : "GET";
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body ? call->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (call->body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        }
    }
    if (req->basic_user) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, req->basic_user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, req->basic_password ? req->basic_password : "");
    }
    /* No implicit Content-Type for POST bodies and no 100-continue round trip. */
    call->slist = curl_slist_append(call->slist, "Expect:");
    bool has_ctype = false;
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, "Content-Type") == 0)
            has_ctype = true;
    if (!has_ctype && call->body)
        call->slist = curl_slist_append(call->slist, "Content-Type:");
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct httpc_header *h = &req->headers[i];
        char *line = h->value[0] ? xasprintf("%s: %s", h->name, h->value)
                                 : xasprintf("%s;", h->name); /* curl's empty-header form */
        call->slist = curl_slist_append(call->slist, line);
        free(line);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->slist);
}

static struct httpc_call *start(struct httpc *c, const struct httpc_request *req, bool streaming)
{
    struct httpc_call *call = xcalloc(1, sizeof(*call));
    call->c = c;
    call->streaming = streaming;
    call->max_bytes = req->max_response_bytes ? req->max_response_bytes
                                              : HTTPC_DEFAULT_MAX_RESPONSE_BYTES;
    call->timeout_ms = req->timeout_ms;
    call->connect_timeout_ms = req->connect_timeout_ms;
    call->idle_ms = req->low_speed_timeout_ms;
    call->url = xstrdup(req->url ? req->url : "");
    call->method = xstrdup(req->method ? req->method : "GET");
    if (req->body) {
        call->body = xmalloc(req->body_len + 1);
        memcpy(call->body, req->body, req->body_len);
        call->body[req->body_len] = '\0';
    }
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    c->stats.in_flight++;

    char *err = check_request(req);
    if (err == NULL)
        err = check_url(call, req);
    if (err) {
        call->error = err;
        call->finished = true;
        c->stats.requests_refused++;
        schedule(call); /* reported from the loop, never inside this call */
        return call;
    }
    call->easy = curl_easy_init();
    setup_easy(call, req);
    if (call->idle_ms)
        call->idle = evtimer_new(c->base, on_idle, call);
    call->pending_start = true; /* libcurl gets it from the loop (a cancel before never starts) */
    schedule(call);
    return call;
}

struct httpc_call *httpc_fetch(struct httpc *c, const struct httpc_request *req,
                               httpc_done_fn done, void *arg)
{
    struct httpc_call *call = NULL;
    struct httpc_request r = *req;
    call = start(c, &r, false);
    call->done = done;
    call->arg = arg;
    return call;
}

struct httpc_call *httpc_stream(struct httpc *c, const struct httpc_request *req,
                                const struct httpc_stream_callbacks *cb, void *arg)
{
    struct httpc_call *call = start(c, req, true);
    call->cbs = *cb;
    call->arg = arg;
    return call;
}

void httpc_cancel(struct httpc_call *call)
{
    if (call == NULL || call->cancelled)
        return;
    call->cancelled = true;
    detach_easy(call);
    /* Inside this call's own callback: freed when the callback returns. */
    if (call->c->current == call)
        return;
    call_free(call);
}

void httpc_resume(struct httpc_call *call)
{
    if (call == NULL || !call->user_paused)
        return;
    call->user_paused = false;
    schedule(call);
}

bool httpc_call_paused(const struct httpc_call *call)
{
    return call->user_paused;
}

const char *httpc_call_header(const struct httpc_call *call, const char *name)
{
    if (!call->head_complete)
        return NULL;
    for (size_t i = 0; i < call->n_hdrs; i++)
        if (strcasecmp(call->hdrs[i].name, name) == 0)
            return call->hdrs[i].value;
    return NULL;
}

const char *httpc_response_header(const struct httpc_response *res, const char *name)
{
    return res->call ? httpc_call_header(res->call, name) : NULL;
}

void httpc_call_foreach_header(const struct httpc_call *call,
                               bool (*fn)(const char *name, const char *value, void *arg),
                               void *arg)
{
    for (size_t i = 0; i < call->n_hdrs; i++)
        if (!fn(call->hdrs[i].name, call->hdrs[i].value, arg))
            return;
}

void httpc_get_stats(const struct httpc *c, struct httpc_stats *out)
{
    *out = c->stats;
}

/* ---- the client ----------------------------------------------------------------- */

struct httpc *httpc_new(struct event_base *base, char **err_out)
{
    char *err = curl_acquire();
    if (err) {
        *err_out = err;
        return NULL;
    }
    struct httpc *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timer, c);
    c->kick = event_new(base, -1, 0, on_kick, c);
    if (c->multi == NULL || c->timer == NULL || c->kick == NULL) {
        *err_out = xstrdup("cannot start libcurl");
        if (c->multi)
            curl_multi_cleanup(c->multi);
        if (c->timer)
            event_free(c->timer);
        if (c->kick)
            event_free(c->kick);
        free(c);
        curl_release();
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

static void httpc_destroy(struct httpc *c)
{
    while (c->calls) {
        c->calls->cancelled = true;
        call_free(c->calls);
    }
    curl_multi_cleanup(c->multi);
    while (c->socks) /* libcurl does not always report REMOVE while cleaning up */
        sock_free(c, c->socks);
    event_free(c->timer);
    event_free(c->kick);
    free(c);
    curl_release();
}

void httpc_free(struct httpc *c)
{
    if (c == NULL)
        return;
    if (c->dispatching) {
        c->free_requested = true; /* inside a callback: finish after it returns */
        return;
    }
    httpc_destroy(c);
}
