/*
 * conf: the table-driven YAML engine behind the configuration (DESIGN §3).
 * It knows YAML, ${VAR} expansion, value syntax (durations, sizes, rates,
 * networks), secret files and how to report an error; it knows nothing of
 * what the gateway's keys mean. Those live in descriptor tables owned by the
 * modules that read them (http/http_conf.c, store/store_conf.c,
 * oauth/oauth_conf.c, proxy/route_conf.c; log, metrics and the root table in
 * gateway/config.c).
 *
 * Who calls what:
 *  - a module declares one struct conf_section per YAML mapping: rows of
 *    struct conf_field (key, type, offset into its C struct, flags, range,
 *    check), an optional `post` hook for checks between keys of that mapping
 *    and an optional `release` for fields no row names;
 *  - gateway/config.c lists the modules' sections in a root table, fills the
 *    defaults, and calls conf_load_string() / conf_load_file() with a `check`
 *    hook for rules across sections;
 *  - hooks and checks report through conf_node_error(), conf_key_error() and
 *    conf_value_error(), and read the tree through the conf_map_* and
 *    conf_seq_* accessors; they never see libyaml.
 *
 * Rules the engine applies to every table: unknown keys (with a "did you
 * mean" hint within two edits), duplicate keys, anchors, aliases, tags, YAML
 * 1.1 booleans ("yes", "on", …) and wrong types are errors; "<key>_file"
 * reads a secret from a file; `key:` (empty) counts as given but empty.
 *
 * Error format: every message is "file:line:column: key.path: message", the
 * key path written like "routes[1].stdio.command" ("(root)" at the top).
 * Errors never stop the walk, so one load reports every problem it can;
 * only a YAML syntax error ends parsing. Messages are sorted into file order.
 *
 * Ownership: the engine writes owned strings and arrays into the caller's
 * struct (replacing, and freeing, what defaults put there), and
 * conf_section_free() releases them by the same tables, so a row added to a
 * table is freed without further code. Secrets (CONF_SECRET,
 * CONF_SECRET_BYTES) are wiped with OPENSSL_cleanse when freed, and so is the
 * text of every YAML scalar and every buffer the file passed through, since
 * secrets may be written inline.
 */
#ifndef MCPGATE_CONF_CONF_H
#define MCPGATE_CONF_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"

/* Units for tables and defaults. */
#define KiB (1024ull)
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define SEC_MS (1000ull)
#define MIN_MS (60ull * SEC_MS)
#define HOUR_MS (60ull * MIN_MS)
#define DAY_MS (24ull * HOUR_MS)

/* Enum fields are written through an int pointer: every CONF_ENUM target must be int-sized. */
#define CONF_ENUM_IS_INT(e) _Static_assert(sizeof(enum e) == sizeof(int), #e " is not int-sized")

/* ---- what hooks see: the tree and the loader (both opaque) ------------- */

/* A YAML node with its position. Borrowed by hooks for the length of a load. */
struct conf_node;
/* One load: the file name, the error list and the key path being read. */
struct conf_loader;

unsigned conf_node_line(const struct conf_node *n);
bool conf_node_is_map(const struct conf_node *n);
/* The value of KEY in mapping MAP, or NULL (also when MAP is NULL or not a mapping). */
const struct conf_node *conf_map_get(const struct conf_node *map, const char *key);
/* KEY was written in MAP (whatever its value). */
bool conf_map_has(const struct conf_node *map, const char *key);
/* Items of a sequence: 0 and NULL for anything else. */
size_t conf_seq_len(const struct conf_node *seq);
const struct conf_node *conf_seq_item(const struct conf_node *seq, size_t i);

/*
 * The key path of messages. Push returns the length to give back to pop;
 * the walker pushes and pops around every key it reads, so hooks only push
 * when they report below the mapping they were given.
 */
size_t conf_path_push(struct conf_loader *ld, const char *key);
size_t conf_path_push_index(struct conf_loader *ld, size_t i);
void conf_path_pop(struct conf_loader *ld, size_t old);

/* An error located at node N (position 1:1 when N is NULL), under the current key path. */
__attribute__((format(printf, 3, 4))) void
conf_node_error(struct conf_loader *ld, const struct conf_node *n, const char *fmt, ...);
/* The key KEY of mapping AT is the problem (missing, misplaced, clashing): located at the
 * key, or at AT when the key is absent; the path gets ".KEY". */
__attribute__((format(printf, 4, 5))) void conf_key_error(struct conf_loader *ld,
                                                          const struct conf_node *at,
                                                          const char *key, const char *fmt, ...);
/* The value of KEY is the problem, though well-formed on its own (a duplicate, a conflict). */
__attribute__((format(printf, 4, 5))) void conf_value_error(struct conf_loader *ld,
                                                            const struct conf_node *at,
                                                            const char *key, const char *fmt, ...);

/* ---- descriptor tables ---------------------------------------------------- */

enum conf_field_type {
    CONF_STR = 0,      /* char * */
    CONF_SECRET,       /* char *, wiped on free; "<key>_file" reads it from a file */
    CONF_SECRET_BYTES, /* unsigned char * and size_t at off2; "<key>_file" too; min: length */
    CONF_BOOL,         /* bool */
    CONF_U32,          /* uint32_t in [min, max] */
    CONF_DURATION,     /* uint64_t milliseconds in [min, max] */
    CONF_SIZE,         /* uint64_t bytes in [min, max] */
    CONF_ENUM,         /* int, from names */
    CONF_RATE,         /* uint32_t count at off, uint64_t window ms at off2 */
    CONF_STRLIST,      /* struct gw_string_list; check applies to items */
    CONF_STRMAP,       /* struct gw_string_map; check applies to keys */
    CONF_CIDRS,        /* struct net_cidr * at off, size_t count at off2 */
    CONF_SECTION,      /* a nested mapping read with sub, into base + off */
    CONF_LIST,         /* a list of mappings: array at off, count at off2 (no defaults) */
};

/* Field flags. */
#define CONF_REQUIRED 0x1    /* the key must be given */
#define CONF_ALLOW_EMPTY 0x2 /* "" is a value (otherwise "must not be empty") */
#define CONF_EMPTY_UNSET 0x4 /* "" leaves the field unset, as if the key were absent */
#define CONF_NONEMPTY 0x8    /* lists: at least one item */

/* One accepted word of a CONF_ENUM; a table ends with {NULL, 0}. */
struct conf_enum_name {
    const char *name;
    int value;
};

/* A value check: reports its own error (at AT) and returns false. VALUE is never "". */
typedef bool (*conf_check_fn)(struct conf_loader *ld, const struct conf_node *at,
                              const char *value);

struct conf_section;

struct conf_field {
    const char *key;
    enum conf_field_type type;
    size_t off, off2;
    unsigned flags;
    uint64_t min, max;                  /* CONF_U32, CONF_DURATION, CONF_SIZE; SECRET_BYTES: min */
    const struct conf_enum_name *names; /* CONF_ENUM */
    conf_check_fn check;                /* CONF_STR, CONF_STRLIST items, CONF_STRMAP keys */
    const struct conf_section *sub;     /* CONF_SECTION, CONF_LIST */
    size_t elem_size;                   /* CONF_LIST */
    void (*init)(void *elem);           /* CONF_LIST: defaults of a new element */
};

/* Which keys of a mapping were given, and which of those were read without error. */
struct conf_keys_seen {
    uint64_t given;
    uint64_t valid;
};

struct conf_section {
    const struct conf_field *fields; /* at most 64 */
    size_t n_fields;
    /* checks between keys of one mapping; AT is the mapping (or the empty value) */
    void (*post)(struct conf_loader *ld, const struct conf_node *at, void *base,
                 const struct conf_keys_seen *ks);
    /* frees derived fields that no row names */
    void (*release)(void *base);
};

/*
 * Rows are {key, type, AT(...), .flags = …, .check = …}. After AT() every
 * member must be named: a positional value there would land in off2. The
 * short names are safe because only schema files include this header.
 */
#define FIELDS(a) (a), sizeof(a) / sizeof((a)[0])
#define AT(type, member) .off = offsetof(type, member)
#define AT2(type, m1, m2) .off = offsetof(type, m1), .off2 = offsetof(type, m2)
#define RANGE(lo, hi) .min = (lo), .max = (hi)

/* In post hooks: KEY (a row of SEC; anything else is a bug and panics) was given / read
 * without error. */
bool conf_key_given(const struct conf_section *sec, const struct conf_keys_seen *ks,
                    const char *key);
bool conf_key_valid(const struct conf_section *sec, const struct conf_keys_seen *ks,
                    const char *key);

/* The word of VALUE in NAMES ("" when it has none). */
const char *conf_enum_name(const struct conf_enum_name *names, int value);

/* ---- checks without module policy ----------------------------------------- */

bool conf_check_scope(struct conf_loader *ld, const struct conf_node *at,
                      const char *v); /* RFC 6749 scope-token */
bool conf_check_env_name(struct conf_loader *ld, const struct conf_node *at, const char *v);
bool conf_check_abs_path(struct conf_loader *ld, const struct conf_node *at, const char *v);
/* Why a URL path is unusable for a route or an endpoint (query, '..', '//', …), or NULL. */
const char *conf_path_problem(const char *p);
/* conf_path_problem() as a check: "\"/a/\" must not end with '/'". */
bool conf_check_url_path(struct conf_loader *ld, const struct conf_node *at, const char *v);

/* ---- value syntax (also for the CLI); 0 or -EINVAL ------------------------ */

int gw_parse_duration_ms(const char *text, uint64_t *out_ms); /* "250ms" "60s" "15m" "1h" "30d" */
int gw_parse_size_bytes(const char *text,
                        uint64_t *out_bytes); /* "512", "64KiB", "4MiB", "1GiB", "10kB" */

/* ---- loading and freeing -------------------------------------------------- */

/* After the root mapping was walked: checks across sections, derived fields. */
typedef void (*conf_root_check_fn)(struct conf_loader *ld, const struct conf_node *root,
                                   void *base);

/*
 * Parses YAML[0..LEN) (one document, a mapping) and walks it into BASE with
 * ROOT, then calls CHECK (when not NULL) if the document was a mapping. BASE
 * holds the defaults already. NAME stands for the file in messages. Returns
 * true when no message was added to ERRS; on false the caller frees BASE
 * with conf_section_free() (it may be partly filled).
 */
bool conf_load_string(const char *yaml, size_t len, const char *name,
                      const struct conf_section *root, conf_root_check_fn check, void *base,
                      struct gw_config_errors *errs);
/* The same from the file PATH (at most 16 MiB); a file that cannot be read gives
 * "path: cannot read: reason". */
bool conf_load_file(const char *path, const struct conf_section *root, conf_root_check_fn check,
                    void *base, struct gw_config_errors *errs);

/* Frees what SEC's rows name in BASE (recursively) and calls SEC->release. */
void conf_section_free(const struct conf_section *sec, void *base);
void conf_errors_clear(struct gw_config_errors *errs);

/* For defaults: L gets owned copies of ITEMS[0..N). */
void conf_string_list_set(struct gw_string_list *l, const char *const *items, size_t n);

#endif
