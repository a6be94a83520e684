/*
 * stdio: child processes that speak newline-delimited JSON on stdin/stdout
 * (MCP 2025-11-25 transports: stdio). One child per MCP session, so one user
 * per process. DESIGN §7: spawned with posix_spawn, a clean environment, its
 * own process group, close-on-exec everywhere, reaped through a pidfd;
 * stderr lines go to the log tagged with the session.
 *
 * The child leads its own process group; when it exits, whatever is left of
 * that group is SIGKILLed, so a session leaves no processes behind.
 *
 * Everything runs on the caller's event_base and never blocks it. Callbacks
 * are only ever called from event callbacks, never from inside a stdio_*
 * call, and the handle may be freed from inside any of them. Needs Linux
 * >= 5.4 (pidfd_open, waitid(P_PIDFD)) and glibc >= 2.34 (closefrom action).
 */
#ifndef MCPGATE_PROXY_STDIO_H
#define MCPGATE_PROXY_STDIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct stdio_child;

/* Used when the corresponding option is 0. */
#define STDIO_DEFAULT_MAX_LINE_BYTES (4u * 1024u * 1024u)
#define STDIO_DEFAULT_STDIN_HIGH_WATER_BYTES (1u * 1024u * 1024u)
/* Each stderr line is logged cut to this many bytes. */
#define STDIO_STDERR_LINE_BYTES 4096u

/* on_line and on_exit are required. */
struct stdio_child_callbacks {
    /*
     * One complete stdout line without its '\n' (a trailing '\r' stripped),
     * in order, empty lines included. LINE is borrowed until the callback
     * returns and NUL-terminated (line[len] == '\0'). Bytes after the last
     * '\n' at EOF are delivered as a final line.
     */
    void (*on_line)(struct stdio_child *c, const char *line, size_t len, void *arg);
    /*
     * Exactly once (unless the handle is freed first), after the child was
     * reaped and every stdout line before its exit was delivered (stdout
     * reached EOF, or 1 s passed: a descendant that left the process group
     * may hold it open; its later lines are dropped). STATUS: the
     * exit code (0..255), or 128+signal when killed. REASON (borrowed, valid
     * during the call): NULL for exit status 0, else a clear text such as
     * "stdout line exceeds 4194304 bytes", "killed after stop grace",
     * "terminated by SIGTERM after stop grace", "exited with status 3",
     * "killed by signal 11 (SIGSEGV)".
     */
    void (*on_exit)(struct stdio_child *c, int status, const char *reason, void *arg);
    /*
     * Optional (NULL is fine): after stdio_child_send returned -ENOBUFS, the
     * stdin buffer has drained to the low-water mark (half the high-water
     * mark) again.
     */
    void (*on_writable)(struct stdio_child *c, void *arg);
};

struct stdio_spawn_options {
    /*
     * argv[0] without a '/' is looked up in the PATH of ENV (not the
     * gateway's), like execvp; "/usr/local/bin:/usr/bin:/bin" when ENV has no
     * PATH. Relative PATH entries (and empty ones) are skipped: they would
     * resolve against a different directory in the child. An argv[0] with a
     * '/' is used as is; a relative one resolves against CWD.
     */
    const char *const *argv;
    /* The complete environment, "NAME=value", NULL-terminated (NULL: empty).
     * Nothing of the gateway's own environment is inherited. */
    const char *const *env;
    const char *cwd;                 /* NULL: the gateway's */
    const char *log_tag;             /* e.g. the session id: request_id of log lines */
    uint64_t max_line_bytes;         /* stdout line limit; over it the child is killed */
    uint64_t stdin_high_water_bytes; /* stdio_child_send returns -ENOBUFS beyond it */
    uint64_t kill_grace_ms;          /* each step of the stop sequence; 0 is allowed */
    /* Added to the gateway's niceness for the child's process group (0: the same; the
     * result is capped at 19). A failure to set it is logged, not fatal. */
    unsigned nice;
};

/*
 * Starts a child. Returns an owned handle (release with stdio_child_free), or
 * NULL with *ERR_OUT (owned by the caller, free(); may be NULL) set, e.g.
 * "cannot start \"foo\": No such file or directory"; nothing is left behind
 * then (no process, no fd). All pointers in O are only read during the call.
 * Relies on SIGPIPE being ignored process-wide (gateway/app.c does); warns
 * once otherwise.
 */
struct stdio_child *stdio_spawn(struct event_base *base, const struct stdio_spawn_options *o,
                                const struct stdio_child_callbacks *cb, void *arg, char **err_out);

/*
 * Queues MSG plus '\n' on the child's stdin. Returns 0; -EINVAL when MSG
 * contains '\n'; -EPIPE when stdin is closed (stop, the child closed it, or
 * it exited); -ENOBUFS when the bytes queued plus this message would pass
 * the high-water mark (an empty buffer always takes one message, so a
 * message larger than the mark still goes through).
 */
int stdio_child_send(struct stdio_child *c, const char *msg, size_t len);
/*
 * Hands the child to a new owner: from now on CB (copied) and ARG receive its
 * lines and its exit (a warm child started before its session existed).
 */
void stdio_child_set_callbacks(struct stdio_child *c, const struct stdio_child_callbacks *cb,
                               void *arg);
/* Bytes queued for stdin and not yet written to the pipe. */
size_t stdio_child_stdin_buffered(const struct stdio_child *c);

/*
 * Graceful stop: close stdin (queued bytes are dropped), wait kill_grace,
 * SIGTERM to the process group, wait kill_grace, SIGKILL to the group. Stdout
 * lines are still delivered; on_exit fires when the child is reaped.
 * Idempotent; a no-op after exit.
 */
void stdio_child_stop(struct stdio_child *c);

/*
 * Frees the handle (NULL is fine); no callback runs after this returns. If
 * the child still runs: SIGKILL to its group, and it is still reaped (no
 * zombie) on the handle's event_base, without calling back. Safe inside any
 * callback of this handle.
 */
void stdio_child_free(struct stdio_child *c);

/* The child's pid (== its process group id). After on_exit it names a
 * reaped process: never signal it then. */
pid_t stdio_child_pid(const struct stdio_child *c);

/* Process-wide count of children spawned and not yet reaped, including those
 * whose handle was freed (for the max_processes limit and tests). */
size_t stdio_children_alive(void);

/*
 * At shutdown, after every handle was freed and before the event_base is:
 * SIGKILLs and reaps, blocking, the children of freed handles that the loop
 * has not reaped yet, and frees their events. Never call it on a running loop.
 */
void stdio_children_reap_all(void);

#endif
