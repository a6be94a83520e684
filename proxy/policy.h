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

/* Which rule list governs METHOD, and which field names the thing. NULL: none. */
const struct gw_access_rules *policy_rules_for(const struct gw_route_config *route,
                                               const char *method, const char **name_field);

/*
 * Filters a list result (tools/list, prompts/list, resources/list) in place:
 * entries the caller may not use are removed; entries that need only more
 * scope stay (the call then gets the step-up challenge). nextCursor is kept.
 * Returns the number removed.
 */
size_t policy_filter_list(json_t *response, const char *method, const struct gw_route_config *route,
                          const struct mg_principal *p);

#endif
