/*
 * test_federation_resolve.c -- server discovery (federation/resolve.c)
 * against a fake world: every step of the spec's "Resolving server names"
 * (1, 2, 3.1-3.5, 4-6) with the Host header and certificate name each
 * implies, .well-known caching (Cache-Control, Expires, error backoff),
 * shared lookups, SRV choice, and the address ranges outbound requests
 * must not reach.
 */
#include "testutil.h"

#include "federation/federation.h"

#include <arpa/inet.h>
#include <netinet/in.h>

/* ---- the fake world ---- */

typedef struct {
    const char *host; /* .well-known of this hostname */
    int status;
    const char *body;
    const char *cache_control, *expires;
} fake_wk_t;

typedef struct {
    const char *name;
    int rc;
    ax_srv_record_t recs[4];
    size_t n;
} fake_srv_t;

typedef struct {
    uint64_t now;
    const fake_wk_t *wk;
    size_t nwk;
    const fake_srv_t *srv;
    size_t nsrv;
    bool async; /* keep steps pending instead of answering at once */
    ax_resolve_step_t *pending;
    char pending_host[256];
    char log[1024]; /* every lookup, in order: "wk:host srv:name ..." */
    uint32_t random_value;
} world_t;

static void logf_(world_t *w, const char *kind, const char *name)
{
    size_t n = strlen(w->log);
    snprintf(w->log + n, sizeof(w->log) - n, "%s%s:%s", n ? " " : "", kind, name);
}

static uint64_t fake_now(void *ctx)
{
    return ((world_t *)ctx)->now;
}

static void answer_wk(world_t *w, ax_resolve_step_t *step, const char *host)
{
    for (size_t i = 0; i < w->nwk; ++i) {
        const fake_wk_t *f = &w->wk[i];
        if (strcmp(f->host, host) == 0) {
            ax_resolver_wellknown_done(step, f->status, f->body, f->body ? strlen(f->body) : 0, f->cache_control,
                                       f->expires);
            return;
        }
    }
    ax_resolver_wellknown_done(step, 0, NULL, 0, NULL, NULL); /* no answer at all */
}

static void fake_wk(void *ctx, ax_resolve_step_t *step, const char *host)
{
    world_t *w = ctx;
    logf_(w, "wk", host);
    if (w->async) {
        w->pending = step;
        snprintf(w->pending_host, sizeof(w->pending_host), "%s", host);
        return;
    }
    answer_wk(w, step, host);
}

static void fake_srv(void *ctx, ax_resolve_step_t *step, const char *name)
{
    world_t *w = ctx;
    logf_(w, "srv", name);
    for (size_t i = 0; i < w->nsrv; ++i) {
        if (strcmp(w->srv[i].name, name) == 0) {
            ax_resolver_srv_done(step, w->srv[i].rc, w->srv[i].recs, w->srv[i].n);
            return;
        }
    }
    ax_resolver_srv_done(step, AX_ENOTFOUND, NULL, 0);
}

static uint32_t fake_random(void *ctx, uint32_t n)
{
    world_t *w = ctx;
    return w->random_value % n;
}

static const ax_resolve_ops_t ops = {fake_now, fake_wk, fake_srv, fake_random};

typedef struct {
    int calls;
    int rc;
    ax_fed_target_t t;
} result_t;

static void on_result(void *arg, int rc, const ax_fed_target_t *t, const char *error)
{
    (void)error;
    result_t *r = arg;
    r->calls++;
    r->rc = rc;
    if (t != NULL)
        r->t = *t;
}

static result_t resolve(ax_resolver_t *rs, const char *name)
{
    result_t r;
    memset(&r, 0, sizeof(r));
    r.rc = -100;
    ax_resolver_resolve(rs, name, on_result, &r);
    assert_int_equal(r.calls, 1);
    return r;
}

static void expect(result_t r, const char *host, unsigned port, const char *host_header, const char *tls, bool tls_ip)
{
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.t.host, host);
    assert_int_equal(r.t.port, port);
    assert_string_equal(r.t.host_header, host_header);
    assert_string_equal(r.t.tls_name, tls);
    assert_int_equal(r.t.tls_name_is_ip, tls_ip);
}

#define WORLD(...)                                                                                                     \
    world_t w;                                                                                                         \
    memset(&w, 0, sizeof(w));                                                                                          \
    w.now = 1000000000000ULL;                                                                                          \
    __VA_ARGS__;                                                                                                       \
    ax_resolver_t *rs = ax_resolver_new(&ops, &w)

/* ---- steps 1 and 2: no lookup at all ---- */

static void test_ip_literals(void **state)
{
    (void)state;
    WORLD();
    expect(resolve(rs, "1.2.3.4"), "1.2.3.4", 8448, "1.2.3.4", "1.2.3.4", true);
    expect(resolve(rs, "1.2.3.4:8008"), "1.2.3.4", 8008, "1.2.3.4:8008", "1.2.3.4", true);
    expect(resolve(rs, "[::1]:8448"), "::1", 8448, "[::1]:8448", "::1", true);
    expect(resolve(rs, "[2001:db8::1]"), "2001:db8::1", 8448, "[2001:db8::1]", "2001:db8::1", true);
    assert_string_equal(w.log, "");
    ax_resolver_free(rs);
}

static void test_hostname_with_port(void **state)
{
    (void)state;
    WORLD();
    expect(resolve(rs, "example.org:1234"), "example.org", 1234, "example.org:1234", "example.org", false);
    expect(resolve(rs, "localhost:8448"), "localhost", 8448, "localhost:8448", "localhost", false);
    assert_string_equal(w.log, "");
    ax_resolver_free(rs);
}

static void test_invalid_names(void **state)
{
    (void)state;
    WORLD();
    const char *bad[] = {"",
                         "exa mple.org",
                         "example.org:",
                         "example.org:0",
                         "example.org:65536",
                         "example.org:123456",
                         "[::1",
                         "[not-ipv6]:80",
                         "a:b:c",
                         "[]"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(bad); ++i) {
        result_t r = resolve(rs, bad[i]);
        assert_int_equal(r.rc, AX_EINVAL);
    }
    assert_string_equal(w.log, "");
    ax_resolver_free(rs);
}

/* ---- step 3: .well-known ---- */

static void test_wellknown_ip_literal(void **state)
{
    (void)state;
    static const fake_wk_t wk[] = {
        {"a.example", 200, "{\"m.server\":\"5.6.7.8\"}", NULL, NULL},
        {"b.example", 200, "{\"m.server\":\"5.6.7.8:9000\"}", NULL, NULL},
        {"c.example", 200, "{\"m.server\":\"[2001:db8::2]:9000\"}", NULL, NULL},
    };
    WORLD(w.wk = wk, w.nwk = 3);
    /* 3.1: the IP, its port or 8448; Host is the IP with the port if one was given */
    expect(resolve(rs, "a.example"), "5.6.7.8", 8448, "5.6.7.8", "5.6.7.8", true);
    expect(resolve(rs, "b.example"), "5.6.7.8", 9000, "5.6.7.8:9000", "5.6.7.8", true);
    expect(resolve(rs, "c.example"), "2001:db8::2", 9000, "[2001:db8::2]:9000", "2001:db8::2", true);
    assert_string_equal(w.log, "wk:a.example wk:b.example wk:c.example");
    ax_resolver_free(rs);
}

static void test_wellknown_hostname_and_port(void **state)
{
    (void)state;
    static const fake_wk_t wk[] = {{"example.org", 200, "{\"m.server\":\"matrix.example.org:4443\"}", NULL, NULL}};
    WORLD(w.wk = wk, w.nwk = 1);
    /* 3.2: no SRV; Host and certificate are the delegated name */
    expect(resolve(rs, "example.org"), "matrix.example.org", 4443, "matrix.example.org:4443", "matrix.example.org",
           false);
    assert_string_equal(w.log, "wk:example.org");
    ax_resolver_free(rs);
}

static void test_wellknown_srv(void **state)
{
    (void)state;
    static const fake_wk_t wk[] = {
        {"one.example", 200, "{\"m.server\":\"d1.example\"}", NULL, NULL},
        {"two.example", 200, "{\"m.server\":\"d2.example\"}", NULL, NULL},
        {"three.example", 200, "{\"m.server\":\"d3.example\"}", NULL, NULL},
    };
    static const fake_srv_t srv[] = {
        {"_matrix-fed._tcp.d1.example", 0, {{"srv1.example.", 8443, 10, 0}}, 1},
        {"_matrix._tcp.d2.example", 0, {{"srv2.example", 8444, 10, 0}}, 1},
    };
    WORLD(w.wk = wk, w.nwk = 3, w.srv = srv, w.nsrv = 2);
    /* 3.3: SRV _matrix-fed; connect to its target, Host and certificate stay the delegated name */
    expect(resolve(rs, "one.example"), "srv1.example", 8443, "d1.example", "d1.example", false);
    /* 3.4: the deprecated _matrix SRV when there is no _matrix-fed */
    expect(resolve(rs, "two.example"), "srv2.example", 8444, "d2.example", "d2.example", false);
    /* 3.5: no SRV: the delegated name on 8448 */
    expect(resolve(rs, "three.example"), "d3.example", 8448, "d3.example", "d3.example", false);
    assert_string_equal(w.log, "wk:one.example srv:_matrix-fed._tcp.d1.example "
                               "wk:two.example srv:_matrix-fed._tcp.d2.example srv:_matrix._tcp.d2.example "
                               "wk:three.example srv:_matrix-fed._tcp.d3.example srv:_matrix._tcp.d3.example");
    ax_resolver_free(rs);
}

/* ---- steps 4-6: no usable .well-known ---- */

static void test_no_wellknown(void **state)
{
    (void)state;
    static const fake_wk_t wk[] = {
        {"four.example", 404, "{\"errcode\":\"M_NOT_FOUND\"}", NULL, NULL},
        {"five.example", 200, "not json", NULL, NULL},
        {"six.example", 200, "{\"m.server\":\"bad name!\"}", NULL, NULL},
        {"seven.example", 200, "{\"other\":1}", NULL, NULL},
        {"eight.example", 200, "[\"m.server\"]", NULL, NULL},
        {"nine.example", 200, "{\"m.server\":\"srvdot.example\"}", NULL, NULL},
    };
    static const fake_srv_t srv[] = {
        {"_matrix-fed._tcp.four.example", 0, {{"s4.example", 8449, 0, 0}}, 1},
        {"_matrix._tcp.five.example", 0, {{"s5.example", 8450, 0, 0}}, 1},
        /* "." means "no service here" (RFC 2782) */
        {"_matrix-fed._tcp.srvdot.example", 0, {{".", 0, 0, 0}}, 1},
    };
    WORLD(w.wk = wk, w.nwk = 6, w.srv = srv, w.nsrv = 3);
    /* 4: SRV _matrix-fed of the hostname itself; Host and certificate are the hostname */
    expect(resolve(rs, "four.example"), "s4.example", 8449, "four.example", "four.example", false);
    /* 5: the deprecated _matrix SRV */
    expect(resolve(rs, "five.example"), "s5.example", 8450, "five.example", "five.example", false);
    /* 6: the hostname on 8448 -- also for .well-known answers that are invalid in other ways */
    expect(resolve(rs, "six.example"), "six.example", 8448, "six.example", "six.example", false);
    expect(resolve(rs, "seven.example"), "seven.example", 8448, "seven.example", "seven.example", false);
    expect(resolve(rs, "eight.example"), "eight.example", 8448, "eight.example", "eight.example", false);
    expect(resolve(rs, "unreachable.example"), "unreachable.example", 8448, "unreachable.example",
           "unreachable.example", false);
    expect(resolve(rs, "nine.example"), "srvdot.example", 8448, "srvdot.example", "srvdot.example", false);
    ax_resolver_free(rs);
}

static void test_srv_choice(void **state)
{
    (void)state;
    static const fake_srv_t srv[] = {
        {"_matrix-fed._tcp.pick.example",
         0,
         {{"backup.example", 1, 20, 100},
          {"w0.example", 2, 10, 0},
          {"w1.example", 3, 10, 30},
          {"w2.example", 4, 10, 70}},
         4},
    };
    WORLD(w.srv = srv, w.nsrv = 1);
    /* lowest priority only; zero weight first, then running sums (RFC 2782) */
    w.random_value = 0;
    assert_int_equal(resolve(rs, "pick.example").t.port, 2);
    ax_resolver_forget(rs, "pick.example");
    w.random_value = 1;
    assert_int_equal(resolve(rs, "pick.example").t.port, 3);
    ax_resolver_forget(rs, "pick.example");
    w.random_value = 30;
    assert_int_equal(resolve(rs, "pick.example").t.port, 3);
    ax_resolver_forget(rs, "pick.example");
    w.random_value = 31;
    assert_int_equal(resolve(rs, "pick.example").t.port, 4);
    ax_resolver_forget(rs, "pick.example");
    w.random_value = 100;
    assert_int_equal(resolve(rs, "pick.example").t.port, 4);
    ax_resolver_free(rs);
}

/* ---- caching ---- */

static void test_caching(void **state)
{
    (void)state;
    static const fake_wk_t wk[] = {
        {"c.example", 200, "{\"m.server\":\"d.example\"}", "public, max-age=600", NULL},
        {"err.example", 500, "", NULL, NULL},
    };
    WORLD(w.wk = wk, w.nwk = 2);
    expect(resolve(rs, "c.example"), "d.example", 8448, "d.example", "d.example", false);
    /* the target is cached: no lookup at all */
    w.log[0] = '\0';
    resolve(rs, "c.example");
    assert_string_equal(w.log, "");
    /* after a connection failure the target is forgotten; the .well-known answer stays (max-age 600) */
    ax_resolver_forget(rs, "c.example");
    resolve(rs, "c.example");
    assert_string_equal(w.log, "srv:_matrix-fed._tcp.d.example srv:_matrix._tcp.d.example");
    /* the target's cache never outlives the .well-known answer */
    w.now += 601 * 1000;
    w.log[0] = '\0';
    resolve(rs, "c.example");
    assert_string_equal(w.log, "wk:c.example srv:_matrix-fed._tcp.d.example srv:_matrix._tcp.d.example");

    /* errors are cached 30 s, then doubling */
    w.log[0] = '\0';
    expect(resolve(rs, "err.example"), "err.example", 8448, "err.example", "err.example", false);
    assert_string_equal(w.log, "wk:err.example srv:_matrix-fed._tcp.err.example srv:_matrix._tcp.err.example");
    w.now += 29 * 1000;
    ax_resolver_forget(rs, "err.example");
    w.log[0] = '\0';
    resolve(rs, "err.example");
    assert_null(strstr(w.log, "wk:"));
    w.now += 2 * 1000; /* 31 s after the failure */
    ax_resolver_forget(rs, "err.example");
    w.log[0] = '\0';
    resolve(rs, "err.example");
    assert_non_null(strstr(w.log, "wk:err.example"));
    w.now += 59 * 1000; /* the second failure is kept 60 s */
    ax_resolver_forget(rs, "err.example");
    w.log[0] = '\0';
    resolve(rs, "err.example");
    assert_null(strstr(w.log, "wk:"));
    w.now += 2 * 1000;
    ax_resolver_forget(rs, "err.example");
    w.log[0] = '\0';
    resolve(rs, "err.example");
    assert_non_null(strstr(w.log, "wk:err.example"));
    /* long after, pruning forgets the failures: the backoff starts again at 30 s */
    w.now += 3 * 3600 * 1000;
    ax_resolver_prune(rs);
    w.log[0] = '\0';
    resolve(rs, "err.example");
    assert_non_null(strstr(w.log, "wk:err.example"));
    w.now += 31 * 1000;
    ax_resolver_forget(rs, "err.example");
    w.log[0] = '\0';
    resolve(rs, "err.example");
    assert_non_null(strstr(w.log, "wk:err.example"));
    ax_resolver_free(rs);
}

static void test_delegation_survives_transport_failure(void **state)
{
    (void)state;
    fake_wk_t wk[] = {{"s.example", 200, "{\"m.server\":\"d.example:443\"}", "max-age=60", NULL}};
    WORLD(w.wk = wk, w.nwk = 1);
    expect(resolve(rs, "s.example"), "d.example", 443, "d.example:443", "d.example", false);
    w.now += 61 * 1000;
    wk[0].status = 0; /* the refresh gets no answer: keep using the delegation we knew */
    ax_resolver_forget(rs, "s.example");
    expect(resolve(rs, "s.example"), "d.example", 443, "d.example:443", "d.example", false);
    w.now += 31 * 1000;
    wk[0].status = 404; /* a real answer without delegation ends it */
    ax_resolver_forget(rs, "s.example");
    expect(resolve(rs, "s.example"), "s.example", 8448, "s.example", "s.example", false);
    ax_resolver_free(rs);
}

static void test_shared_lookup(void **state)
{
    (void)state;
    static const fake_wk_t wk[] = {{"shared.example", 200, "{\"m.server\":\"x.example:1\"}", NULL, NULL}};
    WORLD(w.wk = wk, w.nwk = 1, w.async = true);
    result_t r1, r2;
    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    ax_resolver_resolve(rs, "shared.example", on_result, &r1);
    ax_resolver_resolve(rs, "shared.example", on_result, &r2);
    assert_int_equal(r1.calls + r2.calls, 0);
    assert_string_equal(w.log, "wk:shared.example"); /* one fetch for both */
    answer_wk(&w, w.pending, w.pending_host);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r2.calls, 1);
    expect(r1, "x.example", 1, "x.example:1", "x.example", false);
    expect(r2, "x.example", 1, "x.example:1", "x.example", false);
    ax_resolver_free(rs);
}

static void test_cache_headers(void **state)
{
    (void)state;
    uint64_t now = 1700000000000ULL; /* 2023-11-14T22:13:20Z */
    assert_int_equal(ax_wellknown_cache_ms(NULL, NULL, now), AX_WELLKNOWN_DEFAULT_MS);
    assert_int_equal(ax_wellknown_cache_ms("max-age=600", NULL, now), 600000);
    assert_int_equal(ax_wellknown_cache_ms("public, Max-Age=\"120\"", NULL, now), 120000);
    assert_int_equal(ax_wellknown_cache_ms("max-age=99999999", NULL, now), AX_WELLKNOWN_MAX_MS);
    assert_int_equal(ax_wellknown_cache_ms("max-age=1", NULL, now), AX_WELLKNOWN_MIN_MS);
    assert_int_equal(ax_wellknown_cache_ms("no-store", NULL, now), AX_WELLKNOWN_MIN_MS);
    assert_int_equal(ax_wellknown_cache_ms("private, no-cache", NULL, now), AX_WELLKNOWN_MIN_MS);
    assert_int_equal(ax_wellknown_cache_ms("max-age=abc", NULL, now), AX_WELLKNOWN_MIN_MS);
    assert_int_equal(ax_wellknown_cache_ms("public", NULL, now), AX_WELLKNOWN_DEFAULT_MS);
    /* Expires: an HTTP-date; max-age wins over it */
    assert_int_equal(ax_wellknown_cache_ms(NULL, "Wed, 15 Nov 2023 00:13:20 GMT", now), 2 * 3600 * 1000);
    assert_int_equal(ax_wellknown_cache_ms("max-age=300", "Wed, 15 Nov 2023 00:13:20 GMT", now), 300000);
    assert_int_equal(ax_wellknown_cache_ms(NULL, "Tue, 14 Nov 2023 00:00:00 GMT", now), AX_WELLKNOWN_MIN_MS);
    assert_int_equal(ax_wellknown_cache_ms(NULL, "0", now), AX_WELLKNOWN_MIN_MS);
    assert_int_equal(ax_wellknown_cache_ms(NULL, "Fri, 01 Jan 2100 00:00:00 GMT", now), AX_WELLKNOWN_MAX_MS);
}

/* ---- addresses ---- */

static bool priv(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1)
        in->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1)
        in6->sin6_family = AF_INET6;
    else
        fail_msg("bad address %s", text);
    return ax_addr_is_private((struct sockaddr *)&ss);
}

static void test_private_addresses(void **state)
{
    (void)state;
    const char *private_[] = {"127.0.0.1",        "127.255.0.9",    "10.1.2.3",      "172.16.0.1",  "172.31.255.255",
                              "192.168.1.1",      "169.254.1.1",    "100.64.0.1",    "0.0.0.0",     "224.0.0.1",
                              "255.255.255.255",  "192.0.2.5",      "198.18.0.1",    "::",          "::1",
                              "fe80::1",          "fc00::1",        "fd12:3456::1",  "ff02::1",     "::ffff:10.0.0.1",
                              "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1", "2001:db8::1", "::127.0.0.1"};
    const char *public_[] = {"8.8.8.8",      "1.1.1.1",          "172.32.0.1",           "172.15.255.255",
                             "100.128.0.1",  "192.169.0.1",      "2001:4860:4860::8888", "::ffff:8.8.8.8",
                             "2a00:1450::1", "64:ff9b::808:808", "2002:808:808::1"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(private_); ++i)
        if (!priv(private_[i]))
            fail_msg("%s should be private", private_[i]);
    for (size_t i = 0; i < AX_ARRAY_SIZE(public_); ++i)
        if (priv(public_[i]))
            fail_msg("%s should be public", public_[i]);
}

static void test_split(void **state)
{
    (void)state;
    char host[256];
    uint16_t port;
    bool ip;
    assert_int_equal(ax_server_name_split("matrix.org", host, sizeof(host), &port, &ip), 0);
    assert_string_equal(host, "matrix.org");
    assert_int_equal(port, 0);
    assert_false(ip);
    assert_int_equal(ax_server_name_split("[::ffff:1.2.3.4]:80", host, sizeof(host), &port, &ip), 0);
    assert_string_equal(host, "::ffff:1.2.3.4");
    assert_int_equal(port, 80);
    assert_true(ip);
    assert_int_equal(ax_server_name_split("1.2.3.4:65535", host, sizeof(host), &port, &ip), 0);
    assert_int_equal(port, 65535);
    assert_true(ip);
    /* dotted but not an IPv4 address: a DNS name */
    assert_int_equal(ax_server_name_split("1.2.3", host, sizeof(host), &port, &ip), 0);
    assert_false(ip);
    assert_int_equal(ax_server_name_split("host:99999", host, sizeof(host), &port, &ip), AX_EINVAL);
    assert_int_equal(ax_server_name_split("example.org", host, 4, &port, &ip), AX_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_literals),
        cmocka_unit_test(test_hostname_with_port),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_wellknown_ip_literal),
        cmocka_unit_test(test_wellknown_hostname_and_port),
        cmocka_unit_test(test_wellknown_srv),
        cmocka_unit_test(test_no_wellknown),
        cmocka_unit_test(test_srv_choice),
        cmocka_unit_test(test_caching),
        cmocka_unit_test(test_delegation_survives_transport_failure),
        cmocka_unit_test(test_shared_lookup),
        cmocka_unit_test(test_cache_headers),
        cmocka_unit_test(test_private_addresses),
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
