/*
 * test_common_strmap.c -- the open-addressing string map: put/get/replace,
 * delete with tombstones, growth, iteration and clearing.
 */
#include "testutil.h"

#include "common/strmap.h"

static void count_cb(void *arg, const char *key, void *value)
{
    (void)key;
    size_t *n = arg;
    *n += (size_t)(uintptr_t)value;
}

static void test_strmap(void **state)
{
    (void)state;
    ax_strmap_t m = AX_STRMAP_INIT;
    assert_null(ax_strmap_get(&m, "missing"));
    assert_null(ax_strmap_del(&m, "missing"));
    char key[32];
    for (uintptr_t i = 1; i <= 5000; ++i) {
        snprintf(key, sizeof(key), "@user%lu:example.org", (unsigned long)i);
        assert_null(ax_strmap_put(&m, key, (void *)i));
    }
    assert_int_equal(m.size, 5000);
    assert_ptr_equal(ax_strmap_get(&m, "@user77:example.org"), (void *)77);
    assert_ptr_equal(ax_strmap_put(&m, "@user77:example.org", (void *)7), (void *)77);
    assert_ptr_equal(ax_strmap_get(&m, "@user77:example.org"), (void *)7);
    /* deleting every other key leaves the rest reachable through the tombstones */
    for (uintptr_t i = 1; i <= 5000; i += 2) {
        snprintf(key, sizeof(key), "@user%lu:example.org", (unsigned long)i);
        assert_non_null(ax_strmap_del(&m, key));
    }
    assert_int_equal(m.size, 2500);
    for (uintptr_t i = 2; i <= 5000; i += 2) {
        snprintf(key, sizeof(key), "@user%lu:example.org", (unsigned long)i);
        assert_ptr_equal(ax_strmap_get(&m, key), (void *)i);
        snprintf(key, sizeof(key), "@user%lu:example.org", (unsigned long)i - 1);
        assert_null(ax_strmap_get(&m, key));
    }
    /* re-adding reuses tombstones */
    for (uintptr_t i = 1; i <= 5000; i += 2) {
        snprintf(key, sizeof(key), "@user%lu:example.org", (unsigned long)i);
        assert_null(ax_strmap_put(&m, key, (void *)1));
    }
    size_t total = 0;
    ax_strmap_foreach(&m, count_cb, &total);
    /* odd keys were re-added with value 1; even keys kept value i */
    assert_int_equal(total, 2500 + 2500 * 2501);
    ax_strmap_clear(&m);
    assert_int_equal(m.size, 0);
    assert_null(ax_strmap_get(&m, "@user2:example.org"));
    assert_null(ax_strmap_put(&m, "", (void *)3));
    assert_ptr_equal(ax_strmap_get(&m, ""), (void *)3);
    ax_strmap_dispose(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_strmap)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
