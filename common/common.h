/*
 * common.h -- the leaf utilities every layer of axon uses: allocation that
 * aborts on OOM, error codes, logging, clocks, a growable byte buffer and the
 * completion "port" that carries finished work back to the thread that asked
 * for it.  Nothing here depends on any other part of axon, which is why it
 * sits below storage/ (see docs/architecture.md).
 */
#ifndef AX_COMMON_H
#define AX_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AX_ARRAY_SIZE(a)                 (sizeof(a) / sizeof((a)[0]))
#define AX_STRLIT(s)                     (s), (sizeof(s) - 1)
#define AX_CONTAINER_OF(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))
#define AX_UNUSED(x)                     ((void)(x))

#if defined(__GNUC__)
#define AX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define AX_NORETURN     __attribute__((noreturn))
#define AX_WARN_UNUSED  __attribute__((warn_unused_result))
#else
#define AX_PRINTF(f, a)
#define AX_NORETURN
#define AX_WARN_UNUSED
#endif

/* ---- Error codes ------------------------------------------------------------
 * Internal functions return 0 on success or one of these negative codes
 * (LMDB/libsodium style).  Matrix errcodes are a separate table in
 * server/errors.c; these say what went wrong inside the process. */
enum {
    AX_OK = 0,
    AX_ERR = -1,           /* unspecified failure, already logged where detected */
    AX_ENOTFOUND = -2,     /* no such record */
    AX_EEXIST = -3,        /* record already exists */
    AX_EINVAL = -4,        /* malformed input */
    AX_EIO = -5,           /* disk or OS error */
    AX_EMAPFULL = -6,      /* LMDB map full: the database needs a larger map_size */
    AX_EFORBIDDEN = -7,    /* not allowed */
    AX_ETOOBIG = -8,       /* over a size limit */
    AX_ECANCELED = -9,     /* the request went away before the work finished */
    AX_EBADSIG = -10,      /* signature or hash does not verify */
    AX_ESHUTDOWN = -11,    /* the component is stopping and accepts no more work */
    AX_ECONFLICT = -12,    /* concurrent change or a stale precondition */
    AX_EUNREACHABLE = -13, /* a remote server could not be reached or gave no usable answer */
};

/**
 * Returns a static English description of an AX_E* code (never NULL).
 */
const char *ax_strerror(int code);

/* ---- Allocation -------------------------------------------------------------
 * OOM aborts (h2o, Redis zmalloc): callers never check for NULL. */
void *ax_malloc(size_t sz);
void *ax_calloc(size_t n, size_t sz);
void *ax_realloc(void *p, size_t sz);
char *ax_strdup(const char *s);
char *ax_strndup(const char *s, size_t n);
/** Returns a new heap string formatted like printf; the caller frees it. */
char *ax_asprintf(const char *fmt, ...) AX_PRINTF(1, 2);

/**
 * Logs 'fmt' at error level and aborts the process.  For invariants that
 * cannot be recovered from (OOM, a broken mutex); never for bad input.
 */
AX_NORETURN void ax_fatal(const char *fmt, ...) AX_PRINTF(1, 2);

/* ---- Logging ----------------------------------------------------------------
 * One line per event on stderr, as text or JSON.  The level and format are
 * set once at start-up (before threads start) and only read afterwards. */
typedef enum { AX_LOG_ERROR = 0, AX_LOG_WARN, AX_LOG_INFO, AX_LOG_DEBUG } ax_log_level_t;
typedef enum { AX_LOG_TEXT = 0, AX_LOG_JSON } ax_log_format_t;

void ax_log_setup(ax_log_level_t level, ax_log_format_t format);
bool ax_log_enabled(ax_log_level_t level);
void ax_log(ax_log_level_t level, const char *fmt, ...) AX_PRINTF(2, 3);
void ax_logv(ax_log_level_t level, const char *fmt, va_list ap);

/** The fields of one access-log line (server/http.c fills it). */
typedef struct st_ax_access_log_t {
    const char *method;
    const char *route;  /* the path template, never the raw path (it may carry secrets) */
    const char *client; /* peer address text */
    int status;
    uint64_t bytes;
    double latency_ms;
    const char *user; /* authenticated user or NULL */
} ax_access_log_t;

/**
 * Formats one access-log line into 'out' (at most 'cap' bytes, always
 * NUL-terminated) and returns its length.  The caller decides where and when
 * the line is written (HTTP threads buffer them).
 */
size_t ax_log_format_access(char *out, size_t cap, const ax_access_log_t *e);

/* ---- Clocks ------------------------------------------------------------------ */
/** Wall-clock milliseconds since the Unix epoch (origin_server_ts, valid_until_ts). */
uint64_t ax_now_ms(void);
/** Monotonic nanoseconds, for measuring latency. */
uint64_t ax_mono_ns(void);

/* ---- Byte buffer ---------------------------------------------------------------
 * A growable buffer owned by its user; 'base' is always NUL-terminated so it
 * can be used as a C string. */
typedef struct st_ax_buf_t {
    char *base;
    size_t len;
    size_t cap;
} ax_buf_t;

#define AX_BUF_INIT                                                                                                    \
    {                                                                                                                  \
        NULL, 0, 0                                                                                                     \
    }
void ax_buf_reserve(ax_buf_t *b, size_t extra);
void ax_buf_append(ax_buf_t *b, const void *p, size_t n);
void ax_buf_putc(ax_buf_t *b, char c);
void ax_buf_puts(ax_buf_t *b, const char *s);
void ax_buf_printf(ax_buf_t *b, const char *fmt, ...) AX_PRINTF(2, 3);
void ax_buf_reset(ax_buf_t *b);
void ax_buf_dispose(ax_buf_t *b);
/** Hands the contents to the caller (who frees them) and leaves 'b' empty. */
char *ax_buf_release(ax_buf_t *b, size_t *len);

/* ---- Completion ports ------------------------------------------------------------
 * Work done on another thread (the storage writer, the worker pool) comes
 * back to the thread that asked through a port.  A task embeds ax_task_t as
 * its first member ("subclass", as h2o does); the finishing thread calls
 * ax_port_post() with a chain of finished tasks and the port arranges for
 * each task's 'done' to run on its owner's thread.  server/http.c provides
 * ports backed by h2o's multithread queue; ax_syncport_t below blocks a
 * plain thread until its task finishes (start-up, CLI, tests). */
typedef struct st_ax_task_t ax_task_t;
typedef struct st_ax_port_t ax_port_t;

struct st_ax_task_t {
    /** Runs on the owner's thread once the work is finished; may free the task. */
    void (*done)(ax_task_t *task);
    /** Where 'done' must run; set by whoever submits the task. */
    ax_port_t *port;
    /** Result of the work: 0 or an AX_E* code. */
    int result;
    /** For the submitter's plumbing (server/http.c ties a task to its request with these). */
    void *owner;
    void (*owner_cb)(void);
    /* private: links tasks in queues and completion chains */
    ax_task_t *_next;
};

struct st_ax_port_t {
    /**
     * Called on the finishing thread with a NULL-terminated chain of tasks
     * (linked by _next) whose 'port' is this port.  Must not block for long.
     */
    void (*post)(ax_port_t *port, ax_task_t *chain);
};

/** Groups 'chain' by port and posts each group once (one wake-up per port). */
void ax_port_post_chain(ax_task_t *chain);

/** A port for a plain thread that waits for its tasks. */
typedef struct st_ax_syncport_t ax_syncport_t;
ax_syncport_t *ax_syncport_new(void);
void ax_syncport_free(ax_syncport_t *sp);
ax_port_t *ax_syncport_port(ax_syncport_t *sp);
/**
 * Blocks until 'task' (submitted with this port) has been posted back, then
 * runs its 'done' (if not NULL) on the calling thread and returns its result.
 */
int ax_syncport_wait(ax_syncport_t *sp, ax_task_t *task);

/* ---- Small string helpers ------------------------------------------------------ */
bool ax_streq(const char *a, const char *b);
/** Parses a decimal unsigned integer occupying the whole of 's'; returns AX_EINVAL otherwise. */
int ax_parse_u64(const char *s, uint64_t *out);
/** Parses "123", "64K", "50M", "50MiB", "1G" (powers of 1024) into bytes. */
int ax_parse_size(const char *s, uint64_t *out);

#endif
