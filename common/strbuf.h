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
/* Room for MORE bytes past the end (and the NUL), for a read(2) straight into
 * the buffer: returns where they go; strbuf_commit() then counts the N of them
 * that were written (N <= the MORE of the last strbuf_spare). */
char *strbuf_spare(struct strbuf *sb, size_t more);
void strbuf_commit(struct strbuf *sb, size_t n);
/* Returns the string (owned by the caller; never NULL) and resets sb. */
char *strbuf_detach(struct strbuf *sb, size_t *len_out);
void strbuf_reset(struct strbuf *sb);
/* Drops everything past LEN (no-op when LEN >= the length). */
void strbuf_truncate(struct strbuf *sb, size_t len);
void strbuf_release(struct strbuf *sb);

#endif
