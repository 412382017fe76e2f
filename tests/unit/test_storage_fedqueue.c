/*
 * test_storage_fedqueue.c -- the outbound federation queue
 * (storage/fedqueue.c): items keep commit order per destination with their
 * kinds; acknowledging deletes exactly what was delivered and keeps the
 * depth right; the transaction in flight is recorded and cleared by the
 * acknowledgement that covers it; catch-up replacement stays inside the
 * queue's bounds; everything survives closing and reopening the database;
 * which servers share a room or a user's rooms; m.device_list_update
 * (stream_id, prev_id, deleted) and m.signing_key_update contents.
 */
#include "roomfix.h"

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

/* ---- writer jobs ---- */

typedef struct st_op_t {
    const char *dest;
    char kind;
    const char *a, *b; /* room and event, or EDU type and content JSON */
    uint64_t upto;
    const char *txn_id;
    const uint64_t *del;
    size_t ndel;
    const ax_fedq_item_t *put;
    size_t nput;
    size_t n;
} op_t;

static int push_apply(ax_txn_t *txn, void *arg)
{
    op_t *o = arg;
    if (o->kind == 'P')
        return ax_db_fedq_push_pdu(txn, o->dest, o->a, o->b);
    json_t *content = json_loads(o->b, 0, NULL);
    int rc = ax_db_fedq_push_edu(txn, o->dest, o->a, content);
    json_decref(content);
    return rc;
}

static int push(roomfix_t *f, const char *dest, char kind, const char *a, const char *b)
{
    op_t o = {.dest = dest, .kind = kind, .a = a, .b = b};
    return roomfix_write(f, push_apply, &o);
}

static int ack_apply(ax_txn_t *txn, void *arg)
{
    op_t *o = arg;
    return ax_db_fedq_ack(txn, o->dest, o->upto, &o->n);
}

static size_t ack(roomfix_t *f, const char *dest, uint64_t upto)
{
    op_t o = {.dest = dest, .upto = upto};
    assert_int_equal(roomfix_write(f, ack_apply, &o), 0);
    return o.n;
}

static int pending_apply(ax_txn_t *txn, void *arg)
{
    op_t *o = arg;
    return ax_db_fedq_set_pending(txn, o->dest, o->txn_id, o->upto);
}

static int replace_apply(ax_txn_t *txn, void *arg)
{
    op_t *o = arg;
    return ax_db_fedq_replace(txn, o->dest, o->del, o->ndel, o->put, o->nput);
}

static uint64_t seq_at(json_t *q, size_t i)
{
    return (uint64_t)json_integer_value(json_object_get(json_array_get(q, i), "seq"));
}

/* ---- tests ---- */

static void test_order_kinds_ack_and_depth(void **state)
{
    roomfix_t *f = *state;
    assert_int_equal(push(f, "b.test", 'P', "!r:a.test", "$one"), 0);
    assert_int_equal(push(f, "b.test", 'E', "m.typing", "{\"room_id\":\"!r:a.test\",\"typing\":true}"), 0);
    assert_int_equal(push(f, "c.test", 'P', "!r:a.test", "$other"), 0);
    assert_int_equal(push(f, "b.test", 'P', "!s:a.test", "$three"), 0);
    json_t *notes = roomfix_take_notes(f);
    assert_int_equal(json_array_size(notes), 4);
    assert_string_equal(json_string_value(json_array_get(notes, 0)), "%fed:b.test");
    assert_string_equal(json_string_value(json_array_get(notes, 2)), "%fed:c.test");
    json_decref(notes);

    json_t *q = roomfix_queue(f, "b.test", 0);
    assert_int_equal(json_array_size(q), 3);
    assert_int_equal(seq_at(q, 0), 1);
    assert_int_equal(seq_at(q, 2), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(q, 0), "pdu")), "$one");
    json_t *edu = json_object_get(json_array_get(q, 1), "edu");
    assert_string_equal(json_string_value(json_object_get(edu, "edu_type")), "m.typing");
    assert_true(json_is_true(json_object_get(json_object_get(edu, "content"), "typing")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(q, 2), "room")), "!s:a.test");
    json_decref(q);
    /* after a seq */
    q = roomfix_queue(f, "b.test", 2);
    assert_int_equal(json_array_size(q), 1);
    assert_int_equal(seq_at(q, 0), 3);
    json_decref(q);

    ax_fedq_state_t st = roomfix_qstate(f, "b.test");
    assert_int_equal(st.last, 3);
    assert_int_equal(st.depth, 3);
    assert_int_equal(ack(f, "b.test", 2), 2);
    st = roomfix_qstate(f, "b.test");
    assert_int_equal(st.acked, 2);
    assert_int_equal(st.depth, 1);
    q = roomfix_queue(f, "b.test", 0);
    assert_int_equal(json_array_size(q), 1);
    assert_int_equal(seq_at(q, 0), 3);
    json_decref(q);
    /* acknowledging again, or beyond the end, is harmless; seqs are never handed out twice */
    assert_int_equal(ack(f, "b.test", 2), 0);
    assert_int_equal(ack(f, "b.test", 99), 1);
    st = roomfix_qstate(f, "b.test");
    assert_int_equal(st.acked, 3);
    assert_int_equal(st.depth, 0);
    assert_int_equal(push(f, "b.test", 'P', "!r:a.test", "$four"), 0);
    q = roomfix_queue(f, "b.test", 0);
    assert_int_equal(seq_at(q, 0), 4);
    json_decref(q);
    /* the other destination is untouched */
    st = roomfix_qstate(f, "c.test");
    assert_int_equal(st.depth, 1);
    assert_int_equal(st.acked, 0);
}

static void test_bad_destinations(void **state)
{
    roomfix_t *f = *state;
    assert_int_equal(push(f, "", 'P', "!r:a.test", "$x"), AX_EINVAL);
    assert_int_equal(push(f, "%fed:x", 'P', "!r:a.test", "$x"), AX_EINVAL);
    char longname[300];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(push(f, longname, 'P', "!r:a.test", "$x"), AX_EINVAL);
    op_t o = {.dest = "nobody.test", .upto = 1};
    assert_int_equal(roomfix_write(f, ack_apply, &o), AX_ENOTFOUND);
}

static void test_pending_transaction_record(void **state)
{
    roomfix_t *f = *state;
    for (int i = 0; i < 4; ++i)
        assert_int_equal(push(f, "b.test", 'P', "!r:a.test", "$e"), 0);
    op_t o = {.dest = "b.test", .txn_id = "1700.1", .upto = 3};
    assert_int_equal(roomfix_write(f, pending_apply, &o), 0);
    ax_fedq_state_t st = roomfix_qstate(f, "b.test");
    assert_string_equal(st.txn_id, "1700.1");
    assert_int_equal(st.pending_upto, 3);
    assert_int_equal(st.depth, 4);
    /* an acknowledgement short of it keeps it, one that covers it clears it */
    ack(f, "b.test", 2);
    assert_string_equal(roomfix_qstate(f, "b.test").txn_id, "1700.1");
    ack(f, "b.test", 3);
    st = roomfix_qstate(f, "b.test");
    assert_string_equal(st.txn_id, "");
    assert_int_equal(st.pending_upto, 0);
    assert_int_equal(st.depth, 1);
    /* cleared explicitly; IDs that cannot be recorded are refused */
    o.upto = 4;
    assert_int_equal(roomfix_write(f, pending_apply, &o), 0);
    o.txn_id = NULL;
    assert_int_equal(roomfix_write(f, pending_apply, &o), 0);
    assert_string_equal(roomfix_qstate(f, "b.test").txn_id, "");
    o.txn_id = "a\"b";
    assert_int_equal(roomfix_write(f, pending_apply, &o), AX_EINVAL);
}

static void test_catch_up_replacement(void **state)
{
    roomfix_t *f = *state;
    for (int i = 0; i < 6; ++i)
        assert_int_equal(push(f, "b.test", 'P', "!r:a.test", "$old"), 0);
    ack(f, "b.test", 1);
    uint64_t del[] = {2, 3, 4};
    ax_fedq_item_t put = {.seq = 4, .kind = AX_FEDQ_PDU, .room_id = "!r:a.test", .event_id = "$latest"};
    op_t o = {.dest = "b.test", .del = del, .ndel = 3, .put = &put, .nput = 1};
    assert_int_equal(roomfix_write(f, replace_apply, &o), 0);
    json_t *q = roomfix_queue(f, "b.test", 0);
    assert_int_equal(json_array_size(q), 3);
    assert_int_equal(seq_at(q, 0), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(q, 0), "pdu")), "$latest");
    assert_int_equal(seq_at(q, 2), 6);
    json_decref(q);
    assert_int_equal(roomfix_qstate(f, "b.test").depth, 3);
    /* never into what was acknowledged, beyond the end, over an item, or as an EDU */
    uint64_t none[] = {0};
    ax_fedq_item_t bad = put;
    o = (op_t){.dest = "b.test", .del = none, .ndel = 0, .put = &bad, .nput = 1};
    bad.seq = 1;
    assert_int_equal(roomfix_write(f, replace_apply, &o), AX_EINVAL);
    bad.seq = 7;
    assert_int_equal(roomfix_write(f, replace_apply, &o), AX_EINVAL);
    bad.seq = 5;
    assert_int_equal(roomfix_write(f, replace_apply, &o), AX_EEXIST);
    bad.seq = 3;
    bad.kind = AX_FEDQ_EDU;
    assert_int_equal(roomfix_write(f, replace_apply, &o), AX_EINVAL);
    assert_int_equal(roomfix_qstate(f, "b.test").depth, 3);
}

static int count_dests(void *arg, const char *dest, const ax_fedq_state_t *st)
{
    json_object_set_new(arg, dest, json_integer((json_int_t)st->depth));
    return 0;
}

static void test_survives_reopening(void **state)
{
    roomfix_t *f = *state;
    for (int i = 0; i < 3; ++i)
        assert_int_equal(push(f, "b.test", 'P', "!r:a.test", "$e"), 0);
    assert_int_equal(push(f, "c.test", 'E', "m.receipt", "{}"), 0);
    op_t o = {.dest = "b.test", .txn_id = "42.7", .upto = 2};
    assert_int_equal(roomfix_write(f, pending_apply, &o), 0);
    ack(f, "b.test", 1);
    roomfix_close(f);
    roomfix_open(f);
    ax_fedq_state_t st = roomfix_qstate(f, "b.test");
    assert_int_equal(st.acked, 1);
    assert_int_equal(st.last, 3);
    assert_int_equal(st.depth, 2);
    assert_string_equal(st.txn_id, "42.7");
    assert_int_equal(st.pending_upto, 2);
    json_t *q = roomfix_queue(f, "b.test", 0);
    assert_int_equal(json_array_size(q), 2);
    json_decref(q);
    ax_txn_t *t;
    json_t *dests = json_object();
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    ax_db_fedq_destinations_foreach(t, count_dests, dests);
    ax_db_read_end(t);
    assert_int_equal(json_object_size(dests), 2);
    assert_int_equal(json_integer_value(json_object_get(dests, "c.test")), 1);
    json_decref(dests);
}

static int collect_server(void *arg, const char *server)
{
    json_array_append_new(arg, json_string(server));
    return 0;
}

static char *servers_of(roomfix_t *f, const char *room_id, const char *skip, const char *user)
{
    ax_txn_t *t;
    json_t *list = json_array();
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    if (user != NULL)
        assert_int_equal(ax_db_user_peers_foreach(t, user, collect_server, list), 0);
    else
        assert_int_equal(ax_db_room_servers_foreach(t, room_id, skip, collect_server, list), 0);
    ax_db_read_end(t);
    char *s = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    return s;
}

static void test_who_shares_a_room(void **state)
{
    roomfix_t *f = *state;
    roomfix_public_room(f, true);
    roomfix_remote_join(f, &f->key_c, "@carol:c.test");
    roomfix_remote_join(f, &f->key_b, "@bob:b.test");
    roomfix_remote_join(f, &f->key_b, "@bert:b.test");
    char room1[256];
    snprintf(room1, sizeof(room1), "%s", f->room_id);
    char *s = servers_of(f, room1, NULL, NULL);
    assert_string_equal(s, "[\"a.test\",\"b.test\",\"c.test\"]");
    free(s);
    s = servers_of(f, room1, "a.test", NULL);
    assert_string_equal(s, "[\"b.test\",\"c.test\"]");
    free(s);
    /* a second room: alice with d.test, which then is banned */
    f->room_id[0] = '\0';
    roomfix_public_room(f, true);
    roomfix_remote_join(f, &f->key_b, "@dave:d.test");
    s = servers_of(f, NULL, NULL, "@alice:a.test");
    assert_string_equal(s, "[\"b.test\",\"c.test\",\"d.test\"]");
    free(s);
    roomfix_local(f, "@alice:a.test", "m.room.member", "@dave:d.test", "{\"membership\":\"ban\"}", NULL);
    s = servers_of(f, NULL, NULL, "@alice:a.test");
    assert_string_equal(s, "[\"b.test\",\"c.test\"]");
    free(s);
    /* carol (c.test) shares a room with a.test and b.test */
    s = servers_of(f, NULL, NULL, "@carol:c.test");
    assert_string_equal(s, "[\"a.test\",\"b.test\"]");
    free(s);
}

typedef struct st_dev_t {
    const char *user, *device, *name;
    const char *keys;
    bool remove;
} devop_t;

static int device_apply(ax_txn_t *txn, void *arg)
{
    devop_t *d = arg;
    int rc;
    if (d->remove) {
        rc = ax_db_device_logout(txn, d->user, d->device, true);
        return rc;
    }
    json_t *dev = json_pack("{s:I}", "created_ts", (json_int_t)1);
    if (d->name != NULL)
        json_object_set_new(dev, "display_name", json_string(d->name));
    rc = ax_db_device_put(txn, d->user, d->device, dev);
    json_decref(dev);
    if (rc == 0 && d->keys != NULL) {
        json_t *k = json_loads(d->keys, 0, NULL);
        rc = ax_db_devicekeys_put(txn, d->user, d->device, k);
        json_decref(k);
    }
    return rc != 0 ? rc : ax_db_fedq_device_update(txn, d->user, d->device);
}

static json_t *last_edu(roomfix_t *f, const char *dest, const char *type)
{
    json_t *q = roomfix_queue(f, dest, 0), *out = NULL;
    size_t i;
    json_t *it;
    json_array_foreach(q, i, it)
    {
        json_t *edu = json_object_get(it, "edu");
        if (edu != NULL && ax_streq(json_string_value(json_object_get(edu, "edu_type")), type)) {
            json_decref(out);
            out = json_incref(json_object_get(edu, "content"));
        }
    }
    json_decref(q);
    return out;
}

static void test_device_list_updates(void **state)
{
    roomfix_t *f = *state;
    /* nobody to tell: nothing queued */
    devop_t d = {.user = "@alice:a.test", .device = "PHONE", .name = "Phone"};
    assert_int_equal(roomfix_write(f, device_apply, &d), 0);
    assert_int_equal(roomfix_qstate(f, "b.test").last, 0);

    roomfix_public_room(f, true);
    roomfix_remote_join(f, &f->key_b, "@bob:b.test");
    d.keys = "{\"user_id\":\"@alice:a.test\",\"device_id\":\"PHONE\",\"keys\":{\"ed25519:PHONE\":\"k\"}}";
    assert_int_equal(roomfix_write(f, device_apply, &d), 0);
    json_t *c1 = last_edu(f, "b.test", "m.device_list_update");
    assert_non_null(c1);
    assert_string_equal(json_string_value(json_object_get(c1, "user_id")), "@alice:a.test");
    assert_string_equal(json_string_value(json_object_get(c1, "device_id")), "PHONE");
    assert_string_equal(json_string_value(json_object_get(c1, "device_display_name")), "Phone");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(json_object_get(c1, "keys"), "keys"), "ed25519:PHONE")), "k");
    assert_null(json_object_get(c1, "deleted"));
    json_int_t first = json_integer_value(json_object_get(c1, "stream_id"));
    assert_true(first > 0);
    /* the first update sent anywhere has no predecessor */
    assert_int_equal(json_array_size(json_object_get(c1, "prev_id")), 0);
    json_decref(c1);

    d = (devop_t){.user = "@alice:a.test", .device = "PHONE", .remove = true};
    assert_int_equal(roomfix_write(f, device_apply, &d), 0);
    json_t *c2 = last_edu(f, "b.test", "m.device_list_update");
    assert_true(json_is_true(json_object_get(c2, "deleted")));
    assert_null(json_object_get(c2, "keys"));
    assert_true(json_integer_value(json_object_get(c2, "stream_id")) > first);
    /* each update names the one before it */
    assert_int_equal(json_integer_value(json_array_get(json_object_get(c2, "prev_id"), 0)), first);
    json_decref(c2);
}

typedef struct st_xs_t {
    const char *user;
} xs_t;

static int xsign_apply(ax_txn_t *txn, void *arg)
{
    xs_t *x = arg;
    json_t *m = json_pack("{s:s, s:[s], s:{s:s}}", "user_id", x->user, "usage", "master", "keys", "ed25519:M", "M");
    json_t *s =
        json_pack("{s:s, s:[s], s:{s:s}}", "user_id", x->user, "usage", "self_signing", "keys", "ed25519:S", "S");
    json_t *u =
        json_pack("{s:s, s:[s], s:{s:s}}", "user_id", x->user, "usage", "user_signing", "keys", "ed25519:U", "U");
    int rc = ax_db_xsign_put(txn, x->user, "master", m);
    if (rc == 0)
        rc = ax_db_xsign_put(txn, x->user, "self_signing", s);
    if (rc == 0)
        rc = ax_db_xsign_put(txn, x->user, "user_signing", u);
    json_decref(m);
    json_decref(s);
    json_decref(u);
    return rc != 0 ? rc : ax_db_fedq_signing_key_update(txn, x->user);
}

static void test_signing_key_update(void **state)
{
    roomfix_t *f = *state;
    roomfix_public_room(f, true);
    roomfix_remote_join(f, &f->key_b, "@bob:b.test");
    xs_t x = {"@alice:a.test"};
    assert_int_equal(roomfix_write(f, xsign_apply, &x), 0);
    json_t *c = last_edu(f, "b.test", "m.signing_key_update");
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "user_id")), "@alice:a.test");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_object_get(c, "master_key"), "usage"), 0)), "master");
    assert_non_null(json_object_get(c, "self_signing_key"));
    /* the user-signing key is the user's own business */
    assert_null(json_object_get(c, "user_signing_key"));
    json_decref(c);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_kinds_ack_and_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_destinations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_transaction_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catch_up_replacement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopening, setup, teardown),
        cmocka_unit_test_setup_teardown(test_who_shares_a_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_list_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signing_key_update, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
