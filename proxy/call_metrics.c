/*
 * call_metrics: what operators watch per route, recorded into http/metrics.
 *
 *   mcpgate_tool_calls_total{route,tool,outcome}          counter
 *   mcpgate_upstream_request_duration_seconds{route}      histogram
 *   mcpgate_route_sessions{route}, mcpgate_route_streams{route},
 *   mcpgate_route_children{route}                         gauges, at scrape
 *
 * Outcomes of a tools/call: ok (a result), tool_error (a result with
 * isError: true), error (a JSON-RPC error), refused (the policy said no;
 * never reached the upstream), failed (no answer came: the upstream died,
 * timed out or the session ended), cancelled (the client cancelled it).
 *
 * The tool label is a client-chosen string, so it is bounded: a name is
 * used only when the route's policy names it exactly (a rule without glob
 * characters) or when the upstream answered a call of it with a result
 * (the tool exists there, so the upstream's own tool list bounds it);
 * anything else is "other". metrics.max_series bounds every family besides.
 */
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "http/metrics.h"
#include "proxy/policy.h"
#include "proxy/proxy_int.h"

static const struct gw_metric_family tool_calls_family = {
    "mcpgate_tool_calls_total",
    "tools/call requests by route, tool and outcome (ok, tool_error, error, refused, failed, "
    "cancelled).",
    GW_METRIC_COUNTER,
    3,
    {"route", "tool", "outcome"},
};
static const struct gw_metric_family upstream_duration_family = {
    "mcpgate_upstream_request_duration_seconds",
    "Time from a request forwarded to the upstream to its answer, by route.",
    GW_METRIC_HISTOGRAM,
    1,
    {"route"},
};
static const struct gw_metric_family route_sessions_family = {
    "mcpgate_route_sessions",
    "MCP sessions held by this instance, by route.",
    GW_METRIC_GAUGE,
    1,
    {"route"},
};
static const struct gw_metric_family route_streams_family = {
    "mcpgate_route_streams",
    "Open response streams (GET streams, SSE answers, 2024-11-05 streams), by route.",
    GW_METRIC_GAUGE,
    1,
    {"route"},
};
static const struct gw_metric_family route_children_family = {
    "mcpgate_route_children",
    "Child processes of a route (sessions, warm pool, 2026-07-28 pool), by route.",
    GW_METRIC_GAUGE,
    1,
    {"route"},
};

void call_metrics_declare(struct proxy *p)
{
    gw_metrics_declare(p->metrics, &tool_calls_family);
    gw_metrics_declare(p->metrics, &upstream_duration_family);
    gw_metrics_declare(p->metrics, &route_sessions_family);
    gw_metrics_declare(p->metrics, &route_streams_family);
    gw_metrics_declare(p->metrics, &route_children_family);
}

void call_obs_start(struct call_obs *o, const struct jsonrpc_msg *m, const char *text)
{
    memset(o, 0, sizeof(*o));
    o->start_us = time_mono_us();
    if (!jsonrpc_is(m, "tools/call"))
        return;
    o->tool_call = true;
    if (m->name.kind != JSON_KIND_STRING ||
        !json_string_copy(text, &m->name, o->tool, sizeof(o->tool)))
        o->tool[0] = '\0';
}

/* Whether ROUTE's tools policy names TOOL exactly (no glob characters in the rule). */
static bool configured_name(const struct proxy *p, const char *route, const char *tool)
{
    const struct gw_route_config *r = gw_config_route_by_name(p->cfg, route);
    if (r == NULL)
        return false;
    const struct gw_access_rules *rules = policy_rules_of(r, POLICY_TARGET_TOOL);
    for (size_t i = 0; rules && i < rules->len; i++)
        if (strpbrk(rules->rules[i].match, "*?[") == NULL &&
            strcmp(rules->rules[i].match, tool) == 0)
            return true;
    return false;
}

/* ANSWERED: the upstream answered a call of TOOL with a result, so the tool exists there. */
static void count_call(struct proxy *p, const char *route, const char *tool, const char *outcome,
                       bool answered)
{
    const char *label = "other";
    if (tool[0] != '\0' &&
        (answered || configured_name(p, route, tool) ||
         gw_metrics_has(p->metrics, &tool_calls_family, (const char *const[]){route, tool, "ok"}) ||
         gw_metrics_has(p->metrics, &tool_calls_family,
                        (const char *const[]){route, tool, "tool_error"})))
        label = tool;
    gw_metrics_add(p->metrics, &tool_calls_family, (const char *const[]){route, label, outcome}, 1);
}

void call_obs_end(struct proxy *p, const char *route, struct call_obs *o,
                  const struct jsonrpc_msg *answer, const char *no_answer)
{
    if (p->metrics == NULL || o->start_us == 0 || route == NULL)
        return;
    if (answer)
        gw_metrics_observe(p->metrics, &upstream_duration_family, (const char *const[]){route},
                           time_mono_us() - o->start_us);
    if (o->tool_call) {
        const char *outcome = no_answer ? no_answer : "failed";
        if (answer && answer->error.kind != JSON_KIND_NONE)
            outcome = "error";
        else if (answer)
            outcome = answer->result_is_error ? "tool_error" : "ok";
        count_call(p, route, o->tool, outcome, answer && answer->error.kind == JSON_KIND_NONE);
    }
    o->start_us = 0; /* counted once */
}

void call_obs_end_http(struct proxy *p, const char *route, struct call_obs *o, long status)
{
    if (p->metrics == NULL || o->start_us == 0 || route == NULL)
        return;
    if (status > 0)
        gw_metrics_observe(p->metrics, &upstream_duration_family, (const char *const[]){route},
                           time_mono_us() - o->start_us);
    if (o->tool_call) {
        const char *outcome = status == 0    ? "cancelled"
                              : status < 0   ? "failed"
                              : status < 300 ? "ok"
                                             : "error";
        /* A 200 may carry a JSON-RPC error for a tool that does not exist: the name is
         * trusted only when configured, or proven on this route by a STDIO answer. */
        count_call(p, route, o->tool, outcome, false);
    }
    o->start_us = 0;
}

void call_metrics_refused(struct proxy *p, const char *route, const char *tool)
{
    if (p->metrics && route && tool)
        count_call(p, route, tool, "refused", false);
}

void call_metrics_scrape(struct proxy *p)
{
    if (p->metrics == NULL)
        return;
    gw_metrics_reset(p->metrics, &route_sessions_family);
    gw_metrics_reset(p->metrics, &route_streams_family);
    gw_metrics_reset(p->metrics, &route_children_family);
    for (size_t i = 0; i < p->cfg->n_routes; i++) {
        const char *name = p->cfg->routes[i].name;
        const char *const labels[] = {name};
        size_t sessions = 0, streams = 0;
        sessions_count(p, name, &sessions, &streams);
        streams += legacy_http_streams_of_route(p, name) + http_upstream_streams_of_route(p, name);
        size_t children = route_children(p, name);
        gw_metrics_set(p->metrics, &route_sessions_family, labels, sessions);
        gw_metrics_set(p->metrics, &route_streams_family, labels, streams);
        gw_metrics_set(p->metrics, &route_children_family, labels, children);
    }
}
