/*
 * whoami-server main: the event loop. One thread waits in ppoll(2) on stdin
 * (requests), stdout (when messages are queued) and the nearest timer, with
 * SIGTERM and SIGINT unblocked only inside ppoll so their flag is never
 * missed. Nothing else blocks: stdout is written only as far as it accepts
 * without blocking, and stdin is not read while too much output is queued
 * (the policy for a slow reader: stop taking new work).
 *
 * Exits 0 on SIGTERM/SIGINT at once, and on stdin EOF once the answers
 * already made are written (answers still owed are abandoned).
 */
#include "whoami.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ws_stop_signal;

static void on_stop_signal(int signo)
{
    ws_stop_signal = signo;
}

/* Installs the handlers and blocks the signals; *WAIT_MASK unblocks them. */
static void setup_signals(sigset_t *wait_mask)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN; /* a closed stdout is an EPIPE error, not a death */
    sigaction(SIGPIPE, &sa, NULL);

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, wait_mask);
    /* The parent may have left them blocked: unblock them in ppoll anyway. */
    sigdelset(wait_mask, SIGTERM);
    sigdelset(wait_mask, SIGINT);
}

/* Bytes per write(2): a blocking pipe takes PIPE_BUF after POLLOUT without
 * blocking; a non-blocking stdout says EAGAIN instead, so take more. */
static size_t stdout_write_max(void)
{
    int flags = fcntl(STDOUT_FILENO, F_GETFL);
    return flags >= 0 && (flags & O_NONBLOCK) ? 256u * 1024 : PIPE_BUF;
}

static void read_stdin(struct ws_server *srv, struct ws_linebuf *in)
{
    int rc = ws_linebuf_read(in, STDIN_FILENO);
    if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR)
        return;
    if (rc < 0) {
        ws_log("reading stdin: %s; treated as end of input", strerror(-rc));
        in->eof = true;
    }
    const char *line;
    size_t len;
    enum ws_line_status st;
    while ((st = ws_linebuf_next(in, &line, &len)) != WS_LINE_NONE) {
        if (st == WS_LINE_OK)
            ws_handle_line(srv, line, len);
        else
            ws_handle_too_long(srv);
    }
    if (in->eof) {
        size_t n = ws_ops_abandon(srv);
        if (n > 0)
            ws_log("stdin closed: %zu call(s) in progress abandoned", n);
    }
}

static struct timespec *poll_timeout(const struct ws_server *srv, struct timespec *ts)
{
    uint64_t due = ws_ops_next_due_ms(srv);
    if (due == UINT64_MAX)
        return NULL;
    uint64_t now = ws_now_ms();
    uint64_t wait_ms = due > now ? due - now : 0;
    ts->tv_sec = (time_t)(wait_ms / 1000);
    ts->tv_nsec = (long)(wait_ms % 1000) * 1000000L;
    return ts;
}

/* Returns the exit status. */
static int run(struct ws_server *srv, struct ws_linebuf *in, const sigset_t *wait_mask)
{
    size_t write_max = stdout_write_max();
    for (;;) {
        if (ws_stop_signal != 0)
            return 0;
        if (in->eof && srv->out.bytes == 0)
            return 0;
        bool want_in = !in->eof && srv->out.bytes < WS_OUT_HIGH_WATER_BYTES;
        /* A negative fd is skipped: no POLLHUP spinning on an fd not wanted. */
        struct pollfd pfd[2] = {
            {.fd = want_in ? STDIN_FILENO : -1, .events = POLLIN},
            {.fd = srv->out.bytes > 0 ? STDOUT_FILENO : -1, .events = POLLOUT},
        };
        struct timespec ts;
        if (ppoll(pfd, 2, poll_timeout(srv, &ts), wait_mask) < 0) {
            if (errno == EINTR)
                continue;
            ws_log("ppoll: %s", strerror(errno));
            return 1;
        }
        if (pfd[1].revents != 0) {
            int rc = ws_outq_flush(&srv->out, STDOUT_FILENO, write_max);
            if (rc < 0) {
                ws_log("writing stdout: %s; exiting", strerror(-rc));
                return 1;
            }
        }
        if (pfd[0].revents != 0)
            read_stdin(srv, in);
        ws_ops_run_due(srv, ws_now_ms());
    }
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        ws_log("takes no arguments; speaks MCP (JSON-RPC lines) on stdin and stdout");
        return 2;
    }
    ws_json_init();
    sigset_t wait_mask;
    setup_signals(&wait_mask);
    struct ws_server srv;
    ws_server_init(&srv);
    struct ws_linebuf in = {0};
    int status = run(&srv, &in, &wait_mask);
    if (ws_stop_signal != 0)
        ws_log("signal %d: exiting", (int)ws_stop_signal);
    ws_server_free(&srv);
    ws_linebuf_free(&in);
    return status;
}
