/* jws: ES256 keys, signing and JWK export with OpenSSL 3. */
#include "common/jws.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/b64url.h"
#include "common/crypto.h"
#include "common/panic.h"
#include "common/xalloc.h"

struct jws_key {
    EVP_PKEY *pkey; /* owned */
    char *kid;      /* owned */
    char *x, *y;    /* owned: base64url coordinates */
};

static char *openssl_error(const char *what)
{
    char detail[256];
    ERR_error_string_n(ERR_get_error(), detail, sizeof(detail));
    return xasprintf("%s: %s", what, detail);
}

static char *coordinate(const EVP_PKEY *pkey, const char *name)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, name, &bn))
        return NULL;
    unsigned char buf[32];
    int ok = BN_bn2binpad(bn, buf, sizeof(buf)) == (int)sizeof(buf);
    BN_free(bn);
    return ok ? b64url_encode_new(buf, sizeof(buf)) : NULL;
}

struct jws_key *jws_key_load(const char *pem_path, char **err_out)
{
    FILE *f = fopen(pem_path, "r");
    if (f == NULL) {
        *err_out = xasprintf("cannot read %s: %s", pem_path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    char curve[32] = "";
    size_t curve_len = 0;
    if (pkey == NULL) {
        *err_out = openssl_error(pem_path);
        return NULL;
    }
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC ||
        !EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve),
                                        &curve_len) ||
        strcmp(curve, "prime256v1") != 0) {
        *err_out =
            xasprintf("%s: not an EC P-256 private key (write one with mcpgate keygen)", pem_path);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    struct jws_key *k = xcalloc(1, sizeof(*k));
    k->pkey = pkey;
    k->x = coordinate(pkey, OSSL_PKEY_PARAM_EC_PUB_X);
    k->y = coordinate(pkey, OSSL_PKEY_PARAM_EC_PUB_Y);
    if (k->x == NULL || k->y == NULL) {
        *err_out = openssl_error(pem_path);
        jws_key_free(k);
        return NULL;
    }
    /* RFC 7638: SHA-256 over the required members in lexicographic order, no spaces. */
    char *canonical =
        xasprintf("{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", k->x, k->y);
    unsigned char digest[CRYPTO_SHA256_LEN];
    crypto_sha256(canonical, strlen(canonical), digest);
    k->kid = b64url_encode_new(digest, sizeof(digest));
    free(canonical);
    return k;
}

void jws_key_free(struct jws_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey);
    free(k->kid);
    free(k->x);
    free(k->y);
    free(k);
}

const char *jws_key_id(const struct jws_key *k)
{
    return k->kid;
}

json_t *jws_key_public_jwk(const struct jws_key *k)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", k->x,
                     "y", k->y, "kid", k->kid, "alg", "ES256", "use", "sig");
}

/* DER ECDSA-Sig-Value → the 64-byte r||s of JWS. */
static bool der_to_raw(const unsigned char *der, size_t der_len, unsigned char raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (sig == NULL)
        return false;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    bool ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok;
}

char *jws_sign(const struct jws_key *k, const json_t *payload)
{
    json_t *header = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", "JWT", "kid", k->kid);
    char *h = json_dumps(header, JSON_COMPACT);
    char *pl = json_dumps(payload, JSON_COMPACT);
    json_decref(header);
    char *h64 = b64url_encode_new(h, strlen(h));
    char *p64 = b64url_encode_new(pl, strlen(pl));
    char *signing_input = xasprintf("%s.%s", h64, p64);
    free(h);
    free(pl);
    free(h64);
    free(p64);

    char *out = NULL;
    unsigned char der[128], raw[64];
    size_t der_len = sizeof(der);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
        EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)signing_input,
                       strlen(signing_input)) == 1 &&
        der_to_raw(der, der_len, raw)) {
        char *s64 = b64url_encode_new(raw, sizeof(raw));
        out = xasprintf("%s.%s", signing_input, s64);
        free(s64);
    }
    EVP_MD_CTX_free(ctx);
    free(signing_input);
    if (out == NULL)
        GW_PANIC("ES256 signing failed with a loaded P-256 key");
    return out;
}

int jws_keygen(const char *path, char **err_out)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    if (pkey == NULL) {
        *err_out = openssl_error("key generation");
        return -EIO;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        *err_out = xasprintf("cannot create %s: %s", path, strerror(e));
        EVP_PKEY_free(pkey);
        return -e;
    }
    FILE *f = fdopen(fd, "w");
    int ok = f && PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
    if (f == NULL)
        close(fd);
    else if (fclose(f) != 0)
        ok = 0;
    EVP_PKEY_free(pkey);
    if (!ok) {
        *err_out = xasprintf("cannot write %s", path);
        unlink(path);
        return -EIO;
    }
    return 0;
}
