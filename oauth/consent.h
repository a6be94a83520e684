/*
 * consent: the per-client consent page (the confused-deputy guard the MCP
 * security practices require of a proxy that logs users in through one
 * static IdP client) and the remembered approvals.
 *
 * The page is server-rendered HTML that needs no JavaScript. Every string
 * that a client supplied is HTML-escaped. Approvals are remembered per
 * (browser, client) in a cookie signed with the server secret for
 * oauth.consent.remember; a remembered approval still goes through the IdP.
 */
#ifndef MCPGATE_OAUTH_CONSENT_H
#define MCPGATE_OAUTH_CONSENT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/principal.h"

struct oauth_server;
struct http_request;

struct consent_view {
    const char *client_id;
    const char *client_name; /* may be NULL: the client_id is shown */
    const char *client_uri;  /* may be NULL */
    const char *redirect_uri;
    const struct mg_string_list *scopes;
    const char *resource; /* may be NULL: every route */
    const char *handle;   /* the pending authorization */
    const char *csrf;
};

/* The whole page (owned). */
char *consent_render(const struct oauth_server *srv, const struct consent_view *v);

/* True when this browser approved CLIENT_ID before and the approval is current. */
bool consent_is_remembered(const struct oauth_server *srv, struct http_request *req,
                           const char *client_id, uint64_t now);
/* Adds CLIENT_ID to this browser's remembered approvals (sets the cookie). */
void consent_remember(const struct oauth_server *srv, struct http_request *req,
                      const char *client_id, uint64_t now);

#endif
