/*
 * test_core_fanout.c -- where events go (core/fanout.c): every local event
 * is queued, in the transaction that stores it, for each other server with
 * a joined member, in order; never for ourselves; a kicked or banned
 * remote user's server hears of it even though it has no member left;
 * events of other servers are not fanned out again (each server sends its
 * own) unless passed on for their origin, which is then left out; a room
 * created with m.federate false stays here; the commit names each
 * destination ("%fed:") so the sender wakes.
 */
#include "roomfix.h"

static int setup(void **state)
{
    *state = roomfix_new("12");
    return 0;
}

static int setup_v10(void **state)
{
    *state = roomfix_new("10");
    return 0;
}

static int teardown(void **state)
{
    roomfix_free(*state);
    return 0;
}

static size_t npdus(json_t *items)
{
    size_t n = 0, i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        n += json_object_get(it, "pdu") != NULL;
    }
    return n;
}

static const char *pdu_at(json_t *items, size_t i)
{
    return json_string_value(json_object_get(json_array_get(items, i), "pdu"));
}

static void test_local_events_reach_each_remote_server_once_in_order(void **state)
{
    roomfix_t *f = *state;
    roomfix_public_room(f, true);
    json_decref(roomfix_take_notes(f));
    /* nobody else in the room yet: nothing queued */
    assert_int_equal(roomfix_qstate(f, "b.test").last, 0);
    roomfix_remote_join(f, &f->key_b, "@bob:b.test");
    roomfix_remote_join(f, &f->key_b, "@bert:b.test"); /* a second member of b.test: still once */
    roomfix_remote_join(f, &f->key_c, "@carol:c.test");
    /* remote events are not fanned out: b.test's joins went nowhere */
    json_t *q = roomfix_queue(f, "c.test", 0);
    assert_int_equal(json_array_size(q), 0);
    json_decref(q);
    json_t *notes = roomfix_take_notes(f);
    assert_int_equal(json_array_size(notes), 0);
    json_decref(notes);

    char ids[5][256];
    for (int i = 0; i < 5; ++i) {
        char body[64];
        snprintf(body, sizeof(body), "{\"msgtype\":\"m.text\",\"body\":\"m%d\"}", i);
        roomfix_local(f, "@alice:a.test", "m.room.message", NULL, body, ids[i]);
    }
    const char *dests[] = {"b.test", "c.test"};
    for (size_t d = 0; d < 2; ++d) {
        q = roomfix_queue(f, dests[d], 0);
        assert_int_equal(json_array_size(q), 5);
        for (size_t i = 0; i < 5; ++i) {
            assert_string_equal(pdu_at(q, i), ids[i]);
            assert_string_equal(json_string_value(json_object_get(json_array_get(q, i), "room")), f->room_id);
        }
        json_decref(q);
        ax_fedq_state_t st = roomfix_qstate(f, dests[d]);
        assert_int_equal(st.depth, 5);
        assert_int_equal(st.last, 5);
        assert_int_equal(st.acked, 0);
    }
    /* never to ourselves */
    assert_int_equal(roomfix_qstate(f, "a.test").last, 0);
    /* the commits named both destinations for the sender */
    notes = roomfix_take_notes(f);
    bool saw_b = false, saw_c = false;
    size_t i;
    json_t *n;
    json_array_foreach(notes, i, n)
    {
        saw_b = saw_b || ax_streq(json_string_value(n), "%fed:b.test");
        saw_c = saw_c || ax_streq(json_string_value(n), "%fed:c.test");
    }
    assert_true(saw_b && saw_c);
    json_decref(notes);
}

static void test_kick_reaches_the_kicked_server_then_nothing_more(void **state)
{
    roomfix_t *f = *state;
    roomfix_public_room(f, true);
    roomfix_remote_join(f, &f->key_b, "@bob:b.test");
    roomfix_remote_join(f, &f->key_c, "@carol:c.test");
    char kick[256], later[256];
    roomfix_local(f, "@alice:a.test", "m.room.member", "@bob:b.test", "{\"membership\":\"leave\"}", kick);
    roomfix_local(f, "@alice:a.test", "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":\"after\"}", later);
    json_t *qb = roomfix_queue(f, "b.test", 0), *qc = roomfix_queue(f, "c.test", 0);
    /* b.test gets the kick (its member is gone after it) and nothing after it */
    assert_int_equal(npdus(qb), 1);
    assert_string_equal(pdu_at(qb, 0), kick);
    assert_int_equal(npdus(qc), 2);
    assert_string_equal(pdu_at(qc, 0), kick);
    assert_string_equal(pdu_at(qc, 1), later);
    json_decref(qb);
    json_decref(qc);

    /* a ban of a user whose server never had anyone joined still reaches that server */
    char ban[256];
    roomfix_local(f, "@alice:a.test", "m.room.member", "@dave:d.test", "{\"membership\":\"ban\"}", ban);
    json_t *qd = roomfix_queue(f, "d.test", 0);
    assert_int_equal(npdus(qd), 1);
    assert_string_equal(pdu_at(qd, 0), ban);
    json_decref(qd);
}

typedef struct st_behalf_t {
    roomfix_t *f;
    const char *event_id;
    const char *on_behalf_of;
} behalf_t;

static int behalf_apply(ax_txn_t *txn, void *arg)
{
    behalf_t *b = arg;
    return ax_room_fanout(txn, b->f->room_id, b->event_id, "a.test", b->on_behalf_of);
}

static void test_passing_on_for_the_origin_leaves_it_out(void **state)
{
    roomfix_t *f = *state;
    roomfix_public_room(f, true);
    roomfix_remote_join(f, &f->key_c, "@carol:c.test");
    char join[256];
    roomfix_remote(f, &f->key_b, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", join);
    assert_int_equal(roomfix_qstate(f, "c.test").last, 0);
    /* as after a send_join: c.test learns of b.test's join from us, b.test does not get its own event */
    behalf_t b = {f, join, "b.test"};
    assert_int_equal(roomfix_write(f, behalf_apply, &b), 0);
    json_t *qc = roomfix_queue(f, "c.test", 0);
    assert_int_equal(npdus(qc), 1);
    assert_string_equal(pdu_at(qc, 0), join);
    json_decref(qc);
    assert_int_equal(roomfix_qstate(f, "b.test").last, 0);
    /* unknown events and rooms are errors, not silence */
    b.event_id = "$nope";
    assert_int_equal(roomfix_write(f, behalf_apply, &b), AX_ENOTFOUND);
}

static void test_unfederated_room_stays_here(void **state)
{
    roomfix_t *f = *state;
    roomfix_public_room(f, false);
    roomfix_local(f, "@alice:a.test", "m.room.member", "@bob:b.test", "{\"membership\":\"ban\"}", NULL);
    roomfix_local(f, "@alice:a.test", "m.room.message", NULL, "{\"body\":\"x\"}", NULL);
    assert_int_equal(roomfix_qstate(f, "b.test").last, 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local_events_reach_each_remote_server_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_events_reach_each_remote_server_once_in_order, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_kick_reaches_the_kicked_server_then_nothing_more, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passing_on_for_the_origin_leaves_it_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfederated_room_stays_here, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
