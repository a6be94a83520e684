/*
 * bench/client.h: what the bench's C clients share (bench/direct over pipes, bench/bigcall
 * over HTTP): the answer check, the fatal error, the clock, percentiles. Each includes it once,
 * after defining BENCH_PROG (its name in error messages).
 */
#ifndef MCPGATE_BENCH_CLIENT_H
#define MCPGATE_BENCH_CLIENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef BENCH_PROG
#error "define BENCH_PROG before including bench/client.h"
#endif

__attribute__((format(printf, 1, 2), noreturn)) static inline void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: " BENCH_PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL)
        die("out of memory (%zu bytes)", n);
    return q;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-th percentile of a sorted array (nearest rank, as wrk and bench/drive.mjs). */
static inline double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t k = (size_t)((p / 100.0) * (double)n + 0.999999);
    k = k < 1 ? 1 : k > n ? n : k;
    return v[k - 1];
}

/* The answer holds a "result" and a "text":"EXPECT" whole. The body may be plain JSON or SSE
 * (data: lines around the same JSON). */

static inline bool answer_holds(const char *buf, size_t len, const char *expect, size_t expect_len)
{
    if (buf == NULL || memmem(buf, len, "\"result\"", 8) == NULL)
        return false;
    const char *p = buf, *end = buf + len;
    while ((p = memmem(p, (size_t)(end - p), "\"text\":\"", 8)) != NULL) {
        p += 8;
        if ((size_t)(end - p) > expect_len && memcmp(p, expect, expect_len) == 0 &&
            p[expect_len] == '"')
            return true;
    }
    return false;
}

#endif
