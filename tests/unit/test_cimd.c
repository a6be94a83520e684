/*
 * test_cimd: Client ID Metadata Documents without the network: which
 * client_id URLs are accepted (draft §3), what a document must hold (§4.1),
 * how long one is cached (§4.4), and the SSRF guard's address table
 * (net_sockaddr_special_use).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/net.h"
#include "oauth/cimd.h"

static const char *special(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1)
        in->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1)
        in6->sin6_family = AF_INET6;
    else
        fail_msg("bad test address %s", ip);
    return net_sockaddr_special_use((struct sockaddr *)&ss);
}

static void test_special_use_addresses(void **state)
{
    (void)state;
    static const char *const table[][2] = {
        {"8.8.8.8", NULL},
        {"1.1.1.1", NULL},
        {"172.15.255.255", NULL},
        {"172.32.0.1", NULL},
        {"100.63.255.255", NULL},
        {"100.128.0.1", NULL},
        {"0.0.0.0", "unspecified"},
        {"0.1.2.3", "unspecified"},
        {"10.1.2.3", "private"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"192.168.1.1", "private"},
        {"100.64.0.1", "carrier-grade NAT"},
        {"100.127.255.254", "carrier-grade NAT"},
        {"127.0.0.1", "loopback"},
        {"127.255.255.254", "loopback"},
        {"169.254.169.254", "link-local"}, /* cloud metadata */
        {"192.0.0.8", "special-use"},
        {"192.0.2.1", "documentation"},
        {"198.18.0.1", "benchmarking"},
        {"198.51.100.7", "documentation"},
        {"203.0.113.9", "documentation"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.250", "multicast"},
        {"240.0.0.1", "reserved"},
        {"255.255.255.255", "reserved"},
        {"2606:4700:4700::1111", NULL},
        {"2a00:1450:4001::200e", NULL},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.0.0.1", "private"},
        {"::ffff:8.8.8.8", NULL},
        {"::127.0.0.1", "reserved"}, /* IPv4-compatible, deprecated */
        {"64:ff9b::a9fe:a9fe", "link-local"},
        {"64:ff9b::808:808", NULL},
        {"64:ff9b:1::1", "reserved"},
        {"2002:7f00:1::1", "loopback"}, /* 6to4 of 127.0.0.1 */
        {"2002:0808:0808::1", NULL},
        {"fc00::1", "private"},
        {"fd12:3456::1", "private"},
        {"fe80::1", "link-local"},
        {"febf::1", "link-local"},
        {"fec0::1", "reserved"},
        {"ff02::1", "multicast"},
        {"2001:db8::1", "documentation"},
        {"3fff::1", "documentation"},
        {"2001::1", "special-use"}, /* Teredo */
        {"2001:1ff::1", "special-use"},
        {"2001:200::1", NULL},
        {"100::1", "reserved"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const char *got = special(table[i][0]);
        if (table[i][1] == NULL && got != NULL)
            fail_msg("%s: expected public, got %s", table[i][0], got);
        if (table[i][1] && (got == NULL || strcmp(got, table[i][1]) != 0))
            fail_msg("%s: expected %s, got %s", table[i][0], table[i][1], got ? got : "public");
    }
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_non_null(net_sockaddr_special_use(&un));
}

static void test_url_shapes(void **state)
{
    (void)state;
    static const char *const good[] = {
        "https://claude.ai/oauth/claude-code-client-metadata",
        "https://vscode.dev/oauth/client-metadata.json",
        "https://example.com:8443/a/b",
        "https://[2001:db8::1]/meta",
        "https://example.com/a.b/..c/c..",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *why = oauth_cimd_url_problem(good[i]);
        if (why)
            fail_msg("%s: %s", good[i], why);
        assert_true(oauth_cimd_is_url(good[i]));
    }
    static const char *const bad[] = {
        "http://example.com/a",
        "HTTPS://example.com/a",
        "https://example.com",
        "https://example.com/",
        "https:///a",
        "https://example.com/a/../b",
        "https://example.com/a/./b",
        "https://example.com/a/%2E%2e/b",
        "https://example.com/a/..",
        "https://example.com/a#frag",
        "https://example.com/a?x=1",
        "https://user:pw@example.com/a",
        "https://user@example.com/a",
        "https://example.com/a b",
        "https://example.com/a\\b",
        "https://exa\xc3\xa9mple.com/a",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (oauth_cimd_url_problem(bad[i]) == NULL)
            fail_msg("accepted: %s", bad[i]);
    assert_false(oauth_cimd_is_url("AbCdEf0123456789-_xyz"));
    assert_true(oauth_cimd_is_url("HTTPS://x/y")); /* meant as one, then refused for its shape */
    char *h = oauth_cimd_host("https://claude.ai/oauth/x");
    assert_string_equal(h, "claude.ai");
    free(h);
    h = oauth_cimd_host("https://127.0.0.1:9443/oauth/x");
    assert_string_equal(h, "127.0.0.1:9443");
    free(h);
}

#define URL "https://app.example/client.json"

static struct oauth_client *parse(const char *json, char **why)
{
    return oauth_cimd_parse(URL, json, strlen(json), why);
}

static void test_document_accepted(void **state)
{
    (void)state;
    char *why = NULL;
    struct oauth_client *c =
        parse("{\"client_id\":\"" URL "\",\"client_name\":\"App\","
              "\"redirect_uris\":[\"http://127.0.0.1/callback\",\"https://app.example/cb\"],"
              "\"grant_types\":[\"authorization_code\",\"refresh_token\","
              "\"urn:ietf:params:oauth:grant-type:device_code\",\"refresh_token\"],"
              "\"response_types\":[\"code\"],\"token_endpoint_auth_method\":\"none\","
              "\"logo_uri\":\"https://app.example/logo.png\",\"extra\":{\"x\":1}}",
              &why);
    assert_null(why);
    assert_non_null(c);
    assert_string_equal(c->client_id, URL);
    assert_string_equal(c->client_name, "App");
    assert_int_equal(c->auth, GW_CLIENT_AUTH_NONE);
    assert_null(c->secret_sha256);
    assert_int_equal(c->redirect_uris.len, 2);
    assert_int_equal(c->grant_types.len, 2); /* device_code dropped, duplicates once */
    assert_true(oauth_client_allows_grant(c, "refresh_token"));
    oauth_client_free(c);

    /* No grant_types, no auth method: authorization_code only, public. */
    c = parse("{\"client_id\":\"" URL "\",\"client_name\":\"App\","
              "\"redirect_uris\":[\"http://localhost/cb\"]}",
              &why);
    assert_non_null(c);
    assert_int_equal(c->grant_types.len, 1);
    assert_false(oauth_client_allows_grant(c, "refresh_token"));
    oauth_client_free(c);
}

static void test_document_refused(void **state)
{
    (void)state;
    static const char *const table[][2] = {
        {"not json", "not valid JSON"},
        {"[1]", "not a JSON object"},
        {"{\"client_id\":\"" URL "\",\"client_id\":\"" URL "\"}", "not valid JSON"},
        {"{\"client_name\":\"A\",\"redirect_uris\":[\"http://localhost/cb\"]}", "no client_id"},
        {"{\"client_id\":\"" URL "/\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"]}",
         "is not the URL"},
        {"{\"client_id\":\"HTTPS://app.example/client.json\",\"client_name\":\"A\"}",
         "is not the URL"},
        {"{\"client_id\":\"" URL "\",\"redirect_uris\":[\"http://localhost/cb\"]}",
         "client_name is required"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"a\\u202eb\",\"redirect_uris\":[\"http://"
         "localhost/cb\"]}",
         "client_name"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\"}", "redirect_uris is required"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[]}",
         "redirect_uris is required"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "evil.example/cb\"]}",
         "redirect_uris[0]: http redirect URIs are allowed only on loopback"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[1]}", "only strings"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"],\"token_endpoint_auth_method\":\"client_secret_post\"}",
         "shared secret"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"],\"token_endpoint_auth_method\":\"client_secret_jwt\"}",
         "shared secret"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"],\"token_endpoint_auth_method\":\"private_key_jwt\"}",
         "private_key_jwt\" is not supported"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"],\"token_endpoint_auth_method\":\"tls_client_auth\"}",
         "is not supported"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"],\"client_secret\":\"s\"}",
         "client_secret"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"],\"grant_types\":[\"client_credentials\"]}",
         "must include authorization_code"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"],\"grant_types\":\"authorization_code\"}",
         "array of strings"},
        {"{\"client_id\":\"" URL "\",\"client_name\":\"A\",\"redirect_uris\":[\"http://"
         "localhost/cb\"],\"response_types\":[\"token\"]}",
         "response_types must include code"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        char *why = NULL;
        struct oauth_client *c = parse(table[i][0], &why);
        if (c != NULL)
            fail_msg("accepted: %s", table[i][0]);
        if (why == NULL || strstr(why, table[i][1]) == NULL)
            fail_msg("%s: expected \"%s\" in \"%s\"", table[i][0], table[i][1],
                     why ? why : "(null)");
        free(why);
    }
}

static void test_cache_ttl(void **state)
{
    (void)state;
    const uint64_t min = OAUTH_CIMD_TTL_MIN_MS, max = OAUTH_CIMD_TTL_MAX_MS;
    assert_int_equal(oauth_cimd_cache_ttl_ms(NULL), OAUTH_CIMD_TTL_DEFAULT_MS);
    assert_int_equal(oauth_cimd_cache_ttl_ms("public"), OAUTH_CIMD_TTL_DEFAULT_MS);
    assert_int_equal(oauth_cimd_cache_ttl_ms("max-age=600"), 600000);
    assert_int_equal(oauth_cimd_cache_ttl_ms("public, max-age=7200"), 7200000);
    assert_int_equal(oauth_cimd_cache_ttl_ms("max-age=\"120\""), 120000);
    assert_int_equal(oauth_cimd_cache_ttl_ms("max-age=5"), min);
    assert_int_equal(oauth_cimd_cache_ttl_ms("max-age=0"), min);
    assert_int_equal(oauth_cimd_cache_ttl_ms("max-age=999999999"), max);
    assert_int_equal(oauth_cimd_cache_ttl_ms("max-age=99999999999999999999"), max);
    assert_int_equal(oauth_cimd_cache_ttl_ms("no-store"), min);
    assert_int_equal(oauth_cimd_cache_ttl_ms("max-age=600, no-cache"), min);
    assert_int_equal(oauth_cimd_cache_ttl_ms("s-maxage=10, max-age=300"), 300000);
    assert_int_equal(oauth_cimd_cache_ttl_ms("x-max-age=10"), OAUTH_CIMD_TTL_DEFAULT_MS);
    assert_int_equal(oauth_cimd_cache_ttl_ms("max-age="), OAUTH_CIMD_TTL_DEFAULT_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_special_use_addresses),
        cmocka_unit_test(test_url_shapes),
        cmocka_unit_test(test_document_accepted),
        cmocka_unit_test(test_document_refused),
        cmocka_unit_test(test_cache_ttl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
