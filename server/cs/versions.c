/*
 * versions.c -- discovery: GET /_matrix/client/versions and the
 * .well-known documents (spec: Client-Server API "Server Discovery",
 * "API Standards"; Server-Server API "Resolving server names").
 */
#include "server/handlers.h"

#include <string.h>

/* The spec versions whose features axon serves.  A version goes here only
 * when what it requires works (docs/architecture.md, "Spec versions"). */
static const char *const versions[] = {"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0",
                                       "r0.6.1", "v1.1",   "v1.2",   "v1.3",   "v1.4",   "v1.5",   "v1.6",
                                       "v1.7",   "v1.8",   "v1.9",   "v1.10",  "v1.11",  "v1.12"};

void ax_cs_versions_prepare(ax_server_t *srv)
{
    json_t *list = json_array();
    for (size_t i = 0; i < AX_ARRAY_SIZE(versions); ++i)
        json_array_append_new(list, json_string(versions[i]));
    /* unstable features clients look for before using them */
    json_t *body = json_pack("{s:o, s:{s:b}}", "versions", list, "unstable_features", "org.matrix.msc3814", 1);
    srv->versions_body = json_dumps(body, JSON_COMPACT);
    srv->versions_len = strlen(srv->versions_body);
    json_decref(body);
}

/* GET /_matrix/client/versions */
int ax_cs_versions_get(ax_req_t *r)
{
    return ax_reply_raw(r, 200, "application/json", r->srv->versions_body, r->srv->versions_len);
}

/* GET /.well-known/matrix/client */
int ax_cs_wellknown_client(ax_req_t *r)
{
    const char *base = r->srv->cfg->well_known_client;
    if (base == NULL)
        return ax_reply_error(r, AX_M_NOT_FOUND, "No client discovery information configured");
    return ax_reply_json_new(r, 200, json_pack("{s:{s:s}}", "m.homeserver", "base_url", base));
}

/* GET /.well-known/matrix/server */
int ax_cs_wellknown_server(ax_req_t *r)
{
    const char *server = r->srv->cfg->well_known_server;
    if (server == NULL)
        return ax_reply_error(r, AX_M_NOT_FOUND, "No server delegation configured");
    return ax_reply_json_new(r, 200, json_pack("{s:s}", "m.server", server));
}
