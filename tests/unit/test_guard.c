/*
 * test_guard: proxy/guard.c, the one gate every client message passes
 * (review F1 and F18), on its own: one route with tool, prompt and resource
 * rules, one caller, and the bodies a client can send. What the guard
 * forwards is read back with jansson, the independent reader an upstream
 * would be; what it refuses is checked down to the HTTP status, the JSON-RPC
 * code and the id answered.
 *
 * tests/integration/guard.test.mjs runs the same gate through the real
 * binary in front of lenient upstreams; tests/fuzz/fuzz_guard.c checks its
 * properties on random bodies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "proxy/guard.h"
#include "proxy/policy.h"
#include "proxy/proxy_int.h"

/* ---- the route and the caller --------------------------------------------------- */

#define LIST(...)                                                                                  \
    {                                                                                              \
        (char *[]){__VA_ARGS__}, sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)                  \
    }

/* tools: default allow; prompts and resources: default deny */
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
    .name = "t",
    .path = "/mcp/t",
    .tools = {tool_rules, sizeof(tool_rules) / sizeof(tool_rules[0]), GW_POLICY_ALLOW},
    .prompts = {prompt_rules, sizeof(prompt_rules) / sizeof(prompt_rules[0]), GW_POLICY_DENY},
    .resources = {resource_rules, sizeof(resource_rules) / sizeof(resource_rules[0]),
                  GW_POLICY_DENY},
};

static struct mg_principal principal = {
    .subject = "user-1",
    .email = "user@example.com",
    .roles = LIST("staff"),
    .scopes = LIST("mcp:tools"),
    .client_id = "client-1",
};

static struct guard_ctx ctx_of(bool meta)
{
    route.identity.meta = meta;
    return (struct guard_ctx){
        .route = &route,
        .principal = &principal,
        .public_url = "https://gw.example",
        .request_id = "test",
        .protocol_version = "2025-03-26",
    };
}

static int reset(void **state)
{
    (void)state;
    route.identity.meta = false;
    route.require = (struct gw_requirements){0};
    return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

static json_t *load(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        fail_msg("not JSON (%s): %.*s", jerr.text, (int)len, text);
    return v;
}

/* TEXT passes; *BODY holds it (guard_body_clear). */
static void pass(const struct guard_ctx *ctx, const char *text, struct guard_body *body)
{
    struct guard_refusal r;
    if (guard_check(ctx, text, strlen(text), body, &r) != GUARD_PASS)
        fail_msg("refused (%d): %s\n  body: %s", r.http_status, r.body, text);
    assert_null(r.body);
    assert_true(body->n >= 1);
}

/* TEXT passes untouched: every message and the whole body are the client's bytes. */
static void pass_untouched(const struct guard_ctx *ctx, const char *text)
{
    struct guard_body b;
    pass(ctx, text, &b);
    assert_ptr_equal(b.text, text);
    assert_int_equal(b.len, strlen(text));
    assert_null(b.owned);
    for (size_t i = 0; i < b.n; i++) {
        assert_null(b.msgs[i].owned);
        assert_ptr_equal(b.msgs[i].text, b.msgs[i].orig);
    }
    guard_body_clear(&b);
}

/*
 * TEXT is refused with STATUS and CODE, and the error answers ID (its JSON
 * text, NULL: a null id). The message must contain MESSAGE when not NULL.
 */
static void refused(const struct guard_ctx *ctx, const char *text, int status, int code,
                    const char *id, const char *message)
{
    struct guard_body b;
    struct guard_refusal r;
    if (guard_check(ctx, text, strlen(text), &b, &r) != GUARD_REFUSED)
        fail_msg("passed, want %d/%d: %s", status, code, text);
    assert_int_equal(b.n, 0);
    assert_null(b.msgs);
    json_t *err = load(r.body, strlen(r.body));
    json_t *e = json_object_get(err, "error");
    int got_code = (int)json_integer_value(json_object_get(e, "code"));
    const char *got_msg = json_string_value(json_object_get(e, "message"));
    if (r.http_status != status || got_code != code)
        fail_msg("status %d code %d (%s), want %d %d: %s", r.http_status, got_code,
                 got_msg ? got_msg : "", status, code, text);
    assert_string_equal(json_string_value(json_object_get(err, "jsonrpc")), "2.0");
    json_t *got_id = json_object_get(err, "id");
    if (id == NULL) {
        assert_true(json_is_null(got_id));
        assert_false(r.has_id);
    } else {
        json_t *want = load(id, strlen(id));
        if (!json_equal(got_id, want))
            fail_msg("answers id %s, want %s", r.body, id);
        json_decref(want);
        assert_true(r.has_id);
    }
    if (message && (got_msg == NULL || strstr(got_msg, message) == NULL))
        fail_msg("message \"%s\", want it to contain \"%s\"", got_msg ? got_msg : "", message);
    json_decref(err);
    guard_refusal_clear(&r);
    assert_null(r.body);
}

/* params._meta of MSG, or NULL. */
static json_t *forwarded_meta(json_t *msg)
{
    return json_object_get(json_object_get(msg, "params"), "_meta");
}

/* ---- ids and message shapes ---------------------------------------------------------- */

static void test_ids_refused(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    /* the TypeScript SDK reads 1.0 as 1; others disagree: refused, never guessed */
    static const char *const ids[] = {
        "1.0",
        "1e0",
        "-0.0",
        "null",
        "true",
        "false",
        "{}",
        "{\"a\":1}",
        "[]",
        "[1]",
        "9007199254740992", /* 2^53: a JavaScript peer would round it */
        "-9007199254740992",
    };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char text[160];
        snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/list\"}",
                 ids[i]);
        refused(&ctx, text, 400, JSONRPC_INVALID_REQUEST, NULL,
                "the id of a request must be a string or an integer");
        /* the same on a governed method: the shape is judged before the policy */
        snprintf(text, sizeof(text),
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\","
                 "\"params\":{\"name\":\"echo\"}}",
                 ids[i]);
        refused(&ctx, text, 400, JSONRPC_INVALID_REQUEST, NULL, NULL);
    }
}

static void test_ids_accepted(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    static const char *const ids[] = {
        "0",    "7",     "-1",      "-0",         "9007199254740991", "-9007199254740991",
        "\"\"", "\"a\"", "\"1.0\"", "\"\\u00e9\""};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char text[160];
        snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/list\"}",
                 ids[i]);
        struct guard_body b;
        pass(&ctx, text, &b);
        assert_int_equal(b.requests, 1);
        assert_int_equal(b.msgs[0].info.kind, JSONRPC_REQUEST);
        assert_non_null(b.msgs[0].info.id_key);
        guard_body_clear(&b);
    }
}

static void test_shapes_refused(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    static const struct {
        const char *text;
        int code;
        const char *message;
    } rows[] = {
        {"", JSONRPC_PARSE_ERROR, "parse error"},
        {"{", JSONRPC_PARSE_ERROR, "parse error"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"x\",}", JSONRPC_PARSE_ERROR, "parse error"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"x\"} {}", JSONRPC_PARSE_ERROR, "parse error"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"a\\u0000b\"}", JSONRPC_PARSE_ERROR, "parse error"},
        {"\"text\"", JSONRPC_INVALID_REQUEST, "not an object"},
        {"42", JSONRPC_INVALID_REQUEST, "not an object"},
        {"{\"method\":\"tools/list\",\"id\":1}", JSONRPC_INVALID_REQUEST, "jsonrpc must be"},
        {"{\"jsonrpc\":\"1.0\",\"method\":\"tools/list\",\"id\":1}", JSONRPC_INVALID_REQUEST,
         "jsonrpc must be"},
        {"{\"jsonrpc\":2.0,\"method\":\"tools/list\",\"id\":1}", JSONRPC_INVALID_REQUEST,
         "jsonrpc must be"},
        {"{\"jsonrpc\":\"2.0\",\"method\":7,\"id\":1}", JSONRPC_INVALID_REQUEST,
         "method must be a string"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":1,\"result\":{}}", JSONRPC_INVALID_REQUEST,
         "cannot carry result or error"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1}", JSONRPC_INVALID_REQUEST, "not a response"},
        {"{\"jsonrpc\":\"2.0\",\"result\":{}}", JSONRPC_INVALID_REQUEST, "not a response"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{}}", JSONRPC_INVALID_REQUEST,
         "not a response"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        refused(&ctx, rows[i].text, 400, rows[i].code, NULL, rows[i].message);
}

/* Responses (to the upstream's own requests) pass untouched, even with identity.meta on. */
static void test_responses_pass(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(true);
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"roots\":[]}}");
    pass_untouched(&ctx,
                   "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-1,\"message\":\"x\"}}");
    struct guard_body b;
    pass(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":{}}", &b);
    assert_int_equal(b.msgs[0].info.kind, JSONRPC_RESPONSE);
    assert_int_equal(b.requests, 0);
    guard_body_clear(&b);
}

/* ---- the policy on requests and notifications ------------------------------------------ */

static void test_requests_governed(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
                         "\"params\":{\"name\":\"echo\",\"arguments\":{\"x\":1}}}");
    /* a refused tool looks exactly like a missing one: 200 with the upstream's own error */
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
            "\"params\":{\"name\":\"secret_tool\"}}",
            200, JSONRPC_INVALID_PARAMS, "7", "Unknown tool: secret_tool");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":\"r-1\",\"method\":\"tools/call\","
            "\"params\":{\"name\":\"delete_all\"}}",
            200, JSONRPC_INVALID_PARAMS, "\"r-1\"", "Unknown tool: delete_all");
    /* an escaped method is the same method */
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools\\/c\\u0061ll\","
            "\"params\":{\"name\":\"secret\\u005ftool\"}}",
            200, JSONRPC_INVALID_PARAMS, "1", "Unknown tool: secret_tool");
    /* prompts: default deny */
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\","
                         "\"params\":{\"name\":\"public_intro\"}}");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\","
            "\"params\":{\"name\":\"internal\"}}",
            200, JSONRPC_INVALID_PARAMS, "2", "Unknown prompt: internal");
    /* resources: default deny, MCP's own "not found" code */
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/read\","
                         "\"params\":{\"uri\":\"file:///public/a.txt\"}}");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/read\","
            "\"params\":{\"uri\":\"file:///etc/passwd\"}}",
            200, JSONRPC_RESOURCE_NOT_FOUND, "3", "Resource not found: file:///etc/passwd");
    /* methods that are not governed pass whatever they carry */
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/list\"}");
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"vendor/thing\","
                         "\"params\":{\"name\":\"secret_tool\"}}");
}

static void test_step_up(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    static const char text[] = "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\","
                               "\"params\":{\"name\":\"write_file\"}}";
    refused(&ctx, text, 403, JSONRPC_GATEWAY_FORBIDDEN, "9", "insufficient scope");
    struct guard_body b;
    struct guard_refusal r;
    assert_int_equal(guard_check(&ctx, text, strlen(text), &b, &r), GUARD_REFUSED);
    assert_non_null(r.www_authenticate);
    /* MCP authorization: the scope asked for holds the old and the new */
    assert_non_null(strstr(r.www_authenticate, "error=\"insufficient_scope\""));
    assert_non_null(strstr(r.www_authenticate, "scope=\"mcp:tools mcp:write\""));
    assert_non_null(strstr(r.www_authenticate, "resource_metadata=\"https://gw.example/"
                                               ".well-known/oauth-protected-resource/mcp/t\""));
    guard_refusal_clear(&r);
    /* a missing role is not a step-up: no challenge */
    static const char role[] = "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\","
                               "\"params\":{\"name\":\"delete_x\"}}";
    assert_int_equal(guard_check(&ctx, role, strlen(role), &b, &r), GUARD_REFUSED);
    assert_null(r.www_authenticate);
    guard_refusal_clear(&r);
}

/* A notification with a governed method is judged like a request (F1): nothing to answer, so
 * the POST itself is refused. */
static void test_notifications_governed(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"secret_tool\"}}",
            403, JSONRPC_INVALID_PARAMS, NULL, "Unknown tool: secret_tool");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"method\":\"prompts/get\",\"params\":{\"name\":\"internal\"}}",
            403, JSONRPC_INVALID_PARAMS, NULL, "Unknown prompt: internal");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"method\":\"resources/read\","
            "\"params\":{\"uri\":\"file:///secret\"}}",
            403, JSONRPC_RESOURCE_NOT_FOUND, NULL, "Resource not found: file:///secret");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"method\":\"resources/subscribe\","
            "\"params\":{\"uri\":\"file:///secret\"}}",
            403, JSONRPC_RESOURCE_NOT_FOUND, NULL, NULL);
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"write_x\"}}",
            403, JSONRPC_GATEWAY_FORBIDDEN, NULL, "insufficient scope");
    /* a name that is not a string: 400, there is no id to answer */
    refused(&ctx, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":1}}", 400,
            JSONRPC_INVALID_PARAMS, NULL, "params.name must be a string");
    refused(&ctx, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\"}", 400, JSONRPC_INVALID_PARAMS,
            NULL, "params.name must be a string");
    /* allowed ones and ordinary notifications pass */
    pass_untouched(
        &ctx, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}");
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    struct guard_body b;
    pass(&ctx, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}", &b);
    assert_int_equal(b.msgs[0].info.kind, JSONRPC_NOTIFICATION);
    assert_int_equal(b.requests, 0);
    guard_body_clear(&b);
}

static void test_name_not_a_string(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    static const struct {
        const char *method;
        const char *params; /* NULL: no params */
        const char *field;
    } rows[] = {
        {"tools/call", "{\"name\":5}", "params.name"},
        {"tools/call", "{\"name\":null}", "params.name"},
        {"tools/call", "{\"name\":[\"echo\"]}", "params.name"},
        {"tools/call", "{\"name\":{\"x\":\"echo\"}}", "params.name"},
        {"tools/call", "{\"arguments\":{}}", "params.name"},
        {"tools/call", "{}", "params.name"},
        {"tools/call", "[\"echo\"]", "params.name"},
        {"tools/call", "\"echo\"", "params.name"},
        {"tools/call", NULL, "params.name"},
        {"prompts/get", "{\"name\":true}", "params.name"},
        {"prompts/get", NULL, "params.name"},
        {"resources/read", "{\"uri\":1}", "params.uri"},
        {"resources/read", "{\"name\":\"file:///public/a\"}", "params.uri"},
        {"resources/subscribe", "{}", "params.uri"},
        {"resources/unsubscribe", "{\"uri\":null}", "params.uri"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char text[200], want[64];
        if (rows[i].params)
            snprintf(text, sizeof(text),
                     "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"%s\",\"params\":%s}",
                     rows[i].method, rows[i].params);
        else
            snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"%s\"}",
                     rows[i].method);
        snprintf(want, sizeof(want), "%s must be a string", rows[i].field);
        refused(&ctx, text, 200, JSONRPC_INVALID_PARAMS, "11", want);
    }
}

/* resources/subscribe and unsubscribe, and completion/complete by its params.ref. */
static void test_other_governed_methods(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/subscribe\","
                         "\"params\":{\"uri\":\"file:///public/log\"}}");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/subscribe\","
            "\"params\":{\"uri\":\"file:///private/log\"}}",
            200, JSONRPC_RESOURCE_NOT_FOUND, "1", "Resource not found: file:///private/log");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/unsubscribe\","
            "\"params\":{\"uri\":\"file:///private/log\"}}",
            200, JSONRPC_RESOURCE_NOT_FOUND, "1", NULL);
    /* completion/complete names a prompt or a resource */
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"completion/complete\","
                         "\"params\":{\"ref\":{\"type\":\"ref/prompt\",\"name\":\"public_a\"},"
                         "\"argument\":{\"name\":\"x\",\"value\":\"\"}}}");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"completion/complete\","
            "\"params\":{\"ref\":{\"type\":\"ref/prompt\",\"name\":\"internal\"}}}",
            200, JSONRPC_INVALID_PARAMS, "2", "Unknown prompt: internal");
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"completion/complete\","
                         "\"params\":{\"ref\":{\"uri\":\"file:///public/{x}\","
                         "\"type\":\"ref/resource\"}}}");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"completion/complete\","
            "\"params\":{\"ref\":{\"type\":\"ref/resource\",\"uri\":\"file:///etc/{x}\"}}}",
            200, JSONRPC_RESOURCE_NOT_FOUND, "2", "Resource not found: file:///etc/{x}");
    /* a ref/prompt's name is judged by the prompt rules, never its uri */
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"completion/complete\","
            "\"params\":{\"ref\":{\"type\":\"ref/prompt\",\"uri\":\"file:///public/a\"}}}",
            200, JSONRPC_INVALID_PARAMS, "2", "params.ref.name must be a string");
    refused(&ctx,
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"completion/complete\","
            "\"params\":{\"ref\":{\"type\":\"ref/resource\",\"name\":\"public_a\"}}}",
            200, JSONRPC_INVALID_PARAMS, "2", "params.ref.uri must be a string");
    static const char *const bad_refs[] = {
        "{\"ref\":{\"type\":\"ref/tool\",\"name\":\"echo\"}}",
        "{\"ref\":{\"type\":\"ref/Prompt\",\"name\":\"public_a\"}}",
        "{\"ref\":{\"type\":1,\"name\":\"public_a\"}}",
        "{\"ref\":{\"name\":\"public_a\"}}",
        "{\"ref\":\"ref/prompt\"}",
        "{}",
    };
    for (size_t i = 0; i < sizeof(bad_refs) / sizeof(bad_refs[0]); i++) {
        char text[200];
        snprintf(text, sizeof(text),
                 "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"completion/complete\",\"params\":%s}",
                 bad_refs[i]);
        refused(&ctx, text, 200, JSONRPC_INVALID_PARAMS, "2",
                "params.ref.type must be \"ref/prompt\" or \"ref/resource\"");
    }
}

/*
 * resources/templates/list is not judged on the way in (a list names
 * nothing); its answer is filtered by the resource rules on uriTemplate.
 */
static void test_templates_list(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/templates/list\"}");
    const char *field = NULL;
    assert_ptr_equal(policy_rules_for(&route, "resources/templates/list", &field),
                     &route.resources);
    assert_string_equal(field, "uriTemplate");
    assert_true(policy_list_filtered(&route, "resources/templates/list"));
    static const char answer[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resourceTemplates\":["
        "{\"uriTemplate\":\"file:///public/{name}\",\"name\":\"pub\"},"
        "{\"uriTemplate\":\"file:///secret/{name}\",\"name\":\"sec\"},"
        "{\"uriTemplate\":\"file:///public/../secret/{name}\",\"name\":\"dots\"},"
        "{\"name\":\"no template\"}],\"nextCursor\":\"c2\"}}";
    size_t len = 0;
    char *out = policy_filter_text(answer, sizeof(answer) - 1, "resources/templates/list", &route,
                                   &principal, &len);
    assert_non_null(out);
    json_t *msg = load(out, len);
    json_t *list = json_object_get(json_object_get(msg, "result"), "resourceTemplates");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "uriTemplate")),
                        "file:///public/{name}");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(msg, "result"), "nextCursor")), "c2");
    json_decref(msg);
    free(out);
}

/* Resource URIs are judged as their upstream will resolve them (policy_normalize_uri), by
 * resources/read, subscribe and unsubscribe alike. */
static void test_uri_normalisation(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    static const struct {
        const char *uri;
        bool allowed;
    } rows[] = {
        {"file:///public/a.txt", true},
        {"file:///public/./a.txt", true},
        {"file:///public/x/../a.txt", true},
        {"file:///p%75blic/a.txt", true}, /* %75 is 'u': unreserved, decoded */
        {"FILE:///public/a.txt", true},   /* the scheme is case-insensitive */
        {"file:///public/../secret", false},
        {"file:///public/./../secret", false},
        {"file:///public/a/../../secret", false},
        {"file:///public/%2e%2e/secret", false}, /* "." is unreserved: decoded, then resolved */
        {"file:///public/%2E%2E/secret", false},
        {"file:///public/..%2fsecret", false}, /* an encoded '/' is never allowed */
        {"file:///public/a%2Fb", false},
        {"file:///public/..%5csecret", false},  /* nor an encoded '\' */
        {"file:///public/..\\\\secret", false}, /* nor a raw one (JSON-escaped here) */
        {"file:///public/%00", false},
        {"FILE:///public/../secret", false},
        {"file:///secret", false},
    };
    static const char *const methods[] = {"resources/read", "resources/subscribe",
                                          "resources/unsubscribe"};
    for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]) * 3; k++) {
        size_t i = k / 3;
        char text[200];
        snprintf(text, sizeof(text),
                 "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"%s\","
                 "\"params\":{\"uri\":\"%s\"}}",
                 methods[k % 3], rows[i].uri);
        if (rows[i].allowed) {
            pass_untouched(&ctx, text); /* judged normalised, forwarded as sent */
        } else {
            refused(&ctx, text, 200, JSONRPC_RESOURCE_NOT_FOUND, "5", "Resource not found: ");
        }
    }
}

/* ---- duplicate keys ------------------------------------------------------------------ */

static void test_duplicate_keys(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    /* parsers disagree on which copy wins: a key the proxy reads twice is refused */
    static const char *const rows[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
        "\"params\":{\"name\":\"echo\",\"name\":\"secret_tool\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
        "\"params\":{\"name\":\"echo\",\"n\\u0061me\":\"secret_tool\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"method\":\"tools/call\","
        "\"params\":{\"name\":\"secret_tool\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"},"
        "\"params\":{\"name\":\"secret_tool\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"tools/list\"}",
        "{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\","
        "\"params\":{\"uri\":\"file:///public/a\",\"uri\":\"file:///secret\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\",\"params\":{\"ref\":"
        "{\"type\":\"ref/prompt\",\"name\":\"public_a\",\"name\":\"internal\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\",\"params\":{\"ref\":"
        "{\"type\":\"ref/prompt\",\"type\":\"ref/resource\",\"name\":\"public_a\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
        "\"_meta\":{\"io.mcpgate/principal\":{},\"io.mcpgate/principal\":{}}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"result\":{}}",
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        refused(&ctx, rows[i], 400, JSONRPC_INVALID_REQUEST, NULL,
                "a JSON-RPC member appears twice");
    /* keys the proxy does not read are the upstream's business, forwarded as they are */
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                         "\"params\":{\"name\":\"echo\",\"arguments\":{},\"arguments\":{}}}");
}

/* ---- params._meta["io.mcpgate/principal"] ------------------------------------------------ */

/* The forwarded single message of TEXT, parsed. */
static json_t *forward_one(const struct guard_ctx *ctx, const char *text)
{
    struct guard_body b;
    pass(ctx, text, &b);
    assert_int_equal(b.n, 1);
    assert_false(b.batch);
    assert_ptr_equal(b.text, b.msgs[0].text); /* the whole body is the one message */
    json_t *msg = load(b.msgs[0].text, b.msgs[0].len);
    guard_body_clear(&b);
    return msg;
}

static void test_principal_removed(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    static const char *const rows[] = {
        /* with other members, first, last, alone; request, notification, ungoverned */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
        "\"_meta\":{\"io.mcpgate/principal\":{\"sub\":\"admin\"},\"progressToken\":5}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
        "\"_meta\":{\"progressToken\":5, \"io.mcpgate/principal\" : {\"sub\":\"admin\"} }}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
        "\"_meta\":{\"io.mcpgate/principal\":{\"sub\":\"admin\"}}}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{"
        "\"_meta\":{\"io.mcpgate/principal\":\"admin\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{"
        "\"_meta\":{\"io.mcpgate\\/principal\":[1]}}}", /* an escaped key is the same key */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *msg = forward_one(&ctx, rows[i]);
        json_t *meta = forwarded_meta(msg);
        assert_true(json_is_object(meta));
        assert_null(json_object_get(meta, JSONRPC_PRINCIPAL_KEY));
        if (i < 2)
            assert_int_equal(json_integer_value(json_object_get(meta, "progressToken")), 5);
        else
            assert_int_equal(json_object_size(meta), 0);
        json_decref(msg);
    }
}

static void test_principal_set(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(true);
    char *mine_text = identity_meta_json(&principal);
    json_t *mine = load(mine_text, strlen(mine_text));
    assert_string_equal(json_string_value(json_object_get(mine, "sub")), "user-1");
    static const char *const rows[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", /* no params */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
        "\"_meta\":{}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
        "\"_meta\":{\"progressToken\":\"p\"}}}",
        /* a forged principal is replaced, never kept beside the real one */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
        "\"_meta\":{\"io.mcpgate/principal\":{\"sub\":\"admin\",\"roles\":[\"root\"]}}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"_meta\":"
        "{\"progressToken\":\"p\",\"io.mcpgate/principal\":{\"sub\":\"admin\"}},"
        "\"name\":\"echo\"}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{\"_meta\":"
        "{\"io.mcpgate/principal\":1}}}",
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct guard_body b;
        pass(&ctx, rows[i], &b);
        assert_non_null(b.msgs[0].owned);
        /* the key is in the text once, whatever the client sent */
        const char *first =
            memmem(b.text, b.len, JSONRPC_PRINCIPAL_KEY, strlen(JSONRPC_PRINCIPAL_KEY));
        assert_non_null(first);
        assert_null(memmem(first + 1, b.len - (size_t)(first + 1 - b.text), JSONRPC_PRINCIPAL_KEY,
                           strlen(JSONRPC_PRINCIPAL_KEY)));
        json_t *msg = load(b.text, b.len);
        json_t *meta = forwarded_meta(msg);
        if (!json_equal(json_object_get(meta, JSONRPC_PRINCIPAL_KEY), mine))
            fail_msg("row %zu: forwarded %.*s", i, (int)b.len, b.text);
        json_t *orig = load(rows[i], strlen(rows[i]));
        /* everything else is the client's */
        json_t *orig_id = json_object_get(orig, "id");
        if (orig_id)
            assert_true(json_equal(json_object_get(msg, "id"), orig_id));
        else
            assert_null(json_object_get(msg, "id"));
        assert_string_equal(json_string_value(json_object_get(msg, "method")),
                            json_string_value(json_object_get(orig, "method")));
        json_t *orig_meta = forwarded_meta(orig);
        if (json_object_get(orig_meta, "progressToken"))
            assert_string_equal(json_string_value(json_object_get(meta, "progressToken")), "p");
        json_decref(orig);
        json_decref(msg);
        guard_body_clear(&b);
    }
    /* params or _meta that is not an object: nothing to put it in, the upstream refuses it */
    static const char *const odd[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x/y\",\"params\":[1,2]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x/y\",\"params\":{\"_meta\":5}}",
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
        pass_untouched(&ctx, odd[i]);
    json_decref(mine);
    free(mine_text);
}

/* STDIO: one message per line, whatever whitespace the client used. */
static void test_one_line(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    ctx.one_line = true;
    static const char text[] =
        "{\r\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n"
        "  \"method\": \"tools/call\",\r\n"
        "  \"params\": {\"name\": \"echo\", \"arguments\": {\"s\": \"a\\nb\"}}\n}\n";
    struct guard_body b;
    pass(&ctx, text, &b);
    assert_non_null(b.msgs[0].owned);
    assert_null(memchr(b.msgs[0].text, '\n', b.msgs[0].len));
    assert_null(memchr(b.msgs[0].text, '\r', b.msgs[0].len));
    json_t *a = load(text, strlen(text)), *f = load(b.msgs[0].text, b.msgs[0].len);
    assert_true(json_equal(a, f)); /* the escaped \n inside the string is kept */
    json_decref(a);
    json_decref(f);
    guard_body_clear(&b);
    /* already one line: untouched */
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
}

/* ---- batches ---------------------------------------------------------------------------- */

static void test_batches(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    static const char batch[] =
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}},"
        " {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"},"
        " {\"jsonrpc\":\"2.0\",\"id\":\"u\",\"result\":{}},"
        " {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}]";
    struct guard_body b;
    pass(&ctx, batch, &b);
    assert_true(b.batch);
    assert_int_equal(b.n, 4);
    assert_int_equal(b.requests, 2);
    assert_ptr_equal(b.text, batch); /* nothing changed: the client's bytes */
    assert_int_equal(b.msgs[0].info.kind, JSONRPC_REQUEST);
    assert_int_equal(b.msgs[1].info.kind, JSONRPC_NOTIFICATION);
    assert_int_equal(b.msgs[2].info.kind, JSONRPC_RESPONSE);
    assert_memory_equal(b.msgs[1].text,
                        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}",
                        b.msgs[1].len);
    guard_body_clear(&b);

    /* identity.meta on: the batch is rebuilt from its messages, responses untouched */
    ctx = ctx_of(true);
    pass(&ctx, batch, &b);
    assert_non_null(b.owned);
    json_t *all = load(b.text, b.len);
    assert_int_equal(json_array_size(all), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *p = json_object_get(forwarded_meta(json_array_get(all, i)), JSONRPC_PRINCIPAL_KEY);
        if (i == 2)
            assert_null(p);
        else
            assert_string_equal(json_string_value(json_object_get(p, "sub")), "user-1");
    }
    json_decref(all);
    guard_body_clear(&b);
}

static void test_batches_refused(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    /* one refused message refuses the whole batch, answered with its id */
    refused(&ctx,
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"},"
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\","
            "\"params\":{\"name\":\"secret_tool\"}}]",
            200, JSONRPC_INVALID_PARAMS, "2", "Unknown tool: secret_tool");
    refused(
        &ctx,
        "[{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"secret_tool\"}},"
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}]",
        403, JSONRPC_INVALID_PARAMS, NULL, "Unknown tool: secret_tool");
    refused(&ctx,
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"},"
            "{\"jsonrpc\":\"2.0\",\"id\":1.0,\"method\":\"tools/list\"}]",
            400, JSONRPC_INVALID_REQUEST, NULL, "the id of a request");
    refused(&ctx, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"},[]]", 400,
            JSONRPC_INVALID_REQUEST, NULL, "not an object");
    refused(&ctx, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"},", 400,
            JSONRPC_PARSE_ERROR, NULL, "parse error");
    refused(&ctx, "[]", 400, JSONRPC_INVALID_REQUEST, NULL, "an empty batch");
    refused(&ctx, "[ ]", 400, JSONRPC_INVALID_REQUEST, NULL, "an empty batch");
    refused(&ctx,
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}},"
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}]",
            400, JSONRPC_INVALID_REQUEST, NULL, "initialize must not be part of a batch");
    static const char one[] = "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}]";
    /* batches are of protocol 2025-03-26 only, and never of the 2024-11-05 transport */
    ctx.protocol_version = "2025-06-18";
    refused(&ctx, one, 400, JSONRPC_INVALID_REQUEST, NULL,
            "JSON-RPC batches are only part of protocol version 2025-03-26");
    ctx.protocol_version = "2025-03-26";
    ctx.legacy = true;
    refused(&ctx, one, 400, JSONRPC_INVALID_REQUEST, NULL,
            "batches are not part of the 2024-11-05 transport");
    /* a lone message on the 2024-11-05 transport is fine */
    pass_untouched(&ctx, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
}

/* ---- the route's require: ------------------------------------------------------------ */

static void test_route_require(void **state)
{
    (void)state;
    struct guard_ctx ctx = ctx_of(false);
    struct guard_refusal r;
    assert_int_equal(guard_route(&ctx, &r), GUARD_PASS);
    assert_null(r.body);

    route.require = (struct gw_requirements){.scopes = LIST("mcp:tools", "mcp:admin")};
    assert_int_equal(guard_route(&ctx, &r), GUARD_REFUSED);
    assert_int_equal(r.http_status, 403);
    assert_false(r.has_id);
    assert_non_null(r.www_authenticate);
    assert_non_null(strstr(r.www_authenticate, "scope=\"mcp:tools mcp:admin\""));
    json_t *e = load(r.body, strlen(r.body));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "error"), "code")),
                     JSONRPC_GATEWAY_FORBIDDEN);
    json_decref(e);
    guard_refusal_clear(&r);

    route.require = (struct gw_requirements){.roles = LIST("ops", "sre")};
    assert_int_equal(guard_route(&ctx, &r), GUARD_REFUSED);
    assert_int_equal(r.http_status, 403);
    assert_null(r.www_authenticate); /* a role cannot be asked for */
    guard_refusal_clear(&r);

    route.require =
        (struct gw_requirements){.roles = LIST("ops", "staff"), .scopes = LIST("mcp:tools")};
    assert_int_equal(guard_route(&ctx, &r), GUARD_PASS);
    route.require = (struct gw_requirements){0};
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_ids_refused, reset),
        cmocka_unit_test_setup(test_ids_accepted, reset),
        cmocka_unit_test_setup(test_shapes_refused, reset),
        cmocka_unit_test_setup(test_responses_pass, reset),
        cmocka_unit_test_setup(test_requests_governed, reset),
        cmocka_unit_test_setup(test_step_up, reset),
        cmocka_unit_test_setup(test_notifications_governed, reset),
        cmocka_unit_test_setup(test_name_not_a_string, reset),
        cmocka_unit_test_setup(test_other_governed_methods, reset),
        cmocka_unit_test_setup(test_templates_list, reset),
        cmocka_unit_test_setup(test_uri_normalisation, reset),
        cmocka_unit_test_setup(test_duplicate_keys, reset),
        cmocka_unit_test_setup(test_principal_removed, reset),
        cmocka_unit_test_setup(test_principal_set, reset),
        cmocka_unit_test_setup(test_one_line, reset),
        cmocka_unit_test_setup(test_batches, reset),
        cmocka_unit_test_setup(test_batches_refused, reset),
        cmocka_unit_test_setup(test_route_require, reset),
    };
    gw_log_set_level(getenv("TEST_GUARD_LOG") != NULL ? GW_LOG_DEBUG : GW_LOG_ERROR);
    return cmocka_run_group_tests_name("guard", tests, NULL, NULL);
}
