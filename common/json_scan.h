/*
 * json_scan: one pass over a JSON text that validates it and reports where
 * the members of its first few object levels are, without building a tree.
 *
 * Why not jansson here: jansson builds a tree of every value (one malloc per
 * node, every string decoded and copied) and the proxy would then serialise
 * it again to forward it. For a 1 MiB tool result that is most of the
 * gateway's CPU, while the proxy needs only a handful of members (method, id,
 * params.name, params._meta). This scanner touches every byte once, copies
 * nothing, and hands back byte ranges, so the original text can be forwarded
 * as it came, or spliced (a _meta member added or removed).
 *
 * What it accepts is what jansson 2.14 accepts with its default flags,
 * checked by a differential fuzz target (tests/fuzz/fuzz_json_scan.c):
 * RFC 8259 values; UTF-8 only (no overlongs, no surrogates, nothing above
 * U+10FFFF); \u escapes with surrogate pairs paired; no NUL character, raw
 * or as \u0000; nesting at most JSON_SCAN_MAX_DEPTH; whitespace only
 * space, tab, CR, LF. Unlike jansson it does not refuse integers outside
 * int64 (they are valid JSON, and forwarded untouched) and it reports
 * duplicate keys to the caller instead of keeping the last one silently.
 *
 * Members are reported for objects reached from the top through object
 * members only, at most JSON_SCAN_INDEX_DEPTH objects deep: for
 * {"a":{"b":{"c":1}}} the members a, a.b and a.b.c are reported, nothing
 * below, and nothing inside arrays (a top-level array's elements are
 * reported as values instead, for batches).
 */
#ifndef MCPGATE_COMMON_JSON_SCAN_H
#define MCPGATE_COMMON_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_SCAN_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */
#define JSON_SCAN_INDEX_DEPTH 3  /* object levels whose members are reported */
#define JSON_SCAN_KEY_MAX 64     /* keys are decoded up to this many bytes */

enum json_kind {
    JSON_KIND_NONE = 0,
    JSON_KIND_OBJECT,
    JSON_KIND_ARRAY,
    JSON_KIND_STRING,
    JSON_KIND_NUMBER,
    JSON_KIND_TRUE,
    JSON_KIND_FALSE,
    JSON_KIND_NULL,
};

/* A value inside the scanned text: text[off .. off + len). */
struct json_ref {
    enum json_kind kind;
    size_t off, len;
    bool integer; /* a number without fraction or exponent */
};

/* One member of an indexed object. */
struct json_member {
    /* The decoded key, NUL-terminated; keys longer than JSON_SCAN_KEY_MAX - 1
     * bytes are cut and flagged (no key the proxy looks for is that long). */
    char key[JSON_SCAN_KEY_MAX];
    bool key_long;
    /* The keys of the objects above, outermost first: path[0 .. depth). */
    const char *const *path;
    unsigned depth;        /* 0: a member of the top-level object */
    struct json_ref value; /* the member's value */
    size_t start, end;     /* the member from its key's quote to its value's end */
    size_t object_off;     /* where the object holding it starts ('{') */
};

struct json_scan_callbacks {
    /* Every member of every indexed object, after its value was scanned. May be NULL. */
    void (*member)(const struct json_member *m, void *arg);
    /* Every element of a top-level array. May be NULL. */
    void (*element)(const struct json_ref *v, void *arg);
};

struct json_scan_error {
    size_t offset;    /* where the text stopped being JSON */
    const char *what; /* static text, e.g. "invalid UTF-8" */
};

/*
 * Scans TEXT[0 .. LEN) as one JSON value with optional whitespace around.
 * Fills *TOP with the top-level value. Returns 0, or -EINVAL with *ERR set
 * (ERR may be NULL). CB may be NULL. Callbacks never run after an error is
 * found, but may have run for members before it.
 */
int json_scan(const char *text, size_t len, const struct json_scan_callbacks *cb, void *arg,
              struct json_ref *top, struct json_scan_error *err);

/*
 * Decodes the JSON string at REF (a JSON_KIND_STRING of a text that
 * json_scan accepted) into a new NUL-terminated string (owned). The scanner
 * already refused NUL characters, so the result has no embedded NUL.
 */
char *json_string_dup(const char *text, const struct json_ref *ref);

/* The same without allocating, when the decoded string fits OUT (SIZE bytes
 * with its NUL); false when it does not. */
bool json_string_copy(const char *text, const struct json_ref *ref, char *out, size_t size);

#endif
