/*
 * oauth: mcpgate's OAuth 2.1 authorization server and the resource-server
 * check for MCP routes (DESIGN §3–§5). The gateway creates one oauth_server,
 * registers its endpoints on the HTTP server, and asks it to check the bearer
 * token of every request to an MCP route before proxying.
 *
 * Endpoints: /.well-known/oauth-authorization-server (RFC 8414),
 * /.well-known/oauth-protected-resource[/<route>] (RFC 9728), /register
 * (RFC 7591), /authorize (GET: validate + consent page; POST: decision),
 * /callback (IdP return), /token, /revoke (RFC 7009).
 */
#ifndef MCPGATE_OAUTH_OAUTH_H
#define MCPGATE_OAUTH_OAUTH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/principal.h"
#include "conf/config.h"

struct event_base;
struct http_server;
struct http_request;
struct store;
struct idp_client;
struct oauth_server;

struct oauth_server_deps {
    struct event_base *base; /* borrowed */
    struct store *store;     /* borrowed */
    struct idp_client *idp;  /* borrowed; NULL when no idp is configured */
};

/* CFG is borrowed until the next oauth_server_set_config(). */
struct oauth_server *oauth_server_new(const struct gw_config *cfg,
                                      const struct oauth_server_deps *deps);
void oauth_server_free(struct oauth_server *srv);
void oauth_server_set_config(struct oauth_server *srv, const struct gw_config *cfg);
/* A reload that adds, removes or replaces the IdP: new logins and refreshes use IDP
 * (borrowed; NULL: none). Those in flight finish on the client they started with. */
void oauth_server_set_idp(struct oauth_server *srv, struct idp_client *idp);
/* Registers every OAuth endpoint and the well-known documents of the routes. */
int oauth_server_register_routes(struct oauth_server *srv, struct http_server *http);

/*
 * The bearer check for an MCP route (RFC 6750, MCP authorization). On
 * success calls OK with the principal (borrowed for the call: dup what you
 * keep). On failure it answers the request itself: 401 with
 * WWW-Authenticate: Bearer resource_metadata=…, scope=… (and
 * error="invalid_token" when a token was sent), 503 when the store is down.
 */
void oauth_bearer_check(struct oauth_server *srv, struct http_request *req,
                        const struct gw_route_config *route, mg_authed_fn ok, void *arg);

/*
 * Administration (the `mcpgate grants …` and `mcpgate clients …` commands).
 * Each writes its listing to OUT and calls DONE once with 0, or a negative
 * errno and a message (-ENOENT: no such grant/client; -EIO: the store).
 */
typedef void (*oauth_admin_done_fn)(int rc, const char *message, void *arg);
void oauth_admin_list_grants(struct oauth_server *srv, const char *subject, FILE *out,
                             oauth_admin_done_fn done, void *arg);
void oauth_admin_revoke_grant(struct oauth_server *srv, const char *grant_id,
                              oauth_admin_done_fn done, void *arg);
void oauth_admin_revoke_user(struct oauth_server *srv, const char *subject,
                             oauth_admin_done_fn done, void *arg);
void oauth_admin_list_clients(struct oauth_server *srv, FILE *out, oauth_admin_done_fn done,
                              void *arg);
void oauth_admin_delete_client(struct oauth_server *srv, const char *client_id,
                               oauth_admin_done_fn done, void *arg);

/* How many validated tokens the in-process cache holds (for metrics and tests). */
size_t oauth_bearer_cache_size(const struct oauth_server *srv);
/* Bearer checks answered from that cache, and those that had to read the store. */
void oauth_bearer_cache_counts(const struct oauth_server *srv, uint64_t *hits, uint64_t *misses);

#endif
