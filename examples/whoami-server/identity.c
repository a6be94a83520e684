/*
 * identity: what the gateway told this process about its caller (DESIGN §6).
 * From the environment: MCP_USER_SUB, MCP_USER_NAME, MCP_USER_EMAIL,
 * MCP_USER_ROLES and MCP_USER_GROUPS (comma-separated), MCP_SCOPES
 * (space-separated), MCP_CLIENT_ID, and whether MCP_IDENTITY_JWT is set; from
 * a request, params._meta["io.mcpgate/principal"].
 *
 * The identity JWT is a bearer credential for other services: only its
 * length is ever shown, and its value is never copied.
 */
#include "whoami.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WS_META_PRINCIPAL "io.mcpgate/principal"
#define WS_JWT_VAR "MCP_IDENTITY_JWT"

struct ws_identity_field {
    const char *key;        /* in structuredContent.env */
    const char *var;        /* environment variable */
    const char *separators; /* NULL: a string; else a list split on these */
};

static const struct ws_identity_field ws_fields[] = {
    {"sub", "MCP_USER_SUB", NULL},        {"name", "MCP_USER_NAME", NULL},
    {"email", "MCP_USER_EMAIL", NULL},    {"roles", "MCP_USER_ROLES", ","},
    {"groups", "MCP_USER_GROUPS", ","},   {"scopes", "MCP_SCOPES", " \t"},
    {"client_id", "MCP_CLIENT_ID", NULL},
};

/* Items of TEXT between SEPARATORS, trimmed of blanks; empty items skipped. */
static json_t *split_list_new(const char *text, const char *separators)
{
    json_t *list = json_array();
    const char *p = text;
    while (*p != '\0') {
        size_t n = strcspn(p, separators);
        const char *item = p;
        size_t len = n;
        while (len > 0 && (*item == ' ' || *item == '\t')) {
            item++;
            len--;
        }
        while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
            len--;
        if (len > 0)
            json_array_append_new(list, ws_json_string_lossy(item, len));
        p += n;
        if (*p != '\0')
            p++;
    }
    return list;
}

static bool is_known_var(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(ws_fields) / sizeof(ws_fields[0]); i++)
        if (strlen(ws_fields[i].var) == len && memcmp(ws_fields[i].var, name, len) == 0)
            return true;
    return false;
}

/* Other MCP_USER_* variables, should the gateway add some. */
static json_t *extra_user_vars_new(void)
{
    json_t *extra = json_object();
    for (char **e = environ; *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        size_t len = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
        if (eq == NULL || strncmp(*e, "MCP_USER_", 9) != 0 || is_known_var(*e, len))
            continue;
        json_t *key = ws_json_string_lossy(*e, len); /* object keys must be UTF-8 */
        json_object_set_new(extra, json_string_value(key),
                            ws_json_string_lossy(eq + 1, strlen(eq + 1)));
        json_decref(key);
    }
    return extra;
}

json_t *ws_identity_env_new(void)
{
    json_t *env = json_object();
    for (size_t i = 0; i < sizeof(ws_fields) / sizeof(ws_fields[0]); i++) {
        const struct ws_identity_field *f = &ws_fields[i];
        const char *value = getenv(f->var);
        json_t *v = value == NULL           ? json_null()
                    : f->separators == NULL ? ws_json_string_lossy(value, strlen(value))
                                            : split_list_new(value, f->separators);
        json_object_set_new(env, f->key, v);
    }
    const char *jwt = getenv(WS_JWT_VAR);
    json_t *j = json_object();
    json_object_set_new(j, "present", json_boolean(jwt != NULL));
    json_object_set_new(j, "length", json_integer(jwt != NULL ? (json_int_t)strlen(jwt) : 0));
    json_object_set_new(env, "identity_jwt", j);
    json_object_set_new(env, "extra", extra_user_vars_new());
    return env;
}

json_t *ws_identity_new(const json_t *params)
{
    json_t *meta = json_object_get(json_object_get(params, "_meta"), WS_META_PRINCIPAL);
    json_t *identity = json_object();
    json_object_set_new(identity, "env", ws_identity_env_new());
    json_object_set_new(identity, "meta", meta != NULL ? json_deep_copy(meta) : json_null());
    return identity;
}

/* ---- the text rendering ------------------------------------------------------ */

static void print_value(FILE *out, const json_t *v)
{
    if (json_is_null(v) || v == NULL) {
        fputs("(not set)", out);
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        if (json_array_size(v) == 0)
            fputs("(empty)", out);
        json_array_foreach (v, i, item) {
            fprintf(out, "%s%s", i ? ", " : "", json_string_value(item));
        }
    } else {
        fputs(json_string_value(v), out);
    }
}

char *ws_identity_text_new(const json_t *identity)
{
    const json_t *env = json_object_get(identity, "env");
    const json_t *meta = json_object_get(identity, "meta");
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    WS_ASSERT(out != NULL);
    fputs("Identity received by " WS_SERVER_NAME ":\n", out);
    for (size_t i = 0; i < sizeof(ws_fields) / sizeof(ws_fields[0]); i++) {
        fprintf(out, "  %-10s (%s): ", ws_fields[i].key, ws_fields[i].var);
        print_value(out, json_object_get(env, ws_fields[i].key));
        fputc('\n', out);
    }
    const json_t *jwt = json_object_get(env, "identity_jwt");
    if (json_is_true(json_object_get(jwt, "present")))
        fprintf(out,
                "  identity JWT (" WS_JWT_VAR "): set, %" JSON_INTEGER_FORMAT
                " bytes (not shown)\n",
                json_integer_value(json_object_get(jwt, "length")));
    else
        fputs("  identity JWT (" WS_JWT_VAR "): not set\n", out);
    const char *key;
    const json_t *value;
    json_object_foreach ((json_t *)json_object_get(env, "extra"), key, value)
        fprintf(out, "  %s: %s\n", key, json_string_value(value));
    if (json_is_null(meta)) {
        fputs("  _meta[\"" WS_META_PRINCIPAL "\"]: absent\n", out);
    } else {
        char *m = json_dumps(meta, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(out, "  _meta[\"" WS_META_PRINCIPAL "\"]: %s\n", m);
        free(m);
    }
    int rc = fclose(out);
    WS_ASSERT(rc == 0);
    return text;
}

/* ---- env_dump ------------------------------------------------------------------- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

json_t *ws_env_names_new(void)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **names = ws_xcalloc(n, sizeof(*names));
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(environ[i], "=");
        names[i] = ws_xmalloc(len + 1);
        memcpy(names[i], environ[i], len);
        names[i][len] = '\0';
    }
    qsort(names, n, sizeof(*names), compare_strings);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(list, ws_json_string_lossy(names[i], strlen(names[i])));
        free(names[i]);
    }
    free(names);
    return list;
}
