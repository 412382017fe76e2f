/*
 * ingest.c -- events from other servers into a room (spec: Server-Server
 * API "Checks performed on receipt of a PDU" steps 4 to 6, "Rejection",
 * "Soft failure"; DESIGN.md "Events and rooms": local and federated events
 * go through the same pipeline and the same auth rules).
 *
 * Runs on the writer inside its transaction.  The caller (federation/) has
 * already done what needs the network or the keyring: format, signatures,
 * content hashes (redacting on mismatch), and fetching the auth events and
 * the prev events or the state before the event.  Here:
 *
 *  1. auth against the event's own auth events (fail: rejected);
 *  2. the state before the event: the state after its one prev event, or
 *     state resolution over the states after each of them, or the state
 *     the caller fetched (a join, a gap); auth against it (fail: rejected);
 *  3. auth against the room's current state (fail: soft-failed: stored and
 *     usable by other events, but never shown to clients nor built upon);
 *  4. an accepted event joins the timeline at a new stream position, the
 *     forward extremities and the room's current state move on: the state
 *     after the event when it extends every extremity, else the resolution
 *     of the states after each extremity.
 *
 * Every event keeps its own state group (the state after it in the DAG,
 * the state before it when rejected); where the room's current state after
 * a timeline position differs from that (a resolved fork), roompos_stategroup
 * says so, for ax_room_state_at().
 */
#include "core/push.h"
#include "core/rooms_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_EXTREMITIES 64

/* ---- small helpers ---- */

static json_t *load_event(ax_txn_t *txn, const char *event_id, unsigned *flags)
{
    json_t *ev = NULL;
    ax_event_rec_t rec;
    if (ax_db_event_get(txn, event_id, &ev, &rec) != 0)
        return NULL;
    if (flags != NULL)
        *flags = rec.flags;
    return ev;
}

static json_t *stateres_fetch(void *arg, const char *event_id, bool *rejected)
{
    unsigned flags = 0;
    json_t *ev = load_event(arg, event_id, &flags);
    *rejected = (flags & AX_EVENT_F_REJECTED) != 0;
    return ev;
}

static json_t *load_group(ax_txn_t *txn, uint64_t group)
{
    json_t *map = NULL;
    if (group == 0 || ax_db_stategroup_load(txn, group, &map) != 0)
        return json_object();
    return map;
}

/* The delta turning state map 'from' into 'to': changed or new entries, and null for removed ones. */
static json_t *state_delta(const json_t *from, const json_t *to)
{
    json_t *delta = json_object();
    const char *type, *sk;
    json_t *keys, *eid;
    json_object_foreach((json_t *)to, type, keys)
    {
        json_object_foreach(keys, sk, eid)
        {
            const char *old = ax_state_map_get(from, type, sk);
            if (old != NULL && ax_streq(old, json_string_value(eid)))
                continue;
            json_t *slot = json_object_get(delta, type);
            if (slot == NULL)
                json_object_set_new(delta, type, slot = json_object());
            json_object_set(slot, sk, eid);
        }
    }
    json_object_foreach((json_t *)from, type, keys)
    {
        json_object_foreach(keys, sk, eid)
        {
            if (ax_state_map_get(to, type, sk) != NULL)
                continue;
            json_t *slot = json_object_get(delta, type);
            if (slot == NULL)
                json_object_set_new(delta, type, slot = json_object());
            json_object_set_new(slot, sk, json_null());
        }
    }
    return delta;
}

/* A new state group holding 'map', stored as a delta over 'base' (0: none). */
static int new_group(ax_txn_t *txn, uint64_t base, const json_t *map, uint64_t *out)
{
    json_t *base_map = load_group(txn, base);
    json_t *delta = state_delta(base_map, map);
    int rc = json_object_size(delta) == 0 && base != 0 ? (*out = base, 0) : ax_db_stategroup_new(txn, base, delta, out);
    json_decref(delta);
    json_decref(base_map);
    return rc;
}

/* Resolves the states of 'n' groups (state resolution of the room's version). */
static int resolve_groups(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const uint64_t *groups,
                          size_t n, json_t **out)
{
    if (n <= 1) {
        *out = n == 1 ? load_group(txn, groups[0]) : json_object();
        return 0;
    }
    json_t *maps[AX_STATERES_MAX_SETS] = {NULL};
    if (n > AX_STATERES_MAX_SETS)
        n = AX_STATERES_MAX_SETS;
    for (size_t i = 0; i < n; ++i)
        maps[i] = load_group(txn, groups[i]);
    int rc = ax_stateres_resolve(rv, room_id, (const json_t *const *)maps, n, NULL, stateres_fetch, txn, out);
    for (size_t i = 0; i < n; ++i)
        json_decref(maps[i]);
    return rc;
}

/* ---- the room record ---- */

/* A room first seen through federation (a join): its record, from the create event in 'state'. */
static int adopt_room(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const json_t *state,
                      json_t **room)
{
    const char *create_id = ax_state_map_get(state, "m.room.create", "");
    json_t *create = create_id != NULL ? load_event(txn, create_id, NULL) : NULL;
    if (create == NULL)
        return AX_ENOTFOUND;
    json_t *content = json_object_get(create, "content");
    json_t *creators = json_pack("[O]", json_object_get(create, "sender"));
    json_t *extra = json_object_get(content, "additional_creators");
    if (rv->privileged_creators && json_is_array(extra))
        json_array_extend(creators, extra);
    json_t *federate = json_object_get(content, "m.federate");
    *room = json_pack("{s:s, s:o, s:I, s:i, s:i, s:i, s:O}", "room_version", rv->id, "creators", creators, "created_ts",
                      (json_int_t)ax_now_ms(), "depth", 0, "state_group", 0, "last_pos", 0, "federate",
                      federate != NULL ? federate : json_true());
    json_decref(create);
    (void)room_id;
    return *room != NULL ? 0 : AX_EINVAL;
}

/* ---- auth ---- */

typedef struct st_auth_list_t {
    json_t *events; /* the auth events, plus the create event a v12 event does not list */
    bool rejected[AX_AUTH_TYPES_MAX + 4];
    size_t n; /* the listed ones, first in 'events' */
} auth_list_t;

/* Loads the events 'pdu' names as auth events; AX_ENOTFOUND (naming it in 'reason') when one is unknown. */
static int load_auth_events(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const json_t *pdu,
                            auth_list_t *a, char *reason, size_t rlen)
{
    a->events = json_array();
    a->n = 0;
    json_t *ids = json_object_get(pdu, "auth_events");
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        const char *aid = ax_event_ref_id(id); /* a string from v3, [id, hashes] in v1-2 */
        if (aid == NULL || a->n >= AX_ARRAY_SIZE(a->rejected) - 1) {
            snprintf(reason, rlen, "malformed auth_events");
            return AX_EINVAL;
        }
        unsigned flags = 0;
        json_t *ev = load_event(txn, aid, &flags);
        if (ev == NULL) {
            snprintf(reason, rlen, "%s", aid);
            return AX_ENOTFOUND;
        }
        a->rejected[a->n++] = (flags & AX_EVENT_F_REJECTED) != 0;
        json_array_append_new(a->events, ev);
    }
    if (rv->room_id_from_create && !ax_streq(json_string_value(json_object_get(pdu, "type")), "m.room.create")) {
        char create_id[256];
        json_t *create = NULL;
        if (ax_event_create_id_from_room_id(rv, room_id, create_id, sizeof(create_id)) != 0 ||
            (create = load_event(txn, create_id, NULL)) == NULL) {
            snprintf(reason, rlen, "%s", create_id);
            return AX_ENOTFOUND;
        }
        json_array_append_new(a->events, create);
    }
    return 0;
}

/* Steps 1 and 2 of the header: auth events, then the state before. */
static bool allowed(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const json_t *pdu,
                    const auth_list_t *a, const json_t *state_before, char *reason, size_t rlen)
{
    json_t *listed[AX_AUTH_TYPES_MAX + 4];
    for (size_t i = 0; i < a->n; ++i)
        listed[i] = json_array_get(a->events, i);
    if (ax_auth_check_auth_events(rv, pdu, (const json_t *const *)listed, a->rejected, a->n, reason, rlen) != 0 ||
        ax_auth_check(rv, pdu, ax_auth_lookup_list, a->events, reason, rlen) != 0)
        return false;
    if (state_before == NULL)
        return true;
    ax_room_lookup_t lk = {.txn = txn, .room_id = room_id, .map = state_before};
    bool ok = ax_auth_check(rv, pdu, ax_room_lookup, &lk, reason, rlen) == 0;
    ax_room_lookup_dispose(&lk);
    return ok;
}

/* ---- the state before an event ---- */

/* The state groups after each prev event; AX_ENOTFOUND (naming it) when one has none. */
static int prev_groups(ax_txn_t *txn, const json_t *pdu, uint64_t *groups, size_t *n, char *reason, size_t rlen)
{
    *n = 0;
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(pdu, "prev_events"), i, id)
    {
        uint64_t g;
        const char *pid = ax_event_ref_id(id);
        if (pid == NULL || ax_db_event_stategroup_get(txn, pid, &g) != 0) {
            snprintf(reason, rlen, "%s", pid != NULL ? pid : "?");
            return AX_ENOTFOUND;
        }
        bool dup = false;
        for (size_t k = 0; k < *n; ++k)
            dup = dup || groups[k] == g;
        if (!dup && *n < AX_STATERES_MAX_SETS)
            groups[(*n)++] = g;
    }
    return 0;
}

/* ---- accepted events: timeline, extremities, current state ---- */

typedef struct st_ext_t {
    char ids[MAX_EXTREMITIES][256];
    size_t n;
} ext_t;

static int collect_ext(void *arg, const char *event_id)
{
    ext_t *e = arg;
    if (e->n < MAX_EXTREMITIES)
        snprintf(e->ids[e->n++], sizeof(e->ids[0]), "%s", event_id);
    return 0;
}

static bool names_prev(const json_t *pdu, const char *event_id)
{
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(pdu, "prev_events"), i, id)
    {
        if (ax_streq(ax_event_ref_id(id), event_id))
            return true;
    }
    return false;
}

/* Writes the difference between two current states into the current-state indexes. */
static int apply_current_state(ax_txn_t *txn, const char *room_id, const json_t *old_map, const json_t *new_map,
                               uint64_t pos)
{
    json_t *delta = state_delta(old_map, new_map);
    const char *type, *sk;
    json_t *keys, *eid;
    int rc = 0;
    json_object_foreach(delta, type, keys)
    {
        json_object_foreach(keys, sk, eid)
        {
            if (rc != 0)
                break;
            if (json_is_null(eid)) {
                rc = ax_db_state_del(txn, room_id, type, sk);
                if (rc == AX_ENOTFOUND)
                    rc = 0;
                if (rc == 0 && strcmp(type, "m.room.member") == 0)
                    rc = ax_db_membership_put(txn, room_id, sk, "leave", "", pos);
                continue;
            }
            const char *id = json_string_value(eid);
            if ((rc = ax_db_state_put(txn, room_id, type, sk, id)) != 0)
                break;
            bool member = strcmp(type, "m.room.member") == 0;
            bool hv = strcmp(type, "m.room.history_visibility") == 0 && sk[0] == '\0';
            if (!member && !hv)
                continue;
            json_t *ev = load_event(txn, id, NULL);
            json_t *content = json_object_get(ev, "content");
            if (member) {
                const char *m = json_string_value(json_object_get(content, "membership"));
                if (m != NULL)
                    rc = ax_db_membership_put(txn, room_id, sk, m, id, pos);
            } else {
                const char *v = json_string_value(json_object_get(content, "history_visibility"));
                if (v != NULL)
                    rc = ax_db_visibility_put(txn, room_id, pos, v);
            }
            json_decref(ev);
        }
    }
    json_decref(delta);
    return rc;
}

/* The local unsigned data a client sees on a state event: what it replaced in the current state. */
static json_t *local_unsigned(ax_txn_t *txn, const char *room_id, const json_t *pdu)
{
    json_t *uns = json_object();
    const char *sk = json_string_value(json_object_get(pdu, "state_key"));
    const char *type = json_string_value(json_object_get(pdu, "type"));
    char old_id[256];
    if (sk == NULL || type == NULL || ax_db_state_get(txn, room_id, type, sk, old_id, sizeof(old_id)) != 0)
        return uns;
    json_t *old = load_event(txn, old_id, NULL);
    if (old != NULL) {
        json_object_set_new(uns, "replaces_state", json_string(old_id));
        json_object_set(uns, "prev_content", json_object_get(old, "content"));
        json_object_set(uns, "prev_sender", json_object_get(old, "sender"));
        json_decref(old);
    }
    return uns;
}

static int accept(ax_txn_t *txn, const ax_room_version_t *rv, json_t *room, const char *room_id, const char *event_id,
                  json_t *pdu, uint64_t group_after, uint64_t pos)
{
    int rc;
    if ((rc = ax_db_timeline_add(txn, room_id, pos, event_id)) != 0)
        return rc;

    /* forward extremities: the event replaces those it names */
    ext_t old = {.n = 0};
    if ((rc = ax_db_extremities_foreach(txn, room_id, collect_ext, &old)) != 0)
        return rc;
    const char *next[MAX_EXTREMITIES];
    uint64_t groups[MAX_EXTREMITIES];
    size_t n = 0;
    bool extends_all = true;
    for (size_t i = 0; i < old.n; ++i) {
        if (names_prev(pdu, old.ids[i]) || ax_streq(old.ids[i], event_id))
            continue;
        extends_all = false;
        if (n < MAX_EXTREMITIES - 1)
            next[n++] = old.ids[i];
    }
    next[n++] = event_id;
    if ((rc = ax_db_extremities_set(txn, room_id, next, n)) != 0)
        return rc;

    /* the room's current state: the event's own when it extends every extremity */
    uint64_t cur_group = (uint64_t)json_integer_value(json_object_get(room, "state_group"));
    json_t *old_map = load_group(txn, cur_group);
    json_t *new_map = NULL;
    uint64_t new_group_id = group_after;
    if (extends_all) {
        new_map = load_group(txn, group_after);
    } else {
        size_t ng = 0;
        for (size_t i = 0; i < n; ++i) {
            uint64_t g;
            if (ax_db_event_stategroup_get(txn, next[i], &g) == 0)
                groups[ng++] = g;
        }
        rc = resolve_groups(txn, rv, room_id, groups, ng, &new_map);
        if (rc == 0)
            rc = new_group(txn, cur_group, new_map, &new_group_id);
        if (rc == 0 && new_group_id != group_after)
            rc = ax_db_pos_stategroup_put(txn, room_id, pos, new_group_id);
    }
    if (rc == 0)
        rc = apply_current_state(txn, room_id, old_map, new_map, pos);
    json_decref(old_map);
    json_decref(new_map);
    if (rc != 0)
        return rc;

    const char *type = json_string_value(json_object_get(pdu, "type"));
    if ((rc = ax_room_index_content(txn, room_id, pos, event_id, json_string_value(json_object_get(pdu, "sender")),
                                    json_object_get(pdu, "content"))) != 0)
        return rc;
    if (strcmp(type, "m.room.redaction") == 0) {
        const char *target = json_string_value(json_object_get(pdu, "redacts"));
        if (target == NULL)
            target = json_string_value(json_object_get(json_object_get(pdu, "content"), "redacts"));
        if (target != NULL) {
            ax_room_lookup_t lk = {.txn = txn, .room_id = room_id};
            json_t *client = ax_event_client_format(pdu, event_id, NULL, NULL, 0);
            json_object_del(json_object_get(client, "unsigned"), "age");
            rc = ax_room_apply_redaction(txn, rv, &lk, room_id, target, pdu, client);
            json_decref(client);
            ax_room_lookup_dispose(&lk);
            if (rc != 0)
                return rc;
        }
    }

    json_int_t depth = json_integer_value(json_object_get(pdu, "depth"));
    if (depth > json_integer_value(json_object_get(room, "depth")))
        json_object_set_new(room, "depth", json_integer(depth));
    json_object_set_new(room, "last_pos", json_integer((json_int_t)pos));
    json_object_set_new(room, "state_group", json_integer((json_int_t)new_group_id));
    if ((rc = ax_db_room_put(txn, room_id, room)) != 0)
        return rc;
    /* spec (push): the rules of the local members run on events from other servers too */
    ax_push_t *push = ax_push_of(txn);
    if (push != NULL && (rc = ax_push_event(push, txn, rv, room_id, event_id, pos, new_group_id, pdu)) != 0)
        return rc;
    const char *sk = json_string_value(json_object_get(pdu, "state_key"));
    ax_room_notify_members(txn, room_id, strcmp(type, "m.room.member") == 0 ? sk : NULL);
    return 0;
}

/* ---- entry points ---- */

int ax_room_ingest_outlier(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const char *event_id,
                           const json_t *pdu, ax_ingest_t *out)
{
    memset(out, 0, sizeof(*out));
    ax_event_rec_t rec;
    if (ax_db_event_get_raw(txn, event_id, &rec) == 0) {
        out->outcome = (rec.flags & AX_EVENT_F_REJECTED) ? AX_INGEST_REJECTED : AX_INGEST_DUPLICATE;
        return 0;
    }
    auth_list_t a;
    int rc = load_auth_events(txn, rv, room_id, pdu, &a, out->reason, sizeof(out->reason));
    if (rc == 0) {
        bool ok = ax_streq(json_string_value(json_object_get(pdu, "type")), "m.room.create")
                      ? ax_auth_check(rv, pdu, ax_auth_lookup_list, a.events, out->reason, sizeof(out->reason)) == 0
                      : allowed(txn, rv, room_id, pdu, &a, NULL, out->reason, sizeof(out->reason));
        out->outcome = ok ? AX_INGEST_OUTLIER : AX_INGEST_REJECTED;
        json_t *stored = json_deep_copy(pdu);
        json_object_del(stored, "unsigned"); /* the sender's unsigned data is not ours to keep */
        unsigned flags =
            AX_EVENT_F_OUTLIER | (ax_event_is_state(pdu) ? AX_EVENT_F_STATE : 0) | (ok ? 0 : AX_EVENT_F_REJECTED);
        rc = ax_db_event_put(txn, event_id, room_id, 0, flags, stored);
        json_decref(stored);
    }
    json_decref(a.events);
    return rc;
}

int ax_room_ingest(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const char *event_id,
                   const json_t *pdu, const json_t *state_before, ax_ingest_t *out)
{
    memset(out, 0, sizeof(*out));
    ax_event_rec_t rec;
    if (ax_db_event_get_raw(txn, event_id, &rec) == 0 && (rec.flags & AX_EVENT_F_OUTLIER) == 0) {
        out->outcome = (rec.flags & AX_EVENT_F_REJECTED)      ? AX_INGEST_REJECTED
                       : (rec.flags & AX_EVENT_F_SOFT_FAILED) ? AX_INGEST_SOFT_FAILED
                                                              : AX_INGEST_DUPLICATE;
        out->pos = rec.pos;
        return 0;
    }
    bool is_create = ax_streq(json_string_value(json_object_get(pdu, "type")), "m.room.create");
    json_t *room = NULL, *before = NULL, *stored = NULL;
    auth_list_t a = {.events = NULL};
    int rc;

    /* the state before the event */
    uint64_t groups[AX_STATERES_MAX_SETS];
    size_t ng = 0;
    if (state_before != NULL) {
        before = json_deep_copy(state_before);
    } else if (is_create) {
        before = json_object();
    } else if ((rc = prev_groups(txn, pdu, groups, &ng, out->reason, sizeof(out->reason))) != 0 ||
               (rc = resolve_groups(txn, rv, room_id, groups, ng, &before)) != 0) {
        goto done;
    }

    if (ax_db_room_get(txn, room_id, &room) != 0) {
        if (is_create) {
            json_t *self = json_pack("{s:{s:s}}", "m.room.create", "", event_id);
            json_t *tmp = json_deep_copy(pdu);
            rc = ax_db_event_put(txn, event_id, room_id, 0, AX_EVENT_F_OUTLIER | AX_EVENT_F_STATE, tmp);
            json_decref(tmp);
            if (rc == 0)
                rc = adopt_room(txn, rv, room_id, self, &room);
            json_decref(self);
        } else {
            rc = adopt_room(txn, rv, room_id, before, &room);
        }
        if (rc != 0) {
            snprintf(out->reason, sizeof(out->reason), "the room's create event is unknown");
            goto done;
        }
    }

    if ((rc = load_auth_events(txn, rv, room_id, pdu, &a, out->reason, sizeof(out->reason))) != 0)
        goto done;
    bool ok = is_create ? ax_auth_check(rv, pdu, ax_auth_lookup_list, a.events, out->reason, sizeof(out->reason)) == 0
                        : allowed(txn, rv, room_id, pdu, &a, before, out->reason, sizeof(out->reason));
    bool soft_failed = false;
    if (ok && !is_create && json_integer_value(json_object_get(room, "last_pos")) != 0) {
        /* step 6: against the room's current state */
        ax_room_lookup_t lk = {.txn = txn, .room_id = room_id};
        soft_failed = ax_auth_check(rv, pdu, ax_room_lookup, &lk, out->reason, sizeof(out->reason)) != 0;
        ax_room_lookup_dispose(&lk);
    }

    /* the state after it (the state before, for a rejected event) */
    bool is_state = ax_event_is_state(pdu);
    json_t *after = json_deep_copy(before);
    if (ok && is_state) {
        const char *type = json_string_value(json_object_get(pdu, "type"));
        const char *sk = json_string_value(json_object_get(pdu, "state_key"));
        json_t *slot = json_object_get(after, type);
        if (slot == NULL)
            json_object_set_new(after, type, slot = json_object());
        json_object_set_new(slot, sk, json_string(event_id));
    }
    uint64_t group_after = 0;
    rc = new_group(txn, ng >= 1 ? groups[0] : 0, after, &group_after);
    json_decref(after);
    if (rc != 0)
        goto done;

    stored = json_deep_copy(pdu);
    json_object_del(stored, "unsigned");
    bool timeline = ok && !soft_failed;
    uint64_t pos = timeline ? ax_txn_next_stream_pos(txn) : 0;
    if (timeline && is_state) {
        json_t *uns = local_unsigned(txn, room_id, pdu);
        if (json_object_size(uns) != 0)
            json_object_set(stored, "unsigned", uns);
        json_decref(uns);
    }
    unsigned flags =
        (is_state ? AX_EVENT_F_STATE : 0) | (ok ? 0 : AX_EVENT_F_REJECTED) | (soft_failed ? AX_EVENT_F_SOFT_FAILED : 0);
    if ((rc = ax_db_event_put(txn, event_id, room_id, pos, flags, stored)) != 0 ||
        (rc = ax_db_event_stategroup_put(txn, event_id, group_after)) != 0)
        goto done;
    if (!ok) {
        out->outcome = AX_INGEST_REJECTED;
    } else if (soft_failed) {
        out->outcome = AX_INGEST_SOFT_FAILED;
    } else {
        out->outcome = AX_INGEST_ACCEPTED;
        out->pos = pos;
        out->reason[0] = '\0';
        rc = accept(txn, rv, room, room_id, event_id, stored, group_after, pos);
    }

done:
    json_decref(a.events);
    json_decref(stored);
    json_decref(before);
    json_decref(room);
    return rc;
}

/* ---- for answering other servers ---- */

int ax_room_state_before_event(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const json_t *pdu,
                               json_t **out)
{
    uint64_t groups[AX_STATERES_MAX_SETS];
    size_t n = 0;
    char missing[256];
    if (ax_streq(json_string_value(json_object_get(pdu, "type")), "m.room.create")) {
        *out = json_object();
        return 0;
    }
    int rc = prev_groups(txn, pdu, groups, &n, missing, sizeof(missing));
    return rc != 0 ? rc : resolve_groups(txn, rv, room_id, groups, n, out);
}

/* Appends the IDs 'pdu' lists as auth events to 'todo' (strings from v3, [id, hashes] pairs in v1-2), and the
 * create event a v12+ room ID implies. */
static void push_auth_events(const ax_room_version_t *rv, const char *room_id, const json_t *pdu, json_t *todo)
{
    size_t i;
    json_t *ref;
    json_array_foreach(json_object_get(pdu, "auth_events"), i, ref)
    {
        const char *id = ax_event_ref_id(ref);
        if (id != NULL)
            json_array_append_new(todo, json_string(id));
    }
    /* v12: no event lists the create event, which the room ID implies; it is still part of every chain */
    char create_id[256];
    if (rv->room_id_from_create && !ax_streq(json_string_value(json_object_get(pdu, "type")), "m.room.create") &&
        ax_event_create_id_from_room_id(rv, room_id, create_id, sizeof(create_id)) == 0)
        json_array_append_new(todo, json_string(create_id));
}

int ax_room_auth_chain(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const json_t *event_ids,
                       json_t **out)
{
    json_t *seen = json_object(), *todo = json_array(), *chain = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(event_ids, i, id)
    {
        json_t *ev = load_event(txn, json_string_value(id), NULL);
        if (ev != NULL)
            push_auth_events(rv, room_id, ev, todo);
        json_decref(ev);
    }
    /* breadth first over a growing list: only events stored here, of this room, not rejected */
    for (i = 0; i < json_array_size(todo); ++i) {
        const char *aid = json_string_value(json_array_get(todo, i));
        if (json_object_get(seen, aid) != NULL)
            continue;
        json_object_set_new(seen, aid, json_true());
        json_t *ev = NULL;
        ax_event_rec_t rec;
        if (ax_db_event_get(txn, aid, &ev, &rec) != 0)
            continue;
        if ((rec.flags & AX_EVENT_F_REJECTED) == 0 && strcmp(rec.room_id, room_id) == 0) {
            json_array_append_new(chain, json_string(aid));
            push_auth_events(rv, room_id, ev, todo);
        }
        json_decref(ev);
    }
    json_decref(seen);
    json_decref(todo);
    *out = chain;
    return 0;
}
