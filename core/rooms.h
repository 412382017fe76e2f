/*
 * rooms.h -- the local event pipeline: building a PDU on the room's current
 * state, authorising it with the one implementation of the auth rules,
 * signing it and storing it with every index (core/rooms.c); the client
 * event format; and visibility of events to users (core/visibility.c).
 *
 * Everything here that writes runs on the writer thread inside its
 * transaction, so events of one room are built on a state nobody else is
 * changing at the same time.
 */
#ifndef AX_CORE_ROOMS_H
#define AX_CORE_ROOMS_H

#include "core/core.h"
#include "storage/storage.h"

/** Who we are when we build events: our server name and signing key (both borrowed). */
typedef struct st_ax_origin_t {
    const char *server_name;
    const ax_signing_key_t *key;
} ax_origin_t;

/** What a local user wants to send; every pointer is borrowed for the call. */
typedef struct st_ax_draft_t {
    const char *room_id; /* NULL only for the m.room.create event of a v12 room */
    const char *sender;
    const char *type;
    const char *state_key; /* NULL: not a state event */
    json_t *content;
    const char *redacts;    /* the target of an m.room.redaction */
    json_t *unsigned_local; /* server-local unsigned data kept with the event (may be NULL) */
    uint64_t ts;            /* origin_server_ts; 0 = now */
} ax_draft_t;

/** What ax_room_send stored. */
typedef struct st_ax_sent_t {
    char event_id[256];
    char room_id[256];
    uint64_t pos;
} ax_sent_t;

/**
 * Builds the PDU for 'd' on the room's current state (prev_events = the
 * forward extremities, auth_events chosen from current state, depth),
 * checks the auth rules, the 64 KiB size limit and the room version's
 * canonical-JSON rules, signs it as 'o', and stores it with its timeline
 * position, state, membership, visibility and relation indexes; then the
 * push rules of the room's local members run on it (core/push.h, when the
 * writer has a push engine attached), so their unread counts change in the
 * same transaction, and it is queued for the room's other servers
 * (ax_room_fanout).
 *
 * @return 0 with 'out' filled; AX_ENOTFOUND for an unknown room;
 *         AX_EFORBIDDEN (the auth rules said no; 'reason' says why);
 *         AX_ETOOBIG; AX_EINVAL (content not representable in the room
 *         version); or a storage error.
 */
int ax_room_send(ax_txn_t *txn, const ax_origin_t *o, const ax_draft_t *d, ax_sent_t *out, char *reason, size_t rlen);

/**
 * The PDU 'd' would be, built on the room's current extremities and state
 * but neither signed, hashed, authorised nor stored (a new reference in
 * '*out'; the room's version in '*rv' when not NULL): the template a
 * make_join/make_leave/make_knock answer carries, or an event another
 * server must sign first (an invite).  AX_ENOTFOUND for an unknown room.
 */
int ax_room_build(ax_txn_t *txn, const ax_origin_t *o, const ax_draft_t *d, json_t **out, const ax_room_version_t **rv);

/* ---- fanout.c -- where an event goes ---- */

/**
 * Queues event 'event_id' of 'room_id' (stored in this txn) for every other
 * server that must receive it (storage/fedqueue.c): each server with a
 * joined member after the event, plus the target's server of a leave or ban
 * (a kick, a withdrawn invite, a refused knock), never 'our_server_name'
 * nor 'on_behalf_of'.  Nothing for a room created with m.federate false.
 *
 * ax_room_send calls it for every local event.  Events from other servers
 * are not fanned out (each server sends its own), except one a resident
 * server passes on for the server that handed it over (send_join,
 * send_leave, send_knock): then 'on_behalf_of' is that server.  Writer
 * side.  Returns 0, AX_ENOTFOUND (no such room or event) or a storage error.
 */
int ax_room_fanout(ax_txn_t *txn, const char *room_id, const char *event_id, const char *our_server_name,
                   const char *on_behalf_of);
/**
 * The same for a caller that holds the stored event 'pdu' and knows the
 * room federates (its m.federate is not false): nothing is read again.
 */
int ax_room_fanout_pdu(ax_txn_t *txn, const char *room_id, const char *event_id, const json_t *pdu,
                       const char *our_server_name, const char *on_behalf_of);

/* ---- ingest.c -- events from other servers ---- */

typedef enum {
    AX_INGEST_ACCEPTED,    /* in the timeline at 'pos' */
    AX_INGEST_DUPLICATE,   /* already there */
    AX_INGEST_OUTLIER,     /* stored outside the timeline (ax_room_ingest_outlier) */
    AX_INGEST_REJECTED,    /* failed the auth rules: kept, flagged, never shown */
    AX_INGEST_SOFT_FAILED, /* allowed by its own state, not by the current state: kept, never shown */
} ax_ingest_outcome_t;

typedef struct st_ax_ingest_t {
    ax_ingest_outcome_t outcome;
    uint64_t pos;
    char reason[256]; /* why rejected or soft-failed; the missing event's ID with AX_ENOTFOUND */
} ax_ingest_t;

/**
 * Takes a PDU from another server (borrowed; format, signatures and hashes
 * already checked by the caller) into room 'room_id': auth against its auth
 * events, against the state before it -- 'state_before' when given (a map
 * the caller fetched), else computed from its prev events -- and against
 * current state; stores it (rejected and soft-failed events too, flagged)
 * and, when accepted, moves the timeline, forward extremities and current
 * state on and notifies the room (core/ingest.c has the details).  A room
 * not known yet is adopted when 'state_before' holds its create event.
 *
 * @return 0 with the outcome in 'out'; AX_ENOTFOUND when an auth event or
 *         the state after a prev event is missing ('out->reason' names the
 *         event: fetch it and try again); a storage error.
 */
int ax_room_ingest(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const char *event_id,
                   const json_t *pdu, const json_t *state_before, ax_ingest_t *out);

/**
 * Stores a PDU that is not part of the timeline (an auth chain or state
 * event from a join or a gap), checked against its own auth events only,
 * which must be known (AX_ENOTFOUND otherwise).  Give events in auth order.
 */
int ax_room_ingest_outlier(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const char *event_id,
                           const json_t *pdu, ax_ingest_t *out);

/**
 * The state before 'pdu' (a stored event's PDU): the state after its prev
 * event, or the resolution of the states after its prev events (a new
 * reference in '*out').  AX_ENOTFOUND when a prev event has no known state.
 */
int ax_room_state_before_event(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const json_t *pdu,
                               json_t **out);

/**
 * The auth chain of the events 'event_ids' (a JSON array of IDs) of room
 * 'room_id' (version 'rv'): every stored event reachable through
 * auth_events (v1-2 [id, hashes] references too), each once, as a new JSON
 * array of IDs in '*out' in the order found, breadth first (the inputs
 * themselves only when one is another's auth event), and in v12 rooms the
 * create event the room ID implies.  Unknown events, rejected events and
 * events of another room are not listed and end their branch.  Serves
 * send_join, /state, /state_ids and /event_auth.
 */
int ax_room_auth_chain(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const json_t *event_ids,
                       json_t **out);

/**
 * A reader of a room's current state for the auth rules and power-level
 * helpers (core/events.h's ax_auth_lookup_fn): pass ax_room_lookup as the
 * function and the struct as its argument.  Events read are cached until
 * ax_room_lookup_dispose.
 */
typedef struct st_ax_room_lookup_t {
    ax_txn_t *txn;
    const char *room_id; /* NULL: the room has no state yet */
    json_t *cache;       /* {type: {state_key: event | null}} */
    const json_t *map;   /* when not NULL: judge against this state map instead of current state */
} ax_room_lookup_t;

const json_t *ax_room_lookup(void *arg, const char *type, const char *state_key);
/** The event ID of current state (type, state_key) via the cache, or NULL. */
const char *ax_room_lookup_id(ax_room_lookup_t *lk, const char *type, const char *state_key);
void ax_room_lookup_dispose(ax_room_lookup_t *lk);

/** The room version of 'room_id', or NULL when the room is unknown. */
const ax_room_version_t *ax_room_version_of(ax_txn_t *txn, const char *room_id);

/**
 * Looks up the content of current state (type, state_key) of a room: a new
 * reference, or NULL when unset.
 */
json_t *ax_room_state_content(ax_txn_t *txn, const char *room_id, const char *type, const char *state_key);

/** The current membership of 'user_id' in 'room_id' into 'out' ("" when none). */
void ax_room_membership(ax_txn_t *txn, const char *room_id, const char *user_id, char *out, size_t cap);

/**
 * Writer side: says 'room_id' changed (a new event, a receipt) and every
 * joined, invited or knocking member of it (and 'also', when not NULL) has
 * news, so their /sync long-polls wake after the commit.  Call it for every
 * change an incremental /sync must find in the room.
 */
void ax_room_notify_members(ax_txn_t *txn, const char *room_id, const char *also);

/**
 * True when a user of 'our_server' is joined to 'room_id': only then may
 * this server build events of the room or speak for it to others.
 */
bool ax_room_has_local_member(ax_txn_t *txn, const char *room_id, const char *our_server);

/**
 * The stripped state (spec: "Stripped state") of the room's create, join
 * rules, name, avatar, canonical alias, encryption and topic events: what
 * an invitee or a knocker is shown (a new JSON array).
 */
json_t *ax_room_stripped_state(ax_txn_t *txn, const char *room_id);

/** Writer side: wakes the room's members for news that is not in the room (presence). */
void ax_room_wake_members(ax_txn_t *txn, const char *room_id);

/* ---- state at a point in a room's timeline ---- */

/**
 * The state map ({type: {state_key: event_id}}, a new reference) after the
 * last event of 'room_id' at or before position 'pos' (an empty map before
 * the room's first event).
 */
json_t *ax_room_state_at(ax_txn_t *txn, const char *room_id, uint64_t pos);

/**
 * The state group of that state (0: none yet).  Two positions with the same
 * group have the same state: /sync compares groups before loading maps.
 */
uint64_t ax_room_state_group_at(ax_txn_t *txn, const char *room_id, uint64_t pos);

/** The state map before the event at position 'pos' (the state its senders saw). */
json_t *ax_room_state_before(ax_txn_t *txn, const char *room_id, uint64_t pos);

/** The event ID for (type, state_key) in a state map (borrowed), or NULL. */
const char *ax_state_map_get(const json_t *map, const char *type, const char *state_key);

/* ---- client format ---- */

/**
 * Turns a stored PDU (borrowed) into the client format (a new reference):
 * content, event_id, origin_server_ts, room_id, sender, type, state_key,
 * and unsigned {age, prev_content, replaces_state, redacted_because,
 * transaction_id (only for 'device_id' of the sender)}.  'device_id' may be
 * NULL.
 */
json_t *ax_event_client_format(const json_t *pdu, const char *event_id, const char *user_id, const char *device_id,
                               uint64_t now_ms);

/**
 * Loads event 'event_id' and returns it in client format for
 * 'user_id'/'device_id' (a new reference), or NULL.  Besides what
 * ax_event_client_format gives, unsigned carries the server-side
 * aggregations (m.relations) and, when 'user_id' is not NULL and the event
 * is in the timeline, 'user_id''s membership at the event (spec v1.11
 * unsigned.membership: the event's own change included, "leave" when none),
 * in redacted_because too.  'rec' (may be NULL) gets the stored record.
 */
json_t *ax_event_load_client(ax_txn_t *txn, const char *event_id, const char *user_id, const char *device_id,
                             ax_event_rec_t *rec);

/* ---- search.c -- the full-text index (term_roompos_event) ---- */

/**
 * Splits 'text' into lower-cased search terms (runs of letters and digits;
 * non-ASCII characters count as letters) and calls 'cb' for each distinct
 * one.  Shared by the indexer and the search endpoint.
 */
void ax_search_terms(const char *text, void (*cb)(void *arg, const char *term), void *arg);
/** The text of an event the index holds (a message's body, a room's name or topic), or NULL. */
const char *ax_search_text(const char *type, const json_t *content);
/** The top-level keys ax_search_text() reads, for ax_db_event_get_keys(). */
extern const char *const ax_search_event_keys[];
/**
 * The stream position up to which every timeline event is in the index;
 * later ones are not yet and must be read from the timeline.
 */
uint64_t ax_search_pos(ax_txn_t *txn);

typedef struct st_ax_search_indexer_t ax_search_indexer_t;
/** Makes 'w' index the timeline in batches of its own (ax_writer_add_task).  Before ax_writer_start(). */
ax_search_indexer_t *ax_search_indexer_new(ax_writer_t *w);
/** The position the index has reached, as of its last step (0 before the first); any thread. */
uint64_t ax_search_indexer_pos(ax_search_indexer_t *x);
/** After ax_writer_stop(); NULL is allowed. */
void ax_search_indexer_free(ax_search_indexer_t *x);

/* ---- visibility.c -- history visibility (spec: "History visibility") ---- */

/**
 * True when 'user_id' may see the event at position 'pos' of 'room_id':
 * world_readable, or shared with the user a member now or at any point
 * since, invited/joined at that point per the visibility in force then.
 */
bool ax_room_user_can_see(ax_txn_t *txn, const char *room_id, const char *user_id, uint64_t pos);

/* ---- spaces.c -- room summaries and the space hierarchy (spec: "Spaces") ---- */

/**
 * The PublishedRoomsChunk of local room 'room_id' (public_rooms_chunk.yaml;
 * a new reference): room_id, num_joined_members, world_readable,
 * guest_can_join, and name, topic, avatar_url, canonical_alias, join_rule
 * and room_type when the room's current state sets them.  NULL when the
 * room is not known here.
 */
json_t *ax_room_summary(ax_txn_t *txn, const char *room_id);

/** The most rooms on one page of the public room directory. */
#define AX_PUBLIC_ROOMS_MAX 500

/**
 * One page of the public room directory (GET/POST publicRooms, for clients
 * and for other servers): a new {"chunk", "total_room_count_estimate",
 * "next_batch"?, "prev_batch"?} with the published rooms that 'describe'
 * gives a summary for (a new reference, or NULL to leave the room out),
 * kept when 'term' (may be NULL or empty) is in the name, topic or
 * canonical alias, case-insensitively, and, with 'room_types' (a JSON
 * array, may be NULL), when the room's type is one of them (null: no
 * type).  Largest rooms first, then by room ID; 'offset' is where the
 * page starts (tokens "o<offset>"), 'limit' 0 or above
 * AX_PUBLIC_ROOMS_MAX means AX_PUBLIC_ROOMS_MAX.
 */
typedef json_t *(*ax_room_describe_fn)(ax_txn_t *txn, const char *room_id, void *arg);
json_t *ax_room_directory_page(ax_txn_t *txn, uint64_t offset, uint64_t limit, const char *term,
                               const json_t *room_types, ax_room_describe_fn describe, void *arg);

/**
 * True when 'user_id' may see local room 'room_id' in a space hierarchy
 * (space_hierarchy.yaml, "rooms"): joined or invited; the room is public,
 * knockable in its room version, restricted to a room the user is joined
 * to, or world_readable.  False for a banned user and an unknown room.
 */
bool ax_room_user_may_preview(ax_txn_t *txn, const char *room_id, const char *user_id);

/**
 * Summary of a room this server does not know, as its servers would give it
 * (the "room" of GET /_matrix/federation/v1/hierarchy: a room summary with
 * room_type and children_state): a new reference, or NULL when there is
 * none.  'via' (borrowed, may be NULL) is the server list of the link that
 * led to the room.  Runs inside the walk's read transaction: it must not
 * block (answer from what federation fetched beforehand).
 */
typedef json_t *(*ax_space_remote_fn)(void *arg, const char *room_id, const json_t *via);

/** One page of a space hierarchy: what to walk, and what was found. */
typedef struct st_ax_space_walk_t {
    const char *user_id;       /* whose view (borrowed) */
    unsigned max_depth;        /* rooms deeper than this are not listed; the root is depth 0 */
    bool suggested_only;       /* follow and list only links marked "suggested" */
    size_t skip;               /* rooms earlier pages listed */
    size_t limit;              /* rooms to list (at least 1) */
    size_t max_rooms;          /* most rooms one walk looks at; the rest of a larger hierarchy is not listed */
    ax_space_remote_fn remote; /* rooms not known here; NULL: left out */
    void *remote_arg;
    json_t *rooms; /* out: SpaceHierarchyRoomsChunks (a new reference owned by the caller) */
    bool more;     /* out: another page follows (at skip + limit) */
} ax_space_walk_t;

/**
 * Walks the space tree under 'root' depth-first for 'w->user_id': each room
 * is listed (with its children_state: the m.space.child links that count,
 * in the spec's order) the first time the walk reaches it, if the user may
 * preview it, followed by what lies under it when it is a space.  Rooms the
 * user may not see are left out with their subtree.  The walk is the same
 * for the same state, so pages resume it by 'skip'.
 *
 * @return 0 with 'w->rooms' and 'w->more' set; AX_ENOTFOUND when the root
 *         is unknown; AX_EFORBIDDEN when the user may not preview the root.
 */
int ax_space_hierarchy(ax_txn_t *txn, const char *root, ax_space_walk_t *w);

#endif
