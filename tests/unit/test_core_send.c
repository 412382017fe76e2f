/*
 * test_core_send.c -- local sends under load (core/rooms.c on the writer):
 * many threads sending into one room at once still make one straight line
 * (every event's prev_events is the event before it, depths go up by one,
 * one forward extremity, every message in the timeline once); the event ID
 * that signing computes on the side is the one ax_event_compute_id()
 * gives; and the parsed state events the writer keeps between jobs
 * (ax_db_event_get_shared) are never served after a redaction changed them.
 */
#include "roomfix.h"

#define SENDERS   8
#define PER_SENDR 40

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

typedef struct st_sender_t {
    roomfix_t *f;
    int n;
} sender_t;

static void *send_many(void *arg)
{
    sender_t *s = arg;
    for (int i = 0; i < PER_SENDR; ++i) {
        char body[96];
        snprintf(body, sizeof(body), "{\"msgtype\":\"m.text\",\"body\":\"s%d m%d\"}", s->n, i);
        roomfix_local(s->f, "@alice:a.test", "m.room.message", NULL, body, NULL);
    }
    return NULL;
}

typedef struct st_walk_t {
    ax_txn_t *txn;
    char prev[256];
    json_int_t depth;
    size_t messages;
    json_t *bodies;
} walk_t;

static int walk_cb(void *arg, uint64_t pos, const char *event_id)
{
    (void)pos;
    walk_t *w = arg;
    json_t *ev = NULL;
    assert_int_equal(ax_db_event_get(w->txn, event_id, &ev, NULL), 0);
    json_t *prev = json_object_get(ev, "prev_events");
    json_int_t depth = json_integer_value(json_object_get(ev, "depth"));
    if (w->prev[0] != '\0') {
        /* a straight line: exactly the event before, one deeper */
        assert_int_equal(json_array_size(prev), 1);
        assert_string_equal(json_string_value(json_array_get(prev, 0)), w->prev);
        assert_int_equal(depth, w->depth + 1);
    }
    if (ax_streq(json_string_value(json_object_get(ev, "type")), "m.room.message")) {
        const char *body = json_string_value(json_object_get(json_object_get(ev, "content"), "body"));
        assert_non_null(body);
        assert_null(json_object_get(w->bodies, body)); /* once */
        json_object_set_new(w->bodies, body, json_true());
        w->messages++;
    }
    snprintf(w->prev, sizeof(w->prev), "%s", event_id);
    w->depth = depth;
    json_decref(ev);
    return 0;
}

static int count_extremity(void *arg, const char *event_id)
{
    walk_t *w = arg;
    assert_string_equal(event_id, w->prev);
    w->messages++;
    return 0;
}

static void test_concurrent_sends_make_one_line(void **state)
{
    roomfix_t *f = *state;
    roomfix_public_room(f, true);
    pthread_t th[SENDERS];
    sender_t s[SENDERS];
    for (int i = 0; i < SENDERS; ++i) {
        s[i] = (sender_t){f, i};
        assert_int_equal(pthread_create(&th[i], NULL, send_many, &s[i]), 0);
    }
    for (int i = 0; i < SENDERS; ++i)
        pthread_join(th[i], NULL);

    ax_txn_t *txn;
    assert_int_equal(ax_db_read_begin(f->db, &txn), 0);
    walk_t w = {.txn = txn, .bodies = json_object()};
    assert_int_equal(ax_db_timeline_scan(txn, f->room_id, 0, false, walk_cb, &w), 0);
    assert_int_equal(w.messages, SENDERS * PER_SENDR);
    /* no fork: the last event is the one forward extremity */
    w.messages = 0;
    assert_int_equal(ax_db_extremities_foreach(txn, f->room_id, count_extremity, &w), 0);
    assert_int_equal(w.messages, 1);
    json_t *room = NULL;
    assert_int_equal(ax_db_room_get(txn, f->room_id, &room), 0);
    assert_int_equal(json_integer_value(json_object_get(room, "depth")), w.depth);
    json_decref(room);
    json_decref(w.bodies);
    ax_db_read_end(txn);
}

static void test_signing_computes_the_event_id(void **state)
{
    roomfix_t *f = *state;
    json_t *pdu = json_pack("{s:s, s:s, s:s, s:I, s:I, s:[s], s:[], s:{s:s}, s:{s:s}}", "room_id", "!r:a.test",
                            "sender", "@alice:a.test", "type", "m.room.message", "depth", (json_int_t)7,
                            "origin_server_ts", (json_int_t)1700000000000, "prev_events", "$prev", "auth_events",
                            "content", "body", "hi", "unsigned", "io.axon.txn", "t1");
    char id[256], want[256];
    assert_int_equal(ax_event_sign_id(pdu, f->rv, "a.test", &f->key_a, id, sizeof(id)), 0);
    assert_int_equal(ax_event_compute_id(pdu, f->rv, want, sizeof(want)), 0);
    assert_string_equal(id, want);
    /* and it signed and hashed like ax_event_sign */
    json_t *copy = json_deep_copy(pdu);
    json_object_del(copy, "signatures");
    json_object_del(copy, "hashes");
    assert_int_equal(ax_event_sign(copy, f->rv, "a.test", &f->key_a), 0);
    assert_true(json_equal(copy, pdu));
    json_decref(copy);
    json_decref(pdu);
}

static int redact_apply(ax_txn_t *txn, void *arg)
{
    roomfix_send_t *s = arg;
    return ax_room_send(txn, &s->f->a, &s->d, &s->sent, s->reason, sizeof(s->reason));
}

static void test_redacted_state_is_not_served_from_the_writer(void **state)
{
    roomfix_t *f = *state;
    roomfix_public_room(f, true);
    char member[256], next[256];
    roomfix_local(f, "@alice:a.test", "m.room.member", "@alice:a.test",
                  "{\"membership\":\"join\",\"displayname\":\"Alice\"}", member);
    /* the auth rules read alice's membership: the writer keeps it parsed */
    roomfix_local(f, "@alice:a.test", "m.room.message", NULL, "{\"body\":\"x\"}", NULL);

    char content[512];
    snprintf(content, sizeof(content), "{\"redacts\":\"%s\"}", member);
    json_t *c = json_loads(content, 0, NULL);
    roomfix_send_t r = {.f = f,
                        .d = {.room_id = f->room_id,
                              .sender = "@alice:a.test",
                              .type = "m.room.redaction",
                              .content = c,
                              .redacts = member}};
    assert_int_equal(roomfix_write(f, redact_apply, &r), 0);
    json_decref(c);

    /* the next membership event replaces the redacted one: its prev_content has no displayname */
    roomfix_local(f, "@alice:a.test", "m.room.member", "@alice:a.test",
                  "{\"membership\":\"join\",\"displayname\":\"Al\"}", next);
    ax_txn_t *txn;
    assert_int_equal(ax_db_read_begin(f->db, &txn), 0);
    json_t *ev = NULL;
    assert_int_equal(ax_db_event_get(txn, next, &ev, NULL), 0);
    json_t *prev = json_object_get(json_object_get(ev, "unsigned"), "prev_content");
    assert_non_null(prev);
    assert_string_equal(json_string_value(json_object_get(prev, "membership")), "join");
    assert_null(json_object_get(prev, "displayname"));
    json_decref(ev);
    ax_db_read_end(txn);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_concurrent_sends_make_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_sends_make_one_line, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_signing_computes_the_event_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signing_computes_the_event_id, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_redacted_state_is_not_served_from_the_writer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
