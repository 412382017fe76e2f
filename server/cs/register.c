/*
 * register.c -- account registration (spec: Client-Server API "Account
 * registration"; registration.yaml, registration_tokens.yaml) and the
 * Synapse-compatible shared-secret registration many tools use
 * (POST /_synapse/admin/v1/register).
 *
 * Flow: checks that need no secret (registration open, username valid and
 * free) run first; then UIA (m.login.dummy, or m.login.registration_token
 * when tokens are required); then the password is hashed on the worker
 * pool; then one write creates the account, its profile and, unless
 * inhibit_login, the first device and its tokens.
 */
#include "server/cs/cs.h"
#include "core/events.h"

#include <ctype.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define PASSWORD_MAX      512
#define NONCE_LIFETIME_MS 60000

typedef struct st_register_t {
    char localpart[256]; /* "" : the writer picks a free one */
    char user_id[256];   /* filled in by the writer */
    char *password;      /* plain, until hashed */
    char password_hash[AX_PASSWORD_HASH_MAX];
    bool has_password;
    bool admin;
    char *displayname;
    char token[72];       /* registration token to consume, "" when none */
    ax_cs_login_t *login; /* NULL with inhibit_login */
    ax_server_t *srv;     /* immutable server state only */
    int outcome;          /* set by the writer: 0, or AX_EEXIST / AX_EFORBIDDEN */
} register_t_;

static void register_free(void *p)
{
    register_t_ *g = p;
    if (g->password != NULL) {
        sodium_memzero(g->password, strlen(g->password));
        free(g->password);
    }
    free(g->displayname);
    ax_cs_login_free(g->login);
    free(g);
}

static int create_account(ax_txn_t *txn, register_t_ *g)
{
    const char *server = g->srv->cfg->server_name;
    json_t *existing = NULL;
    if (g->localpart[0] != '\0') {
        if (snprintf(g->user_id, sizeof(g->user_id), "@%s:%s", g->localpart, server) >= (int)sizeof(g->user_id))
            return AX_EINVAL;
        if (ax_db_account_get(txn, g->user_id, &existing) == 0) {
            json_decref(existing);
            return AX_EEXIST;
        }
    } else {
        /* no username given: a random one nobody has */
        for (int tries = 0;; ++tries) {
            char lp[13];
            ax_random_alnum(lp, 12);
            for (char *p = lp; *p; ++p)
                *p = (char)tolower((unsigned char)*p);
            if (snprintf(g->user_id, sizeof(g->user_id), "@%s:%s", lp, server) >= (int)sizeof(g->user_id))
                return AX_EINVAL;
            if (ax_db_account_get(txn, g->user_id, &existing) != 0)
                break;
            json_decref(existing);
            if (tries > 16)
                return AX_ECONFLICT;
        }
    }
    json_t *acct =
        json_pack("{s:b, s:b, s:I}", "admin", g->admin, "deactivated", 0, "created_ts", (json_int_t)ax_now_ms());
    json_object_set_new(acct, "password_hash", g->has_password ? json_string(g->password_hash) : json_null());
    int rc = ax_db_account_put(txn, g->user_id, acct);
    json_decref(acct);
    if (rc != 0)
        return rc;
    /* the display name starts as the localpart, as clients expect */
    const char *colon = strchr(g->user_id, ':');
    char *lp = ax_strndup(g->user_id + 1, (size_t)(colon - g->user_id - 1));
    json_t *profile = json_pack("{s:s}", "displayname", g->displayname != NULL ? g->displayname : lp);
    free(lp);
    rc = ax_db_profile_put(txn, g->user_id, profile);
    json_decref(profile);
    return rc;
}

static int register_apply(ax_txn_t *txn, void *data)
{
    register_t_ *g = data;
    g->outcome = 0;
    if (g->token[0] != '\0') {
        /* the token was checked during UIA; check again here, where its use is counted */
        if (ax_cs_regtoken_check(g->srv, txn, g->token) != 0) {
            g->outcome = AX_EFORBIDDEN;
            return 0;
        }
        json_t *t = NULL;
        if (ax_db_regtoken_get(txn, g->token, &t) == 0) {
            json_object_set_new(t, "completed", json_integer(json_integer_value(json_object_get(t, "completed")) + 1));
            int rc = ax_db_regtoken_put(txn, g->token, t);
            json_decref(t);
            if (rc != 0)
                return rc;
        }
    }
    int rc = create_account(txn, g);
    if (rc == AX_EEXIST) {
        g->outcome = AX_EEXIST;
        return 0;
    }
    if (rc != 0)
        return rc;
    if (g->login != NULL) {
        snprintf(g->login->user_id, sizeof(g->login->user_id), "%s", g->user_id);
        return ax_cs_login_apply(txn, g->login);
    }
    return 0;
}

static void register_written(ax_req_t *r, int result, void *data)
{
    register_t_ *g = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not create the account");
    if (g->outcome == AX_EEXIST)
        return (void)ax_reply_error(r, AX_M_USER_IN_USE, "User ID already taken");
    if (g->outcome == AX_EFORBIDDEN)
        return (void)ax_reply_error_status(r, 401, AX_M_FORBIDDEN, "Invalid registration token");
    if (g->login == NULL)
        return (void)ax_reply_json_new(r, 200, json_pack("{s:s}", "user_id", g->user_id));
    ax_reply_json_new(r, 200, ax_cs_login_response(r->srv, g->login));
}

static int hash_run(void *data)
{
    register_t_ *g = data;
    int rc = ax_password_hash(g->password, g->password_hash);
    sodium_memzero(g->password, strlen(g->password));
    return rc;
}

static void hashed(ax_req_t *r, int result, void *data)
{
    register_t_ *g = data;
    if (result != 0)
        return (void)ax_reply_error(r, AX_M_INTERNAL, "Could not hash the password");
    /* hand the registration over to the writer */
    register_t_ *next = ax_malloc(sizeof(*next));
    *next = *g;
    next->password = NULL;
    g->displayname = NULL;
    g->login = NULL;
    ax_req_write(r, register_apply, register_written, next, register_free);
}

/* Starts the account creation for a prepared 'g' (stolen). */
static void create(ax_req_t *r, register_t_ *g)
{
    if (g->has_password)
        ax_req_work(r, hash_run, hashed, g, register_free);
    else
        ax_req_write(r, register_apply, register_written, g, register_free);
}

typedef struct st_register_req_t {
    const char *localpart;
    const char *password;
    const char *device_id;
    const char *display_name;
    bool inhibit_login;
    bool refresh;
} register_req_t;

static void register_authorised(ax_req_t *r, json_t *body, json_t *session, void *arg)
{
    (void)body;
    register_req_t *q = arg;
    register_t_ *g = ax_calloc(1, sizeof(*g));
    g->srv = r->srv;
    snprintf(g->localpart, sizeof(g->localpart), "%s", q->localpart != NULL ? q->localpart : "");
    if (q->password != NULL) {
        g->password = ax_strdup(q->password);
        g->has_password = true;
    }
    const char *token = json_string_value(json_object_get(session, "token"));
    if (token != NULL)
        snprintf(g->token, sizeof(g->token), "%s", token);
    if (!q->inhibit_login)
        g->login = ax_cs_login_new(r, "", q->device_id, q->display_name, q->refresh);
    create(r, g);
}

/* Lower-cases and validates a requested username; replies and returns NULL when it is unusable. */
static const char *check_username(ax_req_t *r, const char *username, bool must_be_free)
{
    char *lp = ax_pstrdup(r, username);
    for (char *p = lp; *p; ++p)
        *p = (char)tolower((unsigned char)*p);
    if (!ax_id_is_compliant_user_id(ax_psprintf(r, "@%s:%s", lp, r->srv->cfg->server_name))) {
        ax_reply_error(r, AX_M_INVALID_USERNAME, "User ID can only contain characters a-z, 0-9, or '._=-/+'");
        return NULL;
    }
    if (must_be_free) {
        ax_txn_t *txn;
        json_t *acct = NULL;
        if (ax_db_read_begin(r->srv->db, &txn) != 0) {
            ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
            return NULL;
        }
        int rc = ax_db_account_get(txn, ax_psprintf(r, "@%s:%s", lp, r->srv->cfg->server_name), &acct);
        ax_db_read_end(txn);
        json_decref(acct);
        if (rc == 0) {
            ax_reply_error(r, AX_M_USER_IN_USE, "User ID already taken");
            return NULL;
        }
    }
    return lp;
}

static const ax_uia_flow_t dummy_flow[] = {{{"m.login.dummy", NULL}}};
static const ax_uia_flow_t token_flow[] = {{{"m.login.registration_token", NULL}}};

/* Replies 403 and returns true unless this client may register. */
static bool registration_closed_or_reply(ax_req_t *r)
{
    const ax_config_t *cfg = r->srv->cfg;
    if (!cfg->allow_registration) {
        ax_reply_error(r, AX_M_FORBIDDEN, "Registration is disabled");
        return true;
    }
    if (cfg->registration_local_only && !ax_config_is_loopback_host(ax_req_client_ip(r))) {
        ax_reply_error(r, AX_M_FORBIDDEN,
                       "Registration is open only to clients on this machine (embedded default config)");
        return true;
    }
    return false;
}

/* POST /_matrix/client/v3/register */
int ax_cs_register(ax_req_t *r)
{
    if (ax_req_ratelimit_or_reply(r, r->srv->limits.register_) != 0)
        return 0;
    const char *kind = ax_req_query(r, "kind");
    if (kind != NULL && strcmp(kind, "guest") == 0)
        return ax_reply_error(r, AX_M_GUEST_ACCESS_FORBIDDEN, "Guest access is disabled");
    if (kind != NULL && strcmp(kind, "user") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "kind must be user or guest");
    if (registration_closed_or_reply(r))
        return 0;

    json_t *body;
    register_req_t *q = ax_palloc(r, sizeof(*q));
    memset(q, 0, sizeof(*q));
    const char *username;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "username", false, &username) != 0 ||
        ax_field_string_or_reply(r, body, "password", false, &q->password) != 0 ||
        ax_field_string_or_reply(r, body, "device_id", false, &q->device_id) != 0 ||
        ax_field_string_or_reply(r, body, "initial_device_display_name", false, &q->display_name) != 0 ||
        ax_field_bool_or_reply(r, body, "inhibit_login", false, &q->inhibit_login) != 0 ||
        ax_field_bool_or_reply(r, body, "refresh_token", false, &q->refresh) != 0)
        return 0;
    if (q->password != NULL && strlen(q->password) > PASSWORD_MAX)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Password too long");
    if (q->device_id != NULL && (q->device_id[0] == '\0' || strlen(q->device_id) > 100))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "device_id must be 1-100 characters");
    if (q->display_name != NULL && strlen(q->display_name) > 512)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "initial_device_display_name is too long");
    if (username != NULL && (q->localpart = check_username(r, username, true)) == NULL)
        return 0;

    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    bool need_token = ax_cs_registration_requires_token(r->srv, txn);
    ax_db_read_end(txn);
    ax_uia_run(r, body, need_token ? token_flow : dummy_flow, 1, register_authorised, q);
    return 0;
}

/* GET /_matrix/client/v3/register/available */
int ax_cs_register_available(ax_req_t *r)
{
    if (ax_req_ratelimit_or_reply(r, r->srv->limits.register_) != 0)
        return 0;
    const char *username = ax_req_query(r, "username");
    if (username == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing username");
    if (check_username(r, username, true) == NULL)
        return 0;
    return ax_reply_json_new(r, 200, json_pack("{s:b}", "available", 1));
}

/* GET /_matrix/client/v1/register/m.login.registration_token/validity */
int ax_cs_register_token_validity(ax_req_t *r)
{
    if (ax_req_ratelimit_or_reply(r, r->srv->limits.register_) != 0)
        return 0;
    if (registration_closed_or_reply(r))
        return 0;
    const char *token = ax_req_query(r, "token");
    if (token == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing token");
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    bool valid = ax_cs_regtoken_check(r->srv, txn, token) == 0;
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, json_pack("{s:b}", "valid", valid));
}

/* ---- shared-secret registration (Synapse admin API) ---- */

/* GET /_synapse/admin/v1/register */
int ax_cs_register_shared_nonce(ax_req_t *r)
{
    ax_server_t *srv = r->srv;
    if (srv->cfg->registration_shared_secret == NULL)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Shared secret registration is not enabled");
    char nonce[33];
    ax_random_alnum(nonce, 32);
    uint64_t now = ax_now_ms();
    pthread_mutex_lock(&srv->nonce_mutex);
    size_t slot = 0;
    for (size_t i = 0; i < AX_ARRAY_SIZE(srv->nonces); ++i) {
        if (srv->nonces[i].expires_ms < now) {
            slot = i;
            break;
        }
        if (srv->nonces[i].expires_ms < srv->nonces[slot].expires_ms)
            slot = i;
    }
    memcpy(srv->nonces[slot].value, nonce, sizeof(nonce));
    srv->nonces[slot].expires_ms = now + NONCE_LIFETIME_MS;
    pthread_mutex_unlock(&srv->nonce_mutex);
    return ax_reply_json_new(r, 200, json_pack("{s:s}", "nonce", nonce));
}

static bool take_nonce(ax_server_t *srv, const char *nonce)
{
    bool found = false;
    uint64_t now = ax_now_ms();
    pthread_mutex_lock(&srv->nonce_mutex);
    for (size_t i = 0; i < AX_ARRAY_SIZE(srv->nonces); ++i) {
        if (srv->nonces[i].expires_ms >= now && strcmp(srv->nonces[i].value, nonce) == 0) {
            srv->nonces[i].expires_ms = 0; /* single use */
            found = true;
        }
    }
    pthread_mutex_unlock(&srv->nonce_mutex);
    return found;
}

/* POST /_synapse/admin/v1/register */
int ax_cs_register_shared(ax_req_t *r)
{
    ax_server_t *srv = r->srv;
    const char *secret = srv->cfg->registration_shared_secret;
    if (secret == NULL)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Shared secret registration is not enabled");
    json_t *body;
    const char *nonce, *username, *password, *mac, *displayname, *user_type;
    bool admin;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_string_or_reply(r, body, "nonce", true, &nonce) != 0 ||
        ax_field_string_or_reply(r, body, "username", true, &username) != 0 ||
        ax_field_string_or_reply(r, body, "password", true, &password) != 0 ||
        ax_field_string_or_reply(r, body, "mac", true, &mac) != 0 ||
        ax_field_string_or_reply(r, body, "displayname", false, &displayname) != 0 ||
        ax_field_string_or_reply(r, body, "user_type", false, &user_type) != 0 ||
        ax_field_bool_or_reply(r, body, "admin", false, &admin) != 0)
        return 0;
    if (strlen(password) > PASSWORD_MAX)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Password too long");
    if (!take_nonce(srv, nonce))
        return ax_reply_error(r, AX_M_UNKNOWN, "Unrecognised nonce");

    /* mac = hex HMAC-SHA1(secret, nonce NUL username NUL password NUL admin|notadmin [NUL user_type]) */
    ax_buf_t msg = AX_BUF_INIT;
    ax_buf_append(&msg, nonce, strlen(nonce) + 1);
    ax_buf_append(&msg, username, strlen(username) + 1);
    ax_buf_append(&msg, password, strlen(password) + 1);
    ax_buf_puts(&msg, admin ? "admin" : "notadmin");
    if (user_type != NULL) {
        ax_buf_putc(&msg, '\0');
        ax_buf_puts(&msg, user_type);
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)msg.base, msg.len, digest, &dlen);
    sodium_memzero(msg.base, msg.len);
    ax_buf_dispose(&msg);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    sodium_bin2hex(hex, sizeof(hex), digest, dlen);
    if (strlen(mac) != strlen(hex) || sodium_memcmp(mac, hex, strlen(hex)) != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "HMAC incorrect");

    const char *lp = check_username(r, username, true);
    if (lp == NULL)
        return 0;
    register_t_ *g = ax_calloc(1, sizeof(*g));
    g->srv = srv;
    snprintf(g->localpart, sizeof(g->localpart), "%s", lp);
    g->password = ax_strdup(password);
    g->has_password = true;
    g->admin = admin;
    g->displayname = displayname != NULL ? ax_strdup(displayname) : NULL;
    g->login = ax_cs_login_new(r, "", NULL, NULL, false);
    create(r, g);
    return 0;
}
