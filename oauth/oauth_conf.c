/*
 * oauth_conf: the `idp:` (with claims and the asgardeo preset, whose issuer
 * is derived), `oauth:` (registration, consent, static clients) and
 * `identity:` sections: tables for the conf/ engine, defaults and checks.
 * Static clients' redirect URIs obey oauth/redirect_uri.c, the rule dynamic
 * registration applies.
 */
#include "oauth/oauth_conf.h"

#include <string.h>

#include "common/net.h"
#include "common/url.h"
#include "common/xalloc.h"
#include "conf/conf.h"
#include "http/http_conf.h"
#include "oauth/redirect_uri.h"

#define OAUTH_SECRET_MIN_BYTES 32

CONF_ENUM_IS_INT(gw_idp_preset);
CONF_ENUM_IS_INT(gw_token_auth);
CONF_ENUM_IS_INT(gw_client_auth);

/* Reports nothing for a URL http_conf_url_problem() refuses: its own check does. */
static bool check_https_or_loopback(struct conf_loader *ld, const struct conf_node *at,
                                    const char *v)
{
    struct url_parts u;
    bool ok = http_conf_url_problem(v, &u) != NULL || strcmp(u.scheme, "https") == 0 ||
              net_host_is_loopback(u.host);
    url_parts_clear(&u);
    if (!ok)
        conf_node_error(ld, at, "\"%s\" must use https (http only for a loopback host)", v);
    return ok;
}

static bool check_base_url(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    return http_conf_check_origin_url(ld, at, v) && check_https_or_loopback(ld, at, v);
}

/* OIDC Core / RFC 8414: an https URL without query or fragment. */
static bool check_issuer(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    struct url_parts u;
    const char *why = http_conf_url_problem(v, &u);
    if (why == NULL && strpbrk(url_after_authority(v), "?#"))
        why = "must not have a query or fragment";
    url_parts_clear(&u);
    if (why) {
        conf_node_error(ld, at, "\"%s\" %s", v, why);
        return false;
    }
    return check_https_or_loopback(ld, at, v);
}

/*
 * A static client's redirect URIs obey the one rule of dynamic registration
 * (oauth/redirect_uri.c: https, http on loopback, private-use schemes with a
 * dot; never javascript:, data:, a fragment, …); only the message is ours.
 */
static bool check_redirect_uri(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    const char *why = oauth_redirect_uri_check(v);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

static bool check_organization(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == strlen(v))
        return true;
    conf_node_error(ld, at, "\"%s\" is not a valid organization name", v);
    return false;
}

/* ---- idp: ------------------------------------------------------------------ */

static const struct conf_field claims_fields[] = {
    {"subject", CONF_STR, AT(struct gw_idp_claims, subject)},
    {"username", CONF_STR, AT(struct gw_idp_claims, username)},
    {"email", CONF_STR, AT(struct gw_idp_claims, email)},
    {"name", CONF_STR, AT(struct gw_idp_claims, name)},
    {"roles", CONF_STR, AT(struct gw_idp_claims, roles)},
    {"groups", CONF_STR, AT(struct gw_idp_claims, groups)},
};

static const struct conf_section claims_section = {FIELDS(claims_fields), NULL, NULL};

static const struct conf_enum_name preset_names[] = {
    {"asgardeo", GW_IDP_ASGARDEO}, {"oidc", GW_IDP_OIDC}, {NULL, 0}};

static const struct conf_enum_name token_auth_names[] = {
    {"client_secret_basic", GW_TOKEN_AUTH_CLIENT_SECRET_BASIC},
    {"client_secret_post", GW_TOKEN_AUTH_CLIENT_SECRET_POST},
    {NULL, 0}};

static const struct conf_field idp_fields[] = {
    {"preset", CONF_ENUM, AT(struct gw_idp_config, preset), .flags = CONF_REQUIRED,
     .names = preset_names},
    {"organization", CONF_STR, AT(struct gw_idp_config, organization), .check = check_organization},
    {"base_url", CONF_STR, AT(struct gw_idp_config, base_url), .check = check_base_url},
    {"issuer", CONF_STR, AT(struct gw_idp_config, issuer), .flags = CONF_EMPTY_UNSET,
     .check = check_issuer},
    {"client_id", CONF_STR, AT(struct gw_idp_config, client_id), .flags = CONF_REQUIRED},
    {"client_secret", CONF_SECRET, AT(struct gw_idp_config, client_secret), .flags = CONF_REQUIRED},
    {"token_auth", CONF_ENUM, AT(struct gw_idp_config, token_auth), .names = token_auth_names},
    {"scopes", CONF_STRLIST, AT(struct gw_idp_config, scopes), .flags = CONF_NONEMPTY,
     .check = conf_check_scope},
    {"claims", CONF_SECTION, AT(struct gw_idp_config, claims), .sub = &claims_section},
    {"leeway", CONF_DURATION, AT(struct gw_idp_config, leeway_ms), RANGE(0, 10 * MIN_MS)},
    {"discovery_refresh", CONF_DURATION, AT(struct gw_idp_config, discovery_refresh_ms),
     RANGE(MIN_MS, 7 * DAY_MS)},
    {"timeout", CONF_DURATION, AT(struct gw_idp_config, timeout_ms), RANGE(SEC_MS, 5 * MIN_MS)},
    {"userinfo", CONF_BOOL, AT(struct gw_idp_config, use_userinfo)},
    {"recheck_on_refresh", CONF_BOOL, AT(struct gw_idp_config, recheck_on_refresh)},
};

static void idp_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                     const struct conf_keys_seen *ks);

const struct conf_section oauth_conf_idp_section = {FIELDS(idp_fields), idp_post, NULL};

/* Asgardeo's issuer is derived: <base_url>/t/<organization>/oauth2/token. */
static void idp_post_asgardeo(struct conf_loader *ld, const struct conf_node *at,
                              struct gw_idp_config *idp, const struct conf_keys_seen *ks)
{
    if (!conf_key_given(&oauth_conf_idp_section, ks, "organization"))
        conf_key_error(ld, at, "organization", "required for preset asgardeo");
    if (idp->issuer)
        conf_key_error(ld, at, "issuer",
                       "is derived from base_url and organization for preset "
                       "asgardeo: remove it");
    if (idp->base_url == NULL && !conf_key_given(&oauth_conf_idp_section, ks, "base_url"))
        idp->base_url = xstrdup("https://api.asgardeo.io");
    if (idp->issuer == NULL && idp->organization && idp->base_url)
        idp->issuer = xasprintf("%s/t/%s/oauth2/token", idp->base_url, idp->organization);
}

static void idp_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                     const struct conf_keys_seen *ks)
{
    struct gw_idp_config *idp = base;
    idp->configured = true;
    if (!conf_key_valid(&oauth_conf_idp_section, ks, "preset"))
        return; /* reported; the preset-specific checks would only add noise */
    if (idp->preset == GW_IDP_ASGARDEO) {
        idp_post_asgardeo(ld, at, idp, ks);
    } else {
        if (!conf_key_given(&oauth_conf_idp_section, ks, "issuer"))
            conf_key_error(ld, at, "issuer", "required for preset oidc");
        else if (idp->issuer == NULL && conf_key_valid(&oauth_conf_idp_section, ks, "issuer"))
            conf_key_error(ld, at, "issuer", "must not be empty for preset oidc");
        if (conf_key_given(&oauth_conf_idp_section, ks, "organization"))
            conf_key_error(ld, at, "organization", "is only used with preset asgardeo");
        if (conf_key_given(&oauth_conf_idp_section, ks, "base_url"))
            conf_key_error(ld, at, "base_url", "is only used with preset asgardeo");
    }
    bool openid = false;
    for (size_t i = 0; i < idp->scopes.len; i++)
        openid = openid || strcmp(idp->scopes.items[i], "openid") == 0;
    if (!openid && conf_key_valid(&oauth_conf_idp_section, ks, "scopes"))
        conf_key_error(ld, at, "scopes", "must include openid");
}

/* ---- oauth: ---------------------------------------------------------------- */

static const struct conf_enum_name client_auth_names[] = {
    {"none", GW_CLIENT_AUTH_NONE},
    {"client_secret_basic", GW_CLIENT_AUTH_CLIENT_SECRET_BASIC},
    {"client_secret_post", GW_CLIENT_AUTH_CLIENT_SECRET_POST},
    {NULL, 0}};

static const struct conf_field client_fields[] = {
    {"client_id", CONF_STR, AT(struct gw_static_client, client_id), .flags = CONF_REQUIRED},
    {"client_name", CONF_STR, AT(struct gw_static_client, client_name)},
    {"redirect_uris", CONF_STRLIST, AT(struct gw_static_client, redirect_uris),
     .flags = CONF_REQUIRED | CONF_NONEMPTY, .check = check_redirect_uri},
    {"auth", CONF_ENUM, AT(struct gw_static_client, auth), .names = client_auth_names},
    {"client_secret", CONF_SECRET, AT(struct gw_static_client, client_secret)},
};

static void client_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                        const struct conf_keys_seen *ks);
static const struct conf_section client_section = {FIELDS(client_fields), client_post, NULL};

/* auth defaults to client_secret_basic when a secret is given, none otherwise. */
static void client_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                        const struct conf_keys_seen *ks)
{
    struct gw_static_client *c = base;
    bool secret = conf_key_given(&client_section, ks, "client_secret");
    const char *key = conf_map_has(at, "client_secret") ? "client_secret" : "client_secret_file";
    if (!conf_key_given(&client_section, ks, "auth"))
        c->auth = secret ? GW_CLIENT_AUTH_CLIENT_SECRET_BASIC : GW_CLIENT_AUTH_NONE;
    else if (!conf_key_valid(&client_section, ks, "auth"))
        return;
    else if (c->auth == GW_CLIENT_AUTH_NONE && secret)
        conf_key_error(ld, at, key, "is not used with auth: none");
    else if (c->auth != GW_CLIENT_AUTH_NONE && !secret)
        conf_key_error(ld, at, "client_secret", "required for auth %s (or client_secret_file)",
                       client_auth_names[c->auth].name);
}

static const struct conf_field registration_fields[] = {
    {"enabled", CONF_BOOL, AT(struct gw_oauth_config, registration_enabled)},
    {"public_clients", CONF_BOOL, AT(struct gw_oauth_config, registration_public_clients)},
    {"client_ttl", CONF_DURATION, AT(struct gw_oauth_config, registration_client_ttl_ms),
     RANGE(MIN_MS, 3650 * DAY_MS)},
    {"rate", CONF_RATE,
     AT2(struct gw_oauth_config, registration_rate_count, registration_rate_window_ms)},
    {"max_body", CONF_SIZE, AT(struct gw_oauth_config, registration_max_body_bytes),
     RANGE(1 * KiB, 1 * MiB)},
};

static const struct conf_section registration_section = {FIELDS(registration_fields), NULL, NULL};

static const struct conf_field consent_fields[] = {
    {"remember", CONF_DURATION, AT(struct gw_oauth_config, consent_remember_ms),
     RANGE(0, 365 * DAY_MS)},
};

static const struct conf_section consent_section = {FIELDS(consent_fields), NULL, NULL};

static bool check_page_path(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    bool ok = v[0] == '/' && v[1] != '\0' && strlen(v) < 200;
    for (const char *p = v; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
             strchr("/-_.", *p) != NULL;
    if (!ok)
        conf_node_error(ld, at, "\"%s\" must be a path such as /account (letters, digits, / - _ .)",
                        v);
    return ok;
}

static const struct conf_field account_fields[] = {
    {"enabled", CONF_BOOL, AT(struct gw_oauth_config, account_enabled)},
    {"path", CONF_STR, AT(struct gw_oauth_config, account_path), .check = check_page_path},
    {"session_ttl", CONF_DURATION, AT(struct gw_oauth_config, account_session_ttl_ms),
     RANGE(MIN_MS, DAY_MS)},
};

static const struct conf_section account_section = {FIELDS(account_fields), NULL, NULL};

/* A host name or IP literal as it appears in a client_id URL (no port, no scheme). */
static bool check_cimd_host(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 253 &&
              strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789-.:[]") == n;
    if (!ok)
        conf_node_error(ld, at, "\"%s\" is not a host name or IP address (no scheme or port)", v);
    return ok;
}

static const struct conf_field cimd_fields[] = {
    {"enabled", CONF_BOOL, AT(struct gw_oauth_config, cimd_enabled)},
    {"allow_hosts", CONF_STRLIST, AT(struct gw_oauth_config, cimd_allow_hosts),
     .check = check_cimd_host},
    {"deny_hosts", CONF_STRLIST, AT(struct gw_oauth_config, cimd_deny_hosts),
     .check = check_cimd_host},
    {"cache_entries", CONF_U32, AT(struct gw_oauth_config, cimd_cache_entries), RANGE(0, 1000000)},
    {"timeout", CONF_DURATION, AT(struct gw_oauth_config, cimd_timeout_ms),
     RANGE(100, 60 * SEC_MS)},
    {"max_document", CONF_SIZE, AT(struct gw_oauth_config, cimd_max_document_bytes),
     RANGE(1 * KiB, 64 * KiB)},
    {"ca_file", CONF_STR, AT(struct gw_oauth_config, cimd_ca_file)},
};

static const struct conf_section cimd_section = {FIELDS(cimd_fields), NULL, NULL};

static const struct conf_field oauth_fields[] = {
    {"secret", CONF_SECRET_BYTES, AT2(struct gw_oauth_config, secret, secret_len),
     RANGE(OAUTH_SECRET_MIN_BYTES, 0)},
    {"access_token_ttl", CONF_DURATION, AT(struct gw_oauth_config, access_token_ttl_ms),
     RANGE(SEC_MS, DAY_MS)},
    {"refresh_token_ttl", CONF_DURATION, AT(struct gw_oauth_config, refresh_token_ttl_ms),
     RANGE(SEC_MS, 365 * DAY_MS)},
    {"refresh_grace", CONF_DURATION, AT(struct gw_oauth_config, refresh_grace_ms),
     RANGE(0, 5 * MIN_MS)},
    {"code_ttl", CONF_DURATION, AT(struct gw_oauth_config, code_ttl_ms),
     RANGE(SEC_MS, 10 * MIN_MS)},
    {"authorize_ttl", CONF_DURATION, AT(struct gw_oauth_config, authorize_ttl_ms),
     RANGE(SEC_MS, HOUR_MS)},
    {"require_resource", CONF_BOOL, AT(struct gw_oauth_config, require_resource)},
    {"scopes", CONF_STRMAP, AT(struct gw_oauth_config, scopes), .check = conf_check_scope},
    {"registration", CONF_SECTION, .off = 0, .sub = &registration_section},
    {"clients", CONF_LIST, AT2(struct gw_oauth_config, clients, n_clients), .sub = &client_section,
     .elem_size = sizeof(struct gw_static_client)},
    {"consent", CONF_SECTION, .off = 0, .sub = &consent_section},
    {"account", CONF_SECTION, .off = 0, .sub = &account_section},

    {"cimd", CONF_SECTION, .off = 0, .sub = &cimd_section},
    {"max_grant_lifetime", CONF_DURATION, AT(struct gw_oauth_config, max_grant_lifetime_ms),
     RANGE(0, 3650 * DAY_MS)},
    {"token_rate", CONF_RATE, AT2(struct gw_oauth_config, token_rate_count, token_rate_window_ms)},
    {"authorize_rate", CONF_RATE,
     AT2(struct gw_oauth_config, authorize_rate_count, authorize_rate_window_ms)},
    {"callback_rate", CONF_RATE,
     AT2(struct gw_oauth_config, callback_rate_count, callback_rate_window_ms)},
};

static void oauth_post(struct conf_loader *ld, const struct conf_node *at, void *base,
                       const struct conf_keys_seen *ks)
{
    (void)ks;
    const struct gw_oauth_config *o = base;
    const struct conf_node *list = conf_map_get(at, "clients");
    size_t old = conf_path_push(ld, "clients");
    for (size_t i = 0; i < o->n_clients; i++) {
        for (size_t j = 0; j < i && o->clients[i].client_id; j++) {
            if (o->clients[j].client_id &&
                strcmp(o->clients[i].client_id, o->clients[j].client_id) == 0) {
                size_t old_i = conf_path_push_index(ld, i);
                conf_value_error(ld, conf_seq_item(list, i), "client_id",
                                 "duplicate client_id \"%s\" (first at line %u)",
                                 o->clients[i].client_id, conf_node_line(conf_seq_item(list, j)));
                conf_path_pop(ld, old_i);
                break;
            }
        }
    }
    conf_path_pop(ld, old);
}

const struct conf_section oauth_conf_section = {FIELDS(oauth_fields), oauth_post, NULL};

/* ---- identity: ------------------------------------------------------------- */

static const struct conf_field identity_fields[] = {
    {"signing_key_file", CONF_STR, AT(struct gw_identity_config, signing_key_file)},
    {"previous_key_file", CONF_STR, AT(struct gw_identity_config, previous_key_file)},
    {"jwt_ttl", CONF_DURATION, AT(struct gw_identity_config, jwt_ttl_ms),
     RANGE(SEC_MS, 5 * MIN_MS)},
};

const struct conf_section oauth_conf_identity_section = {FIELDS(identity_fields), NULL, NULL};

/* ---- defaults -------------------------------------------------------------- */

void oauth_conf_idp_defaults(struct gw_idp_config *idp)
{
    static const char *const scopes[] = {"openid", "profile", "email", "roles"};
    idp->token_auth = GW_TOKEN_AUTH_CLIENT_SECRET_BASIC;
    conf_string_list_set(&idp->scopes, scopes, 4);
    idp->claims = (struct gw_idp_claims){xstrdup("sub"),  xstrdup("username"), xstrdup("email"),
                                         xstrdup("name"), xstrdup("roles"),    xstrdup("groups")};
    idp->leeway_ms = 60 * SEC_MS;
    idp->discovery_refresh_ms = HOUR_MS;
    idp->timeout_ms = 10 * SEC_MS;
    idp->use_userinfo = true;
}

void oauth_conf_defaults(struct gw_oauth_config *o)
{
    o->access_token_ttl_ms = HOUR_MS;
    o->refresh_token_ttl_ms = 30 * DAY_MS;
    o->code_ttl_ms = 60 * SEC_MS;
    o->authorize_ttl_ms = 10 * MIN_MS;
    o->scopes.keys = xcalloc(1, sizeof(char *));
    o->scopes.values = xcalloc(1, sizeof(char *));
    o->scopes.keys[0] = xstrdup("mcp:tools");
    o->scopes.values[0] = xstrdup("Use the tools of the MCP servers behind this gateway");
    o->scopes.len = 1;
    o->registration_enabled = true;
    o->registration_public_clients = true;
    o->registration_client_ttl_ms = 90 * DAY_MS;
    o->registration_rate_count = 10;
    o->registration_rate_window_ms = MIN_MS;
    o->registration_max_body_bytes = 64 * KiB;
    o->consent_remember_ms = 30 * DAY_MS;
    o->account_enabled = true;
    o->account_path = xstrdup("/account");
    o->account_session_ttl_ms = 15 * MIN_MS;
    o->token_rate_count = 600;
    o->token_rate_window_ms = MIN_MS;
    o->authorize_rate_count = 300;
    o->authorize_rate_window_ms = MIN_MS;
    o->callback_rate_count = 300;
    o->callback_rate_window_ms = MIN_MS;
    o->cimd_enabled = true;
    o->cimd_cache_entries = 1000;
    o->cimd_timeout_ms = 5 * SEC_MS;
    o->cimd_max_document_bytes = 5 * KiB;
}

void oauth_conf_identity_defaults(struct gw_identity_config *id)
{
    id->jwt_ttl_ms = 5 * MIN_MS;
}

const char *oauth_conf_preset_name(enum gw_idp_preset preset)
{
    return conf_enum_name(preset_names, (int)preset);
}
