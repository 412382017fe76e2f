/*
 * federation.c -- what the Server-Server side keeps: other servers' signing
 * keys as fetched and verified (serverkeyid_key), this server's former
 * signing keys (keyid_oldkey) and the outbound backoff state of each
 * destination (destination_state).  Layouts are in schema.h.
 */
#include "storage/storage_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- Remote server keys ---- */

static ax_key_t server_key_key(const char *server_name, const char *key_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, server_name, true);
    ax_key_str(&k, key_id, false);
    return k;
}

int ax_db_server_key_get(ax_txn_t *txn, const char *server_name, const char *key_id, json_t **out)
{
    ax_key_t k = server_key_key(server_name, key_id);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_serverkeyid_key, k.b, k.n, out);
}

int ax_db_server_key_put(ax_txn_t *txn, const char *server_name, const char *key_id, const json_t *rec)
{
    ax_key_t k = server_key_key(server_name, key_id);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_serverkeyid_key, k.b, k.n, rec);
}

typedef struct st_key_scan_t {
    size_t plen;
    int (*cb)(void *arg, const char *key_id, json_t *rec);
    void *arg;
} key_scan_t;

static int server_key_scan_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    key_scan_t *s = arg;
    char id[256];
    size_t n = klen - s->plen;
    if (n >= sizeof(id))
        return 0;
    memcpy(id, (const char *)key + s->plen, n);
    id[n] = '\0';
    json_t *rec = json_loadb(val, vlen, 0, NULL);
    if (rec == NULL)
        return 0;
    int rc = s->cb(s->arg, id, rec);
    json_decref(rec);
    return rc;
}

int ax_db_server_keys_foreach(ax_txn_t *txn, const char *server_name,
                              int (*cb)(void *arg, const char *key_id, json_t *rec), void *arg)
{
    ax_key_t prefix = {0};
    ax_key_str(&prefix, server_name, true);
    if (prefix.overflow)
        return 0;
    key_scan_t s = {prefix.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_serverkeyid_key, prefix.b, prefix.n, NULL, 0, server_key_scan_cb, &s);
}

/* ---- Our own former keys ---- */

int ax_db_old_key_put(ax_txn_t *txn, const char *key_id, const json_t *rec)
{
    return ax_kv_put_json(txn, AX_DBI_keyid_oldkey, key_id, strlen(key_id), rec);
}

int ax_db_old_keys_foreach(ax_txn_t *txn, int (*cb)(void *arg, const char *key_id, json_t *rec), void *arg)
{
    key_scan_t s = {0, cb, arg};
    return ax_kv_scan(txn, AX_DBI_keyid_oldkey, NULL, 0, NULL, 0, server_key_scan_cb, &s);
}

/* ---- Destinations ---- */

int ax_db_destination_get(ax_txn_t *txn, const char *server_name, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_destination_state, server_name, strlen(server_name), out);
}

int ax_db_destination_put(ax_txn_t *txn, const char *server_name, const json_t *rec)
{
    if (strlen(server_name) > 255)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_destination_state, server_name, strlen(server_name), rec);
}

int ax_db_destinations_foreach(ax_txn_t *txn, int (*cb)(void *arg, const char *server_name, json_t *rec), void *arg)
{
    key_scan_t s = {0, cb, arg};
    return ax_kv_scan(txn, AX_DBI_destination_state, NULL, 0, NULL, 0, server_key_scan_cb, &s);
}
