/*
 * port.c -- delivering finished tasks back to their owner's thread.
 *
 * ax_port_post_chain() splits a chain of finished tasks by destination port
 * so each port is woken once per batch; ax_syncport_t is the blocking port
 * for threads without an event loop.
 */
#include "common.h"

#include <pthread.h>
#include <stdlib.h>

void ax_port_post_chain(ax_task_t *chain)
{
    while (chain != NULL) {
        ax_port_t *port = chain->port;
        ax_task_t *mine = NULL, **mine_tail = &mine;
        ax_task_t *rest = NULL, **rest_tail = &rest;
        /* keep submission order within each port */
        for (ax_task_t *t = chain, *next; t != NULL; t = next) {
            next = t->_next;
            t->_next = NULL;
            if (t->port == port) {
                *mine_tail = t;
                mine_tail = &t->_next;
            } else {
                *rest_tail = t;
                rest_tail = &t->_next;
            }
        }
        port->post(port, mine);
        chain = rest;
    }
}

struct st_ax_syncport_t {
    ax_port_t super;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    ax_task_t *finished;
};

static void syncport_post(ax_port_t *port, ax_task_t *chain)
{
    ax_syncport_t *sp = (ax_syncport_t *)port;
    pthread_mutex_lock(&sp->mutex);
    while (chain != NULL) {
        ax_task_t *next = chain->_next;
        chain->_next = sp->finished;
        sp->finished = chain;
        chain = next;
    }
    pthread_cond_broadcast(&sp->cond);
    pthread_mutex_unlock(&sp->mutex);
}

ax_syncport_t *ax_syncport_new(void)
{
    ax_syncport_t *sp = ax_calloc(1, sizeof(*sp));
    sp->super.post = syncport_post;
    pthread_mutex_init(&sp->mutex, NULL);
    pthread_cond_init(&sp->cond, NULL);
    return sp;
}

void ax_syncport_free(ax_syncport_t *sp)
{
    if (sp == NULL)
        return;
    pthread_mutex_destroy(&sp->mutex);
    pthread_cond_destroy(&sp->cond);
    free(sp);
}

ax_port_t *ax_syncport_port(ax_syncport_t *sp)
{
    return &sp->super;
}

int ax_syncport_wait(ax_syncport_t *sp, ax_task_t *task)
{
    pthread_mutex_lock(&sp->mutex);
    for (;;) {
        ax_task_t **pp = &sp->finished;
        while (*pp != NULL && *pp != task)
            pp = &(*pp)->_next;
        if (*pp == task) {
            *pp = task->_next;
            task->_next = NULL;
            break;
        }
        pthread_cond_wait(&sp->cond, &sp->mutex);
    }
    pthread_mutex_unlock(&sp->mutex);
    int result = task->result;
    if (task->done != NULL)
        task->done(task);
    return result;
}
