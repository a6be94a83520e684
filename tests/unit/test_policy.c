/*
 * test_policy: rule matching (a table), route requirements, list filtering,
 * the step-up scope text, and the SSE parser used to filter upstream lists.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/xalloc.h"
#include "proxy/policy.h"
#include "proxy/sse.h"

/* ---- helpers to build configs and principals ------------------------------------ */

static struct gw_string_list list_of(const char *csv)
{
    struct gw_string_list l = {0};
    if (csv == NULL || *csv == '\0')
        return l;
    char *copy = xstrdup(csv), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        l.items = xrealloc(l.items, (l.len + 1) * sizeof(char *));
        l.items[l.len++] = xstrdup(t);
    }
    free(copy);
    return l;
}

static void list_free(struct gw_string_list *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->items[i]);
    free(l->items);
}

static void principal_set(struct mg_principal *p, const char *roles, const char *groups,
                          const char *scopes)
{
    memset(p, 0, sizeof(*p));
    p->subject = (char *)"user";
    char *r = xstrdup(roles), *g = xstrdup(groups), *s = xstrdup(scopes);
    for (char *c = r; *c; c++)
        if (*c == ',')
            *c = ' ';
    for (char *c = g; *c; c++)
        if (*c == ',')
            *c = ' ';
    for (char *c = s; *c; c++)
        if (*c == ',')
            *c = ' ';
    mg_string_list_split(&p->roles, r);
    mg_string_list_split(&p->groups, g);
    mg_string_list_split(&p->scopes, s);
    free(r);
    free(g);
    free(s);
}

static void principal_clear(struct mg_principal *p)
{
    mg_string_list_clear(&p->roles);
    mg_string_list_clear(&p->groups);
    mg_string_list_clear(&p->scopes);
}

/* The rules every table case runs against:
 *   1. delete_*        roles manager                 (line 10)
 *   2. admin_*         deny                          (line 11)
 *   3. report_?        groups finance                (line 12)
 *   4. write_*         scopes mcp:write              (line 13)
 *   5. audit_[ab]*     roles auditor, groups audit   (line 14)
 *   6. billing_*       roles manager, scopes mcp:billing (line 15)
 *   7. *               scopes mcp:tools              (line 16)
 */
static struct gw_access_rules rules;

static int setup_rules(void **state)
{
    (void)state;
    static const struct {
        const char *match, *roles, *groups, *scopes;
        bool deny;
    } spec[] = {
        {"delete_*", "manager", "", "", false},
        {"admin_*", "", "", "", true},
        {"report_?", "", "finance", "", false},
        {"write_*", "", "", "mcp:write", false},
        {"audit_[ab]*", "auditor", "audit", "", false},
        {"billing_*", "manager", "", "mcp:billing", false},
        {"*", "", "", "mcp:tools", false},
    };
    rules.len = sizeof(spec) / sizeof(spec[0]);
    rules.rules = xcalloc(rules.len, sizeof(*rules.rules));
    for (size_t i = 0; i < rules.len; i++) {
        rules.rules[i].match = xstrdup(spec[i].match);
        rules.rules[i].roles = list_of(spec[i].roles);
        rules.rules[i].groups = list_of(spec[i].groups);
        rules.rules[i].scopes = list_of(spec[i].scopes);
        rules.rules[i].deny = spec[i].deny;
        rules.rules[i].line = (unsigned)(10 + i);
    }
    rules.default_effect = GW_POLICY_ALLOW;
    return 0;
}

static int teardown_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < rules.len; i++) {
        free(rules.rules[i].match);
        list_free(&rules.rules[i].roles);
        list_free(&rules.rules[i].groups);
        list_free(&rules.rules[i].scopes);
    }
    free(rules.rules);
    return 0;
}

struct rule_case {
    const char *tool, *roles, *groups, *scopes;
    enum policy_decision want;
    int rule; /* 1-based rule that decides, 0 = default */
};

static const struct rule_case cases[] = {
    /* glob and first match */
    {"delete_user", "manager", "", "mcp:tools", POLICY_ALLOW, 1},
    {"delete_user", "employee", "", "mcp:tools", POLICY_DENY, 1},
    {"delete_", "manager", "", "", POLICY_ALLOW, 1},
    {"undelete_user", "employee", "", "mcp:tools", POLICY_ALLOW, 7},
    {"admin_panel", "manager", "", "mcp:tools", POLICY_DENY, 2},
    {"admin_", "", "", "", POLICY_DENY, 2},
    {"report_q", "", "finance", "", POLICY_ALLOW, 3},
    {"report_q", "finance", "", "mcp:tools", POLICY_DENY, 3},   /* a role named like the group */
    {"report_qq", "", "finance", "mcp:tools", POLICY_ALLOW, 7}, /* ? is one character */
    {"report_", "", "finance", "", POLICY_DENY_SCOPE, 7},
    /* scopes vs roles */
    {"write_file", "", "", "mcp:tools", POLICY_DENY_SCOPE, 4},
    {"write_file", "", "", "mcp:write", POLICY_ALLOW, 4},
    {"write_file", "manager", "", "", POLICY_DENY_SCOPE, 4},
    {"audit_a1", "auditor", "", "", POLICY_ALLOW, 5},
    {"audit_b1", "", "audit", "", POLICY_ALLOW, 5},
    {"audit_c1", "auditor", "", "mcp:tools", POLICY_ALLOW, 7}, /* [ab] does not match c */
    {"audit_a1", "employee", "staff", "mcp:tools", POLICY_DENY, 5},
    {"billing_run", "manager", "", "mcp:billing", POLICY_ALLOW, 6},
    {"billing_run", "manager", "", "mcp:tools", POLICY_DENY_SCOPE, 6},
    {"billing_run", "employee", "", "mcp:billing", POLICY_DENY, 6}, /* role first */
    {"billing_run", "employee", "", "", POLICY_DENY, 6},
    /* the catch-all */
    {"echo", "", "", "mcp:tools", POLICY_ALLOW, 7},
    {"echo", "", "", "", POLICY_DENY_SCOPE, 7},
    {"echo", "manager", "finance", "other", POLICY_DENY_SCOPE, 7},
    /* empty claims */
    {"delete_user", "", "", "", POLICY_DENY, 1},
    {"report_x", "", "", "", POLICY_DENY, 3},
    {"", "", "", "mcp:tools", POLICY_ALLOW, 7},
    /* case matters, and no path semantics */
    {"Delete_user", "employee", "", "mcp:tools", POLICY_ALLOW, 7},
    {"delete_a/b", "manager", "", "", POLICY_ALLOW, 1},
    {"ADMIN_panel", "", "", "mcp:tools", POLICY_ALLOW, 7},
    {"admin_*", "", "", "", POLICY_DENY, 2},
    {"write_", "", "", "mcp:write,mcp:tools", POLICY_ALLOW, 4},
};

static void test_rule_table(void **state)
{
    (void)state;
    size_t n = sizeof(cases) / sizeof(cases[0]);
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        struct mg_principal p;
        principal_set(&p, cases[i].roles, cases[i].groups, cases[i].scopes);
        struct policy_verdict v = policy_check(&rules, &p, cases[i].tool);
        int rule = v.rule ? (int)(v.rule - rules.rules) + 1 : 0;
        if (v.decision != cases[i].want || rule != cases[i].rule)
            fail_msg("case %zu (%s roles=%s groups=%s scopes=%s): got decision %d by rule %d, "
                     "want %d by rule %d",
                     i, cases[i].tool, cases[i].roles, cases[i].groups, cases[i].scopes, v.decision,
                     rule, cases[i].want, cases[i].rule);
        principal_clear(&p);
    }
}

static void test_default_and_explain(void **state)
{
    (void)state;
    struct gw_access_rules none = {.default_effect = GW_POLICY_DENY};
    struct mg_principal p;
    principal_set(&p, "manager", "", "mcp:tools");
    struct policy_verdict v = policy_check(&none, &p, "anything");
    assert_int_equal(v.decision, POLICY_DENY);
    assert_null(v.rule);
    char *why = policy_explain(&none, &v, "anything");
    assert_string_equal(why, "anything: denied by default: deny");
    free(why);
    none.default_effect = GW_POLICY_ALLOW;
    v = policy_check(&none, &p, "anything");
    assert_int_equal(v.decision, POLICY_ALLOW);
    v = policy_check(&rules, &p, "delete_x");
    why = policy_explain(&rules, &v, "delete_x");
    assert_string_equal(why, "delete_x: allowed by rule 1 (match \"delete_*\" roles=[manager], "
                             "line 10)");
    free(why);
    principal_clear(&p);
}

static void test_stepup_scope_includes_old_and_new(void **state)
{
    (void)state;
    struct mg_principal p;
    principal_set(&p, "", "", "mcp:tools,profile");
    struct gw_string_list need = list_of("mcp:write,mcp:tools");
    char *s = policy_stepup_scope(&p, &need);
    assert_string_equal(s, "mcp:tools profile mcp:write");
    free(s);
    list_free(&need);
    principal_clear(&p);
}

static void test_route_requirements(void **state)
{
    (void)state;
    struct gw_route_config r = {0};
    r.require.scopes = list_of("mcp:tools");
    r.require.roles = list_of("manager,admin");
    r.require.groups = list_of("staff");
    struct mg_principal p;
    principal_set(&p, "manager", "staff", "mcp:tools");
    assert_int_equal(policy_route_check(&r, &p).decision, POLICY_ALLOW);
    principal_clear(&p);
    principal_set(&p, "manager", "other", "mcp:tools"); /* groups: a separate any-of */
    assert_int_equal(policy_route_check(&r, &p).decision, POLICY_DENY);
    principal_clear(&p);
    principal_set(&p, "admin", "staff", "");
    struct policy_verdict v = policy_route_check(&r, &p);
    assert_int_equal(v.decision, POLICY_DENY_SCOPE);
    assert_ptr_equal(v.scopes_needed, &r.require.scopes);
    principal_clear(&p);
    list_free(&r.require.scopes);
    list_free(&r.require.roles);
    list_free(&r.require.groups);
}

static void test_filter_tools_list(void **state)
{
    (void)state;
    struct gw_route_config r = {0};
    r.tools = rules;
    json_t *resp =
        json_loads("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"echo\"},"
                   "{\"name\":\"delete_user\"},{\"name\":\"admin_x\"},{\"name\":\"write_file\"},"
                   "{\"nope\":1}],\"nextCursor\":\"abc\"}}",
                   0, NULL);
    struct mg_principal p;
    principal_set(&p, "employee", "", "mcp:tools");
    assert_int_equal(policy_filter_list(resp, "tools/list", &r, &p), 3);
    char *out = json_dumps(resp, JSON_COMPACT | JSON_SORT_KEYS);
    /* write_file stays: it only needs a scope (step-up); nextCursor is kept */
    assert_string_equal(out, "{\"id\":7,\"jsonrpc\":\"2.0\",\"result\":{\"nextCursor\":\"abc\","
                             "\"tools\":[{\"name\":\"echo\"},{\"name\":\"write_file\"}]}}");
    free(out);
    json_decref(resp);
    /* an error answer is left alone */
    resp = json_loads("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"x\"}}", 0,
                      NULL);
    assert_int_equal(policy_filter_list(resp, "tools/list", &r, &p), 0);
    json_decref(resp);
    principal_clear(&p);
}

/* ---- SSE parser -------------------------------------------------------------------- */

struct collected {
    struct strbuf out;
    int events;
};

static void collect(const struct sse_event *ev, void *arg)
{
    struct collected *c = arg;
    if (ev->comment) {
        strbuf_printf(&c->out, "[comment %s]", ev->comment);
        return;
    }
    c->events++;
    strbuf_printf(&c->out, "[id=%s event=%s data=%s]", ev->id ? ev->id : "-",
                  ev->event ? ev->event : "-", ev->data);
}

static void feed_bytewise(const char *text, struct collected *c)
{
    struct sse_parser *p = sse_parser_new(1 << 20, collect, c);
    for (size_t i = 0; text[i]; i++)
        assert_int_equal(sse_parser_feed(p, text + i, 1), 0);
    sse_parser_free(p);
}

static void test_sse_parser(void **state)
{
    (void)state;
    struct collected c = {STRBUF_INIT, 0};
    feed_bytewise("id: 1\nevent: message\ndata: {\"a\":1}\n\n"
                  ": keep-alive\n\n"
                  "data: line1\r\ndata: line2\r\n\r\n"
                  "id:2\rdata:x\r\r"
                  "data\n\n"
                  "retry: 5000\nunknown: y\ndata: z\n\n"
                  "data: never ends",
                  &c);
    assert_string_equal(strbuf_str(&c.out),
                        "[id=1 event=message data={\"a\":1}][comment  keep-alive]"
                        "[id=- event=- data=line1\nline2][id=2 event=- data=x]"
                        "[id=- event=- data=][id=- event=- data=z]");
    assert_int_equal(c.events, 5);
    strbuf_release(&c.out);

    struct sse_parser *p = sse_parser_new(16, collect, &c);
    assert_int_equal(sse_parser_feed(p, "data: 0123456789abcdefghij\n", 27), -E2BIG);
    sse_parser_free(p);
}

static void test_sse_format(void **state)
{
    (void)state;
    char *s = sse_format("p1_3", NULL, "a\nb");
    assert_string_equal(s, "id: p1_3\ndata: a\ndata: b\n\n");
    free(s);
    s = sse_format(NULL, "endpoint", "");
    assert_string_equal(s, "event: endpoint\ndata: \n\n");
    free(s);
    /* Found by fuzz_jsonrpc_sse: a trailing newline must survive format → parse. */
    s = sse_format(NULL, NULL, "a\n");
    assert_string_equal(s, "data: a\ndata: \n\n");
    struct collected c = {STRBUF_INIT, 0};
    feed_bytewise(s, &c);
    assert_string_equal(strbuf_str(&c.out), "[id=- event=- data=a\n]");
    strbuf_release(&c.out);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_table),
        cmocka_unit_test(test_default_and_explain),
        cmocka_unit_test(test_stepup_scope_includes_old_and_new),
        cmocka_unit_test(test_route_requirements),
        cmocka_unit_test(test_filter_tools_list),
        cmocka_unit_test(test_sse_parser),
        cmocka_unit_test(test_sse_format),
    };
    return cmocka_run_group_tests_name("policy", tests, setup_rules, teardown_rules);
}
