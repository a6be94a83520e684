/*
 * fuzz_config: the YAML configuration loader (gateway/config.c) on arbitrary
 * bytes. A config is written by an operator, not an attacker, but it is the
 * largest parser in the gateway (libyaml events, our own tree, ${VAR}
 * expansion, secret files, cross-section checks) and a crash at SIGHUP
 * would take the gateway down.
 *
 * Checked: no crash, no leak (ASan after every input), and the contract of
 * gw_config_load_string(): a config and no messages, or NULL and at least
 * one message, each "fuzz.yaml:line:column: …".
 *
 * The seeds (corpus/config/) are the files of deploy/conf/ without their
 * comments; the environment they read is set here, with the secret files in
 * a temporary directory removed at exit.
 */
#include "tests/fuzz/fuzz.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/log.h"
#include "gateway/config.h"

#define NAME "fuzz.yaml"

static char tmp_dir[] = "/tmp/mcpgate-fuzz-config-XXXXXX";
static FILE *devnull;

static const char *const tmp_files[] = {"secret", "idp-secret", "identity.pem"};

static void write_tmp(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        abort();
}

static void remove_tmp(void)
{
    char path[256];
    for (size_t i = 0; i < sizeof(tmp_files) / sizeof(tmp_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmp_dir, tmp_files[i]);
        unlink(path);
    }
    rmdir(tmp_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gw_log_set_level(GW_LOG_ERROR);
    if (mkdtemp(tmp_dir) == NULL)
        abort();
    atexit(remove_tmp);
    char path[256];
    write_tmp("secret", "0123456789abcdef0123456789abcdef01234567\n");
    write_tmp("idp-secret", "idp-secret-value\n");
    /* The loader only keeps the key's path; it is read when the gateway starts. */
    write_tmp("identity.pem", "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n");
    snprintf(path, sizeof(path), "%s/secret", tmp_dir);
    setenv("MCPGATE_SECRET_FILE", path, 1);
    snprintf(path, sizeof(path), "%s/idp-secret", tmp_dir);
    setenv("IDP_CLIENT_SECRET_FILE", path, 1);
    snprintf(path, sizeof(path), "%s/identity.pem", tmp_dir);
    setenv("MCPGATE_IDENTITY_KEY", path, 1);
    setenv("FUZZ_DIR", tmp_dir, 1);
    /* What the files of deploy/conf/ read without a default. */
    setenv("IDP_CLIENT_ID", "mcpgate", 1);
    setenv("ASGARDEO_ORG", "acme", 1);
    setenv("AUTH0_DOMAIN", "acme.eu.auth0.com", 1);
    setenv("ENTRA_TENANT_ID", "00000000-0000-0000-0000-000000000000", 1);
    setenv("KEYCLOAK_ISSUER", "https://sso.example.com/realms/mcp", 1);
    setenv("OKTA_DOMAIN", "acme.okta.com", 1);
    setenv("EMPTY_VAR", "", 1);
    unsetenv("UNSET_VAR");
    devnull = fopen("/dev/null", "w");
    if (devnull == NULL)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_config_errors errs = {0};
    /* Not NUL-terminated on purpose: the loader takes a length. */
    struct gw_config *cfg = gw_config_load_string((const char *)data, size, NAME, &errs);
    if (cfg) {
        FUZZ_CHECK(errs.len == 0, "a config came back with %zu messages", errs.len);
        gw_config_print_summary(cfg, devnull);
        for (size_t i = 0; i < cfg->n_routes; i++) {
            FUZZ_CHECK(gw_config_route_by_path(cfg, cfg->routes[i].path) != NULL, "route %zu", i);
            FUZZ_CHECK(gw_config_route_by_name(cfg, cfg->routes[i].name) != NULL, "route %zu", i);
        }
    } else {
        FUZZ_CHECK(errs.len > 0, "NULL config without a message");
    }
    for (size_t i = 0; i < errs.len; i++)
        FUZZ_CHECK(strncmp(errs.messages[i], NAME ":", strlen(NAME) + 1) == 0,
                   "message without its file name: %s", errs.messages[i]);
    gw_config_free(cfg);
    gw_config_errors_clear(&errs);
    return 0;
}
