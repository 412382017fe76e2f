/*
 * auth.c -- access-token authentication (spec: Client-Server API, "Client
 * Authentication").  Exports ax_req_auth_or_reply().
 *
 * The token comes from "Authorization: Bearer <token>" or, deprecated, the
 * access_token query parameter.  It is looked up by its SHA-256, so the
 * stored value is never the token itself, and the lookup is an index read,
 * never a scan.
 *
 * Each device's "last seen" time, address and user agent (GET /devices,
 * admin whois) are written at most every SEEN_INTERVAL_MS per device, by a
 * write the request does not wait for; an in-memory table says when each
 * was last written, so most requests cost a hash lookup.
 */
#include "server/server.h"
#include "common/strmap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEEN_INTERVAL_MS (5ULL * 60 * 1000)
#define SEEN_MAX_ENTRIES 100000 /* past this the table starts over: one write per device, no growth */

static pthread_mutex_t seen_mutex = PTHREAD_MUTEX_INITIALIZER;
static ax_strmap_t seen = AX_STRMAP_INIT; /* "user_id\x1fdevice_id" -> last write time (ms, as a pointer) */

void ax_auth_seen_dispose(void)
{
    pthread_mutex_lock(&seen_mutex);
    ax_strmap_dispose(&seen);
    pthread_mutex_unlock(&seen_mutex);
}

typedef struct st_seen_write_t {
    char user_id[256];
    char device_id[256];
    char ip[64];
    char user_agent[256];
    uint64_t ts;
} seen_write_t;

static int seen_apply(ax_txn_t *txn, void *data)
{
    seen_write_t *w = data;
    json_t *dev = NULL;
    if (ax_db_device_get(txn, w->user_id, w->device_id, &dev) != 0)
        return 0; /* deleted meanwhile */
    json_object_set_new(dev, "last_seen_ts", json_integer((json_int_t)w->ts));
    json_object_set_new(dev, "last_seen_ip", json_string(w->ip));
    if (w->user_agent[0] != '\0')
        json_object_set_new(dev, "last_seen_user_agent", json_string(w->user_agent));
    int rc = ax_db_device_put(txn, w->user_id, w->device_id, dev);
    json_decref(dev);
    return rc;
}

/* Notes that the device was used now; writes it down when its last record is old. */
static void note_seen(ax_req_t *r)
{
    if (r->auth.device_id == NULL)
        return;
    char key[520];
    snprintf(key, sizeof(key), "%s\x1f%s", r->auth.user_id, r->auth.device_id);
    uint64_t now = ax_now_ms();
    pthread_mutex_lock(&seen_mutex);
    uint64_t last = (uint64_t)(uintptr_t)ax_strmap_get(&seen, key);
    bool due = last == 0 || now - last >= SEEN_INTERVAL_MS;
    if (due) {
        if (seen.size >= SEEN_MAX_ENTRIES)
            ax_strmap_clear(&seen);
        ax_strmap_put(&seen, key, (void *)(uintptr_t)now);
    }
    pthread_mutex_unlock(&seen_mutex);
    if (!due)
        return;
    seen_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    snprintf(w->device_id, sizeof(w->device_id), "%s", r->auth.device_id);
    snprintf(w->ip, sizeof(w->ip), "%s", ax_req_client_ip(r));
    const char *ua = ax_req_header(r, "user-agent");
    snprintf(w->user_agent, sizeof(w->user_agent), "%s", ua != NULL ? ua : "");
    w->ts = now;
    ax_req_write_detached(r, seen_apply, w, free);
}

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
    note_seen(r);
    return 0;
}
