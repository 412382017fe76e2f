/*
 * key_backup.c -- server-side backups of room keys (spec: Client-Server
 * API "Server-side key backups"; key_backup.yaml): backup versions and
 * the encrypted session keys stored in them, with their count and etag.
 *
 * Keys may only be stored into the current (latest, not deleted) version;
 * of two copies of one session's key the better one is kept (spec order:
 * is_verified, then first_message_index, then forwarded_count).  A
 * version's etag changes whenever its keys do.
 */
#include "server/cs/cs.h"

#include <stdlib.h>
#include <string.h>

/* Versions are the decimal numbers this server hands out; anything else is unknown. */
static bool parse_version(const char *s, uint64_t *out)
{
    return s != NULL && s[0] >= '1' && s[0] <= '9' && ax_parse_u64(s, out) == 0;
}

static const char *version_str(ax_req_t *r, uint64_t v)
{
    return ax_psprintf(r, "%llu", (unsigned long long)v);
}

/* The client's view of a version record (a new reference). */
static json_t *version_json(ax_req_t *r, uint64_t version, const json_t *info)
{
    return json_pack("{s:O, s:O, s:I, s:s, s:s}", "algorithm", json_object_get(info, "algorithm"), "auth_data",
                     json_object_get(info, "auth_data"), "count", json_integer_value(json_object_get(info, "count")),
                     "etag", version_str(r, (uint64_t)json_integer_value(json_object_get(info, "etag"))), "version",
                     version_str(r, version));
}

/* A live (not deleted) version, read in its own transaction: 0, AX_ENOTFOUND or AX_EIO. */
static int read_version(ax_req_t *r, const char *param, uint64_t *version, json_t **info)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return AX_EIO;
    int rc;
    if (param == NULL) {
        rc = ax_db_backup_version_latest(txn, r->auth.user_id, false, version, info);
    } else if (!parse_version(param, version)) {
        rc = AX_ENOTFOUND;
    } else {
        rc = ax_db_backup_version_get(txn, r->auth.user_id, *version, info);
        if (rc == 0 && json_is_true(json_object_get(*info, "deleted"))) {
            json_decref(*info);
            *info = NULL;
            rc = AX_ENOTFOUND;
        }
    }
    ax_db_read_end(txn);
    return rc;
}

/* ---- versions ---- */

typedef struct st_version_write_t {
    char user_id[256];
    uint64_t version; /* 0: create a new one (the writer fills it in) */
    char algorithm[256];
    json_t *auth_data; /* NULL: delete the version */
} version_write_t;

static void version_write_free(void *p)
{
    version_write_t *w = p;
    json_decref(w->auth_data);
    free(w);
}

static int create_apply(ax_txn_t *txn, void *data)
{
    version_write_t *w = data;
    /* numbers are never reused: deleted versions still count (Synapse: MAX(version) + 1) */
    uint64_t last = 0;
    int rc = ax_db_backup_version_latest(txn, w->user_id, true, &last, NULL);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    w->version = rc == AX_ENOTFOUND ? 1 : last + 1;
    json_t *info =
        json_pack("{s:s, s:O, s:i, s:i}", "algorithm", w->algorithm, "auth_data", w->auth_data, "etag", 0, "count", 0);
    rc = ax_db_backup_version_put(txn, w->user_id, w->version, info);
    json_decref(info);
    return rc;
}

static void create_written(ax_req_t *r, int result, void *data)
{
    version_write_t *w = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not create the backup");
    ax_reply_json_new(r, 200, json_pack("{s:s}", "version", version_str(r, w->version)));
}

/* Checks the {algorithm, auth_data} of a version body; NULL after replying. */
static version_write_t *version_body_or_reply(ax_req_t *r, json_t **body_out)
{
    json_t *body, *auth_data;
    const char *algorithm;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "algorithm", true, &algorithm) != 0 ||
        ax_field_object_or_reply(r, body, "auth_data", true, &auth_data) != 0)
        return NULL;
    if (algorithm[0] == '\0' || strlen(algorithm) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid algorithm"), NULL;
    version_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    snprintf(w->algorithm, sizeof(w->algorithm), "%s", algorithm);
    w->auth_data = json_deep_copy(auth_data);
    if (body_out != NULL)
        *body_out = body;
    return w;
}

/* POST /_matrix/client/v3/room_keys/version */
int ax_cs_backup_version_create(ax_req_t *r)
{
    /* any algorithm string is kept as given, as Synapse does: the server never decrypts */
    version_write_t *w = version_body_or_reply(r, NULL);
    if (w != NULL)
        ax_req_write(r, create_apply, create_written, w, version_write_free);
    return 0;
}

static int version_get(ax_req_t *r, const char *param)
{
    uint64_t version;
    json_t *info = NULL;
    int rc = read_version(r, param, &version, &info);
    if (rc == AX_ENOTFOUND)
        return ax_reply_error(r, AX_M_NOT_FOUND,
                              param == NULL ? "No current backup version" : "Unknown backup version");
    if (rc != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    json_t *out = version_json(r, version, info);
    json_decref(info);
    return ax_reply_json_new(r, 200, out);
}

/* GET /_matrix/client/v3/room_keys/version */
int ax_cs_backup_version_current(ax_req_t *r)
{
    return version_get(r, NULL);
}

/* GET /_matrix/client/v3/room_keys/version/{version} */
int ax_cs_backup_version_get(ax_req_t *r)
{
    return version_get(r, r->params[0]);
}

static int update_apply(ax_txn_t *txn, void *data)
{
    version_write_t *w = data;
    json_t *info = NULL;
    int rc = ax_db_backup_version_get(txn, w->user_id, w->version, &info);
    if (rc == 0 && json_is_true(json_object_get(info, "deleted")))
        rc = AX_ENOTFOUND;
    /* spec: only auth_data can change; the algorithm must stay the same */
    if (rc == 0 && !ax_streq(json_string_value(json_object_get(info, "algorithm")), w->algorithm))
        rc = AX_EINVAL;
    if (rc == 0) {
        json_object_set(info, "auth_data", w->auth_data);
        rc = ax_db_backup_version_put(txn, w->user_id, w->version, info);
    }
    json_decref(info);
    return rc;
}

static void update_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result == AX_ENOTFOUND)
        return (void)ax_reply_error(r, AX_M_NOT_FOUND, "Unknown backup version");
    if (result == AX_EINVAL)
        return (void)ax_reply_error(r, AX_M_INVALID_PARAM, "Algorithm does not match");
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not update the backup");
    ax_reply_json_new(r, 200, json_object());
}

/* PUT /_matrix/client/v3/room_keys/version/{version} */
int ax_cs_backup_version_update(ax_req_t *r)
{
    json_t *body;
    version_write_t *w = version_body_or_reply(r, &body);
    if (w == NULL)
        return 0;
    const char *in_body = NULL;
    if (ax_field_string_or_reply(r, body, "version", false, &in_body) != 0) {
        version_write_free(w);
        return 0;
    }
    if (in_body != NULL && strcmp(in_body, r->params[0]) != 0) {
        version_write_free(w);
        return ax_reply_error(r, AX_M_INVALID_PARAM, "The version in the body does not match the path");
    }
    if (!parse_version(r->params[0], &w->version)) {
        version_write_free(w);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown backup version");
    }
    ax_req_write(r, update_apply, update_written, w, version_write_free);
    return 0;
}

static int delete_version_apply(ax_txn_t *txn, void *data)
{
    version_write_t *w = data;
    json_t *info = NULL;
    int rc = ax_db_backup_version_get(txn, w->user_id, w->version, &info);
    /* spec: deleting a version deleted before succeeds */
    if (rc == 0 && !json_is_true(json_object_get(info, "deleted"))) {
        json_object_set_new(info, "deleted", json_true());
        json_object_set_new(info, "count", json_integer(0));
        if ((rc = ax_db_backup_keys_delete(txn, w->user_id, w->version, NULL, NULL, NULL)) == 0)
            rc = ax_db_backup_version_put(txn, w->user_id, w->version, info);
    }
    json_decref(info);
    return rc;
}

/* DELETE /_matrix/client/v3/room_keys/version/{version} */
int ax_cs_backup_version_delete(ax_req_t *r)
{
    version_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    if (!parse_version(r->params[0], &w->version)) {
        version_write_free(w);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown backup version");
    }
    ax_req_write(r, delete_version_apply, update_written, w, version_write_free);
    return 0;
}

/* ---- keys ---- */

/* Checks one KeyBackupData; returns false after replying. */
static bool check_key_data_or_reply(ax_req_t *r, json_t *k)
{
    if (!json_is_object(k) || !json_is_integer(json_object_get(k, "first_message_index")) ||
        !json_is_integer(json_object_get(k, "forwarded_count")) ||
        !json_is_boolean(json_object_get(k, "is_verified")) || !json_is_object(json_object_get(k, "session_data"))) {
        ax_reply_error(r, AX_M_BAD_JSON,
                       "Key backup data needs first_message_index, forwarded_count (integers), is_verified "
                       "(boolean) and session_data (object)");
        return false;
    }
    return true;
}

/* Checks {sessions: {session_id: KeyBackupData}}; returns false after replying. */
static bool check_room_or_reply(ax_req_t *r, json_t *room)
{
    json_t *sessions = json_object_get(room, "sessions");
    if (!json_is_object(room) || !json_is_object(sessions)) {
        ax_reply_error(r, AX_M_BAD_JSON, "Room key backups need a 'sessions' object");
        return false;
    }
    const char *sid;
    json_t *k;
    json_object_foreach(sessions, sid, k)
    {
        if (!check_key_data_or_reply(r, k))
            return false;
    }
    return true;
}

typedef struct st_keys_write_t {
    char user_id[256];
    uint64_t version;
    json_t *rooms;       /* put: {room_id: {sessions: {session_id: data}}} */
    const char *room_id; /* delete: NULL for all rooms (points into room_buf) */
    const char *session; /* delete: NULL for the whole room (points into session_buf) */
    char room_buf[256];
    char session_buf[256];
    /* outcome, reset by every run */
    uint64_t current; /* the current version when the asked one is not it */
    uint64_t etag, count;
} keys_write_t;

static void keys_write_free(void *p)
{
    keys_write_t *w = p;
    json_decref(w->rooms);
    free(w);
}

/* The live version record 'w->version' (a new reference in '*info'); AX_ENOTFOUND when unknown or deleted. */
static int live_version(ax_txn_t *txn, keys_write_t *w, json_t **info)
{
    int rc = ax_db_backup_version_get(txn, w->user_id, w->version, info);
    if (rc == 0 && json_is_true(json_object_get(*info, "deleted"))) {
        json_decref(*info);
        *info = NULL;
        rc = AX_ENOTFOUND;
    }
    return rc;
}

static int keys_put_apply(ax_txn_t *txn, void *data)
{
    keys_write_t *w = data;
    w->current = 0;
    json_t *info = NULL;
    uint64_t current = 0;
    int rc = ax_db_backup_version_latest(txn, w->user_id, false, &current, NULL);
    if (rc != 0)
        return rc; /* no backup at all: 404 */
    if ((rc = live_version(txn, w, &info)) != 0)
        return rc;
    if (w->version != current) {
        /* spec: only the current version takes keys; 403 names the current one */
        json_decref(info);
        w->current = current;
        return AX_EFORBIDDEN;
    }
    bool changed = false;
    json_int_t count = json_integer_value(json_object_get(info, "count"));
    const char *room_id, *sid;
    json_t *room, *k;
    json_object_foreach(w->rooms, room_id, room)
    {
        json_object_foreach(json_object_get(room, "sessions"), sid, k)
        {
            json_t *old = NULL;
            rc = ax_db_backup_key_get(txn, w->user_id, w->version, room_id, sid, &old);
            if (rc != 0 && rc != AX_ENOTFOUND)
                break;
            bool better = old == NULL || ax_e2ee_backup_compare(k, old) > 0;
            count += old == NULL;
            json_decref(old);
            rc = better ? ax_db_backup_key_put(txn, w->user_id, w->version, room_id, sid, k) : 0;
            if (rc != 0)
                break;
            changed |= better;
        }
        if (rc != 0)
            break;
    }
    if (rc == 0 && changed) {
        json_object_set_new(info, "count", json_integer(count));
        json_object_set_new(info, "etag", json_integer(json_integer_value(json_object_get(info, "etag")) + 1));
        rc = ax_db_backup_version_put(txn, w->user_id, w->version, info);
    }
    w->etag = (uint64_t)json_integer_value(json_object_get(info, "etag"));
    w->count = (uint64_t)count;
    json_decref(info);
    return rc;
}

static void keys_written(ax_req_t *r, int result, void *data)
{
    keys_write_t *w = data;
    if (result == AX_EFORBIDDEN) {
        json_t *err = json_pack("{s:s, s:s, s:s}", "errcode", "M_WRONG_ROOM_KEYS_VERSION", "error",
                                "Wrong backup version", "current_version", version_str(r, w->current));
        return (void)ax_reply_json_new(r, 403, err);
    }
    if (result == AX_ENOTFOUND)
        return (void)ax_reply_error(r, AX_M_NOT_FOUND, "Unknown backup version");
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the keys");
    ax_reply_json_new(r, 200, json_pack("{s:s, s:I}", "etag", version_str(r, w->etag), "count", (json_int_t)w->count));
}

static int keys_delete_apply(ax_txn_t *txn, void *data)
{
    keys_write_t *w = data;
    json_t *info = NULL;
    int rc = live_version(txn, w, &info);
    if (rc != 0)
        return rc;
    size_t n = 0;
    rc = ax_db_backup_keys_delete(txn, w->user_id, w->version, w->room_id, w->session, &n);
    json_int_t count = json_integer_value(json_object_get(info, "count")) - (json_int_t)n;
    /* Synapse moves the etag on every delete, even of nothing */
    json_int_t etag = json_integer_value(json_object_get(info, "etag")) + 1;
    if (rc == 0) {
        json_object_set_new(info, "count", json_integer(count < 0 ? 0 : count));
        json_object_set_new(info, "etag", json_integer(etag));
        rc = ax_db_backup_version_put(txn, w->user_id, w->version, info);
    }
    w->etag = (uint64_t)etag;
    w->count = count < 0 ? 0 : (uint64_t)count;
    json_decref(info);
    return rc;
}

/* The ?version= of a keys request; false after replying. */
static bool version_param_or_reply(ax_req_t *r, uint64_t *version, bool *known)
{
    const char *v = ax_req_query(r, "version");
    if (v == NULL) {
        ax_reply_error(r, AX_M_MISSING_PARAM, "The version query parameter is required");
        return false;
    }
    *known = parse_version(v, version);
    return true;
}

static keys_write_t *keys_write_new(ax_req_t *r, uint64_t version)
{
    keys_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    w->version = version;
    if (r->nparams > 0) {
        snprintf(w->room_buf, sizeof(w->room_buf), "%s", r->params[0]);
        w->room_id = w->room_buf;
    }
    if (r->nparams > 1) {
        snprintf(w->session_buf, sizeof(w->session_buf), "%s", r->params[1]);
        w->session = w->session_buf;
    }
    return w;
}

/* PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]] */
int ax_cs_backup_keys_put(ax_req_t *r)
{
    uint64_t version;
    bool known;
    json_t *body;
    if (!version_param_or_reply(r, &version, &known) || ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    if (r->nparams > 0 && strlen(r->params[0]) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room ID");
    if (r->nparams > 1 && strlen(r->params[1]) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid session ID");
    json_t *rooms;
    if (r->nparams == 0) {
        if (ax_field_object_or_reply(r, body, "rooms", true, &rooms) != 0)
            return 0;
        const char *room_id;
        json_t *room;
        json_object_foreach(rooms, room_id, room)
        {
            if (!check_room_or_reply(r, room))
                return 0;
        }
        rooms = json_deep_copy(rooms);
    } else if (r->nparams == 1) {
        if (!check_room_or_reply(r, body))
            return 0;
        rooms = json_pack("{s:o}", r->params[0], json_deep_copy(body));
    } else {
        if (!check_key_data_or_reply(r, body))
            return 0;
        rooms = json_pack("{s:{s:{s:o}}}", r->params[0], "sessions", r->params[1], json_deep_copy(body));
    }
    keys_write_t *w = keys_write_new(r, known ? version : 0);
    w->rooms = rooms;
    /* an unknown version number still learns the current one (403) when a backup exists */
    ax_req_write(r, keys_put_apply, keys_written, w, keys_write_free);
    return 0;
}

typedef struct st_keys_get_t {
    json_t *rooms;
} keys_get_t;

static int keys_get_cb(void *arg, const char *room_id, const char *session_id, json_t *key)
{
    keys_get_t *g = arg;
    json_t *room = json_object_get(g->rooms, room_id);
    if (room == NULL)
        json_object_set_new(g->rooms, room_id, room = json_pack("{s:{}}", "sessions"));
    json_object_set(json_object_get(room, "sessions"), session_id, key);
    return 0;
}

/* GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]] */
int ax_cs_backup_keys_get(ax_req_t *r)
{
    uint64_t version;
    bool known;
    if (!version_param_or_reply(r, &version, &known))
        return 0;
    /* reading works on any live version, not only the current one (Synapse) */
    json_t *info = NULL;
    int rc = read_version(r, ax_req_query(r, "version"), &version, &info);
    json_decref(info);
    if (rc == AX_ENOTFOUND)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown backup version");
    if (rc != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *out;
    if (r->nparams == 2) {
        json_t *key = NULL;
        rc = ax_db_backup_key_get(txn, r->auth.user_id, version, r->params[0], r->params[1], &key);
        ax_db_read_end(txn);
        if (rc == AX_ENOTFOUND)
            return ax_reply_error(r, AX_M_NOT_FOUND, "Key not found");
        if (rc != 0)
            return ax_reply_error(r, AX_M_INTERNAL, "Database error");
        return ax_reply_json_new(r, 200, key);
    }
    keys_get_t g = {json_object()};
    rc = ax_db_backup_keys_foreach(txn, r->auth.user_id, version, r->nparams == 1 ? r->params[0] : NULL, keys_get_cb,
                                   &g);
    ax_db_read_end(txn);
    if (rc < 0) {
        json_decref(g.rooms);
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    }
    if (r->nparams == 1) {
        /* spec: no keys for the room is {"sessions": {}} */
        json_t *room = json_object_get(g.rooms, r->params[0]);
        out = room != NULL ? json_incref(room) : json_pack("{s:{}}", "sessions");
        json_decref(g.rooms);
    } else {
        out = json_pack("{s:o}", "rooms", g.rooms);
    }
    return ax_reply_json_new(r, 200, out);
}

/* DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]] */
int ax_cs_backup_keys_delete(ax_req_t *r)
{
    uint64_t version;
    bool known;
    if (!version_param_or_reply(r, &version, &known))
        return 0;
    if (!known)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown backup version");
    ax_req_write(r, keys_delete_apply, keys_written, keys_write_new(r, version), keys_write_free);
    return 0;
}
