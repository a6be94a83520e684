/*
 * cli: the one-shot commands of mcpgate (everything but serving).
 *   grants list [--user SUB] | grants revoke ID | grants revoke --user SUB
 *   clients list | clients delete ID
 *   explain --route NAME [--roles a,b] [--groups g] [--scopes x,y] [--kind tool|prompt|resource]
 * NAME Each takes -c/--config FILE. Exit status: 0 done (explain: allowed), 1 failed (explain:
 * denied), 2 bad usage or config.
 */
#ifndef MCPGATE_GATEWAY_CLI_H
#define MCPGATE_GATEWAY_CLI_H

#include <stdio.h>

#include "conf/config.h"

int cli_grants(int argc, char **argv);
int cli_clients(int argc, char **argv);
/* mcpgate sessions list|end: the live MCP sessions of every instance. */
int cli_sessions(int argc, char **argv);
int cli_explain(int argc, char **argv);
/* The effective policy of every route (check-config prints it after the summary). */
void cli_print_policy(const struct gw_config *cfg, FILE *out);

#endif
