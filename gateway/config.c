/*
 * config: the gateway's configuration (DESIGN §3) as one root table of the
 * modules' sections, read by the engine in conf/conf.c into struct gw_config
 * (conf/config.h).
 *
 * Each module owns its section's table, defaults and checks, beside its
 * code: server: in http/http_conf.c, store: in store/store_conf.c, idp:,
 * oauth: and identity: in oauth/oauth_conf.c, routes: in proxy/route_conf.c.
 * This file owns the root table listing them, log: and metrics:, the checks
 * across sections (route paths against gateway paths, auth: none against
 * listeners, what oauth routes require), loading and freeing a config, and
 * the `check-config` summary.
 *
 * Ownership: the struct gw_config owns every string and array in it; the
 * descriptor tables drive gw_config_free() (conf_section_free()), which
 * wipes secrets with OPENSSL_cleanse.
 */
#include "gateway/config.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "conf/conf.h"
#include "http/http_conf.h"
#include "oauth/oauth_conf.h"
#include "proxy/cluster_conf.h"
#include "proxy/route_conf.h"
#include "store/store_conf.h"

CONF_ENUM_IS_INT(gw_log_format);

/*
 * Paths the gateway serves itself (DESIGN §4; the metrics path is checked
 * separately). A rule across sections: it names endpoints of oauth/, http/
 * and gateway/health.c, so it lives here and not with any one of them. It
 * hard-codes them: a new endpoint must be added here as well.
 */
static const char *reserved_path(const char *p)
{
    static const char *const exact[] = {"/authorize", "/token",   "/register", "/revoke",
                                        "/callback",  "/healthz", "/readyz"};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(p, exact[i]) == 0)
            return "is a gateway endpoint";
    if (strncmp(p, "/.well-known", 12) == 0 && (p[12] == '/' || p[12] == '\0'))
        return "is under /.well-known, which the gateway serves";
    return NULL;
}

/* The metrics path: a well-formed URL path that is not a gateway endpoint. */
static bool check_metrics_path(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    const char *why = conf_path_problem(v);
    if (why == NULL)
        why = reserved_path(v);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

/* ---- log:, metrics: and the root table ----------------------------------- */

/* log: and metrics: are read here: common/ (log) must not include conf/. */
static const struct conf_enum_name level_names[] = {{"debug", GW_LOG_DEBUG},
                                                    {"info", GW_LOG_INFO},
                                                    {"warn", GW_LOG_WARN},
                                                    {"error", GW_LOG_ERROR},
                                                    {NULL, 0}};

static const struct conf_enum_name format_names[] = {{"json", GW_LOG_FORMAT_JSON}, {NULL, 0}};

static const struct conf_field log_fields[] = {
    {"level", CONF_ENUM, AT(struct gw_log_config, level), .names = level_names},
    {"format", CONF_ENUM, AT(struct gw_log_config, format), .names = format_names},
    {"access_log", CONF_BOOL, AT(struct gw_log_config, access_log)},
};

static const struct conf_section log_section = {FIELDS(log_fields), NULL, NULL};

static const struct conf_field metrics_fields[] = {
    {"enabled", CONF_BOOL, AT(struct gw_metrics_config, enabled)},
    {"path", CONF_STR, AT(struct gw_metrics_config, path), .check = check_metrics_path},
    {"listen", CONF_STR, AT(struct gw_metrics_config, listen), .check = http_conf_check_listen},
    {"max_series", CONF_U32, AT(struct gw_metrics_config, max_series), RANGE(10, 100000)},
};

static const struct conf_section metrics_section = {FIELDS(metrics_fields), NULL, NULL};

/* Every section of the file and the module that owns it (nginx's ngx_modules[], in a way). */
static const struct conf_field root_fields[] = {
    {"server", CONF_SECTION, AT(struct gw_config, server), .flags = CONF_REQUIRED,
     .sub = &http_conf_server_section},
    {"store", CONF_SECTION, AT(struct gw_config, store), .sub = &store_conf_section},
    {"idp", CONF_SECTION, AT(struct gw_config, idp), .sub = &oauth_conf_idp_section},
    {"oauth", CONF_SECTION, AT(struct gw_config, oauth), .sub = &oauth_conf_section},
    {"identity", CONF_SECTION, AT(struct gw_config, identity), .sub = &oauth_conf_identity_section},
    {"routes", CONF_LIST, AT2(struct gw_config, routes, n_routes), .sub = &route_conf_section,
     .elem_size = sizeof(struct gw_route_config), .init = route_conf_init},
    {"log", CONF_SECTION, AT(struct gw_config, log), .sub = &log_section},
    {"metrics", CONF_SECTION, AT(struct gw_config, metrics), .sub = &metrics_section},
    {"cluster", CONF_SECTION, AT(struct gw_config, cluster), .sub = &cluster_conf_section},
};

static const struct conf_section root_section = {FIELDS(root_fields), NULL, NULL};

/* ---- pass 3: checks across sections -------------------------------------- */

/* Name and path unique; no route path is another's legacy /sse or /messages endpoint. */
static void route_check_unique(struct conf_loader *ld, const struct gw_config *cfg, size_t i,
                               const struct conf_node *rn, const struct conf_node *seq)
{
    const struct gw_route_config *r = &cfg->routes[i];
    for (size_t j = 0; j < i; j++) {
        const struct gw_route_config *o = &cfg->routes[j];
        unsigned first = conf_node_line(conf_seq_item(seq, j));
        if (r->name && o->name && strcmp(r->name, o->name) == 0)
            conf_value_error(ld, rn, "name", "duplicate route name \"%s\" (first at line %u)",
                             r->name, first);
        if (!r->path || !o->path)
            continue;
        size_t n = strlen(o->path);
        if (strcmp(r->path, o->path) == 0)
            conf_value_error(ld, rn, "path", "duplicate route path %s (first at line %u)", r->path,
                             first);
        else if (strncmp(r->path, o->path, n) == 0 &&
                 (strcmp(r->path + n, "/sse") == 0 || strcmp(r->path + n, "/messages") == 0))
            conf_value_error(ld, rn, "path",
                             "%s is the legacy SSE endpoint of route \"%s\" (line %u)", r->path,
                             o->name ? o->name : "", first);
        else if (strncmp(o->path, r->path, strlen(r->path)) == 0 &&
                 (strcmp(o->path + strlen(r->path), "/sse") == 0 ||
                  strcmp(o->path + strlen(r->path), "/messages") == 0))
            conf_value_error(ld, rn, "path", "its legacy SSE endpoint %s is route \"%s\" (line %u)",
                             o->path, o->name ? o->name : "", first);
    }
}

static const char *first_public_listener(const struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->server.listen.len; i++) {
        bool loopback;
        if (http_conf_listen_problem(cfg->server.listen.items[i], &loopback) == NULL && !loopback)
            return cfg->server.listen.items[i];
    }
    return NULL;
}

static void route_check_one(struct conf_loader *ld, struct gw_config *cfg,
                            struct gw_route_config *r, const struct conf_node *rn)
{
    const struct gw_metrics_config *m = &cfg->metrics;
    const char *listener = first_public_listener(cfg);
    if (r->path && m->enabled && m->listen == NULL && m->path && strcmp(r->path, m->path) == 0)
        conf_value_error(ld, rn, "path",
                         "%s is the metrics path (move metrics.path or give "
                         "metrics.listen)",
                         r->path);
    if (r->auth == GW_ROUTE_AUTH_NONE && listener && !cfg->server.allow_unauthenticated_routes)
        conf_value_error(ld, rn, "auth",
                         "auth: none on the non-loopback listener %s needs "
                         "server.allow_unauthenticated_routes: true",
                         listener);
    if (r->path && cfg->server.public_url)
        r->resource_url = xasprintf("%s%s", cfg->server.public_url, r->path);
}

/*
 * A route path that is a gateway endpoint. Reported like a bad value, and
 * the path is dropped as a bad value would be, so the checks between routes
 * do not add errors about it.
 */
static void route_check_reserved(struct conf_loader *ld, struct gw_route_config *r,
                                 const struct conf_node *rn)
{
    const char *why = r->path ? reserved_path(r->path) : NULL;
    if (why == NULL)
        return;
    conf_value_error(ld, rn, "path", "\"%s\" %s", r->path, why);
    free(r->path);
    r->path = NULL;
}

static void check_routes(struct conf_loader *ld, struct gw_config *cfg,
                         const struct conf_node *root)
{
    const struct conf_node *seq = conf_map_get(root, "routes");
    for (size_t i = 0; i < cfg->n_routes; i++) {
        size_t old = conf_path_push(ld, "routes");
        conf_path_push_index(ld, i);
        if (conf_node_is_map(conf_seq_item(seq, i)))
            route_check_reserved(ld, &cfg->routes[i], conf_seq_item(seq, i));
        conf_path_pop(ld, old);
    }
    for (size_t i = 0; i < cfg->n_routes; i++) {
        size_t old = conf_path_push(ld, "routes");
        conf_path_push_index(ld, i);
        const struct conf_node *rn = conf_seq_item(seq, i);
        if (conf_node_is_map(rn)) {
            route_check_unique(ld, cfg, i, rn, seq);
            route_check_one(ld, cfg, &cfg->routes[i], rn);
        }
        conf_path_pop(ld, old);
    }
}

/* An `auth: oauth` route (the default) needs the IdP and the server secret. */
static void check_oauth_needs(struct conf_loader *ld, const struct gw_config *cfg,
                              const struct conf_node *root)
{
    const struct gw_route_config *r = NULL;
    for (size_t i = 0; i < cfg->n_routes && r == NULL; i++)
        if (cfg->routes[i].auth == GW_ROUTE_AUTH_OAUTH)
            r = &cfg->routes[i];
    if (r == NULL)
        return;
    const char *name = r->name ? r->name : "";
    if (conf_map_get(root, "idp") == NULL)
        conf_key_error(ld, root, "idp", "required: route \"%s\" uses auth: oauth", name);
    const struct conf_node *oauth = conf_map_get(root, "oauth");
    if (conf_map_has(oauth, "secret") || conf_map_has(oauth, "secret_file"))
        return;
    size_t old = conf_path_push(ld, "oauth");
    conf_key_error(
        ld, oauth ? oauth : root, "secret_file",
        "required: route \"%s\" uses auth: oauth (give oauth.secret_file or oauth.secret)", name);
    conf_path_pop(ld, old);
}

/* ---- defaults and freeing ------------------------------------------------ */

/* Each module's defaults; a key the file gives replaces (and frees) its default. */
static void config_defaults(struct gw_config *cfg)
{
    http_conf_defaults(&cfg->server);
    store_conf_defaults(&cfg->store);
    oauth_conf_idp_defaults(&cfg->idp);
    oauth_conf_defaults(&cfg->oauth);
    oauth_conf_identity_defaults(&cfg->identity);
    cluster_conf_defaults(&cfg->cluster);
    cfg->log.level = GW_LOG_INFO;
    cfg->log.format = GW_LOG_FORMAT_JSON;
    cfg->log.access_log = true;
    cfg->metrics.enabled = true;
    cfg->metrics.path = xstrdup("/metrics");
    cfg->metrics.max_series = 1000;
}

void gw_config_free(struct gw_config *cfg)
{
    if (cfg == NULL)
        return;
    conf_section_free(&root_section, cfg);
    free(cfg->source_path);
    free(cfg);
}

void gw_config_errors_clear(struct gw_config_errors *errs)
{
    conf_errors_clear(errs);
}

/* ---- loading ------------------------------------------------------------- */

/*
 * Clients cache a server's era per origin (MCP 2026-07-28 versioning,
 * "Backward Compatibility"): every route of this origin is modern, or none.
 * The modern front bridges STDIO servers (proxy/modern.c).
 */
static void check_modern(struct conf_loader *ld, const struct gw_config *cfg,
                         const struct conf_node *root)
{
    const struct conf_node *seq = conf_map_get(root, "routes");
    size_t modern = 0;
    for (size_t i = 0; i < cfg->n_routes; i++)
        modern += cfg->routes[i].modern;
    for (size_t i = 0; modern && i < cfg->n_routes; i++) {
        const struct gw_route_config *r = &cfg->routes[i];
        const struct conf_node *rn = seq ? conf_seq_item(seq, i) : root;
        if (!r->modern)
            conf_key_error(ld, rn, "modern",
                           "must be true on every route when one route has it: clients "
                           "cache the protocol era per origin");
        else if (r->kind != GW_UPSTREAM_STDIO)
            conf_key_error(ld, rn, "modern",
                           "is for stdio: routes (the modern front bridges STDIO servers); an "
                           "HTTP upstream that speaks 2026-07-28 is reached without it");
    }
}

/* Several instances share sessions through the store and authenticate their hops. */
static void check_cluster(struct conf_loader *ld, const struct gw_config *cfg,
                          const struct conf_node *root)
{
    if (cfg->cluster.listen == NULL)
        return;
    const struct conf_node *cl = conf_map_get(root, "cluster");
    if (cfg->store.backend != GW_STORE_REDIS)
        conf_key_error(ld, cl ? cl : root, "listen",
                       "a cluster needs store.backend: redis (instances meet in the store)");
    if (cfg->cluster.secret == NULL && cfg->oauth.secret == NULL)
        conf_key_error(ld, cl ? cl : root, "secret_file",
                       "required: the instances authenticate their hops with a key derived "
                       "from cluster.secret, or from oauth.secret when that is set");
}

static void check_across_sections(struct conf_loader *ld, const struct conf_node *root, void *base)
{
    struct gw_config *cfg = base;
    check_routes(ld, cfg, root);
    check_oauth_needs(ld, cfg, root);
    check_cluster(ld, cfg, root);
    check_modern(ld, cfg, root);
}

static struct gw_config *config_new(const char *source)
{
    struct gw_config *cfg = xcalloc(1, sizeof(*cfg));
    cfg->source_path = xstrdup(source);
    config_defaults(cfg);
    return cfg;
}

struct gw_config *gw_config_load_string(const char *yaml, size_t len, const char *name,
                                        struct gw_config_errors *errs)
{
    struct gw_config *cfg = config_new(name);
    if (conf_load_string(yaml, len, name, &root_section, check_across_sections, cfg, errs))
        return cfg;
    gw_config_free(cfg);
    return NULL;
}

struct gw_config *gw_config_load(const char *path, struct gw_config_errors *errs)
{
    struct gw_config *cfg = config_new(path);
    if (conf_load_file(path, &root_section, check_across_sections, cfg, errs))
        return cfg;
    gw_config_free(cfg);
    return NULL;
}

/* ---- check-config summary ------------------------------------------------ */

/* The URL with the password of its user info (redis://user:PASSWORD@host) masked. */
static char *mask_url_password(const char *url)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    const char *at = memchr(auth, '@', strcspn(auth, "/?#"));
    if (at == NULL)
        return xstrdup(url);
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    const char *keep_end = colon ? colon + 1 : auth;
    return xasprintf("%.*s***%s", (int)(keep_end - url), url, at);
}

static void print_route(const struct gw_route_config *r, FILE *out)
{
    fprintf(out, "  %s %s\n", r->name, r->path);
    if (r->kind == GW_UPSTREAM_STDIO) {
        fprintf(out, "    upstream: stdio:");
        for (size_t i = 0; i < r->stdio.command.len; i++)
            fprintf(out, " %s", r->stdio.command.items[i]);
        fputc('\n', out);
    } else {
        fprintf(out, "    upstream: http %s\n", r->http.url);
    }
    fprintf(out, "    auth: %s\n", r->auth == GW_ROUTE_AUTH_NONE ? "none" : "oauth");
    fprintf(out, "    tools: %zu rule%s, default %s\n", r->tools.len, r->tools.len == 1 ? "" : "s",
            r->tools.default_effect == GW_POLICY_DENY ? "deny" : "allow");
}

void gw_config_print_summary(const struct gw_config *cfg, FILE *out)
{
    fprintf(out, "ok\nconfig: %s\nlisten:", cfg->source_path);
    for (size_t i = 0; i < cfg->server.listen.len; i++)
        fprintf(out, " %s", cfg->server.listen.items[i]);
    fprintf(out, "\npublic_url: %s\n", cfg->server.public_url);
    if (cfg->server.tls_cert)
        fprintf(out, "tls: cert %s, key %s\n", cfg->server.tls_cert, cfg->server.tls_key);
    else
        fprintf(out, "tls: off\n");
    if (cfg->store.backend == GW_STORE_MEMORY) {
        fprintf(out, "store: memory (single instance, lost on restart)\n");
    } else {
        char *url = mask_url_password(cfg->store.redis_url);
        fprintf(out, "store: redis %s (prefix \"%s\"%s)\n", url, cfg->store.prefix,
                cfg->store.redis_password ? ", password set" : "");
        free(url);
    }
    if (cfg->idp.configured)
        fprintf(out, "idp: %s, issuer %s, client_id %s\n", oauth_conf_preset_name(cfg->idp.preset),
                cfg->idp.issuer, cfg->idp.client_id);
    else
        fprintf(out, "idp: none\n");
    fprintf(out, "routes: %zu\n", cfg->n_routes);
    for (size_t i = 0; i < cfg->n_routes; i++)
        print_route(&cfg->routes[i], out);
}
