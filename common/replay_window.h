/*
 * replay_window: accept each sequence number once, tolerating reordering.
 *
 * The anti-replay window of IPsec (RFC 4303 §3.4.3): a sender numbers its
 * messages 1, 2, 3, ...; the receiver remembers the highest number seen and
 * which of the REPLAY_WINDOW_BITS numbers below it have arrived. A number
 * is accepted once if it is above the highest, or inside the window and not
 * seen yet; a number seen before, or below the window, is refused. Messages
 * may arrive out of order by up to REPLAY_WINDOW_BITS numbers.
 *
 * Fixed size (2 KiB + 8 bytes), no allocation; zero-initialised is empty.
 * Not thread-safe: one event loop owns it.
 */
#ifndef MCPGATE_COMMON_REPLAY_WINDOW_H
#define MCPGATE_COMMON_REPLAY_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#define REPLAY_WINDOW_BITS 16384

struct replay_window {
    uint64_t top;                           /* the highest number accepted; 0 = none yet */
    uint64_t seen[REPLAY_WINDOW_BITS / 64]; /* bit (n % BITS): n arrived */
};

/*
 * True the first time SEQ (>= 1) is offered while it is inside the window;
 * false for 0, a repeat, or a number REPLAY_WINDOW_BITS or more below the
 * highest accepted.
 */
bool replay_window_accept(struct replay_window *w, uint64_t seq);

#endif
