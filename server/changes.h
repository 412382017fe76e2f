/*
 * changes.h -- which rooms changed at which stream position, in memory, so
 * an incremental /sync visits the rooms that changed since its token
 * instead of every room the user is in (DESIGN.md "Streams, sync and
 * wake-ups": read from indexes, never by scanning).
 *
 * The writer's commit hook records the room IDs a commit notified
 * (ax_room_notify_members passes the room ID as a notify key); a bounded
 * ring keeps the most recent changes.  A token older than the ring (or
 * than the server's start) cannot be answered, and /sync then looks at
 * every room, as it must after a restart anyway.
 */
#ifndef AX_CHANGES_H
#define AX_CHANGES_H

#include "common/common.h"

typedef struct st_ax_changes_t ax_changes_t;

/** 'start_pos': the stream position at start-up; 'capacity': changes kept. */
ax_changes_t *ax_changes_new(uint64_t start_pos, size_t capacity);
void ax_changes_free(ax_changes_t *c);

/**
 * Records a commit (writer thread, from the commit hook, for every commit):
 * the rooms among 'keys' (those starting with '!') changed at 'pos'.
 */
void ax_changes_record(ax_changes_t *c, uint64_t pos, const char *const *keys, size_t nkeys);

/**
 * The last position recorded.  Committed and recorded: a /sync reading up
 * to it misses no room (the writer publishes its own position before the
 * hook runs, so that one can be ahead of the ring).
 */
uint64_t ax_changes_position(ax_changes_t *c);

/**
 * Calls 'cb' once for every room changed after 'since' and at or before
 * 'upto', newest first.  Returns false, calling nothing, when the ring no
 * longer reaches back to 'since'.  'cb' runs under the lock: keep it short
 * (copy the IDs).
 */
bool ax_changes_rooms(ax_changes_t *c, uint64_t since, uint64_t upto, void (*cb)(void *arg, const char *room_id),
                      void *arg);

#endif
