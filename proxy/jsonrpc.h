/*
 * jsonrpc: what the proxy reads of a JSON-RPC 2.0 message, in one pass over
 * its text (common/json_scan.h), and the few edits it makes to one.
 *
 * The proxy never builds a tree of a message it forwards: it finds the
 * members that routing and policy need (jsonrpc, id, method, result, error,
 * params.name, params.uri, params.ref.*, params.requestId,
 * params.progressToken, params._meta.progressToken, the io.mcpgate/principal
 * member of params._meta), and forwards the original bytes, or the bytes with
 * a few of those values replaced (that _meta member; an id or progress token
 * the child must not see twice). Everything else passes through untouched
 * (STYLE: unknown fields of MCP messages pass).
 *
 * Classification is strict on purpose (one rule for every transport): a
 * message is a request (method + id that is a string or an integer), a
 * notification (method, no id), a response (id + exactly one of result and
 * error), or invalid. A method with an id that is null, a real, a boolean,
 * an object or an array is invalid: peers disagree on what such ids mean
 * (the TypeScript SDK reads 1.0 as 1), so the gateway refuses rather than
 * guess. A key the proxy reads appearing twice in one object is invalid too,
 * since parsers disagree on which copy wins.
 */
#ifndef MCPGATE_PROXY_JSONRPC_H
#define MCPGATE_PROXY_JSONRPC_H

#include <stdbool.h>
#include <stddef.h>

#include "common/json_scan.h"

enum jsonrpc_kind {
    JSONRPC_INVALID = 0,
    JSONRPC_REQUEST,      /* method + id */
    JSONRPC_NOTIFICATION, /* method, no id */
    JSONRPC_RESPONSE,     /* id + result or error */
};

/* Standard and MCP error codes. */
#define JSONRPC_PARSE_ERROR (-32700)
#define JSONRPC_INVALID_REQUEST (-32600)
#define JSONRPC_METHOD_NOT_FOUND (-32601)
#define JSONRPC_INVALID_PARAMS (-32602)
#define JSONRPC_INTERNAL_ERROR (-32603)
#define JSONRPC_REQUEST_CANCELLED (-32800)
#define JSONRPC_RESOURCE_NOT_FOUND (-32002) /* MCP */
/* mcpgate's own server errors, from the implementation-defined range -32000…-32019. */
#define JSONRPC_GATEWAY_UPSTREAM_ERROR (-32000)
#define JSONRPC_GATEWAY_LIMIT (-32001)
#define JSONRPC_GATEWAY_FORBIDDEN (-32003)

#define JSONRPC_METHOD_MAX 128 /* longer methods are none MCP defines: kept as "" + flag */

/* The io.mcpgate/principal key mcpgate owns in params._meta. */
#define JSONRPC_PRINCIPAL_KEY "io.mcpgate/principal"

/* One message as the proxy sees it. Refs index the text that was inspected. */
struct jsonrpc_msg {
    enum jsonrpc_kind kind;
    const char *invalid;             /* static: why kind is JSONRPC_INVALID; NULL otherwise */
    char method[JSONRPC_METHOD_MAX]; /* decoded; "" when absent or too long */
    bool method_long;
    struct json_ref id;     /* JSON_KIND_NONE when absent */
    char *id_key;           /* owned: jsonrpc_id_key of id, NULL when none */
    struct json_ref params; /* JSON_KIND_NONE when absent */
    struct json_ref result, error;
    /* params.name, params.uri, params.ref and its type/name/uri, params.requestId, and
     * params.progressToken (of notifications/progress) */
    struct json_ref name, uri, ref, ref_type, ref_name, ref_uri, request_id, progress;
    struct json_ref meta;                  /* params._meta */
    struct json_ref progress_token;        /* params._meta.progressToken */
    size_t principal_start, principal_end; /* the io.mcpgate/principal member; 0, 0: none */
    /* params._meta["io.modelcontextprotocol/protocolVersion"] and ["…/clientCapabilities"] (the
     * 2026-07-28 revision's per-request version and capabilities) */
    struct json_ref meta_protocol_version, meta_client_capabilities;
    /* Of a response: result.resultType, result._meta, how many members result has, error.code */
    struct json_ref result_type, result_meta, error_code;
    unsigned result_members;
    bool result_is_error; /* result.isError is true (a tool's own failure) */
    size_t end;           /* the message's closing '}' */
    unsigned params_members, meta_members;
};

/*
 * Inspects TEXT[0 .. LEN), one message (not a batch). Returns 0 with *M
 * filled (M->kind may be JSONRPC_INVALID with M->invalid saying why), or
 * -EINVAL when the text is not JSON at all (a parse error). Release with
 * jsonrpc_msg_clear().
 */
int jsonrpc_inspect(const char *text, size_t len, struct jsonrpc_msg *m);
void jsonrpc_msg_clear(struct jsonrpc_msg *m);

/*
 * A top-level array (a JSON-RPC batch)? Returns 0 and sets *ELEMS (owned,
 * *N entries: each element's ref in TEXT) when TEXT is an array, -EINVAL
 * when it starts with '[' but is not JSON, and 0 with *ELEMS NULL for
 * anything else, NOT validated: the caller passes that text to
 * jsonrpc_inspect(), which validates it (one scan of a large message, not two).
 */
int jsonrpc_batch_split(const char *text, size_t len, struct json_ref **elems, size_t *n);

/*
 * A canonical text key for an id, for maps: "s:<decoded string>" or
 * "n:<integer as written, -0 as 0>" (owned). NULL for ids MCP forbids.
 */
char *jsonrpc_id_key(const char *text, const struct json_ref *id);
/* M's method equals METHOD. */
bool jsonrpc_is(const struct jsonrpc_msg *m, const char *method);

/*
 * M (inspected from TEXT, LEN) with params._meta["io.mcpgate/principal"]
 * removed and, when PRINCIPAL_JSON is not NULL, set to it (a JSON object
 * text); params and _meta are created as needed. ONE_LINE: CR and LF (only
 * possible as whitespace between tokens) become spaces, for the STDIO
 * framing. Returns the new text (owned, *OUT_LEN bytes), or NULL when
 * nothing needs to change, so the caller forwards TEXT as it is.
 */
char *jsonrpc_rewrite(const char *text, size_t len, const struct jsonrpc_msg *m,
                      const char *principal_json, bool one_line, size_t *out_len);

/* One replacement in a text: [start, end) becomes TEXT (LEN bytes; borrowed). */
struct json_edit {
    size_t start, end;
    const char *text;
    size_t len;
};
/* TEXT with EDITS applied (N of them, in text order, not overlapping): owned, *OUT_LEN bytes. */
char *jsonrpc_splice(const char *text, size_t len, const struct json_edit *edits, size_t n,
                     size_t *out_len);
/* TEXT (*LEN bytes) with the value at REF (a ref into TEXT) replaced by JSON (a JSON text):
 * owned, *LEN set to its length. */
char *jsonrpc_replace(const char *text, size_t *len, const struct json_ref *ref, const char *json);

/*
 * A complete error response, compact JSON text (owned). ID_JSON is the id as
 * JSON text (ID_LEN bytes, copied as is), or NULL for a null id.
 */
char *jsonrpc_error_text(const char *id_json, size_t id_len, int code, const char *message);

#endif
