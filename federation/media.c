/*
 * media.c -- the content repository between servers (spec: Server-Server
 * API "Content Repository"; content_repository.yaml):
 *
 *  - serving our media to other servers: GET /_matrix/federation/v1/media/
 *    download/{mediaId} and /thumbnail/{mediaId}, multipart/mixed with the
 *    file streamed, through server/cs/media.c (ax_cs_media_serve_federation)
 *    so both APIs check, type and stream media the same way;
 *  - fetching other servers' media for our clients: ax_fed_media_fetch(),
 *    the hook server/cs/media.c calls for an mxc:// of another server that
 *    is not cached yet.  It asks the media's server on the federation path,
 *    falls back to the deprecated /_matrix/media/v3/download path (with
 *    allow_remote=false) when that server answers 404 M_UNRECOGNIZED,
 *    follows a Location part with a plain HTTPS GET, keeps at most
 *    max_upload_size bytes, stores the content on a worker (content
 *    addressed, so a file fetched twice or also uploaded here is kept once)
 *    and records it under "server/mediaId" through the writer, after which
 *    every download is served from the cache;
 *  - multipart/mixed parsing (ax_multipart_*), which the unit tests cover.
 *
 * A fetch is a chain of steps bound to the client's request: the
 * federation request (and maybe the legacy one, or the redirect), a worker
 * that parses, hashes and stores, the writer that records.  Each step's
 * continuation owns the state; if the client goes away, the chain stops
 * and frees it.
 */
#include "server/handlers.h"
#include "federation/federation.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FETCH_TIMEOUT_MS  60000       /* one remote download */
#define MULTIPART_SLACK   (64u << 10) /* the metadata part and the part headers, beyond the content */
#define MAX_CONTENT_TYPE  255
#define MAX_FILENAME      255
#define MAX_MULTIPART_HDR 8192

/* ---- serving ---- */

/* GET /_matrix/federation/v1/media/download/{mediaId} */
int ax_fed_media_download(ax_req_t *r)
{
    return ax_cs_media_serve_federation(r, r->params[0], false);
}

/* GET /_matrix/federation/v1/media/thumbnail/{mediaId} */
int ax_fed_media_thumbnail(ax_req_t *r)
{
    return ax_cs_media_serve_federation(r, r->params[0], true);
}

/* ---- multipart/mixed ---- */

/* The value of parameter 'name' of a header value like 'multipart/mixed; boundary="x"', unquoted. */
static int header_param(const char *value, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = strchr(value, ';');
    while (p != NULL) {
        ++p;
        while (*p == ' ' || *p == '\t')
            ++p;
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t n = 0;
            if (*v == '"') {
                for (++v; *v != '\0' && *v != '"'; ++v) {
                    if (*v == '\\' && v[1] != '\0')
                        ++v;
                    if (n + 1 >= cap)
                        return AX_EINVAL;
                    out[n++] = *v;
                }
                if (*v != '"')
                    return AX_EINVAL;
            } else {
                for (; *v != '\0' && *v != ';' && *v != ' ' && *v != '\t'; ++v) {
                    if (n + 1 >= cap)
                        return AX_EINVAL;
                    out[n++] = *v;
                }
            }
            out[n] = '\0';
            return n != 0 ? 0 : AX_EINVAL;
        }
        p = strchr(p, ';');
    }
    return AX_ENOTFOUND;
}

int ax_multipart_boundary(const char *content_type, char *out, size_t cap)
{
    static const char mixed[] = "multipart/mixed";
    if (content_type == NULL)
        return AX_EINVAL;
    while (*content_type == ' ')
        ++content_type;
    if (strncasecmp(content_type, mixed, sizeof(mixed) - 1) != 0 ||
        (content_type[sizeof(mixed) - 1] != ';' && content_type[sizeof(mixed) - 1] != ' '))
        return AX_EINVAL;
    /* RFC 2046: 1 to 70 characters */
    if (header_param(content_type, "boundary", out, cap) != 0 || strlen(out) > 70)
        return AX_EINVAL;
    return 0;
}

/* The first "--boundary" at 'p' (line start) or after a CRLF, within [p, end); NULL when none. */
static const char *find_delimiter(const char *p, const char *end, const char *dash, size_t dlen, bool at_start)
{
    if (at_start && (size_t)(end - p) >= dlen && memcmp(p, dash, dlen) == 0)
        return p;
    const char *s = p;
    while (s < end) {
        const char *hit = memmem(s, (size_t)(end - s), dash, dlen);
        if (hit == NULL)
            return NULL;
        if (hit - p >= 2 && hit[-2] == '\r' && hit[-1] == '\n')
            return hit;
        s = hit + 1;
    }
    return NULL;
}

int ax_multipart_split(const char *data, size_t len, const char *boundary, ax_mime_part_t *parts, size_t max, size_t *n)
{
    char dash[80];
    size_t dlen = (size_t)snprintf(dash, sizeof(dash), "--%s", boundary);
    if (boundary[0] == '\0' || dlen >= sizeof(dash))
        return AX_EINVAL;
    const char *end = data + len;
    *n = 0;
    /* the preamble, then the first delimiter */
    const char *d = find_delimiter(data, end, dash, dlen, true);
    if (d == NULL)
        return AX_EINVAL;
    for (;;) {
        const char *p = d + dlen;
        if ((size_t)(end - p) >= 2 && p[0] == '-' && p[1] == '-')
            return *n != 0 ? 0 : AX_EINVAL; /* the close delimiter */
        /* transport padding, then the line break */
        while (p < end && (*p == ' ' || *p == '\t'))
            ++p;
        if ((size_t)(end - p) < 2 || p[0] != '\r' || p[1] != '\n')
            return AX_EINVAL;
        p += 2;
        /* the part's headers end at an empty line (or the part starts with one: no headers) */
        const char *hdr_end;
        const char *body;
        if ((size_t)(end - p) >= 2 && p[0] == '\r' && p[1] == '\n') {
            hdr_end = p;
            body = p + 2;
        } else {
            hdr_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
            if (hdr_end == NULL || hdr_end - p > MAX_MULTIPART_HDR)
                return AX_EINVAL;
            body = hdr_end + 4;
            hdr_end += 2; /* keep the last header's CRLF */
        }
        const char *next = find_delimiter(body, end, dash, dlen, false);
        if (next == NULL)
            return AX_EINVAL; /* no closing delimiter: cut short */
        if (*n >= max)
            return AX_ETOOBIG;
        parts[*n].headers = p;
        parts[*n].headers_len = (size_t)(hdr_end - p);
        parts[*n].body = body;
        parts[*n].body_len = (size_t)(next - 2 - body);
        (*n)++;
        d = next;
    }
}

bool ax_multipart_header(const ax_mime_part_t *part, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = part->headers, *end = part->headers + part->headers_len;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                ++v;
            const char *ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                --ve;
            if ((size_t)(ve - v) >= cap)
                return false;
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return true;
        }
        p = eol + 2;
    }
    return false;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int ax_content_disposition_filename(const char *value, char *out, size_t cap)
{
    char raw[1024];
    /* RFC 6266: filename* (UTF-8''percent-encoded) wins over filename */
    if (value != NULL && header_param(value, "filename*", raw, sizeof(raw)) == 0 &&
        strncasecmp(raw, "UTF-8''", 7) == 0) {
        size_t n = 0;
        for (const char *p = raw + 7; *p != '\0'; ++p) {
            int c = (unsigned char)*p;
            if (*p == '%') {
                int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;
                if (lo < 0)
                    return AX_EINVAL;
                c = hi * 16 + lo;
                p += 2;
            }
            if (n + 1 >= cap)
                return AX_EINVAL;
            out[n++] = (char)c;
        }
        out[n] = '\0';
        return n != 0 ? 0 : AX_EINVAL;
    }
    if (value != NULL && header_param(value, "filename", out, cap) == 0)
        return 0;
    return AX_ENOTFOUND;
}

/* ---- fetching ---- */

enum { STEP_FEDERATION, STEP_LEGACY, STEP_LOCATION };

typedef struct st_mfetch_t {
    ax_task_t super; /* bound to the client's request; completes when 'fr' did */
    ax_server_t *srv;
    void (*done)(ax_req_t *r, int result);
    int step;
    ax_fed_request_t *fr;
    char server[256], media_id[256];
    /* the answer, for the worker */
    char *body;
    size_t body_len;
    char *content_type; /* of the whole answer */
    char *disposition;
    char *location;      /* out: the worker found a Location part */
    const char *content; /* the media's bytes, inside 'body' */
    size_t content_len;
    char media_type[MAX_CONTENT_TYPE + 1];
    char filename[MAX_FILENAME + 1];
    uint8_t sha[AX_MEDIA_SHA_BYTES];
    bool passed_on; /* the next step owns it: the current step's release keeps it */
    bool finished;  /* 'done' ran */
} mfetch_t;

static void mfetch_free(mfetch_t *m)
{
    if (!m->finished)
        m->done(NULL, AX_ECANCELED); /* the client went away: 'done' still runs once */
    ax_fed_request_free(m->fr);
    free(m->body);
    free(m->content_type);
    free(m->disposition);
    free(m->location);
    free(m);
}

static void mfetch_release(void *p)
{
    mfetch_t *m = p;
    if (m->passed_on) {
        m->passed_on = false;
        return;
    }
    mfetch_free(m);
}

/* The request completed: hand the fetch back to the client's thread. */
static void request_done(ax_task_t *task)
{
    mfetch_t *m = ((ax_fed_request_t *)task)->super.owner;
    m->super.result = 0;
    m->super._next = NULL;
    m->super.port->post(m->super.port, &m->super);
}

static void on_answer(ax_req_t *r, ax_task_t *task);

/* Sends 'fr' (stolen) for 'm', continuing with on_answer. */
static void send_step(ax_req_t *r, mfetch_t *m, int step, ax_fed_request_t *fr)
{
    ax_fed_request_free(m->fr);
    m->fr = fr;
    m->step = step;
    fr->max_response = (size_t)m->srv->cfg->max_upload_size + MULTIPART_SLACK;
    fr->timeout_ms = FETCH_TIMEOUT_MS;
    ax_req_bind_task(r, &m->super, on_answer);
    fr->super.port = m->super.port;
    fr->super.done = request_done;
    fr->super.owner = m;
    ax_fed_submit(m->srv->fed, fr);
}

/* Ends the fetch with 'result' for media.c (which then serves from the cache, or answers the error). */
static void finish(ax_req_t *r, mfetch_t *m, int result)
{
    if (result != 0 && result != AX_ENOTFOUND)
        ax_log(AX_LOG_INFO, "media: fetching mxc://%s/%s failed: %s%s%s", m->server, m->media_id, ax_strerror(result),
               m->fr != NULL && m->fr->error[0] ? ": " : "", m->fr != NULL ? m->fr->error : "");
    m->finished = true;
    m->done(r, result);
}

/* A declared media type we keep: printable ASCII, type/subtype, not too long; else octet-stream. */
static void keep_type(char *out, const char *ct)
{
    bool ok = ct != NULL && strlen(ct) <= MAX_CONTENT_TYPE && strchr(ct, '/') != NULL;
    for (const char *p = ct; ok && *p; ++p)
        ok = (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
    snprintf(out, MAX_CONTENT_TYPE + 1, "%s", ok ? ct : "application/octet-stream");
}

/* A file name we keep: valid UTF-8 without control characters; else none. */
static void keep_filename(char *out, const char *disposition)
{
    char name[MAX_FILENAME + 1];
    out[0] = '\0';
    if (ax_content_disposition_filename(disposition, name, sizeof(name)) != 0)
        return;
    for (const unsigned char *p = (const unsigned char *)name; *p; ++p)
        if (*p < 0x20 || *p == 0x7f)
            return;
    json_t *probe = json_string(name); /* jansson checks UTF-8 */
    if (probe != NULL)
        snprintf(out, MAX_FILENAME + 1, "%s", name);
    json_decref(probe);
}

#define FOUND_LOCATION 1 /* the worker's answer: the content is elsewhere (m->location) */

/* Worker: find the content in the answer, check it, hash it and put it in the store. */
static int store_run(void *data)
{
    mfetch_t *m = data;
    if (m->step == STEP_FEDERATION) {
        char boundary[80], value[1024];
        ax_mime_part_t parts[2];
        size_t n;
        if (ax_multipart_boundary(m->content_type, boundary, sizeof(boundary)) != 0 ||
            ax_multipart_split(m->body, m->body_len, boundary, parts, 2, &n) != 0 || n != 2)
            return AX_EUNREACHABLE;
        /* the first part: the metadata, a JSON object */
        if (!ax_multipart_header(&parts[0], "content-type", value, sizeof(value)) ||
            strncasecmp(value, "application/json", 16) != 0)
            return AX_EUNREACHABLE;
        json_t *meta = json_loadb(parts[0].body, parts[0].body_len, 0, NULL);
        bool ok = json_is_object(meta);
        json_decref(meta);
        if (!ok)
            return AX_EUNREACHABLE;
        /* the second: the bytes, or where to get them */
        if (ax_multipart_header(&parts[1], "location", value, sizeof(value))) {
            m->location = ax_strdup(value);
            return FOUND_LOCATION;
        }
        keep_type(m->media_type, ax_multipart_header(&parts[1], "content-type", value, sizeof(value)) ? value : NULL);
        keep_filename(m->filename,
                      ax_multipart_header(&parts[1], "content-disposition", value, sizeof(value)) ? value : NULL);
        m->content = parts[1].body;
        m->content_len = parts[1].body_len;
    } else {
        keep_type(m->media_type, m->content_type);
        keep_filename(m->filename, m->disposition);
        m->content = m->body;
        m->content_len = m->body_len;
    }
    if (m->content_len > m->srv->cfg->max_upload_size)
        return AX_ETOOBIG;
    return ax_media_store_put(&m->srv->media.store, m->content, m->content_len, m->sha);
}

/* Writer: the cache record, "server/mediaId" -> the content we stored. */
static int record_apply(ax_txn_t *txn, void *data)
{
    mfetch_t *m = data;
    char hex[AX_MEDIA_SHA_HEX];
    ax_media_hex(m->sha, hex);
    /* the store and the records change together only under the write lock (see server/cs/media.c) */
    if (!ax_media_store_has(&m->srv->media.store, hex))
        return AX_ECONFLICT;
    char key[520];
    snprintf(key, sizeof(key), "%s/%s", m->server, m->media_id);
    json_t *rec =
        json_pack("{s:s, s:I, s:s, s:I, s:s, s:b}", "uploader", m->server, "created_ts", (json_int_t)ax_now_ms(),
                  "sha256", hex, "size", (json_int_t)m->content_len, "content_type", m->media_type, "remote", 1);
    if (m->filename[0] != '\0')
        json_object_set_new(rec, "filename", json_string(m->filename));
    int rc = ax_db_media_put(txn, key, rec);
    json_decref(rec);
    return rc == AX_EEXIST ? 0 : rc; /* fetched meanwhile for another client: the same content */
}

static void recorded(ax_req_t *r, int result, void *data)
{
    finish(r, data, result);
}

static void stored(ax_req_t *r, int result, void *data)
{
    mfetch_t *m = data;
    if (result == FOUND_LOCATION) {
        ax_fed_request_t *fr = ax_fed_request_new_url(m->location);
        if (fr == NULL)
            return finish(r, m, AX_EUNREACHABLE);
        free(m->body);
        m->body = NULL;
        m->passed_on = true;
        send_step(r, m, STEP_LOCATION, fr);
        return;
    }
    if (result != 0)
        return finish(r, m, result);
    free(m->body); /* the worker has stored it */
    m->body = NULL;
    m->passed_on = true;
    ax_req_write(r, record_apply, recorded, m, mfetch_release);
}

/* The errcode of an error answer, or "". */
static const char *errcode_of(const ax_fed_request_t *fr)
{
    const char *e = json_string_value(json_object_get(fr->json, "errcode"));
    return e != NULL ? e : "";
}

static void on_answer(ax_req_t *r, ax_task_t *task)
{
    mfetch_t *m = (mfetch_t *)task;
    if (r == NULL) {
        mfetch_free(m); /* the client went away: nobody waits for the media */
        return;
    }
    ax_fed_request_t *fr = m->fr;
    int rc = 0;
    if (fr->super.result != 0) {
        rc = fr->super.result == AX_ETOOBIG ? AX_ETOOBIG : AX_EUNREACHABLE;
    } else if (m->step == STEP_FEDERATION && ax_streq(errcode_of(fr), "M_UNRECOGNIZED") &&
               (fr->status == 404 || fr->status == 405 || fr->status == 400)) {
        /* a server without the federation media endpoints: the deprecated path, telling it not to
         * fetch from anywhere else ("When falling back, servers MUST be sure to set allow_remote
         * to false") */
        ax_buf_t path = AX_BUF_INIT;
        ax_buf_puts(&path, "/_matrix/media/v3/download/");
        ax_fed_urlencode(&path, m->server);
        ax_buf_putc(&path, '/');
        ax_fed_urlencode(&path, m->media_id);
        ax_buf_puts(&path, "?allow_remote=false");
        send_step(r, m, STEP_LEGACY, ax_fed_request_new(m->server, "GET", path.base, NULL));
        ax_buf_dispose(&path);
        return;
    } else if (fr->status == 404) {
        rc = AX_ENOTFOUND;
    } else if (ax_streq(errcode_of(fr), "M_TOO_LARGE")) {
        rc = AX_ETOOBIG;
    } else if (fr->status != 200) {
        rc = AX_EUNREACHABLE;
    }
    if (rc != 0) {
        if (fr->error[0] == '\0')
            snprintf(fr->error, sizeof(fr->error), "HTTP %d %s", fr->status, errcode_of(fr));
        finish(r, m, rc);
        mfetch_free(m);
        return;
    }
    m->body = fr->body_raw;
    m->body_len = fr->body_len;
    fr->body_raw = NULL;
    free(m->content_type);
    free(m->disposition);
    m->content_type = fr->content_type != NULL ? ax_strdup(fr->content_type) : NULL;
    m->disposition = fr->content_disposition != NULL ? ax_strdup(fr->content_disposition) : NULL;
    ax_req_work(r, store_run, stored, m, mfetch_release);
}

void ax_fed_media_fetch(ax_req_t *r, const char *server_name, const char *media_id,
                        void (*done)(ax_req_t *r, int result))
{
    if (r->srv->fed == NULL || strlen(server_name) >= 256 || strlen(media_id) >= 256) {
        done(r, AX_EUNREACHABLE);
        return;
    }
    mfetch_t *m = ax_calloc(1, sizeof(*m));
    m->srv = r->srv;
    m->done = done;
    snprintf(m->server, sizeof(m->server), "%s", server_name);
    snprintf(m->media_id, sizeof(m->media_id), "%s", media_id);
    ax_buf_t path = AX_BUF_INIT;
    ax_buf_puts(&path, "/_matrix/federation/v1/media/download/");
    ax_fed_urlencode(&path, media_id);
    ax_buf_puts(&path, "?timeout_ms=20000");
    send_step(r, m, STEP_FEDERATION, ax_fed_request_new(server_name, "GET", path.base, NULL));
    ax_buf_dispose(&path);
}
