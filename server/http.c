/*
 * http.c -- the HTTP front on libh2o (evloop build): listeners, the event-
 * loop threads, the request entry point with its common guards, replies,
 * CORS, the access log, completion ports over h2o's multithread queue, and
 * graceful shutdown.
 *
 * Threads (DESIGN.md): N threads, each with its own h2o evloop + context
 * and its own SO_REUSEPORT socket per listener.  A request runs on the
 * thread that accepted its connection from start to reply; work done
 * elsewhere (writer, workers) comes back through that thread's port.
 *
 * Every request passes the same guards before its handler: CORS and
 * OPTIONS, overload (503), route match (404/405 M_UNRECOGNIZED), body size
 * (413 M_TOO_LARGE), parameter decoding and authentication.
 */
#include "server/server.h"
#include "server/http_internal.h"
#include "server/handlers.h"
#include "common/json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SHUTDOWN_GRACE_MS 10000
#define LOG_FLUSH_MS      200
#define ACCEPTS_PER_EVENT 32

/* ---- Pool helpers ---- */

void *ax_palloc(ax_req_t *r, size_t sz)
{
    return h2o_mem_alloc_pool(&r->req->pool, sz);
}

void *ax_palloc_dispose(ax_req_t *r, size_t sz, void (*dispose)(void *))
{
    return h2o_mem_alloc_shared(&r->req->pool, sz, dispose);
}

char *ax_pstrndup(ax_req_t *r, const char *s, size_t n)
{
    char *p = h2o_mem_alloc_pool(&r->req->pool, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ax_pstrdup(ax_req_t *r, const char *s)
{
    return ax_pstrndup(r, s, strlen(s));
}

char *ax_psprintf(ax_req_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = ax_palloc(r, (size_t)(n < 0 ? 0 : n) + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap);
    va_end(ap);
    return p;
}

json_t *ax_req_hold_json(ax_req_t *r, json_t *j)
{
    if (j == NULL)
        return NULL;
    if (r->nheld < AX_ARRAY_SIZE(r->_held)) {
        r->_held[r->nheld++] = j;
    } else {
        if (r->_held_more == NULL)
            r->_held_more = json_array();
        json_array_append_new(r->_held_more, j);
    }
    return j;
}

/* ---- Completion ports over h2o's multithread queue ---- */

static void hport_post(ax_port_t *port, ax_task_t *chain)
{
    ax_hport_t *hp = (ax_hport_t *)port;
    ax_task_t *last = chain;
    while (last->_next != NULL)
        last = last->_next;
    pthread_mutex_lock(&hp->mutex);
    *hp->tail = chain;
    hp->tail = &last->_next;
    bool send = !hp->msg_pending;
    hp->msg_pending = true;
    pthread_mutex_unlock(&hp->mutex);
    /* one message in flight at a time: the receiver unlinks it before it
     * takes the list, and only then can msg_pending go false again */
    if (send)
        h2o_multithread_send_message(&hp->receiver, &hp->msg);
}

static void hport_on_message(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    ax_hport_t *hp = AX_CONTAINER_OF(receiver, ax_hport_t, receiver);
    while (!h2o_linklist_is_empty(messages))
        h2o_linklist_unlink(messages->next);
    pthread_mutex_lock(&hp->mutex);
    ax_task_t *chain = hp->head;
    hp->head = NULL;
    hp->tail = &hp->head;
    hp->msg_pending = false;
    pthread_mutex_unlock(&hp->mutex);
    while (chain != NULL) {
        ax_task_t *next = chain->_next;
        chain->_next = NULL;
        chain->done(chain);
        chain = next;
    }
}

void ax_hport_init(ax_hport_t *hp, h2o_multithread_queue_t *queue)
{
    memset(hp, 0, sizeof(*hp));
    hp->super.post = hport_post;
    hp->tail = &hp->head;
    pthread_mutex_init(&hp->mutex, NULL);
    h2o_multithread_register_receiver(queue, &hp->receiver, hport_on_message);
}

/* Runs what is still queued with its owner cleared (the loop is gone). */
void ax_hport_dispose(ax_hport_t *hp, h2o_multithread_queue_t *queue)
{
    h2o_multithread_unregister_receiver(queue, &hp->receiver);
    ax_task_t *chain = hp->head;
    hp->head = NULL;
    while (chain != NULL) {
        ax_task_t *next = chain->_next;
        chain->_next = NULL;
        chain->owner = NULL;
        chain->done(chain);
        chain = next;
    }
    pthread_mutex_destroy(&hp->mutex);
}

/* ---- Request continuations ---- */

static void req_task_done(ax_task_t *task)
{
    ax_req_t *r = task->owner;
    ax_req_cont_t cont = (ax_req_cont_t)task->owner_cb;
    ax_thread_t *t = AX_CONTAINER_OF(task->port, ax_thread_t, port.super);
    t->tasks_outstanding--;
    if (r != NULL)
        r->pending = NULL;
    cont(r, task);
}

void ax_req_bind_task(ax_req_t *r, ax_task_t *task, ax_req_cont_t cont)
{
    task->port = &r->thread->port.super;
    task->done = req_task_done;
    task->owner = r;
    task->owner_cb = (void (*)(void))cont;
    r->pending = task;
    r->thread->tasks_outstanding++;
}

void ax_req_submit_write(ax_req_t *r, ax_wjob_t *job, ax_req_cont_t cont)
{
    ax_req_bind_task(r, &job->super, cont);
    ax_writer_submit(r->srv->writer, job);
}

void ax_req_submit_work(ax_req_t *r, ax_work_t *work, ax_req_cont_t cont)
{
    ax_req_bind_task(r, &work->super, cont);
    ax_workers_submit(r->srv->workers, work);
}

typedef struct st_simple_job_t {
    union {
        ax_wjob_t w;
        ax_work_t k;
    } u;
    ax_apply_fn apply;
    int (*run)(void *data);
    ax_done_fn done;
    void *data;
    void (*free_data)(void *);
} simple_job_t;

static int simple_apply(ax_wjob_t *job, ax_txn_t *txn)
{
    simple_job_t *j = (simple_job_t *)job;
    return j->apply(txn, j->data);
}

static void simple_run(ax_work_t *work)
{
    simple_job_t *j = (simple_job_t *)work;
    work->super.result = j->run(j->data);
}

static void simple_cont(ax_req_t *r, ax_task_t *task)
{
    simple_job_t *j = (simple_job_t *)task;
    if (r != NULL)
        j->done(r, task->result, j->data);
    if (j->free_data != NULL)
        j->free_data(j->data);
    free(j);
}

void ax_req_write(ax_req_t *r, ax_apply_fn apply, ax_done_fn done, void *data, void (*free_data)(void *))
{
    simple_job_t *j = ax_calloc(1, sizeof(*j));
    j->u.w.apply = simple_apply;
    j->apply = apply;
    j->done = done;
    j->data = data;
    j->free_data = free_data;
    ax_req_submit_write(r, &j->u.w, simple_cont);
}

void ax_req_write_detached(ax_req_t *r, ax_apply_fn apply, void *data, void (*free_data)(void *))
{
    simple_job_t *j = ax_calloc(1, sizeof(*j));
    j->u.w.apply = simple_apply;
    j->apply = apply;
    j->data = data;
    j->free_data = free_data;
    ax_req_bind_task(r, &j->u.w.super, simple_cont);
    j->u.w.super.owner = NULL; /* nobody waits: the continuation only frees */
    r->pending = NULL;
    ax_writer_submit(r->srv->writer, &j->u.w);
}

void ax_req_work(ax_req_t *r, int (*run)(void *data), ax_done_fn done, void *data, void (*free_data)(void *))
{
    simple_job_t *j = ax_calloc(1, sizeof(*j));
    j->u.k.run = simple_run;
    j->run = run;
    j->done = done;
    j->data = data;
    j->free_data = free_data;
    ax_req_submit_work(r, &j->u.k, simple_cont);
}

/* ---- Replies ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

void ax_reply_header(ax_req_t *r, const char *name, const char *value)
{
    h2o_req_t *req = r->req;
    size_t nlen = strlen(name), vlen = strlen(value);
    const h2o_token_t *tok = h2o_lookup_token(name, nlen);
    char *v = h2o_mem_alloc_pool(&req->pool, vlen);
    memcpy(v, value, vlen);
    if (tok != NULL) {
        h2o_add_header(&req->pool, &req->res.headers, tok, NULL, v, vlen);
    } else {
        char *n = h2o_mem_alloc_pool(&req->pool, nlen);
        memcpy(n, name, nlen);
        h2o_add_header_by_str(&req->pool, &req->res.headers, n, nlen, 0, NULL, v, vlen);
    }
}

static void add_cors(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, H2O_STRLIT("*"));
    /* h2o 2.2.5 has no tokens for these two; the names are static strings */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                          H2O_STRLIT("GET, HEAD, POST, PUT, DELETE, OPTIONS"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL,
                          H2O_STRLIT("X-Requested-With, Content-Type, Authorization"));
}

static void flush_access_log(ax_thread_t *t)
{
    if (t->loglen != 0) {
        ssize_t w = write(STDERR_FILENO, t->logbuf, t->loglen);
        (void)w;
        t->loglen = 0;
    }
}

static void on_log_flush_timeout(h2o_timeout_entry_t *entry)
{
    ax_thread_t *t = AX_CONTAINER_OF(entry, ax_thread_t, log_flush_entry);
    flush_access_log(t);
}

static void access_log(ax_req_t *r, int status, size_t bytes, uint64_t latency_ns)
{
    ax_thread_t *t = r->thread;
    const char *route = r->route != NULL ? r->route->path : "(unmatched)";
    char method[16];
    snprintf(method, sizeof(method), "%.*s", (int)r->req->method.len, r->req->method.base);
    ax_access_log_t e = {.method = method,
                         .route = route,
                         .client = ax_req_client_ip(r),
                         .status = status,
                         .bytes = bytes,
                         .latency_ms = (double)latency_ns / 1e6,
                         .user = r->auth.user_id};
    if (sizeof(t->logbuf) - t->loglen < 1024)
        flush_access_log(t);
    t->loglen += ax_log_format_access(t->logbuf + t->loglen, sizeof(t->logbuf) - t->loglen, &e);
    if (!h2o_timeout_is_linked(&t->log_flush_entry))
        h2o_timeout_link(t->loop, &t->log_flush_timeout, &t->log_flush_entry);
}

static void request_finished(ax_req_t *r, int status, size_t bytes)
{
    uint64_t latency = ax_mono_ns() - r->start_ns;
    ax_metrics_record(r->thread, r->route_index, status, latency);
    if ((r->route == NULL || (r->route->flags & AX_ROUTE_NO_LOG) == 0) && ax_log_enabled(AX_LOG_INFO))
        access_log(r, status, bytes, latency);
    atomic_fetch_sub(&r->srv->inflight, 1);
    r->thread->inflight--;
}

static h2o_generator_t static_generator = {NULL, NULL};

/* Sends 'body' (in the request pool) as the complete response. */
static int send_response(ax_req_t *r, int status, const char *ctype, size_t ctype_len, h2o_iovec_t body)
{
    if (r->replied) {
        ax_log(AX_LOG_ERROR, "internal: second reply to %s ignored", r->route ? r->route->path : "request");
        return 0;
    }
    r->replied = true;
    h2o_req_t *req = r->req;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    add_cors(req);
    if (ctype != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, ctype_len);
    req->res.content_length = body.len;
    request_finished(r, status, body.len);
    /* nothing may touch 'r' after h2o_send: the request can be freed inside it */
    h2o_start_response(req, &static_generator);
    bool head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    h2o_send(req, head ? NULL : &body, head ? 0 : 1, H2O_SEND_STATE_FINAL);
    return 0;
}

/* ---- Files, streamed (media downloads) ----
 *
 * The body is read with pread() in FILE_CHUNK pieces on the request's HTTP
 * thread, one piece each time h2o asks for more (the generator's proceed),
 * so a download holds one chunk of memory whatever the file size, and a slow
 * client slows only its own reads.  Reading on the HTTP thread departs from
 * "no disk I/O on an HTTP thread" (docs/architecture.md): media files are
 * recent uploads or popular downloads, so the reads are mostly page-cache
 * copies, and POSIX_FADV_SEQUENTIAL + WILLNEED start the kernel's read-ahead
 * before the first piece is asked for.  A hop to the worker pool per chunk
 * would cost two thread switches per 64 KiB and queue downloads behind
 * thumbnails and password hashes. */

#define FILE_CHUNK (64 * 1024)

typedef struct st_file_gen_t {
    h2o_generator_t super;
    h2o_req_t *req;
    ax_thread_t *thread;
    int fd;
    uint64_t off, size;
    char *buf;
    h2o_iovec_t head, tail; /* bytes around the file (a multipart frame), in the request pool */
} file_gen_t;

static void file_gen_close(file_gen_t *g)
{
    if (g->fd >= 0) {
        close(g->fd);
        g->fd = -1;
        g->thread->streams--;
    }
}

static void file_gen_dispose(void *p)
{
    file_gen_t *g = p;
    file_gen_close(g);
    free(g->buf);
}

/* Sends the next chunk; nothing may touch 'g' after h2o_send (the request can be freed inside it). */
static void file_gen_send(file_gen_t *g)
{
    size_t want = g->size - g->off < FILE_CHUNK ? (size_t)(g->size - g->off) : FILE_CHUNK;
    ssize_t n;
    do
        n = pread(g->fd, g->buf, want, (off_t)g->off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        /* the headers are gone: all we can do is cut the response short */
        ax_log(AX_LOG_ERROR, "file reply: read failed at byte %llu of %llu: %s", (unsigned long long)g->off,
               (unsigned long long)g->size, n < 0 ? strerror(errno) : "file shrank");
        file_gen_close(g);
        h2o_send(g->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    bool first = g->off == 0;
    g->off += (uint64_t)n;
    bool last = g->off == g->size;
    if (last)
        file_gen_close(g);
    h2o_iovec_t v[3];
    size_t nv = 0;
    if (first && g->head.len != 0)
        v[nv++] = g->head;
    v[nv++] = h2o_iovec_init(g->buf, (size_t)n);
    if (last && g->tail.len != 0)
        v[nv++] = g->tail;
    h2o_send(g->req, v, nv, last ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void file_gen_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    AX_UNUSED(req);
    file_gen_send((file_gen_t *)self);
}

static void file_gen_stop(h2o_generator_t *self, h2o_req_t *req)
{
    AX_UNUSED(req);
    file_gen_close((file_gen_t *)self);
}

int ax_reply_file(ax_req_t *r, int status, const char *content_type, int fd, uint64_t size)
{
    return ax_reply_file_framed(r, status, content_type, NULL, 0, fd, size, NULL, 0);
}

int ax_reply_file_framed(ax_req_t *r, int status, const char *content_type, const char *head, size_t head_len, int fd,
                         uint64_t size, const char *tail, size_t tail_len)
{
    if (r->replied) {
        ax_log(AX_LOG_ERROR, "internal: second reply to %s ignored", r->route ? r->route->path : "request");
        close(fd);
        return 0;
    }
    r->replied = true;
    h2o_req_t *req = r->req;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    add_cors(req);
    if (content_type != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       h2o_strdup(&req->pool, content_type, SIZE_MAX).base, strlen(content_type));
    uint64_t total = head_len + size + tail_len;
    req->res.content_length = (size_t)total;
    bool is_head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    /* metrics and the access log count the reply when its headers go out */
    request_finished(r, status, is_head ? 0 : (size_t)total);
    if (is_head || size == 0) {
        close(fd);
        h2o_start_response(req, &static_generator);
        if (is_head || total == 0) {
            h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        } else {
            /* an empty file in its frame: the frame alone, in one piece */
            h2o_iovec_t v[2];
            size_t nv = 0;
            if (head_len != 0)
                v[nv++] = h2o_strdup(&req->pool, head, head_len);
            if (tail_len != 0)
                v[nv++] = h2o_strdup(&req->pool, tail, tail_len);
            h2o_send(req, v, nv, H2O_SEND_STATE_FINAL);
        }
        return 0;
    }
    file_gen_t *g = h2o_mem_alloc_shared(&req->pool, sizeof(*g), file_gen_dispose);
    memset(g, 0, sizeof(*g));
    g->super.proceed = file_gen_proceed;
    g->super.stop = file_gen_stop;
    g->req = req;
    g->thread = r->thread;
    g->fd = fd;
    g->size = size;
    g->buf = ax_malloc(FILE_CHUNK);
    if (head_len != 0)
        g->head = h2o_strdup(&req->pool, head, head_len);
    if (tail_len != 0)
        g->tail = h2o_strdup(&req->pool, tail, tail_len);
    r->thread->streams++; /* graceful shutdown lets the body finish */
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    posix_fadvise(fd, 0, (off_t)(size < 4 * FILE_CHUNK ? size : 4 * FILE_CHUNK), POSIX_FADV_WILLNEED);
    h2o_start_response(req, &g->super);
    file_gen_send(g);
    return 0;
}

int ax_reply_raw(ax_req_t *r, int status, const char *content_type, const char *body, size_t len)
{
    h2o_iovec_t b = h2o_strdup(&r->req->pool, body, len);
    return send_response(r, status, content_type, content_type ? strlen(content_type) : 0, b);
}

int ax_reply_json_new(ax_req_t *r, int status, json_t *body)
{
    ax_buf_t *scratch = &r->thread->scratch;
    ax_buf_reset(scratch);
    if (ax_json_encode(body, scratch) != 0) {
        json_decref(body);
        ax_log(AX_LOG_ERROR, "internal: cannot serialize reply for %s", r->route ? r->route->path : "request");
        ax_buf_reset(scratch);
        ax_buf_puts(scratch, "{\"errcode\":\"M_UNKNOWN\",\"error\":\"Internal error\"}");
        status = 500;
    } else {
        json_decref(body);
    }
    h2o_iovec_t b = h2o_strdup(&r->req->pool, scratch->base, scratch->len);
    if (scratch->cap > 1 << 20)
        ax_buf_dispose(scratch); /* do not keep a huge buffer per thread */
    return send_response(r, status, H2O_STRLIT("application/json"), b);
}

int ax_reply_error_status(ax_req_t *r, int status, ax_errcode_t code, const char *message)
{
    return ax_reply_json_new(r, status,
                             json_pack("{s:s, s:s}", "errcode", ax_errcode_name(code), "error",
                                       message != NULL ? message : ax_errcode_name(code)));
}

int ax_reply_error(ax_req_t *r, ax_errcode_t code, const char *message)
{
    return ax_reply_error_status(r, ax_errcode_status(code), code, message);
}

int ax_reply_limit_exceeded(ax_req_t *r, uint64_t retry_after_ms)
{
    char secs[24];
    snprintf(secs, sizeof(secs), "%llu", (unsigned long long)((retry_after_ms + 999) / 1000));
    ax_reply_header(r, "retry-after", secs);
    return ax_reply_json_new(r, 429,
                             json_pack("{s:s, s:s, s:I}", "errcode", "M_LIMIT_EXCEEDED", "error", "Too many requests",
                                       "retry_after_ms", (json_int_t)retry_after_ms));
}

/* ---- Request input ---- */

void ax_req_body(ax_req_t *r, const char **base, size_t *len)
{
    *base = r->req->entity.base != NULL ? r->req->entity.base : "";
    *len = r->req->entity.base != NULL ? r->req->entity.len : 0;
}

int ax_req_json_body_or_reply(ax_req_t *r, json_t **out)
{
    const char *base;
    size_t len;
    ax_req_body(r, &base, &len);
    size_t i = 0;
    while (i < len && (base[i] == ' ' || base[i] == '\t' || base[i] == '\r' || base[i] == '\n'))
        ++i;
    json_t *j;
    if (i == len) {
        j = json_object(); /* no body: clients send none to /logout and friends */
    } else {
        json_error_t err;
        j = json_loadb(base, len, JSON_REJECT_DUPLICATES, &err);
        if (j == NULL) {
            ax_reply_error(r, AX_M_NOT_JSON, "Content not JSON");
            return -1;
        }
        if (!json_is_object(j)) {
            json_decref(j);
            ax_reply_error(r, AX_M_NOT_JSON, "Content must be a JSON object");
            return -1;
        }
    }
    *out = ax_req_hold_json(r, j);
    return 0;
}

static json_t *field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static int field_wrong(ax_req_t *r, const char *key, const char *type)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "'%.64s' must be %s", key, type);
    ax_reply_error(r, AX_M_BAD_JSON, msg);
    return -1;
}

static int field_missing(ax_req_t *r, const char *key)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "Missing '%.64s'", key);
    ax_reply_error(r, AX_M_MISSING_PARAM, msg);
    return -1;
}

int ax_field_string_or_reply(ax_req_t *r, json_t *obj, const char *key, bool required, const char **out)
{
    json_t *v = field(obj, key);
    *out = NULL;
    if (v == NULL)
        return required ? field_missing(r, key) : 0;
    if (!json_is_string(v))
        return field_wrong(r, key, "a string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return field_wrong(r, key, "a string without NUL characters");
    *out = json_string_value(v);
    return 0;
}

int ax_field_bool_or_reply(ax_req_t *r, json_t *obj, const char *key, bool dflt, bool *out)
{
    json_t *v = field(obj, key);
    *out = dflt;
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v))
        return field_wrong(r, key, "a boolean");
    *out = json_is_true(v);
    return 0;
}

int ax_field_object_or_reply(ax_req_t *r, json_t *obj, const char *key, bool required, json_t **out)
{
    json_t *v = field(obj, key);
    *out = NULL;
    if (v == NULL)
        return required ? field_missing(r, key) : 0;
    if (!json_is_object(v))
        return field_wrong(r, key, "an object");
    *out = v;
    return 0;
}

int ax_field_array_or_reply(ax_req_t *r, json_t *obj, const char *key, bool required, json_t **out)
{
    json_t *v = field(obj, key);
    *out = NULL;
    if (v == NULL)
        return required ? field_missing(r, key) : 0;
    if (!json_is_array(v))
        return field_wrong(r, key, "an array");
    *out = v;
    return 0;
}

int ax_field_int_or_reply(ax_req_t *r, json_t *obj, const char *key, bool required, json_int_t *out)
{
    json_t *v = field(obj, key);
    if (v == NULL)
        return required ? field_missing(r, key) : 0;
    if (!json_is_integer(v))
        return field_wrong(r, key, "an integer");
    *out = json_integer_value(v);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into the pool; '+' becomes a space when 'form'.  NULL on bad input or NUL bytes. */
static char *pdecode(ax_req_t *r, const char *s, size_t n, bool form)
{
    char *out = ax_palloc(r, n + 1), *o = out;
    for (size_t i = 0; i < n; ++i) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return NULL;
            char c = (char)(hi << 4 | lo);
            if (c == '\0')
                return NULL;
            *o++ = c;
            i += 2;
        } else if (form && s[i] == '+') {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

const char *ax_req_query(ax_req_t *r, const char *name)
{
    return ax_req_query_nth(r, name, 0);
}

const char *ax_req_query_nth(ax_req_t *r, const char *name, size_t nth)
{
    h2o_req_t *req = r->req;
    if (req->query_at == SIZE_MAX)
        return NULL;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nlen = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        char *key = pdecode(r, q, (size_t)(ke - q), true);
        if (key != NULL && strlen(key) == nlen && memcmp(key, name, nlen) == 0 && nth-- == 0) {
            if (eq == NULL)
                return "";
            char *v = pdecode(r, eq + 1, (size_t)(pe - eq - 1), true);
            return v != NULL ? v : "";
        }
        q = pe + 1;
    }
    return NULL;
}

const char *ax_req_header(ax_req_t *r, const char *name)
{
    h2o_req_t *req = r->req;
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    h2o_header_t *h = &req->headers.entries[i];
    return ax_pstrndup(r, h->value.base, h->value.len);
}

const char *ax_req_header_n(ax_req_t *r, const char *name, size_t n, size_t *len)
{
    h2o_req_t *req = r->req;
    size_t nlen = strlen(name);
    for (size_t i = 0; i < req->headers.size; ++i) {
        h2o_header_t *h = &req->headers.entries[i];
        if (h->name->len != nlen || memcmp(h->name->base, name, nlen) != 0)
            continue;
        if (n-- == 0) {
            *len = h->value.len;
            return h->value.base;
        }
    }
    return NULL;
}

const char *ax_req_uri(ax_req_t *r)
{
    return ax_pstrndup(r, r->req->path.base, r->req->path.len);
}

const char *ax_req_method(ax_req_t *r)
{
    return ax_pstrndup(r, r->req->method.base, r->req->method.len);
}

const char *ax_req_path(ax_req_t *r)
{
    h2o_req_t *req = r->req;
    return ax_pstrndup(r, req->path.base, req->query_at != SIZE_MAX ? req->query_at : req->path.len);
}

static bool sockaddr_to_text(const struct sockaddr *sa, char *out, size_t cap)
{
    if (sa->sa_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap) != NULL;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            return inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)cap) != NULL;
        return inet_ntop(AF_INET6, a, out, (socklen_t)cap) != NULL;
    }
    return false;
}

static bool is_trusted_proxy(const ax_server_t *srv, const char *ip)
{
    const ax_strlist_t *tp = &srv->cfg->trusted_proxies;
    for (size_t i = 0; i < tp->count; ++i)
        if (strcmp(tp->items[i], ip) == 0)
            return true;
    return false;
}

const char *ax_req_client_ip(ax_req_t *r)
{
    if (r->client_ip != NULL)
        return r->client_ip;
    struct sockaddr_storage ss;
    char peer[INET6_ADDRSTRLEN] = "unknown";
    if (r->req->conn->callbacks->get_peername(r->req->conn, (struct sockaddr *)&ss) != 0)
        sockaddr_to_text((struct sockaddr *)&ss, peer, sizeof(peer));
    const char *ip = ax_pstrdup(r, peer);
    if (is_trusted_proxy(r->srv, peer)) {
        /* the client is the rightmost X-Forwarded-For entry not added by a trusted proxy */
        const char *xff = ax_req_header(r, "x-forwarded-for");
        if (xff != NULL) {
            char *copy = ax_pstrdup(r, xff);
            char *save = NULL, *candidate = NULL;
            char *items[32];
            size_t n = 0;
            for (char *tok = strtok_r(copy, ", ", &save); tok != NULL && n < 32; tok = strtok_r(NULL, ", ", &save))
                items[n++] = tok;
            for (size_t i = n; i-- > 0;) {
                candidate = items[i];
                if (!is_trusted_proxy(r->srv, candidate))
                    break;
            }
            if (candidate != NULL)
                ip = candidate;
        }
    }
    r->client_ip = ip;
    return ip;
}

/* ---- The request entry point ---- */

static void waiter_unlink(ax_waiter_t *w);

static void on_req_dispose(void *p)
{
    ax_req_t *r = p;
    bool parked = r->waiter != NULL && r->waiter->parked;
    if (r->waiter != NULL) {
        waiter_unlink(r->waiter);
        if (h2o_timeout_is_linked(&r->waiter->now_entry))
            h2o_timeout_unlink(&r->waiter->now_entry);
    }
    if (!r->replied && !parked) {
        /* the client went away before we answered */
        ax_metrics_record(r->thread, r->route_index, 499, ax_mono_ns() - r->start_ns);
        atomic_fetch_sub(&r->srv->inflight, 1);
        r->thread->inflight--;
    }
    if (r->pending != NULL)
        r->pending->owner = NULL;
    for (size_t i = 0; i < r->nheld; ++i)
        json_decref(r->_held[i]);
    json_decref(r->_held_more);
    r->req = NULL;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    ax_handler_glue_t *glue = (ax_handler_glue_t *)self;
    ax_server_t *srv = glue->srv;
    ax_thread_t *t = AX_CONTAINER_OF(req->conn->ctx, ax_thread_t, ctx);
    ax_req_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_req_dispose);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->thread = t;
    r->srv = srv;
    r->start_ns = ax_mono_ns();
    r->route_index = AX_ROUTE_UNMATCHED;
    atomic_fetch_add(&srv->inflight, 1);
    t->inflight++;

    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")))
        return send_response(r, 204, NULL, 0, h2o_iovec_init(NULL, 0)); /* CORS preflight, any path */

    if (atomic_load(&srv->inflight) > (int64_t)srv->cfg->max_concurrent_requests) {
        ax_reply_header(r, "retry-after", "1");
        return ax_reply_error_status(r, 503, AX_M_UNKNOWN, "Server is overloaded; try again shortly");
    }

    const char *path = req->path.base;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    /* r0 is served as an alias of v3 (the spec renamed it in v1.1) */
    char *aliased = NULL;
    bool via_r0 = false;
    static const char client_r0[] = "/_matrix/client/r0/", media_r0[] = "/_matrix/media/r0/";
    if ((plen >= sizeof(client_r0) - 1 && memcmp(path, client_r0, sizeof(client_r0) - 1) == 0) ||
        (plen >= sizeof(media_r0) - 1 && memcmp(path, media_r0, sizeof(media_r0) - 1) == 0)) {
        aliased = ax_pstrndup(r, path, plen);
        char *v = strstr(aliased, "/r0/");
        v[1] = 'v', v[2] = '3';
        path = aliased;
        via_r0 = true;
    }

    const char *pptr[AX_ROUTE_MAX_PARAMS];
    size_t plens[AX_ROUTE_MAX_PARAMS], nparams = 0, index = 0;
    char allow[96];
    ax_match_t m = ax_router_match(srv->router, req->method.base, req->method.len, path, plen, &index, pptr, plens,
                                   &nparams, allow, sizeof(allow));
    const ax_route_t *route = m == AX_MATCH_OK ? &ax_routes[index] : NULL;
    if (route != NULL && via_r0 && (route->flags & AX_ROUTE_NO_R0) != 0)
        m = AX_MATCH_NO_PATH, route = NULL;

    /* the body limit comes first: an oversized body is 413 wherever it was sent */
    uint64_t limit =
        route != NULL && (route->flags & AX_ROUTE_UPLOAD) ? srv->cfg->max_upload_size : srv->cfg->max_request_size;
    if (req->entity.base != NULL && req->entity.len > limit)
        return ax_reply_error(r, AX_M_TOO_LARGE, "Request body too large");
    if (m == AX_MATCH_NO_PATH)
        return ax_reply_error(r, AX_M_UNRECOGNIZED, "Unrecognized request");
    if (m == AX_MATCH_NO_METHOD) {
        ax_reply_header(r, "allow", allow);
        return ax_reply_error_status(r, 405, AX_M_UNRECOGNIZED, "Unrecognized request: method not allowed");
    }
    r->route = route;
    r->route_index = index;

    for (size_t i = 0; i < nparams; ++i) {
        if ((r->params[i] = pdecode(r, pptr[i], plens[i], false)) == NULL)
            return ax_reply_error(r, AX_M_INVALID_PARAM, "Malformed percent-encoding in path");
    }
    r->nparams = nparams;

    if ((route->flags & (AX_ROUTE_AUTH | AX_ROUTE_AUTH_OPTIONAL)) != 0 &&
        ax_req_auth_or_reply(r, (route->flags & AX_ROUTE_AUTH) == 0) != 0)
        return 0;

    /* Server-Server requests: the handler runs once the X-Matrix signature verified (maybe after a key fetch) */
    if ((route->flags & AX_ROUTE_FED) != 0)
        return ax_fed_auth_run(r);

    return route->handler(r);
}

/* ---- Long-polls ---- */

static void waiter_unlink(ax_waiter_t *w)
{
    if (!w->parked)
        return;
    ax_thread_t *t = w->thread;
    *w->key_pprev = w->key_next;
    if (w->key_next != NULL)
        w->key_next->key_pprev = w->key_pprev;
    if (w->bucket->head == NULL)
        free(ax_strmap_del(&t->waiters, w->key));
    if (w->dl_prev != NULL)
        w->dl_prev->dl_next = w->dl_next;
    else
        t->dl_head = w->dl_next;
    if (w->dl_next != NULL)
        w->dl_next->dl_prev = w->dl_prev;
    else
        t->dl_tail = w->dl_prev;
    w->dl_next = w->dl_prev = NULL;
    w->parked = false;
    atomic_fetch_sub(&t->nwaiters, 1);
}

/* Un-parks and runs the wake callback, counting the request in flight again. */
static void waiter_fire(ax_waiter_t *w, bool timed_out)
{
    waiter_unlink(w);
    ax_req_t *r = w->r;
    atomic_fetch_add(&r->srv->inflight, 1);
    r->thread->inflight++;
    w->wake(r, timed_out);
}

static void on_waiter_tick(h2o_timeout_entry_t *entry)
{
    ax_thread_t *t = AX_CONTAINER_OF(entry, ax_thread_t, waiter_tick);
    uint64_t now = ax_now_ms();
    while (t->dl_head != NULL && t->dl_head->deadline_ms <= now)
        waiter_fire(t->dl_head, true);
    if (t->dl_head != NULL && !h2o_timeout_is_linked(&t->waiter_tick))
        h2o_timeout_link(t->loop, &t->ctx.hundred_ms_timeout, &t->waiter_tick);
}

static void on_waiter_now(h2o_timeout_entry_t *entry)
{
    ax_waiter_t *w = AX_CONTAINER_OF(entry, ax_waiter_t, now_entry);
    ax_req_t *r = w->r;
    atomic_fetch_add(&r->srv->inflight, 1);
    r->thread->inflight++;
    /* a re-check after a commit is not a timeout; shutting down (or no timeout at all) is:
     * the handler must answer with what it has instead of parking again */
    w->wake(r, w->answer_now);
}

void ax_req_park(ax_req_t *r, const char *key, uint64_t seen_pos, uint64_t timeout_ms, ax_wake_fn wake)
{
    ax_thread_t *t = r->thread;
    ax_waiter_t *w = r->waiter;
    if (w == NULL) {
        w = r->waiter = ax_palloc(r, sizeof(*w));
        memset(w, 0, sizeof(*w));
        w->r = r;
        w->thread = t;
        w->now_entry.cb = on_waiter_now;
    }
    w->wake = wake;
    w->key = ax_pstrdup(r, key);
    /* it no longer counts as in flight */
    atomic_fetch_sub(&r->srv->inflight, 1);
    t->inflight--;

    if (t->shutting_down || timeout_ms == 0) {
        w->answer_now = true;
        h2o_timeout_link(t->loop, &t->ctx.zero_timeout, &w->now_entry);
        if (t->shutting_down)
            w->deadline_ms = 0;
        return;
    }
    if (ax_writer_stream_pos(r->srv->writer) > seen_pos) {
        /* something committed after the request looked: look again */
        w->answer_now = false;
        h2o_timeout_link(t->loop, &t->ctx.zero_timeout, &w->now_entry);
        return;
    }
    w->deadline_ms = ax_now_ms() + timeout_ms;
    ax_wbucket_t *b = ax_strmap_get(&t->waiters, key);
    if (b == NULL) {
        b = ax_calloc(1, sizeof(*b));
        ax_strmap_put(&t->waiters, key, b);
    }
    w->bucket = b;
    w->key_next = b->head;
    w->key_pprev = &b->head;
    if (b->head != NULL)
        b->head->key_pprev = &w->key_next;
    b->head = w;
    /* deadlines mostly arrive in order: insert from the tail */
    ax_waiter_t *after = t->dl_tail;
    while (after != NULL && after->deadline_ms > w->deadline_ms)
        after = after->dl_prev;
    w->dl_prev = after;
    w->dl_next = after != NULL ? after->dl_next : t->dl_head;
    if (w->dl_next != NULL)
        w->dl_next->dl_prev = w;
    else
        t->dl_tail = w;
    if (after != NULL)
        after->dl_next = w;
    else
        t->dl_head = w;
    w->parked = true;
    atomic_fetch_add(&t->nwaiters, 1);
    if (!h2o_timeout_is_linked(&t->waiter_tick))
        h2o_timeout_link(t->loop, &t->ctx.hundred_ms_timeout, &t->waiter_tick);
}

bool ax_req_shutting_down(const ax_req_t *r)
{
    return r->thread->shutting_down;
}

static void on_notify(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    ax_thread_t *t = AX_CONTAINER_OF(receiver, ax_thread_t, notify_recv);
    while (!h2o_linklist_is_empty(messages)) {
        ax_notify_msg_t *m = AX_CONTAINER_OF(messages->next, ax_notify_msg_t, super.link);
        h2o_linklist_unlink(&m->super.link);
        for (size_t i = 0; i < m->n; ++i) {
            ax_wbucket_t *b = ax_strmap_get(&t->waiters, m->keys[i]);
            /* take the key's whole list first, then fire: a woken request that finds nothing new
             * parks again on the same key, at the head of its list, and must not be fired again
             * by this same news (that looped forever on a user with several long-polls).  No
             * request of the list goes away meanwhile: a reply's write errors surface on a later
             * loop turn, never inside another request's wake callback */
            ax_waiter_t *woken = NULL;
            while (b != NULL && b->head != NULL) {
                ax_waiter_t *w = b->head;
                bool last = w->key_next == NULL;
                waiter_unlink(w); /* frees the bucket when its list empties */
                w->woken_next = woken;
                woken = w;
                if (last)
                    break;
            }
            while (woken != NULL) {
                ax_waiter_t *w = woken;
                woken = w->woken_next;
                waiter_fire(w, false);
            }
            free(m->keys[i]);
        }
        free(m);
    }
}

void ax_http_notify(ax_server_t *srv, const ax_commit_info_t *info)
{
    if (info->nkeys == 0 || srv->threads == NULL)
        return;
    for (unsigned i = 0; i < srv->nthreads; ++i) {
        ax_thread_t *t = srv->threads[i];
        atomic_fetch_add(&t->notify_refs, 1);
        if (!atomic_load(&t->notify_closed) && atomic_load(&t->nwaiters) > 0) {
            ax_notify_msg_t *m = ax_malloc(sizeof(*m) + info->nkeys * sizeof(char *));
            memset(&m->super, 0, sizeof(m->super));
            m->n = info->nkeys;
            for (size_t k = 0; k < info->nkeys; ++k)
                m->keys[k] = ax_strdup(info->keys[k]);
            h2o_multithread_send_message(&t->notify_recv, &m->super);
        }
        atomic_fetch_sub(&t->notify_refs, 1);
    }
}

/* Wakes every parked request as timed out (shutdown). */
static void wake_all(ax_thread_t *t)
{
    while (t->dl_head != NULL)
        waiter_fire(t->dl_head, true);
}

/* ---- h2o's own early errors (413 before our handler runs, broken chunking)
 * pass through the host's fallback path; this filter turns their plain-text
 * bodies into Matrix JSON. ---- */

static void errjson_on_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t nbufs,
                            h2o_send_state_t state)
{
    AX_UNUSED(bufs);
    AX_UNUSED(nbufs);
    h2o_iovec_t body = ((ax_errjson_ostream_t *)self)->body;
    h2o_ostream_send_next(self, req, &body, 1, state);
}

static void errjson_on_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    AX_UNUSED(self);
    const char *code = req->res.status == 413 ? "M_TOO_LARGE" : "M_UNKNOWN";
    const char *msg = req->res.status == 413 ? "Request body too large" : "Bad request";
    ax_errjson_ostream_t *o = (ax_errjson_ostream_t *)h2o_add_ostream(req, sizeof(*o), slot);
    o->super.do_send = errjson_on_send;
    char *buf = h2o_mem_alloc_pool(&req->pool, 128);
    int n = snprintf(buf, 128, "{\"errcode\":\"%s\",\"error\":\"%s\"}", code, msg);
    o->body = h2o_iovec_init(buf, (size_t)n);
    req->res.content_length = (size_t)n;
    memset(&req->res.headers, 0, sizeof(req->res.headers));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    add_cors(req);
    slot = &o->super.next;
    h2o_setup_next_ostream(req, slot);
}

/* ---- Listeners ---- */

static int bind_one(const struct sockaddr *sa, socklen_t salen, bool reuseport, int *out)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, sa, salen) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    *out = fd;
    return 0;
}

static int bind_listeners(ax_server_t *srv, const ax_listenlist_t *list, bool tls, char *err, size_t errlen)
{
    ax_http_t *http = srv->http;
    const char *key = tls ? "tls_listen" : "listen";
    for (size_t i = 0; i < list->count; ++i) {
        const ax_listen_t *l = &list->items[i];
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *res = NULL;
        char port[8];
        snprintf(port, sizeof(port), "%u", l->port);
        int gai = getaddrinfo(l->host, port, &hints, &res);
        if (gai != 0) {
            snprintf(err, errlen, "%s: cannot resolve '%s': %s", key, l->host, gai_strerror(gai));
            return AX_EINVAL;
        }
        size_t bound = 0;
        for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
            char text[INET6_ADDRSTRLEN] = "?";
            sockaddr_to_text(ai->ai_addr, text, sizeof(text));
            /* probe without SO_REUSEPORT: fails if anyone (even another axon) holds the port */
            int probe = -1, rc = bind_one(ai->ai_addr, ai->ai_addrlen, false, &probe);
            if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
                if (ai != res || ai->ai_next != NULL) {
                    ax_log(AX_LOG_WARN, "%s: skipping %s: %s", key, text, strerror(-rc));
                    continue;
                }
            }
            if (rc != 0) {
                snprintf(err, errlen, "%s: cannot listen on %s port %u: %s", key, text, l->port, strerror(-rc));
                freeaddrinfo(res);
                return AX_EINVAL;
            }
            close(probe);
            ax_listener_spec_t *spec = &http->listeners[http->nlisteners++];
            spec->tls = tls;
            spec->fds = ax_malloc(srv->nthreads * sizeof(int));
            for (unsigned t = 0; t < srv->nthreads; ++t) {
                if ((rc = bind_one(ai->ai_addr, ai->ai_addrlen, true, &spec->fds[t])) != 0) {
                    snprintf(err, errlen, "%s: cannot listen on %s port %u: %s", key, text, l->port, strerror(-rc));
                    for (unsigned u = 0; u < t; ++u)
                        close(spec->fds[u]);
                    free(spec->fds);
                    http->nlisteners--;
                    freeaddrinfo(res);
                    return AX_EINVAL;
                }
            }
            snprintf(spec->name, sizeof(spec->name), "%s%s%s:%u", ai->ai_family == AF_INET6 ? "[" : "", text,
                     ai->ai_family == AF_INET6 ? "]" : "", l->port);
            ++bound;
        }
        freeaddrinfo(res);
        if (bound == 0) {
            snprintf(err, errlen, "%s: no usable address for %s", key, l->host);
            return AX_EINVAL;
        }
    }
    return 0;
}

static int setup_tls(ax_server_t *srv, char *err, size_t errlen)
{
    ax_http_t *http = srv->http;
    const ax_config_t *cfg = srv->cfg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "tls: cannot create context");
        return AX_EINVAL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_certificate) != 1) {
        snprintf(err, errlen, "tls_certificate: '%s' is not a usable PEM certificate: %s", cfg->tls_certificate,
                 ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return AX_EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_private_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls_private_key: '%s' is not a usable PEM key for the certificate: %s",
                 cfg->tls_private_key, ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return AX_EINVAL;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_alpn_protocols);
    http->ssl_ctx = ctx;
    return 0;
}

int ax_http_bind(ax_server_t *srv, char *err, size_t errlen)
{
    ax_http_t *http = ax_calloc(1, sizeof(*http));
    srv->http = http;
    const ax_config_t *cfg = srv->cfg;
    /* "localhost" may give two addresses; room for that per entry */
    http->listeners = ax_calloc((cfg->listen.count + cfg->tls_listen.count) * 2 + 1, sizeof(*http->listeners));
    if (cfg->tls_listen.count != 0 && setup_tls(srv, err, errlen) != 0)
        return AX_EINVAL;
    if (bind_listeners(srv, &cfg->listen, false, err, errlen) != 0 ||
        bind_listeners(srv, &cfg->tls_listen, true, err, errlen) != 0)
        return AX_EINVAL;
    return 0;
}

/* ---- Connections (tracked so shutdown can close idle keep-alive ones) ---- */

static void on_conn_close(void *data)
{
    ax_conn_t *c = data;
    ax_thread_t *t = c->thread;
    *c->pprev = c->next;
    if (c->next != NULL)
        c->next->pprev = c->pprev;
    t->nconns--;
    atomic_fetch_sub(&t->srv->connections, 1);
    free(c);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    ax_listener_t *l = listener->data;
    ax_thread_t *t = l->thread;
    if (err != NULL)
        return;
    for (int i = 0; i < ACCEPTS_PER_EVENT; ++i) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        h2o_socket_t *sock = h2o_evloop_socket_create(t->loop, fd, H2O_SOCKET_FLAG_IS_ACCEPTED_CONNECTION);
        ax_conn_t *c = ax_malloc(sizeof(*c));
        c->fd = fd;
        c->thread = t;
        c->next = t->conns;
        c->pprev = &t->conns;
        if (t->conns != NULL)
            t->conns->pprev = &c->next;
        t->conns = c;
        t->nconns++;
        atomic_fetch_add(&t->srv->connections, 1);
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = c;
        h2o_accept(l->tls ? &t->accept_tls : &t->accept_plain, sock);
    }
}

/* ---- Shutdown ---- */

static void shutdown_tick(h2o_timeout_entry_t *entry)
{
    ax_thread_t *t = AX_CONTAINER_OF(entry, ax_thread_t, shutdown_entry);
    uint64_t now = ax_mono_ns() / 1000000;
    if (t->inflight == 0 && t->streams == 0 && !t->conns_closed) {
        /* every request answered: close idle keep-alive connections; h2o sees EOF and frees them */
        for (ax_conn_t *c = t->conns; c != NULL; c = c->next)
            shutdown(c->fd, SHUT_RDWR);
        t->conns_closed = true;
    }
    bool drained = t->conns_closed && t->nconns == 0 && t->tasks_outstanding == 0;
    if (drained || now >= t->shutdown_deadline_ms) {
        if (!drained)
            ax_log(AX_LOG_WARN, "thread %u: %lld requests and %lld tasks still running after %d ms; stopping anyway",
                   t->index, (long long)t->inflight, (long long)t->tasks_outstanding, SHUTDOWN_GRACE_MS);
        t->clean = drained;
        t->exit_loop = true;
        return;
    }
    h2o_timeout_link(t->loop, &t->ctx.hundred_ms_timeout, &t->shutdown_entry);
}

static void on_control(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    ax_thread_t *t = AX_CONTAINER_OF(receiver, ax_thread_t, control);
    while (!h2o_linklist_is_empty(messages))
        h2o_linklist_unlink(messages->next);
    if (t->shutting_down)
        return;
    t->shutting_down = true;
    for (size_t i = 0; i < t->nlisteners; ++i) {
        h2o_socket_read_stop(t->listeners[i].sock);
        h2o_socket_close(t->listeners[i].sock);
        t->listeners[i].sock = NULL;
    }
    h2o_context_request_shutdown(&t->ctx);
    wake_all(t); /* long-polls answer now, with what they have */
    t->shutdown_deadline_ms = ax_mono_ns() / 1000000 + SHUTDOWN_GRACE_MS;
    t->shutdown_entry.cb = shutdown_tick;
    shutdown_tick(&t->shutdown_entry);
}

/* ---- Threads ---- */

/* Frees the thread's loop and context on the thread itself, so h2o's
 * per-thread caches can be drained too.  Only when nothing can reach the
 * loop any more: no connection, no task in the writer or workers. */
static void thread_dispose_loop(ax_thread_t *t)
{
    /* no more news for this thread: wait out any writer inside ax_http_notify, then drain */
    atomic_store(&t->notify_closed, true);
    while (atomic_load(&t->notify_refs) != 0)
        sched_yield();
    h2o_evloop_run(t->loop, 0);
    h2o_multithread_unregister_receiver(t->ctx.queue, &t->notify_recv);
    if (h2o_timeout_is_linked(&t->waiter_tick))
        h2o_timeout_unlink(&t->waiter_tick);
    if (h2o_timeout_is_linked(&t->tick_entry))
        h2o_timeout_unlink(&t->tick_entry);
    ax_strmap_dispose(&t->waiters);
    if (h2o_timeout_is_linked(&t->log_flush_entry))
        h2o_timeout_unlink(&t->log_flush_entry);
    h2o_timeout_dispose(t->loop, &t->log_flush_timeout);
    h2o_multithread_unregister_receiver(t->ctx.queue, &t->control);
    ax_hport_dispose(&t->port, t->ctx.queue);
    for (size_t i = 0; i < t->nlisteners; ++i)
        if (t->listeners[i].sock != NULL)
            h2o_socket_close(t->listeners[i].sock), t->listeners[i].sock = NULL;
    h2o_evloop_run(t->loop, 0); /* let closed sockets be freed */
    /* h2o's http2 graceful shutdown arms a one-second timer that may not have fired */
    if (h2o_timeout_is_linked(&t->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&t->ctx.http2._graceful_shutdown_timeout);
    h2o_multithread_queue_t *queue = t->ctx.queue;
    h2o_context_dispose(&t->ctx);
    free(queue); /* libh2o 2.2.5 (evloop) closes the queue but never frees it */
    h2o_evloop_destroy(t->loop);
    t->loop = NULL;
    /* return the socket buffers h2o keeps per thread */
    h2o_mem_recycle_t *rc = &h2o_socket_buffer_prototype.allocator;
    while (rc->cnt != 0)
        free(h2o_mem_alloc_recycle(rc, 0));
}

static void on_one_second(h2o_timeout_entry_t *entry)
{
    ax_thread_t *t = AX_CONTAINER_OF(entry, ax_thread_t, tick_entry);
    if (t->srv->on_tick != NULL)
        t->srv->on_tick(t->srv);
    if (!t->shutting_down)
        h2o_timeout_link(t->loop, &t->ctx.one_sec_timeout, &t->tick_entry);
}

static void thread_init_loop(ax_thread_t *t);

#define EVENT_CACHE_SLOTS 256 /* parsed events kept per HTTP thread (about 1 MB) */

static void *thread_main(void *arg)
{
    ax_thread_t *t = arg;
    /* the loop, its context (with the queue's wake-up socket) and the listeners are made here,
     * on their own thread: h2o 2.2.5 gives every socket the calling thread's buffer allocator
     * (__thread h2o_socket_buffer_prototype), which is not safe to share between threads */
    thread_init_loop(t);
    /* the /sync answers one commit wakes all load its new events: parse each once per thread */
    ax_db_event_cache_init(EVENT_CACHE_SLOTS);
    ax_http_t *http = t->srv->http;
    pthread_mutex_lock(&http->ready_mutex);
    http->ready++;
    pthread_cond_broadcast(&http->ready_cond);
    pthread_mutex_unlock(&http->ready_mutex);
    if (t->index == 0) {
        t->tick_entry.cb = on_one_second;
        h2o_timeout_link(t->loop, &t->ctx.one_sec_timeout, &t->tick_entry);
    }
    while (!t->exit_loop)
        h2o_evloop_run(t->loop, INT32_MAX);
    flush_access_log(t);
    if (t->clean)
        thread_dispose_loop(t);
    ax_db_event_cache_free();
    ax_cs_sync_thread_free();
    return NULL;
}

static ax_thread_t *thread_new(ax_server_t *srv, unsigned index)
{
    ax_thread_t *t = ax_calloc(1, sizeof(*t));
    t->srv = srv;
    t->index = index;
    /* here, not on the thread: /metrics on a thread that started first reads every thread's counters */
    t->metrics = ax_calloc(ax_routes_count + 1, sizeof(ax_route_metrics_t));
    return t;
}

static void thread_init_loop(ax_thread_t *t)
{
    ax_http_t *http = t->srv->http;
    unsigned index = t->index;
    t->loop = h2o_evloop_create();
    h2o_context_init(&t->ctx, t->loop, &http->globalconf);
    t->accept_plain.ctx = &t->ctx;
    t->accept_plain.hosts = http->globalconf.hosts;
    t->accept_tls = t->accept_plain;
    t->accept_tls.ssl_ctx = http->ssl_ctx;
    ax_hport_init(&t->port, t->ctx.queue);
    h2o_multithread_register_receiver(t->ctx.queue, &t->control, on_control);
    h2o_multithread_register_receiver(t->ctx.queue, &t->notify_recv, on_notify);
    t->waiter_tick.cb = on_waiter_tick;
    h2o_timeout_init(t->loop, &t->log_flush_timeout, LOG_FLUSH_MS);
    t->log_flush_entry.cb = on_log_flush_timeout;

    t->nlisteners = http->nlisteners;
    t->listeners = ax_calloc(t->nlisteners, sizeof(*t->listeners));
    for (size_t i = 0; i < http->nlisteners; ++i) {
        ax_listener_t *l = &t->listeners[i];
        l->fd = http->listeners[i].fds[index];
        l->tls = http->listeners[i].tls;
        l->thread = t;
        l->sock = h2o_evloop_socket_create(t->loop, l->fd, H2O_SOCKET_FLAG_DONT_READ);
        l->sock->data = l;
        h2o_socket_read_start(l->sock, on_accept);
    }
}

static void thread_free(ax_thread_t *t)
{
    /* a thread stopped by the deadline keeps its loop: requests or tasks may
     * still point into it, and the process is about to exit */
    if (t->loop != NULL)
        return;
    free(t->listeners);
    free(t->metrics);
    ax_buf_dispose(&t->scratch);
    free(t);
}

ax_route_metrics_t *ax_thread_metrics(ax_thread_t *t, size_t route_index)
{
    return &t->metrics[route_index];
}

static void setup_globalconf(ax_server_t *srv)
{
    ax_http_t *http = srv->http;
    h2o_config_init(&http->globalconf);
    http->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("axon"));
    uint64_t limit =
        srv->cfg->max_request_size > srv->cfg->max_upload_size ? srv->cfg->max_request_size : srv->cfg->max_upload_size;
    http->globalconf.max_request_entity_size = (size_t)limit;
    /* long-polls (/sync?timeout=30000) must outlive h2o's idle timers */
    http->globalconf.http1.req_timeout = 120 * 1000;
    http->globalconf.http2.idle_timeout = 120 * 1000;
    h2o_hostconf_t *host = h2o_config_register_host(&http->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    ax_handler_glue_t *glue = (ax_handler_glue_t *)h2o_create_handler(path, sizeof(*glue));
    glue->super.on_req = on_req;
    glue->srv = srv;
    h2o_filter_t *f = h2o_create_filter(&host->fallback_path, sizeof(*f));
    f->on_setup_ostream = errjson_on_setup;
}

int ax_http_run(ax_server_t *srv)
{
    ax_http_t *http = srv->http;
    setup_globalconf(srv);
    /* every struct exists before the array is published: the writer's commit hook reads it */
    ax_thread_t **threads = ax_calloc(srv->nthreads, sizeof(*threads));
    for (unsigned i = 0; i < srv->nthreads; ++i)
        threads[i] = thread_new(srv, i);
    srv->threads = threads;
    http->fds_taken = true;

    /* signals are handled here with sigwait; every other thread has them blocked */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    pthread_mutex_init(&http->ready_mutex, NULL);
    pthread_cond_init(&http->ready_cond, NULL);
    for (unsigned i = 0; i < srv->nthreads; ++i)
        if (pthread_create(&srv->threads[i]->tid, NULL, thread_main, srv->threads[i]) != 0)
            ax_fatal("cannot start HTTP thread");
    /* nothing may post to a thread's receivers before it registered them */
    pthread_mutex_lock(&http->ready_mutex);
    while (http->ready < srv->nthreads)
        pthread_cond_wait(&http->ready_cond, &http->ready_mutex);
    pthread_mutex_unlock(&http->ready_mutex);

    for (size_t i = 0; i < http->nlisteners; ++i)
        ax_log(AX_LOG_INFO, "listening on %s%s", http->listeners[i].tls ? "https://" : "http://",
               http->listeners[i].name);
    ax_log(AX_LOG_INFO, "axon %s serving %s with %u threads", AX_VERSION, srv->cfg->server_name, srv->nthreads);

    int sig = 0;
    sigwait(&set, &sig);
    ax_log(AX_LOG_INFO, "received %s, shutting down gracefully", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    if (srv->on_stopping != NULL)
        srv->on_stopping(srv);
    for (unsigned i = 0; i < srv->nthreads; ++i)
        h2o_multithread_send_message(&srv->threads[i]->control, &srv->threads[i]->control_msg);
    for (unsigned i = 0; i < srv->nthreads; ++i)
        pthread_join(srv->threads[i]->tid, NULL);
    return 0;
}

void ax_http_dispose(ax_server_t *srv)
{
    ax_http_t *http = srv->http;
    if (http == NULL)
        return;
    if (srv->threads != NULL) {
        pthread_mutex_destroy(&http->ready_mutex);
        pthread_cond_destroy(&http->ready_cond);
    }
    for (unsigned i = 0; srv->threads != NULL && i < srv->nthreads; ++i)
        if (srv->threads[i] != NULL)
            thread_free(srv->threads[i]);
    free(srv->threads);
    srv->threads = NULL;
    for (size_t i = 0; i < http->nlisteners; ++i) {
        if (!http->fds_taken) /* never handed to threads */
            for (unsigned t = 0; t < srv->nthreads; ++t)
                close(http->listeners[i].fds[t]);
        free(http->listeners[i].fds);
    }
    free(http->listeners);
    if (http->globalconf.hosts != NULL)
        h2o_config_dispose(&http->globalconf);
    if (http->ssl_ctx != NULL)
        SSL_CTX_free(http->ssl_ctx);
    free(http);
    srv->http = NULL;
}
