/*
 * federation.h -- the Server-Server transport: server discovery
 * (resolve.c), the outbound HTTPS client on its own event loop (client.c),
 * X-Matrix request signatures (auth.c) and other servers' signing keys
 * (keyring.c).  Room federation is built on top of these.  One banner per
 * source file.
 *
 * Threads: the federation loop (client.c) is one thread with its own h2o
 * event loop.  Requests and key lookups are submitted from any thread as
 * tasks (common.h) and completed through the submitter's port, like writer
 * jobs.  Server discovery and the keyring run on that loop; SRV lookups run
 * on a DNS thread of their own (dns.c, c-ares).
 */
#ifndef AX_FEDERATION_H
#define AX_FEDERATION_H

#include "common/common.h"
#include "config/config.h"
#include "core/core.h"
#include "core/events.h"
#include "server/outbound.h"
#include "storage/storage.h"

#include <sys/socket.h>

typedef struct st_ax_fed_t ax_fed_t;

/* ---- resolve.c -- server discovery (spec: Server-Server API, "Resolving server names") ---- */

#define AX_FED_DEFAULT_PORT 8448

/** Where requests for one server name go, and how they present themselves. */
typedef struct st_ax_fed_target_t {
    char host[256];        /* what to connect to: a DNS name, or an IP literal without brackets */
    uint16_t port;         /* TCP port */
    char host_header[264]; /* the Host header */
    char tls_name[256];    /* the name the certificate must carry: a DNS name or an IP literal */
    bool tls_name_is_ip;   /* the certificate must carry an IP address; no SNI is sent */
} ax_fed_target_t;

/** One SRV record as a lookup returns it. */
typedef struct st_ax_srv_record_t {
    char target[256]; /* host name, without a trailing dot; "." or "" means "no service here" */
    uint16_t port;
    uint16_t priority;
    uint16_t weight;
} ax_srv_record_t;

typedef struct st_ax_resolver_t ax_resolver_t;
/** One .well-known fetch or SRV lookup the resolver waits for. */
typedef struct st_ax_resolve_step_t ax_resolve_step_t;

/**
 * What the resolver needs from the outside world, injected so discovery can
 * be tested without a network.  Every operation must end, now or later and
 * on the resolver's thread, with exactly one call of the matching
 * ax_resolver_*_done().
 */
typedef struct st_ax_resolve_ops_t {
    /** The current wall-clock time in milliseconds. */
    uint64_t (*now_ms)(void *ctx);
    /** GET https://'hostname'/.well-known/matrix/server, following redirects; ends with ax_resolver_wellknown_done().
     */
    void (*fetch_wellknown)(void *ctx, ax_resolve_step_t *step, const char *hostname);
    /** Looks up SRV records of 'name' ("_matrix-fed._tcp.example.org"); ends with ax_resolver_srv_done(). */
    void (*lookup_srv)(void *ctx, ax_resolve_step_t *step, const char *name);
    /** A uniform random number in [0, n) for the weighted choice among SRV records; NULL uses libsodium. */
    uint32_t (*random)(void *ctx, uint32_t n);
} ax_resolve_ops_t;

/** Caching periods of .well-known answers (the spec leaves the values to servers). */
#define AX_WELLKNOWN_DEFAULT_MS       (3600ULL * 1000)      /* valid answer without cache headers */
#define AX_WELLKNOWN_MAX_MS           (24ULL * 3600 * 1000) /* upper bound whatever the headers say */
#define AX_WELLKNOWN_MIN_MS           (30ULL * 1000)        /* lower bound, also for no-store answers */
#define AX_WELLKNOWN_ERROR_MS         (30ULL * 1000)        /* the first failure; doubles per repeated failure */
#define AX_WELLKNOWN_ERROR_MAX_MS     (3600ULL * 1000)      /* "errors are cached for up to an hour" */
#define AX_RESOLVE_TARGET_MS          (10ULL * 60 * 1000)   /* a discovered target (SRV answers included) */
#define AX_RESOLVE_TARGET_DEGRADED_MS (30ULL * 1000)        /* ... when a DNS lookup failed on the way */

/**
 * Creates a resolver using 'ops' with 'ctx' (both borrowed, must outlive
 * it).  A resolver belongs to one thread; it caches .well-known answers and
 * discovered targets.
 */
ax_resolver_t *ax_resolver_new(const ax_resolve_ops_t *ops, void *ctx);

/** Frees the resolver.  No resolution may be in progress.  NULL is allowed. */
void ax_resolver_free(ax_resolver_t *rs);

/**
 * Called once per resolution: 'rc' is 0 and 'target' (borrowed for the
 * call) says where to connect, or 'rc' is AX_EINVAL (not a server name)
 * with 'error' saying why.
 */
typedef void (*ax_resolve_cb)(void *arg, int rc, const ax_fed_target_t *target, const char *error);

/**
 * Resolves 'server_name' as the spec's steps say.  'cb' runs exactly once:
 * at once when the answer is known (IP literal, explicit port, cached), else
 * later from an ops completion.  Concurrent resolutions of one name share
 * their lookups.
 */
void ax_resolver_resolve(ax_resolver_t *rs, const char *server_name, ax_resolve_cb cb, void *arg);

/** Drops cached answers that expired long enough ago not to matter for error backoff. */
void ax_resolver_prune(ax_resolver_t *rs);

/** Drops the cached target of 'server_name' (after a connection to it failed). */
void ax_resolver_forget(ax_resolver_t *rs, const char *server_name);

/**
 * Ends a .well-known fetch: 'status' is the HTTP status (0 when no response
 * came), 'body' (len bytes, borrowed) the response body, 'cache_control'
 * and 'expires' the response headers or NULL.
 */
void ax_resolver_wellknown_done(ax_resolve_step_t *step, int status, const char *body, size_t len,
                                const char *cache_control, const char *expires);

/**
 * Ends an SRV lookup: 'rc' is 0 with 'n' records (borrowed), AX_ENOTFOUND
 * when the name has none, or another AX_E* code when the lookup failed.
 */
void ax_resolver_srv_done(ax_resolve_step_t *step, int rc, const ax_srv_record_t *records, size_t n);

/**
 * How long a valid .well-known answer may be cached, from its
 * Cache-Control and Expires headers (either may be NULL) at 'now_ms':
 * max-age wins over Expires; no-store and no-cache mean "do not keep";
 * without either header AX_WELLKNOWN_DEFAULT_MS.  Clamped to
 * [AX_WELLKNOWN_MIN_MS, AX_WELLKNOWN_MAX_MS].
 */
uint64_t ax_wellknown_cache_ms(const char *cache_control, const char *expires, uint64_t now_ms);

/**
 * Splits server name 's' into its host ('host', cap bytes; IPv6 without
 * brackets) and port (0 when absent), and says whether the host is an IP
 * literal.  Returns 0, or AX_EINVAL when 's' is not a server name.
 */
int ax_server_name_split(const char *s, char *host, size_t cap, uint16_t *port, bool *is_ip);

/* ax_addr_is_private(): server/outbound.h, for push and federation alike */

/* ---- auth.c -- X-Matrix request signatures ------------------------------------------------ */

/** The parameters of one "Authorization: X-Matrix ..." header, unescaped and NUL-terminated. */
typedef struct st_ax_xmatrix_t {
    char origin[256];
    char destination[256]; /* "" when the header had none */
    char key[AX_KEY_ID_MAX];
    char sig[128];
} ax_xmatrix_t;

/**
 * Parses an Authorization header value ('len' bytes, not necessarily
 * NUL-terminated) as RFC 9110 credentials with scheme X-Matrix: parameter
 * names are case-insensitive, values are tokens or quoted strings with
 * backslash escapes, colons are allowed unquoted, unknown parameters are
 * ignored.  Returns 0, or AX_EINVAL when the scheme is not X-Matrix, the
 * syntax is broken, a parameter repeats or is too long, or origin, key or
 * sig is missing.  Never reads outside 'value'.
 */
int ax_xmatrix_parse(const char *value, size_t len, ax_xmatrix_t *out);

/**
 * Builds the JSON object that X-Matrix signs: {method, uri, origin,
 * destination, content?}.  'content' (borrowed; NULL when the request has
 * no body) is included as is.  Returns a new reference.
 */
json_t *ax_xmatrix_request_json(const char *method, const char *uri, const char *origin, const char *destination,
                                const json_t *content);

/**
 * Signs a request as 'origin' with 'key' and writes the Authorization
 * header value (X-Matrix origin="..",destination="..",key="..",sig="..")
 * into 'out'.  Returns 0 or AX_EINVAL (content not representable as
 * canonical JSON).
 */
int ax_xmatrix_sign(ax_buf_t *out, const char *method, const char *uri, const char *origin, const char *destination,
                    const json_t *content, const ax_signing_key_t *key);

/**
 * Checks 'x' against the request (method, uri, content as for
 * ax_xmatrix_request_json) with public key 'public_key' of x->origin.
 * 'our_name' is used as the destination when the header named none.
 * Returns 0 or AX_EBADSIG.
 */
int ax_xmatrix_verify(const ax_xmatrix_t *x, const char *method, const char *uri, const char *our_name,
                      const json_t *content, const uint8_t public_key[crypto_sign_PUBLICKEYBYTES]) AX_WARN_UNUSED;

/* ---- client.c -- the federation loop and outbound requests ---------------------------------- */

/** Request flags. */
enum {
    AX_FED_IGNORE_BACKOFF = 1 << 0, /* send even while the destination is backed off (key fetches) */
};

#define AX_FED_TIMEOUT_MS    30000      /* default whole-request deadline */
#define AX_FED_MAX_RESPONSE  (8u << 20) /* default response body limit */
#define AX_FED_MAX_REDIRECTS 5

/**
 * One outbound request.  Create it with ax_fed_request_new(), set
 * 'super.done' and 'super.port' (or bind it to an HTTP request with
 * ax_req_bind_task), and submit it with ax_fed_submit().  When it
 * completes, 'super.result' is 0 if an HTTP response arrived (whatever its
 * status) and an AX_E* code otherwise, with 'error' saying what happened.
 */
typedef struct st_ax_fed_request_t {
    ax_task_t super;
    void *user; /* the submitter's own pointer, untouched by the client */
    /* the request (owned by this struct; change only before submitting) */
    char *destination; /* Matrix server name: resolved, signed with X-Matrix */
    char *method;
    char *path;   /* "/_matrix/...", query string included and already percent-encoded */
    json_t *body; /* JSON request body or NULL */
    unsigned flags;
    uint64_t timeout_ms; /* whole request, from submission; default AX_FED_TIMEOUT_MS */
    size_t max_response; /* response body limit; default AX_FED_MAX_RESPONSE */
    /* the response */
    int status;     /* HTTP status; 0 when none arrived */
    json_t *json;   /* the body parsed as JSON (object or array) when it was JSON, else NULL */
    char *body_raw; /* the raw body (NUL-terminated) */
    size_t body_len;
    char *content_type;        /* the response's Content-Type, or NULL */
    char *content_disposition; /* the response's Content-Disposition, or NULL */
    char error[160];           /* why it failed, for logs and client error messages */
    /* private to client.c */
    char *_url_host; /* internal plain HTTPS requests (.well-known): host, port, no X-Matrix */
    uint16_t _url_port;
    bool _follow_redirects;
    char *_cache_control, *_expires, *_location;
    ax_task_t _in;
} ax_fed_request_t;

/**
 * Makes a request to Matrix server 'destination' (copied): 'method' and
 * 'path' are copied, 'body' is stolen (NULL for none).  Returns a new heap
 * request; free it with ax_fed_request_free() once it completed (or if it
 * was never submitted).
 */
ax_fed_request_t *ax_fed_request_new(const char *destination, const char *method, const char *path, json_t *body);

/**
 * A plain HTTPS GET of 'url' ("https://host[:port]/path", copied), not
 * signed and not subject to a destination's backoff, following up to
 * AX_FED_MAX_REDIRECTS https redirects; every address it resolves to is
 * still checked like a destination's.  For the Location a server answers
 * a media download with.  Returns a new heap request, or NULL when 'url'
 * is not such a URL.
 */
ax_fed_request_t *ax_fed_request_new_url(const char *url);

/** Frees a request and its response.  NULL is allowed. */
void ax_fed_request_free(ax_fed_request_t *fr);

/**
 * Queues 'fr' on the federation loop (thread-safe).  Its 'super.done' runs
 * exactly once on 'super.port'.  Requests to a destination in backoff fail
 * at once with AX_EUNREACHABLE unless AX_FED_IGNORE_BACKOFF; requests to
 * addresses outside the public internet fail with AX_EFORBIDDEN unless
 * outbound_allow_private.
 */
void ax_fed_submit(ax_fed_t *fed, ax_fed_request_t *fr);

/**
 * Appends 's' to 'out' percent-encoded for a path segment or a query value
 * (everything but RFC 3986 unreserved characters is encoded).
 */
void ax_fed_urlencode(ax_buf_t *out, const char *s);

/**
 * Starts the federation loop thread (and its DNS thread) for 'cfg' (our
 * server name, TLS settings, trusted_key_servers), signing with 'key',
 * reading 'db' and writing through 'writer' (all borrowed; they must
 * outlive the loop).  Returns the loop.  Its TLS context (the system's
 * certificates and federation_ca_file) is made by the first outbound
 * request; ax_fed_check_config() checks the CA file at start-up.
 */
ax_fed_t *ax_fed_start(const ax_config_t *cfg, const ax_signing_key_t *key, ax_db_t *db, ax_writer_t *writer);

/**
 * Checks what the federation client will load from 'cfg' (federation_ca_file), so
 * a bad file fails start-up before anything is written.  Returns 0 or
 * AX_EINVAL with 'err' set.
 */
int ax_fed_check_config(const ax_config_t *cfg, char *err, size_t errlen);

/**
 * Begins shutting down (any thread): requests and lookups in progress
 * complete with AX_ESHUTDOWN, and so does anything submitted from now on.
 */
void ax_fed_shutdown(ax_fed_t *fed);

/** Stops the loop once its own writes and lookups finished, joins its threads and frees it.  NULL is allowed. */
void ax_fed_free(ax_fed_t *fed);

/** Outcomes of outbound requests, for /metrics. */
typedef enum {
    AX_FED_RESULT_OK,       /* 2xx/3xx/4xx answer: the destination works */
    AX_FED_RESULT_5XX,      /* a 5xx answer (counts as a failure of the destination) */
    AX_FED_RESULT_NETWORK,  /* DNS, connection, TLS, timeout or a malformed response */
    AX_FED_RESULT_BACKOFF,  /* not sent: the destination is backed off */
    AX_FED_RESULT_REFUSED,  /* not sent: a private address, our own name, or an invalid name */
    AX_FED_RESULT_SHUTDOWN, /* not finished: the server is stopping */
    AX_FED_RESULT__COUNT
} ax_fed_result_t;

/** "ok", "http_5xx", ... (the metric label of 'r'). */
const char *ax_fed_result_name(ax_fed_result_t r);

typedef struct st_ax_fed_stats_t {
    uint64_t requests[AX_FED_RESULT__COUNT];
    uint64_t key_fetches_ok;
    uint64_t key_fetches_failed;
    uint64_t in_flight;
    /* the transaction sender (sender.c) */
    uint64_t txns_ok;         /* transactions a destination answered 200 */
    uint64_t txns_failed;     /* attempts that failed and will be retried (network, timeout, 5xx, 401/403/404/429) */
    uint64_t txns_rejected;   /* transactions refused as a whole for good (400 and other 4xx): dropped, logged */
    uint64_t pdus_sent;       /* PDUs in transactions answered 200 */
    uint64_t edus_sent;       /* EDUs in transactions answered 200 */
    uint64_t pdu_errors;      /* PDUs a destination answered with an error (logged, not retried) */
    uint64_t items_dropped;   /* queue items not delivered: refused transactions, unsendable items */
    uint64_t catchup_skipped; /* PDUs not sent because catch-up sent their room's latest events instead */
    uint64_t txns_in_flight;  /* transactions on their way */
} ax_fed_stats_t;

/** Copies the loop's counters (any thread). */
void ax_fed_stats(ax_fed_t *fed, ax_fed_stats_t *out);

/** Backoff before the next attempt after 'failures' consecutive failures (capped exponential). */
uint64_t ax_fed_backoff_ms(uint64_t failures);

/* ---- sender.c -- the durable per-destination transaction sender ---------------------------- */

/**
 * The writer's commit hook hands over the keys of a commit (any thread,
 * 'keys' borrowed): "%fed:<destination>" (AX_FEDQ_NOTIFY: the destination
 * has new queued items) and "%fedp:<user>" (AX_FEDQ_NOTIFY_PRESENCE) wake
 * the sender; other keys are ignored.  NULL 'fed' is allowed.
 */
void ax_fed_sender_notify(ax_fed_t *fed, const char *const *keys, size_t nkeys);

/**
 * Local user 'user_id' started or stopped typing in 'room_id' (any thread):
 * an m.typing EDU for every other server in the room.  Typing is kept in
 * memory only; a "typing" older than 30 s when it could be sent is not.
 * NULL 'fed' is allowed.
 */
void ax_fed_sender_typing(ax_fed_t *fed, const char *room_id, const char *user_id, bool typing);
/* ---- batch.c -- several requests as one task ----------------------------------------------------- */

/**
 * Requests to several servers at once, completing as one task when the
 * last of them completed (an HTTP handler asking every server of a
 * /keys/query): bind 'super' to the request (ax_req_bind_task), add the
 * requests, submit.  Every request completes on the batch's port, so the
 * batch needs no locking; 'super.result' is always 0 (look at each
 * request's own result and status).
 */
typedef struct st_ax_fed_batch_t {
    ax_task_t super;
    ax_fed_request_t **reqs; /* owned */
    size_t n;
    /* private */
    size_t _cap, _pending;
} ax_fed_batch_t;

/** A new, empty batch (heap); free it with ax_fed_batch_free() once it completed (or was never submitted). */
ax_fed_batch_t *ax_fed_batch_new(void);

/** Adds 'fr' (stolen; set its timeout and limits first) to a batch not yet submitted. */
void ax_fed_batch_add(ax_fed_batch_t *b, ax_fed_request_t *fr);

/**
 * Submits every request of 'b' to 'fed'.  'b->super.port' and
 * 'b->super.done' must be set; they run once, after the last request
 * completed (at once, through the port, for an empty batch).
 */
void ax_fed_batch_submit(ax_fed_t *fed, ax_fed_batch_t *b);

/** Frees the batch and its requests.  NULL is allowed. */
void ax_fed_batch_free(ax_fed_batch_t *b);

/* ---- media.c -- multipart/mixed bodies (federation media downloads) ---------------------------- */

/** One part of a multipart body: its header block and its content, both borrowed from the body. */
typedef struct st_ax_mime_part_t {
    const char *headers; /* "Name: value\r\n" lines; may be empty */
    size_t headers_len;
    const char *body;
    size_t body_len;
} ax_mime_part_t;

/**
 * The boundary of a Content-Type 'content_type' of "multipart/mixed;
 * boundary=..." (quoted or not) into 'out' (cap bytes).  Returns 0, or
 * AX_EINVAL when it is not multipart/mixed or has no usable boundary (1-70
 * characters, RFC 2046).
 */
int ax_multipart_boundary(const char *content_type, char *out, size_t cap);

/**
 * Splits a multipart body ('len' bytes of 'data') at 'boundary' into at
 * most 'max' parts (RFC 2046: preamble and epilogue ignored, transport
 * padding allowed, CRLF line breaks); '*n' gets their count.  Returns 0;
 * AX_EINVAL when there is no part, a header block has no end, or the close
 * delimiter is missing (a body cut short); AX_ETOOBIG for more than 'max'
 * parts.  Never reads outside 'data'.
 */
int ax_multipart_split(const char *data, size_t len, const char *boundary, ax_mime_part_t *parts, size_t max,
                       size_t *n);

/** The value of header 'name' (case-insensitive) of 'part', trimmed, into 'out'; false when absent or too long. */
bool ax_multipart_header(const ax_mime_part_t *part, const char *name, char *out, size_t cap);

/**
 * The file name a Content-Disposition 'value' (may be NULL) gives: its
 * filename* (UTF-8'' percent-encoded, RFC 6266) or else its filename, into
 * 'out'.  Returns 0, AX_ENOTFOUND, or AX_EINVAL (malformed or too long).
 */
int ax_content_disposition_filename(const char *value, char *out, size_t cap);

/* ---- keyring.c -- other servers' signing keys ------------------------------------------------- */

/** Keys from verify_keys are trusted until the lesser of valid_until_ts and this long after fetching (spec). */
#define AX_KEY_MAX_VALIDITY_MS (7ULL * 24 * 3600 * 1000)

/** One key a lookup wants. */
typedef struct st_ax_key_want_t {
    char server_name[256];
    char key_id[AX_KEY_ID_MAX]; /* "" asks for "the server's current keys" (then 'public_key' is one of them) */
    uint64_t valid_at_ts;       /* the key must be valid at this time; 0: at any time (rooms v1-4) */
    bool allow_old;             /* old_verify_keys count (event signatures; never requests) */
    /* out */
    int result; /* 0, AX_ENOTFOUND (no such valid key), AX_EUNREACHABLE, AX_ESHUTDOWN */
    uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
} ax_key_want_t;

/** A batch of key lookups as one task: 'super.result' is 0 once every item has its own result. */
typedef struct st_ax_key_lookup_t {
    ax_task_t super;
    void *user; /* the submitter's own pointer, untouched by the keyring */
    size_t n;
    /* private */
    size_t _pending;
    ax_task_t _in;
    ax_key_want_t want[];
} ax_key_lookup_t;

/** A new lookup of 'n' keys (heap; free with free()); fill want[] with ax_key_want_set(). */
ax_key_lookup_t *ax_key_lookup_new(size_t n);

/** Fills want 'i' of 'lk'.  Returns 0 or AX_EINVAL (a name or key ID too long). */
int ax_key_want_set(ax_key_lookup_t *lk, size_t i, const char *server_name, const char *key_id, uint64_t valid_at_ts,
                    bool allow_old);

/**
 * Looks the keys up (thread-safe): from the database when a valid one is
 * stored, else by fetching /_matrix/key/v2/server from the server itself
 * (self-signatures verified) and, when that fails, through each of
 * trusted_key_servers (POST /_matrix/key/v2/query, the notary's signature
 * verified too).  What was fetched is stored before the lookup completes.
 * Concurrent lookups of one server share one fetch.
 */
void ax_keyring_lookup(ax_fed_t *fed, ax_key_lookup_t *lk);

/**
 * Looks 'key_id' of 'server_name' up in the database only (any thread,
 * no waiting).  Returns 0 with the key in 'public_key', or AX_ENOTFOUND
 * when no stored key is valid at 'valid_at_ts' (0: any time).
 */
int ax_keyring_cached(ax_db_t *db, const char *server_name, const char *key_id, uint64_t valid_at_ts, bool allow_old,
                      uint8_t public_key[crypto_sign_PUBLICKEYBYTES]);

/**
 * The time at which a key must be valid to check a signature of an event
 * sent at 'origin_server_ts' in a room of version 'rv': that time when the
 * version enforces key validity (v5+), else 0.
 */
uint64_t ax_keyring_event_valid_at(const ax_room_version_t *rv, uint64_t origin_server_ts);

/**
 * Checks a key document 'doc' (borrowed) as served by 'server_name': the
 * server name matches, valid_until_ts is an integer, and every ed25519 key
 * of verify_keys decodes and has signed the document.  Returns 0,
 * AX_EINVAL (malformed) or AX_EBADSIG.
 */
int ax_keyring_check_doc(const json_t *doc, const char *server_name);

struct st_ax_req_t;

/** A continuation of the asynchronous steps below, on the request's thread. */
typedef void (*ax_pdu_done_fn)(struct st_ax_req_t *r, void *arg);

/* ---- join.c -- our users' memberships in rooms that live elsewhere ---- */

/**
 * Joins, knocks on or leaves (rejecting an invite, withdrawing a knock)
 * 'room_id' for the requesting user through the first of 'servers' (a JSON
 * array of server names, stolen) that answers make_<membership> and
 * send_<membership>; 'extra' (stolen, may be NULL) is added to the event's
 * content (displayname, avatar_url, reason).  Replies to the client: the
 * room ID for a join or knock, {} for a leave; the last refusal's errcode
 * when every server refused; 404 when none could be reached.  Returns 0.
 */
int ax_fed_remote_membership(struct st_ax_req_t *r, const char *room_id, const char *membership, json_t *servers,
                             json_t *extra);

/** The same for a room known by an alias of another server: its directory is asked first. */
int ax_fed_remote_membership_by_alias(struct st_ax_req_t *r, const char *alias, const char *membership, json_t *servers,
                                      json_t *extra);

/**
 * Invites 'invitee', a user of another server, to 'room_id' on behalf of the
 * requesting user: builds and signs the invite, has the invitee's server
 * sign it too (/invite), then takes it into the room.  'extra' (stolen, may
 * be NULL) joins the content (reason, is_direct).  Replies {} or the error.
 */
int ax_fed_remote_invite(struct st_ax_req_t *r, const char *room_id, const char *invitee, json_t *extra);

/**
 * createRoom's remote invitees: invites each user of 'invitees' (a JSON
 * array of user IDs of other servers, stolen) to the new room 'room_id', one
 * after the other, with 'extra' (stolen, the content each invite gets, e.g.
 * is_direct), then replies {"room_id": ...}.  The room exists already, so an
 * invite that fails is logged and does not fail the request.
 */
int ax_fed_create_room_invites(struct st_ax_req_t *r, const char *room_id, json_t *invitees, json_t *extra);

/* ---- backfill.c -- history from before this server joined ---- */

/**
 * Asks servers in 'room_id' for up to 'limit' events before 'from_event',
 * checks them and stores them as the room's fetched history (outliers
 * indexed by depth, see ax_db_backfill_scan); marks the room's history
 * complete when nothing older exists.  Then 'done(r, arg)' on r's thread,
 * whatever the outcome; 'free_arg(arg)' if the request went away.
 */
void ax_fed_backfill(struct st_ax_req_t *r, const char *room_id, const char *from_event, size_t limit,
                     ax_pdu_done_fn done, void *arg, void (*free_arg)(void *));

/* ---- pdu.c -- checking events from other servers ------------------------------------------- */

/** A key one signature of a PDU may have been made with. */
typedef struct st_ax_pdu_key_t {
    char server[256];
    char key_id[AX_KEY_ID_MAX];
    bool found;
    uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
} ax_pdu_key_t;

/** One PDU being checked. */
typedef struct st_ax_pdu_t {
    json_t *pdu;                 /* owned; replaced by its redacted form when its content hash fails */
    const ax_room_version_t *rv; /* the room's version (NULL: unknown, the PDU fails) */
    char event_id[256];          /* once checked */
    int result;                  /* 0: fine; AX_EINVAL: malformed; AX_EBADSIG: a signature missing or bad */
    bool redacted;               /* its content hash did not match: it is kept redacted */
    char error[160];             /* why it failed */
    /* private */
    char signers[AX_EVENT_SIGNERS_MAX][256];
    size_t nsigners;
    ax_pdu_key_t *keys;
    size_t nkeys;
    uint64_t valid_at;
} ax_pdu_t;

typedef struct st_ax_pdu_batch_t {
    ax_pdu_t *items;
    size_t n, cap;
} ax_pdu_batch_t;

/** Appends 'pdu' (stolen) of a room of version 'rv' to 'b'. */
void ax_pdu_batch_add(ax_pdu_batch_t *b, json_t *pdu, const ax_room_version_t *rv);
void ax_pdu_batch_dispose(ax_pdu_batch_t *b);

/**
 * Checks every PDU of 'b' (borrowed until 'done') for request 'r': format
 * of its room version, event ID, a valid signature of each server that
 * must sign (keys from the keyring, fetched when needed), content hash
 * (redacted on mismatch).  Results are in each item.  Then 'done(r, arg)'
 * runs on r's thread; if the request went away meanwhile, 'free_arg(arg)'
 * runs instead.  Signatures are checked on the worker pool.
 */
void ax_pdu_verify(struct st_ax_req_t *r, ax_pdu_batch_t *b, ax_pdu_done_fn done, void *arg,
                   void (*free_arg)(void *arg));

#endif
