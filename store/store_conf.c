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
static const struct conf_section store_redis_section;

static bool check_redis_url(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    if ((strncmp(v, "redis://", 8) == 0 && v[8]) || (strncmp(v, "rediss://", 9) == 0 && v[9]) ||
        strncmp(v, "unix:/", 6) == 0)
        return true;
    conf_node_error(ld, at,
                    "\"%s\" must be redis[s]://[user:password@]host[:port][/db] or "
                    "unix:/path/to/redis.sock",
                    v);
    return false;
}

/* "host:port": the host an IP address or a name (store/redis.c resolves names on the loop). */
static bool check_sentinel(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v || colon[1] == '\0' ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        conf_node_error(ld, at, "\"%s\" must be host:port (an IP address or a host name)", v);
        return false;
    }
    return true;
}

/* The TLS keys mean something with rediss:// only, and a certificate needs its key. */
static void redis_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                       const struct conf_keys_seen *ks)
{
    const struct gw_store_config *sc = base;
    static const char *const tls_keys[] = {"tls_ca_file",     "tls_cert_file", "tls_key_file",
                                           "tls_server_name", "tls_verify",    "sentinel_tls"};
    bool tls = sc->redis_url != NULL && strncmp(sc->redis_url, "rediss://", 9) == 0;
    for (size_t i = 0; i < sizeof(tls_keys) / sizeof(tls_keys[0]) && !tls; i++)
        if (conf_key_given(&store_redis_section, ks, tls_keys[i])) {
            conf_node_error(ld, at, "%s needs a rediss:// url (TLS)", tls_keys[i]);
            return;
        }
    if ((sc->redis_tls_cert_file != NULL) != (sc->redis_tls_key_file != NULL))
        conf_node_error(ld, at, "tls_cert_file and tls_key_file go together");
    else if (sc->redis_sentinel_tls && sc->redis_sentinels.len == 0)
        conf_node_error(ld, at, "sentinel_tls needs sentinels");
}

static const struct conf_field redis_fields[] = {
    {"url", CONF_STR, AT(struct gw_store_config, redis_url), .check = check_redis_url},
    {"password", CONF_SECRET, AT(struct gw_store_config, redis_password),
     .flags = CONF_EMPTY_UNSET},
    {"prefix", CONF_STR, AT(struct gw_store_config, prefix), .flags = CONF_ALLOW_EMPTY},
    {"timeout", CONF_DURATION, AT(struct gw_store_config, timeout_ms), RANGE(10, MIN_MS)},
    {"tls_ca_file", CONF_STR, AT(struct gw_store_config, redis_tls_ca_file),
     .check = conf_check_abs_path},
    {"tls_cert_file", CONF_STR, AT(struct gw_store_config, redis_tls_cert_file),
     .check = conf_check_abs_path},
    {"tls_key_file", CONF_STR, AT(struct gw_store_config, redis_tls_key_file),
     .check = conf_check_abs_path},
    {"tls_server_name", CONF_STR, AT(struct gw_store_config, redis_tls_server_name)},
    {"tls_verify", CONF_BOOL, AT(struct gw_store_config, redis_tls_verify)},
    {"sentinels", CONF_STRLIST, AT(struct gw_store_config, redis_sentinels), .flags = CONF_NONEMPTY,
     .check = check_sentinel},
    {"master_name", CONF_STR, AT(struct gw_store_config, redis_master_name)},
    {"sentinel_password", CONF_SECRET, AT(struct gw_store_config, redis_sentinel_password),
     .flags = CONF_EMPTY_UNSET},
    {"sentinel_tls", CONF_BOOL, AT(struct gw_store_config, redis_sentinel_tls)},
};

static const struct conf_section store_redis_section = {FIELDS(redis_fields), redis_post, NULL};

static const struct conf_enum_name backend_names[] = {
    {"redis", GW_STORE_REDIS}, {"memory", GW_STORE_MEMORY}, {NULL, 0}};

static const struct conf_field store_fields[] = {
    {"backend", CONF_ENUM, AT(struct gw_store_config, backend), .names = backend_names},
    {"redis", CONF_SECTION, .off = 0, .sub = &store_redis_section},
};

const struct conf_section store_conf_section = {FIELDS(store_fields), NULL, NULL};

void store_conf_defaults(struct gw_store_config *s)
{
    s->backend = GW_STORE_REDIS;
    s->redis_url = xstrdup("redis://127.0.0.1:6379/0");
    s->prefix = xstrdup("mcpgate:");
    s->timeout_ms = 2 * SEC_MS;
    s->redis_tls_verify = true;
    s->redis_master_name = xstrdup("mymaster");
}
