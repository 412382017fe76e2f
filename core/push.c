/*
 * push.c -- push rule evaluation in the event pipeline (spec: Client-Server
 * API "Push Notifications": "Server behaviour", "Receiving notifications",
 * "Marking notifications as read"; "Threaded read receipts").
 *
 * ax_room_send() calls ax_push_event() in the writer's transaction for every
 * stored event, so the unread counts change in the same commit as the event
 * and appear in the same /sync.  Per event: the local joined members (a
 * cached list per room and state group), each member's compiled rules (a
 * cached set per user; users who never changed a rule share the compiled
 * defaults), one evaluation each, and for each notification two small
 * writes (the count, the notifications list) plus one queue entry per
 * pusher.
 *
 * The caches live on the writer thread and are checked at every event
 * against two numbers: the writer's abort count (a rolled-back transaction
 * may have fed them) and the push generation in storage, which every change
 * to push rules or pushers bumps.
 */
#include "core/push.h"
#include "common/strmap.h"
#include "core/events.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREAD_HOPS       3 /* spec: "a maximum of 3 hops is recommended" */
#define DAY_MS                (24ULL * 60 * 60 * 1000)
#define NOTIF_KEEP_MS         DAY_MS        /* GET /notifications lists plain notifications for a day, */
#define HIGHLIGHT_KEEP_MS     (30 * DAY_MS) /* and highlights (mentions) for 30 days */
#define NOTIF_PRUNE_BATCH     64
#define CACHE_MAX_USERS       100000
#define CACHE_MAX_ROOMS       20000
#define MAX_SENDER_PERM_MEMOS 4

typedef struct st_pusher_ref_t {
    char *app_id;
    char *pushkey;
} pusher_ref_t;

/* What the engine knows about a local user. */
typedef struct st_user_t {
    ax_push_rules_t *rules; /* own compiled rules, or NULL for the shared defaults */
    pusher_ref_t *pushers;
    size_t npushers;
    uint64_t prune_at; /* when the user's oldest notifications may next be old enough to delete */
} user_t;

/* What the engine knows about a room at one state group. */
typedef struct st_room_t {
    uint64_t state_group;
    char **members; /* local joined users */
    size_t nmembers;
    uint64_t joined;   /* all joined users, local or not */
    ax_strmap_t names; /* user_id -> display name ("" for none), filled on demand */
} room_t;

struct st_ax_push_t {
    char *suffix; /* ":server_name": what local user IDs end with */
    size_t suffix_len;
    ax_push_rules_t *defaults;
    ax_strmap_t users; /* user_id -> user_t */
    ax_strmap_t rooms; /* room_id -> room_t */
    uint64_t epoch, gen;
    _Atomic bool queued;
};

static void user_free(user_t *u)
{
    if (u == NULL)
        return;
    ax_push_rules_free(u->rules);
    for (size_t i = 0; i < u->npushers; ++i) {
        free(u->pushers[i].app_id);
        free(u->pushers[i].pushkey);
    }
    free(u->pushers);
    free(u);
}

static void free_name(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    free(value);
}

static void room_free(room_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nmembers; ++i)
        free(r->members[i]);
    free(r->members);
    ax_strmap_foreach(&r->names, free_name, NULL);
    ax_strmap_dispose(&r->names);
    free(r);
}

static void free_user_entry(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    user_free(value);
}

static void free_room_entry(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    room_free(value);
}

static void flush_users(ax_push_t *p)
{
    ax_strmap_foreach(&p->users, free_user_entry, NULL);
    ax_strmap_clear(&p->users);
}

static void flush_rooms(ax_push_t *p)
{
    ax_strmap_foreach(&p->rooms, free_room_entry, NULL);
    ax_strmap_clear(&p->rooms);
}

ax_push_t *ax_push_new(const char *server_name)
{
    ax_push_t *p = ax_calloc(1, sizeof(*p));
    p->suffix = ax_asprintf(":%s", server_name);
    p->suffix_len = strlen(p->suffix);
    p->defaults = ax_push_rules_compile(NULL);
    p->epoch = UINT64_MAX;
    return p;
}

void ax_push_free(ax_push_t *p)
{
    if (p == NULL)
        return;
    flush_users(p);
    flush_rooms(p);
    ax_strmap_dispose(&p->users);
    ax_strmap_dispose(&p->rooms);
    ax_push_rules_free(p->defaults);
    free(p->suffix);
    free(p);
}

void ax_push_attach(ax_push_t *push, ax_writer_t *writer)
{
    ax_writer_set_state(writer, push);
}

ax_push_t *ax_push_of(ax_txn_t *txn)
{
    return ax_txn_writer_state(txn); /* the writer's one attached state is the push engine */
}

bool ax_push_take_queued(ax_push_t *p)
{
    return atomic_exchange(&p->queued, false);
}

static bool is_local(const ax_push_t *p, const char *user_id)
{
    size_t n = strlen(user_id);
    return n > p->suffix_len && memcmp(user_id + n - p->suffix_len, p->suffix, p->suffix_len) == 0;
}

/* Drops what a rolled-back transaction or a rule/pusher change may have made stale. */
static void validate_caches(ax_push_t *p, ax_txn_t *txn)
{
    uint64_t epoch = ax_txn_epoch(txn), gen = ax_db_push_gen(txn);
    if (epoch != p->epoch) {
        flush_users(p);
        flush_rooms(p);
        p->epoch = epoch;
        p->gen = gen;
    } else if (gen != p->gen) {
        flush_users(p);
        p->gen = gen;
    }
    if (p->users.size > CACHE_MAX_USERS)
        flush_users(p);
    if (p->rooms.size > CACHE_MAX_ROOMS)
        flush_rooms(p);
}

static int collect_pusher(void *arg, const char *app_id, const char *pushkey, json_t *pusher)
{
    (void)pusher;
    user_t *u = arg;
    u->pushers = ax_realloc(u->pushers, (u->npushers + 1) * sizeof(pusher_ref_t));
    u->pushers[u->npushers].app_id = ax_strdup(app_id);
    u->pushers[u->npushers].pushkey = ax_strdup(pushkey);
    u->npushers++;
    return 0;
}

static user_t *user_get(ax_push_t *p, ax_txn_t *txn, const char *user_id)
{
    user_t *u = ax_strmap_get(&p->users, user_id);
    if (u != NULL)
        return u;
    u = ax_calloc(1, sizeof(*u));
    json_t *stored = NULL;
    if (ax_db_accountdata_get(txn, user_id, NULL, AX_PUSH_RULES_TYPE, &stored, NULL) == 0) {
        u->rules = ax_push_rules_compile(stored);
        json_decref(stored);
    }
    ax_db_pusher_foreach(txn, user_id, collect_pusher, u);
    ax_strmap_put(&p->users, user_id, u);
    return u;
}

typedef struct st_room_build_t {
    ax_push_t *p;
    room_t *room;
    size_t cap;
} room_build_t;

static int collect_member(void *arg, const char *user_id, const char *membership)
{
    room_build_t *b = arg;
    if (strcmp(membership, "join") != 0)
        return 0;
    b->room->joined++;
    if (!is_local(b->p, user_id))
        return 0;
    if (b->room->nmembers == b->cap)
        b->room->members = ax_realloc(b->room->members, (b->cap = b->cap ? b->cap * 2 : 16) * sizeof(char *));
    b->room->members[b->room->nmembers++] = ax_strdup(user_id);
    return 0;
}

static room_t *room_get(ax_push_t *p, ax_txn_t *txn, const char *room_id, uint64_t state_group)
{
    room_t *r = ax_strmap_get(&p->rooms, room_id);
    if (r != NULL && r->state_group == state_group)
        return r;
    room_free(ax_strmap_del(&p->rooms, room_id));
    r = ax_calloc(1, sizeof(*r));
    r->state_group = state_group;
    room_build_t b = {p, r, 0};
    ax_db_room_members_foreach(txn, room_id, collect_member, &b);
    ax_strmap_put(&p->rooms, room_id, r);
    return r;
}

/* ---- threads ---- */

void ax_push_thread_of(ax_txn_t *txn, const json_t *pdu, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *ev = json_incref((json_t *)pdu);
    for (int hop = 0; hop <= MAX_THREAD_HOPS && ev != NULL; ++hop) {
        json_t *rel = json_object_get(json_object_get(ev, "content"), "m.relates_to");
        const char *type = json_string_value(json_object_get(rel, "rel_type"));
        const char *parent = json_string_value(json_object_get(rel, "event_id"));
        if (type == NULL || parent == NULL)
            break;
        if (strcmp(type, "m.thread") == 0) {
            snprintf(out, cap, "%s", parent);
            break;
        }
        /* another relation: the event is in its parent's thread */
        json_t *next = NULL;
        if (hop < MAX_THREAD_HOPS)
            ax_db_event_get(txn, parent, &next, NULL);
        json_decref(ev);
        ev = next;
    }
    json_decref(ev);
}

/* ---- counts ---- */

typedef struct st_recount_t {
    const char *room_id;
    const char *thread;
    ax_unread_t *u;
} recount_t;

static int recount_cb(void *arg, uint64_t pos, const ax_notif_t *n)
{
    recount_t *rc = arg;
    if (strcmp(n->room_id, rc->room_id) == 0 && strcmp(n->thread, rc->thread) == 0) {
        rc->u->notifications++;
        rc->u->highlights += n->highlight;
        rc->u->last_pos = pos;
    }
    return 0;
}

/*
 * Moves the read mark of (user, room, thread) to 'pos' and recounts.  The
 * common case (read up to the newest notification or beyond) needs no
 * scan; reading up to an older event counts the user's notifications after
 * it.  Sets '*changed' when the counts changed.
 */
static int mark_read(ax_txn_t *txn, const char *user_id, const char *room_id, const char *thread, uint64_t pos,
                     bool *changed)
{
    ax_unread_t u;
    int rc = ax_db_unread_get(txn, user_id, room_id, thread, &u);
    if (rc == AX_ENOTFOUND)
        return 0;
    if (rc != 0 || pos <= u.read_pos)
        return rc;
    uint32_t before_n = u.notifications, before_h = u.highlights;
    u.read_pos = pos;
    if (pos >= u.last_pos) {
        u.notifications = u.highlights = 0;
    } else {
        u.notifications = u.highlights = 0;
        recount_t r = {room_id, thread, &u};
        if ((rc = ax_db_notif_scan(txn, user_id, pos + 1, false, recount_cb, &r)) != 0)
            return rc;
    }
    if (u.notifications != before_n || u.highlights != before_h)
        *changed = true;
    return ax_db_unread_put(txn, user_id, room_id, thread, &u);
}

static int bump_count(ax_txn_t *txn, const char *user_id, const char *room_id, const char *thread, uint64_t pos,
                      bool highlight)
{
    ax_unread_t u;
    int rc = ax_db_unread_get(txn, user_id, room_id, thread, &u);
    if (rc == AX_ENOTFOUND)
        memset(&u, 0, sizeof(u));
    else if (rc != 0)
        return rc;
    if (pos <= u.read_pos)
        return 0; /* already read (an event older than the receipt) */
    u.notifications++;
    u.highlights += highlight;
    if (pos > u.last_pos)
        u.last_pos = pos;
    return ax_db_unread_put(txn, user_id, room_id, thread, &u);
}

typedef struct st_counts_t {
    ax_push_counts_t *main;
    json_t *threads;
} counts_t;

static int counts_cb(void *arg, const char *room_id, const char *thread, const ax_unread_t *u)
{
    (void)room_id;
    counts_t *c = arg;
    if (thread[0] != '\0' && c->threads != NULL) {
        if (u->notifications != 0 || u->highlights != 0)
            json_object_set_new(c->threads, thread,
                                json_pack("{s:I, s:I}", "notification_count", (json_int_t)u->notifications,
                                          "highlight_count", (json_int_t)u->highlights));
        return 0;
    }
    c->main->notifications += u->notifications;
    c->main->highlights += u->highlights;
    return 0;
}

void ax_push_room_counts(ax_txn_t *txn, const char *user_id, const char *room_id, ax_push_counts_t *main,
                         json_t **threads)
{
    memset(main, 0, sizeof(*main));
    counts_t c = {main, threads != NULL ? json_object() : NULL};
    ax_db_unread_foreach(txn, user_id, room_id, counts_cb, &c);
    if (threads != NULL)
        *threads = c.threads;
}

static int total_cb(void *arg, const char *room_id, const char *thread, const ax_unread_t *u)
{
    (void)room_id, (void)thread;
    *(uint64_t *)arg += u->notifications;
    return 0;
}

uint64_t ax_push_total_unread(ax_txn_t *txn, const char *user_id)
{
    uint64_t n = 0;
    ax_db_unread_foreach(txn, user_id, NULL, total_cb, &n);
    return n;
}

/* ---- evaluating one event ---- */

typedef struct st_eval_t {
    ax_push_t *p;
    ax_txn_t *txn;
    const ax_room_version_t *rv;
    const char *room_id;
    const char *sender;
    room_t *room;
    const char *user_id; /* the member being evaluated */
    ax_room_lookup_t lookup;
    bool lookup_open;
    struct {
        char key[64];
        bool may;
    } perms[MAX_SENDER_PERM_MEMOS];
    size_t nperms;
} eval_t;

static const char *display_name_cb(void *arg)
{
    eval_t *e = arg;
    char *name = ax_strmap_get(&e->room->names, e->user_id);
    if (name == NULL) {
        json_t *content = ax_room_state_content(e->txn, e->room_id, "m.room.member", e->user_id);
        const char *dn = json_string_value(json_object_get(content, "displayname"));
        name = ax_strdup(dn != NULL ? dn : "");
        json_decref(content);
        ax_strmap_put(&e->room->names, e->user_id, name);
    }
    return name[0] != '\0' ? name : NULL;
}

/* spec: sender_notification_permission -- the sender's power level reaches notifications[key] */
static bool sender_may_cb(void *arg, const char *key)
{
    eval_t *e = arg;
    for (size_t i = 0; i < e->nperms; ++i)
        if (strcmp(e->perms[i].key, key) == 0)
            return e->perms[i].may;
    if (!e->lookup_open) {
        e->lookup = (ax_room_lookup_t){.txn = e->txn, .room_id = e->room_id};
        e->lookup_open = true;
    }
    int64_t have = 0, need = 0;
    bool may = ax_power_level_of(e->rv, ax_room_lookup, &e->lookup, e->sender, &have) == 0 &&
               ax_power_level_notification(e->rv, ax_room_lookup, &e->lookup, key, &need) == 0 && have >= need;
    if (e->nperms < MAX_SENDER_PERM_MEMOS && strlen(key) < sizeof(e->perms[0].key)) {
        snprintf(e->perms[e->nperms].key, sizeof(e->perms[0].key), "%s", key);
        e->perms[e->nperms++].may = may;
    }
    return may;
}

/* One member's notification: count, list entry, queued pushes. */
static int notify_user(ax_push_t *p, ax_txn_t *txn, user_t *u, const char *user_id, const char *room_id,
                       const char *event_id, const char *thread, uint64_t pos, const char *type,
                       const ax_push_result_t *res, uint64_t now)
{
    int rc = bump_count(txn, user_id, room_id, thread, pos, res->highlight);
    if (rc != 0)
        return rc;
    ax_notif_t n = {
        .highlight = res->highlight, .ts = now, .room_id = room_id, .thread = thread, .actions = res->actions_json};
    if ((rc = ax_db_notif_put(txn, user_id, pos, &n)) != 0)
        return rc;
    if (now >= u->prune_at) {
        /* the list stays bounded for users who never read (bots, people gone): checked when the oldest
         * kept entry may have aged out, so most notifications cost no extra read */
        uint64_t next = 0;
        rc = ax_db_notif_prune(txn, user_id, now - NOTIF_KEEP_MS, now - HIGHLIGHT_KEEP_MS, NOTIF_PRUNE_BATCH, &next);
        if (rc != 0)
            return rc;
        u->prune_at = next == 1 ? now : next != 0 ? next + NOTIF_KEEP_MS : now + NOTIF_KEEP_MS;
    }
    if (u->npushers == 0)
        return 0;
    /* spec (push gateway): prio may be "low" for what is not urgent; a phone has to wake up for
     * highlights, for anything that makes a sound, and for encrypted events it must decrypt to judge */
    bool high = res->highlight || res->sound || ax_streq(type, "m.room.encrypted");
    json_t *entry = json_pack("{s:s, s:s, s:s, s:O, s:I}", "event_id", event_id, "room_id", room_id, "prio",
                              high ? "high" : "low", "tweaks", res->tweaks, "ts", (json_int_t)now);
    for (size_t i = 0; i < u->npushers && rc == 0; ++i)
        rc = ax_db_pushq_put(txn, pos, user_id, u->pushers[i].app_id, u->pushers[i].pushkey, entry);
    json_decref(entry);
    if (rc == 0)
        atomic_store(&p->queued, true);
    return rc;
}

int ax_push_event(ax_push_t *p, ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id, const char *event_id,
                  uint64_t pos, uint64_t state_group, const json_t *pdu)
{
    validate_caches(p, txn);
    const char *sender = json_string_value(json_object_get(pdu, "sender"));
    const char *type = json_string_value(json_object_get(pdu, "type"));
    if (sender == NULL || type == NULL)
        return 0;
    char thread[256];
    ax_push_thread_of(txn, pdu, thread, sizeof(thread));

    /* sending counts as reading up to the event (spec: "Marking notifications as read") */
    int rc = 0;
    bool changed = false;
    if (is_local(p, sender) && (rc = mark_read(txn, sender, room_id, thread, pos, &changed)) != 0)
        return rc;

    room_t *room = room_get(p, txn, room_id, state_group);
    /* the rules see the event as clients do */
    json_t *view = json_object();
    static const char *const fields[] = {"type", "sender", "state_key", "content", "origin_server_ts", "redacts"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(fields); ++i) {
        json_t *v = json_object_get(pdu, fields[i]);
        if (v != NULL)
            json_object_set(view, fields[i], v);
    }
    json_object_set_new(view, "room_id", json_string(room_id));
    json_object_set_new(view, "event_id", json_string(event_id));

    eval_t e = {.p = p, .txn = txn, .rv = rv, .room_id = room_id, .sender = sender, .room = room};
    ax_push_ctx_t ctx = {.event = view,
                         .member_count = room->joined,
                         .display_name = display_name_cb,
                         .sender_may = sender_may_cb,
                         .arg = &e};
    uint64_t now = ax_now_ms();

    /* a local invitee is not joined yet but hears about the invite (.m.rule.invite_for_me) */
    const char *invitee = NULL;
    const char *state_key = json_string_value(json_object_get(pdu, "state_key"));
    if (strcmp(type, "m.room.member") == 0 && state_key != NULL && strcmp(state_key, sender) != 0 &&
        ax_streq(json_string_value(json_object_get(json_object_get(pdu, "content"), "membership")), "invite") &&
        is_local(p, state_key))
        invitee = state_key;

    for (size_t i = 0; i <= room->nmembers && rc == 0; ++i) {
        const char *user_id = i < room->nmembers ? room->members[i] : invitee;
        if (user_id == NULL || strcmp(user_id, sender) == 0)
            continue; /* spec: never for the user's own events */
        user_t *u = user_get(p, txn, user_id);
        e.user_id = ctx.user_id = user_id;
        ax_push_result_t res;
        ax_push_eval(u->rules != NULL ? u->rules : p->defaults, &ctx, &res);
        if (res.notify)
            rc = notify_user(p, txn, u, user_id, room_id, event_id, thread, pos, type, &res, now);
    }
    if (e.lookup_open)
        ax_room_lookup_dispose(&e.lookup);
    json_decref(view);
    return rc;
}

/* ---- receipts ---- */

typedef struct st_threads_t {
    char (*ids)[256];
    size_t n;
} threads_t;

static int collect_thread(void *arg, const char *room_id, const char *thread, const ax_unread_t *u)
{
    (void)room_id, (void)u;
    threads_t *t = arg;
    t->ids = ax_realloc(t->ids, (t->n + 1) * sizeof(*t->ids));
    snprintf(t->ids[t->n++], sizeof(t->ids[0]), "%s", thread);
    return 0;
}

static int queue_badge(void *arg, const char *app_id, const char *pushkey, json_t *pusher)
{
    (void)pusher;
    void **a = arg;
    ax_txn_t *txn = a[0];
    const char *user_id = a[1];
    uint64_t pos = *(uint64_t *)a[2];
    json_t *entry = json_pack("{s:s, s:I}", "prio", "low", "ts", (json_int_t)ax_now_ms());
    int rc = ax_db_pushq_put(txn, pos, user_id, app_id, pushkey, entry);
    json_decref(entry);
    return rc;
}

int ax_push_receipt(ax_push_t *p, ax_txn_t *txn, const char *user_id, const char *room_id, const char *thread_id,
                    uint64_t event_pos, uint64_t receipt_pos)
{
    threads_t t = {NULL, 0};
    int rc = 0;
    bool changed = false;
    if (thread_id == NULL || thread_id[0] == '\0') {
        /* unthreaded: everything up to the event, in every thread */
        rc = ax_db_unread_foreach(txn, user_id, room_id, collect_thread, &t);
    } else {
        t.ids = ax_malloc(sizeof(*t.ids));
        snprintf(t.ids[0], sizeof(t.ids[0]), "%s", strcmp(thread_id, "main") == 0 ? "" : thread_id);
        t.n = 1;
    }
    for (size_t i = 0; i < t.n && rc == 0; ++i)
        rc = mark_read(txn, user_id, room_id, t.ids[i], event_pos, &changed);
    free(t.ids);
    if (rc == 0 && changed) {
        /* the phone's badge should drop too: a counts-only push to each pusher */
        void *a[3] = {txn, (void *)user_id, &receipt_pos};
        rc = ax_db_pusher_foreach(txn, user_id, queue_badge, a);
        atomic_store(&p->queued, true);
    }
    return rc;
}

/* ---- storing rules ---- */

int ax_push_rules_store(ax_txn_t *txn, const char *user_id, const json_t *stored)
{
    int rc = ax_db_accountdata_put(txn, user_id, NULL, AX_PUSH_RULES_TYPE, stored, ax_txn_next_stream_pos(txn));
    if (rc == 0)
        rc = ax_db_push_gen_bump(txn);
    if (rc == 0)
        ax_txn_notify(txn, user_id);
    return rc;
}
