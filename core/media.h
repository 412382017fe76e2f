/*
 * media.h -- the media repository's files, shared by the Client-Server
 * media module, `axon admin media` and (later) federation media:
 *
 *   media.c      the content-addressed store under data_dir/media: one file
 *                per SHA-256, written to a temporary file, fsync'd and
 *                renamed, so a crash never leaves a partial file under a
 *                content name; cached thumbnails beside it.
 *   thumbnail.c  thumbnails with libvips: the spec's recommended sizes, the
 *                nearest one for a request, decoding limits.
 *
 * Thread safety: every function may be called from any thread.  The store
 * functions block on the disk and ax_thumbnail_make() on the CPU: call them
 * on the worker pool (or a plain thread), never on an HTTP thread.
 */
#ifndef AX_CORE_MEDIA_H
#define AX_CORE_MEDIA_H

#include "common/common.h"
#include "storage/storage.h"

#define AX_MEDIA_SHA_BYTES 32
#define AX_MEDIA_SHA_HEX   (2 * AX_MEDIA_SHA_BYTES + 1) /* with the NUL */

/* ---- media.c -- the content-addressed store ------------------------------------------ */

/**
 * Layout under data_dir/media:
 *   ab/<sha256 hex>                          an original ("ab" = the hash's first two hex digits)
 *   thumbs/ab/<sha256 hex>-<w>x<h>-<method>.<jpg|png>   a cached thumbnail of it
 *   tmp/                                     files being written; emptied at start-up
 */
typedef struct st_ax_media_store_t {
    char *root;   /* data_dir/media */
    char *tmp;    /* root/tmp */
    char *thumbs; /* root/thumbs */
} ax_media_store_t;

/**
 * Opens the store of 'data_dir', creating its directories (mode 0700).  With
 * 'clean_tmp' (the server at start-up; never `axon admin`, which may run
 * beside a server that is writing) removes what a crash left in tmp/.
 * Returns 0, or AX_EIO with a message in 'err'.  Free with
 * ax_media_store_dispose().
 */
int ax_media_store_open(ax_media_store_t *st, const char *data_dir, bool clean_tmp, char *err, size_t errlen);

/** Frees the paths of 'st'. */
void ax_media_store_dispose(ax_media_store_t *st);

/** Lower-case hex of 'sha' into 'out' (AX_MEDIA_SHA_HEX bytes). */
void ax_media_hex(const uint8_t sha[AX_MEDIA_SHA_BYTES], char out[AX_MEDIA_SHA_HEX]);

/** True when 'hex' is 64 lower-case hex digits (a name the store can hold). */
bool ax_media_hex_valid(const char *hex);

/** The path of the original with hash 'hex' into 'out' (cap bytes, truncated if short). */
void ax_media_path(const ax_media_store_t *st, const char *hex, char *out, size_t cap);

/**
 * The path of the cached thumbnail of 'hex' of 'width' x 'height' ('crop'
 * or scale) with extension 'ext' ("jpg", "png") into 'out'.
 */
void ax_media_thumb_path(const ax_media_store_t *st, const char *hex, unsigned width, unsigned height, bool crop,
                         const char *ext, char *out, size_t cap);

/**
 * Stores 'len' bytes of 'data' (borrowed) and writes their SHA-256 into
 * 'sha'.  Identical content is stored once: when the file exists already
 * nothing is written.  Otherwise the bytes go to a new file in tmp/, which
 * is fsync'd and renamed to its content name, and the directory is fsync'd:
 * the content name only ever names complete content.
 * @return 0, or AX_EIO (logged, with errno) when the disk fails.
 */
int ax_media_store_put(const ax_media_store_t *st, const void *data, size_t len, uint8_t sha[AX_MEDIA_SHA_BYTES]);

/** True when the original 'hex' is in the store. */
bool ax_media_store_has(const ax_media_store_t *st, const char *hex);

/**
 * Writes 'len' bytes of 'data' to 'path' (inside the store) the same
 * crash-safe way: temporary file, fsync, rename.  Creates the parent
 * directory.  Returns 0 or AX_EIO.
 */
int ax_media_store_write_file(const ax_media_store_t *st, const char *path, const void *data, size_t len);

/**
 * Removes the original 'hex' and its cached thumbnails.  Only call it when
 * no media ID refers to 'hex' any more (ax_db_media_refs() == 0), and do so
 * inside the writer's transaction that checked it, so an upload of the same
 * content cannot slip in between (see core/media.c).  Returns 0 (also when
 * there was nothing to remove) or AX_EIO.
 */
int ax_media_store_remove(const ax_media_store_t *st, const char *hex);

/**
 * A writer job's body: removes content 'sha' from the store when no media ID
 * refers to it (any more) in 'txn'.  The removal happens inside the
 * transaction on purpose (the exception to "no effect outside the
 * transaction"): it is idempotent, and holding the write lock keeps an
 * upload of the same content from committing in between.  Sets '*removed'.
 * Returns 0, or an AX_E* code from the database or the disk.
 */
int ax_media_gc_apply(ax_txn_t *txn, const ax_media_store_t *st, const uint8_t sha[AX_MEDIA_SHA_BYTES], bool *removed);

/* ---- thumbnail.c -- thumbnails with libvips ----------------------------------------- */

typedef struct st_ax_thumb_size_t {
    unsigned width, height;
    bool crop; /* crop to exactly width x height; else scale to fit inside it */
} ax_thumb_size_t;

/** The spec's recommended thumbnail sizes, smallest first (32x32 crop ... 800x600 scale). */
extern const ax_thumb_size_t ax_thumb_sizes[5];

/**
 * Picks the thumbnail that serves a request for 'width' x 'height' with
 * 'crop': the dimensions of the smallest recommended size at least as large
 * both ways, with the method asked for (32x32 crop for 32x32 crop; 96x96
 * crop for 50x40 crop; 320x240 crop for 300x200 crop).  Returns false when
 * the request is larger than every recommended size (then the original is
 * the best answer).
 */
bool ax_thumbnail_choose(unsigned width, unsigned height, bool crop, ax_thumb_size_t *out);

/**
 * Names the libvips library to load ('library', kept; NULL for the one the
 * headers describe, libvips.so.42).  Optional; call it before the first
 * thumbnail.  libvips is loaded and started by the first ax_thumbnail_make(),
 * on its worker: untrusted loaders blocked, the operation cache off, one
 * thread per operation.  If it cannot be loaded one error line is logged and
 * thumbnails are off for the life of the process.
 */
void ax_thumbnail_init(const char *library);

/** False once libvips could not be loaded or started (then no thumbnail is made). */
bool ax_thumbnail_available(void);

/** Shuts libvips down (at exit, after the workers stopped). */
void ax_thumbnail_shutdown(void);

enum {
    AX_THUMB_ORIGINAL = 1, /* ax_thumbnail_make: the original already fits; serve it */
};

/**
 * Makes a thumbnail of 'size' from the image file 'src'.  Only JPEG, PNG,
 * GIF and WebP are decoded (by libvips' own loaders, chosen by sniffing the
 * content); an image of more than 'max_pixels' is refused from its header,
 * before any pixel is decoded.  Never upscales.
 *
 * On success stores a new buffer in '*out' (free() it), its length, and its
 * type in '*mime' ("image/jpeg" for JPEG sources, else "image/png"; static)
 * and returns 0.
 * @return AX_THUMB_ORIGINAL when the original is no larger than 'size'
 *         ('*mime' is then the original's sniffed type); AX_ETOOBIG above
 *         'max_pixels'; AX_EINVAL when 'src' is not an image we decode (or
 *         is corrupt); AX_ERR when libvips could not be loaded.
 */
int ax_thumbnail_make(const char *src, const ax_thumb_size_t *size, uint64_t max_pixels, void **out, size_t *len,
                      const char **mime);

#endif
