/*
 * account_data.c -- client account data, global and per room, and room
 * tags (spec: Client-Server API "Client config", "Room tagging";
 * account-data.yaml, tags.yaml).  Every change takes a stream position so
 * /sync delivers it, and wakes the user's long-polls.
 */
#include "server/cs/cs.h"
#include "core/push.h"

#include <stdlib.h>
#include <string.h>

typedef struct st_ad_write_t {
    char user_id[256];
    char room_id[256];
    char type[256];
    json_t *content; /* for tags: the tag content, or NULL to delete */
    char tag[256];
    bool is_tag;
} ad_write_t;

static void ad_write_free(void *p)
{
    ad_write_t *w = p;
    json_decref(w->content);
    free(w);
}

static int ad_apply(ax_txn_t *txn, void *data)
{
    ad_write_t *w = data;
    json_t *content = NULL;
    if (w->is_tag) {
        /* tags are the room's m.tag account data: {"tags": {tag: {order?}}} */
        if (ax_db_accountdata_get(txn, w->user_id, w->room_id, "m.tag", &content, NULL) != 0)
            content = json_object();
        json_t *tags = json_object_get(content, "tags");
        if (!json_is_object(tags)) {
            tags = json_object();
            json_object_set_new(content, "tags", tags);
        }
        if (w->content != NULL)
            json_object_set(tags, w->tag, w->content);
        else
            json_object_del(tags, w->tag);
    } else {
        content = json_incref(w->content);
    }
    int rc = ax_db_accountdata_put(txn, w->user_id, w->room_id, w->type, content, ax_txn_next_stream_pos(txn));
    json_decref(content);
    if (rc == 0)
        ax_txn_notify(txn, w->user_id);
    return rc;
}

static void ad_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the account data");
    ax_reply_json_new(r, 200, json_object());
}

/* Common checks: own user only, valid room ID, type length. NULL room_id for global. */
static int check_target_or_reply(ax_req_t *r, const char *user_id, const char *room_id, const char *type)
{
    if (strcmp(user_id, r->auth.user_id) != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You can only access your own account data"), -1;
    if (room_id != NULL && (room_id[0] != '!' || strlen(room_id) > 255))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid room ID"), -1;
    if (type != NULL && (type[0] == '\0' || strlen(type) > 255))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid account data type"), -1;
    return 0;
}

static int put(ax_req_t *r, const char *room_id, const char *type)
{
    if (check_target_or_reply(r, r->params[0], room_id, type) != 0)
        return 0;
    if (strcmp(type, "m.fully_read") == 0 || strcmp(type, "m.push_rules") == 0)
        return ax_reply_error_status(r, 405, AX_M_BAD_JSON, ax_psprintf(r, "Cannot set %s through this API", type));
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    ad_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    snprintf(w->room_id, sizeof(w->room_id), "%s", room_id != NULL ? room_id : "");
    snprintf(w->type, sizeof(w->type), "%s", type);
    w->content = json_deep_copy(body);
    ax_req_write(r, ad_apply, ad_written, w, ad_write_free);
    return 0;
}

static int get(ax_req_t *r, const char *room_id, const char *type)
{
    if (check_target_or_reply(r, r->params[0], room_id, type) != 0)
        return 0;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *content = NULL;
    int rc = ax_db_accountdata_get(txn, r->auth.user_id, room_id, type, &content, NULL);
    ax_db_read_end(txn);
    if (room_id == NULL && strcmp(type, AX_PUSH_RULES_TYPE) == 0 && (rc == 0 || rc == AX_ENOTFOUND)) {
        /* push rules are stored as changes to the defaults (core/push.h); everyone has a rule set */
        json_t *rules = ax_push_ruleset(content, r->auth.user_id);
        json_decref(content);
        return ax_reply_json_new(r, 200, rules);
    }
    if (rc == AX_ENOTFOUND)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Account data not found");
    if (rc != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    return ax_reply_json_new(r, 200, content);
}

/* PUT /_matrix/client/v3/user/{userId}/account_data/{type} */
int ax_cs_account_data_put(ax_req_t *r)
{
    return put(r, NULL, r->params[1]);
}

/* GET /_matrix/client/v3/user/{userId}/account_data/{type} */
int ax_cs_account_data_get(ax_req_t *r)
{
    return get(r, NULL, r->params[1]);
}

/* PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type} */
int ax_cs_room_account_data_put(ax_req_t *r)
{
    return put(r, r->params[1], r->params[2]);
}

/* GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type} */
int ax_cs_room_account_data_get(ax_req_t *r)
{
    return get(r, r->params[1], r->params[2]);
}

/* ---- tags ---- */

/* GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags */
int ax_cs_tags_get(ax_req_t *r)
{
    if (check_target_or_reply(r, r->params[0], r->params[1], NULL) != 0)
        return 0;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *content = NULL;
    ax_db_accountdata_get(txn, r->auth.user_id, r->params[1], "m.tag", &content, NULL);
    ax_db_read_end(txn);
    json_t *tags = json_object_get(content, "tags");
    json_t *out = json_object();
    json_object_set_new(out, "tags", json_is_object(tags) ? json_incref(tags) : json_object());
    json_decref(content);
    return ax_reply_json_new(r, 200, out);
}

static int tag_write(ax_req_t *r, json_t *content)
{
    const char *tag = r->params[2];
    if (strlen(tag) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Tag names are at most 255 bytes");
    ad_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    snprintf(w->room_id, sizeof(w->room_id), "%s", r->params[1]);
    snprintf(w->type, sizeof(w->type), "m.tag");
    snprintf(w->tag, sizeof(w->tag), "%s", tag);
    w->is_tag = true;
    w->content = content;
    ax_req_write(r, ad_apply, ad_written, w, ad_write_free);
    return 0;
}

/* PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag} */
int ax_cs_tags_put(ax_req_t *r)
{
    if (check_target_or_reply(r, r->params[0], r->params[1], NULL) != 0)
        return 0;
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    json_t *order = json_object_get(body, "order");
    if (order != NULL && !json_is_number(order))
        return ax_reply_error(r, AX_M_BAD_JSON, "'order' must be a number");
    return tag_write(r, json_deep_copy(body));
}

/* DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag} */
int ax_cs_tags_delete(ax_req_t *r)
{
    if (check_target_or_reply(r, r->params[0], r->params[1], NULL) != 0)
        return 0;
    return tag_write(r, NULL);
}
