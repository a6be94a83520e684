/*
 * rand: cryptographically secure random bytes (OpenSSL's CSPRNG). A failure
 * of the generator aborts: nothing in mcpgate may continue with weak ids.
 */
#ifndef MCPGATE_COMMON_RAND_H
#define MCPGATE_COMMON_RAND_H

#include <stddef.h>

void rand_bytes(void *buf, size_t len);
/* Writes 2*nbytes lowercase hex digits and a NUL to out (out holds 2*nbytes+1). */
void rand_hex(char *out, size_t nbytes);
/* Lowercase hex of LEN bytes into out (2*len+1 bytes). */
void hex_encode(const void *bytes, size_t len, char *out);

/* Characters of a random handle: 256 bits in base64url. */
#define RAND_HANDLE_LEN 43
/* A random opaque handle (43 base64url chars + NUL) for ids and one-time
 * values; it never starts with '-' or '_' (ids reach command lines). */
void rand_handle(char out[RAND_HANDLE_LEN + 1]);

#endif
