/*
 * log: JSON lines on one fd. A line is built in a stack-local buffer that
 * grows on the heap only for long lines, then written with one write(2) so
 * lines from the gateway and its children never interleave mid-line.
 */
#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/xalloc.h"

#define LOG_INLINE_BYTES 1024
#define LOG_MAX_VALUE_BYTES 8192 /* a longer value is cut and marked */

struct gw_log_line {
    char *buf; /* owned when != inline_buf */
    size_t len;
    size_t cap;
    char inline_buf[LOG_INLINE_BYTES];
};

static enum gw_log_level log_level = GW_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int gw_log_level_parse(const char *name, enum gw_log_level *out)
{
    if (strcmp(name, "warning") == 0) {
        *out = GW_LOG_WARN;
        return 0;
    }
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum gw_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *gw_log_level_name(enum gw_log_level level)
{
    if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
        return "unknown";
    return level_names[level];
}

void gw_log_set_level(enum gw_log_level level)
{
    log_level = level;
}

enum gw_log_level gw_log_get_level(void)
{
    return log_level;
}

bool gw_log_enabled(enum gw_log_level level)
{
    return level >= log_level;
}

void gw_log_set_fd(int fd)
{
    log_fd = fd;
}

bool gw_log_key_is_secret(const char *key)
{
    static const char *const secret_words[] = {"token",  "secret", "authorization",
                                               "cookie", "code",   "password"};
    if (strcasecmp(key, "set-cookie") == 0)
        return true;
    const char *p = key;
    while (*p) {
        size_t n = strcspn(p, "_-.");
        for (size_t i = 0; i < sizeof(secret_words) / sizeof(secret_words[0]); i++) {
            if (n == strlen(secret_words[i]) && strncasecmp(p, secret_words[i], n) == 0)
                return true;
        }
        p += n;
        if (*p)
            p++;
    }
    return false;
}

static void line_reserve(struct gw_log_line *l, size_t more)
{
    if (l->len + more <= l->cap)
        return;
    size_t cap = l->cap * 2;
    while (cap < l->len + more)
        cap *= 2;
    if (l->buf == l->inline_buf) {
        char *heap = xmalloc(cap);
        memcpy(heap, l->buf, l->len);
        l->buf = heap;
    } else {
        l->buf = xrealloc(l->buf, cap);
    }
    l->cap = cap;
}

static void line_put(struct gw_log_line *l, const char *s, size_t n)
{
    line_reserve(l, n);
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void line_puts(struct gw_log_line *l, const char *s)
{
    line_put(l, s, strlen(s));
}

/* JSON string body per RFC 8259 §7; bytes >= 0x80 pass through (UTF-8 is the
 * caller's business; invalid UTF-8 stays invalid rather than being mangled). */
static void line_put_escaped(struct gw_log_line *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    bool cut = n > LOG_MAX_VALUE_BYTES;
    if (cut)
        n = LOG_MAX_VALUE_BYTES;
    line_reserve(l, n + 2);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': line_put(l, "\\\"", 2); break;
        case '\\': line_put(l, "\\\\", 2); break;
        case '\n': line_put(l, "\\n", 2); break;
        case '\r': line_put(l, "\\r", 2); break;
        case '\t': line_put(l, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                line_put(l, esc, 6);
            } else {
                line_reserve(l, 1);
                l->buf[l->len++] = (char)c;
            }
        }
    }
    if (cut)
        line_puts(l, "…[cut]");
}

static void line_key(struct gw_log_line *l, const char *key)
{
    line_put(l, ",\"", 2);
    line_put_escaped(l, key, strlen(key));
    line_put(l, "\":", 2);
}

struct gw_log_line *gw_log_begin(enum gw_log_level level, const char *module,
                                 const char *request_id, const char *msg)
{
    if (!gw_log_enabled(level))
        return NULL;
    struct gw_log_line *l = xmalloc(sizeof(*l));
    l->buf = l->inline_buf;
    l->len = 0;
    l->cap = sizeof(l->inline_buf);

    struct timeval tv;
    struct tm tm;
    char ts[64];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

    line_puts(l, "{\"time\":\"");
    line_puts(l, ts);
    line_puts(l, "\",\"level\":\"");
    line_puts(l, gw_log_level_name(level));
    line_puts(l, "\",\"module\":\"");
    line_put_escaped(l, module ? module : "-", strlen(module ? module : "-"));
    line_puts(l, "\"");
    if (request_id) {
        line_puts(l, ",\"request_id\":\"");
        line_put_escaped(l, request_id, strlen(request_id));
        line_puts(l, "\"");
    }
    line_puts(l, ",\"msg\":\"");
    line_put_escaped(l, msg ? msg : "", strlen(msg ? msg : ""));
    line_puts(l, "\"");
    return l;
}

void gw_log_strn(struct gw_log_line *l, const char *key, const char *value, size_t len)
{
    if (l == NULL || key == NULL)
        return;
    line_key(l, key);
    if (value == NULL) {
        line_puts(l, "null");
    } else if (gw_log_key_is_secret(key)) {
        line_puts(l, "\"***\"");
    } else {
        line_put(l, "\"", 1);
        line_put_escaped(l, value, len);
        line_put(l, "\"", 1);
    }
}

void gw_log_str(struct gw_log_line *l, const char *key, const char *value)
{
    gw_log_strn(l, key, value, value ? strlen(value) : 0);
}

void gw_log_int(struct gw_log_line *l, const char *key, int64_t value)
{
    if (l == NULL || key == NULL)
        return;
    char num[32];
    line_key(l, key);
    if (gw_log_key_is_secret(key)) {
        line_puts(l, "\"***\"");
        return;
    }
    snprintf(num, sizeof(num), "%lld", (long long)value);
    line_puts(l, num);
}

void gw_log_bool(struct gw_log_line *l, const char *key, bool value)
{
    if (l == NULL || key == NULL)
        return;
    line_key(l, key);
    line_puts(l, value ? "true" : "false");
}

void gw_log_end(struct gw_log_line *l)
{
    if (l == NULL)
        return;
    line_put(l, "}\n", 2);
    size_t off = 0;
    while (off < l->len) {
        ssize_t w = write(log_fd, l->buf + off, l->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break; /* nowhere left to report a failing log fd */
        }
        off += (size_t)w;
    }
    if (l->buf != l->inline_buf)
        free(l->buf);
    free(l);
}

void gw_log(enum gw_log_level level, const char *module, const char *request_id, const char *msg,
            ...)
{
    struct gw_log_line *l = gw_log_begin(level, module, request_id, msg);
    if (l == NULL)
        return;
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL)
            break;
        const char *value = va_arg(ap, const char *);
        gw_log_str(l, key, value);
    }
    va_end(ap);
    gw_log_end(l);
}
