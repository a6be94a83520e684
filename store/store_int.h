/*
 * store_int: what store.c shares with the backends (redis.c, memory.c) and
 * with the store's own tests. Nothing outside store/ and tests/unit/test_store*
 * includes this file.
 *
 * store.c validates arguments, applies the key prefix, counts operations and
 * owns the deferred-completion queue; a backend only executes a
 * struct store_op and reports its result through store_complete() (when it is
 * already running on the loop) or store_defer() (when it would otherwise call
 * back synchronously).
 */
#ifndef MCPGATE_STORE_STORE_INT_H
#define MCPGATE_STORE_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_DEFAULT_TIMEOUT_MS 2000
#define STORE_DEFAULT_RECONNECT_MIN_MS 100
#define STORE_DEFAULT_RECONNECT_MAX_MS 5000

enum store_op_kind {
    STORE_OP_PUT = 0,
    STORE_OP_PUT_NX,
    STORE_OP_GET,
    STORE_OP_TAKE,
    STORE_OP_TAKE_MARK, /* take; leave a copy under the (prefixed) key in val for ttl_ms */
    STORE_OP_DEL,
    STORE_OP_EXPIRE,
    STORE_OP_INCR,
    STORE_OP_SET_ADD,
    STORE_OP_SET_REMOVE,
    STORE_OP_SET_MEMBERS,
    STORE_OP_SET_CARD,
    STORE_OP_TTL,
    STORE_OP_PUBLISH,
    STORE_OP_PING,
};

/* One operation as store.c hands it to a backend; valid only during submit(). */
struct store_op {
    enum store_op_kind kind;
    const char *key; /* borrowed: prefixed key (or channel for PUBLISH); NULL for PING */
    const void *val; /* borrowed: value, set member or message; may be NULL when val_len is 0 */
    size_t val_len;
    uint64_t ttl_ms;
    store_cb_fn cb; /* borrowed; may be NULL */
    void *arg;      /* borrowed */
};

struct store_backend_ops {
    const char *name;
    /* Executes op; the result must reach op->cb exactly once, never synchronously. */
    void (*submit)(void *impl, const struct store_op *op);
    /* A channel (prefixed) got its first subscriber: make the server send it to us. */
    void (*subscribe)(void *impl, const char *channel);
    bool (*is_ready)(const void *impl);
    const char *(*last_error)(const void *impl);
    void (*get_stats)(const void *impl, struct store_stats *out); /* connected, subscribed */
    /* Fails everything pending with "store shutting down", then frees impl. */
    void (*free)(void *impl);
};

extern const struct store_backend_ops store_redis_ops;
extern const struct store_backend_ops store_memory_ops;

/* Backend constructors: return the impl, or NULL with *err_out set (owned by the caller). */
void store_redis_shutdown_finish(struct event_base *base);
void *store_redis_new(struct store *s, struct event_base *base, const struct store_options *opts,
                      char **err_out);
void *store_memory_new(struct store *s, struct event_base *base);

/*
 * A completion waiting for the loop. Every pointer is owned by the item and
 * freed after delivery; build one with store_deferred_new() and hand it to
 * store_defer(), which takes ownership.
 */
struct store_deferred {
    struct store_deferred *next; /* owned by the queue */
    store_cb_fn cb;              /* borrowed; NULL: nothing to call */
    void *arg;                   /* borrowed */
    enum store_status status;
    long long integer;
    char *value; /* owned; NUL-terminated */
    size_t value_len;
    char **members;      /* owned, each owned and NUL-terminated */
    size_t *member_lens; /* owned */
    size_t n_members;
    char *error; /* owned */
    /* A pub/sub message instead of a result (memory backend). */
    char *channel; /* owned: prefixed channel; non-NULL marks a message */
};

struct store_deferred *store_deferred_new(store_cb_fn cb, void *arg, enum store_status status,
                                          const char *error);
void store_defer(struct store *s, struct store_deferred *d);
/* Shorthand: defer a result that carries only a status and an error text. */
void store_defer_status(struct store *s, store_cb_fn cb, void *arg, enum store_status status,
                        const char *error);

/*
 * Delivers a result now (the caller is running on the loop, e.g. in a
 * hiredis reply callback or a timer): counts errors, calls cb if any.
 */
void store_complete(struct store *s, store_cb_fn cb, void *arg, const struct store_result *res);
/* Delivers a message on a prefixed channel to every local subscriber of it. */
void store_deliver_message(struct store *s, const char *channel, const char *msg, size_t len);
/* How many local subscriptions a prefixed channel has. */
size_t store_count_subscribers(const struct store *s, const char *channel);
/* Counts a command whose deadline passed. */
void store_count_timeout(struct store *s);
/* Counts a data connection re-established after a loss. */
void store_count_reconnect(struct store *s);
/* True once store_free() has begun: backends say "store shutting down". */
bool store_is_closing(const struct store *s);

/* Test hook: entries in a memory store's table, expired ones not yet swept included. */
size_t store_memory_count(const struct store *s);
/* The backend's impl (for hooks like the one above); NULL after store_free began. */
void *store_backend_impl(const struct store *s);

/*
 * Redis URL parsing, exposed for table tests. On success every string field
 * is owned by *out (store_redis_url_clear() frees them; the password is wiped).
 */
struct store_redis_url {
    char *host;             /* owned: numeric address or host name; NULL for a unix socket */
    bool host_is_name;      /* resolved on the loop before each connect */
    bool tls;               /* rediss:// */
    bool host_is_localhost; /* written "localhost" (host holds 127.0.0.1): the TLS name */
    int port;               /* TCP only */
    char *unix_path;        /* owned: NULL for TCP */
    char *user;             /* owned; NULL: AUTH with the password alone */
    char *password;         /* owned; NULL: no AUTH */
    int db;
};
int store_redis_url_parse(const char *url, struct store_redis_url *out, char **err_out);
void store_redis_url_clear(struct store_redis_url *u);

#endif
