/*
 * test_core_stateres.c -- state resolution v2 / v2.1, table-driven from
 * tests/vectors/stateres/ (one JSON file per theme), plus white-box checks of
 * the conflicted state subgraph (this file includes stateres.c to reach it).
 *
 * Two kinds of case:
 *  - "dag": a room grows event by event.  Each event names its prev events;
 *    the state before it is the state after its single parent, or the
 *    resolution of its parents' states.  Its auth_events are selected from
 *    that state with ax_auth_event_types, and an event the auth rules refuse
 *    against that state is rejected and leaves the state unchanged, as a
 *    server would do.  The case names the events it expects in the state at
 *    END: every key whose event differs from the state at START must be
 *    listed, and nothing else may differ.
 *  - "sets": events with explicit auth events and timestamps, and state sets
 *    given as lists of events; the case gives the whole expected state.
 * Every resolution runs with the state sets in every rotation and reversed,
 * through the event map and through the fetch callback alone, and must give
 * the same answer each time.
 */
#include "testutil.h"

#include "core/stateres.c"

#include <glob.h>

typedef struct st_room_t {
    const ax_room_version_t *rv;
    char room_id[300];
    json_t *events;   /* event_id -> event */
    json_t *rejected; /* event_id -> true */
    json_t *ids;      /* node name -> event_id */
    json_t *names;    /* event_id -> node name */
    int64_t ts;
} room_t;

static json_t *fetch_event(void *arg, const char *event_id, bool *rejected)
{
    room_t *r = arg;
    *rejected = json_object_get(r->rejected, event_id) != NULL;
    return json_incref(json_object_get(r->events, event_id));
}

static const char *id_of(room_t *r, const char *name)
{
    const char *id = json_string_value(json_object_get(r->ids, name));
    if (id == NULL)
        fail_msg("unknown event name '%s'", name);
    return id;
}

static const char *name_of(room_t *r, const char *id)
{
    const char *name = json_string_value(json_object_get(r->names, id));
    return name ? name : id;
}

/* Builds the full PDU for template 'tmpl' named 'name', with 'auth' and 'prev'
 * (arrays of event IDs, borrowed), and records it. */
static json_t *add_event(room_t *r, const char *name, const json_t *tmpl, const json_t *auth, const json_t *prev)
{
    const ax_room_version_t *rv = r->rv;
    json_t *ev = json_deep_copy(tmpl);
    json_object_del(ev, "id");
    json_object_del(ev, "prev");
    json_object_del(ev, "auth");
    json_object_del(ev, "ts");
    json_object_del(ev, "rejected");
    bool is_create = ax_streq(json_string_value(json_object_get(ev, "type")), "m.room.create");
    json_t *ts = json_object_get(tmpl, "ts");
    json_object_set_new(ev, "origin_server_ts", ts ? json_incref(ts) : json_integer(++r->ts));
    json_object_set_new(ev, "depth", json_integer(r->ts));
    if (json_object_get(ev, "content") == NULL)
        json_object_set_new(ev, "content", json_object());
    json_object_set_new(ev, "hashes", json_pack("{s:s}", "sha256", "aGFzaA"));
    json_object_set_new(ev, "signatures", json_pack("{s:{s:s}}", "example.org", "ed25519:a", "c2ln"));
    json_t *a = json_array(), *p = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(auth, i, x)
    {
        json_array_append_new(a, rv->event_id_format == AX_EVENT_ID_V1 ? json_pack("[O,{}]", x) : json_incref(x));
    }
    json_array_foreach(prev, i, x)
    {
        json_array_append_new(p, rv->event_id_format == AX_EVENT_ID_V1 ? json_pack("[O,{}]", x) : json_incref(x));
    }
    json_object_set_new(ev, "auth_events", a);
    json_object_set_new(ev, "prev_events", p);
    if (!(is_create && rv->room_id_from_create))
        json_object_set_new(ev, "room_id", json_string(r->room_id));

    char id[300];
    if (rv->event_id_format == AX_EVENT_ID_V1) {
        snprintf(id, sizeof(id), "$%s:example.org", name);
        json_object_set_new(ev, "event_id", json_string(id));
    } else {
        assert_int_equal(ax_event_get_id(rv, ev, id, sizeof(id)), 0);
    }
    if (is_create && rv->room_id_from_create)
        assert_int_equal(ax_event_room_id_from_create(rv, ev, r->room_id, sizeof(r->room_id)), 0);
    json_object_set_new(r->events, id, ev);
    json_object_set_new(r->ids, name, json_string(id));
    json_object_set_new(r->names, id, json_string(name));
    return ev;
}

static void room_init(room_t *r, const ax_room_version_t *rv)
{
    r->rv = rv;
    snprintf(r->room_id, sizeof(r->room_id), "!room:example.org");
    r->events = json_object();
    r->rejected = json_object();
    r->ids = json_object();
    r->names = json_object();
    r->ts = 0;
}

static void room_dispose(room_t *r)
{
    json_decref(r->events);
    json_decref(r->rejected);
    json_decref(r->ids);
    json_decref(r->names);
}

/* Prints a state map with node names, for failure messages. */
static void print_state(room_t *r, const char *label, const json_t *state)
{
    print_error("    %s:", label);
    const char *type;
    json_t *inner;
    json_object_foreach((json_t *)state, type, inner)
    {
        const char *sk;
        json_t *id;
        json_object_foreach(inner, sk, id)
        {
            print_error(" %s", name_of(r, json_string_value(id)));
        }
    }
    print_error("\n");
}

/* Resolves 'sets' in every rotation and reversed, with and without the event
 * map; all answers must agree.  Returns a new reference or NULL on failure. */
static json_t *resolve_all_orders(room_t *r, json_t *const *sets, size_t n, const char *what)
{
    json_t *first = NULL;
    json_t *event_map = json_object();
    const char *id;
    json_t *ev;
    json_object_foreach(r->events, id, ev)
    {
        if (json_object_get(r->rejected, id) == NULL)
            json_object_set(event_map, id, ev);
    }
    const json_t *order[AX_STATERES_MAX_SETS];
    bool ok = true;
    for (size_t variant = 0; variant < 2 * n && ok; ++variant) {
        for (size_t k = 0; k < n; ++k)
            order[k] = variant < n ? sets[(k + variant) % n] : sets[n - 1 - ((k + variant) % n)];
        for (int use_map = 0; use_map < 2 && ok; ++use_map) {
            json_t *out = NULL;
            int rc = ax_stateres_resolve(r->rv, r->room_id, order, n, use_map ? event_map : NULL, fetch_event, r, &out);
            if (rc != 0) {
                print_error("  %s (v%s): resolve failed: %d\n", what, r->rv->id, rc);
                ok = false;
            } else if (first == NULL) {
                first = out;
                out = NULL;
            } else if (!json_equal(first, out)) {
                print_error("  %s (v%s): order %zu / map %d gives another state\n", what, r->rv->id, variant, use_map);
                print_state(r, "first", first);
                print_state(r, "this", out);
                ok = false;
            }
            json_decref(out);
        }
    }
    json_decref(event_map);
    if (!ok) {
        json_decref(first);
        return NULL;
    }
    return first;
}

static const json_t *lookup_state(void *arg, const char *type, const char *state_key)
{
    void **a = arg;
    room_t *r = a[0];
    const char *id = json_string_value(json_object_get(json_object_get(a[1], type), state_key));
    return id ? json_object_get(r->events, id) : NULL;
}

static void state_put(json_t *state, const char *type, const char *sk, const char *id)
{
    json_t *inner = json_object_get(state, type);
    if (inner == NULL) {
        inner = json_object();
        json_object_set_new(state, type, inner);
    }
    json_object_set_new(inner, sk, json_string(id));
}

static bool version_in(const char *spec, int v)
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

static json_t *for_version(json_t *expect, int v)
{
    if (!json_is_object(expect))
        return expect;
    const char *range;
    json_t *val;
    json_object_foreach(expect, range, val)
    {
        if (version_in(range, v))
            return val;
    }
    return NULL;
}

/* ---- "dag" cases ----------------------------------------------------------------------- */

static bool run_dag(json_t *c, json_t *bases, int v)
{
    char vid[4];
    snprintf(vid, sizeof(vid), "%d", v);
    room_t r;
    room_init(&r, ax_room_version_get(vid));
    json_t *after = json_object(); /* name -> state after */
    json_t *all = json_array();
    const char *name = json_string_value(json_object_get(c, "name"));
    bool ok = true;
    json_array_extend(all, json_object_get(bases, json_string_value(json_object_get(c, "base"))));
    json_array_extend(all, json_object_get(c, "events"));

    size_t i;
    json_t *t;
    json_array_foreach(all, i, t)
    {
        const char *node = json_string_value(json_object_get(t, "id"));
        json_t *prev_names = json_object_get(t, "prev");
        json_t *sets[AX_STATERES_MAX_SETS];
        size_t n = 0, k;
        json_t *pn;
        json_array_foreach(prev_names, k, pn)
        {
            json_t *s = json_object_get(after, json_string_value(pn));
            if (s == NULL)
                fail_msg("%s: %s comes before its prev event %s", name, node, json_string_value(pn));
            sets[n++] = s;
        }
        json_t *before;
        if (n == 0) {
            before = json_object();
        } else if (n == 1) {
            before = json_deep_copy(sets[0]);
        } else {
            char what[300];
            snprintf(what, sizeof(what), "%s: state before %s", name, node);
            before = resolve_all_orders(&r, sets, n, what);
            if (before == NULL) {
                ok = false;
                break;
            }
        }
        /* auth events from the state before, per the selection algorithm */
        json_t *auth = json_array(), *prev = json_array();
        ax_state_key_t keys[AX_AUTH_TYPES_MAX];
        size_t nk = 0;
        json_t *probe = json_deep_copy(t);
        if (json_object_get(probe, "content") == NULL)
            json_object_set_new(probe, "content", json_object());
        if (ax_auth_event_types(r.rv, probe, keys, &nk) == 0)
            for (k = 0; k < nk; ++k) {
                const char *id =
                    json_string_value(json_object_get(json_object_get(before, keys[k].type), keys[k].state_key));
                if (id != NULL)
                    json_array_append_new(auth, json_string(id));
            }
        json_decref(probe);
        json_array_foreach(prev_names, k, pn)
        {
            json_array_append_new(prev, json_string(id_of(&r, json_string_value(pn))));
        }
        json_t *ev = add_event(&r, node, t, auth, prev);
        json_decref(auth);
        json_decref(prev);
        /* the auth rules against the state before decide rejection */
        void *arg[2] = {&r, before};
        char reason[256] = "";
        int rc = ax_auth_check(r.rv, ev, lookup_state, arg, reason, sizeof(reason));
        bool want_rejected = json_is_true(for_version(json_object_get(t, "rejected"), v));
        if ((rc != 0) != want_rejected) {
            print_error("  %s (v%d): %s was %s: %s\n", name, v, node, rc ? "rejected" : "accepted", reason);
            ok = false;
        }
        json_t *state_after = json_deep_copy(before);
        const char *evid = id_of(&r, node);
        if (rc != 0)
            json_object_set_new(r.rejected, evid, json_true());
        else if (ax_event_is_state(ev))
            state_put(state_after, json_string_value(json_object_get(ev, "type")),
                      json_string_value(json_object_get(ev, "state_key")), evid);
        json_object_set_new(after, node, state_after);
        json_decref(before);
    }

    if (ok) {
        json_t *end = json_object_get(after, "END"), *start = json_object_get(after, "START");
        json_t *want = json_object();
        json_array_foreach(for_version(json_object_get(c, "expect"), v), i, t)
        {
            json_t *ev = json_object_get(r.events, id_of(&r, json_string_value(t)));
            state_put(want, json_string_value(json_object_get(ev, "type")),
                      json_string_value(json_object_get(ev, "state_key")), id_of(&r, json_string_value(t)));
        }
        /* END, limited to what changed since START plus what the case names */
        json_t *got = json_object();
        const char *type;
        json_t *inner;
        json_object_foreach(end, type, inner)
        {
            const char *sk;
            json_t *id;
            json_object_foreach(inner, sk, id)
            {
                const char *was = json_string_value(json_object_get(json_object_get(start, type), sk));
                bool named = json_object_get(json_object_get(want, type), sk) != NULL;
                if (named || !ax_streq(was, json_string_value(id)))
                    state_put(got, type, sk, json_string_value(id));
            }
        }
        if (!json_equal(got, want)) {
            print_error("  %s (v%d): unexpected state at END\n", name, v);
            print_state(&r, "expected", want);
            print_state(&r, "got     ", got);
            ok = false;
        }
        json_decref(got);
        json_decref(want);
    }
    json_decref(all);
    json_decref(after);
    room_dispose(&r);
    return ok;
}

/* ---- "sets" cases ----------------------------------------------------------------------- */

static bool run_sets(json_t *c, int v)
{
    char vid[4];
    snprintf(vid, sizeof(vid), "%d", v);
    room_t r;
    room_init(&r, ax_room_version_get(vid));
    const char *name = json_string_value(json_object_get(c, "name"));
    bool ok = true;
    size_t i, k;
    json_t *t, *x;
    json_array_foreach(json_object_get(c, "events"), i, t)
    {
        json_t *auth = json_array(), *prev = json_array();
        json_array_foreach(json_object_get(t, "auth"), k, x)
        {
            const char *an = json_string_value(x);
            /* v12 events never cite the create event: the room ID names it */
            json_t *aev = json_object_get(r.events, id_of(&r, an));
            if (!(r.rv->room_id_from_create &&
                  ax_streq(json_string_value(json_object_get(aev, "type")), "m.room.create")))
                json_array_append_new(auth, json_string(id_of(&r, an)));
        }
        const char *node = json_string_value(json_object_get(t, "id"));
        add_event(&r, node, t, auth, prev);
        if (json_is_true(json_object_get(t, "rejected")))
            json_object_set_new(r.rejected, id_of(&r, node), json_true());
        json_decref(auth);
        json_decref(prev);
    }
    json_t *sets[AX_STATERES_MAX_SETS];
    size_t n = 0;
    json_array_foreach(json_object_get(c, "state_sets"), i, t)
    {
        json_t *s = json_object();
        json_array_foreach(t, k, x)
        {
            const char *id = id_of(&r, json_string_value(x));
            json_t *ev = json_object_get(r.events, id);
            state_put(s, json_string_value(json_object_get(ev, "type")),
                      json_string_value(json_object_get(ev, "state_key")), id);
        }
        sets[n++] = s;
    }
    json_t *got = resolve_all_orders(&r, sets, n, name);
    if (got == NULL) {
        ok = false;
    } else {
        json_t *want = json_object();
        json_array_foreach(for_version(json_object_get(c, "expect"), v), i, t)
        {
            const char *id = id_of(&r, json_string_value(t));
            json_t *ev = json_object_get(r.events, id);
            state_put(want, json_string_value(json_object_get(ev, "type")),
                      json_string_value(json_object_get(ev, "state_key")), id);
        }
        if (!json_equal(got, want)) {
            print_error("  %s (v%d): unexpected resolved state\n", name, v);
            print_state(&r, "expected", want);
            print_state(&r, "got     ", got);
            ok = false;
        }
        json_decref(want);
        json_decref(got);
    }
    for (k = 0; k < n; ++k)
        json_decref(sets[k]);
    room_dispose(&r);
    return ok;
}

typedef struct st_case_t {
    json_t *c;
    json_t *bases;
    char name[256];
} case_t;

static void run_case(void **state)
{
    case_t *tc = *state;
    const char *versions = json_string_value(json_object_get(tc->c, "versions"));
    const char *kind = json_string_value(json_object_get(tc->c, "kind"));
    int failures = 0, runs = 0;
    for (int v = 1; v <= 12; ++v) {
        if (!version_in(versions, v))
            continue;
        ++runs;
        bool ok = ax_streq(kind, "sets") ? run_sets(tc->c, v) : run_dag(tc->c, tc->bases, v);
        if (!ok)
            ++failures;
    }
    assert_true(runs > 0);
    assert_int_equal(failures, 0);
}

/* ---- white-box: the conflicted state subgraph and the edges of the API --------------------- */

/* A little graph of named events with explicit auth edges (v11, IDs given). */
static json_t *graph_event(const char *type, const char *sk, const char *sender, json_t *auth)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:{}, s:o, s:[], s:i}", "type", type, "state_key", sk, "sender", sender,
                     "room_id", "!r:example.org", "content", "auth_events", auth, "prev_events", "origin_server_ts", 1);
}

static int find(sr_t *sr, const char *id)
{
    json_t *v = json_object_get(sr->index, id);
    return v ? (int)json_integer_value(v) : -1;
}

static void test_conflicted_subgraph(void **state)
{
    (void)state;
    /* C1 -> M -> N -> C2 -> Z, and C1 -> S (a side branch), Q -> C2 (above C1's reach).
     * The subgraph between the conflicted C1 and C2 is {C1, M, N, C2}. */
    json_t *map = json_object();
    json_object_set_new(map, "$Z", graph_event("m.room.create", "", "@a:example.org", json_array()));
    json_object_set_new(map, "$C2", graph_event("x.t", "", "@a:example.org", json_pack("[s]", "$Z")));
    json_object_set_new(map, "$N", graph_event("x.n", "", "@a:example.org", json_pack("[s]", "$C2")));
    json_object_set_new(map, "$M", graph_event("x.m", "", "@a:example.org", json_pack("[s]", "$N")));
    json_object_set_new(map, "$S", graph_event("x.s", "", "@a:example.org", json_pack("[s]", "$Z")));
    json_object_set_new(map, "$C1", graph_event("x.t", "", "@a:example.org", json_pack("[s,s]", "$M", "$S")));
    json_object_set_new(map, "$Q", graph_event("x.q", "", "@a:example.org", json_pack("[s]", "$C2")));
    sr_t sr = {ax_room_version_get("11"), "!r:example.org", map, NULL, NULL, NULL, 0, 0, json_object(), 0, ""};
    ivec_t conflicted = {NULL, 0, 0};
    static const char *const all[] = {"$Z", "$C2", "$N", "$M", "$S", "$C1", "$Q"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(all); ++i)
        assert_true(node_get(&sr, all[i]) >= 0);
    ivec_push(&conflicted, find(&sr, "$C1"));
    ivec_push(&conflicted, find(&sr, "$C2"));
    sr.nodes[find(&sr, "$C1")].conflicted = 1;
    sr.nodes[find(&sr, "$C2")].conflicted = 1;
    mark_conflicted_subgraph(&sr, &conflicted);
    static const char *const in[] = {"$C1", "$M", "$N", "$C2"}, *const out[] = {"$Z", "$S", "$Q"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(in); ++i)
        if (!sr.nodes[find(&sr, in[i])].in_full)
            fail_msg("%s should be in the conflicted subgraph", in[i]);
    for (size_t i = 0; i < AX_ARRAY_SIZE(out); ++i)
        if (sr.nodes[find(&sr, out[i])].in_full)
            fail_msg("%s should not be in the conflicted subgraph", out[i]);
    for (size_t i = 0; i < sr.n; ++i) {
        free(sr.nodes[i].id);
        json_decref(sr.nodes[i].ev);
        ivec_dispose(&sr.nodes[i].auth);
    }
    free(sr.nodes);
    json_decref(sr.index);
    ivec_dispose(&conflicted);
    json_decref(map);
}

static void test_forged_cycle(void **state)
{
    (void)state;
    /* v1-2 event IDs are chosen by servers, so auth_events can form a cycle;
     * resolution must end and still resolve what it can. */
    json_t *map = json_object();
    json_t *create = graph_event("m.room.create", "", "@a:example.org", json_array());
    json_object_set_new(json_object_get(create, "content"), "creator", json_string("@a:example.org"));
    json_object_set_new(map, "$create:example.org", create);
    json_t *x = graph_event("m.room.power_levels", "", "@a:example.org",
                            json_pack("[[s,{}],[s,{}]]", "$create:example.org", "$y:example.org"));
    json_t *y = graph_event("m.room.power_levels", "", "@a:example.org",
                            json_pack("[[s,{}],[s,{}]]", "$create:example.org", "$x:example.org"));
    json_object_set_new(map, "$x:example.org", x);
    json_object_set_new(map, "$y:example.org", y);
    json_t *s1 = json_pack("{s:{s:s}, s:{s:s}}", "m.room.create", "", "$create:example.org", "m.room.power_levels", "",
                           "$x:example.org");
    json_t *s2 = json_pack("{s:{s:s}, s:{s:s}}", "m.room.create", "", "$create:example.org", "m.room.power_levels", "",
                           "$y:example.org");
    const json_t *sets[2] = {s1, s2};
    json_t *out = NULL;
    assert_int_equal(ax_stateres_resolve(ax_room_version_get("2"), "!r:example.org", sets, 2, map, NULL, NULL, &out),
                     0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "m.room.create"), "")),
                        "$create:example.org");
    json_decref(out);
    json_decref(s1);
    json_decref(s2);
    json_decref(map);
}

static void test_api_edges(void **state)
{
    (void)state;
    json_t *map = json_object();
    json_object_set_new(map, "$a", graph_event("m.room.topic", "", "@a:example.org", json_array()));
    json_object_set_new(map, "$elsewhere", graph_event("m.room.topic", "", "@a:example.org", json_array()));
    json_object_set_new(json_object_get(map, "$elsewhere"), "room_id", json_string("!other:example.org"));
    json_t *s1 = json_pack("{s:{s:s}}", "m.room.topic", "", "$a");
    json_t *s2 = json_pack("{s:{s:s}}", "m.room.topic", "", "$missing");
    json_t *s3 = json_pack("{s:{s:s}}", "m.room.topic", "", "$elsewhere");
    json_t *bad = json_pack("{s:s}", "m.room.topic", "$a");
    const json_t *same[2] = {s1, s1}, *missing[2] = {s1, s2}, *foreign[2] = {s1, s3}, *malformed[2] = {s1, bad};
    json_t *out = NULL;
    const ax_room_version_t *v10 = ax_room_version_get("10");
    /* no conflict: the state as it is */
    assert_int_equal(ax_stateres_resolve(v10, "!r:example.org", same, 2, map, NULL, NULL, &out), 0);
    assert_true(json_equal(out, s1));
    json_decref(out);
    assert_int_equal(ax_stateres_resolve(v10, "!r:example.org", missing, 2, map, NULL, NULL, &out), AX_ENOTFOUND);
    assert_null(out);
    assert_int_equal(ax_stateres_resolve(v10, "!r:example.org", foreign, 2, map, NULL, NULL, &out), AX_EINVAL);
    assert_int_equal(ax_stateres_resolve(v10, "!r:example.org", malformed, 2, map, NULL, NULL, &out), AX_EINVAL);
    /* room version 1 uses another algorithm */
    assert_int_equal(ax_stateres_resolve(ax_room_version_get("1"), "!r:example.org", same, 2, map, NULL, NULL, &out),
                     AX_EINVAL);
    /* v12 needs a v12 room ID to find the create event */
    assert_int_equal(ax_stateres_resolve(ax_room_version_get("12"), "!r:example.org", same, 2, map, NULL, NULL, &out),
                     AX_EINVAL);
    const json_t *many[AX_STATERES_MAX_SETS + 1];
    for (size_t i = 0; i < AX_ARRAY_SIZE(many); ++i)
        many[i] = s1;
    assert_int_equal(ax_stateres_resolve(v10, "!r:example.org", many, AX_ARRAY_SIZE(many), map, NULL, NULL, &out),
                     AX_ETOOBIG);
    json_decref(s1);
    json_decref(s2);
    json_decref(s3);
    json_decref(bad);
    json_decref(map);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const char *dir = getenv("AX_VECTORS_DIR");
    char pattern[1024];
    snprintf(pattern, sizeof(pattern), "%s/stateres/*.json", dir ? dir : "tests/vectors");
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) {
        fprintf(stderr, "no fixtures match %s\n", pattern);
        return 1;
    }
    json_t *files = json_array(), *bases = json_object();
    size_t n_cases = 0;
    for (size_t i = 0; i < g.gl_pathc; ++i) {
        json_error_t err;
        json_t *doc = json_load_file(g.gl_pathv[i], JSON_REJECT_DUPLICATES, &err);
        if (doc == NULL) {
            fprintf(stderr, "%s:%d: %s\n", g.gl_pathv[i], err.line, err.text);
            return 1;
        }
        json_array_append_new(files, doc);
        json_object_update(bases, json_object_get(doc, "bases"));
        n_cases += json_array_size(json_object_get(doc, "cases"));
    }
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_conflicted_subgraph),
        cmocka_unit_test(test_forged_cycle),
        cmocka_unit_test(test_api_edges),
    };
    size_t n_tests = n_cases + AX_ARRAY_SIZE(fixed);
    case_t *cases = calloc(n_cases ? n_cases : 1, sizeof(*cases));
    struct CMUnitTest *tests = calloc(n_tests, sizeof(*tests));
    memcpy(tests, fixed, sizeof(fixed));
    size_t k = AX_ARRAY_SIZE(fixed), m = 0;
    for (size_t i = 0; i < g.gl_pathc; ++i) {
        const char *file = strrchr(g.gl_pathv[i], '/');
        file = file ? file + 1 : g.gl_pathv[i];
        size_t j;
        json_t *c;
        json_array_foreach(json_object_get(json_array_get(files, i), "cases"), j, c)
        {
            case_t *tc = &cases[m++];
            tc->c = c;
            tc->bases = bases;
            snprintf(tc->name, sizeof(tc->name), "%.*s: %s", (int)(strlen(file) - 5), file,
                     json_string_value(json_object_get(c, "name")));
            tests[k].name = tc->name;
            tests[k].test_func = run_case;
            tests[k].initial_state = tc;
            ++k;
        }
    }
    int rc = _cmocka_run_group_tests("stateres", tests, n_tests, NULL, NULL);
    free(tests);
    free(cases);
    json_decref(files);
    json_decref(bases);
    globfree(&g);
    return rc;
}
