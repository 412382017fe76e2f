/*
 * log.c -- leveled logging to stderr as text or JSON lines.
 *
 * Each line is formatted into a stack buffer and written with a single
 * write(2), so lines from different threads never interleave.
 */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set once by ax_log_setup() before any thread starts; read-only after. */
static ax_log_level_t log_level = AX_LOG_INFO;
static ax_log_format_t log_format = AX_LOG_TEXT;

static const char *level_names[] = {"error", "warn", "info", "debug"};

void ax_log_setup(ax_log_level_t level, ax_log_format_t format)
{
    log_level = level;
    log_format = format;
}

bool ax_log_enabled(ax_log_level_t level)
{
    return level <= log_level;
}

static size_t format_time(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return n + (m > 0 ? (size_t)m : 0);
}

/* Appends 's' to out[*len..cap) as the inside of a JSON string. */
static void json_escape_into(char *out, size_t cap, size_t *len, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s != '\0' && *len + 7 < cap; ++s) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*len)++] = '\\';
            out[(*len)++] = (char)c;
        } else if (c < 0x20) {
            out[(*len)++] = '\\';
            out[(*len)++] = 'u';
            out[(*len)++] = '0';
            out[(*len)++] = '0';
            out[(*len)++] = hex[c >> 4];
            out[(*len)++] = hex[c & 15];
        } else {
            out[(*len)++] = (char)c;
        }
    }
}

static void write_line(const char *buf, size_t len)
{
    /* stderr may be a pipe that went away; nothing useful to do on failure */
    ssize_t r = write(STDERR_FILENO, buf, len);
    (void)r;
}

/* snprintf at out[*len] that never moves *len past cap - 1. */
static void appendf(char *out, size_t cap, size_t *len, const char *fmt, ...) AX_PRINTF(4, 5);
static void appendf(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *len += (size_t)n;
    if (*len > cap - 1)
        *len = cap - 1;
}

void ax_logv(ax_log_level_t level, const char *fmt, va_list ap)
{
    if (!ax_log_enabled(level))
        return;
    char msg[2048];
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        return;
    char line[2600];
    size_t len = 0;
    if (log_format == AX_LOG_JSON) {
        appendf(line, sizeof(line), &len, "{\"ts\":\"");
        len += format_time(line + len, sizeof(line) - len);
        appendf(line, sizeof(line), &len, "\",\"level\":\"%s\",\"msg\":\"", level_names[level]);
        json_escape_into(line, sizeof(line) - 3, &len, msg);
        line[len++] = '"';
        line[len++] = '}';
    } else {
        len += format_time(line, sizeof(line));
        appendf(line, sizeof(line) - 1, &len, " %-5s %s", level_names[level], msg);
    }
    line[len++] = '\n';
    write_line(line, len);
}

void ax_log(ax_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ax_logv(level, fmt, ap);
    va_end(ap);
}

void ax_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ax_logv(AX_LOG_ERROR, fmt, ap);
    va_end(ap);
    abort();
}

size_t ax_log_format_access(char *out, size_t cap, const ax_access_log_t *e)
{
    size_t len = 0;
    if (cap < 64)
        return 0;
    cap -= 1; /* room for the newline */
    if (log_format == AX_LOG_JSON) {
        appendf(out, cap, &len, "{\"ts\":\"");
        len += format_time(out + len, cap - len);
        appendf(out, cap, &len, "\",\"level\":\"info\",\"msg\":\"access\",\"method\":\"");
        json_escape_into(out, cap - 16, &len, e->method);
        appendf(out, cap, &len, "\",\"route\":\"");
        json_escape_into(out, cap - 16, &len, e->route);
        appendf(out, cap, &len, "\",\"client\":\"");
        json_escape_into(out, cap - 16, &len, e->client);
        if (e->user != NULL) {
            appendf(out, cap, &len, "\",\"user\":\"");
            json_escape_into(out, cap - 16, &len, e->user);
        }
        appendf(out, cap, &len, "\",\"status\":%d,\"bytes\":%llu,\"latency_ms\":%.3f}", e->status,
                (unsigned long long)e->bytes, e->latency_ms);
    } else {
        len += format_time(out, cap);
        appendf(out, cap, &len, " info  %s %s %s %d %llu %.3fms%s%s", e->client, e->method, e->route, e->status,
                (unsigned long long)e->bytes, e->latency_ms, e->user != NULL ? " " : "",
                e->user != NULL ? e->user : "");
    }
    out[len++] = '\n';
    out[len] = '\0';
    return len;
}
