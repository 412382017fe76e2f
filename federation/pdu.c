/*
 * pdu.c -- checking events that arrive from other servers before they
 * reach a room (spec: Server-Server API "Checks performed on receipt of a
 * PDU" steps 1 to 3, "Validating hashes and signatures on received
 * events"): the format of the room version, the event ID, a valid
 * signature of every server that must have signed, and the content hash
 * (an event whose hash does not match is kept in its redacted form).
 *
 * The steps of one batch, all tied to one HTTP request:
 *  1. on the request's thread: format, event IDs, and which keys are needed;
 *  2. the keyring finds the keys (database, or fetched from their servers);
 *  3. a worker checks the signatures and hashes (DESIGN.md: bulk signature
 *     verification belongs on the worker pool);
 *  4. the caller continues on the request's thread.
 * Auth rules and storage come after, on the writer (core/ingest.c).
 */
#include "federation/federation.h"
#include "core/events.h"
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

#define MAX_KEYS_PER_SIGNER 4

void ax_pdu_batch_add(ax_pdu_batch_t *b, json_t *pdu, const ax_room_version_t *rv)
{
    if (b->n == b->cap)
        b->items = ax_realloc(b->items, (b->cap = b->cap ? b->cap * 2 : 16) * sizeof(*b->items));
    ax_pdu_t *it = &b->items[b->n++];
    memset(it, 0, sizeof(*it));
    it->pdu = pdu;
    it->rv = rv;
}

void ax_pdu_batch_dispose(ax_pdu_batch_t *b)
{
    for (size_t i = 0; i < b->n; ++i) {
        json_decref(b->items[i].pdu);
        free(b->items[i].keys);
    }
    free(b->items);
    memset(b, 0, sizeof(*b));
}

/* ---- step 1 ---- */

typedef struct st_verify_t {
    ax_pdu_batch_t *batch;
    ax_key_lookup_t *lookup;
    ax_pdu_done_fn done;
    void *arg;
    void (*free_arg)(void *arg);
} verify_t;

static void verify_free(void *p)
{
    verify_t *v = p;
    free(v->lookup);
    if (v->free_arg != NULL)
        v->free_arg(v->arg);
    free(v);
}

static void fail_item(ax_pdu_t *it, int rc, const char *fmt, const char *detail)
{
    it->result = rc;
    snprintf(it->error, sizeof(it->error), fmt, detail);
}

/* The signature key IDs 'signer' put on the event, into it->keys (appended). */
static void want_signer_keys(ax_pdu_t *it, const char *signer)
{
    json_t *sigs = json_object_get(json_object_get(it->pdu, "signatures"), signer);
    const char *key_id;
    json_t *sig;
    size_t found = 0;
    json_object_foreach(sigs, key_id, sig)
    {
        if (strncmp(key_id, "ed25519:", 8) != 0 || !json_is_string(sig) || found == MAX_KEYS_PER_SIGNER ||
            strlen(signer) >= sizeof(it->keys[0].server) || strlen(key_id) >= sizeof(it->keys[0].key_id))
            continue;
        it->keys = ax_realloc(it->keys, (it->nkeys + 1) * sizeof(*it->keys));
        ax_pdu_key_t *k = &it->keys[it->nkeys++];
        memset(k, 0, sizeof(*k));
        snprintf(k->server, sizeof(k->server), "%s", signer);
        snprintf(k->key_id, sizeof(k->key_id), "%s", key_id);
        ++found;
    }
}

static void prepare(ax_pdu_t *it)
{
    char reason[120];
    if (it->rv == NULL) {
        fail_item(it, AX_EINVAL, "%s", "unknown room version");
        return;
    }
    if (json_is_object(it->pdu) && !json_is_object(json_object_get(it->pdu, "signatures"))) {
        fail_item(it, AX_EBADSIG, "%s", "the event is not signed");
        return;
    }
    if (!json_is_object(it->pdu) || ax_event_check_format(it->rv, it->pdu, reason, sizeof(reason)) != 0) {
        fail_item(it, AX_EINVAL, "malformed event: %s", json_is_object(it->pdu) ? reason : "not an object");
        return;
    }
    if (ax_event_get_id(it->rv, it->pdu, it->event_id, sizeof(it->event_id)) != 0) {
        fail_item(it, AX_EINVAL, "%s", "no event ID can be derived");
        return;
    }
    const char *signers[AX_EVENT_SIGNERS_MAX];
    if (ax_event_required_signers(it->rv, it->pdu, signers, &it->nsigners) != 0) {
        fail_item(it, AX_EINVAL, "%s", "an identifier has no server name");
        return;
    }
    for (size_t s = 0; s < it->nsigners; ++s) {
        snprintf(it->signers[s], sizeof(it->signers[s]), "%s", signers[s]);
        size_t before = it->nkeys;
        want_signer_keys(it, signers[s]);
        if (it->nkeys == before) {
            fail_item(it, AX_EBADSIG, "not signed by %s", signers[s]);
            return;
        }
    }
    it->valid_at =
        ax_keyring_event_valid_at(it->rv, (uint64_t)json_integer_value(json_object_get(it->pdu, "origin_server_ts")));
}

/* ---- step 3: on a worker ---- */

static bool signer_ok(const ax_pdu_t *it, const json_t *redacted, const char *signer)
{
    for (size_t k = 0; k < it->nkeys; ++k) {
        const ax_pdu_key_t *key = &it->keys[k];
        if (!key->found || strcmp(key->server, signer) != 0)
            continue;
        if (ax_verify_json(redacted, signer, key->key_id, key->public_key) == 0)
            return true;
    }
    return false;
}

static bool hash_matches(const json_t *pdu)
{
    const char *want = json_string_value(json_object_get(json_object_get(pdu, "hashes"), "sha256"));
    uint8_t h[crypto_hash_sha256_BYTES];
    char got[64];
    if (want == NULL || ax_event_content_hash(pdu, h) != 0)
        return false;
    ax_b64_encode(got, h, sizeof(h), false);
    return strcmp(want, got) == 0;
}

static int verify_run(void *data)
{
    verify_t *v = data;
    for (size_t i = 0; i < v->batch->n; ++i) {
        ax_pdu_t *it = &v->batch->items[i];
        if (it->result != 0)
            continue;
        json_t *redacted = ax_event_redact(it->pdu, it->rv);
        for (size_t s = 0; s < it->nsigners && it->result == 0; ++s)
            if (!signer_ok(it, redacted, it->signers[s]))
                fail_item(it, AX_EBADSIG, "no valid signature of %s", it->signers[s]);
        if (it->result == 0 && !hash_matches(it->pdu)) {
            /* spec: the event is valid but its content is not what was signed: keep it redacted */
            json_decref(it->pdu);
            it->pdu = json_incref(redacted);
            it->redacted = true;
        }
        json_decref(redacted);
    }
    return 0;
}

/* ---- the continuations ---- */

static void verified(ax_req_t *r, int result, void *data)
{
    (void)result;
    verify_t *v = data;
    ax_pdu_done_fn done = v->done;
    void *arg = v->arg;
    v->free_arg = NULL; /* the caller has it back */
    done(r, arg);
}

static void keys_found(ax_req_t *r, ax_task_t *task)
{
    ax_key_lookup_t *lk = (ax_key_lookup_t *)task;
    verify_t *v = lk->user;
    if (r == NULL) {
        verify_free(v);
        return;
    }
    size_t w = 0;
    for (size_t i = 0; i < v->batch->n; ++i) {
        ax_pdu_t *it = &v->batch->items[i];
        if (it->result != 0)
            continue;
        for (size_t k = 0; k < it->nkeys; ++k, ++w) {
            const ax_key_want_t *want = &lk->want[w];
            it->keys[k].found = want->result == 0;
            if (want->result == 0)
                memcpy(it->keys[k].public_key, want->public_key, sizeof(want->public_key));
        }
    }
    ax_req_work(r, verify_run, verified, v, verify_free);
}

void ax_pdu_verify(ax_req_t *r, ax_pdu_batch_t *b, ax_pdu_done_fn done, void *arg, void (*free_arg)(void *arg))
{
    verify_t *v = ax_calloc(1, sizeof(*v));
    v->batch = b;
    v->done = done;
    v->arg = arg;
    v->free_arg = free_arg;
    size_t nwant = 0;
    for (size_t i = 0; i < b->n; ++i) {
        prepare(&b->items[i]);
        if (b->items[i].result == 0)
            nwant += b->items[i].nkeys;
    }
    if (nwant == 0 || r->srv->fed == NULL) {
        /* nothing to look up (or no federation loop: every signature then fails) */
        ax_req_work(r, verify_run, verified, v, verify_free);
        return;
    }
    v->lookup = ax_key_lookup_new(nwant);
    size_t w = 0;
    for (size_t i = 0; i < b->n; ++i) {
        ax_pdu_t *it = &b->items[i];
        if (it->result != 0)
            continue;
        for (size_t k = 0; k < it->nkeys; ++k)
            ax_key_want_set(v->lookup, w++, it->keys[k].server, it->keys[k].key_id, it->valid_at, true);
    }
    v->lookup->user = v;
    ax_req_bind_task(r, &v->lookup->super, keys_found);
    ax_keyring_lookup(r->srv->fed, v->lookup);
}
