/*
 * test_core_servers.c -- a room as other servers see it (core/servers.c,
 * core/dag.c): glob matching and server ACLs in the schema's order (no ACL,
 * IP literals, deny before allow, the default deny, ports ignored, case,
 * malformed entries); then on a real database, with a remote user joined
 * through ax_room_ingest: history visibility judged per server (joined,
 * invited, shared, world_readable, the history_visibility event itself, a
 * rejected event), the state before an event, auth chains (v10 and the
 * implied create event of v12), and the /backfill and /get_missing_events
 * walks (order, limits, earliest events, min_depth, soft-failed events).
 */
#include "testutil.h"

#include "core/servers.h"

#include <sodium.h>

/* ---- glob matching and ACLs ---- */

static void test_glob(void **state)
{
    (void)state;
    assert_true(ax_glob_match_ci("*", ""));
    assert_true(ax_glob_match_ci("*", "evil.com"));
    assert_true(ax_glob_match_ci("evil.com", "evil.com"));
    assert_true(ax_glob_match_ci("EVIL.com", "evil.COM"));
    assert_true(ax_glob_match_ci("*.evil.com", "a.b.evil.com"));
    assert_false(ax_glob_match_ci("*.evil.com", "evil.com"));
    assert_true(ax_glob_match_ci("ev?l.com", "evil.com"));
    assert_false(ax_glob_match_ci("ev?l.com", "evl.com"));
    assert_false(ax_glob_match_ci("ev?l.com", "eviil.com"));
    assert_true(ax_glob_match_ci("*.*.com", "a.b.com"));
    assert_true(ax_glob_match_ci("a*b*c", "aXXbYYbZc"));
    assert_false(ax_glob_match_ci("a*b*c", "aXXbYYbZ"));
    assert_false(ax_glob_match_ci("evil.com", "evil.com.au"));
    assert_false(ax_glob_match_ci("evil.com", "notevil.com"));
    assert_true(ax_glob_match_ci("**", "x"));
    assert_false(ax_glob_match_ci("", "x"));
    assert_true(ax_glob_match_ci("", ""));
    assert_true(ax_glob_match_ci("1.2.3.*", "1.2.3.4"));
}

static bool acl(const char *content, const char *server)
{
    json_error_t err;
    json_t *c = json_loads(content, 0, &err);
    if (c == NULL)
        fail_msg("bad test JSON: %s", err.text);
    bool ok = ax_server_acl_allows(c, server);
    json_decref(c);
    return ok;
}

static void test_acl_order(void **state)
{
    (void)state;
    /* 1. no ACL: everyone */
    assert_true(ax_server_acl_allows(NULL, "anyone.example"));
    /* 5. an ACL without allow denies everyone, its sender included */
    assert_false(acl("{}", "good.example"));
    assert_false(acl("{\"deny\":[]}", "good.example"));
    assert_true(acl("{\"allow\":[\"*\"]}", "good.example"));
    /* 3 before 4: deny wins over allow */
    const char *a = "{\"allow\":[\"*\"],\"deny\":[\"evil.com\",\"*.evil.com\"]}";
    assert_false(acl(a, "evil.com"));
    assert_false(acl(a, "sub.evil.com"));
    assert_false(acl(a, "EVIL.COM"));
    assert_true(acl(a, "notevil.com"));
    /* ports are never considered */
    assert_false(acl(a, "evil.com:8448"));
    assert_false(acl(a, "evil.com:1234"));
    assert_true(acl("{\"allow\":[\"good.example\"]}", "good.example:8448"));
    /* 4. only listed servers */
    const char *only = "{\"allow\":[\"*.matrix.org\",\"example.org\"]}";
    assert_true(acl(only, "a.matrix.org"));
    assert_true(acl(only, "example.org"));
    assert_false(acl(only, "example.com"));
}

static void test_acl_ip_literals(void **state)
{
    (void)state;
    const char *no_ip = "{\"allow\":[\"*\"],\"allow_ip_literals\":false}";
    assert_false(acl(no_ip, "1.2.3.4"));
    assert_false(acl(no_ip, "1.2.3.4:8448"));
    assert_false(acl(no_ip, "[::1]"));
    assert_false(acl(no_ip, "[2001:db8::1]:8448"));
    assert_true(acl(no_ip, "example.org"));
    assert_true(acl(no_ip, "1.2.3.4.example.org")); /* a DNS name that starts like an address */
    /* present and true, absent, or not a boolean: allowed */
    assert_true(acl("{\"allow\":[\"*\"],\"allow_ip_literals\":true}", "1.2.3.4"));
    assert_true(acl("{\"allow\":[\"*\"]}", "[::1]:8448"));
    assert_true(acl("{\"allow\":[\"*\"],\"allow_ip_literals\":\"false\"}", "1.2.3.4"));
    /* IP literals are matched without their port, IPv6 with its brackets */
    assert_false(acl("{\"allow\":[\"*\"],\"deny\":[\"1.2.3.*\"]}", "1.2.3.4:8448"));
    assert_false(acl("{\"allow\":[\"*\"],\"deny\":[\"[::1]\"]}", "[::1]:8448"));
}

static void test_acl_malformed(void **state)
{
    (void)state;
    /* lists that are not arrays are empty; entries that are not strings are ignored */
    assert_false(acl("{\"allow\":\"*\"}", "good.example"));
    assert_true(acl("{\"allow\":[\"*\"],\"deny\":\"evil.com\"}", "evil.com"));
    assert_true(acl("{\"allow\":[1,null,\"*\"],\"deny\":[{\"x\":1},true]}", "good.example"));
    assert_false(acl("{\"allow\":[1,null,{}]}", "good.example"));
}

/* ---- a room on a database ---- */

typedef struct st_fixture_t {
    char *dir;
    ax_db_t *db;
    ax_writer_t *writer;
    ax_signing_key_t key_a, key_b;
    ax_origin_t a;
    const ax_room_version_t *rv;
    char room_id[256];
    char create_id[256];
    int64_t ts;
} fixture_t;

typedef struct st_fn_job_t {
    ax_wjob_t super;
    int (*fn)(ax_txn_t *txn, void *arg);
    void *arg;
} fn_job_t;

static int fn_apply(ax_wjob_t *job, ax_txn_t *txn)
{
    fn_job_t *j = (fn_job_t *)job;
    return j->fn(txn, j->arg);
}

static int run_write(fixture_t *f, int (*fn)(ax_txn_t *txn, void *arg), void *arg)
{
    fn_job_t j = {.super = {.apply = fn_apply}, .fn = fn, .arg = arg};
    return ax_writer_run(f->writer, &j.super);
}

typedef struct st_send_t {
    fixture_t *f;
    ax_draft_t d;
    ax_sent_t sent;
    char reason[256];
} send_t;

static int send_apply(ax_txn_t *txn, void *arg)
{
    send_t *s = arg;
    return ax_room_send(txn, &s->f->a, &s->d, &s->sent, s->reason, sizeof(s->reason));
}

static void local(fixture_t *f, const char *sender, const char *type, const char *state_key, const char *content,
                  char *event_id)
{
    json_t *c = json_loads(content, 0, NULL);
    assert_non_null(c);
    send_t s = {.f = f,
                .d = {.room_id = f->room_id[0] ? f->room_id : NULL,
                      .sender = sender,
                      .type = type,
                      .state_key = state_key,
                      .content = c}};
    int rc = run_write(f, send_apply, &s);
    if (rc != 0)
        fail_msg("local %s: %d %s", type, rc, s.reason);
    if (f->room_id[0] == '\0')
        snprintf(f->room_id, sizeof(f->room_id), "%s", s.sent.room_id);
    if (event_id != NULL)
        snprintf(event_id, 256, "%s", s.sent.event_id);
    json_decref(c);
}

static void msg(fixture_t *f, const char *body, char *event_id)
{
    char content[256];
    snprintf(content, sizeof(content), "{\"msgtype\":\"m.text\",\"body\":\"%s\"}", body);
    local(f, "@alice:a.test", "m.room.message", NULL, content, event_id);
}

/* A remote event signed by b.test; 'prev' and 'auth' are NULL-terminated lists. */
static json_t *remote(fixture_t *f, const char *sender, const char *type, const char *state_key, const char *content,
                      const char *const *prev, const char *const *auth, int64_t depth, char *event_id)
{
    json_t *prev_a = json_array(), *auth_a = json_array();
    for (; prev && *prev; ++prev)
        json_array_append_new(prev_a, json_string(*prev));
    for (; auth && *auth; ++auth)
        if (!(f->rv->room_id_from_create && strcmp(*auth, f->create_id) == 0))
            json_array_append_new(auth_a, json_string(*auth));
    json_t *pdu =
        json_pack("{s:o, s:o, s:o, s:I, s:I, s:s, s:s, s:s}", "content", json_loads(content, 0, NULL), "prev_events",
                  prev_a, "auth_events", auth_a, "depth", (json_int_t)depth, "origin_server_ts", (json_int_t)++f->ts,
                  "sender", sender, "type", type, "room_id", f->room_id);
    if (state_key != NULL)
        json_object_set_new(pdu, "state_key", json_string(state_key));
    assert_int_equal(ax_event_sign(pdu, f->rv, "b.test", &f->key_b), 0);
    assert_int_equal(ax_event_compute_id(pdu, f->rv, event_id, 256), 0);
    return pdu;
}

typedef struct st_ingest_t {
    fixture_t *f;
    const char *event_id;
    json_t *pdu;
    json_t *state; /* the state before, when the caller knows it (a join) */
    bool outlier;
    ax_ingest_t out;
} ingest_t;

static int ingest_apply(ax_txn_t *txn, void *arg)
{
    ingest_t *in = arg;
    if (in->outlier)
        return ax_room_ingest_outlier(txn, in->f->rv, in->f->room_id, in->event_id, in->pdu, &in->out);
    return ax_room_ingest(txn, in->f->rv, in->f->room_id, in->event_id, in->pdu, in->state, &in->out);
}

static ax_ingest_outcome_t ingest(fixture_t *f, const char *event_id, json_t *pdu)
{
    ingest_t in = {.f = f, .event_id = event_id, .pdu = pdu};
    int rc = run_write(f, ingest_apply, &in);
    if (rc != 0)
        fail_msg("ingest: rc %d: %s", rc, in.out.reason);
    json_decref(pdu);
    return in.out.outcome;
}

static int setup_version(void **state, const char *version)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->dir = test_mkdtemp();
    char err[256];
    ax_db_options_t o = {.path = f->dir, .map_size = 64 << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &f->db, err, sizeof(err)), 0);
    f->writer = ax_writer_new(f->db);
    assert_int_equal(ax_writer_start(f->writer), 0);
    uint8_t seed_a[crypto_sign_SEEDBYTES], seed_b[crypto_sign_SEEDBYTES];
    memset(seed_a, 1, sizeof(seed_a));
    memset(seed_b, 2, sizeof(seed_b));
    ax_signing_key_from_seed(&f->key_a, "ed25519:a", seed_a);
    ax_signing_key_from_seed(&f->key_b, "ed25519:b", seed_b);
    f->a = (ax_origin_t){"a.test", &f->key_a};
    f->rv = ax_room_version_get(version);
    f->ts = 1700000000000;
    *state = f;
    return 0;
}

static int setup_v10(void **state)
{
    return setup_version(state, "10");
}

static int setup_v12(void **state)
{
    return setup_version(state, "12");
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ax_writer_stop(f->writer);
    ax_writer_free(f->writer);
    ax_db_close(f->db);
    ax_signing_key_dispose(&f->key_a);
    ax_signing_key_dispose(&f->key_b);
    test_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

typedef struct st_room_ids_t {
    char create[256], alice[256], pl[256], jr[256], hv[256];
} room_ids_t;

/* A public room of alice@a.test with history visibility 'hv'. */
static void room(fixture_t *f, room_ids_t *r, const char *hv)
{
    char content[256];
    bool v12 = f->rv->privileged_creators;
    snprintf(content, sizeof(content), "{\"room_version\":\"%s\"%s}", f->rv->id,
             v12 ? "" : ",\"creator\":\"@alice:a.test\"");
    if (!v12)
        snprintf(f->room_id, sizeof(f->room_id), "!room%lld:a.test", (long long)f->ts);
    local(f, "@alice:a.test", "m.room.create", "", content, r->create);
    snprintf(f->create_id, sizeof(f->create_id), "%s", r->create);
    local(f, "@alice:a.test", "m.room.member", "@alice:a.test", "{\"membership\":\"join\"}", r->alice);
    snprintf(content, sizeof(content), "{\"users\":{%s},\"users_default\":0,\"state_default\":50}",
             v12 ? "" : "\"@alice:a.test\":100");
    local(f, "@alice:a.test", "m.room.power_levels", "", content, r->pl);
    local(f, "@alice:a.test", "m.room.join_rules", "", "{\"join_rule\":\"public\"}", r->jr);
    snprintf(content, sizeof(content), "{\"history_visibility\":\"%s\"}", hv);
    local(f, "@alice:a.test", "m.room.history_visibility", "", content, r->hv);
}

/* Current extremity of the room (the last event when there is one). */
static int last_cb(void *arg, const char *event_id)
{
    snprintf(arg, 256, "%s", event_id);
    return 0;
}

static void last_event(fixture_t *f, char *out)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    ax_db_extremities_foreach(t, f->room_id, last_cb, out);
    ax_db_read_end(t);
}

/* bob@b.test joins (a remote event on the room's latest event). */
static void bob_joins(fixture_t *f, const room_ids_t *r, char *join)
{
    char last[256];
    last_event(f, last);
    const char *prev[] = {last, NULL}, *auth[] = {r->create, r->pl, r->jr, NULL};
    assert_int_equal(ingest(f, join,
                            remote(f, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", prev,
                                   auth, 100, join)),
                     AX_INGEST_ACCEPTED);
}

/* Whether 'server' may see 'event_id'. */
static bool sees(fixture_t *f, const char *server, const char *event_id)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    ax_server_view_t v;
    assert_int_equal(ax_server_view_init(&v, t, f->room_id, server), 0);
    json_t *pdu = NULL;
    ax_event_rec_t rec;
    assert_int_equal(ax_db_event_get(t, event_id, &pdu, &rec), 0);
    bool ok = ax_server_view_can_see(&v, event_id, pdu, &rec);
    json_decref(pdu);
    ax_server_view_dispose(&v);
    ax_db_read_end(t);
    return ok;
}

static bool in_room(fixture_t *f, const char *server)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    ax_server_view_t v;
    assert_int_equal(ax_server_view_init(&v, t, f->room_id, server), 0);
    bool joined = v.joined;
    ax_server_view_dispose(&v);
    ax_db_read_end(t);
    return joined;
}

static void test_visibility_joined(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "joined");
    char before[256], join[256], after[256];
    msg(f, "before bob", before);
    assert_false(in_room(f, "b.test"));
    assert_false(sees(f, "b.test", before));
    bob_joins(f, &r, join);
    msg(f, "after bob", after);
    assert_true(in_room(f, "b.test"));
    assert_false(sees(f, "b.test", before)); /* joined: not even once in the room */
    assert_true(sees(f, "b.test", join));
    assert_true(sees(f, "b.test", after));
    /* a server with no members sees nothing; our own users everything */
    assert_false(sees(f, "c.test", after));
    assert_true(sees(f, "a.test", before));
    /* the history_visibility event itself counts under the setting before it ("shared", the
     * default): b.test, in the room now, may see it; c.test may not */
    assert_true(sees(f, "b.test", r.hv));
    assert_false(sees(f, "c.test", r.hv));
}

static void test_visibility_shared_and_world_readable(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "shared");
    char early[256], join[256], wr[256], open[256], back[256], closed[256];
    msg(f, "early", early);
    assert_false(sees(f, "b.test", early)); /* shared, but b.test is not in the room */
    bob_joins(f, &r, join);
    assert_true(sees(f, "b.test", early)); /* now it is */

    local(f, "@alice:a.test", "m.room.history_visibility", "", "{\"history_visibility\":\"world_readable\"}", wr);
    msg(f, "public", open);
    local(f, "@alice:a.test", "m.room.history_visibility", "", "{\"history_visibility\":\"joined\"}", back);
    msg(f, "closed", closed);
    /* world_readable events are for every server; the events after the switch back are not */
    assert_true(sees(f, "c.test", open));
    assert_true(sees(f, "c.test", wr));
    assert_false(sees(f, "c.test", closed));
    assert_false(sees(f, "c.test", early));
    /* the switch away from world_readable is visible under the setting before it */
    assert_true(sees(f, "c.test", back));
}

static void test_visibility_invited(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "invited");
    char before[256], invite[256], during[256];
    msg(f, "before the invite", before);
    local(f, "@alice:a.test", "m.room.member", "@bob:b.test", "{\"membership\":\"invite\"}", invite);
    msg(f, "while invited", during);
    assert_false(sees(f, "b.test", before));
    assert_true(sees(f, "b.test", invite));
    assert_true(sees(f, "b.test", during));
    assert_false(in_room(f, "b.test")); /* invited is not joined */
}

static void test_rejected_never_visible(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "world_readable");
    char join[256], pl[256];
    bob_joins(f, &r, join);
    const char *prev[] = {join, NULL}, *auth[] = {r.create, r.pl, join, NULL};
    assert_int_equal(ingest(f, pl,
                            remote(f, "@bob:b.test", "m.room.power_levels", "", "{\"users\":{\"@bob:b.test\":100}}",
                                   prev, auth, 101, pl)),
                     AX_INGEST_REJECTED);
    assert_false(sees(f, "b.test", pl));
    assert_false(sees(f, "a.test", pl));
}

static void test_outlier_judged_by_current_state(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "joined");
    char join[256];
    const char *prev[] = {r.hv, NULL}, *auth[] = {r.create, r.pl, r.jr, NULL};
    ingest_t in = {.f = f,
                   .event_id = join,
                   .outlier = true,
                   .pdu = remote(f, "@carol:b.test", "m.room.member", "@carol:b.test", "{\"membership\":\"join\"}",
                                 prev, auth, 50, join)};
    assert_int_equal(run_write(f, ingest_apply, &in), 0);
    json_decref(in.pdu);
    assert_int_equal(in.out.outcome, AX_INGEST_OUTLIER);
    /* no state of its own: the room's visibility now ("joined", and c.test has nobody in it) */
    assert_false(sees(f, "c.test", join));
    char wr[256];
    local(f, "@alice:a.test", "m.room.history_visibility", "", "{\"history_visibility\":\"world_readable\"}", wr);
    assert_true(sees(f, "c.test", join));
}

static bool allowed(fixture_t *f, const char *server)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    bool ok = ax_room_server_allowed(t, f->room_id, server);
    ax_db_read_end(t);
    return ok;
}

static void test_room_acl_and_federate(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "shared");
    assert_true(allowed(f, "b.test"));
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    assert_true(ax_room_server_allowed(t, "!unknown:a.test", "b.test")); /* no ACL to apply */
    ax_db_read_end(t);
    local(f, "@alice:a.test", "m.room.server_acl", "", "{\"allow\":[\"*\"],\"deny\":[\"b.test\"]}", NULL);
    assert_false(allowed(f, "b.test"));
    assert_false(allowed(f, "B.TEST:8448"));
    assert_true(allowed(f, "c.test"));
}

static void test_non_federating_room(void **state)
{
    fixture_t *f = *state;
    snprintf(f->room_id, sizeof(f->room_id), "!local%lld:a.test", (long long)f->ts);
    local(f, "@alice:a.test", "m.room.create", "",
          "{\"room_version\":\"10\",\"creator\":\"@alice:a.test\",\"m.federate\":false}", NULL);
    assert_false(allowed(f, "b.test"));
    assert_false(allowed(f, "c.test"));
}

/* ---- the event graph ---- */

static bool contains(const json_t *ids, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        if (strcmp(json_string_value(v), id) == 0)
            return true;
    }
    return false;
}

static void test_state_before_and_auth_chain(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "shared");
    char name1[256], name2[256], m[256];
    local(f, "@alice:a.test", "m.room.name", "", "{\"name\":\"one\"}", name1);
    local(f, "@alice:a.test", "m.room.name", "", "{\"name\":\"two\"}", name2);
    msg(f, "hi", m);
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    json_t *pdu = NULL, *map = NULL;
    ax_event_rec_t rec;
    /* before a state event: the previous value, not the event itself */
    assert_int_equal(ax_db_event_get(t, name2, &pdu, &rec), 0);
    assert_int_equal(ax_event_state_before(t, f->rv, f->room_id, name2, pdu, rec.flags, &map), 0);
    assert_string_equal(ax_state_map_get(map, "m.room.name", ""), name1);
    json_decref(pdu);
    json_decref(map);
    /* before a message: everything so far */
    assert_int_equal(ax_db_event_get(t, m, &pdu, &rec), 0);
    assert_int_equal(ax_event_state_before(t, f->rv, f->room_id, m, pdu, rec.flags, &map), 0);
    assert_string_equal(ax_state_map_get(map, "m.room.name", ""), name2);
    assert_string_equal(ax_state_map_get(map, "m.room.create", ""), r.create);
    json_decref(pdu);
    json_decref(map);
    /* before the create event: nothing */
    assert_int_equal(ax_db_event_get(t, r.create, &pdu, &rec), 0);
    assert_int_equal(ax_event_state_before(t, f->rv, f->room_id, r.create, pdu, rec.flags, &map), 0);
    assert_int_equal(json_object_size(map), 0);
    json_decref(pdu);
    json_decref(map);

    /* the auth chain of the message: create, alice's join, power levels -- recursively */
    json_t *ids = json_pack("[s]", m), *chain = NULL;
    assert_int_equal(ax_room_auth_chain(t, f->rv, f->room_id, ids, &chain), 0);
    assert_true(contains(chain, r.create));
    assert_true(contains(chain, r.alice));
    assert_true(contains(chain, r.pl));
    assert_false(contains(chain, m));
    assert_false(contains(chain, name2));
    assert_false(contains(chain, r.jr)); /* a message does not need the join rules */
    assert_int_equal(json_array_size(chain), 3);
    json_decref(chain);
    json_decref(ids);
    /* the create event has none */
    ids = json_pack("[s]", r.create);
    assert_int_equal(ax_room_auth_chain(t, f->rv, f->room_id, ids, &chain), 0);
    assert_int_equal(json_array_size(chain), 0);
    json_decref(chain);
    json_decref(ids);
    ax_db_read_end(t);
}

/* A state map of the room's current state (a new reference). */
static int map_cb(void *arg, const char *type, const char *state_key, const char *event_id)
{
    json_t *map = arg, *slot = json_object_get(map, type);
    if (slot == NULL)
        json_object_set_new(map, type, slot = json_object());
    json_object_set_new(slot, state_key, json_string(event_id));
    return 0;
}

static void test_state_before_with_outlier_prev_events(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "shared");
    /* an event known only as an outlier, then bob's join built on it, with the state given (as a join is) */
    char gap[256], join[256];
    const char *prev0[] = {r.hv, NULL}, *auth0[] = {r.create, r.pl, r.jr, NULL};
    ingest_t in = {.f = f,
                   .event_id = gap,
                   .outlier = true,
                   .pdu = remote(f, "@carol:b.test", "m.room.member", "@carol:b.test", "{\"membership\":\"join\"}",
                                 prev0, auth0, 50, gap)};
    assert_int_equal(run_write(f, ingest_apply, &in), 0);
    json_decref(in.pdu);
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    json_t *cur = json_object();
    ax_db_state_foreach(t, f->room_id, NULL, map_cb, cur);
    ax_db_read_end(t);
    const char *prev1[] = {gap, NULL}, *auth1[] = {r.create, r.pl, r.jr, NULL};
    ingest_t j = {.f = f,
                  .event_id = join,
                  .state = cur,
                  .pdu = remote(f, "@bob:b.test", "m.room.member", "@bob:b.test", "{\"membership\":\"join\"}", prev1,
                                auth1, 51, join)};
    assert_int_equal(run_write(f, ingest_apply, &j), 0);
    assert_int_equal(j.out.outcome, AX_INGEST_ACCEPTED);
    json_decref(j.pdu);
    json_decref(cur);
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    json_t *pdu = NULL, *map = NULL;
    ax_event_rec_t rec;
    assert_int_equal(ax_db_event_get(t, join, &pdu, &rec), 0);
    assert_int_equal(ax_event_state_before(t, f->rv, f->room_id, join, pdu, rec.flags, &map), 0);
    assert_null(ax_state_map_get(map, "m.room.member", "@bob:b.test")); /* before his join: not there */
    assert_string_equal(ax_state_map_get(map, "m.room.create", ""), r.create);
    assert_string_equal(ax_state_map_get(map, "m.room.member", "@alice:a.test"), r.alice);
    json_decref(map);
    json_decref(pdu);
    /* an outlier itself: its state is not known here */
    assert_int_equal(ax_db_event_get(t, gap, &pdu, &rec), 0);
    assert_int_equal(ax_event_state_before(t, f->rv, f->room_id, gap, pdu, rec.flags, &map), AX_ENOTFOUND);
    json_decref(pdu);
    ax_db_read_end(t);
}

static void test_backfill_and_missing_events(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "shared");
    char m[6][256];
    for (int i = 0; i < 6; ++i) {
        char body[16];
        snprintf(body, sizeof(body), "m%d", i);
        msg(f, body, m[i]);
    }
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);

    /* backfill from the last message: it first, then back in time, up to the limit */
    json_t *from = json_pack("[s]", m[5]), *out = NULL;
    assert_int_equal(ax_room_backfill(t, f->room_id, from, 3, &out), 0);
    assert_int_equal(json_array_size(out), 3);
    assert_string_equal(json_string_value(json_array_get(out, 0)), m[5]);
    assert_string_equal(json_string_value(json_array_get(out, 1)), m[4]);
    assert_string_equal(json_string_value(json_array_get(out, 2)), m[3]);
    json_decref(out);
    /* to the beginning of the room: 5 state events + 6 messages */
    assert_int_equal(ax_room_backfill(t, f->room_id, from, 100, &out), 0);
    assert_int_equal(json_array_size(out), 11);
    assert_string_equal(json_string_value(json_array_get(out, 10)), r.create);
    json_decref(out);
    json_decref(from);
    /* unknown starting points and events of another room give nothing */
    from = json_pack("[s, s]", "$unknown", "$other");
    assert_int_equal(ax_room_backfill(t, f->room_id, from, 10, &out), 0);
    assert_int_equal(json_array_size(out), 0);
    json_decref(out);
    json_decref(from);
    from = json_pack("[s]", m[5]);
    assert_int_equal(ax_room_backfill(t, "!elsewhere:a.test", from, 10, &out), 0);
    assert_int_equal(json_array_size(out), 0);
    json_decref(out);
    json_decref(from);

    /* missing events: between m1 (known to the asker) and m5 (its latest), oldest first, m5 excluded */
    json_t *earliest = json_pack("[s]", m[1]), *latest = json_pack("[s]", m[5]);
    assert_int_equal(ax_room_missing_events(t, f->room_id, earliest, latest, 10, 0, &out), 0);
    assert_int_equal(json_array_size(out), 3);
    assert_string_equal(json_string_value(json_array_get(out, 0)), m[2]);
    assert_string_equal(json_string_value(json_array_get(out, 2)), m[4]);
    json_decref(out);
    /* limited: the closest to 'latest' are found first */
    assert_int_equal(ax_room_missing_events(t, f->room_id, earliest, latest, 2, 0, &out), 0);
    assert_int_equal(json_array_size(out), 2);
    assert_string_equal(json_string_value(json_array_get(out, 0)), m[3]);
    assert_string_equal(json_string_value(json_array_get(out, 1)), m[4]);
    json_decref(out);
    /* min_depth stops the walk */
    json_t *pdu = NULL;
    assert_int_equal(ax_db_event_get(t, m[4], &pdu, NULL), 0);
    int64_t d4 = json_integer_value(json_object_get(pdu, "depth"));
    json_decref(pdu);
    json_decref(earliest);
    earliest = json_array();
    assert_int_equal(ax_room_missing_events(t, f->room_id, earliest, latest, 10, d4 - 1, &out), 0);
    assert_int_equal(json_array_size(out), 2); /* m3 and m4 */
    json_decref(out);
    json_decref(earliest);
    json_decref(latest);
    ax_db_read_end(t);
}

static void test_auth_chain_v12_implies_create(void **state)
{
    fixture_t *f = *state;
    room_ids_t r;
    room(f, &r, "shared");
    char m[256];
    msg(f, "hi", m);
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    json_t *pdu = NULL;
    assert_int_equal(ax_db_event_get(t, m, &pdu, NULL), 0);
    assert_false(contains(json_object_get(pdu, "auth_events"), r.create)); /* v12 events do not list it */
    json_decref(pdu);
    json_t *ids = json_pack("[s]", m), *chain = NULL;
    assert_int_equal(ax_room_auth_chain(t, f->rv, f->room_id, ids, &chain), 0);
    assert_true(contains(chain, r.create));
    assert_true(contains(chain, r.alice));
    json_decref(chain);
    json_decref(ids);
    ax_db_read_end(t);
}

static void test_federation_format(void **state)
{
    (void)state;
    json_t *pdu = json_pack("{s:s, s:{s:s}, s:{s:s}, s:s}", "type", "m.room.message", "content", "body", "x",
                            "unsigned", "io.axon.txn", "secret", "origin", "a.test");
    json_t *out = ax_event_federation_format(pdu);
    assert_null(json_object_get(out, "unsigned"));
    assert_non_null(json_object_get(out, "origin"));   /* covered by the origin's hashes: kept */
    assert_non_null(json_object_get(pdu, "unsigned")); /* the stored copy is untouched */
    json_decref(out);
    json_decref(pdu);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_acl_order),
        cmocka_unit_test(test_acl_ip_literals),
        cmocka_unit_test(test_acl_malformed),
        cmocka_unit_test(test_federation_format),
        cmocka_unit_test_setup_teardown(test_visibility_joined, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_visibility_shared_and_world_readable, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_visibility_invited, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_rejected_never_visible, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_outlier_judged_by_current_state, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_room_acl_and_federate, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_non_federating_room, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_state_before_and_auth_chain, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_state_before_with_outlier_prev_events, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_backfill_and_missing_events, setup_v10, teardown),
        cmocka_unit_test_setup_teardown(test_auth_chain_v12_implies_create, setup_v12, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
