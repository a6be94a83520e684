/*
 * test_idp: ID-token verification, JWKS loading, claim mapping and URL
 * building of oauth/idp.c, without network. The .c is included to reach its
 * static helpers (house style); the loopback end-to-end flows are in
 * test_idp_flow.c. Keys: tests/fixtures/idp (test-only, see its README).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "oauth/idp.c"

#include <limits.h>
#include <unistd.h>

#include "http/http.h"
#include "test_fixture_util.h"

#define ISSUER "https://idp.example.com/t/acme/oauth2/token"
#define CLIENT "mcpgate-client"
#define NONCE "n-0123456789"
#define NOW ((int64_t)1700000000)

/* ---- fixture ----------------------------------------------------------- */

static char *scope_items[] = {"openid", "profile", "email", "roles"};

struct fixture {
    struct gw_idp_config cfg;
    struct event_base *base;
    struct httpc *httpc;
    struct idp_client *idp;
    char *rsa1, *rsa1_pub, *rsa2, *ec1, *ec1_pub; /* PEM text */
    char *rsa1_jwk, *rsa2_jwk, *ec1_jwk;          /* JWK JSON text */
};

static struct fixture fx;

static char *jwks_of(const char *a, const char *b)
{
    return b ? xasprintf("{\"keys\":[%s,%s]}", a, b) : xasprintf("{\"keys\":[%s]}", a);
}

static int setup(void **state)
{
    (void)state;
    gw_log_set_level(GW_LOG_ERROR);
    memset(&fx, 0, sizeof(fx));
    fx.cfg = (struct gw_idp_config){
        .configured = true,
        .preset = GW_IDP_ASGARDEO,
        .issuer = ISSUER,
        .client_id = CLIENT,
        .client_secret = "s3cret",
        .token_auth = GW_TOKEN_AUTH_CLIENT_SECRET_BASIC,
        .scopes = {scope_items, 4},
        .claims = {"sub", "username", "email", "name", "roles", "groups"},
        .leeway_ms = 60000,
        .discovery_refresh_ms = 3600000,
        .timeout_ms = 2000,
        .use_userinfo = true,
    };
    fx.base = event_base_new();
    char *err = NULL;
    fx.httpc = httpc_new(fx.base, &err);
    assert_non_null(fx.httpc);
    fx.idp = idp_client_new(fx.base, fx.httpc, &fx.cfg, &err);
    assert_non_null(fx.idp);
    fx.rsa1 = fixture_read("rsa1.pem");
    fx.rsa1_pub = fixture_read("rsa1.pub.pem");
    fx.rsa2 = fixture_read("rsa2.pem");
    fx.ec1 = fixture_read("ec1.pem");
    fx.ec1_pub = fixture_read("ec1.pub.pem");
    fx.rsa1_jwk = fixture_read("rsa1.jwk.json");
    fx.rsa2_jwk = fixture_read("rsa2.jwk.json");
    fx.ec1_jwk = fixture_read("ec1.jwk.json");
    char *jwks = jwks_of(fx.rsa1_jwk, fx.ec1_jwk);
    assert_int_equal(idp_load_jwks(fx.idp, jwks, &err), 0);
    free(jwks);
    assert_int_equal(fx.idp->n_keys, 2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    idp_client_free(fx.idp);
    httpc_free(fx.httpc);
    event_base_free(fx.base);
    free(fx.rsa1);
    free(fx.rsa1_pub);
    free(fx.rsa2);
    free(fx.ec1);
    free(fx.ec1_pub);
    free(fx.rsa1_jwk);
    free(fx.rsa2_jwk);
    free(fx.ec1_jwk);
    return 0;
}

/* ---- token builders ---------------------------------------------------- */

/* The claims of a good ID token at NOW; tests change them before signing. Owned. */
static json_t *good_claims(void)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:[s,s]}", "iss", ISSUER, "sub",
                     "user-1", "aud", CLIENT, "exp", (json_int_t)(NOW + 300), "iat",
                     (json_int_t)NOW, "nonce", NONCE, "username", "alice", "email",
                     "alice@example.com", "roles", "manager", "staff");
}

/* Signs CLAIMS (stolen) with libjwt; KID NULL leaves it out. free() the result. */
static char *sign(jwt_alg_t alg, const char *key, const char *kid, json_t *claims)
{
    char *payload = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, payload), 0);
    if (kid)
        assert_int_equal(jwt_add_header(j, "kid", kid), 0);
    assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *tok = jwt_encode_str(j);
    assert_non_null(tok);
    jwt_free(j);
    free(payload);
    return tok;
}

static char *rs256(json_t *claims)
{
    return sign(JWT_ALG_RS256, fx.rsa1, "rsa1", claims);
}

static char *b64_text(const char *s)
{
    return b64url_encode_new(s, strlen(s));
}

/* header.payload.sig from raw JSON texts; SIG is already base64url. */
static char *raw_token(const char *header, const char *payload, const char *sig)
{
    char *h = b64_text(header), *p = b64_text(payload);
    char *tok = xasprintf("%s.%s.%s", h, p, sig);
    free(h);
    free(p);
    return tok;
}

/* HS256 by hand, so the header can say anything (duplicate keys, etc.). */
static char *hs256_token(const char *header, const char *payload, const char *key)
{
    char *h = b64_text(header), *p = b64_text(payload);
    char *input = xasprintf("%s.%s", h, p);
    unsigned char mac[CRYPTO_SHA256_LEN];
    crypto_hmac_sha256(key, strlen(key), input, strlen(input), mac);
    char *sig = b64url_encode_new(mac, sizeof(mac));
    char *tok = xasprintf("%s.%s", input, sig);
    free(h);
    free(p);
    free(input);
    free(sig);
    return tok;
}

static char *good_payload_text(void)
{
    json_t *c = good_claims();
    char *s = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    return s;
}

/* Verifies TOK (freed) at NOW with NONCE; returns rc, *why_out the reason. */
static int verify_at(char *tok, const char *nonce, int64_t now, const char **why_out)
{
    char *claims = NULL;
    const char *why = NULL;
    int rc = idp_verify_id_token(fx.idp, tok, nonce, now, &claims, &why);
    if (rc == 0) {
        assert_non_null(claims);
        assert_null(why);
    } else {
        assert_null(claims);
        assert_non_null(why);
    }
    free(claims);
    free(tok);
    if (why_out)
        *why_out = why;
    return rc;
}

static void expect_ok(char *tok)
{
    const char *why = NULL;
    int rc = verify_at(tok, NONCE, NOW, &why);
    if (rc != 0)
        fail_msg("expected a valid token, got %d: %s", rc, why);
}

static void expect_reject(char *tok, const char *reason)
{
    const char *why = NULL;
    assert_int_equal(verify_at(tok, NONCE, NOW, &why), -EBADMSG);
    assert_string_equal(why, reason);
}

/* ---- valid tokens ------------------------------------------------------- */

static void test_valid_rs256(void **state)
{
    (void)state;
    char *claims = NULL;
    const char *why = NULL;
    char *tok = rs256(good_claims());
    assert_int_equal(idp_verify_id_token(fx.idp, tok, NONCE, NOW, &claims, &why), 0);
    json_t *c = json_loads(claims, 0, NULL);
    assert_string_equal(obj_str(c, "sub"), "user-1");
    assert_string_equal(obj_str(c, "username"), "alice");
    json_decref(c);
    free(claims);
    free(tok);
}

static void test_valid_es256(void **state)
{
    (void)state;
    expect_ok(sign(JWT_ALG_ES256, fx.ec1, "ec1", good_claims()));
}

/* Found by fuzz_idtoken: libjwt accepts a signature whose last base64url
 * character carries stray low bits (one signature, several spellings). */
static void test_noncanonical_signature_rejected(void **state)
{
    (void)state;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *claims = NULL;
    const char *why = NULL;
    char *tok = sign(JWT_ALG_ES256, fx.ec1, "ec1", good_claims());
    assert_int_equal(idp_verify_id_token(fx.idp, tok, NONCE, NOW, &claims, &why), 0);
    free(claims);
    claims = NULL;
    size_t n = strlen(tok);
    const char *at = strchr(alphabet, tok[n - 1]);
    assert_non_null(at);
    tok[n - 1] = alphabet[(at - alphabet) ^ 1]; /* same decoded bytes, other spelling */
    assert_int_equal(idp_verify_id_token(fx.idp, tok, NONCE, NOW, &claims, &why), -EBADMSG);
    assert_null(claims);
    free(tok);
}

static void test_real_numeric_dates_ok(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "exp", json_real((double)NOW + 300.5));
    json_object_set_new(c, "iat", json_real((double)NOW - 0.25));
    expect_ok(rs256(c));
}

/* ---- algorithm attacks (libjwt quirks 1, 2, 3, 5) ----------------------- */

/* Quirk 1: libjwt verifies HS256 with our RSA public key PEM as the HMAC secret. */
static void test_alg_confusion_hs256_rejected(void **state)
{
    (void)state;
    char *tok = sign(JWT_ALG_HS256, fx.rsa1_pub, "rsa1", good_claims());
    /* The quirk is real: libjwt alone accepts this forgery. */
    jwt_t *j = NULL;
    assert_int_equal(
        jwt_decode(&j, tok, (const unsigned char *)fx.rsa1_pub, (int)strlen(fx.rsa1_pub)), 0);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_HS256);
    jwt_free(j);
    /* The same forgery with the exact PEM the cache holds for kid rsa1. */
    const struct idp_key *key = &fx.idp->keys[0];
    assert_string_equal(key->kid, "rsa1");
    char *payload = good_payload_text();
    char *tok2 = hs256_token("{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", payload, key->pem);
    j = NULL;
    assert_int_equal(jwt_decode(&j, tok2, (const unsigned char *)key->pem, (int)key->pem_len), 0);
    jwt_free(j);
    free(payload);
    expect_reject(tok, WHY_ALG_HMAC);
    expect_reject(tok2, WHY_ALG_HMAC);
}

/* Quirk 2: libjwt accepts alg none when no key is given. */
static void test_alg_none_rejected(void **state)
{
    (void)state;
    char *payload = good_payload_text();
    char *tok = raw_token("{\"alg\":\"none\",\"kid\":\"rsa1\"}", payload, "");
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, tok, NULL, 0), 0); /* the quirk */
    assert_int_equal(jwt_get_alg(j), JWT_ALG_NONE);
    jwt_free(j);
    /* No signature segment: malformed before the alg is even looked at. */
    expect_reject(tok, WHY_MALFORMED);
    /* With a dummy signature the header check names the reason. */
    expect_reject(raw_token("{\"alg\":\"none\",\"kid\":\"rsa1\"}", payload, "AAAA"), WHY_ALG_NONE);
    expect_reject(raw_token("{\"alg\":\"None\",\"kid\":\"rsa1\"}", payload, "AAAA"), WHY_ALG_NONE);
    free(payload);
}

/* Quirk 3: libjwt's json_loads() keeps the last duplicate; we reject duplicates. */
static void test_duplicate_header_key_rejected(void **state)
{
    (void)state;
    char *payload = good_payload_text();
    const char *hdr = "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"alg\":\"HS256\"}";
    char *tok = hs256_token(hdr, payload, fx.idp->keys[0].pem);
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, tok, (const unsigned char *)fx.idp->keys[0].pem,
                                (int)fx.idp->keys[0].pem_len),
                     0); /* the quirk: HS256 wins */
    jwt_free(j);
    expect_reject(tok, WHY_BAD_HEADER);
    /* Duplicate claims in the payload are refused the same way. */
    char *dup = xasprintf("{\"iss\":\"%s\",%s", "https://evil.example", payload + 1);
    expect_reject(raw_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", dup, "AAAA"), WHY_BAD_PAYLOAD);
    free(dup);
    free(payload);
}

/* Quirk 5: libjwt 1.10 has no PS256; say so instead of guessing. */
static void test_ps256_refused_clearly(void **state)
{
    (void)state;
    assert_int_equal(jwt_str_alg("PS256"), JWT_ALG_INVAL); /* the quirk */
    char *payload = good_payload_text();
    expect_reject(raw_token("{\"alg\":\"PS256\",\"kid\":\"rsa1\"}", payload, "AAAA"),
                  WHY_ALG_PS256);
    free(payload);
    /* A PS256 JWK is skipped when the key set is loaded, with the same reason. */
    json_t *jwk = json_loads(fx.rsa1_jwk, 0, NULL);
    json_object_set_new(jwk, "alg", json_string("PS256"));
    struct idp_key key;
    const char *why = NULL;
    assert_int_equal(key_from_jwk(jwk, &key, &why), -EINVAL);
    assert_string_equal(why, WHY_ALG_PS256);
    json_decref(jwk);
}

static void test_other_algs_rejected(void **state)
{
    (void)state;
    char *payload = good_payload_text();
    expect_reject(raw_token("{\"alg\":\"RS512\",\"kid\":\"rsa1\"}", payload, "AAAA"),
                  WHY_ALG_OTHER);
    expect_reject(raw_token("{\"alg\":\"HS512\",\"kid\":\"rsa1\"}", payload, "AAAA"), WHY_ALG_HMAC);
    expect_reject(raw_token("{\"kid\":\"rsa1\"}", payload, "AAAA"), WHY_NO_ALG);
    expect_reject(raw_token("{\"alg\":256,\"kid\":\"rsa1\"}", payload, "AAAA"), WHY_NO_ALG);
    expect_reject(raw_token("{\"alg\":\"RS256\",\"kid\":7}", payload, "AAAA"), WHY_KID_TYPE);
    expect_reject(
        raw_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"]}", payload, "AAAA"),
        WHY_CRIT);
    free(payload);
}

static void test_typ_access_token_rejected(void **state)
{
    (void)state;
    char *payload = good_payload_text();
    expect_reject(
        raw_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"at+jwt\"}", payload, "AAAA"),
        WHY_TYP_AT);
    free(payload);
}

static void test_kid_of_ec_key_with_rs256_rejected(void **state)
{
    (void)state;
    expect_reject(sign(JWT_ALG_RS256, fx.rsa1, "ec1", good_claims()), WHY_KEY_ALG);
    /* And the reverse: an ES256 token naming the RSA key. */
    expect_reject(sign(JWT_ALG_ES256, fx.ec1, "rsa1", good_claims()), WHY_KEY_ALG);
}

static void test_signature_by_other_key_rejected(void **state)
{
    (void)state;
    expect_reject(sign(JWT_ALG_RS256, fx.rsa2, "rsa1", good_claims()), WHY_SIGNATURE);
    /* A valid token whose payload was edited (sub changed), signature kept. */
    char *tok = rs256(good_claims());
    char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    json_t *c = good_claims();
    json_object_set_new(c, "sub", json_string("admin"));
    char *payload = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    char *p64 = b64_text(payload);
    expect_reject(xasprintf("%.*s.%s%s", (int)(dot1 - tok), tok, p64, dot2), WHY_SIGNATURE);
    free(p64);
    free(payload);
    free(tok);
}

static void test_unknown_kid_is_keyrejected(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(
        verify_at(sign(JWT_ALG_RS256, fx.rsa2, "rsa2", good_claims()), NONCE, NOW, &why),
        -EKEYREJECTED);
    assert_string_equal(why, WHY_UNKNOWN_KID);
    /* After loading the key, the same token verifies. */
    char *jwks = jwks_of(fx.rsa1_jwk, fx.rsa2_jwk);
    assert_int_equal(idp_load_jwks(fx.idp, jwks, NULL), 0);
    free(jwks);
    expect_ok(sign(JWT_ALG_RS256, fx.rsa2, "rsa2", good_claims()));
}

static void test_missing_kid(void **state)
{
    (void)state;
    /* Two keys in the set: a token without kid is ambiguous. */
    expect_reject(sign(JWT_ALG_RS256, fx.rsa1, NULL, good_claims()), WHY_NO_KID);
    /* One key: it may be used. */
    char *jwks = jwks_of(fx.rsa1_jwk, NULL);
    assert_int_equal(idp_load_jwks(fx.idp, jwks, NULL), 0);
    free(jwks);
    expect_ok(sign(JWT_ALG_RS256, fx.rsa1, NULL, good_claims()));
    expect_reject(sign(JWT_ALG_ES256, fx.ec1, NULL, good_claims()), WHY_KEY_ALG);
}

/* ---- malformed tokens (quirk 4: strict base64url before libjwt) -------- */

static void test_garbage_tokens_rejected(void **state)
{
    (void)state;
    char *good = rs256(good_claims());
    char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
    const char *bad[] = {
        "",          ".",       "..",           "...",          "abc",
        "abc.def",   "a.b.c.d", "!!!.e30.AAAA", "e30.!!!.AAAA", "e30.e30.AA*A",
        "e30.e30.A", /* 4k+1 chars: no byte count encodes to it */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        assert_int_equal(verify_at(xstrdup(bad[i]), NONCE, NOW, &why), -EBADMSG);
        assert_non_null(why);
    }
    /* One part, two parts of a real token. */
    expect_reject(xstrndup(good, (size_t)(dot1 - good)), WHY_MALFORMED);
    expect_reject(xstrndup(good, (size_t)(dot2 - good)), WHY_MALFORMED);
    expect_reject(xasprintf("%s.", good), WHY_MALFORMED);
    /* libb64 would skip a stray character; we do not. */
    char *stray = xasprintf("%.*s=%s", (int)(dot1 - good), good, dot1);
    expect_reject(stray, WHY_BAD_HEADER);
    /* Non-JSON header, JSON header that is not an object, non-JSON payload. */
    char *hello = b64_text("hello");
    expect_reject(xasprintf("%s%s", hello, dot1), WHY_BAD_HEADER);
    char *arr = b64_text("[\"RS256\"]");
    expect_reject(xasprintf("%s%s", arr, dot1), WHY_BAD_HEADER);
    char *hdr = xstrndup(good, (size_t)(dot1 - good));
    expect_reject(xasprintf("%s.%s%s", hdr, hello, dot2), WHY_BAD_PAYLOAD);
    /* Not NUL-safe input: NULL token. */
    const char *why = NULL;
    char *claims = NULL;
    assert_int_equal(idp_verify_id_token(fx.idp, NULL, NONCE, NOW, &claims, &why), -EBADMSG);
    free(hello);
    free(arr);
    free(hdr);
    free(good);
}

static void test_oversized_token_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    char *big = xmalloc(IDP_MAX_JWT_BYTES);
    memset(big, 'x', IDP_MAX_JWT_BYTES - 1);
    big[IDP_MAX_JWT_BYTES - 1] = '\0';
    json_object_set_new(c, "pad", json_string(big));
    free(big);
    expect_reject(rs256(c), WHY_MALFORMED);
}

/* ---- claims ------------------------------------------------------------- */

static void test_wrong_issuer(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "iss", json_string("https://evil.example/t/acme/oauth2/token"));
    expect_reject(rs256(c), WHY_ISS);
    c = good_claims();
    json_object_set_new(c, "iss", json_string(ISSUER "/")); /* byte-exact: no slash folding */
    expect_reject(rs256(c), WHY_ISS);
    c = good_claims();
    json_object_del(c, "iss");
    expect_reject(rs256(c), WHY_ISS);
}

static void test_sub_required(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "sub", json_string(""));
    expect_reject(rs256(c), WHY_SUB);
}

static void test_audience(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "aud", json_string("another-client"));
    expect_reject(rs256(c), WHY_AUD);
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "a", "b"));
    expect_reject(rs256(c), WHY_AUD);
    c = good_claims();
    json_object_del(c, "aud");
    expect_reject(rs256(c), WHY_AUD);
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,i]", CLIENT, 5));
    expect_reject(rs256(c), WHY_AUD);
    /* Array with us and azp = us: ok. */
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "api://other", CLIENT));
    json_object_set_new(c, "azp", json_string(CLIENT));
    expect_ok(rs256(c));
    /* A one-element array needs no azp. */
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s]", CLIENT));
    expect_ok(rs256(c));
    /* Array with azp of another client. */
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "api://other", CLIENT));
    json_object_set_new(c, "azp", json_string("api://other"));
    expect_reject(rs256(c), WHY_AZP);
    /* Array without azp. */
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "api://other", CLIENT));
    expect_reject(rs256(c), WHY_AZP_MISSING);
    /* A single aud with a foreign azp. */
    c = good_claims();
    json_object_set_new(c, "azp", json_string("other"));
    expect_reject(rs256(c), WHY_AZP);
}

static void test_expiry_and_leeway(void **state)
{
    (void)state;
    const char *why = NULL;
    /* exp 61 s ago with 60 s leeway: expired. */
    json_t *c = good_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 61));
    json_object_set_new(c, "iat", json_integer(NOW - 400));
    expect_reject(rs256(c), WHY_EXPIRED);
    /* exp 30 s ago: within leeway. */
    c = good_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 30));
    json_object_set_new(c, "iat", json_integer(NOW - 400));
    expect_ok(rs256(c));
    /* Exactly at exp + leeway: rejected (RFC 7519 §4.1.4 "on or after"). */
    c = good_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 60));
    expect_reject(rs256(c), WHY_EXPIRED);
    /* Zero leeway. */
    fx.cfg.leeway_ms = 0;
    c = good_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 1));
    expect_reject(rs256(c), WHY_EXPIRED);
    fx.cfg.leeway_ms = 60000;
    c = good_claims();
    json_object_del(c, "exp");
    expect_reject(rs256(c), WHY_EXP_MISSING);
    c = good_claims();
    json_object_set_new(c, "exp", json_string("tomorrow"));
    expect_reject(rs256(c), WHY_EXP_MISSING);
    c = good_claims();
    json_object_set_new(c, "exp", json_integer(-5));
    expect_reject(rs256(c), WHY_EXP_MISSING);
    /* The clock is the caller's: the same token is fine earlier. */
    c = good_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 61));
    json_object_set_new(c, "iat", json_integer(NOW - 400));
    assert_int_equal(verify_at(rs256(c), NONCE, NOW - 100, &why), 0);
}

static void test_nbf_and_iat(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "nbf", json_integer(NOW + 120));
    expect_reject(rs256(c), WHY_NBF);
    c = good_claims();
    json_object_set_new(c, "nbf", json_integer(NOW + 30)); /* within leeway */
    expect_ok(rs256(c));
    c = good_claims();
    json_object_set_new(c, "nbf", json_string("soon"));
    expect_reject(rs256(c), WHY_NBF_TYPE);
    c = good_claims();
    json_object_set_new(c, "iat", json_integer(NOW + 3600));
    json_object_set_new(c, "exp", json_integer(NOW + 7200));
    expect_reject(rs256(c), WHY_IAT_FUTURE);
    c = good_claims();
    json_object_del(c, "iat");
    expect_reject(rs256(c), WHY_IAT_MISSING);
}

static void test_nonce(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(verify_at(rs256(good_claims()), "n-other", NOW, &why), -EBADMSG);
    assert_string_equal(why, WHY_NONCE);
    json_t *c = good_claims();
    json_object_del(c, "nonce");
    expect_reject(rs256(c), WHY_NONCE_MISSING);
    c = good_claims();
    json_object_set_new(c, "nonce", json_integer(1));
    expect_reject(rs256(c), WHY_NONCE_MISSING);
    /* NULL nonce (refresh responses): not checked. */
    c = good_claims();
    json_object_del(c, "nonce");
    assert_int_equal(verify_at(rs256(c), NULL, NOW, &why), 0);
}

/* ---- JWKS loading ------------------------------------------------------- */

static void test_jwks_loading(void **state)
{
    (void)state;
    char *err = NULL;
    const char *bad[] = {"",
                         "[]",
                         "{}",
                         "{\"keys\":{}}",
                         "{\"keys\":[]}",
                         "{\"keys\":[1,\"x\"]}",
                         "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
                         "not json"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(idp_load_jwks(fx.idp, bad[i], &err), -EINVAL);
        assert_non_null(err);
        free(err);
        err = NULL;
    }
    /* A failed load keeps the old keys. */
    assert_int_equal(fx.idp->n_keys, 2);
    expect_ok(rs256(good_claims()));

    struct {
        const char *field, *value;
    } skips[] = {
        {"use", "enc"}, {"alg", "RS512"}, {"kty", "OKP"}, {"n", "AQAB"}, {"e", ""}, {"n", "!!"},
    };
    for (size_t i = 0; i < sizeof(skips) / sizeof(skips[0]); i++) {
        json_t *jwk = json_loads(fx.rsa1_jwk, 0, NULL);
        json_object_set_new(jwk, skips[i].field, json_string(skips[i].value));
        struct idp_key key;
        const char *why = NULL;
        assert_int_equal(key_from_jwk(jwk, &key, &why), -EINVAL);
        assert_non_null(why);
        json_decref(jwk);
    }
    /* EC: wrong curve, short coordinate, a point not on the curve. */
    const char *ec_skips[][2] = {{"crv", "P-384"},
                                 {"x", "AAAA"},
                                 {"alg", "RS256"},
                                 {"y", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}};
    for (size_t i = 0; i < sizeof(ec_skips) / sizeof(ec_skips[0]); i++) {
        json_t *jwk = json_loads(fx.ec1_jwk, 0, NULL);
        json_object_set_new(jwk, ec_skips[i][0], json_string(ec_skips[i][1]));
        struct idp_key key;
        const char *why = NULL;
        assert_int_equal(key_from_jwk(jwk, &key, &why), -EINVAL);
        json_decref(jwk);
    }
    /* Usable keys next to unusable ones: only the usable ones are kept. */
    char *jwks = xasprintf("{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"},%s]}", fx.ec1_jwk);
    assert_int_equal(idp_load_jwks(fx.idp, jwks, NULL), 0);
    free(jwks);
    assert_int_equal(fx.idp->n_keys, 1);
    assert_int_equal(fx.idp->keys[0].alg, JWT_ALG_ES256);
}

/* An RSA key below 2048 bits is refused (a 1024-bit modulus made here on the fly). */
static void test_jwks_small_rsa_refused(void **state)
{
    (void)state;
    EVP_PKEY *pkey = EVP_RSA_gen(1024);
    assert_non_null(pkey);
    BIGNUM *n = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    unsigned char buf[256];
    int len = BN_bn2bin(n, buf);
    char *n64 = b64url_encode_new(buf, (size_t)len);
    json_t *jwk =
        json_pack("{s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", "small", "e", "AQAB", "n", n64);
    struct idp_key key;
    const char *why = NULL;
    assert_int_equal(key_from_jwk(jwk, &key, &why), -EINVAL);
    assert_string_equal(why, "RSA key size outside 2048..16384 bits");
    json_decref(jwk);
    free(n64);
    BN_free(n);
    EVP_PKEY_free(pkey);
}

/* The PEM built from the JWK is the fixture's public key. */
static void test_jwk_to_pem_matches_fixture(void **state)
{
    (void)state;
    for (size_t i = 0; i < fx.idp->n_keys; i++) {
        const struct idp_key *k = &fx.idp->keys[i];
        const char *want = strcmp(k->kid, "rsa1") == 0 ? fx.rsa1_pub : fx.ec1_pub;
        assert_string_equal(k->pem, want);
    }
}

/* ---- claim mapping ----------------------------------------------------- */

struct mapped {
    struct idp_identity *id;
    bool roles_seen, groups_seen;
};

static struct mapped map(const struct gw_idp_claims *names, const char *claims_json)
{
    struct mapped m = {xcalloc(1, sizeof(struct idp_identity)), false, false};
    json_t *c = json_loads(claims_json, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(c);
    identity_fill(m.id, names, c, &m.roles_seen, &m.groups_seen);
    json_decref(c);
    return m;
}

static void assert_list(const struct mg_string_list *l, const char *const *want, size_t n)
{
    assert_int_equal(l->len, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l->items[i], want[i]);
}

static void test_map_roles_shapes(void **state)
{
    (void)state;
    const struct gw_idp_claims *names = &fx.cfg.claims;
    static const char *const two[] = {"manager", "staff"};
    struct {
        const char *json;
        bool seen;
        size_t n;
    } cases[] = {
        {"{\"sub\":\"u\",\"roles\":[\"manager\",\"staff\"]}", true, 2},
        {"{\"sub\":\"u\",\"roles\":[\"manager\",7,\"staff\",\"manager\"]}", true, 2},
        {"{\"sub\":\"u\",\"roles\":\"manager\"}", true, 1},
        {"{\"sub\":\"u\",\"roles\":\"manager staff\"}", true, 2},
        {"{\"sub\":\"u\",\"roles\":\"manager,staff\"}", true, 2},
        {"{\"sub\":\"u\",\"roles\":\" manager , staff ,\"}", true, 2},
        {"{\"sub\":\"u\",\"roles\":[]}", true, 0},
        {"{\"sub\":\"u\",\"roles\":\"\"}", true, 0},
        {"{\"sub\":\"u\",\"roles\":42}", false, 0},
        {"{\"sub\":\"u\"}", false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mapped m = map(names, cases[i].json);
        assert_int_equal(m.roles_seen, cases[i].seen);
        assert_false(m.groups_seen);
        assert_list(&m.id->roles, two, cases[i].n);
        assert_string_equal(m.id->subject, "u");
        idp_identity_free(m.id);
    }
}

static void test_map_strings_and_groups(void **state)
{
    (void)state;
    struct mapped m = map(&fx.cfg.claims, "{\"sub\":\"u-1\",\"username\":\"alice\",\"email\":"
                                          "\"a@example.com\",\"name\":\"Alice A\",\"groups\":"
                                          "[\"eng\",\"ops\"],\"roles\":[\"manager\"]}");
    assert_string_equal(m.id->subject, "u-1");
    assert_string_equal(m.id->username, "alice");
    assert_string_equal(m.id->email, "a@example.com");
    assert_string_equal(m.id->name, "Alice A");
    static const char *const groups[] = {"eng", "ops"};
    assert_list(&m.id->groups, groups, 2);
    assert_true(m.roles_seen && m.groups_seen);
    idp_identity_free(m.id);
    /* Non-strings and control characters (would reach upstream headers) are dropped. */
    m = map(&fx.cfg.claims, "{\"sub\":\"u\",\"username\":5,\"email\":\"a@x\\r\\nX-Evil: 1\","
                            "\"roles\":[\"ok\",\"bad\\nrole\"]}");
    assert_null(m.id->username);
    assert_null(m.id->email);
    static const char *const ok[] = {"ok"};
    assert_list(&m.id->roles, ok, 1);
    idp_identity_free(m.id);
}

static void test_map_custom_claim_names(void **state)
{
    (void)state;
    struct gw_idp_claims names = {"user_id",
                                  "nickname",
                                  "mail",
                                  "display_name",
                                  "https://example.com/roles",
                                  "https://example.com/groups"};
    struct mapped m = map(&names, "{\"sub\":\"auth0|1\",\"user_id\":\"u-9\",\"nickname\":\"bob\","
                                  "\"mail\":\"b@x\",\"display_name\":\"Bob\","
                                  "\"https://example.com/roles\":[\"admin\"],"
                                  "\"https://example.com/groups\":\"g1 g2\"}");
    assert_string_equal(m.id->subject, "u-9");
    assert_string_equal(m.id->username, "bob");
    assert_string_equal(m.id->email, "b@x");
    assert_string_equal(m.id->name, "Bob");
    static const char *const roles[] = {"admin"};
    static const char *const groups[] = {"g1", "g2"};
    assert_list(&m.id->roles, roles, 1);
    assert_list(&m.id->groups, groups, 2);
    idp_identity_free(m.id);
    /* Keycloak style nested path. */
    struct gw_idp_claims kc = {"sub",  "preferred_username", "email",
                               "name", "realm_access.roles", "groups"};
    m = map(&kc, "{\"sub\":\"k\",\"preferred_username\":\"kc\","
                 "\"realm_access\":{\"roles\":[\"r1\",\"r2\"]}}");
    static const char *const r12[] = {"r1", "r2"};
    assert_list(&m.id->roles, r12, 2);
    assert_string_equal(m.id->username, "kc");
    idp_identity_free(m.id);
}

/* The ID token wins; userinfo only fills what is missing. */
static void test_map_userinfo_fills_gaps(void **state)
{
    (void)state;
    struct mapped m = map(&fx.cfg.claims, "{\"sub\":\"u\",\"username\":\"alice\"}");
    assert_false(m.roles_seen);
    json_t *info = json_loads("{\"sub\":\"u\",\"username\":\"mallory\",\"roles\":[\"manager\"],"
                              "\"groups\":[\"g\"]}",
                              0, NULL);
    identity_fill(m.id, &fx.cfg.claims, info, &m.roles_seen, &m.groups_seen);
    json_decref(info);
    assert_string_equal(m.id->username, "alice");
    assert_true(m.roles_seen && m.groups_seen);
    assert_string_equal(m.id->roles.items[0], "manager");
    idp_identity_free(m.id);
}

/* ---- URLs and encoding -------------------------------------------------- */

static void test_authorize_url(void **state)
{
    (void)state;
    assert_null(idp_authorize_url(fx.idp, "https://mcp.example.com/callback", "s", "n", "c"));
    fx.idp->authorization_endpoint = xstrdup("https://idp.example.com/t/acme/oauth2/authorize");
    fx.idp->have_discovery = true;
    const char *challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    char *url = idp_authorize_url(fx.idp, "https://mcp.example.com/callback?x=1", "st ate&=/+",
                                  "nonce~._-", challenge);
    assert_non_null(url);
    const char *prefix = "https://idp.example.com/t/acme/oauth2/authorize?";
    assert_memory_equal(url, prefix, strlen(prefix));
    const char *query = url + strlen(prefix);
    assert_null(strpbrk(query, " +/:?#")); /* every reserved character is escaped */
    assert_non_null(strstr(query, "redirect_uri=https%3A%2F%2Fmcp.example.com%2Fcallback%3Fx%3D1"));
    assert_non_null(strstr(query, "state=st%20ate%26%3D%2F%2B"));
    assert_non_null(strstr(query, "scope=openid%20profile%20email%20roles"));
    struct http_params params = {0};
    assert_int_equal(http_params_parse(query, strlen(query), &params), 0);
    const char *want[][2] = {{"response_type", "code"},
                             {"client_id", CLIENT},
                             {"redirect_uri", "https://mcp.example.com/callback?x=1"},
                             {"scope", "openid profile email roles"},
                             {"state", "st ate&=/+"},
                             {"nonce", "nonce~._-"},
                             {"code_challenge", challenge},
                             {"code_challenge_method", "S256"}};
    assert_int_equal(params.len, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(http_params_count(&params, want[i][0]), 1);
        assert_string_equal(http_params_get(&params, want[i][0]), want[i][1]);
    }
    http_params_clear(&params);
    free(url);
    /* An endpoint that already has a query gets '&'. */
    free(fx.idp->authorization_endpoint);
    fx.idp->authorization_endpoint = xstrdup("https://idp.example.com/authorize?tenant=a");
    url = idp_authorize_url(fx.idp, "https://m/cb", "s", "n", challenge);
    assert_non_null(strstr(url, "?tenant=a&response_type=code&"));
    free(url);
}

static void test_form_encoding(void **state)
{
    (void)state;
    char *s = pct_encode_new("mcpgate client:1/é+&=~", true);
    assert_string_equal(s, "mcpgate+client%3A1%2F%C3%A9%2B%26%3D~");
    free(s);
    s = pct_encode_new("a b", false);
    assert_string_equal(s, "a%20b");
    free(s);
    struct strbuf form = STRBUF_INIT;
    form_add(&form, "grant_type", "authorization_code");
    form_add(&form, "code", "a+b c");
    assert_string_equal(strbuf_str(&form), "grant_type=authorization_code&code=a%2Bb+c");
    strbuf_release(&form);
}

static void test_endpoint_urls(void **state)
{
    (void)state;
    const char *ok[] = {"https://idp.example.com/oauth2/token",
                        "https://h",
                        "http://127.0.0.1:8/x",
                        "http://localhost/x",
                        "http://[::1]:9/x",
                        "http://127.1.2.3"};
    const char *bad[] = {"http://idp.example.com/token",
                         "ftp://h/x",
                         "https://",
                         "https:///x",
                         "https://u:p@h/x",
                         "https://h/x#frag",
                         "https://h/a b",
                         "http://127.0.0.1.evil.com/",
                         "http://localhost.evil.com/",
                         "//h/x",
                         "http://[::2]/"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_true(endpoint_url_ok(ok[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (endpoint_url_ok(bad[i]))
            fail_msg("accepted %s", bad[i]);
}

static void test_discovery_url_and_presets(void **state)
{
    (void)state;
    char *u = idp_preset_discovery_url(ISSUER);
    assert_string_equal(u, ISSUER "/.well-known/openid-configuration");
    free(u);
    u = idp_preset_discovery_url("https://login.example.com/");
    assert_string_equal(u, "https://login.example.com/.well-known/openid-configuration");
    free(u);
    assert_string_equal(idp_preset_get(GW_IDP_ASGARDEO)->name, "asgardeo");
    assert_string_equal(idp_preset_get(GW_IDP_OIDC)->name, "oidc");
    assert_string_equal(idp_preset_get((enum gw_idp_preset)99)->name, "oidc");
}

static void test_client_new_checks(void **state)
{
    (void)state;
    char *err = NULL;
    struct gw_idp_config c = fx.cfg;
    c.issuer = "http://idp.example.com"; /* plain http, not loopback */
    assert_null(idp_client_new(fx.base, fx.httpc, &c, &err));
    assert_non_null(strstr(err, "https"));
    free(err);
    c = fx.cfg;
    c.client_secret = NULL;
    assert_null(idp_client_new(fx.base, fx.httpc, &c, &err));
    assert_non_null(strstr(err, "client_secret"));
    free(err);
    assert_false(idp_client_ready(fx.idp)); /* keys, but no discovery */
    assert_null(idp_client_last_error(fx.idp));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_valid_rs256),
        T(test_valid_es256),
        T(test_noncanonical_signature_rejected),
        T(test_real_numeric_dates_ok),
        T(test_alg_confusion_hs256_rejected),
        T(test_alg_none_rejected),
        T(test_duplicate_header_key_rejected),
        T(test_ps256_refused_clearly),
        T(test_other_algs_rejected),
        T(test_typ_access_token_rejected),
        T(test_kid_of_ec_key_with_rs256_rejected),
        T(test_signature_by_other_key_rejected),
        T(test_unknown_kid_is_keyrejected),
        T(test_missing_kid),
        T(test_garbage_tokens_rejected),
        T(test_oversized_token_rejected),
        T(test_wrong_issuer),
        T(test_sub_required),
        T(test_audience),
        T(test_expiry_and_leeway),
        T(test_nbf_and_iat),
        T(test_nonce),
        T(test_jwks_loading),
        T(test_jwks_small_rsa_refused),
        T(test_jwk_to_pem_matches_fixture),
        T(test_map_roles_shapes),
        T(test_map_strings_and_groups),
        T(test_map_custom_claim_names),
        T(test_map_userinfo_fills_gaps),
        T(test_authorize_url),
        T(test_form_encoding),
        T(test_endpoint_urls),
        T(test_discovery_url_and_presets),
        T(test_client_new_checks),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
