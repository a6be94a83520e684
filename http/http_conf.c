/*
 * http_conf: the `server:` section (listen, public_url, tls, trusted_proxies,
 * allowed_origins, allow_unauthenticated_routes, limits): its tables for the
 * conf/ engine, its defaults and its checks. Also owns what an address the
 * HTTP server listens on and an http(s) URL we advertise or fetch must look
 * like, since oauth/ and proxy/ check their URLs by the same rule.
 */
#include "http/http_conf.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "common/net.h"
#include "common/url.h"
#include "conf/conf.h"

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
const char *http_conf_listen_problem(const char *s, bool *loopback)
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
const char *http_conf_url_problem(const char *s, struct url_parts *u)
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

bool http_conf_check_listen(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    bool loopback;
    const char *why = http_conf_listen_problem(v, &loopback);
    if (why)
        conf_node_error(ld, at,
                        "invalid listen address \"%s\" (%s): use host:port, [v6]:port or "
                        "unix:/absolute/path",
                        v, why);
    return why == NULL;
}

/* scheme://host[:port] and nothing else: public_url, allowed_origins, idp.base_url. */
bool http_conf_check_origin_url(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    struct url_parts u;
    const char *why = http_conf_url_problem(v, &u);
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

/* ---- server: ------------------------------------------------------------- */

static const struct conf_field limits_fields[] = {
    {"max_body", CONF_SIZE, AT(struct gw_limits, max_body_bytes), RANGE(1, GiB)},
    {"max_header", CONF_SIZE, AT(struct gw_limits, max_header_bytes), RANGE(1 * KiB, 1 * MiB)},
    {"max_connections", CONF_U32, AT(struct gw_limits, max_connections), RANGE(1, 1000000)},
    {"max_connections_per_ip", CONF_U32, AT(struct gw_limits, max_connections_per_ip),
     RANGE(1, 1000000)},
    {"open_files", CONF_U32, AT(struct gw_limits, open_files), RANGE(0, 1048576)},
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
    {"header_timeout", CONF_DURATION, AT(struct gw_limits, header_timeout_ms), RANGE(100, HOUR_MS)},
    {"body_timeout", CONF_DURATION, AT(struct gw_limits, body_timeout_ms), RANGE(100, DAY_MS)},
    {"lingering_bytes", CONF_SIZE, AT(struct gw_limits, lingering_bytes), RANGE(1, GiB)},
    {"lingering_time", CONF_DURATION, AT(struct gw_limits, lingering_time_ms), RANGE(100, HOUR_MS)},
    {"lingering_timeout", CONF_DURATION, AT(struct gw_limits, lingering_timeout_ms),
     RANGE(100, HOUR_MS)},
    {"shutdown_grace", CONF_DURATION, AT(struct gw_limits, shutdown_grace_ms), RANGE(0, HOUR_MS)},
    {"max_pending_authorizations", CONF_U32, AT(struct gw_limits, max_pending_authorizations),
     RANGE(1, 1000000)},
    {"outbound_idle_connections", CONF_U32, AT(struct gw_limits, outbound_idle_connections),
     RANGE(1, 100000)},
    /* MCP sessions (proxy/session.c) */
    {"max_upstream_sessions", CONF_U32, AT(struct gw_limits, max_upstream_sessions),
     RANGE(1, 10000000)},
    {"max_pending_per_session", CONF_U32, AT(struct gw_limits, max_pending_per_session),
     RANGE(1, 100000)},
    {"event_ring_bytes", CONF_SIZE, AT(struct gw_limits, event_ring_bytes), RANGE(4 * KiB, GiB)},
    {"event_ring_total", CONF_SIZE, AT(struct gw_limits, event_ring_total_bytes),
     RANGE(64 * KiB, 64 * GiB)},
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
     .check = http_conf_check_listen},
    {"public_url", CONF_STR, AT(struct gw_server_config, public_url), .flags = CONF_REQUIRED,
     .check = http_conf_check_origin_url},
    {"tls", CONF_SECTION, .off = 0, .sub = &tls_section},
    {"trusted_proxies", CONF_CIDRS,
     AT2(struct gw_server_config, trusted_proxies, n_trusted_proxies)},
    {"allowed_origins", CONF_STRLIST, AT(struct gw_server_config, allowed_origins),
     .check = http_conf_check_origin_url},
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

const struct conf_section http_conf_server_section = {FIELDS(server_fields), server_post, NULL};

void http_conf_defaults(struct gw_server_config *s)
{
    static const char *const listen[] = {"127.0.0.1:8080"};
    conf_string_list_set(&s->listen, listen, 1);
    s->limits = (struct gw_limits){
        .max_body_bytes = 4 * MiB,
        .max_header_bytes = 16 * KiB,
        .max_connections = 20000,
        .max_connections_per_ip = 256,
        .max_sessions = 10000,
        .max_sessions_per_user = 20,
        .event_ring = 256,
        .max_streams_per_session = 4,
        .sse_high_water_bytes = 1 * MiB,
        .request_timeout_ms = 30 * SEC_MS,
        .idle_timeout_ms = 120 * SEC_MS,
        .header_timeout_ms = 20 * SEC_MS,
        .body_timeout_ms = 60 * SEC_MS,
        .lingering_bytes = 64 * MiB,
        .lingering_time_ms = 30 * SEC_MS,
        .lingering_timeout_ms = 5 * SEC_MS,
        .shutdown_grace_ms = 10 * SEC_MS,
        .max_pending_authorizations = 100,
        .outbound_idle_connections = 256,
        .max_pending_per_session = 64,
        .max_upstream_sessions = 100000,
        .event_ring_bytes = 4 * MiB,
        .event_ring_total_bytes = 256 * MiB,
    };
}
