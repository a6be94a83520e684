/*
 * config: YAML (DESIGN §3) → struct gw_config, with every key typed,
 * range-checked and cross-checked, and every error located as
 * "file:line:column: key.path: message".
 *
 * How it works, in three passes:
 *  1. libyaml's event parser builds a small tree of our own (struct node) that
 *     keeps each node's position, style (plain or quoted), anchor and tag. We
 *     do not use libyaml's document loader because it resolves aliases and
 *     forgets anchors, duplicate keys and quoting, all of which we reject or
 *     need for messages.
 *  2. A walker reads the tree against descriptor tables (struct section): one
 *     table per YAML mapping, one row per key with its type, range and target
 *     field. Unknown keys, duplicates, anchors, aliases, tags, YAML 1.1
 *     booleans and wrong types are reported here, and ${VAR} expansion and
 *     secret files are handled here. Each table may have a `post` hook for
 *     checks between keys of one mapping.
 *  3. Checks across sections (route paths against gateway paths, auth: none
 *     against listeners, what oauth routes require) and derived fields.
 *
 * Errors never stop the walk, so one run reports every problem it can; only
 * a YAML syntax error ends parsing, since nothing after it can be trusted.
 *
 * Ownership: the struct gw_config owns every string and array in it; the same
 * descriptor tables drive gw_config_free(), so a field added to a table is
 * freed without further code. Secrets are wiped with OPENSSL_cleanse, and so
 * is the text of every YAML scalar, since secrets may be written inline.
 */
#include "conf/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <yaml.h>

#include "common/net.h"
#include "common/panic.h"
#include "common/xalloc.h"
#include "common/log.h"

#define CONFIG_MAX_FILE_BYTES (16u << 20) /* a config file is never this large */
#define SECRET_MAX_FILE_BYTES (64u << 10)
#define TREE_MAX_DEPTH 32 /* libyaml 0.2.5 has no nesting limit of its own */
#define KEY_PATH_MAX 512
#define ROUTE_NAME_MAX 64
#define OAUTH_SECRET_MIN_BYTES 32

#define KiB (1024ull)
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define SEC_MS (1000ull)
#define MIN_MS (60ull * SEC_MS)
#define HOUR_MS (60ull * MIN_MS)
#define DAY_MS (24ull * HOUR_MS)

/* Enum fields are written through an int pointer (set_enum): every T_ENUM target is an int. */
#define ENUM_IS_INT(e) _Static_assert(sizeof(enum e) == sizeof(int), #e " is not int-sized")
ENUM_IS_INT(gw_store_backend);
ENUM_IS_INT(gw_idp_preset);
ENUM_IS_INT(gw_token_auth);
ENUM_IS_INT(gw_client_auth);
ENUM_IS_INT(gw_policy_effect);
ENUM_IS_INT(gw_route_auth);
ENUM_IS_INT(gw_log_format);

/* ---- growable byte buffer (wipes what it drops: it may hold secrets) --- */

struct buf {
    char *data; /* owned, NUL-terminated */
    size_t len;
    size_t cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *data = xmalloc(cap);
        if (b->data) {
            memcpy(data, b->data, b->len);
            OPENSSL_cleanse(b->data, b->cap);
            free(b->data);
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_wipe(struct buf *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    memset(b, 0, sizeof(*b));
}

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* ---- the YAML tree ----------------------------------------------------- */

enum node_kind {
    NODE_SCALAR = 0,
    NODE_MAP,
    NODE_SEQ,
    NODE_ALIAS,
};

struct node {
    enum node_kind kind;
    unsigned line, column; /* 1-based */
    char *text;            /* owned: scalar value or alias name */
    size_t text_len;
    bool plain;         /* unquoted scalar */
    char *anchor;       /* owned, NULL when none */
    char *tag;          /* owned, NULL when none */
    struct node **kids; /* owned: sequence items, or map key, value, key, value… */
    size_t n_kids, cap_kids;
};

static size_t map_len(const struct node *m)
{
    return m->n_kids / 2;
}

static const struct node *map_key(const struct node *m, size_t i)
{
    return m->kids[2 * i];
}

static const struct node *map_val(const struct node *m, size_t i)
{
    return m->kids[2 * i + 1];
}

/* The first pair with this scalar key (later duplicates are reported and ignored). */
static const struct node *map_find(const struct node *m, const char *key, bool want_value)
{
    if (m == NULL || m->kind != NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map_len(m); i++) {
        const struct node *k = map_key(m, i);
        if (k->kind == NODE_SCALAR && strcmp(k->text, key) == 0)
            return want_value ? map_val(m, i) : k;
    }
    return NULL;
}

static const struct node *map_get(const struct node *m, const char *key)
{
    return map_find(m, key, true);
}

static void node_free(struct node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    if (n->text) {
        OPENSSL_cleanse(n->text, n->text_len);
        free(n->text);
    }
    free(n->anchor);
    free(n->tag);
    free(n);
}

static void node_append(struct node *parent, struct node *kid)
{
    if (parent->n_kids == parent->cap_kids) {
        parent->cap_kids = parent->cap_kids ? 2 * parent->cap_kids : 8;
        parent->kids = xrealloc(parent->kids, parent->cap_kids * sizeof(*parent->kids));
    }
    parent->kids[parent->n_kids++] = kid;
}

/* ---- the loader: error list and the key path of what is being read ---- */

struct loader {
    const char *name;              /* borrowed: the file name in messages */
    struct gw_config_errors *errs; /* borrowed */
    char path[KEY_PATH_MAX];       /* "routes[1].stdio.command" */
    size_t path_len;
    const char *input; /* borrowed: the YAML text, for reader-error positions */
    size_t input_len;
};

__attribute__((format(printf, 4, 0))) static void
verror_at(struct loader *ld, unsigned line, unsigned column, const char *fmt, va_list ap)
{
    char *msg = xvasprintf(fmt, ap);
    struct gw_config_errors *e = ld->errs;
    e->messages = xrealloc(e->messages, (e->len + 1) * sizeof(*e->messages));
    e->messages[e->len++] = xasprintf("%s:%u:%u: %s: %s", ld->name, line, column,
                                      ld->path_len ? ld->path : "(root)", msg);
    free(msg);
}

__attribute__((format(printf, 4, 5))) static void error_at(struct loader *ld, unsigned line,
                                                           unsigned column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_at(ld, line, column, fmt, ap);
    va_end(ap);
}

/* An error located at node n, under the current key path. */
__attribute__((format(printf, 3, 4))) static void
node_error(struct loader *ld, const struct node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_at(ld, n ? n->line : 1, n ? n->column : 1, fmt, ap);
    va_end(ap);
}

static size_t path_append(struct loader *ld, const char *fmt, const char *s, size_t i)
{
    size_t old = ld->path_len;
    size_t room = sizeof(ld->path) - old;
    int n = s ? snprintf(ld->path + old, room, fmt, s) : snprintf(ld->path + old, room, fmt, i);
    ld->path_len = (n < 0 || (size_t)n >= room) ? sizeof(ld->path) - 1 : old + (size_t)n;
    return old;
}

/* Pushes a key; returns the length to restore with path_pop. */
static size_t path_push(struct loader *ld, const char *key)
{
    return path_append(ld, ld->path_len ? ".%s" : "%s", key, 0);
}

static size_t path_push_index(struct loader *ld, size_t i)
{
    return path_append(ld, "[%zu]", NULL, i);
}

static void path_pop(struct loader *ld, size_t old)
{
    ld->path_len = old;
    ld->path[old] = '\0';
}

/* ---- pass 1: libyaml events → tree -------------------------------------- */

static void syntax_error(struct loader *ld, const yaml_parser_t *p)
{
    unsigned line = (unsigned)p->problem_mark.line + 1;
    unsigned column = (unsigned)p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) {
        /* reader errors carry a byte offset only */
        line = 1, column = 1;
        for (size_t i = 0; i < p->problem_offset && i < ld->input_len; i++) {
            column++;
            if (ld->input[i] == '\n')
                line++, column = 1;
        }
    }
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->context)
        error_at(ld, line, column, "%s (%s at line %u, column %u)", problem, p->context,
                 (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    else
        error_at(ld, line, column, "%s", problem);
}

static bool next_event(struct loader *ld, yaml_parser_t *p, yaml_event_t *ev)
{
    if (yaml_parser_parse(p, ev))
        return true;
    syntax_error(ld, p);
    return false;
}

static struct node *node_from_event(const yaml_event_t *ev)
{
    struct node *n = xcalloc(1, sizeof(*n));
    n->line = (unsigned)ev->start_mark.line + 1;
    n->column = (unsigned)ev->start_mark.column + 1;
    const yaml_char_t *anchor = NULL, *tag = NULL;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n->kind = NODE_SCALAR;
        /* The whole value, NULs included (a YAML "\0" escape makes one): the
         * length is kept to reject it later, and the buffer must really be that
         * long, since freeing wipes text_len bytes (found by fuzz_config). */
        n->text_len = ev->data.scalar.length;
        n->text = xmalloc(n->text_len + 1);
        memcpy(n->text, ev->data.scalar.value, n->text_len);
        n->text[n->text_len] = '\0';
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        anchor = ev->data.scalar.anchor, tag = ev->data.scalar.tag;
        break;
    case YAML_ALIAS_EVENT:
        n->kind = NODE_ALIAS;
        n->text = xstrdup((const char *)ev->data.alias.anchor);
        n->text_len = strlen(n->text);
        break;
    case YAML_SEQUENCE_START_EVENT:
        n->kind = NODE_SEQ;
        anchor = ev->data.sequence_start.anchor, tag = ev->data.sequence_start.tag;
        break;
    default:
        n->kind = NODE_MAP;
        anchor = ev->data.mapping_start.anchor, tag = ev->data.mapping_start.tag;
        break;
    }
    n->anchor = anchor ? xstrdup((const char *)anchor) : NULL;
    n->tag = tag ? xstrdup((const char *)tag) : NULL;
    return n;
}

static struct node *build_node(struct loader *ld, yaml_parser_t *p, yaml_event_t *ev,
                               unsigned depth);

/* Reads the items of a sequence or mapping up to its end event. */
static bool build_children(struct loader *ld, yaml_parser_t *p, struct node *n, unsigned depth)
{
    yaml_event_type_t end = n->kind == NODE_MAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    for (;;) {
        yaml_event_t ev;
        if (!next_event(ld, p, &ev))
            return false;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return true;
        }
        /* keep the key path current so a syntax error further in names where it is */
        size_t old = ld->path_len;
        if (n->kind == NODE_SEQ)
            path_push_index(ld, n->n_kids);
        else if (n->n_kids % 2 == 1 && n->kids[n->n_kids - 1]->kind == NODE_SCALAR)
            path_push(ld, n->kids[n->n_kids - 1]->text);
        struct node *kid = build_node(ld, p, &ev, depth + 1);
        path_pop(ld, old);
        if (kid == NULL)
            return false;
        node_append(n, kid);
    }
}

/* Builds the node that starts with ev (consumed). NULL after a reported error. */
static struct node *build_node(struct loader *ld, yaml_parser_t *p, yaml_event_t *ev,
                               unsigned depth)
{
    if (depth > TREE_MAX_DEPTH) {
        error_at(ld, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                 "nested deeper than %d levels", TREE_MAX_DEPTH);
        yaml_event_delete(ev);
        return NULL;
    }
    struct node *n = node_from_event(ev);
    bool container = ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT;
    yaml_event_delete(ev);
    if (container && !build_children(ld, p, n, depth)) {
        node_free(n);
        return NULL;
    }
    return n;
}

/* Expects one event of this type and drops it. */
static bool expect_event(struct loader *ld, yaml_parser_t *p, yaml_event_type_t type,
                         yaml_event_t *ev)
{
    if (!next_event(ld, p, ev))
        return false;
    if (ev->type == type)
        return true;
    /* the parser guarantees the order of the others: only these two can differ */
    error_at(ld, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1, "%s",
             type == YAML_STREAM_END_EVENT ? "only one YAML document is allowed"
                                           : "the configuration is empty");
    yaml_event_delete(ev);
    return false;
}

/* Parses one YAML document into a tree; NULL after a reported error. */
static struct node *build_tree(struct loader *ld)
{
    yaml_parser_t p;
    yaml_event_t ev;
    struct node *root = NULL;
    if (!yaml_parser_initialize(&p))
        GW_PANIC("out of memory (yaml_parser_initialize)");
    yaml_parser_set_input_string(&p, (const unsigned char *)ld->input, ld->input_len);
    if (!expect_event(ld, &p, YAML_STREAM_START_EVENT, &ev))
        goto out;
    yaml_event_delete(&ev);
    if (!expect_event(ld, &p, YAML_DOCUMENT_START_EVENT, &ev))
        goto out;
    yaml_event_delete(&ev);
    if (!next_event(ld, &p, &ev))
        goto out;
    root = build_node(ld, &p, &ev, 0);
    if (root == NULL || !expect_event(ld, &p, YAML_DOCUMENT_END_EVENT, &ev))
        goto fail;
    yaml_event_delete(&ev);
    if (!expect_event(ld, &p, YAML_STREAM_END_EVENT, &ev))
        goto fail;
    yaml_event_delete(&ev);
    goto out;
fail:
    node_free(root);
    root = NULL;
out:
    yaml_parser_delete(&p);
    return root;
}

/* ---- scalars: YAML 1.1 traps, ${VAR} expansion -------------------------- */

static const char *node_kind_name(const struct node *n)
{
    switch (n->kind) {
    case NODE_MAP: return "a mapping";
    case NODE_SEQ: return "a list";
    case NODE_ALIAS: return "an alias";
    default: return "a scalar";
    }
}

/* What YAML 1.1 tools read as booleans; YAML 1.2 and we only take true/false. */
static bool is_yaml11_bool(const char *s)
{
    static const char *const words[] = {
        "y",  "Y",  "yes", "Yes", "YES", "n",    "N",    "no",   "No",    "NO",    "on",
        "On", "ON", "off", "Off", "OFF", "true", "True", "TRUE", "false", "False", "FALSE"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(s, words[i]) == 0)
            return true;
    return false;
}

/* An empty value: `key:`, `key: ~`, `key: null`. Such a key counts as given but empty. */
static bool node_is_null(const struct node *n)
{
    if (n->kind != NODE_SCALAR || !n->plain || n->anchor || n->tag)
        return false;
    return n->text[0] == '\0' || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
           strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}

/* Anchors, aliases and tags are refused everywhere: a config must read as it looks. */
static bool node_usable(struct loader *ld, const struct node *n)
{
    if (n->kind == NODE_ALIAS)
        node_error(ld, n, "aliases (*%s) are not allowed", n->text);
    else if (n->anchor)
        node_error(ld, n, "anchors (&%s) are not allowed", n->anchor);
    else if (n->tag)
        node_error(ld, n, "tags (%s) are not allowed", n->tag);
    else
        return true;
    return false;
}

static bool expect_kind(struct loader *ld, const struct node *n, enum node_kind kind,
                        const char *what)
{
    if (!node_usable(ld, n))
        return false;
    if (n->kind == kind)
        return true;
    if (n->kind == NODE_SCALAR)
        node_error(ld, n, "expected %s, found \"%.40s\"", what, n->text);
    else
        node_error(ld, n, "expected %s, found %s", what, node_kind_name(n));
    return false;
}

static bool is_var_name(const char *s, size_t n)
{
    if (n == 0 || !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* Expands one "${…}" whose inside is ref[0..n); false after a reported error. */
static bool expand_ref(struct loader *ld, const struct node *at, const char *ref, size_t n,
                       struct buf *out)
{
    const char *dflt = memmem(ref, n, ":-", 2);
    size_t name_len = dflt ? (size_t)(dflt - ref) : n;
    if (!is_var_name(ref, name_len)) {
        node_error(ld, at, "invalid reference ${%.*s}: use ${NAME} or ${NAME:-default}", (int)n,
                   ref);
        return false;
    }
    char *name = xstrndup(ref, name_len);
    const char *value = getenv(name);
    bool ok = true;
    if (dflt && (value == NULL || value[0] == '\0')) /* POSIX ${VAR:-x}: unset or empty */
        buf_add(out, dflt + 2, n - name_len - 2);
    else if (value)
        buf_add(out, value, strlen(value));
    else {
        node_error(ld, at,
                   "environment variable %s is not set (write ${%s:-default} to give a "
                   "default)",
                   name, name);
        ok = false;
    }
    free(name);
    return ok;
}

/* The scalar with ${VAR}, ${VAR:-default} and $$ expanded; NULL after a reported error. */
static char *expand_env(struct loader *ld, const struct node *n)
{
    struct buf out = {0};
    const char *s = n->text;
    buf_add(&out, "", 0);
    for (size_t i = 0; i < n->text_len;) {
        if (s[i] != '$' || (s[i + 1] != '$' && s[i + 1] != '{')) {
            buf_add(&out, s + i, 1);
            i++;
        } else if (s[i + 1] == '$') {
            buf_add(&out, "$", 1);
            i += 2;
        } else {
            const char *close = memchr(s + i + 2, '}', n->text_len - i - 2);
            if (close == NULL) {
                node_error(ld, n, "unterminated ${ (missing '}')");
                goto fail;
            }
            if (!expand_ref(ld, n, s + i + 2, (size_t)(close - s - i - 2), &out))
                goto fail;
            i = (size_t)(close - s) + 1;
        }
    }
    return out.data;
fail:
    buf_wipe(&out);
    return NULL;
}

/* A scalar read as a string: checked for YAML traps, then expanded. NULL after an error. */
static char *scalar_text(struct loader *ld, const struct node *n, const char *what)
{
    if (!expect_kind(ld, n, NODE_SCALAR, what))
        return NULL;
    if (strlen(n->text) != n->text_len) {
        node_error(ld, n, "contains a NUL character");
        return NULL;
    }
    return expand_env(ld, n);
}

/* ---- value syntax: numbers, durations, sizes, rates, networks, URLs ----- */

/* Leading decimal digits of s into *out; returns how many, 0 on none or overflow. */
static size_t parse_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return i;
}

struct unit {
    const char *name;
    uint64_t scale;
};

static int scale_by_unit(const char *s, const struct unit *units, uint64_t *out)
{
    uint64_t v;
    size_t n = parse_digits(s, &v);
    if (n == 0)
        return -EINVAL;
    for (const struct unit *u = units; u->name; u++) {
        if (strcmp(s + n, u->name) == 0) {
            if (v > UINT64_MAX / u->scale)
                return -EINVAL;
            *out = v * u->scale;
            return 0;
        }
    }
    return -EINVAL;
}

static const struct unit duration_units[] = {
    {"ms", 1}, {"s", SEC_MS}, {"m", MIN_MS}, {"h", HOUR_MS}, {"d", DAY_MS}, {NULL, 0},
};

static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"KiB", KiB},
    {"MiB", MiB},
    {"GiB", GiB},
    {"TiB", 1024 * GiB},
    {"kB", 1000},
    {"MB", 1000000},
    {"GB", 1000000000ull},
    {"TB", 1000000000000ull},
    {NULL, 0},
};

int gw_parse_duration_ms(const char *text, uint64_t *out_ms)
{
    return scale_by_unit(text, duration_units, out_ms);
}

int gw_parse_size_bytes(const char *text, uint64_t *out_bytes)
{
    return scale_by_unit(text, size_units, out_bytes);
}

/* "10/min" → 10 per 60000 ms. */
static int parse_rate(const char *s, uint32_t *count, uint64_t *window_ms)
{
    static const struct unit units[] = {
        {"/s", SEC_MS}, {"/min", MIN_MS}, {"/h", HOUR_MS}, {"/d", DAY_MS}, {NULL, 0},
    };
    uint64_t v;
    size_t n = parse_digits(s, &v);
    if (n == 0 || v == 0 || v > 1000000)
        return -EINVAL;
    for (const struct unit *u = units; u->name; u++) {
        if (strcmp(s + n, u->name) == 0) {
            *count = (uint32_t)v;
            *window_ms = u->scale;
            return 0;
        }
    }
    return -EINVAL;
}

/* Prints ms in the largest unit that divides it: 90000 → "90s", 3600000 → "1h". */
static void fmt_duration(uint64_t ms, char *out, size_t size)
{
    for (int i = 4; i >= 0; i--) {
        if (ms % duration_units[i].scale == 0 && (ms != 0 || i == 1)) {
            snprintf(out, size, "%llu%s", (unsigned long long)(ms / duration_units[i].scale),
                     duration_units[i].name);
            return;
        }
    }
}

static void fmt_size(uint64_t bytes, char *out, size_t size)
{
    static const struct unit units[] = {{"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}};
    for (size_t i = 0; i < 3; i++) {
        if (bytes >= units[i].scale && bytes % units[i].scale == 0) {
            snprintf(out, size, "%llu%s", (unsigned long long)(bytes / units[i].scale),
                     units[i].name);
            return;
        }
    }
    snprintf(out, size, "%llu", (unsigned long long)bytes);
}

/*
 * "host:port" or "[v6]:port", the n bytes at s. Copies the host, without
 * brackets, into host. A listen address needs a port and may use 0 (a free
 * port, which tests use); a URL may omit it but never says 0. Returns NULL or
 * why not.
 */
static const char *parse_authority(const char *s, size_t n, bool listen, char *host,
                                   size_t host_size)
{
    unsigned port;
    return net_split_hostport(s, n, listen, listen ? 0 : 1, host, host_size, &port);
}

/*
 * "host:port", "[v6]:port" or "unix:/abs/path", as http_server_listen() takes
 * them: the host is an IP address or "localhost" (no resolver at startup), a
 * socket path fits sockaddr_un.sun_path (108 bytes with its NUL).
 */
static const char *parse_listen(const char *s, bool *loopback)
{
    char host[256];
    struct in_addr a4;
    struct in6_addr a6;
    if (strncmp(s, "unix:", 5) == 0) {
        *loopback = true;
        if (s[5] != '/' || s[6] == '\0')
            return "a unix socket needs an absolute path";
        return strlen(s + 5) < 108 ? NULL : "the socket path is longer than 107 bytes";
    }
    const char *why = parse_authority(s, strlen(s), true, host, sizeof(host));
    if (why == NULL && strcmp(host, "localhost") != 0 && inet_pton(AF_INET, host, &a4) != 1 &&
        inet_pton(AF_INET6, host, &a6) != 1)
        why = "the host must be an IP address or localhost";
    *loopback = why == NULL && net_host_is_loopback(host);
    return why;
}

struct url_parts {
    bool https;
    char host[256];   /* without brackets */
    const char *rest; /* path, query and fragment: from the first '/', '?' or '#' */
};

/* http(s)://host[:port]… Returns NULL or why not. */
static const char *parse_url(const char *s, struct url_parts *u)
{
    const char *auth;
    if (strncasecmp(s, "https://", 8) == 0)
        u->https = true, auth = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        u->https = false, auth = s + 7;
    else
        return "must start with http:// or https://";
    size_t n = strcspn(auth, "/?#");
    u->rest = auth + n;
    if (memchr(auth, '@', n))
        return "must not contain user info (user@)";
    return parse_authority(auth, n, false, u->host, sizeof(u->host));
}

/* ---- string checks: each reports its own error and returns false ------- */

typedef bool (*check_fn)(struct loader *ld, const struct node *at, const char *value);

static bool check_listen(struct loader *ld, const struct node *at, const char *v)
{
    bool loopback;
    const char *why = parse_listen(v, &loopback);
    if (why)
        node_error(ld, at,
                   "invalid listen address \"%s\" (%s): use host:port, [v6]:port or "
                   "unix:/absolute/path",
                   v, why);
    return why == NULL;
}

/* scheme://host[:port] and nothing else: public_url, allowed_origins, idp.base_url. */
static bool check_origin_url(struct loader *ld, const struct node *at, const char *v)
{
    struct url_parts u;
    const char *why = parse_url(v, &u);
    if (why == NULL && strcmp(u.rest, "/") == 0)
        why = "must not end with '/'";
    else if (why == NULL && u.rest[0])
        why = "must not have a path, query or fragment";
    if (why)
        node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

static bool check_https_or_loopback(struct loader *ld, const struct node *at, const char *v)
{
    struct url_parts u;
    if (parse_url(v, &u) == NULL && !u.https && !net_host_is_loopback(u.host)) {
        node_error(ld, at, "\"%s\" must use https (http only for a loopback host)", v);
        return false;
    }
    return true;
}

static bool check_base_url(struct loader *ld, const struct node *at, const char *v)
{
    return check_origin_url(ld, at, v) && check_https_or_loopback(ld, at, v);
}

/* OIDC Core / RFC 8414: an https URL without query or fragment. */
static bool check_issuer(struct loader *ld, const struct node *at, const char *v)
{
    struct url_parts u;
    const char *why = parse_url(v, &u);
    if (why == NULL && strpbrk(u.rest, "?#"))
        why = "must not have a query or fragment";
    if (why) {
        node_error(ld, at, "\"%s\" %s", v, why);
        return false;
    }
    return check_https_or_loopback(ld, at, v);
}

static bool check_http_url(struct loader *ld, const struct node *at, const char *v)
{
    struct url_parts u;
    const char *why = parse_url(v, &u);
    if (why == NULL && strchr(u.rest, '#'))
        why = "must not have a fragment";
    if (why)
        node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

/* The forms store/redis.c connects to; it reports finer problems when it parses the URL. */
static bool check_redis_url(struct loader *ld, const struct node *at, const char *v)
{
    if ((strncmp(v, "redis://", 8) == 0 && v[8]) || strncmp(v, "unix:/", 6) == 0)
        return true;
    if (strncmp(v, "rediss://", 9) == 0)
        node_error(ld, at,
                   "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS; use a "
                   "private network or a local TLS tunnel");
    else
        node_error(ld, at,
                   "\"%s\" must be redis://[user:password@]host[:port][/db] or "
                   "unix:/path/to/redis.sock",
                   v);
    return false;
}

/*
 * OAuth 2.1 §2.3.1 / RFC 8252: https anywhere, http only to loopback, a
 * private-use scheme for native apps; never a fragment.
 */
static bool check_redirect_uri(struct loader *ld, const struct node *at, const char *v)
{
    struct url_parts u;
    size_t scheme = strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789+.-");
    const char *why = NULL;
    if (scheme == 0 || v[scheme] != ':' || v[scheme + 1] == '\0' || !(v[0] >= 'a' && v[0] <= 'z'))
        why = "is not an absolute URI";
    else if (strchr(v, '#'))
        why = "must not have a fragment";
    else if (strncmp(v, "http:", 5) == 0 || strncmp(v, "https:", 6) == 0) {
        why = parse_url(v, &u);
        if (why == NULL && !u.https && !net_host_is_loopback(u.host))
            why = "may use http only with a loopback host";
    }
    if (why)
        node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

/* RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E */
static bool check_scope(struct loader *ld, const struct node *at, const char *v)
{
    for (const char *c = v; *c; c++) {
        if (*c < 0x21 || *c > 0x7e || *c == '"' || *c == '\\') {
            node_error(ld, at, "\"%s\" is not a valid scope (no spaces, quotes or backslashes)", v);
            return false;
        }
    }
    return true;
}

static bool check_env_name(struct loader *ld, const struct node *at, const char *v)
{
    if (is_var_name(v, strlen(v)))
        return true;
    node_error(ld, at, "\"%s\" is not a valid environment variable name", v);
    return false;
}

static bool check_abs_path(struct loader *ld, const struct node *at, const char *v)
{
    if (v[0] == '/')
        return true;
    node_error(ld, at, "\"%s\" must be an absolute path", v);
    return false;
}

static bool check_organization(struct loader *ld, const struct node *at, const char *v)
{
    if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == strlen(v))
        return true;
    node_error(ld, at, "\"%s\" is not a valid organization name", v);
    return false;
}

static bool check_route_name(struct loader *ld, const struct node *at, const char *v)
{
    size_t n = strlen(v);
    if (n <= ROUTE_NAME_MAX &&
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n)
        return true;
    node_error(ld, at, "\"%.80s\" must be 1 to %d of A-Z a-z 0-9 _ -", v, ROUTE_NAME_MAX);
    return false;
}

/* Why a URL path is unusable for a route or the metrics endpoint, or NULL. */
static const char *path_problem(const char *p)
{
    if (p[0] != '/')
        return "must start with '/'";
    if (strchr(p, '?'))
        return "must not contain '?' (no query)";
    if (strchr(p, '#'))
        return "must not contain '#'";
    if (p[strlen(p) - 1] == '/')
        return "must not end with '/'";
    if (strstr(p, "//"))
        return "must not contain empty segments ('//')";
    for (const char *s = p; (s = strstr(s, "/..")) != NULL; s += 3)
        if (s[3] == '/' || s[3] == '\0')
            return "must not contain '..' segments";
    for (const char *s = p; (s = strstr(s, "/.")) != NULL; s += 2)
        if (s[2] == '/' || s[2] == '\0')
            return "must not contain '.' segments";
    if (strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/") !=
        strlen(p))
        return "may contain only A-Z a-z 0-9 - . _ ~ /";
    return NULL;
}

/* Paths the gateway serves itself (DESIGN §4); the metrics path is checked separately. */
static const char *reserved_path(const char *p)
{
    static const char *const exact[] = {"/authorize", "/token",   "/register", "/revoke",
                                        "/callback",  "/healthz", "/readyz"};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(p, exact[i]) == 0)
            return "is a gateway endpoint";
    if (strncmp(p, "/.well-known", 12) == 0 && (p[12] == '/' || p[12] == '\0'))
        return "is under /.well-known, which the gateway serves";
    return NULL;
}

static bool check_url_path(struct loader *ld, const struct node *at, const char *v)
{
    const char *why = path_problem(v);
    if (why == NULL)
        why = reserved_path(v);
    if (why)
        node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

/* ---- descriptor tables: types ------------------------------------------- */

enum field_type {
    T_STR = 0,      /* char * */
    T_SECRET,       /* char *, wiped on free; "<key>_file" reads it from a file */
    T_SECRET_BYTES, /* unsigned char * and size_t at off2; "<key>_file" too */
    T_BOOL,         /* bool */
    T_U32,          /* uint32_t in [min, max] */
    T_DURATION,     /* uint64_t milliseconds in [min, max] */
    T_SIZE,         /* uint64_t bytes in [min, max] */
    T_ENUM,         /* int, from names */
    T_RATE,         /* uint32_t count at off, uint64_t window ms at off2 */
    T_STRLIST,      /* struct gw_string_list */
    T_STRMAP,       /* struct gw_string_map; check applies to keys */
    T_CIDRS,        /* struct net_cidr * at off, size_t count at off2 */
    T_SECTION,      /* a nested mapping read with sub, into base + off */
    T_LIST,         /* a list of mappings: array at off, count at off2 */
};

/* Field flags. */
#define F_REQUIRED 0x1    /* the key must be given */
#define F_ALLOW_EMPTY 0x2 /* "" is a value (otherwise "must not be empty") */
#define F_EMPTY_UNSET 0x4 /* "" leaves the field unset, as if the key were absent */
#define F_NONEMPTY 0x8    /* lists: at least one item */

struct enum_name {
    const char *name;
    int value;
};

struct section;

struct field {
    const char *key;
    enum field_type type;
    size_t off, off2;
    unsigned flags;
    uint64_t min, max;             /* T_U32, T_DURATION, T_SIZE; T_SECRET_BYTES: min */
    const struct enum_name *names; /* T_ENUM, ended by {NULL} */
    check_fn check;                /* T_STR, T_STRLIST items, T_STRMAP keys */
    const struct section *sub;     /* T_SECTION, T_LIST */
    size_t elem_size;              /* T_LIST */
    void (*init)(void *elem);      /* T_LIST: defaults of a new element */
};

/* Which keys of a mapping were given, and which of those were read without error. */
struct keys_seen {
    uint64_t given;
    uint64_t valid;
};

struct section {
    const struct field *fields;
    size_t n_fields;
    /* checks between keys of one mapping; at is the mapping (or the empty value) */
    void (*post)(struct loader *ld, const struct node *at, void *base, const struct keys_seen *ks);
    /* frees derived fields that no table row names */
    void (*release)(void *base);
};

static int field_index(const struct section *sec, const char *key)
{
    for (size_t i = 0; i < sec->n_fields; i++)
        if (strcmp(sec->fields[i].key, key) == 0)
            return (int)i;
    GW_PANIC("a post hook named a key its own table lacks"); /* a bug, not bad input */
}

static bool key_given(const struct section *sec, const struct keys_seen *ks, const char *key)
{
    return ks->given & (1ull << field_index(sec, key));
}

static bool key_valid(const struct section *sec, const struct keys_seen *ks, const char *key)
{
    return ks->valid & (1ull << field_index(sec, key));
}

static bool is_secret_type(enum field_type t)
{
    return t == T_SECRET || t == T_SECRET_BYTES;
}

/* ---- setters: one per field type; false after a reported error ---------- */

static bool walk_section(struct loader *ld, const struct section *sec, const struct node *map,
                         void *base);

/* Reads a string value with the field's empty-value rule and check. *out NULL: unset. */
static bool read_string(struct loader *ld, const struct field *f, const struct node *n, char **out)
{
    *out = NULL;
    if (n->kind == NODE_SCALAR && n->plain && !n->anchor && !n->tag && is_yaml11_bool(n->text)) {
        node_error(ld, n,
                   "unquoted %s is a YAML 1.1 boolean: quote it (\"%s\") if you mean the "
                   "string",
                   n->text, n->text);
        return false;
    }
    char *s = node_is_null(n) ? xstrdup("") : scalar_text(ld, n, "a string");
    if (s == NULL)
        return false;
    if (s[0] == '\0' && !(f->flags & F_ALLOW_EMPTY)) {
        free(s);
        if (f->flags & F_EMPTY_UNSET)
            return true;
        node_error(ld, n, "must not be empty");
        return false;
    }
    if (s[0] != '\0' && f->check && !f->check(ld, n, s)) {
        free_secret(s);
        return false;
    }
    *out = s;
    return true;
}

static bool set_str(struct loader *ld, const struct field *f, const struct node *n, char **slot)
{
    char *s;
    if (!read_string(ld, f, n, &s))
        return false;
    if (s) {
        free(*slot);
        *slot = s;
    }
    return true;
}

/*
 * A secret file's bytes with one trailing newline removed ("\r\n" too for
 * text secrets; raw key bytes lose only "\n"). NULL after a reported error.
 */
static char *read_secret_file(struct loader *ld, const struct node *at, const char *path, bool text,
                              size_t *len)
{
    struct buf b = {0};
    char chunk[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    const char *why = NULL;
    if (fd < 0 || fstat(fd, &st) < 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    if (why) {
        node_error(ld, at, "cannot read %s: %s", path, why);
        goto fail;
    }
    for (ssize_t r; (r = read(fd, chunk, sizeof(chunk))) != 0;) {
        if (r < 0 || b.len + (size_t)r > SECRET_MAX_FILE_BYTES) {
            node_error(ld, at, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "too large");
            goto fail;
        }
        buf_add(&b, chunk, (size_t)r);
    }
    OPENSSL_cleanse(chunk, sizeof(chunk));
    close(fd);
    buf_add(&b, "", 0);
    if (b.len > 0 && b.data[b.len - 1] == '\n')
        b.data[--b.len] = '\0';
    if (text && b.len > 0 && b.data[b.len - 1] == '\r')
        b.data[--b.len] = '\0';
    *len = b.len;
    return b.data;
fail:
    OPENSSL_cleanse(chunk, sizeof(chunk));
    if (fd >= 0)
        close(fd);
    buf_wipe(&b);
    return NULL;
}

/* The secret from the value, or from the file it names; NULL when unset or on error. */
static char *read_secret(struct loader *ld, const struct field *f, const struct node *n,
                         bool from_file, size_t *len, bool *ok)
{
    static const struct field path_field = {.key = "file", .type = T_STR};
    char *path, *s;
    *ok = false;
    if (!from_file) {
        if (!read_string(ld, f, n, &s))
            return NULL;
        *ok = true;
        *len = s ? strlen(s) : 0;
        return s;
    }
    if (!read_string(ld, &path_field, n, &path))
        return NULL;
    s = read_secret_file(ld, n, path, f->type == T_SECRET, len);
    if (s && f->type == T_SECRET && (strlen(s) != *len || *len == 0)) {
        node_error(ld, n, *len ? "%s contains a NUL byte" : "%s is empty", path);
        OPENSSL_cleanse(s, *len);
        free(s);
        s = NULL;
    }
    free(path);
    *ok = s != NULL;
    return s;
}

static bool set_secret(struct loader *ld, const struct field *f, const struct node *n, void *base,
                       bool from_file)
{
    size_t len = 0;
    bool ok;
    char *s = read_secret(ld, f, n, from_file, &len, &ok);
    if (s == NULL)
        return ok;
    if (f->type == T_SECRET_BYTES && len < f->min) {
        node_error(ld, n,
                   from_file ? "the secret file holds %zu bytes; at least %llu are needed"
                             : "is %zu bytes long; at least %llu are needed",
                   len, (unsigned long long)f->min);
        OPENSSL_cleanse(s, len);
        free(s);
        return false;
    }
    void *slot = (char *)base + f->off;
    if (f->type == T_SECRET) {
        free_secret(*(char **)slot);
        *(char **)slot = s;
    } else {
        *(unsigned char **)slot = (unsigned char *)s;
        *(size_t *)((char *)base + f->off2) = len;
    }
    return true;
}

static bool set_bool(struct loader *ld, const struct node *n, bool *slot)
{
    char *s = scalar_text(ld, n, "true or false");
    bool ok = s && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0);
    if (ok)
        *slot = strcmp(s, "true") == 0;
    else if (s && is_yaml11_bool(s))
        node_error(ld, n, "\"%s\" is a YAML 1.1 boolean: write true or false", s);
    else if (s)
        node_error(ld, n, "expected true or false, found \"%.40s\"", s);
    free(s);
    return ok;
}

static void fmt_range(const struct field *f, char *lo, char *hi, size_t size)
{
    if (f->type == T_DURATION) {
        fmt_duration(f->min, lo, size);
        fmt_duration(f->max, hi, size);
    } else if (f->type == T_SIZE) {
        fmt_size(f->min, lo, size);
        fmt_size(f->max, hi, size);
    } else {
        snprintf(lo, size, "%llu", (unsigned long long)f->min);
        snprintf(hi, size, "%llu", (unsigned long long)f->max);
    }
}

/* Numbers, durations and sizes share the range check and its message. */
static bool set_number(struct loader *ld, const struct field *f, const struct node *n, void *slot)
{
    static const char *const what[] = {
        [T_U32] = "an integer", [T_DURATION] = "a duration", [T_SIZE] = "a size"};
    char *s = scalar_text(ld, n, what[f->type]);
    uint64_t v = 0;
    char lo[32], hi[32];
    bool ok = false;
    if (s == NULL)
        return false;
    if (f->type == T_DURATION && s[0] && strspn(s, "0123456789") == strlen(s))
        node_error(ld, n, "\"%s\" has no unit: write e.g. \"%ss\" (units: ms, s, m, h, d)", s, s);
    else if (f->type == T_DURATION && gw_parse_duration_ms(s, &v) < 0)
        node_error(ld, n, "invalid duration \"%.40s\" (write e.g. 250ms, 60s, 15m, 1h, 30d)", s);
    else if (f->type == T_SIZE && gw_parse_size_bytes(s, &v) < 0)
        node_error(ld, n, "invalid size \"%.40s\" (write e.g. 512, 64KiB, 4MiB, 1GiB, 10kB)", s);
    else if (f->type == T_U32 && (parse_digits(s, &v) == 0 || s[strspn(s, "0123456789")]))
        node_error(ld, n, "expected an integer, found \"%.40s\"", s);
    else if (v < f->min || v > f->max) {
        fmt_range(f, lo, hi, sizeof(lo));
        node_error(ld, n, "%s is out of range: must be %s to %s", s, lo, hi);
    } else
        ok = true;
    if (ok && f->type == T_U32)
        *(uint32_t *)slot = (uint32_t)v;
    else if (ok)
        *(uint64_t *)slot = v;
    free(s);
    return ok;
}

static bool set_enum(struct loader *ld, const struct field *f, const struct node *n, int *slot)
{
    char *s = scalar_text(ld, n, "a string");
    if (s == NULL)
        return false;
    for (const struct enum_name *e = f->names; e->name; e++) {
        if (strcmp(s, e->name) == 0) {
            *slot = e->value;
            free(s);
            return true;
        }
    }
    struct buf list = {0};
    buf_add(&list, "", 0);
    for (const struct enum_name *e = f->names; e->name; e++) {
        if (e != f->names)
            buf_add(&list, ", ", 2);
        buf_add(&list, e->name, strlen(e->name));
    }
    node_error(ld, n, "\"%.40s\" is not one of: %s", s, list.data);
    buf_wipe(&list);
    free(s);
    return false;
}

static bool set_rate(struct loader *ld, const struct field *f, const struct node *n, void *base)
{
    char *s = scalar_text(ld, n, "a rate");
    uint32_t count;
    uint64_t window;
    if (s == NULL)
        return false;
    bool ok = parse_rate(s, &count, &window) == 0;
    if (ok) {
        *(uint32_t *)((char *)base + f->off) = count;
        *(uint64_t *)((char *)base + f->off2) = window;
    } else
        node_error(ld, n,
                   "invalid rate \"%.40s\" (write count/unit, unit s, min, h or d, e.g. "
                   "10/min; count 1 to 1000000)",
                   s);
    free(s);
    return ok;
}

static void string_list_free(struct gw_string_list *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static bool set_string_list(struct loader *ld, const struct field *f, const struct node *n,
                            struct gw_string_list *l)
{
    if (!node_is_null(n) && !expect_kind(ld, n, NODE_SEQ, "a list"))
        return false;
    string_list_free(l);
    size_t count = node_is_null(n) ? 0 : n->n_kids;
    l->items = xcalloc(count, sizeof(*l->items));
    bool ok = true;
    for (size_t i = 0; i < count; i++) {
        size_t old = path_push_index(ld, i);
        const struct field item = {.type = T_STR, .check = f->check};
        char *s;
        if (read_string(ld, &item, n->kids[i], &s) && s)
            l->items[l->len++] = s;
        else
            ok = false;
        path_pop(ld, old);
    }
    if (count == 0 && (f->flags & F_NONEMPTY)) {
        node_error(ld, n, "must list at least one item");
        return false;
    }
    return ok;
}

/* Reports a key that is not a plain scalar, has an anchor, or repeats an earlier key. */
static bool key_ok(struct loader *ld, const struct node *map, size_t i)
{
    const struct node *k = map_key(map, i);
    if (!expect_kind(ld, k, NODE_SCALAR, "a key"))
        return false;
    for (size_t j = 0; j < i; j++) {
        const struct node *prev = map_key(map, j);
        if (prev->kind == NODE_SCALAR && strcmp(prev->text, k->text) == 0) {
            size_t old = path_push(ld, k->text);
            node_error(ld, k, "duplicate key (first at line %u)", prev->line);
            path_pop(ld, old);
            return false;
        }
    }
    return true;
}

static bool set_string_map(struct loader *ld, const struct field *f, const struct node *n,
                           struct gw_string_map *m)
{
    struct field value = {.type = T_STR, .flags = f->flags};
    if (node_is_null(n))
        return true;
    if (!expect_kind(ld, n, NODE_MAP, "a mapping"))
        return false;
    for (size_t i = 0; i < m->len; i++)
        free(m->keys[i]), free(m->values[i]);
    free(m->keys), free(m->values);
    m->keys = xcalloc(map_len(n), sizeof(char *));
    m->values = xcalloc(map_len(n), sizeof(char *));
    m->len = 0;
    bool ok = true;
    for (size_t i = 0; i < map_len(n); i++) {
        const struct node *k = map_key(n, i);
        if (!key_ok(ld, n, i)) {
            ok = false;
            continue;
        }
        size_t old = path_push(ld, k->text);
        char *v = NULL;
        if ((f->check == NULL || f->check(ld, k, k->text)) &&
            read_string(ld, &value, map_val(n, i), &v)) {
            m->keys[m->len] = xstrdup(k->text);
            m->values[m->len++] = v ? v : xstrdup("");
        } else
            ok = false;
        path_pop(ld, old);
    }
    return ok;
}

static bool set_cidrs(struct loader *ld, const struct field *f, const struct node *n, void *base)
{
    struct net_cidr **slot = (struct net_cidr **)((char *)base + f->off);
    size_t *count = (size_t *)((char *)base + f->off2);
    if (!node_is_null(n) && !expect_kind(ld, n, NODE_SEQ, "a list"))
        return false;
    size_t total = node_is_null(n) ? 0 : n->n_kids;
    free(*slot);
    *slot = xcalloc(total, sizeof(**slot));
    *count = 0;
    bool ok = true;
    for (size_t i = 0; i < total; i++) {
        size_t old = path_push_index(ld, i);
        char *s = scalar_text(ld, n->kids[i], "an address or network");
        const char *why = s ? net_cidr_parse(s, &(*slot)[*count]) : "";
        if (why && s)
            node_error(ld, n->kids[i],
                       "invalid network \"%.60s\": %s (write e.g. 10.0.0.0/8, "
                       "192.168.1.10 or fd00::/8)",
                       s, why);
        if (why)
            ok = false;
        else
            (*count)++;
        free(s);
        path_pop(ld, old);
    }
    return ok;
}

static bool set_list(struct loader *ld, const struct field *f, const struct node *n, void *base)
{
    void **slot = (void **)((char *)base + f->off);
    size_t *count = (size_t *)((char *)base + f->off2);
    if (!node_is_null(n) && !expect_kind(ld, n, NODE_SEQ, "a list"))
        return false;
    size_t total = node_is_null(n) ? 0 : n->n_kids;
    assert(*slot == NULL); /* lists have no defaults */
    *slot = xcalloc(total, f->elem_size);
    *count = total;
    bool ok = true;
    for (size_t i = 0; i < total; i++) {
        char *elem = (char *)*slot + i * f->elem_size;
        if (f->init)
            f->init(elem);
        size_t old = path_push_index(ld, i);
        ok = walk_section(ld, f->sub, n->kids[i], elem) && ok;
        path_pop(ld, old);
    }
    return ok;
}

static bool set_field(struct loader *ld, const struct field *f, const struct node *n, void *base,
                      bool from_file)
{
    void *slot = (char *)base + f->off;
    switch (f->type) {
    case T_STR: return set_str(ld, f, n, slot);
    case T_SECRET:
    case T_SECRET_BYTES: return set_secret(ld, f, n, base, from_file);
    case T_BOOL: return set_bool(ld, n, slot);
    case T_U32:
    case T_DURATION:
    case T_SIZE: return set_number(ld, f, n, slot);
    case T_ENUM: return set_enum(ld, f, n, slot);
    case T_RATE: return set_rate(ld, f, n, base);
    case T_STRLIST: return set_string_list(ld, f, n, slot);
    case T_STRMAP: return set_string_map(ld, f, n, slot);
    case T_CIDRS: return set_cidrs(ld, f, n, base);
    case T_SECTION: return walk_section(ld, f->sub, n, slot);
    case T_LIST: return set_list(ld, f, n, base);
    }
    return false;
}

/* ---- the walker ---------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* "unknown key", with the nearest known key when one is within 2 edits. */
static void unknown_key(struct loader *ld, const struct section *sec, const struct node *k)
{
    char best[80] = "", cand[80];
    size_t best_d = 3;
    for (size_t i = 0; i < sec->n_fields; i++) {
        for (int file = 0; file <= (int)is_secret_type(sec->fields[i].type); file++) {
            snprintf(cand, sizeof(cand), file ? "%s_file" : "%s", sec->fields[i].key);
            size_t d = edit_distance(k->text, cand);
            if (d < best_d) {
                best_d = d;
                memcpy(best, cand, sizeof(best));
            }
        }
    }
    if (best[0])
        node_error(ld, k, "unknown key (did you mean %s?)", best);
    else
        node_error(ld, k, "unknown key");
}

/* The row for key, also matching "<key>_file" of secrets. */
static int find_field(const struct section *sec, const char *key, bool *from_file)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < sec->n_fields; i++) {
        const struct field *f = &sec->fields[i];
        size_t fn = strlen(f->key);
        *from_file = false;
        if (strcmp(f->key, key) == 0)
            return (int)i;
        if (is_secret_type(f->type) && n == fn + 5 && strncmp(key, f->key, fn) == 0 &&
            strcmp(key + fn, "_file") == 0) {
            *from_file = true;
            return (int)i;
        }
    }
    return -1;
}

/* Reads one key/value pair of a mapping into its field. */
static void walk_pair(struct loader *ld, const struct section *sec, const struct node *map,
                      size_t i, void *base, struct keys_seen *ks)
{
    const struct node *k = map_key(map, i);
    bool from_file;
    int fi = find_field(sec, k->text, &from_file);
    size_t old = path_push(ld, k->text);
    if (fi < 0)
        unknown_key(ld, sec, k);
    else if (ks->given & (1ull << fi)) {
        /* not a duplicate (key_ok saw to that): the secret and its _file variant */
        node_error(ld, k, "give %s or %s_file, not both", sec->fields[fi].key, sec->fields[fi].key);
    } else {
        ks->given |= 1ull << fi;
        if (set_field(ld, &sec->fields[fi], map_val(map, i), base, from_file))
            ks->valid |= 1ull << fi;
    }
    path_pop(ld, old);
}

static void check_required(struct loader *ld, const struct section *sec, const struct node *at,
                           const struct keys_seen *ks)
{
    for (size_t i = 0; i < sec->n_fields; i++) {
        const struct field *f = &sec->fields[i];
        if (!(f->flags & F_REQUIRED) || (ks->given & (1ull << i)))
            continue;
        size_t old = path_push(ld, f->key);
        if (is_secret_type(f->type))
            node_error(ld, at, "required key is missing (give %s or %s_file)", f->key, f->key);
        else
            node_error(ld, at, "required key is missing");
        path_pop(ld, old);
    }
}

/*
 * Reads a mapping into base with the table sec. An empty value (`key:`) reads
 * as an empty mapping, so required keys are still reported. Returns false
 * when map is not a mapping at all.
 */
static bool walk_section(struct loader *ld, const struct section *sec, const struct node *map,
                         void *base)
{
    struct keys_seen ks = {0};
    assert(sec->n_fields <= 64);
    if (!node_is_null(map)) {
        if (!expect_kind(ld, map, NODE_MAP, "a mapping"))
            return false;
        for (size_t i = 0; i < map_len(map); i++)
            if (key_ok(ld, map, i))
                walk_pair(ld, sec, map, i, base, &ks);
    }
    check_required(ld, sec, map, &ks);
    if (sec->post)
        sec->post(ld, map, base, &ks);
    return true;
}

/* An error about key of mapping at, at the key (or the mapping when it is absent). */
__attribute__((format(printf, 5, 0))) static void vpair_error(struct loader *ld,
                                                              const struct node *at,
                                                              const char *key, bool at_value,
                                                              const char *fmt, va_list ap)
{
    const struct node *n = map_find(at, key, at_value);
    if (n == NULL)
        n = at;
    size_t old = path_push(ld, key);
    verror_at(ld, n->line, n->column, fmt, ap);
    path_pop(ld, old);
}

/* The key itself is the problem: missing, misplaced, or clashing with another key. */
__attribute__((format(printf, 4, 5))) static void
key_error(struct loader *ld, const struct node *at, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vpair_error(ld, at, key, false, fmt, ap);
    va_end(ap);
}

/* The value is the problem, though well-formed on its own: a duplicate, a conflict. */
__attribute__((format(printf, 4, 5))) static void
value_error(struct loader *ld, const struct node *at, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vpair_error(ld, at, key, true, fmt, ap);
    va_end(ap);
}

/* ---- schema: one table per mapping --------------------------------------- */

/*
 * Rows are {key, type, AT(...), .flags = …, .check = …}. After AT() every
 * member must be named: a positional value there would land in off2.
 */
#define FIELDS(a) (a), sizeof(a) / sizeof((a)[0])
#define AT(type, member) .off = offsetof(type, member)
#define AT2(type, m1, m2) .off = offsetof(type, m1), .off2 = offsetof(type, m2)
#define RANGE(lo, hi) .min = (lo), .max = (hi)

static const struct field limits_fields[] = {
    {"max_body", T_SIZE, AT(struct gw_limits, max_body_bytes), RANGE(1, GiB)},
    {"max_header", T_SIZE, AT(struct gw_limits, max_header_bytes), RANGE(1 * KiB, 1 * MiB)},
    {"max_connections", T_U32, AT(struct gw_limits, max_connections), RANGE(1, 1000000)},
    {"max_sessions", T_U32, AT(struct gw_limits, max_sessions), RANGE(1, 10000000)},
    {"max_sessions_per_user", T_U32, AT(struct gw_limits, max_sessions_per_user),
     RANGE(1, 1000000)},
    {"event_ring", T_U32, AT(struct gw_limits, event_ring), RANGE(1, 65536)},
    {"max_streams_per_session", T_U32, AT(struct gw_limits, max_streams_per_session), RANGE(1, 64)},
    {"sse_high_water", T_SIZE, AT(struct gw_limits, sse_high_water_bytes), RANGE(1 * KiB, GiB)},
    {"request_timeout", T_DURATION, AT(struct gw_limits, request_timeout_ms), RANGE(100, HOUR_MS)},
    {"idle_timeout", T_DURATION, AT(struct gw_limits, idle_timeout_ms), RANGE(SEC_MS, DAY_MS)},
    {"shutdown_grace", T_DURATION, AT(struct gw_limits, shutdown_grace_ms), RANGE(0, HOUR_MS)},
    {"max_pending_authorizations", T_U32, AT(struct gw_limits, max_pending_authorizations),
     RANGE(1, 1000000)},
};

static void limits_post(struct loader *ld, const struct node *at, void *base,
                        const struct keys_seen *ks)
{
    (void)ks;
    const struct gw_limits *l = base;
    if (l->max_sessions_per_user > l->max_sessions)
        key_error(ld, at, "max_sessions_per_user", "%u exceeds max_sessions (%u)",
                  l->max_sessions_per_user, l->max_sessions);
}

static const struct section limits_section = {FIELDS(limits_fields), limits_post, NULL};

static const struct field tls_fields[] = {
    {"cert", T_STR, AT(struct gw_server_config, tls_cert), .flags = F_REQUIRED},
    {"key", T_STR, AT(struct gw_server_config, tls_key), .flags = F_REQUIRED},
};
static const struct section tls_section = {FIELDS(tls_fields), NULL, NULL};

static const struct field server_fields[] = {
    {"listen", T_STRLIST, AT(struct gw_server_config, listen), .flags = F_NONEMPTY,
     .check = check_listen},
    {"public_url", T_STR, AT(struct gw_server_config, public_url), .flags = F_REQUIRED,
     .check = check_origin_url},
    {"tls", T_SECTION, .off = 0, .sub = &tls_section},
    {"trusted_proxies", T_CIDRS, AT2(struct gw_server_config, trusted_proxies, n_trusted_proxies)},
    {"allowed_origins", T_STRLIST, AT(struct gw_server_config, allowed_origins),
     .check = check_origin_url},
    {"allow_unauthenticated_routes", T_BOOL,
     AT(struct gw_server_config, allow_unauthenticated_routes)},
    {"limits", T_SECTION, AT(struct gw_server_config, limits), .sub = &limits_section},
};

static void server_post(struct loader *ld, const struct node *at, void *base,
                        const struct keys_seen *ks)
{
    (void)ld, (void)at, (void)ks;
    struct gw_server_config *s = base;
    s->public_url_https = s->public_url && strncasecmp(s->public_url, "https:", 6) == 0;
}

static const struct section server_section = {FIELDS(server_fields), server_post, NULL};

static const struct field redis_fields[] = {
    {"url", T_STR, AT(struct gw_store_config, redis_url), .check = check_redis_url},
    {"password", T_SECRET, AT(struct gw_store_config, redis_password), .flags = F_EMPTY_UNSET},
    {"prefix", T_STR, AT(struct gw_store_config, prefix), .flags = F_ALLOW_EMPTY},
    {"timeout", T_DURATION, AT(struct gw_store_config, timeout_ms), RANGE(10, MIN_MS)},
};
static const struct section redis_section = {FIELDS(redis_fields), NULL, NULL};

static const struct enum_name backend_names[] = {
    {"redis", GW_STORE_REDIS}, {"memory", GW_STORE_MEMORY}, {NULL, 0}};

static const struct field store_fields[] = {
    {"backend", T_ENUM, AT(struct gw_store_config, backend), .names = backend_names},
    {"redis", T_SECTION, .off = 0, .sub = &redis_section},
};
static const struct section store_section = {FIELDS(store_fields), NULL, NULL};

static const struct field claims_fields[] = {
    {"subject", T_STR, AT(struct gw_idp_claims, subject)},
    {"username", T_STR, AT(struct gw_idp_claims, username)},
    {"email", T_STR, AT(struct gw_idp_claims, email)},
    {"name", T_STR, AT(struct gw_idp_claims, name)},
    {"roles", T_STR, AT(struct gw_idp_claims, roles)},
    {"groups", T_STR, AT(struct gw_idp_claims, groups)},
};
static const struct section claims_section = {FIELDS(claims_fields), NULL, NULL};

static const struct enum_name preset_names[] = {
    {"asgardeo", GW_IDP_ASGARDEO}, {"oidc", GW_IDP_OIDC}, {NULL, 0}};
static const struct enum_name token_auth_names[] = {
    {"client_secret_basic", GW_TOKEN_AUTH_CLIENT_SECRET_BASIC},
    {"client_secret_post", GW_TOKEN_AUTH_CLIENT_SECRET_POST},
    {NULL, 0}};

static const struct field idp_fields[] = {
    {"preset", T_ENUM, AT(struct gw_idp_config, preset), .flags = F_REQUIRED,
     .names = preset_names},
    {"organization", T_STR, AT(struct gw_idp_config, organization), .check = check_organization},
    {"base_url", T_STR, AT(struct gw_idp_config, base_url), .check = check_base_url},
    {"issuer", T_STR, AT(struct gw_idp_config, issuer), .flags = F_EMPTY_UNSET,
     .check = check_issuer},
    {"client_id", T_STR, AT(struct gw_idp_config, client_id), .flags = F_REQUIRED},
    {"client_secret", T_SECRET, AT(struct gw_idp_config, client_secret), .flags = F_REQUIRED},
    {"token_auth", T_ENUM, AT(struct gw_idp_config, token_auth), .names = token_auth_names},
    {"scopes", T_STRLIST, AT(struct gw_idp_config, scopes), .flags = F_NONEMPTY,
     .check = check_scope},
    {"claims", T_SECTION, AT(struct gw_idp_config, claims), .sub = &claims_section},
    {"leeway", T_DURATION, AT(struct gw_idp_config, leeway_ms), RANGE(0, 10 * MIN_MS)},
    {"discovery_refresh", T_DURATION, AT(struct gw_idp_config, discovery_refresh_ms),
     RANGE(MIN_MS, 7 * DAY_MS)},
    {"timeout", T_DURATION, AT(struct gw_idp_config, timeout_ms), RANGE(SEC_MS, 5 * MIN_MS)},
    {"userinfo", T_BOOL, AT(struct gw_idp_config, use_userinfo)},
};

static void idp_post(struct loader *ld, const struct node *at, void *base,
                     const struct keys_seen *ks);
static const struct section idp_section = {FIELDS(idp_fields), idp_post, NULL};

/* Asgardeo's issuer is derived: <base_url>/t/<organization>/oauth2/token. */
static void idp_post_asgardeo(struct loader *ld, const struct node *at, struct gw_idp_config *idp,
                              const struct keys_seen *ks)
{
    if (!key_given(&idp_section, ks, "organization"))
        key_error(ld, at, "organization", "required for preset asgardeo");
    if (idp->issuer)
        key_error(ld, at, "issuer",
                  "is derived from base_url and organization for preset "
                  "asgardeo: remove it");
    if (idp->base_url == NULL && !key_given(&idp_section, ks, "base_url"))
        idp->base_url = xstrdup("https://api.asgardeo.io");
    if (idp->issuer == NULL && idp->organization && idp->base_url)
        idp->issuer = xasprintf("%s/t/%s/oauth2/token", idp->base_url, idp->organization);
}

static void idp_post(struct loader *ld, const struct node *at, void *base,
                     const struct keys_seen *ks)
{
    struct gw_idp_config *idp = base;
    idp->configured = true;
    if (!key_valid(&idp_section, ks, "preset"))
        return; /* reported; the preset-specific checks would only add noise */
    if (idp->preset == GW_IDP_ASGARDEO) {
        idp_post_asgardeo(ld, at, idp, ks);
    } else {
        if (!key_given(&idp_section, ks, "issuer"))
            key_error(ld, at, "issuer", "required for preset oidc");
        else if (idp->issuer == NULL && key_valid(&idp_section, ks, "issuer"))
            key_error(ld, at, "issuer", "must not be empty for preset oidc");
        if (key_given(&idp_section, ks, "organization"))
            key_error(ld, at, "organization", "is only used with preset asgardeo");
        if (key_given(&idp_section, ks, "base_url"))
            key_error(ld, at, "base_url", "is only used with preset asgardeo");
    }
    bool openid = false;
    for (size_t i = 0; i < idp->scopes.len; i++)
        openid = openid || strcmp(idp->scopes.items[i], "openid") == 0;
    if (!openid && key_valid(&idp_section, ks, "scopes"))
        key_error(ld, at, "scopes", "must include openid");
}

static const struct enum_name client_auth_names[] = {
    {"none", GW_CLIENT_AUTH_NONE},
    {"client_secret_basic", GW_CLIENT_AUTH_CLIENT_SECRET_BASIC},
    {"client_secret_post", GW_CLIENT_AUTH_CLIENT_SECRET_POST},
    {NULL, 0}};

static const struct field client_fields[] = {
    {"client_id", T_STR, AT(struct gw_static_client, client_id), .flags = F_REQUIRED},
    {"client_name", T_STR, AT(struct gw_static_client, client_name)},
    {"redirect_uris", T_STRLIST, AT(struct gw_static_client, redirect_uris),
     .flags = F_REQUIRED | F_NONEMPTY, .check = check_redirect_uri},
    {"auth", T_ENUM, AT(struct gw_static_client, auth), .names = client_auth_names},
    {"client_secret", T_SECRET, AT(struct gw_static_client, client_secret)},
};

static void client_post(struct loader *ld, const struct node *at, void *base,
                        const struct keys_seen *ks);
static const struct section client_section = {FIELDS(client_fields), client_post, NULL};

/* auth defaults to client_secret_basic when a secret is given, none otherwise. */
static void client_post(struct loader *ld, const struct node *at, void *base,
                        const struct keys_seen *ks)
{
    struct gw_static_client *c = base;
    bool secret = key_given(&client_section, ks, "client_secret");
    const char *key = map_find(at, "client_secret", false) ? "client_secret" : "client_secret_file";
    if (!key_given(&client_section, ks, "auth"))
        c->auth = secret ? GW_CLIENT_AUTH_CLIENT_SECRET_BASIC : GW_CLIENT_AUTH_NONE;
    else if (!key_valid(&client_section, ks, "auth"))
        return;
    else if (c->auth == GW_CLIENT_AUTH_NONE && secret)
        key_error(ld, at, key, "is not used with auth: none");
    else if (c->auth != GW_CLIENT_AUTH_NONE && !secret)
        key_error(ld, at, "client_secret", "required for auth %s (or client_secret_file)",
                  client_auth_names[c->auth].name);
}

static const struct field registration_fields[] = {
    {"enabled", T_BOOL, AT(struct gw_oauth_config, registration_enabled)},
    {"public_clients", T_BOOL, AT(struct gw_oauth_config, registration_public_clients)},
    {"client_ttl", T_DURATION, AT(struct gw_oauth_config, registration_client_ttl_ms),
     RANGE(MIN_MS, 3650 * DAY_MS)},
    {"rate", T_RATE,
     AT2(struct gw_oauth_config, registration_rate_count, registration_rate_window_ms)},
    {"max_body", T_SIZE, AT(struct gw_oauth_config, registration_max_body_bytes),
     RANGE(1 * KiB, 1 * MiB)},
};
static const struct section registration_section = {FIELDS(registration_fields), NULL, NULL};

static const struct field consent_fields[] = {
    {"remember", T_DURATION, AT(struct gw_oauth_config, consent_remember_ms),
     RANGE(0, 365 * DAY_MS)},
};
static const struct section consent_section = {FIELDS(consent_fields), NULL, NULL};

static const struct field oauth_fields[] = {
    {"secret", T_SECRET_BYTES, AT2(struct gw_oauth_config, secret, secret_len),
     RANGE(OAUTH_SECRET_MIN_BYTES, 0)},
    {"access_token_ttl", T_DURATION, AT(struct gw_oauth_config, access_token_ttl_ms),
     RANGE(SEC_MS, DAY_MS)},
    {"refresh_token_ttl", T_DURATION, AT(struct gw_oauth_config, refresh_token_ttl_ms),
     RANGE(SEC_MS, 365 * DAY_MS)},
    {"refresh_grace", T_DURATION, AT(struct gw_oauth_config, refresh_grace_ms),
     RANGE(0, 5 * MIN_MS)},
    {"code_ttl", T_DURATION, AT(struct gw_oauth_config, code_ttl_ms), RANGE(SEC_MS, 10 * MIN_MS)},
    {"authorize_ttl", T_DURATION, AT(struct gw_oauth_config, authorize_ttl_ms),
     RANGE(SEC_MS, HOUR_MS)},
    {"require_resource", T_BOOL, AT(struct gw_oauth_config, require_resource)},
    {"scopes", T_STRMAP, AT(struct gw_oauth_config, scopes), .check = check_scope},
    {"registration", T_SECTION, .off = 0, .sub = &registration_section},
    {"clients", T_LIST, AT2(struct gw_oauth_config, clients, n_clients), .sub = &client_section,
     .elem_size = sizeof(struct gw_static_client)},
    {"consent", T_SECTION, .off = 0, .sub = &consent_section},
};

static void oauth_post(struct loader *ld, const struct node *at, void *base,
                       const struct keys_seen *ks)
{
    (void)ks;
    const struct gw_oauth_config *o = base;
    const struct node *list = map_get(at, "clients");
    size_t old = path_push(ld, "clients");
    for (size_t i = 0; i < o->n_clients; i++) {
        for (size_t j = 0; j < i && o->clients[i].client_id; j++) {
            if (o->clients[j].client_id &&
                strcmp(o->clients[i].client_id, o->clients[j].client_id) == 0) {
                size_t old_i = path_push_index(ld, i);
                value_error(ld, list->kids[i], "client_id",
                            "duplicate client_id \"%s\" (first at line %u)",
                            o->clients[i].client_id, list->kids[j]->line);
                path_pop(ld, old_i);
                break;
            }
        }
    }
    path_pop(ld, old);
}

static const struct section oauth_section = {FIELDS(oauth_fields), oauth_post, NULL};

static const struct field identity_fields[] = {
    {"signing_key_file", T_STR, AT(struct gw_identity_config, signing_key_file)},
    {"previous_key_file", T_STR, AT(struct gw_identity_config, previous_key_file)},
    {"jwt_ttl", T_DURATION, AT(struct gw_identity_config, jwt_ttl_ms), RANGE(SEC_MS, 5 * MIN_MS)},
};
static const struct section identity_section = {FIELDS(identity_fields), NULL, NULL};

static const struct field stdio_fields[] = {
    {"command", T_STRLIST, AT(struct gw_stdio_upstream, command), .flags = F_REQUIRED | F_NONEMPTY},
    {"env", T_STRMAP, AT(struct gw_stdio_upstream, env), .flags = F_ALLOW_EMPTY,
     .check = check_env_name},
    {"env_passthrough", T_STRLIST, AT(struct gw_stdio_upstream, env_passthrough),
     .check = check_env_name},
    {"cwd", T_STR, AT(struct gw_stdio_upstream, cwd), .check = check_abs_path},
    {"idle_timeout", T_DURATION, AT(struct gw_stdio_upstream, idle_timeout_ms),
     RANGE(SEC_MS, 7 * DAY_MS)},
    {"max_processes", T_U32, AT(struct gw_stdio_upstream, max_processes), RANGE(1, 100000)},
    {"max_line", T_SIZE, AT(struct gw_stdio_upstream, max_line_bytes), RANGE(1 * KiB, GiB)},
    {"kill_grace", T_DURATION, AT(struct gw_stdio_upstream, kill_grace_ms), RANGE(0, MIN_MS)},
};
static const struct section stdio_section = {FIELDS(stdio_fields), NULL, NULL};

static const struct field http_fields[] = {
    {"url", T_STR, AT(struct gw_http_upstream, url), .flags = F_REQUIRED, .check = check_http_url},
    {"connect_timeout", T_DURATION, AT(struct gw_http_upstream, connect_timeout_ms),
     RANGE(1, 5 * MIN_MS)},
    {"timeout", T_DURATION, AT(struct gw_http_upstream, timeout_ms), RANGE(0, DAY_MS)},
    {"idle_timeout", T_DURATION, AT(struct gw_http_upstream, idle_timeout_ms),
     RANGE(SEC_MS, DAY_MS)},
};
static const struct section http_section = {FIELDS(http_fields), NULL, NULL};

static const struct field require_fields[] = {
    {"scopes", T_STRLIST, AT(struct gw_requirements, scopes), .check = check_scope},
    {"roles", T_STRLIST, AT(struct gw_requirements, roles)},
    {"groups", T_STRLIST, AT(struct gw_requirements, groups)},
};
static const struct section require_section = {FIELDS(require_fields), NULL, NULL};

static const struct field route_identity_fields[] = {
    {"env", T_BOOL, AT(struct gw_route_identity, env)},
    {"headers", T_BOOL, AT(struct gw_route_identity, headers)},
    {"jwt", T_BOOL, AT(struct gw_route_identity, jwt)},
    {"meta", T_BOOL, AT(struct gw_route_identity, meta)},
    {"idp_access_token", T_BOOL, AT(struct gw_route_identity, idp_access_token)},
};
static const struct section route_identity_section = {FIELDS(route_identity_fields), NULL, NULL};

static const struct field rule_fields[] = {
    {"match", T_STR, AT(struct gw_access_rule, match), .flags = F_REQUIRED},
    {"roles", T_STRLIST, AT(struct gw_access_rule, roles)},
    {"groups", T_STRLIST, AT(struct gw_access_rule, groups)},
    {"scopes", T_STRLIST, AT(struct gw_access_rule, scopes), .check = check_scope},
    {"deny", T_BOOL, AT(struct gw_access_rule, deny)},
};

static void rule_post(struct loader *ld, const struct node *at, void *base,
                      const struct keys_seen *ks)
{
    (void)ld, (void)ks;
    ((struct gw_access_rule *)base)->line = at->line;
}

static const struct section rule_section = {FIELDS(rule_fields), rule_post, NULL};

static const struct enum_name effect_names[] = {
    {"allow", GW_POLICY_ALLOW}, {"deny", GW_POLICY_DENY}, {NULL, 0}};

/* prompts: and resources: are {rules, default}; tools: and default: sit on the route. */
static const struct field rules_fields[] = {
    {"rules", T_LIST, AT2(struct gw_access_rules, rules, len), .sub = &rule_section,
     .elem_size = sizeof(struct gw_access_rule)},
    {"default", T_ENUM, AT(struct gw_access_rules, default_effect), .names = effect_names},
};
static const struct section rules_section = {FIELDS(rules_fields), NULL, NULL};

static const struct enum_name route_auth_names[] = {
    {"oauth", GW_ROUTE_AUTH_OAUTH}, {"none", GW_ROUTE_AUTH_NONE}, {NULL, 0}};

static const struct field route_fields[] = {
    {"name", T_STR, AT(struct gw_route_config, name), .flags = F_REQUIRED,
     .check = check_route_name},
    {"path", T_STR, AT(struct gw_route_config, path), .flags = F_REQUIRED, .check = check_url_path},
    {"description", T_STR, AT(struct gw_route_config, description)},
    {"auth", T_ENUM, AT(struct gw_route_config, auth), .names = route_auth_names},
    {"stdio", T_SECTION, AT(struct gw_route_config, stdio), .sub = &stdio_section},
    {"http", T_SECTION, AT(struct gw_route_config, http), .sub = &http_section},
    {"require", T_SECTION, AT(struct gw_route_config, require), .sub = &require_section},
    {"identity", T_SECTION, AT(struct gw_route_config, identity), .sub = &route_identity_section},
    {"tools", T_LIST, AT2(struct gw_route_config, tools.rules, tools.len), .sub = &rule_section,
     .elem_size = sizeof(struct gw_access_rule)},
    {"default", T_ENUM, AT(struct gw_route_config, tools.default_effect), .names = effect_names},
    {"prompts", T_SECTION, AT(struct gw_route_config, prompts), .sub = &rules_section},
    {"resources", T_SECTION, AT(struct gw_route_config, resources), .sub = &rules_section},
};

static void route_post(struct loader *ld, const struct node *at, void *base,
                       const struct keys_seen *ks);

static void route_release(void *base)
{
    free(((struct gw_route_config *)base)->resource_url);
}

static const struct section route_section = {FIELDS(route_fields), route_post, route_release};

static void route_post(struct loader *ld, const struct node *at, void *base,
                       const struct keys_seen *ks)
{
    struct gw_route_config *r = base;
    bool stdio = key_given(&route_section, ks, "stdio");
    bool http = key_given(&route_section, ks, "http");
    r->line = at->line;
    r->kind = http && !stdio ? GW_UPSTREAM_HTTP : GW_UPSTREAM_STDIO;
    /* A rejected auth: value must not pass for the default (oauth) in the checks
     * across sections: those would add errors about the IdP that are not real.
     * The config is discarded anyway, so the impossible value never escapes. */
    if (key_given(&route_section, ks, "auth") && !key_valid(&route_section, ks, "auth"))
        r->auth = (enum gw_route_auth) - 1;
    if (stdio && http)
        key_error(ld, at, "http", "give either stdio or http, not both");
    else if (!stdio && !http)
        node_error(ld, at, "a route needs an upstream: give stdio or http");
}

static void route_init(void *elem)
{
    struct gw_route_config *r = elem;
    r->identity = (struct gw_route_identity){.env = true, .headers = true, .jwt = true};
    r->stdio.idle_timeout_ms = 15 * MIN_MS;
    r->stdio.max_processes = 200;
    r->stdio.max_line_bytes = 4 * MiB;
    r->stdio.kill_grace_ms = 2 * SEC_MS;
    r->http.connect_timeout_ms = 5 * SEC_MS;
    r->http.timeout_ms = 60 * SEC_MS;
    r->http.idle_timeout_ms = 300 * SEC_MS;
}

static const struct enum_name level_names[] = {{"debug", GW_LOG_DEBUG},
                                               {"info", GW_LOG_INFO},
                                               {"warn", GW_LOG_WARN},
                                               {"error", GW_LOG_ERROR},
                                               {NULL, 0}};
static const struct enum_name format_names[] = {{"json", GW_LOG_FORMAT_JSON}, {NULL, 0}};

static const struct field log_fields[] = {
    {"level", T_ENUM, AT(struct gw_log_config, level), .names = level_names},
    {"format", T_ENUM, AT(struct gw_log_config, format), .names = format_names},
    {"access_log", T_BOOL, AT(struct gw_log_config, access_log)},
};
static const struct section log_section = {FIELDS(log_fields), NULL, NULL};

static const struct field metrics_fields[] = {
    {"enabled", T_BOOL, AT(struct gw_metrics_config, enabled)},
    {"path", T_STR, AT(struct gw_metrics_config, path), .check = check_url_path},
    {"listen", T_STR, AT(struct gw_metrics_config, listen), .check = check_listen},
};
static const struct section metrics_section = {FIELDS(metrics_fields), NULL, NULL};

static const struct field root_fields[] = {
    {"server", T_SECTION, AT(struct gw_config, server), .flags = F_REQUIRED,
     .sub = &server_section},
    {"store", T_SECTION, AT(struct gw_config, store), .sub = &store_section},
    {"idp", T_SECTION, AT(struct gw_config, idp), .sub = &idp_section},
    {"oauth", T_SECTION, AT(struct gw_config, oauth), .sub = &oauth_section},
    {"identity", T_SECTION, AT(struct gw_config, identity), .sub = &identity_section},
    {"routes", T_LIST, AT2(struct gw_config, routes, n_routes), .sub = &route_section,
     .elem_size = sizeof(struct gw_route_config), .init = route_init},
    {"log", T_SECTION, AT(struct gw_config, log), .sub = &log_section},
    {"metrics", T_SECTION, AT(struct gw_config, metrics), .sub = &metrics_section},
};
static const struct section root_section = {FIELDS(root_fields), NULL, NULL};

/* ---- pass 3: checks across sections -------------------------------------- */

/* Name and path unique; no route path is another's legacy /sse or /messages endpoint. */
static void route_check_unique(struct loader *ld, const struct gw_config *cfg, size_t i,
                               const struct node *rn, const struct node *seq)
{
    const struct gw_route_config *r = &cfg->routes[i];
    for (size_t j = 0; j < i; j++) {
        const struct gw_route_config *o = &cfg->routes[j];
        unsigned first = seq->kids[j]->line;
        if (r->name && o->name && strcmp(r->name, o->name) == 0)
            value_error(ld, rn, "name", "duplicate route name \"%s\" (first at line %u)", r->name,
                        first);
        if (!r->path || !o->path)
            continue;
        size_t n = strlen(o->path);
        if (strcmp(r->path, o->path) == 0)
            value_error(ld, rn, "path", "duplicate route path %s (first at line %u)", r->path,
                        first);
        else if (strncmp(r->path, o->path, n) == 0 &&
                 (strcmp(r->path + n, "/sse") == 0 || strcmp(r->path + n, "/messages") == 0))
            value_error(ld, rn, "path", "%s is the legacy SSE endpoint of route \"%s\" (line %u)",
                        r->path, o->name ? o->name : "", first);
        else if (strncmp(o->path, r->path, strlen(r->path)) == 0 &&
                 (strcmp(o->path + strlen(r->path), "/sse") == 0 ||
                  strcmp(o->path + strlen(r->path), "/messages") == 0))
            value_error(ld, rn, "path", "its legacy SSE endpoint %s is route \"%s\" (line %u)",
                        o->path, o->name ? o->name : "", first);
    }
}

static const char *first_public_listener(const struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->server.listen.len; i++) {
        bool loopback;
        if (parse_listen(cfg->server.listen.items[i], &loopback) == NULL && !loopback)
            return cfg->server.listen.items[i];
    }
    return NULL;
}

static void route_check_one(struct loader *ld, struct gw_config *cfg, struct gw_route_config *r,
                            const struct node *rn)
{
    const struct gw_metrics_config *m = &cfg->metrics;
    const char *listener = first_public_listener(cfg);
    if (r->path && m->enabled && m->listen == NULL && m->path && strcmp(r->path, m->path) == 0)
        value_error(ld, rn, "path",
                    "%s is the metrics path (move metrics.path or give "
                    "metrics.listen)",
                    r->path);
    if (r->auth == GW_ROUTE_AUTH_NONE && listener && !cfg->server.allow_unauthenticated_routes)
        value_error(ld, rn, "auth",
                    "auth: none on the non-loopback listener %s needs "
                    "server.allow_unauthenticated_routes: true",
                    listener);
    if (r->path && cfg->server.public_url)
        r->resource_url = xasprintf("%s%s", cfg->server.public_url, r->path);
}

static void check_routes(struct loader *ld, struct gw_config *cfg, const struct node *root)
{
    const struct node *seq = map_get(root, "routes");
    for (size_t i = 0; i < cfg->n_routes; i++) {
        size_t old = path_push(ld, "routes");
        path_push_index(ld, i);
        if (seq->kids[i]->kind == NODE_MAP) {
            route_check_unique(ld, cfg, i, seq->kids[i], seq);
            route_check_one(ld, cfg, &cfg->routes[i], seq->kids[i]);
        }
        path_pop(ld, old);
    }
}

/* An `auth: oauth` route (the default) needs the IdP and the server secret. */
static void check_oauth_needs(struct loader *ld, const struct gw_config *cfg,
                              const struct node *root)
{
    const struct gw_route_config *r = NULL;
    for (size_t i = 0; i < cfg->n_routes && r == NULL; i++)
        if (cfg->routes[i].auth == GW_ROUTE_AUTH_OAUTH)
            r = &cfg->routes[i];
    if (r == NULL)
        return;
    const char *name = r->name ? r->name : "";
    if (map_get(root, "idp") == NULL)
        key_error(ld, root, "idp", "required: route \"%s\" uses auth: oauth", name);
    const struct node *oauth = map_get(root, "oauth");
    if (map_find(oauth, "secret", false) || map_find(oauth, "secret_file", false))
        return;
    size_t old = path_push(ld, "oauth");
    key_error(ld, oauth ? oauth : root, "secret_file",
              "required: route \"%s\" uses auth: oauth (give oauth.secret_file or oauth.secret)",
              name);
    path_pop(ld, old);
}

/* ---- defaults and freeing ------------------------------------------------ */

static void string_list_set(struct gw_string_list *l, const char *const *items, size_t n)
{
    l->items = xcalloc(n, sizeof(*l->items));
    for (l->len = 0; l->len < n; l->len++)
        l->items[l->len] = xstrdup(items[l->len]);
}

static void config_defaults_server_store(struct gw_config *cfg)
{
    static const char *const listen[] = {"127.0.0.1:8080"};
    string_list_set(&cfg->server.listen, listen, 1);
    cfg->server.limits = (struct gw_limits){
        .max_body_bytes = 4 * MiB,
        .max_header_bytes = 16 * KiB,
        .max_connections = 20000,
        .max_sessions = 10000,
        .max_sessions_per_user = 20,
        .event_ring = 256,
        .max_streams_per_session = 4,
        .sse_high_water_bytes = 1 * MiB,
        .request_timeout_ms = 30 * SEC_MS,
        .idle_timeout_ms = 120 * SEC_MS,
        .shutdown_grace_ms = 10 * SEC_MS,
        .max_pending_authorizations = 100,
    };
    cfg->store.backend = GW_STORE_REDIS;
    cfg->store.redis_url = xstrdup("redis://127.0.0.1:6379/0");
    cfg->store.prefix = xstrdup("mcpgate:");
    cfg->store.timeout_ms = 2 * SEC_MS;
}

static void config_defaults_idp_oauth(struct gw_config *cfg)
{
    static const char *const scopes[] = {"openid", "profile", "email", "roles"};
    struct gw_idp_config *idp = &cfg->idp;
    idp->token_auth = GW_TOKEN_AUTH_CLIENT_SECRET_BASIC;
    string_list_set(&idp->scopes, scopes, 4);
    idp->claims = (struct gw_idp_claims){xstrdup("sub"),  xstrdup("username"), xstrdup("email"),
                                         xstrdup("name"), xstrdup("roles"),    xstrdup("groups")};
    idp->leeway_ms = 60 * SEC_MS;
    idp->discovery_refresh_ms = HOUR_MS;
    idp->timeout_ms = 10 * SEC_MS;
    idp->use_userinfo = true;

    struct gw_oauth_config *o = &cfg->oauth;
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
}

static void config_defaults(struct gw_config *cfg)
{
    config_defaults_server_store(cfg);
    config_defaults_idp_oauth(cfg);
    cfg->identity.jwt_ttl_ms = 5 * MIN_MS;
    cfg->log.level = GW_LOG_INFO;
    cfg->log.format = GW_LOG_FORMAT_JSON;
    cfg->log.access_log = true;
    cfg->metrics.enabled = true;
    cfg->metrics.path = xstrdup("/metrics");
}

static void section_free(const struct section *sec, void *base);

static void field_free(const struct field *f, void *base)
{
    char *slot = (char *)base + f->off;
    switch (f->type) {
    case T_STR: free(*(char **)slot); break;
    case T_SECRET: free_secret(*(char **)slot); break;
    case T_SECRET_BYTES:
        if (*(unsigned char **)slot)
            OPENSSL_cleanse(*(unsigned char **)slot, *(size_t *)((char *)base + f->off2));
        free(*(unsigned char **)slot);
        break;
    case T_STRLIST: string_list_free((struct gw_string_list *)slot); break;
    case T_STRMAP: {
        struct gw_string_map *m = (struct gw_string_map *)slot;
        for (size_t i = 0; i < m->len; i++)
            free(m->keys[i]), free(m->values[i]);
        free(m->keys), free(m->values);
        break;
    }
    case T_CIDRS: free(*(struct net_cidr **)slot); break;
    case T_SECTION: section_free(f->sub, slot); break;
    case T_LIST: {
        char *arr = *(char **)slot;
        size_t n = *(size_t *)((char *)base + f->off2);
        for (size_t i = 0; i < n; i++)
            section_free(f->sub, arr + i * f->elem_size);
        free(arr);
        break;
    }
    default: break;
    }
}

/* Frees what the table names (and sec->release the derived rest); plain values need nothing. */
static void section_free(const struct section *sec, void *base)
{
    for (size_t i = 0; i < sec->n_fields; i++)
        field_free(&sec->fields[i], base);
    if (sec->release)
        sec->release(base);
}

void gw_config_free(struct gw_config *cfg)
{
    if (cfg == NULL)
        return;
    section_free(&root_section, cfg);
    free(cfg->source_path);
    free(cfg);
}

void gw_config_errors_clear(struct gw_config_errors *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->len; i++)
        free(errs->messages[i]);
    free(errs->messages);
    errs->messages = NULL;
    errs->len = 0;
}

/* ---- loading ------------------------------------------------------------- */

/* line * 2^32 + column of a message "name:line:column: …" this loader wrote. */
static uint64_t message_position(const struct loader *ld, const char *msg)
{
    char *end;
    const char *p = msg + strlen(ld->name) + 1;
    uint64_t line = strtoull(p, &end, 10);
    return (line << 32) | strtoull(end + 1, NULL, 10);
}

/* Checks across sections run last; sort so messages read in file order (stable). */
static void sort_errors(const struct loader *ld, size_t from)
{
    char **m = ld->errs->messages;
    for (size_t i = from + 1; i < ld->errs->len; i++) {
        char *cur = m[i];
        uint64_t pos = message_position(ld, cur);
        size_t j = i;
        for (; j > from && message_position(ld, m[j - 1]) > pos; j--)
            m[j] = m[j - 1];
        m[j] = cur;
    }
}

static struct gw_config *load(struct loader *ld, const char *source)
{
    size_t errors_before = ld->errs->len;
    struct node *root = build_tree(ld);
    if (root == NULL)
        return NULL;
    struct gw_config *cfg = xcalloc(1, sizeof(*cfg));
    cfg->source_path = xstrdup(source);
    config_defaults(cfg);
    if (!node_is_null(root) && root->kind != NODE_MAP)
        node_error(ld, root, "the configuration must be a mapping, found %s", node_kind_name(root));
    else if (walk_section(ld, &root_section, root, cfg)) {
        check_routes(ld, cfg, root);
        check_oauth_needs(ld, cfg, root);
    }
    node_free(root);
    sort_errors(ld, errors_before);
    if (ld->errs->len > errors_before) {
        gw_config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct gw_config *gw_config_load_string(const char *yaml, size_t len, const char *name,
                                        struct gw_config_errors *errs)
{
    struct loader ld = {.name = name, .errs = errs, .input = yaml, .input_len = len};
    return load(&ld, name);
}

struct gw_config *gw_config_load(const char *path, struct gw_config_errors *errs)
{
    struct buf text = {0};
    char chunk[8192];
    struct gw_config *cfg = NULL;
    FILE *f = fopen(path, "re");
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0 && text.len <= CONFIG_MAX_FILE_BYTES)
        buf_add(&text, chunk, n);
    /* no line or column to give: the message is "file: problem" */
    if (f == NULL || ferror(f) || text.len > CONFIG_MAX_FILE_BYTES) {
        int err = errno;
        errs->messages = xrealloc(errs->messages, (errs->len + 1) * sizeof(*errs->messages));
        errs->messages[errs->len++] =
            xasprintf("%s: cannot read: %s", path,
                      text.len > CONFIG_MAX_FILE_BYTES ? "larger than 16 MiB" : strerror(err));
    } else {
        struct loader ld = {
            .name = path, .errs = errs, .input = text.data ? text.data : "", .input_len = text.len};
        cfg = load(&ld, path);
    }
    if (f)
        fclose(f);
    buf_wipe(&text);
    return cfg;
}

/* ---- lookups ------------------------------------------------------------- */

const struct gw_route_config *gw_config_route_by_path(const struct gw_config *cfg, const char *path)
{
    for (size_t i = 0; cfg && path && i < cfg->n_routes; i++)
        if (strcmp(cfg->routes[i].path, path) == 0)
            return &cfg->routes[i];
    return NULL;
}

const struct gw_route_config *gw_config_route_by_name(const struct gw_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_routes; i++)
        if (strcmp(cfg->routes[i].name, name) == 0)
            return &cfg->routes[i];
    return NULL;
}

/* IPv4-mapped IPv6 peers (::ffff:a.b.c.d, from dual-stack listeners) match IPv4 networks. */

/* ---- check-config summary ------------------------------------------------ */

/* The URL with the password of its user info (redis://user:PASSWORD@host) masked. */
static char *mask_url_password(const char *url)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    const char *at = memchr(auth, '@', strcspn(auth, "/?#"));
    if (at == NULL)
        return xstrdup(url);
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    const char *keep_end = colon ? colon + 1 : auth;
    return xasprintf("%.*s***%s", (int)(keep_end - url), url, at);
}

static void print_route(const struct gw_route_config *r, FILE *out)
{
    fprintf(out, "  %s %s\n", r->name, r->path);
    if (r->kind == GW_UPSTREAM_STDIO) {
        fprintf(out, "    upstream: stdio:");
        for (size_t i = 0; i < r->stdio.command.len; i++)
            fprintf(out, " %s", r->stdio.command.items[i]);
        fputc('\n', out);
    } else {
        fprintf(out, "    upstream: http %s\n", r->http.url);
    }
    fprintf(out, "    auth: %s\n", r->auth == GW_ROUTE_AUTH_NONE ? "none" : "oauth");
    fprintf(out, "    tools: %zu rule%s, default %s\n", r->tools.len, r->tools.len == 1 ? "" : "s",
            r->tools.default_effect == GW_POLICY_DENY ? "deny" : "allow");
}

void gw_config_print_summary(const struct gw_config *cfg, FILE *out)
{
    fprintf(out, "ok\nconfig: %s\nlisten:", cfg->source_path);
    for (size_t i = 0; i < cfg->server.listen.len; i++)
        fprintf(out, " %s", cfg->server.listen.items[i]);
    fprintf(out, "\npublic_url: %s\n", cfg->server.public_url);
    if (cfg->server.tls_cert)
        fprintf(out, "tls: cert %s, key %s\n", cfg->server.tls_cert, cfg->server.tls_key);
    else
        fprintf(out, "tls: off\n");
    if (cfg->store.backend == GW_STORE_MEMORY) {
        fprintf(out, "store: memory (single instance, lost on restart)\n");
    } else {
        char *url = mask_url_password(cfg->store.redis_url);
        fprintf(out, "store: redis %s (prefix \"%s\"%s)\n", url, cfg->store.prefix,
                cfg->store.redis_password ? ", password set" : "");
        free(url);
    }
    if (cfg->idp.configured)
        fprintf(out, "idp: %s, issuer %s, client_id %s\n", preset_names[cfg->idp.preset].name,
                cfg->idp.issuer, cfg->idp.client_id);
    else
        fprintf(out, "idp: none\n");
    fprintf(out, "routes: %zu\n", cfg->n_routes);
    for (size_t i = 0; i < cfg->n_routes; i++)
        print_route(&cfg->routes[i], out);
}
