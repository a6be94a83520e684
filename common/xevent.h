/*
 * xevent: libevent constructors that cannot fail. event_new() and
 * evbuffer_new() fail only when malloc does, which mcpgate treats as an
 * impossible state (xalloc.h), so call sites carry no OOM branches.
 */
#ifndef MCPGATE_COMMON_XEVENT_H
#define MCPGATE_COMMON_XEVENT_H

#include <event2/event.h>

struct evbuffer;

struct event *xevent_new(struct event_base *base, evutil_socket_t fd, short what,
                         event_callback_fn fn, void *arg);
/* A timer (no fd, not persistent). */
struct event *xevtimer_new(struct event_base *base, event_callback_fn fn, void *arg);
struct evbuffer *xevbuffer_new(void);
/* Runs FN(-1, EV_TIMEOUT, ARG) once on the next turn of the loop: for answers
 * an API promises never to give inside the call. */
void xevent_defer(struct event_base *base, event_callback_fn fn, void *arg);

#endif
