/*
 * media.c -- the content-addressed media store under data_dir/media
 * (layout in core/media.h).  Exports ax_media_store_*, ax_media_path,
 * ax_media_thumb_path and ax_media_hex.
 *
 * Crash safety: bytes are written to a fresh file in tmp/, fsync'd, then
 * renamed to their content name and the directory fsync'd.  A crash before
 * the rename leaves only a file in tmp/, which the next start removes; a
 * crash after it leaves a complete file, at worst one no media ID refers to
 * yet (the metadata commit comes after).  A content name therefore always
 * names complete content, and identical uploads share one file.
 *
 * Removal and uploads of the same content race: an upload writes (or finds)
 * the file, then commits its record; a delete commits the record's removal,
 * then removes the file once nothing refers to it.  Both final steps run in
 * the writer's transaction (the LMDB write lock, also across processes):
 * the remover checks the reference count there, and the upload checks that
 * its file still exists there, retrying the write when it lost the race.
 */
#include "core/media.h"
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ax_media_hex(const uint8_t sha[AX_MEDIA_SHA_BYTES], char out[AX_MEDIA_SHA_HEX])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < AX_MEDIA_SHA_BYTES; ++i) {
        out[2 * i] = digits[sha[i] >> 4];
        out[2 * i + 1] = digits[sha[i] & 15];
    }
    out[2 * AX_MEDIA_SHA_BYTES] = '\0';
}

bool ax_media_hex_valid(const char *hex)
{
    size_t i = 0;
    for (; hex[i] != '\0'; ++i)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return false;
    return i == 2 * AX_MEDIA_SHA_BYTES;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    snprintf(err, errlen, "media: cannot create '%s': %s", path, strerror(errno));
    return AX_EIO;
}

/* Removes every file in 'dir' (not recursive): leftovers of writes a crash interrupted. */
static void clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    size_t removed = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            ++removed;
    }
    closedir(d);
    if (removed != 0)
        ax_log(AX_LOG_INFO, "media: removed %zu unfinished file(s) from %s", removed, dir);
}

int ax_media_store_open(ax_media_store_t *st, const char *data_dir, bool clean_tmp, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    st->root = ax_asprintf("%s/media", data_dir);
    st->tmp = ax_asprintf("%s/tmp", st->root);
    st->thumbs = ax_asprintf("%s/thumbs", st->root);
    if (make_dir(st->root, err, errlen) != 0 || make_dir(st->tmp, err, errlen) != 0 ||
        make_dir(st->thumbs, err, errlen) != 0) {
        ax_media_store_dispose(st);
        return AX_EIO;
    }
    if (clean_tmp)
        clear_dir(st->tmp);
    return 0;
}

void ax_media_store_dispose(ax_media_store_t *st)
{
    free(st->root);
    free(st->tmp);
    free(st->thumbs);
    memset(st, 0, sizeof(*st));
}

void ax_media_path(const ax_media_store_t *st, const char *hex, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%.2s/%s", st->root, hex, hex);
}

void ax_media_thumb_path(const ax_media_store_t *st, const char *hex, unsigned width, unsigned height, bool crop,
                         const char *ext, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%.2s/%s-%ux%u-%s.%s", st->thumbs, hex, hex, width, height, crop ? "crop" : "scale", ext);
}

bool ax_media_store_has(const ax_media_store_t *st, const char *hex)
{
    char path[4096];
    ax_media_path(st, hex, path, sizeof(path));
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* fsyncs the directory holding 'path', so a rename into it is durable. */
static int sync_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return 0;
    *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return AX_EIO;
    int rc = fsync(fd) == 0 ? 0 : AX_EIO;
    close(fd);
    return rc;
}

int ax_media_store_write_file(const ax_media_store_t *st, const char *path, const void *data, size_t len)
{
    char dir[4096], tmp[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            ax_log(AX_LOG_ERROR, "media: cannot create '%s': %s", dir, strerror(errno));
            return AX_EIO;
        }
    }
    char name[25];
    ax_random_alnum(name, sizeof(name) - 1);
    snprintf(tmp, sizeof(tmp), "%s/%s", st->tmp, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        ax_log(AX_LOG_ERROR, "media: cannot create '%s': %s", tmp, strerror(errno));
        return AX_EIO;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ax_log(AX_LOG_ERROR, "media: cannot write '%s': %s", tmp, n < 0 ? strerror(errno) : "no progress");
            goto fail;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        ax_log(AX_LOG_ERROR, "media: cannot fsync '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        ax_log(AX_LOG_ERROR, "media: cannot close '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        ax_log(AX_LOG_ERROR, "media: cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        goto fail;
    }
    if (sync_parent(path) != 0) {
        /* the file is complete under its name; only its durability across a power cut is in doubt */
        ax_log(AX_LOG_ERROR, "media: cannot fsync the directory of '%s': %s", path, strerror(errno));
        return AX_EIO;
    }
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return AX_EIO;
}

int ax_media_store_put(const ax_media_store_t *st, const void *data, size_t len, uint8_t sha[AX_MEDIA_SHA_BYTES])
{
    crypto_hash_sha256(sha, data, len);
    char hex[AX_MEDIA_SHA_HEX], path[4096];
    ax_media_hex(sha, hex);
    ax_media_path(st, hex, path, sizeof(path));
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == (uint64_t)len)
        return 0; /* identical content is stored already */
    return ax_media_store_write_file(st, path, data, len);
}

int ax_media_store_remove(const ax_media_store_t *st, const char *hex)
{
    if (!ax_media_hex_valid(hex))
        return AX_EINVAL;
    char path[4096];
    int rc = 0;
    ax_media_path(st, hex, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT) {
        ax_log(AX_LOG_ERROR, "media: cannot remove '%s': %s", path, strerror(errno));
        rc = AX_EIO;
    }
    /* thumbnails: thumbs/ab/<hex>-* */
    snprintf(path, sizeof(path), "%s/%.2s", st->thumbs, hex);
    DIR *d = opendir(path);
    if (d == NULL)
        return rc;
    size_t hlen = strlen(hex);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, hex, hlen) == 0 && e->d_name[hlen] == '-' && unlinkat(dirfd(d), e->d_name, 0) != 0 &&
            errno != ENOENT) {
            ax_log(AX_LOG_ERROR, "media: cannot remove thumbnail '%s/%s': %s", path, e->d_name, strerror(errno));
            rc = AX_EIO;
        }
    }
    closedir(d);
    return rc;
}

int ax_media_gc_apply(ax_txn_t *txn, const ax_media_store_t *st, const uint8_t sha[AX_MEDIA_SHA_BYTES], bool *removed)
{
    uint64_t refs = 0;
    *removed = false;
    int rc = ax_db_media_refs(txn, sha, &refs);
    if (rc != 0 || refs != 0)
        return rc;
    char hex[AX_MEDIA_SHA_HEX];
    ax_media_hex(sha, hex);
    if ((rc = ax_media_store_remove(st, hex)) == 0)
        *removed = true;
    return rc;
}
