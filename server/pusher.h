/*
 * pusher.h -- the push sender: drains the durable push queue (storage
 * pospusher_push) to push gateways over the outbound client (spec: Push
 * Gateway API, POST /_matrix/push/v1/notify).
 *
 * Per pusher the queue is sent in order, one request at a time; a gateway
 * that is down is retried with capped exponential backoff and caught up
 * when it returns; an entry leaves the queue only once the gateway took it
 * (or it is older than a day, or the gateway refused it for good).  A
 * pushkey the gateway lists as "rejected" deletes its pusher.
 */
#ifndef AX_SERVER_PUSHER_H
#define AX_SERVER_PUSHER_H

#include "server/outbound.h"
#include "server/server.h"

typedef struct st_ax_pusher_t ax_pusher_t;

/** Creates the sender for 'srv' (its db and writer) running on 'ob' (both borrowed). */
ax_pusher_t *ax_pusher_new(ax_server_t *srv, ax_outbound_t *ob);

/** Starts sending: reads the whole queue (what a previous run left) and then what arrives. */
void ax_pusher_start(ax_pusher_t *p);

/** Any thread: new entries were committed to the queue.  Cheap; wakes are coalesced. */
void ax_pusher_wake(ax_pusher_t *p);

/** Frees the sender; call after ax_outbound_stop().  NULL is allowed. */
void ax_pusher_free(ax_pusher_t *p);

/** Counters for /metrics (any thread). */
typedef struct st_ax_pusher_stats_t {
    uint64_t sent;     /* notifications a gateway accepted */
    uint64_t failed;   /* attempts that will be retried */
    uint64_t dropped;  /* entries given up on (refused, too old, pusher gone) */
    uint64_t rejected; /* pushers deleted because their gateway rejected the pushkey */
    uint64_t queued;   /* entries waiting now */
} ax_pusher_stats_t;

void ax_pusher_stats(ax_pusher_t *p, ax_pusher_stats_t *out);

#endif
