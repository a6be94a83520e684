/*
 * redis_conn: one connection to a Redis server (or a Sentinel) on the
 * caller's event_base, plain TCP, a unix socket, or TLS. Private to store/
 * (store/redis.c is its only user).
 *
 * It replaces hiredis 0.14's redisAsyncContext: hiredis 0.14 has no TLS and
 * a callback model with use-after-free traps (see the history of
 * store/redis.c). We keep the parts of hiredis that are sound, the RESP
 * reader and the command formatter, and carry the bytes on a libevent
 * bufferevent (bufferevent_openssl for TLS).
 *
 * The contract:
 *
 * - redis_conn_connect() starts a non-blocking connect (and TLS handshake)
 *   under a deadline; its outcome arrives later through the event callback,
 *   never inside the call: up=true once the socket is connected and the TLS
 *   handshake (certificate chain and server name checked) is done, or
 *   up=false with the reason.
 * - Commands may be sent as soon as connect returned 0: they are buffered
 *   and written when the connection is up, in order.
 * - Every command has one reply callback in a FIFO; each callback runs
 *   exactly once: with the reply, or with reply NULL when the connection is
 *   lost or closed first. The reply (a hiredis redisReply, read-only) is
 *   valid only during the callback.
 * - A lost connection (EOF, socket or TLS error, a protocol error, the
 *   connect deadline) calls the event callback with up=false first, then
 *   every pending reply callback with NULL, in order. redis_conn_close()
 *   (the owner gives up) runs the pending callbacks with NULL but no event.
 *   Afterwards the connection is idle and may be connected again.
 * - Pub/sub: with a push callback set, "message" and "pmessage" replies go
 *   to it instead of the FIFO. SUBSCRIBE of ONE channel per command gets its
 *   confirmation (["subscribe", channel, n]) or its error as its reply.
 * - Callbacks may send commands, close or reconnect this connection; they
 *   must not free it (redis_conn_free()).
 *
 * Writes: libevent's socket bufferevent writes with writev(2) and OpenSSL's
 * socket BIO with write(2), neither with MSG_NOSIGNAL, and Linux has no
 * SO_NOSIGPIPE: the process must still ignore SIGPIPE (gateway/app.c does).
 */
#ifndef MCPGATE_STORE_REDIS_CONN_H
#define MCPGATE_STORE_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redis_conn;
struct redisReply; /* hiredis' reply type: the caller reads it with <hiredis/hiredis.h> */
typedef struct ssl_ctx_st SSL_CTX;

/* Where to connect. Every pointer is borrowed for the duration of redis_conn_connect(). */
struct redis_conn_target {
    const char *ip;        /* numeric IPv4/IPv6 address; NULL when unix_path is set */
    int port;              /* TCP only */
    const char *unix_path; /* a unix socket instead of TCP; never with tls */
    SSL_CTX *tls;          /* NULL: plain; else the client context (verify mode set in it) */
    /* TLS: the name sent as SNI and checked against the certificate when tls_check_name;
     * an IP literal is checked against the certificate's IP addresses instead (no SNI). */
    const char *tls_name;
    bool tls_check_name;
};

/* up: the connection is ready for traffic; !up: it is gone (reason is borrowed). */
typedef void (*redis_conn_event_fn)(struct redis_conn *c, bool up, const char *reason, void *arg);
/* reply NULL: the connection went away before the reply came. */
typedef void (*redis_conn_reply_fn)(struct redis_conn *c, const struct redisReply *reply,
                                    void *arg);
typedef void (*redis_conn_push_fn)(struct redis_conn *c, const struct redisReply *msg, void *arg);

/* A new idle connection (owned by the caller: redis_conn_free()); base and arg borrowed. */
struct redis_conn *redis_conn_new(struct event_base *base, redis_conn_event_fn on_event, void *arg);
/* Messages ("message", "pmessage") go to fn from now on; NULL: none expected (all FIFO). */
void redis_conn_set_push(struct redis_conn *c, redis_conn_push_fn fn, void *arg);

/*
 * Starts connecting an idle connection; the deadline covers the TCP connect
 * and the TLS handshake. 0, or a negative errno (-EBUSY: not idle) with
 * *err_out set (owned by the caller) when nothing could be started; then no
 * event follows.
 */
int redis_conn_connect(struct redis_conn *c, const struct redis_conn_target *t, uint64_t timeout_ms,
                       char **err_out);

/*
 * Formats argv (binary-safe, lens bytes each; copied) and queues it with cb
 * (may be NULL: the reply is read and dropped). 0, or -ENOTCONN when idle
 * (cb will not run).
 */
int redis_conn_send(struct redis_conn *c, int argc, const char **argv, const size_t *lens,
                    redis_conn_reply_fn cb, void *arg);

/* Connecting or up (not idle). */
bool redis_conn_is_open(const struct redis_conn *c);
/* Up (connected, TLS done). */
bool redis_conn_is_up(const struct redis_conn *c);
/* Replies still owed. */
size_t redis_conn_pending(const struct redis_conn *c);

/* Client TLS settings; strings borrowed. */
struct redis_conn_tls {
    const char *ca_file;   /* NULL: the system CAs */
    const char *cert_file; /* client certificate chain, or NULL */
    const char *key_file;  /* its key; required with cert_file */
    bool verify;           /* check the chain (and, per target, the name) */
};
/* A client context for redis_conn_target.tls (owned: SSL_CTX_free), or NULL with *err_out. */
SSL_CTX *redis_conn_tls_ctx_new(const struct redis_conn_tls *o, char **err_out);

/* Gives up on the connection: pending callbacks run now with NULL; no event. Idle: no-op. */
void redis_conn_close(struct redis_conn *c);
/* Closes (as above), then frees; NULL is fine. Never from inside one of its callbacks. */
void redis_conn_free(struct redis_conn *c);

#endif
