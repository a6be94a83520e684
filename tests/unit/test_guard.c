/*
 * test_guard: proxy/guard.c, the gate every client message passes, alone:
 * classification (ids a request may have), policy on every governed
 * method whatever the id, names that are not strings, duplicate keys, the
 * principal in _meta, batches by protocol revision, resource URI
 * normalisation. The wire-level counterpart is tests/integration/guard.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "proxy/guard.h"
#include "proxy/policy.h"

#define LIST(...)                                                                                  \
    {                                                                                              \
        (char *[]){__VA_ARGS__}, sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)                  \
    }

static struct gw_access_rule tool_rules[] = {
    {.match = "secret_tool", .deny = true, .line = 1},
    {.match = "*", .line = 2},
};
static struct gw_access_rule resource_rules[] = {
    {.match = "file:///public/*", .line = 3},
};
static struct gw_route_config route = {
    .name = "t",
    .path = "/mcp/t",
    .tools = {tool_rules, 2, GW_POLICY_ALLOW},
    .prompts = {NULL, 0, GW_POLICY_ALLOW},
    .resources = {resource_rules, 1, GW_POLICY_DENY},
};
static struct mg_principal principal = {
    .subject = "user-1",
    .scopes = LIST("mcp:tools"),
    .client_id = "client-1",
};

static struct guard_ctx ctx(const char *version, bool legacy, bool meta)
{
    route.identity.meta = meta;
    return (struct guard_ctx){.route = &route,
                              .principal = &principal,
                              .public_url = "http://127.0.0.1:8080",
                              .request_id = "rid",
                              .protocol_version = version,
                              .legacy = legacy,
                              .one_line = true};
}

/* The guard's answer for TEXT; *CODE is the JSON-RPC error code of a refusal (0: passed). */
static enum guard_result check(const struct guard_ctx *c, const char *text, int *code,
                               char **forwarded)
{
    struct guard_body b = {0};
    struct guard_refusal r = {0};
    enum guard_result res = guard_check(c, text, strlen(text), &b, &r);
    *code = 0;
    if (forwarded)
        *forwarded = NULL;
    if (res == GUARD_REFUSED) {
        json_error_t jerr;
        json_t *e = json_loads(r.body, 0, &jerr);
        assert_non_null(e); /* a refusal is JSON */
        *code = (int)json_integer_value(json_object_get(json_object_get(e, "error"), "code"));
        json_decref(e);
        guard_refusal_clear(&r);
    } else if (forwarded) {
        *forwarded = strndup(b.text, b.len);
    }
    guard_body_clear(&b);
    return res;
}

static void test_ids_a_request_may_not_have_are_refused(void **state)
{
    (void)state;
    struct guard_ctx c = ctx("2025-06-18", false, false);
    static const char *const bad[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1.0,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1e0,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"tools/"
        "call\",\"params\":{\"name\":\"echo\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":9007199254740992,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":7}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int code;
        assert_int_equal(check(&c, bad[i], &code, NULL), GUARD_REFUSED);
        assert_int_equal(code, -32600);
    }
    int code;
    assert_int_equal(
        check(&c, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"ping\"}", &code, NULL),
        GUARD_PASS);
    assert_int_equal(
        check(&c, "{\"jsonrpc\":\"2.0\",\"id\":9007199254740991,\"method\":\"ping\"}", &code, NULL),
        GUARD_PASS);
}

static void test_policy_governs_whatever_the_id(void **state)
{
    (void)state;
    struct guard_ctx c = ctx("2025-06-18", false, false);
    int code;
    /* A request, a notification: the denied tool never passes. */
    assert_int_equal(check(&c,
                           "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"tools/call\","
                           "\"params\":{\"name\":\"secret_tool\"}}",
                           &code, NULL),
                     GUARD_REFUSED);
    assert_int_equal(code, -32602); /* like an unknown tool */
    assert_int_equal(check(&c,
                           "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\","
                           "\"params\":{\"name\":\"secret_tool\"}}",
                           &code, NULL),
                     GUARD_REFUSED);
    assert_int_equal(check(&c,
                           "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\","
                           "\"params\":{\"name\":\"echo\"}}",
                           &code, NULL),
                     GUARD_PASS);
}

static void test_names_that_are_not_strings_and_duplicate_keys(void **state)
{
    (void)state;
    struct guard_ctx c = ctx("2025-06-18", false, false);
    int code;
    assert_int_equal(check(&c,
                           "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                           "\"params\":{\"name\":[\"secret_tool\"]}}",
                           &code, NULL),
                     GUARD_REFUSED);
    assert_int_equal(code, -32602);
    assert_int_equal(check(&c,
                           "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                           "\"params\":{\"name\":\"echo\",\"name\":\"secret_tool\"}}",
                           &code, NULL),
                     GUARD_REFUSED);
    assert_int_equal(code, -32600);
    assert_int_equal(
        check(&c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}", &code, NULL),
        GUARD_REFUSED);
}

static void test_principal_in_meta_is_replaced_or_removed(void **state)
{
    (void)state;
    const char *forged = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                         "{\"name\":\"echo\",\"_meta\":{\"io.mcpgate/principal\":{\"sub\":\"boss\"}"
                         "}}}";
    for (int meta = 0; meta <= 1; meta++) {
        struct guard_ctx c = ctx("2025-06-18", false, meta);
        int code;
        char *out;
        assert_int_equal(check(&c, forged, &code, &out), GUARD_PASS);
        assert_null(strstr(out, "boss"));
        if (meta)
            assert_non_null(strstr(out, "\"sub\":\"user-1\""));
        else
            assert_null(strstr(out, "io.mcpgate/principal"));
        free(out);
    }
    /* A notification with params too. */
    struct guard_ctx c = ctx("2025-06-18", false, false);
    int code;
    char *out;
    assert_int_equal(check(&c,
                           "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":"
                           "{\"_meta\":{\"io.mcpgate/principal\":{\"sub\":\"boss\"}}}}",
                           &code, &out),
                     GUARD_PASS);
    assert_null(strstr(out, "boss"));
    free(out);
}

static void test_batches_by_revision(void **state)
{
    (void)state;
    const char *batch = "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
                        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]";
    int code;
    struct guard_ctx old = ctx("2025-03-26", false, false);
    assert_int_equal(check(&old, batch, &code, NULL), GUARD_PASS);
    struct guard_ctx now = ctx("2025-06-18", false, false);
    assert_int_equal(check(&now, batch, &code, NULL), GUARD_REFUSED);
    struct guard_ctx legacy = ctx("2024-11-05", true, false);
    assert_int_equal(check(&legacy, batch, &code, NULL), GUARD_REFUSED);
    /* One denied message refuses the whole batch. */
    assert_int_equal(
        check(&old,
              "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\","
              "\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"secret_tool\"}"
              "}]",
              &code, NULL),
        GUARD_REFUSED);
}

static void test_resources_governed_and_normalised(void **state)
{
    (void)state;
    struct guard_ctx c = ctx("2025-06-18", false, false);
    static const char *const methods[] = {"resources/read", "resources/subscribe",
                                          "resources/unsubscribe"};
    static const char *const denied[] = {"file:///secret", "file:///public/../secret",
                                         "file:///public/%2e%2e/secret", "file:///public/a%2Fb",
                                         "FILE:///public/../secret"};
    for (size_t m = 0; m < 3; m++) {
        for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
            char *text = NULL;
            int n = asprintf(&text,
                             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\",\"params\":"
                             "{\"uri\":\"%s\"}}",
                             methods[m], denied[i]);
            assert_true(n > 0);
            int code;
            assert_int_equal(check(&c, text, &code, NULL), GUARD_REFUSED);
            free(text);
        }
    }
    int code;
    assert_int_equal(check(&c,
                           "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\","
                           "\"params\":{\"uri\":\"file:///public/a.txt\"}}",
                           &code, NULL),
                     GUARD_PASS);
    assert_int_equal(check(&c,
                           "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\","
                           "\"params\":{\"ref\":{\"type\":\"ref/resource\",\"uri\":"
                           "\"file:///secret/{x}\"},\"argument\":{\"name\":\"x\",\"value\":\"\"}}}",
                           &code, NULL),
                     GUARD_REFUSED);
}

int main(void)
{
    gw_log_set_level(GW_LOG_WARN); /* refusals log at info */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_a_request_may_not_have_are_refused),
        cmocka_unit_test(test_policy_governs_whatever_the_id),
        cmocka_unit_test(test_names_that_are_not_strings_and_duplicate_keys),
        cmocka_unit_test(test_principal_in_meta_is_replaced_or_removed),
        cmocka_unit_test(test_batches_by_revision),
        cmocka_unit_test(test_resources_governed_and_normalised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
