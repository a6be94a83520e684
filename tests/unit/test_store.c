/*
 * test_store: the store contract (store/store.h), written once and run
 * against both backends: "memory/…" in process, "redis/…" against a real
 * redis-server this binary starts on a free loopback port in a temp dir.
 * Then the Redis-only parts: URL parsing, AUTH, SELECT, unix sockets, the
 * GETDEL fallback for Redis < 6.2, an unreachable server.
 *
 * The redis cases fail when /usr/bin/redis-server is absent (CI has it;
 * scripts/deps.sh installs it), and when it is there but does not start:
 * they are never skipped, so a box without Redis cannot pass silently.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>

#include "common/xalloc.h"
#include "common/log.h"
#include "store/store.h"
#include "store/store_int.h"
#include "tests/unit/test_store_util.h"

#define WAIT_MS 3000 /* generous bound on one operation; a pass takes milliseconds */

/* The redis-server shared by every "redis/…" case (each uses its own key prefix). */
static struct ts_redis main_redis;
static bool have_redis;

struct fx {
    enum store_backend backend;
    struct event_base *base; /* owned */
    struct store *s;         /* owned */
    struct store *s2;        /* owned: a second connection, same prefix (memory: NULL, use s) */
    char prefix[32];
};

static int prefix_counter;

/* --- fixtures ------------------------------------------------------------ */

static struct store *new_store_url(struct fx *fx, const char *prefix, const char *url,
                                   const char *password)
{
    struct store_options o = {.backend = fx->backend,
                              .redis_url = url,
                              .password = password,
                              .prefix = prefix,
                              .timeout_ms = 1000};
    char *err = NULL;
    struct store *s = store_new(fx->base, &o, &err);
    if (s == NULL)
        fail_msg("store_new: %s", err);
    return s;
}

/* A store of the fixture's backend on the main server's db 0, ready. */
static struct store *new_store(struct fx *fx, const char *prefix)
{
    char *url = have_redis ? ts_redis_url(&main_redis, 0) : NULL;
    struct store *s = new_store_url(fx, prefix, url, NULL);
    free(url);
    if (!ts_wait_ready(fx->base, s, WAIT_MS))
        fail_msg("store not ready: %s", store_last_error(s));
    return s;
}

static int setup_backend(void **state, enum store_backend backend)
{
    struct fx *fx = xcalloc(1, sizeof(*fx));
    fx->backend = backend;
    fx->base = event_base_new();
    snprintf(fx->prefix, sizeof(fx->prefix), "t%d:", ++prefix_counter);
    *state = fx;
    if (backend == STORE_BACKEND_REDIS && !have_redis)
        return 0; /* the test body fails (fx_get) */
    fx->s = new_store(fx, fx->prefix);
    if (backend == STORE_BACKEND_REDIS)
        fx->s2 = new_store(fx, fx->prefix);
    return 0;
}

static int setup_memory(void **state)
{
    return setup_backend(state, STORE_BACKEND_MEMORY);
}

static int setup_redis(void **state)
{
    return setup_backend(state, STORE_BACKEND_REDIS);
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    store_free(fx->s2);
    store_free(fx->s);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

/* The fixture; a redis case without redis-server fails (it is never skipped). */
static struct fx *fx_get(void **state)
{
    struct fx *fx = *state;
    if (fx->backend == STORE_BACKEND_REDIS && !have_redis)
        fail_msg("%s not found: the redis cases need it (scripts/deps.sh installs it)",
                 TS_REDIS_SERVER);
    return fx;
}

/* The second connection for "concurrent" cases (memory has one keyspace per store). */
static struct store *other(struct fx *fx)
{
    return fx->s2 != NULL ? fx->s2 : fx->s;
}

static int wait_res(struct fx *fx, struct ts_res *r)
{
    return ts_res_wait(fx->base, r, WAIT_MS);
}

/* Issues one call returning int, asserts it was accepted, waits for its result. */
#define DO(fx, r, call)                                                                            \
    do {                                                                                           \
        ts_res_clear(r);                                                                           \
        assert_int_equal((call), 0);                                                               \
        assert_int_not_equal(wait_res((fx), (r)), -1);                                             \
    } while (0)

/* --- the contract, both backends ------------------------------------------ */

static void test_put_get(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    DO(fx, &r, store_put(fx->s, "k", "hello", 5, 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_null(r.error);
    DO(fx, &r, store_get(fx->s, "k", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.value_len, 5);
    assert_string_equal(r.value, "hello");
    /* Overwrite. */
    DO(fx, &r, store_put(fx->s, "k", "bye", 3, 0, ts_res_cb, &r));
    DO(fx, &r, store_get(fx->s, "k", ts_res_cb, &r));
    assert_string_equal(r.value, "bye");
    /* An empty value is a value. */
    DO(fx, &r, store_put(fx->s, "empty", NULL, 0, 0, ts_res_cb, &r));
    DO(fx, &r, store_get(fx->s, "empty", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.value_len, 0);
    ts_res_clear(&r);
}

static void test_binary_value(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};
    const char val[] = {'a', '\0', 'b', '\r', '\n', '\0', (char)0xff, 'z'};

    DO(fx, &r, store_put(fx->s, "bin", val, sizeof(val), 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    DO(fx, &r, store_get(fx->s, "bin", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.value_len, sizeof(val));
    assert_memory_equal(r.value, val, sizeof(val));
    ts_res_clear(&r);
}

static void test_get_missing(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    DO(fx, &r, store_get(fx->s, "nope", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    assert_null(r.value);
    DO(fx, &r, store_ttl(fx->s, "nope", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    ts_res_clear(&r);
}

static void test_put_nx(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    DO(fx, &r, store_put_nx(fx->s, "once", "first", 5, 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    DO(fx, &r, store_put_nx(fx->s, "once", "second", 6, 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_EXISTS);
    DO(fx, &r, store_get(fx->s, "once", ts_res_cb, &r));
    assert_string_equal(r.value, "first");
    ts_res_clear(&r);
}

static void test_take_once(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    DO(fx, &r, store_put(fx->s, "code", "grant-1", 7, 60000, ts_res_cb, &r));
    DO(fx, &r, store_take(fx->s, "code", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_string_equal(r.value, "grant-1");
    DO(fx, &r, store_take(fx->s, "code", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    DO(fx, &r, store_get(fx->s, "code", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    ts_res_clear(&r);
}

/* Both takes are issued before either result: one wins, whatever the order. */
static void check_concurrent_take(struct fx *fx)
{
    struct ts_res r = {0}, a = {0}, b = {0};

    DO(fx, &r, store_put(fx->s, "race", "v", 1, 0, ts_res_cb, &r));
    assert_int_equal(store_take(fx->s, "race", ts_res_cb, &a), 0);
    assert_int_equal(store_take(other(fx), "race", ts_res_cb, &b), 0);
    assert_int_not_equal(wait_res(fx, &a), -1);
    assert_int_not_equal(wait_res(fx, &b), -1);
    assert_true((a.status == STORE_OK) != (b.status == STORE_OK));
    assert_true(a.status == STORE_NOT_FOUND || b.status == STORE_NOT_FOUND);
    assert_string_equal(a.status == STORE_OK ? a.value : b.value, "v");
    ts_res_clear(&r);
    ts_res_clear(&a);
    ts_res_clear(&b);
}

static void test_take_concurrent(void **state)
{
    check_concurrent_take(fx_get(state));
}

/* F20: the take and its mark are one step: both racers see either the value or the mark. */
static void test_take_mark(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0}, a = {0}, b = {0};

    DO(fx, &r, store_take_mark(fx->s, "tm", "tm-mark", 60000, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    DO(fx, &r, store_get(fx->s, "tm-mark", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND); /* nothing taken, nothing marked */

    DO(fx, &r, store_put(fx->s, "tm", "grant-7", 7, 60000, ts_res_cb, &r));
    assert_int_equal(store_take_mark(fx->s, "tm", "tm-mark", 60000, ts_res_cb, &a), 0);
    assert_int_equal(store_take_mark(other(fx), "tm", "tm-mark", 60000, ts_res_cb, &b), 0);
    assert_int_not_equal(wait_res(fx, &a), -1);
    assert_int_not_equal(wait_res(fx, &b), -1);
    assert_true((a.status == STORE_OK) != (b.status == STORE_OK));
    /* The loser's next read finds the mark, with the value, whatever the order. */
    DO(fx, &r, store_get(other(fx), "tm-mark", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_string_equal(r.value, "grant-7");
    DO(fx, &r, store_ttl(fx->s, "tm-mark", ts_res_cb, &r));
    assert_true(r.integer > 0 && r.integer <= 60000);
    DO(fx, &r, store_get(fx->s, "tm", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    assert_int_equal(store_take_mark(fx->s, "tm", "", 60000, ts_res_cb, &r), -EINVAL);
    assert_int_equal(store_take_mark(fx->s, "tm", "m", 0, ts_res_cb, &r), -EINVAL);
    ts_res_clear(&r);
    ts_res_clear(&a);
    ts_res_clear(&b);
}

static void test_del(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    DO(fx, &r, store_put(fx->s, "d", "x", 1, 0, ts_res_cb, &r));
    DO(fx, &r, store_del(fx->s, "d", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.integer, 1);
    DO(fx, &r, store_del(fx->s, "d", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.integer, 0);
    ts_res_clear(&r);
}

static void test_ttl_expiry(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    DO(fx, &r, store_put(fx->s, "short", "v", 1, 150, ts_res_cb, &r));
    DO(fx, &r, store_ttl(fx->s, "short", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_in_range(r.integer, 1, 150);
    DO(fx, &r, store_get(fx->s, "short", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    ts_sleep_loop(fx->base, 300);
    DO(fx, &r, store_get(fx->s, "short", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    /* No TTL: -1. */
    DO(fx, &r, store_put(fx->s, "forever", "v", 1, 0, ts_res_cb, &r));
    DO(fx, &r, store_ttl(fx->s, "forever", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.integer, -1);
    ts_res_clear(&r);
}

static void test_expire_renews(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    DO(fx, &r, store_put(fx->s, "sess", "v", 1, 200, ts_res_cb, &r));
    ts_sleep_loop(fx->base, 100);
    DO(fx, &r, store_expire(fx->s, "sess", 400, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    ts_sleep_loop(fx->base, 200); /* past the first TTL */
    DO(fx, &r, store_get(fx->s, "sess", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    DO(fx, &r, store_ttl(fx->s, "sess", ts_res_cb, &r));
    assert_in_range(r.integer, 1, 400);
    /* 0 removes the expiry. */
    DO(fx, &r, store_expire(fx->s, "sess", 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    DO(fx, &r, store_ttl(fx->s, "sess", ts_res_cb, &r));
    assert_int_equal(r.integer, -1);
    DO(fx, &r, store_expire(fx->s, "absent", 1000, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    DO(fx, &r, store_expire(fx->s, "absent", 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    ts_res_clear(&r);
}

static void test_incr(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    for (long long i = 1; i <= 3; i++) {
        DO(fx, &r, store_incr(fx->s, "rate", 300, ts_res_cb, &r));
        assert_int_equal(r.status, STORE_OK);
        assert_int_equal(r.integer, i);
    }
    DO(fx, &r, store_ttl(fx->s, "rate", ts_res_cb, &r));
    assert_in_range(r.integer, 1, 300);
    ts_sleep_loop(fx->base, 150);
    /* The window is not extended by later increments. */
    DO(fx, &r, store_incr(fx->s, "rate", 300, ts_res_cb, &r));
    assert_int_equal(r.integer, 4);
    DO(fx, &r, store_ttl(fx->s, "rate", ts_res_cb, &r));
    assert_in_range(r.integer, 1, 200);
    ts_sleep_loop(fx->base, 250);
    DO(fx, &r, store_incr(fx->s, "rate", 300, ts_res_cb, &r));
    assert_int_equal(r.integer, 1); /* a new window */
    /* The counter reads as a decimal string, as in Redis. */
    DO(fx, &r, store_get(fx->s, "rate", ts_res_cb, &r));
    assert_string_equal(r.value, "1");
    /* No TTL asked: none set. */
    DO(fx, &r, store_incr(fx->s, "plain", 0, ts_res_cb, &r));
    DO(fx, &r, store_ttl(fx->s, "plain", ts_res_cb, &r));
    assert_int_equal(r.integer, -1);
    /* Not a number: the server's error. */
    DO(fx, &r, store_put(fx->s, "text", "abc", 3, 0, ts_res_cb, &r));
    DO(fx, &r, store_incr(fx->s, "text", 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_ERROR);
    assert_non_null(r.error);
    ts_res_clear(&r);
}

static void test_sets(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};

    DO(fx, &r, store_set_add(fx->s, "grants", "g1", 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.integer, 1);
    DO(fx, &r, store_set_add(fx->s, "grants", "g2", 0, ts_res_cb, &r));
    DO(fx, &r, store_set_add(fx->s, "grants", "g1", 0, ts_res_cb, &r));
    assert_int_equal(r.integer, 0); /* already there */
    DO(fx, &r, store_set_members(fx->s, "grants", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.n_members, 2);
    assert_true(ts_res_has_member(&r, "g1"));
    assert_true(ts_res_has_member(&r, "g2"));
    DO(fx, &r, store_set_card(fx->s, "grants", ts_res_cb, &r));
    assert_int_equal(r.integer, 2);
    DO(fx, &r, store_set_remove(fx->s, "grants", "g1", ts_res_cb, &r));
    assert_int_equal(r.integer, 1);
    DO(fx, &r, store_set_remove(fx->s, "grants", "g1", ts_res_cb, &r));
    assert_int_equal(r.integer, 0);
    DO(fx, &r, store_set_members(fx->s, "grants", ts_res_cb, &r));
    assert_int_equal(r.n_members, 1);
    assert_string_equal(r.members[0], "g2");
    /* Removing the last member removes the key. */
    DO(fx, &r, store_set_remove(fx->s, "grants", "g2", ts_res_cb, &r));
    DO(fx, &r, store_ttl(fx->s, "grants", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    DO(fx, &r, store_set_members(fx->s, "grants", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_int_equal(r.n_members, 0);
    DO(fx, &r, store_set_card(fx->s, "grants", ts_res_cb, &r));
    assert_int_equal(r.integer, 0);
    /* A TTL on add applies to the whole set. */
    DO(fx, &r, store_set_add(fx->s, "ttlset", "m", 5000, ts_res_cb, &r));
    DO(fx, &r, store_ttl(fx->s, "ttlset", ts_res_cb, &r));
    assert_in_range(r.integer, 1, 5000);
    /* Wrong type: a string read as a set and the other way round. */
    DO(fx, &r, store_get(fx->s, "ttlset", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_ERROR);
    assert_non_null(strstr(r.error, "WRONGTYPE"));
    DO(fx, &r, store_put(fx->s, "str", "v", 1, 0, ts_res_cb, &r));
    DO(fx, &r, store_set_add(fx->s, "str", "m", 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_ERROR);
    DO(fx, &r, store_take(fx->s, "ttlset", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_ERROR);
    DO(fx, &r, store_incr(fx->s, "ttlset", 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_ERROR);
    /* put replaces a key of any type, as SET does. */
    DO(fx, &r, store_put(fx->s, "ttlset", "now a string", 12, 0, ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    DO(fx, &r, store_get(fx->s, "ttlset", ts_res_cb, &r));
    assert_string_equal(r.value, "now a string");
    DO(fx, &r, store_set_members(fx->s, "ttlset", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_ERROR);
    ts_res_clear(&r);
}

struct msg_rec {
    int count;
    bool got;
    char channel[64];
    char msg[64];
    size_t len;
};

static void on_msg(const char *channel, const char *msg, size_t len, void *arg)
{
    struct msg_rec *m = arg;
    m->count++;
    m->got = true;
    snprintf(m->channel, sizeof(m->channel), "%s", channel);
    m->len = len < sizeof(m->msg) ? len : sizeof(m->msg);
    memcpy(m->msg, msg, m->len);
}

static void test_publish_subscribe(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};
    struct msg_rec news = {0}, news2 = {0}, other_ch = {0};
    const char payload[] = {'r', 'e', 'v', '\0', 'k', '1'};

    assert_int_equal(store_subscribe(fx->s, "news", on_msg, &news), 0);
    assert_int_equal(store_subscribe(fx->s, "other", on_msg, &other_ch), 0);
    assert_int_equal(store_subscribe(fx->s, "news", on_msg, &news), -EEXIST);
    assert_int_equal(store_subscribe(fx->s, "news", on_msg, &news2), 0); /* same channel, new arg */
    assert_true(ts_wait_subscribed(fx->base, fx->s, WAIT_MS));
    /* From the second connection: another instance publishing. */
    DO(fx, &r, store_publish(other(fx), "news", payload, sizeof(payload), ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_true(r.integer >= 1);
    assert_true(ts_wait_flag(fx->base, &news.got, WAIT_MS));
    assert_string_equal(news.channel, "news"); /* unprefixed */
    assert_int_equal(news.len, sizeof(payload));
    assert_memory_equal(news.msg, payload, sizeof(payload));
    ts_sleep_loop(fx->base, 50);
    assert_int_equal(news.count, 1);
    assert_int_equal(news2.count, 1);
    assert_memory_equal(news2.msg, payload, sizeof(payload));
    assert_int_equal(other_ch.count, 0);
    /* Nobody listens: 0 receivers. */
    DO(fx, &r, store_publish(fx->s, "void", "x", 1, ts_res_cb, &r));
    assert_int_equal(r.integer, 0);
    ts_res_clear(&r);
}

/* --- never synchronous ---------------------------------------------------- */

struct sync_probe {
    bool returned; /* set right after the call returns */
    bool called;
    bool was_sync; /* the callback saw returned == false */
};

static void on_probe(const struct store_result *res, void *arg)
{
    struct sync_probe *p = arg;
    (void)res;
    p->was_sync = !p->returned;
    p->called = true;
}

static bool all_called(void *arg)
{
    struct sync_probe *p = arg;
    for (int i = 0; i < 14; i++)
        if (!p[i].called)
            return false;
    return true;
}

/* Issues every kind of operation and checks no callback ran inside its call. */
static void check_never_synchronous(struct fx *fx, struct store *s)
{
    struct sync_probe p[14];
    int i = 0;
    memset(p, 0, sizeof(p));

#define PROBE(call)                                                                                \
    do {                                                                                           \
        assert_int_equal((call), 0);                                                               \
        p[i++].returned = true;                                                                    \
    } while (0)
    PROBE(store_put(s, "sync", "v", 1, 0, on_probe, &p[i]));
    PROBE(store_put_nx(s, "sync", "v", 1, 0, on_probe, &p[i]));
    PROBE(store_get(s, "sync", on_probe, &p[i]));
    PROBE(store_ttl(s, "sync", on_probe, &p[i]));
    PROBE(store_expire(s, "sync", 1000, on_probe, &p[i]));
    PROBE(store_take(s, "sync", on_probe, &p[i]));
    PROBE(store_del(s, "sync", on_probe, &p[i]));
    PROBE(store_incr(s, "sync-n", 0, on_probe, &p[i]));
    PROBE(store_set_add(s, "sync-s", "m", 0, on_probe, &p[i]));
    PROBE(store_set_members(s, "sync-s", on_probe, &p[i]));
    PROBE(store_set_card(s, "sync-s", on_probe, &p[i]));
    PROBE(store_set_remove(s, "sync-s", "m", on_probe, &p[i]));
    PROBE(store_publish(s, "sync-c", "m", 1, on_probe, &p[i]));
    PROBE(store_ping(s, on_probe, &p[i]));
#undef PROBE
    assert_int_equal(i, 14);
    assert_true(ts_run_until(fx->base, all_called, p, WAIT_MS));
    for (i = 0; i < 14; i++)
        if (p[i].was_sync)
            fail_msg("operation %d called back synchronously", i);
}

static void test_never_synchronous(void **state)
{
    struct fx *fx = fx_get(state);
    check_never_synchronous(fx, fx->s);
}

/* --- prefix, arguments, fire and forget, shutdown ------------------------- */

static void test_prefix(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};
    char pa[48], pb[48];
    snprintf(pa, sizeof(pa), "%sa:", fx->prefix);
    snprintf(pb, sizeof(pb), "%sb:", fx->prefix);
    struct store *a = new_store(fx, pa);
    struct store *b = new_store(fx, pb);

    DO(fx, &r, store_put(a, "key", "from-a", 6, 0, ts_res_cb, &r));
    DO(fx, &r, store_get(b, "key", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    DO(fx, &r, store_get(a, "key", ts_res_cb, &r));
    assert_string_equal(r.value, "from-a");
    if (fx->backend == STORE_BACKEND_REDIS) {
        /* The fixture's store (prefix "tN:") sees the full key "tN:a:key" on the server. */
        DO(fx, &r, store_get(fx->s, "a:key", ts_res_cb, &r));
        assert_int_equal(r.status, STORE_OK);
        assert_string_equal(r.value, "from-a");
    }
    store_free(b);
    store_free(a);
    ts_res_clear(&r);
}

static void test_bad_arguments(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};
    struct msg_rec m = {0};

    assert_int_equal(store_put(fx->s, NULL, "v", 1, 0, ts_res_cb, &r), -EINVAL);
    assert_int_equal(store_put(fx->s, "", "v", 1, 0, ts_res_cb, &r), -EINVAL);
    assert_int_equal(store_put(fx->s, "k", NULL, 3, 0, ts_res_cb, &r), -EINVAL);
    assert_int_equal(store_put(fx->s, "k", "v", STORE_MAX_VALUE_BYTES + 1, 0, ts_res_cb, &r),
                     -E2BIG);
    assert_int_equal(store_get(NULL, "k", ts_res_cb, &r), -EINVAL);
    assert_int_equal(store_set_add(fx->s, "k", NULL, 0, ts_res_cb, &r), -EINVAL);
    assert_int_equal(store_set_remove(fx->s, "k", NULL, ts_res_cb, &r), -EINVAL);
    assert_int_equal(store_publish(fx->s, NULL, "m", 1, ts_res_cb, &r), -EINVAL);
    assert_int_equal(store_subscribe(fx->s, "c", NULL, &m), -EINVAL);
    assert_int_equal(store_subscribe(fx->s, "", on_msg, &m), -EINVAL);
    ts_sleep_loop(fx->base, 30);
    assert_false(r.called); /* refused calls never call back */
}

static void test_fire_and_forget(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};
    struct store_stats st;

    assert_int_equal(store_put(fx->s, "ff", "v", 1, 0, NULL, NULL), 0);
    assert_int_equal(store_incr(fx->s, "ff-n", 0, NULL, NULL), 0);
    DO(fx, &r, store_get(fx->s, "ff", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    assert_string_equal(r.value, "v");
    store_get_stats(fx->s, &st);
    assert_true(st.ops >= 3);
    assert_true(st.connected);
    assert_true(store_is_ready(fx->s));
    assert_null(store_last_error(fx->s));
    ts_res_clear(&r);
}

struct shutdown_probe {
    struct store *s;
    struct ts_res res;
    int rc_inside; /* what an operation issued from the callback returned */
};

static void on_shutdown_probe(const struct store_result *res, void *arg)
{
    struct shutdown_probe *p = arg;
    ts_res_cb(res, &p->res);
    p->rc_inside = store_get(p->s, "x", ts_res_cb, &p->res);
}

static void test_free_with_pending(void **state)
{
    struct fx *fx = fx_get(state);
    struct shutdown_probe a = {0}, b = {0};
    struct store *s = new_store(fx, fx->prefix);
    a.s = b.s = s;

    assert_int_equal(store_put(s, "p", "v", 1, 0, on_shutdown_probe, &a), 0);
    assert_int_equal(store_get(s, "p", on_shutdown_probe, &b), 0);
    store_free(s); /* before the loop ran: both are pending */
    assert_int_equal(a.res.calls, 1);
    assert_int_equal(b.res.calls, 1);
    assert_int_equal(a.res.status, STORE_UNAVAILABLE);
    assert_string_equal(a.res.error, "store shutting down");
    assert_int_equal(b.res.status, STORE_UNAVAILABLE);
    assert_int_equal(a.rc_inside, -ESHUTDOWN);
    ts_sleep_loop(fx->base, 30); /* nothing fires late into freed memory */
    assert_int_equal(a.res.calls, 1);
    ts_res_clear(&a.res);
    ts_res_clear(&b.res);
}

/* --- memory only ----------------------------------------------------------- */

/* Many keys (the table grows), expired keys nobody reads again (the sweep frees them). */
static void test_memory_grow_and_sweep(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};
    char key[32];
    enum { N = 3000 };

    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(store_put(fx->s, key, key, strlen(key), i % 2 ? 50 : 0, NULL, NULL), 0);
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(key, sizeof(key), "k%d", i);
        DO(fx, &r, store_get(fx->s, key, ts_res_cb, &r));
        assert_int_equal(r.status, STORE_OK);
        assert_string_equal(r.value, key);
    }
    assert_int_equal(store_memory_count(fx->s), N);
    /* Past the TTL and one sweep interval, with no reads of the expired keys. */
    ts_sleep_loop(fx->base, 1200);
    assert_int_equal(store_memory_count(fx->s), N / 2);
    DO(fx, &r, store_get(fx->s, "k1", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    DO(fx, &r, store_get(fx->s, "k2", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    ts_res_clear(&r);
}

/* --- Redis only ------------------------------------------------------------ */

static void test_redis_password(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_redis auth = {0};
    const char *const extra[] = {"--requirepass", "s3cret", NULL};
    struct ts_res r = {0};
    char *url, *url_pw, *url_user, *url_wrong;

    assert_int_equal(ts_redis_start(&auth, extra), 0);
    url = xasprintf("redis://127.0.0.1:%d", auth.port);
    url_pw = xasprintf("redis://:s3cret@127.0.0.1:%d/0", auth.port);
    url_user = xasprintf("redis://default:s3cr%%65t@127.0.0.1:%d", auth.port); /* %65 = e */
    url_wrong = xasprintf("redis://:nope@127.0.0.1:%d", auth.port);

    /* Wrong password: never ready, a clear reason, operations fail fast. */
    struct store *bad = new_store_url(fx, fx->prefix, url, "wrong");
    ts_sleep_loop(fx->base, 300);
    assert_false(store_is_ready(bad));
    assert_non_null(store_last_error(bad));
    assert_non_null(strstr(store_last_error(bad), "AUTH failed"));
    assert_non_null(strstr(store_last_error(bad), "WRONGPASS"));
    DO(fx, &r, store_get(bad, "k", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_UNAVAILABLE);
    store_free(bad);

    /* No password at all: NOAUTH is reported too. */
    bad = new_store_url(fx, fx->prefix, url, NULL);
    ts_sleep_loop(fx->base, 200);
    assert_false(store_is_ready(bad));
    assert_non_null(strstr(store_last_error(bad), "NOAUTH"));
    store_free(bad);

    /* The right password, from the options, the URL, with a user; the option wins over the URL. */
    const char *urls[] = {url, url_pw, url_user, url_wrong};
    const char *pws[] = {"s3cret", NULL, NULL, "s3cret"};
    for (size_t i = 0; i < 4; i++) {
        struct store *good = new_store_url(fx, fx->prefix, urls[i], pws[i]);
        if (!ts_wait_ready(fx->base, good, WAIT_MS))
            fail_msg("case %zu not ready: %s", i, store_last_error(good));
        DO(fx, &r, store_put(good, "k", "v", 1, 0, ts_res_cb, &r));
        assert_int_equal(r.status, STORE_OK);
        DO(fx, &r, store_get(good, "k", ts_res_cb, &r));
        assert_string_equal(r.value, "v");
        store_free(good);
    }
    free(url);
    free(url_pw);
    free(url_user);
    free(url_wrong);
    ts_redis_destroy(&auth);
    ts_res_clear(&r);
}

static void test_redis_db_select(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};
    char *url3 = ts_redis_url(&main_redis, 3);
    char *url0 = ts_redis_url(&main_redis, 0);
    struct store *db3 = new_store_url(fx, fx->prefix, url3, NULL);
    struct store *db3b = new_store_url(fx, fx->prefix, url3, NULL);
    struct store *db0 = new_store_url(fx, fx->prefix, url0, NULL);

    assert_true(ts_wait_ready(fx->base, db3, WAIT_MS));
    assert_true(ts_wait_ready(fx->base, db3b, WAIT_MS));
    assert_true(ts_wait_ready(fx->base, db0, WAIT_MS));
    DO(fx, &r, store_put(db3, "in3", "v", 1, 0, ts_res_cb, &r));
    DO(fx, &r, store_get(db0, "in3", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    DO(fx, &r, store_get(db3b, "in3", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_OK);
    store_free(db0);
    store_free(db3b);
    store_free(db3);

    /* A database the server does not have: not ready, with Redis' reason. */
    char *url_bad = xasprintf("redis://127.0.0.1:%d/999", main_redis.port);
    struct store *bad = new_store_url(fx, fx->prefix, url_bad, NULL);
    ts_sleep_loop(fx->base, 200);
    assert_false(store_is_ready(bad));
    assert_non_null(strstr(store_last_error(bad), "SELECT failed"));
    store_free(bad);
    free(url_bad);
    free(url3);
    free(url0);
    ts_res_clear(&r);
}

static void test_redis_unix_and_localhost(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_redis ux = {0};
    struct ts_res r = {0};
    char sock[PATH_MAX + 32];

    /* The temp dir exists only once started; start, then restart with the socket in it. */
    assert_int_equal(ts_redis_start(&ux, NULL), 0);
    ts_redis_kill(&ux);
    snprintf(sock, sizeof(sock), "%s/redis.sock", ux.dir);
    const char *const extra[] = {"--unixsocket", sock, "--unixsocketperm", "700", NULL};
    assert_int_equal(ts_redis_start(&ux, extra), 0);

    char *url = xasprintf("unix:%s?db=2", sock);
    struct store *s = new_store_url(fx, fx->prefix, url, NULL);
    if (!ts_wait_ready(fx->base, s, WAIT_MS))
        fail_msg("unix socket store not ready: %s", store_last_error(s));
    DO(fx, &r, store_put(s, "u", "v", 1, 0, ts_res_cb, &r));
    DO(fx, &r, store_get(s, "u", ts_res_cb, &r));
    assert_string_equal(r.value, "v");
    store_free(s);
    free(url);

    url = xasprintf("redis://localhost:%d", ux.port);
    s = new_store_url(fx, fx->prefix, url, NULL);
    assert_true(ts_wait_ready(fx->base, s, WAIT_MS));
    /* db 0 here: the key written on db 2 is not visible. */
    DO(fx, &r, store_get(s, "u", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_NOT_FOUND);
    store_free(s);
    free(url);
    unlink(sock);
    ts_redis_destroy(&ux);
    ts_res_clear(&r);
}

/* A DNS server on loopback (libevent's own): NAME_OK is 127.0.0.1, anything else NXDOMAIN. */
#define NAME_OK "redis.mcpgate.test"
static void on_dns_question(struct evdns_server_request *req, void *arg)
{
    int *answered = arg;
    for (int i = 0; i < req->nquestions; i++) {
        const struct evdns_server_question *q = req->questions[i];
        if (q->type == EVDNS_TYPE_A && strcasecmp(q->name, NAME_OK) == 0) {
            uint32_t a = htonl(0x7f000001);
            evdns_server_request_add_a_reply(req, q->name, 1, &a, 10);
            (*answered)++;
        }
    }
    evdns_server_request_respond(req, 0);
}

static void test_redis_host_name(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_redis rs = {0};
    struct ts_res r = {0};
    assert_int_equal(ts_redis_start(&rs, NULL), 0);

    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    assert_int_equal(bind(udp, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    getsockname(udp, (struct sockaddr *)&sin, &sl);
    evutil_make_socket_nonblocking(udp);
    int answered = 0;
    struct evdns_server_port *dns =
        evdns_add_server_port_with_base(fx->base, udp, 0, on_dns_question, &answered);
    char conf[] = "/tmp/mcpgate-resolv-XXXXXX";
    int cfd = mkstemp(conf);
    char *line = xasprintf("nameserver 127.0.0.1:%d\n", ntohs(sin.sin_port));
    assert_int_equal(write(cfd, line, strlen(line)), (ssize_t)strlen(line));
    close(cfd);
    setenv("MCPGATE_RESOLV_CONF", conf, 1);

    char *url = xasprintf("redis://" NAME_OK ":%d", rs.port);
    struct store *s = new_store_url(fx, fx->prefix, url, NULL);
    if (!ts_wait_ready(fx->base, s, WAIT_MS))
        fail_msg("a store named by host name is not ready: %s", store_last_error(s));
    assert_true(answered >= 1);
    DO(fx, &r, store_put(s, "n", "v", 1, 0, ts_res_cb, &r));
    DO(fx, &r, store_get(s, "n", ts_res_cb, &r));
    assert_string_equal(r.value, "v");
    /* Killed and back: the name is resolved again for the new connection. */
    int before = answered;
    ts_redis_kill(&rs);
    assert_int_equal(ts_redis_start(&rs, NULL), 0);
    store_free(s);
    free(url);
    url = xasprintf("redis://" NAME_OK ":%d", rs.port);
    s = new_store_url(fx, fx->prefix, url, NULL);
    assert_true(ts_wait_ready(fx->base, s, WAIT_MS));
    assert_true(answered > before);
    store_free(s);
    free(url);

    /* A name nobody knows: not ready, and the error says so (the loop never blocked). */
    s = new_store_url(fx, fx->prefix, "redis://nowhere.mcpgate.test:6379", NULL);
    for (int i = 0; i < 200 && store_last_error(s) && !strstr(store_last_error(s), "resolve"); i++)
        ts_wait_ready(fx->base, s, 10);
    assert_false(store_is_ready(s));
    assert_non_null(strstr(store_last_error(s), "cannot resolve nowhere.mcpgate.test"));
    store_free(s);

    unsetenv("MCPGATE_RESOLV_CONF");
    unlink(conf);
    free(line);
    evdns_close_server_port(dns);
    close(udp);
    ts_redis_destroy(&rs);
    ts_res_clear(&r);
}

/* Redis < 6.2 has no GETDEL; renaming it away reproduces that on a new server. */
static void test_redis_take_without_getdel(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_redis old = {0};
    const char *const extra[] = {"--rename-command", "GETDEL", "", NULL};
    struct ts_res r = {0};

    assert_int_equal(ts_redis_start(&old, extra), 0);
    char *url = xasprintf("redis://127.0.0.1:%d", old.port);
    struct store *s = new_store_url(fx, fx->prefix, url, NULL);
    struct store *s2 = new_store_url(fx, fx->prefix, url, NULL);
    assert_true(ts_wait_ready(fx->base, s, WAIT_MS));
    assert_true(ts_wait_ready(fx->base, s2, WAIT_MS));

    DO(fx, &r, store_put(s, "code", "c1", 2, 0, ts_res_cb, &r));
    DO(fx, &r, store_take(s, "code", ts_res_cb, &r)); /* GETDEL fails, the script answers */
    assert_int_equal(r.status, STORE_OK);
    assert_string_equal(r.value, "c1");
    DO(fx, &r, store_take(s, "code", ts_res_cb, &r)); /* straight to the script now */
    assert_int_equal(r.status, STORE_NOT_FOUND);

    /* Racing takes on two connections, one of which still tries GETDEL first. */
    struct store *saved_s = fx->s, *saved_s2 = fx->s2;
    fx->s = s;
    fx->s2 = s2;
    check_concurrent_take(fx);
    fx->s = saved_s;
    fx->s2 = saved_s2;

    store_free(s2);
    store_free(s);
    free(url);
    ts_redis_destroy(&old);
    ts_res_clear(&r);
}

static void test_redis_unreachable(void **state)
{
    struct fx *fx = fx_get(state);
    struct ts_res r = {0};
    char *url = xasprintf("redis://127.0.0.1:%d", ts_free_port());
    struct store *s = new_store_url(fx, fx->prefix, url, NULL);
    struct store_stats st;

    ts_sleep_loop(fx->base, 100);
    assert_false(store_is_ready(s));
    assert_non_null(strstr(store_last_error(s), "refused"));
    uint64_t t0 = ts_now_ms();
    DO(fx, &r, store_get(s, "k", ts_res_cb, &r));
    assert_int_equal(r.status, STORE_UNAVAILABLE);
    assert_true(r.at_ms - t0 < 200); /* fails fast, not at the deadline */
    check_never_synchronous(fx, s);
    store_get_stats(s, &st);
    assert_false(st.connected);
    assert_true(st.errors >= 15);
    store_free(s);
    free(url);
    ts_res_clear(&r);
}

/* --- backend independent --------------------------------------------------- */

static void test_url_parse(void **state)
{
    static const struct {
        const char *url;
        const char *host, *unix_path, *user, *password;
        int port, db;
    } good[] = {
        {"redis://127.0.0.1", "127.0.0.1", NULL, NULL, NULL, 6379, 0},
        {"redis://127.0.0.1:6380/2", "127.0.0.1", NULL, NULL, NULL, 6380, 2},
        {"redis://localhost:7000/", "127.0.0.1", NULL, NULL, NULL, 7000, 0},
        {"redis://:pw@10.0.0.5/15", "10.0.0.5", NULL, NULL, "pw", 6379, 15},
        {"redis://pw@10.0.0.5", "10.0.0.5", NULL, NULL, "pw", 6379, 0},
        {"redis://alice:p%40ss%3Aw@[::1]:6390/1", "::1", NULL, "alice", "p@ss:w", 6390, 1},
        {"redis://a:b@c@127.0.0.1", "127.0.0.1", NULL, "a", "b@c", 6379, 0},
        {"redis://redis.internal:6379", "redis.internal", NULL, NULL, NULL, 6379, 0},
        {"redis://redis:6380/1", "redis", NULL, NULL, NULL, 6380, 1},
        {"unix:/run/redis.sock", NULL, "/run/redis.sock", NULL, NULL, 0, 0},
        {"unix:///run/redis.sock?db=4", NULL, "/run/redis.sock", NULL, NULL, 0, 4},
        {"rediss://u:pw@redis.example.com:6380/3", "redis.example.com", NULL, "u", "pw", 6380, 3},
        {"rediss://127.0.0.1", "127.0.0.1", NULL, NULL, NULL, 6379, 0},
    };
    static const struct {
        const char *url;
        const char *why; /* a substring of the error */
    } bad[] = {
        {"", "empty"},
        {"http://127.0.0.1", "redis://"},
        {"redis://bad_host!:6379", "bad host"},
        {"redis://127.0.0.1:0", "port"},
        {"redis://127.0.0.1:65536", "port"},
        {"redis://127.0.0.1:63x9", "port"},
        {"redis://127.0.0.1/db1", "database"},
        {"redis://127.0.0.1/1?x=y", "database"},
        {"redis://127.0.0.1?timeout=1", "query"},
        {"redis://:p%4@127.0.0.1", "%-escape"},
        {"redis://:p%00@127.0.0.1", "%-escape"},
        {"redis://[::1", "bad host"},
        {"redis://[nothost]:1", "bad host"},
        {"redis://:6379", "bad host"},
        {"unix:relative.sock", "absolute"},
        {"unix:/run/redis.sock?database=1", "db=N"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct store_redis_url u;
        char *err = NULL;
        if (store_redis_url_parse(good[i].url, &u, &err) != 0)
            fail_msg("%s: %s", good[i].url, err);
        if (good[i].host != NULL)
            assert_string_equal(u.host, good[i].host);
        else
            assert_null(u.host);
        if (good[i].unix_path != NULL)
            assert_string_equal(u.unix_path, good[i].unix_path);
        else
            assert_null(u.unix_path);
        if (good[i].user != NULL)
            assert_string_equal(u.user, good[i].user);
        else
            assert_null(u.user);
        if (good[i].password != NULL)
            assert_string_equal(u.password, good[i].password);
        else
            assert_null(u.password);
        if (u.host != NULL)
            assert_int_equal(u.port, good[i].port);
        assert_int_equal(u.db, good[i].db);
        assert_int_equal(u.tls, strncmp(good[i].url, "rediss:", 7) == 0);
        store_redis_url_clear(&u);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct store_redis_url u;
        char *err = NULL;
        if (store_redis_url_parse(bad[i].url, &u, &err) == 0)
            fail_msg("%s: accepted", bad[i].url);
        assert_non_null(err);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("%s: error \"%s\" lacks \"%s\"", bad[i].url, err, bad[i].why);
        free(err);
    }
}

/* A unix socket that is not there fails inside redisAsyncConnectUnix itself, before any event. */
static void test_redis_unix_missing(void **state)
{
    struct event_base *base = event_base_new();
    struct store_options o = {.backend = STORE_BACKEND_REDIS,
                              .redis_url = "unix:/nonexistent/mcpgate-redis.sock",
                              .reconnect_min_ms = 20,
                              .reconnect_max_ms = 10}; /* max < min: clamped to min */
    struct ts_res r = {0};
    char *err = NULL;
    (void)state;

    struct store *s = store_new(base, &o, &err);
    assert_non_null(s);
    assert_false(store_is_ready(s));
    assert_non_null(strstr(store_last_error(s), "No such file"));
    assert_int_equal(store_get(s, "k", ts_res_cb, &r), 0);
    assert_false(r.called); /* even an immediate failure waits for the loop */
    assert_int_equal(ts_res_wait(base, &r, WAIT_MS), STORE_UNAVAILABLE);
    assert_non_null(strstr(r.error, "No such file"));
    ts_sleep_loop(base, 100); /* a few retries, each failing the same way */
    assert_false(store_is_ready(s));
    store_free(s);
    event_base_free(base);
    ts_res_clear(&r);
}

/* Reads what the logger wrote into a pipe. */
static char *drain_pipe(int fd)
{
    char *buf = xcalloc(1, 8192);
    ssize_t n = read(fd, buf, 8191);
    if (n < 0)
        buf[0] = '\0';
    return buf;
}

static void test_redis_warns_about_sigpipe(void **state)
{
    struct event_base *base = event_base_new();
    struct store_options o = {.backend = STORE_BACKEND_REDIS, .redis_url = "redis://[::1]:1"};
    int fds[2];
    (void)state;

    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    gw_log_set_fd(fds[1]);
    gw_log_set_level(GW_LOG_WARN);
    signal(SIGPIPE, SIG_DFL);
    struct store *s = store_new(base, &o, NULL);
    signal(SIGPIPE, SIG_IGN);
    ts_sleep_loop(base, 50); /* the connect fails and is logged with the address */
    store_free(s);
    s = store_new(base, &o, NULL); /* ignored now: no warning */
    store_free(s);
    gw_log_set_fd(2);
    gw_log_set_level(getenv("TEST_STORE_LOG") != NULL ? GW_LOG_DEBUG : GW_LOG_ERROR);
    char *out = drain_pipe(fds[0]);
    const char *first = strstr(out, "SIGPIPE is not ignored");
    assert_non_null(first);
    assert_null(strstr(first + 1, "SIGPIPE is not ignored"));
    assert_non_null(strstr(out, "[::1]:1/0")); /* the IPv6 address, bracketed in logs */
    free(out);
    close(fds[0]);
    close(fds[1]);
    event_base_free(base);
}

static void test_store_new_errors(void **state)
{
    struct event_base *base = event_base_new();
    struct store_options o = {.backend = STORE_BACKEND_REDIS,
                              .redis_url = "redis://cache.example.com:6379"};
    char *err = NULL;
    (void)state;

    o.redis_url = "redis://cache example.com:6379";
    assert_null(store_new(base, &o, &err));
    assert_non_null(strstr(err, "bad host"));
    free(err);
    o.redis_url = NULL;
    assert_null(store_new(base, &o, &err));
    assert_non_null(err);
    free(err);
    /* Failures after the backend has allocated its settings: LeakSanitizer
     * checks that each one gives back everything. */
    o.redis_url = "rediss://cache.example.com:6379";
    o.tls_ca_file = "/nonexistent/ca.pem";
    assert_null(store_new(base, &o, &err));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    free(err);
    o.tls_ca_file = NULL;
    const char *sentinels[] = {"127.0.0.1:26379", "sentinel.example.com"};
    o.sentinels = sentinels;
    o.n_sentinels = 2;
    assert_null(store_new(base, &o, &err));
    assert_non_null(strstr(err, "store.redis.sentinels: \"sentinel.example.com\": want host:port"));
    free(err);
    o.sentinels = NULL;
    o.n_sentinels = 0;
    o.backend = (enum store_backend)42;
    assert_null(store_new(base, &o, &err));
    assert_non_null(strstr(err, "unknown backend"));
    free(err);
    assert_null(store_new(NULL, &o, NULL)); /* err_out may be NULL */
    store_free(NULL);
    assert_string_equal(store_status_name(STORE_NOT_FOUND), "not_found");
    assert_string_equal(store_status_name((enum store_status)99), "unknown");
    event_base_free(base);
}

/* --- main -------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (!ts_redis_available()) {
        /* the memory cases still run; every redis case fails in fx_get */
        fprintf(stderr, "test_store: %s not found: the redis cases fail\n", TS_REDIS_SERVER);
        return 0;
    }
    if (ts_redis_start(&main_redis, NULL) != 0) {
        fprintf(stderr, "test_store: %s did not start\n", TS_REDIS_SERVER);
        return -1; /* present but broken is a failure, not a skip */
    }
    have_redis = true;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ts_redis_destroy(&main_redis);
    return 0;
}

#define BOTH(fn)                                                                                   \
    {"memory/" #fn, fn, setup_memory, teardown, NULL},                                             \
    {                                                                                              \
        "redis/" #fn, fn, setup_redis, teardown, NULL                                              \
    }
#define REDIS(fn)                                                                                  \
    {                                                                                              \
        "redis/" #fn, fn, setup_redis, teardown, NULL                                              \
    }
#define PLAIN(fn)                                                                                  \
    {                                                                                              \
#fn, fn, NULL, NULL, NULL                                                                  \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_put_get),
        BOTH(test_binary_value),
        BOTH(test_get_missing),
        BOTH(test_put_nx),
        BOTH(test_take_once),
        BOTH(test_take_concurrent),
        BOTH(test_take_mark),
        BOTH(test_del),
        BOTH(test_ttl_expiry),
        BOTH(test_expire_renews),
        BOTH(test_incr),
        BOTH(test_sets),
        BOTH(test_publish_subscribe),
        BOTH(test_never_synchronous),
        BOTH(test_prefix),
        BOTH(test_bad_arguments),
        BOTH(test_fire_and_forget),
        BOTH(test_free_with_pending),
        REDIS(test_redis_password),
        REDIS(test_redis_db_select),
        REDIS(test_redis_unix_and_localhost),
        REDIS(test_redis_host_name),
        REDIS(test_redis_take_without_getdel),
        REDIS(test_redis_unreachable),
        {"memory/test_memory_grow_and_sweep", test_memory_grow_and_sweep, setup_memory, teardown,
         NULL},
        PLAIN(test_redis_unix_missing),
        PLAIN(test_redis_warns_about_sigpipe),
        PLAIN(test_url_parse),
        PLAIN(test_store_new_errors),
    };
    signal(SIGPIPE, SIG_IGN); /* as gateway/app.c does: hiredis writes with write(2) */
    /* Connection transitions are expected noise here; TEST_STORE_LOG=1 shows them. */
    gw_log_set_level(getenv("TEST_STORE_LOG") != NULL ? GW_LOG_DEBUG : GW_LOG_ERROR);
    return cmocka_run_group_tests_name("store", tests, group_setup, group_teardown);
}
