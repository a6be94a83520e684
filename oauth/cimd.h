/*
 * cimd: Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-00, as
 * MCP 2025-11-25 pins it). A client_id that is an https URL names a JSON document the client
 * publishes there; mcpgate fetches it on the loop, validates it and caches it, and the
 * client is then treated like a public registered one.
 *
 * Fetching (oauth.cimd.*): https only, no redirects, 200 only, at most max_document bytes
 * (5 KiB), one timeout for the whole exchange, and an SSRF guard: every address the host
 * resolves to must be public (net_sockaddr_special_use()), checked on the socket libcurl
 * opens, unless the URL's host is in allow_hosts; a host in deny_hosts is never fetched.
 * One fetch per URL at a time; later lookups wait for it.
 *
 * Validation (draft §3, §4.1; MCP "Client ID Metadata Documents"): the URL's shape, then a
 * JSON object whose client_id equals the URL byte for byte, a client_name fit to show, a
 * non-empty redirect_uris whose every entry passes oauth_redirect_uri_check(), and
 * token_endpoint_auth_method "none" (absent means none). Shared-secret methods and
 * client_secret are refused (draft §4.1); private_key_jwt is refused as not supported here.
 * grant_types other than authorization_code and refresh_token are dropped, not fatal
 * (VS Code lists device_code, claude.ai jwt-bearer); authorization_code must remain.
 *
 * Caching (draft §4.4): validated documents only, for Cache-Control max-age clamped to
 * [1 min, 24 h] (1 h without one; no-store and no-cache count as 0, so 1 min), in a bounded
 * LRU of oauth.cimd.cache_entries per process. Failures are never cached.
 */
#ifndef MCPGATE_OAUTH_CIMD_H
#define MCPGATE_OAUTH_CIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "oauth/oauth_int.h"

#define OAUTH_CIMD_URL_MAX 1024
#define OAUTH_CIMD_TTL_MIN_MS (60ull * 1000)
#define OAUTH_CIMD_TTL_MAX_MS (24ull * 3600 * 1000)
#define OAUTH_CIMD_TTL_DEFAULT_MS (3600ull * 1000)

/* CLIENT_ID is meant as a metadata document URL: it starts with "https://" (any case).
 * Such ids never reach the store of registered clients, and /register never issues one. */
bool oauth_cimd_is_url(const char *client_id);

/* NULL when URL may be a client_id (draft §3: https, a path, no dot segments, fragment,
 * userinfo or query); otherwise a static reason a person may be shown. */
const char *oauth_cimd_url_problem(const char *url);

/* The host of a metadata document URL, as the consent page shows it (owned), or NULL. */
char *oauth_cimd_host(const char *url);

/*
 * Validates the document TEXT fetched from URL. Returns the client (owned), or NULL with
 * *WHY set to the reason (owned), fit for the person and the audit log alike.
 */
struct oauth_client *oauth_cimd_parse(const char *url, const char *text, size_t len, char **why);

/* How long a document with this Cache-Control header (may be NULL) is kept. */
uint64_t oauth_cimd_cache_ttl_ms(const char *cache_control);

/* The cache and the fetches in flight of one oauth_server. */
struct oauth_cimd;
struct oauth_cimd *oauth_cimd_new(void);
/* Answers every lookup still waiting with OAUTH_STORE_DOWN (the process is stopping),
 * cancels the fetches and frees. Accepts NULL. */
void oauth_cimd_free(struct oauth_cimd *c);

/*
 * Resolves the metadata document client URL (oauth_cimd_is_url() is true) through the
 * cache or a fetch. CB gets OAUTH_FOUND with the client (borrowed for the call), or
 * OAUTH_INVALID_CLIENT with a reason a person may be shown; each refusal writes one audit
 * line "client metadata refused" with the client_id and the reason in full. From the
 * cache, or for a URL refused on its shape, CB runs inside this call, as for static clients.
 */
void oauth_cimd_lookup(struct oauth_server *srv, const char *url, const char *request_id,
                       oauth_client_fn cb, void *arg);

/* Validated documents in the cache (metrics, tests). */
size_t oauth_cimd_cache_size(const struct oauth_cimd *c);

#endif
