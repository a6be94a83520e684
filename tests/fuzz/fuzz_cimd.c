/*
 * fuzz_cimd: Client ID Metadata Documents (oauth/cimd.c), which read what any
 * https server named by a client_id serves. The input is split at its first
 * newline into a client_id URL and the document (no newline: the URL is a
 * fixed one and the whole input is the document). The Cache-Control parser
 * reads the URL part too.
 *
 * Checked: no crash or leak; an accepted document has client_id equal to the
 * URL, a name, only registrable redirect URIs, auth none and
 * authorization_code among at most two known grant types.
 */
#include "tests/fuzz/fuzz.h"

#include "oauth/cimd.h"
#include "oauth/redirect_uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cut = 0;
    while (cut < size && data[cut] != '\n')
        cut++;
    char *url = cut < size ? fuzz_strndup(data, cut) : strdup("https://app.example/client.json");
    const uint8_t *doc = cut < size ? data + cut + 1 : data;
    size_t doc_len = cut < size ? size - cut - 1 : size;
    (void)oauth_cimd_url_problem(url);
    (void)oauth_cimd_is_url(url);
    free(oauth_cimd_host(url));
    uint64_t ttl = oauth_cimd_cache_ttl_ms(url);
    FUZZ_CHECK(ttl >= OAUTH_CIMD_TTL_MIN_MS && ttl <= OAUTH_CIMD_TTL_MAX_MS, "ttl %llu",
               (unsigned long long)ttl);
    char *why = NULL;
    struct oauth_client *c = oauth_cimd_parse(url, (const char *)doc, doc_len, &why);
    FUZZ_CHECK((c == NULL) != (why == NULL), "a client and a reason, or neither");
    if (c) {
        FUZZ_CHECK(strcmp(c->client_id, url) == 0, "client_id differs from the URL");
        FUZZ_CHECK(c->client_name && c->client_name[0], "no client_name");
        FUZZ_CHECK(c->auth == GW_CLIENT_AUTH_NONE && c->secret_sha256 == NULL, "not public");
        FUZZ_CHECK(c->redirect_uris.len > 0, "no redirect URIs");
        for (size_t i = 0; i < c->redirect_uris.len; i++)
            FUZZ_CHECK(oauth_redirect_uri_check(c->redirect_uris.items[i]) == NULL,
                       "unregistrable redirect URI %s", c->redirect_uris.items[i]);
        FUZZ_CHECK(oauth_client_allows_grant(c, "authorization_code") && c->grant_types.len <= 2,
                   "grant types");
    }
    oauth_client_free(c);
    free(why);
    free(url);
    return 0;
}
