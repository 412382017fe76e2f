/*
 * workers.h -- the worker pool for CPU-heavy or blocking work.
 */
#ifndef AX_WORKERS_H
#define AX_WORKERS_H

#include "common/common.h"

typedef struct st_ax_workers_t ax_workers_t;
typedef struct st_ax_work_t ax_work_t;

/**
 * A unit of work.  Embed it first in your own heap struct, set 'run',
 * 'super.done' and 'super.port'.  'run' executes on a worker thread; then
 * 'super.done' runs on the port's thread.
 */
struct st_ax_work_t {
    ax_task_t super;
    void (*run)(ax_work_t *w);
};

/** Starts a pool of 'nthreads' threads. */
ax_workers_t *ax_workers_new(unsigned nthreads);

/** Queues 'w' (thread-safe).  After ax_workers_free began, 'w' completes with AX_ESHUTDOWN. */
void ax_workers_submit(ax_workers_t *wp, ax_work_t *w);

/** Runs what is queued, stops and joins the threads, frees the pool.  NULL is allowed. */
void ax_workers_free(ax_workers_t *wp);

#endif
