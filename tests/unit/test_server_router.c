/*
 * test_server_router.c -- the segment-trie router (literal over parameter,
 * backtracking, encoded slashes stay in their parameter, 405 with Allow)
 * and the token-bucket rate limiter.
 */
#include "testutil.h"

#include "server/server.h"

static int h(ax_req_t *r)
{
    (void)r;
    return 0;
}

static const ax_route_t routes[] = {
    {"GET", "/_matrix/client/versions", h, 0},
    {"GET", "/_matrix/client/v3/rooms/{roomId}/state", h, 0},
    {"GET", "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}", h, 0},
    {"PUT", "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}", h, 0},
    {"GET", "/_matrix/client/v3/rooms/{roomId}/state/{eventType}", h, 0},
    {"PUT", "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}", h, 0},
    {"GET", "/_matrix/client/v3/rooms/special/state", h, 0},
    {"GET", "/_matrix/client/v3/pushrules/", h, 0},
    {"POST", "/_matrix/client/v3/user/{userId}/filter", h, 0},
    {"GET", "/_matrix/client/v3/user/{userId}/filter/{filterId}", h, 0},
};

static ax_match_t match(ax_router_t *rt, const char *method, const char *path, size_t *idx, char params[][64],
                        size_t *np, char *allow)
{
    const char *pp[AX_ROUTE_MAX_PARAMS];
    size_t pl[AX_ROUTE_MAX_PARAMS];
    ax_match_t m = ax_router_match(rt, method, strlen(method), path, strlen(path), idx, pp, pl, np, allow, 96);
    if (m == AX_MATCH_OK)
        for (size_t i = 0; i < *np; ++i)
            snprintf(params[i], 64, "%.*s", (int)pl[i], pp[i]);
    return m;
}

static void test_router(void **state)
{
    (void)state;
    ax_router_t *rt = ax_router_new(routes, AX_ARRAY_SIZE(routes));
    size_t idx, np;
    char p[AX_ROUTE_MAX_PARAMS][64], allow[96];

    assert_int_equal(match(rt, "GET", "/_matrix/client/versions", &idx, p, &np, allow), AX_MATCH_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(np, 0);
    /* HEAD answers as GET */
    assert_int_equal(match(rt, "HEAD", "/_matrix/client/versions", &idx, p, &np, allow), AX_MATCH_OK);

    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/rooms/!a:b/state", &idx, p, &np, allow), AX_MATCH_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(np, 1);
    assert_string_equal(p[0], "!a:b");

    /* literal wins at its depth ... */
    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/rooms/special/state", &idx, p, &np, allow), AX_MATCH_OK);
    assert_int_equal(idx, 6);
    /* ... but a dead-end literal branch backtracks to the parameter */
    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/rooms/special/state/m.room.name/", &idx, p, &np, allow),
                     AX_MATCH_OK); /* a trailing slash is the empty state key */
    assert_int_equal(idx, 2);
    assert_string_equal(p[2], "");
    /* only the last parameter may be empty */
    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/rooms//state", &idx, p, &np, allow), AX_MATCH_NO_PATH);
    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/rooms/special/state/m.room.name/x", &idx, p, &np, allow),
                     AX_MATCH_OK);
    assert_int_equal(idx, 2);
    assert_string_equal(p[0], "special");
    assert_string_equal(p[2], "x");

    /* encoded slash stays inside the parameter */
    assert_int_equal(
        match(rt, "PUT", "/_matrix/client/v3/rooms/%21r%3Ab/send/m.room.message/a%2Fb", &idx, p, &np, allow),
        AX_MATCH_OK);
    assert_int_equal(idx, 5);
    assert_string_equal(p[2], "a%2Fb");

    /* trailing-slash literal */
    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/pushrules/", &idx, p, &np, allow), AX_MATCH_OK);
    assert_int_equal(idx, 7);
    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/pushrules", &idx, p, &np, allow), AX_MATCH_NO_PATH);

    /* wrong method: 405 with the allowed ones */
    assert_int_equal(match(rt, "DELETE", "/_matrix/client/v3/rooms/!a:b/state/t/k", &idx, p, &np, allow),
                     AX_MATCH_NO_METHOD);
    assert_string_equal(allow, "GET, PUT");
    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/user/@u:x/filter", &idx, p, &np, allow), AX_MATCH_NO_METHOD);
    assert_string_equal(allow, "POST");

    /* unknown paths */
    assert_int_equal(match(rt, "GET", "/_matrix/client/v3/nothing", &idx, p, &np, allow), AX_MATCH_NO_PATH);
    assert_int_equal(match(rt, "GET", "/", &idx, p, &np, allow), AX_MATCH_NO_PATH);
    assert_int_equal(match(rt, "GET", "", &idx, p, &np, allow), AX_MATCH_NO_PATH);
    assert_int_equal(match(rt, "GET", "_matrix/client/versions", &idx, p, &np, allow), AX_MATCH_NO_PATH);
    assert_int_equal(match(rt, "GET", "/_matrix/client/versions/extra", &idx, p, &np, allow), AX_MATCH_NO_PATH);
    assert_int_equal(match(rt, "GET", "/_matrix/client//versions", &idx, p, &np, allow), AX_MATCH_NO_PATH);
    ax_router_free(rt);
}

static void test_ratelimit(void **state)
{
    (void)state;
    ax_ratelimit_t *rl = ax_ratelimit_new(1.0, 3); /* 3 at once, then 1 per second */
    uint64_t now = 1000000;
    assert_int_equal(ax_ratelimit_take(rl, "10.0.0.1", now), 0);
    assert_int_equal(ax_ratelimit_take(rl, "10.0.0.1", now), 0);
    assert_int_equal(ax_ratelimit_take(rl, "10.0.0.1", now), 0);
    uint64_t wait = ax_ratelimit_take(rl, "10.0.0.1", now);
    assert_true(wait > 0 && wait <= 1000);
    /* other clients are not affected */
    assert_int_equal(ax_ratelimit_take(rl, "10.0.0.2", now), 0);
    /* refills with time */
    assert_int_equal(ax_ratelimit_take(rl, "10.0.0.1", now + 1000), 0);
    assert_true(ax_ratelimit_take(rl, "10.0.0.1", now + 1000) > 0);
    /* many distinct clients stay within the fixed table */
    for (int i = 0; i < 100000; ++i) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        ax_ratelimit_take(rl, ip, now + 2000);
    }
    ax_ratelimit_free(rl);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router),
        cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
