/*
 * join.c -- our users joining, knocking on and leaving rooms that live on
 * other servers (spec: Server-Server API "Joining Rooms", "Knocking upon a
 * room", "Leaving Rooms (Rejecting Invites)"; Client-Server API
 * POST /join, /knock, /rooms/{roomId}/leave when this server is not in the
 * room).
 *
 * A join asks each candidate server in turn for a template (make_join),
 * fills and signs it, and sends it back (send_join).  The answer's state
 * and auth chain are checked like any events from another server
 * (federation/pdu.c) -- events that fail are dropped, not fatal -- then one
 * writer job stores them as outliers in auth order and takes the join into
 * the room with that state (core/ingest.c adopts the room).  Knocks and
 * leaves go the same way without the state.
 */
#include "federation/federation.h"
#include "core/rooms.h"
#include "server/cs/cs.h"

#include <stdlib.h>
#include <string.h>

#define MAX_CANDIDATES 8

typedef struct st_remote_t {
    char room_id[256];
    char user_id[256];
    char membership[16];
    json_t *extra;   /* content the client added (reason) */
    json_t *servers; /* candidate servers, in order */
    size_t next;     /* the next candidate to ask */
    char server[256];
    const ax_room_version_t *rv;
    json_t *event; /* our signed membership event */
    char event_id[256];
    json_t *answer;       /* send_join / send_knock answer */
    ax_pdu_batch_t batch; /* the answer's events being checked */
    size_t nstate;        /* the first nstate items of 'batch' are the state, the rest the auth chain */
    char error[320];
    int http_status; /* the last refusal, to pass on */
    char errcode[64];
    ax_ingest_t outcome;
} remote_t;

static void remote_free(void *p)
{
    remote_t *m = p;
    if (m == NULL)
        return;
    json_decref(m->extra);
    json_decref(m->servers);
    json_decref(m->event);
    json_decref(m->answer);
    ax_pdu_batch_dispose(&m->batch);
    free(m);
}

/* The versions we ask for: from v3. v1's state resolution is not implemented, and v1-2 events
 * reference others as [id, hashes] pairs, which our event builder does not write. */
static void append_versions(ax_buf_t *path)
{
    for (const char *const *v = ax_room_versions_supported; *v != NULL; ++v)
        if (strcmp(*v, "1") != 0 && strcmp(*v, "2") != 0)
            ax_buf_printf(path, "%cver=%s", strchr(path->base, '?') ? '&' : '?', *v);
}

static void fail(ax_req_t *r, remote_t *m, int status, const char *errcode, const char *error)
{
    json_t *body = json_pack("{s:s, s:s}", "errcode", errcode, "error", error);
    ax_reply_json_new(r, status, body);
    remote_free(m);
}

static void ask_next(ax_req_t *r, remote_t *m);

/* ---- the last step: store what the answer brought ---- */

static int depth_of(const json_t *pdu)
{
    return (int)json_integer_value(json_object_get(pdu, "depth"));
}

static int by_depth(const void *a, const void *b)
{
    const ax_pdu_t *x = *(ax_pdu_t *const *)a, *y = *(ax_pdu_t *const *)b;
    return depth_of(x->pdu) - depth_of(y->pdu);
}

static int join_apply(ax_txn_t *txn, void *data)
{
    remote_t *m = data;
    /* outliers in auth order: by depth first, then again for whatever waited on a later one */
    size_t n = m->batch.n;
    ax_pdu_t **order = ax_calloc(n ? n : 1, sizeof(*order));
    for (size_t i = 0; i < n; ++i)
        order[i] = &m->batch.items[i];
    qsort(order, n, sizeof(*order), by_depth);
    bool *done = ax_calloc(n ? n : 1, sizeof(*done));
    int rc = 0;
    for (bool progress = true; progress && rc == 0;) {
        progress = false;
        for (size_t i = 0; i < n && rc == 0; ++i) {
            if (done[i] || order[i]->result != 0)
                continue;
            ax_ingest_t out;
            int r = ax_room_ingest_outlier(txn, m->rv, m->room_id, order[i]->event_id, order[i]->pdu, &out);
            if (r == AX_ENOTFOUND)
                continue; /* an auth event comes later in this order, or never */
            if (r != 0)
                rc = r;
            done[i] = progress = true;
        }
    }
    /* the state before our join: the answer's state events that were stored and not rejected */
    json_t *state = json_object();
    for (size_t i = 0; i < m->nstate && rc == 0; ++i) {
        ax_pdu_t *it = &m->batch.items[i];
        ax_event_rec_t rec;
        const char *type = json_string_value(json_object_get(it->pdu, "type"));
        const char *sk = json_string_value(json_object_get(it->pdu, "state_key"));
        if (it->result != 0 || type == NULL || sk == NULL || ax_db_event_get_raw(txn, it->event_id, &rec) != 0 ||
            (rec.flags & AX_EVENT_F_REJECTED))
            continue;
        json_t *slot = json_object_get(state, type);
        if (slot == NULL)
            json_object_set_new(state, type, slot = json_object());
        json_object_set_new(slot, sk, json_string(it->event_id));
    }
    if (rc == 0)
        rc = ax_room_ingest(txn, m->rv, m->room_id, m->event_id, m->event, state, &m->outcome);
    json_decref(state);
    free(order);
    free(done);
    return rc;
}

static void joined(ax_req_t *r, int result, void *data)
{
    remote_t *m = data;
    if (result != 0 || (m->outcome.outcome != AX_INGEST_ACCEPTED && m->outcome.outcome != AX_INGEST_DUPLICATE)) {
        ax_log(AX_LOG_WARN, "joining %s through %s: %s", m->room_id, m->server,
               result != 0 ? ax_strerror(result) : m->outcome.reason);
        ax_reply_error(r, AX_M_FORBIDDEN,
                       result == 0 && m->outcome.reason[0] ? m->outcome.reason : "The room's state did not let us in");
        return;
    }
    ax_reply_json_new(r, 200, json_pack("{s:s}", "room_id", m->room_id));
}

static void answer_checked(ax_req_t *r, void *arg)
{
    remote_t *m = arg;
    size_t bad = 0;
    for (size_t i = 0; i < m->batch.n; ++i)
        bad += m->batch.items[i].result != 0;
    if (bad != 0)
        ax_log(AX_LOG_INFO, "joining %s: %zu of %zu events from %s failed their checks and were dropped", m->room_id,
               bad, m->batch.n, m->server);
    ax_req_write(r, join_apply, joined, m, remote_free);
}

/* A knock or leave in a room this server is not in: the event, and the membership /sync shows. */
static int outlier_membership_apply(ax_txn_t *txn, void *data)
{
    remote_t *m = data;
    json_t *stored = json_deep_copy(m->event);
    json_t *shown = json_object_get(m->answer, "knock_room_state");
    if (json_is_array(shown))
        json_object_set_new(stored, "unsigned", json_pack("{s:O}", "knock_room_state", shown));
    uint64_t pos = ax_txn_next_stream_pos(txn);
    int rc = ax_db_event_put(txn, m->event_id, m->room_id, 0, AX_EVENT_F_OUTLIER | AX_EVENT_F_STATE, stored);
    json_decref(stored);
    if (rc == 0)
        rc = ax_db_membership_put(txn, m->room_id, m->user_id, m->membership, m->event_id, pos);
    if (rc == 0) {
        ax_txn_notify(txn, m->room_id);
        ax_txn_notify(txn, m->user_id);
    }
    return rc;
}

static void membership_stored(ax_req_t *r, int result, void *data)
{
    remote_t *m = data;
    if (result != 0)
        return (void)ax_reply_error(r, AX_M_INTERNAL, "Could not store the membership");
    if (strcmp(m->membership, "knock") == 0)
        ax_reply_json_new(r, 200, json_pack("{s:s}", "room_id", m->room_id));
    else
        ax_reply_json_new(r, 200, json_object());
}

static void add_events(remote_t *m, const json_t *list)
{
    size_t i;
    json_t *ev;
    json_array_foreach(list, i, ev)
    {
        ax_pdu_batch_add(&m->batch, json_deep_copy(ev), m->rv);
    }
}

static void sent(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    remote_t *m = (remote_t *)fr->user;
    if (r == NULL) {
        ax_fed_request_free(fr);
        remote_free(m);
        return;
    }
    bool ok = fr->super.result == 0 && fr->status == 200 && json_is_object(fr->json);
    if (!ok) {
        snprintf(m->error, sizeof(m->error), "%s", fr->super.result != 0 ? fr->error : "refused");
        const char *code = json_string_value(json_object_get(fr->json, "errcode"));
        if (fr->status >= 400 && fr->status < 500 && code != NULL) {
            m->http_status = fr->status;
            snprintf(m->errcode, sizeof(m->errcode), "%s", code);
            const char *why = json_string_value(json_object_get(fr->json, "error"));
            snprintf(m->error, sizeof(m->error), "%s", why ? why : code);
        }
        ax_fed_request_free(fr);
        ask_next(r, m);
        return;
    }
    m->answer = json_incref(fr->json);
    ax_fed_request_free(fr);
    if (strcmp(m->membership, "join") != 0) {
        ax_req_write(r, outlier_membership_apply, membership_stored, m, remote_free);
        return;
    }
    /* a restricted join comes back signed by the resident server too */
    json_t *cosigned = json_object_get(m->answer, "event");
    char cid[256];
    if (json_is_object(cosigned) && ax_event_get_id(m->rv, cosigned, cid, sizeof(cid)) == 0 &&
        strcmp(cid, m->event_id) == 0) {
        json_decref(m->event);
        m->event = json_deep_copy(cosigned);
    }
    add_events(m, json_object_get(m->answer, "state"));
    m->nstate = m->batch.n;
    add_events(m, json_object_get(m->answer, "auth_chain"));
    ax_pdu_verify(r, &m->batch, answer_checked, m, remote_free);
}

/* Fills the template and signs it as us; replies and frees on failure. */
static bool sign_template(ax_req_t *r, remote_t *m, json_t *tmpl)
{
    const char *sender = json_string_value(json_object_get(tmpl, "sender"));
    const char *sk = json_string_value(json_object_get(tmpl, "state_key"));
    json_t *content = json_object_get(tmpl, "content");
    if (!ax_streq(sender, m->user_id) || !ax_streq(sk, m->user_id) || !json_is_object(content) ||
        !ax_streq(json_string_value(json_object_get(content, "membership")), m->membership) ||
        !ax_streq(json_string_value(json_object_get(tmpl, "type")), "m.room.member")) {
        snprintf(m->error, sizeof(m->error), "%s sent an unusable template", m->server);
        return false;
    }
    json_t *ev = json_deep_copy(tmpl);
    json_object_del(ev, "signatures");
    json_object_del(ev, "hashes");
    json_object_del(ev, "unsigned");
    json_object_set_new(ev, "origin_server_ts", json_integer((json_int_t)ax_now_ms()));
    json_object_set_new(ev, "origin", json_string(r->srv->cfg->server_name));
    if (m->rv->room_id_from_create == 0 || json_object_get(ev, "room_id") != NULL)
        json_object_set_new(ev, "room_id", json_string(m->room_id));
    json_object_update(json_object_get(ev, "content"), m->extra);
    if (ax_event_sign(ev, m->rv, r->srv->cfg->server_name, &r->srv->signing_key) != 0 ||
        ax_event_get_id(m->rv, ev, m->event_id, sizeof(m->event_id)) != 0) {
        json_decref(ev);
        snprintf(m->error, sizeof(m->error), "the template from %s cannot be signed", m->server);
        return false;
    }
    m->event = ev;
    return true;
}

static void made(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    remote_t *m = (remote_t *)fr->user;
    if (r == NULL) {
        ax_fed_request_free(fr);
        remote_free(m);
        return;
    }
    const char *version = json_string_value(json_object_get(fr->json, "room_version"));
    json_t *tmpl = json_object_get(fr->json, "event");
    if (fr->super.result != 0 || fr->status != 200 || !json_is_object(tmpl)) {
        const char *code = json_string_value(json_object_get(fr->json, "errcode"));
        const char *why = json_string_value(json_object_get(fr->json, "error"));
        snprintf(m->error, sizeof(m->error), "%s", fr->super.result != 0 ? fr->error : why ? why : "refused");
        if (fr->super.result == 0 && fr->status >= 400 && fr->status < 500 && code != NULL) {
            m->http_status = fr->status;
            snprintf(m->errcode, sizeof(m->errcode), "%s", code);
        }
        ax_fed_request_free(fr);
        ask_next(r, m);
        return;
    }
    m->rv = ax_room_version_get(version != NULL ? version : "1");
    if (m->rv == NULL || strcmp(m->rv->id, "1") == 0 || strcmp(m->rv->id, "2") == 0) {
        ax_fed_request_free(fr);
        return fail(r, m, 400, "M_UNSUPPORTED_ROOM_VERSION", "This server does not support the room's version");
    }
    bool ok = sign_template(r, m, tmpl);
    ax_fed_request_free(fr);
    if (!ok) {
        ask_next(r, m);
        return;
    }
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_printf(&path, "/_matrix/federation/%s/send_%s/", strcmp(m->membership, "knock") == 0 ? "v1" : "v2",
                  m->membership);
    ax_fed_urlencode(&path, m->room_id);
    ax_buf_append(&path, "/", 1);
    ax_fed_urlencode(&path, m->event_id);
    ax_fed_request_t *send = ax_fed_request_new(m->server, "PUT", path.base, json_incref(m->event));
    ax_buf_dispose(&path);
    send->user = m;
    send->max_response = 64u << 20; /* the state of a large room */
    send->timeout_ms = 120000;
    ax_req_bind_task(r, &send->super, sent);
    ax_fed_submit(r->srv->fed, send);
}

static void ask_next(ax_req_t *r, remote_t *m)
{
    json_t *v;
    const char *server = NULL;
    while (m->next < json_array_size(m->servers) && m->next < MAX_CANDIDATES) {
        v = json_array_get(m->servers, m->next++);
        server = json_string_value(v);
        if (server != NULL && strcmp(server, r->srv->cfg->server_name) != 0)
            break;
        server = NULL;
    }
    if (server == NULL) {
        if (m->http_status != 0) {
            char err[320];
            snprintf(err, sizeof(err), "%s", m->error);
            return fail(r, m, m->http_status, m->errcode, err);
        }
        char err[400];
        snprintf(err, sizeof(err), "No server in the room could be reached: %s",
                 m->error[0] ? m->error : "no candidates");
        return fail(r, m, 404, "M_NOT_FOUND", err);
    }
    snprintf(m->server, sizeof(m->server), "%s", server);
    json_decref(m->event);
    m->event = NULL;
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_printf(&path, "/_matrix/federation/v1/make_%s/", m->membership);
    ax_fed_urlencode(&path, m->room_id);
    ax_buf_append(&path, "/", 1);
    ax_fed_urlencode(&path, m->user_id);
    append_versions(&path);
    ax_fed_request_t *fr = ax_fed_request_new(server, "GET", path.base, NULL);
    ax_buf_dispose(&path);
    fr->user = m;
    ax_req_bind_task(r, &fr->super, made);
    ax_fed_submit(r->srv->fed, fr);
}

int ax_fed_remote_membership(ax_req_t *r, const char *room_id, const char *membership, json_t *servers, json_t *extra)
{
    if (r->srv->fed == NULL) {
        json_decref(servers);
        json_decref(extra);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown room (federation is disabled)");
    }
    remote_t *m = ax_calloc(1, sizeof(*m));
    snprintf(m->room_id, sizeof(m->room_id), "%s", room_id);
    snprintf(m->user_id, sizeof(m->user_id), "%s", r->auth.user_id);
    snprintf(m->membership, sizeof(m->membership), "%s", membership);
    m->servers = servers;
    m->extra = extra != NULL ? extra : json_object();
    ask_next(r, m);
    return 0;
}

/* ---- by alias: ask the alias's server which room and servers first ---- */

typedef struct st_by_alias_t {
    char membership[16];
    json_t *extra;
    json_t *servers; /* the client's own hints, tried after the directory's */
} by_alias_t;

static void alias_resolved(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    by_alias_t *a = fr->user;
    if (r == NULL) {
        json_decref(a->extra);
        json_decref(a->servers);
        free(a);
        ax_fed_request_free(fr);
        return;
    }
    const char *room_id = json_string_value(json_object_get(fr->json, "room_id"));
    json_t *listed = json_object_get(fr->json, "servers");
    if (fr->super.result != 0 || fr->status != 200 || room_id == NULL || room_id[0] != '!') {
        ax_reply_error(r, AX_M_NOT_FOUND,
                       fr->super.result != 0 ? "The alias's server could not be reached" : "Room alias not found");
        json_decref(a->extra);
        json_decref(a->servers);
    } else {
        json_t *servers = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(listed, i, v)
        {
            if (json_is_string(v))
                json_array_append(servers, v);
        }
        json_array_extend(servers, a->servers);
        json_decref(a->servers);
        char room[256];
        snprintf(room, sizeof(room), "%s", room_id);
        ax_fed_remote_membership(r, room, a->membership, servers, a->extra);
    }
    free(a);
    ax_fed_request_free(fr);
}

int ax_fed_remote_membership_by_alias(ax_req_t *r, const char *alias, const char *membership, json_t *servers,
                                      json_t *extra)
{
    const char *server = ax_id_domain(alias);
    if (r->srv->fed == NULL || server == NULL) {
        json_decref(servers);
        json_decref(extra);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Room alias not found");
    }
    by_alias_t *a = ax_calloc(1, sizeof(*a));
    snprintf(a->membership, sizeof(a->membership), "%s", membership);
    a->extra = extra;
    a->servers = servers;
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v1/query/directory?room_alias=");
    ax_fed_urlencode(&path, alias);
    ax_fed_request_t *fr = ax_fed_request_new(server, "GET", path.base, NULL);
    ax_buf_dispose(&path);
    fr->user = a;
    ax_req_bind_task(r, &fr->super, alias_resolved);
    ax_fed_submit(r->srv->fed, fr);
    return 0;
}

/* ---- inviting a user of another server ---- */

/*
 * One invite, or (createRoom's "invite" list) a chain of them: 'rest' holds
 * the invitees still to invite and 'extra' the content each gets.  A chain
 * never fails the request (the room exists by then): an invite that does
 * not go through is logged and the next one goes on; the answer is the
 * room's ID once the last is done.
 */
typedef struct st_invite_out_t {
    char room_id[256];
    char invitee[256];
    char event_id[256];
    const ax_room_version_t *rv;
    json_t *event; /* signed by us, then by the invitee's server */
    ax_ingest_t outcome;
    json_t *rest;  /* chain: [user_id] still to invite; NULL for one invite */
    json_t *extra; /* chain: the content every invite gets */
} invite_out_t;

static void invite_out_free(void *p)
{
    invite_out_t *v = p;
    json_decref(v->event);
    json_decref(v->rest);
    json_decref(v->extra);
    free(v);
}

static int invite_start(ax_req_t *r, const char *room_id, const char *invitee, json_t *extra, json_t *rest);

/*
 * The invite in 'v' is over: answer the request (status 0: it went through),
 * or in a chain, log a failure and go on with the next invitee.  'v' stays
 * the caller's to free.
 */
static void invite_out_done(ax_req_t *r, invite_out_t *v, int status, ax_errcode_t errcode, const char *error)
{
    if (v->rest == NULL) {
        if (status == 0)
            ax_reply_json_new(r, 200, json_object());
        else
            ax_reply_error_status(r, status, errcode, error);
        return;
    }
    if (status != 0)
        ax_log(AX_LOG_WARN, "createRoom %s: could not invite %s: %s", v->room_id, v->invitee, error);
    if (json_array_size(v->rest) == 0) {
        ax_reply_json_new(r, 200, json_pack("{s:s}", "room_id", v->room_id));
        return;
    }
    char next[256];
    snprintf(next, sizeof(next), "%s", json_string_value(json_array_get(v->rest, 0)));
    json_array_remove(v->rest, 0);
    invite_start(r, v->room_id, next, json_deep_copy(v->extra), json_incref(v->rest));
}

static int invite_out_apply(ax_txn_t *txn, void *data)
{
    invite_out_t *v = data;
    int rc = ax_room_ingest(txn, v->rv, v->room_id, v->event_id, v->event, NULL, &v->outcome);
    /* our event: the room's other servers get it from us; the invitee's server has it already */
    if (rc == 0 && v->outcome.outcome == AX_INGEST_ACCEPTED)
        rc = ax_room_fanout(txn, v->room_id, v->event_id,
                            ax_id_domain(json_string_value(json_object_get(v->event, "sender"))),
                            ax_id_domain(v->invitee));
    return rc;
}

static void invite_out_stored(ax_req_t *r, int result, void *data)
{
    invite_out_t *v = data;
    if (result != 0)
        return invite_out_done(r, v, 500, AX_M_INTERNAL, "Could not store the invite");
    if (v->outcome.outcome != AX_INGEST_ACCEPTED && v->outcome.outcome != AX_INGEST_DUPLICATE)
        return invite_out_done(r, v, 403, AX_M_FORBIDDEN, v->outcome.reason);
    invite_out_done(r, v, 0, AX_M_UNKNOWN, NULL);
}

static void invite_out_answered(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    invite_out_t *v = fr->user;
    if (r == NULL) {
        ax_fed_request_free(fr);
        invite_out_free(v);
        return;
    }
    json_t *signed_ev = json_object_get(fr->json, "event");
    if (fr->super.result != 0 || fr->status != 200 || !json_is_object(signed_ev)) {
        const char *why = json_string_value(json_object_get(fr->json, "error"));
        const char *code = json_string_value(json_object_get(fr->json, "errcode"));
        if (fr->super.result == 0 && fr->status == 403)
            invite_out_done(r, v, 403, AX_M_FORBIDDEN, why ? why : "The invitee's server refused the invite");
        else if (fr->super.result == 0 && fr->status >= 400 && fr->status < 500 && code != NULL && v->rest == NULL)
            ax_reply_json_new(r, fr->status, json_pack("{s:s, s:s}", "errcode", code, "error", why ? why : code));
        else if (fr->super.result == 0 && fr->status >= 400 && fr->status < 500)
            invite_out_done(r, v, fr->status, AX_M_UNKNOWN, why ? why : "The invitee's server refused the invite");
        else
            invite_out_done(r, v, 502, AX_M_UNKNOWN, "The invitee's server could not be reached");
        ax_fed_request_free(fr);
        invite_out_free(v);
        return;
    }
    /* the same event, now with the invitee's server's signature beside ours */
    char eid[256];
    const char *server = ax_id_domain(v->invitee);
    if (ax_event_get_id(v->rv, signed_ev, eid, sizeof(eid)) != 0 || strcmp(eid, v->event_id) != 0 ||
        json_object_get(json_object_get(signed_ev, "signatures"), server) == NULL) {
        ax_fed_request_free(fr);
        invite_out_done(r, v, 502, AX_M_UNKNOWN, "The invitee's server sent back another event");
        invite_out_free(v);
        return;
    }
    json_t *sigs = json_object_get(v->event, "signatures");
    json_object_set(sigs, server, json_object_get(json_object_get(signed_ev, "signatures"), server));
    ax_fed_request_free(fr);
    ax_req_write(r, invite_out_apply, invite_out_stored, v, invite_out_free);
}

/* Builds, signs and checks the invite of 'invitee', then asks its server to sign it too. */
static int invite_start(ax_req_t *r, const char *room_id, const char *invitee, json_t *extra, json_t *rest)
{
    ax_server_t *srv = r->srv;
    invite_out_t *v = ax_calloc(1, sizeof(*v));
    snprintf(v->room_id, sizeof(v->room_id), "%s", room_id);
    snprintf(v->invitee, sizeof(v->invitee), "%s", invitee);
    v->rest = rest;
    v->extra = rest != NULL ? json_deep_copy(extra) : NULL;
    ax_txn_t *txn;
    if (ax_db_read_begin(srv->db, &txn) != 0) {
        json_decref(extra);
        invite_out_done(r, v, 500, AX_M_INTERNAL, "Database unavailable");
        invite_out_free(v);
        return 0;
    }
    json_t *content = extra;
    json_object_set_new(content, "membership", json_string("invite"));
    ax_draft_t d = {.room_id = room_id,
                    .sender = r->auth.user_id,
                    .type = "m.room.member",
                    .state_key = invitee,
                    .content = content};
    json_t *pdu = NULL;
    const ax_room_version_t *rv = NULL;
    char reason[256] = "";
    int rc = ax_room_build(txn, &srv->origin, &d, &pdu, &rv);
    json_decref(content);
    if (rc == 0 && ax_event_sign(pdu, rv, srv->cfg->server_name, &srv->signing_key) != 0)
        rc = AX_EINVAL;
    if (rc == 0) {
        ax_room_lookup_t lk = {.txn = txn, .room_id = room_id};
        if (ax_auth_check(rv, pdu, ax_room_lookup, &lk, reason, sizeof(reason)) != 0)
            rc = AX_EFORBIDDEN;
        ax_room_lookup_dispose(&lk);
    }
    json_t *stripped = rc == 0 ? ax_room_stripped_state(txn, room_id) : NULL;
    ax_db_read_end(txn);
    if (rc != 0) {
        json_decref(pdu);
        json_decref(stripped);
        if (rc == AX_ENOTFOUND)
            invite_out_done(r, v, 403, AX_M_FORBIDDEN, "You are not in this room");
        else if (rc == AX_EFORBIDDEN)
            invite_out_done(r, v, 403, AX_M_FORBIDDEN, reason[0] ? reason : "Cannot build the invite");
        else
            invite_out_done(r, v, 500, AX_M_INTERNAL, "Cannot build the invite");
        invite_out_free(v);
        return 0;
    }
    v->rv = rv;
    v->event = pdu;
    ax_event_get_id(rv, pdu, v->event_id, sizeof(v->event_id));
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v2/invite/");
    ax_fed_urlencode(&path, room_id);
    ax_buf_putc(&path, '/');
    ax_fed_urlencode(&path, v->event_id);
    json_t *body = json_pack("{s:O, s:s, s:o}", "event", pdu, "room_version", rv->id, "invite_room_state", stripped);
    ax_fed_request_t *fr = ax_fed_request_new(ax_id_domain(invitee), "PUT", path.base, body);
    ax_buf_dispose(&path);
    fr->user = v;
    ax_req_bind_task(r, &fr->super, invite_out_answered);
    ax_fed_submit(srv->fed, fr);
    return 0;
}

int ax_fed_remote_invite(ax_req_t *r, const char *room_id, const char *invitee, json_t *extra)
{
    if (r->srv->fed == NULL) {
        json_decref(extra);
        return ax_reply_error(r, AX_M_FORBIDDEN, "Inviting users of other servers needs federation");
    }
    return invite_start(r, room_id, invitee, extra != NULL ? extra : json_object(), NULL);
}

int ax_fed_create_room_invites(ax_req_t *r, const char *room_id, json_t *invitees, json_t *extra)
{
    if (r->srv->fed == NULL || json_array_size(invitees) == 0) {
        json_decref(invitees);
        json_decref(extra);
        return ax_reply_json_new(r, 200, json_pack("{s:s}", "room_id", room_id));
    }
    char first[256];
    snprintf(first, sizeof(first), "%s", json_string_value(json_array_get(invitees, 0)));
    json_array_remove(invitees, 0);
    return invite_start(r, room_id, first, extra, invitees);
}
