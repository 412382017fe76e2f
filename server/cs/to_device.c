/*
 * to_device.c -- send-to-device messaging (spec: Client-Server API
 * "Send-to-Device messaging"; to_device.yaml) and its /sync extension.
 *
 * A message goes into each recipient device's inbox at a stream position
 * and wakes the recipient's /sync.  /sync hands a device its messages in
 * order, at most MAX_PER_SYNC at a time; a later /sync whose since token
 * covers them is the acknowledgement, and they are deleted then.  Messages
 * for users of other servers become one m.direct_to_device EDU per server,
 * queued in the same transaction (storage/fedqueue.c) for the federation
 * sender.
 */
#include "server/cs/cs.h"
#include "core/events.h"

#include <stdlib.h>
#include <string.h>

/* spec: "If there is a large queue of send-to-device messages, the server should limit the
 * number sent in each /sync response. 100 messages is recommended as a reasonable limit." */
#define MAX_PER_SYNC 100

typedef struct st_send_t {
    char sender[256];
    char device_id[256];
    char txn_id[256];
    char type[256];
    json_t *messages; /* {user_id: {device_id or "*": content}}, local users only */
    json_t *remote;   /* {server: {message_id, messages: {user_id: {device_id or "*": content}}}} */
} send_t;

static void send_free(void *p)
{
    send_t *s = p;
    json_decref(s->messages);
    json_decref(s->remote);
    free(s);
}

static int collect_device(void *arg, const char *device_id, json_t *device)
{
    (void)device;
    json_array_append_new(arg, json_string(device_id));
    return 0;
}

static int send_apply(ax_txn_t *txn, void *data)
{
    send_t *s = data;
    /* the same transaction ID from the same device was sent already: a retry, do nothing */
    if (ax_db_todevice_txn_get(txn, s->sender, s->device_id, s->txn_id) == 0)
        return 0;
    const char *user, *device;
    json_t *devices, *content;
    int rc = 0;
    json_object_foreach(s->messages, user, devices)
    {
        json_t *targets = json_object(); /* {device_id: content} */
        json_object_foreach(devices, device, content)
        {
            if (strcmp(device, "*") == 0) {
                /* every device the user has now */
                json_t *all = json_array();
                rc = ax_db_device_foreach(txn, user, collect_device, all);
                size_t i;
                json_t *d;
                json_array_foreach(all, i, d)
                {
                    json_object_set(targets, json_string_value(d), content);
                }
                json_decref(all);
                if (rc < 0)
                    break;
                rc = 0;
            } else if (json_object_get(targets, device) == NULL) {
                json_t *dev = NULL;
                /* unknown devices are skipped, as Synapse does */
                if (ax_db_device_get(txn, user, device, &dev) == 0)
                    json_object_set(targets, device, content);
                json_decref(dev);
            }
        }
        json_object_foreach(targets, device, content)
        {
            json_t *msg = json_pack("{s:s, s:s, s:O}", "sender", s->sender, "type", s->type, "content", content);
            rc = ax_db_todevice_put(txn, user, device, ax_txn_next_stream_pos(txn), msg);
            json_decref(msg);
            if (rc != 0)
                break;
        }
        if (rc == 0 && json_object_size(targets) != 0)
            ax_txn_notify(txn, user);
        json_decref(targets);
        if (rc != 0)
            return rc;
    }
    /* spec: Server-Server API "Send-to-device messaging": one m.direct_to_device EDU per server */
    const char *server;
    json_t *part;
    json_object_foreach(s->remote, server, part)
    {
        json_t *content = json_pack("{s:s, s:s, s:O, s:O}", "sender", s->sender, "type", s->type, "message_id",
                                    json_object_get(part, "message_id"), "messages", json_object_get(part, "messages"));
        rc = ax_db_fedq_push_edu(txn, server, "m.direct_to_device", content);
        json_decref(content);
        if (rc != 0)
            return rc;
    }
    return ax_db_todevice_txn_put(txn, s->sender, s->device_id, s->txn_id, ax_now_ms());
}

static void send_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not send the messages");
    ax_reply_json_new(r, 200, json_object());
}

/* PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId} */
int ax_cs_send_to_device(ax_req_t *r)
{
    const char *type = r->params[0], *txn_id = r->params[1];
    if (type[0] == '\0' || strlen(type) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid event type");
    if (txn_id[0] == '\0' || strlen(txn_id) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid transaction ID");
    if (r->auth.device_id == NULL || strlen(r->auth.device_id) >= 256)
        return ax_reply_error(r, AX_M_UNKNOWN, "Sending to devices needs a device");
    json_t *body, *messages;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_object_or_reply(r, body, "messages", true, &messages) != 0)
        return 0;
    const char *user, *device;
    json_t *devices, *content;
    json_object_foreach(messages, user, devices)
    {
        if (!ax_id_is_valid_user_id(user))
            return ax_reply_error(r, AX_M_INVALID_PARAM, ax_psprintf(r, "'%s' is not a user ID", user));
        if (!json_is_object(devices))
            return ax_reply_error(r, AX_M_BAD_JSON, "messages must map user IDs to {device ID: content}");
        json_object_foreach(devices, device, content)
        {
            if (!json_is_object(content))
                return ax_reply_error(r, AX_M_BAD_JSON, "Message contents must be objects");
        }
    }
    send_t *s = ax_calloc(1, sizeof(*s));
    snprintf(s->sender, sizeof(s->sender), "%s", r->auth.user_id);
    snprintf(s->device_id, sizeof(s->device_id), "%s", r->auth.device_id);
    snprintf(s->txn_id, sizeof(s->txn_id), "%s", txn_id);
    snprintf(s->type, sizeof(s->type), "%s", type);
    s->messages = json_object();
    s->remote = json_object();
    size_t skipped = 0;
    json_object_foreach(messages, user, devices)
    {
        const char *server = ax_id_domain(user);
        if (ax_streq(server, r->srv->cfg->server_name)) {
            json_object_set_new(s->messages, user, json_deep_copy(devices));
        } else if (r->srv->fed == NULL || !ax_id_is_valid_server_name(server)) {
            ++skipped;
        } else {
            json_t *part = json_object_get(s->remote, server);
            if (part == NULL) {
                /* the receiving server drops a message_id it saw from us before (idempotence) */
                char id[17];
                ax_random_alnum(id, 16);
                part = json_pack("{s:s, s:{}}", "message_id", id, "messages");
                json_object_set_new(s->remote, server, part);
            }
            json_object_set_new(json_object_get(part, "messages"), user, json_deep_copy(devices));
        }
    }
    if (skipped != 0)
        ax_log(AX_LOG_INFO, "sendToDevice from %s: %zu remote recipient(s) skipped (%s)", s->sender, skipped,
               r->srv->fed == NULL ? "federation is disabled" : "not a server name");
    ax_req_write(r, send_apply, send_written, s, send_free);
    return 0;
}

/* ---- /sync ---- */

typedef struct st_ack_t {
    char user_id[256];
    char device_id[256];
    uint64_t upto;
} ack_t;

static int ack_apply(ax_txn_t *txn, void *data)
{
    ack_t *a = data;
    return ax_db_todevice_ack(txn, a->user_id, a->device_id, a->upto, NULL);
}

typedef struct st_inbox_t {
    uint64_t upto;
    json_t *events;
    uint64_t last;
    bool more;
} inbox_t;

static int inbox_cb(void *arg, uint64_t pos, json_t *msg)
{
    inbox_t *in = arg;
    if (pos > in->upto)
        return 1;
    if (json_array_size(in->events) == MAX_PER_SYNC) {
        in->more = true;
        return 1;
    }
    json_array_append(in->events, msg);
    in->last = pos;
    return 0;
}

json_t *ax_cs_to_device_sync(ax_txn_t *txn, const char *user_id, const char *device_id, uint64_t since, uint64_t *upto,
                             bool *ack)
{
    inbox_t in = {*upto, json_array(), 0, false};
    *ack = false;
    if (device_id == NULL)
        return in.events;
    ax_db_todevice_scan(txn, user_id, device_id, since, inbox_cb, &in);
    /* more than one response's worth: this response ends at the last message it carries, so the
     * token the client sends back acknowledges exactly those */
    if (in.more)
        *upto = in.last;
    /* spec: a /sync with the next_batch of a response acknowledges its messages: delete them */
    uint64_t oldest;
    *ack = since != 0 && ax_db_todevice_oldest(txn, user_id, device_id, &oldest) == 0 && oldest <= since;
    return in.events;
}

void ax_cs_to_device_ack(ax_req_t *r, uint64_t since)
{
    const char *user_id = r->auth.user_id, *device_id = r->auth.device_id;
    if (device_id == NULL || strlen(user_id) >= 256 || strlen(device_id) >= 256)
        return;
    ack_t *a = ax_calloc(1, sizeof(*a));
    snprintf(a->user_id, sizeof(a->user_id), "%s", user_id);
    snprintf(a->device_id, sizeof(a->device_id), "%s", device_id);
    a->upto = since;
    ax_req_write_detached(r, ack_apply, a, free);
}
