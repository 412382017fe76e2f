/*
 * keyring.c -- other servers' signing keys (spec: Server-Server API,
 * "Retrieving server keys"; keys.yaml, keys_query.yaml): looking them up in
 * the database, fetching them from their server (GET /_matrix/key/v2/server,
 * self-signatures verified) and, when that fails, through the notaries of
 * trusted_key_servers (POST /_matrix/key/v2/query, the notary's signature
 * verified too), and storing what was verified before anyone uses it.
 *
 * Validity: a key from verify_keys is valid until the lesser of the
 * document's valid_until_ts and seven days after we fetched it (keys.yaml);
 * a key from old_verify_keys only verifies what was signed before its
 * expired_ts, and never a request.  Room versions without
 * enforce_key_validity (v1-4) ask with valid_at_ts = 0: any time.
 *
 * Lookups run on the federation loop.  Lookups of one server share one
 * fetch; a fetch that asks a notary first makes sure of the notary's own
 * keys with a direct-only lookup, so fetches never wait on each other in a
 * cycle.
 */
#include "federation/federation_internal.h"
#include "core/events.h"

#include <stdlib.h>
#include <string.h>

#define KEY_FETCH_TIMEOUT_MS 15000
#define KEY_MISS_MS          10000 /* after a fetch that did not find a key, others wait this long */
#define KEY_RESPONSE_MAX     (256u << 10)

/* ---- Records and validity ---- */

static bool decode_key(const char *b64, uint8_t pk[crypto_sign_PUBLICKEYBYTES])
{
    size_t n = 0;
    return b64 != NULL && ax_b64_decode(pk, crypto_sign_PUBLICKEYBYTES, &n, b64, strlen(b64), false) == 0 &&
           n == crypto_sign_PUBLICKEYBYTES;
}

static uint64_t jint(const json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (uint64_t)v : 0;
}

/* Whether stored record 'rec' may verify something signed at 'valid_at' (0: any time). */
static bool rec_valid(const json_t *rec, uint64_t valid_at, bool allow_old)
{
    if (json_object_get(rec, "expired_ts") != NULL) {
        uint64_t expired = jint(rec, "expired_ts");
        return allow_old && (valid_at == 0 || valid_at < expired);
    }
    uint64_t until = jint(rec, "valid_until_ts"), cap = jint(rec, "fetched_ts") + AX_KEY_MAX_VALIDITY_MS;
    if (cap < until)
        until = cap;
    return valid_at == 0 || valid_at <= until;
}

typedef struct st_any_key_t {
    uint64_t valid_at;
    uint8_t *pk;
    bool found;
} any_key_t;

static int any_key_cb(void *arg, const char *key_id, json_t *rec)
{
    any_key_t *a = arg;
    if (strncmp(key_id, "ed25519:", 8) != 0 || json_object_get(rec, "expired_ts") != NULL ||
        !rec_valid(rec, a->valid_at, false))
        return 0;
    if (!decode_key(json_string_value(json_object_get(rec, "key")), a->pk))
        return 0;
    a->found = true;
    return 1;
}

int ax_keyring_cached(ax_db_t *db, const char *server_name, const char *key_id, uint64_t valid_at_ts, bool allow_old,
                      uint8_t public_key[crypto_sign_PUBLICKEYBYTES])
{
    ax_txn_t *txn;
    if (ax_db_read_begin(db, &txn) != 0)
        return AX_EIO;
    int rc = AX_ENOTFOUND;
    if (key_id[0] == '\0') {
        any_key_t a = {valid_at_ts, public_key, false};
        ax_db_server_keys_foreach(txn, server_name, any_key_cb, &a);
        rc = a.found ? 0 : AX_ENOTFOUND;
    } else {
        json_t *rec = NULL;
        if (ax_db_server_key_get(txn, server_name, key_id, &rec) == 0 && rec_valid(rec, valid_at_ts, allow_old) &&
            decode_key(json_string_value(json_object_get(rec, "key")), public_key))
            rc = 0;
        json_decref(rec);
    }
    ax_db_read_end(txn);
    return rc;
}

uint64_t ax_keyring_event_valid_at(const ax_room_version_t *rv, uint64_t origin_server_ts)
{
    return rv != NULL && rv->enforce_key_validity ? origin_server_ts : 0;
}

int ax_keyring_check_doc(const json_t *doc, const char *server_name)
{
    if (!json_is_object(doc) || !ax_streq(json_string_value(json_object_get(doc, "server_name")), server_name) ||
        !json_is_integer(json_object_get(doc, "valid_until_ts")))
        return AX_EINVAL;
    json_t *vk = json_object_get(doc, "verify_keys");
    json_t *old = json_object_get(doc, "old_verify_keys");
    if (!json_is_object(vk) || (old != NULL && !json_is_object(old)))
        return AX_EINVAL;
    size_t verified = 0;
    const char *kid;
    json_t *v;
    json_object_foreach(vk, kid, v)
    {
        if (strncmp(kid, "ed25519:", 8) != 0)
            continue; /* an algorithm we do not know: not ours to check */
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        if (!json_is_object(v) || !decode_key(json_string_value(json_object_get(v, "key")), pk))
            return AX_EINVAL;
        if (ax_verify_json(doc, server_name, kid, pk) != 0)
            return AX_EBADSIG; /* every current key must have signed the document */
        ++verified;
    }
    return verified != 0 ? 0 : AX_EBADSIG;
}

/* Appends to 'records' one {key_id, rec} per key of verified document 'doc', as served by 'from'. */
static void add_doc_records(json_t *records, const json_t *doc, const char *server_name, const char *from, uint64_t now)
{
    /* keep only the owner's signatures: a notary's are not ours to pass on */
    json_t *stored = json_deep_copy(doc);
    json_t *sigs = json_object_get(stored, "signatures");
    json_t *own = json_object_get(sigs, server_name);
    json_object_set_new(stored, "signatures", json_pack("{s:O}", server_name, own));
    json_int_t doc_until = json_integer_value(json_object_get(doc, "valid_until_ts"));
    const char *kid;
    json_t *v;
    json_object_foreach(json_object_get(doc, "verify_keys"), kid, v)
    {
        const char *key = json_string_value(json_object_get(v, "key"));
        if (key == NULL || strlen(kid) >= AX_KEY_ID_MAX)
            continue;
        json_array_append_new(records, json_pack("{s:s, s:{s:s, s:I, s:I, s:s, s:I, s:O}}", "key_id", kid, "rec", "key",
                                                 key, "valid_until_ts", doc_until, "fetched_ts", (json_int_t)now,
                                                 "from", from, "doc_valid_until", doc_until, "doc", stored));
    }
    json_object_foreach(json_object_get(doc, "old_verify_keys"), kid, v)
    {
        const char *key = json_string_value(json_object_get(v, "key"));
        json_t *expired = json_object_get(v, "expired_ts");
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        if (!json_is_integer(expired) || !decode_key(key, pk) || strlen(kid) >= AX_KEY_ID_MAX)
            continue;
        json_array_append_new(records, json_pack("{s:s, s:{s:s, s:O, s:I, s:s, s:I, s:O}}", "key_id", kid, "rec", "key",
                                                 key, "expired_ts", expired, "fetched_ts", (json_int_t)now, "from",
                                                 from, "doc_valid_until", doc_until, "doc", stored));
    }
    json_decref(stored);
}

typedef struct st_store_t {
    char server[256];
    json_t *records;
    key_fetch_t *fetch;
} store_t;

static void store_free(void *p)
{
    store_t *s = p;
    json_decref(s->records);
    free(s);
}

static int store_apply(ax_txn_t *txn, void *data)
{
    store_t *s = data;
    size_t i;
    json_t *r;
    json_array_foreach(s->records, i, r)
    {
        const char *kid = json_string_value(json_object_get(r, "key_id"));
        json_t *rec = json_object_get(r, "rec");
        json_t *old = NULL;
        int rc = ax_db_server_key_get(txn, s->server, kid, &old);
        if (rc != 0 && rc != AX_ENOTFOUND)
            return rc;
        /* what the newer document says wins */
        bool keep_old = old != NULL && jint(old, "doc_valid_until") > jint(rec, "doc_valid_until");
        json_decref(old);
        if (!keep_old && (rc = ax_db_server_key_put(txn, s->server, kid, rec)) != 0)
            return rc;
    }
    return 0;
}

/* ---- Lookups and fetches on the loop ---- */

typedef struct st_key_waiter_t {
    ax_key_lookup_t *lk;
    size_t i;
    struct st_key_waiter_t *next;
} key_waiter_t;

struct st_key_fetch_t {
    ax_fed_t *fed;
    char server[256];
    char map_key[260];
    bool direct_only;
    int notary;   /* -1 during the direct fetch, then an index into trusted_key_servers */
    bool reached; /* some server answered, so a miss is "no such key", not "unreachable" */
    key_waiter_t *waiters;
};

ax_key_lookup_t *ax_key_lookup_new(size_t n)
{
    ax_key_lookup_t *lk = ax_calloc(1, sizeof(*lk) + n * sizeof(ax_key_want_t));
    lk->n = n;
    return lk;
}

int ax_key_want_set(ax_key_lookup_t *lk, size_t i, const char *server_name, const char *key_id, uint64_t valid_at_ts,
                    bool allow_old)
{
    ax_key_want_t *w = &lk->want[i];
    if (strlen(server_name) >= sizeof(w->server_name) || strlen(key_id) >= sizeof(w->key_id))
        return AX_EINVAL;
    snprintf(w->server_name, sizeof(w->server_name), "%s", server_name);
    snprintf(w->key_id, sizeof(w->key_id), "%s", key_id);
    w->valid_at_ts = valid_at_ts;
    w->allow_old = allow_old;
    w->result = AX_ENOTFOUND;
    return 0;
}

static void lookup_release(ax_key_lookup_t *lk)
{
    if (--lk->_pending == 0)
        ax_fed_complete(&lk->super, 0);
}

typedef struct st_own_old_t {
    const ax_key_want_t *w;
    uint8_t *pk;
    bool found;
} own_old_t;

static int own_old_cb(void *arg, const char *key_id, json_t *rec)
{
    own_old_t *o = arg;
    if (strcmp(key_id, o->w->key_id) != 0)
        return 0;
    uint64_t expired = jint(rec, "expired_ts");
    if ((o->w->valid_at_ts == 0 || o->w->valid_at_ts < expired) &&
        decode_key(json_string_value(json_object_get(rec, "key")), o->pk))
        o->found = true;
    return 1;
}

/* Our own keys: the current one, and former ones for events. */
static int own_key(ax_fed_t *fed, ax_key_want_t *w)
{
    if (w->key_id[0] == '\0' || strcmp(w->key_id, fed->key->key_id) == 0) {
        memcpy(w->public_key, fed->key->public_key, sizeof(w->public_key));
        return 0;
    }
    if (!w->allow_old)
        return AX_ENOTFOUND;
    ax_txn_t *txn;
    if (ax_db_read_begin(fed->db, &txn) != 0)
        return AX_EIO;
    own_old_t o = {w, w->public_key, false};
    ax_db_old_keys_foreach(txn, own_old_cb, &o);
    ax_db_read_end(txn);
    return o.found ? 0 : AX_ENOTFOUND;
}

static void start_direct(key_fetch_t *f);
static void next_notary(key_fetch_t *f);

static void fetch_done(key_fetch_t *f, bool ok)
{
    ax_fed_t *fed = f->fed;
    atomic_fetch_add_explicit(ok ? &fed->key_fetches_ok : &fed->key_fetches_failed, 1, memory_order_relaxed);
    ax_strmap_del(&fed->fetches, f->map_key);
    free(f);
}

/* Remembers that a fetch of 'server' just ended without everything wanted. */
static void note_miss(ax_fed_t *fed, const char *server)
{
    uint64_t *at = ax_strmap_get(&fed->misses, server);
    if (at == NULL) {
        at = ax_malloc(sizeof(*at));
        ax_strmap_put(&fed->misses, server, at);
    }
    *at = ax_now_ms();
}

typedef struct st_miss_prune_t {
    uint64_t cutoff;
    char **keys;
    size_t n, cap;
} miss_prune_t;

static void find_old_miss(void *arg, const char *key, void *value)
{
    miss_prune_t *p = arg;
    if (*(uint64_t *)value >= p->cutoff)
        return;
    if (p->n == p->cap)
        p->keys = ax_realloc(p->keys, (p->cap = p->cap ? p->cap * 2 : 16) * sizeof(char *));
    p->keys[p->n++] = ax_strdup(key);
}

void ax_keyring_prune(ax_fed_t *fed, uint64_t now)
{
    miss_prune_t p = {now > KEY_MISS_MS ? now - KEY_MISS_MS : 0, NULL, 0, 0};
    ax_strmap_foreach(&fed->misses, find_old_miss, &p);
    for (size_t i = 0; i < p.n; ++i) {
        free(ax_strmap_del(&fed->misses, p.keys[i]));
        free(p.keys[i]);
    }
    free(p.keys);
}

static void free_miss(void *arg, const char *key, void *value)
{
    AX_UNUSED(arg);
    AX_UNUSED(key);
    free(value);
}

void ax_keyring_dispose(ax_fed_t *fed)
{
    ax_strmap_foreach(&fed->misses, free_miss, NULL);
    ax_strmap_dispose(&fed->misses);
    ax_strmap_dispose(&fed->fetches);
}

/* Answers every waiter still there with 'result' and ends the fetch. */
static void fail_all(key_fetch_t *f)
{
    int result = f->fed->refusing ? AX_ESHUTDOWN : f->reached ? AX_ENOTFOUND : AX_EUNREACHABLE;
    for (key_waiter_t *w = f->waiters, *next; w != NULL; w = next) {
        next = w->next;
        w->lk->want[w->i].result = result;
        lookup_release(w->lk);
        free(w);
    }
    f->waiters = NULL;
    ax_log(AX_LOG_INFO, "federation: no usable signing key of %s (%s)", f->server, ax_strerror(result));
    if (!f->direct_only)
        note_miss(f->fed, f->server);
    fetch_done(f, false);
}

/* Answers the waiters whose key the database now has; true when none is left. */
static bool answer_found(key_fetch_t *f)
{
    key_waiter_t **pp = &f->waiters;
    while (*pp != NULL) {
        key_waiter_t *w = *pp;
        ax_key_want_t *want = &w->lk->want[w->i];
        if (ax_keyring_cached(f->fed->db, want->server_name, want->key_id, want->valid_at_ts, want->allow_old,
                              want->public_key) == 0) {
            want->result = 0;
            *pp = w->next;
            lookup_release(w->lk);
            free(w);
        } else {
            pp = &w->next;
        }
    }
    return f->waiters == NULL;
}

/* After a step stored what it verified: done, or on to the next notary. */
static void after_step(key_fetch_t *f)
{
    if (answer_found(f))
        return fetch_done(f, true);
    if (f->fed->refusing)
        return fail_all(f);
    next_notary(f);
}

static void stored(ax_fed_t *fed, int result, void *data)
{
    AX_UNUSED(fed);
    store_t *s = data;
    if (result != 0)
        ax_log(AX_LOG_ERROR, "federation: cannot store the keys of %s: %s", s->server, ax_strerror(result));
    after_step(s->fetch);
}

/* Stores 'records' (stolen) and continues once they are durable. */
static void store_then_continue(key_fetch_t *f, json_t *records)
{
    if (json_array_size(records) == 0) {
        json_decref(records);
        after_step(f);
        return;
    }
    store_t *s = ax_calloc(1, sizeof(*s));
    snprintf(s->server, sizeof(s->server), "%s", f->server);
    s->records = records;
    s->fetch = f;
    ax_fed_write(f->fed, store_apply, s, store_free, stored);
}

static ax_fed_request_t *key_request(key_fetch_t *f, const char *destination, const char *method, const char *path,
                                     json_t *body, void (*done)(ax_task_t *))
{
    ax_fed_request_t *fr = ax_fed_request_new(destination, method, path, body);
    fr->flags = AX_FED_IGNORE_BACKOFF;
    fr->timeout_ms = KEY_FETCH_TIMEOUT_MS;
    fr->max_response = KEY_RESPONSE_MAX;
    fr->super.done = done;
    fr->super.port = &f->fed->port.super;
    fr->super.owner = f;
    f->fed->outstanding++;
    return fr;
}

static void on_direct_done(ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    key_fetch_t *f = task->owner;
    ax_fed_t *fed = f->fed;
    fed->outstanding--;
    json_t *records = json_array();
    if (task->result == 0) {
        f->reached = true;
        int rc = fr->status == 200 ? ax_keyring_check_doc(fr->json, f->server) : AX_EINVAL;
        if (rc == 0)
            add_doc_records(records, fr->json, f->server, f->server, ax_now_ms());
        else
            ax_log(AX_LOG_INFO, "federation: %s served an unusable key document (HTTP %d): %s", f->server, fr->status,
                   rc == AX_EBADSIG ? "bad self-signature" : "malformed");
    } else {
        ax_log(AX_LOG_INFO, "federation: cannot fetch the keys of %s: %s", f->server, fr->error);
    }
    ax_fed_request_free(fr);
    store_then_continue(f, records);
}

static void start_direct(key_fetch_t *f)
{
    ax_fed_request_t *fr = key_request(f, f->server, "GET", "/_matrix/key/v2/server", NULL, on_direct_done);
    ax_fed_start_request(f->fed, fr);
}

/* Whether the notary 'notary' signed 'doc' with a key we hold. */
static bool notary_signed(ax_fed_t *fed, const json_t *doc, const char *notary)
{
    const char *kid;
    json_t *sig;
    json_object_foreach(json_object_get(json_object_get(doc, "signatures"), notary), kid, sig)
    {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        if (ax_keyring_cached(fed->db, notary, kid, ax_now_ms(), false, pk) == 0 &&
            ax_verify_json(doc, notary, kid, pk) == 0)
            return true;
    }
    return false;
}

static void on_notary_done(ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    key_fetch_t *f = task->owner;
    ax_fed_t *fed = f->fed;
    fed->outstanding--;
    const char *notary = fed->cfg->trusted_key_servers.items[f->notary];
    json_t *records = json_array();
    if (task->result == 0 && fr->status == 200) {
        size_t i, used = 0;
        json_t *doc;
        json_array_foreach(json_object_get(fr->json, "server_keys"), i, doc)
        {
            if (!ax_streq(json_string_value(json_object_get(doc, "server_name")), f->server))
                continue;
            if (!notary_signed(fed, doc, notary) || ax_keyring_check_doc(doc, f->server) != 0) {
                ax_log(AX_LOG_WARN, "federation: notary %s returned keys of %s that do not verify", notary, f->server);
                continue;
            }
            add_doc_records(records, doc, f->server, notary, ax_now_ms());
            ++used;
        }
        if (used != 0)
            f->reached = true;
    } else {
        ax_log(AX_LOG_INFO, "federation: notary %s could not give the keys of %s: %s", notary, f->server,
               task->result == 0 ? "unexpected answer" : fr->error);
    }
    ax_fed_request_free(fr);
    store_then_continue(f, records);
}

/* The notary's own keys are known: ask it. */
static void on_notary_keys(ax_task_t *task)
{
    ax_key_lookup_t *lk = (ax_key_lookup_t *)task;
    key_fetch_t *f = task->owner;
    ax_fed_t *fed = f->fed;
    fed->outstanding--;
    int result = lk->want[0].result;
    free(lk);
    const char *notary = fed->cfg->trusted_key_servers.items[f->notary];
    if (fed->refusing)
        return fail_all(f);
    if (result != 0) {
        ax_log(AX_LOG_INFO, "federation: notary %s: no usable signing key of its own (%s)", notary,
               ax_strerror(result));
        return next_notary(f);
    }
    /* ask for the keys the waiters want, or for all of them */
    json_t *criteria = json_object();
    bool all = false;
    uint64_t now = ax_now_ms();
    for (key_waiter_t *w = f->waiters; w != NULL; w = w->next) {
        ax_key_want_t *want = &w->lk->want[w->i];
        if (want->key_id[0] == '\0')
            all = true;
        else
            json_object_set_new(criteria, want->key_id,
                                json_pack("{s:I}", "minimum_valid_until_ts",
                                          (json_int_t)(want->valid_at_ts > now ? want->valid_at_ts : now)));
    }
    if (all)
        json_object_clear(criteria);
    json_t *body = json_pack("{s:{s:o}}", "server_keys", f->server, criteria);
    ax_fed_request_t *fr = key_request(f, notary, "POST", "/_matrix/key/v2/query", body, on_notary_done);
    ax_fed_start_request(fed, fr);
}

static void next_notary(key_fetch_t *f)
{
    ax_fed_t *fed = f->fed;
    const ax_strlist_t *notaries = &fed->cfg->trusted_key_servers;
    if (f->direct_only)
        return fail_all(f);
    while (++f->notary < (int)notaries->count) {
        const char *n = notaries->items[f->notary];
        if (strcmp(n, f->server) == 0 || strcmp(n, fed->server_name) == 0 || !ax_id_is_valid_server_name(n))
            continue;
        ax_key_lookup_t *lk = ax_key_lookup_new(1);
        ax_key_want_set(lk, 0, n, "", ax_now_ms(), false);
        lk->super.done = on_notary_keys;
        lk->super.port = &fed->port.super;
        lk->super.owner = f;
        fed->outstanding++;
        ax_keyring_start(fed, lk, true);
        return;
    }
    fail_all(f);
}

static void join_fetch(ax_fed_t *fed, ax_key_lookup_t *lk, size_t i, bool direct_only)
{
    const char *server = lk->want[i].server_name;
    char map_key[260];
    snprintf(map_key, sizeof(map_key), "%s%s", server, direct_only ? "\x01" : "");
    key_fetch_t *f = ax_strmap_get(&fed->fetches, map_key);
    uint64_t *missed = direct_only ? NULL : ax_strmap_get(&fed->misses, server);
    if (f == NULL && missed != NULL && *missed + KEY_MISS_MS > ax_now_ms()) {
        /* a fetch just looked and did not find it: do not hammer the server (or its notaries) */
        lk->want[i].result = AX_ENOTFOUND;
        lookup_release(lk);
        return;
    }
    bool fresh = f == NULL;
    if (fresh) {
        f = ax_calloc(1, sizeof(*f));
        f->fed = fed;
        snprintf(f->server, sizeof(f->server), "%s", server);
        snprintf(f->map_key, sizeof(f->map_key), "%s", map_key);
        f->direct_only = direct_only;
        f->notary = -1;
        ax_strmap_put(&fed->fetches, map_key, f);
    }
    key_waiter_t *w = ax_malloc(sizeof(*w));
    w->lk = lk;
    w->i = i;
    w->next = f->waiters;
    f->waiters = w;
    if (fresh)
        start_direct(f);
}

void ax_keyring_start(ax_fed_t *fed, ax_key_lookup_t *lk, bool direct_only)
{
    lk->_pending = lk->n + 1; /* +1 until every want is started */
    for (size_t i = 0; i < lk->n; ++i) {
        ax_key_want_t *w = &lk->want[i];
        if (strcmp(w->server_name, fed->server_name) == 0) {
            w->result = own_key(fed, w);
            --lk->_pending;
        } else if (ax_keyring_cached(fed->db, w->server_name, w->key_id, w->valid_at_ts, w->allow_old, w->public_key) ==
                   0) {
            w->result = 0;
            --lk->_pending;
        } else if (fed->refusing || !ax_id_is_valid_server_name(w->server_name)) {
            w->result = fed->refusing ? AX_ESHUTDOWN : AX_ENOTFOUND;
            --lk->_pending;
        } else {
            join_fetch(fed, lk, i, direct_only);
        }
    }
    lookup_release(lk);
}

static void on_lookup_in(ax_task_t *task)
{
    ax_fed_t *fed = AX_CONTAINER_OF(task->port, ax_fed_t, inport.super);
    ax_key_lookup_t *lk = AX_CONTAINER_OF(task, ax_key_lookup_t, _in);
    if (task->owner == NULL) { /* the loop is being torn down */
        for (size_t i = 0; i < lk->n; ++i)
            lk->want[i].result = AX_ESHUTDOWN;
        ax_fed_complete(&lk->super, 0);
        return;
    }
    ax_keyring_start(fed, lk, false);
}

void ax_keyring_lookup(ax_fed_t *fed, ax_key_lookup_t *lk)
{
    lk->_in.done = on_lookup_in;
    lk->_in.port = &fed->inport.super;
    lk->_in.owner = lk;
    lk->_in._next = NULL;
    fed->inport.super.post(&fed->inport.super, &lk->_in);
}
