/*
 * schema.h -- THE table of LMDB named databases, their key layout and the
 * schema version.  Nothing else in axon names a database: db.c opens every
 * row below at start-up and storage/<area>.c reaches them by AX_DBI_<name>.
 *
 * Notation: "be64" is a big-endian u64 (so keys sort numerically), "0x00"
 * a separator byte that cannot occur in Matrix identifiers, "str" raw UTF-8
 * without terminator, "json" a compact JSON document.  Names follow
 * <key>_<value> (STYLE B2).
 *
 * Changing a layout means bumping AX_SCHEMA_VERSION and adding a migration
 * to the table in db.c.
 */
#ifndef AX_STORAGE_SCHEMA_H
#define AX_STORAGE_SCHEMA_H

#define AX_SCHEMA_VERSION 1

/*
 * meta                  key = str name; value = per name: "schema_version" -> be64,
 *                       "stream_pos" -> be64 (last position handed out by the writer)
 * accesstoken_session   key = sha256(access token) (32 bytes);
 *                       value = be64 expires_ms (0: never) | user_id 0x00 | device_id 0x00
 * refreshtoken_session  key = sha256(refresh token);
 *                       value = json {user_id, device_id, prev?: hex sha256 of the token it replaced}
 * logintoken_user       key = sha256(login token for m.login.token); value = be64 expires_ms | user_id
 * userid_account        key = user_id; value = json {password_hash|null, admin, deactivated,
 *                       created_ts, deactivated_ts?}.  Never deleted: a user ID is never handed out twice.
 * userid_profile        key = user_id; value = json profile {displayname?, avatar_url?, m.tz?, custom...}
 * userdevice_device     key = user_id 0x00 device_id; value = json {display_name?, created_ts,
 *                       last_seen_ts?, last_seen_ip?, access?: hex sha256, refresh?: hex sha256}
 * uiasession_session    key = UIA session id; value = json {fingerprint: "METHOD /path", user_id?,
 *                       created_ts, completed: [stage], token?}
 * regtoken_token        key = registration token; value = json {uses_allowed|null, pending,
 *                       completed, expiry_time|null}
 */
/* clang-format off */
#define AX_SCHEMA_DBS(X) \
    X(meta, 0) \
    X(accesstoken_session, 0) \
    X(refreshtoken_session, 0) \
    X(logintoken_user, 0) \
    X(userid_account, 0) \
    X(userid_profile, 0) \
    X(userdevice_device, 0) \
    X(uiasession_session, 0) \
    X(regtoken_token, 0)
/* clang-format on */

#endif
