/*
 * writer.c -- the single writer thread with group commit (DESIGN.md
 * "Threads and the event loop").
 *
 * The writer sleeps until jobs are queued, takes everything queued, applies
 * the jobs in order inside one LMDB write transaction, commits once (one
 * fsync for the whole batch) and posts each job back to its port.  While it
 * commits, new jobs queue up and form the next batch, so the batch grows
 * with the load and the fsync cost is shared.
 *
 * A failing job must not poison the batch.  Jobs that fail without writing
 * are simply marked failed.  When a job fails after writing (the write
 * helpers mark the transaction dirty), the transaction is aborted and the
 * batch re-run without that job; this keeps the common path free of nested
 * transactions, which cost LMDB megabytes of bookkeeping each.
 */
#include "storage/storage_internal.h"
#include "common/strmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Parsed events the writer keeps between batches (ax_db_event_get_shared): the
 * few state events every send in a room reads.  Dropped wholesale past this. */
#define KEPT_EVENTS_MAX 4096

const double ax_writer_commit_bounds[AX_WRITER_COMMIT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                  0.05,   0.1,   0.25,   0.5,   1.0,  1e300};

struct st_ax_writer_t {
    ax_db_t *db;
    pthread_t thread;
    bool started;

    pthread_mutex_t mutex;
    pthread_cond_t cond;
    ax_task_t *head, **tail; /* queued jobs, FIFO, linked by super._next */
    bool stopping;

    _Atomic uint64_t stream_pos; /* last committed position */
    uint64_t aborts;             /* write txns aborted so far (writer thread only): ax_txn_epoch */
    void *state;                 /* attached by the layer above: ax_txn_writer_state */
    ax_strmap_t events;          /* event_id -> parsed json_t, for ax_db_event_get_shared */
    uint64_t events_epoch;       /* 'aborts' when 'events' was last known to match the database */
    void (*hook)(void *arg, const ax_commit_info_t *info);
    void *hook_arg;
    ax_writer_task_t tasks[AX_WRITER_TASKS_MAX]; /* ax_writer_add_task */
    size_t ntasks, next_task;                    /* next_task: the first one asked, in turn */
    unsigned idle_ms;                            /* the least of the tasks' */

    /* statistics; written by the writer thread only */
    _Atomic uint64_t batches, jobs, failed_jobs, replays, commit_errors, queue_depth;
    _Atomic uint64_t batch_hist[AX_WRITER_BATCH_BUCKETS];
    _Atomic uint64_t commit_hist[AX_WRITER_COMMIT_BUCKETS];
    _Atomic uint64_t commit_ns_sum;
};

ax_writer_t *ax_writer_new(ax_db_t *db)
{
    ax_writer_t *w = ax_calloc(1, sizeof(*w));
    w->db = db;
    pthread_mutex_init(&w->mutex, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the tasks' idle wait */
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->tail = &w->head;
    return w;
}

void ax_writer_add_task(ax_writer_t *w, const ax_writer_task_t *task)
{
    if (w->ntasks == AX_WRITER_TASKS_MAX)
        ax_fatal("ax_writer_add_task: more than %d tasks", AX_WRITER_TASKS_MAX);
    w->tasks[w->ntasks++] = *task;
    if (w->ntasks == 1 || task->idle_ms < w->idle_ms)
        w->idle_ms = task->idle_ms;
}

void ax_writer_set_commit_hook(ax_writer_t *w, void (*hook)(void *arg, const ax_commit_info_t *info), void *arg)
{
    w->hook = hook;
    w->hook_arg = arg;
}

uint64_t ax_txn_next_stream_pos(ax_txn_t *txn)
{
    return ++*txn->pos;
}

uint64_t ax_txn_epoch(ax_txn_t *txn)
{
    return txn->epoch;
}

void ax_writer_set_state(ax_writer_t *w, void *state)
{
    w->state = state;
}

void *ax_txn_writer_state(ax_txn_t *txn)
{
    return txn->write ? txn->state : NULL;
}

void ax_txn_notify(ax_txn_t *txn, const char *key)
{
    if (txn->notify != NULL && ax_strmap_get(txn->notify, key) == NULL)
        ax_strmap_put(txn->notify, key, (void *)1);
}

typedef struct st_keys_t {
    const char **keys;
    size_t n;
} keys_t;

static void collect_key(void *arg, const char *key, void *value)
{
    (void)value;
    keys_t *k = arg;
    k->keys[k->n++] = key;
}

uint64_t ax_writer_stream_pos(ax_writer_t *w)
{
    return atomic_load(&w->stream_pos);
}

static void drop_event(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    json_decref(value);
}

static void drop_events(ax_writer_t *w)
{
    ax_strmap_foreach(&w->events, drop_event, NULL);
    ax_strmap_clear(&w->events);
    w->events_epoch = w->aborts;
}

static void fail_all(ax_wjob_t **jobs, size_t n, int rc)
{
    for (size_t i = 0; i < n; ++i)
        if (jobs[i]->super.result == 0)
            jobs[i]->super.result = rc;
}

/* Applies and commits one batch; sets every job's result. */
static void run_batch(ax_writer_t *w, ax_wjob_t **jobs, size_t n)
{
    uint64_t start = ax_mono_ns();
    uint64_t committed = atomic_load(&w->stream_pos);
    bool *failed = ax_calloc(n, sizeof(*failed));
    ax_strmap_t notify = AX_STRMAP_INIT;
    ax_txn_t t = {.db = w->db, .write = true, .notify = &notify, .state = w->state, .events = &w->events};
    uint64_t pos;
    int rc;

attempt:
    /* what an aborted transaction read or wrote may never have happened */
    if (w->events_epoch != w->aborts || w->events.size > KEPT_EVENTS_MAX)
        drop_events(w);
    t.epoch = w->aborts;
    ax_strmap_clear(&notify);
    if ((rc = mdb_txn_begin(w->db->env, NULL, 0, &t.txn)) != 0) {
        fail_all(jobs, n, ax_db_err(w->db, rc));
        goto out;
    }
    /* `axon admin` writes from another process with a writer of its own: continue after
     * the positions it handed out (LMDB serialises the two write transactions) */
    uint64_t stored;
    if (ax_db_meta_get_u64(&t, "stream_pos", &stored) == 0 && stored > committed) {
        committed = stored;
        drop_events(w); /* it may have redacted an event kept here */
    }
    pos = committed;
    t.pos = &pos;
    for (size_t i = 0; i < n; ++i) {
        if (failed[i])
            continue;
        t.dirty = false;
        jobs[i]->super.result = 0;
        int r = jobs[i]->apply(jobs[i], &t);
        if (r == 0)
            continue;
        failed[i] = true;
        jobs[i]->super.result = r;
        atomic_fetch_add(&w->failed_jobs, 1);
        if (t.dirty) {
            /* its partial writes (and news) are in the txn: start over without it */
            mdb_txn_abort(t.txn);
            w->aborts++;
            atomic_fetch_add(&w->replays, 1);
            goto attempt;
        }
    }
    if (pos != committed && (rc = ax_db_meta_put_u64(&t, "stream_pos", pos)) != 0) {
        mdb_txn_abort(t.txn);
        w->aborts++;
        atomic_fetch_add(&w->commit_errors, 1);
        fail_all(jobs, n, rc);
        goto out;
    }
    if ((rc = mdb_txn_commit(t.txn)) != 0) {
        w->aborts++;
        atomic_fetch_add(&w->commit_errors, 1);
        fail_all(jobs, n, ax_db_err(w->db, rc));
        goto out;
    }
    atomic_store(&w->stream_pos, pos);
    if (w->hook != NULL) {
        keys_t k = {ax_malloc((notify.size + 1) * sizeof(char *)), 0};
        ax_strmap_foreach(&notify, collect_key, &k);
        ax_commit_info_t info = {.stream_pos = pos, .jobs = n, .keys = k.keys, .nkeys = k.n};
        w->hook(w->hook_arg, &info);
        free(k.keys);
    }

out:
    ax_strmap_dispose(&notify);
    free(failed);
    uint64_t ns = ax_mono_ns() - start;
    double secs = (double)ns / 1e9;
    for (size_t b = 0; b < AX_WRITER_COMMIT_BUCKETS; ++b)
        if (secs <= ax_writer_commit_bounds[b])
            atomic_fetch_add(&w->commit_hist[b], 1);
    for (size_t b = 0; b < AX_WRITER_BATCH_BUCKETS; ++b)
        if (b == AX_WRITER_BATCH_BUCKETS - 1 || n <= ((size_t)1 << b))
            atomic_fetch_add(&w->batch_hist[b], 1);
    atomic_fetch_add(&w->commit_ns_sum, ns);
    atomic_fetch_add(&w->batches, 1);
    atomic_fetch_add(&w->jobs, n);
}

/* One step of a task in a transaction of its own (called without the mutex). */
static void run_task(ax_writer_t *w, const ax_writer_task_t *task)
{
    ax_txn_t t = {.db = w->db, .write = true, .state = w->state, .epoch = w->aborts};
    bool ok = false;
    int rc = mdb_txn_begin(w->db->env, NULL, 0, &t.txn);
    if (rc != 0) {
        ax_db_err(w->db, rc);
    } else if (task->step(task->arg, &t) != 0) {
        mdb_txn_abort(t.txn);
        w->aborts++;
    } else if ((rc = mdb_txn_commit(t.txn)) != 0) {
        ax_db_err(w->db, rc);
        w->aborts++;
        atomic_fetch_add(&w->commit_errors, 1);
    } else {
        ok = true;
    }
    task->done(task->arg, ok);
}

/* Under the mutex: a task that is due ('idle': nothing queued for idle_ms), asking them in turn, or NULL. */
static const ax_writer_task_t *task_due(ax_writer_t *w, bool idle)
{
    if (w->stopping)
        return NULL;
    uint64_t pos = atomic_load(&w->stream_pos);
    for (size_t i = 0; i < w->ntasks; ++i) {
        const ax_writer_task_t *task = &w->tasks[(w->next_task + i) % w->ntasks];
        if (task->due(task->arg, pos, idle)) {
            w->next_task = (w->next_task + i + 1) % w->ntasks;
            return task;
        }
    }
    return NULL;
}

/* Under the mutex, with nothing queued: sleeps until a job comes, or for idle_ms when a task may want to
 * run then.  Returns true when it slept that long without a job. */
static bool wait_for_jobs(ax_writer_t *w)
{
    if (w->ntasks == 0) {
        pthread_cond_wait(&w->cond, &w->mutex);
        return false;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)w->idle_ms * 1000000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return pthread_cond_timedwait(&w->cond, &w->mutex, &ts) == ETIMEDOUT && w->head == NULL;
}

static void *writer_main(void *arg)
{
    ax_writer_t *w = arg;
    size_t cap = 64;
    ax_wjob_t **jobs = ax_malloc(cap * sizeof(*jobs));
    for (;;) {
        pthread_mutex_lock(&w->mutex);
        /* a due task goes first, so that a steady stream of batches cannot starve it */
        bool idle = false;
        const ax_writer_task_t *run = task_due(w, false);
        while (run == NULL && w->head == NULL && !w->stopping) {
            if (idle) {
                pthread_cond_wait(&w->cond, &w->mutex); /* the tasks had nothing to do: sleep until a job */
                idle = false;
            } else if ((idle = wait_for_jobs(w))) {
                run = task_due(w, true);
            }
        }
        if (run != NULL) {
            pthread_mutex_unlock(&w->mutex);
            run_task(w, run);
            continue;
        }
        ax_task_t *chain = w->head;
        w->head = NULL;
        w->tail = &w->head;
        atomic_store(&w->queue_depth, 0);
        pthread_mutex_unlock(&w->mutex);
        if (chain == NULL)
            break; /* stopping and drained */

        size_t n = 0;
        for (ax_task_t *t = chain; t != NULL; t = t->_next) {
            if (n == cap)
                jobs = ax_realloc(jobs, (cap *= 2) * sizeof(*jobs));
            jobs[n++] = (ax_wjob_t *)t;
        }
        run_batch(w, jobs, n);
        ax_port_post_chain(chain);
    }
    free(jobs);
    return NULL;
}

int ax_writer_start(ax_writer_t *w)
{
    ax_txn_t *t;
    uint64_t pos = 0;
    if (ax_db_read_begin(w->db, &t) != 0)
        return AX_ERR;
    int rc = ax_db_meta_get_u64(t, "stream_pos", &pos);
    ax_db_read_end(t);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return AX_ERR;
    atomic_store(&w->stream_pos, pos);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0)
        return AX_ERR;
    w->started = true;
    return 0;
}

void ax_writer_submit(ax_writer_t *w, ax_wjob_t *job)
{
    job->super._next = NULL;
    job->super.result = 0;
    pthread_mutex_lock(&w->mutex);
    if (w->stopping || !w->started) {
        pthread_mutex_unlock(&w->mutex);
        job->super.result = AX_ESHUTDOWN;
        job->super.port->post(job->super.port, &job->super);
        return;
    }
    bool was_empty = w->head == NULL;
    *w->tail = &job->super;
    w->tail = &job->super._next;
    atomic_fetch_add(&w->queue_depth, 1);
    if (was_empty)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
}

int ax_writer_run(ax_writer_t *w, ax_wjob_t *job)
{
    ax_syncport_t *sp = ax_syncport_new();
    job->super.port = ax_syncport_port(sp);
    ax_writer_submit(w, job);
    int rc = ax_syncport_wait(sp, &job->super);
    ax_syncport_free(sp);
    return rc;
}

void ax_writer_stop(ax_writer_t *w)
{
    pthread_mutex_lock(&w->mutex);
    w->stopping = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
    if (w->started) {
        pthread_join(w->thread, NULL);
        w->started = false;
    }
}

void ax_writer_free(ax_writer_t *w)
{
    if (w == NULL)
        return;
    drop_events(w);
    ax_strmap_dispose(&w->events);
    pthread_mutex_destroy(&w->mutex);
    pthread_cond_destroy(&w->cond);
    free(w);
}

void ax_writer_stats(ax_writer_t *w, ax_writer_stats_t *out)
{
    out->batches = atomic_load(&w->batches);
    out->jobs = atomic_load(&w->jobs);
    out->failed_jobs = atomic_load(&w->failed_jobs);
    out->replays = atomic_load(&w->replays);
    out->commit_errors = atomic_load(&w->commit_errors);
    out->queue_depth = atomic_load(&w->queue_depth);
    for (size_t i = 0; i < AX_WRITER_BATCH_BUCKETS; ++i)
        out->batch_size_buckets[i] = atomic_load(&w->batch_hist[i]);
    for (size_t i = 0; i < AX_WRITER_COMMIT_BUCKETS; ++i)
        out->commit_buckets[i] = atomic_load(&w->commit_hist[i]);
    out->commit_seconds_sum = (double)atomic_load(&w->commit_ns_sum) / 1e9;
}
