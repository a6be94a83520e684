/*
 * fuzz_redirect_uri: the redirect URI rules (oauth/redirect_uri.c), which
 * read what any client sends to /register and /authorize. The input is
 * split at its first NUL or newline into a registered and a presented URI
 * (no separator: both are the whole input).
 *
 * Checked: no crash or leak, and what the header promises: a URI matches
 * itself; a presented URI that matches a different registered one is itself
 * registrable and has no fragment (RFC 8252 §7.3 relaxes only the port).
 */
#include "tests/fuzz/fuzz.h"

#include "common/net.h"
#include "oauth/redirect_uri.h"

static void one(const char *uri)
{
    (void)oauth_redirect_uri_check(uri);
    (void)net_host_is_loopback(uri);
    free(oauth_redirect_uri_display_host(uri));
    FUZZ_CHECK(oauth_redirect_uri_matches(uri, uri), "a URI does not match itself");
}

static void pair(const char *registered, const char *presented)
{
    if (!oauth_redirect_uri_matches(registered, presented) || strcmp(registered, presented) == 0)
        return;
    const char *why = oauth_redirect_uri_check(presented);
    FUZZ_CHECK(why == NULL, "\"%s\" matched \"%s\" but may not be registered: %s", presented,
               registered, why);
    FUZZ_CHECK(strchr(presented, '#') == NULL, "\"%s\" matched with a fragment", presented);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cut = 0;
    while (cut < size && data[cut] != '\0' && data[cut] != '\n')
        cut++;
    char *a = fuzz_strndup(data, cut);
    char *b = cut < size ? fuzz_strndup(data + cut + 1, size - cut - 1) : fuzz_strndup(data, cut);
    one(a);
    one(b);
    pair(a, b);
    pair(b, a);
    free(a);
    free(b);
    return 0;
}
