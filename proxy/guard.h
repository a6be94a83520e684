/*
 * guard: the one gate every message from a client passes before it reaches
 * an upstream, on every transport (Streamable HTTP POST and batches, the
 * 2024-11-05 /messages POST; STDIO and HTTP routes alike).
 *
 * In order, for each message of the body:
 *  1. it is JSON (else -32700) and a JSON-RPC message the gateway can
 *     classify (else -32600): jsonrpc.h says what that means;
 *  2. a governed method is checked against the route's rules whatever the
 *     message is (request or notification): tools/call (params.name),
 *     prompts/get (params.name), resources/read, resources/subscribe and
 *     resources/unsubscribe (params.uri, normalised: policy.h),
 *     completion/complete (params.ref: a prompt name or a resource URI);
 *     a name or URI that is absent or not a string is refused (-32602);
 *  3. params._meta["io.mcpgate/principal"] is removed from every message,
 *     and set to the caller's identity when the route's identity.meta is on;
 *     for STDIO the text is made one line.
 * A refusal stops the whole body: nothing of it is forwarded.
 *
 * What passes is the original bytes of each message wherever nothing had to
 * change (no tree is built, nothing is re-serialised).
 */
#ifndef MCPGATE_PROXY_GUARD_H
#define MCPGATE_PROXY_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "common/principal.h"
#include "conf/config.h"
#include "proxy/jsonrpc.h"

/* What the guard needs to know about the request. Everything is borrowed. */
struct guard_ctx {
    const struct gw_route_config *route;
    const struct mg_principal *principal;
    const char *public_url;       /* for the step-up challenge's resource_metadata */
    const char *request_id;       /* for the log lines of refusals */
    const char *protocol_version; /* batches are 2025-03-26 only */
    bool legacy;                  /* the 2024-11-05 transport: no batches at all */
    bool one_line;                /* the upstream is a STDIO child: one message per line */
};

/* One message that passed. */
struct guard_msg {
    struct jsonrpc_msg info; /* inspected from the client's text: refs index `orig` */
    const char *orig;        /* borrowed: the client's bytes of this message */
    size_t orig_len;
    const char *text; /* what to forward: orig, or owned */
    size_t len;
    char *owned;
};

struct guard_body {
    bool batch;
    struct guard_msg *msgs; /* owned, n of them */
    size_t n;
    size_t requests; /* how many are requests */
    /* The whole body to forward to an HTTP upstream (a batch is rebuilt
     * from its messages only when one of them changed): borrowed or owned. */
    const char *text;
    size_t len;
    char *owned;
};

/* Why a body was refused: the transport sends it where its clients look. */
struct guard_refusal {
    int http_status;        /* for a Streamable HTTP answer: 400, 403, or 200 (a JSON-RPC error) */
    char *body;             /* owned: the JSON-RPC error response text */
    char *www_authenticate; /* owned: the step-up challenge of a 403, else NULL */
    bool has_id;            /* the refused message was a request: BODY answers its id */
    char *tool;             /* owned: a tools/call the policy refused: its tool (metrics) */
};

enum guard_result {
    GUARD_PASS = 0,
    GUARD_REFUSED,
};

/*
 * Checks TEXT (LEN bytes, a POST body; borrowed and must outlive OUT).
 * GUARD_PASS: OUT holds the messages to forward (guard_body_clear() frees
 * them). GUARD_REFUSED: REFUSAL says what to answer (guard_refusal_clear()),
 * and OUT is empty.
 */
enum guard_result guard_check(const struct guard_ctx *ctx, const char *text, size_t len,
                              struct guard_body *out, struct guard_refusal *refusal);
void guard_body_clear(struct guard_body *b);

/* The route's require: section for the caller: GUARD_PASS, or GUARD_REFUSED
 * with a 403 (the step-up challenge when only scope is missing). */
enum guard_result guard_route(const struct guard_ctx *ctx, struct guard_refusal *refusal);
void guard_refusal_clear(struct guard_refusal *r);

#endif
