/*
 * fedqueue.c -- the outbound federation queue (DESIGN.md "Data safety": a
 * durable per-destination queue; docs/architecture.md "Outbound
 * federation").  Layouts are in schema.h (destseq_outbound,
 * destination_queue, userid_devicestream).
 *
 * Items are pushed inside the write transaction of the change they carry
 * (a local event, a receipt, a device change, a to-device message), so
 * whatever a client was told is stored is also queued, or neither.  Each
 * push names its destination to the writer ("%fed:" + destination) and the
 * commit hook wakes the sender with it.  Items leave the queue only when
 * the sender records that the destination acknowledged them
 * (ax_db_fedq_ack), or when catch-up replaces a room's backlog with its
 * latest events (ax_db_fedq_replace).
 *
 * Also here: which servers share a room (or any room with a user), since
 * that is what decides where things go, and the m.device_list_update /
 * m.signing_key_update EDUs, built from the stored devices and keys.
 */
#include "storage/storage_internal.h"
#include "common/json.h"
#include "common/strmap.h"

#include <stdlib.h>
#include <string.h>

#define STATE_FIXED 24 /* be64 acked | be64 last | be64 depth */

/* ---- destination records ---- */

static int state_read(ax_txn_t *txn, const char *dest, ax_fedq_state_t *st)
{
    memset(st, 0, sizeof(*st));
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_destination_queue, dest, strlen(dest), &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen < STATE_FIXED) {
        ax_log(AX_LOG_ERROR, "database: destination_queue record of %s is malformed", dest);
        return AX_EIO;
    }
    const uint8_t *p = v;
    st->acked = ax_be64_get(p);
    st->last = ax_be64_get(p + 8);
    st->depth = ax_be64_get(p + 16);
    if (vlen > STATE_FIXED) {
        json_t *pending = json_loadb((const char *)p + STATE_FIXED, vlen - STATE_FIXED, 0, NULL);
        const char *id = json_string_value(json_object_get(pending, "txn_id"));
        json_int_t upto = json_integer_value(json_object_get(pending, "upto"));
        if (id != NULL && strlen(id) < sizeof(st->txn_id) && upto > 0) {
            snprintf(st->txn_id, sizeof(st->txn_id), "%s", id);
            st->pending_upto = (uint64_t)upto;
        }
        json_decref(pending);
    }
    return 0;
}

static int state_write(ax_txn_t *txn, const char *dest, const ax_fedq_state_t *st)
{
    size_t dlen = strlen(dest);
    if (dlen == 0 || dlen > 255)
        return AX_ETOOBIG;
    uint8_t buf[STATE_FIXED + 160];
    ax_be64_put(buf, st->acked);
    ax_be64_put(buf + 8, st->last);
    ax_be64_put(buf + 16, st->depth);
    size_t n = STATE_FIXED;
    if (st->txn_id[0] != '\0') {
        int w = snprintf((char *)buf + n, sizeof(buf) - n, "{\"txn_id\":\"%s\",\"upto\":%llu}", st->txn_id,
                         (unsigned long long)st->pending_upto);
        if (w < 0 || (size_t)w >= sizeof(buf) - n)
            return AX_ETOOBIG;
        n += (size_t)w;
    }
    return ax_kv_put(txn, AX_DBI_destination_queue, dest, dlen, buf, n, 0);
}

int ax_db_fedq_state(ax_txn_t *txn, const char *destination, ax_fedq_state_t *out)
{
    return state_read(txn, destination, out);
}

/* ---- pushing ---- */

static ax_key_t item_key(const char *dest, uint64_t seq)
{
    ax_key_t k = {0};
    ax_key_str(&k, dest, true);
    ax_key_u64(&k, seq);
    return k;
}

/* Appends one item (value 'v', 'vlen' bytes, kind byte included) at the end of the destination's queue. */
static int push(ax_txn_t *txn, const char *dest, const void *v, size_t vlen)
{
    if (dest[0] == '\0' || strlen(dest) > 255 || strchr(dest, '%') != NULL)
        return AX_EINVAL;
    ax_fedq_state_t st;
    int rc = state_read(txn, dest, &st);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    st.last = (st.last > st.acked ? st.last : st.acked) + 1;
    st.depth++;
    ax_key_t k = item_key(dest, st.last);
    if (k.overflow)
        return AX_ETOOBIG;
    if ((rc = ax_kv_put(txn, AX_DBI_destseq_outbound, k.b, k.n, v, vlen, 0)) != 0 ||
        (rc = state_write(txn, dest, &st)) != 0)
        return rc;
    char note[300];
    snprintf(note, sizeof(note), "%s%s", AX_FEDQ_NOTIFY, dest);
    ax_txn_notify(txn, note);
    return 0;
}

int ax_db_fedq_push_pdu(ax_txn_t *txn, const char *destination, const char *room_id, const char *event_id)
{
    ax_buf_t v = AX_BUF_INIT;
    ax_buf_putc(&v, AX_FEDQ_PDU);
    ax_buf_append(&v, room_id, strlen(room_id) + 1);
    ax_buf_append(&v, event_id, strlen(event_id));
    int rc = push(txn, destination, v.base, v.len);
    ax_buf_dispose(&v);
    return rc;
}

int ax_db_fedq_push_edu(ax_txn_t *txn, const char *destination, const char *edu_type, const json_t *content)
{
    json_t *edu = json_pack("{s:s, s:O}", "edu_type", edu_type, "content", content);
    if (edu == NULL)
        return AX_EINVAL;
    ax_buf_t v = AX_BUF_INIT;
    ax_buf_putc(&v, AX_FEDQ_EDU);
    int rc = ax_json_encode(edu, &v) == 0 ? push(txn, destination, v.base, v.len) : AX_EINVAL;
    json_decref(edu);
    ax_buf_dispose(&v);
    return rc;
}

/* ---- reading ---- */

typedef struct st_scan_t {
    size_t plen;
    int (*cb)(void *arg, const ax_fedq_item_t *item);
    void *arg;
} scan_t;

/* Decodes one queue record; false when it is malformed (skipped, never fatal). */
static bool decode_item(const void *key, size_t klen, size_t plen, const void *val, size_t vlen, ax_fedq_item_t *it,
                        char *room, size_t rcap, char *event, size_t ecap)
{
    if (klen != plen + 8 || vlen < 2)
        return false;
    memset(it, 0, sizeof(*it));
    it->seq = ax_be64_get((const uint8_t *)key + plen);
    const char *v = val;
    it->kind = (ax_fedq_kind_t)v[0];
    if (it->kind == AX_FEDQ_EDU) {
        it->edu = v + 1;
        it->edu_len = vlen - 1;
        return true;
    }
    if (it->kind != AX_FEDQ_PDU)
        return false;
    const char *sep = memchr(v + 1, 0, vlen - 1);
    if (sep == NULL)
        return false;
    size_t rlen = (size_t)(sep - (v + 1)), elen = vlen - 1 - rlen - 1;
    if (rlen == 0 || rlen >= rcap || elen == 0 || elen >= ecap)
        return false;
    memcpy(room, v + 1, rlen);
    room[rlen] = '\0';
    memcpy(event, sep + 1, elen);
    event[elen] = '\0';
    it->room_id = room;
    it->event_id = event;
    return true;
}

static int scan_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    scan_t *s = arg;
    ax_fedq_item_t it;
    char room[256], event[256];
    if (!decode_item(key, klen, s->plen, val, vlen, &it, room, sizeof(room), event, sizeof(event)))
        return 0;
    return s->cb(s->arg, &it);
}

int ax_db_fedq_scan(ax_txn_t *txn, const char *destination, uint64_t after,
                    int (*cb)(void *arg, const ax_fedq_item_t *item), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, destination, true);
    ax_key_t from = item_key(destination, after == UINT64_MAX ? after : after + 1);
    if (p.overflow || from.overflow || after == UINT64_MAX)
        return 0;
    scan_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_destseq_outbound, p.b, p.n, from.b, from.n, scan_cb, &s);
}

typedef struct st_dest_scan_t {
    int (*cb)(void *arg, const char *destination, const ax_fedq_state_t *state);
    void *arg;
} dest_scan_t;

static int dest_scan_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    dest_scan_t *s = arg;
    char dest[256];
    if (klen == 0 || klen >= sizeof(dest) || vlen < STATE_FIXED)
        return 0;
    memcpy(dest, key, klen);
    dest[klen] = '\0';
    ax_fedq_state_t st;
    memset(&st, 0, sizeof(st));
    const uint8_t *p = val;
    st.acked = ax_be64_get(p);
    st.last = ax_be64_get(p + 8);
    st.depth = ax_be64_get(p + 16);
    if (vlen > STATE_FIXED) {
        json_t *pending = json_loadb((const char *)p + STATE_FIXED, vlen - STATE_FIXED, 0, NULL);
        const char *id = json_string_value(json_object_get(pending, "txn_id"));
        json_int_t upto = json_integer_value(json_object_get(pending, "upto"));
        if (id != NULL && strlen(id) < sizeof(st.txn_id) && upto > 0) {
            snprintf(st.txn_id, sizeof(st.txn_id), "%s", id);
            st.pending_upto = (uint64_t)upto;
        }
        json_decref(pending);
    }
    return s->cb(s->arg, dest, &st);
}

int ax_db_fedq_destinations_foreach(ax_txn_t *txn,
                                    int (*cb)(void *arg, const char *destination, const ax_fedq_state_t *state),
                                    void *arg)
{
    dest_scan_t s = {cb, arg};
    return ax_kv_scan(txn, AX_DBI_destination_queue, NULL, 0, NULL, 0, dest_scan_cb, &s);
}

/* ---- the sender's bookkeeping ---- */

int ax_db_fedq_set_pending(ax_txn_t *txn, const char *destination, const char *txn_id, uint64_t upto)
{
    ax_fedq_state_t st;
    int rc = state_read(txn, destination, &st);
    if (rc != 0)
        return rc;
    if (txn_id == NULL || upto <= st.acked) {
        if (st.txn_id[0] == '\0')
            return 0;
        st.txn_id[0] = '\0';
        st.pending_upto = 0;
    } else {
        if (strlen(txn_id) >= sizeof(st.txn_id) || strpbrk(txn_id, "\"\\") != NULL)
            return AX_EINVAL;
        snprintf(st.txn_id, sizeof(st.txn_id), "%s", txn_id);
        st.pending_upto = upto;
    }
    return state_write(txn, destination, &st);
}

typedef struct st_seq_list_t {
    size_t plen;
    uint64_t upto;
    uint64_t *seqs;
    size_t n, cap;
} seq_list_t;

static int collect_upto(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    seq_list_t *l = arg;
    if (klen != l->plen + 8)
        return 0;
    uint64_t seq = ax_be64_get((const uint8_t *)key + l->plen);
    if (seq > l->upto)
        return 1;
    if (l->n == l->cap)
        l->seqs = ax_realloc(l->seqs, (l->cap = l->cap ? l->cap * 2 : 64) * sizeof(uint64_t));
    l->seqs[l->n++] = seq;
    return 0;
}

/* Deletes the items at 'seqs' (n of them); counts the ones that existed in '*deleted'. */
static int delete_seqs(ax_txn_t *txn, const char *dest, const uint64_t *seqs, size_t n, uint64_t *deleted)
{
    *deleted = 0;
    for (size_t i = 0; i < n; ++i) {
        ax_key_t k = item_key(dest, seqs[i]);
        int rc = ax_kv_del(txn, AX_DBI_destseq_outbound, k.b, k.n, NULL, 0);
        if (rc == AX_ENOTFOUND)
            continue;
        if (rc != 0)
            return rc;
        ++*deleted;
    }
    return 0;
}

int ax_db_fedq_ack(ax_txn_t *txn, const char *destination, uint64_t upto, size_t *n)
{
    if (n != NULL)
        *n = 0;
    ax_fedq_state_t st;
    int rc = state_read(txn, destination, &st);
    if (rc != 0)
        return rc;
    if (upto > st.last)
        upto = st.last;
    ax_key_t p = {0};
    ax_key_str(&p, destination, true);
    seq_list_t l = {p.n, upto, NULL, 0, 0};
    uint64_t deleted = 0;
    if (upto > st.acked)
        rc = ax_kv_scan(txn, AX_DBI_destseq_outbound, p.b, p.n, NULL, 0, collect_upto, &l);
    if (rc >= 0)
        rc = delete_seqs(txn, destination, l.seqs, l.n, &deleted);
    free(l.seqs);
    if (rc != 0)
        return rc;
    st.depth = st.depth > deleted ? st.depth - deleted : 0;
    if (upto > st.acked)
        st.acked = upto;
    if (st.pending_upto <= st.acked) {
        st.txn_id[0] = '\0';
        st.pending_upto = 0;
    }
    if (n != NULL)
        *n = (size_t)deleted;
    return state_write(txn, destination, &st);
}

int ax_db_fedq_replace(ax_txn_t *txn, const char *destination, const uint64_t *del, size_t ndel,
                       const ax_fedq_item_t *put, size_t nput)
{
    ax_fedq_state_t st;
    int rc = state_read(txn, destination, &st);
    if (rc != 0)
        return rc;
    uint64_t deleted;
    if ((rc = delete_seqs(txn, destination, del, ndel, &deleted)) != 0)
        return rc;
    st.depth = st.depth > deleted ? st.depth - deleted : 0;
    for (size_t i = 0; i < nput; ++i) {
        const ax_fedq_item_t *it = &put[i];
        /* only into a free slot after what was acknowledged: never behind the sender's back */
        if (it->kind != AX_FEDQ_PDU || it->seq <= st.acked || it->seq > st.last || it->room_id == NULL ||
            it->event_id == NULL)
            return AX_EINVAL;
        ax_key_t k = item_key(destination, it->seq);
        ax_buf_t v = AX_BUF_INIT;
        ax_buf_putc(&v, AX_FEDQ_PDU);
        ax_buf_append(&v, it->room_id, strlen(it->room_id) + 1);
        ax_buf_append(&v, it->event_id, strlen(it->event_id));
        rc =
            k.overflow ? AX_ETOOBIG : ax_kv_put(txn, AX_DBI_destseq_outbound, k.b, k.n, v.base, v.len, MDB_NOOVERWRITE);
        ax_buf_dispose(&v);
        if (rc != 0)
            return rc;
        st.depth++;
    }
    return state_write(txn, destination, &st);
}

/* ---- who shares a room ---- */

typedef struct st_servers_t {
    ax_strmap_t seen;
    const char *skip;
} servers_t;

static int collect_server(void *arg, const char *user_id, const char *membership)
{
    servers_t *s = arg;
    if (strcmp(membership, "join") != 0)
        return 0;
    const char *colon = strchr(user_id, ':');
    if (colon == NULL || colon[1] == '\0' || ax_streq(colon + 1, s->skip))
        return 0;
    if (ax_strmap_get(&s->seen, colon + 1) == NULL)
        ax_strmap_put(&s->seen, colon + 1, (void *)1);
    return 0;
}

typedef struct st_server_list_t {
    char **names;
    size_t n;
} server_list_t;

static void list_server(void *arg, const char *key, void *value)
{
    (void)value;
    server_list_t *l = arg;
    l->names[l->n++] = ax_strdup(key);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Calls 'cb' for each collected server, in name order (deterministic for tests and logs). */
static int emit_servers(servers_t *s, int (*cb)(void *arg, const char *server), void *arg)
{
    server_list_t l = {ax_malloc((s->seen.size + 1) * sizeof(char *)), 0};
    ax_strmap_foreach(&s->seen, list_server, &l);
    qsort(l.names, l.n, sizeof(char *), cmp_str);
    int rc = 0;
    for (size_t i = 0; i < l.n; ++i) {
        if (rc == 0)
            rc = cb(arg, l.names[i]);
        free(l.names[i]);
    }
    free(l.names);
    ax_strmap_dispose(&s->seen);
    return rc;
}

int ax_db_room_servers_foreach(ax_txn_t *txn, const char *room_id, const char *skip,
                               int (*cb)(void *arg, const char *server), void *arg)
{
    servers_t s = {AX_STRMAP_INIT, skip};
    int rc = ax_db_room_members_foreach(txn, room_id, collect_server, &s);
    if (rc < 0) {
        ax_strmap_dispose(&s.seen);
        return rc;
    }
    return emit_servers(&s, cb, arg);
}

typedef struct st_peer_rooms_t {
    ax_txn_t *txn;
    servers_t *s;
    int rc;
} peer_rooms_t;

static int peer_room_cb(void *arg, const char *room_id, json_t *m)
{
    peer_rooms_t *p = arg;
    if (!ax_streq(json_string_value(json_object_get(m, "membership")), "join"))
        return 0;
    int rc = ax_db_room_members_foreach(p->txn, room_id, collect_server, p->s);
    if (rc < 0) {
        p->rc = rc;
        return 1;
    }
    return 0;
}

int ax_db_user_peers_foreach(ax_txn_t *txn, const char *user_id, int (*cb)(void *arg, const char *server), void *arg)
{
    const char *colon = strchr(user_id, ':');
    servers_t s = {AX_STRMAP_INIT, colon != NULL ? colon + 1 : ""};
    peer_rooms_t p = {txn, &s, 0};
    int rc = ax_db_user_rooms_foreach(txn, user_id, peer_room_cb, &p);
    if (rc < 0 || p.rc < 0) {
        ax_strmap_dispose(&s.seen);
        return rc < 0 ? rc : p.rc;
    }
    return emit_servers(&s, cb, arg);
}

/* ---- EDUs to everyone concerned ---- */

typedef struct st_edu_push_t {
    ax_txn_t *txn;
    const char *edu_type;
    const json_t *content;
} edu_push_t;

static int push_edu_cb(void *arg, const char *server)
{
    edu_push_t *e = arg;
    return ax_db_fedq_push_edu(e->txn, server, e->edu_type, e->content);
}

int ax_db_fedq_push_edu_room(ax_txn_t *txn, const char *room_id, const char *skip, const char *edu_type,
                             const json_t *content)
{
    edu_push_t e = {txn, edu_type, content};
    return ax_db_room_servers_foreach(txn, room_id, skip, push_edu_cb, &e);
}

int ax_db_fedq_push_edu_peers(ax_txn_t *txn, const char *user_id, const char *edu_type, const json_t *content)
{
    edu_push_t e = {txn, edu_type, content};
    return ax_db_user_peers_foreach(txn, user_id, push_edu_cb, &e);
}

/* Is there anyone to tell?  Saves building EDUs for users who share no room with another server. */
static int any_cb(void *arg, const char *server)
{
    (void)server;
    *(bool *)arg = true;
    return 1;
}

int ax_db_fedq_device_update(ax_txn_t *txn, const char *user_id, const char *device_id)
{
    bool any = false;
    int rc = ax_db_user_peers_foreach(txn, user_id, any_cb, &any);
    if (rc < 0)
        return rc;
    if (!any)
        return 0;
    /* stream_id: a stream position, so it also orders against /user/devices' stream_id; prev_id: the
     * user's previous update (spec: "Device Management") */
    uint64_t stream_id = ax_txn_next_stream_pos(txn), prev = 0;
    const void *v;
    size_t vlen;
    rc = ax_kv_get(txn, AX_DBI_userid_devicestream, user_id, strlen(user_id), &v, &vlen);
    if (rc == 0 && vlen == 8)
        prev = ax_be64_get(v);
    else if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    uint8_t be[8];
    ax_be64_put(be, stream_id);
    if ((rc = ax_kv_put(txn, AX_DBI_userid_devicestream, user_id, strlen(user_id), be, 8, 0)) != 0)
        return rc;
    json_t *content = json_pack("{s:s, s:s, s:I, s:[]}", "user_id", user_id, "device_id", device_id, "stream_id",
                                (json_int_t)stream_id, "prev_id");
    if (prev != 0)
        json_array_append_new(json_object_get(content, "prev_id"), json_integer((json_int_t)prev));
    json_t *dev = NULL, *keys = NULL;
    if (ax_db_device_get(txn, user_id, device_id, &dev) == 0) {
        json_t *name = json_object_get(dev, "display_name");
        if (json_is_string(name))
            json_object_set(content, "device_display_name", name);
        if (ax_db_devicekeys_get(txn, user_id, device_id, &keys) == 0)
            json_object_set(content, "keys", keys);
    } else {
        json_object_set_new(content, "deleted", json_true());
    }
    rc = ax_db_fedq_push_edu_peers(txn, user_id, "m.device_list_update", content);
    json_decref(dev);
    json_decref(keys);
    json_decref(content);
    return rc;
}

int ax_db_fedq_signing_key_update(ax_txn_t *txn, const char *user_id)
{
    json_t *content = json_pack("{s:s}", "user_id", user_id);
    static const struct {
        const char *usage, *field;
    } parts[] = {{"master", "master_key"}, {"self_signing", "self_signing_key"}};
    for (size_t i = 0; i < AX_ARRAY_SIZE(parts); ++i) {
        json_t *key = NULL;
        if (ax_db_xsign_get(txn, user_id, parts[i].usage, &key) == 0)
            json_object_set_new(content, parts[i].field, key);
    }
    int rc = ax_db_fedq_push_edu_peers(txn, user_id, "m.signing_key_update", content);
    json_decref(content);
    return rc;
}
