/*
 * backfill.c -- history from before this server joined a room (spec:
 * Server-Server API "Backfilling and retrieving missing events";
 * Client-Server /messages paging past a room's local start).
 *
 * A server in the room is asked for the events before our earliest one
 * (GET /backfill); they are checked (federation/pdu.c) and stored as
 * outliers, auth-checked against their own auth events, and indexed by
 * depth (roomdepth_backfill) for /messages to page through.  Events whose
 * auth events this server does not have are not shown.  When a server has
 * nothing older to give, the room's history is marked complete so nobody
 * asks again.
 */
#include "federation/federation.h"
#include "core/rooms.h"
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

typedef struct st_backfill_t {
    char room_id[256];
    const ax_room_version_t *rv;
    json_t *servers; /* candidates */
    size_t next;
    char from[256];
    size_t limit;
    ax_pdu_batch_t batch;
    size_t stored;
    ax_pdu_done_fn done;
    void *arg;
    void (*free_arg)(void *);
} backfill_t;

static void backfill_free(void *p)
{
    backfill_t *b = p;
    json_decref(b->servers);
    ax_pdu_batch_dispose(&b->batch);
    if (b->free_arg != NULL)
        b->free_arg(b->arg);
    free(b);
}

/* Hands the caller its argument back and continues it. */
static void complete(ax_req_t *r, backfill_t *b)
{
    ax_pdu_done_fn done = b->done;
    void *arg = b->arg;
    b->free_arg = NULL;
    backfill_free(b);
    done(r, arg);
}

static int by_depth(const void *a, const void *b)
{
    const ax_pdu_t *x = *(ax_pdu_t *const *)a, *y = *(ax_pdu_t *const *)b;
    json_int_t dx = json_integer_value(json_object_get(x->pdu, "depth"));
    json_int_t dy = json_integer_value(json_object_get(y->pdu, "depth"));
    return dx < dy ? -1 : dx > dy;
}

static int store_apply(ax_txn_t *txn, void *data)
{
    backfill_t *b = data;
    b->stored = 0;
    size_t n = b->batch.n;
    ax_pdu_t **order = ax_calloc(n ? n : 1, sizeof(*order));
    for (size_t i = 0; i < n; ++i)
        order[i] = &b->batch.items[i];
    qsort(order, n, sizeof(*order), by_depth);
    int rc = 0;
    bool complete_history = n == 0;
    for (size_t i = 0; i < n && rc == 0; ++i) {
        ax_pdu_t *it = order[i];
        if (it->result != 0 || it->redacted)
            continue;
        ax_event_rec_t rec;
        if (ax_db_event_get_raw(txn, it->event_id, &rec) == 0) {
            /* known: in the timeline (nothing to do), or an outlier from the join's state (now history too) */
            if ((rec.flags & AX_EVENT_F_OUTLIER) == 0 || (rec.flags & AX_EVENT_F_REJECTED) != 0)
                continue;
        } else {
            ax_ingest_t out;
            int r = ax_room_ingest_outlier(txn, b->rv, b->room_id, it->event_id, it->pdu, &out);
            if (r == AX_ENOTFOUND)
                continue;
            if (r != 0) {
                rc = r;
                break;
            }
            if (out.outcome != AX_INGEST_OUTLIER)
                continue;
        }
        json_int_t depth = json_integer_value(json_object_get(it->pdu, "depth"));
        rc = ax_db_backfill_put(txn, b->room_id, depth > 0 ? (uint64_t)depth : 0, it->event_id);
        b->stored++;
        if (ax_streq(json_string_value(json_object_get(it->pdu, "type")), "m.room.create"))
            complete_history = true;
    }
    free(order);
    if (rc == 0 && (complete_history || b->stored == 0)) {
        /* nothing older to be had: do not ask again */
        json_t *room = NULL;
        if (ax_db_room_get(txn, b->room_id, &room) == 0) {
            json_object_set_new(room, "history_complete", json_true());
            rc = ax_db_room_put(txn, b->room_id, room);
        }
        json_decref(room);
    }
    return rc;
}

static void stored(ax_req_t *r, int result, void *data)
{
    backfill_t *b = data;
    if (result != 0)
        ax_log(AX_LOG_WARN, "backfill of %s: %s", b->room_id, ax_strerror(result));
    /* the writer job's free must not free what complete() hands back: take it out first */
    backfill_t *copy = ax_calloc(1, sizeof(*copy));
    *copy = *b;
    memset(b, 0, sizeof(*b));
    complete(r, copy);
}

static void stored_free(void *p)
{
    backfill_free(p);
}

static void checked(ax_req_t *r, void *arg)
{
    backfill_t *b = arg;
    ax_req_write(r, store_apply, stored, b, stored_free);
}

static void ask(ax_req_t *r, backfill_t *b);

static void answered(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    backfill_t *b = fr->user;
    if (r == NULL) {
        ax_fed_request_free(fr);
        backfill_free(b);
        return;
    }
    json_t *pdus = json_object_get(fr->json, "pdus");
    if (fr->super.result != 0 || fr->status != 200 || !json_is_array(pdus)) {
        ax_log(AX_LOG_INFO, "backfill of %s: %s did not help: %s", b->room_id,
               json_string_value(json_array_get(b->servers, b->next - 1)),
               fr->super.result != 0 ? fr->error : "refused");
        ax_fed_request_free(fr);
        ask(r, b);
        return;
    }
    size_t i;
    json_t *ev;
    json_array_foreach(pdus, i, ev)
    {
        if (json_is_object(ev) && i < 2 * b->limit)
            ax_pdu_batch_add(&b->batch, json_deep_copy(ev), b->rv);
    }
    ax_fed_request_free(fr);
    ax_pdu_verify(r, &b->batch, checked, b, backfill_free);
}

static void ask(ax_req_t *r, backfill_t *b)
{
    const char *server = NULL;
    while (server == NULL && b->next < json_array_size(b->servers))
        server = json_string_value(json_array_get(b->servers, b->next++));
    if (server == NULL) {
        complete(r, b); /* nobody could help: the caller shows what it has */
        return;
    }
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v1/backfill/");
    ax_fed_urlencode(&path, b->room_id);
    ax_buf_puts(&path, "?v=");
    ax_fed_urlencode(&path, b->from);
    ax_buf_printf(&path, "&limit=%zu", b->limit);
    ax_fed_request_t *fr = ax_fed_request_new(server, "GET", path.base, NULL);
    ax_buf_dispose(&path);
    fr->user = b;
    fr->timeout_ms = 20000;
    ax_req_bind_task(r, &fr->super, answered);
    ax_fed_submit(r->srv->fed, fr);
}

typedef struct st_servers_t {
    json_t *list;
    const char *ours;
} servers_t;

static int add_server(void *arg, const char *user_id, const char *membership)
{
    servers_t *s = arg;
    const char *server = ax_id_domain(user_id);
    if (server == NULL || strcmp(membership, "join") != 0 || strcmp(server, s->ours) == 0)
        return 0;
    size_t i;
    json_t *v;
    json_array_foreach(s->list, i, v)
    {
        if (ax_streq(json_string_value(v), server))
            return 0;
    }
    json_array_append_new(s->list, json_string(server));
    return json_array_size(s->list) >= 4; /* a few candidates are enough */
}

void ax_fed_backfill(ax_req_t *r, const char *room_id, const char *from_event, size_t limit, ax_pdu_done_fn done,
                     void *arg, void (*free_arg)(void *))
{
    backfill_t *b = ax_calloc(1, sizeof(*b));
    snprintf(b->room_id, sizeof(b->room_id), "%s", room_id);
    snprintf(b->from, sizeof(b->from), "%s", from_event);
    b->limit = limit < 10 ? 10 : limit > 100 ? 100 : limit;
    b->done = done;
    b->arg = arg;
    b->free_arg = free_arg;
    servers_t s = {json_array(), r->srv->cfg->server_name};
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) == 0) {
        b->rv = ax_room_version_of(txn, room_id);
        ax_db_room_members_foreach(txn, room_id, add_server, &s);
        ax_db_read_end(txn);
    }
    b->servers = s.list;
    if (r->srv->fed == NULL || b->rv == NULL) {
        complete(r, b);
        return;
    }
    ask(r, b);
}
