/*
 * config: lookups on a loaded struct gw_config (conf/config.h), here so that
 * oauth/ and proxy/ reach them without gateway/, which loads the config.
 */
#include "conf/config.h"

#include <string.h>

const struct gw_route_config *gw_config_route_by_path(const struct gw_config *cfg, const char *path)
{
    for (size_t i = 0; cfg && path && i < cfg->n_routes; i++)
        if (strcmp(cfg->routes[i].path, path) == 0)
            return &cfg->routes[i];
    return NULL;
}

const struct gw_route_config *gw_config_route_by_name(const struct gw_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_routes; i++)
        if (strcmp(cfg->routes[i].name, name) == 0)
            return &cfg->routes[i];
    return NULL;
}
