/* crypto: fixed-parameter wrappers over OpenSSL 3 (EVP). */
#include "common/crypto.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#include "common/rand.h"

/*
 * OpenSSL 3's one-shot SHA256() looks its implementation up in the provider
 * store on every call (EVP_Q_digest -> EVP_MD_fetch): half of the cost of
 * hashing a bearer token, which happens on every authenticated request. The
 * implementation is fetched once and kept for the life of the process.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN])
{
    pthread_once(&sha256_once, sha256_fetch);
    unsigned int n = CRYPTO_SHA256_LEN;
    if (sha256_md == NULL || EVP_Digest(data, len, out, &n, sha256_md, NULL) != 1)
        SHA256(data, len, out); /* the slow path still gives the right answer */
}

void crypto_sha256_hex(const char *text, char out[65])
{
    unsigned char d[CRYPTO_SHA256_LEN];
    crypto_sha256(text, strlen(text), d);
    hex_encode(d, sizeof(d), out);
}

void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[CRYPTO_SHA256_LEN])
{
    unsigned int n = CRYPTO_SHA256_LEN;
    HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n);
}

int crypto_hkdf(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
                const char *info, unsigned char *out, size_t out_len)
{
    int rc = -EIO;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (ctx == NULL)
        goto out;
    OSSL_PARAM params[5];
    int i = 0;
    params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    params[i++] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
    params[i] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, out, out_len, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

int crypto_seal(const unsigned char key[CRYPTO_KEY_LEN], const void *aad, size_t aad_len,
                const void *plain, size_t len, unsigned char *out)
{
    int rc = -EIO, n = 0;
    unsigned char *nonce = out, *ct = out + CRYPTO_GCM_NONCE_LEN, *tag = ct + len;
    rand_bytes(nonce, CRYPTO_GCM_NONCE_LEN);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
        goto out;
    if (aad_len && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
        goto out;
    if (len && EVP_EncryptUpdate(ctx, ct, &n, plain, (int)len) != 1)
        goto out;
    if (EVP_EncryptFinal_ex(ctx, ct + n, &n) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_GCM_TAG_LEN, tag) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int crypto_open(const unsigned char key[CRYPTO_KEY_LEN], const void *aad, size_t aad_len,
                const unsigned char *sealed, size_t sealed_len, unsigned char *plain)
{
    if (sealed_len < CRYPTO_SEALED_LEN(0))
        return -EBADMSG;
    int rc = -EBADMSG, n = 0;
    size_t len = sealed_len - CRYPTO_SEALED_LEN(0);
    const unsigned char *nonce = sealed, *ct = sealed + CRYPTO_GCM_NONCE_LEN, *tag = ct + len;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1)
        goto out;
    if (aad_len && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
        goto out;
    if (len && EVP_DecryptUpdate(ctx, plain, &n, ct, (int)len) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_GCM_TAG_LEN, (void *)tag) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(ctx, plain + n, &n) != 1)
        goto out; /* tag mismatch: forged or wrong key */
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    if (rc != 0 && len)
        OPENSSL_cleanse(plain, len);
    return rc;
}

bool crypto_equal(const void *a, size_t a_len, const void *b, size_t b_len)
{
    if (a_len != b_len)
        return false;
    return CRYPTO_memcmp(a, b, a_len) == 0;
}

bool crypto_str_equal(const char *a, const char *b)
{
    return crypto_equal(a, strlen(a), b, strlen(b));
}

void crypto_wipe(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
}
