/*
 * cluster: the instance record, forwarding to a session's owner, and the
 * hop's authentication (cluster.h).
 */
#include "proxy/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/b64url.h"
#include "common/crypto.h"
#include "common/httpc.h"
#include "common/log.h"
#include "common/panic.h"
#include "common/rand.h"
#include "common/replay_window.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "http/http.h"
#include "proxy/jsonrpc.h"
#include "store/store.h"

#define HOP_HEADER "X-Mcpgate-Hop"
#define CLIENT_HEADER "X-Mcpgate-Client"
#define HOP_MAX_AGE_S 30
#define FORWARD_CONNECT_TIMEOUT_MS 2000
#define MAX_FORWARDED_HEADERS 64

struct peer {
    char tag[CLUSTER_TAG_LEN + 1];
    char *url; /* owned */
    uint64_t expires_ms;
    struct peer *next;
};

/* The hops received from one sender (its tag): each sequence number once. */
struct sender_window {
    char tag[CLUSTER_TAG_LEN + 1];
    uint64_t last_ms; /* the last hop accepted: idle windows are reclaimed */
    struct replay_window w;
    struct sender_window *next;
};

struct cluster {
    struct event_base *base; /* borrowed */
    struct store *store;     /* borrowed */
    struct httpc *httpc;     /* borrowed */
    char tag[CLUSTER_TAG_LEN + 1];
    char *advertise; /* owned */
    uint64_t heartbeat_ms;
    unsigned char key[CRYPTO_KEY_LEN]; /* the hop key */
    struct event *heartbeat;           /* owned */
    bool withdrawn;
    struct peer *peers; /* owned: tag -> address, cached for two heartbeats */
    struct hop *hops;   /* borrowed list: forwards in flight */
    uint64_t next_seq;  /* the sequence number of the next hop sent */
    /* owned: one per sender seen in the last 2 * HOP_MAX_AGE_S. Senders are
     * instances that hold the key (the MAC is checked first), and a tag is
     * random per process start, so the list is as long as the instances
     * started in the last minute. */
    struct sender_window *senders;
    struct cluster_stats stats;
};

/* ---- the record --------------------------------------------------------------- */

static void record_key(const struct cluster *c, const char *tag, char *out, size_t size)
{
    (void)c;
    snprintf(out, size, "instance:%s", tag);
}

static void advertise(struct cluster *c)
{
    char key[32], host[256] = "";
    record_key(c, c->tag, key, sizeof(key));
    gethostname(host, sizeof(host) - 1);
    json_t *rec = json_pack("{s:s, s:s, s:i, s:I}", "url", c->advertise, "host", host, "pid",
                            (int)getpid(), "heartbeat_ms", (json_int_t)c->heartbeat_ms);
    char *text = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    if (text == NULL)
        GW_PANIC("out of memory (json_dumps)");
    store_put_detached(c->store, key, text, strlen(text), 3 * c->heartbeat_ms,
                       "cluster: instance record");
    free(text);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cluster *c = arg;
    if (!c->withdrawn)
        advertise(c);
}

struct cluster *cluster_new(struct event_base *base, struct store *store, struct httpc *httpc,
                            const struct gw_cluster_config *cfg, const unsigned char *secret,
                            size_t secret_len, char **err_out)
{
    *err_out = NULL;
    if (secret == NULL || secret_len < 32) {
        *err_out = xstrdup("cluster: no secret to derive the hop key from");
        return NULL;
    }
    struct cluster *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->store = store;
    c->httpc = httpc;
    c->advertise = xstrdup(cfg->advertise);
    c->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 5000;
    unsigned char raw[6];
    rand_bytes(raw, sizeof(raw));
    b64url_encode(raw, sizeof(raw), c->tag);
    if (crypto_hkdf(secret, secret_len, "", 0, "mcpgate/v1/cluster-hop", c->key, sizeof(c->key)))
        GW_PANIC("HKDF-SHA256 failed");
    c->heartbeat = xevent_new(base, -1, EV_PERSIST, on_heartbeat, c);
    struct timeval tv = {(time_t)(c->heartbeat_ms / 1000),
                         (suseconds_t)(c->heartbeat_ms % 1000) * 1000};
    event_add(c->heartbeat, &tv);
    advertise(c);
    gw_log(GW_LOG_INFO, "cluster", NULL, "advertising this instance", "tag", c->tag, "address",
           c->advertise, NULL);
    return c;
}

void cluster_withdraw(struct cluster *c)
{
    if (c == NULL || c->withdrawn)
        return;
    c->withdrawn = true;
    char key[32];
    record_key(c, c->tag, key, sizeof(key));
    store_del_detached(c->store, key, "cluster: instance record");
}

static void hop_abort(struct hop *h);

void cluster_free(struct cluster *c)
{
    if (c == NULL)
        return;
    cluster_withdraw(c);
    while (c->hops)
        hop_abort(c->hops);
    while (c->senders) {
        struct sender_window *w = c->senders;
        c->senders = w->next;
        free(w);
    }
    while (c->peers) {
        struct peer *p = c->peers;
        c->peers = p->next;
        free(p->url);
        free(p);
    }
    event_free(c->heartbeat);
    crypto_wipe(c->key, sizeof(c->key));
    free(c->advertise);
    free(c);
}

const char *cluster_tag(const struct cluster *c)
{
    return c ? c->tag : NULL;
}

bool cluster_id_is_foreign(const struct cluster *c, const char *id, char *tag)
{
    if (c == NULL || id == NULL || strlen(id) <= CLUSTER_TAG_LEN || id[CLUSTER_TAG_LEN] != '.')
        return false;
    if (!b64url_is_valid(id, CLUSTER_TAG_LEN) || memcmp(id, c->tag, CLUSTER_TAG_LEN) == 0)
        return false;
    memcpy(tag, id, CLUSTER_TAG_LEN);
    tag[CLUSTER_TAG_LEN] = '\0';
    return true;
}

void cluster_get_stats(const struct cluster *c, struct cluster_stats *out)
{
    if (c)
        *out = c->stats;
    else
        memset(out, 0, sizeof(*out));
}

/* ---- the hop's MAC ------------------------------------------------------------- */

/*
 * What a hop's MAC covers: when and by whom it was sent, to whom, its
 * sequence number, and everything that decides what the owner does with it:
 * the request line, the original client, the headers that name the user and
 * the session, and the body. All borrowed; a header absent is "".
 */
struct hop_fields {
    const char *ts, *sender, *receiver, *seq;
    const char *method, *target, *client;
    const char *authorization, *session_id, *last_event_id, *protocol_version;
    const char *body;
    size_t body_len;
};

/* The request headers the MAC covers, by name (hop_fields order). */
static void hop_fields_headers(struct hop_fields *f, struct http_request *req)
{
    const char *v;
    f->authorization = (v = http_request_header(req, "Authorization")) ? v : "";
    f->session_id = (v = http_request_header(req, "Mcp-Session-Id")) ? v : "";
    f->last_event_id = (v = http_request_header(req, "Last-Event-ID")) ? v : "";
    f->protocol_version = (v = http_request_header(req, "MCP-Protocol-Version")) ? v : "";
}

/* HMAC(key, "v2" \n each field \n ... sha256(body)) as hex. Header values
 * hold no \n (the HTTP layer refuses them), so the fields cannot run into
 * each other. */
static void hop_mac(const struct cluster *c, const struct hop_fields *f,
                    char out[2 * CRYPTO_SHA256_LEN + 1])
{
    unsigned char digest[CRYPTO_SHA256_LEN], mac[CRYPTO_SHA256_LEN];
    crypto_sha256(f->body ? f->body : "", f->body ? f->body_len : 0, digest);
    char digest_hex[2 * CRYPTO_SHA256_LEN + 1];
    hex_encode(digest, sizeof(digest), digest_hex);
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "v2\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s", f->ts, f->sender,
                  f->receiver, f->seq, f->method, f->target, f->client, f->authorization,
                  f->session_id, f->last_event_id, f->protocol_version, digest_hex);
    crypto_hmac_sha256(c->key, sizeof(c->key), sb.buf, sb.len, mac);
    crypto_wipe(sb.buf, sb.len); /* it held a bearer token */
    strbuf_release(&sb);
    hex_encode(mac, sizeof(mac), out);
}

/*
 * True the first time SENDER's SEQ arrives (cluster.h: a hop is accepted
 * once). Windows idle for two hop lifetimes are reclaimed on the way: every
 * hop they could still refuse is out of its time window by then.
 */
static bool hop_seq_fresh(struct cluster *c, const char *sender, uint64_t seq)
{
    uint64_t now = time_mono_ms();
    struct sender_window **pp = &c->senders, *found = NULL;
    while (*pp) {
        struct sender_window *w = *pp;
        if (strcmp(w->tag, sender) == 0) {
            found = w;
            pp = &w->next;
        } else if (now - w->last_ms > 2 * HOP_MAX_AGE_S * 1000) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
    if (found == NULL) {
        found = xcalloc(1, sizeof(*found));
        snprintf(found->tag, sizeof(found->tag), "%s", sender);
        found->next = c->senders;
        c->senders = found;
    }
    if (!replay_window_accept(&found->w, seq))
        return false;
    found->last_ms = now;
    return true;
}

static char *target_of(struct http_request *req)
{
    const char *q = http_request_query(req);
    return q ? xasprintf("%s?%s", http_request_path(req), q) : xstrdup(http_request_path(req));
}

const char *cluster_verify_hop(struct cluster *c, struct http_request *req)
{
    const char *hop = http_request_header(req, HOP_HEADER);
    const char *client = http_request_header(req, CLIENT_HEADER);
    const char *why = NULL;
    if (c == NULL)
        why = "this instance is not part of a cluster";
    else if (hop == NULL || client == NULL || http_request_header_count(req, HOP_HEADER) != 1 ||
             http_request_header_count(req, CLIENT_HEADER) != 1)
        why = "not a forwarded request";
    char ts[24] = "", sender[CLUSTER_TAG_LEN + 1] = "", seq[24] = "";
    char mac[2 * CRYPTO_SHA256_LEN + 1] = "";
    int used = 0;
    /* "<unix time>.<sender tag>.<sequence number>.<MAC hex>" */
    if (why == NULL &&
        (sscanf(hop, "%23[0-9].%8[A-Za-z0-9_-].%23[0-9].%64[0-9a-f]%n", ts, sender, seq, mac,
                &used) != 4 ||
         hop[used] != '\0' || strlen(sender) != CLUSTER_TAG_LEN || strlen(mac) != 64))
        why = "a malformed hop";
    if (why == NULL) {
        long long t = atoll(ts), now = (long long)time_wall_s();
        if (t < now - HOP_MAX_AGE_S || t > now + HOP_MAX_AGE_S)
            why = "a hop out of its time window";
    }
    if (why == NULL) {
        char *target = target_of(req);
        struct hop_fields f = {.ts = ts,
                               .sender = sender,
                               .receiver = c->tag,
                               .seq = seq,
                               .method = http_request_method_name(req),
                               .target = target,
                               .client = client};
        hop_fields_headers(&f, req);
        f.body = http_request_body(req, &f.body_len);
        char want[2 * CRYPTO_SHA256_LEN + 1];
        hop_mac(c, &f, want);
        free(target);
        if (!crypto_str_equal(want, mac))
            why = "a hop that does not verify";
    }
    /* Only a hop that verifies touches the windows: nobody without the key
     * can fill them. */
    if (why == NULL && !hop_seq_fresh(c, sender, strtoull(seq, NULL, 10)))
        why = "a hop seen before (a replay), or too far out of order";
    if (why) {
        if (c)
            c->stats.refused++;
        return why;
    }
    c->stats.received++;
    /* "<address> <http|https>" */
    char ip[64] = "", scheme[8] = "";
    sscanf(client, "%63s %7s", ip, scheme);
    http_request_set_client_ip(req, ip, strcmp(scheme, "https") == 0);
    return NULL;
}

/* ---- forwarding -------------------------------------------------------------------- */

struct hop {
    struct cluster *c;        /* borrowed */
    struct http_request *req; /* borrowed until finished */
    char tag[CLUSTER_TAG_LEN + 1];
    struct httpc_call *up; /* borrowed from httpc until it ends */
    bool looking_up;       /* waiting for the store */
    bool client_gone;
    bool started; /* the answer's head went to the client */
    bool aborted; /* the cluster went first (shutdown) while the store looked up */
    struct hop *prev, *next;
};

static void hop_unlink(struct hop *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else if (h->c->hops == h)
        h->c->hops = h->next;
    if (h->next)
        h->next->prev = h->prev;
}

static void owner_gone(struct http_request *req)
{
    char *text = jsonrpc_error_text(NULL, 0, JSONRPC_INVALID_REQUEST,
                                    "unknown or expired session: initialize again");
    http_reply_json_text(req, 404, text);
    free(text);
}

static void forget_peer(struct cluster *c, const char *tag)
{
    for (struct peer **pp = &c->peers; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->tag, tag) == 0) {
            struct peer *p = *pp;
            *pp = p->next;
            free(p->url);
            free(p);
            return;
        }
    }
}

static const char *cached_peer(struct cluster *c, const char *tag)
{
    uint64_t now = time_mono_ms();
    for (struct peer **pp = &c->peers; *pp;) {
        struct peer *p = *pp;
        if (p->expires_ms <= now) {
            *pp = p->next;
            free(p->url);
            free(p);
            continue;
        }
        if (strcmp(p->tag, tag) == 0)
            return p->url;
        pp = &p->next;
    }
    return NULL;
}

/* Ends a hop from our side (shutdown): the transfer, then the client's answer. */
static void hop_abort(struct hop *h)
{
    if (h->looking_up) { /* the store's callback still comes: it frees the hop */
        hop_unlink(h);
        http_request_on_close(h->req, NULL, NULL);
        if (!h->client_gone)
            http_reply_empty(h->req, 503);
        h->aborted = true;
        h->c = NULL;
        return;
    }
    httpc_cancel(h->up);
    h->up = NULL;
    hop_unlink(h);
    http_request_on_close(h->req, NULL, NULL);
    if (h->started)
        http_stream_end(h->req);
    else
        http_reply_empty(h->req, 503);
    free(h);
}

static void on_client_gone(struct http_request *req, void *arg)
{
    struct hop *h = arg;
    (void)req;
    h->client_gone = true;
    if (h->looking_up)
        return; /* the store answers later; the request is finished then */
    httpc_cancel(h->up);
    h->up = NULL;
    hop_unlink(h);
    if (h->started)
        http_stream_end(h->req);
    else
        http_reply_empty(h->req, 502);
    free(h);
}

static void on_drain(struct http_request *req, void *arg)
{
    struct hop *h = arg;
    (void)req;
    if (h->up && httpc_call_paused(h->up))
        httpc_resume(h->up);
}

static bool hop_by_hop(const char *name)
{
    static const char *const skip[] = {"Connection", "Keep-Alive",     "Proxy-Connection",
                                       "TE",         "Trailer",        "Transfer-Encoding",
                                       "Upgrade",    "Content-Length", "Host",
                                       "Expect",     "Date",           "Server",
                                       HOP_HEADER,   CLIENT_HEADER};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        if (strcasecmp(name, skip[i]) == 0)
            return true;
    return false;
}

static bool copy_answer_header(const char *name, const char *value, void *arg)
{
    if (!hop_by_hop(name) && strcasecmp(name, "Content-Type") != 0 &&
        strcasecmp(name, "X-Request-Id") != 0)
        http_set_header(arg, name, value);
    return true;
}

static void on_up_headers(struct httpc_call *up, long status, void *arg)
{
    struct hop *h = arg;
    httpc_call_foreach_header(up, copy_answer_header, h->req);
    http_stream_start(h->req, (int)status, httpc_call_header(up, "Content-Type"));
    http_stream_on_drain(h->req, on_drain, h);
    h->started = true;
}

static int on_up_data(struct httpc_call *up, const char *data, size_t len, void *arg)
{
    struct hop *h = arg;
    (void)up;
    return http_stream_push(h->req, data, len) == HTTP_STREAM_FULL ? HTTPC_PAUSE : HTTPC_CONTINUE;
}

static void on_up_done(struct httpc_call *up, const char *error, void *arg)
{
    struct hop *h = arg;
    (void)up;
    h->up = NULL;
    hop_unlink(h);
    http_request_on_close(h->req, NULL, NULL);
    if (h->started) {
        http_stream_end(h->req);
    } else {
        /* Nothing answered at the owner's address: it is gone (or going). */
        gw_log(GW_LOG_INFO, "cluster", http_request_id(h->req),
               "the owner of a session does not answer", "tag", h->tag, "error", error, NULL);
        forget_peer(h->c, h->tag);
        h->c->stats.owner_gone++;
        owner_gone(h->req);
    }
    free(h);
}

struct header_list {
    struct httpc_header h[MAX_FORWARDED_HEADERS + 3];
    size_t n;
};

static bool collect_header(const char *name, const char *value, void *arg)
{
    struct header_list *l = arg;
    if (!hop_by_hop(name) && l->n < MAX_FORWARDED_HEADERS)
        l->h[l->n++] = (struct httpc_header){name, value};
    return true;
}

static void hop_send(struct hop *h, const char *url)
{
    struct cluster *c = h->c;
    struct http_request *req = h->req;
    char *target = target_of(req);
    char *full = xasprintf("%s%s", url, target);
    size_t len;
    const char *body = http_request_body(req, &len);
    char ts[24], seq[24], mac[2 * CRYPTO_SHA256_LEN + 1];
    snprintf(ts, sizeof(ts), "%llu", (unsigned long long)time_wall_s());
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)++c->next_seq);
    char *client = xasprintf("%s %s", http_request_client_ip(req),
                             http_request_is_https(req) ? "https" : "http");
    const char *method = http_request_method_name(req);
    struct hop_fields f = {.ts = ts,
                           .sender = c->tag,
                           .receiver = h->tag,
                           .seq = seq,
                           .method = method,
                           .target = target,
                           .client = client,
                           .body = body,
                           .body_len = len};
    hop_fields_headers(&f, req);
    hop_mac(c, &f, mac);
    char *hop = xasprintf("%s.%s.%s.%s", ts, c->tag, seq, mac);
    struct header_list hl = {.n = 0};
    http_request_foreach_header(req, collect_header, &hl);
    hl.h[hl.n++] = (struct httpc_header){HOP_HEADER, hop};
    hl.h[hl.n++] = (struct httpc_header){CLIENT_HEADER, client};
    struct httpc_request r = {
        .method = method,
        .url = full,
        .headers = hl.h,
        .n_headers = hl.n,
        .body = len ? body : NULL,
        .body_len = len,
        .connect_timeout_ms = FORWARD_CONNECT_TIMEOUT_MS,
        /* GET streams and long tool calls: the owner bounds its own answer. */
        .timeout_ms = 0,
    };
    static const struct httpc_stream_callbacks cbs = {
        .on_headers = on_up_headers, .on_data = on_up_data, .on_done = on_up_done};
    c->stats.forwarded++;
    h->up = httpc_stream(c->httpc, &r, &cbs, h);
    free(hop);
    free(client);
    free(full);
    free(target);
}

static void on_record(const struct store_result *res, void *arg)
{
    struct hop *h = arg;
    if (h->aborted) {
        free(h);
        return;
    }
    struct cluster *c = h->c;
    h->looking_up = false;
    const char *url = NULL;
    json_t *rec = NULL;
    if (res->status == STORE_OK) {
        json_error_t jerr;
        rec = json_loadb(res->value, res->value_len, 0, &jerr);
        url = json_string_value(json_object_get(rec, "url"));
    }
    if (h->client_gone || url == NULL) {
        hop_unlink(h);
        http_request_on_close(h->req, NULL, NULL);
        if (url == NULL && res->status != STORE_OK && res->status != STORE_NOT_FOUND) {
            http_set_header(h->req, "Retry-After", "2");
            char *text = jsonrpc_error_text(NULL, 0, JSONRPC_GATEWAY_UPSTREAM_ERROR,
                                            "the store is unavailable: try again shortly");
            http_reply_json_text(h->req, 503, text);
            free(text);
        } else {
            if (url == NULL)
                c->stats.owner_gone++;
            owner_gone(h->req);
        }
        json_decref(rec);
        free(h);
        return;
    }
    struct peer *p = xcalloc(1, sizeof(*p));
    memcpy(p->tag, h->tag, sizeof(p->tag));
    p->url = xstrdup(url);
    p->expires_ms = time_mono_ms() + 2 * c->heartbeat_ms;
    p->next = c->peers;
    c->peers = p;
    hop_send(h, url);
    json_decref(rec);
}

void cluster_forward(struct cluster *c, struct http_request *req, const char *tag)
{
    struct hop *h = xcalloc(1, sizeof(*h));
    h->c = c;
    h->req = req;
    memcpy(h->tag, tag, CLUSTER_TAG_LEN);
    h->next = c->hops;
    if (h->next)
        h->next->prev = h;
    c->hops = h;
    http_request_on_close(req, on_client_gone, h);
    const char *url = cached_peer(c, tag);
    if (url) {
        hop_send(h, url);
        return;
    }
    char key[32];
    record_key(c, tag, key, sizeof(key));
    h->looking_up = true;
    if (store_get(c->store, key, on_record, h) < 0) {
        struct store_result down = {.status = STORE_UNAVAILABLE, .error = "store refused"};
        on_record(&down, h);
    }
}
