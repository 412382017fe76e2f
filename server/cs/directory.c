/*
 * directory.c -- room aliases and the published room directory (spec:
 * Client-Server API "Room aliases", "Listing rooms"; directory.yaml,
 * list_public_rooms.yaml).
 */
#include "server/cs/cs.h"
#include "core/events.h"
#include "core/rooms.h"
#include "federation/federation.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* "#local:server" with a local part free of ':' and whitespace; replies and returns false when bad. */
static bool local_alias_or_reply(ax_req_t *r, const char *alias, bool must_be_ours)
{
    const char *colon = strchr(alias, ':');
    bool ok = alias[0] == '#' && colon != NULL && colon > alias + 1 && strlen(alias) <= 255 &&
              ax_id_is_valid_server_name(colon + 1);
    for (const char *p = alias + 1; ok && p < colon; ++p)
        ok = !isspace((unsigned char)*p) && *p != '#';
    if (!ok) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room alias");
        return false;
    }
    if (must_be_ours && strcmp(colon + 1, r->srv->cfg->server_name) != 0) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Room aliases must be on this server");
        return false;
    }
    return true;
}

static void remote_alias_done(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    if (r != NULL) {
        json_t *room_id = json_object_get(fr->json, "room_id"), *servers = json_object_get(fr->json, "servers");
        if (task->result != 0) {
            ax_reply_error_status(r, 502, AX_M_UNKNOWN, ax_psprintf(r, "Could not resolve the alias: %s", fr->error));
        } else if (fr->status == 200 && json_is_string(room_id) && json_is_array(servers)) {
            json_t *list = json_array();
            size_t i;
            json_t *s;
            json_array_foreach(servers, i, s)
            {
                if (json_is_string(s) && ax_id_is_valid_server_name(json_string_value(s)))
                    json_array_append(list, s);
            }
            ax_reply_json_new(r, 200, json_pack("{s:O, s:o}", "room_id", room_id, "servers", list));
        } else if (fr->status == 404) {
            ax_reply_error(r, AX_M_NOT_FOUND, "Room alias not found");
        } else {
            ax_reply_error_status(r, 502, AX_M_UNKNOWN,
                                  ax_psprintf(r, "The alias's server answered HTTP %d", fr->status));
        }
    }
    ax_fed_request_free(fr);
}

/* Asks the alias's server (query/directory); replies when it answers. */
static int remote_alias(ax_req_t *r, const char *alias, const char *server)
{
    if (r->srv->fed == NULL)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Room alias not found (federation is disabled)");
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v1/query/directory?room_alias=");
    ax_fed_urlencode(&path, alias);
    ax_fed_request_t *fr = ax_fed_request_new(server, "GET", path.base, NULL);
    ax_buf_dispose(&path);
    ax_req_bind_task(r, &fr->super, remote_alias_done);
    ax_fed_submit(r->srv->fed, fr);
    return 0;
}

/* GET /_matrix/client/v3/directory/room/{roomAlias} */
int ax_cs_alias_get(ax_req_t *r)
{
    if (!local_alias_or_reply(r, r->params[0], false))
        return 0;
    const char *server = strchr(r->params[0], ':') + 1;
    if (strcmp(server, r->srv->cfg->server_name) != 0)
        return remote_alias(r, r->params[0], server);
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *rec = NULL;
    int rc = ax_db_alias_get(txn, r->params[0], &rec);
    ax_db_read_end(txn);
    if (rc != 0)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Room alias not found");
    json_t *out =
        json_pack("{s:O, s:[s]}", "room_id", json_object_get(rec, "room_id"), "servers", r->srv->cfg->server_name);
    json_decref(rec);
    return ax_reply_json_new(r, 200, out);
}

typedef struct st_alias_write_t {
    char alias[256];
    char room_id[256];
    char user_id[256];
    bool delete_;
    int outcome; /* AX_EEXIST, AX_ENOTFOUND, AX_EFORBIDDEN */
} alias_write_t;

static int alias_apply(ax_txn_t *txn, void *data)
{
    alias_write_t *w = data;
    w->outcome = 0;
    json_t *rec = NULL;
    int rc = ax_db_alias_get(txn, w->alias, &rec);
    if (!w->delete_) {
        json_decref(rec);
        if (rc == 0) {
            w->outcome = AX_EEXIST;
            return 0;
        }
        json_t *room = NULL;
        char m[16];
        if (ax_db_room_get(txn, w->room_id, &room) != 0) {
            w->outcome = AX_ENOTFOUND;
            return 0;
        }
        json_decref(room);
        ax_room_membership(txn, w->room_id, w->user_id, m, sizeof(m));
        if (strcmp(m, "join") != 0) {
            w->outcome = AX_EFORBIDDEN;
            return 0;
        }
        return ax_db_alias_put(txn, w->alias, w->room_id, w->user_id);
    }
    if (rc != 0) {
        w->outcome = AX_ENOTFOUND;
        return 0;
    }
    /* the alias's creator, or anyone the room lets change its canonical alias */
    const char *room_id = json_string_value(json_object_get(rec, "room_id"));
    bool allowed = ax_streq(json_string_value(json_object_get(rec, "creator")), w->user_id);
    if (!allowed && room_id != NULL) {
        const ax_room_version_t *rv = ax_room_version_of(txn, room_id);
        ax_room_lookup_t lk = {.txn = txn, .room_id = room_id};
        int64_t have = 0, need = 50;
        if (rv != NULL && ax_power_level_of(rv, ax_room_lookup, &lk, w->user_id, &have) == 0 &&
            ax_power_level_required(rv, ax_room_lookup, &lk, "m.room.canonical_alias", true, &need) == 0)
            allowed = have >= need;
        ax_room_lookup_dispose(&lk);
    }
    if (!allowed) {
        json_decref(rec);
        w->outcome = AX_EFORBIDDEN;
        return 0;
    }
    rc = ax_db_alias_del(txn, w->alias, room_id != NULL ? room_id : "");
    json_decref(rec);
    return rc;
}

static void alias_written(ax_req_t *r, int result, void *data)
{
    alias_write_t *w = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not change the alias");
    switch (w->outcome) {
    case AX_EEXIST:
        return (void)ax_reply_error_status(r, 409, AX_M_ROOM_IN_USE, "Room alias already exists");
    case AX_ENOTFOUND:
        return (void)ax_reply_error(r, AX_M_NOT_FOUND, w->delete_ ? "Room alias not found" : "Unknown room");
    case AX_EFORBIDDEN:
        return (void)ax_reply_error(r, AX_M_FORBIDDEN,
                                    w->delete_ ? "You may not remove this alias" : "You are not joined to this room");
    default:
        ax_reply_json_new(r, 200, json_object());
    }
}

/* PUT /_matrix/client/v3/directory/room/{roomAlias} */
int ax_cs_alias_put(ax_req_t *r)
{
    json_t *body;
    const char *room_id;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_string_or_reply(r, body, "room_id", true, &room_id) != 0)
        return 0;
    if (!local_alias_or_reply(r, r->params[0], true))
        return 0;
    if (room_id[0] != '!' || strlen(room_id) >= 256)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room ID");
    alias_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->alias, sizeof(w->alias), "%s", r->params[0]);
    snprintf(w->room_id, sizeof(w->room_id), "%s", room_id);
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    ax_req_write(r, alias_apply, alias_written, w, free);
    return 0;
}

/* DELETE /_matrix/client/v3/directory/room/{roomAlias} */
int ax_cs_alias_delete(ax_req_t *r)
{
    if (!local_alias_or_reply(r, r->params[0], true))
        return 0;
    alias_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->alias, sizeof(w->alias), "%s", r->params[0]);
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    w->delete_ = true;
    ax_req_write(r, alias_apply, alias_written, w, free);
    return 0;
}

static int alias_list_cb(void *arg, const char *alias)
{
    json_array_append_new(arg, json_string(alias));
    return 0;
}

/* GET /_matrix/client/v3/rooms/{roomId}/aliases */
int ax_cs_room_aliases(ax_req_t *r)
{
    uint64_t upto;
    ax_txn_t *txn = ax_cs_room_reader_or_reply(r, r->params[0], &upto);
    if (txn == NULL)
        return 0;
    json_t *list = json_array();
    ax_db_room_aliases_foreach(txn, r->params[0], alias_list_cb, list);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "aliases", list));
}

/* ---- directory visibility ---- */

/* GET /_matrix/client/v3/directory/list/room/{roomId} */
int ax_cs_directory_get(ax_req_t *r)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *room = NULL;
    int rc = ax_db_room_get(txn, r->params[0], &room);
    bool pub = rc == 0 && ax_db_directory_is_public(txn, r->params[0]);
    ax_db_read_end(txn);
    json_decref(room);
    if (rc != 0)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown room");
    return ax_reply_json_new(r, 200, json_pack("{s:s}", "visibility", pub ? "public" : "private"));
}

typedef struct st_dir_write_t {
    char room_id[256];
    char user_id[256];
    bool publish;
    int outcome;
} dir_write_t;

static int dir_apply(ax_txn_t *txn, void *data)
{
    dir_write_t *w = data;
    w->outcome = 0;
    const ax_room_version_t *rv = ax_room_version_of(txn, w->room_id);
    if (rv == NULL) {
        w->outcome = AX_ENOTFOUND;
        return 0;
    }
    /* publishing a room is for those who may change its canonical alias (Synapse's rule) */
    ax_room_lookup_t lk = {.txn = txn, .room_id = w->room_id};
    int64_t have = 0, need = 50;
    char m[16];
    ax_room_membership(txn, w->room_id, w->user_id, m, sizeof(m));
    bool allowed = strcmp(m, "join") == 0 && ax_power_level_of(rv, ax_room_lookup, &lk, w->user_id, &have) == 0 &&
                   ax_power_level_required(rv, ax_room_lookup, &lk, "m.room.canonical_alias", true, &need) == 0 &&
                   have >= need;
    ax_room_lookup_dispose(&lk);
    if (!allowed) {
        w->outcome = AX_EFORBIDDEN;
        return 0;
    }
    return ax_db_directory_set(txn, w->room_id, w->publish);
}

static void dir_written(ax_req_t *r, int result, void *data)
{
    dir_write_t *w = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not change the directory");
    if (w->outcome == AX_ENOTFOUND)
        return (void)ax_reply_error(r, AX_M_NOT_FOUND, "Unknown room");
    if (w->outcome == AX_EFORBIDDEN)
        return (void)ax_reply_error(r, AX_M_FORBIDDEN, "You may not change this room's directory listing");
    ax_reply_json_new(r, 200, json_object());
}

/* PUT /_matrix/client/v3/directory/list/room/{roomId} */
int ax_cs_directory_put(ax_req_t *r)
{
    json_t *body;
    const char *visibility;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "visibility", false, &visibility) != 0)
        return 0;
    if (visibility != NULL && strcmp(visibility, "public") != 0 && strcmp(visibility, "private") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "visibility must be public or private");
    dir_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->room_id, sizeof(w->room_id), "%s", r->params[0]);
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    w->publish = visibility != NULL && strcmp(visibility, "public") == 0;
    ax_req_write(r, dir_apply, dir_written, w, free);
    return 0;
}

/* ---- publicRooms ---- */

static json_t *describe(ax_txn_t *txn, const char *room_id, void *arg)
{
    (void)arg;
    return ax_room_summary(txn, room_id);
}

static int public_rooms(ax_req_t *r, uint64_t limit, const char *since, const char *term, json_t *room_types)
{
    uint64_t offset = 0;
    if (since != NULL && (since[0] != 'o' || ax_parse_u64(since + 1, &offset) != 0))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid since token");
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *out = ax_room_directory_page(txn, offset, limit, term, room_types, describe, NULL);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, out);
}

/* GET /_matrix/client/v3/publicRooms */
int ax_cs_public_rooms_get(ax_req_t *r)
{
    const char *limit_s = ax_req_query(r, "limit"), *server = ax_req_query(r, "server");
    uint64_t limit = 0;
    if (limit_s != NULL && ax_parse_u64(limit_s, &limit) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must be a non-negative integer");
    if (server != NULL && strcmp(server, r->srv->cfg->server_name) != 0)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Listing other servers' rooms needs federation");
    return public_rooms(r, limit, ax_req_query(r, "since"), NULL, NULL);
}

/* POST /_matrix/client/v3/publicRooms */
int ax_cs_public_rooms_post(ax_req_t *r)
{
    json_t *body, *filter = NULL, *room_types = NULL;
    json_int_t limit = 0;
    const char *since, *term = NULL, *server = ax_req_query(r, "server");
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_int_or_reply(r, body, "limit", false, &limit) != 0 ||
        ax_field_string_or_reply(r, body, "since", false, &since) != 0 ||
        ax_field_object_or_reply(r, body, "filter", false, &filter) != 0)
        return 0;
    if (filter != NULL && (ax_field_string_or_reply(r, filter, "generic_search_term", false, &term) != 0 ||
                           ax_field_array_or_reply(r, filter, "room_types", false, &room_types) != 0))
        return 0;
    if (limit < 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must not be negative");
    if (server != NULL && strcmp(server, r->srv->cfg->server_name) != 0)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Listing other servers' rooms needs federation");
    return public_rooms(r, (uint64_t)limit, since, term, room_types);
}
