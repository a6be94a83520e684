/*
 * whoami-server: an example MCP server over STDIO that shows the identity
 * mcpgate passes to its children (environment and params._meta), plus tools
 * for exercising a gateway: progress, cancellation, sampling, elicitation,
 * crashes, long lines and stderr.
 *
 * One thread, one event loop (main.c) over stdin, stdout, timers and
 * SIGTERM. io.c splits stdin into lines and queues stdout; protocol.c speaks
 * JSON-RPC 2.0 (framing, batches, answers owed for later); mcp.c implements
 * the MCP methods; tools.c the tools; identity.c reads the identity.
 * Everything lives in one struct ws_server.
 */
#ifndef WHOAMI_SERVER_WHOAMI_H
#define WHOAMI_SERVER_WHOAMI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef MCPGATE_VERSION
#define MCPGATE_VERSION "0.0.0"
#endif

#define WS_SERVER_NAME "whoami-server"
#define WS_LATEST_VERSION "2025-11-25"
#define WS_MAX_LINE_BYTES (16u * 1024 * 1024)       /* longest stdin line accepted */
#define WS_OUT_HIGH_WATER_BYTES (64u * 1024 * 1024) /* stop reading stdin above this */
#define WS_CLIENT_REQUEST_TIMEOUT_MS (300u * 1000)  /* sampling / elicitation answers */

/* JSON-RPC 2.0 §5.1 error codes, and MCP's "resource not found" (server/resources). */
#define WS_PARSE_ERROR (-32700)
#define WS_INVALID_REQUEST (-32600)
#define WS_METHOD_NOT_FOUND (-32601)
#define WS_INVALID_PARAMS (-32602)
#define WS_INTERNAL_ERROR (-32603)
#define WS_RESOURCE_NOT_FOUND (-32002)

#define WS_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ws_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

/* ---- util.c ---------------------------------------------------------- */

void *ws_xmalloc(size_t size);
void *ws_xcalloc(size_t nmemb, size_t size);
void *ws_xrealloc(void *ptr, size_t size);
char *ws_xstrdup(const char *s);
_Noreturn void ws_assert_fail(const char *what, const char *file, int line);
/* One line on stderr, prefixed with the server name. */
void ws_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t ws_now_ms(void);
/* A JSON string from bytes that may not be UTF-8 (the environment): invalid
 * bytes become '?'. Never NULL. */
json_t *ws_json_string_lossy(const char *s, size_t len);
/* Installs the aborting allocator in jansson: no json_* constructor then
 * returns NULL for lack of memory, only for invalid input. */
void ws_json_init(void);

/* ---- io.c: stdin lines and the stdout queue --------------------------- */

struct ws_linebuf {
    char *buf;       /* owned */
    size_t cap;      /* bytes allocated */
    size_t start;    /* first byte not yet handed out */
    size_t len;      /* end of the data read */
    size_t scanned;  /* bytes after start known to hold no newline */
    bool discarding; /* dropping the rest of an over-long line */
    bool eof;        /* read(2) returned 0 */
};

enum ws_line_status {
    WS_LINE_NONE = 0, /* no complete line buffered */
    WS_LINE_OK,       /* *line, *len is the next line, without its newline */
    WS_LINE_TOO_LONG, /* a line passed WS_MAX_LINE_BYTES; its rest is skipped */
};

struct ws_chunk {
    struct ws_chunk *next; /* owned */
    char *data;            /* owned */
    size_t len;
    size_t off; /* bytes already written */
};

struct ws_outq {
    struct ws_chunk *head; /* owned */
    struct ws_chunk *tail; /* borrowed */
    size_t bytes;          /* queued, not yet written */
};

/* 0 after reading (check lb->eof), or a negative errno (-EAGAIN, -EINTR). */
int ws_linebuf_read(struct ws_linebuf *lb, int fd);
/* The next complete line; it stays valid until the next ws_linebuf_read. At
 * EOF an unterminated last line counts as a line. */
enum ws_line_status ws_linebuf_next(struct ws_linebuf *lb, const char **line, size_t *len);
void ws_linebuf_free(struct ws_linebuf *lb);

/* Takes DATA (malloc'd, LEN bytes). */
void ws_outq_push(struct ws_outq *q, char *data, size_t len);
/* Writes while FD accepts data without blocking, at most MAX_WRITE bytes per
 * write(2). 0 when written or when FD would block, or a negative errno. */
int ws_outq_flush(struct ws_outq *q, int fd, size_t max_write);
void ws_outq_clear(struct ws_outq *q);

/* ---- protocol.c: JSON-RPC, batches and answers owed --------------------- */

enum ws_state {
    WS_STATE_NEW = 0,      /* before initialize */
    WS_STATE_INITIALIZING, /* initialize answered, notifications/initialized not seen */
    WS_STATE_READY,
};

struct ws_batch {         /* a JSON-RPC batch whose answers are being collected */
    json_t *responses;    /* owned array */
    unsigned outstanding; /* answers still owed, plus one while the batch is read */
};

enum ws_op_kind {
    WS_OP_SLOW = 0,       /* the slow tool, driven by its timer */
    WS_OP_CLIENT_REQUEST, /* waiting for the client's answer to our request */
};

struct ws_server;
/* Builds the tool result from the client's JSON-RPC response message. */
typedef json_t *(*ws_client_result_fn)(struct ws_server *srv, const json_t *response);

struct ws_op {          /* a client request that will be answered later */
    struct ws_op *next; /* owned */
    enum ws_op_kind kind;
    json_t *id;             /* owned: the client's request id */
    struct ws_batch *batch; /* shared through batch->outstanding; NULL outside a batch */
    uint64_t due_ms;        /* monotonic time of the next timer event */
    /* WS_OP_SLOW */
    json_t *progress_token; /* owned; NULL when the request had none */
    uint64_t start_ms;
    uint64_t duration_ms;
    unsigned step; /* progress steps sent */
    unsigned steps;
    /* WS_OP_CLIENT_REQUEST */
    char srv_id[24]; /* our request's id, "srv-N" */
    ws_client_result_fn on_result;
};

struct ws_server {
    enum ws_state state;
    char version[16];     /* negotiated protocol version; "" before initialize */
    bool client_sampling; /* the client declared these capabilities */
    bool client_elicitation;
    char log_level[16]; /* from logging/setLevel */
    unsigned next_srv_id;
    struct ws_op *ops;  /* owned list */
    struct ws_outq out; /* owned: messages for stdout */
};

struct ws_call {            /* one client request being handled */
    struct ws_server *srv;  /* borrowed */
    json_t *id;             /* borrowed */
    struct ws_batch *batch; /* borrowed; NULL outside a batch */
    json_t *params;         /* borrowed; an object or NULL */
    json_t *args;           /* borrowed; tools/call arguments, an object or NULL */
    json_t *error;          /* owned: set when the answer is a JSON-RPC error */
    bool pending;           /* set when an op answers later */
};

void ws_server_init(struct ws_server *srv);
void ws_server_free(struct ws_server *srv);
/* Handles one stdin line: a message or a batch. */
void ws_handle_line(struct ws_server *srv, const char *line, size_t len);
void ws_handle_too_long(struct ws_server *srv);
/* Serializes MSG as one line onto stdout's queue; takes MSG. */
void ws_send(struct ws_server *srv, json_t *msg);
/* Sets c->error and returns NULL, so handlers can `return ws_fail(...)`. */
json_t *ws_fail(struct ws_call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool ws_version_at_least(const struct ws_server *srv, const char *version);

/* Registers an answer owed to C's request; sets c->pending. */
struct ws_op *ws_op_new(struct ws_call *c, enum ws_op_kind kind);
/* Answers OP's request with RESULT (taken) and frees OP. */
void ws_op_finish(struct ws_server *srv, struct ws_op *op, json_t *result);
/* Frees OP without an answer (cancelled, abandoned). */
void ws_op_drop(struct ws_server *srv, struct ws_op *op);
/* Sends a server->client request for C's tool call; ON_RESULT answers it. */
void ws_client_request(struct ws_call *c, const char *method, json_t *params,
                       ws_client_result_fn on_result);
uint64_t ws_ops_next_due_ms(const struct ws_server *srv); /* UINT64_MAX: none */
void ws_ops_run_due(struct ws_server *srv, uint64_t now_ms);
/* Stdin is closed: nothing more can be answered by the client. */
size_t ws_ops_abandon(struct ws_server *srv);

/* ---- mcp.c: MCP methods ------------------------------------------------- */

typedef json_t *(*ws_method_fn)(struct ws_call *c);

struct ws_method {
    const char *name;
    ws_method_fn fn;
    bool before_init; /* allowed before initialize */
};

const struct ws_method *ws_method_find(const char *name);

/* ---- tools.c ------------------------------------------------------------ */

json_t *ws_tools_list(const struct ws_server *srv);
/* tools/call: a CallToolResult, or NULL with c->error or c->pending set. */
json_t *ws_tools_call(struct ws_call *c, const char *name);
/* The slow tool's timer fired. */
void ws_slow_tick(struct ws_server *srv, struct ws_op *op);
/* {"content": [{"type": "text", "text": TEXT}]}, with isError when IS_ERROR. */
json_t *ws_text_result(const char *text, size_t len, bool is_error);

/* ---- identity.c ---------------------------------------------------------- */

/* The identity from MCP_USER_* and friends, as structuredContent.env. */
json_t *ws_identity_env_new(void);
/* {"env": ..., "meta": params._meta["io.mcpgate/principal"] or null}. */
json_t *ws_identity_new(const json_t *params);
/* A human-readable rendering of ws_identity_new's object; malloc'd. */
char *ws_identity_text_new(const json_t *identity);
/* Sorted names of every environment variable (values are never read). */
json_t *ws_env_names_new(void);

#endif
