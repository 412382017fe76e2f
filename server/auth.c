/*
 * auth.c -- access-token authentication (spec: Client-Server API, "Client
 * Authentication").  Exports ax_req_auth_or_reply().
 *
 * The token comes from "Authorization: Bearer <token>" or, deprecated, the
 * access_token query parameter.  It is looked up by its SHA-256, so the
 * stored value is never the token itself, and the lookup is an index read,
 * never a scan.
 */
#include "server/server.h"

#include <string.h>
#include <strings.h>

static const char *extract_token(ax_req_t *r)
{
    const char *h = ax_req_header(r, "authorization");
    if (h != NULL) {
        if (strncasecmp(h, "Bearer ", 7) != 0)
            return "";
        h += 7;
        while (*h == ' ')
            ++h;
        return h;
    }
    return ax_req_query(r, "access_token");
}

int ax_req_auth_or_reply(ax_req_t *r, bool optional)
{
    const char *token = extract_token(r);
    if (token == NULL) {
        if (optional)
            return 0;
        ax_reply_error(r, AX_M_MISSING_TOKEN, "Missing access token");
        return -1;
    }
    uint8_t hash[AX_TOKEN_HASH_BYTES];
    ax_token_hash(token, hash);

    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return -1;
    }
    ax_session_t s;
    int rc = ax_db_session_get(txn, hash, &s);
    if (rc == 0) {
        r->auth.user_id = ax_pstrdup(r, s.user_id);
        r->auth.device_id = ax_pstrdup(r, s.device_id);
    }
    ax_db_read_end(txn);

    if (rc == AX_ENOTFOUND || *token == '\0') {
        r->auth.user_id = NULL;
        ax_reply_error(r, AX_M_UNKNOWN_TOKEN, "Unknown access token");
        return -1;
    }
    if (rc != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database error");
        return -1;
    }
    if (s.expires_ms != 0 && ax_now_ms() >= s.expires_ms) {
        /* spec: an expired token answers soft_logout so the client refreshes */
        r->auth.user_id = NULL;
        ax_reply_json_new(r, 401,
                          json_pack("{s:s, s:s, s:b}", "errcode", "M_UNKNOWN_TOKEN", "error",
                                    "Access token has expired", "soft_logout", 1));
        return -1;
    }
    return 0;
}
