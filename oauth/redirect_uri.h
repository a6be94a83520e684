/*
 * redirect_uri: which redirect URIs a client may register (RFC 7591 with the
 * rules of OAuth 2.1 §2.3.1 and RFC 8252 for native apps) and how a
 * presented redirect_uri is matched against the registered ones.
 *
 * Accepted: https with a host; http only on loopback hosts (localhost,
 * 127.0.0.0/8, [::1]); a private-use scheme that contains a dot
 * (com.example.app:/cb, RFC 8252 §7.1) or is a known native app scheme
 * (cursor, vscode, …). Refused: javascript:, data:, file:, vbscript: and
 * other dangerous schemes, fragments, userinfo, control characters, spaces.
 *
 * Matching is exact string comparison, except that for loopback http(s)
 * URIs any port is accepted (RFC 8252 §7.3: native apps get ephemeral ports).
 */
#ifndef MCPGATE_OAUTH_REDIRECT_URI_H
#define MCPGATE_OAUTH_REDIRECT_URI_H

#include <stdbool.h>

#define OAUTH_REDIRECT_URI_MAX 2048

/* NULL when URI may be registered; otherwise a static, client-safe reason. */
const char *oauth_redirect_uri_check(const char *uri);
bool oauth_redirect_uri_matches(const char *registered, const char *presented);
/* The host part to show a person on the consent page (owned), or NULL. */
char *oauth_redirect_uri_display_host(const char *uri);

#endif
