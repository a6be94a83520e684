/*
 * principal: who is calling, as established by the bearer check (DESIGN §6).
 * The only thing oauth/ hands to proxy/; both include this header and never
 * each other's. Everything in it is owned by the principal.
 */
#ifndef MCPGATE_COMMON_PRINCIPAL_H
#define MCPGATE_COMMON_PRINCIPAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct mg_string_list {
    char **items; /* owned, each owned */
    size_t len;
};

struct mg_principal {
    char *subject;  /* the IdP's sub claim; never NULL */
    char *username; /* may be NULL */
    char *email;    /* may be NULL */
    char *name;     /* may be NULL */
    struct mg_string_list roles;
    struct mg_string_list groups;
    struct mg_string_list scopes; /* granted to this token */
    char *client_id;
    char *grant_id;
    char *resource;         /* the route URL the token is bound to, or NULL for any */
    char *idp_access_token; /* the user's IdP token, only for routes that forward it (secret) */
    uint64_t expires_at;    /* Unix seconds */
    /* Holders of a heap principal (mg_principal_new); 0 for one that is not
     * (a principal on the stack or in static storage, borrowed only). One
     * event loop, no threads: a plain counter. */
    unsigned refs;
};

/*
 * The one hand-off from authentication (oauth/, or the anonymous principal
 * of an `auth: none` route) to the proxy (proxy/): continue REQ as P. P is
 * borrowed for the call: mg_principal_ref what you keep.
 */
struct http_request;
typedef void (*mg_authed_fn)(struct http_request *req, const struct mg_principal *p, void *arg);

/*
 * The store channel on which oauth/ announces that a grant ended (revoked
 * by the person, the client, an operator, a refresh-token replay, the IdP):
 * the message is the grant id. proxy/ subscribes and ends that grant's
 * sessions, streams and children on every instance.
 */
#define MG_CHANNEL_GRANT_ENDED "grant-ended"

/*
 * The session registry, written by proxy/ and read by the operator CLI and
 * the /account page (oauth/): "session:<id>" holds a JSON record (owner,
 * route, client, grant, instance, pid, started, last, streams), refreshed at
 * most every 10 s while the session is used; "sessions:all" and
 * "grantsessions:<grant>" are sets of session ids. A message on
 * "session-end" (a session id) ends that session on whichever instance has it.
 */
#define MG_KEY_SESSION "session:%s"
#define MG_KEY_SESSIONS_ALL "sessions:all"
#define MG_KEY_GRANT_SESSIONS "grantsessions:%s"
#define MG_CHANNEL_SESSION_END "session-end"

/*
 * A principal is immutable once handed on (to mg_authed_fn, a cache, a
 * session), so holders share one copy rather than each duplicating a dozen
 * strings per request. mg_principal_new: an empty heap principal with one
 * holder, to fill in before it is handed on. mg_principal_ref: a holder more
 * of P (a heap principal), or a heap copy of P when P is not on the heap
 * (refs 0). mg_principal_free: a holder less; the last one frees it (NULL is
 * fine).
 */
struct mg_principal *mg_principal_new(void);
struct mg_principal *mg_principal_ref(const struct mg_principal *p);
void mg_principal_free(struct mg_principal *p);

bool mg_string_list_contains(const struct mg_string_list *l, const char *s);
void mg_string_list_add(struct mg_string_list *l, const char *s); /* copies */
/* Splits on spaces (scope strings); empty items are skipped. */
void mg_string_list_split(struct mg_string_list *l, const char *text);
/* Joined with SEP; owned. */
char *mg_string_list_join(const struct mg_string_list *l, const char *sep);
void mg_string_list_clear(struct mg_string_list *l);
void mg_string_list_copy(struct mg_string_list *dst, const struct mg_string_list *src);
/* A JSON array of the strings (new reference). */
json_t *mg_string_list_to_json(const struct mg_string_list *l);
/* Appends the string members of the JSON array A (other members are skipped). */
void mg_string_list_add_json(struct mg_string_list *l, const json_t *a);

#endif
