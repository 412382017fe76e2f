/*
 * events.h -- the event engine's pure logic, shared by local and federated
 * events: PDU format checks and identifier grammar (event.c), the
 * authorization rules of room versions 1-12 (auth_rules.c) and state
 * resolution (stateres.c).  Nothing here touches storage or the network;
 * callers hand in the state to judge against through callbacks.
 *
 * Thread safety: every function is reentrant and keeps no state between
 * calls; callbacks are called on the caller's thread, before the call
 * returns.
 */
#ifndef AX_CORE_EVENTS_H
#define AX_CORE_EVENTS_H

#include "core/core.h"

/* ---- event.c -- identifiers, PDU format and size limits ------------------------ */

/** Largest PDU, in bytes of canonical JSON (client-server spec, "Size limits"). */
#define AX_PDU_MAX_BYTES 65536
/** Largest sender, room_id, event_id, state_key and type, in bytes. */
#define AX_ID_MAX_BYTES 255
/** Most auth_events and prev_events a PDU may list (PDU schemas). */
#define AX_PDU_MAX_AUTH_EVENTS 10
#define AX_PDU_MAX_PREV_EVENTS 20
/** Room and event IDs derived from a reference hash: sigil + 43 base64 chars + NUL. */
#define AX_HASH_ID_LEN 45

/**
 * Returns true when 's' is a server name as the appendices' grammar defines
 * it: a DNS name, a dotted IPv4 literal or a bracketed IPv6 literal,
 * optionally followed by ":port" (1-5 digits).
 */
bool ax_id_is_valid_server_name(const char *s);

/**
 * Returns true when 's' is a user ID servers must accept over federation:
 * "@", a localpart of any characters but ':' and NUL (the historical
 * grammar, so it may even be empty), ":" and a valid server name, at most
 * 255 bytes in all.
 */
bool ax_id_is_valid_user_id(const char *s);

/**
 * Returns true when 's' also follows the current grammar (spec v1.8+): a
 * non-empty localpart of [a-z0-9._=/+-] only.  Use it for IDs this server
 * allocates.
 */
bool ax_id_is_compliant_user_id(const char *s);

/**
 * Returns true when 's' is a room ID for room version 'rv': "!opaque:server"
 * up to v11, "!" + 43 URL-safe unpadded base64 characters (the create event's
 * reference hash) from v12.  With 'rv' NULL either form is accepted.
 */
bool ax_id_is_valid_room_id(const char *s, const ax_room_version_t *rv);

/**
 * Returns true when 's' is an event ID for room version 'rv':
 * "$opaque:server" in v1-2, "$" + 43 standard base64 characters in v3,
 * "$" + 43 URL-safe base64 characters from v4.  With 'rv' NULL any of these
 * is accepted.  At most 255 bytes.
 */
bool ax_id_is_valid_event_id(const char *s, const ax_room_version_t *rv);

/** Returns true when 's' is a room alias, "#localpart:server", at most 255 bytes. */
bool ax_id_is_valid_room_alias(const char *s);

/**
 * Returns the server part of a "sigil localpart:server" identifier (user
 * IDs, v1-11 room IDs, v1-2 event IDs, aliases): a borrowed pointer into
 * 'id' just past the first ':', or NULL when there is none.
 */
const char *ax_id_domain(const char *id);

/**
 * Checks that 'event' (borrowed) is a well-formed PDU of room version 'rv',
 * the first of the spec's "checks performed on receipt of a PDU": the keys
 * and types the version's PDU schema requires (v1-2 "event_id" and
 * [id, hashes] references, v3+ plain ID lists, v12 room IDs and create
 * events without "room_id"), identifier grammar of sender, room_id,
 * event_id and references, the 255-byte field limits, at most 10
 * auth_events and 20 prev_events, a non-negative depth, strict canonical
 * JSON from v6 (integers only, within +-(2^53-1)), and the 65536-byte limit
 * on the canonical JSON of the whole event.  On failure a human-readable
 * reason is written to 'reason' (if not NULL).
 *
 * @return 0 when the event is well formed;
 *         AX_ETOOBIG when the event or one of its fields is over a limit;
 *         AX_EINVAL for any other violation.
 */
int ax_event_check_format(const ax_room_version_t *rv, const json_t *event, char *reason, size_t reasonlen);

/** Returns true when 'event' (borrowed) is a state event (has a string "state_key"). */
bool ax_event_is_state(const json_t *event);

/**
 * Returns the ID in an auth_events/prev_events entry 'ref' (borrowed): the
 * string itself (v3+), or the first element of an [id, hashes] pair (v1-2).
 * The result is borrowed from 'ref'; NULL when the entry is malformed.
 */
const char *ax_event_ref_id(const json_t *ref);

/**
 * Returns the ID of the event an m.room.redaction 'event' redacts: from
 * content.redacts in v11+, from the top-level "redacts" before.  Borrowed
 * from 'event'; NULL when absent or not a string.
 */
const char *ax_event_redacts(const ax_room_version_t *rv, const json_t *event);

/**
 * Writes the event ID of 'event' (borrowed) into 'out' ('cap' bytes): its
 * "event_id" key in v1-2, where IDs are chosen by the origin; the "$" +
 * reference hash otherwise (any "event_id" key is ignored, since it is not
 * covered by the hash).
 *
 * @return 0; AX_EINVAL when there is no usable ID or 'cap' is too small.
 */
int ax_event_get_id(const ax_room_version_t *rv, const json_t *event, char *out, size_t cap);

/**
 * Writes the room ID a v12+ room gets from its m.room.create event 'create'
 * (borrowed): the create event's ID with "!" instead of "$" (room v12,
 * "Room IDs").  'out' must hold AX_HASH_ID_LEN bytes.
 *
 * @return 0; AX_EINVAL when 'rv' does not derive room IDs, 'create' is not
 *         an m.room.create event or cannot be hashed, or 'cap' is too small.
 */
int ax_event_room_id_from_create(const ax_room_version_t *rv, const json_t *create, char *out, size_t cap);

/**
 * Writes the ID of the m.room.create event of a v12+ room, "$" + the room
 * ID without its "!", into 'out' (AX_HASH_ID_LEN bytes).  v12 events do not
 * list the create event in auth_events; this is the one they imply.
 *
 * @return 0; AX_EINVAL when 'rv' does not derive room IDs or 'room_id' is
 *         not a v12 room ID.
 */
int ax_event_create_id_from_room_id(const ax_room_version_t *rv, const char *room_id, char *out, size_t cap);

/** The most servers ax_event_required_signers() returns. */
#define AX_EVENT_SIGNERS_MAX 3

/**
 * Lists the servers whose signatures 'event' (borrowed) must carry and
 * which must verify ("Validating hashes and signatures on received
 * events"): the sender's server (except for an invite carrying
 * third_party_invite, which another server may send for the sender), the
 * event ID's server in v1-2, and from v8 the server of
 * content.join_authorised_via_users_server on joins.  The names are
 * borrowed from 'event' and deduplicated; '*n' receives their count.
 *
 * @return 0, or AX_EINVAL when an identifier has no server part.
 */
int ax_event_required_signers(const ax_room_version_t *rv, const json_t *event, const char *out[AX_EVENT_SIGNERS_MAX],
                              size_t *n);

/* ---- auth_rules.c -- the authorization rules ------------------------------------ */

/**
 * Returns the state event (borrowed) for ('type', 'state_key') in whatever
 * state the caller judges against -- the event's auth events, the state
 * before it, or the room's current state -- or NULL when there is none.
 * The event must stay valid until the call that invoked the callback
 * returns.  Callers must not hand in rejected events.
 *
 * In v12+ rooms the m.room.create event is never listed in auth_events, but
 * the lookup must still return it for ("m.room.create", "").
 */
typedef const json_t *(*ax_auth_lookup_fn)(void *arg, const char *type, const char *state_key);

/**
 * A lookup over a JSON array of state events: 'arg' is the (borrowed) array.
 * Linear, meant for the handful of events an event's auth_events names.
 */
const json_t *ax_auth_lookup_list(void *arg, const char *type, const char *state_key);

/** A (type, state_key) pair, both borrowed. */
typedef struct st_ax_state_key_t {
    const char *type;
    const char *state_key;
} ax_state_key_t;

/** The most pairs ax_auth_event_types() returns. */
#define AX_AUTH_TYPES_MAX 7

/**
 * Lists the (type, state_key) pairs an event's auth_events may reference
 * ("Auth events selection"): the m.room.create event (not from v12, where
 * the room ID implies it), m.room.power_levels, the sender's m.room.member,
 * and for membership events the target's m.room.member, m.room.join_rules
 * for join/invite/knock, the m.room.third_party_invite named by
 * content.third_party_invite.signed.token, and from v8 the member event of
 * content.join_authorised_via_users_server on joins.  An event builder
 * fills auth_events with whichever of these exist in the current state.
 * m.room.create itself has none.  Strings are borrowed from 'event'.
 *
 * @return 0 with the count in '*n'; AX_EINVAL when 'event' lacks a string
 *         type/sender, or is a membership event without a string state_key.
 */
int ax_auth_event_types(const ax_room_version_t *rv, const json_t *event, ax_state_key_t out[AX_AUTH_TYPES_MAX],
                        size_t *n);

/**
 * Applies the "considering the event's auth_events" rules to 'event'
 * (borrowed) and the events its auth_events name, fetched by the caller:
 * 'auth_events' holds 'n' borrowed events, 'rejected' (NULL when none is)
 * says which were themselves rejected.  Rejects duplicates per
 * (type, state_key), entries ax_auth_event_types() does not select
 * (which from v12 includes any m.room.create), rejected entries, entries
 * from another room, and before v12 a missing m.room.create.  These rules
 * do not apply to m.room.create itself (rule 1 decides it alone).
 *
 * @return 0, or AX_EFORBIDDEN with a reason in 'reason' (if not NULL).
 */
int ax_auth_check_auth_events(const ax_room_version_t *rv, const json_t *event, const json_t *const *auth_events,
                              const bool *rejected, size_t n, char *reason, size_t reasonlen);

/**
 * Decides whether 'event' (borrowed) is allowed by the authorization rules
 * of room version 'rv', judged against the state 'lookup' exposes: the
 * m.room.create rules, the v12 room ID check, m.federate, the v1-5
 * m.room.aliases special case, every m.room.member transition (join rules
 * public/invite/knock/restricted/knock_restricted, third-party invites
 * verified against the keys of the m.room.third_party_invite event), the
 * sender's membership, required power levels, the state_key "@" rule, the
 * m.room.power_levels validation and change rules, and the v1-2 redaction
 * rule.  It does not run ax_auth_check_auth_events() (that needs the list)
 * nor verify event signatures; join_authorised_via_users_server only needs
 * a signature from the authorising server to be present here, since
 * ax_event_required_signers() makes the signature check verify it.
 *
 * @return 0 when allowed; AX_EFORBIDDEN with a human-readable reason in
 *         'reason' (if not NULL) otherwise, malformed events and malformed
 *         power levels in state included.
 */
int ax_auth_check(const ax_room_version_t *rv, const json_t *event, ax_auth_lookup_fn lookup, void *lookup_arg,
                  char *reason, size_t reasonlen);

/** The power level of a v12+ room creator: above every level JSON can hold. */
#define AX_PL_INFINITE INT64_MAX

/**
 * Writes the power level of 'user_id' in the state 'lookup' exposes into
 * '*out': AX_PL_INFINITE for v12+ creators (the create event's sender and
 * content.additional_creators), else users[user_id], users_default or 0;
 * without m.room.power_levels, 100 for the creator (v1-10 content.creator,
 * v11 the sender) and 0 for everyone else.
 *
 * @return 0, or AX_EINVAL when the power levels in state cannot be read.
 */
int ax_power_level_of(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg, const char *user_id,
                      int64_t *out);

/**
 * Writes the level required to send an event of 'event_type' into '*out':
 * events[event_type] when listed, else state_default (50) for state events
 * or events_default (0) for others, also when there is no power levels
 * event at all.
 *
 * @return 0, or AX_EINVAL when the power levels in state cannot be read.
 */
int ax_power_level_required(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg,
                            const char *event_type, bool is_state, int64_t *out);

/**
 * Writes the level of the named action 'name' ("invite", "kick", "ban",
 * "redact"; defaults 0, 50, 50, 50) into '*out'.
 *
 * @return 0, or AX_EINVAL for another name or unreadable power levels.
 */
int ax_power_level_named(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg, const char *name,
                         int64_t *out);

/**
 * Writes the level required for the notification 'key' (notifications.room
 * for "@room", default 50) into '*out'.
 *
 * @return 0, or AX_EINVAL when the power levels in state cannot be read.
 */
int ax_power_level_notification(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg,
                                const char *key, int64_t *out);

/**
 * Returns true when 'user_id' is a creator of the room whose state 'lookup'
 * exposes: the creator of v1-10 (content.creator), the sender of the create
 * event from v11, and from v12 also content.additional_creators.
 */
bool ax_auth_is_creator(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg, const char *user_id);

/**
 * Decides whether the accepted m.room.redaction 'redaction' should be
 * applied to 'original' (both borrowed), judged against the state 'lookup'
 * exposes ("Handling redactions"): yes when the redaction's sender has the
 * redact level; otherwise from v3 only when both senders are on the same
 * server, and in v1-2 when both event IDs are (auth rule 11).  The caller
 * checks that 'original' is the event the redaction names and is in the
 * same room.
 *
 * @return 0 when it applies; AX_EFORBIDDEN when it must not (yet); AX_EINVAL
 *         on malformed events or power levels.
 */
int ax_auth_redaction_applies(const ax_room_version_t *rv, const json_t *redaction, const json_t *original,
                              ax_auth_lookup_fn lookup, void *lookup_arg);

/* ---- stateres.c -- state resolution --------------------------------------------- */

/**
 * Returns a new reference to the event 'event_id', or NULL when it is
 * unknown; sets '*rejected' when the event was rejected.  State resolution
 * holds every returned event until it finishes.
 */
typedef json_t *(*ax_stateres_fetch_fn)(void *arg, const char *event_id, bool *rejected);

/** The most state sets one resolution takes. */
#define AX_STATERES_MAX_SETS 64

/**
 * Resolves 'n_sets' room states ('state_sets', each borrowed, shaped
 * {type: {state_key: event_id}}) of room 'room_id' with the algorithm of
 * room version 'rv': state resolution v2 for rooms v2-v11, v2.1 (iterative
 * auth checks from an empty state, the conflicted state subgraph added to
 * the full conflicted set) from v12.  Events are taken from 'event_map'
 * (borrowed, {event_id: event}, not rejected; may be NULL) first, then from
 * 'fetch'.  The result order does not depend on the order of the sets.
 *
 * @return 0 with a new reference in '*out' (same shape as the inputs);
 *         AX_ENOTFOUND when an event of a state set cannot be fetched
 *         (missing auth events are skipped, as Synapse does);
 *         AX_EINVAL for room version 1 (not implemented), malformed input or
 *         an event from another room; AX_ETOOBIG for more than
 *         AX_STATERES_MAX_SETS sets.
 */
int ax_stateres_resolve(const ax_room_version_t *rv, const char *room_id, const json_t *const *state_sets,
                        size_t n_sets, const json_t *event_map, ax_stateres_fetch_fn fetch, void *fetch_arg,
                        json_t **out);

#endif
