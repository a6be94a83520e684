/*
 * app: owns the event base, the loaded config, the store, the HTTP servers
 * and the metrics registry; everything else borrows from here.
 */
#include "gateway/app.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <jansson.h>

#include "common/heap_trim.h"
#include "common/httpc.h"
#include "common/jws.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "gateway/config.h"
#include "gateway/health.h"
#include "http/http.h"
#include "http/metrics.h"
#include "oauth/idp.h"
#include "oauth/oauth.h"
#include "proxy/cluster.h"
#include "proxy/proxy.h"
#include "proxy/stdio.h"
#include "store/store.h"

#define DRAIN_POLL_MS 50

struct gw_app {
    struct event_base *base; /* owned */
    struct gw_config *cfg;   /* owned; replaced on SIGHUP */
    struct gw_app_options opts;
    struct store *store;               /* owned */
    struct http_server *http;          /* owned */
    struct http_server *metrics_http;  /* owned; NULL when metrics share the main listener */
    struct gw_metrics *metrics;        /* owned */
    struct gw_health *health;          /* owned */
    struct httpc *httpc;               /* owned: outbound HTTP (IdP, HTTP upstreams) */
    struct idp_client *idp;            /* owned; NULL without an idp section */
    struct retired_idp *retired;       /* owned: IdP clients a reload replaced, still finishing */
    struct oauth_server *oauth;        /* owned */
    struct proxy *proxy;               /* owned */
    struct cluster *cluster;           /* owned; NULL: a single instance */
    struct http_server *internal_http; /* owned: the cluster's listener for hops, or NULL */
    struct jws_key *sign_key;          /* owned; NULL: no identity assertions */
    struct jws_key *previous_key;      /* owned; published in the JWKS only */
    bool stopping_children;
    struct event *signals[3];   /* owned: TERM, INT, HUP */
    struct event *drain_timer;  /* owned */
    struct event *trim_timer;   /* owned: gives freed memory back (trim_check) */
    struct heap_trim trim;      /* when trim_check gives memory back */
    uint64_t drain_deadline_ms; /* monotonic */
    bool draining;
    int exit_status;
};

/* ---- access log and metrics ---------------------------------------- */

static void on_access(const struct http_access_record *rec, void *arg)
{
    struct gw_app *app = arg;
    gw_metrics_observe_request(app->metrics, rec->route, rec->status, rec->duration_us);
    if (!app->cfg->log.access_log)
        return;
    struct gw_log_line *l = gw_log_begin(GW_LOG_INFO, "access", rec->request_id, "request");
    gw_log_str(l, "method", rec->method);
    gw_log_str(l, "path", rec->path);
    gw_log_int(l, "status", rec->status);
    gw_log_int(l, "bytes", (int64_t)rec->bytes_out);
    gw_log_int(l, "duration_us", (int64_t)rec->duration_us);
    gw_log_str(l, "route", rec->route);
    gw_log_str(l, "client", rec->client_ip);
    if (rec->client_gone)
        gw_log_bool(l, "client_gone", true);
    gw_log_end(l);
}

static const struct gw_metric_family store_latency = {
    "mcpgate_store_operation_duration_seconds",
    "Time from a store operation submitted to its result (failures included).",
    GW_METRIC_HISTOGRAM,
    0,
    {NULL},
};

static void on_metrics(struct http_request *req, void *arg)
{
    struct gw_app *app = arg;
    struct store_stats st;
    store_get_stats(app->store, &st);
    struct proxy_stats ps;
    proxy_get_stats(app->proxy, &ps);
    proxy_metrics_scrape(app->proxy);
    gw_metrics_set_histogram(app->metrics, &store_latency, NULL, &st.latency);
    struct cluster_stats cs = {0};
    if (app->cluster)
        cluster_get_stats(app->cluster, &cs);
    struct gw_metrics_gauges g = {
        .cluster_forwarded = cs.forwarded,
        .cluster_owner_gone = cs.owner_gone,
        .cluster_hops_received = cs.received,
        .cluster_hops_refused = cs.refused,
        .sessions = ps.sessions,
        .children = ps.children,
        .legacy_bridges = ps.legacy_bridges,
        .upstream_bindings = ps.upstream_bindings,
        .token_cache_entries = app->oauth ? oauth_bearer_cache_size(app->oauth) : 0,
        .open_connections = http_server_open_connections(app->http),
        .in_flight = http_server_in_flight(app->http),
        .store_ops = st.ops,
        .store_errors = st.errors,
        .store_timeouts = st.timeouts,
        .store_reconnects = st.reconnects,
        .store_failovers = st.failovers,
        .store_up = store_is_ready(app->store),
    };
    if (app->oauth)
        oauth_bearer_cache_counts(app->oauth, &g.bearer_cache_hits, &g.bearer_cache_misses);
    char *text = gw_metrics_render(app->metrics, &g);
    http_set_header(req, "Cache-Control", "no-store");
    http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

/* ---- building the servers ------------------------------------------ */

static void on_jwks(struct http_request *req, void *arg);

static void http_options_from(const struct gw_config *cfg, struct http_server_options *o)
{
    memset(o, 0, sizeof(*o));
    o->max_body_bytes = cfg->server.limits.max_body_bytes;
    o->max_header_bytes = cfg->server.limits.max_header_bytes;
    o->max_connections = cfg->server.limits.max_connections;
    o->max_connections_per_ip = cfg->server.limits.max_connections_per_ip;
    o->request_timeout_ms = cfg->server.limits.request_timeout_ms;
    o->idle_timeout_ms = cfg->server.limits.idle_timeout_ms;
    o->header_timeout_ms = cfg->server.limits.header_timeout_ms;
    o->body_timeout_ms = cfg->server.limits.body_timeout_ms;
    o->lingering_bytes = cfg->server.limits.lingering_bytes;
    o->lingering_time_ms = cfg->server.limits.lingering_time_ms;
    o->lingering_timeout_ms = cfg->server.limits.lingering_timeout_ms;
    o->sse_high_water_bytes = cfg->server.limits.sse_high_water_bytes;
    o->tls_cert_file = cfg->server.tls_cert;
    o->tls_key_file = cfg->server.tls_key;
    o->trusted_proxies = cfg->server.trusted_proxies;
    o->n_trusted_proxies = cfg->server.n_trusted_proxies;
}

void gw_store_options_from(const struct gw_config *cfg, struct store_options *out)
{
    const struct gw_store_config *sc = &cfg->store;
    *out = (struct store_options){
        .backend = sc->backend == GW_STORE_MEMORY ? STORE_BACKEND_MEMORY : STORE_BACKEND_REDIS,
        .redis_url = sc->redis_url,
        .password = sc->redis_password,
        .prefix = sc->prefix,
        .timeout_ms = sc->timeout_ms,
        .tls_ca_file = sc->redis_tls_ca_file,
        .tls_cert_file = sc->redis_tls_cert_file,
        .tls_key_file = sc->redis_tls_key_file,
        .tls_server_name = sc->redis_tls_server_name,
        .tls_no_verify = !sc->redis_tls_verify,
        .sentinels = (const char *const *)sc->redis_sentinels.items,
        .n_sentinels = sc->redis_sentinels.len,
        .master_name = sc->redis_master_name,
        .sentinel_password = sc->redis_sentinel_password,
        .sentinel_tls = sc->redis_sentinel_tls,
    };
}

static int open_store(struct gw_app *app, char **err_out)
{
    struct store_options so;
    gw_store_options_from(app->cfg, &so);
    app->store = store_new(app->base, &so, err_out);
    return app->store ? 0 : -EINVAL;
}

static int open_servers(struct gw_app *app, char **err_out)
{
    struct http_server_options o;
    http_options_from(app->cfg, &o);
    app->http = http_server_new(app->base, &o, err_out);
    if (app->http == NULL)
        return -EINVAL;
    http_server_set_observer(app->http, on_access, app);
    for (size_t i = 0; i < app->cfg->server.listen.len; i++) {
        const char *spec = app->cfg->server.listen.items[i];
        if (http_server_listen(app->http, spec, err_out) < 0)
            return -EADDRNOTAVAIL;
        gw_log(GW_LOG_INFO, "http", NULL, "listening", "address", spec, NULL);
    }
    if (gw_health_register(app->health, app->http) < 0 ||
        oauth_server_register_routes(app->oauth, app->http) < 0 ||
        proxy_register_routes(app->proxy, app->http) < 0) {
        *err_out = xstrdup("cannot register the endpoints");
        return -EINVAL;
    }
    struct http_route_options jo = {.flags = HTTP_ROUTE_CORS, .label = "/.well-known/jwks.json"};
    if (http_route_add(app->http, "/.well-known/jwks.json", HTTP_GET, on_jwks, app, &jo) < 0) {
        *err_out = xstrdup("cannot register the endpoints");
        return -EINVAL;
    }
    const struct gw_metrics_config *mc = &app->cfg->metrics;
    if (!mc->enabled)
        return 0;
    struct http_server *msrv = app->http;
    if (mc->listen) {
        struct http_server_options mo = {.max_body_bytes = 4096,
                                         .max_header_bytes = 16384,
                                         .max_connections = 64,
                                         .request_timeout_ms = 10000};
        app->metrics_http = http_server_new(app->base, &mo, err_out);
        if (app->metrics_http == NULL ||
            http_server_listen(app->metrics_http, mc->listen, err_out) < 0)
            return -EADDRNOTAVAIL;
        http_server_set_observer(app->metrics_http, on_access, app);
        gw_health_register(app->health, app->metrics_http);
        msrv = app->metrics_http;
        gw_log(GW_LOG_INFO, "metrics", NULL, "listening", "address", mc->listen, NULL);
    }
    struct http_route_options ro = {.label = mc->path};
    return http_route_add(msrv, mc->path, HTTP_GET, on_metrics, app, &ro);
}

/* Readiness beyond the store: the IdP's discovery and keys are loaded. */
static const char *idp_readiness(void *arg)
{
    struct gw_app *app = arg;
    if (app->idp == NULL || idp_client_ready(app->idp))
        return NULL;
    const char *why = idp_client_last_error(app->idp);
    return why ? why : "idp: discovery not loaded yet";
}

static int open_oauth(struct gw_app *app, char **err_out)
{
    app->httpc = httpc_new(app->base, err_out);
    if (app->httpc == NULL)
        return -EINVAL;
    if (httpc_set_max_idle(app->httpc, app->cfg->server.limits.outbound_idle_connections) < 0) {
        *err_out = xstrdup("libcurl refused the size of its connection cache");
        return -EINVAL;
    }
    if (app->cfg->idp.configured) {
        app->idp = idp_client_new(app->base, app->httpc, &app->cfg->idp, err_out);
        if (app->idp == NULL)
            return -EINVAL;
        idp_client_start(app->idp);
    }
    struct oauth_server_deps deps = {.base = app->base, .store = app->store, .idp = app->idp};
    app->oauth = oauth_server_new(app->cfg, &deps);
    app->health = gw_health_new(app->store, idp_readiness, app);
    return 0;
}

/* Identity keys: the current one signs, the previous one stays in the JWKS
 * so assertions signed just before a rotation still verify. */
static int load_identity_keys(const struct gw_config *cfg, struct jws_key **cur,
                              struct jws_key **prev, char **err_out)
{
    *cur = *prev = NULL;
    if (cfg->identity.signing_key_file == NULL)
        return 0;
    *cur = jws_key_load(cfg->identity.signing_key_file, err_out);
    if (*cur == NULL)
        return -EINVAL;
    if (cfg->identity.previous_key_file) {
        *prev = jws_key_load(cfg->identity.previous_key_file, err_out);
        if (*prev == NULL) {
            jws_key_free(*cur);
            *cur = NULL;
            return -EINVAL;
        }
    }
    return 0;
}

static void on_jwks(struct http_request *req, void *arg)
{
    struct gw_app *app = arg;
    json_t *keys = json_array();
    if (app->sign_key)
        json_array_append_new(keys, jws_key_public_jwk(app->sign_key));
    if (app->previous_key)
        json_array_append_new(keys, jws_key_public_jwk(app->previous_key));
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_set_header(req, "Cache-Control", "public, max-age=300");
    http_reply_json_text(req, 200, text);
    free(text);
}

/* proxy/ and oauth/ never include each other: this shim joins them. */
static void auth_route(void *arg, struct http_request *req, const struct gw_route_config *route,
                       mg_authed_fn ok, void *ok_arg)
{
    struct gw_app *app = arg;
    oauth_bearer_check(app->oauth, req, route, ok, ok_arg);
}

/* Several instances on one store: this one's record, and its listener for hops (proxy/cluster.h).
 */
static int open_cluster(struct gw_app *app, char **err_out)
{
    const struct gw_cluster_config *cc = &app->cfg->cluster;
    if (cc->listen == NULL)
        return 0;
    const unsigned char *secret = cc->secret ? cc->secret : app->cfg->oauth.secret;
    size_t secret_len = cc->secret ? cc->secret_len : app->cfg->oauth.secret_len;
    app->cluster = cluster_new(app->base, app->store, app->httpc, cc, secret, secret_len, err_out);
    return app->cluster ? 0 : -EINVAL;
}

static int open_internal_listener(struct gw_app *app, char **err_out)
{
    if (app->cluster == NULL)
        return 0;
    struct http_server_options o;
    http_options_from(app->cfg, &o);
    o.trusted_proxies = NULL; /* the peer's hop names the client, verified per request */
    o.n_trusted_proxies = 0;
    o.tls_cert_file = o.tls_key_file = NULL;
    o.max_connections_per_ip = 0; /* a few peer instances carry every forwarded client */
    app->internal_http = http_server_new(app->base, &o, err_out);
    if (app->internal_http == NULL ||
        http_server_listen(app->internal_http, app->cfg->cluster.listen, err_out) < 0)
        return -EADDRNOTAVAIL;
    http_server_set_observer(app->internal_http, on_access, app);
    gw_health_register(app->health, app->internal_http);
    if (proxy_register_internal_routes(app->proxy, app->internal_http) < 0) {
        *err_out = xstrdup("cannot register the internal endpoints");
        return -EINVAL;
    }
    gw_log(GW_LOG_INFO, "cluster", NULL, "internal listener", "address", app->cfg->cluster.listen,
           "advertise", app->cfg->cluster.advertise, NULL);
    return 0;
}

static void open_proxy(struct gw_app *app)
{
    struct proxy_deps deps = {.base = app->base,
                              .store = app->store,
                              .httpc = app->httpc,
                              .auth = auth_route,
                              .auth_arg = app,
                              .signer = app->sign_key,
                              .cluster = app->cluster,
                              .metrics = app->metrics};
    app->proxy = proxy_new(app->cfg, &deps);
}

/* ---- signals: drain and reload ------------------------------------- */

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_app *app = arg;
    size_t busy = http_server_in_flight(app->http);
    uint64_t deadline = app->drain_deadline_ms;
    if (!app->stopping_children && (busy == 0 || time_mono_ms() >= deadline)) {
        if (busy)
            gw_log(GW_LOG_WARN, "app", NULL, "shutdown grace over; closing in-flight requests",
                   NULL);
        /* Children get the stop sequence (stdin closed, SIGTERM, SIGKILL);
         * keep the loop running until they are reaped, bounded by the grace. */
        app->stopping_children = true;
        app->drain_deadline_ms += app->cfg->server.limits.shutdown_grace_ms;
        deadline = app->drain_deadline_ms;
        proxy_shutdown(app->proxy);
    }
    if (app->stopping_children &&
        (proxy_children_alive(app->proxy) == 0 || time_mono_ms() >= deadline)) {
        event_base_loopexit(app->base, NULL);
        return;
    }
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    evtimer_add(app->drain_timer, &tv);
}

static void start_drain(struct gw_app *app, const char *why)
{
    if (app->draining) {
        gw_log(GW_LOG_WARN, "app", NULL, "second signal: exiting now", NULL);
        event_base_loopbreak(app->base);
        return;
    }
    app->draining = true;
    gw_log(GW_LOG_INFO, "app", NULL, "draining", "signal", why, NULL);
    http_server_stop_accepting(app->http);
    cluster_withdraw(app->cluster); /* peers stop sending new sessions' requests here */
    if (app->metrics_http)
        http_server_stop_accepting(app->metrics_http);
    proxy_drain(app->proxy);
    app->drain_deadline_ms = time_mono_ms() + app->cfg->server.limits.shutdown_grace_ms;
    drain_check(-1, 0, app);
}

static void apply_log_level(const struct gw_app *app)
{
    int level =
        app->opts.log_level_override >= 0 ? app->opts.log_level_override : app->cfg->log.level;
    gw_log_set_level((enum gw_log_level)level);
}

/*
 * An IdP client a reload removed or replaced, with the config it reads: both
 * live until its logins and refreshes in flight have ended (F16a: the client
 * used to keep pointing into the freed config).
 */
struct retired_idp {
    struct gw_app *app; /* borrowed */
    struct idp_client *idp;
    struct gw_config *cfg; /* owned */
    struct retired_idp *next;
};

static void on_idp_retired(void *arg)
{
    struct retired_idp *r = arg;
    struct retired_idp **pp = &r->app->retired;
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    gw_config_free(r->cfg);
    free(r);
}

/* The reload's IdP step. Returns true when OLD must stay alive (a retired client reads it). */
static bool reload_idp(struct gw_app *app, struct gw_config *old, const struct gw_config *fresh)
{
    bool want = fresh->idp.configured;
    if (app->idp && want && idp_config_same_provider(&old->idp, &fresh->idp)) {
        idp_client_set_config(app->idp, &fresh->idp);
        return false;
    }
    struct idp_client *next = NULL;
    if (want) {
        char *err = NULL;
        next = idp_client_new(app->base, app->httpc, &fresh->idp, &err);
        if (next == NULL) {
            gw_log(GW_LOG_ERROR, "app", NULL, "reload: the new idp section cannot be used", "error",
                   err, NULL);
            free(err);
        } else {
            idp_client_start(next);
        }
    }
    gw_log(GW_LOG_INFO, "app", NULL,
           app->idp == NULL ? "reload: identity provider added"
           : want           ? "reload: identity provider replaced"
                            : "reload: identity provider removed",
           NULL);
    struct idp_client *prev = app->idp;
    app->idp = next;
    oauth_server_set_idp(app->oauth, next);
    if (prev == NULL)
        return false;
    struct retired_idp *r = xcalloc(1, sizeof(*r));
    r->app = app;
    r->idp = prev;
    r->cfg = old;
    r->next = app->retired;
    app->retired = r;
    idp_client_retire(prev, on_idp_retired, r);
    return true;
}

/* What a reload cannot change is reported, not silently ignored. */
static void warn_restart_needed(const struct gw_config *old, const struct gw_config *fresh)
{
    bool listen_changed = old->server.listen.len != fresh->server.listen.len;
    for (size_t i = 0; !listen_changed && i < old->server.listen.len; i++)
        listen_changed = strcmp(old->server.listen.items[i], fresh->server.listen.items[i]) != 0;
    if (listen_changed)
        gw_log(GW_LOG_WARN, "app", NULL, "server.listen changed: takes effect after a restart",
               NULL);
    if (old->store.backend != fresh->store.backend ||
        strcmp(old->store.redis_url ? old->store.redis_url : "",
               fresh->store.redis_url ? fresh->store.redis_url : "") != 0)
        gw_log(GW_LOG_WARN, "app", NULL, "store changed: takes effect after a restart", NULL);
    if ((old->server.tls_cert == NULL) != (fresh->server.tls_cert == NULL))
        gw_log(GW_LOG_WARN, "app", NULL, "server.tls changed: takes effect after a restart", NULL);
}

static void reload(struct gw_app *app)
{
    struct gw_config_errors errs = {0};
    struct gw_config *fresh = gw_config_load(app->opts.config_path, &errs);
    if (fresh == NULL) {
        for (size_t i = 0; i < errs.len; i++)
            gw_log(GW_LOG_ERROR, "config", NULL, errs.messages[i], NULL);
        gw_log(GW_LOG_ERROR, "app", NULL, "reload failed: keeping the running configuration",
               "file", app->opts.config_path, NULL);
        gw_config_errors_clear(&errs);
        return;
    }
    struct jws_key *cur = NULL, *prev = NULL;
    char *kerr = NULL;
    if (load_identity_keys(fresh, &cur, &prev, &kerr) < 0) {
        gw_log(GW_LOG_ERROR, "app", NULL, "reload failed: keeping the running configuration",
               "error", kerr, NULL);
        free(kerr);
        gw_config_free(fresh);
        return;
    }
    warn_restart_needed(app->cfg, fresh);
    proxy_set_signer(app->proxy, cur);
    jws_key_free(app->sign_key);
    jws_key_free(app->previous_key);
    app->sign_key = cur;
    app->previous_key = prev;
    struct gw_config *old = app->cfg;
    app->cfg = fresh;
    struct http_server_options o;
    http_options_from(fresh, &o);
    http_server_set_limits(app->http, &o); /* drops the borrowed trusted_proxies of old */
    oauth_server_set_config(app->oauth, fresh);
    proxy_set_config(app->proxy, fresh);
    /* New routes (and their metadata documents) are served from now on. */
    if (proxy_register_routes(app->proxy, app->http) < 0 ||
        (app->internal_http &&
         proxy_register_internal_routes(app->proxy, app->internal_http) < 0) ||
        oauth_server_register_routes(app->oauth, app->http) < 0)
        gw_log(GW_LOG_ERROR, "app", NULL, "could not register the routes of the new config", NULL);
    bool keep_old = reload_idp(app, old, fresh);
    apply_log_level(app);
    if (!keep_old)
        gw_config_free(old);
    gw_log(GW_LOG_INFO, "app", NULL, "configuration reloaded", "file", app->opts.config_path, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct gw_app *app = arg;
    if (sig == SIGHUP)
        reload(app);
    else
        start_drain(app, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void install_signals(struct gw_app *app)
{
    static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < 3; i++) {
        app->signals[i] = evsignal_new(app->base, sigs[i], on_signal, app);
        evsignal_add(app->signals[i], NULL);
    }
}

/* ---- memory ------------------------------------------------------------ */

/* Samples the open connections for common/heap_trim.h, which has the rules. */
static void trim_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_app *app = arg;
    size_t open = app->http ? http_server_open_connections(app->http) : 0;
    if (heap_trim_sample(&app->trim, open, time_mono_ms(), heap_trim_usage) != HEAP_TRIM_NONE)
        heap_trim_now();
}

/*
 * libevent allocates a small record per descriptor number the first time an
 * event is added on it (evmap_io_add_) and frees it only with the base. When
 * thousands of connections open, those records are allocated in between the
 * connections' buffers, one per new descriptor number, and outlive them: after
 * the burst each pins a page that malloc_trim cannot give back (5000 idle
 * streams left 45 MiB of such pages). Reserving the records at start, for
 * every descriptor the connection limit can bring, puts them together at the
 * bottom of the heap. An event added on a number that is not open creates the
 * record and then fails in epoll_ctl (EBADF), which is the point: libevent
 * has no call to reserve them, and its warning for that failure is muted here.
 * The cost: one failed syscall per slot at start (about 15 ms for the default
 * 20,000 connections) and 32 bytes per slot for the life of the process.
 */
static void quiet_libevent(int severity, const char *msg)
{
    (void)severity;
    (void)msg;
}

static void reserve_fd_slots(struct event_base *base, size_t slots)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && slots > rl.rlim_cur)
        slots = (size_t)rl.rlim_cur;
    event_set_log_callback(quiet_libevent);
    for (size_t fd = slots; fd-- > 3;) {
        struct event ev; /* on an open descriptor (inherited) the add works: undone at once */
        event_assign(&ev, base, (evutil_socket_t)fd, EV_READ, NULL, NULL);
        if (event_add(&ev, NULL) == 0)
            event_del(&ev);
    }
    event_set_log_callback(NULL);
}

/* ---- lifecycle ------------------------------------------------------- */

/*
 * The open-file limit, set once at start: server.limits.open_files, or the
 * hard limit when it is 0 (most systems start services with a soft limit of
 * 1024, far below max_connections). Every connection, child pipe and pidfd
 * is a descriptor; at the limit accept() fails with EMFILE, which the HTTP
 * server survives (it sheds the newest connection), but the operator should
 * hear about it before that: a warning when the limit is below
 * max_connections plus a reserve for listeners, the store and children.
 */
#define OPEN_FILES_RESERVE 256
static void log_limit(enum gw_log_level level, const char *msg, const char *k1, uint64_t v1,
                      const char *k2, uint64_t v2)
{
    struct gw_log_line *l = gw_log_begin(level, "app", NULL, msg);
    gw_log_int(l, k1, (int64_t)v1);
    gw_log_int(l, k2, (int64_t)v2);
    gw_log_end(l);
}

static void apply_open_files(const struct gw_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        gw_log(GW_LOG_WARN, "app", NULL, "cannot read the open-file limit", "error",
               strerror(errno), NULL);
        return;
    }
    rlim_t hard = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max; /* Linux's nr_open */
    rlim_t want = cfg->server.limits.open_files ? cfg->server.limits.open_files : hard;
    if (want > hard) {
        log_limit(GW_LOG_WARN, "server.limits.open_files is above the hard limit: using it",
                  "open_files", want, "hard_limit", hard);
        want = hard;
    }
    if (want != rl.rlim_cur) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            gw_log(GW_LOG_WARN, "app", NULL, "cannot set the open-file limit", "error",
                   strerror(errno), NULL);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    uint64_t need = (uint64_t)cfg->server.limits.max_connections + OPEN_FILES_RESERVE;
    if (rl.rlim_cur < need)
        log_limit(GW_LOG_WARN,
                  "the open-file limit is below server.limits.max_connections + 256: "
                  "raise the hard limit (LimitNOFILE=, ulimit -Hn) or lower max_connections",
                  "open_files", rl.rlim_cur, "needed", need);
    else
        log_limit(GW_LOG_DEBUG, "open-file limit", "open_files", rl.rlim_cur, "hard_limit",
                  rl.rlim_max == RLIM_INFINITY ? 0 : rl.rlim_max);
}

/*
 * epoll with libevent's change list: the adds and deletes a turn of the loop
 * makes on one descriptor go to the kernel as one epoll_ctl when the turn
 * ends, and cancel out when they undo each other. evhttp turns a
 * connection's events off and on around every request and answer: four
 * epoll_ctl per tools/call without it, two with it (about 1.5 us of CPU per
 * call). libevent's caveat, a descriptor dup()ed with events on both copies,
 * does not arise here: nothing in the process dups a descriptor it watches.
 */
static struct event_base *new_event_base(void)
{
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        return NULL;
    if (event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) != 0)
        gw_log(GW_LOG_DEBUG, "app", NULL, "libevent refused its epoll change list", NULL);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

struct gw_app *gw_app_new(struct gw_config *cfg, const struct gw_app_options *opts, char **err_out)
{
    *err_out = NULL;
    struct gw_app *app = xcalloc(1, sizeof(*app));
    app->cfg = cfg;
    app->opts = *opts;
    apply_log_level(app);
    apply_open_files(cfg);
    heap_trim_tune();
    app->base = new_event_base();
    if (app->base == NULL) {
        *err_out = xstrdup("cannot create the event loop");
        goto fail;
    }
    reserve_fd_slots(app->base,
                     2 * (size_t)cfg->server.limits.max_connections + OPEN_FILES_RESERVE);
    app->metrics = gw_metrics_new(app->cfg->metrics.max_series);
    app->drain_timer = xevtimer_new(app->base, drain_check, app);
    app->trim_timer = xevent_new(app->base, -1, EV_PERSIST, trim_check, app);
    struct timeval trim_tv = {HEAP_TRIM_SAMPLE_MS / 1000, 0};
    event_add(app->trim_timer, &trim_tv);
    if (load_identity_keys(cfg, &app->sign_key, &app->previous_key, err_out) < 0 ||
        open_store(app, err_out) < 0 || open_oauth(app, err_out) < 0 ||
        open_cluster(app, err_out) < 0)
        goto fail;
    open_proxy(app);
    if (open_servers(app, err_out) < 0 || open_internal_listener(app, err_out) < 0)
        goto fail;
    install_signals(app);
    return app;
fail:
    gw_app_free(app);
    return NULL;
}

int gw_app_run(struct gw_app *app)
{
    gw_log(GW_LOG_INFO, "app", NULL, "mcpgate started", "version", MCPGATE_VERSION, "public_url",
           app->cfg->server.public_url, NULL);
    event_base_dispatch(app->base);
    gw_log(GW_LOG_INFO, "app", NULL, "mcpgate stopped", NULL);
    return app->exit_status;
}

void gw_app_free(struct gw_app *app)
{
    if (app == NULL)
        return;
    for (int i = 0; i < 3; i++)
        if (app->signals[i])
            event_free(app->signals[i]);
    if (app->drain_timer)
        event_free(app->drain_timer);
    if (app->trim_timer)
        event_free(app->trim_timer);
    /* Outbound calls and the store first: their pending callbacks still
     * finish live requests while the HTTP servers exist. */
    proxy_free(app->proxy);     /* kills and reaps children still running */
    cluster_free(app->cluster); /* before httpc and the store: hops use both */
    idp_client_free(app->idp);
    while (app->retired) {
        struct retired_idp *r = app->retired;
        app->retired = r->next;
        idp_client_free(r->idp); /* what is still in flight is dropped: the process ends */
        gw_config_free(r->cfg);
        free(r);
    }
    httpc_free(app->httpc);
    oauth_server_free(app->oauth);
    store_free(app->store);
    http_server_free(app->internal_http);
    http_server_free(app->metrics_http);
    http_server_free(app->http);
    gw_health_free(app->health);
    stdio_children_reap_all(); /* children freed just before: reaped, never left as zombies */
    gw_metrics_free(app->metrics);
    jws_key_free(app->sign_key);
    jws_key_free(app->previous_key);
    gw_config_free(app->cfg);
    if (app->base) {
        store_shutdown_finish(app->base); /* everything else is gone: only that can run */
        event_base_free(app->base);
    }
    free(app);
}
