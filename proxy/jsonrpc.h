/*
 * jsonrpc: inspection of JSON-RPC 2.0 messages as MCP uses them. The proxy
 * parses every message it forwards (to route responses to the right stream
 * and to apply policy) but passes unknown fields through untouched.
 */
#ifndef MCPGATE_PROXY_JSONRPC_H
#define MCPGATE_PROXY_JSONRPC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

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
/* mcpgate's own server errors, from the implementation-defined range -32000…-32019. */
#define JSONRPC_GATEWAY_UPSTREAM_ERROR (-32000)
#define JSONRPC_GATEWAY_LIMIT (-32001)
#define JSONRPC_GATEWAY_FORBIDDEN (-32003)

enum jsonrpc_kind jsonrpc_classify(const json_t *msg);
/* The method of a request or notification (borrowed), else NULL. */
const char *jsonrpc_method(const json_t *msg);
/*
 * A canonical text key for an id, for maps: "s:<string>" or "n:<integer>"
 * (owned). NULL for ids MCP forbids (null, fractions, objects, arrays).
 */
char *jsonrpc_id_key(const json_t *id);
/* A complete error response, compact JSON text (owned). ID may be NULL (null id). */
char *jsonrpc_error_text(const json_t *id, int code, const char *message);
/* The error response as an object (new reference). */
json_t *jsonrpc_error_new(const json_t *id, int code, const char *message);
/* Compact JSON without a trailing newline, as STDIO and SSE need (owned). */
char *jsonrpc_dump(const json_t *msg);

#endif
