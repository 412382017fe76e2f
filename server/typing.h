/*
 * typing.h -- who is typing in which room: in memory only, as the spec
 * intends (typing is ephemeral), shared by all HTTP threads behind a mutex.
 * Every change bumps a serial that /sync tokens carry.
 */
#ifndef AX_TYPING_H
#define AX_TYPING_H

#include "common/common.h"

#include <jansson.h>

typedef struct st_ax_typing_t ax_typing_t;

ax_typing_t *ax_typing_new(void);
void ax_typing_free(ax_typing_t *t);

/**
 * Marks 'user_id' typing in 'room_id' until now + 'timeout_ms', or not
 * typing.  Returns true when the room's list of typing users changed.
 */
bool ax_typing_set(ax_typing_t *t, const char *room_id, const char *user_id, bool typing, uint64_t timeout_ms,
                   uint64_t now_ms);

/**
 * The users typing in 'room_id' now (a new reference: a JSON array) and the
 * serial of the room's last change in '*changed_at' (0 if never).
 */
json_t *ax_typing_get(ax_typing_t *t, const char *room_id, uint64_t now_ms, uint64_t *changed_at);

/**
 * Calls 'cb' once for each room whose typing list changed after serial
 * 'since' and at or before 'upto'; false (calling nothing) when changes
 * that old are no longer remembered.
 */
bool ax_typing_rooms_changed(ax_typing_t *t, uint64_t since, uint64_t upto, void (*cb)(void *arg, const char *room_id),
                             void *arg);

/** The serial of the latest change anywhere. */
uint64_t ax_typing_serial(ax_typing_t *t);

/**
 * Drops expired entries; calls 'cb' with each room whose list changed and
 * the users ('n' of them, borrowed for the call) who stopped typing there.
 */
void ax_typing_expire(ax_typing_t *t, uint64_t now_ms,
                      void (*cb)(void *arg, const char *room_id, const char *const *users, size_t n), void *arg);

#endif
