/*
 * conf: the engine behind conf/conf.h. YAML text → a tree of our own →
 * the caller's struct, by descriptor tables; no table of the gateway's keys
 * lives here.
 *
 * How it works, in three passes:
 *  1. libyaml's event parser builds a small tree of our own (struct
 *     conf_node) that keeps each node's position, style (plain or quoted),
 *     anchor and tag. We do not use libyaml's document loader because it
 *     resolves aliases and forgets anchors, duplicate keys and quoting, all
 *     of which we reject or need for messages.
 *  2. A walker reads the tree against descriptor tables (struct
 *     conf_section): one table per YAML mapping, one row per key with its
 *     type, range and target field. Unknown keys, duplicates, anchors,
 *     aliases, tags, YAML 1.1 booleans and wrong types are reported here,
 *     and ${VAR} expansion and secret files are handled here. Each table may
 *     have a `post` hook for checks between keys of one mapping.
 *  3. The caller's root check, for rules across sections; then the messages
 *     are sorted into file order.
 *
 * Ownership: the caller's struct owns every string and array the walk puts
 * in it; the same descriptor tables drive conf_section_free(). Secrets are
 * wiped with OPENSSL_cleanse, and so is the text of every YAML scalar and
 * every buffer a file passed through, since secrets may be written inline.
 */
#include "conf/conf.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <yaml.h>

#include "common/net.h"
#include "common/panic.h"
#include "common/xalloc.h"

#define CONFIG_MAX_FILE_BYTES (16u << 20) /* a config file is never this large */
#define SECRET_MAX_FILE_BYTES (64u << 10)
#define TREE_MAX_DEPTH 32 /* libyaml 0.2.5 has no nesting limit of its own */
#define KEY_PATH_MAX 512

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

struct conf_node {
    enum node_kind kind;
    unsigned line, column; /* 1-based */
    char *text;            /* owned: scalar value or alias name */
    size_t text_len;
    bool plain;              /* unquoted scalar */
    char *anchor;            /* owned, NULL when none */
    char *tag;               /* owned, NULL when none */
    struct conf_node **kids; /* owned: sequence items, or map key, value, key, value… */
    size_t n_kids, cap_kids;
};

static size_t map_len(const struct conf_node *m)
{
    return m->n_kids / 2;
}

static const struct conf_node *map_key(const struct conf_node *m, size_t i)
{
    return m->kids[2 * i];
}

static const struct conf_node *map_val(const struct conf_node *m, size_t i)
{
    return m->kids[2 * i + 1];
}

/* The first pair with this scalar key (later duplicates are reported and ignored). */
static const struct conf_node *map_find(const struct conf_node *m, const char *key, bool want_value)
{
    if (m == NULL || m->kind != NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map_len(m); i++) {
        const struct conf_node *k = map_key(m, i);
        if (k->kind == NODE_SCALAR && strcmp(k->text, key) == 0)
            return want_value ? map_val(m, i) : k;
    }
    return NULL;
}

const struct conf_node *conf_map_get(const struct conf_node *map, const char *key)
{
    return map_find(map, key, true);
}

bool conf_map_has(const struct conf_node *map, const char *key)
{
    return map_find(map, key, false) != NULL;
}

unsigned conf_node_line(const struct conf_node *n)
{
    return n->line;
}

bool conf_node_is_map(const struct conf_node *n)
{
    return n != NULL && n->kind == NODE_MAP;
}

size_t conf_seq_len(const struct conf_node *seq)
{
    return seq != NULL && seq->kind == NODE_SEQ ? seq->n_kids : 0;
}

const struct conf_node *conf_seq_item(const struct conf_node *seq, size_t i)
{
    return i < conf_seq_len(seq) ? seq->kids[i] : NULL;
}

static void node_free(struct conf_node *n)
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

static void node_append(struct conf_node *parent, struct conf_node *kid)
{
    if (parent->n_kids == parent->cap_kids) {
        parent->cap_kids = parent->cap_kids ? 2 * parent->cap_kids : 8;
        parent->kids = xrealloc(parent->kids, parent->cap_kids * sizeof(*parent->kids));
    }
    parent->kids[parent->n_kids++] = kid;
}

/* ---- the loader: error list and the key path of what is being read ---- */

struct conf_loader {
    const char *name;              /* borrowed: the file name in messages */
    struct gw_config_errors *errs; /* borrowed */
    char path[KEY_PATH_MAX];       /* "routes[1].stdio.command" */
    size_t path_len;
    const char *input; /* borrowed: the YAML text, for reader-error positions */
    size_t input_len;
};

__attribute__((format(printf, 4, 0))) static void
verror_at(struct conf_loader *ld, unsigned line, unsigned column, const char *fmt, va_list ap)
{
    char *msg = xvasprintf(fmt, ap);
    struct gw_config_errors *e = ld->errs;
    e->messages = xrealloc(e->messages, (e->len + 1) * sizeof(*e->messages));
    e->messages[e->len++] = xasprintf("%s:%u:%u: %s: %s", ld->name, line, column,
                                      ld->path_len ? ld->path : "(root)", msg);
    free(msg);
}

__attribute__((format(printf, 4, 5))) static void error_at(struct conf_loader *ld, unsigned line,
                                                           unsigned column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_at(ld, line, column, fmt, ap);
    va_end(ap);
}

/* An error located at node n, under the current key path. */
void conf_node_error(struct conf_loader *ld, const struct conf_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_at(ld, n ? n->line : 1, n ? n->column : 1, fmt, ap);
    va_end(ap);
}

static size_t path_append(struct conf_loader *ld, const char *fmt, const char *s, size_t i)
{
    size_t old = ld->path_len;
    size_t room = sizeof(ld->path) - old;
    int n = s ? snprintf(ld->path + old, room, fmt, s) : snprintf(ld->path + old, room, fmt, i);
    ld->path_len = (n < 0 || (size_t)n >= room) ? sizeof(ld->path) - 1 : old + (size_t)n;
    return old;
}

/* Pushes a key; returns the length to restore with conf_path_pop. */
size_t conf_path_push(struct conf_loader *ld, const char *key)
{
    return path_append(ld, ld->path_len ? ".%s" : "%s", key, 0);
}

size_t conf_path_push_index(struct conf_loader *ld, size_t i)
{
    return path_append(ld, "[%zu]", NULL, i);
}

void conf_path_pop(struct conf_loader *ld, size_t old)
{
    ld->path_len = old;
    ld->path[old] = '\0';
}

/* ---- pass 1: libyaml events → tree -------------------------------------- */

static void syntax_error(struct conf_loader *ld, const yaml_parser_t *p)
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

static bool next_event(struct conf_loader *ld, yaml_parser_t *p, yaml_event_t *ev)
{
    if (yaml_parser_parse(p, ev))
        return true;
    syntax_error(ld, p);
    return false;
}

static struct conf_node *node_from_event(const yaml_event_t *ev)
{
    struct conf_node *n = xcalloc(1, sizeof(*n));
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

static struct conf_node *build_node(struct conf_loader *ld, yaml_parser_t *p, yaml_event_t *ev,
                                    unsigned depth);

/* Reads the items of a sequence or mapping up to its end event. */
static bool build_children(struct conf_loader *ld, yaml_parser_t *p, struct conf_node *n,
                           unsigned depth)
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
            conf_path_push_index(ld, n->n_kids);
        else if (n->n_kids % 2 == 1 && n->kids[n->n_kids - 1]->kind == NODE_SCALAR)
            conf_path_push(ld, n->kids[n->n_kids - 1]->text);
        struct conf_node *kid = build_node(ld, p, &ev, depth + 1);
        conf_path_pop(ld, old);
        if (kid == NULL)
            return false;
        node_append(n, kid);
    }
}

/* Builds the node that starts with ev (consumed). NULL after a reported error. */
static struct conf_node *build_node(struct conf_loader *ld, yaml_parser_t *p, yaml_event_t *ev,
                                    unsigned depth)
{
    if (depth > TREE_MAX_DEPTH) {
        error_at(ld, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                 "nested deeper than %d levels", TREE_MAX_DEPTH);
        yaml_event_delete(ev);
        return NULL;
    }
    struct conf_node *n = node_from_event(ev);
    bool container = ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT;
    yaml_event_delete(ev);
    if (container && !build_children(ld, p, n, depth)) {
        node_free(n);
        return NULL;
    }
    return n;
}

/* Expects one event of this type and drops it. */
static bool expect_event(struct conf_loader *ld, yaml_parser_t *p, yaml_event_type_t type,
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
static struct conf_node *build_tree(struct conf_loader *ld)
{
    yaml_parser_t p;
    yaml_event_t ev;
    struct conf_node *root = NULL;
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

static const char *node_kind_name(const struct conf_node *n)
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
static bool node_is_null(const struct conf_node *n)
{
    if (n->kind != NODE_SCALAR || !n->plain || n->anchor || n->tag)
        return false;
    return n->text[0] == '\0' || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
           strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}

/* Anchors, aliases and tags are refused everywhere: a config must read as it looks. */
static bool node_usable(struct conf_loader *ld, const struct conf_node *n)
{
    if (n->kind == NODE_ALIAS)
        conf_node_error(ld, n, "aliases (*%s) are not allowed", n->text);
    else if (n->anchor)
        conf_node_error(ld, n, "anchors (&%s) are not allowed", n->anchor);
    else if (n->tag)
        conf_node_error(ld, n, "tags (%s) are not allowed", n->tag);
    else
        return true;
    return false;
}

static bool expect_kind(struct conf_loader *ld, const struct conf_node *n, enum node_kind kind,
                        const char *what)
{
    if (!node_usable(ld, n))
        return false;
    if (n->kind == kind)
        return true;
    if (n->kind == NODE_SCALAR)
        conf_node_error(ld, n, "expected %s, found \"%.40s\"", what, n->text);
    else
        conf_node_error(ld, n, "expected %s, found %s", what, node_kind_name(n));
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
static bool expand_ref(struct conf_loader *ld, const struct conf_node *at, const char *ref,
                       size_t n, struct buf *out)
{
    const char *dflt = memmem(ref, n, ":-", 2);
    size_t name_len = dflt ? (size_t)(dflt - ref) : n;
    if (!is_var_name(ref, name_len)) {
        conf_node_error(ld, at, "invalid reference ${%.*s}: use ${NAME} or ${NAME:-default}",
                        (int)n, ref);
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
        conf_node_error(ld, at,
                        "environment variable %s is not set (write ${%s:-default} to give a "
                        "default)",
                        name, name);
        ok = false;
    }
    free(name);
    return ok;
}

/* The scalar with ${VAR}, ${VAR:-default} and $$ expanded; NULL after a reported error. */
static char *expand_env(struct conf_loader *ld, const struct conf_node *n)
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
                conf_node_error(ld, n, "unterminated ${ (missing '}')");
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
static char *scalar_text(struct conf_loader *ld, const struct conf_node *n, const char *what)
{
    if (!expect_kind(ld, n, NODE_SCALAR, what))
        return NULL;
    if (strlen(n->text) != n->text_len) {
        conf_node_error(ld, n, "contains a NUL character");
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

/* ---- checks without module policy: each reports its own error ----------- */

/* RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E */
bool conf_check_scope(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    for (const char *c = v; *c; c++) {
        if (*c < 0x21 || *c > 0x7e || *c == '"' || *c == '\\') {
            conf_node_error(ld, at,
                            "\"%s\" is not a valid scope (no spaces, quotes or backslashes)", v);
            return false;
        }
    }
    return true;
}

bool conf_check_env_name(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    if (is_var_name(v, strlen(v)))
        return true;
    conf_node_error(ld, at, "\"%s\" is not a valid environment variable name", v);
    return false;
}

bool conf_check_abs_path(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    if (v[0] == '/')
        return true;
    conf_node_error(ld, at, "\"%s\" must be an absolute path", v);
    return false;
}

const char *conf_path_problem(const char *p)
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

bool conf_check_url_path(struct conf_loader *ld, const struct conf_node *at, const char *v)
{
    const char *why = conf_path_problem(v);
    if (why)
        conf_node_error(ld, at, "\"%s\" %s", v, why);
    return why == NULL;
}

/* ---- descriptor tables: lookups for hooks -------------------------------- */

static int field_index(const struct conf_section *sec, const char *key)
{
    for (size_t i = 0; i < sec->n_fields; i++)
        if (strcmp(sec->fields[i].key, key) == 0)
            return (int)i;
    GW_PANIC("a post hook named a key its own table lacks"); /* a bug, not bad input */
}

bool conf_key_given(const struct conf_section *sec, const struct conf_keys_seen *ks,
                    const char *key)
{
    return ks->given & (1ull << field_index(sec, key));
}

bool conf_key_valid(const struct conf_section *sec, const struct conf_keys_seen *ks,
                    const char *key)
{
    return ks->valid & (1ull << field_index(sec, key));
}

const char *conf_enum_name(const struct conf_enum_name *names, int value)
{
    for (const struct conf_enum_name *e = names; e->name; e++)
        if (e->value == value)
            return e->name;
    return "";
}

static bool is_secret_type(enum conf_field_type t)
{
    return t == CONF_SECRET || t == CONF_SECRET_BYTES;
}

/* ---- setters: one per field type; false after a reported error ---------- */

static bool walk_section(struct conf_loader *ld, const struct conf_section *sec,
                         const struct conf_node *map, void *base);

/* Reads a string value with the field's empty-value rule and check. *out NULL: unset. */
static bool read_string(struct conf_loader *ld, const struct conf_field *f,
                        const struct conf_node *n, char **out)
{
    *out = NULL;
    if (n->kind == NODE_SCALAR && n->plain && !n->anchor && !n->tag && is_yaml11_bool(n->text)) {
        conf_node_error(ld, n,
                        "unquoted %s is a YAML 1.1 boolean: quote it (\"%s\") if you mean the "
                        "string",
                        n->text, n->text);
        return false;
    }
    char *s = node_is_null(n) ? xstrdup("") : scalar_text(ld, n, "a string");
    if (s == NULL)
        return false;
    if (s[0] == '\0' && !(f->flags & CONF_ALLOW_EMPTY)) {
        free(s);
        if (f->flags & CONF_EMPTY_UNSET)
            return true;
        conf_node_error(ld, n, "must not be empty");
        return false;
    }
    if (s[0] != '\0' && f->check && !f->check(ld, n, s)) {
        free_secret(s);
        return false;
    }
    *out = s;
    return true;
}

static bool set_str(struct conf_loader *ld, const struct conf_field *f, const struct conf_node *n,
                    char **slot)
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
static char *read_secret_file(struct conf_loader *ld, const struct conf_node *at, const char *path,
                              bool text, size_t *len)
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
        conf_node_error(ld, at, "cannot read %s: %s", path, why);
        goto fail;
    }
    for (ssize_t r; (r = read(fd, chunk, sizeof(chunk))) != 0;) {
        if (r < 0 || b.len + (size_t)r > SECRET_MAX_FILE_BYTES) {
            conf_node_error(ld, at, "cannot read %s: %s", path,
                            r < 0 ? strerror(errno) : "too large");
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
static char *read_secret(struct conf_loader *ld, const struct conf_field *f,
                         const struct conf_node *n, bool from_file, size_t *len, bool *ok)
{
    static const struct conf_field path_field = {.key = "file", .type = CONF_STR};
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
    s = read_secret_file(ld, n, path, f->type == CONF_SECRET, len);
    if (s && f->type == CONF_SECRET && (strlen(s) != *len || *len == 0)) {
        conf_node_error(ld, n, *len ? "%s contains a NUL byte" : "%s is empty", path);
        OPENSSL_cleanse(s, *len);
        free(s);
        s = NULL;
    }
    free(path);
    *ok = s != NULL;
    return s;
}

static bool set_secret(struct conf_loader *ld, const struct conf_field *f,
                       const struct conf_node *n, void *base, bool from_file)
{
    size_t len = 0;
    bool ok;
    char *s = read_secret(ld, f, n, from_file, &len, &ok);
    if (s == NULL)
        return ok;
    if (f->type == CONF_SECRET_BYTES && len < f->min) {
        conf_node_error(ld, n,
                        from_file ? "the secret file holds %zu bytes; at least %llu are needed"
                                  : "is %zu bytes long; at least %llu are needed",
                        len, (unsigned long long)f->min);
        OPENSSL_cleanse(s, len);
        free(s);
        return false;
    }
    void *slot = (char *)base + f->off;
    if (f->type == CONF_SECRET) {
        free_secret(*(char **)slot);
        *(char **)slot = s;
    } else {
        *(unsigned char **)slot = (unsigned char *)s;
        *(size_t *)((char *)base + f->off2) = len;
    }
    return true;
}

static bool set_bool(struct conf_loader *ld, const struct conf_node *n, bool *slot)
{
    char *s = scalar_text(ld, n, "true or false");
    bool ok = s && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0);
    if (ok)
        *slot = strcmp(s, "true") == 0;
    else if (s && is_yaml11_bool(s))
        conf_node_error(ld, n, "\"%s\" is a YAML 1.1 boolean: write true or false", s);
    else if (s)
        conf_node_error(ld, n, "expected true or false, found \"%.40s\"", s);
    free(s);
    return ok;
}

static void fmt_range(const struct conf_field *f, char *lo, char *hi, size_t size)
{
    if (f->type == CONF_DURATION) {
        fmt_duration(f->min, lo, size);
        fmt_duration(f->max, hi, size);
    } else if (f->type == CONF_SIZE) {
        fmt_size(f->min, lo, size);
        fmt_size(f->max, hi, size);
    } else {
        snprintf(lo, size, "%llu", (unsigned long long)f->min);
        snprintf(hi, size, "%llu", (unsigned long long)f->max);
    }
}

/* Numbers, durations and sizes share the range check and its message. */
static bool set_number(struct conf_loader *ld, const struct conf_field *f,
                       const struct conf_node *n, void *slot)
{
    static const char *const what[] = {
        [CONF_U32] = "an integer", [CONF_DURATION] = "a duration", [CONF_SIZE] = "a size"};
    char *s = scalar_text(ld, n, what[f->type]);
    uint64_t v = 0;
    char lo[32], hi[32];
    bool ok = false;
    if (s == NULL)
        return false;
    if (f->type == CONF_DURATION && s[0] && strspn(s, "0123456789") == strlen(s))
        conf_node_error(ld, n, "\"%s\" has no unit: write e.g. \"%ss\" (units: ms, s, m, h, d)", s,
                        s);
    else if (f->type == CONF_DURATION && gw_parse_duration_ms(s, &v) < 0)
        conf_node_error(ld, n, "invalid duration \"%.40s\" (write e.g. 250ms, 60s, 15m, 1h, 30d)",
                        s);
    else if (f->type == CONF_SIZE && gw_parse_size_bytes(s, &v) < 0)
        conf_node_error(ld, n, "invalid size \"%.40s\" (write e.g. 512, 64KiB, 4MiB, 1GiB, 10kB)",
                        s);
    else if (f->type == CONF_U32 && (parse_digits(s, &v) == 0 || s[strspn(s, "0123456789")]))
        conf_node_error(ld, n, "expected an integer, found \"%.40s\"", s);
    else if (v < f->min || v > f->max) {
        fmt_range(f, lo, hi, sizeof(lo));
        conf_node_error(ld, n, "%s is out of range: must be %s to %s", s, lo, hi);
    } else
        ok = true;
    if (ok && f->type == CONF_U32)
        *(uint32_t *)slot = (uint32_t)v;
    else if (ok)
        *(uint64_t *)slot = v;
    free(s);
    return ok;
}

static bool set_enum(struct conf_loader *ld, const struct conf_field *f, const struct conf_node *n,
                     int *slot)
{
    char *s = scalar_text(ld, n, "a string");
    if (s == NULL)
        return false;
    for (const struct conf_enum_name *e = f->names; e->name; e++) {
        if (strcmp(s, e->name) == 0) {
            *slot = e->value;
            free(s);
            return true;
        }
    }
    struct buf list = {0};
    buf_add(&list, "", 0);
    for (const struct conf_enum_name *e = f->names; e->name; e++) {
        if (e != f->names)
            buf_add(&list, ", ", 2);
        buf_add(&list, e->name, strlen(e->name));
    }
    conf_node_error(ld, n, "\"%.40s\" is not one of: %s", s, list.data);
    buf_wipe(&list);
    free(s);
    return false;
}

static bool set_rate(struct conf_loader *ld, const struct conf_field *f, const struct conf_node *n,
                     void *base)
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
        conf_node_error(ld, n,
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

static bool set_string_list(struct conf_loader *ld, const struct conf_field *f,
                            const struct conf_node *n, struct gw_string_list *l)
{
    if (!node_is_null(n) && !expect_kind(ld, n, NODE_SEQ, "a list"))
        return false;
    string_list_free(l);
    size_t count = node_is_null(n) ? 0 : n->n_kids;
    l->items = xcalloc(count, sizeof(*l->items));
    bool ok = true;
    for (size_t i = 0; i < count; i++) {
        size_t old = conf_path_push_index(ld, i);
        const struct conf_field item = {.type = CONF_STR, .check = f->check};
        char *s;
        if (read_string(ld, &item, n->kids[i], &s) && s)
            l->items[l->len++] = s;
        else
            ok = false;
        conf_path_pop(ld, old);
    }
    if (count == 0 && (f->flags & CONF_NONEMPTY)) {
        conf_node_error(ld, n, "must list at least one item");
        return false;
    }
    return ok;
}

/* Reports a key that is not a plain scalar, has an anchor, or repeats an earlier key. */
static bool key_ok(struct conf_loader *ld, const struct conf_node *map, size_t i)
{
    const struct conf_node *k = map_key(map, i);
    if (!expect_kind(ld, k, NODE_SCALAR, "a key"))
        return false;
    for (size_t j = 0; j < i; j++) {
        const struct conf_node *prev = map_key(map, j);
        if (prev->kind == NODE_SCALAR && strcmp(prev->text, k->text) == 0) {
            size_t old = conf_path_push(ld, k->text);
            conf_node_error(ld, k, "duplicate key (first at line %u)", prev->line);
            conf_path_pop(ld, old);
            return false;
        }
    }
    return true;
}

static bool set_string_map(struct conf_loader *ld, const struct conf_field *f,
                           const struct conf_node *n, struct gw_string_map *m)
{
    struct conf_field value = {.type = CONF_STR, .flags = f->flags};
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
        const struct conf_node *k = map_key(n, i);
        if (!key_ok(ld, n, i)) {
            ok = false;
            continue;
        }
        size_t old = conf_path_push(ld, k->text);
        char *v = NULL;
        if ((f->check == NULL || f->check(ld, k, k->text)) &&
            read_string(ld, &value, map_val(n, i), &v)) {
            m->keys[m->len] = xstrdup(k->text);
            m->values[m->len++] = v ? v : xstrdup("");
        } else
            ok = false;
        conf_path_pop(ld, old);
    }
    return ok;
}

static bool set_cidrs(struct conf_loader *ld, const struct conf_field *f, const struct conf_node *n,
                      void *base)
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
        size_t old = conf_path_push_index(ld, i);
        char *s = scalar_text(ld, n->kids[i], "an address or network");
        const char *why = s ? net_cidr_parse(s, &(*slot)[*count]) : "";
        if (why && s)
            conf_node_error(ld, n->kids[i],
                            "invalid network \"%.60s\": %s (write e.g. 10.0.0.0/8, "
                            "192.168.1.10 or fd00::/8)",
                            s, why);
        if (why)
            ok = false;
        else
            (*count)++;
        free(s);
        conf_path_pop(ld, old);
    }
    return ok;
}

static bool set_list(struct conf_loader *ld, const struct conf_field *f, const struct conf_node *n,
                     void *base)
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
        size_t old = conf_path_push_index(ld, i);
        ok = walk_section(ld, f->sub, n->kids[i], elem) && ok;
        conf_path_pop(ld, old);
    }
    return ok;
}

static bool set_field(struct conf_loader *ld, const struct conf_field *f, const struct conf_node *n,
                      void *base, bool from_file)
{
    void *slot = (char *)base + f->off;
    switch (f->type) {
    case CONF_STR: return set_str(ld, f, n, slot);
    case CONF_SECRET:
    case CONF_SECRET_BYTES: return set_secret(ld, f, n, base, from_file);
    case CONF_BOOL: return set_bool(ld, n, slot);
    case CONF_U32:
    case CONF_DURATION:
    case CONF_SIZE: return set_number(ld, f, n, slot);
    case CONF_ENUM: return set_enum(ld, f, n, slot);
    case CONF_RATE: return set_rate(ld, f, n, base);
    case CONF_STRLIST: return set_string_list(ld, f, n, slot);
    case CONF_STRMAP: return set_string_map(ld, f, n, slot);
    case CONF_CIDRS: return set_cidrs(ld, f, n, base);
    case CONF_SECTION: return walk_section(ld, f->sub, n, slot);
    case CONF_LIST: return set_list(ld, f, n, base);
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
static void unknown_key(struct conf_loader *ld, const struct conf_section *sec,
                        const struct conf_node *k)
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
        conf_node_error(ld, k, "unknown key (did you mean %s?)", best);
    else
        conf_node_error(ld, k, "unknown key");
}

/* The row for key, also matching "<key>_file" of secrets. */
static int find_field(const struct conf_section *sec, const char *key, bool *from_file)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < sec->n_fields; i++) {
        const struct conf_field *f = &sec->fields[i];
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
static void walk_pair(struct conf_loader *ld, const struct conf_section *sec,
                      const struct conf_node *map, size_t i, void *base, struct conf_keys_seen *ks)
{
    const struct conf_node *k = map_key(map, i);
    bool from_file;
    int fi = find_field(sec, k->text, &from_file);
    size_t old = conf_path_push(ld, k->text);
    if (fi < 0)
        unknown_key(ld, sec, k);
    else if (ks->given & (1ull << fi)) {
        /* not a duplicate (key_ok saw to that): the secret and its _file variant */
        conf_node_error(ld, k, "give %s or %s_file, not both", sec->fields[fi].key,
                        sec->fields[fi].key);
    } else {
        ks->given |= 1ull << fi;
        if (set_field(ld, &sec->fields[fi], map_val(map, i), base, from_file))
            ks->valid |= 1ull << fi;
    }
    conf_path_pop(ld, old);
}

static void check_required(struct conf_loader *ld, const struct conf_section *sec,
                           const struct conf_node *at, const struct conf_keys_seen *ks)
{
    for (size_t i = 0; i < sec->n_fields; i++) {
        const struct conf_field *f = &sec->fields[i];
        if (!(f->flags & CONF_REQUIRED) || (ks->given & (1ull << i)))
            continue;
        size_t old = conf_path_push(ld, f->key);
        if (is_secret_type(f->type))
            conf_node_error(ld, at, "required key is missing (give %s or %s_file)", f->key, f->key);
        else
            conf_node_error(ld, at, "required key is missing");
        conf_path_pop(ld, old);
    }
}

/*
 * Reads a mapping into base with the table sec. An empty value (`key:`) reads
 * as an empty mapping, so required keys are still reported. Returns false
 * when map is not a mapping at all.
 */
static bool walk_section(struct conf_loader *ld, const struct conf_section *sec,
                         const struct conf_node *map, void *base)
{
    struct conf_keys_seen ks = {0};
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
__attribute__((format(printf, 5, 0))) static void vpair_error(struct conf_loader *ld,
                                                              const struct conf_node *at,
                                                              const char *key, bool at_value,
                                                              const char *fmt, va_list ap)
{
    const struct conf_node *n = map_find(at, key, at_value);
    if (n == NULL)
        n = at;
    size_t old = conf_path_push(ld, key);
    verror_at(ld, n->line, n->column, fmt, ap);
    conf_path_pop(ld, old);
}

/* The key itself is the problem: missing, misplaced, or clashing with another key. */
void conf_key_error(struct conf_loader *ld, const struct conf_node *at, const char *key,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vpair_error(ld, at, key, false, fmt, ap);
    va_end(ap);
}

/* The value is the problem, though well-formed on its own: a duplicate, a conflict. */
void conf_value_error(struct conf_loader *ld, const struct conf_node *at, const char *key,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vpair_error(ld, at, key, true, fmt, ap);
    va_end(ap);
}

/* ---- defaults and freeing ------------------------------------------------ */

void conf_string_list_set(struct gw_string_list *l, const char *const *items, size_t n)
{
    l->items = xcalloc(n, sizeof(*l->items));
    for (l->len = 0; l->len < n; l->len++)
        l->items[l->len] = xstrdup(items[l->len]);
}

static void field_free(const struct conf_field *f, void *base)
{
    char *slot = (char *)base + f->off;
    switch (f->type) {
    case CONF_STR: free(*(char **)slot); break;
    case CONF_SECRET: free_secret(*(char **)slot); break;
    case CONF_SECRET_BYTES:
        if (*(unsigned char **)slot)
            OPENSSL_cleanse(*(unsigned char **)slot, *(size_t *)((char *)base + f->off2));
        free(*(unsigned char **)slot);
        break;
    case CONF_STRLIST: string_list_free((struct gw_string_list *)slot); break;
    case CONF_STRMAP: {
        struct gw_string_map *m = (struct gw_string_map *)slot;
        for (size_t i = 0; i < m->len; i++)
            free(m->keys[i]), free(m->values[i]);
        free(m->keys), free(m->values);
        break;
    }
    case CONF_CIDRS: free(*(struct net_cidr **)slot); break;
    case CONF_SECTION: conf_section_free(f->sub, slot); break;
    case CONF_LIST: {
        char *arr = *(char **)slot;
        size_t n = *(size_t *)((char *)base + f->off2);
        for (size_t i = 0; i < n; i++)
            conf_section_free(f->sub, arr + i * f->elem_size);
        free(arr);
        break;
    }
    default: break;
    }
}

/* Frees what the table names (and sec->release the derived rest); plain values need nothing. */
void conf_section_free(const struct conf_section *sec, void *base)
{
    for (size_t i = 0; i < sec->n_fields; i++)
        field_free(&sec->fields[i], base);
    if (sec->release)
        sec->release(base);
}

void conf_errors_clear(struct gw_config_errors *errs)
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
static uint64_t message_position(const struct conf_loader *ld, const char *msg)
{
    char *end;
    const char *p = msg + strlen(ld->name) + 1;
    uint64_t line = strtoull(p, &end, 10);
    return (line << 32) | strtoull(end + 1, NULL, 10);
}

/* Checks across sections run last; sort so messages read in file order (stable). */
static void sort_errors(const struct conf_loader *ld, size_t from)
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

static bool load(struct conf_loader *ld, const struct conf_section *root_sec,
                 conf_root_check_fn check, void *base)
{
    size_t errors_before = ld->errs->len;
    struct conf_node *root = build_tree(ld);
    if (root == NULL)
        return false;
    if (!node_is_null(root) && root->kind != NODE_MAP)
        conf_node_error(ld, root, "the configuration must be a mapping, found %s",
                        node_kind_name(root));
    else if (walk_section(ld, root_sec, root, base) && check)
        check(ld, root, base);
    node_free(root);
    sort_errors(ld, errors_before);
    return ld->errs->len == errors_before;
}

bool conf_load_string(const char *yaml, size_t len, const char *name,
                      const struct conf_section *root, conf_root_check_fn check, void *base,
                      struct gw_config_errors *errs)
{
    struct conf_loader ld = {.name = name, .errs = errs, .input = yaml, .input_len = len};
    return load(&ld, root, check, base);
}

bool conf_load_file(const char *path, const struct conf_section *root, conf_root_check_fn check,
                    void *base, struct gw_config_errors *errs)
{
    struct buf text = {0};
    char chunk[8192];
    bool ok = false;
    FILE *f = fopen(path, "re");
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0 && text.len <= CONFIG_MAX_FILE_BYTES)
        buf_add(&text, chunk, n);
    int err = errno;
    OPENSSL_cleanse(chunk, sizeof(chunk));
    /* no line or column to give: the message is "file: problem" */
    if (f == NULL || ferror(f) || text.len > CONFIG_MAX_FILE_BYTES) {
        errs->messages = xrealloc(errs->messages, (errs->len + 1) * sizeof(*errs->messages));
        errs->messages[errs->len++] =
            xasprintf("%s: cannot read: %s", path,
                      text.len > CONFIG_MAX_FILE_BYTES ? "larger than 16 MiB" : strerror(err));
    } else {
        struct conf_loader ld = {
            .name = path, .errs = errs, .input = text.data ? text.data : "", .input_len = text.len};
        ok = load(&ld, root, check, base);
    }
    if (f)
        fclose(f);
    buf_wipe(&text);
    return ok;
}
