/*
 * test_storage_events.c -- the per-thread cache of parsed events behind
 * ax_db_event_get: what it hands out equals what is stored, every caller
 * gets its own copy, and an event rewritten in place (a redaction prunes
 * it) is never served from the cache as it was.
 */
#include "testutil.h"

#include "storage/storage_internal.h"

static char *dir;
static ax_db_t *db;

static int setup(void **state)
{
    (void)state;
    dir = test_mkdtemp();
    char err[256];
    ax_db_options_t o = {.path = dir, .map_size = 64u << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &db, err, sizeof(err)), 0);
    ax_db_event_cache_init(4);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ax_db_event_cache_free();
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
    return 0;
}

typedef struct st_put_t {
    const char *event_id;
    json_t *event;
} put_t;

static int put_cb(ax_txn_t *txn, void *arg)
{
    put_t *p = arg;
    return ax_db_event_put(txn, p->event_id, "!room:x", 7, 0, p->event);
}

static void put(const char *event_id, json_t *event)
{
    put_t p = {event_id, event};
    assert_int_equal(ax_db_write_direct(db, put_cb, &p), 0);
    json_decref(event);
}

/* The event as ax_db_event_get gives it now (a new reference). */
static json_t *get(const char *event_id)
{
    ax_txn_t *t;
    json_t *ev = NULL;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    assert_int_equal(ax_db_event_get(t, event_id, &ev, NULL), 0);
    ax_db_read_end(t);
    return ev;
}

static const char *body(const json_t *ev)
{
    return json_string_value(json_object_get(json_object_get(ev, "content"), "body"));
}

static void test_copies_and_rewrites(void **state)
{
    (void)state;
    put("$a", json_pack("{s:s, s:{s:s}}", "type", "m.room.message", "content", "body", "hello"));
    json_t *first = get("$a");
    assert_string_equal(body(first), "hello");
    /* a caller changing its copy changes nobody else's */
    json_object_set_new(json_object_get(first, "content"), "body", json_string("changed"));
    json_t *second = get("$a");
    assert_ptr_not_equal(first, second);
    assert_string_equal(body(second), "hello");
    /* rewritten with the same length (the cache compares bytes, not lengths), then pruned */
    put("$a", json_pack("{s:s, s:{s:s}}", "type", "m.room.message", "content", "body", "HELLO"));
    json_t *third = get("$a");
    assert_string_equal(body(third), "HELLO");
    put("$a", json_pack("{s:s, s:{}}", "type", "m.room.message", "content"));
    json_t *fourth = get("$a");
    assert_null(body(fourth));
    json_decref(first);
    json_decref(second);
    json_decref(third);
    json_decref(fourth);
}

static void test_many_events_share_few_slots(void **state)
{
    (void)state;
    char id[16], text[16];
    for (int i = 0; i < 20; ++i) {
        snprintf(id, sizeof(id), "$e%d", i);
        snprintf(text, sizeof(text), "body %d", i);
        put(id, json_pack("{s:s, s:{s:s}}", "type", "m.room.message", "content", "body", text));
    }
    for (int round = 0; round < 2; ++round) {
        for (int i = 0; i < 20; ++i) {
            snprintf(id, sizeof(id), "$e%d", i);
            snprintf(text, sizeof(text), "body %d", i);
            json_t *ev = get(id);
            assert_string_equal(body(ev), text);
            json_decref(ev);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copies_and_rewrites, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_events_share_few_slots, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
