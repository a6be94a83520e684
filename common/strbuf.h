/*
 * strbuf: a growable byte string, always NUL-terminated. The buffer owns its
 * memory; strbuf_release() frees it, strbuf_detach() hands it to the caller.
 */
#ifndef MCPGATE_COMMON_STRBUF_H
#define MCPGATE_COMMON_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *buf; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
};

#define STRBUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void strbuf_append(struct strbuf *sb, const void *data, size_t len);
void strbuf_puts(struct strbuf *sb, const char *s);
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empty string when nothing was appended. */
const char *strbuf_str(const struct strbuf *sb);
/* Returns the string (owned by the caller; never NULL) and resets sb. */
char *strbuf_detach(struct strbuf *sb, size_t *len_out);
void strbuf_reset(struct strbuf *sb);
/* Drops everything past LEN (no-op when LEN >= the length). */
void strbuf_truncate(struct strbuf *sb, size_t len);
void strbuf_release(struct strbuf *sb);

#endif
