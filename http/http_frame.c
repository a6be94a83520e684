/*
 * http_frame: request framing rules (see http_frame.h). Pure functions over
 * a buffer; the only allocation is the field array of a parsed head.
 */
#include "http/http_frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xalloc.h"

/* RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 * "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 §5.5: field-vchar = VCHAR / obs-text, plus SP and HTAB inside a value. */
static bool is_field_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool span_is(struct http_frame_span s, const char *text)
{
    return s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0;
}

static bool span_is_ci(struct http_frame_span s, const char *text)
{
    return s.len == strlen(text) && strncasecmp(s.ptr, text, s.len) == 0;
}

size_t http_frame_head_end(const char *buf, size_t len, size_t *scan)
{
    size_t i = *scan;
    if (i == 0) {
        /* Empty lines before the request line do not end a head (RFC 9112 §2.2). */
        while (i < len) {
            if (buf[i] == '\n')
                i++;
            else if (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')
                i += 2;
            else
                break;
        }
        if (i == len || (buf[i] == '\r' && i + 1 == len))
            return 0; /* *scan stays 0: the leading lines are looked at again */
    }
    for (; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        /* an empty line right after this LF ends the head: LF, or CR LF */
        if (i + 1 < len && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
        if (i + 1 == len || (i + 2 == len && buf[i + 1] == '\r')) {
            *scan = i; /* resume at this LF once more bytes are in */
            return 0;
        }
    }
    *scan = len;
    return 0;
}

bool http_frame_plausible_start(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
        i++;
    for (; i < len && buf[i] != ' '; i++)
        if (!is_tchar((unsigned char)buf[i]))
            return false;
    return true;
}

static void refuse(struct http_frame_head *h, int status, const char *why)
{
    if (h->status == 0) {
        h->status = status;
        h->problem = why;
    }
}

/* Next line in [*pos, end): its span without the line end; false at the end. */
static bool next_line(const char *buf, size_t end, size_t *pos, struct http_frame_span *line)
{
    if (*pos >= end)
        return false;
    const char *start = buf + *pos;
    const char *lf = memchr(start, '\n', end - *pos);
    size_t n = lf ? (size_t)(lf - start) : end - *pos;
    *pos += n + (lf ? 1 : 0);
    if (n > 0 && start[n - 1] == '\r')
        n--;
    line->ptr = start;
    line->len = n;
    return true;
}

/* A NUL or a CR inside a line: evhttp and a front proxy may split it differently. */
static bool has_control_break(struct http_frame_span s)
{
    return memchr(s.ptr, '\0', s.len) != NULL || memchr(s.ptr, '\r', s.len) != NULL;
}

static void parse_request_line(struct http_frame_span line, struct http_frame_head *h)
{
    static const char *const known[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"};
    const char *sp1 = memchr(line.ptr, ' ', line.len);
    if (sp1 == NULL || sp1 == line.ptr) {
        refuse(h, 400, "malformed request line");
        return;
    }
    struct http_frame_span method = {line.ptr, (size_t)(sp1 - line.ptr)};
    const char *rest = sp1 + 1;
    size_t rest_len = line.len - method.len - 1;
    const char *sp2 = memchr(rest, ' ', rest_len);
    if (sp2 == NULL || sp2 == rest) {
        refuse(h, 400, "malformed request line");
        return;
    }
    struct http_frame_span target = {rest, (size_t)(sp2 - rest)};
    struct http_frame_span version = {sp2 + 1, rest_len - target.len - 1};
    for (size_t i = 0; i < method.len; i++)
        if (!is_tchar((unsigned char)method.ptr[i])) {
            refuse(h, 400, "malformed request line");
            return;
        }
    for (size_t i = 0; i < target.len; i++) {
        unsigned char c = (unsigned char)target.ptr[i];
        if (c <= 0x20 || c == 0x7f) {
            refuse(h, 400, "malformed request line");
            return;
        }
    }
    if (span_is(version, "HTTP/1.1"))
        h->minor = 1;
    else if (span_is(version, "HTTP/1.0"))
        h->minor = 0;
    else {
        refuse(h, 400, "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)");
        return;
    }
    h->line_ok = true;
    h->method = method;
    h->target = target;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (span_is(method, known[i]))
            h->known_method = true;
    h->no_body_method = span_is(method, "GET") || span_is(method, "HEAD") ||
                        span_is(method, "DELETE") || span_is(method, "OPTIONS");
    if (!h->known_method)
        refuse(h, 501, "unsupported method");
    else if (target.ptr[0] != '/')
        refuse(h, 400, "unsupported request target (origin-form only)");
}

/* One field line: name ":" OWS value OWS. False (and H refused) when malformed. */
static bool parse_field(struct http_frame_span line, struct http_frame_field *f,
                        struct http_frame_head *h)
{
    if (line.ptr[0] == ' ' || line.ptr[0] == '\t') {
        refuse(h, 400, "obsolete line folding in a header field");
        return false;
    }
    const char *colon = memchr(line.ptr, ':', line.len);
    if (colon == NULL) {
        refuse(h, 400, "a header line without a colon");
        return false;
    }
    f->name.ptr = line.ptr;
    f->name.len = (size_t)(colon - line.ptr);
    if (f->name.len == 0) {
        refuse(h, 400, "an empty header field name");
        return false;
    }
    for (size_t i = 0; i < f->name.len; i++)
        if (!is_tchar((unsigned char)f->name.ptr[i])) {
            /* RFC 9112 §5.1: whitespace before the colon MUST be refused */
            refuse(h, 400, "invalid header field name");
            return false;
        }
    const char *v = colon + 1;
    const char *end = line.ptr + line.len;
    f->raw.ptr = v;
    f->raw.len = (size_t)(end - v);
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (const char *p = v; p < end; p++)
        if (!is_field_byte((unsigned char)*p)) {
            refuse(h, 400, "a control character in a header field value");
            return false;
        }
    f->value.ptr = v;
    f->value.len = (size_t)(end - v);
    return true;
}

/* 1*DIGIT, at most 18 digits (below 2^63): false otherwise. */
static bool parse_length(struct http_frame_span v, uint64_t *out)
{
    if (v.len == 0 || v.len > 18)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v.ptr[i] - '0');
    }
    *out = n;
    return true;
}

/* The framing fields: Content-Length, Transfer-Encoding, Expect (RFC 9112 §6). */
static void judge_framing(struct http_frame_head *h)
{
    const struct http_frame_span *cl = NULL;
    size_t n_te = 0;
    bool te_chunked = true;
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct http_frame_field *f = &h->fields[i];
        if (span_is_ci(f->name, "Content-Length")) {
            uint64_t n;
            size_t lead = f->raw.len - f->value.len; /* no whitespace after: all of it leads */
            bool tight = lead <= 1 && (f->value.len == 0 || f->raw.ptr + lead == f->value.ptr);
            if (!tight || !parse_length(f->value, &n)) {
                refuse(h, 400, "invalid Content-Length");
                return;
            }
            /* RFC 9112 §6.3 (5): differing values leave the framing unknown */
            if (cl && (cl->len != f->value.len || memcmp(cl->ptr, f->value.ptr, cl->len) != 0)) {
                refuse(h, 400, "conflicting Content-Length headers");
                return;
            }
            cl = &f->value;
            h->length = n;
        } else if (span_is_ci(f->name, "Transfer-Encoding")) {
            n_te++;
            te_chunked = te_chunked && span_is_ci(f->value, "chunked");
        } else if (span_is_ci(f->name, "Expect")) {
            h->expect_continue = span_is_ci(f->value, "100-continue");
        }
    }
    if (n_te > 0 && cl)
        refuse(h, 400, "both Transfer-Encoding and Content-Length");
    else if (n_te > 1)
        refuse(h, 400, "more than one Transfer-Encoding header");
    else if (n_te == 1 && !te_chunked)
        refuse(h, 400, "unsupported Transfer-Encoding (only chunked is accepted)");
    else if (n_te == 1 && h->minor == 0)
        refuse(h, 400, "Transfer-Encoding in an HTTP/1.0 request");
    else if (h->no_body_method && (n_te > 0 || h->length > 0))
        refuse(h, 400, "this method must not carry a body");
    if (h->status)
        return;
    h->body = n_te ? HTTP_FRAME_CHUNKED : h->length > 0 ? HTTP_FRAME_LENGTH : HTTP_FRAME_NO_BODY;
}

void http_frame_parse_head(const char *buf, size_t len, struct http_frame_head *h)
{
    memset(h, 0, sizeof(*h));
    size_t pos = 0;
    while (pos < len &&
           (buf[pos] == '\n' || (buf[pos] == '\r' && pos + 1 < len && buf[pos + 1] == '\n')))
        pos += buf[pos] == '\n' ? 1 : 2;
    struct http_frame_span line;
    if (!next_line(buf, len, &pos, &line) || line.len == 0) {
        refuse(h, 400, "malformed request line");
        return;
    }
    if (has_control_break(line)) {
        refuse(h, 400, "a control character in the request line");
        return;
    }
    parse_request_line(line, h);
    size_t cap = 0;
    while (next_line(buf, len, &pos, &line) && line.len > 0) {
        if (has_control_break(line)) {
            refuse(h, 400, "a control character in a header line");
            break;
        }
        struct http_frame_field f;
        if (!parse_field(line, &f, h))
            break;
        if (h->n_fields == cap) {
            cap = cap ? cap * 2 : 16;
            h->fields = xrealloc(h->fields, cap * sizeof(*h->fields));
        }
        h->fields[h->n_fields++] = f;
    }
    if (h->status == 0 || h->line_ok)
        judge_framing(h);
}

void http_frame_head_clear(struct http_frame_head *h)
{
    free(h->fields);
    h->fields = NULL;
    h->n_fields = 0;
}

const struct http_frame_field *http_frame_find(const struct http_frame_head *h, const char *name)
{
    for (size_t i = 0; i < h->n_fields; i++)
        if (span_is_ci(h->fields[i].name, name))
            return &h->fields[i];
    return NULL;
}

int http_frame_chunk_size(const char *line, size_t len, uint64_t *size)
{
    uint64_t n = 0;
    size_t i = 0;
    for (; i < len; i++) {
        char c = line[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            break;
        if (i >= 15)
            return -EINVAL; /* 16 hex digits reach 2^60: no body of ours is that big */
        n = n * 16 + (uint64_t)d;
    }
    if (i == 0)
        return -EINVAL;
    /* chunk-ext = *( BWS ";" ... ): whitespace only before a ";" */
    size_t j = i;
    while (j < len && (line[j] == ' ' || line[j] == '\t'))
        j++;
    if (j < len && line[j] != ';')
        return -EINVAL;
    if (j == len && j > i)
        return -EINVAL;
    for (; j < len; j++)
        if (!is_field_byte((unsigned char)line[j]))
            return -EINVAL;
    *size = n;
    return 0;
}
