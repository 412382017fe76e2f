/*
 * test_core_push_engine.c -- the push engine in the event pipeline
 * (core/push.c) on a real database through the writer: local events and
 * events from another server (ax_room_ingest) notify the local members,
 * never the sender; a rejected remote event notifies nobody; receipts and
 * the sender's own events reset counts; the writer-side caches forget what a
 * rolled-back transaction taught them.
 */
#include "testutil.h"

#include "core/events.h"
#include "core/push.h"
#include "core/rooms.h"
#include "storage/storage_internal.h"

#include <sodium.h>

#define ALICE "@alice:a.test"
#define CAROL "@carol:a.test"
#define BOB   "@bob:b.test"

typedef struct st_fixture_t {
    char *dir;
    ax_db_t *db;
    ax_writer_t *writer;
    ax_push_t *push;
    ax_signing_key_t key_a, key_b;
    ax_origin_t a;
    const ax_room_version_t *rv;
    char room_id[256];
    char create[256], pl[256], jr[256], last[256];
    int64_t ts, depth;
} fixture_t;

/* ---- running code on the writer ---- */

typedef struct st_fn_job_t {
    ax_wjob_t super;
    int (*fn)(ax_txn_t *txn, void *arg);
    void *arg;
} fn_job_t;

static int fn_apply(ax_wjob_t *job, ax_txn_t *txn)
{
    fn_job_t *j = (fn_job_t *)job;
    return j->fn(txn, j->arg);
}

static int run_write(fixture_t *f, int (*fn)(ax_txn_t *txn, void *arg), void *arg)
{
    fn_job_t j = {.super = {.apply = fn_apply}, .fn = fn, .arg = arg};
    return ax_writer_run(f->writer, &j.super);
}

/* ---- local and remote events ---- */

typedef struct st_send_t {
    fixture_t *f;
    ax_draft_t d;
    ax_sent_t sent;
    char reason[256];
} send_t;

static int send_apply(ax_txn_t *txn, void *arg)
{
    send_t *s = arg;
    return ax_room_send(txn, &s->f->a, &s->d, &s->sent, s->reason, sizeof(s->reason));
}

static void local(fixture_t *f, const char *sender, const char *type, const char *state_key, const char *content,
                  char *event_id)
{
    json_t *c = json_loads(content, 0, NULL);
    assert_non_null(c);
    send_t s = {.f = f,
                .d = {.room_id = f->room_id, .sender = sender, .type = type, .state_key = state_key, .content = c}};
    int rc = run_write(f, send_apply, &s);
    if (rc != 0)
        fail_msg("local %s: %d %s", type, rc, s.reason);
    snprintf(f->last, sizeof(f->last), "%s", s.sent.event_id);
    if (event_id != NULL)
        snprintf(event_id, 256, "%s", s.sent.event_id);
    json_decref(c);
}

typedef struct st_ingest_t {
    fixture_t *f;
    const char *event_id;
    json_t *pdu;
    ax_ingest_t out;
} ingest_t;

static int ingest_apply(ax_txn_t *txn, void *arg)
{
    ingest_t *in = arg;
    return ax_room_ingest(txn, in->f->rv, in->f->room_id, in->event_id, in->pdu, NULL, &in->out);
}

/* An event of b.test on the room's newest event, through ax_room_ingest; 'auth' is NULL-terminated. */
static ax_ingest_outcome_t remote(fixture_t *f, const char *type, const char *state_key, const char *content,
                                  const char *const *auth, char *event_id)
{
    json_t *auth_a = json_array();
    for (; *auth != NULL; ++auth)
        json_array_append_new(auth_a, json_string(*auth));
    json_t *pdu = json_pack("{s:o, s:[s], s:o, s:I, s:I, s:s, s:s, s:s, s:s}", "content", json_loads(content, 0, NULL),
                            "prev_events", f->last, "auth_events", auth_a, "depth", (json_int_t)(f->depth += 10),
                            "origin_server_ts", (json_int_t)++f->ts, "sender", BOB, "type", type, "room_id", f->room_id,
                            "origin", "b.test");
    if (state_key != NULL)
        json_object_set_new(pdu, "state_key", json_string(state_key));
    assert_int_equal(ax_event_sign(pdu, f->rv, "b.test", &f->key_b), 0);
    assert_int_equal(ax_event_compute_id(pdu, f->rv, event_id, 256), 0);
    ingest_t in = {f, event_id, pdu, {0}};
    int rc = run_write(f, ingest_apply, &in);
    if (rc != 0)
        fail_msg("ingest %s: %d %s", type, rc, in.out.reason);
    json_decref(pdu);
    if (in.out.outcome == AX_INGEST_ACCEPTED)
        snprintf(f->last, sizeof(f->last), "%s", event_id);
    return in.out.outcome;
}

/* ---- reading back ---- */

static uint64_t unread(fixture_t *f, const char *user, uint64_t *highlights)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    ax_push_counts_t c;
    ax_push_room_counts(t, user, f->room_id, &c, NULL);
    ax_db_read_end(t);
    if (highlights != NULL)
        *highlights = c.highlights;
    return c.notifications;
}

static int count_notif(void *arg, uint64_t pos, const ax_notif_t *n)
{
    (void)pos, (void)n;
    ++*(size_t *)arg;
    return 0;
}

static int list_pos(void *arg, uint64_t pos, const ax_notif_t *n)
{
    (void)n;
    char *out = arg;
    snprintf(out + strlen(out), 64 - strlen(out), "%s%llu", out[0] ? "," : "", (unsigned long long)pos);
    return 0;
}

/* The positions of the user's notifications from 'from' on, as "1,2,3" (64 bytes into 'out'). */
static const char *positions(fixture_t *f, const char *user, uint64_t from, bool backwards, char *out)
{
    ax_txn_t *t;
    out[0] = '\0';
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    assert_int_equal(ax_db_notif_scan(t, user, from, backwards, list_pos, out), 0);
    ax_db_read_end(t);
    return out;
}

static size_t notifications(fixture_t *f, const char *user)
{
    ax_txn_t *t;
    size_t n = 0;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    ax_db_notif_scan(t, user, 0, false, count_notif, &n);
    ax_db_read_end(t);
    return n;
}

/* ---- fixture: a public v10 room on a.test with alice and carol ---- */

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->dir = test_mkdtemp();
    char err[256];
    ax_db_options_t o = {.path = f->dir, .map_size = 64 << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &f->db, err, sizeof(err)), 0);
    f->writer = ax_writer_new(f->db);
    f->push = ax_push_new("a.test");
    ax_push_attach(f->push, f->writer);
    assert_int_equal(ax_writer_start(f->writer), 0);
    uint8_t seed_a[crypto_sign_SEEDBYTES], seed_b[crypto_sign_SEEDBYTES];
    memset(seed_a, 1, sizeof(seed_a));
    memset(seed_b, 2, sizeof(seed_b));
    ax_signing_key_from_seed(&f->key_a, "ed25519:a", seed_a);
    ax_signing_key_from_seed(&f->key_b, "ed25519:b", seed_b);
    f->a = (ax_origin_t){"a.test", &f->key_a};
    f->rv = ax_room_version_get("10");
    f->ts = 1700000000000;
    f->depth = 100;
    snprintf(f->room_id, sizeof(f->room_id), "!push:a.test");
    local(f, ALICE, "m.room.create", "", "{\"room_version\":\"10\",\"creator\":\"" ALICE "\"}", f->create);
    local(f, ALICE, "m.room.member", ALICE, "{\"membership\":\"join\"}", NULL);
    local(f, ALICE, "m.room.power_levels", "", "{\"users\":{\"" ALICE "\":100},\"users_default\":0}", f->pl);
    local(f, ALICE, "m.room.join_rules", "", "{\"join_rule\":\"public\"}", f->jr);
    local(f, CAROL, "m.room.member", CAROL, "{\"membership\":\"join\"}", NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ax_writer_stop(f->writer);
    ax_writer_free(f->writer);
    ax_push_free(f->push);
    ax_db_close(f->db);
    ax_signing_key_dispose(&f->key_a);
    ax_signing_key_dispose(&f->key_b);
    test_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* bob of b.test joins through federation; returns his join's event ID */
static void bob_joins(fixture_t *f, char *join)
{
    const char *auth[] = {f->create, f->pl, f->jr, NULL};
    assert_int_equal(remote(f, "m.room.member", BOB, "{\"membership\":\"join\"}", auth, join), AX_INGEST_ACCEPTED);
}

/* ---- tests ---- */

static void test_local_events(void **state)
{
    fixture_t *f = *state;
    /* carol's join did not notify alice (.m.rule.member_event) */
    assert_int_equal(unread(f, ALICE, NULL), 0);
    local(f, ALICE, "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":\"hi\"}", NULL);
    local(f, ALICE, "m.room.message", NULL,
          "{\"msgtype\":\"m.text\",\"body\":\"carol!\",\"m.mentions\":{\"user_ids\":[\"" CAROL "\"]}}", NULL);
    uint64_t hl;
    assert_int_equal(unread(f, CAROL, &hl), 2);
    assert_int_equal(hl, 1);
    assert_int_equal(unread(f, ALICE, NULL), 0); /* never for her own events */
    assert_int_equal(notifications(f, CAROL), 2);
    assert_int_equal(notifications(f, ALICE), 0);
    /* carol answers: her counts are read up to her event, alice now has one */
    local(f, CAROL, "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":\"yes?\"}", NULL);
    assert_int_equal(unread(f, CAROL, NULL), 0);
    assert_int_equal(unread(f, ALICE, NULL), 1);
}

static void test_remote_events_notify_local_members(void **state)
{
    fixture_t *f = *state;
    char join[256], msg[256], pl[256];
    bob_joins(f, join);
    const char *auth[] = {f->create, f->pl, join, NULL};
    assert_int_equal(remote(f, "m.room.message", NULL,
                            "{\"msgtype\":\"m.text\",\"body\":\"from afar\",\"m.mentions\":{\"user_ids\":[\"" ALICE
                            "\"]}}",
                            auth, msg),
                     AX_INGEST_ACCEPTED);
    uint64_t hl;
    assert_int_equal(unread(f, ALICE, &hl), 1);
    assert_int_equal(hl, 1);
    assert_int_equal(unread(f, CAROL, &hl), 1);
    assert_int_equal(hl, 0);
    /* nothing is kept for the remote user */
    assert_int_equal(notifications(f, BOB), 0);
    /* a rejected event (bob makes himself admin) notifies nobody */
    assert_int_equal(remote(f, "m.room.power_levels", "", "{\"users\":{\"" BOB "\":100}}", auth, pl),
                     AX_INGEST_REJECTED);
    assert_int_equal(unread(f, ALICE, NULL), 1);
    assert_int_equal(notifications(f, CAROL), 1);
}

typedef struct st_receipt_t {
    fixture_t *f;
    const char *user;
    const char *event_id;
    const char *thread;
} receipt_t;

static int receipt_apply(ax_txn_t *txn, void *arg)
{
    receipt_t *r = arg;
    ax_event_rec_t rec;
    int rc = ax_db_event_get_raw(txn, r->event_id, &rec);
    if (rc != 0)
        return rc;
    return ax_push_receipt(ax_push_of(txn), txn, r->user, r->f->room_id, r->thread, rec.pos,
                           ax_txn_next_stream_pos(txn));
}

static void test_receipts(void **state)
{
    fixture_t *f = *state;
    char e[3][256];
    for (int i = 0; i < 3; ++i)
        local(f, ALICE, "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":\"x\"}", e[i]);
    assert_int_equal(unread(f, CAROL, NULL), 3);
    receipt_t r = {f, CAROL, e[0], NULL};
    assert_int_equal(run_write(f, receipt_apply, &r), 0);
    assert_int_equal(unread(f, CAROL, NULL), 2); /* a receipt on an older event recounts */
    r.event_id = e[2];
    assert_int_equal(run_write(f, receipt_apply, &r), 0);
    assert_int_equal(unread(f, CAROL, NULL), 0);
    r.event_id = e[0];
    assert_int_equal(run_write(f, receipt_apply, &r), 0);
    assert_int_equal(unread(f, CAROL, NULL), 0);  /* never backwards */
    assert_int_equal(notifications(f, CAROL), 3); /* the list keeps what was read */
}

/*
 * A job that teaches the engine carol's new rules (by storing them and then
 * sending an event) and then fails after writing: the batch is rolled back.
 * The next job changes someone else's rules, so the stored generation is
 * the same number again; only the writer's abort epoch tells the engine
 * that what it cached never happened.
 */
typedef struct st_rollback_t {
    fixture_t *f;
    int step;
} rollback_t;

static int rollback_apply(ax_txn_t *txn, void *arg)
{
    rollback_t *rb = arg;
    fixture_t *f = rb->f;
    char msg[256];
    json_t *stored = NULL;
    const char *user = rb->step == 0 ? CAROL : ALICE;
    if (ax_push_rule_set_enabled(&stored, AX_PUSH_OVERRIDE, ".m.rule.master", rb->step == 0, msg, sizeof(msg)) != 0 ||
        ax_push_rules_store(txn, user, stored) != 0) {
        json_decref(stored);
        return AX_EIO;
    }
    json_decref(stored);
    json_t *c = json_pack("{s:s, s:s}", "msgtype", "m.text", "body", "probe");
    ax_draft_t d = {.room_id = f->room_id, .sender = ALICE, .type = "m.room.message", .content = c};
    ax_sent_t sent;
    char reason[256];
    int rc = ax_room_send(txn, &f->a, &d, &sent, reason, sizeof(reason));
    json_decref(c);
    if (rc != 0)
        return rc;
    return rb->step == 0 ? AX_ECONFLICT : 0; /* the first one fails after writing */
}

static void test_rollback_forgets_cached_rules(void **state)
{
    fixture_t *f = *state;
    rollback_t rb = {f, 0};
    assert_int_equal(run_write(f, rollback_apply, &rb), AX_ECONFLICT);
    assert_int_equal(unread(f, CAROL, NULL), 0); /* nothing of it is left */
    rb.step = 1;
    assert_int_equal(run_write(f, rollback_apply, &rb), 0);
    /* carol never muted anything: the probe of the second job notifies her */
    assert_int_equal(unread(f, CAROL, NULL), 1);
}

typedef struct st_store_t {
    const char *user;
    json_t *stored;
} store_t;

static int store_apply(ax_txn_t *txn, void *arg)
{
    store_t *st = arg;
    return ax_push_rules_store(txn, st->user, st->stored);
}

static void test_rule_change_is_seen(void **state)
{
    fixture_t *f = *state;
    local(f, ALICE, "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":\"one\"}", NULL);
    assert_int_equal(unread(f, CAROL, NULL), 1);
    /* carol mutes the room: her cached compiled rules must not be used any more */
    char msg[256];
    json_t *stored = NULL, *body = json_pack("{s:[]}", "actions");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_ROOM, f->room_id, body, NULL, NULL, msg, sizeof(msg)), 0);
    store_t st = {CAROL, stored};
    assert_int_equal(run_write(f, store_apply, &st), 0);
    local(f, ALICE, "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":\"two\"}", NULL);
    assert_int_equal(unread(f, CAROL, NULL), 1);
    /* and unmutes it */
    assert_int_equal(ax_push_rule_delete(&stored, AX_PUSH_ROOM, f->room_id, msg, sizeof(msg)), 0);
    st.stored = stored;
    assert_int_equal(run_write(f, store_apply, &st), 0);
    local(f, ALICE, "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":\"three\"}", NULL);
    assert_int_equal(unread(f, CAROL, NULL), 2);
    json_decref(body);
    json_decref(stored);
}

typedef struct st_notif_job_t {
    const char *user;
    uint64_t pos, ts;
    bool highlight;
    uint64_t plain_before, highlight_before, next;
    int op; /* 0 put, 1 prune, 2 move the staged ones into the list */
} notif_job_t;

static int notif_apply(ax_txn_t *txn, void *arg)
{
    notif_job_t *j = arg;
    if (j->op == 1)
        return ax_db_notif_prune(txn, j->user, j->plain_before, j->highlight_before, 4, &j->next);
    if (j->op == 2) {
        size_t moved;
        bool drained;
        int rc = ax_db_notif_move(txn, ax_db_notif_bucket(j->user), 5, &moved, &drained);
        j->next = moved | (drained ? 0x100 : 0);
        return rc;
    }
    ax_notif_t n = {
        .highlight = j->highlight, .ts = j->ts, .room_id = "!r:a.test", .thread = "", .actions = "[\"notify\"]"};
    return ax_db_notif_put(txn, j->user, j->pos, &n);
}

/* The notifications list stays bounded: old plain entries go after a day, highlights after 30. */
static void test_notification_pruning(void **state)
{
    fixture_t *f = *state;
    const uint64_t day = 86400000ULL, now = 100 * day;
    /* pos: age in days (h = highlight): 1:40h 2:10h 3:5 4:3 5:2h 6:0.5 7:0.2h 8:0.1 */
    static const struct {
        uint64_t pos;
        double age;
        bool hl;
    } rows[] = {{1, 40, true}, {2, 10, true},   {3, 5, false},  {4, 3, false},
                {5, 2, true},  {6, 0.5, false}, {7, 0.2, true}, {8, 0.1, false}};
    for (size_t i = 0; i < AX_ARRAY_SIZE(rows); ++i) {
        notif_job_t j = {CAROL, rows[i].pos, now - (uint64_t)(rows[i].age * (double)day), rows[i].hl, 0, 0, 0, 0};
        assert_int_equal(run_write(f, notif_apply, &j), 0);
    }
    assert_int_equal(notifications(f, CAROL), 8);
    /* pruning looks at the list only: the staged ones are the newest (and staged for a moment) */
    notif_job_t p = {CAROL, 0, 0, false, now - day, now - 30 * day, 0, 1};
    assert_int_equal(run_write(f, notif_apply, &p), 0);
    assert_int_equal(notifications(f, CAROL), 8);
    /* moved in batches, the oldest first; the list and the stage read as one all along */
    notif_job_t m = {.user = CAROL, .op = 2};
    assert_int_equal(run_write(f, notif_apply, &m), 0);
    assert_int_equal(m.next, 5);
    char buf[64];
    assert_string_equal(positions(f, CAROL, UINT64_MAX, true, buf), "8,7,6,5,4,3,2,1");
    assert_string_equal(positions(f, CAROL, 6, true, buf), "6,5,4,3,2,1");
    assert_string_equal(positions(f, CAROL, 4, true, buf), "4,3,2,1");
    assert_string_equal(positions(f, CAROL, 4, false, buf), "4,5,6,7,8");
    assert_string_equal(positions(f, CAROL, 7, false, buf), "7,8");
    assert_string_equal(positions(f, ALICE, 0, false, buf), "");
    assert_int_equal(run_write(f, notif_apply, &m), 0);
    assert_int_equal(m.next, 3 | 0x100);
    assert_int_equal(notifications(f, CAROL), 8);
    /* at most 4 looked at: deletes 1 (a highlight over 30 days), 3 and 4 (plain over a day), keeps 2 */
    assert_int_equal(run_write(f, notif_apply, &p), 0);
    assert_int_equal(p.next, 1); /* a full batch: more may be due */
    assert_int_equal(notifications(f, CAROL), 5);
    assert_int_equal(run_write(f, notif_apply, &p), 0);
    /* stops at 6, the oldest plain one to keep; the highlights 2 and 5 stay */
    assert_int_equal(p.next, now - day / 2);
    assert_int_equal(notifications(f, CAROL), 5);
    /* a month later only what is recent enough is left */
    p.plain_before = now + 30 * day;
    p.highlight_before = now - 5 * day;
    do {
        assert_int_equal(run_write(f, notif_apply, &p), 0);
    } while (p.next == 1);
    assert_int_equal(notifications(f, CAROL), 2); /* 5 and 7, highlights younger than 5 days */
    assert_int_equal(p.next, 0);
}

/* A user of a bucket other than 'other's (or the same with 'same'), as "@uN:a.test" in 'out'. */
static const char *user_in_bucket(const char *other, bool same, char *out, size_t cap)
{
    for (int i = 0;; ++i) {
        snprintf(out, cap, "@u%d:a.test", i);
        if ((ax_db_notif_bucket(out) == ax_db_notif_bucket(other)) == same && strcmp(out, other) != 0)
            return out;
    }
}

/* The stage moves a bucket (an eighth of the users) at a time; every user reads list and stage as one. */
static void test_notification_buckets(void **state)
{
    fixture_t *f = *state;
    char other[64], near[64], buf[64];
    user_in_bucket(CAROL, false, other, sizeof(other));
    user_in_bucket(CAROL, true, near, sizeof(near));
    const char *users[] = {CAROL, other, near};
    for (uint64_t pos = 1; pos <= 9; ++pos) {
        notif_job_t j = {users[(pos - 1) % 3], pos, 1000 + pos, false, 0, 0, 0, 0};
        assert_int_equal(run_write(f, notif_apply, &j), 0);
    }
    /* other's bucket: its three, nobody else's */
    notif_job_t m = {.user = other, .op = 2};
    assert_int_equal(run_write(f, notif_apply, &m), 0);
    assert_int_equal(m.next, 3);
    assert_string_equal(positions(f, other, UINT64_MAX, true, buf), "8,5,2");
    assert_string_equal(positions(f, CAROL, UINT64_MAX, true, buf), "7,4,1");
    assert_string_equal(positions(f, near, 0, false, buf), "3,6,9");
    /* a newer one of other's is staged again: read after the listed ones, both ways */
    notif_job_t j = {other, 10, 2000, true, 0, 0, 0, 0};
    assert_int_equal(run_write(f, notif_apply, &j), 0);
    assert_string_equal(positions(f, other, UINT64_MAX, true, buf), "10,8,5,2");
    assert_string_equal(positions(f, other, 6, false, buf), "8,10");
    assert_string_equal(positions(f, other, 9, true, buf), "8,5,2");
    /* carol's bucket takes near's too (the same bucket), at most 5 of them, the oldest */
    m.user = CAROL;
    assert_int_equal(run_write(f, notif_apply, &m), 0);
    assert_int_equal(m.next, 5);
    assert_string_equal(positions(f, CAROL, UINT64_MAX, true, buf), "7,4,1");
    assert_string_equal(positions(f, near, UINT64_MAX, true, buf), "9,6,3");
    assert_int_equal(run_write(f, notif_apply, &m), 0);
    assert_int_equal(m.next, 1); /* near's 9; other's 10 is still staged */
    m.user = other;
    assert_int_equal(run_write(f, notif_apply, &m), 0);
    assert_int_equal(m.next, 1 | 0x100);
    assert_int_equal(notifications(f, CAROL), 3);
    assert_int_equal(notifications(f, other), 4);
    assert_int_equal(notifications(f, near), 3);
    assert_string_equal(positions(f, other, UINT64_MAX, true, buf), "10,8,5,2");
}

/* Schema 5 staged entries without a bucket: the migration to 6 moves them into the lists. */
static int stage_unbucketed(ax_txn_t *txn, void *arg)
{
    (void)arg;
    static const char *const users[] = {CAROL, ALICE, CAROL};
    for (uint64_t pos = 1; pos <= 3; ++pos) {
        uint8_t key[64], val[64];
        size_t ulen = strlen(users[pos - 1]);
        for (int i = 0; i < 8; ++i)
            key[i] = (uint8_t)(pos >> (56 - 8 * i));
        memcpy(key + 8, users[pos - 1], ulen);
        memset(val, 0, 9);
        memcpy(val + 9, "!r:a.test\0\0[\"notify\"]", 22);
        int rc = ax_kv_put(txn, AX_DBI_posuser_notif, key, 8 + ulen, val, 31, 0);
        if (rc != 0)
            return rc;
    }
    return ax_db_meta_put_u64(txn, "schema_version", 5);
}

static void test_notification_stage_migration(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(run_write(f, stage_unbucketed, NULL), 0);
    ax_writer_stop(f->writer);
    ax_writer_free(f->writer);
    ax_db_close(f->db);
    char err[256];
    ax_db_options_t o = {.path = f->dir, .map_size = 64 << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &f->db, err, sizeof(err)), 0);
    f->writer = ax_writer_new(f->db);
    assert_int_equal(ax_writer_start(f->writer), 0);
    char buf[64];
    assert_string_equal(positions(f, CAROL, UINT64_MAX, true, buf), "3,1");
    assert_string_equal(positions(f, ALICE, 0, false, buf), "2");
    ax_txn_t *t;
    uint64_t version;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    assert_int_equal(ax_db_meta_get_u64(t, "schema_version", &version), 0);
    ax_db_read_end(t);
    assert_int_equal(version, AX_SCHEMA_VERSION);
    /* nothing left staged: a move finds the stage empty */
    notif_job_t m = {.user = CAROL, .op = 2};
    assert_int_equal(run_write(f, notif_apply, &m), 0);
    assert_int_equal(m.next, 0 | 0x100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_events_notify_local_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_forgets_cached_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule_change_is_seen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notification_pruning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notification_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notification_stage_migration, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
