/*
 * events.h -- the event engine's pure logic, shared by local and federated
 * events: PDU format checks and identifier grammar (event.c).  Nothing here touches storage or the network;
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

#endif
