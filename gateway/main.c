/*
 * main: the command line. Serving is `mcpgate -c FILE`; every other verb
 * (check-config, and the admin verbs that later work adds) runs and exits.
 * Exit status: 0 success, 1 runtime failure, 2 bad usage or bad config.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jws.h"
#include "common/log.h"
#include "conf/config.h"
#include "gateway/app.h"
#include "gateway/cli.h"
#include "gateway/config.h"

#define EXIT_USAGE 2

static void print_usage(FILE *out)
{
    fprintf(
        out,
        "usage: mcpgate -c FILE [--log-level LEVEL]   run the gateway\n"
        "       mcpgate check-config FILE             validate FILE, print a summary\n"
        "       mcpgate keygen FILE                   write a new ES256 identity signing key\n"
        "       mcpgate grants list -c FILE [--user SUB]\n"
        "       mcpgate grants revoke -c FILE (ID | --user SUB)\n"
        "       mcpgate clients list -c FILE | clients delete -c FILE ID\n"
        "       mcpgate sessions list -c FILE [--user SUB] [--route NAME]\n"
        "       mcpgate sessions end -c FILE ID\n"
        "       mcpgate explain -c FILE --route NAME [--roles a,b] [--groups g] [--scopes x,y]\n"
        "                       [--kind tool|prompt|resource] NAME\n"
        "       mcpgate --version | --help\n"
        "\n"
        "options:\n"
        "  -c, --config FILE     the YAML configuration (see README.md)\n"
        "  -l, --log-level LEVEL debug, info, warn or error (overrides log.level)\n"
        "  -V, --version         print the version and exit\n"
        "  -h, --help            print this help and exit\n"
        "\n"
        "signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads FILE.\n");
}

static void print_config_errors(const char *path, const struct gw_config_errors *errs)
{
    for (size_t i = 0; i < errs->len; i++)
        fprintf(stderr, "%s\n", errs->messages[i]);
    fprintf(stderr, "%s: %zu error%s\n", path, errs->len, errs->len == 1 ? "" : "s");
}

static int cmd_check_config(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mcpgate check-config FILE\n");
        return EXIT_USAGE;
    }
    struct gw_config_errors errs = {0};
    struct gw_config *cfg = gw_config_load(argv[1], &errs);
    if (cfg == NULL) {
        print_config_errors(argv[1], &errs);
        gw_config_errors_clear(&errs);
        return EXIT_USAGE;
    }
    gw_config_print_summary(cfg, stdout);
    cli_print_policy(cfg, stdout);
    gw_config_free(cfg);
    return 0;
}

static int cmd_keygen(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mcpgate keygen FILE\n");
        return EXIT_USAGE;
    }
    char *err = NULL;
    if (jws_keygen(argv[1], &err) < 0) {
        fprintf(stderr, "mcpgate: %s\n", err);
        free(err);
        return 1;
    }
    struct jws_key *k = jws_key_load(argv[1], &err);
    if (k == NULL) {
        fprintf(stderr, "mcpgate: %s\n", err);
        free(err);
        return 1;
    }
    printf("wrote %s (ES256, kid %s)\n", argv[1], jws_key_id(k));
    jws_key_free(k);
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    int level = -1;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:l:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'l': {
            enum gw_log_level lv;
            if (gw_log_level_parse(optarg, &lv) < 0) {
                fprintf(stderr, "mcpgate: unknown log level \"%s\"\n", optarg);
                return EXIT_USAGE;
            }
            level = (int)lv;
            break;
        }
        case 'V': printf("mcpgate %s (%s)\n", MCPGATE_VERSION, MCPGATE_GIT_REV); return 0;
        case 'h': print_usage(stdout); return 0;
        default: print_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind != argc || config_path == NULL) {
        print_usage(stderr);
        return EXIT_USAGE;
    }

    struct gw_config_errors errs = {0};
    struct gw_config *cfg = gw_config_load(config_path, &errs);
    if (cfg == NULL) {
        print_config_errors(config_path, &errs);
        gw_config_errors_clear(&errs);
        return EXIT_USAGE;
    }
    struct gw_app_options opts = {.config_path = config_path, .log_level_override = level};
    char *err = NULL;
    struct gw_app *app = gw_app_new(cfg, &opts, &err);
    if (app == NULL) {
        gw_log(GW_LOG_ERROR, "app", NULL, "cannot start", "error", err ? err : "unknown", NULL);
        free(err);
        return 1;
    }
    int status = gw_app_run(app);
    gw_app_free(app);
    return status;
}

int main(int argc, char **argv)
{
    /* Every verb may talk to Redis; hiredis writes with write(2). */
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "check-config") == 0)
        return cmd_check_config(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
        return cmd_keygen(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "grants") == 0)
        return cli_grants(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "clients") == 0)
        return cli_clients(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "sessions") == 0)
        return cli_sessions(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "explain") == 0)
        return cli_explain(argc - 1, argv + 1);
    return cmd_serve(argc, argv);
}
