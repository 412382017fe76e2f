/*
 * receipts.c -- typing notifications, read receipts and read markers (spec:
 * Client-Server API "Typing Notifications", "Receipts", "Fully read
 * markers"; typing.yaml, receipts.yaml, read_markers.yaml).
 *
 * Typing lives in memory (server/typing.c) and wakes the room's members
 * directly; receipts and markers are stored, take stream positions and wake
 * them through the writer.
 */
#include "server/cs/cs.h"
#include "core/events.h"
#include "core/push.h"
#include "core/rooms.h"
#include "federation/federation.h"
#include "server/typing.h"

#include <stdlib.h>
#include <string.h>

#define TYPING_MAX_TIMEOUT_MS 120000

/* Replies 403 unless the requester is joined to the room (404 if the room is unknown). */
static int joined_or_reply(ax_req_t *r, const char *room_id)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable"), -1;
    json_t *room = NULL;
    int rc = ax_db_room_get(txn, room_id, &room);
    char m[16] = "";
    if (rc == 0)
        ax_room_membership(txn, room_id, r->auth.user_id, m, sizeof(m));
    ax_db_read_end(txn);
    json_decref(room);
    if (rc != 0)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown room"), -1;
    if (strcmp(m, "join") != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You are not joined to this room"), -1;
    return 0;
}

/* ---- typing ---- */

typedef struct st_keys_t {
    const char **keys;
    size_t n, cap;
} keys_t;

static int collect_joined(void *arg, const char *user_id, const char *membership)
{
    keys_t *k = arg;
    if (strcmp(membership, "join") != 0)
        return 0;
    if (k->n == k->cap)
        k->keys = ax_realloc(k->keys, (k->cap = k->cap ? k->cap * 2 : 16) * sizeof(char *));
    k->keys[k->n++] = ax_strdup(user_id);
    return 0;
}

/* Wakes the long-polls of the room's joined members (typing changes bypass the writer). */
void ax_cs_typing_notify_room(ax_server_t *srv, const char *room_id)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(srv->db, &txn) != 0)
        return;
    keys_t k = {NULL, 0, 0};
    ax_db_room_members_foreach(txn, room_id, collect_joined, &k);
    ax_db_read_end(txn);
    ax_commit_info_t info = {.stream_pos = ax_writer_stream_pos(srv->writer), .keys = k.keys, .nkeys = k.n};
    ax_http_notify(srv, &info);
    for (size_t i = 0; i < k.n; ++i)
        free((char *)k.keys[i]);
    free(k.keys);
}

/* PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId} */
int ax_cs_typing(ax_req_t *r)
{
    const char *room_id = r->params[0];
    if (strcmp(r->params[1], r->auth.user_id) != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You can only set your own typing state");
    json_t *body;
    bool typing;
    json_int_t timeout = 30000;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_bool_or_reply(r, body, "typing", false, &typing) != 0 ||
        ax_field_int_or_reply(r, body, "timeout", false, &timeout) != 0)
        return 0;
    if (json_object_get(body, "typing") == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing 'typing'");
    if (timeout < 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "timeout must not be negative");
    if (joined_or_reply(r, room_id) != 0)
        return 0;
    uint64_t t = (uint64_t)timeout > TYPING_MAX_TIMEOUT_MS ? TYPING_MAX_TIMEOUT_MS : (uint64_t)timeout;
    bool changed = ax_typing_set(r->srv->typing, room_id, r->auth.user_id, typing, t, ax_now_ms());
    if (changed)
        ax_cs_typing_notify_room(r->srv, room_id);
    /* other servers in the room hear of every change, and of each renewed "typing" (clients repeat it
     * while the user types), which keeps their own typing timeout from running out */
    if (changed || typing)
        ax_fed_sender_typing(r->srv->fed, room_id, r->auth.user_id, typing);
    return ax_reply_json_new(r, 200, json_object());
}

/* ---- receipts and read markers ---- */

typedef struct st_receipt_write_t {
    char room_id[256];
    char user_id[256];
    struct {
        char type[32];
        char event_id[256];
        char thread_id[256];
        uint64_t event_pos; /* set by the writer */
    } items[3];
    size_t n;
    bool bad_event; /* set by the writer: an event is not in this room */
} receipt_write_t;

/* The m.receipt EDU for item 'i' of 'w' (spec: Server-Server API "Receipts"), queued for every other
 * server in the room. */
static int queue_receipt_edu(ax_txn_t *txn, const receipt_write_t *w, size_t i, uint64_t ts)
{
    json_t *data = json_pack("{s:I}", "ts", (json_int_t)ts);
    if (w->items[i].thread_id[0] != '\0')
        json_object_set_new(data, "thread_id", json_string(w->items[i].thread_id));
    json_t *content = json_pack("{s:{s:{s:{s:[s], s:o}}}}", w->room_id, w->items[i].type, w->user_id, "event_ids",
                                w->items[i].event_id, "data", data);
    int rc = content != NULL ? ax_db_fedq_push_edu_room(txn, w->room_id, ax_id_domain(w->user_id), "m.receipt", content)
                             : AX_EINVAL;
    json_decref(content);
    return rc;
}

static int receipt_apply(ax_txn_t *txn, void *data)
{
    receipt_write_t *w = data;
    w->bad_event = false;
    for (size_t i = 0; i < w->n; ++i) {
        ax_event_rec_t rec;
        if (ax_db_event_get_raw(txn, w->items[i].event_id, &rec) != 0 || strcmp(rec.room_id, w->room_id) != 0) {
            w->bad_event = true;
            return 0;
        }
        w->items[i].event_pos = rec.pos;
    }
    for (size_t i = 0; i < w->n; ++i) {
        uint64_t pos = ax_txn_next_stream_pos(txn);
        int rc;
        if (strcmp(w->items[i].type, "m.fully_read") == 0) {
            /* the fully-read marker is the room's m.fully_read account data */
            json_t *content = json_pack("{s:s}", "event_id", w->items[i].event_id);
            rc = ax_db_accountdata_put(txn, w->user_id, w->room_id, "m.fully_read", content, pos);
            json_decref(content);
            ax_txn_notify(txn, w->user_id);
        } else {
            uint64_t ts = ax_now_ms();
            rc = ax_db_receipt_put(txn, w->room_id, w->items[i].type, w->user_id, w->items[i].thread_id,
                                   w->items[i].event_id, ts, pos);
            if (strcmp(w->items[i].type, "m.read.private") == 0) {
                ax_txn_notify(txn, w->user_id);
                ax_txn_notify(txn, w->room_id); /* the room changed, for the owner's eyes only */
            } else {
                ax_room_notify_members(txn, w->room_id, NULL);
                /* public receipts go to the room's other servers too (private ones never leave) */
                if (rc == 0)
                    rc = queue_receipt_edu(txn, w, i, ts);
            }
            /* both read receipts clear notifications (spec: "Marking notifications as read") */
            if (rc == 0 && ax_push_of(txn) != NULL)
                rc = ax_push_receipt(ax_push_of(txn), txn, w->user_id, w->room_id, w->items[i].thread_id,
                                     w->items[i].event_pos, pos);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void receipt_written(ax_req_t *r, int result, void *data)
{
    receipt_write_t *w = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the receipt");
    if (w->bad_event)
        return (void)ax_reply_error(r, AX_M_NOT_FOUND, "Unknown event in this room");
    ax_reply_json_new(r, 200, json_object());
}

static bool valid_receipt_type(const char *t)
{
    return strcmp(t, "m.read") == 0 || strcmp(t, "m.read.private") == 0 || strcmp(t, "m.fully_read") == 0;
}

/* POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId} */
int ax_cs_receipt(ax_req_t *r)
{
    const char *room_id = r->params[0], *type = r->params[1], *event_id = r->params[2];
    if (!valid_receipt_type(type))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Unknown receipt type");
    json_t *body;
    const char *thread = NULL;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_string_or_reply(r, body, "thread_id", false, &thread) != 0)
        return 0;
    if (thread != NULL && strcmp(type, "m.fully_read") == 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "m.fully_read cannot be threaded");
    if (thread != NULL && strcmp(thread, "main") != 0 && thread[0] != '$')
        return ax_reply_error(r, AX_M_INVALID_PARAM, "thread_id must be \"main\" or an event ID");
    if (strlen(event_id) >= 256 || (thread != NULL && strlen(thread) >= 256))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Identifier too long");
    if (joined_or_reply(r, room_id) != 0)
        return 0;
    receipt_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->room_id, sizeof(w->room_id), "%s", room_id);
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    snprintf(w->items[0].type, sizeof(w->items[0].type), "%s", type);
    snprintf(w->items[0].event_id, sizeof(w->items[0].event_id), "%s", event_id);
    snprintf(w->items[0].thread_id, sizeof(w->items[0].thread_id), "%s", thread != NULL ? thread : "");
    w->n = 1;
    ax_req_write(r, receipt_apply, receipt_written, w, free);
    return 0;
}

/* POST /_matrix/client/v3/rooms/{roomId}/read_markers */
int ax_cs_read_markers(ax_req_t *r)
{
    const char *room_id = r->params[0];
    json_t *body;
    const char *fully = NULL, *read = NULL, *priv = NULL;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "m.fully_read", false, &fully) != 0 ||
        ax_field_string_or_reply(r, body, "m.read", false, &read) != 0 ||
        ax_field_string_or_reply(r, body, "m.read.private", false, &priv) != 0)
        return 0;
    if ((fully && strlen(fully) >= 256) || (read && strlen(read) >= 256) || (priv && strlen(priv) >= 256))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Identifier too long");
    if (joined_or_reply(r, room_id) != 0)
        return 0;
    receipt_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->room_id, sizeof(w->room_id), "%s", room_id);
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    const char *types[3] = {"m.fully_read", "m.read", "m.read.private"};
    const char *ids[3] = {fully, read, priv};
    for (size_t i = 0; i < 3; ++i) {
        if (ids[i] == NULL)
            continue;
        snprintf(w->items[w->n].type, sizeof(w->items[0].type), "%s", types[i]);
        snprintf(w->items[w->n].event_id, sizeof(w->items[0].event_id), "%s", ids[i]);
        w->n++;
    }
    ax_req_write(r, receipt_apply, receipt_written, w, free);
    return 0;
}
