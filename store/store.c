/*
 * store: the public entry points of store.h and what both backends share.
 *
 * Every operation passes through here: arguments are checked, the prefix is
 * applied, the operation is counted, and then the backend (a vtable picked in
 * store_new) executes it. This file owns the key prefix, the list of local
 * subscriptions, the statistics, and the deferred-completion queue: results
 * that are known before the loop runs again (all of the memory backend's,
 * and Redis' "not connected" failures) wait in that queue and are delivered
 * by one event, so no callback ever runs inside the call that asked for it.
 */
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/panic.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/log.h"
#include "common/xevent.h"
#include "store/store_int.h"

struct store_sub {
    struct store_sub *next; /* owned */
    char *channel;          /* owned: prefixed */
    store_message_fn fn;    /* borrowed */
    void *arg;              /* borrowed */
};

struct store {
    struct event_base *base;             /* borrowed: the caller's loop */
    const struct store_backend_ops *ops; /* borrowed: static vtable */
    void *impl;                          /* owned: freed through ops->free */
    char *prefix;                        /* owned */
    size_t prefix_len;
    struct store_stats stats; /* ops, errors, timeouts, reconnects; the rest from the backend */
    struct store_sub *subs;   /* owned list */
    struct store_deferred *q_head; /* owned: deferred completions, FIFO */
    struct store_deferred *q_tail; /* borrowed: last item of q_head */
    struct event *drain_ev;        /* owned: delivers the queue */
    int cb_depth;                  /* > 0 while a user callback runs (store_free must not) */
    bool closing;                  /* store_free has begun */
};

static const char *const status_names[] = {"ok", "not_found", "exists", "unavailable", "error"};

const char *store_status_name(enum store_status status)
{
    if ((unsigned)status >= sizeof(status_names) / sizeof(status_names[0]))
        return "unknown";
    return status_names[status];
}

/* --- deferred completions ------------------------------------------------ */

struct store_deferred *store_deferred_new(store_cb_fn cb, void *arg, enum store_status status,
                                          const char *error)
{
    struct store_deferred *d = xcalloc(1, sizeof(*d));
    d->cb = cb;
    d->arg = arg;
    d->status = status;
    d->error = error != NULL ? xstrdup(error) : NULL;
    return d;
}

static void deferred_free(struct store_deferred *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n_members; i++)
        free(d->members[i]);
    free(d->members);
    free(d->member_lens);
    free(d->value);
    free(d->error);
    free(d->channel);
    free(d);
}

void store_defer(struct store *s, struct store_deferred *d)
{
    d->next = NULL;
    if (s->q_tail != NULL)
        s->q_tail->next = d;
    else
        s->q_head = d;
    s->q_tail = d;
    /* Activating an already active event is a no-op, so one drain serves many items. */
    event_active(s->drain_ev, EV_TIMEOUT, 0);
}

void store_defer_status(struct store *s, store_cb_fn cb, void *arg, enum store_status status,
                        const char *error)
{
    store_defer(s, store_deferred_new(cb, arg, status, error));
}

static void deliver_deferred(struct store *s, struct store_deferred *d)
{
    if (d->channel != NULL) {
        store_deliver_message(s, d->channel, d->value, d->value_len);
        return;
    }
    struct store_result res = {
        .status = d->status,
        .value = d->value,
        .value_len = d->value_len,
        .integer = d->integer,
        .members = (const char *const *)d->members,
        .member_lens = d->member_lens,
        .n_members = d->n_members,
        .error = d->error,
    };
    store_complete(s, d->cb, d->arg, &res);
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct store *s = arg;
    (void)fd;
    (void)what;
    /*
     * Take the whole queue first: items that callbacks defer while we deliver
     * go to the next activation, so a callback that re-issues an operation
     * forever cannot starve the rest of the loop.
     */
    struct store_deferred *d = s->q_head;
    s->q_head = s->q_tail = NULL;
    while (d != NULL) {
        struct store_deferred *next = d->next;
        deliver_deferred(s, d);
        deferred_free(d);
        d = next;
    }
}

/* --- shared helpers ------------------------------------------------------ */

void store_complete(struct store *s, store_cb_fn cb, void *arg, const struct store_result *res)
{
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR)
        s->stats.errors++;
    if (cb == NULL)
        return;
    s->cb_depth++;
    cb(res, arg);
    s->cb_depth--;
}

void store_deliver_message(struct store *s, const char *channel, const char *msg, size_t len)
{
    if (strncmp(channel, s->prefix, s->prefix_len) != 0)
        return; /* not ours: another prefix sharing the server */
    /*
     * A subscriber callback may subscribe again (appending to the list), which
     * is safe: we only follow next pointers and the list never shrinks before
     * store_free.
     */
    for (struct store_sub *sub = s->subs; sub != NULL; sub = sub->next) {
        if (strcmp(sub->channel, channel) != 0)
            continue;
        s->cb_depth++;
        sub->fn(channel + s->prefix_len, msg, len, sub->arg);
        s->cb_depth--;
    }
}

size_t store_count_subscribers(const struct store *s, const char *channel)
{
    size_t n = 0;
    for (const struct store_sub *sub = s->subs; sub != NULL; sub = sub->next)
        n += strcmp(sub->channel, channel) == 0;
    return n;
}

void store_count_timeout(struct store *s)
{
    s->stats.timeouts++;
}

void store_count_reconnect(struct store *s)
{
    s->stats.reconnects++;
}

bool store_is_closing(const struct store *s)
{
    return s->closing;
}

void *store_backend_impl(const struct store *s)
{
    return s->impl;
}

/* --- lifecycle ----------------------------------------------------------- */

struct store *store_new(struct event_base *base, const struct store_options *opts, char **err_out)
{
    struct store *s = NULL;
    char *err = NULL;

    if (base == NULL || opts == NULL) {
        err = xstrdup("store: no event loop or no options");
        goto out;
    }
    s = xcalloc(1, sizeof(*s));
    s->base = base;
    s->prefix = xstrdup(opts->prefix != NULL ? opts->prefix : "");
    s->prefix_len = strlen(s->prefix);
    s->drain_ev = xevtimer_new(base, on_drain, s);
    switch (opts->backend) {
    case STORE_BACKEND_REDIS:
        s->ops = &store_redis_ops;
        s->impl = store_redis_new(s, base, opts, &err);
        break;
    case STORE_BACKEND_MEMORY:
        s->ops = &store_memory_ops;
        s->impl = store_memory_new(s, base);
        break;
    default: err = xasprintf("store: unknown backend %d", (int)opts->backend); break;
    }

out:
    if (err != NULL) {
        if (s != NULL) {
            if (s->drain_ev != NULL)
                event_free(s->drain_ev);
            free(s->prefix);
            free(s);
            s = NULL;
        }
        if (err_out != NULL)
            *err_out = err;
        else
            free(err);
    } else if (err_out != NULL) {
        *err_out = NULL;
    }
    return s;
}

void store_free(struct store *s)
{
    if (s == NULL)
        return;
    if (s->cb_depth > 0) {
        /* A contract violation, not an input error: see store.h. */
        GW_PANIC("store_free called from inside a store callback");
    }
    s->closing = true;

    /* The backend fails its in-flight operations first ("store shutting down")... */
    s->ops->free(s->impl);
    s->impl = NULL;

    /*
     * ...then whatever waits in the queue. Results the backend already had
     * (memory) are reported as shutting down too: callers get one rule, and
     * the data they describe is going away with the store anyway. Messages
     * are dropped. Callbacks may defer more (their new operations are refused
     * with -ESHUTDOWN, but a backend could still complete something), so loop.
     */
    while (s->q_head != NULL) {
        struct store_deferred *d = s->q_head;
        s->q_head = d->next;
        if (s->q_head == NULL)
            s->q_tail = NULL;
        if (d->channel == NULL) {
            struct store_result res = {.status = STORE_UNAVAILABLE, .error = "store shutting down"};
            store_complete(s, d->cb, d->arg, &res);
        }
        deferred_free(d);
    }
    event_free(s->drain_ev);

    struct store_sub *sub = s->subs;
    while (sub != NULL) {
        struct store_sub *next = sub->next;
        free(sub->channel);
        free(sub);
        sub = next;
    }
    free(s->prefix);
    free(s);
}

/* --- operations ---------------------------------------------------------- */

/* An operation in flight, timed for store_stats.latency: the backend calls
 * on_timed_done exactly once (its contract), which frees it. */
struct timed_op {
    struct store *s; /* borrowed */
    store_cb_fn cb;  /* the caller's; may be NULL */
    void *arg;       /* borrowed */
    uint64_t start_us;
};

static void on_timed_done(const struct store_result *res, void *arg)
{
    struct timed_op *t = arg;
    histogram_observe(&t->s->stats.latency, time_mono_us() - t->start_us);
    if (t->cb)
        t->cb(res, t->arg);
    free(t);
}

/* Checks common arguments, prefixes the key, counts, times and submits. */
static int submit(struct store *s, struct store_op *op, const char *key)
{
    char *full = NULL;
    int rc = 0;

    if (s == NULL) {
        rc = -EINVAL;
        goto out;
    }
    if (s->closing) {
        rc = -ESHUTDOWN;
        goto out;
    }
    if (op->kind != STORE_OP_PING && (key == NULL || key[0] == '\0')) {
        rc = -EINVAL;
        goto out;
    }
    if (op->val == NULL && op->val_len > 0) {
        rc = -EINVAL;
        goto out;
    }
    if (op->val_len > STORE_MAX_VALUE_BYTES) {
        rc = -E2BIG;
        goto out;
    }
    if (key != NULL) {
        full = xasprintf("%s%s", s->prefix, key);
        op->key = full;
    }
    s->stats.ops++;
    struct timed_op *t = xmalloc(sizeof(*t));
    *t = (struct timed_op){.s = s, .cb = op->cb, .arg = op->arg, .start_us = time_mono_us()};
    op->cb = on_timed_done;
    op->arg = t;
    s->ops->submit(s->impl, op);

out:
    free(full);
    return rc;
}

int store_put(struct store *s, const char *key, const void *val, size_t len, uint64_t ttl_ms,
              store_cb_fn cb, void *arg)
{
    struct store_op op = {
        .kind = STORE_OP_PUT, .val = val, .val_len = len, .ttl_ms = ttl_ms, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_put_nx(struct store *s, const char *key, const void *val, size_t len, uint64_t ttl_ms,
                 store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_PUT_NX,
                          .val = val,
                          .val_len = len,
                          .ttl_ms = ttl_ms,
                          .cb = cb,
                          .arg = arg};
    return submit(s, &op, key);
}

int store_get(struct store *s, const char *key, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_GET, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_take(struct store *s, const char *key, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_TAKE, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_take_mark(struct store *s, const char *key, const char *mark, uint64_t mark_ttl_ms,
                    store_cb_fn cb, void *arg)
{
    if (s == NULL || mark == NULL || mark[0] == '\0' || mark_ttl_ms == 0)
        return -EINVAL;
    char *full_mark = xasprintf("%s%s", s->prefix, mark);
    struct store_op op = {.kind = STORE_OP_TAKE_MARK,
                          .val = full_mark,
                          .val_len = strlen(full_mark),
                          .ttl_ms = mark_ttl_ms,
                          .cb = cb,
                          .arg = arg};
    int rc = submit(s, &op, key);
    free(full_mark);
    return rc;
}

int store_del(struct store *s, const char *key, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_DEL, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_expire(struct store *s, const char *key, uint64_t ttl_ms, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_EXPIRE, .ttl_ms = ttl_ms, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_incr(struct store *s, const char *key, uint64_t ttl_ms, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_INCR, .ttl_ms = ttl_ms, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_set_add(struct store *s, const char *key, const char *member, uint64_t ttl_ms,
                  store_cb_fn cb, void *arg)
{
    if (member == NULL)
        return -EINVAL;
    struct store_op op = {.kind = STORE_OP_SET_ADD,
                          .val = member,
                          .val_len = strlen(member),
                          .ttl_ms = ttl_ms,
                          .cb = cb,
                          .arg = arg};
    return submit(s, &op, key);
}

int store_set_remove(struct store *s, const char *key, const char *member, store_cb_fn cb,
                     void *arg)
{
    if (member == NULL)
        return -EINVAL;
    struct store_op op = {.kind = STORE_OP_SET_REMOVE,
                          .val = member,
                          .val_len = strlen(member),
                          .cb = cb,
                          .arg = arg};
    return submit(s, &op, key);
}

int store_set_members(struct store *s, const char *key, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_SET_MEMBERS, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_set_card(struct store *s, const char *key, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_SET_CARD, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_ttl(struct store *s, const char *key, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_TTL, .cb = cb, .arg = arg};
    return submit(s, &op, key);
}

int store_publish(struct store *s, const char *channel, const void *msg, size_t len, store_cb_fn cb,
                  void *arg)
{
    struct store_op op = {
        .kind = STORE_OP_PUBLISH, .val = msg, .val_len = len, .cb = cb, .arg = arg};
    return submit(s, &op, channel);
}

int store_ping(struct store *s, store_cb_fn cb, void *arg)
{
    struct store_op op = {.kind = STORE_OP_PING, .cb = cb, .arg = arg};
    return submit(s, &op, NULL);
}

int store_subscribe(struct store *s, const char *channel, store_message_fn fn, void *arg)
{
    char *full = NULL;
    bool first = true;
    int rc = 0;

    if (s == NULL || channel == NULL || channel[0] == '\0' || fn == NULL) {
        rc = -EINVAL;
        goto out;
    }
    if (s->closing) {
        rc = -ESHUTDOWN;
        goto out;
    }
    full = xasprintf("%s%s", s->prefix, channel);
    struct store_sub **tail = &s->subs;
    for (struct store_sub *sub = s->subs; sub != NULL; sub = sub->next) {
        if (strcmp(sub->channel, full) == 0) {
            if (sub->fn == fn && sub->arg == arg) {
                rc = -EEXIST;
                goto out;
            }
            first = false;
        }
        tail = &sub->next;
    }
    struct store_sub *sub = xcalloc(1, sizeof(*sub));
    sub->channel = full;
    sub->fn = fn;
    sub->arg = arg;
    *tail = sub; /* appended: delivery order is subscription order */
    full = NULL;
    if (first)
        s->ops->subscribe(s->impl, sub->channel);

out:
    free(full);
    return rc;
}

/* --- state --------------------------------------------------------------- */

bool store_is_ready(const struct store *s)
{
    return s != NULL && !s->closing && s->ops->is_ready(s->impl);
}

const char *store_last_error(const struct store *s)
{
    if (s == NULL || s->closing)
        return "store shutting down";
    return s->ops->last_error(s->impl);
}

void store_get_stats(const struct store *s, struct store_stats *out)
{
    *out = s->stats;
    out->connected = false;
    out->subscribed = false;
    if (!s->closing)
        s->ops->get_stats(s->impl, out);
}

/* ---- best-effort writes ------------------------------------------------ */

static void on_detached_done(const struct store_result *res, void *arg)
{
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR)
        gw_log(GW_LOG_WARN, "store", NULL, "best-effort write failed", "write", (const char *)arg,
               "status", store_status_name(res->status), "error", res->error, NULL);
}

static void detached_queued(int rc, const char *what)
{
    if (rc < 0)
        gw_log(GW_LOG_WARN, "store", NULL, "best-effort write refused", "write", what, "error",
               strerror(-rc), NULL);
}

/* WHAT is a static string: it is the callback's argument until the write ends. */
#define DETACHED(what) on_detached_done, (void *)(what)

void store_put_detached(struct store *s, const char *key, const void *val, size_t len,
                        uint64_t ttl_ms, const char *what)
{
    detached_queued(store_put(s, key, val, len, ttl_ms, DETACHED(what)), what);
}

void store_del_detached(struct store *s, const char *key, const char *what)
{
    detached_queued(store_del(s, key, DETACHED(what)), what);
}

void store_expire_detached(struct store *s, const char *key, uint64_t ttl_ms, const char *what)
{
    detached_queued(store_expire(s, key, ttl_ms, DETACHED(what)), what);
}

void store_set_add_detached(struct store *s, const char *key, const char *member, uint64_t ttl_ms,
                            const char *what)
{
    detached_queued(store_set_add(s, key, member, ttl_ms, DETACHED(what)), what);
}

void store_set_remove_detached(struct store *s, const char *key, const char *member,
                               const char *what)
{
    detached_queued(store_set_remove(s, key, member, DETACHED(what)), what);
}

void store_publish_detached(struct store *s, const char *channel, const void *msg, size_t len,
                            const char *what)
{
    detached_queued(store_publish(s, channel, msg, len, DETACHED(what)), what);
}

void store_shutdown_finish(struct event_base *base)
{
    store_redis_shutdown_finish(base);
}
