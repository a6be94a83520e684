/*
 * httpc: outbound HTTP on the gateway's event loop, libcurl's multi-socket
 * interface driven by libevent (see httpc.h for the caller's contract).
 *
 * What it owns. A struct httpc owns one CURLM (so connections are reused
 * across calls), one libevent timer (the single timeout libcurl asks for),
 * one libevent event per socket libcurl watches, one "kick" event for
 * deferred work, and every struct httpc_call until the call ends. A call owns
 * its easy handle, its parsed URL, the copied request body and headers, and
 * the response head and (buffered mode) body.
 *
 * Why it is shaped so. libcurl refuses most curl_multi_* calls from inside
 * its own callbacks (CURLM_RECURSIVE_API_CALL) and the caller may do anything
 * from inside ours: start a request, cancel one, free the client. So:
 *  - every user callback is reached from a libevent callback of ours (an
 *    "entry point"), never from inside an httpc_* function: starting a call,
 *    reporting early failures and lifting a pause all go through the kick
 *    (a zero-timeout timer, so a caller that retries in a loop cannot starve
 *    the loop's I/O);
 *  - c->in_curl is non-zero while libcurl is on the stack; a cancel then only
 *    marks the call (our curl callbacks answer "abort") and queues it, and the
 *    kick removes its handle once libcurl has returned;
 *  - c->depth counts our entry points on the stack; httpc_free() inside one
 *    cancels everything at once and the outermost entry point frees memory;
 *  - finished transfers are collected with curl_multi_info_read() only after
 *    curl_multi_socket_action() returned, then removed, then reported.
 */
#include "common/httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "common/net.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/log.h"
#include "common/xevent.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "libcurl 7.85 or newer is required (CURLOPT_PROTOCOLS_STR)"
#endif

#ifdef MCPGATE_VERSION
#define HTTPC_USER_AGENT "mcpgate/" MCPGATE_VERSION
#else
#define HTTPC_USER_AGENT "mcpgate"
#endif

/* libcurl's connect timeout when CURLOPT_CONNECTTIMEOUT_MS is 0 (CURL_TIMEOUT_DEFAULT). */
#define HTTPC_CURL_DEFAULT_CONNECT_MS 300000u

/* ---- intrusive lists ------------------------------------------------------ */

/* Circular, with the head embedded in the owner: unlinking needs no head pointer. */
struct httpc_link {
    struct httpc_link *prev; /* borrowed */
    struct httpc_link *next; /* borrowed */
};

#define HTTPC_CONTAINER(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

static void link_init(struct httpc_link *l)
{
    l->prev = l->next = l;
}

static bool link_linked(const struct httpc_link *l)
{
    return l->next != l;
}

static void link_add_tail(struct httpc_link *head, struct httpc_link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static void link_remove(struct httpc_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    link_init(l);
}

/* ---- types ---------------------------------------------------------------- */

struct httpc {
    struct event_base *base; /* borrowed; outlives the client */
    CURLM *multi;            /* owned */
    struct event *timer;     /* owned: the one timeout libcurl asks for */
    struct event *kick;      /* owned: zero-timeout timer that runs c->todo */
    struct httpc_link calls; /* every live call; owned through this list */
    struct httpc_link todo;  /* calls with deferred work (a subset of calls) */
    size_t n_todo;
    struct httpc_link socks; /* every socket watcher; owned through this list */
    unsigned depth;          /* entry points of ours on the stack */
    unsigned in_curl;        /* > 0 while a libcurl function that calls back runs */
    bool freeing;            /* httpc_free() ran inside a callback: free at depth 0 */
    struct httpc_stats stats;
};

/* One socket libcurl asked us to watch (its socketp, via curl_multi_assign). */
struct httpc_sock {
    struct httpc *c;        /* borrowed */
    struct httpc_link link; /* in c->socks */
    struct event *ev;       /* owned */
};

struct httpc_call {
    struct httpc *c;        /* borrowed: the owner */
    struct httpc_link link; /* in c->calls */
    struct httpc_link todo; /* in c->todo while deferred work waits */

    /* the request, all owned; freed only after the easy handle that points at them */
    CURL *easy;                     /* NULL when refused before libcurl saw it */
    CURLU *url;                     /* given to libcurl as CURLOPT_CURLU: it connects to
                                       exactly the host the policy checked */
    struct curl_slist *req_headers; /* CURLOPT_HTTPHEADER */
    char *req_body;                 /* CURLOPT_POSTFIELDS; wiped on free (client secrets) */
    size_t req_body_len;
    char *host;      /* as in the URL ("[::1]" for IPv6), for messages */
    char *host_port; /* "host:port", for messages */
    char method[16];

    /* the caller's side */
    bool streaming;
    httpc_done_fn done;                /* buffered mode */
    struct httpc_stream_callbacks scb; /* streamed mode */
    void *arg;                         /* borrowed: the caller's */

    /* limits */
    uint64_t max_response_bytes;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    uint64_t idle_ms;   /* low_speed_timeout_ms */
    struct event *idle; /* owned; NULL without idle_ms */

    /* the response */
    struct strbuf headers;        /* owned: "name\0value\0"… of the latest head; wiped on free */
    struct strbuf body;           /* owned: buffered mode; wiped on free */
    long status;                  /* of the latest status line */
    size_t skip;                  /* bytes libcurl will hand over again after a pause */
    char *error;                  /* owned: our own reason to fail; wins over libcurl's code */
    char *refusal;                /* owned: the first address public_addresses_only refused */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's detail (CURLOPT_ERRORBUFFER) */
    uint64_t started_ms;
    uint64_t last_byte_ms;

    bool started;       /* handed to libcurl once */
    bool attached;      /* in the multi handle now */
    bool connected;     /* a connection was made or reused (CURLOPT_PREREQFUNCTION) */
    bool head_done;     /* the final head is complete */
    bool head_fired;    /* on_headers ran (or had nothing to run) */
    bool paused;        /* on_data asked for HTTPC_PAUSE */
    bool resume_wanted; /* httpc_resume() queued an unpause */
    bool cancelled;     /* no callback may run any more */
    bool in_callback;   /* a callback of this call is on the stack */
    bool ending;        /* the final callback runs; call_end() frees afterwards */
};

static void call_free(struct httpc_call *call);
static void call_end(struct httpc_call *call, CURLcode rc);

/* ---- small helpers -------------------------------------------------------- */

static struct timeval ms_to_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static long clamp_long(uint64_t v)
{
    return v > (uint64_t)LONG_MAX ? LONG_MAX : (long)v;
}

/* RFC 9110 §5.6.2 token characters. */
static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return false;
    }
    return true;
}

/* The shared libcurl state, set up by the first client and torn down by the last. */
static unsigned curl_users;

static char *curl_acquire(void)
{
    if (curl_users == 0) {
        CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (rc != CURLE_OK)
            return xasprintf("libcurl init failed: %s", curl_easy_strerror(rc));
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        /* A synchronous resolver would block the whole loop on every DNS lookup (DESIGN §1). */
        if (!(v->features & CURL_VERSION_ASYNCHDNS)) {
            curl_global_cleanup();
            return xasprintf("libcurl %s resolves names synchronously; mcpgate needs the "
                             "threaded or c-ares resolver",
                             v->version);
        }
        if (v->version_num < 0x075500) {
            curl_global_cleanup();
            return xasprintf("libcurl %s is too old (7.85 or newer needed)", v->version);
        }
    }
    curl_users++;
    return NULL;
}

static void curl_release(void)
{
    if (--curl_users == 0)
        curl_global_cleanup();
}

/* ---- logging (debug only; never headers or bodies) ------------------------- */

/* scheme://host:port/path: no user info, no query (either may carry a secret). */
static char *call_log_url(const struct httpc_call *call)
{
    char *scheme = NULL, *host = NULL, *path = NULL;
    curl_url_get(call->url, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(call->url, CURLUPART_HOST, &host, 0);
    curl_url_get(call->url, CURLUPART_PATH, &path, 0);
    char *out = xasprintf("%s://%s%s%s", scheme ? scheme : "?",
                          call->host_port ? call->host_port : (host ? host : "?"),
                          path && path[0] == '/' ? "" : "/", path ? path : "");
    curl_free(scheme);
    curl_free(host);
    curl_free(path);
    return out;
}

static void log_call(const struct httpc_call *call, const char *msg, const char *error)
{
    if (!gw_log_enabled(GW_LOG_DEBUG))
        return;
    struct gw_log_line *line = gw_log_begin(GW_LOG_DEBUG, "httpc", NULL, msg);
    char *url = call->url ? call_log_url(call) : NULL;
    gw_log_str(line, "method", call->method);
    gw_log_str(line, "url", url);
    gw_log_bool(line, "stream", call->streaming);
    if (call->started && strcmp(msg, "request start") != 0) {
        long status = 0;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        gw_log_int(line, "status", status);
        gw_log_int(line, "duration_ms", (int64_t)(time_mono_ms() - call->started_ms));
    }
    if (error)
        gw_log_str(line, "error", error);
    gw_log_end(line);
    free(url);
}

/* ---- the deferred-work queue ------------------------------------------------ */

static void todo_push(struct httpc_call *call)
{
    struct httpc *c = call->c;
    if (!link_linked(&call->todo)) {
        link_add_tail(&c->todo, &call->todo);
        c->n_todo++;
    }
    /* A zero timeout, not event_active(): libevent 2.1 would run an event
     * activated from a callback in the same pass, so a caller retrying a
     * refused request from its callback would spin without polling sockets. */
    struct timeval zero = {0, 0};
    evtimer_add(c->kick, &zero);
}

static void todo_unlink(struct httpc_call *call)
{
    if (link_linked(&call->todo)) {
        link_remove(&call->todo);
        call->c->n_todo--;
    }
}

static struct httpc_call *todo_pop(struct httpc *c)
{
    if (!link_linked(&c->todo))
        return NULL;
    struct httpc_call *call = HTTPC_CONTAINER(c->todo.next, struct httpc_call, todo);
    todo_unlink(call);
    return call;
}

/* ---- entry points: every user callback runs below one of these ---------- */

static void destroy(struct httpc *c);

static void loop_enter(struct httpc *c)
{
    c->depth++;
}

/* The last thing an entry point does: C may be gone afterwards. */
static void loop_leave(struct httpc *c)
{
    if (--c->depth == 0 && c->freeing)
        destroy(c);
}

/* Removes the easy handle from the multi handle. Never while libcurl is on the stack. */
static void call_detach(struct httpc_call *call)
{
    if (!call->attached)
        return;
    struct httpc *c = call->c;
    long connects = 0;
    if (curl_easy_getinfo(call->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0)
        c->stats.connections_opened += (uint64_t)connects;
    curl_multi_remove_handle(c->multi, call->easy);
    call->attached = false;
    if (call->idle)
        evtimer_del(call->idle);
}

/* Reports every transfer libcurl finished. Runs after libcurl returned, never inside it. */
static void collect_done(struct httpc *c)
{
    CURLMsg *msg;
    int left;
    while (!c->freeing && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result; /* msg dies with the next multi call */
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        struct httpc_call *call = (struct httpc_call *)(void *)priv;
        call_detach(call);
        if (call->cancelled)
            call_free(call); /* cancelled inside a curl callback: its abort ended here */
        else
            call_end(call, rc);
    }
}

static void drive(struct httpc *c, curl_socket_t fd, int ev_bitmask)
{
    int running = 0;
    c->in_curl++;
    CURLMcode mrc = curl_multi_socket_action(c->multi, fd, ev_bitmask, &running);
    c->in_curl--;
    if (mrc != CURLM_OK)
        gw_log(GW_LOG_ERROR, "httpc", NULL, "curl_multi_socket_action failed", "error",
               curl_multi_strerror(mrc), NULL);
    collect_done(c);
}

static void on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    struct httpc_sock *sk = arg;
    struct httpc *c = sk->c; /* sk may be freed inside drive() */
    int mask = 0;
    if (what & EV_READ)
        mask |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        mask |= CURL_CSELECT_OUT;
    loop_enter(c);
    drive(c, fd, mask);
    loop_leave(c);
}

static void on_curl_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct httpc *c = arg;
    loop_enter(c);
    drive(c, CURL_SOCKET_TIMEOUT, 0);
    loop_leave(c);
}

/* ---- libcurl → libevent ------------------------------------------------- */

static void sock_free(struct httpc_sock *sk)
{
    link_remove(&sk->link);
    event_free(sk->ev);
    free(sk);
}

/*
 * CURLMOPT_SOCKETFUNCTION. REMOVE does not mean the socket closed: libcurl
 * also drops its interest while a transfer is paused and comes back later
 * with a fresh socketp of NULL, so a new watcher is made then.
 */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct httpc *c = userp;
    struct httpc_sock *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk)
            sock_free(sk);
        return 0;
    }
    short kind = EV_PERSIST;
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (sk == NULL) {
        sk = xcalloc(1, sizeof(*sk));
        sk->c = c;
        sk->ev = xevent_new(c->base, fd, kind, on_socket_ready, sk);
        link_add_tail(&c->socks, &sk->link);
        curl_multi_assign(c->multi, fd, sk); /* allowed inside this callback */
    } else {
        event_del(sk->ev);
        event_assign(sk->ev, c->base, fd, kind, on_socket_ready, sk);
    }
    if (kind & (EV_READ | EV_WRITE))
        event_add(sk->ev, NULL);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: only (re)arm our timer; socket_action must not run from here. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct httpc *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
    } else {
        struct timeval tv = ms_to_tv((uint64_t)timeout_ms);
        evtimer_add(c->timer, &tv);
    }
    return 0;
}

/* ---- per-call libcurl callbacks (libcurl is on the stack: no multi calls) -- */

static void set_error(struct httpc_call *call, char *msg)
{
    if (call->error == NULL)
        call->error = msg;
    else
        free(msg);
}

/* Runs on_headers once; false when the caller cancelled from inside it. */
static bool fire_head(struct httpc_call *call)
{
    if (call->head_fired)
        return !call->cancelled;
    call->head_fired = true;
    if (call->streaming && call->scb.on_headers) {
        call->in_callback = true;
        call->scb.on_headers(call, call->status, call->arg);
        call->in_callback = false;
    }
    return !call->cancelled;
}

static long parse_status(const char *line, size_t len)
{
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL || (size_t)(sp - line) + 4 > len)
        return 0;
    long status = 0;
    for (int i = 1; i <= 3; i++) {
        char ch = sp[i];
        if (ch < '0' || ch > '9')
            return 0;
        status = status * 10 + (ch - '0');
    }
    return status;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/* Stores one field line of the current head as "name\0value\0". */
static void store_header_line(struct httpc_call *call, const char *line, size_t len)
{
    struct strbuf *h = &call->headers;
    if (memchr(line, '\0', len))
        return; /* would corrupt the NUL-separated store; nothing valid has one */
    if (line[0] == ' ' || line[0] == '\t') {
        /* obs-fold (RFC 9112 §5.2): join to the previous value with one space */
        if (h->len == 0)
            return;
        trim(&line, &len);
        h->len--; /* reopen the previous value: drop its separator */
        strbuf_append(h, " ", 1);
        strbuf_append(h, line, len);
        strbuf_append(h, "", 1);
        return;
    }
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line)
        return;
    const char *name = line, *value = colon + 1;
    size_t name_len = (size_t)(colon - line), value_len = len - name_len - 1;
    trim(&name, &name_len);
    trim(&value, &value_len);
    strbuf_append(h, name, name_len);
    strbuf_append(h, "", 1);
    strbuf_append(h, value, value_len);
    strbuf_append(h, "", 1);
}

/* CURLOPT_HEADERFUNCTION: one line at a time, status lines of every head included. */
static size_t on_curl_header(char *buf, size_t size, size_t nitems, void *arg)
{
    struct httpc_call *call = arg;
    size_t total = size * nitems;
    if (call->cancelled)
        return 0; /* any other count than total aborts the transfer */
    call->last_byte_ms = time_mono_ms();
    size_t len = total;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new head: "100 Continue" and "103 Early Hints" come before the final one,
         * and only the final one is the response. */
        strbuf_reset(&call->headers);
        call->head_done = false;
        call->status = parse_status(buf, len);
        return total;
    }
    if (len == 0) {
        if (call->status >= 200 && !call->head_done) {
            call->head_done = true;
            return fire_head(call) ? total : 0;
        }
        return total;
    }
    if (call->head_done)
        return total; /* trailers after a chunked body: not part of the head */
    if (call->headers.len + len + 2 > HTTPC_MAX_HEADER_BYTES) {
        set_error(call, xasprintf("response headers too large (> %u bytes)",
                                  (unsigned)HTTPC_MAX_HEADER_BYTES));
        return 0;
    }
    store_header_line(call, buf, len);
    return total;
}

/* CURLOPT_WRITEFUNCTION: body bytes, chunked framing already removed. */
static size_t on_curl_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct httpc_call *call = arg;
    size_t total = size * nmemb;
    if (call->cancelled)
        return 0;
    call->last_byte_ms = time_mono_ms();
    /* Bytes the caller consumed before pausing come again first: drop them. */
    size_t skip = call->skip < total ? call->skip : total;
    call->skip -= skip;
    const char *p = data + skip;
    size_t len = total - skip;
    if (!call->streaming) {
        if ((uint64_t)call->body.len + len > call->max_response_bytes) {
            set_error(call, xasprintf("response too large (> %" PRIu64 " bytes)",
                                      call->max_response_bytes));
            return 0;
        }
        strbuf_append(&call->body, p, len);
        return total;
    }
    if (!call->head_done)
        call->head_done = true; /* a body without a blank line first: cannot happen in HTTP/1.1 */
    if (!fire_head(call))
        return 0;
    if (len == 0 || call->scb.on_data == NULL)
        return total;
    call->in_callback = true;
    int action = call->scb.on_data(call, p, len, call->arg);
    call->in_callback = false;
    if (call->cancelled)
        return 0;
    if (action == HTTPC_PAUSE) {
        /*
         * libcurl keeps the whole chunk it passed (from its first byte, not from
         * ours) and hands it over again on unpause (lib/sendf.c chop_write() →
         * pausewrite()). The caller consumed it all, so drop that much then.
         */
        call->skip = total;
        call->paused = true;
        if (call->idle)
            evtimer_del(call->idle); /* our choice to wait, not the server's slowness */
        return CURL_WRITEFUNC_PAUSE;
    }
    return total;
}

/* CURLOPT_PREREQFUNCTION: a connection was made or reused; the request goes out now. */
static int on_curl_prereq(void *arg, char *primary_ip, char *local_ip, int primary_port,
                          int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    struct httpc_call *call = arg;
    call->connected = true;
    return CURL_PREREQFUNC_OK;
}

/*
 * CURLOPT_OPENSOCKETFUNCTION for public_addresses_only: libcurl calls it with
 * each resolved address it is about to connect to (happy eyeballs included),
 * so the check and the connection see the same address. A refused address
 * gets no socket; libcurl tries the next one or fails with COULDNT_CONNECT,
 * which call_end() reports as the refusal.
 */
static curl_socket_t on_curl_opensocket(void *arg, curlsocktype purpose,
                                        struct curl_sockaddr *address)
{
    struct httpc_call *call = arg;
    const struct sockaddr *sa = &address->addr;
    const char *kind = purpose == CURLSOCKTYPE_IPCXN ? net_sockaddr_special_use(sa) : "a non-TCP";
    if (kind) {
        if (call->refusal == NULL) {
            char ip[INET6_ADDRSTRLEN] = "?";
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, ip,
                          sizeof(ip));
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, ip,
                          sizeof(ip));
            call->refusal = xasprintf("refused to connect to %s (%s): %s address",
                                      call->host ? call->host : "?", ip, kind);
        }
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* ---- ending a call ----------------------------------------------------------- */

static bool is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT: return true;
    default: return false;
    }
}

/* One line for an operator, built from libcurl's code; NULL for success. Owned. */
static char *describe_failure(struct httpc_call *call, CURLcode rc)
{
    const char *detail = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);
    const char *where = call->host_port ? call->host_port : "?";
    switch (rc) {
    case CURLE_OK: return NULL;
    case CURLE_COULDNT_CONNECT: {
        long os_errno = 0;
        curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &os_errno);
        return xasprintf("connect to %s failed: %s", where,
                         os_errno ? strerror((int)os_errno) : detail);
    }
    case CURLE_OPERATION_TIMEDOUT: {
        if (!call->connected) {
            uint64_t limit =
                call->connect_timeout_ms ? call->connect_timeout_ms : HTTPC_CURL_DEFAULT_CONNECT_MS;
            if (call->timeout_ms && call->timeout_ms < limit)
                limit = call->timeout_ms;
            return xasprintf("connect to %s timed out after %" PRIu64 " ms", where, limit);
        }
        return xasprintf("timed out after %" PRIu64 " ms",
                         call->timeout_ms ? call->timeout_ms : time_mono_ms() - call->started_ms);
    }
    case CURLE_COULDNT_RESOLVE_HOST:
        return xasprintf("resolve %s failed: %s", call->host ? call->host : "?", detail);
    case CURLE_FILESIZE_EXCEEDED: /* CURLOPT_MAXFILESIZE_LARGE saw the Content-Length */
        return xasprintf("response too large (> %" PRIu64 " bytes)", call->max_response_bytes);
    case CURLE_GOT_NOTHING: return xasprintf("empty reply from %s", where);
    default:
        if (is_tls_error(rc))
            return xasprintf("TLS: %s", detail);
        return xasprintf("%s: %s", where, detail);
    }
}

/*
 * Reports the end of CALL (already detached) and frees it. Our own error
 * (too large, refused, idle) wins over libcurl's code, which then only says
 * that we aborted.
 */
static void call_end(struct httpc_call *call, CURLcode rc)
{
    struct httpc *c = call->c;
    char *described = call->error ? NULL : describe_failure(call, rc);
    const char *error = call->error ? call->error : described;
    if (call->error == NULL && rc != CURLE_OK && call->refusal)
        error = call->refusal; /* the real reason behind libcurl's "couldn't connect" */
    if (error && call->started)
        c->stats.requests_failed++;
    log_call(call, "request done", error);
    call->ending = true;
    call->in_callback = true;
    if (!call->cancelled && call->streaming && call->scb.on_done) {
        call->scb.on_done(call, error, call->arg);
    } else if (!call->cancelled && !call->streaming && call->done) {
        long status = 0;
        if (error == NULL)
            curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        struct httpc_response res = {
            .status = status,
            .body = error ? "" : strbuf_str(&call->body),
            .body_len = error ? 0 : call->body.len,
            .error = error,
            .call = call,
        };
        call->done(&res, call->arg);
    }
    call->in_callback = false;
    free(described);
    call_free(call);
}

/* The low-speed timeout: our timer, so it has ms resolution and ignores pauses. */
static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct httpc_call *call = arg;
    struct httpc *c = call->c;
    if (!call->attached || call->paused || call->cancelled)
        return;
    uint64_t quiet = time_mono_ms() - call->last_byte_ms;
    if (quiet < call->idle_ms) {
        struct timeval tv = ms_to_tv(call->idle_ms - quiet);
        evtimer_add(call->idle, &tv);
        return;
    }
    loop_enter(c);
    call_detach(call);
    set_error(call, xasprintf("timed out: no data for %" PRIu64 " ms", call->idle_ms));
    call_end(call, CURLE_OK);
    loop_leave(c);
}

static void arm_idle(struct httpc_call *call)
{
    if (call->idle == NULL)
        return;
    call->last_byte_ms = time_mono_ms();
    struct timeval tv = ms_to_tv(call->idle_ms);
    evtimer_add(call->idle, &tv);
}

/* ---- the kick: starting, unpausing, reaping --------------------------------- */

static void call_start(struct httpc_call *call)
{
    struct httpc *c = call->c;
    if (call->error == NULL) {
        CURLMcode mrc = curl_multi_add_handle(c->multi, call->easy);
        if (mrc != CURLM_OK)
            call->error = xasprintf("cannot start request: %s", curl_multi_strerror(mrc));
    }
    if (call->error) {
        c->stats.requests_refused++;
        call_end(call, CURLE_OK);
        return;
    }
    call->started = call->attached = true;
    call->started_ms = time_mono_ms();
    c->stats.requests_started++;
    arm_idle(call);
    log_call(call, "request start", NULL);
}

static void call_unpause(struct httpc_call *call)
{
    struct httpc *c = call->c;
    call->resume_wanted = false;
    if (!call->paused || !call->attached)
        return;
    call->paused = false;
    arm_idle(call);
    /* libcurl hands over the held data right here, inside curl_easy_pause(): the
     * caller's on_data runs with in_curl set, so what it does is deferred. */
    c->in_curl++;
    CURLcode rc = curl_easy_pause(call->easy, CURLPAUSE_CONT);
    c->in_curl--;
    if (call->cancelled) {
        call_free(call);
    } else if (rc != CURLE_OK) {
        call_detach(call);
        call_end(call, rc);
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct httpc *c = arg;
    loop_enter(c);
    /* Only what was queued before this turn; what callbacks queue now waits a turn. */
    for (size_t n = c->n_todo; n > 0 && !c->freeing; n--) {
        struct httpc_call *call = todo_pop(c);
        if (call == NULL)
            break;
        if (call->cancelled)
            call_free(call);
        else if (!call->started)
            call_start(call);
        else if (call->resume_wanted)
            call_unpause(call);
    }
    collect_done(c);
    loop_leave(c);
}

/* ---- building a call ------------------------------------------------------------ */

static char *setup_url(struct httpc_call *call, const struct httpc_request *req)
{
    char *err = NULL, *scheme = NULL, *host = NULL, *port = NULL;
    call->url = curl_url();
    if (call->url == NULL) {
        err = xstrdup("out of memory");
        goto out;
    }
    CURLUcode uc = curl_url_set(call->url, CURLUPART_URL, req->url, 0);
    if (uc != CURLUE_OK) {
        err = xasprintf("invalid URL: %s", curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(call->url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(call->url, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(call->url, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        err = xstrdup("invalid URL: no host");
        goto out;
    }
    call->host = xstrdup(host);
    call->host_port = xasprintf("%s:%s", host, port);
    bool https = strcasecmp(scheme, "https") == 0;
    if (!https && strcasecmp(scheme, "http") != 0) {
        err = xasprintf("unsupported URL scheme \"%s\" (http and https only)", scheme);
        goto out;
    }
    if (!https && (req->https_only || req->public_addresses_only))
        err = xasprintf("refused plain http to %s: https is required", host);
    else if (!https && req->https_only_except_loopback && !net_host_is_loopback(host))
        err = xasprintf("refused plain http to %s: https is required for non-loopback hosts", host);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    return err;
}

static char *setup_headers(struct httpc_call *call, const struct httpc_request *req)
{
    bool has_content_type = false, has_expect = false;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct httpc_header *h = &req->headers[i];
        if (h->name == NULL || !is_token(h->name))
            return xasprintf("invalid request header #%zu: bad name", i);
        /* CR or LF would let a value start a header of its own. Never echo the value. */
        if (h->value == NULL || strpbrk(h->value, "\r\n"))
            return xasprintf("invalid request header \"%s\": bad value", h->name);
        has_content_type |= strcasecmp(h->name, "Content-Type") == 0;
        has_expect |= strcasecmp(h->name, "Expect") == 0;
        /* "Name;" is libcurl's spelling of an empty header; "Name:" would delete it. */
        char *line =
            h->value[0] ? xasprintf("%s: %s", h->name, h->value) : xasprintf("%s;", h->name);
        struct curl_slist *next = curl_slist_append(call->req_headers, line);
        free(line);
        if (next == NULL)
            return xstrdup("out of memory");
        call->req_headers = next;
    }
    /* "Name:" removes a header libcurl would add: its form-urlencoded Content-Type
     * for POST bodies, and "Expect: 100-continue", a round trip lost per large POST. */
    const char *removals[2] = {has_content_type ? NULL : "Content-Type:",
                               has_expect ? NULL : "Expect:"};
    for (size_t i = 0; i < 2; i++) {
        if (removals[i] == NULL)
            continue;
        struct curl_slist *next = curl_slist_append(call->req_headers, removals[i]);
        if (next == NULL)
            return xstrdup("out of memory");
        call->req_headers = next;
    }
    return NULL;
}

#define SETOPT(rc, easy, opt, val)                                                                 \
    do {                                                                                           \
        if ((rc) == CURLE_OK)                                                                      \
            (rc) = curl_easy_setopt((easy), (opt), (val));                                         \
    } while (0)

static CURLcode setup_method(struct httpc_call *call, const struct httpc_request *req)
{
    CURL *e = call->easy;
    CURLcode rc = CURLE_OK;
    const char *m = call->method;
    /* POST, PUT and PATCH always carry a body (maybe empty: "Content-Length: 0"). */
    bool send_body = req->body_len > 0 || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
                     strcmp(m, "PATCH") == 0;
    if (send_body) {
        call->req_body_len = req->body_len;
        call->req_body = xmalloc(req->body_len + 1);
        if (req->body_len)
            memcpy(call->req_body, req->body, req->body_len);
        call->req_body[req->body_len] = '\0';
        SETOPT(rc, e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->req_body_len);
        SETOPT(rc, e, CURLOPT_POSTFIELDS, call->req_body);
        if (strcmp(m, "POST") != 0)
            SETOPT(rc, e, CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "GET") == 0) {
        SETOPT(rc, e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(m, "HEAD") == 0) {
        SETOPT(rc, e, CURLOPT_NOBODY, 1L);
    } else {
        SETOPT(rc, e, CURLOPT_CUSTOMREQUEST, m);
    }
    return rc;
}

static CURLcode setup_easy(struct httpc_call *call, const struct httpc_request *req)
{
    CURL *e = call->easy;
    CURLcode rc = CURLE_OK;
    SETOPT(rc, e, CURLOPT_CURLU, call->url);
    SETOPT(rc, e, CURLOPT_PRIVATE, (void *)call);
    SETOPT(rc, e, CURLOPT_ERRORBUFFER, call->errbuf);
    SETOPT(rc, e, CURLOPT_NOSIGNAL, 1L); /* signals belong to the main loop, not to libcurl */
    SETOPT(rc, e, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(rc, e, CURLOPT_FOLLOWLOCATION, 0L); /* OAuth code must see every redirect */
    SETOPT(rc, e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(rc, e, CURLOPT_SSL_VERIFYPEER, 1L); /* the defaults, stated so they stay */
    SETOPT(rc, e, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(rc, e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L); /* a proxy's CONNECT head is not ours */
    SETOPT(rc, e, CURLOPT_TCP_KEEPALIVE, 1L);            /* long SSE streams through NAT boxes */
    SETOPT(rc, e, CURLOPT_USERAGENT, HTTPC_USER_AGENT);
    SETOPT(rc, e, CURLOPT_HTTPHEADER, call->req_headers);
    SETOPT(rc, e, CURLOPT_HEADERFUNCTION, on_curl_header);
    SETOPT(rc, e, CURLOPT_HEADERDATA, (void *)call);
    SETOPT(rc, e, CURLOPT_WRITEFUNCTION, on_curl_body);
    SETOPT(rc, e, CURLOPT_WRITEDATA, (void *)call);
    SETOPT(rc, e, CURLOPT_PREREQFUNCTION, on_curl_prereq);
    SETOPT(rc, e, CURLOPT_PREREQDATA, (void *)call);
    if (call->connect_timeout_ms)
        SETOPT(rc, e, CURLOPT_CONNECTTIMEOUT_MS, clamp_long(call->connect_timeout_ms));
    if (call->timeout_ms)
        SETOPT(rc, e, CURLOPT_TIMEOUT_MS, clamp_long(call->timeout_ms));
    /* libcurl 7.88 gives every transfer a receive buffer of CURLOPT_BUFFERSIZE (16 KiB by
     * default) for its whole life. A GET stream to an upstream is mostly idle, and there
     * can be thousands: 1 KiB (libcurl's minimum) each keeps them cheap; a larger event
     * takes more reads, each handed on as it comes (heaptrack, 1,000 idle streams: libcurl
     * held 14.6 KiB a stream with 4 KiB, of which the buffer; RSS 20.5 -> 17.4 KiB a stream). */
    if (call->streaming && strcmp(call->method, "GET") == 0)
        SETOPT(rc, e, CURLOPT_BUFFERSIZE, 1024L);
    if (!call->streaming) {
        /* Fails at once when Content-Length says too much; on_curl_body bounds the rest. */
        uint64_t max = call->max_response_bytes > INT64_MAX ? INT64_MAX : call->max_response_bytes;
        SETOPT(rc, e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    }
    if (req->ca_file)
        SETOPT(rc, e, CURLOPT_CAINFO, req->ca_file);
    if (req->public_addresses_only) {
        SETOPT(rc, e, CURLOPT_OPENSOCKETFUNCTION, on_curl_opensocket);
        SETOPT(rc, e, CURLOPT_OPENSOCKETDATA, (void *)call);
        SETOPT(rc, e, CURLOPT_NOPROXY, "*");      /* the check must see the server, not a proxy */
        SETOPT(rc, e, CURLOPT_FRESH_CONNECT, 1L); /* never a connection opened unchecked */
        SETOPT(rc, e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (req->basic_user || req->basic_password) {
        SETOPT(rc, e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SETOPT(rc, e, CURLOPT_USERNAME, req->basic_user ? req->basic_user : "");
        SETOPT(rc, e, CURLOPT_PASSWORD, req->basic_password ? req->basic_password : "");
    }
    if (rc == CURLE_OK)
        rc = setup_method(call, req);
    return rc;
}

/* Everything a call needs before the kick starts it; returns why not (owned) or NULL. */
static char *call_setup(struct httpc_call *call, const struct httpc_request *req)
{
    if (req == NULL || req->url == NULL)
        return xstrdup("invalid request: no URL");
    const char *method = req->method ? req->method : "GET";
    if (!is_token(method) || strlen(method) >= sizeof(call->method))
        return xstrdup("invalid request: bad method");
    memcpy(call->method, method, strlen(method) + 1);
    call->connect_timeout_ms = req->connect_timeout_ms;
    call->timeout_ms = req->timeout_ms;
    call->idle_ms = req->low_speed_timeout_ms;
    call->max_response_bytes =
        req->max_response_bytes ? req->max_response_bytes : HTTPC_DEFAULT_MAX_RESPONSE_BYTES;
    char *err = setup_url(call, req);
    if (err == NULL)
        err = setup_headers(call, req);
    if (err)
        return err;
    call->easy = curl_easy_init();
    if (call->easy == NULL)
        return xstrdup("cannot create a libcurl handle");
    CURLcode rc = setup_easy(call, req);
    if (rc != CURLE_OK)
        return xasprintf("cannot configure libcurl: %s", curl_easy_strerror(rc));
    if (call->idle_ms)
        call->idle = xevent_new(call->c->base, -1, 0, on_idle, call);
    return NULL;
}

static struct httpc_call *call_new(struct httpc *c, const struct httpc_request *req, bool streaming,
                                   void *arg)
{
    struct httpc_call *call = xcalloc(1, sizeof(*call));
    call->c = c;
    call->streaming = streaming;
    call->arg = arg;
    memcpy(call->method, "GET", 4);
    link_init(&call->todo);
    link_add_tail(&c->calls, &call->link);
    c->stats.in_flight++;
    call->error = call_setup(call, req);
    todo_push(call); /* started, or failed, from the loop: never before we return */
    return call;
}

static void wipe_strbuf(struct strbuf *sb)
{
    if (sb->buf)
        explicit_bzero(sb->buf, sb->cap);
    strbuf_release(sb);
}

/* Frees CALL and everything it owns. Never while libcurl or a callback of CALL is on the stack. */
static void call_free(struct httpc_call *call)
{
    struct httpc *c = call->c;
    call_detach(call);
    todo_unlink(call);
    link_remove(&call->link);
    c->stats.in_flight--;
    if (call->idle)
        event_free(call->idle);
    if (call->easy)
        curl_easy_cleanup(call->easy); /* before what it points at */
    curl_url_cleanup(call->url);
    curl_slist_free_all(call->req_headers);
    if (call->req_body) {
        explicit_bzero(call->req_body, call->req_body_len);
        free(call->req_body);
    }
    wipe_strbuf(&call->headers);
    wipe_strbuf(&call->body);
    free(call->host);
    free(call->host_port);
    free(call->error);
    free(call->refusal);
    free(call);
}

/* ---- public API ----------------------------------------------------------------- */

/*
 * libcurl's connection cache holds, by default, four connections per transfer
 * in flight at the moment a transfer is added: when the concurrency dips, it
 * closes connections that a moment later are opened again (seen as one new
 * TCP connection per five calls between two instances at c=16). A fixed size
 * keeps them.
 */
int httpc_set_max_idle(struct httpc *c, unsigned n)
{
    return curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)n) == CURLM_OK ? 0 : -EINVAL;
}

struct httpc *httpc_new(struct event_base *base, char **err_out)
{
    char *err = curl_acquire();
    if (err) {
        *err_out = err;
        return NULL;
    }
    struct httpc *c = xcalloc(1, sizeof(*c));
    c->base = base;
    link_init(&c->calls);
    link_init(&c->todo);
    link_init(&c->socks);
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        *err_out = xstrdup("curl_multi_init failed");
        goto fail;
    }
    c->timer = xevent_new(base, -1, 0, on_curl_timeout, c);
    c->kick = xevent_new(base, -1, 0, on_kick, c);
    CURLMcode mrc = curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    if (mrc == CURLM_OK)
        mrc = curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, (void *)c);
    if (mrc == CURLM_OK)
        mrc = curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    if (mrc == CURLM_OK)
        mrc = curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, (void *)c);
    if (mrc != CURLM_OK) {
        *err_out = xasprintf("curl_multi_setopt failed: %s", curl_multi_strerror(mrc));
        goto fail;
    }
    return c;
fail:
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

static void destroy(struct httpc *c)
{
    while (link_linked(&c->calls))
        call_free(HTTPC_CONTAINER(c->calls.next, struct httpc_call, link));
    /* Closes the cached connections; each REMOVE frees its watcher... */
    curl_multi_cleanup(c->multi);
    /* ...but do not rely on every libcurl version reporting each one. */
    while (link_linked(&c->socks))
        sock_free(HTTPC_CONTAINER(c->socks.next, struct httpc_sock, link));
    event_free(c->timer); /* after curl_multi_cleanup, which may still set it */
    event_free(c->kick);
    free(c);
    curl_release();
}

void httpc_free(struct httpc *c)
{
    if (c == NULL)
        return;
    if (c->depth == 0) {
        destroy(c);
        return;
    }
    /* Inside one of our callbacks: silence every call now, free on the way out. */
    c->freeing = true;
    for (struct httpc_link *l = c->calls.next; l != &c->calls; l = l->next) {
        struct httpc_call *call = HTTPC_CONTAINER(l, struct httpc_call, link);
        call->cancelled = true;
    }
}

struct httpc_call *httpc_fetch(struct httpc *c, const struct httpc_request *req, httpc_done_fn done,
                               void *arg)
{
    struct httpc_call *call = call_new(c, req, false, arg);
    call->done = done;
    return call;
}

struct httpc_call *httpc_stream(struct httpc *c, const struct httpc_request *req,
                                const struct httpc_stream_callbacks *cb, void *arg)
{
    struct httpc_call *call = call_new(c, req, true, arg);
    if (cb)
        call->scb = *cb;
    return call;
}

void httpc_cancel(struct httpc_call *call)
{
    if (call == NULL || call->cancelled)
        return;
    struct httpc *c = call->c;
    call->cancelled = true;
    log_call(call, "request cancelled", NULL);
    if (call->ending)
        return; /* call_end() frees it when the callback returns */
    if (c->in_curl > 0 || call->in_callback) {
        /* libcurl is on the stack: our callbacks now answer "abort", and the kick
         * removes the handle once libcurl has returned. */
        todo_push(call);
        return;
    }
    call_free(call);
}

void httpc_resume(struct httpc_call *call)
{
    if (call == NULL || call->cancelled || !call->paused || call->resume_wanted)
        return;
    call->resume_wanted = true;
    todo_push(call);
}

bool httpc_call_paused(const struct httpc_call *call)
{
    return call->paused;
}

void httpc_call_foreach_header(const struct httpc_call *call,
                               bool (*fn)(const char *name, const char *value, void *arg),
                               void *arg)
{
    if (!call->head_done || call->headers.buf == NULL)
        return;
    const char *p = call->headers.buf, *end = call->headers.buf + call->headers.len;
    while (p < end) {
        const char *name = p;
        const char *value = name + strlen(name) + 1;
        if (value >= end)
            return;
        p = value + strlen(value) + 1;
        if (!fn(name, value, arg))
            return;
    }
}

struct header_lookup {
    const char *name;  /* borrowed */
    const char *found; /* borrowed */
};

static bool match_header(const char *name, const char *value, void *arg)
{
    struct header_lookup *q = arg;
    if (strcasecmp(name, q->name) != 0)
        return true;
    q->found = value;
    return false;
}

const char *httpc_call_header(const struct httpc_call *call, const char *name)
{
    struct header_lookup q = {name, NULL};
    httpc_call_foreach_header(call, match_header, &q);
    return q.found;
}

const char *httpc_response_header(const struct httpc_response *res, const char *name)
{
    return httpc_call_header(res->call, name);
}

void httpc_get_stats(const struct httpc *c, struct httpc_stats *out)
{
    *out = c->stats;
}
