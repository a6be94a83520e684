/*
 * app: the running gateway. Wires the configuration, the store, the HTTP
 * front end(s), health, metrics and signals onto one event loop.
 *
 * Signals: SIGTERM/SIGINT drain (stop accepting, let in-flight requests
 * finish until server.limits.shutdown_grace, then exit 0; a second signal
 * exits at once); SIGHUP re-reads the configuration file and applies what can
 * change at run time, or keeps the running config and logs every error;
 * SIGPIPE is ignored.
 */
#ifndef MCPGATE_GATEWAY_APP_H
#define MCPGATE_GATEWAY_APP_H

#include "conf/config.h"

struct gw_app;

struct gw_app_options {
    const char *config_path; /* borrowed; re-read on SIGHUP */
    int log_level_override;  /* enum gw_log_level, or -1 for the config's */
};

struct store_options;
/* The store options of CFG's store: section (pointers borrowed from CFG). */
void gw_store_options_from(const struct gw_config *cfg, struct store_options *out);

/* Takes ownership of CFG. Returns NULL with *err_out (owned by the caller) on failure. */
struct gw_app *gw_app_new(struct gw_config *cfg, const struct gw_app_options *opts, char **err_out);
/* Runs until drained; returns the process exit status. */
int gw_app_run(struct gw_app *app);
void gw_app_free(struct gw_app *app);

#endif
