/*
 * rooms.c -- the local event pipeline (DESIGN.md "Events and rooms"):
 * build a PDU on the room's current state, check it with the auth rules
 * (core/auth_rules.c, the same code that checks federated events), sign it
 * and store it with every index.  Also the client event format.
 *
 * Runs on the writer thread: the room's state cannot change between
 * building an event and storing it, so prev_events and auth_events are
 * always the current ones.
 */
#include "core/rooms.h"
#include "core/rooms_internal.h"
#include "core/events.h"
#include "core/push.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PREV_EVENTS 10
#define MAX_EXTREMITIES 64
#define EVENT_SIZE_MAX  65536

const ax_room_version_t *ax_room_version_of(ax_txn_t *txn, const char *room_id)
{
    json_t *room = NULL;
    if (ax_db_room_get(txn, room_id, &room) != 0)
        return NULL;
    const ax_room_version_t *rv = ax_room_version_get(json_string_value(json_object_get(room, "room_version")));
    json_decref(room);
    return rv;
}

json_t *ax_room_state_content(ax_txn_t *txn, const char *room_id, const char *type, const char *state_key)
{
    char eid[256];
    json_t *ev = NULL;
    if (ax_db_state_get(txn, room_id, type, state_key, eid, sizeof(eid)) != 0 ||
        ax_db_event_get(txn, eid, &ev, NULL) != 0)
        return NULL;
    json_t *content = json_incref(json_object_get(ev, "content"));
    json_decref(ev);
    return content;
}

/* ---- current-state lookups for the auth rules ---- */

/* The cache is {"ev": {type: {state_key: event | null}}, "id": {type: {state_key: event_id}}}:
 * the events stay exactly as stored, since the auth rules may hash them. */
static json_t *cache_slot(ax_room_lookup_t *lk, const char *part, const char *type)
{
    if (lk->cache == NULL)
        lk->cache = json_pack("{s:{}, s:{}}", "ev", "id");
    json_t *p = json_object_get(lk->cache, part);
    json_t *slot = json_object_get(p, type);
    if (slot == NULL) {
        slot = json_object();
        json_object_set_new(p, type, slot);
    }
    return slot;
}

/* Loads (and caches) the current state event for (type, state_key); NULL when unset. */
static const json_t *lookup_load(ax_room_lookup_t *lk, const char *type, const char *state_key)
{
    json_t *evs = cache_slot(lk, "ev", type);
    json_t *hit = json_object_get(evs, state_key);
    if (hit != NULL)
        return json_is_null(hit) ? NULL : hit;
    json_t *ev = NULL;
    char eid[256];
    bool found;
    if (lk->map != NULL) {
        const char *id = ax_state_map_get(lk->map, type, state_key);
        found = id != NULL && snprintf(eid, sizeof(eid), "%s", id) < (int)sizeof(eid);
    } else {
        found = lk->room_id != NULL && ax_db_state_get(lk->txn, lk->room_id, type, state_key, eid, sizeof(eid)) == 0;
    }
    if (found && ax_db_event_get_shared(lk->txn, eid, &ev) == 0)
        json_object_set_new(cache_slot(lk, "id", type), state_key, json_string(eid));
    json_object_set_new(evs, state_key, ev != NULL ? ev : json_null());
    return ev;
}

const json_t *ax_room_lookup(void *arg, const char *type, const char *state_key)
{
    return lookup_load(arg, type, state_key);
}

const char *ax_room_lookup_id(ax_room_lookup_t *lk, const char *type, const char *state_key)
{
    if (lookup_load(lk, type, state_key) == NULL)
        return NULL;
    return json_string_value(json_object_get(cache_slot(lk, "id", type), state_key));
}

void ax_room_lookup_dispose(ax_room_lookup_t *lk)
{
    json_decref(lk->cache);
    lk->cache = NULL;
}

/* The auth events selection (spec: Server-Server API "Auth events selection"),
 * from core/auth_rules.c, filled with the current state's event IDs. */
static json_t *select_auth_events(ax_room_lookup_t *c, const ax_room_version_t *rv, const json_t *pdu)
{
    json_t *auth = json_array();
    ax_state_key_t keys[AX_AUTH_TYPES_MAX];
    size_t n = 0;
    if (ax_auth_event_types(rv, pdu, keys, &n) != 0)
        return auth;
    for (size_t i = 0; i < n; ++i) {
        const char *eid = ax_room_lookup_id(c, keys[i].type, keys[i].state_key);
        if (eid == NULL)
            continue;
        bool dup = false;
        size_t k;
        json_t *v;
        json_array_foreach(auth, k, v)
        {
            dup = dup || ax_streq(json_string_value(v), eid);
        }
        if (!dup)
            json_array_append_new(auth, json_string(eid));
    }
    return auth;
}

/* ---- storing ---- */

/* The room's forward extremities: the first MAX_PREV_EVENTS become prev_events,
 * the rest stay extremities beside the new event. */
typedef struct st_prev_t {
    char ids[MAX_EXTREMITIES][256];
    size_t n;
} prev_t;

static int collect_prev(void *arg, const char *event_id)
{
    prev_t *p = arg;
    if (p->n < MAX_EXTREMITIES)
        snprintf(p->ids[p->n++], sizeof(p->ids[0]), "%s", event_id);
    return 0;
}

/* Keeps the server-local unsigned data of a state event: what it replaced. */
static void note_replaced_state(ax_room_lookup_t *c, const ax_draft_t *d, json_t *local_unsigned)
{
    const json_t *old = ax_room_lookup(c, d->type, d->state_key);
    const char *old_id = ax_room_lookup_id(c, d->type, d->state_key);
    if (old == NULL || old_id == NULL)
        return;
    json_object_set_new(local_unsigned, "replaces_state", json_string(old_id));
    json_object_set(local_unsigned, "prev_content", json_object_get(old, "content"));
    json_object_set(local_unsigned, "prev_sender", json_object_get(old, "sender"));
}

static int store_indexes(ax_txn_t *txn, const ax_room_version_t *rv, json_t *room, const char *room_id,
                         const char *event_id, json_t *pdu, const ax_draft_t *d, uint64_t pos, const prev_t *prev)
{
    int rc;
    const char *type = d->type;
    bool is_state = d->state_key != NULL;
    uint64_t group = (uint64_t)json_integer_value(json_object_get(room, "state_group"));

    if (is_state) {
        if ((rc = ax_db_state_put(txn, room_id, type, d->state_key, event_id)) != 0)
            return rc;
        json_t *delta = json_pack("{s:{s:s}}", type, d->state_key, event_id);
        rc = ax_db_stategroup_new(txn, group, delta, &group);
        json_decref(delta);
        if (rc != 0)
            return rc;
        json_object_set_new(room, "state_group", json_integer((json_int_t)group));
    }
    if ((rc = ax_db_event_stategroup_put(txn, event_id, group)) != 0)
        return rc;
    if ((rc = ax_db_timeline_add(txn, room_id, pos, event_id)) != 0)
        return rc;
    const char *ext[MAX_EXTREMITIES];
    size_t next = 0;
    for (size_t i = MAX_PREV_EVENTS; i < prev->n && next < MAX_EXTREMITIES - 1; ++i)
        ext[next++] = prev->ids[i];
    ext[next++] = event_id;
    if ((rc = ax_db_extremities_set(txn, room_id, ext, next)) != 0)
        return rc;

    if (is_state && strcmp(type, "m.room.member") == 0) {
        const char *m = json_string_value(json_object_get(d->content, "membership"));
        if (m != NULL && (rc = ax_db_membership_put(txn, room_id, d->state_key, m, event_id, pos)) != 0)
            return rc;
    }
    if (is_state && strcmp(type, "m.room.history_visibility") == 0 && d->state_key[0] == '\0') {
        const char *hv = json_string_value(json_object_get(d->content, "history_visibility"));
        if (hv != NULL && (rc = ax_db_visibility_put(txn, room_id, pos, hv)) != 0)
            return rc;
    }
    (void)rv;
    (void)pdu;
    return ax_room_index_content(txn, room_id, pos, event_id, d->sender, d->content);
}

int ax_room_index_content(ax_txn_t *txn, const char *room_id, uint64_t pos, const char *event_id, const char *sender,
                          const json_t *content)
{
    int rc;
    json_t *rel = json_object_get(content, "m.relates_to");
    const char *rel_type = json_string_value(json_object_get(rel, "rel_type"));
    const char *parent = json_string_value(json_object_get(rel, "event_id"));
    if (rel_type != NULL && parent != NULL && (rc = ax_db_relation_put(txn, parent, rel_type, pos, event_id)) != 0)
        return rc;
    if (ax_streq(rel_type, "m.thread") && parent != NULL &&
        ((rc = ax_db_thread_touch(txn, room_id, parent, pos)) != 0 ||
         (rc = ax_db_thread_note(txn, parent, event_id, sender)) != 0))
        return rc;
    return 0; /* the full-text index follows on its own (core/search.c) */
}

/* Applies a redaction to its target, if the target is in the same room and
 * the spec's "Handling redactions" rules say it applies. */
int ax_room_apply_redaction(ax_txn_t *txn, const ax_room_version_t *rv, ax_room_lookup_t *lk, const char *room_id,
                            const char *target, const json_t *redaction, json_t *redaction_client)
{
    json_t *ev = NULL;
    ax_event_rec_t rec;
    if (ax_db_event_get(txn, target, &ev, &rec) != 0)
        return 0; /* unknown target: the redaction still stands, as an event */
    int rc = 0;
    if (strcmp(rec.room_id, room_id) == 0 && (rec.flags & AX_EVENT_F_REDACTED) == 0 &&
        ax_auth_redaction_applies(rv, redaction, ev, ax_room_lookup, lk) == 0) {
        json_t *red = ax_event_redact(ev, rv);
        json_t *uns = json_object();
        /* keep what is ours to keep: where it came from, and why it is redacted */
        json_t *old_uns = json_object_get(ev, "unsigned");
        json_t *txnid = json_object_get(old_uns, "io.axon.txn");
        if (txnid != NULL)
            json_object_set(uns, "io.axon.txn", txnid);
        json_object_set(uns, "redacted_because", redaction_client);
        json_object_set_new(red, "unsigned", uns);
        char room[256];
        snprintf(room, sizeof(room), "%s", rec.room_id);
        rc = ax_db_event_put(txn, target, room, rec.pos, rec.flags | AX_EVENT_F_REDACTED, red);
        json_decref(red);
    }
    json_decref(ev);
    return rc;
}

/* The unsigned PDU for 'd' on the room's extremities 'prev' and current state (cache). */
static json_t *build_pdu(ax_room_lookup_t *cache, const ax_origin_t *o, const ax_room_version_t *rv,
                         const ax_draft_t *d, const json_t *room, const prev_t *prev, bool is_create)
{
    json_t *prev_events = json_array();
    for (size_t i = 0; i < prev->n && i < MAX_PREV_EVENTS; ++i)
        json_array_append_new(prev_events, json_string(prev->ids[i]));
    json_int_t depth = json_integer_value(json_object_get(room, "depth")) + 1;
    json_t *pdu = json_pack("{s:O, s:I, s:I, s:o, s:s, s:s}", "content", d->content, "depth", depth, "origin_server_ts",
                            (json_int_t)(d->ts != 0 ? d->ts : ax_now_ms()), "prev_events", prev_events, "sender",
                            d->sender, "type", d->type);
    if (pdu == NULL)
        return NULL;
    if (d->room_id != NULL && !(is_create && rv->room_id_from_create))
        json_object_set_new(pdu, "room_id", json_string(d->room_id));
    if (d->state_key != NULL)
        json_object_set_new(pdu, "state_key", json_string(d->state_key));
    if (!rv->msc3989_redact_origin)
        json_object_set_new(pdu, "origin", json_string(o->server_name));
    if (d->redacts != NULL && !rv->msc2176_redaction_rules)
        json_object_set_new(pdu, "redacts", json_string(d->redacts)); /* v11 moved it into content */
    json_object_set_new(pdu, "auth_events", select_auth_events(cache, rv, pdu));
    return pdu;
}

int ax_room_build(ax_txn_t *txn, const ax_origin_t *o, const ax_draft_t *d, json_t **out,
                  const ax_room_version_t **rv_out)
{
    json_t *room = NULL;
    if (d->room_id == NULL || ax_db_room_get(txn, d->room_id, &room) != 0)
        return AX_ENOTFOUND;
    const ax_room_version_t *rv = ax_room_version_get(json_string_value(json_object_get(room, "room_version")));
    prev_t *prev = ax_calloc(1, sizeof(*prev));
    ax_room_lookup_t cache = {.txn = txn, .room_id = d->room_id};
    int rc = rv == NULL ? AX_EIO : ax_db_extremities_foreach(txn, d->room_id, collect_prev, prev);
    if (rc == 0 && (*out = build_pdu(&cache, o, rv, d, room, prev, false)) == NULL)
        rc = AX_EINVAL;
    if (rc == 0 && rv_out != NULL)
        *rv_out = rv;
    ax_room_lookup_dispose(&cache);
    free(prev);
    json_decref(room);
    return rc;
}

int ax_room_send(ax_txn_t *txn, const ax_origin_t *o, const ax_draft_t *d, ax_sent_t *out, char *reason, size_t rlen)
{
    json_t *room = NULL, *pdu = NULL, *local = NULL;
    ax_room_lookup_t cache = {.txn = txn, .room_id = d->room_id};
    const ax_room_version_t *rv;
    bool is_create = strcmp(d->type, "m.room.create") == 0;
    int rc;
    reason[0] = '\0';

    if (is_create) {
        rv = ax_room_version_get(json_string_value(json_object_get(d->content, "room_version")));
        if (rv == NULL) {
            snprintf(reason, rlen, "unsupported room version");
            return AX_EINVAL;
        }
        room = json_pack("{s:s, s:I, s:i, s:i, s:I}", "room_version", rv->id, "created_ts", (json_int_t)ax_now_ms(),
                         "depth", 0, "state_group", 0, "last_pos", (json_int_t)0);
    } else {
        if (d->room_id == NULL || ax_db_room_get(txn, d->room_id, &room) != 0)
            return AX_ENOTFOUND;
        rv = ax_room_version_get(json_string_value(json_object_get(room, "room_version")));
        if (rv == NULL) {
            rc = AX_EIO;
            goto out;
        }
    }

    /* the PDU */
    prev_t prev = {.n = 0};
    if (!is_create && (rc = ax_db_extremities_foreach(txn, d->room_id, collect_prev, &prev)) != 0)
        goto out;
    if ((pdu = build_pdu(&cache, o, rv, d, room, &prev, is_create)) == NULL) {
        rc = AX_EINVAL;
        goto out;
    }

    if (rv->strict_canonical_json && ax_cjson_check_strict(pdu) != 0) {
        snprintf(reason, rlen, "event contains floats or integers out of range");
        rc = AX_EINVAL;
        goto out;
    }

    /* signed before the auth rules look at it: a restricted join must carry our signature */
    if ((rc = ax_event_sign_id(pdu, rv, o->server_name, o->key, out->event_id, sizeof(out->event_id))) != 0) {
        snprintf(reason, rlen, "event cannot be encoded as canonical JSON");
        goto out;
    }

    /* the auth rules, against the current state */
    if ((rc = ax_auth_check(rv, pdu, ax_room_lookup, &cache, reason, rlen)) != 0)
        goto out;
    ax_buf_t size = AX_BUF_INIT;
    ax_cjson_encode(pdu, &size);
    bool too_big = size.len > EVENT_SIZE_MAX;
    ax_buf_dispose(&size);
    if (too_big) {
        snprintf(reason, rlen, "event is larger than 65536 bytes");
        rc = AX_ETOOBIG;
        goto out;
    }
    if (out->event_id[0] == '\0' && (rc = ax_event_compute_id(pdu, rv, out->event_id, sizeof(out->event_id))) != 0)
        goto out; /* v1/v2: not derived, so not ours to make */

    if (is_create) {
        if (rv->room_id_from_create) {
            /* the room ID is the create event's hash: two rooms created by the same user in the
             * same millisecond would be one room.  Move the timestamp on until the ID is new. */
            json_t *existing = NULL;
            for (int tries = 0; tries < 1000; ++tries) {
                snprintf(out->room_id, sizeof(out->room_id), "!%s", out->event_id + 1);
                if (ax_db_room_get(txn, out->room_id, &existing) != 0)
                    break;
                json_decref(existing);
                existing = NULL;
                json_int_t ts = json_integer_value(json_object_get(pdu, "origin_server_ts"));
                json_object_set_new(pdu, "origin_server_ts", json_integer(ts + 1));
                if ((rc = ax_event_sign_id(pdu, rv, o->server_name, o->key, out->event_id, sizeof(out->event_id))) != 0)
                    goto out;
            }
            if (existing != NULL || ax_db_room_get(txn, out->room_id, &existing) == 0) {
                json_decref(existing);
                rc = AX_ECONFLICT;
                goto out;
            }
        } else {
            snprintf(out->room_id, sizeof(out->room_id), "%s", d->room_id);
        }
        json_t *creators = json_pack("[s]", d->sender);
        json_t *extra = json_object_get(d->content, "additional_creators");
        if (rv->privileged_creators && json_is_array(extra))
            json_array_extend(creators, extra);
        json_object_set_new(room, "creators", creators);
        json_object_set(room, "federate",
                        json_object_get(d->content, "m.federate") ? json_object_get(d->content, "m.federate")
                                                                  : json_true());
        cache.room_id = NULL;
    } else {
        snprintf(out->room_id, sizeof(out->room_id), "%s", d->room_id);
    }

    /* server-local unsigned data lives with the stored PDU */
    local = d->unsigned_local != NULL ? json_deep_copy(d->unsigned_local) : json_object();
    if (d->state_key != NULL)
        note_replaced_state(&cache, d, local);
    if (json_object_size(local) != 0)
        json_object_set(pdu, "unsigned", local);

    out->pos = ax_txn_next_stream_pos(txn);
    ax_draft_t stored = *d;
    stored.room_id = out->room_id;
    if ((rc = ax_db_event_put(txn, out->event_id, out->room_id, out->pos, d->state_key ? AX_EVENT_F_STATE : 0, pdu)) !=
            0 ||
        (rc = store_indexes(txn, rv, room, out->room_id, out->event_id, pdu, &stored, out->pos, &prev)) != 0)
        goto out;

    if (strcmp(d->type, "m.room.redaction") == 0) {
        const char *target = d->redacts;
        if (target != NULL) {
            json_t *client = ax_event_client_format(pdu, out->event_id, NULL, NULL, 0);
            json_object_del(json_object_get(client, "unsigned"), "age");
            rc = ax_room_apply_redaction(txn, rv, &cache, out->room_id, target, pdu, client);
            json_decref(client);
            if (rc != 0)
                goto out;
        }
    }

    json_object_set_new(room, "depth",
                        json_object_get(pdu, "depth") ? json_incref(json_object_get(pdu, "depth")) : json_integer(0));
    json_object_set_new(room, "last_pos", json_integer((json_int_t)out->pos));
    if ((rc = ax_db_room_put(txn, out->room_id, room)) != 0)
        goto out;

    /* push rules of the local members: their counts commit with the event */
    ax_push_t *push = ax_push_of(txn);
    if (push != NULL)
        rc = ax_push_event(push, txn, rv, out->room_id, out->event_id, out->pos,
                           (uint64_t)json_integer_value(json_object_get(room, "state_group")), pdu);
    /* the other servers in the room get it: queued in this very transaction, so an event a client
     * was told is stored cannot be lost for them */
    if (rc == 0 && !json_is_false(json_object_get(room, "federate")))
        rc = ax_room_fanout_pdu(txn, out->room_id, out->event_id, pdu, o->server_name, NULL);

out:
    if (rc != 0)
        out->event_id[0] = '\0'; /* no event was stored */
    ax_room_lookup_dispose(&cache);
    json_decref(local);
    json_decref(pdu);
    json_decref(room);
    return rc;
}

/* ---- client format ---- */

json_t *ax_event_client_format(const json_t *pdu, const char *event_id, const char *user_id, const char *device_id,
                               uint64_t now_ms)
{
    static const char *const keep[] = {"content", "origin_server_ts", "room_id", "sender",
                                       "type",    "state_key",        "redacts"};
    json_t *out = json_object();
    for (size_t i = 0; i < AX_ARRAY_SIZE(keep); ++i) {
        json_t *v = json_object_get(pdu, keep[i]);
        if (v != NULL)
            json_object_set(out, keep[i], v);
    }
    json_object_set_new(out, "event_id", json_string(event_id));
    if (json_object_get(out, "content") == NULL)
        json_object_set_new(out, "content", json_object());
    /* v11 rooms put redacts in content; clients of older versions read it at the top level */
    if (ax_streq(json_string_value(json_object_get(pdu, "type")), "m.room.redaction") &&
        json_object_get(out, "redacts") == NULL) {
        json_t *r = json_object_get(json_object_get(pdu, "content"), "redacts");
        if (r != NULL)
            json_object_set(out, "redacts", r);
    }

    json_t *uns = json_object();
    json_t *local = json_object_get(pdu, "unsigned");
    json_t *v;
    if ((v = json_object_get(local, "prev_content")) != NULL)
        json_object_set(uns, "prev_content", v);
    if ((v = json_object_get(local, "replaces_state")) != NULL)
        json_object_set(uns, "replaces_state", v);
    if ((v = json_object_get(local, "prev_sender")) != NULL)
        json_object_set(uns, "prev_sender", v);
    if ((v = json_object_get(local, "redacted_because")) != NULL)
        json_object_set(uns, "redacted_because", v);
    if ((v = json_object_get(local, "invite_room_state")) != NULL)
        json_object_set(uns, "invite_room_state", v);
    json_t *txn = json_object_get(local, "io.axon.txn");
    if (txn != NULL && user_id != NULL && device_id != NULL &&
        ax_streq(json_string_value(json_object_get(pdu, "sender")), user_id) &&
        ax_streq(json_string_value(json_object_get(txn, "device")), device_id))
        json_object_set(uns, "transaction_id", json_object_get(txn, "txn_id"));
    json_int_t ts = json_integer_value(json_object_get(pdu, "origin_server_ts"));
    if (now_ms != 0)
        json_object_set_new(uns, "age", json_integer(now_ms > (uint64_t)ts ? (json_int_t)now_ms - ts : 0));
    json_object_set_new(out, "unsigned", uns);
    return out;
}

/* ---- server-side aggregations (spec: "Aggregations of child events") ---- */

static json_t *load_plain(ax_txn_t *txn, const char *event_id, const char *user_id, const char *device_id,
                          ax_event_rec_t *rec);

typedef struct st_agg_t {
    ax_txn_t *txn;
    const json_t *original;
    const char *user_id;
    char best[256];   /* m.replace: the newest valid edit */
    char latest[256]; /* m.thread: the newest reply */
    size_t count;
    bool participated;
    json_t *refs; /* m.reference */
} agg_t;

static int replace_cb(void *arg, const char *rel_type, uint64_t pos, const char *child)
{
    (void)rel_type, (void)pos;
    agg_t *a = arg;
    json_t *ev = NULL;
    ax_event_rec_t rec;
    if (ax_db_event_get(a->txn, child, &ev, &rec) != 0)
        return 0;
    /* a valid replacement: same sender and type, no state key on either, has m.new_content */
    bool ok = (rec.flags & AX_EVENT_F_REDACTED) == 0 &&
              json_equal(json_object_get(ev, "sender"), json_object_get(a->original, "sender")) &&
              json_equal(json_object_get(ev, "type"), json_object_get(a->original, "type")) &&
              json_object_get(ev, "state_key") == NULL && json_object_get(a->original, "state_key") == NULL &&
              (json_object_get(json_object_get(ev, "content"), "m.new_content") != NULL ||
               ax_streq(json_string_value(json_object_get(ev, "type")), "m.room.encrypted"));
    json_decref(ev);
    if (!ok)
        return 0;
    snprintf(a->best, sizeof(a->best), "%s", child);
    return 1; /* newest first: the first valid one wins */
}

static int reference_cb(void *arg, const char *rel_type, uint64_t pos, const char *child)
{
    (void)rel_type, (void)pos;
    agg_t *a = arg;
    json_array_append_new(a->refs, json_pack("{s:s}", "event_id", child));
    return json_array_size(a->refs) >= 50;
}

/* Adds unsigned.m.relations to 'ev' (client format) for the original event 'pdu'. */
static void add_aggregations(ax_txn_t *txn, json_t *ev, const json_t *pdu, const char *event_id, const char *user_id,
                             const char *device_id)
{
    json_t *rel = json_object_get(json_object_get(pdu, "content"), "m.relates_to");
    if (ax_streq(json_string_value(json_object_get(rel, "rel_type")), "m.replace"))
        return; /* edits are not themselves edited */
    json_t *relations = json_object();
    agg_t a = {.txn = txn, .original = pdu, .user_id = user_id};
    ax_db_relation_scan(txn, event_id, "m.replace", UINT64_MAX, true, replace_cb, &a);
    if (a.best[0] != '\0') {
        json_t *edit = load_plain(txn, a.best, user_id, device_id, NULL);
        if (edit != NULL)
            json_object_set_new(relations, "m.replace", edit);
    }
    /* the thread's summary, kept up to date as replies arrive (no walk through the replies) */
    uint64_t count = 0;
    if (ax_db_thread_summary(txn, event_id, &count, a.latest, sizeof(a.latest)) == 0 && count != 0) {
        a.count = count;
        a.participated = user_id != NULL && (ax_streq(json_string_value(json_object_get(pdu, "sender")), user_id) ||
                                             ax_db_thread_participant(txn, event_id, user_id));
    }
    if (a.count != 0) {
        json_t *latest = load_plain(txn, a.latest, user_id, device_id, NULL);
        if (latest != NULL)
            json_object_set_new(relations, "m.thread",
                                json_pack("{s:o, s:I, s:b}", "latest_event", latest, "count", (json_int_t)a.count,
                                          "current_user_participated", a.participated));
    }
    a.refs = json_array();
    ax_db_relation_scan(txn, event_id, "m.reference", 0, false, reference_cb, &a);
    if (json_array_size(a.refs) != 0)
        json_object_set_new(relations, "m.reference", json_pack("{s:O}", "chunk", a.refs));
    json_decref(a.refs);
    if (json_object_size(relations) != 0)
        json_object_set_new(json_object_get(ev, "unsigned"), "m.relations", relations);
    else
        json_decref(relations);
}

/*
 * unsigned.membership (spec v1.11, MSC4115; client_event.yaml): the
 * requesting user's membership at the event at 'pos' of 'room_id', the
 * event's own change included, "leave" when they had none.  One range
 * lookup in roomuser_pos_membership.  Outliers (pos 0) have no place in the
 * timeline to answer for: the spec lets servers leave it out, and we do.
 */
static void add_membership(ax_txn_t *txn, json_t *uns, const char *room_id, uint64_t pos, const char *user_id)
{
    char m[32];
    if (user_id == NULL || pos == 0 || !json_is_object(uns) ||
        ax_db_membership_at(txn, room_id, user_id, pos, m, sizeof(m)) != 0)
        return;
    json_object_set_new(uns, "membership", json_string(m[0] != '\0' ? m : "leave"));
}

/* The same for the redaction kept in unsigned.redacted_because, which is stored without it. */
static void add_redaction_membership(ax_txn_t *txn, json_t *uns, const char *user_id)
{
    json_t *because = json_object_get(uns, "redacted_because");
    const char *id = json_string_value(json_object_get(because, "event_id"));
    ax_event_rec_t rr;
    if (user_id == NULL || id == NULL || ax_db_event_get_raw(txn, id, &rr) != 0)
        return;
    /* the stored event's, shared with the event cache: change a copy */
    because = json_deep_copy(because);
    json_object_set_new(uns, "redacted_because", because);
    json_t *buns = json_object_get(because, "unsigned");
    if (buns == NULL) {
        buns = json_object();
        json_object_set_new(because, "unsigned", buns);
    }
    add_membership(txn, buns, rr.room_id, rr.pos, user_id);
}

/* Loads and formats an event for 'user_id'/'device_id'; with 'aggregate', adds unsigned.m.relations. */
static json_t *load_formatted(ax_txn_t *txn, const char *event_id, const char *user_id, const char *device_id,
                              ax_event_rec_t *rec, bool aggregate)
{
    /* what ax_event_client_format() and add_aggregations() read of the PDU: the rest of it
     * (hashes, signatures, auth and prev events) is not even parsed */
    static const char *const keys[] = {"content",   "origin_server_ts", "room_id",  "sender", "type",
                                       "state_key", "redacts",          "unsigned", NULL};
    json_t *pdu = NULL; /* read-only: shared with the thread's event cache */
    ax_event_rec_t r;
    if (ax_db_event_get_keys(txn, event_id, keys, &pdu, &r) != 0)
        return NULL;
    json_t *out = ax_event_client_format(pdu, event_id, user_id, device_id, ax_now_ms());
    if (json_object_get(out, "room_id") == NULL) /* v12 create events carry no room_id */
        json_object_set_new(out, "room_id", json_string(r.room_id));
    json_t *uns = json_object_get(out, "unsigned");
    add_membership(txn, uns, r.room_id, r.pos, user_id);
    if (json_object_get(uns, "redacted_because") != NULL)
        add_redaction_membership(txn, uns, user_id);
    if (aggregate && json_object_get(pdu, "state_key") == NULL && (r.flags & AX_EVENT_F_REDACTED) == 0)
        add_aggregations(txn, out, pdu, event_id, user_id, device_id);
    json_decref(pdu);
    if (rec != NULL)
        *rec = r;
    return out;
}

json_t *ax_event_load_client(ax_txn_t *txn, const char *event_id, const char *user_id, const char *device_id,
                             ax_event_rec_t *rec)
{
    return load_formatted(txn, event_id, user_id, device_id, rec, true);
}

/* The client format without aggregations (for the events inside them). */
static json_t *load_plain(ax_txn_t *txn, const char *event_id, const char *user_id, const char *device_id,
                          ax_event_rec_t *rec)
{
    return load_formatted(txn, event_id, user_id, device_id, rec, false);
}
