/*
 * test_oauth_primitives: base64url, crypto wrappers, token minting and
 * hashing, props encryption and key wrapping, PKCE, redirect-URI rules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64url.h"
#include "common/net.h"
#include "common/crypto.h"
#include "oauth/pkce.h"
#include "oauth/redirect_uri.h"
#include "oauth/tokens.h"

static const unsigned char secret[48] = "0123456789abcdef0123456789abcdef0123456789abcde";

static void test_b64url_roundtrip_and_strictness(void **state)
{
    (void)state;
    const char *vectors[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char *enc = b64url_encode_new(vectors[i][0], strlen(vectors[i][0]));
        assert_string_equal(enc, vectors[i][1]);
        size_t n = 0;
        unsigned char *dec = b64url_decode_new(enc, strlen(enc), &n);
        assert_non_null(dec);
        assert_int_equal(n, strlen(vectors[i][0]));
        assert_memory_equal(dec, vectors[i][0], n);
        free(dec);
        free(enc);
    }
    unsigned char bytes[] = {0xfb, 0xff, 0xfe};
    char *enc = b64url_encode_new(bytes, 3);
    assert_string_equal(enc, "-__-");
    free(enc);
    const char *bad[] = {"Zg==", "Z", "Zm9v+", "Zm9v/", "Zm 9v", "Zh", "Zm9=", "Zm9vY!"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n;
        assert_null(b64url_decode_new(bad[i], strlen(bad[i]), &n));
    }
}

static void test_crypto_seal_open_and_tamper(void **state)
{
    (void)state;
    unsigned char key[32], other[32];
    memset(key, 7, sizeof(key));
    memset(other, 8, sizeof(other));
    const char msg[] = "the identity of alice";
    unsigned char sealed[CRYPTO_SEALED_LEN(sizeof(msg))];
    unsigned char plain[sizeof(msg)];
    assert_int_equal(crypto_seal(key, "aad", 3, msg, sizeof(msg), sealed), 0);
    assert_int_equal(crypto_open(key, "aad", 3, sealed, sizeof(sealed), plain), 0);
    assert_memory_equal(plain, msg, sizeof(msg));
    assert_int_equal(crypto_open(other, "aad", 3, sealed, sizeof(sealed), plain), -EBADMSG);
    assert_int_equal(crypto_open(key, "aaX", 3, sealed, sizeof(sealed), plain), -EBADMSG);
    sealed[20] ^= 1;
    assert_int_equal(crypto_open(key, "aad", 3, sealed, sizeof(sealed), plain), -EBADMSG);
    assert_int_equal(crypto_open(key, "aad", 3, sealed, 10, plain), -EBADMSG);
    /* Two seals of the same text differ (fresh nonce). */
    unsigned char s1[CRYPTO_SEALED_LEN(4)], s2[CRYPTO_SEALED_LEN(4)];
    crypto_seal(key, NULL, 0, "abcd", 4, s1);
    crypto_seal(key, NULL, 0, "abcd", 4, s2);
    assert_memory_not_equal(s1, s2, sizeof(s1));
}

static void test_crypto_hkdf_rfc5869_case1(void **state)
{
    (void)state;
    unsigned char ikm[22], salt[13], out[42];
    memset(ikm, 0x0b, sizeof(ikm));
    for (int i = 0; i < 13; i++)
        salt[i] = (unsigned char)i;
    /* info 0xf0..0xf9 as a string */
    char info[11];
    for (int i = 0; i < 10; i++)
        info[i] = (char)(0xf0 + i);
    info[10] = '\0';
    assert_int_equal(crypto_hkdf(ikm, sizeof(ikm), salt, sizeof(salt), info, out, sizeof(out)), 0);
    static const unsigned char okm[42] = {
        0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36,
        0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56,
        0xec, 0xc4, 0xc5, 0xbf, 0x34, 0x00, 0x72, 0x08, 0xd5, 0xb8, 0x87, 0x18, 0x58, 0x65};
    assert_memory_equal(out, okm, sizeof(okm));
}

static void test_crypto_equal(void **state)
{
    (void)state;
    assert_true(crypto_str_equal("abc", "abc"));
    assert_false(crypto_str_equal("abc", "abd"));
    assert_false(crypto_str_equal("abc", "abcd"));
    assert_false(crypto_str_equal("", "a"));
    assert_true(crypto_str_equal("", ""));
}

static void test_token_mint_shape_and_hash(void **state)
{
    (void)state;
    char *at = oauth_token_mint(OAUTH_ACCESS_TOKEN);
    char *rt = oauth_token_mint(OAUTH_REFRESH_TOKEN);
    char *at2 = oauth_token_mint(OAUTH_ACCESS_TOKEN);
    assert_int_equal(strlen(at), OAUTH_TOKEN_LEN);
    assert_memory_equal(at, "mcpgate_at_", 11);
    assert_memory_equal(rt, "mcpgate_rt_", 11);
    assert_string_not_equal(at, at2);
    assert_true(oauth_token_has_shape(at, OAUTH_ACCESS_TOKEN));
    assert_false(oauth_token_has_shape(at, OAUTH_REFRESH_TOKEN));
    assert_false(oauth_token_has_shape(rt, OAUTH_ACCESS_TOKEN));
    assert_false(oauth_token_has_shape("mcpgate_at_short", OAUTH_ACCESS_TOKEN));
    char bad[OAUTH_TOKEN_LEN + 1];
    memcpy(bad, at, sizeof(bad));
    bad[20] = '+';
    assert_false(oauth_token_has_shape(bad, OAUTH_ACCESS_TOKEN));
    char h1[65], h2[65];
    oauth_token_hash(at, h1);
    oauth_token_hash(at, h2);
    assert_string_equal(h1, h2);
    assert_int_equal(strlen(h1), 64);
    assert_null(strstr(h1, at + 11));
    /* known vector: sha256("abc") */
    oauth_token_hash("abc", h1);
    assert_string_equal(h1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(at);
    free(rt);
    free(at2);
}

static void test_grant_key_wrap_and_props(void **state)
{
    (void)state;
    unsigned char key[32], back[32];
    oauth_grant_key_new(key);
    char *token = oauth_token_mint(OAUTH_ACCESS_TOKEN);
    char *other = oauth_token_mint(OAUTH_ACCESS_TOKEN);
    char *wrapped = NULL;
    assert_int_equal(oauth_grant_key_wrap(secret, sizeof(secret), token, key, &wrapped), 0);
    assert_int_equal(oauth_grant_key_unwrap(secret, sizeof(secret), token, wrapped, back), 0);
    assert_memory_equal(key, back, 32);
    /* The wrong token, or the wrong server secret, cannot unwrap. */
    assert_int_equal(oauth_grant_key_unwrap(secret, sizeof(secret), other, wrapped, back),
                     -EBADMSG);
    unsigned char other_secret[48];
    memset(other_secret, 1, sizeof(other_secret));
    assert_int_equal(
        oauth_grant_key_unwrap(other_secret, sizeof(other_secret), token, wrapped, back), -EBADMSG);
    assert_int_equal(oauth_grant_key_unwrap(secret, sizeof(secret), token, "garbage", back),
                     -EBADMSG);

    const char *props = "{\"sub\":\"alice\",\"roles\":[\"manager\"]}";
    char *sealed = NULL, *opened = NULL;
    assert_int_equal(oauth_props_seal(key, "grant-1", props, &sealed), 0);
    assert_null(strstr(sealed, "alice"));
    assert_int_equal(oauth_props_open(key, "grant-1", sealed, &opened), 0);
    assert_string_equal(opened, props);
    free(opened);
    /* Bound to the grant id: a record copied under another id does not open. */
    assert_int_equal(oauth_props_open(key, "grant-2", sealed, &opened), -EBADMSG);
    free(sealed);
    free(wrapped);
    free(token);
    free(other);
}

static void test_mac(void **state)
{
    (void)state;
    char *mac = oauth_mac_new(secret, sizeof(secret), "consent", "browser|client");
    assert_true(oauth_mac_verify(secret, sizeof(secret), "consent", "browser|client", mac));
    assert_false(oauth_mac_verify(secret, sizeof(secret), "csrf", "browser|client", mac));
    assert_false(oauth_mac_verify(secret, sizeof(secret), "consent", "browser|clienX", mac));
    assert_false(oauth_mac_verify(secret, sizeof(secret), "consent", "browser|client", "x"));
    free(mac);
}

static void test_pkce(void **state)
{
    (void)state;
    /* RFC 7636 Appendix B */
    assert_true(oauth_pkce_verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                                  "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    assert_false(oauth_pkce_verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
                                   "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    /* plain method: the challenge equal to the verifier is refused */
    assert_false(oauth_pkce_verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                                   "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
    char v42[43], v128[129], v129[130];
    memset(v42, 'a', 42);
    v42[42] = '\0';
    memset(v128, 'b', 128);
    v128[128] = '\0';
    memset(v129, 'c', 129);
    v129[129] = '\0';
    assert_false(oauth_pkce_verifier_is_valid(v42));
    assert_true(oauth_pkce_verifier_is_valid(v128));
    assert_false(oauth_pkce_verifier_is_valid(v129));
    assert_true(oauth_pkce_verifier_is_valid("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-._~"));
    assert_false(oauth_pkce_verifier_is_valid("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-._+"));
    assert_false(oauth_pkce_verifier_is_valid("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-._ "));
    assert_false(oauth_pkce_challenge_is_valid("short"));
    char verifier[44], challenge[44];
    oauth_pkce_new(verifier, challenge);
    assert_true(oauth_pkce_verify(verifier, challenge));
}

struct redirect_case {
    const char *uri;
    bool ok;
};

static const struct redirect_case redirect_cases[] = {
    {"https://app.example.com/callback", true},
    {"https://app.example.com:8443/cb?x=1", true},
    {"https://claude.ai/api/mcp/auth_callback", true},
    {"http://localhost:3000/callback", true},
    {"http://localhost/callback", true},
    {"http://127.0.0.1:33418/", true},
    {"http://127.0.0.1/cb", true},
    {"http://127.1.2.3:9/cb", true},
    {"http://[::1]:8080/cb", true},
    {"HTTP://localhost/cb", true},
    {"cursor://anysphere.cursor-retrieval/oauth/user-mcp/callback", true},
    {"vscode://vscode.github-authentication/did-authenticate", true},
    {"com.example.app:/oauth2redirect", true},
    {"com.example.app://callback", true},
    {"io.modelcontextprotocol.inspector:/cb", true},
    {"windsurf://codeium.windsurf/cb", true},
    {"claude://oauth/callback", true},
    {"http://example.com/callback", false},
    {"http://10.0.0.5/cb", false},
    {"http://192.168.1.1:8080/cb", false},
    {"http://localhost.evil.com/cb", false},
    {"http://127.0.0.1.nip.io/cb", false},
    {"javascript:alert(1)", false},
    {"JavaScript:alert(1)", false},
    {"data:text/html,<script>alert(1)</script>", false},
    {"file:///etc/passwd", false},
    {"vbscript:msgbox(1)", false},
    {"about:blank", false},
    {"https://app.example.com/cb#frag", false},
    {"https://user:pass@app.example.com/cb", false},
    {"https://user@app.example.com/cb", false},
    {"https://app.example.com/c b", false},
    {"https://app.example.com/cb\n", false},
    {"https://app.example.com/\tcb", false},
    {"", false},
    {"/relative/callback", false},
    {"callback", false},
    {"myapp://callback", false},
    {"myapp:/callback", false},
    {"https:///nohost", false},
    {"https://", false},
    {"ftp://files.example.com/cb", false},
    {"wss://socket.example.com/cb", false},
    {"com.example.app:", false},
    {"https://app.example.com\\@evil.com/cb", false},
};

static void test_redirect_uri_table(void **state)
{
    (void)state;
    size_t n = sizeof(redirect_cases) / sizeof(redirect_cases[0]);
    assert_true(n >= 40);
    for (size_t i = 0; i < n; i++) {
        const char *why = oauth_redirect_uri_check(redirect_cases[i].uri);
        if ((why == NULL) != redirect_cases[i].ok)
            fail_msg("redirect_uri \"%s\": expected %s, got %s", redirect_cases[i].uri,
                     redirect_cases[i].ok ? "accepted" : "refused", why ? why : "accepted");
    }
    char long_uri[2100];
    memset(long_uri, 'a', sizeof(long_uri));
    memcpy(long_uri, "https://x.example/", 18);
    long_uri[sizeof(long_uri) - 1] = '\0';
    assert_non_null(oauth_redirect_uri_check(long_uri));
}

static void test_redirect_uri_matching(void **state)
{
    (void)state;
    assert_true(oauth_redirect_uri_matches("https://a.example/cb", "https://a.example/cb"));
    assert_false(oauth_redirect_uri_matches("https://a.example/cb", "https://a.example/cb/"));
    assert_false(oauth_redirect_uri_matches("https://a.example/cb", "https://a.example/CB"));
    assert_false(oauth_redirect_uri_matches("https://a.example/cb", "https://a.example:444/cb"));
    assert_false(oauth_redirect_uri_matches("https://a.example/cb", "https://b.example/cb"));
    assert_false(oauth_redirect_uri_matches("https://a.example/cb", "https://a.example/cb?x"));
    /* RFC 8252 §7.3: loopback ports are ephemeral */
    assert_true(oauth_redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:53122/cb"));
    assert_true(oauth_redirect_uri_matches("http://127.0.0.1:3000/cb", "http://127.0.0.1:4000/cb"));
    assert_true(oauth_redirect_uri_matches("http://localhost:3000/cb", "http://localhost:9/cb"));
    assert_true(oauth_redirect_uri_matches("http://[::1]/cb", "http://[::1]:8080/cb"));
    assert_false(oauth_redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:5/other"));
    assert_false(oauth_redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.2:5/cb"));
    assert_false(oauth_redirect_uri_matches("http://127.0.0.1/cb", "https://127.0.0.1:5/cb"));
    assert_false(oauth_redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:5/cb#x"));
    assert_false(oauth_redirect_uri_matches("http://localhost/cb", "http://u@localhost:5/cb"));
    assert_false(oauth_redirect_uri_matches("https://a.example/cb", "https://a.example:5/cb"));
    assert_true(oauth_redirect_uri_matches("cursor://x.y/cb", "cursor://x.y/cb"));
    assert_false(oauth_redirect_uri_matches("cursor://x.y/cb", "cursor://x.y:5/cb"));
}

static void test_redirect_display_host(void **state)
{
    (void)state;
    char *h = oauth_redirect_uri_display_host("https://claude.ai/api/mcp/auth_callback");
    assert_string_equal(h, "claude.ai");
    free(h);
    h = oauth_redirect_uri_display_host("http://127.0.0.1:33418/cb");
    assert_string_equal(h, "127.0.0.1:33418");
    free(h);
    h = oauth_redirect_uri_display_host("com.example.app:/cb");
    assert_string_equal(h, "com.example.app: (app)");
    free(h);
    assert_true(net_host_is_loopback("127.0.0.1"));
    assert_true(net_host_is_loopback("[::1]"));
    assert_true(net_host_is_loopback("LOCALHOST"));
    assert_false(net_host_is_loopback("128.0.0.1"));
    assert_false(net_host_is_loopback("localhost.example"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_roundtrip_and_strictness),
        cmocka_unit_test(test_crypto_seal_open_and_tamper),
        cmocka_unit_test(test_crypto_hkdf_rfc5869_case1),
        cmocka_unit_test(test_crypto_equal),
        cmocka_unit_test(test_token_mint_shape_and_hash),
        cmocka_unit_test(test_grant_key_wrap_and_props),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_pkce),
        cmocka_unit_test(test_redirect_uri_table),
        cmocka_unit_test(test_redirect_uri_matching),
        cmocka_unit_test(test_redirect_display_host),
    };
    return cmocka_run_group_tests_name("oauth_primitives", tests, NULL, NULL);
}
