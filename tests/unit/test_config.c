/*
 * test_config: the gateway's configuration schema and loader (gateway/config.c and the
 * modules' *_conf.c tables, read by the engine in conf/conf.c).
 *
 * Bad configs are one table: each case is a YAML text and the exact first
 * message, "t.yaml:line:column: key.path: message", plus how many errors the
 * load must report. Good configs check values, defaults and derived fields.
 * Every case frees what it loads, so ASan's leak check covers error paths.
 *
 * Environment used by the cases (set in group_setup): T_DIR (a temp dir with
 * secret files), T_SET=value, T_EMPTY="", T_UNSET unset.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "conf/conf.h"
#include "gateway/config.h"

static char tmp_dir[] = "/tmp/mcpgate-test-config-XXXXXX";

static const char oauth_secret_40[] = "0123456789abcdef0123456789abcdef01234567";

/* Writes len bytes to <tmp_dir>/name. */
static void write_tmp(const char *name, const void *data, size_t len)
{
    char *path = xasprintf("%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(path);
}

static int group_setup(void **state)
{
    (void)state;
    if (mkdtemp(tmp_dir) == NULL)
        return -1;
    write_tmp("secret", "0123456789abcdef0123456789abcdef01234567\n", 41);
    write_tmp("short", "0123456789\n", 11);
    write_tmp("empty", "", 0);
    write_tmp("idp-secret", "idp-secret-value\n", 17);
    write_tmp("crlf-secret", "crlf-value\r\n", 12);
    write_tmp("nul-secret", "ab\0cd\n", 6);
    write_tmp("binary-secret", "\0\1\2\3\4\5\6\7\0\1\2\3\4\5\6\7\0\1\2\3\4\5\6\7\0\1\2\3\4\5\6\7\n",
              33);
    write_tmp("redis-password", "redis-pw\n", 9);
    setenv("T_DIR", tmp_dir, 1);
    setenv("T_SET", "value", 1);
    setenv("T_EMPTY", "", 1);
    unsetenv("T_UNSET");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    static const char *const names[] = {"secret",        "short",          "empty",
                                        "idp-secret",    "crlf-secret",    "nul-secret",
                                        "binary-secret", "redis-password", "file.yaml"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *path = xasprintf("%s/%s", tmp_dir, names[i]);
        unlink(path);
        free(path);
    }
    rmdir(tmp_dir);
    return 0;
}

/* Loads yaml as "t.yaml"; the caller frees the config and clears errs. */
static struct gw_config *load(const char *yaml, struct gw_config_errors *errs)
{
    return gw_config_load_string(yaml, strlen(yaml), "t.yaml", errs);
}

/* Loads a config that must be valid, printing the errors if it is not. */
static struct gw_config *load_ok(const char *yaml)
{
    struct gw_config_errors errs = {0};
    struct gw_config *cfg = load(yaml, &errs);
    for (size_t i = 0; i < errs.len; i++)
        print_error("unexpected: %s\n", errs.messages[i]);
    assert_int_equal(errs.len, 0);
    assert_non_null(cfg);
    return cfg;
}

/* ---- bad configs --------------------------------------------------------- */

#define SRV "server:\n  public_url: https://mcp.example.com\n"
#define IDP_OIDC                                                                                   \
    "idp:\n  preset: oidc\n  issuer: https://idp.example.com\n  client_id: gw\n"                   \
    "  client_secret: s3cret\n"
#define OAUTH_SECRET "oauth: {secret_file: \"${T_DIR}/secret\"}\n"
/* a route that needs neither IdP nor secret: auth none on the default loopback listener */
#define ROUTE(name, path)                                                                          \
    "  - {name: " name ", path: " path ", auth: none, stdio: {command: [x]}}\n"

struct bad_case {
    const char *yaml;
    const char *message; /* the first error, exactly; "{DIR}" stands for T_DIR */
    size_t count;        /* how many errors */
};

static const struct bad_case bad_cases[] = {
    /* unknown keys, with and without a suggestion */
    {SRV "logs: {level: info}\n", "t.yaml:3:1: logs: unknown key (did you mean log?)", 1},
    {"server:\n  public_url: https://mcp.example.com\n  listn: [127.0.0.1:8080]\n",
     "t.yaml:3:3: server.listn: unknown key (did you mean listen?)", 1},
    {SRV "store:\n  flavour: x\n", "t.yaml:4:3: store.flavour: unknown key", 1},
    {SRV "idp:\n  preset: oidc\n  issuer: https://idp.example.com\n  client_id: a\n"
         "  client_secret_fil: /x\n",
     "t.yaml:4:3: idp.client_secret: required key is missing (give client_secret or "
     "client_secret_file)",
     2},
    {SRV "routes:\n  - {name: a, path: /a, auth: none, stdio: {command: [x], evn: {}}}\n",
     "t.yaml:4:59: routes[0].stdio.evn: unknown key (did you mean env?)", 1},
    /* duplicates, anchors, aliases, tags */
    {"server:\n  public_url: https://a.example.com\n  public_url: https://b.example.com\n",
     "t.yaml:3:3: server.public_url: duplicate key (first at line 2)", 1},
    {SRV "log: {level: *lvl}\n", "t.yaml:3:14: log.level: aliases (*lvl) are not allowed", 1},
    {SRV "log: &l {level: info}\n", "t.yaml:3:6: log: anchors (&l) are not allowed", 1},
    {SRV "log: {level: !!str info}\n",
     "t.yaml:3:14: log.level: tags (tag:yaml.org,2002:str) are not allowed", 1},
    /* YAML 1.1 booleans and the Norway problem */
    {SRV "log: {access_log: yes}\n",
     "t.yaml:3:19: log.access_log: \"yes\" is a YAML 1.1 boolean: write true or false", 1},
    {SRV "metrics: {enabled: True}\n",
     "t.yaml:3:20: metrics.enabled: \"True\" is a YAML 1.1 boolean: write true or false", 1},
    {SRV "log: {access_log: 1}\n",
     "t.yaml:3:19: log.access_log: expected true or false, found \"1\"", 1},
    {SRV "identity: {signing_key_file: on}\n",
     "t.yaml:3:30: identity.signing_key_file: unquoted on is a YAML 1.1 boolean: quote it "
     "(\"on\") if you mean the string",
     1},
    {SRV "routes:\n  - {name: a, path: /a, auth: none, stdio: {command: [x, no]}}\n",
     "t.yaml:4:58: routes[0].stdio.command[1]: unquoted no is a YAML 1.1 boolean: quote it "
     "(\"no\") if you mean the string",
     1},
    /* durations, sizes, numbers, rates */
    {SRV "store:\n  redis: {timeout: 2}\n",
     "t.yaml:4:20: store.redis.timeout: \"2\" has no unit: write e.g. \"2s\" (units: ms, s, m, h, "
     "d)",
     1},
    {SRV "oauth:\n  access_token_ttl: 1hour\n",
     "t.yaml:4:21: oauth.access_token_ttl: invalid duration \"1hour\" (write e.g. 250ms, 60s, "
     "15m, 1h, 30d)",
     1},
    {SRV "identity:\n  jwt_ttl: 10m\n",
     "t.yaml:4:12: identity.jwt_ttl: 10m is out of range: must be 1s to 5m", 1},
    {SRV "  limits: {max_body: 4MB4}\n",
     "t.yaml:3:22: server.limits.max_body: invalid size \"4MB4\" (write e.g. 512, 64KiB, 4MiB, "
     "1GiB, 10kB)",
     1},
    {SRV "  limits: {max_body: 4mb}\n",
     "t.yaml:3:22: server.limits.max_body: invalid size \"4mb\" (write e.g. 512, 64KiB, 4MiB, "
     "1GiB, 10kB)",
     1},
    {SRV "  limits: {max_body: 0}\n",
     "t.yaml:3:22: server.limits.max_body: 0 is out of range: must be 1 to 1GiB", 1},
    {SRV "  limits: {max_connections: 0}\n",
     "t.yaml:3:29: server.limits.max_connections: 0 is out of range: must be 1 to 1000000", 1},
    {SRV "  limits: {event_ring: 100000}\n",
     "t.yaml:3:24: server.limits.event_ring: 100000 is out of range: must be 1 to 65536", 1},
    {SRV "  limits: {max_connections: 10k}\n",
     "t.yaml:3:29: server.limits.max_connections: expected an integer, found \"10k\"", 1},
    {SRV "  limits: {max_sessions: 10, max_sessions_per_user: 20}\n",
     "t.yaml:3:30: server.limits.max_sessions_per_user: 20 exceeds max_sessions (10)", 1},
    {SRV "oauth:\n  registration: {rate: 10/week}\n",
     "t.yaml:4:24: oauth.registration.rate: invalid rate \"10/week\" (write count/unit, unit s, "
     "min, h or d, e.g. 10/min; count 1 to 1000000)",
     1},
    /* public_url and other URLs */
    {"server:\n  public_url: https://mcp.example.com/mcp\n",
     "t.yaml:2:15: server.public_url: \"https://mcp.example.com/mcp\" must not have a path, "
     "query or fragment",
     1},
    {"server:\n  public_url: https://mcp.example.com/\n",
     "t.yaml:2:15: server.public_url: \"https://mcp.example.com/\" must not end with '/'", 1},
    {"server:\n  public_url: ftp://mcp.example.com\n",
     "t.yaml:2:15: server.public_url: \"ftp://mcp.example.com\" must start with http:// or "
     "https://",
     1},
    {"server:\n  public_url: \"https://mcp.example.com?x=1\"\n",
     "t.yaml:2:15: server.public_url: \"https://mcp.example.com?x=1\" must not have a path, "
     "query or fragment",
     1},
    {"server:\n  public_url: https://mcp.example.com:0\n",
     "t.yaml:2:15: server.public_url: \"https://mcp.example.com:0\" the port must be 1..65535", 1},
    {"server:\n  public_url: https://user@mcp.example.com\n",
     "t.yaml:2:15: server.public_url: \"https://user@mcp.example.com\" must not contain user "
     "info (user@)",
     1},
    {"server:\n  public_url:\n", "t.yaml:2:14: server.public_url: must not be empty", 1},
    {"server:\n  public_url: \"https://a\\0b\"\n",
     "t.yaml:2:15: server.public_url: contains a NUL character", 1},
    {SRV "  allowed_origins: [\"https://app.example.com/\"]\n",
     "t.yaml:3:21: server.allowed_origins[0]: \"https://app.example.com/\" must not end with '/'",
     1},
    /* missing keys and wrong types */
    {"server:\n  listen: [\"127.0.0.1:8080\"]\n",
     "t.yaml:2:3: server.public_url: required key is missing", 1},
    {"log: {level: info}\n", "t.yaml:1:1: server: required key is missing", 1},
    {SRV "  tls: {cert: /etc/tls.crt}\n", "t.yaml:3:8: server.tls.key: required key is missing", 1},
    {"server:\n  public_url: https://mcp.example.com\n  listen: {a: b}\n",
     "t.yaml:3:11: server.listen: expected a list, found a mapping", 1},
    {"server:\n  public_url: https://mcp.example.com\n  listen: 127.0.0.1:8080\n",
     "t.yaml:3:11: server.listen: expected a list, found \"127.0.0.1:8080\"", 1},
    {"server:\n  public_url: https://mcp.example.com\n  listen: []\n",
     "t.yaml:3:11: server.listen: must list at least one item", 1},
    {"server:\n  public_url: https://mcp.example.com\n  listen: [\"\"]\n",
     "t.yaml:3:12: server.listen[0]: must not be empty", 1},
    {SRV "store: [redis]\n", "t.yaml:3:8: store: expected a mapping, found a list", 1},
    {SRV "log: {level: {a: b}}\n", "t.yaml:3:14: log.level: expected a string, found a mapping", 1},
    {SRV "store: {backend: mysql}\n",
     "t.yaml:3:18: store.backend: \"mysql\" is not one of: redis, memory", 1},
    {SRV "log: {level: verbose}\n",
     "t.yaml:3:14: log.level: \"verbose\" is not one of: debug, info, warn, error", 1},
    {SRV "store:\n  redis: {url: \"http://127.0.0.1:6379\"}\n",
     "t.yaml:4:16: store.redis.url: \"http://127.0.0.1:6379\" must be "
     "redis[s]://[user:password@]host[:port][/db] or unix:/path/to/redis.sock",
     1},
    {SRV "store:\n  redis: {url: \"redis://10.0.0.1\", tls_ca_file: /etc/ca.pem}\n",
     "t.yaml:4:10: store.redis: tls_ca_file needs a rediss:// url (TLS)", 1},
    {SRV "store:\n  redis: {url: \"rediss://10.0.0.1\", tls_cert_file: /etc/c.pem}\n",
     "t.yaml:4:10: store.redis: tls_cert_file and tls_key_file go together", 1},
    {SRV "store:\n  redis: {sentinels: [\"10.0.0.1\"]}\n",
     "t.yaml:4:23: store.redis.sentinels[0]: \"10.0.0.1\" must be host:port (an IP address or "
     "a host name)",
     1},
    {SRV "store:\n  redis: {url: \"rediss://10.0.0.1\", tls_ca_file: ca.pem}\n",
     "t.yaml:4:50: store.redis.tls_ca_file: \"ca.pem\" must be an absolute path", 1},
    {"- a\n", "t.yaml:1:1: (root): the configuration must be a mapping, found a list", 1},
    /* routes: paths */
    {SRV "routes:\n" ROUTE("a", "mcp/a"),
     "t.yaml:4:21: routes[0].path: \"mcp/a\" must start with '/'", 1},
    {SRV "routes:\n" ROUTE("a", "/mcp/a/"),
     "t.yaml:4:21: routes[0].path: \"/mcp/a/\" must not end with '/'", 1},
    {SRV "routes:\n" ROUTE("a", "\"/mcp/a?x=1\""),
     "t.yaml:4:21: routes[0].path: \"/mcp/a?x=1\" must not contain '?' (no query)", 1},
    {SRV "routes:\n" ROUTE("a", "\"/mcp/a#x\""),
     "t.yaml:4:21: routes[0].path: \"/mcp/a#x\" must not contain '#'", 1},
    {SRV "routes:\n" ROUTE("a", "/mcp/../a"),
     "t.yaml:4:21: routes[0].path: \"/mcp/../a\" must not contain '..' segments", 1},
    {SRV "routes:\n" ROUTE("a", "/mcp//a"),
     "t.yaml:4:21: routes[0].path: \"/mcp//a\" must not contain empty segments ('//')", 1},
    {SRV "routes:\n" ROUTE("a", "/mcp/a%20b"),
     "t.yaml:4:21: routes[0].path: \"/mcp/a%20b\" may contain only A-Z a-z 0-9 - . _ ~ /", 1},
    {SRV "routes:\n" ROUTE("a", "/"), "t.yaml:4:21: routes[0].path: \"/\" must not end with '/'",
     1},
    {SRV "routes:\n" ROUTE("a", "/token"),
     "t.yaml:4:21: routes[0].path: \"/token\" is a gateway endpoint", 1},
    {SRV "routes:\n" ROUTE("a", "/.well-known/mcp"),
     "t.yaml:4:21: routes[0].path: \"/.well-known/mcp\" is under /.well-known, which the gateway "
     "serves",
     1},
    {SRV "routes:\n" ROUTE("a", "/metrics"),
     "t.yaml:4:21: routes[0].path: /metrics is the metrics path (move metrics.path or give "
     "metrics.listen)",
     1},
    {SRV "metrics: {path: /authorize}\n",
     "t.yaml:3:17: metrics.path: \"/authorize\" is a gateway endpoint", 1},
    /* routes: names, uniqueness, upstreams */
    {SRV "routes:\n" ROUTE("\"my route\"", "/a"),
     "t.yaml:4:12: routes[0].name: \"my route\" must be 1 to 64 of A-Z a-z 0-9 _ -", 1},
    {SRV "routes:\n" ROUTE("a", "/a") ROUTE("a", "/b"),
     "t.yaml:5:12: routes[1].name: duplicate route name \"a\" (first at line 4)", 1},
    {SRV "routes:\n" ROUTE("a", "/a") ROUTE("b", "/a"),
     "t.yaml:5:21: routes[1].path: duplicate route path /a (first at line 4)", 1},
    {SRV "routes:\n" ROUTE("a", "/a") ROUTE("b", "/a/sse"),
     "t.yaml:5:21: routes[1].path: /a/sse is the legacy SSE endpoint of route \"a\" (line 4)", 1},
    {SRV "routes:\n" ROUTE("a", "/a/messages") ROUTE("b", "/a"),
     "t.yaml:5:21: routes[1].path: its legacy SSE endpoint /a/messages is route \"a\" (line 4)", 1},
    {SRV "routes:\n  - {name: a, path: /a, auth: none, stdio: {command: [x]}, http: {url: "
         "\"http://127.0.0.1:9000/mcp\"}}\n",
     "t.yaml:4:60: routes[0].http: give either stdio or http, not both", 1},
    {SRV "routes:\n  - {name: a, path: /a, auth: none}\n",
     "t.yaml:4:5: routes[0]: a route needs an upstream: give stdio or http", 1},
    {SRV "routes:\n  - {name: a, path: /a, auth: none, stdio: {command: []}}\n",
     "t.yaml:4:54: routes[0].stdio.command: must list at least one item", 1},
    {SRV "routes:\n  - {name: a, path: /a, auth: none, stdio: {}}\n",
     "t.yaml:4:44: routes[0].stdio.command: required key is missing", 1},
    {SRV "routes:\n  - {name: a, path: /a, auth: none, http: {url: \"ftp://h/mcp\"}}\n",
     "t.yaml:4:49: routes[0].http.url: \"ftp://h/mcp\" must start with http:// or https://", 1},
    {SRV "routes:\n  - {name: a, path: /a, auth: none, stdio: {command: [x], cwd: srv}}\n",
     "t.yaml:4:64: routes[0].stdio.cwd: \"srv\" must be an absolute path", 1},
    {SRV "routes:\n  - {name: a, path: /a, auth: none, stdio: {command: [x], env: {1X: a}}}\n",
     "t.yaml:4:65: routes[0].stdio.env.1X: \"1X\" is not a valid environment variable name", 1},
    {SRV "routes:\n  - {name: a, path: /a, auth: sometimes, stdio: {command: [x]}}\n",
     "t.yaml:4:31: routes[0].auth: \"sometimes\" is not one of: oauth, none", 1},
    {SRV "routes: {name: a}\n", "t.yaml:3:9: routes: expected a list, found a mapping", 1},
    /* routes: policy keys */
    {SRV "routes:\n  - name: a\n    path: /a\n    auth: none\n    stdio: {command: [x]}\n"
         "    tools:\n      - {match: x, role: [a]}\n",
     "t.yaml:9:20: routes[0].tools[0].role: unknown key (did you mean roles?)", 1},
    {SRV "routes:\n  - name: a\n    path: /a\n    auth: none\n    stdio: {command: [x]}\n"
         "    tools:\n      - {roles: [a]}\n",
     "t.yaml:9:9: routes[0].tools[0].match: required key is missing", 1},
    {SRV "routes:\n  - name: a\n    path: /a\n    auth: none\n    stdio: {command: [x]}\n"
         "    tools: {match: x}\n",
     "t.yaml:8:12: routes[0].tools: expected a list, found a mapping", 1},
    {SRV "routes:\n  - name: a\n    path: /a\n    auth: none\n    stdio: {command: [x]}\n"
         "    default: maybe\n",
     "t.yaml:8:14: routes[0].default: \"maybe\" is not one of: allow, deny", 1},
    {SRV "routes:\n  - name: a\n    path: /a\n    auth: none\n    stdio: {command: [x]}\n"
         "    prompts: {default: block}\n",
     "t.yaml:8:24: routes[0].prompts.default: \"block\" is not one of: allow, deny", 1},
    {SRV "routes:\n  - name: a\n    path: /a\n    auth: none\n    stdio: {command: [x]}\n"
         "    resources: {rule: []}\n",
     "t.yaml:8:17: routes[0].resources.rule: unknown key (did you mean rules?)", 1},
    {SRV "routes:\n  - name: a\n    path: /a\n    auth: none\n    stdio: {command: [x]}\n"
         "    tools: [{match: x, deny: yes}]\n",
     "t.yaml:8:30: routes[0].tools[0].deny: \"yes\" is a YAML 1.1 boolean: write true or false", 1},
    {SRV "routes:\n  - name: a\n    path: /a\n    auth: none\n    stdio: {command: [x]}\n"
         "    require: {scopes: [\"a b\"]}\n",
     "t.yaml:8:24: routes[0].require.scopes[0]: \"a b\" is not a valid scope (no spaces, quotes "
     "or backslashes)",
     1},
    /* environment */
    {"server:\n  public_url: ${T_UNSET}\n",
     "t.yaml:2:15: server.public_url: environment variable T_UNSET is not set (write "
     "${T_UNSET:-default} to give a default)",
     1},
    {"server:\n  public_url: \"${1X}\"\n",
     "t.yaml:2:15: server.public_url: invalid reference ${1X}: use ${NAME} or ${NAME:-default}", 1},
    {"server:\n  public_url: \"https://${T_SET\"\n",
     "t.yaml:2:15: server.public_url: unterminated ${ (missing '}')", 1},
    /* secrets */
    {SRV "oauth:\n  secret: \""
         "0123456789abcdef0123456789abcdef"
         "\"\n"
         "  secret_file: \"${T_DIR}/secret\"\n",
     "t.yaml:5:3: oauth.secret_file: give secret or secret_file, not both", 1},
    {SRV "idp:\n  preset: oidc\n  issuer: https://idp.example.com\n  client_id: gw\n"
         "  client_secret_file: /nonexistent/mcpgate-test\n",
     "t.yaml:7:23: idp.client_secret_file: cannot read /nonexistent/mcpgate-test: No such file "
     "or directory",
     1},
    {SRV "idp:\n  preset: oidc\n  issuer: https://idp.example.com\n  client_id: gw\n"
         "  client_secret_file: \"${T_DIR}\"\n",
     "t.yaml:7:23: idp.client_secret_file: cannot read {DIR}: not a regular file", 1},
    {SRV "idp:\n  preset: oidc\n  issuer: https://idp.example.com\n  client_id: gw\n"
         "  client_secret_file: \"${T_DIR}/empty\"\n",
     "t.yaml:7:23: idp.client_secret_file: {DIR}/empty is empty", 1},
    {SRV "idp:\n  preset: oidc\n  issuer: https://idp.example.com\n  client_id: gw\n"
         "  client_secret_file: \"${T_DIR}/nul-secret\"\n",
     "t.yaml:7:23: idp.client_secret_file: {DIR}/nul-secret contains a NUL byte", 1},
    {SRV "idp:\n  preset: oidc\n  issuer: https://idp.example.com\n  client_id: gw\n"
         "  client_secret: \"\"\n",
     "t.yaml:7:18: idp.client_secret: must not be empty", 1},
    {SRV "oauth: {secret: tooshort}\n",
     "t.yaml:3:17: oauth.secret: is 8 bytes long; at least 32 are needed", 1},
    {SRV "oauth: {secret_file: \"${T_DIR}/short\"}\n",
     "t.yaml:3:22: oauth.secret_file: the secret file holds 10 bytes; at least 32 are needed", 1},
    /* idp */
    {SRV "idp:\n  preset: oidc\n  issuer: http://idp.example.com\n  client_id: gw\n"
         "  client_secret: s\n",
     "t.yaml:5:11: idp.issuer: \"http://idp.example.com\" must use https (http only for a "
     "loopback host)",
     1},
    {SRV "idp:\n  preset: asgardeo\n  organization: acme\n  base_url: http://asgardeo.internal\n"
         "  client_id: gw\n  client_secret: s\n",
     "t.yaml:6:13: idp.base_url: \"http://asgardeo.internal\" must use https (http only for a "
     "loopback host)",
     1},
    {SRV "idp:\n  preset: oidc\n  client_id: gw\n  client_secret: s\n",
     "t.yaml:4:3: idp.issuer: required for preset oidc", 1},
    {SRV "idp:\n  preset: asgardeo\n  client_id: gw\n  client_secret: s\n",
     "t.yaml:4:3: idp.organization: required for preset asgardeo", 1},
    {SRV "idp:\n  preset: asgardeo\n  organization: acme\n  issuer: https://x.example.com\n"
         "  client_id: gw\n  client_secret: s\n",
     "t.yaml:6:3: idp.issuer: is derived from base_url and organization for preset asgardeo: "
     "remove it",
     1},
    {SRV "idp:\n  preset: oidc\n  issuer: https://idp.example.com\n  client_id: gw\n",
     "t.yaml:4:3: idp.client_secret: required key is missing (give client_secret or "
     "client_secret_file)",
     1},
    {SRV "idp:\n  issuer: https://idp.example.com\n  client_id: gw\n  client_secret: s\n",
     "t.yaml:4:3: idp.preset: required key is missing", 1},
    {SRV IDP_OIDC "  scopes: [profile, email]\n", "t.yaml:8:3: idp.scopes: must include openid", 1},
    {SRV OAUTH_SECRET "routes:\n  - {name: a, path: /a, stdio: {command: [x]}}\n",
     "t.yaml:1:1: idp: required: route \"a\" uses auth: oauth", 1},
    {SRV IDP_OIDC "routes:\n  - {name: a, path: /a, stdio: {command: [x]}}\n",
     "t.yaml:1:1: oauth.secret_file: required: route \"a\" uses auth: oauth (give "
     "oauth.secret_file or oauth.secret)",
     1},
    /* auth: none and listeners */
    {"server:\n  listen: [\"0.0.0.0:8080\"]\n  public_url: "
     "https://mcp.example.com\nroutes:\n" ROUTE("a", "/a"),
     "t.yaml:5:31: routes[0].auth: auth: none on the non-loopback listener 0.0.0.0:8080 needs "
     "server.allow_unauthenticated_routes: true",
     1},
    {SRV "  listen: [\"8080\"]\n",
     "t.yaml:3:12: server.listen[0]: invalid listen address \"8080\" (the port is missing): use "
     "host:port, [v6]:port or unix:/absolute/path",
     1},
    {SRV "  listen: [\"[::1]8080\"]\n",
     "t.yaml:3:12: server.listen[0]: invalid listen address \"[::1]8080\" (expected ':' after "
     "']'): use host:port, [v6]:port or unix:/absolute/path",
     1},
    {SRV "  listen: [\"::1:8080\"]\n",
     "t.yaml:3:12: server.listen[0]: invalid listen address \"::1:8080\" (an IPv6 address needs "
     "brackets, e.g. [::1]:8080): use host:port, [v6]:port or unix:/absolute/path",
     1},
    {SRV "  listen: [\"unix:run/mcpgate.sock\"]\n",
     "t.yaml:3:12: server.listen[0]: invalid listen address \"unix:run/mcpgate.sock\" (a unix "
     "socket needs an absolute path): use host:port, [v6]:port or unix:/absolute/path",
     1},
    {SRV "  listen: [\"mcp.internal:8080\"]\n",
     "t.yaml:3:12: server.listen[0]: invalid listen address \"mcp.internal:8080\" (the host must "
     "be an IP address or localhost): use host:port, [v6]:port or unix:/absolute/path",
     1},
    {SRV "  listen: [\"127.0.0.1:99999\"]\n",
     "t.yaml:3:12: server.listen[0]: invalid listen address \"127.0.0.1:99999\" (the port must "
     "be 0..65535): use host:port, [v6]:port or unix:/absolute/path",
     1},
    /* networks */
    {SRV "  trusted_proxies: [10.0.0.0/33]\n",
     "t.yaml:3:21: server.trusted_proxies[0]: invalid network \"10.0.0.0/33\": the prefix length "
     "must be 0..32 (write e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8)",
     1},
    {SRV "  trusted_proxies: [10.0.0.1/8]\n",
     "t.yaml:3:21: server.trusted_proxies[0]: invalid network \"10.0.0.1/8\": host bits are set "
     "after the prefix length (write e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8)",
     1},
    {SRV "  trusted_proxies: [proxy.internal]\n",
     "t.yaml:3:21: server.trusted_proxies[0]: invalid network \"proxy.internal\": not an IP "
     "address (write e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8)",
     1},
    /* oauth clients */
    {SRV
     "oauth:\n  clients:\n    - {client_id: c, redirect_uris: [\"http://app.example.com/cb\"]}\n",
     "t.yaml:5:38: oauth.clients[0].redirect_uris[0]: \"http://app.example.com/cb\" http "
     "redirect URIs are allowed only on loopback hosts; use https",
     1},
    /* the rule of dynamic registration (oauth/redirect_uri.c) holds for static clients too */
    {SRV "oauth:\n  clients:\n    - {client_id: c, redirect_uris: [\"javascript:alert(1)\"]}\n",
     "t.yaml:5:38: oauth.clients[0].redirect_uris[0]: \"javascript:alert(1)\" redirect_uri "
     "scheme is not allowed",
     1},
    {SRV "oauth:\n  clients:\n    - {client_id: c, redirect_uris: [\"https://a.example/cb\"], "
         "auth: client_secret_basic}\n",
     "t.yaml:5:7: oauth.clients[0].client_secret: required for auth client_secret_basic (or "
     "client_secret_file)",
     1},
    {SRV "oauth:\n  clients:\n    - {client_id: c, redirect_uris: [\"https://a.example/cb\"]}\n"
         "    - {client_id: c, redirect_uris: [\"https://b.example/cb\"]}\n",
     "t.yaml:6:19: oauth.clients[1].client_id: duplicate client_id \"c\" (first at line 5)", 1},
    /* document-level */
    {"server:\n  public_url: [a, b\n",
     "t.yaml:3:1: server.public_url: did not find expected ',' or ']' (while parsing a flow "
     "sequence at line 2, column 15)",
     1},
    {"server:\n  public_url: https://mcp.example.com\n listen: []\n",
     "t.yaml:3:2: (root): did not find expected key (while parsing a block mapping at line 1, "
     "column 1)",
     1},
    {SRV "---\nlog: {level: info}\n", "t.yaml:3:1: (root): only one YAML document is allowed", 1},
    {"", "t.yaml:1:1: (root): the configuration is empty", 1},
    {SRV "log: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     "t.yaml:3:38: log[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
     "[0][0][0][0][0][0][0]: nested deeper than 32 levels",
     1},
};

/* The expected message with "{DIR}" replaced by the temp dir. */
static char *expected_message(const char *pattern)
{
    const char *at = strstr(pattern, "{DIR}");
    if (at == NULL)
        return xstrdup(pattern);
    return xasprintf("%.*s%s%s", (int)(at - pattern), pattern, tmp_dir, at + 5);
}

static void test_bad_configs(void **state)
{
    (void)state;
    size_t failures = 0;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct gw_config_errors errs = {0};
        struct gw_config *cfg = load(c->yaml, &errs);
        char *want = expected_message(c->message);
        size_t want_count = c->count;
        if (cfg != NULL || errs.len != want_count || strcmp(errs.messages[0], want) != 0) {
            print_error("case %zu:\n%s\nwant (%zu): %s\n", i, c->yaml, want_count, want);
            for (size_t j = 0; j < errs.len; j++)
                print_error(" got: %s\n", errs.messages[j]);
            failures++;
        }
        free(want);
        gw_config_free(cfg);
        gw_config_errors_clear(&errs);
    }
    assert_int_equal(failures, 0);
    assert_true(sizeof(bad_cases) / sizeof(bad_cases[0]) >= 35);
}

/* All errors are collected, not just the first, and sorted into file order. */
/* Found by fuzz_config: a "\0" escape used to overrun the scalar's buffer when
 * it was wiped at free (ASan: bad free). Now it is a clean error. */
static void test_nul_escape_is_an_error(void **state)
{
    (void)state;
    const char *yaml = "server:\n  listen: [\"127.0.0.1:8080\"]\n"
                       "  public_url: \"http://127.0.0.1:8080\\0xxxxxxxxxxxxxxxxx\"\n"
                       "store: { backend: memory }\n";
    struct gw_config_errors errs = {0};
    struct gw_config *cfg = gw_config_load_string(yaml, strlen(yaml), "t.yaml", &errs);
    assert_null(cfg);
    assert_true(errs.len >= 1);
    assert_string_equal(errs.messages[0],
                        "t.yaml:3:15: server.public_url: contains a NUL character");
    gw_config_errors_clear(&errs);
}

static void test_errors_collected(void **state)
{
    (void)state;
    struct gw_config_errors errs = {0};
    struct gw_config *cfg = load("server:\n"
                                 "  public_url: https://mcp.example.com/\n"
                                 "  limits: {max_body: 4, idle_timeout: 5}\n"
                                 "store: {backend: disk}\n"
                                 "logg: {}\n"
                                 "routes:\n"
                                 "  - {name: a, path: /a, stdio: {command: [x]}}\n",
                                 &errs);
    assert_null(cfg);
    assert_int_equal(errs.len, 6);
    static const char *const want[] = {
        /* from the checks across sections, which run last; located at the top */
        "t.yaml:1:1: idp: required: route \"a\" uses auth: oauth",
        "t.yaml:1:1: oauth.secret_file: required: route \"a\" uses auth: oauth (give "
        "oauth.secret_file or oauth.secret)",
        "t.yaml:2:15: server.public_url: \"https://mcp.example.com/\" must not end with '/'",
        "t.yaml:3:39: server.limits.idle_timeout: \"5\" has no unit: write e.g. \"5s\" (units: "
        "ms, s, m, h, d)",
        "t.yaml:4:18: store.backend: \"disk\" is not one of: redis, memory",
        "t.yaml:5:1: logg: unknown key (did you mean log?)",
    };
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(errs.messages[i], want[i]);
    gw_config_errors_clear(&errs);
    assert_int_equal(errs.len, 0);
    assert_null(errs.messages);
}

/* oauth.cimd: defaults, values, and a bad host or range reported at its position. */
static void test_oauth_cimd(void **state)
{
    (void)state;
    struct gw_config *cfg = load_ok(SRV "store: {backend: memory}\n");
    assert_true(cfg->oauth.cimd_enabled);
    assert_int_equal(cfg->oauth.cimd_cache_entries, 1000);
    assert_int_equal(cfg->oauth.cimd_timeout_ms, 5000);
    assert_int_equal(cfg->oauth.cimd_max_document_bytes, 5120);
    assert_int_equal(cfg->oauth.cimd_allow_hosts.len, 0);
    assert_null(cfg->oauth.cimd_ca_file);
    gw_config_free(cfg);
    cfg = load_ok(SRV "store: {backend: memory}\n"
                      "oauth:\n  cimd: {enabled: false, allow_hosts: [127.0.0.1, \"[::1]\"],\n"
                      "    deny_hosts: [evil.example], cache_entries: 0, timeout: 2s,\n"
                      "    max_document: 8KiB, ca_file: /etc/ssl/test-ca.pem}\n");
    assert_false(cfg->oauth.cimd_enabled);
    assert_int_equal(cfg->oauth.cimd_allow_hosts.len, 2);
    assert_string_equal(cfg->oauth.cimd_allow_hosts.items[1], "[::1]");
    assert_string_equal(cfg->oauth.cimd_deny_hosts.items[0], "evil.example");
    assert_int_equal(cfg->oauth.cimd_cache_entries, 0);
    assert_int_equal(cfg->oauth.cimd_timeout_ms, 2000);
    assert_int_equal(cfg->oauth.cimd_max_document_bytes, 8192);
    assert_string_equal(cfg->oauth.cimd_ca_file, "/etc/ssl/test-ca.pem");
    gw_config_free(cfg);

    struct gw_config_errors errs = {0};
    cfg = load(SRV "store: {backend: memory}\n"
                   "oauth:\n  cimd:\n    allow_hosts: [\"https://a.example/x\"]\n"
                   "    max_document: 1MiB\n",
               &errs);
    assert_null(cfg);
    assert_int_equal(errs.len, 2);
    assert_non_null(strstr(errs.messages[0], "t.yaml:6:19: oauth.cimd.allow_hosts"));
    assert_non_null(strstr(errs.messages[0], "is not a host name or IP address"));
    assert_non_null(strstr(errs.messages[1], "t.yaml:7:19: oauth.cimd.max_document"));
    gw_config_errors_clear(&errs);
}

/* ---- good configs -------------------------------------------------------- */

/*
 * DESIGN §3, verbatim except: secret files point at the test's temp dir, and
 * allow_unauthenticated_routes is true, since the example's `local-bridge`
 * route has auth: none on the 0.0.0.0 listener, which the validation rule
 * refuses otherwise.
 */
static const char design_example[] =
    "server:\n"
    "  listen: [0.0.0.0:8080]          # also \"[::]:8080\", \"unix:/run/mcpgate.sock\"\n"
    "  public_url: https://mcp.example.com   # issuer and base of every advertised URL\n"
    "  tls: { cert: /etc/mcpgate/tls.crt, key: /etc/mcpgate/tls.key }\n"
    "  trusted_proxies: [10.0.0.0/8]   # whose X-Forwarded-For / -Proto to believe\n"
    "  allowed_origins: [https://app.example.com]\n"
    "  allow_unauthenticated_routes: true\n"
    "  limits: { max_body: 4MiB, max_header: 16KiB, max_connections: 20000,\n"
    "            max_sessions: 10000, max_sessions_per_user: 20, event_ring: 256 }\n"
    "store:\n"
    "  backend: redis                  # redis | memory\n"
    "  redis: { url: \"redis://127.0.0.1:6379/0\", password: \"${REDIS_PASSWORD:-}\", prefix: "
    "\"mcpgate:\",\n"
    "           timeout: 2s }\n"
    "idp:\n"
    "  preset: asgardeo                # asgardeo | oidc (generic discovery)\n"
    "  organization: myorg\n"
    "  issuer: \"\"\n"
    "  client_id: \"${IDP_CLIENT_ID}\"\n"
    "  client_secret_file: ${T_DIR}/idp-secret\n"
    "  token_auth: client_secret_basic # or client_secret_post\n"
    "  scopes: [openid, profile, email, roles]\n"
    "  claims: { subject: sub, username: username, email: email, name: name, roles: roles, "
    "groups: groups }\n"
    "  leeway: 60s\n"
    "oauth:\n"
    "  secret_file: ${T_DIR}/secret\n"
    "  access_token_ttl: 1h\n"
    "  refresh_token_ttl: 30d\n"
    "  refresh_grace: 0s\n"
    "  require_resource: false\n"
    "  scopes:\n"
    "    \"mcp:tools\": \"Use the tools of the MCP servers behind this gateway\"\n"
    "  registration: { enabled: true, public_clients: true, client_ttl: 90d, rate: 10/min }\n"
    "  clients:\n"
    "    - { client_id: claude, redirect_uris: [\"https://claude.ai/api/mcp/auth_callback\"], "
    "auth: none }\n"
    "  consent: { remember: 30d }\n"
    "identity:\n"
    "  signing_key_file: /etc/mcpgate/identity-es256.pem\n"
    "routes:\n"
    "  - name: everything\n"
    "    path: /mcp/everything\n"
    "    stdio: { command: [npx, -y, \"@modelcontextprotocol/server-everything\"], env: { "
    "LOG_LEVEL: info },\n"
    "             env_passthrough: [PATH, HOME], cwd: /srv, idle_timeout: 15m, max_processes: "
    "200 }\n"
    "    identity: { env: true, jwt: true, meta: false, idp_access_token: false }\n"
    "  - name: crm\n"
    "    path: /mcp/crm\n"
    "    http: { url: \"http://10.0.0.5:9000/mcp\", timeout: 60s }\n"
    "    require: { scopes: [mcp:tools], roles: [], groups: [] }\n"
    "    identity: { headers: true, jwt: true, meta: false }\n"
    "    tools:                        # first match wins; no match = default\n"
    "      - { match: \"delete_*\", roles: [manager] }\n"
    "      - { match: \"*\", scopes: [mcp:tools] }\n"
    "    default: allow\n"
    "  - name: local-bridge\n"
    "    path: /mcp/local\n"
    "    auth: none                    # no bearer check: local bridging only\n"
    "    stdio: { command: [/usr/local/bin/some-mcp-server] }\n"
    "log: { level: info, format: json }\n"
    "metrics: { path: /metrics, listen: 127.0.0.1:9090 }\n";

static void check_design_server_store_idp(const struct gw_config *cfg)
{
    const struct gw_server_config *s = &cfg->server;
    assert_int_equal(s->listen.len, 1);
    assert_string_equal(s->listen.items[0], "0.0.0.0:8080");
    assert_string_equal(s->public_url, "https://mcp.example.com");
    assert_true(s->public_url_https);
    assert_string_equal(s->tls_cert, "/etc/mcpgate/tls.crt");
    assert_string_equal(s->tls_key, "/etc/mcpgate/tls.key");
    assert_int_equal(s->n_trusted_proxies, 1);
    assert_int_equal(s->trusted_proxies[0].family, AF_INET);
    assert_int_equal(s->trusted_proxies[0].prefix_len, 8);
    assert_string_equal(s->allowed_origins.items[0], "https://app.example.com");
    assert_true(s->allow_unauthenticated_routes);
    assert_int_equal(s->limits.max_body_bytes, 4 << 20);
    assert_int_equal(s->limits.max_header_bytes, 16 << 10);
    assert_int_equal(s->limits.event_ring, 256);
    assert_int_equal(cfg->store.backend, GW_STORE_REDIS);
    assert_null(cfg->store.redis_password); /* "${REDIS_PASSWORD:-}" is empty: no password */
    assert_string_equal(cfg->store.prefix, "mcpgate:");
    assert_int_equal(cfg->store.timeout_ms, 2000);
    const struct gw_idp_config *idp = &cfg->idp;
    assert_true(idp->configured);
    assert_int_equal(idp->preset, GW_IDP_ASGARDEO);
    assert_string_equal(idp->issuer, "https://api.asgardeo.io/t/myorg/oauth2/token");
    assert_string_equal(idp->client_id, "design-client");
    assert_string_equal(idp->client_secret, "idp-secret-value");
    assert_int_equal(idp->scopes.len, 4);
    assert_string_equal(idp->claims.roles, "roles");
    assert_int_equal(idp->leeway_ms, 60000);
}

static void check_design_oauth(const struct gw_config *cfg)
{
    const struct gw_oauth_config *o = &cfg->oauth;
    assert_int_equal(o->secret_len, 40);
    assert_memory_equal(o->secret, oauth_secret_40, 40);
    assert_int_equal(o->access_token_ttl_ms, 3600000);
    assert_int_equal(o->refresh_token_ttl_ms, 30ull * 86400000);
    assert_int_equal(o->refresh_grace_ms, 0);
    assert_int_equal(o->scopes.len, 1);
    assert_string_equal(o->scopes.keys[0], "mcp:tools");
    assert_int_equal(o->registration_rate_count, 10);
    assert_int_equal(o->registration_rate_window_ms, 60000);
    assert_int_equal(o->registration_client_ttl_ms, 90ull * 86400000);
    assert_int_equal(o->n_clients, 1);
    assert_string_equal(o->clients[0].client_id, "claude");
    assert_int_equal(o->clients[0].auth, GW_CLIENT_AUTH_NONE);
    assert_string_equal(o->clients[0].redirect_uris.items[0],
                        "https://claude.ai/api/mcp/auth_callback");
    assert_int_equal(o->consent_remember_ms, 30ull * 86400000);
    assert_string_equal(cfg->identity.signing_key_file, "/etc/mcpgate/identity-es256.pem");
}

static void check_design_routes(const struct gw_config *cfg)
{
    assert_int_equal(cfg->n_routes, 3);
    const struct gw_route_config *e = &cfg->routes[0], *crm = &cfg->routes[1];
    assert_string_equal(e->name, "everything");
    assert_string_equal(e->resource_url, "https://mcp.example.com/mcp/everything");
    assert_int_equal(e->kind, GW_UPSTREAM_STDIO);
    assert_int_equal(e->stdio.command.len, 3);
    assert_string_equal(e->stdio.command.items[1], "-y");
    assert_string_equal(e->stdio.env.keys[0], "LOG_LEVEL");
    assert_string_equal(e->stdio.env.values[0], "info");
    assert_string_equal(e->stdio.env_passthrough.items[1], "HOME");
    assert_string_equal(e->stdio.cwd, "/srv");
    assert_int_equal(e->stdio.idle_timeout_ms, 15 * 60000);
    assert_int_equal(e->stdio.max_processes, 200);
    assert_true(e->identity.env && e->identity.jwt && !e->identity.meta);
    assert_int_equal(e->auth, GW_ROUTE_AUTH_OAUTH);
    assert_int_equal(e->line, 39);
    assert_int_equal(crm->kind, GW_UPSTREAM_HTTP);
    assert_string_equal(crm->http.url, "http://10.0.0.5:9000/mcp");
    assert_int_equal(crm->http.timeout_ms, 60000);
    assert_string_equal(crm->require.scopes.items[0], "mcp:tools");
    assert_int_equal(crm->require.roles.len, 0);
    assert_int_equal(crm->tools.len, 2);
    assert_string_equal(crm->tools.rules[0].match, "delete_*");
    assert_string_equal(crm->tools.rules[0].roles.items[0], "manager");
    assert_int_equal(crm->tools.rules[0].line, 50);
    assert_string_equal(crm->tools.rules[1].scopes.items[0], "mcp:tools");
    assert_int_equal(crm->tools.default_effect, GW_POLICY_ALLOW);
    assert_int_equal(cfg->routes[2].auth, GW_ROUTE_AUTH_NONE);
    assert_string_equal(cfg->metrics.listen, "127.0.0.1:9090");
}

static void test_design_example(void **state)
{
    (void)state;
    setenv("IDP_CLIENT_ID", "design-client", 1);
    unsetenv("REDIS_PASSWORD");
    struct gw_config *cfg = load_ok(design_example);
    check_design_server_store_idp(cfg);
    check_design_oauth(cfg);
    check_design_routes(cfg);
    assert_string_equal(cfg->source_path, "t.yaml");
    gw_config_free(cfg);
    unsetenv("IDP_CLIENT_ID");
}

static void check_default_limits(const struct gw_limits *l)
{
    assert_int_equal(l->max_body_bytes, 4 << 20);
    assert_int_equal(l->max_header_bytes, 16 << 10);
    assert_int_equal(l->max_connections, 20000);
    assert_int_equal(l->max_sessions, 10000);
    assert_int_equal(l->max_sessions_per_user, 20);
    assert_int_equal(l->event_ring, 256);
    assert_int_equal(l->max_streams_per_session, 4);
    assert_int_equal(l->sse_high_water_bytes, 1 << 20);
    assert_int_equal(l->request_timeout_ms, 30000);
    assert_int_equal(l->idle_timeout_ms, 120000);
    assert_int_equal(l->shutdown_grace_ms, 10000);
    assert_int_equal(l->max_pending_authorizations, 100);
    assert_int_equal(l->outbound_idle_connections, 256);
}

static void check_default_idp_oauth(const struct gw_config *cfg)
{
    const struct gw_idp_config *idp = &cfg->idp;
    assert_false(idp->configured);
    assert_int_equal(idp->token_auth, GW_TOKEN_AUTH_CLIENT_SECRET_BASIC);
    assert_int_equal(idp->scopes.len, 4);
    assert_string_equal(idp->scopes.items[3], "roles");
    assert_string_equal(idp->claims.subject, "sub");
    assert_string_equal(idp->claims.username, "username");
    assert_string_equal(idp->claims.email, "email");
    assert_string_equal(idp->claims.name, "name");
    assert_string_equal(idp->claims.roles, "roles");
    assert_string_equal(idp->claims.groups, "groups");
    assert_int_equal(idp->leeway_ms, 60000);
    assert_int_equal(idp->discovery_refresh_ms, 3600000);
    assert_int_equal(idp->timeout_ms, 10000);
    assert_true(idp->use_userinfo);
    const struct gw_oauth_config *o = &cfg->oauth;
    assert_null(o->secret);
    assert_int_equal(o->access_token_ttl_ms, 3600000);
    assert_int_equal(o->refresh_token_ttl_ms, 30ull * 86400000);
    assert_int_equal(o->refresh_grace_ms, 0);
    assert_int_equal(o->code_ttl_ms, 60000);
    assert_int_equal(o->authorize_ttl_ms, 600000);
    assert_false(o->require_resource);
    assert_string_equal(o->scopes.keys[0], "mcp:tools");
    assert_string_equal(o->scopes.values[0],
                        "Use the tools of the MCP servers behind this gateway");
    assert_true(o->registration_enabled && o->registration_public_clients);
    assert_int_equal(o->registration_client_ttl_ms, 90ull * 86400000);
    assert_int_equal(o->registration_rate_count, 10);
    assert_int_equal(o->registration_rate_window_ms, 60000);
    assert_int_equal(o->registration_max_body_bytes, 64 << 10);
    assert_int_equal(o->n_clients, 0);
    assert_int_equal(o->consent_remember_ms, 30ull * 86400000);
}

static void test_defaults(void **state)
{
    (void)state;
    struct gw_config *cfg = load_ok(SRV);
    assert_int_equal(cfg->server.listen.len, 1);
    assert_string_equal(cfg->server.listen.items[0], "127.0.0.1:8080");
    assert_null(cfg->server.tls_cert);
    assert_int_equal(cfg->server.n_trusted_proxies, 0);
    assert_false(cfg->server.allow_unauthenticated_routes);
    check_default_limits(&cfg->server.limits);
    assert_int_equal(cfg->store.backend, GW_STORE_REDIS);
    assert_string_equal(cfg->store.redis_url, "redis://127.0.0.1:6379/0");
    assert_null(cfg->store.redis_password);
    assert_string_equal(cfg->store.prefix, "mcpgate:");
    assert_int_equal(cfg->store.timeout_ms, 2000);
    check_default_idp_oauth(cfg);
    assert_null(cfg->identity.signing_key_file);
    assert_int_equal(cfg->identity.jwt_ttl_ms, 300000);
    assert_int_equal(cfg->n_routes, 0);
    assert_int_equal(cfg->log.level, GW_LOG_INFO);
    assert_int_equal(cfg->log.format, GW_LOG_FORMAT_JSON);
    assert_true(cfg->log.access_log);
    assert_true(cfg->metrics.enabled);
    assert_string_equal(cfg->metrics.path, "/metrics");
    assert_null(cfg->metrics.listen);
    gw_config_free(cfg);
}

static void test_route_defaults(void **state)
{
    (void)state;
    struct gw_config *cfg = load_ok(
        SRV "routes:\n" ROUTE("a", "/a") "  - {name: b, path: /b, auth: "
                                         "none, http: {url: \"https://up.example.com/mcp\"}}\n");
    const struct gw_route_config *a = &cfg->routes[0], *b = &cfg->routes[1];
    assert_null(a->description);
    assert_int_equal(a->kind, GW_UPSTREAM_STDIO);
    assert_int_equal(a->stdio.idle_timeout_ms, 15 * 60000);
    assert_int_equal(a->stdio.max_processes, 200);
    assert_int_equal(a->stdio.max_line_bytes, 4 << 20);
    assert_int_equal(a->stdio.kill_grace_ms, 2000);
    assert_null(a->stdio.cwd);
    assert_true(a->identity.env && a->identity.headers && a->identity.jwt);
    assert_false(a->identity.meta || a->identity.idp_access_token);
    assert_int_equal(a->tools.len, 0);
    assert_int_equal(a->tools.default_effect, GW_POLICY_ALLOW);
    assert_int_equal(a->prompts.len, 0);
    assert_int_equal(a->prompts.default_effect, GW_POLICY_ALLOW);
    assert_int_equal(a->resources.default_effect, GW_POLICY_ALLOW);
    assert_int_equal(b->kind, GW_UPSTREAM_HTTP);
    assert_int_equal(b->http.connect_timeout_ms, 5000);
    assert_int_equal(b->http.timeout_ms, 60000);
    assert_int_equal(b->http.idle_timeout_ms, 300000);
    assert_string_equal(b->resource_url, "https://mcp.example.com/b");
    gw_config_free(cfg);
}

static void test_derived_fields(void **state)
{
    (void)state;
    struct gw_config *cfg =
        load_ok("server:\n  public_url: http://127.0.0.1:8080\n"
                "idp:\n  preset: asgardeo\n  organization: acme\n"
                "  base_url: http://127.0.0.1:9400\n  client_id: gw\n  client_secret: s\n");
    assert_false(cfg->server.public_url_https);
    assert_string_equal(cfg->idp.base_url, "http://127.0.0.1:9400");
    assert_string_equal(cfg->idp.issuer, "http://127.0.0.1:9400/t/acme/oauth2/token");
    gw_config_free(cfg);

    cfg = load_ok(SRV IDP_OIDC);
    assert_int_equal(cfg->idp.preset, GW_IDP_OIDC);
    assert_string_equal(cfg->idp.issuer, "https://idp.example.com");
    assert_null(cfg->idp.base_url);
    gw_config_free(cfg);

    /* loopback IdPs may use http: localhost, 127.0.0.0/8, ::1 */
    static const char *const issuers[] = {"http://localhost:9400/realms/x", "http://127.1.2.3",
                                          "http://[::1]:9400"};
    for (size_t i = 0; i < 3; i++) {
        char *yaml = xasprintf(SRV "idp: {preset: oidc, issuer: \"%s\", client_id: a, "
                                   "client_secret: b}\n",
                               issuers[i]);
        cfg = load_ok(yaml);
        assert_string_equal(cfg->idp.issuer, issuers[i]);
        gw_config_free(cfg);
        free(yaml);
    }
}

static void test_env_expansion(void **state)
{
    (void)state;
    struct gw_config *cfg =
        load_ok("server:\n  public_url: \"https://${T_SET}.example.com\"\n"
                "  listen: [\"127.0.0.1:${T_UNSET:-9000}\", \"127.0.0.1:${T_EMPTY:-9001}\"]\n"
                "store:\n  redis: {prefix: \"$${T_SET}:${T_EMPTY}:$x:${T_SET:-d}\"}\n"
                "routes:\n  - {name: a, path: /a, auth: none, stdio: {command: [x], "
                "env: {A: \"${T_EMPTY}\", B: \"${T_UNSET:-}\"}}}\n");
    assert_string_equal(cfg->server.public_url, "https://value.example.com");
    assert_string_equal(cfg->server.listen.items[0], "127.0.0.1:9000");
    assert_string_equal(cfg->server.listen.items[1], "127.0.0.1:9001");
    assert_string_equal(cfg->store.prefix, "${T_SET}::$x:value");
    assert_string_equal(cfg->routes[0].stdio.env.values[0], "");
    assert_string_equal(cfg->routes[0].stdio.env.values[1], "");
    gw_config_free(cfg);
}

static void test_secret_files(void **state)
{
    (void)state;
    struct gw_config *cfg =
        load_ok(SRV "store:\n  redis:\n    password_file: ${T_DIR}/redis-password\n"
                    "idp: {preset: oidc, issuer: https://idp.example.com, "
                    "client_id: a, client_secret_file: \"${T_DIR}/crlf-secret\"}\n"
                    "oauth: {secret_file: \"${T_DIR}/binary-secret\"}\n");
    assert_string_equal(cfg->store.redis_password, "redis-pw");
    assert_string_equal(cfg->idp.client_secret, "crlf-value");
    /* raw bytes, NULs included, one trailing newline stripped */
    assert_int_equal(cfg->oauth.secret_len, 32);
    assert_memory_equal(cfg->oauth.secret, "\0\1\2\3\4\5\6\7\0\1\2\3\4\5\6\7", 16);
    gw_config_free(cfg);

    cfg = load_ok(SRV "oauth: {secret: \"0123456789abcdef0123456789abcdef01234567\"}\n");
    assert_int_equal(cfg->oauth.secret_len, 40);
    assert_memory_equal(cfg->oauth.secret, oauth_secret_40, 40);
    gw_config_free(cfg);
}

/* Quoted YAML 1.1 words are strings; null-ish values of sections keep the defaults. */
static void test_quoting_and_nulls(void **state)
{
    (void)state;
    struct gw_config *cfg =
        load_ok(SRV "identity:\nstore:\n  redis:\n    prefix: \"\"\n"
                    "routes:\n  - {name: a, path: /a, auth: none, description: \"no\", "
                    "stdio: {command: [\"yes\", 'off'], env: {COUNTRY: \"NO\"}}}\n");
    assert_string_equal(cfg->routes[0].description, "no");
    assert_string_equal(cfg->routes[0].stdio.command.items[0], "yes");
    assert_string_equal(cfg->routes[0].stdio.command.items[1], "off");
    assert_string_equal(cfg->routes[0].stdio.env.values[0], "NO");
    assert_string_equal(cfg->store.prefix, "");
    assert_int_equal(cfg->identity.jwt_ttl_ms, 300000);
    gw_config_free(cfg);
}

static void test_policy_and_clients(void **state)
{
    (void)state;
    struct gw_config *cfg = load_ok(
        SRV IDP_OIDC OAUTH_SECRET "routes:\n"
                                  "  - name: a\n"
                                  "    path: /mcp/a\n"
                                  "    description: \"The A server\"\n"
                                  "    stdio: {command: [x], max_line: 64KiB, kill_grace: 250ms}\n"
                                  "    tools:\n"
                                  "      - {match: \"admin_*\", deny: true}\n"
                                  "      - {match: \"*\", groups: [eng], scopes: [mcp:tools]}\n"
                                  "    default: deny\n"
                                  "    prompts: {rules: [{match: p, roles: [r]}], default: deny}\n"
                                  "    resources:\n"
                                  "      rules:\n"
                                  "        - {match: \"file:///*\", roles: [admin]}\n");
    const struct gw_route_config *r = &cfg->routes[0];
    assert_string_equal(r->description, "The A server");
    assert_int_equal(r->stdio.max_line_bytes, 64 << 10);
    assert_int_equal(r->stdio.kill_grace_ms, 250);
    assert_int_equal(r->tools.len, 2);
    assert_true(r->tools.rules[0].deny);
    assert_int_equal(r->tools.rules[0].line, 15);
    assert_string_equal(r->tools.rules[1].groups.items[0], "eng");
    assert_int_equal(r->tools.default_effect, GW_POLICY_DENY);
    assert_int_equal(r->prompts.len, 1);
    assert_string_equal(r->prompts.rules[0].roles.items[0], "r");
    assert_int_equal(r->prompts.default_effect, GW_POLICY_DENY);
    assert_int_equal(r->resources.len, 1);
    assert_string_equal(r->resources.rules[0].match, "file:///*");
    assert_int_equal(r->resources.rules[0].line, 21);
    assert_int_equal(r->resources.default_effect, GW_POLICY_ALLOW);
    gw_config_free(cfg);

    cfg = load_ok(SRV "oauth:\n  clients:\n"
                      "    - {client_id: a, redirect_uris: [\"http://127.0.0.1:33418/cb\"]}\n"
                      "    - {client_id: b, client_name: B, redirect_uris: [\"cursor://cb\"], "
                      "client_secret_file: \"${T_DIR}/idp-secret\"}\n"
                      "    - {client_id: c, redirect_uris: [\"https://c.example/cb\"], auth: "
                      "client_secret_post, client_secret: x}\n");
    assert_int_equal(cfg->oauth.n_clients, 3);
    assert_int_equal(cfg->oauth.clients[0].auth, GW_CLIENT_AUTH_NONE);
    assert_null(cfg->oauth.clients[0].client_secret);
    assert_int_equal(cfg->oauth.clients[1].auth, GW_CLIENT_AUTH_CLIENT_SECRET_BASIC);
    assert_string_equal(cfg->oauth.clients[1].client_secret, "idp-secret-value");
    assert_string_equal(cfg->oauth.clients[1].client_name, "B");
    assert_int_equal(cfg->oauth.clients[2].auth, GW_CLIENT_AUTH_CLIENT_SECRET_POST);
    gw_config_free(cfg);
}

static void test_listeners_and_auth_none(void **state)
{
    (void)state;
    /* loopback listeners and unix sockets allow auth: none without the opt-in */
    struct gw_config *cfg =
        load_ok("server:\n  listen: [\"127.0.0.2:0\", \"[::1]:8080\", "
                "\"localhost:8080\", \"unix:/run/mcpgate.sock\"]\n"
                "  public_url: https://mcp.example.com\nroutes:\n" ROUTE("a", "/a"));
    assert_int_equal(cfg->server.listen.len, 4);
    gw_config_free(cfg);
    cfg = load_ok("server:\n  listen: [\"[::]:8080\"]\n  public_url: https://mcp.example.com\n"
                  "  allow_unauthenticated_routes: true\nroutes:\n" ROUTE("a", "/a"));
    assert_true(cfg->server.allow_unauthenticated_routes);
    gw_config_free(cfg);
}

/* ---- parsers and helpers ------------------------------------------------- */

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"250ms", 0, 250},
        {"0s", 0, 0},
        {"60s", 0, 60000},
        {"15m", 0, 900000},
        {"1h", 0, 3600000},
        {"30d", 0, 2592000000ull},
        {"60", -EINVAL, 0},
        {"0", -EINVAL, 0},
        {"", -EINVAL, 0},
        {"s", -EINVAL, 0},
        {"1.5h", -EINVAL, 0},
        {"-1s", -EINVAL, 0},
        {"1 s", -EINVAL, 0},
        {"1sec", -EINVAL, 0},
        {"1H", -EINVAL, 0},
        {"99999999999999999999ms", -EINVAL, 0},
        {"999999999999999999d", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345;
        int rc = gw_parse_duration_ms(cases[i].text, &ms);
        if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms))
            fail_msg("duration \"%s\": rc %d ms %llu", cases[i].text, rc, (unsigned long long)ms);
    }
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t bytes;
    } cases[] = {
        {"512", 0, 512},
        {"512B", 0, 512},
        {"64KiB", 0, 65536},
        {"4MiB", 0, 4194304},
        {"1GiB", 0, 1073741824ull},
        {"10kB", 0, 10000},
        {"5MB", 0, 5000000},
        {"2GB", 0, 2000000000ull},
        {"0", 0, 0},
        {"4mb", -EINVAL, 0},
        {"4 MiB", -EINVAL, 0},
        {"4KB", -EINVAL, 0},
        {"", -EINVAL, 0},
        {"MiB", -EINVAL, 0},
        {"1.5MiB", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"17179869184GiB", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t bytes = 12345;
        int rc = gw_parse_size_bytes(cases[i].text, &bytes);
        if (rc != cases[i].rc || (rc == 0 && bytes != cases[i].bytes))
            fail_msg("size \"%s\": rc %d bytes %llu", cases[i].text, rc, (unsigned long long)bytes);
    }
}

static struct sockaddr_storage v4(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
    return ss;
}

static void test_cidr_contains(void **state)
{
    (void)state;
    struct gw_config *cfg = load_ok(SRV "  trusted_proxies: [10.0.0.0/8, 192.168.1.10, "
                                        "\"fd00::/8\", \"::1\", 0.0.0.0/0, 172.16.0.0/12]\n");
    const struct net_cidr *n = cfg->server.trusted_proxies;
    assert_int_equal(cfg->server.n_trusted_proxies, 6);
    static const struct {
        size_t net;
        bool v6;
        const char *addr;
        bool in;
    } cases[] = {
        {0, false, "10.1.2.3", true},
        {0, false, "11.0.0.1", false},
        {0, true, "::ffff:10.9.9.9", true},
        {0, true, "::ffff:11.9.9.9", false},
        {0, true, "fd00::1", false},
        {1, false, "192.168.1.10", true},
        {1, false, "192.168.1.11", false},
        {2, true, "fd12:3456::1", true},
        {2, true, "fe80::1", false},
        {2, false, "10.0.0.1", false},
        {3, true, "::1", true},
        {3, true, "::2", false},
        {4, false, "203.0.113.9", true},
        {5, false, "172.31.255.255", true},
        {5, false, "172.32.0.0", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss = cases[i].v6 ? v6(cases[i].addr) : v4(cases[i].addr);
        if (net_cidr_contains(&n[cases[i].net], (struct sockaddr *)&ss) != cases[i].in)
            fail_msg("net %zu and %s: expected %d", cases[i].net, cases[i].addr, cases[i].in);
    }
    struct sockaddr unix_addr = {.sa_family = AF_UNIX};
    assert_false(net_cidr_contains(&n[4], &unix_addr));
    assert_int_equal(n[1].prefix_len, 32);
    assert_int_equal(n[3].prefix_len, 128);
    gw_config_free(cfg);
}

static void test_lookups(void **state)
{
    (void)state;
    struct gw_config *cfg = load_ok(SRV "routes:\n" ROUTE("a", "/mcp/a") ROUTE("b", "/mcp/b"));
    assert_ptr_equal(gw_config_route_by_path(cfg, "/mcp/b"), &cfg->routes[1]);
    assert_ptr_equal(gw_config_route_by_name(cfg, "a"), &cfg->routes[0]);
    assert_null(gw_config_route_by_path(cfg, "/mcp"));
    assert_null(gw_config_route_by_path(cfg, "/mcp/a/"));
    assert_null(gw_config_route_by_name(cfg, "c"));
    assert_null(gw_config_route_by_name(cfg, NULL));
    gw_config_free(cfg);
    gw_config_free(NULL);
    gw_config_errors_clear(NULL);
}

static char *summary_of(const char *yaml)
{
    struct gw_config *cfg = load_ok(yaml);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    gw_config_print_summary(cfg, out);
    assert_int_equal(fclose(out), 0);
    gw_config_free(cfg);
    return text;
}

static void test_summary(void **state)
{
    (void)state;
    char *text = summary_of(SRV "store:\n  redis: {url: \"redis://app:hunter2@redis:6379/1\", "
                                "password: pw}\n" IDP_OIDC OAUTH_SECRET "routes:\n"
                                "  - {name: a, path: /mcp/a, stdio: {command: [srv, --x]}, "
                                "tools: [{match: x}]}\n"
                                "  - {name: b, path: /mcp/b, auth: none, http: {url: "
                                "\"http://127.0.0.1:9000/mcp\"}}\n");
    assert_int_equal(strncmp(text, "ok\n", 3), 0);
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "s3cret"));
    assert_non_null(strstr(text, "listen: 127.0.0.1:8080\n"));
    assert_non_null(strstr(text, "public_url: https://mcp.example.com\n"));
    assert_non_null(strstr(text, "store: redis redis://app:***@redis:6379/1 (prefix \"mcpgate:\", "
                                 "password set)\n"));
    assert_non_null(strstr(text, "idp: oidc, issuer https://idp.example.com, client_id gw\n"));
    assert_non_null(strstr(text, "  a /mcp/a\n    upstream: stdio: srv --x\n    auth: oauth\n"
                                 "    tools: 1 rule, default allow\n"));
    assert_non_null(strstr(text, "  b /mcp/b\n    upstream: http http://127.0.0.1:9000/mcp\n"
                                 "    auth: none\n"));
    free(text);

    text = summary_of(SRV "store: {backend: memory}\n");
    assert_non_null(strstr(text, "store: memory"));
    assert_non_null(strstr(text, "idp: none\n"));
    free(text);
}

static void test_load_file(void **state)
{
    (void)state;
    write_tmp("file.yaml", SRV "log: {level: debug}\n", strlen(SRV "log: {level: debug}\n"));
    char *path = xasprintf("%s/file.yaml", tmp_dir);
    struct gw_config_errors errs = {0};
    struct gw_config *cfg = gw_config_load(path, &errs);
    assert_non_null(cfg);
    assert_int_equal(errs.len, 0);
    assert_string_equal(cfg->source_path, path);
    assert_int_equal(cfg->log.level, GW_LOG_DEBUG);
    gw_config_free(cfg);

    write_tmp("file.yaml", "server: {public_url: x}\n", 24);
    assert_null(gw_config_load(path, &errs));
    assert_int_equal(errs.len, 1);
    char *want =
        xasprintf("%s:1:22: server.public_url: \"x\" must start with http:// or https://", path);
    assert_string_equal(errs.messages[0], want);
    free(want);
    gw_config_errors_clear(&errs);
    unlink(path);
    free(path);

    assert_null(gw_config_load("/nonexistent/mcpgate.yaml", &errs));
    assert_int_equal(errs.len, 1);
    assert_string_equal(errs.messages[0],
                        "/nonexistent/mcpgate.yaml: cannot read: No such file or directory");
    gw_config_errors_clear(&errs);
}

/* ---- the shipped example configs ----------------------------------------- */

/* deploy/conf from the repository root or a build directory below it. */
static const char *find_deploy_conf(void)
{
    static const char *const candidates[] = {"deploy/conf", "../deploy/conf", "../../deploy/conf",
                                             "../../../deploy/conf"};
    struct stat st;
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode))
            return candidates[i];
    return NULL;
}

/* What the deploy/conf files read from the environment, as an operator would set it. */
static void set_deploy_env(void)
{
    char *secret = xasprintf("%s/secret", tmp_dir);
    char *idp_secret = xasprintf("%s/idp-secret", tmp_dir);
    setenv("MCPGATE_SECRET_FILE", secret, 1);
    setenv("IDP_CLIENT_SECRET_FILE", idp_secret, 1);
    setenv("IDP_CLIENT_ID", "mcpgate", 1);
    setenv("MCPGATE_PUBLIC_URL", "https://mcp.example.com", 1);
    setenv("ASGARDEO_ORG", "example", 1);
    setenv("KEYCLOAK_ISSUER", "https://sso.example.com/realms/mcp", 1);
    setenv("AUTH0_DOMAIN", "example.eu.auth0.com", 1);
    setenv("OKTA_DOMAIN", "example.okta.com", 1);
    setenv("ENTRA_TENANT_ID", "00000000-0000-0000-0000-000000000000", 1);
    setenv("MCPGATE_IDENTITY_KEY", "/etc/mcpgate/identity-es256.pem", 1); /* read at start */
    free(secret);
    free(idp_secret);
}

static void test_deploy_configs(void **state)
{
    (void)state;
    const char *dir = find_deploy_conf();
    assert_non_null(dir);
    set_deploy_env();
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t loaded = 0, failed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        char *path = xasprintf("%s/%s", dir, e->d_name);
        struct gw_config_errors errs = {0};
        struct gw_config *cfg = gw_config_load(path, &errs);
        for (size_t i = 0; i < errs.len; i++)
            print_error("%s\n", errs.messages[i]);
        failed += cfg == NULL;
        loaded++;
        gw_config_free(cfg);
        gw_config_errors_clear(&errs);
        free(path);
    }
    closedir(d);
    assert_int_equal(failed, 0);
    assert_true(loaded >= 6); /* demo, asgardeo, keycloak, auth0, okta, entra */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_nul_escape_is_an_error),
        cmocka_unit_test(test_errors_collected),
        cmocka_unit_test(test_oauth_cimd),
        cmocka_unit_test(test_design_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_route_defaults),
        cmocka_unit_test(test_derived_fields),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_quoting_and_nulls),
        cmocka_unit_test(test_policy_and_clients),
        cmocka_unit_test(test_listeners_and_auth_none),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_cidr_contains),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_deploy_configs),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
