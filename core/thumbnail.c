/*
 * thumbnail.c -- thumbnails with libvips (Client-Server API "Thumbnails"):
 * the spec's recommended sizes, the choice of the nearest one for any
 * request, and the generation itself.  Exports ax_thumb_sizes,
 * ax_thumbnail_choose(), ax_thumbnail_init/available/shutdown() and
 * ax_thumbnail_make().
 *
 * libvips is loaded with dlopen() by the first thumbnail a worker makes, not
 * linked: it brings about a hundred shared libraries (poppler, librsvg,
 * gnutls, codecs...) whose pages would otherwise be most of an idle server's
 * memory (38 MB resident instead of 8 MB), and most servers seldom make a
 * thumbnail.  Only the types and constants of its headers are compiled in;
 * the functions are looked up once, all or nothing, and a server without
 * libvips still runs and answers thumbnail requests with an error.
 *
 * Uploaded files are hostile input.  Only libvips' own JPEG, PNG, GIF and
 * WebP loaders may run (everything libvips marks untrusted, such as the
 * ImageMagick, PDF and SVG loaders, is blocked, and the sniffed loader is
 * checked against that list), an image's size is checked from its header
 * before any pixel is decoded, and a decoding error fails the thumbnail
 * instead of producing half an image.  Runs on the worker pool only.
 */
#include "core/media.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

/* The libvips (and GLib, reached through it) functions used here: the field
 * and the symbol it is looked up by. */
#define AX_VIPS_FUNCS(X)                                                                                               \
    X(version, vips_version)                                                                                           \
    X(init, vips_init)                                                                                                 \
    X(shutdown, vips_shutdown)                                                                                         \
    X(thread_shutdown, vips_thread_shutdown)                                                                           \
    X(error_buffer, vips_error_buffer)                                                                                 \
    X(error_clear, vips_error_clear)                                                                                   \
    X(block_untrusted_set, vips_block_untrusted_set)                                                                   \
    X(cache_set_max, vips_cache_set_max)                                                                               \
    X(concurrency_set, vips_concurrency_set)                                                                           \
    X(leak_set, vips_leak_set)                                                                                         \
    X(foreign_find_load, vips_foreign_find_load)                                                                       \
    X(image_new_from_file, vips_image_new_from_file)                                                                   \
    X(image_get_width, vips_image_get_width)                                                                           \
    X(image_get_height, vips_image_get_height)                                                                         \
    X(thumbnail, vips_thumbnail)                                                                                       \
    X(jpegsave_buffer, vips_jpegsave_buffer)                                                                           \
    X(pngsave_buffer, vips_pngsave_buffer)                                                                             \
    X(object_unref, g_object_unref)                                                                                    \
    X(free, g_free)

static struct {
#define X(field, sym) __typeof__(sym) *field;
    AX_VIPS_FUNCS(X)
#undef X
} vips;

static const char *vips_library; /* NULL: libvips.so.<ABI> */
static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static atomic_bool vips_failed; /* libvips could not be loaded or started: no thumbnails */
static bool vips_started;       /* written once under vips_once */

/* spec "Thumbnails": servers SHOULD produce these */
const ax_thumb_size_t ax_thumb_sizes[5] = {
    {32, 32, true}, {96, 96, true}, {320, 240, false}, {640, 480, false}, {800, 600, false},
};

bool ax_thumbnail_choose(unsigned width, unsigned height, bool crop, ax_thumb_size_t *out)
{
    /* "The dimensions given to the thumbnail API are the minimum size the client would prefer":
     * the smallest recommended box at least as large both ways, in the method asked for, so an
     * image has at most ten cached thumbnails whatever clients ask */
    for (size_t i = 0; i < AX_ARRAY_SIZE(ax_thumb_sizes); ++i) {
        const ax_thumb_size_t *s = &ax_thumb_sizes[i];
        if (s->width >= width && s->height >= height) {
            out->width = s->width;
            out->height = s->height;
            out->crop = crop;
            return true;
        }
    }
    return false;
}

/* The library's file name, from the ABI its headers describe (libvips.so.42). */
#define AX_VIPS_ABI (VIPS_LIBRARY_CURRENT - VIPS_LIBRARY_AGE)

/* Once, on the first worker that needs it: loads libvips and starts it as
 * ax_thumbnail_init() describes.  On any failure sets 'vips_failed' and logs
 * one line; the library stays mapped (GLib's types cannot be unloaded). */
static void vips_load(void)
{
    char name[256];
    snprintf(name, sizeof(name), "libvips.so.%d", AX_VIPS_ABI);
    if (vips_library != NULL)
        snprintf(name, sizeof(name), "%s", vips_library);
    uint64_t t0 = ax_now_ms();
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        ax_log(AX_LOG_ERROR, "thumbnails are off: %s", dlerror());
        atomic_store(&vips_failed, true);
        return;
    }
#define X(field, sym)                                                                                                  \
    if ((*(void **)&vips.field = dlsym(h, #sym)) == NULL) {                                                            \
        ax_log(AX_LOG_ERROR, "thumbnails are off: %s has no %s", name, #sym);                                          \
        atomic_store(&vips_failed, true);                                                                              \
        return;                                                                                                        \
    }
    AX_VIPS_FUNCS(X)
#undef X
    /* what VIPS_INIT() checks: the library keeps the ABI the headers were compiled for */
    if (vips.version(3) - vips.version(5) != AX_VIPS_ABI) {
        ax_log(AX_LOG_ERROR, "thumbnails are off: %s has ABI %d, axon was built for %d", name,
               vips.version(3) - vips.version(5), AX_VIPS_ABI);
        atomic_store(&vips_failed, true);
        return;
    }
    if (vips.init("axon") != 0) {
        ax_log(AX_LOG_ERROR, "thumbnails are off: libvips did not start: %s", vips.error_buffer());
        vips.error_clear();
        atomic_store(&vips_failed, true);
        return;
    }
    vips.block_untrusted_set(TRUE);
    vips.cache_set_max(0);   /* every thumbnail is made once and cached on disk by us */
    vips.concurrency_set(1); /* the worker pool is the concurrency limit */
    vips.leak_set(FALSE);
    vips_started = true;
    ax_log(AX_LOG_INFO, "thumbnails: %s loaded in %llu ms", name, (unsigned long long)(ax_now_ms() - t0));
}

void ax_thumbnail_init(const char *library)
{
    vips_library = library;
}

bool ax_thumbnail_available(void)
{
    return !atomic_load(&vips_failed);
}

void ax_thumbnail_shutdown(void)
{
    if (vips_started)
        vips.shutdown();
    vips_started = false;
}

/* libvips' own decoders of the four formats clients display everywhere */
static bool loader_allowed(const char *loader)
{
    static const char *const allowed[] = {"VipsForeignLoadJpeg",  "VipsForeignLoadPng", "VipsForeignLoadSpng",
                                          "VipsForeignLoadNsgif", "VipsForeignLoadGif", "VipsForeignLoadWebp"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(allowed); ++i)
        if (strncmp(loader, allowed[i], strlen(allowed[i])) == 0)
            return true;
    return false;
}

static void log_vips(const char *what, const char *src)
{
    ax_log(AX_LOG_DEBUG, "thumbnail: %s %s: %s", what, src, vips.error_buffer());
    vips.error_clear();
}

/* The type of what 'loader' decodes. */
static const char *loader_mime(const char *loader)
{
    if (strncmp(loader, "VipsForeignLoadJpeg", 19) == 0)
        return "image/jpeg";
    if (strstr(loader, "gif") != NULL || strstr(loader, "Gif") != NULL)
        return "image/gif";
    if (strncmp(loader, "VipsForeignLoadWebp", 19) == 0)
        return "image/webp";
    return "image/png";
}

int ax_thumbnail_make(const char *src, const ax_thumb_size_t *size, uint64_t max_pixels, void **out, size_t *len,
                      const char **mime)
{
    pthread_once(&vips_once, vips_load);
    if (!vips_started)
        return AX_ERR;
    VipsImage *header = NULL, *thumb = NULL;
    void *buf = NULL;
    size_t blen = 0;
    int rc = AX_EINVAL;

    /* content sniffing, not the uploader's word: the file has no extension */
    const char *loader = vips.foreign_find_load(src);
    if (loader == NULL || !loader_allowed(loader)) {
        if (loader == NULL)
            vips.error_clear();
        goto out;
    }
    bool jpeg = strncmp(loader, "VipsForeignLoadJpeg", 19) == 0;

    /* the header only: no pixel is decoded yet */
    header = vips.image_new_from_file(src, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (header == NULL) {
        log_vips("cannot read the header of", src);
        goto out;
    }
    uint64_t w = (uint64_t)vips.image_get_width(header), h = (uint64_t)vips.image_get_height(header);
    if (w == 0 || h == 0) {
        goto out;
    }
    if (w * h > max_pixels) {
        rc = AX_ETOOBIG;
        goto out;
    }
    if (w <= size->width && h <= size->height) {
        *mime = loader_mime(loader);
        rc = AX_THUMB_ORIGINAL; /* never upscale: the original is the answer */
        goto out;
    }

    if (vips.thumbnail(src, &thumb, (int)size->width, "height", (int)size->height, "size", VIPS_SIZE_DOWN, "crop",
                       size->crop ? VIPS_INTERESTING_CENTRE : VIPS_INTERESTING_NONE, "fail_on", VIPS_FAIL_ON_ERROR,
                       NULL) != 0) {
        log_vips("cannot thumbnail", src);
        goto out;
    }
    int saved = jpeg ? vips.jpegsave_buffer(thumb, &buf, &blen, "Q", 80, "strip", TRUE, NULL)
                     : vips.pngsave_buffer(thumb, &buf, &blen, "strip", TRUE, "compression", 6, NULL);
    if (saved != 0) {
        log_vips("cannot encode the thumbnail of", src);
        goto out;
    }
    *out = ax_malloc(blen);
    memcpy(*out, buf, blen);
    *len = blen;
    *mime = jpeg ? "image/jpeg" : "image/png";
    rc = 0;

out:
    if (buf != NULL)
        vips.free(buf);
    if (thumb != NULL)
        vips.object_unref(thumb);
    if (header != NULL)
        vips.object_unref(header);
    /* libvips keeps per-thread buffers; the worker may not thumbnail again for a long time */
    vips.thread_shutdown();
    return rc;
}
