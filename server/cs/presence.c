/*
 * presence.c -- presence (spec: Client-Server API "Presence";
 * presence.yaml): GET/PUT /presence/{userId}/status, marking users online
 * when they sync (set_presence), and idle handling.
 *
 * Stored presence changes take stream positions and wake the users who
 * share a room with the changed user.  Activity (each sync) is tracked in
 * memory; only changes of state are written: an online user idle for five
 * minutes becomes unavailable, one who stopped syncing for two minutes
 * goes offline.
 */
#include "server/cs/cs.h"
#include "common/strmap.h"
#include "core/rooms.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_MS (5ULL * 60 * 1000)
#define GONE_MS (2ULL * 60 * 1000)

typedef struct st_activity_t {
    char presence[16]; /* what is stored */
    uint64_t last_active_ms;
    uint64_t last_poll_ms;
} activity_t;

struct st_ax_presence_t {
    pthread_mutex_t mutex;
    ax_strmap_t users; /* user_id -> activity_t */
};

ax_presence_t *ax_presence_new(void)
{
    ax_presence_t *p = ax_calloc(1, sizeof(*p));
    pthread_mutex_init(&p->mutex, NULL);
    return p;
}

static void free_activity(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    free(value);
}

void ax_presence_free(ax_presence_t *p)
{
    if (p == NULL)
        return;
    ax_strmap_foreach(&p->users, free_activity, NULL);
    ax_strmap_dispose(&p->users);
    pthread_mutex_destroy(&p->mutex);
    free(p);
}

static bool valid_state(const char *s)
{
    return s != NULL && (strcmp(s, "online") == 0 || strcmp(s, "offline") == 0 || strcmp(s, "unavailable") == 0);
}

/* ---- writing ---- */

typedef struct st_presence_write_t {
    char user_id[256];
    char presence[16];
    char *status_msg; /* NULL: keep the stored one */
    bool set_status;
    uint64_t last_active_ms;
} presence_write_t;

static void presence_write_free(void *p)
{
    presence_write_t *w = p;
    free(w->status_msg);
    free(w);
}

static int notify_room(void *arg, const char *room_id, json_t *m)
{
    if (ax_streq(json_string_value(json_object_get(m, "membership")), "join"))
        ax_room_wake_members(arg, room_id);
    return 0;
}

static int presence_apply(ax_txn_t *txn, void *data)
{
    presence_write_t *w = data;
    json_t *old = NULL;
    ax_db_presence_get(txn, w->user_id, &old);
    json_t *rec = json_pack("{s:s, s:I}", "presence", w->presence, "last_active_ts", (json_int_t)w->last_active_ms);
    json_t *msg = json_object_get(old, "status_msg");
    if (w->set_status)
        msg = w->status_msg != NULL ? json_string(w->status_msg) : NULL;
    else if (msg != NULL)
        json_incref(msg);
    if (msg != NULL)
        json_object_set_new(rec, "status_msg", msg);
    int rc = ax_db_presence_put(txn, w->user_id, rec, ax_txn_next_stream_pos(txn));
    json_decref(rec);
    json_decref(old);
    if (rc != 0)
        return rc;
    /* everyone who shares a room hears about it, and the user themselves; other servers through the
     * federation sender, which keeps presence in memory (only the latest state matters) */
    ax_txn_notify(txn, w->user_id);
    char note[300];
    snprintf(note, sizeof(note), "%s%s", AX_FEDQ_NOTIFY_PRESENCE, w->user_id);
    ax_txn_notify(txn, note);
    return ax_db_user_rooms_foreach(txn, w->user_id, notify_room, txn);
}

static presence_write_t *write_new(const char *user_id, const char *presence, uint64_t last_active)
{
    presence_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", user_id);
    snprintf(w->presence, sizeof(w->presence), "%s", presence);
    w->last_active_ms = last_active;
    return w;
}

/* Records that the user polled (/sync) with 'set_presence' (NULL: online); writes on a change of state. */
void ax_presence_polled(ax_req_t *r, const char *set_presence)
{
    ax_presence_t *p = r->srv->presence;
    const char *want = set_presence != NULL ? set_presence : "online";
    uint64_t now = ax_now_ms();
    bool write = false;
    uint64_t last_active = now;
    pthread_mutex_lock(&p->mutex);
    activity_t *a = ax_strmap_get(&p->users, r->auth.user_id);
    if (a == NULL) {
        a = ax_calloc(1, sizeof(*a));
        snprintf(a->presence, sizeof(a->presence), "offline");
        ax_strmap_put(&p->users, r->auth.user_id, a);
    }
    a->last_poll_ms = now;
    if (strcmp(want, "offline") != 0) {
        if (strcmp(want, "online") == 0)
            a->last_active_ms = now;
        last_active = a->last_active_ms != 0 ? a->last_active_ms : now;
        if (strcmp(a->presence, want) != 0) {
            snprintf(a->presence, sizeof(a->presence), "%s", want);
            write = true;
        }
    }
    pthread_mutex_unlock(&p->mutex);
    if (write)
        ax_req_write_detached(r, presence_apply, write_new(r->auth.user_id, want, last_active), presence_write_free);
}

typedef struct st_idle_t {
    uint64_t now;
    presence_write_t **writes;
    size_t n, cap;
} idle_t;

static void check_idle(void *arg, const char *user_id, void *value)
{
    idle_t *i = arg;
    activity_t *a = value;
    const char *next = NULL;
    if (strcmp(a->presence, "offline") != 0 && i->now - a->last_poll_ms > GONE_MS)
        next = "offline";
    else if (strcmp(a->presence, "online") == 0 && i->now - a->last_active_ms > IDLE_MS)
        next = "unavailable";
    if (next == NULL)
        return;
    snprintf(a->presence, sizeof(a->presence), "%s", next);
    if (i->n == i->cap)
        i->writes = ax_realloc(i->writes, (i->cap = i->cap ? i->cap * 2 : 8) * sizeof(*i->writes));
    i->writes[i->n++] = write_new(user_id, next, a->last_active_ms);
}

/* Once a second (server housekeeping): idle users become unavailable, silent ones offline. */
void ax_presence_tick(ax_server_t *srv,
                      void (*submit)(ax_server_t *srv, ax_apply_fn apply, void *data, void (*free_data)(void *)))
{
    ax_presence_t *p = srv->presence;
    idle_t i = {ax_now_ms(), NULL, 0, 0};
    pthread_mutex_lock(&p->mutex);
    ax_strmap_foreach(&p->users, check_idle, &i);
    pthread_mutex_unlock(&p->mutex);
    for (size_t k = 0; k < i.n; ++k)
        submit(srv, presence_apply, i.writes[k], presence_write_free);
    free(i.writes);
}

/* ---- the endpoints ---- */

static void presence_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store presence");
    ax_reply_json_new(r, 200, json_object());
}

/* PUT /_matrix/client/v3/presence/{userId}/status */
int ax_cs_presence_put(ax_req_t *r)
{
    if (strcmp(r->params[0], r->auth.user_id) != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You can only set your own presence");
    json_t *body;
    const char *presence, *status_msg;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "presence", true, &presence) != 0 ||
        ax_field_string_or_reply(r, body, "status_msg", false, &status_msg) != 0)
        return 0;
    if (!valid_state(presence))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "presence must be online, offline or unavailable");
    if (status_msg != NULL && strlen(status_msg) > 1024)
        return ax_reply_error(r, AX_M_TOO_LARGE, "status_msg is too long");
    ax_presence_t *p = r->srv->presence;
    uint64_t now = ax_now_ms();
    pthread_mutex_lock(&p->mutex);
    activity_t *a = ax_strmap_get(&p->users, r->auth.user_id);
    if (a == NULL) {
        a = ax_calloc(1, sizeof(*a));
        ax_strmap_put(&p->users, r->auth.user_id, a);
    }
    snprintf(a->presence, sizeof(a->presence), "%s", presence);
    a->last_poll_ms = now;
    if (strcmp(presence, "online") == 0)
        a->last_active_ms = now;
    uint64_t last_active = a->last_active_ms != 0 ? a->last_active_ms : now;
    pthread_mutex_unlock(&p->mutex);
    presence_write_t *w = write_new(r->auth.user_id, presence, last_active);
    w->set_status = true;
    w->status_msg = status_msg != NULL ? ax_strdup(status_msg) : NULL;
    ax_req_write(r, presence_apply, presence_written, w, presence_write_free);
    return 0;
}

typedef struct st_shares_t {
    ax_txn_t *txn;
    const char *other;
    bool found;
} shares_t;

static int shares_cb(void *arg, const char *room_id, json_t *m)
{
    shares_t *s = arg;
    if (!ax_streq(json_string_value(json_object_get(m, "membership")), "join"))
        return 0;
    char theirs[16];
    ax_room_membership(s->txn, room_id, s->other, theirs, sizeof(theirs));
    s->found = strcmp(theirs, "join") == 0;
    return s->found;
}

bool ax_presence_shares_room(ax_txn_t *txn, const char *a, const char *b)
{
    if (strcmp(a, b) == 0)
        return true;
    shares_t s = {txn, b, false};
    ax_db_user_rooms_foreach(txn, a, shares_cb, &s);
    return s.found;
}

json_t *ax_presence_content(const json_t *rec, uint64_t now_ms)
{
    const char *presence = json_string_value(json_object_get(rec, "presence"));
    json_int_t last = json_integer_value(json_object_get(rec, "last_active_ts"));
    json_t *out = json_pack("{s:s}", "presence", presence != NULL ? presence : "offline");
    if (last > 0)
        json_object_set_new(out, "last_active_ago",
                            json_integer(now_ms > (uint64_t)last ? (json_int_t)(now_ms - (uint64_t)last) : 0));
    if (ax_streq(presence, "online"))
        json_object_set_new(out, "currently_active", json_boolean(now_ms - (uint64_t)last < IDLE_MS));
    json_t *msg = json_object_get(rec, "status_msg");
    if (json_is_string(msg))
        json_object_set(out, "status_msg", msg);
    return out;
}

/* GET /_matrix/client/v3/presence/{userId}/status */
int ax_cs_presence_get(ax_req_t *r)
{
    const char *user = r->params[0];
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *acct = NULL, *rec = NULL;
    int known = ax_db_account_get(txn, user, &acct);
    bool allowed = known == 0 && ax_presence_shares_room(txn, r->auth.user_id, user);
    if (allowed)
        ax_db_presence_get(txn, user, &rec);
    ax_db_read_end(txn);
    json_decref(acct);
    if (known != 0)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown user");
    if (!allowed)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You do not share a room with this user");
    json_t *out = ax_presence_content(rec, ax_now_ms());
    json_decref(rec);
    return ax_reply_json_new(r, 200, out);
}
