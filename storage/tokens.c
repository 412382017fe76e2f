/*
 * tokens.c -- refresh tokens, single-use login tokens (m.login.token),
 * User-Interactive Auth sessions and registration tokens.
 */
#include "storage/storage_internal.h"

#include <string.h>

int ax_db_refresh_get(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_refreshtoken_session, hash, AX_TOKEN_HASH_BYTES, out);
}

int ax_db_refresh_del(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES])
{
    return ax_kv_del(txn, AX_DBI_refreshtoken_session, hash, AX_TOKEN_HASH_BYTES, NULL, 0);
}

int ax_db_logintoken_put(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], const char *user_id,
                         uint64_t expires_ms)
{
    size_t ul = strlen(user_id);
    uint8_t v[8 + 512];
    if (ul > 512)
        return AX_ETOOBIG;
    ax_be64_put(v, expires_ms);
    memcpy(v + 8, user_id, ul);
    return ax_kv_put(txn, AX_DBI_logintoken_user, hash, AX_TOKEN_HASH_BYTES, v, 8 + ul, 0);
}

int ax_db_logintoken_take(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], char *user_id, size_t cap,
                          uint64_t *expires_ms)
{
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_logintoken_user, hash, AX_TOKEN_HASH_BYTES, &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen < 8 || vlen - 8 >= cap)
        return AX_EIO;
    *expires_ms = ax_be64_get(v);
    memcpy(user_id, (const char *)v + 8, vlen - 8);
    user_id[vlen - 8] = '\0';
    return ax_kv_del(txn, AX_DBI_logintoken_user, hash, AX_TOKEN_HASH_BYTES, NULL, 0);
}

int ax_db_uia_get(ax_txn_t *txn, const char *session, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_uiasession_session, session, strlen(session), out);
}

int ax_db_uia_put(ax_txn_t *txn, const char *session, const json_t *value)
{
    return ax_kv_put_json(txn, AX_DBI_uiasession_session, session, strlen(session), value);
}

int ax_db_uia_del(ax_txn_t *txn, const char *session)
{
    return ax_kv_del(txn, AX_DBI_uiasession_session, session, strlen(session), NULL, 0);
}

typedef struct st_expire_t {
    uint64_t cutoff;
    char (*ids)[64];
    size_t n, cap;
} expire_t;

static int expire_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    expire_t *e = arg;
    json_t *j = json_loadb(val, vlen, 0, NULL);
    json_int_t created = json_integer_value(json_object_get(j, "created_ts"));
    json_decref(j);
    if ((uint64_t)created < e->cutoff && klen < 64) {
        if (e->n == e->cap)
            e->ids = ax_realloc(e->ids, (e->cap = e->cap ? e->cap * 2 : 16) * sizeof(*e->ids));
        memcpy(e->ids[e->n], key, klen);
        e->ids[e->n][klen] = '\0';
        e->n++;
    }
    return 0;
}

int ax_db_uia_expire(ax_txn_t *txn, uint64_t cutoff_ms, size_t *n)
{
    expire_t e = {cutoff_ms, NULL, 0, 0};
    int rc = ax_kv_scan(txn, AX_DBI_uiasession_session, NULL, 0, NULL, 0, expire_cb, &e);
    for (size_t i = 0; rc == 0 && i < e.n; ++i)
        rc = ax_db_uia_del(txn, e.ids[i]);
    if (n != NULL)
        *n = e.n;
    free(e.ids);
    return rc;
}

int ax_db_regtoken_get(ax_txn_t *txn, const char *token, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_regtoken_token, token, strlen(token), out);
}

int ax_db_regtoken_put(ax_txn_t *txn, const char *token, const json_t *value)
{
    return ax_kv_put_json(txn, AX_DBI_regtoken_token, token, strlen(token), value);
}

int ax_db_regtoken_del(ax_txn_t *txn, const char *token)
{
    return ax_kv_del(txn, AX_DBI_regtoken_token, token, strlen(token), NULL, 0);
}

typedef struct st_regtoken_scan_t {
    int (*cb)(void *arg, const char *token, json_t *value);
    void *arg;
} regtoken_scan_t;

static int regtoken_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    regtoken_scan_t *s = arg;
    char tok[128];
    if (klen >= sizeof(tok))
        return 0;
    memcpy(tok, key, klen);
    tok[klen] = '\0';
    json_t *j = json_loadb(val, vlen, 0, NULL);
    if (j == NULL)
        return 0;
    int rc = s->cb(s->arg, tok, j);
    json_decref(j);
    return rc;
}

int ax_db_regtoken_foreach(ax_txn_t *txn, int (*cb)(void *arg, const char *token, json_t *value), void *arg)
{
    regtoken_scan_t s = {cb, arg};
    return ax_kv_scan(txn, AX_DBI_regtoken_token, NULL, 0, NULL, 0, regtoken_cb, &s);
}

static int any_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)arg, (void)key, (void)klen, (void)val, (void)vlen;
    return 1;
}

bool ax_db_regtoken_any(ax_txn_t *txn)
{
    return ax_kv_scan(txn, AX_DBI_regtoken_token, NULL, 0, NULL, 0, any_cb, NULL) == 1;
}
