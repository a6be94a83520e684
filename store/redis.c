/*
 * redis: the production store backend, on the caller's event_base through
 * store/redis_conn.c (a bufferevent, plain, unix socket or TLS for
 * rediss://, with hiredis 0.14's RESP reader and command formatter). With
 * store/redis_conn.c the only files in mcpgate that include hiredis.
 *
 * It owns two connections to one server: "data" for every command and
 * "pubsub" (opened with the first subscription) for SUBSCRIBE, plus a record
 * per command in flight, the operations held while the data connection has
 * no link yet, a health-check timer, the parsed URL, the TLS client context,
 * the list of channels to (re-)subscribe and, with Sentinel, two sentinel
 * links (a question, a +switch-master subscription: see "Sentinel" below).
 *
 * Gaps of hiredis 0.14 still handled here, each with the test that pins it:
 *   - no command timeout          on_cmd_deadline   test_store_fault: frozen/late/silent
 *   - no connect timeout          on_conn_timer     test_listener_never_answers
 *   - no reconnect                conn_down         test_kill_and_restart
 *   - names resolved blocking     conn_connect      test_redis_host_name (evdns instead)
 *   - no TLS                      redis_conn.c      tests/integration/redis_tls
 * Gone with redisAsyncContext (store/redis_conn.h has none of them): the
 * use-after-free of a free inside onConnect, the context freed after a
 * failed onConnect, and the stale pub/sub callback. SIGPIPE remains
 * (libevent and OpenSSL write without MSG_NOSIGNAL): store_redis_new warns.
 *
 * Ownership: each struct conn owns its redis_conn link for the backend's
 * life; a link is idle while DOWN. Our per-command record (struct
 * redis_cmd) is owned by the data link's FIFO from submission until its
 * reply callback, which runs exactly once (NULL reply on loss) and frees it;
 * a deadline that passes first only marks it done. Replies belong to
 * redis_conn and are valid only during the callback.
 *
 * Connection states: DOWN (waiting out the reconnect backoff; operations fail
 * at once), CONNECTING (name resolution, TCP connect, TLS handshake and the
 * AUTH/SELECT/PING handshake, pipelined ahead of any command, under one
 * deadline), READY.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "common/panic.h"
#include "common/timeutil.h"
#include "common/url.h"
#include "common/xalloc.h"
#include "common/log.h"
#include "common/xevent.h"
#include "store/redis_conn.h"
#include "store/store_int.h"

#define REDIS_HEALTH_INTERVAL_MS 1000
/* Bounds memory when callers outrun Redis: past this, operations fail fast. */
#define REDIS_MAX_IN_FLIGHT 100000

/* GETDEL needs Redis 6.2; older servers get the same atomic take as a script. */
static const char take_script[] =
    "local v=redis.call('GET',KEYS[1]) if v then redis.call('DEL',KEYS[1]) end return v";
/* The take of store_take_mark: GET, DEL and the mark in one atomic step. */
static const char take_mark_script[] =
    "local v=redis.call('GET',KEYS[1]) if v then redis.call('DEL',KEYS[1]) "
    "redis.call('SET',KEYS[2],v,'PX',ARGV[1]) end return v";
/*
 * INCR, then a TTL only if the counter has none: a fixed window that is never
 * extended. PEXPIRE NX would do it in one command but needs Redis 7.0; a
 * script runs atomically on 6.x too. Checking PTTL rather than "v == 1" also
 * heals a counter left without TTL.
 */
static const char incr_script[] = "local v=redis.call('INCR',KEYS[1]) "
                                  "if tonumber(ARGV[1])>0 and redis.call('PTTL',KEYS[1])==-1 then "
                                  "redis.call('PEXPIRE',KEYS[1],ARGV[1]) end return v";
/* SADD and the set's TTL in one atomic step, so a set never lingers without one. */
static const char sadd_script[] =
    "local n=redis.call('SADD',KEYS[1],ARGV[1]) redis.call('PEXPIRE',KEYS[1],ARGV[2]) return n";
/* PERSIST answers 0 for "no key" and for "no TTL"; only the first is NOT_FOUND. */
static const char persist_script[] =
    "if redis.call('EXISTS',KEYS[1])==0 then return 0 end redis.call('PERSIST',KEYS[1]) return 1";

enum conn_state {
    CONN_DOWN = 0,
    CONN_CONNECTING,
    CONN_READY,
};

struct redis_backend;

struct conn {
    struct redis_backend *rb; /* borrowed: owner */
    const char *name;         /* "data" or "pubsub": static, for logs */
    bool is_data;
    struct redis_conn *link; /* owned: idle while DOWN or resolving */
    enum conn_state state;
    bool started;           /* a connection was attempted (pubsub starts lazily) */
    struct event *timer;    /* owned: reconnect delay (DOWN) or handshake deadline (CONNECTING) */
    uint64_t backoff_ms;    /* the next reconnect delay, before jitter */
    uint64_t last_reply_ms; /* monotonic: last reply on this connection (or connect start) */
    bool ever_ready;        /* later READYs are reconnects */
    char *error;            /* owned: why this connection is not READY; NULL while READY */
    struct evdns_getaddrinfo_request *dns; /* the host name being resolved, or NULL */
    char *logged_error;   /* owned: the failure last logged in this outage; NULL when none */
    bool awaiting_master; /* Sentinel: CONNECTING, waiting for the master's address */
};

/*
 * An operation issued while the data connection is CONNECTING but has no link
 * yet (resolving the host name, asking the sentinels): it waits here, under
 * the connection's handshake deadline, and is sent once the link opens.
 */
struct held_op {
    struct held_op *next; /* owned by the list */
    struct store_op op;   /* key and val point into the two fields below */
    char *key;            /* owned */
    void *val;            /* owned; NULL when val_len is 0 */
};

struct sentinel_addr {
    char host[256];            /* as configured: an IP literal or a name */
    char ip[INET6_ADDRSTRLEN]; /* the literal; "" for a name (resolved at each use) */
    int port;
};

/*
 * A sentinel's address for one link (the question, or the watch): at once
 * for a literal, else an evdns lookup on the loop, made again at every use
 * (a sentinel service's address moves when its pods are rescheduled).
 */
struct sentinel_lookup {
    struct redis_backend *rb;               /* borrowed */
    struct evdns_getaddrinfo_request *req;  /* in flight, or NULL */
    bool waiting;                           /* started, its callback not run yet */
    char ip[INET6_ADDRSTRLEN];              /* the answer */
    void (*done)(struct redis_backend *rb); /* then: connect to ip, or fail with error */
    char *error;                            /* owned: why not, or NULL */
};

struct redis_channel {
    struct redis_channel *next; /* owned */
    char *name;                 /* owned: prefixed */
    bool active;                /* SUBSCRIBE confirmed on the current pubsub connection */
};

struct redis_backend {
    bool lookup_cancelled;             /* a DNS lookup was cancelled: see redis_free */
    struct redis_backend *orphan_next; /* in orphans, between redis_free and the finish */
    struct store *s;                   /* borrowed: the owning store */
    struct event_base *base;           /* borrowed: the caller's loop */
    struct store_redis_url url;        /* owned strings */
    char *addr; /* owned: "127.0.0.1:6379/0" or "unix:/path?db=0": no secrets, for logs */
    uint64_t timeout_ms;
    uint64_t reconnect_min_ms;
    uint64_t reconnect_max_ms;
    const struct timeval *cmd_timeout; /* borrowed: libevent common timeout of timeout_ms */
    char *timeout_error;               /* owned: "redis timeout after N ms" */
    struct evdns_base *dns;            /* owned, made on first use: host names (never hiredis) */
    struct conn data;                  /* embedded */
    struct conn pubsub;                /* embedded */
    struct redis_channel *channels;    /* owned: every channel with a local subscriber */
    struct event *health_ev;           /* owned: periodic PING on data */
    bool ping_in_flight;               /* a health PING awaits its reply */
    size_t in_flight;                  /* records the data link's FIFO holds */
    bool healthy;                      /* the last command on data did not time out */
    bool no_getdel;                    /* the server answered GETDEL with "unknown command" */
    uint64_t rng;                      /* xorshift64 state: backoff jitter only */
    SSL_CTX *tls;                      /* owned: rediss:// client context; NULL for plain */
    char *tls_name;                    /* owned: SNI / certificate name (default: URL host) */
    bool tls_check_name;
    bool tls_name_given; /* store.redis.tls_server_name was set */
    /* Sentinel (store.redis.sentinels); n_sentinels 0: a fixed server. */
    struct sentinel_addr *sentinels; /* owned array */
    size_t n_sentinels;
    char *master_name;        /* owned */
    char *sentinel_password;  /* owned, wiped; NULL: no AUTH to sentinels */
    size_t query_idx;         /* the sentinel asked first: the last that answered */
    size_t query_tries;       /* sentinels tried in this round */
    bool query_busy;          /* a get-master-addr-by-name is in flight */
    char *query_error;        /* owned: the last sentinel's failure in this round */
    struct redis_conn *query; /* owned: short-lived link for the question */
    struct redis_conn *watch; /* owned: SUBSCRIBE +switch-master on one sentinel */
    struct sentinel_lookup query_lookup, watch_lookup; /* the two links' sentinel addresses */
    bool sentinel_tls;                                 /* the sentinel links use rb->tls too */
    size_t watch_idx;
    struct event *watch_timer;        /* owned: re-subscribe after a loss */
    struct sentinel_addr master;      /* the last answer (ip "" before the first) */
    uint64_t failovers;               /* +switch-master messages that moved our master */
    struct held_op *held, *held_tail; /* owned: waiting for the data link to open */
    size_t n_held;
};

/* One command in flight. Owned by the data link's FIFO from submission until on_cmd_reply. */
struct redis_cmd {
    struct redis_backend *rb; /* borrowed */
    enum store_op_kind kind;
    store_cb_fn cb;         /* borrowed; NULL: fire and forget */
    void *arg;              /* borrowed */
    bool internal;          /* our health ping: no user result, not counted as an error */
    bool done;              /* the result was delivered (reply, deadline or shutdown) */
    struct event *deadline; /* owned */
    char *key;              /* owned: prefixed key, to re-issue a take as a script */
    uint64_t sent_ms;
};

static void conn_connect(struct conn *c);
static void held_flush(struct redis_backend *rb, const char *error);
static void dns_cancel(struct conn *c);
static void sub_send(struct conn *c, struct redis_channel *ch);

static struct timeval ms_to_tv(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static void replace_str(char **dst, char *src)
{
    free(*dst);
    *dst = src;
}

/* --- URL ----------------------------------------------------------------- */

/* Parses a decimal in [min, max] spanning exactly p[0..len). */
static bool parse_uint(const char *p, size_t len, long min, long max, long *out)
{
    long v = 0;
    if (len == 0 || len > 9)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_unix(const char *rest, struct store_redis_url *out, char **err)
{
    long db = 0;
    int rc = 0;

    if (strncmp(rest, "//", 2) == 0) /* unix:///path */
        rest += 2;
    const char *q = strchr(rest, '?');
    size_t path_len = q != NULL ? (size_t)(q - rest) : strlen(rest);
    if (path_len == 0 || rest[0] != '/') {
        *err = xstrdup("redis URL: unix socket path must be absolute (unix:/path/to/redis.sock)");
        rc = -EINVAL;
        goto out;
    }
    if (q != NULL) {
        if (strncmp(q, "?db=", 4) != 0 || !parse_uint(q + 4, strlen(q + 4), 0, INT_MAX, &db)) {
            *err = xstrdup("redis URL: the only unix socket parameter is ?db=N");
            rc = -EINVAL;
            goto out;
        }
    }
    out->unix_path = xstrndup(rest, path_len);
    out->db = (int)db;

out:
    return rc;
}

static int parse_userinfo(const char *p, size_t len, struct store_redis_url *out, char **err)
{
    /* As redis-cli: "user:password", ":password", or a bare "password". */
    const char *colon = memchr(p, ':', len);
    int rc = 0;

    if (colon != NULL && colon > p) {
        out->user = url_pct_decode(p, (size_t)(colon - p), false, NULL);
        if (out->user == NULL)
            goto bad;
    }
    if (colon != NULL) {
        len -= (size_t)(colon + 1 - p);
        p = colon + 1;
    }
    if (len > 0) {
        out->password = url_pct_decode(p, len, false, NULL);
        if (out->password == NULL)
            goto bad;
    }
    goto out;
bad:
    *err = xstrdup("redis URL: bad %-escape in user or password");
    rc = -EINVAL;
out:
    return rc;
}

/* A host name of RFC 1123 letters, digits, '-' and '.' (not empty). */
static bool host_name_valid(const char *h)
{
    if (*h == '\0')
        return false;
    for (; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
              *h == '-' || *h == '.'))
            return false;
    return true;
}

static int parse_host(const char *p, size_t len, struct store_redis_url *out, char **err)
{
    char *host = NULL;
    const char *port_p = NULL;
    size_t port_len = 0;
    long port = 6379;
    int rc = 0;

    if (len > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', len);
        if (close == NULL)
            goto bad;
        host = xstrndup(p + 1, (size_t)(close - p - 1));
        const char *after = close + 1;
        size_t left = len - (size_t)(after - p);
        if (left > 0) {
            if (after[0] != ':')
                goto bad;
            port_p = after + 1;
            port_len = left - 1;
        }
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            goto bad;
    } else {
        const char *colon = memchr(p, ':', len);
        size_t host_len = colon != NULL ? (size_t)(colon - p) : len;
        if (colon != NULL) {
            port_p = colon + 1;
            port_len = len - host_len - 1;
        }
        host = xstrndup(p, host_len);
        struct in_addr a4;
        if (strcasecmp(host, "localhost") == 0) {
            /* No lookup needed: redis_conn connects to numeric addresses only. */
            replace_str(&host, xstrdup("127.0.0.1"));
            out->host_is_localhost = true;
        } else if (host[0] == '\0') {
            goto bad;
        } else if (inet_pton(AF_INET, host, &a4) != 1) {
            /* A name (a compose service, a Kubernetes service, a managed endpoint):
             * resolved on the loop before each connect (conn_connect) with evdns,
             * never blocking getaddrinfo(3). RFC 1123 letters only. */
            if (!host_name_valid(host))
                goto bad;
            out->host_is_name = true;
        }
    }
    if (port_p != NULL && !parse_uint(port_p, port_len, 1, 65535, &port)) {
        *err = xstrdup("redis URL: port must be a number from 1 to 65535");
        rc = -EINVAL;
        goto out;
    }
    out->host = host;
    out->port = (int)port;
    host = NULL;
    goto out;
bad:
    *err = xstrdup("redis URL: bad host (want a host name, an IPv4 address or [IPv6])");
    rc = -EINVAL;
out:
    free(host);
    return rc;
}

int store_redis_url_parse(const char *url, struct store_redis_url *out, char **err_out)
{
    char *err = NULL;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (url == NULL || url[0] == '\0') {
        err = xstrdup("redis URL is empty");
        rc = -EINVAL;
        goto out;
    }
    if (strncmp(url, "unix:", 5) == 0) {
        rc = parse_unix(url + 5, out, &err);
        goto out;
    }
    size_t scheme = 0;
    if (strncmp(url, "rediss://", 9) == 0) {
        out->tls = true;
        scheme = 9;
    } else if (strncmp(url, "redis://", 8) == 0) {
        scheme = 8;
    } else {
        err = xstrdup("redis URL must start with redis://, rediss:// or unix:");
        rc = -EINVAL;
        goto out;
    }
    const char *auth = url + scheme;
    const char *slash = strchr(auth, '/');
    size_t auth_len = slash != NULL ? (size_t)(slash - auth) : strlen(auth);
    if (memchr(auth, '?', auth_len) != NULL || memchr(auth, '#', auth_len) != NULL) {
        err = xstrdup("redis URL: query parameters are not supported");
        rc = -EINVAL;
        goto out;
    }
    /* The last '@' ends the userinfo: a password may contain '@' only %-encoded, but be lenient. */
    const char *at = NULL;
    for (const char *p = auth; p < auth + auth_len; p++)
        if (*p == '@')
            at = p;
    if (at != NULL) {
        rc = parse_userinfo(auth, (size_t)(at - auth), out, &err);
        if (rc < 0)
            goto out;
        auth_len -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    rc = parse_host(auth, auth_len, out, &err);
    if (rc < 0)
        goto out;
    if (slash != NULL && slash[1] != '\0') {
        long db = 0;
        if (!parse_uint(slash + 1, strlen(slash + 1), 0, INT_MAX, &db)) {
            err = xasprintf("redis URL: database \"%s\" is not a number", slash + 1);
            rc = -EINVAL;
            goto out;
        }
        out->db = (int)db;
    }

out:
    if (rc < 0) {
        store_redis_url_clear(out);
        if (err_out != NULL)
            *err_out = err;
        else
            free(err);
    }
    return rc;
}

void store_redis_url_clear(struct store_redis_url *u)
{
    if (u->password != NULL)
        explicit_bzero(u->password, strlen(u->password));
    free(u->password);
    free(u->user);
    free(u->host);
    free(u->unix_path);
    memset(u, 0, sizeof(*u));
}

/* --- connection state ---------------------------------------------------- */

static uint64_t jitter(struct redis_backend *rb, uint64_t ms)
{
    /* Equal jitter: half fixed, half random, so instances restarted together spread out. */
    rb->rng ^= rb->rng << 13;
    rb->rng ^= rb->rng >> 7;
    rb->rng ^= rb->rng << 17;
    return ms / 2 + rb->rng % (ms / 2 + 1);
}

static void conn_arm_timer(struct conn *c, uint64_t ms)
{
    struct timeval tv = ms_to_tv(ms);
    event_add(c->timer, &tv);
}

/*
 * Logs a failure once per outage: the first one, and again only when the
 * reason changes (say from "connection refused" to "AUTH failed"), never per
 * retry.
 */
static void conn_log_failure(struct conn *c, bool was_ready)
{
    if (!was_ready && c->logged_error != NULL && strcmp(c->logged_error, c->error) == 0)
        return;
    replace_str(&c->logged_error, xstrdup(c->error));
    gw_log(GW_LOG_WARN, "store", NULL,
           was_ready ? "redis connection lost; reconnecting" : "redis unavailable; retrying",
           "connection", c->name, "addr", c->rb->addr, "error", c->error, NULL);
}

/*
 * The connection is gone (its link is idle or about to be): remember why, log the
 * transition, and schedule the next attempt. hiredis 0.14: no reconnect of
 * its own; we retry forever, the delay doubling from reconnect_min_ms to
 * reconnect_max_ms with jitter, reset once a connection is READY.
 */
static void conn_down(struct conn *c, const char *reason)
{
    struct redis_backend *rb = c->rb;
    bool was_ready = c->state == CONN_READY;

    c->state = CONN_DOWN;
    if (c->is_data) {
        rb->healthy = false;
        held_flush(rb, store_is_closing(rb->s) ? "store shutting down" : reason);
    }
    for (struct redis_channel *ch = rb->channels; ch != NULL && !c->is_data; ch = ch->next)
        ch->active = false;
    replace_str(&c->error, xasprintf("redis %s", reason));
    if (store_is_closing(rb->s))
        return;
    conn_log_failure(c, was_ready);
    conn_arm_timer(c, jitter(rb, c->backoff_ms));
    c->backoff_ms =
        c->backoff_ms * 2 > rb->reconnect_max_ms ? rb->reconnect_max_ms : c->backoff_ms * 2;
}

/*
 * We give up on the current link (a handshake error, a silent server, a
 * deadline): go DOWN with REASON, then close the link, which runs every
 * pending reply callback with NULL. Safe from anywhere, reply callbacks
 * included (store/redis_conn.h), which hiredis 0.14's redisAsyncFree was not.
 */
static void conn_drop(struct conn *c, const char *reason)
{
    if (!redis_conn_is_open(c->link))
        return;
    conn_down(c, reason);
    redis_conn_close(c->link);
}

static void conn_ready(struct conn *c)
{
    struct redis_backend *rb = c->rb;
    c->state = CONN_READY;
    event_del(c->timer);
    c->backoff_ms = rb->reconnect_min_ms;
    c->last_reply_ms = time_mono_ms();
    replace_str(&c->error, NULL);
    replace_str(&c->logged_error, NULL);
    if (c->is_data) {
        rb->healthy = true;
        if (c->ever_ready)
            store_count_reconnect(rb->s);
    }
    gw_log(GW_LOG_INFO, "store", NULL, c->ever_ready ? "redis reconnected" : "redis connected",
           "connection", c->name, "addr", rb->addr, NULL);
    c->ever_ready = true;
    if (!c->is_data) {
        /* Re-subscribe everything: subscriptions do not survive a connection. */
        for (struct redis_channel *ch = rb->channels; ch != NULL; ch = ch->next)
            sub_send(c, ch);
    }
}

/* --- link callbacks ------------------------------------------------------ */

static void on_link_event(struct redis_conn *link, bool up, const char *why, void *arg)
{
    struct conn *c = arg;
    (void)link;
    if (up)
        return; /* the handshake is already queued; its PING reply decides READY */
    char *reason = c->state == CONN_READY ? xasprintf("connection to %s lost: %s", c->rb->addr, why)
                                          : xasprintf("connect to %s failed: %s", c->rb->addr, why);
    conn_down(c, reason);
    free(reason);
}

/* One step of the handshake: true when the reply is fine. NULL: the link is gone (already DOWN). */
static bool handshake_step(const redisReply *reply, struct conn *c, const char *what)
{
    if (reply == NULL)
        return false;
    c->last_reply_ms = time_mono_ms();
    if (reply->type == REDIS_REPLY_ERROR) {
        char *reason = xasprintf("%s failed: %s", what, reply->str);
        conn_drop(c, reason);
        free(reason);
        return false;
    }
    return true;
}

static void on_auth_reply(struct redis_conn *link, const redisReply *r, void *arg)
{
    (void)link;
    handshake_step(r, arg, "AUTH");
}

static void on_select_reply(struct redis_conn *link, const redisReply *r, void *arg)
{
    (void)link;
    handshake_step(r, arg, "SELECT");
}

static void on_role_reply(struct redis_conn *link, const redisReply *r, void *arg)
{
    struct conn *c = arg;
    (void)link;
    if (!handshake_step(r, c, "ROLE"))
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "master") != 0) {
        char *reason = xasprintf("%s is not a master (ROLE: %s)", c->rb->addr,
                                 r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                                         r->element[0]->type == REDIS_REPLY_STRING
                                     ? r->element[0]->str
                                     : "unexpected reply");
        conn_drop(c, reason);
        free(reason);
    }
}

static void on_hello_ping_reply(struct redis_conn *link, const redisReply *r, void *arg)
{
    (void)link;
    /* Replies come in order, so AUTH and SELECT have succeeded when we get here. */
    if (handshake_step(r, arg, "PING"))
        conn_ready(arg);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state == CONN_DOWN) {
        conn_connect(c);
    } else if (c->state == CONN_CONNECTING) {
        /* The whole handshake (connect, TLS, AUTH, SELECT, PING) has one deadline. */
        char *reason =
            xasprintf("%s %s timed out after %" PRIu64 " ms", c->dns ? "resolving" : "connect to",
                      c->rb->addr, c->rb->timeout_ms);
        if (c->awaiting_master) {
            c->awaiting_master = false;
            replace_str(&reason, xasprintf("asking the sentinels for master %s timed out after "
                                           "%" PRIu64 " ms",
                                           c->rb->master_name, c->rb->timeout_ms));
            conn_down(c, reason);
        } else if (c->dns) {
            dns_cancel(c);
            conn_down(c, reason);
        } else {
            conn_drop(c, reason);
        }
        free(reason);
    }
}

/*
 * Opens the link and pipelines the handshake (AUTH, SELECT, PING) before
 * anything else can be written on it: redis_conn buffers commands until the
 * socket connects and TLS is up, and Redis answers in order, so every command issued while
 * CONNECTING runs authenticated and on the right database.
 */
static void connect_to(struct conn *c, const char *ip);
static void sentinel_query(struct redis_backend *rb);

/* The first address of an evdns answer as text into IP; frees RES. */
static void first_address(struct evutil_addrinfo *res, char ip[INET6_ADDRSTRLEN])
{
    const void *a = res->ai_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    ip[0] = '\0';
    inet_ntop(res->ai_family, a, ip, INET6_ADDRSTRLEN);
    evutil_freeaddrinfo(res);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct conn *c = arg;
    c->dns = NULL;
    if (result == EVUTIL_EAI_CANCEL)
        return; /* we cancelled it: the connection is going down or away */
    if (result != 0 || res == NULL) {
        char *reason = xasprintf("cannot resolve %s: %s", c->rb->url.host,
                                 result ? evutil_gai_strerror(result) : "no address");
        conn_down(c, reason);
        free(reason);
        return;
    }
    char ip[INET6_ADDRSTRLEN] = "";
    first_address(res, ip);
    connect_to(c, ip);
}

static struct evdns_base *dns_base(struct redis_backend *rb)
{
    if (rb->dns == NULL) {
        /* MCPGATE_RESOLV_CONF: another resolv.conf (tests run their own DNS server). */
        const char *conf = getenv("MCPGATE_RESOLV_CONF");
        rb->dns = evdns_base_new(rb->base, conf ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (rb->dns == NULL)
            GW_PANIC("evdns_base_new failed");
        if (conf && evdns_base_resolv_conf_parse(rb->dns, DNS_OPTIONS_ALL, conf) != 0)
            gw_log(GW_LOG_WARN, "store", NULL, "MCPGATE_RESOLV_CONF could not be read", "file",
                   conf, NULL);
    }
    return rb->dns;
}

/* A pending resolution goes (its callback runs with EVUTIL_EAI_CANCEL and does nothing). */
static void dns_cancel(struct conn *c)
{
    struct evdns_getaddrinfo_request *r = c->dns;
    if (r != NULL) {
        c->dns = NULL;
        c->rb->lookup_cancelled = true;
        evdns_getaddrinfo_cancel(r);
    }
}

static void conn_connect(struct conn *c)
{
    struct redis_backend *rb = c->rb;
    const struct store_redis_url *u = &rb->url;
    c->started = true;
    c->state = CONN_CONNECTING;
    if (rb->n_sentinels > 0) {
        /* Asked again for every connection, as a name is resolved again: a failover moves it. */
        conn_arm_timer(c, rb->timeout_ms);
        c->awaiting_master = true;
        sentinel_query(rb);
        return;
    }
    if (!u->host_is_name) {
        connect_to(c, u->host);
        return;
    }
    /* Resolved again for every connection: an address may move (failover, rescheduling). */
    conn_arm_timer(c, rb->timeout_ms);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct evdns_getaddrinfo_request *r =
        evdns_getaddrinfo(dns_base(rb), u->host, NULL, &hints, on_resolved, c);
    if (r != NULL && c->state == CONN_CONNECTING && !redis_conn_is_open(c->link))
        c->dns = r; /* NULL: answered already (hosts file, or a failure), callback done */
}

static void connect_to(struct conn *c, const char *ip)
{
    struct redis_backend *rb = c->rb;
    const struct store_redis_url *u = &rb->url;
    char *reason = NULL;
    char *err = NULL;
    struct redis_conn_target t = {
        .ip = ip,
        .port = rb->n_sentinels > 0 ? rb->master.port : u->port,
        .unix_path = u->unix_path,
        .tls = rb->tls,
        /* Sentinel without tls_server_name: the master's certificate names its address. */
        .tls_name = rb->n_sentinels > 0 && !rb->tls_name_given ? rb->master.ip : rb->tls_name,
        .tls_check_name = rb->tls_check_name,
    };

    c->last_reply_ms = time_mono_ms();
    if (redis_conn_connect(c->link, &t, rb->timeout_ms, &err) < 0) {
        /* Nothing started: no event follows. */
        reason = xasprintf("connect to %s failed: %s", rb->addr, err);
        conn_down(c, reason);
        goto out;
    }

    int rc = 0;
    if (u->password != NULL) {
        const char *argv[3] = {"AUTH", u->user, u->password};
        size_t lens[3] = {4, u->user != NULL ? strlen(u->user) : 0, strlen(u->password)};
        if (u->user == NULL) {
            argv[1] = u->password;
            lens[1] = lens[2];
        }
        rc = redis_conn_send(c->link, u->user != NULL ? 3 : 2, argv, lens, on_auth_reply, c);
    }
    /* Pub/sub channels are global to the server: the pubsub connection needs no SELECT. */
    if (rc == 0 && u->db != 0 && c->is_data) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        rc = redis_conn_send(c->link, 2, argv, lens, on_select_reply, c);
    }
    /* Sentinel: the address may be stale (a failover in progress): only a master will do. */
    if (rc == 0 && rb->n_sentinels > 0) {
        const char *argv[1] = {"ROLE"};
        size_t lens[1] = {4};
        rc = redis_conn_send(c->link, 1, argv, lens, on_role_reply, c);
    }
    if (rc == 0) {
        const char *argv[1] = {"PING"};
        size_t lens[1] = {4};
        rc = redis_conn_send(c->link, 1, argv, lens, on_hello_ping_reply, c);
    }
    if (rc != 0) {
        reason = xasprintf("cannot queue the handshake for %s", rb->addr);
        conn_drop(c, reason);
        goto out;
    }
    conn_arm_timer(c, rb->timeout_ms);
    if (c->is_data)
        held_flush(rb, NULL); /* behind the handshake, in the order they came */

out:
    free(reason);
    free(err);
}

/* --- Sentinel ------------------------------------------------------------ */

/*
 * With store.redis.sentinels, the master's address comes from a sentinel
 * before every connection (SENTINEL get-master-addr-by-name on a short-lived
 * link, sentinels tried in order from the last one that answered, moving on
 * when one fails), and ROLE in the handshake refuses anything but a master.
 * A second link stays subscribed to +switch-master on one sentinel: on a
 * failover both connections are dropped and reconnect to the new master
 * after the usual backoff (subscriptions are renewed by conn_ready). A lost
 * connection or a READONLY reply asks again the same way.
 */

static void conn_sentinel_answer(struct conn *c, const char *error)
{
    if (!c->awaiting_master || c->state != CONN_CONNECTING)
        return;
    c->awaiting_master = false;
    if (error != NULL)
        conn_down(c, error);
    else
        connect_to(c, c->rb->master.ip);
}

static void query_done(struct redis_backend *rb, const char *error)
{
    rb->query_busy = false;
    if (error == NULL) {
        replace_str(&rb->addr, xasprintf("%s:%d/%d (master %s)", rb->master.ip, rb->master.port,
                                         rb->url.db, rb->master_name));
    }
    conn_sentinel_answer(&rb->data, error);
    conn_sentinel_answer(&rb->pubsub, error);
}

static void query_try(struct redis_backend *rb);

static void on_sentinel_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct sentinel_lookup *l = arg;
    l->req = NULL;
    if (result == EVUTIL_EAI_CANCEL)
        return; /* cancelled: the backend is going away */
    l->waiting = false;
    if (result != 0 || res == NULL) {
        if (res != NULL)
            evutil_freeaddrinfo(res);
        replace_str(&l->error, xasprintf("cannot resolve: %s",
                                         result ? evutil_gai_strerror(result) : "no address"));
    } else {
        first_address(res, l->ip);
    }
    l->done(l->rb);
}

/* Finds A's address for L, then calls L->done (now, or from the loop). */
static void sentinel_lookup_start(struct sentinel_lookup *l, const struct sentinel_addr *a)
{
    replace_str(&l->error, NULL);
    if (a->ip[0] != '\0') {
        memcpy(l->ip, a->ip, sizeof(l->ip));
        l->done(l->rb);
        return;
    }
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    l->waiting = true;
    struct evdns_getaddrinfo_request *r =
        evdns_getaddrinfo(dns_base(l->rb), a->host, NULL, &hints, on_sentinel_resolved, l);
    if (r != NULL && l->waiting)
        l->req = r; /* NULL or answered: the callback ran already */
}

/* How to reach sentinel A at IP: plain, or TLS checking the host as configured. */
static struct redis_conn_target sentinel_target(const struct redis_backend *rb,
                                                const struct sentinel_addr *a, const char *ip)
{
    struct redis_conn_target t = {.ip = ip, .port = a->port};
    if (rb->sentinel_tls) {
        t.tls = rb->tls;
        t.tls_name = a->host;
        t.tls_check_name = rb->tls_check_name;
    }
    return t;
}

static void sentinel_lookup_cancel(struct sentinel_lookup *l)
{
    struct evdns_getaddrinfo_request *r = l->req;
    l->req = NULL;
    if (r != NULL) {
        l->rb->lookup_cancelled = true;
        evdns_getaddrinfo_cancel(r);
    }
    replace_str(&l->error, NULL);
}

/* This sentinel failed: remember why, and ask the next one. */
static void query_next(struct redis_backend *rb, const char *why)
{
    const struct sentinel_addr *a = &rb->sentinels[rb->query_idx];
    replace_str(&rb->query_error, xasprintf("sentinel %s:%d: %s", a->host, a->port, why));
    redis_conn_close(rb->query);
    rb->query_idx = (rb->query_idx + 1) % rb->n_sentinels;
    rb->query_tries++;
    query_try(rb);
}

static void on_query_event(struct redis_conn *link, bool up, const char *why, void *arg)
{
    (void)link;
    if (!up)
        query_next(arg, why);
}

static void on_query_auth(struct redis_conn *link, const redisReply *r, void *arg)
{
    (void)link;
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        char *why = xasprintf("AUTH failed: %s", r->str);
        query_next(arg, why);
        free(why);
    }
}

static void on_query_reply(struct redis_conn *link, const redisReply *r, void *arg)
{
    struct redis_backend *rb = arg;
    (void)link;
    if (r == NULL)
        return; /* the link went: on_query_event or query_next moved on already */
    long port = 0;
    struct in6_addr a6;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[0]->len < sizeof(rb->master.ip) &&
        (inet_pton(AF_INET, r->element[0]->str, &a6) == 1 ||
         inet_pton(AF_INET6, r->element[0]->str, &a6) == 1) &&
        parse_uint(r->element[1]->str, r->element[1]->len, 1, 65535, &port)) {
        memcpy(rb->master.ip, r->element[0]->str, r->element[0]->len + 1);
        rb->master.port = (int)port;
        redis_conn_close(rb->query);
        query_done(rb, NULL);
        return;
    }
    char *why;
    if (r->type == REDIS_REPLY_ERROR)
        why = xasprintf("%s", r->str);
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[0]->type == REDIS_REPLY_STRING)
        why = xasprintf("gave master %s as \"%.64s\", not an IP address (announce-hostnames is "
                        "not followed)",
                        rb->master_name, r->element[0]->str);
    else
        why = xasprintf("does not know master %s", rb->master_name);
    query_next(rb, why);
    free(why);
}

/* Sends AUTH (when a sentinel password is set) on a fresh sentinel link. */
static int sentinel_auth(struct redis_backend *rb, struct redis_conn *link, redis_conn_reply_fn cb)
{
    if (rb->sentinel_password == NULL)
        return 0;
    const char *argv[2] = {"AUTH", rb->sentinel_password};
    size_t lens[2] = {4, strlen(rb->sentinel_password)};
    return redis_conn_send(link, 2, argv, lens, cb, rb);
}

static void query_try(struct redis_backend *rb)
{
    if (rb->query_tries >= rb->n_sentinels) {
        char *reason = xasprintf("no sentinel gave the address of master %s (last: %s)",
                                 rb->master_name, rb->query_error);
        query_done(rb, reason);
        free(reason);
        return;
    }
    sentinel_lookup_start(&rb->query_lookup, &rb->sentinels[rb->query_idx]);
}

/* The question's sentinel address is known (or not): connect and ask. */
static void query_connect(struct redis_backend *rb)
{
    char *err = NULL;
    if (rb->query_lookup.error != NULL) {
        query_next(rb, rb->query_lookup.error);
        return;
    }
    const struct sentinel_addr *a = &rb->sentinels[rb->query_idx];
    struct redis_conn_target t = sentinel_target(rb, a, rb->query_lookup.ip);
    if (redis_conn_connect(rb->query, &t, rb->timeout_ms, &err) < 0) {
        query_next(rb, err);
        free(err);
        return;
    }
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", rb->master_name};
    size_t lens[3] = {8, 23, strlen(rb->master_name)};
    if (sentinel_auth(rb, rb->query, on_query_auth) < 0 ||
        redis_conn_send(rb->query, 3, argv, lens, on_query_reply, rb) < 0)
        query_next(rb, "cannot queue the question");
}

/* One question serves every connection waiting for the master (data and pubsub). */
static void sentinel_query(struct redis_backend *rb)
{
    if (rb->query_busy)
        return;
    rb->query_busy = true;
    rb->query_tries = 0;
    query_try(rb);
}

static void watch_retry(struct redis_backend *rb)
{
    redis_conn_close(rb->watch);
    rb->watch_idx = (rb->watch_idx + 1) % rb->n_sentinels;
    struct timeval tv = ms_to_tv(rb->reconnect_min_ms);
    event_add(rb->watch_timer, &tv);
}

static void on_watch_event(struct redis_conn *link, bool up, const char *why, void *arg)
{
    struct redis_backend *rb = arg;
    (void)link;
    if (up)
        return;
    const struct sentinel_addr *a = &rb->sentinels[rb->watch_idx];
    gw_log(GW_LOG_WARN, "store", NULL, "redis sentinel subscription lost; trying the next",
           "sentinel", a->host, "error", why, NULL);
    watch_retry(rb);
}

static void on_watch_reply(struct redis_conn *link, const redisReply *r, void *arg)
{
    (void)link;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        watch_retry(arg);
}

/* "+switch-master" payload: "<name> <old-ip> <old-port> <new-ip> <new-port>". */
static void on_watch_push(struct redis_conn *link, const redisReply *msg, void *arg)
{
    struct redis_backend *rb = arg;
    (void)link;
    if (msg->element[2]->type != REDIS_REPLY_STRING)
        return;
    const char *p = msg->element[2]->str;
    size_t n = strlen(rb->master_name);
    if (strncmp(p, rb->master_name, n) != 0 || p[n] != ' ')
        return;
    rb->failovers++;
    gw_log(GW_LOG_WARN, "store", NULL, "redis sentinel failover; reconnecting to the new master",
           "master", rb->master_name, "switch", p + n + 1, NULL);
    /* The next connect asks a sentinel again; the backoff starts at reconnect_min_ms. */
    conn_drop(&rb->data, "failover (+switch-master)");
    conn_drop(&rb->pubsub, "failover (+switch-master)");
}

static void watch_connect(struct redis_backend *rb)
{
    sentinel_lookup_start(&rb->watch_lookup, &rb->sentinels[rb->watch_idx]);
}

/* The watched sentinel's address is known (or not): connect and subscribe. */
static void watch_subscribe(struct redis_backend *rb)
{
    char *err = NULL;
    const struct sentinel_addr *a = &rb->sentinels[rb->watch_idx];
    if (rb->watch_lookup.error != NULL) {
        gw_log(GW_LOG_WARN, "store", NULL, "redis sentinel not found; trying the next", "sentinel",
               a->host, "error", rb->watch_lookup.error, NULL);
        watch_retry(rb);
        return;
    }
    struct redis_conn_target t = sentinel_target(rb, a, rb->watch_lookup.ip);
    if (redis_conn_connect(rb->watch, &t, rb->timeout_ms, &err) < 0) {
        free(err);
        watch_retry(rb);
        return;
    }
    const char *argv[2] = {"SUBSCRIBE", "+switch-master"};
    size_t lens[2] = {9, 14};
    if (sentinel_auth(rb, rb->watch, on_watch_reply) < 0 ||
        redis_conn_send(rb->watch, 2, argv, lens, on_watch_reply, rb) < 0)
        watch_retry(rb);
}

static void on_watch_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    watch_connect(arg);
}

/* "host:port" or "[v6]:port" (an IP literal, localhost, or a name), into *out; NULL or why not. */
static const char *sentinel_parse(const char *text, struct sentinel_addr *out)
{
    const char *colon = strrchr(text, ':');
    const char *h = text;
    size_t hl = colon != NULL ? (size_t)(colon - text) : 0;
    long port = 0;
    struct in6_addr a6;
    if (colon == NULL || !parse_uint(colon + 1, strlen(colon + 1), 1, 65535, &port))
        return "want host:port";
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(out->host))
        return "bad host";
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    out->port = (int)port;
    if (strcasecmp(out->host, "localhost") == 0) {
        strcpy(out->ip, "127.0.0.1");
        return NULL;
    }
    if (inet_pton(AF_INET, out->host, &a6) == 1 || inet_pton(AF_INET6, out->host, &a6) == 1) {
        memcpy(out->ip, out->host, hl + 1); /* hl < INET6_ADDRSTRLEN: it parsed */
        return NULL;
    }
    if (!host_name_valid(out->host))
        return "bad host (an IP address or a host name)";
    out->ip[0] = '\0'; /* a name: resolved on the loop at every use */
    return NULL;
}

/* --- commands ------------------------------------------------------------ */

struct argv_buf {
    const char *v[7]; /* borrowed */
    size_t len[7];
    int n;
};

static void arg_bytes(struct argv_buf *a, const void *p, size_t len)
{
    /* "" rather than NULL: redisFormatCommandArgv memcpy()s even 0 bytes (UB on NULL). */
    a->v[a->n] = p != NULL ? p : "";
    a->len[a->n] = len;
    a->n++;
}

static void arg_str(struct argv_buf *a, const char *s)
{
    arg_bytes(a, s, strlen(s));
}

/* Redis errors that say "not now" rather than "never": the caller may retry. */
static bool is_transient_error(const char *msg)
{
    static const char *const prefixes[] = {"LOADING", "BUSY",     "MASTERDOWN",  "READONLY",
                                           "NOAUTH",  "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(msg, prefixes[i], n) == 0 && (msg[n] == ' ' || msg[n] == '\0'))
            return true;
    }
    return false;
}

static void on_cmd_reply(struct redis_conn *link, const redisReply *reply, void *arg);

static int cmd_send(struct redis_cmd *cmd, struct argv_buf *a)
{
    int rc = redis_conn_send(cmd->rb->data.link, a->n, a->v, a->len, on_cmd_reply, cmd);
    if (rc < 0)
        return rc;
    cmd->rb->in_flight++;
    return 0;
}

static int cmd_send_take_script(struct redis_cmd *cmd)
{
    struct argv_buf a = {.n = 0};
    arg_str(&a, "EVAL");
    arg_str(&a, take_script);
    arg_str(&a, "1");
    arg_str(&a, cmd->key);
    return cmd_send(cmd, &a);
}

/* Translates op into one Redis command; the caller arms the deadline. */
static int cmd_send_op(struct redis_cmd *cmd, const struct store_op *op)
{
    struct argv_buf a = {.n = 0};
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRIu64, op->ttl_ms);

    switch (op->kind) {
    case STORE_OP_PUT:
    case STORE_OP_PUT_NX:
        arg_str(&a, "SET");
        arg_str(&a, op->key);
        arg_bytes(&a, op->val, op->val_len);
        if (op->ttl_ms > 0) {
            arg_str(&a, "PX");
            arg_str(&a, ttl);
        }
        if (op->kind == STORE_OP_PUT_NX)
            arg_str(&a, "NX");
        break;
    case STORE_OP_GET:
        arg_str(&a, "GET");
        arg_str(&a, op->key);
        break;
    case STORE_OP_TAKE:
        if (cmd->rb->no_getdel)
            return cmd_send_take_script(cmd);
        arg_str(&a, "GETDEL");
        arg_str(&a, op->key);
        break;
    case STORE_OP_TAKE_MARK:
        arg_str(&a, "EVAL");
        arg_str(&a, take_mark_script);
        arg_str(&a, "2");
        arg_str(&a, op->key);
        arg_bytes(&a, op->val, op->val_len);
        arg_str(&a, ttl);
        break;
    case STORE_OP_DEL:
        arg_str(&a, "DEL");
        arg_str(&a, op->key);
        break;
    case STORE_OP_EXPIRE:
        if (op->ttl_ms > 0) {
            arg_str(&a, "PEXPIRE");
            arg_str(&a, op->key);
            arg_str(&a, ttl);
        } else {
            arg_str(&a, "EVAL");
            arg_str(&a, persist_script);
            arg_str(&a, "1");
            arg_str(&a, op->key);
        }
        break;
    case STORE_OP_INCR:
        arg_str(&a, "EVAL");
        arg_str(&a, incr_script);
        arg_str(&a, "1");
        arg_str(&a, op->key);
        arg_str(&a, ttl);
        break;
    case STORE_OP_SET_ADD:
        if (op->ttl_ms > 0) {
            arg_str(&a, "EVAL");
            arg_str(&a, sadd_script);
            arg_str(&a, "1");
            arg_str(&a, op->key);
            arg_bytes(&a, op->val, op->val_len);
            arg_str(&a, ttl);
        } else {
            arg_str(&a, "SADD");
            arg_str(&a, op->key);
            arg_bytes(&a, op->val, op->val_len);
        }
        break;
    case STORE_OP_SET_REMOVE:
        arg_str(&a, "SREM");
        arg_str(&a, op->key);
        arg_bytes(&a, op->val, op->val_len);
        break;
    case STORE_OP_SET_MEMBERS:
        arg_str(&a, "SMEMBERS");
        arg_str(&a, op->key);
        break;
    case STORE_OP_SET_CARD:
        arg_str(&a, "SCARD");
        arg_str(&a, op->key);
        break;
    case STORE_OP_TTL:
        arg_str(&a, "PTTL");
        arg_str(&a, op->key);
        break;
    case STORE_OP_PUBLISH:
        arg_str(&a, "PUBLISH");
        arg_str(&a, op->key);
        arg_bytes(&a, op->val, op->val_len);
        break;
    case STORE_OP_PING: arg_str(&a, "PING"); break;
    }
    return cmd_send(cmd, &a);
}

static void cmd_free(struct redis_cmd *cmd)
{
    if (cmd->internal)
        cmd->rb->ping_in_flight = false;
    event_free(cmd->deadline);
    free(cmd->key);
    free(cmd);
}

/* Delivers the one result of cmd; anything after that (a late reply) is ignored. */
static void cmd_finish(struct redis_cmd *cmd, const struct store_result *res)
{
    if (cmd->done)
        return;
    cmd->done = true;
    event_del(cmd->deadline);
    if (!cmd->internal)
        store_complete(cmd->rb->s, cmd->cb, cmd->arg, res);
}

static void cmd_fail(struct redis_cmd *cmd, enum store_status status, const char *error)
{
    struct store_result res = {.status = status, .error = error};
    cmd_finish(cmd, &res);
}

/* Maps a non-error reply to the result the contract promises for cmd's kind. */
static void reply_to_result(const struct redis_cmd *cmd, const redisReply *reply,
                            struct store_result *res)
{
    res->status = STORE_OK;
    switch (cmd->kind) {
    case STORE_OP_PUT:
    case STORE_OP_PING:
        if (reply->type != REDIS_REPLY_STATUS)
            goto unexpected;
        break;
    case STORE_OP_PUT_NX:
        if (reply->type == REDIS_REPLY_NIL)
            res->status = STORE_EXISTS;
        else if (reply->type != REDIS_REPLY_STATUS)
            goto unexpected;
        break;
    case STORE_OP_GET:
    case STORE_OP_TAKE:
    case STORE_OP_TAKE_MARK:
        if (reply->type == REDIS_REPLY_NIL) {
            res->status = STORE_NOT_FOUND;
        } else if (reply->type == REDIS_REPLY_STRING) {
            res->value = reply->str;
            res->value_len = reply->len;
        } else {
            goto unexpected;
        }
        break;
    case STORE_OP_EXPIRE:
    case STORE_OP_TTL:
        if (reply->type != REDIS_REPLY_INTEGER)
            goto unexpected;
        /* PEXPIRE/script: 0 = no key. PTTL: -2 = no key, -1 = no expiry. */
        if ((cmd->kind == STORE_OP_EXPIRE && reply->integer == 0) ||
            (cmd->kind == STORE_OP_TTL && reply->integer == -2))
            res->status = STORE_NOT_FOUND;
        else if (cmd->kind == STORE_OP_TTL)
            res->integer = reply->integer;
        break;
    case STORE_OP_DEL:
    case STORE_OP_INCR:
    case STORE_OP_SET_ADD:
    case STORE_OP_SET_REMOVE:
    case STORE_OP_SET_CARD:
    case STORE_OP_PUBLISH:
        if (reply->type != REDIS_REPLY_INTEGER)
            goto unexpected;
        res->integer = reply->integer;
        break;
    case STORE_OP_SET_MEMBERS:
        if (reply->type != REDIS_REPLY_ARRAY)
            goto unexpected;
        for (size_t i = 0; i < reply->elements; i++)
            if (reply->element[i]->type != REDIS_REPLY_STRING)
                goto unexpected;
        res->n_members = reply->elements; /* the arrays are filled by the caller */
        break;
    }
    return;
unexpected:
    res->status = STORE_ERROR;
    res->error = "redis: unexpected reply type";
}

static void on_cmd_reply(struct redis_conn *link, const redisReply *reply, void *arg)
{
    struct redis_cmd *cmd = arg;
    struct redis_backend *rb = cmd->rb;
    struct conn *c = &rb->data;
    const char **members = NULL;
    size_t *member_lens = NULL;
    bool readonly = false;

    (void)link;
    rb->in_flight--;
    if (reply == NULL) {
        /* The link went: lost (the event set c->error first), our drop, or store_free. */
        cmd_fail(cmd, STORE_UNAVAILABLE,
                 store_is_closing(rb->s) ? "store shutting down"
                 : c->error != NULL      ? c->error
                                         : "redis connection lost");
        goto out_free;
    }
    c->last_reply_ms = time_mono_ms();
    rb->healthy = true;
    if (cmd->done)
        goto out_free; /* the deadline passed: the caller has its answer */

    if (reply->type == REDIS_REPLY_ERROR) {
        if (cmd->kind == STORE_OP_TAKE && strncasecmp(reply->str, "ERR unknown command", 19) == 0) {
            /*
             * GETDEL is Redis 6.2+. Re-issue this take as a script on the same
             * connection (allowed inside a reply callback); later takes go
             * straight to the script. The record keeps its original deadline.
             */
            if (!rb->no_getdel)
                gw_log(GW_LOG_INFO, "store", NULL,
                       "redis has no GETDEL (< 6.2); take uses a script", "addr", rb->addr, NULL);
            rb->no_getdel = true;
            if (cmd_send_take_script(cmd) == 0)
                goto out; /* the link's FIFO holds the record again */
            cmd_fail(cmd, STORE_UNAVAILABLE, "redis: cannot queue the take script");
            goto out_free;
        }
        cmd_fail(cmd, is_transient_error(reply->str) ? STORE_UNAVAILABLE : STORE_ERROR, reply->str);
        /* Sentinel: a READONLY master was demoted under us; ask the sentinels again. */
        readonly = rb->n_sentinels > 0 && strncmp(reply->str, "READONLY", 8) == 0;
        goto out_free;
    }

    struct store_result res = {0};
    reply_to_result(cmd, reply, &res);
    if (res.status == STORE_OK && res.n_members > 0) {
        /* Pointers into the reply: valid until we return, which is all the contract promises. */
        members = xcalloc(res.n_members, sizeof(*members));
        member_lens = xcalloc(res.n_members, sizeof(*member_lens));
        for (size_t i = 0; i < res.n_members; i++) {
            members[i] = reply->element[i]->str;
            member_lens[i] = reply->element[i]->len;
        }
        res.members = members;
        res.member_lens = member_lens;
    }
    cmd_finish(cmd, &res);

out_free:
    cmd_free(cmd);
out:
    free(members);
    free(member_lens);
    if (readonly)
        conn_drop(c, "READONLY: the server is no longer the master");
}

/*
 * hiredis 0.14 (and redis_conn): no command timeout. The caller gets
 * STORE_UNAVAILABLE at the deadline; the record stays in the link's FIFO
 * (marked done) until the late reply or the link's end, so no callback ever
 * reaches freed memory.
 */
static void on_cmd_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct redis_cmd *cmd = arg;
    struct redis_backend *rb = cmd->rb;
    struct conn *c = &rb->data;
    /* Nothing at all came back since this command went out: the peer is gone or stuck. */
    bool silent = c->last_reply_ms <= cmd->sent_ms;
    (void)fd;
    (void)what;

    store_count_timeout(rb->s);
    rb->healthy = false;
    cmd_fail(cmd, STORE_UNAVAILABLE, rb->timeout_error);
    /*
     * Reconnecting is the only way out of a half-open TCP connection. A server
     * that still answers other commands is only slow: keep the connection.
     * (cmd may be freed by conn_drop: not used past this point.)
     */
    if (silent && redis_conn_is_open(c->link)) {
        char *reason = xasprintf("%s is not answering (no reply for %" PRIu64 " ms)", rb->addr,
                                 rb->timeout_ms);
        conn_drop(c, reason);
        free(reason);
    }
}

static int cmd_start(struct redis_backend *rb, const struct store_op *op, bool internal)
{
    struct redis_cmd *cmd = xcalloc(1, sizeof(*cmd));
    int rc = 0;

    cmd->rb = rb;
    cmd->kind = op->kind;
    cmd->cb = op->cb;
    cmd->arg = op->arg;
    cmd->internal = internal;
    cmd->sent_ms = time_mono_ms();
    cmd->key = op->kind == STORE_OP_TAKE ? xstrdup(op->key) : NULL;
    cmd->deadline = xevtimer_new(rb->base, on_cmd_deadline, cmd);
    rc = cmd_send_op(cmd, op);
    if (rc < 0) {
        cmd_free(cmd);
        goto out;
    }
    event_add(cmd->deadline, rb->cmd_timeout);

out:
    return rc;
}

static void on_health(evutil_socket_t fd, short what, void *arg)
{
    struct redis_backend *rb = arg;
    (void)fd;
    (void)what;
    /* Catches a dead or stuck server while idle, and makes is_ready true again after a timeout. */
    if (rb->data.state != CONN_READY || rb->ping_in_flight)
        return;
    struct store_op op = {.kind = STORE_OP_PING};
    if (cmd_start(rb, &op, true) == 0)
        rb->ping_in_flight = true;
}

/* --- pub/sub ------------------------------------------------------------- */

/*
 * A message on the pubsub link (redis_conn routes "message" replies here,
 * never to the FIFO, so PING or a late confirmation cannot be mistaken for
 * one: the stale-callback bug of hiredis 0.14's pub/sub is gone with it).
 */
static void on_sub_push(struct redis_conn *link, const redisReply *reply, void *arg)
{
    struct conn *c = arg;
    (void)link;
    c->last_reply_ms = time_mono_ms();
    if (reply->element[1]->type != REDIS_REPLY_STRING ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    store_deliver_message(c->rb->s, reply->element[1]->str, reply->element[2]->str,
                          reply->element[2]->len);
}

/* The confirmation of one SUBSCRIBE: ["subscribe", channel, count], or an error. */
static void on_sub_reply(struct redis_conn *link, const redisReply *reply, void *arg)
{
    struct conn *c = arg;
    (void)link;
    if (reply == NULL)
        return; /* the link went; conn_ready subscribes again */
    c->last_reply_ms = time_mono_ms();
    if (reply->type == REDIS_REPLY_ERROR) {
        char *reason = xasprintf("SUBSCRIBE failed: %s", reply->str);
        conn_drop(c, reason);
        free(reason);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    for (struct redis_channel *ch = c->rb->channels; ch != NULL; ch = ch->next)
        if (strcmp(ch->name, reply->element[1]->str) == 0)
            ch->active = true;
}

static void sub_send(struct conn *c, struct redis_channel *ch)
{
    if (c->state != CONN_READY)
        return; /* conn_ready subscribes everything */
    struct argv_buf a = {.n = 0};
    arg_str(&a, "SUBSCRIBE");
    arg_str(&a, ch->name);
    ch->active = false;
    /* One channel per SUBSCRIBE: its confirmation is its reply (store/redis_conn.h). */
    if (redis_conn_send(c->link, a.n, a.v, a.len, on_sub_reply, c) < 0)
        conn_drop(c, "cannot queue SUBSCRIBE");
}

/* --- backend vtable ------------------------------------------------------ */

static void held_add(struct redis_backend *rb, const struct store_op *op)
{
    struct held_op *h = xcalloc(1, sizeof(*h));
    h->op = *op;
    h->key = op->key != NULL ? xstrdup(op->key) : NULL;
    if (op->val_len > 0) {
        h->val = xmalloc(op->val_len);
        memcpy(h->val, op->val, op->val_len);
    }
    h->op.key = h->key;
    h->op.val = h->val;
    if (rb->held_tail != NULL)
        rb->held_tail->next = h;
    else
        rb->held = h;
    rb->held_tail = h;
    rb->n_held++;
}

/* Sends every held operation (error NULL) or fails each with error, from the loop. */
static void held_flush(struct redis_backend *rb, const char *error)
{
    struct held_op *h = rb->held;
    rb->held = rb->held_tail = NULL;
    rb->n_held = 0;
    while (h != NULL) {
        struct held_op *next = h->next;
        if (error != NULL || cmd_start(rb, &h->op, false) < 0)
            store_defer_status(rb->s, h->op.cb, h->op.arg, STORE_UNAVAILABLE,
                               error != NULL ? error : "redis: cannot queue the command");
        free(h->key);
        free(h->val);
        free(h);
        h = next;
    }
}

static void redis_submit(void *impl, const struct store_op *op)
{
    struct redis_backend *rb = impl;
    const char *error = NULL;

    if (!redis_conn_is_open(rb->data.link) && rb->data.state == CONN_CONNECTING &&
        rb->in_flight + rb->n_held < REDIS_MAX_IN_FLIGHT) {
        held_add(rb, op); /* resolving or asking the sentinels: wait for the link */
    } else if (!redis_conn_is_open(rb->data.link)) {
        /* DOWN: fail now rather than queue behind a reconnect that may take long. */
        error = rb->data.error != NULL ? rb->data.error : "redis not connected";
    } else if (rb->in_flight >= REDIS_MAX_IN_FLIGHT) {
        error = "redis: too many commands in flight";
    } else if (cmd_start(rb, op, false) < 0) {
        error = "redis: cannot queue the command";
    }
    if (error != NULL)
        store_defer_status(rb->s, op->cb, op->arg, STORE_UNAVAILABLE, error);
}

static void redis_subscribe(void *impl, const char *channel)
{
    struct redis_backend *rb = impl;
    struct redis_channel *ch = xcalloc(1, sizeof(*ch));
    ch->name = xstrdup(channel);
    ch->next = rb->channels;
    rb->channels = ch;
    if (!rb->pubsub.started)
        conn_connect(&rb->pubsub); /* opened lazily: most stores in tests never subscribe */
    else
        sub_send(&rb->pubsub, ch);
}

static bool redis_is_ready(const void *impl)
{
    const struct redis_backend *rb = impl;
    return rb->data.state == CONN_READY && rb->healthy;
}

static const char *redis_last_error(const void *impl)
{
    const struct redis_backend *rb = impl;
    if (rb->data.state == CONN_READY)
        return rb->healthy ? NULL : rb->timeout_error;
    return rb->data.error != NULL ? rb->data.error : "redis connecting";
}

static void redis_get_stats(const void *impl, struct store_stats *out)
{
    const struct redis_backend *rb = impl;
    out->connected = rb->data.state == CONN_READY;
    out->failovers = rb->failovers;
    out->subscribed = rb->channels == NULL || rb->pubsub.state == CONN_READY;
    for (const struct redis_channel *ch = rb->channels; ch != NULL; ch = ch->next)
        out->subscribed = out->subscribed && ch->active;
}

static void conn_init(struct redis_backend *rb, struct conn *c, const char *name, bool is_data)
{
    c->rb = rb;
    c->name = name;
    c->is_data = is_data;
    c->backoff_ms = rb->reconnect_min_ms;
    c->timer = xevtimer_new(rb->base, on_conn_timer, c);
    c->link = redis_conn_new(rb->base, on_link_event, c);
    if (!is_data)
        redis_conn_set_push(c->link, on_sub_push, c);
}

/* Frees the link first: its pending callbacks run now, reporting "store shutting down". */
static void conn_shutdown(struct conn *c)
{
    dns_cancel(c);
    c->state = CONN_DOWN;
    redis_conn_free(c->link); /* pending callbacks run now, with NULL */
    c->link = NULL;
    if (c->timer != NULL)
        event_free(c->timer);
    free(c->error);
    free(c->logged_error);
}

/*
 * Frees what store_redis_new sets up before any connection exists (the URL,
 * the names, the TLS context, the sentinel list) and RB itself: the last
 * step of redis_free, and the whole clean-up of a constructor that fails.
 */
static void backend_abandon(struct redis_backend *rb)
{
    free(rb->sentinels);
    store_redis_url_clear(&rb->url);
    free(rb->addr);
    free(rb->timeout_error);
    SSL_CTX_free(rb->tls);
    free(rb->tls_name);
    free(rb);
}

/* Backends freed while a cancelled lookup was on its way (redis_free). */
static struct redis_backend *orphans;

static void redis_free(void *impl)
{
    struct redis_backend *rb = impl;
    if (rb == NULL)
        return;
    event_free(rb->health_ev);
    held_flush(rb, "store shutting down");
    conn_shutdown(&rb->data);
    conn_shutdown(&rb->pubsub);
    sentinel_lookup_cancel(&rb->query_lookup);
    sentinel_lookup_cancel(&rb->watch_lookup);
    redis_conn_free(rb->query);
    redis_conn_free(rb->watch);
    if (rb->watch_timer != NULL)
        event_free(rb->watch_timer);
    free(rb->master_name);
    if (rb->sentinel_password != NULL)
        explicit_bzero(rb->sentinel_password, strlen(rb->sentinel_password));
    free(rb->sentinel_password);
    free(rb->query_error);
    struct redis_channel *ch = rb->channels;
    while (ch != NULL) {
        struct redis_channel *next = ch->next;
        free(ch->name);
        free(ch);
        ch = next;
    }
    if (rb->dns && rb->lookup_cancelled) {
        /* libevent 2.1 gives a cancelled lookup its EVUTIL_EAI_CANCEL from a
         * deferred callback, on a later turn of the loop, and frees the
         * lookup after it; freed with the loop first, it leaks. Our callbacks
         * only clear their pointer in RB then, so RB and the resolver wait
         * for store_shutdown_finish. */
        rb->orphan_next = orphans;
        orphans = rb;
        return;
    }
    if (rb->dns)
        evdns_base_free(rb->dns, 1);
    backend_abandon(rb);
}

void store_redis_shutdown_finish(struct event_base *base)
{
    if (orphans == NULL)
        return;
    event_base_loop(base, EVLOOP_NONBLOCK); /* the cancellations are delivered */
    while (orphans) {
        struct redis_backend *rb = orphans;
        orphans = rb->orphan_next;
        evdns_base_free(rb->dns, 1);
        backend_abandon(rb);
    }
}

void *store_redis_new(struct store *s, struct event_base *base, const struct store_options *opts,
                      char **err_out)
{
    struct redis_backend *rb = xcalloc(1, sizeof(*rb));
    int rc;

    rb->s = s;
    rb->base = base;
    rc = store_redis_url_parse(opts->redis_url, &rb->url, err_out);
    if (rc < 0)
        goto fail;
    /* "" counts as unset: configs write password: "${REDIS_PASSWORD:-}". */
    if (opts->password != NULL && opts->password[0] != '\0') {
        if (rb->url.password != NULL)
            explicit_bzero(rb->url.password, strlen(rb->url.password));
        replace_str(&rb->url.password, xstrdup(opts->password));
    }
    rb->timeout_ms = opts->timeout_ms != 0 ? opts->timeout_ms : STORE_DEFAULT_TIMEOUT_MS;
    rb->reconnect_min_ms =
        opts->reconnect_min_ms != 0 ? opts->reconnect_min_ms : STORE_DEFAULT_RECONNECT_MIN_MS;
    rb->reconnect_max_ms =
        opts->reconnect_max_ms != 0 ? opts->reconnect_max_ms : STORE_DEFAULT_RECONNECT_MAX_MS;
    if (rb->reconnect_max_ms < rb->reconnect_min_ms)
        rb->reconnect_max_ms = rb->reconnect_min_ms;
    if (rb->url.unix_path != NULL)
        rb->addr = xasprintf("unix:%s?db=%d", rb->url.unix_path, rb->url.db);
    else if (strchr(rb->url.host, ':') != NULL)
        rb->addr = xasprintf("[%s]:%d/%d", rb->url.host, rb->url.port, rb->url.db);
    else
        rb->addr = xasprintf("%s:%d/%d", rb->url.host, rb->url.port, rb->url.db);
    rb->timeout_error = xasprintf("redis timeout after %" PRIu64 " ms", rb->timeout_ms);
    if (rb->url.tls) {
        struct redis_conn_tls t = {
            .ca_file = opts->tls_ca_file,
            .cert_file = opts->tls_cert_file,
            .key_file = opts->tls_key_file,
            .verify = !opts->tls_no_verify,
        };
        rb->tls = redis_conn_tls_ctx_new(&t, err_out);
        rb->tls_name = xstrdup(opts->tls_server_name != NULL ? opts->tls_server_name
                               : rb->url.host_is_localhost   ? "localhost"
                                                             : rb->url.host);
        rb->tls_check_name = !opts->tls_no_verify;
        rb->tls_name_given = opts->tls_server_name != NULL;
        if (rb->tls == NULL)
            goto fail;
    }

    /*
     * Every command has the same timeout: a libevent "common timeout" keeps
     * them in a FIFO instead of the heap, O(1) per command.
     */
    struct timeval tv = ms_to_tv(rb->timeout_ms);
    rb->cmd_timeout = event_base_init_common_timeout(base, &tv);
    if (rb->cmd_timeout == NULL) {
        *err_out = xstrdup("store: cannot set up command timeouts");
        goto fail;
    }
    /*
     * libevent's socket bufferevent writes with writev(2) and OpenSSL's socket
     * BIO with write(2), not send(MSG_NOSIGNAL); a write to a Redis that just
     * died raises SIGPIPE, which by default kills us. The
     * process owns signal dispositions (gateway/app.c ignores SIGPIPE), so
     * only say so loudly when nobody did.
     */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        gw_log(GW_LOG_WARN, "store", NULL,
               "SIGPIPE is not ignored: a Redis connection dropped mid-write will kill the "
               "process (libevent and OpenSSL write without MSG_NOSIGNAL)",
               NULL);
    rb->rng = time_mono_ms() ^ ((uint64_t)(uintptr_t)rb << 16) ^ 0x9e3779b97f4a7c15ull;
    if (opts->n_sentinels > 0) {
        rb->sentinels = xcalloc(opts->n_sentinels, sizeof(*rb->sentinels));
        for (size_t i = 0; i < opts->n_sentinels; i++) {
            const char *why = sentinel_parse(opts->sentinels[i], &rb->sentinels[i]);
            if (why != NULL) {
                *err_out = xasprintf("store.redis.sentinels: \"%s\": %s", opts->sentinels[i], why);
                goto fail;
            }
        }
        rb->n_sentinels = opts->n_sentinels;
        rb->sentinel_tls = opts->sentinel_tls && rb->tls != NULL;
        rb->master_name = xstrdup(opts->master_name != NULL ? opts->master_name : "mymaster");
        if (opts->sentinel_password != NULL && opts->sentinel_password[0] != '\0')
            rb->sentinel_password = xstrdup(opts->sentinel_password);
        replace_str(&rb->addr, xasprintf("master %s via sentinels", rb->master_name));
        rb->query_lookup = (struct sentinel_lookup){.rb = rb, .done = query_connect};
        rb->watch_lookup = (struct sentinel_lookup){.rb = rb, .done = watch_subscribe};
        rb->query = redis_conn_new(base, on_query_event, rb);
        rb->watch = redis_conn_new(base, on_watch_event, rb);
        redis_conn_set_push(rb->watch, on_watch_push, rb);
        rb->watch_timer = xevtimer_new(base, on_watch_timer, rb);
        watch_connect(rb);
    }
    conn_init(rb, &rb->data, "data", true);
    conn_init(rb, &rb->pubsub, "pubsub", false);
    rb->health_ev = xevent_new(base, -1, EV_PERSIST, on_health, rb);
    struct timeval hv = ms_to_tv(REDIS_HEALTH_INTERVAL_MS);
    event_add(rb->health_ev, &hv);
    conn_connect(&rb->data);
    return rb;

fail:
    backend_abandon(rb);
    return NULL;
}

const struct store_backend_ops store_redis_ops = {
    .name = "redis",
    .submit = redis_submit,
    .subscribe = redis_subscribe,
    .is_ready = redis_is_ready,
    .last_error = redis_last_error,
    .get_stats = redis_get_stats,
    .free = redis_free,
};
