/*
 * test_core_auth_rules.c -- the authorization rules, table-driven from
 * tests/vectors/auth_rules/ (one JSON file per rule group).  Files hold named base states (shared by
 * all files; _bases.json has the common ones) and cases; each case names the room versions it runs in, the state (a
 * base plus overrides), the event, and what to expect -- one value, or an object mapping version ranges ("1-6", "7-12")
 * to values where versions differ.
 *
 * The harness completes the events of each case for the room version at
 * hand, so the fixtures stay short: room_id ("!room:example.org", or in v12
 * the ID derived from the create event in the state), v1-2 event IDs and
 * [id, hashes] references, origin_server_ts, depth, hashes and a signature
 * from the sender's server.  Placeholders in strings: "$CREATE" (the create
 * event's ID), "$ROOM" (the room ID), "$TEST_KEY" / "$TEST_KEY_URLSAFE" (the
 * public key of the test identity server).  A case with "sign_3pid" has
 * content.third_party_invite.signed signed with that identity server's key,
 * then altered by "tamper_3pid" if given.
 *
 * Checks ("check", default "auth"): auth (ax_auth_check against the state),
 * auth_events (ax_auth_check_auth_events on "auth_events_list"), auth_types
 * (ax_auth_event_types, compared as a set), power_level / required_level /
 * named_level (the ax_power_level_* helpers), redaction_applies.
 */
#include "testutil.h"

#include "core/events.h"

#include <glob.h>

#define TEST_ROOM_ID    "!room:example.org"
#define TEST_V12_NOROOM "!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static ax_signing_key_t idserver_key;
static char test_key_b64[64], test_key_urlsafe[64];

typedef struct st_case_t {
    const char *file;
    json_t *bases; /* borrowed from the file */
    json_t *c;     /* borrowed from the file */
    char name[256];
} case_t;

/* ---- version ranges ------------------------------------------------------------- */

/* Does 'spec' ("1-5,7,10-12") include version 'v'? */
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
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p != '\0')
            break;
    }
    return false;
}

/* The expectation for version 'v': the value, or the entry of a range object. */
static json_t *for_version(json_t *expect, int v)
{
    if (!json_is_object(expect))
        return expect;
    const char *range;
    json_t *val;
    json_object_foreach(expect, range, val)
    {
        if (in_ranges(range, v))
            return val;
    }
    return NULL;
}

/* ---- completing events ----------------------------------------------------------- */

typedef struct st_fill_t {
    const ax_room_version_t *rv;
    char room_id[300];
    char create_id[300];
    int counter;
} fill_t;

static json_t *substitute(json_t *v, const fill_t *f)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "$CREATE") == 0 && f->create_id[0])
            return json_string(f->create_id);
        if (strcmp(s, "$ROOM") == 0)
            return json_string(f->room_id);
        if (strcmp(s, "$TEST_KEY") == 0)
            return json_string(test_key_b64);
        if (strcmp(s, "$TEST_KEY_URLSAFE") == 0)
            return json_string(test_key_urlsafe);
        return json_incref(v);
    }
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            json_object_set_new(out, k, substitute(x, f));
        }
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            json_array_append_new(out, substitute(x, f));
        }
        return out;
    }
    return json_incref(v);
}

/* v1-2 reference lists are [id, hashes] pairs. */
static void pair_refs(json_t *ev, const char *key, const ax_room_version_t *rv)
{
    json_t *refs = json_object_get(ev, key);
    if (rv->event_id_format != AX_EVENT_ID_V1 || !json_is_array(refs))
        return;
    for (size_t i = 0; i < json_array_size(refs); ++i) {
        json_t *r = json_array_get(refs, i);
        if (json_is_string(r))
            json_array_set_new(refs, i, json_pack("[O,{s:s}]", r, "sha256", "aGFzaA"));
    }
}

/* Returns a new reference: 'tmpl' completed for the room version. */
static json_t *complete(const json_t *tmpl, fill_t *f)
{
    json_t *ev = substitute((json_t *)tmpl, f);
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *sender = json_string_value(json_object_get(ev, "sender"));
    const char *domain = ax_id_domain(sender);
    bool v12_create = f->rv->room_id_from_create && type != NULL && strcmp(type, "m.room.create") == 0;

    if (json_object_get(ev, "room_id") == NULL && !v12_create)
        json_object_set_new(ev, "room_id", json_string(f->room_id));
    if (json_object_get(ev, "content") == NULL)
        json_object_set_new(ev, "content", json_object());
    if (json_object_get(ev, "origin_server_ts") == NULL)
        json_object_set_new(ev, "origin_server_ts", json_integer(1000 + f->counter));
    if (json_object_get(ev, "depth") == NULL)
        json_object_set_new(ev, "depth", json_integer(1 + f->counter));
    if (json_object_get(ev, "hashes") == NULL)
        json_object_set_new(ev, "hashes", json_pack("{s:s}", "sha256", "aGFzaA"));
    if (json_object_get(ev, "signatures") == NULL && domain != NULL)
        json_object_set_new(ev, "signatures", json_pack("{s:{s:s}}", domain, "ed25519:a", "c2ln"));
    if (json_object_get(ev, "auth_events") == NULL)
        json_object_set_new(ev, "auth_events", json_array());
    if (json_object_get(ev, "prev_events") == NULL)
        json_object_set_new(ev, "prev_events", json_array());
    if (f->rv->event_id_format == AX_EVENT_ID_V1 && json_object_get(ev, "event_id") == NULL) {
        char id[300];
        if (type != NULL && strcmp(type, "m.room.create") == 0)
            snprintf(id, sizeof(id), "$create:%s", domain ? domain : "example.org");
        else
            snprintf(id, sizeof(id), "$e%d:%s", f->counter, domain ? domain : "example.org");
        json_object_set_new(ev, "event_id", json_string(id));
    }
    pair_refs(ev, "auth_events", f->rv);
    pair_refs(ev, "prev_events", f->rv);
    ++f->counter;
    return ev;
}

/* Index of the state event with the same (type, state_key) in 'arr', or -1. */
static int find_key(json_t *arr, const char *type, const char *state_key)
{
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev)
    {
        if (ax_streq(json_string_value(json_object_get(ev, "type")), type) &&
            ax_streq(json_string_value(json_object_get(ev, "state_key")), state_key))
            return (int)i;
    }
    return -1;
}

/* Builds the case's state templates: the base, then "state" overrides, minus "remove". */
static json_t *state_templates(const case_t *tc)
{
    json_t *out = json_array();
    const char *base = json_string_value(json_object_get(tc->c, "base"));
    if (base != NULL) {
        json_t *b = json_object_get(tc->bases, base);
        if (b == NULL)
            fail_msg("%s: unknown base '%s'", tc->name, base);
        json_array_extend(out, b);
    }
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(tc->c, "state"), i, ev)
    {
        int at = find_key(out, json_string_value(json_object_get(ev, "type")),
                          json_string_value(json_object_get(ev, "state_key")));
        if (at >= 0)
            json_array_set(out, (size_t)at, ev);
        else
            json_array_append(out, ev);
    }
    json_array_foreach(json_object_get(tc->c, "remove"), i, ev)
    {
        int at = find_key(out, json_string_value(json_array_get(ev, 0)), json_string_value(json_array_get(ev, 1)));
        if (at >= 0)
            json_array_remove(out, (size_t)at);
    }
    return out;
}

/* Completes the state for 'rv': the create event first, since the room ID and
 * "$CREATE" derive from it. */
static json_t *build_state(const case_t *tc, fill_t *f)
{
    json_t *tmpl = state_templates(tc);
    json_t *out = json_array();
    snprintf(f->room_id, sizeof(f->room_id), "%s", f->rv->room_id_from_create ? TEST_V12_NOROOM : TEST_ROOM_ID);
    f->create_id[0] = '\0';
    int at = find_key(tmpl, "m.room.create", "");
    json_t *create = NULL;
    if (at >= 0) {
        create = complete(json_array_get(tmpl, (size_t)at), f);
        if (f->rv->room_id_from_create && json_object_get(create, "room_id") == NULL)
            assert_int_equal(ax_event_room_id_from_create(f->rv, create, f->room_id, sizeof(f->room_id)), 0);
        assert_int_equal(ax_event_get_id(f->rv, create, f->create_id, sizeof(f->create_id)), 0);
        json_array_append_new(out, create);
    }
    size_t i;
    json_t *ev;
    json_array_foreach(tmpl, i, ev)
    {
        if ((int)i != at)
            json_array_append_new(out, complete(ev, f));
    }
    json_decref(tmpl);
    return out;
}

/* Signs content.third_party_invite.signed as the test identity server, then
 * merges 'tamper' (borrowed, may be NULL) into it. */
static void sign_3pid(json_t *event, json_t *tamper)
{
    json_t *tpi = json_object_get(json_object_get(event, "content"), "third_party_invite");
    json_t *signed_ = json_object_get(tpi, "signed");
    assert_non_null(signed_);
    assert_int_equal(ax_sign_json(signed_, "id.example.org", &idserver_key), 0);
    if (tamper != NULL)
        json_object_update(signed_, tamper);
}

/* ---- running a case --------------------------------------------------------------- */

static const char *level_text(int64_t v, char *buf, size_t cap)
{
    if (v == AX_PL_INFINITE)
        return "infinite";
    snprintf(buf, cap, "%lld", (long long)v);
    return buf;
}

/* Runs 'tc' in version 'v'; returns true when it behaves as expected. */
static bool run_version(const case_t *tc, int v)
{
    char vid[4], reason[512] = "";
    snprintf(vid, sizeof(vid), "%d", v);
    const ax_room_version_t *rv = ax_room_version_get(vid);
    fill_t f = {rv, "", "", 0};
    json_t *c = tc->c;
    const char *check = json_string_value(json_object_get(c, "check"));
    json_t *state = build_state(tc, &f);
    json_t *event = json_object_get(c, "event") ? complete(json_object_get(c, "event"), &f) : NULL;
    bool ok = false;
    if (event != NULL && json_is_true(json_object_get(c, "sign_3pid")))
        sign_3pid(event, json_object_get(c, "tamper_3pid"));

    if (check == NULL || strcmp(check, "auth") == 0 || strcmp(check, "auth_events") == 0) {
        json_t *want = for_version(json_object_get(c, "allow"), v);
        int rc;
        if (check != NULL && strcmp(check, "auth_events") == 0) {
            json_t *list = json_array();
            const json_t *evs[16];
            bool rejected[16];
            size_t n = 0, i;
            json_t *x;
            json_array_foreach(json_object_get(c, "auth_events_list"), i, x)
            {
                /* entries name a state event by [type, state_key], or give an event */
                json_t *ae;
                if (json_is_array(x)) {
                    int at = find_key(state, json_string_value(json_array_get(x, 0)),
                                      json_string_value(json_array_get(x, 1)));
                    assert_true(at >= 0);
                    ae = json_incref(json_array_get(state, (size_t)at));
                } else {
                    ae = complete(x, &f);
                }
                json_array_append_new(list, ae);
                evs[n] = ae;
                rejected[n] = json_is_true(json_array_get(json_object_get(c, "rejected"), i));
                ++n;
            }
            rc = ax_auth_check_auth_events(rv, event, evs, rejected, n, reason, sizeof(reason));
            json_decref(list);
        } else {
            rc = ax_auth_check(rv, event, ax_auth_lookup_list, state, reason, sizeof(reason));
        }
        const char *want_reason = json_string_value(json_object_get(c, "reason"));
        if (!json_is_boolean(want)) {
            print_error("  %s: no expectation for v%d\n", tc->name, v);
        } else if (json_is_true(want)) {
            ok = rc == 0;
            if (!ok)
                print_error("  %s (v%d): expected allow, denied: %s\n", tc->name, v, reason);
        } else {
            ok = rc == AX_EFORBIDDEN && (want_reason == NULL || strstr(reason, want_reason) != NULL);
            if (!ok)
                print_error("  %s (v%d): expected deny%s%s, got rc=%d '%s'\n", tc->name, v, want_reason ? " with " : "",
                            want_reason ? want_reason : "", rc, reason);
        }
    } else if (strcmp(check, "auth_types") == 0) {
        ax_state_key_t keys[AX_AUTH_TYPES_MAX];
        size_t n;
        json_t *want = for_version(json_object_get(c, "expect"), v);
        ok = ax_auth_event_types(rv, event, keys, &n) == 0 && n == json_array_size(want);
        for (size_t i = 0; ok && i < json_array_size(want); ++i) {
            json_t *pair = json_array_get(want, i);
            bool found = false;
            for (size_t j = 0; j < n && !found; ++j)
                found = strcmp(keys[j].type, json_string_value(json_array_get(pair, 0))) == 0 &&
                        strcmp(keys[j].state_key, json_string_value(json_array_get(pair, 1))) == 0;
            ok = found;
        }
        if (!ok) {
            print_error("  %s (v%d): auth types differ; got %zu:", tc->name, v, n);
            for (size_t j = 0; j < n; ++j)
                print_error(" (%s,%s)", keys[j].type, keys[j].state_key);
            print_error("\n");
        }
    } else if (strcmp(check, "power_level") == 0 || strcmp(check, "required_level") == 0 ||
               strcmp(check, "named_level") == 0 || strcmp(check, "notification_level") == 0) {
        json_t *want = for_version(json_object_get(c, "expect"), v);
        const char *arg = json_string_value(json_object_get(c, "arg"));
        int64_t got = 0;
        int rc;
        if (strcmp(check, "power_level") == 0)
            rc = ax_power_level_of(rv, ax_auth_lookup_list, state, arg, &got);
        else if (strcmp(check, "required_level") == 0)
            rc = ax_power_level_required(rv, ax_auth_lookup_list, state, arg,
                                         json_is_true(json_object_get(c, "is_state")), &got);
        else if (strcmp(check, "named_level") == 0)
            rc = ax_power_level_named(rv, ax_auth_lookup_list, state, arg, &got);
        else
            rc = ax_power_level_notification(rv, ax_auth_lookup_list, state, arg, &got);
        char buf[32];
        if (json_is_string(want) && strcmp(json_string_value(want), "error") == 0)
            ok = rc == AX_EINVAL;
        else if (json_is_string(want))
            ok = rc == 0 && strcmp(level_text(got, buf, sizeof(buf)), json_string_value(want)) == 0;
        else
            ok = rc == 0 && json_is_integer(want) && got == json_integer_value(want);
        if (!ok)
            print_error("  %s (v%d): rc=%d level %s\n", tc->name, v, rc, level_text(got, buf, sizeof(buf)));
    } else if (strcmp(check, "redaction_applies") == 0) {
        json_t *original = complete(json_object_get(c, "original"), &f);
        json_t *want = for_version(json_object_get(c, "allow"), v);
        int rc = ax_auth_redaction_applies(rv, event, original, ax_auth_lookup_list, state);
        ok = json_is_true(want) ? rc == 0 : rc == AX_EFORBIDDEN;
        if (!ok)
            print_error("  %s (v%d): redaction_applies rc=%d\n", tc->name, v, rc);
        json_decref(original);
    } else {
        print_error("  %s: unknown check '%s'\n", tc->name, check);
    }
    json_decref(event);
    json_decref(state);
    return ok;
}

static void run_case(void **state)
{
    const case_t *tc = *state;
    const char *versions = json_string_value(json_object_get(tc->c, "versions"));
    assert_non_null(versions);
    int failures = 0, runs = 0;
    for (int v = 1; v <= 12; ++v) {
        if (!in_ranges(versions, v))
            continue;
        ++runs;
        if (!run_version(tc, v))
            ++failures;
    }
    assert_true(runs > 0);
    assert_int_equal(failures, 0);
}

/* ---- loading ---------------------------------------------------------------------- */

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, 7, sizeof(seed));
    ax_signing_key_from_seed(&idserver_key, "ed25519:0", seed);
    ax_b64_encode(test_key_b64, idserver_key.public_key, sizeof(idserver_key.public_key), false);
    ax_b64_encode(test_key_urlsafe, idserver_key.public_key, sizeof(idserver_key.public_key), true);

    const char *dir = getenv("AX_VECTORS_DIR");
    char pattern[1024];
    snprintf(pattern, sizeof(pattern), "%s/auth_rules/*.json", dir ? dir : "tests/vectors");
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) {
        fprintf(stderr, "no fixtures match %s\n", pattern);
        return 1;
    }
    json_t *files = json_array();
    json_t *bases = json_object(); /* the "bases" of every file, shared */
    size_t n_cases = 0;
    for (size_t i = 0; i < g.gl_pathc; ++i) {
        json_error_t err;
        json_t *doc = json_load_file(g.gl_pathv[i], JSON_REJECT_DUPLICATES, &err);
        if (doc == NULL) {
            fprintf(stderr, "%s:%d: %s\n", g.gl_pathv[i], err.line, err.text);
            return 1;
        }
        json_array_append_new(files, doc);
        n_cases += json_array_size(json_object_get(doc, "cases"));
        const char *name;
        json_t *b;
        json_object_foreach(json_object_get(doc, "bases"), name, b)
        {
            if (json_object_get(bases, name) != NULL) {
                fprintf(stderr, "%s: base '%s' defined twice\n", g.gl_pathv[i], name);
                return 1;
            }
            json_object_set(bases, name, b);
        }
    }
    case_t *cases = calloc(n_cases, sizeof(*cases));
    struct CMUnitTest *tests = calloc(n_cases, sizeof(*tests));
    size_t k = 0;
    for (size_t i = 0; i < g.gl_pathc; ++i) {
        json_t *doc = json_array_get(files, i);
        const char *base = strrchr(g.gl_pathv[i], '/');
        size_t j;
        json_t *c;
        json_array_foreach(json_object_get(doc, "cases"), j, c)
        {
            case_t *tc = &cases[k];
            tc->file = base ? base + 1 : g.gl_pathv[i];
            tc->bases = bases;
            tc->c = c;
            snprintf(tc->name, sizeof(tc->name), "%.*s: %s", (int)(strlen(tc->file) - 5), tc->file,
                     json_string_value(json_object_get(c, "name")));
            tests[k].name = tc->name;
            tests[k].test_func = run_case;
            tests[k].initial_state = tc;
            ++k;
        }
    }
    int rc = _cmocka_run_group_tests("auth_rules", tests, n_cases, NULL, NULL);
    free(tests);
    free(cases);
    json_decref(files);
    json_decref(bases);
    globfree(&g);
    ax_signing_key_dispose(&idserver_key);
    return rc;
}
