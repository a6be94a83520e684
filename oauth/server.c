/*
 * server: the oauth_server object. Owns the bearer cache; borrows the
 * config, the store and the IdP client from the gateway.
 */
#include <stdlib.h>

#include "common/xalloc.h"
#include "oauth/cimd.h"
#include "oauth/idp_tokens.h"
#include "oauth/oauth_int.h"

struct oauth_server *oauth_server_new(const struct gw_config *cfg,
                                      const struct oauth_server_deps *deps)
{
    struct oauth_server *srv = xcalloc(1, sizeof(*srv));
    srv->cfg = cfg;
    srv->base = deps->base;
    srv->store = deps->store;
    srv->idp = deps->idp;
    srv->cache = bearer_cache_new(srv);
    return srv;
}

void oauth_server_free(struct oauth_server *srv)
{
    if (srv == NULL)
        return;
    oauth_cimd_free(srv->cimd); /* lookups still waiting are answered first */
    bearer_cache_free(srv->cache);
    oauth_idp_tokens_shutdown(srv);
    free(srv);
}

void oauth_server_set_config(struct oauth_server *srv, const struct gw_config *cfg)
{
    srv->cfg = cfg;
}

void oauth_server_set_idp(struct oauth_server *srv, struct idp_client *idp)
{
    srv->idp = idp;
}

int oauth_server_register_routes(struct oauth_server *srv, struct http_server *http)
{
    int rc = oauth_metadata_register(srv, http);
    if (rc == 0)
        rc = oauth_register_register(srv, http);
    if (rc == 0)
        rc = oauth_authorize_register(srv, http);
    if (rc == 0)
        rc = oauth_callback_register(srv, http);
    if (rc == 0)
        rc = oauth_token_register(srv, http);
    if (rc == 0)
        rc = oauth_revoke_register(srv, http);
    if (rc == 0)
        rc = oauth_account_register(srv, http);
    return rc;
}
