/*
 * test_store_fault: the Redis backend when things go wrong (DESIGN §8).
 *
 * Against a real redis-server: kill -9 with operations in flight, restart on
 * the same port (reconnect, re-subscribe), a frozen server (SIGSTOP: TCP up,
 * no answers), store_free with operations stuck. Against fakes on the same
 * loop: a listener that never accepts or answers, and a RESP server that
 * answers PING and then replies late or never, to pin down the per-command
 * deadline and the "late reply is ignored" path (hiredis 0.14 has no
 * timeouts; store/redis.c adds them).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/xalloc.h"
#include "common/log.h"
#include "store/store.h"
#include "tests/unit/test_store_util.h"

#define TIMEOUT_MS 500 /* the store's deadline per command in these tests */
#define SLACK_MS 250   /* scheduling slack under ASan on a busy machine */

struct fx {
    struct event_base *base; /* owned */
    struct ts_redis redis;   /* owned (temp dir, process) */
};

static int setup(void **state)
{
    struct fx *fx = xcalloc(1, sizeof(*fx));
    fx->base = event_base_new();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    ts_redis_signal(&fx->redis, SIGCONT);
    ts_redis_destroy(&fx->redis);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

static struct fx *fx_redis(void **state)
{
    struct fx *fx = *state;
    if (!ts_redis_available())
        fail_msg("%s not found: the real-server cases need it (scripts/deps.sh installs it)",
                 TS_REDIS_SERVER);
    assert_int_equal(ts_redis_start(&fx->redis, NULL), 0);
    return fx;
}

static struct store *open_store(struct fx *fx, int port)
{
    char *url = xasprintf("redis://127.0.0.1:%d", port);
    struct store_options o = {.backend = STORE_BACKEND_REDIS,
                              .redis_url = url,
                              .prefix = "fault:",
                              .timeout_ms = TIMEOUT_MS,
                              .reconnect_min_ms = 50,
                              .reconnect_max_ms = 400};
    char *err = NULL;
    struct store *s = store_new(fx->base, &o, &err);
    if (s == NULL)
        fail_msg("store_new: %s", err);
    free(url);
    return s;
}

static struct store *open_ready_store(struct fx *fx)
{
    struct store *s = open_store(fx, fx->redis.port);
    if (!ts_wait_ready(fx->base, s, 3000))
        fail_msg("not ready: %s", store_last_error(s));
    return s;
}

/* Asserts r failed with UNAVAILABLE no later than the deadline (plus slack) after t0. */
static void assert_unavailable_in_time(const struct ts_res *r, uint64_t t0)
{
    assert_true(r->called);
    assert_int_equal(r->calls, 1);
    if (r->status != STORE_UNAVAILABLE)
        fail_msg("status %s, want unavailable", store_status_name(r->status));
    assert_non_null(r->error);
    if (r->at_ms - t0 > TIMEOUT_MS + SLACK_MS)
        fail_msg("failed after %llu ms", (unsigned long long)(r->at_ms - t0));
}

struct msg_rec {
    bool got;
    char msg[32];
};

static void on_msg(const char *channel, const char *msg, size_t len, void *arg)
{
    struct msg_rec *m = arg;
    (void)channel;
    m->got = true;
    snprintf(m->msg, sizeof(m->msg), "%.*s", (int)len, msg);
}

static bool all3(void *arg)
{
    struct ts_res *r = arg;
    return r[0].called && r[1].called && r[2].called;
}

/* --- a real server --------------------------------------------------------- */

static void test_kill_and_restart(void **state)
{
    struct fx *fx = fx_redis(state);
    struct store *s = open_ready_store(fx);
    struct ts_res r[3] = {{0}}, one = {0};
    struct msg_rec m = {0};
    struct store_stats st;

    assert_int_equal(store_subscribe(s, "revoked", on_msg, &m), 0);
    assert_true(ts_wait_subscribed(fx->base, s, 3000));

    /* Freeze the server so the commands are sent and pending, then kill -9 it. */
    ts_redis_signal(&fx->redis, SIGSTOP);
    uint64_t t0 = ts_now_ms();
    assert_int_equal(store_put(s, "k", "v", 1, 0, ts_res_cb, &r[0]), 0);
    assert_int_equal(store_get(s, "k", ts_res_cb, &r[1]), 0);
    assert_int_equal(store_incr(s, "n", 1000, ts_res_cb, &r[2]), 0);
    ts_sleep_loop(fx->base, 100);
    assert_false(r[0].called);
    ts_redis_kill(&fx->redis);
    assert_true(ts_run_until(fx->base, all3, r, 2000));
    for (int i = 0; i < 3; i++) {
        assert_unavailable_in_time(&r[i], t0);
        assert_non_null(strstr(r[i].error, "lost"));
    }
    assert_true(ts_wait_not_ready(fx->base, s, 2000));
    store_get_stats(s, &st);
    assert_false(st.connected);
    assert_false(st.subscribed);

    /* While it is down, new operations fail at once (not at their deadline). */
    t0 = ts_now_ms();
    assert_int_equal(store_get(s, "k", ts_res_cb, &one), 0);
    assert_int_not_equal(ts_res_wait(fx->base, &one, 2000), -1);
    assert_int_equal(one.status, STORE_UNAVAILABLE);
    assert_true(one.at_ms - t0 < 100);

    /* Back on the same port: ready again, data path and subscription work. */
    assert_int_equal(ts_redis_start(&fx->redis, NULL), 0);
    if (!ts_wait_ready(fx->base, s, 5000))
        fail_msg("not ready after restart: %s", store_last_error(s));
    ts_res_clear(&one);
    assert_int_equal(store_put(s, "k", "again", 5, 0, ts_res_cb, &one), 0);
    assert_int_equal(ts_res_wait(fx->base, &one, 2000), STORE_OK);
    ts_res_clear(&one);
    assert_int_equal(store_get(s, "k", ts_res_cb, &one), 0);
    assert_int_equal(ts_res_wait(fx->base, &one, 2000), STORE_OK);
    assert_string_equal(one.value, "again");
    store_get_stats(s, &st);
    assert_true(st.reconnects >= 1);
    assert_true(st.errors >= 4);

    assert_true(ts_wait_subscribed(fx->base, s, 5000));
    ts_res_clear(&one);
    assert_int_equal(store_publish(s, "revoked", "tok-1", 5, ts_res_cb, &one), 0);
    assert_int_equal(ts_res_wait(fx->base, &one, 2000), STORE_OK);
    assert_int_equal(one.integer, 1);
    assert_true(ts_wait_flag(fx->base, &m.got, 2000));
    assert_string_equal(m.msg, "tok-1");

    store_free(s);
    for (int i = 0; i < 3; i++)
        ts_res_clear(&r[i]);
    ts_res_clear(&one);
}

/* A frozen server keeps TCP up and answers nothing: only the deadline helps. */
static void test_frozen_server_times_out(void **state)
{
    struct fx *fx = fx_redis(state);
    struct store *s = open_ready_store(fx);
    struct ts_res r = {0}, r2[3] = {{0}};
    struct store_stats st;

    ts_redis_signal(&fx->redis, SIGSTOP);
    uint64_t t0 = ts_now_ms();
    assert_int_equal(store_get(s, "k", ts_res_cb, &r), 0);
    assert_int_not_equal(ts_res_wait(fx->base, &r, 3000), -1);
    assert_unavailable_in_time(&r, t0);
    assert_string_equal(r.error, "redis timeout after 500 ms");
    assert_true(r.at_ms - t0 >= TIMEOUT_MS - 20); /* at the deadline, not before */
    assert_false(store_is_ready(s));
    assert_non_null(store_last_error(s));
    store_get_stats(s, &st);
    assert_true(st.timeouts >= 1);

    /* Later operations (dropped connection, reconnect attempts) never outlive their deadline. */
    t0 = ts_now_ms();
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_put(s, "k", "v", 1, 0, ts_res_cb, &r2[i]), 0);
    assert_true(ts_run_until(fx->base, all3, r2, 3000));
    for (int i = 0; i < 3; i++)
        assert_unavailable_in_time(&r2[i], t0);

    ts_redis_signal(&fx->redis, SIGCONT);
    if (!ts_wait_ready(fx->base, s, 5000))
        fail_msg("not ready after SIGCONT: %s", store_last_error(s));
    ts_res_clear(&r);
    assert_int_equal(store_put(s, "k", "v", 1, 0, ts_res_cb, &r), 0);
    assert_int_equal(ts_res_wait(fx->base, &r, 2000), STORE_OK);

    store_free(s);
    ts_res_clear(&r);
    for (int i = 0; i < 3; i++)
        ts_res_clear(&r2[i]);
}

/* No operation at all: the health ping notices a frozen server within 2 s. */
static void test_idle_frozen_server_detected(void **state)
{
    struct fx *fx = fx_redis(state);
    struct store *s = open_ready_store(fx);
    struct store_stats st;

    ts_redis_signal(&fx->redis, SIGSTOP);
    uint64_t t0 = ts_now_ms();
    assert_true(ts_wait_not_ready(fx->base, s, 2000));
    assert_true(ts_now_ms() - t0 <= 2000);
    assert_non_null(store_last_error(s));
    store_get_stats(s, &st);
    assert_true(st.timeouts >= 1);
    assert_int_equal(st.errors, 0); /* the health ping is not a caller's operation */

    ts_redis_signal(&fx->redis, SIGCONT);
    assert_true(ts_wait_ready(fx->base, s, 5000));
    store_free(s);
}

static void test_free_while_stuck(void **state)
{
    struct fx *fx = fx_redis(state);
    struct store *s = open_ready_store(fx);
    struct ts_res r[3] = {{0}};

    ts_redis_signal(&fx->redis, SIGSTOP);
    assert_int_equal(store_put(s, "k", "v", 1, 0, ts_res_cb, &r[0]), 0);
    assert_int_equal(store_get(s, "k", ts_res_cb, &r[1]), 0);
    assert_int_equal(store_ping(s, ts_res_cb, &r[2]), 0);
    ts_sleep_loop(fx->base, 50);
    store_free(s);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, STORE_UNAVAILABLE);
        assert_string_equal(r[i].error, "store shutting down");
        ts_res_clear(&r[i]);
    }
    ts_sleep_loop(fx->base, TIMEOUT_MS + 100); /* no deadline fires into freed records */
}

/* --- fakes ------------------------------------------------------------------ */

static int listen_loopback(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* The kernel completes the TCP handshake; nobody ever accepts or answers. */
static void test_listener_never_answers(void **state)
{
    struct fx *fx = *state;
    int port;
    int lfd = listen_loopback(&port);
    struct store *s = open_store(fx, port);
    struct ts_res r = {0};

    uint64_t t0 = ts_now_ms();
    assert_int_equal(store_get(s, "k", ts_res_cb, &r), 0);
    assert_int_not_equal(ts_res_wait(fx->base, &r, 3000), -1);
    assert_unavailable_in_time(&r, t0);
    assert_false(store_is_ready(s));
    assert_non_null(strstr(store_last_error(s), "timed out"));

    for (int i = 0; i < 3; i++) { /* across reconnect attempts too */
        ts_res_clear(&r);
        t0 = ts_now_ms();
        assert_int_equal(store_put(s, "k", "v", 1, 0, ts_res_cb, &r), 0);
        assert_int_not_equal(ts_res_wait(fx->base, &r, 3000), -1);
        assert_unavailable_in_time(&r, t0);
        ts_sleep_loop(fx->base, 100);
    }
    assert_false(store_is_ready(s));
    store_free(s);
    close(lfd);
    ts_res_clear(&r);
}

/*
 * A RESP server on the test's loop: answers each command in order, PING with
 * +PONG, SET with +OK, GET with a nil, anything else with an error, each
 * after the delay in force when the command arrived (UINT64_MAX: never).
 */
struct fake_reply {
    struct fake_reply *next; /* owned */
    uint64_t due_ms;
    const char *text; /* static */
};

struct fake_client {
    struct fake_client *next; /* owned */
    struct fake *fake;        /* borrowed */
    int fd;                   /* owned */
    struct event *rev;        /* owned */
    struct event *timer;      /* owned: the next reply's due time */
    char buf[8192];
    size_t len;
    struct fake_reply *replies; /* owned, in order */
    uint64_t last_due_ms;
};

struct fake {
    struct event_base *base; /* borrowed */
    int lfd;                 /* owned */
    int port;
    struct event *accept_ev;     /* owned */
    struct fake_client *clients; /* owned */
    uint64_t delay_ms;           /* for commands arriving from now on */
    int commands;                /* commands seen */
    int accepted;
};

static void fake_client_close(struct fake_client *c)
{
    event_free(c->rev);
    event_free(c->timer);
    close(c->fd);
    c->fd = -1;
    while (c->replies != NULL) {
        struct fake_reply *next = c->replies->next;
        free(c->replies);
        c->replies = next;
    }
}

static void fake_arm(struct fake_client *c)
{
    if (c->replies == NULL || c->replies->due_ms == UINT64_MAX)
        return;
    uint64_t now = ts_now_ms();
    uint64_t wait = c->replies->due_ms > now ? c->replies->due_ms - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000),
                         .tv_usec = (suseconds_t)(wait % 1000) * 1000};
    event_add(c->timer, &tv);
}

static void fake_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct fake_client *c = arg;
    uint64_t now = ts_now_ms();
    (void)fd;
    (void)what;
    while (c->replies != NULL && c->replies->due_ms <= now) {
        struct fake_reply *r = c->replies;
        ssize_t n = write(c->fd, r->text, strlen(r->text));
        (void)n; /* a peer that left is fine */
        c->replies = r->next;
        free(r);
    }
    fake_arm(c);
}

static const char *fake_answer(const char *name)
{
    static const struct {
        const char *command, *reply;
    } answers[] = {
        {"PING", "+PONG\r\n"},
        {"SET", "+OK\r\n"},
        {"GET", "$-1\r\n"},
        {"DEL", "+WEIRD\r\n"},                                 /* the wrong reply type */
        {"EVAL", "-LOADING Redis is loading the dataset\r\n"}, /* a transient error */
        {"PTTL", "-ERR fake\r\n"},                             /* a permanent one */
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
        if (strcasecmp(name, answers[i].command) == 0)
            return answers[i].reply;
    return "-ERR unknown command\r\n";
}

/* Length of one complete RESP array command at p, 0 if incomplete; *name gets argv[0]. */
static size_t resp_command(const char *p, size_t len, char *name, size_t name_size)
{
    size_t i = 0;
    long n, l;
    char *end;
    if (len < 4 || p[0] != '*')
        return 0;
    n = strtol(p + 1, &end, 10);
    i = (size_t)(end - p) + 2;
    name[0] = '\0';
    for (long a = 0; a < n; a++) {
        if (i >= len || p[i] != '$')
            return 0;
        l = strtol(p + i + 1, &end, 10);
        i = (size_t)(end - p) + 2;
        if (i + (size_t)l + 2 > len)
            return 0;
        if (a == 0)
            snprintf(name, name_size, "%.*s", (int)l, p + i);
        i += (size_t)l + 2;
    }
    return i;
}

static void fake_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct fake_client *c = arg;
    struct fake *f = c->fake;
    char name[32];
    size_t used;
    (void)what;

    ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n <= 0) {
        fake_client_close(c);
        return;
    }
    c->len += (size_t)n;
    while ((used = resp_command(c->buf, c->len, name, sizeof(name))) > 0) {
        struct fake_reply *r = xcalloc(1, sizeof(*r));
        f->commands++;
        r->text = fake_answer(name);
        /* In order: never before the reply ahead of it. */
        uint64_t due = f->delay_ms == UINT64_MAX ? UINT64_MAX : ts_now_ms() + f->delay_ms;
        if (c->last_due_ms == UINT64_MAX || due < c->last_due_ms)
            due = c->last_due_ms;
        r->due_ms = c->last_due_ms = due;
        struct fake_reply **tail = &c->replies;
        while (*tail != NULL)
            tail = &(*tail)->next;
        *tail = r;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
    if (!evtimer_pending(c->timer, NULL))
        fake_arm(c);
}

static void fake_on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct fake *f = arg;
    (void)what;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct fake_client *c = xcalloc(1, sizeof(*c));
    c->fake = f;
    c->fd = fd;
    c->rev = event_new(f->base, fd, EV_READ | EV_PERSIST, fake_on_read, c);
    c->timer = evtimer_new(f->base, fake_on_timer, c);
    event_add(c->rev, NULL);
    c->next = f->clients;
    f->clients = c;
    f->accepted++;
}

/* Starts answering at once: the handshake PING of every connection gets +PONG. */
static void fake_start(struct fake *f, struct event_base *base)
{
    memset(f, 0, sizeof(*f));
    f->base = base;
    f->lfd = listen_loopback(&f->port);
    f->accept_ev = event_new(base, f->lfd, EV_READ | EV_PERSIST, fake_on_accept, f);
    event_add(f->accept_ev, NULL);
}

static void fake_stop(struct fake *f)
{
    while (f->clients != NULL) {
        struct fake_client *next = f->clients->next;
        if (f->clients->fd >= 0)
            fake_client_close(f->clients);
        free(f->clients);
        f->clients = next;
    }
    event_free(f->accept_ev);
    close(f->lfd);
}

/* Connected and authenticated, then silence: the command's own deadline answers. */
static void test_server_stops_answering(void **state)
{
    struct fx *fx = *state;
    struct fake f;
    struct ts_res r = {0};
    struct store_stats st;

    fake_start(&f, fx->base);
    struct store *s = open_store(fx, f.port);
    assert_true(ts_wait_ready(fx->base, s, 2000));
    f.delay_ms = UINT64_MAX;

    uint64_t t0 = ts_now_ms();
    assert_int_equal(store_put(s, "k", "v", 1, 0, ts_res_cb, &r), 0);
    assert_int_not_equal(ts_res_wait(fx->base, &r, 3000), -1);
    assert_unavailable_in_time(&r, t0);
    assert_string_equal(r.error, "redis timeout after 500 ms");
    assert_true(r.at_ms - t0 >= TIMEOUT_MS - 20);
    store_get_stats(s, &st);
    assert_true(st.timeouts >= 1);

    /* Nothing came back at all, so the connection is dropped and made again. */
    f.delay_ms = 0;
    if (!ts_wait_ready(fx->base, s, 3000))
        fail_msg("not ready again: %s", store_last_error(s));
    store_get_stats(s, &st);
    assert_true(st.reconnects >= 1);
    assert_true(f.accepted >= 2);
    ts_res_clear(&r);
    assert_int_equal(store_get(s, "k", ts_res_cb, &r), 0);
    assert_int_equal(ts_res_wait(fx->base, &r, 2000), STORE_NOT_FOUND); /* the fake's nil */

    store_free(s);
    fake_stop(&f);
    ts_res_clear(&r);
}

/*
 * A slow reply on a live connection: the caller gets UNAVAILABLE at the
 * deadline, the late reply is dropped (its record is freed then, not before),
 * and the connection stays because other replies kept coming.
 */
static void test_late_reply_is_ignored(void **state)
{
    struct fx *fx = *state;
    struct fake f;
    struct ts_res fast = {0}, slow = {0}, after = {0};
    struct store_stats st;

    fake_start(&f, fx->base);
    struct store *s = open_store(fx, f.port);
    assert_true(ts_wait_ready(fx->base, s, 2000));

    f.delay_ms = 100;
    assert_int_equal(store_get(s, "a", ts_res_cb, &fast), 0);
    ts_sleep_loop(fx->base, 30); /* "a" reaches the fake under the 100 ms delay */
    f.delay_ms = TIMEOUT_MS + 250;
    uint64_t t0 = ts_now_ms();
    assert_int_equal(store_get(s, "b", ts_res_cb, &slow), 0);
    assert_int_not_equal(ts_res_wait(fx->base, &slow, 3000), -1);
    assert_int_equal(fast.status, STORE_NOT_FOUND);
    assert_unavailable_in_time(&slow, t0);
    assert_string_equal(slow.error, "redis timeout after 500 ms");

    f.delay_ms = 0;
    ts_sleep_loop(fx->base, 400); /* the late reply arrives and must go nowhere */
    assert_int_equal(slow.calls, 1);
    assert_int_equal(fast.calls, 1);
    store_get_stats(s, &st);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(f.accepted, 1);
    assert_true(ts_wait_ready(fx->base, s, 2000));
    assert_int_equal(store_get(s, "c", ts_res_cb, &after), 0);
    assert_int_equal(ts_res_wait(fx->base, &after, 2000), STORE_NOT_FOUND);

    store_free(s);
    fake_stop(&f);
    ts_res_clear(&fast);
    ts_res_clear(&slow);
    ts_res_clear(&after);
}

/* Replies Redis would not send for a command map to errors, never to a crash. */
static void test_odd_replies(void **state)
{
    struct fx *fx = *state;
    struct fake f;
    struct ts_res r = {0};

    fake_start(&f, fx->base);
    struct store *s = open_store(fx, f.port);
    assert_true(ts_wait_ready(fx->base, s, 2000));

    assert_int_equal(store_del(s, "k", ts_res_cb, &r), 0);
    assert_int_equal(ts_res_wait(fx->base, &r, 2000), STORE_ERROR);
    assert_non_null(strstr(r.error, "unexpected reply"));
    ts_res_clear(&r);
    assert_int_equal(store_incr(s, "k", 0, ts_res_cb, &r), 0);
    assert_int_equal(ts_res_wait(fx->base, &r, 2000), STORE_UNAVAILABLE); /* LOADING: retry later */
    assert_non_null(strstr(r.error, "LOADING"));
    ts_res_clear(&r);
    assert_int_equal(store_ttl(s, "k", ts_res_cb, &r), 0);
    assert_int_equal(ts_res_wait(fx->base, &r, 2000), STORE_ERROR);
    ts_res_clear(&r);
    assert_int_equal(store_set_card(s, "k", ts_res_cb, &r), 0);
    assert_int_equal(ts_res_wait(fx->base, &r, 2000), STORE_ERROR);
    assert_true(store_is_ready(s)); /* errors are answers: the server is alive */

    store_free(s);
    fake_stop(&f);
    ts_res_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frozen_server_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_frozen_server_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_stuck, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_never_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_stops_answering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_reply_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_replies, setup, teardown),
    };
    if (!ts_redis_available())
        fprintf(stderr, "test_store_fault: %s not found: the real-server cases fail\n",
                TS_REDIS_SERVER);
    signal(SIGPIPE, SIG_IGN); /* as gateway/app.c does: hiredis writes with write(2) */
    gw_log_set_level(getenv("TEST_STORE_LOG") != NULL ? GW_LOG_DEBUG : GW_LOG_ERROR);
    return cmocka_run_group_tests_name("store_fault", tests, NULL, NULL);
}
