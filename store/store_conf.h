/*
 * store_conf: the `store:` section of the configuration (store/store_conf.c),
 * for the root table in gateway/config.c.
 */
#ifndef MCPGATE_STORE_STORE_CONF_H
#define MCPGATE_STORE_STORE_CONF_H

struct conf_section;
struct gw_store_config;

extern const struct conf_section store_conf_section;
/* Defaults of `store:` (owned strings: freed with the config). */
void store_conf_defaults(struct gw_store_config *s);

#endif
