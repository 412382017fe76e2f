/*
 * test_core_event.c -- identifier grammar, the PDU format checks (table-driven
 * from tests/vectors/events/format.json), v12 room IDs derived from the create
 * event, event IDs, references and the servers whose signatures an event
 * needs.
 */
#include "testutil.h"

#include "core/events.h"

static const ax_room_version_t *version(int v)
{
    char id[4];
    snprintf(id, sizeof(id), "%d", v);
    return ax_room_version_get(id);
}

/* ---- identifiers -------------------------------------------------------------------- */

typedef struct st_id_case_t {
    const char *s;
    bool valid;
} id_case_t;

static void test_server_names(void **state)
{
    (void)state;
    static const id_case_t cases[] = {
        {"matrix.org", true},
        {"matrix.org:8888", true},
        {"1.2.3.4", true},
        {"1.2.3.4:1234", true},
        {"[1234:5678::abcd]", true},
        {"[1234:5678::abcd]:5678", true},
        {"localhost", true},
        {"a-b.example", true},
        {"", false},
        {":8448", false},
        {"matrix.org:", false},
        {"matrix.org:123456", false},
        {"matrix.org:80a", false},
        {"exa mple.org", false},
        {"example.org/", false},
        {"[1234:5678::abcd", false},
        {"[g::1]", false},
        {"[::]", true},
        {"[1]", false},
        {"example_org", false},
        {"example.org:8448:1", false},
    };
    for (size_t i = 0; i < AX_ARRAY_SIZE(cases); ++i)
        if (ax_id_is_valid_server_name(cases[i].s) != cases[i].valid)
            fail_msg("server name '%s' should be %s", cases[i].s, cases[i].valid ? "valid" : "invalid");
    char long_name[300];
    memset(long_name, 'a', 255);
    long_name[255] = '\0';
    assert_true(ax_id_is_valid_server_name(long_name));
    long_name[255] = 'a';
    long_name[256] = '\0';
    assert_false(ax_id_is_valid_server_name(long_name));
    assert_false(ax_id_is_valid_server_name(NULL));
}

static void test_user_ids(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool valid, compliant;
    } cases[] = {
        {"@alice:example.org", true, true},
        {"@a.b_c=d-e/f+g:example.org:8448", true, true},
        {"@Alice:example.org", true, false},
        {"@alice smith:example.org", true, false},
        {"@:example.org", true, false},
        {"@\xc3\xa9:example.org", true, false},
        {"alice:example.org", false, false},
        {"@alice", false, false},
        {"@alice:", false, false},
        {"@alice:exa mple.org", false, false},
        {"#alice:example.org", false, false},
        {"", false, false},
    };
    for (size_t i = 0; i < AX_ARRAY_SIZE(cases); ++i) {
        if (ax_id_is_valid_user_id(cases[i].s) != cases[i].valid)
            fail_msg("user ID '%s' validity", cases[i].s);
        if (ax_id_is_compliant_user_id(cases[i].s) != cases[i].compliant)
            fail_msg("user ID '%s' compliance", cases[i].s);
    }
    /* 255 bytes in all, sigil and server included */
    char id[300];
    memset(id, 'a', sizeof(id));
    id[0] = '@';
    memcpy(id + 255 - 12, ":example.org", 13);
    assert_int_equal(strlen(id), 255);
    assert_true(ax_id_is_valid_user_id(id));
    memset(id, 'a', sizeof(id));
    id[0] = '@';
    memcpy(id + 256 - 12, ":example.org", 13);
    assert_false(ax_id_is_valid_user_id(id));
    assert_false(ax_id_is_valid_user_id(NULL));
}

static void test_room_event_alias_ids(void **state)
{
    (void)state;
    const ax_room_version_t *v1 = version(1), *v3 = version(3), *v4 = version(4), *v11 = version(11),
                            *v12 = version(12);
    const char *hash_url = "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ";
    assert_true(ax_id_is_valid_room_id("!abc:example.org", v1));
    assert_true(ax_id_is_valid_room_id("!abc:example.org", v11));
    assert_false(ax_id_is_valid_room_id("!abc:example.org", v12));
    assert_true(ax_id_is_valid_room_id(hash_url, v12));
    assert_false(ax_id_is_valid_room_id(hash_url, v11));
    assert_true(ax_id_is_valid_room_id(hash_url, NULL));
    assert_true(ax_id_is_valid_room_id("!abc:example.org", NULL));
    assert_false(ax_id_is_valid_room_id("!:example.org", v1));
    assert_false(ax_id_is_valid_room_id("!abc", v1));
    assert_false(ax_id_is_valid_room_id("!Nhcu5BS+UMnFX7hBVfVSoXiD7OgH6iRT/xyIuqDnpYQ", v12));
    assert_false(ax_id_is_valid_room_id("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpY", v12));

    assert_true(ax_id_is_valid_event_id("$abc:example.org", v1));
    assert_false(ax_id_is_valid_event_id("$abc", v1));
    assert_true(ax_id_is_valid_event_id("$CD66HAED5npg6074c6pDtLKalHjVfYb2q4Q3LZgrW6o", v3));
    assert_true(ax_id_is_valid_event_id("$Rqnc+F/dvnEYJTyHq/iKxU2bZ1CI92+kuZq3a5lr5Zg", v3));
    assert_false(ax_id_is_valid_event_id("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", v3));
    assert_true(ax_id_is_valid_event_id("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", v4));
    assert_false(ax_id_is_valid_event_id("$Rqnc+F/dvnEYJTyHq/iKxU2bZ1CI92+kuZq3a5lr5Zg", v4));
    assert_false(ax_id_is_valid_event_id("$abc:example.org", v4));
    assert_true(ax_id_is_valid_event_id("$abc:example.org", NULL));
    assert_true(ax_id_is_valid_event_id("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", NULL));

    assert_true(ax_id_is_valid_room_alias("#room:example.org"));
    assert_true(ax_id_is_valid_room_alias("#r\xc3\xa9sum\xc3\xa9:example.org:8448"));
    assert_false(ax_id_is_valid_room_alias("#room"));
    assert_false(ax_id_is_valid_room_alias("#:example.org"));
    assert_false(ax_id_is_valid_room_alias("@room:example.org"));

    assert_string_equal(ax_id_domain("@alice:example.org:8448"), "example.org:8448");
    assert_string_equal(ax_id_domain("$abc:[::1]"), "[::1]");
    assert_null(ax_id_domain("$abc"));
    assert_null(ax_id_domain(NULL));
}

/* ---- format, table-driven ------------------------------------------------------------- */

static const char *valid_event_id(const ax_room_version_t *rv)
{
    switch (rv->event_id_format) {
    case AX_EVENT_ID_V1:
        return "$prev:example.org";
    case AX_EVENT_ID_V3:
        return "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/";
    default:
        return "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_";
    }
}

static const char *valid_room_id(const ax_room_version_t *rv)
{
    return rv->room_id_from_create ? "!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" : "!room:example.org";
}

/* A string of exactly 'n' bytes of the shape 'kind' asks for. */
static json_t *sized(const char *kind, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, 'a', n);
    s[n] = '\0';
    if (strcmp(kind, "USER") == 0) {
        s[0] = '@';
        memcpy(s + n - 12, ":example.org", 12);
    } else if (strcmp(kind, "ROOMID") == 0) {
        s[0] = '!';
        memcpy(s + n - 12, ":example.org", 12);
    } else if (strcmp(kind, "EVID") == 0) {
        s[0] = '$';
        memcpy(s + n - 12, ":example.org", 12);
    }
    json_t *v = json_string(s);
    free(s);
    return v;
}

/* Returns a new reference: 'v' with placeholders replaced. */
static json_t *expand(json_t *v, const ax_room_version_t *rv)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "$EV") == 0)
            return json_string(valid_event_id(rv));
        if (strcmp(s, "$ROOM") == 0)
            return json_string(valid_room_id(rv));
        static const char *const kinds[] = {"STR", "USER", "ROOMID", "EVID", NULL};
        for (const char *const *k = kinds; *k != NULL; ++k) {
            size_t kl = strlen(*k);
            if (s[0] == '$' && strncmp(s + 1, *k, kl) == 0 && s[1 + kl] == ':')
                return sized(*k, (size_t)atoi(s + 2 + kl));
        }
        return json_incref(v);
    }
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            json_object_set_new(out, k, expand(x, rv));
        }
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            json_array_append_new(out, expand(x, rv));
        }
        return out;
    }
    return json_incref(v);
}

static void pair_refs(json_t *ev, const char *key)
{
    json_t *refs = json_object_get(ev, key);
    for (size_t i = 0; i < json_array_size(refs); ++i) {
        json_t *r = json_array_get(refs, i);
        if (json_is_string(r))
            json_array_set_new(refs, i, json_pack("[O,{s:s}]", r, "sha256", "aGFzaA"));
    }
}

/* Returns a new reference: a valid m.room.message PDU for 'rv'. */
static json_t *baseline(const ax_room_version_t *rv)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:{s:s}, s:i, s:i, s:{s:s}, s:{s:{s:s}}, s:[s], s:[s]}", "type",
                           "m.room.message", "sender", "@alice:example.org", "room_id", valid_room_id(rv), "content",
                           "body", "hi", "origin_server_ts", 1700000000000LL, "depth", 5, "hashes", "sha256", "aGFzaA",
                           "signatures", "example.org", "ed25519:a", "c2ln", "auth_events", valid_event_id(rv),
                           "prev_events", valid_event_id(rv));
    if (rv->event_id_format == AX_EVENT_ID_V1) {
        json_object_set_new(ev, "event_id", json_string("$base:example.org"));
        pair_refs(ev, "auth_events");
        pair_refs(ev, "prev_events");
    }
    return ev;
}

static bool in_ranges(const char *spec, int v)
{
    const char *p = spec;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (*end == '-')
            hi = strtol(end + 1, &end, 10);
        if (v >= lo && v <= hi)
            return true;
        if (*end != ',')
            break;
        p = end + 1;
    }
    return false;
}

static const char *expectation(json_t *expect, int v)
{
    if (json_is_string(expect))
        return json_string_value(expect);
    const char *range;
    json_t *val;
    json_object_foreach(expect, range, val)
    {
        if (in_ranges(range, v))
            return json_string_value(val);
    }
    return NULL;
}

static void test_format_vectors(void **state)
{
    (void)state;
    char path[1024];
    const char *dir = getenv("AX_VECTORS_DIR");
    snprintf(path, sizeof(path), "%s/events/format.json", dir ? dir : "tests/vectors");
    json_error_t err;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (doc == NULL)
        fail_msg("%s:%d: %s", path, err.line, err.text);
    int failures = 0, runs = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        for (int v = 1; v <= 12; ++v) {
            if (!in_ranges(json_string_value(json_object_get(c, "versions")), v))
                continue;
            const ax_room_version_t *rv = version(v);
            json_t *ev = json_object_get(c, "replace") ? json_incref(json_object_get(c, "replace")) : baseline(rv);
            size_t j;
            json_t *key;
            json_array_foreach(json_object_get(c, "delete"), j, key)
            {
                json_object_del(ev, json_string_value(key));
            }
            const char *k;
            json_t *val;
            json_object_foreach(json_object_get(c, "set"), k, val)
            {
                json_object_set_new(ev, k, expand(val, rv));
            }
            if (rv->event_id_format == AX_EVENT_ID_V1 && !json_is_true(json_object_get(c, "raw"))) {
                pair_refs(ev, "auth_events");
                pair_refs(ev, "prev_events");
            }
            char reason[256] = "";
            int rc = ax_event_check_format(rv, ev, reason, sizeof(reason));
            const char *want = expectation(json_object_get(c, "expect"), v);
            int want_rc = want == NULL                  ? 1
                          : strcmp(want, "ok") == 0     ? 0
                          : strcmp(want, "toobig") == 0 ? AX_ETOOBIG
                                                        : AX_EINVAL;
            ++runs;
            if (rc != want_rc) {
                print_error("  %s (v%d): expected %s, got %d (%s)\n", name, v, want ? want : "?", rc, reason);
                ++failures;
            } else if (rc != 0 && reason[0] == '\0') {
                print_error("  %s (v%d): no reason given\n", name, v);
                ++failures;
            }
            json_decref(ev);
        }
    }
    print_message("# %d format checks in %zu cases\n", runs, json_array_size(json_object_get(doc, "cases")));
    json_decref(doc);
    assert_true(runs > 500);
    assert_int_equal(failures, 0);
}

/* ---- accessors ---------------------------------------------------------------------------- */

static void test_v12_room_ids(void **state)
{
    (void)state;
    const ax_room_version_t *v12 = version(12), *v11 = version(11);
    json_t *create =
        json_pack("{s:s, s:s, s:s, s:{s:s}, s:i, s:i, s:[], s:[], s:{s:s}, s:{}}", "type", "m.room.create", "state_key",
                  "", "sender", "@alice:example.org", "content", "room_version", "12", "origin_server_ts", 1, "depth",
                  1, "auth_events", "prev_events", "hashes", "sha256", "aGFzaA", "signatures");
    char room_id[AX_HASH_ID_LEN], event_id[64], back[AX_HASH_ID_LEN];
    assert_int_equal(ax_event_room_id_from_create(v12, create, room_id, sizeof(room_id)), 0);
    assert_int_equal(room_id[0], '!');
    assert_true(ax_id_is_valid_room_id(room_id, v12));
    /* the room ID is the create event's ID with another sigil */
    assert_int_equal(ax_event_get_id(v12, create, event_id, sizeof(event_id)), 0);
    assert_string_equal(event_id + 1, room_id + 1);
    assert_int_equal(ax_event_create_id_from_room_id(v12, room_id, back, sizeof(back)), 0);
    assert_string_equal(back, event_id);
    /* a different create event, a different room */
    json_object_set_new(json_object_get(create, "content"), "additional_creators", json_pack("[s]", "@bob:x.org"));
    char other[AX_HASH_ID_LEN];
    assert_int_equal(ax_event_room_id_from_create(v12, create, other, sizeof(other)), 0);
    assert_string_not_equal(other, room_id);
    /* unsigned data is not part of the hash */
    json_object_set_new(create, "unsigned", json_pack("{s:i}", "age", 3));
    char same[AX_HASH_ID_LEN];
    assert_int_equal(ax_event_room_id_from_create(v12, create, same, sizeof(same)), 0);
    assert_string_equal(same, other);
    /* refusals */
    assert_int_equal(ax_event_room_id_from_create(v11, create, room_id, sizeof(room_id)), AX_EINVAL);
    assert_int_equal(ax_event_room_id_from_create(v12, create, room_id, 10), AX_EINVAL);
    assert_int_equal(ax_event_create_id_from_room_id(v12, "!room:example.org", back, sizeof(back)), AX_EINVAL);
    assert_int_equal(ax_event_create_id_from_room_id(v11, other, back, sizeof(back)), AX_EINVAL);
    json_object_set_new(create, "type", json_string("m.room.message"));
    assert_int_equal(ax_event_room_id_from_create(v12, create, room_id, sizeof(room_id)), AX_EINVAL);
    json_decref(create);
}

static void test_event_ids_and_refs(void **state)
{
    (void)state;
    const ax_room_version_t *v1 = version(1), *v10 = version(10), *v11 = version(11);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:{s:s}}", "type", "m.room.redaction", "event_id", "$x:example.org",
                           "redacts", "$top:example.org", "content", "redacts", "$inner:example.org");
    char id[64];
    assert_int_equal(ax_event_get_id(v1, ev, id, sizeof(id)), 0);
    assert_string_equal(id, "$x:example.org");
    assert_int_equal(ax_event_get_id(v1, ev, id, 5), AX_EINVAL);
    /* v3+: the stated event_id is not trusted; the ID is the reference hash */
    assert_int_equal(ax_event_get_id(v10, ev, id, sizeof(id)), 0);
    assert_true(ax_id_is_valid_event_id(id, v10));
    assert_string_not_equal(id, "$x:example.org");
    /* redacts moved into content in v11 */
    assert_string_equal(ax_event_redacts(v10, ev), "$top:example.org");
    assert_string_equal(ax_event_redacts(v11, ev), "$inner:example.org");
    json_object_del(ev, "event_id");
    assert_int_equal(ax_event_get_id(v1, ev, id, sizeof(id)), AX_EINVAL);
    json_decref(ev);

    json_t *pair = json_pack("[s,{s:s}]", "$a:example.org", "sha256", "x");
    json_t *plain = json_string("$b");
    json_t *bad = json_integer(3);
    assert_string_equal(ax_event_ref_id(pair), "$a:example.org");
    assert_string_equal(ax_event_ref_id(plain), "$b");
    assert_null(ax_event_ref_id(bad));
    json_decref(pair);
    json_decref(plain);
    json_decref(bad);

    json_t *st = json_pack("{s:s}", "state_key", "");
    json_t *msg = json_pack("{s:n}", "state_key");
    assert_true(ax_event_is_state(st));
    assert_false(ax_event_is_state(msg));
    json_decref(st);
    json_decref(msg);
}

static void expect_signers(const ax_room_version_t *rv, json_t *ev, const char *want)
{
    const char *out[AX_EVENT_SIGNERS_MAX];
    size_t n;
    assert_int_equal(ax_event_required_signers(rv, ev, out, &n), 0);
    char got[256] = "";
    for (size_t i = 0; i < n; ++i) {
        strcat(got, i ? "," : "");
        strcat(got, out[i]);
    }
    assert_string_equal(got, want);
    json_decref(ev);
}

static void test_required_signers(void **state)
{
    (void)state;
    const ax_room_version_t *v1 = version(1), *v7 = version(7), *v8 = version(8);
    expect_signers(v8, json_pack("{s:s, s:s, s:{}}", "type", "m.room.message", "sender", "@a:one.org", "content"),
                   "one.org");
    /* v1-2: the event ID's server too, once when it is the same */
    expect_signers(v1,
                   json_pack("{s:s, s:s, s:s, s:{}}", "type", "m.room.message", "sender", "@a:one.org", "event_id",
                             "$e:two.org", "content"),
                   "one.org,two.org");
    expect_signers(v1,
                   json_pack("{s:s, s:s, s:s, s:{}}", "type", "m.room.message", "sender", "@a:one.org", "event_id",
                             "$e:one.org", "content"),
                   "one.org");
    /* restricted joins: the authorising server, from v8 */
    json_t *join =
        json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "type", "m.room.member", "sender", "@a:one.org", "state_key",
                  "@a:one.org", "content", "membership", "join", "join_authorised_via_users_server", "@b:three.org");
    expect_signers(v8, json_incref(join), "one.org,three.org");
    expect_signers(v7, join, "one.org");
    /* third-party invites may come from another server than the sender's */
    expect_signers(v8,
                   json_pack("{s:s, s:s, s:s, s:{s:s, s:{}}}", "type", "m.room.member", "sender", "@a:one.org",
                             "state_key", "@c:four.org", "content", "membership", "invite", "third_party_invite"),
                   "");
    const char *out[AX_EVENT_SIGNERS_MAX];
    size_t n;
    json_t *bad = json_pack("{s:s, s:s}", "type", "m.room.message", "sender", "nobody");
    assert_int_equal(ax_event_required_signers(v8, bad, out, &n), AX_EINVAL);
    json_decref(bad);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_names),         cmocka_unit_test(test_user_ids),
        cmocka_unit_test(test_room_event_alias_ids), cmocka_unit_test(test_format_vectors),
        cmocka_unit_test(test_v12_room_ids),         cmocka_unit_test(test_event_ids_and_refs),
        cmocka_unit_test(test_required_signers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
