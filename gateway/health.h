/*
 * health: /healthz (the loop runs) and /readyz (the store answers a PING now;
 * later also: IdP metadata loaded). Both answer JSON and are never cached.
 */
#ifndef MCPGATE_GATEWAY_HEALTH_H
#define MCPGATE_GATEWAY_HEALTH_H

struct http_server;
struct store;

/*
 * An extra readiness condition (the IdP's metadata loaded): returns NULL when
 * ready, else a short reason. ARG is borrowed.
 */
typedef const char *(*gw_ready_fn)(void *arg);

struct gw_health;

/* STORE is borrowed and must outlive the health object; READY may be NULL. */
struct gw_health *gw_health_new(struct store *store, gw_ready_fn ready, void *ready_arg);
void gw_health_free(struct gw_health *h);
/* Registers /healthz and /readyz on SRV (H must outlive SRV's routes). */
int gw_health_register(struct gw_health *h, struct http_server *srv);

#endif
