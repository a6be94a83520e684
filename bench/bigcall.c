/*
 * bench/bigcall: the HTTP client of the large-payload scenario of `make bench`. One client, one
 * keep-alive connection, one open MCP session: tools/call echo with a text of N bytes, or
 * big_line bytes=N, in a closed loop (the next request when the answer is in), every answer
 * checked whole. It prints one line "BENCH_JSON {...}" with the fields bench/echo.lua prints,
 * so bench/drive.mjs reads either.
 *
 * Why not wrk, as for small calls: wrk reads a response 8 KiB at a time (RECVBUF), a read(2)
 * and a turn of its loop each, and copies the body into a growing buffer for its Lua
 * response(): 2.6 ms of its own CPU per 1 MiB answer, more than any gateway's, and with one
 * client all of it is on the critical path. bench/direct, the ceiling, drives the child with
 * a prebuilt request and 128 KiB reads; this client is built the same way, so the ratio of
 * the two rows is what the HTTP hop and the gateway cost. libcurl reads up to 512 KiB at a
 * time here (CURLOPT_BUFFERSIZE, its maximum in 7.88), and sends the prebuilt body from its
 * upload buffer (CURLOPT_UPLOAD_BUFFERSIZE, 2 MiB at most).
 *
 *   bench/bigcall --url URL --session SID --tool echo|big_line --bytes N --seconds S
 *                 [--warmup S] [--auth "Bearer ..."] [--run TAG]
 *
 * Bounded: every request times out after 10 s (counted as a timeout, the run goes on until
 * its time is up), and an alarm ends the process if the run overruns.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROG "bigcall"
#include "client.h"

#define REQUEST_TIMEOUT_MS 10000L
#define READ_BUFFER_BYTES (512L * 1024L)
#define UPLOAD_BUFFER_BYTES (2L * 1024L * 1024L)
#define ID_DIGITS 12 /* the id's counter, zero-padded in place in the prebuilt body */

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

struct body {
    char *buf;
    size_t len, cap;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t len = size * n;
    if (b->len + len + 1 > b->cap) {
        while (b->len + len + 1 > b->cap)
            b->cap = b->cap ? b->cap * 2 : 65536;
        b->buf = xrealloc(b->buf, b->cap);
    }
    memcpy(b->buf + b->len, p, len);
    b->len += len;
    return len;
}

struct opts {
    const char *url, *session, *tool, *auth, *run;
    long bytes;
    double seconds, warmup;
};

static void parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.tool = "echo", .run = "r", .auth = "", .seconds = 8};
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            die("missing value for %s", argv[i]);
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--url") == 0)
            o->url = v;
        else if (strcmp(k, "--session") == 0)
            o->session = v;
        else if (strcmp(k, "--tool") == 0)
            o->tool = v;
        else if (strcmp(k, "--auth") == 0)
            o->auth = v;
        else if (strcmp(k, "--run") == 0)
            o->run = v;
        else if (strcmp(k, "--bytes") == 0)
            o->bytes = atol(v);
        else if (strcmp(k, "--seconds") == 0)
            o->seconds = atof(v);
        else if (strcmp(k, "--warmup") == 0)
            o->warmup = atof(v);
        else
            die("unknown option %s", k);
    }
    if (o->url == NULL || o->session == NULL || o->bytes <= 0 || o->bytes > 64L * 1024 * 1024 ||
        o->seconds <= 0 || o->warmup < 0 ||
        (strcmp(o->tool, "echo") != 0 && strcmp(o->tool, "big_line") != 0))
        die("usage: bigcall --url URL --session SID --tool echo|big_line --bytes N (1 to 64 MiB) "
            "--seconds S [--warmup S] [--auth HEADER] [--run TAG]");
}

/*
 * The request body, built once: {"jsonrpc":"2.0","id":"TAG-000000000001",...}; *ID points at
 * the counter's digits, rewritten in place for each request (ids never repeat in a session).
 */
static char *build_body(const struct opts *o, size_t *len, char **id)
{
    size_t cap = (size_t)o->bytes + 512;
    char *b = xrealloc(NULL, cap);
    int n = snprintf(b, cap, "{\"jsonrpc\":\"2.0\",\"id\":\"%s-", o->run);
    *id = b + n;
    memset(b + n, '0', ID_DIGITS);
    n += ID_DIGITS;
    bool echo = strcmp(o->tool, "echo") == 0;
    n += snprintf(
        b + n, cap - (size_t)n,
        "\",\"method\":\"tools/call\",\"params\":{\"name\":\"%s\",\"arguments\":", o->tool);
    if (echo) {
        n += snprintf(b + n, cap - (size_t)n, "{\"text\":\"");
        memset(b + n, 'x', (size_t)o->bytes);
        n += (int)o->bytes;
        n += snprintf(b + n, cap - (size_t)n, "\"}}}");
    } else {
        n += snprintf(b + n, cap - (size_t)n, "{\"bytes\":%ld}}}", o->bytes);
    }
    *len = (size_t)n;
    return b;
}

static void set_id(char *id, unsigned long long k)
{
    for (int i = ID_DIGITS - 1; i >= 0; i--, k /= 10)
        id[i] = (char)('0' + k % 10);
}

struct run {
    long requests, bad, timeouts, conn_errs;
    double tx, rx;
    char example_bad[201];
    double *lat;
    size_t n_lat, cap_lat;
};

/* What every request of the loop shares. */
struct call {
    CURL *h;
    struct body resp;
    size_t body_len;
    char *id; /* in the body */
    unsigned long long seq;
    const char *expect;
    size_t expect_len;
};

static void loop(struct call *k, double seconds, struct run *R)
{
    memset(R, 0, sizeof *R);
    double end = now_s() + seconds;
    while (now_s() < end) {
        set_id(k->id, ++k->seq);
        k->resp.len = 0;
        double t = now_s();
        CURLcode rc = curl_easy_perform(k->h);
        double dt = now_s() - t;
        R->requests++;
        R->tx += (double)k->body_len;
        R->rx += (double)k->resp.len;
        long status = 0;
        curl_easy_getinfo(k->h, CURLINFO_RESPONSE_CODE, &status);
        bool ok = rc == CURLE_OK && status == 200 &&
                  answer_holds(k->resp.buf, k->resp.len, k->expect, k->expect_len);
        if (rc == CURLE_OPERATION_TIMEDOUT)
            R->timeouts++;
        else if (rc != CURLE_OK)
            R->conn_errs++;
        if (!ok) {
            if (R->bad++ == 0)
                snprintf(R->example_bad, sizeof R->example_bad, "%s %ld %.*s",
                         rc == CURLE_OK ? "HTTP" : curl_easy_strerror(rc), status,
                         (int)(k->resp.len < 150 ? k->resp.len : 150),
                         k->resp.buf ? k->resp.buf : "");
            continue;
        }
        if (R->n_lat == R->cap_lat) {
            R->cap_lat = R->cap_lat ? R->cap_lat * 2 : 1024;
            R->lat = xrealloc(R->lat, R->cap_lat * sizeof *R->lat);
        }
        R->lat[R->n_lat++] = dt;
    }
}

static void json_print(const struct run *R, double duration, double cpu)
{
    qsort(R->lat, R->n_lat, sizeof *R->lat, cmp_double);
    const double *v = R->lat;
    size_t n = R->n_lat;
    printf("BENCH_JSON {\"requests\":%ld,\"duration_us\":%.0f,\"p50_us\":%.0f,\"p90_us\":%.0f,"
           "\"p99_us\":%.0f,\"max_us\":%.0f,\"bad\":%ld,\"connect_err\":%ld,\"read_err\":0,"
           "\"write_err\":0,\"status_err\":0,\"timeouts\":%ld,\"tx_bytes\":%.0f,\"rx_bytes\":%.0f,"
           "\"client_cpu_s\":%.6f,\"example_bad\":\"",
           R->requests, duration * 1e6, pct(v, n, 50) * 1e6, pct(v, n, 90) * 1e6,
           pct(v, n, 99) * 1e6, n ? v[n - 1] * 1e6 : 0, R->bad, R->conn_errs, R->timeouts, R->tx,
           R->rx, cpu);
    for (const char *p = R->example_bad; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch == '"' || ch == '\\' || ch >= 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    printf("\"}\n");
}

int main(int argc, char **argv)
{
    struct opts o;
    parse_args(argc, argv, &o);
    alarm((unsigned)(o.seconds + o.warmup + 60));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        die("curl_global_init failed");

    struct call k = {.expect_len = (size_t)o.bytes};
    char *body = build_body(&o, &k.body_len, &k.id);
    char *expect = xrealloc(NULL, k.expect_len);
    memset(expect, 'x', k.expect_len);
    k.expect = expect;

    struct curl_slist *hdr = NULL;
    char line[4096];
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Accept: application/json, text/event-stream");
    hdr = curl_slist_append(hdr, "MCP-Protocol-Version: 2025-11-25");
    hdr = curl_slist_append(hdr, "Expect:"); /* libcurl would wait for 100 Continue above 1 MiB */
    snprintf(line, sizeof line, "Mcp-Session-Id: %s", o.session);
    hdr = curl_slist_append(hdr, line);
    if (o.auth[0]) {
        snprintf(line, sizeof line, "Authorization: %s", o.auth);
        hdr = curl_slist_append(hdr, line);
    }

    CURL *h = k.h = curl_easy_init();
    if (h == NULL || hdr == NULL)
        die("libcurl: out of memory");
    curl_easy_setopt(h, CURLOPT_URL, o.url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)k.body_len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &k.resp);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, READ_BUFFER_BYTES);
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER_BYTES);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);

    struct run R;
    if (o.warmup > 0) {
        loop(&k, o.warmup, &R);
        free(R.lat);
    }
    double t0 = now_s(), c0 = cpu_s();
    loop(&k, o.seconds, &R);
    json_print(&R, now_s() - t0, cpu_s() - c0);
    free(R.lat);

    curl_easy_cleanup(h);
    curl_slist_free_all(hdr);
    curl_global_cleanup();
    free(k.resp.buf);
    free(body);
    free(expect);
    return fflush(stdout) == 0 ? 0 : 1;
}
