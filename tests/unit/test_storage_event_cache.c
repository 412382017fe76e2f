/*
 * test_storage_event_cache.c -- the per-thread cache of parsed events behind
 * ax_db_event_get: what it hands out equals what is stored, whole events
 * are each caller's own copy while partial ones (ax_db_event_get_keys) are
 * read-only and shared, and an event rewritten in place (a redaction prunes
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

static const char *const wanted[] = {"type", "content", NULL};
static const char *const other_wanted[] = {"type", "hashes", NULL};

/* ax_db_event_get_keys' answer now (a new reference). */
static json_t *get_keys(const char *event_id, const char *const *keys)
{
    ax_txn_t *t;
    json_t *ev = NULL;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    assert_int_equal(ax_db_event_get_keys(t, event_id, keys, &ev, NULL), 0);
    ax_db_read_end(t);
    return ev;
}

static void test_member_lists_share_the_cache(void **state)
{
    (void)state;
    put("$k", json_pack("{s:s, s:{s:s}, s:{s:s}, s:[s]}", "type", "m.room.message", "content", "body", "hi", "hashes",
                        "sha256", "abc", "prev_events", "$p"));
    /* a partial parse is cached as partial: a whole read or another list never gets it */
    json_t *a = get_keys("$k", wanted);
    assert_int_equal(json_object_size(a), 2);
    assert_string_equal(body(a), "hi");
    json_t *b = get_keys("$k", wanted); /* from the cache: read-only, shared, not parsed again */
    assert_ptr_equal(a, b);
    json_t *c = get_keys("$k", other_wanted);
    assert_int_equal(json_object_size(c), 2);
    assert_non_null(json_object_get(c, "hashes"));
    json_t *whole = get("$k");
    assert_int_equal(json_object_size(whole), 4);
    /* a whole event in the cache serves any list, just those members (shared with it) */
    json_t *d = get_keys("$k", wanted);
    assert_int_equal(json_object_size(d), 2);
    assert_string_equal(body(d), "hi");
    assert_null(json_object_get(d, "prev_events"));
    /* and a whole read is the caller's own: changing it changes nothing in the cache */
    json_object_set_new(json_object_get(whole, "content"), "body", json_string("changed"));
    json_t *d2 = get_keys("$k", wanted);
    assert_string_equal(body(d2), "hi");
    json_decref(d2);
    /* rewritten (a redaction): the cached whole event is not served */
    put("$k", json_pack("{s:s, s:{}}", "type", "m.room.message", "content"));
    json_t *e = get_keys("$k", wanted);
    assert_null(body(e));
    json_t *objs[] = {a, b, c, whole, d, e};
    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); ++i)
        json_decref(objs[i]);
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
        cmocka_unit_test_setup_teardown(test_member_lists_share_the_cache, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
