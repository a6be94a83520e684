/*
 * bench/direct: the "child direct" row of `make bench`, the ceiling for anything in front of a
 * STDIO MCP server. It spawns the upstream (build/rel/examples/whoami-server) itself and speaks
 * JSON-RPC lines on its stdin/stdout, with no HTTP and no gateway, under the same load as the
 * gateways get:
 *
 *   spawn:  spawn, initialize, notifications/initialized, close stdin, wait for the exit, one
 *           after the other: spawn-to-initialize time (answer read) and the whole cycle
 *   echo:   C children (one per client, as one session each), initialized first, then a closed
 *           loop: tools/call echo with a 15-byte text, the next request when the answer is in
 *   large:  one child, tools/call echo with a 1 MiB text, then big_line bytes=1048576
 *
 * Every answer is checked: one line, its id, a "result", the expected text whole. It writes
 * one JSON object shaped like bench/drive.mjs's results (bench/report.mjs reads both).
 *
 *   bench/direct --upstream PATH --out FILE [--seconds 8] [--warmup 2] [--concurrency 1,16,64]
 *                [--large-bytes 1048576 (0: no large payloads)] [--spawn 1 (0: no spawn cycles)]
 *                [--echo-arg text] [--echo-prefix ""]
 *
 * --echo-arg and --echo-prefix fit another upstream's echo tool: server-everything's takes
 * "message" and answers "Echo: " and the text. Lines the upstream sends on its own
 * (notifications: a "method" and no "result") are skipped wherever they come.
 *
 * Bounded in time: every wait for an answer is at most 10 s (then the run fails), and an
 * alarm ends the process if the whole run overruns; the children then read EOF and exit.
 * Single-threaded (poll): its own CPU time is reported (driver CPU) so that one can see it
 * is not the bottleneck.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROG "direct"
#include "client.h"

#define ANSWER_TIMEOUT_MS 10000
#define MAX_CHILDREN 1024
#define SMALL_TEXT "hello-mcp-bench"
#define PROTOCOL "2025-11-25"

static const char *upstream;
static double opt_seconds = 8, opt_warmup = 2;
static long large_bytes = 1048576;
static bool opt_spawn = true;
static const char *echo_arg = "text", *echo_prefix = "";
static int conc[16];
static int nconc;

struct child {
    pid_t pid;
    int in;  /* its stdin, our write end */
    int out; /* its stdout, our read end */
    char *buf;
    size_t len, cap;
    long seq;      /* id of the request in flight */
    double t_sent; /* when it was written */
};

/* ---- small helpers ------------------------------------------------------------------ */

struct lat {
    double *v;
    size_t n, cap;
};

static void lat_add(struct lat *l, double x)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = x;
}

/* CPU ticks (utime + stime) of PID from /proc/PID/stat; 0 when it is gone. */
static long long proc_ticks(pid_t pid)
{
    char path[64], s[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(s, 1, sizeof s - 1, f);
    fclose(f);
    s[n] = '\0';
    char *p = strrchr(s, ')');
    if (p == NULL)
        return 0;
    long long ut = 0, st = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st) != 2)
        return 0;
    return ut + st;
}

/* Machine busy ticks, from the first line of /proc/stat. */
static long long machine_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return 0;
    long long u = 0, ni = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0;
    if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld", &u, &ni, &sy, &id, &io, &irq, &sirq) !=
        7)
        u = ni = sy = irq = sirq = 0;
    fclose(f);
    return u + ni + sy + irq + sirq;
}

/* user + system CPU seconds of getrusage(WHO) */
static double rusage_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    return user + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double self_cpu_s(void)
{
    return rusage_s(RUSAGE_SELF);
}

static double reaped_cpu_s(void)
{
    return rusage_s(RUSAGE_CHILDREN);
}

/* ---- children ----------------------------------------------------------------------- */

static void spawn(struct child *c)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || devnull < 0 || dup2(devnull, 2) < 0)
            _exit(127);
        char *argv[] = {(char *)upstream, NULL};
        execv(upstream, argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->pid = pid;
    c->in = in[1];
    c->out = out[0];
    c->len = 0;
    c->seq = 0;
    if (fcntl(c->out, F_SETFL, O_NONBLOCK) != 0)
        die("fcntl: %s", strerror(errno));
}

/* Closes its stdin (the server exits at EOF) and waits for it; 0 when it exited with 0. */
static int reap(struct child *c)
{
    if (c->in >= 0)
        close(c->in);
    c->in = -1;
    int st = 0;
    pid_t r;
    double end = now_s() + ANSWER_TIMEOUT_MS / 1000.0;
    while ((r = waitpid(c->pid, &st, WNOHANG)) == 0 && now_s() < end)
        usleep(200);
    if (r == 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &st, 0);
        st = -1;
    }
    close(c->out);
    c->out = -1;
    free(c->buf);
    c->buf = NULL;
    c->cap = c->len = 0;
    return st;
}

static void write_all(int fd, const struct iovec *iov0, int n)
{
    struct iovec iov[4];
    memcpy(iov, iov0, (size_t)n * sizeof *iov);
    int i = 0;
    while (i < n) {
        ssize_t w = writev(fd, iov + i, n - i);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write to the child: %s", strerror(errno));
        }
        while (i < n && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < n) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
}

static void send_str(struct child *c, const char *s)
{
    struct iovec v = {(void *)s, strlen(s)};
    write_all(c->in, &v, 1);
}

/*
 * Reads what is there; returns the length of a complete line (its '\n' excluded) or -1 when
 * none is complete yet; dies at EOF.
 */
static long read_some(struct child *c)
{
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl != NULL)
            return nl - c->buf;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            c->buf = xrealloc(c->buf, c->cap);
        }
        ssize_t r = read(c->out, c->buf + c->len, c->cap - c->len);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return -1;
        if (r <= 0)
            die("the child %d closed its stdout (%s)", (int)c->pid,
                r < 0 ? strerror(errno) : "EOF");
        c->len += (size_t)r;
    }
}

static void consume(struct child *c, long linelen)
{
    size_t used = (size_t)linelen + 1;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
}

/* True when the line is a message the upstream sent on its own, not an answer. */
static bool is_notification(const struct child *c, long n)
{
    return memmem(c->buf, (size_t)n, "\"method\"", 8) != NULL &&
           memmem(c->buf, (size_t)n, "\"result\"", 8) == NULL;
}

/* The next answer line, its notifications before it skipped; -1 when none is complete yet. */
static long read_answer(struct child *c)
{
    long n;
    while ((n = read_some(c)) >= 0 && is_notification(c, n))
        consume(c, n);
    return n;
}

/* Waits for one whole answer line from C, at most ANSWER_TIMEOUT_MS; returns its length. */
static long read_line(struct child *c)
{
    double end = now_s() + ANSWER_TIMEOUT_MS / 1000.0;
    for (;;) {
        long n = read_answer(c);
        if (n >= 0)
            return n;
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0)
            die("no answer from the child %d within %d ms", (int)c->pid, ANSWER_TIMEOUT_MS);
        struct pollfd p = {.fd = c->out, .events = POLLIN};
        poll(&p, 1, left);
    }
}

static const char INIT[] =
    "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
    "\"" PROTOCOL "\",\"capabilities\":{},\"clientInfo\":{\"name\":\"mcpgate-bench-direct\","
    "\"version\":\"1\"}}}\n";
static const char INITIALIZED[] =
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";

/* initialize, its answer checked, notifications/initialized. */
static void initialize(struct child *c)
{
    send_str(c, INIT);
    long n = read_line(c);
    if (memmem(c->buf, (size_t)n, "\"result\"", 8) == NULL ||
        memmem(c->buf, (size_t)n, "\"id\":0", 6) == NULL)
        die("initialize: unexpected answer: %.200s", c->buf);
    consume(c, n);
    send_str(c, INITIALIZED);
}

/* ---- requests ----------------------------------------------------------------------- */

/* The request in flight: a tools/call of TOOL; the answer must hold "text":"EXPECT". */
struct load {
    const char *tool;   /* "echo" or "big_line" */
    const char *arg;    /* the argument: a text for echo, a number for big_line */
    bool arg_is_string; /* quoted */
    const char *expect; /* the text the result must hold, whole */
    size_t expect_len;
    size_t req_bytes; /* bytes of one request line, for MiB moved */
};

static void send_call(struct child *c, const struct load *L)
{
    char head[256];
    c->seq++;
    int hn = snprintf(
        head, sizeof head,
        "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\","
        "\"arguments\":{\"%s\":%s",
        c->seq, L->tool, L->arg_is_string ? echo_arg : "bytes", L->arg_is_string ? "\"" : "");
    const char *tail = L->arg_is_string ? "\"}}}\n" : "}}}\n";
    struct iovec v[3] = {
        {head, (size_t)hn}, {(void *)L->arg, strlen(L->arg)}, {(void *)tail, strlen(tail)}};
    c->t_sent = now_s();
    write_all(c->in, v, 3);
}

/* 1 when the line is the right answer to the request in flight. */
static bool check_answer(const struct child *c, long n, const struct load *L)
{
    char id[48];
    int idn = snprintf(id, sizeof id, "\"id\":%ld", c->seq);
    const char *at = memmem(c->buf, (size_t)n, id, (size_t)idn);
    const char *after = at ? at + idn : NULL;
    return after != NULL && after < c->buf + n && (*after == ',' || *after == '}') &&
           answer_holds(c->buf, (size_t)n, L->expect, L->expect_len);
}

struct run {
    long requests, ok, bad;
    char example_bad[201];
    double seconds, driver_cpu_s, children_cpu_s, other_cpu_pct;
    double rx_bytes, tx_bytes;
    struct lat lat;
};

/* The closed loop on N initialized children for SECONDS; latencies in seconds. */
static void closed_loop(struct child *ch, int n, const struct load *L, double seconds,
                        struct run *R)
{
    memset(R, 0, sizeof *R);
    struct pollfd *pf = xrealloc(NULL, (size_t)n * sizeof *pf);
    long long t0[MAX_CHILDREN];
    for (int i = 0; i < n; i++)
        t0[i] = proc_ticks(ch[i].pid);
    long long busy0 = machine_busy();
    double cpu0 = self_cpu_s();
    double start = now_s(), end = start + seconds;
    for (int i = 0; i < n; i++) {
        send_call(&ch[i], L);
        R->tx_bytes += (double)L->req_bytes;
    }
    int inflight = n;
    while (inflight > 0) {
        for (int i = 0; i < n; i++)
            pf[i] = (struct pollfd){.fd = ch[i].in >= 0 && ch[i].seq > 0 ? ch[i].out : -1,
                                    .events = POLLIN};
        int r = poll(pf, (nfds_t)n, ANSWER_TIMEOUT_MS);
        if (r == 0)
            die("no answer within %d ms (%d requests in flight)", ANSWER_TIMEOUT_MS, inflight);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        double t = now_s();
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            struct child *c = &ch[i];
            long len = read_answer(c);
            if (len < 0)
                continue;
            R->requests++;
            R->rx_bytes += (double)len + 1;
            if (check_answer(c, len, L)) {
                R->ok++;
                lat_add(&R->lat, t - c->t_sent);
            } else {
                if (R->bad++ == 0)
                    snprintf(R->example_bad, sizeof R->example_bad, "%.*s",
                             (int)(len < 200 ? len : 200), c->buf);
            }
            consume(c, len);
            if (t < end) {
                send_call(c, L);
                R->tx_bytes += (double)L->req_bytes;
            } else {
                c->seq = -c->seq; /* done: not polled any more */
                inflight--;
            }
        }
    }
    for (int i = 0; i < n; i++)
        ch[i].seq = -ch[i].seq;
    R->seconds = now_s() - start;
    R->driver_cpu_s = self_cpu_s() - cpu0;
    long long kids = 0;
    for (int i = 0; i < n; i++)
        kids += proc_ticks(ch[i].pid) - t0[i];
    long hz = sysconf(_SC_CLK_TCK);
    R->children_cpu_s = (double)kids / (double)hz;
    double other =
        (double)(machine_busy() - busy0) / (double)hz - R->children_cpu_s - R->driver_cpu_s;
    R->other_cpu_pct = other > 0 ? other / R->seconds * 100 : 0;
    free(pf);
    qsort(R->lat.v, R->lat.n, sizeof *R->lat.v, cmp_double);
}

/* ---- JSON out ----------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == '"' || ch == '\\' || ch >= 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_run(FILE *f, const struct run *R)
{
    const double *v = R->lat.v;
    size_t n = R->lat.n;
    fprintf(f, "\"requests\":%ld,\"ok\":%ld,\"bad\":%ld,\"errors\":0,\"example_bad\":", R->requests,
            R->ok, R->bad);
    json_str(f, R->example_bad);
    fprintf(f,
            ",\"seconds\":%.6f,\"per_s\":%.3f,\"p50_ms\":%.6f,\"p90_ms\":%.6f,\"p99_ms\":%.6f,"
            "\"max_ms\":%.6f,"
            "\"gateway_cpu_pct\":null,\"driver_cpu_pct\":%.3f,\"children_cpu_pct\":%.3f,\"other_"
            "cpu_pct\":%.3f,"
            "\"tx_bytes\":%.0f,\"rx_bytes\":%.0f",
            R->seconds, (double)R->ok / R->seconds, pct(v, n, 50) * 1e3, pct(v, n, 90) * 1e3,
            pct(v, n, 99) * 1e3, n ? v[n - 1] * 1e3 : 0, R->driver_cpu_s / R->seconds * 100,
            R->children_cpu_s / R->seconds * 100, R->other_cpu_pct, R->tx_bytes, R->rx_bytes);
}

/* ---- scenarios ---------------------------------------------------------------------- */

static void spawn_cycles(double seconds, struct lat *init, struct lat *cycle, double *elapsed,
                         long long *busy, double *ours)
{
    long long b0 = machine_busy();
    double c0 = self_cpu_s() + reaped_cpu_s();
    double start = now_s(), end = start + seconds;
    while (now_s() < end) {
        struct child c = {0};
        double t = now_s();
        spawn(&c);
        initialize(&c);
        double ti = now_s();
        if (reap(&c) != 0)
            die("the child did not exit with status 0 after EOF on its stdin");
        double te = now_s();
        if (init != NULL) {
            lat_add(init, ti - t);
            lat_add(cycle, te - t);
        }
    }
    *elapsed = now_s() - start;
    *busy = machine_busy() - b0;
    *ours = self_cpu_s() + reaped_cpu_s() - c0;
}

static void parse_args(int argc, char **argv, const char **out)
{
    const char *cs = "1,16,64";
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            die("missing value for %s", argv[i]);
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--upstream") == 0)
            upstream = v;
        else if (strcmp(k, "--out") == 0)
            *out = v;
        else if (strcmp(k, "--seconds") == 0)
            opt_seconds = atof(v);
        else if (strcmp(k, "--warmup") == 0)
            opt_warmup = atof(v);
        else if (strcmp(k, "--concurrency") == 0)
            cs = v;
        else if (strcmp(k, "--large-bytes") == 0)
            large_bytes = atol(v);
        else if (strcmp(k, "--spawn") == 0)
            opt_spawn = strcmp(v, "0") != 0;
        else if (strcmp(k, "--echo-arg") == 0)
            echo_arg = v;
        else if (strcmp(k, "--echo-prefix") == 0)
            echo_prefix = v;
        else
            die("unknown option %s", k);
    }
    if (strspn(echo_arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
            strlen(echo_arg) ||
        *echo_arg == '\0' || strpbrk(echo_prefix, "\"\\") != NULL)
        die("--echo-arg is a plain name, --echo-prefix has no quote or backslash");
    if (upstream == NULL || *out == NULL)
        die("usage: direct --upstream PATH --out FILE [--seconds S] [--warmup S] [--concurrency "
            "1,16,64] "
            "[--large-bytes N] [--spawn 0|1] [--echo-arg NAME] [--echo-prefix TEXT]");
    if (opt_seconds <= 0 || opt_warmup < 0 || large_bytes < 0 || large_bytes > 16 * 1024 * 1024)
        die("bad --seconds, --warmup or --large-bytes");
    for (const char *p = cs; *p && nconc < 16;) {
        char *e;
        long c = strtol(p, &e, 10);
        if (e == p || c < 1 || c > MAX_CHILDREN)
            die("bad --concurrency %s (1 to %d each)", cs, MAX_CHILDREN);
        conc[nconc++] = (int)c;
        p = e;
        while (*p == ',' || *p == ' ')
            p++;
    }
}

/* spawn → initialize, one after the other: the "setup" object of the output. */
static void spawn_scenario(FILE *f, long hz)
{
    struct lat init = {0}, cycle = {0};
    double el;
    long long busy;
    double ours;
    if (opt_warmup > 0)
        spawn_cycles(opt_warmup, NULL, NULL, &el, &busy, &ours);
    spawn_cycles(opt_seconds, &init, &cycle, &el, &busy, &ours);
    qsort(init.v, init.n, sizeof *init.v, cmp_double);
    qsort(cycle.v, cycle.n, sizeof *cycle.v, cmp_double);
    double other = (double)busy / (double)hz - ours;
    fprintf(f,
            ",\"setup\":{\"sessions\":%zu,\"failures\":0,\"first_error\":\"\",\"seconds\":%.6f,"
            "\"per_s\":%.3f,"
            "\"p50_ms\":%.6f,\"p99_ms\":%.6f,\"init_p50_ms\":%.6f,\"init_p99_ms\":%.6f,\"other_cpu_"
            "pct\":%.3f}",
            cycle.n, el, (double)cycle.n / el, pct(cycle.v, cycle.n, 50) * 1e3,
            pct(cycle.v, cycle.n, 99) * 1e3, pct(init.v, init.n, 50) * 1e3,
            pct(init.v, init.n, 99) * 1e3, other > 0 ? other / el * 100 : 0);
    fprintf(stderr, "bench: direct: spawn to initialize p50 %.3f ms, whole cycle %.1f/s\n",
            pct(init.v, init.n, 50) * 1e3, (double)cycle.n / el);
    free(init.v);
    free(cycle.v);
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    parse_args(argc, argv, &out);
    signal(SIGPIPE, SIG_IGN);
    /* A bound on the whole run: every measurement plus generous slack. */
    alarm((unsigned)((opt_seconds + opt_warmup) * (3 + nconc) + 120));
    long hz = sysconf(_SC_CLK_TCK);

    FILE *f = fopen(out, "w");
    if (f == NULL)
        die("%s: %s", out, strerror(errno));
    fprintf(f, "{\"name\":\"direct\",\"seconds\":%g,\"warmup\":%g", opt_seconds, opt_warmup);

    if (opt_spawn)
        spawn_scenario(f, hz);

    /* small echo at each concurrency, C children each */
    char *small_expect = xrealloc(NULL, strlen(echo_prefix) + sizeof SMALL_TEXT);
    strcpy(small_expect, echo_prefix);
    strcat(small_expect, SMALL_TEXT);
    struct load small = {"echo", SMALL_TEXT, true, small_expect, strlen(small_expect), 0};
    small.req_bytes = 100 + strlen(SMALL_TEXT);
    fputs(",\"throughput\":[", f);
    for (int k = 0; k < nconc; k++) {
        int n = conc[k];
        struct child *ch = calloc((size_t)n, sizeof *ch);
        if (ch == NULL)
            die("out of memory");
        for (int i = 0; i < n; i++) {
            spawn(&ch[i]);
            initialize(&ch[i]);
        }
        struct run R;
        if (opt_warmup > 0) {
            closed_loop(ch, n, &small, opt_warmup, &R);
            free(R.lat.v);
        }
        closed_loop(ch, n, &small, opt_seconds, &R);
        for (int i = 0; i < n; i++)
            reap(&ch[i]);
        free(ch);
        fprintf(f, "%s{\"concurrency\":%d,", k ? "," : "", n);
        json_run(f, &R);
        fputc('}', f);
        fprintf(stderr,
                "bench: direct: C=%d: %.0f req/s, p50 %.3f ms, bad %ld, driver CPU %.0f%%, "
                "children %.0f%%\n",
                n, (double)R.ok / R.seconds, pct(R.lat.v, R.lat.n, 50) * 1e3, R.bad,
                R.driver_cpu_s / R.seconds * 100, R.children_cpu_s / R.seconds * 100);
        if (R.ok == 0)
            die("C=%d: no good answer (first: %s)", n, R.example_bad);
        free(R.lat.v);
    }
    fputc(']', f);

    /* large payloads, one child (--large-bytes 0: none) */
    free(small_expect);
    if (large_bytes == 0) {
        fputs("}\n", f);
        if (fclose(f) != 0)
            die("%s: %s", out, strerror(errno));
        return 0;
    }
    size_t np = strlen(echo_prefix);
    char *big_expect = xrealloc(NULL, np + (size_t)large_bytes + 1);
    memcpy(big_expect, echo_prefix, np);
    memset(big_expect + np, 'x', (size_t)large_bytes);
    big_expect[np + (size_t)large_bytes] = '\0';
    char *big = big_expect + np;
    char nbytes[32];
    snprintf(nbytes, sizeof nbytes, "%ld", large_bytes);
    struct load large[2] = {
        {"echo", big, true, big_expect, np + (size_t)large_bytes, 100 + (size_t)large_bytes},
        {"big_line", nbytes, false, big, (size_t)large_bytes, 100},
    };
    const char *large_name[2] = {"echo", "big_line"};
    fputs(",\"large\":[", f);
    for (int k = 0; k < 2; k++) {
        struct child c = {0};
        spawn(&c);
        initialize(&c);
        struct run R;
        if (opt_warmup > 0) {
            closed_loop(&c, 1, &large[k], opt_warmup, &R);
            free(R.lat.v);
        }
        closed_loop(&c, 1, &large[k], opt_seconds, &R);
        reap(&c);
        fprintf(f, "%s{\"scenario\":\"%s\",\"bytes\":%ld,", k ? "," : "", large_name[k],
                large_bytes);
        json_run(f, &R);
        fputc('}', f);
        fprintf(
            stderr,
            "bench: direct: %s %ld bytes: %.1f req/s, p50 %.3f ms, bad %ld, driver CPU %.0f%%\n",
            large_name[k], large_bytes, (double)R.ok / R.seconds, pct(R.lat.v, R.lat.n, 50) * 1e3,
            R.bad, R.driver_cpu_s / R.seconds * 100);
        if (R.ok == 0)
            die("%s: no good answer (first: %s)", large_name[k], R.example_bad);
        free(R.lat.v);
    }
    fputs("]}\n", f);
    free(big_expect);
    if (fclose(f) != 0)
        die("%s: %s", out, strerror(errno));
    return 0;
}
