/*
 * userdata.c -- per-user account data (global and per room) with its
 * change index for /sync, and stored /sync filters.
 */
#include "storage/storage_internal.h"

#include <stdlib.h>
#include <string.h>

static ax_key_t ad_key(const char *user_id, const char *room_id, const char *type)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, room_id != NULL ? room_id : "", true);
    ax_key_str(&k, type, false);
    return k;
}

int ax_db_accountdata_get(ax_txn_t *txn, const char *user_id, const char *room_id, const char *type, json_t **out,
                          uint64_t *pos)
{
    ax_key_t k = ad_key(user_id, room_id, type);
    if (k.overflow)
        return AX_ENOTFOUND;
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_userroomtype_accountdata, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen < 8)
        return AX_EIO;
    json_t *j = json_loadb((const char *)v + 8, vlen - 8, 0, NULL);
    if (j == NULL)
        return AX_EIO;
    if (pos != NULL)
        *pos = ax_be64_get(v);
    *out = j;
    return 0;
}

int ax_db_accountdata_put(ax_txn_t *txn, const char *user_id, const char *room_id, const char *type,
                          const json_t *content, uint64_t pos)
{
    ax_key_t k = ad_key(user_id, room_id, type);
    if (k.overflow)
        return AX_ETOOBIG;
    /* drop the index entry of the previous change, so the index holds one entry per item */
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_userroomtype_accountdata, k.b, k.n, &v, &vlen);
    if (rc == 0 && vlen >= 8) {
        ax_key_t old = {0};
        ax_key_str(&old, user_id, true);
        ax_key_u64(&old, ax_be64_get(v));
        rc = ax_kv_del(txn, AX_DBI_userpos_accountdata, old.b, old.n, NULL, 0);
        if (rc != 0 && rc != AX_ENOTFOUND)
            return rc;
    } else if (rc != AX_ENOTFOUND && rc != 0) {
        return rc;
    }
    char *text = json_dumps(content, JSON_COMPACT);
    if (text == NULL)
        return AX_EINVAL;
    size_t tlen = strlen(text);
    uint8_t *val = ax_malloc(8 + tlen);
    ax_be64_put(val, pos);
    memcpy(val + 8, text, tlen);
    free(text);
    rc = ax_kv_put(txn, AX_DBI_userroomtype_accountdata, k.b, k.n, val, 8 + tlen, 0);
    free(val);
    if (rc != 0)
        return rc;
    ax_key_t ik = {0};
    ax_key_str(&ik, user_id, true);
    ax_key_u64(&ik, pos);
    ax_key_t iv = {0};
    ax_key_str(&iv, room_id != NULL ? room_id : "", true);
    ax_key_str(&iv, type, false);
    return ax_kv_put(txn, AX_DBI_userpos_accountdata, ik.b, ik.n, iv.b, iv.n, 0);
}

typedef struct st_ad_scan_t {
    size_t plen;
    int (*cb)(void *arg, uint64_t pos, const char *room_id, const char *type);
    void *arg;
} ad_scan_t;

static int ad_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    ad_scan_t *s = arg;
    if (klen != s->plen + 8)
        return 0;
    const char *v = val;
    const char *sep = memchr(v, 0, vlen);
    char room[256], type[256];
    size_t rl = sep ? (size_t)(sep - v) : 0, tl = sep ? vlen - rl - 1 : 0;
    if (sep == NULL || rl >= sizeof(room) || tl >= sizeof(type))
        return 0;
    memcpy(room, v, rl);
    room[rl] = '\0';
    memcpy(type, sep + 1, tl);
    type[tl] = '\0';
    return s->cb(s->arg, ax_be64_get((const uint8_t *)key + s->plen), room, type);
}

int ax_db_accountdata_changes(ax_txn_t *txn, const char *user_id, uint64_t after,
                              int (*cb)(void *arg, uint64_t pos, const char *room_id, const char *type), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, user_id, true);
    ax_key_t f = p;
    ax_key_u64(&f, after + 1);
    ad_scan_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_userpos_accountdata, p.b, p.n, f.b, f.n, ad_cb, &s);
}

int ax_db_filter_put(ax_txn_t *txn, const char *user_id, const json_t *filter, char *id, size_t cap)
{
    uint64_t next = 0;
    int rc = ax_db_meta_get_u64(txn, "filter_next", &next);
    if (rc == AX_ENOTFOUND)
        next = 1;
    else if (rc != 0)
        return rc;
    if ((rc = ax_db_meta_put_u64(txn, "filter_next", next + 1)) != 0)
        return rc;
    snprintf(id, cap, "%llu", (unsigned long long)next);
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, id, false);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_userid_filter, k.b, k.n, filter);
}

int ax_db_filter_get(ax_txn_t *txn, const char *user_id, const char *filter_id, json_t **out)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, filter_id, false);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_userid_filter, k.b, k.n, out);
}
