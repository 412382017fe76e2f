/*
 * test_federation_sender.c -- the sender's batching and catch-up rules
 * (federation/sender.c) on a real queue: a transaction is a contiguous run
 * of the queue in commit order with at most 50 PDUs and 100 EDUs; PDUs go
 * out as stored minus this server's "unsigned" notes; m.receipt EDUs are
 * merged where no receipt of the same user and room for another thread is
 * in the way; items that cannot be sent (event gone, not canonical JSON)
 * are skipped and counted, not allowed to block the queue; a recorded
 * transaction is rebuilt from exactly its items; after an outage a room
 * with more than 50 PDUs waiting is cut to its latest events (the
 * destination's own excluded).
 */
#include "roomfix.h"

#include "federation/federation_internal.h"

static int setup(void **state)
{
    *state = roomfix_new("12");
    return 0;
}

static int teardown(void **state)
{
    roomfix_free(*state);
    return 0;
}

typedef struct st_push_t {
    const char *dest;
    const char *type;
    const char *content;
    const char *room, *event;
} push_t;

static int push_apply(ax_txn_t *txn, void *arg)
{
    push_t *p = arg;
    if (p->event != NULL)
        return ax_db_fedq_push_pdu(txn, p->dest, p->room, p->event);
    json_t *c = json_loads(p->content, JSON_DECODE_ANY, NULL);
    assert_non_null(c);
    int rc = ax_db_fedq_push_edu(txn, p->dest, p->type, c);
    json_decref(c);
    return rc;
}

static void push_edu(roomfix_t *f, const char *type, const char *content)
{
    push_t p = {"b.test", type, content, NULL, NULL};
    assert_int_equal(roomfix_write(f, push_apply, &p), 0);
}

static void push_pdu(roomfix_t *f, const char *room, const char *event)
{
    push_t p = {"b.test", NULL, NULL, room, event};
    assert_int_equal(roomfix_write(f, push_apply, &p), 0);
}

static void build(roomfix_t *f, uint64_t after, uint64_t limit, ax_sender_batch_t *b)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    assert_int_equal(ax_sender_batch_build(t, "b.test", after, limit, b), 0);
    ax_db_read_end(t);
}

/* A room shared with b.test and 'n' local messages (their IDs into 'ids', 256 bytes each). */
static void room_with_messages(roomfix_t *f, size_t n, char (*ids)[256])
{
    roomfix_public_room(f, true);
    roomfix_remote_join(f, &f->key_b, "@bob:b.test");
    for (size_t i = 0; i < n; ++i) {
        char body[64];
        snprintf(body, sizeof(body), "{\"msgtype\":\"m.text\",\"body\":\"m%zu\"}", i);
        roomfix_local(f, "@alice:a.test", "m.room.message", NULL, body, ids != NULL ? ids[i] : NULL);
    }
}

static void test_at_most_50_pdus_in_commit_order(void **state)
{
    roomfix_t *f = *state;
    char(*ids)[256] = calloc(60, 256);
    room_with_messages(f, 60, ids);
    ax_sender_batch_t b;
    build(f, 0, UINT64_MAX, &b);
    assert_int_equal(json_array_size(b.pdus), 50);
    assert_int_equal(json_array_size(b.edus), 0);
    assert_int_equal(b.items, 50);
    assert_int_equal(b.upto, 50);
    size_t i;
    json_t *pdu;
    json_array_foreach(b.pdus, i, pdu)
    {
        char id[256];
        assert_int_equal(ax_event_compute_id(pdu, f->rv, id, sizeof(id)), 0);
        assert_string_equal(id, ids[i]);
        /* as signed, without this server's own notes */
        assert_null(json_object_get(pdu, "unsigned"));
        assert_non_null(json_object_get(json_object_get(pdu, "signatures"), "a.test"));
    }
    ax_sender_batch_dispose(&b);
    build(f, 50, UINT64_MAX, &b);
    assert_int_equal(json_array_size(b.pdus), 10);
    assert_int_equal(b.upto, 60);
    char id[256];
    assert_int_equal(ax_event_compute_id(json_array_get(b.pdus, 9), f->rv, id, sizeof(id)), 0);
    assert_string_equal(id, ids[59]);
    ax_sender_batch_dispose(&b);
    /* nothing after the end */
    build(f, 60, UINT64_MAX, &b);
    assert_int_equal(b.items, 0);
    assert_int_equal(b.upto, 60);
    ax_sender_batch_dispose(&b);
    free(ids);
}

static void test_at_most_100_edus_and_contiguous(void **state)
{
    roomfix_t *f = *state;
    char(*ids)[256] = calloc(60, 256);
    room_with_messages(f, 0, NULL);
    /* 49 PDUs, 3 EDUs, 5 PDUs: the 50th PDU is the first of the last five */
    for (size_t i = 0; i < 49; ++i)
        roomfix_local(f, "@alice:a.test", "m.room.message", NULL, "{\"body\":\"x\"}", ids[i]);
    for (size_t i = 0; i < 3; ++i)
        push_edu(f, "org.example.ping", "{\"n\":1}");
    for (size_t i = 49; i < 54; ++i)
        roomfix_local(f, "@alice:a.test", "m.room.message", NULL, "{\"body\":\"y\"}", ids[i]);
    ax_sender_batch_t b;
    build(f, 0, UINT64_MAX, &b);
    assert_int_equal(json_array_size(b.pdus), 50);
    assert_int_equal(json_array_size(b.edus), 3);
    assert_int_equal(b.items, 53);
    assert_int_equal(b.upto, 53);
    ax_sender_batch_dispose(&b);

    /* 120 EDUs after those: the next batch stops before the 101st */
    for (size_t i = 0; i < 120; ++i)
        push_edu(f, "org.example.ping", "{\"n\":2}");
    build(f, 53, UINT64_MAX, &b);
    assert_int_equal(json_array_size(b.pdus), 4);
    assert_int_equal(json_array_size(b.edus), 100);
    assert_int_equal(b.upto, 53 + 4 + 100);
    ax_sender_batch_dispose(&b);
    /* a recorded transaction is rebuilt from exactly its items */
    build(f, 0, 10, &b);
    assert_int_equal(json_array_size(b.pdus), 10);
    assert_int_equal(b.upto, 10);
    ax_sender_batch_dispose(&b);
    free(ids);
}

static json_t *receipt(const char *room, const char *user, const char *event, const char *thread)
{
    json_t *data = json_pack("{s:i}", "ts", 1);
    if (thread != NULL)
        json_object_set_new(data, "thread_id", json_string(thread));
    return json_pack("{s:{s:{s:{s:[s], s:o}}}}", room, "m.read", user, "event_ids", event, "data", data);
}

static void push_receipt(roomfix_t *f, const char *room, const char *user, const char *event, const char *thread)
{
    json_t *c = receipt(room, user, event, thread);
    char *s = json_dumps(c, JSON_COMPACT);
    push_edu(f, "m.receipt", s);
    free(s);
    json_decref(c);
}

static const char *read_event(json_t *edu, const char *room, const char *user)
{
    json_t *r =
        json_object_get(json_object_get(json_object_get(json_object_get(edu, "content"), room), "m.read"), user);
    return json_string_value(json_array_get(json_object_get(r, "event_ids"), 0));
}

static void test_receipts_merge_where_they_fit(void **state)
{
    roomfix_t *f = *state;
    push_receipt(f, "!r:a.test", "@u1:a.test", "$1", NULL);
    push_receipt(f, "!r:a.test", "@u2:a.test", "$2", NULL);
    push_edu(f, "m.typing", "{\"room_id\":\"!r:a.test\",\"user_id\":\"@u1:a.test\",\"typing\":true}");
    push_receipt(f, "!r:a.test", "@u1:a.test", "$3", NULL);    /* replaces $1 */
    push_receipt(f, "!r:a.test", "@u1:a.test", "$4", "$root"); /* another thread: cannot share the slot */
    push_receipt(f, "!s:a.test", "@u1:a.test", "$5", NULL);    /* another room: merges */
    ax_sender_batch_t b;
    build(f, 0, UINT64_MAX, &b);
    assert_int_equal(b.items, 6);
    assert_int_equal(json_array_size(b.edus), 3);
    json_t *first = json_array_get(b.edus, 0);
    assert_string_equal(json_string_value(json_object_get(first, "edu_type")), "m.receipt");
    assert_string_equal(read_event(first, "!r:a.test", "@u1:a.test"), "$3");
    assert_string_equal(read_event(first, "!r:a.test", "@u2:a.test"), "$2");
    assert_string_equal(read_event(first, "!s:a.test", "@u1:a.test"), "$5");
    assert_string_equal(json_string_value(json_object_get(json_array_get(b.edus, 1), "edu_type")), "m.typing");
    json_t *threaded = json_array_get(b.edus, 2);
    assert_string_equal(read_event(threaded, "!r:a.test", "@u1:a.test"), "$4");
    ax_sender_batch_dispose(&b);
}

static void test_unsendable_items_are_skipped_not_blocking(void **state)
{
    roomfix_t *f = *state;
    char id[256];
    room_with_messages(f, 1, &id);
    push_pdu(f, f->room_id, "$not-stored");
    push_edu(f, "org.example.float", "{\"x\":1.5}"); /* canonical JSON has no fractions */
    push_edu(f, "org.example.ok", "{\"x\":1}");
    ax_sender_batch_t b;
    build(f, 0, UINT64_MAX, &b);
    assert_int_equal(json_array_size(b.pdus), 1);
    assert_int_equal(json_array_size(b.edus), 1);
    assert_int_equal(b.items, 4);
    assert_int_equal(b.skipped, 2);
    assert_int_equal(b.upto, 4);
    ax_sender_batch_dispose(&b);
}

static void test_catch_up_sends_the_latest_events(void **state)
{
    roomfix_t *f = *state;
    char(*ids)[256] = calloc(60, 256);
    room_with_messages(f, 60, ids);
    char busy[256];
    snprintf(busy, sizeof(busy), "%s", f->room_id);
    /* a second room shared with b.test, with a short backlog: untouched */
    f->room_id[0] = '\0';
    room_with_messages(f, 10, NULL);
    push_edu(f, "org.example.ping", "{}");
    ax_txn_t *t;
    ax_sender_catchup_t plan;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    assert_int_equal(ax_sender_catchup_plan(t, "b.test", 0, &plan), 0);
    ax_db_read_end(t);
    assert_int_equal(plan.rooms, 1);
    assert_int_equal(plan.ndel, 60);
    assert_int_equal(plan.nput, 1);
    /* the room's one forward extremity, our last message, in the room's last slot */
    assert_string_equal(plan.put[0].event_id, ids[59]);
    assert_string_equal(plan.put[0].room_id, busy);
    assert_int_equal(plan.put[0].seq, 60);
    ax_sender_catchup_dispose(&plan);

    /* applied, the queue holds the latest event, the short room and the EDU */
    f->room_id[0] = '\0';
    snprintf(f->room_id, sizeof(f->room_id), "%s", busy);
    /* the destination's own event as the room's extremity is not sent back: our last one is */
    roomfix_remote(f, &f->key_b, "@bob:b.test", "m.room.message", NULL, "{\"body\":\"from b\"}", NULL);
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    assert_int_equal(ax_sender_catchup_plan(t, "b.test", 0, &plan), 0);
    ax_db_read_end(t);
    assert_int_equal(plan.nput, 1);
    assert_string_equal(plan.put[0].event_id, ids[59]);
    ax_sender_catchup_dispose(&plan);
    /* only what is after 'after' counts: 20 left of the busy room is not a long backlog */
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    assert_int_equal(ax_sender_catchup_plan(t, "b.test", 40, &plan), 0);
    ax_db_read_end(t);
    assert_int_equal(plan.rooms, 0);
    ax_sender_catchup_dispose(&plan);
    free(ids);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_at_most_50_pdus_in_commit_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_most_100_edus_and_contiguous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipts_merge_where_they_fit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsendable_items_are_skipped_not_blocking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catch_up_sends_the_latest_events, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
