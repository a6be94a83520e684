/*
 * protocol: JSON-RPC 2.0 over the MCP stdio transport. Parses each line,
 * tells requests, notifications and responses apart, answers batches as one
 * array, and keeps the answers owed for later (struct ws_op): the slow tool
 * and tool calls waiting on the client's answer to sampling or elicitation.
 *
 * Owns: the ops list and the batches they share (a batch is freed when its
 * last answer is in), and every message until it is queued on stdout.
 */
#include "whoami.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ws_server_init(struct ws_server *srv)
{
    memset(srv, 0, sizeof(*srv));
    snprintf(srv->log_level, sizeof(srv->log_level), "info");
}

void ws_server_free(struct ws_server *srv)
{
    ws_ops_abandon(srv);
    ws_outq_clear(&srv->out);
}

bool ws_version_at_least(const struct ws_server *srv, const char *version)
{
    /* Versions are dates, YYYY-MM-DD: they sort as strings. */
    return srv->version[0] != '\0' && strcmp(srv->version, version) >= 0;
}

void ws_send(struct ws_server *srv, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    WS_ASSERT(text != NULL); /* only our own, valid values get here */
    size_t len = strlen(text);
    /* MCP stdio: messages MUST NOT contain embedded newlines. JSON_COMPACT
     * adds none and jansson escapes those inside strings. */
    WS_ASSERT(memchr(text, '\n', len) == NULL);
    text = ws_xrealloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    ws_outq_push(&srv->out, text, len + 1);
    json_decref(msg);
}

/* ---- building messages ---------------------------------------------------- */

static json_t *rpc_message_new(const json_t *id)
{
    json_t *msg = json_object();
    json_object_set_new(msg, "jsonrpc", json_string("2.0"));
    json_object_set_new(msg, "id", id != NULL ? json_deep_copy(id) : json_null());
    return msg;
}

static json_t *rpc_result_new(const json_t *id, json_t *result)
{
    json_t *msg = rpc_message_new(id);
    json_object_set_new(msg, "result", result);
    return msg;
}

static json_t *rpc_error_obj_new(int code, const char *fmt, va_list ap)
{
    char text[512];
    vsnprintf(text, sizeof(text), fmt, ap);
    json_t *error = json_object();
    json_object_set_new(error, "code", json_integer(code));
    /* The text may quote the client's input, cut anywhere by vsnprintf. */
    json_object_set_new(error, "message", ws_json_string_lossy(text, strlen(text)));
    return error;
}

static json_t *rpc_error_new(const json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *rpc_error_new(const json_t *id, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *msg = rpc_message_new(id);
    json_object_set_new(msg, "error", rpc_error_obj_new(code, fmt, ap));
    va_end(ap);
    return msg;
}

json_t *ws_fail(struct ws_call *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_decref(c->error);
    c->error = rpc_error_obj_new(code, fmt, ap);
    va_end(ap);
    return NULL;
}

/* ---- batches ---------------------------------------------------------------- */

static void batch_release(struct ws_server *srv, struct ws_batch *b)
{
    WS_ASSERT(b->outstanding > 0);
    if (--b->outstanding > 0)
        return;
    /* JSON-RPC 2.0 §6: a batch of notifications only gets no answer at all. */
    if (json_array_size(b->responses) > 0)
        ws_send(srv, b->responses);
    else
        json_decref(b->responses);
    free(b);
}

static void deliver(struct ws_server *srv, struct ws_batch *b, json_t *msg)
{
    if (b == NULL) {
        ws_send(srv, msg);
        return;
    }
    json_array_append_new(b->responses, msg);
    batch_release(srv, b);
}

/* ---- answers owed (ops) ------------------------------------------------------- */

struct ws_op *ws_op_new(struct ws_call *c, enum ws_op_kind kind)
{
    struct ws_server *srv = c->srv;
    struct ws_op *op = ws_xcalloc(1, sizeof(*op));
    op->kind = kind;
    op->id = json_deep_copy(c->id);
    op->batch = c->batch;
    if (op->batch != NULL)
        op->batch->outstanding++;
    op->next = srv->ops;
    srv->ops = op;
    c->pending = true;
    return op;
}

/* Unlinks and frees OP; returns its batch, which the caller must release. */
static struct ws_batch *op_free(struct ws_server *srv, struct ws_op *op)
{
    struct ws_op **p = &srv->ops;
    while (*p != op)
        p = &(*p)->next;
    *p = op->next;
    struct ws_batch *b = op->batch;
    json_decref(op->id);
    json_decref(op->progress_token);
    free(op);
    return b;
}

void ws_op_finish(struct ws_server *srv, struct ws_op *op, json_t *result)
{
    json_t *msg = rpc_result_new(op->id, result);
    deliver(srv, op_free(srv, op), msg); /* deliver() releases the op's hold on its batch */
}

void ws_op_drop(struct ws_server *srv, struct ws_op *op)
{
    struct ws_batch *b = op_free(srv, op);
    if (b != NULL)
        batch_release(srv, b);
}

void ws_client_request(struct ws_call *c, const char *method, json_t *params,
                       ws_client_result_fn on_result)
{
    struct ws_server *srv = c->srv;
    struct ws_op *op = ws_op_new(c, WS_OP_CLIENT_REQUEST);
    snprintf(op->srv_id, sizeof(op->srv_id), "srv-%u", ++srv->next_srv_id);
    op->on_result = on_result;
    /* LC25 §"Timeouts": senders SHOULD set one, then cancel and stop waiting. */
    op->due_ms = ws_now_ms() + WS_CLIENT_REQUEST_TIMEOUT_MS;
    json_t *msg = json_object();
    json_object_set_new(msg, "jsonrpc", json_string("2.0"));
    json_object_set_new(msg, "id", json_string(op->srv_id));
    json_object_set_new(msg, "method", json_string(method));
    json_object_set_new(msg, "params", params);
    ws_send(srv, msg);
}

/* Tells the client we no longer want the answer to our request OP. */
static void cancel_client_request(struct ws_server *srv, const struct ws_op *op, const char *reason)
{
    json_t *msg = json_object();
    json_object_set_new(msg, "jsonrpc", json_string("2.0"));
    json_object_set_new(msg, "method", json_string("notifications/cancelled"));
    json_t *params = json_object();
    json_object_set_new(params, "requestId", json_string(op->srv_id));
    json_object_set_new(params, "reason", json_string(reason));
    json_object_set_new(msg, "params", params);
    ws_send(srv, msg);
}

uint64_t ws_ops_next_due_ms(const struct ws_server *srv)
{
    uint64_t due = UINT64_MAX;
    for (const struct ws_op *op = srv->ops; op != NULL; op = op->next)
        if (op->due_ms < due)
            due = op->due_ms;
    return due;
}

static void client_request_timeout(struct ws_server *srv, struct ws_op *op)
{
    static const char text[] = "no answer from the client in time";
    ws_log("%s: %s", op->srv_id, text);
    cancel_client_request(srv, op, "timed out");
    ws_op_finish(srv, op, ws_text_result(text, sizeof(text) - 1, true));
}

void ws_ops_run_due(struct ws_server *srv, uint64_t now_ms)
{
    /* Restart the scan after each event: an event may free any op. */
    for (;;) {
        struct ws_op *op = srv->ops;
        while (op != NULL && op->due_ms > now_ms)
            op = op->next;
        if (op == NULL)
            return;
        if (op->kind == WS_OP_SLOW)
            ws_slow_tick(srv, op);
        else
            client_request_timeout(srv, op);
    }
}

size_t ws_ops_abandon(struct ws_server *srv)
{
    size_t n = 0;
    while (srv->ops != NULL) {
        ws_op_drop(srv, srv->ops);
        n++;
    }
    return n;
}

static struct ws_op *op_find_by_request_id(struct ws_server *srv, const json_t *id)
{
    for (struct ws_op *op = srv->ops; op != NULL; op = op->next)
        if (json_equal(op->id, id))
            return op;
    return NULL;
}

static struct ws_op *op_find_by_srv_id(struct ws_server *srv, const char *srv_id)
{
    for (struct ws_op *op = srv->ops; op != NULL; op = op->next)
        if (op->kind == WS_OP_CLIENT_REQUEST && strcmp(op->srv_id, srv_id) == 0)
            return op;
    return NULL;
}

/* ---- incoming messages ---------------------------------------------------------- */

static bool id_is_valid(const json_t *id)
{
    /* MCP basic §"Requests": a string or an integer, never null. */
    return json_is_string(id) || json_is_integer(id);
}

/* U25 cancellation: stop the work and do not answer; unknown ids are ignored. */
static void handle_cancelled(struct ws_server *srv, const json_t *params)
{
    const json_t *request_id = json_object_get(params, "requestId");
    struct ws_op *op = request_id != NULL ? op_find_by_request_id(srv, request_id) : NULL;
    if (op == NULL)
        return;
    if (op->kind == WS_OP_CLIENT_REQUEST)
        cancel_client_request(srv, op, "the tool call was cancelled");
    ws_op_drop(srv, op);
}

static void handle_notification(struct ws_server *srv, const char *method, const json_t *params)
{
    if (strcmp(method, "notifications/initialized") == 0) {
        if (srv->state == WS_STATE_INITIALIZING)
            srv->state = WS_STATE_READY;
        else
            ws_log("notifications/initialized before initialize or twice; ignored");
    } else if (strcmp(method, "notifications/cancelled") == 0) {
        handle_cancelled(srv, params);
    }
    /* Others (progress, roots/list_changed, ...) need nothing from us. */
}

/* The client's answer to one of our requests (sampling, elicitation). */
static void handle_response(struct ws_server *srv, const json_t *msg)
{
    const char *srv_id = json_string_value(json_object_get(msg, "id"));
    struct ws_op *op = srv_id != NULL ? op_find_by_srv_id(srv, srv_id) : NULL;
    if (op == NULL) {
        ws_log("a response to no pending request of ours; ignored");
        return;
    }
    ws_op_finish(srv, op, op->on_result(srv, msg));
}

static json_t *handle_request(struct ws_server *srv, json_t *msg, json_t *id,
                              struct ws_batch *batch)
{
    const char *name = json_string_value(json_object_get(msg, "method"));
    struct ws_call c = {.srv = srv, .id = id, .batch = batch};
    c.params = json_object_get(msg, "params");
    const struct ws_method *m = ws_method_find(name);
    json_t *result = NULL;
    if (m == NULL)
        ws_fail(&c, WS_METHOD_NOT_FOUND, "Method not found: %.200s", name);
    else if (c.params != NULL && !json_is_object(c.params))
        ws_fail(&c, WS_INVALID_PARAMS, "params must be an object");
    else if (srv->state == WS_STATE_NEW && !m->before_init)
        ws_fail(&c, WS_INVALID_REQUEST, "Server not initialized: send initialize first");
    else
        result = m->fn(&c);
    if (c.pending) {
        WS_ASSERT(result == NULL && c.error == NULL);
        return NULL;
    }
    if (c.error != NULL) {
        json_decref(result);
        json_t *reply = rpc_message_new(id);
        json_object_set_new(reply, "error", c.error);
        return reply;
    }
    WS_ASSERT(result != NULL);
    return rpc_result_new(id, result);
}

/* One message, alone or from a batch. Returns the answer to send now, or
 * NULL (a notification, a response, or an answer owed for later). */
static json_t *handle_message(struct ws_server *srv, json_t *msg, struct ws_batch *batch)
{
    if (!json_is_object(msg))
        return rpc_error_new(NULL, WS_INVALID_REQUEST, "Invalid Request: not an object");
    json_t *id = json_object_get(msg, "id");
    json_t *method = json_object_get(msg, "method");
    const char *jsonrpc = json_string_value(json_object_get(msg, "jsonrpc"));
    bool v2 = jsonrpc != NULL && strcmp(jsonrpc, "2.0") == 0;
    const json_t *reply_id = id_is_valid(id) ? id : NULL;

    if (method == NULL) {
        bool response = id != NULL && (json_object_get(msg, "result") != NULL ||
                                       json_object_get(msg, "error") != NULL);
        if (!response)
            return rpc_error_new(reply_id, WS_INVALID_REQUEST, "Invalid Request");
        if (v2)
            handle_response(srv, msg);
        else
            ws_log("a response without \"jsonrpc\": \"2.0\"; ignored");
        return NULL;
    }
    if (id == NULL) { /* a notification is never answered, even an invalid one */
        if (v2 && json_is_string(method))
            handle_notification(srv, json_string_value(method), json_object_get(msg, "params"));
        else
            ws_log("an invalid notification; ignored");
        return NULL;
    }
    if (!v2)
        return rpc_error_new(reply_id, WS_INVALID_REQUEST, "Invalid Request: jsonrpc must be 2.0");
    if (!json_is_string(method))
        return rpc_error_new(reply_id, WS_INVALID_REQUEST, "Invalid Request: method not a string");
    if (reply_id == NULL)
        return rpc_error_new(NULL, WS_INVALID_REQUEST,
                             "Invalid Request: id must be a string or an integer");
    return handle_request(srv, msg, id, batch);
}

static bool batches_allowed(const struct ws_server *srv)
{
    /* JSON-RPC batches: supported by 2025-03-26 (basic §"Batching"), removed
     * in 2025-06-18. 2024-11-05 inherits them from JSON-RPC 2.0 §6. */
    return !ws_version_at_least(srv, "2025-06-18");
}

static void handle_batch(struct ws_server *srv, json_t *array)
{
    if (json_array_size(array) == 0) {
        ws_send(srv, rpc_error_new(NULL, WS_INVALID_REQUEST, "Invalid Request: empty batch"));
        return;
    }
    if (!batches_allowed(srv)) {
        ws_send(srv,
                rpc_error_new(NULL, WS_INVALID_REQUEST,
                              "Invalid Request: protocol version %s has no batches", srv->version));
        return;
    }
    struct ws_batch *b = ws_xcalloc(1, sizeof(*b));
    b->responses = json_array();
    b->outstanding = 1; /* held while the elements are handled */
    size_t i;
    json_t *msg;
    json_array_foreach (array, i, msg) {
        json_t *reply = handle_message(srv, msg, b);
        if (reply != NULL)
            json_array_append_new(b->responses, reply);
    }
    batch_release(srv, b);
}

static bool is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

void ws_handle_line(struct ws_server *srv, const char *line, size_t len)
{
    if (is_blank(line, len))
        return;
    json_error_t err;
    /* DECODE_ANY: a bare scalar is valid JSON but an invalid request (-32600),
     * not a parse error. ALLOW_NUL: "\u0000" is valid JSON too. */
    json_t *msg =
        json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (msg == NULL) {
        ws_log("parse error at line position %d: %s", err.position, err.text);
        ws_send(srv, rpc_error_new(NULL, WS_PARSE_ERROR, "Parse error: %s", err.text));
        return;
    }
    if (json_is_array(msg)) {
        handle_batch(srv, msg);
    } else {
        json_t *reply = handle_message(srv, msg, NULL);
        if (reply != NULL)
            ws_send(srv, reply);
    }
    json_decref(msg);
}

void ws_handle_too_long(struct ws_server *srv)
{
    ws_log("a line longer than %u bytes; skipped", WS_MAX_LINE_BYTES);
    ws_send(srv, rpc_error_new(NULL, WS_PARSE_ERROR, "Parse error: message longer than %u bytes",
                               WS_MAX_LINE_BYTES));
}
