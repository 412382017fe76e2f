/*
 * canonical_json.c -- the spec's Canonical JSON (appendices, "Canonical
 * JSON"): object keys sorted by Unicode code point (bytewise on UTF-8), no
 * insignificant whitespace, UTF-8 output, the shortest escape for each
 * character, integers only in [-(2^53)+1, 2^53-1].
 *
 * jansson's dumps with JSON_SORT_KEYS is close but not equal (it escapes
 * differently and prints reals), so the encoder is our own; the spec's
 * vectors in tests/vectors pin it down byte for byte.  Strings are written as common/json.c writes them everywhere.
 */
#include "core/core.h"

#include "common/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int encode_integer(json_int_t v, ax_buf_t *out)
{
    if (v > AX_CJSON_MAX_INT || v < -AX_CJSON_MAX_INT)
        return AX_EINVAL;
    ax_json_put_integer(v, out);
    return 0;
}

typedef struct st_key_ref_t {
    const char *key;
    size_t len;
    json_t *value;
} key_ref_t;

static int compare_keys(const void *a, const void *b)
{
    const key_ref_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int encode_value(const json_t *v, ax_buf_t *out, int depth);

/* An object's members sorted by key (canonical JSON); apart, to keep the recursion's frames small. */
static int encode_sorted(const json_t *v, ax_buf_t *out, int depth)
{
    size_t n = json_object_size(v);
    key_ref_t stack_keys[16];
    key_ref_t *refs = n <= 16 ? stack_keys : ax_malloc(n * sizeof(*refs));
    size_t i = 0;
    for (void *iter = json_object_iter((json_t *)v); iter != NULL; iter = json_object_iter_next((json_t *)v, iter)) {
        refs[i].key = json_object_iter_key(iter);
        refs[i].len = json_object_iter_key_len(iter);
        refs[i].value = json_object_iter_value(iter);
        ++i;
    }
    qsort(refs, n, sizeof(*refs), compare_keys);
    int rc = 0;
    ax_buf_putc(out, '{');
    for (i = 0; i < n && rc == 0; ++i) {
        if (i != 0)
            ax_buf_putc(out, ',');
        ax_json_put_string(refs[i].key, refs[i].len, out);
        ax_buf_putc(out, ':');
        rc = encode_value(refs[i].value, out, depth + 1);
    }
    ax_buf_putc(out, '}');
    if (refs != stack_keys)
        free(refs);
    return rc;
}

static int encode_value(const json_t *v, ax_buf_t *out, int depth)
{
    if (depth > 128) /* jansson limits parse depth to 2048; signing needs far less */
        return AX_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return encode_sorted(v, out, depth);
    case JSON_ARRAY: {
        ax_buf_putc(out, '[');
        for (size_t i = 0; i < json_array_size(v); ++i) {
            if (i != 0)
                ax_buf_putc(out, ',');
            int rc = encode_value(json_array_get(v, i), out, depth + 1);
            if (rc != 0)
                return rc;
        }
        ax_buf_putc(out, ']');
        return 0;
    }
    case JSON_INTEGER:
        return encode_integer(json_integer_value(v), out);
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || fabs(d) > (double)AX_CJSON_MAX_INT)
            return AX_EINVAL;
        return encode_integer((json_int_t)d, out); /* -0.0 casts to 0 */
    }
    default: /* strings, true, false, null: as compact JSON writes them */
        return ax_json_encode(v, out);
    }
}

int ax_cjson_encode(const json_t *v, ax_buf_t *out)
{
    size_t start = out->len;
    int rc = encode_value(v, out, 0);
    if (rc != 0) {
        out->len = start;
        if (out->base != NULL)
            out->base[start] = '\0';
    }
    return rc;
}

static int check_strict(const json_t *v, int depth)
{
    if (depth > 128)
        return AX_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)v, k, val)
        {
            if (check_strict(val, depth + 1) != 0)
                return AX_EINVAL;
        }
        return 0;
    }
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(v); ++i)
            if (check_strict(json_array_get(v, i), depth + 1) != 0)
                return AX_EINVAL;
        return 0;
    case JSON_REAL:
        return AX_EINVAL;
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        return (i > AX_CJSON_MAX_INT || i < -AX_CJSON_MAX_INT) ? AX_EINVAL : 0;
    }
    default:
        return 0;
    }
}

int ax_cjson_check_strict(const json_t *v)
{
    return check_strict(v, 0);
}
