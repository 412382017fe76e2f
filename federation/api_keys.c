/*
 * api_keys.c -- this server's signing keys (spec: Server-Server API,
 * "Retrieving server keys") and GET /_matrix/federation/v1/version.
 *
 * The key document is signed once and reused until half its validity has
 * passed, so serving it costs a copy, not an ed25519 signature.
 */
#include "server/handlers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define KEY_VALIDITY_MS (24ULL * 3600 * 1000)

/* GET /_matrix/key/v2/server */
int ax_fed_keys_server(ax_req_t *r)
{
    ax_server_t *srv = r->srv;
    uint64_t now = ax_now_ms();
    pthread_mutex_lock(&srv->key_mutex);
    if (srv->key_body == NULL || now + KEY_VALIDITY_MS / 2 > srv->key_valid_until) {
        const ax_signing_key_t *key = &srv->signing_key;
        char pk[AX_B64_LEN(crypto_sign_PUBLICKEYBYTES) + 1];
        ax_b64_encode(pk, key->public_key, sizeof(key->public_key), false);
        uint64_t until = now + KEY_VALIDITY_MS;
        json_t *doc = json_pack("{s:s, s:I, s:{s:{s:s}}, s:{}}", "server_name", srv->cfg->server_name, "valid_until_ts",
                                (json_int_t)until, "verify_keys", key->key_id, "key", pk, "old_verify_keys");
        if (doc != NULL && ax_sign_json(doc, srv->cfg->server_name, key) == 0) {
            free(srv->key_body);
            srv->key_body = json_dumps(doc, JSON_COMPACT);
            srv->key_len = strlen(srv->key_body);
            srv->key_valid_until = until;
        }
        json_decref(doc);
    }
    char *body = srv->key_body != NULL ? ax_pstrndup(r, srv->key_body, srv->key_len) : NULL;
    size_t len = srv->key_len;
    pthread_mutex_unlock(&srv->key_mutex);
    if (body == NULL)
        return ax_reply_error(r, AX_M_INTERNAL, "Cannot sign the key document");
    return ax_reply_raw(r, 200, "application/json", body, len);
}

/* GET /_matrix/federation/v1/version */
int ax_fed_version(ax_req_t *r)
{
    if (!r->srv->cfg->federation_enabled)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Federation is disabled on this server");
    return ax_reply_json_new(r, 200, json_pack("{s:{s:s, s:s}}", "server", "name", "axon", "version", AX_VERSION));
}
