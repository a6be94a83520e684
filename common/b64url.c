/* b64url: RFC 4648 §5 on top of OpenSSL's base64 block coder. */
#include "common/b64url.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

size_t b64url_encoded_len(size_t n)
{
    return (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void b64url_encode(const void *data, size_t len, char *out)
{
    size_t padded = 4 * ((len + 2) / 3);
    char *tmp = xmalloc(padded + 1);
    EVP_EncodeBlock((unsigned char *)tmp, data, (int)len);
    size_t n = b64url_encoded_len(len);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i];
    out[n] = '\0';
    free(tmp);
}

char *b64url_encode_new(const void *data, size_t len)
{
    char *out = xmalloc(b64url_encoded_len(len) + 1);
    b64url_encode(data, len, out);
    return out;
}

bool b64url_is_valid(const char *text, size_t len)
{
    if (len % 4 == 1)
        return false; /* no byte count encodes to 4k+1 characters */
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

unsigned char *b64url_decode_new(const char *text, size_t len, size_t *out_len)
{
    if (!b64url_is_valid(text, len))
        return NULL;
    size_t pad = (4 - len % 4) % 4;
    char *tmp = xmalloc(len + pad + 1);
    for (size_t i = 0; i < len; i++)
        tmp[i] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
    memset(tmp + len, '=', pad);
    tmp[len + pad] = '\0';
    unsigned char *out = xmalloc((len + pad) / 4 * 3 + 1);
    int n = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)(len + pad));
    free(tmp);
    if (n < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the bytes that padding stands for; drop them. */
    size_t bytes = (size_t)n - pad;
    /* Reject non-canonical encodings (stray low bits in the last character). */
    char *check = b64url_encode_new(out, bytes);
    bool canonical = strlen(check) == len && memcmp(check, text, len) == 0;
    free(check);
    if (!canonical) {
        free(out);
        return NULL;
    }
    out[bytes] = '\0';
    *out_len = bytes;
    return out;
}

unsigned char *b64std_decode_new(const char *text, size_t len, size_t *out_len)
{
    if (len % 4 != 0)
        return NULL;
    size_t pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '+' || c == '/';
        if (c == '=' && i + 2 >= len && (pad > 0 || i >= len - 2))
            pad++;
        else if (!alpha || pad > 0)
            return NULL;
    }
    unsigned char *out = xmalloc(len / 4 * 3 + 1);
    int n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
    if (n < 0 || (size_t)n < pad) {
        free(out);
        return NULL;
    }
    *out_len = (size_t)n - pad;
    out[*out_len] = '\0';
    return out;
}

char *b64std_encode_new(const void *data, size_t len)
{
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}
