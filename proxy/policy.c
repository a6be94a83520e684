/* policy: rule evaluation (see policy.h). */
#include "proxy/policy.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/panic.h"
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

enum policy_target policy_target_of(const char *method)
{
    static const struct {
        const char *method;
        enum policy_target target;
    } governed[] = {
        {"tools/call", POLICY_TARGET_TOOL},
        {"prompts/get", POLICY_TARGET_PROMPT},
        {"resources/read", POLICY_TARGET_RESOURCE},
        {"resources/subscribe", POLICY_TARGET_RESOURCE},
        {"resources/unsubscribe", POLICY_TARGET_RESOURCE},
        {"completion/complete", POLICY_TARGET_COMPLETION},
    };
    for (size_t i = 0; method && i < sizeof(governed) / sizeof(governed[0]); i++)
        if (strcmp(method, governed[i].method) == 0)
            return governed[i].target;
    return POLICY_TARGET_NONE;
}

const struct gw_access_rules *policy_rules_of(const struct gw_route_config *route,
                                              enum policy_target t)
{
    return t == POLICY_TARGET_TOOL     ? &route->tools
           : t == POLICY_TARGET_PROMPT ? &route->prompts
                                       : &route->resources;
}

const struct gw_access_rules *policy_rules_for(const struct gw_route_config *route,
                                               const char *method, const char **name_field)
{
    if (method == NULL)
        return NULL;
    if (strcmp(method, "tools/list") == 0) {
        *name_field = "name";
        return &route->tools;
    }
    if (strcmp(method, "prompts/list") == 0) {
        *name_field = "name";
        return &route->prompts;
    }
    if (strcmp(method, "resources/list") == 0) {
        *name_field = "uri";
        return &route->resources;
    }
    if (strcmp(method, "resources/templates/list") == 0) {
        *name_field = "uriTemplate";
        return &route->resources;
    }
    return NULL;
}

bool policy_list_filtered(const struct gw_route_config *route, const char *method)
{
    const char *field;
    const struct gw_access_rules *rules = policy_rules_for(route, method, &field);
    return rules && (rules->len || rules->default_effect == GW_POLICY_DENY);
}

size_t policy_filter_list(json_t *response, const char *method, const struct gw_route_config *route,
                          const struct mg_principal *p)
{
    const char *field = NULL;
    const struct gw_access_rules *rules = policy_rules_for(route, method, &field);
    json_t *result = json_object_get(response, "result");
    if (rules == NULL || !json_is_object(result))
        return 0;
    const char *key = strcmp(method, "tools/list") == 0       ? "tools"
                      : strcmp(method, "prompts/list") == 0   ? "prompts"
                      : strcmp(method, "resources/list") == 0 ? "resources"
                                                              : "resourceTemplates";
    json_t *items = json_object_get(result, key);
    if (!json_is_array(items))
        return 0;
    size_t removed = 0;
    for (size_t i = json_array_size(items); i-- > 0;) {
        const char *name = json_string_value(json_object_get(json_array_get(items, i), field));
        char *normal = name && rules == &route->resources ? policy_normalize_uri(name) : NULL;
        struct policy_verdict v = policy_check(rules, p, normal ? normal : name ? name : "");
        free(normal);
        if (name == NULL || v.decision == POLICY_DENY) {
            json_array_remove(items, i);
            removed++;
        }
    }
    return removed;
}

char *policy_filter_text(const char *text, size_t len, const char *method,
                         const struct gw_route_config *route, const struct mg_principal *p,
                         size_t *out_len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, 0, &jerr);
    char *out = NULL;
    if (msg && json_is_object(msg) && json_object_get(msg, "result") &&
        policy_filter_list(msg, method, route, p) > 0) {
        /* JSON_COMPACT never emits a raw newline: strings escape \n (STDIO, SSE framing). */
        out = json_dumps(msg, JSON_COMPACT);
        if (out == NULL)
            GW_PANIC("out of memory (json_dumps)");
        *out_len = strlen(out);
    }
    json_decref(msg);
    return out;
}

/* ---- resource URIs ---------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 §5.2.4 remove_dot_segments: PATH's "." and ".." segments resolved (owned). */
static char *remove_dot_segments(const char *path)
{
    size_t n = strlen(path);
    char *in = xstrdup(path), *out = xmalloc(n + 1);
    char *p = in;
    size_t o = 0;
    while (*p) {
        if (strncmp(p, "../", 3) == 0) {
            p += 3; /* A */
        } else if (strncmp(p, "./", 2) == 0) {
            p += 2;
        } else if (strncmp(p, "/./", 3) == 0) {
            p += 2; /* B: "/./x" -> "/x" */
        } else if (strcmp(p, "/.") == 0) {
            p[1] = '\0'; /* "/." -> "/" */
        } else if (strncmp(p, "/../", 4) == 0 || strcmp(p, "/..") == 0) {
            if (p[3] == '\0') /* C: "/.." -> "/", "/../x" -> "/x"; drop the last output segment */
                p[1] = '\0', p[2] = '\0';
            else
                p += 3;
            if (p[0] != '/')
                p[0] = '/';
            while (o > 0 && out[--o] != '/')
                ;
        } else if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
            p += strlen(p); /* D */
        } else {
            do /* E: the first segment, with its leading '/' */
                out[o++] = *p++;
            while (*p && *p != '/');
        }
    }
    out[o] = '\0';
    free(in);
    return out;
}

char *policy_normalize_uri(const char *uri)
{
    size_t n = strlen(uri);
    char *out = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c == '%' && i + 2 < n && hexval(uri[i + 1]) >= 0 && hexval(uri[i + 2]) >= 0) {
            unsigned char d = (unsigned char)(hexval(uri[i + 1]) << 4 | hexval(uri[i + 2]));
            if (d == '/' || d == '\\' || d == 0) {
                free(out);
                return xstrdup("\\invalid");
            }
            if (unreserved(d)) {
                out[o++] = (char)d;
            } else {
                out[o++] = '%';
                out[o++] = "0123456789ABCDEF"[d >> 4];
                out[o++] = "0123456789ABCDEF"[d & 15];
            }
            i += 2;
        } else if (c == '\\') {
            free(out);
            return xstrdup("\\invalid");
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    /* scheme ":" ["//" authority] path ["?" query] ["#" fragment] */
    char *colon = strchr(out, ':');
    if (colon == NULL || strpbrk(out, "/?#") < colon)
        return out; /* not an absolute URI: matched as written */
    for (char *p = out; p < colon; p++)
        *p = (char)tolower((unsigned char)*p);
    char *path = colon + 1;
    if (strncmp(path, "//", 2) == 0) {
        char *auth = path + 2;
        char *end = auth + strcspn(auth, "/?#");
        char *at = memchr(auth, '@', (size_t)(end - auth));
        for (char *p = at ? at + 1 : auth; p < end; p++)
            *p = (char)tolower((unsigned char)*p);
        path = end;
    }
    size_t plen = strcspn(path, "?#");
    char *tail = xstrdup(path + plen);
    path[plen] = '\0';
    char *clean = remove_dot_segments(path);
    *path = '\0';
    char *result = xasprintf("%s%s%s", out, clean, tail);
    free(clean);
    free(tail);
    free(out);
    return result;
}
