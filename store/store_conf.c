/*
 * store_conf: the `store:` and `store.redis:` sections: tables for the conf/
 * engine, the defaults, and which Redis URLs store/redis.c can connect to.
 */
#include "store/store_conf.h"

#include <string.h>

#include "common/xalloc.h"
#include "conf/conf.h"

CONF_ENUM_IS_INT(gw_store_backend);

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

const struct conf_section store_conf_section = {FIELDS(store_fields), NULL, NULL};

void store_conf_defaults(struct gw_store_config *s)
{
    s->backend = GW_STORE_REDIS;
    s->redis_url = xstrdup("redis://127.0.0.1:6379/0");
    s->prefix = xstrdup("mcpgate:");
    s->timeout_ms = 2 * SEC_MS;
}
