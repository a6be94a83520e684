/* jsonrpc: message classification and error construction. */
#include "proxy/jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/panic.h"
#include "common/xalloc.h"

enum jsonrpc_kind jsonrpc_classify(const json_t *msg)
{
    if (!json_is_object(msg))
        return JSONRPC_INVALID;
    const char *version = json_string_value(json_object_get(msg, "jsonrpc"));
    if (version == NULL || strcmp(version, "2.0") != 0)
        return JSONRPC_INVALID;
    json_t *method = json_object_get(msg, "method");
    json_t *id = json_object_get(msg, "id");
    if (method) {
        if (!json_is_string(method))
            return JSONRPC_INVALID;
        if (id == NULL)
            return JSONRPC_NOTIFICATION;
        return json_is_string(id) || json_is_integer(id) ? JSONRPC_REQUEST : JSONRPC_INVALID;
    }
    bool has_result = json_object_get(msg, "result") != NULL;
    bool has_error = json_object_get(msg, "error") != NULL;
    if (id && has_result != has_error)
        return JSONRPC_RESPONSE;
    return JSONRPC_INVALID;
}

const char *jsonrpc_method(const json_t *msg)
{
    return json_string_value(json_object_get(msg, "method"));
}

char *jsonrpc_id_key(const json_t *id)
{
    if (json_is_string(id))
        return xasprintf("s:%s", json_string_value(id));
    if (json_is_integer(id))
        return xasprintf("n:%lld", (long long)json_integer_value(id));
    return NULL;
}

json_t *jsonrpc_error_new(const json_t *id, int code, const char *message)
{
    json_t *err = json_pack("{s:i, s:s}", "code", code, "message", message);
    json_t *id_copy = id ? json_deep_copy(id) : json_null();
    return json_pack("{s:s, s:o, s:o}", "jsonrpc", "2.0", "id", id_copy, "error", err);
}

char *jsonrpc_error_text(const json_t *id, int code, const char *message)
{
    json_t *o = jsonrpc_error_new(id, code, message);
    char *text = jsonrpc_dump(o);
    json_decref(o);
    return text;
}

char *jsonrpc_dump(const json_t *msg)
{
    /* JSON_COMPACT never emits a raw newline: strings escape \n. */
    char *text = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        GW_PANIC("out of memory (json_dumps)");
    return text;
}
