/*
 * handlers.h -- every request handler, one banner per module, so that
 * routes.c can list them in one table.  A handler is named
 * ax_<api>_<module>_<action> and starts with its endpoint in a comment.
 */
#ifndef AX_HANDLERS_H
#define AX_HANDLERS_H

#include "server/server.h"

/* server/metrics.c -- operations */
int ax_ops_health(ax_req_t *r);
int ax_ops_metrics(ax_req_t *r);

/* server/cs/versions.c -- discovery */
int ax_cs_versions_get(ax_req_t *r);
int ax_cs_wellknown_client(ax_req_t *r);
int ax_cs_wellknown_server(ax_req_t *r);
/** Builds the constant /versions body at start-up. */
void ax_cs_versions_prepare(ax_server_t *srv);

/* federation/api_keys.c -- server keys and version */
int ax_fed_keys_server(ax_req_t *r);
int ax_fed_version(ax_req_t *r);

#endif
