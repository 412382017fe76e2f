/*
 * test_storage_e2ee.c -- the end-to-end encryption tables: one-time keys
 * claimed in upload order and exactly once, fallback keys and their used
 * flag, the device-list change stream (one entry per user and observer),
 * send-to-device inboxes and their acknowledgement, key backup versions
 * and keys, deleting a device's keys, and the membership change index
 * with its schema migration.
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

/* Runs 'fn' in one write transaction with stream positions, as the writer would. */
static void write_txn(int (*fn)(ax_txn_t *txn, void *arg), void *arg)
{
    assert_int_equal(ax_db_write_direct(db, fn, arg), 0);
}

static ax_txn_t *reader(void)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(db, &t), 0);
    return t;
}

/* ---- one-time keys ---- */

static int otk_upload(ax_txn_t *txn, void *arg)
{
    (void)arg;
    /* two uploads: the later one has lower key IDs, which must not matter */
    uint64_t first, second;
    json_t *k = json_string("key");
    int rc = ax_db_otk_next_seq(txn, &first);
    if (rc == 0)
        rc = ax_db_otk_add(txn, "@a:x", "DEV", "signed_curve25519", "BBB", k, first);
    if (rc == 0)
        rc = ax_db_otk_add(txn, "@a:x", "DEV", "signed_curve25519", "CCC", k, first);
    if (rc == 0)
        rc = ax_db_otk_next_seq(txn, &second);
    if (rc == 0 && second <= first)
        rc = AX_EINVAL;
    if (rc == 0)
        rc = ax_db_otk_add(txn, "@a:x", "DEV", "signed_curve25519", "AAA", k, second);
    if (rc == 0)
        rc = ax_db_otk_add(txn, "@a:x", "DEV", "curve25519", "ZZZ", k, second);
    /* a device whose ID extends this one's must not share its keys */
    if (rc == 0)
        rc = ax_db_otk_add(txn, "@a:x", "DEVX", "signed_curve25519", "QQQ", k, second);
    json_decref(k);
    return rc;
}

typedef struct st_take_t {
    const char *device;
    char ids[8][32];
    size_t n;
} take_t;

static int otk_take_all(ax_txn_t *txn, void *arg)
{
    take_t *t = arg;
    json_t *key;
    while (t->n < 8 &&
           ax_db_otk_take(txn, "@a:x", t->device, "signed_curve25519", t->ids[t->n], sizeof(t->ids[0]), &key) == 0) {
        json_decref(key);
        t->n++;
    }
    return 0;
}

static void test_otk_order_and_counts(void **state)
{
    (void)state;
    write_txn(otk_upload, NULL);
    ax_txn_t *t = reader();
    json_t *counts;
    assert_int_equal(ax_db_otk_counts(t, "@a:x", "DEV", &counts), 0);
    assert_int_equal(json_integer_value(json_object_get(counts, "signed_curve25519")), 3);
    assert_int_equal(json_integer_value(json_object_get(counts, "curve25519")), 1);
    assert_int_equal(json_object_size(counts), 2);
    json_decref(counts);
    json_t *key;
    assert_int_equal(ax_db_otk_get(t, "@a:x", "DEV", "signed_curve25519", "AAA", &key), 0);
    assert_string_equal(json_string_value(key), "key");
    json_decref(key);
    ax_db_read_end(t);

    take_t tk = {.device = "DEV"};
    write_txn(otk_take_all, &tk);
    assert_int_equal(tk.n, 3);
    assert_string_equal(tk.ids[0], "BBB"); /* the first upload first */
    assert_string_equal(tk.ids[1], "CCC");
    assert_string_equal(tk.ids[2], "AAA");
    take_t again = {.device = "DEV"};
    write_txn(otk_take_all, &again);
    assert_int_equal(again.n, 0); /* each key exactly once */

    t = reader();
    assert_int_equal(ax_db_otk_counts(t, "@a:x", "DEV", &counts), 0);
    assert_int_equal(json_object_size(counts), 1);
    json_decref(counts);
    assert_int_equal(ax_db_otk_counts(t, "@a:x", "DEVX", &counts), 0);
    assert_int_equal(json_integer_value(json_object_get(counts, "signed_curve25519")), 1);
    json_decref(counts);
    ax_db_read_end(t);
}

/* ---- fallback keys ---- */

static int fallback_put(ax_txn_t *txn, void *arg)
{
    json_t *k = json_pack("{s:s, s:b}", "key", (const char *)arg, "fallback", 1);
    int rc = ax_db_fallback_put(txn, "@a:x", "DEV", "signed_curve25519", arg, k);
    json_decref(k);
    return rc;
}

static int fallback_claim(ax_txn_t *txn, void *arg)
{
    char id[32];
    json_t *key = NULL;
    int rc = ax_db_fallback_claim(txn, "@a:x", "DEV", "signed_curve25519", id, sizeof(id), &key);
    if (rc == 0)
        snprintf(arg, 32, "%s", id);
    json_decref(key);
    return rc;
}

static size_t unused_count(void)
{
    ax_txn_t *t = reader();
    json_t *types;
    assert_int_equal(ax_db_fallback_unused(t, "@a:x", "DEV", &types), 0);
    ax_db_read_end(t);
    size_t n = json_array_size(types);
    json_decref(types);
    return n;
}

static void test_fallback_used_flag(void **state)
{
    (void)state;
    assert_int_equal(unused_count(), 0);
    write_txn(fallback_put, "FB1");
    assert_int_equal(unused_count(), 1);
    char id[32] = "";
    write_txn(fallback_claim, id);
    assert_string_equal(id, "FB1");
    assert_int_equal(unused_count(), 0);
    /* claimed again: the same key is handed out again, it is a fallback */
    write_txn(fallback_claim, id);
    assert_string_equal(id, "FB1");
    /* re-uploading the spent key does not revive it; a new one does */
    write_txn(fallback_put, "FB1");
    assert_int_equal(unused_count(), 0);
    write_txn(fallback_put, "FB2");
    assert_int_equal(unused_count(), 1);
}

/* ---- device lists ---- */

static int touch_three(ax_txn_t *txn, void *arg)
{
    (void)arg;
    /* one transaction: ax_db_write_direct hands out positions from 1 in each */
    int rc = ax_db_devicelist_touch(txn, "@a:x", NULL);
    if (rc == 0)
        rc = ax_db_devicelist_touch(txn, "@a:x", NULL);
    if (rc == 0)
        rc = ax_db_devicelist_touch(txn, "@a:x", "@b:x");
    return rc;
}

typedef struct st_changes_t {
    char users[8][64];
    size_t n;
} changes_t;

static int changes_cb(void *arg, uint64_t pos, const char *user_id, const char *observer)
{
    (void)pos;
    changes_t *c = arg;
    if (c->n < 8)
        snprintf(c->users[c->n++], sizeof(c->users[0]), "%s/%s", user_id, observer);
    return 0;
}

static void test_devicelist_stream(void **state)
{
    (void)state;
    write_txn(touch_three, NULL);
    changes_t c = {.n = 0};
    ax_txn_t *t = reader();
    assert_int_equal(ax_db_devicelist_changes(t, 0, UINT64_MAX, changes_cb, &c), 0);
    ax_db_read_end(t);
    /* one entry for everyone (the latest) and one for observer @b:x */
    assert_int_equal(c.n, 2);
    bool everyone = false, observer = false;
    for (size_t i = 0; i < c.n; ++i) {
        everyone |= strcmp(c.users[i], "@a:x/") == 0;
        observer |= strcmp(c.users[i], "@a:x/@b:x") == 0;
    }
    assert_true(everyone);
    assert_true(observer);
    /* positions 1 and 2 of the first entry are gone: a bounded window sees only the observer's entry */
    c.n = 0;
    t = reader();
    assert_int_equal(ax_db_devicelist_changes(t, 2, 3, changes_cb, &c), 0);
    ax_db_read_end(t);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.users[0], "@a:x/@b:x");
}

/* ---- to-device inboxes ---- */

static int inbox_fill(ax_txn_t *txn, void *arg)
{
    (void)arg;
    int rc = 0;
    for (uint64_t pos = 10; rc == 0 && pos <= 30; pos += 10) {
        json_t *m =
            json_pack("{s:s, s:s, s:{s:I}}", "sender", "@b:x", "type", "m.test", "content", "n", (json_int_t)pos);
        rc = ax_db_todevice_put(txn, "@a:x", "DEV", pos, m);
        json_decref(m);
    }
    if (rc == 0)
        rc = ax_db_todevice_txn_put(txn, "@b:x", "BDEV", "txn1", 1);
    return rc;
}

static int inbox_ack(ax_txn_t *txn, void *arg)
{
    size_t n;
    int rc = ax_db_todevice_ack(txn, "@a:x", "DEV", 20, &n);
    *(size_t *)arg = n;
    return rc;
}

typedef struct st_seen_t {
    uint64_t pos[8];
    size_t n;
} seen_t;

static int inbox_cb(void *arg, uint64_t pos, json_t *msg)
{
    seen_t *s = arg;
    assert_string_equal(json_string_value(json_object_get(msg, "type")), "m.test");
    s->pos[s->n++] = pos;
    return 0;
}

static void test_todevice_inbox(void **state)
{
    (void)state;
    write_txn(inbox_fill, NULL);
    ax_txn_t *t = reader();
    seen_t s = {.n = 0};
    assert_int_equal(ax_db_todevice_scan(t, "@a:x", "DEV", 10, inbox_cb, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.pos[0], 20);
    assert_int_equal(ax_db_todevice_txn_get(t, "@b:x", "BDEV", "txn1"), 0);
    assert_int_equal(ax_db_todevice_txn_get(t, "@b:x", "BDEV", "txn2"), AX_ENOTFOUND);
    ax_db_read_end(t);

    size_t acked = 0;
    write_txn(inbox_ack, &acked);
    assert_int_equal(acked, 2);
    t = reader();
    uint64_t oldest = 0;
    assert_int_equal(ax_db_todevice_oldest(t, "@a:x", "DEV", &oldest), 0);
    assert_int_equal(oldest, 30);
    ax_db_read_end(t);
}

/* ---- deleting a device ---- */

static int device_fill(ax_txn_t *txn, void *arg)
{
    (void)arg;
    json_t *keys = json_pack("{s:s}", "device_id", "GONE");
    json_t *k = json_string("otk");
    json_t *m = json_pack("{s:s}", "type", "m.test");
    int rc = ax_db_devicekeys_put(txn, "@a:x", "GONE", keys);
    if (rc == 0)
        rc = ax_db_otk_add(txn, "@a:x", "GONE", "alg", "id", k, 1);
    if (rc == 0)
        rc = ax_db_fallback_put(txn, "@a:x", "GONE", "alg", "fb", k);
    if (rc == 0)
        rc = ax_db_todevice_put(txn, "@a:x", "GONE", 5, m);
    if (rc == 0)
        rc = ax_db_devicekeys_put(txn, "@a:x", "GONE2", keys); /* a neighbour that stays */
    json_decref(keys);
    json_decref(k);
    json_decref(m);
    return rc;
}

static int device_delete(ax_txn_t *txn, void *arg)
{
    (void)arg;
    return ax_db_e2ee_device_delete(txn, "@a:x", "GONE");
}

static void test_device_delete(void **state)
{
    (void)state;
    write_txn(device_fill, NULL);
    write_txn(device_delete, NULL);
    ax_txn_t *t = reader();
    json_t *j = NULL;
    uint64_t pos;
    assert_int_equal(ax_db_devicekeys_get(t, "@a:x", "GONE", &j), AX_ENOTFOUND);
    assert_int_equal(ax_db_otk_get(t, "@a:x", "GONE", "alg", "id", &j), AX_ENOTFOUND);
    assert_int_equal(ax_db_todevice_oldest(t, "@a:x", "GONE", &pos), AX_ENOTFOUND);
    assert_int_equal(ax_db_fallback_unused(t, "@a:x", "GONE", &j), 0);
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    assert_int_equal(ax_db_devicekeys_get(t, "@a:x", "GONE2", &j), 0);
    json_decref(j);
    ax_db_read_end(t);
}

/* ---- key backup ---- */

static int backup_fill(ax_txn_t *txn, void *arg)
{
    (void)arg;
    json_t *v1 = json_pack("{s:s, s:{}, s:i, s:i}", "algorithm", "a", "auth_data", "etag", 0, "count", 0);
    json_t *v2 =
        json_pack("{s:s, s:{}, s:i, s:i, s:b}", "algorithm", "a", "auth_data", "etag", 0, "count", 0, "deleted", 1);
    json_t *key = json_pack("{s:i}", "first_message_index", 0);
    int rc = ax_db_backup_version_put(txn, "@a:x", 1, v1);
    if (rc == 0)
        rc = ax_db_backup_version_put(txn, "@a:x", 2, v2);
    if (rc == 0)
        rc = ax_db_backup_key_put(txn, "@a:x", 1, "!r1:x", "s1", key);
    if (rc == 0)
        rc = ax_db_backup_key_put(txn, "@a:x", 1, "!r1:x", "s2", key);
    if (rc == 0)
        rc = ax_db_backup_key_put(txn, "@a:x", 1, "!r2:x", "s1", key);
    json_decref(v1);
    json_decref(v2);
    json_decref(key);
    return rc;
}

static int count_keys(void *arg, const char *room_id, const char *session_id, json_t *key)
{
    (void)room_id, (void)session_id, (void)key;
    ++*(size_t *)arg;
    return 0;
}

static int backup_delete_room(ax_txn_t *txn, void *arg)
{
    return ax_db_backup_keys_delete(txn, "@a:x", 1, "!r1:x", NULL, arg);
}

static void test_key_backup(void **state)
{
    (void)state;
    write_txn(backup_fill, NULL);
    ax_txn_t *t = reader();
    uint64_t v = 0;
    assert_int_equal(ax_db_backup_version_latest(t, "@a:x", false, &v, NULL), 0);
    assert_int_equal(v, 1); /* version 2 is deleted */
    assert_int_equal(ax_db_backup_version_latest(t, "@a:x", true, &v, NULL), 0);
    assert_int_equal(v, 2); /* ... but its number stays taken */
    assert_int_equal(ax_db_backup_version_latest(t, "@nobody:x", true, &v, NULL), AX_ENOTFOUND);
    size_t n = 0;
    assert_int_equal(ax_db_backup_keys_foreach(t, "@a:x", 1, NULL, count_keys, &n), 0);
    assert_int_equal(n, 3);
    n = 0;
    assert_int_equal(ax_db_backup_keys_foreach(t, "@a:x", 1, "!r1:x", count_keys, &n), 0);
    assert_int_equal(n, 2);
    ax_db_read_end(t);
    size_t deleted = 0;
    write_txn(backup_delete_room, &deleted);
    assert_int_equal(deleted, 2);
    t = reader();
    json_t *j = NULL;
    assert_int_equal(ax_db_backup_key_get(t, "@a:x", 1, "!r1:x", "s1", &j), AX_ENOTFOUND);
    assert_int_equal(ax_db_backup_key_get(t, "@a:x", 1, "!r2:x", "s1", &j), 0);
    json_decref(j);
    ax_db_read_end(t);
}

/* ---- the membership change index and its migration ---- */

static int member_rows(ax_txn_t *txn, void *arg)
{
    (void)arg;
    int rc = ax_db_membership_put(txn, "!room:x", "@a:x", "join", "$1", 5);
    if (rc == 0)
        rc = ax_db_membership_put(txn, "!room:x", "@b:x", "join", "$2", 7);
    if (rc == 0)
        rc = ax_db_membership_put(txn, "!room:x", "@a:x", "leave", "$3", 9);
    return rc;
}

static int member_cb(void *arg, uint64_t pos, const char *user_id, const char *membership)
{
    changes_t *c = arg;
    snprintf(c->users[c->n++], sizeof(c->users[0]), "%llu %s %s", (unsigned long long)pos, user_id, membership);
    return 0;
}

/* Makes the database look like schema version 1: no change index yet. */
static int downgrade(ax_txn_t *txn, void *arg)
{
    (void)arg;
    int rc = ax_kv_del_prefix(txn, AX_DBI_roomid_pos_member, NULL, 0, NULL);
    return rc == 0 ? ax_db_meta_put_u64(txn, "schema_version", 1) : rc;
}

static void expect_member_changes(void)
{
    changes_t c = {.n = 0};
    ax_txn_t *t = reader();
    assert_int_equal(ax_db_member_changes(t, "!room:x", 5, 9, member_cb, &c), 0);
    ax_db_read_end(t);
    assert_int_equal(c.n, 2); /* (5, 9]: position 5 is already seen */
    assert_string_equal(c.users[0], "7 @b:x join");
    assert_string_equal(c.users[1], "9 @a:x leave");
}

static void test_member_changes_and_migration(void **state)
{
    (void)state;
    write_txn(member_rows, NULL);
    expect_member_changes();
    write_txn(downgrade, NULL);
    changes_t c = {.n = 0};
    ax_txn_t *t = reader();
    assert_int_equal(ax_db_member_changes(t, "!room:x", 0, UINT64_MAX, member_cb, &c), 0);
    ax_db_read_end(t);
    assert_int_equal(c.n, 0);
    /* reopening migrates to version 2 and rebuilds the index from the membership history */
    ax_db_close(db);
    char err[256];
    ax_db_options_t o = {.path = dir, .map_size = 64u << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &db, err, sizeof(err)), 0);
    t = reader();
    uint64_t version = 0;
    assert_int_equal(ax_db_meta_get_u64(t, "schema_version", &version), 0);
    ax_db_read_end(t);
    assert_int_equal(version, AX_SCHEMA_VERSION);
    expect_member_changes();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_otk_order_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_used_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devicelist_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_todevice_inbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_member_changes_and_migration, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
