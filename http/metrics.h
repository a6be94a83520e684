/*
 * metrics: counters kept in process and rendered in the Prometheus text
 * format (version 0.0.4). Everything is recorded on the event loop thread.
 *
 *   mcpgate_http_requests_total{route,status}, mcpgate_http_request_duration_seconds{route}
 *   (families of this file), then the fixed rows of gw_metrics_render (connections, the
 *   store, sessions, caches, the cluster), build info and start time. README's
 *   "Metrics" table lists every name.
 *
 * Other modules add labelled families (struct gw_metric_family below): the
 * proxy's tool calls and upstream latency, per-route gauges, the store's
 * latency, the bearer cache, the cluster. Each family holds at most
 * max_series label sets (metrics.max_series); past that, new label sets are
 * counted under one series whose every label is "other", so what clients
 * send can never grow the exposition without bound.
 */
#ifndef MCPGATE_HTTP_METRICS_H
#define MCPGATE_HTTP_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct gw_metrics;
struct histogram;

/* Values read at render time from the modules that own them. */
struct gw_metrics_gauges {
    uint64_t open_connections;
    uint64_t in_flight;
    uint64_t store_ops;
    uint64_t store_errors;
    uint64_t store_timeouts;
    uint64_t store_reconnects;
    uint64_t store_failovers;
    bool store_up;
    uint64_t sessions;
    uint64_t children;
    uint64_t legacy_bridges;
    uint64_t upstream_bindings;
    uint64_t token_cache_entries;
    uint64_t bearer_cache_hits, bearer_cache_misses;
    uint64_t cluster_forwarded, cluster_owner_gone;
    uint64_t cluster_hops_received, cluster_hops_refused;
};

enum gw_metric_type {
    GW_METRIC_COUNTER,
    GW_METRIC_GAUGE,
    GW_METRIC_HISTOGRAM, /* observations in microseconds, rendered in seconds */
};

#define GW_METRIC_MAX_LABELS 3
/* A family; declare it static const where it is recorded (its address is its identity). */
struct gw_metric_family {
    const char *name; /* e.g. "mcpgate_tool_calls_total" */
    const char *help;
    enum gw_metric_type type;
    unsigned n_labels;
    const char *labels[GW_METRIC_MAX_LABELS];
};

/* MAX_SERIES: label sets per family (metrics.max_series). */
struct gw_metrics *gw_metrics_new(uint64_t max_series);
void gw_metrics_free(struct gw_metrics *m);

/* ROUTE is a label such as the route name or the endpoint path; copied. */
void gw_metrics_observe_request(struct gw_metrics *m, const char *route, int status,
                                uint64_t duration_us);

/*
 * Recording into a family. VALUES holds F->n_labels label values (copied);
 * M may be NULL (nothing is recorded). add: a counter grows by N; set: a
 * gauge's value; observe: one histogram observation of US microseconds.
 */
void gw_metrics_add(struct gw_metrics *m, const struct gw_metric_family *f,
                    const char *const *values, uint64_t n);
void gw_metrics_set(struct gw_metrics *m, const struct gw_metric_family *f,
                    const char *const *values, uint64_t value);
void gw_metrics_observe(struct gw_metrics *m, const struct gw_metric_family *f,
                        const char *const *values, uint64_t us);
/* A histogram another module keeps (the store's latency), copied at scrape time. */
void gw_metrics_set_histogram(struct gw_metrics *m, const struct gw_metric_family *f,
                              const char *const *values, const struct histogram *h);
/* Whether the label set VALUES has a series in F (it was recorded before). */
bool gw_metrics_has(const struct gw_metrics *m, const struct gw_metric_family *f,
                    const char *const *values);
/* Makes F part of the exposition (its HELP and TYPE) before anything is recorded. */
void gw_metrics_declare(struct gw_metrics *m, const struct gw_metric_family *f);
/* Drops every series of F: gauges computed at each scrape start from nothing. */
void gw_metrics_reset(struct gw_metrics *m, const struct gw_metric_family *f);

/* The whole exposition; owned by the caller. */
char *gw_metrics_render(const struct gw_metrics *m, const struct gw_metrics_gauges *g);

#endif
