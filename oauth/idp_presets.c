/*
 * idp_presets: per-provider facts (see idp_presets.h). Owns nothing; the
 * table is static. Asgardeo facts: /work/shared/asgardeo-notes.md.
 */
#include "oauth/idp_presets.h"

#include <string.h>

#include "common/xalloc.h"

static const struct idp_preset presets[] = {
    [GW_IDP_ASGARDEO] = {"asgardeo", "roles", "groups",
                         "share the Roles attribute with the application and request the "
                         "\"roles\" scope"},
    [GW_IDP_OIDC] = {"oidc", "roles", "groups", NULL},
};

const struct idp_preset *idp_preset_get(enum gw_idp_preset preset)
{
    if ((size_t)preset >= sizeof(presets) / sizeof(presets[0]))
        return &presets[GW_IDP_OIDC];
    return &presets[preset];
}

char *idp_preset_discovery_url(const char *issuer)
{
    size_t n = strlen(issuer);
    while (n > 0 && issuer[n - 1] == '/')
        n--;
    return xasprintf("%.*s/.well-known/openid-configuration", (int)n, issuer);
}
