/*
 * route_conf: the `routes:` list of the configuration (proxy/route_conf.c),
 * for the root table in gateway/config.c: one struct gw_route_config per
 * item, started by route_conf_init() and read with route_conf_section.
 */
#ifndef MCPGATE_PROXY_ROUTE_CONF_H
#define MCPGATE_PROXY_ROUTE_CONF_H

struct conf_section;

extern const struct conf_section route_conf_section;
/* The defaults of a new route (ELEM is a struct gw_route_config). */
void route_conf_init(void *elem);

#endif
