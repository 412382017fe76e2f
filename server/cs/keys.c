/*
 * keys.c -- end-to-end encryption key management (spec: Client-Server API
 * "End-to-End Encryption"; keys.yaml, cross_signing.yaml): uploading,
 * querying and claiming device, one-time and fallback keys, key changes,
 * cross-signing keys and signatures, and the E2EE extensions of /sync
 * (device_lists, device_one_time_keys_count,
 * device_unused_fallback_key_types).
 *
 * The server never sees a secret: it checks the signatures it can, stores
 * public keys, and tells the users who share a room with someone when that
 * someone's keys change (a device-list change on the writer's stream).
 * Users of other servers in /keys/query and /keys/claim are asked of
 * their servers (/user/keys/query, /user/keys/claim), every server at once
 * within the request's timeout; what does not answer is listed under
 * "failures".  Nothing is cached: each query asks again.
 */
#include "server/cs/cs.h"
#include "common/strmap.h"
#include "core/events.h"
#include "core/keys.h"
#include "federation/federation.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ALGORITHM 64
#define MAX_KEY_ID    128

/* Synapse always reports a count for signed_curve25519, even 0, because some clients
 * only upload keys when they see the algorithm's count (spec: "servers MAY omit"). */
#define ALWAYS_COUNTED "signed_curve25519"

static const ax_uia_flow_t password_flow[] = {{{"m.login.password", NULL}}};

static bool is_local(ax_req_t *r, const char *user_id)
{
    return ax_streq(ax_id_domain(user_id), r->srv->cfg->server_name);
}

/* Every one-time key count of a device, with the always-reported algorithm (a new reference). */
static json_t *otk_counts(ax_txn_t *txn, const char *user_id, const char *device_id)
{
    json_t *counts = NULL;
    if (ax_db_otk_counts(txn, user_id, device_id, &counts) != 0)
        counts = json_object();
    if (json_object_get(counts, ALWAYS_COUNTED) == NULL)
        json_object_set_new(counts, ALWAYS_COUNTED, json_integer(0));
    return counts;
}

/* ---- POST /keys/upload ---- */

/* Checks the device_keys of an upload: the requester's user and 'device_id', well formed, self-signed. */
static int check_device_keys_or_reply(ax_req_t *r, const char *device_id, json_t *dk)
{
    const char *user = json_string_value(json_object_get(dk, "user_id"));
    const char *device = json_string_value(json_object_get(dk, "device_id"));
    json_t *algorithms = json_object_get(dk, "algorithms"), *keys = json_object_get(dk, "keys");
    json_t *sigs = json_object_get(dk, "signatures");
    /* spec: user_id, device_id, algorithms, keys and signatures are required; Synapse answers M_BAD_JSON */
    if (user == NULL || device == NULL || !json_is_array(algorithms) || !json_is_object(keys) || !json_is_object(sigs))
        return ax_reply_error(r, AX_M_BAD_JSON,
                              "device_keys needs user_id, device_id, algorithms, keys and signatures"),
               -1;
    if (strcmp(user, r->auth.user_id) != 0)
        return ax_reply_error(r, AX_M_BAD_JSON, "device_keys.user_id is not the requester's user ID"), -1;
    if (strcmp(device, device_id) != 0)
        return ax_reply_error(r, AX_M_BAD_JSON, "device_keys.device_id is not the device the keys are for"), -1;
    size_t i;
    json_t *v;
    json_array_foreach(algorithms, i, v)
    {
        if (!json_is_string(v))
            return ax_reply_error(r, AX_M_BAD_JSON, "device_keys.algorithms must be strings"), -1;
    }
    const char *k;
    json_object_foreach(keys, k, v)
    {
        if (!json_is_string(v))
            return ax_reply_error(r, AX_M_BAD_JSON, "device_keys.keys must map key IDs to strings"), -1;
    }
    json_t *per_user;
    json_object_foreach(sigs, k, per_user)
    {
        const char *kid;
        if (!json_is_object(per_user))
            return ax_reply_error(r, AX_M_BAD_JSON, "device_keys.signatures must map users to objects"), -1;
        json_object_foreach(per_user, kid, v)
        {
            if (!json_is_string(v))
                return ax_reply_error(r, AX_M_BAD_JSON, "signatures must be strings"), -1;
        }
    }
    /* the device signs its own keys with its ed25519 key */
    const char *key_id = ax_psprintf(r, "ed25519:%s", device);
    const char *ed25519 = json_string_value(json_object_get(keys, key_id));
    if (ed25519 == NULL)
        return ax_reply_error(r, AX_M_BAD_JSON, ax_psprintf(r, "device_keys.keys has no %s", key_id)), -1;
    int rc = ax_e2ee_verify(dk, user, key_id, ed25519);
    if (rc == AX_EINVAL)
        return ax_reply_error(r, AX_M_BAD_JSON, ax_psprintf(r, "%s is not an ed25519 public key", key_id)), -1;
    if (rc != 0)
        return ax_reply_error(r, AX_M_INVALID_SIGNATURE, "device_keys are not signed by the device's ed25519 key"), -1;
    return 0;
}

/* Checks a map of "<algorithm>:<key_id>" to key (a string, or an object with key and signatures). */
static int check_key_map_or_reply(ax_req_t *r, json_t *map, const char *field, bool fallback)
{
    json_t *algorithms = json_object();
    const char *id;
    json_t *key;
    int rc = 0;
    json_object_foreach(map, id, key)
    {
        char alg[MAX_ALGORITHM + 1], kid[MAX_KEY_ID + 1];
        if (ax_e2ee_split_key_id(id, alg, sizeof(alg), kid, sizeof(kid)) != 0) {
            ax_reply_error(r, AX_M_BAD_JSON,
                           ax_psprintf(r, "%s: '%s' is not <algorithm>:<key_id> (at most %d and %d bytes)", field, id,
                                       MAX_ALGORITHM, MAX_KEY_ID));
            rc = -1;
            break;
        }
        bool ok = json_is_string(key) || (json_is_object(key) && json_is_string(json_object_get(key, "key")) &&
                                          json_is_object(json_object_get(key, "signatures")));
        if (!ok) {
            ax_reply_error(r, AX_M_BAD_JSON,
                           ax_psprintf(r, "%s: '%s' must be a string or an object with key and signatures", field, id));
            rc = -1;
            break;
        }
        /* spec: "There can only be at most one key per algorithm uploaded" */
        if (fallback && json_object_get(algorithms, alg) != NULL) {
            ax_reply_error(r, AX_M_INVALID_PARAM, ax_psprintf(r, "fallback_keys: more than one key for %s", alg));
            rc = -1;
            break;
        }
        json_object_set_new(algorithms, alg, json_true());
    }
    json_decref(algorithms);
    return rc;
}

int ax_cs_keys_check_or_reply(ax_req_t *r, const char *device_id, json_t *device_keys, json_t *one_time_keys,
                              json_t *fallback_keys)
{
    if ((device_keys != NULL && check_device_keys_or_reply(r, device_id, device_keys) != 0) ||
        (one_time_keys != NULL && check_key_map_or_reply(r, one_time_keys, "one_time_keys", false) != 0) ||
        (fallback_keys != NULL && check_key_map_or_reply(r, fallback_keys, "fallback_keys", true) != 0))
        return -1;
    return 0;
}

typedef struct st_upload_t {
    char user_id[256];
    char device_id[256];
    json_t *device_keys;   /* to store, or NULL */
    json_t *one_time_keys; /* {"alg:id": key} or NULL */
    json_t *fallback_keys; /* {"alg:id": key} or NULL */
    /* the outcome, reset by every run of upload_apply */
    json_t *counts;
    char why[512];
} upload_t;

static void upload_free(void *p)
{
    upload_t *u = p;
    json_decref(u->device_keys);
    json_decref(u->one_time_keys);
    json_decref(u->fallback_keys);
    json_decref(u->counts);
    free(u);
}

static int store_otks(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *otks, char *why,
                      size_t cap)
{
    const char *id;
    json_t *key;
    char alg[MAX_ALGORITHM + 1], kid[MAX_KEY_ID + 1];
    /* first look for conflicts, so a refused upload writes nothing */
    json_t *fresh = json_object();
    int rc = 0;
    json_object_foreach((json_t *)otks, id, key)
    {
        ax_e2ee_split_key_id(id, alg, sizeof(alg), kid, sizeof(kid));
        json_t *old = NULL;
        rc = ax_db_otk_get(txn, user_id, device_id, alg, kid, &old);
        if (rc == AX_ENOTFOUND) {
            json_object_set(fresh, id, key);
            rc = 0;
            continue;
        }
        if (rc != 0)
            break;
        /* the same key again (its signatures may differ) is a retry; another key under the ID is not */
        bool same = ax_e2ee_same_signed_content(old, key);
        json_decref(old);
        if (!same) {
            snprintf(why, cap, "One time key %s already exists with another value", id);
            rc = AX_EEXIST;
            break;
        }
    }
    uint64_t seq = 0;
    if (rc == 0 && json_object_size(fresh) != 0)
        rc = ax_db_otk_next_seq(txn, &seq);
    if (rc == 0) {
        json_object_foreach(fresh, id, key)
        {
            ax_e2ee_split_key_id(id, alg, sizeof(alg), kid, sizeof(kid));
            if ((rc = ax_db_otk_add(txn, user_id, device_id, alg, kid, key, seq)) != 0)
                break;
        }
    }
    json_decref(fresh);
    return rc;
}

int ax_cs_keys_store(ax_txn_t *txn, const char *user_id, const char *device_id, const json_t *device_keys,
                     const json_t *one_time_keys, const json_t *fallback_keys, char *why, size_t cap)
{
    int rc;
    if (device_keys != NULL) {
        json_t *old = NULL;
        rc = ax_db_devicekeys_get(txn, user_id, device_id, &old);
        if (rc == 0) {
            /*
             * A device's identity keys never change: the same keys again are a
             * retry, other keys are refused (a client with new keys logs in as a
             * new device).  Otherwise a stolen access token could swap the keys
             * of a device others have verified.
             */
            bool same = ax_e2ee_same_signed_content(old, device_keys);
            json_decref(old);
            if (!same) {
                snprintf(why, cap, "This device already has other keys; log in as a new device");
                return AX_ECONFLICT;
            }
        } else if (rc == AX_ENOTFOUND) {
            if ((rc = ax_db_devicekeys_put(txn, user_id, device_id, device_keys)) != 0 ||
                (rc = ax_db_devicelist_touch(txn, user_id, NULL)) != 0 ||
                (rc = ax_db_fedq_device_update(txn, user_id, device_id)) != 0)
                return rc;
        } else {
            return rc;
        }
    }
    if (one_time_keys != NULL && (rc = store_otks(txn, user_id, device_id, one_time_keys, why, cap)) != 0)
        return rc;
    if (fallback_keys != NULL) {
        const char *id;
        json_t *key;
        json_object_foreach((json_t *)fallback_keys, id, key)
        {
            char alg[MAX_ALGORITHM + 1], kid[MAX_KEY_ID + 1];
            ax_e2ee_split_key_id(id, alg, sizeof(alg), kid, sizeof(kid));
            if ((rc = ax_db_fallback_put(txn, user_id, device_id, alg, kid, key)) != 0)
                return rc;
        }
    }
    return 0;
}

static int upload_apply(ax_txn_t *txn, void *data)
{
    upload_t *u = data;
    json_decref(u->counts);
    u->counts = NULL;
    u->why[0] = '\0';
    /* the device may have been deleted since the token was checked: no keys without a device */
    json_t *dev = NULL;
    int rc = ax_db_device_get(txn, u->user_id, u->device_id, &dev);
    json_decref(dev);
    if (rc != 0)
        return rc;
    rc = ax_cs_keys_store(txn, u->user_id, u->device_id, u->device_keys, u->one_time_keys, u->fallback_keys, u->why,
                          sizeof(u->why));
    if (rc == 0)
        u->counts = otk_counts(txn, u->user_id, u->device_id);
    return rc;
}

static void upload_written(ax_req_t *r, int result, void *data)
{
    upload_t *u = data;
    if (result == AX_ECONFLICT)
        return (void)ax_reply_error(r, AX_M_INVALID_PARAM, u->why);
    /* Synapse refuses a one-time key ID reused for another key with a plain 400 (M_UNKNOWN) */
    if (result == AX_EEXIST)
        return (void)ax_reply_error_status(r, 400, AX_M_UNKNOWN, u->why);
    if (result == AX_ENOTFOUND)
        return (void)ax_reply_error(r, AX_M_UNKNOWN_TOKEN, "This device has been deleted");
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the keys");
    ax_reply_json_new(r, 200, json_pack("{s:O}", "one_time_key_counts", u->counts));
}

/* POST /_matrix/client/v3/keys/upload */
int ax_cs_keys_upload(ax_req_t *r)
{
    json_t *body, *dk = NULL, *otks = NULL, *fallbacks = NULL;
    if (ax_req_json_body_or_reply(r, &body) != 0 || ax_field_object_or_reply(r, body, "device_keys", false, &dk) != 0 ||
        ax_field_object_or_reply(r, body, "one_time_keys", false, &otks) != 0 ||
        ax_field_object_or_reply(r, body, "fallback_keys", false, &fallbacks) != 0)
        return 0;
    if (r->auth.device_id == NULL || strlen(r->auth.device_id) >= 256)
        return ax_reply_error(r, AX_M_UNKNOWN, "Uploading keys needs a device");
    if (ax_cs_keys_check_or_reply(r, r->auth.device_id, dk, otks, fallbacks) != 0)
        return 0;
    upload_t *u = ax_calloc(1, sizeof(*u));
    snprintf(u->user_id, sizeof(u->user_id), "%s", r->auth.user_id);
    snprintf(u->device_id, sizeof(u->device_id), "%s", r->auth.device_id);
    if (dk != NULL) {
        u->device_keys = json_deep_copy(dk);
        json_object_del(u->device_keys, "unsigned"); /* the server adds its own on the way out */
    }
    u->one_time_keys = otks != NULL ? json_deep_copy(otks) : NULL;
    u->fallback_keys = fallbacks != NULL ? json_deep_copy(fallbacks) : NULL;
    ax_req_write(r, upload_apply, upload_written, u, upload_free);
    return 0;
}

/* ---- POST /keys/query ---- */

#define REMOTE_TIMEOUT_MS  10000 /* keys/query and keys/claim: the spec's default 'timeout' */
#define REMOTE_TIMEOUT_MAX 60000

/* The 'timeout' of a query or claim body (ms), within our bounds; replies and returns -1 when malformed. */
static int remote_timeout_or_reply(ax_req_t *r, json_t *body, uint64_t *out)
{
    json_int_t t = REMOTE_TIMEOUT_MS;
    if (ax_field_int_or_reply(r, body, "timeout", false, &t) != 0)
        return -1;
    if (json_object_get(body, "timeout") == NULL || json_is_null(json_object_get(body, "timeout")))
        t = REMOTE_TIMEOUT_MS;
    *out = t < 0 ? 0 : t > REMOTE_TIMEOUT_MAX ? REMOTE_TIMEOUT_MAX : (uint64_t)t;
    return 0;
}

/* The "failures" entry of a server that did not answer usefully (spec: status and a message). */
static json_t *remote_failure_of(const ax_fed_request_t *fr)
{
    if (fr->super.result != 0)
        return json_pack("{s:i, s:s}", "status", 503, "message", fr->error[0] ? fr->error : "Unreachable");
    const char *err = json_string_value(json_object_get(fr->json, "error"));
    return json_pack("{s:i, s:s}", "status", fr->status, "message",
                     err != NULL         ? err
                     : fr->status == 200 ? "Malformed answer"
                                         : "Request failed");
}

/*
 * Builds one request per server for the remote users of 'wanted' ({user:
 * value}, borrowed): the body is {'field': {user: value}} with that
 * server's users.  NULL when there are none (or federation is off: then
 * each of their servers is put under 'failures').
 */
static ax_fed_batch_t *remote_batch(ax_req_t *r, json_t *wanted, const char *path, const char *field,
                                    uint64_t timeout_ms, json_t *failures)
{
    json_t *by_server = json_object();
    const char *user;
    json_t *v;
    json_object_foreach(wanted, user, v)
    {
        if (is_local(r, user))
            continue;
        const char *server = ax_id_domain(user);
        json_t *users = json_object_get(by_server, server);
        if (users == NULL)
            json_object_set_new(by_server, server, users = json_object());
        json_object_set(users, user, v);
    }
    ax_fed_batch_t *b = NULL;
    const char *server;
    json_t *users;
    json_object_foreach(by_server, server, users)
    {
        if (r->srv->fed == NULL) {
            json_object_set_new(failures, server,
                                json_pack("{s:i, s:s}", "status", 503, "message", "Federation is disabled"));
            continue;
        }
        if (b == NULL)
            b = ax_fed_batch_new();
        ax_fed_request_t *fr = ax_fed_request_new(server, "POST", path, json_pack("{s:O}", field, users));
        fr->timeout_ms = timeout_ms != 0 ? timeout_ms : 1;
        ax_fed_batch_add(b, fr);
    }
    json_decref(by_server);
    return b;
}

/* Copies into 'into' the entries of 'from' (borrowed) whose key is a user of 'server' that passes 'ok'. */
static void merge_users(json_t *into, json_t *from, const char *server, bool (*ok)(const char *user, json_t *v))
{
    const char *user;
    json_t *v;
    json_object_foreach(from, user, v)
    {
        /* a server speaks for its own users only */
        if (ax_streq(ax_id_domain(user), server) && ax_id_is_valid_user_id(user) && ok(user, v))
            json_object_set(into, user, v);
    }
}

/* {device_id: device keys} whose keys name that user and device */
static bool devices_ok(const char *user, json_t *v)
{
    if (!json_is_object(v))
        return false;
    const char *dev;
    json_t *keys;
    void *tmp;
    json_object_foreach_safe(v, tmp, dev, keys)
    {
        if (!json_is_object(keys) || !ax_streq(json_string_value(json_object_get(keys, "user_id")), user) ||
            !ax_streq(json_string_value(json_object_get(keys, "device_id")), dev))
            json_object_del(v, dev);
    }
    return true;
}

/* a cross-signing key of that user */
static bool xsign_ok(const char *user, json_t *v)
{
    return json_is_object(v) && ax_streq(json_string_value(json_object_get(v, "user_id")), user);
}

static void query_remote_done(ax_req_t *r, ax_task_t *task)
{
    ax_fed_batch_t *b = (ax_fed_batch_t *)task;
    if (r != NULL) {
        json_t *out = r->route_data;
        for (size_t i = 0; i < b->n; ++i) {
            ax_fed_request_t *fr = b->reqs[i];
            json_t *dk = json_object_get(fr->json, "device_keys");
            if (fr->super.result != 0 || fr->status != 200 || !json_is_object(dk)) {
                json_object_set_new(json_object_get(out, "failures"), fr->destination, remote_failure_of(fr));
                continue;
            }
            merge_users(json_object_get(out, "device_keys"), dk, fr->destination, devices_ok);
            merge_users(json_object_get(out, "master_keys"), json_object_get(fr->json, "master_keys"), fr->destination,
                        xsign_ok);
            merge_users(json_object_get(out, "self_signing_keys"), json_object_get(fr->json, "self_signing_keys"),
                        fr->destination, xsign_ok);
        }
        ax_reply_json_new(r, 200, json_incref(out));
    }
    ax_fed_batch_free(b);
}

/* POST /_matrix/client/v3/keys/query */
int ax_cs_keys_query(ax_req_t *r)
{
    json_t *body, *wanted;
    uint64_t timeout_ms;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_object_or_reply(r, body, "device_keys", true, &wanted) != 0 ||
        remote_timeout_or_reply(r, body, &timeout_ms) != 0)
        return 0;
    const char *user;
    json_t *list;
    json_object_foreach(wanted, user, list)
    {
        if (!ax_id_is_valid_user_id(user))
            return ax_reply_error(r, AX_M_INVALID_PARAM, ax_psprintf(r, "'%s' is not a user ID", user));
        if (!json_is_array(list))
            return ax_reply_error(r, AX_M_BAD_JSON, "device_keys must map user IDs to lists of device IDs");
        size_t i;
        json_t *d;
        json_array_foreach(list, i, d)
        {
            if (!json_is_string(d))
                return ax_reply_error(r, AX_M_BAD_JSON, "device IDs must be strings");
        }
    }
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *out = ax_req_hold_json(r, json_pack("{s:{}, s:{}, s:{}, s:{}, s:{}}", "device_keys", "failures",
                                                "master_keys", "self_signing_keys", "user_signing_keys"));
    json_t *devices = json_object_get(out, "device_keys"), *masters = json_object_get(out, "master_keys"),
           *selfs = json_object_get(out, "self_signing_keys"), *usks = json_object_get(out, "user_signing_keys");
    json_object_foreach(wanted, user, list)
    {
        if (!is_local(r, user))
            continue;
        /* unknown users and devices are simply missing, as the spec says */
        json_object_set_new(devices, user, ax_keys_user_devices(txn, user, list));
        json_t *k;
        if ((k = ax_keys_xsign_view(txn, user, "master", r->auth.user_id)) != NULL)
            json_object_set_new(masters, user, k);
        if ((k = ax_keys_xsign_view(txn, user, "self_signing", r->auth.user_id)) != NULL)
            json_object_set_new(selfs, user, k);
        /* the user-signing key is only ever shown to its owner */
        if (strcmp(user, r->auth.user_id) == 0 && (k = ax_keys_xsign_view(txn, user, "user_signing", user)) != NULL)
            json_object_set_new(usks, user, k);
    }
    ax_db_read_end(txn);
    /* other servers' users: asked of their servers, all at once */
    ax_fed_batch_t *b = remote_batch(r, wanted, "/_matrix/federation/v1/user/keys/query", "device_keys", timeout_ms,
                                     json_object_get(out, "failures"));
    if (b == NULL)
        return ax_reply_json_new(r, 200, json_incref(out));
    r->route_data = out;
    ax_req_bind_task(r, &b->super, query_remote_done);
    ax_fed_batch_submit(r->srv->fed, b);
    return 0;
}

/* ---- POST /keys/claim ---- */

typedef struct st_claim_t {
    json_t *wanted;  /* {user: {device: algorithm}}, local users only */
    json_t *claimed; /* {user: {device: {"alg:id": key}}}, rebuilt by every run */
    void (*reply)(ax_req_t *r, json_t *claimed);
} claim_t;

static void claim_free(void *p)
{
    claim_t *c = p;
    json_decref(c->wanted);
    json_decref(c->claimed);
    free(c);
}

/* Writer side, so that concurrent claims never hand out one key twice. */
static int claim_apply(ax_txn_t *txn, void *data)
{
    claim_t *c = data;
    json_decref(c->claimed);
    return ax_keys_claim(txn, c->wanted, &c->claimed);
}

static void claim_written(ax_req_t *r, int result, void *data)
{
    claim_t *c = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not claim the keys");
    c->reply(r, c->claimed);
}

void ax_cs_keys_claim_local(ax_req_t *r, json_t *wanted, void (*reply)(ax_req_t *r, json_t *claimed))
{
    claim_t *c = ax_calloc(1, sizeof(*c));
    c->wanted = wanted;
    c->reply = reply;
    ax_req_write(r, claim_apply, claim_written, c, claim_free);
}

/* route_data during a claim: {one_time_keys, failures} (remote answers first, then ours) */
static void claim_reply(ax_req_t *r, json_t *claimed)
{
    json_t *out = r->route_data;
    json_object_update(json_object_get(out, "one_time_keys"), claimed);
    ax_reply_json_new(r, 200, json_incref(out));
}

/* the claimed keys of one device: {"algorithm:key_id": key} */
static bool claimed_ok(const char *user, json_t *v)
{
    (void)user;
    if (!json_is_object(v))
        return false;
    const char *dev;
    json_t *keys;
    void *tmp;
    json_object_foreach_safe(v, tmp, dev, keys)
    {
        if (!json_is_object(keys))
            json_object_del(v, dev);
    }
    return true;
}

static void claim_local(ax_req_t *r)
{
    json_t *wanted = json_object();
    const char *user;
    json_t *devices;
    json_object_foreach(json_object_get(r->route_data, "wanted"), user, devices)
    {
        if (is_local(r, user))
            json_object_set(wanted, user, devices);
    }
    json_object_del(r->route_data, "wanted");
    ax_cs_keys_claim_local(r, wanted, claim_reply);
}

static void claim_remote_done(ax_req_t *r, ax_task_t *task)
{
    ax_fed_batch_t *b = (ax_fed_batch_t *)task;
    if (r != NULL) {
        json_t *out = r->route_data;
        for (size_t i = 0; i < b->n; ++i) {
            ax_fed_request_t *fr = b->reqs[i];
            json_t *otks = json_object_get(fr->json, "one_time_keys");
            if (fr->super.result != 0 || fr->status != 200 || !json_is_object(otks)) {
                json_object_set_new(json_object_get(out, "failures"), fr->destination, remote_failure_of(fr));
                continue;
            }
            merge_users(json_object_get(out, "one_time_keys"), otks, fr->destination, claimed_ok);
        }
        claim_local(r);
    }
    ax_fed_batch_free(b);
}

/* POST /_matrix/client/v3/keys/claim */
int ax_cs_keys_claim(ax_req_t *r)
{
    json_t *body, *wanted;
    uint64_t timeout_ms;
    if (ax_req_json_body_or_reply(r, &body) != 0 ||
        ax_field_object_or_reply(r, body, "one_time_keys", true, &wanted) != 0 ||
        remote_timeout_or_reply(r, body, &timeout_ms) != 0)
        return 0;
    const char *user, *device;
    json_t *devices, *alg;
    json_object_foreach(wanted, user, devices)
    {
        bool ok = ax_id_is_valid_user_id(user) && json_is_object(devices);
        json_object_foreach(devices, device, alg)
        {
            ok = ok && json_is_string(alg);
        }
        if (!ok)
            return ax_reply_error(r, ax_id_is_valid_user_id(user) ? AX_M_BAD_JSON : AX_M_INVALID_PARAM,
                                  "one_time_keys must map user IDs to {device ID: algorithm}");
    }
    r->route_data = ax_req_hold_json(r, json_pack("{s:{}, s:{}, s:O}", "one_time_keys", "failures", "wanted", wanted));
    ax_fed_batch_t *b = remote_batch(r, wanted, "/_matrix/federation/v1/user/keys/claim", "one_time_keys", timeout_ms,
                                     json_object_get(r->route_data, "failures"));
    if (b == NULL) {
        claim_local(r);
        return 0;
    }
    ax_req_bind_task(r, &b->super, claim_remote_done);
    ax_fed_batch_submit(r->srv->fed, b);
    return 0;
}

/* ---- device lists: GET /keys/changes and /sync ---- */

typedef struct st_dl_t {
    ax_txn_t *txn;
    const char *self;
    uint64_t from, to;
    json_t *changed;      /* {user: true} */
    json_t *joined;       /* candidates: joined a room shared with self, or self joined theirs */
    json_t *left;         /* candidates: left a room shared with self, or self left theirs */
    const char *room_id;  /* the room whose membership changes are being read */
    bool in_room_now;     /* self is joined to room_id now */
    json_t *room_joiners; /* where the members of room_id go when self joined or left it */
} dl_t;

static int dl_stream_cb(void *arg, uint64_t pos, const char *user_id, const char *observer)
{
    (void)pos;
    dl_t *d = arg;
    bool visible = observer[0] != '\0'
                       ? strcmp(observer, d->self) == 0
                       : strcmp(user_id, d->self) == 0 || ax_presence_shares_room(d->txn, d->self, user_id);
    if (visible)
        json_object_set_new(d->changed, user_id, json_true());
    return 0;
}

static int dl_room_member_cb(void *arg, const char *user_id, const char *membership)
{
    dl_t *d = arg;
    if (strcmp(membership, "join") == 0 && strcmp(user_id, d->self) != 0)
        json_object_set_new(d->room_joiners, user_id, json_true());
    return 0;
}

static int dl_change_cb(void *arg, uint64_t pos, const char *user_id, const char *membership)
{
    (void)pos;
    dl_t *d = arg;
    bool joined = strcmp(membership, "join") == 0;
    bool gone = strcmp(membership, "leave") == 0 || strcmp(membership, "ban") == 0;
    if (!joined && !gone)
        return 0; /* invites and knocks share nothing yet */
    if (strcmp(user_id, d->self) == 0) {
        /* self joined or left: everyone in the room is concerned.  When self is in the room now,
         * its members share it with self: no need to check each of them (a big room is costly) */
        if (joined && !d->in_room_now)
            return 0; /* joined, then left again: the leave lists them as candidates */
        d->room_joiners = joined ? d->changed : d->left;
        ax_db_room_members_foreach(d->txn, d->room_id, dl_room_member_cb, d);
    } else {
        json_object_set_new(joined ? d->joined : d->left, user_id, json_true());
    }
    return 0;
}

static int dl_room_cb(void *arg, const char *room_id, json_t *m)
{
    dl_t *d = arg;
    uint64_t mpos = (uint64_t)json_integer_value(json_object_get(m, "pos"));
    /* rooms self is in, and rooms self left within the window */
    d->in_room_now = ax_streq(json_string_value(json_object_get(m, "membership")), "join");
    if (!d->in_room_now && mpos <= d->from)
        return 0;
    d->room_id = room_id;
    ax_db_member_changes(d->txn, room_id, d->from, d->to, dl_change_cb, d);
    return 0;
}

static json_t *set_to_array(json_t *set)
{
    json_t *out = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(set, k, v)
    {
        json_array_append_new(out, json_string(k));
    }
    return out;
}

static void dl_add_room(void *arg, const char *room_id)
{
    ax_strmap_put(arg, room_id, (void *)1);
}

static int dl_any_cb(void *arg, uint64_t pos, const char *user_id, const char *membership)
{
    (void)pos, (void)user_id, (void)membership;
    *(bool *)arg = true;
    return 1;
}

static void dl_visit_room(void *arg, const char *room_id, void *value)
{
    (void)value;
    dl_t *d = arg;
    /* most rooms of the window only had messages: the user's membership record is read (and
     * parsed) only for a room whose members changed, where dl_room_cb has something to do */
    bool any = false;
    ax_db_member_changes(d->txn, room_id, d->from, d->to, dl_any_cb, &any);
    if (!any)
        return;
    json_t *m = NULL;
    if (ax_db_membership_get(d->txn, room_id, d->self, &m) != 0)
        return; /* never the user's room */
    dl_room_cb(d, room_id, m);
    json_decref(m);
}

int ax_cs_device_lists(ax_txn_t *txn, ax_changes_t *changes, const char *user_id, uint64_t from, uint64_t to,
                       json_t **changed, json_t **left)
{
    dl_t d = {txn, user_id, from, to, json_object(), json_object(), json_object(), NULL, false, NULL};
    /*
     * Spec "Tracking the device list for a user": users sharing a room whose
     * devices or cross-signing keys changed, and users who now share a room
     * with the client (in changed) or no longer share any (in left).  Like
     * Synapse, every shared room counts, encrypted or not, and a new shared
     * room reports its members even if another room was shared already.
     */
    int rc = ax_db_devicelist_changes(txn, from, to, dl_stream_cb, &d);
    /* membership changes: only a room with events in the window can have some, so the rooms the
     * change ring names will do; older windows read every room of the user */
    ax_strmap_t rooms = AX_STRMAP_INIT;
    if (rc >= 0 && changes != NULL && ax_changes_rooms(changes, from, to, dl_add_room, &rooms))
        ax_strmap_foreach(&rooms, dl_visit_room, &d);
    else if (rc >= 0)
        rc = ax_db_user_rooms_foreach(txn, user_id, dl_room_cb, &d);
    ax_strmap_dispose(&rooms);
    const char *u;
    json_t *v;
    json_object_foreach(d.joined, u, v)
    {
        if (ax_presence_shares_room(txn, user_id, u))
            json_object_set_new(d.changed, u, json_true());
    }
    json_t *gone = json_object();
    json_object_foreach(d.left, u, v)
    {
        if (json_object_get(d.changed, u) == NULL && !ax_presence_shares_room(txn, user_id, u))
            json_object_set_new(gone, u, json_true());
    }
    *changed = set_to_array(d.changed);
    *left = set_to_array(gone);
    json_decref(d.changed);
    json_decref(d.joined);
    json_decref(d.left);
    json_decref(gone);
    return rc < 0 ? rc : 0;
}

/* GET /_matrix/client/v3/keys/changes */
int ax_cs_keys_changes(ax_req_t *r)
{
    const char *from_s = ax_req_query(r, "from"), *to_s = ax_req_query(r, "to");
    uint64_t from, to;
    if (from_s == NULL || to_s == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "from and to are required");
    if (!ax_cs_parse_pagination(from_s, &from) || !ax_cs_parse_pagination(to_s, &to))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "from and to must be tokens from /sync");
    uint64_t now = ax_writer_stream_pos(r->srv->writer);
    if (to > now)
        to = now;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *changed = NULL, *left = NULL;
    int rc = ax_cs_device_lists(txn, r->srv->changes, r->auth.user_id, from, to, &changed, &left);
    ax_db_read_end(txn);
    if (rc != 0) {
        json_decref(changed);
        json_decref(left);
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    }
    return ax_reply_json_new(r, 200, json_pack("{s:o, s:o}", "changed", changed, "left", left));
}

/* ---- /sync ---- */

json_t *ax_cs_e2ee_sync(ax_txn_t *txn, ax_changes_t *changes, const char *user_id, const char *device_id,
                        uint64_t since, uint64_t *upto, bool *ack)
{
    json_t *out = json_object();
    /* first: a long inbox lowers 'upto', which bounds everything after */
    json_t *to_device = ax_cs_to_device_sync(txn, user_id, device_id, since, upto, ack);
    if (json_array_size(to_device) != 0)
        json_object_set_new(out, "to_device", json_pack("{s:O}", "events", to_device));
    json_decref(to_device);
    /* spec: device_lists only on incremental syncs (after an initial one, clients query) */
    if (since != 0 && since < *upto) {
        json_t *changed = NULL, *left = NULL;
        if (ax_cs_device_lists(txn, changes, user_id, since, *upto, &changed, &left) == 0 &&
            (json_array_size(changed) != 0 || json_array_size(left) != 0))
            json_object_set_new(out, "device_lists", json_pack("{s:O, s:O}", "changed", changed, "left", left));
        json_decref(changed);
        json_decref(left);
    }
    if (device_id != NULL) {
        json_object_set_new(out, "device_one_time_keys_count", otk_counts(txn, user_id, device_id));
        json_t *unused = NULL;
        if (ax_db_fallback_unused(txn, user_id, device_id, &unused) != 0)
            unused = json_array();
        json_object_set_new(out, "device_unused_fallback_key_types", unused);
    }
    return out;
}

/* ---- POST /keys/device_signing/upload ---- */

static const char *const xsign_usage[3] = {"master", "self_signing", "user_signing"};
static const char *const xsign_field[3] = {"master_key", "self_signing_key", "user_signing_key"};

typedef struct st_xsign_t {
    char user_id[256];
    json_t *keys[3]; /* the new master, self-signing and user-signing keys, or NULL */
    char master[64]; /* the master public key the others were checked against */
} xsign_t;

static void xsign_free(void *p)
{
    xsign_t *x = p;
    if (x == NULL)
        return;
    for (int i = 0; i < 3; ++i)
        json_decref(x->keys[i]);
    free(x);
}

static int xsign_apply(ax_txn_t *txn, void *data)
{
    xsign_t *x = data;
    json_t *stored = NULL;
    const char *pub = NULL;
    /* without a new master key, the others were checked against the stored one: it must still be it */
    if (x->keys[0] == NULL) {
        int rc = ax_db_xsign_get(txn, x->user_id, "master", &stored);
        bool same =
            rc == 0 && ax_e2ee_xsign_check(stored, x->user_id, "master", &pub) == 0 && strcmp(pub, x->master) == 0;
        json_decref(stored);
        if (!same)
            return AX_ECONFLICT;
    }
    bool everyone = false, self_only = false;
    for (int i = 0; i < 3; ++i) {
        if (x->keys[i] == NULL)
            continue;
        stored = NULL;
        bool same = ax_db_xsign_get(txn, x->user_id, xsign_usage[i], &stored) == 0 &&
                    ax_e2ee_same_signed_content(stored, x->keys[i]);
        json_decref(stored);
        if (same)
            continue; /* unchanged: keep the signatures gathered since */
        int rc = ax_db_xsign_put(txn, x->user_id, xsign_usage[i], x->keys[i]);
        if (rc != 0)
            return rc;
        if (i == 2)
            self_only = true;
        else
            everyone = true;
    }
    /* master and self-signing keys concern everyone who shares a room (other servers through
     * m.signing_key_update); the user-signing key only its owner */
    if (everyone) {
        int rc = ax_db_devicelist_touch(txn, x->user_id, NULL);
        return rc != 0 ? rc : ax_db_fedq_signing_key_update(txn, x->user_id);
    }
    if (self_only)
        return ax_db_devicelist_touch(txn, x->user_id, x->user_id);
    return 0;
}

static void xsign_written(ax_req_t *r, int result, void *data)
{
    (void)data;
    if (result == AX_ECONFLICT)
        return (void)ax_reply_error(r, AX_M_INVALID_SIGNATURE,
                                    "The master key changed meanwhile; sign with the new one");
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the cross-signing keys");
    ax_reply_json_new(r, 200, json_object());
}

/* Keeps the job exactly as long as the request unless UIA hands it to the writer. */
static void xsign_hold_dispose(void *p)
{
    xsign_free(*(xsign_t **)p);
}

static void xsign_authorised(ax_req_t *r, json_t *body, json_t *session, void *arg)
{
    (void)body, (void)session;
    xsign_t **slot = arg;
    xsign_t *x = *slot;
    *slot = NULL;
    ax_req_write(r, xsign_apply, xsign_written, x, xsign_free);
}

/* POST /_matrix/client/v3/keys/device_signing/upload */
int ax_cs_keys_device_signing_upload(ax_req_t *r)
{
    json_t *body, *given[3] = {NULL, NULL, NULL};
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    for (int i = 0; i < 3; ++i)
        if (ax_field_object_or_reply(r, body, xsign_field[i], false, &given[i]) != 0)
            return 0;
    const char *user = r->auth.user_id;
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *stored[3] = {NULL, NULL, NULL};
    bool changes = false, key_is_device = false;
    for (int i = 0; i < 3; ++i) {
        ax_db_xsign_get(txn, user, xsign_usage[i], &stored[i]);
        if (given[i] == NULL)
            continue;
        if (stored[i] == NULL || !ax_e2ee_same_signed_content(stored[i], given[i]))
            changes = true;
        const char *pub = NULL;
        json_t *dev = NULL;
        if (ax_e2ee_xsign_check(given[i], user, xsign_usage[i], &pub) == 0 &&
            ax_db_device_get(txn, user, pub, &dev) == 0)
            key_is_device = true;
        json_decref(dev);
    }
    ax_db_read_end(txn);
    /* the stored keys live as long as the request (borrowed below) */
    ax_req_hold_json(r, json_pack("[o?, o?, o?]", stored[0], stored[1], stored[2]));
    /* spec (v1.11): the same keys again need no authentication and change nothing */
    if (!changes)
        return ax_reply_json_new(r, 200, json_object());

    /* if a master key is uploaded, check it; else the others are checked against the stored one */
    json_t *master = given[0] != NULL ? given[0] : stored[0];
    const char *master_pub = NULL;
    if (master == NULL)
        return ax_reply_error(r, AX_M_MISSING_PARAM, "No master key available");
    if (ax_e2ee_xsign_check(master, user, "master", &master_pub) != 0)
        return given[0] != NULL ? ax_reply_error(r, AX_M_INVALID_PARAM, "Invalid master key")
                                : ax_reply_error(r, AX_M_INTERNAL, "The stored master key is invalid");
    for (int i = 1; i < 3; ++i) {
        if (given[i] == NULL)
            continue;
        if (ax_e2ee_xsign_check(given[i], user, xsign_usage[i], NULL) != 0)
            return ax_reply_error(r, AX_M_INVALID_PARAM, ax_psprintf(r, "Invalid %s", xsign_field[i]));
        if (ax_e2ee_verify(given[i], user, ax_psprintf(r, "ed25519:%s", master_pub), master_pub) != 0)
            return ax_reply_error(r, AX_M_INVALID_SIGNATURE,
                                  ax_psprintf(r, "%s is not signed by the master key", xsign_field[i]));
    }
    /* spec: 403 when a public key is the ID of one of the user's devices (key IDs would clash) */
    if (key_is_device)
        return ax_reply_error(r, AX_M_FORBIDDEN, "Key ID in use by a device");

    xsign_t *x = ax_calloc(1, sizeof(*x));
    snprintf(x->user_id, sizeof(x->user_id), "%s", user);
    snprintf(x->master, sizeof(x->master), "%s", master_pub);
    for (int i = 0; i < 3; ++i)
        x->keys[i] = given[i] != NULL ? json_deep_copy(given[i]) : NULL;
    /* spec (v1.11): once a master key exists, any change needs User-Interactive Auth; the first upload not */
    if (stored[0] == NULL) {
        ax_req_write(r, xsign_apply, xsign_written, x, xsign_free);
        return 0;
    }
    xsign_t **slot = ax_palloc_dispose(r, sizeof(*slot), xsign_hold_dispose);
    *slot = x;
    ax_uia_run(r, body, password_flow, 1, xsign_authorised, slot);
    return 0;
}

/* ---- POST /keys/signatures/upload ---- */

enum { SIG_DEVICE, SIG_MASTER, SIG_OTHER_MASTER };

/*
 * The signatures are checked on the worker pool (a request may carry many,
 * DESIGN.md "Threads"), then stored by the writer.  Every JSON value in a
 * job is its own copy: the job outlives the request when the client goes.
 */
typedef struct st_sig_item_t {
    int kind;
    char target_user[256];
    char target[256];   /* device ID or master public key */
    json_t *object;     /* the signed object as uploaded, for the worker to verify */
    json_t *checks;     /* {signer key id: public key} the worker verifies 'object' with */
    bool bad;           /* a signature did not verify */
    json_t *content;    /* what was signed (checked against the stored copy again on the writer) */
    json_t *signatures; /* {signer key id: signature} to add, by 'signer' */
} sig_item_t;

typedef struct st_sigs_t {
    char signer[256];
    sig_item_t *items;
    size_t n;
    json_t *failures0; /* failures found on the HTTP thread */
    json_t *failures;  /* ... plus the writer's, rebuilt by every run */
} sigs_t;

static void sig_item_dispose(sig_item_t *it)
{
    json_decref(it->object);
    json_decref(it->checks);
    json_decref(it->content);
    json_decref(it->signatures);
}

static void sigs_free(void *p)
{
    sigs_t *s = p;
    for (size_t i = 0; i < s->n; ++i)
        sig_item_dispose(&s->items[i]);
    free(s->items);
    json_decref(s->failures0);
    json_decref(s->failures);
    free(s);
}

static void fail(json_t *failures, const char *user, const char *key, int status, const char *errcode,
                 const char *error)
{
    json_t *mine = json_object_get(failures, user);
    if (mine == NULL)
        json_object_set_new(failures, user, mine = json_object());
    json_object_set_new(mine, key, json_pack("{s:i, s:s, s:s}", "status", status, "errcode", errcode, "error", error));
}

/* Adds the signatures of 'signer' in 'sigs' to the signatures of 'obj'. */
static void merge_signatures(json_t *obj, const char *signer, json_t *sigs)
{
    json_t *all = json_object_get(obj, "signatures");
    if (!json_is_object(all))
        json_object_set_new(obj, "signatures", all = json_object());
    json_t *mine = json_object_get(all, signer);
    if (!json_is_object(mine))
        json_object_set_new(all, signer, mine = json_object());
    json_object_update(mine, sigs);
}

static int sigs_apply(ax_txn_t *txn, void *data)
{
    sigs_t *s = data;
    json_decref(s->failures);
    s->failures = json_deep_copy(s->failures0);
    bool own_changed = false;
    for (size_t i = 0; i < s->n; ++i) {
        sig_item_t *it = &s->items[i];
        json_t *stored = NULL;
        int rc = it->kind == SIG_DEVICE ? ax_db_devicekeys_get(txn, it->target_user, it->target, &stored)
                                        : ax_db_xsign_get(txn, it->target_user, "master", &stored);
        if (rc == AX_ENOTFOUND || (rc == 0 && !ax_e2ee_same_signed_content(stored, it->content))) {
            /* replaced or deleted since it was checked */
            json_decref(stored);
            fail(s->failures, it->target_user, it->target, 400, "M_UNKNOWN", "Key does not match");
            continue;
        }
        if (rc != 0)
            return rc;
        const char *signer_key;
        json_t *sig;
        switch (it->kind) {
        case SIG_DEVICE:
            merge_signatures(stored, s->signer, it->signatures);
            rc = ax_db_devicekeys_put(txn, it->target_user, it->target, stored);
            /* spec: m.device_list_update "will also be sent when an existing device gets a new
             * cross-signing signature" */
            if (rc == 0)
                rc = ax_db_fedq_device_update(txn, it->target_user, it->target);
            own_changed = true;
            break;
        case SIG_MASTER:
            merge_signatures(stored, s->signer, it->signatures);
            rc = ax_db_xsign_put(txn, it->target_user, "master", stored);
            if (rc == 0)
                rc = ax_db_fedq_signing_key_update(txn, it->target_user);
            own_changed = true;
            break;
        default:
            json_object_foreach(it->signatures, signer_key, sig)
            {
                if (rc == 0)
                    rc = ax_db_keysig_put(txn, it->target_user, it->target, s->signer, signer_key,
                                          json_string_value(sig));
            }
            /* only the signer may see the signature: only they hear of it */
            if (rc == 0)
                rc = ax_db_devicelist_touch(txn, it->target_user, s->signer);
            break;
        }
        json_decref(stored);
        if (rc != 0)
            return rc;
    }
    return own_changed ? ax_db_devicelist_touch(txn, s->signer, NULL) : 0;
}

static void sigs_written(ax_req_t *r, int result, void *data)
{
    sigs_t *s = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the signatures");
    ax_reply_json_new(r, 200, json_pack("{s:O}", "failures", s->failures));
}

/* Queues signatures 'sigs' ({key id: signature}, stolen) of 'signed_obj' to verify with 'checks' (stolen). */
static void sig_item_new(sigs_t *s, int kind, const char *user, const char *target, json_t *signed_obj, json_t *sigs,
                         json_t *checks)
{
    s->items = ax_realloc(s->items, (s->n + 1) * sizeof(*s->items));
    sig_item_t *it = &s->items[s->n++];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    snprintf(it->target_user, sizeof(it->target_user), "%s", user);
    snprintf(it->target, sizeof(it->target), "%s", target);
    it->object = json_deep_copy(signed_obj);
    it->content = json_deep_copy(signed_obj);
    json_object_del(it->content, "signatures");
    json_object_del(it->content, "unsigned");
    it->signatures = sigs;
    it->checks = checks;
}

/* Worker: verifies every queued signature (pure CPU on the job's own copies). */
static int sigs_verify(void *data)
{
    sigs_t *s = data;
    for (size_t i = 0; i < s->n; ++i) {
        sig_item_t *it = &s->items[i];
        const char *kid;
        json_t *pub;
        json_object_foreach(it->checks, kid, pub)
        {
            if (ax_e2ee_verify(it->object, s->signer, kid, json_string_value(pub)) != 0)
                it->bad = true;
        }
    }
    return 0;
}

static void sigs_verified(ax_req_t *r, int result, void *data)
{
    (void)result;
    sigs_t *s = data;
    /* the job moves on to the writer: 'data' is freed when this returns */
    sigs_t *w = ax_calloc(1, sizeof(*w));
    *w = *s;
    memset(s, 0, sizeof(*s));
    size_t kept = 0;
    for (size_t i = 0; i < w->n; ++i) {
        sig_item_t *it = &w->items[i];
        if (it->bad) {
            fail(w->failures0, it->target_user, it->target, 400, "M_INVALID_SIGNATURE", "Invalid signature");
            sig_item_dispose(it);
        } else {
            w->items[kept++] = *it;
        }
    }
    w->n = kept;
    if (w->n == 0) {
        ax_reply_json_new(r, 200, json_pack("{s:O}", "failures", w->failures0));
        sigs_free(w);
        return;
    }
    ax_req_write(r, sigs_apply, sigs_written, w, sigs_free);
}

typedef struct st_sig_ctx_t {
    ax_req_t *r;
    ax_txn_t *txn;
    sigs_t *s;
    const char *self;
} sig_ctx_t;

/* Signatures of the requester's own master key by their devices (Synapse's rules). */
static void master_signature(sig_ctx_t *c, const char *key_id, json_t *obj, json_t *sigs, json_t *master)
{
    const char *self = c->self;
    if (!ax_e2ee_same_signed_content(master, obj)) {
        fail(c->s->failures0, self, key_id, 400, "M_UNKNOWN", "Key does not match");
        return;
    }
    /* each signature must come from one of the user's devices, made with its ed25519 key */
    json_t *stored = json_object_get(json_object_get(master, "signatures"), self);
    json_t *add = json_object(), *checks = json_object();
    const char *sig_id;
    json_t *sig;
    json_object_foreach(sigs, sig_id, sig)
    {
        if (json_equal(json_object_get(stored, sig_id), sig))
            continue; /* stored already */
        json_t *dev = NULL;
        const char *pub = NULL;
        if (strncmp(sig_id, "ed25519:", 8) == 0 && ax_db_devicekeys_get(c->txn, self, sig_id + 8, &dev) == 0)
            pub = json_string_value(json_object_get(json_object_get(dev, "keys"), sig_id));
        if (pub == NULL || !json_is_string(sig)) {
            json_decref(dev);
            json_decref(add);
            json_decref(checks);
            fail(c->s->failures0, self, key_id, 400, "M_INVALID_SIGNATURE", "Not signed by one of the user's devices");
            return;
        }
        json_object_set_new(checks, sig_id, json_string(pub));
        json_object_set_new(add, sig_id, json_string(json_string_value(sig)));
        json_decref(dev);
    }
    if (json_object_size(add) == 0) {
        json_decref(add);
        json_decref(checks);
        return;
    }
    sig_item_new(c->s, SIG_MASTER, self, key_id, obj, add, checks);
}

/* Signatures of the requester's own keys: devices signed by the self-signing key, or the master key by devices. */
static void own_signature(sig_ctx_t *c, const char *key_id, json_t *obj, json_t *master, const char *master_pub,
                          const char *ssk_pub)
{
    const char *self = c->self;
    json_t *sigs = json_object_get(json_object_get(obj, "signatures"), self);
    if (!json_is_object(sigs) || json_object_size(sigs) == 0) {
        fail(c->s->failures0, self, key_id, 400, "M_INVALID_SIGNATURE", "No signature was sent");
        return;
    }
    if (master_pub != NULL && strcmp(key_id, master_pub) == 0) {
        master_signature(c, key_id, obj, sigs, master);
        return;
    }
    if (ssk_pub == NULL) {
        fail(c->s->failures0, self, key_id, 404, "M_NOT_FOUND", "No self-signing key found");
        return;
    }
    const char *ssk_id = ax_psprintf(c->r, "ed25519:%s", ssk_pub);
    json_t *sig = json_object_get(sigs, ssk_id);
    if (!json_is_string(sig)) {
        fail(c->s->failures0, self, key_id, 400, "M_INVALID_SIGNATURE", "Not signed by the self-signing key");
        return;
    }
    json_t *dev = NULL;
    if (ax_db_devicekeys_get(c->txn, self, key_id, &dev) != 0) {
        fail(c->s->failures0, self, key_id, 404, "M_NOT_FOUND", "Unknown device");
        return;
    }
    bool same = ax_e2ee_same_signed_content(dev, obj);
    bool stored = json_equal(json_object_get(json_object_get(json_object_get(dev, "signatures"), self), ssk_id), sig);
    json_decref(dev);
    if (!same)
        fail(c->s->failures0, self, key_id, 400, "M_UNKNOWN", "Key does not match");
    else if (!stored) /* else signed already: nothing to do */
        sig_item_new(c->s, SIG_DEVICE, self, key_id, obj, json_pack("{s:s}", ssk_id, json_string_value(sig)),
                     json_pack("{s:s}", ssk_id, ssk_pub));
}

/* Signatures of other users' master keys by the requester's user-signing key. */
static void other_signatures(sig_ctx_t *c, const char *target, json_t *keys, const char *usk_pub)
{
    const char *key_id;
    json_t *obj;
    if (usk_pub == NULL) {
        json_object_foreach(keys, key_id, obj)
        {
            fail(c->s->failures0, target, key_id, 404, "M_NOT_FOUND", "No user-signing key found");
        }
        return;
    }
    json_t *master = ax_keys_xsign_view(c->txn, target, "master", target);
    const char *master_pub = NULL;
    if (master == NULL || ax_e2ee_xsign_check(master, target, "master", &master_pub) != 0)
        master_pub = NULL;
    const char *usk_id = ax_psprintf(c->r, "ed25519:%s", usk_pub);
    json_object_foreach(keys, key_id, obj)
    {
        /* only the target's current master key can be signed by a user-signing key */
        if (master_pub == NULL || strcmp(key_id, master_pub) != 0) {
            fail(c->s->failures0, target, key_id, 404, "M_NOT_FOUND", "Unknown key");
            continue;
        }
        if (!ax_e2ee_same_signed_content(master, obj)) {
            fail(c->s->failures0, target, key_id, 400, "M_UNKNOWN", "Key does not match");
            continue;
        }
        json_t *sig = json_object_get(json_object_get(json_object_get(obj, "signatures"), c->self), usk_id);
        if (!json_is_string(sig)) {
            fail(c->s->failures0, target, key_id, 400, "M_INVALID_SIGNATURE", "Not signed by the user-signing key");
            continue;
        }
        sig_item_new(c->s, SIG_OTHER_MASTER, target, key_id, obj, json_pack("{s:s}", usk_id, json_string_value(sig)),
                     json_pack("{s:s}", usk_id, usk_pub));
    }
    json_decref(master);
}

/* POST /_matrix/client/v3/keys/signatures/upload */
int ax_cs_keys_signatures_upload(ax_req_t *r)
{
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    const char *user, *key_id;
    json_t *keys, *obj;
    json_object_foreach(body, user, keys)
    {
        if (!json_is_object(keys))
            return ax_reply_error(r, AX_M_BAD_JSON, "The body must map user IDs to {key ID: signed object}");
        json_object_foreach(keys, key_id, obj)
        {
            if (!json_is_object(obj))
                return ax_reply_error(r, AX_M_BAD_JSON, "Signed keys must be objects");
        }
    }
    const char *self = r->auth.user_id;
    sigs_t *s = ax_calloc(1, sizeof(*s));
    snprintf(s->signer, sizeof(s->signer), "%s", self);
    s->failures0 = json_object();
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        sigs_free(s);
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    }
    sig_ctx_t c = {r, txn, s, self};
    json_t *master = NULL, *ssk = NULL, *usk = NULL;
    const char *master_pub = NULL, *ssk_pub = NULL, *usk_pub = NULL;
    if (ax_db_xsign_get(txn, self, "master", &master) == 0)
        ax_e2ee_xsign_check(master, self, "master", &master_pub);
    if (ax_db_xsign_get(txn, self, "self_signing", &ssk) == 0)
        ax_e2ee_xsign_check(ssk, self, "self_signing", &ssk_pub);
    if (ax_db_xsign_get(txn, self, "user_signing", &usk) == 0)
        ax_e2ee_xsign_check(usk, self, "user_signing", &usk_pub);
    json_object_foreach(body, user, keys)
    {
        if (strcmp(user, self) == 0) {
            json_object_foreach(keys, key_id, obj)
            {
                own_signature(&c, key_id, obj, master, master_pub, ssk_pub);
            }
        } else if (!ax_id_is_valid_user_id(user) || !is_local(r, user)) {
            /* remote keys would come over federation, which does not exist yet */
            json_object_foreach(keys, key_id, obj)
            {
                fail(s->failures0, user, key_id, 404, "M_NOT_FOUND", "Unknown user");
            }
        } else {
            other_signatures(&c, user, keys, usk_pub);
        }
    }
    ax_db_read_end(txn);
    json_decref(master);
    json_decref(ssk);
    json_decref(usk);
    if (s->n == 0) {
        json_t *out = json_pack("{s:O}", "failures", s->failures0);
        sigs_free(s);
        return ax_reply_json_new(r, 200, out);
    }
    ax_req_work(r, sigs_verify, sigs_verified, s, sigs_free);
    return 0;
}
