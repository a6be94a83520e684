/*
 * util: allocation that aborts on out-of-memory (also installed as jansson's
 * allocator), stderr logging, the monotonic clock, and JSON strings from
 * bytes that may not be UTF-8.
 */
#include "whoami.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void ws_oom(size_t size)
{
    fprintf(stderr, WS_SERVER_NAME ": out of memory (allocating %zu bytes)\n", size);
    abort();
}

void *ws_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        ws_oom(size);
    return p;
}

void *ws_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL)
        ws_oom(nmemb * size);
    return p;
}

void *ws_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        ws_oom(size);
    return p;
}

char *ws_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(ws_xmalloc(n), s, n);
}

void ws_assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, WS_SERVER_NAME ": %s:%d: assertion failed: %s\n", file, line, what);
    abort();
}

void ws_log(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), WS_SERVER_NAME ": ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    /* One fputs of the whole line, so it reaches a pipe in one piece. */
    strcat(line, "\n");
    fputs(line, stderr);
}

uint64_t ws_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail for CLOCK_MONOTONIC */
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

json_t *ws_json_string_lossy(const char *s, size_t len)
{
    json_t *str = json_stringn(s, len);
    if (str != NULL)
        return str;
    /* Not UTF-8: keep ASCII, mark every other byte. Good enough for a display. */
    char *copy = ws_xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    str = json_stringn(copy, len);
    free(copy);
    WS_ASSERT(str != NULL);
    return str;
}

void ws_json_init(void)
{
    /* json_dumps() results then come from malloc too, so free() them. */
    json_set_alloc_funcs(ws_xmalloc, free);
}
