/*
 * test_consent_cookie: the remembered-consent cookie without a request
 * (consent_cookie_parse, consent_cookie_write, consent_approval_key in
 * oauth/consent.c) and the Cookie header lookup that finds it and the
 * per-authorization CSRF cookie (oauth_cookie_find, oauth/oauth_common.c).
 * tests/fuzz/fuzz_consent_cookie.c checks the same properties on any input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/principal.h"
#include "common/strbuf.h"
#include "oauth/consent.h"
#include "oauth/oauth_int.h"
#include "oauth/tokens.h"

static const unsigned char secret[48] = "0123456789abcdef0123456789abcdef0123456789abcde";
static const unsigned char other_secret[48] = "another secret, not the one that signed the coo";
#define NOW ((uint64_t)1700000000)
#define LATER (NOW + 30 * 86400)

static void key_of(const char *client, char out[CONSENT_KEY_LEN + 1])
{
    consent_approval_key(client, "http://127.0.0.1/callback", "", out);
}

/* A cookie value remembering CLIENT with SCOPES (space-separated) on top of PREV (may be NULL). */
static char *remember(const char *prev, const char *client, const char *scopes, uint64_t until)
{
    struct consent_approvals as = {0};
    if (prev)
        consent_cookie_parse(secret, sizeof(secret), prev, NOW, &as);
    char key[CONSENT_KEY_LEN + 1];
    key_of(client, key);
    struct mg_string_list sl = {0};
    mg_string_list_split(&sl, scopes);
    char *value = consent_cookie_write(secret, sizeof(secret), &as, key, &sl, until);
    mg_string_list_clear(&sl);
    consent_approvals_clear(&as);
    return value;
}

static void test_cookie_find(void **state)
{
    (void)state;
    const char *rows[][3] = {
        /* header, name, value (NULL: not found) */
        {"mcpgate_consent=abc", "mcpgate_consent", "abc"},
        {"a=1; mcpgate_consent=abc; b=2", "mcpgate_consent", "abc"},
        {"a=1;mcpgate_consent=abc", "mcpgate_consent", "abc"},
        {"mcpgate_consent=", "mcpgate_consent", ""},
        {"mcpgate_consent=a=b", "mcpgate_consent", "a=b"},
        {"mcpgate_consent=first; mcpgate_consent=second", "mcpgate_consent", "first"},
        {"__Host-mcpgate_consent=abc", "mcpgate_consent", NULL},
        {"mcpgate_consentx=abc", "mcpgate_consent", NULL},
        {"xmcpgate_consent=abc", "mcpgate_consent", NULL},
        {"mcpgate_consent", "mcpgate_consent", NULL},
        {"a=mcpgate_consent=abc", "mcpgate_consent", NULL},
        {"", "mcpgate_consent", NULL},
        {";;; ", "mcpgate_consent", NULL},
        {"__Host-mcpgate_consent=v; mcpgate_consent=w", "__Host-mcpgate_consent", "v"},
        {"mcpgate_ar_0123456789ab=tok; mcpgate_ar_0123456789abc=x", "mcpgate_ar_0123456789ab",
         "tok"},
        {"mcpgate_ar_0123456789abc=x; mcpgate_ar_0123456789ab= tok ", "mcpgate_ar_0123456789ab",
         " tok "},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *v = oauth_cookie_find(rows[i][0], rows[i][1]);
        if (rows[i][2] == NULL) {
            if (v != NULL)
                fail_msg("row %zu: \"%s\" found \"%s\"", i, rows[i][0], v);
        } else {
            if (v == NULL || strcmp(v, rows[i][2]) != 0)
                fail_msg("row %zu: \"%s\" gave \"%s\", not \"%s\"", i, rows[i][0], v ? v : "(none)",
                         rows[i][2]);
        }
        free(v);
    }
}

static void test_key(void **state)
{
    (void)state;
    char a[CONSENT_KEY_LEN + 1], b[CONSENT_KEY_LEN + 1], c[CONSENT_KEY_LEN + 1];
    consent_approval_key("cli", "http://127.0.0.1/cb", "", a);
    consent_approval_key("cli", "http://127.0.0.1/cb", "https://gw.example/mcp/x", b);
    /* The NUL separators: "cli" + "x/cb" is not "clix" + "/cb". */
    consent_approval_key("clix", "/cb", "", c);
    assert_int_equal(strlen(a), CONSENT_KEY_LEN);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     CONSENT_KEY_LEN);
    assert_string_not_equal(a, b);
    char d[CONSENT_KEY_LEN + 1];
    consent_approval_key("cli", "x/cb", "", d);
    assert_string_not_equal(c, d);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *v = remember(NULL, "cli-a", "mcp:tools openid", LATER);
    struct consent_approvals as;
    consent_cookie_parse(secret, sizeof(secret), v, NOW, &as);
    assert_int_equal(as.len, 1);
    char key[CONSENT_KEY_LEN + 1];
    key_of("cli-a", key);
    assert_string_equal(as.items[0].key, key);
    assert_int_equal(as.items[0].until, LATER);
    assert_int_equal(as.items[0].scopes.len, 2);
    assert_string_equal(as.items[0].scopes.items[0], "mcp:tools");
    assert_string_equal(as.items[0].scopes.items[1], "openid");
    /* The format of consent.h: key~b64url(scopes)~expiry.mac */
    char expect[128];
    snprintf(expect, sizeof(expect), "%s~bWNwOnRvb2xzIG9wZW5pZA~%llu.", key,
             (unsigned long long)LATER);
    assert_memory_equal(v, expect, strlen(expect));
    assert_int_equal(strlen(v), strlen(expect) + 43);
    consent_approvals_clear(&as);
    free(v);
}

static void test_refused(void **state)
{
    (void)state;
    char *v = remember(NULL, "cli-a", "mcp:tools", LATER);
    struct consent_approvals as;
    /* Every byte changed, one at a time: nothing. */
    for (size_t i = 0; v[i]; i++) {
        char *t = strdup(v);
        t[i] = (char)(t[i] == 'A' ? 'B' : 'A');
        consent_cookie_parse(secret, sizeof(secret), t, NOW, &as);
        if (as.len != 0)
            fail_msg("byte %zu changed (%s) and still accepted", i, t);
        free(t);
    }
    /* Another secret, a cut MAC, no MAC, a MAC with its unused bits set. */
    consent_cookie_parse(other_secret, sizeof(other_secret), v, NOW, &as);
    assert_int_equal(as.len, 0);
    char *t = strdup(v);
    t[strlen(t) - 1] = '\0';
    consent_cookie_parse(secret, sizeof(secret), t, NOW, &as);
    assert_int_equal(as.len, 0);
    *strrchr(t, '.') = '\0';
    consent_cookie_parse(secret, sizeof(secret), t, NOW, &as);
    assert_int_equal(as.len, 0);
    free(t);
    t = strdup(v);
    char *last = &t[strlen(t) - 1];
    assert_non_null(strchr("AEIMQUYcgkosw048", *last)); /* 256 bits: two spare */
    *last = (char)(*last + 1);
    consent_cookie_parse(secret, sizeof(secret), t, NOW, &as);
    assert_int_equal(as.len, 0);
    free(t);
    consent_cookie_parse(secret, sizeof(secret), "", NOW, &as);
    assert_int_equal(as.len, 0);
    free(v);
}

/* Entries the writer never makes, signed: malformed ones are skipped, the rest kept. */
static void test_malformed_entries(void **state)
{
    (void)state;
    const char *payload = "short~~1801000000,"
                          "AAAAAAAAAAAAAAAAAAAAAA~!!~1801000000,"
                          "BBBBBBBBBBBBBBBBBBBBBB~bWNw~,"
                          "CCCCCCCCCCCCCCCCCCCCCC~bWNw~18x,"
                          "DDDDDDDDDDDDDDDDDDDDDD~YQBi~1801000000," /* "a\0b": no scopes */
                          "EEEEEEEEEEEEEEEEEEEEEE~~1801000000,,"
                          "FFFFFFFFFFFFFFFFFFFFFF~IGEgIGIg~1801000000"; /* " a  b " */
    char *mac = oauth_mac_new(secret, sizeof(secret), "consent", payload);
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "%s.%s", payload, mac);
    struct consent_approvals as;
    consent_cookie_parse(secret, sizeof(secret), strbuf_str(&sb), NOW, &as);
    assert_int_equal(as.len, 3);
    assert_string_equal(as.items[0].key, "DDDDDDDDDDDDDDDDDDDDDD");
    assert_int_equal(as.items[0].scopes.len, 0);
    assert_string_equal(as.items[1].key, "EEEEEEEEEEEEEEEEEEEEEE");
    assert_int_equal(as.items[1].scopes.len, 0);
    assert_string_equal(as.items[2].key, "FFFFFFFFFFFFFFFFFFFFFF");
    assert_int_equal(as.items[2].scopes.len, 2);
    assert_string_equal(as.items[2].scopes.items[0], "a");
    assert_string_equal(as.items[2].scopes.items[1], "b");
    consent_approvals_clear(&as);
    strbuf_release(&sb);
    free(mac);
}

static void test_expiry_order_and_merge(void **state)
{
    (void)state;
    char *v1 = remember(NULL, "cli-a", "mcp:tools", NOW + 10);
    char *v2 = remember(v1, "cli-b", "mcp:read", LATER);
    char *v3 = remember(v2, "cli-a", "mcp:write", LATER); /* again: to the front, joined */
    struct consent_approvals as;
    consent_cookie_parse(secret, sizeof(secret), v3, NOW, &as);
    assert_int_equal(as.len, 2);
    char a[CONSENT_KEY_LEN + 1], b[CONSENT_KEY_LEN + 1];
    key_of("cli-a", a);
    key_of("cli-b", b);
    assert_string_equal(as.items[0].key, a);
    assert_int_equal(as.items[0].scopes.len, 2);
    assert_string_equal(as.items[0].scopes.items[0], "mcp:write");
    assert_string_equal(as.items[0].scopes.items[1], "mcp:tools");
    assert_string_equal(as.items[1].key, b);
    consent_approvals_clear(&as);
    /* Expired at its own second: cli-a's first approval in v2 is gone at NOW + 10. */
    consent_cookie_parse(secret, sizeof(secret), v2, NOW + 10, &as);
    assert_int_equal(as.len, 1);
    assert_string_equal(as.items[0].key, b);
    consent_approvals_clear(&as);
    consent_cookie_parse(secret, sizeof(secret), v2, NOW + 9, &as);
    assert_int_equal(as.len, 2);
    consent_approvals_clear(&as);
    free(v1);
    free(v2);
    free(v3);
}

/* At most CONSENT_MAX_APPROVALS and CONSENT_COOKIE_MAX bytes; the oldest go first. */
static void test_limits(void **state)
{
    (void)state;
    char *v = NULL;
    for (int i = 0; i < 25; i++) {
        char client[16];
        snprintf(client, sizeof(client), "cli-%02d", i);
        char *next = remember(v, client, "mcp:tools", LATER);
        free(v);
        v = next;
    }
    struct consent_approvals as;
    consent_cookie_parse(secret, sizeof(secret), v, NOW, &as);
    assert_int_equal(as.len, CONSENT_MAX_APPROVALS);
    char newest[CONSENT_KEY_LEN + 1], oldest_kept[CONSENT_KEY_LEN + 1];
    key_of("cli-24", newest);
    key_of("cli-05", oldest_kept);
    assert_string_equal(as.items[0].key, newest);
    assert_string_equal(as.items[CONSENT_MAX_APPROVALS - 1].key, oldest_kept);
    consent_approvals_clear(&as);
    free(v);

    struct strbuf scopes = STRBUF_INIT;
    for (int i = 0; i < 12; i++)
        strbuf_printf(&scopes, "%sscope:with-a-rather-long-name-%02d", i ? " " : "", i);
    v = NULL;
    for (int i = 0; i < 8; i++) {
        char client[16];
        snprintf(client, sizeof(client), "cli-%02d", i);
        char *next = remember(v, client, strbuf_str(&scopes), LATER);
        assert_true(strlen(next) <= CONSENT_COOKIE_MAX);
        free(v);
        v = next;
    }
    consent_cookie_parse(secret, sizeof(secret), v, NOW, &as);
    assert_true(as.len >= 2 && as.len < 8);
    key_of("cli-07", newest);
    assert_string_equal(as.items[0].key, newest);
    consent_approvals_clear(&as);
    strbuf_release(&scopes);
    free(v);
}

static char *many_scopes(const char *prefix, int n)
{
    struct strbuf sb = STRBUF_INIT;
    for (int i = 0; i < n; i++)
        strbuf_printf(&sb, "%s%s:with-a-rather-long-name-%02d", i ? " " : "", prefix, i);
    return strbuf_detach(&sb, NULL);
}

/*
 * The new approval's own entry is bounded too (found by fuzz_consent_cookie,
 * corpus/consent_cookie/crash-joined-scopes-over-max.txt): joined with the
 * scopes approved before for the same key it may not fit; then the new
 * scopes alone are remembered, and when even they do not fit, nothing.
 */
static void test_new_approval_over_max(void **state)
{
    (void)state;
    char *a = many_scopes("a", 46), *b = many_scopes("b", 46), *huge = many_scopes("c", 100);
    char *v1 = remember(NULL, "cli-a", a, LATER);
    char *v2 = remember(v1, "cli-z", "mcp:tools", LATER);
    assert_true(strlen(v2) <= CONSENT_COOKIE_MAX);
    char *v3 = remember(v2, "cli-a", b, LATER); /* a and b joined: about 3700 bytes */
    assert_non_null(v3);
    assert_true(strlen(v3) <= CONSENT_COOKIE_MAX);
    struct consent_approvals as;
    consent_cookie_parse(secret, sizeof(secret), v3, NOW, &as);
    assert_true(as.len >= 1);
    char key[CONSENT_KEY_LEN + 1];
    key_of("cli-a", key);
    assert_string_equal(as.items[0].key, key);
    struct mg_string_list want = {0};
    mg_string_list_split(&want, b);
    assert_int_equal(as.items[0].scopes.len, want.len);
    for (size_t i = 0; i < want.len; i++)
        assert_true(mg_string_list_contains(&as.items[0].scopes, want.items[i]));
    mg_string_list_clear(&want);
    consent_approvals_clear(&as);
    /* Scopes that alone pass the limit: no cookie to set. */
    assert_null(remember(v2, "cli-a", huge, LATER));
    assert_null(remember(NULL, "cli-a", huge, LATER));
    free(v1);
    free(v2);
    free(v3);
    free(a);
    free(b);
    free(huge);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_find),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_malformed_entries),
        cmocka_unit_test(test_expiry_order_and_merge),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_new_approval_over_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
