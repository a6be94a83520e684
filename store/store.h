/*
 * store: the asynchronous key-value store behind OAuth state, tokens and MCP
 * sessions (DESIGN §5). Two backends share one contract:
 *
 *   redis   production and multi-instance: on the caller's event_base (TCP,
 *           unix socket or TLS), one data connection plus one pub/sub connection,
 *           per-command deadlines, reconnect with capped backoff.
 *   memory  tests and single-instance development: everything in process,
 *           lost on exit.
 *
 * Rules that hold for every operation (store_put … store_ping):
 *
 * - The callback runs exactly once, always from the event loop and NEVER
 *   synchronously inside the call that issued the operation, so a caller is
 *   never re-entered while it holds half-updated state.
 * - cb may be NULL (fire and forget); the operation still runs.
 * - The call returns 0 when the operation was accepted (its callback will
 *   run), or a negative errno when it could not even be queued, and then the
 *   callback never runs: -EINVAL for bad arguments, -E2BIG for a value larger
 *   than STORE_MAX_VALUE_BYTES, -ESHUTDOWN once store_free() has begun.
 * - A store that is down is not an argument error: while Redis is
 *   unreachable (between reconnect attempts) operations are accepted and fail
 *   at once, from the loop, with STORE_UNAVAILABLE; during a connection
 *   attempt they wait for it, within their deadline. Nothing queues up
 *   without bound.
 * - STORE_UNAVAILABLE means the outcome is unknown: a put that timed out may
 *   still have been applied by Redis. STORE_ERROR means Redis refused the
 *   command (e.g. WRONGTYPE); retrying will not help.
 * - Keys, channels and members are NUL-terminated strings; values and
 *   messages are binary-safe (pointer + length).
 * - ttl_ms 0 means "no expiry" unless the function says otherwise.
 * - Every key and channel is stored under the configured prefix; callers
 *   always use unprefixed names and never see the prefix.
 *
 * Callbacks may issue new store operations. They must not call store_free()
 * (it aborts: freeing the store under the callback that it is running would
 * pull the connection out from under the reply being delivered).
 *
 * The process must ignore SIGPIPE (gateway/app.c does): libevent writes with
 * writev(2) and OpenSSL with write(2), not send(MSG_NOSIGNAL), so a write to
 * a Redis that just died would otherwise kill mcpgate.
 */
#ifndef MCPGATE_STORE_STORE_H
#define MCPGATE_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/histogram.h"

struct event_base;
struct store;

/* Redis' own limit on a bulk string (proto-max-bulk-len default). */
#define STORE_MAX_VALUE_BYTES ((size_t)512 * 1024 * 1024)

enum store_backend {
    STORE_BACKEND_REDIS = 0,
    STORE_BACKEND_MEMORY,
};

struct store_options {
    enum store_backend backend;
    /*
     * Redis only. "redis[s]://[[user]:password@]host[:port][/db]" (port 6379
     * and db 0 by default; user and password may be %-encoded; rediss: TLS)
     * or "unix:/path/to/redis.sock[?db=N]". host is an IPv4 or bracketed
     * IPv6 literal or a name, resolved on the loop (evdns) before every
     * connection. Borrowed.
     */
    const char *redis_url;
    /* Overrides the URL's password; NULL or "" = use the URL's. Borrowed. */
    const char *password;
    /* Prepended to every key and channel, e.g. "mcpgate:"; NULL = "". Borrowed. */
    const char *prefix;
    uint64_t timeout_ms;       /* deadline per command and per connect+handshake; 0 = 2000 */
    uint64_t reconnect_min_ms; /* first reconnect delay; 0 = 100 */
    uint64_t reconnect_max_ms; /* cap of the doubling delay; 0 = 5000 */
    /* rediss:// only. Borrowed; NULL = default. */
    const char *tls_ca_file;   /* CA bundle to trust; NULL = the system CAs */
    const char *tls_cert_file; /* client certificate chain (with tls_key_file) */
    const char *tls_key_file;
    const char *tls_server_name; /* SNI and the name checked; NULL = the URL's host */
    bool tls_no_verify;          /* skip the chain and name checks (tls_verify: false) */
    /*
     * Redis Sentinel: "host:port" of each sentinel (an IP literal, localhost
     * or a name resolved on the loop), borrowed; n_sentinels 0 = connect to
     * the URL's host. The URL still gives user, password and db; its host and
     * port are then ignored.
     */
    const char *const *sentinels;
    size_t n_sentinels;
    const char *master_name;       /* default "mymaster"; borrowed */
    const char *sentinel_password; /* AUTH to the sentinels; NULL or "" = none; borrowed */
    /* TLS to the sentinels too (rediss:// only), with the tls_* settings
     * above; the name checked is each sentinel's host as configured. */
    bool sentinel_tls;
};

enum store_status {
    STORE_OK = 0,
    STORE_NOT_FOUND,   /* get/take/expire/ttl: no such key */
    STORE_EXISTS,      /* put_nx: the key was already there */
    STORE_UNAVAILABLE, /* not connected, timed out, or shutting down: outcome unknown */
    STORE_ERROR,       /* the server refused the command (wrong type, script error, …) */
};

/*
 * What an operation produced. Everything it points to is borrowed and valid
 * only during the callback: copy what you keep.
 */
struct store_result {
    enum store_status status;
    const char *value; /* get/take on STORE_OK; NUL-terminated for convenience (not in value_len) */
    size_t value_len;
    long long integer; /* del: keys deleted; incr: new value; set_add/remove: members changed;
                          set_card: size; ttl: ms left or -1 for no expiry;
                          publish: subscribers that received it */
    const char *const *members; /* set_members on STORE_OK, each NUL-terminated; any order */
    const size_t *member_lens;
    size_t n_members;
    const char *error; /* human-readable reason on UNAVAILABLE/ERROR, else NULL */
};

typedef void (*store_cb_fn)(const struct store_result *res, void *arg);
/* channel is unprefixed; msg is binary-safe and valid only during the call. */
typedef void (*store_message_fn)(const char *channel, const char *msg, size_t len, void *arg);

/*
 * Creates a store on base (borrowed; must outlive the store). Returns NULL and
 * sets *err_out (owned by the caller, free()) on bad options, e.g. an
 * unparsable URL or a host name. An unreachable Redis is not an error here:
 * the store connects in the background and store_is_ready() says when it is
 * up. Until then operations fail with STORE_UNAVAILABLE.
 */
struct store *store_new(struct event_base *base, const struct store_options *opts, char **err_out);

/*
 * Frees the store; NULL is fine. Callbacks of operations still pending run
 * first, from inside this call, with STORE_UNAVAILABLE "store shutting down";
 * operations they try to issue get -ESHUTDOWN. Subscriptions end. Must not be
 * called from inside a store callback.
 */
void store_free(struct store *s);

/*
 * After the last store_free on BASE, when nothing else has events on it, and
 * before event_base_free: one non-blocking turn of the loop, in which DNS
 * lookups the Redis backend cancelled receive their cancellation (libevent
 * 2.1 delivers it on a later turn), then what they needed is freed. Without
 * it such a lookup leaks at exit; nothing else depends on it.
 */
void store_shutdown_finish(struct event_base *base);

/* Sets key to val (len bytes, copied). STORE_OK. */
int store_put(struct store *s, const char *key, const void *val, size_t len, uint64_t ttl_ms,
              store_cb_fn cb, void *arg);
/* Sets key only if absent: STORE_OK, or STORE_EXISTS (the value is left alone). */
int store_put_nx(struct store *s, const char *key, const void *val, size_t len, uint64_t ttl_ms,
                 store_cb_fn cb, void *arg);
/* STORE_OK with value, or STORE_NOT_FOUND. */
int store_get(struct store *s, const char *key, store_cb_fn cb, void *arg);
/*
 * Atomic get-and-delete for one-time values (codes, pending authorizations):
 * of any number of concurrent takers, across instances, exactly one gets
 * STORE_OK with the value; the others get STORE_NOT_FOUND.
 */
int store_take(struct store *s, const char *key, store_cb_fn cb, void *arg);
/*
 * store_take that, in the same atomic step, leaves a copy of the value under
 * MARK for MARK_TTL_MS: a replay that loses the race, or that follows a take
 * whose reply was lost, finds the mark (F20: codes). KEY and MARK must live
 * on one Redis node (no Redis Cluster hash slots to match: mcpgate supports
 * standalone and Sentinel deployments).
 */
int store_take_mark(struct store *s, const char *key, const char *mark, uint64_t mark_ttl_ms,
                    store_cb_fn cb, void *arg);
/* STORE_OK; integer = number of keys deleted (0 or 1). */
int store_del(struct store *s, const char *key, store_cb_fn cb, void *arg);
/* Sets the key's TTL to ttl_ms from now (0 removes the expiry). STORE_OK or STORE_NOT_FOUND. */
int store_expire(struct store *s, const char *key, uint64_t ttl_ms, store_cb_fn cb, void *arg);
/*
 * Increments a counter (created at 0) for rate limits; STORE_OK with the new
 * value. ttl_ms is applied only when the counter has no expiry yet (it was
 * just created), never extended, so a fixed window ends on time.
 */
int store_incr(struct store *s, const char *key, uint64_t ttl_ms, store_cb_fn cb, void *arg);
/*
 * Adds member to the set at key; integer = 1 when it was new. ttl_ms > 0 sets
 * the whole set's TTL to ttl_ms (renewed on every add); 0 leaves it alone.
 */
int store_set_add(struct store *s, const char *key, const char *member, uint64_t ttl_ms,
                  store_cb_fn cb, void *arg);
/* integer = 1 when the member was there. Removing the last member deletes the key. */
int store_set_remove(struct store *s, const char *key, const char *member, store_cb_fn cb,
                     void *arg);
/* STORE_OK with members (none for a missing key: Redis does not tell them apart). */
int store_set_members(struct store *s, const char *key, store_cb_fn cb, void *arg);
/* STORE_OK; integer = number of members (0 for a missing key). */
int store_set_card(struct store *s, const char *key, store_cb_fn cb, void *arg);
/* STORE_OK with integer = milliseconds left (-1: no expiry), or STORE_NOT_FOUND. */
int store_ttl(struct store *s, const char *key, store_cb_fn cb, void *arg);
/*
 * Publishes msg on channel to every subscriber of every instance sharing the
 * store. STORE_OK; integer = subscribers reached (per Redis: connections).
 * Delivery is at most once: a subscriber that is reconnecting misses it.
 */
int store_publish(struct store *s, const char *channel, const void *msg, size_t len, store_cb_fn cb,
                  void *arg);
/*
 * Calls fn(channel, msg, len, arg) from the loop for every message published
 * on channel from now until store_free(). Survives reconnects (the store
 * re-subscribes), but messages published while the pub/sub connection is down
 * are lost: store_get_stats().subscribed says when delivery is live, so a
 * cache fed by invalidations can distrust itself while it is false.
 * Returns 0, -EINVAL, -EEXIST (same channel, fn and arg twice) or -ESHUTDOWN.
 */
int store_subscribe(struct store *s, const char *channel, store_message_fn fn, void *arg);
/* Round trip to the server; STORE_OK. */
int store_ping(struct store *s, store_cb_fn cb, void *arg);

/*
 * True when the store can serve: connected (after AUTH/SELECT) and the last
 * command or health ping did not time out. Always true for memory.
 */
bool store_is_ready(const struct store *s);

/*
 * Why the store is not ready ("redis AUTH failed: WRONGPASS …", "redis
 * timeout after 500 ms", …), or NULL while it is. Borrowed: valid until the
 * loop runs again.
 */
const char *store_last_error(const struct store *s);

struct store_stats {
    uint64_t ops;        /* operations accepted */
    uint64_t errors;     /* results with STORE_UNAVAILABLE or STORE_ERROR (timeouts included) */
    uint64_t timeouts;   /* commands whose deadline passed (health pings included) */
    uint64_t reconnects; /* data connections re-established after a loss */
    uint64_t failovers;  /* Sentinel +switch-master messages that moved the master */
    bool connected;      /* data connection up (memory: always) */
    bool subscribed;     /* every subscription is live on the server (memory: always) */
    struct histogram latency; /* submit to result, every operation (failures included) */
};
void store_get_stats(const struct store *s, struct store_stats *out);

/*
 * Best-effort writes: the caller does not wait for the outcome (index
 * clean-up, invalidation broadcasts, audit markers). A failure, refused at
 * once or STORE_UNAVAILABLE/STORE_ERROR later, is logged at warn with WHAT
 * (a static string naming the write, e.g. "revocation: token record"), so
 * "fire and forget" is visible in the log; nothing else happens.
 */
void store_put_detached(struct store *s, const char *key, const void *val, size_t len,
                        uint64_t ttl_ms, const char *what);
void store_del_detached(struct store *s, const char *key, const char *what);
void store_expire_detached(struct store *s, const char *key, uint64_t ttl_ms, const char *what);
void store_set_add_detached(struct store *s, const char *key, const char *member, uint64_t ttl_ms,
                            const char *what);
void store_set_remove_detached(struct store *s, const char *key, const char *member,
                               const char *what);
void store_publish_detached(struct store *s, const char *channel, const void *msg, size_t len,
                            const char *what);

/* "ok", "not_found", "exists", "unavailable", "error": for logs and tests. */
const char *store_status_name(enum store_status status);

#endif
