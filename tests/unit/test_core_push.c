/*
 * test_core_push.c -- push rules (core/push_rules.c): glob matching with
 * case folding and word boundaries, dotted paths with escapes, every
 * condition kind, the server-default rules on sample events, rule editing
 * with its ordering and validation, and the master switch.
 */
#include "testutil.h"

#include "core/push.h"

#define ME "@me:example.org"

/* ---- evaluation helpers ---- */

typedef struct st_fixture_t {
    const char *display_name;
    bool sender_may;
    int perm_calls;
} fixture_t;

static const char *fx_name(void *arg)
{
    return ((fixture_t *)arg)->display_name;
}

static bool fx_may(void *arg, const char *key)
{
    fixture_t *f = arg;
    f->perm_calls++;
    return f->sender_may && strcmp(key, "room") == 0;
}

/* Evaluates 'rules' on the event 'json' for ME in a room of 'members'. */
static ax_push_result_t eval_with(const ax_push_rules_t *rules, const char *json, uint64_t members, fixture_t *f)
{
    json_error_t err;
    json_t *ev = json_loads(json, 0, &err);
    if (ev == NULL) {
        fprintf(stderr, "bad test JSON: %s\n", err.text);
        abort();
    }
    fixture_t dflt = {"Me Myself", false, 0};
    ax_push_ctx_t ctx = {.event = ev,
                         .user_id = ME,
                         .member_count = members,
                         .display_name = fx_name,
                         .sender_may = fx_may,
                         .arg = f != NULL ? f : &dflt};
    ax_push_result_t res;
    ax_push_eval(rules, &ctx, &res);
    json_decref(ev);
    return res;
}

static ax_push_result_t eval_default(const char *json, uint64_t members, fixture_t *f)
{
    ax_push_rules_t *rules = ax_push_rules_compile(NULL);
    ax_push_result_t res = eval_with(rules, json, members, f);
    /* the strings live in the compiled rules: keep what the tests look at */
    static char rule_id[128];
    snprintf(rule_id, sizeof(rule_id), "%s", res.rule_id ? res.rule_id : "");
    res.rule_id = res.rule_id ? rule_id : NULL;
    res.tweaks = NULL;
    res.actions_json = NULL;
    ax_push_rules_free(rules);
    return res;
}

#define MSG(body)                                                                                                      \
    "{\"type\":\"m.room.message\",\"sender\":\"@you:example.org\",\"room_id\":\"!r:example.org\","                     \
    "\"content\":{\"msgtype\":\"m.text\",\"body\":\"" body "\"}}"

/* ---- globs ---- */

static void test_glob_whole_value(void **state)
{
    (void)state;
    /* the spec's example: "lunc?*" against topics */
    assert_true(ax_push_glob("lunc?*", "Lunch plans", false, false));
    assert_true(ax_push_glob("lunc?*", "LUNCH", false, false));
    assert_false(ax_push_glob("lunc?*", " lunch", false, false));
    assert_false(ax_push_glob("lunc?*", "lunc", false, false));
    assert_true(ax_push_glob("m.room.message", "m.room.message", false, false));
    assert_false(ax_push_glob("m.room.message", "m.room.message2", false, false));
    assert_false(ax_push_glob("m.room.message", "m.room.messag", false, false));
    assert_true(ax_push_glob("*", "", false, false));
    assert_true(ax_push_glob("", "", false, false));
    assert_false(ax_push_glob("", "x", false, false));
    assert_true(ax_push_glob("a*b*c", "aXXbYYc", false, false));
    assert_false(ax_push_glob("a*b*c", "aXXbYY", false, false));
    assert_true(ax_push_glob("a**?", "ab", false, false));
    assert_false(ax_push_glob("a**?", "a", false, false));
    /* '?' is one character, not one byte */
    assert_true(ax_push_glob("caf?", "café", false, false));
    assert_false(ax_push_glob("caf??", "café", false, false));
    /* case folding beyond ASCII */
    assert_true(ax_push_glob("ärger", "ÄRGER", false, false));
    assert_true(ax_push_glob("σοφια", "ΣΟΦΙΑ", false, false));
    assert_true(ax_push_glob("привет", "ПРИВЕТ", false, false));
    assert_true(ax_push_glob("łódź", "ŁÓDŹ", false, false));
    /* literal mode: wildcards are ordinary characters */
    assert_true(ax_push_glob("a*b", "a*b", false, true));
    assert_false(ax_push_glob("a*b", "aXb", false, true));
}

static void test_glob_word_boundaries(void **state)
{
    (void)state;
    /* the spec's examples for content.body */
    assert_true(ax_push_glob("ex*ple", "An example event.", true, false));
    assert_true(ax_push_glob("ex*ple", "exple", true, false));
    assert_true(ax_push_glob("ex*ple", "An exciting triple-whammy", true, false));
    /* a word inside another word does not match; '-' and '.' separate words, '_' does not */
    assert_true(ax_push_glob("cake", "I like cake.", true, false));
    assert_true(ax_push_glob("cake", "CAKE", true, false));
    assert_true(ax_push_glob("cake", "cake-time", true, false));
    assert_false(ax_push_glob("cake", "cakes", true, false));
    assert_false(ax_push_glob("cake", "pancake", true, false));
    assert_false(ax_push_glob("cake", "cake_lover", true, false));
    assert_false(ax_push_glob("cake", "my_cake", true, false));
    assert_true(ax_push_glob("cake", "9 cake 9", true, false));
    assert_false(ax_push_glob("cake", "9cake", true, false));
    /* non-ASCII letters are not in the word sets, so they are boundaries */
    assert_true(ax_push_glob("cake", "écake", true, false));
    /* a pattern that can end at several places: a later boundary still counts */
    assert_true(ax_push_glob("a*", "abc def", true, false));
    assert_true(ax_push_glob("b*", "abc bcd", true, false));
    assert_false(ax_push_glob("b*", "abc", true, false));
    assert_true(ax_push_glob("c?ke", "a coke!", true, false));
    /* display names (literal) with spaces and symbols */
    assert_true(ax_push_glob("Alice Smith", "hey alice smith, look", true, true));
    assert_false(ax_push_glob("Alice Smith", "hey alice smithers", true, true));
    assert_true(ax_push_glob("R2*D2", "is r2*d2 here", true, true));
    assert_false(ax_push_glob("R2*D2", "is r2-xx-d2 here", true, true));
}

static void test_paths(void **state)
{
    (void)state;
    json_t *ev =
        json_loads("{\"content\": {\"m.mentions\": {\"user_ids\": [\"@a:b\"]}, \"m\\\\foo\": 1, \"a\": {\"b\": 2},"
                   "\"\\\\x\": 3, \"m.relates_to\": {\"rel_type\": \"m.thread\"}}}",
                   0, NULL);
    assert_non_null(ev);
    assert_true(json_is_array(ax_push_path_get(ev, "content.m\\.mentions.user_ids")));
    assert_null(ax_push_path_get(ev, "content.m.mentions.user_ids"));
    assert_int_equal(json_integer_value(ax_push_path_get(ev, "content.m\\\\foo")), 1);
    assert_int_equal(json_integer_value(ax_push_path_get(ev, "content.a.b")), 2);
    /* other escapes stay as they are: "\x" is a backslash and an x */
    assert_int_equal(json_integer_value(ax_push_path_get(ev, "content.\\x")), 3);
    assert_string_equal(json_string_value(ax_push_path_get(ev, "content.m\\.relates_to.rel_type")), "m.thread");
    assert_null(ax_push_path_get(ev, "content.a.b.c"));
    assert_null(ax_push_path_get(ev, "nothing"));
    json_decref(ev);
}

/* ---- the server-default rules on sample events ---- */

static void test_default_ruleset_shape(void **state)
{
    (void)state;
    json_t *rs = ax_push_ruleset(NULL, ME);
    json_t *g = json_object_get(rs, "global");
    static const char *const override[] = {
        ".m.rule.master",          ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
        ".m.rule.is_user_mention", ".m.rule.is_room_mention",  ".m.rule.tombstone",     ".m.rule.reaction",
        ".m.rule.room.server_acl", ".m.rule.suppress_edits"};
    static const char *const underride[] = {".m.rule.call", ".m.rule.encrypted_room_one_to_one",
                                            ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"};
    json_t *o = json_object_get(g, "override"), *u = json_object_get(g, "underride");
    assert_int_equal(json_array_size(o), AX_ARRAY_SIZE(override));
    assert_int_equal(json_array_size(u), AX_ARRAY_SIZE(underride));
    for (size_t i = 0; i < AX_ARRAY_SIZE(override); ++i)
        assert_string_equal(json_string_value(json_object_get(json_array_get(o, i), "rule_id")), override[i]);
    for (size_t i = 0; i < AX_ARRAY_SIZE(underride); ++i)
        assert_string_equal(json_string_value(json_object_get(json_array_get(u, i), "rule_id")), underride[i]);
    assert_int_equal(json_array_size(json_object_get(g, "content")), 0);
    assert_int_equal(json_array_size(json_object_get(g, "room")), 0);
    assert_int_equal(json_array_size(json_object_get(g, "sender")), 0);
    /* the user's ID is filled in */
    char *text = json_dumps(rs, 0);
    assert_null(strstr(text, "the user's Matrix ID"));
    assert_non_null(strstr(text, "\"pattern\": \"" ME "\""));
    assert_non_null(strstr(text, "\"value\": \"" ME "\""));
    free(text);
    assert_true(json_is_false(json_object_get(json_array_get(o, 0), "enabled")));
    json_decref(rs);
}

static void test_defaults_messages(void **state)
{
    (void)state;
    ax_push_result_t r = eval_default(MSG("hello"), 10, NULL);
    assert_true(r.notify);
    assert_false(r.highlight);
    assert_false(r.sound);
    assert_string_equal(r.rule_id, ".m.rule.message");

    r = eval_default(MSG("hello"), 2, NULL);
    assert_true(r.notify && r.sound && !r.highlight);
    assert_string_equal(r.rule_id, ".m.rule.room_one_to_one");

    r = eval_default("{\"type\":\"m.room.message\",\"sender\":\"@you:e\",\"content\":{\"msgtype\":\"m.notice\","
                     "\"body\":\"bot\"}}",
                     10, NULL);
    assert_false(r.notify);
    assert_string_equal(r.rule_id, ".m.rule.suppress_notices");

    r = eval_default("{\"type\":\"m.room.encrypted\",\"sender\":\"@you:e\",\"content\":{}}", 2, NULL);
    assert_true(r.notify && r.sound);
    assert_string_equal(r.rule_id, ".m.rule.encrypted_room_one_to_one");
    r = eval_default("{\"type\":\"m.room.encrypted\",\"sender\":\"@you:e\",\"content\":{}}", 5, NULL);
    assert_true(r.notify && !r.sound);
    assert_string_equal(r.rule_id, ".m.rule.encrypted");

    r = eval_default("{\"type\":\"m.call.invite\",\"sender\":\"@you:e\",\"content\":{}}", 5, NULL);
    assert_true(r.notify && r.sound);
    assert_string_equal(r.rule_id, ".m.rule.call");

    /* anything else: no rule matches, no notification */
    r = eval_default("{\"type\":\"m.room.topic\",\"sender\":\"@you:e\",\"state_key\":\"\",\"content\":{}}", 5, NULL);
    assert_false(r.notify);
    assert_null(r.rule_id);
}

static void test_defaults_mentions(void **state)
{
    (void)state;
    ax_push_result_t r = eval_default("{\"type\":\"m.room.message\",\"sender\":\"@you:e\",\"content\":{\"body\":\"hi\","
                                      "\"m.mentions\":{\"user_ids\":[\"@other:e\",\"" ME "\"]}}}",
                                      10, NULL);
    assert_true(r.notify && r.highlight && r.sound);
    assert_string_equal(r.rule_id, ".m.rule.is_user_mention");
    /* someone else mentioned: an ordinary message */
    r = eval_default("{\"type\":\"m.room.message\",\"sender\":\"@you:e\",\"content\":{\"body\":\"hi\","
                     "\"m.mentions\":{\"user_ids\":[\"@other:e\"]}}}",
                     10, NULL);
    assert_false(r.highlight);
    /* body mentions alone no longer highlight (v1.17 removed the legacy rules) */
    r = eval_default(MSG("hey Me Myself and @me:example.org"), 10, NULL);
    assert_false(r.highlight);

    /* @room needs the sender's power */
    fixture_t f = {NULL, true, 0};
    const char *room_mention = "{\"type\":\"m.room.message\",\"sender\":\"@you:e\",\"content\":{\"body\":\"all\","
                               "\"m.mentions\":{\"room\":true}}}";
    r = eval_default(room_mention, 10, &f);
    assert_true(r.notify && r.highlight);
    assert_string_equal(r.rule_id, ".m.rule.is_room_mention");
    f.sender_may = false;
    r = eval_default(room_mention, 10, &f);
    assert_true(r.notify && !r.highlight);
    assert_string_equal(r.rule_id, ".m.rule.message");
    /* "room": "true" (a string) is not true */
    f.sender_may = true;
    r = eval_default("{\"type\":\"m.room.message\",\"sender\":\"@you:e\",\"content\":{\"body\":\"x\","
                     "\"m.mentions\":{\"room\":\"true\"}}}",
                     10, &f);
    assert_false(r.highlight);
}

static void test_defaults_membership_and_others(void **state)
{
    (void)state;
    ax_push_result_t r = eval_default("{\"type\":\"m.room.member\",\"sender\":\"@you:e\",\"state_key\":\"" ME
                                      "\",\"content\":{\"membership\":\"invite\"}}",
                                      3, NULL);
    assert_true(r.notify && r.sound);
    assert_string_equal(r.rule_id, ".m.rule.invite_for_me");
    r = eval_default("{\"type\":\"m.room.member\",\"sender\":\"@you:e\",\"state_key\":\"@x:e\","
                     "\"content\":{\"membership\":\"invite\"}}",
                     3, NULL);
    assert_false(r.notify);
    assert_string_equal(r.rule_id, ".m.rule.member_event");
    r = eval_default("{\"type\":\"m.room.tombstone\",\"sender\":\"@you:e\",\"state_key\":\"\","
                     "\"content\":{\"replacement_room\":\"!n:e\"}}",
                     3, NULL);
    assert_true(r.notify && r.highlight);
    /* a tombstone with a state key is not the room's tombstone; a non-state one neither */
    r = eval_default("{\"type\":\"m.room.tombstone\",\"sender\":\"@you:e\",\"state_key\":\"x\",\"content\":{}}", 3,
                     NULL);
    assert_false(r.notify);
    r = eval_default("{\"type\":\"m.room.tombstone\",\"sender\":\"@you:e\",\"content\":{}}", 3, NULL);
    assert_false(r.notify);
    r = eval_default("{\"type\":\"m.reaction\",\"sender\":\"@you:e\",\"content\":{}}", 2, NULL);
    assert_false(r.notify);
    assert_string_equal(r.rule_id, ".m.rule.reaction");
    r = eval_default("{\"type\":\"m.room.server_acl\",\"sender\":\"@you:e\",\"state_key\":\"\",\"content\":{}}", 2,
                     NULL);
    assert_false(r.notify);
    r = eval_default("{\"type\":\"m.room.message\",\"sender\":\"@you:e\",\"content\":{\"body\":\"* fix\","
                     "\"m.relates_to\":{\"rel_type\":\"m.replace\",\"event_id\":\"$x\"},"
                     "\"m.mentions\":{\"user_ids\":[]}}}",
                     2, NULL);
    assert_false(r.notify);
    assert_string_equal(r.rule_id, ".m.rule.suppress_edits");
}

/* ---- every condition kind through user rules ---- */

static ax_push_rules_t *with_override(const char *conditions_json, const char *actions_json)
{
    json_t *stored = NULL;
    char body[2048];
    snprintf(body, sizeof(body), "{\"conditions\": %s, \"actions\": %s}", conditions_json, actions_json);
    json_t *b = json_loads(body, 0, NULL);
    char msg[256];
    int rc = ax_push_rule_put(&stored, AX_PUSH_OVERRIDE, "test", b, NULL, NULL, msg, sizeof(msg));
    if (rc != 0) {
        fprintf(stderr, "put failed: %s\n", msg);
        abort();
    }
    json_decref(b);
    ax_push_rules_t *rules = ax_push_rules_compile(stored);
    json_decref(stored);
    return rules;
}

static bool fires(ax_push_rules_t *rules, const char *event, uint64_t members, fixture_t *f)
{
    ax_push_result_t r = eval_with(rules, event, members, f);
    return r.rule_id != NULL && strcmp(r.rule_id, "test") == 0;
}

static void test_condition_event_match(void **state)
{
    (void)state;
    ax_push_rules_t *r =
        with_override("[{\"kind\":\"event_match\",\"key\":\"content.topic\",\"pattern\":\"lunc?*\"}]", "[\"notify\"]");
    assert_true(fires(r, "{\"type\":\"m.room.topic\",\"content\":{\"topic\":\"Lunch plans\"}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"m.room.topic\",\"content\":{\"topic\":\" lunch\"}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"m.room.topic\",\"content\":{\"topic\":null}}", 5, NULL));
    ax_push_rules_free(r);
    /* '*' does not match an absent or non-string value */
    r = with_override("[{\"kind\":\"event_match\",\"key\":\"content.x\",\"pattern\":\"*\"}]", "[\"notify\"]");
    assert_false(fires(r, "{\"type\":\"t\",\"content\":{}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"t\",\"content\":{\"x\":1}}", 5, NULL));
    assert_true(fires(r, "{\"type\":\"t\",\"content\":{\"x\":\"\"}}", 5, NULL));
    ax_push_rules_free(r);
    /* content.body matches words, other keys the whole value */
    r = with_override("[{\"kind\":\"event_match\",\"key\":\"content.body\",\"pattern\":\"cake\"}]", "[\"notify\"]");
    assert_true(fires(r, MSG("I want CAKE now"), 5, NULL));
    assert_false(fires(r, MSG("cupcakes"), 5, NULL));
    ax_push_rules_free(r);
    r = with_override("[{\"kind\":\"event_match\",\"key\":\"content.msgtype\",\"pattern\":\"text\"}]", "[\"notify\"]");
    assert_false(fires(r, MSG("x"), 5, NULL)); /* "m.text" is not "text" */
    ax_push_rules_free(r);
}

static void test_condition_property_is_contains(void **state)
{
    (void)state;
    ax_push_rules_t *r = with_override(
        "[{\"kind\":\"event_property_is\",\"key\":\"content.m\\\\.federate\",\"value\":true}]", "[\"notify\"]");
    assert_true(fires(r, "{\"type\":\"m.room.create\",\"content\":{\"m.federate\":true}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"m.room.create\",\"content\":{\"m.federate\":\"true\"}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"m.room.create\",\"content\":{\"m.federate\":1}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"m.room.create\",\"content\":{}}", 5, NULL));
    ax_push_rules_free(r);
    r = with_override("[{\"kind\":\"event_property_is\",\"key\":\"content.n\",\"value\":null}]", "[\"notify\"]");
    assert_true(fires(r, "{\"type\":\"t\",\"content\":{\"n\":null}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"t\",\"content\":{}}", 5, NULL));
    ax_push_rules_free(r);
    r = with_override("[{\"kind\":\"event_property_is\",\"key\":\"content.n\",\"value\":42}]", "[\"notify\"]");
    assert_true(fires(r, "{\"type\":\"t\",\"content\":{\"n\":42}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"t\",\"content\":{\"n\":42.0}}", 5, NULL));
    ax_push_rules_free(r);
    r = with_override("[{\"kind\":\"event_property_contains\",\"key\":\"content.alt_aliases\","
                      "\"value\":\"#myroom:example.com\"}]",
                      "[\"notify\"]");
    assert_true(fires(r, "{\"type\":\"t\",\"content\":{\"alt_aliases\":[\"#a:b\",\"#myroom:example.com\"]}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"t\",\"content\":{\"alt_aliases\":[\":example.com\"]}}", 5, NULL));
    assert_false(fires(r, "{\"type\":\"t\",\"content\":{\"alt_aliases\":\"#myroom:example.com\"}}", 5, NULL));
    ax_push_rules_free(r);
}

static void test_condition_display_name(void **state)
{
    (void)state;
    ax_push_rules_t *r = with_override("[{\"kind\":\"contains_display_name\"}]", "[\"notify\"]");
    assert_true(ax_push_rules_need_display_name(r));
    fixture_t f = {"Alice", false, 0};
    assert_true(fires(r, MSG("hi alice!"), 5, &f));
    assert_false(fires(r, MSG("hi alicexyz"), 5, &f));
    assert_false(fires(r, "{\"type\":\"t\",\"content\":{}}", 5, &f));
    f.display_name = NULL;
    assert_false(fires(r, MSG("hi alice"), 5, &f));
    f.display_name = "";
    assert_false(fires(r, MSG("hi alice"), 5, &f));
    ax_push_rules_free(r);
    r = ax_push_rules_compile(NULL);
    assert_false(ax_push_rules_need_display_name(r));
    ax_push_rules_free(r);
}

static void test_condition_member_count(void **state)
{
    (void)state;
    static const struct {
        const char *is;
        uint64_t n;
        bool yes;
    } cases[] = {{"2", 2, true},    {"2", 3, false},    {"==2", 2, true}, {"<10", 9, true}, {"<10", 10, false},
                 {">10", 11, true}, {">10", 10, false}, {">=3", 3, true}, {"<=3", 3, true}, {"<=3", 4, false}};
    for (size_t i = 0; i < AX_ARRAY_SIZE(cases); ++i) {
        char c[128];
        snprintf(c, sizeof(c), "[{\"kind\":\"room_member_count\",\"is\":\"%s\"}]", cases[i].is);
        ax_push_rules_t *r = with_override(c, "[\"notify\"]");
        assert_int_equal(fires(r, MSG("x"), cases[i].n, NULL), cases[i].yes);
        ax_push_rules_free(r);
    }
}

static void test_condition_sender_permission_and_unknown(void **state)
{
    (void)state;
    ax_push_rules_t *r =
        with_override("[{\"kind\":\"sender_notification_permission\",\"key\":\"room\"}]", "[\"notify\"]");
    fixture_t f = {NULL, true, 0};
    assert_true(fires(r, MSG("x"), 5, &f));
    f.sender_may = false;
    assert_false(fires(r, MSG("x"), 5, &f));
    assert_true(f.perm_calls >= 2);
    ax_push_rules_free(r);
    /* spec: unrecognised conditions never match */
    r = with_override("[{\"kind\":\"org.example.future\"}]", "[\"notify\"]");
    assert_false(fires(r, MSG("x"), 5, NULL));
    ax_push_rules_free(r);
    /* no conditions: always */
    r = with_override("[]", "[\"notify\"]");
    assert_true(fires(r, MSG("x"), 5, NULL));
    ax_push_rules_free(r);
}

/* ---- editing ---- */

static json_t *J(const char *s)
{
    json_t *j = json_loads(s, 0, NULL);
    if (j == NULL)
        abort();
    return j;
}

static const char *rule_at(const json_t *stored, const char *kind, size_t i)
{
    static char id[128];
    json_t *rs = ax_push_ruleset(stored, ME);
    json_t *r = json_array_get(json_object_get(json_object_get(rs, "global"), kind), i);
    snprintf(id, sizeof(id), "%s", r ? json_string_value(json_object_get(r, "rule_id")) : "(none)");
    json_decref(rs);
    return id;
}

static void test_edit_ordering(void **state)
{
    (void)state;
    json_t *stored = NULL;
    char msg[256];
    json_t *body = J("{\"pattern\": \"cake\", \"actions\": [\"notify\"]}");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "a", body, NULL, NULL, msg, sizeof(msg)), 0);
    /* a new rule without before/after is the most important */
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "b", body, NULL, NULL, msg, sizeof(msg)), 0);
    assert_string_equal(rule_at(stored, "content", 0), "b");
    assert_string_equal(rule_at(stored, "content", 1), "a");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "c", body, NULL, "b", msg, sizeof(msg)), 0);
    assert_string_equal(rule_at(stored, "content", 1), "c"); /* b c a */
    /* with both, before decides */
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "d", body, "b", "a", msg, sizeof(msg)), 0);
    assert_string_equal(rule_at(stored, "content", 0), "d"); /* d b c a */
    /* replacing keeps the place; moving with after */
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "c", body, NULL, NULL, msg, sizeof(msg)), 0);
    assert_string_equal(rule_at(stored, "content", 2), "c");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "d", body, NULL, "a", msg, sizeof(msg)), 0);
    assert_string_equal(rule_at(stored, "content", 3), "d"); /* b c a d */
    /* anchors must be user rules of the same kind */
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "e", body, "nope", NULL, msg, sizeof(msg)),
                     AX_ECONFLICT);
    assert_non_null(strstr(msg, "nope"));
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "e", body, ".m.rule.master", NULL, msg, sizeof(msg)),
                     AX_ECONFLICT);
    assert_string_equal(rule_at(stored, "content", 4), "(none)"); /* nothing changed */
    json_decref(body);

    /* user override rules come after the master rule and before the other defaults */
    body = J("{\"conditions\": [], \"actions\": []}");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_OVERRIDE, "mine", body, NULL, NULL, msg, sizeof(msg)), 0);
    assert_string_equal(rule_at(stored, "override", 0), ".m.rule.master");
    assert_string_equal(rule_at(stored, "override", 1), "mine");
    assert_string_equal(rule_at(stored, "override", 2), ".m.rule.suppress_notices");
    json_decref(body);

    /* delete */
    assert_int_equal(ax_push_rule_delete(&stored, AX_PUSH_CONTENT, "c", msg, sizeof(msg)), 0);
    assert_int_equal(ax_push_rule_delete(&stored, AX_PUSH_CONTENT, "c", msg, sizeof(msg)), AX_ENOTFOUND);
    assert_int_equal(ax_push_rule_delete(&stored, AX_PUSH_OVERRIDE, ".m.rule.master", msg, sizeof(msg)), AX_EINVAL);
    assert_string_equal(rule_at(stored, "content", 1), "a");
    json_decref(stored);
}

static void test_edit_validation(void **state)
{
    (void)state;
    json_t *stored = NULL;
    char msg[256];
    static const struct {
        ax_push_kind_t kind;
        const char *id;
        const char *body;
    } bad[] = {
        {AX_PUSH_OVERRIDE, ".mine", "{\"actions\": []}"},
        {AX_PUSH_OVERRIDE, "a/b", "{\"actions\": []}"},
        {AX_PUSH_OVERRIDE, "a\\b", "{\"actions\": []}"},
        {AX_PUSH_OVERRIDE, "", "{\"actions\": []}"},
        {AX_PUSH_ROOM, "not-a-room", "{\"actions\": []}"},
        {AX_PUSH_SENDER, "nobody", "{\"actions\": []}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [\"explode\"]}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [42]}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [{\"value\": 1}]}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [{\"set_tweak\": \"highlight\", \"value\": \"yes\"}]}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": \"notify\"}"},
        {AX_PUSH_OVERRIDE, "x", "{}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [], \"conditions\": {}}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [], \"conditions\": [1]}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [], \"conditions\": [{\"key\": \"type\"}]}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [], \"conditions\": [{\"kind\": \"event_match\", \"key\": \"type\"}]}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [], \"conditions\": [{\"kind\": \"event_match\", \"pattern\": \"x\"}]}"},
        {AX_PUSH_OVERRIDE, "x",
         "{\"actions\": [], \"conditions\": [{\"kind\": \"event_property_is\", \"key\": \"a\", \"value\": 1.5}]}"},
        {AX_PUSH_OVERRIDE, "x",
         "{\"actions\": [], \"conditions\": [{\"kind\": \"event_property_is\", \"key\": \"a\", \"value\": {}}]}"},
        {AX_PUSH_OVERRIDE, "x",
         "{\"actions\": [], \"conditions\": [{\"kind\": \"event_property_contains\", \"key\": \"a\"}]}"},
        {AX_PUSH_OVERRIDE, "x",
         "{\"actions\": [], \"conditions\": [{\"kind\": \"room_member_count\", \"is\": \"~2\"}]}"},
        {AX_PUSH_OVERRIDE, "x", "{\"actions\": [], \"conditions\": [{\"kind\": \"room_member_count\", \"is\": 2}]}"},
        {AX_PUSH_UNDERRIDE, "x", "{\"actions\": [], \"conditions\": [{\"kind\": \"sender_notification_permission\"}]}"},
        {AX_PUSH_CONTENT, "x", "{\"actions\": []}"},
        {AX_PUSH_CONTENT, "x", "{\"actions\": [], \"pattern\": 5}"},
    };
    for (size_t i = 0; i < AX_ARRAY_SIZE(bad); ++i) {
        json_t *b = J(bad[i].body);
        msg[0] = '\0';
        int rc = ax_push_rule_put(&stored, bad[i].kind, bad[i].id, b, NULL, NULL, msg, sizeof(msg));
        if (rc != AX_EINVAL)
            fprintf(stderr, "case %zu (%s %s) gave %d\n", i, bad[i].id, bad[i].body, rc);
        assert_int_equal(rc, AX_EINVAL);
        assert_true(msg[0] != '\0');
        assert_null(stored);
        json_decref(b);
    }
    /* accepted: historical actions are dropped, unknown condition kinds are kept */
    json_t *b = J("{\"actions\": [\"notify\", \"coalesce\", \"dont_notify\", {\"set_tweak\": \"highlight\"}],"
                  "\"conditions\": [{\"kind\": \"org.example.future\", \"foo\": 1}]}");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_OVERRIDE, "ok", b, NULL, NULL, msg, sizeof(msg)), 0);
    json_decref(b);
    json_t *r = ax_push_rule_get(stored, ME, AX_PUSH_OVERRIDE, "ok");
    assert_int_equal(json_array_size(json_object_get(r, "actions")), 2);
    assert_int_equal(json_array_size(json_object_get(r, "conditions")), 1);
    assert_true(json_is_true(json_object_get(r, "enabled")));
    assert_true(json_is_false(json_object_get(r, "default")));
    json_decref(r);
    /* room and sender rules: the IDs say what they match */
    b = J("{\"actions\": []}");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_ROOM, "!abc:example.org", b, NULL, NULL, msg, sizeof(msg)), 0);
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_ROOM, "!v12roomhash", b, NULL, NULL, msg, sizeof(msg)), 0);
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_SENDER, "@spam:example.org", b, NULL, NULL, msg, sizeof(msg)),
                     0);
    json_decref(b);
    json_decref(stored);
}

static void test_enable_and_actions(void **state)
{
    (void)state;
    json_t *stored = NULL;
    char msg[256];
    /* the master switch silences everything, user rules included */
    json_t *b = J("{\"conditions\": [], \"actions\": [\"notify\"]}");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_OVERRIDE, "loud", b, NULL, NULL, msg, sizeof(msg)), 0);
    json_decref(b);
    assert_int_equal(ax_push_rule_set_enabled(&stored, AX_PUSH_OVERRIDE, ".m.rule.master", true, msg, sizeof(msg)), 0);
    ax_push_rules_t *rules = ax_push_rules_compile(stored);
    ax_push_result_t r = eval_with(rules, MSG("x"), 2, NULL);
    assert_false(r.notify);
    assert_string_equal(r.rule_id, ".m.rule.master");
    ax_push_rules_free(rules);
    assert_int_equal(ax_push_rule_set_enabled(&stored, AX_PUSH_OVERRIDE, ".m.rule.master", false, msg, sizeof(msg)), 0);
    /* a disabled user rule never matches */
    assert_int_equal(ax_push_rule_set_enabled(&stored, AX_PUSH_OVERRIDE, "loud", false, msg, sizeof(msg)), 0);
    rules = ax_push_rules_compile(stored);
    r = eval_with(rules, MSG("x"), 5, NULL);
    assert_string_equal(r.rule_id, ".m.rule.message");
    ax_push_rules_free(rules);
    /* actions of a default rule: highlight every message */
    json_t *a = J("[\"notify\", {\"set_tweak\": \"highlight\", \"value\": true}, {\"set_tweak\": \"sound\", "
                  "\"value\": \"bing\"}]");
    assert_int_equal(ax_push_rule_set_actions(&stored, AX_PUSH_UNDERRIDE, ".m.rule.message", a, msg, sizeof(msg)), 0);
    json_decref(a);
    rules = ax_push_rules_compile(stored);
    r = eval_with(rules, MSG("x"), 5, NULL);
    assert_true(r.notify && r.highlight && r.sound);
    assert_string_equal(json_string_value(json_object_get(r.tweaks, "sound")), "bing");
    assert_non_null(strstr(r.actions_json, "bing"));
    ax_push_rules_free(rules);
    /* unknown rules */
    assert_int_equal(ax_push_rule_set_enabled(&stored, AX_PUSH_OVERRIDE, "nope", true, msg, sizeof(msg)), AX_ENOTFOUND);
    assert_int_equal(ax_push_rule_set_enabled(&stored, AX_PUSH_CONTENT, ".m.rule.message", true, msg, sizeof(msg)),
                     AX_ENOTFOUND);
    a = J("[\"bogus\"]");
    assert_int_equal(ax_push_rule_set_actions(&stored, AX_PUSH_UNDERRIDE, ".m.rule.message", a, msg, sizeof(msg)),
                     AX_EINVAL);
    json_decref(a);
    /* the effective default shows the change */
    json_t *rule = ax_push_rule_get(stored, ME, AX_PUSH_UNDERRIDE, ".m.rule.message");
    assert_true(json_is_true(json_object_get(rule, "default")));
    assert_int_equal(json_array_size(json_object_get(rule, "actions")), 3);
    json_decref(rule);
    json_decref(stored);
}

static void test_room_sender_content_rules(void **state)
{
    (void)state;
    json_t *stored = NULL;
    char msg[256];
    json_t *mute = J("{\"actions\": []}");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_ROOM, "!r:example.org", mute, NULL, NULL, msg, sizeof(msg)), 0);
    json_t *loud = J("{\"actions\": [\"notify\", {\"set_tweak\": \"highlight\"}]}");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_SENDER, "@boss:example.org", loud, NULL, NULL, msg, sizeof(msg)),
                     0);
    json_t *word = J("{\"pattern\": \"deploy*\", \"actions\": [\"notify\", {\"set_tweak\": \"highlight\"}]}");
    assert_int_equal(ax_push_rule_put(&stored, AX_PUSH_CONTENT, "deploys", word, NULL, NULL, msg, sizeof(msg)), 0);
    ax_push_rules_t *rules = ax_push_rules_compile(stored);
    /* content rules come before room rules */
    ax_push_result_t r = eval_with(rules, MSG("we deployed it"), 5, NULL);
    assert_true(r.highlight);
    assert_string_equal(r.rule_id, "deploys");
    r = eval_with(rules, MSG("plain"), 5, NULL);
    assert_false(r.notify);
    assert_string_equal(r.rule_id, "!r:example.org");
    r = eval_with(rules,
                  "{\"type\":\"m.room.message\",\"sender\":\"@boss:example.org\",\"room_id\":\"!other:example.org\","
                  "\"content\":{\"body\":\"hi\"}}",
                  5, NULL);
    assert_true(r.highlight);
    assert_string_equal(r.rule_id, "@boss:example.org");
    ax_push_rules_free(rules);
    json_decref(mute);
    json_decref(loud);
    json_decref(word);
    json_decref(stored);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob_whole_value),
        cmocka_unit_test(test_glob_word_boundaries),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_default_ruleset_shape),
        cmocka_unit_test(test_defaults_messages),
        cmocka_unit_test(test_defaults_mentions),
        cmocka_unit_test(test_defaults_membership_and_others),
        cmocka_unit_test(test_condition_event_match),
        cmocka_unit_test(test_condition_property_is_contains),
        cmocka_unit_test(test_condition_display_name),
        cmocka_unit_test(test_condition_member_count),
        cmocka_unit_test(test_condition_sender_permission_and_unknown),
        cmocka_unit_test(test_edit_ordering),
        cmocka_unit_test(test_edit_validation),
        cmocka_unit_test(test_enable_and_actions),
        cmocka_unit_test(test_room_sender_content_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
