/*
 * spaces.c -- GET /rooms/{roomId}/hierarchy (spec: Client-Server API
 * "Spaces", "Discovering rooms within spaces"; space_hierarchy.yaml).  The
 * walk itself is core/spaces.c; this file reads the parameters, keeps the
 * pagination token and is where rooms of other servers will come in.
 *
 * Pagination: the walk is deterministic for a given state, so a token says
 * how many rooms earlier pages listed and the next page walks again and
 * skips them.  It also carries max_depth and suggested_only (the spec
 * forbids changing them between pages) and a digest of the root, so a
 * token is refused where it does not belong.  Nothing is kept on the
 * server: any thread, and a restarted server, can continue a walk.
 */
#include "server/cs/cs.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_LIMIT 50
#define MAX_LIMIT     100
#define MAX_DEPTH     50   /* the default too: spaces nest a few levels deep, loops end by themselves */
#define MAX_WALK      1000 /* rooms one request looks at, earlier pages' included */

/*
 * The federation boundary: a summary of room 'room_id', which this server
 * does not know, as the servers in 'via' would give it
 * (GET /_matrix/federation/v1/hierarchy/{roomId}: the room with room_type
 * and children_state), or NULL.  Federation cannot be asked from here -- no
 * outbound request on an HTTP thread, and the walk runs inside a read
 * transaction -- so it will answer from summaries it fetched and cached
 * before the walk.  Until then remote rooms are left out of the hierarchy
 * (their links still show in their parents' children_state).
 */
static json_t *hierarchy_remote_room(void *arg, const char *room_id, const json_t *via)
{
    (void)arg, (void)room_id, (void)via;
    return NULL;
}

/* The first 8 bytes of SHA-256('room_id') in hex: ties a token to its root. */
static void root_digest(const char *room_id, char out[17])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)room_id, strlen(room_id));
    sodium_bin2hex(out, 17, h, 8);
}

/* Parses "h<skip>_<max_depth>_<0|1>_<root digest>" for 'room_id'. */
static bool parse_token(const char *tok, const char *room_id, uint64_t *skip, uint64_t *depth, bool *suggested)
{
    char buf[96], want[17];
    if (tok[0] != 'h' || strlen(tok) >= sizeof(buf))
        return false;
    snprintf(buf, sizeof(buf), "%s", tok + 1);
    char *part[4], *save = NULL, *p = buf;
    size_t n = 0;
    for (char *t; n < 4 && (t = strtok_r(p, "_", &save)) != NULL; p = NULL)
        part[n++] = t;
    root_digest(room_id, want);
    if (n != 4 || strtok_r(NULL, "_", &save) != NULL || ax_parse_u64(part[0], skip) != 0 ||
        ax_parse_u64(part[1], depth) != 0 || (strcmp(part[2], "0") != 0 && strcmp(part[2], "1") != 0) ||
        strcmp(part[3], want) != 0 || *skip == 0 || *skip > MAX_WALK || *depth > MAX_DEPTH)
        return false;
    *suggested = part[2][0] == '1';
    return true;
}

/* GET /_matrix/client/v1/rooms/{roomId}/hierarchy */
int ax_cs_spaces_hierarchy(ax_req_t *r)
{
    const char *room_id = r->params[0];
    const char *limit_s = ax_req_query(r, "limit"), *depth_s = ax_req_query(r, "max_depth");
    const char *sugg_s = ax_req_query(r, "suggested_only"), *from = ax_req_query(r, "from");
    uint64_t limit = DEFAULT_LIMIT, depth = MAX_DEPTH, skip = 0;
    bool suggested = false;
    if (limit_s != NULL && (ax_parse_u64(limit_s, &limit) != 0 || limit == 0))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "limit must be an integer greater than zero");
    if (depth_s != NULL && ax_parse_u64(depth_s, &depth) != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "max_depth must be a non-negative integer");
    if (sugg_s != NULL && strcmp(sugg_s, "true") != 0 && strcmp(sugg_s, "false") != 0)
        return ax_reply_error(r, AX_M_INVALID_PARAM, "suggested_only must be true or false");
    limit = limit > MAX_LIMIT ? MAX_LIMIT : limit;
    depth = depth > MAX_DEPTH ? MAX_DEPTH : depth;
    suggested = ax_streq(sugg_s, "true");
    if (from != NULL) {
        uint64_t tdepth;
        bool tsugg;
        if (!parse_token(from, room_id, &skip, &tdepth, &tsugg))
            return ax_reply_error(r, AX_M_INVALID_PARAM, "Unknown from token");
        if ((depth_s != NULL && depth != tdepth) || (sugg_s != NULL && suggested != tsugg))
            return ax_reply_error(r, AX_M_INVALID_PARAM,
                                  "suggested_only and max_depth cannot change on paginated requests");
        depth = tdepth, suggested = tsugg;
    }

    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    ax_space_walk_t w = {.user_id = r->auth.user_id,
                         .max_depth = (unsigned)depth,
                         .suggested_only = suggested,
                         .skip = (size_t)skip,
                         .limit = (size_t)limit,
                         .max_rooms = MAX_WALK,
                         .remote = hierarchy_remote_room};
    int rc = ax_space_hierarchy(txn, room_id, &w);
    ax_db_read_end(txn);
    if (rc == AX_ENOTFOUND || rc == AX_EFORBIDDEN)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You may not view this room (or it does not exist)");
    if (rc != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    json_t *out = json_pack("{s:o}", "rooms", w.rooms);
    if (w.more) {
        char digest[17];
        root_digest(room_id, digest);
        json_object_set_new(out, "next_batch",
                            json_string(ax_psprintf(r, "h%llu_%llu_%d_%s", (unsigned long long)(skip + limit),
                                                    (unsigned long long)depth, suggested ? 1 : 0, digest)));
    }
    return ax_reply_json_new(r, 200, out);
}
