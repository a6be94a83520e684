/*
 * http_frame: the framing of one HTTP/1.1 request (RFC 9112), judged by
 * mcpgate itself before libevent's evhttp sees a byte of it (http.c's
 * request gate). No I/O and no libevent: a head is one contiguous buffer, so
 * the rules are unit tested and fuzzed on their own.
 *
 * What is refused, and why (F13 of the December review): evhttp 2.1 frames
 * by the first Transfer-Encoding header only, takes "gzip, chunked" or a
 * second TE header as no body, takes TE + CL as chunked, parses
 * "Content-Length: +5" with strtoll and never reads the body of a HEAD.
 * Behind a proxy that frames differently each of these lets a request be
 * smuggled. So a head is refused (400) when it has:
 * - both Transfer-Encoding and Content-Length, more than one Transfer-Encoding
 *   header, or one whose value is not exactly "chunked" (case-insensitive);
 * - a Content-Length that is not 1*DIGIT ("+5", "5,5", "0x5"), with at most
 *   one space or tab before it and none after (" 5" is refused: evhttp trims
 *   spaces only and strtoll skips any whitespace, proxies trim differently,
 *   and on this one field the difference is the framing), or two that differ;
 * - a body (a Content-Length other than 0, or any Transfer-Encoding) on GET,
 *   HEAD, DELETE or OPTIONS, or a Transfer-Encoding on an HTTP/1.0 request;
 * - a malformed request line or field line: not exactly one space between
 *   method, target and version, a version other than HTTP/1.0 or HTTP/1.1, a
 *   target not in origin-form, a field name with whitespace before the colon
 *   or a byte outside tchar, obsolete line folding, a control byte (a NUL, a
 *   CR not followed by LF) anywhere.
 * An unknown method is 501. Lines may end in CRLF or a bare LF (RFC 9112 §2.2
 * allows it; evhttp does the same), and empty lines before the request line
 * are skipped (§2.2).
 */
#ifndef MCPGATE_HTTP_HTTP_FRAME_H
#define MCPGATE_HTTP_HTTP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_frame_span {
    const char *ptr; /* borrowed: into the parsed buffer */
    size_t len;
};

struct http_frame_field {
    struct http_frame_span name;
    struct http_frame_span value; /* without the whitespace around it */
    struct http_frame_span raw;   /* everything after the colon */
};

enum http_frame_body {
    HTTP_FRAME_NO_BODY = 0,
    HTTP_FRAME_LENGTH,  /* Content-Length > 0 */
    HTTP_FRAME_CHUNKED, /* Transfer-Encoding: chunked */
};

struct http_frame_head {
    bool line_ok; /* the request line parsed: method, target and minor are set */
    struct http_frame_span method;
    struct http_frame_span target;
    int minor;                       /* HTTP/1.<minor>, 0 or 1 */
    bool known_method;               /* GET POST PUT PATCH DELETE OPTIONS HEAD */
    bool no_body_method;             /* GET HEAD DELETE OPTIONS */
    struct http_frame_field *fields; /* owned array; the fields parsed before any problem */
    size_t n_fields;
    enum http_frame_body body;
    uint64_t length; /* HTTP_FRAME_LENGTH */
    bool expect_continue;
    int status;          /* 0, or the answer the head gets: 400 or 501 */
    const char *problem; /* static text when status != 0 */
};

/*
 * Where the head in BUF[0..LEN) ends: the offset just past the empty line
 * that closes it, or 0 when more bytes are needed. *SCAN is where the next
 * call resumes (start it at 0 for each head; it never passes LEN).
 */
size_t http_frame_head_end(const char *buf, size_t len, size_t *scan);

/*
 * Whether BUF[0..LEN), the start of a head not complete yet, can still be
 * a request: false as soon as the method holds a byte outside tchar (a TLS
 * ClientHello on a plain-HTTP port, binary junk), so it is refused without
 * waiting for a head that never comes.
 */
bool http_frame_plausible_start(const char *buf, size_t len);

/* Parses a complete head (LEN from http_frame_head_end). Always fills H; clear it after. */
void http_frame_parse_head(const char *buf, size_t len, struct http_frame_head *h);
void http_frame_head_clear(struct http_frame_head *h);

/* The field named NAME (case-insensitive) in H, or NULL. */
const struct http_frame_field *http_frame_find(const struct http_frame_head *h, const char *name);

/*
 * A chunk-size line without its line end (RFC 9112 §7.1): 1*HEXDIG, then
 * optionally whitespace and ";" chunk extensions (ignored). 0 with *SIZE
 * set, or -EINVAL (also for a size of 2^60 or more).
 */
int http_frame_chunk_size(const char *line, size_t len, uint64_t *size);

#endif
