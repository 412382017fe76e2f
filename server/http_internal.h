/*
 * http_internal.h -- h2o-facing structs shared by server/http.c and
 * server/metrics.c.  Handlers never need these: they see ax_req_t only.
 */
#ifndef AX_HTTP_INTERNAL_H
#define AX_HTTP_INTERNAL_H

#include "server/server.h"
#include "common/strmap.h"

#include <h2o.h>
#include <openssl/ssl.h>

/* A completion port backed by h2o's multithread queue (one per thread). */
typedef struct st_ax_hport_t {
    ax_port_t super;
    h2o_multithread_receiver_t receiver;
    h2o_multithread_message_t msg;
    pthread_mutex_t mutex;
    ax_task_t *head, **tail;
    bool msg_pending;
} ax_hport_t;

/** Makes 'hp' a port whose tasks finish on the loop of 'queue' (register before other threads post). */
void ax_hport_init(ax_hport_t *hp, h2o_multithread_queue_t *queue);
/** Unregisters 'hp'; tasks still queued run with their 'owner' cleared. */
void ax_hport_dispose(ax_hport_t *hp, h2o_multithread_queue_t *queue);

/* One configured listen address: a SO_REUSEPORT socket per thread. */
typedef struct st_ax_listener_spec_t {
    int *fds;
    bool tls;
    char name[64];
} ax_listener_spec_t;

typedef struct st_ax_listener_t {
    int fd;
    bool tls;
    h2o_socket_t *sock;
    ax_thread_t *thread;
} ax_listener_t;

typedef struct st_ax_conn_t {
    int fd;
    ax_thread_t *thread;
    struct st_ax_conn_t *next, **pprev;
} ax_conn_t;

struct st_ax_http_t {
    h2o_globalconf_t globalconf;
    SSL_CTX *ssl_ctx;
    ax_listener_spec_t *listeners;
    size_t nlisteners;
    bool fds_taken; /* the threads own (and close) the listener sockets */
    /* start-up: each HTTP thread builds its own loop, context and sockets (h2o keeps per-thread
     * allocators in thread-local storage), and ax_http_run waits until all have */
    pthread_mutex_t ready_mutex;
    pthread_cond_t ready_cond;
    unsigned ready;
};

typedef struct st_ax_handler_glue_t {
    h2o_handler_t super;
    ax_server_t *srv;
} ax_handler_glue_t;

typedef struct st_ax_errjson_ostream_t {
    h2o_ostream_t super;
    h2o_iovec_t body;
} ax_errjson_ostream_t;

/* The waiters of one key (the strmap's value; a stable address for key_pprev). */
typedef struct st_ax_wbucket_t {
    struct st_ax_waiter_t *head;
} ax_wbucket_t;

/* A parked long-poll: in its key's list and in the deadline-ordered list. */
typedef struct st_ax_waiter_t {
    ax_req_t *r;
    ax_thread_t *thread;
    char *key;
    uint64_t deadline_ms;
    ax_wake_fn wake;
    ax_wbucket_t *bucket;
    struct st_ax_waiter_t *key_next, **key_pprev;
    struct st_ax_waiter_t *dl_next, *dl_prev;
    struct st_ax_waiter_t *woken_next; /* on_notify: the list being woken */
    h2o_timeout_entry_t now_entry;     /* wake on the next loop turn */
    bool answer_now;                   /* now_entry: shutting down or no timeout, so answer (timed out) */
    bool parked;
} ax_waiter_t;

/* News for one thread: the keys of one commit. */
typedef struct st_ax_notify_msg_t {
    h2o_multithread_message_t super;
    size_t n;
    char *keys[];
} ax_notify_msg_t;

struct st_ax_thread_t {
    ax_server_t *srv;
    unsigned index;
    pthread_t tid;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_plain, accept_tls;
    ax_listener_t *listeners;
    size_t nlisteners;
    ax_hport_t port;
    h2o_multithread_receiver_t control;
    h2o_multithread_message_t control_msg;

    ax_conn_t *conns;
    size_t nconns;
    int64_t inflight;
    int64_t tasks_outstanding; /* writer jobs and worker tasks not yet come back */
    int64_t streams;           /* file replies still sending their body (ax_reply_file) */

    bool shutting_down, conns_closed, exit_loop, clean;
    uint64_t shutdown_deadline_ms;
    h2o_timeout_entry_t shutdown_entry;

    /* long-polls */
    ax_strmap_t waiters;            /* key -> first ax_waiter_t */
    ax_waiter_t *dl_head, *dl_tail; /* by deadline */
    _Atomic size_t nwaiters;        /* read by the writer to skip idle threads */
    h2o_multithread_receiver_t notify_recv;
    h2o_timeout_entry_t waiter_tick;
    h2o_timeout_entry_t tick_entry; /* thread 0: the server's one-second housekeeping */
    _Atomic bool notify_closed;     /* the thread is winding down: send no more news */
    _Atomic int notify_refs;        /* writer threads inside ax_http_notify for this thread */

    ax_route_metrics_t *metrics; /* ax_routes_count + 1 slots */
    ax_buf_t scratch;            /* reply serialization */

    char logbuf[16384];
    size_t loglen;
    h2o_timeout_t log_flush_timeout;
    h2o_timeout_entry_t log_flush_entry;
};

#endif
