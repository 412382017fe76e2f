/*
 * push.c -- what push notifications store (layouts in schema.h): unread
 * counts per user, room and thread; the notifications list of GET
 * /notifications, staged and moved in batches; pushers with their (app_id, pushkey) index; and the
 * durable push queue the background sender drains.
 *
 * Every change to pushers or push rules bumps the "push_gen" meta value,
 * which tells the writer-side caches of core/push.c to reload.
 */
#include "storage/storage_internal.h"
#include "common/strmap.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- generation of push rules and pushers ---- */

uint64_t ax_db_push_gen(ax_txn_t *txn)
{
    uint64_t gen = 0;
    ax_db_meta_get_u64(txn, "push_gen", &gen);
    return gen;
}

int ax_db_push_gen_bump(ax_txn_t *txn)
{
    return ax_db_meta_put_u64(txn, "push_gen", ax_db_push_gen(txn) + 1);
}

/* ---- unread counts ---- */

#define UNREAD_BYTES 24

static ax_key_t unread_key(const char *user_id, const char *room_id, const char *thread)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, room_id, true);
    ax_key_str(&k, thread != NULL ? thread : "", false);
    return k;
}

static void unread_decode(const uint8_t *v, ax_unread_t *u)
{
    u->read_pos = ax_be64_get(v);
    u->last_pos = ax_be64_get(v + 8);
    u->notifications = (uint32_t)(ax_be64_get(v + 16) >> 32);
    u->highlights = (uint32_t)ax_be64_get(v + 16);
}

int ax_db_unread_get(ax_txn_t *txn, const char *user_id, const char *room_id, const char *thread, ax_unread_t *out)
{
    ax_key_t k = unread_key(user_id, room_id, thread);
    const void *v;
    size_t vlen;
    if (k.overflow)
        return AX_ENOTFOUND;
    int rc = ax_kv_get(txn, AX_DBI_userroomthread_unread, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen != UNREAD_BYTES)
        return AX_EIO;
    unread_decode(v, out);
    return 0;
}

int ax_db_unread_put(ax_txn_t *txn, const char *user_id, const char *room_id, const char *thread, const ax_unread_t *u)
{
    ax_key_t k = unread_key(user_id, room_id, thread);
    if (k.overflow)
        return AX_ETOOBIG;
    uint8_t v[UNREAD_BYTES];
    ax_be64_put(v, u->read_pos);
    ax_be64_put(v + 8, u->last_pos);
    ax_be64_put(v + 16, ((uint64_t)u->notifications << 32) | u->highlights);
    return ax_kv_put(txn, AX_DBI_userroomthread_unread, k.b, k.n, v, sizeof(v), 0);
}

typedef struct st_unread_scan_t {
    size_t skip; /* bytes of the user prefix */
    int (*cb)(void *arg, const char *room_id, const char *thread, const ax_unread_t *u);
    void *arg;
} unread_scan_t;

static int unread_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    unread_scan_t *s = arg;
    if (vlen != UNREAD_BYTES || klen <= s->skip)
        return 0;
    const char *rest = (const char *)key + s->skip;
    size_t rlen = klen - s->skip;
    const char *sep = memchr(rest, 0, rlen);
    char room[256], thread[256];
    if (sep == NULL || (size_t)(sep - rest) >= sizeof(room) || rlen - (size_t)(sep - rest) - 1 >= sizeof(thread))
        return 0;
    memcpy(room, rest, (size_t)(sep - rest));
    room[sep - rest] = '\0';
    size_t tlen = rlen - (size_t)(sep - rest) - 1;
    memcpy(thread, sep + 1, tlen);
    thread[tlen] = '\0';
    ax_unread_t u;
    unread_decode(val, &u);
    return s->cb(s->arg, room, thread, &u);
}

int ax_db_unread_foreach(ax_txn_t *txn, const char *user_id, const char *room_id,
                         int (*cb)(void *arg, const char *room_id, const char *thread, const ax_unread_t *u), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, user_id, true);
    unread_scan_t s = {p.n, cb, arg};
    if (room_id != NULL)
        ax_key_str(&p, room_id, true);
    if (p.overflow)
        return 0;
    return ax_kv_scan(txn, AX_DBI_userroomthread_unread, p.b, p.n, NULL, 0, unread_cb, &s);
}

/* ---- notifications ----
 *
 * A message notifies the members of its room all at once.  Written straight
 * into each member's list (userpos_notif, key user then position) it put an
 * entry on a leaf page of every member's own, a hundred scattered pages per
 * commit in a hundred-member room.  They are staged instead (posuser_notif,
 * key position then user: a message's entries side by side, appended at the
 * end) and a writer task moves the oldest into the lists in batches
 * (ax_db_notif_attach).  Readers take both: for any one user, every staged
 * entry is newer than every listed one, because the oldest move first.
 *
 * The stage is split in AX_NOTIF_BUCKETS by a hash of the user, and a move
 * takes one bucket, in turn: every entry of an eighth of the users.  A move
 * of the whole stage held the writer 8-9 ms (4,096 entries into a hundred
 * lists, then the commit), and each message that came meanwhile waited for
 * it; a bucket at a time is a fraction of that, and each user's list still
 * gets dozens of entries per move.
 */

#define NOTIF_STAGE_DUE 4096  /* staged entries (all buckets) before a move runs while busy */
#define NOTIF_MOVE_MAX  16384 /* entries one move takes */
#define NOTIF_IDLE_MS   200   /* nothing queued this long: move what is staged */
#define NOTIF_RETRY_MS  10000

static void notif_value(ax_key_t *v, const ax_notif_t *n)
{
    uint8_t head[9];
    head[0] = n->highlight ? 1 : 0;
    ax_be64_put(head + 1, n->ts);
    ax_key_bytes(v, head, sizeof(head));
    ax_key_str(v, n->room_id, true);
    ax_key_str(v, n->thread, true);
    ax_key_str(v, n->actions, false);
}

unsigned ax_db_notif_bucket(const char *user_id)
{
    return (unsigned)(ax_str_hash(user_id) % AX_NOTIF_BUCKETS);
}

int ax_db_notif_put(ax_txn_t *txn, const char *user_id, uint64_t pos, const ax_notif_t *n)
{
    ax_key_t k = {0}, v = {0};
    uint8_t bucket = (uint8_t)ax_db_notif_bucket(user_id);
    ax_key_bytes(&k, &bucket, 1);
    ax_key_u64(&k, pos);
    ax_key_str(&k, user_id, false);
    notif_value(&v, n);
    if (k.overflow || v.overflow)
        return AX_ETOOBIG;
    int rc = ax_kv_put(txn, AX_DBI_posuser_notif, k.b, k.n, v.b, v.n, 0);
    if (rc == 0)
        atomic_fetch_add(&txn->db->notif_staged, 1); /* a hint for the mover: a rolled-back one is harmless */
    return rc;
}

typedef struct st_notif_scan_t {
    const char *user_id; /* staged entries: only this user's */
    size_t skip;         /* listed entries: the key's user prefix */
    int (*cb)(void *arg, uint64_t pos, const ax_notif_t *n);
    void *arg;
} notif_scan_t;

static int notif_decode(notif_scan_t *s, uint64_t pos, const void *val, size_t vlen)
{
    if (vlen < 9)
        return 0;
    const uint8_t *v = val;
    const char *rest = (const char *)v + 9, *end = (const char *)v + vlen;
    const char *a = memchr(rest, 0, (size_t)(end - rest));
    const char *b = a ? memchr(a + 1, 0, (size_t)(end - a - 1)) : NULL;
    char room[256], thread[256], actions[4096];
    if (b == NULL || (size_t)(a - rest) >= sizeof(room) || (size_t)(b - a - 1) >= sizeof(thread) ||
        (size_t)(end - b - 1) >= sizeof(actions))
        return 0;
    memcpy(room, rest, (size_t)(a - rest));
    room[a - rest] = '\0';
    memcpy(thread, a + 1, (size_t)(b - a - 1));
    thread[b - a - 1] = '\0';
    memcpy(actions, b + 1, (size_t)(end - b - 1));
    actions[end - b - 1] = '\0';
    ax_notif_t n = {
        .highlight = v[0] & 1, .ts = ax_be64_get(v + 1), .room_id = room, .thread = thread, .actions = actions};
    return s->cb(s->arg, pos, &n);
}

static int listed_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    notif_scan_t *s = arg;
    if (klen != s->skip + 8)
        return 0;
    return notif_decode(s, ax_be64_get((const uint8_t *)key + s->skip), val, vlen);
}

static int staged_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    notif_scan_t *s = arg;
    if (klen != 9 + strlen(s->user_id) || memcmp((const uint8_t *)key + 9, s->user_id, klen - 9) != 0)
        return 0;
    return notif_decode(s, ax_be64_get((const uint8_t *)key + 1), val, vlen);
}

/* The user's entries in their list (not the staged ones), from 'from' on. */
static int listed_scan(ax_txn_t *txn, notif_scan_t *s, uint64_t from, bool backwards)
{
    ax_key_t p = {0};
    ax_key_str(&p, s->user_id, true);
    ax_key_t f = p;
    ax_key_u64(&f, from);
    if (f.overflow)
        return 0;
    s->skip = p.n;
    if (backwards)
        return ax_kv_scan_rev(txn, AX_DBI_userpos_notif, p.b, p.n, f.b, f.n, listed_cb, s);
    return ax_kv_scan(txn, AX_DBI_userpos_notif, p.b, p.n, f.b, f.n, listed_cb, s);
}

/* The user's staged entries: their bucket's only. */
static int staged_scan(ax_txn_t *txn, notif_scan_t *s, uint64_t from, bool backwards)
{
    uint8_t bucket = (uint8_t)ax_db_notif_bucket(s->user_id);
    ax_key_t f = {0};
    ax_key_bytes(&f, &bucket, 1);
    ax_key_u64(&f, from);
    if (!backwards)
        return ax_kv_scan(txn, AX_DBI_posuser_notif, &bucket, 1, f.b, f.n, staged_cb, s);
    if (from == UINT64_MAX)
        return ax_kv_scan_rev(txn, AX_DBI_posuser_notif, &bucket, 1, NULL, 0, staged_cb, s);
    ax_key_bytes(&f, "\xff", 1); /* after every user ID at 'from' */
    return ax_kv_scan_rev(txn, AX_DBI_posuser_notif, &bucket, 1, f.b, f.n, staged_cb, s);
}

int ax_db_notif_scan(ax_txn_t *txn, const char *user_id, uint64_t from, bool backwards,
                     int (*cb)(void *arg, uint64_t pos, const ax_notif_t *n), void *arg)
{
    notif_scan_t s = {user_id, 0, cb, arg};
    int rc = backwards ? staged_scan(txn, &s, from, true) : listed_scan(txn, &s, from, false);
    if (rc == 0)
        rc = backwards ? listed_scan(txn, &s, from, true) : staged_scan(txn, &s, from, false);
    return rc;
}

/* ---- moving staged notifications into the lists (the writer's task) ---- */

typedef struct st_staged_t {
    ax_buf_t rows; /* key length (size_t) | key | value length (size_t) | value, repeated */
    size_t n, max;
} staged_t;

static int collect_staged(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    staged_t *st = arg;
    if (st->n == st->max)
        return 1;
    ax_buf_append(&st->rows, &klen, sizeof(klen));
    ax_buf_append(&st->rows, key, klen);
    ax_buf_append(&st->rows, &vlen, sizeof(vlen));
    ax_buf_append(&st->rows, val, vlen);
    st->n++;
    return 0;
}

struct st_ax_notif_mover_t {
    ax_db_t *db;
    unsigned bucket;   /* the next to move */
    size_t moving;     /* what the running step moves */
    bool drained;      /* and whether the stage is empty after it */
    uint64_t retry_ms; /* after a failed step (a full disk, say): not before this */
};
typedef struct st_ax_notif_mover_t mover_t;

/* Moves the 'st' rows of keys (prefix bytes, be64 pos, user ID) into the lists and out of the stage. */
static int move_rows(ax_txn_t *txn, const staged_t *st, size_t prefix)
{
    int rc = 0;
    const char *p = st->rows.base;
    for (size_t i = 0; i < st->n && rc == 0; ++i) {
        size_t klen, vlen;
        memcpy(&klen, p, sizeof(klen));
        const uint8_t *key = (const uint8_t *)p + sizeof(klen);
        memcpy(&vlen, key + klen, sizeof(vlen));
        const uint8_t *val = key + klen + sizeof(vlen);
        p = (const char *)val + vlen;
        if (klen < prefix + 8)
            continue;
        ax_key_t k = {0};
        ax_key_bytes(&k, key + prefix + 8, klen - prefix - 8); /* user ID */
        ax_key_bytes(&k, "", 1);
        ax_key_bytes(&k, key + prefix, 8); /* position */
        if (!k.overflow && (rc = ax_kv_put(txn, AX_DBI_userpos_notif, k.b, k.n, val, vlen, 0)) != 0)
            break;
        rc = ax_kv_del(txn, AX_DBI_posuser_notif, key, klen, NULL, 0);
    }
    return rc;
}

static int any_row(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)key, (void)klen, (void)val, (void)vlen;
    *(bool *)arg = true;
    return 1;
}

int ax_db_notif_move(ax_txn_t *txn, unsigned bucket, size_t max, size_t *moved, bool *drained)
{
    uint8_t b = (uint8_t)(bucket % AX_NOTIF_BUCKETS);
    staged_t st = {AX_BUF_INIT, 0, max};
    int rc = ax_kv_scan(txn, AX_DBI_posuser_notif, &b, 1, NULL, 0, collect_staged, &st);
    rc = rc > 0 ? 0 : rc;
    if (rc == 0)
        rc = move_rows(txn, &st, 1);
    bool any = false;
    if (rc == 0 && (rc = ax_kv_scan(txn, AX_DBI_posuser_notif, NULL, 0, NULL, 0, any_row, &any)) > 0)
        rc = 0;
    *moved = st.n;
    *drained = !any;
    ax_buf_dispose(&st.rows);
    return rc;
}

int ax_db_notif_move_unbucketed(ax_txn_t *txn)
{
    staged_t st = {AX_BUF_INIT, 0, SIZE_MAX};
    int rc = ax_kv_scan(txn, AX_DBI_posuser_notif, NULL, 0, NULL, 0, collect_staged, &st);
    rc = rc > 0 ? 0 : rc;
    if (rc == 0)
        rc = move_rows(txn, &st, 0);
    ax_buf_dispose(&st.rows);
    return rc;
}

static int move_step(void *arg, ax_txn_t *txn)
{
    mover_t *m = arg;
    return ax_db_notif_move(txn, m->bucket, NOTIF_MOVE_MAX, &m->moving, &m->drained);
}

static bool move_due(void *arg, uint64_t stream_pos, bool idle)
{
    (void)stream_pos;
    mover_t *m = arg;
    if (m->retry_ms != 0 && ax_now_ms() < m->retry_ms)
        return false;
    uint64_t staged = atomic_load(&m->db->notif_staged);
    return staged >= NOTIF_STAGE_DUE || (idle && staged != 0);
}

static void move_done(void *arg, bool committed)
{
    mover_t *m = arg;
    if (!committed) {
        if (m->retry_ms == 0)
            ax_log(AX_LOG_WARN, "notifications: moving staged ones failed; trying again in %d s",
                   NOTIF_RETRY_MS / 1000);
        m->retry_ms = ax_now_ms() + NOTIF_RETRY_MS;
        return;
    }
    m->retry_ms = 0;
    m->bucket = (m->bucket + 1) % AX_NOTIF_BUCKETS;
    /* only the writer thread changes the count */
    uint64_t staged = atomic_load(&m->db->notif_staged);
    atomic_store(&m->db->notif_staged, m->drained || staged < m->moving ? 0 : staged - m->moving);
}

uint64_t ax_db_notif_staged(ax_db_t *db)
{
    return atomic_load(&db->notif_staged);
}

void ax_db_notif_attach(ax_db_t *db, ax_writer_t *w)
{
    mover_t *m = ax_calloc(1, sizeof(*m));
    m->db = db;
    ax_txn_t *txn;
    MDB_stat st;
    if (ax_db_read_begin(db, &txn) == 0) {
        if (mdb_stat(txn->txn, db->dbi[AX_DBI_posuser_notif], &st) == 0)
            atomic_store(&db->notif_staged, st.ms_entries); /* left staged by the last run */
        ax_db_read_end(txn);
    }
    db->notif_mover = m;
    ax_writer_task_t task = {.due = move_due, .step = move_step, .done = move_done, .arg = m, .idle_ms = NOTIF_IDLE_MS};
    ax_writer_add_task(w, &task);
}

typedef struct st_prune_t {
    uint64_t plain_before, highlight_before;
    size_t max, seen;
    uint64_t *positions;
    size_t n;
    uint64_t next_ts;
    bool full;
} prune_t;

static int prune_cb(void *arg, uint64_t pos, const ax_notif_t *n)
{
    prune_t *p = arg;
    if (p->seen++ == p->max) {
        p->full = true;
        return 1;
    }
    if (n->ts < (n->highlight ? p->highlight_before : p->plain_before)) {
        p->positions[p->n++] = pos;
        return 0;
    }
    if (n->highlight)
        return 0; /* a recent enough highlight: older plain ones may lie behind it */
    p->next_ts = n->ts;
    return 1; /* the oldest plain notification to keep: everything after it is newer */
}

int ax_db_notif_prune(ax_txn_t *txn, const char *user_id, uint64_t plain_before, uint64_t highlight_before, size_t max,
                      uint64_t *next_ts)
{
    prune_t p = {plain_before, highlight_before, max, 0, ax_malloc((max ? max : 1) * sizeof(uint64_t)), 0, 0, false};
    notif_scan_t s = {user_id, 0, prune_cb, &p};
    int rc = listed_scan(txn, &s, 0, false); /* staged ones are the newest: never old enough */
    if (rc > 0)
        rc = 0; /* the scan stopped early, as it should */
    for (size_t i = 0; rc == 0 && i < p.n; ++i) {
        ax_key_t k = {0};
        ax_key_str(&k, user_id, true);
        ax_key_u64(&k, p.positions[i]);
        rc = ax_kv_del(txn, AX_DBI_userpos_notif, k.b, k.n, NULL, 0);
    }
    free(p.positions);
    if (next_ts != NULL)
        *next_ts = p.full ? (p.n != 0 ? 1 : 0) : p.next_ts; /* 1: it deleted a full batch, call again */
    return rc;
}

/* ---- pushers ---- */

static ax_key_t pusher_key(const char *user_id, const char *app_id, const char *pushkey)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, app_id, true);
    ax_key_str(&k, pushkey, false);
    return k;
}

static ax_key_t pushkey_index(const char *app_id, const char *pushkey, const char *user_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, app_id, true);
    ax_key_str(&k, pushkey, true);
    ax_key_str(&k, user_id, false);
    return k;
}

int ax_db_pusher_get(ax_txn_t *txn, const char *user_id, const char *app_id, const char *pushkey, json_t **out)
{
    ax_key_t k = pusher_key(user_id, app_id, pushkey);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_userapppushkey_pusher, k.b, k.n, out);
}

int ax_db_pusher_put(ax_txn_t *txn, const char *user_id, const char *app_id, const char *pushkey, const json_t *pusher)
{
    ax_key_t k = pusher_key(user_id, app_id, pushkey);
    ax_key_t i = pushkey_index(app_id, pushkey, user_id);
    if (k.overflow || i.overflow)
        return AX_ETOOBIG;
    int rc = ax_kv_put_json(txn, AX_DBI_userapppushkey_pusher, k.b, k.n, pusher);
    if (rc == 0)
        rc = ax_kv_put(txn, AX_DBI_apppushkey_user, i.b, i.n, "", 0, 0);
    return rc != 0 ? rc : ax_db_push_gen_bump(txn);
}

int ax_db_pusher_del(ax_txn_t *txn, const char *user_id, const char *app_id, const char *pushkey)
{
    ax_key_t k = pusher_key(user_id, app_id, pushkey);
    ax_key_t i = pushkey_index(app_id, pushkey, user_id);
    if (k.overflow || i.overflow)
        return AX_ENOTFOUND;
    int rc = ax_kv_del(txn, AX_DBI_userapppushkey_pusher, k.b, k.n, NULL, 0);
    if (rc != 0)
        return rc;
    rc = ax_kv_del(txn, AX_DBI_apppushkey_user, i.b, i.n, NULL, 0);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    return ax_db_push_gen_bump(txn);
}

typedef struct st_pusher_scan_t {
    size_t skip;
    int (*cb)(void *arg, const char *app_id, const char *pushkey, json_t *pusher);
    void *arg;
} pusher_scan_t;

static int pusher_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    pusher_scan_t *s = arg;
    const char *rest = (const char *)key + s->skip;
    size_t rlen = klen - s->skip;
    const char *sep = memchr(rest, 0, rlen);
    char app[256], pushkey[1024];
    if (sep == NULL || (size_t)(sep - rest) >= sizeof(app) || rlen - (size_t)(sep - rest) - 1 >= sizeof(pushkey))
        return 0;
    memcpy(app, rest, (size_t)(sep - rest));
    app[sep - rest] = '\0';
    size_t plen = rlen - (size_t)(sep - rest) - 1;
    memcpy(pushkey, sep + 1, plen);
    pushkey[plen] = '\0';
    json_t *pusher = json_loadb(val, vlen, 0, NULL);
    if (pusher == NULL)
        return 0;
    int rc = s->cb(s->arg, app, pushkey, pusher);
    json_decref(pusher);
    return rc;
}

int ax_db_pusher_foreach(ax_txn_t *txn, const char *user_id,
                         int (*cb)(void *arg, const char *app_id, const char *pushkey, json_t *pusher), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, user_id, true);
    if (p.overflow)
        return 0;
    pusher_scan_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_userapppushkey_pusher, p.b, p.n, NULL, 0, pusher_cb, &s);
}

typedef struct st_pushkey_scan_t {
    size_t skip;
    int (*cb)(void *arg, const char *user_id);
    void *arg;
} pushkey_scan_t;

static int pushkey_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    pushkey_scan_t *s = arg;
    char user[256];
    size_t n = klen - s->skip;
    if (n >= sizeof(user))
        return 0;
    memcpy(user, (const char *)key + s->skip, n);
    user[n] = '\0';
    return s->cb(s->arg, user);
}

int ax_db_pusher_users(ax_txn_t *txn, const char *app_id, const char *pushkey,
                       int (*cb)(void *arg, const char *user_id), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, app_id, true);
    ax_key_str(&p, pushkey, true);
    if (p.overflow)
        return 0;
    pushkey_scan_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_apppushkey_user, p.b, p.n, NULL, 0, pushkey_cb, &s);
}

typedef struct st_device_pushers_t {
    const char *device_id;
    char (*ids)[2][1024];
    size_t n;
} device_pushers_t;

static int device_pusher_cb(void *arg, const char *app_id, const char *pushkey, json_t *pusher)
{
    device_pushers_t *d = arg;
    if (!ax_streq(json_string_value(json_object_get(pusher, "device_id")), d->device_id))
        return 0;
    d->ids = ax_realloc(d->ids, (d->n + 1) * sizeof(*d->ids));
    snprintf(d->ids[d->n][0], sizeof(d->ids[0][0]), "%s", app_id);
    snprintf(d->ids[d->n][1], sizeof(d->ids[0][1]), "%s", pushkey);
    d->n++;
    return 0;
}

int ax_db_pushers_del_device(ax_txn_t *txn, const char *user_id, const char *device_id)
{
    device_pushers_t d = {device_id, NULL, 0};
    int rc = ax_db_pusher_foreach(txn, user_id, device_pusher_cb, &d);
    for (size_t i = 0; rc == 0 && i < d.n; ++i)
        rc = ax_db_pusher_del(txn, user_id, d.ids[i][0], d.ids[i][1]);
    free(d.ids);
    return rc;
}

/* ---- the push queue ---- */

static ax_key_t pushq_key(uint64_t pos, const char *user_id, const char *app_id, const char *pushkey)
{
    ax_key_t k = {0};
    ax_key_u64(&k, pos);
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, app_id, true);
    ax_key_str(&k, pushkey, false);
    return k;
}

int ax_db_pushq_put(ax_txn_t *txn, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey,
                    const json_t *entry)
{
    ax_key_t k = pushq_key(pos, user_id, app_id, pushkey);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put_json(txn, AX_DBI_pospusher_push, k.b, k.n, entry);
}

int ax_db_pushq_get(ax_txn_t *txn, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey,
                    json_t **out)
{
    ax_key_t k = pushq_key(pos, user_id, app_id, pushkey);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_pospusher_push, k.b, k.n, out);
}

int ax_db_pushq_del(ax_txn_t *txn, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey)
{
    ax_key_t k = pushq_key(pos, user_id, app_id, pushkey);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_del(txn, AX_DBI_pospusher_push, k.b, k.n, NULL, 0);
}

typedef struct st_pushq_scan_t {
    int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey, json_t *entry);
    void *arg;
} pushq_scan_t;

static int pushq_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    pushq_scan_t *s = arg;
    if (klen < 8)
        return 0;
    const char *rest = (const char *)key + 8, *end = (const char *)key + klen;
    const char *a = memchr(rest, 0, (size_t)(end - rest));
    const char *b = a ? memchr(a + 1, 0, (size_t)(end - a - 1)) : NULL;
    char user[256], app[256], pushkey[1024];
    if (b == NULL || (size_t)(a - rest) >= sizeof(user) || (size_t)(b - a - 1) >= sizeof(app) ||
        (size_t)(end - b - 1) >= sizeof(pushkey))
        return 0;
    memcpy(user, rest, (size_t)(a - rest));
    user[a - rest] = '\0';
    memcpy(app, a + 1, (size_t)(b - a - 1));
    app[b - a - 1] = '\0';
    memcpy(pushkey, b + 1, (size_t)(end - b - 1));
    pushkey[end - b - 1] = '\0';
    json_t *entry = json_loadb(val, vlen, 0, NULL);
    if (entry == NULL)
        entry = json_object();
    int rc = s->cb(s->arg, ax_be64_get(key), user, app, pushkey, entry);
    json_decref(entry);
    return rc;
}

int ax_db_pushq_scan(ax_txn_t *txn, uint64_t from,
                     int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *app_id, const char *pushkey,
                               json_t *entry),
                     void *arg)
{
    uint8_t f[8];
    ax_be64_put(f, from);
    pushq_scan_t s = {cb, arg};
    return ax_kv_scan(txn, AX_DBI_pospusher_push, NULL, 0, f, sizeof(f), pushq_cb, &s);
}
