/*
 * test_server_changes.c -- the room change ring behind incremental /sync
 * (server/changes.c): each changed room reported once per walk, bounds
 * (since, upto], only room keys recorded, and the floor that rises as the
 * ring overwrites its oldest entries so a too-old token is refused rather
 * than answered with a partial list.
 */
#include "testutil.h"

#include "server/changes.h"

typedef struct st_seen_t {
    char rooms[16][32];
    size_t n;
} seen_t;

static void collect(void *arg, const char *room_id)
{
    seen_t *s = arg;
    assert_true(s->n < 16);
    snprintf(s->rooms[s->n++], sizeof(s->rooms[0]), "%s", room_id);
}

static bool has(const seen_t *s, const char *room)
{
    for (size_t i = 0; i < s->n; ++i)
        if (strcmp(s->rooms[i], room) == 0)
            return true;
    return false;
}

static void record1(ax_changes_t *c, uint64_t pos, const char *key)
{
    ax_changes_record(c, pos, &key, 1);
}

static void test_rooms_since(void **state)
{
    (void)state;
    ax_changes_t *c = ax_changes_new(10, 64);
    assert_int_equal(ax_changes_position(c), 10);
    const char *keys[] = {"!a:x", "@alice:x", "!b:x"};
    ax_changes_record(c, 11, keys, 3); /* the user key is not a room */
    record1(c, 12, "!a:x");
    ax_changes_record(c, 13, NULL, 0); /* a commit without rooms still moves the position */
    record1(c, 14, "!c:x");
    assert_int_equal(ax_changes_position(c), 14);

    seen_t s = {0};
    assert_true(ax_changes_rooms(c, 10, 14, collect, &s));
    assert_int_equal(s.n, 3); /* !a once, although it changed twice */
    assert_true(has(&s, "!a:x") && has(&s, "!b:x") && has(&s, "!c:x"));
    assert_string_equal(s.rooms[0], "!c:x"); /* newest first */

    memset(&s, 0, sizeof(s));
    assert_true(ax_changes_rooms(c, 11, 14, collect, &s));
    assert_int_equal(s.n, 2);
    assert_true(has(&s, "!a:x") && has(&s, "!c:x"));

    /* 'upto' bounds the walk from above: a change after it belongs to the next sync */
    memset(&s, 0, sizeof(s));
    assert_true(ax_changes_rooms(c, 11, 13, collect, &s));
    assert_int_equal(s.n, 1);
    assert_string_equal(s.rooms[0], "!a:x");

    memset(&s, 0, sizeof(s));
    assert_true(ax_changes_rooms(c, 14, 14, collect, &s));
    assert_int_equal(s.n, 0);

    /* before the start position nothing is known */
    assert_false(ax_changes_rooms(c, 9, 14, collect, &s));
    assert_int_equal(s.n, 0);
    ax_changes_free(c);
}

static void test_floor_rises_when_the_ring_wraps(void **state)
{
    (void)state;
    ax_changes_t *c = ax_changes_new(0, 4);
    record1(c, 1, "!a:x");
    record1(c, 2, "!b:x");
    const char *two[] = {"!c:x", "!d:x"};
    ax_changes_record(c, 3, two, 2); /* full now: 1, 2, 3, 3 */
    seen_t s = {0};
    assert_true(ax_changes_rooms(c, 0, 3, collect, &s));
    assert_int_equal(s.n, 4);

    record1(c, 4, "!e:x"); /* overwrites position 1: a token of 0 needs it */
    memset(&s, 0, sizeof(s));
    assert_false(ax_changes_rooms(c, 0, 4, collect, &s));
    assert_true(ax_changes_rooms(c, 1, 4, collect, &s));
    assert_int_equal(s.n, 4);

    record1(c, 5, "!a:x"); /* overwrites 2 */
    record1(c, 6, "!b:x"); /* overwrites one of the two entries of 3 */
    memset(&s, 0, sizeof(s));
    assert_false(ax_changes_rooms(c, 2, 6, collect, &s)); /* 3 is only half there */
    assert_true(ax_changes_rooms(c, 3, 6, collect, &s));
    assert_int_equal(s.n, 3);
    assert_true(has(&s, "!e:x") && has(&s, "!a:x") && has(&s, "!b:x"));
    ax_changes_free(c);
}

static void test_many_rooms(void **state)
{
    (void)state;
    ax_changes_t *c = ax_changes_new(0, 1024);
    char id[32];
    for (uint64_t pos = 1; pos <= 1000; ++pos) {
        snprintf(id, sizeof(id), "!r%llu:x", (unsigned long long)(pos % 10));
        record1(c, pos, id);
    }
    seen_t s = {0};
    assert_true(ax_changes_rooms(c, 0, 1000, collect, &s));
    assert_int_equal(s.n, 10);
    ax_changes_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rooms_since),
        cmocka_unit_test(test_floor_rises_when_the_ring_wraps),
        cmocka_unit_test(test_many_rooms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
