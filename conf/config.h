/*
 * config: the types of the gateway's configuration (DESIGN §3), one
 * immutable struct gw_config, and the lookups modules make on it. Neutral
 * ground: every module reads these types, none of them loads them. The
 * schema that fills them is split by owner (http/http_conf.c,
 * store/store_conf.c, oauth/oauth_conf.c, proxy/route_conf.c,
 * gateway/config.c), the engine is conf/conf.h, and loading is
 * gateway/config.h.
 *
 * Ownership: a loaded config owns every string and array inside it;
 * gw_config_free() (gateway/config.h) releases it all. A loaded config is
 * never modified: SIGHUP loads a new one and swaps the pointer.
 *
 * Secrets (idp.client_secret, store.redis.password, oauth secret) are held in
 * memory only; gw_config_free() wipes them with OPENSSL_cleanse.
 */
#ifndef MCPGATE_CONF_CONFIG_H
#define MCPGATE_CONF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "common/net.h"

/* ---- small shared pieces -------------------------------------------- */

struct gw_string_list {
    char **items; /* owned, each owned */
    size_t len;
};

/* A key/value map with insertion order kept (route env, scopes). */
struct gw_string_map {
    char **keys;   /* owned */
    char **values; /* owned */
    size_t len;
};

/* ---- server ---------------------------------------------------------- */

struct gw_limits {
    uint64_t max_body_bytes;          /* default 4 MiB */
    uint64_t max_header_bytes;        /* default 16 KiB (request line + headers) */
    uint32_t max_connections;         /* default 20000 */
    uint32_t max_connections_per_ip;  /* per TCP peer address (IPv6 /64), default 256 */
    uint32_t open_files;              /* RLIMIT_NOFILE set at start; 0 (default): the hard limit */
    uint32_t max_sessions;            /* default 10000 */
    uint32_t max_sessions_per_user;   /* default 20 */
    uint32_t event_ring;              /* events kept per session, default 256 */
    uint32_t max_streams_per_session; /* default 4 */
    uint64_t sse_high_water_bytes;    /* slow-reader bound per stream, default 1 MiB */
    uint64_t request_timeout_ms;      /* reading a request, default 30 s */
    uint64_t idle_timeout_ms;         /* idle keep-alive connection, default 120 s */
    uint64_t header_timeout_ms;       /* request line + headers in total, default 20 s */
    uint64_t body_timeout_ms;         /* a request body in total, default 60 s */
    uint64_t lingering_bytes;         /* drained after an answer that closes, default 64 MiB */
    uint64_t lingering_time_ms;       /* ... for at most, default 30 s */
    uint64_t lingering_timeout_ms;    /* ... waiting for each read at most, default 5 s */
    uint64_t shutdown_grace_ms;       /* drain on SIGTERM, default 10 s */
    uint32_t max_pending_authorizations; /* per client IP, default 100 */
    uint32_t outbound_idle_connections;  /* kept for reuse by the HTTP client, default 256 */
    /* MCP sessions (proxy/session.c) */
    uint32_t max_pending_per_session; /* requests in flight per session, default 64 */
    uint32_t max_upstream_sessions;   /* HTTP-upstream session bindings kept, default 100000 */
    uint64_t event_ring_bytes;        /* ring bytes per session, default 4 MiB */
    uint64_t event_ring_total_bytes;  /* ring bytes of all sessions, default 256 MiB */
};

struct gw_server_config {
    struct gw_string_list listen; /* "0.0.0.0:8080", "[::]:8080", "unix:/path" */
    char *public_url;             /* scheme://host[:port], no path, no trailing slash */
    bool public_url_https;        /* derived: scheme is https */
    char *tls_cert;               /* NULL when TLS is off */
    char *tls_key;
    struct net_cidr *trusted_proxies; /* owned */
    size_t n_trusted_proxies;
    struct gw_string_list allowed_origins;
    bool allow_unauthenticated_routes;
    struct gw_limits limits;
};

/* ---- store ----------------------------------------------------------- */

enum gw_store_backend {
    GW_STORE_REDIS = 0,
    GW_STORE_MEMORY,
};

struct gw_store_config {
    enum gw_store_backend backend; /* default redis */
    char *redis_url;               /* default "redis://127.0.0.1:6379/0" */
    char *redis_password;          /* NULL or secret (also redis.password_file) */
    char *prefix;                  /* default "mcpgate:" */
    uint64_t timeout_ms;           /* per command, default 2 s */
    char *redis_tls_ca_file;       /* NULL: the system CAs (rediss:// only) */
    char *redis_tls_cert_file;     /* client certificate, with redis_tls_key_file */
    char *redis_tls_key_file;
    char *redis_tls_server_name;           /* NULL: the URL's host */
    bool redis_tls_verify;                 /* default true */
    struct gw_string_list redis_sentinels; /* "host:port" each; empty: no Sentinel */
    char *redis_master_name;               /* default "mymaster" (with sentinels) */
    char *redis_sentinel_password;         /* NULL or secret */
    bool redis_sentinel_tls;               /* TLS to the sentinels too (rediss:// only) */
};

/* ---- idp ------------------------------------------------------------- */

enum gw_idp_preset {
    GW_IDP_ASGARDEO = 0,
    GW_IDP_OIDC,
};

enum gw_token_auth {
    GW_TOKEN_AUTH_CLIENT_SECRET_BASIC = 0,
    GW_TOKEN_AUTH_CLIENT_SECRET_POST,
};

struct gw_idp_claims {
    char *subject;  /* default "sub" */
    char *username; /* default "username" */
    char *email;    /* default "email" */
    char *name;     /* default "name" */
    char *roles;    /* default "roles" */
    char *groups;   /* default "groups" */
};

struct gw_idp_config {
    bool configured; /* false when the idp: section is absent */
    enum gw_idp_preset preset;
    char *organization; /* asgardeo */
    char *base_url;     /* asgardeo: default https://api.asgardeo.io (tests point it at loopback) */
    char *issuer;       /* oidc: given; asgardeo: derived <base_url>/t/<org>/oauth2/token */
    char *client_id;
    char *client_secret; /* secret; or client_secret_file */
    enum gw_token_auth token_auth;
    struct gw_string_list scopes; /* default openid profile email roles */
    struct gw_idp_claims claims;
    uint64_t leeway_ms;            /* default 60 s */
    uint64_t discovery_refresh_ms; /* default 1 h */
    uint64_t timeout_ms;           /* outbound HTTP, default 10 s */
    bool use_userinfo; /* call userinfo when role/group claims are absent, default true */
    /* Renew the IdP sign-in at every refresh of mcpgate's tokens: a user the IdP
     * disabled loses the grant, changed roles and groups take effect (F7b). */
    bool recheck_on_refresh; /* default false */
};

/* ---- oauth ----------------------------------------------------------- */

enum gw_client_auth {
    GW_CLIENT_AUTH_NONE = 0,
    GW_CLIENT_AUTH_CLIENT_SECRET_BASIC,
    GW_CLIENT_AUTH_CLIENT_SECRET_POST,
};

struct gw_static_client {
    char *client_id;
    char *client_name; /* optional */
    struct gw_string_list redirect_uris;
    enum gw_client_auth auth;
    char *client_secret; /* secret; required unless auth none (or client_secret_file) */
};

struct gw_oauth_config {
    unsigned char *secret; /* owned, secret_len bytes (>= 32), from secret_file or secret */
    size_t secret_len;
    uint64_t access_token_ttl_ms;         /* default 1 h */
    uint64_t refresh_token_ttl_ms;        /* default 30 d */
    uint64_t refresh_grace_ms;            /* default 0 */
    uint64_t code_ttl_ms;                 /* default 60 s */
    uint64_t authorize_ttl_ms;            /* pending authorization, default 10 min */
    bool require_resource;                /* default false */
    struct gw_string_map scopes;          /* scope -> consent text; default {"mcp:tools": …} */
    bool registration_enabled;            /* default true */
    bool registration_public_clients;     /* default true */
    uint64_t registration_client_ttl_ms;  /* default 90 d */
    uint32_t registration_rate_count;     /* "10/min" -> 10 */
    uint64_t registration_rate_window_ms; /* "10/min" -> 60000 */
    uint64_t registration_max_body_bytes; /* default 64 KiB */
    struct gw_static_client *clients;     /* owned */
    size_t n_clients;
    uint64_t consent_remember_ms;    /* default 30 d; 0 = never remember */
    bool account_enabled;            /* /account: a person's connected applications, default on */
    char *account_path;              /* default "/account" */
    uint64_t account_session_ttl_ms; /* its sign-in lasts this long, default 15 min */
    uint64_t max_grant_lifetime_ms;  /* a grant refreshes for at most this long; 0 = no limit */
    uint32_t token_rate_count;       /* /token requests per client address (/64), default 600/min */
    uint64_t token_rate_window_ms;
    uint32_t authorize_rate_count; /* GET and POST /authorize per client address, default 300/min */
    uint64_t authorize_rate_window_ms;
    uint32_t callback_rate_count; /* /callback per client address, default 300/min */
    uint64_t callback_rate_window_ms;
    /* Client ID Metadata Documents (oauth/cimd.c): https client_ids fetched and cached */
    bool cimd_enabled;                      /* default true */
    struct gw_string_list cimd_allow_hosts; /* fetched even when they resolve to private IPs */
    struct gw_string_list cimd_deny_hosts;  /* never fetched */
    uint32_t cimd_cache_entries;            /* validated documents kept, LRU, default 1000 */
    uint64_t cimd_timeout_ms;               /* whole fetch, default 5 s */
    uint64_t cimd_max_document_bytes;       /* default 5 KiB (draft §6.6) */
    char *cimd_ca_file;                     /* NULL: the system's CA bundle */
};

/* ---- identity -------------------------------------------------------- */

struct gw_identity_config {
    char *signing_key_file;  /* ES256 PEM; NULL: identity JWTs disabled */
    char *previous_key_file; /* optional, published in JWKS for rotation */
    uint64_t jwt_ttl_ms;     /* default 5 min, max 5 min */
};

/* ---- routes ---------------------------------------------------------- */

enum gw_upstream_kind {
    GW_UPSTREAM_STDIO = 0,
    GW_UPSTREAM_HTTP,
};

/* How 2026-07-28 requests reach a STDIO route's server (proxy/modern.c). */
enum gw_stdio_pool {
    GW_POOL_SHARED = 0,  /* one pre-initialized child per (caller, route), reused */
    GW_POOL_PER_REQUEST, /* spawn, initialize, call, stop: for servers that must not share state */
};

struct gw_stdio_upstream {
    struct gw_string_list command; /* argv, at least one element */
    struct gw_string_map env;
    struct gw_string_list env_passthrough;
    char *cwd;                 /* NULL: the gateway's cwd */
    uint64_t idle_timeout_ms;  /* default 15 min */
    uint32_t max_processes;    /* default 200 */
    uint64_t max_line_bytes;   /* stdout line limit, default 4 MiB */
    uint64_t kill_grace_ms;    /* each shutdown step, default 2 s */
    uint64_t write_timeout_ms; /* how long input may wait for a child that does not read, 30 s */
    enum gw_stdio_pool pool;   /* modern requests: one child per caller, or per request */
    uint32_t warm;             /* pre-started, pre-initialized children for new sessions, 0 */
    uint32_t nice;             /* added to the gateway's niceness for the children, 0 to 19 */
};

struct gw_http_upstream {
    char *url;
    uint64_t connect_timeout_ms; /* default 5 s */
    uint64_t timeout_ms;         /* whole request, default 60 s; 0 = none for streams */
    uint64_t idle_timeout_ms;    /* no bytes from upstream, default 300 s */
    uint64_t session_idle_ms;    /* an unused Mcp-Session-Id binding is forgotten, default 1 h */
};

struct gw_requirements {
    struct gw_string_list scopes; /* all of */
    struct gw_string_list roles;  /* any of (empty: no condition) */
    struct gw_string_list groups; /* any of (empty: no condition) */
};

struct gw_route_identity {
    bool env;              /* stdio: MCP_USER_* variables, default true */
    bool headers;          /* http: X-MCP-User-* headers, default true */
    bool jwt;              /* X-MCP-Identity / MCP_IDENTITY_JWT, default true */
    bool meta;             /* params._meta["io.mcpgate/principal"], default false */
    bool idp_access_token; /* default false */
};

enum gw_policy_effect {
    GW_POLICY_ALLOW = 0,
    GW_POLICY_DENY,
};

/* One `tools:` (or prompts:/resources:) rule: the first whose glob matches decides. */
struct gw_access_rule {
    char *match;                  /* glob on the tool/prompt name or resource URI */
    struct gw_string_list roles;  /* any of */
    struct gw_string_list groups; /* any of */
    struct gw_string_list scopes; /* all of */
    bool deny;                    /* `deny: true`: a match denies outright */
    unsigned line;                /* where the rule was written, for `explain` */
};

struct gw_access_rules {
    struct gw_access_rule *rules; /* owned */
    size_t len;
    enum gw_policy_effect default_effect; /* default allow */
};

enum gw_route_auth {
    GW_ROUTE_AUTH_OAUTH = 0,
    GW_ROUTE_AUTH_NONE,
};

struct gw_route_config {
    char *name;
    char *path;         /* starts with '/', no trailing slash, no query */
    char *resource_url; /* derived: public_url + path */
    char *description;  /* optional, shown on the consent page */
    enum gw_route_auth auth;
    enum gw_upstream_kind kind;
    struct gw_stdio_upstream stdio; /* when kind == GW_UPSTREAM_STDIO */
    struct gw_http_upstream http;   /* when kind == GW_UPSTREAM_HTTP */
    struct gw_requirements require;
    struct gw_route_identity identity;
    struct gw_access_rules tools;
    struct gw_access_rules prompts; /* rules empty and default allow when absent */
    struct gw_access_rules resources;
    bool modern;   /* also serve MCP 2026-07-28 (stateless) requests: proxy/modern.c */
    unsigned line; /* where the route was written */
};

/* ---- log, metrics ---------------------------------------------------- */

enum gw_log_format {
    GW_LOG_FORMAT_JSON = 0,
};

struct gw_log_config {
    int level; /* enum gw_log_level, default info */
    enum gw_log_format format;
    bool access_log; /* default true */
};

struct gw_metrics_config {
    bool enabled;        /* default true */
    char *path;          /* default "/metrics" */
    char *listen;        /* NULL: served on the main listeners */
    uint32_t max_series; /* label sets per labelled family, default 1000 */
};

/* ---- cluster: several instances on one store (proxy/cluster.c) -------- */

struct gw_cluster_config {
    char *listen;          /* the internal listener; NULL: a single instance, no forwarding */
    char *advertise;       /* how the other instances reach it: http://host:port */
    unsigned char *secret; /* owned (secret_len bytes); NULL: derived from oauth.secret */
    size_t secret_len;
    uint64_t heartbeat_ms; /* default 5 s; the record lives 3 heartbeats */
};

/* ---- the whole ------------------------------------------------------- */

struct gw_config {
    char *source_path; /* the file it came from */
    struct gw_server_config server;
    struct gw_store_config store;
    struct gw_idp_config idp;
    struct gw_oauth_config oauth;
    struct gw_identity_config identity;
    struct gw_route_config *routes; /* owned */
    size_t n_routes;
    struct gw_log_config log;
    struct gw_metrics_config metrics;
    struct gw_cluster_config cluster;
};

/* Errors collected while loading: each message is "file:line:column: key.path: message". */
struct gw_config_errors {
    char **messages; /* owned */
    size_t len;
};

/* Lookups used across modules (conf/config.c); NULL when absent. */
const struct gw_route_config *gw_config_route_by_path(const struct gw_config *cfg,
                                                      const char *path);
const struct gw_route_config *gw_config_route_by_name(const struct gw_config *cfg,
                                                      const char *name);

#endif
