/*
 * send.c -- transactions from other servers: PUT /_matrix/federation/v1/
 * send/{txnId} (spec: Server-Server API "Transactions", "PDUs", "EDUs",
 * "Checks performed on receipt of a PDU").
 *
 * One transaction, tied to its request:
 *  1. a retried transaction gets the answer kept from the first time;
 *  2. every PDU is checked (federation/pdu.c: format, signatures, hashes);
 *  3. one writer job takes the good ones into their rooms in order
 *     (core/ingest.c: auth events, state before, soft failure);
 *  4. a PDU whose prev events this server lacks is caught up: first the
 *     events between our forward extremities and it (get_missing_events),
 *     and when a gap remains, the room's state before it (/state), stored as
 *     outliers -- a few PDUs per transaction at most, so a transaction
 *     cannot keep the request busy for ever;
 *  5. EDUs: typing (in memory), receipts, presence, to-device messages and
 *     device-list changes (one writer job);
 *  6. the answer, {pdus: {event_id: {} or {error}}}, is kept for retries.
 */
#include "federation/federation.h"
#include "core/rooms.h"
#include "core/servers.h"
#include "server/cs/cs.h"
#include "server/handlers.h"
#include "server/typing.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PDUS          50
#define MAX_EDUS          100
#define MAX_GAP_FILLS     4  /* PDUs per transaction whose missing history is fetched */
#define MISSING_LIMIT     20 /* events asked for per get_missing_events */
#define TYPING_TIMEOUT_MS 30000

typedef struct st_txn_t {
    char origin[256];
    char txn_id[256];
    ax_pdu_batch_t batch;   /* the transaction's PDUs, in order */
    char **room_ids;        /* per PDU */
    unsigned char *state;   /* per PDU: one of the PDU_* states below */
    unsigned char *checked; /* 'state' once checked: a writer job starts from it again when replayed */
    json_t *edus;
    json_t *answer; /* {event_id: {} | {error}} */
    size_t gap;     /* the PDU being caught up */
    size_t gap_fills;
    ax_pdu_batch_t extra; /* events fetched to fill a gap */
    size_t extra_state;   /* of 'extra' from /state: the first ones are the state, the rest the auth chain */
    bool by_state;        /* the gap is being filled with /state */
} txn_t;

enum { PDU_PENDING, PDU_MISSING, PDU_DONE };

static void txn_free(void *p)
{
    txn_t *t = p;
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->batch.n; ++i)
        free(t->room_ids[i]);
    free(t->room_ids);
    free(t->state);
    free(t->checked);
    ax_pdu_batch_dispose(&t->batch);
    ax_pdu_batch_dispose(&t->extra);
    json_decref(t->edus);
    json_decref(t->answer);
    free(t);
}

static void result(txn_t *t, size_t i, const char *error)
{
    ax_pdu_t *it = &t->batch.items[i];
    const char *id = it->event_id[0] ? it->event_id : "unknown";
    json_object_set_new(t->answer, id, error != NULL ? json_pack("{s:s}", "error", error) : json_object());
    t->state[i] = PDU_DONE;
}

static void next_gap(ax_req_t *r, txn_t *t);

/* ---- the end: EDUs, then the answer ---- */

typedef struct st_edu_work_t {
    json_t *receipts; /* [{room_id, type, user_id, event_id, thread_id?, ts}] */
    json_t *presence; /* [{user_id, presence, status_msg?, last_active_ago}] */
    json_t *to_device;
    json_t *device_users; /* users whose device lists changed */
    char origin[256];
} edu_work_t;

static bool user_of(const char *user_id, const char *server)
{
    return user_id != NULL && ax_id_is_valid_user_id(user_id) && ax_streq(ax_id_domain(user_id), server);
}

static bool joined(ax_txn_t *txn, const char *room_id, const char *user_id)
{
    char m[16];
    ax_room_membership(txn, room_id, user_id, m, sizeof(m));
    return strcmp(m, "join") == 0;
}

static int edu_apply_receipts(ax_txn_t *txn, edu_work_t *w)
{
    size_t i;
    json_t *rc_;
    json_array_foreach(w->receipts, i, rc_)
    {
        const char *room = json_string_value(json_object_get(rc_, "room_id"));
        const char *user = json_string_value(json_object_get(rc_, "user_id"));
        const char *type = json_string_value(json_object_get(rc_, "type"));
        const char *eid = json_string_value(json_object_get(rc_, "event_id"));
        const char *thread = json_string_value(json_object_get(rc_, "thread_id"));
        ax_event_rec_t rec;
        if (!joined(txn, room, user) || ax_db_event_get_raw(txn, eid, &rec) != 0 || strcmp(rec.room_id, room) != 0)
            continue;
        int rc =
            ax_db_receipt_put(txn, room, type, user, thread, eid,
                              (uint64_t)json_integer_value(json_object_get(rc_, "ts")), ax_txn_next_stream_pos(txn));
        if (rc != 0)
            return rc;
        ax_room_notify_members(txn, room, NULL);
    }
    return 0;
}

static int wake_room(void *arg, const char *room_id, json_t *m)
{
    if (ax_streq(json_string_value(json_object_get(m, "membership")), "join"))
        ax_room_wake_members(arg, room_id);
    return 0;
}

static int edu_apply_presence(ax_txn_t *txn, edu_work_t *w)
{
    size_t i;
    json_t *p;
    json_array_foreach(w->presence, i, p)
    {
        const char *user = json_string_value(json_object_get(p, "user_id"));
        const char *state = json_string_value(json_object_get(p, "presence"));
        json_int_t ago = json_integer_value(json_object_get(p, "last_active_ago"));
        uint64_t now = ax_now_ms();
        json_t *rec = json_pack("{s:s, s:I}", "presence", state, "last_active_ts",
                                (json_int_t)(ago > 0 && (uint64_t)ago < now ? now - (uint64_t)ago : now));
        json_t *msg = json_object_get(p, "status_msg");
        if (json_is_string(msg))
            json_object_set(rec, "status_msg", msg);
        int rc = ax_db_presence_put(txn, user, rec, ax_txn_next_stream_pos(txn));
        json_decref(rec);
        if (rc != 0)
            return rc;
        ax_db_user_rooms_foreach(txn, user, wake_room, txn);
    }
    return 0;
}

static int collect_device(void *arg, const char *device_id, json_t *device)
{
    (void)device;
    json_array_append_new(arg, json_string(device_id));
    return 0;
}

static int edu_apply_to_device(ax_txn_t *txn, edu_work_t *w)
{
    size_t i;
    json_t *edu;
    json_array_foreach(w->to_device, i, edu)
    {
        const char *sender = json_string_value(json_object_get(edu, "sender"));
        const char *type = json_string_value(json_object_get(edu, "type"));
        const char *message_id = json_string_value(json_object_get(edu, "message_id"));
        /* the sender's server may resend a message: its ID, per origin, makes it once only */
        char dedup_device[300];
        snprintf(dedup_device, sizeof(dedup_device), "federation:%s", w->origin);
        if (message_id != NULL && ax_db_todevice_txn_get(txn, sender, dedup_device, message_id) == 0)
            continue;
        const char *user;
        json_t *devices;
        json_object_foreach(json_object_get(edu, "messages"), user, devices)
        {
            json_t *account = NULL;
            if (ax_db_account_get(txn, user, &account) != 0)
                continue;
            json_decref(account);
            json_t *targets = json_array();
            const char *device;
            json_t *content;
            json_object_foreach(devices, device, content)
            {
                if (strcmp(device, "*") == 0)
                    ax_db_device_foreach(txn, user, collect_device, targets);
                else
                    json_array_append_new(targets, json_string(device));
            }
            size_t k;
            json_t *d;
            json_array_foreach(targets, k, d)
            {
                json_t *c = json_object_get(devices, json_string_value(d));
                if (c == NULL)
                    c = json_object_get(devices, "*");
                json_t *dev = NULL;
                if (ax_db_device_get(txn, user, json_string_value(d), &dev) != 0)
                    continue;
                json_decref(dev);
                json_t *msg = json_pack("{s:s, s:s, s:O}", "sender", sender, "type", type, "content", c);
                int rc = ax_db_todevice_put(txn, user, json_string_value(d), ax_txn_next_stream_pos(txn), msg);
                json_decref(msg);
                if (rc != 0) {
                    json_decref(targets);
                    return rc;
                }
            }
            json_decref(targets);
            ax_txn_notify(txn, user);
        }
        if (message_id != NULL) {
            int rc = ax_db_todevice_txn_put(txn, sender, dedup_device, message_id, ax_now_ms());
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int edu_apply(ax_txn_t *txn, void *data)
{
    edu_work_t *w = data;
    int rc = edu_apply_receipts(txn, w);
    if (rc == 0)
        rc = edu_apply_presence(txn, w);
    if (rc == 0)
        rc = edu_apply_to_device(txn, w);
    size_t i;
    json_t *u;
    json_array_foreach(w->device_users, i, u)
    {
        /* our users sharing a room with them see it in device_lists.changed and query again */
        if (rc == 0)
            rc = ax_db_devicelist_touch(txn, json_string_value(u), NULL);
    }
    return rc;
}

static void edu_work_free(void *p)
{
    edu_work_t *w = p;
    json_decref(w->receipts);
    json_decref(w->presence);
    json_decref(w->to_device);
    json_decref(w->device_users);
    free(w);
}

/* Sorts the EDUs into what the writer stores; typing is applied here, in memory. */
static edu_work_t *read_edus(ax_req_t *r, txn_t *t)
{
    edu_work_t *w = ax_calloc(1, sizeof(*w));
    w->receipts = json_array();
    w->presence = json_array();
    w->to_device = json_array();
    w->device_users = json_array();
    snprintf(w->origin, sizeof(w->origin), "%s", t->origin);
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return w;
    size_t i;
    json_t *edu;
    json_array_foreach(t->edus, i, edu)
    {
        const char *type = json_string_value(json_object_get(edu, "edu_type"));
        json_t *content = json_object_get(edu, "content");
        if (type == NULL || !json_is_object(content))
            continue;
        if (strcmp(type, "m.typing") == 0) {
            const char *room = json_string_value(json_object_get(content, "room_id"));
            const char *user = json_string_value(json_object_get(content, "user_id"));
            json_t *typing = json_object_get(content, "typing");
            if (user_of(user, t->origin) && room != NULL && json_is_boolean(typing) && joined(txn, room, user) &&
                ax_room_server_allowed(txn, room, t->origin) &&
                ax_typing_set(r->srv->typing, room, user, json_is_true(typing), TYPING_TIMEOUT_MS, ax_now_ms()))
                ax_cs_typing_notify_room(r->srv, room);
        } else if (strcmp(type, "m.receipt") == 0) {
            const char *room;
            json_t *by_type;
            json_object_foreach(content, room, by_type)
            {
                if (!ax_room_server_allowed(txn, room, t->origin))
                    continue; /* the room's ACL shuts the origin out: its EDUs too */
                const char *rtype;
                json_t *users;
                json_object_foreach(by_type, rtype, users)
                {
                    if (strcmp(rtype, "m.read") != 0)
                        continue; /* private receipts never leave their server */
                    const char *user;
                    json_t *rec;
                    json_object_foreach(users, user, rec)
                    {
                        json_t *ids = json_object_get(rec, "event_ids");
                        json_t *data = json_object_get(rec, "data");
                        const char *eid = json_string_value(json_array_get(ids, json_array_size(ids) - 1));
                        if (!user_of(user, t->origin) || eid == NULL)
                            continue;
                        json_t *item =
                            json_pack("{s:s, s:s, s:s, s:s, s:I}", "room_id", room, "type", rtype, "user_id", user,
                                      "event_id", eid, "ts", json_integer_value(json_object_get(data, "ts")));
                        json_t *thread = json_object_get(data, "thread_id");
                        if (json_is_string(thread))
                            json_object_set(item, "thread_id", thread);
                        json_array_append_new(w->receipts, item);
                    }
                }
            }
        } else if (strcmp(type, "m.presence") == 0) {
            size_t k;
            json_t *p;
            json_array_foreach(json_object_get(content, "push"), k, p)
            {
                const char *user = json_string_value(json_object_get(p, "user_id"));
                const char *state = json_string_value(json_object_get(p, "presence"));
                if (user_of(user, t->origin) &&
                    (ax_streq(state, "online") || ax_streq(state, "offline") || ax_streq(state, "unavailable")))
                    json_array_append(w->presence, p);
            }
        } else if (strcmp(type, "m.direct_to_device") == 0) {
            if (user_of(json_string_value(json_object_get(content, "sender")), t->origin) &&
                json_is_string(json_object_get(content, "type")) &&
                json_is_object(json_object_get(content, "messages")))
                json_array_append(w->to_device, content);
        } else if (strcmp(type, "m.device_list_update") == 0 || strcmp(type, "m.signing_key_update") == 0) {
            const char *user = json_string_value(json_object_get(content, "user_id"));
            if (user_of(user, t->origin))
                json_array_append_new(w->device_users, json_string(user));
        }
    }
    ax_db_read_end(txn);
    return w;
}

/* A writer job's or worker's hold on the transaction: it frees it unless the continuation took it on. */
typedef struct st_step_t {
    txn_t *t;
    bool taken;
} step_t;

static step_t *step(txn_t *t)
{
    step_t *s = ax_calloc(1, sizeof(*s));
    s->t = t;
    return s;
}

static void step_free(void *p)
{
    step_t *s = p;
    if (!s->taken)
        txn_free(s->t);
    free(s);
}

static txn_t *take(void *data)
{
    step_t *s = data;
    s->taken = true;
    return s->t;
}

/* ---- the end: EDUs, then the answer kept for retries ---- */

typedef struct st_finish_t {
    txn_t *t;
    edu_work_t *edus;
    json_t *answer; /* {pdus: ...} */
} finish_t;

static void finish_free(void *p)
{
    finish_t *f = p;
    txn_free(f->t);
    if (f->edus != NULL)
        edu_work_free(f->edus);
    json_decref(f->answer);
    free(f);
}

static int finish_apply(ax_txn_t *txn, void *data)
{
    finish_t *f = data;
    int rc = edu_apply(txn, f->edus);
    if (rc != 0) {
        /* a bad EDU must not cost the PDUs their answer: keep that, drop the EDUs */
        ax_log(AX_LOG_WARN, "federation: EDUs from %s not stored: %s", f->t->origin, ax_strerror(rc));
        return rc;
    }
    return ax_db_fedtxn_put(txn, f->t->origin, f->t->txn_id, f->answer, ax_now_ms());
}

static void finished(ax_req_t *r, int result, void *data)
{
    finish_t *f = data;
    if (result != 0)
        ax_log(AX_LOG_WARN, "federation: transaction %s from %s: %s", f->t->txn_id, f->t->origin, ax_strerror(result));
    ax_reply_json_new(r, 200, json_incref(f->answer));
}

static void finish(ax_req_t *r, txn_t *t)
{
    for (size_t i = 0; i < t->batch.n; ++i)
        if (t->state[i] != PDU_DONE)
            result(t, i, "The events before it could not be fetched");
    finish_t *f = ax_calloc(1, sizeof(*f));
    f->t = t;
    f->edus = read_edus(r, t);
    f->answer = json_pack("{s:O}", "pdus", t->answer);
    ax_req_write(r, finish_apply, finished, f, finish_free);
}

/* ---- catching up a PDU's missing history ---- */

static int by_depth(const void *a, const void *b)
{
    const ax_pdu_t *x = *(ax_pdu_t *const *)a, *y = *(ax_pdu_t *const *)b;
    json_int_t dx = json_integer_value(json_object_get(x->pdu, "depth"));
    json_int_t dy = json_integer_value(json_object_get(y->pdu, "depth"));
    return dx < dy ? -1 : dx > dy;
}

/*
 * Takes the fetched events in -- timeline events from get_missing_events,
 * oldest first; outliers in auth order and the state map from /state --
 * then the PDU itself.
 */
static int gap_apply(ax_txn_t *txn, void *data)
{
    txn_t *t = ((step_t *)data)->t;
    t->state[t->gap] = PDU_MISSING; /* again, when the writer replays the job */
    ax_pdu_t *it = &t->batch.items[t->gap];
    const char *room = t->room_ids[t->gap];
    size_t n = t->extra.n;
    ax_pdu_t **order = ax_calloc(n ? n : 1, sizeof(*order));
    for (size_t i = 0; i < n; ++i)
        order[i] = &t->extra.items[i];
    qsort(order, n, sizeof(*order), by_depth);
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; ++pass) {
        for (size_t i = 0; i < n && rc == 0; ++i) {
            if (order[i]->result != 0)
                continue;
            ax_ingest_t out;
            int r = t->by_state ? ax_room_ingest_outlier(txn, it->rv, room, order[i]->event_id, order[i]->pdu, &out)
                                : ax_room_ingest(txn, it->rv, room, order[i]->event_id, order[i]->pdu, NULL, &out);
            if (r != 0 && r != AX_ENOTFOUND)
                rc = r;
        }
    }
    free(order);
    json_t *state = NULL;
    if (t->by_state) {
        state = json_object();
        for (size_t i = 0; i < t->extra_state; ++i) {
            ax_pdu_t *e = &t->extra.items[i];
            const char *type = json_string_value(json_object_get(e->pdu, "type"));
            const char *sk = json_string_value(json_object_get(e->pdu, "state_key"));
            ax_event_rec_t rec;
            if (e->result != 0 || type == NULL || sk == NULL || ax_db_event_get_raw(txn, e->event_id, &rec) != 0 ||
                (rec.flags & AX_EVENT_F_REJECTED))
                continue;
            json_t *slot = json_object_get(state, type);
            if (slot == NULL)
                json_object_set_new(state, type, slot = json_object());
            json_object_set_new(slot, sk, json_string(e->event_id));
        }
    }
    if (rc == 0) {
        ax_ingest_t out;
        int r = ax_room_ingest(txn, it->rv, room, it->event_id, it->pdu, state, &out);
        if (r == 0) {
            t->state[t->gap] = PDU_DONE;
            json_object_set_new(t->answer, it->event_id,
                                out.outcome == AX_INGEST_REJECTED ? json_pack("{s:s}", "error", out.reason)
                                                                  : json_object());
        } else if (r != AX_ENOTFOUND) {
            rc = r;
        }
    }
    json_decref(state);
    return rc;
}

static void fetch_state(ax_req_t *r, txn_t *t);

static void gap_stored(ax_req_t *r, int rc, void *data)
{
    txn_t *t = take(data);
    if (rc != 0) {
        ax_log(AX_LOG_WARN, "federation: storing events fetched for %s: %s", t->batch.items[t->gap].event_id,
               ax_strerror(rc));
        result(t, t->gap, "Could not be stored");
    }
    ax_pdu_batch_dispose(&t->extra);
    if (t->state[t->gap] != PDU_DONE && !t->by_state) {
        fetch_state(r, t); /* get_missing_events did not reach it: the state before it, then */
        return;
    }
    if (t->state[t->gap] != PDU_DONE)
        result(t, t->gap, "The events before it could not be fetched");
    next_gap(r, t);
}

static void extra_checked(ax_req_t *r, void *arg)
{
    txn_t *t = arg;
    ax_req_write(r, gap_apply, gap_stored, step(t), step_free);
}

static void add_extra(txn_t *t, const json_t *events, const ax_room_version_t *rv)
{
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        if (json_is_object(ev))
            ax_pdu_batch_add(&t->extra, json_deep_copy(ev), rv);
    }
}

static void state_fetched(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    txn_t *t = fr->user;
    if (r == NULL) {
        ax_fed_request_free(fr);
        txn_free(t);
        return;
    }
    const ax_room_version_t *rv = t->batch.items[t->gap].rv;
    if (fr->super.result == 0 && fr->status == 200 && json_is_object(fr->json)) {
        add_extra(t, json_object_get(fr->json, "pdus"), rv);
        t->extra_state = t->extra.n;
        add_extra(t, json_object_get(fr->json, "auth_chain"), rv);
    }
    ax_fed_request_free(fr);
    if (t->extra.n == 0) {
        result(t, t->gap, "The events before it could not be fetched");
        next_gap(r, t);
        return;
    }
    ax_pdu_verify(r, &t->extra, extra_checked, t, txn_free);
}

static void fetch_state(ax_req_t *r, txn_t *t)
{
    t->by_state = true;
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v1/state/");
    ax_fed_urlencode(&path, t->room_ids[t->gap]);
    ax_buf_puts(&path, "?event_id=");
    ax_fed_urlencode(&path, t->batch.items[t->gap].event_id);
    ax_fed_request_t *fr = ax_fed_request_new(t->origin, "GET", path.base, NULL);
    ax_buf_dispose(&path);
    fr->user = t;
    fr->max_response = 64u << 20;
    ax_req_bind_task(r, &fr->super, state_fetched);
    ax_fed_submit(r->srv->fed, fr);
}

static void missing_fetched(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    txn_t *t = fr->user;
    if (r == NULL) {
        ax_fed_request_free(fr);
        txn_free(t);
        return;
    }
    if (fr->super.result == 0 && fr->status == 200)
        add_extra(t, json_object_get(fr->json, "events"), t->batch.items[t->gap].rv);
    ax_fed_request_free(fr);
    if (t->extra.n == 0) {
        fetch_state(r, t);
        return;
    }
    ax_pdu_verify(r, &t->extra, extra_checked, t, txn_free);
}

static int collect_id(void *arg, const char *event_id)
{
    json_array_append_new(arg, json_string(event_id));
    return 0;
}

/* The next PDU whose prev events were missing: ask the origin for the events in between. */
static void next_gap(ax_req_t *r, txn_t *t)
{
    while (t->gap < t->batch.n && t->state[t->gap] != PDU_MISSING)
        t->gap++;
    if (t->gap == t->batch.n || t->gap_fills == MAX_GAP_FILLS || r->srv->fed == NULL) {
        finish(r, t);
        return;
    }
    t->gap_fills++;
    t->by_state = false;
    t->extra_state = 0;
    ax_pdu_t *it = &t->batch.items[t->gap];
    json_t *earliest = json_array();
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) == 0) {
        ax_db_extremities_foreach(txn, t->room_ids[t->gap], collect_id, earliest);
        ax_db_read_end(txn);
    }
    json_t *body = json_pack("{s:o, s:[s], s:i, s:i}", "earliest_events", earliest, "latest_events", it->event_id,
                             "limit", MISSING_LIMIT, "min_depth", 0);
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v1/get_missing_events/");
    ax_fed_urlencode(&path, t->room_ids[t->gap]);
    ax_fed_request_t *fr = ax_fed_request_new(t->origin, "POST", path.base, body);
    ax_buf_dispose(&path);
    fr->user = t;
    ax_req_bind_task(r, &fr->super, missing_fetched);
    ax_fed_submit(r->srv->fed, fr);
}

/* ---- the transaction's own PDUs ---- */

static int pdus_apply(ax_txn_t *txn, void *data)
{
    txn_t *t = ((step_t *)data)->t;
    memcpy(t->state, t->checked, t->batch.n);
    for (size_t i = 0; i < t->batch.n; ++i) {
        ax_pdu_t *it = &t->batch.items[i];
        if (t->state[i] != PDU_PENDING)
            continue;
        ax_ingest_t out;
        int rc = ax_room_ingest(txn, it->rv, t->room_ids[i], it->event_id, it->pdu, NULL, &out);
        if (rc == AX_ENOTFOUND) {
            t->state[i] = PDU_MISSING;
            continue;
        }
        if (rc != 0)
            return rc; /* the whole job is replayed without writes: every PDU is tried again */
        /* rejected events are reported; soft-failed ones are fine as far as the sender is concerned */
        result(t, i, out.outcome == AX_INGEST_REJECTED ? out.reason : NULL);
    }
    return 0;
}

static void pdus_stored(ax_req_t *r, int rc, void *data)
{
    txn_t *t = take(data);
    if (rc != 0) {
        ax_log(AX_LOG_ERROR, "federation: transaction %s from %s: %s", t->txn_id, t->origin, ax_strerror(rc));
        txn_free(t);
        ax_reply_error(r, AX_M_INTERNAL, "Could not store the events");
        return;
    }
    t->gap = 0;
    next_gap(r, t);
}

static void pdus_checked(ax_req_t *r, void *arg)
{
    txn_t *t = arg;
    for (size_t i = 0; i < t->batch.n; ++i) {
        ax_pdu_t *it = &t->batch.items[i];
        if (t->state[i] == PDU_DONE)
            continue;
        if (it->result != 0)
            result(t, i, it->error);
    }
    t->checked = ax_malloc(t->batch.n ? t->batch.n : 1);
    memcpy(t->checked, t->state, t->batch.n);
    ax_req_write(r, pdus_apply, pdus_stored, step(t), step_free);
}

/* PUT /_matrix/federation/v1/send/{txnId} */
int ax_fed_send_txn(ax_req_t *r)
{
    const char *txn_id = r->params[0];
    json_t *body, *pdus = NULL, *edus = NULL;
    const char *origin;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_string_or_reply(r, body, "origin", true, &origin) != 0 ||
        ax_field_array_or_reply(r, body, "pdus", true, &pdus) != 0 ||
        ax_field_array_or_reply(r, body, "edus", false, &edus) != 0)
        return 0;
    if (strcmp(origin, r->auth.server) != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "The transaction's origin is not the requesting server");
    if (json_array_size(pdus) > MAX_PDUS || json_array_size(edus) > MAX_EDUS)
        return ax_reply_error(r, AX_M_BAD_JSON, "At most 50 PDUs and 100 EDUs per transaction");
    if (strlen(txn_id) >= 256)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Transaction ID too long");

    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *kept = NULL;
    if (ax_db_fedtxn_get(txn, origin, txn_id, &kept) == 0) {
        ax_db_read_end(txn);
        return ax_reply_json_new(r, 200, kept); /* a retry: the same answer, nothing done twice */
    }
    txn_t *t = ax_calloc(1, sizeof(*t));
    snprintf(t->origin, sizeof(t->origin), "%s", origin);
    snprintf(t->txn_id, sizeof(t->txn_id), "%s", txn_id);
    t->answer = json_object();
    t->edus = edus != NULL ? json_incref(edus) : json_array();
    size_t n = json_array_size(pdus);
    t->room_ids = ax_calloc(n ? n : 1, sizeof(char *));
    t->state = ax_calloc(n ? n : 1, 1);
    size_t i;
    json_t *pdu;
    json_array_foreach(pdus, i, pdu)
    {
        const char *room = json_string_value(json_object_get(pdu, "room_id"));
        const ax_room_version_t *rv = room != NULL ? ax_room_version_of(txn, room) : NULL;
        bool denied = rv != NULL && !ax_room_server_allowed(txn, room, origin);
        t->room_ids[i] = ax_strdup(room != NULL ? room : "");
        ax_pdu_batch_add(&t->batch, json_deep_copy(pdu), denied ? NULL : rv);
        if (rv == NULL || denied) {
            /* a room this server does not know, or whose ACL shuts the origin out */
            ax_pdu_t *it = &t->batch.items[i];
            if (json_is_object(pdu))
                ax_event_get_id(rv != NULL ? rv : ax_room_version_get("10"), pdu, it->event_id, sizeof(it->event_id));
            result(t, i, denied ? "The room's server ACL denies the sending server" : "Unknown room");
        }
    }
    ax_db_read_end(txn);
    ax_pdu_verify(r, &t->batch, pdus_checked, t, txn_free);
    return 0;
}
