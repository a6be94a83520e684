/*
 * fuzz_json_scan: common/json_scan.c against jansson, the parser it stands
 * in for on the proxy's hot path (a differential target).
 *
 * Checked for every input:
 *  - json_scan accepts exactly what json_loadb(JSON_DECODE_ANY) accepts,
 *    except numbers jansson cannot hold (integers outside int64, reals that
 *    overflow a double), which are valid JSON and which the scanner passes,
 *    and a raw NUL byte right after a number, which jansson 2.14 skips (its
 *    stream reads a NUL in its one-byte unget buffer as "buffer empty") and
 *    the scanner refuses;
 *  - the top-level value has the kind jansson built, and spans the text
 *    between the surrounding whitespace;
 *  - every member reported at depth 0 of a top-level object is a member
 *    jansson has, and when its key is not repeated, its value has the same
 *    kind, a string decodes to the same bytes (json_string_dup), and the
 *    value's span parses on its own to an equal value;
 *  - members of params (depth 1) and params._meta (depth 2) name their path;
 *  - a top-level array reports each element, as many as jansson has.
 */
#include "tests/fuzz/fuzz.h"

#include <stdbool.h>

#include <jansson.h>

#include "common/json_scan.h"

struct seen {
    const char *text;
    json_t *doc;
    size_t elements;
    size_t top_members;
    char (*keys)[JSON_SCAN_KEY_MAX]; /* every decoded top-level key, in order */
    size_t n_keys, cap_keys;
    bool keys_incomplete; /* a key too long to compare */
};

static enum json_kind kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return JSON_KIND_OBJECT;
    case JSON_ARRAY: return JSON_KIND_ARRAY;
    case JSON_STRING: return JSON_KIND_STRING;
    case JSON_INTEGER:
    case JSON_REAL: return JSON_KIND_NUMBER;
    case JSON_TRUE: return JSON_KIND_TRUE;
    case JSON_FALSE: return JSON_KIND_FALSE;
    case JSON_NULL: return JSON_KIND_NULL;
    }
    return JSON_KIND_NONE;
}

static size_t key_count(const struct seen *s, const char *key)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_keys; i++)
        n += strcmp(s->keys[i], key) == 0;
    return n;
}

static void on_member(const struct json_member *m, void *arg)
{
    struct seen *s = arg;
    FUZZ_CHECK(m->end > m->start && m->value.off >= m->start &&
                   m->value.off + m->value.len <= m->end,
               "member span");
    FUZZ_CHECK(s->text[m->start] == '"', "a member starts at its key");
    if (m->depth == 1)
        FUZZ_CHECK(m->path[0] != NULL, "depth 1 has a parent key");
    if (m->depth != 0)
        return;
    s->top_members++;
    if (m->key_long) {
        s->keys_incomplete = true;
        return;
    }
    if (s->n_keys == s->cap_keys) {
        s->cap_keys = s->cap_keys ? 2 * s->cap_keys : 16;
        s->keys = realloc(s->keys, s->cap_keys * sizeof(*s->keys));
        if (s->keys == NULL)
            abort();
    }
    snprintf(s->keys[s->n_keys++], JSON_SCAN_KEY_MAX, "%s", m->key);
}

static void on_element(const struct json_ref *v, void *arg)
{
    struct seen *s = arg;
    (void)v;
    s->elements++;
}

/* Second pass: with every key known, compare the values of keys seen once. */
static void on_member_values(const struct json_member *m, void *arg)
{
    struct seen *s = arg;
    if (m->depth != 0 || m->key_long || s->keys_incomplete || key_count(s, m->key) != 1 ||
        !json_is_object(s->doc))
        return;
    json_t *v = json_object_get(s->doc, m->key);
    FUZZ_CHECK(v != NULL, "jansson has the member \"%s\"", m->key);
    FUZZ_CHECK(kind_of(v) == m->value.kind, "the member \"%s\" has the kind jansson built", m->key);
    if (m->value.kind == JSON_KIND_STRING) {
        char *d = json_string_dup(s->text, &m->value);
        FUZZ_CHECK(strlen(d) == json_string_length(v) &&
                       memcmp(d, json_string_value(v), strlen(d)) == 0,
                   "the string of \"%s\" decodes as jansson decodes it", m->key);
        free(d);
    }
    json_error_t jerr;
    json_t *alone = json_loadb(s->text + m->value.off, m->value.len, JSON_DECODE_ANY, &jerr);
    FUZZ_CHECK(alone && json_equal(alone, v), "the value span of \"%s\" parses alone", m->key);
    json_decref(alone);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    json_error_t jerr;
    json_t *doc = json_loadb(text, size, JSON_DECODE_ANY, &jerr);
    bool jansson_number_limit =
        doc == NULL && json_error_code(&jerr) == json_error_numeric_overflow;
    bool jansson_skips_nul = doc != NULL && memchr(data, 0, size) != NULL;
    struct seen s = {.text = text, .doc = doc};
    struct json_scan_callbacks cb = {.member = on_member, .element = on_element};
    struct json_ref top;
    struct json_scan_error err = {0};
    int rc = json_scan(text, size, &cb, &s, &top, &err);
    if (jansson_number_limit || (jansson_skips_nul && rc != 0))
        goto out;
    FUZZ_CHECK((rc == 0) == (doc != NULL), "json_scan %s (%s at %zu) but jansson %s (%s)",
               rc == 0 ? "accepts" : "refuses", err.what ? err.what : "-", err.offset,
               doc ? "accepts" : "refuses", doc ? "-" : jerr.text);
    if (rc != 0)
        goto out;
    FUZZ_CHECK(top.kind == kind_of(doc), "top-level kind");
    size_t lead = 0;
    while (lead < size && strchr(" \t\r\n", text[lead]))
        lead++;
    FUZZ_CHECK(top.off == lead, "the value starts after the leading whitespace");
    if (json_is_object(doc))
        FUZZ_CHECK(s.top_members >= json_object_size(doc), "every member reported");
    if (json_is_array(doc))
        FUZZ_CHECK(s.elements == json_array_size(doc), "every element reported");
    struct json_scan_callbacks cb2 = {.member = on_member_values};
    FUZZ_CHECK(json_scan(text, size, &cb2, &s, NULL, NULL) == 0, "a second scan agrees");
out:
    free(s.keys);
    json_decref(doc);
    return 0;
}
