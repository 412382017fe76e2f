/*
 * api_keys.c -- signing keys over the Server-Server API (spec: "Retrieving
 * server keys"; keys_server.yaml, keys_query.yaml): this server's own key
 * document (GET /_matrix/key/v2/server, with the former keys `axon admin
 * rotate-key` retired under old_verify_keys), the notary endpoints that
 * serve other servers' key documents countersigned by us (GET and POST
 * /_matrix/key/v2/query), and GET /_matrix/federation/v1/version.
 *
 * The own document is signed once and reused until half its validity has
 * passed, so serving it costs a copy, not an ed25519 signature.
 */
#include "server/handlers.h"
#include "core/events.h"
#include "federation/federation.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define KEY_VALIDITY_MS    (24ULL * 3600 * 1000)
#define NOTARY_MAX_SERVERS 100

/* ---- Our own key document ---- */

typedef struct st_old_keys_t {
    json_t *old;
    const char *current;
} old_keys_t;

static int add_old_key(void *arg, const char *key_id, json_t *rec)
{
    old_keys_t *o = arg;
    json_t *key = json_object_get(rec, "key"), *expired = json_object_get(rec, "expired_ts");
    /* the key in use is never "old", even right after a rotation the server has not yet picked up */
    if (strcmp(key_id, o->current) != 0 && json_is_string(key) && json_is_integer(expired))
        json_object_set_new(o->old, key_id, json_pack("{s:O, s:O}", "key", key, "expired_ts", expired));
    return 0;
}

/* Refreshes the cached signed document when it is missing or half expired (call with key_mutex held). */
static void own_doc_refresh(ax_server_t *srv, uint64_t now)
{
    if (srv->key_body != NULL && now + KEY_VALIDITY_MS / 2 <= srv->key_valid_until)
        return;
    const ax_signing_key_t *key = &srv->signing_key;
    char pk[AX_B64_LEN(crypto_sign_PUBLICKEYBYTES) + 1];
    ax_b64_encode(pk, key->public_key, sizeof(key->public_key), false);
    old_keys_t o = {json_object(), key->key_id};
    ax_txn_t *txn;
    if (ax_db_read_begin(srv->db, &txn) == 0) {
        ax_db_old_keys_foreach(txn, add_old_key, &o);
        ax_db_read_end(txn);
    }
    uint64_t until = now + KEY_VALIDITY_MS;
    json_t *doc = json_pack("{s:s, s:I, s:{s:{s:s}}, s:o}", "server_name", srv->cfg->server_name, "valid_until_ts",
                            (json_int_t)until, "verify_keys", key->key_id, "key", pk, "old_verify_keys", o.old);
    if (doc != NULL && ax_sign_json(doc, srv->cfg->server_name, key) == 0) {
        free(srv->key_body);
        srv->key_body = json_dumps(doc, JSON_COMPACT);
        srv->key_len = strlen(srv->key_body);
        srv->key_valid_until = until;
    }
    json_decref(doc);
}

/* A new reference to our signed key document, or NULL. */
static json_t *own_doc(ax_server_t *srv)
{
    pthread_mutex_lock(&srv->key_mutex);
    own_doc_refresh(srv, ax_now_ms());
    json_t *doc = srv->key_body != NULL ? json_loadb(srv->key_body, srv->key_len, 0, NULL) : NULL;
    pthread_mutex_unlock(&srv->key_mutex);
    return doc;
}

/* GET /_matrix/key/v2/server */
int ax_fed_keys_server(ax_req_t *r)
{
    ax_server_t *srv = r->srv;
    pthread_mutex_lock(&srv->key_mutex);
    own_doc_refresh(srv, ax_now_ms());
    char *body = srv->key_body != NULL ? ax_pstrndup(r, srv->key_body, srv->key_len) : NULL;
    size_t len = srv->key_len;
    pthread_mutex_unlock(&srv->key_mutex);
    if (body == NULL)
        return ax_reply_error(r, AX_M_INTERNAL, "Cannot sign the key document");
    return ax_reply_raw(r, 200, "application/json", body, len);
}

/* ---- Notary ---- */

typedef struct st_notary_item_t {
    const char *server;
    const char *key_id; /* "" for all */
    uint64_t min_valid;
} notary_item_t;

typedef struct st_notary_t {
    notary_item_t *items;
    size_t n;
} notary_t;

typedef struct st_doc_set_t {
    json_t *docs; /* array of documents to serve */
    json_t *seen; /* their canonical text, to serve each once */
} doc_set_t;

static int collect_doc(void *arg, const char *key_id, json_t *rec)
{
    AX_UNUSED(key_id);
    doc_set_t *d = arg;
    json_t *doc = json_object_get(rec, "doc");
    if (!json_is_object(doc))
        return 0;
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (text != NULL && json_object_get(d->seen, text) == NULL) {
        json_object_set_new(d->seen, text, json_true());
        json_array_append(d->docs, doc);
    }
    free(text);
    return 0;
}

static int notary_reply(ax_req_t *r, const notary_t *q)
{
    ax_server_t *srv = r->srv;
    json_t *out = json_array();
    ax_txn_t *txn;
    if (ax_db_read_begin(srv->db, &txn) != 0) {
        json_decref(out);
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    }
    for (size_t i = 0; i < q->n; ++i) {
        const char *server = q->items[i].server;
        if (strcmp(server, srv->cfg->server_name) == 0) {
            json_t *doc = own_doc(srv);
            if (doc != NULL)
                json_array_append_new(out, doc);
            continue;
        }
        doc_set_t d = {json_array(), json_object()};
        ax_db_server_keys_foreach(txn, server, collect_doc, &d);
        size_t k;
        json_t *doc;
        json_array_foreach(d.docs, k, doc)
        {
            /* countersigned: "the notary server must sign the keys returned by the queried server" */
            json_t *copy = json_deep_copy(doc);
            if (ax_sign_json(copy, srv->cfg->server_name, &srv->signing_key) == 0)
                json_array_append_new(out, copy);
            else
                json_decref(copy);
        }
        json_decref(d.docs);
        json_decref(d.seen);
    }
    ax_db_read_end(txn);
    return ax_reply_json_new(r, 200, json_pack("{s:o}", "server_keys", out));
}

static void notary_refreshed(ax_req_t *r, ax_task_t *task)
{
    free(task);
    if (r != NULL)
        notary_reply(r, r->route_data);
}

/* Refreshes what we hold about each queried server when it is not valid long enough, then answers. */
static int notary_run(ax_req_t *r, notary_t *q)
{
    ax_server_t *srv = r->srv;
    size_t stale = 0;
    bool *need = ax_palloc(r, q->n + 1);
    for (size_t i = 0; i < q->n; ++i) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        notary_item_t *it = &q->items[i];
        need[i] = srv->fed != NULL && strcmp(it->server, srv->cfg->server_name) != 0 &&
                  ax_keyring_cached(srv->db, it->server, it->key_id, it->min_valid, it->key_id[0] != '\0', pk) != 0;
        stale += need[i];
    }
    if (stale == 0)
        return notary_reply(r, q);
    ax_key_lookup_t *lk = ax_key_lookup_new(stale);
    for (size_t i = 0, k = 0; i < q->n; ++i) {
        notary_item_t *it = &q->items[i];
        if (need[i])
            ax_key_want_set(lk, k++, it->server, it->key_id, it->min_valid, it->key_id[0] != '\0');
    }
    r->route_data = q;
    ax_req_bind_task(r, &lk->super, notary_refreshed);
    ax_keyring_lookup(srv->fed, lk);
    return 0;
}

static bool parse_ts(const char *s, uint64_t *out)
{
    return s != NULL && ax_parse_u64(s, out) == 0;
}

/* GET /_matrix/key/v2/query/{serverName} */
int ax_fed_keys_query_get(ax_req_t *r)
{
    const char *server = r->params[0];
    if (!ax_id_is_valid_server_name(server) || strlen(server) > 255)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid server name");
    uint64_t min = ax_now_ms();
    const char *ts = ax_req_query(r, "minimum_valid_until_ts");
    if (ts != NULL && !parse_ts(ts, &min))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "minimum_valid_until_ts must be an integer");
    notary_t *q = ax_palloc(r, sizeof(*q));
    q->n = 1;
    q->items = ax_palloc(r, sizeof(notary_item_t));
    q->items[0] = (notary_item_t){ax_pstrdup(r, server), "", min};
    return notary_run(r, q);
}

/* POST /_matrix/key/v2/query */
int ax_fed_keys_query_post(ax_req_t *r)
{
    json_t *body, *servers;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_object_or_reply(r, body, "server_keys", true, &servers) != 0)
        return 0;
    size_t n = json_object_size(servers);
    if (n > NOTARY_MAX_SERVERS)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Too many servers in one query");
    notary_t *q = ax_palloc(r, sizeof(*q));
    q->n = 0;
    q->items = ax_palloc(r, (n + 1) * sizeof(notary_item_t));
    uint64_t now = ax_now_ms();
    const char *server;
    json_t *criteria;
    json_object_foreach(servers, server, criteria)
    {
        if (!json_is_object(criteria))
            return ax_reply_error(r, AX_M_BAD_JSON, "server_keys values must be objects");
        if (!ax_id_is_valid_server_name(server) || strlen(server) > 255)
            continue; /* nothing to say about a name that cannot exist */
        uint64_t min = now;
        const char *kid, *only = "";
        json_t *c;
        json_object_foreach(criteria, kid, c)
        {
            json_t *ts = json_object_get(c, "minimum_valid_until_ts");
            if (!json_is_object(c) || (ts != NULL && !json_is_integer(ts)))
                return ax_reply_error(r, AX_M_BAD_JSON, "Malformed query criteria");
            if (ts != NULL && json_integer_value(ts) > (json_int_t)min)
                min = (uint64_t)json_integer_value(ts);
        }
        /* one key asked for by name: look for exactly that one (possibly an old key) */
        if (json_object_size(criteria) == 1) {
            json_object_foreach(criteria, kid, c)
            {
                if (strlen(kid) < AX_KEY_ID_MAX)
                    only = ax_pstrdup(r, kid);
            }
        }
        q->items[q->n++] = (notary_item_t){ax_pstrdup(r, server), only, min};
    }
    return notary_run(r, q);
}

/* GET /_matrix/federation/v1/version */
int ax_fed_version(ax_req_t *r)
{
    if (!r->srv->cfg->federation_enabled)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Federation is disabled on this server");
    return ax_reply_json_new(r, 200, json_pack("{s:{s:s, s:s}}", "server", "name", "axon", "version", AX_VERSION));
}
