/*
 * canonical_json.c -- the spec's Canonical JSON (appendices, "Canonical
 * JSON"): object keys sorted by Unicode code point (bytewise on UTF-8), no
 * insignificant whitespace, UTF-8 output, the shortest escape for each
 * character, integers only in [-(2^53)+1, 2^53-1].
 *
 * jansson's dumps with JSON_SORT_KEYS is close but not equal (it escapes
 * differently and prints reals), so the encoder is our own; the spec's
 * vectors in tests/vectors pin it down byte for byte.
 */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void encode_string(const char *s, size_t len, ax_buf_t *out)
{
    static const char hex[] = "0123456789abcdef";
    ax_buf_reserve(out, len + 2);
    ax_buf_putc(out, '"');
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[7];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c < 0x20) {
            switch (c) {
            case '\b':
                esc = "\\b";
                break;
            case '\f':
                esc = "\\f";
                break;
            case '\n':
                esc = "\\n";
                break;
            case '\r':
                esc = "\\r";
                break;
            case '\t':
                esc = "\\t";
                break;
            default:
                ubuf[0] = '\\', ubuf[1] = 'u', ubuf[2] = '0', ubuf[3] = '0';
                ubuf[4] = hex[c >> 4], ubuf[5] = hex[c & 15], ubuf[6] = '\0';
                esc = ubuf;
            }
        }
        if (esc != NULL) {
            ax_buf_append(out, s + run, i - run);
            ax_buf_puts(out, esc);
            run = i + 1;
        }
    }
    ax_buf_append(out, s + run, len - run);
    ax_buf_putc(out, '"');
}

static int encode_integer(json_int_t v, ax_buf_t *out)
{
    if (v > AX_CJSON_MAX_INT || v < -AX_CJSON_MAX_INT)
        return AX_EINVAL;
    ax_buf_printf(out, "%lld", (long long)v);
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

static int encode_value(const json_t *v, ax_buf_t *out, int depth)
{
    if (depth > 128) /* jansson limits parse depth to 2048; signing needs far less */
        return AX_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        key_ref_t stack_keys[16];
        key_ref_t *refs = n <= 16 ? stack_keys : ax_malloc(n * sizeof(*refs));
        size_t i = 0;
        const char *key;
        json_t *val;
        void *iter;
        for (iter = json_object_iter((json_t *)v); iter != NULL; iter = json_object_iter_next((json_t *)v, iter)) {
            key = json_object_iter_key(iter);
            val = json_object_iter_value(iter);
            refs[i].key = key;
            refs[i].len = json_object_iter_key_len(iter);
            refs[i].value = val;
            ++i;
        }
        qsort(refs, n, sizeof(*refs), compare_keys);
        int rc = 0;
        ax_buf_putc(out, '{');
        for (i = 0; i < n && rc == 0; ++i) {
            if (i != 0)
                ax_buf_putc(out, ',');
            encode_string(refs[i].key, refs[i].len, out);
            ax_buf_putc(out, ':');
            rc = encode_value(refs[i].value, out, depth + 1);
        }
        ax_buf_putc(out, '}');
        if (refs != stack_keys)
            free(refs);
        return rc;
    }
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
    case JSON_STRING:
        encode_string(json_string_value(v), json_string_length(v), out);
        return 0;
    case JSON_INTEGER:
        return encode_integer(json_integer_value(v), out);
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || fabs(d) > (double)AX_CJSON_MAX_INT)
            return AX_EINVAL;
        return encode_integer((json_int_t)d, out); /* -0.0 casts to 0 */
    }
    case JSON_TRUE:
        ax_buf_puts(out, "true");
        return 0;
    case JSON_FALSE:
        ax_buf_puts(out, "false");
        return 0;
    case JSON_NULL:
        ax_buf_puts(out, "null");
        return 0;
    }
    return AX_EINVAL;
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
