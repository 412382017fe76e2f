/*
 * changes.c -- the room change ring of changes.h.
 *
 * A map room_id -> {id, last position} interns each room once; the ring
 * holds (position, room) pairs in commit order.  Walking the ring from the
 * newest entry back to the token meets a room possibly many times; a
 * per-walk generation mark reports it once.
 */
#include "server/changes.h"
#include "common/strmap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_room_t {
    char *id;
    uint64_t seen; /* generation of the last ax_changes_rooms call that reported it */
} room_t;

typedef struct st_entry_t {
    uint64_t pos;
    room_t *room;
} entry_t;

struct st_ax_changes_t {
    pthread_mutex_t mutex;
    ax_strmap_t rooms; /* room_id -> room_t */
    entry_t *ring;
    size_t cap, head, count; /* head: next slot to write */
    uint64_t floor;          /* changes after this position are all known */
    uint64_t generation;
    _Atomic uint64_t position; /* last recorded commit */
};

ax_changes_t *ax_changes_new(uint64_t start_pos, size_t capacity)
{
    ax_changes_t *c = ax_calloc(1, sizeof(*c));
    pthread_mutex_init(&c->mutex, NULL);
    c->cap = capacity != 0 ? capacity : 1;
    c->ring = ax_calloc(c->cap, sizeof(entry_t));
    c->floor = start_pos;
    atomic_store(&c->position, start_pos);
    return c;
}

static void room_free(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    room_t *r = value;
    free(r->id);
    free(r);
}

void ax_changes_free(ax_changes_t *c)
{
    if (c == NULL)
        return;
    ax_strmap_foreach(&c->rooms, room_free, NULL);
    ax_strmap_dispose(&c->rooms);
    pthread_mutex_destroy(&c->mutex);
    free(c->ring);
    free(c);
}

void ax_changes_record(ax_changes_t *c, uint64_t pos, const char *const *keys, size_t nkeys)
{
    pthread_mutex_lock(&c->mutex);
    for (size_t i = 0; i < nkeys; ++i) {
        if (keys[i][0] != '!')
            continue;
        room_t *r = ax_strmap_get(&c->rooms, keys[i]);
        if (r == NULL) {
            r = ax_calloc(1, sizeof(*r));
            r->id = ax_strdup(keys[i]);
            ax_strmap_put(&c->rooms, keys[i], r);
        }
        if (c->count == c->cap) {
            /* the oldest entry falls off: tokens up to its position can no longer be answered */
            entry_t *old = &c->ring[c->head];
            if (old->pos > c->floor)
                c->floor = old->pos;
        } else {
            c->count++;
        }
        c->ring[c->head] = (entry_t){pos, r};
        c->head = (c->head + 1) % c->cap;
    }
    if (pos > atomic_load(&c->position))
        atomic_store(&c->position, pos);
    pthread_mutex_unlock(&c->mutex);
}

uint64_t ax_changes_position(ax_changes_t *c)
{
    return atomic_load(&c->position);
}

bool ax_changes_rooms(ax_changes_t *c, uint64_t since, uint64_t upto, void (*cb)(void *arg, const char *room_id),
                      void *arg)
{
    pthread_mutex_lock(&c->mutex);
    bool ok = since >= c->floor;
    if (ok) {
        uint64_t gen = ++c->generation;
        size_t i = c->head;
        for (size_t n = 0; n < c->count; ++n) {
            i = (i + c->cap - 1) % c->cap;
            entry_t *e = &c->ring[i];
            if (e->pos <= since)
                break;
            if (e->pos <= upto && e->room->seen != gen) {
                e->room->seen = gen;
                cb(arg, e->room->id);
            }
        }
    }
    pthread_mutex_unlock(&c->mutex);
    return ok;
}
