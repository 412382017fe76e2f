/*
 * schema.h -- THE table of LMDB named databases, their key layout and the
 * schema version.  Nothing else in axon names a database: db.c opens every
 * row below at start-up and storage/<area>.c reaches them by AX_DBI_<name>.
 *
 * Notation: "be64" is a big-endian u64 (so keys sort numerically), "0x00"
 * a separator byte that cannot occur in Matrix identifiers, "str" raw UTF-8
 * without terminator, "json" a compact JSON document.
 *
 * Changing a layout means bumping AX_SCHEMA_VERSION and adding a migration
 * to the table in db.c.
 */
#ifndef AX_STORAGE_SCHEMA_H
#define AX_STORAGE_SCHEMA_H

#define AX_SCHEMA_VERSION 1

/* X(name, flags, layout) -- flags are LMDB database flags (0 or AX_DB_DUPSORT) */
#define AX_SCHEMA_DBS(X)                                                                                               \
    /* key = str name; value = per name:                                                                               \
     *   "schema_version" -> be64;  "stream_pos" -> be64 (last position handed out by the writer) */                   \
    X(meta, 0)                                                                                                         \
    /* key = sha256(access token) (32 bytes); value = be64 expires_ms (0: never) | user_id 0x00 | device_id 0x00 */    \
    X(accesstoken_session, 0)

#endif
