/*
 * redis_conn: one Redis connection on a libevent bufferevent (plain or
 * OpenSSL), with hiredis 0.14 only for RESP reading and command formatting.
 * The contract is in store/redis_conn.h.
 *
 * It owns the bufferevent (and through BEV_OPT_CLOSE_ON_FREE the socket and
 * the SSL object), the hiredis reader, the connect deadline and the FIFO of
 * reply callbacks (struct pending, owned by the FIFO until its callback ran).
 *
 * Re-entrancy: a callback may close or reconnect the connection. Each
 * teardown bumps gen; the read loop stops as soon as gen moved, so it never
 * touches a reader or bufferevent that a callback replaced. libevent keeps a
 * bufferevent alive while its own callback runs, so freeing it from inside
 * one (a callback that closes) is safe.
 *
 * libevent-openssl 2.1 limits, handled here: BEV_EVENT_CONNECTED of an
 * OpenSSL bufferevent comes after the handshake, but a failed handshake is
 * only BEV_EVENT_ERROR with the OpenSSL error queue
 * (bufferevent_get_openssl_error) and the SSL's verify result to explain it;
 * a peer that closes without close_notify is reported as an error (a loss
 * either way). BEV_OPT_DEFER_CALLBACKS makes every event reach us from the
 * loop, never inside bufferevent_socket_connect().
 */
#include "store/redis_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/xalloc.h"
#include "common/xevent.h"

enum link_state {
    LINK_IDLE = 0,
    LINK_CONNECTING,
    LINK_UP,
};

struct pending {
    struct pending *next;   /* owned by the FIFO */
    redis_conn_reply_fn cb; /* borrowed; NULL: drop the reply */
    void *arg;              /* borrowed */
};

struct redis_conn {
    struct event_base *base; /* borrowed */
    redis_conn_event_fn on_event;
    void *arg; /* borrowed */
    redis_conn_push_fn on_push;
    void *push_arg; /* borrowed */
    enum link_state state;
    struct bufferevent *bev; /* owned; NULL when idle */
    SSL *ssl;                /* borrowed from bev (freed with it); NULL for plain */
    redisReader *reader;     /* owned; NULL when idle */
    struct event *deadline;  /* owned: the connect deadline */
    uint64_t timeout_ms;
    struct pending *head, *tail; /* owned FIFO */
    size_t n_pending;
    unsigned gen; /* bumped by every teardown: stale loops stop */
};

static void on_read(struct bufferevent *bev, void *arg);
static void on_bev_event(struct bufferevent *bev, short what, void *arg);
static void on_deadline(evutil_socket_t fd, short what, void *arg);

struct redis_conn *redis_conn_new(struct event_base *base, redis_conn_event_fn on_event, void *arg)
{
    struct redis_conn *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->on_event = on_event;
    c->arg = arg;
    c->deadline = xevtimer_new(base, on_deadline, c);
    return c;
}

void redis_conn_set_push(struct redis_conn *c, redis_conn_push_fn fn, void *arg)
{
    c->on_push = fn;
    c->push_arg = arg;
}

bool redis_conn_is_open(const struct redis_conn *c)
{
    return c->state != LINK_IDLE;
}

bool redis_conn_is_up(const struct redis_conn *c)
{
    return c->state == LINK_UP;
}

size_t redis_conn_pending(const struct redis_conn *c)
{
    return c->n_pending;
}

/*
 * Tears the connection down and, after the optional event, runs every pending
 * callback with NULL. The FIFO is detached first, so a callback that sends on
 * a new connection queues on the new FIFO.
 */
static void teardown(struct redis_conn *c, const char *reason, bool notify)
{
    if (c->state == LINK_IDLE)
        return;
    c->gen++;
    c->state = LINK_IDLE;
    event_del(c->deadline);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    c->bev = NULL;
    c->ssl = NULL;
    if (c->reader != NULL)
        redisReaderFree(c->reader);
    c->reader = NULL;
    struct pending *p = c->head;
    c->head = c->tail = NULL;
    c->n_pending = 0;
    if (notify)
        c->on_event(c, false, reason, c->arg);
    while (p != NULL) {
        struct pending *next = p->next;
        if (p->cb != NULL)
            p->cb(c, NULL, p->arg);
        free(p);
        p = next;
    }
}

void redis_conn_close(struct redis_conn *c)
{
    if (c != NULL)
        teardown(c, NULL, false);
}

void redis_conn_free(struct redis_conn *c)
{
    if (c == NULL)
        return;
    teardown(c, NULL, false);
    event_free(c->deadline);
    free(c);
}

/* Why a TLS connection failed, from the verify result and the OpenSSL error queue. */
static char *tls_reason(struct redis_conn *c)
{
    char buf[256] = "";
    unsigned long e;
    while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
        if (buf[0] == '\0')
            ERR_error_string_n(e, buf, sizeof(buf));
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK)
        return xasprintf("TLS certificate verify failed: %s", X509_verify_cert_error_string(v));
    if (buf[0] != '\0')
        return xasprintf("TLS error: %s", buf);
    return NULL;
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    struct redis_conn *c = arg;
    char *reason = NULL;
    (void)bev;

    if (what & BEV_EVENT_CONNECTED) {
        c->state = LINK_UP;
        event_del(c->deadline);
        /* Half-open connections (a pubsub link never writes) are found by keepalive. */
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->on_event(c, true, NULL, c->arg);
        return;
    }
    bool connecting = c->state == LINK_CONNECTING;
    int err = EVUTIL_SOCKET_ERROR();
    if (c->ssl != NULL)
        reason = tls_reason(c);
    if (reason == NULL && (what & BEV_EVENT_EOF))
        reason =
            xstrdup(connecting && c->ssl ? "closed during the TLS handshake" : "connection closed");
    if (reason == NULL)
        reason = xstrdup(err != 0 ? evutil_socket_error_to_string(err) : "connection error");
    teardown(c, reason, true);
    free(reason);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct redis_conn *c = arg;
    (void)fd;
    (void)what;
    char *reason = xasprintf("%s timed out after %llu ms",
                             c->ssl != NULL ? "connect and TLS handshake" : "connect",
                             (unsigned long long)c->timeout_ms);
    teardown(c, reason, true);
    free(reason);
}

static bool is_push(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return false;
    return strcasecmp(r->element[0]->str, "message") == 0 ||
           strcasecmp(r->element[0]->str, "pmessage") == 0;
}

static void dispatch(struct redis_conn *c, const redisReply *reply)
{
    if (c->on_push != NULL && is_push(reply)) {
        c->on_push(c, reply, c->push_arg);
        return;
    }
    struct pending *p = c->head;
    if (p == NULL) {
        teardown(c, "protocol error: a reply nobody asked for", true);
        return;
    }
    c->head = p->next;
    if (c->head == NULL)
        c->tail = NULL;
    c->n_pending--;
    if (p->cb != NULL)
        p->cb(c, reply, p->arg);
    free(p);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct redis_conn *c = arg;
    unsigned gen = c->gen;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[8];

    /* The reader copies what it is fed, so the input can be drained chunk by chunk. */
    while (evbuffer_get_length(in) > 0) {
        int n = evbuffer_peek(in, -1, NULL, v, 8);
        size_t fed = 0;
        for (int i = 0; i < n && i < 8; i++) {
            if (redisReaderFeed(c->reader, v[i].iov_base, v[i].iov_len) != REDIS_OK) {
                teardown(c, "protocol error: cannot buffer the reply", true);
                return;
            }
            fed += v[i].iov_len;
        }
        evbuffer_drain(in, fed);
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            char *reason = xasprintf("protocol error: %s", c->reader->errstr);
            teardown(c, reason, true);
            free(reason);
            return;
        }
        if (reply == NULL)
            return;
        dispatch(c, reply);
        /* hiredis: replies from a default reader are ours to free, after the callback. */
        freeReplyObject(reply);
        if (c->gen != gen)
            return; /* a callback closed or replaced this connection */
    }
}

int redis_conn_connect(struct redis_conn *c, const struct redis_conn_target *t, uint64_t timeout_ms,
                       char **err_out)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl = 0;
    SSL *ssl = NULL;
    int rc = 0;

    if (c->state != LINK_IDLE) {
        *err_out = xstrdup("connection already open");
        return -EBUSY;
    }
    if (t->unix_path != NULL) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        if (strlen(t->unix_path) >= sizeof(un->sun_path)) {
            *err_out = xstrdup("unix socket path too long");
            return -ENAMETOOLONG;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, t->unix_path, strlen(t->unix_path) + 1);
        sl = sizeof(*un);
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, t->ip, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
            in4->sin_port = htons((uint16_t)t->port);
            sl = sizeof(*in4);
        } else if (inet_pton(AF_INET6, t->ip, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons((uint16_t)t->port);
            sl = sizeof(*in6);
        } else {
            *err_out = xasprintf("\"%s\" is not a numeric address", t->ip);
            return -EINVAL;
        }
    }
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (t->tls != NULL) {
        ssl = SSL_new(t->tls);
        if (ssl == NULL) {
            *err_out = xstrdup("TLS: SSL_new failed");
            return -ENOMEM;
        }
        const char *name = t->tls_name;
        struct in6_addr ip;
        bool is_ip = name != NULL &&
                     (inet_pton(AF_INET, name, &ip) == 1 || inet_pton(AF_INET6, name, &ip) == 1);
        /* RFC 6066 §3: SNI carries host names only, never IP literals. */
        if (name != NULL && !is_ip)
            SSL_set_tlsext_host_name(ssl, name);
        if (name != NULL && t->tls_check_name) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
            X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
                           : X509_VERIFY_PARAM_set1_host(vp, name, 0);
            if (ok != 1) {
                SSL_free(ssl);
                *err_out = xasprintf("TLS: cannot check the server name \"%s\"", name);
                return -EINVAL;
            }
        }
        /* Takes ssl: freed with the bufferevent (BEV_OPT_CLOSE_ON_FREE). */
        c->bev = bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
        if (c->bev == NULL)
            SSL_free(ssl);
        else
            c->ssl = ssl;
    } else {
        c->bev = bufferevent_socket_new(c->base, -1, opts);
    }
    if (c->bev == NULL) {
        *err_out = xstrdup("cannot create a bufferevent");
        return -ENOMEM;
    }
    c->reader = redisReaderCreate();
    if (c->reader == NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        c->ssl = NULL;
        *err_out = xstrdup("out of memory (redisReaderCreate)");
        return -ENOMEM;
    }
    c->state = LINK_CONNECTING;
    c->timeout_ms = timeout_ms;
    bufferevent_setcb(c->bev, on_read, NULL, on_bev_event, c);
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0 ||
        bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sl) != 0) {
        int e = EVUTIL_SOCKET_ERROR();
        *err_out = xasprintf("connect failed: %s", evutil_socket_error_to_string(e));
        rc = e > 0 ? -e : -EIO;
        c->gen++;
        c->state = LINK_IDLE;
        bufferevent_free(c->bev);
        c->bev = NULL;
        c->ssl = NULL;
        redisReaderFree(c->reader);
        c->reader = NULL;
        return rc;
    }
    struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
    event_add(c->deadline, &tv);
    return 0;
}

int redis_conn_send(struct redis_conn *c, int argc, const char **argv, const size_t *lens,
                    redis_conn_reply_fn cb, void *arg)
{
    char *cmd = NULL;

    if (c->state == LINK_IDLE)
        return -ENOTCONN;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0)
        return -ENOMEM;
    /* Copied into the output buffer; written once connected (and after the handshake). */
    int rc = bufferevent_write(c->bev, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (rc != 0)
        return -ENOMEM;
    struct pending *p = xcalloc(1, sizeof(*p));
    p->cb = cb;
    p->arg = arg;
    if (c->tail != NULL)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->n_pending++;
    return 0;
}

SSL_CTX *redis_conn_tls_ctx_new(const struct redis_conn_tls *o, char **err_out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *what = NULL;
    const char *file = NULL; /* the file WHAT is about, named in the error */
    char buf[256] = "";

    if (ctx == NULL) {
        what = "cannot create a TLS context";
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (o->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
            what = "cannot read tls_ca_file";
            file = o->ca_file;
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        what = "cannot load the system CA certificates";
        goto fail;
    }
    if (o->cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
            what = "cannot read tls_cert_file";
            file = o->cert_file;
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1) {
            what = "cannot read tls_key_file";
            file = o->key_file;
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            what = "tls_key_file does not match tls_cert_file";
            goto fail;
        }
    }
    return ctx;
fail:
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    ERR_clear_error();
    if (file != NULL)
        *err_out = xasprintf("store.redis: %s %s (%s)", what, file, buf);
    else
        *err_out = xasprintf("store.redis: %s (%s)", what, buf);
    SSL_CTX_free(ctx);
    return NULL;
}
