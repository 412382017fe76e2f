/*
 * voip.c -- GET /voip/turnServer (spec: Client-Server API "Voice over IP",
 * "Server behaviour"; voip.yaml): the TURN server clients relay calls
 * through, with credentials.
 *
 * With turn_shared_secret the credentials are coturn's "TURN REST API" ones
 * (use-auth-secret): username "<expiry unix seconds>:<user ID>", password
 * base64(HMAC-SHA1(secret, username)), valid for turn_user_lifetime; the
 * TURN server checks them with the same secret and needs to ask nobody.
 * Otherwise the fixed turn_username / turn_password are handed out.
 */
#include "server/handlers.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <string.h>

/* password = standard, padded base64 of HMAC-SHA1('secret', 'username'), as coturn computes it */
static void turn_password(const char *secret, const char *username, char *out, size_t cap)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)username, strlen(username), mac, &len);
    sodium_bin2base64(out, cap, mac, len, sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(mac, sizeof(mac));
}

/* GET /_matrix/client/v3/voip/turnServer */
int ax_cs_voip_turn_server(ax_req_t *r)
{
    const ax_config_t *cfg = r->srv->cfg;
    /* spec: the homeserver MAY provide a TURN server.  Without one, answer {} as Synapse and
     * Dendrite do: clients (matrix-js-sdk checks for 'uris') then call without TURN quietly,
     * where an error would be logged and retried by every client, and an empty 'uris' list
     * would make browsers refuse the ICE configuration.  voip.yaml's required fields describe
     * the answer when there is a server to describe. */
    if (cfg->turn_uris.count == 0)
        return ax_reply_json_new(r, 200, json_object());

    json_t *uris = json_array();
    for (size_t i = 0; i < cfg->turn_uris.count; ++i)
        json_array_append_new(uris, json_string(cfg->turn_uris.items[i]));
    json_t *out;
    if (cfg->turn_shared_secret != NULL) {
        unsigned long long expiry = ax_now_ms() / 1000 + cfg->turn_user_lifetime;
        const char *username = ax_psprintf(r, "%llu:%s", expiry, r->auth.user_id);
        char password[sodium_base64_ENCODED_LEN(EVP_MAX_MD_SIZE, sodium_base64_VARIANT_ORIGINAL)];
        turn_password(cfg->turn_shared_secret, username, password, sizeof(password));
        out = json_pack("{s:s, s:s}", "username", username, "password", password);
        sodium_memzero(password, sizeof(password));
    } else {
        out = json_pack("{s:s, s:s}", "username", cfg->turn_username, "password", cfg->turn_password);
    }
    json_object_set_new(out, "uris", uris);
    json_object_set_new(out, "ttl", json_integer((json_int_t)cfg->turn_user_lifetime));
    return ax_reply_json_new(r, 200, out);
}
