/*
 * oauth_conf: the `idp:`, `oauth:` and `identity:` sections of the
 * configuration (oauth/oauth_conf.c), for the root table in gateway/config.c.
 */
#ifndef MCPGATE_OAUTH_OAUTH_CONF_H
#define MCPGATE_OAUTH_OAUTH_CONF_H

#include "conf/config.h"

struct conf_section;

extern const struct conf_section oauth_conf_idp_section;
extern const struct conf_section oauth_conf_section;
extern const struct conf_section oauth_conf_identity_section;

/* Defaults of each section (owned strings: freed with the config). */
void oauth_conf_idp_defaults(struct gw_idp_config *idp);
void oauth_conf_defaults(struct gw_oauth_config *o);
void oauth_conf_identity_defaults(struct gw_identity_config *id);

/* "asgardeo", "oidc": the word the config uses for PRESET. */
const char *oauth_conf_preset_name(enum gw_idp_preset preset);

#endif
