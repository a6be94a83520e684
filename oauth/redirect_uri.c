/*
 * redirect_uri: registration rules and matching. URLs are split with
 * libcurl's URL API (curl_url), the project's RFC 3986 parser outside the
 * HTTP server module; private-use URIs such as "com.example.app:/cb" have no
 * authority, so for them only the scheme and the characters are checked.
 */
#include "oauth/redirect_uri.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "common/xalloc.h"

/* Native app schemes without a dot, seen in deployed MCP hosts. */
static const char *const known_native_schemes[] = {
    "cursor", "vscode", "vscode-insiders", "windsurf", "claude", "zed", "positron", "trae",
};

static const char *const forbidden_schemes[] = {
    "javascript", "data", "file", "vbscript", "about", "blob", "filesystem",
    "ftp",        "ws",   "wss",  "mailto",   "tel",   "sms",
};

bool oauth_host_is_loopback(const char *host)
{
    if (strcasecmp(host, "localhost") == 0)
        return true;
    char buf[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        if (n - 2 >= sizeof(buf))
            return false;
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

/* The scheme, lowercased (owned), or NULL when there is no valid one. */
static char *scheme_of(const char *uri)
{
    const char *colon = strchr(uri, ':');
    if (colon == NULL || colon == uri || !isalpha((unsigned char)uri[0]))
        return NULL;
    for (const char *p = uri; p < colon; p++)
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
            return NULL;
    char *s = xstrndup(uri, (size_t)(colon - uri));
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

struct url_parts {
    char *scheme, *host, *port, *path, *query, *user;
};

static void url_parts_free(struct url_parts *u)
{
    curl_free(u->scheme);
    curl_free(u->host);
    curl_free(u->port);
    curl_free(u->path);
    curl_free(u->query);
    curl_free(u->user);
    memset(u, 0, sizeof(*u));
}

static bool url_split(const char *uri, struct url_parts *u)
{
    memset(u, 0, sizeof(*u));
    CURLU *h = curl_url();
    bool ok = h && curl_url_set(h, CURLUPART_URL, uri, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK;
    if (ok) {
        curl_url_get(h, CURLUPART_SCHEME, &u->scheme, 0);
        curl_url_get(h, CURLUPART_HOST, &u->host, 0);
        curl_url_get(h, CURLUPART_PORT, &u->port, 0);
        curl_url_get(h, CURLUPART_PATH, &u->path, 0);
        curl_url_get(h, CURLUPART_QUERY, &u->query, 0);
        curl_url_get(h, CURLUPART_USER, &u->user, 0);
    }
    curl_url_cleanup(h);
    return ok;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static const char *check_http(const char *uri, const char *scheme)
{
    struct url_parts u;
    const char *why = NULL;
    const char *authority = strstr(uri, "://");
    if (authority == NULL)
        return "redirect_uri is not a valid URL";
    /* curl reads "https:///host" as host "host"; RFC 3986 says empty authority. */
    if (authority[3] == '/' || authority[3] == '\0')
        return "redirect_uri must have a host";
    if (!url_split(uri, &u))
        return "redirect_uri is not a valid URL";
    if (u.user)
        why = "redirect_uri must not contain user information";
    else if (u.host == NULL || u.host[0] == '\0')
        why = "redirect_uri must have a host";
    else if (strcmp(scheme, "http") == 0 && !oauth_host_is_loopback(u.host))
        why = "http redirect URIs are allowed only on loopback hosts; use https";
    url_parts_free(&u);
    return why;
}

const char *oauth_redirect_uri_check(const char *uri)
{
    size_t n = strlen(uri);
    if (n == 0)
        return "redirect_uri is empty";
    if (n > OAUTH_REDIRECT_URI_MAX)
        return "redirect_uri is too long";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= 0x20 || c == 0x7f)
            return "redirect_uri contains spaces or control characters";
        if (c == '\\')
            return "redirect_uri contains a backslash";
    }
    if (strchr(uri, '#'))
        return "redirect_uri must not contain a fragment";
    char *scheme = scheme_of(uri);
    const char *why = NULL;
    if (scheme == NULL)
        why = "redirect_uri must be an absolute URI with a scheme";
    else if (in_list(scheme, forbidden_schemes,
                     sizeof(forbidden_schemes) / sizeof(forbidden_schemes[0])))
        why = "redirect_uri scheme is not allowed";
    else if (strcmp(scheme, "https") == 0 || strcmp(scheme, "http") == 0)
        why = check_http(uri, scheme);
    else if (strchr(scheme, '.') == NULL &&
             !in_list(scheme, known_native_schemes,
                      sizeof(known_native_schemes) / sizeof(known_native_schemes[0])))
        why = "private-use redirect URI schemes must contain a dot (RFC 8252 §7.1), "
              "e.g. com.example.app:/callback";
    else if (strlen(uri) == strlen(scheme) + 1)
        why = "redirect_uri has nothing after its scheme";
    free(scheme);
    return why;
}

/* RFC 8252 §7.3: loopback redirect URIs match with any port. */
static bool loopback_match(const char *registered, const char *presented)
{
    struct url_parts a, b;
    bool ok = false;
    if (!url_split(registered, &a))
        return false;
    if (!url_split(presented, &b)) {
        url_parts_free(&a);
        return false;
    }
    if (a.scheme && b.scheme && a.host && b.host && oauth_host_is_loopback(a.host) &&
        strcmp(a.scheme, b.scheme) == 0 && strcasecmp(a.host, b.host) == 0 && b.user == NULL &&
        strcmp(a.path ? a.path : "", b.path ? b.path : "") == 0 &&
        strcmp(a.query ? a.query : "", b.query ? b.query : "") == 0)
        ok = true;
    url_parts_free(&a);
    url_parts_free(&b);
    return ok;
}

bool oauth_redirect_uri_matches(const char *registered, const char *presented)
{
    if (strcmp(registered, presented) == 0)
        return true;
    if (strchr(presented, '#') || oauth_redirect_uri_check(presented) != NULL)
        return false;
    if (strncmp(registered, "http://", 7) != 0 && strncmp(registered, "https://", 8) != 0)
        return false;
    return loopback_match(registered, presented);
}

char *oauth_redirect_uri_display_host(const char *uri)
{
    struct url_parts u;
    char *out = NULL;
    if (strstr(uri, "://") && url_split(uri, &u)) {
        if (u.host && u.host[0])
            out = u.port ? xasprintf("%s:%s", u.host, u.port) : xstrdup(u.host);
        url_parts_free(&u);
    }
    if (out == NULL) {
        char *scheme = scheme_of(uri);
        out = scheme ? xasprintf("%s: (app)", scheme) : NULL;
        free(scheme);
    }
    return out;
}
