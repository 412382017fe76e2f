/*
 * receipts.c -- read receipts per room, type, user and thread, and
 * presence, each with a change index by stream position for /sync.
 */
#include "storage/storage_internal.h"

#include <string.h>

static ax_key_t receipt_key(const char *room_id, const char *type, const char *user_id, const char *thread)
{
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_str(&k, type, true);
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, thread != NULL ? thread : "", false);
    return k;
}

int ax_db_receipt_get(ax_txn_t *txn, const char *room_id, const char *type, const char *user_id, const char *thread_id,
                      json_t **out)
{
    ax_key_t k = receipt_key(room_id, type, user_id, thread_id);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_roomtypeuser_receipt, k.b, k.n, out);
}

int ax_db_receipt_put(ax_txn_t *txn, const char *room_id, const char *type, const char *user_id, const char *thread_id,
                      const char *event_id, uint64_t ts, uint64_t pos)
{
    ax_key_t k = receipt_key(room_id, type, user_id, thread_id);
    if (k.overflow)
        return AX_ETOOBIG;
    json_t *old = NULL;
    int rc = ax_kv_get_json(txn, AX_DBI_roomtypeuser_receipt, k.b, k.n, &old);
    if (rc == 0) {
        ax_key_t ok = {0};
        ax_key_str(&ok, room_id, true);
        ax_key_u64(&ok, (uint64_t)json_integer_value(json_object_get(old, "pos")));
        json_decref(old);
        rc = ax_kv_del(txn, AX_DBI_roompos_receipt, ok.b, ok.n, NULL, 0);
        if (rc != 0 && rc != AX_ENOTFOUND)
            return rc;
    } else if (rc != AX_ENOTFOUND) {
        return rc;
    }
    json_t *rec = json_pack("{s:s, s:I, s:I}", "event_id", event_id, "ts", (json_int_t)ts, "pos", (json_int_t)pos);
    if (thread_id != NULL && thread_id[0] != '\0')
        json_object_set_new(rec, "thread_id", json_string(thread_id));
    rc = ax_kv_put_json(txn, AX_DBI_roomtypeuser_receipt, k.b, k.n, rec);
    json_decref(rec);
    if (rc != 0)
        return rc;
    ax_key_t ik = {0};
    ax_key_str(&ik, room_id, true);
    ax_key_u64(&ik, pos);
    ax_key_t iv = {0};
    ax_key_str(&iv, type, true);
    ax_key_str(&iv, user_id, true);
    ax_key_str(&iv, thread_id != NULL ? thread_id : "", false);
    return ax_kv_put(txn, AX_DBI_roompos_receipt, ik.b, ik.n, iv.b, iv.n, 0);
}

typedef struct st_receipt_scan_t {
    ax_txn_t *txn;
    const char *room_id;
    int (*cb)(void *arg, const char *type, const char *user_id, json_t *receipt);
    void *arg;
} receipt_scan_t;

static int receipt_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)key, (void)klen;
    receipt_scan_t *s = arg;
    const char *v = val, *end = v + vlen;
    const char *a = memchr(v, 0, vlen);
    const char *b = a ? memchr(a + 1, 0, (size_t)(end - a - 1)) : NULL;
    char type[128], user[256], thread[256];
    if (b == NULL || (size_t)(a - v) >= sizeof(type) || (size_t)(b - a - 1) >= sizeof(user) ||
        (size_t)(end - b - 1) >= sizeof(thread))
        return 0;
    memcpy(type, v, (size_t)(a - v));
    type[a - v] = '\0';
    memcpy(user, a + 1, (size_t)(b - a - 1));
    user[b - a - 1] = '\0';
    memcpy(thread, b + 1, (size_t)(end - b - 1));
    thread[end - b - 1] = '\0';
    json_t *rec = NULL;
    if (ax_db_receipt_get(s->txn, s->room_id, type, user, thread, &rec) != 0)
        return 0;
    int rc = s->cb(s->arg, type, user, rec);
    json_decref(rec);
    return rc;
}

int ax_db_receipt_changes(ax_txn_t *txn, const char *room_id, uint64_t after,
                          int (*cb)(void *arg, const char *type, const char *user_id, json_t *receipt), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    ax_key_t f = p;
    ax_key_u64(&f, after + 1);
    if (f.overflow)
        return 0;
    receipt_scan_t s = {txn, room_id, cb, arg};
    return ax_kv_scan(txn, AX_DBI_roompos_receipt, p.b, p.n, f.b, f.n, receipt_cb, &s);
}

/* ---- presence ---- */

int ax_db_presence_get(ax_txn_t *txn, const char *user_id, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_userid_presence, user_id, strlen(user_id), out);
}

int ax_db_presence_put(ax_txn_t *txn, const char *user_id, const json_t *presence, uint64_t pos)
{
    json_t *old = NULL;
    int rc = ax_kv_get_json(txn, AX_DBI_userid_presence, user_id, strlen(user_id), &old);
    if (rc == 0) {
        ax_key_t ok = {0};
        ax_key_u64(&ok, (uint64_t)json_integer_value(json_object_get(old, "pos")));
        json_decref(old);
        rc = ax_kv_del(txn, AX_DBI_pos_presence, ok.b, ok.n, NULL, 0);
        if (rc != 0 && rc != AX_ENOTFOUND)
            return rc;
    } else if (rc != AX_ENOTFOUND) {
        return rc;
    }
    json_t *rec = json_deep_copy(presence);
    json_object_set_new(rec, "pos", json_integer((json_int_t)pos));
    rc = ax_kv_put_json(txn, AX_DBI_userid_presence, user_id, strlen(user_id), rec);
    json_decref(rec);
    if (rc != 0)
        return rc;
    ax_key_t k = {0};
    ax_key_u64(&k, pos);
    return ax_kv_put(txn, AX_DBI_pos_presence, k.b, k.n, user_id, strlen(user_id), 0);
}

typedef struct st_presence_scan_t {
    int (*cb)(void *arg, uint64_t pos, const char *user_id);
    void *arg;
} presence_scan_t;

static int presence_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    presence_scan_t *s = arg;
    char user[256];
    if (klen != 8 || vlen >= sizeof(user))
        return 0;
    memcpy(user, val, vlen);
    user[vlen] = '\0';
    return s->cb(s->arg, ax_be64_get(key), user);
}

int ax_db_presence_changes(ax_txn_t *txn, uint64_t after, int (*cb)(void *arg, uint64_t pos, const char *user_id),
                           void *arg)
{
    ax_key_t f = {0};
    ax_key_u64(&f, after + 1);
    presence_scan_t s = {cb, arg};
    return ax_kv_scan(txn, AX_DBI_pos_presence, NULL, 0, f.b, f.n, presence_cb, &s);
}
