/*
 * cimd: Client ID Metadata Documents (see cimd.h). Owns the document cache
 * (a hash by SHA-256 of the URL, so client-chosen keys cannot flood one
 * bucket, and an LRU list), the fetches in flight (one per URL, each with the
 * lookups waiting for it) and its own struct httpc, created on the first
 * fetch, so no connection of the IdP client is ever reused for a document.
 */
#include "oauth/cimd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "common/crypto.h"
#include "common/hash.h"
#include "common/httpc.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/url.h"
#include "common/xalloc.h"
#include "oauth/redirect_uri.h"

#define CIMD_BUCKETS 1024
#define CIMD_MAX_REDIRECT_URIS 20
#define CIMD_MAX_NAME_LEN 200

struct cimd_entry {
    char key[65];                /* SHA-256 hex of the URL */
    struct oauth_client *client; /* owned: client_id is the URL */
    uint64_t expires_ms;         /* time_mono_ms() */
    struct cimd_entry *next;     /* bucket chain */
    TAILQ_ENTRY(cimd_entry) lru; /* least recently used first */
};

struct cimd_waiter {
    oauth_client_fn cb;
    void *arg; /* borrowed: the caller's */
    struct cimd_waiter *next;
};

struct cimd_fetch {
    struct oauth_cimd *owner;            /* borrowed */
    struct oauth_server *srv;            /* borrowed */
    char *url;                           /* owned */
    char *request_id;                    /* owned, may be NULL: of the lookup that started it */
    struct httpc_call *call;             /* owned by httpc until its callback */
    struct cimd_waiter *waiters, **tail; /* owned, in arrival order */
    TAILQ_ENTRY(cimd_fetch) link;
};

struct oauth_cimd {
    struct httpc *httpc; /* owned; NULL until the first fetch */
    struct cimd_entry *buckets[CIMD_BUCKETS];
    TAILQ_HEAD(, cimd_entry) lru;
    size_t n_entries;
    TAILQ_HEAD(, cimd_fetch) fetches;
};

/* ---- the URL --------------------------------------------------------------- */

bool oauth_cimd_is_url(const char *client_id)
{
    return strncasecmp(client_id, "https://", 8) == 0;
}

static bool is_dot_segment(const char *s, size_t n)
{
    static const char *const dots[] = {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."};
    for (size_t i = 0; i < sizeof(dots) / sizeof(dots[0]); i++)
        if (n == strlen(dots[i]) && strncasecmp(s, dots[i], n) == 0)
            return true;
    return false;
}

const char *oauth_cimd_url_problem(const char *url)
{
    size_t n = strlen(url);
    if (strncmp(url, "https://", 8) != 0)
        return "the client_id URL must start with https:// (lowercase)";
    if (n > OAUTH_CIMD_URL_MAX)
        return "the client_id URL is too long";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return "the client_id URL contains spaces, control, non-ASCII characters or a "
                   "backslash";
    }
    if (strchr(url, '#'))
        return "the client_id URL must not have a fragment";
    if (strchr(url, '?'))
        return "the client_id URL must not have a query string";
    const char *authority = url + 8;
    size_t alen = strcspn(authority, "/");
    if (alen == 0)
        return "the client_id URL has no host";
    if (memchr(authority, '@', alen))
        return "the client_id URL must not contain a user name or password";
    const char *path = authority + alen;
    if (path[0] == '\0' || strcmp(path, "/") == 0)
        return "the client_id URL must have a path (draft-ietf-oauth-client-id-metadata-document "
               "§3)";
    for (const char *seg = path + 1;;) {
        size_t len = strcspn(seg, "/");
        if (is_dot_segment(seg, len))
            return "the client_id URL must not contain . or .. path segments";
        if (seg[len] == '\0')
            break;
        seg += len + 1;
    }
    struct url_parts u;
    if (!url_split(url, &u))
        return "the client_id URL is not a valid URL";
    bool host = u.host && u.host[0];
    url_parts_clear(&u);
    return host ? NULL : "the client_id URL has no host";
}

char *oauth_cimd_host(const char *url)
{
    struct url_parts u;
    char *out = NULL;
    if (!url_split(url, &u))
        return NULL;
    if (u.host && u.host[0])
        out = u.port ? xasprintf("%s:%s", u.host, u.port) : xstrdup(u.host);
    url_parts_clear(&u);
    return out;
}

/* The LEN bytes at *S without IPv6 brackets and without the trailing dot of a fully
 * qualified name ("evil.example." is "evil.example" to DNS, so to the lists too). */
static void host_trim(const char **s, size_t *len)
{
    if (*len >= 2 && (*s)[0] == '[' && (*s)[*len - 1] == ']')
        (*s)++, *len -= 2;
    else if (*len >= 2 && (*s)[*len - 1] == '.')
        (*len)--;
}

/* HOST (from url_split: IPv6 in brackets) is in LIST (entries with or without brackets). */
static bool host_listed(const char *host, const struct gw_string_list *list)
{
    size_t hn = strlen(host);
    const char *h = host;
    host_trim(&h, &hn);
    for (size_t i = 0; i < list->len; i++) {
        const char *e = list->items[i];
        size_t en = strlen(e);
        host_trim(&e, &en);
        if (en == hn && strncasecmp(e, h, hn) == 0)
            return true;
    }
    return false;
}

/* ---- the document ------------------------------------------------------------ */

static char *check_auth_method(json_t *doc)
{
    json_t *m = json_object_get(doc, "token_endpoint_auth_method");
    if (m == NULL)
        return NULL; /* RFC 7591 §2 would say client_secret_basic; a document has no secret */
    const char *s = json_string_value(m);
    if (s == NULL)
        return xstrdup("token_endpoint_auth_method must be a string");
    if (strcmp(s, "none") == 0)
        return NULL;
    if (strncmp(s, "client_secret_", 14) == 0)
        return xasprintf("token_endpoint_auth_method \"%.40s\" relies on a shared secret, which a "
                         "client metadata document must not use (draft §4.1); use \"none\"",
                         s);
    if (strcmp(s, "private_key_jwt") == 0)
        return xstrdup("token_endpoint_auth_method \"private_key_jwt\" is not supported by this "
                       "server; publish \"none\" (a public client with PKCE)");
    return xasprintf("token_endpoint_auth_method \"%.40s\" is not supported; use \"none\"", s);
}

static char *check_redirect_uris(json_t *doc, struct oauth_client *c)
{
    json_t *a = json_object_get(doc, "redirect_uris");
    if (!json_is_array(a) || json_array_size(a) == 0)
        return xstrdup("redirect_uris is required: a non-empty array of strings");
    if (json_array_size(a) > CIMD_MAX_REDIRECT_URIS)
        return xasprintf("redirect_uris holds more than %d entries", CIMD_MAX_REDIRECT_URIS);
    size_t i;
    json_t *v;
    json_array_foreach (a, i, v) {
        const char *uri = json_string_value(v);
        if (uri == NULL)
            return xstrdup("redirect_uris must hold only strings");
        const char *why = oauth_redirect_uri_check(uri);
        if (why)
            return xasprintf("redirect_uris[%zu]: %s", i, why);
        mg_string_list_add(&c->redirect_uris, uri);
    }
    return NULL;
}

/* Keeps the grant types this server knows; others are dropped (VS Code: device_code). */
static char *check_grants(json_t *doc, struct oauth_client *c)
{
    json_t *g = json_object_get(doc, "grant_types");
    size_t i;
    json_t *v;
    if (g && !json_is_array(g))
        return xstrdup("grant_types must be an array of strings");
    if (g == NULL)
        mg_string_list_add(&c->grant_types, "authorization_code"); /* RFC 7591 §2 default */
    json_array_foreach (g, i, v) {
        const char *s = json_string_value(v);
        if (s && (strcmp(s, "authorization_code") == 0 || strcmp(s, "refresh_token") == 0) &&
            !mg_string_list_contains(&c->grant_types, s))
            mg_string_list_add(&c->grant_types, s);
    }
    if (!mg_string_list_contains(&c->grant_types, "authorization_code"))
        return xstrdup("grant_types must include authorization_code");
    json_t *r = json_object_get(doc, "response_types");
    if (r && !json_is_array(r))
        return xstrdup("response_types must be an array of strings");
    bool code = r == NULL;
    json_array_foreach (r, i, v)
        code = code || (json_is_string(v) && strcmp(json_string_value(v), "code") == 0);
    return code ? NULL : xstrdup("response_types must include code");
}

static char *check_document(const char *url, json_t *doc, struct oauth_client *c)
{
    if (!json_is_object(doc))
        return xstrdup("the document is not a JSON object");
    const char *id = json_string_value(json_object_get(doc, "client_id"));
    if (id == NULL)
        return xstrdup("the document has no client_id");
    /* draft §4.1: simple string comparison (RFC 3986 §6.2.1), no normalisation. */
    if (strcmp(id, url) != 0)
        return xasprintf("the document's client_id \"%.200s\" is not the URL it was fetched from",
                         id);
    const char *name = json_string_value(json_object_get(doc, "client_name"));
    if (name == NULL || name[0] == '\0')
        return xstrdup("client_name is required (MCP: client metadata documents name the "
                       "client)");
    const char *why =
        strlen(name) > CIMD_MAX_NAME_LEN ? "is too long" : oauth_display_text_check(name);
    if (why)
        return xasprintf("client_name %s", why);
    if (json_object_get(doc, "client_secret") || json_object_get(doc, "client_secret_expires_at"))
        return xstrdup("a client metadata document must not carry client_secret (draft §4.1)");
    char *err = check_auth_method(doc);
    if (err == NULL)
        err = check_redirect_uris(doc, c);
    if (err == NULL)
        err = check_grants(doc, c);
    if (err == NULL)
        c->client_name = xstrdup(name);
    return err;
}

struct oauth_client *oauth_cimd_parse(const char *url, const char *text, size_t len, char **why)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    *why = NULL;
    if (doc == NULL) {
        *why = xasprintf("the document is not valid JSON (line %d: %.80s)", jerr.line, jerr.text);
        return NULL;
    }
    struct oauth_client *c = xcalloc(1, sizeof(*c));
    c->client_id = xstrdup(url);
    c->auth = GW_CLIENT_AUTH_NONE;
    *why = check_document(url, doc, c);
    json_decref(doc);
    if (*why) {
        oauth_client_free(c);
        return NULL;
    }
    return c;
}

/* Seconds after "max-age=" in VALUE, or -1. */
static long long directive_seconds(const char *cc, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = cc; (p = strcasestr(p, name)) != NULL; p += n) {
        bool start = p == cc || p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t';
        if (!start || p[n] != '=')
            continue;
        const char *d = p + n + 1;
        if (*d == '"')
            d++;
        long long v = 0;
        size_t digits = 0;
        for (; d[digits] >= '0' && d[digits] <= '9' && digits < 12; digits++)
            v = v * 10 + (d[digits] - '0');
        return digits ? v : -1;
    }
    return -1;
}

static bool has_directive(const char *cc, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = cc; (p = strcasestr(p, name)) != NULL; p += n) {
        bool start = p == cc || p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t';
        char end = p[n];
        if (start && (end == '\0' || end == ',' || end == ' ' || end == ';' || end == '\t'))
            return true;
    }
    return false;
}

uint64_t oauth_cimd_cache_ttl_ms(const char *cc)
{
    uint64_t ms = OAUTH_CIMD_TTL_DEFAULT_MS;
    if (cc) {
        long long s = directive_seconds(cc, "max-age");
        if (has_directive(cc, "no-store") || has_directive(cc, "no-cache"))
            ms = 0;
        else if (s >= 0)
            ms = (uint64_t)s * 1000;
    }
    /* draft §4.4: the server may bound what the headers ask for. */
    if (ms < OAUTH_CIMD_TTL_MIN_MS)
        ms = OAUTH_CIMD_TTL_MIN_MS;
    if (ms > OAUTH_CIMD_TTL_MAX_MS)
        ms = OAUTH_CIMD_TTL_MAX_MS;
    return ms;
}

/* ---- the cache ----------------------------------------------------------------- */

struct oauth_cimd *oauth_cimd_new(void)
{
    struct oauth_cimd *c = xcalloc(1, sizeof(*c));
    TAILQ_INIT(&c->lru);
    TAILQ_INIT(&c->fetches);
    return c;
}

size_t oauth_cimd_cache_size(const struct oauth_cimd *c)
{
    return c ? c->n_entries : 0;
}

static unsigned bucket_of(const char *key)
{
    return hash_str(key) % CIMD_BUCKETS;
}

static void entry_drop(struct oauth_cimd *c, struct cimd_entry *e)
{
    struct cimd_entry **pp = &c->buckets[bucket_of(e->key)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    TAILQ_REMOVE(&c->lru, e, lru);
    c->n_entries--;
    oauth_client_free(e->client);
    free(e);
}

static struct cimd_entry *entry_find(struct oauth_cimd *c, const char *key)
{
    for (struct cimd_entry *e = c->buckets[bucket_of(key)]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static void entry_put(struct oauth_cimd *c, uint32_t max, const char *key,
                      const struct oauth_client *client, uint64_t ttl_ms)
{
    struct cimd_entry *old = entry_find(c, key);
    if (old)
        entry_drop(c, old);
    if (max == 0)
        return;
    while (c->n_entries >= max)
        entry_drop(c, TAILQ_FIRST(&c->lru));
    struct cimd_entry *e = xcalloc(1, sizeof(*e));
    memcpy(e->key, key, sizeof(e->key));
    e->client = oauth_client_dup(client);
    e->expires_ms = time_mono_ms() + ttl_ms;
    unsigned b = bucket_of(key);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    TAILQ_INSERT_TAIL(&c->lru, e, lru);
    c->n_entries++;
}

/* ---- fetching --------------------------------------------------------------------- */

static void refuse(const char *request_id, const char *url, const char *detail)
{
    oauth_audit(request_id, "client metadata refused", "client_id", url, "reason", detail, NULL);
}

/* What a person is told about a failed exchange (ERROR from httpc, or STATUS). Owned. */
static char *fetch_failure(const struct oauth_server *srv, const char *error, long status)
{
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    if (error == NULL && status >= 300 && status < 400)
        return xasprintf("the document URL answered with a redirect (HTTP %ld); redirects are "
                         "not followed",
                         status);
    if (error == NULL)
        return xasprintf("the document URL answered HTTP %ld, not 200", status);
    if (strstr(error, "refused to connect"))
        return xstrdup("its host resolves to a private, loopback or other special-use address, "
                       "which this server does not fetch from");
    if (strstr(error, "timed out"))
        return xasprintf("the document was not served within %llu ms",
                         (unsigned long long)oc->cimd_timeout_ms);
    if (strstr(error, "too large"))
        return xasprintf("the document is larger than %llu bytes",
                         (unsigned long long)oc->cimd_max_document_bytes);
    if (strncmp(error, "TLS:", 4) == 0)
        return xstrdup("the TLS connection to its host failed (certificate or handshake)");
    if (strstr(error, "resolve"))
        return xstrdup("its host name does not resolve");
    return xstrdup("the document could not be fetched");
}

static void fetch_free(struct cimd_fetch *f)
{
    while (f->waiters) {
        struct cimd_waiter *w = f->waiters;
        f->waiters = w->next;
        free(w);
    }
    free(f->url);
    free(f->request_id);
    free(f);
}

/* Answers every waiter of F (taken off the list first: a callback may look up again). */
static void fetch_finish(struct cimd_fetch *f, struct oauth_client *client, enum oauth_lookup how,
                         const char *why)
{
    TAILQ_REMOVE(&f->owner->fetches, f, link);
    for (struct cimd_waiter *w = f->waiters; w; w = w->next) {
        struct oauth_client *copy = client ? oauth_client_dup(client) : NULL;
        w->cb(copy, how, why, w->arg);
        oauth_client_free(copy);
    }
    fetch_free(f);
}

static void on_document(const struct httpc_response *res, void *arg)
{
    struct cimd_fetch *f = arg;
    struct oauth_server *srv = f->srv;
    f->call = NULL;
    char *why = NULL;
    struct oauth_client *client = NULL;
    if (res->error || res->status != 200) {
        why = fetch_failure(srv, res->error, res->status);
        char *detail = res->error ? xasprintf("%s (%s)", why, res->error) : xstrdup(why);
        refuse(f->request_id, f->url, detail);
        free(detail);
    } else {
        client = oauth_cimd_parse(f->url, res->body, res->body_len, &why);
        if (client) {
            uint64_t ttl = oauth_cimd_cache_ttl_ms(httpc_response_header(res, "Cache-Control"));
            char key[65];
            crypto_sha256_hex(f->url, key);
            entry_put(f->owner, srv->cfg->oauth.cimd_cache_entries, key, client, ttl);
            gw_log(GW_LOG_INFO, "oauth", f->request_id, "client metadata document accepted",
                   "client_id", f->url, NULL);
        } else {
            refuse(f->request_id, f->url, why);
        }
    }
    fetch_finish(f, client, client ? OAUTH_FOUND : OAUTH_INVALID_CLIENT, why);
    oauth_client_free(client);
    free(why);
}

static void start_fetch(struct oauth_server *srv, struct cimd_fetch *f, const char *host)
{
    struct oauth_cimd *c = srv->cimd;
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    if (c->httpc == NULL) {
        char *err = NULL;
        c->httpc = httpc_new(srv->base, &err);
        if (c->httpc == NULL) {
            refuse(f->request_id, f->url, err ? err : "libcurl did not start");
            free(err);
            fetch_finish(f, NULL, OAUTH_STORE_DOWN, NULL);
            return;
        }
    }
    const struct httpc_header headers[] = {{"Accept", "application/json"}};
    struct httpc_request req = {
        .url = f->url,
        .headers = headers,
        .n_headers = 1,
        .connect_timeout_ms = oc->cimd_timeout_ms,
        .timeout_ms = oc->cimd_timeout_ms,
        .max_response_bytes = oc->cimd_max_document_bytes,
        .https_only = true,
        .public_addresses_only = !host_listed(host, &oc->cimd_allow_hosts),
        .ca_file = oc->cimd_ca_file,
    };
    f->call = httpc_fetch(c->httpc, &req, on_document, f);
}

void oauth_cimd_lookup(struct oauth_server *srv, const char *url, const char *request_id,
                       oauth_client_fn cb, void *arg)
{
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    if (srv->cimd == NULL)
        srv->cimd = oauth_cimd_new();
    struct oauth_cimd *c = srv->cimd;
    const char *why = oauth_cimd_url_problem(url);
    struct url_parts u = {0};
    const char *host = NULL;
    if (why == NULL && url_split(url, &u))
        host = u.host;
    if (why == NULL && host == NULL)
        why = "the client_id URL has no host";
    if (why == NULL && host_listed(host, &oc->cimd_deny_hosts))
        why = "this server does not accept applications from this host";
    if (why) {
        refuse(request_id, url, why);
        cb(NULL, OAUTH_INVALID_CLIENT, why, arg);
        url_parts_clear(&u);
        return;
    }
    char key[65];
    crypto_sha256_hex(url, key);
    struct cimd_entry *e = entry_find(c, key);
    if (e && e->expires_ms > time_mono_ms()) {
        TAILQ_REMOVE(&c->lru, e, lru);
        TAILQ_INSERT_TAIL(&c->lru, e, lru);
        struct oauth_client *copy = oauth_client_dup(e->client);
        cb(copy, OAUTH_FOUND, NULL, arg);
        oauth_client_free(copy);
        url_parts_clear(&u);
        return;
    }
    if (e)
        entry_drop(c, e); /* expired: fetched again below */
    struct cimd_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    struct cimd_fetch *f;
    TAILQ_FOREACH (f, &c->fetches, link)
        if (strcmp(f->url, url) == 0)
            break;
    if (f) { /* one fetch per URL: wait for the one in flight */
        *f->tail = w;
        f->tail = &w->next;
        url_parts_clear(&u);
        return;
    }
    f = xcalloc(1, sizeof(*f));
    f->owner = c;
    f->srv = srv;
    f->url = xstrdup(url);
    f->request_id = request_id ? xstrdup(request_id) : NULL;
    f->waiters = w;
    f->tail = &w->next;
    TAILQ_INSERT_TAIL(&c->fetches, f, link);
    start_fetch(srv, f, host);
    url_parts_clear(&u);
}

void oauth_cimd_free(struct oauth_cimd *c)
{
    if (c == NULL)
        return;
    while (!TAILQ_EMPTY(&c->fetches)) {
        struct cimd_fetch *f = TAILQ_FIRST(&c->fetches);
        httpc_cancel(f->call);
        f->call = NULL;
        fetch_finish(f, NULL, OAUTH_STORE_DOWN, NULL);
    }
    while (!TAILQ_EMPTY(&c->lru))
        entry_drop(c, TAILQ_FIRST(&c->lru));
    httpc_free(c->httpc);
    free(c);
}
