/*
 * register: dynamic client registration (RFC 7591) at POST /register.
 *
 * Validates every field it keeps (RFC 7591 §2), ignores fields it does not
 * understand (§2: the server MUST ignore them), rate-limits per client IP
 * through the store (so the limit holds across instances), and answers 201
 * echoing the registered metadata plus client_id (and client_secret for
 * confidential clients, stored only as its SHA-256).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/b64url.h"
#include "common/net.h"
#include "common/crypto.h"
#include "common/rand.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "oauth/oauth_int.h"
#include "oauth/redirect_uri.h"
#include "store/store.h"

#define MAX_REDIRECT_URIS 20
#define MAX_NAME_LEN 200
#define MAX_SHORT_LEN 256
#define MAX_CONTACTS 10

struct registration {
    struct oauth_server *srv; /* borrowed */
    struct http_request *req; /* borrowed until answered */
    json_t *body;             /* owned: the parsed request */
};

static void registration_free(struct registration *r)
{
    json_decref(r->body);
    free(r);
}

/* A web page URL a person may be shown (client_uri, logo_uri, tos, policy). */
static bool web_uri_ok(const char *uri)
{
    size_t n = strlen(uri);
    if (n == 0 || n > OAUTH_REDIRECT_URI_MAX)
        return false;
    for (size_t i = 0; i < n; i++) /* ASCII only: a host in Unicode can pass for another (F14) */
        if ((unsigned char)uri[i] <= 0x20 || (unsigned char)uri[i] >= 0x7f)
            return false;
    if (strncasecmp(uri, "https://", 8) == 0)
        return uri[8] != '\0' && uri[8] != '/';
    if (strncasecmp(uri, "http://", 7) == 0) {
        char host[256];
        size_t h = strcspn(uri + 7, ":/?#");
        if (h == 0 || h >= sizeof(host))
            return false;
        memcpy(host, uri + 7, h);
        host[h] = '\0';
        return net_host_is_loopback(host);
    }
    return false;
}

/* Returns the error description, or NULL when FIELD is absent or a fine string. */
static const char *check_string(json_t *body, const char *field, size_t max, bool web_uri)
{
    json_t *v = json_object_get(body, field);
    if (v == NULL)
        return NULL;
    if (!json_is_string(v))
        return "must be a string";
    const char *s = json_string_value(v);
    if (strlen(s) > max || strlen(s) != json_string_length(v))
        return "is too long or contains a NUL byte";
    if (web_uri && !web_uri_ok(s))
        return "must be an https URL in ASCII (http only on loopback hosts)";
    if (strcmp(field, "client_name") == 0)
        return oauth_display_text_check(s);
    return NULL;
}

static bool array_of_strings(json_t *a, size_t max_items, size_t max_len)
{
    if (!json_is_array(a) || json_array_size(a) > max_items)
        return false;
    size_t i;
    json_t *v;
    json_array_foreach (a, i, v) {
        if (!json_is_string(v) || json_string_length(v) > max_len ||
            strlen(json_string_value(v)) != json_string_length(v))
            return false;
    }
    return true;
}

static bool array_has(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach (a, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static const char *check_redirect_uris(json_t *body, const char **error)
{
    *error = "invalid_redirect_uri";
    json_t *uris = json_object_get(body, "redirect_uris");
    if (!json_is_array(uris) || json_array_size(uris) == 0)
        return "redirect_uris is required: a non-empty array of URIs";
    if (!array_of_strings(uris, MAX_REDIRECT_URIS, OAUTH_REDIRECT_URI_MAX))
        return "redirect_uris must be at most 20 strings";
    size_t i;
    json_t *v;
    json_array_foreach (uris, i, v) {
        const char *why = oauth_redirect_uri_check(json_string_value(v));
        if (why)
            return why;
    }
    return NULL;
}

static const char *check_grants(json_t *body)
{
    json_t *grants = json_object_get(body, "grant_types");
    json_t *types = json_object_get(body, "response_types");
    if (grants && !array_of_strings(grants, 4, 64))
        return "grant_types must be an array of strings";
    if (types && !array_of_strings(types, 4, 64))
        return "response_types must be an array of strings";
    size_t i;
    json_t *v;
    json_array_foreach (grants, i, v) {
        const char *g = json_string_value(v);
        if (strcmp(g, "authorization_code") != 0 && strcmp(g, "refresh_token") != 0)
            return "grant_types may hold only authorization_code and refresh_token";
    }
    json_array_foreach (types, i, v) {
        if (strcmp(json_string_value(v), "code") != 0)
            return "response_types may hold only code";
    }
    /* RFC 7591 §2.1: grant_types and response_types must agree. */
    bool code_grant = grants == NULL || array_has(grants, "authorization_code");
    bool code_type = types == NULL || array_has(types, "code");
    if (code_grant != code_type)
        return "grant_types authorization_code and response_types code go together";
    if (!code_grant)
        return "grant_types must include authorization_code";
    return NULL;
}

static const char *check_auth_method(const struct oauth_server *srv, json_t *body,
                                     enum gw_client_auth *auth)
{
    json_t *m = json_object_get(body, "token_endpoint_auth_method");
    *auth = GW_CLIENT_AUTH_CLIENT_SECRET_BASIC; /* RFC 7591 §2 default */
    if (m == NULL)
        return NULL;
    const char *s = json_string_value(m);
    if (s == NULL)
        return "token_endpoint_auth_method must be a string";
    if (strcmp(s, "none") == 0)
        *auth = GW_CLIENT_AUTH_NONE;
    else if (strcmp(s, "client_secret_post") == 0)
        *auth = GW_CLIENT_AUTH_CLIENT_SECRET_POST;
    else if (strcmp(s, "client_secret_basic") != 0)
        return "token_endpoint_auth_method must be none, client_secret_basic or "
               "client_secret_post";
    if (*auth == GW_CLIENT_AUTH_NONE && !srv->cfg->oauth.registration_public_clients)
        return "this server does not register public clients; use client_secret_basic";
    return NULL;
}

static const char *check_scope(const struct oauth_server *srv, json_t *body)
{
    json_t *v = json_object_get(body, "scope");
    if (v == NULL)
        return NULL;
    if (!json_is_string(v) || json_string_length(v) > 1024)
        return "scope must be a space-separated string";
    struct mg_string_list want = {0};
    mg_string_list_split(&want, json_string_value(v));
    bool ok = oauth_scopes_supported(srv, &want);
    mg_string_list_clear(&want);
    return ok ? NULL : "scope names a scope this server does not support";
}

/* Every rule of RFC 7591 §2 we enforce; *error gets the RFC 7591 §3.2.2 code. */
static const char *validate(const struct oauth_server *srv, json_t *body, enum gw_client_auth *auth,
                            const char **error)
{
    static const struct {
        const char *field;
        size_t max;
        bool web_uri;
    } strings[] = {
        {"client_name", MAX_NAME_LEN, false},
        {"client_uri", 2048, true},
        {"logo_uri", 2048, true},
        {"tos_uri", 2048, true},
        {"policy_uri", 2048, true},
        {"software_id", MAX_SHORT_LEN, false},
        {"software_version", MAX_SHORT_LEN, false},
    };
    const char *why = check_redirect_uris(body, error);
    if (why)
        return why;
    *error = "invalid_client_metadata";
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        why = check_string(body, strings[i].field, strings[i].max, strings[i].web_uri);
        if (why) {
            static char msg[128];
            snprintf(msg, sizeof(msg), "%s %s", strings[i].field, why);
            return msg;
        }
    }
    json_t *contacts = json_object_get(body, "contacts");
    if (contacts && !array_of_strings(contacts, MAX_CONTACTS, MAX_SHORT_LEN))
        return "contacts must be at most 10 strings";
    json_t *app = json_object_get(body, "application_type");
    if (app && (!json_is_string(app) || (strcmp(json_string_value(app), "web") != 0 &&
                                         strcmp(json_string_value(app), "native") != 0)))
        return "application_type must be web or native";
    if ((why = check_grants(body)) || (why = check_auth_method(srv, body, auth)) ||
        (why = check_scope(srv, body)))
        return why;
    return NULL;
}

/* The registered metadata: what we validated and keep, with defaults filled in. */
static json_t *registered_metadata(json_t *body, enum gw_client_auth auth)
{
    static const char *const kept[] = {
        "redirect_uris", "client_name",      "client_uri",      "logo_uri",
        "tos_uri",       "policy_uri",       "scope",           "contacts",
        "software_id",   "software_version", "application_type"};
    json_t *m = json_object();
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        json_t *v = json_object_get(body, kept[i]);
        if (v)
            json_object_set(m, kept[i], v);
    }
    json_t *grants = json_object_get(body, "grant_types");
    json_object_set_new(m, "grant_types",
                        grants ? json_deep_copy(grants) : json_pack("[s]", "authorization_code"));
    json_object_set_new(m, "response_types", json_pack("[s]", "code"));
    json_object_set_new(m, "token_endpoint_auth_method",
                        json_string(auth == GW_CLIENT_AUTH_NONE ? "none"
                                    : auth == GW_CLIENT_AUTH_CLIENT_SECRET_POST
                                        ? "client_secret_post"
                                        : "client_secret_basic"));
    return m;
}

struct stored_registration {
    struct store *store;      /* borrowed */
    struct http_request *req; /* borrowed until answered */
    json_t *response;         /* owned */
    char *client_id;          /* owned */
};

static void on_client_stored(const struct store_result *res, void *arg)
{
    struct stored_registration *sr = arg;
    if (res->status != STORE_OK) {
        oauth_reply_store_down(sr->req, "registration");
        json_decref(sr->response);
    } else {
        store_set_add_detached(sr->store, KEY_ALL_CLIENTS, sr->client_id, 0, "client list");
        oauth_audit(http_request_id(sr->req), "client registered", "client_id", sr->client_id,
                    "client", http_request_client_ip(sr->req), NULL);
        oauth_reply_json(sr->req, 201, sr->response);
    }
    free(sr->client_id);
    free(sr);
}

static void store_client(struct registration *r, enum gw_client_auth auth)
{
    struct oauth_server *srv = r->srv;
    json_t *meta = registered_metadata(r->body, auth);
    unsigned char raw[16];
    rand_bytes(raw, sizeof(raw));
    char *client_id = b64url_encode_new(raw, sizeof(raw));
    if (client_id[0] == '-' || client_id[0] == '_') /* never like a command-line option */
        client_id[0] = client_id[0] == '-' ? 'A' : 'B';

    struct oauth_client c = {.client_id = client_id, .auth = auth};
    size_t i;
    json_t *v;
    json_array_foreach (json_object_get(meta, "redirect_uris"), i, v)
        mg_string_list_add(&c.redirect_uris, json_string_value(v));
    json_array_foreach (json_object_get(meta, "grant_types"), i, v)
        mg_string_list_add(&c.grant_types, json_string_value(v));
    c.client_name = (char *)json_string_value(json_object_get(meta, "client_name"));
    c.client_uri = (char *)json_string_value(json_object_get(meta, "client_uri"));
    c.logo_uri = (char *)json_string_value(json_object_get(meta, "logo_uri"));

    json_t *response = json_deep_copy(meta);
    json_object_set_new(response, "client_id", json_string(client_id));
    json_object_set_new(response, "client_id_issued_at", json_integer((json_int_t)time(NULL)));
    char hex[65];
    if (auth != GW_CLIENT_AUTH_NONE) {
        unsigned char sraw[32];
        rand_bytes(sraw, sizeof(sraw));
        char *secret = b64url_encode_new(sraw, sizeof(sraw));
        crypto_sha256_hex(secret, hex);
        c.secret_sha256 = hex;
        json_object_set_new(response, "client_secret", json_string(secret));
        /* 0: the secret does not expire by itself (the registration does, when unused). */
        json_object_set_new(response, "client_secret_expires_at", json_integer(0));
        crypto_wipe(secret, strlen(secret));
        free(secret);
        crypto_wipe(sraw, sizeof(sraw));
    }
    char *record = oauth_client_to_json(&c, meta);
    mg_string_list_clear(&c.redirect_uris);
    mg_string_list_clear(&c.grant_types);
    json_decref(meta);

    struct stored_registration *sr = xcalloc(1, sizeof(*sr));
    sr->store = srv->store;
    sr->req = r->req;
    sr->response = response;
    sr->client_id = client_id;
    char key[300];
    snprintf(key, sizeof(key), KEY_CLIENT "%s", client_id);
    if (store_put_nx(srv->store, key, record, strlen(record),
                     srv->cfg->oauth.registration_client_ttl_ms, on_client_stored, sr) < 0) {
        oauth_reply_store_down(r->req, "registration");
        json_decref(response);
        free(client_id);
        free(sr);
    }
    free(record);
    registration_free(r);
}

static void on_rate_checked(struct http_request *req, bool allowed, void *arg)
{
    (void)req;
    struct registration *r = arg;
    if (!allowed) {
        registration_free(r);
        return;
    }
    enum gw_client_auth auth;
    const char *error = NULL;
    const char *why = validate(r->srv, r->body, &auth, &error);
    if (why) {
        oauth_reply_error(r->req, 400, error, why);
        registration_free(r);
        return;
    }
    store_client(r, auth);
}

static void on_register(struct http_request *req, void *arg)
{
    struct oauth_server *srv = arg;
    if (!srv->cfg->oauth.registration_enabled) {
        oauth_reply_error(req, 404, "not_found", "dynamic client registration is disabled");
        return;
    }
    const char *ctype = http_request_header(req, "Content-Type");
    if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0) {
        oauth_reply_error(req, 400, "invalid_client_metadata",
                          "the registration request must be application/json");
        return;
    }
    size_t len;
    const char *text = http_request_body(req, &len);
    json_error_t jerr;
    json_t *body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(body)) {
        json_decref(body);
        oauth_reply_error(req, 400, "invalid_client_metadata",
                          "the body must be a JSON object (without duplicate keys)");
        return;
    }
    struct registration *r = xcalloc(1, sizeof(*r));
    r->srv = srv;
    r->req = req;
    r->body = body;
    const struct gw_oauth_config *oc = &srv->cfg->oauth;
    oauth_rate_limit(srv, req, "register", oc->registration_rate_count,
                     oc->registration_rate_window_ms, false, on_rate_checked, r);
}

int oauth_register_register(struct oauth_server *srv, struct http_server *http)
{
    struct http_route_options o = {
        .flags = HTTP_ROUTE_CORS,
        .max_body_bytes = srv->cfg->oauth.registration_max_body_bytes,
        .label = "/register",
    };
    return http_route_add(http, "/register", HTTP_POST, on_register, srv, &o);
}
