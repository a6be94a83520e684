/*
 * io: splits stdin into lines (MCP stdio transport: one message per line)
 * and queues stdout messages, written without ever blocking the loop.
 *
 * The line buffer owns what it read; a line handed out stays valid until the
 * next read. It grows only while a line is incomplete and never past
 * WS_MAX_LINE_BYTES plus one read, because a longer line is skipped up to its
 * newline. The queue owns each message until its last byte is written.
 */
#include "whoami.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WS_READ_BYTES (64u * 1024)

static void linebuf_make_room(struct ws_linebuf *lb)
{
    if (lb->start > 0) {
        memmove(lb->buf, lb->buf + lb->start, lb->len - lb->start);
        lb->len -= lb->start;
        lb->start = 0;
    }
    if (lb->cap - lb->len >= WS_READ_BYTES)
        return;
    size_t cap = lb->cap * 2;
    if (cap < lb->len + WS_READ_BYTES)
        cap = lb->len + WS_READ_BYTES;
    if (cap > WS_MAX_LINE_BYTES + WS_READ_BYTES + 1)
        cap = WS_MAX_LINE_BYTES + WS_READ_BYTES + 1;
    lb->buf = ws_xrealloc(lb->buf, cap);
    lb->cap = cap;
}

int ws_linebuf_read(struct ws_linebuf *lb, int fd)
{
    linebuf_make_room(lb);
    /* ws_linebuf_next leaves at most WS_MAX_LINE_BYTES pending, so there is room. */
    WS_ASSERT(lb->cap > lb->len);
    ssize_t n = read(fd, lb->buf + lb->len, lb->cap - lb->len);
    if (n < 0)
        return -errno;
    if (n == 0)
        lb->eof = true;
    lb->len += (size_t)n;
    return 0;
}

enum ws_line_status ws_linebuf_next(struct ws_linebuf *lb, const char **line, size_t *len)
{
    if (lb->buf == NULL)
        return WS_LINE_NONE;
    for (;;) {
        char *from = lb->buf + lb->start;
        size_t avail = lb->len - lb->start;
        char *nl =
            avail > lb->scanned ? memchr(from + lb->scanned, '\n', avail - lb->scanned) : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - from);
            lb->start += n + 1;
            lb->scanned = 0;
            if (lb->discarding) { /* the tail of an over-long line */
                lb->discarding = false;
                continue;
            }
            if (n > WS_MAX_LINE_BYTES)
                return WS_LINE_TOO_LONG;
            *line = from;
            *len = n;
            return WS_LINE_OK;
        }
        lb->scanned = avail;
        if (lb->discarding) {
            lb->start = lb->len;
            lb->scanned = 0;
            return WS_LINE_NONE;
        }
        if (avail > WS_MAX_LINE_BYTES) {
            lb->discarding = !lb->eof;
            lb->start = lb->len;
            lb->scanned = 0;
            return WS_LINE_TOO_LONG;
        }
        if (lb->eof && avail > 0) { /* last line without a newline */
            lb->start = lb->len;
            lb->scanned = 0;
            *line = from;
            *len = avail;
            return WS_LINE_OK;
        }
        return WS_LINE_NONE;
    }
}

void ws_linebuf_free(struct ws_linebuf *lb)
{
    free(lb->buf);
    memset(lb, 0, sizeof(*lb));
}

void ws_outq_push(struct ws_outq *q, char *data, size_t len)
{
    struct ws_chunk *c = ws_xcalloc(1, sizeof(*c));
    c->data = data;
    c->len = len;
    if (q->tail != NULL)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->bytes += len;
}

static void outq_pop(struct ws_outq *q)
{
    struct ws_chunk *c = q->head;
    q->head = c->next;
    if (q->head == NULL)
        q->tail = NULL;
    free(c->data);
    free(c);
}

static bool fd_writable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    /* POLLERR/POLLHUP count as writable: write(2) then reports the error. */
    return poll(&pfd, 1, 0) > 0;
}

int ws_outq_flush(struct ws_outq *q, int fd, size_t max_write)
{
    while (q->head != NULL) {
        struct ws_chunk *c = q->head;
        /* A blocking pipe accepts max_write (PIPE_BUF) bytes without
         * blocking once poll(2) says POLLOUT; a non-blocking one says EAGAIN. */
        if (!fd_writable(fd))
            return 0;
        size_t n = c->len - c->off;
        if (n > max_write)
            n = max_write;
        ssize_t w = write(fd, c->data + c->off, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        c->off += (size_t)w;
        q->bytes -= (size_t)w;
        if (c->off == c->len)
            outq_pop(q);
    }
    return 0;
}

void ws_outq_clear(struct ws_outq *q)
{
    while (q->head != NULL)
        outq_pop(q);
    q->bytes = 0;
}
