/*
 * mcp: the MCP methods (lifecycle, ping, tools, resources, prompts,
 * logging). Each handler gets a struct ws_call and returns the result
 * object, or NULL after ws_fail() or with the answer owed for later.
 * Spec references are to the 2025-11-25 revision unless a version is named.
 */
#include "whoami.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS_IDENTITY_URI "whoami://identity"

static const char *const ws_versions[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};

/* The `title` fields exist since 2025-06-18; older clients get none. */
static void set_title(json_t *obj, const struct ws_server *srv, const char *title)
{
    if (ws_version_at_least(srv, "2025-06-18"))
        json_object_set_new(obj, "title", json_string(title));
}

/* The client's request must not carry a cursor: every list has one page. */
static bool list_params_ok(struct ws_call *c)
{
    if (json_object_get(c->params, "cursor") == NULL)
        return true;
    ws_fail(c, WS_INVALID_PARAMS, "Invalid cursor"); /* server/utilities/pagination */
    return false;
}

/* ---- lifecycle ------------------------------------------------------------ */

static const char *negotiate_version(const char *requested)
{
    /* LC25 §"Version Negotiation": the same version if supported, else our latest. */
    for (size_t i = 0; i < sizeof(ws_versions) / sizeof(ws_versions[0]); i++)
        if (strcmp(requested, ws_versions[i]) == 0)
            return ws_versions[i];
    return WS_LATEST_VERSION;
}

static bool elicitation_form_supported(const json_t *caps)
{
    const json_t *e = json_object_get(caps, "elicitation");
    if (!json_is_object(e))
        return false;
    /* client/elicitation (2025-11-25): an empty object means form mode only. */
    return json_object_size(e) == 0 || json_object_get(e, "form") != NULL;
}

static json_t *server_capabilities_new(void)
{
    json_t *caps = json_object();
    json_t *tools = json_object();
    json_object_set_new(tools, "listChanged", json_false());
    json_object_set_new(caps, "tools", tools);
    json_object_set_new(caps, "resources", json_object());
    json_object_set_new(caps, "prompts", json_object());
    json_object_set_new(caps, "logging", json_object());
    return caps;
}

static json_t *m_initialize(struct ws_call *c)
{
    struct ws_server *srv = c->srv;
    if (c->batch != NULL) /* 2025-03-26 basic/lifecycle: not part of a batch */
        return ws_fail(c, WS_INVALID_REQUEST, "initialize must not be part of a batch");
    if (srv->state != WS_STATE_NEW)
        return ws_fail(c, WS_INVALID_REQUEST, "already initialized");
    const char *requested = json_string_value(json_object_get(c->params, "protocolVersion"));
    json_t *caps = json_object_get(c->params, "capabilities");
    if (requested == NULL || !json_is_object(caps) ||
        !json_is_object(json_object_get(c->params, "clientInfo")))
        return ws_fail(c, WS_INVALID_PARAMS,
                       "initialize needs protocolVersion, capabilities and clientInfo");
    snprintf(srv->version, sizeof(srv->version), "%s", negotiate_version(requested));
    srv->client_sampling = json_is_object(json_object_get(caps, "sampling"));
    srv->client_elicitation = elicitation_form_supported(caps);
    srv->state = WS_STATE_INITIALIZING;

    json_t *info = json_object();
    json_object_set_new(info, "name", json_string(WS_SERVER_NAME));
    set_title(info, srv, "whoami (mcpgate example)");
    json_object_set_new(info, "version", json_string(MCPGATE_VERSION));
    json_t *result = json_object();
    json_object_set_new(result, "protocolVersion", json_string(srv->version));
    json_object_set_new(result, "capabilities", server_capabilities_new());
    json_object_set_new(result, "serverInfo", info);
    json_object_set_new(result, "instructions",
                        json_string("Shows the identity the gateway passed to this server "
                                    "(tool whoami, resource whoami://identity)."));
    return result;
}

static json_t *m_ping(struct ws_call *c)
{
    (void)c;
    return json_object(); /* U25 ping: an empty result, promptly */
}

static json_t *m_logging_set_level(struct ws_call *c)
{
    static const char *const levels[] = {"debug", "info",     "notice", "warning",
                                         "error", "critical", "alert",  "emergency"};
    const char *level = json_string_value(json_object_get(c->params, "level"));
    for (size_t i = 0; level != NULL && i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcmp(level, levels[i]) == 0) {
            snprintf(c->srv->log_level, sizeof(c->srv->log_level), "%s", level);
            return json_object();
        }
    }
    return ws_fail(c, WS_INVALID_PARAMS, "level must be one of the RFC 5424 severities");
}

/* ---- tools ------------------------------------------------------------------- */

static json_t *m_tools_list(struct ws_call *c)
{
    if (!list_params_ok(c))
        return NULL;
    json_t *result = json_object();
    json_object_set_new(result, "tools", ws_tools_list(c->srv));
    return result;
}

static json_t *m_tools_call(struct ws_call *c)
{
    const char *name = json_string_value(json_object_get(c->params, "name"));
    json_t *args = json_object_get(c->params, "arguments");
    if (name == NULL)
        return ws_fail(c, WS_INVALID_PARAMS, "tools/call needs a tool name");
    if (args != NULL && !json_is_object(args))
        return ws_fail(c, WS_INVALID_PARAMS, "arguments must be an object");
    c->args = args;
    return ws_tools_call(c, name);
}

/* ---- resources ----------------------------------------------------------------- */

static json_t *m_resources_list(struct ws_call *c)
{
    if (!list_params_ok(c))
        return NULL;
    json_t *res = json_object();
    json_object_set_new(res, "uri", json_string(WS_IDENTITY_URI));
    json_object_set_new(res, "name", json_string("identity"));
    set_title(res, c->srv, "Caller identity");
    json_object_set_new(res, "description",
                        json_string("The identity the gateway passed to this server, as JSON"));
    json_object_set_new(res, "mimeType", json_string("application/json"));
    json_t *list = json_array();
    json_array_append_new(list, res);
    json_t *result = json_object();
    json_object_set_new(result, "resources", list);
    return result;
}

static json_t *m_resources_templates_list(struct ws_call *c)
{
    if (!list_params_ok(c))
        return NULL;
    json_t *result = json_object();
    json_object_set_new(result, "resourceTemplates", json_array());
    return result;
}

static json_t *m_resources_read(struct ws_call *c)
{
    const char *uri = json_string_value(json_object_get(c->params, "uri"));
    if (uri == NULL)
        return ws_fail(c, WS_INVALID_PARAMS, "resources/read needs a uri");
    if (strcmp(uri, WS_IDENTITY_URI) != 0) {
        ws_fail(c, WS_RESOURCE_NOT_FOUND, "Resource not found");
        json_t *data = json_object();
        json_object_set_new(data, "uri", json_string(uri));
        json_object_set_new(c->error, "data", data);
        return NULL;
    }
    json_t *identity = ws_identity_new(c->params);
    char *text = json_dumps(identity, JSON_COMPACT);
    json_decref(identity);
    json_t *content = json_object();
    json_object_set_new(content, "uri", json_string(WS_IDENTITY_URI));
    json_object_set_new(content, "mimeType", json_string("application/json"));
    json_object_set_new(content, "text", json_string(text));
    free(text);
    json_t *contents = json_array();
    json_array_append_new(contents, content);
    json_t *result = json_object();
    json_object_set_new(result, "contents", contents);
    return result;
}

/* ---- prompts ----------------------------------------------------------------------- */

static json_t *m_prompts_list(struct ws_call *c)
{
    if (!list_params_ok(c))
        return NULL;
    json_t *arg = json_object();
    json_object_set_new(arg, "name", json_string("name"));
    json_object_set_new(arg, "description", json_string("Who to greet"));
    json_object_set_new(arg, "required", json_true());
    json_t *args = json_array();
    json_array_append_new(args, arg);
    json_t *prompt = json_object();
    json_object_set_new(prompt, "name", json_string("greet"));
    set_title(prompt, c->srv, "Greet someone");
    json_object_set_new(prompt, "description", json_string("Asks the model to greet NAME"));
    json_object_set_new(prompt, "arguments", args);
    json_t *list = json_array();
    json_array_append_new(list, prompt);
    json_t *result = json_object();
    json_object_set_new(result, "prompts", list);
    return result;
}

static json_t *m_prompts_get(struct ws_call *c)
{
    const char *name = json_string_value(json_object_get(c->params, "name"));
    json_t *args = json_object_get(c->params, "arguments");
    if (name == NULL || strcmp(name, "greet") != 0) /* server/prompts §"Error Handling" */
        return ws_fail(c, WS_INVALID_PARAMS, "Unknown prompt: %.200s", name ? name : "(none)");
    if (args != NULL && !json_is_object(args))
        return ws_fail(c, WS_INVALID_PARAMS, "arguments must be an object");
    const char *who = json_string_value(json_object_get(args, "name"));
    if (who == NULL)
        return ws_fail(c, WS_INVALID_PARAMS, "Missing required argument: name");
    size_t n = strlen(who) + 64;
    char *text = ws_xmalloc(n);
    snprintf(text, n, "Please greet %s warmly, in one sentence.", who);
    json_t *content = json_object();
    json_object_set_new(content, "type", json_string("text"));
    json_object_set_new(content, "text", json_string(text));
    free(text);
    json_t *message = json_object();
    json_object_set_new(message, "role", json_string("user"));
    json_object_set_new(message, "content", content);
    json_t *messages = json_array();
    json_array_append_new(messages, message);
    json_t *result = json_object();
    json_object_set_new(result, "description", json_string("A greeting"));
    json_object_set_new(result, "messages", messages);
    return result;
}

/* ---- the table ----------------------------------------------------------------------- */

static const struct ws_method ws_methods[] = {
    {"initialize", m_initialize, true},
    {"ping", m_ping, true},
    {"logging/setLevel", m_logging_set_level, false},
    {"tools/list", m_tools_list, false},
    {"tools/call", m_tools_call, false},
    {"resources/list", m_resources_list, false},
    {"resources/templates/list", m_resources_templates_list, false},
    {"resources/read", m_resources_read, false},
    {"prompts/list", m_prompts_list, false},
    {"prompts/get", m_prompts_get, false},
};

const struct ws_method *ws_method_find(const char *name)
{
    for (size_t i = 0; i < sizeof(ws_methods) / sizeof(ws_methods[0]); i++)
        if (strcmp(name, ws_methods[i].name) == 0)
            return &ws_methods[i];
    return NULL;
}
