/*
 * idp_tokens: reading, renewing and storing a grant's IdP tokens, one
 * renewal per grant at a time (see the header for the rules).
 *
 *   idptok:<grant>   {"at", "rt", "exp"} sealed under the grant key
 *   idplock:<grant>  held by the instance renewing (SET NX PX, idp.timeout + 5 s)
 *
 * A flight is one renewal and the callers waiting for it. It lives in
 * srv->idp_flights until it answers; a flight whose server went away
 * (oauth_idp_tokens_shutdown) frees itself when its pending call returns.
 */
#include "oauth/idp_tokens.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/panic.h"
#include "common/rand.h"
#include "common/timeutil.h"
#include "common/xevent.h"
#include "common/xalloc.h"
#include "oauth/idp.h"
#include "oauth/oauth_int.h"
#include "oauth/tokens.h"
#include "store/store.h"

#define KEY_IDP_LOCK "idplock:"
#define RENEW_MARGIN_S 60  /* renew this long before the IdP token expires */
#define POLL_MS 100        /* how often a waiting instance re-reads idptok */
#define LOCK_SLACK_MS 5000 /* the lock outlives the IdP call by this much */

struct idp_waiter {
    oauth_idp_fn cb;
    void *arg; /* borrowed */
    struct idp_waiter *next;
};

struct idp_flight {
    struct oauth_server *srv; /* borrowed; NULL once the server is gone */
    struct idp_flight *next;  /* in srv->idp_flights */
    char *grant_id;           /* owned */
    char *subject;            /* owned */
    char *request_id;         /* owned, may be NULL */
    unsigned char key[CRYPTO_KEY_LEN];
    char *used_rt;    /* owned (secret): the refresh token this renewal spends */
    char *lock_key;   /* owned */
    char lock_id[44]; /* this flight's lock value */
    struct idp_waiter *waiters;
    struct event *poll;  /* owned: while another instance renews */
    uint64_t give_up_ms; /* monotonic: when waiting for another instance stops */
    bool pending;        /* a store or IdP call will call back */
};

/* One caller, before it joins a flight: the read of idptok. */
struct idp_get {
    struct oauth_server *srv; /* borrowed */
    char *grant_id;           /* owned */
    char *subject;            /* owned */
    char *request_id;         /* owned, may be NULL */
    unsigned char key[CRYPTO_KEY_LEN];
    bool renew;
    oauth_idp_fn cb;
    void *arg; /* borrowed */
};

/* The stored tokens, opened. */
struct idp_stored {
    char *at; /* owned (secret), may be NULL */
    char *rt; /* owned (secret), may be NULL */
    uint64_t exp;
};

static void stored_clear(struct idp_stored *st)
{
    if (st->at) {
        crypto_wipe(st->at, strlen(st->at));
        free(st->at);
    }
    if (st->rt) {
        crypto_wipe(st->rt, strlen(st->rt));
        free(st->rt);
    }
    memset(st, 0, sizeof(*st));
}

/* Opens an idptok record; false when it cannot be read (then ST is empty). */
static bool stored_open(const unsigned char key[CRYPTO_KEY_LEN], const char *grant_id,
                        const struct store_result *res, struct idp_stored *st)
{
    memset(st, 0, sizeof(*st));
    char *text = NULL;
    if (res->status != STORE_OK || oauth_props_open(key, grant_id, res->value, &text) != 0)
        return false;
    json_error_t jerr;
    json_t *t = json_loads(text, 0, &jerr);
    crypto_wipe(text, strlen(text));
    free(text);
    const char *at = json_string_value(json_object_get(t, "at"));
    const char *rt = json_string_value(json_object_get(t, "rt"));
    st->at = at ? xstrdup(at) : NULL;
    st->rt = rt ? xstrdup(rt) : NULL;
    st->exp = (uint64_t)json_integer_value(json_object_get(t, "exp"));
    json_decref(t);
    return true;
}

static bool stored_is_fresh(const struct idp_stored *st)
{
    return st->at && (st->exp == 0 || st->exp > (uint64_t)time(NULL) + RENEW_MARGIN_S);
}

/* What another renewal just stored is used while it has not expired: an IdP
 * whose tokens live no longer than the margin would otherwise never settle. */
static bool stored_is_usable(const struct idp_stored *st)
{
    return st->at && (st->exp == 0 || st->exp > (uint64_t)time(NULL));
}

/* ---- flights ------------------------------------------------------------------ */

static void flight_free(struct idp_flight *f)
{
    while (f->waiters) {
        struct idp_waiter *w = f->waiters;
        f->waiters = w->next;
        free(w);
    }
    if (f->poll)
        event_free(f->poll);
    free(f->grant_id);
    free(f->subject);
    free(f->request_id);
    if (f->used_rt) {
        crypto_wipe(f->used_rt, strlen(f->used_rt));
        free(f->used_rt);
    }
    free(f->lock_key);
    crypto_wipe(f->key, sizeof(f->key));
    free(f);
}

static void flight_unlink(struct idp_flight *f)
{
    if (f->srv == NULL)
        return;
    for (struct idp_flight **pp = &f->srv->idp_flights; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
}

/* Answers every waiter with R and frees F. */
static void flight_answer(struct idp_flight *f, const struct oauth_idp_result *r)
{
    flight_unlink(f);
    struct idp_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct idp_waiter *next = w->next;
        w->cb(r, w->arg);
        free(w);
        w = next;
    }
    flight_free(f);
}

static void flight_fail(struct idp_flight *f, enum oauth_idp_status status, const char *why)
{
    struct oauth_idp_result r = {.status = status, .why = why};
    flight_answer(f, &r);
}

/* A pending call came back: false (and F freed) when the server went away meanwhile. */
static bool flight_resume(struct idp_flight *f)
{
    f->pending = false;
    if (f->srv)
        return true;
    flight_free(f);
    return false;
}

static void release_lock(struct idp_flight *f)
{
    /* Best effort: a lock left behind expires after idp.timeout + 5 s. */
    store_del_detached(f->srv->store, f->lock_key, "IdP renewal lock");
}

static void store_tokens(struct idp_flight *f, const struct idp_identity *id)
{
    json_t *t =
        json_pack("{s:s, s:I}", "at", id->access_token, "exp", (json_int_t)id->access_expires_at);
    if (id->refresh_token)
        json_object_set_new(t, "rt", json_string(id->refresh_token));
    char *text = json_dumps(t, JSON_COMPACT);
    json_decref(t);
    char *sealed = NULL;
    if (oauth_props_seal(f->key, f->grant_id, text, &sealed) < 0)
        GW_PANIC("AES-GCM does not fail on valid inputs");
    crypto_wipe(text, strlen(text));
    free(text);
    char *key = xasprintf(KEY_IDP_TOKENS "%s", f->grant_id);
    /* Written before the lock goes: an instance that waited reads the new pair. */
    store_put_detached(f->srv->store, key, sealed, strlen(sealed),
                       f->srv->cfg->oauth.refresh_token_ttl_ms, "IdP token renewal");
    free(key);
    free(sealed);
}

static void end_grant(struct idp_flight *f, const char *why)
{
    oauth_grant_revoke(f->srv, f->grant_id, why, f->request_id);
    release_lock(f);
    flight_fail(f, OAUTH_IDP_ENDED, why);
}

static void read_again(struct idp_flight *f, store_cb_fn cb);

/* After a refused renewal: was the refused refresh token replaced meanwhile? */
static void on_reread_after_refusal(const struct store_result *res, void *arg)
{
    struct idp_flight *f = arg;
    if (!flight_resume(f))
        return;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        release_lock(f);
        flight_fail(f, OAUTH_IDP_UNAVAILABLE, "store unavailable after an IdP refusal");
        return;
    }
    struct idp_stored st;
    stored_open(f->key, f->grant_id, res, &st);
    if (st.rt && strcmp(st.rt, f->used_rt) != 0) {
        /* Another renewal won: its tokens are the user's, nothing ended. */
        release_lock(f);
        if (stored_is_usable(&st)) {
            struct oauth_idp_result r = {.status = OAUTH_IDP_OK, .access_token = st.at};
            flight_answer(f, &r);
        } else {
            flight_fail(f, OAUTH_IDP_UNAVAILABLE, "the IdP tokens changed during the renewal");
        }
    } else {
        end_grant(f, "the identity provider refused the renewal");
    }
    stored_clear(&st);
}

static void on_renewed(const struct idp_identity *id, const char *error, bool denied, void *arg)
{
    struct idp_flight *f = arg;
    if (!flight_resume(f))
        return;
    if (id == NULL || id->access_token == NULL) {
        oauth_audit(f->request_id, "idp failure", "grant_id", f->grant_id, "error",
                    error ? error : "no access token in the refresh answer", NULL);
        if (denied) {
            read_again(f, on_reread_after_refusal);
        } else {
            release_lock(f);
            flight_fail(f, OAUTH_IDP_UNAVAILABLE, "the identity provider could not renew");
        }
        return;
    }
    if (strcmp(id->subject, f->subject) != 0) {
        end_grant(f, "the identity provider answered for another subject");
        return;
    }
    store_tokens(f, id);
    release_lock(f);
    struct oauth_idp_result r = {
        .status = OAUTH_IDP_OK, .access_token = id->access_token, .identity = id};
    flight_answer(f, &r);
}

static void renew(struct idp_flight *f)
{
    if (f->srv->idp == NULL) {
        release_lock(f);
        flight_fail(f, OAUTH_IDP_UNAVAILABLE, "no identity provider is configured");
        return;
    }
    f->pending = true;
    idp_refresh(f->srv->idp, f->used_rt, on_renewed, f);
}

static void try_lock(struct idp_flight *f);

/* Waiting for another instance: has idptok changed? */
static void on_poll_read(const struct store_result *res, void *arg)
{
    struct idp_flight *f = arg;
    if (!flight_resume(f))
        return;
    struct idp_stored st;
    stored_open(f->key, f->grant_id, res, &st);
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        flight_fail(f, OAUTH_IDP_UNAVAILABLE, "store unavailable");
    } else if (st.rt == NULL || strcmp(st.rt, f->used_rt) != 0) {
        if (stored_is_usable(&st)) {
            struct oauth_idp_result r = {.status = OAUTH_IDP_OK, .access_token = st.at};
            flight_answer(f, &r);
        } else {
            flight_fail(f, st.at ? OAUTH_IDP_UNAVAILABLE : OAUTH_IDP_ENDED,
                        "the other instance's renewal did not leave a current token");
        }
    } else if (time_mono_ms() >= f->give_up_ms) {
        flight_fail(f, OAUTH_IDP_UNAVAILABLE, "another instance is still renewing");
    } else {
        try_lock(f); /* the lock may be gone (its holder crashed): then renew here */
    }
    stored_clear(&st);
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct idp_flight *f = arg;
    read_again(f, on_poll_read);
}

static void on_lock(const struct store_result *res, void *arg)
{
    struct idp_flight *f = arg;
    if (!flight_resume(f))
        return;
    if (res->status == STORE_OK) {
        renew(f);
    } else if (res->status == STORE_EXISTS) {
        if (f->poll == NULL)
            f->poll = xevtimer_new(f->srv->base, on_poll_timer, f);
        struct timeval tv = {0, POLL_MS * 1000};
        evtimer_add(f->poll, &tv);
    } else {
        flight_fail(f, OAUTH_IDP_UNAVAILABLE, "store unavailable");
    }
}

static void try_lock(struct idp_flight *f)
{
    uint64_t ttl = f->srv->cfg->idp.timeout_ms + LOCK_SLACK_MS;
    f->pending = true;
    if (store_put_nx(f->srv->store, f->lock_key, f->lock_id, strlen(f->lock_id), ttl, on_lock, f) <
        0) {
        f->pending = false;
        flight_fail(f, OAUTH_IDP_UNAVAILABLE, "store unavailable");
    }
}

static void read_again(struct idp_flight *f, store_cb_fn cb)
{
    char *key = xasprintf(KEY_IDP_TOKENS "%s", f->grant_id);
    f->pending = true;
    int rc = store_get(f->srv->store, key, cb, f);
    free(key);
    if (rc < 0) {
        f->pending = false;
        release_lock(f);
        flight_fail(f, OAUTH_IDP_UNAVAILABLE, "store unavailable");
    }
}

/* G joins the renewal of its grant in progress, or starts one with RT. */
static void join_flight(struct idp_get *g, const char *rt)
{
    struct idp_flight *f = g->srv->idp_flights;
    while (f && strcmp(f->grant_id, g->grant_id) != 0)
        f = f->next;
    bool start = f == NULL;
    if (start) {
        f = xcalloc(1, sizeof(*f));
        f->srv = g->srv;
        f->grant_id = xstrdup(g->grant_id);
        f->subject = xstrdup(g->subject);
        f->request_id = g->request_id ? xstrdup(g->request_id) : NULL;
        memcpy(f->key, g->key, sizeof(f->key));
        f->used_rt = xstrdup(rt);
        f->lock_key = xasprintf(KEY_IDP_LOCK "%s", g->grant_id);
        rand_handle(f->lock_id);
        f->give_up_ms = time_mono_ms() + g->srv->cfg->idp.timeout_ms + LOCK_SLACK_MS;
        f->next = g->srv->idp_flights;
        g->srv->idp_flights = f;
    }
    struct idp_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = g->cb;
    w->arg = g->arg;
    w->next = f->waiters;
    f->waiters = w;
    if (start)
        try_lock(f);
}

static void get_free(struct idp_get *g)
{
    free(g->grant_id);
    free(g->subject);
    free(g->request_id);
    crypto_wipe(g->key, sizeof(g->key));
    free(g);
}

static void on_tokens_read(const struct store_result *res, void *arg)
{
    struct idp_get *g = arg;
    if (res->status == STORE_UNAVAILABLE || res->status == STORE_ERROR) {
        struct oauth_idp_result r = {.status = OAUTH_IDP_UNAVAILABLE, .why = "store unavailable"};
        g->cb(&r, g->arg);
        get_free(g);
        return;
    }
    struct idp_stored st;
    bool opened = stored_open(g->key, g->grant_id, res, &st);
    if (opened && stored_is_fresh(&st) && !g->renew) {
        struct oauth_idp_result r = {.status = OAUTH_IDP_OK, .access_token = st.at};
        g->cb(&r, g->arg);
    } else if (!opened || st.rt == NULL) {
        struct oauth_idp_result r = {.status = OAUTH_IDP_NONE,
                                     .why = opened
                                                ? "the identity provider gave no refresh token"
                                                : "this grant holds no identity provider tokens"};
        g->cb(&r, g->arg);
    } else {
        join_flight(g, st.rt);
    }
    stored_clear(&st);
    get_free(g);
}

static void get_unavailable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct idp_get *g = arg;
    struct oauth_idp_result r = {.status = OAUTH_IDP_UNAVAILABLE, .why = "store unavailable"};
    g->cb(&r, g->arg);
    get_free(g);
}

void oauth_idp_tokens_get(struct oauth_server *srv, const char *grant_id,
                          const unsigned char key[CRYPTO_KEY_LEN], const char *subject, bool renew,
                          const char *request_id, oauth_idp_fn cb, void *arg)
{
    struct idp_get *g = xcalloc(1, sizeof(*g));
    g->srv = srv;
    g->grant_id = xstrdup(grant_id);
    g->subject = xstrdup(subject);
    g->request_id = request_id ? xstrdup(request_id) : NULL;
    memcpy(g->key, key, sizeof(g->key));
    g->renew = renew;
    g->cb = cb;
    g->arg = arg;
    char *k = xasprintf(KEY_IDP_TOKENS "%s", grant_id);
    int rc = store_get(srv->store, k, on_tokens_read, g);
    free(k);
    if (rc < 0) /* answered on the loop, never inside the call */
        xevent_defer(srv->base, get_unavailable, g);
}

void oauth_idp_tokens_shutdown(struct oauth_server *srv)
{
    while (srv->idp_flights) {
        struct idp_flight *f = srv->idp_flights;
        srv->idp_flights = f->next;
        f->srv = NULL;
        if (f->poll)
            event_del(f->poll);
        if (!f->pending)
            flight_free(f);
    }
}
