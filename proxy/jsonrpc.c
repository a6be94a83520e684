/*
 * jsonrpc: message inspection on json_scan, the _meta edit, and error
 * texts (jsonrpc.h).
 */
#include "proxy/jsonrpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/panic.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

/* ---- inspection ------------------------------------------------------------ */

struct inspection {
    const char *text;
    struct jsonrpc_msg *m;
    bool jsonrpc_ok;
    bool have_jsonrpc;
    bool duplicate;
    bool have_method;
    bool method_not_string;
};

/* Records REF in *SLOT; a second copy of a key the proxy reads is a duplicate. */
static void take(struct inspection *in, struct json_ref *slot, const struct json_ref *ref)
{
    if (slot->kind != JSON_KIND_NONE)
        in->duplicate = true;
    *slot = *ref;
}

static bool path_is(const struct json_member *mb, const char *a, const char *b)
{
    if (mb->depth >= 1 && strcmp(mb->path[0], a) != 0)
        return false;
    return mb->depth < 2 || strcmp(mb->path[1], b) == 0;
}

static void on_member(const struct json_member *mb, void *arg)
{
    struct inspection *in = arg;
    struct jsonrpc_msg *m = in->m;
    const struct json_ref *v = &mb->value;
    /* Members are counted whatever their key, for the commas of jsonrpc_rewrite. */
    if (mb->depth == 1 && path_is(mb, "params", NULL))
        m->params_members++;
    else if (mb->depth == 1 && path_is(mb, "result", NULL))
        m->result_members++;
    else if (mb->depth == 2 && path_is(mb, "params", "_meta"))
        m->meta_members++;
    if (mb->key_long)
        return;
    const char *k = mb->key;
    if (mb->depth == 0) {
        if (strcmp(k, "jsonrpc") == 0) {
            if (in->have_jsonrpc)
                in->duplicate = true;
            in->have_jsonrpc = true;
            in->jsonrpc_ok = v->kind == JSON_KIND_STRING && v->len == 5 &&
                             memcmp(in->text + v->off, "\"2.0\"", 5) == 0;
        } else if (strcmp(k, "method") == 0) {
            if (in->have_method)
                in->duplicate = true;
            in->have_method = true;
            if (v->kind != JSON_KIND_STRING)
                in->method_not_string = true;
            else if (!json_string_copy(in->text, v, m->method, sizeof(m->method))) {
                m->method[0] = '\0';
                m->method_long = true;
            }
        } else if (strcmp(k, "id") == 0) {
            take(in, &m->id, v);
        } else if (strcmp(k, "params") == 0) {
            take(in, &m->params, v);
        } else if (strcmp(k, "result") == 0) {
            take(in, &m->result, v);
        } else if (strcmp(k, "error") == 0) {
            take(in, &m->error, v);
        }
        return;
    }
    if (mb->depth == 1 && path_is(mb, "params", NULL)) {
        if (strcmp(k, "name") == 0)
            take(in, &m->name, v);
        else if (strcmp(k, "uri") == 0)
            take(in, &m->uri, v);
        else if (strcmp(k, "ref") == 0)
            take(in, &m->ref, v);
        else if (strcmp(k, "requestId") == 0)
            take(in, &m->request_id, v);
        else if (strcmp(k, "progressToken") == 0)
            take(in, &m->progress, v);
        else if (strcmp(k, "_meta") == 0)
            take(in, &m->meta, v);
        return;
    }
    if (mb->depth == 2 && path_is(mb, "params", "_meta")) {
        if (strcmp(k, "progressToken") == 0) {
            take(in, &m->progress_token, v);
        } else if (strcmp(k, "io.modelcontextprotocol/protocolVersion") == 0) {
            take(in, &m->meta_protocol_version, v);
        } else if (strcmp(k, "io.modelcontextprotocol/clientCapabilities") == 0) {
            take(in, &m->meta_client_capabilities, v);
        } else if (strcmp(k, JSONRPC_PRINCIPAL_KEY) == 0) {
            if (m->principal_end)
                in->duplicate = true;
            m->principal_start = mb->start;
            m->principal_end = mb->end;
        }
        return;
    }
    if (mb->depth == 1 && path_is(mb, "result", NULL)) {
        if (strcmp(k, "resultType") == 0)
            take(in, &m->result_type, v);
        else if (strcmp(k, "isError") == 0)
            m->result_is_error = v->kind == JSON_KIND_TRUE;
        else if (strcmp(k, "_meta") == 0)
            take(in, &m->result_meta, v);
        return;
    }
    if (mb->depth == 1 && path_is(mb, "error", NULL)) {
        if (strcmp(k, "code") == 0)
            take(in, &m->error_code, v);
        return;
    }
    if (mb->depth == 2 && path_is(mb, "params", "ref")) {
        if (strcmp(k, "type") == 0)
            take(in, &m->ref_type, v);
        else if (strcmp(k, "name") == 0)
            take(in, &m->ref_name, v);
        else if (strcmp(k, "uri") == 0)
            take(in, &m->ref_uri, v);
    }
}

/* An integer id must survive a JavaScript peer: at most 2^53 - 1 in magnitude. Beyond it the
 * TypeScript SDK answers with a rounded id that matches no request. */
static bool integer_id_ok(const char *text, const struct json_ref *id)
{
    const char *d = text + id->off;
    size_t n = id->len;
    if (*d == '-')
        d++, n--;
    static const char max[] = "9007199254740991";
    return n < sizeof(max) - 1 || (n == sizeof(max) - 1 && memcmp(d, max, n) <= 0);
}

static bool id_usable(const char *text, const struct json_ref *id)
{
    return id->kind == JSON_KIND_STRING ||
           (id->kind == JSON_KIND_NUMBER && id->integer && integer_id_ok(text, id));
}

/* The duplicate members of a params or _meta object that is reached twice are
 * reported for both copies; the copies are the duplicate, so that is fine. */
static void classify(struct inspection *in, const struct json_ref *top)
{
    struct jsonrpc_msg *m = in->m;
    if (top->kind != JSON_KIND_OBJECT) {
        m->invalid = "not a JSON-RPC 2.0 message (not an object)";
        return;
    }
    m->end = top->off + top->len - 1;
    if (in->duplicate) {
        m->invalid = "a JSON-RPC member appears twice";
        return;
    }
    if (!in->jsonrpc_ok) {
        m->invalid = "not a JSON-RPC 2.0 message (jsonrpc must be \"2.0\")";
        return;
    }
    if (in->have_method) {
        if (in->method_not_string) {
            m->invalid = "method must be a string";
            return;
        }
        if (m->result.kind || m->error.kind) {
            m->invalid = "a message with a method cannot carry result or error";
            return;
        }
        if (m->id.kind == JSON_KIND_NONE) {
            m->kind = JSONRPC_NOTIFICATION;
            return;
        }
        if (!id_usable(in->text, &m->id)) {
            m->invalid = "the id of a request must be a string or an integer (|id| < 2^53)";
            return;
        }
        m->kind = JSONRPC_REQUEST;
    } else {
        bool result = m->result.kind != JSON_KIND_NONE, error = m->error.kind != JSON_KIND_NONE;
        if (m->id.kind == JSON_KIND_NONE || result == error) {
            m->invalid = "not a JSON-RPC 2.0 message (no method, and not a response)";
            return;
        }
        m->kind = JSONRPC_RESPONSE; /* an error response may carry a null id */
    }
    m->id_key = jsonrpc_id_key(in->text, &m->id);
}

int jsonrpc_inspect(const char *text, size_t len, struct jsonrpc_msg *m)
{
    memset(m, 0, sizeof(*m));
    struct inspection in = {.text = text, .m = m};
    static const struct json_scan_callbacks cb = {.member = on_member};
    struct json_ref top;
    if (json_scan(text, len, &cb, &in, &top, NULL) < 0) {
        memset(m, 0, sizeof(*m));
        m->invalid = "not JSON";
        return -EINVAL;
    }
    classify(&in, &top);
    return 0;
}

void jsonrpc_msg_clear(struct jsonrpc_msg *m)
{
    free(m->id_key);
    memset(m, 0, sizeof(*m));
}

bool jsonrpc_is(const struct jsonrpc_msg *m, const char *method)
{
    return strcmp(m->method, method) == 0;
}

struct batch {
    struct json_ref *elems;
    size_t n, cap;
};

static void on_element(const struct json_ref *v, void *arg)
{
    struct batch *b = arg;
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 8;
        b->elems = xrealloc(b->elems, b->cap * sizeof(*b->elems));
    }
    b->elems[b->n++] = *v;
}

int jsonrpc_batch_split(const char *text, size_t len, struct json_ref **elems, size_t *n)
{
    struct batch b = {0};
    static const struct json_scan_callbacks cb = {.element = on_element};
    struct json_ref top;
    *elems = NULL;
    *n = 0;
    /* Only a text that starts with '[' can be a batch. Anything else is left
     * for jsonrpc_inspect to validate, so a large single message is scanned
     * once, not twice. */
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    if (i == len || text[i] != '[')
        return 0;
    if (json_scan(text, len, &cb, &b, &top, NULL) < 0) {
        free(b.elems);
        return -EINVAL;
    }
    if (top.kind != JSON_KIND_ARRAY) {
        free(b.elems);
        return 0;
    }
    *elems = b.elems ? b.elems : xcalloc(1, sizeof(**elems));
    *n = b.n;
    return 0;
}

char *jsonrpc_id_key(const char *text, const struct json_ref *id)
{
    if (id->kind == JSON_KIND_STRING) {
        char *s = json_string_dup(text, id);
        char *key = xasprintf("s:%s", s);
        free(s);
        return key;
    }
    if (id->kind == JSON_KIND_NUMBER && id->integer) {
        const char *digits = text + id->off;
        size_t n = id->len;
        if (n == 2 && memcmp(digits, "-0", 2) == 0)
            digits = "0", n = 1;
        return xasprintf("n:%.*s", (int)n, digits);
    }
    return NULL;
}

/* ---- the _meta edit ------------------------------------------------------------ */

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The member [start, end) with the comma that joins it to a neighbour. */
static void member_cut(const char *text, size_t len, size_t *start, size_t *end)
{
    size_t e = *end;
    while (e < len && is_ws(text[e]))
        e++;
    if (e < len && text[e] == ',') {
        *end = e + 1;
        return;
    }
    size_t s = *start;
    while (s > 0 && is_ws(text[s - 1]))
        s--;
    if (s > 0 && text[s - 1] == ',')
        *start = s - 1;
}

static void put_flat(struct strbuf *sb, const char *p, size_t n, bool one_line)
{
    if (!one_line) {
        strbuf_append(sb, p, n);
        return;
    }
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        const char *cr = memchr(p, '\r', nl ? (size_t)(nl - p) : n);
        const char *stop = cr ? cr : nl;
        size_t k = stop ? (size_t)(stop - p) : n;
        strbuf_append(sb, p, k);
        if (stop == NULL)
            return;
        strbuf_append(sb, " ", 1);
        p += k + 1;
        n -= k + 1;
    }
}

char *jsonrpc_rewrite(const char *text, size_t len, const struct jsonrpc_msg *m,
                      const char *principal_json, bool one_line, size_t *out_len)
{
    bool has_principal = m->principal_end != 0;
    bool flatten = one_line && (memchr(text, '\n', len) || memchr(text, '\r', len));
    bool params_object = m->params.kind == JSON_KIND_OBJECT;
    bool meta_object = m->meta.kind == JSON_KIND_OBJECT;
    /* Injection needs an object to put it in: params absent or an object, _meta absent or
     * an object. A params of another kind is the upstream's to refuse. */
    bool inject =
        principal_json && (m->params.kind == JSON_KIND_NONE ||
                           (params_object && (m->meta.kind == JSON_KIND_NONE || meta_object)));
    if (!has_principal && !inject && !flatten)
        return NULL;
    size_t cut_start = m->principal_start, cut_end = m->principal_end;
    if (has_principal)
        member_cut(text, len, &cut_start, &cut_end);
    /* Where the new member goes, and what surrounds it. */
    size_t at = len;
    struct strbuf ins = STRBUF_INIT;
    if (inject) {
        if (meta_object) {
            at = m->meta.off + 1;
            bool others = m->meta_members > (has_principal ? 1u : 0u);
            strbuf_printf(&ins, "\"%s\":%s%s", JSONRPC_PRINCIPAL_KEY, principal_json,
                          others ? "," : "");
        } else if (params_object) {
            at = m->params.off + 1;
            strbuf_printf(&ins, "\"_meta\":{\"%s\":%s}%s", JSONRPC_PRINCIPAL_KEY, principal_json,
                          m->params_members ? "," : "");
        } else {
            at = m->end; /* before the message's closing brace; it has members (jsonrpc) */
            strbuf_printf(&ins, ",\"params\":{\"_meta\":{\"%s\":%s}}", JSONRPC_PRINCIPAL_KEY,
                          principal_json);
        }
    }
    struct strbuf out = STRBUF_INIT;
    /* Two edits at most, in text order: the cut (if any) and the insertion point. */
    size_t pos = 0;
    if (has_principal && cut_start < at) {
        put_flat(&out, text, cut_start, one_line);
        pos = cut_end;
    }
    if (inject) {
        GW_ASSERT(at >= pos);
        put_flat(&out, text + pos, at - pos, one_line);
        strbuf_append(&out, ins.buf ? ins.buf : "", ins.len);
        pos = at;
    }
    if (has_principal && cut_start >= at) {
        put_flat(&out, text + pos, cut_start - pos, one_line);
        pos = cut_end;
    }
    put_flat(&out, text + pos, len - pos, one_line);
    strbuf_release(&ins);
    return strbuf_detach(&out, out_len);
}

char *jsonrpc_splice(const char *text, size_t len, const struct json_edit *edits, size_t n,
                     size_t *out_len)
{
    struct strbuf sb = STRBUF_INIT;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        GW_ASSERT(edits[i].start >= pos && edits[i].end >= edits[i].start && edits[i].end <= len);
        strbuf_append(&sb, text + pos, edits[i].start - pos);
        strbuf_append(&sb, edits[i].text, edits[i].len);
        pos = edits[i].end;
    }
    strbuf_append(&sb, text + pos, len - pos);
    return strbuf_detach(&sb, out_len);
}

char *jsonrpc_replace(const char *text, size_t *len, const struct json_ref *ref, const char *json)
{
    struct json_edit e = {ref->off, ref->off + ref->len, json, strlen(json)};
    return jsonrpc_splice(text, *len, &e, 1, len);
}

/* ---- error texts ----------------------------------------------------------------- */

char *jsonrpc_error_text(const char *id_json, size_t id_len, int code, const char *message)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, "{\"jsonrpc\":\"2.0\",\"id\":");
    /* Only an id a request may have is echoed, a string or an integer; anything else
     * (a real such as 1e400 that some parsers refuse, an object) answers as null. */
    bool echo = id_json && id_len && (id_json[0] == '"' && id_json[id_len - 1] == '"');
    if (id_json && id_len && !echo) {
        size_t i = id_json[0] == '-';
        echo = i < id_len && id_len - i <= 18; /* within int64: every parser reads it */
        for (; echo && i < id_len; i++)
            echo = id_json[i] >= '0' && id_json[i] <= '9';
    }
    if (echo)
        strbuf_append(&sb, id_json, id_len);
    else
        strbuf_puts(&sb, "null");
    strbuf_printf(&sb, ",\"error\":{\"code\":%d,\"message\":\"", code);
    for (const unsigned char *p = (const unsigned char *)message; *p; p++) {
        if (*p == '"' || *p == '\\')
            strbuf_printf(&sb, "\\%c", *p);
        else if (*p < 0x20)
            strbuf_printf(&sb, "\\u%04x", *p);
        else
            strbuf_append(&sb, p, 1);
    }
    strbuf_puts(&sb, "\"}}");
    return strbuf_detach(&sb, NULL);
}
