/*
 * roomfix.h -- a database with rooms for unit tests of what happens around
 * room events: a real LMDB environment in a temporary directory, the
 * writer, local events through ax_room_send (as a.test) and events of
 * other servers (b.test, c.test) built on the room's current state, signed
 * with their keys and taken in through ax_room_ingest.
 */
#ifndef AX_TEST_ROOMFIX_H
#define AX_TEST_ROOMFIX_H

#include "testutil.h"

#include "core/events.h"
#include "core/rooms.h"

#include <pthread.h>
#include <sodium.h>

typedef struct st_roomfix_t {
    char *dir;
    ax_db_t *db;
    ax_writer_t *writer;
    bool search;                  /* set before roomfix_open(): the writer keeps the full-text index */
    ax_search_indexer_t *indexer; /* then its indexer */
    ax_signing_key_t key_a, key_b, key_c;
    ax_origin_t a;
    const ax_room_version_t *rv;
    char room_id[256];
    /* the commit hook's "%fed:" keys since the last roomfix_take_notes() */
    pthread_mutex_t notes_mutex;
    json_t *notes;
} roomfix_t;

typedef struct st_roomfix_job_t {
    ax_wjob_t super;
    int (*fn)(ax_txn_t *txn, void *arg);
    void *arg;
} roomfix_job_t;

static int roomfix_job_apply(ax_wjob_t *job, ax_txn_t *txn)
{
    roomfix_job_t *j = (roomfix_job_t *)job;
    return j->fn(txn, j->arg);
}

/* Runs fn(txn, arg) on the writer and returns its result once committed. */
static inline int roomfix_write(roomfix_t *f, int (*fn)(ax_txn_t *txn, void *arg), void *arg)
{
    roomfix_job_t j = {.super = {.apply = roomfix_job_apply}, .fn = fn, .arg = arg};
    return ax_writer_run(f->writer, &j.super);
}

static void roomfix_hook(void *arg, const ax_commit_info_t *info)
{
    roomfix_t *f = arg;
    pthread_mutex_lock(&f->notes_mutex);
    for (size_t i = 0; i < info->nkeys; ++i)
        if (strncmp(info->keys[i], "%fed", 4) == 0)
            json_array_append_new(f->notes, json_string(info->keys[i]));
    pthread_mutex_unlock(&f->notes_mutex);
}

/* The "%fed..." keys committed since the last call (a new reference, sorted). */
static inline json_t *roomfix_take_notes(roomfix_t *f)
{
    pthread_mutex_lock(&f->notes_mutex);
    json_t *n = f->notes;
    f->notes = json_array();
    pthread_mutex_unlock(&f->notes_mutex);
    return n;
}

static inline void roomfix_open(roomfix_t *f)
{
    char err[256];
    ax_db_options_t o = {.path = f->dir, .map_size = 64 << 20, .sync = false};
    assert_int_equal(ax_db_open(&o, &f->db, err, sizeof(err)), 0);
    f->writer = ax_writer_new(f->db);
    ax_writer_set_commit_hook(f->writer, roomfix_hook, f);
    if (f->search)
        f->indexer = ax_search_indexer_new(f->writer);
    assert_int_equal(ax_writer_start(f->writer), 0);
}

static inline void roomfix_close(roomfix_t *f)
{
    ax_writer_stop(f->writer);
    ax_writer_free(f->writer);
    ax_search_indexer_free(f->indexer);
    ax_db_close(f->db);
    f->indexer = NULL;
    f->writer = NULL;
    f->db = NULL;
}

static inline roomfix_t *roomfix_new(const char *version)
{
    roomfix_t *f = calloc(1, sizeof(*f));
    f->dir = test_mkdtemp();
    pthread_mutex_init(&f->notes_mutex, NULL);
    f->notes = json_array();
    roomfix_open(f);
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, 1, sizeof(seed));
    ax_signing_key_from_seed(&f->key_a, "ed25519:a", seed);
    memset(seed, 2, sizeof(seed));
    ax_signing_key_from_seed(&f->key_b, "ed25519:b", seed);
    memset(seed, 3, sizeof(seed));
    ax_signing_key_from_seed(&f->key_c, "ed25519:c", seed);
    f->a = (ax_origin_t){"a.test", &f->key_a};
    f->rv = ax_room_version_get(version);
    return f;
}

static inline void roomfix_free(roomfix_t *f)
{
    if (f->writer != NULL)
        roomfix_close(f);
    ax_signing_key_dispose(&f->key_a);
    ax_signing_key_dispose(&f->key_b);
    ax_signing_key_dispose(&f->key_c);
    json_decref(f->notes);
    pthread_mutex_destroy(&f->notes_mutex);
    test_rm_rf(f->dir);
    free(f->dir);
    free(f);
}

/* ---- local events ---- */

typedef struct st_roomfix_send_t {
    roomfix_t *f;
    ax_draft_t d;
    ax_sent_t sent;
    char reason[256];
} roomfix_send_t;

static int roomfix_send_apply(ax_txn_t *txn, void *arg)
{
    roomfix_send_t *s = arg;
    return ax_room_send(txn, &s->f->a, &s->d, &s->sent, s->reason, sizeof(s->reason));
}

/* A local event of 'sender' (JSON 'content'); its ID into 'event_id' (256 bytes) when not NULL. */
static inline void roomfix_local(roomfix_t *f, const char *sender, const char *type, const char *state_key,
                                 const char *content, char *event_id)
{
    json_t *c = json_loads(content, 0, NULL);
    assert_non_null(c);
    roomfix_send_t s = {.f = f,
                        .d = {.room_id = f->room_id[0] ? f->room_id : NULL,
                              .sender = sender,
                              .type = type,
                              .state_key = state_key,
                              .content = c}};
    int rc = roomfix_write(f, roomfix_send_apply, &s);
    if (rc != 0)
        fail_msg("local %s: %d %s", type, rc, s.reason);
    if (f->room_id[0] == '\0')
        snprintf(f->room_id, sizeof(f->room_id), "%s", s.sent.room_id);
    if (event_id != NULL)
        snprintf(event_id, 256, "%s", s.sent.event_id);
    json_decref(c);
}

/* A public room of @alice:a.test, m.federate as given. */
static inline void roomfix_public_room(roomfix_t *f, bool federate)
{
    char content[256];
    snprintf(content, sizeof(content), "{\"room_version\":\"%s\"%s%s}", f->rv->id,
             f->rv->privileged_creators ? "" : ",\"creator\":\"@alice:a.test\"",
             federate ? "" : ",\"m.federate\":false");
    if (!f->rv->room_id_from_create)
        snprintf(f->room_id, sizeof(f->room_id), "!room%llu:a.test", (unsigned long long)ax_now_ms());
    roomfix_local(f, "@alice:a.test", "m.room.create", "", content, NULL);
    roomfix_local(f, "@alice:a.test", "m.room.member", "@alice:a.test", "{\"membership\":\"join\"}", NULL);
    roomfix_local(f, "@alice:a.test", "m.room.power_levels", "",
                  f->rv->privileged_creators ? "{\"users\":{},\"state_default\":50,\"kick\":50,\"ban\":50}"
                                             : "{\"users\":{\"@alice:a.test\":100},\"state_default\":50}",
                  NULL);
    roomfix_local(f, "@alice:a.test", "m.room.join_rules", "", "{\"join_rule\":\"public\"}", NULL);
}

/* ---- other servers' events ---- */

typedef struct st_roomfix_ingest_t {
    roomfix_t *f;
    const ax_signing_key_t *key;
    json_t *pdu;
    char event_id[256];
    ax_ingest_t out;
} roomfix_ingest_t;

static int roomfix_prev_cb(void *arg, const char *event_id)
{
    json_array_append_new(arg, json_string(event_id));
    return 0;
}

static int roomfix_ingest_apply(ax_txn_t *txn, void *arg)
{
    roomfix_ingest_t *in = arg;
    roomfix_t *f = in->f;
    json_t *pdu = json_deep_copy(in->pdu);
    json_t *room = NULL;
    assert_int_equal(ax_db_room_get(txn, f->room_id, &room), 0);
    json_object_set_new(pdu, "depth", json_integer(json_integer_value(json_object_get(room, "depth")) + 1));
    json_decref(room);
    json_t *prev = json_array(), *auth = json_array();
    ax_db_extremities_foreach(txn, f->room_id, roomfix_prev_cb, prev);
    json_object_set_new(pdu, "prev_events", prev);
    ax_room_lookup_t lk = {.txn = txn, .room_id = f->room_id};
    ax_state_key_t keys[AX_AUTH_TYPES_MAX];
    size_t n = 0;
    if (ax_auth_event_types(f->rv, pdu, keys, &n) == 0)
        for (size_t i = 0; i < n; ++i) {
            const char *id = ax_room_lookup_id(&lk, keys[i].type, keys[i].state_key);
            if (id != NULL)
                json_array_append_new(auth, json_string(id));
        }
    ax_room_lookup_dispose(&lk);
    json_object_set_new(pdu, "auth_events", auth);
    const char *server = ax_id_domain(json_string_value(json_object_get(pdu, "sender")));
    if (!f->rv->msc3989_redact_origin)
        json_object_set_new(pdu, "origin", json_string(server));
    int rc = ax_event_sign(pdu, f->rv, server, in->key);
    if (rc == 0)
        rc = ax_event_compute_id(pdu, f->rv, in->event_id, sizeof(in->event_id));
    if (rc == 0)
        rc = ax_room_ingest(txn, f->rv, f->room_id, in->event_id, pdu, NULL, &in->out);
    json_decref(pdu);
    return rc;
}

/* An event of another server ('key' signs it as the sender's server), accepted into the room. */
static inline void roomfix_remote(roomfix_t *f, const ax_signing_key_t *key, const char *sender, const char *type,
                                  const char *state_key, const char *content, char *event_id)
{
    json_t *pdu = json_pack("{s:s, s:s, s:s, s:o, s:I}", "type", type, "sender", sender, "room_id", f->room_id,
                            "content", json_loads(content, 0, NULL), "origin_server_ts", (json_int_t)ax_now_ms());
    if (state_key != NULL)
        json_object_set_new(pdu, "state_key", json_string(state_key));
    roomfix_ingest_t in = {.f = f, .key = key, .pdu = pdu};
    int rc = roomfix_write(f, roomfix_ingest_apply, &in);
    if (rc != 0 || in.out.outcome != AX_INGEST_ACCEPTED)
        fail_msg("remote %s: rc %d outcome %d %s", type, rc, in.out.outcome, in.out.reason);
    if (event_id != NULL)
        snprintf(event_id, 256, "%s", in.event_id);
    json_decref(pdu);
}

/* A remote user's join. */
static inline void roomfix_remote_join(roomfix_t *f, const ax_signing_key_t *key, const char *user)
{
    roomfix_remote(f, key, user, "m.room.member", user, "{\"membership\":\"join\"}", NULL);
}

/* ---- the queue ---- */

typedef struct st_roomfix_items_t {
    json_t *list; /* [{seq, pdu: event_id} or {seq, edu: {...}}] */
} roomfix_items_t;

static int roomfix_item_cb(void *arg, const ax_fedq_item_t *it)
{
    json_t *row = json_pack("{s:I}", "seq", (json_int_t)it->seq);
    if (it->kind == AX_FEDQ_PDU) {
        json_object_set_new(row, "pdu", json_string(it->event_id));
        json_object_set_new(row, "room", json_string(it->room_id));
    } else {
        json_object_set_new(row, "edu", json_loadb(it->edu, it->edu_len, 0, NULL));
    }
    json_array_append_new(arg, row);
    return 0;
}

/* The items queued for 'dest' after seq 'after' (a new reference). */
static inline json_t *roomfix_queue(roomfix_t *f, const char *dest, uint64_t after)
{
    ax_txn_t *t;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    json_t *list = json_array();
    assert_true(ax_db_fedq_scan(t, dest, after, roomfix_item_cb, list) >= 0);
    ax_db_read_end(t);
    return list;
}

/* The queue record of 'dest' (zeros when it has none). */
static inline ax_fedq_state_t roomfix_qstate(roomfix_t *f, const char *dest)
{
    ax_txn_t *t;
    ax_fedq_state_t st;
    assert_int_equal(ax_db_read_begin(f->db, &t), 0);
    if (ax_db_fedq_state(t, dest, &st) != 0)
        memset(&st, 0, sizeof(st));
    ax_db_read_end(t);
    return st;
}

#endif
