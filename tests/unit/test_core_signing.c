/*
 * test_core_signing.c -- JSON signing, event hashing and signing, event IDs
 * and redaction, reproducing the spec's vectors byte for byte, plus the
 * server key file.
 */
#include "testutil.h"

#include "core/core.h"

#include <sys/stat.h>

static json_t *vectors;
static ax_signing_key_t key;

static void load_key(void)
{
    json_t *sk = json_object_get(vectors, "signing_key");
    const char *seed_b64 = json_string_value(json_object_get(sk, "seed_base64"));
    uint8_t seed[32];
    size_t n;
    assert_int_equal(ax_b64_decode(seed, sizeof(seed), &n, seed_b64, strlen(seed_b64), false), 0);
    assert_int_equal(n, 32);
    ax_signing_key_from_seed(&key, json_string_value(json_object_get(sk, "key_id")), seed);
    char pk[64];
    ax_b64_encode(pk, key.public_key, sizeof(key.public_key), false);
    assert_string_equal(pk, json_string_value(json_object_get(sk, "public_key_base64")));
}

/* Compares 'got' (borrowed) with 'want' (stolen) by their canonical bytes. */
static void expect_json(json_t *got, json_t *want)
{
    ax_buf_t x = AX_BUF_INIT, y = AX_BUF_INIT;
    assert_int_equal(ax_cjson_encode(got, &x), 0);
    assert_int_equal(ax_cjson_encode(want, &y), 0);
    assert_string_equal(x.base, y.base);
    ax_buf_dispose(&x);
    ax_buf_dispose(&y);
    json_decref(want);
}

static void test_json_signing_vectors(void **state)
{
    (void)state;
    json_t *cases = json_object_get(vectors, "json_signing");
    assert_true(json_array_size(cases) >= 2);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        json_t *obj = json_deep_copy(json_object_get(c, "input"));
        assert_int_equal(ax_sign_json(obj, "domain", &key), 0);
        expect_json(obj, json_incref(json_object_get(c, "output")));
        assert_int_equal(ax_verify_json(obj, "domain", "ed25519:1", key.public_key), 0);
        json_decref(obj);
    }
}

static void test_verify_rejects_tampering(void **state)
{
    (void)state;
    json_t *obj = json_pack("{s:i, s:s}", "one", 1, "two", "Two");
    assert_int_equal(ax_sign_json(obj, "domain", &key), 0);
    /* unsigned is outside the signature */
    json_object_set_new(obj, "unsigned", json_pack("{s:i}", "age", 5));
    assert_int_equal(ax_verify_json(obj, "domain", "ed25519:1", key.public_key), 0);
    /* any signed field is inside */
    json_object_set_new(obj, "two", json_string("Three"));
    assert_int_equal(ax_verify_json(obj, "domain", "ed25519:1", key.public_key), AX_EBADSIG);
    /* wrong key id / server: no such signature */
    assert_int_equal(ax_verify_json(obj, "domain", "ed25519:2", key.public_key), AX_ENOTFOUND);
    assert_int_equal(ax_verify_json(obj, "other", "ed25519:1", key.public_key), AX_ENOTFOUND);
    /* garbage signature */
    json_object_set_new(json_object_get(json_object_get(obj, "signatures"), "domain"), "ed25519:1",
                        json_string("not base64!"));
    assert_int_equal(ax_verify_json(obj, "domain", "ed25519:1", key.public_key), AX_EBADSIG);
    json_decref(obj);
}

static void test_event_signing_vectors(void **state)
{
    (void)state;
    const ax_room_version_t *v1 = ax_room_version_get("1");
    const ax_room_version_t *v10 = ax_room_version_get("10");
    json_t *cases = json_object_get(vectors, "event_signing_pre_v11_redaction");
    assert_true(json_array_size(cases) >= 2);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        json_t *ev = json_deep_copy(json_object_get(c, "input"));
        /* the inputs carry empty signatures/hashes; signing replaces them */
        json_object_del(ev, "hashes");
        assert_int_equal(ax_event_sign(ev, v1, "domain", &key), 0);
        expect_json(ev, json_incref(json_object_get(c, "output")));
        /* the same bytes under every pre-v11 redaction */
        json_t *ev10 = json_deep_copy(json_object_get(c, "input"));
        json_object_del(ev10, "hashes");
        assert_int_equal(ax_event_sign(ev10, v10, "domain", &key), 0);
        expect_json(ev10, json_incref(json_object_get(c, "output")));
        json_decref(ev10);

        json_t *want_id = json_object_get(c, "reference_hash_event_id_v4_plus");
        if (want_id != NULL) {
            char id[64];
            assert_int_equal(ax_event_compute_id(ev, v10, id, sizeof(id)), 0);
            assert_string_equal(id, json_string_value(want_id));
            /* v3 uses the standard alphabet: same hash */
            char id3[64];
            assert_int_equal(ax_event_compute_id(ev, ax_room_version_get("3"), id3, sizeof(id3)), 0);
            assert_int_equal(strlen(id3), strlen(id));
        }
        /* content hash verifies; tampering with content changes it */
        uint8_t h1[32], h2[32];
        assert_int_equal(ax_event_content_hash(ev, h1), 0);
        json_object_set_new(ev, "content", json_pack("{s:s}", "body", "changed"));
        assert_int_equal(ax_event_content_hash(ev, h2), 0);
        assert_memory_not_equal(h1, h2, 32);
        json_decref(ev);
    }
    /* v1/v2 event IDs are not derived */
    char id[64];
    json_t *ev = json_pack("{s:s}", "type", "X");
    assert_int_equal(ax_event_compute_id(ev, v1, id, sizeof(id)), AX_EINVAL);
    json_decref(ev);
}

static void test_redaction_by_version(void **state)
{
    (void)state;
    json_t *member =
        json_loads("{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"sender\":\"@a:x\",\"room_id\":\"!r:x\","
                   "\"origin\":\"x\",\"membership\":\"join\",\"prev_state\":[],\"unsigned\":{\"age\":1},"
                   "\"content\":{\"membership\":\"join\",\"displayname\":\"A\","
                   "\"join_authorised_via_users_server\":\"@b:x\","
                   "\"third_party_invite\":{\"signed\":{\"token\":\"t\"},\"display_name\":\"d\"}}}",
                   0, NULL);
    json_t *r8 = ax_event_redact(member, ax_room_version_get("8"));
    expect_json(json_object_get(r8, "content"), json_pack("{s:s}", "membership", "join"));
    assert_non_null(json_object_get(r8, "origin"));
    assert_null(json_object_get(r8, "unsigned"));
    json_t *r9 = ax_event_redact(member, ax_room_version_get("9"));
    expect_json(json_object_get(r9, "content"),
                json_pack("{s:s, s:s}", "membership", "join", "join_authorised_via_users_server", "@b:x"));
    json_t *r11 = ax_event_redact(member, ax_room_version_get("11"));
    expect_json(json_object_get(r11, "content"),
                json_pack("{s:s, s:s, s:{s:{s:s}}}", "membership", "join", "join_authorised_via_users_server", "@b:x",
                          "third_party_invite", "signed", "token", "t"));
    assert_null(json_object_get(r11, "origin"));
    assert_null(json_object_get(r11, "membership"));
    assert_null(json_object_get(r11, "prev_state"));
    json_decref(r8);
    json_decref(r9);
    json_decref(r11);
    json_decref(member);

    json_t *create = json_pack("{s:s, s:{s:s, s:s, s:b}}", "type", "m.room.create", "content", "creator", "@a:x",
                               "room_version", "10", "m.federate", 1);
    json_t *c10 = ax_event_redact(create, ax_room_version_get("10"));
    expect_json(json_object_get(c10, "content"), json_pack("{s:s}", "creator", "@a:x"));
    json_t *c11 = ax_event_redact(create, ax_room_version_get("11"));
    expect_json(json_object_get(c11, "content"), json_incref(json_object_get(create, "content")));
    json_decref(c10);
    json_decref(c11);
    json_decref(create);

    json_t *pl = json_pack("{s:s, s:{s:i, s:i, s:i}}", "type", "m.room.power_levels", "content", "ban", 50, "invite", 0,
                           "notifications", 3);
    json_t *p10 = ax_event_redact(pl, ax_room_version_get("10"));
    expect_json(json_object_get(p10, "content"), json_pack("{s:i}", "ban", 50));
    json_t *p11 = ax_event_redact(pl, ax_room_version_get("11"));
    expect_json(json_object_get(p11, "content"), json_pack("{s:i, s:i}", "ban", 50, "invite", 0));
    json_decref(p10);
    json_decref(p11);
    json_decref(pl);

    json_t *jr =
        json_pack("{s:s, s:{s:s, s:[]}}", "type", "m.room.join_rules", "content", "join_rule", "restricted", "allow");
    json_t *j7 = ax_event_redact(jr, ax_room_version_get("7"));
    expect_json(json_object_get(j7, "content"), json_pack("{s:s}", "join_rule", "restricted"));
    json_t *j8 = ax_event_redact(jr, ax_room_version_get("8"));
    expect_json(json_object_get(j8, "content"), json_incref(json_object_get(jr, "content")));
    json_decref(j7);
    json_decref(j8);
    json_decref(jr);

    json_t *al = json_pack("{s:s, s:{s:[s]}}", "type", "m.room.aliases", "content", "aliases", "#a:x");
    json_t *a5 = ax_event_redact(al, ax_room_version_get("5"));
    json_t *a6 = ax_event_redact(al, ax_room_version_get("6"));
    assert_int_equal(json_object_size(json_object_get(a5, "content")), 1);
    assert_int_equal(json_object_size(json_object_get(a6, "content")), 0);
    json_decref(a5);
    json_decref(a6);
    json_decref(al);

    json_t *red = json_pack("{s:s, s:s, s:{s:s, s:s}}", "type", "m.room.redaction", "redacts", "$e", "content",
                            "redacts", "$e", "reason", "spam");
    json_t *x10 = ax_event_redact(red, ax_room_version_get("10"));
    json_t *x11 = ax_event_redact(red, ax_room_version_get("11"));
    assert_int_equal(json_object_size(json_object_get(x10, "content")), 0);
    expect_json(json_object_get(x11, "content"), json_pack("{s:s}", "redacts", "$e"));
    json_decref(x10);
    json_decref(x11);
    json_decref(red);
}

static void test_room_versions(void **state)
{
    (void)state;
    for (int i = 1; i <= 12; ++i) {
        char id[4];
        snprintf(id, sizeof(id), "%d", i);
        const ax_room_version_t *rv = ax_room_version_get(id);
        assert_non_null(rv);
        assert_string_equal(rv->id, id);
    }
    assert_null(ax_room_version_get("13"));
    assert_null(ax_room_version_get("1.0"));
    assert_null(ax_room_version_get(NULL));
    assert_true(ax_room_version_get("12")->room_id_from_create);
    assert_false(ax_room_version_get("11")->room_id_from_create);
    assert_int_equal(ax_room_version_get("1")->state_res, 1);
}

static void test_key_file(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *path = NULL;
    assert_true(asprintf(&path, "%s/signing.key", dir) > 0);
    char err[256];
    ax_signing_key_t a, b;
    assert_int_equal(ax_signing_key_load_or_create(path, &a, err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(strncmp(a.key_id, "ed25519:", 8), 0);
    /* reloading gives the same key */
    assert_int_equal(ax_signing_key_load_or_create(path, &b, err, sizeof(err)), 0);
    assert_string_equal(a.key_id, b.key_id);
    assert_memory_equal(a.public_key, b.public_key, sizeof(a.public_key));
    /* a corrupt file is an error, not a new key */
    FILE *fp = fopen(path, "w");
    fputs("ed25519 a_x not-base64!!\n", fp);
    fclose(fp);
    assert_int_equal(ax_signing_key_load_or_create(path, &b, err, sizeof(err)), AX_EINVAL);
    assert_non_null(strstr(err, "signing key"));
    ax_signing_key_dispose(&a);
    ax_signing_key_dispose(&b);
    free(path);
    test_rm_rf(dir);
    free(dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    vectors = test_load_vectors();
    load_key();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_signing_vectors),  cmocka_unit_test(test_verify_rejects_tampering),
        cmocka_unit_test(test_event_signing_vectors), cmocka_unit_test(test_redaction_by_version),
        cmocka_unit_test(test_room_versions),         cmocka_unit_test(test_key_file),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(vectors);
    return rc;
}
