/*
 * url: the one URL splitter and the one percent-decoder of mcpgate.
 *
 * Splitting is libcurl's URL API (curl_url, RFC 3986 with the leniencies
 * browsers have): no hand-written URL parser anywhere else. What libcurl
 * 7.88 does that callers must know:
 *  - it normalises IPv4 literals ("127.1" and "0x7f000001" become
 *    "127.0.0.1"), keeps IPv6 hosts in brackets, and does not lowercase
 *    names;
 *  - it reports an empty path as "/", so "https://a" and "https://a/" split
 *    alike: a caller that must tell them apart looks at the raw text
 *    (url_after_authority());
 *  - "https:///x" is read as host "x" (RFC 3986: an empty authority), so
 *    url_split() refuses an empty authority itself;
 *  - non-ASCII hosts are returned as given (UTF-8), not in punycode.
 */
#ifndef MCPGATE_COMMON_URL_H
#define MCPGATE_COMMON_URL_H

#include <stdbool.h>
#include <stddef.h>

/* Every part owned by the struct (url_parts_clear frees them); NULL when absent. */
struct url_parts {
    char *scheme; /* lowercase */
    char *user;   /* userinfo before ':' or '@' */
    char *host;   /* IPv6 in brackets */
    char *port;   /* as written, digits */
    char *path;   /* "/" at least for hierarchical URLs */
    char *query;
    char *fragment;
};

/*
 * Splits an absolute URI (any scheme). For schemes with "//" the authority
 * must not be empty. Returns true, or false with U cleared.
 */
bool url_split(const char *uri, struct url_parts *u);
void url_parts_clear(struct url_parts *u);

/* The raw text after "scheme://authority" (path, query, fragment), or NULL
 * when URI has no "://". */
const char *url_after_authority(const char *uri);

/*
 * Percent-decodes S[0..LEN) into a new NUL-terminated string (owned).
 * PLUS_IS_SPACE: '+' is a space (application/x-www-form-urlencoded).
 * NULL when an escape is malformed or the text holds a NUL byte, raw or
 * as %00 (nothing legitimate sends one, and it would cut C strings short).
 * *OUT_LEN, when not NULL, gets the decoded length.
 */
char *url_pct_decode(const char *s, size_t len, bool plus_is_space, size_t *out_len);

#endif
