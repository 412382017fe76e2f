/*
 * accounts.c -- accounts, profiles and devices (userid_account,
 * userid_profile, userdevice_device), and the two composite operations
 * every login path shares: logging a device in (new tokens, old ones
 * revoked) and logging it out.
 */
#include "storage/storage_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int ax_db_account_get(ax_txn_t *txn, const char *user_id, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_userid_account, user_id, strlen(user_id), out);
}

int ax_db_account_put(ax_txn_t *txn, const char *user_id, const json_t *account)
{
    return ax_kv_put_json(txn, AX_DBI_userid_account, user_id, strlen(user_id), account);
}

typedef struct st_account_scan_t {
    int (*cb)(void *arg, const char *user_id, json_t *account);
    void *arg;
} account_scan_t;

static int account_scan_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    account_scan_t *s = arg;
    char id[512];
    if (klen >= sizeof(id))
        return 0;
    memcpy(id, key, klen);
    id[klen] = '\0';
    json_t *acct = json_loadb(val, vlen, 0, NULL);
    if (acct == NULL)
        return 0;
    int rc = s->cb(s->arg, id, acct);
    json_decref(acct);
    return rc;
}

int ax_db_account_foreach(ax_txn_t *txn, const char *from, int (*cb)(void *arg, const char *user_id, json_t *account),
                          void *arg)
{
    account_scan_t s = {cb, arg};
    return ax_kv_scan(txn, AX_DBI_userid_account, NULL, 0, from, from ? strlen(from) : 0, account_scan_cb, &s);
}

int ax_db_profile_get(ax_txn_t *txn, const char *user_id, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_userid_profile, user_id, strlen(user_id), out);
}

int ax_db_profile_put(ax_txn_t *txn, const char *user_id, const json_t *profile)
{
    return ax_kv_put_json(txn, AX_DBI_userid_profile, user_id, strlen(user_id), profile);
}

/* key = user_id 0x00 device_id */
static size_t device_key(char *out, size_t cap, const char *user_id, const char *device_id)
{
    size_t ul = strlen(user_id), dl = device_id ? strlen(device_id) : 0;
    if (ul + 1 + dl > cap)
        return 0;
    memcpy(out, user_id, ul);
    out[ul] = '\0';
    if (dl != 0)
        memcpy(out + ul + 1, device_id, dl);
    return ul + 1 + dl;
}

int ax_db_device_get(ax_txn_t *txn, const char *user_id, const char *device_id, json_t **out)
{
    char key[1024];
    size_t klen = device_key(key, sizeof(key), user_id, device_id);
    if (klen == 0)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_userdevice_device, key, klen, out);
}

int ax_db_device_put(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *device)
{
    char key[1024];
    size_t klen = device_key(key, sizeof(key), user_id, device_id);
    if (klen == 0)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_userdevice_device, key, klen, device);
}

typedef struct st_device_scan_t {
    size_t prefix_len;
    int (*cb)(void *arg, const char *device_id, json_t *device);
    void *arg;
} device_scan_t;

static int device_scan_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    device_scan_t *s = arg;
    char id[512];
    size_t dl = klen - s->prefix_len;
    if (dl >= sizeof(id))
        return 0;
    memcpy(id, (const char *)key + s->prefix_len, dl);
    id[dl] = '\0';
    json_t *dev = json_loadb(val, vlen, 0, NULL);
    if (dev == NULL)
        return 0;
    int rc = s->cb(s->arg, id, dev);
    json_decref(dev);
    return rc;
}

int ax_db_device_foreach(ax_txn_t *txn, const char *user_id,
                         int (*cb)(void *arg, const char *device_id, json_t *device), void *arg)
{
    char prefix[512];
    size_t plen = device_key(prefix, sizeof(prefix), user_id, NULL);
    if (plen == 0)
        return 0;
    device_scan_t s = {plen, cb, arg};
    return ax_kv_scan(txn, AX_DBI_userdevice_device, prefix, plen, NULL, 0, device_scan_cb, &s);
}

/* Deletes the access and (unless 'keep_refresh') refresh tokens recorded on 'device' (hex hashes). */
static int revoke_device_tokens(ax_txn_t *txn, json_t *device, bool keep_refresh)
{
    static const struct {
        const char *field;
        int dbi;
    } kinds[] = {{"access", AX_DBI_accesstoken_session}, {"refresh", AX_DBI_refreshtoken_session}};
    for (size_t i = 0; i < (keep_refresh ? 1 : AX_ARRAY_SIZE(kinds)); ++i) {
        const char *hex = json_string_value(json_object_get(device, kinds[i].field));
        uint8_t hash[AX_TOKEN_HASH_BYTES];
        size_t n;
        if (hex == NULL || sodium_hex2bin(hash, sizeof(hash), hex, strlen(hex), NULL, &n, NULL) != 0 ||
            n != sizeof(hash))
            continue;
        int rc = ax_kv_del(txn, kinds[i].dbi, hash, sizeof(hash), NULL, 0);
        if (rc != 0 && rc != AX_ENOTFOUND)
            return rc;
        json_object_del(device, kinds[i].field);
    }
    return 0;
}

static void set_hex(json_t *obj, const char *field, const uint8_t hash[AX_TOKEN_HASH_BYTES])
{
    char hex[AX_TOKEN_HASH_BYTES * 2 + 1];
    sodium_bin2hex(hex, sizeof(hex), hash, AX_TOKEN_HASH_BYTES);
    json_object_set_new(obj, field, json_string(hex));
}

int ax_db_device_login(ax_txn_t *txn, const char *user_id, const char *device_id, const char *display_name,
                       const char *ip, const uint8_t access_hash[AX_TOKEN_HASH_BYTES], uint64_t expires_ms,
                       const uint8_t *refresh_hash, const uint8_t *prev_refresh)
{
    json_t *dev = NULL;
    bool announce = false;
    int rc = ax_db_device_get(txn, user_id, device_id, &dev);
    if (rc == AX_ENOTFOUND) {
        dev = json_pack("{s:I}", "created_ts", (json_int_t)ax_now_ms());
        if (display_name != NULL)
            json_object_set_new(dev, "display_name", json_string(display_name));
        /* a new device: whoever tracks this user's devices must look again (other servers through
         * m.device_list_update, queued once the device is stored, below) */
        if ((rc = ax_db_devicelist_touch(txn, user_id, NULL)) != 0)
            goto out;
        announce = true;
    } else if (rc != 0) {
        return rc;
    } else if ((rc = revoke_device_tokens(txn, dev, prev_refresh != NULL)) != 0) {
        /* on a refresh the refresh token being used stays until its successor is used */
        goto out;
    }
    /* a refresh keeps the refresh token it replaced alive until the new one is used */
    if (prev_refresh != NULL) {
        json_t *old = NULL;
        if (ax_db_refresh_get(txn, prev_refresh, &old) == 0) {
            const char *pp = json_string_value(json_object_get(old, "prev"));
            uint8_t grand[AX_TOKEN_HASH_BYTES];
            size_t n;
            if (pp != NULL && sodium_hex2bin(grand, sizeof(grand), pp, strlen(pp), NULL, &n, NULL) == 0 &&
                n == sizeof(grand))
                ax_db_refresh_del(txn, grand);
            json_decref(old);
        }
    }
    if ((rc = ax_db_session_put(txn, access_hash, user_id, device_id, expires_ms)) != 0)
        goto out;
    set_hex(dev, "access", access_hash);
    json_object_set_new(dev, "last_seen_ts", json_integer((json_int_t)ax_now_ms()));
    if (ip != NULL)
        json_object_set_new(dev, "last_seen_ip", json_string(ip));
    if (refresh_hash != NULL) {
        json_t *rec = json_pack("{s:s, s:s}", "user_id", user_id, "device_id", device_id);
        if (prev_refresh != NULL)
            set_hex(rec, "prev", prev_refresh);
        rc = ax_kv_put_json(txn, AX_DBI_refreshtoken_session, refresh_hash, AX_TOKEN_HASH_BYTES, rec);
        json_decref(rec);
        if (rc != 0)
            goto out;
        set_hex(dev, "refresh", refresh_hash);
    }
    rc = ax_db_device_put(txn, user_id, device_id, dev);
    if (rc == 0 && announce)
        rc = ax_db_fedq_device_update(txn, user_id, device_id);
out:
    json_decref(dev);
    return rc;
}

int ax_db_device_logout(ax_txn_t *txn, const char *user_id, const char *device_id, bool delete_device)
{
    json_t *dev = NULL;
    int rc = ax_db_device_get(txn, user_id, device_id, &dev);
    if (rc != 0)
        return rc;
    /* the refresh token this device's current one replaced is still alive too */
    const char *rhex = json_string_value(json_object_get(dev, "refresh"));
    uint8_t rh[AX_TOKEN_HASH_BYTES];
    size_t n;
    if (rhex != NULL && sodium_hex2bin(rh, sizeof(rh), rhex, strlen(rhex), NULL, &n, NULL) == 0 && n == sizeof(rh)) {
        json_t *rec = NULL;
        if (ax_db_refresh_get(txn, rh, &rec) == 0) {
            const char *pp = json_string_value(json_object_get(rec, "prev"));
            uint8_t prev[AX_TOKEN_HASH_BYTES];
            if (pp != NULL && sodium_hex2bin(prev, sizeof(prev), pp, strlen(pp), NULL, &n, NULL) == 0 &&
                n == sizeof(prev))
                ax_db_refresh_del(txn, prev);
            json_decref(rec);
        }
    }
    if ((rc = revoke_device_tokens(txn, dev, false)) != 0)
        goto out;
    if (delete_device) {
        char key[1024];
        size_t klen = device_key(key, sizeof(key), user_id, device_id);
        if ((rc = ax_kv_del(txn, AX_DBI_userdevice_device, key, klen, NULL, 0)) == 0 &&
            (rc = ax_db_e2ee_device_delete(txn, user_id, device_id)) == 0 &&
            (rc = ax_db_devicelist_touch(txn, user_id, NULL)) == 0)
            rc = ax_db_fedq_device_update(txn, user_id, device_id); /* "deleted": the device is gone */
        /* a logged-out phone must stop getting pushes: its pushers go with it */
        if (rc == 0)
            rc = ax_db_pushers_del_device(txn, user_id, device_id);
    } else {
        rc = ax_db_device_put(txn, user_id, device_id, dev);
    }
out:
    json_decref(dev);
    return rc;
}
