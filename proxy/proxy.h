/*
 * proxy: the MCP endpoint of every route (Streamable HTTP 2025-03-26 …
 * 2025-11-25, plus the 2024-11-05 HTTP+SSE transport) and the way to the
 * MCP server behind it: a STDIO child per session, or an HTTP upstream
 * (DESIGN §7).
 *
 * proxy/ never includes oauth/: the gateway hands it an authentication
 * function that answers failures itself and, on success, continues with the
 * caller's struct mg_principal.
 */
#ifndef MCPGATE_PROXY_PROXY_H
#define MCPGATE_PROXY_PROXY_H

#include <stddef.h>
#include <stdio.h>

#include "common/principal.h"
#include "conf/config.h"

struct event_base;
struct http_server;
struct http_request;
struct httpc;
struct store;
struct proxy;
struct gw_metrics;
struct jws_key;

/* Authenticate REQ for ROUTE: call OK, or answer the request (401/403/503) and not call OK. */
typedef void (*proxy_auth_fn)(void *auth_arg, struct http_request *req,
                              const struct gw_route_config *route, mg_authed_fn ok, void *ok_arg);

struct proxy_deps {
    struct event_base *base; /* borrowed */
    struct store *store;     /* borrowed */
    struct httpc *httpc;     /* borrowed */
    proxy_auth_fn auth;
    void *auth_arg;               /* borrowed */
    const struct jws_key *signer; /* borrowed; NULL: no identity assertions */
    struct cluster *cluster;      /* borrowed; NULL: a single instance */
    struct gw_metrics *metrics;   /* borrowed; NULL: nothing recorded */
};

struct proxy *proxy_new(const struct gw_config *cfg, const struct proxy_deps *deps);
/* Ends every session (children get the stop sequence) and frees the proxy. */
void proxy_free(struct proxy *p);
/* New config (borrowed): new requests see it; running sessions keep their route's command. */
void proxy_set_config(struct proxy *p, const struct gw_config *cfg);
/* A new identity signing key (borrowed), after a reload; NULL turns assertions off. */
void proxy_set_signer(struct proxy *p, const struct jws_key *signer);
/* Registers the MCP endpoint (and <path>/sse, <path>/messages) of every route. */
int proxy_register_routes(struct proxy *p, struct http_server *http);
/* The same on the cluster's internal listener: only hops from peers are served there. */
int proxy_register_internal_routes(struct proxy *p, struct http_server *internal);
/* Draining begins: end the long-lived GET streams (clients reconnect elsewhere);
 * requests in flight go on. */
void proxy_drain(struct proxy *p);
/* Stop every session: children get the stop sequence. Returns children still alive. */
size_t proxy_shutdown(struct proxy *p);

size_t proxy_session_count(const struct proxy *p);
size_t proxy_children_alive(const struct proxy *p);

/* What the proxy holds now, for /metrics and the soak. */
struct proxy_stats {
    size_t sessions;          /* STDIO sessions, both transports */
    size_t children;          /* child processes alive (stop sequences included) */
    size_t legacy_bridges;    /* 2024-11-05 clients of HTTP upstreams */
    size_t upstream_bindings; /* HTTP-upstream Mcp-Session-Id bindings */
};
void proxy_get_stats(const struct proxy *p, struct proxy_stats *out);
/* Brings the per-route gauges in the metrics up to date (before each scrape). */
void proxy_metrics_scrape(struct proxy *p);

/*
 * Administration (`mcpgate sessions …`), on the store alone: no proxy needed.
 * DONE runs once with 0 or a negative errno and a message (-ENOENT: no such
 * session; -ETIMEDOUT: no instance ended it; -EIO: the store).
 */
typedef void (*proxy_admin_done_fn)(int rc, const char *message, void *arg);
/* Writes one row per session (USER, ROUTE filter when not NULL) to OUT. */
void proxy_admin_list_sessions(struct store *st, struct event_base *base, const char *user,
                               const char *route, FILE *out, proxy_admin_done_fn done, void *arg);
/* ID: the whole session id, or a unique prefix of at least 8 characters. */
void proxy_admin_end_session(struct store *st, struct event_base *base, const char *id,
                             proxy_admin_done_fn done, void *arg);

#endif
