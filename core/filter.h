/*
 * filter.h -- /sync and /messages filters (spec: Client-Server API
 * "Filtering"; filter.yaml): validation and matching.  A filter stays the
 * JSON the client sent; these functions read it.
 */
#ifndef AX_CORE_FILTER_H
#define AX_CORE_FILTER_H

#include "core/core.h"

/**
 * Checks 'filter' (borrowed) against the Filter schema.  Returns 0, or
 * AX_EINVAL with a message naming the offending field in 'err'.
 */
int ax_filter_validate(const json_t *filter, char *err, size_t errlen);

/** Checks a RoomEventFilter on its own (the /messages 'filter' parameter). */
int ax_filter_validate_room_event(const json_t *filter, char *err, size_t errlen);

/**
 * True when 'event' (client or PDU format, borrowed) passes an EventFilter
 * or RoomEventFilter 'f' (borrowed, NULL matches everything): types,
 * not_types, senders, not_senders (with '*' wildcards), rooms, not_rooms,
 * contains_url.
 */
bool ax_filter_event_matches(const json_t *f, const json_t *event);

/** True when the filter's types/not_types let 'type' through (a check before loading an event). */
bool ax_filter_type_allowed(const json_t *f, const char *type);

/** True when a RoomFilter's rooms/not_rooms (NULL: all) let 'room_id' through. */
bool ax_filter_room_allowed(const json_t *room_filter, const char *room_id);

/** The filter's "limit", or 'dflt' when absent. */
int ax_filter_limit(const json_t *f, int dflt);

/** Glob match with '*' (any run) and '?' (one character), as the spec's type filters use. */
bool ax_glob_match(const char *pattern, const char *s);

#endif
