/*
 * tools: the whoami server's tools. Each is a row of ws_tools (name,
 * schemas, function). A tool function returns a CallToolResult, or NULL
 * after ws_fail() (a JSON-RPC error), or NULL with the answer owed for later
 * through an op (slow, sample, elicit).
 *
 * Argument errors follow the client's protocol version: 2025-11-25
 * server/tools §"Error Handling" makes input validation a tool execution
 * error (isError: true) so the model can correct itself; earlier revisions
 * answer invalid arguments with -32602.
 */
#include "whoami.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* JSON text written as C tokens: the preprocessor adds the quotes. */
#define JSON(...) #__VA_ARGS__

struct ws_tool {
    const char *name;
    const char *title;
    const char *description;
    const char *input_schema;  /* JSON text */
    const char *output_schema; /* JSON text; NULL without structuredContent */
    ws_method_fn fn;
};

/* ---- results and arguments --------------------------------------------------- */

json_t *ws_text_result(const char *text, size_t len, bool is_error)
{
    json_t *item = json_object();
    json_object_set_new(item, "type", json_string("text"));
    json_object_set_new(item, "text", ws_json_string_lossy(text, len));
    json_t *content = json_array();
    json_array_append_new(content, item);
    json_t *result = json_object();
    json_object_set_new(result, "content", content);
    if (is_error)
        json_object_set_new(result, "isError", json_true());
    return result;
}

static json_t *text_resultf(bool is_error, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static json_t *text_resultf(bool is_error, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    return ws_text_result(text, strlen(text), is_error);
}

/* TEXT for every client; STRUCTURED (taken) also as structuredContent and as
 * a second text block of JSON (server/tools §"Structured Content": SHOULD). */
static json_t *structured_result(struct ws_call *c, const char *text, json_t *structured)
{
    json_t *result = ws_text_result(text, strlen(text), false);
    char *serialized = json_dumps(structured, JSON_COMPACT);
    json_t *item = json_object();
    json_object_set_new(item, "type", json_string("text"));
    json_object_set_new(item, "text", json_string(serialized));
    free(serialized);
    json_array_append_new(json_object_get(result, "content"), item);
    if (ws_version_at_least(c->srv, "2025-06-18")) /* structuredContent is 2025-06-18+ */
        json_object_set_new(result, "structuredContent", structured);
    else
        json_decref(structured);
    return result;
}

static json_t *bad_args(struct ws_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static json_t *bad_args(struct ws_call *c, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (ws_version_at_least(c->srv, "2025-11-25"))
        return ws_text_result(text, strlen(text), true);
    return ws_fail(c, WS_INVALID_PARAMS, "%s", text);
}

/* A string argument, or NULL when absent or not a string. */
static const char *arg_string(const struct ws_call *c, const char *name, size_t *len)
{
    const json_t *v = json_object_get(c->args, name);
    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

/* False when present and not a number; DEF when absent. */
static bool arg_number(const struct ws_call *c, const char *name, double def, double *out)
{
    const json_t *v = json_object_get(c->args, name);
    *out = v == NULL ? def : json_number_value(v);
    return v == NULL || json_is_number(v);
}

/* False when present and not an integer; DEF when absent. */
static bool arg_integer(const struct ws_call *c, const char *name, json_int_t def, json_int_t *out)
{
    const json_t *v = json_object_get(c->args, name);
    *out = v == NULL ? def : json_integer_value(v);
    return v == NULL || json_is_integer(v);
}

/* ---- whoami, echo, add, manager_report, env_dump, stderr ------------------------ */

static json_t *tool_whoami(struct ws_call *c)
{
    json_t *identity = ws_identity_new(c->params);
    char *text = ws_identity_text_new(identity);
    json_t *result = structured_result(c, text, identity);
    free(text);
    return result;
}

static json_t *tool_echo(struct ws_call *c)
{
    size_t len;
    const char *text = arg_string(c, "text", &len);
    if (text == NULL)
        return bad_args(c, "argument \"text\" must be a string");
    return ws_text_result(text, len, false);
}

static json_t *tool_add(struct ws_call *c)
{
    const json_t *a = json_object_get(c->args, "a");
    const json_t *b = json_object_get(c->args, "b");
    if (!json_is_number(a) || !json_is_number(b))
        return bad_args(c, "arguments \"a\" and \"b\" must be numbers");
    json_t *sum = NULL;
    json_int_t isum;
    if (json_is_integer(a) && json_is_integer(b) &&
        !__builtin_add_overflow(json_integer_value(a), json_integer_value(b), &isum))
        sum = json_integer(isum);
    else
        sum = json_real(json_number_value(a) + json_number_value(b)); /* NULL when not finite */
    if (sum == NULL)
        return bad_args(c, "the sum is not a finite number");
    char *text = json_dumps(sum, JSON_ENCODE_ANY);
    json_decref(sum);
    json_t *result = ws_text_result(text, strlen(text), false);
    free(text);
    return result;
}

static json_t *tool_manager_report(struct ws_call *c)
{
    static const char report[] =
        "Quarterly report, Q3 (fictional data)\n"
        "Revenue: 1,234,567 EUR (+8% on Q2)\n"
        "Operating margin: 14%\n"
        "Headcount: 42, open positions: 5\n"
        "The gateway shows this tool to the manager role only; this server does not check.";
    (void)c;
    return ws_text_result(report, sizeof(report) - 1, false);
}

static json_t *tool_env_dump(struct ws_call *c)
{
    json_t *names = ws_env_names_new();
    size_t i;
    json_t *name;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    WS_ASSERT(out != NULL);
    json_array_foreach (names, i, name) {
        fprintf(out, "%s%s", i ? "\n" : "", json_string_value(name));
    }
    int rc = fclose(out);
    WS_ASSERT(rc == 0);
    json_t *structured = json_object();
    json_object_set_new(structured, "names", names);
    json_t *result = structured_result(c, text, structured);
    free(text);
    return result;
}

static json_t *tool_stderr(struct ws_call *c)
{
    size_t len;
    const char *text = arg_string(c, "text", &len);
    if (text == NULL)
        return bad_args(c, "argument \"text\" must be a string");
    char *line = ws_xmalloc(len + 1);
    for (size_t i = 0; i < len; i++) /* one line: no line breaks, no NULs */
        line[i] = text[i] == '\n' || text[i] == '\r' || text[i] == '\0' ? ' ' : text[i];
    line[len] = '\n';
    fwrite(line, 1, len + 1, stderr); /* stderr is unbuffered: one write(2) */
    free(line);
    return text_resultf(false, "ok: wrote %zu bytes to stderr", len + 1);
}

/* ---- big_line, crash --------------------------------------------------------------- */

static json_t *tool_big_line(struct ws_call *c)
{
    json_int_t bytes;
    if (!arg_integer(c, "bytes", -1, &bytes) || bytes < 0 || bytes > WS_MAX_LINE_BYTES)
        return bad_args(c, "argument \"bytes\" must be an integer from 0 to %u", WS_MAX_LINE_BYTES);
    char *text = ws_xmalloc((size_t)bytes + 1);
    memset(text, 'x', (size_t)bytes);
    json_t *item = json_object();
    json_object_set_new(item, "type", json_string("text"));
    json_object_set_new(item, "text", json_stringn_nocheck(text, (size_t)bytes)); /* ASCII */
    free(text);
    json_t *content = json_array();
    json_array_append_new(content, item);
    json_t *result = json_object();
    json_object_set_new(result, "content", content);
    return result;
}

static _Noreturn void die_by_signal(int signo)
{
    /* A fault test should not leave a core file behind. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    /* The default action, even under a sanitizer's SEGV handler. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(signo, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(signo);
    _exit(128 + signo);
}

static json_t *tool_crash(struct ws_call *c)
{
    static const struct {
        const char *name;
        int signo;
    } signals[] = {{"SEGV", SIGSEGV}, {"ABRT", SIGABRT}, {"KILL", SIGKILL}};
    size_t len;
    const char *sig = arg_string(c, "signal", &len);
    if (sig != NULL) {
        if (strncmp(sig, "SIG", 3) == 0)
            sig += 3;
        for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
            if (strcmp(sig, signals[i].name) == 0) {
                ws_log("crash tool: raising SIG%s", sig);
                die_by_signal(signals[i].signo);
            }
        }
        return bad_args(c, "argument \"signal\" must be SEGV, ABRT or KILL");
    }
    if (json_object_get(c->args, "signal") != NULL)
        return bad_args(c, "argument \"signal\" must be a string");
    json_int_t code;
    if (!arg_integer(c, "code", 1, &code) || code < 0 || code > 255)
        return bad_args(c, "argument \"code\" must be an integer from 0 to 255");
    ws_log("crash tool: exiting with code %d", (int)code);
    _exit((int)code); /* at once: no answer, no flush, no cleanup */
}

/* ---- slow ------------------------------------------------------------------------------ */

static uint64_t slow_step_due_ms(const struct ws_op *op, unsigned step)
{
    return op->start_ms + op->duration_ms * step / op->steps;
}

static json_t *tool_slow(struct ws_call *c)
{
    double seconds;
    json_int_t steps;
    if (!arg_number(c, "seconds", 2.0, &seconds) || !(seconds >= 0 && seconds <= 30))
        return bad_args(c, "argument \"seconds\" must be a number from 0 to 30");
    if (!arg_integer(c, "steps", 4, &steps) || steps < 1 || steps > 1000)
        return bad_args(c, "argument \"steps\" must be an integer from 1 to 1000");
    /* basic/utilities/progress: a token is a string or an integer. */
    json_t *token = json_object_get(json_object_get(c->params, "_meta"), "progressToken");
    if (token != NULL && !json_is_string(token) && !json_is_integer(token))
        return ws_fail(c, WS_INVALID_PARAMS, "progressToken must be a string or an integer");
    struct ws_op *op = ws_op_new(c, WS_OP_SLOW);
    op->progress_token = token != NULL ? json_deep_copy(token) : NULL;
    op->start_ms = ws_now_ms();
    op->duration_ms = (uint64_t)(seconds * 1000.0 + 0.5);
    op->steps = (unsigned)steps;
    op->due_ms = slow_step_due_ms(op, 1);
    return NULL;
}

static void send_progress(struct ws_server *srv, const struct ws_op *op)
{
    json_t *params = json_object();
    json_object_set_new(params, "progressToken", json_deep_copy(op->progress_token));
    json_object_set_new(params, "progress", json_integer(op->step));
    json_object_set_new(params, "total", json_integer(op->steps));
    if (ws_version_at_least(srv, "2025-03-26")) { /* message: 2025-03-26+ */
        char text[64];
        snprintf(text, sizeof(text), "step %u of %u", op->step, op->steps);
        json_object_set_new(params, "message", json_string(text));
    }
    json_t *msg = json_object();
    json_object_set_new(msg, "jsonrpc", json_string("2.0"));
    json_object_set_new(msg, "method", json_string("notifications/progress"));
    json_object_set_new(msg, "params", params);
    ws_send(srv, msg);
}

void ws_slow_tick(struct ws_server *srv, struct ws_op *op)
{
    op->step++;
    /* Progress MUST increase and MUST stop with the answer: the last one is
     * sent just before it. */
    if (op->progress_token != NULL)
        send_progress(srv, op);
    if (op->step < op->steps) {
        op->due_ms = slow_step_due_ms(op, op->step + 1);
        return;
    }
    ws_op_finish(srv, op,
                 text_resultf(false, "done: waited %.3f s in %u steps",
                              (double)op->duration_ms / 1000.0, op->steps));
}

/* ---- sample, elicit --------------------------------------------------------------------- */

static const char *response_error_message(const json_t *response)
{
    const char *m =
        json_string_value(json_object_get(json_object_get(response, "error"), "message"));
    return m != NULL ? m : "(no message)";
}

static json_t *sample_done(struct ws_server *srv, const json_t *response)
{
    (void)srv;
    if (json_object_get(response, "error") != NULL)
        return text_resultf(true, "the client answered sampling/createMessage with an error: %s",
                            response_error_message(response));
    const json_t *content = json_object_get(json_object_get(response, "result"), "content");
    /* 2025-11-25 client/sampling: content is one block or a list of them. */
    size_t n = json_is_array(content) ? json_array_size(content) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *block = json_is_array(content) ? json_array_get(content, i) : content;
        const char *type = json_string_value(json_object_get(block, "type"));
        const json_t *text = json_object_get(block, "text");
        if (type != NULL && strcmp(type, "text") == 0 && json_is_string(text))
            return ws_text_result(json_string_value(text), json_string_length(text), false);
    }
    return text_resultf(true, "the client's sampling result has no text content");
}

static json_t *tool_sample(struct ws_call *c)
{
    size_t len;
    const char *prompt = arg_string(c, "prompt", &len);
    if (prompt == NULL)
        return bad_args(c, "argument \"prompt\" must be a string");
    if (!c->srv->client_sampling)
        return text_resultf(true, "the client did not declare the sampling capability");
    json_t *content = json_object();
    json_object_set_new(content, "type", json_string("text"));
    json_object_set_new(content, "text", json_stringn(prompt, len));
    json_t *message = json_object();
    json_object_set_new(message, "role", json_string("user"));
    json_object_set_new(message, "content", content);
    json_t *messages = json_array();
    json_array_append_new(messages, message);
    json_t *params = json_object();
    json_object_set_new(params, "messages", messages);
    json_object_set_new(params, "maxTokens", json_integer(256));
    ws_client_request(c, "sampling/createMessage", params, sample_done);
    return NULL;
}

static json_t *elicit_done(struct ws_server *srv, const json_t *response)
{
    (void)srv;
    if (json_object_get(response, "error") != NULL)
        return text_resultf(true, "the client answered elicitation/create with an error: %s",
                            response_error_message(response));
    const json_t *result = json_object_get(response, "result");
    const char *action = json_string_value(json_object_get(result, "action"));
    if (action == NULL)
        return text_resultf(true, "the client's elicitation result has no action");
    if (strcmp(action, "decline") == 0 || strcmp(action, "cancel") == 0)
        return ws_text_result(action, strlen(action), false);
    const json_t *answer = json_object_get(json_object_get(result, "content"), "answer");
    if (strcmp(action, "accept") != 0 || !json_is_string(answer))
        return text_resultf(true, "the client's elicitation result is not accept with an answer");
    return ws_text_result(json_string_value(answer), json_string_length(answer), false);
}

static json_t *tool_elicit(struct ws_call *c)
{
    size_t len;
    const char *message = arg_string(c, "message", &len);
    if (message == NULL)
        return bad_args(c, "argument \"message\" must be a string");
    /* client/elicitation exists since 2025-06-18. */
    if (!c->srv->client_elicitation || !ws_version_at_least(c->srv, "2025-06-18"))
        return text_resultf(true, "the client did not declare the elicitation capability");
    json_t *schema =
        json_loads(JSON({
                       "type" : "object",
                       "properties" : {"answer" : {"type" : "string", "title" : "Answer"}},
                       "required" : ["answer"]
                   }),
                   0, NULL);
    WS_ASSERT(schema != NULL);
    json_t *params = json_object();
    if (ws_version_at_least(c->srv, "2025-11-25"))
        json_object_set_new(params, "mode", json_string("form"));
    json_object_set_new(params, "message", json_stringn(message, len));
    json_object_set_new(params, "requestedSchema", schema);
    ws_client_request(c, "elicitation/create", params, elicit_done);
    return NULL;
}

/* ---- the table --------------------------------------------------------------------------- */

static const struct ws_tool ws_tools[] = {
    {
        .name = "whoami",
        .title = "Who am I?",
        .description = "Describes the identity the gateway passed to this server: environment "
                       "variables (MCP_USER_*, MCP_SCOPES, MCP_CLIENT_ID, whether "
                       "MCP_IDENTITY_JWT is set) and params._meta[\"io.mcpgate/principal\"].",
        .input_schema = JSON({"type" : "object", "properties" : {}}),
        .output_schema = JSON({
            "type" : "object",
            "properties" : {"env" : {"type" : "object"}, "meta" : {"type" : [ "object", "null" ]}},
            "required" : [ "env", "meta" ]
        }),
        .fn = tool_whoami,
    },
    {
        .name = "echo",
        .title = "Echo",
        .description = "Returns the text it is given.",
        .input_schema = JSON({
            "type" : "object",
            "properties" : {"text" : {"type" : "string", "description" : "The text to return"}},
            "required" : ["text"]
        }),
        .fn = tool_echo,
    },
    {
        .name = "add",
        .title = "Add",
        .description = "Adds two numbers.",
        .input_schema = JSON({
            "type" : "object",
            "properties" : {"a" : {"type" : "number"}, "b" : {"type" : "number"}},
            "required" : [ "a", "b" ]
        }),
        .fn = tool_add,
    },
    {
        .name = "slow",
        .title = "Slow",
        .description = "Waits SECONDS in STEPS steps, sending progress notifications when the "
                       "request has a progress token. Cancellable.",
        .input_schema = JSON({
            "type" : "object",
            "properties" : {
                "seconds" : {"type" : "number", "minimum" : 0, "maximum" : 30, "default" : 2},
                "steps" : {"type" : "integer", "minimum" : 1, "maximum" : 1000, "default" : 4}
            }
        }),
        .fn = tool_slow,
    },
    {
        .name = "manager_report",
        .title = "Manager report",
        .description = "A quarterly report (fictional). The gateway limits it to managers.",
        .input_schema = JSON({"type" : "object", "properties" : {}}),
        .fn = tool_manager_report,
    },
    {
        .name = "sample",
        .title = "Sample",
        .description = "Asks the client's model (sampling/createMessage), returns its text.",
        .input_schema = JSON({
            "type" : "object",
            "properties" : {"prompt" : {"type" : "string", "description" : "For the model"}},
            "required" : ["prompt"]
        }),
        .fn = tool_sample,
    },
    {
        .name = "elicit",
        .title = "Elicit",
        .description = "Asks the user (elicitation/create), returns the answer or the action.",
        .input_schema = JSON({
            "type" : "object",
            "properties" : {"message" : {"type" : "string", "description" : "For the user"}},
            "required" : ["message"]
        }),
        .fn = tool_elicit,
    },
    {
        .name = "env_dump",
        .title = "Environment names",
        .description = "Lists the names (never the values) of the environment variables this "
                       "process received, sorted.",
        .input_schema = JSON({"type" : "object", "properties" : {}}),
        .output_schema = JSON({
            "type" : "object",
            "properties" : {"names" : {"type" : "array", "items" : {"type" : "string"}}},
            "required" : ["names"]
        }),
        .fn = tool_env_dump,
    },
    {
        .name = "crash",
        .title = "Crash",
        .description = "Exits at once with CODE, or dies by SIGNAL. For fault tests.",
        .input_schema = JSON({
            "type" : "object",
            "properties" : {
                "code" : {"type" : "integer", "minimum" : 0, "maximum" : 255, "default" : 1},
                "signal" : {"type" : "string", "enum" : [ "SEGV", "ABRT", "KILL" ]}
            }
        }),
        .fn = tool_crash,
    },
    {
        .name = "big_line",
        .title = "Big line",
        .description = "Answers with one text of BYTES bytes (up to 16 MiB).",
        .input_schema = JSON({
            "type" : "object",
            "properties" : {"bytes" : {"type" : "integer", "minimum" : 0, "maximum" : 16777216}},
            "required" : ["bytes"]
        }),
        .fn = tool_big_line,
    },
    {
        .name = "stderr",
        .title = "Write to stderr",
        .description = "Writes TEXT to stderr as one line.",
        .input_schema = JSON({
            "type" : "object",
            "properties" : {"text" : {"type" : "string"}},
            "required" : ["text"]
        }),
        .fn = tool_stderr,
    },
};

static json_t *schema_new(const char *text)
{
    json_error_t err;
    json_t *schema = json_loads(text, 0, &err);
    if (schema == NULL)
        ws_log("bad built-in schema: %s: %s", err.text, text);
    WS_ASSERT(schema != NULL);
    return schema;
}

json_t *ws_tools_list(const struct ws_server *srv)
{
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof(ws_tools) / sizeof(ws_tools[0]); i++) {
        const struct ws_tool *t = &ws_tools[i];
        json_t *tool = json_object();
        json_object_set_new(tool, "name", json_string(t->name));
        if (ws_version_at_least(srv, "2025-06-18")) /* title, outputSchema: 2025-06-18+ */
            json_object_set_new(tool, "title", json_string(t->title));
        json_object_set_new(tool, "description", json_string(t->description));
        json_object_set_new(tool, "inputSchema", schema_new(t->input_schema));
        if (t->output_schema != NULL && ws_version_at_least(srv, "2025-06-18"))
            json_object_set_new(tool, "outputSchema", schema_new(t->output_schema));
        json_array_append_new(list, tool);
    }
    return list;
}

json_t *ws_tools_call(struct ws_call *c, const char *name)
{
    for (size_t i = 0; i < sizeof(ws_tools) / sizeof(ws_tools[0]); i++)
        if (strcmp(name, ws_tools[i].name) == 0)
            return ws_tools[i].fn(c);
    /* server/tools §"Error Handling": unknown tools are protocol errors. */
    return ws_fail(c, WS_INVALID_PARAMS, "Unknown tool: %.200s", name);
}
