/*
 * test_core_media.c -- the media repository below the HTTP layer: the
 * choice of thumbnail sizes, the content-addressed store (dedupe, crash
 * leftovers, removal with thumbnails), thumbnails of generated images and a
 * decompression bomb, and the LMDB records (pending IDs, completion,
 * reference counts, expiry).
 */
#include "testutil.h"

#include "core/media.h"
#include "storage/storage_internal.h"

#include <sodium.h>
#include <sys/stat.h>
#include <vips/vips.h>

static void test_choose(void **state)
{
    (void)state;
    ax_thumb_size_t s;
    assert_true(ax_thumbnail_choose(32, 32, true, &s));
    assert_int_equal(s.width, 32);
    assert_int_equal(s.height, 32);
    assert_true(s.crop);
    assert_true(ax_thumbnail_choose(50, 40, true, &s));
    assert_int_equal(s.width, 96);
    assert_true(ax_thumbnail_choose(100, 100, false, &s));
    assert_int_equal(s.width, 320);
    assert_int_equal(s.height, 240);
    assert_false(s.crop);
    assert_true(ax_thumbnail_choose(641, 1, false, &s));
    assert_int_equal(s.width, 800);
    assert_true(ax_thumbnail_choose(800, 600, true, &s));
    assert_true(s.crop);
    assert_false(ax_thumbnail_choose(801, 600, false, &s));
    assert_false(ax_thumbnail_choose(100, 601, true, &s));
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void test_store(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char err[256], path[4096], hex[AX_MEDIA_SHA_HEX];
    ax_media_store_t st;
    assert_int_equal(ax_media_store_open(&st, dir, true, err, sizeof(err)), 0);

    uint8_t sha[AX_MEDIA_SHA_BYTES], sha2[AX_MEDIA_SHA_BYTES];
    assert_int_equal(ax_media_store_put(&st, "hello", 5, sha), 0);
    ax_media_hex(sha, hex);
    assert_string_equal(hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_true(ax_media_hex_valid(hex));
    assert_false(ax_media_hex_valid("2cf24dba"));
    assert_true(ax_media_store_has(&st, hex));
    ax_media_path(&st, hex, path, sizeof(path));
    FILE *fp = fopen(path, "rb");
    char buf[16] = {0};
    assert_non_null(fp);
    assert_int_equal(fread(buf, 1, sizeof(buf), fp), 5);
    fclose(fp);
    assert_memory_equal(buf, "hello", 5);
    /* the same content again: the same name, nothing new */
    assert_int_equal(ax_media_store_put(&st, "hello", 5, sha2), 0);
    assert_memory_equal(sha, sha2, sizeof(sha));

    /* a thumbnail beside it goes with it */
    char thumb[4096];
    ax_media_thumb_path(&st, hex, 32, 32, true, "png", thumb, sizeof(thumb));
    assert_int_equal(ax_media_store_write_file(&st, thumb, "png!", 4), 0);
    assert_true(exists(thumb));
    assert_int_equal(ax_media_store_remove(&st, hex), 0);
    assert_false(ax_media_store_has(&st, hex));
    assert_false(exists(thumb));
    assert_int_equal(ax_media_store_remove(&st, hex), 0); /* idempotent */
    assert_int_equal(ax_media_store_remove(&st, "../../etc"), AX_EINVAL);

    /* what a crash left in tmp/ is gone after the next open, and only then */
    char *leftover = NULL;
    assert_true(asprintf(&leftover, "%s/half-written", st.tmp) > 0);
    fp = fopen(leftover, "wb");
    assert_non_null(fp);
    fclose(fp);
    ax_media_store_dispose(&st);
    assert_int_equal(ax_media_store_open(&st, dir, false, err, sizeof(err)), 0);
    assert_true(exists(leftover));
    ax_media_store_dispose(&st);
    assert_int_equal(ax_media_store_open(&st, dir, true, err, sizeof(err)), 0);
    assert_false(exists(leftover));
    free(leftover);
    ax_media_store_dispose(&st);
    test_rm_rf(dir);
    free(dir);
}

/* Writes an image of w x h made by libvips itself to 'path' in 'format' ("png", "jpg"). */
static void write_image(const char *path, int w, int h)
{
    VipsImage *img = NULL;
    assert_int_equal(vips_xyz(&img, w, h, NULL), 0);
    VipsImage *u8 = NULL;
    assert_int_equal(vips_cast_uchar(img, &u8, NULL), 0);
    assert_int_equal(vips_image_write_to_file(u8, path, NULL), 0);
    g_object_unref(u8);
    g_object_unref(img);
}

static void test_thumbnails(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char src[4096];
    /* the test draws its images with libvips, linked; ax_thumbnail_make() loads the same library */
    assert_int_equal(VIPS_INIT("test_core_media"), 0);
    assert_true(ax_thumbnail_available());
    ax_thumb_size_t crop32 = {32, 32, true}, scale320 = {320, 240, false}, scale800 = {800, 600, false};
    void *out = NULL;
    size_t len = 0;
    const char *mime = NULL;

    snprintf(src, sizeof(src), "%s/big.png", dir);
    write_image(src, 400, 200);
    assert_int_equal(ax_thumbnail_make(src, &crop32, 100000000, &out, &len, &mime), 0);
    assert_string_equal(mime, "image/png");
    VipsImage *t = vips_image_new_from_buffer(out, len, "", NULL);
    assert_non_null(t);
    assert_int_equal(vips_image_get_width(t), 32);
    assert_int_equal(vips_image_get_height(t), 32);
    g_object_unref(t);
    free(out);
    assert_int_equal(ax_thumbnail_make(src, &scale320, 100000000, &out, &len, &mime), 0);
    t = vips_image_new_from_buffer(out, len, "", NULL);
    assert_int_equal(vips_image_get_width(t), 320);
    assert_int_equal(vips_image_get_height(t), 160);
    g_object_unref(t);
    free(out);
    /* never upscaled; never decoded past the pixel limit */
    assert_int_equal(ax_thumbnail_make(src, &scale800, 100000000, &out, &len, &mime), AX_THUMB_ORIGINAL);
    assert_string_equal(mime, "image/png");
    assert_int_equal(ax_thumbnail_make(src, &crop32, 400 * 200 - 1, &out, &len, &mime), AX_ETOOBIG);

    snprintf(src, sizeof(src), "%s/photo.jpg", dir);
    write_image(src, 300, 300);
    assert_int_equal(ax_thumbnail_make(src, &crop32, 100000000, &out, &len, &mime), 0);
    assert_string_equal(mime, "image/jpeg");
    free(out);

    /* not an image, and an SVG (whose loader is untrusted) */
    snprintf(src, sizeof(src), "%s/text", dir);
    FILE *fp = fopen(src, "wb");
    fputs("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"900\"></svg>", fp);
    fclose(fp);
    assert_int_equal(ax_thumbnail_make(src, &crop32, 100000000, &out, &len, &mime), AX_EINVAL);
    test_rm_rf(dir);
    free(dir);
}

static int apply_fn(ax_txn_t *txn, void *arg)
{
    int (*fn)(ax_txn_t *) = (int (*)(ax_txn_t *))arg;
    return fn(txn);
}

static json_t *rec_pending(const char *user, uint64_t created, uint64_t expires)
{
    return json_pack("{s:s, s:I, s:b, s:I}", "uploader", user, "created_ts", (json_int_t)created, "pending", 1,
                     "expires_ts", (json_int_t)expires);
}

static json_t *rec_stored(const char *user, uint64_t created, const char *hex)
{
    return json_pack("{s:s, s:I, s:s, s:i, s:s}", "uploader", user, "created_ts", (json_int_t)created, "sha256", hex,
                     "size", 5, "content_type", "text/plain");
}

#define HEX_A "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

static int records_body(ax_txn_t *txn)
{
    json_t *r;
    size_t n;
    uint64_t refs;
    uint8_t sha[AX_MEDIA_HASH_BYTES];
    /* two IDs with the same content: two references */
    r = rec_stored("@a:x", 1000, HEX_A);
    assert_int_equal(ax_db_media_put(txn, "one", r), 0);
    assert_int_equal(ax_db_media_put(txn, "one", r), AX_EEXIST); /* never overwritten */
    json_decref(r);
    r = rec_stored("@a:x", 1001, HEX_A);
    assert_int_equal(ax_db_media_put(txn, "two", r), 0);
    json_decref(r);
    assert_int_equal(ax_db_media_sha_from_hex(HEX_A, sha), 0);
    assert_int_equal(ax_db_media_refs(txn, sha, &refs), 0);
    assert_int_equal(refs, 2);

    /* pending IDs: counted until they expire, completed by their uploader only */
    r = rec_pending("@a:x", 2000, 5000);
    assert_int_equal(ax_db_media_put(txn, "p1", r), 0);
    json_decref(r);
    r = rec_pending("@a:x", 2001, 9000);
    assert_int_equal(ax_db_media_put(txn, "p2", r), 0);
    json_decref(r);
    assert_int_equal(ax_db_media_pending_count(txn, "@a:x", 4000, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ax_db_media_pending_count(txn, "@a:x", 6000, &n), 0);
    assert_int_equal(n, 1);
    r = rec_stored("@b:x", 2001, HEX_A);
    assert_int_equal(ax_db_media_put(txn, "p2", r), AX_EEXIST);
    json_decref(r);
    r = rec_stored("@a:x", 2001, HEX_A);
    assert_int_equal(ax_db_media_put(txn, "p2", r), 0);
    json_decref(r);
    assert_int_equal(ax_db_media_pending_count(txn, "@a:x", 0, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ax_db_media_refs(txn, sha, &refs), 0);
    assert_int_equal(refs, 3);

    /* expiry removes p1 only */
    assert_int_equal(ax_db_media_expire(txn, 6000, 10, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ax_db_media_get(txn, "p1", &r), AX_ENOTFOUND);
    assert_int_equal(ax_db_media_get(txn, "p2", &r), 0);
    json_decref(r);
    assert_int_equal(ax_db_media_expire(txn, 99999, 10, &n), 0);
    assert_int_equal(n, 0);

    /* deletes count down to the last reference */
    uint64_t left;
    uint8_t got[AX_MEDIA_HASH_BYTES];
    assert_int_equal(ax_db_media_delete(txn, "one", got, &left), 0);
    assert_memory_equal(got, sha, sizeof(sha));
    assert_int_equal(left, 2);
    assert_int_equal(ax_db_media_delete(txn, "one", got, &left), AX_ENOTFOUND);
    assert_int_equal(ax_db_media_delete(txn, "two", got, &left), 0);
    assert_int_equal(ax_db_media_delete(txn, "p2", got, &left), 0);
    assert_int_equal(left, 0);
    assert_int_equal(ax_db_media_refs(txn, sha, &refs), 0);
    assert_int_equal(refs, 0);
    return 0;
}

static int count_cb(void *arg, const char *media_id, json_t *rec)
{
    (void)media_id;
    (void)rec;
    ++*(int *)arg;
    return 0;
}

static int list_body(ax_txn_t *txn)
{
    int n = 0;
    assert_int_equal(ax_db_media_user_foreach(txn, "@a:x", count_cb, &n), 0);
    return n; /* everything was deleted in records_body */
}

static void test_records(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char err[256];
    ax_db_options_t o = {.path = dir, .map_size = 1 << 24, .sync = false};
    ax_db_t *db = NULL;
    assert_int_equal(ax_db_open(&o, &db, err, sizeof(err)), 0);
    assert_int_equal(ax_db_write_direct(db, apply_fn, (void *)records_body), 0);
    assert_int_equal(ax_db_write_direct(db, apply_fn, (void *)list_body), 0);
    ax_db_close(db);
    test_rm_rf(dir);
    free(dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_thumbnails),
        cmocka_unit_test(test_records),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ax_thumbnail_shutdown();
    return rc;
}
