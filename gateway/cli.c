/*
 * cli: one-shot commands. The store commands open the configured store on a
 * private event loop, run one admin operation from oauth/ and wait for it,
 * bounded by a deadline, so a dead Redis ends in an error, not a hang.
 */
#include "gateway/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/principal.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "gateway/app.h"
#include "gateway/config.h"
#include "oauth/oauth.h"
#include "proxy/proxy.h"
#include "proxy/policy.h"
#include "store/store.h"

#define EXIT_USAGE 2
#define CLI_DEADLINE_S 15

struct cli_ctx {
    struct event_base *base;
    struct gw_config *cfg;
    struct store *store;
    struct oauth_server *oauth;
    bool finished;
    int rc;
};

static void cli_done(int rc, const char *message, void *arg)
{
    struct cli_ctx *ctx = arg;
    ctx->finished = true;
    ctx->rc = rc;
    if (message)
        fprintf(rc < 0 ? stderr : stdout, "%s%s\n", rc < 0 ? "mcpgate: " : "", message);
}

static struct gw_config *load_config(const char *path)
{
    if (path == NULL) {
        fprintf(stderr, "mcpgate: give the configuration with -c FILE\n");
        return NULL;
    }
    struct gw_config_errors errs = {0};
    struct gw_config *cfg = gw_config_load(path, &errs);
    for (size_t i = 0; i < errs.len; i++)
        fprintf(stderr, "%s\n", errs.messages[i]);
    gw_config_errors_clear(&errs);
    return cfg;
}

static int ctx_open(struct cli_ctx *ctx, const char *path)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->cfg = load_config(path);
    if (ctx->cfg == NULL)
        return EXIT_USAGE;
    gw_log_set_level(GW_LOG_WARN);
    ctx->base = event_base_new();
    struct store_options so;
    gw_store_options_from(ctx->cfg, &so);
    char *err = NULL;
    ctx->store = store_new(ctx->base, &so, &err);
    if (ctx->store == NULL) {
        fprintf(stderr, "mcpgate: store: %s\n", err);
        free(err);
        return 1;
    }
    struct oauth_server_deps deps = {.base = ctx->base, .store = ctx->store};
    ctx->oauth = oauth_server_new(ctx->cfg, &deps);
    return 0;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Runs the loop until the operation is done (or the deadline); returns the exit status. */
static int ctx_run(struct cli_ctx *ctx)
{
    struct event *deadline = xevtimer_new(ctx->base, on_deadline, ctx->base);
    struct timeval tv = {CLI_DEADLINE_S, 0};
    evtimer_add(deadline, &tv);
    while (!ctx->finished && event_base_loop(ctx->base, EVLOOP_ONCE) == 0 &&
           evtimer_pending(deadline, NULL))
        ;
    event_free(deadline);
    if (!ctx->finished) {
        fprintf(stderr, "mcpgate: the store did not answer within %d s\n", CLI_DEADLINE_S);
        return 1;
    }
    return ctx->rc < 0 ? 1 : 0;
}

static void ctx_close(struct cli_ctx *ctx)
{
    oauth_server_free(ctx->oauth);
    store_free(ctx->store);
    if (ctx->base)
        event_base_free(ctx->base);
    gw_config_free(ctx->cfg);
}

/* Shared option parsing: -c FILE and --user SUB; the rest stay positional. */
static int parse_common(int argc, char **argv, const char **config, const char **user)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"user", required_argument, NULL, 'u'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:u:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': *config = optarg; break;
        case 'u': *user = optarg; break;
        default: return -EINVAL;
        }
    }
    return optind;
}

int cli_grants(int argc, char **argv)
{
    const char *config = NULL, *user = NULL;
    int first = parse_common(argc, argv, &config, &user);
    const char *verb = first > 0 && first < argc ? argv[first] : NULL;
    const char *id = first > 0 && first + 1 < argc ? argv[first + 1] : NULL;
    bool list = verb && strcmp(verb, "list") == 0 && id == NULL;
    bool revoke = verb && strcmp(verb, "revoke") == 0 && ((id != NULL) != (user != NULL));
    if (!list && !revoke) {
        fprintf(stderr, "usage: mcpgate grants list -c FILE [--user SUB]\n"
                        "       mcpgate grants revoke -c FILE (ID | --user SUB)\n");
        return EXIT_USAGE;
    }
    struct cli_ctx ctx;
    int rc = ctx_open(&ctx, config);
    if (rc == 0) {
        if (list)
            oauth_admin_list_grants(ctx.oauth, user, stdout, cli_done, &ctx);
        else if (id)
            oauth_admin_revoke_grant(ctx.oauth, id, cli_done, &ctx);
        else
            oauth_admin_revoke_user(ctx.oauth, user, cli_done, &ctx);
        rc = ctx_run(&ctx);
    }
    ctx_close(&ctx);
    return rc;
}

int cli_clients(int argc, char **argv)
{
    const char *config = NULL, *user = NULL;
    int first = parse_common(argc, argv, &config, &user);
    const char *verb = first > 0 && first < argc ? argv[first] : NULL;
    const char *id = first > 0 && first + 1 < argc ? argv[first + 1] : NULL;
    bool list = verb && strcmp(verb, "list") == 0 && id == NULL;
    bool del = verb && strcmp(verb, "delete") == 0 && id != NULL;
    if ((!list && !del) || user) {
        fprintf(stderr, "usage: mcpgate clients list -c FILE\n"
                        "       mcpgate clients delete -c FILE ID\n");
        return EXIT_USAGE;
    }
    struct cli_ctx ctx;
    int rc = ctx_open(&ctx, config);
    if (rc == 0) {
        if (list)
            oauth_admin_list_clients(ctx.oauth, stdout, cli_done, &ctx);
        else
            oauth_admin_delete_client(ctx.oauth, id, cli_done, &ctx);
        rc = ctx_run(&ctx);
    }
    ctx_close(&ctx);
    return rc;
}

int cli_sessions(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"user", required_argument, NULL, 'u'},
        {"route", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *user = NULL, *route = NULL;
    int opt;
    bool bad = false;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:u:r:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
        case 'u': user = optarg; break;
        case 'r': route = optarg; break;
        default: bad = true; break;
        }
    }
    const char *verb = optind < argc ? argv[optind] : NULL;
    const char *id = optind + 1 < argc ? argv[optind + 1] : NULL;
    bool list = verb && strcmp(verb, "list") == 0 && id == NULL;
    bool end = verb && strcmp(verb, "end") == 0 && id != NULL && !user && !route;
    if (bad || (!list && !end) || optind + 2 < argc) {
        fprintf(stderr, "usage: mcpgate sessions list -c FILE [--user SUB] [--route NAME]\n"
                        "       mcpgate sessions end -c FILE ID\n");
        return EXIT_USAGE;
    }
    struct cli_ctx ctx;
    int rc = ctx_open(&ctx, config);
    if (rc == 0) {
        if (list)
            proxy_admin_list_sessions(ctx.store, ctx.base, user, route, stdout, cli_done, &ctx);
        else
            proxy_admin_end_session(ctx.store, ctx.base, id, cli_done, &ctx);
        rc = ctx_run(&ctx);
    }
    ctx_close(&ctx);
    return rc;
}

/* ---- policy ------------------------------------------------------------------- */

static void print_list(FILE *out, const char *label, const struct gw_string_list *l)
{
    if (l->len == 0)
        return;
    fprintf(out, " %s=", label);
    for (size_t i = 0; i < l->len; i++)
        fprintf(out, "%s%s", i ? "," : "", l->items[i]);
}

static void print_rules(FILE *out, const char *what, const struct gw_access_rules *rules)
{
    if (rules->len == 0 && rules->default_effect == GW_POLICY_ALLOW) {
        fprintf(out, "    %s: every one allowed\n", what);
        return;
    }
    fprintf(out, "    %s (first match wins):\n", what);
    for (size_t i = 0; i < rules->len; i++) {
        const struct gw_access_rule *r = &rules->rules[i];
        fprintf(out, "      %zu. match \"%s\"", i + 1, r->match);
        print_list(out, "roles", &r->roles);
        print_list(out, "groups", &r->groups);
        print_list(out, "scopes", &r->scopes);
        if (r->deny)
            fprintf(out, " deny");
        else if (r->roles.len == 0 && r->groups.len == 0 && r->scopes.len == 0)
            fprintf(out, " allow");
        fprintf(out, "  (line %u)\n", r->line);
    }
    fprintf(out, "      otherwise: %s\n",
            rules->default_effect == GW_POLICY_DENY ? "deny" : "allow");
}

void cli_print_policy(const struct gw_config *cfg, FILE *out)
{
    fprintf(out, "policy:\n");
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct gw_route_config *r = &cfg->routes[i];
        fprintf(out, "  %s (%s)%s:\n", r->name, r->path,
                r->auth == GW_ROUTE_AUTH_NONE ? " [auth: none]" : "");
        const struct gw_requirements *q = &r->require;
        if (q->scopes.len || q->roles.len || q->groups.len) {
            fprintf(out, "    require:");
            print_list(out, "scopes(all)", &q->scopes);
            print_list(out, "roles(any)", &q->roles);
            print_list(out, "groups(any)", &q->groups);
            fprintf(out, "\n");
        }
        print_rules(out, "tools", &r->tools);
        print_rules(out, "prompts", &r->prompts);
        print_rules(out, "resources", &r->resources);
    }
}

int cli_explain(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"route", required_argument, NULL, 'r'},
        {"roles", required_argument, NULL, 'R'},
        {"groups", required_argument, NULL, 'g'},
        {"scopes", required_argument, NULL, 's'},
        {"kind", required_argument, NULL, 'k'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *route_name = NULL, *kind = "tool";
    struct mg_principal p = {.subject = (char *)"explain"};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:r:", longopts, NULL)) != -1) {
        char *copy = optarg ? xstrdup(optarg) : NULL;
        for (char *c = copy; c && *c; c++)
            if (*c == ',')
                *c = ' ';
        switch (opt) {
        case 'c': config = optarg; break;
        case 'r': route_name = optarg; break;
        case 'R': mg_string_list_split(&p.roles, copy); break;
        case 'g': mg_string_list_split(&p.groups, copy); break;
        case 's': mg_string_list_split(&p.scopes, copy); break;
        case 'k': kind = optarg; break;
        default: free(copy); return EXIT_USAGE;
        }
        free(copy);
    }
    int rc = EXIT_USAGE;
    struct gw_config *cfg = NULL;
    const struct gw_route_config *route = NULL;
    if (optind != argc - 1 || route_name == NULL ||
        (strcmp(kind, "tool") && strcmp(kind, "prompt") && strcmp(kind, "resource"))) {
        fprintf(stderr, "usage: mcpgate explain -c FILE --route NAME [--roles a,b] "
                        "[--groups g] [--scopes x,y] [--kind tool|prompt|resource] NAME\n");
        goto out;
    }
    cfg = load_config(config);
    if (cfg == NULL)
        goto out;
    route = gw_config_route_by_name(cfg, route_name);
    if (route == NULL) {
        fprintf(stderr, "mcpgate: no route named \"%s\"\n", route_name);
        goto out;
    }
    struct policy_verdict rv = policy_route_check(route, &p);
    if (rv.decision != POLICY_ALLOW) {
        printf("route %s: denied by its require: section (%s)\n", route->name,
               rv.decision == POLICY_DENY_SCOPE ? "missing scope" : "missing role or group");
        rc = 1;
        goto out;
    }
    const struct gw_access_rules *rules = strcmp(kind, "tool") == 0     ? &route->tools
                                          : strcmp(kind, "prompt") == 0 ? &route->prompts
                                                                        : &route->resources;
    struct policy_verdict v = policy_check(rules, &p, argv[optind]);
    char *why = policy_explain(rules, &v, argv[optind]);
    printf("%s\n", why);
    free(why);
    rc = v.decision == POLICY_ALLOW ? 0 : 1;
out:
    mg_string_list_clear(&p.roles);
    mg_string_list_clear(&p.groups);
    mg_string_list_clear(&p.scopes);
    gw_config_free(cfg);
    return rc;
}
