/*
 * warm: pre-started, pre-initialized children for new sessions of a route
 * (`stdio.warm: N`), so that a new session does not wait for its server to
 * start. Only for routes whose identity reaches the child per request
 * (identity.meta) and not in its environment (check-config refuses
 * identity.env, jwt or idp_access_token with warm): a warm child is started
 * before its user is known.
 *
 * A warm child is initialized by the gateway (protocol 2025-11-25, empty
 * client capabilities, as proxy/modern.c does) and handed, once, to a new
 * session whose client asks for that same protocol version; the client's
 * initialize is answered from the child's InitializeResult and its
 * notifications/initialized is not repeated to the child. A child is never
 * handed twice, so it never serves two users. The pool refills from a timer,
 * after the request that took a child was answered, never on its path.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/log.h"
#include "common/panic.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "proxy/jsonrpc.h"
#include "proxy/proxy_int.h"
#include "proxy/stdio.h"

#define WARM_VERSION "2025-11-25"

struct warm {
    struct proxy *proxy;       /* borrowed */
    char *route_name;          /* owned */
    struct stdio_child *child; /* owned until taken */
    char *init_result;         /* owned: the InitializeResult object text, once ready */
    bool stopping;             /* stopped by the gateway: its exit is expected */
    struct warm *next;         /* owned list in the proxy */
};

static void warm_unlink(struct warm *w)
{
    for (struct warm **pp = &w->proxy->warm; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            return;
        }
    }
}

static void warm_free(struct warm *w)
{
    stdio_child_free(w->child);
    free(w->route_name);
    free(w->init_result);
    free(w);
}

static void on_warm_line(struct stdio_child *c, const char *line, size_t len, void *arg)
{
    struct warm *w = arg;
    (void)c;
    if (w->init_result)
        return; /* nothing else is asked of it until a session takes it */
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, 0, &jerr);
    json_t *result = json_object_get(msg, "result");
    json_t *id = json_object_get(msg, "id");
    if (json_is_integer(id) && json_integer_value(id) == 0 && json_is_object(result) &&
        json_is_string(json_object_get(result, "protocolVersion")) &&
        strcmp(json_string_value(json_object_get(result, "protocolVersion")), WARM_VERSION) == 0) {
        w->init_result = json_dumps(result, JSON_COMPACT);
        static const char initialized[] =
            "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
        stdio_child_send(w->child, initialized, sizeof(initialized) - 1);
    } else if (json_is_integer(id) && json_integer_value(id) == 0) {
        gw_log(GW_LOG_WARN, "proxy", NULL,
               "a warm child did not accept protocol " WARM_VERSION ": not kept", "route",
               w->route_name, NULL);
        w->stopping = true;
        stdio_child_stop(w->child);
    }
    json_decref(msg);
}

static void on_warm_exit(struct stdio_child *c, int status, const char *reason, void *arg)
{
    struct warm *w = arg;
    (void)c;
    (void)status;
    if (!w->stopping)
        gw_log(GW_LOG_WARN, "proxy", NULL, "a warm child exited before a session took it", "route",
               w->route_name, "reason", reason, NULL);
    warm_unlink(w);
    warm_free(w); /* stdio.h: freeing the handle inside its own callback is allowed */
}

static size_t warm_count(const struct proxy *p, const char *route)
{
    size_t n = 0;
    for (const struct warm *w = p->warm; w; w = w->next)
        n += strcmp(w->route_name, route) == 0;
    return n;
}

static void warm_spawn(struct proxy *p, const struct gw_route_config *r)
{
    struct warm *w = xcalloc(1, sizeof(*w));
    w->proxy = p;
    w->route_name = xstrdup(r->name);
    static const struct stdio_child_callbacks cbs = {.on_line = on_warm_line,
                                                     .on_exit = on_warm_exit};
    char *err = NULL;
    w->child = proxy_spawn_child(p, r, NULL, r->name, &cbs, w, &err);
    if (w->child == NULL) {
        gw_log(GW_LOG_ERROR, "proxy", NULL, "cannot start a warm child", "route", r->name, "error",
               err, NULL);
        free(err);
        free(w->route_name);
        free(w);
        return;
    }
    w->next = p->warm;
    p->warm = w;
    static const char init[] =
        "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
        "\"" WARM_VERSION "\",\"capabilities\":{},\"clientInfo\":{\"name\":\"mcpgate\","
        "\"version\":\"" MCPGATE_VERSION "\"}}}";
    stdio_child_send(w->child, init, sizeof(init) - 1);
}

/* Tops every route's pool up to its stdio.warm, within stdio.max_processes. */
static void on_refill(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct proxy *p = arg;
    /* A reload may have removed a route or its pool: those children go. */
    for (struct warm *w = p->warm; w; w = w->next) {
        const struct gw_route_config *r = gw_config_route_by_name(p->cfg, w->route_name);
        if (r == NULL || r->stdio.warm == 0 || r->kind != GW_UPSTREAM_STDIO) {
            w->stopping = true;
            stdio_child_stop(w->child);
        }
    }
    for (size_t i = 0; i < p->cfg->n_routes; i++) {
        const struct gw_route_config *r = &p->cfg->routes[i];
        if (r->kind != GW_UPSTREAM_STDIO || r->stdio.warm == 0)
            continue;
        while (warm_count(p, r->name) < r->stdio.warm &&
               warm_count(p, r->name) + sessions_of_route(p, r->name) +
                       modern_children_of_route(p, r->name) <
                   r->stdio.max_processes)
            warm_spawn(p, r);
    }
}

void warm_refill_later(struct proxy *p)
{
    if (p->warm_timer == NULL)
        p->warm_timer = xevtimer_new(p->base, on_refill, p);
    struct timeval now = {0, 0};
    evtimer_add(p->warm_timer, &now);
}

struct stdio_child *warm_take(struct proxy *p, const char *route, const char *version,
                              char **init_result)
{
    for (struct warm **pp = &p->warm; *pp; pp = &(*pp)->next) {
        struct warm *w = *pp;
        if (w->init_result && strcmp(w->route_name, route) == 0 && version &&
            strcmp(version, WARM_VERSION) == 0) {
            *pp = w->next;
            struct stdio_child *c = w->child;
            *init_result = w->init_result;
            free(w->route_name);
            free(w);
            warm_refill_later(p);
            return c;
        }
    }
    return NULL;
}

size_t warm_children_of_route(const struct proxy *p, const char *route)
{
    return warm_count(p, route);
}

void warm_free_all(struct proxy *p)
{
    while (p->warm) {
        struct warm *w = p->warm;
        p->warm = w->next;
        warm_free(w);
    }
    if (p->warm_timer)
        event_free(p->warm_timer);
    p->warm_timer = NULL;
}

void warm_stop_all(struct proxy *p)
{
    for (struct warm *w = p->warm; w; w = w->next) {
        w->stopping = true;
        stdio_child_stop(w->child);
    }
}
