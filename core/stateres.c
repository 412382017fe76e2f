/*
 * stateres.c -- state resolution v2 (rooms v2-v11, rooms/v2 "State
 * resolution") and v2.1 (room v12: iterative auth checks start from an empty
 * state, and the conflicted state subgraph joins the full conflicted set).
 * Exports ax_stateres_resolve().
 *
 * A pure function over the auth DAG: events come from the caller's event map
 * or fetch callback and are held until the resolution ends.  Each event is a
 * node with its auth edges; chains and subgraphs are walked iteratively (no
 * recursion, so deep auth chains cannot exhaust the stack) and cycles, which
 * v1-2 event IDs could forge, cannot loop.  Where the spec leaves details
 * open the code does what Synapse does, and says so.  Room version 1's
 * algorithm is not implemented.
 */
#include "core/events.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- small growable arrays --------------------------------------------------------- */

typedef struct st_ivec_t {
    int *v;
    size_t n, cap;
} ivec_t;

static void ivec_push(ivec_t *a, int x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 8;
        a->v = ax_realloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->n++] = x;
}

static void ivec_dispose(ivec_t *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/* ---- the event graph ----------------------------------------------------------------- */

typedef struct st_node_t {
    char *id;      /* owned copy */
    json_t *ev;    /* owned reference */
    ivec_t auth;   /* indices of the auth events we have */
    ivec_t up;     /* scratch: reverse edges for the topological sort */
    uint64_t sets; /* which state sets' auth chains hold this event (itself included) */
    int64_t pl;    /* sender's power level from its auth events, once computed */
    int mainline;  /* position on the mainline, -1 when not on it */
    unsigned auth_loaded : 1, rejected : 1, pl_loaded : 1;
    unsigned conflicted : 1, below_conflicted : 1, in_full : 1, in_x : 1;
    unsigned reach_state : 2; /* v2.1 subgraph DFS: 0 new, 1 open, 2 done */
    unsigned reaches_conflicted : 1;
    unsigned outdeg;
} node_t;

typedef struct st_sr_t {
    const ax_room_version_t *rv;
    const char *room_id;
    const json_t *event_map;
    ax_stateres_fetch_fn fetch;
    void *fetch_arg;
    node_t *nodes;
    size_t n, cap;
    json_t *index; /* event_id -> node index, or -1 when unknown */
    int err;       /* first error met while loading */
    char create_id[AX_HASH_ID_LEN];
} sr_t;

static const char *str_of(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* Returns the node of 'id', loading the event on first use; -1 when unknown. */
static int node_get(sr_t *sr, const char *id)
{
    json_t *known = json_object_get(sr->index, id);
    if (known != NULL)
        return (int)json_integer_value(known);

    bool rejected = false;
    json_t *ev = json_object_get(sr->event_map, id);
    if (ev != NULL)
        json_incref(ev);
    else if (sr->fetch != NULL)
        ev = sr->fetch(sr->fetch_arg, id, &rejected);
    if (ev == NULL || !json_is_object(ev)) {
        json_decref(ev);
        json_object_set_new(sr->index, id, json_integer(-1));
        return -1;
    }
    /* every event must belong to the room; the v12 create event has no
     * room_id, the room ID names it instead */
    const char *room = str_of(ev, "room_id");
    bool v12_create = sr->rv->room_id_from_create && room == NULL && strcmp(id, sr->create_id) == 0;
    if (!v12_create && !ax_streq(room, sr->room_id)) {
        json_decref(ev);
        json_object_set_new(sr->index, id, json_integer(-1));
        if (sr->err == 0)
            sr->err = AX_EINVAL;
        return -1;
    }
    if (sr->n == sr->cap) {
        sr->cap = sr->cap ? sr->cap * 2 : 64;
        sr->nodes = ax_realloc(sr->nodes, sr->cap * sizeof(*sr->nodes));
    }
    node_t *nd = &sr->nodes[sr->n];
    memset(nd, 0, sizeof(*nd));
    nd->id = ax_strdup(id);
    nd->ev = ev;
    nd->rejected = rejected;
    nd->mainline = -1;
    json_object_set_new(sr->index, id, json_integer((json_int_t)sr->n));
    return (int)sr->n++;
}

/* The auth edges of node 'i'.  v12 events do not list the create event; the
 * room ID names it, so it is added as an implied edge (as Synapse does). */
static const ivec_t *auth_of(sr_t *sr, int i)
{
    if (!sr->nodes[i].auth_loaded) {
        ivec_t edges = {NULL, 0, 0};
        json_t *refs = json_object_get(sr->nodes[i].ev, "auth_events");
        size_t k;
        json_t *ref;
        json_array_foreach(refs, k, ref)
        {
            const char *aid = ax_event_ref_id(ref);
            int a = aid != NULL ? node_get(sr, aid) : -1; /* may move sr->nodes */
            if (a >= 0 && a != i)
                ivec_push(&edges, a);
        }
        if (sr->rv->room_id_from_create && strcmp(sr->nodes[i].id, sr->create_id) != 0) {
            int c = node_get(sr, sr->create_id);
            if (c >= 0)
                ivec_push(&edges, c);
        }
        sr->nodes[i].auth = edges;
        sr->nodes[i].auth_loaded = 1;
    }
    return &sr->nodes[i].auth;
}

static bool node_is(const sr_t *sr, int i, const char *type, const char *state_key)
{
    const json_t *ev = sr->nodes[i].ev;
    return ax_streq(str_of(ev, "type"), type) && ax_streq(str_of(ev, "state_key"), state_key);
}

static int64_t node_ts(const sr_t *sr, int i)
{
    return json_integer_value(json_object_get(sr->nodes[i].ev, "origin_server_ts"));
}

/* "Power events": m.room.power_levels, m.room.join_rules, and kicks and bans
 * (leave or ban by someone else).  Synapse also counts m.room.create. */
static bool is_power_event(const sr_t *sr, int i)
{
    const json_t *ev = sr->nodes[i].ev;
    if (node_is(sr, i, "m.room.power_levels", "") || node_is(sr, i, "m.room.join_rules", "") ||
        node_is(sr, i, "m.room.create", ""))
        return true;
    if (!ax_streq(str_of(ev, "type"), "m.room.member") || str_of(ev, "state_key") == NULL)
        return false;
    const char *membership = str_of(json_object_get(ev, "content"), "membership");
    return (ax_streq(membership, "leave") || ax_streq(membership, "ban")) &&
           !ax_streq(str_of(ev, "sender"), str_of(ev, "state_key"));
}

/* ---- lookups over a handful of nodes -------------------------------------------------- */

typedef struct st_node_list_t {
    sr_t *sr;
    const int *v;
    size_t n;
} node_list_t;

/* ax_auth_lookup_fn over node indices; the last match wins, as a dict would. */
static const json_t *lookup_nodes(void *arg, const char *type, const char *state_key)
{
    node_list_t *l = arg;
    for (size_t k = l->n; k-- > 0;)
        if (node_is(l->sr, l->v[k], type, state_key))
            return l->sr->nodes[l->v[k]].ev;
    return NULL;
}

/* The sender's power level according to the event's own auth events, for the
 * reverse topological power ordering.  Rejected auth events count here, as in
 * Synapse; an unreadable level counts as 0. */
static int64_t sender_level(sr_t *sr, int i)
{
    if (!sr->nodes[i].pl_loaded) {
        const ivec_t *auth = auth_of(sr, i);
        node_list_t l = {sr, auth->v, auth->n};
        int64_t level = 0;
        if (ax_power_level_of(sr->rv, lookup_nodes, &l, str_of(sr->nodes[i].ev, "sender"), &level) != 0)
            level = 0;
        sr->nodes[i].pl = level;
        sr->nodes[i].pl_loaded = 1;
    }
    return sr->nodes[i].pl;
}

/* ---- auth chains, auth difference, conflicted subgraph ------------------------------------ */

/* Marks bit 'set' on 'start' and everything in its auth chain. */
static void mark_chain(sr_t *sr, int start, unsigned set)
{
    uint64_t bit = (uint64_t)1 << set;
    ivec_t stack = {NULL, 0, 0};
    ivec_push(&stack, start);
    while (stack.n > 0) {
        int i = stack.v[--stack.n];
        if (sr->nodes[i].sets & bit)
            continue;
        sr->nodes[i].sets |= bit;
        const ivec_t *auth = auth_of(sr, i);
        for (size_t k = 0; k < auth->n; ++k)
            if (!(sr->nodes[auth->v[k]].sets & bit))
                ivec_push(&stack, auth->v[k]);
    }
    ivec_dispose(&stack);
}

/* v2.1: marks every event on an auth path between two conflicted events.
 * First everything reachable from the conflicted events ("below"), then, by
 * a post-order walk over that part of the graph, which of those reach a
 * conflicted event again. */
static void mark_conflicted_subgraph(sr_t *sr, const ivec_t *conflicted)
{
    ivec_t stack = {NULL, 0, 0};
    for (size_t k = 0; k < conflicted->n; ++k)
        ivec_push(&stack, conflicted->v[k]);
    while (stack.n > 0) {
        int i = stack.v[--stack.n];
        if (sr->nodes[i].below_conflicted)
            continue;
        sr->nodes[i].below_conflicted = 1;
        const ivec_t *auth = auth_of(sr, i);
        for (size_t k = 0; k < auth->n; ++k)
            ivec_push(&stack, auth->v[k]);
    }

    /* post-order: a node reaches a conflicted event if it is one or an auth
     * event of it does; an edge back to an open node (a forged cycle) adds nothing */
    for (size_t c = 0; c < conflicted->n; ++c) {
        ivec_push(&stack, conflicted->v[c]);
        while (stack.n > 0) {
            int i = stack.v[stack.n - 1];
            node_t *nd = &sr->nodes[i];
            if (nd->reach_state == 2) {
                --stack.n;
                continue;
            }
            if (nd->reach_state == 0) {
                nd->reach_state = 1;
                for (size_t k = 0; k < nd->auth.n; ++k)
                    if (sr->nodes[nd->auth.v[k]].reach_state == 0)
                        ivec_push(&stack, nd->auth.v[k]);
                continue;
            }
            bool reaches = nd->conflicted;
            for (size_t k = 0; k < nd->auth.n && !reaches; ++k)
                reaches = sr->nodes[nd->auth.v[k]].reaches_conflicted;
            nd->reaches_conflicted = reaches;
            nd->reach_state = 2;
            --stack.n;
        }
    }
    ivec_dispose(&stack);
    for (size_t i = 0; i < sr->n; ++i)
        if (sr->nodes[i].below_conflicted && sr->nodes[i].reaches_conflicted)
            sr->nodes[i].in_full = 1;
}

/* ---- orderings ---------------------------------------------------------------------------- */

/* Reverse topological power ordering: x < y when x's sender has the greater
 * power level, then the smaller origin_server_ts, then the smaller event_id. */
static int power_cmp(sr_t *sr, int a, int b)
{
    int64_t pa = sender_level(sr, a), pb = sender_level(sr, b);
    if (pa != pb)
        return pa > pb ? -1 : 1;
    int64_t ta = node_ts(sr, a), tb = node_ts(sr, b);
    if (ta != tb)
        return ta < tb ? -1 : 1;
    return strcmp(sr->nodes[a].id, sr->nodes[b].id);
}

/* A binary min-heap of node indices under power_cmp. */
static void heap_push(sr_t *sr, ivec_t *h, int x)
{
    ivec_push(h, x);
    size_t k = h->n - 1;
    while (k > 0) {
        size_t parent = (k - 1) / 2;
        if (power_cmp(sr, h->v[k], h->v[parent]) >= 0)
            break;
        int t = h->v[k];
        h->v[k] = h->v[parent];
        h->v[parent] = t;
        k = parent;
    }
}

static int heap_pop(sr_t *sr, ivec_t *h)
{
    int top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t k = 0;
    for (;;) {
        size_t l = 2 * k + 1, r = l + 1, m = k;
        if (l < h->n && power_cmp(sr, h->v[l], h->v[m]) < 0)
            m = l;
        if (r < h->n && power_cmp(sr, h->v[r], h->v[m]) < 0)
            m = r;
        if (m == k)
            break;
        int t = h->v[k];
        h->v[k] = h->v[m];
        h->v[m] = t;
        k = m;
    }
    return top;
}

/* Step 1: the power events of the full conflicted set and the events of their
 * auth chains inside that set, sorted by Kahn's algorithm taking the smallest
 * event first.  Like Synapse, the chains are followed through full-set events
 * only.  Returns the sorted indices in 'out'. */
static void power_sort(sr_t *sr, ivec_t *out)
{
    ivec_t stack = {NULL, 0, 0}, members = {NULL, 0, 0}, heap = {NULL, 0, 0};
    for (size_t i = 0; i < sr->n; ++i)
        if (sr->nodes[i].in_full && is_power_event(sr, (int)i))
            ivec_push(&stack, (int)i);
    while (stack.n > 0) {
        int i = stack.v[--stack.n];
        if (sr->nodes[i].in_x)
            continue;
        sr->nodes[i].in_x = 1;
        ivec_push(&members, i);
        const ivec_t *auth = auth_of(sr, i);
        for (size_t k = 0; k < auth->n; ++k)
            if (sr->nodes[auth->v[k]].in_full && !sr->nodes[auth->v[k]].in_x)
                ivec_push(&stack, auth->v[k]);
    }
    /* edges x -> a for auth events a of x inside X; count them, remember the reverse */
    for (size_t m = 0; m < members.n; ++m) {
        int i = members.v[m];
        node_t *nd = &sr->nodes[i];
        for (size_t k = 0; k < nd->auth.n; ++k) {
            int a = nd->auth.v[k];
            bool dup = false;
            for (size_t j = 0; j < k && !dup; ++j)
                dup = nd->auth.v[j] == a;
            if (sr->nodes[a].in_x && !dup) {
                ++nd->outdeg;
                ivec_push(&sr->nodes[a].up, i);
            }
        }
    }
    for (size_t m = 0; m < members.n; ++m)
        if (sr->nodes[members.v[m]].outdeg == 0)
            heap_push(sr, &heap, members.v[m]);
    while (heap.n > 0) {
        int i = heap_pop(sr, &heap);
        ivec_push(out, i);
        for (size_t k = 0; k < sr->nodes[i].up.n; ++k) {
            int p = sr->nodes[i].up.v[k];
            if (--sr->nodes[p].outdeg == 0)
                heap_push(sr, &heap, p);
        }
    }
    /* events on a forged cycle never reach out-degree 0 and are left out */
    ivec_dispose(&stack);
    ivec_dispose(&members);
    ivec_dispose(&heap);
}

/* The m.room.power_levels event among the auth events of 'i', or -1. */
static int pl_parent(sr_t *sr, int i)
{
    const ivec_t *auth = auth_of(sr, i);
    for (size_t k = 0; k < auth->n; ++k)
        if (node_is(sr, auth->v[k], "m.room.power_levels", ""))
            return auth->v[k];
    return -1;
}

/* A leftover event with its mainline sort key. */
typedef struct st_mainline_key_t {
    int position; /* INT_MAX when no power levels event of its chain is on the mainline */
    int64_t ts;
    const char *id;
    int node;
} mainline_key_t;

/* Mainline ordering: the greater mainline position first (an event based on
 * an older power levels event), then origin_server_ts, then event_id. */
static int mainline_cmp(const void *pa, const void *pb)
{
    const mainline_key_t *a = pa, *b = pb;
    if (a->position != b->position)
        return a->position > b->position ? -1 : 1;
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    return strcmp(a->id, b->id);
}

/* Step 3: sorts 'events' by the mainline of the power levels event 'pl' (-1
 * when the partial state has none: every position is then "infinite"). */
static void mainline_sort(sr_t *sr, ivec_t *events, int pl)
{
    /* the mainline: P0 = pl, then the power levels event among each one's auth events */
    for (int pos = 0; pl >= 0 && sr->nodes[pl].mainline < 0; pl = pl_parent(sr, pl))
        sr->nodes[pl].mainline = pos++;

    mainline_key_t *keys = ax_calloc(events->n ? events->n : 1, sizeof(*keys));
    for (size_t k = 0; k < events->n; ++k) {
        int e = events->v[k];
        /* the position of the first power levels event in e's chain (e itself
         * excluded) that is on the mainline; the step bound stops forged cycles */
        int position = INT_MAX;
        size_t steps = 0;
        for (int q = pl_parent(sr, e); q >= 0 && steps <= sr->n; q = pl_parent(sr, q), ++steps) {
            if (sr->nodes[q].mainline >= 0) {
                position = sr->nodes[q].mainline;
                break;
            }
        }
        keys[k] = (mainline_key_t){position, node_ts(sr, e), sr->nodes[e].id, e};
    }
    qsort(keys, events->n, sizeof(*keys), mainline_cmp);
    for (size_t k = 0; k < events->n; ++k)
        events->v[k] = keys[k].node;
    free(keys);
}

/* ---- state maps {type: {state_key: event_id}} ------------------------------------------ */

static const char *state_get(const json_t *map, const char *type, const char *state_key)
{
    return json_string_value(json_object_get(json_object_get(map, type), state_key));
}

static void state_set(json_t *map, const char *type, const char *state_key, const char *event_id)
{
    json_t *inner = json_object_get(map, type);
    if (inner == NULL) {
        inner = json_object();
        json_object_set_new(map, type, inner);
    }
    json_object_set_new(inner, state_key, json_string(event_id));
}

/* Iterative auth checks: each event, in order, joins 'resolved' if the auth
 * rules allow it against its own (not rejected) auth events overlaid with the
 * entries of 'resolved' the rules select.  Rejected events never join (Synapse
 * does the same; the spec would re-check events rejected on their state). */
static void iterative_auth(sr_t *sr, const ivec_t *events, json_t *resolved)
{
    ivec_t pick = {NULL, 0, 0};
    for (size_t k = 0; k < events->n; ++k) {
        int i = events->v[k];
        const json_t *ev = sr->nodes[i].ev;
        const char *type = str_of(ev, "type"), *state_key = str_of(ev, "state_key");
        if (sr->nodes[i].rejected || type == NULL || state_key == NULL)
            continue;
        pick.n = 0;
        const ivec_t *auth = auth_of(sr, i);
        for (size_t a = 0; a < auth->n; ++a)
            if (!sr->nodes[auth->v[a]].rejected)
                ivec_push(&pick, auth->v[a]);
        ax_state_key_t keys[AX_AUTH_TYPES_MAX + 1];
        size_t nk = 0;
        if (ax_auth_event_types(sr->rv, ev, keys, &nk) != 0)
            nk = 0;
        keys[nk++] = (ax_state_key_t){"m.room.create", ""}; /* from v12 implied; a no-op duplicate before */
        for (size_t j = 0; j < nk; ++j) {
            const char *id = state_get(resolved, keys[j].type, keys[j].state_key);
            int s = id != NULL ? node_get(sr, id) : -1;
            if (s >= 0 && !sr->nodes[s].rejected)
                ivec_push(&pick, s);
        }
        node_list_t l = {sr, pick.v, pick.n};
        if (ax_auth_check(sr->rv, sr->nodes[i].ev, lookup_nodes, &l, NULL, 0) == 0)
            state_set(resolved, type, state_key, sr->nodes[i].id);
    }
    ivec_dispose(&pick);
}

/* ---- the algorithm ------------------------------------------------------------------------ */

int ax_stateres_resolve(const ax_room_version_t *rv, const char *room_id, const json_t *const *state_sets,
                        size_t n_sets, const json_t *event_map, ax_stateres_fetch_fn fetch, void *fetch_arg,
                        json_t **out)
{
    sr_t sr = {rv, room_id, event_map, fetch, fetch_arg, NULL, 0, 0, json_object(), 0, ""};
    json_t *unconflicted = json_object(), *seen = json_object(), *resolved = NULL;
    ivec_t conflicted = {NULL, 0, 0}, sorted_power = {NULL, 0, 0}, leftover = {NULL, 0, 0};
    int rc = 0;

    *out = NULL;
    if (rv->state_res != 2 || room_id == NULL || n_sets == 0) {
        rc = AX_EINVAL; /* room version 1's algorithm is not implemented */
        goto out;
    }
    if (n_sets > AX_STATERES_MAX_SETS) {
        rc = AX_ETOOBIG;
        goto out;
    }
    if (rv->room_id_from_create &&
        ax_event_create_id_from_room_id(rv, room_id, sr.create_id, sizeof(sr.create_id)) != 0) {
        rc = AX_EINVAL;
        goto out;
    }

    /* Unconflicted state map and conflicted state set: a key is unconflicted
     * when every state set maps it to the same event. */
    for (size_t s = 0; s < n_sets; ++s) {
        const char *type;
        json_t *inner;
        if (!json_is_object(state_sets[s])) {
            rc = AX_EINVAL;
            goto out;
        }
        json_object_foreach((json_t *)state_sets[s], type, inner)
        {
            const char *state_key;
            json_t *idv;
            if (!json_is_object(inner)) {
                rc = AX_EINVAL;
                goto out;
            }
            json_object_foreach(inner, state_key, idv)
            {
                if (!json_is_string(idv)) {
                    rc = AX_EINVAL;
                    goto out;
                }
                if (state_get(seen, type, state_key) != NULL)
                    continue;
                state_set(seen, type, state_key, "");
                const char *first = json_string_value(idv);
                bool same = true;
                for (size_t t = 0; t < n_sets && same; ++t)
                    same = ax_streq(state_get(state_sets[t], type, state_key), first);
                if (same) {
                    state_set(unconflicted, type, state_key, first);
                    continue;
                }
                for (size_t t = 0; t < n_sets; ++t) {
                    const char *id = state_get(state_sets[t], type, state_key);
                    if (id == NULL)
                        continue;
                    int i = node_get(&sr, id);
                    if (i < 0) {
                        rc = sr.err != 0 ? sr.err : AX_ENOTFOUND;
                        goto out;
                    }
                    if (!sr.nodes[i].conflicted) {
                        sr.nodes[i].conflicted = 1;
                        ivec_push(&conflicted, i);
                    }
                }
            }
        }
    }
    if (conflicted.n == 0) {
        *out = unconflicted;
        unconflicted = NULL;
        goto out;
    }

    /* Auth difference: events in the full auth chain (the state events
     * themselves included, as Synapse counts them) of some sets but not all. */
    for (size_t s = 0; s < n_sets; ++s) {
        const char *type;
        json_t *inner;
        json_object_foreach((json_t *)state_sets[s], type, inner)
        {
            const char *state_key;
            json_t *idv;
            json_object_foreach(inner, state_key, idv)
            {
                int i = node_get(&sr, json_string_value(idv));
                if (i < 0) {
                    rc = sr.err != 0 ? sr.err : AX_ENOTFOUND;
                    goto out;
                }
                mark_chain(&sr, i, (unsigned)s);
            }
        }
    }
    if (sr.err != 0) {
        rc = sr.err;
        goto out;
    }
    uint64_t all = n_sets == 64 ? UINT64_MAX : (((uint64_t)1 << n_sets) - 1);
    for (size_t i = 0; i < sr.n; ++i)
        if (sr.nodes[i].sets != 0 && sr.nodes[i].sets != all)
            sr.nodes[i].in_full = 1;
    /* full conflicted set: + the conflicted state set, + (v2.1) the conflicted state subgraph */
    for (size_t k = 0; k < conflicted.n; ++k)
        sr.nodes[conflicted.v[k]].in_full = 1;
    if (rv->room_id_from_create)
        mark_conflicted_subgraph(&sr, &conflicted);

    /* 1: power events and their chains in the full set, reverse topological power order */
    power_sort(&sr, &sorted_power);
    /* 2: iterative auth checks from the unconflicted state map (v2.1: from nothing) */
    resolved = rv->room_id_from_create ? json_object() : json_deep_copy(unconflicted);
    iterative_auth(&sr, &sorted_power, resolved);
    /* 3: the other events of the full set, in mainline order of the resolved power levels */
    size_t n_nodes = sr.n; /* nodes loaded from here on are not in the full set */
    for (size_t i = 0; i < n_nodes; ++i)
        if (sr.nodes[i].in_full && !sr.nodes[i].in_x)
            ivec_push(&leftover, (int)i);
    const char *pl_id = state_get(resolved, "m.room.power_levels", "");
    mainline_sort(&sr, &leftover, pl_id != NULL ? node_get(&sr, pl_id) : -1);
    /* 4: iterative auth checks on the partial state */
    iterative_auth(&sr, &leftover, resolved);
    /* 5: the unconflicted state map wins */
    const char *type;
    json_t *inner;
    json_object_foreach(unconflicted, type, inner)
    {
        const char *state_key;
        json_t *idv;
        json_object_foreach(inner, state_key, idv)
        {
            state_set(resolved, type, state_key, json_string_value(idv));
        }
    }
    if (sr.err != 0) {
        rc = sr.err;
        goto out;
    }
    *out = resolved;
    resolved = NULL;

out:
    for (size_t i = 0; i < sr.n; ++i) {
        free(sr.nodes[i].id);
        json_decref(sr.nodes[i].ev);
        ivec_dispose(&sr.nodes[i].auth);
        ivec_dispose(&sr.nodes[i].up);
    }
    free(sr.nodes);
    json_decref(sr.index);
    json_decref(unconflicted);
    json_decref(seen);
    json_decref(resolved);
    ivec_dispose(&conflicted);
    ivec_dispose(&sorted_power);
    ivec_dispose(&leftover);
    return rc;
}
