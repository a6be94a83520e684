/* policy: rule evaluation (see policy.h). */
#include "proxy/policy.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/xalloc.h"

bool policy_glob_match(const char *pattern, const char *name)
{
    return fnmatch(pattern, name, 0) == 0;
}

static bool has_any(const struct mg_string_list *have, const struct gw_string_list *want)
{
    for (size_t i = 0; i < want->len; i++)
        if (mg_string_list_contains(have, want->items[i]))
            return true;
    return false;
}

static bool has_all(const struct mg_string_list *have, const struct gw_string_list *want)
{
    for (size_t i = 0; i < want->len; i++)
        if (!mg_string_list_contains(have, want->items[i]))
            return false;
    return true;
}

/* Roles and groups together: one of either is enough; none listed: no condition. */
static bool identity_ok(const struct mg_principal *p, const struct gw_string_list *roles,
                        const struct gw_string_list *groups)
{
    if (roles->len == 0 && groups->len == 0)
        return true;
    return has_any(&p->roles, roles) || has_any(&p->groups, groups);
}

static struct policy_verdict judge(const struct mg_principal *p,
                                   const struct gw_string_list *scopes,
                                   const struct gw_string_list *roles,
                                   const struct gw_string_list *groups)
{
    struct policy_verdict v = {.decision = POLICY_ALLOW};
    if (!identity_ok(p, roles, groups)) {
        v.decision = POLICY_DENY;
    } else if (!has_all(&p->scopes, scopes)) {
        v.decision = POLICY_DENY_SCOPE;
        v.scopes_needed = scopes;
    }
    return v;
}

struct policy_verdict policy_check(const struct gw_access_rules *rules,
                                   const struct mg_principal *p, const char *name)
{
    for (size_t i = 0; i < rules->len; i++) {
        const struct gw_access_rule *r = &rules->rules[i];
        if (!policy_glob_match(r->match, name))
            continue;
        struct policy_verdict v;
        if (r->deny)
            v = (struct policy_verdict){.decision = POLICY_DENY};
        else
            v = judge(p, &r->scopes, &r->roles, &r->groups);
        v.rule = r;
        return v;
    }
    struct policy_verdict v = {.decision = rules->default_effect == GW_POLICY_DENY ? POLICY_DENY
                                                                                   : POLICY_ALLOW};
    return v;
}

struct policy_verdict policy_route_check(const struct gw_route_config *route,
                                         const struct mg_principal *p)
{
    const struct gw_requirements *r = &route->require;
    struct policy_verdict v = {.decision = POLICY_ALLOW};
    /* Roles and groups are separate any-of conditions for a route. */
    if ((r->roles.len && !has_any(&p->roles, &r->roles)) ||
        (r->groups.len && !has_any(&p->groups, &r->groups)))
        v.decision = POLICY_DENY;
    else if (!has_all(&p->scopes, &r->scopes)) {
        v.decision = POLICY_DENY_SCOPE;
        v.scopes_needed = &r->scopes;
    }
    return v;
}

char *policy_stepup_scope(const struct mg_principal *p, const struct gw_string_list *needed)
{
    struct mg_string_list all = {0};
    mg_string_list_copy(&all, &p->scopes);
    for (size_t i = 0; needed && i < needed->len; i++)
        if (!mg_string_list_contains(&all, needed->items[i]))
            mg_string_list_add(&all, needed->items[i]);
    char *s = mg_string_list_join(&all, " ");
    mg_string_list_clear(&all);
    return s;
}

static void put_list(struct strbuf *sb, const char *label, const struct gw_string_list *l)
{
    if (l->len == 0)
        return;
    strbuf_printf(sb, " %s=[", label);
    for (size_t i = 0; i < l->len; i++)
        strbuf_printf(sb, "%s%s", i ? "," : "", l->items[i]);
    strbuf_puts(sb, "]");
}

char *policy_explain(const struct gw_access_rules *rules, const struct policy_verdict *v,
                     const char *name)
{
    struct strbuf sb = STRBUF_INIT;
    static const char *const words[] = {"allowed", "denied (missing scope)", "denied"};
    strbuf_printf(&sb, "%s: %s by ", name, words[v->decision]);
    if (v->rule) {
        strbuf_printf(&sb, "rule %zu (match \"%s\"", (size_t)(v->rule - rules->rules) + 1,
                      v->rule->match);
        put_list(&sb, "roles", &v->rule->roles);
        put_list(&sb, "groups", &v->rule->groups);
        put_list(&sb, "scopes", &v->rule->scopes);
        if (v->rule->deny)
            strbuf_puts(&sb, " deny");
        strbuf_printf(&sb, ", line %u)", v->rule->line);
    } else {
        strbuf_printf(&sb, "default: %s",
                      rules->default_effect == GW_POLICY_DENY ? "deny" : "allow");
    }
    return strbuf_detach(&sb, NULL);
}

const struct gw_access_rules *policy_rules_for(const struct gw_route_config *route,
                                               const char *method, const char **name_field)
{
    if (method == NULL)
        return NULL;
    if (strcmp(method, "tools/call") == 0 || strcmp(method, "tools/list") == 0) {
        *name_field = "name";
        return &route->tools;
    }
    if (strcmp(method, "prompts/get") == 0 || strcmp(method, "prompts/list") == 0) {
        *name_field = "name";
        return &route->prompts;
    }
    if (strcmp(method, "resources/read") == 0 || strcmp(method, "resources/list") == 0) {
        *name_field = "uri";
        return &route->resources;
    }
    return NULL;
}

size_t policy_filter_list(json_t *response, const char *method, const struct gw_route_config *route,
                          const struct mg_principal *p)
{
    const char *field = NULL;
    const struct gw_access_rules *rules = policy_rules_for(route, method, &field);
    json_t *result = json_object_get(response, "result");
    if (rules == NULL || !json_is_object(result))
        return 0;
    const char *key = strcmp(method, "tools/list") == 0     ? "tools"
                      : strcmp(method, "prompts/list") == 0 ? "prompts"
                                                            : "resources";
    json_t *items = json_object_get(result, key);
    if (!json_is_array(items))
        return 0;
    size_t removed = 0;
    for (size_t i = json_array_size(items); i-- > 0;) {
        const char *name = json_string_value(json_object_get(json_array_get(items, i), field));
        struct policy_verdict v = policy_check(rules, p, name ? name : "");
        if (name == NULL || v.decision == POLICY_DENY) {
            json_array_remove(items, i);
            removed++;
        }
    }
    return removed;
}
