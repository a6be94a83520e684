/*
 * test_whoami: the whoami example server without a process: stdin line
 * splitting, the stdout queue against a full non-blocking pipe, and
 * table-driven conversations through ws_handle_line (batches, answers owed
 * for later, cancellation, timeouts, version-dependent shapes).
 * Includes the example's sources (all but main.c) to reach static code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "examples/whoami-server/identity.c"
#include "examples/whoami-server/io.c"
#include "examples/whoami-server/mcp.c"
#include "examples/whoami-server/protocol.c"
#include "examples/whoami-server/tools.c"
#include "examples/whoami-server/util.c"

/* Everything queued for stdout, as one string; the queue is emptied. */
static char *drain(struct ws_server *srv)
{
    char *all = ws_xmalloc(srv->out.bytes + 1);
    size_t n = 0;
    for (struct ws_chunk *c = srv->out.head; c != NULL; c = c->next) {
        memcpy(all + n, c->data + c->off, c->len - c->off);
        n += c->len - c->off;
    }
    all[n] = '\0';
    ws_outq_clear(&srv->out);
    return all;
}

static void feed(struct ws_server *srv, const char *line)
{
    ws_handle_line(srv, line, strlen(line));
}

static void init_session(struct ws_server *srv, const char *version, const char *caps)
{
    char line[512];
    ws_server_init(srv);
    snprintf(line, sizeof(line),
             "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{"
             "\"protocolVersion\":\"%s\",\"capabilities\":%s,\"clientInfo\":{\"name\":\"t\"}}}",
             version, caps);
    feed(srv, line);
    feed(srv, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    free(drain(srv));
}

static int setup(void **state)
{
    (void)state;
    ws_json_init();
    return 0;
}

/* ---- io ------------------------------------------------------------------- */

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

static void test_linebuf_splits_joins_and_ends(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct ws_linebuf lb = {0};
    const char *line;
    size_t len;
    write_all(p[1], "{\"a\":1}\n{\"b\"", 12);
    assert_int_equal(ws_linebuf_read(&lb, p[0]), 0);
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(line, "{\"a\":1}", 7);
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_NONE);
    write_all(p[1], ":2}\n\nlast", 9);
    close(p[1]);
    assert_int_equal(ws_linebuf_read(&lb, p[0]), 0);
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_OK);
    assert_memory_equal(line, "{\"b\":2}", len);
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_OK); /* the empty line */
    assert_int_equal(len, 0);
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_NONE);
    assert_int_equal(ws_linebuf_read(&lb, p[0]), 0);
    assert_true(lb.eof);
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_OK); /* unterminated */
    assert_memory_equal(line, "last", 4);
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_NONE);
    close(p[0]);
    ws_linebuf_free(&lb);
}

static void test_linebuf_skips_an_overlong_line(void **state)
{
    (void)state;
    /* Fill the buffer directly: a pipe would need a writer thread. */
    struct ws_linebuf lb = {0};
    size_t big = WS_MAX_LINE_BYTES + 10;
    lb.buf = ws_xmalloc(big + 16);
    lb.cap = big + 16;
    memset(lb.buf, 'x', big);
    lb.len = big;
    const char *line;
    size_t len;
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_TOO_LONG);
    assert_true(lb.discarding);
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_NONE);
    memcpy(lb.buf + lb.len, "tail\nok\n", 8); /* the rest of the long line, then one */
    lb.len += 8;
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_OK);
    assert_memory_equal(line, "ok", len);
    /* A line over the limit whose newline arrived in the same read. */
    lb.start = lb.len = lb.scanned = 0;
    memset(lb.buf, 'y', WS_MAX_LINE_BYTES + 1);
    lb.buf[WS_MAX_LINE_BYTES + 1] = '\n';
    lb.len = WS_MAX_LINE_BYTES + 2;
    assert_int_equal(ws_linebuf_next(&lb, &line, &len), WS_LINE_TOO_LONG);
    assert_false(lb.discarding);
    ws_linebuf_free(&lb);
}

static void test_outq_partial_writes_on_a_full_nonblocking_pipe(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    struct ws_outq q = {0};
    size_t n = 1024 * 1024;
    char *data = ws_xmalloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)('a' + i % 26);
    char *copy = ws_xmalloc(n);
    memcpy(copy, data, n);
    ws_outq_push(&q, data, n);
    ws_outq_push(&q, ws_xstrdup("!\n"), 2);
    char *got = ws_xmalloc(n + 2);
    size_t have = 0;
    int rounds = 0;
    while (q.bytes > 0) {
        assert_int_equal(ws_outq_flush(&q, p[1], 256 * 1024), 0); /* EAGAIN is not an error */
        ssize_t r;
        while ((r = read(p[0], got + have, n + 2 - have)) > 0)
            have += (size_t)r;
        rounds++;
    }
    assert_true(rounds > 1); /* the pipe really filled up */
    assert_int_equal(have, n + 2);
    assert_memory_equal(got, copy, n);
    assert_memory_equal(got + n, "!\n", 2);
    close(p[0]);
    /* The reader is gone: an error, not a death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    ws_outq_push(&q, ws_xstrdup("x\n"), 2);
    assert_int_equal(ws_outq_flush(&q, p[1], 4096), -EPIPE);
    ws_outq_clear(&q);
    close(p[1]);
    free(copy);
    free(got);
}

/* ---- conversations ------------------------------------------------------------ */

struct exchange {
    const char *send;
    const char *expect; /* a substring of the whole output; NULL: no output at all */
};

static void run_exchanges(const char *version, const struct exchange *x, size_t n)
{
    struct ws_server srv;
    init_session(&srv, version, "{}");
    for (size_t i = 0; i < n; i++) {
        feed(&srv, x[i].send);
        char *out = drain(&srv);
        if (x[i].expect == NULL) {
            if (out[0] != '\0')
                fail_msg("%s\n  expected no output, got %s", x[i].send, out);
        } else if (strstr(out, x[i].expect) == NULL) {
            fail_msg("%s\n  expected %s\n  got %s", x[i].send, x[i].expect, out);
        }
        /* MCP stdio: exactly one message per line. */
        char *nl = strchr(out, '\n');
        assert_true(out[0] == '\0' || nl == out + strlen(out) - 1);
        free(out);
    }
    ws_server_free(&srv);
}

static void test_jsonrpc_edge_cases(void **state)
{
    (void)state;
    static const struct exchange x[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
         "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"},
        {"  {\"jsonrpc\":\"2.0\",\"id\":\"s\",\"method\":\"ping\"}\r",
         "\"id\":\"s\",\"result\":{}"},
        {"", NULL},
        {"   \r", NULL},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,", "\"id\":null,\"error\":{\"code\":-32700"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}",
         "-32700"}, /* duplicate key */
        {"42", "\"id\":null,\"error\":{\"code\":-32600"},
        {"{\"jsonrpc\":\"1.0\",\"id\":3,\"method\":\"ping\"}",
         "\"id\":3,\"error\":{\"code\":-32600"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}",
         "\"id\":null,\"error\":{\"code\":-32600"},
        {"{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}",
         "\"id\":null,\"error\":{\"code\":-32600"},
        {"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":7}", "\"id\":4,\"error\":{\"code\":-32600"},
        {"{\"jsonrpc\":\"2.0\",\"id\":5}", "\"id\":5,\"error\":{\"code\":-32600"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"no/such/notification\"}", NULL},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"tools/list\"}", NULL}, /* a notification: no answer */
        {"{\"jsonrpc\":\"2.0\",\"id\":\"srv-99\",\"result\":{}}", NULL}, /* nobody asked */
        {"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"server/discover\"}",
         "\"id\":6,\"error\":{\"code\":-32601"},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\",\"params\":[1]}",
         "\"id\":7,\"error\":{\"code\":-32602"},
        {"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/list\",\"params\":{\"cursor\":\"x\"}}",
         "\"id\":8,\"error\":{\"code\":-32602"},
        {"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/"
         "call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"a\\u0000b\\n\"}}}",
         "\"text\":\"a\\u0000b\\n\""},
        {"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/"
         "call\",\"params\":{\"name\":\"add\",\"arguments\":{\"a\":9223372036854775807,\"b\":1}}}",
         "\"text\":\"9.2233720368547758e18\""},
        {"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/"
         "call\",\"params\":{\"name\":\"add\",\"arguments\":{\"a\":1.5e308,\"b\":1.5e308}}}",
         "\"isError\":true"},
        {"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/"
         "call\",\"params\":{\"name\":\"big_line\",\"arguments\":{\"bytes\":16777217}}}",
         "\"isError\":true"},
        {"{\"jsonrpc\":\"2.0\",\"id\":13,\"method\":\"tools/"
         "call\",\"params\":{\"name\":\"crash\",\"arguments\":{\"signal\":\"HUP\"}}}",
         "\"isError\":true"},
        {"{\"jsonrpc\":\"2.0\",\"id\":14,\"method\":\"tools/"
         "call\",\"params\":{\"name\":\"slow\",\"_meta\":{\"progressToken\":1.5}}}",
         "\"id\":14,\"error\":{\"code\":-32602"},
        {"[{\"jsonrpc\":\"2.0\",\"id\":15,\"method\":\"ping\"}]",
         "\"id\":null,\"error\":{\"code\":-32600"},
    };
    run_exchanges("2025-11-25", x, sizeof(x) / sizeof(x[0]));
}

static void test_version_negotiation_and_shapes(void **state)
{
    (void)state;
    static const struct {
        const char *asked, *answered;
        bool titles; /* title, outputSchema, structuredContent */
    } v[] = {
        {"2024-11-05", "2024-11-05", false}, {"2025-03-26", "2025-03-26", false},
        {"2025-06-18", "2025-06-18", true},  {"2025-11-25", "2025-11-25", true},
        {"2026-07-28", "2025-11-25", true},  {"draft", "2025-11-25", true},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct ws_server srv;
        init_session(&srv, v[i].asked, "{}");
        assert_string_equal(srv.version, v[i].answered);
        feed(&srv, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
        feed(&srv, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
                   "\"whoami\"}}");
        char *out = drain(&srv);
        assert_int_equal(strstr(out, "\"outputSchema\"") != NULL, v[i].titles);
        assert_int_equal(strstr(out, "\"structuredContent\"") != NULL, v[i].titles);
        free(out);
        ws_server_free(&srv);
    }
}

static void test_batch_with_slow_and_cancel(void **state)
{
    (void)state;
    struct ws_server srv;
    init_session(&srv, "2025-03-26", "{}");
    feed(&srv, "[{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"slow\",\"arguments\":{\"seconds\":0,\"steps\":2},\"_meta\":{\"progressToken\":"
               "\"t\"}}},{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"method\":\"ping\"}]");
    char *out = drain(&srv);
    assert_string_equal(out, ""); /* the batch waits for its slow member */
    free(out);
    ws_ops_run_due(&srv, UINT64_MAX);
    out = drain(&srv);
    const char *p1 = strstr(out, "\"progress\":1");
    const char *p2 = strstr(out, "\"progress\":2");
    const char *arr = strstr(out, "[{");
    assert_non_null(p1);
    assert_non_null(p2);
    assert_non_null(arr);
    assert_true(p1 < p2 && p2 < arr); /* progress first, then the whole batch */
    assert_non_null(strstr(arr, "\"id\":\"a\""));
    assert_non_null(strstr(arr, "\"id\":\"b\""));
    free(out);
    assert_null(srv.ops);

    /* Cancelled inside its own batch: the rest is still answered. */
    feed(&srv, "[{\"jsonrpc\":\"2.0\",\"id\":\"c\",\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"slow\"}},{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
               "{\"requestId\":\"c\"}},{\"jsonrpc\":\"2.0\",\"id\":\"d\",\"method\":\"ping\"}]");
    out = drain(&srv);
    assert_string_equal(out, "[{\"jsonrpc\":\"2.0\",\"id\":\"d\",\"result\":{}}]\n");
    free(out);
    assert_null(srv.ops);
    ws_server_free(&srv);
}

static void test_client_request_timeout_and_abandon(void **state)
{
    (void)state;
    struct ws_server srv;
    init_session(&srv, "2025-11-25", "{\"sampling\":{},\"elicitation\":{}}");
    feed(&srv, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"sample\",\"arguments\":{\"prompt\":\"p\"}}}");
    char *out = drain(&srv);
    assert_non_null(strstr(out, "\"id\":\"srv-1\",\"method\":\"sampling/createMessage\""));
    free(out);
    ws_ops_run_due(&srv, ws_now_ms()); /* not due yet */
    assert_non_null(srv.ops);
    ws_ops_run_due(&srv, UINT64_MAX);
    out = drain(&srv);
    assert_non_null(strstr(out, "\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":"
                                "\"srv-1\""));
    assert_non_null(strstr(out, "\"id\":1,\"result\":{\"content\""));
    assert_non_null(strstr(out, "\"isError\":true"));
    free(out);
    assert_null(srv.ops);

    /* An elicitation (empty capability object: form mode) left pending at EOF. */
    feed(&srv, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"elicit\",\"arguments\":{\"message\":\"m\"}}}");
    out = drain(&srv);
    assert_non_null(strstr(out, "\"mode\":\"form\""));
    free(out);
    assert_int_equal(ws_ops_abandon(&srv), 1);
    out = drain(&srv);
    assert_string_equal(out, "");
    free(out);
    ws_server_free(&srv);
}

static void test_identity_from_env(void **state)
{
    (void)state;
    setenv("MCP_USER_ROLES", " admin, ,manager ,", 1);
    setenv("MCP_SCOPES", "openid  mcp:tools\temail", 1);
    setenv("MCP_USER_SUB", "s\xff-1", 1); /* not UTF-8 */
    setenv("MCP_IDENTITY_JWT", "aaaa.bbbb.cccc", 1);
    setenv("MCP_USER_DEPARTMENT", "R&D", 1);
    unsetenv("MCP_USER_GROUPS");
    json_t *env = ws_identity_env_new();
    char *s = json_dumps(env, JSON_COMPACT);
    assert_non_null(strstr(s, "\"roles\":[\"admin\",\"manager\"]"));
    assert_non_null(strstr(s, "\"scopes\":[\"openid\",\"mcp:tools\",\"email\"]"));
    assert_non_null(strstr(s, "\"sub\":\"s?-1\""));
    assert_non_null(strstr(s, "\"groups\":null"));
    assert_non_null(strstr(s, "\"identity_jwt\":{\"present\":true,\"length\":14}"));
    assert_non_null(strstr(s, "\"extra\":{\"MCP_USER_DEPARTMENT\":\"R&D\"}"));
    assert_null(strstr(s, "aaaa.bbbb"));
    free(s);
    json_decref(env);
    json_t *names = ws_env_names_new();
    for (size_t i = 1; i < json_array_size(names); i++)
        assert_true(strcmp(json_string_value(json_array_get(names, i - 1)),
                           json_string_value(json_array_get(names, i))) <= 0);
    json_decref(names);
    unsetenv("MCP_USER_ROLES");
    unsetenv("MCP_SCOPES");
    unsetenv("MCP_USER_SUB");
    unsetenv("MCP_IDENTITY_JWT");
    unsetenv("MCP_USER_DEPARTMENT");
}

static void test_builtin_schemas_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ws_tools) / sizeof(ws_tools[0]); i++) {
        json_t *in = schema_new(ws_tools[i].input_schema);
        assert_string_equal(json_string_value(json_object_get(in, "type")), "object");
        json_decref(in);
        if (ws_tools[i].output_schema != NULL)
            json_decref(schema_new(ws_tools[i].output_schema));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linebuf_splits_joins_and_ends),
        cmocka_unit_test(test_linebuf_skips_an_overlong_line),
        cmocka_unit_test(test_outq_partial_writes_on_a_full_nonblocking_pipe),
        cmocka_unit_test(test_jsonrpc_edge_cases),
        cmocka_unit_test(test_version_negotiation_and_shapes),
        cmocka_unit_test(test_batch_with_slow_and_cancel),
        cmocka_unit_test(test_client_request_timeout_and_abandon),
        cmocka_unit_test(test_identity_from_env),
        cmocka_unit_test(test_builtin_schemas_parse),
    };
    return cmocka_run_group_tests_name("whoami", tests, setup, NULL);
}
