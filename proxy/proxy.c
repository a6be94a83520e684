/*
 * proxy: the proxy object. It owns the live sessions (session.c), the HTTP
 * upstream exchanges and bindings (http_upstream.c), the 2024-11-05 bridges
 * (legacy_http.c) and the route bindings (route.c), and borrows the loop,
 * the store, the outbound HTTP client and the config from the gateway.
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rand.h"
#include "common/xalloc.h"
#include "proxy/cluster.h"
#include "proxy/proxy_int.h"
#include "proxy/stdio.h"
#include "store/store.h"

/* A grant ended somewhere (any instance): its sessions end here (review F7). */
static void on_grant_ended(const char *channel, const char *msg, size_t len, void *arg)
{
    (void)channel;
    char *grant_id = xstrndup(msg, len);
    sessions_end_grant(arg, grant_id);
    modern_end_grant(arg, grant_id);
    free(grant_id);
}

static void on_session_end(const char *channel, const char *msg, size_t len, void *arg)
{
    (void)channel;
    char *id = xstrndup(msg, len);
    sessions_end_id(arg, id);
    free(id);
}

struct proxy *proxy_new(const struct gw_config *cfg, const struct proxy_deps *deps)
{
    struct proxy *p = xcalloc(1, sizeof(*p));
    p->cfg = cfg;
    p->base = deps->base;
    p->store = deps->store;
    p->httpc = deps->httpc;
    p->auth = deps->auth;
    p->auth_arg = deps->auth_arg;
    p->signer = deps->signer;
    p->cluster = deps->cluster;
    p->metrics = deps->metrics;
    p->anonymous = mg_principal_new();
    p->anonymous->subject = xstrdup("anonymous");
    call_metrics_declare(p);
    int rc = p->store ? store_subscribe(p->store, MG_CHANNEL_GRANT_ENDED, on_grant_ended, p) : 0;
    if (rc == 0 && p->store)
        rc = store_subscribe(p->store, MG_CHANNEL_SESSION_END, on_session_end, p);
    if (rc == 0)
        rc = http_upstream_subscribe(p);
    if (rc < 0)
        gw_log(GW_LOG_ERROR, "proxy", NULL, "cannot subscribe to ended grants", "error",
               strerror(-rc), NULL);
    return p;
}

void proxy_set_signer(struct proxy *p, const struct jws_key *signer)
{
    p->signer = signer;
}

void proxy_set_config(struct proxy *p, const struct gw_config *cfg)
{
    p->cfg = cfg;
}

void proxy_drain(struct proxy *p)
{
    sessions_end_get_streams(p);
    legacy_http_drain(p);
    http_upstream_drain(p);
}

size_t proxy_shutdown(struct proxy *p)
{
    sessions_end_all(p, "gateway shutting down");
    modern_stop_all(p);
    warm_stop_all(p);
    return stdio_children_alive();
}

void proxy_free(struct proxy *p)
{
    if (p == NULL)
        return;
    sessions_free_all(p);
    modern_free_all(p);
    warm_free_all(p);
    legacy_http_free_all(p);
    http_upstream_free_all(p);
    route_bindings_free(p);
    mg_principal_free(p->anonymous);
    free(p);
}

size_t proxy_session_count(const struct proxy *p)
{
    return p->n_sessions;
}

size_t proxy_children_alive(const struct proxy *p)
{
    (void)p;
    return stdio_children_alive();
}

struct stdio_child *proxy_spawn_child(struct proxy *p, const struct gw_route_config *r,
                                      const struct mg_principal *who, const char *log_tag,
                                      const struct stdio_child_callbacks *cbs, void *arg,
                                      char **err_out)
{
    char **env = identity_child_env(p, r, who);
    /* The config's lists are length-counted; posix_spawn wants a NULL end. */
    const char **argv = xcalloc(r->stdio.command.len + 1, sizeof(*argv));
    for (size_t i = 0; i < r->stdio.command.len; i++)
        argv[i] = r->stdio.command.items[i];
    struct stdio_spawn_options o = {
        .argv = argv,
        .env = (const char *const *)env,
        .cwd = r->stdio.cwd,
        .log_tag = log_tag,
        .max_line_bytes = r->stdio.max_line_bytes,
        .stdin_high_water_bytes = p->cfg->server.limits.max_body_bytes * 4,
        .kill_grace_ms = r->stdio.kill_grace_ms,
        .nice = r->stdio.nice,
    };
    struct stdio_child *c = stdio_spawn(p->base, &o, cbs, arg, err_out);
    identity_env_free(env);
    free(argv);
    return c;
}

void proxy_get_stats(const struct proxy *p, struct proxy_stats *out)
{
    out->sessions = p->n_sessions;
    out->children = stdio_children_alive();
    out->legacy_bridges = legacy_http_bridges(p);
    out->upstream_bindings = http_upstream_bindings(p);
}

void proxy_metrics_scrape(struct proxy *p)
{
    call_metrics_scrape(p);
}

void proxy_session_id_new(const struct proxy *p, char out[PROXY_SESSION_ID_MAX])
{
    char random[RAND_HANDLE_LEN + 1];
    rand_handle(random); /* 256 bits, base64url: visible ASCII */
    const char *tag = cluster_tag(p->cluster);
    snprintf(out, PROXY_SESSION_ID_MAX, "%s%s%s", tag ? tag : "", tag ? "." : "", random);
}
