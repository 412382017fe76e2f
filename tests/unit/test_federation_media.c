/*
 * test_federation_media.c -- the multipart/mixed reader of federation media
 * downloads (federation/media.c): the boundary of a Content-Type (quoted,
 * any case, too long, not multipart), splitting a body (preamble and
 * epilogue, transport padding, empty parts and headers, a boundary-like
 * line inside content, a body cut short, too many parts), every prefix of
 * a valid body (must fail cleanly, never read past its end), part headers,
 * and the file name of a Content-Disposition (RFC 6266 filename* first).
 */
#include "testutil.h"

#include "federation/federation.h"

static void test_boundary(void **state)
{
    (void)state;
    char b[80];
    assert_int_equal(ax_multipart_boundary("multipart/mixed; boundary=abc", b, sizeof(b)), 0);
    assert_string_equal(b, "abc");
    assert_int_equal(ax_multipart_boundary("Multipart/Mixed;BOUNDARY=\"a b;c\"", b, sizeof(b)), 0);
    assert_string_equal(b, "a b;c");
    assert_int_equal(ax_multipart_boundary("multipart/mixed; charset=x; boundary=z9 ", b, sizeof(b)), 0);
    assert_string_equal(b, "z9");
    assert_int_equal(ax_multipart_boundary("multipart/mixed", b, sizeof(b)), AX_EINVAL);
    assert_int_equal(ax_multipart_boundary("multipart/mixed; boundary=", b, sizeof(b)), AX_EINVAL);
    assert_int_equal(ax_multipart_boundary("multipart/mixed; boundary=\"open", b, sizeof(b)), AX_EINVAL);
    assert_int_equal(ax_multipart_boundary("multipart/alternative; boundary=x", b, sizeof(b)), AX_EINVAL);
    assert_int_equal(ax_multipart_boundary("multipart/mixedx; boundary=x", b, sizeof(b)), AX_EINVAL);
    assert_int_equal(ax_multipart_boundary("application/json", b, sizeof(b)), AX_EINVAL);
    assert_int_equal(ax_multipart_boundary(NULL, b, sizeof(b)), AX_EINVAL);
    char longer[200];
    snprintf(longer, sizeof(longer), "multipart/mixed; boundary=%071d", 0);
    assert_int_equal(ax_multipart_boundary(longer, b, sizeof(b)), AX_EINVAL); /* RFC 2046: at most 70 */
}

#define BODY                                                                                                           \
    "preamble to ignore\r\n"                                                                                           \
    "--XyZ\r\n"                                                                                                        \
    "Content-Type: application/json\r\n"                                                                               \
    "\r\n"                                                                                                             \
    "{}\r\n"                                                                                                           \
    "--XyZ   \r\n"                                                                                                     \
    "content-type:  image/png \r\n"                                                                                    \
    "Content-Disposition: inline; filename=\"a.png\"\r\n"                                                              \
    "\r\n"                                                                                                             \
    "--XyZ not a delimiter\r\nX--XyZ\r\n"                                                                              \
    "--XyZ--\r\n"                                                                                                      \
    "epilogue"

static void test_split(void **state)
{
    (void)state;
    ax_mime_part_t p[4];
    size_t n = 0;
    assert_int_equal(ax_multipart_split(BODY, strlen(BODY), "XyZ", p, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].body_len, 2);
    assert_memory_equal(p[0].body, "{}", 2);
    /* a line starting with the boundary but not at a line break of the content is content */
    const char *want = "--XyZ not a delimiter\r\nX--XyZ";
    assert_int_equal(p[1].body_len, strlen(want));
    assert_memory_equal(p[1].body, want, strlen(want));
    char v[128];
    assert_true(ax_multipart_header(&p[1], "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "image/png");
    assert_true(ax_multipart_header(&p[1], "content-disposition", v, sizeof(v)));
    assert_string_equal(v, "inline; filename=\"a.png\"");
    assert_false(ax_multipart_header(&p[1], "location", v, sizeof(v)));
    assert_false(ax_multipart_header(&p[1], "content-type", v, 4)); /* too long for the buffer */
    /* too many parts for the caller */
    assert_int_equal(ax_multipart_split(BODY, strlen(BODY), "XyZ", p, 1, &n), AX_ETOOBIG);
    /* another boundary: nothing */
    assert_int_equal(ax_multipart_split(BODY, strlen(BODY), "Other", p, 4, &n), AX_EINVAL);
}

static void test_split_empty_parts(void **state)
{
    (void)state;
    /* no preamble, a part without headers, an empty body */
    const char *b = "--b\r\n\r\n\r\n--b\r\nLocation: https://x/y\r\n\r\n\r\n--b--";
    ax_mime_part_t p[2];
    size_t n = 0;
    assert_int_equal(ax_multipart_split(b, strlen(b), "b", p, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].headers_len, 0);
    assert_int_equal(p[0].body_len, 0);
    assert_int_equal(p[1].body_len, 0);
    char v[64];
    assert_true(ax_multipart_header(&p[1], "Location", v, sizeof(v)));
    assert_string_equal(v, "https://x/y");
    /* only the close delimiter: no part at all */
    assert_int_equal(ax_multipart_split("--b--", 5, "b", p, 2, &n), AX_EINVAL);
    /* a delimiter glued to text is not a line of its own */
    assert_int_equal(ax_multipart_split("--bX\r\n\r\n\r\n--b--", 15, "b", p, 2, &n), AX_EINVAL);
}

static void test_every_prefix_fails_cleanly(void **state)
{
    (void)state;
    size_t len = strlen(BODY);
    /* the close delimiter ends at len - strlen("\r\nepilogue"): every shorter body is cut short */
    size_t complete = len - strlen("\r\nepilogue");
    for (size_t i = 0; i < len; ++i) {
        char *copy = malloc(i ? i : 1); /* exactly 'i' bytes: ASan catches any read past them */
        memcpy(copy, BODY, i);
        ax_mime_part_t p[4];
        size_t n = 0;
        int rc = ax_multipart_split(copy, i, "XyZ", p, 4, &n);
        if (i < complete)
            assert_int_equal(rc, AX_EINVAL);
        else
            assert_int_equal(rc, 0);
        free(copy);
    }
}

static void test_filename(void **state)
{
    (void)state;
    char f[64];
    assert_int_equal(ax_content_disposition_filename("attachment; filename=\"plain.txt\"", f, sizeof(f)), 0);
    assert_string_equal(f, "plain.txt");
    assert_int_equal(ax_content_disposition_filename("inline; filename=token.bin", f, sizeof(f)), 0);
    assert_string_equal(f, "token.bin");
    /* filename* wins, percent-decoded UTF-8 */
    assert_int_equal(ax_content_disposition_filename(
                         "inline; filename=\"fallback\"; filename*=UTF-8''caf%C3%A9%20x.txt", f, sizeof(f)),
                     0);
    assert_string_equal(f, "caf\xc3\xa9 x.txt");
    assert_int_equal(ax_content_disposition_filename("inline; filename*=UTF-8''bad%zz", f, sizeof(f)), AX_EINVAL);
    assert_int_equal(ax_content_disposition_filename("inline", f, sizeof(f)), AX_ENOTFOUND);
    assert_int_equal(ax_content_disposition_filename(NULL, f, sizeof(f)), AX_ENOTFOUND);
    assert_int_equal(ax_content_disposition_filename("inline; filename=\"escaped \\\" quote\"", f, sizeof(f)), 0);
    assert_string_equal(f, "escaped \" quote");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundary),          cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_empty_parts), cmocka_unit_test(test_every_prefix_fails_cleanly),
        cmocka_unit_test(test_filename),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
