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

/* server/cs/register.c -- registration */
int ax_cs_register(ax_req_t *r);
int ax_cs_register_available(ax_req_t *r);
int ax_cs_register_token_validity(ax_req_t *r);
int ax_cs_register_shared_nonce(ax_req_t *r);
int ax_cs_register_shared(ax_req_t *r);

/* server/cs/login.c -- login, refresh, logout */
int ax_cs_login_flows(ax_req_t *r);
int ax_cs_login(ax_req_t *r);
int ax_cs_login_get_token(ax_req_t *r);
int ax_cs_refresh(ax_req_t *r);
int ax_cs_logout(ax_req_t *r);
int ax_cs_logout_all(ax_req_t *r);

/* server/cs/account.c -- whoami, password, deactivation, capabilities */
int ax_cs_whoami(ax_req_t *r);
int ax_cs_account_password(ax_req_t *r);
int ax_cs_account_deactivate(ax_req_t *r);
int ax_cs_capabilities(ax_req_t *r);
/** Writer side of deactivation ('data' is an ax_cs_deactivate_t, see cs.h), shared with axon admin. */
int ax_cs_deactivate_apply(ax_txn_t *txn, void *data);

/* server/cs/devices.c -- device management */
int ax_cs_devices_list(ax_req_t *r);
int ax_cs_devices_get(ax_req_t *r);
int ax_cs_devices_put(ax_req_t *r);
int ax_cs_devices_delete(ax_req_t *r);
int ax_cs_devices_delete_many(ax_req_t *r);

/* server/cs/profile.c -- profiles */
int ax_cs_profile_get(ax_req_t *r);
int ax_cs_profile_get_field(ax_req_t *r);
int ax_cs_profile_put_field(ax_req_t *r);
int ax_cs_profile_delete_field(ax_req_t *r);

/* server/cs/account_data.c -- account data and tags */
int ax_cs_account_data_put(ax_req_t *r);
int ax_cs_account_data_get(ax_req_t *r);
int ax_cs_room_account_data_put(ax_req_t *r);
int ax_cs_room_account_data_get(ax_req_t *r);
int ax_cs_tags_get(ax_req_t *r);
int ax_cs_tags_put(ax_req_t *r);
int ax_cs_tags_delete(ax_req_t *r);

/* server/cs/filter.c -- filters */
int ax_cs_filter_create(ax_req_t *r);
int ax_cs_filter_get(ax_req_t *r);

/* server/cs/rooms.c -- room creation and membership */
int ax_cs_create_room(ax_req_t *r);
int ax_cs_join(ax_req_t *r);
int ax_cs_knock(ax_req_t *r);
int ax_cs_room_join(ax_req_t *r);
int ax_cs_room_leave(ax_req_t *r);
int ax_cs_room_invite(ax_req_t *r);
int ax_cs_room_kick(ax_req_t *r);
int ax_cs_room_ban(ax_req_t *r);
int ax_cs_room_unban(ax_req_t *r);
int ax_cs_room_forget(ax_req_t *r);
int ax_cs_joined_rooms(ax_req_t *r);
int ax_cs_room_upgrade(ax_req_t *r);

/* server/cs/relations.c -- relations and threads */
int ax_cs_relations(ax_req_t *r);
int ax_cs_threads(ax_req_t *r);

/* server/cs/search.c -- search and the user directory */
int ax_cs_search(ax_req_t *r);
int ax_cs_user_directory_search(ax_req_t *r);

/* server/cs/events.c -- sending and reading events */
int ax_cs_send(ax_req_t *r);
int ax_cs_state_put(ax_req_t *r);
int ax_cs_state_get(ax_req_t *r);
int ax_cs_state_all(ax_req_t *r);
int ax_cs_redact(ax_req_t *r);
int ax_cs_event_get(ax_req_t *r);
int ax_cs_messages(ax_req_t *r);
int ax_cs_context(ax_req_t *r);
int ax_cs_members(ax_req_t *r);
int ax_cs_joined_members(ax_req_t *r);
int ax_cs_timestamp_to_event(ax_req_t *r);
int ax_cs_report(ax_req_t *r);

/* server/cs/directory.c -- aliases and the room directory */
int ax_cs_alias_get(ax_req_t *r);
int ax_cs_alias_put(ax_req_t *r);
int ax_cs_alias_delete(ax_req_t *r);
int ax_cs_room_aliases(ax_req_t *r);
int ax_cs_directory_get(ax_req_t *r);
int ax_cs_directory_put(ax_req_t *r);
int ax_cs_public_rooms_get(ax_req_t *r);
int ax_cs_public_rooms_post(ax_req_t *r);

/* server/cs/sync.c -- /sync */
int ax_cs_sync(ax_req_t *r);
/** Frees what /sync keeps per HTTP thread (its shared timelines); on the thread, as it ends. */
void ax_cs_sync_thread_free(void);
/** Timelines written out once and kept for other readers, and answers that used one (since start). */
void ax_cs_sync_shared_stats(uint64_t *kept, uint64_t *used);

/* server/cs/presence.c -- presence */
int ax_cs_presence_get(ax_req_t *r);
int ax_cs_presence_put(ax_req_t *r);

/* server/cs/receipts.c -- typing, receipts, read markers */
int ax_cs_typing(ax_req_t *r);
int ax_cs_receipt(ax_req_t *r);
int ax_cs_read_markers(ax_req_t *r);

/* server/cs/push.c -- push rules, pushers, notifications */
int ax_cs_pushrules_get_all(ax_req_t *r);
int ax_cs_pushrules_get_global(ax_req_t *r);
int ax_cs_pushrule_get(ax_req_t *r);
int ax_cs_pushrule_put(ax_req_t *r);
int ax_cs_pushrule_delete(ax_req_t *r);
int ax_cs_pushrule_get_enabled(ax_req_t *r);
int ax_cs_pushrule_put_enabled(ax_req_t *r);
int ax_cs_pushrule_get_actions(ax_req_t *r);
int ax_cs_pushrule_put_actions(ax_req_t *r);
int ax_cs_pushers_get(ax_req_t *r);
int ax_cs_pushers_set(ax_req_t *r);
int ax_cs_notifications(ax_req_t *r);
/* server/cs/media.c -- the content repository */
int ax_cs_media_upload(ax_req_t *r);
int ax_cs_media_upload_put(ax_req_t *r);
int ax_cs_media_create(ax_req_t *r);
int ax_cs_media_download(ax_req_t *r);
int ax_cs_media_thumbnail(ax_req_t *r);
int ax_cs_media_config(ax_req_t *r);
int ax_cs_media_preview_url(ax_req_t *r);
int ax_cs_media_legacy_download(ax_req_t *r);
int ax_cs_media_legacy_thumbnail(ax_req_t *r);
int ax_cs_media_legacy_config(ax_req_t *r);
int ax_cs_media_legacy_preview_url(ax_req_t *r);
/**
 * Serves this server's media 'media_id' (its original, or with 'thumbnail'
 * a thumbnail sized by the query's width, height and method) to another
 * server, as GET /_matrix/federation/v1/media/download|thumbnail answer:
 * multipart/mixed with the metadata part ({}) and the content part, the
 * file streamed; waits for a pending upload up to timeout_ms as the client
 * endpoints do.  The same checks, headers and errors as those.  Replies
 * (now or later) and returns 0.
 */
int ax_cs_media_serve_federation(ax_req_t *r, const char *media_id, bool thumbnail);
/**
 * Housekeeping (HTTP thread 0, every second): every few seconds, removes
 * expired /create IDs through 'submit'.
 */
void ax_cs_media_tick(ax_server_t *srv,
                      void (*submit)(ax_server_t *srv, ax_apply_fn apply, void *data, void (*free_data)(void *)));
/* server/cs/keys.c -- end-to-end encryption keys and cross-signing */
int ax_cs_keys_upload(ax_req_t *r);
int ax_cs_keys_query(ax_req_t *r);
int ax_cs_keys_claim(ax_req_t *r);
int ax_cs_keys_changes(ax_req_t *r);
int ax_cs_keys_device_signing_upload(ax_req_t *r);
int ax_cs_keys_signatures_upload(ax_req_t *r);

/* server/cs/to_device.c -- send-to-device messaging */
int ax_cs_send_to_device(ax_req_t *r);

/* server/cs/key_backup.c -- server-side key backups */
int ax_cs_backup_version_create(ax_req_t *r);
int ax_cs_backup_version_current(ax_req_t *r);
int ax_cs_backup_version_get(ax_req_t *r);
int ax_cs_backup_version_update(ax_req_t *r);
int ax_cs_backup_version_delete(ax_req_t *r);
int ax_cs_backup_keys_put(ax_req_t *r);
int ax_cs_backup_keys_get(ax_req_t *r);
int ax_cs_backup_keys_delete(ax_req_t *r);

/* server/cs/dehydrated.c -- dehydrated devices (MSC3814) */
int ax_cs_dehydrated_get(ax_req_t *r);
int ax_cs_dehydrated_put(ax_req_t *r);
int ax_cs_dehydrated_delete(ax_req_t *r);
int ax_cs_dehydrated_events(ax_req_t *r);

/* server/cs/spaces.c -- the space hierarchy */
int ax_cs_spaces_hierarchy(ax_req_t *r);

/* server/cs/admin.c -- server administration */
int ax_cs_admin_whois(ax_req_t *r);

/* server/cs/voip.c -- TURN servers for calls */
int ax_cs_voip_turn_server(ax_req_t *r);

/* federation/api_keys.c -- server keys and version */
/* federation/api_keys.c -- server keys, the notary, version */
int ax_fed_keys_server(ax_req_t *r);
int ax_fed_keys_query_get(ax_req_t *r);
int ax_fed_keys_query_post(ax_req_t *r);
int ax_fed_version(ax_req_t *r);

/* federation/api_query.c -- queries, device lists and E2EE keys */
int ax_fed_query_profile(ax_req_t *r);
int ax_fed_query_directory(ax_req_t *r);
int ax_fed_user_devices(ax_req_t *r);
int ax_fed_user_keys_query(ax_req_t *r);
int ax_fed_user_keys_claim(ax_req_t *r);

/* federation/api_events.c -- serving a room's events */
int ax_fed_events_get(ax_req_t *r);
int ax_fed_events_state(ax_req_t *r);
int ax_fed_events_state_ids(ax_req_t *r);
int ax_fed_events_auth(ax_req_t *r);
int ax_fed_events_backfill(ax_req_t *r);
int ax_fed_events_missing(ax_req_t *r);
int ax_fed_events_timestamp(ax_req_t *r);

/* federation/media.c -- the content repository between servers */
int ax_fed_media_download(ax_req_t *r);
int ax_fed_media_thumbnail(ax_req_t *r);
/**
 * The srv->media.fetch hook (server.h): fetches mxc://'server_name'/'media_id'
 * over federation into the local cache, then calls 'done' (see
 * ax_media_fetch_fn for the results).
 */
void ax_fed_media_fetch(ax_req_t *r, const char *server_name, const char *media_id,
                        void (*done)(ax_req_t *r, int result));

/* federation/api_rooms.c -- the published room directory and spaces */
int ax_fed_rooms_public_get(ax_req_t *r);
int ax_fed_rooms_public_post(ax_req_t *r);
int ax_fed_rooms_hierarchy(ax_req_t *r);

/* federation/membership.c -- joins, leaves, knocks and invites, the resident side */
int ax_fed_make_join(ax_req_t *r);
int ax_fed_make_leave(ax_req_t *r);
int ax_fed_make_knock(ax_req_t *r);
int ax_fed_send_join(ax_req_t *r);
int ax_fed_send_join_v1(ax_req_t *r);
int ax_fed_send_leave(ax_req_t *r);
int ax_fed_send_leave_v1(ax_req_t *r);
int ax_fed_send_knock(ax_req_t *r);
int ax_fed_invite(ax_req_t *r);
int ax_fed_invite_v1(ax_req_t *r);

/* federation/send.c -- transactions from other servers */
int ax_fed_send_txn(ax_req_t *r);

#endif
