/*
 * pusher.c -- the push sender (server/pusher.h) on the outbound thread.
 *
 * The queue lives in LMDB; this file keeps only an index of it in memory:
 * per pusher, the positions of its entries in order.  A wake (after a
 * commit that queued something) or the one-second tick reads the entries
 * added since the last look, then every pusher that is idle and not backing
 * off sends its oldest entry.  Entries are removed through the writer once
 * the gateway answered, so a crash can at worst send one twice; gateways
 * deduplicate by event_id (spec).
 */
#include "server/pusher.h"
#include "common/strmap.h"
#include "core/push.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS         250
#define SCAN_EVERY_MS   1000
#define MAX_INFLIGHT    16
#define BACKOFF_BASE_MS 1000ULL
#define BACKOFF_MAX_MS  (10ULL * 60 * 1000)      /* a gateway down for long is retried every 10 minutes */
#define GIVE_UP_MS      (24ULL * 60 * 60 * 1000) /* entries older than a day are dropped */

typedef struct st_item_t {
    uint64_t pos;
    struct st_item_t *next;
} item_t;

/* One pusher's part of the queue. */
typedef struct st_pq_t {
    char *key; /* user \x1f app_id \x1f pushkey */
    char *user_id, *app_id, *pushkey;
    item_t *head, *tail;
    bool busy;
    unsigned failures;
    uint64_t retry_at; /* loop ms */
} pq_t;

struct st_ax_pusher_t {
    ax_server_t *srv;
    ax_outbound_t *ob;
    _Atomic bool wake_pending;
    bool started;
    uint64_t next_pos; /* the queue is read from here on */
    uint64_t last_scan;
    ax_strmap_t queues; /* key -> pq_t */
    size_t inflight;
    _Atomic uint64_t sent, failed, dropped, rejected, queued;
};

/* ---- removing entries (on the writer) ---- */

typedef struct st_del_job_t {
    ax_wjob_t super;
    ax_pusher_t *p;
    char user_id[256], app_id[256], pushkey[1024];
    bool delete_pusher;
    uint64_t *positions;
    size_t n;
} del_job_t;

static int del_apply(ax_wjob_t *job, ax_txn_t *txn)
{
    del_job_t *j = (del_job_t *)job;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < j->n; ++i) {
        rc = ax_db_pushq_del(txn, j->positions[i], j->user_id, j->app_id, j->pushkey);
        if (rc == AX_ENOTFOUND)
            rc = 0;
    }
    if (rc == 0 && j->delete_pusher) {
        rc = ax_db_pusher_del(txn, j->user_id, j->app_id, j->pushkey);
        if (rc == AX_ENOTFOUND)
            rc = 0;
    }
    return rc;
}

static void del_done(ax_task_t *task)
{
    del_job_t *j = (del_job_t *)task;
    if (j->super.super.result != 0)
        ax_log(AX_LOG_WARN, "push: could not remove %zu sent entries of %s: %s (they may be sent again)", j->n,
               j->user_id, ax_strerror(j->super.super.result));
    ax_outbound_job_end(j->p->ob);
    free(j->positions);
    free(j);
}

/* Removes 'n' entries of 'q' (and, with 'delete_pusher', the pusher) through the writer. */
static void remove_entries(ax_pusher_t *p, pq_t *q, const uint64_t *positions, size_t n, bool delete_pusher)
{
    del_job_t *j = ax_calloc(1, sizeof(*j));
    j->p = p;
    snprintf(j->user_id, sizeof(j->user_id), "%s", q->user_id);
    snprintf(j->app_id, sizeof(j->app_id), "%s", q->app_id);
    snprintf(j->pushkey, sizeof(j->pushkey), "%s", q->pushkey);
    j->delete_pusher = delete_pusher;
    j->positions = ax_malloc((n ? n : 1) * sizeof(uint64_t));
    memcpy(j->positions, positions, n * sizeof(uint64_t));
    j->n = n;
    j->super.apply = del_apply;
    j->super.super.done = del_done;
    j->super.super.port = ax_outbound_port(p->ob);
    ax_outbound_job_begin(p->ob);
    ax_writer_submit(p->srv->writer, &j->super);
}

/* ---- the in-memory index ---- */

static pq_t *queue_get(ax_pusher_t *p, const char *user_id, const char *app_id, const char *pushkey)
{
    char *key = ax_asprintf("%s\x1f%s\x1f%s", user_id, app_id, pushkey);
    pq_t *q = ax_strmap_get(&p->queues, key);
    if (q != NULL) {
        free(key);
        return q;
    }
    q = ax_calloc(1, sizeof(*q));
    q->key = key;
    q->user_id = ax_strdup(user_id);
    q->app_id = ax_strdup(app_id);
    q->pushkey = ax_strdup(pushkey);
    ax_strmap_put(&p->queues, key, q);
    return q;
}

static void queue_free(pq_t *q)
{
    while (q->head != NULL) {
        item_t *next = q->head->next;
        free(q->head);
        q->head = next;
    }
    free(q->key);
    free(q->user_id);
    free(q->app_id);
    free(q->pushkey);
    free(q);
}

static void pop(ax_pusher_t *p, pq_t *q)
{
    item_t *it = q->head;
    q->head = it->next;
    if (q->head == NULL)
        q->tail = NULL;
    free(it);
    atomic_fetch_sub(&p->queued, 1);
}

/* Drops every entry of 'q' (its pusher is gone or rejected) and forgets it. */
static void drop_queue(ax_pusher_t *p, pq_t *q, bool delete_pusher)
{
    size_t n = 0;
    for (item_t *it = q->head; it != NULL; it = it->next)
        ++n;
    uint64_t *positions = ax_malloc((n ? n : 1) * sizeof(uint64_t));
    n = 0;
    for (item_t *it = q->head; it != NULL; it = it->next)
        positions[n++] = it->pos;
    remove_entries(p, q, positions, n, delete_pusher);
    free(positions);
    atomic_fetch_add(&p->dropped, n);
    while (q->head != NULL)
        pop(p, q);
    ax_strmap_del(&p->queues, q->key);
    queue_free(q);
}

static int scan_cb(void *arg, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey, json_t *entry)
{
    (void)entry;
    ax_pusher_t *p = arg;
    pq_t *q = queue_get(p, user_id, app_id, pushkey);
    item_t *it = ax_calloc(1, sizeof(*it));
    it->pos = pos;
    if (q->tail != NULL)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    if (pos >= p->next_pos)
        p->next_pos = pos + 1;
    atomic_fetch_add(&p->queued, 1);
    return 0;
}

/* Reads what was queued since the last look. */
static void scan(ax_pusher_t *p)
{
    ax_txn_t *txn;
    p->last_scan = ax_outbound_now(p->ob);
    if (ax_db_read_begin(p->srv->db, &txn) != 0)
        return;
    ax_db_pushq_scan(txn, p->next_pos, scan_cb, p);
    ax_db_read_end(txn);
}

/* ---- one notification ---- */

typedef struct st_send_t {
    ax_pusher_t *p;
    pq_t *q;
    uint64_t pos;
} send_t;

static uint64_t backoff_ms(unsigned failures)
{
    uint64_t ms = BACKOFF_BASE_MS << (failures > 20 ? 20 : failures - 1);
    return ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms;
}

static void dispatch(ax_pusher_t *p);

/* Done with the head entry of 'q': remove it from the queue. */
static void entry_done(ax_pusher_t *p, pq_t *q, uint64_t pos)
{
    remove_entries(p, q, &pos, 1, false);
    if (q->head != NULL && q->head->pos == pos)
        pop(p, q);
}

static bool lists_pushkey(const char *body, const char *pushkey)
{
    json_t *resp = json_loads(body, 0, NULL);
    json_t *rejected = json_object_get(resp, "rejected");
    bool found = false;
    size_t i;
    json_t *v;
    json_array_foreach(rejected, i, v)
    {
        found = found || ax_streq(json_string_value(v), pushkey);
    }
    json_decref(resp);
    return found;
}

static void on_result(void *arg, const ax_http_result_t *res)
{
    send_t *s = arg;
    ax_pusher_t *p = s->p;
    pq_t *q = s->q;
    uint64_t pos = s->pos;
    free(s);
    p->inflight--;
    q->busy = false;
    if (ax_outbound_stopping(p->ob))
        return; /* the entry stays queued for the next start */

    if (res->status >= 200 && res->status < 300) {
        atomic_fetch_add(&p->sent, 1);
        q->failures = 0;
        q->retry_at = 0;
        if (lists_pushkey(res->body, q->pushkey)) {
            /* spec: "Homeservers must cease sending notification requests for these pushkeys and remove the
             * associated pushers" */
            ax_log(AX_LOG_INFO, "push: the gateway rejected pushkey of %s (app %s): pusher removed", q->user_id,
                   q->app_id);
            atomic_fetch_add(&p->rejected, 1);
            drop_queue(p, q, true);
        } else {
            entry_done(p, q, pos);
        }
    } else if (res->refused || (res->status >= 400 && res->status < 500 && res->status != 408 && res->status != 429)) {
        /* it will not work later either: drop this one, keep the pusher */
        if (res->status != 0)
            ax_log(AX_LOG_WARN, "push: gateway of %s (app %s) answered HTTP %d: notification dropped", q->user_id,
                   q->app_id, res->status);
        else
            ax_log(AX_LOG_WARN, "push: notification for %s (app %s) dropped: %s", q->user_id, q->app_id,
                   res->error != NULL ? res->error : "refused");
        atomic_fetch_add(&p->dropped, 1);
        entry_done(p, q, pos);
    } else {
        q->failures++;
        uint64_t delay = backoff_ms(q->failures);
        q->retry_at = ax_outbound_now(p->ob) + delay;
        atomic_fetch_add(&p->failed, 1);
        if (res->status != 0)
            ax_log(AX_LOG_WARN, "push: gateway of %s (app %s) answered HTTP %d; retrying in %llu s", q->user_id,
                   q->app_id, res->status, (unsigned long long)(delay / 1000));
        else
            ax_log(AX_LOG_WARN, "push: gateway of %s (app %s) unreachable (%s); retrying in %llu s", q->user_id,
                   q->app_id, res->error != NULL ? res->error : "no response", (unsigned long long)(delay / 1000));
    }
    dispatch(p);
}

/* The current display name of 'user_id' in the room, a new reference or NULL. */
static json_t *member_name(ax_txn_t *txn, const char *room_id, const char *user_id)
{
    json_t *content = ax_room_state_content(txn, room_id, "m.room.member", user_id);
    json_t *name = json_incref(json_object_get(content, "displayname"));
    json_decref(content);
    return json_is_string(name) ? name : (json_decref(name), NULL);
}

static json_t *state_field(ax_txn_t *txn, const char *room_id, const char *type, const char *field)
{
    json_t *content = ax_room_state_content(txn, room_id, type, "");
    json_t *v = json_incref(json_object_get(content, field));
    json_decref(content);
    return json_is_string(v) ? v : (json_decref(v), NULL);
}

/*
 * The POST body for one entry (spec: push_notifier.yaml): a new reference,
 * or NULL when there is nothing to send any more ('*url' gets the pusher's
 * URL, in heap memory).  '*gone' says the pusher itself no longer exists.
 */
static json_t *build_body(ax_txn_t *txn, pq_t *q, const json_t *entry, char **url, bool *gone)
{
    *gone = false;
    json_t *pusher = NULL;
    if (ax_db_pusher_get(txn, q->user_id, q->app_id, q->pushkey, &pusher) != 0) {
        *gone = true;
        return NULL;
    }
    json_t *data = json_object_get(pusher, "data");
    const char *u = json_string_value(json_object_get(data, "url"));
    if (u == NULL) {
        json_decref(pusher);
        *gone = true;
        return NULL;
    }
    *url = ax_strdup(u);
    bool id_only = ax_streq(json_string_value(json_object_get(data, "format")), "event_id_only");

    json_t *device_data = json_deep_copy(data);
    json_object_del(device_data, "url"); /* spec: the data "minus the url key" */
    json_t *device = json_pack("{s:s, s:s, s:I, s:o}", "app_id", q->app_id, "pushkey", q->pushkey, "pushkey_ts",
                               json_integer_value(json_object_get(pusher, "pushkey_ts")), "data", device_data);
    json_t *tweaks = json_object_get(entry, "tweaks");
    json_object_set_new(device, "tweaks", json_is_object(tweaks) ? json_deep_copy(tweaks) : json_object());
    json_decref(pusher);

    json_t *n = json_object();
    const char *event_id = json_string_value(json_object_get(entry, "event_id"));
    const char *room_id = json_string_value(json_object_get(entry, "room_id"));
    if (event_id != NULL && room_id != NULL) {
        json_t *ev = ax_event_load_client(txn, event_id, NULL, NULL, NULL);
        if (ev == NULL) {
            json_decref(device);
            json_decref(n);
            return NULL; /* the event is gone: nothing to say */
        }
        json_object_set_new(n, "event_id", json_string(event_id));
        json_object_set_new(n, "room_id", json_string(room_id));
        if (!id_only) {
            const char *sender = json_string_value(json_object_get(ev, "sender"));
            json_object_set(n, "type", json_object_get(ev, "type"));
            json_object_set(n, "sender", json_object_get(ev, "sender"));
            json_t *v;
            if (sender != NULL && (v = member_name(txn, room_id, sender)) != NULL)
                json_object_set_new(n, "sender_display_name", v);
            if ((v = state_field(txn, room_id, "m.room.name", "name")) != NULL)
                json_object_set_new(n, "room_name", v);
            if ((v = state_field(txn, room_id, "m.room.canonical_alias", "alias")) != NULL)
                json_object_set_new(n, "room_alias", v);
            if (ax_streq(json_string_value(json_object_get(ev, "type")), "m.room.member"))
                json_object_set_new(
                    n, "user_is_target",
                    json_boolean(ax_streq(json_string_value(json_object_get(ev, "state_key")), q->user_id)));
            json_object_set(n, "content", json_object_get(ev, "content"));
        }
        json_decref(ev);
    }
    const char *prio = json_string_value(json_object_get(entry, "prio"));
    json_object_set_new(n, "prio", json_string(prio != NULL ? prio : "high"));
    /* spec: counts whose value is zero are omitted */
    uint64_t unread = ax_push_total_unread(txn, q->user_id);
    json_t *counts = json_object();
    if (unread != 0)
        json_object_set_new(counts, "unread", json_integer((json_int_t)unread));
    json_object_set_new(n, "counts", counts);
    json_object_set_new(n, "devices", json_pack("[o]", device));
    return json_pack("{s:o}", "notification", n);
}

/* Sends the oldest entry of 'q'. */
static void send_head(ax_pusher_t *p, pq_t *q)
{
    while (q->head != NULL) {
        uint64_t pos = q->head->pos;
        ax_txn_t *txn;
        if (ax_db_read_begin(p->srv->db, &txn) != 0)
            return;
        json_t *entry = NULL;
        char *url = NULL;
        bool gone = false;
        json_t *body = NULL;
        bool have = ax_db_pushq_get(txn, pos, q->user_id, q->app_id, q->pushkey, &entry) == 0;
        uint64_t ts = (uint64_t)json_integer_value(json_object_get(entry, "ts"));
        bool stale = have && ts != 0 && ax_now_ms() > ts + GIVE_UP_MS;
        if (have && !stale)
            body = build_body(txn, q, entry, &url, &gone);
        ax_db_read_end(txn);
        json_decref(entry);
        if (gone) {
            drop_queue(p, q, false);
            return;
        }
        if (body == NULL) {
            /* already removed, too old, or its event is gone */
            if (stale)
                ax_log(AX_LOG_WARN, "push: giving up on a notification for %s queued over a day ago", q->user_id);
            if (have)
                atomic_fetch_add(&p->dropped, 1);
            entry_done(p, q, pos);
            free(url);
            continue;
        }
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        send_t *s = ax_calloc(1, sizeof(*s));
        s->p = p;
        s->q = q;
        s->pos = pos;
        q->busy = true;
        p->inflight++;
        ax_outbound_post_json(p->ob, url, text, strlen(text), on_result, s);
        free(text);
        free(url);
        return;
    }
}

typedef struct st_ready_t {
    pq_t **list;
    size_t n;
    uint64_t now;
} ready_t;

static void collect_ready(void *arg, const char *key, void *value)
{
    (void)key;
    ready_t *r = arg;
    pq_t *q = value;
    if (!q->busy && q->head != NULL && q->retry_at <= r->now) {
        r->list = ax_realloc(r->list, (r->n + 1) * sizeof(pq_t *));
        r->list[r->n++] = q;
    }
}

static void collect_empty(void *arg, const char *key, void *value)
{
    (void)key;
    ready_t *r = arg;
    pq_t *q = value;
    if (!q->busy && q->head == NULL) {
        r->list = ax_realloc(r->list, (r->n + 1) * sizeof(pq_t *));
        r->list[r->n++] = q;
    }
}

/* Forgets pushers with nothing queued (the index only holds pushers with entries). */
static void sweep(ax_pusher_t *p)
{
    ready_t r = {NULL, 0, 0};
    ax_strmap_foreach(&p->queues, collect_empty, &r);
    for (size_t i = 0; i < r.n; ++i) {
        ax_strmap_del(&p->queues, r.list[i]->key);
        queue_free(r.list[i]);
    }
    free(r.list);
}

/* Starts a request for every pusher that can send, up to MAX_INFLIGHT at once. */
static void dispatch(ax_pusher_t *p)
{
    if (ax_outbound_stopping(p->ob) || p->inflight >= MAX_INFLIGHT)
        return;
    ready_t r = {NULL, 0, ax_outbound_now(p->ob)};
    ax_strmap_foreach(&p->queues, collect_ready, &r);
    for (size_t i = 0; i < r.n && p->inflight < MAX_INFLIGHT; ++i)
        send_head(p, r.list[i]);
    free(r.list);
}

/* ---- life cycle ---- */

static void on_tick(void *arg)
{
    ax_pusher_t *p = arg;
    if (ax_outbound_now(p->ob) - p->last_scan >= SCAN_EVERY_MS) {
        sweep(p);
        scan(p);
    }
    dispatch(p);
}

static void on_start(void *arg)
{
    ax_pusher_t *p = arg;
    if (ax_outbound_stopping(p->ob))
        return;
    p->started = true;
    scan(p);
    ax_outbound_every(p->ob, TICK_MS, on_tick, p);
    dispatch(p);
}

static void on_wake(void *arg)
{
    ax_pusher_t *p = arg;
    atomic_store(&p->wake_pending, false);
    if (ax_outbound_stopping(p->ob) || !p->started)
        return;
    scan(p);
    dispatch(p);
}

ax_pusher_t *ax_pusher_new(ax_server_t *srv, ax_outbound_t *ob)
{
    ax_pusher_t *p = ax_calloc(1, sizeof(*p));
    p->srv = srv;
    p->ob = ob;
    return p;
}

void ax_pusher_start(ax_pusher_t *p)
{
    ax_outbound_call(p->ob, on_start, p);
}

void ax_pusher_wake(ax_pusher_t *p)
{
    if (p != NULL && !atomic_exchange(&p->wake_pending, true))
        ax_outbound_call(p->ob, on_wake, p);
}

static void free_queue(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    queue_free(value);
}

void ax_pusher_free(ax_pusher_t *p)
{
    if (p == NULL)
        return;
    ax_strmap_foreach(&p->queues, free_queue, NULL);
    ax_strmap_dispose(&p->queues);
    free(p);
}

void ax_pusher_stats(ax_pusher_t *p, ax_pusher_stats_t *out)
{
    out->sent = atomic_load(&p->sent);
    out->failed = atomic_load(&p->failed);
    out->dropped = atomic_load(&p->dropped);
    out->rejected = atomic_load(&p->rejected);
    out->queued = atomic_load(&p->queued);
}
