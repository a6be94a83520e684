/* rand: random bytes from OpenSSL's CSPRNG, and hex encoding. */
#include "common/rand.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>

void rand_bytes(void *buf, size_t len)
{
    if (len > 0 && RAND_bytes(buf, (int)len) != 1) {
        fprintf(stderr, "mcpgate: the random number generator failed\n");
        abort();
    }
}

void hex_encode(const void *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = bytes;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * len] = '\0';
}

void rand_hex(char *out, size_t nbytes)
{
    unsigned char buf[64];
    while (nbytes > 0) {
        size_t n = nbytes < sizeof(buf) ? nbytes : sizeof(buf);
        rand_bytes(buf, n);
        hex_encode(buf, n, out);
        out += 2 * n;
        nbytes -= n;
    }
}
