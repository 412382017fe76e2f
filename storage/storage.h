/*
 * storage.h -- the only door to the database.  LMDB lives behind it: no
 * MDB_* type or constant appears outside storage/ (STYLE B1).
 *
 * Model (DESIGN.md "Threads"): reads run on any thread in short read
 * transactions; all writes run on the single writer thread, which applies
 * every queued job in one transaction and commits once (group commit), then
 * posts each job back to the port it came from.  A job's completion means
 * its writes are durable (fsync'd unless sync = false).
 *
 * One banner per source file, as in Redis's server.h.
 */
#ifndef AX_STORAGE_H
#define AX_STORAGE_H

#include "common/common.h"

#include <jansson.h>

typedef struct st_ax_db_t ax_db_t;
typedef struct st_ax_txn_t ax_txn_t;
typedef struct st_ax_writer_t ax_writer_t;

/* ---- db.c -- environment, read transactions, schema version ------------------ */

typedef struct st_ax_db_options_t {
    const char *path;  /* directory holding data.mdb; created by the caller */
    uint64_t map_size; /* bytes */
    bool sync;         /* fsync on commit */
    bool read_only;
} ax_db_options_t;

/**
 * Opens (creating if needed) the environment at opts->path, opens every
 * database of schema.h and brings the schema to AX_SCHEMA_VERSION, running
 * migrations.  Returns 0 and the handle in '*out', or AX_EIO / AX_EINVAL
 * (e.g. a database written by a newer axon) with a message in 'err'.
 */
int ax_db_open(const ax_db_options_t *opts, ax_db_t **out, char *err, size_t errlen);

/**
 * Closes the environment.  Every thread must have ended its transactions,
 * and the writer must be stopped.  NULL is allowed.
 */
void ax_db_close(ax_db_t *db);

/**
 * Begins a read transaction, reusing one cached on the calling thread when
 * it can (cheap: no allocation).  Keep it short and never hold it across
 * asynchronous work.  Returns 0 or AX_EIO.
 */
int ax_db_read_begin(ax_db_t *db, ax_txn_t **out);

/** Ends a read transaction from ax_db_read_begin; NULL is allowed. */
void ax_db_read_end(ax_txn_t *txn);

/** Returns 0 when the database answers a read (the /health check), else AX_EIO. */
int ax_db_ping(ax_db_t *db);

typedef struct st_ax_db_stats_t {
    uint64_t map_size;   /* bytes reserved */
    uint64_t used_bytes; /* pages in use x page size */
    uint64_t last_txn_id;
    unsigned readers_used;
    unsigned readers_max;
} ax_db_stats_t;

int ax_db_stats(ax_db_t *db, ax_db_stats_t *out);

/**
 * Writes a consistent, compacted copy of the whole environment to 'dir' (an
 * existing empty directory) as dir/data.mdb, from one read snapshot: safe
 * while another thread or process writes.  Returns 0 or AX_EIO with 'err'.
 */
int ax_db_copy(ax_db_t *db, const char *dir, char *err, size_t errlen);

/** The directory this database lives in (borrowed). */
const char *ax_db_path(const ax_db_t *db);

/* ---- meta.c -- small named values --------------------------------------------- */

/** Reads meta value 'name' as a u64.  Returns 0, AX_ENOTFOUND or AX_EIO. */
int ax_db_meta_get_u64(ax_txn_t *txn, const char *name, uint64_t *out);
/** Writes meta value 'name' (write transactions only).  Returns 0, AX_EMAPFULL or AX_EIO. */
int ax_db_meta_put_u64(ax_txn_t *txn, const char *name, uint64_t value);

/* ---- sessions.c -- access tokens ------------------------------------------------ */

/** A session found by its token hash.  Strings are borrowed from the txn: copy them before it ends. */
typedef struct st_ax_session_t {
    const char *user_id;
    const char *device_id;
    uint64_t expires_ms; /* 0: does not expire */
} ax_session_t;

#define AX_TOKEN_HASH_BYTES 32

/** Looks up the session of token hash 'hash'.  Returns 0, AX_ENOTFOUND or AX_EIO. */
int ax_db_session_get(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], ax_session_t *out);

/** Stores a session (write txn).  Returns 0, AX_EMAPFULL or AX_EIO. */
int ax_db_session_put(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], const char *user_id,
                      const char *device_id, uint64_t expires_ms);

/** Deletes a session (write txn).  Returns 0, AX_ENOTFOUND or AX_EIO. */
int ax_db_session_del(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES]);

/* ---- accounts.c -- accounts, profiles, devices ----------------------------------
 * Records are JSON objects (layouts in schema.h).  Getters return a new
 * reference in '*out' (the caller decrefs) or AX_ENOTFOUND; putters borrow
 * the value.  Putters and deleters need the writer's transaction. */

int ax_db_account_get(ax_txn_t *txn, const char *user_id, json_t **out);
int ax_db_account_put(ax_txn_t *txn, const char *user_id, const json_t *account);
/**
 * Calls 'cb' for each account in user ID order, starting at 'from' (NULL:
 * the first), until it returns nonzero (which is returned).  'user_id' and
 * 'account' are borrowed for the call only.
 */
int ax_db_account_foreach(ax_txn_t *txn, const char *from, int (*cb)(void *arg, const char *user_id, json_t *account),
                          void *arg);

int ax_db_profile_get(ax_txn_t *txn, const char *user_id, json_t **out);
int ax_db_profile_put(ax_txn_t *txn, const char *user_id, const json_t *profile);

int ax_db_device_get(ax_txn_t *txn, const char *user_id, const char *device_id, json_t **out);
int ax_db_device_put(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *device);
/** Calls 'cb' for each device of 'user_id' (an index range, not a scan), in device ID order. */
int ax_db_device_foreach(ax_txn_t *txn, const char *user_id,
                         int (*cb)(void *arg, const char *device_id, json_t *device), void *arg);

/**
 * Logs 'user_id' in on 'device_id': creates the device (with 'display_name'
 * when new) or keeps it, revokes the tokens the device had, and stores the
 * new access token hash (expiring at 'expires_ms', 0 = never) and, if not
 * NULL, the refresh token hash (replacing 'prev_refresh' if not NULL).
 * Records 'ip' (may be NULL) and now as the device's last activity.  A new
 * device is a device-list change (ax_db_devicelist_touch).
 * Returns 0 or an AX_E* code.
 */
int ax_db_device_login(ax_txn_t *txn, const char *user_id, const char *device_id, const char *display_name,
                       const char *ip, const uint8_t access_hash[AX_TOKEN_HASH_BYTES], uint64_t expires_ms,
                       const uint8_t *refresh_hash, const uint8_t *prev_refresh);

/**
 * Revokes the device's tokens and, when 'delete_device', deletes the device
 * with its encryption keys and inbox, as a device-list change, and the
 * pushers it created.  AX_ENOTFOUND if unknown.
 */
int ax_db_device_logout(ax_txn_t *txn, const char *user_id, const char *device_id, bool delete_device);

/* ---- tokens.c -- refresh tokens, login tokens, UIA sessions, registration tokens ------ */

int ax_db_refresh_get(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], json_t **out);
int ax_db_refresh_del(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES]);

/** Stores an m.login.token for 'user_id'. */
int ax_db_logintoken_put(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], const char *user_id,
                         uint64_t expires_ms);
/** Finds and deletes (tokens are single-use) a login token; copies its user into 'user_id' (cap bytes). */
int ax_db_logintoken_take(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], char *user_id, size_t cap,
                          uint64_t *expires_ms);

int ax_db_uia_get(ax_txn_t *txn, const char *session, json_t **out);
int ax_db_uia_put(ax_txn_t *txn, const char *session, const json_t *value);
int ax_db_uia_del(ax_txn_t *txn, const char *session);
/** Deletes UIA sessions created before 'cutoff_ms'; returns how many via 'n'. */
int ax_db_uia_expire(ax_txn_t *txn, uint64_t cutoff_ms, size_t *n);

int ax_db_regtoken_get(ax_txn_t *txn, const char *token, json_t **out);
int ax_db_regtoken_put(ax_txn_t *txn, const char *token, const json_t *value);
int ax_db_regtoken_del(ax_txn_t *txn, const char *token);
int ax_db_regtoken_foreach(ax_txn_t *txn, int (*cb)(void *arg, const char *token, json_t *value), void *arg);
/** True when at least one registration token exists. */
bool ax_db_regtoken_any(ax_txn_t *txn);

/* ---- rooms.c -- events, timelines, state, memberships, aliases, relations ----------------- */

enum {
    AX_EVENT_F_STATE = 1,       /* a state event */
    AX_EVENT_F_OUTLIER = 2,     /* known (e.g. an auth event) but not part of the timeline */
    AX_EVENT_F_REJECTED = 4,    /* failed auth; kept so it is not fetched again */
    AX_EVENT_F_SOFT_FAILED = 8, /* allowed by its auth events but not by current state */
    AX_EVENT_F_REDACTED = 16,   /* stored in redacted form */
    /* 0x80 is storage's own (the record carries its state group) and never shows here */
};

/** An event record: the JSON is borrowed from the transaction (copy or parse it before the txn ends). */
typedef struct st_ax_event_rec_t {
    uint64_t pos;
    unsigned flags;
    const char *room_id;
    const char *json;
    size_t json_len;
} ax_event_rec_t;

int ax_db_event_get_raw(ax_txn_t *txn, const char *event_id, ax_event_rec_t *out);
/**
 * Keeps the last events ax_db_event_get parsed on this thread, in 'slots' slots, and hands out
 * copies while their stored bytes stay the same (the HTTP threads: every /sync answer woken by
 * a message parses the same new events).  Threads that never call it parse every time.
 * ax_db_event_cache_free() before the thread ends.
 */
void ax_db_event_cache_init(size_t slots);
void ax_db_event_cache_free(void);
/** Parses the event (a new reference in '*event'); 'rec' (may be NULL) gets position and flags. */
int ax_db_event_get(ax_txn_t *txn, const char *event_id, json_t **event, ax_event_rec_t *rec);
/**
 * The same without 'rec', for readers that never change the event: in the
 * writer's transactions the parsed event is kept for the next jobs (the
 * room state the auth rules read for every send), so '*event' is a new
 * reference to an object others share and must not be modified.  Storing
 * the event again (a redaction) drops the kept copy; an aborted write
 * transaction drops them all.
 */
int ax_db_event_get_shared(ax_txn_t *txn, const char *event_id, json_t **event);
/**
 * ax_db_event_get() for a reader that needs only the top-level members
 * 'keys' (NULL-terminated) of the event: the others (signatures, hashes,
 * auth_events, prev_events: most of a PDU) are skipped unparsed, and
 * '*event' holds the ones present of 'keys' (a stored record that cannot be
 * skimmed is parsed whole; then it holds every member).  Pass a static
 * list: the thread's event cache tells lists apart by their address.
 * '*event' is read-only: it shares its members with the thread's cache, so
 * neither it nor anything inside it may be changed (copy what you change).
 */
int ax_db_event_get_keys(ax_txn_t *txn, const char *event_id, const char *const *keys, json_t **event,
                         ax_event_rec_t *rec);
/** Stores or replaces an event. */
int ax_db_event_put(ax_txn_t *txn, const char *event_id, const char *room_id, uint64_t pos, unsigned flags,
                    const json_t *event);

/** Puts 'event_id' at 'pos' in its room's timeline and the global stream. */
int ax_db_timeline_add(ax_txn_t *txn, const char *room_id, uint64_t pos, const char *event_id);
/**
 * Walks a room's timeline from position 'from' (inclusive; 0 or UINT64_MAX
 * for the start or the end) forwards or, with 'backwards', backwards,
 * calling 'cb' until it returns nonzero.
 */
int ax_db_timeline_scan(ax_txn_t *txn, const char *room_id, uint64_t from, bool backwards,
                        int (*cb)(void *arg, uint64_t pos, const char *event_id), void *arg);
/** Walks every room's timeline after position 'after' in order (the global stream). */
int ax_db_stream_scan(ax_txn_t *txn, uint64_t after,
                      int (*cb)(void *arg, uint64_t pos, const char *room_id, const char *event_id), void *arg);

/** The event ID at stream position 'pos' into 'event_id' (cap bytes); AX_ENOTFOUND when none. */
int ax_db_stream_event_at(ax_txn_t *txn, uint64_t pos, char *event_id, size_t cap);

int ax_db_room_get(ax_txn_t *txn, const char *room_id, json_t **out);
int ax_db_room_put(ax_txn_t *txn, const char *room_id, const json_t *room);
/** Calls 'cb' for every room ID (admin and directory use). */
int ax_db_room_foreach(ax_txn_t *txn, int (*cb)(void *arg, const char *room_id, json_t *room), void *arg);

/** The current state event ID for (type, state_key) into 'out' (cap bytes). */
int ax_db_state_get(ax_txn_t *txn, const char *room_id, const char *type, const char *state_key, char *out, size_t cap);
int ax_db_state_put(ax_txn_t *txn, const char *room_id, const char *type, const char *state_key, const char *event_id);
int ax_db_state_del(ax_txn_t *txn, const char *room_id, const char *type, const char *state_key);
/** Calls 'cb' for each current state entry of the room (of 'type' only, when not NULL). */
int ax_db_state_foreach(ax_txn_t *txn, const char *room_id, const char *type,
                        int (*cb)(void *arg, const char *type, const char *state_key, const char *event_id), void *arg);

/** Replaces the room's forward extremities with 'event_ids' (n of them). */
int ax_db_extremities_set(ax_txn_t *txn, const char *room_id, const char *const *event_ids, size_t n);
int ax_db_extremities_foreach(ax_txn_t *txn, const char *room_id, int (*cb)(void *arg, const char *event_id),
                              void *arg);

/**
 * State groups: the state after an event, stored as deltas over a parent
 * group with a full snapshot every few dozen steps.  A state map is a JSON
 * object {type: {state_key: event_id}}; in a delta, null removes an entry.
 */
int ax_db_stategroup_new(ax_txn_t *txn, uint64_t prev, const json_t *delta, uint64_t *out);
/** The full state map of 'group' (a new reference). */
int ax_db_stategroup_load(ax_txn_t *txn, uint64_t group, json_t **out);
int ax_db_event_stategroup_put(ax_txn_t *txn, const char *event_id, uint64_t group);
int ax_db_event_stategroup_get(ax_txn_t *txn, const char *event_id, uint64_t *group);
/** Counts reply 'child' by 'sender' in the thread of 'root' (its summary and participants). */
int ax_db_thread_note(ax_txn_t *txn, const char *root, const char *child, const char *sender);
/** The thread's reply count and latest reply (AX_ENOTFOUND: no replies). */
int ax_db_thread_summary(ax_txn_t *txn, const char *root, uint64_t *count, char *latest, size_t cap);
/** Whether 'user_id' replied in the thread of 'root'. */
bool ax_db_thread_participant(ax_txn_t *txn, const char *root, const char *user_id);

/** Indexes 'event_id', an outlier of the room's history before this server's first event, by its depth. */
int ax_db_backfill_put(ax_txn_t *txn, const char *room_id, uint64_t depth, const char *event_id);
/** Calls 'cb' for the room's fetched history below 'below' (depth), deepest first, until it returns nonzero. */
int ax_db_backfill_scan(ax_txn_t *txn, const char *room_id, uint64_t below,
                        int (*cb)(void *arg, uint64_t depth, const char *event_id), void *arg);

/**
 * The room's current state after the timeline event at 'pos' when it is not
 * that event's own state (a fork resolved on arrival); AX_ENOTFOUND otherwise.
 */
int ax_db_pos_stategroup_put(ax_txn_t *txn, const char *room_id, uint64_t pos, uint64_t group);
int ax_db_pos_stategroup_get(ax_txn_t *txn, const char *room_id, uint64_t pos, uint64_t *group);

/** Records that 'user_id' has 'membership' in the room since 'pos' through 'event_id'. */
int ax_db_membership_put(ax_txn_t *txn, const char *room_id, const char *user_id, const char *membership,
                         const char *event_id, uint64_t pos);
/** The current membership record {membership, event_id, pos} (a new reference). */
int ax_db_membership_get(ax_txn_t *txn, const char *room_id, const char *user_id, json_t **out);
/** The membership 'user_id' had at position 'pos' ("" if none) into 'out'. */
int ax_db_membership_at(ax_txn_t *txn, const char *room_id, const char *user_id, uint64_t pos, char *out, size_t cap);
/** Calls 'cb' for each room the user has a membership record in (any membership). */
int ax_db_user_rooms_foreach(ax_txn_t *txn, const char *user_id,
                             int (*cb)(void *arg, const char *room_id, json_t *membership), void *arg);
/** Calls 'cb' for each user with a current membership in the room. */
int ax_db_room_members_foreach(ax_txn_t *txn, const char *room_id,
                               int (*cb)(void *arg, const char *user_id, const char *membership), void *arg);
/** Forgets the user's membership record of a room they left (POST /forget). */
int ax_db_membership_forget(ax_txn_t *txn, const char *room_id, const char *user_id);
/** Indexes a membership change in room order (ax_db_membership_put does it; migrations too). */
int ax_db_member_change_put(ax_txn_t *txn, const char *room_id, const char *user_id, const char *membership,
                            uint64_t pos);
/**
 * Calls 'cb' for each membership change of the room at a position in
 * ('after', 'upto'], oldest first, until it returns nonzero.
 */
int ax_db_member_changes(ax_txn_t *txn, const char *room_id, uint64_t after, uint64_t upto,
                         int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *membership), void *arg);

int ax_db_visibility_put(ax_txn_t *txn, const char *room_id, uint64_t pos, const char *visibility);
/** The history_visibility in force at 'pos' ("shared" when never set) into 'out'. */
int ax_db_visibility_at(ax_txn_t *txn, const char *room_id, uint64_t pos, char *out, size_t cap);

int ax_db_txn_get(ax_txn_t *txn, const char *user_id, const char *device_id, const char *txn_id, char *event_id,
                  size_t cap);
int ax_db_txn_put(ax_txn_t *txn, const char *user_id, const char *device_id, const char *txn_id, const char *event_id);

/** Aliases: the record is {room_id, creator} (a new reference). */
int ax_db_alias_get(ax_txn_t *txn, const char *alias, json_t **out);
int ax_db_alias_put(ax_txn_t *txn, const char *alias, const char *room_id, const char *creator);
int ax_db_alias_del(ax_txn_t *txn, const char *alias, const char *room_id);
int ax_db_room_aliases_foreach(ax_txn_t *txn, const char *room_id, int (*cb)(void *arg, const char *alias), void *arg);

int ax_db_directory_set(ax_txn_t *txn, const char *room_id, bool public_);
bool ax_db_directory_is_public(ax_txn_t *txn, const char *room_id);
/** Public rooms in room ID order, starting after 'since' (NULL: from the start). */
int ax_db_directory_foreach(ax_txn_t *txn, const char *since, int (*cb)(void *arg, const char *room_id), void *arg);

int ax_db_relation_put(ax_txn_t *txn, const char *parent, const char *rel_type, uint64_t pos, const char *child);
/**
 * Children of 'parent' (of 'rel_type' when not NULL), by position, from
 * 'from' (inclusive) forwards or backwards.
 */
int ax_db_relation_scan(ax_txn_t *txn, const char *parent, const char *rel_type, uint64_t from, bool backwards,
                        int (*cb)(void *arg, const char *rel_type, uint64_t pos, const char *child), void *arg);

/** Records activity at 'pos' in the thread rooted at 'root' (threads are listed by latest activity). */
int ax_db_thread_touch(ax_txn_t *txn, const char *room_id, const char *root, uint64_t pos);
/** Thread roots of a room by latest activity, newest first, from position 'from' (inclusive) down. */
int ax_db_threads_scan(ax_txn_t *txn, const char *room_id, uint64_t from,
                       int (*cb)(void *arg, uint64_t pos, const char *root), void *arg);

/**
 * Adds the timeline events at positions 'pos' (n of them, newest first, all
 * newer than any indexed before in 'room_id') to the full-text index under
 * 'term', as one record.
 */
int ax_db_search_put(ax_txn_t *txn, const char *term, const char *room_id, const uint64_t *pos, size_t n);
/** The events of 'room_id' indexed under 'term', newest first. */
int ax_db_search_scan(ax_txn_t *txn, const char *term, const char *room_id,
                      int (*cb)(void *arg, uint64_t pos, const char *event_id), void *arg);
/** Empties the full-text index. */
int ax_db_search_clear(ax_txn_t *txn);

/* ---- userdata.c -- account data and filters --------------------------------------------- */

/** Account data content (a new reference); 'room_id' "" or NULL for global. */
int ax_db_accountdata_get(ax_txn_t *txn, const char *user_id, const char *room_id, const char *type, json_t **out,
                          uint64_t *pos);
/** Stores account data at stream position 'pos' (replacing the previous change's index entry). */
int ax_db_accountdata_put(ax_txn_t *txn, const char *user_id, const char *room_id, const char *type,
                          const json_t *content, uint64_t pos);
/**
 * Calls 'cb' for each account data item of the user changed after 'after'
 * (every item when 0), oldest first; 'room_id' is "" for global data.
 */
int ax_db_accountdata_changes(ax_txn_t *txn, const char *user_id, uint64_t after,
                              int (*cb)(void *arg, uint64_t pos, const char *room_id, const char *type), void *arg);

/** Stores a filter; its ID is written into 'id' (cap bytes). */
int ax_db_filter_put(ax_txn_t *txn, const char *user_id, const json_t *filter, char *id, size_t cap);
int ax_db_filter_get(ax_txn_t *txn, const char *user_id, const char *filter_id, json_t **out);

/* ---- receipts.c -- read receipts -------------------------------------------------------- */

/**
 * Stores a receipt at position 'pos' ('thread_id' NULL or "" for an
 * unthreaded one), replacing the user's previous receipt of that type and
 * thread and its change-index entry.
 */
int ax_db_receipt_put(ax_txn_t *txn, const char *room_id, const char *type, const char *user_id, const char *thread_id,
                      const char *event_id, uint64_t ts, uint64_t pos);
/** A user's receipt record {event_id, ts, pos, thread_id?} (a new reference). */
int ax_db_receipt_get(ax_txn_t *txn, const char *room_id, const char *type, const char *user_id, const char *thread_id,
                      json_t **out);
/** Calls 'cb' for each receipt of the room changed after 'after' (all current ones when 0). */
int ax_db_receipt_changes(ax_txn_t *txn, const char *room_id, uint64_t after,
                          int (*cb)(void *arg, const char *type, const char *user_id, json_t *receipt), void *arg);

/* ---- presence (receipts.c) ------------------------------------------------------------ */

/** A user's presence {presence, status_msg?, last_active_ts, pos} (a new reference). */
int ax_db_presence_get(ax_txn_t *txn, const char *user_id, json_t **out);
/** Stores presence at position 'pos', moving its change-index entry. */
int ax_db_presence_put(ax_txn_t *txn, const char *user_id, const json_t *presence, uint64_t pos);
/** Users whose presence changed after 'after', oldest change first. */
int ax_db_presence_changes(ax_txn_t *txn, uint64_t after, int (*cb)(void *arg, uint64_t pos, const char *user_id),
                           void *arg);

/* ---- push.c -- unread counts, notifications, pushers, the push queue --------------------- */

/** The generation of push rules and pushers: bumped by every change to either. */
uint64_t ax_db_push_gen(ax_txn_t *txn);
/** Bumps the generation (push rule writers call it; pusher writers below do it themselves). */
int ax_db_push_gen_bump(ax_txn_t *txn);

/** Unread counts of one user in one room and thread, with the read mark they count from. */
typedef struct st_ax_unread_t {
    uint64_t read_pos; /* events at or before this position are read */
    uint64_t last_pos; /* the newest notification counted */
    uint32_t notifications;
    uint32_t highlights;
} ax_unread_t;

/** The counts of ('user_id', 'room_id', 'thread' ("" or NULL: main timeline)); AX_ENOTFOUND if none. */
int ax_db_unread_get(ax_txn_t *txn, const char *user_id, const char *room_id, const char *thread, ax_unread_t *out);
int ax_db_unread_put(ax_txn_t *txn, const char *user_id, const char *room_id, const char *thread, const ax_unread_t *u);
/** Calls 'cb' for each count record of the user (in 'room_id' only, when not NULL). */
int ax_db_unread_foreach(ax_txn_t *txn, const char *user_id, const char *room_id,
                         int (*cb)(void *arg, const char *room_id, const char *thread, const ax_unread_t *u),
                         void *arg);

/** A notification record; strings are borrowed for the call that hands it out. */
typedef struct st_ax_notif_t {
    bool highlight;
    uint64_t ts; /* when it was made, ms */
    const char *room_id;
    const char *thread;  /* "" for the main timeline */
    const char *actions; /* compact JSON */
} ax_notif_t;

/** Records that the event at 'pos' notified 'user_id' (staged: see ax_db_notif_attach). */
int ax_db_notif_put(ax_txn_t *txn, const char *user_id, uint64_t pos, const ax_notif_t *n);
/**
 * Makes 'w' move staged notifications into the users' lists in batches of
 * its own (ax_writer_add_task).  Before ax_writer_start().  Without it they
 * stay staged, which readers see all the same, only more slowly.
 */
void ax_db_notif_attach(ax_db_t *db, ax_writer_t *w);
/** The stage is split by user in this many buckets; a move takes one. */
#define AX_NOTIF_BUCKETS 8
/** The bucket of 'user_id's staged notifications. */
unsigned ax_db_notif_bucket(const char *user_id);
/**
 * Moves up to 'max' staged notifications of 'bucket', the oldest, into
 * their users' lists: what the task above does, a bucket per step in turn.
 * '*moved' gets how many, '*drained' whether no bucket has any left.
 */
int ax_db_notif_move(ax_txn_t *txn, unsigned bucket, size_t max, size_t *moved, bool *drained);
/** Schema 5 -> 6: moves every entry of the stage as schema 5 keyed it (no bucket) into the lists. */
int ax_db_notif_move_unbucketed(ax_txn_t *txn);
/** About how many notifications are staged (any thread). */
uint64_t ax_db_notif_staged(ax_db_t *db);
/**
 * Walks the user's notifications by position from 'from' (inclusive)
 * forwards, or backwards (UINT64_MAX: the newest), until 'cb' returns nonzero.
 */
int ax_db_notif_scan(ax_txn_t *txn, const char *user_id, uint64_t from, bool backwards,
                     int (*cb)(void *arg, uint64_t pos, const ax_notif_t *n), void *arg);
/**
 * Deletes the user's oldest notifications: plain ones made before
 * 'plain_before', highlights made before 'highlight_before', looking at
 * most at 'max' records.  '*next_ts' (may be NULL) gets the time the oldest
 * plain notification kept was made, 0 when none is left (or 'max' recent
 * highlights were all it saw), or 1 when it deleted up to 'max' (call again).
 */
int ax_db_notif_prune(ax_txn_t *txn, const char *user_id, uint64_t plain_before, uint64_t highlight_before, size_t max,
                      uint64_t *next_ts);

/** A pusher {kind, app_id, pushkey, ..., data} (a new reference) or AX_ENOTFOUND. */
int ax_db_pusher_get(ax_txn_t *txn, const char *user_id, const char *app_id, const char *pushkey, json_t **out);
/** Stores a pusher (and its pushkey index entry); bumps the push generation. */
int ax_db_pusher_put(ax_txn_t *txn, const char *user_id, const char *app_id, const char *pushkey, const json_t *pusher);
/** Deletes a pusher; AX_ENOTFOUND when there is none.  Bumps the push generation. */
int ax_db_pusher_del(ax_txn_t *txn, const char *user_id, const char *app_id, const char *pushkey);
/** Calls 'cb' for each pusher of the user ('pusher' borrowed for the call). */
int ax_db_pusher_foreach(ax_txn_t *txn, const char *user_id,
                         int (*cb)(void *arg, const char *app_id, const char *pushkey, json_t *pusher), void *arg);
/** Deletes the pushers 'device_id' of 'user_id' created (device logout and deletion call it). */
int ax_db_pushers_del_device(ax_txn_t *txn, const char *user_id, const char *device_id);
/** Calls 'cb' for each user with a pusher of ('app_id', 'pushkey'). */
int ax_db_pusher_users(ax_txn_t *txn, const char *app_id, const char *pushkey,
                       int (*cb)(void *arg, const char *user_id), void *arg);

/** Queues a push of 'entry' (borrowed) for the pusher (user, app_id, pushkey) at position 'pos'. */
int ax_db_pushq_put(ax_txn_t *txn, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey,
                    const json_t *entry);
/** A queued push's entry (a new reference) or AX_ENOTFOUND. */
int ax_db_pushq_get(ax_txn_t *txn, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey,
                    json_t **out);
int ax_db_pushq_del(ax_txn_t *txn, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey);
/** Walks the queue from position 'from' (inclusive) in order; 'entry' is borrowed for the call. */
int ax_db_pushq_scan(ax_txn_t *txn, uint64_t from,
                     int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey,
                               json_t *entry),
                     void *arg);
/* ---- media.c -- media repository records ------------------------------------------------
 * Records are JSON (layout in schema.h): {uploader, created_ts} plus either
 * {pending: true, expires_ts} for an ID from /create that awaits its upload,
 * or {sha256 (hex), size, content_type, filename?} once content is stored.
 * Every stored record counts one reference on its content hash. */

#define AX_MEDIA_HASH_BYTES 32

/** The record of 'media_id' (a new reference in '*out').  Returns 0, AX_ENOTFOUND or AX_EIO. */
int ax_db_media_get(ax_txn_t *txn, const char *media_id, json_t **out);

/**
 * Stores 'rec' (borrowed) under 'media_id' (write txn).  A new record is
 * indexed under its uploader; a pending one also by expiry.  Completing a
 * pending record (same uploader and created_ts, no longer pending) replaces
 * it.  Stored content takes one reference on its hash.
 * @return 0; AX_EEXIST when 'media_id' already has content or is taken;
 *         AX_EINVAL for a malformed record; AX_EMAPFULL or AX_EIO.
 */
int ax_db_media_put(ax_txn_t *txn, const char *media_id, const json_t *rec);

/**
 * Deletes 'media_id' and its index entries (write txn).  For stored content,
 * writes its hash into 'sha' and the references left on it into
 * '*refs_left' (0: no media ID points at the file any more); for a pending
 * record '*refs_left' is UINT64_MAX.  Returns 0, AX_ENOTFOUND or AX_EIO.
 */
int ax_db_media_delete(ax_txn_t *txn, const char *media_id, uint8_t sha[AX_MEDIA_HASH_BYTES], uint64_t *refs_left);

/** How many media IDs point at content 'sha' (0 when none).  Returns 0 or AX_EIO. */
int ax_db_media_refs(ax_txn_t *txn, const uint8_t sha[AX_MEDIA_HASH_BYTES], uint64_t *n);

/** Parses a lower-case hex SHA-256 into 'sha'.  Returns 0 or AX_EINVAL. */
int ax_db_media_sha_from_hex(const char *hex, uint8_t sha[AX_MEDIA_HASH_BYTES]);

/** Counts the pending IDs of 'user_id' that expire after 'now_ms'. */
int ax_db_media_pending_count(ax_txn_t *txn, const char *user_id, uint64_t now_ms, size_t *n);

/**
 * Calls 'cb' for each media record of 'user_id' (pending ones too), oldest
 * first, until it returns nonzero (which is returned).  'rec' is borrowed
 * for the call.
 */
int ax_db_media_user_foreach(ax_txn_t *txn, const char *user_id,
                             int (*cb)(void *arg, const char *media_id, json_t *rec), void *arg);

/** Deletes up to 'max' pending IDs that expired at or before 'now_ms' (write txn); counts them in '*n'. */
int ax_db_media_expire(ax_txn_t *txn, uint64_t now_ms, size_t max, size_t *n);
/* ---- e2ee.c -- device keys, one-time and fallback keys, cross-signing, device lists -------
 * Public keys only.  Getters return a new reference in '*out' or
 * AX_ENOTFOUND; putters borrow their JSON and need the writer's txn. */

/** The device_keys object a device uploaded (with the signatures merged into it since). */
int ax_db_devicekeys_get(ax_txn_t *txn, const char *user_id, const char *device_id, json_t **out);
int ax_db_devicekeys_put(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *keys);
/** Calls 'cb' for each device of 'user_id' that has uploaded keys, in device ID order. */
int ax_db_devicekeys_foreach(ax_txn_t *txn, const char *user_id,
                             int (*cb)(void *arg, const char *device_id, json_t *keys), void *arg);

/** Hands out the next one-time key upload batch number (claims give out lower batches first). */
int ax_db_otk_next_seq(ax_txn_t *txn, uint64_t *out);
/** The one-time key 'algorithm':'key_id' of a device: a string or an object, a new reference. */
int ax_db_otk_get(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm, const char *key_id,
                  json_t **out);
/** Adds a one-time key (borrowed) in upload batch 'seq'.  AX_ETOOBIG when the IDs are too long for a key. */
int ax_db_otk_add(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm, const char *key_id,
                  const json_t *key, uint64_t seq);
/**
 * Removes the device's oldest one-time key of 'algorithm' and returns it:
 * its ID into 'key_id' (cap bytes) and the key in '*key' (a new
 * reference).  AX_ENOTFOUND when none is left.  Write txn.
 */
int ax_db_otk_take(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm, char *key_id,
                   size_t cap, json_t **key);
/** The device's one-time key counts per algorithm ({algorithm: n}, a new reference; {} when none). */
int ax_db_otk_counts(ax_txn_t *txn, const char *user_id, const char *device_id, json_t **out);

/**
 * Stores the device's fallback key for 'algorithm', replacing the previous
 * one as unused; the very same key uploaded again keeps its used flag.
 */
int ax_db_fallback_put(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm,
                       const char *key_id, const json_t *key);
/** Returns the fallback key of 'algorithm' (ID into 'key_id', key a new reference) and marks it used. */
int ax_db_fallback_claim(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm, char *key_id,
                         size_t cap, json_t **key);
/** The algorithms whose fallback key is unused ([string], a new reference). */
int ax_db_fallback_unused(ax_txn_t *txn, const char *user_id, const char *device_id, json_t **out);

/** A cross-signing key of 'usage' ("master", "self_signing", "user_signing"). */
int ax_db_xsign_get(ax_txn_t *txn, const char *user_id, const char *usage, json_t **out);
int ax_db_xsign_put(ax_txn_t *txn, const char *user_id, const char *usage, const json_t *key);
/** Signatures 'signer' made of another user's key 'target_key' ({signer key id: signature}). */
int ax_db_keysig_get(ax_txn_t *txn, const char *target_user, const char *target_key, const char *signer, json_t **out);
int ax_db_keysig_put(ax_txn_t *txn, const char *target_user, const char *target_key, const char *signer,
                     const char *signer_key_id, const char *signature);

/** The user's dehydrated device (MSC3814) record {device_id, device_data}; AX_ENOTFOUND when none. */
int ax_db_dehydrated_get(ax_txn_t *txn, const char *user_id, json_t **out);
int ax_db_dehydrated_put(ax_txn_t *txn, const char *user_id, const json_t *rec);
int ax_db_dehydrated_del(ax_txn_t *txn, const char *user_id);

/** Deletes a device's keys, one-time and fallback keys, inbox and to-device transaction IDs. */
int ax_db_e2ee_device_delete(ax_txn_t *txn, const char *user_id, const char *device_id);

/**
 * Writer side: records that the devices or keys of 'user_id' changed, at a
 * new stream position.  'observer' NULL means everyone: the user and every
 * user sharing a joined room with them see it in device_lists.changed, and
 * their long-polls wake.  A non-NULL 'observer' limits it to that user
 * (changes only they may know of, like their own user-signing key).
 */
int ax_db_devicelist_touch(ax_txn_t *txn, const char *user_id, const char *observer);
/**
 * The position of the latest device-list change of 'user_id' that
 * 'observer' hears of ("" or NULL: the changes everyone may see) into
 * '*pos': the version of the user's device list, the stream_id of
 * /user/devices and of m.device_list_update.  AX_ENOTFOUND (and 0) when
 * there was none.
 */
int ax_db_devicelist_pos(ax_txn_t *txn, const char *user_id, const char *observer, uint64_t *pos);
/**
 * Calls 'cb' for each device-list change at a position in ('after', 'upto'],
 * oldest first; 'observer' is "" for changes everyone may see.  A user has
 * at most one entry (their latest change) per observer.
 */
int ax_db_devicelist_changes(ax_txn_t *txn, uint64_t after, uint64_t upto,
                             int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *observer), void *arg);

/* ---- todevice.c -- send-to-device inboxes ---------------------------------------------- */

/** Puts 'msg' ({sender, type, content}, borrowed) in the device's inbox at stream position 'pos'. */
int ax_db_todevice_put(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t pos, const json_t *msg);
/** Calls 'cb' for the inbox messages after position 'after', oldest first ('msg' borrowed for the call). */
int ax_db_todevice_scan(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t after,
                        int (*cb)(void *arg, uint64_t pos, json_t *msg), void *arg);
/** The position of the oldest message in the inbox; AX_ENOTFOUND when it is empty. */
int ax_db_todevice_oldest(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t *pos);
/** Deletes the inbox messages at positions <= 'upto' (acknowledged); counts them in '*n' (may be NULL). */
int ax_db_todevice_ack(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t upto, size_t *n);
/** 0 when the device already used send-to-device transaction 'txn_id', else AX_ENOTFOUND. */
int ax_db_todevice_txn_get(ax_txn_t *txn, const char *user_id, const char *device_id, const char *txn_id);
int ax_db_todevice_txn_put(ax_txn_t *txn, const char *user_id, const char *device_id, const char *txn_id, uint64_t ts);

/* ---- key_backup.c -- server-side room key backups ---------------------------------------- */

/** A backup version's record {algorithm, auth_data, etag, count, deleted?} (a new reference). */
int ax_db_backup_version_get(ax_txn_t *txn, const char *user_id, uint64_t version, json_t **out);
int ax_db_backup_version_put(ax_txn_t *txn, const char *user_id, uint64_t version, const json_t *info);
/**
 * The highest backup version of the user (skipping deleted ones unless
 * 'include_deleted'), its record in '*out' when not NULL.  AX_ENOTFOUND when none.
 */
int ax_db_backup_version_latest(ax_txn_t *txn, const char *user_id, bool include_deleted, uint64_t *version,
                                json_t **out);
/** A stored session key (KeyBackupData, a new reference). */
int ax_db_backup_key_get(ax_txn_t *txn, const char *user_id, uint64_t version, const char *room_id,
                         const char *session_id, json_t **out);
int ax_db_backup_key_put(ax_txn_t *txn, const char *user_id, uint64_t version, const char *room_id,
                         const char *session_id, const json_t *key);
/** Calls 'cb' for each key of the version (of 'room_id' only, when not NULL), by room then session. */
int ax_db_backup_keys_foreach(ax_txn_t *txn, const char *user_id, uint64_t version, const char *room_id,
                              int (*cb)(void *arg, const char *room_id, const char *session_id, json_t *key),
                              void *arg);
/** Deletes the version's keys (of a room, or one session); counts them in '*n' (may be NULL). */
int ax_db_backup_keys_delete(ax_txn_t *txn, const char *user_id, uint64_t version, const char *room_id,
                             const char *session_id, size_t *n);
/* ---- federation.c -- remote server keys, our former keys, destination state ------------ */

/**
 * The stored record of key 'key_id' of 'server_name' (layout in schema.h; a
 * new reference in '*out').  Returns 0, AX_ENOTFOUND or AX_EIO.
 */
int ax_db_server_key_get(ax_txn_t *txn, const char *server_name, const char *key_id, json_t **out);
/** Stores (replaces) a key record ('rec' borrowed).  Returns 0, AX_ETOOBIG, AX_EMAPFULL or AX_EIO. */
int ax_db_server_key_put(ax_txn_t *txn, const char *server_name, const char *key_id, const json_t *rec);
/** Calls 'cb' for each stored key of 'server_name' (an index range) until it returns nonzero. */
int ax_db_server_keys_foreach(ax_txn_t *txn, const char *server_name,
                              int (*cb)(void *arg, const char *key_id, json_t *rec), void *arg);

/** Records one of this server's former signing keys {key, expired_ts} ('rec' borrowed). */
int ax_db_old_key_put(ax_txn_t *txn, const char *key_id, const json_t *rec);
/** Calls 'cb' for each former signing key of this server, in key ID order. */
int ax_db_old_keys_foreach(ax_txn_t *txn, int (*cb)(void *arg, const char *key_id, json_t *rec), void *arg);

/** The backoff state of outbound destination 'server_name' (a new reference).  AX_ENOTFOUND when never contacted. */
int ax_db_destination_get(ax_txn_t *txn, const char *server_name, json_t **out);
int ax_db_destination_put(ax_txn_t *txn, const char *server_name, const json_t *rec);
/** Calls 'cb' for every known destination, in server name order. */
int ax_db_destinations_foreach(ax_txn_t *txn, int (*cb)(void *arg, const char *server_name, json_t *rec), void *arg);

/* ---- fedqueue.c -- the outbound federation queue ----------------------------------------
 * Per destination and in commit order, the PDUs (by reference) and EDUs that
 * federation/sender.c delivers as transactions.  Push inside the write
 * transaction of the change itself: then whatever a client was told is stored
 * is queued too.  Layouts in schema.h; docs/architecture.md "Outbound
 * federation" has the whole picture. */

/** ax_txn_notify key prefix: "%fed:" + destination has new items (the commit hook wakes the sender). */
#define AX_FEDQ_NOTIFY "%fed:"
/** ax_txn_notify key prefix: "%fedp:" + user ID: a local user's presence changed (sent from memory). */
#define AX_FEDQ_NOTIFY_PRESENCE "%fedp:"

typedef enum { AX_FEDQ_PDU = 'P', AX_FEDQ_EDU = 'E' } ax_fedq_kind_t;

/** One queued item.  Strings are borrowed for the callback that hands it out. */
typedef struct st_ax_fedq_item_t {
    uint64_t seq;
    ax_fedq_kind_t kind;
    const char *room_id, *event_id; /* AX_FEDQ_PDU */
    const char *edu;                /* AX_FEDQ_EDU: {edu_type, content} as JSON text, 'edu_len' bytes */
    size_t edu_len;
} ax_fedq_item_t;

/** A destination's queue: what was acknowledged, the last item, how many wait, the transaction in flight. */
typedef struct st_ax_fedq_state_t {
    uint64_t acked;        /* every item at seq <= acked was delivered */
    uint64_t last;         /* the highest seq handed out */
    uint64_t depth;        /* items waiting */
    char txn_id[64];       /* the transaction in flight ("" when none was recorded) ... */
    uint64_t pending_upto; /* ... carrying the items in (acked, pending_upto] */
} ax_fedq_state_t;

/**
 * Queues PDU 'event_id' of 'room_id' (stored in eventid_event; read when
 * sent) for 'destination'.  Write txn.  Returns 0, AX_EINVAL (not a server
 * name), AX_ETOOBIG or a storage error.
 */
int ax_db_fedq_push_pdu(ax_txn_t *txn, const char *destination, const char *room_id, const char *event_id);
/** Queues the EDU {edu_type, content} ('content' borrowed) for 'destination'.  Write txn. */
int ax_db_fedq_push_edu(ax_txn_t *txn, const char *destination, const char *edu_type, const json_t *content);
/** Queues an EDU for every server with a joined member in 'room_id', except 'skip' (our own name). */
int ax_db_fedq_push_edu_room(ax_txn_t *txn, const char *room_id, const char *skip, const char *edu_type,
                             const json_t *content);
/** Queues an EDU for every other server sharing a joined room with local user 'user_id'. */
int ax_db_fedq_push_edu_peers(ax_txn_t *txn, const char *user_id, const char *edu_type, const json_t *content);
/**
 * Queues m.device_list_update for 'device_id' of local user 'user_id' to the
 * servers sharing a room with them: display name and keys as stored now, or
 * deleted when the device is gone; stream_id a new stream position, prev_id
 * the user's previous update.  Call it after the change, in its txn.
 */
int ax_db_fedq_device_update(ax_txn_t *txn, const char *user_id, const char *device_id);
/** Queues m.signing_key_update (the stored master and self-signing keys) to the servers sharing a room. */
int ax_db_fedq_signing_key_update(ax_txn_t *txn, const char *user_id);

/** The queue record of 'destination'.  Returns 0, AX_ENOTFOUND (nothing was ever queued) or AX_EIO. */
int ax_db_fedq_state(ax_txn_t *txn, const char *destination, ax_fedq_state_t *out);
/** Calls 'cb' for each destination that ever had a queue, in name order, until it returns nonzero. */
int ax_db_fedq_destinations_foreach(ax_txn_t *txn,
                                    int (*cb)(void *arg, const char *destination, const ax_fedq_state_t *state),
                                    void *arg);
/** Calls 'cb' for the destination's items after seq 'after', oldest first, until it returns nonzero. */
int ax_db_fedq_scan(ax_txn_t *txn, const char *destination, uint64_t after,
                    int (*cb)(void *arg, const ax_fedq_item_t *item), void *arg);
/**
 * Records the transaction in flight: 'txn_id' carries the items up to
 * 'upto' (NULL clears it).  A restart resends exactly those under the same
 * ID, so the destination can tell a retry from a new transaction.
 */
int ax_db_fedq_set_pending(ax_txn_t *txn, const char *destination, const char *txn_id, uint64_t upto);
/**
 * The destination acknowledged everything up to seq 'upto': deletes those
 * items, moves 'acked' and clears the pending transaction it covers.
 * Counts the items deleted in '*n' (may be NULL).
 */
int ax_db_fedq_ack(ax_txn_t *txn, const char *destination, uint64_t upto, size_t *n);
/**
 * Catch-up: deletes the items at seqs 'del' (ndel) and puts PDU items 'put'
 * (nput) at seqs freed that way (after 'acked', not beyond 'last').
 * Returns AX_EINVAL for a 'put' outside that range or not a PDU.
 */
int ax_db_fedq_replace(ax_txn_t *txn, const char *destination, const uint64_t *del, size_t ndel,
                       const ax_fedq_item_t *put, size_t nput);

/** Calls 'cb' once for each server with a joined member in 'room_id', except 'skip' (may be NULL), by name. */
int ax_db_room_servers_foreach(ax_txn_t *txn, const char *room_id, const char *skip,
                               int (*cb)(void *arg, const char *server), void *arg);
/** Calls 'cb' once for each other server sharing a joined room with 'user_id' (not the user's own), by name. */
int ax_db_user_peers_foreach(ax_txn_t *txn, const char *user_id, int (*cb)(void *arg, const char *server), void *arg);

/* ---- writer.c -- the single writer with group commit ------------------------------ */

typedef struct st_ax_wjob_t ax_wjob_t;

/**
 * A write job.  Embed it first in your own struct, set 'apply', 'super.done'
 * and 'super.port', and submit it.  The job (and anything 'apply' reads)
 * must be heap memory owned by the submitter until 'done' runs: never a
 * request pool, which can be freed while the writer works.
 */
struct st_ax_wjob_t {
    ax_task_t super;
    /**
     * Runs on the writer thread inside the batch transaction.  Returns 0, or
     * an AX_E* code: the job then fails alone, its writes are undone and the
     * rest of the batch still commits.  Must have no effect outside 'txn',
     * because it is re-run if another job of the batch fails after writing.
     */
    int (*apply)(ax_wjob_t *job, ax_txn_t *txn);
};

/** Creates a writer for 'db' (not started). */
ax_writer_t *ax_writer_new(ax_db_t *db);

/** Starts the writer thread.  Returns 0 or AX_ERR. */
int ax_writer_start(ax_writer_t *w);

/**
 * Queues 'job'.  Thread-safe.  After ax_writer_stop() the job completes
 * at once with AX_ESHUTDOWN.  Its 'done' always runs exactly once.
 */
void ax_writer_submit(ax_writer_t *w, ax_wjob_t *job);

/**
 * Submits 'job' and blocks until it is durable; returns its result.  For
 * threads without an event loop (start-up, admin commands, tests).
 */
int ax_writer_run(ax_writer_t *w, ax_wjob_t *job);

/** Commits what is queued, then stops and joins the writer thread. */
void ax_writer_stop(ax_writer_t *w);

/** Frees a stopped writer; NULL is allowed. */
void ax_writer_free(ax_writer_t *w);

/** What one commit made visible, passed to the commit hook. */
typedef struct st_ax_commit_info_t {
    uint64_t stream_pos;     /* highest stream position committed so far */
    size_t jobs;             /* jobs in the batch (failed ones included) */
    const char *const *keys; /* what the jobs said changed (ax_txn_notify), deduplicated; borrowed */
    size_t nkeys;
} ax_commit_info_t;

/**
 * Sets the function called on the writer thread after each durable commit
 * (before completions are posted), e.g. to wake /sync long-polls.  Set it
 * before ax_writer_start().
 */
void ax_writer_set_commit_hook(ax_writer_t *w, void (*hook)(void *arg, const ax_commit_info_t *info), void *arg);

/**
 * Inside 'apply': hands out the next stream position (DESIGN.md "Streams").
 * Positions are unique and increase in commit order.
 */
uint64_t ax_txn_next_stream_pos(ax_txn_t *txn);

/**
 * Inside 'apply': says 'key' (a user ID, usually) has news, so its
 * long-polls wake once this batch is durable.  Dropped when the job's
 * writes are rolled back; a job failing without writes may still wake
 * someone for nothing, which only costs them a re-check.
 */
void ax_txn_notify(ax_txn_t *txn, const char *key);

/**
 * Inside 'apply': the writer's abort count when this transaction began.
 * Caches the writer thread builds from what transactions read (core/push.c)
 * stamp their entries with it: when it changes, a transaction they read was
 * rolled back, and whatever they learnt from it may never have happened.
 */
uint64_t ax_txn_epoch(ax_txn_t *txn);

/**
 * Attaches 'state' (borrowed) to every write transaction of 'w', for
 * writer-thread state of the layers above that every job touching rooms
 * needs without each caller passing it: core/push.c's push engine is the
 * one user (ax_push_attach).  Set before ax_writer_start().
 */
void ax_writer_set_state(ax_writer_t *w, void *state);
/** Inside 'apply': the writer's attached state, or NULL (read txns, writers without one). */
void *ax_txn_writer_state(ax_txn_t *txn);

/** The last committed stream position (any thread). */
uint64_t ax_writer_stream_pos(ax_writer_t *w);

/**
 * Work the writer does on its own, in write transactions of its own between
 * batches, for indexes that need not be complete at every commit (the
 * full-text index, core/search.c; the notification lists, storage/push.c).
 * 'due' runs on the writer thread before it takes each batch and when
 * nothing has been queued for 'idle_ms' ('idle'); when it says yes, 'step'
 * does a bounded piece of the work in 'txn', which commits when it returns
 * 0 and is aborted otherwise; 'done' says which.  The transaction hands out
 * no stream positions and wakes nobody.  Due tasks are asked in turn.
 */
typedef struct st_ax_writer_task_t {
    bool (*due)(void *arg, uint64_t stream_pos, bool idle);
    int (*step)(void *arg, ax_txn_t *txn);
    void (*done)(void *arg, bool committed);
    void *arg;
    unsigned idle_ms;
} ax_writer_task_t;

#define AX_WRITER_TASKS_MAX 4

/** Adds a task ('task' is copied; at most AX_WRITER_TASKS_MAX).  Before ax_writer_start(). */
void ax_writer_add_task(ax_writer_t *w, const ax_writer_task_t *task);

#define AX_WRITER_BATCH_BUCKETS  12 /* 1 2 4 ... 1024 +Inf */
#define AX_WRITER_COMMIT_BUCKETS 12

typedef struct st_ax_writer_stats_t {
    uint64_t batches;
    uint64_t jobs;
    uint64_t failed_jobs;
    uint64_t replays;       /* batches re-run because a job failed after writing */
    uint64_t commit_errors; /* commits that failed as a whole */
    uint64_t queue_depth;
    uint64_t batch_size_buckets[AX_WRITER_BATCH_BUCKETS]; /* cumulative counts le 2^i */
    uint64_t commit_buckets[AX_WRITER_COMMIT_BUCKETS];    /* cumulative counts le bound */
    double commit_seconds_sum;
} ax_writer_stats_t;

/** Upper bounds (seconds) of the commit latency buckets; the last is +Inf. */
extern const double ax_writer_commit_bounds[AX_WRITER_COMMIT_BUCKETS];

/** Copies the writer's counters (any thread). */
void ax_writer_stats(ax_writer_t *w, ax_writer_stats_t *out);

/* ---- fedtxn.c -- answers to transactions other servers sent ------------------------------- */

/** The answer given to 'origin''s transaction 'txn_id' (a new reference), or AX_ENOTFOUND. */
int ax_db_fedtxn_get(ax_txn_t *txn, const char *origin, const char *txn_id, json_t **answer);
/** Keeps the answer to a transaction for a day (older ones are pruned a few at a time). */
int ax_db_fedtxn_put(ax_txn_t *txn, const char *origin, const char *txn_id, const json_t *answer, uint64_t now_ms);

#endif
