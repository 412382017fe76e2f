/*
 * meta.c -- small named values in the 'meta' database (schema version,
 * stream position).  Exports ax_db_meta_get_u64() and ax_db_meta_put_u64().
 */
#include "storage/storage_internal.h"

#include <string.h>

int ax_db_meta_get_u64(ax_txn_t *txn, const char *name, uint64_t *out)
{
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_meta, name, strlen(name), &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen != 8)
        return AX_EIO;
    *out = ax_be64_get(v);
    return 0;
}

int ax_db_meta_put_u64(ax_txn_t *txn, const char *name, uint64_t value)
{
    uint8_t v[8];
    ax_be64_put(v, value);
    return ax_kv_put(txn, AX_DBI_meta, name, strlen(name), v, sizeof(v), 0);
}
