/*
 * thumbnail.c -- thumbnails with libvips (Client-Server API "Thumbnails"):
 * the spec's recommended sizes, the choice of the nearest one for any
 * request, and the generation itself.  Exports ax_thumb_sizes,
 * ax_thumbnail_choose(), ax_thumbnail_init/shutdown() and
 * ax_thumbnail_make().
 *
 * Uploaded files are hostile input.  Only libvips' own JPEG, PNG, GIF and
 * WebP loaders may run (everything libvips marks untrusted, such as the
 * ImageMagick, PDF and SVG loaders, is blocked, and the sniffed loader is
 * checked against that list), an image's size is checked from its header
 * before any pixel is decoded, and a decoding error fails the thumbnail
 * instead of producing half an image.  Runs on the worker pool only.
 */
#include "core/media.h"

#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

/* spec "Thumbnails": servers SHOULD produce these */
const ax_thumb_size_t ax_thumb_sizes[5] = {
    {32, 32, true}, {96, 96, true}, {320, 240, false}, {640, 480, false}, {800, 600, false},
};

static bool vips_started;

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

int ax_thumbnail_init(char *err, size_t errlen)
{
    if (VIPS_INIT("axon") != 0) {
        snprintf(err, errlen, "libvips did not start: %s", vips_error_buffer());
        vips_error_clear();
        return AX_ERR;
    }
    vips_block_untrusted_set(TRUE);
    vips_cache_set_max(0);   /* every thumbnail is made once and cached on disk by us */
    vips_concurrency_set(1); /* the worker pool is the concurrency limit */
    vips_leak_set(FALSE);
    vips_started = true;
    return 0;
}

void ax_thumbnail_shutdown(void)
{
    if (vips_started)
        vips_shutdown();
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
    ax_log(AX_LOG_DEBUG, "thumbnail: %s %s: %s", what, src, vips_error_buffer());
    vips_error_clear();
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
    if (!vips_started)
        return AX_ERR;
    VipsImage *header = NULL, *thumb = NULL;
    void *buf = NULL;
    size_t blen = 0;
    int rc = AX_EINVAL;

    /* content sniffing, not the uploader's word: the file has no extension */
    const char *loader = vips_foreign_find_load(src);
    if (loader == NULL || !loader_allowed(loader)) {
        if (loader == NULL)
            vips_error_clear();
        goto out;
    }
    bool jpeg = strncmp(loader, "VipsForeignLoadJpeg", 19) == 0;

    /* the header only: no pixel is decoded yet */
    header = vips_image_new_from_file(src, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (header == NULL) {
        log_vips("cannot read the header of", src);
        goto out;
    }
    uint64_t w = (uint64_t)vips_image_get_width(header), h = (uint64_t)vips_image_get_height(header);
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

    if (vips_thumbnail(src, &thumb, (int)size->width, "height", (int)size->height, "size", VIPS_SIZE_DOWN, "crop",
                       size->crop ? VIPS_INTERESTING_CENTRE : VIPS_INTERESTING_NONE, "fail_on", VIPS_FAIL_ON_ERROR,
                       NULL) != 0) {
        log_vips("cannot thumbnail", src);
        goto out;
    }
    int saved = jpeg ? vips_jpegsave_buffer(thumb, &buf, &blen, "Q", 80, "strip", TRUE, NULL)
                     : vips_pngsave_buffer(thumb, &buf, &blen, "strip", TRUE, "compression", 6, NULL);
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
        g_free(buf);
    if (thumb != NULL)
        g_object_unref(thumb);
    if (header != NULL)
        g_object_unref(header);
    /* libvips keeps per-thread buffers; the worker may not thumbnail again for a long time */
    vips_thread_shutdown();
    return rc;
}
