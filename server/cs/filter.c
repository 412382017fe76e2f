/*
 * filter.c -- stored filters (spec: Client-Server API "Filtering";
 * filter.yaml): POST /user/{userId}/filter and GET .../filter/{filterId}.
 */
#include "server/cs/cs.h"
#include "core/filter.h"

#include <stdlib.h>
#include <string.h>

typedef struct st_filter_write_t {
    char user_id[256];
    json_t *filter;
    char id[32];
} filter_write_t;

static void filter_write_free(void *p)
{
    filter_write_t *w = p;
    json_decref(w->filter);
    free(w);
}

static int filter_apply(ax_txn_t *txn, void *data)
{
    filter_write_t *w = data;
    return ax_db_filter_put(txn, w->user_id, w->filter, w->id, sizeof(w->id));
}

static void filter_written(ax_req_t *r, int result, void *data)
{
    filter_write_t *w = data;
    if (result != 0)
        return (void)ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the filter");
    ax_reply_json_new(r, 200, json_pack("{s:s}", "filter_id", w->id));
}

/* POST /_matrix/client/v3/user/{userId}/filter */
int ax_cs_filter_create(ax_req_t *r)
{
    if (strcmp(r->params[0], r->auth.user_id) != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You can only create filters for yourself");
    json_t *body;
    if (ax_req_json_body_or_reply(r, &body) != 0)
        return 0;
    char err[256];
    if (ax_filter_validate(body, err, sizeof(err)) != 0)
        return ax_reply_error(r, AX_M_BAD_JSON, err);
    filter_write_t *w = ax_calloc(1, sizeof(*w));
    snprintf(w->user_id, sizeof(w->user_id), "%s", r->auth.user_id);
    w->filter = json_deep_copy(body);
    ax_req_write(r, filter_apply, filter_written, w, filter_write_free);
    return 0;
}

/* GET /_matrix/client/v3/user/{userId}/filter/{filterId} */
int ax_cs_filter_get(ax_req_t *r)
{
    if (strcmp(r->params[0], r->auth.user_id) != 0)
        return ax_reply_error(r, AX_M_FORBIDDEN, "You can only read your own filters");
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *f = NULL;
    int rc = ax_db_filter_get(txn, r->auth.user_id, r->params[1], &f);
    ax_db_read_end(txn);
    if (rc == AX_ENOTFOUND)
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown filter");
    if (rc != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database error");
    return ax_reply_json_new(r, 200, f);
}
