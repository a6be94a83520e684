/*
 * panic: the one way mcpgate stops on an impossible state. GW_ASSERT is for
 * invariants only (a bug in mcpgate), never for input: bad input always gets
 * a clear error. Out of memory is an impossible state too (xalloc.h).
 */
#ifndef MCPGATE_COMMON_PANIC_H
#define MCPGATE_COMMON_PANIC_H

/* Writes "mcpgate: FILE:LINE: MSG" to stderr and aborts. */
_Noreturn void gw_panic(const char *file, int line, const char *msg);

#define GW_PANIC(msg) gw_panic(__FILE__, __LINE__, (msg))
#define GW_ASSERT(cond)                                                                            \
    ((cond) ? (void)0 : gw_panic(__FILE__, __LINE__, "assertion failed: " #cond))

#endif
