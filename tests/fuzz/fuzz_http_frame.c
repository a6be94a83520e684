/*
 * fuzz_http_frame: http/http_frame.c, the request framing mcpgate judges
 * before libevent sees a byte (the F13 request-smuggling rules).
 *
 * The input is a head (and whatever follows it). Checked for every input:
 *  - http_frame_head_end finds the same end fed in one piece and fed byte by
 *    byte through its resumable *scan, and never reads or resumes past LEN;
 *  - a head judged acceptable (status 0) has a known method, a minor version
 *    of 0 or 1, an origin-form target, and a framing that nothing could read
 *    another way: at most one Content-Length, all digits, equal to LENGTH;
 *    no Content-Length next to a Transfer-Encoding; one Transfer-Encoding of
 *    exactly "chunked"; no body on GET, HEAD, DELETE or OPTIONS;
 *  - every span lies inside the buffer; a refused head names its problem;
 *  - http_frame_chunk_size accepts only lines that start with a hex digit,
 *    and its size is below 2^60.
 */
#include "tests/fuzz/fuzz.h"

#include <ctype.h>
#include <stdbool.h>
#include <strings.h>

#include "http/http_frame.h"

static bool inside(const char *buf, size_t len, struct http_frame_span s)
{
    return s.len == 0 || (s.ptr >= buf && s.ptr + s.len <= buf + len);
}

static bool span_ci(struct http_frame_span s, const char *text)
{
    return s.len == strlen(text) && strncasecmp(s.ptr, text, s.len) == 0;
}

static void check_head(const char *buf, size_t len)
{
    struct http_frame_head h;
    http_frame_parse_head(buf, len, &h);
    FUZZ_CHECK(h.status == 0 || h.status == 400 || h.status == 501, "status %d", h.status);
    FUZZ_CHECK(h.status == 0 || h.problem != NULL, "a refusal without a problem");
    FUZZ_CHECK(inside(buf, len, h.method) && inside(buf, len, h.target), "line spans");
    size_t n_cl = 0, n_te = 0;
    for (size_t i = 0; i < h.n_fields; i++) {
        const struct http_frame_field *f = &h.fields[i];
        FUZZ_CHECK(inside(buf, len, f->name) && inside(buf, len, f->value) &&
                       inside(buf, len, f->raw),
                   "field %zu spans", i);
        n_cl += span_ci(f->name, "content-length");
        n_te += span_ci(f->name, "transfer-encoding");
    }
    if (h.status == 0) {
        FUZZ_CHECK(h.line_ok && h.known_method, "accepted without a request line");
        FUZZ_CHECK(h.minor == 0 || h.minor == 1, "HTTP/1.%d accepted", h.minor);
        FUZZ_CHECK(h.target.len > 0 && h.target.ptr[0] == '/', "target not in origin-form");
        FUZZ_CHECK(!(n_cl && n_te), "Content-Length with Transfer-Encoding accepted");
        FUZZ_CHECK(n_te <= 1, "two Transfer-Encoding headers accepted");
        if (n_te) {
            const struct http_frame_field *te = http_frame_find(&h, "transfer-encoding");
            FUZZ_CHECK(te && span_ci(te->value, "chunked"), "a coding other than chunked");
            FUZZ_CHECK(h.body == HTTP_FRAME_CHUNKED && h.minor == 1, "TE not read as chunked");
        }
        if (n_cl) {
            const struct http_frame_field *cl = http_frame_find(&h, "content-length");
            uint64_t v = 0;
            for (size_t i = 0; i < cl->value.len; i++) {
                FUZZ_CHECK(isdigit((unsigned char)cl->value.ptr[i]), "Content-Length not digits");
                v = v * 10 + (uint64_t)(cl->value.ptr[i] - '0');
            }
            FUZZ_CHECK(cl->value.len > 0, "empty Content-Length accepted");
            FUZZ_CHECK(v == 0 ? h.body == HTTP_FRAME_NO_BODY
                              : (h.body == HTTP_FRAME_LENGTH && h.length == v),
                       "Content-Length %llu read as %llu", (unsigned long long)v,
                       (unsigned long long)h.length);
        }
        if (!n_cl && !n_te)
            FUZZ_CHECK(h.body == HTTP_FRAME_NO_BODY, "a body from nowhere");
        if (h.no_body_method)
            FUZZ_CHECK(h.body == HTTP_FRAME_NO_BODY, "a body on GET/HEAD/DELETE/OPTIONS");
    }
    http_frame_head_clear(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t scan = 0;
    size_t whole = http_frame_head_end(buf, size, &scan);
    FUZZ_CHECK(scan <= size, "scan %zu past %zu", scan, size);
    FUZZ_CHECK(whole <= size, "end %zu past %zu", whole, size);
    /* Byte by byte, as a slow client sends it. */
    size_t step = 0, end = 0;
    scan = 0;
    for (size_t have = 1; have <= size && end == 0; have++) {
        end = http_frame_head_end(buf, have, &scan);
        FUZZ_CHECK(scan <= have, "scan %zu past %zu", scan, have);
        step = have;
    }
    (void)step;
    FUZZ_CHECK(end == whole, "end %zu byte by byte, %zu in one piece", end, whole);
    if (whole)
        check_head(buf, whole);
    (void)http_frame_plausible_start(buf, size);

    /* The bytes after the head as a chunk-size line (up to the first LF). */
    const char *line = buf + whole;
    size_t rest = size - whole;
    const char *lf = memchr(line, '\n', rest);
    size_t n = lf ? (size_t)(lf - line) : rest;
    uint64_t chunk = 0;
    if (http_frame_chunk_size(line, n, &chunk) == 0) {
        FUZZ_CHECK(n > 0 && isxdigit((unsigned char)line[0]), "a chunk size without a hex digit");
        FUZZ_CHECK(chunk < (1ull << 60), "chunk size %llu", (unsigned long long)chunk);
    }
    return 0;
}
