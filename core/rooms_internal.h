/*
 * rooms_internal.h -- what the two ways into a room's timeline share: the
 * local pipeline (rooms.c, ax_room_send) and events from other servers
 * (ingest.c, ax_room_ingest).  Not for use outside core/.
 */
#ifndef AX_CORE_ROOMS_INTERNAL_H
#define AX_CORE_ROOMS_INTERNAL_H

#include "core/events.h"
#include "core/rooms.h"

/**
 * Indexes an event's content at 'pos': relations, threads (roots,
 * summaries).  The full-text index follows on its own (core/search.c).
 */
int ax_room_index_content(ax_txn_t *txn, const char *room_id, uint64_t pos, const char *event_id, const char *sender,
                          const json_t *content);

/**
 * Applies 'redaction' (whose client form 'redaction_client' becomes the
 * target's redacted_because) to event 'target' when it is in the same room
 * and the rules of 'rv' say it applies, judged by 'lk'.  An unknown target
 * is not an error.
 */
int ax_room_apply_redaction(ax_txn_t *txn, const ax_room_version_t *rv, ax_room_lookup_t *lk, const char *room_id,
                            const char *target, const json_t *redaction, json_t *redaction_client);

#endif
