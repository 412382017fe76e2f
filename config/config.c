/*
 * config.c -- the key table, the INI reader (libinih), AXON_* environment
 * overrides and whole-config validation.  Exports ax_config_load(),
 * ax_config_free(), ax_config_write_sample() and the listen helpers.
 *
 * The table below is the only list of keys: parsing, the environment names,
 * validation messages and the sample config all come from it.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { T_STRING, T_PATH, T_BOOL, T_UINT, T_DOUBLE, T_SIZE, T_DURATION, T_LISTEN, T_STRLIST, T_ENUM } key_type_t;

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

typedef struct st_key_t {
    const char *section; /* NULL: top level */
    const char *name;
    key_type_t type;
    size_t offset;
    const char *def; /* default as text, NULL for none */
    uint64_t min, max;
    const char *const *choices;
    const char *help;
} cfg_key_t;

#define OFF(f) offsetof(ax_config_t, f)

static const cfg_key_t keys[] = {
    {NULL, "server_name", T_STRING, OFF(server_name), NULL, 0, 0, NULL,
     "The public name of this homeserver: the part after the colon in @user:server_name.\n"
     "It can never change once users exist. Required (the embedded default uses localhost:8008)."},
    {NULL, "listen", T_LISTEN, OFF(listen), "127.0.0.1:8008", 0, 0, NULL,
     "Plain-HTTP listeners (HTTP/1.1 and h2c), comma-separated addr:port; [::]:8008 for IPv6.\n"
     "Put nginx in front for TLS (docs/nginx.md), or use tls_listen."},
    {NULL, "tls_listen", T_LISTEN, OFF(tls_listen), "", 0, 0, NULL,
     "Built-in TLS listeners (HTTP/1.1 and HTTP/2 via ALPN), e.g. 0.0.0.0:8448 for federation without nginx."},
    {NULL, "tls_certificate", T_PATH, OFF(tls_certificate), NULL, 0, 0, NULL, "PEM certificate chain for tls_listen."},
    {NULL, "tls_private_key", T_PATH, OFF(tls_private_key), NULL, 0, 0, NULL, "PEM private key for tls_listen."},
    {NULL, "data_dir", T_PATH, OFF(data_dir), "/var/lib/axon", 0, 0, NULL,
     "Directory holding the LMDB database, the signing key and media."},
    {NULL, "map_size", T_SIZE, OFF(map_size), "256G", 1 << 20, UINT64_MAX, NULL,
     "Largest size the database may grow to (address space only; the file grows as needed)."},
    {NULL, "sync", T_BOOL, OFF(sync), "true", 0, 0, NULL,
     "fsync every commit so an acknowledged write survives a power cut. Turn off only for tests."},
    {NULL, "threads", T_UINT, OFF(threads), "0", 0, 256, NULL, "HTTP event-loop threads; 0 means one per CPU core."},
    {NULL, "worker_threads", T_UINT, OFF(worker_threads), "2", 1, 64, NULL,
     "Threads for CPU-heavy work (password hashing, thumbnails)."},
    {NULL, "max_request_size", T_SIZE, OFF(max_request_size), "50M", 1024, 1ULL << 32, NULL,
     "Largest request body accepted on API endpoints (413 M_TOO_LARGE above it)."},
    {NULL, "max_upload_size", T_SIZE, OFF(max_upload_size), "50M", 1024, 1ULL << 32, NULL,
     "Largest media upload; keep nginx's client_max_body_size equal to it."},
    {NULL, "max_concurrent_requests", T_UINT, OFF(max_concurrent_requests), "4096", 1, 1000000, NULL,
     "Requests processed at once (idle /sync long-polls excluded); above it axon answers 503."},
    {NULL, "trusted_proxies", T_STRLIST, OFF(trusted_proxies), "127.0.0.1, ::1", 0, 0, NULL,
     "Peers whose X-Forwarded-For header is believed (your reverse proxy). Empty trusts nobody."},
    {NULL, "allow_registration", T_BOOL, OFF(allow_registration), "false", 0, 0, NULL,
     "Let anyone create an account with POST /register. With the embedded default config it is on\n"
     "only while every listener is on loopback."},
    {NULL, "registration_token", T_STRING, OFF(registration_token), NULL, 0, 0, NULL,
     "When set, registration requires this token (m.login.registration_token)."},
    {NULL, "registration_shared_secret", T_STRING, OFF(registration_shared_secret), NULL, 0, 0, NULL,
     "Enables the Synapse-compatible POST /_synapse/admin/v1/register with this HMAC secret."},
    {NULL, "log_level", T_ENUM, OFF(log_level), "info", 0, 0, log_levels,
     "error, warn, info (one access-log line per request) or debug."},
    {NULL, "log_format", T_ENUM, OFF(log_format), "text", 0, 0, log_formats, "text or json (one object per line)."},
    {NULL, "well_known_client", T_STRING, OFF(well_known_client), NULL, 0, 0, NULL,
     "Base URL clients should use (served at /.well-known/matrix/client), e.g. https://matrix.example.org"},
    {NULL, "well_known_server", T_STRING, OFF(well_known_server), NULL, 0, 0, NULL,
     "Delegated federation host:port (served at /.well-known/matrix/server), e.g. matrix.example.org:443"},
    {NULL, "federation_enabled", T_BOOL, OFF(federation_enabled), "true", 0, 0, NULL,
     "Serve the federation API and talk to other homeservers."},
    {NULL, "trusted_key_servers", T_STRLIST, OFF(trusted_key_servers), "matrix.org", 0, 0, NULL,
     "Notary servers asked for other servers' signing keys, comma-separated."},
    {NULL, "federation_ca_file", T_PATH, OFF(federation_ca_file), NULL, 0, 0, NULL,
     "Extra CA certificate (PEM) trusted for outbound TLS (federation, push gateways), e.g. for a test setup."},
    {NULL, "federation_verify_tls", T_BOOL, OFF(federation_verify_tls), "true", 0, 0, NULL,
     "Verify remote servers' and push gateways' certificates. Turning it off is for development only."},
    {NULL, "outbound_allow_private", T_BOOL, OFF(outbound_allow_private), "false", 0, 0, NULL,
     "Allow outbound requests (federation, push gateways) to loopback and private addresses, and\n"
     "plain-http push gateways. For tests and closed networks only."},
    {NULL, "federation_transaction_timeout", T_UINT, OFF(federation_transaction_timeout), "60", 1, 3600, NULL,
     "Seconds a remote server has to answer one outbound transaction (PUT /send) before it is retried\n"
     "with the same transaction ID."},
    {NULL, "default_room_version", T_STRING, OFF(default_room_version), "12", 0, 0, NULL,
     "Room version for new rooms: 10, 11 or 12."},
    {NULL, "access_token_lifetime", T_UINT, OFF(access_token_lifetime), "3600", 60, 31536000, NULL,
     "Seconds an access token lives when the client asked for a refresh token (others never expire)."},
    {NULL, "media_legacy_unauthenticated", T_BOOL, OFF(media_legacy_unauthenticated), "true", 0, 0, NULL,
     "Also serve media without an access token on the deprecated /_matrix/media/v3 download,\n"
     "thumbnail, config and preview_url paths (clients before Matrix 1.11 need them). Deprecated:\n"
     "turn it off once your users' clients use /_matrix/client/v1/media."},
    {NULL, "media_pending_lifetime", T_UINT, OFF(media_pending_lifetime), "86400", 1, 31536000, NULL,
     "Seconds a media ID from POST /_matrix/media/v1/create waits for its upload before it expires."},
    {NULL, "media_max_pending", T_UINT, OFF(media_max_pending), "10", 1, 100000, NULL,
     "Media IDs from /create one user may have waiting for an upload at once (429 beyond)."},
    {NULL, "media_thumbnail_max_size", T_SIZE, OFF(media_thumbnail_max_size), "50M", 1024, 1ULL << 32, NULL,
     "Largest original file that gets thumbnailed (413 M_TOO_LARGE above it)."},
    {NULL, "media_thumbnail_max_mpixels", T_UINT, OFF(media_thumbnail_max_mpixels), "100", 1, 10000, NULL,
     "Largest image, in megapixels, that gets thumbnailed: bigger ones are refused before decoding\n"
     "(decompression bombs)."},
    {NULL, "turn_uris", T_STRLIST, OFF(turn_uris), "", 0, 0, NULL,
     "TURN servers handed to clients for VoIP calls (GET /voip/turnServer), comma-separated\n"
     "turn: or turns: URIs, e.g. turn:turn.example.org:3478?transport=udp. Empty: no TURN server."},
    {NULL, "turn_shared_secret", T_STRING, OFF(turn_shared_secret), NULL, 0, 0, NULL,
     "The secret shared with the TURN server (coturn: use-auth-secret, static-auth-secret): clients\n"
     "get time-limited credentials made from it. Keep it out of version control."},
    {NULL, "turn_user_lifetime", T_DURATION, OFF(turn_user_lifetime), "1h", 60, 31536000, NULL,
     "How long TURN credentials made from turn_shared_secret stay valid: seconds, or with a unit\n"
     "(90s, 30m, 1h, 1d)."},
    {NULL, "turn_username", T_STRING, OFF(turn_username), NULL, 0, 0, NULL,
     "Fixed TURN credentials for every user, instead of turn_shared_secret (with turn_password)."},
    {NULL, "turn_password", T_STRING, OFF(turn_password), NULL, 0, 0, NULL, "The password for turn_username."},
    {"ratelimit", "login_per_second", T_DOUBLE, OFF(rl_login_per_second), "0.5", 0, 1000000, NULL,
     "Login attempts per second allowed from one client address (sustained)."},
    {"ratelimit", "login_burst", T_UINT, OFF(rl_login_burst), "10", 1, 1000000, NULL,
     "Login attempts one client address may make at once."},
    {"ratelimit", "register_per_second", T_DOUBLE, OFF(rl_register_per_second), "0.2", 0, 1000000, NULL,
     "Registration requests per second allowed from one client address (sustained)."},
    {"ratelimit", "register_burst", T_UINT, OFF(rl_register_burst), "10", 1, 1000000, NULL,
     "Registration requests one client address may make at once."},
    {"ratelimit", "media_per_second", T_DOUBLE, OFF(rl_media_per_second), "2", 0, 1000000, NULL,
     "Media uploads (and /create calls) per second allowed for one user (sustained)."},
    {"ratelimit", "media_burst", T_UINT, OFF(rl_media_burst), "20", 1, 1000000, NULL,
     "Media uploads one user may make at once."},
};

#define NKEYS AX_ARRAY_SIZE(keys)

typedef struct st_load_state_t {
    ax_config_t *cfg;
    bool set[NKEYS]; /* explicitly set by file or environment */
    char *err;
    size_t errlen;
    bool failed;
} load_state_t;

/* ---- Helpers ---- */

static void env_name(const cfg_key_t *k, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "AXON_%s%s%s", k->section ? k->section : "", k->section ? "_" : "", k->name);
    for (size_t i = 5; i < n && i < cap; ++i)
        out[i] = (char)toupper((unsigned char)out[i]);
}

static void full_name(const cfg_key_t *k, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", k->section ? k->section : "", k->section ? "." : "", k->name);
}

static void strlist_dispose(ax_strlist_t *l)
{
    for (size_t i = 0; i < l->count; ++i)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static void listenlist_dispose(ax_listenlist_t *l)
{
    for (size_t i = 0; i < l->count; ++i)
        free(l->items[i].host);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

/* Calls 'cb' for each comma/whitespace-separated item of 's'; stops at the first nonzero return. */
static int split_list(const char *s, int (*cb)(void *, const char *), void *arg)
{
    while (*s != '\0') {
        while (*s == ',' || isspace((unsigned char)*s))
            ++s;
        const char *start = s;
        while (*s != '\0' && *s != ',' && !isspace((unsigned char)*s))
            ++s;
        if (s > start) {
            char *item = ax_strndup(start, (size_t)(s - start));
            int r = cb(arg, item);
            free(item);
            if (r != 0)
                return r;
        }
    }
    return 0;
}

static int add_str(void *arg, const char *item)
{
    ax_strlist_t *l = arg;
    l->items = ax_realloc(l->items, (l->count + 1) * sizeof(*l->items));
    l->items[l->count++] = ax_strdup(item);
    return 0;
}

int ax_config_parse_listen(const char *s, ax_listen_t *out)
{
    const char *colon;
    const char *host_start = s, *host_end;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return AX_EINVAL;
        host_start = s + 1;
        host_end = close;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return AX_EINVAL; /* bare IPv6 needs brackets */
        host_end = colon;
    }
    if (host_end == host_start)
        return AX_EINVAL;
    uint64_t port;
    if (ax_parse_u64(colon + 1, &port) != 0 || port == 0 || port > 65535)
        return AX_EINVAL;
    for (const char *p = host_start; p < host_end; ++p)
        if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == ':' || *p == '*'))
            return AX_EINVAL;
    out->host = ax_strndup(host_start, (size_t)(host_end - host_start));
    if (ax_streq(out->host, "*")) {
        free(out->host);
        out->host = ax_strdup("0.0.0.0");
    }
    out->port = (uint16_t)port;
    return 0;
}

static int add_listen(void *arg, const char *item)
{
    ax_listenlist_t *l = arg;
    ax_listen_t li;
    if (ax_config_parse_listen(item, &li) != 0)
        return AX_EINVAL;
    l->items = ax_realloc(l->items, (l->count + 1) * sizeof(*l->items));
    l->items[l->count++] = li;
    return 0;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; ++i) {
        if (strcasecmp(v, yes[i]) == 0)
            return *out = true, true;
        if (strcasecmp(v, no[i]) == 0)
            return *out = false, true;
    }
    return false;
}

/* Seconds from "3600", "90s", "30m", "1h" or "2d". Returns 0 or AX_EINVAL. */
static int parse_duration(const char *v, uint64_t *out)
{
    size_t n = strlen(v);
    uint64_t unit = 1;
    char digits[24];
    if (n == 0 || n >= sizeof(digits))
        return AX_EINVAL;
    switch (v[n - 1]) {
    case 's':
        unit = 1, --n;
        break;
    case 'm':
        unit = 60, --n;
        break;
    case 'h':
        unit = 3600, --n;
        break;
    case 'd':
        unit = 86400, --n;
        break;
    default:
        break;
    }
    memcpy(digits, v, n);
    digits[n] = '\0';
    uint64_t count;
    if (ax_parse_u64(digits, &count) != 0 || count > UINT32_MAX)
        return AX_EINVAL;
    *out = count * unit;
    return 0;
}

/* Strips one pair of surrounding double quotes (TOML-style values). */
static char *unquote(const char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        return ax_strndup(v + 1, n - 2);
    return ax_strdup(v);
}

/* Sets key 'k' of 'cfg' from text 'raw'. Returns 0, or AX_EINVAL with a message in err. */
static int set_value(ax_config_t *cfg, const cfg_key_t *k, const char *raw, char *err, size_t errlen)
{
    char name[64];
    full_name(k, name, sizeof(name));
    char *v = unquote(raw);
    void *field = (char *)cfg + k->offset;
    int rc = 0;
    switch (k->type) {
    case T_STRING:
    case T_PATH: {
        char **sp = field;
        free(*sp);
        *sp = v[0] != '\0' ? ax_strdup(v) : NULL;
        break;
    }
    case T_BOOL:
        if (!parse_bool(v, (bool *)field)) {
            snprintf(err, errlen, "%s: expected true or false, got '%s'", name, v);
            rc = AX_EINVAL;
        }
        break;
    case T_UINT: {
        uint64_t n;
        if (ax_parse_u64(v, &n) != 0 || n < k->min || n > k->max) {
            snprintf(err, errlen, "%s: expected an integer from %llu to %llu, got '%s'", name,
                     (unsigned long long)k->min, (unsigned long long)k->max, v);
            rc = AX_EINVAL;
        } else {
            *(unsigned *)field = (unsigned)n;
        }
        break;
    }
    case T_DOUBLE: {
        char *end = NULL;
        double d = strtod(v, &end);
        if (v[0] == '\0' || end == NULL || *end != '\0' || !(d >= (double)k->min && d <= (double)k->max)) {
            snprintf(err, errlen, "%s: expected a number from %llu to %llu, got '%s'", name, (unsigned long long)k->min,
                     (unsigned long long)k->max, v);
            rc = AX_EINVAL;
        } else {
            *(double *)field = d;
        }
        break;
    }
    case T_SIZE: {
        uint64_t n;
        if (ax_parse_size(v, &n) != 0 || n < k->min || n > k->max) {
            snprintf(err, errlen, "%s: expected a size such as 50M or 1G (at least %llu bytes), got '%s'", name,
                     (unsigned long long)k->min, v);
            rc = AX_EINVAL;
        } else {
            *(uint64_t *)field = n;
        }
        break;
    }
    case T_DURATION: {
        uint64_t n;
        if (parse_duration(v, &n) != 0 || n < k->min || n > k->max) {
            snprintf(err, errlen,
                     "%s: expected a duration such as 3600, 30m, 1h or 1d (%llu to %llu seconds), got '%s'", name,
                     (unsigned long long)k->min, (unsigned long long)k->max, v);
            rc = AX_EINVAL;
        } else {
            *(unsigned *)field = (unsigned)n;
        }
        break;
    }
    case T_LISTEN: {
        ax_listenlist_t tmp = {NULL, 0};
        if (split_list(v, add_listen, &tmp) != 0) {
            listenlist_dispose(&tmp);
            snprintf(err, errlen, "%s: expected addr:port entries such as 127.0.0.1:8008 or [::]:8448, got '%s'", name,
                     v);
            rc = AX_EINVAL;
        } else {
            listenlist_dispose(field);
            *(ax_listenlist_t *)field = tmp;
        }
        break;
    }
    case T_STRLIST: {
        ax_strlist_t tmp = {NULL, 0};
        split_list(v, add_str, &tmp);
        strlist_dispose(field);
        *(ax_strlist_t *)field = tmp;
        break;
    }
    case T_ENUM: {
        int found = -1;
        for (int i = 0; k->choices[i] != NULL; ++i)
            if (strcasecmp(v, k->choices[i]) == 0)
                found = i;
        if (found < 0) {
            char choices[128] = "";
            for (int i = 0; k->choices[i] != NULL; ++i)
                snprintf(choices + strlen(choices), sizeof(choices) - strlen(choices), "%s%s", i ? "|" : "",
                         k->choices[i]);
            snprintf(err, errlen, "%s: expected one of %s, got '%s'", name, choices, v);
            rc = AX_EINVAL;
        } else {
            *(int *)field = found;
        }
        break;
    }
    }
    free(v);
    return rc;
}

static const cfg_key_t *find_key(const char *section, const char *name, size_t *index)
{
    for (size_t i = 0; i < NKEYS; ++i) {
        const cfg_key_t *k = &keys[i];
        bool same_section = (k->section == NULL && (section == NULL || section[0] == '\0')) ||
                            (k->section != NULL && section != NULL && strcmp(k->section, section) == 0);
        if (same_section && strcmp(k->name, name) == 0) {
            *index = i;
            return k;
        }
    }
    return NULL;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    load_state_t *st = user;
    size_t idx;
    const cfg_key_t *k = find_key(section, name, &idx);
    if (st->failed)
        return 1; /* report only the first problem */
    if (k == NULL) {
        if (section != NULL && section[0] != '\0')
            snprintf(st->err, st->errlen, "unknown key '%s' in section [%s]", name, section);
        else
            snprintf(st->err, st->errlen, "unknown key '%s'", name);
        st->failed = true;
        return 0;
    }
    if (set_value(st->cfg, k, value, st->err, st->errlen) != 0) {
        st->failed = true;
        return 0;
    }
    st->set[idx] = true;
    return 1;
}

/* ---- Validation ---- */

static bool valid_server_name(const char *s)
{
    /* server_name = hostname [ ":" port ], hostname = IPv4 / "[" IPv6 "]" / dns-name */
    if (s == NULL || *s == '\0' || strlen(s) > 230)
        return false;
    const char *end = s + strlen(s);
    const char *port = NULL;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return false;
        char v6[64];
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= sizeof(v6))
            return false;
        memcpy(v6, s + 1, n);
        v6[n] = '\0';
        struct in6_addr a;
        if (inet_pton(AF_INET6, v6, &a) != 1)
            return false;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return false;
    } else {
        const char *colon = strchr(s, ':');
        const char *host_end = colon ? colon : end;
        if (host_end == s)
            return false;
        for (const char *p = s; p < host_end; ++p)
            if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-'))
                return false;
        if (colon != NULL)
            port = colon + 1;
    }
    if (port != NULL) {
        uint64_t n;
        if (ax_parse_u64(port, &n) != 0 || n == 0 || n > 65535 || strlen(port) > 5)
            return false;
    }
    return true;
}

static bool readable_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return false;
    fclose(fp);
    return true;
}

/* The data dir must be writable, or creatable in a writable parent. Writes nothing. */
static int check_data_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "data_dir: '%s' is not a directory", dir);
            return AX_EINVAL;
        }
        if (access(dir, W_OK | X_OK) != 0) {
            snprintf(err, errlen, "data_dir: '%s' is not writable: %s", dir, strerror(errno));
            return AX_EINVAL;
        }
        return 0;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "data_dir: cannot access '%s': %s", dir, strerror(errno));
        return AX_EINVAL;
    }
    char *parent = ax_strdup(dir);
    char *slash = strrchr(parent, '/');
    while (slash != NULL && slash != parent && slash[1] == '\0') { /* trailing slashes */
        *slash = '\0';
        slash = strrchr(parent, '/');
    }
    const char *p = slash == NULL ? "." : (slash == parent ? "/" : (*slash = '\0', parent));
    int rc = 0;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode) || access(p, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "data_dir: '%s' does not exist and cannot be created in '%s'", dir, p);
        rc = AX_EINVAL;
    }
    free(parent);
    return rc;
}

static bool valid_registration_token(const char *t)
{
    /* spec: 1-64 characters from [A-Za-z0-9._~-] */
    size_t n = strlen(t);
    if (n == 0 || n > 64)
        return false;
    for (; *t; ++t)
        if (!(isalnum((unsigned char)*t) || *t == '.' || *t == '_' || *t == '~' || *t == '-'))
            return false;
    return true;
}

bool ax_config_is_loopback_host(const char *host)
{
    if (ax_streq(host, "localhost"))
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

bool ax_config_is_loopback_only(const ax_config_t *cfg)
{
    for (size_t i = 0; i < cfg->listen.count; ++i)
        if (!ax_config_is_loopback_host(cfg->listen.items[i].host))
            return false;
    for (size_t i = 0; i < cfg->tls_listen.count; ++i)
        if (!ax_config_is_loopback_host(cfg->tls_listen.items[i].host))
            return false;
    return true;
}

/* TURN: URIs the spec's pattern allows, and exactly one way to make credentials for them. */
static int validate_turn(const ax_config_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->turn_uris.count; ++i) {
        const char *u = cfg->turn_uris.items[i];
        if (strncmp(u, "turn:", 5) != 0 && strncmp(u, "turns:", 6) != 0) {
            snprintf(err, errlen, "turn_uris: '%s' is not a turn: or turns: URI", u);
            return AX_EINVAL;
        }
    }
    bool secret = cfg->turn_shared_secret != NULL, user = cfg->turn_username != NULL,
         password = cfg->turn_password != NULL;
    if (user != password) {
        snprintf(err, errlen, "%s: set turn_username and turn_password together",
                 user ? "turn_username" : "turn_password");
        return AX_EINVAL;
    }
    if (secret && user) {
        snprintf(err, errlen, "turn_shared_secret: set it or turn_username/turn_password, not both");
        return AX_EINVAL;
    }
    if (cfg->turn_uris.count != 0 && !secret && !user) {
        snprintf(err, errlen, "turn_uris: set turn_shared_secret (or turn_username and turn_password) too");
        return AX_EINVAL;
    }
    if (cfg->turn_uris.count == 0 && (secret || user)) {
        snprintf(err, errlen, "%s: set turn_uris too", secret ? "turn_shared_secret" : "turn_username");
        return AX_EINVAL;
    }
    return 0;
}

static int validate(load_state_t *st, bool embedded)
{
    ax_config_t *cfg = st->cfg;
    char *err = st->err;
    size_t errlen = st->errlen;

    if (cfg->server_name == NULL) {
        snprintf(err, errlen, "server_name: missing (set it in the config file or AXON_SERVER_NAME)");
        return AX_EINVAL;
    }
    if (!valid_server_name(cfg->server_name)) {
        snprintf(err, errlen, "server_name: '%s' is not a valid server name (host[:port])", cfg->server_name);
        return AX_EINVAL;
    }
    if (cfg->listen.count == 0 && cfg->tls_listen.count == 0) {
        snprintf(err, errlen, "listen: no listeners configured (set listen or tls_listen)");
        return AX_EINVAL;
    }
    if (cfg->tls_listen.count != 0) {
        if (cfg->tls_certificate == NULL || cfg->tls_private_key == NULL) {
            snprintf(err, errlen, "tls_listen: needs both tls_certificate and tls_private_key");
            return AX_EINVAL;
        }
    }
    if (cfg->tls_certificate != NULL && !readable_file(cfg->tls_certificate)) {
        snprintf(err, errlen, "tls_certificate: cannot read '%s': %s", cfg->tls_certificate, strerror(errno));
        return AX_EINVAL;
    }
    if (cfg->tls_private_key != NULL && !readable_file(cfg->tls_private_key)) {
        snprintf(err, errlen, "tls_private_key: cannot read '%s': %s", cfg->tls_private_key, strerror(errno));
        return AX_EINVAL;
    }
    if (cfg->federation_ca_file != NULL && !readable_file(cfg->federation_ca_file)) {
        snprintf(err, errlen, "federation_ca_file: cannot read '%s': %s", cfg->federation_ca_file, strerror(errno));
        return AX_EINVAL;
    }
    if (cfg->data_dir == NULL) {
        snprintf(err, errlen, "data_dir: missing");
        return AX_EINVAL;
    }
    if (check_data_dir(cfg->data_dir, err, errlen) != 0)
        return AX_EINVAL;
    if (cfg->default_room_version == NULL ||
        !(ax_streq(cfg->default_room_version, "10") || ax_streq(cfg->default_room_version, "11") ||
          ax_streq(cfg->default_room_version, "12"))) {
        snprintf(err, errlen, "default_room_version: '%s' is not one of 10, 11, 12",
                 cfg->default_room_version ? cfg->default_room_version : "");
        return AX_EINVAL;
    }
    if (cfg->well_known_client != NULL && strncmp(cfg->well_known_client, "https://", 8) != 0 &&
        strncmp(cfg->well_known_client, "http://", 7) != 0) {
        snprintf(err, errlen, "well_known_client: '%s' must be an http:// or https:// URL", cfg->well_known_client);
        return AX_EINVAL;
    }
    if (cfg->well_known_server != NULL && !valid_server_name(cfg->well_known_server)) {
        snprintf(err, errlen, "well_known_server: '%s' is not a host[:port]", cfg->well_known_server);
        return AX_EINVAL;
    }
    if (cfg->registration_token != NULL && !valid_registration_token(cfg->registration_token)) {
        snprintf(err, errlen, "registration_token: use 1-64 characters from A-Z a-z 0-9 . _ ~ -");
        return AX_EINVAL;
    }
    for (size_t i = 0; i < cfg->trusted_proxies.count; ++i) {
        const char *p = cfg->trusted_proxies.items[i];
        struct in6_addr a6;
        struct in_addr a4;
        if (inet_pton(AF_INET, p, &a4) != 1 && inet_pton(AF_INET6, p, &a6) != 1) {
            snprintf(err, errlen, "trusted_proxies: '%s' is not an IP address", p);
            return AX_EINVAL;
        }
    }
    if (validate_turn(cfg, err, errlen) != 0)
        return AX_EINVAL;
    if (cfg->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = n > 0 ? (unsigned)(n > 256 ? 256 : n) : 1;
    }
    size_t reg_idx = 0;
    find_key(NULL, "allow_registration", &reg_idx);
    if (embedded && !st->set[reg_idx]) {
        /* the embedded default is for trying axon out on one machine: registration
         * is open only while the listeners are on loopback, and then only to
         * clients on this machine, so a local proxy does not open it to the world */
        cfg->allow_registration = ax_config_is_loopback_only(cfg);
        cfg->registration_local_only = cfg->allow_registration;
    }
    return 0;
}

/* ---- Load / free ---- */

int ax_config_load(const char *path, char *const *envp, ax_config_t **out, char *err, size_t errlen)
{
    load_state_t st;
    memset(&st, 0, sizeof(st));
    st.cfg = ax_calloc(1, sizeof(ax_config_t));
    st.err = err;
    st.errlen = errlen;
    err[0] = '\0';

    for (size_t i = 0; i < NKEYS; ++i) {
        if (keys[i].def != NULL && set_value(st.cfg, &keys[i], keys[i].def, err, errlen) != 0)
            ax_fatal("config: bad built-in default: %s", err);
    }

    if (path != NULL) {
        st.cfg->source = ax_strdup(path);
        FILE *fp = fopen(path, "r");
        if (fp == NULL) {
            snprintf(err, errlen, "config: cannot read '%s': %s", path, strerror(errno));
            goto fail;
        }
        int line = ini_parse_file(fp, on_ini, &st);
        fclose(fp);
        if (line != 0) {
            char detail[400];
            snprintf(detail, sizeof(detail), "%s", st.failed ? err : "syntax error");
            snprintf(err, errlen, "config: %s:%d: %s", path, line, detail);
            goto fail;
        }
    } else {
        /* embedded default: try axon on this machine, data in ./axon-data */
        st.cfg->source = ax_strdup("embedded default");
        size_t idx;
        set_value(st.cfg, find_key(NULL, "server_name", &idx), "localhost:8008", err, errlen);
        set_value(st.cfg, find_key(NULL, "data_dir", &idx), "./axon-data", err, errlen);
    }

    for (char *const *e = envp; e != NULL && *e != NULL; ++e) {
        if (strncmp(*e, "AXON_", 5) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t nlen = (size_t)(eq - *e);
        if (nlen == 11 && strncmp(*e, "AXON_CONFIG", 11) == 0)
            continue;
        bool known = false;
        for (size_t i = 0; i < NKEYS; ++i) {
            char name[96];
            env_name(&keys[i], name, sizeof(name));
            if (strlen(name) == nlen && strncmp(name, *e, nlen) == 0) {
                char detail[400];
                if (set_value(st.cfg, &keys[i], eq + 1, detail, sizeof(detail)) != 0) {
                    snprintf(err, errlen, "config: %.*s: %s", (int)nlen, *e, detail);
                    goto fail;
                }
                st.set[i] = true;
                known = true;
                break;
            }
        }
        if (!known)
            ax_log(AX_LOG_WARN, "config: ignoring unknown environment variable %.*s", (int)nlen, *e);
    }

    {
        char detail[400];
        st.err = detail;
        st.errlen = sizeof(detail);
        if (validate(&st, path == NULL) != 0) {
            snprintf(err, errlen, "config: %s", detail);
            goto fail;
        }
    }
    *out = st.cfg;
    return 0;

fail:
    ax_config_free(st.cfg);
    *out = NULL;
    return AX_EINVAL;
}

void ax_config_free(ax_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < NKEYS; ++i) {
        void *field = (char *)cfg + keys[i].offset;
        switch (keys[i].type) {
        case T_STRING:
        case T_PATH:
            free(*(char **)field);
            break;
        case T_LISTEN:
            listenlist_dispose(field);
            break;
        case T_STRLIST:
            strlist_dispose(field);
            break;
        default:
            break;
        }
    }
    free(cfg->source);
    free(cfg);
}

void ax_config_write_sample(FILE *fp)
{
    fputs("# axon configuration.\n"
          "#\n"
          "# Every key can also be set from the environment: the variable is named after the\n"
          "# key (AXON_<KEY>) and wins over this file. Sizes take K, M, G suffixes (powers of 1024).\n"
          "# Comments start with # or ; at the beginning of a line.\n"
          "# Start the server with: axon serve -c /etc/axon/axon.conf\n",
          fp);
    const char *section = NULL;
    for (size_t i = 0; i < NKEYS; ++i) {
        const cfg_key_t *k = &keys[i];
        if (k->section != NULL && !ax_streq(section, k->section)) {
            fprintf(fp, "\n[%s]\n", k->section);
            section = k->section;
        }
        fputs("\n", fp);
        const char *h = k->help;
        while (*h != '\0') {
            const char *nl = strchr(h, '\n');
            size_t n = nl ? (size_t)(nl - h) : strlen(h);
            fprintf(fp, "# %.*s\n", (int)n, h);
            h += n + (nl ? 1 : 0);
        }
        char env[96];
        env_name(k, env, sizeof(env));
        fprintf(fp, "# Environment: %s\n", env);
        if (ax_streq(k->name, "server_name"))
            fprintf(fp, "server_name = example.org\n");
        else
            fprintf(fp, "#%s = %s\n", k->name, k->def ? k->def : "");
    }
}
