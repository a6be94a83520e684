/*
 * log: one JSON object per line on stderr (or a chosen fd).
 *
 *   {"time":"2026-11-26T10:31:53.123Z","level":"info","module":"http",
 *    "request_id":"…","msg":"…", <fields>}
 *
 * Values whose key names a secret are masked before they are written: a key is
 * secret when one of its components (split on '_', '-', '.') is one of token,
 * secret, authorization, cookie, code, password, or when it is "set-cookie".
 * So never name a non-secret field "…_code"; use "…_status".
 *
 * Not thread-safe by design: mcpgate has one thread (the event loop).
 */
#ifndef MCPGATE_COMMON_LOG_H
#define MCPGATE_COMMON_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gw_log_level {
    GW_LOG_DEBUG = 0,
    GW_LOG_INFO,
    GW_LOG_WARN,
    GW_LOG_ERROR,
};

/* Parses "debug", "info", "warn"/"warning", "error". Returns 0 or -EINVAL. */
int gw_log_level_parse(const char *name, enum gw_log_level *out);
const char *gw_log_level_name(enum gw_log_level level);

void gw_log_set_level(enum gw_log_level level);
enum gw_log_level gw_log_get_level(void);
bool gw_log_enabled(enum gw_log_level level);
/* Where lines go (default 2, stderr). Tests point it at a pipe or file. */
void gw_log_set_fd(int fd);

/*
 * One line with string fields: pairs of (const char *key, const char *value),
 * ended by NULL. A NULL value is written as JSON null.
 *   gw_log(GW_LOG_WARN, "store", NULL, "redis down", "addr", addr, NULL);
 */
void gw_log(enum gw_log_level level, const char *module, const char *request_id, const char *msg,
            ...) __attribute__((sentinel));

/*
 * A line with typed fields. gw_log_begin returns NULL when the level is
 * disabled; every other call accepts NULL, so call sites need no branches.
 * gw_log_end writes the line and frees the builder.
 */
struct gw_log_line;
struct gw_log_line *gw_log_begin(enum gw_log_level level, const char *module,
                                 const char *request_id, const char *msg);
void gw_log_str(struct gw_log_line *line, const char *key, const char *value);
void gw_log_strn(struct gw_log_line *line, const char *key, const char *value, size_t len);
void gw_log_int(struct gw_log_line *line, const char *key, int64_t value);
void gw_log_bool(struct gw_log_line *line, const char *key, bool value);
void gw_log_end(struct gw_log_line *line);

/* True when a field with this key would be masked (exposed for tests). */
bool gw_log_key_is_secret(const char *key);

#endif
