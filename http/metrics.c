/*
 * metrics: request counters and latency histograms per route label, plus
 * gauges read from other modules at render time. Route labels come from the
 * fixed route table ("-" for unknown paths), so label cardinality is bounded
 * by configuration, never by what clients send.
 */
#include "http/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/strbuf.h"
#include "common/xalloc.h"

#ifndef MCPGATE_VERSION
#define MCPGATE_VERSION "0.0.0"
#endif
#ifndef MCPGATE_GIT_REV
#define MCPGATE_GIT_REV "unknown"
#endif

/* Upper bounds in microseconds: 0.5 ms … 10 s. */
static const uint64_t bucket_bounds_us[] = {500,     1000,    2500,    5000,    10000,
                                            25000,   50000,   100000,  250000,  500000,
                                            1000000, 2500000, 5000000, 10000000};
#define N_BUCKETS (sizeof(bucket_bounds_us) / sizeof(bucket_bounds_us[0]))
#define MAX_STATUSES 24

struct status_count {
    int status;
    uint64_t count;
};

struct route_metrics {
    char *route;                 /* owned */
    uint64_t buckets[N_BUCKETS]; /* non-cumulative; summed at render */
    uint64_t count;
    uint64_t sum_us;
    struct status_count statuses[MAX_STATUSES];
    size_t n_statuses;
    struct route_metrics *next; /* owned */
};

struct gw_metrics {
    struct route_metrics *routes; /* owned list */
    time_t started;
};

struct gw_metrics *gw_metrics_new(void)
{
    struct gw_metrics *m = xcalloc(1, sizeof(*m));
    m->started = time(NULL);
    return m;
}

void gw_metrics_free(struct gw_metrics *m)
{
    if (m == NULL)
        return;
    while (m->routes) {
        struct route_metrics *r = m->routes;
        m->routes = r->next;
        free(r->route);
        free(r);
    }
    free(m);
}

static struct route_metrics *route_get(struct gw_metrics *m, const char *route)
{
    for (struct route_metrics *r = m->routes; r; r = r->next)
        if (strcmp(r->route, route) == 0)
            return r;
    struct route_metrics *r = xcalloc(1, sizeof(*r));
    r->route = xstrdup(route);
    r->next = m->routes;
    m->routes = r;
    return r;
}

void gw_metrics_observe_request(struct gw_metrics *m, const char *route, int status,
                                uint64_t duration_us)
{
    struct route_metrics *r = route_get(m, route ? route : "-");
    r->count++;
    r->sum_us += duration_us;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        if (duration_us <= bucket_bounds_us[i]) {
            r->buckets[i]++;
            break;
        }
    }
    for (size_t i = 0; i < r->n_statuses; i++) {
        if (r->statuses[i].status == status) {
            r->statuses[i].count++;
            return;
        }
    }
    if (r->n_statuses < MAX_STATUSES) {
        r->statuses[r->n_statuses].status = status;
        r->statuses[r->n_statuses].count = 1;
        r->n_statuses++;
    } else {
        /* More distinct statuses than any real route produces: fold into 0. */
        r->statuses[MAX_STATUSES - 1].status = 0;
        r->statuses[MAX_STATUSES - 1].count++;
    }
}

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

static void render_requests(struct strbuf *sb, const struct gw_metrics *m)
{
    strbuf_puts(sb, "# HELP mcpgate_http_requests_total HTTP requests answered, by route and "
                    "status.\n# TYPE mcpgate_http_requests_total counter\n");
    for (const struct route_metrics *r = m->routes; r; r = r->next) {
        for (size_t i = 0; i < r->n_statuses; i++) {
            strbuf_puts(sb, "mcpgate_http_requests_total{route=\"");
            put_label(sb, r->route);
            strbuf_printf(sb, "\",status=\"%d\"} %llu\n", r->statuses[i].status,
                          (unsigned long long)r->statuses[i].count);
        }
    }
    strbuf_puts(sb, "# HELP mcpgate_http_request_duration_seconds Time from request parsed to "
                    "response queued.\n# TYPE mcpgate_http_request_duration_seconds histogram\n");
    for (const struct route_metrics *r = m->routes; r; r = r->next) {
        uint64_t cumulative = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            cumulative += r->buckets[i];
            strbuf_puts(sb, "mcpgate_http_request_duration_seconds_bucket{route=\"");
            put_label(sb, r->route);
            strbuf_printf(sb, "\",le=\"%g\"} %llu\n", (double)bucket_bounds_us[i] / 1e6,
                          (unsigned long long)cumulative);
        }
        strbuf_puts(sb, "mcpgate_http_request_duration_seconds_bucket{route=\"");
        put_label(sb, r->route);
        strbuf_printf(sb, "\",le=\"+Inf\"} %llu\n", (unsigned long long)r->count);
        strbuf_puts(sb, "mcpgate_http_request_duration_seconds_sum{route=\"");
        put_label(sb, r->route);
        strbuf_printf(sb, "\"} %.6f\n", (double)r->sum_us / 1e6);
        strbuf_puts(sb, "mcpgate_http_request_duration_seconds_count{route=\"");
        put_label(sb, r->route);
        strbuf_printf(sb, "\"} %llu\n", (unsigned long long)r->count);
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
    render_requests(&sb, m);
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
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        render_gauge(&sb, rows[i].name, rows[i].type, rows[i].help, rows[i].value);
    strbuf_printf(&sb,
                  "# HELP mcpgate_build_info Build version.\n# TYPE mcpgate_build_info gauge\n"
                  "mcpgate_build_info{version=\"%s\",revision=\"%s\"} 1\n",
                  MCPGATE_VERSION, MCPGATE_GIT_REV);
    render_gauge(&sb, "mcpgate_start_time_seconds", "gauge", "Process start, Unix time.",
                 (unsigned long long)m->started);
    return strbuf_detach(&sb, NULL);
}
