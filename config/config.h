/*
 * config.h -- axon's configuration: one immutable struct built from an
 * INI-style file (parsed by Debian's libinih) and AXON_* environment
 * overrides, validated as a whole before anything touches the data dir.
 *
 * Every key is a row of the table in config.c; that table also generates the
 * commented sample printed by `axon generate-config` and the environment
 * variable names (AXON_<KEY>, or AXON_<SECTION>_<KEY> for keys in a section).
 */
#ifndef AX_CONFIG_H
#define AX_CONFIG_H

#include "common/common.h"

typedef struct st_ax_listen_t {
    char *host; /* IP literal or host name as written ("127.0.0.1", "::", "localhost") */
    uint16_t port;
} ax_listen_t;

typedef struct st_ax_strlist_t {
    char **items;
    size_t count;
} ax_strlist_t;

typedef struct st_ax_listenlist_t {
    ax_listen_t *items;
    size_t count;
} ax_listenlist_t;

typedef struct st_ax_config_t {
    /* where the values came from, for messages: a file path or "embedded default" */
    char *source;

    char *server_name;
    ax_listenlist_t listen;
    ax_listenlist_t tls_listen;
    char *tls_certificate;
    char *tls_private_key;
    char *data_dir;
    uint64_t map_size;
    bool sync;

    unsigned threads; /* resolved: never 0 after load */
    unsigned worker_threads;
    uint64_t max_request_size;
    uint64_t max_upload_size;
    unsigned max_concurrent_requests;
    ax_strlist_t trusted_proxies;

    bool allow_registration;
    bool registration_local_only; /* embedded default: only clients on this machine */
    char *registration_token;
    char *registration_shared_secret;

    int log_level;  /* ax_log_level_t */
    int log_format; /* ax_log_format_t */

    char *well_known_client;
    char *well_known_server;

    bool federation_enabled;
    ax_strlist_t trusted_key_servers;
    char *federation_ca_file;
    bool federation_verify_tls;
    bool outbound_allow_private;
    unsigned federation_transaction_timeout; /* seconds one outbound /send transaction may take */

    char *default_room_version;

    /* [ratelimit]: token buckets per client address */
    double rl_login_per_second;
    unsigned rl_login_burst;
    double rl_register_per_second;
    unsigned rl_register_burst;
    unsigned access_token_lifetime; /* seconds, for clients that ask for refresh tokens */
    double rl_media_per_second;     /* uploads and /create per user */
    unsigned rl_media_burst;

    /* media repository (server/cs/media.c, core/media.c) */
    bool media_legacy_unauthenticated; /* serve the deprecated /_matrix/media/v3 download paths */
    unsigned media_pending_lifetime;   /* seconds an ID from /create waits for its upload */
    unsigned media_max_pending;        /* pending /create IDs per user */
    uint64_t media_thumbnail_max_size; /* largest original (bytes) that is thumbnailed */
    unsigned media_thumbnail_max_mpixels;

    /* TURN for VoIP calls (server/cs/voip.c): none configured when turn_uris is empty */
    ax_strlist_t turn_uris;      /* "turn:" / "turns:" URIs */
    char *turn_shared_secret;    /* coturn's static-auth-secret: time-limited credentials */
    unsigned turn_user_lifetime; /* seconds those credentials (and the answer's ttl) last */
    char *turn_username;         /* or fixed credentials, when there is no shared secret */
    char *turn_password;
} ax_config_t;

/**
 * Loads the configuration from the file at 'path' (or from the embedded
 * defaults when 'path' is NULL), applies the AXON_* overrides found in
 * 'envp' (a NULL-terminated environ-style array, may be NULL) and validates
 * the result.  Reads files only to check they are readable; writes nothing.
 *
 * On success stores a new config in '*out' (free with ax_config_free) and
 * returns 0.  On failure returns AX_EINVAL and writes one line naming the
 * key or resource at fault into 'err' (at most 'errlen' bytes).
 */
int ax_config_load(const char *path, char *const *envp, ax_config_t **out, char *err, size_t errlen);

/** Frees a config from ax_config_load; NULL is allowed. */
void ax_config_free(ax_config_t *cfg);

/** Writes the commented sample configuration (every key, its default and its variable) to 'fp'. */
void ax_config_write_sample(FILE *fp);

/**
 * Splits "host:port" / "[v6]:port" into 'out' (host is a new heap string).
 * Returns 0 or AX_EINVAL.
 */
int ax_config_parse_listen(const char *s, ax_listen_t *out);

/** Returns true when every listener of 'cfg' is a loopback address. */
bool ax_config_is_loopback_only(const ax_config_t *cfg);
/* True for "localhost", 127.0.0.0/8 and ::1. */
bool ax_config_is_loopback_host(const char *host);

#endif
