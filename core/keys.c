/*
 * keys.c -- end-to-end encryption keys as other users and servers see them
 * (Client-Server API "End-to-End Encryption", Server-Server API
 * "End-to-End Encryption"): the view of device keys and cross-signing keys
 * that /keys/query and /user/keys/query return, and claiming one-time keys
 * for /keys/claim and /user/keys/claim.  Reads and writes in the caller's
 * transaction; claims only on the writer, so a key is never given twice.
 */
#include "core/keys.h"

#include <string.h>

#define MAX_ALGORITHM 64
#define MAX_KEY_ID    128

json_t *ax_keys_device_view(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *keys)
{
    json_t *out = json_deep_copy(keys);
    json_t *dev = NULL;
    if (ax_db_device_get(txn, user_id, device_id, &dev) == 0) {
        json_t *name = json_object_get(dev, "display_name");
        if (json_is_string(name))
            json_object_set_new(out, "unsigned", json_pack("{s:O}", "device_display_name", name));
    }
    json_decref(dev);
    return out;
}

typedef struct st_devices_t {
    ax_txn_t *txn;
    const char *user_id;
    json_t *out;
} devices_t;

static int device_cb(void *arg, const char *device_id, json_t *keys)
{
    devices_t *d = arg;
    json_object_set_new(d->out, device_id, ax_keys_device_view(d->txn, d->user_id, device_id, keys));
    return 0;
}

json_t *ax_keys_user_devices(ax_txn_t *txn, const char *user_id, const json_t *device_ids)
{
    devices_t d = {txn, user_id, json_object()};
    if (json_array_size(device_ids) == 0) {
        ax_db_devicekeys_foreach(txn, user_id, device_cb, &d);
        return d.out;
    }
    size_t i;
    json_t *id;
    json_array_foreach(device_ids, i, id)
    {
        json_t *keys = NULL;
        if (json_is_string(id) && ax_db_devicekeys_get(txn, user_id, json_string_value(id), &keys) == 0)
            json_object_set_new(d.out, json_string_value(id),
                                ax_keys_device_view(txn, user_id, json_string_value(id), keys));
        json_decref(keys);
    }
    return d.out;
}

json_t *ax_keys_xsign_view(ax_txn_t *txn, const char *user_id, const char *usage, const char *viewer)
{
    json_t *key = NULL;
    if (ax_db_xsign_get(txn, user_id, usage, &key) != 0)
        return NULL;
    const char *pub = NULL;
    json_t *theirs = NULL;
    if (viewer != NULL && strcmp(user_id, viewer) != 0 && ax_e2ee_xsign_check(key, user_id, usage, &pub) == 0 &&
        ax_db_keysig_get(txn, user_id, pub, viewer, &theirs) == 0) {
        json_t *sigs = json_object_get(key, "signatures");
        if (!json_is_object(sigs)) {
            sigs = json_object();
            json_object_set_new(key, "signatures", sigs);
        }
        json_t *mine = json_object_get(sigs, viewer);
        if (!json_is_object(mine))
            json_object_set(sigs, viewer, theirs);
        else
            json_object_update(mine, theirs);
        json_decref(theirs);
    }
    return key;
}

int ax_keys_claim(ax_txn_t *txn, const json_t *wanted, json_t **claimed)
{
    *claimed = json_object();
    const char *user, *device;
    json_t *devices, *alg;
    json_object_foreach((json_t *)wanted, user, devices)
    {
        json_object_foreach(devices, device, alg)
        {
            char kid[MAX_KEY_ID + 1];
            json_t *key = NULL;
            const char *algorithm = json_string_value(alg);
            if (algorithm == NULL)
                continue;
            /* one-time keys first; when they run out, the fallback key (marked used) */
            int rc = ax_db_otk_take(txn, user, device, algorithm, kid, sizeof(kid), &key);
            if (rc == AX_ENOTFOUND)
                rc = ax_db_fallback_claim(txn, user, device, algorithm, kid, sizeof(kid), &key);
            if (rc == AX_ENOTFOUND)
                continue;
            if (rc != 0)
                return rc;
            json_t *mine = json_object_get(*claimed, user);
            if (mine == NULL)
                json_object_set_new(*claimed, user, mine = json_object());
            json_t *dev = json_object_get(mine, device);
            if (dev == NULL)
                json_object_set_new(mine, device, dev = json_object());
            char id[MAX_ALGORITHM + MAX_KEY_ID + 2];
            snprintf(id, sizeof(id), "%s:%s", algorithm, kid);
            json_object_set_new(dev, id, key);
        }
    }
    return 0;
}
