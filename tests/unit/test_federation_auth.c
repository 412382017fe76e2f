/*
 * test_federation_auth.c -- X-Matrix (federation/auth.c): parsing the
 * Authorization header as RFC 9110 credentials (the forms the spec allows,
 * and everything it does not), fuzzed inputs that must neither crash nor
 * read past their length, and signing checked byte for byte against
 * signatures made by an independent implementation (python3-signedjson)
 * with the spec's test key.
 */
#include "testutil.h"

#include "federation/federation.h"

static ax_signing_key_t spec_key(void)
{
    json_t *v = test_load_vectors();
    json_t *sk = json_object_get(v, "signing_key");
    const char *seed_b64 = json_string_value(json_object_get(sk, "seed_base64"));
    uint8_t seed[32];
    size_t n = 0;
    assert_int_equal(ax_b64_decode(seed, sizeof(seed), &n, seed_b64, strlen(seed_b64), false), 0);
    ax_signing_key_t key;
    ax_signing_key_from_seed(&key, json_string_value(json_object_get(sk, "key_id")), seed);
    json_decref(v);
    return key;
}

static int parse(const char *s, ax_xmatrix_t *x)
{
    return ax_xmatrix_parse(s, strlen(s), x);
}

static void test_parse_valid(void **state)
{
    (void)state;
    ax_xmatrix_t x;
    /* the spec's example */
    assert_int_equal(parse("X-Matrix origin=\"origin.hs.example.com\",destination=\"destination.hs.example.com\","
                           "key=\"ed25519:key1\",sig=\"ABCDEF...\"",
                           &x),
                     0);
    assert_string_equal(x.origin, "origin.hs.example.com");
    assert_string_equal(x.destination, "destination.hs.example.com");
    assert_string_equal(x.key, "ed25519:key1");
    assert_string_equal(x.sig, "ABCDEF...");

    /* case-insensitive scheme and names, whitespace around commas, tokens (colons allowed), unknown params */
    assert_int_equal(parse("x-matrix   ORIGIN=example.org:8448 ,\tKey = \"ed25519:a_b\" ,  Sig=\"c2ln+/\","
                           "future=\"x\", other=tok",
                           &x),
                     0);
    assert_string_equal(x.origin, "example.org:8448");
    assert_string_equal(x.destination, ""); /* older senders omit it */
    assert_string_equal(x.key, "ed25519:a_b");
    assert_string_equal(x.sig, "c2ln+/");

    /* quoted-pairs are unescaped; empty list elements are allowed */
    assert_int_equal(parse("X-Matrix origin=\"a\\\"b\\\\c\",,key=\"k\\:1\",sig=s,", &x), 0);
    assert_string_equal(x.origin, "a\"b\\c");
    assert_string_equal(x.key, "k:1");
    assert_string_equal(x.sig, "s");
}

static void test_parse_invalid(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "X-Matrix",
        "X-Matrix ",
        "Bearer abc",
        "X-Matrixorigin=a,key=b,sig=c",
        "X-Matrix-Other origin=a,key=b,sig=c",
        "X-Matrix origin=a,key=b",                /* no sig */
        "X-Matrix key=b,sig=c",                   /* no origin */
        "X-Matrix origin=a,sig=c",                /* no key */
        "X-Matrix origin=a,origin=b,key=k,sig=c", /* a repeated parameter */
        "X-Matrix origin=\"a,key=k,sig=c",        /* unterminated quote */
        "X-Matrix origin=\"a\\",                  /* trailing backslash */
        "X-Matrix origin=,key=k,sig=c",           /* empty token */
        "X-Matrix origin=a b,key=k,sig=c",        /* garbage after a value */
        "X-Matrix =a,key=k,sig=c",                /* no name */
        "X-Matrix origin,key=k,sig=c",            /* no '=' */
        "X-Matrix origin=\"a\x01\",key=k,sig=c",  /* control character */
        "X-Matrix origin=\"a\x7f\",key=k,sig=c",
        "X-Matrix origin=a/b,key=k,sig=c",        /* '/' is not a token character */
        "X-Matrix origin=\"\",key=\"\",sig=\"\"", /* present but empty */
    };
    for (size_t i = 0; i < AX_ARRAY_SIZE(bad); ++i) {
        ax_xmatrix_t x;
        if (parse(bad[i], &x) != AX_EINVAL)
            fail_msg("accepted: %s", bad[i]);
    }
    /* a NUL inside the value (the length says more bytes follow) */
    ax_xmatrix_t x;
    static const char nul[] = "X-Matrix origin=\"a\0b\",key=k,sig=c";
    assert_int_equal(ax_xmatrix_parse(nul, sizeof(nul) - 1, &x), AX_EINVAL);
    /* too long for its field */
    char longv[1024] = "X-Matrix key=k,sig=c,origin=";
    memset(longv + strlen(longv), 'a', 300);
    assert_int_equal(parse(longv, &x), AX_EINVAL);
}

/* Random bytes and every truncation of a valid header: no crash, no read past the length (ASan). */
static void test_parse_fuzz(void **state)
{
    (void)state;
    const char *good = "X-Matrix origin=\"example.org\",destination=\"other.org\",key=\"ed25519:1\",sig=\"abc\"";
    size_t n = strlen(good);
    ax_xmatrix_t x;
    for (size_t len = 0; len <= n; ++len) {
        char *copy = malloc(len ? len : 1); /* exactly 'len' bytes: ASan catches any overread */
        memcpy(copy, good, len);
        int rc = ax_xmatrix_parse(copy, len, &x);
        /* a prefix parses only once sig's closing quote is in */
        assert_int_equal(rc, len == n ? 0 : AX_EINVAL);
        free(copy);
    }
    static const char alphabet[] = "X-Matrixorigndstkyg=,\" \t\\:ed25519abc\x01\x80";
    uint32_t seed = 12345;
    for (int round = 0; round < 20000; ++round) {
        char buf[64];
        size_t len = (size_t)(round % 64);
        for (size_t i = 0; i < len; ++i) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        if (round % 3 == 0 && len >= 9)
            memcpy(buf, "X-Matrix ", 9);
        char *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        int rc = ax_xmatrix_parse(copy, len, &x);
        if (rc == 0) {
            assert_true(x.origin[0] != '\0' && x.key[0] != '\0' && x.sig[0] != '\0');
            assert_true(strlen(x.origin) < sizeof(x.origin));
        }
        free(copy);
    }
}

/* Signatures from python3-signedjson (tests/api/fedutil.py xmatrix()) with the spec's key. */
static void test_sign_matches_independent_implementation(void **state)
{
    (void)state;
    ax_signing_key_t key = spec_key();
    ax_buf_t b = AX_BUF_INIT;
    assert_int_equal(ax_xmatrix_sign(&b, "GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Adomain", "domain",
                                     "other.example:8448", NULL, &key),
                     0);
    assert_string_equal(b.base, "X-Matrix origin=\"domain\",destination=\"other.example:8448\",key=\"ed25519:1\","
                                "sig=\"6xBsukTb/P1yJxjwzIpwmA/BiEtZRjNiFn1LMKUJaoJXgl7WDUY9C50dY/Qq5Hf1t6fubD0ZUtfyAZ4"
                                "KgxUNCg\"");
    json_t *content = json_loads("{\"pdus\":[],\"edus\":[{\"edu_type\":\"m.typing\",\"content\":{\"x\":\"\xc3\xa9\"}}],"
                                 "\"origin\":\"domain\"}",
                                 0, NULL);
    ax_buf_reset(&b);
    assert_int_equal(
        ax_xmatrix_sign(&b, "PUT", "/_matrix/federation/v1/send/txn1", "domain", "other.example:8448", content, &key),
        0);
    assert_string_equal(b.base,
                        "X-Matrix origin=\"domain\",destination=\"other.example:8448\",key=\"ed25519:1\","
                        "sig=\"HTgBI3bTsYckJdoS1/XayZ5x+qiBTJ5FeJ+I4F62b1s9SfkoSVpYbJP6sBMeicj1hJgAwjc20DmygxHipol"
                        "8DQ\"");
    json_decref(content);
    ax_buf_dispose(&b);
    ax_signing_key_dispose(&key);
}

static void test_verify(void **state)
{
    (void)state;
    ax_signing_key_t key = spec_key();
    json_t *content = json_pack("{s:i}", "a", 1);
    ax_buf_t b = AX_BUF_INIT;
    assert_int_equal(ax_xmatrix_sign(&b, "POST", "/p?q=1", "origin.test", "dest.test", content, &key), 0);
    ax_xmatrix_t x;
    assert_int_equal(ax_xmatrix_parse(b.base, b.len, &x), 0);
    assert_int_equal(ax_xmatrix_verify(&x, "POST", "/p?q=1", "dest.test", content, key.public_key), 0);
    /* anything else the signature covers makes it fail */
    json_t *other = json_pack("{s:i}", "a", 2);
    assert_int_equal(ax_xmatrix_verify(&x, "PUT", "/p?q=1", "dest.test", content, key.public_key), AX_EBADSIG);
    assert_int_equal(ax_xmatrix_verify(&x, "POST", "/p?q=2", "dest.test", content, key.public_key), AX_EBADSIG);
    assert_int_equal(ax_xmatrix_verify(&x, "POST", "/p?q=1", "dest.test", other, key.public_key), AX_EBADSIG);
    assert_int_equal(ax_xmatrix_verify(&x, "POST", "/p?q=1", "dest.test", NULL, key.public_key), AX_EBADSIG);
    /* a header without destination is checked as if it named us */
    x.destination[0] = '\0';
    assert_int_equal(ax_xmatrix_verify(&x, "POST", "/p?q=1", "dest.test", content, key.public_key), 0);
    assert_int_equal(ax_xmatrix_verify(&x, "POST", "/p?q=1", "elsewhere.test", content, key.public_key), AX_EBADSIG);
    /* another key */
    ax_signing_key_t k2;
    uint8_t seed[32] = {7};
    ax_signing_key_from_seed(&k2, "ed25519:1", seed);
    assert_int_equal(ax_xmatrix_verify(&x, "POST", "/p?q=1", "dest.test", content, k2.public_key), AX_EBADSIG);
    /* a signature that is not base64 */
    snprintf(x.sig, sizeof(x.sig), "!!!");
    assert_int_equal(ax_xmatrix_verify(&x, "POST", "/p?q=1", "dest.test", content, key.public_key), AX_EBADSIG);
    json_decref(content);
    json_decref(other);
    ax_buf_dispose(&b);
    ax_signing_key_dispose(&key);
    ax_signing_key_dispose(&k2);
}

static void test_key_document_check(void **state)
{
    (void)state;
    ax_signing_key_t key = spec_key();
    char pk[AX_B64_LEN(32) + 1];
    ax_b64_encode(pk, key.public_key, 32, false);
    json_t *doc = json_pack("{s:s, s:I, s:{s:{s:s}}, s:{}}", "server_name", "domain", "valid_until_ts",
                            (json_int_t)1700000000000LL, "verify_keys", "ed25519:1", "key", pk, "old_verify_keys");
    assert_int_equal(ax_sign_json(doc, "domain", &key), 0);
    assert_int_equal(ax_keyring_check_doc(doc, "domain"), 0);
    assert_int_equal(ax_keyring_check_doc(doc, "other"), AX_EINVAL);
    json_t *bad = json_deep_copy(doc);
    json_object_set_new(bad, "valid_until_ts", json_integer(1800000000000LL));
    assert_int_equal(ax_keyring_check_doc(bad, "domain"), AX_EBADSIG);
    json_decref(bad);
    /* a second current key that did not sign */
    bad = json_deep_copy(doc);
    json_object_set_new(json_object_get(bad, "verify_keys"), "ed25519:2",
                        json_pack("{s:s}", "key", "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNA"));
    assert_int_equal(ax_keyring_check_doc(bad, "domain"), AX_EBADSIG);
    json_decref(bad);
    bad = json_deep_copy(doc);
    json_object_del(bad, "signatures");
    assert_int_equal(ax_keyring_check_doc(bad, "domain"), AX_EBADSIG);
    json_decref(bad);
    json_decref(doc);
    ax_signing_key_dispose(&key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid), cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_fuzz),  cmocka_unit_test(test_sign_matches_independent_implementation),
        cmocka_unit_test(test_verify),      cmocka_unit_test(test_key_document_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
