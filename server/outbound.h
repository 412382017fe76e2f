/*
 * outbound.h -- axon's outbound HTTP/1.1 client: one thread with its own
 * h2o event loop that POSTs JSON to URLs (http, or https with certificate
 * and host name verification), with a timeout, keep-alive per destination,
 * and a policy check on every address a host name resolves to.  The push
 * sender (server/pusher.c) runs on it; it is meant to carry federation's
 * requests too.
 *
 * Threading: ax_outbound_new/start/stop/free belong to the main thread;
 * ax_outbound_call() works from any thread; everything else, and every
 * callback, runs on the outbound thread.
 */
#ifndef AX_SERVER_OUTBOUND_H
#define AX_SERVER_OUTBOUND_H

#include "common/common.h"

#include <sys/socket.h>

/* ---- URLs and address policy (any thread) ---- */

typedef struct st_ax_url_t {
    bool https;
    char host[256]; /* a name, an IPv4 literal or an IPv6 literal without brackets */
    uint16_t port;
    char path[2048]; /* path and query, starting with '/' */
} ax_url_t;

/**
 * Parses an absolute http:// or https:// URL.  Rejects user info,
 * fragments, empty hosts, bad ports and over-long parts.  Returns 0 or
 * AX_EINVAL.
 */
int ax_url_parse(const char *url, ax_url_t *out);

/**
 * True when 'sa' (AF_INET or AF_INET6) is not a public unicast address, so
 * that a server on the internet must not be made to call it (push gateways,
 * other homeservers): loopback, private (RFC 1918, ULA), link-local, CGNAT,
 * multicast, unspecified, documentation and other special-purpose ranges,
 * including IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4).
 */
bool ax_addr_is_private(const struct sockaddr *sa);

/**
 * True when 'host' is an IP literal ax_addr_is_private() refuses, or
 * "localhost" / a name under ".localhost".  Other names are checked when
 * they are resolved.
 */
bool ax_outbound_host_private(const char *host);

/* ---- the client ---- */

typedef struct st_ax_outbound_t ax_outbound_t;

typedef struct st_ax_outbound_opts_t {
    bool allow_private;    /* outbound_allow_private: loopback and private addresses allowed */
    bool verify_tls;       /* verify certificates and host names */
    const char *ca_file;   /* an extra trusted CA (PEM), or NULL */
    uint64_t timeout_ms;   /* for connecting and for each read or write */
    unsigned max_per_host; /* kept-alive connections per destination */
} ax_outbound_opts_t;

/** What came back; every pointer is borrowed for the callback only. */
typedef struct st_ax_http_result_t {
    int status;        /* the HTTP status, 0 when there was no response */
    const char *error; /* why there was no (complete) response, or NULL */
    bool refused;      /* the address policy refused every address of the host */
    const char *body;  /* the response body (NUL-terminated), "" when none */
    size_t body_len;
} ax_http_result_t;

typedef void (*ax_outbound_cb)(void *arg, const ax_http_result_t *res);

/**
 * Creates the client (not started).  Returns NULL with a message in 'err'
 * when the TLS context cannot be built (e.g. an unreadable CA file).
 */
ax_outbound_t *ax_outbound_new(const ax_outbound_opts_t *opts, char *err, size_t errlen);

/** Starts the thread.  Returns 0 or AX_ERR. */
int ax_outbound_start(ax_outbound_t *ob);

/**
 * Stops the thread: requests in flight complete with an error, then the
 * loop runs until every writer job submitted through its port came back
 * (so stop it before the writer).  Calls already queued are dropped after
 * their 'fn' ran.
 */
void ax_outbound_stop(ax_outbound_t *ob);

/** Frees a stopped client; NULL is allowed. */
void ax_outbound_free(ax_outbound_t *ob);

/**
 * Any thread: runs 'fn(arg)' on the outbound thread soon.  'fn' owns 'arg'.
 * After stop, 'fn' still runs (on the caller's thread at stop time) so it
 * can free 'arg'; ax_outbound_stopping() then says so.
 */
void ax_outbound_call(ax_outbound_t *ob, void (*fn)(void *arg), void *arg);

/** Outbound thread: true once ax_outbound_stop() began. */
bool ax_outbound_stopping(const ax_outbound_t *ob);

/**
 * Outbound thread: POSTs 'body' (copied) as application/json to 'url' and
 * calls 'cb' exactly once, on the outbound thread, with the result.  The
 * host's addresses are checked against the policy after resolution, so a
 * public name pointing at a private address is refused too.
 */
void ax_outbound_post_json(ax_outbound_t *ob, const char *url, const char *body, size_t len, ax_outbound_cb cb,
                           void *arg);

/** Outbound thread: calls 'fn(arg)' about every 'ms' milliseconds until stop. */
void ax_outbound_every(ax_outbound_t *ob, uint64_t ms, void (*fn)(void *arg), void *arg);

/**
 * The completion port of the outbound thread, for writer jobs it submits:
 * their 'done' runs on the outbound thread.  Count them in and out with
 * ax_outbound_job_begin/end so stop waits for them.
 */
ax_port_t *ax_outbound_port(ax_outbound_t *ob);
void ax_outbound_job_begin(ax_outbound_t *ob);
void ax_outbound_job_end(ax_outbound_t *ob);

/** Outbound thread: monotonic milliseconds of the loop's clock. */
uint64_t ax_outbound_now(ax_outbound_t *ob);

#endif
