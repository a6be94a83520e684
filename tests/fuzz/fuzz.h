/*
 * fuzz.h: what every libFuzzer driver in tests/fuzz/ shares (house style:
 * h2o-like fuzz drivers with seed corpora, one per parser of outside input).
 *
 * A driver defines LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize when it
 * needs setup); `make fuzz` links it with the project's sources built with
 * -fsanitize=fuzzer-no-link,address,undefined. ASan's leak check runs after
 * every input, so a driver frees everything it is handed.
 *
 * FUZZ_CHECK is the driver's own oracle: a property the code under test
 * promises (a round trip, a contract in a header). A failed check prints
 * what broke and aborts, which libFuzzer records as a crash with its input.
 */
#ifndef MCPGATE_TESTS_FUZZ_FUZZ_H
#define MCPGATE_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* libFuzzer's entry points (declared here for -Wmissing-prototypes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/*
 * OpenSSL's OPENSSL_cleanse is assembly in an uninstrumented library: a wipe
 * past the end of a buffer or of freed memory would corrupt the heap without
 * a word from ASan (and crash much later, somewhere else). The driver's own
 * definition takes its place for the project's code, so ASan checks every
 * wipe where it happens. memset through a volatile pointer is not elided.
 */
void OPENSSL_cleanse(void *ptr, size_t len)
{
    void *(*volatile wipe)(void *, int, size_t) = memset;
    wipe(ptr, 0, len);
}

/* The input as a NUL-terminated string (owned; it stops at an inner NUL when read as one). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
