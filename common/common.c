/*
 * common.c -- allocation, error strings, clocks, the byte buffer and small
 * string parsers declared in common.h.
 */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *ax_strerror(int code)
{
    switch (code) {
    case AX_OK:
        return "success";
    case AX_ERR:
        return "internal error";
    case AX_ENOTFOUND:
        return "not found";
    case AX_EEXIST:
        return "already exists";
    case AX_EINVAL:
        return "invalid input";
    case AX_EIO:
        return "I/O error";
    case AX_EMAPFULL:
        return "database map is full (raise map_size)";
    case AX_EFORBIDDEN:
        return "forbidden";
    case AX_ETOOBIG:
        return "too large";
    case AX_ECANCELED:
        return "canceled";
    case AX_EBADSIG:
        return "bad signature or hash";
    case AX_ESHUTDOWN:
        return "shutting down";
    case AX_ECONFLICT:
        return "conflict";
    case AX_EUNREACHABLE:
        return "remote server unreachable";
    default:
        return "unknown error";
    }
}

/* ---- Allocation ---- */

void *ax_malloc(size_t sz)
{
    void *p = malloc(sz == 0 ? 1 : sz);
    if (p == NULL)
        ax_fatal("out of memory allocating %zu bytes", sz);
    return p;
}

void *ax_calloc(size_t n, size_t sz)
{
    void *p = calloc(n == 0 ? 1 : n, sz == 0 ? 1 : sz);
    if (p == NULL)
        ax_fatal("out of memory allocating %zu x %zu bytes", n, sz);
    return p;
}

void *ax_realloc(void *p, size_t sz)
{
    void *q = realloc(p, sz == 0 ? 1 : sz);
    if (q == NULL)
        ax_fatal("out of memory reallocating %zu bytes", sz);
    return q;
}

char *ax_strdup(const char *s)
{
    return ax_strndup(s, strlen(s));
}

char *ax_strndup(const char *s, size_t n)
{
    char *p = ax_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ax_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        ax_fatal("vsnprintf failed");
    char *p = ax_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* ---- Clocks ---- */

uint64_t ax_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t ax_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* ---- Byte buffer ---- */

void ax_buf_reserve(ax_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1; /* +1 keeps room for the terminating NUL */
    if (need <= b->cap)
        return;
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need)
        cap *= 2;
    b->base = ax_realloc(b->base, cap);
    b->cap = cap;
}

void ax_buf_append(ax_buf_t *b, const void *p, size_t n)
{
    ax_buf_reserve(b, n);
    if (n != 0)
        memcpy(b->base + b->len, p, n);
    b->len += n;
    b->base[b->len] = '\0';
}

void ax_buf_putc(ax_buf_t *b, char c)
{
    ax_buf_reserve(b, 1);
    b->base[b->len++] = c;
    b->base[b->len] = '\0';
}

void ax_buf_puts(ax_buf_t *b, const char *s)
{
    ax_buf_append(b, s, strlen(s));
}

void ax_buf_printf(ax_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        ax_fatal("vsnprintf failed");
    ax_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ax_buf_reset(ax_buf_t *b)
{
    b->len = 0;
    if (b->base != NULL)
        b->base[0] = '\0';
}

void ax_buf_dispose(ax_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}

char *ax_buf_release(ax_buf_t *b, size_t *len)
{
    if (b->base == NULL)
        ax_buf_reserve(b, 0), b->base[0] = '\0';
    char *p = b->base;
    if (len != NULL)
        *len = b->len;
    b->base = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- Strings ---- */

bool ax_streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

int ax_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return AX_EINVAL;
    uint64_t v = 0;
    for (; *s != '\0'; ++s) {
        if (*s < '0' || *s > '9')
            return AX_EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return AX_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int ax_parse_size(const char *s, uint64_t *out)
{
    if (s == NULL)
        return AX_EINVAL;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        --n;
    size_t digits = 0;
    while (digits < n && s[digits] >= '0' && s[digits] <= '9')
        ++digits;
    if (digits == 0 || digits > 19)
        return AX_EINVAL;
    char num[20];
    memcpy(num, s, digits);
    num[digits] = '\0';
    uint64_t v;
    if (ax_parse_u64(num, &v) != 0)
        return AX_EINVAL;
    const char *unit = s + digits;
    size_t ulen = n - digits;
    unsigned shift = 0;
    if (ulen == 0 || (ulen == 1 && (unit[0] == 'B' || unit[0] == 'b'))) {
        shift = 0;
    } else {
        switch (unit[0]) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            return AX_EINVAL;
        }
        const char *rest = unit + 1;
        size_t rlen = ulen - 1;
        if (!(rlen == 0 || (rlen == 1 && (rest[0] == 'B' || rest[0] == 'b')) ||
              (rlen == 2 && rest[0] == 'i' && (rest[1] == 'B' || rest[1] == 'b'))))
            return AX_EINVAL;
    }
    if (shift != 0 && v > (UINT64_MAX >> shift))
        return AX_EINVAL;
    *out = v << shift;
    return 0;
}
