/*
 * test_http_frame: http/http_frame.c, the RFC 9112 framing mcpgate judges
 * before evhttp sees a byte (the F13 request-smuggling rules). Pure
 * functions over a buffer, so every rule http_frame.h documents is a row of
 * a table here: the heads that pass with the fields they set, every refusal
 * with its exact status and problem text, where a head ends (whole, byte by
 * byte, pipelined), and chunk-size lines.
 *
 * The limits that need a connection (server.limits.max_header, the body
 * limit a chunk is counted against) live in http/http.c's gate and are
 * tested over loopback in test_http.c and tests/integration/http_limits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "http/http_frame.h"

/* ---- helpers ------------------------------------------------------------------- */

static void assert_span(struct http_frame_span s, const char *want)
{
    if (s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0)
        fail_msg("span \"%.*s\", want \"%s\"", (int)s.len, s.ptr ? s.ptr : "", want);
}

/* Parses the LEN bytes of TEXT (strlen when 0) as one complete head. */
static void parse(const char *text, size_t len, struct http_frame_head *h)
{
    http_frame_parse_head(text, len ? len : strlen(text), h);
}

/* ---- heads that pass ----------------------------------------------------------- */

static void test_content_length_head(void **state)
{
    (void)state;
    struct http_frame_head h;
    parse("POST /mcp?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 42\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 0);
    assert_null(h.problem);
    assert_true(h.line_ok);
    assert_span(h.method, "POST");
    assert_span(h.target, "/mcp?x=1");
    assert_int_equal(h.minor, 1);
    assert_true(h.known_method);
    assert_false(h.no_body_method);
    assert_int_equal(h.body, HTTP_FRAME_LENGTH);
    assert_int_equal(h.length, 42);
    assert_false(h.expect_continue);
    assert_int_equal(h.n_fields, 2);
    assert_span(h.fields[0].name, "Host");
    assert_span(h.fields[0].value, "gw");
    assert_span(h.fields[1].name, "Content-Length");
    assert_span(h.fields[1].value, "42");
    assert_span(h.fields[1].raw, " 42");
    http_frame_head_clear(&h);
    assert_null(h.fields);
    assert_int_equal(h.n_fields, 0);
}

static void test_chunked_head(void **state)
{
    (void)state;
    static const char *const heads[] = {
        "POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "PUT /mcp HTTP/1.1\r\ntransfer-encoding: CHUNKED\r\n\r\n",     /* case-insensitive */
        "PATCH /mcp HTTP/1.1\r\nTransfer-Encoding:\tChunked \r\n\r\n", /* OWS around */
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        struct http_frame_head h;
        parse(heads[i], 0, &h);
        if (h.status != 0)
            fail_msg("head %zu refused: %s", i, h.problem);
        assert_int_equal(h.body, HTTP_FRAME_CHUNKED);
        assert_int_equal(h.length, 0);
        http_frame_head_clear(&h);
    }
}

static void test_no_body_heads(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *method;
        bool no_body_method;
    } rows[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", true},
        {"HEAD /x HTTP/1.1\r\n\r\n", "HEAD", true},
        {"DELETE /mcp HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "DELETE", true}, /* 0 is no body */
        {"OPTIONS /mcp HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "OPTIONS", true},
        {"POST /mcp HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "POST", false},
        {"POST /mcp HTTP/1.1\r\n\r\n", "POST", false},
        {"GET / HTTP/1.0\r\n\r\n", "GET", true},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct http_frame_head h;
        parse(rows[i].text, 0, &h);
        if (h.status != 0)
            fail_msg("row %zu refused: %s", i, h.problem);
        assert_span(h.method, rows[i].method);
        assert_int_equal(h.no_body_method, rows[i].no_body_method);
        assert_int_equal(h.body, HTTP_FRAME_NO_BODY);
        assert_int_equal(h.length, 0);
        http_frame_head_clear(&h);
    }
    struct http_frame_head h;
    parse("GET / HTTP/1.0\r\n\r\n", 0, &h);
    assert_int_equal(h.minor, 0);
    http_frame_head_clear(&h);
}

static void test_lenient_but_safe_forms(void **state)
{
    (void)state;
    struct http_frame_head h;
    /* bare LF line ends and empty lines before the request line (RFC 9112 §2.2) */
    parse("\r\n\nPOST /mcp HTTP/1.1\nContent-Length: 7\n\n", 0, &h);
    assert_int_equal(h.status, 0);
    assert_span(h.method, "POST");
    assert_int_equal(h.length, 7);
    http_frame_head_clear(&h);
    /* no space or one tab before the length; the same length twice */
    parse("POST / HTTP/1.1\r\nContent-Length:7\r\ncontent-length:\t7\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 0);
    assert_int_equal(h.body, HTTP_FRAME_LENGTH);
    assert_int_equal(h.length, 7);
    http_frame_head_clear(&h);
    /* 18 digits is the longest length accepted */
    parse("POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 0);
    assert_true(h.length == UINT64_C(999999999999999999));
    http_frame_head_clear(&h);
    /* obs-text in a value, an empty value, OWS trimmed from the value only */
    parse("GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\nX-Empty:\r\nX-Pad: \t v w \t\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 0);
    assert_int_equal(h.n_fields, 3);
    assert_span(h.fields[0].value, "caf\xc3\xa9");
    assert_span(h.fields[1].value, "");
    assert_span(h.fields[2].value, "v w");
    assert_span(h.fields[2].raw, " \t v w \t");
    http_frame_head_clear(&h);
    /* every tchar in a field name */
    parse("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: 1\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 0);
    assert_span(h.fields[0].name, "!#$%&'*+-.^_`|~09azAZ");
    http_frame_head_clear(&h);
}

static void test_expect_continue(void **state)
{
    (void)state;
    struct http_frame_head h;
    parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 0);
    assert_true(h.expect_continue);
    http_frame_head_clear(&h);
    parse("POST / HTTP/1.1\r\nExpect: 100-continue-later\r\nContent-Length: 3\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 0);
    assert_false(h.expect_continue);
    http_frame_head_clear(&h);
}

static void test_find_field(void **state)
{
    (void)state;
    struct http_frame_head h;
    parse("GET / HTTP/1.1\r\nHost: a\r\nX-Trace: one\r\nx-trace: two\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 0);
    const struct http_frame_field *f = http_frame_find(&h, "X-TRACE");
    assert_non_null(f);
    assert_span(f->value, "one"); /* the first of two */
    assert_ptr_equal(http_frame_find(&h, "host"), &h.fields[0]);
    assert_null(http_frame_find(&h, "X-Trac"));
    assert_null(http_frame_find(&h, "Content-Length"));
    http_frame_head_clear(&h);
}

/* Many fields: the array grows past its first allocation, every field kept in order. */
static void test_many_fields(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 100; i++)
        strbuf_printf(&sb, "X-F%d: v%d\r\n", i, i);
    strbuf_puts(&sb, "\r\n");
    struct http_frame_head h;
    parse(sb.buf, sb.len, &h);
    assert_int_equal(h.status, 0);
    assert_int_equal(h.n_fields, 100);
    char name[16], value[16];
    snprintf(name, sizeof(name), "X-F%d", 99);
    snprintf(value, sizeof(value), "v%d", 99);
    assert_span(h.fields[99].name, name);
    assert_span(h.fields[99].value, value);
    http_frame_head_clear(&h);
    strbuf_release(&sb);
}

/* ---- refusals ------------------------------------------------------------------ */

/* A literal holding a NUL, and its length. */
#define WITH_NUL(s) s, sizeof(s) - 1

static const struct refusal_row {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen(text) */
    int status;
    const char *problem;
} refusals[] = {
    /* Transfer-Encoding and Content-Length */
    {"TE then CL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0,
     400, "both Transfer-Encoding and Content-Length"},
    {"CL then TE", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
     400, "both Transfer-Encoding and Content-Length"},
    {"CL 0 and TE", "POST / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
     400, "both Transfer-Encoding and Content-Length"},
    {"two TE chunked",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400,
     "more than one Transfer-Encoding header"},
    {"TE identity then chunked",
     "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400,
     "more than one Transfer-Encoding header"},
    {"TE gzip, chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, 400,
     "unsupported Transfer-Encoding (only chunked is accepted)"},
    {"TE chunked, chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0,
     400, "unsupported Transfer-Encoding (only chunked is accepted)"},
    {"TE identity", "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 0, 400,
     "unsupported Transfer-Encoding (only chunked is accepted)"},
    {"TE chunkedx", "POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n", 0, 400,
     "unsupported Transfer-Encoding (only chunked is accepted)"},
    {"TE empty", "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", 0, 400,
     "unsupported Transfer-Encoding (only chunked is accepted)"},
    {"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400,
     "Transfer-Encoding in an HTTP/1.0 request"},
    /* Content-Length syntax */
    {"CL +5", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 0, 400, "invalid Content-Length"},
    {"CL -1", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, 400, "invalid Content-Length"},
    {"CL 5,5", "POST / HTTP/1.1\r\nContent-Length: 5,5\r\n\r\n", 0, 400, "invalid Content-Length"},
    {"CL 5, 5", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 0, 400,
     "invalid Content-Length"},
    {"CL 0x5", "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", 0, 400, "invalid Content-Length"},
    {"CL 5a", "POST / HTTP/1.1\r\nContent-Length: 5a\r\n\r\n", 0, 400, "invalid Content-Length"},
    {"CL 5.0", "POST / HTTP/1.1\r\nContent-Length: 5.0\r\n\r\n", 0, 400, "invalid Content-Length"},
    {"CL empty", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 0, 400, "invalid Content-Length"},
    {"CL blank", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 0, 400, "invalid Content-Length"},
    {"CL two spaces", "POST / HTTP/1.1\r\nContent-Length:  5\r\n\r\n", 0, 400,
     "invalid Content-Length"},
    {"CL space and tab", "POST / HTTP/1.1\r\nContent-Length: \t5\r\n\r\n", 0, 400,
     "invalid Content-Length"},
    {"CL trailing space", "POST / HTTP/1.1\r\nContent-Length: 5 \r\n\r\n", 0, 400,
     "invalid Content-Length"},
    {"CL trailing tab", "POST / HTTP/1.1\r\nContent-Length:5\t\r\n\r\n", 0, 400,
     "invalid Content-Length"},
    {"CL 19 digits", "POST / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n", 0, 400,
     "invalid Content-Length"},
    {"CL beyond 2^64", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0, 400,
     "invalid Content-Length"},
    {"CL good then bad", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: +5\r\n\r\n", 0,
     400, "invalid Content-Length"},
    {"CL 5 then 6", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, 400,
     "conflicting Content-Length headers"},
    {"CL 5 then 05", "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 05\r\n\r\n", 0, 400,
     "conflicting Content-Length headers"},
    {"CL 0 then 5", "POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", 0, 400,
     "conflicting Content-Length headers"},
    /* a body on a method that must not carry one */
    {"GET CL", "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 0, 400,
     "this method must not carry a body"},
    {"HEAD CL", "HEAD / HTTP/1.1\r\nContent-Length: 1\r\n\r\n", 0, 400,
     "this method must not carry a body"},
    {"DELETE CL", "DELETE /mcp HTTP/1.1\r\nContent-Length: 10\r\n\r\n", 0, 400,
     "this method must not carry a body"},
    {"OPTIONS CL", "OPTIONS /mcp HTTP/1.1\r\nContent-Length: 2\r\n\r\n", 0, 400,
     "this method must not carry a body"},
    {"GET TE", "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400,
     "this method must not carry a body"},
    {"HEAD TE", "HEAD / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400,
     "this method must not carry a body"},
    {"DELETE TE", "DELETE / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400,
     "this method must not carry a body"},
    {"OPTIONS TE", "OPTIONS / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400,
     "this method must not carry a body"},
    /* field lines */
    {"obs-fold space", "POST / HTTP/1.1\r\nX-A: b\r\n c\r\nContent-Length: 1\r\n\r\n", 0, 400,
     "obsolete line folding in a header field"},
    {"obs-fold tab", "GET / HTTP/1.1\r\nX-A: b\r\n\tc\r\n\r\n", 0, 400,
     "obsolete line folding in a header field"},
    {"first field folded", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0, 400,
     "obsolete line folding in a header field"},
    {"bare CR in value", "GET / HTTP/1.1\r\nX-A: b\rc\r\n\r\n", 0, 400,
     "a control character in a header line"},
    {"bare CR as a line end", "GET / HTTP/1.1\r\nX-A: b\rContent-Length: 5\r\n\r\n", 0, 400,
     "a control character in a header line"},
    {"CR CR LF", "GET / HTTP/1.1\r\nX-A: b\r\r\n\r\n", 0, 400,
     "a control character in a header line"},
    {"NUL in value", WITH_NUL("GET / HTTP/1.1\r\nX-A: b\0c\r\n\r\n"), 400,
     "a control character in a header line"},
    {"NUL in name", WITH_NUL("GET / HTTP/1.1\r\nX\0A: b\r\n\r\n"), 400,
     "a control character in a header line"},
    {"space before colon", "POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", 0, 400,
     "invalid header field name"},
    {"tab before colon", "POST / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n", 0, 400,
     "invalid header field name"},
    {"space inside name", "GET / HTTP/1.1\r\nX A: b\r\n\r\n", 0, 400, "invalid header field name"},
    {"paren in name", "GET / HTTP/1.1\r\nX(A): b\r\n\r\n", 0, 400, "invalid header field name"},
    {"quote in name", "GET / HTTP/1.1\r\nX\"A: b\r\n\r\n", 0, 400, "invalid header field name"},
    {"slash in name", "GET / HTTP/1.1\r\nX/A: b\r\n\r\n", 0, 400, "invalid header field name"},
    {"non-ASCII name", "GET / HTTP/1.1\r\nX\xc3\xa9: b\r\n\r\n", 0, 400,
     "invalid header field name"},
    {"empty name", "GET / HTTP/1.1\r\n: b\r\n\r\n", 0, 400, "an empty header field name"},
    {"no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", 0, 400, "a header line without a colon"},
    {"DEL in value", "GET / HTTP/1.1\r\nX-A: b\x7f\r\n\r\n", 0, 400,
     "a control character in a header field value"},
    {"SOH in value", "GET / HTTP/1.1\r\nX-A: \x01\r\n\r\n", 0, 400,
     "a control character in a header field value"},
    /* the request line */
    {"empty head", "\r\n", 0, 400, "malformed request line"},
    {"no spaces", "GET\r\n\r\n", 0, 400, "malformed request line"},
    {"one space", "GET /\r\n\r\n", 0, 400, "malformed request line"},
    {"leading space", " GET / HTTP/1.1\r\n\r\n", 0, 400, "malformed request line"},
    {"two spaces after method", "GET  / HTTP/1.1\r\n\r\n", 0, 400, "malformed request line"},
    {"tab separator", "GET\t/ HTTP/1.1\r\n\r\n", 0, 400, "malformed request line"},
    {"method not a token", "G(T / HTTP/1.1\r\n\r\n", 0, 400, "malformed request line"},
    {"DEL in target", "GET /a\x7f HTTP/1.1\r\n\r\n", 0, 400, "malformed request line"},
    {"two spaces after target", "GET /  HTTP/1.1\r\n\r\n", 0, 400,
     "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)"},
    {"trailing space", "GET / HTTP/1.1 \r\n\r\n", 0, 400,
     "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)"},
    {"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 0, 400,
     "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)"},
    {"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 0, 400,
     "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)"},
    {"lowercase version", "GET / http/1.1\r\n\r\n", 0, 400,
     "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)"},
    {"bare CR in request line", "GET /a\rb HTTP/1.1\r\n\r\n", 0, 400,
     "a control character in the request line"},
    {"NUL in request line", WITH_NUL("GET /\0 HTTP/1.1\r\n\r\n"), 400,
     "a control character in the request line"},
    {"absolute-form", "GET http://gw/ HTTP/1.1\r\n\r\n", 0, 400,
     "unsupported request target (origin-form only)"},
    {"asterisk-form", "OPTIONS * HTTP/1.1\r\n\r\n", 0, 400,
     "unsupported request target (origin-form only)"},
    {"authority-form", "CONNECT gw:443 HTTP/1.1\r\n\r\n", 0, 501, "unsupported method"},
    {"unknown method", "BREW /pot HTTP/1.1\r\n\r\n", 0, 501, "unsupported method"},
    {"lowercase method", "get / HTTP/1.1\r\n\r\n", 0, 501, "unsupported method"},
    {"TRACE", "TRACE / HTTP/1.1\r\n\r\n", 0, 501, "unsupported method"},
    /* the first problem is the answer */
    {"501 before framing", "BREW / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 0, 501,
     "unsupported method"},
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        const struct refusal_row *r = &refusals[i];
        struct http_frame_head h;
        parse(r->text, r->len, &h);
        if (h.status != r->status || h.problem == NULL || strcmp(h.problem, r->problem) != 0)
            fail_msg("%s: status %d \"%s\", want %d \"%s\"", r->name, h.status,
                     h.problem ? h.problem : "(none)", r->status, r->problem);
        assert_int_equal(h.body, HTTP_FRAME_NO_BODY); /* a refused head has no framing */
        http_frame_head_clear(&h);
    }
}

/* A refused head keeps the request line and the fields before the problem (for the log). */
static void test_refusal_keeps_what_parsed(void **state)
{
    (void)state;
    struct http_frame_head h;
    parse("POST /mcp HTTP/1.1\r\nHost: a\r\nX-Ok: 1\r\nBad Name: 2\r\nX-After: 3\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 400);
    assert_true(h.line_ok);
    assert_span(h.method, "POST");
    assert_span(h.target, "/mcp");
    assert_int_equal(h.n_fields, 2);
    assert_span(h.fields[1].name, "X-Ok");
    http_frame_head_clear(&h);
    /* an unknown method is 501 with the line parsed */
    parse("BREW /pot HTTP/1.1\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 501);
    assert_true(h.line_ok);
    assert_false(h.known_method);
    assert_span(h.method, "BREW");
    http_frame_head_clear(&h);
    /* a malformed line: nothing of it is set */
    parse("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0, &h);
    assert_int_equal(h.status, 400);
    assert_false(h.line_ok);
    assert_int_equal(h.method.len, 0);
    http_frame_head_clear(&h);
}

/* ---- where a head ends ----------------------------------------------------------- */

/* The end found by feeding TEXT one byte more at a time through *scan. */
static size_t end_bytewise(const char *text, size_t len)
{
    size_t scan = 0;
    for (size_t n = 1; n <= len; n++) {
        size_t end = http_frame_head_end(text, n, &scan);
        assert_true(scan <= n);
        if (end)
            return end;
    }
    return 0;
}

static void test_head_end(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t end; /* 0: incomplete */
    } rows[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 27},
        {"GET / HTTP/1.1\nHost: a\n\n", 24},
        {"GET / HTTP/1.1\r\nHost: a\n\r\n", 26}, /* mixed line ends */
        {"GET / HTTP/1.1\r\n\r\n", 18},
        {"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 22}, /* leading empty lines do not end it */
        {"\n\nGET / HTTP/1.1\n\n", 18},
        {"GET / HTTP/1.1\r\nHost: a\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\n\r", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\r\n", 0}, /* CR CR LF is not an empty line */
        {"\r\n\r\n", 0},
        {"\r\n\r", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *t = rows[i].text;
        size_t len = strlen(t), scan = 0;
        size_t whole = http_frame_head_end(t, len, &scan);
        if (whole != rows[i].end)
            fail_msg("row %zu: end %zu, want %zu", i, whole, rows[i].end);
        assert_true(scan <= len);
        size_t bytewise = end_bytewise(t, len);
        if (bytewise != rows[i].end)
            fail_msg("row %zu byte by byte: end %zu, want %zu", i, bytewise, rows[i].end);
    }
}

/* Two requests in one read: each head ends where it should, the second parses alone. */
static void test_pipelined_requests(void **state)
{
    (void)state;
    static const char wire[] = "POST /mcp HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                               "GET /health HTTP/1.1\r\nHost: a\r\n\r\n"
                               "DEL";
    size_t len = sizeof(wire) - 1, scan = 0;
    size_t end1 = http_frame_head_end(wire, len, &scan);
    assert_int_equal(end1, strlen("POST /mcp HTTP/1.1\r\nContent-Length: 3\r\n\r\n"));
    struct http_frame_head h;
    http_frame_parse_head(wire, end1, &h);
    assert_int_equal(h.status, 0);
    assert_int_equal(h.body, HTTP_FRAME_LENGTH);
    assert_int_equal(h.length, 3);
    assert_memory_equal(wire + end1, "abc", 3);
    http_frame_head_clear(&h);

    const char *second = wire + end1 + h.length;
    size_t rest = len - end1 - 3;
    scan = 0;
    size_t end2 = http_frame_head_end(second, rest, &scan);
    assert_int_equal(end2, strlen("GET /health HTTP/1.1\r\nHost: a\r\n\r\n"));
    http_frame_parse_head(second, end2, &h);
    assert_int_equal(h.status, 0);
    assert_span(h.method, "GET");
    assert_span(h.target, "/health");
    assert_int_equal(h.n_fields, 1);
    assert_int_equal(h.body, HTTP_FRAME_NO_BODY);
    http_frame_head_clear(&h);

    /* the third has not ended yet; what came of it can still be a request */
    scan = 0;
    assert_int_equal(http_frame_head_end(second + end2, rest - end2, &scan), 0);
    assert_true(http_frame_plausible_start(second + end2, rest - end2));
}

static void test_plausible_start(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len;
        bool plausible;
    } rows[] = {
        {"", 0, true},
        {"G", 1, true},
        {"POST /mcp HT", 12, true},
        {"\r\n\r\nGE", 6, true},
        {"M-SEARCH", 8, true}, /* any token: the method is judged when the line is in */
        {"\x16\x03\x01\x02\x00", 5, false}, /* a TLS ClientHello on a plain port */
        {"G@T /", 5, false},
        {"GET\t/", 5, false},
        {"\0GET", 4, false},
        {"{\"jsonrpc\"", 10, false},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (http_frame_plausible_start(rows[i].text, rows[i].len) != rows[i].plausible)
            fail_msg("row %zu: want %s", i, rows[i].plausible ? "plausible" : "implausible");
}

/* ---- chunk-size lines ------------------------------------------------------------ */

static void test_chunk_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int rc;
        uint64_t size;
    } rows[] = {
        {"0", 0, 0},
        {"1", 0, 1},
        {"a", 0, 10},
        {"F", 0, 15},
        {"1a", 0, 26},
        {"1A2b", 0, 0x1a2b},
        {"00ff", 0, 255},
        {"ff;name=value", 0, 255},
        {"ff;name=\"quoted value\"", 0, 255},
        {"ff;a;b=c", 0, 255},
        {"10 ;ext", 0, 16}, /* BWS before the ";" */
        {"10\t;ext", 0, 16},
        {"10 \t ;", 0, 16},
        {"10;ext=\xc3\xa9", 0, 16},                          /* obs-text in an extension */
        {"fffffffffffffff", 0, UINT64_C(0xfffffffffffffff)}, /* 15 digits: 2^60 - 1 */
        {"", -EINVAL, 0},
        {";ext", -EINVAL, 0},
        {" 1", -EINVAL, 0},
        {"g", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"+1", -EINVAL, 0},
        {"0x10", -EINVAL, 0},
        {"10 ", -EINVAL, 0}, /* whitespace only before a ";" */
        {"10\t", -EINVAL, 0},
        {"10 20", -EINVAL, 0},
        {"10,20", -EINVAL, 0},
        {"10;ext\x01", -EINVAL, 0},
        {"10;ext\x7f", -EINVAL, 0},
        {"10;a\rb", -EINVAL, 0},
        {"1000000000000000", -EINVAL, 0},      /* 16 digits: 2^60 */
        {"ffffffffffffffff", -EINVAL, 0},      /* 2^64 - 1 */
        {"10000000000000000", -EINVAL, 0},     /* 2^64: would wrap to 0 */
        {"100000000000000000001", -EINVAL, 0}, /* would wrap to 1 */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t size = 12345;
        int rc = http_frame_chunk_size(rows[i].line, strlen(rows[i].line), &size);
        if (rc != rows[i].rc)
            fail_msg("\"%s\": rc %d, want %d", rows[i].line, rc, rows[i].rc);
        if (rc == 0 && size != rows[i].size)
            fail_msg("\"%s\": size %llu, want %llu", rows[i].line, (unsigned long long)size,
                     (unsigned long long)rows[i].size);
        if (rc != 0 && size != 12345)
            fail_msg("\"%s\": a refused line wrote *size", rows[i].line);
    }
}

/* The length bounds the line: bytes after LEN are never read. */
static void test_chunk_size_respects_len(void **state)
{
    (void)state;
    uint64_t size = 0;
    assert_int_equal(http_frame_chunk_size("1fxyz", 2, &size), 0);
    assert_int_equal(size, 0x1f);
    assert_int_equal(http_frame_chunk_size("1\0", 2, &size), -EINVAL); /* a NUL is not hex */
    assert_int_equal(http_frame_chunk_size("abc", 0, &size), -EINVAL);
}

/*
 * Leading zeros count as digits: a 16-digit line is refused even when its
 * value is small. http_frame.h documents the refusal as "a size of 2^60 or
 * more"; the code refuses any line of 16 or more hex digits. Pinned here as
 * what the gate does (refusing is the safe side: a 400 and a closed
 * connection); no client pads chunk sizes to 16 digits.
 */
static void test_chunk_size_sixteen_digits_refused(void **state)
{
    (void)state;
    uint64_t size = 0;
    assert_int_equal(http_frame_chunk_size("000000000000001", 15, &size), 0);
    assert_int_equal(size, 1);
    assert_int_equal(http_frame_chunk_size("0000000000000001", 16, &size), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_head),
        cmocka_unit_test(test_chunked_head),
        cmocka_unit_test(test_no_body_heads),
        cmocka_unit_test(test_lenient_but_safe_forms),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_find_field),
        cmocka_unit_test(test_many_fields),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_refusal_keeps_what_parsed),
        cmocka_unit_test(test_head_end),
        cmocka_unit_test(test_pipelined_requests),
        cmocka_unit_test(test_plausible_start),
        cmocka_unit_test(test_chunk_sizes),
        cmocka_unit_test(test_chunk_size_respects_len),
        cmocka_unit_test(test_chunk_size_sixteen_digits_refused),
    };
    return cmocka_run_group_tests_name("http_frame", tests, NULL, NULL);
}
