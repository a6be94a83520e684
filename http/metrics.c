/*
 * metrics: families of labelled counters, gauges and latency histograms,
 * and the fixed rows read from other modules at render time, in the
 * Prometheus text format.
 *
 * Label cardinality is bounded twice: by the callers (route labels come from
 * the route table, "-" for unknown paths; tool labels only from configured
 * or answered names, proxy/call_metrics.c), and here, by max_series per
 * family, past which new label sets fold into the all-"other" series.
 */
#include "http/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hash.h"
#include "common/histogram.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

#ifndef MCPGATE_VERSION
#define MCPGATE_VERSION "0.0.0"
#endif
#ifndef MCPGATE_GIT_REV
#define MCPGATE_GIT_REV "unknown"
#endif

#define SERIES_BUCKETS 256  /* hash buckets per family */
#define LABEL_VALUE_MAX 128 /* longer label values are cut (a tool name, a route name) */

/* One label set of a family. */
struct series {
    char *key;                          /* owned: the label values joined by 0x1f */
    char *values[GW_METRIC_MAX_LABELS]; /* owned */
    uint64_t value;                     /* counter or gauge */
    struct histogram hist;              /* histogram */
    struct series *hnext;               /* borrowed: the hash chain (the list owns) */
    struct series *next;                /* owned: insertion order, the exposition order */
};

struct family_state {
    const struct gw_metric_family *f; /* borrowed: static */
    struct series *head, *tail;       /* owned list */
    struct series *table[SERIES_BUCKETS];
    uint64_t n_series;
    struct family_state *next; /* owned: declaration order */
};

struct gw_metrics {
    struct family_state *families, *families_tail; /* owned list */
    uint64_t max_series;
    time_t started;
};

static const struct gw_metric_family http_requests = {
    "mcpgate_http_requests_total",
    "HTTP requests answered, by route and status.",
    GW_METRIC_COUNTER,
    2,
    {"route", "status"},
};
static const struct gw_metric_family http_duration = {
    "mcpgate_http_request_duration_seconds",
    "Time from request parsed to response queued.",
    GW_METRIC_HISTOGRAM,
    1,
    {"route"},
};

static struct family_state *family_get(struct gw_metrics *m, const struct gw_metric_family *f)
{
    for (struct family_state *fs = m->families; fs; fs = fs->next)
        if (fs->f == f)
            return fs;
    struct family_state *fs = xcalloc(1, sizeof(*fs));
    fs->f = f;
    if (m->families_tail)
        m->families_tail->next = fs;
    else
        m->families = fs;
    m->families_tail = fs;
    return fs;
}

struct gw_metrics *gw_metrics_new(uint64_t max_series)
{
    struct gw_metrics *m = xcalloc(1, sizeof(*m));
    m->started = time(NULL);
    m->max_series = max_series ? max_series : 1;
    gw_metrics_declare(m, &http_requests);
    gw_metrics_declare(m, &http_duration);
    return m;
}

static void series_free_all(struct family_state *fs)
{
    while (fs->head) {
        struct series *s = fs->head;
        fs->head = s->next;
        for (unsigned i = 0; i < GW_METRIC_MAX_LABELS; i++)
            free(s->values[i]);
        free(s->key);
        free(s);
    }
    fs->tail = NULL;
    memset(fs->table, 0, sizeof(fs->table));
    fs->n_series = 0;
}

void gw_metrics_free(struct gw_metrics *m)
{
    if (m == NULL)
        return;
    while (m->families) {
        struct family_state *fs = m->families;
        m->families = fs->next;
        series_free_all(fs);
        free(fs);
    }
    free(m);
}

/* The key of VALUES in KEY: each value cut to LABEL_VALUE_MAX - 1 bytes, joined by 0x1f. */
static void series_key(const struct gw_metric_family *f, const char *const *values,
                       char key[GW_METRIC_MAX_LABELS * LABEL_VALUE_MAX])
{
    size_t n = 0;
    for (unsigned i = 0; i < f->n_labels && i < GW_METRIC_MAX_LABELS; i++) {
        const char *v = values && values[i] ? values[i] : "";
        size_t len = strnlen(v, LABEL_VALUE_MAX - 1);
        memcpy(key + n, v, len);
        n += len;
        key[n++] = '\x1f';
    }
    key[n ? n - 1 : 0] = '\0';
}

static struct series *series_find(const struct family_state *fs, const char *key, uint32_t h)
{
    for (struct series *s = fs->table[h % SERIES_BUCKETS]; s; s = s->hnext)
        if (strcmp(s->key, key) == 0)
            return s;
    return NULL;
}

static const char *const others[GW_METRIC_MAX_LABELS] = {"other", "other", "other"};

/* The series of VALUES in F, made when new; past max_series, the all-"other" series. */
static struct series *series_get(struct gw_metrics *m, const struct gw_metric_family *f,
                                 const char *const *values)
{
    struct family_state *fs = family_get(m, f);
    char key[GW_METRIC_MAX_LABELS * LABEL_VALUE_MAX];
    series_key(f, values, key);
    uint32_t h = hash_str(key);
    struct series *s = series_find(fs, key, h);
    if (s)
        return s;
    if (fs->n_series >= m->max_series && values != others)
        return series_get(m, f, others);
    s = xcalloc(1, sizeof(*s));
    s->key = xstrdup(key);
    for (unsigned i = 0; i < f->n_labels && i < GW_METRIC_MAX_LABELS; i++)
        s->values[i] = xstrndup(values && values[i] ? values[i] : "", LABEL_VALUE_MAX - 1);
    s->hnext = fs->table[h % SERIES_BUCKETS];
    fs->table[h % SERIES_BUCKETS] = s;
    if (fs->tail)
        fs->tail->next = s;
    else
        fs->head = s;
    fs->tail = s;
    fs->n_series++;
    return s;
}

void gw_metrics_declare(struct gw_metrics *m, const struct gw_metric_family *f)
{
    if (m)
        (void)family_get(m, f);
}

void gw_metrics_add(struct gw_metrics *m, const struct gw_metric_family *f,
                    const char *const *values, uint64_t n)
{
    if (m)
        series_get(m, f, values)->value += n;
}

void gw_metrics_set(struct gw_metrics *m, const struct gw_metric_family *f,
                    const char *const *values, uint64_t value)
{
    if (m)
        series_get(m, f, values)->value = value;
}

void gw_metrics_observe(struct gw_metrics *m, const struct gw_metric_family *f,
                        const char *const *values, uint64_t us)
{
    if (m)
        histogram_observe(&series_get(m, f, values)->hist, us);
}

void gw_metrics_set_histogram(struct gw_metrics *m, const struct gw_metric_family *f,
                              const char *const *values, const struct histogram *h)
{
    if (m)
        series_get(m, f, values)->hist = *h;
}

bool gw_metrics_has(const struct gw_metrics *m, const struct gw_metric_family *f,
                    const char *const *values)
{
    if (m == NULL)
        return false;
    for (const struct family_state *fs = m->families; fs; fs = fs->next) {
        if (fs->f != f)
            continue;
        char key[GW_METRIC_MAX_LABELS * LABEL_VALUE_MAX];
        series_key(f, values, key);
        return series_find(fs, key, hash_str(key)) != NULL;
    }
    return false;
}

void gw_metrics_reset(struct gw_metrics *m, const struct gw_metric_family *f)
{
    if (m)
        series_free_all(family_get(m, f));
}

void gw_metrics_observe_request(struct gw_metrics *m, const char *route, int status,
                                uint64_t duration_us)
{
    char code[12];
    snprintf(code, sizeof(code), "%d", status);
    const char *r = route ? route : "-";
    gw_metrics_add(m, &http_requests, (const char *const[]){r, code}, 1);
    gw_metrics_observe(m, &http_duration, (const char *const[]){r}, duration_us);
}

/* ---- rendering ------------------------------------------------------------- */

/* Prometheus label values escape backslash, double quote and newline. */
static void put_label(struct strbuf *sb, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            strbuf_printf(sb, "\\%c", *v);
        else if (*v == '\n')
            strbuf_puts(sb, "\\n");
        else
            strbuf_append(sb, v, 1);
    }
}

static void put_labels(struct strbuf *sb, const struct gw_metric_family *f, const struct series *s,
                       const char *le)
{
    if (f->n_labels == 0 && le == NULL)
        return;
    strbuf_puts(sb, "{");
    for (unsigned i = 0; i < f->n_labels && i < GW_METRIC_MAX_LABELS; i++) {
        strbuf_printf(sb, "%s%s=\"", i ? "," : "", f->labels[i]);
        put_label(sb, s->values[i]);
        strbuf_puts(sb, "\"");
    }
    if (le)
        strbuf_printf(sb, "%sle=\"%s\"", f->n_labels ? "," : "", le);
    strbuf_puts(sb, "}");
}

static void render_histogram(struct strbuf *sb, const struct gw_metric_family *f,
                             const struct series *s)
{
    const struct histogram *h = &s->hist;
    uint64_t cumulative = 0;
    for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
        char le[32];
        cumulative += h->buckets[i];
        snprintf(le, sizeof(le), "%g", (double)histogram_bounds_us[i] / 1e6);
        strbuf_printf(sb, "%s_bucket", f->name);
        put_labels(sb, f, s, le);
        strbuf_printf(sb, " %llu\n", (unsigned long long)cumulative);
    }
    strbuf_printf(sb, "%s_bucket", f->name);
    put_labels(sb, f, s, "+Inf");
    strbuf_printf(sb, " %llu\n%s_sum", (unsigned long long)h->count, f->name);
    put_labels(sb, f, s, NULL);
    strbuf_printf(sb, " %.6f\n%s_count", (double)h->sum_us / 1e6, f->name);
    put_labels(sb, f, s, NULL);
    strbuf_printf(sb, " %llu\n", (unsigned long long)h->count);
}

static void render_family(struct strbuf *sb, const struct family_state *fs)
{
    const struct gw_metric_family *f = fs->f;
    static const char *const types[] = {"counter", "gauge", "histogram"};
    strbuf_printf(sb, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->type]);
    /* A family without labels always has its one sample, 0 until recorded. */
    if (f->n_labels == 0 && fs->head == NULL && f->type != GW_METRIC_HISTOGRAM)
        strbuf_printf(sb, "%s 0\n", f->name);
    for (const struct series *s = fs->head; s; s = s->next) {
        if (f->type == GW_METRIC_HISTOGRAM) {
            render_histogram(sb, f, s);
            continue;
        }
        strbuf_puts(sb, f->name);
        put_labels(sb, f, s, NULL);
        strbuf_printf(sb, " %llu\n", (unsigned long long)s->value);
    }
}

static void render_gauge(struct strbuf *sb, const char *name, const char *type, const char *help,
                         unsigned long long value)
{
    strbuf_printf(sb, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, value);
}

char *gw_metrics_render(const struct gw_metrics *m, const struct gw_metrics_gauges *g)
{
    struct strbuf sb = STRBUF_INIT;
    /* One row per value: name, type, help, value (order is the exposition order). */
    const struct {
        const char *name, *type, *help;
        unsigned long long value;
    } rows[] = {
        {"mcpgate_http_open_connections", "gauge", "Open client connections.", g->open_connections},
        {"mcpgate_http_in_flight_requests", "gauge", "Requests received and not yet answered.",
         g->in_flight},
        {"mcpgate_store_operations_total", "counter", "Store operations issued.", g->store_ops},
        {"mcpgate_store_errors_total", "counter",
         "Store operations that failed (timeouts included).", g->store_errors},
        {"mcpgate_store_timeouts_total", "counter", "Store operations that hit their deadline.",
         g->store_timeouts},
        {"mcpgate_store_reconnects_total", "counter", "Reconnections to the store.",
         g->store_reconnects},
        {"mcpgate_store_failovers_total", "counter",
         "Sentinel failovers the store followed to a new master.", g->store_failovers},
        {"mcpgate_store_up", "gauge", "1 when the store answers.", g->store_up},
        {"mcpgate_sessions", "gauge", "MCP sessions with a child (STDIO routes).", g->sessions},
        {"mcpgate_children", "gauge", "Child processes alive, stop sequences included.",
         g->children},
        {"mcpgate_legacy_bridges", "gauge", "2024-11-05 clients of HTTP upstreams.",
         g->legacy_bridges},
        {"mcpgate_upstream_session_bindings", "gauge",
         "HTTP-upstream session ids bound to their callers.", g->upstream_bindings},
        {"mcpgate_token_cache_entries", "gauge", "Validated access tokens cached in this process.",
         g->token_cache_entries},
        {"mcpgate_bearer_cache_hits_total", "counter",
         "Bearer checks answered from the in-process cache.", g->bearer_cache_hits},
        {"mcpgate_bearer_cache_misses_total", "counter",
         "Bearer checks that had to read the store.", g->bearer_cache_misses},
        {"mcpgate_cluster_forwarded_total", "counter",
         "Requests forwarded to the instance that owns their session.", g->cluster_forwarded},
        {"mcpgate_cluster_owner_gone_total", "counter",
         "Forwarded requests answered 404: the owning instance is gone.", g->cluster_owner_gone},
        {"mcpgate_cluster_hops_received_total", "counter",
         "Forwarded requests received from another instance and verified.",
         g->cluster_hops_received},
        {"mcpgate_cluster_hops_refused_total", "counter",
         "Requests on the internal listener refused (403): no hop, a bad or old MAC, a replay.",
         g->cluster_hops_refused},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        render_gauge(&sb, rows[i].name, rows[i].type, rows[i].help, rows[i].value);
    strbuf_printf(&sb,
                  "# HELP mcpgate_build_info Build version.\n# TYPE mcpgate_build_info gauge\n"
                  "mcpgate_build_info{version=\"%s\",revision=\"%s\"} 1\n",
                  MCPGATE_VERSION, MCPGATE_GIT_REV);
    render_gauge(&sb, "mcpgate_start_time_seconds", "gauge", "Process start, Unix time.",
                 (unsigned long long)m->started);
    for (const struct family_state *fs = m->families; fs; fs = fs->next)
        render_family(&sb, fs);
    return strbuf_detach(&sb, NULL);
}
