/*
 * e2ee.c -- what end-to-end encryption keeps on the server: device keys,
 * one-time and fallback keys, cross-signing keys and signatures, and the
 * device-list change stream that tells clients whose keys to fetch again.
 * Only public keys and signatures: the server never sees a secret.
 * Layouts are in schema.h (userdevice_keys ... devicelist_pos).
 */
#include "storage/storage_internal.h"

#include <stdlib.h>
#include <string.h>

/* Copies a borrowed key part into a C string; false when it does not fit. */
static bool copy_part(char *out, size_t cap, const void *p, size_t n)
{
    if (n >= cap || memchr(p, 0, n) != NULL)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* user_id 0x00 device_id, optionally followed by a separator */
static ax_key_t dev_key(const char *user_id, const char *device_id, bool sep)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, device_id, sep);
    return k;
}

/* ---- device keys ---- */

int ax_db_devicekeys_get(ax_txn_t *txn, const char *user_id, const char *device_id, json_t **out)
{
    ax_key_t k = dev_key(user_id, device_id, false);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_userdevice_keys, k.b, k.n, out);
}

int ax_db_devicekeys_put(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *keys)
{
    ax_key_t k = dev_key(user_id, device_id, false);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_userdevice_keys, k.b, k.n, keys);
}

typedef struct st_keys_scan_t {
    size_t plen;
    int (*cb)(void *arg, const char *device_id, json_t *keys);
    void *arg;
} keys_scan_t;

static int keys_scan_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    keys_scan_t *s = arg;
    char device[256];
    if (!copy_part(device, sizeof(device), (const char *)key + s->plen, klen - s->plen))
        return 0;
    json_t *keys = json_loadb(val, vlen, 0, NULL);
    if (keys == NULL)
        return 0;
    int rc = s->cb(s->arg, device, keys);
    json_decref(keys);
    return rc;
}

int ax_db_devicekeys_foreach(ax_txn_t *txn, const char *user_id,
                             int (*cb)(void *arg, const char *device_id, json_t *keys), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, user_id, true);
    if (p.overflow)
        return 0;
    keys_scan_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_userdevice_keys, p.b, p.n, NULL, 0, keys_scan_cb, &s);
}

/* ---- one-time keys ---- */

static ax_key_t otk_key(const char *user_id, const char *device_id, const char *algorithm, const char *key_id)
{
    ax_key_t k = dev_key(user_id, device_id, true);
    ax_key_str(&k, algorithm, true);
    ax_key_str(&k, key_id, false);
    return k;
}

static ax_key_t otk_order_key(const char *user_id, const char *device_id, const char *algorithm, uint64_t seq,
                              const char *key_id)
{
    ax_key_t k = dev_key(user_id, device_id, true);
    ax_key_str(&k, algorithm, true);
    ax_key_u64(&k, seq);
    ax_key_str(&k, key_id, false);
    return k;
}

int ax_db_otk_next_seq(ax_txn_t *txn, uint64_t *out)
{
    uint64_t next = 0;
    int rc = ax_db_meta_get_u64(txn, "otk_seq", &next);
    if (rc == AX_ENOTFOUND)
        next = 1;
    else if (rc != 0)
        return rc;
    if ((rc = ax_db_meta_put_u64(txn, "otk_seq", next + 1)) != 0)
        return rc;
    *out = next;
    return 0;
}

int ax_db_otk_get(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm, const char *key_id,
                  json_t **out)
{
    ax_key_t k = otk_key(user_id, device_id, algorithm, key_id);
    if (k.overflow)
        return AX_ENOTFOUND;
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_userdevicealgo_otk, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    json_t *j = vlen > 8 ? json_loadb((const char *)v + 8, vlen - 8, JSON_DECODE_ANY, NULL) : NULL;
    if (j == NULL)
        return AX_EIO;
    *out = j;
    return 0;
}

int ax_db_otk_add(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm, const char *key_id,
                  const json_t *key, uint64_t seq)
{
    ax_key_t k = otk_key(user_id, device_id, algorithm, key_id);
    ax_key_t o = otk_order_key(user_id, device_id, algorithm, seq, key_id);
    if (k.overflow || o.overflow)
        return AX_ETOOBIG;
    char *text = json_dumps(key, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return AX_EINVAL;
    size_t tlen = strlen(text);
    uint8_t *val = ax_malloc(8 + tlen);
    ax_be64_put(val, seq);
    memcpy(val + 8, text, tlen);
    free(text);
    int rc = ax_kv_put(txn, AX_DBI_userdevicealgo_otk, k.b, k.n, val, 8 + tlen, 0);
    free(val);
    if (rc == 0)
        rc = ax_kv_put(txn, AX_DBI_otk_order, o.b, o.n, "", 0, 0);
    return rc;
}

typedef struct st_first_t {
    uint8_t key[1024];
    size_t klen;
    bool found;
} first_t;

static int first_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    first_t *f = arg;
    if (klen > sizeof(f->key))
        return 0;
    memcpy(f->key, key, klen);
    f->klen = klen;
    f->found = true;
    return 1;
}

int ax_db_otk_take(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm, char *key_id,
                   size_t cap, json_t **key)
{
    ax_key_t p = dev_key(user_id, device_id, true);
    ax_key_str(&p, algorithm, true);
    if (p.overflow)
        return AX_ENOTFOUND;
    /* the lowest (batch, key ID) is the oldest key: claims follow upload order */
    first_t f = {.found = false};
    int rc = ax_kv_scan(txn, AX_DBI_otk_order, p.b, p.n, NULL, 0, first_cb, &f);
    if (rc < 0)
        return rc;
    if (!f.found || f.klen < p.n + 8 || !copy_part(key_id, cap, f.key + p.n + 8, f.klen - p.n - 8))
        return AX_ENOTFOUND;
    if ((rc = ax_db_otk_get(txn, user_id, device_id, algorithm, key_id, key)) != 0)
        return rc == AX_ENOTFOUND ? AX_EIO : rc; /* the two indexes disagree */
    ax_key_t k = otk_key(user_id, device_id, algorithm, key_id);
    if ((rc = ax_kv_del(txn, AX_DBI_userdevicealgo_otk, k.b, k.n, NULL, 0)) != 0 ||
        (rc = ax_kv_del(txn, AX_DBI_otk_order, f.key, f.klen, NULL, 0)) != 0) {
        json_decref(*key);
        *key = NULL;
        return rc;
    }
    return 0;
}

typedef struct st_count_t {
    size_t plen;
    json_t *counts;
} count_t;

static int count_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    count_t *c = arg;
    const char *rest = (const char *)key + c->plen;
    size_t rlen = klen - c->plen;
    const char *sep = memchr(rest, 0, rlen);
    char algorithm[256];
    if (sep == NULL || !copy_part(algorithm, sizeof(algorithm), rest, (size_t)(sep - rest)))
        return 0;
    json_t *n = json_object_get(c->counts, algorithm);
    json_object_set_new(c->counts, algorithm, json_integer(json_integer_value(n) + 1));
    return 0;
}

int ax_db_otk_counts(ax_txn_t *txn, const char *user_id, const char *device_id, json_t **out)
{
    ax_key_t p = dev_key(user_id, device_id, true);
    count_t c = {p.n, json_object()};
    int rc = p.overflow ? 0 : ax_kv_scan(txn, AX_DBI_userdevicealgo_otk, p.b, p.n, NULL, 0, count_cb, &c);
    if (rc < 0) {
        json_decref(c.counts);
        return rc;
    }
    *out = c.counts;
    return 0;
}

/* ---- fallback keys ---- */

static ax_key_t fallback_key(const char *user_id, const char *device_id, const char *algorithm)
{
    ax_key_t k = dev_key(user_id, device_id, true);
    ax_key_str(&k, algorithm, false);
    return k;
}

int ax_db_fallback_put(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm,
                       const char *key_id, const json_t *key)
{
    ax_key_t k = fallback_key(user_id, device_id, algorithm);
    if (k.overflow)
        return AX_ETOOBIG;
    json_t *old = NULL;
    int rc = ax_kv_get_json(txn, AX_DBI_userdevicealgo_fallback, k.b, k.n, &old);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    /* the same key uploaded again keeps its "used" flag (a client retrying must not revive a spent key) */
    bool same = old != NULL && ax_streq(json_string_value(json_object_get(old, "key_id")), key_id) &&
                json_equal(json_object_get(old, "key"), (json_t *)key);
    json_decref(old);
    if (same)
        return 0;
    json_t *rec = json_pack("{s:s, s:O, s:b}", "key_id", key_id, "key", key, "used", 0);
    rc = ax_kv_put_json(txn, AX_DBI_userdevicealgo_fallback, k.b, k.n, rec);
    json_decref(rec);
    return rc;
}

int ax_db_fallback_claim(ax_txn_t *txn, const char *user_id, const char *device_id, const char *algorithm, char *key_id,
                         size_t cap, json_t **key)
{
    ax_key_t k = fallback_key(user_id, device_id, algorithm);
    if (k.overflow)
        return AX_ENOTFOUND;
    json_t *rec = NULL;
    int rc = ax_kv_get_json(txn, AX_DBI_userdevicealgo_fallback, k.b, k.n, &rec);
    if (rc != 0)
        return rc;
    const char *id = json_string_value(json_object_get(rec, "key_id"));
    json_t *value = json_object_get(rec, "key");
    if (id == NULL || value == NULL || strlen(id) >= cap) {
        json_decref(rec);
        return AX_EIO;
    }
    snprintf(key_id, cap, "%s", id);
    *key = json_incref(value);
    rc = 0;
    if (!json_is_true(json_object_get(rec, "used"))) {
        json_object_set_new(rec, "used", json_true());
        rc = ax_kv_put_json(txn, AX_DBI_userdevicealgo_fallback, k.b, k.n, rec);
    }
    json_decref(rec);
    if (rc != 0) {
        json_decref(*key);
        *key = NULL;
    }
    return rc;
}

typedef struct st_unused_t {
    size_t plen;
    json_t *types;
} unused_t;

static int unused_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    unused_t *u = arg;
    char algorithm[256];
    if (!copy_part(algorithm, sizeof(algorithm), (const char *)key + u->plen, klen - u->plen))
        return 0;
    json_t *rec = json_loadb(val, vlen, 0, NULL);
    if (rec != NULL && !json_is_true(json_object_get(rec, "used")))
        json_array_append_new(u->types, json_string(algorithm));
    json_decref(rec);
    return 0;
}

int ax_db_fallback_unused(ax_txn_t *txn, const char *user_id, const char *device_id, json_t **out)
{
    ax_key_t p = dev_key(user_id, device_id, true);
    unused_t u = {p.n, json_array()};
    int rc = p.overflow ? 0 : ax_kv_scan(txn, AX_DBI_userdevicealgo_fallback, p.b, p.n, NULL, 0, unused_cb, &u);
    if (rc < 0) {
        json_decref(u.types);
        return rc;
    }
    *out = u.types;
    return 0;
}

/* ---- cross-signing keys and signatures ---- */

static ax_key_t xsign_key(const char *user_id, const char *usage)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, usage, false);
    return k;
}

int ax_db_xsign_get(ax_txn_t *txn, const char *user_id, const char *usage, json_t **out)
{
    ax_key_t k = xsign_key(user_id, usage);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_userusage_crosssigning, k.b, k.n, out);
}

int ax_db_xsign_put(ax_txn_t *txn, const char *user_id, const char *usage, const json_t *key)
{
    ax_key_t k = xsign_key(user_id, usage);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_userusage_crosssigning, k.b, k.n, key);
}

static ax_key_t keysig_key(const char *target_user, const char *target_key, const char *signer)
{
    ax_key_t k = {0};
    ax_key_str(&k, target_user, true);
    ax_key_str(&k, target_key, true);
    ax_key_str(&k, signer, false);
    return k;
}

int ax_db_keysig_get(ax_txn_t *txn, const char *target_user, const char *target_key, const char *signer, json_t **out)
{
    ax_key_t k = keysig_key(target_user, target_key, signer);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_keysig_signatures, k.b, k.n, out);
}

int ax_db_keysig_put(ax_txn_t *txn, const char *target_user, const char *target_key, const char *signer,
                     const char *signer_key_id, const char *signature)
{
    ax_key_t k = keysig_key(target_user, target_key, signer);
    if (k.overflow)
        return AX_ETOOBIG;
    json_t *sigs = NULL;
    int rc = ax_kv_get_json(txn, AX_DBI_keysig_signatures, k.b, k.n, &sigs);
    if (rc == AX_ENOTFOUND)
        sigs = json_object();
    else if (rc != 0)
        return rc;
    json_object_set_new(sigs, signer_key_id, json_string(signature));
    rc = ax_kv_put_json(txn, AX_DBI_keysig_signatures, k.b, k.n, sigs);
    json_decref(sigs);
    return rc;
}

/* ---- dehydrated devices (MSC3814) ---- */

int ax_db_dehydrated_get(ax_txn_t *txn, const char *user_id, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_userid_dehydrated, user_id, strlen(user_id), out);
}

int ax_db_dehydrated_put(ax_txn_t *txn, const char *user_id, const json_t *rec)
{
    return ax_kv_put_json(txn, AX_DBI_userid_dehydrated, user_id, strlen(user_id), rec);
}

int ax_db_dehydrated_del(ax_txn_t *txn, const char *user_id)
{
    return ax_kv_del(txn, AX_DBI_userid_dehydrated, user_id, strlen(user_id), NULL, 0);
}

/* ---- a deleted device takes its keys and messages with it ---- */

int ax_db_e2ee_device_delete(ax_txn_t *txn, const char *user_id, const char *device_id)
{
    ax_key_t k = dev_key(user_id, device_id, false);
    ax_key_t p = dev_key(user_id, device_id, true);
    if (p.overflow)
        return 0;
    int rc = ax_kv_del(txn, AX_DBI_userdevice_keys, k.b, k.n, NULL, 0);
    if (rc == AX_ENOTFOUND)
        rc = 0;
    static const int prefixed[] = {AX_DBI_userdevicealgo_otk, AX_DBI_otk_order, AX_DBI_userdevicealgo_fallback,
                                   AX_DBI_dev_pos_todevice, AX_DBI_todevicetxn_ts};
    for (size_t i = 0; rc == 0 && i < AX_ARRAY_SIZE(prefixed); ++i)
        rc = ax_kv_del_prefix(txn, prefixed[i], p.b, p.n, NULL);
    return rc;
}

/* ---- the device-list change stream ---- */

static int notify_joined(void *arg, const char *user_id, const char *membership)
{
    if (strcmp(membership, "join") == 0)
        ax_txn_notify(arg, user_id);
    return 0;
}

static int notify_room(void *arg, const char *room_id, json_t *m)
{
    if (ax_streq(json_string_value(json_object_get(m, "membership")), "join"))
        ax_db_room_members_foreach(arg, room_id, notify_joined, arg);
    return 0;
}

int ax_db_devicelist_touch(ax_txn_t *txn, const char *user_id, const char *observer)
{
    if (observer == NULL)
        observer = "";
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, observer, false);
    if (k.overflow)
        return AX_ETOOBIG;
    /* one entry per (user, observer): drop the previous change's index entry */
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_devicelist_pos, k.b, k.n, &v, &vlen);
    if (rc == 0 && vlen == 8) {
        uint8_t old[8];
        memcpy(old, v, 8);
        rc = ax_kv_del(txn, AX_DBI_pos_devicelist, old, 8, NULL, 0);
        if (rc != 0 && rc != AX_ENOTFOUND)
            return rc;
    } else if (rc != 0 && rc != AX_ENOTFOUND) {
        return rc;
    }
    uint8_t pos[8];
    ax_be64_put(pos, ax_txn_next_stream_pos(txn));
    if ((rc = ax_kv_put(txn, AX_DBI_devicelist_pos, k.b, k.n, pos, 8, 0)) != 0 ||
        (rc = ax_kv_put(txn, AX_DBI_pos_devicelist, pos, 8, k.b, k.n, 0)) != 0)
        return rc;
    if (observer[0] != '\0') {
        ax_txn_notify(txn, observer);
        return 0;
    }
    /* the user's own devices and everyone in a room with them hear about it */
    ax_txn_notify(txn, user_id);
    rc = ax_db_user_rooms_foreach(txn, user_id, notify_room, txn);
    return rc < 0 ? rc : 0;
}

int ax_db_devicelist_pos(ax_txn_t *txn, const char *user_id, const char *observer, uint64_t *pos)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, observer != NULL ? observer : "", false);
    *pos = 0;
    if (k.overflow)
        return AX_ENOTFOUND;
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_devicelist_pos, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen != 8)
        return AX_EIO;
    *pos = ax_be64_get(v);
    return 0;
}

typedef struct st_dl_scan_t {
    uint64_t upto;
    int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *observer);
    void *arg;
} dl_scan_t;

static int dl_scan_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    dl_scan_t *s = arg;
    if (klen != 8)
        return 0;
    uint64_t pos = ax_be64_get(key);
    if (pos > s->upto)
        return 1;
    const char *v = val;
    const char *nul = memchr(v, 0, vlen);
    char user[256], observer[256];
    if (nul == NULL || !copy_part(user, sizeof(user), v, (size_t)(nul - v)) ||
        !copy_part(observer, sizeof(observer), nul + 1, vlen - (size_t)(nul - v) - 1))
        return 0;
    return s->cb(s->arg, pos, user, observer);
}

int ax_db_devicelist_changes(ax_txn_t *txn, uint64_t after, uint64_t upto,
                             int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *observer), void *arg)
{
    if (after >= upto)
        return 0;
    dl_scan_t s = {upto, cb, arg};
    ax_key_t f = {0};
    ax_key_u64(&f, after + 1);
    return ax_kv_scan(txn, AX_DBI_pos_devicelist, NULL, 0, f.b, f.n, dl_scan_cb, &s);
}
