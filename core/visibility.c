/*
 * visibility.c -- who may see which events of a room (spec: Client-Server
 * API "History visibility"; Synapse's filter_events_for_client is the
 * reference behaviour).  Answered from two small indexes of positions --
 * membership changes per user and history_visibility changes per room --
 * so it costs two range lookups, never a walk through the room.  Also who
 * to wake about a room, and the room's state at a position.
 */
#include "core/rooms.h"

#include <string.h>

void ax_room_membership(ax_txn_t *txn, const char *room_id, const char *user_id, char *out, size_t cap)
{
    json_t *m = NULL;
    out[0] = '\0';
    if (ax_db_membership_get(txn, room_id, user_id, &m) == 0) {
        const char *v = json_string_value(json_object_get(m, "membership"));
        snprintf(out, cap, "%s", v != NULL ? v : "");
    }
    json_decref(m);
}

bool ax_room_user_can_see(ax_txn_t *txn, const char *room_id, const char *user_id, uint64_t pos)
{
    char hv[32], at[16];
    ax_db_visibility_at(txn, room_id, pos, hv, sizeof(hv));
    /* world_readable: everyone */
    if (strcmp(hv, "world_readable") == 0)
        return true;
    if (user_id == NULL)
        return false;
    /* joined when it happened (its own membership event included) */
    ax_db_membership_at(txn, room_id, user_id, pos, at, sizeof(at));
    if (strcmp(at, "join") == 0)
        return true;
    /* joined just before it: their own leave, kick or ban */
    if (pos > 0) {
        char before[16];
        ax_db_membership_at(txn, room_id, user_id, pos - 1, before, sizeof(before));
        if (strcmp(before, "join") == 0)
            return true;
    }
    /* invited when it happened, in an "invited" room */
    if (strcmp(hv, "invited") == 0 && strcmp(at, "invite") == 0)
        return true;
    /* "shared": all history is visible to current members */
    if (strcmp(hv, "shared") == 0) {
        char now[16];
        ax_room_membership(txn, room_id, user_id, now, sizeof(now));
        if (strcmp(now, "join") == 0)
            return true;
    }
    return false;
}

/* ---- state at a position ---- */

typedef struct st_first_t {
    char event_id[256];
    uint64_t pos;
    bool found;
} first_t;

static int first_cb(void *arg, uint64_t pos, const char *event_id)
{
    first_t *f = arg;
    snprintf(f->event_id, sizeof(f->event_id), "%s", event_id);
    f->pos = pos;
    f->found = true;
    return 1;
}

uint64_t ax_room_state_group_at(ax_txn_t *txn, const char *room_id, uint64_t pos)
{
    first_t f = {.found = false};
    uint64_t group = 0;
    ax_db_timeline_scan(txn, room_id, pos, true, first_cb, &f);
    /* the room's state then: the event's own state, unless its arrival resolved a fork */
    if (f.found && (ax_db_pos_stategroup_get(txn, room_id, f.pos, &group) == 0 ||
                    ax_db_event_stategroup_get(txn, f.event_id, &group) == 0))
        return group;
    return 0;
}

json_t *ax_room_state_at(ax_txn_t *txn, const char *room_id, uint64_t pos)
{
    uint64_t group = ax_room_state_group_at(txn, room_id, pos);
    json_t *map = NULL;
    if (group != 0 && ax_db_stategroup_load(txn, group, &map) == 0)
        return map;
    return json_object();
}

static int at_cb(void *arg, uint64_t pos, const char *event_id)
{
    first_t *f = arg;
    if (pos == f->pos) {
        snprintf(f->event_id, sizeof(f->event_id), "%s", event_id);
        f->found = true;
    }
    return 1;
}

json_t *ax_room_state_before(ax_txn_t *txn, const char *room_id, uint64_t pos)
{
    first_t earlier = {.found = false};
    if (pos > 0)
        ax_db_timeline_scan(txn, room_id, pos - 1, true, first_cb, &earlier);
    if (earlier.found || pos == 0)
        return ax_room_state_at(txn, room_id, pos - 1);
    /* nothing of the room before 'pos' in this server's timeline (a room joined over
     * federation starts at our join): the state after that first event, without it */
    first_t at = {.pos = pos, .found = false};
    ax_db_timeline_scan(txn, room_id, pos, false, at_cb, &at);
    uint64_t group = 0;
    json_t *map = NULL, *ev = NULL;
    if (!at.found || ax_db_event_stategroup_get(txn, at.event_id, &group) != 0 || group == 0 ||
        ax_db_stategroup_load(txn, group, &map) != 0)
        return json_object();
    if (ax_db_event_get(txn, at.event_id, &ev, NULL) == 0) {
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *sk = json_string_value(json_object_get(ev, "state_key"));
        const char *replaced = json_string_value(json_object_get(json_object_get(ev, "unsigned"), "replaces_state"));
        json_t *slot = type != NULL && sk != NULL ? json_object_get(map, type) : NULL;
        if (slot != NULL && ax_streq(json_string_value(json_object_get(slot, sk)), at.event_id)) {
            if (replaced != NULL)
                json_object_set_new(slot, sk, json_string(replaced));
            else
                json_object_del(slot, sk);
        }
        json_decref(ev);
    }
    return map;
}

const char *ax_state_map_get(const json_t *map, const char *type, const char *state_key)
{
    return json_string_value(json_object_get(json_object_get(map, type), state_key));
}

/* ---- whether this server is in a room ---- */

typedef struct st_local_member_t {
    const char *server;
    bool found;
} local_member_t;

static int find_local_member(void *arg, const char *user_id, const char *membership)
{
    local_member_t *l = arg;
    const char *colon = strchr(user_id, ':');
    if (strcmp(membership, "join") == 0 && colon != NULL && strcmp(colon + 1, l->server) == 0) {
        l->found = true;
        return 1;
    }
    return 0;
}

bool ax_room_has_local_member(ax_txn_t *txn, const char *room_id, const char *our_server)
{
    local_member_t l = {our_server, false};
    ax_db_room_members_foreach(txn, room_id, find_local_member, &l);
    return l.found;
}

/* ---- what an invitee or knocker may see ---- */

json_t *ax_room_stripped_state(ax_txn_t *txn, const char *room_id)
{
    static const char *const types[] = {"m.room.create",          "m.room.join_rules", "m.room.name", "m.room.avatar",
                                        "m.room.canonical_alias", "m.room.encryption", "m.room.topic"};
    json_t *events = json_array();
    for (size_t i = 0; i < AX_ARRAY_SIZE(types); ++i) {
        char eid[256];
        json_t *ev = NULL;
        if (ax_db_state_get(txn, room_id, types[i], "", eid, sizeof(eid)) != 0 ||
            ax_db_event_get(txn, eid, &ev, NULL) != 0)
            continue;
        json_array_append_new(events, json_pack("{s:O, s:s, s:O, s:O}", "content", json_object_get(ev, "content"),
                                                "state_key", "", "type", json_object_get(ev, "type"), "sender",
                                                json_object_get(ev, "sender")));
        json_decref(ev);
    }
    return events;
}

/* ---- who hears about a room ---- */

static int notify_member(void *arg, const char *user_id, const char *membership)
{
    if (strcmp(membership, "join") == 0 || strcmp(membership, "invite") == 0 || strcmp(membership, "knock") == 0)
        ax_txn_notify(arg, user_id);
    return 0;
}

void ax_room_wake_members(ax_txn_t *txn, const char *room_id)
{
    ax_db_room_members_foreach(txn, room_id, notify_member, txn);
}

void ax_room_notify_members(ax_txn_t *txn, const char *room_id, const char *also)
{
    ax_txn_notify(txn, room_id); /* the room ID itself feeds the room change index of /sync */
    ax_room_wake_members(txn, room_id);
    if (also != NULL)
        ax_txn_notify(txn, also);
}
