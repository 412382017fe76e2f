/*
 * search.c -- server-side search of room events (spec: Client-Server API
 * "Server Side Search"; search.yaml) over the full-text index core/rooms.c
 * fills, and the user directory (users.yaml).
 *
 * A room event matches when every term of the query is among its words
 * (AND); rank is how many times the terms occur.  Only rooms the user is
 * joined to are searched, and every result passes history visibility.
 */
#include "server/cs/cs.h"
#include "core/filter.h"
#include "core/rooms.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define SEARCH_MAX_CANDIDATES 2000
#define SEARCH_DEFAULT_LIMIT  10

typedef struct st_terms_t {
    char items[16][65];
    size_t n;
} terms_t;

static void add_term(void *arg, const char *term)
{
    terms_t *t = arg;
    if (t->n < AX_ARRAY_SIZE(t->items))
        snprintf(t->items[t->n++], sizeof(t->items[0]), "%s", term);
}

typedef struct st_hit_t {
    uint64_t pos;
    char event_id[256];
    char room_id[256];
    double rank;
} hit_t;

typedef struct st_search_t {
    ax_req_t *r;
    ax_txn_t *txn;
    const char *room_id;
    terms_t *terms;
    json_t *keys; /* which content fields count */
    const json_t *filter;
    uint64_t indexed; /* ax_search_pos() */
    hit_t *hits;
    size_t n, cap;
} search_t;

static void count_term(void *arg, const char *term)
{
    void **a = arg;
    terms_t *t = a[0];
    size_t *found = a[1];
    for (size_t i = 0; i < t->n; ++i)
        if (strcmp(t->items[i], term) == 0)
            found[i]++;
}

/* The rank of an event for the terms, or 0 when a term is missing. */
static double rank_event(search_t *s, const json_t *ev)
{
    size_t found[16] = {0};
    json_t *content = json_object_get(ev, "content");
    static const char *const fields[] = {"content.body", "content.name", "content.topic"};
    for (size_t f = 0; f < AX_ARRAY_SIZE(fields); ++f) {
        bool wanted = s->keys == NULL;
        size_t i;
        json_t *k;
        json_array_foreach(s->keys, i, k)
        {
            wanted = wanted || ax_streq(json_string_value(k), fields[f]);
        }
        const char *text = json_string_value(json_object_get(content, fields[f] + 8));
        if (!wanted || text == NULL)
            continue;
        /* count every occurrence: split by hand, not through the de-duplicating splitter */
        const unsigned char *p = (const unsigned char *)text;
        while (*p) {
            while (*p && !(isalnum(*p) || *p >= 0x80))
                ++p;
            char w[65];
            size_t n = 0;
            while (*p && (isalnum(*p) || *p >= 0x80)) {
                if (n < 64)
                    w[n++] = (char)tolower(*p);
                ++p;
            }
            w[n] = '\0';
            if (n != 0) {
                void *a[2] = {s->terms, found};
                count_term(a, w);
            }
        }
    }
    double rank = 0;
    for (size_t i = 0; i < s->terms->n; ++i) {
        if (found[i] == 0)
            return 0;
        rank += (double)found[i];
    }
    return rank;
}

static int candidate_cb(void *arg, uint64_t pos, const char *event_id)
{
    search_t *s = arg;
    if (s->n >= SEARCH_MAX_CANDIDATES)
        return 1;
    if (!ax_room_user_can_see(s->txn, s->room_id, s->r->auth.user_id, pos))
        return 0;
    json_t *ev = ax_event_load_client(s->txn, event_id, s->r->auth.user_id, s->r->auth.device_id, NULL);
    if (ev == NULL)
        return 0;
    double rank = ax_filter_event_matches(s->filter, ev) ? rank_event(s, ev) : 0;
    json_decref(ev);
    if (rank <= 0)
        return 0;
    if (s->n == s->cap)
        s->hits = ax_realloc(s->hits, (s->cap = s->cap ? s->cap * 2 : 64) * sizeof(*s->hits));
    hit_t *h = &s->hits[s->n++];
    h->pos = pos;
    h->rank = rank;
    snprintf(h->event_id, sizeof(h->event_id), "%s", event_id);
    snprintf(h->room_id, sizeof(h->room_id), "%s", s->room_id);
    return 0;
}

static void find_term(void *arg, const char *term)
{
    void **a = arg;
    if (strcmp(a[0], term) == 0)
        a[1] = (void *)term;
}

/* An event after the index's position: a candidate when the index will hold it under the first term. */
static int unindexed_cb(void *arg, uint64_t pos, const char *event_id)
{
    search_t *s = arg;
    json_t *ev = NULL;
    if (s->n >= SEARCH_MAX_CANDIDATES)
        return 1;
    if (ax_db_event_get_keys(s->txn, event_id, ax_search_event_keys, &ev, NULL) != 0)
        return 0;
    const char *text = ax_search_text(json_string_value(json_object_get(ev, "type")), json_object_get(ev, "content"));
    void *a[2] = {s->terms->items[0], NULL};
    if (text != NULL)
        ax_search_terms(text, find_term, a);
    json_decref(ev);
    return a[1] != NULL ? candidate_cb(s, pos, event_id) : 0;
}

static int by_recent(const void *a, const void *b)
{
    const hit_t *x = a, *y = b;
    return x->pos < y->pos ? 1 : x->pos > y->pos ? -1 : 0;
}

static int by_rank(const void *a, const void *b)
{
    const hit_t *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? 1 : -1;
    return by_recent(a, b);
}

static int joined_room_cb(void *arg, const char *room_id, json_t *m)
{
    search_t *s = arg;
    if (!ax_streq(json_string_value(json_object_get(m, "membership")), "join") ||
        !ax_filter_room_allowed(s->filter, room_id))
        return 0;
    s->room_id = room_id;
    /* the newest events first: those the index does not hold yet, then the index's.  Candidates from
     * the rarest-looking term would be better; the first term is good enough here */
    ax_db_timeline_scan(s->txn, room_id, s->indexed + 1, false, unindexed_cb, s);
    ax_db_search_scan(s->txn, s->terms->items[0], room_id, candidate_cb, s);
    s->room_id = NULL;
    return s->n >= SEARCH_MAX_CANDIDATES;
}

/* ---- result context ---- */

typedef struct st_ctx_t {
    ax_req_t *r;
    ax_txn_t *txn;
    const char *room_id;
    json_int_t limit;
    json_t *events;
    json_t *senders;
} ctx_t;

static int ctx_cb(void *arg, uint64_t pos, const char *event_id)
{
    ctx_t *c = arg;
    if ((json_int_t)json_array_size(c->events) >= c->limit)
        return 1;
    if (!ax_room_user_can_see(c->txn, c->room_id, c->r->auth.user_id, pos))
        return 0;
    json_t *ev = ax_event_load_client(c->txn, event_id, c->r->auth.user_id, c->r->auth.device_id, NULL);
    if (ev != NULL) {
        json_object_set(c->senders, json_string_value(json_object_get(ev, "sender")) ?: "", json_true());
        json_array_append_new(c->events, ev);
    }
    return 0;
}

/* The spec's EventContext of a hit: events around it, tokens, and the senders' profiles on request. */
static json_t *hit_context(ax_req_t *r, ax_txn_t *txn, const hit_t *h, const char *sender, json_int_t before,
                           json_int_t after, bool profiles)
{
    json_t *senders = json_object();
    if (sender != NULL)
        json_object_set_new(senders, sender, json_true());
    ctx_t b = {r, txn, h->room_id, before, json_array(), senders};
    ctx_t a = {r, txn, h->room_id, after, json_array(), senders};
    if (before > 0 && h->pos > 1)
        ax_db_timeline_scan(txn, h->room_id, h->pos - 1, true, ctx_cb, &b);
    if (after > 0)
        ax_db_timeline_scan(txn, h->room_id, h->pos + 1, false, ctx_cb, &a);
    json_t *ctx = json_pack("{s:o, s:o, s:s, s:s}", "events_before", b.events, "events_after", a.events, "start",
                            ax_psprintf(r, "t%llu", (unsigned long long)(h->pos - 1)), "end",
                            ax_psprintf(r, "t%llu", (unsigned long long)h->pos));
    if (profiles) {
        json_t *info = json_object();
        const char *user;
        json_t *yes;
        json_object_foreach(senders, user, yes)
        {
            json_t *m = ax_room_state_content(txn, h->room_id, "m.room.member", user);
            json_t *entry = json_object();
            if (json_is_string(json_object_get(m, "displayname")))
                json_object_set(entry, "displayname", json_object_get(m, "displayname"));
            if (json_is_string(json_object_get(m, "avatar_url")))
                json_object_set(entry, "avatar_url", json_object_get(m, "avatar_url"));
            json_object_set_new(info, user, entry);
            json_decref(m);
        }
        json_object_set_new(ctx, "profile_info", info);
    }
    json_decref(senders);
    return ctx;
}

/* POST /_matrix/client/v3/search */
int ax_cs_search(ax_req_t *r)
{
    json_t *body, *cats, *re, *filter = NULL, *keys = NULL, *context = NULL;
    const char *term, *order_by, *next = ax_req_query(r, "next_batch");
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_object_or_reply(r, body, "search_categories", true, &cats) != 0 ||
        ax_field_object_or_reply(r, cats, "room_events", false, &re) != 0)
        return 0;
    if (re == NULL)
        return ax_reply_json_new(r, 200, json_pack("{s:{}}", "search_categories"));
    if (ax_field_string_or_reply(r, re, "search_term", true, &term) != 0 ||
        ax_field_string_or_reply(r, re, "order_by", false, &order_by) != 0 ||
        ax_field_array_or_reply(r, re, "keys", false, &keys) != 0 ||
        ax_field_object_or_reply(r, re, "filter", false, &filter) != 0 ||
        ax_field_object_or_reply(r, re, "event_context", false, &context) != 0)
        return 0;
    if (order_by != NULL && strcmp(order_by, "rank") != 0 && strcmp(order_by, "recent") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "order_by must be rank or recent");
    char err[256];
    if (filter != NULL && ax_filter_validate_room_event(filter, err, sizeof(err)) != 0)
        return ax_reply_error(r, AX_M_BAD_JSON, err);
    uint64_t offset = 0;
    if (next != NULL && (next[0] != 'o' || ax_parse_u64(next + 1, &offset) != 0))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid next_batch");
    terms_t terms = {.n = 0};
    ax_search_terms(term, add_term, &terms);

    json_t *results = json_array(), *highlights = json_array();
    for (size_t i = 0; i < terms.n; ++i)
        json_array_append_new(highlights, json_string(terms.items[i]));
    size_t total = 0;
    bool more = false;
    int limit = ax_filter_limit(filter, SEARCH_DEFAULT_LIMIT);
    if (terms.n != 0) {
        ax_txn_t *txn;
        if (ax_db_read_begin(r->srv->db, &txn) != 0)
            return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        search_t s = {
            .r = r, .txn = txn, .terms = &terms, .keys = keys, .filter = filter, .indexed = ax_search_pos(txn)};
        ax_db_user_rooms_foreach(txn, r->auth.user_id, joined_room_cb, &s);
        if (s.n > 1) /* s.hits is NULL when nothing matched */
            qsort(s.hits, s.n, sizeof(*s.hits),
                  order_by != NULL && strcmp(order_by, "recent") == 0 ? by_recent : by_rank);
        total = s.n;
        json_int_t before = 0, after = 0;
        bool profiles = json_is_true(json_object_get(context, "include_profile"));
        if (context != NULL) {
            before = json_is_integer(json_object_get(context, "before_limit"))
                         ? json_integer_value(json_object_get(context, "before_limit"))
                         : 5;
            after = json_is_integer(json_object_get(context, "after_limit"))
                        ? json_integer_value(json_object_get(context, "after_limit"))
                        : 5;
        }
        for (size_t i = (size_t)offset; i < s.n; ++i) {
            if ((int)json_array_size(results) == limit) {
                more = true;
                break;
            }
            json_t *ev = ax_event_load_client(txn, s.hits[i].event_id, r->auth.user_id, r->auth.device_id, NULL);
            if (ev == NULL)
                continue;
            json_t *res = json_pack("{s:f, s:o}", "rank", s.hits[i].rank, "result", ev);
            if (context != NULL) {
                json_t *ctx = hit_context(r, txn, &s.hits[i], json_string_value(json_object_get(ev, "sender")), before,
                                          after, profiles);
                json_object_set_new(res, "context", ctx);
            }
            json_array_append_new(results, res);
        }
        free(s.hits);
        ax_db_read_end(txn);
    }
    json_t *room_events =
        json_pack("{s:o, s:I, s:o}", "results", results, "count", (json_int_t)total, "highlights", highlights);
    if (more)
        json_object_set_new(room_events, "next_batch",
                            json_string(ax_psprintf(r, "o%llu", (unsigned long long)(offset + (uint64_t)limit))));
    return ax_reply_json_new(r, 200, json_pack("{s:{s:o}}", "search_categories", "room_events", room_events));
}

/* ---- the user directory ---- */

typedef struct st_ud_t {
    ax_txn_t *txn;
    const char *self;
    char *term;   /* lower-case */
    json_t *seen; /* {user_id: true} */
    json_t *results;
    size_t limit;
    bool limited;
} ud_t;

static bool matches(const char *hay, const char *term)
{
    if (hay == NULL)
        return false;
    size_t n = strlen(term);
    for (; *hay; ++hay)
        if (strncasecmp(hay, term, n) == 0)
            return true;
    return false;
}

static int ud_member(void *arg, const char *user_id, const char *membership)
{
    ud_t *u = arg;
    if (strcmp(membership, "join") != 0 || json_object_get(u->seen, user_id) != NULL)
        return 0;
    json_object_set_new(u->seen, user_id, json_true());
    json_t *profile = NULL;
    ax_db_profile_get(u->txn, user_id, &profile);
    const char *name = json_string_value(json_object_get(profile, "displayname"));
    if (matches(user_id, u->term) || matches(name, u->term)) {
        if (json_array_size(u->results) == u->limit) {
            u->limited = true;
        } else {
            json_t *row = json_pack("{s:s}", "user_id", user_id);
            if (name != NULL)
                json_object_set_new(row, "display_name", json_string(name));
            const char *avatar = json_string_value(json_object_get(profile, "avatar_url"));
            if (avatar != NULL)
                json_object_set_new(row, "avatar_url", json_string(avatar));
            json_array_append_new(u->results, row);
        }
    }
    json_decref(profile);
    return 0;
}

static int ud_room(void *arg, const char *room_id, json_t *m)
{
    ud_t *u = arg;
    if (ax_streq(json_string_value(json_object_get(m, "membership")), "join"))
        ax_db_room_members_foreach(u->txn, room_id, ud_member, u);
    return 0;
}

static int ud_public(void *arg, const char *room_id)
{
    ud_t *u = arg;
    ax_db_room_members_foreach(u->txn, room_id, ud_member, u);
    return 0;
}

/* POST /_matrix/client/v3/user_directory/search */
int ax_cs_user_directory_search(ax_req_t *r)
{
    json_t *body;
    const char *term;
    json_int_t limit = 10;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_string_or_reply(r, body, "search_term", true, &term) != 0 ||
        ax_field_int_or_reply(r, body, "limit", false, &limit) != 0)
        return 0;
    if (limit < 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must not be negative");
    if (limit > 100)
        limit = 100;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    /* the people a user may find: those sharing a room with them, and those in public rooms */
    ud_t u = {txn, r->auth.user_id, ax_pstrdup(r, term), json_object(), json_array(), (size_t)limit, false};
    ax_db_user_rooms_foreach(txn, r->auth.user_id, ud_room, &u);
    ax_db_directory_foreach(txn, NULL, ud_public, &u);
    ax_db_read_end(txn);
    json_decref(u.seen);
    return ax_reply_json_new(r, 200, json_pack("{s:o, s:b}", "results", u.results, "limited", u.limited));
}
