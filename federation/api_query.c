/*
 * api_query.c -- "Querying for information" and device lists over the
 * Server-Server API (spec: query.yaml, user_devices.yaml): a local user's
 * profile, the room a local alias maps to with the servers in that room,
 * and a local user's devices.  Every route here is AX_ROUTE_FED: the
 * handlers run after the origin's X-Matrix signature verified.
 *
 * Devices are served without their E2EE keys: the device keys store does
 * not exist yet in this tree, and /user/keys/query and /user/keys/claim are
 * not served until it does.
 */
#include "server/handlers.h"
#include "core/events.h"

#include <stdlib.h>
#include <string.h>

/* The user ID in 'id' is valid and ours; replies 400 otherwise. */
static bool local_user_or_reply(ax_req_t *r, const char *id)
{
    if (!ax_id_is_valid_user_id(id)) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid user ID");
        return false;
    }
    if (strcmp(ax_id_domain(id), r->srv->cfg->server_name) != 0) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "The user is not hosted on this server");
        return false;
    }
    return true;
}

/* GET /_matrix/federation/v1/query/profile */
int ax_fed_query_profile(ax_req_t *r)
{
    const char *user_id = ax_req_query(r, "user_id");
    const char *field = ax_req_query(r, "field");
    if (user_id == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing 'user_id'");
    if (!local_user_or_reply(r, user_id))
        return 0;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *acct = NULL, *profile = NULL;
    int rc = ax_db_account_get(txn, user_id, &acct);
    if (rc == 0 && ax_db_profile_get(txn, user_id, &profile) != 0)
        profile = json_object();
    ax_db_read_end(txn);
    bool deactivated = json_is_true(json_object_get(acct, "deactivated"));
    json_decref(acct);
    if (rc != 0)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Profile not found");
    if (deactivated)
        json_object_clear(profile);
    if (field != NULL && field[0] != '\0') {
        json_t *v = json_object_get(profile, field);
        if (v == NULL) {
            json_decref(profile);
            return ax_reply_error(r, AX_M_NOT_FOUND, "No such profile field");
        }
        json_t *out = json_object();
        json_object_set(out, field, v);
        json_decref(profile);
        return ax_reply_json_new(r, 200, out);
    }
    return ax_reply_json_new(r, 200, profile);
}

typedef struct st_servers_t {
    json_t *list;
    json_t *seen;
} servers_t;

static int add_member_server(void *arg, const char *user_id, const char *membership)
{
    servers_t *s = arg;
    const char *server = ax_id_domain(user_id);
    if (server != NULL && strcmp(membership, "join") == 0 && json_object_get(s->seen, server) == NULL) {
        json_object_set_new(s->seen, server, json_true());
        json_array_append_new(s->list, json_string(server));
    }
    return 0;
}

/* GET /_matrix/federation/v1/query/directory */
int ax_fed_query_directory(ax_req_t *r)
{
    const char *alias = ax_req_query(r, "room_alias");
    if (alias == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing 'room_alias'");
    if (!ax_id_is_valid_room_alias(alias))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room alias");
    if (strcmp(ax_id_domain(alias), r->srv->cfg->server_name) != 0)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Room alias not hosted on this server");
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *rec = NULL;
    int rc = ax_db_alias_get(txn, alias, &rec);
    const char *room_id = json_string_value(json_object_get(rec, "room_id"));
    servers_t s = {json_array(), json_object()};
    /* this server first: it answered, so it is the likeliest to let a join through */
    json_array_append_new(s.list, json_string(r->srv->cfg->server_name));
    json_object_set_new(s.seen, r->srv->cfg->server_name, json_true());
    if (rc == 0 && room_id != NULL)
        ax_db_room_members_foreach(txn, room_id, add_member_server, &s);
    ax_db_read_end(txn);
    json_decref(s.seen);
    if (rc != 0 || room_id == NULL) {
        json_decref(rec);
        json_decref(s.list);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Room alias not found");
    }
    json_t *out = json_pack("{s:s, s:o}", "room_id", room_id, "servers", s.list);
    json_decref(rec);
    return ax_reply_json_new(r, 200, out);
}

static int device_cb(void *arg, const char *device_id, json_t *device)
{
    json_t *d = json_pack("{s:s}", "device_id", device_id);
    json_t *name = json_object_get(device, "display_name");
    if (json_is_string(name))
        json_object_set(d, "device_display_name", name);
    json_array_append_new(arg, d);
    return 0;
}

/* GET /_matrix/federation/v1/user/devices/{userId} */
int ax_fed_user_devices(ax_req_t *r)
{
    const char *user_id = r->params[0];
    if (!local_user_or_reply(r, user_id))
        return 0;
    /* the device list's version: every change before this position is reflected below */
    uint64_t stream_id = ax_writer_stream_pos(r->srv->writer);
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *acct = NULL, *devices = json_array();
    int rc = ax_db_account_get(txn, user_id, &acct);
    if (rc == 0)
        rc = ax_db_device_foreach(txn, user_id, device_cb, devices);
    ax_db_read_end(txn);
    json_decref(acct);
    if (rc == AX_ENOTFOUND) {
        json_decref(devices);
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown user");
    }
    if (rc != 0) {
        json_decref(devices);
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    }
    return ax_reply_json_new(
        r, 200,
        json_pack("{s:s, s:I, s:o}", "user_id", user_id, "stream_id", (json_int_t)stream_id, "devices", devices));
}
