/*
 * httpc: outbound HTTP/1.1 client on the caller's event loop (libcurl
 * multi-socket interface driven by libevent; DESIGN §1: nothing blocks the
 * loop). Two modes share one engine:
 *
 *   buffered  httpc_fetch(): small requests (OIDC discovery, JWKS, token
 *             exchange, userinfo). The whole body arrives in one callback,
 *             bounded by max_response_bytes.
 *   streamed  httpc_stream(): bodies of any length (proxying to HTTP upstreams,
 *             SSE), handed over as they arrive, with pause/resume for
 *             backpressure.
 *
 * Callback rules (the contract every caller relies on):
 *  - No callback ever runs inside an httpc_* call. They all come from the
 *    event loop, so a caller may set state after httpc_fetch() returns and
 *    see it in the callback, and may call any httpc_* function (fetch,
 *    cancel, resume, even httpc_free) from inside any callback.
 *  - A call ends with exactly one final callback (done / on_done) unless it
 *    was cancelled first; after httpc_cancel() or httpc_free() nothing fires.
 *  - The struct httpc_call handle is valid from httpc_fetch()/httpc_stream()
 *    until the final callback returns or httpc_cancel() is called, whichever
 *    comes first. Using it afterwards is a use-after-free.
 *
 * Policy fixed here: redirects are never followed (OAuth code must see them),
 * only http and https, TLS peer and host name always verified, no implicit
 * Content-Type, no "Expect: 100-continue", HTTP/1.1, connections reused across
 * calls of one struct httpc. libcurl honours the http_proxy / https_proxy /
 * no_proxy environment variables.
 */
#ifndef MCPGATE_COMMON_HTTPC_H
#define MCPGATE_COMMON_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct httpc;      /* one per event loop; owns the libcurl multi handle */
struct httpc_call; /* one request, owned by the struct httpc until it ends */

/* Buffered responses larger than this fail unless the request sets its own limit. */
#define HTTPC_DEFAULT_MAX_RESPONSE_BYTES (1024u * 1024u)
/* All response header lines of one response together; more fails the call. */
#define HTTPC_MAX_HEADER_BYTES (64u * 1024u)

/*
 * Returns a client bound to BASE (borrowed: it must outlive the client), or
 * NULL with *err_out set (owned by the caller) when libcurl cannot start.
 */
struct httpc *httpc_new(struct event_base *base, char **err_out);
/*
 * Keeps up to N idle connections for reuse (libcurl's CURLMOPT_MAXCONNECTS);
 * beyond that the oldest is closed. Without a call: libcurl's default, four
 * per transfer in flight. Returns 0, or -EINVAL when libcurl refuses.
 */
int httpc_set_max_idle(struct httpc *c, unsigned n);
/*
 * Cancels every call in flight (no callback fires after, not even for calls
 * already complete but not yet reported) and frees the client. Accepts NULL.
 * Allowed inside a callback: the memory is then released once the callback
 * returns. Call it before event_base_free().
 */
void httpc_free(struct httpc *c);

struct httpc_header {
    const char *name;  /* borrowed; a token, e.g. "Content-Type" */
    const char *value; /* borrowed; no CR, LF or NUL; "" sends an empty header */
};

/* Everything is copied by httpc_fetch()/httpc_stream(): the request may be freed after. */
struct httpc_request {
    const char *method; /* "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD"; NULL = "GET" */
    const char *url;    /* absolute http:// or https:// URL */
    const struct httpc_header *headers;
    size_t n_headers;
    const void *body; /* may be NULL; sent with the caller's Content-Type header, if any */
    size_t body_len;
    /* HTTP Basic (RFC 7617). Form-encoding client credentials first (RFC 6749 §2.3.1) is the
     * caller's job. Both NULL: no Authorization from here. */
    const char *basic_user;
    const char *basic_password;
    uint64_t connect_timeout_ms;   /* 0: libcurl's default (300 s) */
    uint64_t timeout_ms;           /* whole exchange; 0: none (long-lived streams) */
    uint64_t low_speed_timeout_ms; /* fail when no byte arrives for this long; 0: none.
                                      Time spent paused by the caller does not count. */
    uint64_t max_response_bytes;   /* buffered mode only; 0: HTTPC_DEFAULT_MAX_RESPONSE_BYTES */
    /* Refuse plain http unless the host is localhost, 127.0.0.0/8 or [::1]; checked before
     * any connection is made. */
    bool https_only_except_loopback;
    /* For URLs that come from outside (Client ID Metadata Documents): https only, and every
     * address libcurl is about to connect to, after name resolution, must be public
     * (net_sockaddr_special_use() NULL). The check runs on the socket actually opened, so
     * the connection goes to exactly the address checked (no DNS rebinding between check
     * and use). Such calls ignore proxy environment variables, always open a connection of
     * their own and never keep it for another call. A refusal fails the call with
     * "refused to connect to ADDR: a private address" and so on. */
    bool public_addresses_only;
    bool https_only;     /* refuse plain http whatever the host (implied by the above) */
    const char *ca_file; /* PEM bundle to verify servers with instead of the system's; NULL */
};

/*
 * What a buffered call produced. Valid during the callback only; copy what you keep.
 * error != NULL means the exchange failed: then status is 0 and the body is empty,
 * so a partial body is never mistaken for a whole one.
 */
struct httpc_response {
    long status;      /* HTTP status (302 and 500 are answers, not errors); 0 on failure */
    const char *body; /* borrowed; NUL-terminated (not counted in body_len); never NULL */
    size_t body_len;
    /* borrowed; NULL on success, else one line for logs and operators, e.g.
     * "connect to 10.0.0.5:9000 failed: Connection refused", "timed out after 300 ms",
     * "response too large (> 1048576 bytes)", "TLS: SSL certificate problem: …" */
    const char *error;
    struct httpc_call *call; /* borrowed; for httpc_response_header() and httpc_cancel() */
};

/* First value of a response header (case-insensitive), or NULL. Borrowed, like res. */
const char *httpc_response_header(const struct httpc_response *res, const char *name);

typedef void (*httpc_done_fn)(const struct httpc_response *res, void *arg);

/*
 * Starts a buffered request. DONE runs exactly once, later, from the loop
 * (unless cancelled); ARG is borrowed. Never returns NULL: invalid requests,
 * bad URLs and policy refusals are reported through DONE like any failure.
 */
struct httpc_call *httpc_fetch(struct httpc *c, const struct httpc_request *req, httpc_done_fn done,
                               void *arg);

/*
 * Ends CALL with no callback afterwards and frees it. Accepts NULL. Safe from
 * inside any callback, including this call's own (its memory is then released
 * after the callback returns).
 */
void httpc_cancel(struct httpc_call *call);

/* ---- streaming --------------------------------------------------------- */

/* What on_data returns. */
enum httpc_data_action {
    HTTPC_CONTINUE = 0, /* consumed; keep going */
    HTTPC_PAUSE = 1,    /* consumed; deliver nothing more until httpc_resume() */
};

struct httpc_stream_callbacks {
    /* Once, when the final response head is in (1xx heads are skipped), before any data.
     * Not called when the exchange fails before a response head arrives. May be NULL. */
    void (*on_headers)(struct httpc_call *call, long status, void *arg);
    /* Body bytes as they arrive (chunked framing removed, content untouched). DATA is
     * borrowed for the call only. Returns enum httpc_data_action. */
    int (*on_data)(struct httpc_call *call, const char *data, size_t len, void *arg);
    /* Exactly once unless cancelled: ERROR NULL is a clean end of the body. May be NULL. */
    void (*on_done)(struct httpc_call *call, const char *error, void *arg);
};

/*
 * Starts a streamed request. CB is copied; ARG is borrowed. Never returns
 * NULL (failures come through on_done). max_response_bytes is ignored: the
 * caller decides what to keep. Memory held per call stays bounded: while
 * paused, the socket is not read.
 */
struct httpc_call *httpc_stream(struct httpc *c, const struct httpc_request *req,
                                const struct httpc_stream_callbacks *cb, void *arg);

/*
 * Lifts a pause asked for by on_data. Delivery restarts from the loop (never
 * inside this call) with the first byte not yet delivered. A no-op when the
 * call is not paused.
 */
void httpc_resume(struct httpc_call *call);

/* True between an HTTPC_PAUSE and the resumed delivery. */
bool httpc_call_paused(const struct httpc_call *call);

/*
 * Response headers of the final response head, available from on_headers (or
 * the done callback) on; NULL before. Case-insensitive, first value.
 * Borrowed: valid until the call ends.
 */
const char *httpc_call_header(const struct httpc_call *call, const char *name);

/*
 * Calls FN for every response header in arrival order (for pass-through),
 * stopping when FN returns false. Continuation lines are already joined.
 */
void httpc_call_foreach_header(const struct httpc_call *call,
                               bool (*fn)(const char *name, const char *value, void *arg),
                               void *arg);

/* ---- counters (metrics, and tests that must prove no connection was made) --- */

struct httpc_stats {
    uint64_t requests_started;   /* handed to libcurl */
    uint64_t requests_refused;   /* failed before libcurl saw them (bad request, policy) */
    uint64_t requests_failed;    /* ended with an error after starting */
    uint64_t connections_opened; /* new TCP connections; the rest reused one */
    uint64_t in_flight;          /* calls not yet ended or cancelled */
};

void httpc_get_stats(const struct httpc *c, struct httpc_stats *out);

#endif
