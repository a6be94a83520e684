/*
 * guard: classification, policy and the principal edit for every message a
 * client sends (guard.h).
 */
#include "proxy/guard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "proxy/policy.h"
#include "proxy/proxy_int.h"

void guard_body_clear(struct guard_body *b)
{
    for (size_t i = 0; i < b->n; i++) {
        jsonrpc_msg_clear(&b->msgs[i].info);
        free(b->msgs[i].owned);
    }
    free(b->msgs);
    free(b->owned);
    memset(b, 0, sizeof(*b));
}

void guard_refusal_clear(struct guard_refusal *r)
{
    free(r->body);
    free(r->www_authenticate);
    free(r->tool);
    memset(r, 0, sizeof(*r));
}

/* ---- refusals ---------------------------------------------------------------- */

static enum guard_result refuse(struct guard_refusal *r, const char *text,
                                const struct jsonrpc_msg *m, int status, int code,
                                const char *message)
{
    bool id = m && m->kind == JSONRPC_REQUEST;
    r->http_status = status;
    r->has_id = id;
    r->body = jsonrpc_error_text(id ? text + m->id.off : NULL, id ? m->id.len : 0, code, message);
    return GUARD_REFUSED;
}

/* 403 with the step-up challenge (MCP authorization, "Runtime Insufficient Scope"). */
static enum guard_result refuse_scope(const struct guard_ctx *ctx, struct guard_refusal *r,
                                      const char *text, const struct jsonrpc_msg *m,
                                      const struct gw_string_list *needed, const char *what)
{
    char *scope = policy_stepup_scope(ctx->principal, needed);
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb,
                  "Bearer error=\"insufficient_scope\", scope=\"%s\", "
                  "resource_metadata=\"%s/.well-known/oauth-protected-resource%s\", "
                  "error_description=\"this request needs more scope\"",
                  scope, ctx->public_url, ctx->route->path);
    r->www_authenticate = strbuf_detach(&sb, NULL);
    gw_log(GW_LOG_INFO, "policy", ctx->request_id, "step-up requested", "route", ctx->route->name,
           "subject", ctx->principal->subject, "scope", scope, NULL);
    char *msg = xasprintf("insufficient scope for %s: ask for \"%s\"", what, scope);
    refuse(r, text, m, 403, JSONRPC_GATEWAY_FORBIDDEN, msg);
    free(msg);
    free(scope);
    return GUARD_REFUSED;
}

/* The answer the upstream itself gives for a name it does not know, so that a
 * refused tool, prompt or resource looks exactly like a missing one. */
static enum guard_result refuse_unknown(struct guard_refusal *r, const char *text,
                                        const struct jsonrpc_msg *m, enum policy_target t,
                                        const char *name)
{
    char *msg = t == POLICY_TARGET_TOOL     ? xasprintf("Unknown tool: %s", name)
                : t == POLICY_TARGET_PROMPT ? xasprintf("Unknown prompt: %s", name)
                                            : xasprintf("Resource not found: %s", name);
    int code = t == POLICY_TARGET_RESOURCE ? JSONRPC_RESOURCE_NOT_FOUND : JSONRPC_INVALID_PARAMS;
    /* A refused notification has no id to answer: the POST itself is refused. */
    refuse(r, text, m, m->kind == JSONRPC_REQUEST ? 200 : 403, code, msg);
    free(msg);
    return GUARD_REFUSED;
}

enum guard_result guard_route(const struct guard_ctx *ctx, struct guard_refusal *r)
{
    memset(r, 0, sizeof(*r));
    struct policy_verdict v = policy_route_check(ctx->route, ctx->principal);
    if (v.decision == POLICY_DENY_SCOPE)
        return refuse_scope(ctx, r, NULL, NULL, v.scopes_needed, "this server");
    if (v.decision == POLICY_DENY) {
        gw_log(GW_LOG_INFO, "policy", ctx->request_id, "route refused", "route", ctx->route->name,
               "subject", ctx->principal->subject, NULL);
        return refuse(r, NULL, NULL, 403, JSONRPC_GATEWAY_FORBIDDEN,
                      "this server needs a role or group you do not have");
    }
    return GUARD_PASS;
}

/* ---- policy on one message ------------------------------------------------------------- */

/* What a governed message names, and which rules judge it. NULL target: not governed. */
static const char *target_of(const char *text, const struct jsonrpc_msg *m, enum policy_target *t,
                             const struct json_ref **ref)
{
    *t = policy_target_of(m->method);
    *ref = NULL;
    switch (*t) {
    case POLICY_TARGET_NONE: return NULL;
    case POLICY_TARGET_TOOL:
    case POLICY_TARGET_PROMPT: *ref = &m->name; return "params.name";
    case POLICY_TARGET_RESOURCE: *ref = &m->uri; return "params.uri";
    case POLICY_TARGET_COMPLETION: break;
    }
    /* completion/complete: params.ref is {type: "ref/prompt", name} or {type: "ref/resource", uri}
     */
    static const char prompt[] = "\"ref/prompt\"", resource[] = "\"ref/resource\"";
    const struct json_ref *type = &m->ref_type;
    if (type->kind == JSON_KIND_STRING && type->len == sizeof(prompt) - 1 &&
        memcmp(text + type->off, prompt, type->len) == 0) {
        *t = POLICY_TARGET_PROMPT;
        *ref = &m->ref_name;
        return "params.ref.name";
    }
    if (type->kind == JSON_KIND_STRING && type->len == sizeof(resource) - 1 &&
        memcmp(text + type->off, resource, type->len) == 0) {
        *t = POLICY_TARGET_RESOURCE;
        *ref = &m->ref_uri;
        return "params.ref.uri";
    }
    *ref = &m->ref_type;
    return "params.ref.type";
}

static enum guard_result check_policy(const struct guard_ctx *ctx, const char *text,
                                      const struct jsonrpc_msg *m, struct guard_refusal *r)
{
    enum policy_target t;
    const struct json_ref *ref;
    const char *field = target_of(text, m, &t, &ref);
    if (field == NULL)
        return GUARD_PASS;
    if (ref->kind != JSON_KIND_STRING || t == POLICY_TARGET_COMPLETION) {
        char *msg = t == POLICY_TARGET_COMPLETION
                        ? xasprintf("%s must be \"ref/prompt\" or \"ref/resource\"", field)
                        : xasprintf("%s must be a string", field);
        refuse(r, text, m, m->kind == JSONRPC_REQUEST ? 200 : 400, JSONRPC_INVALID_PARAMS, msg);
        free(msg);
        return GUARD_REFUSED;
    }
    char *name = json_string_dup(text, ref);
    char *normal = t == POLICY_TARGET_RESOURCE ? policy_normalize_uri(name) : NULL;
    const struct gw_access_rules *rules = policy_rules_of(ctx->route, t);
    struct policy_verdict v = policy_check(rules, ctx->principal, normal ? normal : name);
    enum guard_result res = GUARD_PASS;
    if (v.decision != POLICY_ALLOW) {
        char *why = policy_explain(rules, &v, normal ? normal : name);
        gw_log(GW_LOG_INFO, "policy", ctx->request_id, "request refused", "route", ctx->route->name,
               "subject", ctx->principal->subject, "method", m->method, "decision", why, NULL);
        free(why);
        res = v.decision == POLICY_DENY_SCOPE ? refuse_scope(ctx, r, text, m, v.scopes_needed, name)
                                              : refuse_unknown(r, text, m, t, name);
        if (t == POLICY_TARGET_TOOL && jsonrpc_is(m, "tools/call"))
            r->tool = xstrdup(name);
    }
    free(normal);
    free(name);
    return res;
}

/* ---- one message, the whole body -------------------------------------------------- */

static enum guard_result check_one(const struct guard_ctx *ctx, const char *text, size_t len,
                                   struct guard_msg *g, char *principal_json,
                                   struct guard_refusal *r)
{
    struct jsonrpc_msg *m = &g->info;
    if (jsonrpc_inspect(text, len, m) < 0)
        return refuse(r, text, NULL, 400, JSONRPC_PARSE_ERROR, "parse error: invalid JSON");
    if (m->kind == JSONRPC_INVALID)
        return refuse(r, text, NULL, 400, JSONRPC_INVALID_REQUEST, m->invalid);
    if (m->kind != JSONRPC_RESPONSE && check_policy(ctx, text, m, r) != GUARD_PASS)
        return GUARD_REFUSED;
    g->orig = text;
    g->orig_len = len;
    /* Only requests and notifications carry params; a response gets nothing injected. */
    g->owned = jsonrpc_rewrite(text, len, m, m->kind == JSONRPC_RESPONSE ? NULL : principal_json,
                               ctx->one_line, &g->len);
    g->text = g->owned ? g->owned : text;
    if (g->owned == NULL)
        g->len = len;
    return GUARD_PASS;
}

/* The body to forward as a whole (HTTP upstreams). */
static void join_body(struct guard_body *b, const char *text, size_t len)
{
    bool changed = false;
    for (size_t i = 0; i < b->n; i++)
        changed |= b->msgs[i].owned != NULL;
    if (!changed) {
        b->text = text;
        b->len = len;
        return;
    }
    if (!b->batch) {
        b->text = b->msgs[0].text;
        b->len = b->msgs[0].len;
        return;
    }
    struct strbuf sb = STRBUF_INIT;
    strbuf_append(&sb, "[", 1);
    for (size_t i = 0; i < b->n; i++) {
        if (i)
            strbuf_append(&sb, ",", 1);
        strbuf_append(&sb, b->msgs[i].text, b->msgs[i].len);
    }
    strbuf_append(&sb, "]", 1);
    b->owned = strbuf_detach(&sb, &b->len);
    b->text = b->owned;
}

enum guard_result guard_check(const struct guard_ctx *ctx, const char *text, size_t len,
                              struct guard_body *out, struct guard_refusal *r)
{
    memset(out, 0, sizeof(*out));
    memset(r, 0, sizeof(*r));
    struct json_ref *elems = NULL;
    size_t n = 0;
    if (jsonrpc_batch_split(text, len, &elems, &n) < 0)
        return refuse(r, text, NULL, 400, JSONRPC_PARSE_ERROR, "parse error: invalid JSON");
    enum guard_result res = GUARD_PASS;
    if (elems) {
        const char *why = ctx->legacy ? "batches are not part of the 2024-11-05 transport"
                          : strcmp(ctx->protocol_version, "2025-03-26") != 0
                              ? "JSON-RPC batches are only part of protocol version 2025-03-26"
                          : n == 0 ? "an empty batch"
                                   : NULL;
        if (why) {
            free(elems);
            return refuse(r, text, NULL, 400, JSONRPC_INVALID_REQUEST, why);
        }
        out->batch = true;
    }
    size_t count = elems ? n : 1;
    out->msgs = xcalloc(count, sizeof(*out->msgs));
    char *principal_json = ctx->route->identity.meta ? identity_meta_json(ctx->principal) : NULL;
    for (size_t i = 0; i < count && res == GUARD_PASS; i++) {
        const char *t = elems ? text + elems[i].off : text;
        size_t l = elems ? elems[i].len : len;
        struct guard_msg *g = &out->msgs[out->n++];
        res = check_one(ctx, t, l, g, principal_json, r);
        if (res == GUARD_PASS && out->batch && jsonrpc_is(&g->info, "initialize"))
            res = refuse(r, t, NULL, 400, JSONRPC_INVALID_REQUEST,
                         "initialize must not be part of a batch");
        if (res == GUARD_PASS && g->info.kind == JSONRPC_REQUEST)
            out->requests++;
    }
    free(principal_json);
    free(elems);
    if (res != GUARD_PASS) {
        guard_body_clear(out);
        return res;
    }
    join_body(out, text, len);
    return GUARD_PASS;
}
