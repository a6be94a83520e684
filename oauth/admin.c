/*
 * admin: what `mcpgate grants …` and `mcpgate clients …` do, on the same
 * store as the running gateways. Listings read the id sets (grants:all,
 * clients:all, user:<sub>:grants) and then each record; ids whose record has
 * expired are dropped from their set on the way. Deleting a client revokes
 * every grant it holds (and so every token).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/xalloc.h"
#include "oauth/oauth_int.h"
#include "store/store.h"

struct admin_job {
    struct oauth_server *srv; /* borrowed */
    FILE *out;                /* borrowed */
    oauth_admin_done_fn done;
    void *arg;  /* borrowed */
    char **ids; /* owned */
    size_t n_ids, next;
    char *set_key; /* owned: the set the ids came from */
    char *target;  /* owned: the client being deleted, or the user */
    size_t revoked;
    bool delete_client;
};

static void job_finish(struct admin_job *j, int rc, const char *msg)
{
    j->done(rc, msg, j->arg);
    for (size_t i = 0; i < j->n_ids; i++)
        free(j->ids[i]);
    free(j->ids);
    free(j->set_key);
    free(j->target);
    free(j);
}

static struct admin_job *job_new(struct oauth_server *srv, FILE *out, oauth_admin_done_fn done,
                                 void *arg)
{
    struct admin_job *j = xcalloc(1, sizeof(*j));
    j->srv = srv;
    j->out = out;
    j->done = done;
    j->arg = arg;
    return j;
}

static void take_members(struct admin_job *j, const struct store_result *res)
{
    j->ids = xcalloc(res->n_members ? res->n_members : 1, sizeof(*j->ids));
    for (size_t i = 0; i < res->n_members; i++)
        j->ids[i] = xstrndup(res->members[i], res->member_lens[i]);
    j->n_ids = res->n_members;
}

static void fmt_time(json_int_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- grants ------------------------------------------------------------------ */

static void list_next_grant(struct admin_job *j);

static void on_grant_view(const struct oauth_grant_view *v, enum oauth_lookup how, void *arg)
{
    struct admin_job *j = arg;
    const char *id = j->ids[j->next - 1];
    if (how == OAUTH_FOUND) {
        char when[32] = "?", used[32] = "never";
        fmt_time((json_int_t)v->created, when, sizeof(when));
        if (v->last_used)
            fmt_time((json_int_t)v->last_used, used, sizeof(used));
        fprintf(j->out, "%s\t%s\t%s\t%s\t%s\t%s\t%zu\n", id, v->subject, v->client_id, v->scope,
                when, used, v->sessions);
    } else if (how == OAUTH_NOT_FOUND) {
        store_set_remove_detached(j->srv->store, j->set_key, id, "grant index: expired grant");
    } else {
        job_finish(j, -EIO, "store unavailable");
        return;
    }
    list_next_grant(j);
}

static void list_next_grant(struct admin_job *j)
{
    if (j->next == j->n_ids) {
        job_finish(j, 0, NULL);
        return;
    }
    oauth_grant_view_load(j->srv, j->ids[j->next++], on_grant_view, j);
}

static void on_grant_ids(const struct store_result *res, void *arg)
{
    struct admin_job *j = arg;
    if (res->status != STORE_OK) {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
        return;
    }
    take_members(j, res);
    fprintf(j->out, "GRANT\tSUBJECT\tCLIENT\tSCOPE\tCREATED\tLAST_USED\tSESSIONS\n");
    list_next_grant(j);
}

void oauth_admin_list_grants(struct oauth_server *srv, const char *subject, FILE *out,
                             oauth_admin_done_fn done, void *arg)
{
    struct admin_job *j = job_new(srv, out, done, arg);
    j->set_key = subject ? xasprintf(KEY_USER_GRANTS, subject) : xstrdup(KEY_ALL_GRANTS);
    if (store_set_members(srv->store, j->set_key, on_grant_ids, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}

static void on_barrier(const struct store_result *res, void *arg)
{
    struct admin_job *j = arg;
    char msg[96];
    snprintf(msg, sizeof(msg), "%zu grant%s revoked", j->revoked, j->revoked == 1 ? "" : "s");
    if (res->status != STORE_OK)
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
    else if (j->n_ids == 1 && j->revoked == 0 && !j->delete_client && j->target == NULL)
        job_finish(j, -ENOENT, "no such grant");
    else
        job_finish(j, 0, msg);
}

static void on_one_revoked(bool found, void *arg)
{
    struct admin_job *j = arg;
    j->revoked += found;
    if (j->next < j->n_ids) {
        const char *id = j->ids[j->next++];
        oauth_grant_revoke_then(j->srv, id,
                                j->delete_client ? "client deleted by an administrator"
                                                 : "revoked by an administrator",
                                NULL, on_one_revoked, j);
        return;
    }
    if (j->delete_client) {
        char key[300];
        snprintf(key, sizeof(key), KEY_CLIENT "%s", j->target);
        store_del_detached(j->srv->store, key, "client deletion: record");
        snprintf(key, sizeof(key), KEY_CLIENT_GRANTS, j->target);
        store_del_detached(j->srv->store, key, "client deletion: grant index");
        store_set_remove_detached(j->srv->store, KEY_ALL_CLIENTS, j->target,
                                  "client deletion: client list");
    }
    /* The deletions went out detached; Redis runs commands in order,
     * so the answer to this PING means every one of them is done. */
    if (store_ping(j->srv->store, on_barrier, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}

static void revoke_all(struct admin_job *j)
{
    on_one_revoked(false, j);
}

void oauth_admin_revoke_grant(struct oauth_server *srv, const char *grant_id,
                              oauth_admin_done_fn done, void *arg)
{
    struct admin_job *j = job_new(srv, NULL, done, arg);
    j->ids = xcalloc(1, sizeof(*j->ids));
    j->ids[0] = xstrdup(grant_id);
    j->n_ids = 1;
    revoke_all(j);
}

static void on_ids_to_revoke(const struct store_result *res, void *arg)
{
    struct admin_job *j = arg;
    if (res->status != STORE_OK) {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
        return;
    }
    take_members(j, res);
    revoke_all(j);
}

void oauth_admin_revoke_user(struct oauth_server *srv, const char *subject,
                             oauth_admin_done_fn done, void *arg)
{
    struct admin_job *j = job_new(srv, NULL, done, arg);
    j->target = xstrdup(subject);
    j->set_key = xasprintf(KEY_USER_GRANTS, subject);
    if (store_set_members(srv->store, j->set_key, on_ids_to_revoke, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}

/* ---- clients --------------------------------------------------------------- */

static void list_next_client(struct admin_job *j);

static void on_client_record(const struct store_result *res, void *arg)
{
    struct admin_job *j = arg;
    const char *id = j->ids[j->next - 1];
    if (res->status == STORE_OK) {
        struct oauth_client *c = oauth_client_from_json(res->value, res->value_len);
        char *uris = c ? mg_string_list_join(&c->redirect_uris, " ") : xstrdup("?");
        fprintf(j->out, "%s\t%s\t%s\t%s\n", id, c && c->client_name ? c->client_name : "-",
                c && c->secret_sha256 ? "confidential" : "public", uris);
        free(uris);
        oauth_client_free(c);
    } else if (res->status == STORE_NOT_FOUND) {
        store_set_remove_detached(j->srv->store, KEY_ALL_CLIENTS, id,
                                  "client list: expired client");
    } else {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
        return;
    }
    list_next_client(j);
}

static void list_next_client(struct admin_job *j)
{
    if (j->next == j->n_ids) {
        const struct gw_oauth_config *oc = &j->srv->cfg->oauth;
        for (size_t i = 0; i < oc->n_clients; i++)
            fprintf(j->out, "%s\t%s\tstatic\t(oauth.clients)\n", oc->clients[i].client_id,
                    oc->clients[i].client_name ? oc->clients[i].client_name : "-");
        job_finish(j, 0, NULL);
        return;
    }
    char key[300];
    snprintf(key, sizeof(key), KEY_CLIENT "%s", j->ids[j->next++]);
    if (store_get(j->srv->store, key, on_client_record, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}

static void on_client_ids(const struct store_result *res, void *arg)
{
    struct admin_job *j = arg;
    if (res->status != STORE_OK) {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
        return;
    }
    take_members(j, res);
    fprintf(j->out, "CLIENT\tNAME\tTYPE\tREDIRECT_URIS\n");
    list_next_client(j);
}

void oauth_admin_list_clients(struct oauth_server *srv, FILE *out, oauth_admin_done_fn done,
                              void *arg)
{
    struct admin_job *j = job_new(srv, out, done, arg);
    if (store_set_members(srv->store, KEY_ALL_CLIENTS, on_client_ids, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}

static void on_client_exists(const struct store_result *res, void *arg)
{
    struct admin_job *j = arg;
    if (res->status == STORE_NOT_FOUND) {
        job_finish(j, -ENOENT, "no such client");
        return;
    }
    if (res->status != STORE_OK) {
        job_finish(j, -EIO, res->error ? res->error : "store unavailable");
        return;
    }
    j->set_key = xasprintf(KEY_CLIENT_GRANTS, j->target);
    if (store_set_members(j->srv->store, j->set_key, on_ids_to_revoke, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}

void oauth_admin_delete_client(struct oauth_server *srv, const char *client_id,
                               oauth_admin_done_fn done, void *arg)
{
    struct admin_job *j = job_new(srv, NULL, done, arg);
    j->target = xstrdup(client_id);
    j->delete_client = true;
    char key[300];
    snprintf(key, sizeof(key), KEY_CLIENT "%s", client_id);
    if (store_get(srv->store, key, on_client_exists, j) < 0)
        job_finish(j, -EIO, "store unavailable");
}
