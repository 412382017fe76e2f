/*
 * uia.c -- User-Interactive Authentication (spec: Client-Server API,
 * "User-Interactive Authentication API"), used by /register,
 * /delete_devices, DELETE /devices/{id}, /account/password,
 * /account/deactivate and /login/get_token.
 *
 * A session is stored (uiasession_session) with the method, path and user
 * that started it, so it cannot be replayed for a different request, and
 * is consumed the moment a flow completes.  Sessions expire after
 * UIA_LIFETIME_MS.  Stages: m.login.dummy, m.login.registration_token,
 * m.login.password (verified on the worker pool).
 */
#include "server/cs/cs.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define UIA_LIFETIME_MS (15ULL * 60 * 1000)

typedef struct st_uia_t {
    const ax_uia_flow_t *flows;
    size_t nflows;
    ax_uia_ok_fn ok;
    void *arg;
    json_t *body; /* borrowed from the request */
    char session[33];
    json_t *record; /* the session record (new reference, owned) */
    bool stored;    /* the record exists in the database */
    char *password_hash;
    char *password;
} uia_t;

/* Heap copy of what the writer needs, since the request may go away. */
typedef struct st_uia_write_t {
    char session[33];
    json_t *record; /* NULL: delete the session */
    uint64_t sweep_before;
    uia_t *u; /* request-pool memory: only the continuation, on the request's thread, touches it */
} uia_write_t;

static void uia_write_free(void *p)
{
    uia_write_t *w = p;
    json_decref(w->record);
    free(w);
}

static int uia_write_apply(ax_txn_t *txn, void *data)
{
    uia_write_t *w = data;
    if (w->sweep_before != 0)
        ax_db_uia_expire(txn, w->sweep_before, NULL);
    if (w->record == NULL) {
        int rc = ax_db_uia_del(txn, w->session);
        return rc == AX_ENOTFOUND ? 0 : rc;
    }
    return ax_db_uia_put(txn, w->session, w->record);
}

static json_t *flows_json(const uia_t *u)
{
    json_t *flows = json_array();
    for (size_t i = 0; i < u->nflows; ++i) {
        json_t *stages = json_array();
        for (size_t k = 0; u->flows[i].stages[k] != NULL; ++k)
            json_array_append_new(stages, json_string(u->flows[i].stages[k]));
        json_array_append_new(flows, json_pack("{s:o}", "stages", stages));
    }
    return flows;
}

/* 401 with the flows, the session and what is completed; with an error when 'code' is not NULL. */
static void reply_401(ax_req_t *r, uia_t *u, const char *code, const char *error)
{
    json_t *body = json_pack("{s:o, s:{}, s:s, s:O}", "flows", flows_json(u), "params", "session", u->session,
                             "completed", json_object_get(u->record, "completed"));
    if (code != NULL) {
        json_object_set_new(body, "errcode", json_string(code));
        json_object_set_new(body, "error", json_string(error));
    }
    ax_reply_json_new(r, 401, body);
}

static bool stage_in_flows(const uia_t *u, const char *stage)
{
    for (size_t i = 0; i < u->nflows; ++i)
        for (size_t k = 0; u->flows[i].stages[k] != NULL; ++k)
            if (strcmp(u->flows[i].stages[k], stage) == 0)
                return true;
    return false;
}

static bool completed_has(json_t *completed, const char *stage)
{
    size_t i;
    json_t *v;
    json_array_foreach(completed, i, v)
    {
        if (ax_streq(json_string_value(v), stage))
            return true;
    }
    return false;
}

static bool some_flow_complete(const uia_t *u)
{
    json_t *completed = json_object_get(u->record, "completed");
    for (size_t i = 0; i < u->nflows; ++i) {
        bool all = true;
        for (size_t k = 0; u->flows[i].stages[k] != NULL && all; ++k)
            all = completed_has(completed, u->flows[i].stages[k]);
        if (all)
            return true;
    }
    return false;
}

/* ---- finishing: store progress, or consume the session and go on ---- */

static void after_consume(ax_req_t *r, int result, void *data)
{
    uia_t *u = ((uia_write_t *)data)->u;
    if (result != 0) {
        ax_reply_error(r, ax_errcode_from_ax(result), "Could not update the authentication session");
        return;
    }
    u->ok(r, u->body, u->record, u->arg);
}

static void after_store(ax_req_t *r, int result, void *data)
{
    uia_t *u = ((uia_write_t *)data)->u;
    if (result != 0) {
        ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the authentication session");
        return;
    }
    reply_401(r, u, NULL, NULL);
}

static uia_write_t *make_write(ax_req_t *r, uia_t *u, bool keep)
{
    uia_write_t *w = ax_calloc(1, sizeof(*w));
    memcpy(w->session, u->session, sizeof(w->session));
    w->record = keep ? json_deep_copy(u->record) : NULL;
    w->u = u;
    /* now and then, sweep sessions nobody finished */
    uint64_t now = ax_now_ms(), last = atomic_load(&r->srv->uia_swept_at_ms);
    if (now - last > 60000 && atomic_compare_exchange_strong(&r->srv->uia_swept_at_ms, &last, now))
        w->sweep_before = now - UIA_LIFETIME_MS;
    return w;
}

static void stage_done(ax_req_t *r, uia_t *u, const char *stage)
{
    json_t *completed = json_object_get(u->record, "completed");
    if (!completed_has(completed, stage))
        json_array_append_new(completed, json_string(stage));
    if (some_flow_complete(u)) {
        if (!u->stored) {
            u->ok(r, u->body, u->record, u->arg);
            return;
        }
        ax_req_write(r, uia_write_apply, after_consume, make_write(r, u, false), uia_write_free);
        return;
    }
    u->stored = true;
    ax_req_write(r, uia_write_apply, after_store, make_write(r, u, true), uia_write_free);
}

/* ---- m.login.password ---- */

typedef struct st_verify_t {
    char *hash;
    char *password;
    uia_t *u; /* request-pool memory: continuation only */
} verify_t;

static void verify_free(void *p)
{
    verify_t *v = p;
    free(v->hash);
    sodium_memzero(v->password, strlen(v->password));
    free(v->password);
    free(v);
}

static int verify_run(void *p)
{
    verify_t *v = p;
    return ax_password_verify(v->hash, v->password);
}

static void after_verify(ax_req_t *r, int result, void *data)
{
    uia_t *u = ((verify_t *)data)->u;
    if (result != 0) {
        reply_401(r, u, "M_FORBIDDEN", "Invalid password");
        return;
    }
    stage_done(r, u, "m.login.password");
}

static void password_stage(ax_req_t *r, uia_t *u, json_t *auth)
{
    const char *user = NULL, *password = NULL;
    json_t *ident = NULL;
    if (ax_field_object_or_reply(r, auth, "identifier", false, &ident) != 0 ||
        ax_field_string_or_reply(r, auth, "user", false, &user) != 0 ||
        ax_field_string_or_reply(r, auth, "password", true, &password) != 0)
        return;
    if (ident != NULL) {
        const char *type = NULL;
        if (ax_field_string_or_reply(r, ident, "type", true, &type) != 0)
            return;
        if (strcmp(type, "m.id.user") != 0) {
            reply_401(r, u, "M_UNKNOWN", "Only m.id.user identifiers are supported");
            return;
        }
        if (ax_field_string_or_reply(r, ident, "user", true, &user) != 0)
            return;
    }
    const char *uid = user != NULL ? ax_cs_resolve_user(r, user) : r->auth.user_id;
    if (r->auth.user_id == NULL || uid == NULL || strcmp(uid, r->auth.user_id) != 0) {
        reply_401(r, u, "M_FORBIDDEN", "You can only authenticate as yourself");
        return;
    }
    ax_txn_t *txn;
    json_t *acct = NULL;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return;
    }
    ax_db_account_get(txn, uid, &acct);
    ax_db_read_end(txn);
    verify_t *v = ax_calloc(1, sizeof(*v));
    const char *h = json_string_value(json_object_get(acct, "password_hash"));
    v->hash = h != NULL ? ax_strdup(h) : NULL;
    v->password = ax_strdup(password);
    json_decref(acct);
    v->u = u;
    ax_req_work(r, verify_run, after_verify, v, verify_free);
}

/* ---- registration tokens ---- */

bool ax_cs_registration_requires_token(ax_server_t *srv, ax_txn_t *txn)
{
    return srv->cfg->registration_token != NULL || ax_db_regtoken_any(txn);
}

int ax_cs_regtoken_check(ax_server_t *srv, ax_txn_t *txn, const char *token)
{
    const char *cfg_token = srv->cfg->registration_token;
    if (cfg_token != NULL && strlen(cfg_token) == strlen(token) && sodium_memcmp(cfg_token, token, strlen(token)) == 0)
        return 0;
    json_t *t = NULL;
    if (strlen(token) > 64 || ax_db_regtoken_get(txn, token, &t) != 0)
        return AX_EFORBIDDEN;
    json_t *allowed = json_object_get(t, "uses_allowed");
    json_t *expiry = json_object_get(t, "expiry_time");
    json_int_t used =
        json_integer_value(json_object_get(t, "completed")) + json_integer_value(json_object_get(t, "pending"));
    bool ok = (!json_is_integer(allowed) || used < json_integer_value(allowed)) &&
              (!json_is_integer(expiry) || (json_int_t)ax_now_ms() < json_integer_value(expiry));
    json_decref(t);
    return ok ? 0 : AX_EFORBIDDEN;
}

static void token_stage(ax_req_t *r, uia_t *u, json_t *auth)
{
    const char *token = NULL;
    if (ax_field_string_or_reply(r, auth, "token", true, &token) != 0)
        return;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return;
    }
    int rc = ax_cs_regtoken_check(r->srv, txn, token);
    ax_db_read_end(txn);
    if (rc != 0) {
        reply_401(r, u, "M_FORBIDDEN", "Invalid registration token");
        return;
    }
    json_object_set_new(u->record, "token", json_string(token));
    stage_done(r, u, "m.login.registration_token");
}

/* ---- entry point ---- */

static void uia_dispose(void *p)
{
    uia_t *u = p;
    json_decref(u->record);
}

static void after_new_session(ax_req_t *r, int result, void *data)
{
    uia_t *u = ((uia_write_t *)data)->u;
    if (result != 0) {
        ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the authentication session");
        return;
    }
    reply_401(r, u, NULL, NULL);
}

void ax_uia_run(ax_req_t *r, json_t *body, const ax_uia_flow_t *flows, size_t nflows, ax_uia_ok_fn ok, void *arg)
{
    uia_t *u = ax_palloc_dispose(r, sizeof(*u), uia_dispose);
    memset(u, 0, sizeof(*u));
    u->flows = flows;
    u->nflows = nflows;
    u->ok = ok;
    u->arg = arg;
    u->body = body;
    const char *fingerprint = ax_psprintf(r, "%s %s", ax_req_method(r), ax_req_path(r));

    json_t *auth = NULL;
    const char *session = NULL, *type = NULL;
    if (ax_field_object_or_reply(r, body, "auth", false, &auth) != 0)
        return;
    if (auth != NULL && (ax_field_string_or_reply(r, auth, "session", false, &session) != 0 ||
                         ax_field_string_or_reply(r, auth, "type", false, &type) != 0))
        return;

    if (session != NULL) {
        ax_txn_t *txn;
        if (ax_db_read_begin(r->srv->db, &txn) != 0) {
            ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
            return;
        }
        int rc = strlen(session) < sizeof(u->session) ? ax_db_uia_get(txn, session, &u->record) : AX_ENOTFOUND;
        ax_db_read_end(txn);
        json_int_t created = json_integer_value(json_object_get(u->record, "created_ts"));
        if (rc != 0 || (uint64_t)created + UIA_LIFETIME_MS < ax_now_ms()) {
            ax_reply_error(r, AX_M_UNKNOWN, "Unknown or expired authentication session");
            return;
        }
        /* bound to the request that started it: no replay for another operation or user */
        const char *user = json_string_value(json_object_get(u->record, "user_id"));
        if (!ax_streq(json_string_value(json_object_get(u->record, "fingerprint")), fingerprint) ||
            !ax_streq(user, r->auth.user_id)) {
            ax_reply_error(r, AX_M_FORBIDDEN, "This authentication session belongs to another request");
            return;
        }
        snprintf(u->session, sizeof(u->session), "%s", session);
        u->stored = true;
        if (!json_is_array(json_object_get(u->record, "completed")))
            json_object_set_new(u->record, "completed", json_array());
    } else {
        ax_random_alnum(u->session, 24);
        u->record = json_pack("{s:s, s:I, s:[]}", "fingerprint", fingerprint, "created_ts", (json_int_t)ax_now_ms(),
                              "completed");
        if (r->auth.user_id != NULL)
            json_object_set_new(u->record, "user_id", json_string(r->auth.user_id));
    }

    if (auth == NULL || type == NULL) {
        if (u->stored) {
            reply_401(r, u, NULL, NULL);
            return;
        }
        /* a new session: store it, then tell the client the flows */
        u->stored = true;
        ax_req_write(r, uia_write_apply, after_new_session, make_write(r, u, true), uia_write_free);
        return;
    }
    if (!stage_in_flows(u, type)) {
        reply_401(r, u, "M_UNRECOGNIZED", "Unknown authentication stage for this request");
        return;
    }
    if (strcmp(type, "m.login.dummy") == 0)
        stage_done(r, u, type);
    else if (strcmp(type, "m.login.registration_token") == 0)
        token_stage(r, u, auth);
    else if (strcmp(type, "m.login.password") == 0)
        password_stage(r, u, auth);
    else
        reply_401(r, u, "M_UNRECOGNIZED", "Unsupported authentication stage");
}
