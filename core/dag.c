/*
 * dag.c -- reading a room's event graph for other servers (Server-Server
 * API "Retrieving events", "Backfilling and retrieving missing events",
 * "Retrieving event authorisation information"): the wire form of a stored
 * PDU, the state before an event, and the /backfill and
 * /get_missing_events walks (auth chains: ax_room_auth_chain, core/ingest.c).  Read-only; the endpoints in
 * federation/api_events.c decide who may see what (core/servers.c).
 */
#include "core/servers.h"

#include <stdlib.h>
#include <string.h>

json_t *ax_event_federation_format(const json_t *pdu)
{
    json_t *out = json_copy((json_t *)pdu);
    json_object_del(out, "unsigned");
    return out;
}

/* An event that is part of 'room_id''s timeline: not an outlier, rejected or soft-failed. */
static bool in_timeline(const ax_event_rec_t *rec, const char *room_id)
{
    return rec->pos != 0 && (rec->flags & (AX_EVENT_F_OUTLIER | AX_EVENT_F_REJECTED | AX_EVENT_F_SOFT_FAILED)) == 0 &&
           strcmp(rec->room_id, room_id) == 0;
}

/* ---- the state before an event ---- */

int ax_event_state_before(ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const char *event_id,
                          const json_t *pdu, unsigned flags, json_t **out)
{
    *out = NULL;
    if ((flags & AX_EVENT_F_OUTLIER) != 0)
        return AX_ENOTFOUND;
    uint64_t group;
    /* an event that changes no state: the state stored with it is the state before it
     * (rejected events are stored with the state before them) */
    if (!ax_event_is_state(pdu) || (flags & AX_EVENT_F_REJECTED) != 0) {
        if (ax_db_event_stategroup_get(txn, event_id, &group) != 0)
            return AX_ENOTFOUND;
        if (group == 0) {
            *out = json_object();
            return 0;
        }
        return ax_db_stategroup_load(txn, group, out);
    }
    /* a state event: the state after its prev events (resolved when there are several) */
    int rc = ax_room_state_before_event(txn, rv, room_id, pdu, out);
    if (rc != AX_ENOTFOUND)
        return rc;
    /* prev events without state here (outliers: the event that joined us to a room whose state we
     * were given): the state stored with the event, its own entry set back to what it replaced */
    json_t *map = NULL;
    if (ax_db_event_stategroup_get(txn, event_id, &group) != 0 || group == 0 ||
        ax_db_stategroup_load(txn, group, &map) != 0)
        return AX_ENOTFOUND;
    json_t *slot = json_object_get(map, json_string_value(json_object_get(pdu, "type")));
    const char *sk = json_string_value(json_object_get(pdu, "state_key"));
    json_t *replaced = json_object_get(json_object_get(pdu, "unsigned"), "replaces_state");
    if (slot != NULL && json_is_string(replaced))
        json_object_set(slot, sk, replaced);
    else if (slot != NULL)
        json_object_del(slot, sk);
    *out = map;
    return 0;
}

/* ---- /backfill: deepest first ---- */

typedef struct st_node_t {
    int64_t depth;
    uint64_t pos;
    json_t *ev;
    char *id;
} node_t;

typedef struct st_heap_t {
    node_t *a;
    size_t n, cap;
} heap_t;

/* 'x' comes out before 'y': deeper, then later in the timeline */
static bool before(const node_t *x, const node_t *y)
{
    return x->depth != y->depth ? x->depth > y->depth : x->pos > y->pos;
}

static void heap_push(heap_t *h, node_t nd)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 16;
        h->a = ax_realloc(h->a, h->cap * sizeof(*h->a));
    }
    size_t i = h->n++;
    h->a[i] = nd;
    while (i > 0 && before(&h->a[i], &h->a[(i - 1) / 2])) {
        node_t t = h->a[i];
        h->a[i] = h->a[(i - 1) / 2];
        h->a[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static node_t heap_pop(heap_t *h)
{
    node_t top = h->a[0];
    h->a[0] = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && before(&h->a[l], &h->a[m]))
            m = l;
        if (r < h->n && before(&h->a[r], &h->a[m]))
            m = r;
        if (m == i)
            break;
        node_t t = h->a[i];
        h->a[i] = h->a[m];
        h->a[m] = t;
        i = m;
    }
    return top;
}

/* Loads 'id' as a node when it is a timeline event of the room; false otherwise. */
static bool load_node(ax_txn_t *txn, const char *room_id, const char *id, node_t *nd)
{
    ax_event_rec_t rec;
    json_t *ev = NULL;
    if (ax_db_event_get(txn, id, &ev, &rec) != 0)
        return false;
    if (!in_timeline(&rec, room_id)) {
        json_decref(ev);
        return false;
    }
    nd->depth = json_integer_value(json_object_get(ev, "depth"));
    nd->pos = rec.pos;
    nd->ev = ev;
    nd->id = ax_strdup(id);
    return true;
}

int ax_room_backfill(ax_txn_t *txn, const char *room_id, const json_t *from, size_t limit, json_t **out)
{
    heap_t h = {NULL, 0, 0};
    json_t *seen = json_object();
    *out = json_array();
    size_t i, looked = 0;
    json_t *v;
    json_array_foreach(from, i, v)
    {
        const char *id = json_string_value(v);
        node_t nd;
        if (id == NULL || json_object_get(seen, id) != NULL)
            continue;
        json_object_set_new(seen, id, json_true());
        if (load_node(txn, room_id, id, &nd))
            heap_push(&h, nd);
    }
    while (h.n > 0 && json_array_size(*out) < limit && looked++ < AX_DAG_WALK_MAX) {
        node_t nd = heap_pop(&h);
        json_array_append_new(*out, json_string(nd.id));
        json_t *ref;
        json_array_foreach(json_object_get(nd.ev, "prev_events"), i, ref)
        {
            const char *id = ax_event_ref_id(ref);
            node_t p;
            if (id == NULL || json_object_get(seen, id) != NULL)
                continue;
            json_object_set_new(seen, id, json_true());
            if (load_node(txn, room_id, id, &p))
                heap_push(&h, p);
        }
        json_decref(nd.ev);
        free(nd.id);
    }
    while (h.n > 0) {
        node_t nd = heap_pop(&h);
        json_decref(nd.ev);
        free(nd.id);
    }
    free(h.a);
    json_decref(seen);
    return 0;
}

/* ---- /get_missing_events: breadth first ---- */

static int by_depth(const void *a, const void *b)
{
    const node_t *x = a, *y = b;
    return before(x, y) ? 1 : before(y, x) ? -1 : 0;
}

int ax_room_missing_events(ax_txn_t *txn, const char *room_id, const json_t *earliest, const json_t *latest,
                           size_t limit, int64_t min_depth, json_t **out)
{
    json_t *seen = json_object(), *front = json_array();
    node_t *found = ax_calloc(limit + 1, sizeof(*found));
    size_t nfound = 0, looked = 0, i;
    json_t *v;
    json_array_foreach(earliest, i, v)
    {
        if (json_is_string(v))
            json_object_set_new(seen, json_string_value(v), json_true());
    }
    json_array_foreach(latest, i, v)
    {
        if (json_is_string(v) && json_object_get(seen, json_string_value(v)) == NULL) {
            json_object_set_new(seen, json_string_value(v), json_true());
            json_array_append(front, v);
        }
    }
    while (json_array_size(front) != 0 && nfound < limit && looked < AX_DAG_WALK_MAX) {
        json_t *next = json_array();
        json_array_foreach(front, i, v)
        {
            json_t *ev = NULL;
            ax_event_rec_t rec;
            if (nfound >= limit || looked++ >= AX_DAG_WALK_MAX)
                break;
            if (ax_db_event_get(txn, json_string_value(v), &ev, &rec) != 0)
                continue;
            if (strcmp(rec.room_id, room_id) != 0) {
                json_decref(ev);
                continue;
            }
            size_t k;
            json_t *ref;
            json_array_foreach(json_object_get(ev, "prev_events"), k, ref)
            {
                const char *id = ax_event_ref_id(ref);
                node_t nd;
                if (nfound >= limit)
                    break;
                if (id == NULL || json_object_get(seen, id) != NULL)
                    continue;
                json_object_set_new(seen, id, json_true());
                if (!load_node(txn, room_id, id, &nd))
                    continue;
                if (nd.depth < min_depth) {
                    json_decref(nd.ev);
                    free(nd.id);
                    continue;
                }
                json_array_append_new(next, json_string(id));
                json_decref(nd.ev);
                nd.ev = NULL;
                found[nfound++] = nd;
            }
            json_decref(ev);
        }
        json_decref(front);
        front = next;
    }
    /* oldest first, roughly chronological as the receiver will apply them */
    qsort(found, nfound, sizeof(*found), by_depth);
    *out = json_array();
    for (i = 0; i < nfound; ++i) {
        json_array_append_new(*out, json_string(found[i].id));
        free(found[i].id);
    }
    free(found);
    json_decref(front);
    json_decref(seen);
    return 0;
}
