/*
 * cluster: several mcpgate instances on one store, with no sticky load
 * balancer (DESIGN §9). A STDIO child, and the 2024-11-05 bridge to an
 * HTTP upstream, live in the instance that created the session; everything
 * else is in the store. So:
 *
 *  - each instance has a random tag and advertises its internal address in
 *    the store (`instance:<tag>`, renewed every cluster.heartbeat, living
 *    three heartbeats);
 *  - a session id names its owner: "<tag>.<43 random base64url chars>";
 *  - an instance that receives a request for a session another instance
 *    owns forwards it, as it is, to the owner's internal listener, and
 *    streams the answer back both ways (JSON and SSE, GET streams with
 *    Last-Event-ID, DELETE, the legacy /messages POST); the owner checks
 *    the bearer itself, as for any request;
 *  - the hop is authenticated: HMAC-SHA256 under a key derived from the
 *    shared secret (HKDF) over the time, the sender and the receiver, a
 *    sequence number, the method, the target, the client's address, the
 *    Authorization, Mcp-Session-Id, Last-Event-ID and MCP-Protocol-Version
 *    headers and the body's digest; the owner refuses a hop that is older
 *    than 30 s, does not verify, or was seen before (each sender's numbers
 *    are accepted once, in a window of REPLAY_WINDOW_BITS, so a captured
 *    hop cannot be replayed), and never forwards again;
 *  - an owner that is gone (no record, or nothing answers its address) makes
 *    the session answer 404, so the client initializes again.
 * Without cluster.listen there is no tag, session ids are as before and
 * nothing is forwarded.
 */
#ifndef MCPGATE_PROXY_CLUSTER_H
#define MCPGATE_PROXY_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"

struct event_base;
struct http_request;
struct httpc;
struct store;
struct cluster;

#define CLUSTER_TAG_LEN 8 /* base64url characters: 48 random bits */

/*
 * This instance's membership. CFG is copied; SECRET (borrowed for the call)
 * is the key material. Starts advertising at once. Returns NULL with
 * *ERR_OUT (owned) when the configuration cannot work.
 */
struct cluster *cluster_new(struct event_base *base, struct store *store, struct httpc *httpc,
                            const struct gw_cluster_config *cfg, const unsigned char *secret,
                            size_t secret_len, char **err_out);
/* Withdraws the record (best effort) and frees. Accepts NULL. */
void cluster_free(struct cluster *c);
/* Draining: stop advertising, so new sessions are not sent here by peers. */
void cluster_withdraw(struct cluster *c);

/* This instance's tag (CLUSTER_TAG_LEN chars), or NULL without a cluster. */
const char *cluster_tag(const struct cluster *c);

/*
 * Another instance's tag when ID names one (copied to TAG, CLUSTER_TAG_LEN +
 * 1 bytes): the request must be forwarded. False for this instance's ids,
 * ids of no cluster shape, or without a cluster.
 */
bool cluster_id_is_foreign(const struct cluster *c, const char *id, char *tag);

/*
 * Forwards REQ, which this function finishes (now or later), to the owner
 * of TAG, and streams the answer back. 404 (a JSON-RPC error) when the owner
 * is gone.
 */
void cluster_forward(struct cluster *c, struct http_request *req, const char *tag);

/*
 * On the internal listener: NULL when REQ carries a valid hop from a peer
 * (the original client's address then stands in for the peer's), else why
 * not (the caller answers 403).
 */
const char *cluster_verify_hop(struct cluster *c, struct http_request *req);

struct cluster_stats {
    unsigned long long forwarded;  /* requests sent to an owner */
    unsigned long long owner_gone; /* of those, answered 404: no owner */
    unsigned long long received;   /* hops received and verified */
    unsigned long long refused;    /* hops refused */
};
void cluster_get_stats(const struct cluster *c, struct cluster_stats *out);

#endif
