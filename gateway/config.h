/*
 * config: loading, freeing and summarising the gateway's configuration
 * (struct gw_config, conf/config.h). For gateway/ and tests only: modules
 * read a loaded config through conf/config.h and never load one.
 *
 * Every error message reads "file:line:column: key.path: message" (a file
 * that cannot be read: "file: cannot read: reason").
 */
#ifndef MCPGATE_GATEWAY_CONFIG_H
#define MCPGATE_GATEWAY_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "conf/config.h"

/*
 * Loads and validates FILE. On success returns the config (owned: free it
 * with gw_config_free()) and leaves errs empty; on failure returns NULL with
 * at least one message in errs. Never stops at the first error when later
 * ones can still be found.
 */
struct gw_config *gw_config_load(const char *path, struct gw_config_errors *errs);
/* Same, from a string; `name` stands for the file name in messages. */
struct gw_config *gw_config_load_string(const char *yaml, size_t len, const char *name,
                                        struct gw_config_errors *errs);
/* Frees everything the config owns, wiping secrets; NULL is fine. */
void gw_config_free(struct gw_config *cfg);
void gw_config_errors_clear(struct gw_config_errors *errs);

/* The `check-config` summary: listeners, store, IdP preset, each route and its upstream. */
void gw_config_print_summary(const struct gw_config *cfg, FILE *out);

#endif
