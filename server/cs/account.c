/*
 * account.c -- whoami, password change and deactivation (spec:
 * Client-Server API "Current account information", "Account management";
 * whoami.yaml, password_management.yaml, account_deactivation.yaml) and
 * GET /capabilities (capabilities.yaml).
 */
#include "server/cs/cs.h"

#include <stdlib.h>
#include <string.h>

static const ax_uia_flow_t password_flow[] = {{{"m.login.password", NULL}}};

/* GET /_matrix/client/v3/account/whoami */
int ax_cs_whoami(ax_req_t *r)
{
    return ax_reply_json_new(
        r, 200,
        json_pack("{s:s, s:s, s:b}", "user_id", r->auth.user_id, "device_id", r->auth.device_id, "is_guest", 0));
}

/* ---- POST /account/password ---- */

typedef struct st_password_t {
    char user_id[256];
    char device_id[128];
    char *password;
    char hash[AX_PASSWORD_HASH_MAX];
    bool logout_devices;
} password_t;

static void password_free(void *p)
{
    password_t *w = p;
    if (w->password != NULL) {
        sodium_memzero(w->password, strlen(w->password));
        free(w->password);
    }
    free(w);
}

static int password_hash_run(void *data)
{
    password_t *w = data;
    return ax_password_hash(w->password, w->hash);
}

static int password_apply(ax_txn_t *txn, void *data)
{
    password_t *w = data;
    json_t *acct = NULL;
    int rc = ax_db_account_get(txn, w->user_id, &acct);
    if (rc != 0)
        return rc;
    json_object_set_new(acct, "password_hash", json_string(w->hash));
    rc = ax_db_account_put(txn, w->user_id, acct);
    json_decref(acct);
    if (rc == 0 && w->logout_devices)
        rc = ax_cs_logout_devices(txn, w->user_id, w->device_id);
    return rc;
}

static void password_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not change the password");
    ax_reply_json_new(r, 200, json_object());
}

static void password_hashed(ax_req_t *r, int result, void *data)
{
    password_t *w = data;
    if (result != 0)
        return (void)ax_reply_error(r, AX_M_INTERNAL, "Could not hash the password");
    password_t *next = ax_malloc(sizeof(*next));
    *next = *w;
    next->password = NULL;
    ax_req_write(r, password_apply, password_written, next, password_free);
}

static void password_authorised(ax_req_t *r, json_t *body, json_t *session, void *arg)
{
    (void)session, (void)arg;
    const char *new_password;
    bool logout_devices;
    if (ax_field_string_or_reply(r, body, "new_password", true, &new_password) != 0 ||
        ax_field_bool_or_reply(r, body, "logout_devices", true, &logout_devices) != 0)
        return;
    password_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    snprintf(w->device_id, sizeof(w->device_id), "%s", r->auth.device_id);
    w->password = ax_strdup(new_password);
    w->logout_devices = logout_devices;
    ax_req_work(r, password_hash_run, password_hashed, w, password_free);
}

/* POST /_matrix/client/v3/account/password */
int ax_cs_account_password(ax_req_t *r)
{
    json_t *body;
    const char *new_password;
    bool logout_devices;
    /* check the request before asking for authentication */
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "new_password", false, &new_password) != 0 ||
        ax_field_bool_or_reply(r, body, "logout_devices", true, &logout_devices) != 0)
        return 0;
    if (new_password != NULL && (new_password[0] == '\0' || strlen(new_password) > 512))
        return ax_reply_error(r, AX_M_WEAK_PASSWORD, "The new password must be 1-512 bytes");
    ax_uia_run(r, body, password_flow, 1, password_authorised, NULL);
    return 0;
}

/* ---- POST /account/deactivate ---- */

typedef struct st_rooms_to_leave_t {
    char **ids;
    size_t n, cap;
} rooms_to_leave_t;

static int collect_room_to_leave(void *arg, const char *room_id, json_t *m)
{
    rooms_to_leave_t *l = arg;
    const char *membership = json_string_value(json_object_get(m, "membership"));
    if (membership == NULL || strcmp(membership, "leave") == 0 || strcmp(membership, "ban") == 0)
        return 0;
    if (l->n == l->cap)
        l->ids = ax_realloc(l->ids, (l->cap = l->cap ? l->cap * 2 : 16) * sizeof(char *));
    l->ids[l->n++] = ax_strdup(room_id);
    return 0;
}

/*
 * Leaves every room the user is in, invited to or knocking on (spec:
 * "the server SHOULD make the user leave all rooms"), so nobody waits for
 * an answer from an account that is gone.
 */
static int leave_all_rooms(ax_txn_t *txn, ax_cs_deactivate_t *d)
{
    rooms_to_leave_t l = {0};
    int rc = ax_db_user_rooms_foreach(txn, d->user_id, collect_room_to_leave, &l);
    for (size_t i = 0; i < l.n; ++i) {
        if (rc == 0) {
            char reason[256];
            int r = ax_cs_member_leave(txn, d->origin, l.ids[i], d->user_id, reason, sizeof(reason));
            if (r == 0)
                d->rooms_left++;
            else if (r == AX_EFORBIDDEN || r == AX_ENOTFOUND)
                ax_log(AX_LOG_WARN, "deactivating %s: cannot leave %s: %s", d->user_id, l.ids[i], reason);
            else
                rc = r;
        }
        free(l.ids[i]);
    }
    free(l.ids);
    return rc;
}

/* Deactivates 'user_id' (writer side): shared with `axon admin deactivate`. */
int ax_cs_deactivate_apply(ax_txn_t *txn, void *data)
{
    ax_cs_deactivate_t *d = data;
    json_t *acct = NULL;
    int rc = ax_db_account_get(txn, d->user_id, &acct);
    if (rc != 0)
        return rc;
    if (json_is_true(json_object_get(acct, "deactivated"))) {
        json_decref(acct);
        return 0; /* already gone: nothing more to do, and the leaves were sent then */
    }
    /* the record stays so the ID is never handed out again */
    json_object_set_new(acct, "deactivated", json_true());
    json_object_set_new(acct, "password_hash", json_null());
    json_object_set_new(acct, "deactivated_ts", json_integer((json_int_t)ax_now_ms()));
    rc = ax_db_account_put(txn, d->user_id, acct);
    json_decref(acct);
    if (rc == 0)
        rc = ax_cs_logout_devices(txn, d->user_id, NULL);
    if (rc == 0 && d->erase) {
        json_t *empty = json_object();
        rc = ax_db_profile_put(txn, d->user_id, empty);
        json_decref(empty);
    }
    if (rc == 0)
        rc = leave_all_rooms(txn, d);
    return rc;
}

static void deactivate_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not deactivate the account");
    ax_reply_json_new(r, 200, json_pack("{s:s}", "id_server_unbind_result", "no-support"));
}

static void deactivate_authorised(ax_req_t *r, json_t *body, json_t *session, void *arg)
{
    (void)session, (void)arg;
    bool erase;
    if (ax_field_bool_or_reply(r, body, "erase", false, &erase) != 0)
        return;
    ax_cs_deactivate_t *d = ax_calloc(1, sizeof(*d));
    snprintf(d->user_id, sizeof(d->user_id), "%s", r->auth.user_id);
    d->erase = erase;
    d->origin = &r->srv->origin;
    ax_req_write(r, ax_cs_deactivate_apply, deactivate_written, d, free);
}

/* POST /_matrix/client/v3/account/deactivate */
int ax_cs_account_deactivate(ax_req_t *r)
{
    json_t *body;
    bool erase;
    const char *id_server;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_bool_or_reply(r, body, "erase", false, &erase) != 0 ||
        ax_field_string_or_reply(r, body, "id_server", false, &id_server) != 0)
        return 0;
    ax_uia_run(r, body, password_flow, 1, deactivate_authorised, NULL);
    return 0;
}

/* ---- GET /capabilities ---- */

/* GET /_matrix/client/v3/capabilities */
int ax_cs_capabilities(ax_req_t *r)
{
    json_t *available = json_object();
    for (const char *const *v = ax_room_versions_creatable; *v != NULL; ++v)
        json_object_set_new(available, *v, json_string("stable"));
    json_t *caps =
        json_pack("{s:{s:b}, s:{s:s, s:o}, s:{s:b}, s:{s:b}, s:{s:b}, s:{s:b}, s:{s:b}}", "m.change_password",
                  "enabled", 1, "m.room_versions", "default", r->srv->cfg->default_room_version, "available", available,
                  "m.set_displayname", "enabled", 1, "m.set_avatar_url", "enabled", 1, "m.3pid_changes", "enabled", 0,
                  "m.get_login_token", "enabled", 1, "m.profile_fields", "enabled", 1);
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "capabilities", caps));
}
