/*
 * test_store_util: what test_store.c and test_store_fault.c share: starting
 * and killing a real redis-server in a temp dir on a free loopback port,
 * driving the event loop with a bounded wait, and a callback that records a
 * store_result. Include after <cmocka.h>.
 *
 * Every helper is static and marked unused so each test file takes what it
 * needs without -Wunused-function.
 */
#ifndef MCPGATE_TESTS_TEST_STORE_UTIL_H
#define MCPGATE_TESTS_TEST_STORE_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/xalloc.h"
#include "store/store.h"

#define TS_UNUSED static __attribute__((unused))
#define TS_REDIS_SERVER "/usr/bin/redis-server"

extern char **environ;

TS_UNUSED uint64_t ts_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- the event loop -------------------------------------------------------- */

TS_UNUSED void ts_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/*
 * Runs the loop until cond(arg) holds or timeout_ms pass; returns cond(arg).
 * A 5 ms ticker makes every EVLOOP_ONCE pass return, so a bug that never
 * completes an operation fails the test instead of hanging the suite.
 */
TS_UNUSED bool ts_run_until(struct event_base *base, bool (*cond)(void *), void *arg,
                            uint64_t timeout_ms)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, ts_on_tick, NULL);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 5000};
    uint64_t end = ts_now_ms() + timeout_ms;
    bool ok;

    event_add(tick, &tv);
    while (!(ok = cond(arg)) && ts_now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    return ok;
}

TS_UNUSED bool ts_flag_set(void *arg)
{
    return *(bool *)arg;
}

TS_UNUSED bool ts_never(void *arg)
{
    (void)arg;
    return false;
}

/* Waits on the loop for *flag. */
TS_UNUSED bool ts_wait_flag(struct event_base *base, bool *flag, uint64_t timeout_ms)
{
    return ts_run_until(base, ts_flag_set, flag, timeout_ms);
}

/* Lets the loop run for ms (timers fire, replies arrive). */
TS_UNUSED void ts_sleep_loop(struct event_base *base, uint64_t ms)
{
    ts_run_until(base, ts_never, NULL, ms);
}

TS_UNUSED bool ts_store_ready(void *arg)
{
    return store_is_ready(arg);
}

TS_UNUSED bool ts_store_not_ready(void *arg)
{
    return !store_is_ready(arg);
}

TS_UNUSED bool ts_wait_ready(struct event_base *base, struct store *s, uint64_t timeout_ms)
{
    return ts_run_until(base, ts_store_ready, s, timeout_ms);
}

TS_UNUSED bool ts_wait_not_ready(struct event_base *base, struct store *s, uint64_t timeout_ms)
{
    return ts_run_until(base, ts_store_not_ready, s, timeout_ms);
}

TS_UNUSED bool ts_store_subscribed(void *arg)
{
    struct store_stats st;
    store_get_stats(arg, &st);
    return st.subscribed;
}

TS_UNUSED bool ts_wait_subscribed(struct event_base *base, struct store *s, uint64_t timeout_ms)
{
    return ts_run_until(base, ts_store_subscribed, s, timeout_ms);
}

/* --- recording results ----------------------------------------------------- */

/* A copy of one store_result, taken inside the callback. */
struct ts_res {
    bool called;
    int calls;
    enum store_status status;
    char *value; /* owned */
    size_t value_len;
    long long integer;
    char **members; /* owned */
    size_t n_members;
    char *error; /* owned */
    uint64_t at_ms;
};

TS_UNUSED void ts_res_clear(struct ts_res *r)
{
    free(r->value);
    free(r->error);
    for (size_t i = 0; i < r->n_members; i++)
        free(r->members[i]);
    free(r->members);
    memset(r, 0, sizeof(*r));
}

/* store_cb_fn: arg is a struct ts_res. */
TS_UNUSED void ts_res_cb(const struct store_result *res, void *arg)
{
    struct ts_res *r = arg;
    int calls = r->calls;
    ts_res_clear(r);
    r->calls = calls + 1;
    r->called = true;
    r->at_ms = ts_now_ms();
    r->status = res->status;
    r->integer = res->integer;
    if (res->value != NULL) {
        r->value = xmalloc(res->value_len + 1);
        memcpy(r->value, res->value, res->value_len);
        r->value[res->value_len] = '\0';
        r->value_len = res->value_len;
    }
    if (res->n_members > 0) {
        r->members = xcalloc(res->n_members, sizeof(*r->members));
        for (size_t i = 0; i < res->n_members; i++)
            r->members[i] = xstrndup(res->members[i], res->member_lens[i]);
        r->n_members = res->n_members;
    }
    if (res->error != NULL)
        r->error = xstrdup(res->error);
}

/* Waits for r->called and returns its status (-1 on a timeout). */
TS_UNUSED int ts_res_wait(struct event_base *base, struct ts_res *r, uint64_t timeout_ms)
{
    if (!ts_wait_flag(base, &r->called, timeout_ms))
        return -1;
    return (int)r->status;
}

TS_UNUSED bool ts_res_has_member(const struct ts_res *r, const char *m)
{
    for (size_t i = 0; i < r->n_members; i++)
        if (strcmp(r->members[i], m) == 0)
            return true;
    return false;
}

/* --- a real redis-server --------------------------------------------------- */

struct ts_redis {
    pid_t pid; /* 0 when not running */
    int port;
    char dir[PATH_MAX];
    char log[PATH_MAX + 16];
};

TS_UNUSED bool ts_redis_available(void)
{
    return access(TS_REDIS_SERVER, X_OK) == 0;
}

/* A loopback port nobody listens on right now (the kernel's pick). */
TS_UNUSED int ts_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* True when something on 127.0.0.1:port answers "PING" (any reply: +PONG or -NOAUTH). */
TS_UNUSED bool ts_redis_answers(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[64];
    bool ok = false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && write(fd, "PING\r\n", 6) == 6) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ok = poll(&p, 1, 500) == 1 && read(fd, buf, sizeof(buf)) > 0;
    }
    close(fd);
    return ok;
}

TS_UNUSED void ts_redis_print_log(const struct ts_redis *r)
{
    char line[512];
    FILE *f = fopen(r->log, "r");
    if (f == NULL)
        return;
    fprintf(stderr, "--- %s ---\n", r->log);
    while (fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    fclose(f);
}

/*
 * Starts redis-server on r->port (a free one when 0) in a temp dir, with no
 * persistence, plus extra "--option value" arguments (NULL-terminated, may be
 * NULL), and waits until it answers. Returns 0 or -1 (its log is printed).
 */
TS_UNUSED int ts_redis_start(struct ts_redis *r, const char *const *extra)
{
    char port[16];
    const char *argv[32];
    int n = 0;
    posix_spawn_file_actions_t fa;
    int rc = -1;

    if (r->dir[0] == '\0') {
        snprintf(r->dir, sizeof(r->dir), "%s/mcpgate-store-XXXXXX",
                 getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
        if (mkdtemp(r->dir) == NULL)
            return -1;
        snprintf(r->log, sizeof(r->log), "%s/redis.log", r->dir);
    }
    if (r->port == 0)
        r->port = ts_free_port();
    snprintf(port, sizeof(port), "%d", r->port);
    const char *base_args[] = {
        TS_REDIS_SERVER, "--port", port,    "--bind", "127.0.0.1",   "--save", "",
        "--appendonly",  "no",     "--dir", r->dir,   "--daemonize", "no",     NULL};
    for (size_t i = 0; base_args[i] != NULL; i++)
        argv[n++] = base_args[i];
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, r->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawn(&r->pid, TS_REDIS_SERVER, &fa, NULL, (char *const *)argv, environ) != 0) {
        r->pid = 0;
        goto out;
    }
    for (uint64_t end = ts_now_ms() + 5000; ts_now_ms() < end;) {
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0; /* exited early: port taken, bad option */
            break;
        }
        if (ts_redis_answers(r->port)) {
            rc = 0;
            break;
        }
        usleep(10 * 1000);
    }
    if (rc < 0)
        ts_redis_print_log(r);

out:
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* Sends sig to the server (SIGSTOP/SIGCONT to freeze it; SIGKILL: see ts_redis_kill). */
TS_UNUSED void ts_redis_signal(struct ts_redis *r, int sig)
{
    if (r->pid > 0)
        kill(r->pid, sig);
}

/* kill -9 and reap; the temp dir stays for a restart on the same port. */
TS_UNUSED void ts_redis_kill(struct ts_redis *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

/* Kills the server and removes its temp dir. */
TS_UNUSED void ts_redis_destroy(struct ts_redis *r)
{
    ts_redis_kill(r);
    if (r->dir[0] != '\0') {
        unlink(r->log);
        rmdir(r->dir);
    }
    memset(r, 0, sizeof(*r));
}

TS_UNUSED char *ts_redis_url(const struct ts_redis *r, int db)
{
    return xasprintf("redis://127.0.0.1:%d/%d", r->port, db);
}

#endif
