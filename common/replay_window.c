/* replay_window: accept each sequence number once (replay_window.h). */
#include "common/replay_window.h"

#include <string.h>

static void bit_clear(struct replay_window *w, uint64_t n)
{
    w->seen[(n % REPLAY_WINDOW_BITS) / 64] &= ~(UINT64_C(1) << (n % 64));
}

bool replay_window_accept(struct replay_window *w, uint64_t seq)
{
    if (seq == 0)
        return false;
    if (seq > w->top) {
        /* Slide: the numbers between the old top and SEQ have not arrived. */
        if (seq - w->top >= REPLAY_WINDOW_BITS)
            memset(w->seen, 0, sizeof(w->seen));
        else
            for (uint64_t n = w->top + 1; n < seq; n++)
                bit_clear(w, n);
        w->top = seq;
        w->seen[(seq % REPLAY_WINDOW_BITS) / 64] |= UINT64_C(1) << (seq % 64);
        return true;
    }
    if (w->top - seq >= REPLAY_WINDOW_BITS)
        return false;
    uint64_t *word = &w->seen[(seq % REPLAY_WINDOW_BITS) / 64];
    uint64_t bit = UINT64_C(1) << (seq % 64);
    if (*word & bit)
        return false;
    *word |= bit;
    return true;
}
