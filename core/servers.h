/*
 * servers.h -- a room as other servers see it.  Two files:
 *
 *   servers.c  what another server may do and see in a room: server ACLs
 *              (m.room.server_acl, with the spec's glob matching) and history
 *              visibility judged for a server ("a server may see an event
 *              that any of its users may see").
 *   dag.c      reading the event graph for them: a PDU as it goes over the
 *              wire, the state before an event, and the walks behind
 *              /backfill and /get_missing_events (auth chains are
 *              core/rooms.h's ax_room_auth_chain, which joins use too).
 *
 * Used by the Server-Server endpoints in federation/ (serving room data,
 * and the ACL check of inbound transactions).  Everything here reads in the
 * caller's transaction and keeps no state between calls: safe on any
 * thread, in read or write transactions.
 */
#ifndef AX_CORE_SERVERS_H
#define AX_CORE_SERVERS_H

#include "core/events.h"
#include "core/rooms.h"

/* ---- servers.c -- server ACLs ------------------------------------------------------ */

/**
 * Matches 's' against the glob 'pattern' as the appendices' "Glob-style
 * matching" defines it: '*' is any run of characters (also none), '?'
 * exactly one character, everything else itself; ASCII letters compare
 * case-insensitively, as server ACLs want (core/filter.h's
 * ax_glob_match() is the case-sensitive one of event filters).  The whole
 * of 's' must match.
 */
bool ax_glob_match_ci(const char *pattern, const char *s);

/**
 * Decides whether 'server_name' (a server name, with or without a port,
 * which is ignored) may take part in a room whose m.room.server_acl
 * content is 'acl' (borrowed; NULL when the room has none), in the order
 * the event's schema gives: no ACL allows; an IP literal is denied when
 * allow_ip_literals is false (a non-boolean counts as true); a match in
 * 'deny' denies; a match in 'allow' allows; anything else is denied.
 * Entries that are not strings are ignored.
 */
bool ax_server_acl_allows(const json_t *acl, const char *server_name);

/**
 * The same for room 'room_id' in its current state, and false for every
 * other server when the room was created with m.federate false.  True for
 * a room this server does not know (there is no ACL to apply: the caller
 * decides what an unknown room means).  The one check every federation
 * endpoint that names a room makes (spec: Server-Server API "Server Access
 * Control Lists"): a denied server gets 403 M_FORBIDDEN.
 */
bool ax_room_server_allowed(ax_txn_t *txn, const char *room_id, const char *server_name);

/* ---- servers.c -- what a server may see -------------------------------------------------- */

/**
 * A room seen from another server: the server's users who have (or had) a
 * membership in the room, looked up once and then used for every event a
 * request judges.  Fill it with ax_server_view_init(), free it with
 * ax_server_view_dispose().  Borrows 'txn', 'room_id' and 'server'.
 */
typedef struct st_ax_server_view_t {
    ax_txn_t *txn;
    const char *room_id;
    const char *server;
    json_t *users; /* [user_id]: the server's users with a membership record in the room */
    bool joined;   /* one of them is joined now: the server is in the room */
} ax_server_view_t;

/** Prepares 'v' for 'server' (a server name, port included) in 'room_id'.  Returns 0 or a storage error. */
int ax_server_view_init(ax_server_view_t *v, ax_txn_t *txn, const char *room_id, const char *server);

/** Frees what ax_server_view_init() allocated; safe on a zeroed view. */
void ax_server_view_dispose(ax_server_view_t *v);

/**
 * True when the viewed server may see event 'event_id' ('pdu' and its
 * stored record 'rec', borrowed): when one of its users may, by the rules of the
 * Client-Server API "History visibility", server behaviour, applied at the
 * event: world_readable always; a user joined at the event; an invited
 * user in an "invited" room; in a "shared" room, while the server is in
 * the room.  A history_visibility event counts with the visibility before
 * it too, and a user's own membership event with their membership before
 * it.  Timeline events are judged from the position indexes; soft-failed
 * events and outliers from the state stored with them, or, for an outlier
 * stored without one (an auth event learnt from a join), from the room's
 * current state.  A rejected event is never visible.
 */
bool ax_server_view_can_see(ax_server_view_t *v, const char *event_id, const json_t *pdu, const ax_event_rec_t *rec);

/* ---- dag.c -- the event graph ------------------------------------------------------------ */

/**
 * A stored PDU (borrowed) as it is served to other servers: a new
 * reference, without "unsigned" (where this server keeps its own data:
 * prev_content, redacted_because, transaction IDs).  Every other key stays,
 * since the origin's hashes and signatures cover them.  Redacted events
 * stay redacted.
 */
json_t *ax_event_federation_format(const json_t *pdu);

/**
 * The state of the room before event 'event_id' (its stored 'pdu' and
 * 'flags'), "prior to considering any state changes induced by the
 * requested event": the state after its prev event, or the resolution of
 * the states after each of them, or, for events whose state cannot change
 * the room (non-state or rejected), the state stored with the event.  When
 * the prev events have no state here (outliers before a join), the state
 * stored with the event with its own entry set back to what it replaced.
 * Stores a new state map ({type: {state_key: event_id}}) in '*out'.
 *
 * @return 0; AX_ENOTFOUND when this server does not know the state there
 *         (an outlier, or prev events it has no state for); a state
 *         resolution or storage error.
 */
int ax_event_state_before(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const char *event_id,
                          const json_t *pdu, unsigned flags, json_t **out);

/** Most events one /backfill or /get_missing_events walk looks at, whatever its limit. */
#define AX_DAG_WALK_MAX 1000

/**
 * /backfill: the events 'from' (a borrowed array of event IDs) and those
 * before them, walking prev_events deepest first, up to 'limit' events of
 * 'room_id'.  Only timeline events are listed (outliers, rejected and
 * soft-failed events are neither listed nor walked through).  Stores a new
 * array of event IDs, newest first, in '*out'.  Returns 0 or a storage
 * error.
 */
int ax_room_backfill(ax_txn_t *txn, const char *room_id, const json_t *from, size_t limit, json_t **out);

/**
 * /get_missing_events: the events before 'latest' (borrowed array; the
 * latest events themselves are not listed) that are not in 'earliest'
 * (borrowed array; not walked past either), breadth first, with a depth of
 * at least 'min_depth', up to 'limit', timeline events of 'room_id' only.
 * Stores a new array of event IDs, oldest first, in '*out'.  Returns 0 or
 * a storage error.
 */
int ax_room_missing_events(ax_txn_t *txn, const char *room_id, const json_t *earliest, const json_t *latest,
                           size_t limit, int64_t min_depth, json_t **out);

#endif
