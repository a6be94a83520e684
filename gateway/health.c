/*
 * health: liveness and readiness. Readiness asks the store for a live PING
 * on every probe instead of trusting a cached flag, so a dead Redis turns
 * /readyz to 503 within one store deadline (server.store.timeout).
 */
#include "gateway/health.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/xalloc.h"
#include "http/http.h"
#include "store/store.h"

struct gw_health {
    struct store *store; /* borrowed */
    gw_ready_fn ready;
    void *ready_arg; /* borrowed */
};

struct gw_health *gw_health_new(struct store *store, gw_ready_fn ready, void *arg)
{
    struct gw_health *h = xcalloc(1, sizeof(*h));
    h->store = store;
    h->ready = ready;
    h->ready_arg = arg;
    return h;
}

struct probe {
    struct http_request *req; /* borrowed until answered */
    struct gw_health *h;      /* borrowed */
};

static void on_healthz(struct http_request *req, void *arg)
{
    (void)arg;
    http_set_header(req, "Cache-Control", "no-store");
    http_reply_json_text(req, 200, "{\"status\":\"ok\"}");
}

static void on_store_ping(const struct store_result *res, void *arg)
{
    struct probe *pr = arg;
    struct http_request *req = pr->req;
    const char *not_ready = pr->h->ready ? pr->h->ready(pr->h->ready_arg) : NULL;
    free(pr);
    http_set_header(req, "Cache-Control", "no-store");
    char reason[320];
    if (res->status != STORE_OK) {
        snprintf(reason, sizeof(reason), "store: %s", res->error ? res->error : "unavailable");
    } else if (not_ready) {
        snprintf(reason, sizeof(reason), "%s", not_ready);
    } else {
        http_reply_json_text(req, 200, "{\"status\":\"ready\",\"checks\":{\"store\":\"ok\"}}");
        return;
    }
    http_set_header(req, "Retry-After", "1");
    http_reply_error(req, 503, "not_ready", reason);
}

static void on_readyz(struct http_request *req, void *arg)
{
    struct gw_health *h = arg;
    struct probe *pr = xcalloc(1, sizeof(*pr));
    pr->req = req;
    pr->h = h;
    if (store_ping(h->store, on_store_ping, pr) < 0) {
        free(pr);
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "not_ready", "store: cannot queue a command");
    }
}

void gw_health_free(struct gw_health *h)
{
    free(h);
}

int gw_health_register(struct gw_health *h, struct http_server *srv)
{
    struct http_route_options opts = {0};
    opts.label = "/healthz";
    int rc = http_route_add(srv, "/healthz", HTTP_GET, on_healthz, NULL, &opts);
    opts.label = "/readyz";
    if (rc == 0)
        rc = http_route_add(srv, "/readyz", HTTP_GET, on_readyz, h, &opts);
    return rc;
}
