/*
 * memory: the in-process store backend, for tests and single-instance
 * development (data is lost on exit and not shared between instances).
 *
 * It owns one chained hash table of entries (strings and sets; a set's
 * members are a nested table of the same kind), a sweep timer, and nothing
 * else: subscriptions live in store.c. Every operation is applied at once, in
 * call order, exactly as Redis would apply a pipeline, and only its callback
 * waits for the loop (store_defer), so the two backends agree on ordering and
 * on "never called back synchronously".
 *
 * Expiry uses CLOCK_MONOTONIC (wall-clock jumps must not expire or revive
 * tokens): an expired entry is dropped when touched, and a sweep every second
 * frees entries nobody touches again, a bounded slice of buckets per callback.
 * The hash is seeded per process; this backend is not meant to face an
 * attacker choosing millions of keys.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/event.h>

#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "store/store_int.h"

#define MEM_INITIAL_BUCKETS 64
#define MEM_SWEEP_INTERVAL_MS 1000
#define MEM_SWEEP_BUCKETS 1024 /* per slice: bounds the time one callback takes */

static const char wrongtype_error[] =
    "WRONGTYPE Operation against a key holding the wrong kind of value";

enum mem_type {
    MEM_STRING = 0,
    MEM_SET,
};

struct mem_table;

struct mem_entry {
    struct mem_entry *next; /* owned: next in the bucket chain */
    char *key;              /* owned; NUL-terminated */
    size_t key_len;
    uint64_t hash;
    uint64_t expires_ms; /* monotonic deadline; 0 = never */
    enum mem_type type;
    char *val; /* owned: MEM_STRING value, NUL-terminated; NULL for set members */
    size_t val_len;
    struct mem_table *set; /* owned: MEM_SET members */
};

struct mem_table {
    struct mem_entry **buckets; /* owned array of owned chains */
    size_t n_buckets;           /* a power of two */
    size_t count;
};

struct mem_backend {
    struct store *s;        /* borrowed: the owning store */
    struct mem_table table; /* owned */
    struct event *sweep_ev; /* owned: periodic expiry sweep */
    size_t sweep_cursor;    /* next bucket the sweep looks at */
    uint64_t seed;          /* hash seed */
};

/* FNV-1a, seeded. */
static uint64_t hash_bytes(uint64_t seed, const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* --- the table ----------------------------------------------------------- */

static void table_init(struct mem_table *t)
{
    t->n_buckets = MEM_INITIAL_BUCKETS;
    t->buckets = xcalloc(t->n_buckets, sizeof(*t->buckets));
    t->count = 0;
}

static void table_clear(struct mem_table *t);

static void entry_free(struct mem_entry *e)
{
    if (e == NULL)
        return;
    if (e->set != NULL) {
        table_clear(e->set);
        free(e->set);
    }
    free(e->key);
    free(e->val);
    free(e);
}

static void table_clear(struct mem_table *t)
{
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct mem_entry *e = t->buckets[i];
        while (e != NULL) {
            struct mem_entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->n_buckets = 0;
    t->count = 0;
}

static void table_grow(struct mem_table *t)
{
    size_t n = t->n_buckets * 2;
    struct mem_entry **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct mem_entry *e = t->buckets[i];
        while (e != NULL) {
            struct mem_entry *next = e->next;
            size_t j = e->hash & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
}

/* Returns the slot pointing at the entry for key, or the empty slot ending its chain. */
static struct mem_entry **table_slot(struct mem_table *t, uint64_t h, const char *key,
                                     size_t key_len)
{
    struct mem_entry **slot = &t->buckets[h & (t->n_buckets - 1)];
    while (*slot != NULL) {
        struct mem_entry *e = *slot;
        if (e->hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
            break;
        slot = &e->next;
    }
    return slot;
}

static void table_unlink(struct mem_table *t, struct mem_entry **slot)
{
    struct mem_entry *e = *slot;
    *slot = e->next;
    t->count--;
    entry_free(e);
}

static struct mem_entry *table_insert(struct mem_table *t, uint64_t h, const char *key,
                                      size_t key_len)
{
    if (t->count >= t->n_buckets) /* load factor 1 */
        table_grow(t);
    struct mem_entry *e = xcalloc(1, sizeof(*e));
    e->key = xstrndup(key, key_len);
    e->key_len = key_len;
    e->hash = h;
    size_t i = h & (t->n_buckets - 1);
    e->next = t->buckets[i];
    t->buckets[i] = e;
    t->count++;
    return e;
}

/* --- keyspace helpers ---------------------------------------------------- */

/* Finds a live entry; an expired one is removed on the way (lazy expiry). */
static struct mem_entry *lookup(struct mem_backend *mb, const char *key,
                                struct mem_entry ***slot_out)
{
    size_t len = strlen(key);
    uint64_t h = hash_bytes(mb->seed, key, len);
    struct mem_entry **slot = table_slot(&mb->table, h, key, len);
    if (*slot != NULL && (*slot)->expires_ms != 0 && (*slot)->expires_ms <= time_mono_ms()) {
        table_unlink(&mb->table, slot);
        slot = table_slot(&mb->table, h, key, len);
    }
    if (slot_out != NULL)
        *slot_out = slot;
    return *slot;
}

static struct mem_entry *create(struct mem_backend *mb, const char *key, enum mem_type type)
{
    size_t len = strlen(key);
    struct mem_entry *e = table_insert(&mb->table, hash_bytes(mb->seed, key, len), key, len);
    e->type = type;
    if (type == MEM_SET) {
        e->set = xcalloc(1, sizeof(*e->set));
        table_init(e->set);
    }
    return e;
}

static uint64_t deadline(uint64_t ttl_ms)
{
    return ttl_ms == 0 ? 0 : time_mono_ms() + ttl_ms;
}

static void set_string(struct mem_entry *e, const void *val, size_t len)
{
    free(e->val);
    e->val = xmalloc(len + 1);
    if (len > 0)
        memcpy(e->val, val, len);
    e->val[len] = '\0';
    e->val_len = len;
}

static char *dup_bytes(const char *p, size_t len)
{
    char *d = xmalloc(len + 1);
    if (len > 0)
        memcpy(d, p, len);
    d[len] = '\0';
    return d;
}

/* --- operations ---------------------------------------------------------- */
/* Each fills d (status, value, integer, members) from the keyspace. */

static void op_put(struct mem_backend *mb, const struct store_op *op, struct store_deferred *d)
{
    struct mem_entry **slot;
    struct mem_entry *e = lookup(mb, op->key, &slot);
    if (e != NULL && op->kind == STORE_OP_PUT_NX) {
        d->status = STORE_EXISTS;
        return;
    }
    if (e != NULL && e->type != MEM_STRING) {
        /* SET replaces a key of any type. */
        table_unlink(&mb->table, slot);
        e = NULL;
    }
    if (e == NULL)
        e = create(mb, op->key, MEM_STRING);
    set_string(e, op->val, op->val_len);
    e->expires_ms = deadline(op->ttl_ms);
}

static void op_get(struct mem_backend *mb, const struct store_op *op, struct store_deferred *d)
{
    struct mem_entry **slot;
    struct mem_entry *e = lookup(mb, op->key, &slot);
    if (e == NULL) {
        d->status = STORE_NOT_FOUND;
        return;
    }
    if (e->type != MEM_STRING) {
        d->status = STORE_ERROR;
        d->error = xstrdup(wrongtype_error);
        return;
    }
    d->value = dup_bytes(e->val, e->val_len);
    d->value_len = e->val_len;
    if (op->kind == STORE_OP_TAKE || op->kind == STORE_OP_TAKE_MARK)
        table_unlink(&mb->table, slot);
    if (op->kind == STORE_OP_TAKE_MARK) {
        char *mark = dup_bytes(op->val, op->val_len);
        struct store_op put = {.kind = STORE_OP_PUT,
                               .key = mark,
                               .val = d->value,
                               .val_len = d->value_len,
                               .ttl_ms = op->ttl_ms};
        struct store_deferred scratch = {0};
        op_put(mb, &put, &scratch);
        free(mark);
    }
}

static void op_del(struct mem_backend *mb, const struct store_op *op, struct store_deferred *d)
{
    struct mem_entry **slot;
    if (lookup(mb, op->key, &slot) != NULL) {
        table_unlink(&mb->table, slot);
        d->integer = 1;
    }
}

static void op_expire(struct mem_backend *mb, const struct store_op *op, struct store_deferred *d)
{
    struct mem_entry *e = lookup(mb, op->key, NULL);
    if (e == NULL)
        d->status = STORE_NOT_FOUND;
    else
        e->expires_ms = deadline(op->ttl_ms);
}

static void op_ttl(struct mem_backend *mb, const struct store_op *op, struct store_deferred *d)
{
    struct mem_entry *e = lookup(mb, op->key, NULL);
    if (e == NULL)
        d->status = STORE_NOT_FOUND;
    else if (e->expires_ms == 0)
        d->integer = -1;
    else
        d->integer = (long long)(e->expires_ms - time_mono_ms());
}

/* Same errors as Redis' INCR, so callers see one behaviour. */
static void op_incr(struct mem_backend *mb, const struct store_op *op, struct store_deferred *d)
{
    struct mem_entry *e = lookup(mb, op->key, NULL);
    long long v = 0;

    if (e != NULL && e->type != MEM_STRING) {
        d->status = STORE_ERROR;
        d->error = xstrdup(wrongtype_error);
        return;
    }
    if (e != NULL) {
        char *end = NULL;
        errno = 0;
        v = strtoll(e->val, &end, 10);
        if (errno != 0 || end == e->val || *end != '\0' || e->val_len != (size_t)(end - e->val)) {
            d->status = STORE_ERROR;
            d->error = xstrdup("ERR value is not an integer or out of range");
            return;
        }
        if (v == LLONG_MAX) {
            d->status = STORE_ERROR;
            d->error = xstrdup("ERR increment or decrement would overflow");
            return;
        }
    } else {
        e = create(mb, op->key, MEM_STRING);
    }
    v++;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%lld", v);
    set_string(e, buf, (size_t)n);
    /* TTL only when the counter has none (just created): a window is never extended. */
    if (op->ttl_ms > 0 && e->expires_ms == 0)
        e->expires_ms = deadline(op->ttl_ms);
    d->integer = v;
}

/* Returns the set at key, NULL when absent; sets STORE_ERROR on a wrong type. */
static struct mem_entry *find_set(struct mem_backend *mb, const char *key, struct mem_entry ***slot,
                                  struct store_deferred *d)
{
    struct mem_entry *e = lookup(mb, key, slot);
    if (e != NULL && e->type != MEM_SET) {
        d->status = STORE_ERROR;
        d->error = xstrdup(wrongtype_error);
        return NULL;
    }
    return e;
}

static void op_set_add(struct mem_backend *mb, const struct store_op *op, struct store_deferred *d)
{
    struct mem_entry **slot;
    struct mem_entry *e = find_set(mb, op->key, &slot, d);
    if (d->status != STORE_OK)
        return;
    if (e == NULL)
        e = create(mb, op->key, MEM_SET);
    uint64_t h = hash_bytes(mb->seed, op->val, op->val_len);
    if (*table_slot(e->set, h, op->val, op->val_len) == NULL) {
        table_insert(e->set, h, op->val, op->val_len);
        d->integer = 1;
    }
    if (op->ttl_ms > 0)
        e->expires_ms = deadline(op->ttl_ms);
}

static void op_set_remove(struct mem_backend *mb, const struct store_op *op,
                          struct store_deferred *d)
{
    struct mem_entry **slot;
    struct mem_entry *e = find_set(mb, op->key, &slot, d);
    if (e == NULL)
        return;
    uint64_t h = hash_bytes(mb->seed, op->val, op->val_len);
    struct mem_entry **mslot = table_slot(e->set, h, op->val, op->val_len);
    if (*mslot != NULL) {
        table_unlink(e->set, mslot);
        d->integer = 1;
    }
    if (e->set->count == 0) /* Redis deletes an empty set */
        table_unlink(&mb->table, slot);
}

static void op_set_members(struct mem_backend *mb, const struct store_op *op,
                           struct store_deferred *d)
{
    struct mem_entry *e = find_set(mb, op->key, NULL, d);
    if (e == NULL)
        return;
    if (op->kind == STORE_OP_SET_CARD) {
        d->integer = (long long)e->set->count;
        return;
    }
    d->members = xcalloc(e->set->count, sizeof(*d->members));
    d->member_lens = xcalloc(e->set->count, sizeof(*d->member_lens));
    for (size_t i = 0; i < e->set->n_buckets; i++) {
        for (struct mem_entry *m = e->set->buckets[i]; m != NULL; m = m->next) {
            d->members[d->n_members] = dup_bytes(m->key, m->key_len);
            d->member_lens[d->n_members] = m->key_len;
            d->n_members++;
        }
    }
}

static void op_publish(struct mem_backend *mb, const struct store_op *op, struct store_deferred *d)
{
    /*
     * One queued message; store.c fans it out, when the loop delivers it, to
     * the subscribers present then. The count below is those present now.
     */
    struct store_deferred *m = store_deferred_new(NULL, NULL, STORE_OK, NULL);
    m->channel = xstrdup(op->key);
    m->value = dup_bytes(op->val, op->val_len);
    m->value_len = op->val_len;
    store_defer(mb->s, m);
    d->integer = (long long)store_count_subscribers(mb->s, op->key);
}

static void mem_submit(void *impl, const struct store_op *op)
{
    struct mem_backend *mb = impl;
    struct store_deferred *d = store_deferred_new(op->cb, op->arg, STORE_OK, NULL);

    switch (op->kind) {
    case STORE_OP_PUT:
    case STORE_OP_PUT_NX: op_put(mb, op, d); break;
    case STORE_OP_GET:
    case STORE_OP_TAKE:
    case STORE_OP_TAKE_MARK: op_get(mb, op, d); break;
    case STORE_OP_DEL: op_del(mb, op, d); break;
    case STORE_OP_EXPIRE: op_expire(mb, op, d); break;
    case STORE_OP_INCR: op_incr(mb, op, d); break;
    case STORE_OP_SET_ADD: op_set_add(mb, op, d); break;
    case STORE_OP_SET_REMOVE: op_set_remove(mb, op, d); break;
    case STORE_OP_SET_MEMBERS:
    case STORE_OP_SET_CARD: op_set_members(mb, op, d); break;
    case STORE_OP_TTL: op_ttl(mb, op, d); break;
    case STORE_OP_PUBLISH: op_publish(mb, op, d); break;
    case STORE_OP_PING: break;
    }
    store_defer(mb->s, d);
}

/* --- expiry sweep -------------------------------------------------------- */

static void sweep_arm(struct mem_backend *mb, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(mb->sweep_ev, &tv);
}

/*
 * One slice of a pass over the table. A pass starts every
 * MEM_SWEEP_INTERVAL_MS; its slices run back to back but each returns to the
 * loop, so a big table never stalls it.
 */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct mem_backend *mb = arg;
    struct mem_table *t = &mb->table;
    uint64_t now = time_mono_ms();
    (void)fd;
    (void)what;

    size_t end = mb->sweep_cursor + MEM_SWEEP_BUCKETS;
    if (end > t->n_buckets)
        end = t->n_buckets;
    /* The table may have grown since the last slice: the cursor only ever moves on. */
    for (; mb->sweep_cursor < end; mb->sweep_cursor++) {
        struct mem_entry **slot = &t->buckets[mb->sweep_cursor];
        while (*slot != NULL) {
            if ((*slot)->expires_ms != 0 && (*slot)->expires_ms <= now)
                table_unlink(t, slot);
            else
                slot = &(*slot)->next;
        }
    }
    if (mb->sweep_cursor < t->n_buckets) {
        sweep_arm(mb, 0);
    } else {
        mb->sweep_cursor = 0;
        sweep_arm(mb, MEM_SWEEP_INTERVAL_MS);
    }
}

/* --- backend vtable ------------------------------------------------------ */

static void mem_subscribe(void *impl, const char *channel)
{
    /* Delivery is local: store.c's subscription list is all there is. */
    (void)impl;
    (void)channel;
}

static bool mem_is_ready(const void *impl)
{
    (void)impl;
    return true;
}

static const char *mem_last_error(const void *impl)
{
    (void)impl;
    return NULL;
}

static void mem_get_stats(const void *impl, struct store_stats *out)
{
    (void)impl;
    out->connected = true;
    out->subscribed = true;
}

static void mem_free(void *impl)
{
    struct mem_backend *mb = impl;
    if (mb == NULL)
        return;
    /* Nothing is in flight here: every result already waits in store.c's queue. */
    event_free(mb->sweep_ev);
    table_clear(&mb->table);
    free(mb);
}

void *store_memory_new(struct store *s, struct event_base *base)
{
    struct mem_backend *mb = xcalloc(1, sizeof(*mb));
    mb->s = s;
    table_init(&mb->table);
    if (getrandom(&mb->seed, sizeof(mb->seed), GRND_NONBLOCK) != (ssize_t)sizeof(mb->seed))
        mb->seed =
            time_mono_ms() ^ (uint64_t)(uintptr_t)mb; /* only spreads buckets; not a secret */
    mb->sweep_ev = xevtimer_new(base, on_sweep, mb);
    sweep_arm(mb, MEM_SWEEP_INTERVAL_MS);
    return mb;
}

size_t store_memory_count(const struct store *s)
{
    const struct mem_backend *mb = store_backend_impl(s);
    return mb != NULL ? mb->table.count : 0;
}

const struct store_backend_ops store_memory_ops = {
    .name = "memory",
    .submit = mem_submit,
    .subscribe = mem_subscribe,
    .is_ready = mem_is_ready,
    .last_error = mem_last_error,
    .get_stats = mem_get_stats,
    .free = mem_free,
};
