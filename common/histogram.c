/*
 * histogram: see histogram.h.
 */
#include "common/histogram.h"

const uint64_t histogram_bounds_us[HISTOGRAM_BUCKETS] = {500,     1000,    2500,    5000,    10000,
                                                         25000,   50000,   100000,  250000,  500000,
                                                         1000000, 2500000, 5000000, 10000000};

void histogram_observe(struct histogram *h, uint64_t us)
{
    for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
        if (us <= histogram_bounds_us[i]) {
            h->buckets[i]++;
            break;
        }
    }
    h->count++;
    h->sum_us += us;
}
