/*
 * test_idp_flow: oauth/idp against a real test IdP on loopback. The IdP is a
 * http/ server on the same event loop as the client (httpc), serving
 * discovery, JWKS, token and userinfo, and checking what mcpgate sends:
 * client authentication, the form fields, the PKCE verifier. It counts the
 * requests per endpoint so the tests can prove what was (not) fetched.
 * Keys: tests/fixtures/idp (test-only).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>

#include "common/httpc.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "http/http.h"
#include "test_fixture_util.h"
#include "common/log.h"
#include "oauth/idp.h"

#define BASE_PATH "/t/acme/oauth2"
#define CLIENT_ID "mcpgate client:1"
#define CLIENT_SECRET "p@ss:w/rd +"
/* RFC 6749 §2.3.1 form-encoding of the two above, written out by hand. */
#define CLIENT_ID_FORM "mcpgate+client%3A1"
#define CLIENT_SECRET_FORM "p%40ss%3Aw%2Frd+%2B"
#define REDIRECT "https://mcp.example.com/callback"
#define CODE "code-abc"
#define VERIFIER "verifier-0123456789-0123456789-0123456789-xyz"
#define NONCE "nonce-42"
#define ACCESS "idp-access-1"
#define REFRESH "idp-refresh-1"

enum token_mode {
    TOKEN_OK = 0,
    TOKEN_INVALID_GRANT,
    TOKEN_SERVER_ERROR,
};

/* The test IdP: what it serves and what it saw. */
struct test_idp {
    struct http_server *srv;
    int port;
    char *issuer;      /* owned: http://127.0.0.1:<port>/t/acme/oauth2/token */
    char *disc_issuer; /* owned: the issuer the discovery document claims */
    char *token_url;   /* owned: token_endpoint in discovery */
    char *jwks;        /* owned: served JWKS JSON */
    enum token_mode token_mode;
    const char *sign_pem; /* borrowed: key signing ID tokens */
    const char *sign_kid; /* borrowed */
    bool roles_in_id_token;
    bool id_token_on_refresh;
    bool new_refresh_token;
    const char *userinfo_sub; /* borrowed; NULL: the ID token's */
    int n_discovery, n_jwks, n_token, n_userinfo;
    char *failure; /* owned: first protocol check that failed */
};

static char *scope_items[] = {"openid", "profile", "email", "roles"};

struct fixture {
    struct event_base *base;
    struct httpc *httpc;
    struct gw_idp_config cfg;
    struct idp_client *idp;
    struct test_idp tidp;
    char *rsa1, *rsa2;         /* PEM */
    char *rsa1_jwk, *rsa2_jwk; /* JWK JSON */
};

static struct fixture fx;

struct result {
    bool done;
    char *error;
    bool denied;
    struct idp_identity id; /* deep copy of what the callback got */
};

/* ---- helpers ------------------------------------------------------------ */

static void fail_check(const char *what)
{
    if (!fx.tidp.failure)
        fx.tidp.failure = xstrdup(what);
}

static void set_jwks(const char *a, const char *b)
{
    free(fx.tidp.jwks);
    fx.tidp.jwks = b ? xasprintf("{\"keys\":[%s,%s]}", a, b) : xasprintf("{\"keys\":[%s]}", a);
}

static char *sign_id_token(const char *nonce)
{
    time_t now = time(NULL);
    json_t *c = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "iss", fx.tidp.issuer, "sub",
                          "user-1", "aud", CLIENT_ID, "exp", (json_int_t)now + 300, "iat",
                          (json_int_t)now, "username", "alice", "email", "alice@example.com");
    if (nonce)
        json_object_set_new(c, "nonce", json_string(nonce));
    if (fx.tidp.roles_in_id_token) {
        json_object_set_new(c, "roles", json_pack("[s,s]", "manager", "staff"));
        json_object_set_new(c, "groups", json_pack("[s]", "eng"));
    }
    char *payload = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, payload), 0);
    assert_int_equal(jwt_add_header(j, "kid", fx.tidp.sign_kid), 0);
    const char *key = fx.tidp.sign_pem;
    assert_int_equal(jwt_set_alg(j, JWT_ALG_RS256, (const unsigned char *)key, (int)strlen(key)),
                     0);
    char *tok = jwt_encode_str(j);
    jwt_free(j);
    free(payload);
    return tok;
}

/* ---- the test IdP's endpoints ------------------------------------------ */

static void on_discovery(struct http_request *req, void *arg)
{
    (void)arg;
    fx.tidp.n_discovery++;
    char *base = xasprintf("http://127.0.0.1:%d" BASE_PATH, fx.tidp.port);
    char *authz = xasprintf("%s/authorize", base);
    char *jwks = xasprintf("%s/jwks", base);
    char *userinfo = xasprintf("%s/userinfo", base);
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s], s:[s], s:[s]}", "issuer",
                            fx.tidp.disc_issuer, "authorization_endpoint", authz, "token_endpoint",
                            fx.tidp.token_url, "jwks_uri", jwks, "userinfo_endpoint", userinfo,
                            "response_types_supported", "code", "code_challenge_methods_supported",
                            "S256", "id_token_signing_alg_values_supported", "RS256");
    char *text = json_dumps(doc, JSON_COMPACT);
    http_reply_json_text(req, 200, text);
    free(text);
    free(base);
    free(authz);
    free(jwks);
    free(userinfo);
    json_decref(doc);
}

static void on_jwks(struct http_request *req, void *arg)
{
    (void)arg;
    fx.tidp.n_jwks++;
    http_reply_json_text(req, 200, fx.tidp.jwks);
}

static char *expected_basic(void)
{
    const char *cred = CLIENT_ID_FORM ":" CLIENT_SECRET_FORM;
    unsigned char out[256];
    int n = EVP_EncodeBlock(out, (const unsigned char *)cred, (int)strlen(cred));
    return xasprintf("Basic %.*s", n, out);
}

/* Client authentication as configured, and nothing else (RFC 6749 §2.3.1). */
static void check_client_auth(struct http_request *req, const struct http_params *form)
{
    const char *auth = http_request_header(req, "Authorization");
    if (fx.cfg.token_auth == GW_TOKEN_AUTH_CLIENT_SECRET_BASIC) {
        char *want = expected_basic();
        if (!auth || strcmp(auth, want) != 0)
            fail_check("client_secret_basic: wrong Authorization header");
        if (http_params_get(form, "client_secret"))
            fail_check("client_secret_basic: secret also in the body");
        free(want);
    } else {
        if (auth)
            fail_check("client_secret_post: unexpected Authorization header");
        const char *id = http_params_get(form, "client_id");
        const char *secret = http_params_get(form, "client_secret");
        if (!id || strcmp(id, CLIENT_ID) != 0 || !secret || strcmp(secret, CLIENT_SECRET) != 0)
            fail_check("client_secret_post: wrong client_id/client_secret fields");
    }
}

static void on_token(struct http_request *req, void *arg)
{
    (void)arg;
    fx.tidp.n_token++;
    size_t len = 0;
    const char *body = http_request_body(req, &len);
    struct http_params form = {0};
    const char *ctype = http_request_header(req, "Content-Type");
    if (!ctype || strcmp(ctype, "application/x-www-form-urlencoded") != 0)
        fail_check("token request Content-Type");
    if (http_params_parse(body, len, &form) != 0)
        fail_check("token request body is not a form");
    check_client_auth(req, &form);
    const char *grant = http_params_get(&form, "grant_type");
    bool refresh = grant && strcmp(grant, "refresh_token") == 0;
    if (!refresh) {
        const char *v;
        if (!grant || strcmp(grant, "authorization_code") != 0)
            fail_check("grant_type");
        if (!(v = http_params_get(&form, "code")) || strcmp(v, CODE) != 0)
            fail_check("code");
        if (!(v = http_params_get(&form, "redirect_uri")) || strcmp(v, REDIRECT) != 0)
            fail_check("redirect_uri");
        if (!(v = http_params_get(&form, "code_verifier")) || strcmp(v, VERIFIER) != 0)
            fail_check("PKCE code_verifier");
    } else {
        const char *v = http_params_get(&form, "refresh_token");
        if (!v || strcmp(v, REFRESH) != 0)
            fail_check("refresh_token");
    }
    http_params_clear(&form);
    if (fx.tidp.token_mode == TOKEN_INVALID_GRANT) {
        http_reply_error(req, 400, "invalid_grant", "authorization code expired");
        return;
    }
    if (fx.tidp.token_mode == TOKEN_SERVER_ERROR) {
        http_reply(req, 503, "text/html", "<h1>down</h1>", 13);
        return;
    }
    json_t *res = json_pack("{s:s, s:s, s:i}", "access_token", ACCESS, "token_type", "Bearer",
                            "expires_in", 3600);
    if (!refresh || fx.tidp.new_refresh_token)
        json_object_set_new(res, "refresh_token", json_string(refresh ? "idp-refresh-2" : REFRESH));
    if (!refresh || fx.tidp.id_token_on_refresh) {
        char *tok = sign_id_token(refresh ? NULL : NONCE);
        json_object_set_new(res, "id_token", json_string(tok));
        free(tok);
    }
    char *text = json_dumps(res, JSON_COMPACT);
    http_reply_json_text(req, 200, text);
    free(text);
    json_decref(res);
}

static void on_userinfo(struct http_request *req, void *arg)
{
    (void)arg;
    fx.tidp.n_userinfo++;
    const char *auth = http_request_header(req, "Authorization");
    if (!auth || strcmp(auth, "Bearer " ACCESS) != 0) {
        fail_check("userinfo bearer");
        http_reply(req, 401, "text/plain", "", 0);
        return;
    }
    const char *sub = fx.tidp.userinfo_sub ? fx.tidp.userinfo_sub : "user-1";
    json_t *info = json_pack("{s:s, s:[s], s:[s,s], s:s}", "sub", sub, "roles", "manager", "groups",
                             "eng", "ops", "name", "Alice Example");
    char *text = json_dumps(info, JSON_COMPACT);
    http_reply_json_text(req, 200, text);
    free(text);
    json_decref(info);
}

/* ---- fixture ------------------------------------------------------------ */

/* A loopback port with nothing listening (bound, then closed). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = {.sin_family = AF_INET};
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
    socklen_t sl = sizeof(in);
    getsockname(fd, (struct sockaddr *)&in, &sl);
    close(fd);
    return ntohs(in.sin_port);
}

static int setup(void **state)
{
    (void)state;
    /* IDP_TEST_LOG=1 shows mcpgate's log lines (to check that no secret is in them). */
    gw_log_set_level(getenv("IDP_TEST_LOG") ? GW_LOG_DEBUG : GW_LOG_ERROR);
    memset(&fx, 0, sizeof(fx));
    fx.base = event_base_new();
    char *err = NULL;
    struct http_server_options opts = {.max_body_bytes = 65536,
                                       .max_header_bytes = 16384,
                                       .max_connections = 100,
                                       .request_timeout_ms = 5000,
                                       .sse_high_water_bytes = 65536};
    fx.tidp.srv = http_server_new(fx.base, &opts, &err);
    assert_non_null(fx.tidp.srv);
    assert_int_equal(http_server_listen(fx.tidp.srv, "127.0.0.1:0", &err), 0);
    fx.tidp.port = http_server_port(fx.tidp.srv);
    struct http_server *s = fx.tidp.srv;
    assert_int_equal(http_route_add(s, BASE_PATH "/token/.well-known/openid-configuration",
                                    HTTP_GET, on_discovery, NULL, NULL),
                     0);
    assert_int_equal(http_route_add(s, BASE_PATH "/jwks", HTTP_GET, on_jwks, NULL, NULL), 0);
    assert_int_equal(http_route_add(s, BASE_PATH "/token", HTTP_POST, on_token, NULL, NULL), 0);
    assert_int_equal(http_route_add(s, BASE_PATH "/userinfo", HTTP_GET, on_userinfo, NULL, NULL),
                     0);
    fx.tidp.issuer = xasprintf("http://127.0.0.1:%d" BASE_PATH "/token", fx.tidp.port);
    fx.tidp.disc_issuer = xstrdup(fx.tidp.issuer);
    fx.tidp.token_url = xstrdup(fx.tidp.issuer); /* Asgardeo: issuer == token endpoint URL */
    fx.rsa1 = fixture_read("rsa1.pem");
    fx.rsa2 = fixture_read("rsa2.pem");
    fx.rsa1_jwk = fixture_read("rsa1.jwk.json");
    fx.rsa2_jwk = fixture_read("rsa2.jwk.json");
    set_jwks(fx.rsa1_jwk, NULL);
    fx.tidp.sign_pem = fx.rsa1;
    fx.tidp.sign_kid = "rsa1";
    fx.tidp.roles_in_id_token = true;

    fx.cfg = (struct gw_idp_config){
        .configured = true,
        .preset = GW_IDP_ASGARDEO,
        .organization = "acme",
        .issuer = fx.tidp.issuer,
        .client_id = CLIENT_ID,
        .client_secret = CLIENT_SECRET,
        .token_auth = GW_TOKEN_AUTH_CLIENT_SECRET_BASIC,
        .scopes = {scope_items, 4},
        .claims = {"sub", "username", "email", "name", "roles", "groups"},
        .leeway_ms = 60000,
        .discovery_refresh_ms = 3600000,
        .timeout_ms = 3000,
        .use_userinfo = true,
    };
    fx.httpc = httpc_new(fx.base, &err);
    assert_non_null(fx.httpc);
    fx.idp = idp_client_new(fx.base, fx.httpc, &fx.cfg, &err);
    assert_non_null(fx.idp);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    idp_client_free(fx.idp);
    httpc_free(fx.httpc);
    http_server_free(fx.tidp.srv);
    event_base_free(fx.base);
    free(fx.tidp.issuer);
    free(fx.tidp.disc_issuer);
    free(fx.tidp.token_url);
    free(fx.tidp.jwks);
    free(fx.tidp.failure);
    free(fx.rsa1);
    free(fx.rsa2);
    free(fx.rsa1_jwk);
    free(fx.rsa2_jwk);
    return 0;
}

/* ---- running the loop --------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    event_base_loopbreak(fx.base);
}

/* Runs the loop until *FLAG is true or LIMIT_MS have passed; returns *FLAG. */
static bool run_until(const bool *flag, int limit_ms)
{
    struct event *tick = event_new(fx.base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(tick, &tv);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!*flag) {
        event_base_dispatch(fx.base);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > limit_ms)
            break;
    }
    event_free(tick);
    return *flag;
}

static void run_ms(int ms)
{
    bool never = false;
    run_until(&never, ms);
}

static void start_and_wait_ready(void)
{
    idp_client_start(fx.idp);
    for (int i = 0; i < 400 && !idp_client_ready(fx.idp); i++)
        run_ms(10);
    if (!idp_client_ready(fx.idp))
        fail_msg("idp not ready: %s", idp_client_last_error(fx.idp));
}

static void on_login(const struct idp_identity *id, const char *error, bool denied, void *arg)
{
    struct result *r = arg;
    r->done = true;
    r->denied = denied;
    if (error) {
        assert_null(id);
        r->error = xstrdup(error);
        return;
    }
    assert_non_null(id);
    assert_non_null(id->subject);
    r->id.subject = xstrdup(id->subject);
    r->id.username = id->username ? xstrdup(id->username) : NULL;
    r->id.email = id->email ? xstrdup(id->email) : NULL;
    r->id.name = id->name ? xstrdup(id->name) : NULL;
    mg_string_list_copy(&r->id.roles, &id->roles);
    mg_string_list_copy(&r->id.groups, &id->groups);
    r->id.access_token = id->access_token ? xstrdup(id->access_token) : NULL;
    r->id.refresh_token = id->refresh_token ? xstrdup(id->refresh_token) : NULL;
    r->id.access_expires_at = id->access_expires_at;
}

static void result_clear(struct result *r)
{
    free(r->error);
    free(r->id.subject);
    free(r->id.username);
    free(r->id.email);
    free(r->id.name);
    mg_string_list_clear(&r->id.roles);
    mg_string_list_clear(&r->id.groups);
    free(r->id.access_token);
    free(r->id.refresh_token);
    memset(r, 0, sizeof(*r));
}

static void login(struct result *r)
{
    memset(r, 0, sizeof(*r));
    idp_login(fx.idp, CODE, REDIRECT, VERIFIER, NONCE, on_login, r);
    assert_false(r->done); /* idp.h: never synchronously */
    assert_true(run_until(&r->done, 5000));
}

static void assert_no_protocol_failure(void)
{
    if (fx.tidp.failure)
        fail_msg("test IdP check failed: %s", fx.tidp.failure);
}

/* ---- tests -------------------------------------------------------------- */

static void test_start_ready(void **state)
{
    (void)state;
    assert_false(idp_client_ready(fx.idp));
    start_and_wait_ready();
    assert_int_equal(fx.tidp.n_discovery, 1);
    assert_int_equal(fx.tidp.n_jwks, 1);
    assert_null(idp_client_last_error(fx.idp));
    char *url = idp_authorize_url(fx.idp, REDIRECT, "st", "nn", "ch");
    assert_non_null(url);
    char *prefix = xasprintf("http://127.0.0.1:%d" BASE_PATH "/authorize?", fx.tidp.port);
    assert_memory_equal(url, prefix, strlen(prefix));
    free(prefix);
    free(url);
}

static void test_login_basic_auth(void **state)
{
    (void)state;
    start_and_wait_ready();
    struct result r;
    login(&r);
    assert_no_protocol_failure();
    if (r.error)
        fail_msg("login failed: %s", r.error);
    assert_string_equal(r.id.subject, "user-1");
    assert_string_equal(r.id.username, "alice");
    assert_string_equal(r.id.email, "alice@example.com");
    assert_int_equal(r.id.roles.len, 2);
    assert_string_equal(r.id.roles.items[0], "manager");
    assert_string_equal(r.id.roles.items[1], "staff");
    assert_int_equal(r.id.groups.len, 1);
    assert_string_equal(r.id.access_token, ACCESS);
    assert_string_equal(r.id.refresh_token, REFRESH);
    assert_true(r.id.access_expires_at >= (uint64_t)time(NULL) + 3590);
    assert_int_equal(fx.tidp.n_token, 1);
    assert_int_equal(fx.tidp.n_userinfo, 0); /* roles and groups were in the ID token */
    result_clear(&r);
}

static void test_login_post_auth(void **state)
{
    (void)state;
    fx.cfg.token_auth = GW_TOKEN_AUTH_CLIENT_SECRET_POST;
    start_and_wait_ready();
    struct result r;
    login(&r);
    assert_no_protocol_failure();
    assert_null(r.error);
    assert_string_equal(r.id.subject, "user-1");
    result_clear(&r);
}

static void test_roles_only_in_userinfo(void **state)
{
    (void)state;
    fx.tidp.roles_in_id_token = false;
    start_and_wait_ready();
    struct result r;
    login(&r);
    assert_no_protocol_failure();
    if (r.error)
        fail_msg("login failed: %s", r.error);
    assert_int_equal(fx.tidp.n_userinfo, 1);
    assert_int_equal(r.id.roles.len, 1);
    assert_string_equal(r.id.roles.items[0], "manager");
    assert_int_equal(r.id.groups.len, 2);
    assert_string_equal(r.id.username, "alice");     /* from the ID token */
    assert_string_equal(r.id.name, "Alice Example"); /* filled in from userinfo */
    result_clear(&r);
    /* Turned off in the config: no userinfo call, no roles. */
    fx.cfg.use_userinfo = false;
    login(&r);
    assert_null(r.error);
    assert_int_equal(fx.tidp.n_userinfo, 1);
    assert_int_equal(r.id.roles.len, 0);
    result_clear(&r);
}

static void test_userinfo_sub_mismatch(void **state)
{
    (void)state;
    fx.tidp.roles_in_id_token = false;
    fx.tidp.userinfo_sub = "someone-else";
    start_and_wait_ready();
    struct result r;
    login(&r);
    assert_non_null(r.error);
    assert_non_null(strstr(r.error, "userinfo sub differs"));
    assert_false(r.denied);
    result_clear(&r);
}

static void test_unknown_kid_refetches_once(void **state)
{
    (void)state;
    start_and_wait_ready();
    assert_int_equal(fx.tidp.n_jwks, 1);
    /* The IdP rotated to rsa2; mcpgate's cache still has rsa1 only. */
    set_jwks(fx.rsa1_jwk, fx.rsa2_jwk);
    fx.tidp.sign_pem = fx.rsa2;
    fx.tidp.sign_kid = "rsa2";
    struct result r;
    login(&r);
    if (r.error)
        fail_msg("login failed: %s", r.error);
    assert_int_equal(fx.tidp.n_jwks, 2); /* exactly one refetch */
    assert_string_equal(r.id.subject, "user-1");
    result_clear(&r);
    /* Same key again: cached, no fetch. */
    login(&r);
    assert_null(r.error);
    assert_int_equal(fx.tidp.n_jwks, 2);
    result_clear(&r);
    /* Another unknown kid within 10 s: no second refetch, a clear failure. */
    fx.tidp.sign_kid = "rsa3";
    login(&r);
    assert_non_null(r.error);
    assert_non_null(strstr(r.error, "unknown key"));
    assert_false(r.denied);
    assert_int_equal(fx.tidp.n_jwks, 2);
    result_clear(&r);
}

/* Two logins with the same unknown kid at once share one refetch. */
static void test_concurrent_unknown_kid_one_fetch(void **state)
{
    (void)state;
    start_and_wait_ready();
    set_jwks(fx.rsa2_jwk, NULL);
    fx.tidp.sign_pem = fx.rsa2;
    fx.tidp.sign_kid = "rsa2";
    struct result a = {0}, b = {0};
    idp_login(fx.idp, CODE, REDIRECT, VERIFIER, NONCE, on_login, &a);
    idp_login(fx.idp, CODE, REDIRECT, VERIFIER, NONCE, on_login, &b);
    assert_true(run_until(&a.done, 5000));
    assert_true(run_until(&b.done, 5000));
    assert_null(a.error);
    assert_null(b.error);
    assert_int_equal(fx.tidp.n_jwks, 2);
    result_clear(&a);
    result_clear(&b);
}

static void test_invalid_grant_is_access_denied(void **state)
{
    (void)state;
    fx.tidp.token_mode = TOKEN_INVALID_GRANT;
    start_and_wait_ready();
    struct result r;
    login(&r);
    assert_non_null(r.error);
    assert_true(r.denied);
    assert_non_null(strstr(r.error, "invalid_grant"));
    assert_null(strstr(r.error, CODE)); /* never the code itself */
    result_clear(&r);
    /* A 503 HTML page: the IdP misbehaved, not the user. */
    fx.tidp.token_mode = TOKEN_SERVER_ERROR;
    login(&r);
    assert_non_null(r.error);
    assert_false(r.denied);
    assert_non_null(strstr(r.error, "HTTP 503"));
    result_clear(&r);
}

static void test_unreachable_token_endpoint(void **state)
{
    (void)state;
    free(fx.tidp.token_url);
    fx.tidp.token_url = xasprintf("http://127.0.0.1:%d" BASE_PATH "/token", dead_port());
    start_and_wait_ready();
    struct result r;
    login(&r);
    assert_non_null(r.error);
    assert_false(r.denied);
    assert_non_null(strstr(r.error, "token endpoint unreachable"));
    result_clear(&r);
}

static void test_discovery_issuer_mismatch(void **state)
{
    (void)state;
    free(fx.tidp.disc_issuer);
    fx.tidp.disc_issuer = xasprintf("%s/", fx.tidp.issuer); /* a trailing slash is different */
    idp_client_start(fx.idp);
    for (int i = 0; i < 300 && !idp_client_last_error(fx.idp); i++)
        run_ms(10);
    assert_false(idp_client_ready(fx.idp));
    const char *err = idp_client_last_error(fx.idp);
    assert_non_null(err);
    assert_non_null(strstr(err, "differs from the configured issuer"));
    assert_int_equal(fx.tidp.n_jwks, 0);
    assert_null(idp_authorize_url(fx.idp, REDIRECT, "s", "n", "c"));
    /* A login now fails, later, with the reason. */
    struct result r;
    login(&r);
    assert_non_null(strstr(r.error, "not loaded"));
    assert_non_null(strstr(r.error, "differs from the configured issuer"));
    assert_int_equal(fx.tidp.n_token, 0);
    result_clear(&r);
    /* Fixed on the IdP side: the retry (1 s backoff) makes it ready. */
    free(fx.tidp.disc_issuer);
    fx.tidp.disc_issuer = xstrdup(fx.tidp.issuer);
    for (int i = 0; i < 300 && !idp_client_ready(fx.idp); i++)
        run_ms(10);
    assert_true(idp_client_ready(fx.idp));
    assert_null(idp_client_last_error(fx.idp));
}

static void test_refresh_keeps_old_refresh_token(void **state)
{
    (void)state;
    start_and_wait_ready();
    /* No id_token, no refresh_token in the response: identity from userinfo, old RT kept. */
    struct result r = {0};
    idp_refresh(fx.idp, REFRESH, on_login, &r);
    assert_true(run_until(&r.done, 5000));
    assert_no_protocol_failure();
    if (r.error)
        fail_msg("refresh failed: %s", r.error);
    assert_string_equal(r.id.subject, "user-1");
    assert_string_equal(r.id.access_token, ACCESS);
    assert_string_equal(r.id.refresh_token, REFRESH);
    assert_int_equal(fx.tidp.n_userinfo, 1);
    result_clear(&r);
    /* With a new ID token (no nonce on refresh) and a rotated refresh token. */
    fx.tidp.id_token_on_refresh = true;
    fx.tidp.new_refresh_token = true;
    idp_refresh(fx.idp, REFRESH, on_login, &r);
    assert_true(run_until(&r.done, 5000));
    if (r.error)
        fail_msg("refresh failed: %s", r.error);
    assert_string_equal(r.id.refresh_token, "idp-refresh-2");
    assert_int_equal(r.id.roles.len, 2);
    assert_int_equal(fx.tidp.n_userinfo, 1);
    result_clear(&r);
    /* A refused refresh token. */
    fx.tidp.token_mode = TOKEN_INVALID_GRANT;
    idp_refresh(fx.idp, REFRESH, on_login, &r);
    assert_true(run_until(&r.done, 5000));
    assert_true(r.denied);
    result_clear(&r);
}

static void test_login_before_ready_fails_async(void **state)
{
    (void)state;
    struct result r;
    login(&r); /* asserts the callback did not run inside idp_login */
    assert_non_null(strstr(r.error, "not loaded"));
    assert_false(r.denied);
    assert_int_equal(fx.tidp.n_token, 0);
    result_clear(&r);
}

static void on_login_never(const struct idp_identity *id, const char *error, bool denied, void *arg)
{
    (void)id;
    (void)error;
    (void)denied;
    (void)arg;
    fail_msg("callback after idp_client_free");
}

/* Freeing the client with logins in flight: no callback, nothing leaked (ASan). */
static void test_free_with_pending_login(void **state)
{
    (void)state;
    start_and_wait_ready();
    idp_login(fx.idp, CODE, REDIRECT, VERIFIER, NONCE, on_login_never, NULL);
    idp_login(fx.idp, CODE, REDIRECT, VERIFIER, NONCE, on_login_never, NULL);
    /* Both token requests are queued in httpc, not answered yet. */
    struct httpc_stats st;
    httpc_get_stats(fx.httpc, &st);
    assert_int_equal(st.in_flight, 2);
    idp_client_free(fx.idp);
    httpc_get_stats(fx.httpc, &st);
    assert_int_equal(st.in_flight, 0);
    fx.idp = NULL;
    run_ms(100);
}

/* A callback may free the client (e.g. shutdown decided inside it). */
static void on_login_free_client(const struct idp_identity *id, const char *error, bool denied,
                                 void *arg)
{
    (void)id;
    (void)error;
    (void)denied;
    bool *done = arg;
    idp_client_free(fx.idp);
    fx.idp = NULL;
    *done = true;
}

static void test_free_inside_callback(void **state)
{
    (void)state;
    start_and_wait_ready();
    bool done = false;
    idp_login(fx.idp, CODE, REDIRECT, VERIFIER, NONCE, on_login_free_client, &done);
    idp_login(fx.idp, CODE, REDIRECT, VERIFIER, NONCE, on_login_never, NULL);
    assert_true(run_until(&done, 5000));
    run_ms(100);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_start_ready),
        T(test_login_basic_auth),
        T(test_login_post_auth),
        T(test_roles_only_in_userinfo),
        T(test_userinfo_sub_mismatch),
        T(test_unknown_kid_refetches_once),
        T(test_concurrent_unknown_kid_one_fetch),
        T(test_invalid_grant_is_access_denied),
        T(test_unreachable_token_endpoint),
        T(test_discovery_issuer_mismatch),
        T(test_refresh_keeps_old_refresh_token),
        T(test_login_before_ready_fails_async),
        T(test_free_with_pending_login),
        T(test_free_inside_callback),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
