/*
 * resolve.c -- server discovery (spec: Server-Server API, "Resolving server
 * names"): which address and port a server name leads to, which Host header
 * to send and which name its certificate must carry, following the spec's
 * steps 1-6 (IP literals, explicit ports, /.well-known/matrix/server with
 * its own cases 3.1-3.5, SRV _matrix-fed._tcp then the deprecated
 * _matrix._tcp, port 8448).  Also the .well-known caching rules and the
 * classification of addresses outbound requests must not reach.
 *
 * The resolver does no I/O itself: the .well-known fetch and SRV lookups are
 * operations injected by its owner (client.c in the server, fakes in
 * tests/unit/test_federation_resolve.c), which keeps every step testable.
 */
#include "federation/federation.h"
#include "common/strmap.h"
#include "core/events.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- Server names ---- */

int ax_server_name_split(const char *s, char *host, size_t cap, uint16_t *port, bool *is_ip)
{
    if (!ax_id_is_valid_server_name(s))
        return AX_EINVAL;
    const char *rest;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        hlen = (size_t)(close - s - 1);
        if (hlen >= cap)
            return AX_EINVAL;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return AX_EINVAL;
        *is_ip = true;
        rest = close + 1;
    } else {
        const char *colon = strchr(s, ':');
        hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
        if (hlen >= cap)
            return AX_EINVAL;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        struct in_addr a4;
        *is_ip = inet_pton(AF_INET, host, &a4) == 1;
        rest = s + hlen;
    }
    *port = 0;
    if (*rest == ':') {
        uint64_t p;
        if (ax_parse_u64(rest + 1, &p) != 0 || p == 0 || p > 65535)
            return AX_EINVAL;
        *port = (uint16_t)p;
    }
    return 0;
}

/* ---- .well-known caching ---- */

/* Finds directive 'name' in a Cache-Control value; stores "=value" into 'val' (cap bytes) when present. */
static bool cc_directive(const char *cc, const char *name, char *val, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = cc;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            ++p;
        const char *start = p;
        while (*p != '\0' && *p != ',' && *p != '=' && *p != ' ' && *p != '\t')
            ++p;
        bool match = (size_t)(p - start) == nlen && strncasecmp(start, name, nlen) == 0;
        while (*p == ' ' || *p == '\t')
            ++p;
        const char *v = NULL;
        size_t vlen = 0;
        if (*p == '=') {
            ++p;
            while (*p == ' ' || *p == '\t')
                ++p;
            bool quoted = *p == '"';
            if (quoted)
                ++p;
            v = p;
            while (*p != '\0' && (quoted ? *p != '"' : (*p != ',' && *p != ' ' && *p != '\t')))
                ++p;
            vlen = (size_t)(p - v);
            if (quoted && *p == '"')
                ++p;
        }
        if (match) {
            if (val != NULL) {
                size_t n = vlen < cap - 1 ? vlen : cap - 1;
                if (v != NULL)
                    memcpy(val, v, n);
                val[v != NULL ? n : 0] = '\0';
            }
            return true;
        }
        while (*p != '\0' && *p != ',')
            ++p;
    }
    return false;
}

/* Parses an HTTP-date (IMF-fixdate, the only form senders must generate) into ms since the epoch. */
static bool parse_http_date(const char *s, uint64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == NULL || *end != '\0')
        return false;
    time_t t = timegm(&tm);
    if (t < 0)
        return false;
    *out = (uint64_t)t * 1000;
    return true;
}

static uint64_t clamp_period(uint64_t ms)
{
    if (ms < AX_WELLKNOWN_MIN_MS)
        return AX_WELLKNOWN_MIN_MS;
    return ms > AX_WELLKNOWN_MAX_MS ? AX_WELLKNOWN_MAX_MS : ms;
}

uint64_t ax_wellknown_cache_ms(const char *cache_control, const char *expires, uint64_t now_ms)
{
    if (cache_control != NULL) {
        char v[32];
        if (cc_directive(cache_control, "no-store", NULL, 0) || cc_directive(cache_control, "no-cache", NULL, 0))
            return clamp_period(0);
        if (cc_directive(cache_control, "max-age", v, sizeof(v))) {
            uint64_t secs;
            if (ax_parse_u64(v, &secs) == 0)
                return clamp_period(secs > AX_WELLKNOWN_MAX_MS / 1000 ? AX_WELLKNOWN_MAX_MS : secs * 1000);
            return clamp_period(0); /* a malformed max-age means stale (RFC 9111 4.2.1) */
        }
    }
    if (expires != NULL) {
        uint64_t at;
        if (!parse_http_date(expires, &at) || at <= now_ms)
            return clamp_period(0); /* invalid dates and dates in the past mean "already expired" */
        return clamp_period(at - now_ms);
    }
    return AX_WELLKNOWN_DEFAULT_MS;
}

/* ---- The resolver ---- */

typedef struct st_wk_entry_t {
    bool valid;       /* m.server was found */
    char server[256]; /* the m.server value */
    uint64_t expires_ms;
    unsigned failures; /* consecutive failed fetches, for the error backoff */
} wk_entry_t;

typedef struct st_target_entry_t {
    ax_fed_target_t target;
    uint64_t expires_ms;
} target_entry_t;

typedef struct st_waiter_t {
    ax_resolve_cb cb;
    void *arg;
    struct st_waiter_t *next;
} waiter_t;

typedef enum {
    STAGE_WELLKNOWN,
    STAGE_SRV_FED_DELEGATED,    /* step 3.3 */
    STAGE_SRV_LEGACY_DELEGATED, /* step 3.4 */
    STAGE_SRV_FED,              /* step 4 */
    STAGE_SRV_LEGACY,           /* step 5 */
} stage_t;

/* One server name being resolved; the steps' completions find their way back through it. */
struct st_ax_resolve_step_t {
    ax_resolver_t *rs;
    char server_name[256];
    char host[256];  /* the server name's hostname */
    char dhost[256]; /* the delegated hostname (step 3) */
    stage_t stage;
    bool degraded;          /* a DNS lookup failed on the way: cache the outcome briefly */
    uint64_t wk_expires_ms; /* expiry of the .well-known answer used, 0 if none */
    waiter_t *waiters;
};

struct st_ax_resolver_t {
    const ax_resolve_ops_t *ops;
    void *ctx;
    ax_strmap_t wellknown; /* hostname -> wk_entry_t */
    ax_strmap_t targets;   /* server name -> target_entry_t */
    ax_strmap_t pending;   /* server name -> ax_resolve_step_t */
};

ax_resolver_t *ax_resolver_new(const ax_resolve_ops_t *ops, void *ctx)
{
    ax_resolver_t *rs = ax_calloc(1, sizeof(*rs));
    rs->ops = ops;
    rs->ctx = ctx;
    return rs;
}

static void free_value(void *arg, const char *key, void *value)
{
    AX_UNUSED(arg);
    AX_UNUSED(key);
    free(value);
}

void ax_resolver_free(ax_resolver_t *rs)
{
    if (rs == NULL)
        return;
    ax_strmap_foreach(&rs->wellknown, free_value, NULL);
    ax_strmap_foreach(&rs->targets, free_value, NULL);
    ax_strmap_dispose(&rs->wellknown);
    ax_strmap_dispose(&rs->targets);
    ax_strmap_dispose(&rs->pending);
    free(rs);
}

static uint64_t now_ms(ax_resolver_t *rs)
{
    return rs->ops->now_ms(rs->ctx);
}

static void set_target(ax_fed_target_t *t, const char *host, uint16_t port, const char *host_header,
                       const char *tls_name, bool tls_is_ip)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->port = port;
    snprintf(t->host_header, sizeof(t->host_header), "%s", host_header);
    snprintf(t->tls_name, sizeof(t->tls_name), "%s", tls_name);
    t->tls_name_is_ip = tls_is_ip;
}

/* Ends a resolution: caches the target and answers everyone waiting for it. */
static void finish(ax_resolve_step_t *step, const ax_fed_target_t *t)
{
    ax_resolver_t *rs = step->rs;
    uint64_t now = now_ms(rs);
    uint64_t until = now + (step->degraded ? AX_RESOLVE_TARGET_DEGRADED_MS : AX_RESOLVE_TARGET_MS);
    if (step->wk_expires_ms != 0 && step->wk_expires_ms < until)
        until = step->wk_expires_ms;
    target_entry_t *e = ax_strmap_get(&rs->targets, step->server_name);
    if (e == NULL) {
        e = ax_malloc(sizeof(*e));
        ax_strmap_put(&rs->targets, step->server_name, e);
    }
    e->target = *t;
    e->expires_ms = until;
    ax_strmap_del(&rs->pending, step->server_name);
    ax_fed_target_t copy = *t; /* a waiter may resolve again and replace the cache entry */
    waiter_t *w = step->waiters;
    free(step);
    while (w != NULL) {
        waiter_t *next = w->next;
        w->cb(w->arg, 0, &copy, NULL);
        free(w);
        w = next;
    }
}

/* Picks the SRV record to use (RFC 2782): lowest priority, then weighted random.  NULL when none is usable. */
static const ax_srv_record_t *srv_choose(ax_resolver_t *rs, const ax_srv_record_t *recs, size_t n)
{
    int best = -1;
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
        if (recs[i].target[0] == '\0' || strcmp(recs[i].target, ".") == 0 || recs[i].port == 0)
            continue;
        if (best < 0 || recs[i].priority < best) {
            best = recs[i].priority;
            total = 0;
        }
        if (recs[i].priority == best)
            total += recs[i].weight;
    }
    if (best < 0)
        return NULL;
    /* zero-weight records first, then running sums against a number in [0, total] */
    uint32_t pick = rs->ops->random != NULL ? rs->ops->random(rs->ctx, (uint32_t)total + 1)
                                            : randombytes_uniform((uint32_t)total + 1);
    uint64_t sum = 0;
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < n; ++i) {
            const ax_srv_record_t *r = &recs[i];
            if (r->priority != best || r->target[0] == '\0' || strcmp(r->target, ".") == 0 || r->port == 0)
                continue;
            if ((pass == 0) != (r->weight == 0))
                continue;
            sum += r->weight;
            if (sum >= pick)
                return r;
        }
    }
    return NULL; /* not reached: the last record's running sum is 'total' */
}

static void lookup_srv(ax_resolve_step_t *step, stage_t stage, const char *prefix, const char *name)
{
    char q[300];
    snprintf(q, sizeof(q), "%s%s", prefix, name);
    step->stage = stage;
    step->rs->ops->lookup_srv(step->rs->ctx, step, q);
}

/* Steps 3.1-3.5 and 4-6, once the .well-known answer (or its absence) is known. */
static void after_wellknown(ax_resolve_step_t *step, const wk_entry_t *wk)
{
    ax_fed_target_t t;
    step->wk_expires_ms = wk->expires_ms;
    if (!wk->valid) {
        /* 4. SRV _matrix-fed._tcp.<hostname> */
        lookup_srv(step, STAGE_SRV_FED, "_matrix-fed._tcp.", step->host);
        return;
    }
    uint16_t dport;
    bool dis_ip;
    if (ax_server_name_split(wk->server, step->dhost, sizeof(step->dhost), &dport, &dis_ip) != 0) {
        lookup_srv(step, STAGE_SRV_FED, "_matrix-fed._tcp.", step->host); /* not reached: checked when cached */
        return;
    }
    if (dis_ip) {
        /* 3.1 an IP literal: that address; Host is the IP with the port if one was given */
        set_target(&t, step->dhost, dport != 0 ? dport : AX_FED_DEFAULT_PORT, wk->server, step->dhost, true);
        finish(step, &t);
        return;
    }
    if (dport != 0) {
        /* 3.2 hostname with a port: Host is <delegated_hostname>:<delegated_port> */
        set_target(&t, step->dhost, dport, wk->server, step->dhost, false);
        finish(step, &t);
        return;
    }
    /* 3.3 SRV _matrix-fed._tcp.<delegated_hostname> */
    lookup_srv(step, STAGE_SRV_FED_DELEGATED, "_matrix-fed._tcp.", step->dhost);
}

void ax_resolver_resolve(ax_resolver_t *rs, const char *server_name, ax_resolve_cb cb, void *arg)
{
    char host[256];
    uint16_t port;
    bool is_ip;
    if (ax_server_name_split(server_name, host, sizeof(host), &port, &is_ip) != 0) {
        cb(arg, AX_EINVAL, NULL, "not a valid server name");
        return;
    }
    ax_fed_target_t t;
    if (is_ip) {
        /* 1. an IP literal: that address, the port or 8448; Host is the server name */
        set_target(&t, host, port != 0 ? port : AX_FED_DEFAULT_PORT, server_name, host, true);
        cb(arg, 0, &t, NULL);
        return;
    }
    if (port != 0) {
        /* 2. a hostname with an explicit port: its addresses; Host is the server name */
        set_target(&t, host, port, server_name, host, false);
        cb(arg, 0, &t, NULL);
        return;
    }
    uint64_t now = now_ms(rs);
    target_entry_t *cached = ax_strmap_get(&rs->targets, server_name);
    if (cached != NULL && cached->expires_ms > now) {
        t = cached->target;
        cb(arg, 0, &t, NULL);
        return;
    }
    waiter_t *w = ax_malloc(sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    ax_resolve_step_t *step = ax_strmap_get(&rs->pending, server_name);
    if (step != NULL) {
        w->next = step->waiters;
        step->waiters = w;
        return;
    }
    step = ax_calloc(1, sizeof(*step));
    step->rs = rs;
    snprintf(step->server_name, sizeof(step->server_name), "%s", server_name);
    snprintf(step->host, sizeof(step->host), "%s", host);
    w->next = NULL;
    step->waiters = w;
    ax_strmap_put(&rs->pending, server_name, step);

    /* 3. /.well-known/matrix/server, cached */
    wk_entry_t *wk = ax_strmap_get(&rs->wellknown, host);
    if (wk != NULL && wk->expires_ms > now) {
        after_wellknown(step, wk);
        return;
    }
    step->stage = STAGE_WELLKNOWN;
    rs->ops->fetch_wellknown(rs->ctx, step, host);
}

typedef struct st_prune_t {
    ax_resolver_t *rs;
    uint64_t now;
    bool targets;
    char **keys;
    size_t n, cap;
} prune_t;

static void find_stale(void *arg, const char *key, void *value)
{
    prune_t *p = arg;
    /* .well-known entries stay an hour past expiry: their failure count drives the error backoff */
    uint64_t until = p->targets ? ((target_entry_t *)value)->expires_ms
                                : ((wk_entry_t *)value)->expires_ms + AX_WELLKNOWN_ERROR_MAX_MS;
    if (until > p->now)
        return;
    if (p->n == p->cap)
        p->keys = ax_realloc(p->keys, (p->cap = p->cap ? p->cap * 2 : 16) * sizeof(char *));
    p->keys[p->n++] = ax_strdup(key);
}

void ax_resolver_prune(ax_resolver_t *rs)
{
    for (int pass = 0; pass < 2; ++pass) {
        prune_t p = {rs, now_ms(rs), pass == 0, NULL, 0, 0};
        ax_strmap_t *m = pass == 0 ? &rs->targets : &rs->wellknown;
        ax_strmap_foreach(m, find_stale, &p);
        for (size_t i = 0; i < p.n; ++i) {
            free(ax_strmap_del(m, p.keys[i]));
            free(p.keys[i]);
        }
        free(p.keys);
    }
}

void ax_resolver_forget(ax_resolver_t *rs, const char *server_name)
{
    free(ax_strmap_del(&rs->targets, server_name));
}

/* The m.server of a valid .well-known body, or false. */
static bool parse_wellknown(const char *body, size_t len, char *out, size_t cap)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    json_t *v = json_object_get(doc, "m.server");
    bool ok = json_is_object(doc) && json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
              json_string_length(v) < cap;
    if (ok) {
        char host[256];
        uint16_t port;
        bool is_ip;
        ok = ax_server_name_split(json_string_value(v), host, sizeof(host), &port, &is_ip) == 0;
        if (ok)
            snprintf(out, cap, "%s", json_string_value(v));
    }
    json_decref(doc);
    return ok;
}

void ax_resolver_wellknown_done(ax_resolve_step_t *step, int status, const char *body, size_t len,
                                const char *cache_control, const char *expires)
{
    ax_resolver_t *rs = step->rs;
    uint64_t now = now_ms(rs);
    wk_entry_t *wk = ax_strmap_get(&rs->wellknown, step->host);
    if (wk == NULL) {
        wk = ax_calloc(1, sizeof(*wk));
        ax_strmap_put(&rs->wellknown, step->host, wk);
    }
    char server[256];
    if (status == 200 && body != NULL && parse_wellknown(body, len, server, sizeof(server))) {
        wk->valid = true;
        snprintf(wk->server, sizeof(wk->server), "%s", server);
        wk->failures = 0;
        wk->expires_ms = now + ax_wellknown_cache_ms(cache_control, expires, now);
    } else {
        /* errors are cached too, for 30 s doubling with each repeated failure up to an hour; a
         * delegation we knew survives a transport failure (no answer, 5xx) meanwhile */
        bool transport = status == 0 || status >= 500;
        if (!(wk->valid && transport))
            wk->valid = false;
        wk->failures = wk->failures < 16 ? wk->failures + 1 : 16;
        uint64_t period = AX_WELLKNOWN_ERROR_MS << (wk->failures - 1);
        wk->expires_ms = now + (period > AX_WELLKNOWN_ERROR_MAX_MS ? AX_WELLKNOWN_ERROR_MAX_MS : period);
    }
    after_wellknown(step, wk);
}

void ax_resolver_srv_done(ax_resolve_step_t *step, int rc, const ax_srv_record_t *records, size_t n)
{
    ax_resolver_t *rs = step->rs;
    const ax_srv_record_t *r = rc == 0 ? srv_choose(rs, records, n) : NULL;
    if (rc != 0 && rc != AX_ENOTFOUND)
        step->degraded = true;
    bool delegated = step->stage == STAGE_SRV_FED_DELEGATED || step->stage == STAGE_SRV_LEGACY_DELEGATED;
    const char *name = delegated ? step->dhost : step->host;
    ax_fed_target_t t;
    if (r != NULL) {
        /* 3.3, 3.4, 4, 5: the SRV target; Host and certificate are the (delegated) hostname */
        char target[256];
        snprintf(target, sizeof(target), "%s", r->target);
        size_t tl = strlen(target);
        if (tl > 1 && target[tl - 1] == '.')
            target[tl - 1] = '\0';
        set_target(&t, target, r->port, name, name, false);
        finish(step, &t);
        return;
    }
    switch (step->stage) {
    case STAGE_SRV_FED_DELEGATED:
        lookup_srv(step, STAGE_SRV_LEGACY_DELEGATED, "_matrix._tcp.", step->dhost);
        return;
    case STAGE_SRV_FED:
        lookup_srv(step, STAGE_SRV_LEGACY, "_matrix._tcp.", step->host);
        return;
    default:
        /* 3.5 and 6: the hostname's own addresses on port 8448 */
        set_target(&t, name, AX_FED_DEFAULT_PORT, name, name, false);
        finish(step, &t);
        return;
    }
}
