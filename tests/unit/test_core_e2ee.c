/*
 * test_core_e2ee.c -- the server's checks on end-to-end encryption
 * material: "<algorithm>:<id>" splitting, device and cross-signing key
 * signatures (made here with libsodium, as a client would), the shape of
 * cross-signing keys, and the spec's order of backed-up room keys.
 */
#include "testutil.h"

#include "core/core.h"

/* A client-side key pair with its unpadded base64 public key. */
typedef struct st_test_key_t {
    ax_signing_key_t sk;
    char pub[AX_B64_LEN(crypto_sign_PUBLICKEYBYTES) + 1];
} test_key_t;

/* A fresh key pair whose key ID is "ed25519:<device_id>", or "ed25519:<public key>" when 'device_id' is NULL. */
static void make_key(test_key_t *k, const char *device_id)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    randombytes_buf(seed, sizeof(seed));
    ax_signing_key_from_seed(&k->sk, "ed25519:tmp", seed);
    ax_b64_encode(k->pub, k->sk.public_key, sizeof(k->sk.public_key), false);
    snprintf(k->sk.key_id, sizeof(k->sk.key_id), "ed25519:%s", device_id != NULL ? device_id : k->pub);
}

static void test_split_key_id(void **state)
{
    (void)state;
    char alg[32], id[32];
    assert_int_equal(ax_e2ee_split_key_id("signed_curve25519:AAAAHg", alg, sizeof(alg), id, sizeof(id)), 0);
    assert_string_equal(alg, "signed_curve25519");
    assert_string_equal(id, "AAAAHg");
    static const char *const bad[] = {"nocolon", ":id", "alg:", "a:b:c", ""};
    for (size_t i = 0; i < AX_ARRAY_SIZE(bad); ++i)
        assert_int_equal(ax_e2ee_split_key_id(bad[i], alg, sizeof(alg), id, sizeof(id)), AX_EINVAL);
    /* a part that does not fit is refused, not truncated */
    assert_int_equal(ax_e2ee_split_key_id("abcdefgh:x", alg, 8, id, sizeof(id)), AX_EINVAL);
}

static void test_device_key_signature(void **state)
{
    (void)state;
    test_key_t dev;
    make_key(&dev, "DEVICE");
    json_t *keys =
        json_pack("{s:s, s:s, s:[s, s], s:{s:s, s:s}}", "user_id", "@alice:example.org", "device_id", "DEVICE",
                  "algorithms", "m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2", "keys", "curve25519:DEVICE",
                  "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI", "ed25519:DEVICE", dev.pub);
    assert_int_equal(ax_e2ee_verify(keys, "@alice:example.org", "ed25519:DEVICE", dev.pub), AX_ENOTFOUND);
    assert_int_equal(ax_sign_json(keys, "@alice:example.org", &dev.sk), 0);
    assert_int_equal(ax_e2ee_verify(keys, "@alice:example.org", "ed25519:DEVICE", dev.pub), 0);
    /* unsigned data is not covered by the signature */
    json_object_set_new(keys, "unsigned", json_pack("{s:s}", "device_display_name", "phone"));
    assert_int_equal(ax_e2ee_verify(keys, "@alice:example.org", "ed25519:DEVICE", dev.pub), 0);
    /* everything else is */
    json_object_set_new(keys, "device_id", json_string("OTHER"));
    assert_int_equal(ax_e2ee_verify(keys, "@alice:example.org", "ed25519:DEVICE", dev.pub), AX_EBADSIG);
    json_object_set_new(keys, "device_id", json_string("DEVICE"));
    /* someone else's key, or no key at all */
    test_key_t other;
    make_key(&other, "DEVICE");
    assert_int_equal(ax_e2ee_verify(keys, "@alice:example.org", "ed25519:DEVICE", other.pub), AX_EBADSIG);
    assert_int_equal(ax_e2ee_verify(keys, "@alice:example.org", "ed25519:DEVICE", "not base64!"), AX_EINVAL);
    assert_int_equal(ax_e2ee_verify(keys, "@alice:example.org", "ed25519:DEVICE", "AAAA"), AX_EINVAL);
    assert_int_equal(ax_e2ee_verify(keys, "@bob:example.org", "ed25519:DEVICE", dev.pub), AX_ENOTFOUND);
    json_decref(keys);
    ax_signing_key_dispose(&dev.sk);
    ax_signing_key_dispose(&other.sk);
}

static json_t *xsign_key(const char *user_id, const char *usage, const char *pub)
{
    char id[128];
    snprintf(id, sizeof(id), "ed25519:%s", pub);
    return json_pack("{s:s, s:[s], s:{s:s}}", "user_id", user_id, "usage", usage, "keys", id, pub);
}

static void test_cross_signing_key_shape(void **state)
{
    (void)state;
    test_key_t master, ssk;
    make_key(&master, NULL);
    make_key(&ssk, NULL);
    json_t *mk = xsign_key("@alice:example.org", "master", master.pub);
    const char *pub = NULL;
    assert_int_equal(ax_e2ee_xsign_check(mk, "@alice:example.org", "master", &pub), 0);
    assert_string_equal(pub, master.pub);
    assert_int_equal(ax_e2ee_xsign_check(mk, "@bob:example.org", "master", NULL), AX_EINVAL);
    assert_int_equal(ax_e2ee_xsign_check(mk, "@alice:example.org", "self_signing", NULL), AX_EINVAL);

    /* the self-signing key is signed by the master key, under the master key's ID */
    json_t *sk = xsign_key("@alice:example.org", "self_signing", ssk.pub);
    assert_int_equal(ax_e2ee_xsign_check(sk, "@alice:example.org", "self_signing", NULL), 0);
    assert_int_equal(ax_sign_json(sk, "@alice:example.org", &master.sk), 0);
    assert_int_equal(ax_e2ee_verify(sk, "@alice:example.org", master.sk.key_id, master.pub), 0);
    assert_int_equal(ax_e2ee_verify(sk, "@alice:example.org", master.sk.key_id, ssk.pub), AX_EBADSIG);

    /* malformed: two keys, an ID that is not the key, a key that is not 32 bytes, bad usage */
    json_t *two = xsign_key("@alice:example.org", "master", master.pub);
    json_object_set_new(json_object_get(two, "keys"), "ed25519:other", json_string("other"));
    assert_int_equal(ax_e2ee_xsign_check(two, "@alice:example.org", "master", NULL), AX_EINVAL);
    json_t *mismatch = json_pack("{s:s, s:[s], s:{s:s}}", "user_id", "@alice:example.org", "usage", "master", "keys",
                                 "ed25519:abc", master.pub);
    assert_int_equal(ax_e2ee_xsign_check(mismatch, "@alice:example.org", "master", NULL), AX_EINVAL);
    json_t *shortk = xsign_key("@alice:example.org", "master", "AAAA");
    assert_int_equal(ax_e2ee_xsign_check(shortk, "@alice:example.org", "master", NULL), AX_EINVAL);
    json_t *usage =
        json_pack("{s:s, s:s, s:{s:s}}", "user_id", "@alice:example.org", "usage", "master", "keys", "ed25519:x", "x");
    assert_int_equal(ax_e2ee_xsign_check(usage, "@alice:example.org", "master", NULL), AX_EINVAL);
    json_decref(mk);
    json_decref(sk);
    json_decref(two);
    json_decref(mismatch);
    json_decref(shortk);
    json_decref(usage);
    ax_signing_key_dispose(&master.sk);
    ax_signing_key_dispose(&ssk.sk);
}

static void test_same_signed_content(void **state)
{
    (void)state;
    json_t *a = json_pack("{s:s, s:{s:{s:s}}}", "key", "abc", "signatures", "@a:x", "ed25519:D", "sig1");
    json_t *b =
        json_pack("{s:s, s:{s:{s:s}}, s:{}}", "key", "abc", "signatures", "@a:x", "ed25519:D", "sig2", "unsigned");
    json_t *c = json_pack("{s:s}", "key", "abd");
    json_t *s1 = json_string("abc"), *s2 = json_string("abc");
    assert_true(ax_e2ee_same_signed_content(a, b));
    assert_false(ax_e2ee_same_signed_content(a, c));
    assert_true(ax_e2ee_same_signed_content(s1, s2));
    assert_false(ax_e2ee_same_signed_content(s1, a));
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(s1);
    json_decref(s2);
}

static json_t *backup(bool verified, int first, int forwarded)
{
    return json_pack("{s:b, s:i, s:i, s:{}}", "is_verified", verified, "first_message_index", first, "forwarded_count",
                     forwarded, "session_data");
}

static void test_backup_order(void **state)
{
    (void)state;
    struct {
        json_t *a, *b;
        int want;
    } cases[] = {
        {backup(true, 5, 5), backup(false, 0, 0), 1},  /* verified wins over everything */
        {backup(false, 0, 0), backup(true, 5, 5), -1}, /* ... in both directions */
        {backup(false, 1, 9), backup(false, 2, 0), 1}, /* then the lower first message index */
        {backup(true, 3, 1), backup(true, 3, 2), 1},   /* then the lower forwarded count */
        {backup(true, 3, 2), backup(true, 3, 1), -1},
        {backup(false, 3, 2), backup(false, 3, 2), 0}, /* equal: keep what is stored */
    };
    for (size_t i = 0; i < AX_ARRAY_SIZE(cases); ++i) {
        int got = ax_e2ee_backup_compare(cases[i].a, cases[i].b);
        assert_int_equal(got > 0 ? 1 : got < 0 ? -1 : 0, cases[i].want);
        json_decref(cases[i].a);
        json_decref(cases[i].b);
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_key_id),
        cmocka_unit_test(test_device_key_signature),
        cmocka_unit_test(test_cross_signing_key_shape),
        cmocka_unit_test(test_same_signed_content),
        cmocka_unit_test(test_backup_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
