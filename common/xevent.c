/* xevent: libevent constructors that abort on allocation failure (xevent.h). */
#include "common/xevent.h"

#include <event2/buffer.h>

#include "common/panic.h"

struct event *xevent_new(struct event_base *base, evutil_socket_t fd, short what,
                         event_callback_fn fn, void *arg)
{
    struct event *ev = event_new(base, fd, what, fn, arg);
    if (ev == NULL)
        GW_PANIC("out of memory (event_new)");
    return ev;
}

struct event *xevtimer_new(struct event_base *base, event_callback_fn fn, void *arg)
{
    return xevent_new(base, -1, 0, fn, arg);
}

struct evbuffer *xevbuffer_new(void)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        GW_PANIC("out of memory (evbuffer_new)");
    return b;
}

void xevent_defer(struct event_base *base, event_callback_fn fn, void *arg)
{
    struct timeval now = {0, 0};
    if (event_base_once(base, -1, EV_TIMEOUT, fn, arg, &now) < 0)
        GW_PANIC("event_base_once fails only when malloc does");
}
