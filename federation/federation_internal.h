/*
 * federation_internal.h -- shared by the files of federation/ only: the
 * federation loop's struct, the DNS thread and the functions the keyring
 * uses from the client.  Everything here runs on the federation loop
 * thread unless it says otherwise.
 */
#ifndef AX_FEDERATION_INTERNAL_H
#define AX_FEDERATION_INTERNAL_H

#include "federation/federation.h"
#include "common/strmap.h"
#include "server/http_internal.h"

#include <h2o.h>
#include <openssl/ssl.h>
#include <stdatomic.h>

/* ---- dns.c -- SRV lookups on the DNS thread ---- */

#define AX_DNS_MAX_RECORDS 32

typedef struct st_ax_dns_t ax_dns_t;

/** One SRV lookup: set 'name', 'super.done' and 'super.port'; 'records' (heap, n of them) is filled on success. */
typedef struct st_ax_dns_query_t {
    ax_task_t super;
    char name[300];
    ax_srv_record_t *records;
    size_t n;
    /* private */
    ax_dns_t *_dns;
    struct st_ax_dns_query_t *_next_in;
} ax_dns_query_t;

/** Starts the DNS thread. */
ax_dns_t *ax_dns_new(void);
/** Queues an SRV lookup (thread-safe); it completes with 0, AX_ENOTFOUND, AX_EIO or AX_ESHUTDOWN. */
void ax_dns_srv(ax_dns_t *dns, ax_dns_query_t *q);
/** Makes every lookup in progress complete with AX_ESHUTDOWN (thread-safe). */
void ax_dns_cancel_all(ax_dns_t *dns);
/** Stops and joins the thread; lookups still queued complete with AX_ESHUTDOWN first. */
void ax_dns_free(ax_dns_t *dns);

/* ---- client.c -- the loop ---- */

typedef struct st_fed_call_t fed_call_t;
typedef struct st_key_fetch_t key_fetch_t;
typedef struct st_ax_sender_t ax_sender_t;

struct st_ax_fed_t {
    const ax_config_t *cfg;
    const char *server_name;
    const ax_signing_key_t *key;
    ax_db_t *db;
    ax_writer_t *writer;

    pthread_t tid;
    pthread_mutex_t ready_mutex; /* start-up: the loop thread made its loop and receivers */
    pthread_cond_t ready_cond;
    bool ready;
    h2o_evloop_t *loop;
    h2o_multithread_queue_t *queue;
    ax_hport_t inport; /* tasks submitted from other threads */
    ax_hport_t port;   /* completions of the loop's own work: writes, DNS, internal requests */
    h2o_multithread_receiver_t getaddr_recv;
    h2o_multithread_receiver_t control;
    h2o_multithread_message_t shutdown_msg, exit_msg;
    _Atomic bool shutting_down;  /* ax_fed_shutdown was called */
    _Atomic bool exit_requested; /* ax_fed_free is waiting */
    bool refusing;               /* loop: the shutdown reached the loop */
    bool exit_when_idle;         /* loop: exit once nothing is in progress */

    SSL_CTX *ssl_ctx;
    h2o_timeout_t io_timeout;
    h2o_http1client_ctx_t hctx;
    h2o_timeout_t tick_timeout; /* one second: request deadlines */
    h2o_timeout_entry_t tick_entry;

    ax_resolver_t *resolver;
    ax_dns_t *dns;
    ax_strmap_t pools;  /* "address|port|tls name" -> h2o_socketpool_t */
    fed_call_t *calls;  /* calls in progress (doubly linked) */
    size_t ncalls;      /* calls allocated, including those only waiting for a callback */
    size_t outstanding; /* writer jobs and DNS lookups not back yet */
    uint64_t pruned_ms; /* last time idle pools and stale caches were dropped */

    /* keyring state (keyring.c) */
    ax_strmap_t fetches; /* server name (+ "\x01" for direct-only) -> key_fetch_t in progress */
    ax_strmap_t misses;  /* server name -> uint64_t: when a fetch last ended without a wanted key */

    /* the transaction sender (sender.c) */
    ax_sender_t *sender;

    /* counters read by ax_fed_stats (relaxed atomics) */
    _Atomic uint64_t results[AX_FED_RESULT__COUNT];
    _Atomic uint64_t key_fetches_ok, key_fetches_failed;
    _Atomic uint64_t in_flight;
    _Atomic uint64_t sender_txns_ok, sender_txns_failed, sender_txns_rejected;
    _Atomic uint64_t sender_pdus, sender_edus, sender_pdu_errors, sender_dropped, sender_catchup_skipped;
    _Atomic uint64_t sender_in_flight;
};

/** Starts 'fr' on the loop (loop thread only); it completes through its own port like any request. */
void ax_fed_start_request(ax_fed_t *fed, ax_fed_request_t *fr);

/** Completes 'task' through its port, from the loop. */
void ax_fed_complete(ax_task_t *task, int result);

/** Runs 'apply(txn, data)' on the writer and then 'free_data(data)' on the loop; the loop waits for it at exit. */
void ax_fed_write(ax_fed_t *fed, ax_apply_fn apply, void *data, void (*free_data)(void *),
                  void (*done)(ax_fed_t *fed, int result, void *data));

/* ---- sender.c -- the transaction sender ---- */

/** Loads the queues left by the last run and starts sending (loop thread, before anything is posted to it). */
void ax_sender_start(ax_fed_t *fed);
/** Once a second: destinations whose backoff ran out, or that an operator reset, are tried again. */
void ax_sender_tick(ax_fed_t *fed, uint64_t now);
/** Frees the sender at exit (nothing of it may be in progress). */
void ax_sender_dispose(ax_fed_t *fed);

/** One transaction's worth of a destination's queue (ax_sender_batch_build). */
typedef struct st_ax_sender_batch_t {
    json_t *pdus;   /* PDUs as sent (without "unsigned"), a new reference */
    json_t *edus;   /* EDUs, m.receipt ones merged where they fit, a new reference */
    uint64_t upto;  /* the last queue item looked at ('after' when none) */
    size_t items;   /* queue items covered */
    size_t skipped; /* ... of which could not be sent (event gone, not canonical JSON) */
} ax_sender_batch_t;

/**
 * Builds the next transaction of 'destination' from its queue items after
 * seq 'after' and at most 'limit': a contiguous run in commit order that
 * stops before the 51st PDU or the 101st EDU (spec limits).  Read txn.
 * Dispose of 'out' with ax_sender_batch_dispose, also on failure.
 */
int ax_sender_batch_build(ax_txn_t *txn, const char *destination, uint64_t after, uint64_t limit,
                          ax_sender_batch_t *out);
void ax_sender_batch_dispose(ax_sender_batch_t *b);

/** One latest event put in place of a room's backlog. */
typedef struct st_ax_sender_catchup_put_t {
    uint64_t seq;
    char room_id[256];
    char event_id[256];
} ax_sender_catchup_put_t;

/** What catching a destination up changes in its queue (ax_sender_catchup_plan). */
typedef struct st_ax_sender_catchup_t {
    uint64_t *del; /* queue items to delete */
    size_t ndel;
    ax_sender_catchup_put_t *put; /* PDUs to queue in their place (at seqs among 'del') */
    size_t nput;
    size_t rooms; /* rooms cut short */
} ax_sender_catchup_t;

/**
 * The catch-up rule: among the first 10000 queue items after 'after', every
 * room with more than 50 PDUs waiting is replaced by its forward
 * extremities that are newer than its oldest waiting event and not the
 * destination's own (or, when none is, by its last waiting event), placed
 * at the room's last seqs.  Read txn.  Dispose of 'out' with
 * ax_sender_catchup_dispose.
 */
int ax_sender_catchup_plan(ax_txn_t *txn, const char *destination, uint64_t after, ax_sender_catchup_t *out);
void ax_sender_catchup_dispose(ax_sender_catchup_t *c);

/* ---- keyring.c ---- */

/**
 * Starts lookup 'lk' on the loop (loop thread only).  With 'direct_only'
 * no notary is asked (looking up a notary's own keys: no cycles).
 */
void ax_keyring_start(ax_fed_t *fed, ax_key_lookup_t *lk, bool direct_only);
/** Drops what the keyring remembers about recent misses once it no longer matters. */
void ax_keyring_prune(ax_fed_t *fed, uint64_t now);
/** Frees the keyring's memory at exit (no fetch may be in progress). */
void ax_keyring_dispose(ax_fed_t *fed);

#endif
