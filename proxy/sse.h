/*
 * sse: an incremental parser of text/event-stream (WHATWG HTML §9.2.6), for
 * the rare upstream responses the gateway must read rather than pass
 * through (list results it filters). Bytes go in as they arrive; each
 * complete event (or comment) comes out through a callback.
 */
#ifndef MCPGATE_PROXY_SSE_H
#define MCPGATE_PROXY_SSE_H

#include <stddef.h>

struct sse_event {
    const char *id;      /* NULL when the event had no id field */
    const char *event;   /* NULL: "message" */
    const char *data;    /* the data lines joined with '\n' ("" when none) */
    const char *comment; /* set (and nothing else) for a comment line */
};

typedef void (*sse_event_fn)(const struct sse_event *ev, void *arg);

struct sse_parser;

/* MAX_EVENT_BYTES bounds one event; a longer one makes sse_parser_feed fail. */
struct sse_parser *sse_parser_new(size_t max_event_bytes, sse_event_fn fn, void *arg);
void sse_parser_free(struct sse_parser *p);
/* 0, or -E2BIG when an event exceeds the bound. */
int sse_parser_feed(struct sse_parser *p, const char *data, size_t len);

/* One event in wire form (owned): id, event and data lines, blank line. */
char *sse_format(const char *id, const char *event, const char *data);

#endif
