/* rand: random bytes from OpenSSL's CSPRNG, and hex encoding. */
#include "common/rand.h"

#include <openssl/rand.h>

#include "common/b64url.h"
#include "common/panic.h"

void rand_bytes(void *buf, size_t len)
{
    if (len > 0 && RAND_bytes(buf, (int)len) != 1)
        GW_PANIC("the random number generator failed");
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

void rand_handle(char out[RAND_HANDLE_LEN + 1])
{
    unsigned char raw[32];
    rand_bytes(raw, sizeof(raw));
    b64url_encode(raw, sizeof(raw), out);
    /* Ids end up on command lines (mcpgate grants revoke ID): never let one
     * start like an option. Costs well under one bit of 256. */
    if (out[0] == '-' || out[0] == '_')
        out[0] = out[0] == '-' ? 'A' : 'B';
}
