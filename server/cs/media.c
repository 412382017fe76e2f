/*
 * media.c -- the content repository (Client-Server API "Content
 * repository"): uploads (direct, and asynchronous through /create), the
 * authenticated downloads and thumbnails under /_matrix/client/v1/media,
 * their deprecated unauthenticated twins under /_matrix/media/v3 (config
 * switch media_legacy_unauthenticated), /config and /preview_url.
 *
 * An upload's life: the handler copies the body (h2o buffered all of it
 * before we ran) to the heap; a worker hashes it and writes the file into
 * the content-addressed store (core/media.c: temporary file, fsync,
 * rename); the writer then commits the record, checking inside its
 * transaction that the file is still there; only then does the client get
 * its mxc:// URI.  Downloads stream the file from disk (ax_reply_file).
 *
 * Serving is defensive (spec "Serving inline content"): the type an
 * uploader declared is served as is only when it cannot script a page;
 * inline disposition only for the spec's list of safe types; a sandboxing
 * Content-Security-Policy and nosniff on every byte we serve.
 */
#include "server/cs/cs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEDIA_ID_LEN         24
#define DEFAULT_WAIT_MS      20000 /* spec: timeout_ms defaults to 20 s */
#define MAX_WAIT_MS          60000 /* "The content repository SHOULD impose a maximum value" */
#define MAX_THUMB_SIDE       10000
#define UPLOAD_TRIES         3
#define SWEEP_EVERY_MS       10000
#define SWEEP_BATCH          256
#define MAX_CONTENT_TYPE_LEN 255
#define MAX_FILENAME_LEN     255

/* ---- Content types and dispositions ---- */

/* spec "Serving inline content": the types a browser can show but not script */
static const char *const inline_types[] = {
    "text/css",   "text/plain",   "text/csv",        "application/json", "application/ld+json", "image/jpeg",
    "image/gif",  "image/png",    "image/apng",      "image/webp",       "image/avif",          "video/mp4",
    "video/webm", "video/ogg",    "video/quicktime", "audio/mp4",        "audio/webm",          "audio/aac",
    "audio/mpeg", "audio/ogg",    "audio/wave",      "audio/wav",        "audio/x-wav",         "audio/x-pn-wav",
    "audio/flac", "audio/x-flac",
};

/* Copies the media type of 'ct' (before any parameter), lower-cased and trimmed, into 'out'. */
static void base_type(const char *ct, char *out, size_t cap)
{
    size_t n = 0;
    while (*ct == ' ' || *ct == '\t')
        ++ct;
    for (; *ct != '\0' && *ct != ';' && *ct != ' ' && *ct != '\t' && n + 1 < cap; ++ct)
        out[n++] = (char)(*ct >= 'A' && *ct <= 'Z' ? *ct - 'A' + 'a' : *ct);
    out[n] = '\0';
}

static bool is_inline_type(const char *ct)
{
    char base[128];
    base_type(ct, base, sizeof(base));
    for (size_t i = 0; i < AX_ARRAY_SIZE(inline_types); ++i)
        if (strcmp(base, inline_types[i]) == 0)
            return true;
    return false;
}

/* Types a browser may run as a document or script: never served under their own name. */
static bool is_scriptable_type(const char *ct)
{
    char base[128];
    base_type(ct, base, sizeof(base));
    static const char *const words[] = {"html", "xml", "script", "svg", "xsl", "x-shockwave-flash", "multipart"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(words); ++i)
        if (strstr(base, words[i]) != NULL)
            return true;
    return strchr(base, '/') == NULL; /* not a type at all */
}

/* The images a thumbnail request may be answered with as they are. */
static bool is_thumbnail_type(const char *ct)
{
    char base[128];
    base_type(ct, base, sizeof(base));
    return ax_streq(base, "image/jpeg") || ax_streq(base, "image/png") || ax_streq(base, "image/gif") ||
           ax_streq(base, "image/webp") || ax_streq(base, "image/apng");
}

/* A declared Content-Type we keep: printable ASCII, a type/subtype, not too long. */
static bool valid_content_type(const char *ct)
{
    size_t n = strlen(ct);
    if (n == 0 || n > MAX_CONTENT_TYPE_LEN || strchr(ct, '/') == NULL)
        return false;
    for (const char *p = ct; *p; ++p)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return true;
}

/* Whether 's' is valid UTF-8 without control characters (a file name we store and echo). */
static bool valid_filename(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_FILENAME_LEN)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; ++p)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    json_t *probe = json_string(s); /* jansson checks UTF-8 */
    bool ok = probe != NULL;
    json_decref(probe);
    return ok;
}

/*
 * Content-Disposition (RFC 6266): 'kind' ("inline"/"attachment") and, when
 * 'name' is not NULL, an ASCII fallback filename="..." plus the exact name
 * as filename*=UTF-8''percent-encoded.
 */
static const char *disposition(ax_req_t *r, const char *kind, const char *name)
{
    if (name == NULL)
        return kind;
    ax_buf_t b = AX_BUF_INIT;
    ax_buf_printf(&b, "%s; filename=\"", kind);
    for (const unsigned char *p = (const unsigned char *)name; *p; ++p)
        ax_buf_putc(&b, (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\') ? '_' : (char)*p);
    ax_buf_puts(&b, "\"; filename*=UTF-8''");
    static const char attr_chars[] = "!#$&+-.^_`|~";
    for (const unsigned char *p = (const unsigned char *)name; *p; ++p) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr(attr_chars, *p) != NULL)
            ax_buf_putc(&b, (char)*p);
        else
            ax_buf_printf(&b, "%%%02X", *p);
    }
    const char *out = ax_pstrdup(r, b.base);
    ax_buf_dispose(&b);
    return out;
}

/* What every media reply carries (spec "Content repository"). */
static void security_headers(ax_req_t *r)
{
    ax_reply_header(r, "content-security-policy",
                    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
                    "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';");
    ax_reply_header(r, "x-content-type-options", "nosniff");
    ax_reply_header(r, "cross-origin-resource-policy", "cross-origin");
}

/* ---- Identifiers ---- */

/* spec "Security considerations": media IDs are [A-Za-z0-9_-] only */
static bool valid_media_id(const char *id)
{
    size_t n = 0;
    for (; id[n] != '\0'; ++n) {
        char c = id[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return n > 0 && n <= 255;
}

/* A server name as the grammar allows (host, IPv4, [IPv6], optional port); never a path. */
static bool valid_server_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return false;
    for (const char *p = s; *p; ++p)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '-' || *p == ':' || *p == '[' || *p == ']'))
            return false;
    return true;
}

/* The database key of a media ID: the ID itself for ours, "server/id" for another server's (cached). */
static const char *media_key(ax_req_t *r, const char *server_name, const char *media_id)
{
    if (ax_streq(server_name, r->srv->cfg->server_name))
        return media_id;
    return ax_psprintf(r, "%s/%s", server_name, media_id);
}

/* The wake-up key of a pending upload (the writer notifies it when the content arrives). */
static char *pending_key(const char *server_name, const char *media_id)
{
    return ax_asprintf("mxc://%s/%s", server_name, media_id);
}

/* ---- Uploads ---- */

typedef struct st_upload_t {
    ax_server_t *srv;
    char *data; /* the body, copied: the request (and h2o's buffer) may go away first */
    size_t len;
    char media_id[256];
    char *user_id;
    char *content_type;
    char *filename; /* NULL: none given */
    uint64_t created_ts;
    bool async; /* PUT to an ID from /create */
    uint8_t sha[AX_MEDIA_SHA_BYTES];
    int tries;
    bool passed_on; /* the next step owns it: the current step's release keeps it */
} upload_t;

static void upload_free(upload_t *u)
{
    free(u->data);
    free(u->user_id);
    free(u->content_type);
    free(u->filename);
    free(u);
}

static void upload_release(void *p)
{
    upload_t *u = p;
    if (u->passed_on) {
        u->passed_on = false;
        return;
    }
    upload_free(u);
}

static void upload_stored(ax_req_t *r, int result, void *data);

/* Worker: hash the bytes and put them in the store. */
static int upload_run(void *data)
{
    upload_t *u = data;
    return ax_media_store_put(&u->srv->media.store, u->data, u->len, u->sha);
}

/* Writer: record the content under its media ID. */
static int upload_apply(ax_txn_t *txn, void *data)
{
    upload_t *u = data;
    char hex[AX_MEDIA_SHA_HEX];
    ax_media_hex(u->sha, hex);
    /* the store and the records change together only here, under the write lock:
     * a removal of this content that ran after our file write is seen now */
    if (!ax_media_store_has(&u->srv->media.store, hex))
        return AX_ECONFLICT;
    uint64_t created = u->created_ts;
    if (u->async) {
        json_t *old = NULL;
        int rc = ax_db_media_get(txn, u->media_id, &old);
        if (rc != 0)
            return rc;
        bool pending = json_is_true(json_object_get(old, "pending"));
        bool mine = ax_streq(json_string_value(json_object_get(old, "uploader")), u->user_id);
        json_int_t expires = json_integer_value(json_object_get(old, "expires_ts"));
        created = (uint64_t)json_integer_value(json_object_get(old, "created_ts"));
        json_decref(old);
        if (!pending)
            return AX_EEXIST;
        if (!mine)
            return AX_EFORBIDDEN;
        if ((uint64_t)expires <= ax_now_ms())
            return AX_ENOTFOUND;
    }
    json_t *rec = json_pack("{s:s, s:I, s:s, s:I, s:s}", "uploader", u->user_id, "created_ts", (json_int_t)created,
                            "sha256", hex, "size", (json_int_t)u->len, "content_type", u->content_type);
    if (u->filename != NULL)
        json_object_set_new(rec, "filename", json_string(u->filename));
    int rc = ax_db_media_put(txn, u->media_id, rec);
    json_decref(rec);
    if (rc == 0 && u->async) {
        /* downloads waiting for this content wake after the commit; taking a stream position
         * lets one that is about to park see that something committed since it looked */
        char *key = pending_key(u->srv->cfg->server_name, u->media_id);
        ax_txn_notify(txn, key);
        free(key);
        ax_txn_next_stream_pos(txn);
    }
    return rc;
}

static void upload_committed(ax_req_t *r, int result, void *data)
{
    upload_t *u = data;
    switch (result) {
    case 0:
        if (u->async)
            ax_reply_json_new(r, 200, json_object());
        else
            ax_reply_json_new(r, 200,
                              json_pack("{s:s}", "content_uri",
                                        ax_psprintf(r, "mxc://%s/%s", r->srv->cfg->server_name, u->media_id)));
        return;
    case AX_ECONFLICT:
        /* the file went away between our write and the commit (an admin removed the same content): write again */
        if (++u->tries < UPLOAD_TRIES) {
            u->passed_on = true;
            ax_req_work(r, upload_run, upload_stored, u, upload_release);
            return;
        }
        ax_log(AX_LOG_ERROR, "media: upload of %s kept losing its file to removals", u->media_id);
        ax_reply_error(r, AX_M_INTERNAL, "Could not store the content");
        return;
    case AX_EEXIST:
        ax_reply_error(r, u->async ? AX_M_CANNOT_OVERWRITE_MEDIA : AX_M_INTERNAL, "Media already uploaded");
        return;
    case AX_EFORBIDDEN:
        ax_reply_error(r, AX_M_FORBIDDEN, "This media ID was created by another user");
        return;
    case AX_ENOTFOUND:
        ax_reply_error(r, AX_M_NOT_FOUND, "Unknown or expired media ID");
        return;
    default:
        ax_reply_error(r, ax_errcode_from_ax(result), "Could not store the content");
        return;
    }
}

static void upload_stored(ax_req_t *r, int result, void *data)
{
    upload_t *u = data;
    if (result != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Could not store the content");
        return;
    }
    u->passed_on = true;
    ax_req_write(r, upload_apply, upload_committed, u, upload_release);
}

/*
 * Validates what both upload endpoints take (Content-Type, ?filename) and
 * starts the upload of 'media_id'.  Replies itself on bad input.
 */
static int upload_start(ax_req_t *r, const char *media_id, bool async)
{
    const char *ct = ax_req_header(r, "content-type");
    const char *filename = ax_req_query(r, "filename");
    if (ct == NULL || *ct == '\0')
        ct = "application/octet-stream";
    if (!valid_content_type(ct))
        return ax_reply_error(r, AX_M_INVALID_PARAM, "Content-Type must be a MIME type of printable ASCII");
    if (filename != NULL && *filename == '\0')
        filename = NULL;
    if (filename != NULL && !valid_filename(filename))
        return ax_reply_error(r, AX_M_INVALID_PARAM,
                              "filename must be 1-255 bytes of UTF-8 without control characters");
    const char *body;
    size_t len;
    ax_req_body(r, &body, &len);
    upload_t *u = ax_calloc(1, sizeof(*u));
    u->srv = r->srv;
    u->len = len;
    u->data = ax_malloc(len != 0 ? len : 1);
    memcpy(u->data, body, len);
    snprintf(u->media_id, sizeof(u->media_id), "%s", media_id);
    u->user_id = ax_strdup(r->auth.user_id);
    u->content_type = ax_strdup(ct);
    u->filename = filename != NULL ? ax_strdup(filename) : NULL;
    u->created_ts = ax_now_ms();
    u->async = async;
    ax_req_work(r, upload_run, upload_stored, u, upload_release);
    return 0;
}

/* Applies the per-user upload limit.  Returns 0, or replies 429 and returns -1. */
static int media_ratelimit_or_reply(ax_req_t *r)
{
    uint64_t wait = ax_ratelimit_take(r->srv->limits.media, r->auth.user_id, ax_now_ms());
    if (wait == 0)
        return 0;
    ax_reply_limit_exceeded(r, wait);
    return -1;
}

/* POST /_matrix/media/v3/upload */
int ax_cs_media_upload(ax_req_t *r)
{
    if (media_ratelimit_or_reply(r) != 0)
        return 0;
    char id[MEDIA_ID_LEN + 1];
    ax_random_alnum(id, MEDIA_ID_LEN);
    return upload_start(r, id, false);
}

/* PUT /_matrix/media/v3/upload/{serverName}/{mediaId} */
int ax_cs_media_upload_put(ax_req_t *r)
{
    const char *server_name = r->params[0], *media_id = r->params[1];
    if (!ax_streq(server_name, r->srv->cfg->server_name) || !valid_media_id(media_id))
        return ax_reply_error(r, AX_M_NOT_FOUND, "Unknown media ID");
    /* answer what can be answered before the body goes to disk; the writer checks again */
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0)
        return ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
    json_t *rec = NULL;
    int rc = ax_db_media_get(txn, media_id, &rec);
    ax_db_read_end(txn);
    if (rc != 0) {
        return rc == AX_ENOTFOUND ? ax_reply_error(r, AX_M_NOT_FOUND, "Unknown media ID")
                                  : ax_reply_error(r, AX_M_INTERNAL, "Database error");
    }
    ax_req_hold_json(r, rec);
    if (!json_is_true(json_object_get(rec, "pending")))
        return ax_reply_error(r, AX_M_CANNOT_OVERWRITE_MEDIA, "Media already uploaded");
    if (!ax_streq(json_string_value(json_object_get(rec, "uploader")), r->auth.user_id))
        return ax_reply_error(r, AX_M_FORBIDDEN, "This media ID was created by another user");
    if ((uint64_t)json_integer_value(json_object_get(rec, "expires_ts")) <= ax_now_ms())
        return ax_reply_error(r, AX_M_NOT_FOUND, "This media ID has expired");
    return upload_start(r, media_id, true);
}

/* ---- POST /_matrix/media/v1/create ---- */

typedef struct st_create_t {
    char media_id[MEDIA_ID_LEN + 1];
    char *user_id;
    uint64_t created_ts, expires_ts;
    unsigned max_pending;
} create_t;

static void create_free(void *p)
{
    create_t *c = p;
    free(c->user_id);
    free(c);
}

static int create_apply(ax_txn_t *txn, void *data)
{
    create_t *c = data;
    size_t pending = 0;
    int rc = ax_db_media_pending_count(txn, c->user_id, c->created_ts, &pending);
    if (rc != 0)
        return rc;
    if (pending >= c->max_pending)
        return AX_ETOOBIG;
    json_t *rec = json_pack("{s:s, s:I, s:b, s:I}", "uploader", c->user_id, "created_ts", (json_int_t)c->created_ts,
                            "pending", 1, "expires_ts", (json_int_t)c->expires_ts);
    rc = ax_db_media_put(txn, c->media_id, rec);
    json_decref(rec);
    return rc;
}

static void create_done(ax_req_t *r, int result, void *data)
{
    create_t *c = data;
    if (result == AX_ETOOBIG) {
        ax_reply_error(r, AX_M_LIMIT_EXCEEDED, "Too many media IDs are waiting for their upload");
        return;
    }
    if (result != 0) {
        ax_reply_error(r, ax_errcode_from_ax(result), "Could not create a media ID");
        return;
    }
    ax_reply_json_new(r, 200,
                      json_pack("{s:s, s:I}", "content_uri",
                                ax_psprintf(r, "mxc://%s/%s", r->srv->cfg->server_name, c->media_id),
                                "unused_expires_at", (json_int_t)c->expires_ts));
}

int ax_cs_media_create(ax_req_t *r)
{
    if (media_ratelimit_or_reply(r) != 0)
        return 0;
    create_t *c = ax_calloc(1, sizeof(*c));
    ax_random_alnum(c->media_id, MEDIA_ID_LEN);
    c->user_id = ax_strdup(r->auth.user_id);
    c->created_ts = ax_now_ms();
    c->expires_ts = c->created_ts + (uint64_t)r->srv->cfg->media_pending_lifetime * 1000;
    c->max_pending = r->srv->cfg->media_max_pending;
    ax_req_write(r, create_apply, create_done, c, create_free);
    return 0;
}

/* ---- Downloads and thumbnails ---- */

/* What a download or thumbnail request asked for (request pool; kept across waits). */
typedef struct st_fetch_t {
    const char *server_name, *media_id, *key;
    const char *file_name; /* download: the name override from the path */
    bool thumbnail;
    ax_thumb_size_t want; /* thumbnail: the size asked for */
    uint64_t deadline_ms; /* waiting for a pending upload until then */
    bool timed_out;       /* the wait ended: answer with what there is */
    bool fetched;         /* the remote hook ran already */
    bool multipart;       /* a federation download: the metadata part, then the content part */
} fetch_t;

static void serve(ax_req_t *r);

/* Opens 'path' for a reply; -1 when it cannot be (logged unless it simply does not exist). */
static int open_file(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            ax_log(AX_LOG_ERROR, "media: cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        ax_log(AX_LOG_ERROR, "media: '%s' is not a readable file", path);
        close(fd);
        return -1;
    }
    *size = (uint64_t)sb.st_size;
    return fd;
}

/*
 * Replies 200 with the open file 'fd' ('size' bytes) typed 'ct' with
 * Content-Disposition 'disp': as the body itself, or for a federation
 * request as the second part of multipart/mixed (spec: Server-Server API
 * "Content Repository"), after a first part with the media's metadata ({}).
 * The file is streamed either way.
 */
static void reply_media(ax_req_t *r, const char *ct, const char *disp, int fd, uint64_t size)
{
    fetch_t *f = r->route_data;
    security_headers(r);
    if (!f->multipart) {
        ax_reply_header(r, "content-disposition", disp);
        ax_reply_file(r, 200, ct, fd, size);
        return;
    }
    char boundary[33];
    ax_random_alnum(boundary, 32); /* 190 random bits: never found inside the content by chance */
    char *head = ax_psprintf(r,
                             "--%s\r\nContent-Type: application/json\r\n\r\n{}\r\n"
                             "--%s\r\nContent-Type: %s\r\nContent-Disposition: %s\r\n\r\n",
                             boundary, boundary, ct, disp);
    char *tail = ax_psprintf(r, "\r\n--%s--\r\n", boundary);
    ax_reply_file_framed(r, 200, ax_psprintf(r, "multipart/mixed; boundary=%s", boundary), head, strlen(head), fd, size,
                         tail, strlen(tail));
}

/* Serves the original of 'rec' as a download (or as a thumbnail that needs no scaling, typed 'thumb_type'). */
static void serve_original(ax_req_t *r, json_t *rec, const char *thumb_type)
{
    fetch_t *f = r->route_data;
    const char *hex = json_string_value(json_object_get(rec, "sha256"));
    const char *ct = json_string_value(json_object_get(rec, "content_type"));
    if (hex == NULL || !ax_media_hex_valid(hex)) {
        ax_reply_error(r, AX_M_INTERNAL, "Damaged media record");
        return;
    }
    char path[4096];
    ax_media_path(&r->srv->media.store, hex, path, sizeof(path));
    uint64_t size = 0;
    int fd = open_file(path, &size);
    if (fd < 0) {
        ax_log(AX_LOG_ERROR, "media: the file of %s (%s) is missing", f->key, hex);
        ax_reply_error(r, AX_M_INTERNAL, "The media's content is missing");
        return;
    }
    if (thumb_type != NULL) {
        reply_media(r, thumb_type,
                    disposition(r, "inline", ax_streq(thumb_type, "image/jpeg") ? "thumbnail.jpg" : "thumbnail.png"),
                    fd, size);
        return;
    }
    if (ct == NULL)
        ct = "application/octet-stream";
    const char *name = f->file_name != NULL ? f->file_name : json_string_value(json_object_get(rec, "filename"));
    /* a type that could run as a page in the media's origin is not served under its name */
    reply_media(r, is_scriptable_type(ct) ? "application/octet-stream" : ct,
                disposition(r, is_inline_type(ct) ? "inline" : "attachment", name), fd, size);
}

/* Serves a cached thumbnail of 'hex' at 'size' if there is one; true when it replied. */
static bool serve_cached_thumbnail(ax_req_t *r, const char *hex, const ax_thumb_size_t *size)
{
    static const struct {
        const char *ext, *type;
    } kinds[] = {{"jpg", "image/jpeg"}, {"png", "image/png"}};
    for (size_t i = 0; i < AX_ARRAY_SIZE(kinds); ++i) {
        char path[4096];
        ax_media_thumb_path(&r->srv->media.store, hex, size->width, size->height, size->crop, kinds[i].ext, path,
                            sizeof(path));
        uint64_t len = 0;
        int fd = open_file(path, &len);
        if (fd < 0)
            continue;
        reply_media(r, kinds[i].type, disposition(r, "inline", ax_psprintf(r, "thumbnail.%s", kinds[i].ext)), fd, len);
        return true;
    }
    return false;
}

typedef struct st_thumb_job_t {
    ax_server_t *srv;
    char hex[AX_MEDIA_SHA_HEX];
    ax_thumb_size_t size;
    uint64_t max_pixels;
    const char *mime; /* out: static string */
    json_t *rec;      /* the media record (owned) */
} thumb_job_t;

static void thumb_job_free(void *p)
{
    thumb_job_t *j = p;
    json_decref(j->rec);
    free(j);
}

/* Worker: make the thumbnail and cache it on disk. */
static int thumb_run(void *data)
{
    thumb_job_t *j = data;
    const ax_media_store_t *st = &j->srv->media.store;
    char src[4096], dst[4096];
    ax_media_path(st, j->hex, src, sizeof(src));
    void *buf = NULL;
    size_t len = 0;
    int rc = ax_thumbnail_make(src, &j->size, j->max_pixels, &buf, &len, &j->mime);
    if (rc != 0)
        return rc;
    ax_media_thumb_path(st, j->hex, j->size.width, j->size.height, j->size.crop,
                        ax_streq(j->mime, "image/jpeg") ? "jpg" : "png", dst, sizeof(dst));
    rc = ax_media_store_write_file(st, dst, buf, len);
    free(buf);
    return rc;
}

static void reply_no_thumbnails(ax_req_t *r)
{
    ax_reply_error_status(r, 400, AX_M_UNKNOWN, "Thumbnails are not available on this server");
}

static void thumb_done(ax_req_t *r, int result, void *data)
{
    thumb_job_t *j = data;
    const char *ct = json_string_value(json_object_get(j->rec, "content_type"));
    switch (result) {
    case 0:
        if (!serve_cached_thumbnail(r, j->hex, &j->size))
            ax_reply_error(r, AX_M_INTERNAL, "The thumbnail could not be read back");
        return;
    case AX_THUMB_ORIGINAL:
        serve_original(r, j->rec, j->mime);
        return;
    case AX_ETOOBIG:
        ax_reply_error(r, AX_M_TOO_LARGE, "The image is too large to thumbnail");
        return;
    case AX_EINVAL:
        /* not an image we decode: an image type is still an image for the client, as it is */
        if (ct != NULL && is_thumbnail_type(ct)) {
            char base[64];
            base_type(ct, base, sizeof(base));
            serve_original(r, j->rec, ax_pstrdup(r, base));
            return;
        }
        ax_reply_error_status(r, 400, AX_M_UNKNOWN, "Cannot generate a thumbnail of this content");
        return;
    default:
        if (!ax_thumbnail_available()) /* libvips could not be loaded by this first thumbnail */
            reply_no_thumbnails(r);
        else
            ax_reply_error(r, AX_M_INTERNAL, "Thumbnail generation failed");
        return;
    }
}

static void serve_thumbnail(ax_req_t *r, json_t *rec)
{
    fetch_t *f = r->route_data;
    const char *hex = json_string_value(json_object_get(rec, "sha256"));
    const char *ct = json_string_value(json_object_get(rec, "content_type"));
    json_int_t size = json_integer_value(json_object_get(rec, "size"));
    if (hex == NULL || !ax_media_hex_valid(hex)) {
        ax_reply_error(r, AX_M_INTERNAL, "Damaged media record");
        return;
    }
    if ((uint64_t)size > r->srv->cfg->media_thumbnail_max_size) {
        ax_reply_error(r, AX_M_TOO_LARGE, "The content is too large to thumbnail");
        return;
    }
    ax_thumb_size_t target;
    if (!ax_thumbnail_choose(f->want.width, f->want.height, f->want.crop, &target)) {
        /* larger than every size we make: the original is the nearest answer (never smaller than asked) */
        if (ct != NULL && is_thumbnail_type(ct)) {
            char base[64];
            base_type(ct, base, sizeof(base));
            serve_original(r, rec, ax_pstrdup(r, base));
            return;
        }
        target = ax_thumb_sizes[AX_ARRAY_SIZE(ax_thumb_sizes) - 1];
    }
    if (serve_cached_thumbnail(r, hex, &target))
        return;
    if (!ax_thumbnail_available()) {
        reply_no_thumbnails(r);
        return;
    }
    thumb_job_t *j = ax_calloc(1, sizeof(*j));
    j->srv = r->srv;
    snprintf(j->hex, sizeof(j->hex), "%s", hex);
    j->size = target;
    j->max_pixels = (uint64_t)r->srv->cfg->media_thumbnail_max_mpixels * 1000000;
    j->rec = json_incref(rec);
    ax_req_work(r, thumb_run, thumb_done, j, thumb_job_free);
}

static void on_pending_wake(ax_req_t *r, bool timed_out)
{
    fetch_t *f = r->route_data;
    /* a timeout is the deadline, or the server shutting down: either way, no more waiting */
    f->timed_out = timed_out || ax_req_shutting_down(r);
    serve(r);
}

static void on_fetched(ax_req_t *r, int result)
{
    if (r == NULL)
        return;
    fetch_t *f = r->route_data;
    f->fetched = true;
    if (result == 0) {
        serve(r);
        return;
    }
    if (result == AX_ENOTFOUND)
        ax_reply_error(r, AX_M_NOT_FOUND, "The remote server has no such media");
    else if (result == AX_ETOOBIG)
        ax_reply_error_status(r, 502, AX_M_TOO_LARGE, "The remote content is too large");
    else
        ax_reply_error_status(r, 502, AX_M_UNKNOWN, "Could not fetch the remote content");
}

/* Looks the media up and serves it, waits for its upload, or fetches it from its server. */
static void serve(ax_req_t *r)
{
    fetch_t *f = r->route_data;
    /* read the position before the record, so a commit in between is seen by the park below */
    uint64_t seen = ax_writer_stream_pos(r->srv->writer);
    ax_txn_t *txn;
    if (ax_db_read_begin(r->srv->db, &txn) != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database unavailable");
        return;
    }
    json_t *rec = NULL;
    int rc = ax_db_media_get(txn, f->key, &rec);
    ax_db_read_end(txn);
    if (rc == AX_ENOTFOUND) {
        bool local = ax_streq(f->server_name, r->srv->cfg->server_name);
        if (!local && r->srv->media.fetch != NULL && !f->fetched) {
            r->srv->media.fetch(r, f->server_name, f->media_id, on_fetched);
            return;
        }
        ax_reply_error(r, AX_M_NOT_FOUND, local ? "Unknown media" : "Media of other servers is not available here");
        return;
    }
    if (rc != 0) {
        ax_reply_error(r, AX_M_INTERNAL, "Database error");
        return;
    }
    ax_req_hold_json(r, rec);
    if (json_is_true(json_object_get(rec, "pending"))) {
        uint64_t now = ax_now_ms();
        if ((uint64_t)json_integer_value(json_object_get(rec, "expires_ts")) <= now) {
            ax_reply_error(r, AX_M_NOT_FOUND, "Unknown media");
            return;
        }
        if (now >= f->deadline_ms || f->timed_out) {
            ax_reply_error(r, AX_M_NOT_YET_UPLOADED, "Content has not yet been uploaded");
            return;
        }
        char *key = pending_key(f->server_name, f->media_id);
        ax_req_park(r, key, seen, f->deadline_ms - now, on_pending_wake);
        free(key);
        return;
    }
    if (f->thumbnail)
        serve_thumbnail(r, rec);
    else
        serve_original(r, rec, NULL);
}

/*
 * Parses what downloads and thumbnails share: mxc://'server_name'/'media_id',
 * the download's file name override ('file_name', may be NULL) and the
 * query.  Replies and returns -1 on bad input.
 */
static int fetch_begin_or_reply(ax_req_t *r, const char *server_name, const char *media_id, const char *file_name,
                                bool thumbnail)
{
    fetch_t *f = ax_palloc(r, sizeof(*f));
    memset(f, 0, sizeof(*f));
    r->route_data = f;
    f->server_name = server_name;
    f->media_id = media_id;
    f->thumbnail = thumbnail;
    if (!valid_server_name(f->server_name) || !valid_media_id(f->media_id)) {
        ax_reply_error(r, AX_M_NOT_FOUND, "Unknown media");
        return -1;
    }
    f->key = media_key(r, f->server_name, f->media_id);
    if (!thumbnail && file_name != NULL) {
        if (!valid_filename(file_name)) {
            ax_reply_error(r, AX_M_INVALID_PARAM, "The file name must be UTF-8 without control characters");
            return -1;
        }
        f->file_name = file_name;
    }
    uint64_t wait = DEFAULT_WAIT_MS;
    const char *t = ax_req_query(r, "timeout_ms");
    if (t != NULL && ax_parse_u64(t, &wait) != 0) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "timeout_ms must be a non-negative integer");
        return -1;
    }
    f->deadline_ms = ax_now_ms() + (wait < MAX_WAIT_MS ? wait : MAX_WAIT_MS);
    if (!thumbnail)
        return 0;

    static const char *const dims[2] = {"width", "height"};
    uint64_t v[2];
    for (int i = 0; i < 2; ++i) {
        const char *s = ax_req_query(r, dims[i]);
        if (s == NULL) {
            ax_reply_error(r, AX_M_MISSING_PARAM, ax_psprintf(r, "Missing '%s'", dims[i]));
            return -1;
        }
        if (ax_parse_u64(s, &v[i]) != 0 || v[i] == 0 || v[i] > MAX_THUMB_SIDE) {
            ax_reply_error(r, AX_M_INVALID_PARAM,
                           ax_psprintf(r, "'%s' must be an integer from 1 to %d", dims[i], MAX_THUMB_SIDE));
            return -1;
        }
    }
    const char *method = ax_req_query(r, "method");
    if (method != NULL && !ax_streq(method, "crop") && !ax_streq(method, "scale")) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "method must be crop or scale");
        return -1;
    }
    /* animated thumbnails are not made: "the server SHOULD behave as though animated is false" */
    const char *animated = ax_req_query(r, "animated");
    if (animated != NULL && !ax_streq(animated, "true") && !ax_streq(animated, "false")) {
        ax_reply_error(r, AX_M_INVALID_PARAM, "animated must be true or false");
        return -1;
    }
    f->want.width = (unsigned)v[0];
    f->want.height = (unsigned)v[1];
    f->want.crop = method != NULL && ax_streq(method, "crop");
    return 0;
}

/* GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}] */
int ax_cs_media_download(ax_req_t *r)
{
    if (fetch_begin_or_reply(r, r->params[0], r->params[1], r->nparams > 2 ? r->params[2] : NULL, false) == 0)
        serve(r);
    return 0;
}

/* GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId} */
int ax_cs_media_thumbnail(ax_req_t *r)
{
    if (fetch_begin_or_reply(r, r->params[0], r->params[1], NULL, true) == 0)
        serve(r);
    return 0;
}

int ax_cs_media_serve_federation(ax_req_t *r, const char *media_id, bool thumbnail)
{
    if (fetch_begin_or_reply(r, r->srv->cfg->server_name, media_id, NULL, thumbnail) != 0)
        return 0;
    ((fetch_t *)r->route_data)->multipart = true;
    serve(r);
    return 0;
}

/* GET /_matrix/client/v1/media/config */
int ax_cs_media_config(ax_req_t *r)
{
    return ax_reply_json_new(r, 200, json_pack("{s:I}", "m.upload.size", (json_int_t)r->srv->cfg->max_upload_size));
}

/* GET /_matrix/client/v1/media/preview_url */
int ax_cs_media_preview_url(ax_req_t *r)
{
    /* previews need outbound HTTP to arbitrary URLs (and its SSRF defences); not offered */
    return ax_reply_error(r, AX_M_UNRECOGNIZED, "URL previews are not supported by this server");
}

/* ---- The deprecated /_matrix/media/v3 paths ---- */

static int legacy_off_or_continue(ax_req_t *r)
{
    if (r->srv->cfg->media_legacy_unauthenticated)
        return 0;
    ax_reply_error(r, AX_M_NOT_FOUND, "Unauthenticated media is disabled on this server: use /_matrix/client/v1/media");
    return -1;
}

/* GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}] (deprecated) */
int ax_cs_media_legacy_download(ax_req_t *r)
{
    return legacy_off_or_continue(r) == 0 ? ax_cs_media_download(r) : 0;
}

/* GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} (deprecated) */
int ax_cs_media_legacy_thumbnail(ax_req_t *r)
{
    return legacy_off_or_continue(r) == 0 ? ax_cs_media_thumbnail(r) : 0;
}

/* GET /_matrix/media/v3/config (deprecated) */
int ax_cs_media_legacy_config(ax_req_t *r)
{
    return legacy_off_or_continue(r) == 0 ? ax_cs_media_config(r) : 0;
}

/* GET /_matrix/media/v3/preview_url (deprecated) */
int ax_cs_media_legacy_preview_url(ax_req_t *r)
{
    return legacy_off_or_continue(r) == 0 ? ax_cs_media_preview_url(r) : 0;
}

/* ---- Housekeeping ---- */

typedef struct st_sweep_t {
    uint64_t now_ms;
} sweep_t;

static int sweep_apply(ax_txn_t *txn, void *data)
{
    sweep_t *s = data;
    size_t n = 0;
    int rc = ax_db_media_expire(txn, s->now_ms, SWEEP_BATCH, &n);
    if (rc == 0 && n != 0)
        ax_log(AX_LOG_DEBUG, "media: %zu unused media ID(s) expired", n);
    return rc;
}

void ax_cs_media_tick(ax_server_t *srv,
                      void (*submit)(ax_server_t *srv, ax_apply_fn apply, void *data, void (*free_data)(void *)))
{
    uint64_t now = ax_now_ms();
    if (now - atomic_load(&srv->media.swept_at_ms) < SWEEP_EVERY_MS)
        return;
    atomic_store(&srv->media.swept_at_ms, now);
    sweep_t *s = ax_malloc(sizeof(*s));
    s->now_ms = now;
    submit(srv, sweep_apply, s, free);
}
