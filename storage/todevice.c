/*
 * todevice.c -- send-to-device inboxes (dev_pos_todevice) and the
 * transaction IDs that make sending idempotent (todevicetxn_ts).  A
 * message waits in its device's inbox, ordered by stream position, until
 * a /sync with a later since token acknowledges it.
 */
#include "storage/storage_internal.h"

#include <stdlib.h>
#include <string.h>

static ax_key_t inbox_prefix(const char *user_id, const char *device_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, device_id, true);
    return k;
}

int ax_db_todevice_put(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t pos, const json_t *msg)
{
    ax_key_t k = inbox_prefix(user_id, device_id);
    ax_key_u64(&k, pos);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_dev_pos_todevice, k.b, k.n, msg);
}

typedef struct st_inbox_scan_t {
    size_t plen;
    int (*cb)(void *arg, uint64_t pos, json_t *msg);
    void *arg;
} inbox_scan_t;

static int inbox_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    inbox_scan_t *s = arg;
    if (klen != s->plen + 8)
        return 0;
    json_t *msg = json_loadb(val, vlen, 0, NULL);
    if (msg == NULL)
        return 0;
    int rc = s->cb(s->arg, ax_be64_get((const uint8_t *)key + s->plen), msg);
    json_decref(msg);
    return rc;
}

int ax_db_todevice_scan(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t after,
                        int (*cb)(void *arg, uint64_t pos, json_t *msg), void *arg)
{
    ax_key_t p = inbox_prefix(user_id, device_id);
    ax_key_t f = p;
    ax_key_u64(&f, after == UINT64_MAX ? after : after + 1);
    if (f.overflow)
        return 0;
    inbox_scan_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_dev_pos_todevice, p.b, p.n, f.b, f.n, inbox_cb, &s);
}

typedef struct st_oldest_t {
    size_t plen;
    uint64_t pos;
    bool found;
} oldest_t;

static int oldest_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    oldest_t *o = arg;
    if (klen != o->plen + 8)
        return 0;
    o->pos = ax_be64_get((const uint8_t *)key + o->plen);
    o->found = true;
    return 1;
}

int ax_db_todevice_oldest(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t *pos)
{
    ax_key_t p = inbox_prefix(user_id, device_id);
    if (p.overflow)
        return AX_ENOTFOUND;
    oldest_t o = {p.n, 0, false};
    int rc = ax_kv_scan(txn, AX_DBI_dev_pos_todevice, p.b, p.n, NULL, 0, oldest_cb, &o);
    if (rc < 0)
        return rc;
    if (!o.found)
        return AX_ENOTFOUND;
    *pos = o.pos;
    return 0;
}

int ax_db_todevice_ack(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t upto, size_t *n)
{
    size_t count = 0;
    int rc;
    /* delete from the front of the inbox: positions only grow, so the acknowledged ones are first */
    for (;;) {
        uint64_t pos;
        rc = ax_db_todevice_oldest(txn, user_id, device_id, &pos);
        if (rc == AX_ENOTFOUND || (rc == 0 && pos > upto)) {
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        ax_key_t k = inbox_prefix(user_id, device_id);
        ax_key_u64(&k, pos);
        if ((rc = ax_kv_del(txn, AX_DBI_dev_pos_todevice, k.b, k.n, NULL, 0)) != 0)
            break;
        ++count;
    }
    if (n != NULL)
        *n = count;
    return rc;
}

static ax_key_t txn_key(const char *user_id, const char *device_id, const char *txn_id)
{
    ax_key_t k = inbox_prefix(user_id, device_id);
    ax_key_str(&k, txn_id, false);
    return k;
}

int ax_db_todevice_txn_get(ax_txn_t *txn, const char *user_id, const char *device_id, const char *txn_id)
{
    ax_key_t k = txn_key(user_id, device_id, txn_id);
    if (k.overflow)
        return AX_ENOTFOUND;
    const void *v;
    size_t vlen;
    return ax_kv_get(txn, AX_DBI_todevicetxn_ts, k.b, k.n, &v, &vlen);
}

int ax_db_todevice_txn_put(ax_txn_t *txn, const char *user_id, const char *device_id, const char *txn_id, uint64_t ts)
{
    ax_key_t k = txn_key(user_id, device_id, txn_id);
    if (k.overflow)
        return AX_ETOOBIG;
    uint8_t v[8];
    ax_be64_put(v, ts);
    return ax_kv_put(txn, AX_DBI_todevicetxn_ts, k.b, k.n, v, 8, 0);
}
