/*
 * dehydrated.c -- dehydrated devices (MSC3814, unstable prefix
 * org.matrix.msc3814.v1): a device a client leaves on the server, with its
 * keys published and its olm account encrypted in 'device_data', so that
 * messages sent while the user has no device online can be decrypted
 * later.  It has no access token; its to-device inbox is read, and
 * acknowledged, through /dehydrated_device/{deviceId}/events.
 *
 * A user has at most one: uploading a new one deletes the old one, with
 * its keys and messages.  Behaviour follows Synapse where MSC3814 is open.
 */
#include "server/cs/cs.h"

#include <stdlib.h>
#include <string.h>

#define MAX_EVENTS 100

/* ---- PUT /dehydrated_device ---- */

typedef struct st_dehydrate_t {
    char user_id[256];
    char device_id[128];
    char *display_name;
    json_t *device_data;
    json_t *device_keys, *one_time_keys, *fallback_keys;
    char why[512];
} dehydrate_t;

static void dehydrate_free(void *p)
{
    dehydrate_t *d = p;
    free(d->display_name);
    json_decref(d->device_data);
    json_decref(d->device_keys);
    json_decref(d->one_time_keys);
    json_decref(d->fallback_keys);
    free(d);
}

/* Deletes the user's dehydrated device, if any, with its keys and inbox. */
static int drop_dehydrated(ax_txn_t *txn, const char *user_id, bool *had)
{
    json_t *old = NULL;
    int rc = ax_db_dehydrated_get(txn, user_id, &old);
    *had = rc == 0;
    if (rc == AX_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    const char *old_id = json_string_value(json_object_get(old, "device_id"));
    if (old_id != NULL && (rc = ax_db_device_logout(txn, user_id, old_id, true)) == AX_ENOTFOUND)
        rc = 0; /* the device was deleted through /devices already */
    json_decref(old);
    return rc == 0 ? ax_db_dehydrated_del(txn, user_id) : rc;
}

static int dehydrate_apply(ax_txn_t *txn, void *data)
{
    dehydrate_t *d = data;
    d->why[0] = '\0';
    bool had;
    int rc = drop_dehydrated(txn, d->user_id, &had);
    if (rc != 0)
        return rc;
    /* the ID must not be one of the user's real devices */
    json_t *dev = NULL;
    if (ax_db_device_get(txn, d->user_id, d->device_id, &dev) == 0) {
        json_decref(dev);
        snprintf(d->why, sizeof(d->why), "Device ID %s is in use", d->device_id);
        return AX_EEXIST;
    }
    dev = json_pack("{s:I, s:b}", "created_ts", (json_int_t)ax_now_ms(), "dehydrated", 1);
    if (d->display_name != NULL)
        json_object_set_new(dev, "display_name", json_string(d->display_name));
    rc = ax_db_device_put(txn, d->user_id, d->device_id, dev);
    json_decref(dev);
    if (rc == 0)
        rc = ax_db_devicelist_touch(txn, d->user_id, NULL);
    /* with keys, storing them tells other servers (with the keys in the update) */
    if (rc == 0 && d->device_keys == NULL)
        rc = ax_db_fedq_device_update(txn, d->user_id, d->device_id);
    if (rc == 0)
        rc = ax_cs_keys_store(txn, d->user_id, d->device_id, d->device_keys, d->one_time_keys, d->fallback_keys, d->why,
                              sizeof(d->why));
    if (rc != 0)
        return rc == AX_ECONFLICT ? AX_EEXIST : rc;
    json_t *rec = json_pack("{s:s, s:O}", "device_id", d->device_id, "device_data", d->device_data);
    rc = ax_db_dehydrated_put(txn, d->user_id, rec);
    json_decref(rec);
    return rc;
}

static void dehydrate_written(ax_req_t *r, int result, void *data)
{
    dehydrate_t *d = data;
    if (result == AX_EEXIST)
        return (void)ax_reply_error(r, AX_M_INVALID_PARAM, d->why);
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the dehydrated device");
    ax_reply_json_new(r, 200, json_pack("{s:s}", "device_id", d->device_id));
}

/* PUT /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device */
int ax_cs_dehydrated_put(ax_req_t *r)
{
    json_t *body, *data, *dk, *otks = NULL, *fallbacks = NULL;
    const char *device_id, *name = NULL, *algorithm;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "device_id", true, &device_id) != 0 ||
        ax_field_object_or_reply(r, body, "device_data", true, &data) != 0 ||
        ax_field_string_or_reply(r, data, "algorithm", true, &algorithm) != 0 ||
        ax_field_string_or_reply(r, body, "initial_device_display_name", false, &name) != 0 ||
        ax_field_object_or_reply(r, body, "device_keys", true, &dk) != 0 ||
        ax_field_object_or_reply(r, body, "one_time_keys", false, &otks) != 0 ||
        ax_field_object_or_reply(r, body, "fallback_keys", false, &fallbacks) != 0)
        return 0;
    (void)algorithm;
    if (device_id[0] == '\0' || strlen(device_id) >= 128)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid device_id");
    if (name != NULL && strlen(name) > 512)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "initial_device_display_name is too long");
    if (ax_cs_keys_check_or_reply(r, device_id, dk, otks, fallbacks) != 0)
        return 0;
    dehydrate_t *d = ax_calloc(1, sizeof(*d));
    snprintf(d->user_id, sizeof(d->user_id), "%s", r->auth.user_id);
    snprintf(d->device_id, sizeof(d->device_id), "%s", device_id);
    d->display_name = name != NULL ? ax_strdup(name) : NULL;
    d->device_data = json_deep_copy(data);
    d->device_keys = json_deep_copy(dk);
    json_object_del(d->device_keys, "unsigned");
    d->one_time_keys = otks != NULL ? json_deep_copy(otks) : NULL;
    d->fallback_keys = fallbacks != NULL ? json_deep_copy(fallbacks) : NULL;
    ax_req_write(r, dehydrate_apply, dehydrate_written, d, dehydrate_free);
    return 0;
}

/* ---- GET and DELETE /dehydrated_device ---- */

/* The user's dehydrated device record if its device still exists (a new reference), else NULL. */
static json_t *current(ax_txn_t *txn, const char *user_id)
{
    json_t *rec = NULL, *dev = NULL;
    if (ax_db_dehydrated_get(txn, user_id, &rec) != 0)
        return NULL;
    const char *id = json_string_value(json_object_get(rec, "device_id"));
    if (id == NULL || ax_db_device_get(txn, user_id, id, &dev) != 0) {
        json_decref(rec);
        return NULL;
    }
    json_decref(dev);
    return rec;
}

/* GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device */
int ax_cs_dehydrated_get(ax_req_t *r)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *rec = current(txn, r->auth.user_id);
    ax_db_read_end(txn);
    if (rec == NULL)
        return ax_reply_error(r, AX_M_NOT_FOUND, "No dehydrated device available");
    return ax_reply_json_new(r, 200, rec);
}

typedef struct st_undehydrate_t {
    char user_id[256];
    char device_id[128]; /* filled by the writer */
} undehydrate_t;

static int undehydrate_apply(ax_txn_t *txn, void *data)
{
    undehydrate_t *u = data;
    json_t *rec = current(txn, u->user_id);
    if (rec == NULL)
        return AX_ENOTFOUND;
    snprintf(u->device_id, sizeof(u->device_id), "%s", json_string_value(json_object_get(rec, "device_id")));
    json_decref(rec);
    bool had;
    return drop_dehydrated(txn, u->user_id, &had);
}

static void undehydrate_written(ax_req_t *r, int result, void *data)
{
    undehydrate_t *u = data;
    if (result == AX_ENOTFOUND)
        return (void)ax_reply_error(r, AX_M_NOT_FOUND, "No dehydrated device available");
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not delete the dehydrated device");
    ax_reply_json_new(r, 200, json_pack("{s:s}", "device_id", u->device_id));
}

/* DELETE /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device */
int ax_cs_dehydrated_delete(ax_req_t *r)
{
    undehydrate_t *u = ax_calloc(1, sizeof(*u));
    snprintf(u->user_id, sizeof(u->user_id), "%s", r->auth.user_id);
    ax_req_write(r, undehydrate_apply, undehydrate_written, u, free);
    return 0;
}

/* ---- the dehydrated device's inbox ---- */

typedef struct st_ack_t {
    char user_id[256];
    char device_id[128];
    uint64_t upto;
} ack_t;

static int ack_apply(ax_txn_t *txn, void *data)
{
    ack_t *a = data;
    return ax_db_todevice_ack(txn, a->user_id, a->device_id, a->upto, NULL);
}

typedef struct st_page_t {
    size_t limit;
    json_t *events;
    uint64_t last;
    bool more;
} page_t;

static int page_cb(void *arg, uint64_t pos, json_t *msg)
{
    page_t *p = arg;
    if (json_array_size(p->events) == p->limit) {
        p->more = true;
        return 1;
    }
    json_array_append(p->events, msg);
    p->last = pos;
    return 0;
}

/* Parses "d<pos>" (NULL or absent: from the start); false when malformed. */
static bool parse_from(const char *s, uint64_t *pos)
{
    *pos = 0;
    return s == NULL || (s[0] == 'd' && ax_parse_u64(s + 1, pos) == 0);
}

/* What a page request asked for, kept in the request pool across the acknowledgement write. */
typedef struct st_page_req_t {
    uint64_t since;
    size_t limit;
    bool post;
} page_req_t;

static void reply_page(ax_req_t *r)
{
    page_req_t *q = r->route_data;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return;
    }
    page_t p = {q->limit, json_array(), q->since, false};
    int rc = ax_db_todevice_scan(txn, r->auth.user_id, r->params[0], q->since, page_cb, &p);
    ax_db_read_end(txn);
    if (rc < 0) {
        json_decref(p.events);
        ax_reply_error(r, AX_M_INTERNAL, "Database error");
        return;
    }
    json_t *out = json_pack("{s:o}", "events", p.events);
    /* Synapse: GET gives next_batch only when there is more; POST always does */
    if (p.more || q->post)
        json_object_set_new(out, "next_batch", json_string(ax_psprintf(r, "d%llu", (unsigned long long)p.last)));
    ax_reply_json_new(r, 200, out);
}

static void acked(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result != 0) {
        ax_reply_error(r, ax_errcode_from_ax(result), "Could not acknowledge the messages");
        return;
    }
    reply_page(r);
}

/*
 * GET  /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events?from=
 * POST /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events {next_batch}
 * (POST is an earlier draft Synapse still serves.)  Asking for the page after 'from'
 * acknowledges the messages up to it: they are deleted before the page is read.
 */
int ax_cs_dehydrated_events(ax_req_t *r)
{
    page_req_t *q = ax_palloc(r, sizeof(*q));
    memset(q, 0, sizeof(*q));
    r->route_data = q;
    q->post = strcmp(ax_req_method(r), "POST") == 0;
    const char *from = NULL;
    if (q->post) {
        json_t *body;
        if (ax_req_json_body_or_reply(r, &body) != 0 ||
            ax_field_string_or_reply(r, body, "next_batch", false, &from) != 0)
            return 0;
    } else {
        from = ax_req_query(r, "from");
    }
    if (!parse_from(from, &q->since))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "from must be a next_batch token of this endpoint");
    uint64_t limit = MAX_EVENTS;
    const char *l = ax_req_query(r, "limit");
    if (l != NULL && (ax_parse_u64(l, &limit) != 0 || limit == 0))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must be a positive integer");
    q->limit = limit > MAX_EVENTS ? MAX_EVENTS : (size_t)limit;

    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *rec = current(txn, r->auth.user_id);
    const char *device_id = r->params[0];
    /* only the user's current dehydrated device, as Synapse: 403 otherwise */
    bool mine = rec != NULL && ax_streq(json_string_value(json_object_get(rec, "device_id")), device_id);
    json_decref(rec);
    uint64_t oldest;
    bool ack = mine && q->since != 0 && ax_db_todevice_oldest(txn, r->auth.user_id, device_id, &oldest) == 0 &&
               oldest <= q->since;
    ax_db_read_end(txn);
    if (!mine)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You may only fetch messages for your dehydrated device");
    if (!ack) {
        reply_page(r);
        return 0;
    }
    ack_t *a = ax_calloc(1, sizeof(*a));
    snprintf(a->user_id, sizeof(a->user_id), "%s", r->auth.user_id);
    snprintf(a->device_id, sizeof(a->device_id), "%s", device_id);
    a->upto = q->since;
    ax_req_write(r, ack_apply, acked, a, free);
    return 0;
}
