/*
 * route_conf: the `routes:` list (a route, its stdio or http upstream,
 * require, identity and the tools/prompts/resources rules): tables for the
 * conf/ engine, the defaults of a new route and the checks within one route.
 * Checks between routes and against the gateway's own paths are in
 * gateway/config.c, which sees the whole config.
 */
#include "proxy/route_conf.h"

#include <stdlib.h>
#include <string.h>

#include "common/url.h"
#include "conf/conf.h"
#include "http/http_conf.h"

#define ROUTE_NAME_MAX 64

CONF_ENUM_IS_INT(gw_policy_effect);
CONF_ENUM_IS_INT(gw_stdio_pool);
CONF_ENUM_IS_INT(gw_route_auth);

static bool check_route_name(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    size_t n = strlen(v);
    if (n <= ROUTE_NAME_MAX &&
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n)
        return true;
    conf_node_error(ld, at, "\"%.80s\" must be 1 to %d of A-Z a-z 0-9 _ -", v, ROUTE_NAME_MAX);
    return false;
}

static bool check_http_url(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    struct url_parts u;
    const char *why = http_conf_url_problem(v, &u);
    if (why == NULL && strchr(url_after_authority(v), '#'))
        why = "must not have a fragment";
    url_parts_clear(&u);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

static const struct conf_enum_name pool_names[] = {
    {"shared", GW_POOL_SHARED}, {"per-request", GW_POOL_PER_REQUEST}, {NULL, 0}};

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
    {"write_timeout", CONF_DURATION, AT(struct gw_stdio_upstream, write_timeout_ms),
     RANGE(100, HOUR_MS)},
    {"pool", CONF_ENUM, AT(struct gw_stdio_upstream, pool), .names = pool_names},
    {"warm", CONF_U32, AT(struct gw_stdio_upstream, warm), RANGE(0, 1000)},
    {"nice", CONF_U32, AT(struct gw_stdio_upstream, nice), RANGE(0, 19)},
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
    {"session_idle", CONF_DURATION, AT(struct gw_http_upstream, session_idle_ms),
     RANGE(SEC_MS, 30 * DAY_MS)},
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
    /* the shape only: gateway/config.c refuses the gateway's own endpoints */
    {"path", CONF_STR, AT(struct gw_route_config, path), .flags = CONF_REQUIRED,
     .check = conf_check_url_path},
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
    {"modern", CONF_BOOL, AT(struct gw_route_config, modern)},
};

static void route_release(void *base)
{
    free(((struct gw_route_config *)base)->resource_url);
}

static void route_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                       const struct conf_keys_seen *ks);

const struct conf_section route_conf_section = {FIELDS(route_fields), route_post, route_release};

static void route_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                       const struct conf_keys_seen *ks)
{
    struct gw_route_config *r = base;
    bool stdio = conf_key_given(&route_conf_section, ks, "stdio");
    bool http = conf_key_given(&route_conf_section, ks, "http");
    r->line = conf_node_line(at);
    r->kind = http && !stdio ? GW_UPSTREAM_HTTP : GW_UPSTREAM_STDIO;
    /* A rejected auth: value must not pass for the default (oauth) in the checks
     * across sections: those would add errors about the IdP that are not real.
     * The config is discarded anyway, so the impossible value never escapes. */
    if (conf_key_given(&route_conf_section, ks, "auth") &&
        !conf_key_valid(&route_conf_section, ks, "auth"))
        r->auth = (enum gw_route_auth) - 1;
    if (stdio && http)
        conf_key_error(ld, at, "http", "give either stdio or http, not both");
    else if (!stdio && !http)
        conf_node_error(ld, at, "a route needs an upstream: give stdio or http");
    /* A warm child starts before its user is known: nothing about the user may be in its
     * environment, only in each request (identity.meta). */
    if (r->stdio.warm && (r->identity.env || r->identity.jwt || r->identity.idp_access_token))
        conf_key_error(ld, at, "stdio",
                       "warm: %u needs identity.env, identity.jwt and identity.idp_access_token "
                       "false (a warm child is started before its user is known; use "
                       "identity.meta for a per-request identity)",
                       r->stdio.warm);
    if (r->stdio.warm > r->stdio.max_processes)
        conf_key_error(ld, at, "stdio", "warm: %u exceeds max_processes (%u)", r->stdio.warm,
                       r->stdio.max_processes);
}

void route_conf_init(void *elem)
{
    struct gw_route_config *r = elem;
    r->identity = (struct gw_route_identity){.env = true, .headers = true, .jwt = true};
    r->stdio.idle_timeout_ms = 15 * MIN_MS;
    r->stdio.max_processes = 200;
    r->stdio.max_line_bytes = 4 * MiB;
    r->stdio.kill_grace_ms = 2 * SEC_MS;
    r->stdio.write_timeout_ms = 30 * SEC_MS;
    r->http.connect_timeout_ms = 5 * SEC_MS;
    r->http.timeout_ms = 60 * SEC_MS;
    r->http.idle_timeout_ms = 300 * SEC_MS;
    r->http.session_idle_ms = HOUR_MS;
}
