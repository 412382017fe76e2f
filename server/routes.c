/*
 * routes.c -- THE route table: one line per endpoint (method, path
 * template, handler, flags).  Client-Server paths are written under v3 (or
 * v1 where the spec has no v3); r0 is served as an alias of v3 unless a
 * route says AX_ROUTE_NO_R0.  To add an endpoint, see docs/adding-an-endpoint.md.
 */
#include "server/handlers.h"

#define CS  "/_matrix/client/v3"
#define FED "/_matrix/federation"

/* clang-format off */
const ax_route_t ax_routes[] = {
    /* operations */
    {"GET",  "/health",                                ax_ops_health,           AX_ROUTE_NO_LOG},
    {"GET",  "/metrics",                               ax_ops_metrics,          AX_ROUTE_NO_LOG},

    /* discovery */
    {"GET",  "/_matrix/client/versions",               ax_cs_versions_get,      0},
    {"GET",  "/.well-known/matrix/client",             ax_cs_wellknown_client,  0},
    {"GET",  "/.well-known/matrix/server",             ax_cs_wellknown_server,  0},

    /* federation: keys and version */
    {"GET",  "/_matrix/key/v2/server",                 ax_fed_keys_server,      0},
    {"GET",  FED "/v1/version",                        ax_fed_version,          0},
};
/* clang-format on */

const size_t ax_routes_count = AX_ARRAY_SIZE(ax_routes);
