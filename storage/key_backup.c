/*
 * key_backup.c -- server-side backups of room keys: backup versions
 * (userversion_backup) and the encrypted session keys stored in them
 * (backup_roomkey).  The server only sees ciphertext and the metadata the
 * spec uses to keep the better copy of a key.
 */
#include "storage/storage_internal.h"

#include <stdlib.h>
#include <string.h>

static ax_key_t version_key(const char *user_id, uint64_t version)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_u64(&k, version);
    return k;
}

int ax_db_backup_version_get(ax_txn_t *txn, const char *user_id, uint64_t version, json_t **out)
{
    ax_key_t k = version_key(user_id, version);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_userversion_backup, k.b, k.n, out);
}

int ax_db_backup_version_put(ax_txn_t *txn, const char *user_id, uint64_t version, const json_t *info)
{
    ax_key_t k = version_key(user_id, version);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_userversion_backup, k.b, k.n, info);
}

typedef struct st_latest_t {
    size_t plen;
    bool include_deleted;
    uint64_t version;
    json_t *info;
} latest_t;

static int latest_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    latest_t *l = arg;
    if (klen != l->plen + 8)
        return 0;
    json_t *info = json_loadb(val, vlen, 0, NULL);
    if (info == NULL)
        return 0;
    if (!l->include_deleted && json_is_true(json_object_get(info, "deleted"))) {
        json_decref(info);
        return 0;
    }
    l->version = ax_be64_get((const uint8_t *)key + l->plen);
    l->info = info;
    return 1;
}

int ax_db_backup_version_latest(ax_txn_t *txn, const char *user_id, bool include_deleted, uint64_t *version,
                                json_t **out)
{
    ax_key_t p = {0};
    ax_key_str(&p, user_id, true);
    if (p.overflow)
        return AX_ENOTFOUND;
    latest_t l = {p.n, include_deleted, 0, NULL};
    int rc = ax_kv_scan_rev(txn, AX_DBI_userversion_backup, p.b, p.n, NULL, 0, latest_cb, &l);
    if (rc < 0)
        return rc;
    if (l.info == NULL)
        return AX_ENOTFOUND;
    *version = l.version;
    if (out != NULL)
        *out = l.info;
    else
        json_decref(l.info);
    return 0;
}

/* user_id 0x00 be64 version [room_id 0x00 [session_id]] */
static ax_key_t roomkey_key(const char *user_id, uint64_t version, const char *room_id, const char *session_id)
{
    ax_key_t k = version_key(user_id, version);
    if (room_id != NULL)
        ax_key_str(&k, room_id, true);
    if (session_id != NULL)
        ax_key_str(&k, session_id, false);
    return k;
}

int ax_db_backup_key_get(ax_txn_t *txn, const char *user_id, uint64_t version, const char *room_id,
                         const char *session_id, json_t **out)
{
    ax_key_t k = roomkey_key(user_id, version, room_id, session_id);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_backup_roomkey, k.b, k.n, out);
}

int ax_db_backup_key_put(ax_txn_t *txn, const char *user_id, uint64_t version, const char *room_id,
                         const char *session_id, const json_t *key)
{
    ax_key_t k = roomkey_key(user_id, version, room_id, session_id);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_backup_roomkey, k.b, k.n, key);
}

typedef struct st_roomkey_scan_t {
    size_t plen; /* up to and including the version */
    int (*cb)(void *arg, const char *room_id, const char *session_id, json_t *key);
    void *arg;
} roomkey_scan_t;

static int roomkey_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    roomkey_scan_t *s = arg;
    const char *rest = (const char *)key + s->plen;
    size_t rlen = klen - s->plen;
    const char *sep = memchr(rest, 0, rlen);
    char room[256], session[256];
    size_t rl = sep ? (size_t)(sep - rest) : 0, sl = sep ? rlen - rl - 1 : 0;
    if (sep == NULL || rl >= sizeof(room) || sl >= sizeof(session))
        return 0;
    memcpy(room, rest, rl);
    room[rl] = '\0';
    memcpy(session, sep + 1, sl);
    session[sl] = '\0';
    json_t *k = json_loadb(val, vlen, 0, NULL);
    if (k == NULL)
        return 0;
    int rc = s->cb(s->arg, room, session, k);
    json_decref(k);
    return rc;
}

int ax_db_backup_keys_foreach(ax_txn_t *txn, const char *user_id, uint64_t version, const char *room_id,
                              int (*cb)(void *arg, const char *room_id, const char *session_id, json_t *key), void *arg)
{
    ax_key_t p = roomkey_key(user_id, version, room_id, NULL);
    if (p.overflow)
        return 0;
    roomkey_scan_t s = {version_key(user_id, version).n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_backup_roomkey, p.b, p.n, NULL, 0, roomkey_cb, &s);
}

int ax_db_backup_keys_delete(ax_txn_t *txn, const char *user_id, uint64_t version, const char *room_id,
                             const char *session_id, size_t *n)
{
    ax_key_t k = roomkey_key(user_id, version, room_id, session_id);
    if (k.overflow) {
        if (n != NULL)
            *n = 0;
        return 0;
    }
    if (session_id == NULL)
        return ax_kv_del_prefix(txn, AX_DBI_backup_roomkey, k.b, k.n, n);
    int rc = ax_kv_del(txn, AX_DBI_backup_roomkey, k.b, k.n, NULL, 0);
    if (n != NULL)
        *n = rc == 0 ? 1 : 0;
    return rc == AX_ENOTFOUND ? 0 : rc;
}
