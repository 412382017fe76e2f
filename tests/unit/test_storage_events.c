/*
 * test_storage_events.c -- reading stored events: ax_db_event_get_keys()
 * skips the members a reader does not want without parsing them, and must
 * give exactly what a whole parse gives for the members it keeps, whatever
 * the strings, nesting, scalars and whitespace of the record.  And the
 * state group kept in the record's head since schema 7.
 */
#include "testutil.h"

#include "storage/storage_internal.h"

#include <string.h>

static char *dir;
static ax_db_t *db;

static const char *const keys[] = {"content", "origin_server_ts", "sender", "type", "state_key", "unsigned", NULL};

static int setup(void **state)
{
    (void)state;
    char err[256];
    dir = test_mkdtemp();
    ax_db_options_t o = {.path = dir, .map_size = 64u << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &db, err, sizeof(err)), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
    return 0;
}

typedef struct st_raw_t {
    const char *event_id;
    const char *text;
} raw_t;

/* Stores 'text' as the record's JSON exactly as given (ax_db_event_put() would re-dump it). */
static int put_raw(ax_txn_t *txn, void *arg)
{
    raw_t *r = arg;
    ax_buf_t b = AX_BUF_INIT;
    uint8_t head[9];
    ax_be64_put(head, 7);
    head[8] = 0;
    ax_buf_append(&b, head, sizeof(head));
    ax_buf_append(&b, "!r:x", 5);
    ax_buf_append(&b, r->text, strlen(r->text));
    int rc = ax_kv_put(txn, AX_DBI_eventid_event, r->event_id, strlen(r->event_id), b.base, b.len, 0);
    ax_buf_dispose(&b);
    return rc;
}

/* The members of the whole parse of 'text' named in 'keys'. */
static json_t *expected(const char *text)
{
    json_t *all = json_loads(text, 0, NULL);
    assert_non_null(all);
    json_t *out = json_object();
    for (size_t i = 0; keys[i] != NULL; ++i) {
        json_t *v = json_object_get(all, keys[i]);
        if (v != NULL)
            json_object_set(out, keys[i], v);
    }
    json_decref(all);
    return out;
}

/* Stores 'text' and checks what ax_db_event_get_keys() gives back; 'whole': it had to parse it all. */
static void check(const char *text, bool whole)
{
    raw_t r = {"$e", text};
    assert_int_equal(ax_db_write_direct(db, put_raw, &r), 0);
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    json_t *got = NULL;
    ax_event_rec_t rec;
    assert_int_equal(ax_db_event_get_keys(t, "$e", keys, &got, &rec), 0);
    assert_int_equal(rec.pos, 7);
    assert_string_equal(rec.room_id, "!r:x");
    ax_db_read_end(t);
    json_t *want = expected(text);
    if (whole) {
        json_t *all = json_loads(text, 0, NULL);
        assert_true(json_equal(got, all));
        json_decref(all);
    } else {
        char *g = json_dumps(got, JSON_SORT_KEYS), *w = json_dumps(want, JSON_SORT_KEYS);
        assert_string_equal(g, w);
        free(g);
        free(w);
    }
    json_decref(want);
    json_decref(got);
}

static void test_skims_a_pdu(void **state)
{
    (void)state;
    check("{\"auth_events\":[\"$a\",\"$b\"],\"content\":{\"body\":\"quote \\\" brace } bracket ] comma , colon :\","
          "\"nested\":[[1,-2.5e3,{\"x\":[]}],{},true,false,null],\"url\":\"mxc://x/y\",\"esc\":\"\\\\\\\\\"},"
          "\"depth\":12,\"hashes\":{\"sha256\":\"abc\"},\"origin_server_ts\":1700000000000,"
          "\"prev_events\":[\"$p\"],\"room_id\":\"!r:x\",\"sender\":\"@u:x\","
          "\"signatures\":{\"x\":{\"ed25519:k\":\"sig\\\\\"}},\"type\":\"m.room.message\","
          "\"unsigned\":{\"io.axon.txn\":{\"txn_id\":\"t\\u00e9\",\"device\":\"D\"}}}",
          false);
}

static void test_first_and_last_members_and_scalars(void **state)
{
    (void)state;
    check("{\"type\":\"m.room.member\",\"depth\":0,\"state_key\":\"\",\"hashes\":{},\"content\":{}}", false);
    check("{\"depth\":-1,\"origin_server_ts\":0,\"x\":null,\"y\":true,\"sender\":\"@u:x\"}", false);
    check("{}", false);
    check("{\"content\":\"\\\\\"}", false);
}

static void test_whitespace(void **state)
{
    (void)state;
    check("  {\n  \"depth\" : 3 ,\n  \"content\" : { \"body\" : \"a b\" } ,\t\"type\"\r\n:\"m.x\" ,\"n\": 1e5 }\n",
          false);
}

static void test_escaped_key_is_parsed_whole(void **state)
{
    (void)state;
    check("{\"sig\\u006eatures\":{},\"content\":{\"a\":1},\"sender\":\"@u:x\"}", true);
    check("{\"content\":{\"a\":1},\"t\\\"ype\":\"x\"}", true);
}

static void test_broken_and_missing(void **state)
{
    (void)state;
    static const char *const broken[] = {"{\"content\":{\"a\":1}", "{\"content\":\"abc", "[1,2]", "{\"a\":1}}", ""};
    for (size_t i = 0; i < AX_ARRAY_SIZE(broken); ++i) {
        raw_t r = {"$bad", broken[i]};
        assert_int_equal(ax_db_write_direct(db, put_raw, &r), 0);
        ax_txn_t *t;
        assert_int_equal(ax_db_read_begin(db, &t), 0);
        json_t *got = NULL;
        int rc = ax_db_event_get_keys(t, "$bad", keys, &got, NULL);
        ax_db_read_end(t);
        /* what a whole parse says: an array is JSON, yet not an event this reads members of */
        if (got != NULL) {
            assert_int_equal(rc, 0);
            assert_true(json_is_array(got));
            json_decref(got);
        } else {
            assert_int_equal(rc, AX_EIO);
        }
    }
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    json_t *got = NULL;
    assert_int_equal(ax_db_event_get_keys(t, "$none", keys, &got, NULL), AX_ENOTFOUND);
    ax_db_read_end(t);
}

/* ---- the state group in the record (schema 7) ---- */

static int group_steps(ax_txn_t *txn, void *arg)
{
    int step = *(int *)arg;
    json_t *ev = json_pack("{s:s, s:s, s:{s:s}}", "type", "m.room.message", "sender", "@a:x", "content", "body", "hi");
    int rc = 0;
    if (step == 0) { /* a new event, then its group: into the record */
        rc = ax_db_event_put(txn, "$new", "!r:x", 11, AX_EVENT_F_STATE, ev);
        if (rc == 0)
            rc = ax_db_event_stategroup_put(txn, "$new", 42);
    } else if (step == 1) { /* rewritten (a redaction): the group stays */
        rc = ax_db_event_put(txn, "$new", "!r:x", 11, AX_EVENT_F_STATE | AX_EVENT_F_REDACTED, ev);
    } else if (step == 2) { /* a record from before schema 7: its group in the table */
        raw_t r = {"$old", "{\"type\":\"m.room.message\"}"};
        uint8_t v[8];
        ax_be64_put(v, 9);
        rc = put_raw(txn, &r);
        if (rc == 0)
            rc = ax_kv_put(txn, AX_DBI_eventid_stategroup, "$old", 4, v, 8, 0);
    } else { /* a group before its record: the table */
        rc = ax_db_event_stategroup_put(txn, "$later", 5);
    }
    json_decref(ev);
    return rc;
}

static uint64_t group_of(const char *event_id)
{
    ax_txn_t *t;
    uint64_t g = 0;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    if (ax_db_event_stategroup_get(t, event_id, &g) != 0)
        g = 0;
    ax_db_read_end(t);
    return g;
}

static void test_state_group_in_the_record(void **state)
{
    (void)state;
    for (int step = 0; step < 4; ++step)
        assert_int_equal(ax_db_write_direct(db, group_steps, &step), 0);
    assert_int_equal(group_of("$new"), 42);
    assert_int_equal(group_of("$old"), 9);
    assert_int_equal(group_of("$later"), 5);
    assert_int_equal(group_of("$none"), 0);
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    /* the record reads as before: the flag is storage's own, the JSON whole */
    ax_event_rec_t rec;
    json_t *ev = NULL;
    assert_int_equal(ax_db_event_get(t, "$new", &ev, &rec), 0);
    assert_int_equal(rec.pos, 11);
    assert_int_equal(rec.flags, AX_EVENT_F_STATE | AX_EVENT_F_REDACTED);
    assert_string_equal(rec.room_id, "!r:x");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "content"), "body")), "hi");
    json_decref(ev);
    /* and nothing of it went into the table */
    const void *v;
    size_t vlen;
    assert_int_equal(ax_kv_get(t, AX_DBI_eventid_stategroup, "$new", 4, &v, &vlen), AX_ENOTFOUND);
    ax_db_read_end(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_skims_a_pdu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_and_last_members_and_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whitespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaped_key_is_parsed_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_group_in_the_record, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
