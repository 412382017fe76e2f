/*
 * login.c -- logging in and out (spec: Client-Server API "Login", "Refresh
 * tokens", "Logout"; login.yaml, refresh.yaml, logout.yaml,
 * login_token.yaml), and issuing sessions for register.c too.
 *
 * Passwords are checked on the worker pool (argon2id), never on an HTTP
 * thread; an unknown user costs the same work as a wrong password.  Tokens
 * are 256 random bits; only their SHA-256 is stored.
 */
#include "server/cs/cs.h"
#include "core/events.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define LOGIN_TOKEN_LIFETIME_MS (2ULL * 60 * 1000)

/* ---- sessions ---- */

void ax_cs_device_id_new(char out[11])
{
    static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (int i = 0; i < 10; ++i)
        out[i] = letters[randombytes_uniform(26)];
    out[10] = '\0';
}

ax_cs_login_t *ax_cs_login_new(ax_req_t *r, const char *user_id, const char *device_id, const char *display_name,
                               bool refresh)
{
    ax_server_t *srv = r->srv;
    ax_cs_login_t *l = ax_calloc(1, sizeof(*l));
    snprintf(l->ip, sizeof(l->ip), "%s", ax_req_client_ip(r));
    snprintf(l->user_id, sizeof(l->user_id), "%s", user_id);
    if (device_id != NULL)
        snprintf(l->device_id, sizeof(l->device_id), "%s", device_id);
    else
        ax_cs_device_id_new(l->device_id);
    l->display_name = display_name != NULL ? ax_strdup(display_name) : NULL;
    ax_token_generate("axo_", l->access, l->access_hash);
    l->refresh = refresh;
    if (refresh) {
        ax_token_generate("axr_", l->refresh_token, l->refresh_hash);
        l->lifetime_ms = (uint64_t)srv->cfg->access_token_lifetime * 1000;
        l->expires_ms = ax_now_ms() + l->lifetime_ms;
    }
    return l;
}

void ax_cs_login_free(void *p)
{
    ax_cs_login_t *l = p;
    if (l == NULL)
        return;
    free(l->display_name);
    sodium_memzero(l, sizeof(*l));
    free(l);
}

int ax_cs_login_apply(ax_txn_t *txn, ax_cs_login_t *l)
{
    return ax_db_device_login(txn, l->user_id, l->device_id, l->display_name, l->ip, l->access_hash, l->expires_ms,
                              l->refresh ? l->refresh_hash : NULL, l->has_prev ? l->prev_refresh : NULL);
}

json_t *ax_cs_login_response(ax_server_t *srv, const ax_cs_login_t *l)
{
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "user_id", l->user_id, "access_token", l->access, "device_id",
                             l->device_id, "home_server", srv->cfg->server_name);
    if (l->refresh) {
        json_object_set_new(body, "refresh_token", json_string(l->refresh_token));
        json_object_set_new(body, "expires_in_ms", json_integer((json_int_t)l->lifetime_ms));
    }
    if (srv->cfg->well_known_client != NULL)
        json_object_set_new(body, "well_known",
                            json_pack("{s:{s:s}}", "m.homeserver", "base_url", srv->cfg->well_known_client));
    return body;
}

const char *ax_cs_resolve_user(ax_req_t *r, const char *user)
{
    const char *server = r->srv->cfg->server_name;
    const char *full = user[0] == '@' ? user : ax_psprintf(r, "@%s:%s", user, server);
    char *id = ax_pstrdup(r, full);
    char *colon = strchr(id, ':');
    if (colon == NULL || strcmp(colon + 1, server) != 0)
        return NULL;
    for (char *p = id + 1; p < colon; ++p)
        *p = (char)tolower((unsigned char)*p);
    return ax_id_is_valid_user_id(id) ? id : NULL;
}

typedef struct st_foreach_ids_t {
    char (*ids)[128];
    size_t n, cap;
} foreach_ids_t;

static int collect_device(void *arg, const char *device_id, json_t *device)
{
    (void)device;
    foreach_ids_t *f = arg;
    if (f->n == f->cap)
        f->ids = ax_realloc(f->ids, (f->cap = f->cap ? f->cap * 2 : 8) * sizeof(*f->ids));
    snprintf(f->ids[f->n++], sizeof(f->ids[0]), "%s", device_id);
    return 0;
}

int ax_cs_logout_devices(ax_txn_t *txn, const char *user_id, const char *keep)
{
    foreach_ids_t f = {NULL, 0, 0};
    int rc = ax_db_device_foreach(txn, user_id, collect_device, &f);
    for (size_t i = 0; rc == 0 && i < f.n; ++i)
        if (keep == NULL || strcmp(f.ids[i], keep) != 0)
            rc = ax_db_device_logout(txn, user_id, f.ids[i], true);
    free(f.ids);
    return rc;
}

/* ---- GET /login ---- */

/* GET /_matrix/client/v3/login */
int ax_cs_login_flows(ax_req_t *r)
{
    return ax_reply_json_new(r, 200,
                             json_pack("{s:[{s:s}, {s:s, s:b}]}", "flows", "type", "m.login.password", "type",
                                       "m.login.token", "get_login_token", 1));
}

/* ---- POST /login ---- */

typedef struct st_login_t {
    ax_cs_login_t *login;
    char *hash;
    char *password;
    char login_token[AX_TOKEN_LEN + 8];
    bool bad_token; /* set by the writer: unknown or expired m.login.token */
} login_t;

static void login_free(void *p)
{
    login_t *l = p;
    ax_cs_login_free(l->login);
    free(l->hash);
    if (l->password != NULL) {
        sodium_memzero(l->password, strlen(l->password));
        free(l->password);
    }
    free(l);
}

static int login_apply(ax_txn_t *txn, void *data)
{
    login_t *l = data;
    return ax_cs_login_apply(txn, l->login);
}

static void login_written(ax_req_t *r, int result, void *data)
{
    login_t *l = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not create the session");
    ax_reply_json_new(r, 200, ax_cs_login_response(r->srv, l->login));
}

static int login_verify_run(void *data)
{
    login_t *l = data;
    return ax_password_verify(l->hash, l->password);
}

static void login_verified(ax_req_t *r, int result, void *data)
{
    login_t *l = data;
    if (result != 0)
        return (void)ax_reply_error(r, AX_M_FORBIDDEN, "Invalid username or password");
    /* the same 'data' goes on to the writer; ownership moves with it */
    login_t *next = ax_calloc(1, sizeof(*next));
    next->login = l->login;
    l->login = NULL;
    ax_req_write(r, login_apply, login_written, next, login_free);
}

static int token_login_apply(ax_txn_t *txn, void *data)
{
    login_t *l = data;
    uint8_t hash[32];
    char user[256];
    uint64_t expires;
    ax_token_hash(l->login_token, hash);
    l->bad_token = false;
    int rc = ax_db_logintoken_take(txn, hash, user, sizeof(user), &expires);
    if (rc == AX_ENOTFOUND || (rc == 0 && expires < ax_now_ms())) {
        l->bad_token = true; /* commit the removal of an expired token anyway */
        return 0;
    }
    if (rc != 0)
        return rc;
    json_t *acct = NULL;
    if (ax_db_account_get(txn, user, &acct) != 0 || json_is_true(json_object_get(acct, "deactivated"))) {
        json_decref(acct);
        l->bad_token = true;
        return 0;
    }
    json_decref(acct);
    snprintf(l->login->user_id, sizeof(l->login->user_id), "%s", user);
    return ax_cs_login_apply(txn, l->login);
}

static void token_login_written(ax_req_t *r, int result, void *data)
{
    login_t *l = data;
    if (result == 0 && l->bad_token)
        return (void)ax_reply_error(r, AX_M_FORBIDDEN, "Invalid or expired login token");
    login_written(r, result, data);
}

/* POST /_matrix/client/v3/login */
int ax_cs_login(ax_req_t *r)
{
    json_t *body, *ident = NULL;
    const char *type, *device_id, *display_name, *user = NULL, *password = NULL, *token = NULL;
    bool refresh;
    if (ax_req_ratelimit_or_reply(r, r->srv->limits.login) != 0 || ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "type", true, &type) != 0 ||
        ax_field_string_or_reply(r, body, "device_id", false, &device_id) != 0 ||
        ax_field_string_or_reply(r, body, "initial_device_display_name", false, &display_name) != 0 ||
        ax_field_bool_or_reply(r, body, "refresh_token", false, &refresh) != 0)
        return 0;
    if (device_id != NULL && (device_id[0] == '\0' || strlen(device_id) > 100))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "device_id must be 1-100 characters");
    if (display_name != NULL && strlen(display_name) > 512)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "initial_device_display_name is too long");

    if (strcmp(type, "m.login.token") == 0) {
        if (ax_field_string_or_reply(r, body, "token", true, &token) != 0)
            return 0;
        login_t *l = ax_calloc(1, sizeof(*l));
        l->login = ax_cs_login_new(r, "", device_id, display_name, refresh);
        snprintf(l->login_token, sizeof(l->login_token), "%.*s", (int)(sizeof(l->login_token) - 1), token);
        ax_req_write(r, token_login_apply, token_login_written, l, login_free);
        return 0;
    }
    if (strcmp(type, "m.login.password") != 0)
        return ax_reply_error(r, AX_M_UNKNOWN, "Unknown login type");

    if (ax_field_object_or_reply(r, body, "identifier", false, &ident) != 0 ||
        ax_field_string_or_reply(r, body, "user", false, &user) != 0 ||
        ax_field_string_or_reply(r, body, "password", true, &password) != 0)
        return 0;
    if (ident != NULL) {
        const char *itype;
        if (ax_field_string_or_reply(r, ident, "type", true, &itype) != 0)
            return 0;
        if (strcmp(itype, "m.id.user") != 0)
            return ax_reply_error(r, AX_M_UNKNOWN, "Only m.id.user identifiers are supported");
        if (ax_field_string_or_reply(r, ident, "user", true, &user) != 0)
            return 0;
    }
    if (user == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing identifier");
    if (strlen(password) > 512)
        return ax_reply_error(r, AX_M_FORBIDDEN, "Invalid username or password");

    const char *uid = ax_cs_resolve_user(r, user);
    json_t *acct = NULL;
    if (uid != NULL) {
        ax_txn_t *txn;
        if (ax_db_read_begin(r->srv->db, &txn) != 0)
            return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        ax_db_account_get(txn, uid, &acct);
        ax_db_read_end(txn);
    }
    login_t *l = ax_calloc(1, sizeof(*l));
    l->login = ax_cs_login_new(r, uid != NULL ? uid : "", device_id, display_name, refresh);
    /* deactivated accounts have no hash: the check fails after the same work */
    const char *h = json_is_true(json_object_get(acct, "deactivated"))
                        ? NULL
                        : json_string_value(json_object_get(acct, "password_hash"));
    l->hash = h != NULL ? ax_strdup(h) : NULL;
    l->password = ax_strdup(password);
    json_decref(acct);
    ax_req_work(r, login_verify_run, login_verified, l, login_free);
    return 0;
}

/* ---- POST /refresh ---- */

typedef struct st_refresh_t {
    ax_cs_login_t *login;
    bool unknown;
} refresh_t;

static void refresh_free(void *p)
{
    refresh_t *f = p;
    ax_cs_login_free(f->login);
    free(f);
}

static int refresh_apply(ax_txn_t *txn, void *data)
{
    refresh_t *f = data;
    json_t *rec = NULL;
    f->unknown = false;
    if (ax_db_refresh_get(txn, f->login->prev_refresh, &rec) != 0) {
        f->unknown = true;
        return 0;
    }
    const char *user = json_string_value(json_object_get(rec, "user_id"));
    const char *device = json_string_value(json_object_get(rec, "device_id"));
    if (user == NULL || device == NULL) {
        json_decref(rec);
        f->unknown = true;
        return 0;
    }
    snprintf(f->login->user_id, sizeof(f->login->user_id), "%s", user);
    snprintf(f->login->device_id, sizeof(f->login->device_id), "%s", device);
    json_decref(rec);
    return ax_cs_login_apply(txn, f->login);
}

static void refresh_written(ax_req_t *r, int result, void *data)
{
    refresh_t *f = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not refresh the session");
    if (f->unknown)
        return (void)ax_reply_error(r, AX_M_UNKNOWN_TOKEN, "Unknown refresh token");
    ax_reply_json_new(r, 200,
                      json_pack("{s:s, s:s, s:I}", "access_token", f->login->access, "refresh_token",
                                f->login->refresh_token, "expires_in_ms", (json_int_t)f->login->lifetime_ms));
}

/* POST /_matrix/client/v3/refresh */
int ax_cs_refresh(ax_req_t *r)
{
    json_t *body;
    const char *token;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "refresh_token", true, &token) != 0)
        return 0;
    refresh_t *f = ax_calloc(1, sizeof(*f));
    f->login = ax_cs_login_new(r, "", "", NULL, true);
    ax_token_hash(token, f->login->prev_refresh);
    f->login->has_prev = true;
    ax_req_write(r, refresh_apply, refresh_written, f, refresh_free);
    return 0;
}

/* ---- logout ---- */

typedef struct st_logout_t {
    char user_id[256];
    char device_id[128];
    bool all;
} logout_t;

static int logout_apply(ax_txn_t *txn, void *data)
{
    logout_t *o = data;
    if (o->all)
        return ax_cs_logout_devices(txn, o->user_id, NULL);
    int rc = ax_db_device_logout(txn, o->user_id, o->device_id, true);
    return rc == AX_ENOTFOUND ? 0 : rc;
}

static void logout_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not log out");
    ax_reply_json_new(r, 200, json_object());
}

static int logout(ax_req_t *r, bool all)
{
    logout_t *o = ax_calloc(1, sizeof(*o));
    snprintf(o->user_id, sizeof(o->user_id), "%s", r->auth.user_id);
    snprintf(o->device_id, sizeof(o->device_id), "%s", r->auth.device_id);
    o->all = all;
    ax_req_write(r, logout_apply, logout_written, o, free);
    return 0;
}

/* POST /_matrix/client/v3/logout */
int ax_cs_logout(ax_req_t *r)
{
    return logout(r, false);
}

/* POST /_matrix/client/v3/logout/all */
int ax_cs_logout_all(ax_req_t *r)
{
    return logout(r, true);
}

/* ---- POST /v1/login/get_token ---- */

typedef struct st_get_token_t {
    char user_id[256];
    char token[AX_TOKEN_LEN + 1];
    uint8_t hash[32];
} get_token_t;

static int get_token_apply(ax_txn_t *txn, void *data)
{
    get_token_t *g = data;
    return ax_db_logintoken_put(txn, g->hash, g->user_id, ax_now_ms() + LOGIN_TOKEN_LIFETIME_MS);
}

static void get_token_written(ax_req_t *r, int result, void *data)
{
    get_token_t *g = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not create a login token");
    ax_reply_json_new(
        r, 200, json_pack("{s:s, s:I}", "login_token", g->token, "expires_in_ms", (json_int_t)LOGIN_TOKEN_LIFETIME_MS));
}

static void get_token_authorised(ax_req_t *r, json_t *body, json_t *session, void *arg)
{
    (void)body, (void)session, (void)arg;
    get_token_t *g = ax_calloc(1, sizeof(*g));
    snprintf(g->user_id, sizeof(g->user_id), "%s", r->auth.user_id);
    ax_token_generate("axl_", g->token, g->hash);
    ax_req_write(r, get_token_apply, get_token_written, g, free);
}

static const ax_uia_flow_t password_flow[] = {{{"m.login.password", NULL}}};

/* POST /_matrix/client/v1/login/get_token */
int ax_cs_login_get_token(ax_req_t *r)
{
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    ax_uia_run(r, body, password_flow, 1, get_token_authorised, NULL);
    return 0;
}
