/*
 * url: URL splitting through libcurl's URL API, and percent-coding (url.h).
 */
#include "common/url.h"

#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "common/xalloc.h"

static char *take(char *curl_owned)
{
    char *s = curl_owned ? xstrdup(curl_owned) : NULL;
    curl_free(curl_owned);
    return s;
}

void url_parts_clear(struct url_parts *u)
{
    free(u->scheme);
    free(u->user);
    free(u->host);
    free(u->port);
    free(u->path);
    free(u->query);
    free(u->fragment);
    memset(u, 0, sizeof(*u));
}

const char *url_after_authority(const char *uri)
{
    const char *a = strstr(uri, "://");
    return a ? a + 3 + strcspn(a + 3, "/?#") : NULL;
}

bool url_split(const char *uri, struct url_parts *u)
{
    memset(u, 0, sizeof(*u));
    const char *authority = strstr(uri, "://");
    if (authority &&
        (authority[3] == '/' || authority[3] == '\0' || authority[3] == '?' || authority[3] == '#'))
        return false;
    CURLU *h = curl_url();
    if (h == NULL)
        return false;
    bool ok = curl_url_set(h, CURLUPART_URL, uri, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK;
    if (ok) {
        char *v[7] = {0};
        static const CURLUPart parts[7] = {CURLUPART_SCHEME,  CURLUPART_USER, CURLUPART_HOST,
                                           CURLUPART_PORT,    CURLUPART_PATH, CURLUPART_QUERY,
                                           CURLUPART_FRAGMENT};
        for (int i = 0; i < 7; i++)
            curl_url_get(h, parts[i], &v[i], 0);
        u->scheme = take(v[0]);
        u->user = take(v[1]);
        u->host = take(v[2]);
        u->port = take(v[3]);
        u->path = take(v[4]);
        u->query = take(v[5]);
        u->fragment = take(v[6]);
    }
    curl_url_cleanup(h);
    return ok;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *url_pct_decode(const char *s, size_t n, bool plus_is_space, size_t *out_len)
{
    char *out = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0')
            goto bad;
        if (s[i] == '+' && plus_is_space) {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 1 < n ? hex_value(s[i + 1]) : -1;
            int lo = i + 2 < n ? hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto bad;
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
bad:
    OPENSSL_cleanse(out, n + 1); /* it may have held a password */
    free(out);
    return NULL;
}
