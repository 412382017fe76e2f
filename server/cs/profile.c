/*
 * profile.c -- user profiles (spec: Client-Server API "Profiles";
 * profile.yaml): the whole profile, and single fields including the
 * extended ones of v1.16 (m.tz and namespaced custom keys).  Profiles are
 * public; only their owner may change them.
 */
#include "server/cs/cs.h"
#include "core/events.h"
#include "federation/federation.h"

#include <stdlib.h>
#include <string.h>

#define PROFILE_MAX 65536
#define KEY_MAX     255

/* avatar_url, displayname, m.tz, or a namespaced key like com.example.field */
static bool valid_key(const char *k)
{
    if (strcmp(k, "avatar_url") == 0 || strcmp(k, "displayname") == 0 || strcmp(k, "m.tz") == 0)
        return true;
    /* [a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+ */
    int parts = 0;
    const char *p = k;
    for (;;) {
        if (!(*p >= 'a' && *p <= 'z'))
            return false;
        while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
            ++p;
        ++parts;
        if (*p == '\0')
            return parts >= 2;
        if (*p != '.')
            return false;
        ++p;
    }
}

/* ---- Remote users: asked over federation (query/profile) ---- */

static void remote_done(ax_req_t *r, ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    if (r != NULL) {
        const char *field = r->route_data;
        if (task->result != 0) {
            ax_reply_error_status(r, 502, AX_M_UNKNOWN, ax_psprintf(r, "Could not get the profile: %s", fr->error));
        } else if (fr->status == 200 && json_is_object(fr->json)) {
            json_t *v = field != NULL ? json_object_get(fr->json, field) : NULL;
            if (field == NULL)
                ax_reply_json_new(r, 200, json_incref(fr->json));
            else if (v == NULL || json_is_null(v))
                ax_reply_error(r, AX_M_NOT_FOUND, "No such profile field");
            else
                ax_reply_json_new(r, 200, json_pack("{s:O}", field, v));
        } else if (fr->status == 404) {
            ax_reply_error(r, AX_M_NOT_FOUND, "Profile not found");
        } else if (fr->status == 403) {
            ax_reply_error(r, AX_M_FORBIDDEN, "The user's server does not share this profile");
        } else {
            ax_reply_error_status(r, 502, AX_M_UNKNOWN,
                                  ax_psprintf(r, "The user's server answered HTTP %d", fr->status));
        }
    }
    ax_fed_request_free(fr);
}

/* Asks the user's server for the profile (or one 'field' of it); replies later.  Returns 0. */
static int remote_profile(ax_req_t *r, const char *user_id, const char *server, const char *field)
{
    if (r->srv->fed == NULL)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Profile not found (federation is disabled)");
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v1/query/profile?user_id=");
    ax_fed_urlencode(&path, user_id);
    if (field != NULL) {
        ax_buf_puts(&path, "&field=");
        ax_fed_urlencode(&path, field);
    }
    ax_fed_request_t *fr = ax_fed_request_new(server, "GET", path.base, NULL);
    ax_buf_dispose(&path);
    r->route_data = field != NULL ? ax_pstrdup(r, field) : NULL;
    ax_req_bind_task(r, &fr->super, remote_done);
    ax_fed_submit(r->srv->fed, fr);
    return 0;
}

/* ---- Local users ---- */

/*
 * Reads the stored profile of a local user (new reference), or replies 404
 * when there is no such user.  For a remote user it asks their server
 * (reading 'field' only, when not NULL), replies when the answer comes, and
 * returns NULL too.
 */
static json_t *load_or_reply(ax_req_t *r, const char *user_id, const char *field)
{
    const char *server = ax_id_domain(user_id);
    if (!ax_id_is_valid_user_id(user_id) || server == NULL) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid user ID");
        return NULL;
    }
    if (strcmp(server, r->srv->cfg->server_name) != 0) {
        remote_profile(r, user_id, server, field);
        return NULL;
    }
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return NULL;
    }
    json_t *acct = NULL, *profile = NULL;
    int rc = ax_db_account_get(txn, user_id, &acct);
    if (rc == 0 && ax_db_profile_get(txn, user_id, &profile) != 0)
        profile = json_object();
    ax_db_read_end(txn);
    json_decref(acct);
    if (rc != 0) {
        ax_reply_error(r, AX_M_NOT_FOUND, "Profile not found");
        return NULL;
    }
    return profile;
}

/* GET /_matrix/client/v3/profile/{userId} */
int ax_cs_profile_get(ax_req_t *r)
{
    json_t *profile = load_or_reply(r, r->params[0], NULL);
    if (profile == NULL)
        return 0;
    return ax_reply_json_new(r, 200, profile);
}

/* GET /_matrix/client/v3/profile/{userId}/{keyName} */
int ax_cs_profile_get_field(ax_req_t *r)
{
    const char *key = r->params[1];
    if (!valid_key(key))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid profile key");
    json_t *profile = load_or_reply(r, r->params[0], key);
    if (profile == NULL)
        return 0;
    json_t *v = json_object_get(profile, key);
    if (v == NULL) {
        json_decref(profile);
        return ax_reply_error(r, AX_M_NOT_FOUND, "No such profile field");
    }
    json_t *out = json_object();
    json_object_set(out, key, v);
    json_decref(profile);
    return ax_reply_json_new(r, 200, out);
}

typedef struct st_profile_set_t {
    const ax_origin_t *origin;
    char user_id[256];
    char key[KEY_MAX + 1];
    json_t *value; /* NULL: delete */
    bool too_large;
    ax_txn_t *txn; /* during apply */
} profile_set_t;

static void profile_set_free(void *p)
{
    profile_set_t *s = p;
    json_decref(s->value);
    free(s);
}

static int refresh_room(void *arg, const char *room_id, json_t *membership)
{
    profile_set_t *s = arg;
    if (!ax_streq(json_string_value(json_object_get(membership, "membership")), "join"))
        return 0;
    int rc = ax_cs_member_refresh(s->txn, s->origin, room_id, s->user_id);
    /* a room whose rules refuse the update keeps the old name; the profile still changes */
    return rc == AX_EFORBIDDEN ? 0 : rc;
}

static int profile_set_apply(ax_txn_t *txn, void *data)
{
    profile_set_t *s = data;
    s->txn = txn;
    json_t *profile = NULL;
    int rc = ax_db_profile_get(txn, s->user_id, &profile);
    if (rc == AX_ENOTFOUND)
        profile = json_object();
    else if (rc != 0)
        return rc;
    if (s->value != NULL)
        json_object_set(profile, s->key, s->value);
    else
        json_object_del(profile, s->key);
    char *text = json_dumps(profile, JSON_COMPACT);
    s->too_large = text == NULL || strlen(text) > PROFILE_MAX;
    free(text);
    rc = s->too_large ? 0 : ax_db_profile_put(txn, s->user_id, profile);
    json_decref(profile);
    if (rc != 0 || s->too_large)
        return rc;
    /* the name and picture shown in rooms are the member events': update them */
    if (strcmp(s->key, "displayname") == 0 || strcmp(s->key, "avatar_url") == 0)
        rc = ax_db_user_rooms_foreach(txn, s->user_id, refresh_room, s);
    return rc;
}

static void profile_set_written(ax_req_t *r, int result, void *data)
{
    profile_set_t *s = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not update the profile");
    if (s->too_large)
        return (void)ax_reply_error(r, AX_M_PROFILE_TOO_LARGE, "The profile would exceed 64 KiB");
    ax_reply_json_new(r, 200, json_object());
}

/* Common checks of PUT/DELETE; returns the key or NULL after replying. */
static const char *writable_key_or_reply(ax_req_t *r)
{
    const char *key = r->params[1];
    if (strlen(key) > KEY_MAX) {
        ax_reply_error(r, AX_M_KEY_TOO_LARGE, "Profile keys are at most 255 bytes");
        return NULL;
    }
    if (!valid_key(key)) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid profile key");
        return NULL;
    }
    if (strcmp(r->params[0], r->auth.user_id) != 0) {
        ax_reply_error(r, AX_M_FORBIDDEN, "You can only change your own profile");
        return NULL;
    }
    return key;
}

static bool valid_mxc(const char *s)
{
    /* mxc://<server-name>/<media-id> */
    if (strncmp(s, "mxc://", 6) != 0)
        return false;
    const char *slash = strchr(s + 6, '/');
    return slash != NULL && slash > s + 6 && slash[1] != '\0' && strchr(slash + 1, '/') == NULL;
}

/* PUT /_matrix/client/v3/profile/{userId}/{keyName} */
int ax_cs_profile_put_field(ax_req_t *r)
{
    const char *key = writable_key_or_reply(r);
    json_t *body;
    if (key == NULL || ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    json_t *v = json_object_get(body, key);
    if (v == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, ax_psprintf(r, "Missing '%s'", key));
    if (strcmp(key, "displayname") == 0 || strcmp(key, "m.tz") == 0) {
        if (!json_is_string(v) && !json_is_null(v))
            return ax_reply_error(r, AX_M_BAD_JSON, ax_psprintf(r, "'%s' must be a string", key));
        if (json_is_string(v) && json_string_length(v) > 256)
            return ax_reply_error(r, AX_M_TOO_LARGE, ax_psprintf(r, "'%s' is too long", key));
    } else if (strcmp(key, "avatar_url") == 0) {
        if (!json_is_null(v) && !(json_is_string(v) && (json_string_length(v) == 0 || valid_mxc(json_string_value(v)))))
            return ax_reply_error(r, AX_M_BAD_JSON, "'avatar_url' must be an mxc:// URI");
        if (json_is_string(v) && json_string_length(v) > 1000)
            return ax_reply_error(r, AX_M_TOO_LARGE, "'avatar_url' is too long");
    }
    profile_set_t *s = ax_calloc(1, sizeof(*s));
    s->origin = &r->srv->origin;
    snprintf(s->user_id, sizeof(s->user_id), "%s", r->auth.user_id);
    snprintf(s->key, sizeof(s->key), "%s", key);
    /* null (and an empty avatar_url) clears the field, as clients use it */
    bool clear = json_is_null(v) || (strcmp(key, "avatar_url") == 0 && json_string_length(v) == 0);
    s->value = clear ? NULL : json_deep_copy(v);
    ax_req_write(r, profile_set_apply, profile_set_written, s, profile_set_free);
    return 0;
}

/* DELETE /_matrix/client/v3/profile/{userId}/{keyName} */
int ax_cs_profile_delete_field(ax_req_t *r)
{
    const char *key = writable_key_or_reply(r);
    if (key == NULL)
        return 0;
    profile_set_t *s = ax_calloc(1, sizeof(*s));
    s->origin = &r->srv->origin;
    snprintf(s->user_id, sizeof(s->user_id), "%s", r->auth.user_id);
    snprintf(s->key, sizeof(s->key), "%s", key);
    ax_req_write(r, profile_set_apply, profile_set_written, s, profile_set_free);
    return 0;
}
