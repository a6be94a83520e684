/*
 * json_scan: a validating one-pass JSON scanner that reports byte ranges
 * (json_scan.h). Recursive descent over the text; recursion is bounded by
 * JSON_SCAN_MAX_DEPTH, counted per value as jansson counts it.
 */
#include "common/json_scan.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/xalloc.h"

struct scanner {
    const unsigned char *s;
    size_t len, pos;
    const struct json_scan_callbacks *cb;
    void *arg;
    unsigned depth; /* values open, as jansson counts them */
    const char *path[JSON_SCAN_INDEX_DEPTH];
    char keys[JSON_SCAN_INDEX_DEPTH][JSON_SCAN_KEY_MAX];
    const char *what; /* the error, NULL while the text is fine */
    size_t where;
};

static bool fail(struct scanner *sc, const char *what)
{
    if (sc->what == NULL) {
        sc->what = what;
        sc->where = sc->pos;
    }
    return false;
}

static void skip_ws(struct scanner *sc)
{
    while (sc->pos < sc->len) {
        unsigned char c = sc->s[sc->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        sc->pos++;
    }
}

/* Byte classes inside strings: 0 plain ASCII, 1 needs a look ('"', '\\',
 * control characters), 2 the first byte of a UTF-8 sequence, 3 invalid. */
static const unsigned char string_class[256] = {
    /* 0x00-0x1f: control characters */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    /* 0x20-0x7f: '"' and '\\' */
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    /* 0x80-0xc1: continuation bytes and overlong leads */
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    /* 0xe0-0xff: 3- and 4-byte leads up to 0xf4 */
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
    3,
};

/* One UTF-8 sequence starting at s[pos] (a class-2 byte): its length, or 0 when
 * invalid (bad continuation, overlong, surrogate, above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (left < n)
        return 0;
    uint32_t cp = c & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* Appends the UTF-8 encoding of CP to OUT (at *N, SIZE bytes, one kept for the NUL). */
static void put_utf8(char *out, size_t size, size_t *n, bool *cut, uint32_t cp)
{
    char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | cp >> 12);
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        b[0] = (char)(0xf0 | cp >> 18);
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    if (*n + k >= size) {
        *cut = true;
        return;
    }
    memcpy(out + *n, b, k);
    *n += k;
}

/*
 * The escape starting at the backslash S[0]: its length and the code point
 * in *CP, or 0 when invalid. A high surrogate must be followed by an escaped
 * low one; a low one alone, and \u0000, are invalid (as in jansson).
 */
static size_t escape_at(const unsigned char *s, size_t left, uint32_t *cp)
{
    if (left < 2)
        return 0;
    switch (s[1]) {
    case '"': *cp = '"'; return 2;
    case '\\': *cp = '\\'; return 2;
    case '/': *cp = '/'; return 2;
    case 'b': *cp = '\b'; return 2;
    case 'f': *cp = '\f'; return 2;
    case 'n': *cp = '\n'; return 2;
    case 'r': *cp = '\r'; return 2;
    case 't': *cp = '\t'; return 2;
    case 'u': break;
    default: return 0;
    }
    if (left < 6)
        return 0;
    int v = hex4(s + 2);
    if (v < 0)
        return 0;
    if (v >= 0xdc00 && v <= 0xdfff)
        return 0; /* a low surrogate alone */
    if (v >= 0xd800 && v <= 0xdbff) {
        if (left < 12 || s[6] != '\\' || s[7] != 'u')
            return 0;
        int lo = hex4(s + 8);
        if (lo < 0xdc00 || lo > 0xdfff)
            return 0;
        *cp = 0x10000 + ((uint32_t)(v - 0xd800) << 10) + (uint32_t)(lo - 0xdc00);
        return 12;
    }
    if (v == 0)
        return 0; /* \u0000: jansson refuses NUL characters without JSON_ALLOW_NUL */
    *cp = (uint32_t)v;
    return 6;
}

/*
 * Where the run of plain ASCII string bytes (class 0) that starts at POS
 * ends. This loop is where a large message spends its time in mcpgate (a
 * 1 MiB tool result is one string), so it looks at many bytes per step.
 *
 * With SSE2 (every x86-64): 32 bytes per step, and the test is exact, so a
 * hit is the answer: a byte is not plain when it equals '"' or '\\' or is
 * below 0x20 as a signed byte, which takes in every byte with its top bit set
 * (class 2 or 3) along with the control characters.
 *
 * Elsewhere: eight bytes per step in a word, plain when no byte is below 0x20,
 * is '"' or '\\', or has its top bit set (the "has a zero byte" tests of
 * Hacker's Delight §6.1: a borrow can only make a false hit above a true one
 * in the same word, so a word with a hit is finished one byte at a time from
 * the table). memcpy keeps the loads free of alignment and aliasing
 * assumptions; compilers make it one 8-byte load.
 */
#if defined(__SSE2__)
static size_t plain_run(const unsigned char *s, size_t pos, size_t len)
{
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (len - pos >= 32) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + pos));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + pos + 16));
        __m128i ha = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(a, quote), _mm_cmpeq_epi8(a, bslash)),
                                  _mm_cmplt_epi8(a, space));
        __m128i hb = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(b, quote), _mm_cmpeq_epi8(b, bslash)),
                                  _mm_cmplt_epi8(b, space));
        uint32_t hit = (uint32_t)_mm_movemask_epi8(ha) | (uint32_t)_mm_movemask_epi8(hb) << 16;
        if (hit)
            return pos + (size_t)__builtin_ctz(hit);
        pos += 32;
    }
    while (pos < len && string_class[s[pos]] == 0)
        pos++;
    return pos;
}
#else
static size_t plain_run(const unsigned char *s, size_t pos, size_t len)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (len - pos >= 8) {
        uint64_t w;
        memcpy(&w, s + pos, 8);
        uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
        /* "| w": a byte with its top bit set is itself a hit (class 2 or 3). */
        uint64_t hit = ((w - ones * 0x20) | (quote - ones) | (bslash - ones) | w) & highs;
        if (hit)
            break;
        pos += 8;
    }
    while (pos < len && string_class[s[pos]] == 0)
        pos++;
    return pos;
}
#endif

/*
 * A string at s[pos] == '"'. Validates it and, when OUT is not NULL,
 * decodes it into OUT (SIZE bytes, NUL-terminated; *CUT when it did not fit).
 */
static bool scan_string(struct scanner *sc, struct json_ref *ref, char *out, size_t size, bool *cut)
{
    const unsigned char *s = sc->s;
    size_t start = sc->pos++, n = 0;
    for (;;) {
        /* The fast path: a run of plain ASCII. */
        size_t run = plain_run(s, sc->pos, sc->len);
        if (out && run > sc->pos) {
            size_t k = run - sc->pos;
            if (n + k >= size) {
                k = n < size - 1 ? size - 1 - n : 0;
                *cut = true;
            }
            memcpy(out + n, s + sc->pos, k);
            n += k;
        }
        sc->pos = run;
        if (sc->pos >= sc->len)
            return fail(sc, "unterminated string");
        unsigned char c = s[sc->pos];
        if (c == '"') {
            sc->pos++;
            break;
        }
        switch (string_class[c]) {
        case 1: {
            if (c != '\\')
                return fail(sc, "control character in a string");
            uint32_t cp;
            size_t k = escape_at(s + sc->pos, sc->len - sc->pos, &cp);
            if (k == 0)
                return fail(sc, "invalid escape in a string");
            if (out)
                put_utf8(out, size, &n, cut, cp);
            sc->pos += k;
            break;
        }
        case 2: {
            size_t m = utf8_seq(s + sc->pos, sc->len - sc->pos);
            if (m == 0)
                return fail(sc, "invalid UTF-8");
            if (out) {
                if (n + m >= size)
                    *cut = true;
                else {
                    memcpy(out + n, s + sc->pos, m);
                    n += m;
                }
            }
            sc->pos += m;
            break;
        }
        default: return fail(sc, "invalid UTF-8");
        }
    }
    if (out)
        out[n] = '\0';
    ref->kind = JSON_KIND_STRING;
    ref->off = start;
    ref->len = sc->pos - start;
    return true;
}

static bool digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool scan_number(struct scanner *sc, struct json_ref *ref)
{
    const unsigned char *s = sc->s;
    size_t start = sc->pos, p = sc->pos, len = sc->len;
    bool integer = true;
    if (p < len && s[p] == '-')
        p++;
    if (p < len && s[p] == '0') {
        p++;
        if (p < len && digit(s[p]))
            return fail(sc, "a number with a leading zero");
    } else if (p < len && digit(s[p])) {
        while (p < len && digit(s[p]))
            p++;
    } else {
        return fail(sc, "invalid number");
    }
    if (p < len && s[p] == '.') {
        integer = false;
        p++;
        if (p >= len || !digit(s[p]))
            return fail(sc, "invalid number");
        while (p < len && digit(s[p]))
            p++;
    }
    if (p < len && (s[p] == 'e' || s[p] == 'E')) {
        integer = false;
        p++;
        if (p < len && (s[p] == '+' || s[p] == '-'))
            p++;
        if (p >= len || !digit(s[p]))
            return fail(sc, "invalid number");
        while (p < len && digit(s[p]))
            p++;
    }
    sc->pos = p;
    ref->kind = JSON_KIND_NUMBER;
    ref->off = start;
    ref->len = p - start;
    ref->integer = integer;
    return true;
}

static bool scan_word(struct scanner *sc, struct json_ref *ref, const char *word,
                      enum json_kind kind)
{
    size_t n = strlen(word);
    if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n) != 0)
        return fail(sc, "invalid token");
    /* jansson reads a whole identifier: "truex" is one invalid token */
    size_t end = sc->pos + n;
    if (end < sc->len && ((sc->s[end] | 0x20) >= 'a' && (sc->s[end] | 0x20) <= 'z'))
        return fail(sc, "invalid token");
    ref->kind = kind;
    ref->off = sc->pos;
    ref->len = n;
    sc->pos = end;
    return true;
}

static bool scan_value(struct scanner *sc, struct json_ref *ref, int level);

/* An object at s[pos] == '{'. LEVEL >= 0: its members are reported, at that depth. */
static bool scan_object(struct scanner *sc, struct json_ref *ref, int level)
{
    size_t start = sc->pos++;
    skip_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == '}') {
        sc->pos++;
        goto done;
    }
    for (;;) {
        skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
            return fail(sc, "a key or '}' expected");
        struct json_member m = {.key_long = false};
        struct json_ref key;
        m.start = sc->pos;
        bool indexed = level >= 0;
        if (!scan_string(sc, &key, indexed ? m.key : NULL, sizeof(m.key), &m.key_long))
            return false;
        skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
            return fail(sc, "':' expected");
        sc->pos++;
        skip_ws(sc);
        int child = -1;
        if (indexed && level + 1 < JSON_SCAN_INDEX_DEPTH && !m.key_long) {
            memcpy(sc->keys[level], m.key, sizeof(m.key));
            sc->path[level] = sc->keys[level];
            child = level + 1;
        }
        if (!scan_value(sc, &m.value, child))
            return false;
        if (indexed && sc->cb && sc->cb->member) {
            m.end = sc->pos;
            m.depth = (unsigned)level;
            m.path = sc->path;
            m.object_off = start;
            sc->cb->member(&m, sc->arg);
        }
        skip_ws(sc);
        if (sc->pos < sc->len && sc->s[sc->pos] == ',') {
            sc->pos++;
            continue;
        }
        if (sc->pos < sc->len && sc->s[sc->pos] == '}') {
            sc->pos++;
            break;
        }
        return fail(sc, "',' or '}' expected");
    }
done:
    ref->kind = JSON_KIND_OBJECT;
    ref->off = start;
    ref->len = sc->pos - start;
    return true;
}

/* An array at s[pos] == '['. TOP: its elements are reported (a batch). */
static bool scan_array(struct scanner *sc, struct json_ref *ref, bool top)
{
    size_t start = sc->pos++;
    skip_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == ']') {
        sc->pos++;
        goto done;
    }
    for (;;) {
        skip_ws(sc);
        struct json_ref el;
        if (!scan_value(sc, &el, -1))
            return false;
        if (top && sc->cb && sc->cb->element)
            sc->cb->element(&el, sc->arg);
        skip_ws(sc);
        if (sc->pos < sc->len && sc->s[sc->pos] == ',') {
            sc->pos++;
            continue;
        }
        if (sc->pos < sc->len && sc->s[sc->pos] == ']') {
            sc->pos++;
            break;
        }
        return fail(sc, "',' or ']' expected");
    }
done:
    ref->kind = JSON_KIND_ARRAY;
    ref->off = start;
    ref->len = sc->pos - start;
    return true;
}

/* LEVEL: for an object, the depth its members are reported at, or -1. */
static bool scan_value(struct scanner *sc, struct json_ref *ref, int level)
{
    memset(ref, 0, sizeof(*ref));
    if (++sc->depth > JSON_SCAN_MAX_DEPTH)
        return fail(sc, "nested too deeply");
    if (sc->pos >= sc->len)
        return fail(sc, "a value expected");
    bool ok;
    switch (sc->s[sc->pos]) {
    case '{': ok = scan_object(sc, ref, level); break;
    case '[': ok = scan_array(sc, ref, sc->depth == 1); break;
    case '"': ok = scan_string(sc, ref, NULL, 0, NULL); break;
    case 't': ok = scan_word(sc, ref, "true", JSON_KIND_TRUE); break;
    case 'f': ok = scan_word(sc, ref, "false", JSON_KIND_FALSE); break;
    case 'n': ok = scan_word(sc, ref, "null", JSON_KIND_NULL); break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9': ok = scan_number(sc, ref); break;
    default: ok = fail(sc, "invalid token"); break;
    }
    sc->depth--;
    return ok;
}

int json_scan(const char *text, size_t len, const struct json_scan_callbacks *cb, void *arg,
              struct json_ref *top, struct json_scan_error *err)
{
    struct scanner sc = {.s = (const unsigned char *)text, .len = len, .cb = cb, .arg = arg};
    struct json_ref dummy;
    if (top == NULL)
        top = &dummy;
    skip_ws(&sc);
    bool ok = scan_value(&sc, top, 0);
    if (ok) {
        skip_ws(&sc);
        if (sc.pos != sc.len)
            ok = fail(&sc, "text after the value");
    }
    if (!ok) {
        if (err) {
            err->offset = sc.where;
            err->what = sc.what;
        }
        memset(top, 0, sizeof(*top));
        return -EINVAL;
    }
    return 0;
}

/* Decodes a string json_scan validated (so every escape and sequence is well formed). */
static size_t decode(const char *text, const struct json_ref *ref, char *out, size_t size,
                     bool *cut)
{
    const unsigned char *s = (const unsigned char *)text + ref->off + 1;
    size_t left = ref->len - 2, n = 0;
    while (left > 0) {
        if (*s == '\\') {
            uint32_t cp = 0;
            size_t k = escape_at(s, left, &cp);
            put_utf8(out, size, &n, cut, cp);
            s += k, left -= k;
        } else {
            if (n + 1 >= size) {
                *cut = true;
            } else {
                out[n++] = (char)*s;
            }
            s++, left--;
        }
    }
    out[n] = '\0';
    return n;
}

char *json_string_dup(const char *text, const struct json_ref *ref)
{
    /* The decoded text is never longer than the quoted one. */
    char *out = xmalloc(ref->len);
    bool cut = false;
    decode(text, ref, out, ref->len, &cut);
    return out;
}

bool json_string_copy(const char *text, const struct json_ref *ref, char *out, size_t size)
{
    bool cut = false;
    if (size == 0)
        return false;
    decode(text, ref, out, size, &cut);
    return !cut;
}
