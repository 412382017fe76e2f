/*
 * test_storage_threads.c -- thread summaries (reply count, latest reply,
 * participants) kept as replies arrive, and their schema migration from
 * the relation index of a database written before they existed.
 */
#include "testutil.h"

#include "storage/storage_internal.h"

static char *dir;
static ax_db_t *db;

static void open_db(void)
{
    char err[256];
    ax_db_options_t o = {.path = dir, .map_size = 64u << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &db, err, sizeof(err)), 0);
}

static int setup(void **state)
{
    (void)state;
    dir = test_mkdtemp();
    open_db();
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

static void write_txn(int (*fn)(ax_txn_t *txn, void *arg), void *arg)
{
    assert_int_equal(ax_db_write_direct(db, fn, arg), 0);
}

/* Three replies to $root: two by @a, one by @b; stored as events with their relation entries. */
static int replies(ax_txn_t *txn, void *arg)
{
    bool summaries = arg != NULL;
    static const char *const ids[] = {"$r1", "$r2", "$r3"}, *const senders[] = {"@a:x", "@b:x", "@a:x"};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; ++i) {
        json_t *ev = json_pack("{s:s, s:s, s:{s:{s:s, s:s}}}", "type", "m.room.message", "sender", senders[i],
                               "content", "m.relates_to", "rel_type", "m.thread", "event_id", "$root");
        rc = ax_db_event_put(txn, ids[i], "!room:x", (uint64_t)(10 + i), 0, ev);
        json_decref(ev);
        if (rc == 0)
            rc = ax_db_relation_put(txn, "$root", "m.thread", (uint64_t)(10 + i), ids[i]);
        if (rc == 0 && summaries)
            rc = ax_db_thread_note(txn, "$root", ids[i], senders[i]);
    }
    return rc;
}

static void expect_summary(void)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    uint64_t count = 0;
    char latest[64];
    assert_int_equal(ax_db_thread_summary(t, "$root", &count, latest, sizeof(latest)), 0);
    assert_int_equal(count, 3);
    assert_string_equal(latest, "$r3");
    assert_true(ax_db_thread_participant(t, "$root", "@a:x"));
    assert_true(ax_db_thread_participant(t, "$root", "@b:x"));
    assert_false(ax_db_thread_participant(t, "$root", "@c:x"));
    assert_int_equal(ax_db_thread_summary(t, "$other", &count, latest, sizeof(latest)), AX_ENOTFOUND);
    ax_db_read_end(t);
}

static void test_summary(void **state)
{
    (void)state;
    write_txn(replies, (void *)1);
    expect_summary();
}

static int version_two(ax_txn_t *txn, void *arg)
{
    (void)arg;
    return ax_db_meta_put_u64(txn, "schema_version", 2);
}

static void test_migration_builds_summaries(void **state)
{
    (void)state;
    write_txn(replies, NULL); /* as an older axon stored them: relations only */
    write_txn(version_two, NULL);
    ax_db_close(db);
    open_db(); /* migrates 2 -> 3 */
    expect_summary();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_builds_summaries, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
