/*
 * events.c -- sending and reading room events (spec: Client-Server API
 * "Room events", "Redactions", "Pagination"; room_send.yaml,
 * room_state.yaml, redaction.yaml, rooms.yaml, message_pagination.yaml,
 * event_context.yaml, room_event_by_timestamp.yaml, report_content.yaml).
 *
 * Every read path checks history visibility for the requesting user;
 * every write is one writer job through the local event pipeline.
 */
#include "server/cs/cs.h"
#include "federation/federation.h"
#include "core/events.h"
#include "core/filter.h"
#include "core/rooms.h"

#include <stdlib.h>
#include <string.h>

#define MESSAGES_DEFAULT_LIMIT 10
#define MESSAGES_MAX_LIMIT     1000

/* ---- sending ---- */

typedef struct st_send_t {
    const ax_origin_t *origin;
    char room_id[256];
    char sender[256];
    char device_id[128];
    char type[256];
    char state_key[256];
    bool is_state;
    char txn_id[256]; /* "" for state events */
    char redacts[256];
    json_t *content;
    ax_sent_t sent;
    char reason[256];
    bool duplicate; /* the txn ID was already used: 'sent' holds the first event */
} send_t;

static void send_free(void *p)
{
    send_t *s = p;
    json_decref(s->content);
    free(s);
}

static int send_apply(ax_txn_t *txn, void *data)
{
    send_t *s = data;
    s->duplicate = false;
    if (s->txn_id[0] != '\0' &&
        ax_db_txn_get(txn, s->sender, s->device_id, s->txn_id, s->sent.event_id, sizeof(s->sent.event_id)) == 0) {
        s->duplicate = true; /* idempotent per device and transaction ID */
        return 0;
    }
    json_t *local = NULL;
    if (s->txn_id[0] != '\0')
        local = json_pack("{s:{s:s, s:s}}", "io.axon.txn", "device", s->device_id, "txn_id", s->txn_id);
    ax_draft_t d = {.room_id = s->room_id,
                    .sender = s->sender,
                    .type = s->type,
                    .state_key = s->is_state ? s->state_key : NULL,
                    .content = s->content,
                    .redacts = s->redacts[0] ? s->redacts : NULL,
                    .unsigned_local = local};
    int rc = ax_room_send(txn, s->origin, &d, &s->sent, s->reason, sizeof(s->reason));
    json_decref(local);
    if (rc != 0)
        return rc;
    if (s->txn_id[0] != '\0' && (rc = ax_db_txn_put(txn, s->sender, s->device_id, s->txn_id, s->sent.event_id)) != 0)
        return rc;
    ax_room_notify_members(txn, s->room_id, s->is_state && strcmp(s->type, "m.room.member") == 0 ? s->state_key : NULL);
    return 0;
}

static void send_written(ax_req_t *r, int result, void *data)
{
    send_t *s = data;
    if (result != 0)
        return (void)ax_cs_room_error(r, result, s->reason);
    ax_reply_json_new(r, 200, json_pack("{s:s}", "event_id", s->sent.event_id));
}

/* Checks identifiers common to the send paths; replies and returns NULL when bad. */
static send_t *send_new_or_reply(ax_req_t *r, const char *room_id, const char *type)
{
    if (room_id[0] != '!' || strlen(room_id) >= 256) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room ID");
        return NULL;
    }
    if (type[0] == '\0' || strlen(type) > 255) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Event types are 1-255 bytes");
        return NULL;
    }
    send_t *s = ax_calloc(1, sizeof(*s));
    s->origin = &r->srv->origin;
    snprintf(s->room_id, sizeof(s->room_id), "%s", room_id);
    snprintf(s->sender, sizeof(s->sender), "%s", r->auth.user_id);
    snprintf(s->device_id, sizeof(s->device_id), "%s", r->auth.device_id);
    snprintf(s->type, sizeof(s->type), "%s", type);
    return s;
}

/* PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId} */
int ax_cs_send(ax_req_t *r)
{
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    const char *txn_id = r->params[2];
    if (txn_id[0] == '\0' || strlen(txn_id) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Transaction IDs are 1-255 bytes");
    if (strcmp(r->params[1], "m.room.redaction") == 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Use the /redact endpoint for redactions");
    send_t *s = send_new_or_reply(r, r->params[0], r->params[1]);
    if (s == NULL)
        return 0;
    snprintf(s->txn_id, sizeof(s->txn_id), "%s", txn_id);
    s->content = json_deep_copy(body);
    ax_req_write(r, send_apply, send_written, s, send_free);
    return 0;
}

/* PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} */
int ax_cs_state_put(ax_req_t *r)
{
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    const char *state_key = r->nparams > 2 ? r->params[2] : "";
    if (strlen(state_key) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "State keys are at most 255 bytes");
    if (strcmp(r->params[1], "m.room.member") == 0 && !ax_id_is_valid_user_id(state_key))
        return ax_reply_error(r, AX_M_BAD_JSON, "m.room.member needs a user ID as its state key");
    if (strcmp(r->params[1], "m.room.canonical_alias") == 0) {
        /* aliases a room advertises must exist and point to it (Complement TestRoomCanonicalAlias) */
        json_t *alias = json_object_get(body, "alias"), *alts = json_object_get(body, "alt_aliases");
        ax_txn_t *txn;
        if (ax_db_read_begin(r->srv->db, &txn) != 0)
            return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        bool ok = alias == NULL || json_is_null(alias) || json_is_string(alias);
        ok = ok && (alts == NULL || json_is_array(alts));
        json_t *check = json_array();
        if (json_is_string(alias))
            json_array_append(check, alias);
        size_t i;
        json_t *a;
        json_array_foreach(alts, i, a)
        {
            ok = ok && json_is_string(a);
            json_array_append(check, a);
        }
        json_array_foreach(check, i, a)
        {
            json_t *rec = NULL;
            const char *name = json_string_value(a);
            if (!ok || name == NULL)
                break;
            const char *server = ax_id_domain(name);
            if (name[0] != '#' || server == NULL) {
                ok = false;
                break;
            }
            if (strcmp(server, r->srv->cfg->server_name) != 0)
                continue; /* remote aliases cannot be checked here */
            if (ax_db_alias_get(txn, name, &rec) != 0 ||
                !ax_streq(json_string_value(json_object_get(rec, "room_id")), r->params[0]))
                ok = false;
            json_decref(rec);
        }
        json_decref(check);
        ax_db_read_end(txn);
        if (!ok)
            return ax_reply_error(r, AX_M_BAD_ALIAS, "An alias does not exist or points to another room");
    }
    send_t *s = send_new_or_reply(r, r->params[0], r->params[1]);
    if (s == NULL)
        return 0;
    s->is_state = true;
    snprintf(s->state_key, sizeof(s->state_key), "%s", state_key);
    s->content = json_deep_copy(body);
    ax_req_write(r, send_apply, send_written, s, send_free);
    return 0;
}

/* PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId} */
int ax_cs_redact(ax_req_t *r)
{
    json_t *body;
    const char *reason;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_string_or_reply(r, body, "reason", false, &reason) != 0)
        return 0;
    const char *room_id = r->params[0], *target = r->params[1], *txn_id = r->params[2];
    if (strlen(target) >= 256 || txn_id[0] == '\0' || strlen(txn_id) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid event or transaction ID");

    /* who may redact what (spec "Redactions"): anyone their own events, and those with the
     * redact power level anyone's.  The auth rules of v3+ rooms do not check this. */
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *ev = NULL;
    ax_event_rec_t rec;
    int rc = ax_db_event_get(txn, target, &ev, &rec);
    bool found = rc == 0 && strcmp(rec.room_id, room_id) == 0;
    bool own = found && ax_streq(json_string_value(json_object_get(ev, "sender")), r->auth.user_id);
    bool allowed = own;
    if (found && !own) {
        int64_t have = 0, need = 50;
        const ax_room_version_t *rv = ax_room_version_of(txn, room_id);
        ax_room_lookup_t lk = {.txn = txn, .room_id = room_id};
        if (rv != NULL && ax_power_level_of(rv, ax_room_lookup, &lk, r->auth.user_id, &have) == 0 &&
            ax_power_level_named(rv, ax_room_lookup, &lk, "redact", &need) == 0)
            allowed = have >= need;
        ax_room_lookup_dispose(&lk);
    }
    json_decref(ev);
    char m[16];
    ax_room_membership(txn, room_id, r->auth.user_id, m, sizeof(m));
    ax_db_read_end(txn);
    if (strcmp(m, "join") != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You are not joined to this room");
    if (!found)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown event in this room");
    if (!allowed)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You may only redact your own events");

    send_t *s = send_new_or_reply(r, room_id, "m.room.redaction");
    if (s == NULL)
        return 0;
    snprintf(s->txn_id, sizeof(s->txn_id), "%s", txn_id);
    snprintf(s->redacts, sizeof(s->redacts), "%s", target);
    s->content = json_object();
    /* v11 moved 'redacts' into content; putting it there too costs older rooms nothing */
    json_object_set_new(s->content, "redacts", json_string(target));
    if (reason != NULL)
        json_object_set_new(s->content, "reason", json_string(reason));
    ax_req_write(r, send_apply, send_written, s, send_free);
    return 0;
}

/* ---- reading ---- */

/*
 * Opens a read txn and checks that the requester may read the room now:
 * returns the txn, or NULL after replying (404 unknown room, 403 not a
 * member of a room that is not world-readable).  'pos_out' gets the
 * position up to which the requester may read (their leave for a left room).
 */
ax_txn_t *ax_cs_room_reader_or_reply(ax_req_t *r, const char *room_id, uint64_t *pos_out)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return NULL;
    }
    json_t *room = NULL;
    if (ax_db_room_get(txn, room_id, &room) != 0) {
        ax_db_read_end(txn);
        ax_reply_error(r, AX_M_FORBIDDEN, "You are not in this room (or it does not exist)");
        return NULL;
    }
    uint64_t last = (uint64_t)json_integer_value(json_object_get(room, "last_pos"));
    json_decref(room);
    json_t *m = NULL;
    const char *membership = NULL;
    if (ax_db_membership_get(txn, room_id, r->auth.user_id, &m) == 0)
        membership = json_string_value(json_object_get(m, "membership"));
    uint64_t upto = last;
    bool ok;
    if (ax_streq(membership, "join")) {
        ok = true;
    } else if (ax_streq(membership, "leave") || ax_streq(membership, "ban")) {
        /* a former member reads up to their leave */
        upto = (uint64_t)json_integer_value(json_object_get(m, "pos"));
        ok = true;
    } else {
        char hv[32];
        ax_db_visibility_at(txn, room_id, last, hv, sizeof(hv));
        ok = strcmp(hv, "world_readable") == 0;
    }
    json_decref(m);
    if (!ok) {
        ax_db_read_end(txn);
        ax_reply_error(r, AX_M_FORBIDDEN, "You are not in this room");
        return NULL;
    }
    *pos_out = upto;
    return txn;
}

/* GET /_matrix/client/v3/rooms/{roomId}/event/{eventId} */
int ax_cs_event_get(ax_req_t *r)
{
    ax_event_rec_t rec;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *ev = ax_event_load_client(txn, r->params[1], r->auth.user_id, r->auth.device_id, &rec);
    bool visible = ev != NULL && strcmp(rec.room_id, r->params[0]) == 0 && rec.pos != 0 &&
                   ax_room_user_can_see(txn, r->params[0], r->auth.user_id, rec.pos);
    ax_db_read_end(txn);
    if (!visible) {
        json_decref(ev);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Event not found");
    }
    return ax_reply_json_new(r, 200, ev);
}

/* GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} */
int ax_cs_state_get(ax_req_t *r)
{
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    const char *state_key = r->nparams > 2 ? r->params[2] : "";
    json_t *map = ax_room_state_at(txn, r->params[0], upto);
    const char *eid = ax_state_map_get(map, r->params[1], state_key);
    json_t *ev = eid != NULL ? ax_event_load_client(txn, eid, r->auth.user_id, r->auth.device_id, NULL) : NULL;
    json_decref(map);
    ax_db_read_end(txn);
    if (ev == NULL)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Event not found");
    const char *format = ax_req_query(r, "format");
    if (format != NULL && strcmp(format, "event") == 0)
        return ax_reply_json_new(r, 200, ev);
    json_t *content = json_incref(json_object_get(ev, "content"));
    json_decref(ev);
    return ax_reply_json_new(r, 200, content);
}

/* Appends the client events of a state map to 'out'. */
static void state_map_events(ax_req_t *r, ax_txn_t *txn, const json_t *map, json_t *out, const char *only_type)
{
    const char *type, *skey;
    json_t *keys, *eid;
    json_object_foreach((json_t *)map, type, keys)
    {
        if (only_type != NULL && strcmp(type, only_type) != 0)
            continue;
        json_object_foreach(keys, skey, eid)
        {
            json_t *ev = ax_event_load_client(txn, json_string_value(eid), r->auth.user_id, r->auth.device_id, NULL);
            if (ev != NULL)
                json_array_append_new(out, ev);
        }
    }
}

/* GET /_matrix/client/v3/rooms/{roomId}/state */
int ax_cs_state_all(ax_req_t *r)
{
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    json_t *map = ax_room_state_at(txn, r->params[0], upto);
    json_t *out = json_array();
    state_map_events(r, txn, map, out, NULL);
    json_decref(map);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, out);
}

/* Parses a pagination token: "t<pos>" or a /sync token "s<pos>_..." (the point after 'pos'). */
bool ax_cs_parse_pagination(const char *tok, uint64_t *pos)
{
    if (tok == NULL || (tok[0] != 't' && tok[0] != 's'))
        return false;
    char num[24];
    size_t n = strcspn(tok + 1, "_");
    if (n == 0 || n >= sizeof(num))
        return false;
    memcpy(num, tok + 1, n);
    num[n] = '\0';
    return ax_parse_u64(num, pos) == 0;
}

typedef struct st_page_t {
    ax_req_t *r;
    ax_txn_t *txn;
    const char *room_id;
    const json_t *filter;
    uint64_t stop; /* 'to' bound (exclusive side per direction) */
    bool has_stop;
    bool backwards;
    int limit;
    json_t *chunk;
    json_t *senders;
    uint64_t last;
    size_t seen;
    bool more;
} page_t;

static int page_cb(void *arg, uint64_t pos, const char *event_id)
{
    page_t *p = arg;
    if (p->has_stop && (p->backwards ? pos <= p->stop : pos > p->stop))
        return 1;
    if ((int)json_array_size(p->chunk) == p->limit) {
        p->more = true;
        return 1;
    }
    p->last = pos;
    p->seen++;
    if (!ax_room_user_can_see(p->txn, p->room_id, p->r->auth.user_id, pos))
        return 0;
    json_t *ev = ax_event_load_client(p->txn, event_id, p->r->auth.user_id, p->r->auth.device_id, NULL);
    if (ev == NULL)
        return 0;
    if (!ax_filter_event_matches(p->filter, ev)) {
        json_decref(ev);
        return 0;
    }
    const char *sender = json_string_value(json_object_get(ev, "sender"));
    if (sender != NULL)
        json_object_set_new(p->senders, sender, json_true());
    json_array_append_new(p->chunk, ev);
    return 0;
}

/* ---- history from before this server joined (federation/backfill.c) ---- */

typedef struct st_history_t {
    page_t *p;
    bool visible;        /* the room's history before our first event may be shown to this user */
    uint64_t lowest;     /* depth of the last backfilled event looked at */
    char lowest_id[256]; /* ... and its ID */
    bool any;
} history_t;

static int history_cb(void *arg, uint64_t depth, const char *event_id)
{
    history_t *h = arg;
    page_t *p = h->p;
    if ((int)json_array_size(p->chunk) == p->limit) {
        p->more = true;
        return 1;
    }
    h->lowest = depth;
    snprintf(h->lowest_id, sizeof(h->lowest_id), "%s", event_id);
    h->any = true;
    if (!h->visible)
        return 0;
    json_t *ev = ax_event_load_client(p->txn, event_id, p->r->auth.user_id, p->r->auth.device_id, NULL);
    if (ev == NULL)
        return 0;
    if (!ax_filter_event_matches(p->filter, ev)) {
        json_decref(ev);
        return 0;
    }
    const char *sender = json_string_value(json_object_get(ev, "sender"));
    if (sender != NULL)
        json_object_set_new(p->senders, sender, json_true());
    json_array_append_new(p->chunk, ev);
    return 0;
}

static int first_event_cb(void *arg, uint64_t pos, const char *event_id)
{
    (void)pos;
    snprintf(arg, 256, "%s", event_id);
    return 1;
}

/*
 * The room's history before this server's first event of it: whether the
 * user may see it (world_readable, or shared and a member now: our users
 * were not in the room then), and the depth it lies below.  False when
 * there is none (the room began here).
 */
static bool history_before(page_t *p, char *first_id, uint64_t *below, bool *visible)
{
    first_id[0] = '\0';
    ax_db_timeline_scan(p->txn, p->room_id, 0, false, first_event_cb, first_id);
    json_t *first = NULL;
    ax_event_rec_t rec;
    if (first_id[0] == '\0' || ax_db_event_get(p->txn, first_id, &first, &rec) != 0)
        return false;
    bool began_here = ax_streq(json_string_value(json_object_get(first, "type")), "m.room.create");
    json_int_t depth = json_integer_value(json_object_get(first, "depth"));
    json_decref(first);
    if (began_here)
        return false;
    *below = depth > 0 ? (uint64_t)depth : 0;
    json_t *state = ax_room_state_before(p->txn, p->room_id, rec.pos);
    const char *hv_id = ax_state_map_get(state, "m.room.history_visibility", "");
    json_t *hv_ev = NULL;
    const char *hv = "shared";
    if (hv_id != NULL && ax_db_event_get(p->txn, hv_id, &hv_ev, NULL) == 0)
        hv = json_string_value(json_object_get(json_object_get(hv_ev, "content"), "history_visibility"));
    char now[16];
    ax_room_membership(p->txn, p->room_id, p->r->auth.user_id, now, sizeof(now));
    *visible = ax_streq(hv, "world_readable") || (ax_streq(hv, "shared") && strcmp(now, "join") == 0);
    json_decref(hv_ev);
    json_decref(state);
    return true;
}

static bool history_complete(ax_txn_t *txn, const char *room_id)
{
    json_t *room = NULL;
    bool done = ax_db_room_get(txn, room_id, &room) != 0 || json_is_true(json_object_get(room, "history_complete"));
    json_decref(room);
    return done;
}

/* Parses a "d<depth>" token: paging through the history fetched from other servers. */
static bool parse_depth_token(const char *tok, uint64_t *depth)
{
    return tok != NULL && tok[0] == 'd' && ax_parse_u64(tok + 1, depth) == 0;
}

static char backfilled_once; /* r->route_data of a /messages that asked other servers already */

static void messages_after_backfill(ax_req_t *r, void *arg)
{
    (void)arg;
    ax_cs_messages(r);
}

/* GET /_matrix/client/v3/rooms/{roomId}/messages */
int ax_cs_messages(ax_req_t *r)
{
    const char *from = ax_req_query(r, "from"), *to = ax_req_query(r, "to"), *dir = ax_req_query(r, "dir");
    const char *limit_s = ax_req_query(r, "limit"), *filter_s = ax_req_query(r, "filter");
    if (dir == NULL)
        dir = "b";
    if (strcmp(dir, "b") != 0 && strcmp(dir, "f") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "dir must be b or f");
    uint64_t limit = MESSAGES_DEFAULT_LIMIT, from_pos = 0, to_pos = 0;
    if (limit_s != NULL && ax_parse_u64(limit_s, &limit) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must be a non-negative integer");
    if (limit > MESSAGES_MAX_LIMIT)
        limit = MESSAGES_MAX_LIMIT;
    uint64_t from_depth = 0;
    bool from_history = parse_depth_token(from, &from_depth);
    if (from != NULL && !from_history && !ax_cs_parse_pagination(from, &from_pos))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid from token");
    if (from_history && strcmp(dir, "b") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "History tokens page backwards only");
    if (to != NULL && !ax_cs_parse_pagination(to, &to_pos))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid to token");
    json_t *filter = NULL;
    if (filter_s != NULL) {
        if ((filter = json_loads(filter_s, JSON_REJECT_DUPLICATES, NULL)) == NULL)
            return ax_reply_error(r, AX_M_NOT_JSON, "filter is not JSON");
        ax_req_hold_json(r, filter);
        char msg[256];
        if (ax_filter_validate_room_event(filter, msg, sizeof(msg)) != 0)
            return ax_reply_error(r, AX_M_BAD_JSON, msg);
    }
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    bool backwards = strcmp(dir, "b") == 0;
    page_t p = {.r = r,
                .txn = txn,
                .room_id = r->params[0],
                .filter = filter,
                .stop = to_pos,
                .has_stop = to != NULL,
                .backwards = backwards,
                .limit = (int)limit,
                .chunk = json_array(),
                .senders = json_object()};
    /* a token names the point after 'pos': backwards starts at pos, forwards after it */
    uint64_t start = from == NULL ? (backwards ? upto : 0) : (backwards ? from_pos : from_pos + 1);
    if (backwards && start > upto)
        start = upto;
    if (limit > 0 && !from_history)
        ax_db_timeline_scan(txn, r->params[0], start, backwards, page_cb, &p);
    if (!backwards)
        p.more = p.more && p.last < upto;

    /* past the start of this server's timeline: the history fetched from others, fetching more if needed */
    const char *history_end = NULL;
    char first_id[256];
    uint64_t below = 0;
    bool visible = false;
    if (backwards && !p.more && !p.has_stop && (int)json_array_size(p.chunk) < p.limit &&
        history_before(&p, first_id, &below, &visible) && visible) {
        history_t h = {.p = &p, .visible = visible, .lowest = from_history ? from_depth : below};
        snprintf(h.lowest_id, sizeof(h.lowest_id), "%s", first_id);
        if (from_history && from_depth < below)
            below = from_depth;
        ax_db_backfill_scan(txn, r->params[0], below, history_cb, &h);
        bool complete = history_complete(txn, r->params[0]);
        if (!p.more && !complete && r->route_data != &backfilled_once && r->srv->fed != NULL) {
            /* not enough here yet: ask the room's other servers, then answer again from the top */
            char from_event[256];
            snprintf(from_event, sizeof(from_event), "%s", h.lowest_id);
            json_decref(p.chunk);
            json_decref(p.senders);
            ax_db_read_end(txn);
            r->route_data = &backfilled_once; /* once per request */
            ax_fed_backfill(r, r->params[0], from_event, (size_t)limit, messages_after_backfill, NULL, NULL);
            return 0;
        }
        if (p.more || (!complete && h.any))
            history_end = ax_psprintf(r, "d%llu", (unsigned long long)h.lowest);
        p.more = false;
    }

    json_t *out = json_pack("{s:o, s:s}", "chunk", p.chunk, "start",
                            from != NULL ? from : ax_psprintf(r, "t%llu", (unsigned long long)start));
    /* 'end' only while there is more to read in that direction */
    if (history_end != NULL) {
        json_object_set_new(out, "end", json_string(history_end));
    } else if (p.more) {
        uint64_t end = backwards ? p.last - 1 : p.last;
        json_object_set_new(out, "end", json_string(ax_psprintf(r, "t%llu", (unsigned long long)end)));
    }
    /* lazy-loaded members: the senders' member events at this point */
    if (json_is_true(json_object_get(filter, "lazy_load_members")) && json_object_size(p.senders) != 0) {
        json_t *map = ax_room_state_at(txn, r->params[0], upto);
        json_t *state = json_array();
        const char *user;
        json_t *yes;
        json_object_foreach(p.senders, user, yes)
        {
            const char *eid = ax_state_map_get(map, "m.room.member", user);
            json_t *ev = eid ? ax_event_load_client(txn, eid, r->auth.user_id, r->auth.device_id, NULL) : NULL;
            if (ev != NULL)
                json_array_append_new(state, ev);
        }
        json_object_set_new(out, "state", state);
        json_decref(map);
    }
    json_decref(p.senders);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, out);
}

/* GET /_matrix/client/v3/rooms/{roomId}/context/{eventId} */
int ax_cs_context(ax_req_t *r)
{
    uint64_t limit = 10;
    const char *ls = ax_req_query(r, "limit");
    if (ls != NULL && ax_parse_u64(ls, &limit) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must be a non-negative integer");
    if (limit > 100)
        limit = 100;
    json_t *filter = NULL;
    const char *fs = ax_req_query(r, "filter");
    if (fs != NULL) {
        char msg[256];
        if ((filter = json_loads(fs, 0, NULL)) == NULL)
            return ax_reply_error(r, AX_M_NOT_JSON, "filter is not JSON");
        ax_req_hold_json(r, filter);
        if (ax_filter_validate_room_event(filter, msg, sizeof(msg)) != 0)
            return ax_reply_error(r, AX_M_BAD_JSON, msg);
    }
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    ax_event_rec_t rec;
    json_t *ev = ax_event_load_client(txn, r->params[1], r->auth.user_id, r->auth.device_id, &rec);
    if (ev == NULL || strcmp(rec.room_id, r->params[0]) != 0 || rec.pos == 0 || rec.pos > upto ||
        !ax_room_user_can_see(txn, r->params[0], r->auth.user_id, rec.pos)) {
        json_decref(ev);
        ax_db_read_end(txn);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Event not found");
    }
    uint64_t pos = rec.pos;
    size_t before_n = (size_t)(limit / 2), after_n = (size_t)(limit - limit / 2);
    page_t b = {.r = r,
                .txn = txn,
                .room_id = r->params[0],
                .filter = filter,
                .backwards = true,
                .limit = (int)before_n,
                .chunk = json_array(),
                .senders = json_object()};
    page_t a = {.r = r,
                .txn = txn,
                .room_id = r->params[0],
                .filter = filter,
                .backwards = false,
                .stop = upto,
                .has_stop = true,
                .limit = (int)after_n,
                .chunk = json_array(),
                .senders = json_object()};
    if (pos > 1 && before_n > 0)
        ax_db_timeline_scan(txn, r->params[0], pos - 1, true, page_cb, &b);
    if (after_n > 0)
        ax_db_timeline_scan(txn, r->params[0], pos + 1, false, page_cb, &a);
    uint64_t end_pos = a.seen ? a.last : pos;
    json_t *map = ax_room_state_at(txn, r->params[0], end_pos);
    json_t *state = json_array();
    state_map_events(r, txn, map, state, NULL);
    json_decref(map);
    json_t *out =
        json_pack("{s:o, s:o, s:o, s:o, s:s, s:s}", "event", ev, "events_before", b.chunk, "events_after", a.chunk,
                  "state", state, "start", ax_psprintf(r, "t%llu", (unsigned long long)(b.seen ? b.last - 1 : pos - 1)),
                  "end", ax_psprintf(r, "t%llu", (unsigned long long)end_pos));
    json_decref(b.senders);
    json_decref(a.senders);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, out);
}

/* ---- members ---- */

/* GET /_matrix/client/v3/rooms/{roomId}/members */
int ax_cs_members(ax_req_t *r)
{
    const char *at = ax_req_query(r, "at"), *membership = ax_req_query(r, "membership"),
               *not_membership = ax_req_query(r, "not_membership");
    uint64_t at_pos = 0;
    if (at != NULL && !ax_cs_parse_pagination(at, &at_pos))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid 'at' token");
    static const char *const kinds[] = {"join", "invite", "knock", "leave", "ban"};
    for (int k = 0; k < 2; ++k) {
        const char *m = k == 0 ? membership : not_membership;
        bool known = m == NULL;
        for (size_t i = 0; i < AX_ARRAY_SIZE(kinds) && !known; ++i)
            known = strcmp(m, kinds[i]) == 0;
        if (!known)
            return ax_reply_error(r, AX_M_INVALID_PARAM, "Unknown membership");
    }
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    if (at != NULL && at_pos < upto)
        upto = at_pos;
    json_t *map = ax_room_state_at(txn, r->params[0], upto);
    json_t *all = json_array(), *chunk = json_array();
    state_map_events(r, txn, map, all, "m.room.member");
    size_t i;
    json_t *ev;
    json_array_foreach(all, i, ev)
    {
        const char *m = json_string_value(json_object_get(json_object_get(ev, "content"), "membership"));
        if ((membership != NULL && !ax_streq(m, membership)) || (not_membership != NULL && ax_streq(m, not_membership)))
            continue;
        json_array_append(chunk, ev);
    }
    json_decref(all);
    json_decref(map);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "chunk", chunk));
}

/* GET /_matrix/client/v3/rooms/{roomId}/joined_members */
int ax_cs_joined_members(ax_req_t *r)
{
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    json_t *map = ax_room_state_at(txn, r->params[0], upto);
    json_t *joined = json_object();
    const char *user;
    json_t *eid;
    json_object_foreach(json_object_get(map, "m.room.member"), user, eid)
    {
        json_t *pdu = NULL;
        if (ax_db_event_get(txn, json_string_value(eid), &pdu, NULL) != 0)
            continue;
        json_t *content = json_object_get(pdu, "content");
        if (ax_streq(json_string_value(json_object_get(content, "membership")), "join")) {
            json_t *entry = json_object();
            json_t *v;
            if ((v = json_object_get(content, "displayname")) != NULL && json_is_string(v))
                json_object_set(entry, "display_name", v);
            if ((v = json_object_get(content, "avatar_url")) != NULL && json_is_string(v))
                json_object_set(entry, "avatar_url", v);
            json_object_set_new(joined, user, entry);
        }
        json_decref(pdu);
    }
    json_decref(map);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "joined", joined));
}

/* ---- GET /timestamp_to_event ---- */

typedef struct st_ts_t {
    ax_req_t *r;
    ax_txn_t *txn;
    const char *room_id;
    uint64_t ts;
    bool forwards;
    char event_id[256];
    uint64_t found_ts;
    bool found;
} ts_t;

static int ts_cb(void *arg, uint64_t pos, const char *event_id)
{
    ts_t *t = arg;
    json_t *pdu = NULL;
    if (ax_db_event_get(t->txn, event_id, &pdu, NULL) != 0)
        return 0;
    uint64_t ets = (uint64_t)json_integer_value(json_object_get(pdu, "origin_server_ts"));
    json_decref(pdu);
    bool hit = t->forwards ? ets >= t->ts : ets <= t->ts;
    if (hit && ax_room_user_can_see(t->txn, t->room_id, t->r->auth.user_id, pos)) {
        snprintf(t->event_id, sizeof(t->event_id), "%s", event_id);
        t->found_ts = ets;
        t->found = true;
        return 1;
    }
    return 0;
}

/* GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event */
int ax_cs_timestamp_to_event(ax_req_t *r)
{
    const char *ts_s = ax_req_query(r, "ts"), *dir = ax_req_query(r, "dir");
    uint64_t ts;
    if (ts_s == NULL || ax_parse_u64(ts_s, &ts) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "ts must be a timestamp in milliseconds");
    if (dir == NULL || (strcmp(dir, "f") != 0 && strcmp(dir, "b") != 0))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "dir must be f or b");
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    ts_t t = {.r = r, .txn = txn, .room_id = r->params[0], .ts = ts, .forwards = strcmp(dir, "f") == 0};
    /* timestamps grow with positions nearly always: walk from the side the answer is on */
    ax_db_timeline_scan(txn, r->params[0], t.forwards ? 0 : upto, !t.forwards, ts_cb, &t);
    ax_db_read_end(txn);
    if (!t.found)
        return ax_reply_error(r, AX_M_NOT_FOUND, "No event found in that direction");
    return ax_reply_json_new(
        r, 200, json_pack("{s:s, s:I}", "event_id", t.event_id, "origin_server_ts", (json_int_t)t.found_ts));
}

/* ---- POST /rooms/{roomId}/report/{eventId} ---- */

/* POST /_matrix/client/v3/rooms/{roomId}/report/{eventId} */
int ax_cs_report(ax_req_t *r)
{
    json_t *body;
    const char *reason;
    json_int_t score = 0;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_string_or_reply(r, body, "reason", false, &reason) != 0 ||
        ax_field_int_or_reply(r, body, "score", false, &score) != 0)
        return 0;
    if (score > 0 || score < -100)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "score must be between -100 and 0");
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    ax_event_rec_t rec;
    bool ok = ax_db_event_get_raw(txn, r->params[1], &rec) == 0 && strcmp(rec.room_id, r->params[0]) == 0 &&
              rec.pos != 0 && ax_room_user_can_see(txn, r->params[0], r->auth.user_id, rec.pos);
    ax_db_read_end(txn);
    if (!ok)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Event not found");
    /* reports go to the operator's log; there is no moderation queue (yet) */
    ax_log(AX_LOG_WARN, "report: %s reported %s in %s (score %lld): %s", r->auth.user_id, r->params[1], r->params[0],
           (long long)score, reason != NULL ? reason : "");
    return ax_reply_json_new(r, 200, json_object());
}
