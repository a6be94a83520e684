/*
 * idp: mcpgate as a confidential OpenID Connect client of the upstream
 * identity provider (contract in idp.h).
 *
 * What it owns: the discovery results (endpoint URLs), the JWKS key cache
 * (one PEM per usable key, pinned to one algorithm), the refresh timer, the
 * in-flight discovery/JWKS calls, and every pending login or refresh (struct
 * idp_op) until its callback has run. It borrows the event base, the
 * outbound HTTP client and the config.
 *
 * Verification is split between libjwt 1.10 and this file. libjwt checks the
 * signature only; everything it would otherwise decide on the token's say is
 * decided here first: the header is parsed by us (strict base64url, jansson
 * with JSON_REJECT_DUPLICATES), the algorithm must be RS256 or ES256 and must
 * be the one pinned to the key named by kid, and every claim is checked by
 * our code on our own parse of the payload. The libjwt quirks this guards
 * against are listed at LIBJWT QUIRKS below, each with a regression test in
 * tests/unit/test_idp.c.
 *
 * Never logged, never put into an error message: codes, tokens, the PKCE
 * verifier, the client secret. Buffers that held them are wiped.
 */
#include "oauth/idp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "common/b64url.h"
#include "common/crypto.h"
#include "common/httpc.h"
#include "common/net.h"
#include "common/panic.h"
#include "common/strbuf.h"
#include "common/url.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/log.h"
#include "common/xevent.h"
#include "oauth/idp_presets.h"

/*
 * LIBJWT QUIRKS (libjwt 1.10.2, Debian 12), each found by experiment and
 * covered by a regression test:
 *  1. jwt_decode() verifies with whatever "alg" the token header names. An
 *     HS256 token whose HMAC key is our RSA public key PEM decodes with
 *     rc 0 (test_alg_confusion_hs256_rejected).
 *  2. jwt_decode() with no key accepts "alg":"none" and an empty signature
 *     (test_alg_none_rejected). We never call it without a key, and refuse
 *     "none" before it.
 *  3. Header and payload are parsed with json_loads() without
 *     JSON_REJECT_DUPLICATES: {"alg":"RS256","alg":"HS256"} means HS256 to
 *     libjwt (last one wins) (test_duplicate_header_key_rejected).
 *  4. Base64 is decoded with libb64, which skips characters outside the
 *     alphabet instead of failing; we require strict base64url first
 *     (test_garbage_tokens_rejected).
 *  5. No PS256 (RSASSA-PSS): jwt_alg_t has RS/ES/HS only and
 *     jwt_str_alg("PS256") is JWT_ALG_INVAL. PS256 tokens are refused with
 *     a message that says so, never verified as something else
 *     (test_ps256_refused_clearly).
 *  6. No claim checks at all (exp, nbf, iss, aud, nonce): all are ours.
 */

#define IDP_MAX_RESPONSE_BYTES (1024u * 1024u) /* discovery, JWKS, token, userinfo */
#define IDP_MAX_JWT_BYTES (256u * 1024u)
#define IDP_MAX_KEYS 64
#define IDP_KID_REFETCH_MIN_MS 10000        /* idp.h: unknown kid refetches at most once per 10 s */
#define IDP_RETRY_FIRST_MS 1000             /* discovery/JWKS failures: 1 s, 2 s, … */
#define IDP_RETRY_MAX_MS 60000              /* … capped at 60 s */
#define IDP_MAX_CLAIM_TEXT 1024             /* longer mapped strings are dropped */
#define IDP_MAX_LIST_ITEMS 256              /* roles/groups kept per user */
#define IDP_MAX_NUMERIC_DATE 253402300799LL /* 9999-12-31T23:59:59Z */

/* Rejection reasons (static text for *why_out; tests compare them). */
#define WHY_MALFORMED "malformed token: not three base64url parts"
#define WHY_BAD_HEADER "malformed token: header is not a JSON object"
#define WHY_BAD_PAYLOAD "malformed token: payload is not a JSON object"
#define WHY_NO_ALG "token header has no alg"
#define WHY_ALG_NONE "alg none is refused"
#define WHY_ALG_HMAC "HMAC algorithms are refused (HS*): ID tokens must be signed by the IdP's key"
#define WHY_ALG_PS256 "PS256 is not supported: libjwt 1.10 has no RSASSA-PSS"
#define WHY_ALG_OTHER "unsupported alg (RS256 and ES256 are accepted)"
#define WHY_CRIT "crit header parameters are not supported"
#define WHY_TYP_AT "typ names an access token, not an ID token"
#define WHY_KID_TYPE "kid is not a string"
#define WHY_NO_KID "token has no kid and the key set holds several keys"
#define WHY_UNKNOWN_KID "no key with this kid"
#define WHY_NO_KEYS "no signing keys loaded"
#define WHY_KEY_ALG "alg does not match the key named by kid"
#define WHY_SIGNATURE "signature verification failed"
#define WHY_LIBJWT_ALG "libjwt decoded another alg than the pinned one"
#define WHY_ISS "iss does not match the issuer"
#define WHY_SUB "sub is missing or empty"
#define WHY_AUD "aud does not contain the client id"
#define WHY_AZP_MISSING "azp is missing while aud names several audiences"
#define WHY_AZP "azp is not the client id"
#define WHY_EXP_MISSING "exp is missing or not a number"
#define WHY_EXPIRED "token expired"
#define WHY_NBF "token not valid yet (nbf)"
#define WHY_NBF_TYPE "nbf is not a number"
#define WHY_IAT_MISSING "iat is missing or not a number"
#define WHY_IAT_FUTURE "iat is in the future"
#define WHY_NONCE_MISSING "nonce is missing"
#define WHY_NONCE "nonce does not match"

struct idp_key {
    char *kid;     /* owned; NULL when the JWK has none */
    jwt_alg_t alg; /* pinned: JWT_ALG_RS256 or JWT_ALG_ES256 */
    char *pem;     /* owned: SubjectPublicKeyInfo PEM, the form jwt_decode() takes */
    size_t pem_len;
};

struct idp_op;

struct idp_client {
    struct event_base *base;         /* borrowed */
    struct httpc *httpc;             /* borrowed */
    const struct gw_idp_config *cfg; /* borrowed; replaced by idp_client_set_config */

    /* From discovery; all owned, NULL until loaded. */
    char *authorization_endpoint;
    char *token_endpoint;
    char *userinfo_endpoint; /* may stay NULL: optional in discovery */
    char *jwks_uri;
    bool have_discovery;

    struct idp_key *keys; /* owned array of n_keys */
    size_t n_keys;
    bool have_keys;

    char *last_error; /* owned; NULL after a complete load */

    struct event *timer;          /* owned: periodic refresh and retries */
    struct httpc_call *disc_call; /* in flight or NULL (owned by httpc) */
    struct httpc_call *jwks_call; /* in flight or NULL */
    bool cycle_waits_jwks;        /* the discovery cycle completes with this JWKS fetch */
    uint64_t kid_refetch_at_ms;   /* monotonic time of the last unknown-kid refetch; 0 never */
    uint64_t retry_ms;            /* current backoff; 0 after a success */
    bool started;

    struct idp_op *ops; /* owned: pending logins and refreshes */

    /* idp_client_retire: DONE runs (from the loop) once OPS is empty. */
    void (*retired)(void *arg);
    void *retired_arg;    /* borrowed */
    struct event *reaper; /* owned: the deferred end of a retired client */
};

/* One login (code exchange) or refresh, from request to callback. */
struct idp_op {
    struct idp_client *idp; /* borrowed: the client whose list holds this op */
    struct idp_op *prev, *next;
    bool refresh;
    idp_login_fn cb;
    void *arg;                    /* borrowed */
    char *nonce;                  /* owned; NULL for a refresh */
    char *old_refresh_token;      /* owned secret; refresh only */
    char *id_token;               /* owned secret; NULL when the response had none */
    struct httpc_call *call;      /* in flight or NULL */
    struct event *ev;             /* owned: deferred failure, or retry after a JWKS refetch */
    char *deferred_error;         /* owned; set with ev for a failure reported later */
    bool waiting_jwks;            /* parked until the JWKS refetch completes */
    bool jwks_retried;            /* one refetch per op */
    struct idp_identity *ident;   /* owned, being built */
    json_t *id_claims;            /* owned: the verified ID-token payload, or NULL */
    bool roles_seen, groups_seen; /* the configured claim was present (maybe empty) */
};

/* ---- small helpers ------------------------------------------------------ */

static void free_secret(char *s)
{
    if (s) {
        crypto_wipe(s, strlen(s));
        free(s);
    }
}

static void strbuf_release_secret(struct strbuf *sb)
{
    if (sb->buf)
        crypto_wipe(sb->buf, sb->cap);
    strbuf_release(sb);
}

/*
 * Percent-encoding. Unreserved characters (RFC 3986 §2.3) stay, everything
 * else becomes %XX. FORM: application/x-www-form-urlencoded, where a space is
 * '+' (HTML URL-encoded form serializer; RFC 6749 Appendix B). Used for the
 * authorization URL (FORM false), token request bodies and the client
 * credentials of client_secret_basic (RFC 6749 §2.3.1: form-encoded first).
 */
static void pct_append(struct strbuf *sb, const char *s, bool form)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            strbuf_append(sb, p, 1);
        } else if (form && c == ' ') {
            strbuf_puts(sb, "+");
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            strbuf_append(sb, esc, 3);
        }
    }
}

static char *pct_encode_new(const char *s, bool form)
{
    struct strbuf sb = STRBUF_INIT;
    pct_append(&sb, s, form);
    return strbuf_detach(&sb, NULL);
}

/* NAME=VALUE with '&' before all but the first pair. */
static void form_add(struct strbuf *sb, const char *name, const char *value)
{
    if (sb->len)
        strbuf_puts(sb, "&");
    pct_append(sb, name, true);
    strbuf_puts(sb, "=");
    pct_append(sb, value, true);
}

/*
 * Text that came from the IdP, made fit for a log line or an error page:
 * printable ASCII only (others become '?'), at most 200 bytes. Owned.
 */
static char *clean_text(const char *s)
{
    size_t n = strnlen(s, 200);
    char *out = xstrndup(s, n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
            out[i] = '?';
    return out;
}

/* A printable mapped value: non-empty, bounded, no control characters (they end up in
 * headers and environment variables of upstreams, DESIGN §6). */
static bool claim_text_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > IDP_MAX_CLAIM_TEXT)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

/*
 * An endpoint URL from discovery: absolute https (or http to a loopback
 * host, for tests and local IdPs), no user info, no fragment, no spaces or
 * control characters.
 */
static bool endpoint_url_ok(const char *url)
{
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '#')
            return false;
    struct url_parts u;
    if (!url_split(url, &u))
        return false;
    bool ok = u.scheme && u.host && u.user == NULL &&
              (strcmp(u.scheme, "https") == 0 ||
               (strcmp(u.scheme, "http") == 0 && net_host_is_loopback(u.host)));
    url_parts_clear(&u);
    return ok;
}

static void set_last_error(struct idp_client *idp, const char *msg)
{
    free(idp->last_error);
    idp->last_error = msg ? xstrdup(msg) : NULL;
}

/* jansson's parse with our rules for outside JSON: size bounded, duplicates rejected, an
 * object at the top. Owned result or NULL. */
static json_t *parse_object(const char *text, size_t len)
{
    if (len > IDP_MAX_RESPONSE_BYTES)
        return NULL;
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* Borrowed string member or NULL. */
static const char *obj_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* ---- JWK → PEM (OpenSSL 3 provider API) -------------------------------- */

static char *pem_from_pkey(EVP_PKEY *pkey, size_t *len_out)
{
    char *pem = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio && PEM_write_bio_PUBKEY(bio, pkey) == 1) {
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && data) {
            pem = xstrndup(data, (size_t)n);
            *len_out = (size_t)n;
        }
    }
    BIO_free(bio);
    return pem;
}

/* Builds a public key from PARAMS for key type NAME, checks it, returns its PEM (owned). */
static char *pem_from_params(const char *name, OSSL_PARAM_BLD *bld, size_t *len_out)
{
    char *pem = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *check = NULL;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    /* RSA: n odd, e odd and > 1; EC: the point is on the curve. */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1)
        goto out;
    pem = pem_from_pkey(pkey, len_out);
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    ERR_clear_error();
    return pem;
}

static char *rsa_pem_from_jwk(const json_t *jwk, size_t *len_out, const char **why)
{
    const char *n64 = obj_str(jwk, "n"), *e64 = obj_str(jwk, "e");
    char *pem = NULL;
    unsigned char *n = NULL, *e = NULL;
    size_t n_len = 0, e_len = 0;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    *why = "RSA key without valid n and e";
    if (!n64 || !e64 || !(n = b64url_decode_new(n64, strlen(n64), &n_len)) ||
        !(e = b64url_decode_new(e64, strlen(e64), &e_len)) || e_len == 0 || e_len > 8)
        goto out;
    bn_n = BN_bin2bn(n, (int)n_len, NULL);
    bn_e = BN_bin2bn(e, (int)e_len, NULL);
    if (!bn_n || !bn_e)
        goto out;
    if (BN_num_bits(bn_n) < 2048 || BN_num_bits(bn_n) > 16384) {
        *why = "RSA key size outside 2048..16384 bits";
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
        goto out;
    pem = pem_from_params("RSA", bld, len_out);
    if (!pem)
        *why = "RSA key rejected by OpenSSL";
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return pem;
}

static char *ec_pem_from_jwk(const json_t *jwk, size_t *len_out, const char **why)
{
    const char *x64 = obj_str(jwk, "x"), *y64 = obj_str(jwk, "y");
    char *pem = NULL;
    unsigned char *x = NULL, *y = NULL;
    size_t x_len = 0, y_len = 0;
    OSSL_PARAM_BLD *bld = NULL;
    *why = "EC key without 32-byte x and y";
    /* RFC 7518 §6.2.1.2: coordinates are the full field size, 32 bytes for P-256. */
    if (!x64 || !y64 || !(x = b64url_decode_new(x64, strlen(x64), &x_len)) ||
        !(y = b64url_decode_new(y64, strlen(y64), &y_len)) || x_len != 32 || y_len != 32)
        goto out;
    unsigned char point[65];
    point[0] = 0x04; /* uncompressed (SEC 1 §2.3.3) */
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    bld = OSSL_PARAM_BLD_new();
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
        goto out;
    pem = pem_from_params("EC", bld, len_out);
    if (!pem)
        *why = "EC key rejected by OpenSSL (not a P-256 point)";
out:
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return pem;
}

/* One JWK into OUT. Returns 0, or -EINVAL with *why (static) when the key is skipped. */
static int key_from_jwk(const json_t *jwk, struct idp_key *out, const char **why)
{
    const char *kty = obj_str(jwk, "kty"), *use = obj_str(jwk, "use");
    const char *alg = obj_str(jwk, "alg");
    const json_t *kid = json_object_get(jwk, "kid");
    memset(out, 0, sizeof(*out));
    if (!json_is_object(jwk) || !kty) {
        *why = "not a JWK (no kty)";
        return -EINVAL;
    }
    if (json_object_get(jwk, "use") && (!use || strcmp(use, "sig") != 0)) {
        *why = "not a signing key (use)";
        return -EINVAL;
    }
    if (json_object_get(jwk, "alg") && !alg) {
        *why = "alg is not a string";
        return -EINVAL;
    }
    if (kid && !json_is_string(kid)) {
        *why = "kid is not a string";
        return -EINVAL;
    }
    if (strcmp(kty, "RSA") == 0) {
        if (alg && strcmp(alg, "PS256") == 0) {
            *why = WHY_ALG_PS256;
            return -EINVAL;
        }
        if (alg && strcmp(alg, "RS256") != 0) {
            *why = "RSA key for an alg other than RS256";
            return -EINVAL;
        }
        out->alg = JWT_ALG_RS256;
        out->pem = rsa_pem_from_jwk(jwk, &out->pem_len, why);
    } else if (strcmp(kty, "EC") == 0) {
        const char *crv = obj_str(jwk, "crv");
        if (!crv || strcmp(crv, "P-256") != 0) {
            *why = "EC key on a curve other than P-256";
            return -EINVAL;
        }
        if (alg && strcmp(alg, "ES256") != 0) {
            *why = "EC key for an alg other than ES256";
            return -EINVAL;
        }
        out->alg = JWT_ALG_ES256;
        out->pem = ec_pem_from_jwk(jwk, &out->pem_len, why);
    } else {
        *why = "kty is neither RSA nor EC";
        return -EINVAL;
    }
    if (!out->pem)
        return -EINVAL;
    out->kid = kid ? xstrdup(json_string_value(kid)) : NULL;
    return 0;
}

static void keys_free(struct idp_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(keys[i].kid);
        free(keys[i].pem);
    }
    free(keys);
}

int idp_load_jwks(struct idp_client *idp, const char *jwks_json, char **err_out)
{
    json_t *doc = parse_object(jwks_json, strlen(jwks_json));
    json_t *arr = doc ? json_object_get(doc, "keys") : NULL;
    struct idp_key *keys = NULL;
    size_t n = 0;
    const char *first_skip = NULL;
    int rc = -EINVAL;
    if (!json_is_array(arr)) {
        if (err_out)
            *err_out = xstrdup("JWKS is not a JSON object with a \"keys\" array");
        goto out;
    }
    keys = xcalloc(IDP_MAX_KEYS, sizeof(*keys));
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *jwk = json_array_get(arr, i);
        if (n == IDP_MAX_KEYS) {
            gw_log(GW_LOG_WARN, "idp", NULL, "JWKS has more keys than kept; extra keys ignored",
                   NULL);
            break;
        }
        const char *why = NULL;
        if (key_from_jwk(jwk, &keys[n], &why) == 0) {
            n++;
            continue;
        }
        first_skip = first_skip ? first_skip : why;
        const char *kid = obj_str(jwk, "kid");
        gw_log(GW_LOG_DEBUG, "idp", NULL, "JWKS key skipped", "kid", kid, "reason", why, NULL);
    }
    if (n == 0) {
        if (err_out)
            *err_out = xasprintf("JWKS holds no usable signing key (RS256 RSA >= 2048 bits or "
                                 "ES256 P-256)%s%s",
                                 first_skip ? ": " : "", first_skip ? first_skip : "");
        goto out;
    }
    keys_free(idp->keys, idp->n_keys);
    idp->keys = keys;
    idp->n_keys = n;
    idp->have_keys = true;
    keys = NULL;
    n = 0;
    rc = 0;
out:
    keys_free(keys, n);
    json_decref(doc);
    return rc;
}

/* ---- ID-token verification --------------------------------------------- */

/*
 * The key for a token naming KID (NULL: none) and ALG. 0 with *out, or
 * -EKEYREJECTED (unknown kid: a refetch may help), or -EBADMSG.
 */
static int find_key(const struct idp_client *idp, const char *kid, jwt_alg_t alg,
                    const struct idp_key **out, const char **why)
{
    if (idp->n_keys == 0) {
        *why = WHY_NO_KEYS;
        return -EKEYREJECTED;
    }
    if (!kid) {
        /* idp.h: with a single key in the set, a token without kid may use it. */
        if (idp->n_keys != 1) {
            *why = WHY_NO_KID;
            return -EBADMSG;
        }
        if (idp->keys[0].alg != alg) {
            *why = WHY_KEY_ALG;
            return -EBADMSG;
        }
        *out = &idp->keys[0];
        return 0;
    }
    bool kid_seen = false;
    for (size_t i = 0; i < idp->n_keys; i++) {
        if (!idp->keys[i].kid || strcmp(idp->keys[i].kid, kid) != 0)
            continue;
        kid_seen = true;
        /* Some IdPs publish one key under one kid several times, once per alg. */
        if (idp->keys[i].alg == alg) {
            *out = &idp->keys[i];
            return 0;
        }
    }
    *why = kid_seen ? WHY_KEY_ALG : WHY_UNKNOWN_KID;
    return kid_seen ? -EBADMSG : -EKEYREJECTED;
}

/* Header checks; *alg_out is the only algorithm the signature may be checked with. */
static int check_header(const json_t *hdr, jwt_alg_t *alg_out, const char **kid_out,
                        const char **why)
{
    const char *alg = obj_str(hdr, "alg");
    if (!alg) {
        *why = WHY_NO_ALG;
        return -EBADMSG;
    }
    if (strcmp(alg, "RS256") == 0) {
        *alg_out = JWT_ALG_RS256;
    } else if (strcmp(alg, "ES256") == 0) {
        *alg_out = JWT_ALG_ES256;
    } else {
        /* Quirks 1, 2 and 5: never let libjwt see these. */
        *why = strcasecmp(alg, "none") == 0 ? WHY_ALG_NONE
               : strncmp(alg, "HS", 2) == 0 ? WHY_ALG_HMAC
               : strcmp(alg, "PS256") == 0  ? WHY_ALG_PS256
                                            : WHY_ALG_OTHER;
        return -EBADMSG;
    }
    /* RFC 7515 §4.1.11: a recipient that does not understand crit must reject. */
    if (json_object_get(hdr, "crit")) {
        *why = WHY_CRIT;
        return -EBADMSG;
    }
    const char *typ = obj_str(hdr, "typ");
    if (typ && (strcasecmp(typ, "at+jwt") == 0 || strcasecmp(typ, "application/at+jwt") == 0)) {
        *why = WHY_TYP_AT; /* RFC 9068 §4: keeps access tokens from passing as ID tokens */
        return -EBADMSG;
    }
    const json_t *kid = json_object_get(hdr, "kid");
    if (kid && !json_is_string(kid)) {
        *why = WHY_KID_TYPE;
        return -EBADMSG;
    }
    /* jku, x5u, jwk, x5c are ignored: keys come only from the discovered JWKS. */
    *kid_out = kid ? json_string_value(kid) : NULL;
    return 0;
}

/* A NumericDate (RFC 7519 §2): integer or real seconds. 0, or -1 when absent or wrong. */
static int numeric_date(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0 || x > IDP_MAX_NUMERIC_DATE)
            return -1;
        *out = (int64_t)x;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0 && d <= (double)IDP_MAX_NUMERIC_DATE))
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

static bool aud_contains(const json_t *aud, const char *client_id, size_t *n_out)
{
    if (json_is_string(aud)) {
        *n_out = 1;
        return strcmp(json_string_value(aud), client_id) == 0;
    }
    if (!json_is_array(aud) || json_array_size(aud) == 0)
        return false;
    bool found = false;
    for (size_t i = 0; i < json_array_size(aud); i++) {
        const json_t *v = json_array_get(aud, i);
        if (!json_is_string(v))
            return false;
        found = found || strcmp(json_string_value(v), client_id) == 0;
    }
    *n_out = json_array_size(aud);
    return found;
}

/* OpenID Connect Core 1.0 §3.1.3.7, with idp.leeway for the times. */
static int check_claims(const struct idp_client *idp, const json_t *c, const char *nonce,
                        int64_t now, const char **why)
{
    const struct gw_idp_config *cfg = idp->cfg;
    const int64_t leeway_ms = (int64_t)cfg->leeway_ms, now_ms = now * 1000;
    int64_t t;
    /* Rule 2: iss exactly equal, byte for byte (no trailing-slash or case folding); the
     * discovery document's issuer was already required to equal cfg->issuer. */
    const char *iss = obj_str(c, "iss");
    if (!iss || strcmp(iss, cfg->issuer) != 0) {
        *why = WHY_ISS;
        return -EBADMSG;
    }
    const char *sub = obj_str(c, "sub");
    if (!sub || !*sub) {
        *why = WHY_SUB;
        return -EBADMSG;
    }
    /* Rules 3–5: aud contains us; several audiences require azp; azp, if any, is us. */
    size_t n_aud = 0;
    if (!aud_contains(json_object_get(c, "aud"), cfg->client_id, &n_aud)) {
        *why = WHY_AUD;
        return -EBADMSG;
    }
    const json_t *azp = json_object_get(c, "azp");
    if (!azp && n_aud > 1) {
        *why = WHY_AZP_MISSING;
        return -EBADMSG;
    }
    if (azp && (!json_is_string(azp) || strcmp(json_string_value(azp), cfg->client_id) != 0)) {
        *why = WHY_AZP;
        return -EBADMSG;
    }
    /* Rule 9: reject on or after exp (RFC 7519 §4.1.4). */
    if (numeric_date(json_object_get(c, "exp"), &t) != 0) {
        *why = WHY_EXP_MISSING;
        return -EBADMSG;
    }
    if (now_ms >= t * 1000 + leeway_ms) {
        *why = WHY_EXPIRED;
        return -EBADMSG;
    }
    const json_t *nbf = json_object_get(c, "nbf");
    if (nbf && numeric_date(nbf, &t) != 0) {
        *why = WHY_NBF_TYPE;
        return -EBADMSG;
    }
    if (nbf && t * 1000 > now_ms + leeway_ms) {
        *why = WHY_NBF;
        return -EBADMSG;
    }
    /* Rule 10: iat is required; one from the future means a broken clock or a forgery. */
    if (numeric_date(json_object_get(c, "iat"), &t) != 0) {
        *why = WHY_IAT_MISSING;
        return -EBADMSG;
    }
    if (t * 1000 > now_ms + leeway_ms) {
        *why = WHY_IAT_FUTURE;
        return -EBADMSG;
    }
    /* Rule 11: the nonce we sent, compared in constant time. */
    if (nonce) {
        const char *got = obj_str(c, "nonce");
        if (!got) {
            *why = WHY_NONCE_MISSING;
            return -EBADMSG;
        }
        if (!crypto_str_equal(got, nonce)) {
            *why = WHY_NONCE;
            return -EBADMSG;
        }
    }
    return 0;
}

/* The segment [START, START+LEN) decoded strictly and parsed as an object, or NULL. */
static json_t *decode_segment(const char *start, size_t len)
{
    size_t n = 0;
    unsigned char *raw = b64url_decode_new(start, len, &n);
    json_t *v = raw ? parse_object((const char *)raw, n) : NULL;
    free(raw);
    return v;
}

/*
 * The signature segment must be canonical base64url, not merely in the
 * alphabet: libjwt decodes leniently, so stray low bits in the last character
 * would let one signature stand in several spellings (found by fuzz_idtoken).
 */
static bool segment_is_canonical(const char *s, size_t n)
{
    size_t out_len = 0;
    unsigned char *raw = b64url_decode_new(s, n, &out_len);
    bool ok = raw != NULL;
    free(raw);
    return ok;
}

/* idp_verify_id_token with the parsed payload as the result (*claims_out owned). */
static int verify_jwt(const struct idp_client *idp, const char *jwt, const char *nonce, int64_t now,
                      json_t **claims_out, const char **why)
{
    json_t *hdr = NULL, *payload = NULL;
    jwt_t *decoded = NULL;
    const struct idp_key *key = NULL;
    const char *kid = NULL;
    jwt_alg_t alg = JWT_ALG_INVAL;
    int rc = -EBADMSG;
    *claims_out = NULL;

    /* Exactly three non-empty strict base64url segments (quirk 4). */
    size_t len = jwt ? strnlen(jwt, IDP_MAX_JWT_BYTES + 1) : 0;
    const char *dot1 = jwt ? memchr(jwt, '.', len) : NULL;
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - jwt)) : NULL;
    *why = WHY_MALFORMED;
    if (!dot1 || !dot2 || len > IDP_MAX_JWT_BYTES || dot1 == jwt || dot2 == dot1 + 1 ||
        dot2 + 1 == jwt + len || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - jwt)) ||
        !segment_is_canonical(dot2 + 1, len - (size_t)(dot2 + 1 - jwt)))
        goto out;
    /* Our own parse, duplicates rejected (quirk 3). */
    if (!(hdr = decode_segment(jwt, (size_t)(dot1 - jwt)))) {
        *why = WHY_BAD_HEADER;
        goto out;
    }
    if ((rc = check_header(hdr, &alg, &kid, why)) != 0)
        goto out;
    rc = -EBADMSG;
    if (!(payload = decode_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1)))) {
        *why = WHY_BAD_PAYLOAD;
        goto out;
    }
    if ((rc = find_key(idp, kid, alg, &key, why)) != 0)
        goto out;
    /* Quirk 1: the key and its pinned alg decide; libjwt only computes the signature. */
    rc = -EBADMSG;
    if (jwt_decode(&decoded, jwt, (const unsigned char *)key->pem, (int)key->pem_len) != 0 ||
        !decoded) {
        *why = WHY_SIGNATURE;
        goto out;
    }
    if (jwt_get_alg(decoded) != key->alg) {
        *why = WHY_LIBJWT_ALG;
        goto out;
    }
    if ((rc = check_claims(idp, payload, nonce, now, why)) != 0)
        goto out;
    *claims_out = payload;
    payload = NULL;
    *why = NULL;
    rc = 0;
out:
    jwt_free(decoded);
    json_decref(hdr);
    json_decref(payload);
    return rc;
}

int idp_verify_id_token(const struct idp_client *idp, const char *jwt, const char *nonce,
                        int64_t now, char **claims_json_out, const char **why_out)
{
    json_t *claims = NULL;
    const char *why = NULL;
    *claims_json_out = NULL;
    int rc = verify_jwt(idp, jwt, nonce, now, &claims, &why);
    if (rc == 0) {
        char *text = json_dumps(claims, JSON_COMPACT);
        if (!text)
            GW_PANIC("out of memory (json_dumps)");
        *claims_json_out = xstrdup(text);
        free(text); /* jansson allocates with malloc */
    }
    json_decref(claims);
    if (why_out)
        *why_out = why;
    return rc;
}

/* ---- claim mapping ----------------------------------------------------- */

/*
 * The claim NAME: a top-level member first (Auth0 style names such as
 * "https://example.com/roles" contain dots), else a dotted path into nested
 * objects (Keycloak's "realm_access.roles"). Borrowed or NULL.
 */
static const json_t *claim_get(const json_t *claims, const char *name)
{
    if (!name || !*name)
        return NULL;
    const json_t *v = json_object_get(claims, name);
    if (v || !strchr(name, '.'))
        return v;
    const json_t *cur = claims;
    const char *p = name;
    while (cur && *p) {
        size_t n = strcspn(p, ".");
        char *part = xstrndup(p, n);
        cur = json_is_object(cur) ? json_object_get(cur, part) : NULL;
        free(part);
        p += n;
        if (*p == '.')
            p++;
    }
    return cur;
}

static void list_add_checked(struct mg_string_list *l, const char *s)
{
    if (l->len < IDP_MAX_LIST_ITEMS && claim_text_ok(s) && !mg_string_list_contains(l, s))
        mg_string_list_add(l, s);
}

/*
 * Roles or groups: an array of strings (non-strings skipped), a single
 * string, or a space- or comma-separated string (WSO2 joins multi-valued
 * attributes with commas). False when V has none of these shapes.
 */
static bool claim_to_list(const json_t *v, struct mg_string_list *out)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            const char *item = json_string_value(json_array_get(v, i));
            if (item)
                list_add_checked(out, item);
        }
        return true;
    }
    if (!json_is_string(v))
        return false;
    const char *p = json_string_value(v);
    while (*p) {
        size_t n = strcspn(p, " ,");
        if (n) {
            char *item = xstrndup(p, n);
            list_add_checked(out, item);
            free(item);
        }
        p += n;
        p += strspn(p, " ,");
    }
    return true;
}

static void take_text(char **field, const json_t *claims, const char *name)
{
    const char *s = json_string_value(claim_get(claims, name));
    if (!*field && s && claim_text_ok(s))
        *field = xstrdup(s);
}

/* Fills what ID still lacks from CLAIMS (the ID token first, then userinfo). */
static void identity_fill(struct idp_identity *id, const struct gw_idp_claims *names,
                          const json_t *claims, bool *roles_seen, bool *groups_seen)
{
    take_text(&id->subject, claims, names->subject);
    take_text(&id->username, claims, names->username);
    take_text(&id->email, claims, names->email);
    take_text(&id->name, claims, names->name);
    if (!*roles_seen)
        *roles_seen = claim_to_list(claim_get(claims, names->roles), &id->roles);
    if (!*groups_seen)
        *groups_seen = claim_to_list(claim_get(claims, names->groups), &id->groups);
}

void idp_identity_free(struct idp_identity *id)
{
    if (!id)
        return;
    free(id->subject);
    free(id->username);
    free(id->email);
    free(id->name);
    mg_string_list_clear(&id->roles);
    mg_string_list_clear(&id->groups);
    free_secret(id->access_token);
    free_secret(id->refresh_token);
    free(id);
}

/* ---- discovery and JWKS ------------------------------------------------ */

static void cycle_failed(struct idp_client *idp, const char *msg);
static void on_discovery_done(const struct httpc_response *res, void *arg);
static void jwks_fetch(struct idp_client *idp, bool restart);
static void ops_resume_after_jwks(struct idp_client *idp);

static void fill_request(const struct idp_client *idp, struct httpc_request *req, const char *url)
{
    memset(req, 0, sizeof(*req));
    req->method = "GET";
    req->url = url;
    req->connect_timeout_ms = idp->cfg->timeout_ms;
    req->timeout_ms = idp->cfg->timeout_ms;
    req->max_response_bytes = IDP_MAX_RESPONSE_BYTES;
    req->https_only_except_loopback = true;
}

static void schedule(struct idp_client *idp, uint64_t ms)
{
    if (idp->retired)
        return; /* a retired client refreshes nothing more */
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(idp->timer, &tv);
}

static void discovery_fetch(struct idp_client *idp)
{
    static const struct httpc_header accept = {"Accept", "application/json"};
    if (idp->disc_call)
        return;
    char *url = idp_preset_discovery_url(idp->cfg->issuer);
    struct httpc_request req;
    fill_request(idp, &req, url);
    req.headers = &accept;
    req.n_headers = 1;
    idp->disc_call = httpc_fetch(idp->httpc, &req, on_discovery_done, idp);
    free(url);
}

/* Checks and stores a discovery document. NULL, or an error message (owned). */
static char *discovery_apply(struct idp_client *idp, const struct httpc_response *res)
{
    if (res->error)
        return xasprintf("discovery request failed: %s", res->error);
    if (res->status != 200)
        return xasprintf("discovery answered HTTP %ld", res->status);
    json_t *doc = parse_object(res->body, res->body_len);
    if (!doc)
        return xstrdup("discovery document is not a JSON object");
    char *err = NULL;
    const char *iss = obj_str(doc, "issuer");
    const char *authz = obj_str(doc, "authorization_endpoint");
    const char *token = obj_str(doc, "token_endpoint");
    const char *jwks = obj_str(doc, "jwks_uri");
    const char *userinfo = obj_str(doc, "userinfo_endpoint");
    /* OpenID Connect Discovery 1.0 §4.3: the issuer in the document must be identical to
     * the one the document was requested for; we compare bytes. */
    if (!iss || strcmp(iss, idp->cfg->issuer) != 0) {
        char *got = clean_text(iss ? iss : "(none)");
        err = xasprintf("discovery issuer \"%s\" differs from the configured issuer \"%s\"", got,
                        idp->cfg->issuer);
        free(got);
    } else if (!authz || !endpoint_url_ok(authz)) {
        err = xstrdup("discovery: authorization_endpoint missing or not an https URL");
    } else if (!token || !endpoint_url_ok(token)) {
        err = xstrdup("discovery: token_endpoint missing or not an https URL");
    } else if (!jwks || !endpoint_url_ok(jwks)) {
        err = xstrdup("discovery: jwks_uri missing or not an https URL");
    } else if (json_object_get(doc, "userinfo_endpoint") &&
               (!userinfo || !endpoint_url_ok(userinfo))) {
        err = xstrdup("discovery: userinfo_endpoint is not an https URL");
    }
    if (!err) {
        const json_t *methods = json_object_get(doc, "code_challenge_methods_supported");
        bool s256 = !json_is_array(methods);
        for (size_t i = 0; i < json_array_size(methods); i++) {
            const char *m = json_string_value(json_array_get(methods, i));
            s256 = s256 || (m && strcmp(m, "S256") == 0);
        }
        if (!s256)
            gw_log(GW_LOG_WARN, "idp", NULL, "discovery does not list PKCE S256; logins may fail",
                   NULL);
        free(idp->authorization_endpoint);
        free(idp->token_endpoint);
        free(idp->jwks_uri);
        free(idp->userinfo_endpoint);
        idp->authorization_endpoint = xstrdup(authz);
        idp->token_endpoint = xstrdup(token);
        idp->jwks_uri = xstrdup(jwks);
        idp->userinfo_endpoint = userinfo ? xstrdup(userinfo) : NULL;
        idp->have_discovery = true;
    }
    json_decref(doc);
    return err;
}

static void on_discovery_done(const struct httpc_response *res, void *arg)
{
    struct idp_client *idp = arg;
    idp->disc_call = NULL;
    char *err = discovery_apply(idp, res);
    if (err) {
        cycle_failed(idp, err);
        free(err);
        return;
    }
    idp->cycle_waits_jwks = true;
    jwks_fetch(idp, true);
}

/* A failed discovery or JWKS load: keep what we had, retry with backoff. */
static void cycle_failed(struct idp_client *idp, const char *msg)
{
    set_last_error(idp, msg);
    idp->cycle_waits_jwks = false;
    idp->retry_ms = idp->retry_ms ? idp->retry_ms * 2 : IDP_RETRY_FIRST_MS;
    if (idp->retry_ms > IDP_RETRY_MAX_MS)
        idp->retry_ms = IDP_RETRY_MAX_MS;
    if (idp->cfg->discovery_refresh_ms && idp->retry_ms > idp->cfg->discovery_refresh_ms)
        idp->retry_ms = idp->cfg->discovery_refresh_ms;
    struct gw_log_line *line = gw_log_begin(GW_LOG_WARN, "idp", NULL, "idp metadata load failed");
    gw_log_str(line, "error", msg);
    gw_log_bool(line, "ready", idp_client_ready(idp));
    gw_log_int(line, "retry_ms", (int64_t)idp->retry_ms);
    gw_log_end(line);
    schedule(idp, idp->retry_ms);
}

static void on_jwks_done(const struct httpc_response *res, void *arg)
{
    struct idp_client *idp = arg;
    idp->jwks_call = NULL;
    bool was_ready = idp_client_ready(idp) && !idp->last_error;
    char *err = NULL;
    if (res->error)
        err = xasprintf("JWKS request failed: %s", res->error);
    else if (res->status != 200)
        err = xasprintf("JWKS answered HTTP %ld", res->status);
    else if (memchr(res->body, '\0', res->body_len))
        err = xstrdup("JWKS is not a JSON object with a \"keys\" array");
    else
        idp_load_jwks(idp, res->body, &err);

    bool cycle = idp->cycle_waits_jwks;
    idp->cycle_waits_jwks = false;
    if (err && cycle) {
        cycle_failed(idp, err);
    } else if (err) {
        gw_log(GW_LOG_WARN, "idp", NULL, "JWKS refetch failed; keeping the cached keys", "error",
               err, NULL);
    } else if (cycle) {
        set_last_error(idp, NULL);
        idp->retry_ms = 0;
        struct gw_log_line *line = gw_log_begin(was_ready ? GW_LOG_DEBUG : GW_LOG_INFO, "idp", NULL,
                                                "idp metadata loaded");
        gw_log_str(line, "issuer", idp->cfg->issuer);
        gw_log_str(line, "preset", idp_preset_get(idp->cfg->preset)->name);
        gw_log_int(line, "keys", (int64_t)idp->n_keys);
        gw_log_end(line);
        if (idp->cfg->discovery_refresh_ms)
            schedule(idp, idp->cfg->discovery_refresh_ms);
    } else {
        gw_log(GW_LOG_INFO, "idp", NULL, "JWKS refetched for an unknown kid", NULL);
    }
    free(err);
    ops_resume_after_jwks(idp);
}

/* RESTART: a newer discovery wants its jwks_uri fetched even if a fetch is in flight. */
static void jwks_fetch(struct idp_client *idp, bool restart)
{
    static const struct httpc_header accept = {"Accept", "application/json"};
    if (idp->jwks_call && !restart)
        return;
    httpc_cancel(idp->jwks_call);
    struct httpc_request req;
    fill_request(idp, &req, idp->jwks_uri);
    req.headers = &accept;
    req.n_headers = 1;
    idp->jwks_call = httpc_fetch(idp->httpc, &req, on_jwks_done, idp);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    discovery_fetch(arg);
}

/* ---- logins and refreshes ---------------------------------------------- */

static void op_free(struct idp_op *op)
{
    httpc_cancel(op->call);
    if (op->ev)
        event_free(op->ev);
    free(op->nonce);
    free_secret(op->old_refresh_token);
    free_secret(op->id_token);
    free(op->deferred_error);
    idp_identity_free(op->ident);
    json_decref(op->id_claims);
    free(op);
}

static void op_unlink(struct idp_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        op->idp->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

/*
 * Ends OP: unlinks it first, so the callback may free the client, then runs
 * the callback and frees the op. Only ever called from a loop callback.
 */
static void reap_if_idle(struct idp_client *idp);

static void op_finish(struct idp_op *op, const char *error, bool denied)
{
    /* The callback may free a client that is not retiring; a retiring one is
     * freed only by its reaper, so it may be looked at afterwards. */
    struct idp_client *retiring = op->idp->retired ? op->idp : NULL;
    op_unlink(op);
    if (error)
        op->cb(NULL, error, denied, op->arg);
    else
        op->cb(op->ident, NULL, false, op->arg);
    op_free(op);
    if (retiring)
        reap_if_idle(retiring);
}

/* Logs why OP failed (MSG never holds a secret) and ends it. */
static void op_fail(struct idp_op *op, bool denied, const char *msg)
{
    struct gw_log_line *line = gw_log_begin(
        GW_LOG_WARN, "idp", NULL, op->refresh ? "idp refresh failed" : "idp login failed");
    gw_log_str(line, "error", msg);
    gw_log_bool(line, "access_denied", denied);
    gw_log_end(line);
    op_finish(op, msg, denied);
}

static void op_failf(struct idp_op *op, bool denied, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void op_failf(struct idp_op *op, bool denied, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    op_fail(op, denied, msg);
    free(msg);
}

static void op_verify(struct idp_op *op);

static void on_op_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct idp_op *op = arg;
    if (op->deferred_error) {
        char *msg = op->deferred_error;
        op->deferred_error = NULL;
        op_fail(op, false, msg);
        free(msg);
    } else {
        op_verify(op);
    }
}

static struct idp_op *op_new(struct idp_client *idp, bool refresh, idp_login_fn cb, void *arg)
{
    struct idp_op *op = xcalloc(1, sizeof(*op));
    op->idp = idp;
    op->refresh = refresh;
    op->cb = cb;
    op->arg = arg;
    op->ev = xevtimer_new(idp->base, on_op_event, op);
    op->next = idp->ops;
    if (idp->ops)
        idp->ops->prev = op;
    idp->ops = op;
    return op;
}

/* Reports MSG later from the loop (idp.h: callbacks never run inside the call). */
static void op_fail_later(struct idp_op *op, char *msg)
{
    op->deferred_error = msg;
    event_active(op->ev, EV_TIMEOUT, 1);
}

static void ops_resume_after_jwks(struct idp_client *idp)
{
    for (struct idp_op *op = idp->ops; op; op = op->next) {
        if (op->waiting_jwks) {
            op->waiting_jwks = false;
            event_active(op->ev, EV_TIMEOUT, 1);
        }
    }
}

static void op_complete(struct idp_op *op)
{
    const struct gw_idp_config *cfg = op->idp->cfg;
    if (!op->ident->subject) {
        op_failf(op, false, "the identity has no subject claim \"%s\"", cfg->claims.subject);
        return;
    }
    if (!op->roles_seen) {
        const char *hint = idp_preset_get(cfg->preset)->roles_hint;
        gw_log(GW_LOG_DEBUG, "idp", NULL, "no roles claim for this user", "claim",
               cfg->claims.roles, "hint", hint, NULL);
    }
    op_finish(op, NULL, false);
}

static void on_userinfo_done(const struct httpc_response *res, void *arg)
{
    struct idp_op *op = arg;
    op->call = NULL;
    if (res->error) {
        op_failf(op, false, "userinfo request failed: %s", res->error);
        return;
    }
    if (res->status != 200) {
        op_failf(op, false, "userinfo answered HTTP %ld", res->status);
        return;
    }
    const char *ctype = httpc_response_header(res, "Content-Type");
    if (ctype && strncasecmp(ctype, "application/jwt", 15) == 0) {
        op_failf(op, false, "userinfo answered a signed JWT; only JSON userinfo is supported");
        return;
    }
    json_t *info = parse_object(res->body, res->body_len);
    const char *sub = info ? obj_str(info, "sub") : NULL;
    /* OpenID Connect Core 1.0 §5.3.2: the sub in userinfo must match the ID token's. */
    const char *id_sub = op->id_claims ? obj_str(op->id_claims, "sub") : NULL;
    if (!info || !sub || !*sub) {
        op_failf(op, false, "userinfo is not a JSON object with a sub");
    } else if (id_sub && strcmp(sub, id_sub) != 0) {
        op_failf(op, false, "userinfo sub differs from the ID token's sub");
    } else {
        identity_fill(op->ident, &op->idp->cfg->claims, info, &op->roles_seen, &op->groups_seen);
        op_complete(op);
    }
    json_decref(info);
}

/* The configured role/group claims (or the subject) are missing: ask userinfo. */
static void op_userinfo_or_complete(struct idp_op *op)
{
    struct idp_client *idp = op->idp;
    bool missing = !op->roles_seen || !op->groups_seen || !op->ident->subject;
    bool required = !op->id_claims; /* a refresh without ID token: userinfo is the identity */
    bool possible = idp->userinfo_endpoint && op->ident->access_token;
    if (!possible && required) {
        op_failf(op, false, "the refresh response has no id_token and %s",
                 idp->userinfo_endpoint ? "no access_token" : "the IdP has no userinfo endpoint");
        return;
    }
    if (!possible || !(required || (missing && idp->cfg->use_userinfo))) {
        op_complete(op);
        return;
    }
    char *bearer = xasprintf("Bearer %s", op->ident->access_token);
    struct httpc_header headers[] = {{"Authorization", bearer}, {"Accept", "application/json"}};
    struct httpc_request req;
    fill_request(idp, &req, idp->userinfo_endpoint);
    req.headers = headers;
    req.n_headers = 2;
    op->call = httpc_fetch(idp->httpc, &req, on_userinfo_done, op);
    free_secret(bearer);
}

/* Verifies op->id_token; parks the op on a JWKS refetch for an unknown kid (once). */
static void op_verify(struct idp_op *op)
{
    struct idp_client *idp = op->idp;
    const char *why = NULL;
    json_t *claims = NULL;
    int rc = verify_jwt(idp, op->id_token, op->nonce, (int64_t)time(NULL), &claims, &why);
    if (rc == -EKEYREJECTED && !op->jwks_retried) {
        uint64_t now = time_mono_ms();
        bool allowed =
            idp->kid_refetch_at_ms == 0 || now - idp->kid_refetch_at_ms >= IDP_KID_REFETCH_MIN_MS;
        if (idp->jwks_call || (allowed && idp->jwks_uri)) {
            op->jwks_retried = true;
            op->waiting_jwks = true;
            if (!idp->jwks_call) {
                idp->kid_refetch_at_ms = now ? now : 1;
                jwks_fetch(idp, false);
            }
            return;
        }
    }
    if (rc == -EKEYREJECTED) {
        op_failf(op, false, "ID token rejected: signed with an unknown key (%s; the JWKS %s)", why,
                 op->jwks_retried ? "was refetched" : "was refetched less than 10 s ago");
        return;
    }
    if (rc != 0) {
        op_failf(op, false, "ID token rejected: %s", why);
        return;
    }
    op->id_claims = claims;
    identity_fill(op->ident, &idp->cfg->claims, claims, &op->roles_seen, &op->groups_seen);
    op_userinfo_or_complete(op);
}

/* RFC 6749 §5.2 error response: access_denied is true when the grant itself was refused. */
static void op_token_error(struct idp_op *op, const struct httpc_response *res, json_t *body)
{
    const char *error = body ? obj_str(body, "error") : NULL;
    const char *desc = body ? obj_str(body, "error_description") : NULL;
    if (!error) {
        op_failf(op, false, "token endpoint answered HTTP %ld", res->status);
        return;
    }
    bool denied = strcmp(error, "invalid_grant") == 0 || strcmp(error, "access_denied") == 0;
    char *e = clean_text(error), *d = clean_text(desc ? desc : "");
    op_failf(op, denied, "token endpoint refused the %s: %s%s%s",
             op->refresh ? "refresh token" : "authorization code", e, *d ? ": " : "", d);
    free(e);
    free(d);
}

static void on_token_done(const struct httpc_response *res, void *arg)
{
    struct idp_op *op = arg;
    op->call = NULL;
    if (res->error) {
        op_failf(op, false, "token endpoint unreachable: %s", res->error);
        return;
    }
    json_t *body = parse_object(res->body, res->body_len);
    if (res->status != 200) {
        op_token_error(op, res, body);
        json_decref(body);
        return;
    }
    const char *access = body ? obj_str(body, "access_token") : NULL;
    const char *refresh = body ? obj_str(body, "refresh_token") : NULL;
    const char *id_token = body ? obj_str(body, "id_token") : NULL;
    const char *type = body ? obj_str(body, "token_type") : NULL;
    const json_t *expires_in = body ? json_object_get(body, "expires_in") : NULL;
    if (!body || !access) {
        op_failf(op, false, "token response is not a JSON object with an access_token");
    } else if (type && strcasecmp(type, "Bearer") != 0) {
        op_failf(op, false, "token response has token_type other than Bearer");
    } else if (!op->refresh && !id_token) {
        op_failf(op, false, "token response has no id_token (is the openid scope requested?)");
    } else {
        struct idp_identity *id = op->ident;
        id->access_token = xstrdup(access);
        /* A refresh response may omit refresh_token: the old one stays valid (RFC 6749 §6). */
        id->refresh_token = refresh                 ? xstrdup(refresh)
                            : op->old_refresh_token ? xstrdup(op->old_refresh_token)
                                                    : NULL;
        if (json_is_integer(expires_in) && json_integer_value(expires_in) > 0 &&
            json_integer_value(expires_in) < IDP_MAX_NUMERIC_DATE)
            id->access_expires_at = (uint64_t)time(NULL) + (uint64_t)json_integer_value(expires_in);
        if (id_token) {
            op->id_token = xstrdup(id_token);
            op_verify(op);
        } else {
            op_userinfo_or_complete(op);
        }
    }
    json_decref(body);
}

/* POSTs FORM (wiped by the caller) to the token endpoint with the configured client auth. */
static void op_post_token(struct idp_op *op, struct strbuf *form)
{
    struct idp_client *idp = op->idp;
    const struct gw_idp_config *cfg = idp->cfg;
    char *user = NULL, *password = NULL;
    static const struct httpc_header headers[] = {
        {"Content-Type", "application/x-www-form-urlencoded"},
        {"Accept", "application/json"},
    };
    if (cfg->token_auth == GW_TOKEN_AUTH_CLIENT_SECRET_POST) {
        form_add(form, "client_id", cfg->client_id);
        form_add(form, "client_secret", cfg->client_secret);
    } else {
        /* RFC 6749 §2.3.1: id and secret are form-encoded, then joined for HTTP Basic. */
        user = pct_encode_new(cfg->client_id, true);
        password = pct_encode_new(cfg->client_secret, true);
    }
    struct httpc_request req;
    fill_request(idp, &req, idp->token_endpoint);
    req.method = "POST";
    req.headers = headers;
    req.n_headers = sizeof(headers) / sizeof(headers[0]);
    req.body = form->buf;
    req.body_len = form->len;
    req.basic_user = user;
    req.basic_password = password;
    op->call = httpc_fetch(idp->httpc, &req, on_token_done, op);
    free(user);
    free_secret(password);
}

void idp_login(struct idp_client *idp, const char *code, const char *redirect_uri,
               const char *code_verifier, const char *nonce, idp_login_fn cb, void *arg)
{
    struct idp_op *op = op_new(idp, false, cb, arg);
    op->ident = xcalloc(1, sizeof(*op->ident));
    if (!idp->have_discovery) {
        op_fail_later(op, xasprintf("identity provider metadata not loaded yet%s%s",
                                    idp->last_error ? ": " : "",
                                    idp->last_error ? idp->last_error : ""));
        return;
    }
    if (!code || !*code || !redirect_uri || !code_verifier || !nonce || !*nonce) {
        op_fail_later(op, xstrdup("login without code, redirect_uri, code_verifier or nonce"));
        return;
    }
    op->nonce = xstrdup(nonce);
    struct strbuf form = STRBUF_INIT;
    form_add(&form, "grant_type", "authorization_code"); /* RFC 6749 §4.1.3 */
    form_add(&form, "code", code);
    form_add(&form, "redirect_uri", redirect_uri);
    form_add(&form, "code_verifier", code_verifier); /* RFC 7636 §4.5 */
    op_post_token(op, &form);
    strbuf_release_secret(&form);
}

void idp_refresh(struct idp_client *idp, const char *refresh_token, idp_login_fn cb, void *arg)
{
    struct idp_op *op = op_new(idp, true, cb, arg);
    op->ident = xcalloc(1, sizeof(*op->ident));
    if (!idp->have_discovery) {
        op_fail_later(op, xstrdup("identity provider metadata not loaded yet"));
        return;
    }
    if (!refresh_token || !*refresh_token) {
        op_fail_later(op, xstrdup("refresh without a refresh token"));
        return;
    }
    op->old_refresh_token = xstrdup(refresh_token);
    struct strbuf form = STRBUF_INIT;
    form_add(&form, "grant_type", "refresh_token"); /* RFC 6749 §6 */
    form_add(&form, "refresh_token", refresh_token);
    op_post_token(op, &form);
    strbuf_release_secret(&form);
}

/* ---- the client --------------------------------------------------------- */

struct idp_client *idp_client_new(struct event_base *base, struct httpc *httpc,
                                  const struct gw_idp_config *cfg, char **err_out)
{
    const char *err = NULL;
    if (!base || !httpc || !cfg)
        err = "idp: no event base, HTTP client or config";
    else if (!cfg->issuer || !*cfg->issuer)
        err = "idp: no issuer";
    else if (!cfg->client_id || !*cfg->client_id)
        err = "idp: no client_id";
    else if (!cfg->client_secret || !*cfg->client_secret)
        err = "idp: no client_secret (mcpgate is a confidential client)";
    else if (!endpoint_url_ok(cfg->issuer))
        err = "idp: the issuer must be an https URL (http only for loopback)";
    if (err) {
        if (err_out)
            *err_out = xstrdup(err);
        return NULL;
    }
    struct idp_client *idp = xcalloc(1, sizeof(*idp));
    idp->base = base;
    idp->httpc = httpc;
    idp->cfg = cfg;
    idp->timer = xevtimer_new(base, on_timer, idp);
    return idp;
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct idp_client *idp = arg;
    (void)fd;
    (void)what;
    void (*done)(void *) = idp->retired;
    void *done_arg = idp->retired_arg;
    idp_client_free(idp);
    done(done_arg);
}

/* A retired client with nothing in flight ends, from the loop. */
static void reap_if_idle(struct idp_client *idp)
{
    if (idp->retired && idp->ops == NULL && idp->reaper == NULL) {
        idp->reaper = xevtimer_new(idp->base, on_reap, idp);
        struct timeval now = {0, 0};
        event_add(idp->reaper, &now);
    }
}

void idp_client_retire(struct idp_client *idp, void (*done)(void *arg), void *arg)
{
    GW_ASSERT(done != NULL && idp->retired == NULL);
    idp->retired = done;
    idp->retired_arg = arg;
    event_del(idp->timer);
    /* A JWKS fetch in flight is left to finish: a login may be waiting for it. */
    httpc_cancel(idp->disc_call);
    idp->disc_call = NULL;
    reap_if_idle(idp);
}

static bool same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

bool idp_config_same_provider(const struct gw_idp_config *a, const struct gw_idp_config *b)
{
    return a->configured == b->configured && a->preset == b->preset &&
           a->token_auth == b->token_auth && same_str(a->issuer, b->issuer) &&
           same_str(a->organization, b->organization) && same_str(a->base_url, b->base_url) &&
           same_str(a->client_id, b->client_id) && same_str(a->client_secret, b->client_secret);
}

void idp_client_free(struct idp_client *idp)
{
    if (!idp)
        return;
    if (idp->reaper)
        event_free(idp->reaper);
    /* Pending logins are dropped without their callbacks (their owners are going away). */
    while (idp->ops) {
        struct idp_op *op = idp->ops;
        op_unlink(op);
        op_free(op);
    }
    httpc_cancel(idp->disc_call);
    httpc_cancel(idp->jwks_call);
    event_free(idp->timer);
    keys_free(idp->keys, idp->n_keys);
    free(idp->authorization_endpoint);
    free(idp->token_endpoint);
    free(idp->userinfo_endpoint);
    free(idp->jwks_uri);
    free(idp->last_error);
    free(idp);
}

void idp_client_start(struct idp_client *idp)
{
    if (idp->started)
        return;
    idp->started = true;
    discovery_fetch(idp);
}

bool idp_client_ready(const struct idp_client *idp)
{
    return idp->have_discovery && idp->have_keys;
}

const char *idp_client_last_error(const struct idp_client *idp)
{
    return idp->last_error;
}

void idp_client_set_config(struct idp_client *idp, const struct gw_idp_config *cfg)
{
    uint64_t old_refresh = idp->cfg->discovery_refresh_ms;
    idp->cfg = cfg;
    if (old_refresh != cfg->discovery_refresh_ms && idp_client_ready(idp) && !idp->disc_call &&
        !idp->jwks_call && cfg->discovery_refresh_ms)
        schedule(idp, cfg->discovery_refresh_ms);
}

char *idp_authorize_url(const struct idp_client *idp, const char *redirect_uri, const char *state,
                        const char *nonce, const char *code_challenge)
{
    if (!idp->have_discovery)
        return NULL;
    const struct gw_idp_config *cfg = idp->cfg;
    struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, idp->authorization_endpoint);
    strbuf_puts(&sb, strchr(idp->authorization_endpoint, '?') ? "&" : "?");
    /* OpenID Connect Core 1.0 §3.1.2.1, RFC 7636 §4.3. */
    const char *names[] = {"response_type", "client_id", "redirect_uri",   "scope",
                           "state",         "nonce",     "code_challenge", NULL};
    struct strbuf scopes = STRBUF_INIT;
    for (size_t i = 0; i < cfg->scopes.len; i++) {
        if (i)
            strbuf_puts(&scopes, " ");
        strbuf_puts(&scopes, cfg->scopes.items[i]);
    }
    char *scope = strbuf_detach(&scopes, NULL);
    const char *values[] = {"code", cfg->client_id, redirect_uri,  scope,
                            state,  nonce,          code_challenge};
    for (size_t i = 0; names[i]; i++) {
        if (i)
            strbuf_puts(&sb, "&");
        strbuf_puts(&sb, names[i]);
        strbuf_puts(&sb, "=");
        pct_append(&sb, values[i] ? values[i] : "", false);
    }
    strbuf_puts(&sb, "&code_challenge_method=S256");
    free(scope);
    return strbuf_detach(&sb, NULL);
}
