/*
 * workers.c -- a small pool of threads for CPU-heavy or blocking work
 * (argon2id password hashing, thumbnails, bulk signature checks), so no
 * HTTP thread ever blocks (DESIGN.md "Threads").  Finished work goes back
 * through its task's port like a writer job.
 */
#include "common/workers.h"

#include <pthread.h>
#include <stdlib.h>

struct st_ax_workers_t {
    pthread_t *threads;
    unsigned nthreads;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    ax_task_t *head, **tail;
    bool stopping;
};

static void *worker_main(void *arg)
{
    ax_workers_t *wp = arg;
    for (;;) {
        pthread_mutex_lock(&wp->mutex);
        while (wp->head == NULL && !wp->stopping)
            pthread_cond_wait(&wp->cond, &wp->mutex);
        ax_task_t *t = wp->head;
        if (t != NULL) {
            wp->head = t->_next;
            if (wp->head == NULL)
                wp->tail = &wp->head;
        }
        pthread_mutex_unlock(&wp->mutex);
        if (t == NULL)
            break;
        t->_next = NULL;
        ax_work_t *w = (ax_work_t *)t;
        w->run(w);
        t->port->post(t->port, t);
    }
    return NULL;
}

ax_workers_t *ax_workers_new(unsigned nthreads)
{
    ax_workers_t *wp = ax_calloc(1, sizeof(*wp));
    wp->threads = ax_calloc(nthreads, sizeof(*wp->threads));
    pthread_mutex_init(&wp->mutex, NULL);
    pthread_cond_init(&wp->cond, NULL);
    wp->tail = &wp->head;
    for (unsigned i = 0; i < nthreads; ++i) {
        if (pthread_create(&wp->threads[i], NULL, worker_main, wp) != 0)
            ax_fatal("cannot start worker thread");
        wp->nthreads++;
    }
    return wp;
}

void ax_workers_submit(ax_workers_t *wp, ax_work_t *w)
{
    w->super._next = NULL;
    w->super.result = 0;
    pthread_mutex_lock(&wp->mutex);
    if (wp->stopping) {
        pthread_mutex_unlock(&wp->mutex);
        w->super.result = AX_ESHUTDOWN;
        w->super.port->post(w->super.port, &w->super);
        return;
    }
    *wp->tail = &w->super;
    wp->tail = &w->super._next;
    pthread_cond_signal(&wp->cond);
    pthread_mutex_unlock(&wp->mutex);
}

void ax_workers_free(ax_workers_t *wp)
{
    if (wp == NULL)
        return;
    pthread_mutex_lock(&wp->mutex);
    wp->stopping = true;
    pthread_cond_broadcast(&wp->cond);
    pthread_mutex_unlock(&wp->mutex);
    /* queued work still runs: its submitters wait for the answer */
    for (unsigned i = 0; i < wp->nthreads; ++i)
        pthread_join(wp->threads[i], NULL);
    pthread_mutex_destroy(&wp->mutex);
    pthread_cond_destroy(&wp->cond);
    free(wp->threads);
    free(wp);
}
