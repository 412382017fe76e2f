/*
 * media.c -- media repository records: media ID -> content (hash, type,
 * name, size, uploader), the per-user index, pending IDs from /create with
 * their expiry, and the reference count of each content hash, which decides
 * when a file may be removed from the store.  The files themselves are
 * core/media.c's business; nothing here touches the disk outside LMDB.
 */
#include "storage/storage_internal.h"

#include <stdlib.h>
#include <string.h>

static ax_key_t user_key(const char *user_id, uint64_t created_ts, const char *media_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_u64(&k, created_ts);
    ax_key_str(&k, media_id, false);
    return k;
}

static ax_key_t pending_key(const char *user_id, const char *media_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, media_id, false);
    return k;
}

static ax_key_t expiry_key(uint64_t expires_ts, const char *media_id)
{
    ax_key_t k = {0};
    ax_key_u64(&k, expires_ts);
    ax_key_str(&k, media_id, false);
    return k;
}

static uint64_t rec_u64(const json_t *rec, const char *name)
{
    json_int_t v = json_integer_value(json_object_get(rec, name));
    return v > 0 ? (uint64_t)v : 0;
}

int ax_db_media_get(ax_txn_t *txn, const char *media_id, json_t **out)
{
    size_t n = strlen(media_id);
    if (n == 0 || n > 255)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_mediaid_media, media_id, n, out);
}

/* Adds 'delta' (+1 or -1) to the reference count of 'sha'; the count left goes to '*left'. */
static int refs_add(ax_txn_t *txn, const uint8_t sha[AX_MEDIA_HASH_BYTES], int delta, uint64_t *left)
{
    const void *v;
    size_t vlen;
    uint64_t n = 0;
    int rc = ax_kv_get(txn, AX_DBI_sha256_refs, sha, AX_MEDIA_HASH_BYTES, &v, &vlen);
    if (rc == 0 && vlen == 8)
        n = ax_be64_get(v);
    else if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    if (delta < 0 && n == 0)
        return AX_EIO; /* a record pointed at content nobody counted: the database is inconsistent */
    n = delta > 0 ? n + 1 : n - 1;
    if (left != NULL)
        *left = n;
    if (n == 0)
        return ax_kv_del(txn, AX_DBI_sha256_refs, sha, AX_MEDIA_HASH_BYTES, NULL, 0);
    uint8_t be[8];
    ax_be64_put(be, n);
    return ax_kv_put(txn, AX_DBI_sha256_refs, sha, AX_MEDIA_HASH_BYTES, be, 8, 0);
}

int ax_db_media_refs(ax_txn_t *txn, const uint8_t sha[AX_MEDIA_HASH_BYTES], uint64_t *n)
{
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_sha256_refs, sha, AX_MEDIA_HASH_BYTES, &v, &vlen);
    if (rc == AX_ENOTFOUND) {
        *n = 0;
        return 0;
    }
    if (rc != 0)
        return rc;
    *n = vlen == 8 ? ax_be64_get(v) : 0;
    return 0;
}

int ax_db_media_sha_from_hex(const char *hex, uint8_t sha[AX_MEDIA_HASH_BYTES])
{
    if (hex == NULL || strlen(hex) != 2 * AX_MEDIA_HASH_BYTES)
        return AX_EINVAL;
    for (size_t i = 0; i < AX_MEDIA_HASH_BYTES; ++i) {
        unsigned v = 0;
        for (size_t j = 0; j < 2; ++j) {
            char c = hex[2 * i + j];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return AX_EINVAL;
        }
        sha[i] = (uint8_t)v;
    }
    return 0;
}

/* Removes the pending indexes of record 'rec' of 'media_id'. */
static int unindex_pending(ax_txn_t *txn, const char *media_id, const json_t *rec)
{
    const char *uploader = json_string_value(json_object_get(rec, "uploader"));
    ax_key_t pk = pending_key(uploader != NULL ? uploader : "", media_id);
    ax_key_t ek = expiry_key(rec_u64(rec, "expires_ts"), media_id);
    int rc = ax_kv_del(txn, AX_DBI_userpending_mediaid, pk.b, pk.n, NULL, 0);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    rc = ax_kv_del(txn, AX_DBI_expiry_mediaid, ek.b, ek.n, NULL, 0);
    return rc == AX_ENOTFOUND ? 0 : rc;
}

int ax_db_media_put(ax_txn_t *txn, const char *media_id, const json_t *rec)
{
    size_t idlen = strlen(media_id);
    const char *uploader = json_string_value(json_object_get(rec, "uploader"));
    if (idlen == 0 || idlen > 255 || uploader == NULL)
        return AX_EINVAL;
    bool pending = json_is_true(json_object_get(rec, "pending"));
    uint8_t sha[AX_MEDIA_HASH_BYTES];
    if (!pending && ax_db_media_sha_from_hex(json_string_value(json_object_get(rec, "sha256")), sha) != 0)
        return AX_EINVAL;

    json_t *old = NULL;
    int rc = ax_db_media_get(txn, media_id, &old);
    if (rc == 0) {
        bool was_pending = json_is_true(json_object_get(old, "pending"));
        bool same_owner = ax_streq(json_string_value(json_object_get(old, "uploader")), uploader) &&
                          rec_u64(old, "created_ts") == rec_u64(rec, "created_ts");
        if (!was_pending || pending || !same_owner) {
            json_decref(old);
            return AX_EEXIST; /* content is never overwritten (M_CANNOT_OVERWRITE_MEDIA) */
        }
        rc = unindex_pending(txn, media_id, old);
        json_decref(old);
        if (rc != 0)
            return rc;
    } else if (rc != AX_ENOTFOUND) {
        return rc;
    } else {
        ax_key_t uk = user_key(uploader, rec_u64(rec, "created_ts"), media_id);
        if (uk.overflow)
            return AX_ETOOBIG;
        if ((rc = ax_kv_put(txn, AX_DBI_userid_media, uk.b, uk.n, "", 0, 0)) != 0)
            return rc;
    }
    if (pending) {
        uint64_t expires = rec_u64(rec, "expires_ts");
        ax_key_t pk = pending_key(uploader, media_id), ek = expiry_key(expires, media_id);
        uint8_t be[8];
        ax_be64_put(be, expires);
        if ((rc = ax_kv_put(txn, AX_DBI_userpending_mediaid, pk.b, pk.n, be, 8, 0)) != 0 ||
            (rc = ax_kv_put(txn, AX_DBI_expiry_mediaid, ek.b, ek.n, "", 0, 0)) != 0)
            return rc;
    } else if ((rc = refs_add(txn, sha, +1, NULL)) != 0) {
        return rc;
    }
    return ax_kv_put_json(txn, AX_DBI_mediaid_media, media_id, idlen, rec);
}

int ax_db_media_delete(ax_txn_t *txn, const char *media_id, uint8_t sha[AX_MEDIA_HASH_BYTES], uint64_t *refs_left)
{
    json_t *rec = NULL;
    int rc = ax_db_media_get(txn, media_id, &rec);
    if (rc != 0)
        return rc;
    const char *uploader = json_string_value(json_object_get(rec, "uploader"));
    ax_key_t uk = user_key(uploader != NULL ? uploader : "", rec_u64(rec, "created_ts"), media_id);
    *refs_left = 0;
    if (json_is_true(json_object_get(rec, "pending"))) {
        memset(sha, 0, AX_MEDIA_HASH_BYTES);
        *refs_left = UINT64_MAX; /* no content: nothing to remove from the store */
        rc = unindex_pending(txn, media_id, rec);
    } else if ((rc = ax_db_media_sha_from_hex(json_string_value(json_object_get(rec, "sha256")), sha)) == 0) {
        rc = refs_add(txn, sha, -1, refs_left);
    } else {
        rc = AX_EIO;
    }
    json_decref(rec);
    if (rc != 0)
        return rc;
    rc = ax_kv_del(txn, AX_DBI_userid_media, uk.b, uk.n, NULL, 0);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    return ax_kv_del(txn, AX_DBI_mediaid_media, media_id, strlen(media_id), NULL, 0);
}

typedef struct st_count_arg_t {
    uint64_t now_ms;
    size_t n;
} count_arg_t;

static int count_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    AX_UNUSED(key);
    AX_UNUSED(klen);
    count_arg_t *c = arg;
    if (vlen == 8 && ax_be64_get(val) > c->now_ms)
        c->n++;
    return 0;
}

int ax_db_media_pending_count(ax_txn_t *txn, const char *user_id, uint64_t now_ms, size_t *n)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    if (k.overflow)
        return AX_EINVAL;
    count_arg_t c = {now_ms, 0};
    int rc = ax_kv_scan(txn, AX_DBI_userpending_mediaid, k.b, k.n, NULL, 0, count_cb, &c);
    *n = c.n;
    return rc;
}

typedef struct st_user_arg_t {
    ax_txn_t *txn;
    int (*cb)(void *arg, const char *media_id, json_t *rec);
    void *arg;
    size_t plen;
} user_arg_t;

static int user_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    AX_UNUSED(val);
    AX_UNUSED(vlen);
    user_arg_t *u = arg;
    if (klen <= u->plen + 8 || klen - u->plen - 8 > 255)
        return 0;
    char id[256];
    memcpy(id, (const char *)key + u->plen + 8, klen - u->plen - 8);
    id[klen - u->plen - 8] = '\0';
    json_t *rec = NULL;
    if (ax_db_media_get(u->txn, id, &rec) != 0)
        return 0;
    int rc = u->cb(u->arg, id, rec);
    json_decref(rec);
    return rc;
}

int ax_db_media_user_foreach(ax_txn_t *txn, const char *user_id,
                             int (*cb)(void *arg, const char *media_id, json_t *rec), void *arg)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    if (k.overflow)
        return AX_EINVAL;
    user_arg_t u = {txn, cb, arg, k.n};
    return ax_kv_scan(txn, AX_DBI_userid_media, k.b, k.n, NULL, 0, user_cb, &u);
}

typedef struct st_expire_arg_t {
    uint64_t now_ms;
    size_t max;
    struct expired_t {
        uint64_t expires;
        char id[256];
    } * items;
    size_t n;
} expire_arg_t;

static int expire_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    AX_UNUSED(val);
    AX_UNUSED(vlen);
    expire_arg_t *e = arg;
    if (klen < 8 || ax_be64_get(key) > e->now_ms || e->n == e->max)
        return 1;
    if (klen - 8 <= 255) {
        e->items[e->n].expires = ax_be64_get(key);
        memcpy(e->items[e->n].id, (const char *)key + 8, klen - 8);
        e->items[e->n].id[klen - 8] = '\0';
        e->n++;
    }
    return 0;
}

int ax_db_media_expire(ax_txn_t *txn, uint64_t now_ms, size_t max, size_t *n)
{
    /* collect first: a table must not be written while a scan walks it */
    expire_arg_t e = {now_ms, max, ax_calloc(max != 0 ? max : 1, sizeof(*e.items)), 0};
    int rc = ax_kv_scan(txn, AX_DBI_expiry_mediaid, NULL, 0, NULL, 0, expire_cb, &e);
    rc = rc == 1 ? 0 : rc;
    size_t done = 0;
    for (size_t i = 0; rc == 0 && i < e.n; ++i) {
        json_t *rec = NULL;
        rc = ax_db_media_get(txn, e.items[i].id, &rec);
        bool pending = rc == 0 && json_is_true(json_object_get(rec, "pending")) &&
                       rec_u64(rec, "expires_ts") == e.items[i].expires;
        json_decref(rec);
        if (rc != 0 && rc != AX_ENOTFOUND)
            break;
        if (pending) {
            uint8_t sha[AX_MEDIA_HASH_BYTES];
            uint64_t left;
            rc = ax_db_media_delete(txn, e.items[i].id, sha, &left);
            done += rc == 0;
        } else {
            /* an index entry whose record is gone or completed: drop the entry alone */
            ax_key_t ek = expiry_key(e.items[i].expires, e.items[i].id);
            rc = ax_kv_del(txn, AX_DBI_expiry_mediaid, ek.b, ek.n, NULL, 0);
            rc = rc == AX_ENOTFOUND ? 0 : rc;
        }
    }
    free(e.items);
    if (n != NULL)
        *n = done;
    return rc;
}
