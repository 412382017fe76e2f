/*
 * db.c -- the LMDB environment: opening every database of schema.h, the
 * schema version and its migrations, cached read transactions, health and
 * statistics, and the key/value helpers of storage_internal.h.
 */
#include "storage/storage_internal.h"
#include "common/json.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_READERS 1024

static atomic_uint_fast64_t next_db_id = 1;

/* Each thread keeps one reset read transaction for the database it last read
 * (MDB_NOTLS lets a transaction move between uses).  'db_id' guards against a
 * database closed and another opened at the same address. */
typedef struct st_rtxn_cache_t {
    uint64_t db_id;
    ax_txn_t *txn;
} rtxn_cache_t;

static _Thread_local rtxn_cache_t rtxn_cache;

/* ---- Error mapping and kv helpers ---- */

int ax_db_err(ax_db_t *db, int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return AX_ENOTFOUND;
    case MDB_KEYEXIST:
        return AX_EEXIST;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL: {
        MDB_envinfo info;
        mdb_env_info(db->env, &info);
        ax_log(AX_LOG_ERROR, "database is full (%s); raise map_size above %zu bytes and restart", mdb_strerror(rc),
               info.me_mapsize);
        return AX_EMAPFULL;
    }
    case MDB_BAD_VALSIZE:
        return AX_ETOOBIG;
    default:
        ax_log(AX_LOG_ERROR, "database error: %s", mdb_strerror(rc));
        return AX_EIO;
    }
}

int ax_kv_get(ax_txn_t *txn, int dbi, const void *key, size_t klen, const void **val, size_t *vlen)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(txn->txn, txn->db->dbi[dbi], &k, &v);
    if (rc != 0)
        return rc == MDB_NOTFOUND ? AX_ENOTFOUND : ax_db_err(txn->db, rc);
    *val = v.mv_data;
    *vlen = v.mv_size;
    return 0;
}

int ax_kv_put(ax_txn_t *txn, int dbi, const void *key, size_t klen, const void *val, size_t vlen, unsigned flags)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    txn->dirty = true;
    int rc = mdb_put(txn->txn, txn->db->dbi[dbi], &k, &v, flags);
    return rc == MDB_KEYEXIST ? AX_EEXIST : ax_db_err(txn->db, rc);
}

int ax_kv_del(ax_txn_t *txn, int dbi, const void *key, size_t klen, const void *val, size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    txn->dirty = true;
    int rc = mdb_del(txn->txn, txn->db->dbi[dbi], &k, val != NULL ? &v : NULL);
    return rc == MDB_NOTFOUND ? AX_ENOTFOUND : ax_db_err(txn->db, rc);
}

/* ---- Schema version and migrations ---- */

/* ---- 1 -> 2: the per-room membership change index (roomid_pos_member) ---- */

typedef struct st_member_rows_t {
    ax_buf_t rows; /* room_id 0x00 user_id 0x00 membership 0x00 be64 pos, repeated */
} member_rows_t;

static int collect_membership(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    member_rows_t *m = arg;
    /* key = room_id 0x00 user_id 0x00 be64 pos */
    const char *k = key;
    const char *sep = klen > 8 ? memchr(k, 0, klen - 8) : NULL;
    if (sep == NULL || klen < 10 || k[klen - 9] != '\0' || memchr(val, 0, vlen) != NULL)
        return 0;
    ax_buf_append(&m->rows, k, klen - 8);
    ax_buf_append(&m->rows, val, vlen);
    ax_buf_append(&m->rows, "", 1);
    ax_buf_append(&m->rows, k + klen - 8, 8);
    return 0;
}

static int migrate_member_changes(ax_txn_t *txn)
{
    /* collect first: scans must not write */
    member_rows_t m = {AX_BUF_INIT};
    int rc = ax_kv_scan(txn, AX_DBI_roomuser_pos_membership, NULL, 0, NULL, 0, collect_membership, &m);
    size_t off = 0;
    while (rc == 0 && off < m.rows.len) {
        const char *room = m.rows.base + off, *user = room + strlen(room) + 1, *membership = user + strlen(user) + 1;
        const uint8_t *pos = (const uint8_t *)membership + strlen(membership) + 1;
        rc = ax_db_member_change_put(txn, room, user, membership, ax_be64_get(pos));
        off = (size_t)((const char *)pos + 8 - m.rows.base);
    }
    ax_buf_dispose(&m.rows);
    return rc;
}

/* ---- 2 -> 3: thread summaries (threadroot_summary, threadroot_user) from the relation index ---- */

static int collect_thread_reply(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    ax_buf_t *rows = arg;
    /* key = parent 0x00 rel_type 0x00 be64 pos; value = child */
    const char *k = key;
    const char *sep = memchr(k, 0, klen);
    static const char want[] = "m.thread";
    if (sep == NULL || (size_t)(k + klen - sep) != 1 + sizeof(want) + 8 || memcmp(sep + 1, want, sizeof(want)) != 0)
        return 0;
    ax_buf_append(rows, k, (size_t)(sep - k) + 1);
    ax_buf_append(rows, val, vlen);
    ax_buf_append(rows, "", 1);
    return 0;
}

static int migrate_thread_summaries(ax_txn_t *txn)
{
    ax_buf_t rows = AX_BUF_INIT; /* root 0x00 child 0x00, in reply order per root */
    int rc = ax_kv_scan(txn, AX_DBI_relation_child, NULL, 0, NULL, 0, collect_thread_reply, &rows);
    size_t off = 0;
    while (rc == 0 && off < rows.len) {
        const char *root = rows.base + off, *child = root + strlen(root) + 1;
        off = (size_t)(child + strlen(child) + 1 - rows.base);
        json_t *ev = NULL;
        if (ax_db_event_get(txn, child, &ev, NULL) != 0)
            continue;
        const char *sender = json_string_value(json_object_get(ev, "sender"));
        if (sender != NULL)
            rc = ax_db_thread_note(txn, root, child, sender);
        json_decref(ev);
    }
    ax_buf_dispose(&rows);
    return rc;
}

/* ---- 3 -> 4: the full-text index in grouped records, behind the timeline (meta "search_pos") ---- */

static int migrate_search_index(ax_txn_t *txn)
{
    /* its records held one event each: the server's indexer rebuilds it from the timeline (search
     * reads what it has not reached yet from the timeline meanwhile) */
    int rc = ax_db_search_clear(txn);
    return rc != 0 ? rc : ax_db_meta_put_u64(txn, "search_pos", 0);
}

/* 4 -> 5: notifications are staged in posuser_notif (new and empty): nothing to convert, but an older
 * axon must not open a database whose newest notifications it cannot see */

/* 5 -> 6: the stage's keys start with a bucket: what schema 5 left staged moves into the lists now */

/* 6 -> 7: new event records carry their state group (older ones keep it in eventid_stategroup, which
 * is still read for them): nothing to convert, but an older axon would not find the new ones' groups */

/* migrations[i] upgrades a database at version i+1 to i+2. */
static int (*const migrations[])(ax_txn_t *txn) = {
    migrate_member_changes, migrate_thread_summaries, migrate_search_index, NULL, ax_db_notif_move_unbucketed, NULL};

typedef struct st_schema_arg_t {
    char *err;
    size_t errlen;
} schema_arg_t;

static int bring_schema_up_to_date(ax_txn_t *txn, void *arg_)
{
    schema_arg_t *arg = arg_;
    uint64_t version;
    int rc = ax_db_meta_get_u64(txn, "schema_version", &version);
    if (rc == AX_ENOTFOUND)
        return ax_db_meta_put_u64(txn, "schema_version", AX_SCHEMA_VERSION);
    if (rc != 0)
        return rc;
    if (version > AX_SCHEMA_VERSION) {
        snprintf(arg->err, arg->errlen,
                 "database schema version %llu is newer than this axon understands (%d): run a newer axon",
                 (unsigned long long)version, AX_SCHEMA_VERSION);
        return AX_EINVAL;
    }
    for (; version < AX_SCHEMA_VERSION; ++version) {
        int (*m)(ax_txn_t *) = migrations[version - 1];
        ax_log(AX_LOG_INFO, "migrating database schema from version %llu to %llu", (unsigned long long)version,
               (unsigned long long)version + 1);
        if (m != NULL && (rc = m(txn)) != 0) {
            snprintf(arg->err, arg->errlen, "database migration to schema version %llu failed: %s",
                     (unsigned long long)version + 1, ax_strerror(rc));
            return rc;
        }
        if ((rc = ax_db_meta_put_u64(txn, "schema_version", version + 1)) != 0)
            return rc;
    }
    return 0;
}

int ax_db_write_direct(ax_db_t *db, int (*fn)(ax_txn_t *txn, void *arg), void *arg)
{
    ax_txn_t t = {.db = db, .write = true};
    int rc = mdb_txn_begin(db->env, NULL, 0, &t.txn);
    if (rc != 0)
        return ax_db_err(db, rc);
    uint64_t pos = 0;
    t.pos = &pos;
    if ((rc = fn(&t, arg)) != 0) {
        mdb_txn_abort(t.txn);
        return rc;
    }
    return ax_db_err(db, mdb_txn_commit(t.txn));
}

/* ---- Open / close ---- */

int ax_db_open(const ax_db_options_t *opts, ax_db_t **out, char *err, size_t errlen)
{
    ax_db_t *db = ax_calloc(1, sizeof(*db));
    db->path = ax_strdup(opts->path);
    db->id = atomic_fetch_add(&next_db_id, 1);
    db->read_only = opts->read_only;
    pthread_mutex_init(&db->rtxn_mutex, NULL);
    MDB_txn *txn = NULL;
    int rc;

    if ((rc = mdb_env_create(&db->env)) != 0 || (rc = mdb_env_set_maxdbs(db->env, AX_DBI_COUNT + 4)) != 0 ||
        (rc = mdb_env_set_maxreaders(db->env, MAX_READERS)) != 0 ||
        (rc = mdb_env_set_mapsize(db->env, (size_t)opts->map_size)) != 0) {
        snprintf(err, errlen, "database %s: %s", opts->path, mdb_strerror(rc));
        goto fail;
    }
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
    if (!opts->sync)
        flags |= MDB_NOSYNC;
    if (opts->read_only)
        flags |= MDB_RDONLY;
    if ((rc = mdb_env_open(db->env, opts->path, flags, 0600)) != 0) {
        snprintf(err, errlen, "database %s: %s", opts->path, mdb_strerror(rc));
        goto fail;
    }

    if ((rc = mdb_txn_begin(db->env, NULL, opts->read_only ? MDB_RDONLY : 0, &txn)) != 0) {
        snprintf(err, errlen, "database %s: %s", opts->path, mdb_strerror(rc));
        goto fail;
    }
    static const struct {
        const char *name;
        unsigned flags;
    } dbs[] = {
#define X(name, flags) {#name, flags},
        AX_SCHEMA_DBS(X)
#undef X
    };
    for (size_t i = 0; i < AX_DBI_COUNT; ++i) {
        if ((rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | (opts->read_only ? 0 : MDB_CREATE), &db->dbi[i])) !=
            0) {
            snprintf(err, errlen, "database %s: cannot open table %s: %s", opts->path, dbs[i].name, mdb_strerror(rc));
            goto fail;
        }
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        txn = NULL;
        snprintf(err, errlen, "database %s: %s", opts->path, mdb_strerror(rc));
        goto fail;
    }
    txn = NULL;

    if (!opts->read_only) {
        schema_arg_t arg = {err, errlen};
        err[0] = '\0';
        if ((rc = ax_db_write_direct(db, bring_schema_up_to_date, &arg)) != 0) {
            if (err[0] == '\0')
                snprintf(err, errlen, "database %s: %s", opts->path, ax_strerror(rc));
            goto fail;
        }
    }
    *out = db;
    return 0;

fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (db->env != NULL)
        mdb_env_close(db->env);
    pthread_mutex_destroy(&db->rtxn_mutex);
    free(db->path);
    free(db);
    *out = NULL;
    return rc == MDB_MAP_FULL ? AX_EMAPFULL : (rc == AX_EINVAL ? AX_EINVAL : AX_EIO);
}

void ax_db_close(ax_db_t *db)
{
    if (db == NULL)
        return;
    /* the threads that cached these are done with them (see the header) */
    for (ax_rtxn_node_t *n = db->rtxns, *next; n != NULL; n = next) {
        next = n->next;
        mdb_txn_abort(n->txn->txn);
        free(n->txn);
        free(n);
    }
    pthread_mutex_destroy(&db->rtxn_mutex);
    if (rtxn_cache.db_id == db->id)
        rtxn_cache.db_id = 0, rtxn_cache.txn = NULL;
    mdb_env_close(db->env);
    free(db->notif_mover);
    free(db->path);
    free(db);
}

const char *ax_db_path(const ax_db_t *db)
{
    return db->path;
}

/* ---- Read transactions ---- */

int ax_db_read_begin(ax_db_t *db, ax_txn_t **out)
{
    ax_txn_t *t = rtxn_cache.db_id == db->id ? rtxn_cache.txn : NULL;
    int rc;
    if (t != NULL && !t->in_use) {
        if ((rc = mdb_txn_renew(t->txn)) != 0)
            return ax_db_err(db, rc);
        t->in_use = true;
        *out = t;
        return 0;
    }
    t = ax_calloc(1, sizeof(*t));
    t->db = db;
    if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &t->txn)) != 0) {
        free(t);
        return ax_db_err(db, rc);
    }
    t->in_use = true;
    if (rtxn_cache.db_id != db->id) {
        /* becomes this thread's cached txn; registered so close can free it */
        ax_rtxn_node_t *n = ax_malloc(sizeof(*n));
        n->txn = t;
        pthread_mutex_lock(&db->rtxn_mutex);
        n->next = db->rtxns;
        db->rtxns = n;
        pthread_mutex_unlock(&db->rtxn_mutex);
        rtxn_cache.db_id = db->id;
        rtxn_cache.txn = t;
    }
    *out = t;
    return 0;
}

void ax_db_read_end(ax_txn_t *t)
{
    if (t == NULL)
        return;
    if (rtxn_cache.db_id == t->db->id && rtxn_cache.txn == t) {
        mdb_txn_reset(t->txn);
        t->in_use = false;
    } else {
        mdb_txn_abort(t->txn);
        free(t);
    }
}

int ax_db_ping(ax_db_t *db)
{
    ax_txn_t *t;
    if (ax_db_read_begin(db, &t) != 0)
        return AX_EIO;
    uint64_t v;
    int rc = ax_db_meta_get_u64(t, "schema_version", &v);
    ax_db_read_end(t);
    return rc == 0 ? 0 : AX_EIO;
}

int ax_db_stats(ax_db_t *db, ax_db_stats_t *out)
{
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(db->env, &info) != 0 || mdb_env_stat(db->env, &st) != 0)
        return AX_EIO;
    out->map_size = info.me_mapsize;
    out->used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    out->last_txn_id = info.me_last_txnid;
    out->readers_used = info.me_numreaders;
    out->readers_max = info.me_maxreaders;
    return 0;
}

int ax_db_copy(ax_db_t *db, const char *dir, char *err, size_t errlen)
{
    int rc = mdb_env_copy2(db->env, dir, MDB_CP_COMPACT);
    if (rc != 0) {
        snprintf(err, errlen, "copying the database to %s: %s", dir, mdb_strerror(rc));
        return AX_EIO;
    }
    return 0;
}

/* ---- JSON values and range scans ---- */

int ax_kv_get_json(ax_txn_t *txn, int dbi, const void *key, size_t klen, json_t **out)
{
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, dbi, key, klen, &v, &vlen);
    if (rc != 0)
        return rc;
    json_t *j = json_loadb(v, vlen, 0, NULL);
    if (j == NULL) {
        ax_log(AX_LOG_ERROR, "database: a stored record is not JSON (table %d)", dbi);
        return AX_EIO;
    }
    *out = j;
    return 0;
}

int ax_kv_put_json(ax_txn_t *txn, int dbi, const void *key, size_t klen, const json_t *val)
{
    ax_buf_t b = AX_BUF_INIT;
    if (ax_json_encode(val, &b) != 0) {
        ax_buf_dispose(&b);
        return AX_EINVAL;
    }
    int rc = ax_kv_put(txn, dbi, key, klen, b.base, b.len, 0);
    ax_buf_dispose(&b);
    return rc;
}

int ax_kv_scan(ax_txn_t *txn, int dbi, const void *prefix, size_t plen, const void *from, size_t flen,
               int (*cb)(void *arg, const void *key, size_t klen, const void *val, size_t vlen), void *arg)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn->txn, txn->db->dbi[dbi], &cur);
    if (rc != 0)
        return ax_db_err(txn->db, rc);
    MDB_val k, v;
    if (from != NULL) {
        k.mv_data = (void *)from, k.mv_size = flen;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else if (plen != 0) {
        k.mv_data = (void *)prefix, k.mv_size = plen;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    int out = 0;
    while (rc == 0) {
        if (plen != 0 && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if ((out = cb(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (out != 0)
        return out;
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : ax_db_err(txn->db, rc);
}

int ax_kv_del_prefix(ax_txn_t *txn, int dbi, const void *prefix, size_t plen, size_t *n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn->txn, txn->db->dbi[dbi], &cur);
    if (rc != 0)
        return ax_db_err(txn->db, rc);
    MDB_val k = {plen, (void *)prefix}, v;
    size_t count = 0;
    txn->dirty = true;
    rc = mdb_cursor_get(cur, &k, &v, plen != 0 ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && (plen == 0 || (k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0))) {
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        ++count;
        /* re-seek rather than rely on where a delete leaves the cursor */
        k.mv_data = (void *)prefix, k.mv_size = plen;
        rc = mdb_cursor_get(cur, &k, &v, plen != 0 ? MDB_SET_RANGE : MDB_FIRST);
    }
    mdb_cursor_close(cur);
    if (n != NULL)
        *n = count;
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : ax_db_err(txn->db, rc);
}

int ax_kv_scan_rev(ax_txn_t *txn, int dbi, const void *prefix, size_t plen, const void *upto, size_t ulen,
                   int (*cb)(void *arg, const void *key, size_t klen, const void *val, size_t vlen), void *arg)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn->txn, txn->db->dbi[dbi], &cur);
    if (rc != 0)
        return ax_db_err(txn->db, rc);
    MDB_val k, v;
    uint8_t after[1024];
    if (upto != NULL) {
        /* the first key >= upto; step back unless it is upto itself */
        k.mv_data = (void *)upto, k.mv_size = ulen;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && !(k.mv_size == ulen && memcmp(k.mv_data, upto, ulen) == 0))
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        else if (rc == MDB_NOTFOUND)
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    } else if (plen != 0 && plen <= sizeof(after)) {
        /* the first key after every key with the prefix, then one back */
        memcpy(after, prefix, plen);
        size_t n = plen;
        while (n > 0 && after[n - 1] == 0xff)
            --n;
        if (n == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        } else {
            after[n - 1]++;
            k.mv_data = after, k.mv_size = n;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            rc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV) : mdb_cursor_get(cur, &k, &v, MDB_LAST);
        }
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }
    int out = 0;
    while (rc == 0) {
        if (plen != 0 && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if ((out = cb(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    mdb_cursor_close(cur);
    if (out != 0)
        return out;
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : ax_db_err(txn->db, rc);
}
