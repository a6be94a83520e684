/*
 * health: liveness and readiness. Readiness asks the store for a live PING
 * on every probe instead of trusting a cached flag, so a dead Redis turns
 * /readyz to 503 within one store deadline (server.store.timeout).
 */
#include "gateway/health.h"

#include <stdio.h>

#include "gateway/http.h"
#include "store/store.h"

static void on_healthz(struct http_request *req, void *arg)
{
    (void)arg;
    http_set_header(req, "Cache-Control", "no-store");
    http_reply_json_text(req, 200, "{\"status\":\"ok\"}");
}

static void on_store_ping(const struct store_result *res, void *arg)
{
    struct http_request *req = arg;
    http_set_header(req, "Cache-Control", "no-store");
    if (res->status == STORE_OK) {
        http_reply_json_text(req, 200, "{\"status\":\"ready\",\"checks\":{\"store\":\"ok\"}}");
        return;
    }
    char reason[256];
    snprintf(reason, sizeof(reason), "store: %s", res->error ? res->error : "unavailable");
    http_set_header(req, "Retry-After", "1");
    http_reply_error(req, 503, "not_ready", reason);
}

static void on_readyz(struct http_request *req, void *arg)
{
    struct store *store = arg;
    if (store_ping(store, on_store_ping, req) < 0) {
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "not_ready", "store: cannot queue a command");
    }
}

int gw_health_register(struct http_server *srv, struct store *store)
{
    struct http_route_options opts = {0};
    opts.label = "/healthz";
    int rc = http_route_add(srv, "/healthz", HTTP_GET, on_healthz, NULL, &opts);
    opts.label = "/readyz";
    if (rc == 0)
        rc = http_route_add(srv, "/readyz", HTTP_GET, on_readyz, store, &opts);
    return rc;
}
