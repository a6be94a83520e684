/*
 * bench/answer.h: the one check every large-payload and echo answer of the bench's C clients
 * passes (bench/direct over pipes, bench/bigcall over HTTP): it holds a "result" and a
 * "text":"EXPECT" whole. The body may be plain JSON or SSE (data: lines around the same JSON).
 */
#ifndef MCPGATE_BENCH_ANSWER_H
#define MCPGATE_BENCH_ANSWER_H

#include <stdbool.h>
#include <string.h>

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
