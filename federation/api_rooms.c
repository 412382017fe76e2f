/*
 * api_rooms.c -- rooms described to other servers (spec: Server-Server
 * API "Published Room Directory", "Spaces"; public_rooms.yaml,
 * space_hierarchy.yaml): GET and POST /publicRooms (this server's own
 * directory, filtered and paginated like the client API's) and GET
 * /hierarchy/{roomId} (a local space and its children, unpaginated, as far
 * as the asking server could peek or join them).
 *
 * Both are AX_ROUTE_FED.  Rooms that do not federate (m.federate false) and
 * rooms whose server ACL denies the asking server are never described.
 * Room summaries are the client API's (core/spaces.c's ax_room_summary);
 * who may see a room is judged for a server here, and the federation
 * hierarchy is one level deep and unpaginated, unlike the client's walk.
 */
#include "server/handlers.h"
#include "core/servers.h"

#include <stdlib.h>
#include <string.h>

#define HIERARCHY_MAX   50 /* most children of one space described (Synapse's MAX_ROOMS_PER_SPACE) */
#define SPACE_ORDER_MAX 50 /* m.space.child "order": at most 50 characters */
#define MEGOLM          "m.megolm.v1.aes-sha2"

/* ---- room summaries ---- */

/*
 * The summary of local room 'room_id' (a new reference): the shared
 * PublishedRoomsChunk (core/spaces.c's ax_room_summary), and with 'full'
 * what a RoomSummary adds (room_summary.yaml: allowed_room_ids,
 * encryption, room_version).  NULL for a room this server does not know.
 */
static json_t *summary(ax_txn_t *txn, const char *room_id, bool full)
{
    json_t *c = ax_room_summary(txn, room_id);
    if (c == NULL || !full)
        return c;
    json_t *jr = ax_room_state_content(txn, room_id, "m.room.join_rules", "");
    json_t *enc = ax_room_state_content(txn, room_id, "m.room.encryption", "");
    json_t *allowed = json_array();
    size_t i;
    json_t *rule;
    json_array_foreach(json_object_get(jr, "allow"), i, rule)
    {
        const char *id = json_string_value(json_object_get(rule, "room_id"));
        if (ax_streq(json_string_value(json_object_get(rule, "type")), "m.room_membership") && id != NULL &&
            id[0] == '!')
            json_array_append_new(allowed, json_string(id));
    }
    if (json_array_size(allowed) != 0)
        json_object_set_new(c, "allowed_room_ids", allowed);
    else
        json_decref(allowed);
    if (ax_streq(json_string_value(json_object_get(enc, "algorithm")), MEGOLM))
        json_object_set_new(c, "encryption", json_string(MEGOLM));
    const ax_room_version_t *rv = ax_room_version_of(txn, room_id);
    if (rv != NULL)
        json_object_set_new(c, "room_version", json_string(rv->id));
    json_decref(jr);
    json_decref(enc);
    return c;
}

/* Whether the room is described to 'server' at all: it is known, federates, and its ACL lets the server in. */
static bool described_to(ax_txn_t *txn, const char *room_id, const char *server)
{
    json_t *room = NULL;
    if (ax_db_room_get(txn, room_id, &room) != 0)
        return false;
    json_decref(room);
    return ax_room_server_allowed(txn, room_id, server);
}

/* ---- /publicRooms ---- */

/* A summary of the room for the asking server ('arg'), or NULL when it is not to see the room. */
static json_t *describe_to(ax_txn_t *txn, const char *room_id, void *arg)
{
    return described_to(txn, room_id, arg) ? summary(txn, room_id, false) : NULL;
}

static int public_rooms(ax_req_t *r, uint64_t limit, const char *since, const char *term, json_t *room_types,
                        const char *instance)
{
    uint64_t offset = 0;
    if (since != NULL && (since[0] != 'o' || ax_parse_u64(since + 1, &offset) != 0))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid 'since' token");
    /* this server bridges no third-party networks: a named instance has no rooms here */
    if (instance != NULL)
        return ax_reply_json_new(r, 200, json_pack("{s:[], s:i}", "chunk", "total_room_count_estimate", 0));
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    /* "Defaults to 0 (no limit)": ours is one page */
    json_t *out = ax_room_directory_page(txn, offset, limit, term, room_types, describe_to, (void *)r->auth.server);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, out);
}

/* A query flag "true"/"false"; replies 400 and returns -1 for anything else. */
static int query_bool_or_reply(ax_req_t *r, const char *name, bool *out)
{
    const char *v = ax_req_query(r, name);
    *out = false;
    if (v == NULL || strcmp(v, "false") == 0)
        return 0;
    if (strcmp(v, "true") == 0) {
        *out = true;
        return 0;
    }
    ax_reply_error(r, AX_M_INVALID_PARAM, ax_psprintf(r, "'%s' must be true or false", name));
    return -1;
}

/* GET /_matrix/federation/v1/publicRooms */
int ax_fed_rooms_public_get(ax_req_t *r)
{
    const char *limit_s = ax_req_query(r, "limit");
    uint64_t limit = 0;
    bool all_networks;
    if (limit_s != NULL && ax_parse_u64(limit_s, &limit) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'limit' must be a non-negative integer");
    if (query_bool_or_reply(r, "include_all_networks", &all_networks) != 0)
        return 0;
    const char *instance = ax_req_query(r, "third_party_instance_id");
    if (all_networks && instance != NULL)
        return ax_reply_error(r, AX_M_INVALID_PARAM,
                              "third_party_instance_id cannot be combined with include_all_networks");
    return public_rooms(r, limit, ax_req_query(r, "since"), NULL, NULL, instance);
}

/* POST /_matrix/federation/v1/publicRooms */
int ax_fed_rooms_public_post(ax_req_t *r)
{
    json_t *body, *filter = NULL, *room_types = NULL;
    json_int_t limit = 0;
    bool all_networks;
    const char *since, *term = NULL, *instance;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_int_or_reply(r, body, "limit", false, &limit) != 0 ||
        ax_field_string_or_reply(r, body, "since", false, &since) != 0 ||
        ax_field_object_or_reply(r, body, "filter", false, &filter) != 0 ||
        ax_field_bool_or_reply(r, body, "include_all_networks", false, &all_networks) != 0 ||
        ax_field_string_or_reply(r, body, "third_party_instance_id", false, &instance) != 0)
        return 0;
    if (filter != NULL && (ax_field_string_or_reply(r, filter, "generic_search_term", false, &term) != 0 ||
                           ax_field_array_or_reply(r, filter, "room_types", false, &room_types) != 0))
        return 0;
    if (limit < 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'limit' must not be negative");
    if (all_networks && instance != NULL)
        return ax_reply_error(r, AX_M_INVALID_PARAM,
                              "third_party_instance_id cannot be combined with include_all_networks");
    size_t i;
    json_t *t;
    json_array_foreach(room_types, i, t)
    {
        if (!json_is_string(t) && !json_is_null(t))
            return ax_reply_error(r, AX_M_BAD_JSON, "room_types must hold strings or null");
    }
    return public_rooms(r, (uint64_t)limit, since, term, room_types, instance);
}

/* ---- /hierarchy ---- */

typedef struct st_peek_t {
    const char *server;
    bool in; /* one of the server's users is joined (or, with 'invited_counts', invited) */
    bool invited_counts;
} peek_t;

static int peek_cb(void *arg, const char *user_id, const char *membership)
{
    peek_t *p = arg;
    if (ax_streq(ax_id_domain(user_id), p->server) &&
        (strcmp(membership, "join") == 0 || (p->invited_counts && strcmp(membership, "invite") == 0)))
        p->in = true;
    return p->in;
}

static bool server_in_room(ax_txn_t *txn, const char *room_id, const char *server, bool invited_counts)
{
    peek_t p = {server, false, invited_counts};
    ax_db_room_members_foreach(txn, room_id, peek_cb, &p);
    return p.in;
}

/*
 * Whether 'server' could peek or join local room 'room_id' (Synapse's
 * _is_local_room_accessible for a server): a public or knockable room, a
 * world_readable one, one it has a joined or invited user in, or a
 * restricted one whose allowed rooms it is in.  Never when the room does
 * not federate or its ACL denies the server.
 */
static bool accessible(ax_txn_t *txn, const char *room_id, const char *server)
{
    if (!described_to(txn, room_id, server))
        return false;
    const ax_room_version_t *rv = ax_room_version_of(txn, room_id);
    json_t *jr = ax_room_state_content(txn, room_id, "m.room.join_rules", "");
    json_t *hv = ax_room_state_content(txn, room_id, "m.room.history_visibility", "");
    const char *rule = json_string_value(json_object_get(jr, "join_rule"));
    bool ok = ax_streq(rule, "public") || (rv != NULL && rv->knock && ax_streq(rule, "knock")) ||
              (rv != NULL && rv->knock_restricted && ax_streq(rule, "knock_restricted")) ||
              ax_streq(json_string_value(json_object_get(hv, "history_visibility")), "world_readable") ||
              server_in_room(txn, room_id, server, true);
    if (!ok && rv != NULL && rv->restricted &&
        (ax_streq(rule, "restricted") || (rv->knock_restricted && ax_streq(rule, "knock_restricted")))) {
        size_t i;
        json_t *allow;
        json_array_foreach(json_object_get(jr, "allow"), i, allow)
        {
            const char *id = json_string_value(json_object_get(allow, "room_id"));
            if (ax_streq(json_string_value(json_object_get(allow, "type")), "m.room_membership") && id != NULL &&
                server_in_room(txn, id, server, false)) {
                ok = true;
                break;
            }
        }
    }
    json_decref(jr);
    json_decref(hv);
    return ok;
}

typedef struct st_children_t {
    ax_txn_t *txn;
    bool suggested_only;
    json_t *links; /* [stripped m.space.child event with origin_server_ts] */
} children_t;

static int child_cb(void *arg, const char *type, const char *state_key, const char *event_id)
{
    (void)type;
    children_t *c = arg;
    json_t *ev = NULL;
    if (ax_db_event_get(c->txn, event_id, &ev, NULL) != 0)
        return 0;
    json_t *content = json_object_get(ev, "content");
    json_t *via = json_object_get(content, "via");
    /* a link without servers to reach the room through is no link (spec "m.space.child") */
    bool valid = state_key[0] == '!' && json_is_array(via) && json_array_size(via) != 0;
    if (valid && c->suggested_only)
        valid = json_is_true(json_object_get(content, "suggested"));
    if (valid)
        json_array_append_new(c->links,
                              json_pack("{s:s, s:s, s:O, s:O, s:O}", "type", "m.space.child", "state_key", state_key,
                                        "content", content, "sender", json_object_get(ev, "sender"), "origin_server_ts",
                                        json_object_get(ev, "origin_server_ts")));
    json_decref(ev);
    return json_array_size(c->links) >= HIERARCHY_MAX * 4;
}

/* A usable "order": a string of 1-50 printable ASCII characters. */
static const char *link_order(const json_t *link)
{
    const char *o = json_string_value(json_object_get(json_object_get(link, "content"), "order"));
    if (o == NULL || o[0] == '\0' || strlen(o) > SPACE_ORDER_MAX)
        return NULL;
    for (const char *p = o; *p; ++p)
        if (*p < 0x20 || *p > 0x7e)
            return NULL;
    return o;
}

/* The spec's order of children: by "order" (those with one first), then origin_server_ts, then room ID. */
static int by_order(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    const char *ox = link_order(x), *oy = link_order(y);
    if ((ox == NULL) != (oy == NULL))
        return ox != NULL ? -1 : 1;
    int c = ox != NULL ? strcmp(ox, oy) : 0;
    if (c != 0)
        return c;
    json_int_t tx = json_integer_value(json_object_get(x, "origin_server_ts"));
    json_int_t ty = json_integer_value(json_object_get(y, "origin_server_ts"));
    if (tx != ty)
        return tx < ty ? -1 : 1;
    return strcmp(json_string_value(json_object_get(x, "state_key")),
                  json_string_value(json_object_get(y, "state_key")));
}

/* GET /_matrix/federation/v1/hierarchy/{roomId} */
int ax_fed_rooms_hierarchy(ax_req_t *r)
{
    const char *room_id = r->params[0];
    bool suggested_only;
    if (query_bool_or_reply(r, "suggested_only", &suggested_only) != 0)
        return 0;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    /* a room we are no longer in is not ours to describe: what we know of it may be stale */
    if (!server_in_room(txn, room_id, r->srv->cfg->server_name, false) || !accessible(txn, room_id, r->auth.server)) {
        ax_db_read_end(txn);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Room does not exist or cannot be peeked or joined");
    }
    json_t *root = summary(txn, room_id, true);
    children_t c = {txn, suggested_only, json_array()};
    ax_db_state_foreach(txn, room_id, "m.space.child", child_cb, &c);
    size_t n = json_array_size(c.links);
    json_t **sorted = ax_malloc((n + 1) * sizeof(*sorted));
    for (size_t i = 0; i < n; ++i)
        sorted[i] = json_array_get(c.links, i);
    qsort(sorted, n, sizeof(*sorted), by_order);
    json_t *children_state = json_array(), *children = json_array(), *inaccessible = json_array();
    for (size_t i = 0; i < n; ++i) {
        json_array_append(children_state, sorted[i]);
        if (i >= HIERARCHY_MAX)
            continue;
        const char *child = json_string_value(json_object_get(sorted[i], "state_key"));
        if (!server_in_room(txn, child, r->srv->cfg->server_name, false))
            continue; /* not known here (or no longer): the asking server must ask another */
        if (accessible(txn, child, r->auth.server))
            json_array_append_new(children, summary(txn, child, true));
        else
            json_array_append_new(inaccessible, json_string(child));
    }
    free(sorted);
    json_decref(c.links);
    ax_db_read_end(txn);
    json_object_set_new(root, "children_state", children_state);
    return ax_reply_json_new(
        r, 200,
        json_pack("{s:o, s:o, s:o}", "room", root, "children", children, "inaccessible_children", inaccessible));
}
