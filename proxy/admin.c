/*
 * admin: what `mcpgate sessions …` does, on the same store as the running
 * gateways, through the session registry (common/principal.h). A listing
 * reads sessions:all and then each record; ids whose record has expired
 * (their instance died) are dropped from the index on the way. Ending a
 * session publishes its id on session-end, and the instance that has it
 * ends it (its child, streams and pending requests); the command then
 * waits, bounded, for the record to go.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/principal.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "proxy/proxy.h"
#include "store/store.h"

#define END_POLL_MS 100
#define END_POLLS 50 /* 5 s */

struct sessions_job {
    struct store *store;     /* borrowed */
    struct event_base *base; /* borrowed */
    FILE *out;               /* borrowed; NULL when ending */
    const char *user;        /* borrowed filters, may be NULL */
    const char *route;
    const char *want; /* borrowed: the id or id prefix to end */
    proxy_admin_done_fn done;
    void *arg; /* borrowed */
    char **ids;
    size_t n_ids, next;
    char *target; /* owned: the full id being ended */
    struct event *poll;
    int polls;
    size_t shown;
};

static void job_finish(struct sessions_job *j, int rc, const char *msg)
{
    j->done(rc, msg, j->arg);
    for (size_t i = 0; i < j->n_ids; i++)
        free(j->ids[i]);
    free(j->ids);
    free(j->target);
    if (j->poll)
        event_free(j->poll);
    free(j);
}

static void fmt_age(long long s, char *buf, size_t cap)
{
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(buf, cap, "%llds", s);
    else if (s < 7200)
        snprintf(buf, cap, "%lldm", s / 60);
    else
        snprintf(buf, cap, "%lldh", s / 3600);
}

static void list_next(struct sessions_job *j);

static const char *str_of(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "-";
}

static void on_record(const struct store_result *res, void *arg)
{
    struct sessions_job *j = arg;
    const char *id = j->ids[j->next - 1];
    if (res->status == STORE_OK) {
        json_error_t jerr;
        json_t *r = json_loadb(res->value, res->value_len, 0, &jerr);
        bool keep = r && (j->user == NULL || strcmp(str_of(r, "owner"), j->user) == 0) &&
                    (j->route == NULL || strcmp(str_of(r, "route"), j->route) == 0);
        if (keep) {
            long long now = (long long)time(NULL);
            char age[32], idle[32];
            fmt_age(now - json_integer_value(json_object_get(r, "started")), age, sizeof(age));
            fmt_age(now - json_integer_value(json_object_get(r, "last")), idle, sizeof(idle));
            fprintf(j->out, "%.12s\t%s\t%s\t%s\t%s\t%s\t%s\t%lld\t%lld\n", id, str_of(r, "owner"),
                    str_of(r, "client"), str_of(r, "route"), str_of(r, "instance"), age, idle,
                    (long long)json_integer_value(json_object_get(r, "pid")),
                    (long long)json_integer_value(json_object_get(r, "streams")));
            j->shown++;
        }
        json_decref(r);
    } else if (res->status == STORE_NOT_FOUND) {
        store_set_remove_detached(j->store, MG_KEY_SESSIONS_ALL, id, "session index: expired");
    } else {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
        return;
    }
    list_next(j);
}

static void list_next(struct sessions_job *j)
{
    if (j->next == j->n_ids) {
        job_finish(j, 0, NULL);
        return;
    }
    char *key = xasprintf(MG_KEY_SESSION, j->ids[j->next++]);
    int rc = store_get(j->store, key, on_record, j);
    free(key);
    if (rc < 0)
        job_finish(j, -EIO, "store unavailable");
}

static bool take_ids(struct sessions_job *j, const struct store_result *res)
{
    if (res->status != STORE_OK && res->status != STORE_NOT_FOUND) {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
        return false;
    }
    size_t n = res->status == STORE_OK ? res->n_members : 0;
    j->ids = xcalloc(n ? n : 1, sizeof(*j->ids));
    for (size_t i = 0; i < n; i++)
        j->ids[i] = xstrndup(res->members[i], res->member_lens[i]);
    j->n_ids = n;
    return true;
}

static void on_ids_for_list(const struct store_result *res, void *arg)
{
    struct sessions_job *j = arg;
    if (!take_ids(j, res))
        return;
    fprintf(j->out, "SESSION\tUSER\tCLIENT\tROUTE\tINSTANCE\tAGE\tIDLE\tPID\tSTREAMS\n");
    list_next(j);
}

static struct sessions_job *job_new(struct store *st, struct event_base *base,
                                    proxy_admin_done_fn done, void *arg)
{
    struct sessions_job *j = xcalloc(1, sizeof(*j));
    j->store = st;
    j->base = base;
    j->done = done;
    j->arg = arg;
    return j;
}

void proxy_admin_list_sessions(struct store *st, struct event_base *base, const char *user,
                               const char *route, FILE *out, proxy_admin_done_fn done, void *arg)
{
    struct sessions_job *j = job_new(st, base, done, arg);
    j->out = out;
    j->user = user;
    j->route = route;
    if (store_set_members(st, MG_KEY_SESSIONS_ALL, on_ids_for_list, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}

/* ---- ending one ------------------------------------------------------------- */

static void poll_gone(struct sessions_job *j);

static void on_poll_record(const struct store_result *res, void *arg)
{
    struct sessions_job *j = arg;
    if (res->status == STORE_NOT_FOUND) {
        job_finish(j, 0, "session ended");
    } else if (res->status != STORE_OK) {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
    } else if (++j->polls >= END_POLLS) {
        /* Nobody ended it: its instance is gone. Its record would expire by itself. */
        char *key = xasprintf(MG_KEY_SESSION, j->target);
        store_del_detached(j->store, key, "session end: stale record");
        free(key);
        store_set_remove_detached(j->store, MG_KEY_SESSIONS_ALL, j->target,
                                  "session end: stale index");
        job_finish(j, -ETIMEDOUT,
                   "no instance ended it (is its instance running?); its record "
                   "was removed");
    } else {
        poll_gone(j);
    }
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sessions_job *j = arg;
    (void)fd;
    (void)what;
    char *key = xasprintf(MG_KEY_SESSION, j->target);
    int rc = store_get(j->store, key, on_poll_record, j);
    free(key);
    if (rc < 0)
        job_finish(j, -EIO, "store unavailable");
}

static void poll_gone(struct sessions_job *j)
{
    struct timeval tv = {0, END_POLL_MS * 1000};
    event_add(j->poll, &tv);
}

static void on_published(const struct store_result *res, void *arg)
{
    struct sessions_job *j = arg;
    if (res->status != STORE_OK) {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
        return;
    }
    j->poll = xevtimer_new(j->base, on_poll_timer, j);
    poll_gone(j);
}

static void on_ids_for_end(const struct store_result *res, void *arg)
{
    struct sessions_job *j = arg;
    if (!take_ids(j, res))
        return;
    size_t n = strlen(j->want), matches = 0;
    for (size_t i = 0; i < j->n_ids; i++)
        if (strncmp(j->ids[i], j->want, n) == 0) {
            matches++;
            free(j->target);
            j->target = xstrdup(j->ids[i]);
        }
    if (matches != 1) {
        job_finish(j, -ENOENT, matches ? "the prefix names several sessions" : "no such session");
        return;
    }
    if (store_publish(j->store, MG_CHANNEL_SESSION_END, j->target, strlen(j->target), on_published,
                      j) < 0)
        job_finish(j, -EIO, "store unavailable");
}

void proxy_admin_end_session(struct store *st, struct event_base *base, const char *id,
                             proxy_admin_done_fn done, void *arg)
{
    struct sessions_job *j = job_new(st, base, done, arg);
    j->want = id;
    if (strlen(id) < 8) {
        job_finish(j, -EINVAL, "give at least 8 characters of the session id");
        return;
    }
    if (store_set_members(st, MG_KEY_SESSIONS_ALL, on_ids_for_end, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}
