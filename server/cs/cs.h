/*
 * cs.h -- what the Client-Server modules share: User-Interactive Auth
 * (uia.c) and issuing login sessions (login.c).  Only server/cs/ includes it.
 */
#ifndef AX_CS_H
#define AX_CS_H

#include "server/changes.h"
#include "server/handlers.h"

/* ---- uia.c -- User-Interactive Authentication ------------------------------------------- */

typedef struct st_ax_uia_flow_t {
    const char *stages[4]; /* NULL-terminated */
} ax_uia_flow_t;

/**
 * Called once the request completed a flow.  'session' is the UIA record
 * (borrowed for the call; e.g. "token" holds the registration token used).
 * The session is already consumed: it cannot authorise another request.
 */
typedef void (*ax_uia_ok_fn)(ax_req_t *r, json_t *body, json_t *session, void *arg);

/**
 * Runs User-Interactive Auth for 'r' against 'flows'.  'body' is the parsed
 * request body (borrowed; held by the request), 'arg' is passed to 'ok'
 * and must live as long as the request (pool memory is fine).  Replies by
 * itself (401 with flows, or an error) when the request is not yet
 * authorised.  A session is bound to the method, path and user that
 * started it.
 */
void ax_uia_run(ax_req_t *r, json_t *body, const ax_uia_flow_t *flows, size_t nflows, ax_uia_ok_fn ok, void *arg);

/** True when registering needs a token (one configured, or any created with `axon admin`). */
bool ax_cs_registration_requires_token(ax_server_t *srv, ax_txn_t *txn);

/** 0 when 'token' may be used to register now, AX_EFORBIDDEN otherwise. */
int ax_cs_regtoken_check(ax_server_t *srv, ax_txn_t *txn, const char *token);

/* ---- login.c -- issuing sessions ---------------------------------------------------------- */

/** A session being issued: made on the HTTP thread, applied by the writer, answered after. */
typedef struct st_ax_cs_login_t {
    char user_id[256];
    char device_id[128];
    char *display_name;
    char ip[48]; /* the client's address, recorded as the device's last activity */
    char access[AX_TOKEN_LEN + 1];
    uint8_t access_hash[32];
    bool refresh;
    char refresh_token[AX_TOKEN_LEN + 1];
    uint8_t refresh_hash[32];
    bool has_prev;
    uint8_t prev_refresh[32];
    uint64_t lifetime_ms; /* 0: the access token does not expire */
    uint64_t expires_ms;
} ax_cs_login_t;

/**
 * Prepares a session for 'user_id' (may be "" when the writer decides it)
 * on 'device_id' (NULL: a new random one) with fresh tokens.  Returns heap
 * memory for ax_req_write's 'data'; free with ax_cs_login_free.
 */
ax_cs_login_t *ax_cs_login_new(ax_req_t *r, const char *user_id, const char *device_id, const char *display_name,
                               bool refresh);
void ax_cs_login_free(void *login);

/** Writer side: stores the device and its tokens. */
int ax_cs_login_apply(ax_txn_t *txn, ax_cs_login_t *l);

/** The login/register response body (a new reference). */
json_t *ax_cs_login_response(ax_server_t *srv, const ax_cs_login_t *l);

/**
 * Turns what a client typed ("alice", "@Alice:example.org") into our user
 * ID with the localpart lower-cased, in the pool.  NULL when it is not a
 * valid user ID of this server.
 */
const char *ax_cs_resolve_user(ax_req_t *r, const char *user);

/** A random device ID (10 upper-case letters), as clients expect them. */
void ax_cs_device_id_new(char out[11]);

/** What deactivation needs (account.c's writer side, also run by `axon admin deactivate`). */
typedef struct st_ax_cs_deactivate_t {
    char user_id[256];
    bool erase;
    const ax_origin_t *origin; /* signs the leave events (borrowed) */
    unsigned rooms_left;       /* out */
} ax_cs_deactivate_t;

/** Writer side: logs out and deletes every device of 'user_id' except 'keep' (may be NULL). */
int ax_cs_logout_devices(ax_txn_t *txn, const char *user_id, const char *keep);

/* ---- rooms.c / events.c -- shared room helpers ----------------------------------------- */

/** Replies for an error of the event pipeline (404 unknown room, 403 with the auth rules' reason, ...). */
int ax_cs_room_error(ax_req_t *r, int rc, const char *reason);

/** The displayname/avatar_url a member event of 'user_id' carries (a new reference). */
json_t *ax_cs_member_profile(ax_txn_t *txn, const char *user_id);

/**
 * Writer side: re-sends 'user_id''s join in 'room_id' with their current
 * profile, if it changed (profile changes propagate to rooms).
 */
int ax_cs_member_refresh(ax_txn_t *txn, const ax_origin_t *origin, const char *room_id, const char *user_id);

/**
 * Restricted rooms (v8+, spec "Restricted rooms"): when 'user_id' is neither
 * joined nor invited and the join rules are restricted, checks that the user
 * is in a room the rules allow and writes a local member with the power to
 * invite (whose server, 'our_server', vouches by signing) into 'content' as
 * join_authorised_via_users_server.  Returns 0 (nothing to do, or done),
 * AX_EFORBIDDEN (not in an allowed room) or AX_ENOAUTHORISER (no local
 * member may invite), with 'reason'.
 */
#define AX_ENOAUTHORISER (-100)
int ax_cs_restricted_authoriser(ax_txn_t *txn, const char *room_id, const char *user_id, const char *our_server,
                                json_t *content, char *reason, size_t rlen);

/** Writer side: 'user_id' leaves (or declines, or withdraws a knock on) 'room_id'; 'reason' on refusal. */
int ax_cs_member_leave(ax_txn_t *txn, const ax_origin_t *origin, const char *room_id, const char *user_id, char *reason,
                       size_t rlen);

/** A room ID, or a local alias resolved to one (in the pool); NULL after replying. */
const char *ax_cs_resolve_room_or_reply(ax_req_t *r, const char *id_or_alias);

/**
 * Opens a read txn on a room the requester may read now (joined, a former
 * member up to their leave, or world-readable).  Returns it with the last
 * readable position in '*pos', or NULL after replying.
 */
ax_txn_t *ax_cs_room_reader_or_reply(ax_req_t *r, const char *room_id, uint64_t *pos);

/** Parses "t<pos>" pagination tokens and "s<pos>_..." sync tokens. */
bool ax_cs_parse_pagination(const char *tok, uint64_t *pos);

/** Wakes the long-polls of a room's joined members (typing changes, which skip the writer). */
void ax_cs_typing_notify_room(ax_server_t *srv, const char *room_id);

/* ---- keys.c / to_device.c -- end-to-end encryption ------------------------------------------ */

/**
 * Claims one-time keys (fallback keys when none is left) of local users on
 * the writer, so that no key is handed out twice: 'wanted' (stolen) is
 * {user: {device: algorithm}}; then 'reply(r, claimed)' answers with
 * {user: {device: {"algorithm:key_id": key}}} (borrowed), or the request
 * gets the error.  For POST /keys/claim and its federation twin.
 */
void ax_cs_keys_claim_local(ax_req_t *r, json_t *wanted, void (*reply)(ax_req_t *r, json_t *claimed));

/**
 * Checks keys about to be published for 'device_id' of the requester (any
 * may be NULL): device keys must be the requester's, for that device,
 * well formed and self-signed (400 M_INVALID_SIGNATURE); one-time and
 * fallback keys must be "<algorithm>:<key_id>" maps of keys.  Returns 0,
 * or -1 after replying.
 */
int ax_cs_keys_check_or_reply(ax_req_t *r, const char *device_id, json_t *device_keys, json_t *one_time_keys,
                              json_t *fallback_keys);

/**
 * Writer side: stores checked keys of a device (any may be NULL; borrowed).
 * New device keys are a device-list change.  Returns 0, AX_ECONFLICT (the
 * device has other identity keys) or AX_EEXIST (a one-time key ID already
 * holds another key), with a reason in 'why' (cap bytes), or a storage error.
 */
int ax_cs_keys_store(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *device_keys,
                     const json_t *one_time_keys, const json_t *fallback_keys, char *why, size_t cap);

/**
 * The device-list changes 'user_id' should hear of between stream positions
 * 'from' (exclusive) and 'to' (inclusive): users sharing a room whose
 * devices or cross-signing keys changed, or who now share a room with the
 * user ('*changed'), and users who no longer share any room ('*left').
 * Both are new references (arrays of user IDs), set even on failure.
 * With 'changes' (may be NULL), only the rooms that changed in the window
 * are read, when its ring reaches back to 'from'; else every room of the
 * user.  Returns 0 or a storage error.
 */
int ax_cs_device_lists(ax_txn_t *txn, ax_changes_t *changes, const char *user_id, uint64_t from, uint64_t to,
                       json_t **changed, json_t **left);

/**
 * /sync's end-to-end encryption sections for 'device_id' of 'user_id'
 * (NULL: no device), read in 'txn' after 'since' (0: initial sync) up to
 * '*upto': to_device, device_lists (incremental syncs only),
 * device_one_time_keys_count and device_unused_fallback_key_types, as an
 * object to merge into the response (a new reference).  When the device has
 * more to-device messages than one response carries, lowers '*upto' to the
 * last one delivered: the rest of the response must be bounded by it too.
 * Touches no request, so it may run on a worker.  Sets '*ack' when
 * messages up to 'since' wait to be deleted: then call
 * ax_cs_to_device_ack() from the request's thread.  'changes' as above.
 */
json_t *ax_cs_e2ee_sync(ax_txn_t *txn, ax_changes_t *changes, const char *user_id, const char *device_id,
                        uint64_t since, uint64_t *upto, bool *ack);

/** The to_device part of the above: the events to deliver (a new reference), '*upto' and '*ack' as above. */
json_t *ax_cs_to_device_sync(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t since, uint64_t *upto,
                             bool *ack);

/** Deletes the requester's to-device messages up to 'since' (acknowledged by that token), without waiting. */
void ax_cs_to_device_ack(ax_req_t *r, uint64_t since);

/* ---- presence.c ---------------------------------------------------------------------- */

typedef struct st_ax_presence_t ax_presence_t;
ax_presence_t *ax_presence_new(void);
void ax_presence_free(ax_presence_t *p);
/** The requester polled /sync with 'set_presence' (NULL: online); stores a change of state. */
void ax_presence_polled(ax_req_t *r, const char *set_presence);
/** Housekeeping: idle users become unavailable, silent ones offline; writes go through 'submit'. */
void ax_presence_tick(ax_server_t *srv,
                      void (*submit)(ax_server_t *srv, ax_apply_fn apply, void *data, void (*free_data)(void *)));
/** True when users 'a' and 'b' are joined to a common room (or are the same user). */
bool ax_presence_shares_room(ax_txn_t *txn, const char *a, const char *b);
/** The m.presence content of a stored record (NULL: offline), a new reference. */
json_t *ax_presence_content(const json_t *rec, uint64_t now_ms);

#endif
