/*
 * api_query.c -- "Querying for information" and device lists over the
 * Server-Server API (spec: query.yaml, user_devices.yaml, user_keys.yaml):
 * a local user's profile, the room a local alias maps to with the servers
 * in that room, a local user's devices with their keys and cross-signing
 * keys, and the end-to-end encryption keys of local users: queried, and
 * one-time keys claimed (through core/keys.c, the same code the client
 * endpoints use).  Every route here is AX_ROUTE_FED: the handlers run
 * after the origin's X-Matrix signature verified.
 */
#include "server/cs/cs.h"
#include "server/handlers.h"
#include "core/events.h"
#include "core/keys.h"

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

typedef struct st_devices_t {
    ax_txn_t *txn;
    const char *user_id;
    json_t *list;
} devices_t;

/* Every device with published keys (the schema requires "keys"; one without cannot take part in E2EE anyway). */
static int device_cb(void *arg, const char *device_id, json_t *device)
{
    devices_t *d = arg;
    json_t *keys = NULL;
    if (ax_db_devicekeys_get(d->txn, d->user_id, device_id, &keys) != 0)
        return 0;
    json_t *dev = json_pack("{s:s, s:o}", "device_id", device_id, "keys", keys);
    json_t *name = json_object_get(device, "display_name");
    if (json_is_string(name))
        json_object_set(dev, "device_display_name", name);
    json_array_append_new(d->list, dev);
    return 0;
}

/* GET /_matrix/federation/v1/user/devices/{userId} */
int ax_fed_user_devices(ax_req_t *r)
{
    const char *user_id = r->params[0];
    if (!local_user_or_reply(r, user_id))
        return 0;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *acct = NULL;
    devices_t d = {txn, user_id, json_array()};
    /* the list's version: the position of the user's latest public device-list change, which
     * m.device_list_update EDUs carry as their stream_id; read in the same transaction */
    uint64_t stream_id = 0;
    int rc = ax_db_account_get(txn, user_id, &acct);
    if (rc == 0)
        rc = ax_db_device_foreach(txn, user_id, device_cb, &d);
    if (rc == 0 && ax_db_devicelist_pos(txn, user_id, "", &stream_id) != 0)
        stream_id = 0;
    json_t *master = rc == 0 ? ax_keys_xsign_view(txn, user_id, "master", NULL) : NULL;
    json_t *self = rc == 0 ? ax_keys_xsign_view(txn, user_id, "self_signing", NULL) : NULL;
    ax_db_read_end(txn);
    json_decref(acct);
    if (rc != 0) {
        json_decref(d.list);
        json_decref(master);
        json_decref(self);
        return ax_reply_error(r, rc == AX_ENOTFOUND ? AX_M_NOT_FOUND : AX_M_INTERNAL,
                              rc == AX_ENOTFOUND ? "Unknown user" : "Database error");
    }
    json_t *out =
        json_pack("{s:s, s:I, s:o}", "user_id", user_id, "stream_id", (json_int_t)stream_id, "devices", d.list);
    if (master != NULL)
        json_object_set_new(out, "master_key", master);
    if (self != NULL)
        json_object_set_new(out, "self_signing_key", self);
    return ax_reply_json_new(r, 200, out);
}

/* ---- end-to-end encryption keys ---- */

/* POST /_matrix/federation/v1/user/keys/query */
int ax_fed_user_keys_query(ax_req_t *r)
{
    json_t *body, *wanted;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_object_or_reply(r, body, "device_keys", true, &wanted) != 0)
        return 0;
    const char *user;
    json_t *list;
    json_object_foreach(wanted, user, list)
    {
        size_t i;
        json_t *d;
        if (!json_is_array(list))
            return ax_reply_error(r, AX_M_BAD_JSON, "device_keys must map user IDs to lists of device IDs");
        json_array_foreach(list, i, d)
        {
            if (!json_is_string(d))
                return ax_reply_error(r, AX_M_BAD_JSON, "device IDs must be strings");
        }
    }
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *devices = json_object(), *masters = json_object(), *selfs = json_object();
    json_object_foreach(wanted, user, list)
    {
        /* "Requested users must be local": others' are not ours to answer for */
        if (!ax_id_is_valid_user_id(user) || !ax_streq(ax_id_domain(user), r->srv->cfg->server_name))
            continue;
        json_object_set_new(devices, user, ax_keys_user_devices(txn, user, list));
        json_t *k;
        /* no user-signing signatures: those are for their signer's eyes only */
        if ((k = ax_keys_xsign_view(txn, user, "master", NULL)) != NULL)
            json_object_set_new(masters, user, k);
        if ((k = ax_keys_xsign_view(txn, user, "self_signing", NULL)) != NULL)
            json_object_set_new(selfs, user, k);
    }
    ax_db_read_end(txn);
    return ax_reply_json_new(
        r, 200,
        json_pack("{s:o, s:o, s:o}", "device_keys", devices, "master_keys", masters, "self_signing_keys", selfs));
}

static void claim_reply(ax_req_t *r, json_t *claimed)
{
    ax_reply_json_new(r, 200, json_pack("{s:O}", "one_time_keys", claimed));
}

/* POST /_matrix/federation/v1/user/keys/claim */
int ax_fed_user_keys_claim(ax_req_t *r)
{
    json_t *body, *wanted;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_object_or_reply(r, body, "one_time_keys", true, &wanted) != 0)
        return 0;
    json_t *local = json_object();
    const char *user, *device;
    json_t *devices, *alg;
    json_object_foreach(wanted, user, devices)
    {
        bool ok = json_is_object(devices);
        json_object_foreach(devices, device, alg)
        {
            ok = ok && json_is_string(alg);
        }
        if (!ok) {
            json_decref(local);
            return ax_reply_error(r, AX_M_BAD_JSON, "one_time_keys must map user IDs to {device ID: algorithm}");
        }
        if (ax_id_is_valid_user_id(user) && ax_streq(ax_id_domain(user), r->srv->cfg->server_name))
            json_object_set(local, user, devices);
    }
    ax_cs_keys_claim_local(r, local, claim_reply);
    return 0;
}
