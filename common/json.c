/*
 * json.c -- JSON text out of jansson values, for every response and stored
 * record.  jansson's json_dump* checks each object and array for reference
 * loops through a hash table keyed by its snprintf'ed address (a printf, an
 * allocation and a free per container) and calls back for every token; that
 * was a sixth of the server's CPU while /sync long-polls were being woken.
 * This writer appends straight into an ax_buf_t.  core/canonical_json.c
 * writes strings and integers with it too.
 */
#include "common/json.h"

#include <string.h>

void ax_json_put_string(const char *s, size_t len, ax_buf_t *out)
{
    static const char hex[] = "0123456789abcdef";
    ax_buf_reserve(out, len + 2);
    out->base[out->len++] = '"';
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue; /* most bytes: as they are */
        char esc[6] = {'\\', (char)c};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            n = 6;
        }
        ax_buf_append(out, s + run, i - run);
        ax_buf_append(out, esc, n);
        run = i + 1;
    }
    ax_buf_reserve(out, len - run + 1); /* the rest and the closing quote */
    memcpy(out->base + out->len, s + run, len - run);
    out->len += len - run;
    out->base[out->len++] = '"';
    out->base[out->len] = '\0';
}

/* Writes 'v' in decimal: no printf, as a response holds many integers (timestamps, counts). */
void ax_json_put_integer(json_int_t v, ax_buf_t *out)
{
    char digits[24];
    size_t i = sizeof(digits);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        digits[--i] = '-';
    ax_buf_append(out, digits + i, sizeof(digits) - i);
}

/* A real as jansson prints it (17 significant digits, always with a '.' or an exponent). */
static int put_real(const json_t *v, ax_buf_t *out)
{
    char text[64];
    size_t n = json_dumpb(v, text, sizeof(text), JSON_ENCODE_ANY);
    if (n == 0 || n > sizeof(text))
        return AX_EINVAL;
    ax_buf_append(out, text, n);
    return 0;
}

static int put_value(const json_t *v, ax_buf_t *out, int depth)
{
    if (depth > AX_JSON_MAX_DEPTH)
        return AX_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        int rc = 0;
        bool first = true;
        ax_buf_putc(out, '{');
        for (void *iter = json_object_iter((json_t *)v); iter != NULL && rc == 0;
             iter = json_object_iter_next((json_t *)v, iter)) {
            if (!first)
                ax_buf_putc(out, ',');
            first = false;
            ax_json_put_string(json_object_iter_key(iter), json_object_iter_key_len(iter), out);
            ax_buf_putc(out, ':');
            rc = put_value(json_object_iter_value(iter), out, depth + 1);
        }
        ax_buf_putc(out, '}');
        return rc;
    }
    case JSON_ARRAY: {
        ax_buf_putc(out, '[');
        for (size_t i = 0; i < json_array_size(v); ++i) {
            if (i != 0)
                ax_buf_putc(out, ',');
            int rc = put_value(json_array_get(v, i), out, depth + 1);
            if (rc != 0)
                return rc;
        }
        ax_buf_putc(out, ']');
        return 0;
    }
    case JSON_STRING:
        ax_json_put_string(json_string_value(v), json_string_length(v), out);
        return 0;
    case JSON_INTEGER:
        ax_json_put_integer(json_integer_value(v), out);
        return 0;
    case JSON_REAL:
        return put_real(v, out);
    case JSON_TRUE:
        ax_buf_append(out, "true", 4);
        return 0;
    case JSON_FALSE:
        ax_buf_append(out, "false", 5);
        return 0;
    case JSON_NULL:
        ax_buf_append(out, "null", 4);
        return 0;
    }
    return AX_EINVAL;
}

int ax_json_encode(const json_t *v, ax_buf_t *out)
{
    size_t start = out->len;
    int rc = v != NULL ? put_value(v, out, 0) : AX_EINVAL;
    if (rc != 0) {
        out->len = start;
        if (out->base != NULL)
            out->base[start] = '\0';
    }
    return rc;
}
