/*
 * heap_trim: when to give freed heap memory back to the kernel.
 *
 * glibc's defaults give a large buffer back as soon as it is freed: anything
 * above the mmap threshold is unmapped, and free memory at the top of the heap
 * above the trim threshold is trimmed. A 1 MiB message then costs a fresh
 * mapping per buffer it passes through, and the page faults that fill it were
 * half of the gateway's CPU on 1 MiB tool calls. So heap_trim_tune() keeps
 * buffers up to HEAP_TRIM_MMAP_MAX_BYTES in the heap and freed memory there for
 * the next message, and giving it back is decided here, one sample at a time
 * (the caller samples every HEAP_TRIM_SAMPLE_MS on its loop and calls
 * heap_trim_now() when heap_trim_sample() says so):
 *
 * - CLOSED: open connections fell to half of their peak since the last trim,
 *   and by at least HEAP_TRIM_MIN_DROP (thousands of idle streams closing leave
 *   their memory scattered in the arenas). It waits until the fall has stopped
 *   (a sample with no fewer connections than the one before), so one trim gets
 *   a whole burst; a fall that goes on for HEAP_TRIM_INTERVAL_MS is trimmed
 *   meanwhile. A trim made while connections were still falling is followed by
 *   one more once they stop, however few closed since: a burst that straddles a
 *   sample is given back within two samples of its end, not an interval later.
 * - FREE: more than HEAP_TRIM_FREE_BYTES of the heap is free (large messages
 *   have passed, or the heap is fragmented: then the trim repeats, and pages
 *   used again since are given back again). Looked at once per interval: the
 *   count walks malloc's free lists.
 *
 * A trim's cost grows with the heap, not with traffic. CLOSED trims are bounded
 * by the traffic itself: each needs the connections to halve again from a new
 * peak. Not thread-safe: one event loop owns the state. Where the C library is
 * not glibc, tuning, counting and trimming do nothing.
 */
#ifndef MCPGATE_COMMON_HEAP_TRIM_H
#define MCPGATE_COMMON_HEAP_TRIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEAP_TRIM_MMAP_MAX_BYTES (32u << 20) /* glibc's ceiling for M_MMAP_THRESHOLD */
#define HEAP_TRIM_KEEP_BYTES (256u << 20)    /* glibc's own trims stay out of the way */
#define HEAP_TRIM_SAMPLE_MS 1000
#define HEAP_TRIM_INTERVAL_MS 10000
#define HEAP_TRIM_MIN_DROP 256
#define HEAP_TRIM_FREE_BYTES (4u << 20)

/* Zero-initialised is the start: no peak, nothing trimmed yet. */
struct heap_trim {
    size_t conn_peak;       /* open connections, the most since the last CLOSED trim */
    size_t conn_last;       /* open connections at the previous sample */
    size_t conn_at_trim;    /* open connections at the last CLOSED trim */
    bool falling_at_trim;   /* that trim came while they were still falling */
    uint64_t last_close_ms; /* monotonic: the last CLOSED trim */
    uint64_t heap_check_ms; /* monotonic: the last look at the free bytes (or trim) */
};

enum heap_trim_reason {
    HEAP_TRIM_NONE = 0,
    HEAP_TRIM_CLOSED, /* connections closed */
    HEAP_TRIM_FREE,   /* free heap above HEAP_TRIM_FREE_BYTES */
};

/*
 * One sample: OPEN connections at NOW_MS (monotonic). FREE_BYTES is called at
 * most once per HEAP_TRIM_INTERVAL_MS, for the bytes free in the heap. Returns
 * why the caller should trim now, or HEAP_TRIM_NONE.
 */
enum heap_trim_reason heap_trim_sample(struct heap_trim *t, size_t open, uint64_t now_ms,
                                       size_t (*free_bytes)(void));

/* Sets the thresholds above, once at start. */
void heap_trim_tune(void);

/* Bytes free in malloc's arenas; 0 where that is unknown. */
size_t heap_trim_free_bytes(void);

/* Gives the free pages of every arena back to the kernel. */
void heap_trim_now(void);

#endif
