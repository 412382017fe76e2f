/*
 * devices.c -- device management (spec: Client-Server API "Device
 * management"; device_management.yaml).  Deleting a device revokes its
 * tokens; deleting needs User-Interactive Auth with the password.
 */
#include "server/cs/cs.h"

#include <stdlib.h>
#include <string.h>

static const ax_uia_flow_t password_flow[] = {{{"m.login.password", NULL}}};

/* The client-facing shape of a stored device (a new reference).  A device
 * nobody named shows its ID, as clients display it anyway (and some, like
 * matrix-nio, need the field). */
static json_t *device_json(const char *device_id, json_t *dev)
{
    json_t *out = json_pack("{s:s}", "device_id", device_id);
    json_t *v;
    if ((v = json_object_get(dev, "display_name")) != NULL && json_is_string(v))
        json_object_set(out, "display_name", v);
    else
        json_object_set_new(out, "display_name", json_string(device_id));
    if ((v = json_object_get(dev, "last_seen_ts")) != NULL && json_is_integer(v))
        json_object_set(out, "last_seen_ts", v);
    if ((v = json_object_get(dev, "last_seen_ip")) != NULL && json_is_string(v))
        json_object_set(out, "last_seen_ip", v);
    return out;
}

static int list_cb(void *arg, const char *device_id, json_t *dev)
{
    json_array_append_new(arg, device_json(device_id, dev));
    return 0;
}

/* GET /_matrix/client/v3/devices */
int ax_cs_devices_list(ax_req_t *r)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *list = json_array();
    int rc = ax_db_device_foreach(txn, r->auth.user_id, list_cb, list);
    ax_db_read_end(txn);
    if (rc != 0) {
        json_decref(list);
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    }
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "devices", list));
}

/* GET /_matrix/client/v3/devices/{deviceId} */
int ax_cs_devices_get(ax_req_t *r)
{
    ax_txn_t *txn;
    json_t *dev = NULL;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    int rc = ax_db_device_get(txn, r->auth.user_id, r->params[0], &dev);
    ax_db_read_end(txn);
    if (rc == AX_ENOTFOUND)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown device");
    if (rc != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    json_t *out = device_json(r->params[0], dev);
    json_decref(dev);
    return ax_reply_json_new(r, 200, out);
}

typedef struct st_rename_t {
    char user_id[256];
    char device_id[128];
    char *display_name;
} rename_t;

static void rename_free(void *p)
{
    rename_t *n = p;
    free(n->display_name);
    free(n);
}

static int rename_apply(ax_txn_t *txn, void *data)
{
    rename_t *n = data;
    json_t *dev = NULL;
    int rc = ax_db_device_get(txn, n->user_id, n->device_id, &dev);
    if (rc != 0)
        return rc;
    if (n->display_name != NULL)
        json_object_set_new(dev, "display_name", json_string(n->display_name));
    else
        json_object_del(dev, "display_name");
    rc = ax_db_device_put(txn, n->user_id, n->device_id, dev);
    json_decref(dev);
    /* the name is part of what /keys/query shows others (unsigned.device_display_name) */
    if (rc == 0)
        rc = ax_db_devicelist_touch(txn, n->user_id, NULL);
    if (rc == 0)
        rc = ax_db_fedq_device_update(txn, n->user_id, n->device_id);
    return rc;
}

static void rename_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result == AX_ENOTFOUND)
        return (void)ax_reply_error(r, AX_M_NOT_FOUND, "Unknown device");
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not update the device");
    ax_reply_json_new(r, 200, json_object());
}

/* PUT /_matrix/client/v3/devices/{deviceId} */
int ax_cs_devices_put(ax_req_t *r)
{
    json_t *body;
    const char *name;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "display_name", false, &name) != 0)
        return 0;
    if (name != NULL && strlen(name) > 512)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "display_name is too long");
    rename_t *n = ax_calloc(1, sizeof(*n));
    snprintf(n->user_id, sizeof(n->user_id), "%s", r->auth.user_id);
    snprintf(n->device_id, sizeof(n->device_id), "%s", r->params[0]);
    n->display_name = name != NULL ? ax_strdup(name) : NULL;
    ax_req_write(r, rename_apply, rename_written, n, rename_free);
    return 0;
}

/* ---- deleting ---- */

typedef struct st_delete_t {
    char user_id[256];
    char (*ids)[128];
    size_t n;
} delete_t;

static void delete_free(void *p)
{
    delete_t *d = p;
    free(d->ids);
    free(d);
}

static int delete_apply(ax_txn_t *txn, void *data)
{
    delete_t *d = data;
    for (size_t i = 0; i < d->n; ++i) {
        int rc = ax_db_device_logout(txn, d->user_id, d->ids[i], true);
        if (rc != 0 && rc != AX_ENOTFOUND) /* unknown devices are ignored, as the spec says */
            return rc;
    }
    return 0;
}

static void delete_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not delete the devices");
    ax_reply_json_new(r, 200, json_object());
}

static void delete_authorised(ax_req_t *r, json_t *body, json_t *session, void *arg)
{
    (void)body, (void)session;
    ax_req_write(r, delete_apply, delete_written, arg, delete_free);
}

static delete_t *delete_new(ax_req_t *r, size_t n)
{
    delete_t *d = ax_calloc(1, sizeof(*d));
    snprintf(d->user_id, sizeof(d->user_id), "%s", r->auth.user_id);
    d->ids = ax_calloc(n == 0 ? 1 : n, sizeof(*d->ids));
    return d;
}

/* Keeps 'd' alive exactly as long as the request, unless handed to the writer. */
static void delete_hold_dispose(void *p)
{
    delete_t **slot = p;
    if (*slot != NULL)
        delete_free(*slot);
}

static void delete_authorised_owned(ax_req_t *r, json_t *body, json_t *session, void *arg)
{
    delete_t **slot = arg;
    delete_t *d = *slot;
    *slot = NULL; /* ownership moves to the writer job */
    delete_authorised(r, body, session, d);
}

static int start_delete(ax_req_t *r, json_t *body, delete_t *d)
{
    delete_t **slot = ax_palloc_dispose(r, sizeof(*slot), delete_hold_dispose);
    *slot = d;
    ax_uia_run(r, body, password_flow, 1, delete_authorised_owned, slot);
    return 0;
}

/* DELETE /_matrix/client/v3/devices/{deviceId} */
int ax_cs_devices_delete(ax_req_t *r)
{
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    if (strlen(r->params[0]) >= 128)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown device");
    delete_t *d = delete_new(r, 1);
    snprintf(d->ids[0], sizeof(d->ids[0]), "%s", r->params[0]);
    d->n = 1;
    return start_delete(r, body, d);
}

/* POST /_matrix/client/v3/delete_devices */
int ax_cs_devices_delete_many(ax_req_t *r)
{
    json_t *body, *devices;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_array_or_reply(r, body, "devices", true, &devices) != 0)
        return 0;
    size_t i;
    json_t *v;
    json_array_foreach(devices, i, v)
    {
        if (!json_is_string(v))
            return ax_reply_error(r, AX_M_BAD_JSON, "'devices' must be an array of strings");
    }
    delete_t *d = delete_new(r, json_array_size(devices));
    json_array_foreach(devices, i, v)
    {
        if (json_string_length(v) < sizeof(d->ids[0]))
            snprintf(d->ids[d->n++], sizeof(d->ids[0]), "%s", json_string_value(v));
    }
    return start_delete(r, body, d);
}
