/*
 * test_json_scan: the scanner's string loop against jansson, byte by byte.
 *
 * Strings are scanned eight bytes at a time (plain_run in json_scan.c), so a
 * special byte behaves differently depending on where it falls in a word.
 * These tests put every byte value, and every escape and UTF-8 sequence
 * shape, at every offset across three words, and require the scanner to
 * accept exactly what jansson accepts and to decode keys and values to the
 * same bytes. fuzz_json_scan does the same on random input; this is the
 * exhaustive, deterministic part that runs in every `make test`.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/json_scan.h"
#include "proxy/jsonrpc.h"

#define SPAN 24 /* three 8-byte words */

struct first_member {
    bool seen;
    char key[JSON_SCAN_KEY_MAX];
    struct json_ref value;
};

static void on_member(const struct json_member *m, void *arg)
{
    struct first_member *f = arg;
    if (!f->seen) {
        f->seen = true;
        memcpy(f->key, m->key, sizeof(f->key));
        f->value = m->value;
    }
}

/* "<pad><piece><pad>" as a JSON string, the piece starting at OFFSET. */
static size_t make_string(char *out, size_t size, size_t offset, const char *piece, size_t plen)
{
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < offset; i++)
        out[n++] = 'a' + (char)(i % 26);
    memcpy(out + n, piece, plen);
    n += plen;
    for (size_t i = 0; i < SPAN - offset; i++)
        out[n++] = 'A' + (char)(i % 26);
    out[n++] = '"';
    assert_true(n < size);
    out[n] = '\0';
    return n;
}

/*
 * TEXT (a JSON string) alone and as the key and value of an object: the
 * scanner accepts it exactly when jansson does, and decodes it the same.
 */
static void check_against_jansson(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    struct json_ref top;
    int rc = json_scan(text, len, NULL, NULL, &top, NULL);
    if ((rc == 0) != (j != NULL))
        fail_msg("json_scan %s, jansson %s: %.*s", rc == 0 ? "accepts" : "refuses",
                 j ? "accepts" : "refuses", (int)len, text);
    if (j == NULL)
        return;
    assert_int_equal(top.kind, JSON_KIND_STRING);
    assert_int_equal(top.len, len);
    char *mine = json_string_dup(text, &top);
    assert_int_equal(strlen(mine), json_string_length(j));
    assert_memory_equal(mine, json_string_value(j), json_string_length(j));

    /* The same string as a key (decoded into the member's fixed buffer) and a value. */
    char obj[4 * SPAN + 64];
    int olen = snprintf(obj, sizeof(obj), "{%.*s:%.*s}", (int)len, text, (int)len, text);
    assert_true(olen > 0 && (size_t)olen < sizeof(obj));
    struct first_member f = {0};
    static const struct json_scan_callbacks cb = {.member = on_member};
    assert_int_equal(json_scan(obj, (size_t)olen, &cb, &f, &top, NULL), 0);
    assert_true(f.seen);
    size_t klen = strlen(mine) < JSON_SCAN_KEY_MAX ? strlen(mine) : JSON_SCAN_KEY_MAX - 1;
    assert_int_equal(strlen(f.key), klen);
    assert_memory_equal(f.key, mine, klen);
    assert_int_equal(f.value.kind, JSON_KIND_STRING);
    assert_int_equal(f.value.len, len);
    free(mine);
    json_decref(j);
}

/* Every byte value at every offset of three words: '"' ends the string early,
 * '\\' starts an escape, controls and stray UTF-8 bytes are refused. */
static void test_every_byte_at_every_offset(void **state)
{
    (void)state;
    char text[SPAN + 16];
    for (int b = 1; b < 256; b++) {
        for (size_t off = 0; off <= SPAN; off++) {
            char piece = (char)b;
            size_t len = make_string(text, sizeof(text), off, &piece, 1);
            check_against_jansson(text, len);
        }
    }
}

/* Escapes and multi-byte UTF-8 straddling word boundaries, valid and not. */
static void test_sequences_at_every_offset(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "\\\"",
        "\\\\",
        "\\/",
        "\\n",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\ud83d",
        "\\ude00",
        "\\u0000",
        "\\x",
        "\\u12",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "\xc0\xaf",
        "\xed\xa0\x80",
        "\xf4\x90\x80\x80",
        "\xc3",
        "\xe2\x82",
        "\x7f",
        "\x1f",
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
    };
    char text[SPAN + 32];
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        for (size_t off = 0; off <= SPAN; off++) {
            size_t len = make_string(text, sizeof(text), off, pieces[i], strlen(pieces[i]));
            check_against_jansson(text, len);
        }
    }
}

/* An unterminated string of every length: the word loop must stop at the end. */
static void test_unterminated_at_every_length(void **state)
{
    (void)state;
    char text[SPAN + 2] = "\"";
    for (size_t n = 0; n <= SPAN; n++) {
        struct json_ref top;
        struct json_scan_error err;
        assert_int_equal(json_scan(text, n + 1, NULL, NULL, &top, &err), -EINVAL);
        assert_string_equal(err.what, "unterminated string");
        text[n + 1] = 'x';
    }
}

/* A single message is not scanned by the batch split (jsonrpc_inspect validates
 * it); only a text that starts with '[' is, and a broken one is refused there. */
static void test_batch_split_scans_only_arrays(void **state)
{
    (void)state;
    struct json_ref *elems = (struct json_ref *)1;
    size_t n = 7;
    static const char two[] = " \r\n\t[{\"a\":1}, {\"b\":2}]";
    assert_int_equal(jsonrpc_batch_split(two, strlen(two), &elems, &n), 0);
    assert_non_null(elems);
    assert_int_equal(n, 2);
    assert_int_equal(elems[0].kind, JSON_KIND_OBJECT);
    assert_int_equal(elems[1].off, strlen(" \r\n\t[{\"a\":1}, "));
    free(elems);

    static const char broken[] = "  [{\"a\":1}";
    assert_int_equal(jsonrpc_batch_split(broken, strlen(broken), &elems, &n), -EINVAL);

    static const char single_broken[] = " {\"a\":";
    assert_int_equal(jsonrpc_batch_split(single_broken, strlen(single_broken), &elems, &n), 0);
    assert_null(elems);
    struct jsonrpc_msg m;
    assert_int_equal(jsonrpc_inspect(single_broken, strlen(single_broken), &m), -EINVAL);
    jsonrpc_msg_clear(&m);

    assert_int_equal(jsonrpc_batch_split("", 0, &elems, &n), 0);
    assert_null(elems);
    assert_int_equal(jsonrpc_inspect("", 0, &m), -EINVAL);
    jsonrpc_msg_clear(&m);
}

/* The ref the session uses to put a client's own progress token back. */
static void test_inspect_finds_the_progress_token(void **state)
{
    (void)state;
    static const char progress[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\","
                                   "\"params\":{\"progress\":1,\"progressToken\":\"mcpgate:7\"}}";
    struct jsonrpc_msg m;
    assert_int_equal(jsonrpc_inspect(progress, strlen(progress), &m), 0);
    assert_int_equal(m.kind, JSONRPC_NOTIFICATION);
    assert_int_equal(m.progress.kind, JSON_KIND_STRING);
    assert_memory_equal(progress + m.progress.off, "\"mcpgate:7\"", m.progress.len);
    assert_int_equal(m.progress_token.kind, JSON_KIND_NONE); /* that one is params._meta's */
    jsonrpc_msg_clear(&m);

    static const char twice[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\","
                                "\"params\":{\"progressToken\":1,\"progressToken\":2}}";
    assert_int_equal(jsonrpc_inspect(twice, strlen(twice), &m), 0);
    assert_int_equal(m.kind, JSONRPC_INVALID);
    jsonrpc_msg_clear(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_byte_at_every_offset),
        cmocka_unit_test(test_sequences_at_every_offset),
        cmocka_unit_test(test_unterminated_at_every_length),
        cmocka_unit_test(test_batch_split_scans_only_arrays),
        cmocka_unit_test(test_inspect_finds_the_progress_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
