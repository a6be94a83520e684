/* principal: the caller's identity and small string-list helpers. */
#include "common/principal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/panic.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

bool mg_string_list_contains(const struct mg_string_list *l, const char *s)
{
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

void mg_string_list_add(struct mg_string_list *l, const char *s)
{
    l->items = xrealloc(l->items, (l->len + 1) * sizeof(*l->items));
    l->items[l->len++] = xstrdup(s);
}

void mg_string_list_split(struct mg_string_list *l, const char *text)
{
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n > 0) {
            char *item = xstrndup(p, n);
            if (!mg_string_list_contains(l, item))
                mg_string_list_add(l, item);
            free(item);
        }
        p += n;
    }
}

char *mg_string_list_join(const struct mg_string_list *l, const char *sep)
{
    struct strbuf sb = STRBUF_INIT;
    for (size_t i = 0; i < l->len; i++) {
        if (i)
            strbuf_puts(&sb, sep);
        strbuf_puts(&sb, l->items[i]);
    }
    return strbuf_detach(&sb, NULL);
}

void mg_string_list_clear(struct mg_string_list *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

void mg_string_list_copy(struct mg_string_list *dst, const struct mg_string_list *src)
{
    for (size_t i = 0; i < src->len; i++)
        mg_string_list_add(dst, src->items[i]);
}

json_t *mg_string_list_to_json(const struct mg_string_list *l)
{
    json_t *a = json_array();
    for (size_t i = 0; i < l->len; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
}

void mg_string_list_add_json(struct mg_string_list *l, const json_t *a)
{
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s)
            mg_string_list_add(l, s);
    }
}

struct mg_principal *mg_principal_new(void)
{
    struct mg_principal *p = xcalloc(1, sizeof(*p));
    p->refs = 1;
    return p;
}

struct mg_principal *mg_principal_ref(const struct mg_principal *p)
{
    if (p->refs > 0) {
        /* The count is bookkeeping, not content: holders see the same principal. */
        struct mg_principal *shared = (struct mg_principal *)p;
        shared->refs++;
        return shared;
    }
    struct mg_principal *d = mg_principal_new();
    d->subject = xstrdup(p->subject);
    d->username = dup_or_null(p->username);
    d->email = dup_or_null(p->email);
    d->name = dup_or_null(p->name);
    mg_string_list_copy(&d->roles, &p->roles);
    mg_string_list_copy(&d->groups, &p->groups);
    mg_string_list_copy(&d->scopes, &p->scopes);
    d->client_id = dup_or_null(p->client_id);
    d->grant_id = dup_or_null(p->grant_id);
    d->resource = dup_or_null(p->resource);
    d->idp_access_token = dup_or_null(p->idp_access_token);
    d->expires_at = p->expires_at;
    return d;
}

void mg_principal_free(struct mg_principal *p)
{
    if (p == NULL)
        return;
    GW_ASSERT(p->refs > 0); /* only heap principals are freed */
    if (--p->refs > 0)
        return;
    free(p->subject);
    free(p->username);
    free(p->email);
    free(p->name);
    mg_string_list_clear(&p->roles);
    mg_string_list_clear(&p->groups);
    mg_string_list_clear(&p->scopes);
    free(p->client_id);
    free(p->grant_id);
    free(p->resource);
    if (p->idp_access_token) {
        OPENSSL_cleanse(p->idp_access_token, strlen(p->idp_access_token));
        free(p->idp_access_token);
    }
    free(p);
}
