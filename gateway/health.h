/*
 * health: /healthz (the loop runs) and /readyz (the store answers a PING now;
 * later also: IdP metadata loaded). Both answer JSON and are never cached.
 */
#ifndef MCPGATE_GATEWAY_HEALTH_H
#define MCPGATE_GATEWAY_HEALTH_H

struct http_server;
struct store;

/* Registers both endpoints. STORE is borrowed and must outlive the server. */
int gw_health_register(struct http_server *srv, struct store *store);

#endif
