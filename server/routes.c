/*
 * routes.c -- THE route table: one line per endpoint (method, path
 * template, handler, flags).  Client-Server paths are written under v3 (or
 * v1 where the spec has no v3); r0 is served as an alias of v3 unless a
 * route says AX_ROUTE_NO_R0.  To add an endpoint, see docs/adding-an-endpoint.md.
 */
#include "server/handlers.h"

#define CS      "/_matrix/client/v3"
#define FED     "/_matrix/federation"
#define MEDIA   "/_matrix/client/v1/media"
#define MSC3814 "/_matrix/client/unstable/org.matrix.msc3814.v1"

/* clang-format off */
const ax_route_t ax_routes[] = {
    /* operations */
    {"GET",  "/health",                                ax_ops_health,           AX_ROUTE_NO_LOG},
    {"GET",  "/metrics",                               ax_ops_metrics,          AX_ROUTE_NO_LOG},

    /* discovery */
    {"GET",  "/_matrix/client/versions",               ax_cs_versions_get,      0},
    {"GET",  "/.well-known/matrix/client",             ax_cs_wellknown_client,  0},
    {"GET",  "/.well-known/matrix/server",             ax_cs_wellknown_server,  0},

    /* registration (server/cs/register.c) */
    {"POST",   CS "/register",                         ax_cs_register,                0},
    {"GET",    CS "/register/available",               ax_cs_register_available,      0},
    {"GET",    "/_matrix/client/v1/register/m.login.registration_token/validity",
                                                       ax_cs_register_token_validity, 0},
    {"GET",    "/_synapse/admin/v1/register",          ax_cs_register_shared_nonce,   0},
    {"POST",   "/_synapse/admin/v1/register",          ax_cs_register_shared,         0},

    /* login and sessions (server/cs/login.c) */
    {"GET",    CS "/login",                            ax_cs_login_flows,             0},
    {"POST",   CS "/login",                            ax_cs_login,                   0},
    {"POST",   "/_matrix/client/v1/login/get_token",   ax_cs_login_get_token,         AX_ROUTE_AUTH},
    {"POST",   CS "/refresh",                          ax_cs_refresh,                 0},
    {"POST",   CS "/logout",                           ax_cs_logout,                  AX_ROUTE_AUTH},
    {"POST",   CS "/logout/all",                       ax_cs_logout_all,              AX_ROUTE_AUTH},

    /* account (server/cs/account.c) */
    {"GET",    CS "/account/whoami",                   ax_cs_whoami,                  AX_ROUTE_AUTH},
    {"POST",   CS "/account/password",                 ax_cs_account_password,        AX_ROUTE_AUTH},
    {"POST",   CS "/account/deactivate",               ax_cs_account_deactivate,      AX_ROUTE_AUTH},
    {"GET",    CS "/capabilities",                     ax_cs_capabilities,            AX_ROUTE_AUTH},

    /* devices (server/cs/devices.c) */
    {"GET",    CS "/devices",                          ax_cs_devices_list,            AX_ROUTE_AUTH},
    {"GET",    CS "/devices/{deviceId}",               ax_cs_devices_get,             AX_ROUTE_AUTH},
    {"PUT",    CS "/devices/{deviceId}",               ax_cs_devices_put,             AX_ROUTE_AUTH},
    {"DELETE", CS "/devices/{deviceId}",               ax_cs_devices_delete,          AX_ROUTE_AUTH},
    {"POST",   CS "/delete_devices",                   ax_cs_devices_delete_many,     AX_ROUTE_AUTH},

    /* profiles (server/cs/profile.c) */
    {"GET",    CS "/profile/{userId}",                 ax_cs_profile_get,             0},
    {"GET",    CS "/profile/{userId}/{keyName}",       ax_cs_profile_get_field,       0},
    {"PUT",    CS "/profile/{userId}/{keyName}",       ax_cs_profile_put_field,       AX_ROUTE_AUTH},
    {"DELETE", CS "/profile/{userId}/{keyName}",       ax_cs_profile_delete_field,    AX_ROUTE_AUTH},

    /* account data and tags (server/cs/account_data.c) */
    {"PUT",    CS "/user/{userId}/account_data/{type}", ax_cs_account_data_put,      AX_ROUTE_AUTH},
    {"GET",    CS "/user/{userId}/account_data/{type}", ax_cs_account_data_get,      AX_ROUTE_AUTH},
    {"PUT",    CS "/user/{userId}/rooms/{roomId}/account_data/{type}", ax_cs_room_account_data_put, AX_ROUTE_AUTH},
    {"GET",    CS "/user/{userId}/rooms/{roomId}/account_data/{type}", ax_cs_room_account_data_get, AX_ROUTE_AUTH},
    {"GET",    CS "/user/{userId}/rooms/{roomId}/tags", ax_cs_tags_get,             AX_ROUTE_AUTH},
    {"PUT",    CS "/user/{userId}/rooms/{roomId}/tags/{tag}", ax_cs_tags_put,       AX_ROUTE_AUTH},
    {"DELETE", CS "/user/{userId}/rooms/{roomId}/tags/{tag}", ax_cs_tags_delete,    AX_ROUTE_AUTH},

    /* filters (server/cs/filter.c) */
    {"POST",   CS "/user/{userId}/filter",             ax_cs_filter_create,           AX_ROUTE_AUTH},
    {"GET",    CS "/user/{userId}/filter/{filterId}",  ax_cs_filter_get,              AX_ROUTE_AUTH},

    /* rooms and membership (server/cs/rooms.c) */
    {"POST",   CS "/createRoom",                       ax_cs_create_room,             AX_ROUTE_AUTH},
    {"POST",   CS "/join/{roomIdOrAlias}",             ax_cs_join,                    AX_ROUTE_AUTH},
    {"POST",   CS "/knock/{roomIdOrAlias}",            ax_cs_knock,                   AX_ROUTE_AUTH | AX_ROUTE_NO_R0},
    {"POST",   CS "/rooms/{roomId}/join",              ax_cs_room_join,               AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/leave",             ax_cs_room_leave,              AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/invite",            ax_cs_room_invite,             AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/kick",              ax_cs_room_kick,               AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/ban",               ax_cs_room_ban,                AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/unban",             ax_cs_room_unban,              AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/forget",            ax_cs_room_forget,             AX_ROUTE_AUTH},
    {"GET",    CS "/joined_rooms",                     ax_cs_joined_rooms,            AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/upgrade",           ax_cs_room_upgrade,            AX_ROUTE_AUTH},

    /* relations and threads (server/cs/relations.c) */
    {"GET",    "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}", ax_cs_relations, AX_ROUTE_AUTH},
    {"GET",    "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}", ax_cs_relations, AX_ROUTE_AUTH},
    {"GET",    "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", ax_cs_relations,
                                                                                      AX_ROUTE_AUTH},
    {"GET",    "/_matrix/client/v1/rooms/{roomId}/threads", ax_cs_threads,            AX_ROUTE_AUTH},

    /* spaces (server/cs/spaces.c) */
    {"GET",    "/_matrix/client/v1/rooms/{roomId}/hierarchy", ax_cs_spaces_hierarchy,  AX_ROUTE_AUTH},

    /* search (server/cs/search.c) */
    {"POST",   CS "/search",                           ax_cs_search,                  AX_ROUTE_AUTH},
    {"POST",   CS "/user_directory/search",            ax_cs_user_directory_search,   AX_ROUTE_AUTH},

    /* room events (server/cs/events.c) */
    {"PUT",    CS "/rooms/{roomId}/send/{eventType}/{txnId}", ax_cs_send,             AX_ROUTE_AUTH},
    {"PUT",    CS "/rooms/{roomId}/state/{eventType}",  ax_cs_state_put,              AX_ROUTE_AUTH},
    {"PUT",    CS "/rooms/{roomId}/state/{eventType}/{stateKey}", ax_cs_state_put,    AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/state/{eventType}",  ax_cs_state_get,              AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/state/{eventType}/{stateKey}", ax_cs_state_get,    AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/state",             ax_cs_state_all,               AX_ROUTE_AUTH},
    {"PUT",    CS "/rooms/{roomId}/redact/{eventId}/{txnId}", ax_cs_redact,           AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/event/{eventId}",   ax_cs_event_get,               AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/messages",          ax_cs_messages,                AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/context/{eventId}", ax_cs_context,                 AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/members",           ax_cs_members,                 AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/joined_members",    ax_cs_joined_members,          AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/report/{eventId}",  ax_cs_report,                  AX_ROUTE_AUTH},
    {"GET",    "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event", ax_cs_timestamp_to_event, AX_ROUTE_AUTH},

    /* aliases and the directory (server/cs/directory.c) */
    {"GET",    CS "/directory/room/{roomAlias}",       ax_cs_alias_get,               0},
    {"PUT",    CS "/directory/room/{roomAlias}",       ax_cs_alias_put,               AX_ROUTE_AUTH},
    {"DELETE", CS "/directory/room/{roomAlias}",       ax_cs_alias_delete,            AX_ROUTE_AUTH},
    {"GET",    CS "/rooms/{roomId}/aliases",           ax_cs_room_aliases,            AX_ROUTE_AUTH},
    {"GET",    CS "/directory/list/room/{roomId}",     ax_cs_directory_get,           0},
    {"PUT",    CS "/directory/list/room/{roomId}",     ax_cs_directory_put,           AX_ROUTE_AUTH},
    {"GET",    CS "/publicRooms",                      ax_cs_public_rooms_get,        0},
    {"POST",   CS "/publicRooms",                      ax_cs_public_rooms_post,       AX_ROUTE_AUTH},

    /* sync and ephemeral events (server/cs/sync.c, receipts.c) */
    {"GET",    CS "/sync",                             ax_cs_sync,                    AX_ROUTE_AUTH},
    {"PUT",    CS "/rooms/{roomId}/typing/{userId}",   ax_cs_typing,                  AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/receipt/{receiptType}/{eventId}", ax_cs_receipt,  AX_ROUTE_AUTH},
    {"POST",   CS "/rooms/{roomId}/read_markers",      ax_cs_read_markers,            AX_ROUTE_AUTH},
    {"GET",    CS "/presence/{userId}/status",         ax_cs_presence_get,            AX_ROUTE_AUTH},
    {"PUT",    CS "/presence/{userId}/status",         ax_cs_presence_put,            AX_ROUTE_AUTH},

    /* push rules, pushers and notifications (server/cs/push.c) */
    {"GET",    CS "/pushrules/",                       ax_cs_pushrules_get_all,       AX_ROUTE_AUTH},
    {"GET",    CS "/pushrules/global/",                ax_cs_pushrules_get_global,    AX_ROUTE_AUTH},
    {"GET",    CS "/pushrules/global/{kind}/{ruleId}", ax_cs_pushrule_get,            AX_ROUTE_AUTH},
    {"PUT",    CS "/pushrules/global/{kind}/{ruleId}", ax_cs_pushrule_put,            AX_ROUTE_AUTH},
    {"DELETE", CS "/pushrules/global/{kind}/{ruleId}", ax_cs_pushrule_delete,         AX_ROUTE_AUTH},
    {"GET",    CS "/pushrules/global/{kind}/{ruleId}/enabled", ax_cs_pushrule_get_enabled, AX_ROUTE_AUTH},
    {"PUT",    CS "/pushrules/global/{kind}/{ruleId}/enabled", ax_cs_pushrule_put_enabled, AX_ROUTE_AUTH},
    {"GET",    CS "/pushrules/global/{kind}/{ruleId}/actions", ax_cs_pushrule_get_actions, AX_ROUTE_AUTH},
    {"PUT",    CS "/pushrules/global/{kind}/{ruleId}/actions", ax_cs_pushrule_put_actions, AX_ROUTE_AUTH},
    {"GET",    CS "/pushers",                          ax_cs_pushers_get,             AX_ROUTE_AUTH},
    {"POST",   CS "/pushers/set",                      ax_cs_pushers_set,             AX_ROUTE_AUTH},
    {"GET",    CS "/notifications",                    ax_cs_notifications,           AX_ROUTE_AUTH},
    /* server administration (server/cs/admin.c) */
    {"GET",    CS "/admin/whois/{userId}",             ax_cs_admin_whois,             AX_ROUTE_AUTH},

    /* VoIP (server/cs/voip.c) */
    {"GET",    CS "/voip/turnServer",                  ax_cs_voip_turn_server,        AX_ROUTE_AUTH},

    /* the content repository (server/cs/media.c) */
    {"POST",   "/_matrix/media/v3/upload",             ax_cs_media_upload,            AX_ROUTE_AUTH | AX_ROUTE_UPLOAD},
    {"PUT",    "/_matrix/media/v3/upload/{serverName}/{mediaId}", ax_cs_media_upload_put,
                                                                                      AX_ROUTE_AUTH | AX_ROUTE_UPLOAD},
    {"POST",   "/_matrix/media/v1/create",             ax_cs_media_create,            AX_ROUTE_AUTH},
    {"GET",    MEDIA "/download/{serverName}/{mediaId}", ax_cs_media_download,        AX_ROUTE_AUTH},
    {"GET",    MEDIA "/download/{serverName}/{mediaId}/{fileName}", ax_cs_media_download, AX_ROUTE_AUTH},
    {"GET",    MEDIA "/thumbnail/{serverName}/{mediaId}", ax_cs_media_thumbnail,      AX_ROUTE_AUTH},
    {"GET",    MEDIA "/config",                        ax_cs_media_config,            AX_ROUTE_AUTH},
    {"GET",    MEDIA "/preview_url",                   ax_cs_media_preview_url,       AX_ROUTE_AUTH},
    /* deprecated unauthenticated paths (config media_legacy_unauthenticated) */
    {"GET",    "/_matrix/media/v3/download/{serverName}/{mediaId}", ax_cs_media_legacy_download, 0},
    {"GET",    "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}", ax_cs_media_legacy_download, 0},
    {"GET",    "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}", ax_cs_media_legacy_thumbnail, 0},
    {"GET",    "/_matrix/media/v3/config",             ax_cs_media_legacy_config,     AX_ROUTE_AUTH},
    {"GET",    "/_matrix/media/v3/preview_url",        ax_cs_media_legacy_preview_url, AX_ROUTE_AUTH},

    /* end-to-end encryption (server/cs/keys.c, to_device.c, key_backup.c) */
    {"POST",   CS "/keys/upload",                      ax_cs_keys_upload,             AX_ROUTE_AUTH},
    {"POST",   CS "/keys/query",                       ax_cs_keys_query,              AX_ROUTE_AUTH},
    {"POST",   CS "/keys/claim",                       ax_cs_keys_claim,              AX_ROUTE_AUTH},
    {"GET",    CS "/keys/changes",                     ax_cs_keys_changes,            AX_ROUTE_AUTH},
    {"POST",   CS "/keys/device_signing/upload",       ax_cs_keys_device_signing_upload, AX_ROUTE_AUTH | AX_ROUTE_NO_R0},
    {"POST",   CS "/keys/signatures/upload",           ax_cs_keys_signatures_upload,  AX_ROUTE_AUTH},
    {"PUT",    CS "/sendToDevice/{eventType}/{txnId}", ax_cs_send_to_device,          AX_ROUTE_AUTH},
    {"POST",   CS "/room_keys/version",                ax_cs_backup_version_create,   AX_ROUTE_AUTH},
    {"GET",    CS "/room_keys/version",                ax_cs_backup_version_current,  AX_ROUTE_AUTH},
    {"GET",    CS "/room_keys/version/{version}",      ax_cs_backup_version_get,      AX_ROUTE_AUTH},
    {"PUT",    CS "/room_keys/version/{version}",      ax_cs_backup_version_update,   AX_ROUTE_AUTH},
    {"DELETE", CS "/room_keys/version/{version}",      ax_cs_backup_version_delete,   AX_ROUTE_AUTH},
    {"PUT",    CS "/room_keys/keys",                   ax_cs_backup_keys_put,         AX_ROUTE_AUTH},
    {"GET",    CS "/room_keys/keys",                   ax_cs_backup_keys_get,         AX_ROUTE_AUTH},
    {"DELETE", CS "/room_keys/keys",                   ax_cs_backup_keys_delete,      AX_ROUTE_AUTH},
    {"PUT",    CS "/room_keys/keys/{roomId}",          ax_cs_backup_keys_put,         AX_ROUTE_AUTH},
    {"GET",    CS "/room_keys/keys/{roomId}",          ax_cs_backup_keys_get,         AX_ROUTE_AUTH},
    {"DELETE", CS "/room_keys/keys/{roomId}",          ax_cs_backup_keys_delete,      AX_ROUTE_AUTH},
    {"PUT",    CS "/room_keys/keys/{roomId}/{sessionId}", ax_cs_backup_keys_put,      AX_ROUTE_AUTH},
    {"GET",    CS "/room_keys/keys/{roomId}/{sessionId}", ax_cs_backup_keys_get,      AX_ROUTE_AUTH},
    {"DELETE", CS "/room_keys/keys/{roomId}/{sessionId}", ax_cs_backup_keys_delete,   AX_ROUTE_AUTH},

    /* dehydrated devices, MSC3814 (server/cs/dehydrated.c) */
    {"GET",    MSC3814 "/dehydrated_device",           ax_cs_dehydrated_get,          AX_ROUTE_AUTH},
    {"PUT",    MSC3814 "/dehydrated_device",           ax_cs_dehydrated_put,          AX_ROUTE_AUTH},
    {"DELETE", MSC3814 "/dehydrated_device",           ax_cs_dehydrated_delete,       AX_ROUTE_AUTH},
    {"GET",    MSC3814 "/dehydrated_device/{deviceId}/events", ax_cs_dehydrated_events, AX_ROUTE_AUTH},
    {"POST",   MSC3814 "/dehydrated_device/{deviceId}/events", ax_cs_dehydrated_events, AX_ROUTE_AUTH},

    /* federation: keys and version */
    /* federation: keys, the notary and version (federation/api_keys.c); no X-Matrix needed */
    {"GET",  "/_matrix/key/v2/server",                 ax_fed_keys_server,      0},
    {"GET",  "/_matrix/key/v2/query/{serverName}",     ax_fed_keys_query_get,   0},
    {"POST", "/_matrix/key/v2/query",                  ax_fed_keys_query_post,  0},
    {"GET",  FED "/v1/version",                        ax_fed_version,          0},

    /* federation: queries (federation/api_query.c); X-Matrix signed */
    {"GET",  FED "/v1/query/profile",                  ax_fed_query_profile,    AX_ROUTE_FED},
    {"GET",  FED "/v1/query/directory",                ax_fed_query_directory,  AX_ROUTE_FED},
    {"GET",  FED "/v1/user/devices/{userId}",          ax_fed_user_devices,     AX_ROUTE_FED},
    {"POST", FED "/v1/user/keys/query",                ax_fed_user_keys_query,  AX_ROUTE_FED},
    {"POST", FED "/v1/user/keys/claim",                ax_fed_user_keys_claim,  AX_ROUTE_FED},

    /* federation: joining, leaving, knocking, inviting (federation/membership.c) */
    {"GET",  FED "/v1/make_join/{roomId}/{userId}",    ax_fed_make_join,        AX_ROUTE_FED},
    {"GET",  FED "/v1/make_leave/{roomId}/{userId}",   ax_fed_make_leave,       AX_ROUTE_FED},
    {"GET",  FED "/v1/make_knock/{roomId}/{userId}",   ax_fed_make_knock,       AX_ROUTE_FED},
    {"PUT",  FED "/v2/send_join/{roomId}/{eventId}",   ax_fed_send_join,        AX_ROUTE_FED},
    {"PUT",  FED "/v1/send_join/{roomId}/{eventId}",   ax_fed_send_join_v1,     AX_ROUTE_FED},
    {"PUT",  FED "/v2/send_leave/{roomId}/{eventId}",  ax_fed_send_leave,       AX_ROUTE_FED},
    {"PUT",  FED "/v1/send_leave/{roomId}/{eventId}",  ax_fed_send_leave_v1,    AX_ROUTE_FED},
    {"PUT",  FED "/v1/send_knock/{roomId}/{eventId}",  ax_fed_send_knock,       AX_ROUTE_FED},
    {"PUT",  FED "/v2/invite/{roomId}/{eventId}",      ax_fed_invite,           AX_ROUTE_FED},
    {"PUT",  FED "/v1/invite/{roomId}/{eventId}",      ax_fed_invite_v1,        AX_ROUTE_FED},

    /* federation: transactions (federation/send.c) */
    {"PUT",  FED "/v1/send/{txnId}",                   ax_fed_send_txn,         AX_ROUTE_FED},

    /* federation: serving room data (federation/api_events.c, api_rooms.c); X-Matrix signed */
    {"GET",  FED "/v1/event/{eventId}",                  ax_fed_events_get,        AX_ROUTE_FED},
    {"GET",  FED "/v1/state/{roomId}",                   ax_fed_events_state,      AX_ROUTE_FED},
    {"GET",  FED "/v1/state_ids/{roomId}",               ax_fed_events_state_ids,  AX_ROUTE_FED},
    {"GET",  FED "/v1/event_auth/{roomId}/{eventId}",    ax_fed_events_auth,       AX_ROUTE_FED},
    {"GET",  FED "/v1/backfill/{roomId}",                ax_fed_events_backfill,   AX_ROUTE_FED},
    {"POST", FED "/v1/get_missing_events/{roomId}",      ax_fed_events_missing,    AX_ROUTE_FED},
    {"GET",  FED "/v1/timestamp_to_event/{roomId}",      ax_fed_events_timestamp,  AX_ROUTE_FED},
    {"GET",  FED "/v1/publicRooms",                      ax_fed_rooms_public_get,  AX_ROUTE_FED},
    {"POST", FED "/v1/publicRooms",                      ax_fed_rooms_public_post, AX_ROUTE_FED},
    {"GET",  FED "/v1/hierarchy/{roomId}",               ax_fed_rooms_hierarchy,   AX_ROUTE_FED},

    /* federation: media (federation/media.c); X-Matrix signed */
    {"GET",  FED "/v1/media/download/{mediaId}",         ax_fed_media_download,    AX_ROUTE_FED},
    {"GET",  FED "/v1/media/thumbnail/{mediaId}",        ax_fed_media_thumbnail,   AX_ROUTE_FED},
};
/* clang-format on */

const size_t ax_routes_count = AX_ARRAY_SIZE(ax_routes);
