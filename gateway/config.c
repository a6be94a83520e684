/*
 * config: the gateway's configuration (DESIGN §3) as one table of sections,
 * read by the engine in conf/conf.c into struct gw_config (conf/config.h).
 *
 * This file owns the root table, the checks across sections (route paths
 * against gateway paths, auth: none against listeners, what oauth routes
 * require), the defaults, loading and freeing a struct gw_config, and the
 * `check-config` summary.
 *
 * Ownership: the struct gw_config owns every string and array in it; the
 * descriptor tables drive gw_config_free() (conf_section_free()), which
 * wipes secrets with OPENSSL_cleanse.
 */
#include "gateway/config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/net.h"
#include "common/url.h"
#include "common/xalloc.h"
#include "conf/conf.h"
#include "oauth/redirect_uri.h"

#define ROUTE_NAME_MAX 64
#define OAUTH_SECRET_MIN_BYTES 32

CONF_ENUM_IS_INT(gw_store_backend);
CONF_ENUM_IS_INT(gw_idp_preset);
CONF_ENUM_IS_INT(gw_token_auth);
CONF_ENUM_IS_INT(gw_client_auth);
CONF_ENUM_IS_INT(gw_policy_effect);
CONF_ENUM_IS_INT(gw_route_auth);
CONF_ENUM_IS_INT(gw_log_format);

/*
 * A listen address's "host:port" or "[v6]:port": a thin wrapper over
 * net_split_hostport() that copies the host, without brackets, into host.
 * The port is required and may be 0 (a free port, which tests use).
 * Returns NULL or why not.
 */
static const char *parse_authority(const char *s, char *host, size_t host_size)
{
    unsigned port;
    return net_split_hostport(s, strlen(s), true, 0, host, host_size, &port);
}

/*
 * "host:port", "[v6]:port" or "unix:/abs/path", as http_server_listen() takes
 * them: the host is an IP address or "localhost" (no resolver at startup), a
 * socket path fits sockaddr_un.sun_path (108 bytes with its NUL).
 */
static const char *parse_listen(const char *s, bool *loopback)
{
    char host[256];
    struct in_addr a4;
    struct in6_addr a6;
    if (strncmp(s, "unix:", 5) == 0) {
        *loopback = true;
        if (s[5] != '/' || s[6] == '\0')
            return "a unix socket needs an absolute path";
        return strlen(s + 5) < 108 ? NULL : "the socket path is longer than 107 bytes";
    }
    const char *why = parse_authority(s, host, sizeof(host));
    if (why == NULL && strcmp(host, "localhost") != 0 && inet_pton(AF_INET, host, &a4) != 1 &&
        inet_pton(AF_INET6, host, &a6) != 1)
        why = "the host must be an IP address or localhost";
    *loopback = why == NULL && net_host_is_loopback(host);
    return why;
}

/*
 * http(s)://host[:port]…, split by url_split() (common/url.h, libcurl's URL
 * API). On NULL, U holds the parts and the caller clears it; otherwise U is
 * cleared and the reason is returned. libcurl is more lenient than a URL we
 * advertise or fetch should be, so the host must also pass net's host rules
 * (a DNS name, an IPv4 literal or a bracketed IPv6 one: no UTF-8 names) and
 * the port must be 1..65535 and not empty. Path, query and fragment are the
 * caller's to check on the raw text (url_after_authority()): url_split()
 * reports an empty path as "/".
 */
static const char *url_problem(const char *s, struct url_parts *u)
{
    size_t prefix = strncasecmp(s, "https://", 8) == 0  ? 8
                    : strncasecmp(s, "http://", 7) == 0 ? 7
                                                        : 0;
    memset(u, 0, sizeof(*u));
    if (prefix == 0)
        return "must start with http:// or https://";
    const char *end = url_after_authority(s); /* where the authority ends */
    if (end == s + prefix)
        return "the host is missing"; /* url_split() refuses it without saying why */
    if (!url_split(s, u))
        return "is not a valid URL";
    const char *why = NULL;
    char host[256];
    unsigned port;
    uint64_t n;
    if (u->user)
        why = "must not contain user info (user@)";
    else if (end[-1] == ':' || (u->port && !net_parse_uint(u->port, strlen(u->port), 1, 65535, &n)))
        why = "the port must be 1..65535"; /* libcurl takes "host:" and port 0 */
    else
        why = net_split_hostport(u->host, strlen(u->host), false, 1, host, sizeof(host), &port);
    if (why)
        url_parts_clear(u);
    return why;
}

/* ---- string checks: each reports its own error and returns false ------- */

static bool check_listen(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    bool loopback;
    const char *why = parse_listen(v, &loopback);
    if (why)
        conf_node_error(ld, at,
                        "invalid listen address \"%s\" (%s): use host:port, [v6]:port or "
                        "unix:/absolute/path",
                        v, why);
    return why == NULL;
}

/* scheme://host[:port] and nothing else: public_url, allowed_origins, idp.base_url. */
static bool check_origin_url(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    struct url_parts u;
    const char *why = url_problem(v, &u);
    const char *rest = why ? NULL : url_after_authority(v);
    if (rest && strcmp(rest, "/") == 0)
        why = "must not end with '/'";
    else if (rest && rest[0])
        why = "must not have a path, query or fragment";
    url_parts_clear(&u);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

/* Reports nothing for a URL url_problem() refuses: its own check does. */
static bool check_https_or_loopback(struct conf_loader *ld, const struct conf_node *at,
                                    const char *v)
{
    struct url_parts u;
    bool ok = url_problem(v, &u) != NULL || strcmp(u.scheme, "https") == 0 ||
              net_host_is_loopback(u.host);
    url_parts_clear(&u);
    if (!ok)
        conf_node_error(ld, at, "\"%s\" must use https (http only for a loopback host)", v);
    return ok;
}

static bool check_base_url(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    return check_origin_url(ld, at, v) && check_https_or_loopback(ld, at, v);
}

/* OIDC Core / RFC 8414: an https URL without query or fragment. */
static bool check_issuer(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    struct url_parts u;
    const char *why = url_problem(v, &u);
    if (why == NULL && strpbrk(url_after_authority(v), "?#"))
        why = "must not have a query or fragment";
    url_parts_clear(&u);
    if (why) {
        conf_node_error(ld, at, "\"%s\" %s", v, why);
        return false;
    }
    return check_https_or_loopback(ld, at, v);
}

static bool check_http_url(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    struct url_parts u;
    const char *why = url_problem(v, &u);
    if (why == NULL && strchr(url_after_authority(v), '#'))
        why = "must not have a fragment";
    url_parts_clear(&u);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

/* The forms store/redis.c connects to; it reports finer problems when it parses the URL. */
static bool check_redis_url(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    if ((strncmp(v, "redis://", 8) == 0 && v[8]) || strncmp(v, "unix:/", 6) == 0)
        return true;
    if (strncmp(v, "rediss://", 9) == 0)
        conf_node_error(ld, at,
                        "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS; use a "
                        "private network or a local TLS tunnel");
    else
        conf_node_error(ld, at,
                        "\"%s\" must be redis://[user:password@]host[:port][/db] or "
                        "unix:/path/to/redis.sock",
                        v);
    return false;
}

/*
 * A static client's redirect URIs obey the one rule of dynamic registration
 * (oauth/redirect_uri.c: https, http on loopback, private-use schemes with a
 * dot; never javascript:, data:, a fragment, …); only the message is ours.
 */
static bool check_redirect_uri(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    const char *why = oauth_redirect_uri_check(v);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

static bool check_organization(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == strlen(v))
        return true;
    conf_node_error(ld, at, "\"%s\" is not a valid organization name", v);
    return false;
}

static bool check_route_name(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    size_t n = strlen(v);
    if (n <= ROUTE_NAME_MAX &&
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n)
        return true;
    conf_node_error(ld, at, "\"%.80s\" must be 1 to %d of A-Z a-z 0-9 _ -", v, ROUTE_NAME_MAX);
    return false;
}

/* Paths the gateway serves itself (DESIGN §4); the metrics path is checked separately. */
static const char *reserved_path(const char *p)
{
    static const char *const exact[] = {"/authorize", "/token",   "/register", "/revoke",
                                        "/callback",  "/healthz", "/readyz"};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(p, exact[i]) == 0)
            return "is a gateway endpoint";
    if (strncmp(p, "/.well-known", 12) == 0 && (p[12] == '/' || p[12] == '\0'))
        return "is under /.well-known, which the gateway serves";
    return NULL;
}

static bool check_url_path(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    const char *why = conf_path_problem(v);
    if (why == NULL)
        why = reserved_path(v);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

/* ---- schema: one table per mapping (rows: see FIELDS/AT in conf/conf.h) --- */

static const struct conf_field limits_fields[] = {
    {"max_body", CONF_SIZE, AT(struct gw_limits, max_body_bytes), RANGE(1, GiB)},
    {"max_header", CONF_SIZE, AT(struct gw_limits, max_header_bytes), RANGE(1 * KiB, 1 * MiB)},
    {"max_connections", CONF_U32, AT(struct gw_limits, max_connections), RANGE(1, 1000000)},
    {"max_sessions", CONF_U32, AT(struct gw_limits, max_sessions), RANGE(1, 10000000)},
    {"max_sessions_per_user", CONF_U32, AT(struct gw_limits, max_sessions_per_user),
     RANGE(1, 1000000)},
    {"event_ring", CONF_U32, AT(struct gw_limits, event_ring), RANGE(1, 65536)},
    {"max_streams_per_session", CONF_U32, AT(struct gw_limits, max_streams_per_session),
     RANGE(1, 64)},
    {"sse_high_water", CONF_SIZE, AT(struct gw_limits, sse_high_water_bytes), RANGE(1 * KiB, GiB)},
    {"request_timeout", CONF_DURATION, AT(struct gw_limits, request_timeout_ms),
     RANGE(100, HOUR_MS)},
    {"idle_timeout", CONF_DURATION, AT(struct gw_limits, idle_timeout_ms), RANGE(SEC_MS, DAY_MS)},
    {"shutdown_grace", CONF_DURATION, AT(struct gw_limits, shutdown_grace_ms), RANGE(0, HOUR_MS)},
    {"max_pending_authorizations", CONF_U32, AT(struct gw_limits, max_pending_authorizations),
     RANGE(1, 1000000)},
};

static void limits_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                        const struct conf_keys_seen *ks)
{
    (void)ks;
    const struct gw_limits *l = base;
    if (l->max_sessions_per_user > l->max_sessions)
        conf_key_error(ld, at, "max_sessions_per_user", "%u exceeds max_sessions (%u)",
                       l->max_sessions_per_user, l->max_sessions);
}

static const struct conf_section limits_section = {FIELDS(limits_fields), limits_post, NULL};

static const struct conf_field tls_fields[] = {
    {"cert", CONF_STR, AT(struct gw_server_config, tls_cert), .flags = CONF_REQUIRED},
    {"key", CONF_STR, AT(struct gw_server_config, tls_key), .flags = CONF_REQUIRED},
};
static const struct conf_section tls_section = {FIELDS(tls_fields), NULL, NULL};

static const struct conf_field server_fields[] = {
    {"listen", CONF_STRLIST, AT(struct gw_server_config, listen), .flags = CONF_NONEMPTY,
     .check = check_listen},
    {"public_url", CONF_STR, AT(struct gw_server_config, public_url), .flags = CONF_REQUIRED,
     .check = check_origin_url},
    {"tls", CONF_SECTION, .off = 0, .sub = &tls_section},
    {"trusted_proxies", CONF_CIDRS,
     AT2(struct gw_server_config, trusted_proxies, n_trusted_proxies)},
    {"allowed_origins", CONF_STRLIST, AT(struct gw_server_config, allowed_origins),
     .check = check_origin_url},
    {"allow_unauthenticated_routes", CONF_BOOL,
     AT(struct gw_server_config, allow_unauthenticated_routes)},
    {"limits", CONF_SECTION, AT(struct gw_server_config, limits), .sub = &limits_section},
};

static void server_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                        const struct conf_keys_seen *ks)
{
    (void)ld, (void)at, (void)ks;
    struct gw_server_config *s = base;
    s->public_url_https = s->public_url && strncasecmp(s->public_url, "https:", 6) == 0;
}

static const struct conf_section server_section = {FIELDS(server_fields), server_post, NULL};

static const struct conf_field redis_fields[] = {
    {"url", CONF_STR, AT(struct gw_store_config, redis_url), .check = check_redis_url},
    {"password", CONF_SECRET, AT(struct gw_store_config, redis_password),
     .flags = CONF_EMPTY_UNSET},
    {"prefix", CONF_STR, AT(struct gw_store_config, prefix), .flags = CONF_ALLOW_EMPTY},
    {"timeout", CONF_DURATION, AT(struct gw_store_config, timeout_ms), RANGE(10, MIN_MS)},
};
static const struct conf_section redis_section = {FIELDS(redis_fields), NULL, NULL};

static const struct conf_enum_name backend_names[] = {
    {"redis", GW_STORE_REDIS}, {"memory", GW_STORE_MEMORY}, {NULL, 0}};

static const struct conf_field store_fields[] = {
    {"backend", CONF_ENUM, AT(struct gw_store_config, backend), .names = backend_names},
    {"redis", CONF_SECTION, .off = 0, .sub = &redis_section},
};
static const struct conf_section store_section = {FIELDS(store_fields), NULL, NULL};

static const struct conf_field claims_fields[] = {
    {"subject", CONF_STR, AT(struct gw_idp_claims, subject)},
    {"username", CONF_STR, AT(struct gw_idp_claims, username)},
    {"email", CONF_STR, AT(struct gw_idp_claims, email)},
    {"name", CONF_STR, AT(struct gw_idp_claims, name)},
    {"roles", CONF_STR, AT(struct gw_idp_claims, roles)},
    {"groups", CONF_STR, AT(struct gw_idp_claims, groups)},
};
static const struct conf_section claims_section = {FIELDS(claims_fields), NULL, NULL};

static const struct conf_enum_name preset_names[] = {
    {"asgardeo", GW_IDP_ASGARDEO}, {"oidc", GW_IDP_OIDC}, {NULL, 0}};
static const struct conf_enum_name token_auth_names[] = {
    {"client_secret_basic", GW_TOKEN_AUTH_CLIENT_SECRET_BASIC},
    {"client_secret_post", GW_TOKEN_AUTH_CLIENT_SECRET_POST},
    {NULL, 0}};

static const struct conf_field idp_fields[] = {
    {"preset", CONF_ENUM, AT(struct gw_idp_config, preset), .flags = CONF_REQUIRED,
     .names = preset_names},
    {"organization", CONF_STR, AT(struct gw_idp_config, organization), .check = check_organization},
    {"base_url", CONF_STR, AT(struct gw_idp_config, base_url), .check = check_base_url},
    {"issuer", CONF_STR, AT(struct gw_idp_config, issuer), .flags = CONF_EMPTY_UNSET,
     .check = check_issuer},
    {"client_id", CONF_STR, AT(struct gw_idp_config, client_id), .flags = CONF_REQUIRED},
    {"client_secret", CONF_SECRET, AT(struct gw_idp_config, client_secret), .flags = CONF_REQUIRED},
    {"token_auth", CONF_ENUM, AT(struct gw_idp_config, token_auth), .names = token_auth_names},
    {"scopes", CONF_STRLIST, AT(struct gw_idp_config, scopes), .flags = CONF_NONEMPTY,
     .check = conf_check_scope},
    {"claims", CONF_SECTION, AT(struct gw_idp_config, claims), .sub = &claims_section},
    {"leeway", CONF_DURATION, AT(struct gw_idp_config, leeway_ms), RANGE(0, 10 * MIN_MS)},
    {"discovery_refresh", CONF_DURATION, AT(struct gw_idp_config, discovery_refresh_ms),
     RANGE(MIN_MS, 7 * DAY_MS)},
    {"timeout", CONF_DURATION, AT(struct gw_idp_config, timeout_ms), RANGE(SEC_MS, 5 * MIN_MS)},
    {"userinfo", CONF_BOOL, AT(struct gw_idp_config, use_userinfo)},
};

static void idp_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                     const struct conf_keys_seen *ks);
static const struct conf_section idp_section = {FIELDS(idp_fields), idp_post, NULL};

/* Asgardeo's issuer is derived: <base_url>/t/<organization>/oauth2/token. */
static void idp_post_asgardeo(struct conf_loader *ld, const struct conf_node *at,
                              struct gw_idp_config *idp, const struct conf_keys_seen *ks)
{
    if (!conf_key_given(&idp_section, ks, "organization"))
        conf_key_error(ld, at, "organization", "required for preset asgardeo");
    if (idp->issuer)
        conf_key_error(ld, at, "issuer",
                       "is derived from base_url and organization for preset "
                       "asgardeo: remove it");
    if (idp->base_url == NULL && !conf_key_given(&idp_section, ks, "base_url"))
        idp->base_url = xstrdup("https://api.asgardeo.io");
    if (idp->issuer == NULL && idp->organization && idp->base_url)
        idp->issuer = xasprintf("%s/t/%s/oauth2/token", idp->base_url, idp->organization);
}

static void idp_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                     const struct conf_keys_seen *ks)
{
    struct gw_idp_config *idp = base;
    idp->configured = true;
    if (!conf_key_valid(&idp_section, ks, "preset"))
        return; /* reported; the preset-specific checks would only add noise */
    if (idp->preset == GW_IDP_ASGARDEO) {
        idp_post_asgardeo(ld, at, idp, ks);
    } else {
        if (!conf_key_given(&idp_section, ks, "issuer"))
            conf_key_error(ld, at, "issuer", "required for preset oidc");
        else if (idp->issuer == NULL && conf_key_valid(&idp_section, ks, "issuer"))
            conf_key_error(ld, at, "issuer", "must not be empty for preset oidc");
        if (conf_key_given(&idp_section, ks, "organization"))
            conf_key_error(ld, at, "organization", "is only used with preset asgardeo");
        if (conf_key_given(&idp_section, ks, "base_url"))
            conf_key_error(ld, at, "base_url", "is only used with preset asgardeo");
    }
    bool openid = false;
    for (size_t i = 0; i < idp->scopes.len; i++)
        openid = openid || strcmp(idp->scopes.items[i], "openid") == 0;
    if (!openid && conf_key_valid(&idp_section, ks, "scopes"))
        conf_key_error(ld, at, "scopes", "must include openid");
}

static const struct conf_enum_name client_auth_names[] = {
    {"none", GW_CLIENT_AUTH_NONE},
    {"client_secret_basic", GW_CLIENT_AUTH_CLIENT_SECRET_BASIC},
    {"client_secret_post", GW_CLIENT_AUTH_CLIENT_SECRET_POST},
    {NULL, 0}};

static const struct conf_field client_fields[] = {
    {"client_id", CONF_STR, AT(struct gw_static_client, client_id), .flags = CONF_REQUIRED},
    {"client_name", CONF_STR, AT(struct gw_static_client, client_name)},
    {"redirect_uris", CONF_STRLIST, AT(struct gw_static_client, redirect_uris),
     .flags = CONF_REQUIRED | CONF_NONEMPTY, .check = check_redirect_uri},
    {"auth", CONF_ENUM, AT(struct gw_static_client, auth), .names = client_auth_names},
    {"client_secret", CONF_SECRET, AT(struct gw_static_client, client_secret)},
};

static void client_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                        const struct conf_keys_seen *ks);
static const struct conf_section client_section = {FIELDS(client_fields), client_post, NULL};

/* auth defaults to client_secret_basic when a secret is given, none otherwise. */
static void client_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                        const struct conf_keys_seen *ks)
{
    struct gw_static_client *c = base;
    bool secret = conf_key_given(&client_section, ks, "client_secret");
    const char *key = conf_map_has(at, "client_secret") ? "client_secret" : "client_secret_file";
    if (!conf_key_given(&client_section, ks, "auth"))
        c->auth = secret ? GW_CLIENT_AUTH_CLIENT_SECRET_BASIC : GW_CLIENT_AUTH_NONE;
    else if (!conf_key_valid(&client_section, ks, "auth"))
        return;
    else if (c->auth == GW_CLIENT_AUTH_NONE && secret)
        conf_key_error(ld, at, key, "is not used with auth: none");
    else if (c->auth != GW_CLIENT_AUTH_NONE && !secret)
        conf_key_error(ld, at, "client_secret", "required for auth %s (or client_secret_file)",
                       client_auth_names[c->auth].name);
}

static const struct conf_field registration_fields[] = {
    {"enabled", CONF_BOOL, AT(struct gw_oauth_config, registration_enabled)},
    {"public_clients", CONF_BOOL, AT(struct gw_oauth_config, registration_public_clients)},
    {"client_ttl", CONF_DURATION, AT(struct gw_oauth_config, registration_client_ttl_ms),
     RANGE(MIN_MS, 3650 * DAY_MS)},
    {"rate", CONF_RATE,
     AT2(struct gw_oauth_config, registration_rate_count, registration_rate_window_ms)},
    {"max_body", CONF_SIZE, AT(struct gw_oauth_config, registration_max_body_bytes),
     RANGE(1 * KiB, 1 * MiB)},
};
static const struct conf_section registration_section = {FIELDS(registration_fields), NULL, NULL};

static const struct conf_field consent_fields[] = {
    {"remember", CONF_DURATION, AT(struct gw_oauth_config, consent_remember_ms),
     RANGE(0, 365 * DAY_MS)},
};
static const struct conf_section consent_section = {FIELDS(consent_fields), NULL, NULL};

static const struct conf_field oauth_fields[] = {
    {"secret", CONF_SECRET_BYTES, AT2(struct gw_oauth_config, secret, secret_len),
     RANGE(OAUTH_SECRET_MIN_BYTES, 0)},
    {"access_token_ttl", CONF_DURATION, AT(struct gw_oauth_config, access_token_ttl_ms),
     RANGE(SEC_MS, DAY_MS)},
    {"refresh_token_ttl", CONF_DURATION, AT(struct gw_oauth_config, refresh_token_ttl_ms),
     RANGE(SEC_MS, 365 * DAY_MS)},
    {"refresh_grace", CONF_DURATION, AT(struct gw_oauth_config, refresh_grace_ms),
     RANGE(0, 5 * MIN_MS)},
    {"code_ttl", CONF_DURATION, AT(struct gw_oauth_config, code_ttl_ms),
     RANGE(SEC_MS, 10 * MIN_MS)},
    {"authorize_ttl", CONF_DURATION, AT(struct gw_oauth_config, authorize_ttl_ms),
     RANGE(SEC_MS, HOUR_MS)},
    {"require_resource", CONF_BOOL, AT(struct gw_oauth_config, require_resource)},
    {"scopes", CONF_STRMAP, AT(struct gw_oauth_config, scopes), .check = conf_check_scope},
    {"registration", CONF_SECTION, .off = 0, .sub = &registration_section},
    {"clients", CONF_LIST, AT2(struct gw_oauth_config, clients, n_clients), .sub = &client_section,
     .elem_size = sizeof(struct gw_static_client)},
    {"consent", CONF_SECTION, .off = 0, .sub = &consent_section},
};

static void oauth_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                       const struct conf_keys_seen *ks)
{
    (void)ks;
    const struct gw_oauth_config *o = base;
    const struct conf_node *list = conf_map_get(at, "clients");
    size_t old = conf_path_push(ld, "clients");
    for (size_t i = 0; i < o->n_clients; i++) {
        for (size_t j = 0; j < i && o->clients[i].client_id; j++) {
            if (o->clients[j].client_id &&
                strcmp(o->clients[i].client_id, o->clients[j].client_id) == 0) {
                size_t old_i = conf_path_push_index(ld, i);
                conf_value_error(ld, conf_seq_item(list, i), "client_id",
                                 "duplicate client_id \"%s\" (first at line %u)",
                                 o->clients[i].client_id, conf_node_line(conf_seq_item(list, j)));
                conf_path_pop(ld, old_i);
                break;
            }
        }
    }
    conf_path_pop(ld, old);
}

static const struct conf_section oauth_section = {FIELDS(oauth_fields), oauth_post, NULL};

static const struct conf_field identity_fields[] = {
    {"signing_key_file", CONF_STR, AT(struct gw_identity_config, signing_key_file)},
    {"previous_key_file", CONF_STR, AT(struct gw_identity_config, previous_key_file)},
    {"jwt_ttl", CONF_DURATION, AT(struct gw_identity_config, jwt_ttl_ms),
     RANGE(SEC_MS, 5 * MIN_MS)},
};
static const struct conf_section identity_section = {FIELDS(identity_fields), NULL, NULL};

static const struct conf_field stdio_fields[] = {
    {"command", CONF_STRLIST, AT(struct gw_stdio_upstream, command),
     .flags = CONF_REQUIRED | CONF_NONEMPTY},
    {"env", CONF_STRMAP, AT(struct gw_stdio_upstream, env), .flags = CONF_ALLOW_EMPTY,
     .check = conf_check_env_name},
    {"env_passthrough", CONF_STRLIST, AT(struct gw_stdio_upstream, env_passthrough),
     .check = conf_check_env_name},
    {"cwd", CONF_STR, AT(struct gw_stdio_upstream, cwd), .check = conf_check_abs_path},
    {"idle_timeout", CONF_DURATION, AT(struct gw_stdio_upstream, idle_timeout_ms),
     RANGE(SEC_MS, 7 * DAY_MS)},
    {"max_processes", CONF_U32, AT(struct gw_stdio_upstream, max_processes), RANGE(1, 100000)},
    {"max_line", CONF_SIZE, AT(struct gw_stdio_upstream, max_line_bytes), RANGE(1 * KiB, GiB)},
    {"kill_grace", CONF_DURATION, AT(struct gw_stdio_upstream, kill_grace_ms), RANGE(0, MIN_MS)},
};
static const struct conf_section stdio_section = {FIELDS(stdio_fields), NULL, NULL};

static const struct conf_field http_fields[] = {
    {"url", CONF_STR, AT(struct gw_http_upstream, url), .flags = CONF_REQUIRED,
     .check = check_http_url},
    {"connect_timeout", CONF_DURATION, AT(struct gw_http_upstream, connect_timeout_ms),
     RANGE(1, 5 * MIN_MS)},
    {"timeout", CONF_DURATION, AT(struct gw_http_upstream, timeout_ms), RANGE(0, DAY_MS)},
    {"idle_timeout", CONF_DURATION, AT(struct gw_http_upstream, idle_timeout_ms),
     RANGE(SEC_MS, DAY_MS)},
};
static const struct conf_section http_section = {FIELDS(http_fields), NULL, NULL};

static const struct conf_field require_fields[] = {
    {"scopes", CONF_STRLIST, AT(struct gw_requirements, scopes), .check = conf_check_scope},
    {"roles", CONF_STRLIST, AT(struct gw_requirements, roles)},
    {"groups", CONF_STRLIST, AT(struct gw_requirements, groups)},
};
static const struct conf_section require_section = {FIELDS(require_fields), NULL, NULL};

static const struct conf_field route_identity_fields[] = {
    {"env", CONF_BOOL, AT(struct gw_route_identity, env)},
    {"headers", CONF_BOOL, AT(struct gw_route_identity, headers)},
    {"jwt", CONF_BOOL, AT(struct gw_route_identity, jwt)},
    {"meta", CONF_BOOL, AT(struct gw_route_identity, meta)},
    {"idp_access_token", CONF_BOOL, AT(struct gw_route_identity, idp_access_token)},
};
static const struct conf_section route_identity_section = {FIELDS(route_identity_fields), NULL,
                                                           NULL};

static const struct conf_field rule_fields[] = {
    {"match", CONF_STR, AT(struct gw_access_rule, match), .flags = CONF_REQUIRED},
    {"roles", CONF_STRLIST, AT(struct gw_access_rule, roles)},
    {"groups", CONF_STRLIST, AT(struct gw_access_rule, groups)},
    {"scopes", CONF_STRLIST, AT(struct gw_access_rule, scopes), .check = conf_check_scope},
    {"deny", CONF_BOOL, AT(struct gw_access_rule, deny)},
};

static void rule_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                      const struct conf_keys_seen *ks)
{
    (void)ld, (void)ks;
    ((struct gw_access_rule *)base)->line = conf_node_line(at);
}

static const struct conf_section rule_section = {FIELDS(rule_fields), rule_post, NULL};

static const struct conf_enum_name effect_names[] = {
    {"allow", GW_POLICY_ALLOW}, {"deny", GW_POLICY_DENY}, {NULL, 0}};

/* prompts: and resources: are {rules, default}; tools: and default: sit on the route. */
static const struct conf_field rules_fields[] = {
    {"rules", CONF_LIST, AT2(struct gw_access_rules, rules, len), .sub = &rule_section,
     .elem_size = sizeof(struct gw_access_rule)},
    {"default", CONF_ENUM, AT(struct gw_access_rules, default_effect), .names = effect_names},
};
static const struct conf_section rules_section = {FIELDS(rules_fields), NULL, NULL};

static const struct conf_enum_name route_auth_names[] = {
    {"oauth", GW_ROUTE_AUTH_OAUTH}, {"none", GW_ROUTE_AUTH_NONE}, {NULL, 0}};

static const struct conf_field route_fields[] = {
    {"name", CONF_STR, AT(struct gw_route_config, name), .flags = CONF_REQUIRED,
     .check = check_route_name},
    {"path", CONF_STR, AT(struct gw_route_config, path), .flags = CONF_REQUIRED,
     .check = check_url_path},
    {"description", CONF_STR, AT(struct gw_route_config, description)},
    {"auth", CONF_ENUM, AT(struct gw_route_config, auth), .names = route_auth_names},
    {"stdio", CONF_SECTION, AT(struct gw_route_config, stdio), .sub = &stdio_section},
    {"http", CONF_SECTION, AT(struct gw_route_config, http), .sub = &http_section},
    {"require", CONF_SECTION, AT(struct gw_route_config, require), .sub = &require_section},
    {"identity", CONF_SECTION, AT(struct gw_route_config, identity),
     .sub = &route_identity_section},
    {"tools", CONF_LIST, AT2(struct gw_route_config, tools.rules, tools.len), .sub = &rule_section,
     .elem_size = sizeof(struct gw_access_rule)},
    {"default", CONF_ENUM, AT(struct gw_route_config, tools.default_effect), .names = effect_names},
    {"prompts", CONF_SECTION, AT(struct gw_route_config, prompts), .sub = &rules_section},
    {"resources", CONF_SECTION, AT(struct gw_route_config, resources), .sub = &rules_section},
};

static void route_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                       const struct conf_keys_seen *ks);

static void route_release(void *base)
{
    free(((struct gw_route_config *)base)->resource_url);
}

static const struct conf_section route_section = {FIELDS(route_fields), route_post, route_release};

static void route_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                       const struct conf_keys_seen *ks)
{
    struct gw_route_config *r = base;
    bool stdio = conf_key_given(&route_section, ks, "stdio");
    bool http = conf_key_given(&route_section, ks, "http");
    r->line = conf_node_line(at);
    r->kind = http && !stdio ? GW_UPSTREAM_HTTP : GW_UPSTREAM_STDIO;
    /* A rejected auth: value must not pass for the default (oauth) in the checks
     * across sections: those would add errors about the IdP that are not real.
     * The config is discarded anyway, so the impossible value never escapes. */
    if (conf_key_given(&route_section, ks, "auth") && !conf_key_valid(&route_section, ks, "auth"))
        r->auth = (enum gw_route_auth) - 1;
    if (stdio && http)
        conf_key_error(ld, at, "http", "give either stdio or http, not both");
    else if (!stdio && !http)
        conf_node_error(ld, at, "a route needs an upstream: give stdio or http");
}

static void route_init(void *elem)
{
    struct gw_route_config *r = elem;
    r->identity = (struct gw_route_identity){.env = true, .headers = true, .jwt = true};
    r->stdio.idle_timeout_ms = 15 * MIN_MS;
    r->stdio.max_processes = 200;
    r->stdio.max_line_bytes = 4 * MiB;
    r->stdio.kill_grace_ms = 2 * SEC_MS;
    r->http.connect_timeout_ms = 5 * SEC_MS;
    r->http.timeout_ms = 60 * SEC_MS;
    r->http.idle_timeout_ms = 300 * SEC_MS;
}

static const struct conf_enum_name level_names[] = {{"debug", GW_LOG_DEBUG},
                                                    {"info", GW_LOG_INFO},
                                                    {"warn", GW_LOG_WARN},
                                                    {"error", GW_LOG_ERROR},
                                                    {NULL, 0}};
static const struct conf_enum_name format_names[] = {{"json", GW_LOG_FORMAT_JSON}, {NULL, 0}};

static const struct conf_field log_fields[] = {
    {"level", CONF_ENUM, AT(struct gw_log_config, level), .names = level_names},
    {"format", CONF_ENUM, AT(struct gw_log_config, format), .names = format_names},
    {"access_log", CONF_BOOL, AT(struct gw_log_config, access_log)},
};
static const struct conf_section log_section = {FIELDS(log_fields), NULL, NULL};

static const struct conf_field metrics_fields[] = {
    {"enabled", CONF_BOOL, AT(struct gw_metrics_config, enabled)},
    {"path", CONF_STR, AT(struct gw_metrics_config, path), .check = check_url_path},
    {"listen", CONF_STR, AT(struct gw_metrics_config, listen), .check = check_listen},
};
static const struct conf_section metrics_section = {FIELDS(metrics_fields), NULL, NULL};

static const struct conf_field root_fields[] = {
    {"server", CONF_SECTION, AT(struct gw_config, server), .flags = CONF_REQUIRED,
     .sub = &server_section},
    {"store", CONF_SECTION, AT(struct gw_config, store), .sub = &store_section},
    {"idp", CONF_SECTION, AT(struct gw_config, idp), .sub = &idp_section},
    {"oauth", CONF_SECTION, AT(struct gw_config, oauth), .sub = &oauth_section},
    {"identity", CONF_SECTION, AT(struct gw_config, identity), .sub = &identity_section},
    {"routes", CONF_LIST, AT2(struct gw_config, routes, n_routes), .sub = &route_section,
     .elem_size = sizeof(struct gw_route_config), .init = route_init},
    {"log", CONF_SECTION, AT(struct gw_config, log), .sub = &log_section},
    {"metrics", CONF_SECTION, AT(struct gw_config, metrics), .sub = &metrics_section},
};
static const struct conf_section root_section = {FIELDS(root_fields), NULL, NULL};

/* ---- pass 3: checks across sections -------------------------------------- */

/* Name and path unique; no route path is another's legacy /sse or /messages endpoint. */
static void route_check_unique(struct conf_loader *ld, const struct gw_config *cfg, size_t i,
                               const struct conf_node *rn, const struct conf_node *seq)
{
    const struct gw_route_config *r = &cfg->routes[i];
    for (size_t j = 0; j < i; j++) {
        const struct gw_route_config *o = &cfg->routes[j];
        unsigned first = conf_node_line(conf_seq_item(seq, j));
        if (r->name && o->name && strcmp(r->name, o->name) == 0)
            conf_value_error(ld, rn, "name", "duplicate route name \"%s\" (first at line %u)",
                             r->name, first);
        if (!r->path || !o->path)
            continue;
        size_t n = strlen(o->path);
        if (strcmp(r->path, o->path) == 0)
            conf_value_error(ld, rn, "path", "duplicate route path %s (first at line %u)", r->path,
                             first);
        else if (strncmp(r->path, o->path, n) == 0 &&
                 (strcmp(r->path + n, "/sse") == 0 || strcmp(r->path + n, "/messages") == 0))
            conf_value_error(ld, rn, "path",
                             "%s is the legacy SSE endpoint of route \"%s\" (line %u)", r->path,
                             o->name ? o->name : "", first);
        else if (strncmp(o->path, r->path, strlen(r->path)) == 0 &&
                 (strcmp(o->path + strlen(r->path), "/sse") == 0 ||
                  strcmp(o->path + strlen(r->path), "/messages") == 0))
            conf_value_error(ld, rn, "path", "its legacy SSE endpoint %s is route \"%s\" (line %u)",
                             o->path, o->name ? o->name : "", first);
    }
}

static const char *first_public_listener(const struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->server.listen.len; i++) {
        bool loopback;
        if (parse_listen(cfg->server.listen.items[i], &loopback) == NULL && !loopback)
            return cfg->server.listen.items[i];
    }
    return NULL;
}

static void route_check_one(struct conf_loader *ld, struct gw_config *cfg,
                            struct gw_route_config *r, const struct conf_node *rn)
{
    const struct gw_metrics_config *m = &cfg->metrics;
    const char *listener = first_public_listener(cfg);
    if (r->path && m->enabled && m->listen == NULL && m->path && strcmp(r->path, m->path) == 0)
        conf_value_error(ld, rn, "path",
                         "%s is the metrics path (move metrics.path or give "
                         "metrics.listen)",
                         r->path);
    if (r->auth == GW_ROUTE_AUTH_NONE && listener && !cfg->server.allow_unauthenticated_routes)
        conf_value_error(ld, rn, "auth",
                         "auth: none on the non-loopback listener %s needs "
                         "server.allow_unauthenticated_routes: true",
                         listener);
    if (r->path && cfg->server.public_url)
        r->resource_url = xasprintf("%s%s", cfg->server.public_url, r->path);
}

static void check_routes(struct conf_loader *ld, struct gw_config *cfg,
                         const struct conf_node *root)
{
    const struct conf_node *seq = conf_map_get(root, "routes");
    for (size_t i = 0; i < cfg->n_routes; i++) {
        size_t old = conf_path_push(ld, "routes");
        conf_path_push_index(ld, i);
        const struct conf_node *rn = conf_seq_item(seq, i);
        if (conf_node_is_map(rn)) {
            route_check_unique(ld, cfg, i, rn, seq);
            route_check_one(ld, cfg, &cfg->routes[i], rn);
        }
        conf_path_pop(ld, old);
    }
}

/* An `auth: oauth` route (the default) needs the IdP and the server secret. */
static void check_oauth_needs(struct conf_loader *ld, const struct gw_config *cfg,
                              const struct conf_node *root)
{
    const struct gw_route_config *r = NULL;
    for (size_t i = 0; i < cfg->n_routes && r == NULL; i++)
        if (cfg->routes[i].auth == GW_ROUTE_AUTH_OAUTH)
            r = &cfg->routes[i];
    if (r == NULL)
        return;
    const char *name = r->name ? r->name : "";
    if (conf_map_get(root, "idp") == NULL)
        conf_key_error(ld, root, "idp", "required: route \"%s\" uses auth: oauth", name);
    const struct conf_node *oauth = conf_map_get(root, "oauth");
    if (conf_map_has(oauth, "secret") || conf_map_has(oauth, "secret_file"))
        return;
    size_t old = conf_path_push(ld, "oauth");
    conf_key_error(
        ld, oauth ? oauth : root, "secret_file",
        "required: route \"%s\" uses auth: oauth (give oauth.secret_file or oauth.secret)", name);
    conf_path_pop(ld, old);
}

/* ---- defaults and freeing ------------------------------------------------ */

static void config_defaults_server_store(struct gw_config *cfg)
{
    static const char *const listen[] = {"127.0.0.1:8080"};
    conf_string_list_set(&cfg->server.listen, listen, 1);
    cfg->server.limits = (struct gw_limits){
        .max_body_bytes = 4 * MiB,
        .max_header_bytes = 16 * KiB,
        .max_connections = 20000,
        .max_sessions = 10000,
        .max_sessions_per_user = 20,
        .event_ring = 256,
        .max_streams_per_session = 4,
        .sse_high_water_bytes = 1 * MiB,
        .request_timeout_ms = 30 * SEC_MS,
        .idle_timeout_ms = 120 * SEC_MS,
        .shutdown_grace_ms = 10 * SEC_MS,
        .max_pending_authorizations = 100,
    };
    cfg->store.backend = GW_STORE_REDIS;
    cfg->store.redis_url = xstrdup("redis://127.0.0.1:6379/0");
    cfg->store.prefix = xstrdup("mcpgate:");
    cfg->store.timeout_ms = 2 * SEC_MS;
}

static void config_defaults_idp_oauth(struct gw_config *cfg)
{
    static const char *const scopes[] = {"openid", "profile", "email", "roles"};
    struct gw_idp_config *idp = &cfg->idp;
    idp->token_auth = GW_TOKEN_AUTH_CLIENT_SECRET_BASIC;
    conf_string_list_set(&idp->scopes, scopes, 4);
    idp->claims = (struct gw_idp_claims){xstrdup("sub"),  xstrdup("username"), xstrdup("email"),
                                         xstrdup("name"), xstrdup("roles"),    xstrdup("groups")};
    idp->leeway_ms = 60 * SEC_MS;
    idp->discovery_refresh_ms = HOUR_MS;
    idp->timeout_ms = 10 * SEC_MS;
    idp->use_userinfo = true;

    struct gw_oauth_config *o = &cfg->oauth;
    o->access_token_ttl_ms = HOUR_MS;
    o->refresh_token_ttl_ms = 30 * DAY_MS;
    o->code_ttl_ms = 60 * SEC_MS;
    o->authorize_ttl_ms = 10 * MIN_MS;
    o->scopes.keys = xcalloc(1, sizeof(char *));
    o->scopes.values = xcalloc(1, sizeof(char *));
    o->scopes.keys[0] = xstrdup("mcp:tools");
    o->scopes.values[0] = xstrdup("Use the tools of the MCP servers behind this gateway");
    o->scopes.len = 1;
    o->registration_enabled = true;
    o->registration_public_clients = true;
    o->registration_client_ttl_ms = 90 * DAY_MS;
    o->registration_rate_count = 10;
    o->registration_rate_window_ms = MIN_MS;
    o->registration_max_body_bytes = 64 * KiB;
    o->consent_remember_ms = 30 * DAY_MS;
}

static void config_defaults(struct gw_config *cfg)
{
    config_defaults_server_store(cfg);
    config_defaults_idp_oauth(cfg);
    cfg->identity.jwt_ttl_ms = 5 * MIN_MS;
    cfg->log.level = GW_LOG_INFO;
    cfg->log.format = GW_LOG_FORMAT_JSON;
    cfg->log.access_log = true;
    cfg->metrics.enabled = true;
    cfg->metrics.path = xstrdup("/metrics");
}

void gw_config_free(struct gw_config *cfg)
{
    if (cfg == NULL)
        return;
    conf_section_free(&root_section, cfg);
    free(cfg->source_path);
    free(cfg);
}

void gw_config_errors_clear(struct gw_config_errors *errs)
{
    conf_errors_clear(errs);
}

/* ---- loading ------------------------------------------------------------- */

static void check_across_sections(struct conf_loader *ld, const struct conf_node *root, void *base)
{
    struct gw_config *cfg = base;
    check_routes(ld, cfg, root);
    check_oauth_needs(ld, cfg, root);
}

static struct gw_config *config_new(const char *source)
{
    struct gw_config *cfg = xcalloc(1, sizeof(*cfg));
    cfg->source_path = xstrdup(source);
    config_defaults(cfg);
    return cfg;
}

struct gw_config *gw_config_load_string(const char *yaml, size_t len, const char *name,
                                        struct gw_config_errors *errs)
{
    struct gw_config *cfg = config_new(name);
    if (conf_load_string(yaml, len, name, &root_section, check_across_sections, cfg, errs))
        return cfg;
    gw_config_free(cfg);
    return NULL;
}

struct gw_config *gw_config_load(const char *path, struct gw_config_errors *errs)
{
    struct gw_config *cfg = config_new(path);
    if (conf_load_file(path, &root_section, check_across_sections, cfg, errs))
        return cfg;
    gw_config_free(cfg);
    return NULL;
}

/* ---- check-config summary ------------------------------------------------ */

/* The URL with the password of its user info (redis://user:PASSWORD@host) masked. */
static char *mask_url_password(const char *url)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    const char *at = memchr(auth, '@', strcspn(auth, "/?#"));
    if (at == NULL)
        return xstrdup(url);
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    const char *keep_end = colon ? colon + 1 : auth;
    return xasprintf("%.*s***%s", (int)(keep_end - url), url, at);
}

static void print_route(const struct gw_route_config *r, FILE *out)
{
    fprintf(out, "  %s %s\n", r->name, r->path);
    if (r->kind == GW_UPSTREAM_STDIO) {
        fprintf(out, "    upstream: stdio:");
        for (size_t i = 0; i < r->stdio.command.len; i++)
            fprintf(out, " %s", r->stdio.command.items[i]);
        fputc('\n', out);
    } else {
        fprintf(out, "    upstream: http %s\n", r->http.url);
    }
    fprintf(out, "    auth: %s\n", r->auth == GW_ROUTE_AUTH_NONE ? "none" : "oauth");
    fprintf(out, "    tools: %zu rule%s, default %s\n", r->tools.len, r->tools.len == 1 ? "" : "s",
            r->tools.default_effect == GW_POLICY_DENY ? "deny" : "allow");
}

void gw_config_print_summary(const struct gw_config *cfg, FILE *out)
{
    fprintf(out, "ok\nconfig: %s\nlisten:", cfg->source_path);
    for (size_t i = 0; i < cfg->server.listen.len; i++)
        fprintf(out, " %s", cfg->server.listen.items[i]);
    fprintf(out, "\npublic_url: %s\n", cfg->server.public_url);
    if (cfg->server.tls_cert)
        fprintf(out, "tls: cert %s, key %s\n", cfg->server.tls_cert, cfg->server.tls_key);
    else
        fprintf(out, "tls: off\n");
    if (cfg->store.backend == GW_STORE_MEMORY) {
        fprintf(out, "store: memory (single instance, lost on restart)\n");
    } else {
        char *url = mask_url_password(cfg->store.redis_url);
        fprintf(out, "store: redis %s (prefix \"%s\"%s)\n", url, cfg->store.prefix,
                cfg->store.redis_password ? ", password set" : "");
        free(url);
    }
    if (cfg->idp.configured)
        fprintf(out, "idp: %s, issuer %s, client_id %s\n", preset_names[cfg->idp.preset].name,
                cfg->idp.issuer, cfg->idp.client_id);
    else
        fprintf(out, "idp: none\n");
    fprintf(out, "routes: %zu\n", cfg->n_routes);
    for (size_t i = 0; i < cfg->n_routes; i++)
        print_route(&cfg->routes[i], out);
}
