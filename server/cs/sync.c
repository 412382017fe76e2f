/*
 * sync.c -- GET /sync (spec: Client-Server API "Syncing"; sync.yaml) with
 * long-poll wake-ups (DESIGN.md "Streams, sync and wake-ups").
 *
 * Tokens: "s<pos>_<typing>": every persistent stream (room events, account
 * data, receipts, ...) shares the writer's one position counter, so one
 * number says what a client has seen; typing, being in memory, has its own
 * serial.  Everything read is bounded by the position read before the read
 * transaction began, so an event is in exactly one response.
 *
 * When nothing is new and the client gave a timeout, the request parks on
 * the user's ID; the writer's commit hook (or a typing change) wakes it and
 * the whole sync runs again.
 */
#include "server/cs/cs.h"
#include "common/json.h"
#include "common/strmap.h"
#include "core/filter.h"
#include "core/push.h"
#include "core/rooms.h"
#include "server/changes.h"
#include "server/typing.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMELINE_LIMIT 10
#define MAX_TIMEOUT_MS         (5ULL * 60 * 1000)
#define MAX_HEROES             5
#define HEAVY_ROOMS            50 /* changed rooms above which a sync runs on a worker */

typedef struct st_sync_t {
    ax_server_t *srv;
    const char *user_id;
    const char *device_id;
    uint64_t since; /* 0: initial sync */
    uint64_t since_typing;
    bool full_state;
    uint64_t timeout_ms;
    json_t *filter; /* borrowed from the request (held) */
    const char *set_presence;
    /* computed per run */
    json_t *ignored; /* {user_id: {}} from m.ignored_user_list, or NULL */
    uint64_t upto;   /* stream position of this run */
    uint64_t typing_now;
    ax_txn_t *txn;
    uint64_t now_ms;
    bool ack_to_device;  /* to-device messages up to 'since' wait to be deleted */
    bool share_timeline; /* on an HTTP thread: may use and fill its shared timelines */
} sync_t;

/* ---- tokens ---- */

/* Parses "s<pos>_<typing>" (or a bare number, as some clients keep older forms). */
static bool parse_token(const char *s, uint64_t *pos, uint64_t *typing)
{
    char a[24], b[24];
    *typing = 0;
    if (s[0] != 's')
        return false;
    const char *us = strchr(s + 1, '_');
    size_t alen = us ? (size_t)(us - s - 1) : strlen(s + 1);
    if (alen == 0 || alen >= sizeof(a))
        return false;
    memcpy(a, s + 1, alen);
    a[alen] = '\0';
    if (ax_parse_u64(a, pos) != 0)
        return false;
    if (us != NULL) {
        if (strlen(us + 1) >= sizeof(b) || ax_parse_u64(us + 1, typing) != 0)
            return false;
        snprintf(b, sizeof(b), "%s", us + 1);
    }
    return true;
}

/* ---- filters ---- */

static json_t *room_filter(sync_t *s, const char *section)
{
    return json_object_get(json_object_get(s->filter, "room"), section);
}

/* Trims an event to the filter's event_fields ("content.body", "type", ...). */
static json_t *apply_event_fields(sync_t *s, json_t *ev)
{
    json_t *fields = json_object_get(s->filter, "event_fields");
    if (!json_is_array(fields))
        return ev;
    json_t *out = json_object();
    size_t i;
    json_t *f;
    json_array_foreach(fields, i, f)
    {
        const char *path = json_string_value(f);
        if (path == NULL)
            continue;
        /* split "a.b.c" (a backslash escapes a dot), find the leaf, then copy it with its path */
        char parts[8][128];
        size_t nparts = 0;
        const char *p = path;
        while (*p != '\0' && nparts < 8) {
            size_t n = 0;
            while (*p != '\0' && *p != '.' && n + 1 < sizeof(parts[0])) {
                if (*p == '\\' && p[1] != '\0')
                    ++p;
                parts[nparts][n++] = *p++;
            }
            parts[nparts++][n] = '\0';
            if (*p == '.')
                ++p;
        }
        json_t *leaf = ev;
        for (size_t k = 0; k < nparts && leaf != NULL; ++k)
            leaf = json_is_object(leaf) ? json_object_get(leaf, parts[k]) : NULL;
        if (leaf == NULL || nparts == 0)
            continue;
        json_t *dst = out;
        for (size_t k = 0; k + 1 < nparts; ++k) {
            json_t *child = json_object_get(dst, parts[k]);
            if (!json_is_object(child)) {
                child = json_object();
                json_object_set_new(dst, parts[k], child);
            }
            dst = child;
        }
        json_object_set(dst, parts[nparts - 1], leaf);
    }
    json_decref(ev);
    return out;
}

/* Whether the filter wants events in the client format (the default), not the federation one. */
static bool client_format(sync_t *s)
{
    return !ax_streq(json_string_value(json_object_get(s->filter, "event_format")), "federation");
}

/* 'ev' (stolen), loaded by ax_event_load_client, made into what the filter asks for. */
static json_t *client_event(sync_t *s, json_t *ev, bool keep_room_id)
{
    if (!keep_room_id)
        json_object_del(ev, "room_id");
    return apply_event_fields(s, ev);
}

/* Loads an event in the filter's format (a new reference), or NULL. */
static json_t *load_event(sync_t *s, const char *event_id, bool keep_room_id)
{
    json_t *ev;
    if (!client_format(s)) {
        ax_event_rec_t rec;
        if (ax_db_event_get(s->txn, event_id, &ev, &rec) != 0)
            return NULL;
        json_object_del(ev, "unsigned");
        return apply_event_fields(s, ev);
    }
    ev = ax_event_load_client(s->txn, event_id, s->user_id, s->device_id, NULL);
    return ev != NULL ? client_event(s, ev, keep_room_id) : NULL;
}

/* ---- one joined (or left) room ---- */

/*
 * Whether the timeline must look inside an event to decide whether it is
 * shown: the filter names types, senders, rooms or URLs, or the user ignores
 * someone.  When not (the usual case: no filter), choosing the timeline
 * loads no event, and each shown event is loaded once, to be sent.
 */
static bool timeline_needs_events(sync_t *s, const json_t *tf)
{
    static const char *const keys[] = {"types", "not_types", "senders",     "not_senders",
                                       "rooms", "not_rooms", "contains_url"};
    if (s->ignored != NULL)
        return true;
    for (size_t i = 0; i < AX_ARRAY_SIZE(keys); ++i) {
        if (json_object_get(tf, keys[i]) != NULL)
            return true;
    }
    return false;
}

typedef struct st_tl_t {
    sync_t *s;
    const char *room_id;
    const json_t *filter;
    uint64_t floor; /* only positions above this */
    int limit;
    bool load;      /* timeline_needs_events() */
    json_t *events; /* newest first while collecting: the event timeline_cb loaded, else its ID */
    uint64_t *positions;
    size_t n;
    bool limited;
} tl_t;

static int timeline_cb(void *arg, uint64_t pos, const char *event_id)
{
    tl_t *t = arg;
    if (pos <= t->floor)
        return 1;
    if (!ax_room_user_can_see(t->s->txn, t->room_id, t->s->user_id, pos))
        return 0;
    if ((int)t->n == t->limit && !t->load) {
        t->limited = true; /* one more visible event: no need to load it */
        return 1;
    }
    json_t *ev = NULL;
    if (t->load) {
        ev = ax_event_load_client(t->s->txn, event_id, t->s->user_id, t->s->device_id, NULL);
        if (ev == NULL)
            return 0;
        const char *sender = json_string_value(json_object_get(ev, "sender"));
        if (!ax_filter_event_matches(t->filter, ev) ||
            (t->s->ignored != NULL && sender != NULL && json_object_get(t->s->ignored, sender) != NULL)) {
            json_decref(ev);
            return 0;
        }
        if ((int)t->n == t->limit) {
            json_decref(ev);
            t->limited = true;
            return 1;
        }
    }
    json_array_append_new(t->events, ev != NULL ? ev : json_string(event_id));
    t->positions = ax_realloc(t->positions, (t->n + 1) * sizeof(uint64_t));
    t->positions[t->n++] = pos;
    return 0;
}

static int state_map_add(void *arg, const char *type, const char *state_key, const char *event_id)
{
    json_t *keys = json_object_get(arg, type);
    if (keys == NULL) {
        keys = json_object();
        json_object_set_new(arg, type, keys);
    }
    json_object_set_new(keys, state_key, json_string(event_id));
    return 0;
}

/*
 * The state before the timeline starting at 'first' ({type: {key: eid}}, a
 * new reference) read from the room's current state table, when it is the
 * room's current state (the usual case of a full state: no state event in
 * the timeline); NULL otherwise.  The table is one cursor range, where the
 * state group is a chain of up to 48 JSON deltas to parse.
 */
static json_t *current_state_if_before(sync_t *s, const char *room_id, uint64_t first)
{
    uint64_t group = first > 0 ? ax_room_state_group_at(s->txn, room_id, first - 1) : 0;
    json_t *room = NULL;
    if (group == 0 || ax_db_room_get(s->txn, room_id, &room) != 0)
        return NULL;
    bool current = (uint64_t)json_integer_value(json_object_get(room, "state_group")) == group;
    json_decref(room);
    if (!current)
        return NULL;
    json_t *map = json_object();
    ax_db_state_foreach(s->txn, room_id, NULL, state_map_add, map);
    return map;
}

/* An entry of tl_t.events in the filter's format (a new reference); the loaded event is used up. */
static json_t *timeline_event(sync_t *s, json_t *item)
{
    if (json_is_string(item))
        return load_event(s, json_string_value(item), false);
    if (ax_streq(json_string_value(json_object_get(s->filter, "event_format")), "federation"))
        return load_event(s, json_string_value(json_object_get(item, "event_id")), false);
    json_t *ev = json_incref(item);
    json_object_del(ev, "room_id");
    return apply_event_fields(s, ev);
}

/* Adds the state events of 'ids' ({type: {key: eid}}) that pass the state filter to 'out'. */
static void add_state_events(sync_t *s, json_t *out, const json_t *map, const json_t *old_map, const json_t *members)
{
    const json_t *sf = room_filter(s, "state");
    bool lazy = json_is_true(json_object_get(sf, "lazy_load_members"));
    const char *type, *skey;
    json_t *keys, *eid;
    json_object_foreach((json_t *)map, type, keys)
    {
        json_object_foreach(keys, skey, eid)
        {
            const char *id = json_string_value(eid);
            if (old_map != NULL && ax_streq(ax_state_map_get(old_map, type, skey), id))
                continue; /* unchanged since the token */
            if (lazy && strcmp(type, "m.room.member") == 0 && json_object_get(members, skey) == NULL)
                continue;
            if (!ax_filter_type_allowed(sf, type))
                continue; /* decided without loading the event */
            json_t *ev = load_event(s, id, false);
            if (ev == NULL)
                continue;
            json_t *probe = json_pack("{s:s, s:O}", "type", type, "sender", json_object_get(ev, "sender"));
            bool ok = ax_filter_event_matches(sf, probe);
            json_decref(probe);
            if (ok)
                json_array_append_new(out, ev);
            else
                json_decref(ev);
        }
    }
}

typedef struct st_members_count_t {
    const char *self;
    size_t joined, invited;
    json_t *heroes;
} members_count_t;

static int count_member(void *arg, const char *user_id, const char *membership)
{
    members_count_t *m = arg;
    bool joined = strcmp(membership, "join") == 0, invited = strcmp(membership, "invite") == 0;
    m->joined += joined;
    m->invited += invited;
    if ((joined || invited) && strcmp(user_id, m->self) != 0 && json_array_size(m->heroes) < MAX_HEROES)
        json_array_append_new(m->heroes, json_string(user_id));
    return 0;
}

static bool has_member_event(const json_t *events)
{
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        if (ax_streq(json_string_value(json_object_get(ev, "type")), "m.room.member"))
            return true;
    }
    return false;
}

static json_t *room_summary(sync_t *s, const char *room_id)
{
    members_count_t m = {s->user_id, 0, 0, json_array()};
    ax_db_room_members_foreach(s->txn, room_id, count_member, &m);
    return json_pack("{s:o, s:I, s:I}", "m.heroes", m.heroes, "m.joined_member_count", (json_int_t)m.joined,
                     "m.invited_member_count", (json_int_t)m.invited);
}

typedef struct st_receipts_t {
    const char *self;
    json_t *content; /* {event_id: {type: {user: {ts, thread_id?}}}} */
} receipts_t;

static int receipt_cb(void *arg, const char *type, const char *user_id, json_t *rec)
{
    receipts_t *rc = arg;
    if (strcmp(type, "m.read.private") == 0 && strcmp(user_id, rc->self) != 0)
        return 0; /* private receipts are their owner's business */
    const char *eid = json_string_value(json_object_get(rec, "event_id"));
    if (eid == NULL)
        return 0;
    json_t *by_event = json_object_get(rc->content, eid);
    if (by_event == NULL) {
        by_event = json_object();
        json_object_set_new(rc->content, eid, by_event);
    }
    json_t *by_type = json_object_get(by_event, type);
    if (by_type == NULL) {
        by_type = json_object();
        json_object_set_new(by_event, type, by_type);
    }
    json_t *entry = json_pack("{s:O}", "ts", json_object_get(rec, "ts"));
    if (json_object_get(rec, "thread_id") != NULL)
        json_object_set(entry, "thread_id", json_object_get(rec, "thread_id"));
    json_object_set_new(by_type, user_id, entry);
    return 0;
}

static json_t *ephemeral_events(sync_t *s, const char *room_id, bool fresh)
{
    json_t *events = json_array();
    const json_t *ef = room_filter(s, "ephemeral");
    uint64_t changed_at;
    json_t *typing = ax_typing_get(s->srv->typing, room_id, s->now_ms, &changed_at);
    if (fresh ? json_array_size(typing) > 0 : changed_at > s->since_typing) {
        json_t *ev = json_pack("{s:s, s:{s:O}}", "type", "m.typing", "content", "user_ids", typing);
        if (ax_filter_event_matches(ef, ev))
            json_array_append(events, ev);
        json_decref(ev);
    }
    json_decref(typing);
    receipts_t rc = {s->user_id, json_object()};
    ax_db_receipt_changes(s->txn, room_id, fresh ? 0 : s->since, receipt_cb, &rc);
    if (json_object_size(rc.content) != 0) {
        json_t *ev = json_pack("{s:s, s:O}", "type", "m.receipt", "content", rc.content);
        if (ax_filter_event_matches(ef, ev))
            json_array_append(events, ev);
        json_decref(ev);
    }
    json_decref(rc.content);
    return events;
}

/*
 * unread_notifications, and per thread when the filter asks for
 * unread_thread_notifications (spec: "Receiving notifications"; then the
 * room's counts are the main timeline's only).  The counts are read in the
 * same transaction as the timeline, and the writer changes them in the
 * event's own commit, so they always match what the response shows.
 */
static void add_unread_counts(sync_t *s, json_t *room, const char *room_id)
{
    bool per_thread = json_is_true(json_object_get(room_filter(s, "timeline"), "unread_thread_notifications"));
    ax_push_counts_t main;
    json_t *threads = NULL;
    ax_push_room_counts(s->txn, s->user_id, room_id, &main, per_thread ? &threads : NULL);
    json_object_set_new(room, "unread_notifications",
                        json_pack("{s:I, s:I}", "notification_count", (json_int_t)main.notifications, "highlight_count",
                                  (json_int_t)main.highlights));
    if (threads != NULL)
        json_object_set_new(room, "unread_thread_notifications", threads);
}

/* ---- the shared timeline ---- */

/*
 * A room's new events as every member who has been in it since the token
 * sees them.  A commit into a busy room wakes all its members' long-polls
 * at once, most of them on the same token (the previous commit woke them
 * together): each would load, format and write out the same events.  The
 * first one writes them out here, on its HTTP thread, and the others copy
 * the text.  Only for readers whose view cannot differ: joined since before
 * the token (unsigned.membership is "join" throughout and every event is
 * visible), no ignored users, no filter that picks events or fields, the
 * client format; and only timelines where no event holds anything of the
 * reader's own: the reader's transaction_id (the reader sent none of them),
 * aggregations (a thread summary says whether the reader took part), a
 * redaction's membership.  unsigned.age is as old as the entry, which is
 * used SHARED_TL_MAX_AGE_MS at most.
 */
#define SHARED_TL_SLOTS      8
#define SHARED_TL_MAX_AGE_MS 200
#define SHARED_TL_MAX_BYTES  (256 * 1024)

typedef struct st_shared_tl_t {
    char *room_id; /* NULL: an empty slot */
    uint64_t since, upto;
    int limit;
    uint64_t made_ms;
    ax_buf_t events; /* the timeline's "events", a JSON array */
    json_t *senders; /* {user_id: true} of those events */
    uint64_t first;  /* position of the oldest */
    bool limited, has_member_event;
} shared_tl_t;

static _Thread_local shared_tl_t shared_tl[SHARED_TL_SLOTS];
static _Thread_local unsigned shared_tl_next;
static atomic_ullong shared_tl_kept, shared_tl_used; /* for /metrics */
/* a light run's response, written on the HTTP thread (see run()) */
static _Thread_local ax_buf_t body_buf, join_buf;

static void shared_tl_clear(shared_tl_t *e)
{
    free(e->room_id);
    e->room_id = NULL;
    ax_buf_dispose(&e->events);
    json_decref(e->senders);
    e->senders = NULL;
}

void ax_cs_sync_thread_free(void)
{
    for (size_t i = 0; i < SHARED_TL_SLOTS; ++i)
        shared_tl_clear(&shared_tl[i]);
    ax_buf_dispose(&body_buf);
    ax_buf_dispose(&join_buf);
}

void ax_cs_sync_shared_stats(uint64_t *kept, uint64_t *used)
{
    *kept = atomic_load_explicit(&shared_tl_kept, memory_order_relaxed);
    *used = atomic_load_explicit(&shared_tl_used, memory_order_relaxed);
}

static shared_tl_t *shared_tl_find(sync_t *s, const char *room_id, uint64_t upto, int limit)
{
    for (size_t i = 0; i < SHARED_TL_SLOTS; ++i) {
        shared_tl_t *e = &shared_tl[i];
        if (e->room_id != NULL && e->upto == upto && e->since == s->since && e->limit == limit &&
            s->now_ms - e->made_ms <= SHARED_TL_MAX_AGE_MS && strcmp(e->room_id, room_id) == 0 &&
            json_object_get(e->senders, s->user_id) == NULL) {
            atomic_fetch_add_explicit(&shared_tl_used, 1, memory_order_relaxed);
            return e;
        }
    }
    return NULL;
}

/* Whether 'timeline' (client events, oldest first) reads the same for every reader allowed to share it. */
static bool shareable(const json_t *timeline, const json_t *senders, const char *reader)
{
    if (json_object_get(senders, reader) != NULL)
        return false;
    size_t i;
    json_t *ev;
    json_array_foreach(timeline, i, ev)
    {
        json_t *uns = json_object_get(ev, "unsigned");
        if (json_object_get(uns, "transaction_id") != NULL || json_object_get(uns, "m.relations") != NULL ||
            json_object_get(uns, "redacted_because") != NULL)
            return false;
    }
    return true;
}

/* Keeps 'timeline' for the next readers; the entry, or NULL when it is not kept. */
static shared_tl_t *shared_tl_put(sync_t *s, const char *room_id, uint64_t upto, int limit, const tl_t *t,
                                  const json_t *timeline, const json_t *senders, uint64_t first, bool has_member)
{
    shared_tl_t *e = &shared_tl[shared_tl_next++ % SHARED_TL_SLOTS];
    shared_tl_clear(e);
    if (ax_json_encode(timeline, &e->events) != 0 || e->events.len > SHARED_TL_MAX_BYTES) {
        ax_buf_dispose(&e->events);
        return NULL;
    }
    e->room_id = ax_strdup(room_id);
    e->since = s->since;
    e->upto = upto;
    e->limit = limit;
    e->made_ms = s->now_ms;
    e->senders = json_deep_copy(senders);
    e->first = first;
    e->limited = t->limited;
    e->has_member_event = has_member;
    atomic_fetch_add_explicit(&shared_tl_kept, 1, memory_order_relaxed);
    return e;
}

/*
 * Builds the JoinedRoom / LeftRoom object of 'room_id' for positions up to
 * 'upto' (the leave for left rooms).  'fresh': the client has not seen the
 * room yet (initial sync, a new join): the timeline may reach back before
 * the token and the state is complete.  With full_state the state is
 * complete too, but the timeline still starts at the token.  Returns NULL
 * when there is nothing to say about the room.  With 'events_text' (a
 * joined room written out as text at once), the timeline's events may come
 * as JSON text, shared with other readers (see above): then '*events_text'
 * is set and the timeline object has no "events".
 */
static json_t *room_section(sync_t *s, const char *room_id, uint64_t upto, bool fresh, json_t *room_account_data,
                            bool joined, const ax_buf_t **events_text)
{
    bool whole_state = fresh || s->full_state;
    const json_t *tf = room_filter(s, "timeline");
    tl_t t = {.s = s,
              .room_id = room_id,
              .filter = tf,
              .floor = fresh ? 0 : s->since,
              .limit = ax_filter_limit(tf, DEFAULT_TIMELINE_LIMIT),
              .load = timeline_needs_events(s, tf),
              .events = json_array()};
    bool may_share = events_text != NULL && s->share_timeline && joined && !fresh && !t.load && client_format(s) &&
                     json_object_get(s->filter, "event_fields") == NULL;
    shared_tl_t *shared = may_share ? shared_tl_find(s, room_id, upto, t.limit) : NULL;
    if (shared == NULL)
        ax_db_timeline_scan(s->txn, room_id, upto, true, timeline_cb, &t);

    json_t *ephemeral = joined ? ephemeral_events(s, room_id, fresh) : json_array();
    if (!whole_state && shared == NULL && t.n == 0 && json_array_size(ephemeral) == 0 && room_account_data == NULL) {
        json_decref(t.events);
        json_decref(ephemeral);
        free(t.positions);
        return NULL;
    }

    /* the timeline, oldest first */
    json_t *timeline = json_array();
    json_t *senders = json_object();
    uint64_t first;
    bool has_member;
    if (shared != NULL) {
        json_object_update(senders, shared->senders);
        first = shared->first;
        t.limited = shared->limited;
        has_member = shared->has_member_event;
    } else {
        for (size_t i = t.n; i-- > 0;) {
            json_t *ev = timeline_event(s, json_array_get(t.events, i));
            if (ev == NULL)
                continue;
            const char *sender = json_string_value(json_object_get(ev, "sender"));
            if (sender != NULL)
                json_object_set_new(senders, sender, json_true());
            json_array_append_new(timeline, ev);
        }
        first = t.n != 0 ? t.positions[t.n - 1] : upto + 1;
        has_member = has_member_event(timeline);
        if (may_share && t.n != 0 && shareable(timeline, senders, s->user_id))
            shared = shared_tl_put(s, room_id, upto, t.limit, &t, timeline, senders, first, has_member);
    }
    json_object_set_new(senders, s->user_id, json_true());

    /* state between the token (or nothing) and the start of the timeline: when the state group
     * did not change, there is none, and no map is loaded (a message in a big room stays cheap) */
    json_t *state = json_array();
    bool state_changed =
        whole_state || first == 0 ||
        ax_room_state_group_at(s->txn, room_id, first - 1) != ax_room_state_group_at(s->txn, room_id, s->since);
    if (state_changed) {
        json_t *before = whole_state ? current_state_if_before(s, room_id, first) : NULL;
        if (before == NULL)
            before = ax_room_state_before(s->txn, room_id, first);
        json_t *old = whole_state ? NULL : ax_room_state_at(s->txn, room_id, s->since);
        add_state_events(s, state, before, old, senders);
        json_decref(before);
        json_decref(old);
    }

    char prev_batch[32];
    snprintf(prev_batch, sizeof(prev_batch), "t%llu", (unsigned long long)(first - 1));
    json_t *room;
    if (shared != NULL) {
        json_decref(timeline);
        *events_text = &shared->events;
        room = json_pack("{s:{s:o}, s:{s:b, s:s}}", "state", "events", state, "timeline", "limited", t.limited,
                         "prev_batch", prev_batch);
    } else {
        room = json_pack("{s:{s:o}, s:{s:o, s:b, s:s}}", "state", "events", state, "timeline", "events", timeline,
                         "limited", t.limited, "prev_batch", prev_batch);
    }
    if (joined) {
        json_object_set_new(room, "ephemeral", json_pack("{s:o}", "events", ephemeral));
        /* the summary counts every member: only when it can have changed (spec: clients keep
         * the last one they were given) */
        if (whole_state || has_member || has_member_event(state))
            json_object_set_new(room, "summary", room_summary(s, room_id));
        add_unread_counts(s, room, room_id);
    } else {
        json_decref(ephemeral);
    }
    json_object_set_new(
        room, "account_data",
        json_pack("{s:o}", "events", room_account_data ? json_incref(room_account_data) : json_array()));
    json_decref(senders);
    json_decref(t.events);
    free(t.positions);
    return room;
}

/* The stripped state an invitee or knocker sees (spec: "Stripped state"). */
static json_t *stripped_state(sync_t *s, const char *room_id, const char *member_event_id)
{
    json_t *events = ax_room_stripped_state(s->txn, room_id);
    if (json_array_size(events) == 0) {
        /* an invite from another server to a room this one is not in: the state it sent along */
        json_t *pdu = NULL;
        if (ax_db_event_get(s->txn, member_event_id, &pdu, NULL) == 0) {
            json_t *given = json_object_get(json_object_get(pdu, "unsigned"), "invite_room_state");
            if (!json_is_array(given))
                given = json_object_get(json_object_get(pdu, "unsigned"), "knock_room_state");
            if (json_is_array(given))
                json_array_extend(events, given);
            json_decref(pdu);
        }
    }
    json_t *m = ax_event_load_client(s->txn, member_event_id, NULL, NULL, NULL);
    if (m != NULL) {
        json_object_del(m, "room_id");
        json_array_append_new(events, m);
    }
    return events;
}

/* ---- account data ---- */

typedef struct st_ad_t {
    sync_t *s;
    json_t *global;   /* [events] */
    json_t *per_room; /* {room_id: [events]} */
    bool push_rules_seen;
} ad_t;

static int ad_cb(void *arg, uint64_t pos, const char *room_id, const char *type)
{
    ad_t *a = arg;
    if (pos > a->s->upto)
        return 1;
    json_t *content = NULL;
    if (ax_db_accountdata_get(a->s->txn, a->s->user_id, room_id, type, &content, NULL) != 0)
        return 0;
    if (room_id[0] == '\0' && strcmp(type, AX_PUSH_RULES_TYPE) == 0) {
        /* stored as changes to the defaults; clients see the whole rule set */
        json_t *rules = ax_push_ruleset(content, a->s->user_id);
        json_decref(content);
        content = rules;
        a->push_rules_seen = true;
    }
    json_t *ev = json_pack("{s:s, s:o}", "type", type, "content", content);
    const json_t *f =
        room_id[0] == '\0' ? json_object_get(a->s->filter, "account_data") : room_filter(a->s, "account_data");
    if (!ax_filter_event_matches(f, ev)) {
        json_decref(ev);
        return 0;
    }
    if (room_id[0] == '\0') {
        json_array_append_new(a->global, ev);
    } else {
        json_t *list = json_object_get(a->per_room, room_id);
        if (list == NULL) {
            list = json_array();
            json_object_set_new(a->per_room, room_id, list);
        }
        json_array_append_new(list, ev);
    }
    return 0;
}

/* ---- the whole response ---- */

typedef struct st_rooms_t {
    sync_t *s;
    ad_t *ad;
    json_t *join, *invite, *leave, *knock;
    ax_buf_t *join_text; /* when not NULL: joined rooms go here as JSON members, not into 'join' */
    size_t joined;
    bool failed;
} rooms_t;

/* Appends '"key":' to 'b', after a comma unless 'first'. */
static void dump_key(ax_buf_t *b, const char *key, bool first)
{
    if (!first)
        ax_buf_putc(b, ',');
    ax_json_put_string(key, strlen(key), b);
    ax_buf_putc(b, ':');
}

/* Appends the room object 'room' from room_section(), with the timeline's 'events' text in place when given. */
static int dump_room(ax_buf_t *b, const json_t *room, const ax_buf_t *events)
{
    if (events == NULL)
        return ax_json_encode(room, b);
    const char *key, *tkey;
    json_t *v, *tv;
    int rc = 0;
    bool first = true;
    ax_buf_putc(b, '{');
    json_object_foreach((json_t *)room, key, v)
    {
        dump_key(b, key, first);
        first = false;
        if (strcmp(key, "timeline") != 0) {
            rc |= ax_json_encode(v, b);
            continue;
        }
        ax_buf_puts(b, "{\"events\":");
        ax_buf_append(b, events->base, events->len);
        json_object_foreach(v, tkey, tv)
        {
            dump_key(b, tkey, false);
            rc |= ax_json_encode(tv, b);
        }
        ax_buf_putc(b, '}');
    }
    ax_buf_putc(b, '}');
    return rc;
}

static int room_cb(void *arg, const char *room_id, json_t *m)
{
    rooms_t *rs = arg;
    sync_t *s = rs->s;
    const char *membership = json_string_value(json_object_get(m, "membership"));
    const char *event_id = json_string_value(json_object_get(m, "event_id"));
    uint64_t mpos = (uint64_t)json_integer_value(json_object_get(m, "pos"));
    if (membership == NULL || event_id == NULL || mpos > s->upto)
        return 0; /* a change this run does not cover; the next one will */
    json_t *room_filter_obj = json_object_get(s->filter, "room");
    if (!ax_filter_room_allowed(room_filter_obj, room_id))
        return 0;
    bool changed = mpos > s->since;
    json_t *rad = json_object_get(rs->ad->per_room, room_id);

    if (strcmp(membership, "join") == 0) {
        bool fresh = s->since == 0 || changed;
        const ax_buf_t *events_text = NULL;
        json_t *room = room_section(s, room_id, s->upto, fresh, rad, true, rs->join_text ? &events_text : NULL);
        if (room != NULL && rs->join_text != NULL) {
            /* written out at once: the response never holds every room's tree (an initial sync
             * of 500 rooms is megabytes of small allocations), and the HTTP thread only copies */
            dump_key(rs->join_text, room_id, rs->joined == 0);
            if (dump_room(rs->join_text, room, events_text) != 0)
                rs->failed = true;
            rs->joined++;
            json_decref(room);
        } else if (room != NULL) {
            json_object_set_new(rs->join, room_id, room);
        }
    } else if (strcmp(membership, "invite") == 0) {
        if (s->ignored != NULL) {
            json_t *inv = NULL;
            bool from_ignored = false;
            if (ax_db_event_get(s->txn, event_id, &inv, NULL) == 0) {
                const char *inviter = json_string_value(json_object_get(inv, "sender"));
                from_ignored = inviter != NULL && json_object_get(s->ignored, inviter) != NULL;
                json_decref(inv);
            }
            if (from_ignored)
                return 0; /* invites from ignored users are not shown */
        }
        if (changed || s->since == 0)
            json_object_set_new(rs->invite, room_id,
                                json_pack("{s:{s:o}}", "invite_state", "events", stripped_state(s, room_id, event_id)));
    } else if (strcmp(membership, "knock") == 0) {
        if (changed || s->since == 0)
            json_object_set_new(rs->knock, room_id,
                                json_pack("{s:{s:o}}", "knock_state", "events", stripped_state(s, room_id, event_id)));
    } else if (strcmp(membership, "leave") == 0 || strcmp(membership, "ban") == 0) {
        bool include_leave = json_is_true(json_object_get(room_filter_obj, "include_leave"));
        if ((s->since == 0 && include_leave) || (changed && s->since != 0) || (s->full_state && include_leave)) {
            /* the room as it was up to the leave, kick or ban */
            json_t *room = room_section(s, room_id, mpos, s->since == 0, rad, false, NULL);
            if (room == NULL && changed) {
                /* a room this server never had (a declined invite from another server): the leave alone */
                json_t *ev = load_event(s, event_id, false);
                if (ev != NULL)
                    room = json_pack("{s:{s:[]}, s:{s:[o], s:b}, s:{s:[]}}", "state", "events", "timeline", "events",
                                     ev, "limited", 0, "account_data", "events");
            }
            if (room != NULL)
                json_object_set_new(rs->leave, room_id, room);
        }
    }
    return 0;
}

typedef struct st_presence_t {
    sync_t *s;
    json_t *events;
    json_t *seen;
} presence_t;

static int presence_cb(void *arg, uint64_t pos, const char *user_id)
{
    presence_t *p = arg;
    sync_t *s = p->s;
    if (pos > s->upto)
        return 1;
    if (json_object_get(p->seen, user_id) != NULL ||
        (s->ignored != NULL && json_object_get(s->ignored, user_id) != NULL) ||
        !ax_presence_shares_room(s->txn, s->user_id, user_id))
        return 0;
    json_object_set_new(p->seen, user_id, json_true());
    json_t *rec = NULL;
    if (ax_db_presence_get(s->txn, user_id, &rec) != 0)
        return 0;
    json_t *ev = json_pack("{s:s, s:s, s:o}", "type", "m.presence", "sender", user_id, "content",
                           ax_presence_content(rec, s->now_ms));
    json_decref(rec);
    if (ax_filter_event_matches(json_object_get(s->filter, "presence"), ev))
        json_array_append(p->events, ev);
    json_decref(ev);
    return 0;
}

/* ---- which rooms to look at ---- */

typedef struct st_candidates_t {
    ax_strmap_t rooms; /* room IDs (values unused) */
    size_t limit;      /* count_candidates: stop counting here */
} candidates_t;

static void add_candidate(void *arg, const char *room_id)
{
    candidates_t *c = arg;
    if (c->limit == 0 || c->rooms.size < c->limit)
        ax_strmap_put(&c->rooms, room_id, (void *)1);
}

typedef struct st_room_visit_t {
    rooms_t *rs;
    int rc;
} room_visit_t;

static void visit_candidate(void *arg, const char *room_id, void *value)
{
    (void)value;
    room_visit_t *v = arg;
    json_t *m = NULL;
    if (ax_db_membership_get(v->rs->s->txn, room_id, v->rs->s->user_id, &m) != 0)
        return; /* not the user's room (or forgotten) */
    room_cb(v->rs, room_id, m);
    json_decref(m);
}

static void add_room_ad(void *arg, const char *room_id, void *value)
{
    (void)value;
    add_candidate(arg, room_id);
}

/*
 * The rooms an incremental sync must look at: those changed after the token
 * (events, receipts: the room change ring; typing: its own ring; the
 * user's room account data: its per-user index).  False when the rings no
 * longer reach back to the token: then every room of the user is looked at.
 */
static bool changed_rooms(sync_t *s, candidates_t *c)
{
    ax_server_t *srv = s->srv;
    if (!ax_changes_rooms(srv->changes, s->since, s->upto, add_candidate, c) ||
        !ax_typing_rooms_changed(srv->typing, s->since_typing, s->typing_now, add_candidate, c))
        return false;
    return true;
}

/*
 * The whole response of this run, or NULL when the database is unavailable.
 * With 'join_text', the joined rooms are written there as the members of
 * rooms.join, and the tree holds an empty object in their place
 * (dump_response() puts them together).
 */
static json_t *build(sync_t *s, ax_buf_t *join_text)
{
    ax_server_t *srv = s->srv;
    /* read up to what the change ring has recorded: committed, and known to the ring */
    s->upto = ax_changes_position(srv->changes);
    s->typing_now = ax_typing_serial(srv->typing);
    s->now_ms = ax_now_ms();
    if (ax_db_read_begin(srv->db, &s->txn) != 0)
        return NULL;
    /* first, as a long to-device inbox can lower s->upto for everything below */
    json_t *e2ee =
        ax_cs_e2ee_sync(s->txn, srv->changes, s->user_id, s->device_id, s->since, &s->upto, &s->ack_to_device);

    json_t *ignore_list = NULL;
    if (ax_db_accountdata_get(s->txn, s->user_id, NULL, "m.ignored_user_list", &ignore_list, NULL) == 0) {
        json_t *users = json_object_get(ignore_list, "ignored_users");
        s->ignored = json_is_object(users) && json_object_size(users) != 0 ? json_incref(users) : NULL;
        json_decref(ignore_list);
    }

    ad_t ad = {s, json_array(), json_object(), false};
    ax_db_accountdata_changes(s->txn, s->user_id, s->since, ad_cb, &ad);
    if (s->since == 0 && !ad.push_rules_seen) {
        /* a user who never changed a rule still has the defaults: clients read them from the initial sync */
        json_t *ev = json_pack("{s:s, s:o}", "type", AX_PUSH_RULES_TYPE, "content", ax_push_ruleset(NULL, s->user_id));
        if (ax_filter_event_matches(json_object_get(s->filter, "account_data"), ev))
            json_array_append(ad.global, ev);
        json_decref(ev);
    }

    presence_t pr = {s, json_array(), json_object()};
    ax_db_presence_changes(s->txn, s->since, presence_cb, &pr);
    json_decref(pr.seen);

    rooms_t rs = {s, &ad, json_object(), json_object(), json_object(), json_object(), join_text, 0, false};
    candidates_t c = {AX_STRMAP_INIT, 0};
    if (s->since != 0 && !s->full_state && changed_rooms(s, &c)) {
        const char *key;
        json_t *v;
        json_object_foreach(ad.per_room, key, v) add_room_ad(&c, key, v);
        room_visit_t visit = {&rs, 0};
        ax_strmap_foreach(&c.rooms, visit_candidate, &visit);
    } else {
        ax_db_user_rooms_foreach(s->txn, s->user_id, room_cb, &rs);
    }
    ax_strmap_dispose(&c.rooms);
    ax_db_read_end(s->txn);
    s->txn = NULL;
    json_decref(s->ignored);
    s->ignored = NULL;

    json_t *rooms = json_object();
    if (json_object_size(rs.join) || rs.joined != 0)
        json_object_set(rooms, "join", rs.join);
    if (json_object_size(rs.invite))
        json_object_set(rooms, "invite", rs.invite);
    if (json_object_size(rs.leave))
        json_object_set(rooms, "leave", rs.leave);
    if (json_object_size(rs.knock))
        json_object_set(rooms, "knock", rs.knock);
    json_decref(rs.join);
    json_decref(rs.invite);
    json_decref(rs.leave);
    json_decref(rs.knock);

    char next_batch[48];
    snprintf(next_batch, sizeof(next_batch), "s%llu_%llu", (unsigned long long)s->upto,
             (unsigned long long)s->typing_now);
    json_t *out = json_pack("{s:s}", "next_batch", next_batch);
    if (json_object_size(rooms) != 0)
        json_object_set(out, "rooms", rooms);
    if (json_array_size(ad.global) != 0)
        json_object_set_new(out, "account_data", json_pack("{s:O}", "events", ad.global));
    if (json_array_size(pr.events) != 0)
        json_object_set_new(out, "presence", json_pack("{s:O}", "events", pr.events));
    json_object_update_new(out, e2ee);
    json_decref(pr.events);
    json_decref(rooms);
    json_decref(ad.global);
    json_decref(ad.per_room);
    if (rs.failed) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* 'out' from build() as JSON text in 'b', with the joined rooms' 'join_text' in place. */
static int dump_response(ax_buf_t *b, const json_t *out, const ax_buf_t *join_text)
{
    const char *key, *rkey;
    json_t *v, *rv;
    int rc = 0;
    bool first = true;
    ax_buf_putc(b, '{');
    json_object_foreach((json_t *)out, key, v)
    {
        dump_key(b, key, first);
        first = false;
        if (strcmp(key, "rooms") != 0) {
            rc |= ax_json_encode(v, b);
            continue;
        }
        bool rfirst = true;
        ax_buf_putc(b, '{');
        json_object_foreach(v, rkey, rv)
        {
            dump_key(b, rkey, rfirst);
            rfirst = false;
            if (strcmp(rkey, "join") == 0 && json_object_size(rv) == 0) {
                ax_buf_putc(b, '{');
                ax_buf_append(b, join_text->base, join_text->len);
                ax_buf_putc(b, '}');
            } else {
                rc |= ax_json_encode(rv, b);
            }
        }
        ax_buf_putc(b, '}');
    }
    ax_buf_putc(b, '}');
    return rc;
}

static bool has_news(const json_t *out)
{
    return json_object_get(out, "rooms") != NULL || json_object_get(out, "account_data") != NULL ||
           json_object_get(out, "to_device") != NULL || json_object_get(out, "presence") != NULL ||
           json_object_get(out, "device_lists") != NULL;
}

/*
 * Whether this run is big enough to take to a worker thread rather than
 * hold up the HTTP thread's other connections: an initial or full-state
 * sync, a token older than the change rings, or many changed rooms.
 */
static bool heavy(sync_t *s)
{
    if (s->since == 0 || s->full_state)
        return true;
    candidates_t c = {AX_STRMAP_INIT, HEAVY_ROOMS + 1};
    s->upto = ax_changes_position(s->srv->changes);
    s->typing_now = ax_typing_serial(s->srv->typing);
    bool known = changed_rooms(s, &c);
    size_t n = c.rooms.size;
    ax_strmap_dispose(&c.rooms);
    return !known || n > HEAVY_ROOMS;
}

/* A sync run on a worker: a copy of the inputs that lives as long as the job. */
typedef struct st_sync_job_t {
    sync_t s;
    char *user_id, *device_id;
    json_t *filter;
    bool news; /* has_news() of the response */
    ax_buf_t body;
    bool timed_out;
} sync_job_t;

/*
 * A heavy run writes its response out on the worker, room by room (see
 * build()), so that the HTTP thread only copies the bytes.
 */
static int job_run(void *data)
{
    sync_job_t *j = data;
    ax_buf_t join_text = AX_BUF_INIT;
    json_t *out = build(&j->s, &join_text);
    int rc = AX_EIO;
    if (out != NULL) {
        j->news = has_news(out);
        rc = dump_response(&j->body, out, &join_text) == 0 ? 0 : AX_EIO;
        json_decref(out);
    }
    ax_buf_dispose(&join_text);
    return rc;
}

static void job_free(void *data)
{
    sync_job_t *j = data;
    free(j->user_id);
    free(j->device_id);
    json_decref(j->filter);
    ax_buf_dispose(&j->body);
    free(j);
}

static void run(ax_req_t *r, bool timed_out);

/* Parks the request when there is nothing to say yet ('news' false); true when it did. */
static bool park(ax_req_t *r, sync_t *s, bool news, uint64_t covered, bool ack_to_device, bool timed_out)
{
    if (ack_to_device)
        ax_cs_to_device_ack(r, s->since);
    if (!news && !timed_out && s->timeout_ms > 0 && s->since != 0) {
        ax_req_park(r, s->user_id, covered, s->timeout_ms, run);
        return true;
    }
    return false;
}

static void job_done(ax_req_t *r, int result, void *data)
{
    sync_job_t *j = data;
    if (result != 0)
        return (void)ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    if (!park(r, r->route_data, j->news, j->s.upto, j->s.ack_to_device, j->timed_out))
        ax_reply_raw(r, 200, "application/json", j->body.base, j->body.len);
}

static void run(ax_req_t *r, bool timed_out)
{
    sync_t *s = r->route_data;
    if (heavy(s)) {
        sync_job_t *j = ax_calloc(1, sizeof(*j));
        j->s = *s;
        j->s.user_id = j->user_id = ax_strdup(s->user_id);
        j->s.device_id = j->device_id = s->device_id ? ax_strdup(s->device_id) : NULL;
        j->s.filter = j->filter = s->filter ? json_deep_copy(s->filter) : NULL;
        j->s.set_presence = NULL;
        j->s.share_timeline = false; /* the shared timelines are the HTTP threads' */
        j->timed_out = timed_out;
        ax_req_work(r, job_run, job_done, j, job_free);
        return;
    }
    /* written out room by room as on a worker, into the thread's buffers */
    s->share_timeline = true;
    ax_buf_reset(&join_buf);
    json_t *out = build(s, &join_buf);
    if (out == NULL) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return;
    }
    if (!park(r, s, has_news(out), s->upto, s->ack_to_device, timed_out)) {
        ax_buf_reset(&body_buf);
        if (dump_response(&body_buf, out, &join_buf) == 0)
            ax_reply_raw(r, 200, "application/json", body_buf.base, body_buf.len);
        else
            ax_reply_error(r, AX_M_INTERNAL, "Cannot write the response");
    }
    json_decref(out);
    if (body_buf.cap > 1 << 20 || join_buf.cap > 1 << 20) { /* do not keep a huge buffer per thread */
        ax_buf_dispose(&body_buf);
        ax_buf_dispose(&join_buf);
    }
}

/* GET /_matrix/client/v3/sync */
int ax_cs_sync(ax_req_t *r)
{
    sync_t *s = ax_palloc(r, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->srv = r->srv;
    s->user_id = r->auth.user_id;
    s->device_id = r->auth.device_id;
    r->route_data = s;

    const char *since = ax_req_query(r, "since");
    if (since != NULL) {
        if (!parse_token(since, &s->since, &s->since_typing))
            return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid since token");
        if (s->since > ax_writer_stream_pos(r->srv->writer))
            return ax_reply_error(r, AX_M_INVALID_PARAM, "since token is from the future");
        /* typing lives in memory: after a restart older serials are simply all stale */
        if (s->since_typing > ax_typing_serial(r->srv->typing))
            s->since_typing = 0;
    }
    const char *timeout = ax_req_query(r, "timeout");
    if (timeout != NULL) {
        uint64_t t;
        if (ax_parse_u64(timeout, &t) != 0)
            return ax_reply_error(r, AX_M_INVALID_PARAM, "timeout must be a non-negative integer");
        s->timeout_ms = t > MAX_TIMEOUT_MS ? MAX_TIMEOUT_MS : t;
    }
    const char *full = ax_req_query(r, "full_state");
    if (full != NULL && strcmp(full, "true") != 0 && strcmp(full, "false") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "full_state must be true or false");
    s->full_state = full != NULL && strcmp(full, "true") == 0;
    const char *presence = ax_req_query(r, "set_presence");
    if (presence != NULL && strcmp(presence, "online") != 0 && strcmp(presence, "offline") != 0 &&
        strcmp(presence, "unavailable") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "set_presence must be online, offline or unavailable");
    s->set_presence = presence;

    const char *filter = ax_req_query(r, "filter");
    if (filter != NULL && filter[0] == '{') {
        json_error_t err;
        json_t *f = json_loads(filter, JSON_REJECT_DUPLICATES, &err);
        if (f == NULL)
            return ax_reply_error(r, AX_M_NOT_JSON, "filter is not JSON");
        ax_req_hold_json(r, f);
        char msg[256];
        if (ax_filter_validate(f, msg, sizeof(msg)) != 0)
            return ax_reply_error(r, AX_M_BAD_JSON, msg);
        s->filter = f;
    } else if (filter != NULL) {
        ax_txn_t *txn;
        json_t *f = NULL;
        if (ax_db_read_begin(r->srv->db, &txn) != 0)
            return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        int rc = ax_db_filter_get(txn, s->user_id, filter, &f);
        ax_db_read_end(txn);
        if (rc != 0)
            return ax_reply_error(r, AX_M_INVALID_PARAM, "Unknown filter");
        s->filter = ax_req_hold_json(r, f);
    }
    ax_presence_polled(r, s->set_presence);
    run(r, false);
    return 0;
}
