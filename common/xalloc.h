/*
 * xalloc: allocation that cannot fail. An out-of-memory condition aborts the
 * process with a message, so call sites never carry OOM branches (house style).
 * Every pointer returned is owned by the caller and released with free().
 */
#ifndef MCPGATE_COMMON_XALLOC_H
#define MCPGATE_COMMON_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Like asprintf(3), aborting on failure. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
