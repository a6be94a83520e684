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
 *   meanwhile.
 * - FREED: for HEAP_TRIM_FOLLOW_UPS samples after a CLOSED or FREED trim, the
 *   bytes in use are looked at again, and when they fell by HEAP_TRIM_MIN_FREED
 *   since that trim, the heap is trimmed again. What closed connections held
 *   is not all freed when they are counted closed: libevent finalizes a
 *   bufferevent from its loop afterwards, a transfer cancelled while libcurl is
 *   on the stack is removed after it returns, and a burst that straddles a
 *   sample goes on closing (5,000 idle streams left 10 MiB in use at the CLOSED
 *   trim, freed within the next 0.8 s, which kept 14 MiB of RSS until the FREE
 *   trim 10 s on, in one run out of six).
 * - FREE: more than HEAP_TRIM_FREE_BYTES of the heap is free (large messages
 *   have passed, or the heap is fragmented: then the trim repeats, and pages
 *   used again since are given back again). Looked at once per interval.
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
#define HEAP_TRIM_FOLLOW_UPS 3
#define HEAP_TRIM_MIN_FREED (1u << 20)

/* Zero-initialised is the start: no peak, nothing trimmed yet. */
struct heap_trim {
    size_t conn_peak;       /* open connections, the most since the last CLOSED trim */
    size_t conn_last;       /* open connections at the previous sample */
    size_t in_use_at_trim;  /* heap bytes in use at the last CLOSED or FREED trim */
    int follow_ups;         /* samples left that look for memory freed after it */
    uint64_t last_close_ms; /* monotonic: the last CLOSED trim */
    uint64_t heap_check_ms; /* monotonic: the last FREE look (or CLOSED trim) */
};

/* What malloc's arenas hold: bytes handed out and bytes free. */
struct heap_usage {
    size_t in_use;
    size_t free;
};

enum heap_trim_reason {
    HEAP_TRIM_NONE = 0,
    HEAP_TRIM_CLOSED, /* connections closed */
    HEAP_TRIM_FREED,  /* memory freed after a trim */
    HEAP_TRIM_FREE,   /* free heap above HEAP_TRIM_FREE_BYTES */
};

/*
 * One sample: OPEN connections at NOW_MS (monotonic). USAGE reports the heap;
 * it walks malloc's free lists, so it is called only at a CLOSED trim, on its
 * follow-up samples and once per HEAP_TRIM_INTERVAL_MS. Returns why the caller
 * should trim now, or HEAP_TRIM_NONE.
 */
enum heap_trim_reason heap_trim_sample(struct heap_trim *t, size_t open, uint64_t now_ms,
                                       struct heap_usage (*usage)(void));

/* Sets the thresholds above, once at start. */
void heap_trim_tune(void);

/* What malloc's arenas hold now; zeros where that is unknown. */
struct heap_usage heap_trim_usage(void);

/* Gives the free pages of every arena back to the kernel. */
void heap_trim_now(void);

#endif
