/*
 * idp_presets: what differs between the supported identity providers, kept
 * apart from the protocol code in idp.c. Both presets use OIDC discovery at
 * <issuer>/.well-known/openid-configuration; for asgardeo the config module
 * has already derived the issuer as <base_url>/t/<org>/oauth2/token.
 */
#ifndef MCPGATE_OAUTH_IDP_PRESETS_H
#define MCPGATE_OAUTH_IDP_PRESETS_H

#include "conf/config.h"

struct idp_preset {
    const char *name;         /* for logs: "asgardeo", "oidc" */
    const char *roles_claim;  /* the provider's usual claim names, for documentation and */
    const char *groups_claim; /* hints in logs; idp.claims (config) is what is used */
    const char *roles_hint;   /* what to do when no roles arrive; NULL for none */
};

/* Never NULL: unknown values get the generic oidc entry. */
const struct idp_preset *idp_preset_get(enum gw_idp_preset preset);

/*
 * The discovery URL of ISSUER (owned by the caller): any terminating '/' of
 * the issuer is removed before appending /.well-known/openid-configuration
 * (OpenID Connect Discovery 1.0 §4).
 */
char *idp_preset_discovery_url(const char *issuer);

#endif
