/*
 * call: one request to a route as the proxy handles it (struct proxy_call),
 * and the JSON-RPC error replies every transport file sends. route.c makes
 * the call; session.c, http_upstream.c and legacy_http.c finish it.
 */
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "conf/config.h"
#include "http/http.h"
#include "proxy/jsonrpc.h"
#include "proxy/proxy_int.h"

const struct gw_route_config *proxy_call_route(const struct proxy_call *call)
{
    return gw_config_route_by_name(call->proxy->cfg, call->route_name);
}

/* On an `auth: none` route every caller is "anonymous", so the client
 * address stands in: limits count per address, and one address cannot use
 * another's session (review F15). */
char *proxy_call_owner(const struct proxy_call *call)
{
    const struct gw_route_config *route = proxy_call_route(call); /* may run after a reload */
    if (route && route->auth == GW_ROUTE_AUTH_NONE)
        return xasprintf("anonymous:%s", http_request_client_ip(call->req));
    return xstrdup(call->principal->subject);
}

void proxy_call_free(struct proxy_call *call)
{
    if (call == NULL)
        return;
    free(call->route_name);
    mg_principal_free(call->principal);
    free(call->protocol_version);
    free(call);
}

void proxy_reply_rpc_error(struct http_request *req, int status, int code, const char *message)
{
    char *text = jsonrpc_error_text(NULL, 0, code, message);
    http_reply_json_text(req, status, text);
    free(text);
}

void proxy_legacy_stream_open(struct http_request *req, const char *messages_path,
                              const char *session_id,
                              void (*on_close)(struct http_request *, void *), void *arg)
{
    http_request_on_close(req, on_close, arg);
    http_sse_keepalive(req, PROXY_KEEPALIVE_MS);
    /* TR 2024-11-05: the first event names the URI the client POSTs its messages to. */
    char *endpoint = xasprintf("%s?session_id=%s", messages_path, session_id);
    http_sse_event(req, NULL, "endpoint", endpoint, strlen(endpoint));
    free(endpoint);
}
