/*
 * metrics: counters kept in process and rendered in the Prometheus text
 * format (version 0.0.4). Everything is recorded on the event loop thread.
 *
 *   mcpgate_http_requests_total{route,status}        counter
 *   mcpgate_http_request_duration_seconds{route}     histogram
 *   mcpgate_http_open_connections                    gauge
 *   mcpgate_http_in_flight_requests                  gauge
 *   mcpgate_store_operations_total                   counter
 *   mcpgate_store_errors_total                       counter
 *   mcpgate_store_timeouts_total                     counter
 *   mcpgate_store_reconnects_total                   counter
 *   mcpgate_store_failovers_total                    counter
 *   mcpgate_store_up                                 gauge
 *   mcpgate_build_info{version,revision}             gauge (1)
 *   mcpgate_start_time_seconds                       gauge
 */
#ifndef MCPGATE_HTTP_METRICS_H
#define MCPGATE_HTTP_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct gw_metrics;

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
};

struct gw_metrics *gw_metrics_new(void);
void gw_metrics_free(struct gw_metrics *m);

/* ROUTE is a label such as the route name or the endpoint path; copied. */
void gw_metrics_observe_request(struct gw_metrics *m, const char *route, int status,
                                uint64_t duration_us);

/* The whole exposition; owned by the caller. */
char *gw_metrics_render(const struct gw_metrics *m, const struct gw_metrics_gauges *g);

#endif
