/*
 * api_events.c -- serving a room's events to other servers (spec:
 * Server-Server API "Retrieving events", "Backfilling and retrieving missing
 * events", "Retrieving event authorisation information"; events.yaml,
 * backfill.yaml, event_auth.yaml): GET /event, /state, /state_ids,
 * /event_auth, /backfill, /timestamp_to_event and POST /get_missing_events.
 *
 * Every route is AX_ROUTE_FED (r->auth.server is the verified origin).  Each
 * one that names a room applies the room's server ACL first (403
 * M_FORBIDDEN, "Server Access Control Lists"), then history visibility for
 * the asking server (core/servers.c): a server in the room (one of its users
 * joined) may walk the room, a server that is not may read what is
 * world_readable; events it may not see are sent redacted by /backfill and
 * /get_missing_events and refused by the rest.  Rejected events are never
 * served; soft-failed ones only when asked for by ID.  PDUs go out as
 * stored, without our server-local "unsigned".
 *
 * /state, /state_ids and /event_auth can be large (a big room's whole state
 * and auth chain) and are built on a worker; the rest is bounded by its
 * limit and runs on the HTTP thread.
 */
#include "server/handlers.h"
#include "core/servers.h"

#include <stdlib.h>
#include <string.h>

#define BACKFILL_MAX      100 /* most PDUs one /backfill returns */
#define MISSING_DEFAULT   10  /* get_missing_events' limit when none is given (spec) */
#define MISSING_MAX       100
#define BACKFILL_FROM_MAX 20 /* most 'v' starting points */

/* A transaction carrying 'pdus' (stolen): {origin, origin_server_ts, pdus}. */
static json_t *transaction(ax_req_t *r, json_t *pdus)
{
    return json_pack("{s:s, s:I, s:o}", "origin", r->srv->cfg->server_name, "origin_server_ts", (json_int_t)ax_now_ms(),
                     "pdus", pdus);
}

/* ---- a room as the asking server sees it ---- */

typedef struct st_room_ctx_t {
    ax_txn_t *txn;
    const ax_room_version_t *rv;
    ax_server_view_t view;
} room_ctx_t;

static void room_ctx_end(room_ctx_t *c)
{
    ax_server_view_dispose(&c->view);
    ax_db_read_end(c->txn);
    c->txn = NULL;
}

/*
 * Opens 'room_id' for the origin: 404 for a room we do not know, 403 when
 * its ACL denies the origin.  On success fills 'c' (end it with
 * room_ctx_end) and returns 0; otherwise replies and returns -1.
 */
static int room_open_or_reply(ax_req_t *r, const char *room_id, room_ctx_t *c)
{
    memset(c, 0, sizeof(*c));
    if (ax_db_read_begin(r->srv->db, &c->txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return -1;
    }
    c->rv = ax_room_version_of(c->txn, room_id);
    if (c->rv == NULL) {
        ax_db_read_end(c->txn);
        ax_reply_error(r, AX_M_NOT_FOUND, "Unknown room");
        return -1;
    }
    if (!ax_room_server_allowed(c->txn, room_id, r->auth.server)) {
        ax_db_read_end(c->txn);
        ax_reply_error(r, AX_M_FORBIDDEN, "This server may not take part in this room (server ACL or m.federate)");
        return -1;
    }
    if (ax_server_view_init(&c->view, c->txn, room_id, r->auth.server) != 0) {
        room_ctx_end(c);
        ax_reply_error(r, AX_M_INTERNAL, "Database error");
        return -1;
    }
    return 0;
}

/* Whether the origin may walk the room's history at all: it is in the room, or the room is world_readable now. */
static bool may_walk(room_ctx_t *c, const char *room_id)
{
    if (c->view.joined)
        return true;
    json_t *hv = ax_room_state_content(c->txn, room_id, "m.room.history_visibility", "");
    bool open = ax_streq(json_string_value(json_object_get(hv, "history_visibility")), "world_readable");
    json_decref(hv);
    return open;
}

/* The PDU of 'event_id' as the origin may have it: whole, redacted, or NULL when not to be sent at all. */
static json_t *pdu_for(room_ctx_t *c, const char *event_id, bool redact_invisible)
{
    json_t *pdu = NULL;
    ax_event_rec_t rec;
    if (ax_db_event_get(c->txn, event_id, &pdu, &rec) != 0)
        return NULL;
    json_t *out = NULL;
    if ((rec.flags & AX_EVENT_F_REJECTED) != 0)
        out = NULL;
    else if (ax_server_view_can_see(&c->view, event_id, pdu, &rec))
        out = ax_event_federation_format(pdu);
    else if (redact_invisible)
        out = ax_event_redact(pdu, c->rv); /* the redaction algorithm keeps no "unsigned" */
    json_decref(pdu);
    return out;
}

/* ---- GET /event/{eventId} ---- */

/* GET /_matrix/federation/v1/event/{eventId} */
int ax_fed_events_get(ax_req_t *r)
{
    const char *event_id = r->params[0];
    if (!ax_id_is_valid_event_id(event_id, NULL))
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown event");
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    ax_event_rec_t rec;
    int rc = ax_db_event_get_raw(txn, event_id, &rec);
    bool rejected = rc == 0 && (rec.flags & AX_EVENT_F_REJECTED) != 0;
    char *room_id = rc == 0 ? ax_pstrdup(r, rec.room_id) : NULL;
    ax_db_read_end(txn);
    if (rc != 0 || rejected)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown event");
    room_ctx_t c;
    if (room_open_or_reply(r, room_id, &c) != 0)
        return 0;
    json_t *pdu = NULL;
    if (ax_db_event_get(c.txn, event_id, &pdu, &rec) != 0) {
        room_ctx_end(&c);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown event");
    }
    json_t *out = NULL;
    if (ax_server_view_can_see(&c.view, event_id, pdu, &rec))
        out = ax_event_federation_format(pdu);
    else if (c.view.joined)
        out = ax_event_redact(pdu, c.rv); /* in the room, but not allowed this event's content */
    json_decref(pdu);
    room_ctx_end(&c);
    if (out == NULL)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You are not allowed to see this event");
    return ax_reply_json_new(r, 200, transaction(r, json_pack("[o]", out)));
}

/* ---- /state, /state_ids, /event_auth: built on a worker ---- */

enum { SNAP_STATE, SNAP_STATE_IDS, SNAP_EVENT_AUTH };

typedef struct st_snap_t {
    ax_db_t *db;
    int kind;
    char *room_id, *event_id, *server;
    json_t *body;    /* the answer */
    const char *why; /* the error message when it fails */
} snap_t;

static void snap_free(void *p)
{
    snap_t *s = p;
    free(s->room_id);
    free(s->event_id);
    free(s->server);
    json_decref(s->body);
    free(s);
}

/* The PDUs of 'ids' (a borrowed array) in wire form; unknown ones are left out. */
static json_t *load_pdus(ax_txn_t *txn, const json_t *ids)
{
    json_t *out = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_t *pdu = NULL;
        if (ax_db_event_get(txn, json_string_value(id), &pdu, NULL) != 0)
            continue;
        json_array_append_new(out, ax_event_federation_format(pdu));
        json_decref(pdu);
    }
    return out;
}

/* The event IDs of a state map, as an array (a new reference). */
static json_t *map_ids(const json_t *map)
{
    json_t *ids = json_array();
    const char *type, *sk;
    json_t *keys, *id;
    json_object_foreach((json_t *)map, type, keys)
    {
        json_object_foreach(keys, sk, id)
        {
            json_array_append(ids, id);
        }
    }
    return ids;
}

static int snap_build(snap_t *s, ax_txn_t *txn)
{
    const ax_room_version_t *rv = ax_room_version_of(txn, s->room_id);
    if (rv == NULL) {
        s->why = "Unknown room";
        return AX_ENOTFOUND;
    }
    if (!ax_room_server_allowed(txn, s->room_id, s->server)) {
        s->why = "This server may not take part in this room (server ACL or m.federate)";
        return AX_EFORBIDDEN;
    }
    json_t *pdu = NULL;
    ax_event_rec_t rec;
    if (ax_db_event_get(txn, s->event_id, &pdu, &rec) != 0 || strcmp(rec.room_id, s->room_id) != 0 ||
        (rec.flags & AX_EVENT_F_REJECTED) != 0) {
        json_decref(pdu);
        s->why = "Unknown event";
        return AX_ENOTFOUND;
    }
    /* a server in the room may ask; one outside only about what it may see */
    ax_server_view_t view;
    int rc = ax_server_view_init(&view, txn, s->room_id, s->server);
    bool allowed = rc == 0 && (view.joined || ax_server_view_can_see(&view, s->event_id, pdu, &rec));
    ax_server_view_dispose(&view);
    if (rc != 0 || !allowed) {
        json_decref(pdu);
        s->why = "You are not allowed to see the room at this event";
        return rc != 0 ? rc : AX_EFORBIDDEN;
    }
    json_t *chain = NULL;
    if (s->kind == SNAP_EVENT_AUTH) {
        json_t *start = json_pack("[s]", s->event_id);
        rc = ax_room_auth_chain(txn, rv, s->room_id, start, &chain);
        json_decref(start);
        if (rc == 0)
            s->body = json_pack("{s:o}", "auth_chain", load_pdus(txn, chain));
        json_decref(chain);
        json_decref(pdu);
        return rc;
    }
    json_t *map = NULL;
    rc = ax_event_state_before(txn, rv, s->room_id, s->event_id, pdu, rec.flags, &map);
    json_decref(pdu);
    if (rc != 0) {
        s->why = "The state at this event is not known here";
        return rc;
    }
    json_t *ids = map_ids(map);
    json_decref(map);
    if ((rc = ax_room_auth_chain(txn, rv, s->room_id, ids, &chain)) == 0) {
        if (s->kind == SNAP_STATE_IDS)
            s->body = json_pack("{s:O, s:O}", "pdu_ids", ids, "auth_chain_ids", chain);
        else
            s->body = json_pack("{s:o, s:o}", "pdus", load_pdus(txn, ids), "auth_chain", load_pdus(txn, chain));
    }
    json_decref(chain);
    json_decref(ids);
    return rc;
}

/* Worker: one read transaction for the whole answer, so it is consistent. */
static int snap_run(void *data)
{
    snap_t *s = data;
    ax_txn_t *txn;
    if (ax_db_read_begin(s->db, &txn) != 0) {
        s->why = "Database unavailable";
        return AX_EIO;
    }
    int rc = snap_build(s, txn);
    ax_db_read_end(txn);
    return rc;
}

static void snap_done(ax_req_t *r, int result, void *data)
{
    snap_t *s = data;
    if (result == 0) {
        ax_reply_json_new(r, 200, s->body);
        s->body = NULL;
    } else if (result == AX_ENOTFOUND) {
        ax_reply_error(r, AX_M_NOT_FOUND, s->why);
    } else if (result == AX_EFORBIDDEN) {
        ax_reply_error(r, AX_M_FORBIDDEN, s->why);
    } else {
        ax_reply_error(r, AX_M_INTERNAL, s->why != NULL ? s->why : "Could not read the room");
    }
}

static int snapshot(ax_req_t *r, int kind, const char *room_id, const char *event_id)
{
    if (event_id == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing 'event_id'");
    if (!ax_id_is_valid_event_id(event_id, NULL))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'event_id' is not an event ID");
    snap_t *s = ax_calloc(1, sizeof(*s));
    s->db = r->srv->db;
    s->kind = kind;
    s->room_id = ax_strdup(room_id);
    s->event_id = ax_strdup(event_id);
    s->server = ax_strdup(r->auth.server);
    ax_req_work(r, snap_run, snap_done, s, snap_free);
    return 0;
}

/* GET /_matrix/federation/v1/state/{roomId} */
int ax_fed_events_state(ax_req_t *r)
{
    return snapshot(r, SNAP_STATE, r->params[0], ax_req_query(r, "event_id"));
}

/* GET /_matrix/federation/v1/state_ids/{roomId} */
int ax_fed_events_state_ids(ax_req_t *r)
{
    return snapshot(r, SNAP_STATE_IDS, r->params[0], ax_req_query(r, "event_id"));
}

/* GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} */
int ax_fed_events_auth(ax_req_t *r)
{
    return snapshot(r, SNAP_EVENT_AUTH, r->params[0], r->params[1]);
}

/* ---- /backfill and /get_missing_events ---- */

/* The PDUs of 'ids' (stolen) as the origin may have them: invisible ones redacted. */
static json_t *walk_pdus(room_ctx_t *c, json_t *ids)
{
    json_t *pdus = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_t *pdu = pdu_for(c, json_string_value(id), true);
        if (pdu != NULL)
            json_array_append_new(pdus, pdu);
    }
    json_decref(ids);
    return pdus;
}

/* GET /_matrix/federation/v1/backfill/{roomId} */
int ax_fed_events_backfill(ax_req_t *r)
{
    const char *room_id = r->params[0], *limit_s = ax_req_query(r, "limit");
    uint64_t limit;
    if (ax_req_query(r, "v") == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing 'v'");
    if (limit_s == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing 'limit'");
    if (ax_parse_u64(limit_s, &limit) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'limit' must be a non-negative integer");
    json_t *from = ax_req_hold_json(r, json_array());
    const char *v;
    for (size_t n = 0; (v = ax_req_query_nth(r, "v", n)) != NULL; ++n) {
        if (n >= BACKFILL_FROM_MAX)
            return ax_reply_error(r, AX_M_INVALID_PARAM, "Too many 'v' event IDs");
        if (!ax_id_is_valid_event_id(v, NULL))
            return ax_reply_error(r, AX_M_INVALID_PARAM, "'v' must be event IDs");
        json_array_append_new(from, json_string(v));
    }
    room_ctx_t c;
    if (room_open_or_reply(r, room_id, &c) != 0)
        return 0;
    if (!may_walk(&c, room_id)) {
        room_ctx_end(&c);
        return ax_reply_error(r, AX_M_FORBIDDEN, "Your server is not in this room");
    }
    json_t *ids = NULL;
    int rc = ax_room_backfill(c.txn, room_id, from, limit < BACKFILL_MAX ? (size_t)limit : BACKFILL_MAX, &ids);
    json_t *pdus = rc == 0 ? walk_pdus(&c, ids) : NULL;
    room_ctx_end(&c);
    if (rc != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Could not read the room");
    return ax_reply_json_new(r, 200, transaction(r, pdus));
}

/* A required array of event ID strings; replies and returns -1 otherwise. */
static int event_ids_or_reply(ax_req_t *r, json_t *body, const char *key, json_t **out)
{
    if (ax_field_array_or_reply(r, body, key, true, out) != 0)
        return -1;
    size_t i;
    json_t *v;
    json_array_foreach(*out, i, v)
    {
        if (!json_is_string(v)) {
            ax_reply_error(r, AX_M_BAD_JSON, ax_psprintf(r, "'%s' must be an array of event IDs", key));
            return -1;
        }
    }
    if (json_array_size(*out) > MISSING_MAX) {
        ax_reply_error(r, AX_M_INVALID_PARAM, ax_psprintf(r, "Too many '%s'", key));
        return -1;
    }
    return 0;
}

/* POST /_matrix/federation/v1/get_missing_events/{roomId} */
int ax_fed_events_missing(ax_req_t *r)
{
    const char *room_id = r->params[0];
    json_t *body, *earliest, *latest;
    json_int_t limit = MISSING_DEFAULT, min_depth = 0;
    if (ax_req_json_body_or_reply(r, &body) != 0 || event_ids_or_reply(r, body, "earliest_events", &earliest) != 0 ||
        event_ids_or_reply(r, body, "latest_events", &latest) != 0 ||
        ax_field_int_or_reply(r, body, "limit", false, &limit) != 0 ||
        ax_field_int_or_reply(r, body, "min_depth", false, &min_depth) != 0)
        return 0;
    if (json_object_get(body, "limit") == NULL)
        limit = MISSING_DEFAULT;
    if (limit < 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'limit' must not be negative");
    room_ctx_t c;
    if (room_open_or_reply(r, room_id, &c) != 0)
        return 0;
    if (!may_walk(&c, room_id)) {
        room_ctx_end(&c);
        return ax_reply_error(r, AX_M_FORBIDDEN, "Your server is not in this room");
    }
    json_t *ids = NULL;
    int rc = ax_room_missing_events(c.txn, room_id, earliest, latest, limit < MISSING_MAX ? (size_t)limit : MISSING_MAX,
                                    min_depth, &ids);
    json_t *pdus = rc == 0 ? walk_pdus(&c, ids) : NULL;
    room_ctx_end(&c);
    if (rc != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Could not read the room");
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "events", pdus));
}

/* ---- GET /timestamp_to_event ---- */

typedef struct st_ts_t {
    room_ctx_t *c;
    uint64_t ts;
    bool forwards;
    char event_id[256];
    uint64_t found_ts;
    bool found;
} ts_t;

static int ts_cb(void *arg, uint64_t pos, const char *event_id)
{
    (void)pos;
    ts_t *t = arg;
    json_t *pdu = NULL;
    ax_event_rec_t rec;
    if (ax_db_event_get(t->c->txn, event_id, &pdu, &rec) != 0)
        return 0;
    uint64_t ets = (uint64_t)json_integer_value(json_object_get(pdu, "origin_server_ts"));
    bool hit = (t->forwards ? ets >= t->ts : ets <= t->ts) && ax_server_view_can_see(&t->c->view, event_id, pdu, &rec);
    json_decref(pdu);
    if (!hit)
        return 0;
    snprintf(t->event_id, sizeof(t->event_id), "%s", event_id);
    t->found_ts = ets;
    t->found = true;
    return 1;
}

/* GET /_matrix/federation/v1/timestamp_to_event/{roomId} */
int ax_fed_events_timestamp(ax_req_t *r)
{
    const char *room_id = r->params[0], *ts_s = ax_req_query(r, "ts"), *dir = ax_req_query(r, "dir");
    uint64_t ts;
    if (ts_s == NULL || dir == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, ts_s == NULL ? "Missing 'ts'" : "Missing 'dir'");
    if (ax_parse_u64(ts_s, &ts) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'ts' must be a timestamp in milliseconds");
    if (strcmp(dir, "f") != 0 && strcmp(dir, "b") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'dir' must be f or b");
    room_ctx_t c;
    if (room_open_or_reply(r, room_id, &c) != 0)
        return 0;
    if (!may_walk(&c, room_id)) {
        room_ctx_end(&c);
        return ax_reply_error(r, AX_M_FORBIDDEN, "Your server is not in this room");
    }
    ts_t t = {.c = &c, .ts = ts, .forwards = strcmp(dir, "f") == 0};
    /* timestamps grow with positions nearly always: walk from the side the answer is on */
    ax_db_timeline_scan(c.txn, room_id, t.forwards ? 0 : UINT64_MAX, !t.forwards, ts_cb, &t);
    room_ctx_end(&c);
    if (!t.found)
        return ax_reply_error(r, AX_M_NOT_FOUND,
                              ax_psprintf(r, "No event found from %llu %s", (unsigned long long)ts,
                                          t.forwards ? "forwards" : "backwards"));
    return ax_reply_json_new(
        r, 200, json_pack("{s:s, s:I}", "event_id", t.event_id, "origin_server_ts", (json_int_t)t.found_ts));
}
