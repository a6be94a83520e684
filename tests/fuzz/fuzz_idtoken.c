/*
 * fuzz_idtoken: ID-token verification (idp_verify_id_token in oauth/idp.c)
 * on arbitrary token text. The token comes from the IdP's token endpoint,
 * but it is the one input that decides who a user is, so it must hold
 * against anything (idp.c lists the libjwt quirks it guards against).
 *
 * Two clients without network, keys from tests/fixtures/idp: one with the
 * JWKS {rsa1, ec1}, one with {rsa1} alone (a token without kid may then use
 * it). Each token is verified by both, with the login nonce and without
 * (refresh), at a fixed clock.
 *
 * Checked: no crash or leak, and no acceptance without a real signature:
 * when a client returns 0, this driver checks the signature itself with
 * OpenSSL against the public keys that client holds (RS256: PKCS #1 v1.5
 * SHA-256; ES256: raw R||S, RFC 7518 §3.4) and the accepted claims against
 * the issuer and client id. Anything else is a forgery the gateway let in.
 * Each input is tried as token text and, when it has two newlines, as the
 * header, payload and signature of a token (structured_token). The seeds
 * include tokens really signed by the fixture keys, in both forms
 * (gen_seeds.sh).
 */
#include "tests/fuzz/fuzz.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/b64url.h"
#include "common/httpc.h"
#include "common/log.h"
#include "oauth/idp.h"

/* Must match tests/fuzz/gen_seeds.sh. */
#define ISSUER "https://idp.example.com/t/acme/oauth2/token"
#define CLIENT "mcpgate-client"
#define NONCE "n-0123456789"
#define NOW ((int64_t)1700000000)

static char *scope_items[] = {"openid", "profile", "email", "roles"};

static struct gw_idp_config cfg = {
    .configured = true,
    .preset = GW_IDP_OIDC,
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

/* A client and the public keys it was given, for the oracle. */
struct verifier {
    struct idp_client *idp;
    EVP_PKEY *keys[2];
    size_t n_keys;
};

static struct event_base *base;
static struct httpc *httpc;
static struct verifier both, rsa_only;

/* tests/fixtures/idp/NAME from $MCPGATE_FIXTURES, the cwd, or beside build/fuzz/. */
static char *fixture_read(const char *name)
{
    char exe[PATH_MAX] = "", path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    const char *env = getenv("MCPGATE_FIXTURES");
    for (int i = 0; i < 3; i++) {
        if (i == 0 && !env)
            continue;
        snprintf(path, sizeof(path),
                 i == 0   ? "%s/%s"
                 : i == 1 ? "%stests/fixtures/idp/%s"
                          : "%s/../../tests/fixtures/idp/%s",
                 i == 0   ? env
                 : i == 1 ? ""
                          : exe,
                 name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        char *text = calloc(1, 16384);
        size_t got = text ? fread(text, 1, 16383, f) : 0;
        fclose(f);
        if (got == 0)
            abort();
        return text;
    }
    fprintf(stderr,
            "fuzz_idtoken: fixture %s not found (run from the repo root or set "
            "MCPGATE_FIXTURES)\n",
            name);
    abort();
}

static EVP_PKEY *public_key(const char *name)
{
    char *pem = fixture_read(name);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    if (!k)
        abort();
    BIO_free(bio);
    free(pem);
    return k;
}

static void verifier_init(struct verifier *v, const char *const *jwk_names, size_t n)
{
    char *err = NULL;
    v->idp = idp_client_new(base, httpc, &cfg, &err);
    if (!v->idp)
        abort();
    char *jwks = strdup("{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        char file[64];
        snprintf(file, sizeof(file), "%s.jwk.json", jwk_names[i]);
        char *jwk = fixture_read(file);
        char *more = NULL;
        if (asprintf(&more, "%s%s%s", jwks, i ? "," : "", jwk) < 0)
            abort();
        free(jwks);
        free(jwk);
        jwks = more;
        snprintf(file, sizeof(file), "%s.pub.pem", jwk_names[i]);
        v->keys[v->n_keys++] = public_key(file);
    }
    char *doc = NULL;
    if (asprintf(&doc, "%s]}", jwks) < 0)
        abort();
    if (idp_load_jwks(v->idp, doc, &err) != 0) {
        fprintf(stderr, "fuzz_idtoken: JWKS refused: %s\n", err ? err : "?");
        abort();
    }
    free(doc);
    free(jwks);
}

static void cleanup(void)
{
    struct verifier *vs[] = {&both, &rsa_only};
    for (size_t i = 0; i < 2; i++) {
        idp_client_free(vs[i]->idp);
        for (size_t k = 0; k < vs[i]->n_keys; k++)
            EVP_PKEY_free(vs[i]->keys[k]);
    }
    httpc_free(httpc);
    event_base_free(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gw_log_set_level(GW_LOG_ERROR);
    base = event_base_new();
    char *err = NULL;
    httpc = base ? httpc_new(base, &err) : NULL;
    if (!httpc)
        abort();
    static const char *const two[] = {"rsa1", "ec1"}, *const one[] = {"rsa1"};
    verifier_init(&both, two, 2);
    verifier_init(&rsa_only, one, 1);
    atexit(cleanup);
    return 0;
}

/* ---- the oracle: an independent signature check ----------------------------- */

/* RFC 7518 §3.4: ES256 signatures are R||S, 32 bytes each; OpenSSL wants DER. */
static unsigned char *es256_der(const unsigned char *raw, size_t len, size_t *der_len)
{
    if (len != 64)
        return NULL;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    if (!sig || !r || !s || !ECDSA_SIG_set0(sig, r, s))
        abort();
    unsigned char *der = NULL;
    int n = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    if (n <= 0)
        abort();
    *der_len = (size_t)n;
    return der;
}

static bool verifies(EVP_PKEY *key, const char *input, size_t input_len, const unsigned char *sig,
                     size_t sig_len)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        der = es256_der(sig, sig_len, &der_len);
        if (!der)
            return false;
        sig = der;
        sig_len = der_len;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)input, input_len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

/*
 * The signature segment must be canonical base64url (idp.c refuses stray low
 * bits in its last character since 3e395b8, found by this driver: libjwt
 * decodes leniently, so one signature had several accepted spellings). The
 * strict decoder is the oracle's too, so an accepted non-canonical spelling
 * fails here.
 */
static bool really_signed(const struct verifier *v, const char *jwt)
{
    const char *dot = strrchr(jwt, '.');
    if (!dot)
        return false;
    size_t sig_len = 0;
    unsigned char *sig = b64url_decode_new(dot + 1, strlen(dot + 1), &sig_len);
    bool ok = false;
    for (size_t i = 0; sig && !ok && i < v->n_keys; i++)
        ok = verifies(v->keys[i], jwt, (size_t)(dot - jwt), sig, sig_len);
    free(sig);
    return ok;
}

static void check_claims(const char *claims_json, const char *jwt)
{
    json_error_t jerr;
    json_t *c = json_loads(claims_json, 0, &jerr);
    FUZZ_CHECK(c != NULL, "accepted claims are not JSON: %s", claims_json);
    const char *iss = json_string_value(json_object_get(c, "iss"));
    FUZZ_CHECK(iss && strcmp(iss, ISSUER) == 0, "accepted with another issuer: %s", jwt);
    json_t *exp = json_object_get(c, "exp");
    FUZZ_CHECK(json_is_number(exp) && json_number_value(exp) + 60 > (double)NOW,
               "accepted expired: %s", jwt);
    json_decref(c);
}

static void verify_with(const struct verifier *v, const char *jwt, const char *nonce)
{
    char *claims = NULL;
    const char *why = NULL;
    int rc = idp_verify_id_token(v->idp, jwt, nonce, NOW, &claims, &why);
    if (rc == 0) {
        FUZZ_CHECK(claims != NULL && why == NULL, "accepted without claims");
        FUZZ_CHECK(really_signed(v, jwt), "ACCEPTED A TOKEN NOT SIGNED BY A LOADED KEY: %s", jwt);
        check_claims(claims, jwt);
    } else {
        FUZZ_CHECK(rc == -EBADMSG || rc == -EKEYREJECTED, "rc %d", rc);
        FUZZ_CHECK(claims == NULL && why != NULL, "rejected without a reason, rc %d", rc);
    }
    free(claims);
}

/*
 * The input read as "header JSON\npayload JSON\nsignature bytes" and encoded
 * into a token (owned), or NULL without two newlines: lets the fuzzer reach
 * the header, key and payload checks without having to learn base64url.
 */
static char *structured_token(const uint8_t *data, size_t size)
{
    const uint8_t *nl1 = memchr(data, '\n', size);
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', size - (size_t)(nl1 + 1 - data)) : NULL;
    if (!nl2)
        return NULL;
    char *h = b64url_encode_new(data, (size_t)(nl1 - data));
    char *p = b64url_encode_new(nl1 + 1, (size_t)(nl2 - nl1 - 1));
    char *s = b64url_encode_new(nl2 + 1, size - (size_t)(nl2 + 1 - data));
    char *jwt = NULL;
    if (asprintf(&jwt, "%s.%s.%s", h, p, s) < 0)
        abort();
    free(h);
    free(p);
    free(s);
    return jwt;
}

static void verify_all(const char *jwt)
{
    verify_with(&both, jwt, NONCE);
    verify_with(&both, jwt, NULL);
    verify_with(&rsa_only, jwt, NONCE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *jwt = fuzz_strndup(data, size);
    verify_all(jwt);
    free(jwt);
    jwt = structured_token(data, size);
    if (jwt)
        verify_all(jwt);
    free(jwt);
    return 0;
}
