/*
 * test_core_spaces.c -- the space hierarchy walk and who may preview a room
 * (core/spaces.c), on a real database through the writer: children tied on
 * timestamp sort by room ID; rooms of other servers come from the remote
 * callback and are judged like local ones (an invite we hold counts);
 * knock and restricted join rules count only in room versions that have
 * them; the walk's bound and its pages.
 */
#include "testutil.h"

#include "core/rooms.h"

#include <sodium.h>

typedef struct st_fixture_t {
    char *dir;
    ax_db_t *db;
    ax_writer_t *writer;
    ax_signing_key_t key;
    ax_origin_t origin;
    /* what the remote callback was asked */
    char asked[8][64];
    char asked_via[8][64];
    size_t nasked;
} fixture_t;

#define ALICE "@alice:a.test"
#define BOB   "@bob:a.test"

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

typedef struct st_send_t {
    fixture_t *f;
    ax_draft_t d;
    ax_sent_t sent;
    char reason[256];
} send_t;

static int send_apply(ax_txn_t *txn, void *arg)
{
    send_t *s = arg;
    return ax_room_send(txn, &s->f->origin, &s->d, &s->sent, s->reason, sizeof(s->reason));
}

/* Sends an event as 'sender' (state when 'state_key' is not NULL) at 'ts' (0: now). */
static void event(fixture_t *f, const char *room_id, const char *sender, const char *type, const char *state_key,
                  const char *content, uint64_t ts)
{
    json_t *c = json_loads(content, 0, NULL);
    assert_non_null(c);
    send_t s = {
        .f = f,
        .d = {.room_id = room_id, .sender = sender, .type = type, .state_key = state_key, .content = c, .ts = ts}};
    fn_job_t j = {.super = {.apply = fn_apply}, .fn = send_apply, .arg = &s};
    int rc = ax_writer_run(f->writer, &j.super);
    if (rc != 0)
        fail_msg("%s in %s: %d %s", type, room_id, rc, s.reason);
    json_decref(c);
}

/* Alice's room 'room_id' of 'version': a space when 'space', with 'join_rule' (JSON content). */
static void room(fixture_t *f, const char *room_id, const char *version, bool space, const char *join_rules)
{
    char content[256];
    snprintf(content, sizeof(content), "{\"room_version\":\"%s\",\"creator\":\"%s\"%s}", version, ALICE,
             space ? ",\"type\":\"m.space\"" : "");
    event(f, room_id, ALICE, "m.room.create", "", content, 0);
    event(f, room_id, ALICE, "m.room.member", ALICE, "{\"membership\":\"join\"}", 0);
    event(f, room_id, ALICE, "m.room.power_levels", "", "{\"users\":{\"" ALICE "\":100},\"invite\":0}", 0);
    event(f, room_id, ALICE, "m.room.join_rules", "", join_rules, 0);
}

static void space_link(fixture_t *f, const char *parent, const char *child, uint64_t ts)
{
    event(f, parent, ALICE, "m.space.child", child, "{\"via\":[\"a.test\"]}", ts);
}

/* The remote callback of the tests: b.test's rooms, as federation would summarise them. */
static json_t *remote(void *arg, const char *room_id, const json_t *via)
{
    fixture_t *f = arg;
    if (f->nasked < 8) {
        snprintf(f->asked[f->nasked], 64, "%s", room_id);
        snprintf(f->asked_via[f->nasked], 64, "%s", json_string_value(json_array_get(via, 0)));
        f->nasked++;
    }
    if (strcmp(room_id, "!r1:b.test") == 0) /* a public space, its links unordered */
        return json_loads(
            "{\"room_id\":\"!r1:b.test\",\"name\":\"Remote\",\"num_joined_members\":3,"
            "\"world_readable\":false,\"guest_can_join\":false,\"join_rule\":\"public\","
            "\"room_type\":\"m.space\",\"children_state\":["
            "{\"type\":\"m.space.child\",\"state_key\":\"!r2:b.test\",\"content\":{\"via\":[\"b.test\"]},"
            "\"sender\":\"@x:b.test\",\"origin_server_ts\":30},"
            "{\"type\":\"m.space.child\",\"state_key\":\"!gone:b.test\",\"content\":{},"
            "\"sender\":\"@x:b.test\",\"origin_server_ts\":5},"
            "{\"type\":\"m.space.child\",\"state_key\":\"!pub:a.test\",\"content\":{\"via\":[\"a.test\"]},"
            "\"sender\":\"@x:b.test\",\"origin_server_ts\":10}]}",
            0, NULL);
    if (strcmp(room_id, "!r2:b.test") == 0) /* invite only */
        return json_loads("{\"room_id\":\"!r2:b.test\",\"num_joined_members\":1,\"world_readable\":false,"
                          "\"guest_can_join\":false,\"join_rule\":\"invite\",\"children_state\":[]}",
                          0, NULL);
    if (strcmp(room_id, "!liar:b.test") == 0) /* answers for another room: ignored */
        return json_loads("{\"room_id\":\"!other:b.test\",\"num_joined_members\":1,\"world_readable\":true,"
                          "\"guest_can_join\":false,\"children_state\":[]}",
                          0, NULL);
    return NULL;
}

/* The room IDs the walk lists, comma-separated, into 'out'; returns ax_space_hierarchy's code. */
static int walk(fixture_t *f, const char *root, ax_space_walk_t *w, char *out, size_t cap)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    int rc = ax_space_hierarchy(t, root, w);
    ax_db_read_end(t);
    out[0] = '\0';
    size_t i;
    json_t *r;
    json_array_foreach(w->rooms, i, r)
    {
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "",
                 json_string_value(json_object_get(r, "room_id")));
    }
    return rc;
}

static ax_space_walk_t walk_of(fixture_t *f, const char *user)
{
    return (ax_space_walk_t){
        .user_id = user, .max_depth = 10, .limit = 50, .max_rooms = 100, .remote = remote, .remote_arg = f};
}

static bool may_preview(fixture_t *f, const char *room_id, const char *user)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    bool ok = ax_room_user_may_preview(t, room_id, user);
    ax_db_read_end(t);
    return ok;
}

/* ---- tests ---- */

static void test_ties_sort_by_room_id(void **state)
{
    fixture_t *f = *state;
    room(f, "!s:a.test", "10", true, "{\"join_rule\":\"public\"}");
    room(f, "!c:a.test", "10", false, "{\"join_rule\":\"public\"}");
    room(f, "!a:a.test", "10", false, "{\"join_rule\":\"public\"}");
    room(f, "!b:a.test", "10", false, "{\"join_rule\":\"public\"}");
    space_link(f, "!s:a.test", "!c:a.test", 1000);
    space_link(f, "!s:a.test", "!a:a.test", 1000);
    space_link(f, "!s:a.test", "!b:a.test", 999);
    ax_space_walk_t w = walk_of(f, ALICE);
    char ids[512];
    assert_int_equal(walk(f, "!s:a.test", &w, ids, sizeof(ids)), 0);
    assert_string_equal(ids, "!s:a.test,!b:a.test,!a:a.test,!c:a.test");
    json_t *cs = json_object_get(json_array_get(w.rooms, 0), "children_state");
    assert_int_equal(json_array_size(cs), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(cs, 0), "origin_server_ts")), 999);
    assert_false(w.more);
    json_decref(w.rooms);
}

/* Writer side: Bob holds an invite to remote room !r2:b.test. */
static int hold_invite(ax_txn_t *txn, void *arg)
{
    (void)arg;
    return ax_db_membership_put(txn, "!r2:b.test", BOB, "invite", "$invite", 1);
}

static void test_remote_rooms(void **state)
{
    fixture_t *f = *state;
    room(f, "!s:a.test", "10", true, "{\"join_rule\":\"public\"}");
    room(f, "!pub:a.test", "10", false, "{\"join_rule\":\"public\"}");
    space_link(f, "!s:a.test", "!r1:b.test", 1);
    space_link(f, "!s:a.test", "!nobody:b.test", 2);
    space_link(f, "!s:a.test", "!liar:b.test", 3);
    ax_space_walk_t w = walk_of(f, BOB);
    char ids[512];
    assert_int_equal(walk(f, "!s:a.test", &w, ids, sizeof(ids)), 0);
    /* r1 is public: listed and followed; its invite-only r2 is not for Bob; the rest are unknown */
    assert_string_equal(ids, "!s:a.test,!r1:b.test,!pub:a.test");
    assert_string_equal(f->asked[0], "!r1:b.test");
    assert_string_equal(f->asked_via[0], "a.test"); /* the via of the link that led there */
    json_t *r1 = json_array_get(w.rooms, 1);
    assert_string_equal(json_string_value(json_object_get(r1, "name")), "Remote");
    json_t *cs = json_object_get(r1, "children_state"); /* ordered, the emptied link dropped */
    assert_int_equal(json_array_size(cs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 0), "state_key")), "!pub:a.test");
    assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 1), "state_key")), "!r2:b.test");
    json_decref(w.rooms);

    /* an invite Bob holds for r2 (as federation would have stored it) opens it */
    fn_job_t j = {.super = {.apply = fn_apply}, .fn = hold_invite};
    assert_int_equal(ax_writer_run(f->writer, &j.super), 0);
    w = walk_of(f, BOB);
    assert_int_equal(walk(f, "!s:a.test", &w, ids, sizeof(ids)), 0);
    assert_string_equal(ids, "!s:a.test,!r1:b.test,!pub:a.test,!r2:b.test");
    json_decref(w.rooms);

    /* a remote root, and one nobody knows */
    w = walk_of(f, BOB);
    w.max_depth = 0;
    assert_int_equal(walk(f, "!r1:b.test", &w, ids, sizeof(ids)), 0);
    assert_string_equal(ids, "!r1:b.test");
    json_decref(w.rooms);
    w = walk_of(f, BOB);
    assert_int_equal(walk(f, "!nobody:b.test", &w, ids, sizeof(ids)), AX_ENOTFOUND);
    assert_null(w.rooms);
    /* without a remote callback, remote rooms are simply not there */
    w = walk_of(f, BOB);
    w.remote = NULL;
    assert_int_equal(walk(f, "!s:a.test", &w, ids, sizeof(ids)), 0);
    assert_string_equal(ids, "!s:a.test");
    json_decref(w.rooms);
}

static void test_join_rules_by_room_version(void **state)
{
    fixture_t *f = *state;
    room(f, "!s:a.test", "10", true, "{\"join_rule\":\"public\"}");
    event(f, "!s:a.test", BOB, "m.room.member", BOB, "{\"membership\":\"join\"}", 0);
    /* knock: v7+; restricted: v8+; knock_restricted: v10+ */
    room(f, "!k6:a.test", "6", false, "{\"join_rule\":\"knock\"}");
    room(f, "!k7:a.test", "7", false, "{\"join_rule\":\"knock\"}");
    room(f, "!r7:a.test", "7", false,
         "{\"join_rule\":\"restricted\",\"allow\":[{\"type\":\"m.room_membership\",\"room_id\":\"!s:a.test\"}]}");
    room(f, "!r8:a.test", "8", false,
         "{\"join_rule\":\"restricted\",\"allow\":[{\"type\":\"m.room_membership\",\"room_id\":\"!s:a.test\"}]}");
    room(f, "!r8other:a.test", "8", false,
         "{\"join_rule\":\"restricted\",\"allow\":[{\"type\":\"m.room_membership\",\"room_id\":\"!k6:a.test\"}]}");
    room(f, "!kr9:a.test", "9", false, "{\"join_rule\":\"knock_restricted\",\"allow\":[]}");
    room(f, "!kr10:a.test", "10", false, "{\"join_rule\":\"knock_restricted\",\"allow\":[]}");
    room(f, "!inv:a.test", "10", false, "{\"join_rule\":\"invite\"}");
    room(f, "!wr:a.test", "10", false, "{\"join_rule\":\"invite\"}");
    event(f, "!wr:a.test", ALICE, "m.room.history_visibility", "", "{\"history_visibility\":\"world_readable\"}", 0);
    assert_true(may_preview(f, "!s:a.test", BOB));
    assert_false(may_preview(f, "!k6:a.test", BOB));
    assert_true(may_preview(f, "!k7:a.test", BOB));
    assert_false(may_preview(f, "!r7:a.test", BOB));
    assert_true(may_preview(f, "!r8:a.test", BOB));
    assert_false(may_preview(f, "!r8other:a.test", BOB));
    assert_false(may_preview(f, "!kr9:a.test", BOB));
    assert_true(may_preview(f, "!kr10:a.test", BOB));
    assert_false(may_preview(f, "!inv:a.test", BOB));
    assert_true(may_preview(f, "!wr:a.test", BOB));
    assert_true(may_preview(f, "!inv:a.test", ALICE));
    assert_false(may_preview(f, "!unknown:a.test", ALICE));
    /* banned from the space: not even its public face */
    event(f, "!s:a.test", ALICE, "m.room.member", BOB, "{\"membership\":\"ban\"}", 0);
    assert_false(may_preview(f, "!s:a.test", BOB));
    assert_false(may_preview(f, "!r8:a.test", BOB)); /* no longer a member of the allowed room */
}

static void test_pages_and_bound(void **state)
{
    fixture_t *f = *state;
    room(f, "!s:a.test", "10", true, "{\"join_rule\":\"public\"}");
    room(f, "!hidden:a.test", "10", false, "{\"join_rule\":\"invite\"}");
    room(f, "!x:a.test", "10", false, "{\"join_rule\":\"public\"}");
    room(f, "!y:a.test", "10", false, "{\"join_rule\":\"public\"}");
    space_link(f, "!s:a.test", "!x:a.test", 1);
    space_link(f, "!s:a.test", "!y:a.test", 2);
    space_link(f, "!s:a.test", "!hidden:a.test", 3);
    char ids[512];
    ax_space_walk_t w = walk_of(f, BOB);
    w.limit = 2;
    assert_int_equal(walk(f, "!s:a.test", &w, ids, sizeof(ids)), 0);
    assert_string_equal(ids, "!s:a.test,!x:a.test");
    assert_true(w.more);
    json_decref(w.rooms);
    /* the last page ends without 'more', though a room Bob may not see comes after it */
    w = walk_of(f, BOB);
    w.limit = 2, w.skip = 2;
    assert_int_equal(walk(f, "!s:a.test", &w, ids, sizeof(ids)), 0);
    assert_string_equal(ids, "!y:a.test");
    assert_false(w.more);
    json_decref(w.rooms);
    /* the bound: two rooms looked at, and the walk ends there */
    w = walk_of(f, ALICE);
    w.max_rooms = 2;
    assert_int_equal(walk(f, "!s:a.test", &w, ids, sizeof(ids)), 0);
    assert_string_equal(ids, "!s:a.test,!x:a.test");
    assert_false(w.more);
    json_decref(w.rooms);
    /* a root the user may not see */
    w = walk_of(f, BOB);
    assert_int_equal(walk(f, "!hidden:a.test", &w, ids, sizeof(ids)), AX_EFORBIDDEN);
    assert_null(w.rooms);
}

static void test_summary(void **state)
{
    fixture_t *f = *state;
    room(f, "!s:a.test", "10", true, "{\"join_rule\":\"public\"}");
    event(f, "!s:a.test", ALICE, "m.room.name", "", "{\"name\":\"Space\"}", 0);
    event(f, "!s:a.test", ALICE, "m.room.guest_access", "", "{\"guest_access\":\"can_join\"}", 0);
    event(f, "!s:a.test", BOB, "m.room.member", BOB, "{\"membership\":\"join\"}", 0);
    event(f, "!s:a.test", BOB, "m.room.member", BOB, "{\"membership\":\"leave\"}", 0);
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    json_t *s = ax_room_summary(t, "!s:a.test");
    assert_null(ax_room_summary(t, "!none:a.test"));
    ax_db_read_end(t);
    assert_non_null(s);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "Space");
    assert_string_equal(json_string_value(json_object_get(s, "room_type")), "m.space");
    assert_string_equal(json_string_value(json_object_get(s, "join_rule")), "public");
    assert_int_equal(json_integer_value(json_object_get(s, "num_joined_members")), 1);
    assert_true(json_is_true(json_object_get(s, "guest_can_join")));
    assert_true(json_is_false(json_object_get(s, "world_readable")));
    assert_null(json_object_get(s, "topic"));
    json_decref(s);
}

/* ---- fixture ---- */

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->dir = test_mkdtemp();
    char err[256];
    ax_db_options_t o = {.path = f->dir, .map_size = 64 << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &f->db, err, sizeof(err)), 0);
    f->writer = ax_writer_new(f->db);
    assert_int_equal(ax_writer_start(f->writer), 0);
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, 1, sizeof(seed));
    ax_signing_key_from_seed(&f->key, "ed25519:a", seed);
    f->origin = (ax_origin_t){"a.test", &f->key};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ax_writer_stop(f->writer);
    ax_writer_free(f->writer);
    ax_db_close(f->db);
    ax_signing_key_dispose(&f->key);
    test_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ties_sort_by_room_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_rooms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_join_rules_by_room_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_and_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
