/*
 * server.h -- the HTTP front on h2o: the server and thread objects, the
 * request handle every handler receives, reply helpers, the route table
 * types and the Matrix error table.  One banner per source file.
 *
 * A handler is `int handler(ax_req_t *r)`: it replies now or later with
 * exactly one ax_reply_*() call and returns 0 (STYLE B3).  Helpers that can
 * reject a request end in _or_reply: they send the error themselves and
 * return -1, so the handler just returns 0.
 */
#ifndef AX_SERVER_H
#define AX_SERVER_H

#include "common/common.h"
#include "common/workers.h"
#include "config/config.h"
#include "core/core.h"
#include "core/media.h"
#include "core/rooms.h"
#include "storage/storage.h"

#include <netinet/in.h>
#include <pthread.h>

typedef struct st_ax_server_t ax_server_t;
typedef struct st_ax_thread_t ax_thread_t;
typedef struct st_ax_req_t ax_req_t;

#ifndef AX_VERSION
#define AX_VERSION "0.0.0-dev" /* meson passes the project version */
#endif

/* ---- errors.c -- the Matrix error table ---------------------------------------- */

/* X(enum suffix, errcode string, usual HTTP status) */
#define AX_ERRCODES(X)                                                                                                 \
    X(FORBIDDEN, "M_FORBIDDEN", 403)                                                                                   \
    X(UNKNOWN_TOKEN, "M_UNKNOWN_TOKEN", 401)                                                                           \
    X(MISSING_TOKEN, "M_MISSING_TOKEN", 401)                                                                           \
    X(USER_LOCKED, "M_USER_LOCKED", 401)                                                                               \
    X(USER_SUSPENDED, "M_USER_SUSPENDED", 403)                                                                         \
    X(BAD_JSON, "M_BAD_JSON", 400)                                                                                     \
    X(NOT_JSON, "M_NOT_JSON", 400)                                                                                     \
    X(NOT_FOUND, "M_NOT_FOUND", 404)                                                                                   \
    X(LIMIT_EXCEEDED, "M_LIMIT_EXCEEDED", 429)                                                                         \
    X(UNRECOGNIZED, "M_UNRECOGNIZED", 404)                                                                             \
    X(UNKNOWN, "M_UNKNOWN", 400)                                                                                       \
    X(INTERNAL, "M_UNKNOWN", 500) /* our own failure: M_UNKNOWN with 500 */                                            \
    X(UNAUTHORIZED, "M_UNAUTHORIZED", 401)                                                                             \
    X(USER_DEACTIVATED, "M_USER_DEACTIVATED", 403)                                                                     \
    X(USER_IN_USE, "M_USER_IN_USE", 400)                                                                               \
    X(INVALID_USERNAME, "M_INVALID_USERNAME", 400)                                                                     \
    X(ROOM_IN_USE, "M_ROOM_IN_USE", 400)                                                                               \
    X(INVALID_ROOM_STATE, "M_INVALID_ROOM_STATE", 400)                                                                 \
    X(THREEPID_IN_USE, "M_THREEPID_IN_USE", 400)                                                                       \
    X(THREEPID_NOT_FOUND, "M_THREEPID_NOT_FOUND", 400)                                                                 \
    X(THREEPID_DENIED, "M_THREEPID_DENIED", 403)                                                                       \
    X(UNSUPPORTED_ROOM_VERSION, "M_UNSUPPORTED_ROOM_VERSION", 400)                                                     \
    X(INCOMPATIBLE_ROOM_VERSION, "M_INCOMPATIBLE_ROOM_VERSION", 400)                                                   \
    X(BAD_STATE, "M_BAD_STATE", 400)                                                                                   \
    X(GUEST_ACCESS_FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN", 403)                                                         \
    X(MISSING_PARAM, "M_MISSING_PARAM", 400)                                                                           \
    X(INVALID_PARAM, "M_INVALID_PARAM", 400)                                                                           \
    X(TOO_LARGE, "M_TOO_LARGE", 413)                                                                                   \
    X(EXCLUSIVE, "M_EXCLUSIVE", 400)                                                                                   \
    X(RESOURCE_LIMIT_EXCEEDED, "M_RESOURCE_LIMIT_EXCEEDED", 403)                                                       \
    X(BAD_ALIAS, "M_BAD_ALIAS", 400)                                                                                   \
    X(INVALID_SIGNATURE, "M_INVALID_SIGNATURE", 400)                                                                   \
    X(WRONG_ROOM_KEYS_VERSION, "M_WRONG_ROOM_KEYS_VERSION", 403)                                                       \
    X(NOT_YET_UPLOADED, "M_NOT_YET_UPLOADED", 504)                                                                     \
    X(CANNOT_OVERWRITE_MEDIA, "M_CANNOT_OVERWRITE_MEDIA", 409)                                                         \
    X(UNSUPPORTED, "M_UNSUPPORTED", 400)                                                                               \
    X(SERVER_NOT_TRUSTED, "M_SERVER_NOT_TRUSTED", 400)                                                                 \
    X(UNABLE_TO_AUTHORISE_JOIN, "M_UNABLE_TO_AUTHORISE_JOIN", 400)                                                     \
    X(UNABLE_TO_GRANT_JOIN, "M_UNABLE_TO_GRANT_JOIN", 502)                                                             \
    X(WEAK_PASSWORD, "M_WEAK_PASSWORD", 400)                                                                           \
    X(PROFILE_TOO_LARGE, "M_PROFILE_TOO_LARGE", 400)                                                                   \
    X(KEY_TOO_LARGE, "M_KEY_TOO_LARGE", 400)                                                                           \
    X(APPSERVICE_LOGIN_UNSUPPORTED, "M_APPSERVICE_LOGIN_UNSUPPORTED", 400)

typedef enum {
#define X(name, code, status) AX_M_##name,
    AX_ERRCODES(X)
#undef X
        AX_M__COUNT
} ax_errcode_t;

/** "M_FORBIDDEN" for AX_M_FORBIDDEN. */
const char *ax_errcode_name(ax_errcode_t code);
/** The spec's usual HTTP status for 'code'. */
int ax_errcode_status(ax_errcode_t code);
/** Maps an internal AX_E* code to the Matrix error a client should see. */
ax_errcode_t ax_errcode_from_ax(int ax_code);

/* ---- routes.c / router.c -- the one route table ------------------------------------ */

typedef int (*ax_handler_t)(ax_req_t *r);

enum {
    AX_ROUTE_AUTH = 1 << 0,          /* access token required: 401 without one */
    AX_ROUTE_AUTH_OPTIONAL = 1 << 1, /* token used when present (and checked) */
    AX_ROUTE_UPLOAD = 1 << 2,        /* body limit is max_upload_size, not max_request_size */
    AX_ROUTE_NO_R0 = 1 << 3,         /* a v3 path that has no r0 alias */
    AX_ROUTE_NO_LOG = 1 << 4,        /* no access-log line (health checks, metrics scrapes) */
    AX_ROUTE_FED = 1 << 5,           /* Server-Server API: X-Matrix signature required (federation/auth.c) */
};

#define AX_ROUTE_MAX_PARAMS 6

typedef struct st_ax_route_t {
    const char *method; /* "GET", "PUT", ...; GET routes also answer HEAD */
    const char *path;   /* template: literal segments and {name} parameters */
    ax_handler_t handler;
    unsigned flags;
} ax_route_t;

/** The route table (routes.c), 'ax_routes_count' rows. */
extern const ax_route_t ax_routes[];
extern const size_t ax_routes_count;

typedef struct st_ax_router_t ax_router_t;

/** Builds the segment trie for 'routes'.  Aborts on a malformed template (a programming error). */
ax_router_t *ax_router_new(const ax_route_t *routes, size_t n);
void ax_router_free(ax_router_t *rt);

typedef enum { AX_MATCH_OK, AX_MATCH_NO_PATH, AX_MATCH_NO_METHOD } ax_match_t;

/**
 * Matches 'method' and the raw 'path' (no query string).  On AX_MATCH_OK
 * stores the route index in '*index' and up to AX_ROUTE_MAX_PARAMS raw
 * (still percent-encoded) parameter slices in 'params'.  On
 * AX_MATCH_NO_METHOD, writes the allowed methods ("GET, PUT") to 'allow'.
 */
ax_match_t ax_router_match(const ax_router_t *rt, const char *method, size_t mlen, const char *path, size_t plen,
                           size_t *index, const char **param_ptr, size_t *param_len, size_t *nparams, char *allow,
                           size_t allow_cap);

/* ---- http.c -- requests and replies ------------------------------------------------ */

/** Who sent an authenticated request (strings live in the request pool). */
typedef struct st_ax_auth_t {
    const char *user_id;
    const char *device_id;
    bool is_admin;
    const char *server; /* AX_ROUTE_FED: the origin server whose X-Matrix signature verified */
} ax_auth_t;

struct st_ax_req_t {
    struct st_h2o_req_t *req; /* NULL once h2o freed the request (the client went away) */
    ax_thread_t *thread;
    ax_server_t *srv;
    size_t route_index;
    const ax_route_t *route;
    const char *params[AX_ROUTE_MAX_PARAMS]; /* percent-decoded, NUL-terminated, in the pool */
    size_t nparams;
    ax_auth_t auth; /* user_id NULL when not authenticated */
    uint64_t start_ns;
    bool replied;
    ax_task_t *pending; /* the asynchronous step in progress, if any */
    const char *client_ip;
    struct st_ax_waiter_t *waiter; /* set while parked */
    void *route_data;              /* the handler's own state across continuations (pool memory) */
    /* JSON values held for the request's lifetime (ax_req_hold_json) */
    json_t *_held[4];
    size_t nheld;
    json_t *_held_more;
};

/** Allocates 'sz' bytes from the request pool (freed with the request). */
void *ax_palloc(ax_req_t *r, size_t sz);
/** Allocates 'sz' bytes freed with the request, after 'dispose' (may be NULL) runs on them. */
void *ax_palloc_dispose(ax_req_t *r, size_t sz, void (*dispose)(void *));
/** Copies 's' (or its first 'n' bytes) into the request pool. */
char *ax_pstrdup(ax_req_t *r, const char *s);
char *ax_pstrndup(ax_req_t *r, const char *s, size_t n);
/** A printf into the request pool. */
char *ax_psprintf(ax_req_t *r, const char *fmt, ...) AX_PRINTF(2, 3);

/** Ties 'j' (stolen) to the request: it is decref'd when the request is freed. Returns 'j'. */
json_t *ax_req_hold_json(ax_req_t *r, json_t *j);

/**
 * Parses the body as a JSON object.  An empty body counts as {}.  On
 * success stores a borrowed object (held by the request) in '*out' and
 * returns 0; otherwise replies 400 M_NOT_JSON and returns -1.
 */
int ax_req_json_body_or_reply(ax_req_t *r, json_t **out);

/**
 * Returns the percent-decoded value of query parameter 'name' (in the
 * pool), or NULL when absent.  A present but undecodable value reads as "".
 */
const char *ax_req_query(ax_req_t *r, const char *name);
/** The 'nth' (from 0) occurrence of a repeated query parameter ("ver", "server_name"), or NULL. */
const char *ax_req_query_nth(ax_req_t *r, const char *name, size_t nth);

/* Typed fields of a JSON object (borrowed values).  A JSON null counts as
 * absent.  A wrong type replies 400 M_BAD_JSON, a missing required field
 * 400 M_MISSING_PARAM; both return -1. */
int ax_field_string_or_reply(ax_req_t *r, json_t *obj, const char *key, bool required, const char **out);
int ax_field_bool_or_reply(ax_req_t *r, json_t *obj, const char *key, bool dflt, bool *out);
int ax_field_object_or_reply(ax_req_t *r, json_t *obj, const char *key, bool required, json_t **out);
int ax_field_array_or_reply(ax_req_t *r, json_t *obj, const char *key, bool required, json_t **out);
int ax_field_int_or_reply(ax_req_t *r, json_t *obj, const char *key, bool required, json_int_t *out);

/** The value of request header 'name' (lower-case) copied into the pool, or NULL. */
const char *ax_req_header(ax_req_t *r, const char *name);

/**
 * The value of the 'n'-th (from 0) header named 'name' (lower-case),
 * borrowed from the request (not NUL-terminated; 'len' bytes), or NULL.
 */
const char *ax_req_header_n(ax_req_t *r, const char *name, size_t n, size_t *len);

/** The raw request target as sent: path and query string (in the pool). */
const char *ax_req_uri(ax_req_t *r);

/** The request method ("GET") and raw path without the query string, in the pool. */
const char *ax_req_method(ax_req_t *r);
const char *ax_req_path(ax_req_t *r);

/** The client's address as text, honouring X-Forwarded-For from trusted proxies (in the pool). */
const char *ax_req_client_ip(ax_req_t *r);

/** The raw request body (borrowed from h2o; empty when none). */
void ax_req_body(ax_req_t *r, const char **base, size_t *len);

/**
 * Replies 'status' with JSON 'body' (stolen, even on failure).  Returns 0 so
 * handlers can `return ax_reply_json_new(r, 200, body);`.
 */
int ax_reply_json_new(ax_req_t *r, int status, json_t *body);

/** Replies 'status' with bytes already serialized ('body' is copied if not in the pool). */
int ax_reply_raw(ax_req_t *r, int status, const char *content_type, const char *body, size_t len);

/**
 * Replies 'status' with the 'size' bytes of the open file 'fd', with
 * 'content_type' (copied; may be NULL) and the headers added by
 * ax_reply_header().  'fd' passes to the reply, which closes it when the
 * body is sent or the client goes away (also on a second reply, which is
 * ignored).  The body is streamed from the file in chunks on the request's
 * thread (see http.c for why); a read error cuts the response short.
 * Metrics and the access log count the reply when its headers are sent;
 * graceful shutdown waits for the body.  Returns 0.
 */
int ax_reply_file(ax_req_t *r, int status, const char *content_type, int fd, uint64_t size);

/**
 * ax_reply_file() with bytes before and after the file: 'head' ('head_len'
 * bytes) and 'tail' (both copied; NULL when 0 bytes) frame it, as the two
 * parts of a multipart/mixed federation media download do.  The file is
 * still streamed; Content-Length counts all three.  Returns 0.
 */
int ax_reply_file_framed(ax_req_t *r, int status, const char *content_type, const char *head, size_t head_len, int fd,
                         uint64_t size, const char *tail, size_t tail_len);

/** Replies with the Matrix error 'code' and its usual status. */
int ax_reply_error(ax_req_t *r, ax_errcode_t code, const char *message);

/** Replies with the Matrix error 'code' and an explicit HTTP 'status'. */
int ax_reply_error_status(ax_req_t *r, int status, ax_errcode_t code, const char *message);

/** Replies 429 M_LIMIT_EXCEEDED with retry_after_ms (and a Retry-After header). */
int ax_reply_limit_exceeded(ax_req_t *r, uint64_t retry_after_ms);

/** Adds a response header (name lower-case); call before replying. */
void ax_reply_header(ax_req_t *r, const char *name, const char *value);

/**
 * A continuation: runs on the request's thread when its task completes.
 * 'r' is NULL if the request went away meanwhile.  It always runs exactly
 * once and owns (frees) the task.
 */
typedef void (*ax_req_cont_t)(ax_req_t *r, ax_task_t *task);

/**
 * Ties 'task' to the request: sets its 'done' and 'port' so that 'cont'
 * continues the request on its thread when the task completes (or runs
 * with r == NULL if the request went away).  The caller then hands the task
 * to whatever completes it (the federation loop, the keyring).
 */
void ax_req_bind_task(ax_req_t *r, ax_task_t *task, ax_req_cont_t cont);

/** Submits 'job' to the writer; 'cont' continues the request after the commit. */
void ax_req_submit_write(ax_req_t *r, ax_wjob_t *job, ax_req_cont_t cont);

/** Runs 'work' on the worker pool; 'cont' continues the request afterwards. */
void ax_req_submit_work(ax_req_t *r, ax_work_t *work, ax_req_cont_t cont);

/**
 * The common case of the two above without a job struct of your own: runs
 * 'apply(txn, data)' on the writer (or 'run(data)' on a worker), then
 * 'done(r, result, data)' on the request's thread, then 'free_data(data)'
 * (may be NULL).  'data' must be heap memory (never the request pool): the
 * request can go away while the writer or worker uses it; 'done' is then
 * skipped but 'free_data' still runs.
 */
typedef int (*ax_apply_fn)(ax_txn_t *txn, void *data);
typedef void (*ax_done_fn)(ax_req_t *r, int result, void *data);
void ax_req_write(ax_req_t *r, ax_apply_fn apply, ax_done_fn done, void *data, void (*free_data)(void *));
void ax_req_work(ax_req_t *r, int (*run)(void *data), ax_done_fn done, void *data, void (*free_data)(void *));

/**
 * A write the request does not wait for (presence updates on /sync): runs
 * 'apply' on the writer, then 'free_data'.  Bound to the request's thread,
 * so shutdown still waits for it.
 */
void ax_req_write_detached(ax_req_t *r, ax_apply_fn apply, void *data, void (*free_data)(void *));

/* ---- long-polls (http.c) ---------------------------------------------------------------- */

/** Called on the request's thread when a parked request wakes. */
typedef void (*ax_wake_fn)(ax_req_t *r, bool timed_out);

/**
 * Parks 'r' until 'key' (a user ID) has news, or 'timeout_ms' passes, or the
 * server shuts down (timed out), then calls 'wake'.  'seen_pos' is the
 * stream position read before the request's last look at the database
 * (ax_writer_stream_pos); if anything committed since, 'wake' runs at once
 * so no news slips between the look and the wait.  Parked requests cost no
 * thread and do not count towards max_concurrent_requests.
 */
void ax_req_park(ax_req_t *r, const char *key, uint64_t seen_pos, uint64_t timeout_ms, ax_wake_fn wake);

/** True once the server is shutting down: a woken long-poll should answer with what it has, not park again. */
bool ax_req_shutting_down(const ax_req_t *r);

/** The writer's commit hook: wakes, on every HTTP thread, the long-polls waiting on 'keys'. */
void ax_http_notify(ax_server_t *srv, const ax_commit_info_t *info);

/* ---- auth.c -- access tokens --------------------------------------------------------- */

/**
 * Authenticates the request from "Authorization: Bearer" (or the
 * deprecated access_token query parameter).  On success fills r->auth and
 * returns 0.  Otherwise replies 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN and
 * returns -1.  With 'optional', a missing token is not an error.
 */
int ax_req_auth_or_reply(ax_req_t *r, bool optional);

/** Frees the table of devices' last-seen writes (at shutdown). */
void ax_auth_seen_dispose(void);

/* ---- federation/auth.c -- the AX_ROUTE_FED guard -------------------------------------- */

/**
 * Authenticates a Server-Server request by its X-Matrix header and runs
 * the route's handler with r->auth.server set, now or once the origin's key
 * was fetched.  Replies 401 M_UNAUTHORIZED (or 404 when federation is
 * disabled) otherwise.  Returns 0.
 */
int ax_fed_auth_run(ax_req_t *r);

/* ---- ratelimit.c -- token buckets per key ------------------------------------------- */

typedef struct st_ax_ratelimit_t ax_ratelimit_t;

/** A limiter allowing 'burst' actions at once, refilled at 'per_second'. */
ax_ratelimit_t *ax_ratelimit_new(double per_second, double burst);
void ax_ratelimit_free(ax_ratelimit_t *rl);
/**
 * Takes one action for 'key' (e.g. a client IP).  Returns 0 when allowed,
 * else the milliseconds until it would be.  Thread-safe.
 */
uint64_t ax_ratelimit_take(ax_ratelimit_t *rl, const char *key, uint64_t now_ms);

/**
 * Applies limiter 'rl' to the request's client address.  Returns 0 when
 * allowed; otherwise replies 429 M_LIMIT_EXCEEDED and returns -1.
 */
int ax_req_ratelimit_or_reply(ax_req_t *r, ax_ratelimit_t *rl);

/* ---- metrics.c -- Prometheus counters ------------------------------------------------ */

#define AX_LATENCY_BUCKETS 14
extern const double ax_latency_bounds[AX_LATENCY_BUCKETS];
#define AX_STATUS_SLOTS 20

/** Per-thread request counters, written by their thread only (relaxed atomics for the scraper). */
typedef struct st_ax_route_metrics_t {
    _Atomic uint64_t status[AX_STATUS_SLOTS];
    _Atomic uint64_t latency[AX_LATENCY_BUCKETS]; /* non-cumulative */
    _Atomic uint64_t latency_ns_sum;
} ax_route_metrics_t;

/** Records one finished request on the calling thread. */
void ax_metrics_record(ax_thread_t *t, size_t route_index, int status, uint64_t latency_ns);

/* ---- server object ------------------------------------------------------------------- */

typedef struct st_ax_http_t ax_http_t;

/**
 * Federation's hook for media of other servers (server/cs/media.c calls it
 * when mxc://'server_name'/'media_id' is not in the local cache): fetch the
 * content into the store, record it under the media key
 * "'server_name'/'media_id'" through the writer, then call 'done' on the
 * request's thread with 0 (the download is then served from the cache),
 * AX_ENOTFOUND (the remote has no such media), AX_ETOOBIG (over
 * max_upload_size: 502 M_TOO_LARGE) or another AX_E* code (502).  'done'
 * gets r == NULL if the client went away meanwhile.
 */
typedef void (*ax_media_fetch_fn)(ax_req_t *r, const char *server_name, const char *media_id,
                                  void (*done)(ax_req_t *r, int result));

struct st_ax_server_t {
    const ax_config_t *cfg;
    ax_http_t *http;
    ax_db_t *db;
    ax_writer_t *writer;
    ax_search_indexer_t *search; /* the writer's task: the full-text index */
    ax_workers_t *workers;
    ax_signing_key_t signing_key;
    struct st_ax_origin_t origin; /* server_name + signing_key, for the event pipeline */
    ax_router_t *router;
    ax_thread_t **threads;
    unsigned nthreads;
    _Atomic int64_t inflight;    /* requests being processed, all threads */
    _Atomic int64_t connections; /* open client connections, all threads */
    uint64_t started_at_ms;
    struct st_ax_typing_t *typing;
    struct st_ax_presence_t *presence;
    struct st_ax_push_t *push;             /* the push engine, attached to the writer (core/push.h) */
    struct st_ax_outbound_t *outbound;     /* the outbound HTTP client thread (server/outbound.h) */
    struct st_ax_pusher_t *pusher;         /* the push sender running on it (server/pusher.h) */
    struct st_ax_changes_t *changes;       /* rooms changed per stream position (changes.h) */
    void (*on_tick)(ax_server_t *srv);     /* run every second on HTTP thread 0 */
    void (*on_stopping)(ax_server_t *srv); /* run once on SIGTERM/SIGINT, before the threads drain */
    struct st_ax_fed_t *fed;               /* the federation loop; NULL when federation is disabled */
    pthread_mutex_t fed_mutex;             /* the commit hook's use of 'fed' against its teardown */
    struct {
        ax_ratelimit_t *login;
        ax_ratelimit_t *register_;
        ax_ratelimit_t *media; /* per user: uploads and /create */
    } limits;
    /* the media repository (server/cs/media.c) */
    struct {
        ax_media_store_t store;
        ax_media_fetch_fn fetch;      /* remote media; NULL until federation fetches media */
        _Atomic uint64_t swept_at_ms; /* last sweep of expired /create IDs */
    } media;
    /* nonces of the shared-secret registration endpoint (server/cs/register.c) */
    pthread_mutex_t nonce_mutex;
    struct ax_nonce_t {
        char value[33];
        uint64_t expires_ms;
    } nonces[64];
    _Atomic uint64_t uia_swept_at_ms; /* last time stale UIA sessions were removed */
    /* prebuilt bodies of constant endpoints */
    char *versions_body;
    size_t versions_len;
    /* /_matrix/key/v2/server, re-signed when it gets old */
    pthread_mutex_t key_mutex;
    char *key_body;
    size_t key_len;
    uint64_t key_valid_until;
};

/** Route slot used for requests that matched no route (metrics). */
#define AX_ROUTE_UNMATCHED (ax_routes_count)

/** The metrics of thread 't' for 'route_index' (0 .. ax_routes_count). */
ax_route_metrics_t *ax_thread_metrics(ax_thread_t *t, size_t route_index);

/**
 * Starts the HTTP threads on listeners bound by ax_http_bind() and runs
 * until SIGTERM/SIGINT, then shuts down gracefully.  Returns 0.
 */
int ax_http_run(ax_server_t *srv);

/** Binds every listener of srv->cfg (checking the ports are free) and loads TLS.  Returns 0, or AX_EINVAL with 'err'.
 */
int ax_http_bind(ax_server_t *srv, char *err, size_t errlen);

/** Frees what ax_http_bind / ax_http_run allocated. */
void ax_http_dispose(ax_server_t *srv);

/** Returns the server's process RSS in bytes (0 if unknown). */
uint64_t ax_process_rss(void);

#endif
