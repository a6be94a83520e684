/*
 * timeutil: the clocks mcpgate reads. Deadlines, timeouts and expiry in
 * process memory use the monotonic clock (a wall-clock jump must neither
 * expire nor revive anything); only what leaves the process (token expiry,
 * JWT iat/exp, log timestamps) uses wall time.
 */
#ifndef MCPGATE_COMMON_TIMEUTIL_H
#define MCPGATE_COMMON_TIMEUTIL_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds / microseconds. */
uint64_t time_mono_ms(void);
uint64_t time_mono_us(void);
/* CLOCK_REALTIME in seconds since the Unix epoch. */
uint64_t time_wall_s(void);

#endif
