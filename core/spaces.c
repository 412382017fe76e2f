/*
 * spaces.c -- room summaries and the space hierarchy (spec: Client-Server
 * API "Spaces"; space_hierarchy.yaml, m.space.child, public_rooms_chunk.yaml).
 * Exports ax_room_summary(), ax_room_user_may_preview() and
 * ax_space_hierarchy().
 *
 * The hierarchy is a depth-first walk from the root over m.space.child
 * events, children in the spec's order, each room listed the first time the
 * walk reaches it (so loops end and a room under two parents appears once).
 * A room the user may not preview is left out with everything under it.
 * The walk is deterministic for a given state, which is what lets a page
 * resume it by counting the rooms earlier pages returned.
 */
#include "core/rooms.h"
#include "common/strmap.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the summary of a room ---- */

static int count_joined(void *arg, const char *user_id, const char *membership)
{
    (void)user_id;
    if (strcmp(membership, "join") == 0)
        (*(json_int_t *)arg)++;
    return 0;
}

/* content.'field' of current state (type, "") as a string (borrowed from '*hold'), or NULL. */
static const char *state_str(ax_txn_t *txn, const char *room_id, const char *type, const char *field, json_t **hold)
{
    *hold = ax_room_state_content(txn, room_id, type, "");
    return json_string_value(json_object_get(*hold, field));
}

json_t *ax_room_summary(ax_txn_t *txn, const char *room_id)
{
    if (ax_room_version_of(txn, room_id) == NULL)
        return NULL;
    json_t *h[8] = {NULL};
    const char *name = state_str(txn, room_id, "m.room.name", "name", &h[0]);
    const char *topic = state_str(txn, room_id, "m.room.topic", "topic", &h[1]);
    const char *avatar = state_str(txn, room_id, "m.room.avatar", "url", &h[2]);
    const char *alias = state_str(txn, room_id, "m.room.canonical_alias", "alias", &h[3]);
    const char *join_rule = state_str(txn, room_id, "m.room.join_rules", "join_rule", &h[4]);
    const char *hv = state_str(txn, room_id, "m.room.history_visibility", "history_visibility", &h[5]);
    const char *guest = state_str(txn, room_id, "m.room.guest_access", "guest_access", &h[6]);
    const char *room_type = state_str(txn, room_id, "m.room.create", "type", &h[7]);
    json_int_t joined = 0;
    ax_db_room_members_foreach(txn, room_id, count_joined, &joined);
    json_t *c = json_pack("{s:s, s:I, s:b, s:b}", "room_id", room_id, "num_joined_members", joined, "world_readable",
                          ax_streq(hv, "world_readable"), "guest_can_join", ax_streq(guest, "can_join"));
    if (name != NULL)
        json_object_set_new(c, "name", json_string(name));
    if (topic != NULL)
        json_object_set_new(c, "topic", json_string(topic));
    if (avatar != NULL)
        json_object_set_new(c, "avatar_url", json_string(avatar));
    if (alias != NULL)
        json_object_set_new(c, "canonical_alias", json_string(alias));
    if (join_rule != NULL)
        json_object_set_new(c, "join_rule", json_string(join_rule));
    if (room_type != NULL)
        json_object_set_new(c, "room_type", json_string(room_type));
    for (size_t i = 0; i < AX_ARRAY_SIZE(h); ++i)
        json_decref(h[i]);
    return c;
}

/* ---- who may preview a room ---- */

/* The room IDs of a restricted join rule's m.room_membership conditions (a new array). */
static json_t *allowed_rooms(const json_t *join_rules)
{
    json_t *out = json_array();
    size_t i;
    json_t *cond;
    json_array_foreach(json_object_get(join_rules, "allow"), i, cond)
    {
        json_t *room = json_object_get(cond, "room_id");
        if (ax_streq(json_string_value(json_object_get(cond, "type")), "m.room_membership") && json_is_string(room))
            json_array_append(out, room);
    }
    return out;
}

/*
 * space_hierarchy.yaml, "rooms": a room is listed when the user is joined or
 * invited, may join it (public, or restricted to a room they are in), may
 * knock on it, or may read it (world_readable).  A banned user is left out
 * whatever the room allows: they may do none of it (the spec's 403 names
 * banning).  'allowed' is the restricted rule's room IDs (may be NULL).
 */
static bool may_preview(ax_txn_t *txn, const char *user_id, const char *membership, const char *join_rule,
                        bool world_readable, bool knock_ok, bool knock_restricted_ok, bool restricted_ok,
                        const json_t *allowed)
{
    if (ax_streq(membership, "ban"))
        return false;
    if (ax_streq(membership, "join") || ax_streq(membership, "invite") || ax_streq(join_rule, "public") ||
        world_readable)
        return true;
    if ((knock_ok && ax_streq(join_rule, "knock")) || (knock_restricted_ok && ax_streq(join_rule, "knock_restricted")))
        return true;
    if ((restricted_ok && ax_streq(join_rule, "restricted")) ||
        (knock_restricted_ok && ax_streq(join_rule, "knock_restricted"))) {
        size_t i;
        json_t *room;
        json_array_foreach(allowed, i, room)
        {
            char m[16];
            ax_room_membership(txn, json_string_value(room), user_id, m, sizeof(m));
            if (strcmp(m, "join") == 0)
                return true;
        }
    }
    return false;
}

bool ax_room_user_may_preview(ax_txn_t *txn, const char *room_id, const char *user_id)
{
    const ax_room_version_t *rv = ax_room_version_of(txn, room_id);
    if (rv == NULL)
        return false;
    char m[16];
    ax_room_membership(txn, room_id, user_id, m, sizeof(m));
    json_t *jr = ax_room_state_content(txn, room_id, "m.room.join_rules", "");
    json_t *hv = ax_room_state_content(txn, room_id, "m.room.history_visibility", "");
    json_t *allowed = allowed_rooms(jr);
    bool ok = may_preview(txn, user_id, m, json_string_value(json_object_get(jr, "join_rule")),
                          ax_streq(json_string_value(json_object_get(hv, "history_visibility")), "world_readable"),
                          rv->knock, rv->knock_restricted, rv->restricted, allowed);
    json_decref(allowed);
    json_decref(jr);
    json_decref(hv);
    return ok;
}

/* ---- children ---- */

/* m.space.child 'order': at most 50 characters from \x20 to \x7E; anything else counts as absent. */
static const char *valid_order(const json_t *content)
{
    const char *o = json_string_value(json_object_get(content, "order"));
    if (o == NULL || strlen(o) > 50)
        return NULL;
    for (const char *p = o; *p != '\0'; ++p)
        if (*p < 0x20 || *p > 0x7e)
            return NULL;
    return o;
}

/* A link counts while its content has a non-empty 'via' of strings (an emptied or redacted one is removed). */
static bool valid_via(const json_t *content)
{
    json_t *via = json_object_get(content, "via");
    if (!json_is_array(via) || json_array_size(via) == 0)
        return false;
    size_t i;
    json_t *v;
    json_array_foreach(via, i, v)
    {
        if (!json_is_string(v))
            return false;
    }
    return true;
}

/*
 * Spaces, "Ordering of children within a space": children with a valid
 * 'order' first, by order (code points; ASCII, so bytes), then the others;
 * ties by the m.space.child event's origin_server_ts, then by room ID.
 */
static int child_cmp(const void *pa, const void *pb)
{
    const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
    const char *oa = valid_order(json_object_get(a, "content")), *ob = valid_order(json_object_get(b, "content"));
    if ((oa == NULL) != (ob == NULL))
        return oa != NULL ? -1 : 1;
    int c = oa != NULL ? strcmp(oa, ob) : 0;
    if (c != 0)
        return c;
    json_int_t ta = json_integer_value(json_object_get(a, "origin_server_ts"));
    json_int_t tb = json_integer_value(json_object_get(b, "origin_server_ts"));
    if (ta != tb)
        return ta < tb ? -1 : 1;
    return strcmp(json_string_value(json_object_get(a, "state_key")),
                  json_string_value(json_object_get(b, "state_key")));
}

/*
 * Keeps the links of 'events' (stripped m.space.child events with
 * origin_server_ts: StrippedChildStateEvent) that count -- a room ID as
 * state key, a valid via, suggested when 'suggested_only' -- in the spec's
 * order.  Returns a new array.
 */
static json_t *children_sorted(const json_t *events, bool suggested_only)
{
    size_t n = 0, i;
    json_t *ev;
    json_t **items = ax_malloc((json_array_size(events) + 1) * sizeof(*items));
    json_array_foreach(events, i, ev)
    {
        const char *room = json_string_value(json_object_get(ev, "state_key"));
        json_t *content = json_object_get(ev, "content");
        if (!ax_streq(json_string_value(json_object_get(ev, "type")), "m.space.child") || room == NULL ||
            room[0] != '!' || strlen(room) > 255 || !valid_via(content) ||
            (suggested_only && !json_is_true(json_object_get(content, "suggested"))))
            continue;
        items[n++] = ev;
    }
    qsort(items, n, sizeof(*items), child_cmp);
    json_t *out = json_array();
    for (i = 0; i < n; ++i)
        json_array_append(out, items[i]);
    free(items);
    return out;
}

typedef struct st_child_scan_t {
    ax_txn_t *txn;
    json_t *events;
} child_scan_t;

static int child_cb(void *arg, const char *type, const char *state_key, const char *event_id)
{
    child_scan_t *c = arg;
    json_t *pdu = NULL;
    if (ax_db_event_get(c->txn, event_id, &pdu, NULL) != 0)
        return 0;
    json_t *content = json_object_get(pdu, "content");
    json_array_append_new(c->events,
                          json_pack("{s:s, s:s, s:O, s:O, s:O}", "type", type, "state_key", state_key, "content",
                                    content ? content : json_object(), "sender", json_object_get(pdu, "sender"),
                                    "origin_server_ts", json_object_get(pdu, "origin_server_ts")));
    json_decref(pdu);
    return 0;
}

/* The m.space.child events of local room 'room_id' as StrippedChildStateEvents (a new array). */
static json_t *local_children(ax_txn_t *txn, const char *room_id)
{
    child_scan_t c = {txn, json_array()};
    ax_db_state_foreach(txn, room_id, "m.space.child", child_cb, &c);
    return c.events;
}

/* ---- one room of the walk ---- */

/*
 * What the walk knows of a room: its SpaceHierarchyRoomsChunk without
 * children_state ('entry'), its links ('children', ordered and filtered)
 * and whether the user may see it.  NULL when nobody knows the room.
 */
typedef struct st_room_t {
    json_t *entry;
    json_t *children;
    bool visible;
} room_t;

static bool resolve_local(ax_txn_t *txn, const char *room_id, const ax_space_walk_t *w, room_t *out)
{
    json_t *room = NULL;
    if (ax_db_room_get(txn, room_id, &room) != 0)
        return false;
    const char *version = json_string_value(json_object_get(room, "room_version"));
    out->visible = ax_room_user_may_preview(txn, room_id, w->user_id);
    out->entry = ax_room_summary(txn, room_id);
    if (out->entry == NULL) {
        json_decref(room);
        return false;
    }
    if (version != NULL)
        json_object_set_new(out->entry, "room_version", json_string(version));
    json_decref(room);
    json_t *enc = ax_room_state_content(txn, room_id, "m.room.encryption", "");
    if (ax_streq(json_string_value(json_object_get(enc, "algorithm")), "m.megolm.v1.aes-sha2"))
        json_object_set_new(out->entry, "encryption", json_string("m.megolm.v1.aes-sha2"));
    json_decref(enc);
    const char *jr = json_string_value(json_object_get(out->entry, "join_rule"));
    if (ax_streq(jr, "restricted") || ax_streq(jr, "knock_restricted")) {
        json_t *rules = ax_room_state_content(txn, room_id, "m.room.join_rules", "");
        json_object_set_new(out->entry, "allowed_room_ids", allowed_rooms(rules));
        json_decref(rules);
    }
    /* spec: "If the room is not a space-room, this should be empty" -- its links are not followed */
    json_t *events = ax_streq(json_string_value(json_object_get(out->entry, "room_type")), "m.space")
                         ? local_children(txn, room_id)
                         : json_array();
    out->children = children_sorted(events, w->suggested_only);
    json_decref(events);
    return true;
}

/* A room only other servers know: what w->remote says of it, judged like a local one. */
static bool resolve_remote(ax_txn_t *txn, const char *room_id, const json_t *via, const ax_space_walk_t *w, room_t *out)
{
    json_t *summary = w->remote != NULL ? w->remote(w->remote_arg, room_id, via) : NULL;
    if (!json_is_object(summary) || !ax_streq(json_string_value(json_object_get(summary, "room_id")), room_id)) {
        json_decref(summary);
        return false;
    }
    char m[16];
    ax_room_membership(txn, room_id, w->user_id, m, sizeof(m)); /* an invite we hold, say */
    out->visible = may_preview(txn, w->user_id, m, json_string_value(json_object_get(summary, "join_rule")),
                               json_is_true(json_object_get(summary, "world_readable")), true, true, true,
                               json_object_get(summary, "allowed_room_ids"));
    out->children = ax_streq(json_string_value(json_object_get(summary, "room_type")), "m.space")
                        ? children_sorted(json_object_get(summary, "children_state"), w->suggested_only)
                        : json_array();
    out->entry = json_deep_copy(summary);
    json_object_del(out->entry, "children_state");
    json_decref(summary);
    return true;
}

/* ---- the walk ---- */

typedef struct st_frame_t {
    char *room_id;
    json_t *via; /* the link's via (a reference), NULL for the root */
    unsigned depth;
} frame_t;

typedef struct st_stack_t {
    frame_t *items;
    size_t n, cap;
} walk_stack_t;

static void push(walk_stack_t *s, const char *room_id, json_t *via, unsigned depth)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->items = ax_realloc(s->items, s->cap * sizeof(*s->items));
    }
    s->items[s->n++] = (frame_t){ax_strdup(room_id), json_incref(via), depth};
}

int ax_space_hierarchy(ax_txn_t *txn, const char *root, ax_space_walk_t *w)
{
    walk_stack_t stack = {NULL, 0, 0};
    ax_strmap_t seen = AX_STRMAP_INIT;
    size_t listed = 0; /* rooms listed, this page's and earlier pages' */
    int rc = 0;
    w->rooms = json_array();
    w->more = false;
    push(&stack, root, NULL, 0);
    while (stack.n > 0) {
        frame_t f = stack.items[--stack.n];
        room_t room = {NULL, NULL, false};
        bool known = false, stop = false;
        if (ax_strmap_get(&seen, f.room_id) != NULL) {
            /* reached before (a loop, or a second parent): listed or left out then */
        } else if (seen.size >= w->max_rooms) {
            stop = true; /* a bound on the work of one request; what lies beyond is not listed */
        } else {
            ax_strmap_put(&seen, f.room_id, (void *)1);
            known = resolve_local(txn, f.room_id, w, &room) || resolve_remote(txn, f.room_id, f.via, w, &room);
        }
        if (f.depth == 0 && (!known || !room.visible)) {
            rc = known ? AX_EFORBIDDEN : AX_ENOTFOUND;
            stop = true;
        } else if (known && room.visible) {
            if (listed >= w->skip && json_array_size(w->rooms) == w->limit) {
                w->more = true; /* the next page starts with this room */
                stop = true;
            } else {
                if (listed >= w->skip) {
                    json_object_set(room.entry, "children_state", room.children);
                    json_array_append(w->rooms, room.entry);
                }
                listed++;
                if (f.depth < w->max_depth) {
                    /* reversed onto the stack, so the first child is walked next */
                    for (size_t i = json_array_size(room.children); i-- > 0;) {
                        json_t *link = json_array_get(room.children, i);
                        push(&stack, json_string_value(json_object_get(link, "state_key")),
                             json_object_get(json_object_get(link, "content"), "via"), f.depth + 1);
                    }
                }
            }
        }
        json_decref(room.entry);
        json_decref(room.children);
        free(f.room_id);
        json_decref(f.via);
        if (stop)
            break;
    }
    while (stack.n > 0) {
        free(stack.items[--stack.n].room_id);
        json_decref(stack.items[stack.n].via);
    }
    free(stack.items);
    ax_strmap_dispose(&seen);
    if (rc != 0) {
        json_decref(w->rooms);
        w->rooms = NULL;
    }
    return rc;
}

/* ---- the public room directory ---- */

typedef struct st_dir_walk_t {
    ax_txn_t *txn;
    json_t *rooms;
    const char *term; /* lower-cased, or NULL */
    const json_t *room_types;
    ax_room_describe_fn describe;
    void *arg;
} dir_walk_t;

static bool contains_ci(const char *hay, const char *needle)
{
    if (hay == NULL)
        return false;
    size_t n = strlen(needle);
    for (; *hay; ++hay)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

static int dir_cb(void *arg, const char *room_id)
{
    dir_walk_t *w = arg;
    json_t *c = w->describe(w->txn, room_id, w->arg);
    if (c == NULL)
        return 0;
    const char *room_type = json_string_value(json_object_get(c, "room_type"));
    bool keep = w->term == NULL || contains_ci(json_string_value(json_object_get(c, "name")), w->term) ||
                contains_ci(json_string_value(json_object_get(c, "topic")), w->term) ||
                contains_ci(json_string_value(json_object_get(c, "canonical_alias")), w->term);
    if (keep && json_is_array(w->room_types)) {
        bool any = false;
        size_t i;
        json_t *t;
        json_array_foreach(w->room_types, i, t)
        {
            any = any || (json_is_null(t) ? room_type == NULL : ax_streq(json_string_value(t), room_type));
        }
        keep = any;
    }
    if (keep)
        json_array_append(w->rooms, c);
    json_decref(c);
    return json_array_size(w->rooms) >= AX_PUBLIC_ROOMS_MAX * 10;
}

/* Largest rooms first, then by room ID: a stable order for pagination. */
static int by_members(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t nx = json_integer_value(json_object_get(x, "num_joined_members"));
    json_int_t ny = json_integer_value(json_object_get(y, "num_joined_members"));
    if (nx != ny)
        return nx > ny ? -1 : 1;
    return strcmp(json_string_value(json_object_get(x, "room_id")), json_string_value(json_object_get(y, "room_id")));
}

json_t *ax_room_directory_page(ax_txn_t *txn, uint64_t offset, uint64_t limit, const char *term,
                               const json_t *room_types, ax_room_describe_fn describe, void *arg)
{
    char *lower = NULL;
    if (term != NULL && term[0] != '\0') {
        lower = ax_strdup(term);
        for (char *c = lower; *c; ++c)
            *c = (char)tolower((unsigned char)*c);
    }
    dir_walk_t w = {txn, json_array(), lower, room_types, describe, arg};
    ax_db_directory_foreach(txn, NULL, dir_cb, &w);
    free(lower);

    size_t n = json_array_size(w.rooms);
    json_t **items = ax_malloc((n + 1) * sizeof(*items));
    for (size_t i = 0; i < n; ++i)
        items[i] = json_array_get(w.rooms, i);
    qsort(items, n, sizeof(*items), by_members);
    if (limit == 0 || limit > AX_PUBLIC_ROOMS_MAX)
        limit = AX_PUBLIC_ROOMS_MAX;
    json_t *chunk = json_array();
    for (size_t i = (size_t)offset; i < n && i < offset + limit; ++i)
        json_array_append(chunk, items[i]);
    free(items);
    json_t *out = json_pack("{s:o, s:I}", "chunk", chunk, "total_room_count_estimate", (json_int_t)n);
    if (offset + limit < n)
        json_object_set_new(out, "next_batch", json_sprintf("o%llu", (unsigned long long)(offset + limit)));
    if (offset > 0)
        json_object_set_new(out, "prev_batch",
                            json_sprintf("o%llu", (unsigned long long)(offset > limit ? offset - limit : 0)));
    json_decref(w.rooms);
    return out;
}
