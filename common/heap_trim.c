/* heap_trim: when to give freed heap memory back (heap_trim.h has the rules). */
#include "common/heap_trim.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include "common/log.h"

enum heap_trim_reason heap_trim_sample(struct heap_trim *t, size_t open, uint64_t now_ms,
                                       struct heap_usage (*usage)(void))
{
    if (open > t->conn_peak)
        t->conn_peak = open;
    bool settled = open >= t->conn_last;
    t->conn_last = open;
    bool dropped = t->conn_peak >= open + HEAP_TRIM_MIN_DROP && open <= t->conn_peak / 2;
    if (dropped && (settled || now_ms - t->last_close_ms >= HEAP_TRIM_INTERVAL_MS)) {
        t->conn_peak = open;
        t->last_close_ms = now_ms;
        t->heap_check_ms = now_ms;
        t->in_use_at_trim = usage().in_use;
        t->follow_ups = HEAP_TRIM_FOLLOW_UPS;
        return HEAP_TRIM_CLOSED;
    }
    if (t->follow_ups > 0) {
        t->follow_ups--;
        size_t in_use = usage().in_use;
        if (in_use + HEAP_TRIM_MIN_FREED <= t->in_use_at_trim) {
            t->in_use_at_trim = in_use;
            t->follow_ups = HEAP_TRIM_FOLLOW_UPS;
            return HEAP_TRIM_FREED;
        }
        if (in_use > t->in_use_at_trim)
            t->in_use_at_trim = in_use; /* it grew again: count frees from here */
    }
    /* The reasons keep their own pace: a trim for free heap must not hold back
     * the one a burst of closing connections needs within seconds. */
    if (now_ms - t->heap_check_ms < HEAP_TRIM_INTERVAL_MS)
        return HEAP_TRIM_NONE;
    t->heap_check_ms = now_ms;
    return usage().free > HEAP_TRIM_FREE_BYTES ? HEAP_TRIM_FREE : HEAP_TRIM_NONE;
}

void heap_trim_tune(void)
{
#ifdef __GLIBC__
    /* Setting either also ends glibc's own adjustment of both, which is the point.
     * A sanitizer's allocator refuses both: that costs speed, nothing else. */
    if (mallopt(M_MMAP_THRESHOLD, (int)HEAP_TRIM_MMAP_MAX_BYTES) != 1 ||
        mallopt(M_TRIM_THRESHOLD, (int)HEAP_TRIM_KEEP_BYTES) != 1)
        gw_log(GW_LOG_DEBUG, "heap", NULL, "mallopt refused the heap settings", NULL);
#endif
}

struct heap_usage heap_trim_usage(void)
{
#ifdef __GLIBC__
    struct mallinfo2 m = mallinfo2();
    return (struct heap_usage){.in_use = m.uordblks, .free = m.fordblks};
#else
    return (struct heap_usage){0};
#endif
}

void heap_trim_now(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}
