/*
 * relations.c -- relations and threads (spec: Client-Server API
 * "Relationships", "Threading"; relations.yaml, threads_list.yaml).
 * Children come from the relation index; aggregations
 * (unsigned.m.relations) are added when events are loaded (core/rooms.c).
 */
#include "server/cs/cs.h"
#include "core/rooms.h"

#include <stdlib.h>
#include <string.h>

#define RELATIONS_DEFAULT_LIMIT 50
#define RELATIONS_MAX_LIMIT     1000
#define RELATIONS_MAX_DEPTH     3
#define RELATIONS_MAX_COLLECT   10000

typedef struct st_child_t {
    uint64_t pos;
    char event_id[256];
    int depth;
} child_t;

typedef struct st_collect_t {
    child_t *items;
    size_t n, cap;
    int depth;
} collect_t;

static int collect_cb(void *arg, const char *rel_type, uint64_t pos, const char *child)
{
    (void)rel_type;
    collect_t *c = arg;
    if (c->n >= RELATIONS_MAX_COLLECT)
        return 1;
    for (size_t i = 0; i < c->n; ++i)
        if (strcmp(c->items[i].event_id, child) == 0)
            return 0;
    if (c->n == c->cap)
        c->items = ax_realloc(c->items, (c->cap = c->cap ? c->cap * 2 : 32) * sizeof(*c->items));
    c->items[c->n].pos = pos;
    c->items[c->n].depth = c->depth;
    snprintf(c->items[c->n].event_id, sizeof(c->items[0].event_id), "%s", child);
    c->n++;
    return 0;
}

static int by_pos_desc(const void *a, const void *b)
{
    const child_t *x = a, *y = b;
    return x->pos < y->pos ? 1 : x->pos > y->pos ? -1 : 0;
}

/* GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] */
int ax_cs_relations(ax_req_t *r)
{
    const char *room_id = r->params[0], *parent = r->params[1];
    const char *rel_type = r->nparams > 2 ? r->params[2] : NULL;
    const char *event_type = r->nparams > 3 ? r->params[3] : NULL;
    const char *from = ax_req_query(r, "from"), *to = ax_req_query(r, "to"), *dir = ax_req_query(r, "dir");
    const char *limit_s = ax_req_query(r, "limit"), *recurse_s = ax_req_query(r, "recurse");
    uint64_t limit = RELATIONS_DEFAULT_LIMIT, from_pos = 0, to_pos = 0;
    if (dir == NULL)
        dir = "b";
    if (strcmp(dir, "b") != 0 && strcmp(dir, "f") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "dir must be b or f");
    if (limit_s != NULL && ax_parse_u64(limit_s, &limit) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must be a non-negative integer");
    if (limit > RELATIONS_MAX_LIMIT)
        limit = RELATIONS_MAX_LIMIT;
    if ((from != NULL && !ax_cs_parse_pagination(from, &from_pos)) ||
        (to != NULL && !ax_cs_parse_pagination(to, &to_pos)))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid pagination token");
    if (recurse_s != NULL && strcmp(recurse_s, "true") != 0 && strcmp(recurse_s, "false") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "recurse must be true or false");
    bool recurse = recurse_s != NULL && strcmp(recurse_s, "true") == 0;
    bool backwards = strcmp(dir, "b") == 0;

    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, room_id, &upto);
    if (txn == NULL)
        return 0;
    ax_event_rec_t rec;
    if (ax_db_event_get_raw(txn, parent, &rec) != 0 || strcmp(rec.room_id, room_id) != 0 || rec.pos == 0 ||
        !ax_room_user_can_see(txn, room_id, r->auth.user_id, rec.pos)) {
        ax_db_read_end(txn);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Event not found");
    }

    /* children (and with 'recurse' their children, up to three levels), newest first */
    collect_t c = {NULL, 0, 0, 1};
    ax_db_relation_scan(txn, parent, rel_type, UINT64_MAX, true, collect_cb, &c);
    int depth = 1;
    for (size_t start = 0; recurse && depth < RELATIONS_MAX_DEPTH; ++depth) {
        size_t end = c.n;
        if (start == end)
            break;
        c.depth = depth + 1;
        for (size_t i = start; i < end; ++i)
            ax_db_relation_scan(txn, c.items[i].event_id, rel_type, UINT64_MAX, true, collect_cb, &c);
        start = end;
    }
    if (c.n > 1) /* c.items is NULL when there are none */
        qsort(c.items, c.n, sizeof(*c.items), by_pos_desc);

    json_t *chunk = json_array();
    uint64_t last = 0;
    bool more = false;
    int max_depth = 0;
    for (size_t k = 0; k < c.n; ++k) {
        child_t *it = &c.items[backwards ? k : c.n - 1 - k];
        if (it->pos > upto)
            continue;
        if (from != NULL && (backwards ? it->pos > from_pos : it->pos <= from_pos))
            continue;
        if (to != NULL && (backwards ? it->pos <= to_pos : it->pos > to_pos))
            break;
        if (!ax_room_user_can_see(txn, room_id, r->auth.user_id, it->pos))
            continue;
        json_t *ev = ax_event_load_client(txn, it->event_id, r->auth.user_id, r->auth.device_id, NULL);
        if (ev == NULL)
            continue;
        if (event_type != NULL && !ax_streq(json_string_value(json_object_get(ev, "type")), event_type)) {
            json_decref(ev);
            continue;
        }
        if (json_array_size(chunk) == limit) {
            json_decref(ev);
            more = true;
            break;
        }
        json_array_append_new(chunk, ev);
        last = it->pos;
        if (it->depth > max_depth)
            max_depth = it->depth;
    }
    free(c.items);
    ax_db_read_end(txn);
    json_t *out = json_pack("{s:o}", "chunk", chunk);
    if (more)
        json_object_set_new(out, "next_batch",
                            json_string(ax_psprintf(r, "t%llu", (unsigned long long)(backwards ? last - 1 : last))));
    if (from != NULL)
        json_object_set_new(out, "prev_batch", json_string(from));
    if (recurse)
        json_object_set_new(out, "recursion_depth", json_integer(max_depth > 0 ? max_depth : 1));
    return ax_reply_json_new(r, 200, out);
}

/* ---- GET /threads ---- */

typedef struct st_threads_t {
    ax_req_t *r;
    ax_txn_t *txn;
    const char *room_id;
    bool participated_only;
    uint64_t limit;
    json_t *chunk;
    uint64_t last;
    bool more;
} threads_t;

static int thread_root_cb(void *arg, uint64_t pos, const char *root)
{
    threads_t *t = arg;
    ax_event_rec_t rec;
    if (ax_db_event_get_raw(t->txn, root, &rec) != 0 || rec.pos == 0 ||
        !ax_room_user_can_see(t->txn, t->room_id, t->r->auth.user_id, rec.pos))
        return 0;
    json_t *ev = ax_event_load_client(t->txn, root, t->r->auth.user_id, t->r->auth.device_id, NULL);
    if (ev == NULL)
        return 0;
    json_t *summary = json_object_get(json_object_get(json_object_get(ev, "unsigned"), "m.relations"), "m.thread");
    if (t->participated_only && !json_is_true(json_object_get(summary, "current_user_participated"))) {
        json_decref(ev);
        return 0;
    }
    if (json_array_size(t->chunk) == t->limit) {
        json_decref(ev);
        t->more = true;
        return 1;
    }
    json_array_append_new(t->chunk, ev);
    t->last = pos;
    return 0;
}

/* GET /_matrix/client/v1/rooms/{roomId}/threads */
int ax_cs_threads(ax_req_t *r)
{
    const char *include = ax_req_query(r, "include"), *from = ax_req_query(r, "from");
    const char *limit_s = ax_req_query(r, "limit");
    uint64_t limit = 10, from_pos = UINT64_MAX;
    if (include != NULL && strcmp(include, "all") != 0 && strcmp(include, "participated") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "include must be all or participated");
    if (limit_s != NULL && ax_parse_u64(limit_s, &limit) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must be a non-negative integer");
    if (limit > 100)
        limit = 100;
    if (from != NULL && !ax_cs_parse_pagination(from, &from_pos))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid from token");
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    threads_t t = {r, txn,  r->params[0], include != NULL && strcmp(include, "participated") == 0, limit, json_array(),
                   0, false};
    if (limit > 0)
        ax_db_threads_scan(txn, r->params[0], from_pos < upto ? from_pos : upto, thread_root_cb, &t);
    ax_db_read_end(txn);
    json_t *out = json_pack("{s:o}", "chunk", t.chunk);
    if (t.more)
        json_object_set_new(out, "next_batch", json_string(ax_psprintf(r, "t%llu", (unsigned long long)(t.last - 1))));
    return ax_reply_json_new(r, 200, out);
}
