/*
 * strmap.c -- open-addressing string hash map (FNV-1a hashes, linear
 * probing, tombstones, grows at 70% load).
 */
#include "common/strmap.h"

#include <stdlib.h>
#include <string.h>

static char tomb_marker;
#define TOMB (&tomb_marker)

uint64_t ax_str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; ++s)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static ax_strmap_entry_t *find(const ax_strmap_t *m, const char *key, uint64_t h)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        ax_strmap_entry_t *e = &m->slots[i];
        if (e->key == NULL)
            return NULL;
        if (e->key != TOMB && e->hash == h && strcmp(e->key, key) == 0)
            return e;
    }
}

static void grow(ax_strmap_t *m)
{
    size_t ncap = m->cap == 0 ? 16 : (m->size * 2 >= m->cap ? m->cap * 2 : m->cap);
    ax_strmap_entry_t *old = m->slots;
    size_t ocap = m->cap;
    m->slots = ax_calloc(ncap, sizeof(*m->slots));
    m->cap = ncap;
    m->used = m->size;
    for (size_t i = 0; i < ocap; ++i) {
        if (old[i].key == NULL || old[i].key == TOMB)
            continue;
        size_t j = old[i].hash & (ncap - 1);
        while (m->slots[j].key != NULL)
            j = (j + 1) & (ncap - 1);
        m->slots[j] = old[i];
    }
    free(old);
}

void *ax_strmap_get(const ax_strmap_t *m, const char *key)
{
    ax_strmap_entry_t *e = find(m, key, ax_str_hash(key));
    return e ? e->value : NULL;
}

void *ax_strmap_put(ax_strmap_t *m, const char *key, void *value)
{
    uint64_t h = ax_str_hash(key);
    ax_strmap_entry_t *e = find(m, key, h);
    if (e != NULL) {
        void *old = e->value;
        e->value = value;
        return old;
    }
    if ((m->used + 1) * 10 >= m->cap * 7)
        grow(m);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].key != NULL && m->slots[i].key != TOMB)
        i = (i + 1) & (m->cap - 1);
    if (m->slots[i].key == NULL)
        m->used++;
    m->slots[i].key = ax_strdup(key);
    m->slots[i].hash = h;
    m->slots[i].value = value;
    m->size++;
    return NULL;
}

void *ax_strmap_del(ax_strmap_t *m, const char *key)
{
    ax_strmap_entry_t *e = find(m, key, ax_str_hash(key));
    if (e == NULL)
        return NULL;
    void *v = e->value;
    free(e->key);
    e->key = TOMB;
    e->value = NULL;
    m->size--;
    return v;
}

void ax_strmap_foreach(const ax_strmap_t *m, void (*cb)(void *arg, const char *key, void *value), void *arg)
{
    for (size_t i = 0; i < m->cap; ++i)
        if (m->slots[i].key != NULL && m->slots[i].key != TOMB)
            cb(arg, m->slots[i].key, m->slots[i].value);
}

void ax_strmap_clear(ax_strmap_t *m)
{
    for (size_t i = 0; i < m->cap; ++i) {
        if (m->slots[i].key != NULL && m->slots[i].key != TOMB)
            free(m->slots[i].key);
        m->slots[i].key = NULL;
        m->slots[i].value = NULL;
    }
    m->size = m->used = 0;
}

void ax_strmap_dispose(ax_strmap_t *m)
{
    ax_strmap_clear(m);
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}
