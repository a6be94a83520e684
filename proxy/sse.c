/* sse: text/event-stream parsing (WHATWG HTML "event stream interpretation"). */
#include "proxy/sse.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/xalloc.h"

struct sse_parser {
    sse_event_fn fn;
    void *arg; /* borrowed */
    size_t max;
    struct strbuf line; /* the line being read */
    struct strbuf data; /* data of the event being read */
    char *id;           /* owned */
    char *event;        /* owned */
    bool has_data;
    bool skip_lf; /* a CR ended the last line: a following LF belongs to it */
};

struct sse_parser *sse_parser_new(size_t max_event_bytes, sse_event_fn fn, void *arg)
{
    struct sse_parser *p = xcalloc(1, sizeof(*p));
    p->fn = fn;
    p->arg = arg;
    p->max = max_event_bytes;
    return p;
}

static void reset_event(struct sse_parser *p)
{
    strbuf_reset(&p->data);
    free(p->id);
    free(p->event);
    p->id = p->event = NULL;
    p->has_data = false;
}

void sse_parser_free(struct sse_parser *p)
{
    if (p == NULL)
        return;
    reset_event(p);
    strbuf_release(&p->line);
    strbuf_release(&p->data);
    free(p);
}

static void dispatch(struct sse_parser *p)
{
    if (!p->has_data && p->id == NULL && p->event == NULL)
        return;
    struct sse_event ev = {.id = p->id, .event = p->event, .data = strbuf_str(&p->data)};
    p->fn(&ev, p->arg);
    reset_event(p);
}

static void process_line(struct sse_parser *p, const char *line, size_t len)
{
    if (len == 0) {
        dispatch(p);
        return;
    }
    if (line[0] == ':') {
        char *text = xstrndup(line + 1, len - 1);
        struct sse_event ev = {.comment = text};
        p->fn(&ev, p->arg);
        free(text);
        return;
    }
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - nlen - 1 : 0;
    if (vlen && value[0] == ' ') {
        value++;
        vlen--;
    }
    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        if (p->has_data)
            strbuf_append(&p->data, "\n", 1);
        strbuf_append(&p->data, value, vlen);
        p->has_data = true;
    } else if (nlen == 2 && memcmp(line, "id", 2) == 0) {
        if (memchr(value, '\0', vlen) == NULL) {
            free(p->id);
            p->id = xstrndup(value, vlen);
        }
    } else if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        free(p->event);
        p->event = xstrndup(value, vlen);
    }
    /* retry and unknown fields: nothing the gateway needs */
}

int sse_parser_feed(struct sse_parser *p, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (p->skip_lf) {
            p->skip_lf = false;
            if (c == '\n')
                continue;
        }
        if (c == '\r' || c == '\n') {
            process_line(p, p->line.buf ? p->line.buf : "", p->line.len);
            strbuf_reset(&p->line);
            p->skip_lf = c == '\r';
            continue;
        }
        strbuf_append(&p->line, &c, 1);
        if (p->line.len + p->data.len > p->max)
            return -E2BIG;
    }
    return 0;
}

char *sse_format(const char *id, const char *event, const char *data)
{
    struct strbuf sb = STRBUF_INIT;
    if (id)
        strbuf_printf(&sb, "id: %s\n", id);
    if (event)
        strbuf_printf(&sb, "event: %s\n", event);
    /* One data: line per line of DATA, a trailing newline included (an
     * empty last line), so parsing gives DATA back exactly. */
    const char *p = data;
    for (;;) {
        size_t n = strcspn(p, "\n");
        strbuf_puts(&sb, "data: ");
        strbuf_append(&sb, p, n);
        strbuf_puts(&sb, "\n");
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    strbuf_puts(&sb, "\n");
    return strbuf_detach(&sb, NULL);
}
