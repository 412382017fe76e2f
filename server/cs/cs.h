/*
 * cs.h -- what the Client-Server modules share: User-Interactive Auth
 * (uia.c) and issuing login sessions (login.c).  Only server/cs/ includes it.
 */
#ifndef AX_CS_H
#define AX_CS_H

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
