/*
 * rooms.c -- creating rooms and changing membership (spec: Client-Server
 * API "Creation", "Room membership"; create_room.yaml, joining.yaml,
 * inviting.yaml, leaving.yaml, kicking.yaml, banning.yaml, knocking.yaml,
 * list_joined_rooms.yaml).
 *
 * Every change is one writer job that builds, authorises (auth rules
 * against current state), signs and stores the events, so a rejected
 * request leaves no partial state and the reason the auth rules gave is
 * what the client reads.
 */
#include "server/cs/cs.h"
#include "federation/federation.h"
#include "core/events.h"
#include "core/rooms.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers shared with events.c and directory.c (declared in cs.h) ---- */

int ax_cs_room_error(ax_req_t *r, int rc, const char *reason)
{
    switch (rc) {
    case AX_ENOTFOUND:
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown room");
    case AX_EFORBIDDEN:
        return ax_reply_error(r, AX_M_FORBIDDEN, reason[0] ? reason : "Not allowed");
    case AX_ETOOBIG:
        return ax_reply_error(r, AX_M_TOO_LARGE, reason[0] ? reason : "Event too large");
    case AX_EINVAL:
        return ax_reply_error(r, AX_M_BAD_JSON, reason[0] ? reason : "Invalid event");
    default:
        return ax_reply_error(r, ax_errcode_from_ax(rc), "Could not store the event");
    }
}

/* The profile fields a member event carries (a new reference, may be empty). */
json_t *ax_cs_member_profile(ax_txn_t *txn, const char *user_id)
{
    json_t *profile = NULL, *out = json_object();
    if (ax_db_profile_get(txn, user_id, &profile) == 0) {
        json_t *v;
        if ((v = json_object_get(profile, "displayname")) != NULL && json_is_string(v))
            json_object_set(out, "displayname", v);
        if ((v = json_object_get(profile, "avatar_url")) != NULL && json_is_string(v))
            json_object_set(out, "avatar_url", v);
    }
    json_decref(profile);
    return out;
}

const char *ax_cs_resolve_room_or_reply(ax_req_t *r, const char *id_or_alias)
{
    if (id_or_alias[0] == '!')
        return id_or_alias;
    if (id_or_alias[0] != '#' || strchr(id_or_alias, ':') == NULL) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Expected a room ID or a room alias");
        return NULL;
    }
    ax_txn_t *txn;
    json_t *alias = NULL;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return NULL;
    }
    int rc = ax_db_alias_get(txn, id_or_alias, &alias);
    ax_db_read_end(txn);
    if (rc != 0) {
        ax_reply_error(r, AX_M_NOT_FOUND, "Room alias not found");
        return NULL;
    }
    const char *room = ax_pstrdup(r, json_string_value(json_object_get(alias, "room_id")));
    json_decref(alias);
    return room;
}

/* ---- membership changes ---- */

typedef struct st_member_job_t {
    const ax_origin_t *origin;
    char room_id[256];
    char sender[256];
    char target[256];
    char membership[16];
    json_t *extra;        /* extra content: reason, is_direct, ... */
    bool only_if_changed; /* joins: no new event when already joined with the same profile */
    ax_sent_t sent;
    char reason[256];
} member_job_t;

static void member_job_free(void *p)
{
    member_job_t *j = p;
    json_decref(j->extra);
    free(j);
}

typedef struct st_authoriser_t {
    ax_txn_t *txn;
    const ax_room_version_t *rv;
    ax_room_lookup_t *lk;
    const char *server;
    int64_t need;
    char found[256];
} authoriser_t;

static int pick_authoriser(void *arg, const char *user_id, const char *membership)
{
    authoriser_t *a = arg;
    const char *server = ax_id_domain(user_id);
    int64_t have = 0;
    if (strcmp(membership, "join") == 0 && server != NULL && strcmp(server, a->server) == 0 &&
        ax_power_level_of(a->rv, ax_room_lookup, a->lk, user_id, &have) == 0 && have >= a->need) {
        snprintf(a->found, sizeof(a->found), "%s", user_id);
        return 1;
    }
    return 0;
}

int ax_cs_restricted_authoriser(ax_txn_t *txn, const char *room_id, const char *user_id, const char *our_server,
                                json_t *content, char *reason, size_t rlen)
{
    const ax_room_version_t *rv = ax_room_version_of(txn, room_id);
    if (rv == NULL || !rv->restricted)
        return 0;
    char m[16];
    ax_room_membership(txn, room_id, user_id, m, sizeof(m));
    if (strcmp(m, "invite") == 0 || strcmp(m, "join") == 0)
        return 0;
    json_t *rules = ax_room_state_content(txn, room_id, "m.room.join_rules", "");
    const char *rule = json_string_value(json_object_get(rules, "join_rule"));
    bool restricted = ax_streq(rule, "restricted") || (ax_streq(rule, "knock_restricted") && rv->knock_restricted);
    bool allowed = false;
    size_t i;
    json_t *cond;
    json_array_foreach(json_object_get(rules, "allow"), i, cond)
    {
        const char *room = json_string_value(json_object_get(cond, "room_id"));
        if (!allowed && ax_streq(json_string_value(json_object_get(cond, "type")), "m.room_membership") &&
            room != NULL) {
            char theirs[16];
            ax_room_membership(txn, room, user_id, theirs, sizeof(theirs));
            allowed = strcmp(theirs, "join") == 0;
        }
    }
    json_decref(rules);
    if (!restricted)
        return 0;
    if (!allowed) {
        snprintf(reason, rlen, "You are not a member of a room this room's join rules allow");
        return AX_EFORBIDDEN;
    }
    ax_room_lookup_t lk = {.txn = txn, .room_id = room_id};
    authoriser_t a = {.txn = txn, .rv = rv, .lk = &lk, .server = our_server, .need = 0};
    ax_power_level_named(rv, ax_room_lookup, &lk, "invite", &a.need);
    ax_db_room_members_foreach(txn, room_id, pick_authoriser, &a);
    ax_room_lookup_dispose(&lk);
    if (a.found[0] == '\0') {
        snprintf(reason, rlen, "No member of this server may invite you to this room");
        return AX_ENOAUTHORISER;
    }
    json_object_set_new(content, "join_authorised_via_users_server", json_string(a.found));
    return 0;
}

int ax_cs_member_apply(ax_txn_t *txn, void *data)
{
    member_job_t *j = data;
    json_t *content = json_pack("{s:s}", "membership", j->membership);
    if (strcmp(j->membership, "join") == 0 || strcmp(j->membership, "invite") == 0 ||
        strcmp(j->membership, "knock") == 0) {
        json_t *profile = ax_cs_member_profile(txn, j->target);
        json_object_update(content, profile);
        json_decref(profile);
    }
    if (j->extra != NULL)
        json_object_update(content, j->extra);
    if (strcmp(j->membership, "join") == 0 && strcmp(j->sender, j->target) == 0) {
        int rc = ax_cs_restricted_authoriser(txn, j->room_id, j->target, j->origin->server_name, content, j->reason,
                                             sizeof(j->reason));
        if (rc == AX_ENOAUTHORISER)
            rc = AX_EFORBIDDEN;
        if (rc != 0) {
            json_decref(content);
            return rc;
        }
    }
    if (j->only_if_changed) {
        char eid[256];
        json_t *cur = NULL;
        if (ax_db_state_get(txn, j->room_id, "m.room.member", j->target, eid, sizeof(eid)) == 0 &&
            ax_db_event_get(txn, eid, &cur, NULL) == 0) {
            bool same = json_equal(json_object_get(cur, "content"), content);
            json_decref(cur);
            if (same) {
                json_decref(content);
                snprintf(j->sent.event_id, sizeof(j->sent.event_id), "%s", eid);
                snprintf(j->sent.room_id, sizeof(j->sent.room_id), "%s", j->room_id);
                return 0;
            }
        }
    }
    ax_draft_t d = {.room_id = j->room_id,
                    .sender = j->sender,
                    .type = "m.room.member",
                    .state_key = j->target,
                    .content = content};
    int rc = ax_room_send(txn, j->origin, &d, &j->sent, j->reason, sizeof(j->reason));
    json_decref(content);
    if (rc == 0)
        ax_room_notify_members(txn, j->room_id, j->target);
    return rc;
}

int ax_cs_member_refresh(ax_txn_t *txn, const ax_origin_t *origin, const char *room_id, const char *user_id)
{
    member_job_t j = {.origin = origin, .only_if_changed = true};
    snprintf(j.room_id, sizeof(j.room_id), "%s", room_id);
    snprintf(j.sender, sizeof(j.sender), "%s", user_id);
    snprintf(j.target, sizeof(j.target), "%s", user_id);
    snprintf(j.membership, sizeof(j.membership), "join");
    return ax_cs_member_apply(txn, &j);
}

int ax_cs_member_leave(ax_txn_t *txn, const ax_origin_t *origin, const char *room_id, const char *user_id, char *reason,
                       size_t rlen)
{
    member_job_t j = {.origin = origin};
    snprintf(j.room_id, sizeof(j.room_id), "%s", room_id);
    snprintf(j.sender, sizeof(j.sender), "%s", user_id);
    snprintf(j.target, sizeof(j.target), "%s", user_id);
    snprintf(j.membership, sizeof(j.membership), "leave");
    int rc = ax_cs_member_apply(txn, &j);
    snprintf(reason, rlen, "%s", j.reason);
    return rc;
}

static void member_written(ax_req_t *r, int result, void *data)
{
    member_job_t *j = data;
    if (result != 0)
        return (void)ax_cs_room_error(r, result, j->reason);
    /* join endpoints answer with the room, the others with {} */
    if (strcmp(j->membership, "join") == 0)
        ax_reply_json_new(r, 200, json_pack("{s:s}", "room_id", j->room_id));
    else if (strcmp(j->membership, "knock") == 0)
        ax_reply_json_new(r, 200, json_pack("{s:s}", "room_id", j->room_id));
    else
        ax_reply_json_new(r, 200, json_object());
}

/* Starts a membership change of 'target' to 'membership' sent by the requester. */
static int change_membership(ax_req_t *r, const char *room_id, const char *target, const char *membership, json_t *body)
{
    const char *reason = NULL;
    if (body != NULL && ax_field_string_or_reply(r, body, "reason", false, &reason) != 0)
        return 0;
    if (strlen(room_id) >= 256 || room_id[0] != '!')
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room ID");
    if (!ax_id_is_valid_user_id(target))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid user ID");
    member_job_t *j = ax_calloc(1, sizeof(*j));
    j->origin = &r->srv->origin;
    snprintf(j->room_id, sizeof(j->room_id), "%s", room_id);
    snprintf(j->sender, sizeof(j->sender), "%s", r->auth.user_id);
    snprintf(j->target, sizeof(j->target), "%s", target);
    snprintf(j->membership, sizeof(j->membership), "%s", membership);
    j->extra = json_object();
    if (reason != NULL)
        json_object_set_new(j->extra, "reason", json_string(reason));
    if (strcmp(membership, "join") == 0)
        j->only_if_changed = true;
    if (strcmp(membership, "invite") == 0 && body != NULL && json_is_true(json_object_get(body, "is_direct")))
        json_object_set_new(j->extra, "is_direct", json_true());
    ax_req_write(r, ax_cs_member_apply, member_written, j, member_job_free);
    return 0;
}

/* Reads the body's user_id for invite/kick/ban/unban; replies and returns NULL when bad. */
static const char *target_or_reply(ax_req_t *r, json_t **body)
{
    const char *user_id;
    if (ax_req_json_body_or_reply(r, body) != 0 || ax_field_string_or_reply(r, *body, "user_id", true, &user_id) != 0)
        return NULL;
    if (!ax_id_is_valid_user_id(user_id)) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid user ID");
        return NULL;
    }
    return user_id;
}

/* ---- memberships in rooms this server is not in (federation/join.c) ---- */

static void add_server(json_t *servers, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return;
    size_t i;
    json_t *v;
    json_array_foreach(servers, i, v)
    {
        if (ax_streq(json_string_value(v), name))
            return;
    }
    json_array_append_new(servers, json_string(name));
}

/* The client's via / server_name hints. */
static json_t *hinted_servers(ax_req_t *r)
{
    json_t *servers = json_array();
    static const char *const params[] = {"via", "server_name"};
    for (size_t p = 0; p < AX_ARRAY_SIZE(params); ++p) {
        const char *v;
        for (size_t i = 0; (v = ax_req_query_nth(r, params[p], i)) != NULL; ++i)
            if (ax_id_is_valid_server_name(v))
                add_server(servers, v);
    }
    return servers;
}

/* What goes in the event's content besides the membership: the profile for joins and knocks, the reason. */
static json_t *membership_extra(ax_txn_t *txn, const char *user_id, const char *membership, const json_t *body)
{
    json_t *extra = strcmp(membership, "leave") != 0 ? ax_cs_member_profile(txn, user_id) : json_object();
    json_t *reason = json_object_get(body, "reason");
    if (json_is_string(reason))
        json_object_set(extra, "reason", reason);
    return extra;
}

/*
 * When this server is not in 'room_id', changes the requester's membership
 * through servers that are: the client's hints, the server of a pending
 * invite, the room ID's server.  Returns true when it took the request.
 */
static bool remote_membership(ax_req_t *r, const char *room_id, const char *membership, json_t *body)
{
    if (r->srv->fed == NULL || room_id[0] != '!' || strlen(room_id) >= 256)
        return false;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return false;
    if (ax_room_has_local_member(txn, room_id, r->srv->cfg->server_name)) {
        ax_db_read_end(txn);
        return false;
    }
    json_t *m = NULL, *servers = hinted_servers(r);
    const char *current = NULL;
    if (ax_db_membership_get(txn, room_id, r->auth.user_id, &m) == 0) {
        current = json_string_value(json_object_get(m, "membership"));
        json_t *ev = NULL;
        const char *eid = json_string_value(json_object_get(m, "event_id"));
        if (eid != NULL && ax_db_event_get(txn, eid, &ev, NULL) == 0) {
            /* who invited us (or heard our knock) can pass our answer on */
            add_server(servers, ax_id_domain(json_string_value(json_object_get(ev, "sender"))));
            add_server(servers, json_string_value(json_object_get(ev, "origin")));
        }
        json_decref(ev);
    }
    const char *colon = strchr(room_id, ':');
    if (colon != NULL)
        add_server(servers, colon + 1);
    bool leaving = strcmp(membership, "leave") == 0;
    bool take = !leaving || ax_streq(current, "invite") || ax_streq(current, "knock");
    json_t *extra = take ? membership_extra(txn, r->auth.user_id, membership, body) : NULL;
    ax_db_read_end(txn);
    json_decref(m);
    if (!take) {
        json_decref(servers);
        return false;
    }
    if (json_array_size(servers) == 0) {
        json_decref(servers);
        json_decref(extra);
        ax_reply_error(r, AX_M_NOT_FOUND, "This server is not in the room and knows no server that is");
        return true;
    }
    ax_fed_remote_membership(r, room_id, membership, servers, extra);
    return true;
}

/* Joins or knocks by room ID or alias, locally or through other servers. */
static int join_or_knock(ax_req_t *r, const char *id_or_alias, const char *membership)
{
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    const char *domain = id_or_alias[0] == '#' ? ax_id_domain(id_or_alias) : NULL;
    if (domain != NULL && r->srv->fed != NULL && strcmp(domain, r->srv->cfg->server_name) != 0) {
        ax_txn_t *txn;
        if (ax_db_read_begin(r->srv->db, &txn) != 0)
            return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        json_t *extra = membership_extra(txn, r->auth.user_id, membership, body);
        ax_db_read_end(txn);
        return ax_fed_remote_membership_by_alias(r, id_or_alias, membership, hinted_servers(r), extra);
    }
    const char *room_id = ax_cs_resolve_room_or_reply(r, id_or_alias);
    if (room_id == NULL)
        return 0;
    if (remote_membership(r, room_id, membership, body))
        return 0;
    return change_membership(r, room_id, r->auth.user_id, membership, body);
}

/* POST /_matrix/client/v3/rooms/{roomId}/join */
int ax_cs_room_join(ax_req_t *r)
{
    return join_or_knock(r, r->params[0], "join");
}

/* POST /_matrix/client/v3/join/{roomIdOrAlias} */
int ax_cs_join(ax_req_t *r)
{
    return join_or_knock(r, r->params[0], "join");
}

/* POST /_matrix/client/v3/knock/{roomIdOrAlias} */
int ax_cs_knock(ax_req_t *r)
{
    return join_or_knock(r, r->params[0], "knock");
}

/* POST /_matrix/client/v3/rooms/{roomId}/leave */
int ax_cs_room_leave(ax_req_t *r)
{
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    if (remote_membership(r, r->params[0], "leave", body))
        return 0;
    return change_membership(r, r->params[0], r->auth.user_id, "leave", body);
}

/* POST /_matrix/client/v3/rooms/{roomId}/invite */
int ax_cs_room_invite(ax_req_t *r)
{
    json_t *body;
    const char *target = target_or_reply(r, &body);
    if (target == NULL)
        return 0;
    const char *server = ax_id_domain(target);
    if (server != NULL && strcmp(server, r->srv->cfg->server_name) != 0) {
        json_t *extra = json_object();
        json_t *reason = json_object_get(body, "reason");
        if (json_is_string(reason))
            json_object_set(extra, "reason", reason);
        if (json_is_true(json_object_get(body, "is_direct")))
            json_object_set_new(extra, "is_direct", json_true());
        return ax_fed_remote_invite(r, r->params[0], target, extra);
    }
    ax_txn_t *txn;
    json_t *acct = NULL;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    int rc = ax_db_account_get(txn, target, &acct);
    ax_db_read_end(txn);
    bool gone = rc == 0 && json_is_true(json_object_get(acct, "deactivated"));
    json_decref(acct);
    if (rc != 0 || gone)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown user");
    return change_membership(r, r->params[0], target, "invite", body);
}

/* POST /_matrix/client/v3/rooms/{roomId}/kick */
int ax_cs_room_kick(ax_req_t *r)
{
    json_t *body;
    const char *target = target_or_reply(r, &body);
    if (target == NULL)
        return 0;
    /* the auth rules let the sender "kick" a user who is not there; the spec's clients expect 403 */
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    char m[16];
    ax_room_membership(txn, r->params[0], target, m, sizeof(m));
    ax_db_read_end(txn);
    if (strcmp(m, "join") != 0 && strcmp(m, "invite") != 0 && strcmp(m, "knock") != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "The user is not in the room");
    return change_membership(r, r->params[0], target, "leave", body);
}

/* POST /_matrix/client/v3/rooms/{roomId}/ban */
int ax_cs_room_ban(ax_req_t *r)
{
    json_t *body;
    const char *target = target_or_reply(r, &body);
    if (target == NULL)
        return 0;
    return change_membership(r, r->params[0], target, "ban", body);
}

/* POST /_matrix/client/v3/rooms/{roomId}/unban */
int ax_cs_room_unban(ax_req_t *r)
{
    json_t *body;
    const char *target = target_or_reply(r, &body);
    if (target == NULL)
        return 0;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    char m[16];
    ax_room_membership(txn, r->params[0], target, m, sizeof(m));
    ax_db_read_end(txn);
    if (strcmp(m, "ban") != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "The user is not banned");
    return change_membership(r, r->params[0], target, "leave", body);
}

/* ---- forget ---- */

typedef struct st_forget_t {
    char room_id[256];
    char user_id[256];
    int outcome;
} forget_t;

static int forget_apply(ax_txn_t *txn, void *data)
{
    forget_t *f = data;
    char m[16];
    ax_room_membership(txn, f->room_id, f->user_id, m, sizeof(m));
    f->outcome = 0;
    if (strcmp(m, "join") == 0 || strcmp(m, "invite") == 0 || strcmp(m, "knock") == 0) {
        f->outcome = AX_EFORBIDDEN;
        return 0;
    }
    int rc = ax_db_membership_forget(txn, f->room_id, f->user_id);
    return rc == AX_ENOTFOUND ? 0 : rc;
}

static void forget_written(ax_req_t *r, int result, void *data)
{
    forget_t *f = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not forget the room");
    if (f->outcome == AX_EFORBIDDEN)
        return (void)ax_reply_error(r, AX_M_UNKNOWN, "Leave the room before forgetting it");
    ax_reply_json_new(r, 200, json_object());
}

/* POST /_matrix/client/v3/rooms/{roomId}/forget */
int ax_cs_room_forget(ax_req_t *r)
{
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    forget_t *f = ax_calloc(1, sizeof(*f));
    snprintf(f->room_id, sizeof(f->room_id), "%s", r->params[0]);
    snprintf(f->user_id, sizeof(f->user_id), "%s", r->auth.user_id);
    ax_req_write(r, forget_apply, forget_written, f, free);
    return 0;
}

/* ---- GET /joined_rooms ---- */

static int joined_cb(void *arg, const char *room_id, json_t *m)
{
    if (ax_streq(json_string_value(json_object_get(m, "membership")), "join"))
        json_array_append_new(arg, json_string(room_id));
    return 0;
}

/* GET /_matrix/client/v3/joined_rooms */
int ax_cs_joined_rooms(ax_req_t *r)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *rooms = json_array();
    ax_db_user_rooms_foreach(txn, r->auth.user_id, joined_cb, rooms);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "joined_rooms", rooms));
}

/* ---- POST /createRoom ---- */

typedef struct st_create_t {
    const ax_origin_t *origin;
    char creator[256];
    char room_id[256]; /* v10/v11: chosen here; v12: the create event's hash */
    const ax_room_version_t *rv;
    json_t *drafts; /* [{type, state_key?, content}] in the spec's order, after create */
    json_t *create_content;
    char alias[512]; /* "" when none */
    bool publish;
    json_t *invites;        /* [user_id]: everyone invited (power levels, additional creators) */
    json_t *remote_invites; /* [user_id] of other servers: invited over federation after the commit */
    bool is_direct;
    char reason[256];
    int outcome; /* AX_EEXIST: alias taken */
} create_t;

static void create_free(void *p)
{
    create_t *c = p;
    json_decref(c->drafts);
    json_decref(c->create_content);
    json_decref(c->invites);
    json_decref(c->remote_invites);
    free(c);
}

static int send_state(ax_txn_t *txn, create_t *c, const char *type, const char *state_key, json_t *content)
{
    ax_draft_t d = {
        .room_id = c->room_id, .sender = c->creator, .type = type, .state_key = state_key, .content = content};
    ax_sent_t sent;
    return ax_room_send(txn, c->origin, &d, &sent, c->reason, sizeof(c->reason));
}

static int create_apply(ax_txn_t *txn, void *data)
{
    create_t *c = data;
    c->outcome = 0;
    if (c->alias[0] != '\0') {
        json_t *existing = NULL;
        if (ax_db_alias_get(txn, c->alias, &existing) == 0) {
            json_decref(existing);
            c->outcome = AX_EEXIST;
            return 0;
        }
    }
    /* 1. m.room.create */
    ax_draft_t d = {.room_id = c->rv->room_id_from_create ? NULL : c->room_id,
                    .sender = c->creator,
                    .type = "m.room.create",
                    .state_key = "",
                    .content = c->create_content};
    ax_sent_t sent;
    int rc = ax_room_send(txn, c->origin, &d, &sent, c->reason, sizeof(c->reason));
    if (rc != 0)
        return rc;
    snprintf(c->room_id, sizeof(c->room_id), "%s", sent.room_id);

    /* 2. the creator joins */
    json_t *join = ax_cs_member_profile(txn, c->creator);
    json_object_set_new(join, "membership", json_string("join"));
    rc = send_state(txn, c, "m.room.member", c->creator, join);
    json_decref(join);
    if (rc != 0)
        return rc;

    /* 3.-7. power levels, canonical alias, preset, initial_state, name, topic */
    size_t i;
    json_t *ev;
    json_array_foreach(c->drafts, i, ev)
    {
        json_t *sk = json_object_get(ev, "state_key");
        if ((rc = send_state(txn, c, json_string_value(json_object_get(ev, "type")), sk ? json_string_value(sk) : "",
                             json_object_get(ev, "content"))) != 0)
            return rc;
    }
    if (c->alias[0] != '\0' && (rc = ax_db_alias_put(txn, c->alias, c->room_id, c->creator)) != 0)
        return rc;
    if (c->publish && (rc = ax_db_directory_set(txn, c->room_id, true)) != 0)
        return rc;

    /* 8. invites */
    json_array_foreach(c->invites, i, ev)
    {
        if (strcmp(ax_id_domain(json_string_value(ev)), c->origin->server_name) != 0)
            continue; /* the invitee's server signs it too: create_written */
        json_t *content = ax_cs_member_profile(txn, json_string_value(ev));
        json_object_set_new(content, "membership", json_string("invite"));
        if (c->is_direct)
            json_object_set_new(content, "is_direct", json_true());
        rc = send_state(txn, c, "m.room.member", json_string_value(ev), content);
        json_decref(content);
        if (rc != 0)
            return rc;
    }
    ax_room_notify_members(txn, c->room_id, c->creator);
    return 0;
}

static void create_written(ax_req_t *r, int result, void *data)
{
    create_t *c = data;
    if (result != 0)
        return (void)ax_cs_room_error(r, result == AX_ENOTFOUND ? AX_EINVAL : result, c->reason);
    if (c->outcome == AX_EEXIST)
        return (void)ax_reply_error(r, AX_M_ROOM_IN_USE, "Room alias already taken");
    if (json_array_size(c->remote_invites) != 0) {
        json_t *extra = json_object();
        if (c->is_direct)
            json_object_set_new(extra, "is_direct", json_true());
        ax_fed_create_room_invites(r, c->room_id, c->remote_invites, extra);
        c->remote_invites = NULL;
        return;
    }
    ax_reply_json_new(r, 200, json_pack("{s:s}", "room_id", c->room_id));
}

/* Default power levels for a new room (Synapse's, which clients expect). */
static json_t *default_power_levels(const ax_room_version_t *rv, const char *creator, const char *preset,
                                    json_t *invites)
{
    json_t *pl = json_pack("{s:{}, s:i, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:i, s:i, s:i, s:i, s:i, s:i, "
                           "s:{s:i}}",
                           "users", "users_default", 0, "events", "m.room.name", 50, "m.room.power_levels", 100,
                           "m.room.history_visibility", 100, "m.room.canonical_alias", 50, "m.room.avatar", 50,
                           "m.room.tombstone", rv->privileged_creators ? 150 : 100, "m.room.server_acl", 100,
                           "m.room.encryption", 100, "events_default", 0, "state_default", 50, "ban", 50, "kick", 50,
                           "redact", 50, "invite", 0, "notifications", "room", 50);
    json_t *users = json_object_get(pl, "users");
    if (!rv->privileged_creators)
        json_object_set_new(users, creator, json_integer(100));
    if (strcmp(preset, "trusted_private_chat") == 0 && !rv->privileged_creators) {
        size_t i;
        json_t *u;
        json_array_foreach(invites, i, u)
        {
            json_object_set_new(users, json_string_value(u), json_integer(100));
        }
    }
    return pl;
}

static void add_draft(json_t *drafts, const char *type, const char *state_key, json_t *content)
{
    json_array_append_new(drafts,
                          json_pack("{s:s, s:s, s:o}", "type", type, "state_key", state_key, "content", content));
}

/* True when 'drafts' already has (type, state_key) (initial_state overrides presets). */
static bool has_draft(json_t *drafts, const char *type, const char *state_key)
{
    size_t i;
    json_t *d;
    json_array_foreach(drafts, i, d)
    {
        if (ax_streq(json_string_value(json_object_get(d, "type")), type) &&
            ax_streq(json_string_value(json_object_get(d, "state_key")), state_key))
            return true;
    }
    return false;
}

static void replace_draft(json_t *drafts, const char *type, const char *state_key, json_t *content)
{
    size_t i;
    json_t *d;
    json_array_foreach(drafts, i, d)
    {
        if (ax_streq(json_string_value(json_object_get(d, "type")), type) &&
            ax_streq(json_string_value(json_object_get(d, "state_key")), state_key)) {
            json_object_set_new(d, "content", content);
            return;
        }
    }
    add_draft(drafts, type, state_key, content);
}

/* POST /_matrix/client/v3/createRoom */
int ax_cs_create_room(ax_req_t *r)
{
    ax_server_t *srv = r->srv;
    json_t *body, *invite = NULL, *initial_state = NULL, *creation_content = NULL, *pl_override = NULL,
                  *invite_3pid = NULL;
    const char *visibility, *alias_name, *name, *topic, *version, *preset;
    bool is_direct;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "visibility", false, &visibility) != 0 ||
        ax_field_string_or_reply(r, body, "room_alias_name", false, &alias_name) != 0 ||
        ax_field_string_or_reply(r, body, "name", false, &name) != 0 ||
        ax_field_string_or_reply(r, body, "topic", false, &topic) != 0 ||
        ax_field_string_or_reply(r, body, "room_version", false, &version) != 0 ||
        ax_field_string_or_reply(r, body, "preset", false, &preset) != 0 ||
        ax_field_bool_or_reply(r, body, "is_direct", false, &is_direct) != 0 ||
        ax_field_array_or_reply(r, body, "invite", false, &invite) != 0 ||
        ax_field_array_or_reply(r, body, "invite_3pid", false, &invite_3pid) != 0 ||
        ax_field_array_or_reply(r, body, "initial_state", false, &initial_state) != 0 ||
        ax_field_object_or_reply(r, body, "creation_content", false, &creation_content) != 0 ||
        ax_field_object_or_reply(r, body, "power_level_content_override", false, &pl_override) != 0)
        return 0;
    if (visibility != NULL && strcmp(visibility, "public") != 0 && strcmp(visibility, "private") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "visibility must be public or private");
    bool publish = visibility != NULL && strcmp(visibility, "public") == 0;
    if (preset == NULL)
        preset = publish ? "public_chat" : "private_chat";
    if (strcmp(preset, "public_chat") != 0 && strcmp(preset, "private_chat") != 0 &&
        strcmp(preset, "trusted_private_chat") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Unknown preset");
    if (invite_3pid != NULL && json_array_size(invite_3pid) != 0)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Third-party invites are not supported");
    if (version == NULL)
        version = srv->cfg->default_room_version;
    const ax_room_version_t *rv = ax_room_version_get(version);
    bool creatable = false;
    for (const char *const *v = ax_room_versions_creatable; *v != NULL; ++v)
        creatable = creatable || ax_streq(*v, version);
    if (rv == NULL || !creatable)
        return ax_reply_error(r, AX_M_UNSUPPORTED_ROOM_VERSION, "Unsupported room version");

    size_t i;
    json_t *v;
    json_array_foreach(invite, i, v)
    {
        if (!json_is_string(v) || !ax_id_is_valid_user_id(json_string_value(v)))
            return ax_reply_error(r, AX_M_INVALID_PARAM, "invite must be a list of user IDs");
        const char *server = ax_id_domain(json_string_value(v));
        if (strcmp(server, srv->cfg->server_name) != 0 && srv->fed == NULL)
            return ax_reply_error(r, AX_M_FORBIDDEN, "Inviting users of other servers needs federation");
    }
    json_array_foreach(initial_state, i, v)
    {
        if (!json_is_object(v) || !json_is_string(json_object_get(v, "type")) ||
            !json_is_object(json_object_get(v, "content")) ||
            (json_object_get(v, "state_key") != NULL && !json_is_string(json_object_get(v, "state_key"))))
            return ax_reply_error(r, AX_M_BAD_JSON, "initial_state entries need a type, a state_key and a content");
    }

    create_t *c = ax_calloc(1, sizeof(*c));
    c->origin = &srv->origin;
    c->rv = rv;
    snprintf(c->creator, sizeof(c->creator), "%s", r->auth.user_id);
    if (!rv->room_id_from_create) {
        char rnd[19];
        ax_random_alnum(rnd, 18);
        snprintf(c->room_id, sizeof(c->room_id), "!%s:%s", rnd, srv->cfg->server_name);
    }
    if (alias_name != NULL) {
        bool ok = alias_name[0] != '\0';
        for (const char *p = alias_name; *p; ++p)
            ok = ok && *p != ':' && *p != '#' && !isspace((unsigned char)*p);
        if (!ok || snprintf(c->alias, sizeof(c->alias), "#%s:%s", alias_name, srv->cfg->server_name) > 255) {
            create_free(c);
            return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room alias name");
        }
    }
    c->publish = publish;
    c->is_direct = is_direct;
    c->invites = invite != NULL ? json_deep_copy(invite) : json_array();
    c->remote_invites = json_array();
    json_array_foreach(c->invites, i, v)
    {
        if (strcmp(ax_id_domain(json_string_value(v)), srv->cfg->server_name) != 0)
            json_array_append(c->remote_invites, v);
    }

    /* the create event: creation_content, with what the server decides on top */
    c->create_content = creation_content != NULL ? json_deep_copy(creation_content) : json_object();
    json_object_set_new(c->create_content, "room_version", json_string(rv->id));
    if (rv->msc2175_implicit_creator)
        json_object_del(c->create_content, "creator");
    else
        json_object_set_new(c->create_content, "creator", json_string(c->creator));
    if (rv->privileged_creators && strcmp(preset, "trusted_private_chat") == 0) {
        json_t *extra = json_object_get(c->create_content, "additional_creators");
        json_t *list = json_is_array(extra) ? json_deep_copy(extra) : json_array();
        json_array_foreach(c->invites, i, v)
        {
            size_t k;
            json_t *e;
            bool dup = false;
            json_array_foreach(list, k, e)
            {
                dup = dup || json_equal(e, v);
            }
            if (!dup)
                json_array_append(list, v);
        }
        json_object_set_new(c->create_content, "additional_creators", list);
    }

    /* the rest, in the spec's order */
    c->drafts = json_array();
    json_t *pl = default_power_levels(rv, c->creator, preset, c->invites);
    if (pl_override != NULL)
        json_object_update(pl, pl_override);
    add_draft(c->drafts, "m.room.power_levels", "", pl);
    if (c->alias[0] != '\0')
        add_draft(c->drafts, "m.room.canonical_alias", "", json_pack("{s:s}", "alias", c->alias));
    bool is_public = strcmp(preset, "public_chat") == 0;
    add_draft(c->drafts, "m.room.join_rules", "", json_pack("{s:s}", "join_rule", is_public ? "public" : "invite"));
    add_draft(c->drafts, "m.room.history_visibility", "", json_pack("{s:s}", "history_visibility", "shared"));
    add_draft(c->drafts, "m.room.guest_access", "",
              json_pack("{s:s}", "guest_access", is_public ? "forbidden" : "can_join"));
    json_array_foreach(initial_state, i, v)
    {
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *sk = json_object_get(v, "state_key") ? json_string_value(json_object_get(v, "state_key")) : "";
        if (strcmp(type, "m.room.create") == 0 || strcmp(type, "m.room.member") == 0)
            continue; /* the server makes those */
        replace_draft(c->drafts, type, sk, json_deep_copy(json_object_get(v, "content")));
    }
    if (name != NULL && !has_draft(c->drafts, "m.room.name", ""))
        add_draft(c->drafts, "m.room.name", "", json_pack("{s:s}", "name", name));
    else if (name != NULL)
        replace_draft(c->drafts, "m.room.name", "", json_pack("{s:s}", "name", name));
    if (topic != NULL) {
        /* v1.15 topics carry m.topic too */
        json_t *t = json_pack("{s:s, s:{s:[{s:s, s:s}]}}", "topic", topic, "m.topic", "m.text", "mimetype",
                              "text/plain", "body", topic);
        replace_draft(c->drafts, "m.room.topic", "", t);
    }
    ax_req_write(r, create_apply, create_written, c, create_free);
    return 0;
}

/* ---- POST /rooms/{roomId}/upgrade ---- */

typedef struct st_upgrade_t {
    const ax_origin_t *origin;
    const ax_room_version_t *rv; /* the new version */
    char old_room[256];
    char new_room[256];
    char user_id[256];
    char server_name[256];
    char reason[256];
} upgrade_t;

/* State that carries over to the replacement room (spec "Room upgrades", server behaviour). */
static const char *const carried_state[] = {
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.name", "m.room.topic",
    "m.room.avatar",     "m.room.encryption",         "m.room.server_acl"};

static int upgrade_send(ax_txn_t *txn, upgrade_t *u, const char *room, const char *type, const char *sk,
                        json_t *content, ax_sent_t *out)
{
    ax_draft_t d = {.room_id = room, .sender = u->user_id, .type = type, .state_key = sk, .content = content};
    ax_sent_t sent;
    return ax_room_send(txn, u->origin, &d, out != NULL ? out : &sent, u->reason, sizeof(u->reason));
}

typedef struct st_alias_move_t {
    ax_txn_t *txn;
    const char *old_room, *new_room, *user_id;
    int rc;
    char (*moved)[512];
    size_t n;
} alias_move_t;

static int move_alias(void *arg, const char *alias)
{
    alias_move_t *m = arg;
    if (m->n < 32)
        snprintf(m->moved[m->n++], sizeof(m->moved[0]), "%s", alias);
    return 0;
}

static int upgrade_apply(ax_txn_t *txn, void *data)
{
    upgrade_t *u = data;
    const ax_room_version_t *old_rv = ax_room_version_of(txn, u->old_room);
    if (old_rv == NULL)
        return AX_ENOTFOUND;
    ax_room_lookup_t lk = {.txn = txn, .room_id = u->old_room};
    int64_t have = 0, need = 100;
    char m[16];
    ax_room_membership(txn, u->old_room, u->user_id, m, sizeof(m));
    int rc = ax_power_level_of(old_rv, ax_room_lookup, &lk, u->user_id, &have) == 0 &&
                     ax_power_level_required(old_rv, ax_room_lookup, &lk, "m.room.tombstone", true, &need) == 0 &&
                     strcmp(m, "join") == 0 && have >= need
                 ? 0
                 : AX_EFORBIDDEN;
    json_t *old_create = ax_room_state_content(txn, u->old_room, "m.room.create", "");
    json_t *old_pl = ax_room_state_content(txn, u->old_room, "m.room.power_levels", "");
    ax_room_lookup_dispose(&lk);
    if (rc != 0) {
        snprintf(u->reason, sizeof(u->reason), "You need the power to send m.room.tombstone to upgrade the room");
        goto out;
    }

    /* the replacement room: predecessor and the carried create content */
    json_t *create = json_pack("{s:s, s:{s:s}}", "room_version", u->rv->id, "predecessor", "room_id", u->old_room);
    static const char *const create_keys[] = {"type", "m.federate"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(create_keys); ++i) {
        json_t *v = json_object_get(old_create, create_keys[i]);
        if (v != NULL)
            json_object_set(create, create_keys[i], v);
    }
    if (!u->rv->msc2175_implicit_creator)
        json_object_set_new(create, "creator", json_string(u->user_id));
    if (u->rv->privileged_creators && json_is_array(json_object_get(old_create, "additional_creators")))
        json_object_set(create, "additional_creators", json_object_get(old_create, "additional_creators"));
    char rnd[19];
    ax_random_alnum(rnd, 18);
    if (snprintf(u->new_room, sizeof(u->new_room), "!%s:%s", rnd, u->server_name) >= (int)sizeof(u->new_room)) {
        rc = AX_EINVAL;
        goto out;
    }
    ax_draft_t d = {.room_id = u->rv->room_id_from_create ? NULL : u->new_room,
                    .sender = u->user_id,
                    .type = "m.room.create",
                    .state_key = "",
                    .content = create};
    ax_sent_t sent;
    rc = ax_room_send(txn, u->origin, &d, &sent, u->reason, sizeof(u->reason));
    json_decref(create);
    if (rc != 0)
        goto out;
    snprintf(u->new_room, sizeof(u->new_room), "%s", sent.room_id);

    json_t *join = ax_cs_member_profile(txn, u->user_id);
    json_object_set_new(join, "membership", json_string("join"));
    rc = upgrade_send(txn, u, u->new_room, "m.room.member", u->user_id, join, NULL);
    json_decref(join);
    if (rc != 0)
        goto out;

    /* power levels: the old ones, with the upgrader able to finish the job (creators
     * are implicit from v12 and must not be listed) */
    json_t *pl = old_pl != NULL ? json_deep_copy(old_pl) : json_object();
    json_t *users = json_object_get(pl, "users");
    if (!json_is_object(users)) {
        users = json_object();
        json_object_set_new(pl, "users", users);
    }
    if (u->rv->privileged_creators) {
        json_object_del(users, u->user_id);
        json_t *extra = json_object_get(old_create, "additional_creators");
        size_t i;
        json_t *c;
        json_array_foreach(extra, i, c)
        {
            json_object_del(users, json_string_value(c));
        }
        json_t *events = json_object_get(pl, "events");
        if (json_is_object(events) && json_integer_value(json_object_get(pl, "state_default")) >=
                                          json_integer_value(json_object_get(events, "m.room.tombstone")))
            json_object_set_new(events, "m.room.tombstone", json_integer(150));
    } else {
        json_object_set_new(users, u->user_id, json_integer(have > 100 || have < 0 ? 100 : have));
    }
    rc = upgrade_send(txn, u, u->new_room, "m.room.power_levels", "", pl, NULL);
    json_decref(pl);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < AX_ARRAY_SIZE(carried_state); ++i) {
        json_t *content = ax_room_state_content(txn, u->old_room, carried_state[i], "");
        if (content == NULL)
            continue;
        rc = upgrade_send(txn, u, u->new_room, carried_state[i], "", content, NULL);
        json_decref(content);
        if (rc != 0)
            goto out;
    }

    /* local aliases move with the room; the canonical alias follows them */
    char moved[32][512];
    alias_move_t am = {txn, u->old_room, u->new_room, u->user_id, 0, moved, 0};
    ax_db_room_aliases_foreach(txn, u->old_room, move_alias, &am);
    for (size_t i = 0; i < am.n; ++i) {
        if ((rc = ax_db_alias_del(txn, moved[i], u->old_room)) != 0 ||
            (rc = ax_db_alias_put(txn, moved[i], u->new_room, u->user_id)) != 0)
            goto out;
    }
    json_t *canonical = ax_room_state_content(txn, u->old_room, "m.room.canonical_alias", "");
    if (canonical != NULL && json_object_size(canonical) != 0) {
        rc = upgrade_send(txn, u, u->new_room, "m.room.canonical_alias", "", canonical, NULL);
        if (rc == 0) {
            json_t *empty = json_object();
            rc = upgrade_send(txn, u, u->old_room, "m.room.canonical_alias", "", empty, NULL);
            json_decref(empty);
        }
    }
    json_decref(canonical);
    if (rc != 0)
        goto out;
    if (ax_db_directory_is_public(txn, u->old_room) && ((rc = ax_db_directory_set(txn, u->old_room, false)) != 0 ||
                                                        (rc = ax_db_directory_set(txn, u->new_room, true)) != 0))
        goto out;

    /* the tombstone, then the old room goes quiet: sending and inviting need 50 */
    json_t *tomb = json_pack("{s:s, s:s}", "body", "This room has been replaced", "replacement_room", u->new_room);
    rc = upgrade_send(txn, u, u->old_room, "m.room.tombstone", "", tomb, NULL);
    json_decref(tomb);
    if (rc != 0)
        goto out;
    if (old_pl != NULL) {
        json_t *quiet = json_deep_copy(old_pl);
        json_int_t users_default = json_integer_value(json_object_get(quiet, "users_default"));
        json_int_t level = users_default + 1 > 50 ? users_default + 1 : 50;
        bool change = json_integer_value(json_object_get(quiet, "events_default")) < level ||
                      json_integer_value(json_object_get(quiet, "invite")) < level;
        if (change) {
            json_object_set_new(quiet, "events_default", json_integer(level));
            json_object_set_new(quiet, "invite", json_integer(level));
            int qrc = upgrade_send(txn, u, u->old_room, "m.room.power_levels", "", quiet, NULL);
            if (qrc != 0 && qrc != AX_EFORBIDDEN)
                rc = qrc; /* not being allowed to quieten the old room does not stop the upgrade */
        }
        json_decref(quiet);
    }
    if (rc == 0) {
        ax_room_notify_members(txn, u->old_room, NULL);
        ax_room_notify_members(txn, u->new_room, u->user_id);
    }
out:
    json_decref(old_create);
    json_decref(old_pl);
    return rc;
}

static void upgrade_written(ax_req_t *r, int result, void *data)
{
    upgrade_t *u = data;
    if (result != 0)
        return (void)ax_cs_room_error(r, result, u->reason);
    ax_reply_json_new(r, 200, json_pack("{s:s}", "replacement_room", u->new_room));
}

/* POST /_matrix/client/v3/rooms/{roomId}/upgrade */
int ax_cs_room_upgrade(ax_req_t *r)
{
    json_t *body;
    const char *version;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "new_version", true, &version) != 0)
        return 0;
    const ax_room_version_t *rv = ax_room_version_get(version);
    bool creatable = false;
    for (const char *const *v = ax_room_versions_creatable; *v != NULL; ++v)
        creatable = creatable || ax_streq(*v, version);
    if (rv == NULL || !creatable)
        return ax_reply_error(r, AX_M_UNSUPPORTED_ROOM_VERSION, "Unsupported room version");
    if (r->params[0][0] != '!' || strlen(r->params[0]) >= 256)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room ID");
    upgrade_t *u = ax_calloc(1, sizeof(*u));
    u->origin = &r->srv->origin;
    u->rv = rv;
    snprintf(u->old_room, sizeof(u->old_room), "%s", r->params[0]);
    snprintf(u->user_id, sizeof(u->user_id), "%s", r->auth.user_id);
    snprintf(u->server_name, sizeof(u->server_name), "%s", r->srv->cfg->server_name);
    ax_req_write(r, upgrade_apply, upgrade_written, u, free);
    return 0;
}
