/*
 * test_core_encoding.c -- unpadded base64 and canonical JSON, checked byte
 * for byte against the spec's vectors (tests/vectors/spec-vectors.json).
 */
#include "testutil.h"

#include "common/json.h"
#include "core/core.h"

static json_t *vectors;

static void test_base64_vectors(void **state)
{
    (void)state;
    json_t *cases = json_object_get(vectors, "unpadded_base64");
    assert_true(json_array_size(cases) >= 7);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        const char *in = json_string_value(json_array_get(c, 0));
        const char *want = json_string_value(json_array_get(c, 1));
        char out[64];
        size_t n = ax_b64_encode(out, (const uint8_t *)in, strlen(in), false);
        assert_int_equal(n, strlen(want));
        assert_string_equal(out, want);
        uint8_t dec[64];
        size_t dlen;
        assert_int_equal(ax_b64_decode(dec, sizeof(dec), &dlen, want, strlen(want), false), 0);
        assert_int_equal(dlen, strlen(in));
        assert_memory_equal(dec, in, dlen);
    }
}

static void test_base64_padded_and_bad(void **state)
{
    (void)state;
    uint8_t dec[16];
    size_t dlen;
    /* receivers accept padding */
    assert_int_equal(ax_b64_decode(dec, sizeof(dec), &dlen, "Zm8=", 4, false), 0);
    assert_int_equal(dlen, 2);
    assert_memory_equal(dec, "fo", 2);
    /* characters outside the alphabet, impossible lengths, short buffers */
    assert_int_equal(ax_b64_decode(dec, sizeof(dec), &dlen, "Zm!v", 4, false), AX_EINVAL);
    assert_int_equal(ax_b64_decode(dec, sizeof(dec), &dlen, "Z", 1, false), AX_EINVAL);
    assert_int_equal(ax_b64_decode(dec, 2, &dlen, "Zm9vYmFy", 8, false), AX_EINVAL);
    /* URL-safe alphabet is distinct */
    uint8_t bin[3] = {0xfb, 0xff, 0xbf};
    char out[8];
    ax_b64_encode(out, bin, 3, true);
    assert_string_equal(out, "-_-_");
    ax_b64_encode(out, bin, 3, false);
    assert_string_equal(out, "+/+/");
    assert_int_equal(ax_b64_decode(dec, sizeof(dec), &dlen, "-_-_", 4, false), AX_EINVAL);
    assert_int_equal(ax_b64_decode(dec, sizeof(dec), &dlen, "-_-_", 4, true), 0);
}

static void test_canonical_json_vectors(void **state)
{
    (void)state;
    json_t *cases = json_object_get(vectors, "canonical_json");
    assert_true(json_array_size(cases) >= 10);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        const char *in = json_string_value(json_array_get(c, 0));
        const char *want = json_string_value(json_array_get(c, 1));
        json_error_t err;
        json_t *v = json_loads(in, JSON_DECODE_ANY, &err);
        assert_non_null(v);
        ax_buf_t b = AX_BUF_INIT;
        assert_int_equal(ax_cjson_encode(v, &b), 0);
        assert_string_equal(b.base, want);
        ax_buf_dispose(&b);
        json_decref(v);
    }
}

static void test_canonical_json_escapes_and_numbers(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s, s:s}", "ctl", "a\x01\x1f\b\f\n\r\t\"\\", "u2028", "\xe2\x80\xa8/");
    ax_buf_t b = AX_BUF_INIT;
    assert_int_equal(ax_cjson_encode(v, &b), 0);
    assert_string_equal(b.base, "{\"ctl\":\"a\\u0001\\u001f\\b\\f\\n\\r\\t\\\"\\\\\",\"u2028\":\"\xe2\x80\xa8/\"}");
    json_decref(v);

    /* fractions and numbers beyond 2^53-1 have no canonical form */
    ax_buf_reset(&b);
    v = json_pack("{s:f}", "x", 1.5);
    assert_int_equal(ax_cjson_encode(v, &b), AX_EINVAL);
    assert_int_equal(b.len, 0);
    json_decref(v);
    v = json_pack("[I]", (json_int_t)9007199254740992LL);
    assert_int_equal(ax_cjson_encode(v, &b), AX_EINVAL);
    json_decref(v);
    v = json_pack("[I,I]", (json_int_t)9007199254740991LL, (json_int_t)-9007199254740991LL);
    assert_int_equal(ax_cjson_encode(v, &b), 0);
    assert_string_equal(b.base, "[9007199254740991,-9007199254740991]");
    json_decref(v);

    /* nested objects sort at every level; keys compare by code point */
    ax_buf_reset(&b);
    v = json_loads("{\"b\":{\"z\":1,\"a\":[{\"y\":true,\"x\":null}]},\"a\":\"\",\"\xc3\xa9\":1,\"z\":2}", 0, NULL);
    assert_int_equal(ax_cjson_encode(v, &b), 0);
    assert_string_equal(b.base, "{\"a\":\"\",\"b\":{\"a\":[{\"x\":null,\"y\":true}],\"z\":1},\"z\":2,\"\xc3\xa9\":1}");
    json_decref(v);
    ax_buf_dispose(&b);

    v = json_pack("{s:[i,{s:f}]}", "a", 1, "b", 2.0);
    assert_int_equal(ax_cjson_check_strict(v), AX_EINVAL);
    json_decref(v);
    v = json_pack("{s:[i,{s:i}]}", "a", 1, "b", 2);
    assert_int_equal(ax_cjson_check_strict(v), 0);
    json_decref(v);
}

/* ax_json_encode writes what jansson's compact dump writes, member order and reals included. */
static void test_compact_json_matches_jansson(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{}",
        "[]",
        "\"\"",
        "0",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "true",
        "false",
        "null",
        "1.5",
        "-0.0",
        "1e300",
        "0.1",
        "123456789012.25",
        "[1.0,2.5e-7]",
        "{\"z\":1,\"a\":{\"y\":[],\"b\":{},\"x\":[null,true,false,{\"k\":\"v\"}]},\"\":0}",
        "{\"body\":\"caf\\u00e9 \\u2028 \\ud83d\\ude00 /slash/ \\\"quoted\\\" back\\\\slash\\ttab\\nnl\"}",
        "[\"a\",[\"b\",[\"c\",[]]],{\"d\":[{\"e\":{}}]}]",
    };
    for (size_t i = 0; i < AX_ARRAY_SIZE(texts); ++i) {
        json_t *v = json_loads(texts[i], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        ax_buf_t b = AX_BUF_INIT;
        ax_buf_puts(&b, "prefix:"); /* appends */
        assert_int_equal(ax_json_encode(v, &b), 0);
        assert_string_equal(b.base + 7, want);
        assert_int_equal(b.len, 7 + strlen(want));
        free(want);
        ax_buf_dispose(&b);
        json_decref(v);
    }

    /* control characters: \uXXXX in lower case where jansson writes upper case; the same value */
    json_t *v = json_pack("[s]", "a\x01\x1f\b\f\n\r\t\"\\z");
    ax_buf_t b = AX_BUF_INIT;
    assert_int_equal(ax_json_encode(v, &b), 0);
    assert_string_equal(b.base, "[\"a\\u0001\\u001f\\b\\f\\n\\r\\t\\\"\\\\z\"]");
    json_t *back = json_loads(b.base, 0, NULL);
    assert_true(json_equal(back, v));
    json_decref(back);
    json_decref(v);

    /* a long string grows the buffer across escapes */
    ax_buf_reset(&b);
    char big[5000];
    for (size_t i = 0; i < sizeof(big) - 1; ++i)
        big[i] = i % 97 == 0 ? '"' : (char)('a' + i % 26);
    big[sizeof(big) - 1] = '\0';
    v = json_string(big);
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_int_equal(ax_json_encode(v, &b), 0);
    assert_string_equal(b.base, want);
    free(want);
    json_decref(v);

    /* nothing to encode, or too deep: an error, and the buffer as it was */
    ax_buf_reset(&b);
    ax_buf_puts(&b, "kept");
    assert_int_equal(ax_json_encode(NULL, &b), AX_EINVAL);
    json_t *deep = json_array(), *inner = deep;
    for (int d = 0; d < 2100; ++d) {
        json_t *next = json_array();
        json_array_append_new(inner, next);
        inner = next;
    }
    assert_int_equal(ax_json_encode(deep, &b), AX_EINVAL);
    assert_string_equal(b.base, "kept");
    assert_int_equal(b.len, 4);
    json_decref(deep);
    ax_buf_dispose(&b);
}

static void test_random_alnum(void **state)
{
    (void)state;
    char a[17], b[17];
    ax_random_alnum(a, 16);
    ax_random_alnum(b, 16);
    assert_int_equal(strlen(a), 16);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 16; ++i)
        assert_true((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= 'A' && a[i] <= 'Z') || (a[i] >= '0' && a[i] <= '9'));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    vectors = test_load_vectors();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_padded_and_bad),
        cmocka_unit_test(test_canonical_json_vectors),
        cmocka_unit_test(test_canonical_json_escapes_and_numbers),
        cmocka_unit_test(test_compact_json_matches_jansson),
        cmocka_unit_test(test_random_alnum),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(vectors);
    return rc;
}
