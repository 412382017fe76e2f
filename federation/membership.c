/*
 * membership.c -- joining, leaving, knocking and inviting across servers,
 * the resident side (spec: Server-Server API "Joining Rooms", "Leaving
 * Rooms (Rejecting Invites)", "Knocking upon a room", "Inviting to a
 * room"): make_join/make_leave/make_knock hand out an event template built
 * on the room's current state; send_join/send_leave/send_knock take the
 * signed event back, check it like any event from another server
 * (federation/pdu.c) and put it through the room pipeline
 * (core/ingest.c); /invite signs an invite for one of our users and
 * shows it to them.
 */
#include "federation/federation.h"
#include "core/rooms.h"
#include "core/servers.h"
#include "server/cs/cs.h"
#include "server/handlers.h"

#include <stdlib.h>
#include <string.h>

/* ---- shared checks ---- */

/* A user ID of the requesting server; replies 400/403 otherwise. */
static bool their_user_or_reply(ax_req_t *r, const char *user_id)
{
    if (!ax_id_is_valid_user_id(user_id)) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid user ID");
        return false;
    }
    if (strcmp(ax_id_domain(user_id), r->auth.server) != 0) {
        ax_reply_error(r, AX_M_FORBIDDEN, "The user does not belong to the requesting server");
        return false;
    }
    return true;
}

/* Whether the request's "ver" parameters (default "1") include 'rv'. */
static bool version_accepted(ax_req_t *r, const ax_room_version_t *rv)
{
    const char *v = ax_req_query_nth(r, "ver", 0);
    if (v == NULL)
        return strcmp(rv->id, "1") == 0;
    for (size_t i = 0; (v = ax_req_query_nth(r, "ver", i)) != NULL; ++i)
        if (strcmp(v, rv->id) == 0)
            return true;
    return false;
}

/* ---- make_join, make_leave, make_knock ---- */

static int make_membership(ax_req_t *r, const char *membership)
{
    const char *room_id = r->params[0], *user_id = r->params[1];
    if (!their_user_or_reply(r, user_id))
        return 0;
    ax_server_t *srv = r->srv;
    ax_txn_t *txn;
    if (ax_db_read_begin(srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    const ax_room_version_t *rv = ax_room_version_of(txn, room_id);
    if (rv == NULL || !ax_room_has_local_member(txn, room_id, srv->cfg->server_name)) {
        ax_db_read_end(txn);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown room");
    }
    if (!ax_room_server_allowed(txn, room_id, r->auth.server)) {
        ax_db_read_end(txn);
        return ax_reply_error(r, AX_M_FORBIDDEN, "The room's server ACL denies your server");
    }
    if (!version_accepted(r, rv)) {
        ax_db_read_end(txn);
        json_t *body = json_pack("{s:s, s:s, s:s}", "errcode", "M_INCOMPATIBLE_ROOM_VERSION", "error",
                                 "Your server does not support this room's version", "room_version", rv->id);
        return ax_reply_json_new(r, 400, body);
    }
    if (strcmp(membership, "knock") == 0 && !rv->knock) {
        ax_db_read_end(txn);
        return ax_reply_json_new(r, 400,
                                 json_pack("{s:s, s:s, s:s}", "errcode", "M_INCOMPATIBLE_ROOM_VERSION", "error",
                                           "This room's version does not allow knocking", "room_version", rv->id));
    }
    char reason[256] = "";
    json_t *content = json_pack("{s:s}", "membership", membership);
    int rc = 0;
    if (strcmp(membership, "join") == 0)
        rc = ax_cs_restricted_authoriser(txn, room_id, user_id, srv->cfg->server_name, content, reason, sizeof(reason));
    json_t *pdu = NULL;
    if (rc == 0) {
        /* the template's origin is the resident server, as the spec's make_join answer says */
        ax_origin_t us = {srv->cfg->server_name, NULL};
        ax_draft_t d = {
            .room_id = room_id, .sender = user_id, .type = "m.room.member", .state_key = user_id, .content = content};
        rc = ax_room_build(txn, &us, &d, &pdu, NULL);
        if (rc == 0)
            json_object_set_new(pdu, "origin", json_string(srv->cfg->server_name));
    }
    if (rc == 0) {
        /* would the auth rules let it in?  A restricted join needs our signature present: sign a copy */
        json_t *probe = json_deep_copy(pdu);
        ax_room_lookup_t lk = {.txn = txn, .room_id = room_id};
        if (ax_event_sign(probe, rv, srv->cfg->server_name, &srv->signing_key) != 0 ||
            ax_auth_check(rv, probe, ax_room_lookup, &lk, reason, sizeof(reason)) != 0)
            rc = AX_EFORBIDDEN;
        ax_room_lookup_dispose(&lk);
        json_decref(probe);
    }
    ax_db_read_end(txn);
    json_decref(content);
    if (rc == AX_ENOAUTHORISER) {
        json_decref(pdu);
        return ax_reply_json_new(r, 400, json_pack("{s:s, s:s}", "errcode", "M_UNABLE_TO_GRANT_JOIN", "error", reason));
    }
    if (rc != 0) {
        json_decref(pdu);
        return ax_reply_error(r, rc == AX_EFORBIDDEN ? AX_M_FORBIDDEN : AX_M_INTERNAL,
                              reason[0] ? reason : "Cannot build the event");
    }
    return ax_reply_json_new(r, 200, json_pack("{s:o, s:s}", "event", pdu, "room_version", rv->id));
}

/* GET /_matrix/federation/v1/make_join/{roomId}/{userId} */
int ax_fed_make_join(ax_req_t *r)
{
    return make_membership(r, "join");
}

/* GET /_matrix/federation/v1/make_leave/{roomId}/{userId} */
int ax_fed_make_leave(ax_req_t *r)
{
    return make_membership(r, "leave");
}

/* GET /_matrix/federation/v1/make_knock/{roomId}/{userId} */
int ax_fed_make_knock(ax_req_t *r)
{
    return make_membership(r, "knock");
}

/* ---- send_join, send_leave, send_knock ---- */

typedef int (*answer_fn_t)(void *data, ax_db_t *db, const char *our_server);

typedef struct st_sendm_t {
    ax_pdu_batch_t batch;
    char room_id[256];
    char event_id[256];
    char membership[16];
    int api_version; /* 1: the deprecated [200, {...}] answer */
    bool cosigned;   /* we added our signature (restricted join) */
    char our_server[256];
    char origin[256]; /* the server that handed the event over: we pass it on to the others */
    ax_ingest_t outcome;
    json_t *answer; /* built on a worker */
    answer_fn_t answer_fn;
} sendm_t;

static void sendm_free(void *p)
{
    sendm_t *s = p;
    ax_pdu_batch_dispose(&s->batch);
    json_decref(s->answer);
    free(s);
}

static const ax_room_version_t *room_version(ax_server_t *srv, const char *room_id, const char *origin,
                                             bool *is_resident, bool *allowed)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(srv->db, &txn) != 0)
        return NULL;
    const ax_room_version_t *rv = ax_room_version_of(txn, room_id);
    *is_resident = rv != NULL && ax_room_has_local_member(txn, room_id, srv->cfg->server_name);
    *allowed = rv == NULL || ax_room_server_allowed(txn, room_id, origin);
    ax_db_read_end(txn);
    return rv;
}

static int ingest_apply(ax_txn_t *txn, void *data)
{
    sendm_t *s = data;
    ax_pdu_t *it = &s->batch.items[0];
    int rc = ax_room_ingest(txn, it->rv, s->room_id, it->event_id, it->pdu, NULL, &s->outcome);
    /* spec: "The resident server will then send the event to other servers in the room" */
    if (rc == 0 && s->outcome.outcome == AX_INGEST_ACCEPTED)
        rc = ax_room_fanout(txn, s->room_id, it->event_id, s->our_server, s->origin);
    return rc;
}

/* The PDU as other servers see it: without our local unsigned data. */
static json_t *federation_form(ax_txn_t *txn, const char *event_id)
{
    json_t *ev = NULL;
    if (ax_db_event_get(txn, event_id, &ev, NULL) != 0)
        return NULL;
    json_object_del(ev, "unsigned");
    return ev;
}

static json_t *load_pdus(ax_txn_t *txn, const json_t *ids)
{
    json_t *out = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_t *ev = federation_form(txn, json_string_value(id));
        if (ev != NULL)
            json_array_append_new(out, ev);
    }
    return out;
}

static int add_server(void *arg, const char *user_id, const char *membership)
{
    json_t *servers = arg;
    const char *server = ax_id_domain(user_id);
    if (server != NULL && strcmp(membership, "join") == 0)
        json_object_set_new(servers, server, json_true());
    return 0;
}

/* send_join's answer (v2; v1 wraps it): the state before the join and its auth chain, on a worker. */
static int join_answer(void *data, ax_db_t *db, const char *our_server)
{
    sendm_t *s = data;
    ax_pdu_t *it = &s->batch.items[0];
    ax_txn_t *txn;
    if (ax_db_read_begin(db, &txn) != 0)
        return AX_EIO;
    json_t *state = NULL;
    int rc = ax_room_state_before_event(txn, it->rv, s->room_id, it->pdu, &state);
    if (rc != 0) {
        ax_db_read_end(txn);
        return rc;
    }
    json_t *ids = json_array();
    const char *type, *sk;
    json_t *keys, *eid;
    json_object_foreach(state, type, keys)
    {
        json_object_foreach(keys, sk, eid)
        {
            json_array_append(ids, eid);
        }
    }
    json_t *with_join = json_copy(ids);
    json_array_append_new(with_join, json_string(it->event_id));
    json_t *chain_ids = NULL;
    ax_room_auth_chain(txn, it->rv, s->room_id, with_join, &chain_ids);
    json_t *servers = json_object();
    ax_db_room_members_foreach(txn, s->room_id, add_server, servers);
    json_t *server_list = json_array();
    const char *name;
    json_t *v;
    json_object_foreach(servers, name, v)
    {
        json_array_append_new(server_list, json_string(name));
    }
    s->answer = json_pack("{s:s, s:o, s:o, s:b, s:o}", "origin", our_server, "state", load_pdus(txn, ids), "auth_chain",
                          load_pdus(txn, chain_ids), "members_omitted", 0, "servers_in_room", server_list);
    if (s->cosigned)
        json_object_set(s->answer, "event", it->pdu);
    ax_db_read_end(txn);
    json_decref(ids);
    json_decref(with_join);
    json_decref(chain_ids);
    json_decref(servers);
    json_decref(state);
    return 0;
}

/* send_knock's answer: the stripped state a knocker may see. */
static int knock_answer(void *data, ax_db_t *db, const char *our_server)
{
    (void)our_server;
    sendm_t *s = data;
    ax_txn_t *txn;
    if (ax_db_read_begin(db, &txn) != 0)
        return AX_EIO;
    s->answer = json_pack("{s:o}", "knock_room_state", ax_room_stripped_state(txn, s->room_id));
    ax_db_read_end(txn);
    return 0;
}

typedef struct st_answer_work_t {
    sendm_t *s;
    ax_db_t *db;
    const char *our_server;
} answer_work_t;

static int answer_run(void *data)
{
    answer_work_t *w = data;
    return w->s->answer_fn(w->s, w->db, w->our_server);
}

static void answered(ax_req_t *r, int result, void *data)
{
    answer_work_t *w = data;
    sendm_t *s = w->s;
    if (result != 0 || s->answer == NULL) {
        ax_reply_error(r, AX_M_INTERNAL, "Could not build the answer");
        return;
    }
    json_t *answer = s->answer;
    s->answer = NULL;
    if (s->api_version == 1)
        answer = json_pack("[i, o]", 200, answer);
    ax_reply_json_new(r, 200, answer);
}

static void answer_work_free(void *p)
{
    answer_work_t *w = p;
    sendm_free(w->s);
    free(w);
}

static void ingested(ax_req_t *r, int result, void *data)
{
    sendm_t *s = data;
    ax_ingest_t *o = &s->outcome;
    if (result == AX_ENOTFOUND)
        return (void)ax_reply_error(r, AX_M_BAD_JSON, "The event refers to events this server does not have");
    if (result != 0)
        return (void)ax_reply_error(r, AX_M_INTERNAL, "Could not store the event");
    if (o->outcome == AX_INGEST_REJECTED || o->outcome == AX_INGEST_SOFT_FAILED)
        return (void)ax_reply_error(r, AX_M_FORBIDDEN, o->reason[0] ? o->reason : "Not allowed by the auth rules");
    if (s->answer_fn == NULL) {
        json_t *empty = json_object();
        return (void)ax_reply_json_new(r, 200, s->api_version == 1 ? json_pack("[i, o]", 200, empty) : empty);
    }
    /* the request keeps 's' alive no more: hand it to the answer's work */
    sendm_t *copy = ax_calloc(1, sizeof(*copy));
    *copy = *s;
    memset(&s->batch, 0, sizeof(s->batch));
    answer_work_t *w = ax_calloc(1, sizeof(*w));
    w->s = copy;
    w->db = r->srv->db;
    w->our_server = r->srv->cfg->server_name;
    ax_req_work(r, answer_run, answered, w, answer_work_free);
}

static void send_verified(ax_req_t *r, void *arg)
{
    sendm_t *s = arg;
    ax_pdu_t *it = &s->batch.items[0];
    if (it->result != 0) {
        ax_reply_error(r, it->result == AX_EBADSIG ? AX_M_FORBIDDEN : AX_M_BAD_JSON, it->error);
        sendm_free(s);
        return;
    }
    if (it->redacted) {
        ax_reply_error(r, AX_M_BAD_JSON, "The event's content does not match its hash");
        sendm_free(s);
        return;
    }
    ax_req_write(r, ingest_apply, ingested, s, sendm_free);
}

static int send_membership(ax_req_t *r, const char *membership, int api_version)
{
    const char *room_id = r->params[0], *event_id = r->params[1];
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    bool is_resident = false, allowed = true;
    const ax_room_version_t *rv = room_version(r->srv, room_id, r->auth.server, &is_resident, &allowed);
    if (rv == NULL || !is_resident)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown room");
    if (!allowed)
        return ax_reply_error(r, AX_M_FORBIDDEN, "The room's server ACL denies your server");
    const char *type = json_string_value(json_object_get(body, "type"));
    const char *sender = json_string_value(json_object_get(body, "sender"));
    const char *sk = json_string_value(json_object_get(body, "state_key"));
    const char *m = json_string_value(json_object_get(json_object_get(body, "content"), "membership"));
    const char *rid = json_string_value(json_object_get(body, "room_id"));
    if (!ax_streq(type, "m.room.member") || !ax_streq(m, membership) || sender == NULL || !ax_streq(sk, sender))
        return ax_reply_error(r, AX_M_BAD_JSON, "Not a membership event of this kind for its own sender");
    if (!ax_streq(rid, room_id))
        return ax_reply_error(r, AX_M_BAD_JSON, "The event is for another room");
    if (!their_user_or_reply(r, sender))
        return 0;
    char computed[256];
    if (ax_event_get_id(rv, body, computed, sizeof(computed)) != 0 || strcmp(computed, event_id) != 0)
        return ax_reply_error(r, AX_M_BAD_JSON, "The event ID does not match the event");

    sendm_t *s = ax_calloc(1, sizeof(*s));
    snprintf(s->room_id, sizeof(s->room_id), "%s", room_id);
    snprintf(s->event_id, sizeof(s->event_id), "%s", event_id);
    snprintf(s->membership, sizeof(s->membership), "%s", membership);
    snprintf(s->our_server, sizeof(s->our_server), "%s", r->srv->cfg->server_name);
    snprintf(s->origin, sizeof(s->origin), "%s", ax_id_domain(sender));
    s->api_version = api_version;
    s->answer_fn = strcmp(membership, "join") == 0    ? join_answer
                   : strcmp(membership, "knock") == 0 ? knock_answer
                                                      : NULL;
    json_t *pdu = json_deep_copy(body);
    /* a restricted join names one of our users: we vouch for it by signing */
    const char *via =
        json_string_value(json_object_get(json_object_get(pdu, "content"), "join_authorised_via_users_server"));
    if (strcmp(membership, "join") == 0 && via != NULL && ax_streq(ax_id_domain(via), r->srv->cfg->server_name)) {
        ax_event_cosign(pdu, rv, r->srv->cfg->server_name, &r->srv->signing_key);
        s->cosigned = true;
    }
    ax_pdu_batch_add(&s->batch, pdu, rv);
    ax_pdu_verify(r, &s->batch, send_verified, s, sendm_free);
    return 0;
}

/* PUT /_matrix/federation/v2/send_join/{roomId}/{eventId} */
int ax_fed_send_join(ax_req_t *r)
{
    return send_membership(r, "join", 2);
}

/* PUT /_matrix/federation/v1/send_join/{roomId}/{eventId} (deprecated) */
int ax_fed_send_join_v1(ax_req_t *r)
{
    return send_membership(r, "join", 1);
}

/* PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId} */
int ax_fed_send_leave(ax_req_t *r)
{
    return send_membership(r, "leave", 2);
}

/* PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId} (deprecated) */
int ax_fed_send_leave_v1(ax_req_t *r)
{
    return send_membership(r, "leave", 1);
}

/* PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId} */
int ax_fed_send_knock(ax_req_t *r)
{
    return send_membership(r, "knock", 2);
}

/* ---- invites of our users ---- */

typedef struct st_invite_t {
    ax_pdu_batch_t batch;
    char room_id[256];
    char invitee[256];
    json_t *invite_state; /* the stripped state the inviting server sent along */
    int api_version;
    bool unknown_user;
} invite_t;

static void invite_free(void *p)
{
    invite_t *v = p;
    ax_pdu_batch_dispose(&v->batch);
    json_decref(v->invite_state);
    free(v);
}

/*
 * Shows the invite to the invitee: the event, with the state sent along in
 * its unsigned data, stored outside any timeline, and the membership
 * record /sync reads.  When this server is in the room, the event will also
 * arrive through /send like any other and take its place in the timeline.
 */
static int invite_apply(ax_txn_t *txn, void *data)
{
    invite_t *v = data;
    ax_pdu_t *it = &v->batch.items[0];
    json_t *acct = NULL;
    bool active = ax_db_account_get(txn, v->invitee, &acct) == 0 && !json_is_true(json_object_get(acct, "deactivated"));
    json_decref(acct);
    if (!active) {
        v->unknown_user = true;
        return 0;
    }
    ax_event_rec_t rec;
    if (ax_db_event_get_raw(txn, it->event_id, &rec) == 0)
        return 0; /* a retry: already shown */
    char m[16];
    ax_room_membership(txn, v->room_id, v->invitee, m, sizeof(m));
    if (strcmp(m, "join") == 0 || strcmp(m, "ban") == 0)
        return 0; /* nothing to show; the room's own events say what happens */
    json_t *stored = json_deep_copy(it->pdu);
    json_object_set_new(stored, "unsigned",
                        json_pack("{s:O}", "invite_room_state", v->invite_state ? v->invite_state : json_null()));
    uint64_t pos = ax_txn_next_stream_pos(txn);
    int rc = ax_db_event_put(txn, it->event_id, v->room_id, 0, AX_EVENT_F_OUTLIER | AX_EVENT_F_STATE, stored);
    json_decref(stored);
    if (rc == 0)
        rc = ax_db_membership_put(txn, v->room_id, v->invitee, "invite", it->event_id, pos);
    if (rc == 0) {
        ax_txn_notify(txn, v->room_id);
        ax_txn_notify(txn, v->invitee);
    }
    return rc;
}

static void invite_stored(ax_req_t *r, int result, void *data)
{
    invite_t *v = data;
    if (result != 0)
        return (void)ax_reply_error(r, AX_M_INTERNAL, "Could not store the invite");
    if (v->unknown_user)
        return (void)ax_reply_error(r, AX_M_FORBIDDEN, "No such user on this server");
    json_t *answer = json_pack("{s:O}", "event", v->batch.items[0].pdu);
    ax_reply_json_new(r, 200, v->api_version == 1 ? json_pack("[i, o]", 200, answer) : answer);
}

static void invite_verified(ax_req_t *r, void *arg)
{
    invite_t *v = arg;
    ax_pdu_t *it = &v->batch.items[0];
    if (it->result != 0 || it->redacted) {
        ax_reply_error(r, it->result == AX_EBADSIG ? AX_M_FORBIDDEN : AX_M_BAD_JSON,
                       it->result != 0 ? it->error : "The event's content does not match its hash");
        invite_free(v);
        return;
    }
    if (ax_event_cosign(it->pdu, it->rv, r->srv->cfg->server_name, &r->srv->signing_key) != 0) {
        ax_reply_error(r, AX_M_BAD_JSON, "The event cannot be signed");
        invite_free(v);
        return;
    }
    ax_req_write(r, invite_apply, invite_stored, v, invite_free);
}

static int invite(ax_req_t *r, int api_version)
{
    const char *room_id = r->params[0], *event_id = r->params[1];
    json_t *body, *event;
    const char *version = "1";
    json_t *invite_state = NULL;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    if (api_version == 2) {
        if (ax_field_object_or_reply(r, body, "event", true, &event) != 0 ||
            ax_field_string_or_reply(r, body, "room_version", true, &version) != 0 ||
            ax_field_array_or_reply(r, body, "invite_room_state", false, &invite_state) != 0)
            return 0;
    } else {
        event = body;
        invite_state = json_object_get(json_object_get(body, "unsigned"), "invite_room_state");
        if (!json_is_array(invite_state))
            invite_state = NULL;
    }
    const ax_room_version_t *rv = ax_room_version_get(version);
    if (rv == NULL)
        return ax_reply_json_new(r, 400,
                                 json_pack("{s:s, s:s, s:s}", "errcode", "M_INCOMPATIBLE_ROOM_VERSION", "error",
                                           "This server does not support that room version", "room_version", version));
    const char *sk = json_string_value(json_object_get(event, "state_key"));
    const char *sender = json_string_value(json_object_get(event, "sender"));
    if (!ax_streq(json_string_value(json_object_get(event, "type")), "m.room.member") ||
        !ax_streq(json_string_value(json_object_get(json_object_get(event, "content"), "membership")), "invite") ||
        sk == NULL || sender == NULL)
        return ax_reply_error(r, AX_M_BAD_JSON, "Not an invite");
    if (!ax_streq(json_string_value(json_object_get(event, "room_id")), room_id))
        return ax_reply_error(r, AX_M_BAD_JSON, "The event is for another room");
    if (!ax_id_is_valid_user_id(sk) || !ax_streq(ax_id_domain(sk), r->srv->cfg->server_name))
        return ax_reply_error(r, AX_M_BAD_JSON, "The invitee is not a user of this server");
    if (!ax_streq(ax_id_domain(sender), r->auth.server))
        return ax_reply_error(r, AX_M_FORBIDDEN, "The inviter does not belong to the requesting server");
    char computed[256];
    if (ax_event_get_id(rv, event, computed, sizeof(computed)) != 0 || strcmp(computed, event_id) != 0)
        return ax_reply_error(r, AX_M_BAD_JSON, "The event ID does not match the event");
    bool resident, allowed;
    room_version(r->srv, room_id, r->auth.server, &resident, &allowed);
    if (!allowed)
        return ax_reply_error(r, AX_M_FORBIDDEN, "The room's server ACL denies your server");

    invite_t *v = ax_calloc(1, sizeof(*v));
    snprintf(v->room_id, sizeof(v->room_id), "%s", room_id);
    snprintf(v->invitee, sizeof(v->invitee), "%s", sk);
    v->invite_state = invite_state != NULL ? json_deep_copy(invite_state) : NULL;
    v->api_version = api_version;
    ax_pdu_batch_add(&v->batch, json_deep_copy(event), rv);
    ax_pdu_verify(r, &v->batch, invite_verified, v, invite_free);
    return 0;
}

/* PUT /_matrix/federation/v2/invite/{roomId}/{eventId} */
int ax_fed_invite(ax_req_t *r)
{
    return invite(r, 2);
}

/* PUT /_matrix/federation/v1/invite/{roomId}/{eventId} (deprecated) */
int ax_fed_invite_v1(ax_req_t *r)
{
    return invite(r, 1);
}
