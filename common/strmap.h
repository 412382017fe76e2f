/*
 * strmap.h -- a string-keyed hash map with open addressing (linear probing,
 * power-of-two capacity, keys copied).  Single-threaded: each owner keeps
 * its own.  Used for per-batch notification sets and per-thread waiter
 * indexes.
 */
#ifndef AX_STRMAP_H
#define AX_STRMAP_H

#include "common/common.h"

typedef struct st_ax_strmap_entry_t {
    char *key; /* NULL: empty slot; AX_STRMAP_TOMB: deleted */
    uint64_t hash;
    void *value;
} ax_strmap_entry_t;

typedef struct st_ax_strmap_t {
    ax_strmap_entry_t *slots;
    size_t cap;  /* 0 or a power of two */
    size_t size; /* live entries */
    size_t used; /* live + tombstones */
} ax_strmap_t;

#define AX_STRMAP_INIT                                                                                                 \
    {                                                                                                                  \
        NULL, 0, 0, 0                                                                                                  \
    }

/**
 * The maps' hash of 'key' (64-bit FNV-1a).  Stable across versions: storage
 * keys use it (the notification stage's buckets), so it must never change.
 */
uint64_t ax_str_hash(const char *key);

/** The value stored for 'key', or NULL. */
void *ax_strmap_get(const ax_strmap_t *m, const char *key);
/** Stores 'value' for 'key' (replacing any); returns the previous value or NULL. */
void *ax_strmap_put(ax_strmap_t *m, const char *key, void *value);
/** Removes 'key'; returns its value or NULL. */
void *ax_strmap_del(ax_strmap_t *m, const char *key);
/** Calls 'cb' for every entry (the map must not change meanwhile). */
void ax_strmap_foreach(const ax_strmap_t *m, void (*cb)(void *arg, const char *key, void *value), void *arg);
/** Removes everything (keeps the memory). */
void ax_strmap_clear(ax_strmap_t *m);
void ax_strmap_dispose(ax_strmap_t *m);

#endif
