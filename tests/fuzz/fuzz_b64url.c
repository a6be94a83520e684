/*
 * fuzz_b64url: base64url decoding (common/b64url.c), which reads JWT
 * segments, PKCE verifiers and our own tokens from outside, and the standard
 * base64 of HTTP Basic credentials.
 *
 * Checked: no crash or leak, and the strictness b64url.h promises: whatever
 * b64url_decode_new accepts encodes back to exactly the input (no second
 * spelling of one byte string, so tokens cannot be varied to dodge a
 * lookup), b64url_is_valid agrees with it, and encoding any bytes decodes
 * back to them (both alphabets).
 */
#include "tests/fuzz/fuzz.h"

#include "common/b64url.h"

static void url_decode_side(const uint8_t *data, size_t size)
{
    size_t n = (size_t)-1;
    unsigned char *raw = b64url_decode_new((const char *)data, size, &n);
    if (raw == NULL)
        return;
    FUZZ_CHECK(b64url_is_valid((const char *)data, size), "decoded, yet not valid");
    FUZZ_CHECK(n <= size, "%zu bytes out of %zu characters", n, size);
    FUZZ_CHECK(raw[n] == '\0', "result not NUL-terminated");
    char *again = b64url_encode_new(raw, n);
    FUZZ_CHECK(strlen(again) == size && memcmp(again, data, size) == 0,
               "round trip: %zu characters decoded to %zu bytes that encode to \"%s\"", size, n,
               again);
    free(again);
    free(raw);
}

static void url_encode_side(const uint8_t *data, size_t size)
{
    char *text = b64url_encode_new(data, size);
    size_t len = strlen(text);
    FUZZ_CHECK(len == b64url_encoded_len(size), "encoded length %zu", len);
    FUZZ_CHECK(b64url_is_valid(text, len), "own encoding not valid: %s", text);
    size_t n = 0;
    unsigned char *raw = b64url_decode_new(text, len, &n);
    FUZZ_CHECK(raw && n == size && (size == 0 || memcmp(raw, data, size) == 0),
               "own encoding does not decode back: %s", text);
    free(raw);
    free(text);
}

static void std_side(const uint8_t *data, size_t size)
{
    size_t n = 0;
    /* Lenient on purpose (Basic credentials): no canonical-form check, only no crash. */
    free(b64std_decode_new((const char *)data, size, &n));
    char *text = b64std_encode_new(data, size);
    unsigned char *raw = b64std_decode_new(text, strlen(text), &n);
    FUZZ_CHECK(raw && n == size && (size == 0 || memcmp(raw, data, size) == 0),
               "standard base64 does not decode back: %s", text);
    free(raw);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    url_decode_side(data, size);
    url_encode_side(data, size);
    std_side(data, size);
    return 0;
}
