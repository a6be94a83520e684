/*
 * stdio: STDIO MCP servers as child processes speaking newline-delimited JSON
 * (MCP 2025-11-25 transports: stdio), on the caller's event_base. The one
 * place where mcpgate starts processes (STYLE: "children only through one
 * spawn function").
 *
 * A handle (struct stdio_child) owns, per child: the pid and a pidfd for it,
 * the parent ends of three pipes (stdin, stdout, stderr, all non-blocking),
 * their events, the stdin queue (an evbuffer), the unfinished stdout and
 * stderr lines, and two timers (the stop sequence; the wait for stdout EOF
 * after the exit). A process-wide list of reapers owns the pidfds of children
 * whose handle was freed while they ran, until the kernel says they exited.
 *
 * Why it is shaped so:
 *   - posix_spawn, not fork+exec: fork copies a large process's page tables
 *     and only async-signal-safe code may run between fork and exec;
 *     glibc's posix_spawn is clone(CLONE_VM|CLONE_VFORK)+exec and reports an
 *     exec failure as its return value (glibc waits for that child itself).
 *   - Reaping through a pidfd watched by the loop, not SIGCHLD: a handler
 *     that reaps everything would steal other code's children, and a pidfd
 *     names exactly one process with no pid-reuse race. Needs Linux >= 5.4
 *     (pidfd_open 5.3, waitid(P_PIDFD) 5.4).
 *   - The process group is the unit of killing: the child is its group's
 *     leader, the stop sequence signals the group, and when the leader exits
 *     whatever is left of its group is SIGKILLed, so a session leaves nothing
 *     behind. The exit is observed with WNOWAIT first: while the leader is an
 *     unreaped zombie its pid, which is the group id, cannot be reused, so no
 *     kill(-pgid) here can reach a stranger's group.
 *   - on_exit comes after stdout EOF, so every line written before the exit
 *     is delivered first, even when the pidfd fires before the pipe drains.
 *   - Each read callback does bounded work (256 KiB stdout, 64 KiB stderr) so
 *     a child that writes fast cannot starve the loop.
 *   - User callbacks run only from event callbacks (never from stdio_* calls)
 *     inside a busy bracket, so stdio_child_free inside any of them only
 *     marks the handle and the bracket frees it on the way out.
 *
 * Workarounds, each as "problem: answer  [where; test]":
 *   - execvp would search the gateway's PATH: own lookup in the child's env
 *       [resolve_command; test_path_lookup_uses_child_path]
 *   - posix_spawn gives no pidfd (pidfd_spawn is glibc 2.39): pidfd_open right
 *     after the spawn, race-free as the child is not reaped yet
 *       [stdio_spawn; test_free_running_child_no_zombie]
 *   - a gateway started with 0..2 closed gets pipe ends (and the pidfd) there:
 *     its own stdout/stderr writes would land in a child's pipe, and dup2(fd,
 *     fd) file actions keep FD_CLOEXEC on older libcs: all moved to >= 3
 *       [fd_above_std; test_spawn_with_std_fds_closed]
 *   - SIG_IGN dispositions and the signal mask survive exec (the gateway
 *     ignores SIGPIPE): POSIX_SPAWN_SETSIGDEF and SETSIGMASK
 *       [init_attr; test_child_signal_state]
 *   - a descendant that left the group can hold stdout open forever: the wait
 *     for EOF after the exit is bounded
 *       [on_pidfd, on_eof_timer; test_escaped_descendant_bounded]
 *   - other code's waitpid(-1) may reap our child: waitid on the pidfd then
 *     says ECHILD, which ends the child with its status unknown
 *       [reap, on_pidfd; test_reaped_elsewhere]
 *   - write(2) to a dead child's pipe raises SIGPIPE: the process must ignore
 *     it (gateway/app.c does); stdio_spawn warns once when nobody did
 *       [check_sigpipe; test_warns_when_sigpipe_not_ignored, test_stdin_epipe]
 *
 * Known and left alone: glibc 2.36's posix_spawn sets its internal signals
 * 32 and 33 (SIGCANCEL, SIGSETXID) to SIG_IGN in the child before exec, so
 * they stay ignored there; sigaddset refuses them, so SETSIGDEF cannot reset
 * them. Nothing uses them at default. test_child_signal_state pins it.
 */
#include "proxy/stdio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/panic.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "common/log.h"
#include "common/xevent.h"

#define STDIO_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define STDIO_OUT_CHUNK_BYTES (64u * 1024u)
#define STDIO_PIPE_BYTES (1024 * 1024)        /* F_SETPIPE_SZ of stdin and stdout */
#define STDIO_OUT_BUDGET_BYTES (256u * 1024u) /* stdout bytes read per event callback */
#define STDIO_ERR_CHUNK_BYTES (16u * 1024u)
#define STDIO_ERR_BUDGET_BYTES (64u * 1024u) /* stderr bytes read per event callback */
/* After the exit, on_exit waits this long at most for stdout EOF. */
#define STDIO_EOF_WAIT_MS 1000u
/* A partial line this long is read into directly (out_grow), not through the chunk. */
#define STDIO_LONG_LINE_BYTES (16u * 1024u)
/* A partial-line buffer bigger than this is freed, not kept, once delivered. */
#define STDIO_KEEP_PARTIAL_BYTES (64u * 1024u)

enum stop_phase {
    STOP_NONE = 0,
    STOP_STDIN_CLOSED, /* waiting kill_grace for the child to exit on EOF */
    STOP_TERM_SENT,    /* waiting kill_grace after SIGTERM to the group */
    STOP_KILL_SENT,
};

struct stdio_child {
    struct event_base *base; /* borrowed */
    struct stdio_child_callbacks cb;
    void *arg;               /* borrowed: the caller's */
    char *log_tag;           /* owned; NULL when none was given */
    pid_t pid;               /* also the process group id */
    int pidfd;               /* owned; -1 once reaped or handed to a reaper */
    int in_fd;               /* owned; -1 once closed */
    int out_fd;              /* owned; -1 once closed */
    int err_fd;              /* owned; -1 once closed */
    struct event *pid_ev;    /* owned */
    struct event *in_ev;     /* owned: EV_WRITE, added while in_buf has bytes */
    struct event *out_ev;    /* owned */
    struct event *err_ev;    /* owned */
    struct event *stop_ev;   /* owned: the stop sequence's timer */
    struct event *eof_ev;    /* owned: bounds the wait for stdout EOF after the exit */
    struct evbuffer *in_buf; /* owned: bytes queued for stdin */
    struct strbuf out_part;  /* owned: an unfinished stdout line */
    struct strbuf err_part;  /* owned: an unfinished stderr line, cut at the log limit */
    bool err_cut;            /* the current stderr line passed the cut */
    uint64_t max_line_bytes;
    uint64_t high_water;
    uint64_t kill_grace_ms;
    enum stop_phase phase;
    bool want_writable; /* send returned -ENOBUFS: on_writable at the low-water mark */
    bool reaped;
    bool exit_reported;
    int status;
    char *reason;      /* owned: set at the line-limit kill or at reap; NULL for exit 0 */
    int busy;          /* > 0 while an event callback of this handle runs */
    bool free_pending; /* stdio_child_free was called while busy */
};

/* A freed handle's child that still runs: reaped when its pidfd fires. */
struct reaper {
    struct reaper *prev, *next;
    struct event *ev; /* owned */
    pid_t pid;
    int pidfd; /* owned */
};

static struct reaper *reapers; /* owned: every reaper, until its child is reaped */
static size_t children_alive;
static bool sigpipe_warned;

/* ---- small helpers -------------------------------------------------------- */

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void add_timer_ms(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000u),
                         .tv_usec = (suseconds_t)(ms % 1000u) * 1000};
    event_add(ev, &tv);
}

/*
 * Signals the group led by PID. The leader is never reaped when this runs
 * (see the header comment), so the group id is still ours. A leader that
 * moved itself to another group still gets the signal through its pidfd.
 */
static void signal_group(pid_t pid, int pidfd, int sig)
{
    if (kill(-pid, sig) != 0 && errno == ESRCH && pidfd >= 0)
        syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/*
 * Reaps the child behind PIDFD if it has exited: 1 with *SI filled, 0 when it
 * still runs, -ECHILD when someone else reaped it (its status is lost).
 */
static int reap(pid_t pid, int pidfd, siginfo_t *si)
{
    for (;;) {
        memset(si, 0, sizeof(*si));
        if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, si, WEXITED | WNOHANG | WNOWAIT) == 0)
            break;
        if (errno != EINTR)
            return -errno;
    }
    if (si->si_pid == 0)
        return 0;
    /* The leader is a zombie, so the group id is still ours: end the rest. */
    kill(-pid, SIGKILL);
    siginfo_t done;
    memset(&done, 0, sizeof(done));
    while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &done, WEXITED | WNOHANG) != 0 && errno == EINTR)
        ;
    return 1;
}

/* ---- reapers: children of freed handles ------------------------------------ */

static void reaper_unlink_free(struct reaper *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        reapers = r->next;
    if (r->next)
        r->next->prev = r->prev;
    event_free(r->ev);
    close(r->pidfd);
    free(r);
    children_alive--;
}

static void on_reaper_pidfd(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct reaper *r = arg;
    siginfo_t si;
    if (reap(r->pid, r->pidfd, &si) != 0)
        reaper_unlink_free(r);
}

/* Takes ownership of PIDFD: SIGKILLs the group and reaps the leader later. */
static void reaper_start(struct event_base *base, pid_t pid, int pidfd)
{
    signal_group(pid, pidfd, SIGKILL);
    struct reaper *r = xcalloc(1, sizeof(*r));
    r->pid = pid;
    r->pidfd = pidfd;
    r->ev = xevent_new(base, pidfd, EV_READ | EV_PERSIST, on_reaper_pidfd, r);
    r->next = reapers;
    if (reapers)
        reapers->prev = r;
    reapers = r;
    event_add(r->ev, NULL);
}

void stdio_children_reap_all(void)
{
    while (reapers) {
        struct reaper *r = reapers;
        signal_group(r->pid, r->pidfd, SIGKILL);
        siginfo_t si;
        while (waitid((idtype_t)P_PIDFD, (id_t)r->pidfd, &si, WEXITED) != 0 && errno == EINTR)
            ;
        reaper_unlink_free(r);
    }
}

size_t stdio_children_alive(void)
{
    return children_alive;
}

/* ---- the handle's lifetime ------------------------------------------------- */

static void destroy(struct stdio_child *c)
{
    struct event *evs[] = {c->pid_ev, c->in_ev, c->out_ev, c->err_ev, c->stop_ev, c->eof_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    if (c->in_buf)
        evbuffer_free(c->in_buf);
    strbuf_release(&c->out_part);
    strbuf_release(&c->err_part);
    free(c->reason);
    free(c->log_tag);
    free(c);
}

/* Ends an event callback's busy bracket. False: the handle is gone. */
static bool leave(struct stdio_child *c)
{
    if (--c->busy == 0 && c->free_pending) {
        destroy(c);
        return false;
    }
    return true;
}

static void stdin_close(struct stdio_child *c)
{
    if (c->in_fd < 0)
        return;
    event_del(c->in_ev);
    close_fd(&c->in_fd);
    evbuffer_drain(c->in_buf, evbuffer_get_length(c->in_buf));
    c->want_writable = false;
}

static void stdout_close(struct stdio_child *c)
{
    if (c->out_fd < 0)
        return;
    event_del(c->out_ev);
    close_fd(&c->out_fd);
}

/* ---- stderr: lines to the log ---------------------------------------------- */

static void err_flush_line(struct stdio_child *c)
{
    struct gw_log_line *l = gw_log_begin(GW_LOG_INFO, "upstream", c->log_tag, "stderr");
    gw_log_strn(l, "line", c->err_part.buf ? c->err_part.buf : "", c->err_part.len);
    gw_log_int(l, "pid", c->pid);
    if (c->err_cut)
        gw_log_bool(l, "truncated", true);
    gw_log_end(l);
    strbuf_reset(&c->err_part);
    c->err_cut = false;
}

static void err_feed(struct stdio_child *c, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        size_t room = STDIO_STDERR_LINE_BYTES - c->err_part.len;
        if (seg > room)
            c->err_cut = true;
        strbuf_append(&c->err_part, p, seg < room ? seg : room);
        if (!nl)
            return;
        if (c->err_part.len > 0 && c->err_part.buf[c->err_part.len - 1] == '\r' && !c->err_cut)
            c->err_part.buf[--c->err_part.len] = '\0';
        err_flush_line(c);
        p += seg + 1;
        n -= seg + 1;
    }
}

/* Reads stderr up to the budget; at EOF or error, logs the last piece and closes. */
static void err_read(struct stdio_child *c)
{
    char chunk[STDIO_ERR_CHUNK_BYTES];
    size_t budget = STDIO_ERR_BUDGET_BYTES;
    while (c->err_fd >= 0 && budget > 0) {
        ssize_t n = read(c->err_fd, chunk, sizeof(chunk));
        if (n > 0) {
            err_feed(c, chunk, (size_t)n);
            budget -= (size_t)n < budget ? (size_t)n : budget;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (c->err_part.len > 0 || c->err_cut)
            err_flush_line(c);
        event_del(c->err_ev);
        close_fd(&c->err_fd);
    }
}

static void on_stderr(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    err_read(arg); /* calls no user callback: no busy bracket needed */
}

/* ---- exit ------------------------------------------------------------------- */

/* Called once the child is reaped and stdout is done. Inside a busy bracket. */
static void report_exit(struct stdio_child *c)
{
    if (c->exit_reported)
        return;
    c->exit_reported = true;
    event_del(c->eof_ev);
    stdout_close(c);
    /* What the child wrote to stderr before it died is in the pipe: log it. */
    err_read(c);
    if (c->err_fd >= 0) {
        if (c->err_part.len > 0 || c->err_cut)
            err_flush_line(c);
        event_del(c->err_ev);
        close_fd(&c->err_fd);
    }
    gw_log(GW_LOG_DEBUG, "upstream", c->log_tag, "child exited", "reason",
           c->reason ? c->reason : "exit status 0", NULL);
    c->cb.on_exit(c, c->status, c->reason, c->arg);
}

static char *exit_reason(const struct stdio_child *c, const siginfo_t *si, int *status)
{
    if (si->si_code == CLD_EXITED) {
        *status = si->si_status & 0xff;
        return *status == 0 ? NULL : xasprintf("exited with status %d", *status);
    }
    int sig = si->si_status;
    *status = 128 + sig;
    if (sig == SIGKILL && c->phase == STOP_KILL_SENT)
        return xstrdup("killed after stop grace");
    if (sig == SIGTERM && c->phase >= STOP_TERM_SENT)
        return xstrdup("terminated by SIGTERM after stop grace");
    const char *abbrev = sigabbrev_np(sig);
    const char *core = si->si_code == CLD_DUMPED ? ", core dumped" : "";
    if (abbrev)
        return xasprintf("killed by signal %d (SIG%s)%s", sig, abbrev, core);
    return xasprintf("killed by signal %d%s", sig, core);
}

static void on_pidfd(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stdio_child *c = arg;
    siginfo_t si;
    int r = reap(c->pid, c->pidfd, &si);
    if (r == 0)
        return;
    children_alive--;
    c->reaped = true;
    event_del(c->pid_ev);
    close_fd(&c->pidfd);
    event_del(c->stop_ev);
    stdin_close(c);
    if (c->reason == NULL) { /* a line-limit kill keeps its own reason */
        if (r < 0) {
            c->status = 255;
            c->reason = xstrdup("exit status lost: the child was reaped by other code");
        } else {
            c->reason = exit_reason(c, &si, &c->status);
        }
    }
    if (c->out_fd >= 0) {
        /*
         * Lines written before the exit may still be in the pipe: on_exit
         * waits for EOF, but only so long, since a descendant that left the
         * process group (setsid) can keep the pipe open forever.
         */
        add_timer_ms(c->eof_ev, STDIO_EOF_WAIT_MS);
        return;
    }
    c->busy++;
    report_exit(c);
    leave(c);
}

static void on_eof_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stdio_child *c = arg;
    gw_log(GW_LOG_WARN, "upstream", c->log_tag,
           "stdout still open after the child exited: a descendant left its process group; "
           "not waiting for it",
           NULL);
    c->busy++;
    report_exit(c);
    leave(c);
}

/* ---- stdout: lines to on_line ----------------------------------------------- */

static void line_limit_kill(struct stdio_child *c)
{
    char limit[32];
    snprintf(limit, sizeof(limit), "%" PRIu64, c->max_line_bytes);
    gw_log(GW_LOG_WARN, "upstream", c->log_tag, "stdout line over the limit: killing the child",
           "max_line_bytes", limit, NULL);
    if (!c->reaped)
        signal_group(c->pid, c->pidfd, SIGKILL);
    free(c->reason);
    c->status = 128 + SIGKILL;
    c->reason = xasprintf("stdout line exceeds %" PRIu64 " bytes", c->max_line_bytes);
    stdout_close(c);
    strbuf_release(&c->out_part);
}

/* LINE[LEN] may be overwritten: it is the '\n' or the strbuf's NUL. */
static void deliver(struct stdio_child *c, char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    line[len] = '\0';
    c->cb.on_line(c, line, len, c->arg);
}

/*
 * Splits a chunk read from stdout into lines. A line that lies wholly in the
 * chunk is delivered from it, without a copy; pieces go through out_part.
 * Stops when the handle is freed or the line limit kills the child.
 */
static void out_feed(struct stdio_child *c, char *p, size_t n)
{
    while (n > 0 && !c->free_pending && c->out_fd >= 0) {
        char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        if ((uint64_t)c->out_part.len + seg > c->max_line_bytes) {
            line_limit_kill(c);
            return;
        }
        if (!nl) {
            strbuf_append(&c->out_part, p, seg);
            return;
        }
        if (c->out_part.len == 0) {
            deliver(c, p, seg);
        } else {
            strbuf_append(&c->out_part, p, seg);
            deliver(c, c->out_part.buf, c->out_part.len);
            if (c->free_pending)
                return;
            if (c->out_part.cap > STDIO_KEEP_PARTIAL_BYTES)
                strbuf_release(&c->out_part);
            else
                strbuf_reset(&c->out_part);
        }
        p += seg + 1;
        n -= seg + 1;
    }
}

/* Stdout hit EOF (or an error): the last unterminated piece is a line too. */
static void out_eof(struct stdio_child *c)
{
    stdout_close(c);
    if (c->out_part.len > 0) {
        deliver(c, c->out_part.buf, c->out_part.len);
        if (c->free_pending)
            return;
        strbuf_release(&c->out_part);
    }
    if (c->reaped)
        report_exit(c);
}

/*
 * A long line in progress (out_part holds STDIO_LONG_LINE_BYTES of it or more)
 * is read straight into out_part,
 * N new bytes at FROM: a 1 MiB result then costs one copy (the kernel's),
 * not two. When its '\n' came, the line is delivered from where it is, and
 * what followed it goes through out_feed like any chunk.
 */
static void out_grow(struct stdio_child *c, size_t from, size_t n)
{
    char *nl = memchr(c->out_part.buf + from, '\n', n);
    size_t line_len = nl ? (size_t)(nl - c->out_part.buf) : from + n;
    if ((uint64_t)line_len > c->max_line_bytes) {
        line_limit_kill(c);
        return;
    }
    strbuf_commit(&c->out_part, n);
    if (!nl)
        return;
    struct strbuf line = c->out_part; /* moved out: out_feed starts a new partial */
    c->out_part = (struct strbuf)STRBUF_INIT;
    size_t rest = from + n - (line_len + 1);
    deliver(c, line.buf, line_len);
    out_feed(c, nl + 1, rest);
    if (c->out_part.buf == NULL && line.cap <= STDIO_KEEP_PARTIAL_BYTES) {
        strbuf_reset(&line);
        c->out_part = line;
    } else {
        strbuf_release(&line);
    }
}

static void on_stdout(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct stdio_child *c = arg;
    char chunk[STDIO_OUT_CHUNK_BYTES]; /* deliver() writes its NUL over a '\n' in it */
    size_t budget = STDIO_OUT_BUDGET_BYTES;
    c->busy++;
    while (budget > 0 && c->out_fd >= 0 && !c->free_pending) {
        bool long_line = c->out_part.len >= STDIO_LONG_LINE_BYTES;
        size_t want = budget < STDIO_OUT_CHUNK_BYTES ? budget : STDIO_OUT_CHUNK_BYTES;
        if (long_line && c->out_part.cap - c->out_part.len - 1 > want)
            want = c->out_part.cap - c->out_part.len - 1; /* what the buffer has room for */
        if (want > budget)
            want = budget;
        size_t from = c->out_part.len;
        char *dst = long_line ? strbuf_spare(&c->out_part, want) : chunk;
        ssize_t n = read(fd, dst, want);
        if (n > 0) {
            budget -= (size_t)n;
            if (long_line)
                out_grow(c, from, (size_t)n);
            else
                out_feed(c, chunk, (size_t)n);
            /* Short: the pipe is empty now. The event is level-triggered, so
             * what comes next (or EOF) is reported again; reading on until
             * EAGAIN would cost a read(2) per line for nothing. */
            if ((size_t)n < want)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            gw_log(GW_LOG_WARN, "upstream", c->log_tag, "reading stdout failed", "error",
                   strerror(errno), NULL);
        out_eof(c);
        break;
    }
    /* A line-limit kill after the exit ends the wait for EOF. */
    if (c->out_fd < 0 && c->reaped && !c->free_pending)
        report_exit(c);
    leave(c);
}

/* ---- stdin -------------------------------------------------------------------- */

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct stdio_child *c = arg;
    int n = evbuffer_write(c->in_buf, fd);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        /* EPIPE (SIGPIPE is ignored) or another error: the child's stdin is gone. */
        gw_log(GW_LOG_DEBUG, "upstream", c->log_tag, "stdin closed", "error", strerror(errno),
               NULL);
        stdin_close(c);
        return;
    }
    size_t left = evbuffer_get_length(c->in_buf);
    if (left == 0)
        event_del(c->in_ev);
    if (c->want_writable && left <= c->high_water / 2) {
        c->want_writable = false;
        if (c->cb.on_writable) {
            c->busy++;
            c->cb.on_writable(c, c->arg);
            leave(c);
        }
    }
}

int stdio_child_send(struct stdio_child *c, const char *msg, size_t len)
{
    if (memchr(msg, '\n', len) != NULL)
        return -EINVAL;
    if (c->in_fd < 0 || c->free_pending)
        return -EPIPE;
    size_t queued = evbuffer_get_length(c->in_buf);
    if (queued > 0 && (uint64_t)queued + len + 1 > c->high_water) {
        c->want_writable = true;
        return -ENOBUFS;
    }
    if (evbuffer_add(c->in_buf, msg, len) != 0 || evbuffer_add(c->in_buf, "\n", 1) != 0)
        GW_PANIC("out of memory (evbuffer_add)");
    /* The pipe is nearly always writable: with nothing queued before, write
     * now, which saves a loop pass and two epoll_ctl per message (measured by
     * make bench). What is left, and any error, goes through on_stdin. */
    if (queued == 0 && evbuffer_write(c->in_buf, c->in_fd) >= 0 &&
        evbuffer_get_length(c->in_buf) == 0)
        return 0;
    event_add(c->in_ev, NULL);
    return 0;
}

size_t stdio_child_stdin_buffered(const struct stdio_child *c)
{
    return evbuffer_get_length(c->in_buf);
}

/* ---- stop and free ------------------------------------------------------------ */

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stdio_child *c = arg;
    char grace[32];
    snprintf(grace, sizeof(grace), "%" PRIu64, c->kill_grace_ms);
    if (c->phase == STOP_STDIN_CLOSED) {
        gw_log(GW_LOG_INFO, "upstream", c->log_tag,
               "child still running after stdin closed: SIGTERM to its group", "kill_grace_ms",
               grace, NULL);
        c->phase = STOP_TERM_SENT;
        signal_group(c->pid, c->pidfd, SIGTERM);
        add_timer_ms(c->stop_ev, c->kill_grace_ms);
    } else if (c->phase == STOP_TERM_SENT) {
        gw_log(GW_LOG_WARN, "upstream", c->log_tag,
               "child still running after SIGTERM: SIGKILL to its group", "kill_grace_ms", grace,
               NULL);
        c->phase = STOP_KILL_SENT;
        signal_group(c->pid, c->pidfd, SIGKILL);
    }
}

void stdio_child_stop(struct stdio_child *c)
{
    if (c->reaped || c->free_pending || c->phase != STOP_NONE)
        return;
    stdin_close(c); /* MCP stdio shutdown: close the server's stdin first */
    c->phase = STOP_STDIN_CLOSED;
    add_timer_ms(c->stop_ev, c->kill_grace_ms);
}

void stdio_child_free(struct stdio_child *c)
{
    if (c == NULL || c->free_pending)
        return;
    c->free_pending = true;
    /* Give up the OS resources now; the memory goes at the end of the bracket. */
    event_del(c->stop_ev);
    event_del(c->eof_ev);
    stdin_close(c);
    stdout_close(c);
    if (c->err_fd >= 0) {
        event_del(c->err_ev);
        close_fd(&c->err_fd);
    }
    if (!c->reaped) {
        event_del(c->pid_ev);
        reaper_start(c->base, c->pid, c->pidfd);
        c->pidfd = -1; /* the reaper owns it now */
    }
    if (c->busy == 0)
        destroy(c);
}

pid_t stdio_child_pid(const struct stdio_child *c)
{
    return c->pid;
}

/* ---- spawn --------------------------------------------------------------------- */

/*
 * The program for NAME, as execvp would find it but in the child's PATH.
 * Returns an owned path, or NULL with *ERR set to ENOENT, or EACCES when a
 * candidate exists but cannot be executed (execvp reports the same).
 */
static char *resolve_command(const char *name, const char *const *env, int *err)
{
    if (strchr(name, '/') != NULL)
        return xstrdup(name);
    const char *path = NULL;
    for (const char *const *e = env; e && *e && !path; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    if (path == NULL)
        path = STDIO_DEFAULT_PATH;
    *err = ENOENT;
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        /* Relative and empty entries would resolve against another cwd: skipped. */
        if (p[0] == '/') {
            char *cand = xasprintf("%.*s/%s", (int)(end - p), p, name);
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
                if (access(cand, X_OK) == 0)
                    return cand;
                *err = EACCES;
            }
            free(cand);
        }
        if (*end == '\0')
            return NULL;
        p = end;
    }
}

/* Moves *FD to the lowest free fd >= 3, keeping close-on-exec. */
static int fd_above_std(int *fd)
{
    if (*fd >= 3)
        return 0;
    int moved = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0)
        return -errno;
    close(*fd);
    *fd = moved;
    return 0;
}

/*
 * A close-on-exec pipe with both ends >= 3, the parent's end non-blocking.
 * When the gateway runs with some of 0..2 closed, pipe2 hands those out: a
 * parent end there would receive the gateway's own writes to stdout/stderr
 * (gw_log writes to fd 2), and a child end there relies on dup2(fd, fd) in
 * a file action clearing FD_CLOEXEC, which only newer libcs do.
 */
static int pipe_for_child(int fds[2], bool child_reads)
{
    int rc = 0;
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -errno;
    int parent_end = child_reads ? 1 : 0;
    if ((rc = fd_above_std(&fds[0])) != 0 || (rc = fd_above_std(&fds[1])) != 0)
        goto fail;
    int fl = fcntl(fds[parent_end], F_GETFL);
    if (fl < 0 || fcntl(fds[parent_end], F_SETFL, fl | O_NONBLOCK) != 0) {
        rc = -errno;
        goto fail;
    }
    /* A 64 KiB pipe moves a 1 MiB message in 16+ wake-ups of both processes;
     * a bigger one in a few. Best effort: an unprivileged process may be held
     * to /proc/sys/fs/pipe-max-size (1 MiB by default) or to its pipe quota. */
    (void)fcntl(fds[parent_end], F_SETPIPE_SZ, STDIO_PIPE_BYTES);
    return 0;
fail:
    close_fd(&fds[0]);
    close_fd(&fds[1]);
    return rc;
}

/*
 * posix_spawn has no attribute for niceness, so the parent sets it just after the exec, on
 * the child's whole process group: a process the child forked in that moment gets it too,
 * and every later one inherits it. Raising niceness needs no privilege.
 */
static void lower_priority(pid_t pgid, unsigned nice, const char *log_tag)
{
    if (nice == 0)
        return;
    errno = 0;
    int mine = getpriority(PRIO_PROCESS, 0); /* -1 is a valid niceness: errno tells */
    if (errno == 0) {
        int want = mine + (int)nice > 19 ? 19 : mine + (int)nice;
        if (setpriority(PRIO_PGRP, (id_t)pgid, want) == 0)
            return;
    }
    gw_log(GW_LOG_WARN, "upstream", log_tag, "cannot lower the child's CPU priority (stdio.nice)",
           "error", strerror(errno), NULL);
}

/* Names what failed when posix_spawn did: the cwd, or the program. */
static char *spawn_error(const char *name, const char *cwd, int rc)
{
    if (cwd) {
        struct stat st;
        int e = 0;
        if (stat(cwd, &st) != 0)
            e = errno;
        else if (!S_ISDIR(st.st_mode))
            e = ENOTDIR;
        else if (access(cwd, X_OK) != 0)
            e = errno;
        if (e)
            return xasprintf("cannot start \"%s\": cwd \"%s\": %s", name, cwd, strerror(e));
    }
    return xasprintf("cannot start \"%s\": %s", name, strerror(rc));
}

static void init_attr(posix_spawnattr_t *attr)
{
    sigset_t none, dfl;
    sigemptyset(&none);
    /* Dispositions the gateway may ignore that a child expects at default. */
    static const int dfl_sigs[] = {SIGPIPE, SIGTERM, SIGINT,  SIGHUP,  SIGQUIT, SIGCHLD, SIGUSR1,
                                   SIGUSR2, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU, SIGXFSZ};
    sigemptyset(&dfl);
    for (size_t i = 0; i < sizeof(dfl_sigs) / sizeof(dfl_sigs[0]); i++)
        sigaddset(&dfl, dfl_sigs[i]);
    posix_spawnattr_init(attr);
    posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                       POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(attr, 0); /* its own group, led by itself */
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setsigdefault(attr, &dfl);
}

/* Creates C's events and stdin buffer and starts watching. */
static void child_init_events(struct stdio_child *c)
{
    c->pid_ev = xevent_new(c->base, c->pidfd, EV_READ | EV_PERSIST, on_pidfd, c);
    c->in_ev = xevent_new(c->base, c->in_fd, EV_WRITE | EV_PERSIST, on_stdin, c);
    c->out_ev = xevent_new(c->base, c->out_fd, EV_READ | EV_PERSIST, on_stdout, c);
    c->err_ev = xevent_new(c->base, c->err_fd, EV_READ | EV_PERSIST, on_stderr, c);
    c->stop_ev = xevent_new(c->base, -1, 0, on_stop_timer, c);
    c->eof_ev = xevent_new(c->base, -1, 0, on_eof_timer, c);
    c->in_buf = xevbuffer_new();
    event_add(c->pid_ev, NULL);
    event_add(c->out_ev, NULL);
    event_add(c->err_ev, NULL);
}

/* Warns once when SIGPIPE kills: on_stdin writes with write(2) to pipes. */
static void check_sigpipe(const char *log_tag)
{
    struct sigaction sa;
    if (sigpipe_warned || sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL)
        return;
    sigpipe_warned = true;
    gw_log(GW_LOG_WARN, "upstream", log_tag,
           "SIGPIPE is not ignored: a write to a child that just died will kill the process", NULL);
}

/* Owned handle for a process that runs, taking ownership of PIDFD and the parent ends. */
static struct stdio_child *child_new(struct event_base *base, const struct stdio_spawn_options *o,
                                     const struct stdio_child_callbacks *cb, void *arg, pid_t pid,
                                     int pidfd, int in_fd, int out_fd, int err_fd)
{
    struct stdio_child *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->cb = *cb;
    c->arg = arg;
    c->log_tag = o->log_tag ? xstrdup(o->log_tag) : NULL;
    c->pid = pid;
    c->pidfd = pidfd;
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->err_fd = err_fd;
    c->max_line_bytes = o->max_line_bytes ? o->max_line_bytes : STDIO_DEFAULT_MAX_LINE_BYTES;
    c->high_water = o->stdin_high_water_bytes ? o->stdin_high_water_bytes
                                              : STDIO_DEFAULT_STDIN_HIGH_WATER_BYTES;
    c->kill_grace_ms = o->kill_grace_ms;
    child_init_events(c);
    return c;
}

struct stdio_child *stdio_spawn(struct event_base *base, const struct stdio_spawn_options *o,
                                const struct stdio_child_callbacks *cb, void *arg, char **err_out)
{
    static const char *const empty_env[] = {NULL};
    const char *const *env = o->env ? o->env : empty_env;
    const char *name = o->argv && o->argv[0] ? o->argv[0] : "";
    struct stdio_child *c = NULL;
    char *err = NULL, *path = NULL;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    bool fa_init = false, attr_init = false;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    pid_t pid = -1;
    int pidfd = -1, rc = 0, lookup_err = 0;

    if (name[0] == '\0') {
        err = xstrdup("cannot start a child: empty command");
        goto out;
    }
    check_sigpipe(o->log_tag);
    path = resolve_command(name, env, &lookup_err);
    if (path == NULL) {
        err = xasprintf("cannot start \"%s\": %s", name, strerror(lookup_err));
        goto out;
    }
    if ((rc = pipe_for_child(in, true)) != 0 || (rc = pipe_for_child(out, false)) != 0 ||
        (rc = pipe_for_child(errp, false)) != 0) {
        err = xasprintf("cannot start \"%s\": pipe: %s", name, strerror(-rc));
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    fa_init = true;
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* no gateway fd reaches the child */
    if (o->cwd)
        posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    init_attr(&attr);
    attr_init = true;
    /*
     * glibc reports exec errors (ENOENT, EACCES, ENOEXEC, and the chdir's) as
     * rc and has already reaped that child. A libc that reported them as exit
     * status 127 instead would show up as on_exit("exited with status 127");
     * resolve_command catches the common cases before any process exists.
     */
    rc = posix_spawn(&pid, path, &fa, &attr, (char *const *)o->argv, (char *const *)env);
    if (rc != 0) {
        err = spawn_error(name, o->cwd, rc);
        goto out;
    }
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* always O_CLOEXEC */
    if (pidfd < 0 || (rc = fd_above_std(&pidfd)) != 0) {
        int e = pidfd < 0 ? errno : -rc;
        close_fd(&pidfd);
        /* Unwatchable: end it now. Blocks only until a SIGKILLed child is gone. */
        kill(-pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        err = xasprintf("cannot start \"%s\": pidfd_open: %s", name, strerror(e));
        goto out;
    }
    children_alive++;
    lower_priority(pid, o->nice, o->log_tag);
    c = child_new(base, o, cb, arg, pid, pidfd, in[1], out[0], errp[0]);
    in[1] = out[0] = errp[0] = -1; /* owned by c now */
    char pid_text[24];
    snprintf(pid_text, sizeof(pid_text), "%d", (int)pid);
    gw_log(GW_LOG_DEBUG, "upstream", c->log_tag, "child started", "command", path, "pid", pid_text,
           NULL);

out:
    if (attr_init)
        posix_spawnattr_destroy(&attr);
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    int *fds[] = {&in[0], &in[1], &out[0], &out[1], &errp[0], &errp[1]};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        close_fd(fds[i]);
    free(path);
    if (err_out)
        *err_out = err;
    else
        free(err);
    return c;
}

void stdio_child_set_callbacks(struct stdio_child *c, const struct stdio_child_callbacks *cb,
                               void *arg)
{
    c->cb = *cb;
    c->arg = arg;
}
