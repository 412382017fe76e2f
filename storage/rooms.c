/*
 * rooms.c -- events, room timelines and the global stream, current and
 * historical state (state groups), memberships and their history,
 * history visibility changes, transaction IDs, aliases, the room
 * directory and relations.  Layouts are in schema.h; every question is an
 * index lookup or a range of one index.
 */
#include "storage/storage_internal.h"
#include "common/json.h"
#include "common/strmap.h"

#include <stdlib.h>
#include <string.h>

#define STATEGROUP_MAX_CHAIN 48

/* Copies a borrowed key part (no NUL in LMDB) into a C string; false when it does not fit. */
static bool copy_part(char *out, size_t cap, const void *p, size_t n)
{
    if (n >= cap)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* ---- events ---- */

/*
 * An event record: be64 pos | u8 flags | [be64 state group, when flags has
 * EVENT_F_GROUP] | room_id NUL | JSON.  The state group after the event
 * lives in the record since schema 7: in a table of its own (still read for
 * older records, eventid_stategroup) it put every message on a random leaf
 * page of its own, one more page for each commit to write.
 */
#define EVENT_F_GROUP 0x80 /* storage's own: never in ax_event_rec_t.flags */

static int event_record(const void *v, size_t vlen, ax_event_rec_t *out, uint64_t *group)
{
    const uint8_t *p = v;
    size_t head = vlen > 9 && (p[8] & EVENT_F_GROUP) != 0 ? 17 : 9;
    const uint8_t *nul = vlen > head ? memchr(p + head, 0, vlen - head) : NULL;
    if (nul == NULL)
        return AX_EIO;
    out->pos = ax_be64_get(p);
    out->flags = p[8] & ~EVENT_F_GROUP;
    out->room_id = (const char *)p + head;
    out->json = (const char *)nul + 1;
    out->json_len = vlen - (size_t)(nul + 1 - p);
    *group = head == 17 ? ax_be64_get(p + 9) : 0;
    return 0;
}

/* Writes the record of 'event_id' from its parts ('group' 0: none). */
static int event_record_put(ax_txn_t *txn, const char *event_id, uint64_t pos, unsigned flags, uint64_t group,
                            const char *room_id, const char *json, size_t json_len, const json_t *event)
{
    ax_buf_t b = AX_BUF_INIT;
    uint8_t head[17];
    ax_be64_put(head, pos);
    head[8] = (uint8_t)((flags & ~EVENT_F_GROUP) | (group != 0 ? EVENT_F_GROUP : 0));
    ax_be64_put(head + 9, group);
    ax_buf_append(&b, head, group != 0 ? 17 : 9);
    ax_buf_append(&b, room_id, strlen(room_id) + 1);
    int rc = 0;
    if (event != NULL)
        rc = ax_json_encode(event, &b);
    else
        ax_buf_append(&b, json, json_len);
    if (rc == 0)
        rc = ax_kv_put(txn, AX_DBI_eventid_event, event_id, strlen(event_id), b.base, b.len, 0);
    ax_buf_dispose(&b);
    return rc;
}

int ax_db_event_get_raw(ax_txn_t *txn, const char *event_id, ax_event_rec_t *out)
{
    const void *v;
    size_t vlen;
    uint64_t group;
    int rc = ax_kv_get(txn, AX_DBI_eventid_event, event_id, strlen(event_id), &v, &vlen);
    return rc != 0 ? rc : event_record(v, vlen, out, &group);
}

/*
 * The per-thread cache of parsed events (ax_db_event_cache_init).  A slot is
 * used only when the stored bytes are identical to the ones it was parsed
 * from, so a rewritten event (a redaction) is parsed again; callers get a
 * deep copy, about a sixth of the cost of parsing (measured on a 760-byte
 * message event with jansson 2.14: 1.7 against 10 to 14 us).
 */
#define EVENT_CACHE_MAX_BYTES 16384 /* bigger events are parsed every time */

typedef struct st_event_cache_slot_t {
    char *event_id;
    char *raw;
    size_t raw_len;
    json_t *json;
    const char *const *keys; /* the members 'json' holds (ax_db_event_get_keys' list), or NULL: all */
} event_cache_slot_t;

static _Thread_local event_cache_slot_t *event_cache;
static _Thread_local size_t event_cache_slots; /* a power of two, or 0: off */

void ax_db_event_cache_init(size_t slots)
{
    ax_db_event_cache_free();
    size_t n = 1;
    while (n < slots)
        n <<= 1;
    event_cache = ax_calloc(n, sizeof(*event_cache));
    event_cache_slots = n;
}

void ax_db_event_cache_free(void)
{
    for (size_t i = 0; i < event_cache_slots; ++i) {
        free(event_cache[i].event_id);
        free(event_cache[i].raw);
        json_decref(event_cache[i].json);
    }
    free(event_cache);
    event_cache = NULL;
    event_cache_slots = 0;
}

static event_cache_slot_t *event_cache_slot(const char *event_id)
{
    return &event_cache[ax_str_hash(event_id) & (event_cache_slots - 1)];
}

/* Skips blanks (JSON whitespace). */
static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        ++p;
    return p;
}

/*
 * The end of the JSON value that starts at 'p', found without decoding it:
 * strings are skipped to their closing quote (escapes included), objects and
 * arrays to their matching bracket, scalars to the next delimiter.  NULL when
 * the text ends first.  Only finds the end: json_loadb() still checks
 * whatever part is kept.
 */
static const char *skip_value(const char *p, const char *end)
{
    size_t depth = 0;
    do {
        if (p >= end)
            return NULL;
        switch (*p) {
        case '"':
            for (++p; p < end && *p != '"'; ++p) {
                if (*p == '\\' && ++p >= end)
                    return NULL;
            }
            if (p >= end)
                return NULL;
            ++p;
            break;
        case '{':
        case '[':
            ++depth;
            ++p;
            break;
        case '}':
        case ']':
            if (depth == 0)
                return NULL;
            --depth;
            ++p;
            break;
        default:
            if (depth == 0) {
                while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n')
                    ++p;
                return p;
            }
            ++p;
        }
    } while (depth > 0);
    return p;
}

static bool key_wanted(const char *const *keys, const char *k, size_t klen)
{
    for (; *keys != NULL; ++keys) {
        if (strncmp(*keys, k, klen) == 0 && (*keys)[klen] == '\0')
            return true;
    }
    return false;
}

/*
 * Copies the members of the JSON object 'text' named in 'keys', as they are,
 * into 'out' as an object of their own; false when 'text' is not an object
 * this can skim (a key with an escape, a malformed text): parse it whole.
 */
static bool skim_object(const char *text, size_t len, const char *const *keys, ax_buf_t *out)
{
    const char *p = text, *end = text + len;
    bool first = true;
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return false;
    ax_buf_putc(out, '{');
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        ax_buf_putc(out, '}');
        return true;
    }
    for (;;) {
        if (p >= end || *p != '"')
            return false;
        const char *member = p, *k = p + 1;
        for (p = k; p < end && *p != '"' && *p != '\\'; ++p)
            ;
        if (p >= end || *p == '\\')
            return false;
        size_t klen = (size_t)(p - k);
        p = skip_ws(p + 1, end);
        if (p >= end || *p != ':')
            return false;
        p = skip_value(skip_ws(p + 1, end), end);
        if (p == NULL)
            return false;
        if (key_wanted(keys, k, klen)) {
            if (!first)
                ax_buf_putc(out, ',');
            ax_buf_append(out, member, (size_t)(p - member));
            first = false;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p >= end || *p != '}' || skip_ws(p + 1, end) != end)
            return false;
        ax_buf_putc(out, '}');
        return true;
    }
}

/* Parses 'r' whole ('keys' NULL) or only the members named in 'keys' (ax_db_event_get_keys). */
static json_t *event_parse_text(const ax_event_rec_t *r, const char *const *keys, const char *const **parsed_keys)
{
    *parsed_keys = NULL;
    if (keys != NULL) {
        ax_buf_t b = AX_BUF_INIT;
        json_t *j = skim_object(r->json, r->json_len, keys, &b) ? json_loadb(b.base, b.len, 0, NULL) : NULL;
        ax_buf_dispose(&b);
        if (j != NULL) {
            *parsed_keys = keys;
            return j;
        }
    }
    return json_loadb(r->json, r->json_len, 0, NULL);
}

/* The members of the cached 'full' event named in 'keys', shared with it (read-only). */
static json_t *event_share_keys(json_t *full, const char *const *keys)
{
    json_t *j = json_object();
    for (; *keys != NULL; ++keys) {
        json_t *v = json_object_get(full, *keys);
        if (v != NULL)
            json_object_set(j, *keys, v);
    }
    return j;
}

/*
 * The event of 'r' (a new reference): all of it ('keys' NULL), or at least
 * the members in 'keys', from the thread's cache when it holds these very
 * bytes parsed with as much.  Every woken long-poll of a room's members
 * loads the same new events, so one parse serves them all.  With 'keys' the
 * event is read-only and shares its members with the cache (no copy); whole
 * events are the caller's own.
 */
static json_t *event_parse(const char *event_id, const ax_event_rec_t *r, const char *const *keys)
{
    const char *const *parsed_keys;
    if (event_cache_slots == 0 || r->json_len > EVENT_CACHE_MAX_BYTES)
        return event_parse_text(r, keys, &parsed_keys);
    event_cache_slot_t *e = event_cache_slot(event_id);
    if (e->json != NULL && e->raw_len == r->json_len && (e->keys == NULL || e->keys == keys) &&
        strcmp(e->event_id, event_id) == 0 && memcmp(e->raw, r->json, r->json_len) == 0) {
        if (keys == NULL)
            return json_deep_copy(e->json);
        return e->keys == NULL ? event_share_keys(e->json, keys) : json_incref(e->json);
    }
    json_t *j = event_parse_text(r, keys, &parsed_keys);
    if (j == NULL)
        return NULL;
    free(e->event_id);
    free(e->raw);
    json_decref(e->json);
    e->event_id = ax_strdup(event_id);
    e->raw = ax_malloc(r->json_len);
    memcpy(e->raw, r->json, r->json_len);
    e->raw_len = r->json_len;
    e->json = keys != NULL ? json_incref(j) : json_deep_copy(j); /* whole events: callers may change theirs */
    e->keys = parsed_keys;
    return j;
}

int ax_db_event_get(ax_txn_t *txn, const char *event_id, json_t **event, ax_event_rec_t *rec)
{
    ax_event_rec_t r;
    int rc = ax_db_event_get_raw(txn, event_id, &r);
    if (rc != 0)
        return rc;
    json_t *j = event_parse(event_id, &r, NULL);
    if (j == NULL)
        return AX_EIO;
    if (rec != NULL)
        *rec = r;
    *event = j;
    return 0;
}

int ax_db_event_get_keys(ax_txn_t *txn, const char *event_id, const char *const *keys, json_t **event,
                         ax_event_rec_t *rec)
{
    ax_event_rec_t r;
    int rc = ax_db_event_get_raw(txn, event_id, &r);
    if (rc != 0)
        return rc;
    json_t *j = event_parse(event_id, &r, keys);
    if (j == NULL)
        return AX_EIO;
    if (rec != NULL)
        *rec = r;
    *event = j;
    return 0;
}

int ax_db_event_get_shared(ax_txn_t *txn, const char *event_id, json_t **event)
{
    json_t *kept = txn->events != NULL ? ax_strmap_get(txn->events, event_id) : NULL;
    if (kept != NULL) {
        *event = json_incref(kept);
        return 0;
    }
    int rc = ax_db_event_get(txn, event_id, event, NULL);
    if (rc == 0 && txn->events != NULL)
        ax_strmap_put(txn->events, event_id, json_incref(*event));
    return rc;
}

int ax_db_event_put(ax_txn_t *txn, const char *event_id, const char *room_id, uint64_t pos, unsigned flags,
                    const json_t *event)
{
    if (txn->events != NULL)
        json_decref(ax_strmap_del(txn->events, event_id)); /* a redaction: the kept copy is stale */
    /* a rewrite (a redaction, an outlier joining the timeline) keeps the state group */
    const void *v;
    size_t vlen;
    ax_event_rec_t old;
    uint64_t group = 0;
    if (ax_kv_get(txn, AX_DBI_eventid_event, event_id, strlen(event_id), &v, &vlen) != 0 ||
        event_record(v, vlen, &old, &group) != 0)
        group = 0;
    return event_record_put(txn, event_id, pos, flags, group, room_id, NULL, 0, event);
}

/* ---- timelines ---- */

int ax_db_timeline_add(ax_txn_t *txn, const char *room_id, uint64_t pos, const char *event_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_u64(&k, pos);
    if (k.overflow)
        return AX_ETOOBIG;
    int rc = ax_kv_put(txn, AX_DBI_roomid_pos_eventid, k.b, k.n, event_id, strlen(event_id), 0);
    if (rc != 0)
        return rc;
    ax_key_t g = {0};
    ax_key_u64(&g, pos);
    ax_key_t v = {0};
    ax_key_str(&v, room_id, true);
    ax_key_str(&v, event_id, false);
    if (v.overflow)
        return AX_ETOOBIG;
    return ax_kv_put(txn, AX_DBI_pos_roomevent, g.b, g.n, v.b, v.n, 0);
}

typedef struct st_timeline_scan_t {
    size_t plen;
    int (*cb)(void *arg, uint64_t pos, const char *event_id);
    void *arg;
} timeline_scan_t;

static int timeline_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    timeline_scan_t *s = arg;
    char eid[256];
    if (klen != s->plen + 8 || !copy_part(eid, sizeof(eid), val, vlen))
        return 0;
    return s->cb(s->arg, ax_be64_get((const uint8_t *)key + s->plen), eid);
}

int ax_db_timeline_scan(ax_txn_t *txn, const char *room_id, uint64_t from, bool backwards,
                        int (*cb)(void *arg, uint64_t pos, const char *event_id), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    if (p.overflow)
        return AX_ENOTFOUND;
    timeline_scan_t s = {p.n, cb, arg};
    ax_key_t f = p;
    ax_key_u64(&f, from);
    if (backwards)
        return ax_kv_scan_rev(txn, AX_DBI_roomid_pos_eventid, p.b, p.n, from == UINT64_MAX ? NULL : f.b,
                              from == UINT64_MAX ? 0 : f.n, timeline_cb, &s);
    return ax_kv_scan(txn, AX_DBI_roomid_pos_eventid, p.b, p.n, f.b, f.n, timeline_cb, &s);
}

typedef struct st_stream_scan_t {
    int (*cb)(void *arg, uint64_t pos, const char *room_id, const char *event_id);
    void *arg;
} stream_scan_t;

static int stream_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    stream_scan_t *s = arg;
    const char *v = val;
    const char *nul = memchr(v, 0, vlen);
    char room[256], eid[256];
    if (klen != 8 || nul == NULL || !copy_part(room, sizeof(room), v, (size_t)(nul - v)) ||
        !copy_part(eid, sizeof(eid), nul + 1, vlen - (size_t)(nul - v) - 1))
        return 0;
    return s->cb(s->arg, ax_be64_get(key), room, eid);
}

int ax_db_stream_scan(ax_txn_t *txn, uint64_t after,
                      int (*cb)(void *arg, uint64_t pos, const char *room_id, const char *event_id), void *arg)
{
    stream_scan_t s = {cb, arg};
    ax_key_t f = {0};
    ax_key_u64(&f, after + 1);
    return ax_kv_scan(txn, AX_DBI_pos_roomevent, NULL, 0, f.b, f.n, stream_cb, &s);
}

int ax_db_stream_event_at(ax_txn_t *txn, uint64_t pos, char *event_id, size_t cap)
{
    ax_key_t k = {0};
    ax_key_u64(&k, pos);
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_pos_roomevent, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    const char *sep = memchr(v, 0, vlen);
    if (sep == NULL)
        return AX_EIO;
    size_t n = vlen - (size_t)(sep - (const char *)v) - 1;
    if (n >= cap)
        return AX_ETOOBIG;
    memcpy(event_id, sep + 1, n);
    event_id[n] = '\0';
    return 0;
}

/* ---- rooms ---- */

int ax_db_room_get(ax_txn_t *txn, const char *room_id, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_roomid_room, room_id, strlen(room_id), out);
}

int ax_db_room_put(ax_txn_t *txn, const char *room_id, const json_t *room)
{
    return ax_kv_put_json(txn, AX_DBI_roomid_room, room_id, strlen(room_id), room);
}

typedef struct st_room_scan_t {
    int (*cb)(void *arg, const char *room_id, json_t *room);
    void *arg;
} room_scan_t;

static int room_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    room_scan_t *s = arg;
    char id[256];
    if (!copy_part(id, sizeof(id), key, klen))
        return 0;
    json_t *room = json_loadb(val, vlen, 0, NULL);
    if (room == NULL)
        return 0;
    int rc = s->cb(s->arg, id, room);
    json_decref(room);
    return rc;
}

int ax_db_room_foreach(ax_txn_t *txn, int (*cb)(void *arg, const char *room_id, json_t *room), void *arg)
{
    room_scan_t s = {cb, arg};
    return ax_kv_scan(txn, AX_DBI_roomid_room, NULL, 0, NULL, 0, room_cb, &s);
}

/* ---- current state ---- */

static ax_key_t state_key(const char *room_id, const char *type, const char *skey)
{
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_str(&k, type, true);
    ax_key_str(&k, skey, false);
    return k;
}

int ax_db_state_get(ax_txn_t *txn, const char *room_id, const char *type, const char *skey, char *out, size_t cap)
{
    ax_key_t k = state_key(room_id, type, skey);
    if (k.overflow)
        return AX_ENOTFOUND;
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_roomid_state, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    return copy_part(out, cap, v, vlen) ? 0 : AX_ETOOBIG;
}

int ax_db_state_put(ax_txn_t *txn, const char *room_id, const char *type, const char *skey, const char *event_id)
{
    ax_key_t k = state_key(room_id, type, skey);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put(txn, AX_DBI_roomid_state, k.b, k.n, event_id, strlen(event_id), 0);
}

int ax_db_state_del(ax_txn_t *txn, const char *room_id, const char *type, const char *skey)
{
    ax_key_t k = state_key(room_id, type, skey);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_del(txn, AX_DBI_roomid_state, k.b, k.n, NULL, 0);
}

typedef struct st_state_scan_t {
    size_t plen;
    int (*cb)(void *arg, const char *type, const char *state_key, const char *event_id);
    void *arg;
} state_scan_t;

static int state_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    state_scan_t *s = arg;
    const char *rest = (const char *)key + s->plen;
    size_t rlen = klen - s->plen;
    const char *sep = memchr(rest, 0, rlen);
    char type[256], skey[512], eid[256];
    if (sep == NULL || !copy_part(type, sizeof(type), rest, (size_t)(sep - rest)) ||
        !copy_part(skey, sizeof(skey), sep + 1, rlen - (size_t)(sep - rest) - 1) ||
        !copy_part(eid, sizeof(eid), val, vlen))
        return 0;
    return s->cb(s->arg, type, skey, eid);
}

int ax_db_state_foreach(ax_txn_t *txn, const char *room_id, const char *type,
                        int (*cb)(void *arg, const char *type, const char *state_key, const char *event_id), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    size_t room_plen = p.n;
    if (type != NULL)
        ax_key_str(&p, type, true);
    if (p.overflow)
        return 0;
    state_scan_t s = {room_plen, cb, arg};
    return ax_kv_scan(txn, AX_DBI_roomid_state, p.b, p.n, NULL, 0, state_cb, &s);
}

/* ---- forward extremities ---- */

int ax_db_extremities_set(ax_txn_t *txn, const char *room_id, const char *const *event_ids, size_t n)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    int rc = ax_kv_del_prefix(txn, AX_DBI_roomid_extremity, p.b, p.n, NULL);
    for (size_t i = 0; rc == 0 && i < n; ++i) {
        ax_key_t k = p;
        ax_key_str(&k, event_ids[i], false);
        rc = k.overflow ? AX_ETOOBIG : ax_kv_put(txn, AX_DBI_roomid_extremity, k.b, k.n, "", 0, 0);
    }
    return rc;
}

typedef struct st_ext_scan_t {
    size_t plen;
    int (*cb)(void *arg, const char *event_id);
    void *arg;
} ext_scan_t;

static int ext_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    ext_scan_t *s = arg;
    char eid[256];
    if (!copy_part(eid, sizeof(eid), (const char *)key + s->plen, klen - s->plen))
        return 0;
    return s->cb(s->arg, eid);
}

int ax_db_extremities_foreach(ax_txn_t *txn, const char *room_id, int (*cb)(void *arg, const char *event_id), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    ext_scan_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_roomid_extremity, p.b, p.n, NULL, 0, ext_cb, &s);
}

/* ---- state groups ---- */

/* Applies 'delta' ({type: {state_key: event_id | null}}) to 'state' of the same shape. */
static void apply_delta(json_t *state, const json_t *delta)
{
    const char *type, *skey;
    json_t *keys, *v;
    json_object_foreach((json_t *)delta, type, keys)
    {
        json_t *slot = json_object_get(state, type);
        if (slot == NULL) {
            slot = json_object();
            json_object_set_new(state, type, slot);
        }
        json_object_foreach(keys, skey, v)
        {
            if (json_is_null(v))
                json_object_del(slot, skey);
            else
                json_object_set(slot, skey, v);
        }
        if (json_object_size(slot) == 0)
            json_object_del(state, type);
    }
}

int ax_db_stategroup_load(ax_txn_t *txn, uint64_t group, json_t **out)
{
    /* walk back to the snapshot, then apply the deltas forwards */
    json_t *chain[STATEGROUP_MAX_CHAIN + 2];
    size_t n = 0;
    int rc = 0;
    while (group != 0 && n < AX_ARRAY_SIZE(chain)) {
        ax_key_t k = {0};
        ax_key_u64(&k, group);
        json_t *rec = NULL;
        if ((rc = ax_kv_get_json(txn, AX_DBI_stategroup_state, k.b, k.n, &rec)) != 0)
            break;
        chain[n++] = rec;
        group = (uint64_t)json_integer_value(json_object_get(rec, "prev"));
    }
    if (rc == 0 && group != 0)
        rc = AX_EIO; /* a chain longer than we ever write */
    json_t *state = json_object();
    for (size_t i = n; i-- > 0;) {
        if (rc == 0)
            apply_delta(state, json_object_get(chain[i], "delta"));
        json_decref(chain[i]);
    }
    if (rc != 0) {
        json_decref(state);
        return rc;
    }
    *out = state;
    return 0;
}

int ax_db_stategroup_new(ax_txn_t *txn, uint64_t prev, const json_t *delta, uint64_t *out)
{
    uint64_t id = 0;
    int rc = ax_db_meta_get_u64(txn, "stategroup_next", &id);
    if (rc == AX_ENOTFOUND)
        id = 1;
    else if (rc != 0)
        return rc;
    json_int_t chain = 0;
    if (prev != 0) {
        ax_key_t pk = {0};
        ax_key_u64(&pk, prev);
        json_t *prec = NULL;
        if ((rc = ax_kv_get_json(txn, AX_DBI_stategroup_state, pk.b, pk.n, &prec)) != 0)
            return rc;
        chain = json_integer_value(json_object_get(prec, "chain")) + 1;
        json_decref(prec);
    }
    json_t *rec;
    if (prev == 0 || chain >= STATEGROUP_MAX_CHAIN) {
        /* a full snapshot keeps every lookup within STATEGROUP_MAX_CHAIN steps */
        json_t *full = NULL;
        if (prev == 0)
            full = json_object();
        else if ((rc = ax_db_stategroup_load(txn, prev, &full)) != 0)
            return rc;
        apply_delta(full, delta);
        rec = json_pack("{s:i, s:i, s:o}", "prev", 0, "chain", 0, "delta", full);
    } else {
        rec = json_pack("{s:I, s:I, s:O}", "prev", (json_int_t)prev, "chain", chain, "delta", delta);
    }
    ax_key_t k = {0};
    ax_key_u64(&k, id);
    rc = ax_kv_put_json(txn, AX_DBI_stategroup_state, k.b, k.n, rec);
    json_decref(rec);
    if (rc == 0)
        rc = ax_db_meta_put_u64(txn, "stategroup_next", id + 1);
    if (rc == 0)
        *out = id;
    return rc;
}

int ax_db_event_stategroup_put(ax_txn_t *txn, const char *event_id, uint64_t group)
{
    const void *v;
    size_t vlen;
    ax_event_rec_t r;
    uint64_t had;
    if (group != 0 && ax_kv_get(txn, AX_DBI_eventid_event, event_id, strlen(event_id), &v, &vlen) == 0 &&
        event_record(v, vlen, &r, &had) == 0) {
        /* the record was just written in this transaction: its page is dirty already.  Its parts
         * are copied into the new record before the put, so reading them in place is safe; an
         * older record's entry in the table, if any, is never read again */
        if (had == group)
            return 0;
        return event_record_put(txn, event_id, r.pos, r.flags, group, r.room_id, r.json, r.json_len, NULL);
    }
    uint8_t gv[8]; /* no record (yet): the table */
    ax_be64_put(gv, group);
    return ax_kv_put(txn, AX_DBI_eventid_stategroup, event_id, strlen(event_id), gv, 8, 0);
}

static ax_key_t room_pos_key(const char *room_id, uint64_t pos)
{
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_u64(&k, pos);
    return k;
}

int ax_db_pos_stategroup_put(ax_txn_t *txn, const char *room_id, uint64_t pos, uint64_t group)
{
    ax_key_t k = room_pos_key(room_id, pos);
    if (k.overflow)
        return AX_ETOOBIG;
    uint8_t v[8];
    ax_be64_put(v, group);
    return ax_kv_put(txn, AX_DBI_roompos_stategroup, k.b, k.n, v, 8, 0);
}

int ax_db_pos_stategroup_get(ax_txn_t *txn, const char *room_id, uint64_t pos, uint64_t *group)
{
    ax_key_t k = room_pos_key(room_id, pos);
    if (k.overflow)
        return AX_ENOTFOUND;
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_roompos_stategroup, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen != 8)
        return AX_EIO;
    *group = ax_be64_get(v);
    return 0;
}

int ax_db_event_stategroup_get(ax_txn_t *txn, const char *event_id, uint64_t *group)
{
    const void *v;
    size_t vlen;
    ax_event_rec_t r;
    if (ax_kv_get(txn, AX_DBI_eventid_event, event_id, strlen(event_id), &v, &vlen) == 0 &&
        event_record(v, vlen, &r, group) == 0 && *group != 0)
        return 0;
    int rc = ax_kv_get(txn, AX_DBI_eventid_stategroup, event_id, strlen(event_id), &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen != 8)
        return AX_EIO;
    *group = ax_be64_get(v);
    return 0;
}

/* ---- memberships ---- */

int ax_db_membership_put(ax_txn_t *txn, const char *room_id, const char *user_id, const char *membership,
                         const char *event_id, uint64_t pos)
{
    ax_key_t uk = {0};
    ax_key_str(&uk, user_id, true);
    ax_key_str(&uk, room_id, false);
    ax_key_t rk = {0};
    ax_key_str(&rk, room_id, true);
    ax_key_str(&rk, user_id, false);
    ax_key_t hk = rk;
    ax_key_bytes(&hk, "", 1);
    ax_key_u64(&hk, pos);
    if (uk.overflow || hk.overflow)
        return AX_ETOOBIG;
    json_t *rec = json_pack("{s:s, s:s, s:I}", "membership", membership, "event_id", event_id, "pos", (json_int_t)pos);
    int rc = ax_kv_put_json(txn, AX_DBI_userid_membership, uk.b, uk.n, rec);
    json_decref(rec);
    if (rc == 0)
        rc = ax_kv_put(txn, AX_DBI_roomid_members, rk.b, rk.n, membership, strlen(membership), 0);
    if (rc == 0)
        rc = ax_kv_put(txn, AX_DBI_roomuser_pos_membership, hk.b, hk.n, membership, strlen(membership), 0);
    if (rc == 0)
        rc = ax_db_member_change_put(txn, room_id, user_id, membership, pos);
    return rc;
}

int ax_db_member_change_put(ax_txn_t *txn, const char *room_id, const char *user_id, const char *membership,
                            uint64_t pos)
{
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_u64(&k, pos);
    ax_key_t v = {0};
    ax_key_str(&v, user_id, true);
    ax_key_str(&v, membership, false);
    if (k.overflow || v.overflow)
        return AX_ETOOBIG;
    return ax_kv_put(txn, AX_DBI_roomid_pos_member, k.b, k.n, v.b, v.n, 0);
}

typedef struct st_member_changes_t {
    size_t plen;
    uint64_t upto;
    int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *membership);
    void *arg;
} member_changes_t;

static int member_changes_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    member_changes_t *s = arg;
    if (klen != s->plen + 8)
        return 0;
    uint64_t pos = ax_be64_get((const uint8_t *)key + s->plen);
    if (pos > s->upto)
        return 1;
    const char *v = val;
    const char *nul = memchr(v, 0, vlen);
    char user[256], m[32];
    if (nul == NULL || !copy_part(user, sizeof(user), v, (size_t)(nul - v)) ||
        !copy_part(m, sizeof(m), nul + 1, vlen - (size_t)(nul - v) - 1))
        return 0;
    return s->cb(s->arg, pos, user, m);
}

int ax_db_member_changes(ax_txn_t *txn, const char *room_id, uint64_t after, uint64_t upto,
                         int (*cb)(void *arg, uint64_t pos, const char *user_id, const char *membership), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    ax_key_t f = p;
    ax_key_u64(&f, after + 1);
    if (f.overflow || after == UINT64_MAX)
        return 0;
    member_changes_t s = {p.n, upto, cb, arg};
    return ax_kv_scan(txn, AX_DBI_roomid_pos_member, p.b, p.n, f.b, f.n, member_changes_cb, &s);
}

int ax_db_membership_get(ax_txn_t *txn, const char *room_id, const char *user_id, json_t **out)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, room_id, false);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_get_json(txn, AX_DBI_userid_membership, k.b, k.n, out);
}

int ax_db_membership_forget(ax_txn_t *txn, const char *room_id, const char *user_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, room_id, false);
    if (k.overflow)
        return AX_ENOTFOUND;
    return ax_kv_del(txn, AX_DBI_userid_membership, k.b, k.n, NULL, 0);
}

typedef struct st_last_value_t {
    char *out;
    size_t cap;
    bool found;
} last_value_t;

static int last_value_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)key, (void)klen;
    last_value_t *l = arg;
    l->found = copy_part(l->out, l->cap, val, vlen);
    return 1; /* the first one seen going backwards is the one in force */
}

int ax_db_membership_at(ax_txn_t *txn, const char *room_id, const char *user_id, uint64_t pos, char *out, size_t cap)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    ax_key_str(&p, user_id, true);
    ax_key_t upto = p;
    ax_key_u64(&upto, pos);
    out[0] = '\0';
    if (upto.overflow)
        return 0;
    last_value_t l = {out, cap, false};
    int rc = ax_kv_scan_rev(txn, AX_DBI_roomuser_pos_membership, p.b, p.n, upto.b, upto.n, last_value_cb, &l);
    if (!l.found)
        out[0] = '\0';
    return rc < 0 ? rc : 0;
}

typedef struct st_user_rooms_t {
    size_t plen;
    int (*cb)(void *arg, const char *room_id, json_t *membership);
    void *arg;
} user_rooms_t;

static int user_rooms_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    user_rooms_t *s = arg;
    char room[256];
    if (!copy_part(room, sizeof(room), (const char *)key + s->plen, klen - s->plen))
        return 0;
    json_t *m = json_loadb(val, vlen, 0, NULL);
    if (m == NULL)
        return 0;
    int rc = s->cb(s->arg, room, m);
    json_decref(m);
    return rc;
}

int ax_db_user_rooms_foreach(ax_txn_t *txn, const char *user_id,
                             int (*cb)(void *arg, const char *room_id, json_t *membership), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, user_id, true);
    user_rooms_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_userid_membership, p.b, p.n, NULL, 0, user_rooms_cb, &s);
}

typedef struct st_members_t {
    size_t plen;
    int (*cb)(void *arg, const char *user_id, const char *membership);
    void *arg;
} members_t;

static int members_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    members_t *s = arg;
    char user[256], m[32];
    if (!copy_part(user, sizeof(user), (const char *)key + s->plen, klen - s->plen) ||
        !copy_part(m, sizeof(m), val, vlen))
        return 0;
    return s->cb(s->arg, user, m);
}

int ax_db_room_members_foreach(ax_txn_t *txn, const char *room_id,
                               int (*cb)(void *arg, const char *user_id, const char *membership), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    members_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_roomid_members, p.b, p.n, NULL, 0, members_cb, &s);
}

/* ---- history visibility ---- */

int ax_db_visibility_put(ax_txn_t *txn, const char *room_id, uint64_t pos, const char *visibility)
{
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_u64(&k, pos);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put(txn, AX_DBI_roomid_pos_visibility, k.b, k.n, visibility, strlen(visibility), 0);
}

int ax_db_visibility_at(ax_txn_t *txn, const char *room_id, uint64_t pos, char *out, size_t cap)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    ax_key_t upto = p;
    ax_key_u64(&upto, pos);
    last_value_t l = {out, cap, false};
    int rc = upto.overflow
                 ? 0
                 : ax_kv_scan_rev(txn, AX_DBI_roomid_pos_visibility, p.b, p.n, upto.b, upto.n, last_value_cb, &l);
    if (!l.found)
        snprintf(out, cap, "shared"); /* the spec's default */
    return rc < 0 ? rc : 0;
}

/* ---- transaction IDs ---- */

static ax_key_t txn_key(const char *user_id, const char *device_id, const char *txn_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, user_id, true);
    ax_key_str(&k, device_id, true);
    ax_key_str(&k, txn_id, false);
    return k;
}

int ax_db_txn_get(ax_txn_t *txn, const char *user_id, const char *device_id, const char *txn_id, char *event_id,
                  size_t cap)
{
    ax_key_t k = txn_key(user_id, device_id, txn_id);
    if (k.overflow)
        return AX_ENOTFOUND;
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_txn_eventid, k.b, k.n, &v, &vlen);
    if (rc != 0)
        return rc;
    return copy_part(event_id, cap, v, vlen) ? 0 : AX_EIO;
}

int ax_db_txn_put(ax_txn_t *txn, const char *user_id, const char *device_id, const char *txn_id, const char *event_id)
{
    ax_key_t k = txn_key(user_id, device_id, txn_id);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put(txn, AX_DBI_txn_eventid, k.b, k.n, event_id, strlen(event_id), 0);
}

/* ---- aliases and the directory ---- */

int ax_db_alias_get(ax_txn_t *txn, const char *alias, json_t **out)
{
    return ax_kv_get_json(txn, AX_DBI_alias_roomid, alias, strlen(alias), out);
}

int ax_db_alias_put(ax_txn_t *txn, const char *alias, const char *room_id, const char *creator)
{
    json_t *rec = json_pack("{s:s, s:s}", "room_id", room_id, "creator", creator);
    int rc = ax_kv_put_json(txn, AX_DBI_alias_roomid, alias, strlen(alias), rec);
    json_decref(rec);
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_str(&k, alias, false);
    if (rc == 0)
        rc = k.overflow ? AX_ETOOBIG : ax_kv_put(txn, AX_DBI_roomid_alias, k.b, k.n, "", 0, 0);
    return rc;
}

int ax_db_alias_del(ax_txn_t *txn, const char *alias, const char *room_id)
{
    int rc = ax_kv_del(txn, AX_DBI_alias_roomid, alias, strlen(alias), NULL, 0);
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_str(&k, alias, false);
    if (rc == 0 && !k.overflow) {
        int r2 = ax_kv_del(txn, AX_DBI_roomid_alias, k.b, k.n, NULL, 0);
        if (r2 != 0 && r2 != AX_ENOTFOUND)
            rc = r2;
    }
    return rc;
}

typedef struct st_alias_scan_t {
    size_t plen;
    int (*cb)(void *arg, const char *alias);
    void *arg;
} alias_scan_t;

static int alias_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    alias_scan_t *s = arg;
    char alias[512];
    if (!copy_part(alias, sizeof(alias), (const char *)key + s->plen, klen - s->plen))
        return 0;
    return s->cb(s->arg, alias);
}

int ax_db_room_aliases_foreach(ax_txn_t *txn, const char *room_id, int (*cb)(void *arg, const char *alias), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    alias_scan_t s = {p.n, cb, arg};
    return ax_kv_scan(txn, AX_DBI_roomid_alias, p.b, p.n, NULL, 0, alias_cb, &s);
}

int ax_db_directory_set(ax_txn_t *txn, const char *room_id, bool public_)
{
    if (public_)
        return ax_kv_put(txn, AX_DBI_publicroom_roomid, room_id, strlen(room_id), "", 0, 0);
    int rc = ax_kv_del(txn, AX_DBI_publicroom_roomid, room_id, strlen(room_id), NULL, 0);
    return rc == AX_ENOTFOUND ? 0 : rc;
}

bool ax_db_directory_is_public(ax_txn_t *txn, const char *room_id)
{
    const void *v;
    size_t vlen;
    return ax_kv_get(txn, AX_DBI_publicroom_roomid, room_id, strlen(room_id), &v, &vlen) == 0;
}

typedef struct st_dir_scan_t {
    const char *since;
    int (*cb)(void *arg, const char *room_id);
    void *arg;
} dir_scan_t;

static int dir_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    dir_scan_t *s = arg;
    char room[256];
    if (!copy_part(room, sizeof(room), key, klen) || (s->since != NULL && strcmp(room, s->since) <= 0))
        return 0;
    return s->cb(s->arg, room);
}

int ax_db_directory_foreach(ax_txn_t *txn, const char *since, int (*cb)(void *arg, const char *room_id), void *arg)
{
    dir_scan_t s = {since, cb, arg};
    return ax_kv_scan(txn, AX_DBI_publicroom_roomid, NULL, 0, since, since ? strlen(since) : 0, dir_cb, &s);
}

/* ---- relations ---- */

int ax_db_relation_put(ax_txn_t *txn, const char *parent, const char *rel_type, uint64_t pos, const char *child)
{
    ax_key_t k = {0};
    ax_key_str(&k, parent, true);
    ax_key_str(&k, rel_type, true);
    ax_key_u64(&k, pos);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put(txn, AX_DBI_relation_child, k.b, k.n, child, strlen(child), 0);
}

typedef struct st_rel_scan_t {
    size_t plen;
    uint64_t from;
    bool backwards;
    int (*cb)(void *arg, const char *rel_type, uint64_t pos, const char *child);
    void *arg;
} rel_scan_t;

static int rel_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    rel_scan_t *s = arg;
    const char *rest = (const char *)key + s->plen;
    size_t rlen = klen - s->plen;
    const char *sep = memchr(rest, 0, rlen);
    char type[256], child[256];
    if (sep == NULL || rlen - (size_t)(sep - rest) - 1 != 8 ||
        !copy_part(type, sizeof(type), rest, (size_t)(sep - rest)) || !copy_part(child, sizeof(child), val, vlen))
        return 0;
    uint64_t pos = ax_be64_get((const uint8_t *)sep + 1);
    /* with every rel_type in one range, positions are ordered per type only: filter here */
    if (s->backwards ? pos > s->from : pos < s->from)
        return 0;
    return s->cb(s->arg, type, pos, child);
}

int ax_db_relation_scan(ax_txn_t *txn, const char *parent, const char *rel_type, uint64_t from, bool backwards,
                        int (*cb)(void *arg, const char *rel_type, uint64_t pos, const char *child), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, parent, true);
    size_t parent_len = p.n;
    if (rel_type != NULL)
        ax_key_str(&p, rel_type, true);
    if (p.overflow)
        return 0;
    rel_scan_t s = {parent_len, from, backwards, cb, arg};
    if (rel_type == NULL)
        return backwards ? ax_kv_scan_rev(txn, AX_DBI_relation_child, p.b, p.n, NULL, 0, rel_cb, &s)
                         : ax_kv_scan(txn, AX_DBI_relation_child, p.b, p.n, NULL, 0, rel_cb, &s);
    ax_key_t f = p;
    ax_key_u64(&f, from);
    if (backwards)
        return ax_kv_scan_rev(txn, AX_DBI_relation_child, p.b, p.n, from == UINT64_MAX ? NULL : f.b,
                              from == UINT64_MAX ? 0 : f.n, rel_cb, &s);
    return ax_kv_scan(txn, AX_DBI_relation_child, p.b, p.n, f.b, f.n, rel_cb, &s);
}

/* ---- threads ---- */

int ax_db_thread_touch(ax_txn_t *txn, const char *room_id, const char *root, uint64_t pos)
{
    const void *v;
    size_t vlen;
    int rc = ax_kv_get(txn, AX_DBI_threadroot_pos, root, strlen(root), &v, &vlen);
    if (rc == 0 && vlen == 8) {
        ax_key_t old = {0};
        ax_key_str(&old, room_id, true);
        ax_key_u64(&old, ax_be64_get(v));
        rc = ax_kv_del(txn, AX_DBI_roomid_pos_threadroot, old.b, old.n, NULL, 0);
        if (rc != 0 && rc != AX_ENOTFOUND)
            return rc;
    } else if (rc != 0 && rc != AX_ENOTFOUND) {
        return rc;
    }
    uint8_t be[8];
    ax_be64_put(be, pos);
    if ((rc = ax_kv_put(txn, AX_DBI_threadroot_pos, root, strlen(root), be, 8, 0)) != 0)
        return rc;
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_u64(&k, pos);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put(txn, AX_DBI_roomid_pos_threadroot, k.b, k.n, root, strlen(root), 0);
}

int ax_db_threads_scan(ax_txn_t *txn, const char *room_id, uint64_t from,
                       int (*cb)(void *arg, uint64_t pos, const char *root), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    timeline_scan_t s = {p.n, cb, arg};
    ax_key_t f = p;
    ax_key_u64(&f, from);
    return ax_kv_scan_rev(txn, AX_DBI_roomid_pos_threadroot, p.b, p.n, from == UINT64_MAX ? NULL : f.b,
                          from == UINT64_MAX ? 0 : f.n, timeline_cb, &s);
}

/* ---- the full-text index ---- */

int ax_db_search_put(ax_txn_t *txn, const char *term, const char *room_id, const uint64_t *pos, size_t n)
{
    ax_key_t k = {0};
    ax_key_str(&k, term, true);
    ax_key_str(&k, room_id, true);
    ax_key_u64(&k, pos[0]);
    if (k.overflow || n == 0)
        return 0; /* an absurd term is simply not indexed */
    uint8_t *v = ax_malloc(n * 8);
    for (size_t i = 0; i < n; ++i)
        ax_be64_put(v + 8 * i, pos[i]);
    int rc = ax_kv_put(txn, AX_DBI_term_roompos_event, k.b, k.n, v, n * 8, 0);
    free(v);
    return rc;
}

typedef struct st_search_scan_t {
    ax_txn_t *txn;
    int (*cb)(void *arg, uint64_t pos, const char *event_id);
    void *arg;
} search_scan_t;

static int search_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)key, (void)klen;
    search_scan_t *s = arg;
    /* the value may move once we read other records: copy the positions first */
    size_t n = vlen / 8;
    uint64_t *pos = ax_malloc((n != 0 ? n : 1) * sizeof(*pos));
    for (size_t i = 0; i < n; ++i)
        pos[i] = ax_be64_get((const uint8_t *)val + 8 * i);
    int rc = 0;
    char eid[256];
    for (size_t i = 0; i < n && rc == 0; ++i)
        if (ax_db_stream_event_at(s->txn, pos[i], eid, sizeof(eid)) == 0)
            rc = s->cb(s->arg, pos[i], eid);
    free(pos);
    return rc;
}

int ax_db_search_scan(ax_txn_t *txn, const char *term, const char *room_id,
                      int (*cb)(void *arg, uint64_t pos, const char *event_id), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, term, true);
    ax_key_str(&p, room_id, true);
    if (p.overflow)
        return 0;
    search_scan_t s = {txn, cb, arg};
    return ax_kv_scan_rev(txn, AX_DBI_term_roompos_event, p.b, p.n, NULL, 0, search_cb, &s);
}

int ax_db_search_clear(ax_txn_t *txn)
{
    return ax_kv_del_prefix(txn, AX_DBI_term_roompos_event, NULL, 0, NULL);
}

/* ---- history fetched from other servers ---- */

int ax_db_backfill_put(ax_txn_t *txn, const char *room_id, uint64_t depth, const char *event_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, room_id, true);
    ax_key_u64(&k, depth);
    ax_key_str(&k, event_id, false);
    if (k.overflow)
        return AX_ETOOBIG;
    return ax_kv_put(txn, AX_DBI_roomdepth_backfill, k.b, k.n, "", 0, 0);
}

typedef struct st_backfill_scan_t {
    size_t plen;
    int (*cb)(void *arg, uint64_t depth, const char *event_id);
    void *arg;
} backfill_scan_t;

static int backfill_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    backfill_scan_t *s = arg;
    if (klen < s->plen + 8)
        return 0;
    char eid[256];
    if (!copy_part(eid, sizeof(eid), (const char *)key + s->plen + 8, klen - s->plen - 8))
        return 0;
    return s->cb(s->arg, ax_be64_get((const uint8_t *)key + s->plen), eid);
}

int ax_db_backfill_scan(ax_txn_t *txn, const char *room_id, uint64_t below,
                        int (*cb)(void *arg, uint64_t depth, const char *event_id), void *arg)
{
    ax_key_t p = {0};
    ax_key_str(&p, room_id, true);
    if (p.overflow || below == 0)
        return AX_ENOTFOUND;
    ax_key_t f = p;
    ax_key_u64(&f, below - 1);
    ax_key_bytes(&f, "\xff", 1);
    backfill_scan_t s = {p.n, cb, arg};
    return ax_kv_scan_rev(txn, AX_DBI_roomdepth_backfill, p.b, p.n, f.b, f.n, backfill_cb, &s);
}

/* ---- thread summaries: reply count, latest reply, who took part ---- */

int ax_db_thread_note(ax_txn_t *txn, const char *root, const char *child, const char *sender)
{
    json_t *sum = NULL;
    int rc = ax_kv_get_json(txn, AX_DBI_threadroot_summary, root, strlen(root), &sum);
    if (rc == AX_ENOTFOUND)
        sum = json_pack("{s:i}", "count", 0);
    else if (rc != 0)
        return rc;
    json_object_set_new(sum, "count", json_integer(json_integer_value(json_object_get(sum, "count")) + 1));
    json_object_set_new(sum, "latest", json_string(child));
    rc = ax_kv_put_json(txn, AX_DBI_threadroot_summary, root, strlen(root), sum);
    json_decref(sum);
    ax_key_t k = {0};
    ax_key_str(&k, root, true);
    ax_key_str(&k, sender, false);
    if (rc == 0 && !k.overflow)
        rc = ax_kv_put(txn, AX_DBI_threadroot_user, k.b, k.n, "", 0, 0);
    return rc;
}

int ax_db_thread_summary(ax_txn_t *txn, const char *root, uint64_t *count, char *latest, size_t cap)
{
    json_t *sum = NULL;
    int rc = ax_kv_get_json(txn, AX_DBI_threadroot_summary, root, strlen(root), &sum);
    if (rc != 0)
        return rc;
    *count = (uint64_t)json_integer_value(json_object_get(sum, "count"));
    snprintf(latest, cap, "%s", json_string_value(json_object_get(sum, "latest")) ?: "");
    json_decref(sum);
    return 0;
}

bool ax_db_thread_participant(ax_txn_t *txn, const char *root, const char *user_id)
{
    ax_key_t k = {0};
    ax_key_str(&k, root, true);
    ax_key_str(&k, user_id, false);
    const void *v;
    size_t vlen;
    return !k.overflow && ax_kv_get(txn, AX_DBI_threadroot_user, k.b, k.n, &v, &vlen) == 0;
}
