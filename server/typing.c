/*
 * typing.c -- typing notifications in memory (spec: Client-Server API
 * "Typing Notifications").  A room's entry lists its typing users with
 * their deadlines and the serial of its last change; entries stay when the
 * list empties, so an older token still sees that change.  A change ring
 * (changes.h, keyed by serial) tells /sync which rooms changed since its
 * token without looking at every room.
 */
#include "server/typing.h"
#include "server/changes.h"
#include "common/strmap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_typer_t {
    char *user_id;
    uint64_t until_ms;
} typer_t;

typedef struct st_room_typing_t {
    typer_t *typers;
    size_t n;
    uint64_t changed_at;
} room_typing_t;

struct st_ax_typing_t {
    pthread_mutex_t mutex;
    ax_strmap_t rooms; /* room_id -> room_typing_t */
    uint64_t serial;
    ax_changes_t *changes; /* which room changed at which serial */
};

#define TYPING_CHANGES_KEPT 4096

ax_typing_t *ax_typing_new(void)
{
    ax_typing_t *t = ax_calloc(1, sizeof(*t));
    pthread_mutex_init(&t->mutex, NULL);
    t->changes = ax_changes_new(0, TYPING_CHANGES_KEPT);
    return t;
}

static void room_free(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    room_typing_t *rt = value;
    for (size_t i = 0; i < rt->n; ++i)
        free(rt->typers[i].user_id);
    free(rt->typers);
    free(rt);
}

void ax_typing_free(ax_typing_t *t)
{
    if (t == NULL)
        return;
    ax_strmap_foreach(&t->rooms, room_free, NULL);
    ax_strmap_dispose(&t->rooms);
    ax_changes_free(t->changes);
    pthread_mutex_destroy(&t->mutex);
    free(t);
}

static void remove_at(room_typing_t *rt, size_t i)
{
    free(rt->typers[i].user_id);
    rt->typers[i] = rt->typers[--rt->n];
}

bool ax_typing_set(ax_typing_t *t, const char *room_id, const char *user_id, bool typing, uint64_t timeout_ms,
                   uint64_t now_ms)
{
    bool changed = false;
    pthread_mutex_lock(&t->mutex);
    room_typing_t *rt = ax_strmap_get(&t->rooms, room_id);
    size_t i = 0;
    if (rt != NULL)
        while (i < rt->n && strcmp(rt->typers[i].user_id, user_id) != 0)
            ++i;
    if (typing) {
        if (rt == NULL) {
            rt = ax_calloc(1, sizeof(*rt));
            ax_strmap_put(&t->rooms, room_id, rt);
        }
        if (i == rt->n) {
            rt->typers = ax_realloc(rt->typers, (rt->n + 1) * sizeof(*rt->typers));
            rt->typers[rt->n].user_id = ax_strdup(user_id);
            rt->n++;
            changed = true;
        }
        rt->typers[i].until_ms = now_ms + timeout_ms;
    } else if (rt != NULL && i < rt->n) {
        remove_at(rt, i);
        changed = true;
    }
    if (changed) {
        rt->changed_at = ++t->serial;
        ax_changes_record(t->changes, rt->changed_at, &room_id, 1);
    }
    pthread_mutex_unlock(&t->mutex);
    return changed;
}

json_t *ax_typing_get(ax_typing_t *t, const char *room_id, uint64_t now_ms, uint64_t *changed_at)
{
    json_t *users = json_array();
    pthread_mutex_lock(&t->mutex);
    room_typing_t *rt = ax_strmap_get(&t->rooms, room_id);
    *changed_at = rt != NULL ? rt->changed_at : 0;
    for (size_t i = 0; rt != NULL && i < rt->n; ++i)
        if (rt->typers[i].until_ms > now_ms)
            json_array_append_new(users, json_string(rt->typers[i].user_id));
    pthread_mutex_unlock(&t->mutex);
    return users;
}

uint64_t ax_typing_serial(ax_typing_t *t)
{
    pthread_mutex_lock(&t->mutex);
    uint64_t s = t->serial;
    pthread_mutex_unlock(&t->mutex);
    return s;
}

/* A room whose list changed, with the users who stopped typing. */
typedef struct st_expired_room_t {
    char *room_id;
    char **users;
    size_t n;
} expired_room_t;

typedef struct st_expire_t {
    ax_typing_t *t;
    uint64_t now;
    expired_room_t *changed;
    size_t n, cap;
} expire_t;

static void expire_room(void *arg, const char *room_id, void *value)
{
    expire_t *e = arg;
    room_typing_t *rt = value;
    expired_room_t er = {NULL, NULL, 0};
    for (size_t i = 0; i < rt->n;) {
        if (rt->typers[i].until_ms <= e->now) {
            er.users = ax_realloc(er.users, (er.n + 1) * sizeof(char *));
            er.users[er.n++] = ax_strdup(rt->typers[i].user_id);
            remove_at(rt, i);
        } else {
            ++i;
        }
    }
    if (er.n != 0) {
        rt->changed_at = ++e->t->serial;
        ax_changes_record(e->t->changes, rt->changed_at, &room_id, 1);
        if (e->n == e->cap)
            e->changed = ax_realloc(e->changed, (e->cap = e->cap ? e->cap * 2 : 8) * sizeof(*e->changed));
        er.room_id = ax_strdup(room_id);
        e->changed[e->n++] = er;
    }
}

void ax_typing_expire(ax_typing_t *t, uint64_t now_ms,
                      void (*cb)(void *arg, const char *room_id, const char *const *users, size_t n), void *arg)
{
    expire_t e = {t, now_ms, NULL, 0, 0};
    pthread_mutex_lock(&t->mutex);
    ax_strmap_foreach(&t->rooms, expire_room, &e);
    pthread_mutex_unlock(&t->mutex);
    /* rooms stay in the map with their serial, so a token taken earlier still sees the change */
    for (size_t i = 0; i < e.n; ++i) {
        cb(arg, e.changed[i].room_id, (const char *const *)e.changed[i].users, e.changed[i].n);
        for (size_t k = 0; k < e.changed[i].n; ++k)
            free(e.changed[i].users[k]);
        free(e.changed[i].users);
        free(e.changed[i].room_id);
    }
    free(e.changed);
}

bool ax_typing_rooms_changed(ax_typing_t *t, uint64_t since, uint64_t upto, void (*cb)(void *arg, const char *room_id),
                             void *arg)
{
    return ax_changes_rooms(t->changes, since, upto, cb, arg);
}
