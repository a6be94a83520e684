/*
 * b64url: base64url without padding (RFC 4648 §5), as used by PKCE, JWTs
 * and our tokens. Decoding is strict: only the URL-safe alphabet, no '=',
 * no whitespace, and no length that cannot come from an encoding.
 */
#ifndef MCPGATE_COMMON_B64URL_H
#define MCPGATE_COMMON_B64URL_H

#include <stdbool.h>
#include <stddef.h>

/* Encoded length of N bytes (no padding), not counting the NUL. */
size_t b64url_encoded_len(size_t n);
/* Writes b64url_encoded_len(len) chars and a NUL into out. */
void b64url_encode(const void *data, size_t len, char *out);
/* Owned by the caller. */
char *b64url_encode_new(const void *data, size_t len);
/* Decodes TEXT (LEN chars) into a new buffer (owned, NUL-terminated for
 * convenience); *out_len gets the byte count. NULL when TEXT is not strict b64url. */
unsigned char *b64url_decode_new(const char *text, size_t len, size_t *out_len);
bool b64url_is_valid(const char *text, size_t len);
/* Standard base64 with padding (RFC 4648 §4), as in HTTP Basic credentials. */
unsigned char *b64std_decode_new(const char *text, size_t len, size_t *out_len);
char *b64std_encode_new(const void *data, size_t len);

#endif
