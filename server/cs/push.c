/*
 * push.c -- push rules, pushers and the notifications list (spec:
 * Client-Server API "Push Notifications"; pushrules.yaml, pusher.yaml,
 * notifications.yaml).
 *
 * Rules are edited on the writer (read, change, store in one transaction,
 * so concurrent edits cannot lose each other) with the pure functions of
 * core/push_rules.c; the result is the user's m.push_rules account data and
 * reaches their other clients through /sync.  Pushers are validated here
 * (URL policy included) and stored; delivery is server/pusher.c's.
 */
#include "server/cs/cs.h"
#include "core/push.h"
#include "server/outbound.h"

#include <stdlib.h>
#include <string.h>

#define NOTIFICATIONS_DEFAULT_LIMIT 20
#define NOTIFICATIONS_MAX_LIMIT     100
#define MAX_PUSHERS_PER_USER        32
#define PUSH_PATH                   "/_matrix/push/v1/notify"

/* ---- reading rules ---- */

/* The user's stored record (a new reference or NULL); -1 after replying on a database error. */
static int load_stored_or_reply(ax_req_t *r, json_t **stored)
{
    ax_txn_t *txn;
    *stored = NULL;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable"), -1;
    int rc = ax_db_accountdata_get(txn, r->auth.user_id, NULL, AX_PUSH_RULES_TYPE, stored, NULL);
    ax_db_read_end(txn);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return ax_reply_error(r, AX_M_INTERNAL, "Database error"), -1;
    return 0;
}

/* GET /_matrix/client/v3/pushrules/ */
int ax_cs_pushrules_get_all(ax_req_t *r)
{
    json_t *stored;
    if (load_stored_or_reply(r, &stored) != 0)
        return 0;
    json_t *rs = ax_push_ruleset(stored, r->auth.user_id);
    json_decref(stored);
    return ax_reply_json_new(r, 200, rs);
}

/* GET /_matrix/client/v3/pushrules/global/ */
int ax_cs_pushrules_get_global(ax_req_t *r)
{
    json_t *stored;
    if (load_stored_or_reply(r, &stored) != 0)
        return 0;
    json_t *rs = ax_push_ruleset(stored, r->auth.user_id);
    json_decref(stored);
    json_t *global = json_incref(json_object_get(rs, "global"));
    json_decref(rs);
    return ax_reply_json_new(r, 200, global);
}

/* The kind named by the first path parameter, or -1 after replying 400 M_INVALID_PARAM. */
static int kind_or_reply(ax_req_t *r)
{
    int kind = ax_push_kind_parse(r->params[0]);
    if (kind < 0)
        ax_reply_error(r, AX_M_INVALID_PARAM,
                       "Unknown push rule kind: use override, content, room, sender or underride");
    return kind;
}

/* Loads rule {kind}/{ruleId} of the requester; NULL after replying (404 when there is none). */
static json_t *rule_or_reply(ax_req_t *r)
{
    int kind = kind_or_reply(r);
    json_t *stored;
    if (kind < 0 || load_stored_or_reply(r, &stored) != 0)
        return NULL;
    json_t *rule = ax_push_rule_get(stored, r->auth.user_id, (ax_push_kind_t)kind, r->params[1]);
    json_decref(stored);
    if (rule == NULL)
        ax_reply_error(r, AX_M_NOT_FOUND, "The push rule was not found");
    return rule;
}

/* GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
int ax_cs_pushrule_get(ax_req_t *r)
{
    json_t *rule = rule_or_reply(r);
    return rule != NULL ? ax_reply_json_new(r, 200, rule) : 0;
}

/* GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled */
int ax_cs_pushrule_get_enabled(ax_req_t *r)
{
    json_t *rule = rule_or_reply(r);
    if (rule == NULL)
        return 0;
    json_t *out = json_pack("{s:O}", "enabled", json_object_get(rule, "enabled"));
    json_decref(rule);
    return ax_reply_json_new(r, 200, out);
}

/* GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions */
int ax_cs_pushrule_get_actions(ax_req_t *r)
{
    json_t *rule = rule_or_reply(r);
    if (rule == NULL)
        return 0;
    json_t *out = json_pack("{s:O}", "actions", json_object_get(rule, "actions"));
    json_decref(rule);
    return ax_reply_json_new(r, 200, out);
}

/* ---- changing rules (on the writer) ---- */

typedef enum { EDIT_PUT, EDIT_DELETE, EDIT_ENABLED, EDIT_ACTIONS } edit_op_t;

typedef struct st_rule_edit_t {
    edit_op_t op;
    char user_id[256];
    ax_push_kind_t kind;
    char *rule_id;
    json_t *body; /* EDIT_PUT: the rule; EDIT_ACTIONS: the actions array */
    char *before, *after;
    bool enabled;
    char msg[512];
} rule_edit_t;

static void rule_edit_free(void *p)
{
    rule_edit_t *e = p;
    free(e->rule_id);
    free(e->before);
    free(e->after);
    json_decref(e->body);
    free(e);
}

static int rule_edit_apply(ax_txn_t *txn, void *data)
{
    rule_edit_t *e = data;
    json_t *stored = NULL;
    int rc = ax_db_accountdata_get(txn, e->user_id, NULL, AX_PUSH_RULES_TYPE, &stored, NULL);
    if (rc != 0 && rc != AX_ENOTFOUND)
        return rc;
    e->msg[0] = '\0';
    switch (e->op) {
    case EDIT_PUT:
        rc = ax_push_rule_put(&stored, e->kind, e->rule_id, e->body, e->before, e->after, e->msg, sizeof(e->msg));
        break;
    case EDIT_DELETE:
        rc = ax_push_rule_delete(&stored, e->kind, e->rule_id, e->msg, sizeof(e->msg));
        break;
    case EDIT_ENABLED:
        rc = ax_push_rule_set_enabled(&stored, e->kind, e->rule_id, e->enabled, e->msg, sizeof(e->msg));
        break;
    case EDIT_ACTIONS:
        rc = ax_push_rule_set_actions(&stored, e->kind, e->rule_id, e->body, e->msg, sizeof(e->msg));
        break;
    }
    if (rc == 0)
        rc = ax_push_rules_store(txn, e->user_id, stored);
    json_decref(stored);
    return rc;
}

static void rule_edit_done(ax_req_t *r, int result, void *data)
{
    rule_edit_t *e = data;
    switch (result) {
    case 0:
        ax_reply_json_new(r, 200, json_object());
        break;
    case AX_ENOTFOUND:
        ax_reply_error(r, AX_M_NOT_FOUND, "The push rule was not found");
        break;
    case AX_EINVAL:
        ax_reply_error(r, AX_M_INVALID_PARAM, e->msg);
        break;
    case AX_ECONFLICT: /* spec: before/after naming no rule is 400 M_UNKNOWN */
        ax_reply_error(r, AX_M_UNKNOWN, e->msg);
        break;
    default:
        ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the push rules");
        break;
    }
}

static rule_edit_t *edit_new(ax_req_t *r, edit_op_t op, int kind)
{
    rule_edit_t *e = ax_calloc(1, sizeof(*e));
    e->op = op;
    e->kind = (ax_push_kind_t)kind;
    snprintf(e->user_id, sizeof(e->user_id), "%s", r->auth.user_id);
    e->rule_id = ax_strdup(r->params[1]);
    return e;
}

/* PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
int ax_cs_pushrule_put(ax_req_t *r)
{
    int kind = kind_or_reply(r);
    json_t *body, *actions, *conditions;
    const char *pattern;
    if (kind < 0 || ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_array_or_reply(r, body, "actions", true, &actions) != 0 ||
        ax_field_array_or_reply(r, body, "conditions", false, &conditions) != 0 ||
        ax_field_string_or_reply(r, body, "pattern", kind == AX_PUSH_CONTENT, &pattern) != 0)
        return 0;
    const char *before = ax_req_query(r, "before"), *after = ax_req_query(r, "after");
    rule_edit_t *e = edit_new(r, EDIT_PUT, kind);
    e->body = json_deep_copy(body);
    e->before = before != NULL ? ax_strdup(before) : NULL;
    e->after = after != NULL ? ax_strdup(after) : NULL;
    ax_req_write(r, rule_edit_apply, rule_edit_done, e, rule_edit_free);
    return 0;
}

/* DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
int ax_cs_pushrule_delete(ax_req_t *r)
{
    int kind = kind_or_reply(r);
    if (kind < 0)
        return 0;
    ax_req_write(r, rule_edit_apply, rule_edit_done, edit_new(r, EDIT_DELETE, kind), rule_edit_free);
    return 0;
}

/* PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled */
int ax_cs_pushrule_put_enabled(ax_req_t *r)
{
    int kind = kind_or_reply(r);
    json_t *body;
    bool enabled;
    if (kind < 0 || ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_bool_or_reply(r, body, "enabled", false, &enabled) != 0)
        return 0;
    if (json_object_get(body, "enabled") == NULL || json_is_null(json_object_get(body, "enabled")))
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing 'enabled'");
    rule_edit_t *e = edit_new(r, EDIT_ENABLED, kind);
    e->enabled = enabled;
    ax_req_write(r, rule_edit_apply, rule_edit_done, e, rule_edit_free);
    return 0;
}

/* PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions */
int ax_cs_pushrule_put_actions(ax_req_t *r)
{
    int kind = kind_or_reply(r);
    json_t *body, *actions;
    if (kind < 0 || ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_array_or_reply(r, body, "actions", true, &actions) != 0)
        return 0;
    rule_edit_t *e = edit_new(r, EDIT_ACTIONS, kind);
    e->body = json_deep_copy(actions);
    ax_req_write(r, rule_edit_apply, rule_edit_done, e, rule_edit_free);
    return 0;
}

/* ---- pushers ---- */

static int list_pusher(void *arg, const char *app_id, const char *pushkey, json_t *pusher)
{
    (void)app_id, (void)pushkey;
    json_t *out = json_deep_copy(pusher);
    /* ours, not the spec's */
    json_object_del(out, "device_id");
    json_object_del(out, "pushkey_ts");
    json_array_append_new(arg, out);
    return 0;
}

/* GET /_matrix/client/v3/pushers */
int ax_cs_pushers_get(ax_req_t *r)
{
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *list = json_array();
    ax_db_pusher_foreach(txn, r->auth.user_id, list_pusher, list);
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "pushers", list));
}

typedef struct st_pusher_write_t {
    char user_id[256];
    char app_id[256];
    char pushkey[1024];
    json_t *pusher; /* NULL: delete */
    bool append;
    bool too_many; /* set by the writer */
} pusher_write_t;

static void pusher_write_free(void *p)
{
    pusher_write_t *w = p;
    json_decref(w->pusher);
    free(w);
}

typedef struct st_others_t {
    const char *self;
    char (*users)[256];
    size_t n;
} others_t;

static int collect_other(void *arg, const char *user_id)
{
    others_t *o = arg;
    if (strcmp(user_id, o->self) == 0)
        return 0;
    o->users = ax_realloc(o->users, (o->n + 1) * sizeof(*o->users));
    snprintf(o->users[o->n++], sizeof(o->users[0]), "%s", user_id);
    return 0;
}

static int count_pusher(void *arg, const char *app_id, const char *pushkey, json_t *pusher)
{
    (void)app_id, (void)pushkey, (void)pusher;
    ++*(size_t *)arg;
    return 0;
}

static int pusher_apply(ax_txn_t *txn, void *data)
{
    pusher_write_t *w = data;
    w->too_many = false;
    if (w->pusher == NULL) {
        int rc = ax_db_pusher_del(txn, w->user_id, w->app_id, w->pushkey);
        return rc == AX_ENOTFOUND ? 0 : rc; /* deleting what is not there is fine */
    }
    json_t *old = NULL;
    if (ax_db_pusher_get(txn, w->user_id, w->app_id, w->pushkey, &old) == 0) {
        json_decref(old);
    } else {
        size_t n = 0;
        ax_db_pusher_foreach(txn, w->user_id, count_pusher, &n);
        if (n >= MAX_PUSHERS_PER_USER) {
            w->too_many = true;
            return 0;
        }
    }
    int rc = 0;
    if (!w->append) {
        /* spec: without append, other users' pushers of this app_id and pushkey go */
        others_t o = {w->user_id, NULL, 0};
        rc = ax_db_pusher_users(txn, w->app_id, w->pushkey, collect_other, &o);
        for (size_t i = 0; rc == 0 && i < o.n; ++i)
            rc = ax_db_pusher_del(txn, o.users[i], w->app_id, w->pushkey);
        free(o.users);
    }
    return rc != 0 ? rc : ax_db_pusher_put(txn, w->user_id, w->app_id, w->pushkey, w->pusher);
}

static void pusher_written(ax_req_t *r, int result, void *data)
{
    pusher_write_t *w = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the pusher");
    if (w->too_many)
        return (void)ax_reply_error(r, AX_M_INVALID_PARAM,
                                    ax_psprintf(r, "A user can have at most %d pushers", MAX_PUSHERS_PER_USER));
    ax_reply_json_new(r, 200, json_object());
}

/* True when 's' has control characters (they would break our composite keys). */
static bool has_control(const char *s)
{
    for (; *s != '\0'; ++s)
        if ((unsigned char)*s < 0x20)
            return true;
    return false;
}

/* Checks a push gateway URL; replies 400 M_INVALID_PARAM and returns -1 when it is not usable. */
static int gateway_url_or_reply(ax_req_t *r, const char *url)
{
    ax_url_t u;
    bool allow_private = r->srv->cfg->outbound_allow_private;
    if (ax_url_parse(url, &u) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "data.url is not a valid http(s) URL"), -1;
    /* spec: "MUST be an HTTPS URL with a path of /_matrix/push/v1/notify" */
    size_t plen = strcspn(u.path, "?");
    if (plen != strlen(PUSH_PATH) || strncmp(u.path, PUSH_PATH, plen) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "data.url must have the path " PUSH_PATH), -1;
    if (!u.https && !allow_private)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "data.url must be an https URL"), -1;
    if (!allow_private && ax_outbound_host_private(u.host))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "data.url points at a loopback or private address"), -1;
    return 0;
}

/* POST /_matrix/client/v3/pushers/set */
int ax_cs_pushers_set(ax_req_t *r)
{
    json_t *body, *data = NULL;
    const char *app_id, *pushkey, *app_name = NULL, *device_name = NULL, *lang = NULL, *profile_tag = NULL;
    bool append;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_string_or_reply(r, body, "app_id", true, &app_id) != 0 ||
        ax_field_string_or_reply(r, body, "pushkey", true, &pushkey) != 0 ||
        ax_field_bool_or_reply(r, body, "append", false, &append) != 0)
        return 0;
    /* 'kind' must be there; null (which the field helpers read as absent) deletes */
    json_t *kind = json_object_get(body, "kind");
    if (kind == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "Missing 'kind'");
    if (!json_is_null(kind) && !json_is_string(kind))
        return ax_reply_error(r, AX_M_BAD_JSON, "'kind' must be a string or null");
    if (strlen(app_id) == 0 || strlen(app_id) > 64 || has_control(app_id))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "app_id must be 1 to 64 characters");
    if (strlen(pushkey) == 0 || strlen(pushkey) > 512 || has_control(pushkey))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "pushkey must be 1 to 512 bytes");

    pusher_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    snprintf(w->app_id, sizeof(w->app_id), "%s", app_id);
    snprintf(w->pushkey, sizeof(w->pushkey), "%s", pushkey);
    w->append = append;
    if (json_is_null(kind)) {
        ax_req_write(r, pusher_apply, pusher_written, w, pusher_write_free);
        return 0;
    }
    free(w);

    const char *k = json_string_value(kind);
    if (strcmp(k, "email") == 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "This server does not send email notifications");
    if (strcmp(k, "http") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Unknown pusher kind: only http is supported");
    const char *url, *format;
    if (ax_field_string_or_reply(r, body, "app_display_name", true, &app_name) != 0 ||
        ax_field_string_or_reply(r, body, "device_display_name", true, &device_name) != 0 ||
        ax_field_string_or_reply(r, body, "lang", true, &lang) != 0 ||
        ax_field_string_or_reply(r, body, "profile_tag", false, &profile_tag) != 0 ||
        ax_field_object_or_reply(r, body, "data", true, &data) != 0 ||
        ax_field_string_or_reply(r, data, "url", true, &url) != 0 ||
        ax_field_string_or_reply(r, data, "format", false, &format) != 0)
        return 0;
    if (format != NULL && strcmp(format, "event_id_only") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "data.format must be \"event_id_only\" when given");
    if (gateway_url_or_reply(r, url) != 0)
        return 0;

    w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    snprintf(w->app_id, sizeof(w->app_id), "%s", app_id);
    snprintf(w->pushkey, sizeof(w->pushkey), "%s", pushkey);
    w->append = append;
    w->pusher = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:I}", "kind", "http", "app_id", app_id, "pushkey",
                          pushkey, "app_display_name", app_name, "device_display_name", device_name, "lang", lang,
                          "data", data, "device_id", r->auth.device_id, "pushkey_ts", (json_int_t)(ax_now_ms() / 1000));
    if (profile_tag != NULL)
        json_object_set_new(w->pusher, "profile_tag", json_string(profile_tag));
    ax_req_write(r, pusher_apply, pusher_written, w, pusher_write_free);
    return 0;
}

/* ---- GET /notifications ---- */

typedef struct st_notifs_t {
    ax_txn_t *txn;
    const char *user_id;
    const char *device_id;
    bool only_highlight;
    size_t limit;
    json_t *list;
    uint64_t next; /* the position to continue below, 0 when done */
    uint64_t now;
} notifs_t;

static int notif_cb(void *arg, uint64_t pos, const ax_notif_t *n)
{
    notifs_t *s = arg;
    if (json_array_size(s->list) == s->limit) {
        s->next = pos;
        return 1;
    }
    if (s->only_highlight && !n->highlight)
        return 0;
    char eid[256];
    json_t *ev = NULL;
    ax_event_rec_t rec;
    /* the position names the event through the global stream index */
    if (ax_db_stream_event_at(s->txn, pos, eid, sizeof(eid)) == 0)
        ev = ax_event_load_client(s->txn, eid, s->user_id, s->device_id, &rec);
    if (ev == NULL)
        return 0;
    json_object_del(ev, "room_id");
    json_t *actions = json_loads(n->actions, 0, NULL);
    ax_unread_t u;
    bool read = ax_db_unread_get(s->txn, s->user_id, n->room_id, n->thread, &u) == 0 && u.read_pos >= pos;
    json_array_append_new(s->list,
                          json_pack("{s:o, s:o, s:b, s:s, s:I}", "actions", actions != NULL ? actions : json_array(),
                                    "event", ev, "read", read, "room_id", n->room_id, "ts", (json_int_t)n->ts));
    return 0;
}

/* GET /_matrix/client/v3/notifications */
int ax_cs_notifications(ax_req_t *r)
{
    const char *from = ax_req_query(r, "from"), *limit = ax_req_query(r, "limit"), *only = ax_req_query(r, "only");
    uint64_t start = UINT64_MAX, lim = NOTIFICATIONS_DEFAULT_LIMIT;
    if (from != NULL && (ax_parse_u64(from, &start) != 0 || start == 0))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid 'from' token");
    if (limit != NULL && ax_parse_u64(limit, &lim) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'limit' must be a non-negative integer");
    if (only != NULL && strcmp(only, "highlight") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "'only' can only be \"highlight\"");
    if (lim == 0 || lim > NOTIFICATIONS_MAX_LIMIT)
        lim = lim == 0 ? NOTIFICATIONS_DEFAULT_LIMIT : NOTIFICATIONS_MAX_LIMIT;
    notifs_t s = {.user_id = r->auth.user_id,
                  .device_id = r->auth.device_id,
                  .only_highlight = only != NULL,
                  .limit = lim,
                  .list = json_array(),
                  .now = ax_now_ms()};
    if (ax_db_read_begin(r->srv->db, &s.txn) != 0) {
        json_decref(s.list);
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    }
    /* newest first; 'from' is the position to continue at */
    ax_db_notif_scan(s.txn, s.user_id, start, true, notif_cb, &s);
    ax_db_read_end(s.txn);
    json_t *out = json_pack("{s:o}", "notifications", s.list);
    if (s.next != 0)
        json_object_set_new(out, "next_token", json_string(ax_psprintf(r, "%llu", (unsigned long long)s.next)));
    return ax_reply_json_new(r, 200, out);
}
