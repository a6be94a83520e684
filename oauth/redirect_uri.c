/*
 * redirect_uri: registration rules and matching. URLs are split by
 * common/url.h (libcurl's URL API); private-use URIs such as "com.example.app:/cb" have no
 * authority, so for them only the scheme and the characters are checked.
 */
#include "oauth/redirect_uri.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/net.h"
#include "common/url.h"
#include "common/xalloc.h"

/* Native app schemes without a dot, seen in deployed MCP hosts. */
static const char *const known_native_schemes[] = {
    "cursor", "vscode", "vscode-insiders", "windsurf", "claude", "zed", "positron", "trae",
};

static const char *const forbidden_schemes[] = {
    "javascript", "data", "file", "vbscript", "about", "blob", "filesystem",
    "ftp",        "ws",   "wss",  "mailto",   "tel",   "sms",
};

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
    if (strchr("/?#", authority[3])) /* also the NUL: an empty authority */
        return "redirect_uri must have a host";
    if (!url_split(uri, &u))
        return "redirect_uri is not a valid URL";
    if (u.user)
        why = "redirect_uri must not contain user information";
    else if (u.host == NULL || u.host[0] == '\0')
        why = "redirect_uri must have a host";
    else if (strcmp(scheme, "http") == 0 && !net_host_is_loopback(u.host))
        why = "http redirect URIs are allowed only on loopback hosts; use https";
    url_parts_clear(&u);
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
        if (c >= 0x80) /* F14: "аpple.com" (Cyrillic а) would show as apple.com */
            return "redirect_uri must be ASCII: write an international host in its "
                   "xn-- (punycode) form";
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
        url_parts_clear(&a);
        return false;
    }
    if (a.scheme && b.scheme && a.host && b.host && net_host_is_loopback(a.host) &&
        strcmp(a.scheme, b.scheme) == 0 && strcasecmp(a.host, b.host) == 0 && b.user == NULL &&
        strcmp(a.path ? a.path : "", b.path ? b.path : "") == 0 &&
        strcmp(a.query ? a.query : "", b.query ? b.query : "") == 0)
        ok = true;
    url_parts_clear(&a);
    url_parts_clear(&b);
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
        url_parts_clear(&u);
    }
    if (out == NULL) {
        char *scheme = scheme_of(uri);
        out = scheme ? xasprintf("%s: (app)", scheme) : NULL;
        free(scheme);
    }
    return out;
}
