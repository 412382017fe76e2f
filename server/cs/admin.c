/*
 * admin.c -- the Client-Server "Server administration" module (spec:
 * admin.yaml): GET /admin/whois/{userId}, a user's devices and where they
 * were last seen.  Server admins (the account record's "admin", set by
 * `axon admin create-user --admin`) may look anyone up; everyone else only
 * themself.  The command-line administration is server/admin.c.
 */
#include "server/cs/cs.h"
#include "core/events.h"

#include <string.h>

/*
 * One DeviceInfo.  A device is one login in axon (logging in again on it
 * revokes the old tokens, logging out deletes it), so it is one session,
 * whose connection is the last one recorded (server/auth.c writes it at
 * most every few minutes): address, time and user agent.
 */
static int whois_device_cb(void *arg, const char *device_id, json_t *dev)
{
    json_t *connections = json_array();
    json_t *ip = json_object_get(dev, "last_seen_ip"), *ts = json_object_get(dev, "last_seen_ts");
    if (json_is_string(ip) || json_is_integer(ts)) {
        json_t *c = json_object();
        if (json_is_string(ip))
            json_object_set(c, "ip", ip);
        if (json_is_integer(ts))
            json_object_set(c, "last_seen", ts);
        json_t *ua = json_object_get(dev, "last_seen_user_agent");
        if (json_is_string(ua))
            json_object_set(c, "user_agent", ua);
        json_array_append_new(connections, c);
    }
    json_object_set_new(arg, device_id, json_pack("{s:[{s:o}]}", "sessions", "connections", connections));
    return 0;
}

/* GET /_matrix/client/v3/admin/whois/{userId} */
int ax_cs_admin_whois(ax_req_t *r)
{
    const char *target = r->params[0];
    if (!ax_id_is_valid_user_id(target))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid user ID");
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    /* who may ask comes first, so the answer says nothing about who exists */
    if (strcmp(target, r->auth.user_id) != 0) {
        json_t *me = NULL;
        int rc = ax_db_account_get(txn, r->auth.user_id, &me);
        bool admin = rc == 0 && json_is_true(json_object_get(me, "admin"));
        json_decref(me);
        if (!admin) {
            ax_db_read_end(txn);
            return rc == 0 || rc == AX_ENOTFOUND
                       ? ax_reply_error(r, AX_M_FORBIDDEN, "Only server admins may look up other users")
                       : ax_reply_error(r, AX_M_INTERNAL, "Database error");
        }
    }
    json_t *account = NULL;
    int rc = ax_db_account_get(txn, target, &account);
    json_decref(account);
    if (rc != 0) {
        ax_db_read_end(txn);
        return rc == AX_ENOTFOUND ? ax_reply_error(r, AX_M_NOT_FOUND, "Unknown user")
                                  : ax_reply_error(r, AX_M_INTERNAL, "Database error");
    }
    json_t *devices = json_object();
    rc = ax_db_device_foreach(txn, target, whois_device_cb, devices);
    ax_db_read_end(txn);
    if (rc != 0) {
        json_decref(devices);
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    }
    return ax_reply_json_new(r, 200, json_pack("{s:s, s:o}", "user_id", target, "devices", devices));
}
