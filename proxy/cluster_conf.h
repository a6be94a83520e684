/*
 * cluster_conf: the `cluster:` section of the configuration
 * (proxy/cluster_conf.c), for the root table in gateway/config.c.
 */
#ifndef MCPGATE_PROXY_CLUSTER_CONF_H
#define MCPGATE_PROXY_CLUSTER_CONF_H

struct conf_section;
struct gw_cluster_config;

extern const struct conf_section cluster_conf_section;
void cluster_conf_defaults(struct gw_cluster_config *c);

#endif
