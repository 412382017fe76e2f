/*
 * batch.c -- several outbound requests as one task (federation.h): what a
 * Client-Server handler uses to ask many servers at once (remote users in
 * /keys/query and /keys/claim) and continue when all of them answered or
 * timed out.  Each request completes through the batch's own port, i.e. on
 * the thread that waits for the batch, so the count needs no lock; the last
 * one posts the batch itself to that port.
 */
#include "federation/federation.h"

#include <stdlib.h>

ax_fed_batch_t *ax_fed_batch_new(void)
{
    return ax_calloc(1, sizeof(ax_fed_batch_t));
}

void ax_fed_batch_add(ax_fed_batch_t *b, ax_fed_request_t *fr)
{
    if (b->n == b->_cap) {
        b->_cap = b->_cap ? 2 * b->_cap : 4;
        b->reqs = ax_realloc(b->reqs, b->_cap * sizeof(*b->reqs));
    }
    b->reqs[b->n++] = fr;
}

static void post_batch(ax_fed_batch_t *b)
{
    b->super.result = 0;
    b->super._next = NULL;
    b->super.port->post(b->super.port, &b->super);
}

static void one_done(ax_task_t *task)
{
    ax_fed_batch_t *b = ((ax_fed_request_t *)task)->super.owner;
    if (--b->_pending == 0)
        post_batch(b);
}

void ax_fed_batch_submit(ax_fed_t *fed, ax_fed_batch_t *b)
{
    b->_pending = b->n;
    if (b->n == 0) {
        post_batch(b);
        return;
    }
    /* completions go through the port, i.e. the waiting thread's loop: none can run before we return */
    for (size_t i = 0; i < b->n; ++i) {
        ax_fed_request_t *fr = b->reqs[i];
        fr->super.port = b->super.port;
        fr->super.done = one_done;
        fr->super.owner = b;
        ax_fed_submit(fed, fr);
    }
}

void ax_fed_batch_free(ax_fed_batch_t *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; ++i)
        ax_fed_request_free(b->reqs[i]);
    free(b->reqs);
    free(b);
}
