/*
 * fedtxn.c -- the answers to transactions other servers sent us
 * (PUT /_matrix/federation/v1/send/{txnId}), kept for a day so a retried
 * transaction gets the same answer without being processed twice (spec:
 * "the receiving server ... should deduplicate by transaction ID").
 */
#include "storage/storage_internal.h"

#include <string.h>

#define KEEP_MS   (24ULL * 3600 * 1000)
#define PRUNE_MAX 16 /* old entries dropped per new one: the table stays small without a sweep */

static ax_key_t txn_key(const char *origin, const char *txn_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, origin, true);
    ax_key_str(&k, txn_id, false);
    return k;
}

int ax_db_fedtxn_get(ax_txn_t *txn, const char *origin, const char *txn_id, json_t **answer)
{
    ax_key_t k = txn_key(origin, txn_id);
    if (k.overflow)
        return AX_ENOTFOUND;
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_origintxn_answer, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen < 8)
        return AX_EIO;
    *answer = json_loadb((const char *)v + 8, vlen - 8, 0, NULL);
    return *answer != NULL ? 0 : AX_EIO;
}

typedef struct st_prune_t {
    uint64_t before;
    size_t n;
    ax_key_t keys[PRUNE_MAX];
} prune_t;

static int prune_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    prune_t *p = arg;
    if (klen < 8 || klen > sizeof(p->keys[0].b) || ax_be64_get(key) >= p->before || p->n >= PRUNE_MAX)
        return 1;
    memset(&p->keys[p->n], 0, sizeof(p->keys[0]));
    ax_key_bytes(&p->keys[p->n++], key, klen);
    return 0;
}

int ax_db_fedtxn_put(ax_txn_t *txn, const char *origin, const char *txn_id, const json_t *answer, uint64_t now_ms)
{
    ax_key_t k = txn_key(origin, txn_id);
    if (k.overflow)
        return AX_ETOOBIG;
    char *body = json_dumps(answer, JSON_COMPACT);
    if (body == NULL)
        return AX_EINVAL;
    size_t blen = strlen(body);
    uint8_t *v = ax_malloc(8 + blen);
    ax_be64_put(v, now_ms);
    memcpy(v + 8, body, blen);
    free(body);
    int rc = ax_kv_put(txn, AX_DBI_origintxn_answer, k.b, k.n, v, 8 + blen, 0);
    free(v);
    ax_key_t t = {0};
    ax_key_u64(&t, now_ms);
    ax_key_bytes(&t, k.b, k.n);
    if (rc == 0 && !t.overflow)
        rc = ax_kv_put(txn, AX_DBI_ts_origintxn, t.b, t.n, "", 0, 0);
    if (rc != 0)
        return rc;
    /* drop a few answers older than a day, and their index entries */
    if (now_ms <= KEEP_MS)
        return 0;
    prune_t *p = ax_calloc(1, sizeof(*p));
    p->before = now_ms - KEEP_MS;
    ax_kv_scan(txn, AX_DBI_ts_origintxn, NULL, 0, NULL, 0, prune_cb, p);
    for (size_t i = 0; i < p->n && rc == 0; ++i) {
        const ax_key_t *old = &p->keys[i];
        rc = ax_kv_del(txn, AX_DBI_ts_origintxn, old->b, old->n, NULL, 0);
        if (rc == 0) {
            rc = ax_kv_del(txn, AX_DBI_origintxn_answer, old->b + 8, old->n - 8, NULL, 0);
            if (rc == AX_ENOTFOUND)
                rc = 0;
        }
    }
    free(p);
    return rc;
}
