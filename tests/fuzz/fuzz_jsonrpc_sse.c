/*
 * fuzz_jsonrpc_sse: what the proxy reads from an upstream MCP server.
 *
 * 1. The SSE parser (proxy/sse.c, bound 64 KiB) fed in pieces whose sizes
 *    come from a PRNG seeded with the first input bytes. Checked: the events
 *    do not depend on how the bytes were cut (a second parser gets the input
 *    in one piece), and each event survives sse_format() and a new parse as
 *    the proxy re-frames it for the client (proxy/http_upstream.c).
 * 2. The input, and each event's data, inspected as the proxy does
 *    (jsonrpc_inspect) and run through the list filters with a fixed route
 *    and principal. Checked: a request has an id key; an error answer built
 *    from the id is JSON; the filter removes exactly what policy_check
 *    denies; the filtered text has no raw newline (STDIO and SSE framing
 *    rely on it).
 */
#include "tests/fuzz/fuzz.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/strbuf.h"
#include "proxy/jsonrpc.h"
#include "proxy/policy.h"
#include "proxy/sse.h"

#define SSE_MAX_EVENT_BYTES (64u * 1024)

/* ---- the fixed route and principal ---------------------------------------- */

#define LIST(...)                                                                                  \
    {                                                                                              \
        (char *[]){__VA_ARGS__}, sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)                  \
    }

static struct gw_access_rule tool_rules[] = {
    {.match = "delete_*", .roles = LIST("manager"), .line = 1},
    {.match = "admin_*", .deny = true, .line = 2},
    {.match = "report_?", .groups = LIST("finance"), .line = 3},
    {.match = "write_*", .scopes = LIST("mcp:write"), .line = 4},
    {.match = "*", .scopes = LIST("mcp:tools"), .line = 5},
};
static struct gw_access_rule prompt_rules[] = {
    {.match = "public_*", .line = 6},
    {.match = "team_[ab]*", .groups = LIST("eng"), .line = 7},
};
static struct gw_access_rule resource_rules[] = {
    {.match = "file:///secret/*", .deny = true, .line = 8},
    {.match = "file:///*", .roles = LIST("staff"), .line = 9},
};

static struct gw_route_config route = {
    .name = "fuzz",
    .path = "/mcp/fuzz",
    .tools = {tool_rules, sizeof(tool_rules) / sizeof(tool_rules[0]), GW_POLICY_ALLOW},
    .prompts = {prompt_rules, sizeof(prompt_rules) / sizeof(prompt_rules[0]), GW_POLICY_DENY},
    .resources = {resource_rules, sizeof(resource_rules) / sizeof(resource_rules[0]),
                  GW_POLICY_ALLOW},
};

static struct mg_principal principal = {
    .subject = "user-1",
    .roles = LIST("staff"),
    .groups = LIST("eng"),
    .scopes = LIST("mcp:tools"),
    .client_id = "client-1",
};

static const char *const list_methods[] = {"tools/list", "prompts/list", "resources/list",
                                           "resources/templates/list"};

/* ---- JSON-RPC --------------------------------------------------------------- */

static void filter_one(const char *text, size_t len, const json_t *msg, const char *method)
{
    json_t *copy = json_deep_copy(msg);
    const char *key = strcmp(method, "tools/list") == 0       ? "tools"
                      : strcmp(method, "prompts/list") == 0   ? "prompts"
                      : strcmp(method, "resources/list") == 0 ? "resources"
                                                              : "resourceTemplates";
    const char *field = NULL;
    const struct gw_access_rules *rules = policy_rules_for(&route, method, &field);
    FUZZ_CHECK(rules && field, "no rules for %s", method);
    json_t *items = json_object_get(json_object_get(copy, "result"), key);
    size_t before = json_is_array(items) ? json_array_size(items) : 0;
    size_t removed = policy_filter_list(copy, method, &route, &principal);
    size_t after = json_is_array(items) ? json_array_size(items) : 0;
    FUZZ_CHECK(removed == before - after, "%s: removed %zu, %zu -> %zu", method, removed, before,
               after);
    for (size_t i = 0; i < after; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(items, i), field));
        FUZZ_CHECK(name != NULL, "%s: entry %zu kept without a %s", method, i, field);
        char *normal = rules == &route.resources ? policy_normalize_uri(name) : NULL;
        struct policy_verdict v = policy_check(rules, &principal, normal ? normal : name);
        FUZZ_CHECK(v.decision != POLICY_DENY, "%s: denied \"%s\" kept", method, name);
        free(normal);
    }
    json_decref(copy);
    /* The text form the proxy uses: one line, and only when something was removed. */
    size_t out_len = 0;
    char *out = policy_filter_text(text, len, method, &route, &principal, &out_len);
    if (out) {
        FUZZ_CHECK(removed > 0, "%s: filtered text though nothing was removed", method);
        FUZZ_CHECK(memchr(out, '\n', out_len) == NULL && memchr(out, '\r', out_len) == NULL,
                   "filtered text has a raw line break");
        free(out);
    }
}

static void jsonrpc_one(const char *text, size_t len)
{
    struct jsonrpc_msg m;
    if (jsonrpc_inspect(text, len, &m) < 0)
        return;
    if (m.kind == JSONRPC_REQUEST)
        FUZZ_CHECK(m.id_key != NULL && (m.method[0] || m.method_long),
                   "request without an id key or method");
    if (m.kind == JSONRPC_NOTIFICATION)
        FUZZ_CHECK(m.id.kind == JSON_KIND_NONE, "notification with an id");
    if (m.kind == JSONRPC_RESPONSE && m.id.kind != JSON_KIND_NULL)
        FUZZ_CHECK(m.id_key != NULL || m.id.kind != JSON_KIND_STRING, "response id without a key");
    char *err = jsonrpc_error_text(m.id.kind ? text + m.id.off : NULL, m.id.len,
                                   JSONRPC_GATEWAY_FORBIDDEN, "denied by policy");
    FUZZ_CHECK(strchr(err, '\n') == NULL, "error text has a newline: %s", err);
    json_error_t jerr;
    json_t *parsed = json_loads(err, 0, &jerr);
    FUZZ_CHECK(parsed != NULL, "error text is not JSON: %s", err);
    json_decref(parsed);
    free(err);
    json_t *msg = json_loadb(text, len, 0, &jerr);
    for (size_t i = 0; msg && i < sizeof(list_methods) / sizeof(list_methods[0]); i++)
        filter_one(text, len, msg, list_methods[i]);
    json_decref(msg);
    jsonrpc_msg_clear(&m);
}

/* ---- SSE ------------------------------------------------------------------ */

struct sse_log {
    struct strbuf sb; /* every event, length-prefixed so nothing can run together */
    size_t n;
    bool deep; /* also re-frame and parse the data as JSON-RPC */
};

static void log_field(struct strbuf *sb, char tag, const char *s)
{
    if (s)
        strbuf_printf(sb, "%c%zu:%s", tag, strlen(s), s);
    else
        strbuf_printf(sb, "%c-", tag);
}

struct one_event {
    int n;
    char *id, *event, *data;
};

static void on_reparsed(const struct sse_event *ev, void *arg)
{
    struct one_event *o = arg;
    if (o->n++ || ev->comment)
        return;
    o->id = ev->id ? strdup(ev->id) : NULL;
    o->event = ev->event ? strdup(ev->event) : NULL;
    o->data = strdup(ev->data);
}

static bool same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The proxy re-frames upstream events with sse_format(): the client must read the same event. */
static void check_reframe(const struct sse_event *ev)
{
    char *wire = sse_format(ev->id, ev->event, ev->data);
    struct one_event o = {0};
    struct sse_parser *p = sse_parser_new(SIZE_MAX, on_reparsed, &o);
    FUZZ_CHECK(sse_parser_feed(p, wire, strlen(wire)) == 0, "re-parse failed");
    sse_parser_free(p);
    FUZZ_CHECK(o.n == 1, "sse_format gave %d events", o.n);
    FUZZ_CHECK(same(o.id, ev->id), "id changed by sse_format");
    FUZZ_CHECK(same(o.event, ev->event), "event changed by sse_format");
    /* "data: a\ndata:\n\n" is "a\n": the trailing newline must survive (fixed in ed8a9f9). */
    FUZZ_CHECK(same(o.data, ev->data), "data of %zu bytes came back as %zu bytes: %s",
               strlen(ev->data), o.data ? strlen(o.data) : 0, wire);
    free(o.id);
    free(o.event);
    free(o.data);
    free(wire);
}

static void on_event(const struct sse_event *ev, void *arg)
{
    struct sse_log *log = arg;
    log->n++;
    if (ev->comment) {
        FUZZ_CHECK(!ev->id && !ev->event && !ev->data, "comment event with fields");
        log_field(&log->sb, 'c', ev->comment);
        return;
    }
    FUZZ_CHECK(ev->data != NULL, "event without data");
    FUZZ_CHECK(!ev->id || !strpbrk(ev->id, "\r\n"), "id with a line break");
    FUZZ_CHECK(!ev->event || !strpbrk(ev->event, "\r\n"), "event name with a line break");
    log_field(&log->sb, 'i', ev->id);
    log_field(&log->sb, 'e', ev->event);
    log_field(&log->sb, 'd', ev->data);
    if (log->deep) {
        check_reframe(ev);
        jsonrpc_one(ev->data, strlen(ev->data));
    }
}

/* splitmix64: piece sizes reproducible from the input alone. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void sse_side(const uint8_t *data, size_t size)
{
    uint64_t seed = 0;
    for (size_t i = 0; i < size && i < 8; i++)
        seed = seed << 8 | data[i];

    struct sse_log pieces = {.sb = STRBUF_INIT, .deep = true};
    struct sse_parser *p = sse_parser_new(SSE_MAX_EVENT_BYTES, on_event, &pieces);
    int rc_pieces = 0;
    for (size_t off = 0; off < size && rc_pieces == 0;) {
        uint64_t r = next_rand(&seed);
        /* mostly small pieces (a byte at a time included), now and then a large one */
        size_t n = (r & 3) ? 1 + (size_t)((r >> 8) % 16) : 1 + (size_t)((r >> 8) % 4096);
        if (n > size - off)
            n = size - off;
        rc_pieces = sse_parser_feed(p, (const char *)data + off, n);
        off += n;
    }
    sse_parser_free(p);

    struct sse_log whole = {.sb = STRBUF_INIT};
    p = sse_parser_new(SSE_MAX_EVENT_BYTES, on_event, &whole);
    int rc_whole = sse_parser_feed(p, (const char *)data, size);
    sse_parser_free(p);

    FUZZ_CHECK(rc_pieces == 0 || rc_pieces == -E2BIG, "feed rc %d", rc_pieces);
    FUZZ_CHECK(rc_pieces == rc_whole, "rc %d in pieces, %d whole", rc_pieces, rc_whole);
    FUZZ_CHECK(pieces.n == whole.n && pieces.sb.len == whole.sb.len &&
                   (whole.sb.len == 0 || memcmp(pieces.sb.buf, whole.sb.buf, whole.sb.len) == 0),
               "%zu events in pieces, %zu whole", pieces.n, whole.n);
    strbuf_release(&pieces.sb);
    strbuf_release(&whole.sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sse_side(data, size);
    jsonrpc_one((const char *)data, size);
    return 0;
}
