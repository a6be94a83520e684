/*
 * cluster_conf: `cluster:`, the internal listener through which instances
 * sharing one store reach the owner of a session (proxy/cluster.h).
 *
 *   cluster:
 *     listen: 0.0.0.0:8081            # the internal listener
 *     advertise: http://10.0.0.5:8081 # how the others reach it
 *     secret_file: /etc/mcpgate/cluster-secret  # default: derived from oauth.secret
 *     heartbeat: 5s
 */
#include "proxy/cluster_conf.h"

#include <string.h>
#include <strings.h>

#include "common/url.h"
#include "conf/conf.h"
#include "conf/config.h"
#include "http/http_conf.h"

/* http://host:port, no path: what another instance connects to. */
static bool check_advertise(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    struct url_parts u;
    const char *why = http_conf_url_problem(v, &u);
    if (why == NULL && u.port == NULL)
        why = "needs the port of cluster.listen";
    else if (why == NULL && *url_after_authority(v) != '\0')
        why = "must not have a path, query or fragment";
    url_parts_clear(&u);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

static void cluster_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                         const struct conf_keys_seen *ks)
{
    struct gw_cluster_config *c = base;
    (void)ks;
    if (c->listen && c->advertise == NULL)
        conf_key_error(ld, at, "advertise",
                       "is required with cluster.listen: the address the other instances "
                       "connect to, e.g. http://${POD_IP}:8081");
    if (c->advertise && c->listen == NULL)
        conf_key_error(ld, at, "listen", "is required with cluster.advertise");
}

static const struct conf_field cluster_fields[] = {
    {"listen", CONF_STR, AT(struct gw_cluster_config, listen), .check = http_conf_check_listen},
    {"advertise", CONF_STR, AT(struct gw_cluster_config, advertise), .check = check_advertise},
    {"secret", CONF_SECRET_BYTES, AT2(struct gw_cluster_config, secret, secret_len), RANGE(32, 0)},
    {"heartbeat", CONF_DURATION, AT(struct gw_cluster_config, heartbeat_ms),
     RANGE(100, 5 * MIN_MS)},
};

const struct conf_section cluster_conf_section = {FIELDS(cluster_fields), cluster_post, NULL};

void cluster_conf_defaults(struct gw_cluster_config *c)
{
    c->heartbeat_ms = 5 * SEC_MS;
}
