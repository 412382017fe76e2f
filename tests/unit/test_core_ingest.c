/*
 * test_core_ingest.c -- events from another server into a room
 * (core/ingest.c), on a real database through the writer: a remote join and
 * message are accepted into the timeline and the current state; a forbidden
 * event is rejected and changes nothing; an event allowed by the state it
 * was built on but not by the current state is soft-failed; two concurrent
 * remote events fork the room and the next local event joins the fork; a
 * missing prev event is named; a room is adopted from a join's state (v12,
 * whose create event is implied by the room ID); duplicates are harmless.
 */
#include "testutil.h"

#include "core/events.h"
#include "core/rooms.h"

#include <sodium.h>

typedef struct st_fixture_t {
    char *dir;
    ax_db_t *db;
    ax_writer_t *writer;
    ax_signing_key_t key_a, key_b;
    ax_origin_t a;
    const ax_room_version_t *rv;
    char room_id[256];
    char create_id[256]; /* v12: implied by the room ID, never listed in auth_events */
    int64_t ts;
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

/* ---- local events through ax_room_send ---- */

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
                .d = {.room_id = f->room_id[0] ? f->room_id : NULL,
                      .sender = sender,
                      .type = type,
                      .state_key = state_key,
                      .content = c}};
    int rc = run_write(f, send_apply, &s);
    if (rc != 0)
        fail_msg("local %s: %d %s", type, rc, s.reason);
    if (f->room_id[0] == '\0')
        snprintf(f->room_id, sizeof(f->room_id), "%s", s.sent.room_id);
    if (event_id != NULL)
        snprintf(event_id, 256, "%s", s.sent.event_id);
    json_decref(c);
}

/* ---- remote events, built and signed as server b.test would ---- */

/* prev and auth: NULL-terminated lists of event IDs */
static json_t *remote(fixture_t *f, const char *sender, const char *type, const char *state_key, const char *content,
                      const char *const *prev, const char *const *auth, int64_t depth, char *event_id)
{
    json_t *prev_a = json_array(), *auth_a = json_array();
    for (; prev && *prev; ++prev)
        json_array_append_new(prev_a, json_string(*prev));
    for (; auth && *auth; ++auth)
        if (!(f->rv->room_id_from_create && strcmp(*auth, f->create_id) == 0))
            json_array_append_new(auth_a, json_string(*auth));
    json_t *pdu =
        json_pack("{s:o, s:o, s:o, s:I, s:I, s:s, s:s, s:s}", "content", json_loads(content, 0, NULL), "prev_events",
                  prev_a, "auth_events", auth_a, "depth", (json_int_t)depth, "origin_server_ts", (json_int_t)++f->ts,
                  "sender", sender, "type", type, "room_id", f->room_id);
    if (state_key != NULL)
        json_object_set_new(pdu, "state_key", json_string(state_key));
    if (!f->rv->msc3989_redact_origin)
        json_object_set_new(pdu, "origin", json_string("b.test"));
    assert_int_equal(ax_event_sign(pdu, f->rv, "b.test", &f->key_b), 0);
    assert_int_equal(ax_event_compute_id(pdu, f->rv, event_id, 256), 0);
    return pdu;
}

typedef struct st_ingest_t {
    fixture_t *f;
    const char *event_id;
    json_t *pdu;
    json_t *state;
    bool outlier;
    ax_ingest_t out;
} ingest_t;

static int ingest_apply(ax_txn_t *txn, void *arg)
{
    ingest_t *in = arg;
    if (in->outlier)
        return ax_room_ingest_outlier(txn, in->f->rv, in->f->room_id, in->event_id, in->pdu, &in->out);
    return ax_room_ingest(txn, in->f->rv, in->f->room_id, in->event_id, in->pdu, in->state, &in->out);
}

static ax_ingest_t ingest(fixture_t *f, const char *event_id, json_t *pdu, json_t *state, int expect_rc)
{
    ingest_t in = {.f = f, .event_id = event_id, .pdu = pdu, .state = state};
    int rc = run_write(f, ingest_apply, &in);
    if (rc != expect_rc)
        fail_msg("ingest: rc %d (expected %d): %s", rc, expect_rc, in.out.reason);
    json_decref(pdu);
    return in.out;
}

static void outlier(fixture_t *f, const char *event_id, json_t *pdu)
{
    ingest_t in = {.f = f, .event_id = event_id, .pdu = pdu, .outlier = true};
    int rc = run_write(f, ingest_apply, &in);
    if (rc != 0 || in.out.outcome != AX_INGEST_OUTLIER)
        fail_msg("outlier: rc %d outcome %d: %s", rc, in.out.outcome, in.out.reason);
    json_decref(pdu);
}

/* ---- reading back ---- */

static void current(fixture_t *f, const char *type, const char *state_key, char *out)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    if (ax_db_state_get(t, f->room_id, type, state_key, out, 256) != 0)
        out[0] = '\0';
    ax_db_read_end(t);
}

static void membership(fixture_t *f, const char *user, char *out)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    ax_room_membership(t, f->room_id, user, out, 16);
    ax_db_read_end(t);
}

static int count(void *arg, const char *id)
{
    (void)id;
    ++*(size_t *)arg;
    return 0;
}

static size_t extremities(fixture_t *f)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    size_t n = 0;
    ax_db_extremities_foreach(t, f->room_id, count, &n);
    ax_db_read_end(t);
    return n;
}

static unsigned flags_of(fixture_t *f, const char *event_id)
{
    ax_txn_t *t;
    ax_event_rec_t rec;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    unsigned flags = ax_db_event_get_raw(t, event_id, &rec) == 0 ? rec.flags : 0xffff;
    ax_db_read_end(t);
    return flags;
}

/* ---- fixture ---- */

static int setup_version(void **state, const char *version)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->dir = test_mkdtemp();
    char err[256];
    ax_db_options_t o = {.path = f->dir, .map_size = 64 << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &f->db, err, sizeof(err)), 0);
    f->writer = ax_writer_new(f->db);
    assert_int_equal(ax_writer_start(f->writer), 0);
    uint8_t seed_a[crypto_sign_SEEDBYTES], seed_b[crypto_sign_SEEDBYTES];
    memset(seed_a, 1, sizeof(seed_a));
    memset(seed_b, 2, sizeof(seed_b));
    ax_signing_key_from_seed(&f->key_a, "ed25519:a", seed_a);
    ax_signing_key_from_seed(&f->key_b, "ed25519:b", seed_b);
    f->a = (ax_origin_t){"a.test", &f->key_a};
    f->rv = ax_room_version_get(version);
    f->ts = 1700000000000;
    *state = f;
    return 0;
}

static int setup_v10(void **state)
{
    return setup_version(state, "10");
}

static int setup_v12(void **state)
{
    return setup_version(state, "12");
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ax_writer_stop(f->writer);
    ax_writer_free(f->writer);
    ax_db_close(f->db);
    ax_signing_key_dispose(&f->key_a);
    ax_signing_key_dispose(&f->key_b);
    test_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A public room on a.test: create, alice's join, power levels (alice 100), join rules public. */
typedef struct st_room_ids_t {
    char create[256], alice[256], pl[256], jr[256];
} room_ids_t;

static void public_room(fixture_t *f, room_ids_t *r)
{
    char content[256];
    bool v12 = f->rv->privileged_creators;
    snprintf(content, sizeof(content), "{\"room_version\":\"%s\"%s}", f->rv->id,
             v12 ? "" : ",\"creator\":\"@alice:a.test\"");
    if (!v12)
        snprintf(f->room_id, sizeof(f->room_id), "!room%lld:a.test", (long long)f->ts);
    local(f, "@alice:a.test", "m.room.create", "", content, r->create);
    snprintf(f->create_id, sizeof(f->create_id), "%s", r->create);
    local(f, "@alice:a.test", "m.room.member", "@alice:a.test", "{\"membership\":\"join\"}", r->alice);
    /* from v12 the creator's power is implied and may not be listed */
    snprintf(content, sizeof(content),
             "{\"users\":{%s},\"users_default\":0,\"state_default\":50,\"ban\":50,\"kick\":50}",
             v12 ? "" : "\"@alice:a.test\":100");
    local(f, "@alice:a.test", "m.room.power_levels", "", content, r->pl);
    local(f, "@alice:a.test", "m.room.join_rules", "", "{\"join_rule\":\"public\"}", r->jr);
}

/* ---- tests ---- */

static void test_remote_join_and_message(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    public_room(f, &r);
    char join[256], msg[256], m[16], cur[256];
    const char *prev1[] = {r.jr, NULL}, *auth1[] = {r.create, r.pl, r.jr, NULL};
    ax_ingest_t out = ingest(
        f, join,
        remote(f, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", prev1, auth1, 5, join),
        NULL, 0);
    assert_int_equal(out.outcome, AX_INGEST_ACCEPTED);
    assert_true(out.pos > 0);
    membership(f, "@bob:b.test", m);
    assert_string_equal(m, "join");
    current(f, "m.room.member", "@bob:b.test", cur);
    assert_string_equal(cur, join);

    const char *prev2[] = {join, NULL}, *auth2[] = {r.create, r.pl, join, NULL};
    out = ingest(f, msg,
                 remote(f, "@bob:b.test", "m.room.message", NULL, "{\"body\":\"hi\",\"msgtype\":\"m.text\"}", prev2,
                        auth2, 6, msg),
                 NULL, 0);
    assert_int_equal(out.outcome, AX_INGEST_ACCEPTED);
    assert_int_equal(extremities(f), 1);

    /* a local reply builds on the remote message */
    char reply[256];
    local(f, "@alice:a.test", "m.room.message", NULL, "{\"body\":\"hello bob\",\"msgtype\":\"m.text\"}", reply);
    assert_int_equal(extremities(f), 1);
}

static void test_duplicate(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    public_room(f, &r);
    char join[256];
    const char *prev[] = {r.jr, NULL}, *auth[] = {r.create, r.pl, r.jr, NULL};
    json_t *pdu =
        remote(f, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", prev, auth, 5, join);
    ax_ingest_t first = ingest(f, join, json_incref(pdu), NULL, 0);
    ax_ingest_t again = ingest(f, join, pdu, NULL, 0);
    assert_int_equal(first.outcome, AX_INGEST_ACCEPTED);
    assert_int_equal(again.outcome, AX_INGEST_DUPLICATE);
    assert_int_equal(again.pos, first.pos);
}

static void test_forbidden_is_rejected(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    public_room(f, &r);
    char join[256], pl[256], cur[256];
    const char *prev1[] = {r.jr, NULL}, *auth1[] = {r.create, r.pl, r.jr, NULL};
    ingest(f, join,
           remote(f, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", prev1, auth1, 5, join),
           NULL, 0);
    /* bob (power 0) makes himself admin */
    const char *prev2[] = {join, NULL}, *auth2[] = {r.create, r.pl, join, NULL};
    ax_ingest_t out = ingest(f, pl,
                             remote(f, "@bob:b.test", "m.room.power_levels", "",
                                    "{\"users\":{\"@bob:b.test\":100,\"@alice:a.test\":100}}", prev2, auth2, 6, pl),
                             NULL, 0);
    assert_int_equal(out.outcome, AX_INGEST_REJECTED);
    assert_true(strlen(out.reason) > 0);
    assert_true(flags_of(f, pl) & AX_EVENT_F_REJECTED);
    current(f, "m.room.power_levels", "", cur);
    assert_string_equal(cur, r.pl);
    /* an event naming a rejected auth event is rejected too */
    char msg[256];
    const char *prev3[] = {pl, NULL}, *auth3[] = {r.create, pl, join, NULL};
    out = ingest(f, msg, remote(f, "@bob:b.test", "m.room.message", NULL, "{\"body\":\"x\"}", prev3, auth3, 7, msg),
                 NULL, 0);
    assert_int_equal(out.outcome, AX_INGEST_REJECTED);
    /* a sender who is not in the room */
    char stranger[256];
    out = ingest(f, stranger,
                 remote(f, "@eve:b.test", "m.room.message", NULL, "{\"body\":\"x\"}", prev1, auth1, 5, stranger), NULL,
                 0);
    assert_int_equal(out.outcome, AX_INGEST_REJECTED);
}

static void test_soft_fail(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    public_room(f, &r);
    char join[256], ban[256], msg[256], m[16];
    const char *prev1[] = {r.jr, NULL}, *auth1[] = {r.create, r.pl, r.jr, NULL};
    ingest(f, join,
           remote(f, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", prev1, auth1, 5, join),
           NULL, 0);
    local(f, "@alice:a.test", "m.room.member", "@bob:b.test", "{\"membership\":\"ban\"}", ban);
    membership(f, "@bob:b.test", m);
    assert_string_equal(m, "ban");
    /* bob had not seen the ban: his message is fine by its own state, not by the current one */
    const char *prev2[] = {join, NULL}, *auth2[] = {r.create, r.pl, join, NULL};
    ax_ingest_t out = ingest(
        f, msg, remote(f, "@bob:b.test", "m.room.message", NULL, "{\"body\":\"late\"}", prev2, auth2, 6, msg), NULL, 0);
    assert_int_equal(out.outcome, AX_INGEST_SOFT_FAILED);
    assert_true(flags_of(f, msg) & AX_EVENT_F_SOFT_FAILED);
    assert_int_equal(extremities(f), 1); /* not built upon */
}

static void test_fork_and_resolution(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    public_room(f, &r);
    char join[256], topic_b[256], name_b[256], cur[256], next[256];
    const char *prev1[] = {r.jr, NULL}, *auth1[] = {r.create, r.pl, r.jr, NULL};
    ingest(f, join,
           remote(f, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", prev1, auth1, 5, join),
           NULL, 0);
    local(f, "@alice:a.test", "m.room.power_levels", "",
          f->rv->privileged_creators
              ? "{\"users\":{\"@bob:b.test\":50},\"users_default\":0,\"state_default\":50}"
              : "{\"users\":{\"@alice:a.test\":100,\"@bob:b.test\":50},\"users_default\":0,\"state_default\":50}",
          NULL);
    char pl2[256];
    current(f, "m.room.power_levels", "", pl2);
    /* alice and bob change different state at the same time, each on what they saw */
    char topic_a[256];
    local(f, "@alice:a.test", "m.room.topic", "", "{\"topic\":\"alice's\"}", topic_a);
    const char *prev2[] = {pl2, NULL}, *auth2[] = {r.create, pl2, join, NULL};
    ax_ingest_t out =
        ingest(f, name_b, remote(f, "@bob:b.test", "m.room.name", "", "{\"name\":\"bob's\"}", prev2, auth2, 7, name_b),
               NULL, 0);
    assert_int_equal(out.outcome, AX_INGEST_ACCEPTED);
    assert_int_equal(extremities(f), 2);
    /* both changes are in the current state */
    current(f, "m.room.topic", "", cur);
    assert_string_equal(cur, topic_a);
    current(f, "m.room.name", "", cur);
    assert_string_equal(cur, name_b);
    /* the state clients see at that position is the resolved one, not the event's own branch */
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    json_t *at = ax_room_state_at(t, f->room_id, out.pos);
    ax_db_read_end(t);
    assert_string_equal(ax_state_map_get(at, "m.room.topic", ""), topic_a);
    assert_string_equal(ax_state_map_get(at, "m.room.name", ""), name_b);
    json_decref(at);
    /* a conflicting change on the fork: bob's topic, built before alice's */
    out = ingest(f, topic_b,
                 remote(f, "@bob:b.test", "m.room.topic", "", "{\"topic\":\"bob's\"}", (const char *[]){name_b, NULL},
                        auth2, 8, topic_b),
                 NULL, 0);
    assert_int_equal(out.outcome, AX_INGEST_ACCEPTED);
    current(f, "m.room.topic", "", cur);
    assert_true(strcmp(cur, topic_a) == 0 || strcmp(cur, topic_b) == 0);
    /* the next local event joins both branches */
    local(f, "@alice:a.test", "m.room.message", NULL, "{\"body\":\"merged\"}", next);
    assert_int_equal(extremities(f), 1);
    /* /sync's view of the state at the latest position agrees with the current state */
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    json_t *map = ax_room_state_at(t, f->room_id, UINT64_MAX - 1);
    char topic_now[256];
    current(f, "m.room.topic", "", topic_now);
    assert_string_equal(ax_state_map_get(map, "m.room.topic", ""), topic_now);
    assert_string_equal(ax_state_map_get(map, "m.room.name", ""), name_b);
    json_decref(map);
    ax_db_read_end(t);
}

static void test_missing_prev_is_named(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    public_room(f, &r);
    char msg[256];
    const char *prev[] = {"$unknownunknownunknownunknownunknownunknown", NULL},
               *auth[] = {r.create, r.pl, r.alice, NULL};
    ingest_t in = {.f = f,
                   .event_id = msg,
                   .pdu = remote(f, "@alice:a.test", "m.room.message", NULL, "{\"body\":\"x\"}", prev, auth, 9, msg)};
    assert_int_equal(run_write(f, ingest_apply, &in), AX_ENOTFOUND);
    assert_string_equal(in.out.reason, prev[0]);
    json_decref(in.pdu);
    assert_int_equal(flags_of(f, msg), 0xffff); /* nothing stored */
}

/* Joining a room that lives on b.test: its state arrives as outliers, then our join with that state. */
static void test_adopt_room_from_join_state(void **state)
{
    fixture_t *f = *state;
    /* v12: the room ID is the create event's reference hash */
    json_t *create = json_pack("{s:{s:s}, s:[], s:[], s:i, s:I, s:s, s:s, s:s}", "content", "room_version", "12",
                               "prev_events", "auth_events", "depth", 1, "origin_server_ts", (json_int_t)++f->ts,
                               "sender", "@carol:b.test", "type", "m.room.create", "state_key", "");
    assert_int_equal(ax_event_sign(create, f->rv, "b.test", &f->key_b), 0);
    char create_id[256], carol[256], pl[256], jr[256], join[256], m[16];
    assert_int_equal(ax_event_compute_id(create, f->rv, create_id, sizeof(create_id)), 0);
    assert_int_equal(ax_event_room_id_from_create(f->rv, create, f->room_id, sizeof(f->room_id)), 0);
    outlier(f, create_id, create);
    const char *p1[] = {create_id, NULL}, *a1[] = {NULL};
    outlier(
        f, carol,
        remote(f, "@carol:b.test", "m.room.member", "@carol:b.test", "{\"membership\":\"join\"}", p1, a1, 2, carol));
    const char *p2[] = {carol, NULL}, *a2[] = {carol, NULL};
    outlier(
        f, pl,
        remote(f, "@carol:b.test", "m.room.power_levels", "", "{\"users\":{},\"state_default\":50}", p2, a2, 3, pl));
    const char *p3[] = {pl, NULL}, *a3[] = {pl, carol, NULL};
    outlier(f, jr, remote(f, "@carol:b.test", "m.room.join_rules", "", "{\"join_rule\":\"public\"}", p3, a3, 4, jr));

    json_t *state_map =
        json_pack("{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}", "m.room.create", "", create_id, "m.room.member",
                  "@carol:b.test", carol, "m.room.power_levels", "", pl, "m.room.join_rules", "", jr);
    /* our user's join, as make_join/send_join would have it (signed by us, as a.test) */
    const char *p4[] = {jr, NULL}, *a4[] = {pl, jr, NULL};
    json_t *pdu =
        remote(f, "@dave:a.test", "m.room.member", "@dave:a.test", "{\"membership\":\"join\"}", p4, a4, 5, join);
    ax_ingest_t out = ingest(f, join, pdu, state_map, 0);
    json_decref(state_map);
    assert_int_equal(out.outcome, AX_INGEST_ACCEPTED);
    membership(f, "@dave:a.test", m);
    assert_string_equal(m, "join");
    membership(f, "@carol:b.test", m);
    assert_string_equal(m, "join");
    char cur[256];
    current(f, "m.room.join_rules", "", cur);
    assert_string_equal(cur, jr);
    assert_true(flags_of(f, carol) & AX_EVENT_F_OUTLIER);
    /* the room is ours to send in now */
    char msg[256];
    local(f, "@dave:a.test", "m.room.message", NULL, "{\"body\":\"hello carol\"}", msg);
    /* carol's next event on her side, after our join, is accepted on ours */
    char reply[256];
    const char *p5[] = {msg, NULL}, *a5[] = {pl, carol, NULL};
    out =
        ingest(f, reply, remote(f, "@carol:b.test", "m.room.message", NULL, "{\"body\":\"hi dave\"}", p5, a5, 7, reply),
               NULL, 0);
    assert_int_equal(out.outcome, AX_INGEST_ACCEPTED);
}

static void test_outlier_with_missing_auth_event(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    public_room(f, &r);
    char ev[256];
    const char *prev[] = {r.jr, NULL}, *auth[] = {r.create, "$missingmissingmissingmissingmissingmissing", NULL};
    ingest_t in = {.f = f,
                   .event_id = ev,
                   .outlier = true,
                   .pdu = remote(f, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", prev,
                                 auth, 5, ev)};
    assert_int_equal(run_write(f, ingest_apply, &in), AX_ENOTFOUND);
    assert_string_equal(in.out.reason, auth[1]);
    json_decref(in.pdu);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_remote_join_and_message, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_forbidden_is_rejected, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_soft_fail, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_fork_and_resolution, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_fork_and_resolution, setup_v12, teardown),
        cmocka_unit_test_setup_teardown(test_missing_prev_is_named, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_room_from_join_state, setup_v12, teardown),
        cmocka_unit_test_setup_teardown(test_outlier_with_missing_auth_event, setup_v10, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
