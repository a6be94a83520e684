/*
 * policy: who may use what, evaluated in memory on every request (no store
 * round trip). Route requirements (require: scopes all-of, roles any-of,
 * groups any-of) and ordered access rules for tools, prompts and resources:
 * the first rule whose glob matches the name (or resource URI) decides; no
 * match falls to the list's default.
 *
 * A rule allows when the caller has every scope it lists and, if it lists
 * roles or groups, at least one of them. A rule with deny: true refuses.
 * A missing scope is a different answer from a missing role: scopes can be
 * obtained by asking for them (step-up), roles cannot.
 */
#ifndef MCPGATE_PROXY_POLICY_H
#define MCPGATE_PROXY_POLICY_H

#include <stdbool.h>

#include <jansson.h>

#include "common/principal.h"
#include "conf/config.h"

enum policy_decision {
    POLICY_ALLOW = 0,
    POLICY_DENY_SCOPE, /* would be allowed with more scopes: step-up */
    POLICY_DENY,       /* roles/groups, a deny rule, or default deny */
};

struct policy_verdict {
    enum policy_decision decision;
    const struct gw_access_rule *rule; /* borrowed: the rule that decided, NULL: the default */
    const struct gw_string_list *scopes_needed; /* borrowed, for POLICY_DENY_SCOPE */
};

/* Shell-style glob (fnmatch(3), no special meaning for '/'). */
bool policy_glob_match(const char *pattern, const char *name);

struct policy_verdict policy_check(const struct gw_access_rules *rules,
                                   const struct mg_principal *p, const char *name);

/* The route's require: section. */
struct policy_verdict policy_route_check(const struct gw_route_config *route,
                                         const struct mg_principal *p);

/*
 * The scope attribute of a step-up challenge: what the caller has plus what it
 * needs (MCP authorization: "include old and new scopes"). Owned.
 */
char *policy_stepup_scope(const struct mg_principal *p, const struct gw_string_list *needed);

/* Human-readable reason of a verdict for NAME, for logs and `mcpgate explain` (owned). */
char *policy_explain(const struct gw_access_rules *rules, const struct policy_verdict *v,
                     const char *name);

/* What a governed method names (guard.h lists where the name is). */
enum policy_target {
    POLICY_TARGET_NONE = 0,
    POLICY_TARGET_TOOL,       /* tools/call */
    POLICY_TARGET_PROMPT,     /* prompts/get */
    POLICY_TARGET_RESOURCE,   /* resources/read, resources/subscribe, resources/unsubscribe */
    POLICY_TARGET_COMPLETION, /* completion/complete: a prompt or a resource, by params.ref */
};
enum policy_target policy_target_of(const char *method);
/* The rules of a tool, prompt or resource target. */
const struct gw_access_rules *policy_rules_of(const struct gw_route_config *route,
                                              enum policy_target t);

/*
 * A resource URI as the rules see it (owned): scheme and host lowercased,
 * %XX of unreserved characters decoded and other escapes uppercased, "." and
 * ".." path segments removed (RFC 3986 §6.2.2, §5.2.4), so that
 * file:///public/../secret and file:///p%75blic/x match the rules their
 * upstream will resolve them to. A URI that still holds an encoded '/' or
 * '\', a backslash or an encoded NUL is returned as "\invalid": no rule
 * glob should allow it, and default allow routes should list a deny rule
 * for it if their upstream decodes such escapes (README: policy).
 */
char *policy_normalize_uri(const char *uri);

/* Which rule list filters the result of the list METHOD, and which field names an entry
 * ("name", "uri", "uriTemplate"). NULL: not a filtered list. */
const struct gw_access_rules *policy_rules_for(const struct gw_route_config *route,
                                               const char *method, const char **name_field);

/*
 * Filters a list result (tools/list, prompts/list, resources/list,
 * resources/templates/list) in place: entries the caller may not use are
 * removed; entries that need only more scope stay (the call then gets the
 * step-up challenge). nextCursor is kept. Returns the number removed.
 */
size_t policy_filter_list(json_t *response, const char *method, const struct gw_route_config *route,
                          const struct mg_principal *p);

/* Would a list answer to METHOD on ROUTE ever be filtered (a rule or a deny default)? */
bool policy_list_filtered(const struct gw_route_config *route, const char *method);

/*
 * The same on a response's text (LEN bytes): the filtered text (owned, *OUT_LEN bytes), or
 * NULL when nothing was removed (or the text is not a response), so the original goes out.
 */
char *policy_filter_text(const char *text, size_t len, const char *method,
                         const struct gw_route_config *route, const struct mg_principal *p,
                         size_t *out_len);

#endif
