/*
 * storage_internal.h -- shared by the files of storage/ only: the handle
 * structs and the thin key/value helpers every storage/<area>.c uses.  The
 * helpers translate LMDB codes into AX_E* codes and mark write transactions
 * dirty, which the writer needs to know whether a failed job wrote.
 */
#ifndef AX_STORAGE_INTERNAL_H
#define AX_STORAGE_INTERNAL_H

#include "storage/schema.h"
#include "storage/storage.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

enum {
#define X(name, flags) AX_DBI_##name,
    AX_SCHEMA_DBS(X)
#undef X
        AX_DBI_COUNT
};

#define AX_DB_DUPSORT MDB_DUPSORT

/* A thread's cached read transaction, listed so ax_db_close can free it. */
typedef struct st_ax_rtxn_node_t {
    struct st_ax_txn_t *txn;
    struct st_ax_rtxn_node_t *next;
} ax_rtxn_node_t;

struct st_ax_db_t {
    MDB_env *env;
    MDB_dbi dbi[AX_DBI_COUNT];
    char *path;
    uint64_t id; /* process-unique, so thread caches can tell databases apart */
    bool read_only;
    pthread_mutex_t rtxn_mutex;
    ax_rtxn_node_t *rtxns;
    _Atomic uint64_t notif_staged;           /* about how many notifications are staged (push.c) */
    struct st_ax_notif_mover_t *notif_mover; /* ax_db_notif_attach; freed with the db */
};

struct st_ax_txn_t {
    MDB_txn *txn;
    ax_db_t *db;
    bool write;
    bool dirty;                    /* a put or delete happened since the writer last cleared it */
    bool in_use;                   /* cached read txn currently handed out */
    uint64_t *pos;                 /* write txns: the writer's next stream position */
    struct st_ax_strmap_t *notify; /* write txns: keys with news in this batch */
    uint64_t epoch;                /* write txns: how many write txns the writer aborted before this one */
    void *state;                   /* write txns: the writer's attached state (ax_writer_set_state) */
    struct st_ax_strmap_t *events; /* write txns: the writer's parsed events (ax_db_event_get_shared) */
};

/** Maps an LMDB return code to an AX_E* code (logging MDB_MAP_FULL once, where it happens). */
int ax_db_err(ax_db_t *db, int mdb_rc);

/** Gets 'key' from database 'dbi'.  The value is borrowed until the txn ends or writes. */
int ax_kv_get(ax_txn_t *txn, int dbi, const void *key, size_t klen, const void **val, size_t *vlen);
/** Puts 'key' -> 'val'.  'flags' are LMDB put flags (0, MDB_NOOVERWRITE, ...).  AX_EEXIST on NOOVERWRITE hit. */
int ax_kv_put(ax_txn_t *txn, int dbi, const void *key, size_t klen, const void *val, size_t vlen, unsigned flags);
/** Deletes 'key' (all its values, or only 'val' when given for DUPSORT).  AX_ENOTFOUND if absent. */
int ax_kv_del(ax_txn_t *txn, int dbi, const void *key, size_t klen, const void *val, size_t vlen);

static inline void ax_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; --i, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint64_t ax_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = (v << 8) | p[i];
    return v;
}

/** Gets a JSON value (a new reference in '*out').  AX_EIO if the stored bytes are not JSON. */
int ax_kv_get_json(ax_txn_t *txn, int dbi, const void *key, size_t klen, json_t **out);
/** Puts a JSON value, compact. */
int ax_kv_put_json(ax_txn_t *txn, int dbi, const void *key, size_t klen, const json_t *val);
/**
 * Calls 'cb' for every record whose key starts with 'prefix' (plen bytes;
 * plen 0 = all), in key order, starting at 'from' if not NULL (must share
 * the prefix).  Stops when 'cb' returns nonzero and returns that value.  The
 * key and value are borrowed for the call only; 'cb' must not write.
 */
int ax_kv_scan(ax_txn_t *txn, int dbi, const void *prefix, size_t plen, const void *from, size_t flen,
               int (*cb)(void *arg, const void *key, size_t klen, const void *val, size_t vlen), void *arg);
/**
 * Like ax_kv_scan but in descending key order: visits keys with 'prefix'
 * that are <= 'upto' (all of them when 'upto' is NULL).
 */
int ax_kv_scan_rev(ax_txn_t *txn, int dbi, const void *prefix, size_t plen, const void *upto, size_t ulen,
                   int (*cb)(void *arg, const void *key, size_t klen, const void *val, size_t vlen), void *arg);

/** Deletes every record whose key starts with 'prefix'; counts them in '*n' when not NULL. */
int ax_kv_del_prefix(ax_txn_t *txn, int dbi, const void *prefix, size_t plen, size_t *n);

/* ---- composite keys: parts joined by 0x00, integers big-endian ---- */

typedef struct st_ax_key_t {
    uint8_t b[1024];
    size_t n;
    bool overflow; /* a part did not fit: the key must not be used */
} ax_key_t;

static inline void ax_key_bytes(ax_key_t *k, const void *p, size_t n)
{
    if (k->n + n > sizeof(k->b)) {
        k->overflow = true;
        return;
    }
    memcpy(k->b + k->n, p, n);
    k->n += n;
}

/** Appends 's' and, when 'sep', the 0x00 separator. */
static inline void ax_key_str(ax_key_t *k, const char *s, bool sep)
{
    ax_key_bytes(k, s, strlen(s));
    if (sep)
        ax_key_bytes(k, "", 1);
}

static inline void ax_key_u64(ax_key_t *k, uint64_t v)
{
    uint8_t be[8];
    ax_be64_put(be, v);
    ax_key_bytes(k, be, 8);
}

/** Runs 'fn' in one write transaction outside the writer (open-time migrations only). */
int ax_db_write_direct(ax_db_t *db, int (*fn)(ax_txn_t *txn, void *arg), void *arg);

#endif
