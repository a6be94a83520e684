/*
 * grant_view: one grant as a person or an operator sees it, loaded in a
 * few store round trips: the grant record, its client (name, redirect
 * host, how it was registered), when it was last used and how many MCP
 * sessions are open on it now (the session registry, every instance).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/principal.h"
#include "common/xalloc.h"
#include "common/xevent.h"
#include "oauth/oauth_int.h"
#include "oauth/redirect_uri.h"
#include "store/store.h"

struct view_job {
    struct oauth_server *srv; /* borrowed */
    struct oauth_grant_view v;
    oauth_grant_view_fn cb;
    void *arg; /* borrowed */
};

void oauth_grant_view_clear(struct oauth_grant_view *v)
{
    free(v->grant_id);
    free(v->subject);
    free(v->client_id);
    free(v->client_name);
    free(v->redirect_host);
    free(v->scope);
    free(v->resource);
    memset(v, 0, sizeof(*v));
}

static void job_end(struct view_job *j, enum oauth_lookup how)
{
    j->cb(how == OAUTH_FOUND ? &j->v : NULL, how, j->arg);
    oauth_grant_view_clear(&j->v);
    free(j);
}

static void on_sessions(const struct store_result *res, void *arg)
{
    struct view_job *j = arg;
    j->v.sessions = res->status == STORE_OK ? res->n_members : 0;
    job_end(j, OAUTH_FOUND);
}

static void on_seen(const struct store_result *res, void *arg)
{
    struct view_job *j = arg;
    if (res->status == STORE_OK) {
        char buf[24];
        size_t n = res->value_len < sizeof(buf) - 1 ? res->value_len : sizeof(buf) - 1;
        memcpy(buf, res->value, n);
        buf[n] = '\0';
        j->v.last_used = strtoull(buf, NULL, 10);
    }
    char *key = xasprintf(MG_KEY_GRANT_SESSIONS, j->v.grant_id);
    int rc = store_set_members(j->srv->store, key, on_sessions, j);
    free(key);
    if (rc < 0)
        job_end(j, OAUTH_STORE_DOWN);
}

static void on_client(struct oauth_client *c, enum oauth_lookup how, const char *why, void *arg)
{
    (void)why; /* a refused metadata document: the grant is shown without a name */
    struct view_job *j = arg;
    if (how == OAUTH_STORE_DOWN) {
        job_end(j, OAUTH_STORE_DOWN);
        return;
    }
    if (c) {
        j->v.client_name = c->client_name ? xstrdup(c->client_name) : NULL;
        j->v.is_static = c->is_static;
        if (c->redirect_uris.len)
            j->v.redirect_host = oauth_redirect_uri_display_host(c->redirect_uris.items[0]);
    }
    char key[128];
    snprintf(key, sizeof(key), KEY_GRANT_SEEN "%s", j->v.grant_id);
    if (store_get(j->srv->store, key, on_seen, j) < 0)
        job_end(j, OAUTH_STORE_DOWN);
}

static void on_grant(const struct store_result *res, void *arg)
{
    struct view_job *j = arg;
    if (res->status == STORE_NOT_FOUND) {
        job_end(j, OAUTH_NOT_FOUND);
        return;
    }
    if (res->status != STORE_OK) {
        job_end(j, OAUTH_STORE_DOWN);
        return;
    }
    json_error_t jerr;
    json_t *g = json_loadb(res->value, res->value_len, 0, &jerr);
    const char *sub = json_string_value(json_object_get(g, "sub"));
    const char *client = json_string_value(json_object_get(g, "client_id"));
    if (sub == NULL || client == NULL) {
        json_decref(g);
        job_end(j, OAUTH_NOT_FOUND);
        return;
    }
    j->v.subject = xstrdup(sub);
    j->v.client_id = xstrdup(client);
    const char *scope = json_string_value(json_object_get(g, "scope"));
    const char *resource = json_string_value(json_object_get(g, "resource"));
    j->v.scope = xstrdup(scope ? scope : "");
    j->v.resource = resource ? xstrdup(resource) : NULL;
    j->v.created = (uint64_t)json_integer_value(json_object_get(g, "created"));
    json_decref(g);
    oauth_client_lookup(j->srv, j->v.client_id, NULL, on_client, j);
}

static void on_refused(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job_end(arg, OAUTH_STORE_DOWN);
}

void oauth_grant_view_load(struct oauth_server *srv, const char *grant_id, oauth_grant_view_fn cb,
                           void *arg)
{
    struct view_job *j = xcalloc(1, sizeof(*j));
    j->srv = srv;
    j->cb = cb;
    j->arg = arg;
    j->v.grant_id = xstrdup(grant_id);
    char key[128];
    snprintf(key, sizeof(key), KEY_GRANT "%s", grant_id);
    if (store_get(srv->store, key, on_grant, j) < 0)
        xevent_defer(srv->base, on_refused, j); /* the callback never runs inside the call */
}
