/*
 * identity: what an upstream learns about the caller (DESIGN §6). For STDIO
 * children: the environment. A child's environment is built from nothing:
 * the route's env, then only the gateway variables named in
 * env_passthrough, then the caller's identity as MCP_USER_* variables (one
 * child serves one session, so one user). The identity goes last so a
 * route's env cannot spoof it.
 */
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "proxy/proxy_int.h"

struct env_builder {
    char **items; /* owned, NULL-terminated */
    size_t len;
};

static void env_set(struct env_builder *b, const char *name, const char *value)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < b->len; i++) {
        if (strncmp(b->items[i], name, n) == 0 && b->items[i][n] == '=') {
            free(b->items[i]);
            b->items[i] = xasprintf("%s=%s", name, value);
            return;
        }
    }
    b->items = xrealloc(b->items, (b->len + 2) * sizeof(*b->items));
    b->items[b->len++] = xasprintf("%s=%s", name, value);
    b->items[b->len] = NULL;
}

static void env_set_list(struct env_builder *b, const char *name, const struct mg_string_list *l,
                         const char *sep)
{
    char *joined = mg_string_list_join(l, sep);
    env_set(b, name, joined);
    free(joined);
}

char **identity_child_env(const struct gw_route_config *route, const struct mg_principal *p)
{
    struct env_builder b = {xcalloc(1, sizeof(char *)), 0};
    const struct gw_stdio_upstream *st = &route->stdio;
    for (size_t i = 0; i < st->env.len; i++)
        env_set(&b, st->env.keys[i], st->env.values[i]);
    for (size_t i = 0; i < st->env_passthrough.len; i++) {
        const char *v = getenv(st->env_passthrough.items[i]);
        if (v)
            env_set(&b, st->env_passthrough.items[i], v);
    }
    if (route->identity.env && p) {
        env_set(&b, "MCP_USER_SUB", p->subject);
        env_set(&b, "MCP_USER_NAME", p->username ? p->username : (p->name ? p->name : ""));
        env_set(&b, "MCP_USER_EMAIL", p->email ? p->email : "");
        env_set_list(&b, "MCP_USER_ROLES", &p->roles, ",");
        env_set_list(&b, "MCP_USER_GROUPS", &p->groups, ",");
        env_set_list(&b, "MCP_SCOPES", &p->scopes, " ");
        env_set(&b, "MCP_CLIENT_ID", p->client_id ? p->client_id : "");
    }
    return b.items;
}

void identity_env_free(char **env)
{
    for (char **e = env; e && *e; e++)
        free(*e);
    free(env);
}
