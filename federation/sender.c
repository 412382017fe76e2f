/*
 * sender.c -- the federation sender (DESIGN.md "Data safety"; spec:
 * Server-Server API "Transactions"): it delivers each destination's queue
 * (storage/fedqueue.c) as PUT /_matrix/federation/v1/send/{txnId}
 * transactions, on the federation loop.
 *
 * Per destination: one transaction in flight; at most 50 PDUs and 100 EDUs
 * per transaction, taken as a contiguous run of the queue in commit order,
 * topped up with typing and presence EDUs, which live in memory only
 * (ephemeral by nature: a restart forgets who is typing).  A transaction
 * keeps its txnId until the destination answers 200, so a retry after a
 * timeout or a 5xx is the same transaction and the destination can drop
 * it as a duplicate; the ID and the last item it carries are also written
 * to the queue record, so a retry after a restart is the same transaction
 * too.  Per-PDU errors in the answer are logged, not retried (the
 * destination has judged them).  An answer the destination will never
 * change its mind about (400 and most 4xx: the transaction itself is
 * refused) is logged as an error and counted, and the queue moves on.
 *
 * Failures back off with the destination's shared state (client.c: 5 s
 * doubling to 24 h); a destination in backoff is looked at every second,
 * and `axon admin federation reset` (reset_ts in destination_state) sends
 * at once.  After an outage, rooms with more than CATCHUP_ROOM_MAX PDUs
 * waiting are cut to their latest events (docs/architecture.md, "Catch-up").
 *
 * Exports ax_fed_sender_notify() and ax_fed_sender_typing() (any thread);
 * the rest runs on the loop, started by client.c.
 */
#include "federation/federation_internal.h"
#include "core/events.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PDUS           50    /* spec: a transaction carries at most 50 PDUs ... */
#define MAX_EDUS           100   /* ... and 100 EDUs */
#define CATCHUP_ROOM_MAX   50    /* more PDUs than this waiting for one room after an outage: send its latest */
#define CATCHUP_WINDOW     10000 /* queue items looked at per catch-up pass */
#define TYPING_STALE_MS    30000 /* "typing" older than this is not worth sending any more */
#define PRESENCE_IDLE_MS   (5ULL * 60 * 1000)
#define PRESENCE_PER_EDU   100
#define TXN_TIMEOUT_MS_MIN 1000

typedef enum { D_IDLE, D_COMPACTING, D_SENDING, D_BACKOFF } dest_state_t;

typedef struct st_sender_dest_t {
    char *name;
    dest_state_t state;
    bool scheduled;
    struct st_sender_dest_t *run_next;
    uint64_t acked; /* everything up to here is acknowledged (its deletion may not be committed yet) */
    /* the transaction being sent or to retry; body NULL when none */
    json_t *body;
    char txn_id[64];
    uint64_t upto; /* the last queue item it carries (== acked at creation when it carries none) */
    size_t npdus, nedus;
    bool restored; /* recorded by a previous run: rebuild the same items under the same ID */
    bool recorded; /* its {txn_id, upto} is being written or was written to the queue record */
    /* backoff */
    uint64_t failures;    /* consecutive failed attempts */
    uint64_t db_failures; /* the shared count when the attempt in flight began */
    uint64_t retry_at;    /* D_BACKOFF: next attempt */
    uint64_t failed_at;   /* when the last attempt failed: an admin reset after it sends at once */
    bool kicked;          /* reset by an operator: the next attempt ignores the shared backoff state */
    bool catching_up;     /* an attempt failed: the next new batch first cuts long room backlogs */
    /* ephemeral EDUs, the newest state of each */
    json_t *typing;   /* {room_id: {user_id: {typing, at}}} */
    json_t *presence; /* {user_id: presence record} */
} sender_dest_t;

struct st_ax_sender_t {
    ax_fed_t *fed;
    ax_strmap_t dests; /* name -> sender_dest_t */
    sender_dest_t *run_head, **run_tail;
    h2o_timeout_t zero_timeout;
    h2o_timeout_entry_t run_entry;
    uint64_t boot_ms; /* txn IDs are "<boot_ms>.<n>": unique per destination across restarts */
    uint64_t txn_counter;
};

static void attempt(ax_sender_t *s, sender_dest_t *d);

/* ---- destinations ---- */

static sender_dest_t *dest_get(ax_sender_t *s, const char *name)
{
    sender_dest_t *d = ax_strmap_get(&s->dests, name);
    if (d != NULL)
        return d;
    d = ax_calloc(1, sizeof(*d));
    d->name = ax_strdup(name);
    d->typing = json_object();
    d->presence = json_object();
    ax_strmap_put(&s->dests, name, d);
    return d;
}

static void dest_free(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    sender_dest_t *d = value;
    free(d->name);
    json_decref(d->body);
    json_decref(d->typing);
    json_decref(d->presence);
    free(d);
}

static void on_run(h2o_timeout_entry_t *entry)
{
    ax_sender_t *s = AX_CONTAINER_OF(entry, ax_sender_t, run_entry);
    sender_dest_t *list = s->run_head;
    s->run_head = NULL;
    s->run_tail = &s->run_head;
    while (list != NULL) {
        sender_dest_t *d = list;
        list = d->run_next;
        d->run_next = NULL;
        d->scheduled = false;
        attempt(s, d);
    }
}

/* Looks at 'd' on the next turn of the loop (many wake-ups in one turn cost one look). */
static void schedule(ax_sender_t *s, sender_dest_t *d)
{
    if (d->scheduled)
        return;
    d->scheduled = true;
    *s->run_tail = d;
    s->run_tail = &d->run_next;
    if (!h2o_timeout_is_linked(&s->run_entry))
        h2o_timeout_link(s->fed->loop, &s->zero_timeout, &s->run_entry);
}

/* The destination's shared backoff state (client.c keeps it; `axon admin` resets it). */
static void dest_backoff(ax_sender_t *s, const char *name, uint64_t *failures, uint64_t *retry_at, uint64_t *reset_ts)
{
    *failures = *retry_at = *reset_ts = 0;
    ax_txn_t *txn;
    json_t *rec = NULL;
    if (ax_db_read_begin(s->fed->db, &txn) != 0)
        return;
    int rc = ax_db_destination_get(txn, name, &rec);
    ax_db_read_end(txn);
    if (rc != 0)
        return;
    json_int_t f = json_integer_value(json_object_get(rec, "failures"));
    json_int_t at = json_integer_value(json_object_get(rec, "retry_at_ms"));
    json_int_t rs = json_integer_value(json_object_get(rec, "reset_ts"));
    *failures = f > 0 ? (uint64_t)f : 0;
    *retry_at = at > 0 ? (uint64_t)at : 0;
    *reset_ts = rs > 0 ? (uint64_t)rs : 0;
    json_decref(rec);
}

/* ---- batches ---- */

typedef struct st_build_t {
    ax_txn_t *txn;
    const char *dest;
    uint64_t limit;
    ax_sender_batch_t *out;
    json_t *receipts; /* the m.receipt EDUs of this batch (borrowed from out->edus), to merge into */
    ax_buf_t scratch;
} build_t;

/* True when 'v' can be signed (canonical JSON): one bad item must not hold up the queue. */
static bool signable(build_t *b, const json_t *v)
{
    ax_buf_reset(&b->scratch);
    return ax_cjson_encode(v, &b->scratch) == 0;
}

/* Merges receipt content {room: {type: {user: receipt}}} into an m.receipt EDU of the batch where no
 * receipt of the same room, type and user of another thread sits; false when none fits. */
static bool merge_receipt(build_t *b, json_t *content)
{
    size_t i;
    json_t *edu;
    json_array_foreach(b->receipts, i, edu)
    {
        json_t *into = json_object_get(edu, "content");
        bool fits = true;
        const char *room, *type, *user;
        json_t *types, *users, *r;
        json_object_foreach(content, room, types)
        {
            json_object_foreach(types, type, users)
            {
                json_object_foreach(users, user, r)
                {
                    json_t *old = json_object_get(json_object_get(json_object_get(into, room), type), user);
                    const char *t1 = json_string_value(json_object_get(json_object_get(old, "data"), "thread_id"));
                    const char *t2 = json_string_value(json_object_get(json_object_get(r, "data"), "thread_id"));
                    if (old != NULL && !ax_streq(t1 ? t1 : "", t2 ? t2 : ""))
                        fits = false;
                }
            }
        }
        if (!fits)
            continue;
        json_object_foreach(content, room, types)
        {
            json_t *rt = json_object_get(into, room);
            if (rt == NULL)
                json_object_set_new(into, room, rt = json_object());
            json_object_foreach(types, type, users)
            {
                json_t *tu = json_object_get(rt, type);
                if (tu == NULL)
                    json_object_set_new(rt, type, tu = json_object());
                json_object_update(tu, users); /* later receipts win */
            }
        }
        return true;
    }
    return false;
}

static int build_cb(void *arg, const ax_fedq_item_t *it)
{
    build_t *b = arg;
    ax_sender_batch_t *out = b->out;
    if (it->seq > b->limit)
        return 1;
    if (it->kind == AX_FEDQ_PDU) {
        if (json_array_size(out->pdus) == MAX_PDUS)
            return 1;
        json_t *pdu = NULL;
        ax_event_rec_t rec;
        if (ax_db_event_get(b->txn, it->event_id, &pdu, &rec) != 0) {
            ax_log(AX_LOG_WARN, "federation: %s for %s is not stored any more; skipped", it->event_id, b->dest);
            out->skipped++;
        } else {
            /* "unsigned" holds this server's own notes (transaction IDs, prev_content): never sent */
            json_object_del(pdu, "unsigned");
            if (signable(b, pdu)) {
                json_array_append(out->pdus, pdu);
            } else {
                ax_log(AX_LOG_ERROR, "federation: %s is not canonical JSON; not sent to %s", it->event_id, b->dest);
                out->skipped++;
            }
            json_decref(pdu);
        }
    } else {
        if (json_array_size(out->edus) == MAX_EDUS)
            return 1;
        json_t *edu = json_loadb(it->edu, it->edu_len, 0, NULL);
        const char *type = json_string_value(json_object_get(edu, "edu_type"));
        if (type == NULL || !json_is_object(json_object_get(edu, "content")) || !signable(b, edu)) {
            ax_log(AX_LOG_ERROR, "federation: a queued EDU for %s cannot be sent (not canonical JSON); skipped",
                   b->dest);
            out->skipped++;
        } else if (!(strcmp(type, "m.receipt") == 0 && merge_receipt(b, json_object_get(edu, "content")))) {
            json_array_append(out->edus, edu);
            if (strcmp(type, "m.receipt") == 0)
                json_array_append(b->receipts, edu);
        }
        json_decref(edu);
    }
    out->upto = it->seq;
    out->items++;
    return 0;
}

int ax_sender_batch_build(ax_txn_t *txn, const char *destination, uint64_t after, uint64_t limit,
                          ax_sender_batch_t *out)
{
    memset(out, 0, sizeof(*out));
    out->pdus = json_array();
    out->edus = json_array();
    out->upto = after;
    build_t b = {txn, destination, limit, out, json_array(), AX_BUF_INIT};
    int rc = ax_db_fedq_scan(txn, destination, after, build_cb, &b);
    json_decref(b.receipts);
    ax_buf_dispose(&b.scratch);
    return rc < 0 ? rc : 0;
}

void ax_sender_batch_dispose(ax_sender_batch_t *b)
{
    json_decref(b->pdus);
    json_decref(b->edus);
    b->pdus = b->edus = NULL;
}

/* Tops the batch up with the destination's typing and presence news (taken out of memory). */
static void add_ephemeral(sender_dest_t *d, json_t *edus, uint64_t now)
{
    const char *room, *user;
    json_t *users, *t;
    void *tmp;
    json_object_foreach_safe(d->typing, tmp, room, users)
    {
        void *tmp2;
        json_object_foreach_safe(users, tmp2, user, t)
        {
            if (json_array_size(edus) >= MAX_EDUS)
                return;
            bool typing = json_is_true(json_object_get(t, "typing"));
            uint64_t at = (uint64_t)json_integer_value(json_object_get(t, "at"));
            if (!typing || at + TYPING_STALE_MS > now)
                json_array_append_new(edus, json_pack("{s:s, s:{s:s, s:s, s:b}}", "edu_type", "m.typing", "content",
                                                      "room_id", room, "user_id", user, "typing", typing));
            json_object_del(users, user);
        }
        json_object_del(d->typing, room);
    }
    json_t *push = json_array();
    json_t *rec;
    json_object_foreach_safe(d->presence, tmp, user, rec)
    {
        if (json_array_size(push) == PRESENCE_PER_EDU)
            break;
        const char *presence = json_string_value(json_object_get(rec, "presence"));
        json_int_t last = json_integer_value(json_object_get(rec, "last_active_ts"));
        uint64_t ago = last > 0 && now > (uint64_t)last ? now - (uint64_t)last : 0;
        json_t *p = json_pack("{s:s, s:s, s:I}", "user_id", user, "presence", presence ? presence : "offline",
                              "last_active_ago", (json_int_t)ago);
        if (ax_streq(presence, "online"))
            json_object_set_new(p, "currently_active", json_boolean(ago < PRESENCE_IDLE_MS));
        json_t *msg = json_object_get(rec, "status_msg");
        if (json_is_string(msg))
            json_object_set(p, "status_msg", msg);
        json_array_append_new(push, p);
        json_object_del(d->presence, user);
    }
    if (json_array_size(push) != 0 && json_array_size(edus) < MAX_EDUS)
        json_array_append_new(edus, json_pack("{s:s, s:{s:O}}", "edu_type", "m.presence", "content", "push", push));
    json_decref(push);
}

/* ---- writes ---- */

typedef struct st_dest_write_t {
    char dest[256];
    char txn_id[64];
    uint64_t upto;
    /* catch-up */
    uint64_t *del;
    size_t ndel;
    ax_fedq_item_t *put;
    size_t nput;
    char (*ids)[2][256]; /* room and event IDs of 'put' */
} dest_write_t;

static void dest_write_free(void *p)
{
    dest_write_t *w = p;
    free(w->del);
    free(w->put);
    free(w->ids);
    free(w);
}

static dest_write_t *dest_write_new(const char *dest)
{
    dest_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->dest, sizeof(w->dest), "%s", dest);
    return w;
}

static int pending_apply(ax_txn_t *txn, void *data)
{
    dest_write_t *w = data;
    return ax_db_fedq_set_pending(txn, w->dest, w->txn_id, w->upto);
}

static int ack_apply(ax_txn_t *txn, void *data)
{
    dest_write_t *w = data;
    return ax_db_fedq_ack(txn, w->dest, w->upto, NULL);
}

static void write_done(ax_fed_t *fed, int result, void *data)
{
    (void)fed;
    dest_write_t *w = data;
    if (result != 0 && result != AX_ESHUTDOWN)
        ax_log(AX_LOG_ERROR, "federation: cannot record the queue of %s: %s", w->dest, ax_strerror(result));
}

/* The destination has everything up to 'upto': forget it (in memory now, on disk once the writer commits). */
static void acknowledge(ax_sender_t *s, sender_dest_t *d, uint64_t upto)
{
    if (upto <= d->acked && !d->recorded)
        return;
    if (upto > d->acked)
        d->acked = upto;
    d->recorded = false;
    dest_write_t *w = dest_write_new(d->name);
    w->upto = d->acked;
    ax_fed_write(s->fed, ack_apply, w, dest_write_free, write_done);
}

/* ---- catch-up ---- */

typedef struct st_room_backlog_t {
    char room_id[256];
    uint64_t *seqs;
    size_t n, cap;
    char last_event[256];
    uint64_t first_pos;
} room_backlog_t;

typedef struct st_catchup_t {
    ax_txn_t *txn;
    room_backlog_t *rooms;
    size_t nrooms, cap;
    size_t seen;
} catchup_t;

static int catchup_cb(void *arg, const ax_fedq_item_t *it)
{
    catchup_t *c = arg;
    if (++c->seen > CATCHUP_WINDOW)
        return 1;
    if (it->kind != AX_FEDQ_PDU)
        return 0;
    room_backlog_t *r = NULL;
    for (size_t i = 0; i < c->nrooms && r == NULL; ++i)
        if (strcmp(c->rooms[i].room_id, it->room_id) == 0)
            r = &c->rooms[i];
    if (r == NULL) {
        if (c->nrooms == c->cap)
            c->rooms = ax_realloc(c->rooms, (c->cap = c->cap ? c->cap * 2 : 16) * sizeof(*c->rooms));
        r = &c->rooms[c->nrooms++];
        memset(r, 0, sizeof(*r));
        snprintf(r->room_id, sizeof(r->room_id), "%s", it->room_id);
        r->first_pos = UINT64_MAX;
    }
    if (r->n == r->cap)
        r->seqs = ax_realloc(r->seqs, (r->cap = r->cap ? r->cap * 2 : 64) * sizeof(uint64_t));
    r->seqs[r->n++] = it->seq;
    snprintf(r->last_event, sizeof(r->last_event), "%s", it->event_id);
    ax_event_rec_t rec;
    if (ax_db_event_get_raw(c->txn, it->event_id, &rec) == 0 && rec.pos != 0 && rec.pos < r->first_pos)
        r->first_pos = rec.pos;
    return 0;
}

typedef struct st_latest_ev_t {
    uint64_t pos;
    char id[256];
} latest_ev_t;

typedef struct st_latest_t {
    ax_txn_t *txn;
    const char *dest;
    uint64_t since;
    latest_ev_t ev[CATCHUP_ROOM_MAX];
    size_t n;
} latest_t;

/* A forward extremity worth sending: newer than the backlog, not the destination's own event. */
static int extremity_cb(void *arg, const char *event_id)
{
    latest_t *l = arg;
    if (l->n == CATCHUP_ROOM_MAX)
        return 1;
    json_t *ev = NULL;
    ax_event_rec_t rec;
    if (ax_db_event_get(l->txn, event_id, &ev, &rec) != 0)
        return 0;
    const char *sender = json_string_value(json_object_get(ev, "sender"));
    bool keep = rec.pos != 0 && rec.pos >= l->since && (rec.flags & (AX_EVENT_F_REJECTED | AX_EVENT_F_OUTLIER)) == 0 &&
                sender != NULL && !ax_streq(ax_id_domain(sender), l->dest);
    json_decref(ev);
    if (keep) {
        l->ev[l->n].pos = rec.pos;
        snprintf(l->ev[l->n].id, sizeof(l->ev[0].id), "%s", event_id);
        l->n++;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int ax_sender_catchup_plan(ax_txn_t *txn, const char *destination, uint64_t after, ax_sender_catchup_t *out)
{
    memset(out, 0, sizeof(*out));
    catchup_t c = {txn, NULL, 0, 0, 0};
    int rc = ax_db_fedq_scan(txn, destination, after, catchup_cb, &c);
    for (size_t i = 0; i < c.nrooms; ++i) {
        room_backlog_t *r = &c.rooms[i];
        if (rc >= 0 && r->n > CATCHUP_ROOM_MAX) {
            /* Synapse's rule: the room's forward extremities newer than what the destination missed,
             * or, when none qualifies, the last event we queued for it; the destination fetches the
             * gap with get_missing_events */
            latest_t *l = ax_calloc(1, sizeof(*l));
            l->txn = txn;
            l->dest = destination;
            l->since = r->first_pos;
            ax_db_extremities_foreach(txn, r->room_id, extremity_cb, l);
            if (l->n == 0) {
                snprintf(l->ev[0].id, sizeof(l->ev[0].id), "%s", r->last_event);
                l->n = 1;
            }
            for (size_t a = 1; a < l->n; ++a) /* oldest first (insertion sort: at most 50) */
                for (size_t k = a; k > 0 && l->ev[k - 1].pos > l->ev[k].pos; --k) {
                    latest_ev_t t = l->ev[k];
                    l->ev[k] = l->ev[k - 1];
                    l->ev[k - 1] = t;
                }
            if (r->n > 1) /* r->seqs is NULL when empty */
                qsort(r->seqs, r->n, sizeof(uint64_t), cmp_u64);
            if (r->n > 0) {
                out->del = ax_realloc(out->del, (out->ndel + r->n) * sizeof(uint64_t));
                memcpy(out->del + out->ndel, r->seqs, r->n * sizeof(uint64_t));
                out->ndel += r->n;
            }
            out->put = ax_realloc(out->put, (out->nput + l->n) * sizeof(*out->put));
            for (size_t k = 0; k < l->n; ++k) {
                /* the latest events take the room's last seqs: the queue stays in commit order */
                ax_sender_catchup_put_t *p = &out->put[out->nput++];
                p->seq = r->seqs[r->n - l->n + k];
                snprintf(p->room_id, sizeof(p->room_id), "%s", r->room_id);
                snprintf(p->event_id, sizeof(p->event_id), "%s", l->ev[k].id);
            }
            out->rooms++;
            free(l);
        }
        free(r->seqs);
    }
    free(c.rooms);
    return rc < 0 ? rc : 0;
}

void ax_sender_catchup_dispose(ax_sender_catchup_t *c)
{
    free(c->del);
    free(c->put);
    memset(c, 0, sizeof(*c));
}

static int compact_apply(ax_txn_t *txn, void *data)
{
    dest_write_t *w = data;
    return ax_db_fedq_replace(txn, w->dest, w->del, w->ndel, w->put, w->nput);
}

static void compact_done(ax_fed_t *fed, int result, void *data)
{
    dest_write_t *w = data;
    ax_sender_t *s = fed->sender;
    sender_dest_t *d = s != NULL ? ax_strmap_get(&s->dests, w->dest) : NULL;
    if (result != 0)
        ax_log(AX_LOG_ERROR, "federation: catching up %s: cannot shorten its queue: %s", w->dest, ax_strerror(result));
    if (d == NULL)
        return;
    d->state = D_IDLE;
    schedule(s, d);
}

/* After an outage: cuts long room backlogs (writer job); true when one was started. */
static bool catch_up(ax_sender_t *s, sender_dest_t *d)
{
    d->catching_up = false;
    ax_txn_t *txn;
    if (ax_db_read_begin(s->fed->db, &txn) != 0)
        return false;
    ax_sender_catchup_t plan;
    int rc = ax_sender_catchup_plan(txn, d->name, d->acked, &plan);
    ax_db_read_end(txn);
    if (rc != 0 || plan.rooms == 0) {
        ax_sender_catchup_dispose(&plan);
        return false;
    }
    ax_log(AX_LOG_INFO,
           "federation: catching up %s: %zu room(s) with more than %d events waiting; sending their latest %zu "
           "instead of %zu (it fetches the rest with get_missing_events)",
           d->name, plan.rooms, CATCHUP_ROOM_MAX, plan.nput, plan.ndel);
    atomic_fetch_add_explicit(&s->fed->sender_catchup_skipped, plan.ndel - plan.nput, memory_order_relaxed);
    dest_write_t *w = dest_write_new(d->name);
    w->del = plan.del;
    w->ndel = plan.ndel;
    w->ids = ax_malloc((plan.nput + 1) * sizeof(*w->ids));
    w->put = ax_calloc(plan.nput + 1, sizeof(*w->put));
    for (size_t i = 0; i < plan.nput; ++i) {
        snprintf(w->ids[i][0], sizeof(w->ids[i][0]), "%s", plan.put[i].room_id);
        snprintf(w->ids[i][1], sizeof(w->ids[i][1]), "%s", plan.put[i].event_id);
        w->put[i].seq = plan.put[i].seq;
        w->put[i].kind = AX_FEDQ_PDU;
        w->put[i].room_id = w->ids[i][0];
        w->put[i].event_id = w->ids[i][1];
    }
    w->nput = plan.nput;
    free(plan.put);
    d->state = D_COMPACTING;
    ax_fed_write(s->fed, compact_apply, w, dest_write_free, compact_done);
    return true;
}

/* ---- sending ---- */

static void txn_done(ax_task_t *task);

/* Makes the next transaction of 'd' (or rebuilds the recorded one); false when there is nothing to send. */
static bool make_batch(ax_sender_t *s, sender_dest_t *d, uint64_t now)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(s->fed->db, &txn) != 0)
        return false;
    ax_sender_batch_t b;
    int rc = ax_sender_batch_build(txn, d->name, d->acked, d->restored ? d->upto : UINT64_MAX, &b);
    ax_db_read_end(txn);
    if (rc != 0) {
        ax_sender_batch_dispose(&b);
        return false;
    }
    if (b.skipped != 0)
        atomic_fetch_add_explicit(&s->fed->sender_dropped, b.skipped, memory_order_relaxed);
    if (!d->restored)
        add_ephemeral(d, b.edus, now);
    if (json_array_size(b.pdus) == 0 && json_array_size(b.edus) == 0) {
        /* nothing sendable: what was looked at (skipped items, a recorded transaction whose items
         * are gone) is done with */
        if (b.upto > d->acked || d->restored)
            acknowledge(s, d, d->restored && d->upto > b.upto ? d->upto : b.upto);
        d->restored = false;
        ax_sender_batch_dispose(&b);
        return false;
    }
    /* what the answer acknowledges: for a rebuilt transaction the same items as before (its
     * seq range cannot have gained any: new items get higher seqs) */
    d->upto = b.upto;
    if (!d->restored) {
        snprintf(d->txn_id, sizeof(d->txn_id), "%llu.%llu", (unsigned long long)s->boot_ms,
                 (unsigned long long)++s->txn_counter);
        if (b.upto > d->acked) {
            /* recorded while it is on its way: a restart resends the same items under the same ID */
            dest_write_t *w = dest_write_new(d->name);
            snprintf(w->txn_id, sizeof(w->txn_id), "%s", d->txn_id);
            w->upto = b.upto;
            d->recorded = true;
            ax_fed_write(s->fed, pending_apply, w, dest_write_free, write_done);
        }
    }
    d->restored = false;
    d->npdus = json_array_size(b.pdus);
    d->nedus = json_array_size(b.edus);
    d->body = json_pack("{s:s, s:I, s:o}", "origin", s->fed->server_name, "origin_server_ts", (json_int_t)now, "pdus",
                        b.pdus);
    if (json_array_size(b.edus) != 0)
        json_object_set(d->body, "edus", b.edus);
    json_decref(b.edus);
    return true;
}

static void send_txn(ax_sender_t *s, sender_dest_t *d)
{
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v1/send/");
    ax_fed_urlencode(&path, d->txn_id);
    char *p = ax_buf_release(&path, NULL);
    ax_fed_request_t *fr = ax_fed_request_new(d->name, "PUT", p, json_incref(d->body));
    free(p);
    /* our own backoff decided to send: the shared state may lag by a write */
    fr->flags = AX_FED_IGNORE_BACKOFF;
    uint64_t t = (uint64_t)s->fed->cfg->federation_transaction_timeout * 1000;
    fr->timeout_ms = t < TXN_TIMEOUT_MS_MIN ? TXN_TIMEOUT_MS_MIN : t;
    fr->super.done = txn_done;
    fr->super.port = &s->fed->port.super;
    fr->super.owner = d;
    d->state = D_SENDING;
    s->fed->outstanding++;
    atomic_fetch_add_explicit(&s->fed->sender_in_flight, 1, memory_order_relaxed);
    ax_fed_start_request(s->fed, fr);
}

static void attempt(ax_sender_t *s, sender_dest_t *d)
{
    if (s->fed->refusing || d->state == D_SENDING || d->state == D_COMPACTING)
        return;
    uint64_t now = ax_now_ms();
    if (d->state == D_BACKOFF && now < d->retry_at)
        return; /* the tick looks again */
    uint64_t failures, retry_at, reset_ts;
    dest_backoff(s, d->name, &failures, &retry_at, &reset_ts);
    bool kicked = d->kicked;
    d->kicked = false;
    d->db_failures = kicked ? 0 : failures;
    if (failures != 0 && retry_at > now && !kicked) {
        /* another request failed meanwhile: wait as long as it says */
        if (d->failures < failures)
            d->failures = failures;
        d->state = D_BACKOFF;
        d->retry_at = retry_at;
        d->failed_at = now;
        return;
    }
    d->state = D_IDLE;
    if (d->body == NULL) {
        if (d->catching_up && !d->restored && catch_up(s, d))
            return;
        if (!make_batch(s, d, now))
            return;
    }
    send_txn(s, d);
}

/* Which answers mean "this transaction will never be accepted as it is". */
static bool refused_for_good(int status)
{
    return status >= 400 && status < 500 && status != 401 && status != 403 && status != 404 && status != 408 &&
           status != 429;
}

static void log_pdu_errors(ax_sender_t *s, sender_dest_t *d, const json_t *answer)
{
    const char *event_id;
    json_t *res;
    json_object_foreach(json_object_get(answer, "pdus"), event_id, res)
    {
        const char *err = json_string_value(json_object_get(res, "error"));
        if (err == NULL)
            continue;
        /* the destination judged it: sending it again would get the same answer */
        ax_log(AX_LOG_WARN, "federation: %s refused %s: %s", d->name, event_id, err);
        atomic_fetch_add_explicit(&s->fed->sender_pdu_errors, 1, memory_order_relaxed);
    }
}

static void txn_done(ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    ax_fed_t *fed = AX_CONTAINER_OF(task->port, ax_fed_t, port.super);
    sender_dest_t *d = task->owner;
    fed->outstanding--;
    atomic_fetch_sub_explicit(&fed->sender_in_flight, 1, memory_order_relaxed);
    ax_sender_t *s = fed->sender;
    if (d == NULL || s == NULL) {
        ax_fed_request_free(fr);
        return;
    }
    d->state = D_IDLE;
    int status = task->result == 0 ? fr->status : 0;
    if (task->result == AX_ESHUTDOWN) {
        /* not an answer: the recorded transaction is sent again after the restart */
    } else if (status >= 200 && status < 300) {
        log_pdu_errors(s, d, fr->json);
        atomic_fetch_add_explicit(&fed->sender_txns_ok, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&fed->sender_pdus, d->npdus, memory_order_relaxed);
        atomic_fetch_add_explicit(&fed->sender_edus, d->nedus, memory_order_relaxed);
        if (d->failures != 0)
            ax_log(AX_LOG_INFO, "federation: %s accepts transactions again", d->name);
        d->failures = 0;
        d->retry_at = 0;
        json_decref(d->body);
        d->body = NULL;
        acknowledge(s, d, d->upto);
        schedule(s, d); /* more may be waiting */
    } else if ((task->result == 0 && refused_for_good(status)) || task->result == AX_EINVAL) {
        /* AX_EINVAL: the request cannot be made at all (not a server name, ourselves): no retry helps */
        if (task->result == 0)
            ax_log(AX_LOG_ERROR,
                   "federation: %s refused transaction %s as a whole (HTTP %d: %.200s); its %zu PDU(s) and %zu "
                   "EDU(s) are dropped for it",
                   d->name, d->txn_id, status, fr->body_raw != NULL ? fr->body_raw : "", d->npdus, d->nedus);
        else
            ax_log(AX_LOG_ERROR,
                   "federation: transaction %s cannot be sent to '%s' (%s); its %zu PDU(s) and %zu "
                   "EDU(s) are dropped for it",
                   d->txn_id, d->name, fr->error, d->npdus, d->nedus);
        atomic_fetch_add_explicit(&fed->sender_txns_rejected, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&fed->sender_dropped, d->npdus + d->nedus, memory_order_relaxed);
        json_decref(d->body);
        d->body = NULL;
        acknowledge(s, d, d->upto);
        schedule(s, d);
    } else {
        /* the count as it was when the attempt began (client.c may have counted this failure already) */
        uint64_t now = ax_now_ms();
        d->failures = (d->db_failures > d->failures ? d->db_failures : d->failures) + 1;
        d->retry_at = now + ax_fed_backoff_ms(d->failures);
        d->failed_at = now;
        d->state = D_BACKOFF;
        d->catching_up = true;
        atomic_fetch_add_explicit(&fed->sender_txns_failed, 1, memory_order_relaxed);
        char why[200];
        if (status != 0)
            snprintf(why, sizeof(why), "HTTP %d", status);
        else
            snprintf(why, sizeof(why), "%s", fr->error);
        ax_log(AX_LOG_INFO, "federation: transaction %s to %s failed (%s); next attempt in %llu s", d->txn_id, d->name,
               why, (unsigned long long)((d->retry_at - now + 999) / 1000));
    }
    ax_fed_request_free(fr);
}

/* ---- wake-ups from other threads ---- */

enum { NOTE_KEYS, NOTE_TYPING };

typedef struct st_note_t {
    ax_task_t super;
    int kind;
    bool typing;
    size_t n;
    char *strs[];
} note_t;

static void typing_changed(ax_sender_t *s, const char *room_id, const char *user_id, bool typing);
static void presence_changed(ax_sender_t *s, const char *user_id);

static void on_note(ax_task_t *task)
{
    note_t *n = (note_t *)task;
    ax_fed_t *fed = AX_CONTAINER_OF(task->port, ax_fed_t, inport.super);
    ax_sender_t *s = task->owner != NULL ? fed->sender : NULL;
    if (s != NULL && !fed->refusing) {
        if (n->kind == NOTE_TYPING) {
            typing_changed(s, n->strs[0], n->strs[1], n->typing);
        } else {
            for (size_t i = 0; i < n->n; ++i) {
                const char *k = n->strs[i];
                if (strncmp(k, AX_FEDQ_NOTIFY, strlen(AX_FEDQ_NOTIFY)) == 0)
                    schedule(s, dest_get(s, k + strlen(AX_FEDQ_NOTIFY)));
                else if (strncmp(k, AX_FEDQ_NOTIFY_PRESENCE, strlen(AX_FEDQ_NOTIFY_PRESENCE)) == 0)
                    presence_changed(s, k + strlen(AX_FEDQ_NOTIFY_PRESENCE));
            }
        }
    }
    for (size_t i = 0; i < n->n; ++i)
        free(n->strs[i]);
    free(n);
}

static void post_note(ax_fed_t *fed, note_t *n)
{
    n->super.done = on_note;
    n->super.port = &fed->inport.super;
    n->super.owner = n;
    n->super._next = NULL;
    fed->inport.super.post(&fed->inport.super, &n->super);
}

void ax_fed_sender_notify(ax_fed_t *fed, const char *const *keys, size_t nkeys)
{
    size_t n = 0;
    for (size_t i = 0; i < nkeys; ++i)
        if (strncmp(keys[i], "%fed", 4) == 0)
            ++n;
    if (fed == NULL || n == 0)
        return;
    note_t *note = ax_calloc(1, sizeof(*note) + n * sizeof(char *));
    note->kind = NOTE_KEYS;
    for (size_t i = 0; i < nkeys; ++i)
        if (strncmp(keys[i], "%fed", 4) == 0)
            note->strs[note->n++] = ax_strdup(keys[i]);
    post_note(fed, note);
}

void ax_fed_sender_typing(ax_fed_t *fed, const char *room_id, const char *user_id, bool typing)
{
    if (fed == NULL)
        return;
    note_t *note = ax_calloc(1, sizeof(*note) + 2 * sizeof(char *));
    note->kind = NOTE_TYPING;
    note->typing = typing;
    note->n = 2;
    note->strs[0] = ax_strdup(room_id);
    note->strs[1] = ax_strdup(user_id);
    post_note(fed, note);
}

/* ---- typing and presence (memory only) ---- */

typedef struct st_eph_t {
    ax_sender_t *s;
    const char *room_id, *user_id;
    json_t *value;
} eph_t;

static int typing_cb(void *arg, const char *server)
{
    eph_t *e = arg;
    if (!ax_id_is_valid_server_name(server))
        return 0;
    sender_dest_t *d = dest_get(e->s, server);
    json_t *users = json_object_get(d->typing, e->room_id);
    if (users == NULL)
        json_object_set_new(d->typing, e->room_id, users = json_object());
    json_object_set(users, e->user_id, e->value);
    schedule(e->s, d);
    return 0;
}

static void typing_changed(ax_sender_t *s, const char *room_id, const char *user_id, bool typing)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(s->fed->db, &txn) != 0)
        return;
    eph_t e = {s, room_id, user_id, json_pack("{s:b, s:I}", "typing", typing, "at", (json_int_t)ax_now_ms())};
    ax_db_room_servers_foreach(txn, room_id, s->fed->server_name, typing_cb, &e);
    ax_db_read_end(txn);
    json_decref(e.value);
}

static int presence_cb(void *arg, const char *server)
{
    eph_t *e = arg;
    if (!ax_id_is_valid_server_name(server))
        return 0;
    sender_dest_t *d = dest_get(e->s, server);
    json_object_set(d->presence, e->user_id, e->value);
    schedule(e->s, d);
    return 0;
}

/* spec: "Servers should only send presence updates for users that the receiving server would be
 * interested in. Such as the receiving server sharing a room with a given user." */
static void presence_changed(ax_sender_t *s, const char *user_id)
{
    if (!ax_streq(ax_id_domain(user_id), s->fed->server_name))
        return;
    ax_txn_t *txn;
    if (ax_db_read_begin(s->fed->db, &txn) != 0)
        return;
    eph_t e = {s, NULL, user_id, NULL};
    if (ax_db_presence_get(txn, user_id, &e.value) == 0)
        ax_db_user_peers_foreach(txn, user_id, presence_cb, &e);
    ax_db_read_end(txn);
    json_decref(e.value);
}

/* ---- the loop's side ---- */

static int load_dest(void *arg, const char *name, const ax_fedq_state_t *st)
{
    ax_sender_t *s = arg;
    if (st->depth == 0 && st->txn_id[0] == '\0')
        return 0;
    sender_dest_t *d = dest_get(s, name);
    d->acked = st->acked;
    if (st->txn_id[0] != '\0' && st->pending_upto > st->acked) {
        d->restored = true;
        d->recorded = true;
        snprintf(d->txn_id, sizeof(d->txn_id), "%s", st->txn_id);
        d->upto = st->pending_upto;
    }
    schedule(s, d);
    return 0;
}

void ax_sender_start(ax_fed_t *fed)
{
    ax_sender_t *s = ax_calloc(1, sizeof(*s));
    s->fed = fed;
    s->run_tail = &s->run_head;
    s->boot_ms = ax_now_ms();
    h2o_timeout_init(fed->loop, &s->zero_timeout, 0);
    s->run_entry.cb = on_run;
    fed->sender = s;
    ax_txn_t *txn;
    if (ax_db_read_begin(fed->db, &txn) != 0)
        return;
    ax_db_fedq_destinations_foreach(txn, load_dest, s);
    ax_db_read_end(txn);
    /* a destination that was failing when we stopped may have missed a lot: catch it up */
    for (sender_dest_t *d = s->run_head; d != NULL; d = d->run_next) {
        uint64_t failures, retry_at, reset_ts;
        dest_backoff(s, d->name, &failures, &retry_at, &reset_ts);
        d->failures = failures;
        d->catching_up = failures != 0;
    }
}

typedef struct st_tick_t {
    ax_sender_t *s;
    uint64_t now;
} tick_t;

static void tick_dest(void *arg, const char *name, void *value)
{
    (void)name;
    tick_t *t = arg;
    sender_dest_t *d = value;
    if (d->state != D_BACKOFF)
        return;
    uint64_t failures, retry_at, reset_ts;
    dest_backoff(t->s, d->name, &failures, &retry_at, &reset_ts);
    if (reset_ts != 0 && reset_ts >= d->failed_at) {
        /* `axon admin federation reset`: the operator says it works again */
        ax_log(AX_LOG_INFO, "federation: %s was reset by an operator; sending now", d->name);
        d->failures = 0;
        d->retry_at = 0;
        d->state = D_IDLE;
        d->kicked = true; /* even if a failure recorded just before the reset lands after it */
        schedule(t->s, d);
    } else if (t->now >= d->retry_at) {
        d->state = D_IDLE;
        schedule(t->s, d);
    }
}

void ax_sender_tick(ax_fed_t *fed, uint64_t now)
{
    ax_sender_t *s = fed->sender;
    if (s == NULL || fed->refusing)
        return;
    tick_t t = {s, now};
    ax_strmap_foreach(&s->dests, tick_dest, &t);
}

void ax_sender_dispose(ax_fed_t *fed)
{
    ax_sender_t *s = fed->sender;
    if (s == NULL)
        return;
    if (h2o_timeout_is_linked(&s->run_entry))
        h2o_timeout_unlink(&s->run_entry);
    h2o_timeout_dispose(fed->loop, &s->zero_timeout);
    ax_strmap_foreach(&s->dests, dest_free, NULL);
    ax_strmap_dispose(&s->dests);
    fed->sender = NULL;
    free(s);
}
