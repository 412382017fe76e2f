/*
 * test_core_search.c -- the full-text index (core/search.c): the writer
 * indexes the timeline in batches of its own, behind the stream; what
 * goes in (a message's body, a room's topic; not a sticker's); records
 * of many events scanned newest first; the index's position across a
 * restart; and the migration that empties the old index and has it
 * rebuilt from the timeline.
 */
#include "roomfix.h"

static void wait_indexed(roomfix_t *f)
{
    uint64_t want = ax_writer_stream_pos(f->writer);
    for (int i = 0; i < 10000 && ax_search_indexer_pos(f->indexer) < want; ++i)
        usleep(1000);
    assert_true(ax_search_indexer_pos(f->indexer) >= want);
}

static uint64_t indexed_pos(roomfix_t *f)
{
    ax_txn_t *txn;
    assert_int_equal(ax_db_read_begin(f->db, &txn), 0);
    uint64_t pos = ax_search_pos(txn);
    ax_db_read_end(txn);
    return pos;
}

typedef struct st_hits_t {
    json_t *ids;
    uint64_t last;
} hits_t;

static int hit_cb(void *arg, uint64_t pos, const char *event_id)
{
    hits_t *h = arg;
    if (h->last != 0 && pos >= h->last)
        fail_msg("not newest first: %llu after %llu", (unsigned long long)pos, (unsigned long long)h->last);
    h->last = pos;
    json_array_append_new(h->ids, json_string(event_id));
    return 0;
}

/* The event IDs the index holds under 'term' in the fixture's room, newest first (a new reference). */
static json_t *scan(roomfix_t *f, const char *term)
{
    ax_txn_t *txn;
    hits_t h = {json_array(), 0};
    assert_int_equal(ax_db_read_begin(f->db, &txn), 0);
    assert_int_equal(ax_db_search_scan(txn, term, f->room_id, hit_cb, &h), 0);
    ax_db_read_end(txn);
    return h.ids;
}

static void assert_scan(roomfix_t *f, const char *term, const char *want_json)
{
    json_t *got = scan(f, term), *want = json_loads(want_json, 0, NULL);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, 0);
        fail_msg("%s: got %s, want %s", term, g, want_json);
    }
    json_decref(got);
    json_decref(want);
}

static void reopen(roomfix_t *f, bool search)
{
    roomfix_close(f);
    f->search = search;
    roomfix_open(f);
}

static int set_schema_3(ax_txn_t *txn, void *arg)
{
    (void)arg;
    return ax_db_meta_put_u64(txn, "schema_version", 3);
}

#define MANY 300 /* more than one record of the index (128 events) */

static void test_index_follows_the_timeline(void **state)
{
    (void)state;
    roomfix_t *f = roomfix_new("10");
    reopen(f, true);
    roomfix_public_room(f, true);
    char e1[256], e2[256], want[512];
    roomfix_local(f, "@alice:a.test", "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":\"The quick FOX\"}",
                  e1);
    roomfix_local(f, "@alice:a.test", "m.room.topic", "", "{\"topic\":\"Blue whales\"}", e2);
    roomfix_local(f, "@alice:a.test", "m.sticker", NULL, "{\"body\":\"a sticker fox\",\"url\":\"mxc://a.test/x\"}",
                  NULL);
    roomfix_local(f, "@alice:a.test", "m.room.message", NULL, "{\"msgtype\":\"m.text\",\"body\":7}", NULL);
    wait_indexed(f);
    assert_int_equal(indexed_pos(f), ax_writer_stream_pos(f->writer));
    snprintf(want, sizeof(want), "[\"%s\"]", e1);
    assert_scan(f, "fox", want);
    assert_scan(f, "quick", want);
    snprintf(want, sizeof(want), "[\"%s\"]", e2);
    assert_scan(f, "whales", want);
    assert_scan(f, "sticker", "[]");
    assert_scan(f, "7", "[]");

    /* many messages: records of the index split, scanned newest first across them */
    json_t *many = json_array();
    for (int i = 0; i < MANY; ++i) {
        char body[128], id[256];
        snprintf(body, sizeof(body), "{\"msgtype\":\"m.text\",\"body\":\"common word%d\"}", i);
        roomfix_local(f, "@alice:a.test", "m.room.message", NULL, body, id);
        json_array_insert_new(many, 0, json_string(id));
    }
    wait_indexed(f);
    json_t *got = scan(f, "common");
    assert_true(json_equal(got, many));
    json_decref(got);
    snprintf(want, sizeof(want), "[\"%s\"]", json_string_value(json_array_get(many, MANY - 18)));
    assert_scan(f, "word17", want);

    /* the index's position is stored with it */
    reopen(f, false);
    assert_int_equal(indexed_pos(f), ax_writer_stream_pos(f->writer));
    snprintf(want, sizeof(want), "[\"%s\"]", e1);
    assert_scan(f, "fox", want);

    /* from schema 3 (an event per record): emptied, to be rebuilt from the timeline */
    assert_int_equal(roomfix_write(f, set_schema_3, NULL), 0);
    reopen(f, false);
    assert_int_equal(indexed_pos(f), 0);
    assert_scan(f, "fox", "[]");
    reopen(f, true);
    wait_indexed(f);
    assert_scan(f, "fox", want);
    got = scan(f, "common");
    assert_true(json_equal(got, many));
    json_decref(got);
    json_decref(many);
    roomfix_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_follows_the_timeline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
