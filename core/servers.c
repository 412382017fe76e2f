/*
 * servers.c -- what another server may do and see in a room: server ACLs
 * (Client-Server API "Server Access Control Lists (ACLs) for rooms", the
 * m.room.server_acl schema, appendices "Glob-style matching"; enforced as
 * the Server-Server API's "Server Access Control Lists" says) and history
 * visibility judged for a server (Client-Server API "History visibility",
 * server behaviour; Synapse's filter_events_for_server is the reference:
 * a server may see what any of its users may see).
 */
#include "core/servers.h"

#include <arpa/inet.h>
#include <string.h>

/* ---- ACLs ---- */

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool ax_glob_match_ci(const char *p, const char *s)
{
    /* the classic iterative matcher: remember the last '*' and where it started matching */
    const char *star = NULL, *from = NULL;
    while (*s != '\0') {
        if (*p == '*') {
            star = p++;
            from = s;
        } else if (*p != '\0' && (*p == '?' || lower(*p) == lower(*s))) {
            ++p;
            ++s;
        } else if (star != NULL) {
            p = star + 1;
            s = ++from;
        } else {
            return false;
        }
    }
    while (*p == '*')
        ++p;
    return *p == '\0';
}

/* The host of a server name without its port ("[::1]" keeps its brackets, as ACL entries write it). */
static void host_of(const char *server_name, char *out, size_t cap)
{
    size_t n;
    if (server_name[0] == '[') {
        const char *end = strchr(server_name, ']');
        n = end != NULL ? (size_t)(end - server_name) + 1 : strlen(server_name);
    } else {
        n = strcspn(server_name, ":");
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, server_name, n);
    out[n] = '\0';
}

static bool is_ip_literal(const char *host)
{
    struct in_addr a4;
    return host[0] == '[' || inet_pton(AF_INET, host, &a4) == 1;
}

static bool any_matches(const json_t *list, const char *host)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (json_is_string(e) && ax_glob_match_ci(json_string_value(e), host))
            return true;
    }
    return false;
}

bool ax_server_acl_allows(const json_t *acl, const char *server_name)
{
    /* 1. no m.room.server_acl in state: allow */
    if (acl == NULL)
        return true;
    char host[300];
    host_of(server_name, host, sizeof(host));
    /* 2. IP literals, when allow_ip_literals is false (anything but a boolean counts as true) */
    if (json_is_false(json_object_get(acl, "allow_ip_literals")) && is_ip_literal(host))
        return false;
    /* 3. deny, then 4. allow; lists that are not arrays are empty; 5. otherwise deny */
    if (any_matches(json_object_get(acl, "deny"), host))
        return false;
    return any_matches(json_object_get(acl, "allow"), host);
}

bool ax_room_server_allowed(ax_txn_t *txn, const char *room_id, const char *server_name)
{
    /* m.federate: false (the create event's, kept in the room record): no other server takes part */
    json_t *room = NULL;
    if (ax_db_room_get(txn, room_id, &room) == 0) {
        bool federates = !json_is_false(json_object_get(room, "federate"));
        json_decref(room);
        if (!federates)
            return false;
    }
    json_t *acl = ax_room_state_content(txn, room_id, "m.room.server_acl", "");
    bool ok = ax_server_acl_allows(json_is_object(acl) ? acl : NULL, server_name);
    json_decref(acl);
    return ok;
}

/* ---- visibility for a server ---- */

static int view_member_cb(void *arg, const char *user_id, const char *membership)
{
    ax_server_view_t *v = arg;
    if (!ax_streq(ax_id_domain(user_id), v->server))
        return 0;
    json_array_append_new(v->users, json_string(user_id));
    if (strcmp(membership, "join") == 0)
        v->joined = true;
    return 0;
}

int ax_server_view_init(ax_server_view_t *v, ax_txn_t *txn, const char *room_id, const char *server)
{
    memset(v, 0, sizeof(*v));
    v->txn = txn;
    v->room_id = room_id;
    v->server = server;
    v->users = json_array();
    int rc = ax_db_room_members_foreach(txn, room_id, view_member_cb, v);
    return rc < 0 ? rc : 0;
}

void ax_server_view_dispose(ax_server_view_t *v)
{
    json_decref(v->users);
    v->users = NULL;
}

/* Whether visibility 'hv' lets a user with membership 'm' at the event see it (and the server's presence). */
static bool rule_allows(const ax_server_view_t *v, const char *hv, const char *m)
{
    if (strcmp(hv, "world_readable") == 0)
        return true;
    if (strcmp(m, "join") == 0)
        return true;
    if (strcmp(hv, "invited") == 0 && strcmp(m, "invite") == 0)
        return true;
    /* "shared": all history is visible to those who are in the room now */
    return strcmp(hv, "shared") == 0 && v->joined;
}

/* A timeline event at 'pos', from the position indexes. */
static bool see_at(ax_server_view_t *v, uint64_t pos, bool hv_event)
{
    char hv[32], hv_before[32] = "";
    ax_db_visibility_at(v->txn, v->room_id, pos, hv, sizeof(hv));
    /* a history_visibility event is visible under the setting before it too */
    if (hv_event && pos > 0)
        ax_db_visibility_at(v->txn, v->room_id, pos - 1, hv_before, sizeof(hv_before));
    if (rule_allows(v, hv, "") || (hv_before[0] != '\0' && rule_allows(v, hv_before, "")))
        return true;
    size_t i;
    json_t *u;
    json_array_foreach(v->users, i, u)
    {
        char at[16], before[16] = "";
        ax_db_membership_at(v->txn, v->room_id, json_string_value(u), pos, at, sizeof(at));
        /* the membership before matters for the user's own membership event (their leave) */
        if (pos > 0)
            ax_db_membership_at(v->txn, v->room_id, json_string_value(u), pos - 1, before, sizeof(before));
        if (rule_allows(v, hv, at) || rule_allows(v, hv, before))
            return true;
        if (hv_before[0] != '\0' && (rule_allows(v, hv_before, at) || rule_allows(v, hv_before, before)))
            return true;
    }
    return false;
}

/* A string field of the content of state event 'event_id' into 'out' ("" when none). */
static void state_field(ax_txn_t *txn, const char *event_id, const char *field, char *out, size_t cap)
{
    json_t *ev = NULL;
    out[0] = '\0';
    if (event_id != NULL && ax_db_event_get(txn, event_id, &ev, NULL) == 0) {
        const char *s = json_string_value(json_object_get(json_object_get(ev, "content"), field));
        snprintf(out, cap, "%s", s != NULL ? s : "");
    }
    json_decref(ev);
}

/* An event with no state of its own here (an outlier from a join's auth chain): the room's state now. */
static bool see_now(ax_server_view_t *v)
{
    json_t *c = ax_room_state_content(v->txn, v->room_id, "m.room.history_visibility", "");
    const char *hv = json_string_value(json_object_get(c, "history_visibility"));
    bool ok = rule_allows(v, hv != NULL ? hv : "shared", "");
    size_t i;
    json_t *u;
    json_array_foreach(v->users, i, u)
    {
        char m[16];
        if (ok)
            break;
        ax_room_membership(v->txn, v->room_id, json_string_value(u), m, sizeof(m));
        ok = rule_allows(v, hv != NULL ? hv : "shared", m);
    }
    json_decref(c);
    return ok;
}

/* An outlier or soft-failed event: from the state stored with it. */
static bool see_in_state(ax_server_view_t *v, const char *event_id)
{
    uint64_t group;
    json_t *map = NULL;
    if (ax_db_event_stategroup_get(v->txn, event_id, &group) != 0)
        return see_now(v);
    if (group == 0 || ax_db_stategroup_load(v->txn, group, &map) != 0)
        return false;
    char hv[32];
    state_field(v->txn, ax_state_map_get(map, "m.room.history_visibility", ""), "history_visibility", hv, sizeof(hv));
    if (hv[0] == '\0')
        snprintf(hv, sizeof(hv), "shared"); /* the spec's default */
    bool ok = rule_allows(v, hv, "");
    const char *user;
    json_t *eid;
    json_object_foreach(json_object_get(map, "m.room.member"), user, eid)
    {
        if (ok)
            break;
        if (!ax_streq(ax_id_domain(user), v->server))
            continue;
        char m[16];
        state_field(v->txn, json_string_value(eid), "membership", m, sizeof(m));
        ok = rule_allows(v, hv, m);
    }
    json_decref(map);
    return ok;
}

bool ax_server_view_can_see(ax_server_view_t *v, const char *event_id, const json_t *pdu, const ax_event_rec_t *rec)
{
    if ((rec->flags & AX_EVENT_F_REJECTED) != 0)
        return false;
    if (rec->pos != 0 && (rec->flags & (AX_EVENT_F_OUTLIER | AX_EVENT_F_SOFT_FAILED)) == 0) {
        bool hv_event = ax_streq(json_string_value(json_object_get(pdu, "type")), "m.room.history_visibility") &&
                        ax_streq(json_string_value(json_object_get(pdu, "state_key")), "");
        return see_at(v, rec->pos, hv_event);
    }
    return see_in_state(v, event_id);
}
