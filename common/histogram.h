/*
 * histogram: a latency histogram with mcpgate's one set of bucket bounds,
 * for whoever measures (the HTTP server, the proxy, the store); http/metrics
 * renders it in the Prometheus format. Not thread-safe: one loop records.
 */
#ifndef MCPGATE_COMMON_HISTOGRAM_H
#define MCPGATE_COMMON_HISTOGRAM_H

#include <stdint.h>

/* Upper bounds in microseconds: 0.5 ms … 10 s; above the last, only count and sum. */
#define HISTOGRAM_BUCKETS 14
extern const uint64_t histogram_bounds_us[HISTOGRAM_BUCKETS];

struct histogram {
    uint64_t buckets[HISTOGRAM_BUCKETS]; /* non-cumulative */
    uint64_t count;
    uint64_t sum_us;
};

void histogram_observe(struct histogram *h, uint64_t us);

#endif
