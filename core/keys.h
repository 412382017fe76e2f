/*
 * keys.h -- end-to-end encryption keys as others see them (core/keys.c),
 * shared by the Client-Server key endpoints (server/cs/keys.c) and the
 * Server-Server ones (federation/api_query.c: /user/keys/query,
 * /user/keys/claim, /user/devices): a device's published keys with its
 * display name, a user's cross-signing keys with the signatures a viewer
 * may see, and claiming one-time keys on the writer.  Public keys only: the
 * server never holds a secret.
 */
#ifndef AX_CORE_KEYS_H
#define AX_CORE_KEYS_H

#include "core/core.h"
#include "storage/storage.h"

/**
 * The device keys 'keys' (borrowed, as stored) of 'user_id''s device
 * 'device_id' as others see them: a new reference, with
 * unsigned.device_display_name when the device has a name.
 */
json_t *ax_keys_device_view(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *keys);

/**
 * The published keys of 'user_id''s devices named in 'device_ids' (a
 * borrowed array of strings; NULL or empty: every device), as
 * {device_id: keys} (a new reference).  Devices without keys, and unknown
 * ones, are left out, as /keys/query wants.
 */
json_t *ax_keys_user_devices(ax_txn_t *txn, const char *user_id, const json_t *device_ids);

/**
 * The cross-signing key of 'usage' ("master", "self_signing",
 * "user_signing") of 'user_id' as 'viewer' may see it: the stored key with
 * the signatures of the user's own devices, plus the signatures 'viewer'
 * made of it with their user-signing key (nobody else's).  'viewer' NULL:
 * another server asks, which sees no user's private signatures.  A new
 * reference, or NULL when the user has no such key.
 */
json_t *ax_keys_xsign_view(ax_txn_t *txn, const char *user_id, const char *usage, const char *viewer);

/**
 * Writer side of /keys/claim: for each {user: {device: algorithm}} of
 * 'wanted' (borrowed; local users), takes the device's oldest one-time key
 * of that algorithm, or when none is left its fallback key (marked used).
 * Stores {user: {device: {"algorithm:key_id": key}}} in '*claimed' (a new
 * reference, also on failure); devices with nothing to give are left out.
 * Returns 0 or a storage error.
 */
int ax_keys_claim(ax_txn_t *txn, const json_t *wanted, json_t **claimed);

#endif
