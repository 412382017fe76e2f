/*
 * client.c -- the federation loop: one thread with its own h2o event loop
 * that makes every outbound Server-Server request (spec: "API standards",
 * "TLS", "Request Authentication").
 *
 * A request is submitted from any thread and travels: backoff check (the
 * destination's state in LMDB) -> server discovery (resolve.c) -> address
 * lookup (h2o's getaddrinfo pool) -> a check of every address against the
 * ranges outbound requests must not reach -> a keep-alive connection from
 * the pool of that address and certificate name (h2o_socketpool) -> TLS,
 * verified against the system store plus federation_ca_file, with the
 * certificate checked for the name discovery chose -> the X-Matrix signed
 * request -> the response, within size and time limits.  It completes
 * through the submitter's port, like a writer job.
 *
 * TLS names: h2o 2.2.5 sends the socket pool's host as SNI and checks it
 * with its own lax matcher.  The client context therefore runs with
 * SSL_VERIFY_NONE at the context level (so h2o's matcher is advisory) and
 * switches each connection to SSL_VERIFY_PEER when its handshake starts,
 * with our own verification callback doing the chain and the name (DNS
 * names with X509_check_host rules, IP literals with X509_check_ip).  SNI is
 * removed when the expected certificate is for an IP address, as the spec
 * says.
 */
#include "federation/federation_internal.h"
#include "core/events.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IO_TIMEOUT_MS        15000
#define POOL_IDLE_MS         30000              /* an idle keep-alive connection is closed after this */
#define POOL_FORGET_MS       (5ULL * 60 * 1000) /* an empty pool unused this long is disposed of */
#define MAX_ADDRS            8
#define WELLKNOWN_TIMEOUT_MS 10000
#define WELLKNOWN_MAX_BYTES  (64u << 10)
#define BACKOFF_BASE_MS      5000ULL
#define BACKOFF_MAX_MS       (24ULL * 3600 * 1000)

struct st_fed_call_t {
    ax_fed_t *fed;
    ax_fed_request_t *req;             /* NULL once answered (possibly early: deadline, shutdown) */
    struct st_fed_call_t *next, *prev; /* in fed->calls while 'req' is set */
    int waiting;                       /* resolver or getaddrinfo callbacks still due */
    h2o_http1client_t *client;         /* the connection attempt or exchange in progress */
    bool url_mode;                     /* a plain HTTPS request (.well-known), not a Matrix destination */
    ax_fed_target_t target;
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t addrlens[MAX_ADDRS];
    size_t naddrs, next_addr;
    char *auth; /* the Authorization value, destination mode */
    char *body; /* the serialised JSON body */
    size_t body_len;
    ax_buf_t head; /* request line and headers of the current attempt */
    h2o_iovec_t bufs[2];
    ax_buf_t in; /* response body */
    uint64_t deadline_ms;
    unsigned redirects;
    char last_error[96];
};

static const char *const result_names[AX_FED_RESULT__COUNT] = {"ok",      "http_5xx", "network",
                                                               "backoff", "refused",  "shutdown"};

const char *ax_fed_result_name(ax_fed_result_t r)
{
    return r < AX_FED_RESULT__COUNT ? result_names[r] : "unknown";
}

uint64_t ax_fed_backoff_ms(uint64_t failures)
{
    if (failures == 0)
        return 0;
    uint64_t shift = failures - 1 > 20 ? 20 : failures - 1;
    uint64_t ms = BACKOFF_BASE_MS << shift;
    return ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms;
}

void ax_fed_urlencode(ax_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; ++p) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            ax_buf_putc(out, (char)c);
        } else {
            ax_buf_putc(out, '%');
            ax_buf_putc(out, hex[c >> 4]);
            ax_buf_putc(out, hex[c & 15]);
        }
    }
}

/* ---- Requests ---- */

ax_fed_request_t *ax_fed_request_new(const char *destination, const char *method, const char *path, json_t *body)
{
    ax_fed_request_t *fr = ax_calloc(1, sizeof(*fr));
    fr->destination = destination != NULL ? ax_strdup(destination) : NULL;
    fr->method = ax_strdup(method);
    fr->path = ax_strdup(path);
    fr->body = body;
    return fr;
}

ax_fed_request_t *ax_fed_request_new_url(const char *url)
{
    if (url == NULL || strncasecmp(url, "https://", 8) != 0)
        return NULL;
    const char *hs = url + 8, *he = hs + strcspn(hs, "/?#");
    char authority[300], host[256];
    size_t alen = (size_t)(he - hs);
    uint16_t port = 0;
    bool is_ip;
    if (alen == 0 || alen >= sizeof(authority))
        return NULL;
    memcpy(authority, hs, alen);
    authority[alen] = '\0';
    if (ax_server_name_split(authority, host, sizeof(host), &port, &is_ip) != 0)
        return NULL;
    const char *path = *he == '\0' ? "/" : he;
    if (path[0] != '/' || strpbrk(path, "# \r\n") != NULL)
        return NULL;
    ax_fed_request_t *fr = ax_fed_request_new(NULL, "GET", path, NULL);
    fr->_url_host = ax_strdup(host);
    fr->_url_port = port != 0 ? port : 443;
    fr->_follow_redirects = true;
    return fr;
}

static void clear_response(ax_fed_request_t *fr)
{
    json_decref(fr->json);
    free(fr->body_raw);
    free(fr->_cache_control);
    free(fr->_expires);
    free(fr->_location);
    free(fr->content_type);
    free(fr->content_disposition);
    fr->content_type = fr->content_disposition = NULL;
    fr->json = NULL;
    fr->body_raw = NULL;
    fr->body_len = 0;
    fr->_cache_control = fr->_expires = fr->_location = NULL;
    fr->status = 0;
}

void ax_fed_request_free(ax_fed_request_t *fr)
{
    if (fr == NULL)
        return;
    clear_response(fr);
    free(fr->destination);
    free(fr->method);
    free(fr->path);
    json_decref(fr->body);
    free(fr->_url_host);
    free(fr);
}

void ax_fed_complete(ax_task_t *task, int result)
{
    task->result = result;
    task->_next = NULL;
    ax_port_post_chain(task);
}

/* ---- Destination state (backoff) ---- */

typedef struct st_dest_update_t {
    char server[256];
    bool failed;
    char error[160];
    uint64_t now_ms;
} dest_update_t;

static int dest_apply(ax_txn_t *txn, void *data)
{
    dest_update_t *u = data;
    json_t *rec = NULL;
    int rc = ax_db_destination_get(txn, u->server, &rec);
    if (rc == AX_ENOTFOUND) {
        rec = json_pack("{s:I}", "first_seen_ts", (json_int_t)u->now_ms);
    } else if (rc != 0) {
        return rc;
    }
    if (u->failed) {
        /* counted in the transaction, so concurrent failures all count */
        json_int_t failures = json_integer_value(json_object_get(rec, "failures")) + 1;
        json_object_set_new(rec, "failures", json_integer(failures));
        json_object_set_new(rec, "retry_at_ms",
                            json_integer((json_int_t)(u->now_ms + ax_fed_backoff_ms((uint64_t)failures))));
        json_object_set_new(rec, "last_failure_ts", json_integer((json_int_t)u->now_ms));
        json_object_set_new(rec, "last_error", json_string(u->error));
    } else {
        json_object_set_new(rec, "failures", json_integer(0));
        json_object_set_new(rec, "retry_at_ms", json_integer(0));
        json_object_set_new(rec, "last_success_ts", json_integer((json_int_t)u->now_ms));
    }
    rc = ax_db_destination_put(txn, u->server, rec);
    json_decref(rec);
    return rc;
}

/* Reads the destination's record on the loop; returns its failures (0 when unknown) and retry time. */
static bool dest_read(ax_fed_t *fed, const char *server, uint64_t *failures, uint64_t *retry_at)
{
    ax_txn_t *txn;
    json_t *rec = NULL;
    *failures = *retry_at = 0;
    if (ax_db_read_begin(fed->db, &txn) != 0)
        return true; /* unknown: let the request decide */
    int rc = ax_db_destination_get(txn, server, &rec);
    ax_db_read_end(txn);
    if (rc != 0)
        return false;
    json_int_t f = json_integer_value(json_object_get(rec, "failures"));
    json_int_t at = json_integer_value(json_object_get(rec, "retry_at_ms"));
    *failures = f > 0 ? (uint64_t)f : 0;
    *retry_at = at > 0 ? (uint64_t)at : 0;
    json_decref(rec);
    return true;
}

static void dest_record(ax_fed_t *fed, const char *server, bool failed, const char *error)
{
    uint64_t failures, retry_at;
    bool known = dest_read(fed, server, &failures, &retry_at);
    if (!failed && known && failures == 0)
        return; /* nothing changes: no write */
    dest_update_t *u = ax_calloc(1, sizeof(*u));
    snprintf(u->server, sizeof(u->server), "%s", server);
    u->failed = failed;
    snprintf(u->error, sizeof(u->error), "%s", error != NULL ? error : "");
    u->now_ms = ax_now_ms();
    if (failed)
        ax_log(AX_LOG_INFO, "federation: %s failed (%s); backing off", server, u->error);
    else if (known)
        ax_log(AX_LOG_INFO, "federation: %s is reachable again", server);
    ax_fed_write(fed, dest_apply, u, free, NULL);
}

/* ---- Writes from the loop ---- */

typedef struct st_fed_wjob_t {
    ax_wjob_t super;
    ax_fed_t *fed;
    ax_apply_fn apply;
    void *data;
    void (*free_data)(void *);
    void (*done)(ax_fed_t *fed, int result, void *data);
} fed_wjob_t;

static int wjob_apply(ax_wjob_t *job, ax_txn_t *txn)
{
    fed_wjob_t *j = (fed_wjob_t *)job;
    return j->apply(txn, j->data);
}

static void wjob_done(ax_task_t *task)
{
    fed_wjob_t *j = (fed_wjob_t *)task;
    j->fed->outstanding--;
    if (j->done != NULL)
        j->done(j->fed, task->result, j->data);
    if (j->free_data != NULL)
        j->free_data(j->data);
    free(j);
}

void ax_fed_write(ax_fed_t *fed, ax_apply_fn apply, void *data, void (*free_data)(void *),
                  void (*done)(ax_fed_t *fed, int result, void *data))
{
    fed_wjob_t *j = ax_calloc(1, sizeof(*j));
    j->super.apply = wjob_apply;
    j->super.super.done = wjob_done;
    j->super.super.port = &fed->port.super;
    j->fed = fed;
    j->apply = apply;
    j->data = data;
    j->free_data = free_data;
    j->done = done;
    fed->outstanding++;
    ax_writer_submit(fed->writer, &j->super);
}

/* ---- Calls ---- */

static void call_unlink(fed_call_t *call)
{
    ax_fed_t *fed = call->fed;
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        fed->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    call->next = call->prev = NULL;
}

static void call_free_if_done(fed_call_t *call)
{
    if (call->req != NULL || call->waiting != 0 || call->client != NULL)
        return;
    call->fed->ncalls--;
    free(call->auth);
    free(call->body);
    ax_buf_dispose(&call->head);
    ax_buf_dispose(&call->in);
    free(call);
}

/*
 * Answers the call's request with 'rc' ('result' for the metrics) and, for a
 * Matrix destination, records whether it worked.  The call lives on until
 * no callback can reach it any more.
 */
static void call_answer(fed_call_t *call, int rc, ax_fed_result_t result, const char *error)
{
    ax_fed_t *fed = call->fed;
    ax_fed_request_t *fr = call->req;
    if (fr == NULL)
        return;
    call->req = NULL;
    call_unlink(call);
    if (call->client != NULL) {
        h2o_http1client_cancel(call->client); /* no callback after this */
        call->client = NULL;
    }
    if (error != NULL)
        snprintf(fr->error, sizeof(fr->error), "%s", error);
    if (!call->url_mode && fr->destination != NULL &&
        (result == AX_FED_RESULT_OK || result == AX_FED_RESULT_5XX || result == AX_FED_RESULT_NETWORK))
        dest_record(fed, fr->destination, result != AX_FED_RESULT_OK, fr->error);
    if (result == AX_FED_RESULT_NETWORK && !call->url_mode && fr->destination != NULL)
        ax_resolver_forget(fed->resolver, fr->destination); /* rediscover next time */
    atomic_fetch_add_explicit(&fed->results[result], 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&fed->in_flight, 1, memory_order_relaxed);
    if (rc != 0 && ax_log_enabled(AX_LOG_DEBUG))
        ax_log(AX_LOG_DEBUG, "federation: %s %s%s: %s", fr->method, fr->destination ? fr->destination : fr->_url_host,
               fr->path, fr->error);
    ax_fed_complete(&fr->super, rc);
    call_free_if_done(call);
}

static void call_fail(fed_call_t *call, int rc, ax_fed_result_t result, const char *fmt, ...) AX_PRINTF(4, 5);
static SSL_CTX *make_ssl_ctx(ax_fed_t *fed, char *err, size_t errlen);
static void call_fail(fed_call_t *call, int rc, ax_fed_result_t result, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    call_answer(call, rc, result, msg);
}

static void lookup_addresses(fed_call_t *call);
static void connect_next(fed_call_t *call);

/* Fills the request line and headers of one attempt. */
static void build_head(fed_call_t *call)
{
    ax_fed_request_t *fr = call->req;
    ax_buf_t *h = &call->head;
    ax_buf_reset(h);
    ax_buf_printf(h, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: axon/%s\r\n", fr->method, fr->path,
                  call->target.host_header, AX_VERSION);
    if (!call->url_mode)
        ax_buf_printf(h, "Accept: application/json\r\nAuthorization: %s\r\n", call->auth);
    if (call->body != NULL)
        ax_buf_printf(h, "Content-Type: application/json\r\nContent-Length: %zu\r\n", call->body_len);
    else if (strcmp(fr->method, "POST") == 0 || strcmp(fr->method, "PUT") == 0)
        ax_buf_puts(h, "Content-Length: 0\r\n");
    ax_buf_puts(h, "\r\n");
}

/* The response is complete: redirects (plain HTTPS requests only) or the answer. */
static void on_response(fed_call_t *call)
{
    ax_fed_request_t *fr = call->req;
    int st = fr->status;
    if (fr->_follow_redirects && (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) &&
        fr->_location != NULL) {
        if (++call->redirects > AX_FED_MAX_REDIRECTS)
            return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "too many redirects");
        const char *loc = fr->_location;
        char host[256] = "";
        uint16_t port = 443;
        const char *path;
        if (strncasecmp(loc, "https://", 8) == 0) {
            const char *hs = loc + 8, *he = hs + strcspn(hs, "/?#");
            char authority[300];
            size_t alen = (size_t)(he - hs);
            if (alen == 0 || alen >= sizeof(authority))
                return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "bad redirect location");
            memcpy(authority, hs, alen);
            authority[alen] = '\0';
            bool is_ip;
            if (ax_server_name_split(authority, host, sizeof(host), &port, &is_ip) != 0)
                return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "bad redirect location");
            if (port == 0)
                port = 443;
            path = *he == '\0' ? "/" : he;
        } else if (loc[0] == '/' && loc[1] != '/') {
            snprintf(host, sizeof(host), "%s", fr->_url_host);
            port = fr->_url_port;
            path = loc;
        } else {
            return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "redirect to a non-https location");
        }
        if (strchr(path, '#') != NULL || strchr(path, ' ') != NULL || strchr(path, '\r') != NULL ||
            strchr(path, '\n') != NULL)
            return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "bad redirect location");
        char *newpath = ax_strdup(path);
        free(fr->path);
        fr->path = newpath;
        free(fr->_url_host);
        fr->_url_host = ax_strdup(host);
        fr->_url_port = port;
        clear_response(fr);
        ax_buf_reset(&call->in);
        struct in6_addr a6;
        struct in_addr a4;
        bool ip = inet_pton(AF_INET6, host, &a6) == 1 || inet_pton(AF_INET, host, &a4) == 1;
        memset(&call->target, 0, sizeof(call->target));
        snprintf(call->target.host, sizeof(call->target.host), "%s", host);
        call->target.port = port;
        snprintf(call->target.tls_name, sizeof(call->target.tls_name), "%s", host);
        call->target.tls_name_is_ip = ip;
        bool v6 = strchr(host, ':') != NULL;
        if (port == 443)
            snprintf(call->target.host_header, sizeof(call->target.host_header), "%s%s%s", v6 ? "[" : "", host,
                     v6 ? "]" : "");
        else
            snprintf(call->target.host_header, sizeof(call->target.host_header), "%s%s%s:%u", v6 ? "[" : "", host,
                     v6 ? "]" : "", port);
        lookup_addresses(call);
        return;
    }
    fr->body_raw = ax_buf_release(&call->in, &fr->body_len);
    if (fr->body_raw == NULL)
        fr->body_raw = ax_strdup("");
    if (fr->body_len != 0) {
        json_t *j = json_loadb(fr->body_raw, fr->body_len, 0, NULL);
        if (json_is_object(j) || json_is_array(j))
            fr->json = j;
        else
            json_decref(j);
    }
    if (st >= 500) {
        char msg[64];
        snprintf(msg, sizeof(msg), "HTTP %d", st);
        call_answer(call, 0, AX_FED_RESULT_5XX, msg);
        return;
    }
    call_answer(call, 0, AX_FED_RESULT_OK, NULL);
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    fed_call_t *call = client->data;
    ax_fed_request_t *fr = call->req;
    if (client->sock != NULL && client->sock->input->size != 0) {
        ax_buf_append(&call->in, client->sock->input->bytes, client->sock->input->size);
        h2o_buffer_consume(&client->sock->input, client->sock->input->size);
    }
    size_t max = fr->max_response != 0 ? fr->max_response : AX_FED_MAX_RESPONSE;
    if (call->in.len > max) {
        call->client = NULL; /* h2o closes it once we return */
        /* the destination answered: more than this request takes (a large file) is no reason to back off */
        call_fail(call, AX_ETOOBIG, AX_FED_RESULT_OK, "response larger than %zu bytes", max);
        return -1;
    }
    if (errstr == NULL)
        return 0;
    call->client = NULL;
    if (errstr == h2o_http1client_error_is_eos)
        on_response(call);
    else
        call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "%s", errstr);
    return 0;
}

static char *header_dup(struct st_h2o_header_t *h)
{
    return ax_strndup(h->value.base, h->value.len);
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *client, const char *errstr, int minor_version, int status,
                                       h2o_iovec_t msg, struct st_h2o_header_t *headers, size_t num_headers, int rlen)
{
    AX_UNUSED(minor_version);
    AX_UNUSED(msg);
    AX_UNUSED(rlen);
    fed_call_t *call = client->data;
    ax_fed_request_t *fr = call->req;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        call->client = NULL;
        call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "%s", errstr);
        return NULL;
    }
    fr->status = status;
    size_t max = fr->max_response != 0 ? fr->max_response : AX_FED_MAX_RESPONSE;
    for (size_t i = 0; i < num_headers; ++i) {
        h2o_iovec_t *name = headers[i].name;
        if (name == &H2O_TOKEN_CONTENT_LENGTH->buf) {
            size_t n = h2o_strtosize(headers[i].value.base, headers[i].value.len);
            if (n != SIZE_MAX && n > max) {
                call->client = NULL;
                call_fail(call, AX_ETOOBIG, AX_FED_RESULT_OK, "response larger than %zu bytes", max);
                return NULL;
            }
        } else if (name == &H2O_TOKEN_CACHE_CONTROL->buf && fr->_cache_control == NULL) {
            fr->_cache_control = header_dup(&headers[i]);
        } else if (name == &H2O_TOKEN_EXPIRES->buf && fr->_expires == NULL) {
            fr->_expires = header_dup(&headers[i]);
        } else if (name == &H2O_TOKEN_LOCATION->buf && fr->_location == NULL) {
            fr->_location = header_dup(&headers[i]);
        } else if (name == &H2O_TOKEN_CONTENT_TYPE->buf && fr->content_type == NULL) {
            fr->content_type = header_dup(&headers[i]);
        } else if (name == &H2O_TOKEN_CONTENT_DISPOSITION->buf && fr->content_disposition == NULL) {
            fr->content_disposition = header_dup(&headers[i]);
        }
    }
    if (errstr == h2o_http1client_error_is_eos) {
        call->client = NULL;
        on_response(call);
        return NULL;
    }
    return on_body;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
                                          size_t *reqbufcnt, int *method_is_head)
{
    fed_call_t *call = client->data;
    if (errstr != NULL) {
        /* nothing was sent: the next address may do */
        call->client = NULL;
        snprintf(call->last_error, sizeof(call->last_error), "%s", errstr);
        connect_next(call);
        return NULL;
    }
    ax_fed_request_t *fr = call->req;
    build_head(call);
    call->bufs[0] = h2o_iovec_init(call->head.base, call->head.len);
    size_t n = 1;
    if (call->body != NULL)
        call->bufs[n++] = h2o_iovec_init(call->body, call->body_len);
    *reqbufs = call->bufs;
    *reqbufcnt = n;
    *method_is_head = strcmp(fr->method, "HEAD") == 0;
    return on_head;
}

/* A socket pool and when it was last used, so idle ones can go. */
typedef struct st_fed_pool_t {
    h2o_socketpool_t pool;
    uint64_t used_ms;
} fed_pool_t;

static void free_pool(void *arg, const char *key, void *value)
{
    AX_UNUSED(arg);
    AX_UNUSED(key);
    h2o_socketpool_dispose(&((fed_pool_t *)value)->pool);
    free(value);
}

typedef struct st_pool_prune_t {
    uint64_t cutoff;
    char **keys;
    size_t n, cap;
} pool_prune_t;

static void find_idle_pool(void *arg, const char *key, void *value)
{
    pool_prune_t *p = arg;
    fed_pool_t *fp = value;
    /* 'count' holds every socket of the pool, pooled or in use, and connections being made */
    if (fp->used_ms < p->cutoff && fp->pool._shared.count == 0) {
        if (p->n == p->cap)
            p->keys = ax_realloc(p->keys, (p->cap = p->cap ? p->cap * 2 : 16) * sizeof(char *));
        p->keys[p->n++] = ax_strdup(key);
    }
}

/* Disposes of pools nobody used for a while and that hold no socket. */
static void prune_pools(ax_fed_t *fed, uint64_t now)
{
    pool_prune_t p = {now > POOL_FORGET_MS ? now - POOL_FORGET_MS : 0, NULL, 0, 0};
    ax_strmap_foreach(&fed->pools, find_idle_pool, &p);
    for (size_t i = 0; i < p.n; ++i) {
        free_pool(NULL, p.keys[i], ax_strmap_del(&fed->pools, p.keys[i]));
        free(p.keys[i]);
    }
    free(p.keys);
}

/* The keep-alive pool of one address and certificate name. */
static h2o_socketpool_t *get_pool(ax_fed_t *fed, const struct sockaddr *sa, socklen_t len, const char *tls_name)
{
    char addr[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    char key[600];
    snprintf(key, sizeof(key), "%s|%u|%s", addr, port, tls_name);
    fed_pool_t *fp = ax_strmap_get(&fed->pools, key);
    if (fp != NULL) {
        fp->used_ms = ax_now_ms();
        return &fp->pool;
    }
    fp = ax_malloc(sizeof(*fp));
    fp->used_ms = ax_now_ms();
    h2o_socketpool_t *pool = &fp->pool;
    h2o_socketpool_init_by_address(pool, (struct sockaddr *)sa, len, 1, 64);
    /* for an address pool h2o uses 'peer.host' as the TLS name (socketpool.h): make it the certificate name */
    free(pool->peer.host.base);
    pool->peer.host = h2o_strdup(NULL, tls_name, strlen(tls_name));
    h2o_socketpool_set_timeout(pool, fed->loop, POOL_IDLE_MS);
    ax_strmap_put(&fed->pools, key, fp);
    return pool;
}

static void connect_next(fed_call_t *call)
{
    if (call->req == NULL)
        return call_free_if_done(call);
    if (call->next_addr >= call->naddrs)
        return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "cannot connect to %s port %u: %s",
                         call->target.host, call->target.port, call->last_error[0] ? call->last_error : "no address");
    if (call->fed->hctx.ssl_ctx == NULL) {
        /* the TLS context waits for the first request: OpenSSL and the system's certificates cost an
         * idle server about 2 MB; ax_fed_check_config() checked federation_ca_file at start-up */
        char err[512];
        if ((call->fed->ssl_ctx = make_ssl_ctx(call->fed, err, sizeof(err))) == NULL)
            return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "%s", err);
        call->fed->hctx.ssl_ctx = call->fed->ssl_ctx;
    }
    size_t i = call->next_addr++;
    h2o_socketpool_t *pool =
        get_pool(call->fed, (struct sockaddr *)&call->addrs[i], call->addrlens[i], call->target.tls_name);
    h2o_http1client_connect_with_pool(&call->client, call, &call->fed->hctx, pool, on_connect);
}

/* Every address must be public unless outbound_allow_private; then connect. */
static void check_and_connect(fed_call_t *call)
{
    ax_fed_t *fed = call->fed;
    if (call->naddrs == 0)
        return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "%s has no address", call->target.host);
    if (!fed->cfg->outbound_allow_private) {
        for (size_t i = 0; i < call->naddrs; ++i) {
            if (ax_addr_is_private((struct sockaddr *)&call->addrs[i]))
                return call_fail(call, AX_EFORBIDDEN, AX_FED_RESULT_REFUSED,
                                 "%s resolves to a non-public address (outbound_allow_private is off)",
                                 call->target.host);
        }
    }
    call->next_addr = 0;
    connect_next(call);
}

static void add_addr(fed_call_t *call, const struct sockaddr *sa, socklen_t len)
{
    if (call->naddrs == MAX_ADDRS || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
        len > sizeof(call->addrs[0]))
        return;
    memcpy(&call->addrs[call->naddrs], sa, len);
    call->addrlens[call->naddrs++] = len;
}

static void on_getaddr(h2o_hostinfo_getaddr_req_t *greq, const char *errstr, struct addrinfo *res, void *arg)
{
    AX_UNUSED(greq);
    fed_call_t *call = arg;
    call->waiting--;
    if (call->req == NULL)
        return call_free_if_done(call);
    if (errstr != NULL)
        return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "cannot resolve %s: %s", call->target.host,
                         errstr);
    call->naddrs = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
        add_addr(call, ai->ai_addr, ai->ai_addrlen);
    check_and_connect(call);
}

static void lookup_addresses(fed_call_t *call)
{
    ax_fed_t *fed = call->fed;
    const char *host = call->target.host;
    call->naddrs = 0;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons(call->target.port);
        add_addr(call, (struct sockaddr *)&sin, sizeof(sin));
        return check_and_connect(call);
    }
    if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(call->target.port);
        add_addr(call, (struct sockaddr *)&sin6, sizeof(sin6));
        return check_and_connect(call);
    }
    char serv[8];
    snprintf(serv, sizeof(serv), "%u", call->target.port);
    call->waiting++;
    h2o_hostinfo_getaddr(&fed->getaddr_recv, h2o_iovec_init(host, strlen(host)), h2o_iovec_init(serv, strlen(serv)),
                         AF_UNSPEC, SOCK_STREAM, IPPROTO_TCP, AI_NUMERICSERV, on_getaddr, call);
}

static void on_resolved(void *arg, int rc, const ax_fed_target_t *target, const char *error)
{
    fed_call_t *call = arg;
    call->waiting--;
    if (call->req == NULL)
        return call_free_if_done(call);
    if (rc != 0)
        return call_fail(call, rc, AX_FED_RESULT_REFUSED, "%s", error != NULL ? error : "cannot resolve");
    call->target = *target;
    lookup_addresses(call);
}

void ax_fed_start_request(ax_fed_t *fed, ax_fed_request_t *fr)
{
    clear_response(fr);
    fr->error[0] = '\0';
    atomic_fetch_add_explicit(&fed->in_flight, 1, memory_order_relaxed);
    fed_call_t *call = ax_calloc(1, sizeof(*call));
    call->fed = fed;
    call->req = fr;
    fed->ncalls++;
    call->next = fed->calls;
    if (fed->calls != NULL)
        fed->calls->prev = call;
    fed->calls = call;
    call->deadline_ms = ax_now_ms() + (fr->timeout_ms != 0 ? fr->timeout_ms : AX_FED_TIMEOUT_MS);
    if (fed->refusing)
        return call_fail(call, AX_ESHUTDOWN, AX_FED_RESULT_SHUTDOWN, "the server is shutting down");
    if (fr->body != NULL) {
        call->body = json_dumps(fr->body, JSON_COMPACT);
        if (call->body == NULL)
            return call_fail(call, AX_EINVAL, AX_FED_RESULT_REFUSED, "the request body cannot be serialised");
        call->body_len = strlen(call->body);
    }
    if (fr->path == NULL || fr->path[0] != '/' || strpbrk(fr->path, " \r\n") != NULL)
        return call_fail(call, AX_EINVAL, AX_FED_RESULT_REFUSED, "invalid request path");

    if (fr->_url_host != NULL) {
        call->url_mode = true;
        ax_fed_target_t *t = &call->target;
        struct in6_addr a6;
        struct in_addr a4;
        bool v6 = inet_pton(AF_INET6, fr->_url_host, &a6) == 1;
        snprintf(t->host, sizeof(t->host), "%s", fr->_url_host);
        t->port = fr->_url_port != 0 ? fr->_url_port : 443;
        snprintf(t->tls_name, sizeof(t->tls_name), "%s", fr->_url_host);
        t->tls_name_is_ip = v6 || inet_pton(AF_INET, fr->_url_host, &a4) == 1;
        if (t->port == 443)
            snprintf(t->host_header, sizeof(t->host_header), "%s%s%s", v6 ? "[" : "", fr->_url_host, v6 ? "]" : "");
        else
            snprintf(t->host_header, sizeof(t->host_header), "%s%s%s:%u", v6 ? "[" : "", fr->_url_host, v6 ? "]" : "",
                     t->port);
        return lookup_addresses(call);
    }

    const char *dest = fr->destination;
    if (dest == NULL || !ax_id_is_valid_server_name(dest))
        return call_fail(call, AX_EINVAL, AX_FED_RESULT_REFUSED, "invalid destination server name");
    if (strcmp(dest, fed->server_name) == 0)
        return call_fail(call, AX_EINVAL, AX_FED_RESULT_REFUSED, "refusing to send a request to ourselves");
    if ((fr->flags & AX_FED_IGNORE_BACKOFF) == 0) {
        uint64_t failures, retry_at, now = ax_now_ms();
        dest_read(fed, dest, &failures, &retry_at);
        if (failures != 0 && retry_at > now)
            return call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_BACKOFF,
                             "%s is unreachable (%llu failures); next attempt in %llu s", dest,
                             (unsigned long long)failures, (unsigned long long)((retry_at - now + 999) / 1000));
    }
    ax_buf_t auth = AX_BUF_INIT;
    if (ax_xmatrix_sign(&auth, fr->method, fr->path, fed->server_name, dest, fr->body, fed->key) != 0) {
        ax_buf_dispose(&auth);
        return call_fail(call, AX_EINVAL, AX_FED_RESULT_REFUSED, "the request body is not canonical JSON");
    }
    call->auth = ax_buf_release(&auth, NULL);
    call->waiting++;
    ax_resolver_resolve(fed->resolver, dest, on_resolved, call); /* may call back at once */
}

/* Once a second: answer calls that ran out of time; once a minute: forget what nobody uses. */
static void on_tick(h2o_timeout_entry_t *entry)
{
    ax_fed_t *fed = AX_CONTAINER_OF(entry, ax_fed_t, tick_entry);
    uint64_t now = ax_now_ms();
    for (fed_call_t *call = fed->calls, *next; call != NULL; call = next) {
        next = call->next;
        if (call->deadline_ms <= now)
            call_fail(call, AX_EUNREACHABLE, AX_FED_RESULT_NETWORK, "timed out");
    }
    ax_sender_tick(fed, now);
    if (now >= fed->pruned_ms + 60000) {
        fed->pruned_ms = now;
        prune_pools(fed, now);
        ax_resolver_prune(fed->resolver);
        ax_keyring_prune(fed, now);
    }
    h2o_timeout_link(fed->loop, &fed->tick_timeout, &fed->tick_entry);
}

/* ---- .well-known and SRV for the resolver ---- */

static void wellknown_done(ax_task_t *task)
{
    ax_fed_request_t *fr = (ax_fed_request_t *)task;
    ax_fed_t *fed = AX_CONTAINER_OF(task->port, ax_fed_t, port.super);
    ax_resolve_step_t *step = task->owner;
    fed->outstanding--;
    int status = task->result == 0 ? fr->status : 0;
    ax_resolver_wellknown_done(step, status, fr->body_raw, fr->body_len, fr->_cache_control, fr->_expires);
    ax_fed_request_free(fr);
}

static void op_fetch_wellknown(void *ctx, ax_resolve_step_t *step, const char *hostname)
{
    ax_fed_t *fed = ctx;
    ax_fed_request_t *fr = ax_fed_request_new(NULL, "GET", "/.well-known/matrix/server", NULL);
    fr->_url_host = ax_strdup(hostname);
    fr->_url_port = 443;
    fr->_follow_redirects = true;
    fr->timeout_ms = WELLKNOWN_TIMEOUT_MS;
    fr->max_response = WELLKNOWN_MAX_BYTES;
    fr->super.done = wellknown_done;
    fr->super.port = &fed->port.super;
    fr->super.owner = step;
    fed->outstanding++;
    ax_fed_start_request(fed, fr);
}

static void srv_done(ax_task_t *task)
{
    ax_dns_query_t *q = (ax_dns_query_t *)task;
    ax_fed_t *fed = AX_CONTAINER_OF(task->port, ax_fed_t, port.super);
    fed->outstanding--;
    ax_resolver_srv_done(task->owner, task->result, q->records, q->n);
    free(q->records);
    free(q);
}

static void op_lookup_srv(void *ctx, ax_resolve_step_t *step, const char *name)
{
    ax_fed_t *fed = ctx;
    ax_dns_query_t *q = ax_calloc(1, sizeof(*q));
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->super.done = srv_done;
    q->super.port = &fed->port.super;
    q->super.owner = step;
    fed->outstanding++;
    if (fed->refusing) {
        ax_fed_complete(&q->super, AX_ESHUTDOWN);
        return;
    }
    ax_dns_srv(fed->dns, q);
}

static uint64_t op_now(void *ctx)
{
    AX_UNUSED(ctx);
    return ax_now_ms();
}

static const ax_resolve_ops_t resolve_ops = {op_now, op_fetch_wellknown, op_lookup_srv, NULL};

/* ---- TLS ---- */

static int ssl_name_index = -1;
static pthread_once_t ssl_index_once = PTHREAD_ONCE_INIT;

static void free_name(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    AX_UNUSED(parent);
    AX_UNUSED(ad);
    AX_UNUSED(idx);
    AX_UNUSED(argl);
    AX_UNUSED(argp);
    free(ptr);
}

static void make_index(void)
{
    ssl_name_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_name);
}

static bool is_ip_literal(const char *s)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1;
}

/* When a handshake starts: remember the expected name, drop SNI for IP certificates, verify the peer. */
static void on_ssl_info(const SSL *cssl, int where, int ret)
{
    AX_UNUSED(ret);
    if ((where & SSL_CB_HANDSHAKE_START) == 0)
        return;
    SSL *ssl = (SSL *)cssl;
    if (SSL_get_ex_data(ssl, ssl_name_index) != NULL)
        return;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL)
        return;
    char *copy = ax_strdup(name);
    SSL_set_ex_data(ssl, ssl_name_index, copy);
    if (is_ip_literal(copy))
        SSL_set_tlsext_host_name(ssl, NULL); /* "SNI is not supported [for IP addresses] and should not be sent" */
    ax_fed_t *fed = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (fed->cfg->federation_verify_tls)
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
}

/* The chain against the trust store, and the certificate against the name discovery chose. */
static int on_cert_verify(X509_STORE_CTX *xs, void *arg)
{
    ax_fed_t *fed = arg;
    if (!fed->cfg->federation_verify_tls)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    const char *name = ssl != NULL ? SSL_get_ex_data(ssl, ssl_name_index) : NULL;
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(xs);
    if (name == NULL) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    if (is_ip_literal(name)) {
        X509_VERIFY_PARAM_set1_ip_asc(param, name);
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, name, 0);
    }
    return X509_verify_cert(xs);
}

static SSL_CTX *make_ssl_ctx(ax_fed_t *fed, char *err, size_t errlen)
{
    pthread_once(&ssl_index_once, make_index);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "federation: cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        ax_log(AX_LOG_WARN, "federation: cannot load the system's trusted certificates");
    if (fed->cfg->federation_ca_file != NULL &&
        SSL_CTX_load_verify_locations(ctx, fed->cfg->federation_ca_file, NULL) != 1) {
        snprintf(err, errlen, "federation_ca_file: '%s' holds no usable PEM certificate: %s",
                 fed->cfg->federation_ca_file, ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_app_data(ctx, fed);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* per connection, see the file comment */
    SSL_CTX_set_info_callback(ctx, on_ssl_info);
    SSL_CTX_set_cert_verify_callback(ctx, on_cert_verify, fed);
    return ctx;
}

/* ---- The loop ---- */

static void on_incoming(ax_task_t *task)
{
    ax_fed_t *fed = AX_CONTAINER_OF(task->port, ax_fed_t, inport.super);
    ax_fed_request_t *fr = AX_CONTAINER_OF(task, ax_fed_request_t, _in);
    if (task->owner == NULL) { /* the loop is being torn down */
        snprintf(fr->error, sizeof(fr->error), "the server is shutting down");
        ax_fed_complete(&fr->super, AX_ESHUTDOWN);
        return;
    }
    ax_fed_start_request(fed, fr);
}

void ax_fed_submit(ax_fed_t *fed, ax_fed_request_t *fr)
{
    fr->_in.done = on_incoming;
    fr->_in.port = &fed->inport.super;
    fr->_in.owner = fr;
    fr->_in._next = NULL;
    fed->inport.super.post(&fed->inport.super, &fr->_in);
}

static void on_control(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    ax_fed_t *fed = AX_CONTAINER_OF(receiver, ax_fed_t, control);
    while (!h2o_linklist_is_empty(messages))
        h2o_linklist_unlink(messages->next);
    if (atomic_load(&fed->shutting_down) && !fed->refusing) {
        fed->refusing = true;
        while (fed->calls != NULL)
            call_fail(fed->calls, AX_ESHUTDOWN, AX_FED_RESULT_SHUTDOWN, "the server is shutting down");
        ax_dns_cancel_all(fed->dns);
    }
    if (atomic_load(&fed->exit_requested))
        fed->exit_when_idle = true;
}

static bool idle(ax_fed_t *fed)
{
    return fed->ncalls == 0 && fed->outstanding == 0 && fed->fetches.size == 0;
}

static void *loop_main(void *arg)
{
    ax_fed_t *fed = arg;
    /* the loop is made on its own thread: h2o's socket buffers are per thread */
    fed->loop = h2o_evloop_create();
    fed->queue = h2o_multithread_create_queue(fed->loop);
    ax_hport_init(&fed->inport, fed->queue);
    ax_hport_init(&fed->port, fed->queue);
    h2o_multithread_register_receiver(fed->queue, &fed->getaddr_recv, h2o_hostinfo_getaddr_receiver);
    h2o_multithread_register_receiver(fed->queue, &fed->control, on_control);
    h2o_timeout_init(fed->loop, &fed->io_timeout, IO_TIMEOUT_MS);
    fed->hctx.loop = fed->loop;
    fed->hctx.getaddr_receiver = &fed->getaddr_recv;
    fed->hctx.io_timeout = &fed->io_timeout;
    fed->hctx.websocket_timeout = NULL;
    fed->hctx.ssl_ctx = NULL; /* made by the first connection (connect_next) */
    h2o_timeout_init(fed->loop, &fed->tick_timeout, 1000);
    fed->tick_entry.cb = on_tick;
    h2o_timeout_link(fed->loop, &fed->tick_timeout, &fed->tick_entry);
    ax_sender_start(fed); /* before anyone can post to the loop: wake-ups need it */
    pthread_mutex_lock(&fed->ready_mutex);
    fed->ready = true;
    pthread_cond_signal(&fed->ready_cond);
    pthread_mutex_unlock(&fed->ready_mutex);

    while (!(fed->exit_when_idle && idle(fed)))
        h2o_evloop_run(fed->loop, INT32_MAX);

    /* tear down on the loop's own thread */
    h2o_timeout_unlink(&fed->tick_entry);
    h2o_timeout_dispose(fed->loop, &fed->tick_timeout);
    ax_strmap_foreach(&fed->pools, free_pool, NULL);
    ax_strmap_dispose(&fed->pools);
    ax_keyring_dispose(fed);
    ax_sender_dispose(fed);
    ax_resolver_free(fed->resolver);
    fed->resolver = NULL;
    ax_hport_dispose(&fed->inport, fed->queue);
    ax_hport_dispose(&fed->port, fed->queue);
    h2o_multithread_unregister_receiver(fed->queue, &fed->getaddr_recv);
    h2o_multithread_unregister_receiver(fed->queue, &fed->control);
    h2o_evloop_run(fed->loop, 0);
    h2o_timeout_dispose(fed->loop, &fed->io_timeout);
    h2o_multithread_destroy_queue(fed->queue);
    free(fed->queue); /* libh2o 2.2.5 (evloop) does not free it */
    h2o_evloop_run(fed->loop, 0);
    h2o_evloop_destroy(fed->loop);
    fed->loop = NULL;
    /* return the socket buffers h2o keeps per thread */
    h2o_mem_recycle_t *rc = &h2o_socket_buffer_prototype.allocator;
    while (rc->cnt != 0)
        free(h2o_mem_alloc_recycle(rc, 0));
    return NULL;
}

int ax_fed_check_config(const ax_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->federation_ca_file == NULL)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int rc = 0;
    if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, cfg->federation_ca_file, NULL) != 1) {
        snprintf(err, errlen, "federation_ca_file: '%s' holds no usable PEM certificate", cfg->federation_ca_file);
        rc = AX_EINVAL;
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

ax_fed_t *ax_fed_start(const ax_config_t *cfg, const ax_signing_key_t *key, ax_db_t *db, ax_writer_t *writer)
{
    ax_fed_t *fed = ax_calloc(1, sizeof(*fed));
    fed->cfg = cfg;
    fed->server_name = cfg->server_name;
    fed->key = key;
    fed->db = db;
    fed->writer = writer;
    if (!cfg->federation_verify_tls)
        ax_log(AX_LOG_WARN, "federation_verify_tls = false: remote servers' certificates are NOT checked; "
                            "anyone on the network path can impersonate them (development only)");
    fed->resolver = ax_resolver_new(&resolve_ops, fed);
    fed->dns = ax_dns_new();
    pthread_mutex_init(&fed->ready_mutex, NULL);
    pthread_cond_init(&fed->ready_cond, NULL);
    if (pthread_create(&fed->tid, NULL, loop_main, fed) != 0)
        ax_fatal("cannot start the federation thread");
    /* nothing may be submitted before the loop's receivers exist */
    pthread_mutex_lock(&fed->ready_mutex);
    while (!fed->ready)
        pthread_cond_wait(&fed->ready_cond, &fed->ready_mutex);
    pthread_mutex_unlock(&fed->ready_mutex);
    return fed;
}

void ax_fed_shutdown(ax_fed_t *fed)
{
    if (fed == NULL || atomic_exchange(&fed->shutting_down, true))
        return;
    h2o_multithread_send_message(&fed->control, &fed->shutdown_msg);
}

void ax_fed_free(ax_fed_t *fed)
{
    if (fed == NULL)
        return;
    ax_fed_shutdown(fed);
    atomic_store(&fed->exit_requested, true);
    h2o_multithread_send_message(&fed->control, &fed->exit_msg);
    pthread_join(fed->tid, NULL);
    ax_dns_free(fed->dns);
    SSL_CTX_free(fed->ssl_ctx);
    pthread_mutex_destroy(&fed->ready_mutex);
    pthread_cond_destroy(&fed->ready_cond);
    free(fed);
}

void ax_fed_stats(ax_fed_t *fed, ax_fed_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < AX_FED_RESULT__COUNT; ++i)
        out->requests[i] = atomic_load_explicit(&fed->results[i], memory_order_relaxed);
    out->key_fetches_ok = atomic_load_explicit(&fed->key_fetches_ok, memory_order_relaxed);
    out->key_fetches_failed = atomic_load_explicit(&fed->key_fetches_failed, memory_order_relaxed);
    out->in_flight = atomic_load_explicit(&fed->in_flight, memory_order_relaxed);
    out->txns_ok = atomic_load_explicit(&fed->sender_txns_ok, memory_order_relaxed);
    out->txns_failed = atomic_load_explicit(&fed->sender_txns_failed, memory_order_relaxed);
    out->txns_rejected = atomic_load_explicit(&fed->sender_txns_rejected, memory_order_relaxed);
    out->pdus_sent = atomic_load_explicit(&fed->sender_pdus, memory_order_relaxed);
    out->edus_sent = atomic_load_explicit(&fed->sender_edus, memory_order_relaxed);
    out->pdu_errors = atomic_load_explicit(&fed->sender_pdu_errors, memory_order_relaxed);
    out->items_dropped = atomic_load_explicit(&fed->sender_dropped, memory_order_relaxed);
    out->catchup_skipped = atomic_load_explicit(&fed->sender_catchup_skipped, memory_order_relaxed);
    out->txns_in_flight = atomic_load_explicit(&fed->sender_in_flight, memory_order_relaxed);
}
