/*
 * fuzz_guard: the gate every client message passes (proxy/guard.c), with
 * jansson as the independent reader an upstream would be.
 *
 * The first input byte picks the transport (STDIO or HTTP, Streamable or
 * 2024-11-05, protocol 2025-03-26 so batches are allowed, identity.meta on or
 * off); the rest is the POST body. Checked for a body the guard passes:
 *  - every forwarded text is JSON an upstream can read (jansson, integers
 *    read as reals, duplicate keys resolved the way most upstreams resolve
 *    them: the last one wins), one line for STDIO;
 *  - jansson sees the same method the guard judged, and for a governed
 *    method the name or URI it sees is one the policy does not deny (the
 *    property: a message the policy denies is never forwarded);
 *  - params._meta["io.mcpgate/principal"] is exactly the caller's identity
 *    when identity.meta is on, and absent when it is off (a client can never
 *    forge it);
 *  - a refusal is a JSON-RPC error response that is JSON.
 */
#include "tests/fuzz/fuzz.h"

#include <stdbool.h>

#include <jansson.h>

#include "proxy/guard.h"
#include "proxy/policy.h"
#include "proxy/proxy_int.h"

#define LIST(...)                                                                                  \
    {                                                                                              \
        (char *[]){__VA_ARGS__}, sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)                  \
    }

static struct gw_access_rule tool_rules[] = {
    {.match = "secret_tool", .deny = true, .line = 1},
    {.match = "delete_*", .roles = LIST("manager"), .line = 2},
    {.match = "write_*", .scopes = LIST("mcp:write"), .line = 3},
    {.match = "*", .line = 4},
};
static struct gw_access_rule prompt_rules[] = {
    {.match = "public_*", .line = 5},
};
static struct gw_access_rule resource_rules[] = {
    {.match = "file:///public/*", .line = 6},
};

static struct gw_route_config route = {
    .name = "fuzz",
    .path = "/mcp/fuzz",
    .tools = {tool_rules, sizeof(tool_rules) / sizeof(tool_rules[0]), GW_POLICY_ALLOW},
    .prompts = {prompt_rules, sizeof(prompt_rules) / sizeof(prompt_rules[0]), GW_POLICY_DENY},
    .resources = {resource_rules, sizeof(resource_rules) / sizeof(resource_rules[0]),
                  GW_POLICY_DENY},
};

static struct mg_principal principal = {
    .subject = "user-1",
    .roles = LIST("staff"),
    .scopes = LIST("mcp:tools"),
    .client_id = "client-1",
};

static const struct gw_access_rules *rules_for(const char *method, json_t *params,
                                               const char **name)
{
    enum policy_target t = policy_target_of(method);
    *name = NULL;
    if (t == POLICY_TARGET_NONE)
        return NULL;
    if (t == POLICY_TARGET_COMPLETION) {
        json_t *ref = json_object_get(params, "ref");
        const char *type = json_string_value(json_object_get(ref, "type"));
        FUZZ_CHECK(type != NULL, "completion/complete passed without a ref type");
        if (strcmp(type, "ref/prompt") == 0) {
            *name = json_string_value(json_object_get(ref, "name"));
            t = POLICY_TARGET_PROMPT;
        } else {
            FUZZ_CHECK(strcmp(type, "ref/resource") == 0, "completion ref type \"%s\"", type);
            *name = json_string_value(json_object_get(ref, "uri"));
            t = POLICY_TARGET_RESOURCE;
        }
    } else {
        *name = json_string_value(
            json_object_get(params, t == POLICY_TARGET_RESOURCE ? "uri" : "name"));
    }
    FUZZ_CHECK(*name != NULL, "a governed %s passed without a string name", method);
    return policy_rules_of(&route, t);
}

static void check_forwarded(const struct guard_msg *g, bool one_line, const char *principal_json)
{
    if (one_line)
        FUZZ_CHECK(memchr(g->text, '\n', g->len) == NULL && memchr(g->text, '\r', g->len) == NULL,
                   "a STDIO message with a line break");
    json_error_t jerr;
    /* Integers as reals: jansson refuses integers beyond int64, which are valid JSON. */
    json_t *msg = json_loadb(g->text, g->len, JSON_DECODE_INT_AS_REAL, &jerr);
    if (msg == NULL && json_error_code(&jerr) == json_error_numeric_overflow)
        return; /* a real beyond a double: valid JSON that jansson cannot hold */
    FUZZ_CHECK(msg != NULL, "forwarded text is not JSON (%s)", jerr.text);
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (g->info.kind == JSONRPC_RESPONSE) {
        FUZZ_CHECK(method == NULL, "a response grew a method");
        json_decref(msg);
        return;
    }
    FUZZ_CHECK(method != NULL || g->info.method_long, "jansson sees no method");
    if (method && !g->info.method_long)
        FUZZ_CHECK(strcmp(method, g->info.method) == 0, "jansson reads method \"%s\", guard \"%s\"",
                   method, g->info.method);
    json_t *params = json_object_get(msg, "params");
    const char *name;
    const struct gw_access_rules *rules = method ? rules_for(method, params, &name) : NULL;
    if (rules) {
        char *normal = rules == &route.resources ? policy_normalize_uri(name) : NULL;
        struct policy_verdict v = policy_check(rules, &principal, normal ? normal : name);
        FUZZ_CHECK(v.decision == POLICY_ALLOW, "%s of \"%s\" forwarded though denied", method,
                   name);
        free(normal);
    }
    json_t *mine = json_object_get(json_object_get(params, "_meta"), JSONRPC_PRINCIPAL_KEY);
    if (principal_json && json_is_object(params) &&
        (json_object_get(params, "_meta") == NULL ||
         json_is_object(json_object_get(params, "_meta")))) {
        json_t *want = json_loads(principal_json, 0, &jerr);
        FUZZ_CHECK(mine && json_equal(mine, want), "the principal in _meta is not the caller's");
        json_decref(want);
    } else if (!principal_json) {
        FUZZ_CHECK(mine == NULL, "a client's principal in _meta was forwarded");
    }
    json_decref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    route.identity.meta = mode & 1;
    struct guard_ctx ctx = {
        .route = &route,
        .principal = &principal,
        .public_url = "https://gw.example",
        .request_id = "fuzz",
        .protocol_version = "2025-03-26",
        .legacy = (mode & 2) != 0,
        .one_line = (mode & 4) != 0,
    };
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct guard_body body;
    struct guard_refusal refusal;
    char *principal_json = route.identity.meta ? identity_meta_json(&principal) : NULL;
    if (guard_check(&ctx, text, len, &body, &refusal) == GUARD_PASS) {
        FUZZ_CHECK(body.n >= 1, "a pass with no message");
        for (size_t i = 0; i < body.n; i++)
            check_forwarded(&body.msgs[i], ctx.one_line, principal_json);
        json_error_t jerr;
        json_t *whole = json_loadb(body.text, body.len, JSON_DECODE_INT_AS_REAL, &jerr);
        FUZZ_CHECK(whole != NULL || json_error_code(&jerr) == json_error_numeric_overflow,
                   "the forwarded body is not JSON");
        json_decref(whole);
        guard_body_clear(&body);
    } else {
        json_error_t jerr;
        json_t *err = json_loads(refusal.body, JSON_DECODE_INT_AS_REAL, &jerr);
        FUZZ_CHECK(err && json_object_get(err, "error"), "a refusal that is not an error: %s",
                   refusal.body);
        json_decref(err);
        guard_refusal_clear(&refusal);
    }
    free(principal_json);
    return 0;
}
