/*
 * sessions.c -- access tokens, stored only as SHA-256 hashes
 * (accesstoken_session in schema.h).  A token is 256 random bits, so its
 * hash is as unguessable as the token and a database leak reveals no
 * usable token.
 */
#include "storage/storage_internal.h"

#include <stdlib.h>
#include <string.h>

int ax_db_session_get(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], ax_session_t *out)
{
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_accesstoken_session, hash, AX_TOKEN_HASH_BYTES, &v, &vlen);
    if (rc != 0)
        return rc;
    const char *p = v, *end = p + vlen;
    if (vlen < 8 + 2 || end[-1] != '\0')
        return AX_EIO;
    out->expires_ms = ax_be64_get(v);
    out->user_id = p + 8;
    const char *nul = memchr(out->user_id, '\0', (size_t)(end - out->user_id));
    if (nul == NULL || nul + 1 >= end)
        return AX_EIO;
    out->device_id = nul + 1;
    return 0;
}

int ax_db_session_put(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES], const char *user_id,
                      const char *device_id, uint64_t expires_ms)
{
    size_t ul = strlen(user_id) + 1, dl = strlen(device_id) + 1;
    uint8_t stack[512];
    uint8_t *v = 8 + ul + dl <= sizeof(stack) ? stack : ax_malloc(8 + ul + dl);
    ax_be64_put(v, expires_ms);
    memcpy(v + 8, user_id, ul);
    memcpy(v + 8 + ul, device_id, dl);
    int rc = ax_kv_put(txn, AX_DBI_accesstoken_session, hash, AX_TOKEN_HASH_BYTES, v, 8 + ul + dl, 0);
    if (v != stack)
        free(v);
    return rc;
}

int ax_db_session_del(ax_txn_t *txn, const uint8_t hash[AX_TOKEN_HASH_BYTES])
{
    return ax_kv_del(txn, AX_DBI_accesstoken_session, hash, AX_TOKEN_HASH_BYTES, NULL, 0);
}
