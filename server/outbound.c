/*
 * outbound.c -- the outbound HTTP/1.1 client (server/outbound.h) on
 * libh2o 2.2.5's h2o_http1client (NOTES-libs.md "Outbound HTTP").
 *
 * h2o would resolve host names itself, but then nobody could look at the
 * addresses before connecting, and a public name pointing at 127.0.0.1
 * would walk past outbound_allow_private.  So this file resolves with
 * h2o's getaddrinfo pool, applies the policy to every address, and
 * connects through a socket pool made for the chosen address whose "host"
 * is set back to the name: h2o uses that for SNI and certificate name
 * checks.  Pools are kept per destination (scheme, host, port) for a
 * minute, so bursts of requests to one push gateway reuse connections.
 */
#include "server/outbound.h"
#include "server/http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define DEST_TTL_MS        60000 /* re-resolve a destination after this long */
#define KEEPALIVE_MS       10000 /* idle pooled connections close after this long */
#define MAX_RESPONSE_BYTES (1 << 20)

/* ---- URLs and address policy ---- */

int ax_url_parse(const char *url, ax_url_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        out->https = true, out->port = 443, p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        out->port = 80, p = url + 7;
    } else {
        return AX_EINVAL;
    }
    size_t alen = strcspn(p, "/?#");
    const char *auth_end = p + alen;
    if (alen == 0 || memchr(p, '@', alen) != NULL || strchr(url, '#') != NULL)
        return AX_EINVAL;
    const char *host = p, *host_end, *colon = NULL;
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(p, ']', alen);
        if (host_end == NULL)
            return AX_EINVAL;
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':')
                return AX_EINVAL;
            colon = host_end + 1;
        }
    } else {
        colon = memchr(p, ':', alen);
        host_end = colon != NULL ? colon : auth_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof(out->host))
        return AX_EINVAL;
    memcpy(out->host, host, hlen);
    for (size_t i = 0; i < hlen; ++i) {
        unsigned char c = (unsigned char)out->host[i];
        if (c <= ' ' || c == '%' || c == '\\' || c >= 0x7F)
            return AX_EINVAL;
        out->host[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (colon != NULL) {
        char port[8];
        size_t plen = (size_t)(auth_end - colon - 1);
        uint64_t n;
        if (plen == 0 || plen >= sizeof(port))
            return AX_EINVAL;
        memcpy(port, colon + 1, plen);
        port[plen] = '\0';
        if (ax_parse_u64(port, &n) != 0 || n == 0 || n > 65535)
            return AX_EINVAL;
        out->port = (uint16_t)n;
    }
    const char *path = *auth_end == '\0' ? "/" : auth_end;
    if (*path == '?') {
        if (snprintf(out->path, sizeof(out->path), "/%s", path) >= (int)sizeof(out->path))
            return AX_EINVAL;
    } else if (snprintf(out->path, sizeof(out->path), "%s", path) >= (int)sizeof(out->path)) {
        return AX_EINVAL;
    }
    for (const char *c = out->path; *c != '\0'; ++c)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7F)
            return AX_EINVAL;
    return 0;
}

static bool v4_is_private(const uint8_t a[4])
{
    uint32_t v = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
    static const struct {
        uint32_t net;
        unsigned bits;
    } ranges[] = {
        {0x00000000, 8},  /* 0.0.0.0/8 "this network" */
        {0x0a000000, 8},  /* 10.0.0.0/8 private */
        {0x64400000, 10}, /* 100.64.0.0/10 carrier-grade NAT */
        {0x7f000000, 8},  /* 127.0.0.0/8 loopback */
        {0xa9fe0000, 16}, /* 169.254.0.0/16 link-local */
        {0xac100000, 12}, /* 172.16.0.0/12 private */
        {0xc0000000, 24}, /* 192.0.0.0/24 IETF protocol assignments */
        {0xc0000200, 24}, /* 192.0.2.0/24 documentation */
        {0xc0586300, 24}, /* 192.88.99.0/24 6to4 relay anycast */
        {0xc0a80000, 16}, /* 192.168.0.0/16 private */
        {0xc6120000, 15}, /* 198.18.0.0/15 benchmarking */
        {0xc6336400, 24}, /* 198.51.100.0/24 documentation */
        {0xcb007100, 24}, /* 203.0.113.0/24 documentation */
        {0xe0000000, 4},  /* 224.0.0.0/4 multicast */
        {0xf0000000, 4},  /* 240.0.0.0/4 reserved, and the broadcast address */
    };
    for (size_t i = 0; i < AX_ARRAY_SIZE(ranges); ++i) {
        uint32_t mask = ranges[i].bits == 0 ? 0 : 0xffffffffu << (32 - ranges[i].bits);
        if ((v & mask) == ranges[i].net)
            return true;
    }
    return false;
}

static bool v6_prefix(const uint8_t a[16], const uint8_t *p, unsigned bits)
{
    unsigned full = bits / 8, rem = bits % 8;
    if (memcmp(a, p, full) != 0)
        return false;
    if (rem == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (a[full] & mask) == (p[full] & mask);
}

static bool v6_is_private(const uint8_t a[16])
{
    static const uint8_t zero[16] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const uint8_t ula[1] = {0xfc};                      /* fc00::/7 */
    static const uint8_t linklocal[2] = {0xfe, 0x80};          /* fe80::/10 */
    static const uint8_t sitelocal[2] = {0xfe, 0xc0};          /* fec0::/10, deprecated */
    static const uint8_t multicast[1] = {0xff};                /* ff00::/8 */
    static const uint8_t doc[4] = {0x20, 0x01, 0x0d, 0xb8};    /* 2001:db8::/32 */
    static const uint8_t discard[8] = {0x01, 0x00};            /* 100::/64 */
    static const uint8_t teredo[4] = {0x20, 0x01, 0x00, 0x00}; /* 2001::/32 */
    static const uint8_t sixtofour[2] = {0x20, 0x02};          /* 2002::/16, embeds an IPv4 address */
    if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))
        return true; /* :: and ::1 */
    if (memcmp(a, zero, 12) == 0)
        return true; /* deprecated IPv4-compatible addresses */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return v4_is_private(a + 12);
    if (v6_prefix(a, sixtofour, 16))
        return v4_is_private(a + 2);
    return v6_prefix(a, ula, 7) || v6_prefix(a, linklocal, 10) || v6_prefix(a, sitelocal, 10) ||
           v6_prefix(a, multicast, 8) || v6_prefix(a, doc, 32) || v6_prefix(a, discard, 64) || v6_prefix(a, teredo, 32);
}

bool ax_addr_is_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_is_private((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return v6_is_private(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
    return true; /* anything else (unix sockets) is not the internet */
}

bool ax_outbound_host_private(const char *host)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, host, &sin.sin_addr) == 1)
        return ax_addr_is_private((struct sockaddr *)&sin);
    if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1)
        return ax_addr_is_private((struct sockaddr *)&sin6);
    size_t n = strlen(host);
    while (n > 0 && host[n - 1] == '.')
        --n; /* "localhost." is localhost */
    return (n == 9 && strncasecmp(host, "localhost", 9) == 0) ||
           (n > 10 && strncasecmp(host + n - 10, ".localhost", 10) == 0);
}

/* ---- the client ---- */

typedef struct st_dest_t {
    h2o_socketpool_t pool;
    SSL_CTX *ssl_ctx;                 /* https: verifies the chain and this destination's host name */
    h2o_http1client_ctx_t client_ctx; /* the outbound loop's, with ssl_ctx */
    uint64_t created_at;
    int refs;
    bool retired; /* no longer in the map: freed when its last request is done */
    bool failed;  /* a connection failed: resolve again next time */
} dest_t;

typedef struct st_oreq_t oreq_t;

typedef struct st_call_msg_t {
    h2o_multithread_message_t super;
    void (*fn)(void *arg);
    void *arg;
    struct st_call_msg_t *next_early;
} call_msg_t;

struct st_ax_outbound_t {
    ax_outbound_opts_t opts;
    char *ca_file;     /* a copy of opts.ca_file, or NULL */
    X509_STORE *store; /* trusted CAs: the system's and ca_file; made by the first https request */
    pthread_t tid;
    bool started;

    h2o_evloop_t *loop;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t getaddr_receiver;
    h2o_multithread_receiver_t call_receiver;
    ax_hport_t port;
    h2o_timeout_t io_timeout, zero_timeout, tick_timeout;
    h2o_timeout_entry_t tick_entry;
    h2o_http1client_ctx_t client_ctx;

    void (*tick_fn)(void *arg);
    void *tick_arg;

    pthread_mutex_t call_mutex;
    pthread_cond_t ready_cond;
    bool ready;        /* the loop exists: calls go to its queue */
    bool calls_closed; /* the loop is gone: calls run on the caller */
    call_msg_t *early; /* calls made before the loop existed, oldest first */
    call_msg_t **early_tail;

    _Atomic bool stopping;
    bool stop_handled;
    _Atomic int jobs;
    size_t resolving;  /* getaddrinfo lookups not yet answered */
    oreq_t *inflight;  /* requests whose callback has not run */
    size_t pending;    /* requests not yet freed */
    ax_strmap_t dests; /* "s|host|port" -> dest_t */
};

struct st_oreq_t {
    ax_outbound_t *ob;
    ax_url_t url;
    char key[300];
    char *head, *body;
    size_t head_len, body_len;
    h2o_iovec_t bufs[2];
    ax_outbound_cb cb;
    void *arg;
    dest_t *dest;
    h2o_http1client_t *client;
    bool resolving, finished;
    int status;
    const char *error;
    bool refused;
    ax_buf_t resp;
    h2o_timeout_entry_t later;
    oreq_t *next, **pprev;
};

static void dest_free(dest_t *d)
{
    h2o_socketpool_dispose(&d->pool);
    if (d->ssl_ctx != NULL)
        SSL_CTX_free(d->ssl_ctx);
    free(d);
}

static void dest_release(dest_t *d)
{
    if (--d->refs == 0 && d->retired)
        dest_free(d);
}

static void dest_retire(ax_outbound_t *ob, const char *key)
{
    dest_t *old = ax_strmap_del(&ob->dests, key);
    if (old == NULL)
        return;
    old->retired = true;
    if (old->refs == 0)
        dest_free(old);
}

/* Frees a finished request on a later loop turn, once h2o has closed or pooled its connection. */
static void on_later_free(h2o_timeout_entry_t *entry)
{
    oreq_t *r = AX_CONTAINER_OF(entry, oreq_t, later);
    if (r->dest != NULL)
        dest_release(r->dest);
    r->ob->pending--;
    free(r->head);
    free(r->body);
    ax_buf_dispose(&r->resp);
    free(r);
}

/* Runs the callback once and unlinks the request; it is freed later (or when its lookup returns). */
static void finish(oreq_t *r)
{
    if (r->finished)
        return;
    r->finished = true;
    if (r->pprev != NULL) {
        *r->pprev = r->next;
        if (r->next != NULL)
            r->next->pprev = r->pprev;
        r->pprev = NULL;
    }
    ax_http_result_t res = {.status = r->status,
                            .error = r->error,
                            .refused = r->refused,
                            .body = r->resp.base != NULL ? r->resp.base : "",
                            .body_len = r->resp.len};
    r->cb(r->arg, &res);
    if (!r->resolving)
        h2o_timeout_link(r->ob->loop, &r->ob->zero_timeout, &r->later);
}

static void fail(oreq_t *r, const char *error)
{
    r->status = 0;
    r->error = error;
    finish(r);
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    oreq_t *r = client->data;
    h2o_buffer_t *in = client->sock != NULL ? client->sock->input : NULL;
    if (in != NULL && in->size != 0) {
        if (r->resp.len + in->size > MAX_RESPONSE_BYTES) {
            r->client = NULL;
            fail(r, "response too large");
            return -1;
        }
        ax_buf_append(&r->resp, in->bytes, in->size);
        h2o_buffer_consume(&client->sock->input, in->size);
    }
    if (errstr == h2o_http1client_error_is_eos) {
        r->client = NULL;
        finish(r);
    } else if (errstr != NULL) {
        r->client = NULL;
        fail(r, errstr);
    }
    return 0;
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *client, const char *errstr, int minor_version, int status,
                                       h2o_iovec_t msg, h2o_header_t *headers, size_t num_headers, int rlen)
{
    (void)minor_version, (void)msg, (void)headers, (void)num_headers, (void)rlen;
    oreq_t *r = client->data;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        r->client = NULL;
        fail(r, errstr);
        return NULL;
    }
    r->status = status;
    if (errstr == h2o_http1client_error_is_eos) {
        r->client = NULL;
        finish(r);
        return NULL;
    }
    return on_body;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
                                          size_t *reqbufcnt, int *method_is_head)
{
    oreq_t *r = client->data;
    if (errstr != NULL) {
        r->client = NULL;
        r->dest->failed = true; /* resolve again next time: the address may have moved */
        fail(r, errstr);
        return NULL;
    }
    r->bufs[0] = h2o_iovec_init(r->head, r->head_len);
    r->bufs[1] = h2o_iovec_init(r->body, r->body_len);
    *reqbufs = r->bufs;
    *reqbufcnt = 2;
    *method_is_head = 0;
    return on_head;
}

static void start_client(oreq_t *r, dest_t *d)
{
    r->dest = d;
    d->refs++;
    h2o_http1client_connect_with_pool(&r->client, r, &d->client_ctx, &d->pool, on_connect);
}

/*
 * A TLS context for one destination: the shared trust store, and OpenSSL's
 * own host name check (X509_check_host rules: no partial wildcards) during
 * the handshake.  h2o 2.2.5 checks the name again with its own matcher,
 * which cannot match IP addresses: https to an IP literal is not supported.
 */
/*
 * The trusted CAs: the system's, and 'ca_file' when given.  Loading them
 * starts OpenSSL and parses every system certificate, about 2 MB of memory an
 * idle server never needs, so it waits for the first https request (on the
 * outbound thread) or for a 'ca_file' to check at start-up.
 */
static X509_STORE *load_store(const char *ca_file, char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    if (store == NULL || X509_STORE_set_default_paths(store) != 1) {
        snprintf(err, errlen, "outbound: cannot load the system's trusted certificates");
        X509_STORE_free(store);
        return NULL;
    }
    if (ca_file != NULL && X509_STORE_load_file(store, ca_file) != 1) {
        snprintf(err, errlen, "outbound: cannot load the CA file '%s'", ca_file);
        X509_STORE_free(store);
        return NULL;
    }
    return store;
}

static SSL_CTX *dest_ssl_ctx(ax_outbound_t *ob, const char *host)
{
    if (ob->store == NULL) {
        char err[512];
        if ((ob->store = load_store(ob->ca_file, err, sizeof(err))) == NULL) {
            /* checked at start-up, so the disk changed since: verification fails, the request with it */
            ax_log(AX_LOG_ERROR, "%s", err);
            ERR_clear_error();
            ob->store = X509_STORE_new();
            if (ob->store == NULL)
                ax_fatal("outbound: cannot create a certificate store");
        }
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        ax_fatal("outbound: cannot create a TLS context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set1_cert_store(ctx, ob->store);
    if (ob->opts.verify_tls) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

/* A pool for the address 'sa' of 'r''s destination, replacing an older one. */
static dest_t *dest_new(oreq_t *r, const struct sockaddr *sa, socklen_t salen)
{
    ax_outbound_t *ob = r->ob;
    dest_t *d = ax_calloc(1, sizeof(*d));
    d->client_ctx = ob->client_ctx;
    if (r->url.https)
        d->client_ctx.ssl_ctx = d->ssl_ctx = dest_ssl_ctx(ob, r->url.host);
    h2o_socketpool_init_by_address(&d->pool, (struct sockaddr *)sa, salen, r->url.https,
                                   ob->opts.max_per_host ? ob->opts.max_per_host : 8);
    if (r->url.https) {
        /* the pool names its peer by the numeric address; TLS must see the host name (SNI, certificate) */
        free(d->pool.peer.host.base);
        d->pool.peer.host = h2o_strdup(NULL, r->url.host, SIZE_MAX);
    }
    h2o_socketpool_set_timeout(&d->pool, ob->loop, KEEPALIVE_MS);
    d->created_at = h2o_now(ob->loop);
    dest_retire(ob, r->key);
    ax_strmap_put(&ob->dests, r->key, d);
    return d;
}

static void on_getaddr(h2o_hostinfo_getaddr_req_t *greq, const char *errstr, struct addrinfo *res, void *arg)
{
    (void)greq;
    oreq_t *r = arg;
    ax_outbound_t *ob = r->ob;
    ob->resolving--;
    r->resolving = false;
    if (r->finished) {
        /* abandoned at stop: its callback already ran */
        h2o_timeout_link(ob->loop, &ob->zero_timeout, &r->later);
        return;
    }
    if (errstr != NULL)
        return fail(r, errstr);
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (!ob->opts.allow_private && ax_addr_is_private(ai->ai_addr))
            continue;
        start_client(r, dest_new(r, ai->ai_addr, ai->ai_addrlen));
        return;
    }
    r->refused = true;
    fail(r, "every address of the host is loopback or private (outbound_allow_private is off)");
}

static void on_later_fail(h2o_timeout_entry_t *entry)
{
    oreq_t *r = AX_CONTAINER_OF(entry, oreq_t, later);
    r->later.cb = on_later_free;
    finish(r);
}

void ax_outbound_post_json(ax_outbound_t *ob, const char *url, const char *body, size_t len, ax_outbound_cb cb,
                           void *arg)
{
    oreq_t *r = ax_calloc(1, sizeof(*r));
    r->ob = ob;
    r->cb = cb;
    r->arg = arg;
    r->later.cb = on_later_free;
    ob->pending++;
    r->next = ob->inflight;
    if (r->next != NULL)
        r->next->pprev = &r->next;
    r->pprev = &ob->inflight;
    ob->inflight = r;

    const char *error = NULL;
    if (atomic_load(&ob->stopping))
        error = "shutting down";
    else if (ax_url_parse(url, &r->url) != 0)
        error = "invalid URL";
    if (error != NULL) {
        /* the callback runs on a later loop turn, never inside this call */
        r->error = error;
        r->later.cb = on_later_fail;
        h2o_timeout_link(ob->loop, &ob->zero_timeout, &r->later);
        return;
    }
    bool v6 = strchr(r->url.host, ':') != NULL;
    bool default_port = r->url.port == (r->url.https ? 443 : 80);
    char hosthdr[300];
    snprintf(hosthdr, sizeof(hosthdr), "%s%s%s", v6 ? "[" : "", r->url.host, v6 ? "]" : "");
    if (!default_port)
        snprintf(hosthdr + strlen(hosthdr), sizeof(hosthdr) - strlen(hosthdr), ":%u", (unsigned)r->url.port);
    r->head = ax_asprintf("POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: axon/%s\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          r->url.path, hosthdr, AX_VERSION, len);
    r->head_len = strlen(r->head);
    r->body = ax_malloc(len ? len : 1);
    memcpy(r->body, body, len);
    r->body_len = len;
    snprintf(r->key, sizeof(r->key), "%c|%s|%u", r->url.https ? 's' : 'p', r->url.host, (unsigned)r->url.port);

    dest_t *d = ax_strmap_get(&ob->dests, r->key);
    if (d != NULL && !d->failed && h2o_now(ob->loop) - d->created_at < DEST_TTL_MS)
        return start_client(r, d);

    /* an address literal needs no lookup, only the policy */
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(r->url.port)};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(r->url.port)};
    const struct sockaddr *sa = NULL;
    socklen_t salen = 0;
    if (inet_pton(AF_INET, r->url.host, &sin.sin_addr) == 1)
        sa = (struct sockaddr *)&sin, salen = sizeof(sin);
    else if (inet_pton(AF_INET6, r->url.host, &sin6.sin6_addr) == 1)
        sa = (struct sockaddr *)&sin6, salen = sizeof(sin6);
    if (sa != NULL) {
        if (!ob->opts.allow_private && ax_addr_is_private(sa)) {
            r->refused = true;
            r->error = "the address is loopback or private (outbound_allow_private is off)";
            r->later.cb = on_later_fail;
            h2o_timeout_link(ob->loop, &ob->zero_timeout, &r->later);
            return;
        }
        return start_client(r, dest_new(r, sa, salen));
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)r->url.port);
    r->resolving = true;
    ob->resolving++;
    h2o_hostinfo_getaddr(&ob->getaddr_receiver, h2o_iovec_init(r->url.host, strlen(r->url.host)),
                         h2o_iovec_init(port, strlen(port)), AF_UNSPEC, SOCK_STREAM, IPPROTO_TCP,
                         AI_ADDRCONFIG | AI_NUMERICSERV, on_getaddr, r);
}

/* ---- calls from other threads, the tick, the job port ---- */

static void on_calls(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        call_msg_t *m = H2O_STRUCT_FROM_MEMBER(call_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        m->fn(m->arg);
        free(m);
    }
}

void ax_outbound_call(ax_outbound_t *ob, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&ob->call_mutex);
    if (ob->calls_closed) {
        pthread_mutex_unlock(&ob->call_mutex);
        fn(arg); /* the loop is gone: 'fn' sees ax_outbound_stopping() and only cleans up */
        return;
    }
    call_msg_t *m = ax_calloc(1, sizeof(*m));
    m->fn = fn;
    m->arg = arg;
    if (ob->ready) {
        h2o_multithread_send_message(&ob->call_receiver, &m->super);
    } else {
        /* the loop does not exist yet: it takes these when it starts */
        *ob->early_tail = m;
        ob->early_tail = &m->next_early;
    }
    pthread_mutex_unlock(&ob->call_mutex);
}

bool ax_outbound_stopping(const ax_outbound_t *ob)
{
    return atomic_load(&ob->stopping);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    ax_outbound_t *ob = AX_CONTAINER_OF(entry, ax_outbound_t, tick_entry);
    if (atomic_load(&ob->stopping))
        return;
    ob->tick_fn(ob->tick_arg);
    h2o_timeout_link(ob->loop, &ob->tick_timeout, &ob->tick_entry);
}

void ax_outbound_every(ax_outbound_t *ob, uint64_t ms, void (*fn)(void *arg), void *arg)
{
    ob->tick_fn = fn;
    ob->tick_arg = arg;
    h2o_timeout_init(ob->loop, &ob->tick_timeout, ms);
    ob->tick_entry.cb = on_tick;
    h2o_timeout_link(ob->loop, &ob->tick_timeout, &ob->tick_entry);
}

ax_port_t *ax_outbound_port(ax_outbound_t *ob)
{
    return &ob->port.super;
}

void ax_outbound_job_begin(ax_outbound_t *ob)
{
    atomic_fetch_add(&ob->jobs, 1);
}

void ax_outbound_job_end(ax_outbound_t *ob)
{
    atomic_fetch_sub(&ob->jobs, 1);
}

uint64_t ax_outbound_now(ax_outbound_t *ob)
{
    return h2o_now(ob->loop);
}

/* ---- life cycle ---- */

ax_outbound_t *ax_outbound_new(const ax_outbound_opts_t *opts, char *err, size_t errlen)
{
    if (opts->ca_file != NULL) { /* a bad file stops start-up, not the first push */
        X509_STORE *store = load_store(opts->ca_file, err, errlen);
        if (store == NULL)
            return NULL;
        X509_STORE_free(store);
    }
    ax_outbound_t *ob = ax_calloc(1, sizeof(*ob));
    ob->opts = *opts;
    ob->ca_file = opts->ca_file != NULL ? ax_strdup(opts->ca_file) : NULL;
    ob->opts.ca_file = NULL;
    pthread_mutex_init(&ob->call_mutex, NULL);
    pthread_cond_init(&ob->ready_cond, NULL);
    ob->early_tail = &ob->early;
    /* h2o resolves on a global pool of one thread by default: allow a few lookups at once */
    if (h2o_hostinfo_max_threads < 4)
        h2o_hostinfo_max_threads = 4;
    return ob;
}

/*
 * Builds the loop on the outbound thread itself: h2o sockets take their
 * buffers from the creating thread's per-thread cache, so a loop built on
 * another thread would share that thread's (unsynchronised) cache.
 */
static void build_loop(ax_outbound_t *ob)
{
    ob->loop = h2o_evloop_create();
    ob->queue = h2o_multithread_create_queue(ob->loop);
    h2o_multithread_register_receiver(ob->queue, &ob->getaddr_receiver, h2o_hostinfo_getaddr_receiver);
    h2o_multithread_register_receiver(ob->queue, &ob->call_receiver, on_calls);
    ax_hport_init(&ob->port, ob->queue);
    h2o_timeout_init(ob->loop, &ob->io_timeout, ob->opts.timeout_ms ? ob->opts.timeout_ms : 30000);
    h2o_timeout_init(ob->loop, &ob->zero_timeout, 0);
    ob->client_ctx = (h2o_http1client_ctx_t){
        .loop = ob->loop, .getaddr_receiver = &ob->getaddr_receiver, .io_timeout = &ob->io_timeout};
    pthread_mutex_lock(&ob->call_mutex);
    ob->ready = true;
    for (call_msg_t *m = ob->early, *next; m != NULL; m = next) {
        next = m->next_early;
        h2o_multithread_send_message(&ob->call_receiver, &m->super);
    }
    ob->early = NULL;
    ob->early_tail = &ob->early;
    pthread_cond_broadcast(&ob->ready_cond);
    pthread_mutex_unlock(&ob->call_mutex);
}

/* The loop sees the stop: requests in flight end now, with an error. */
static void handle_stop(ax_outbound_t *ob)
{
    ob->stop_handled = true;
    if (h2o_timeout_is_linked(&ob->tick_entry))
        h2o_timeout_unlink(&ob->tick_entry);
    while (ob->inflight != NULL) {
        oreq_t *r = ob->inflight;
        if (r->client != NULL) {
            h2o_http1client_cancel(r->client);
            r->client = NULL;
        }
        if (h2o_timeout_is_linked(&r->later))
            h2o_timeout_unlink(&r->later);
        r->later.cb = on_later_free;
        fail(r, "shutting down");
    }
}

static void dispose_dest(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    dest_free(value);
}

/* Takes the loop apart on its own thread, so h2o's per-thread buffer cache can be emptied too. */
static void teardown(ax_outbound_t *ob)
{
    /* nobody posts to the queue any more; run what arrived meanwhile */
    pthread_mutex_lock(&ob->call_mutex);
    ob->calls_closed = true;
    pthread_mutex_unlock(&ob->call_mutex);
    h2o_evloop_run(ob->loop, 0);
    ax_strmap_foreach(&ob->dests, dispose_dest, NULL);
    ax_strmap_dispose(&ob->dests);
    if (h2o_timeout_is_linked(&ob->tick_entry))
        h2o_timeout_unlink(&ob->tick_entry);
    if (ob->tick_fn != NULL)
        h2o_timeout_dispose(ob->loop, &ob->tick_timeout);
    h2o_timeout_dispose(ob->loop, &ob->io_timeout);
    h2o_timeout_dispose(ob->loop, &ob->zero_timeout);
    h2o_multithread_unregister_receiver(ob->queue, &ob->getaddr_receiver);
    h2o_multithread_unregister_receiver(ob->queue, &ob->call_receiver);
    ax_hport_dispose(&ob->port, ob->queue);
    h2o_multithread_destroy_queue(ob->queue);
    free(ob->queue); /* libh2o 2.2.5 (evloop) closes the queue but never frees it */
    ob->queue = NULL;
    h2o_evloop_run(ob->loop, 0); /* let closed sockets be freed */
    h2o_evloop_destroy(ob->loop);
    ob->loop = NULL;
    /* return the socket buffers h2o keeps per thread */
    h2o_mem_recycle_t *rc = &h2o_socket_buffer_prototype.allocator;
    while (rc->cnt != 0)
        free(h2o_mem_alloc_recycle(rc, 0));
}

static void *outbound_main(void *arg)
{
    ax_outbound_t *ob = arg;
    build_loop(ob);
    for (;;) {
        h2o_evloop_run(ob->loop, 100);
        if (!atomic_load(&ob->stopping))
            continue;
        if (!ob->stop_handled)
            handle_stop(ob);
        /* done when nothing can call back into this loop any more */
        if (ob->resolving == 0 && ob->pending == 0 && atomic_load(&ob->jobs) == 0)
            break;
    }
    teardown(ob);
    return NULL;
}

int ax_outbound_start(ax_outbound_t *ob)
{
    if (pthread_create(&ob->tid, NULL, outbound_main, ob) != 0)
        return AX_ERR;
    ob->started = true;
    pthread_mutex_lock(&ob->call_mutex);
    while (!ob->ready)
        pthread_cond_wait(&ob->ready_cond, &ob->call_mutex);
    pthread_mutex_unlock(&ob->call_mutex);
    return 0;
}

static void wake_only(void *arg)
{
    (void)arg;
}

void ax_outbound_stop(ax_outbound_t *ob)
{
    if (ob == NULL || !ob->started)
        return;
    atomic_store(&ob->stopping, true);
    ax_outbound_call(ob, wake_only, NULL);
    pthread_join(ob->tid, NULL);
    ob->started = false;
}

void ax_outbound_free(ax_outbound_t *ob)
{
    if (ob == NULL)
        return;
    /* calls made while it never ran: they only clean up once they see the stop */
    atomic_store(&ob->stopping, true);
    pthread_mutex_lock(&ob->call_mutex);
    ob->calls_closed = true;
    call_msg_t *early = ob->early;
    ob->early = NULL;
    pthread_mutex_unlock(&ob->call_mutex);
    for (call_msg_t *m = early, *next; m != NULL; m = next) {
        next = m->next_early;
        m->fn(m->arg);
        free(m);
    }
    X509_STORE_free(ob->store);
    free(ob->ca_file);
    pthread_cond_destroy(&ob->ready_cond);
    pthread_mutex_destroy(&ob->call_mutex);
    free(ob);
}
