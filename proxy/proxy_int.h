/*
 * proxy_int: what the files of proxy/ share. Not included outside proxy/.
 */
#ifndef MCPGATE_PROXY_PROXY_INT_H
#define MCPGATE_PROXY_PROXY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/httpc.h"
#include "common/principal.h"
#include "conf/config.h"
#include "proxy/guard.h"
#include "proxy/proxy.h"

struct http_request;
struct proxy_session;

#define PROXY_SESSION_BUCKETS 1024
#define PROXY_DEFAULT_PROTOCOL "2025-03-26" /* no MCP-Protocol-Version header (TR25) */
#define PROXY_KEEPALIVE_MS 15000

struct proxy {
    const struct gw_config *cfg; /* borrowed; swapped on reload */
    struct event_base *base;     /* borrowed */
    struct store *store;         /* borrowed */
    struct httpc *httpc;         /* borrowed */
    proxy_auth_fn auth;
    void *auth_arg;                                        /* borrowed */
    const struct jws_key *signer;                          /* borrowed, may be NULL */
    struct cluster *cluster;                               /* borrowed, may be NULL */
    struct gw_metrics *metrics;                            /* borrowed, may be NULL */
    struct proxy_session *sessions[PROXY_SESSION_BUCKETS]; /* live sessions, owned */
    struct proxy_session *ended; /* ended sessions waiting for their child to be reaped */
    size_t n_sessions;
    uint64_t ring_bytes; /* event-ring bytes of every session (server.limits.event_ring_total) */
    struct route_binding *bindings;              /* owned: one per registered route path */
    struct http_binding_sessions *http_sessions; /* owned: upstream session → owner */
    struct bridge *bridges;                      /* owned: 2024-11-05 clients of HTTP upstreams */
    struct exchange *exchanges;     /* borrowed list of HTTP-upstream exchanges in flight */
    struct mchild *modern;          /* owned: the 2026-07-28 pool (modern.c) */
    struct warm *warm;              /* owned: pre-started children for new sessions (warm.c) */
    struct event *warm_timer;       /* owned: refills the warm pools */
    struct mg_principal *anonymous; /* one holder: the caller on every `auth: none` route */
};

/* What a handler knows about the request it serves. */
/*
 * ROUTE points into the config current when the request arrived; a SIGHUP
 * frees that config, so code that runs after the loop turned (upstream and
 * store callbacks) must use proxy_call_route() instead.
 */
struct proxy_call {
    struct proxy *proxy;                 /* borrowed */
    const struct gw_route_config *route; /* borrowed: valid until the loop turns */
    char *route_name;                    /* owned */
    struct http_request *req;            /* borrowed until answered */
    struct mg_principal *principal;      /* owned */
    char *protocol_version;              /* owned: from the header, or the default */
};

/* ---- call.c ------------------------------------------------------------------- */

void proxy_call_free(struct proxy_call *call);
/* The call's route in the current config, or NULL when a reload removed it. */
const struct gw_route_config *proxy_call_route(const struct proxy_call *call);
/* Who owns what the call creates (sessions, children, upstream session
 * bindings): the subject, or "anonymous:<client address>" on an auth: none
 * route. Owned by the caller. */
char *proxy_call_owner(const struct proxy_call *call);

/* Replies with a JSON-RPC error body (null id) and the given HTTP status. */
void proxy_reply_rpc_error(struct http_request *req, int status, int code, const char *message);
/* Starts the 2024-11-05 stream on REQ: keep-alives, close callback, the endpoint event. */
void proxy_legacy_stream_open(struct http_request *req, const char *messages_path,
                              const char *session_id,
                              void (*on_close)(struct http_request *, void *), void *arg);

/* A session id: "<instance tag>.<random>" in a cluster (proxy/cluster.h), else random. */
#define PROXY_SESSION_ID_MAX 56
void proxy_session_id_new(const struct proxy *p, char out[PROXY_SESSION_ID_MAX]);

/* ---- route.c ---------------------------------------------------------------- */

/* Frees the route bindings (proxy_free). */
void route_bindings_free(struct proxy *p);

/* ---- session.c: STDIO sessions ------------------------------------------ */

/* Answers the POST of CALL with the messages the guard passed (borrowed: copy what you keep). */
void session_handle_post(struct proxy_call *call, const struct guard_body *body);
void session_handle_get(struct proxy_call *call);
void session_handle_delete(struct proxy_call *call);
/* Legacy 2024-11-05 transport: GET <route>/sse and POST <route>/messages. */
void session_handle_legacy_sse(struct proxy_call *call, const char *messages_path);
/* Exactly one of BODY and REFUSAL (a refused request, answered on the session's stream). */
void session_handle_legacy_post(struct proxy_call *call, const char *session_id,
                                const struct guard_body *body, const struct guard_refusal *refusal);
void sessions_end_all(struct proxy *p, const char *reason);
/* Children of ROUTE that run or are stopping (stdio.max_processes), sessions' only. */
size_t sessions_of_route(const struct proxy *p, const char *route);
/* Every child of ROUTE: sessions', the warm pool's and the 2026-07-28 pool's. */
size_t route_children(const struct proxy *p, const char *route);
/* ROUTE's live STDIO sessions and their open streams (GET, SSE answers, 2024-11-05). */
void sessions_count(const struct proxy *p, const char *route, size_t *sessions, size_t *streams);
/* Ends every session of GRANT_ID (the grant ended: revoked, expired, refused by the IdP). */
void sessions_end_grant(struct proxy *p, const char *grant_id);
/* MG_CHANNEL_SESSION_END: the session ID ends here if this instance has it. */
void sessions_end_id(struct proxy *p, const char *id);
void sessions_end_get_streams(struct proxy *p);
void sessions_free_all(struct proxy *p);

/* ---- identity.c ------------------------------------------------------------ */

/* The child's whole environment for ROUTE and P: NULL-terminated, owned (free with
 * identity_env_free). Route env, then the passthrough names, then MCP_USER_*. */
char **identity_child_env(const struct proxy *proxy, const struct gw_route_config *route,
                          const struct mg_principal *p);
void identity_env_free(char **env);
/* The signed identity assertion for ROUTE (owned), or NULL when none is configured. */
char *identity_jwt(const struct proxy *proxy, const struct gw_route_config *route,
                   const struct mg_principal *p);
/*
 * The identity an HTTP upstream gets as request headers (DESIGN §6): the
 * X-MCP-User-* and X-MCP-Scopes/-Client-Id headers when the route's
 * identity.headers is on, X-MCP-IdP-Access-Token when it forwards the IdP
 * token, X-MCP-Identity when assertions are signed. Values are borrowed from
 * P or owned by the struct; identity_headers_clear() frees them.
 */
#define IDENTITY_MAX_HEADERS 10
struct identity_headers {
    struct httpc_header h[IDENTITY_MAX_HEADERS];
    size_t n;
    char *owned[4];
    size_t n_owned;
};
void identity_headers_build(struct identity_headers *out, const struct proxy *proxy,
                            const struct gw_route_config *route, const struct mg_principal *p);
void identity_headers_clear(struct identity_headers *ih);

/* A digest of everything identity.c can tell a child about P (sub, names, email, client,
 * roles, groups, scopes): a child serves one caller, so a different digest means another
 * child (review F10). */
void identity_caller_digest(const struct mg_principal *p, unsigned char out[32]);

/* The JSON object text params._meta["io.mcpgate/principal"] carries for P (owned). */
char *identity_meta_json(const struct mg_principal *p);

/* ---- call_metrics.c: per-route metrics (tool calls, upstream latency, gauges) ---- */

/* One forwarded request, from its forwarding to its answer. */
struct call_obs {
    uint64_t start_us; /* 0: not observed, or already counted */
    bool tool_call;
    char tool[64]; /* params.name of a tools/call; "" when absent or longer */
};
/* Declares the families, so /metrics lists them before anything happens. */
void call_metrics_declare(struct proxy *p);
/* M: the request as inspected; its refs index TEXT. */
void call_obs_start(struct call_obs *o, const struct jsonrpc_msg *m, const char *text);
/* The answer ANSWER came (its outcome is read from it), or none did: NO_ANSWER is the
 * outcome then ("failed", "cancelled"). Counts once; later calls do nothing. */
void call_obs_end(struct proxy *p, const char *route, struct call_obs *o,
                  const struct jsonrpc_msg *answer, const char *no_answer);
/* The same for an HTTP upstream, whose answer streams through unparsed: STATUS is
 * its HTTP status (2xx: ok, else error), 0 when the client left first ("cancelled"),
 * -1 when the exchange failed ("failed"). */
void call_obs_end_http(struct proxy *p, const char *route, struct call_obs *o, long status);
/* A tools/call of TOOL the policy refused (it never reached the upstream). */
void call_metrics_refused(struct proxy *p, const char *route, const char *tool);
/* At each scrape: the per-route gauges. */
void call_metrics_scrape(struct proxy *p);

/* ---- modern.c: 2026-07-28 requests in front of legacy STDIO servers ---------- */

/* Answers a modern POST (BODY borrowed) on a STDIO route with modern: true. */
void modern_handle(struct proxy_call *call, const struct guard_body *body);
size_t modern_children_of_route(const struct proxy *p, const char *route);
void modern_end_grant(struct proxy *p, const char *grant_id);
void modern_stop_all(struct proxy *p);
void modern_free_all(struct proxy *p);

/* ---- warm.c: pre-started children for new sessions (stdio.warm) ------------- */

/* Refills every route's warm pool from the loop, soon (never on a request's path). */
void warm_refill_later(struct proxy *p);
/* A ready warm child of ROUTE for a client asking protocol VERSION, with its
 * InitializeResult text (*INIT_RESULT, owned); NULL when there is none. */
struct stdio_child *warm_take(struct proxy *p, const char *route, const char *version,
                              char **init_result);
size_t warm_children_of_route(const struct proxy *p, const char *route);
void warm_stop_all(struct proxy *p);
void warm_free_all(struct proxy *p);

/* ---- http_upstream.c --------------------------------------------------------- */

/* BODY: what the guard passed (borrowed), or NULL for GET and DELETE. */
void http_upstream_handle(struct proxy_call *call, const struct guard_body *body);
void http_upstream_free_all(struct proxy *p);
/*
 * Starts ROUTE's command as a child told WHO (NULL: nobody yet, a warm child)
 * through the route's identity environment, with the route's limits. The one
 * place a child is spawned (sessions, modern requests, the warm pool).
 */
struct stdio_child_callbacks;
struct stdio_child *proxy_spawn_child(struct proxy *p, const struct gw_route_config *r,
                                      const struct mg_principal *who, const char *log_tag,
                                      const struct stdio_child_callbacks *cbs, void *arg,
                                      char **err_out);

/* 2024-11-05 bridges open (legacy_http.c); those of ROUTE with their client's stream open. */
size_t legacy_http_bridges(const struct proxy *p);
size_t legacy_http_streams_of_route(const struct proxy *p, const char *route);
/* ROUTE's exchanges with an HTTP upstream whose answer is streaming to the client. */
size_t http_upstream_streams_of_route(const struct proxy *p, const char *route);
/* Listens for bindings re-bound on other instances (proxy_new). */
int http_upstream_subscribe(struct proxy *p);
/* Upstream session bindings held (F12: bounded, idle ones expire). */
size_t http_upstream_bindings(const struct proxy *p);
/* Draining: ends the long-lived GET streams to HTTP upstreams. */
void http_upstream_drain(struct proxy *p);

/* ---- legacy_http.c: the 2024-11-05 transport in front of HTTP upstreams --------- */

void legacy_http_open(struct proxy_call *call, const char *messages_path);
void legacy_http_post(struct proxy_call *call, const char *session_id,
                      const struct guard_body *body, const struct guard_refusal *refusal);
void legacy_http_drain(struct proxy *p);
void legacy_http_free_all(struct proxy *p);

#endif
