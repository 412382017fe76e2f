/*
 * search.c -- the full-text index of room events that POST /search reads
 * (server/cs/search.c): one posting per distinct word of a message's body,
 * a room's name or its topic, keyed term, room, position
 * (term_roompos_event).
 *
 * Events are not indexed as they are stored.  A message's dozen words land
 * on a dozen pages of the index, one per (term, room), so with many busy
 * rooms every send dirtied pages of its own: in fifty rooms the index was
 * half of what each durable send wrote to disk.  The writer indexes the
 * timeline in batches instead, in transactions of its own between batches
 * of jobs (ax_writer_add_task): once SEARCH_DUE positions have gone by, or
 * when nothing has been queued for SEARCH_IDLE_MS.  The messages of a batch
 * then share the pages of their common words.
 *
 * meta "search_pos" is the position up to which every timeline event is
 * indexed (absent: none).  Readers take the timeline after it as it is
 * (ax_search_pos), so a message is found as soon as its send returns.
 */
#include "core/rooms.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SEARCH_DUE        1024  /* positions behind the stream before a step runs while busy */
#define SEARCH_STEP_MAX   4096  /* timeline events one step indexes */
#define SEARCH_RECORD_MAX 128   /* events in one record of the index */
#define SEARCH_IDLE_MS    200   /* nothing queued this long: index what is left */
#define SEARCH_RETRY_MS   10000 /* after a failed step (a full disk, say) */

void ax_search_terms(const char *text, void (*cb)(void *arg, const char *term), void *arg)
{
    char seen[64][65];
    size_t nseen = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p != '\0') {
        while (*p != '\0' && !(isalnum(*p) || *p >= 0x80))
            ++p;
        char term[65];
        size_t n = 0;
        while (*p != '\0' && (isalnum(*p) || *p >= 0x80)) {
            if (n < 64)
                term[n++] = (char)tolower(*p);
            ++p;
        }
        if (n == 0)
            continue;
        /* do not cut a UTF-8 sequence in half */
        while (n > 0 && ((unsigned char)term[n - 1] & 0xC0) == 0x80 && n == 64)
            --n;
        term[n] = '\0';
        bool dup = false;
        for (size_t i = 0; i < nseen && !dup; ++i)
            dup = strcmp(seen[i], term) == 0;
        if (dup)
            continue;
        if (nseen < AX_ARRAY_SIZE(seen))
            memcpy(seen[nseen++], term, n + 1);
        cb(arg, term);
    }
}

const char *ax_search_text(const char *type, const json_t *content)
{
    const char *field = type == NULL                          ? NULL
                        : strcmp(type, "m.room.message") == 0 ? "body"
                        : strcmp(type, "m.room.name") == 0    ? "name"
                        : strcmp(type, "m.room.topic") == 0   ? "topic"
                                                              : NULL;
    return field != NULL ? json_string_value(json_object_get(content, field)) : NULL;
}

const char *const ax_search_event_keys[] = {"type", "content", NULL};

uint64_t ax_search_pos(ax_txn_t *txn)
{
    uint64_t pos;
    return ax_db_meta_get_u64(txn, "search_pos", &pos) == 0 ? pos : 0;
}

/* ---- the writer's task ---- */

struct st_ax_search_indexer_t {
    _Atomic uint64_t covered; /* search_pos as last committed (0 until the first step); read by /metrics */
    uint64_t pending;         /* what the running step will have covered */
    uint64_t retry_ms;        /* after a failure: no step before this */
};

typedef struct st_batch_t {
    ax_buf_t ids; /* room_id 0x00 event_id 0x00, repeated */
    uint64_t *pos;
    size_t n;
} batch_t;

static int collect(void *arg, uint64_t pos, const char *room_id, const char *event_id)
{
    batch_t *b = arg;
    if (b->n == SEARCH_STEP_MAX)
        return 1;
    ax_buf_append(&b->ids, room_id, strlen(room_id) + 1);
    ax_buf_append(&b->ids, event_id, strlen(event_id) + 1);
    b->pos[b->n++] = pos;
    return 0;
}

/* A posting: offsets of its term in 'terms' and its room in the batch's 'ids'. */
typedef struct st_posting_t {
    size_t term, room;
    uint64_t pos;
} posting_t;

typedef struct st_postings_t {
    ax_buf_t terms; /* term 0x00, repeated */
    posting_t *items;
    size_t n, cap;
    const char *ids; /* batch_t.ids */
    size_t room;     /* the room of the event being split */
    uint64_t pos;
} postings_t;

static void add_posting(void *arg, const char *term)
{
    postings_t *p = arg;
    if (p->n == p->cap)
        p->items = ax_realloc(p->items, (p->cap = p->cap != 0 ? p->cap * 2 : 1024) * sizeof(*p->items));
    p->items[p->n++] = (posting_t){p->terms.len, p->room, p->pos};
    ax_buf_append(&p->terms, term, strlen(term) + 1);
}

/* By term, then room, then newest first. */
static int by_key(const void *a, const void *b, void *arg)
{
    const posting_t *x = a, *y = b;
    const postings_t *p = arg;
    int c = strcmp(p->terms.base + x->term, p->terms.base + y->term);
    if (c == 0)
        c = strcmp(p->ids + x->room, p->ids + y->room);
    return c != 0 ? c : x->pos < y->pos ? 1 : x->pos > y->pos ? -1 : 0;
}

/* Writes the sorted postings, a record per term and room (at most SEARCH_RECORD_MAX events each). */
static int put_postings(ax_txn_t *txn, postings_t *p)
{
    uint64_t pos[SEARCH_RECORD_MAX];
    int rc = 0;
    for (size_t i = 0; i < p->n && rc == 0;) {
        const char *term = p->terms.base + p->items[i].term, *room = p->ids + p->items[i].room;
        size_t n = 0;
        do {
            pos[n++] = p->items[i++].pos;
        } while (i < p->n && n < SEARCH_RECORD_MAX && strcmp(p->terms.base + p->items[i].term, term) == 0 &&
                 strcmp(p->ids + p->items[i].room, room) == 0);
        rc = ax_db_search_put(txn, term, room, pos, n);
    }
    return rc;
}

static int index_step(void *arg, ax_txn_t *txn)
{
    ax_search_indexer_t *x = arg;
    uint64_t from = ax_search_pos(txn), end = 0;
    int rc = ax_db_meta_get_u64(txn, "stream_pos", &end);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    /* collect first: scans must not write */
    batch_t b = {AX_BUF_INIT, ax_malloc(SEARCH_STEP_MAX * sizeof(uint64_t)), 0};
    rc = ax_db_stream_scan(txn, from, collect, &b);
    rc = rc > 0 ? 0 : rc;
    postings_t p = {.terms = AX_BUF_INIT, .ids = b.ids.base};
    const char *id = b.ids.base;
    for (size_t i = 0; i < b.n && rc == 0; ++i) {
        const char *room_id = id, *event_id = room_id + strlen(room_id) + 1;
        id = event_id + strlen(event_id) + 1;
        json_t *ev = NULL;
        if (ax_db_event_get_keys(txn, event_id, ax_search_event_keys, &ev, NULL) != 0)
            continue; /* purged since */
        const char *text =
            ax_search_text(json_string_value(json_object_get(ev, "type")), json_object_get(ev, "content"));
        p.room = (size_t)(room_id - b.ids.base);
        p.pos = b.pos[i];
        if (text != NULL)
            ax_search_terms(text, add_posting, &p);
        json_decref(ev);
    }
    if (rc == 0 && p.n != 0) {
        qsort_r(p.items, p.n, sizeof(*p.items), by_key, &p);
        rc = put_postings(txn, &p);
    }
    uint64_t covered = b.n == SEARCH_STEP_MAX ? b.pos[b.n - 1] : end > from ? end : from;
    if (rc == 0 && covered != from)
        rc = ax_db_meta_put_u64(txn, "search_pos", covered);
    x->pending = covered;
    ax_buf_dispose(&p.terms);
    free(p.items);
    ax_buf_dispose(&b.ids);
    free(b.pos);
    return rc;
}

static bool index_due(void *arg, uint64_t stream_pos, bool idle)
{
    ax_search_indexer_t *x = arg;
    if (x->retry_ms != 0 && ax_now_ms() < x->retry_ms)
        return false;
    uint64_t covered = atomic_load(&x->covered);
    uint64_t behind = stream_pos > covered ? stream_pos - covered : 0;
    return behind >= SEARCH_DUE || (idle && behind > 0);
}

static void index_done(void *arg, bool committed)
{
    ax_search_indexer_t *x = arg;
    if (committed) {
        atomic_store(&x->covered, x->pending);
        x->retry_ms = 0;
    } else {
        if (x->retry_ms == 0)
            ax_log(AX_LOG_WARN, "search index: a step failed; trying again in %d s", SEARCH_RETRY_MS / 1000);
        x->retry_ms = ax_now_ms() + SEARCH_RETRY_MS;
    }
}

ax_search_indexer_t *ax_search_indexer_new(ax_writer_t *w)
{
    ax_search_indexer_t *x = ax_calloc(1, sizeof(*x));
    ax_writer_task_t task = {
        .due = index_due, .step = index_step, .done = index_done, .arg = x, .idle_ms = SEARCH_IDLE_MS};
    ax_writer_add_task(w, &task);
    return x;
}

uint64_t ax_search_indexer_pos(ax_search_indexer_t *x)
{
    return atomic_load(&x->covered);
}

void ax_search_indexer_free(ax_search_indexer_t *x)
{
    free(x);
}
