/*
 * test_core_thumbnail_off.c -- a server whose libvips cannot be loaded: the
 * first thumbnail fails cleanly with AX_ERR, thumbnails are off from then
 * on, and nothing else is disturbed.  (A process of its own: libvips is
 * loaded once per process.)
 */
#include "testutil.h"

#include "core/media.h"

static void test_missing_library(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char src[4096];
    snprintf(src, sizeof(src), "%s/img", dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("\x89PNG\r\n\x1a\n", f);
    fclose(f);

    ax_thumbnail_init("libaxon-test-no-such-vips.so.42");
    assert_true(ax_thumbnail_available()); /* nothing is loaded before the first thumbnail */
    ax_thumb_size_t crop32 = {32, 32, true};
    void *out = NULL;
    size_t len = 0;
    const char *mime = NULL;
    assert_int_equal(ax_thumbnail_make(src, &crop32, 100000000, &out, &len, &mime), AX_ERR);
    assert_null(out);
    assert_false(ax_thumbnail_available());
    /* and stays off, without another attempt */
    assert_int_equal(ax_thumbnail_make(src, &crop32, 100000000, &out, &len, &mime), AX_ERR);
    assert_false(ax_thumbnail_available());
    ax_thumbnail_shutdown(); /* nothing started: a no-op */
    test_rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_library),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
