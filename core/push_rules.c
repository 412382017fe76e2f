/*
 * push_rules.c -- push rules (spec: Client-Server API "Push Rules",
 * "Conditions", "Predefined Rules"; appendices "Glob-style matching" and
 * "Dot-separated property paths").
 *
 * The server-default rules are the spec's, in the spec's order (v1.17: the
 * legacy body-mention rules are gone).  A user's changes are a small stored
 * record (core/push.h); the effective set is built from both on demand.
 * Compiled rule sets are flat arrays of rules whose conditions have their
 * paths split and patterns case-folded into code points, so evaluating an
 * event for a user is a handful of lookups and comparisons.
 */
#include "core/push.h"

#include <pthread.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>

#define USER_ID_PLACEHOLDER "[the user's Matrix ID]"
#define MAX_USER_RULES      500  /* per user, all kinds together */
#define MAX_CONDITIONS      32   /* per rule */
#define MAX_PATTERN_BYTES   2048 /* patterns and keys */
#define MAX_RULE_ID_BYTES   255

static const char *const kind_names[AX_PUSH_KINDS] = {"override", "content", "room", "sender", "underride"};

int ax_push_kind_parse(const char *name)
{
    for (int k = 0; k < AX_PUSH_KINDS; ++k)
        if (name != NULL && strcmp(name, kind_names[k]) == 0)
            return k;
    return -1;
}

const char *ax_push_kind_name(ax_push_kind_t kind)
{
    return kind_names[kind];
}

/* ---- the server-default rules (spec: "Predefined Rules"), in the spec's order ---- */

/* clang-format off */
static const char default_rules_json[] =
"{"
"\"override\": ["
  "{\"rule_id\": \".m.rule.master\", \"default\": true, \"enabled\": false, \"conditions\": [], \"actions\": []},"
  "{\"rule_id\": \".m.rule.suppress_notices\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_match\", \"key\": \"content.msgtype\", \"pattern\": \"m.notice\"}],"
   "\"actions\": []},"
  "{\"rule_id\": \".m.rule.invite_for_me\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"key\": \"type\", \"kind\": \"event_match\", \"pattern\": \"m.room.member\"},"
                    "{\"key\": \"content.membership\", \"kind\": \"event_match\", \"pattern\": \"invite\"},"
                    "{\"key\": \"state_key\", \"kind\": \"event_match\", \"pattern\": \"" USER_ID_PLACEHOLDER "\"}],"
   "\"actions\": [\"notify\", {\"set_tweak\": \"sound\", \"value\": \"default\"}]},"
  "{\"rule_id\": \".m.rule.member_event\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"key\": \"type\", \"kind\": \"event_match\", \"pattern\": \"m.room.member\"}],"
   "\"actions\": []},"
  "{\"rule_id\": \".m.rule.is_user_mention\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_property_contains\", \"key\": \"content.m\\\\.mentions.user_ids\","
                     "\"value\": \"" USER_ID_PLACEHOLDER "\"}],"
   "\"actions\": [\"notify\", {\"set_tweak\": \"sound\", \"value\": \"default\"}, {\"set_tweak\": \"highlight\"}]},"
  "{\"rule_id\": \".m.rule.is_room_mention\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_property_is\", \"key\": \"content.m\\\\.mentions.room\", \"value\": true},"
                    "{\"kind\": \"sender_notification_permission\", \"key\": \"room\"}],"
   "\"actions\": [\"notify\", {\"set_tweak\": \"highlight\"}]},"
  "{\"rule_id\": \".m.rule.tombstone\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_match\", \"key\": \"type\", \"pattern\": \"m.room.tombstone\"},"
                    "{\"kind\": \"event_match\", \"key\": \"state_key\", \"pattern\": \"\"}],"
   "\"actions\": [\"notify\", {\"set_tweak\": \"highlight\"}]},"
  "{\"rule_id\": \".m.rule.reaction\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_match\", \"key\": \"type\", \"pattern\": \"m.reaction\"}],"
   "\"actions\": []},"
  "{\"rule_id\": \".m.rule.room.server_acl\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_match\", \"key\": \"type\", \"pattern\": \"m.room.server_acl\"},"
                    "{\"kind\": \"event_match\", \"key\": \"state_key\", \"pattern\": \"\"}],"
   "\"actions\": []},"
  "{\"rule_id\": \".m.rule.suppress_edits\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_property_is\", \"key\": \"content.m\\\\.relates_to.rel_type\","
                     "\"value\": \"m.replace\"}],"
   "\"actions\": []}"
"],"
"\"content\": [],"
"\"room\": [],"
"\"sender\": [],"
"\"underride\": ["
  "{\"rule_id\": \".m.rule.call\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"key\": \"type\", \"kind\": \"event_match\", \"pattern\": \"m.call.invite\"}],"
   "\"actions\": [\"notify\", {\"set_tweak\": \"sound\", \"value\": \"ring\"}]},"
  "{\"rule_id\": \".m.rule.encrypted_room_one_to_one\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"room_member_count\", \"is\": \"2\"},"
                    "{\"kind\": \"event_match\", \"key\": \"type\", \"pattern\": \"m.room.encrypted\"}],"
   "\"actions\": [\"notify\", {\"set_tweak\": \"sound\", \"value\": \"default\"}]},"
  "{\"rule_id\": \".m.rule.room_one_to_one\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"room_member_count\", \"is\": \"2\"},"
                    "{\"kind\": \"event_match\", \"key\": \"type\", \"pattern\": \"m.room.message\"}],"
   "\"actions\": [\"notify\", {\"set_tweak\": \"sound\", \"value\": \"default\"}]},"
  "{\"rule_id\": \".m.rule.message\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_match\", \"key\": \"type\", \"pattern\": \"m.room.message\"}],"
   "\"actions\": [\"notify\"]},"
  "{\"rule_id\": \".m.rule.encrypted\", \"default\": true, \"enabled\": true,"
   "\"conditions\": [{\"kind\": \"event_match\", \"key\": \"type\", \"pattern\": \"m.room.encrypted\"}],"
   "\"actions\": [\"notify\"]}"
"]"
"}";
/* clang-format on */

static json_t *defaults_template;
static pthread_once_t defaults_once = PTHREAD_ONCE_INIT;

static void defaults_parse(void)
{
    json_error_t err;
    defaults_template = json_loads(default_rules_json, 0, &err);
    if (defaults_template == NULL)
        ax_fatal("push: the default rules do not parse: %s", err.text);
}

/* The server-default rules (borrowed, never freed: process lifetime). */
static const json_t *defaults(void)
{
    pthread_once(&defaults_once, defaults_parse);
    return defaults_template;
}

static const json_t *default_rule(ax_push_kind_t kind, const char *rule_id)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(defaults(), kind_names[kind]), i, r)
    {
        if (ax_streq(json_string_value(json_object_get(r, "rule_id")), rule_id))
            return r;
    }
    return NULL;
}

/* ---- the stored record ---- */

/* The user rules of 'kind' in 'stored' (borrowed array), or NULL. */
static json_t *user_rules(const json_t *stored, ax_push_kind_t kind)
{
    json_t *a = json_object_get(json_object_get(stored, "rules"), kind_names[kind]);
    return json_is_array(a) ? a : NULL;
}

/* The user's changes to default rule 'rule_id' ({enabled?, actions?}), or NULL. */
static json_t *default_change(const json_t *stored, ax_push_kind_t kind, const char *rule_id)
{
    json_t *c = json_object_get(json_object_get(json_object_get(stored, "defaults"), kind_names[kind]), rule_id);
    return json_is_object(c) ? c : NULL;
}

static ssize_t user_rule_index(const json_t *rules, const char *rule_id)
{
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        if (ax_streq(json_string_value(json_object_get(r, "rule_id")), rule_id))
            return (ssize_t)i;
    }
    return -1;
}

/* Replaces the placeholder in every string of 'v' (deep, in place). */
static void fill_user_id(json_t *v, const char *user_id)
{
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), USER_ID_PLACEHOLDER) == 0)
            json_string_set(v, user_id);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            fill_user_id(e, user_id);
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            fill_user_id(e, user_id);
        }
    }
}

/* A default rule as the user sees it (new reference): their changes applied, their ID filled in
 * ('user_id' NULL keeps the placeholder, for compiling). */
static json_t *effective_default(const json_t *stored, ax_push_kind_t kind, const json_t *def, const char *user_id)
{
    json_t *r = json_deep_copy(def);
    json_t *change = default_change(stored, kind, json_string_value(json_object_get(def, "rule_id")));
    json_t *en = json_object_get(change, "enabled");
    json_t *ac = json_object_get(change, "actions");
    if (json_is_boolean(en))
        json_object_set(r, "enabled", en);
    if (json_is_array(ac))
        json_object_set_new(r, "actions", json_deep_copy(ac));
    if (user_id != NULL)
        fill_user_id(r, user_id);
    return r;
}

/* A user rule as clients see it (new reference). */
static json_t *effective_user(ax_push_kind_t kind, const json_t *r)
{
    json_t *out = json_object();
    json_object_set(out, "rule_id", json_object_get(r, "rule_id"));
    json_object_set_new(out, "default", json_false());
    json_t *en = json_object_get(r, "enabled");
    json_object_set_new(out, "enabled", json_boolean(!json_is_boolean(en) || json_is_true(en)));
    json_t *ac = json_object_get(r, "actions");
    json_object_set_new(out, "actions", json_is_array(ac) ? json_deep_copy(ac) : json_array());
    if (kind == AX_PUSH_OVERRIDE || kind == AX_PUSH_UNDERRIDE) {
        json_t *c = json_object_get(r, "conditions");
        json_object_set_new(out, "conditions", json_is_array(c) ? json_deep_copy(c) : json_array());
    } else if (kind == AX_PUSH_CONTENT) {
        json_t *p = json_object_get(r, "pattern");
        json_object_set_new(out, "pattern", json_is_string(p) ? json_incref(p) : json_string(""));
    }
    return out;
}

/*
 * Calls 'cb' for every rule of 'kind' in priority order: .m.rule.master
 * first (it beats even user rules), then the user's rules, then the other
 * defaults.  'rule' is a new reference handed to 'cb'.
 */
static void foreach_rule(const json_t *stored, ax_push_kind_t kind, const char *user_id,
                         void (*cb)(void *arg, ax_push_kind_t kind, json_t *rule, bool is_default), void *arg)
{
    const json_t *defs = json_object_get(defaults(), kind_names[kind]);
    size_t i;
    json_t *r;
    json_array_foreach(defs, i, r)
    {
        if (ax_streq(json_string_value(json_object_get(r, "rule_id")), ".m.rule.master"))
            cb(arg, kind, effective_default(stored, kind, r, user_id), true);
    }
    json_array_foreach(user_rules(stored, kind), i, r)
    {
        if (json_is_string(json_object_get(r, "rule_id")))
            cb(arg, kind, effective_user(kind, r), false);
    }
    json_array_foreach(defs, i, r)
    {
        if (!ax_streq(json_string_value(json_object_get(r, "rule_id")), ".m.rule.master"))
            cb(arg, kind, effective_default(stored, kind, r, user_id), true);
    }
}

static void append_rule(void *arg, ax_push_kind_t kind, json_t *rule, bool is_default)
{
    (void)kind, (void)is_default;
    json_array_append_new(arg, rule);
}

json_t *ax_push_ruleset(const json_t *stored, const char *user_id)
{
    json_t *global = json_object();
    for (int k = 0; k < AX_PUSH_KINDS; ++k) {
        json_t *list = json_array();
        foreach_rule(stored, (ax_push_kind_t)k, user_id, append_rule, list);
        json_object_set_new(global, kind_names[k], list);
    }
    return json_pack("{s:o}", "global", global);
}

json_t *ax_push_rule_get(const json_t *stored, const char *user_id, ax_push_kind_t kind, const char *rule_id)
{
    const json_t *def = default_rule(kind, rule_id);
    if (def != NULL)
        return effective_default(stored, kind, def, user_id);
    json_t *rules = user_rules(stored, kind);
    ssize_t i = user_rule_index(rules, rule_id);
    return i < 0 ? NULL : effective_user(kind, json_array_get(rules, (size_t)i));
}

/* ---- validation ---- */

#define FAIL(...) (snprintf(msg, cap, __VA_ARGS__), AX_EINVAL)

int ax_push_actions_check(const json_t *actions, char *msg, size_t cap)
{
    if (!json_is_array(actions))
        return FAIL("'actions' must be an array");
    size_t i;
    json_t *a;
    json_array_foreach(actions, i, a)
    {
        if (json_is_string(a)) {
            const char *s = json_string_value(a);
            if (strcmp(s, "notify") != 0 && strcmp(s, "dont_notify") != 0 && strcmp(s, "coalesce") != 0)
                return FAIL("Unrecognised action '%.64s'", s);
        } else if (json_is_object(a)) {
            json_t *tweak = json_object_get(a, "set_tweak");
            if (!json_is_string(tweak) || json_string_length(tweak) == 0)
                return FAIL("An action object must have a 'set_tweak' string");
            json_t *value = json_object_get(a, "value");
            if (strcmp(json_string_value(tweak), "highlight") == 0 && value != NULL && !json_is_boolean(value))
                return FAIL("The highlight tweak's value must be a boolean");
            if (strcmp(json_string_value(tweak), "sound") == 0 && value != NULL && !json_is_string(value))
                return FAIL("The sound tweak's value must be a string");
        } else {
            return FAIL("Each action must be a string or an object");
        }
    }
    return 0;
}

/* The actions without the historical dont_notify and coalesce (spec: "Historical Actions"); new reference. */
static json_t *actions_clean(const json_t *actions)
{
    json_t *out = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(actions, i, a)
    {
        if (json_is_string(a) && strcmp(json_string_value(a), "notify") != 0)
            continue;
        json_array_append_new(out, json_deep_copy(a));
    }
    return out;
}

/* "==5", "<10", ">=2", "3": optional comparison then a decimal integer. */
static bool parse_member_count(const char *is, int *op, uint64_t *n)
{
    *op = 0; /* 0 ==, 1 <, 2 >, 3 <=, 4 >= */
    if (strncmp(is, "==", 2) == 0)
        is += 2;
    else if (strncmp(is, "<=", 2) == 0)
        *op = 3, is += 2;
    else if (strncmp(is, ">=", 2) == 0)
        *op = 4, is += 2;
    else if (*is == '<')
        *op = 1, ++is;
    else if (*is == '>')
        *op = 2, ++is;
    return strlen(is) <= 18 && ax_parse_u64(is, n) == 0;
}

/* A value event_property_is/contains may compare: a non-compound canonical JSON value. */
static bool comparable_value(const json_t *v)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return i >= -9007199254740991LL && i <= 9007199254740991LL;
    }
    return json_is_string(v) || json_is_boolean(v) || json_is_null(v);
}

static int conditions_check(const json_t *conds, char *msg, size_t cap)
{
    if (!json_is_array(conds))
        return FAIL("'conditions' must be an array");
    if (json_array_size(conds) > MAX_CONDITIONS)
        return FAIL("A rule has at most %d conditions", MAX_CONDITIONS);
    size_t i;
    json_t *c;
    json_array_foreach(conds, i, c)
    {
        if (!json_is_object(c))
            return FAIL("Each condition must be an object");
        const char *kind = json_string_value(json_object_get(c, "kind"));
        if (kind == NULL)
            return FAIL("Each condition needs a 'kind' string");
        json_t *key = json_object_get(c, "key");
        if (key != NULL && (!json_is_string(key) || json_string_length(key) > MAX_PATTERN_BYTES))
            return FAIL("A condition's 'key' must be a string");
        bool needs_key = strcmp(kind, "event_match") == 0 || strcmp(kind, "event_property_is") == 0 ||
                         strcmp(kind, "event_property_contains") == 0 ||
                         strcmp(kind, "sender_notification_permission") == 0;
        if (needs_key && (key == NULL || json_string_length(key) == 0))
            return FAIL("A %s condition needs a 'key'", kind);
        if (strcmp(kind, "event_match") == 0) {
            json_t *p = json_object_get(c, "pattern");
            if (!json_is_string(p) || json_string_length(p) > MAX_PATTERN_BYTES)
                return FAIL("An event_match condition needs a 'pattern' string");
        } else if (strcmp(kind, "event_property_is") == 0 || strcmp(kind, "event_property_contains") == 0) {
            json_t *v = json_object_get(c, "value");
            if (v == NULL || !comparable_value(v))
                return FAIL("A %s condition needs a 'value' that is a string, an integer, a boolean or null", kind);
        } else if (strcmp(kind, "room_member_count") == 0) {
            const char *is = json_string_value(json_object_get(c, "is"));
            int op;
            uint64_t n;
            if (is == NULL || !parse_member_count(is, &op, &n))
                return FAIL("A room_member_count condition needs 'is' like \"2\", \"<10\" or \">=3\"");
        }
        /* contains_display_name has no parameters; other kinds are kept and never match (spec) */
    }
    return 0;
}

static int check_rule_id(ax_push_kind_t kind, const char *rule_id, char *msg, size_t cap)
{
    if (rule_id[0] == '\0' || strlen(rule_id) > MAX_RULE_ID_BYTES)
        return FAIL("Rule IDs are 1 to %d bytes", MAX_RULE_ID_BYTES);
    if (rule_id[0] == '.')
        return FAIL("Rule IDs starting with '.' are reserved for server-default rules");
    if (strchr(rule_id, '/') != NULL || strchr(rule_id, '\\') != NULL)
        return FAIL("Rule IDs cannot contain '/' or '\\'");
    if (kind == AX_PUSH_ROOM && rule_id[0] != '!') /* v12 room IDs have no ':server' */
        return FAIL("The rule ID of a room rule is the room's ID");
    if (kind == AX_PUSH_SENDER && (rule_id[0] != '@' || strchr(rule_id, ':') == NULL))
        return FAIL("The rule ID of a sender rule is the sender's user ID");
    return 0;
}

/* ---- editing ---- */

static size_t user_rule_count(const json_t *stored)
{
    size_t n = 0;
    for (int k = 0; k < AX_PUSH_KINDS; ++k)
        n += json_array_size(user_rules(stored, (ax_push_kind_t)k));
    return n;
}

/* The writable user rules array of 'kind' in 'rec', created when missing (borrowed). */
static json_t *user_rules_mut(json_t *rec, ax_push_kind_t kind)
{
    json_t *rules = json_object_get(rec, "rules");
    if (!json_is_object(rules)) {
        rules = json_object();
        json_object_set_new(rec, "rules", rules);
    }
    json_t *a = json_object_get(rules, kind_names[kind]);
    if (!json_is_array(a)) {
        a = json_array();
        json_object_set_new(rules, kind_names[kind], a);
    }
    return a;
}

/* The writable change record of default rule 'rule_id' in 'rec' (borrowed). */
static json_t *default_change_mut(json_t *rec, ax_push_kind_t kind, const char *rule_id)
{
    json_t *defs = json_object_get(rec, "defaults");
    if (!json_is_object(defs)) {
        defs = json_object();
        json_object_set_new(rec, "defaults", defs);
    }
    json_t *k = json_object_get(defs, kind_names[kind]);
    if (!json_is_object(k)) {
        k = json_object();
        json_object_set_new(defs, kind_names[kind], k);
    }
    json_t *c = json_object_get(k, rule_id);
    if (!json_is_object(c)) {
        c = json_object();
        json_object_set_new(k, rule_id, c);
    }
    return c;
}

/* Starts an edit: a copy of '*stored' (or a new record) to change, installed by commit_edit(). */
static json_t *begin_edit(json_t *const *stored)
{
    return json_is_object(*stored) ? json_deep_copy(*stored) : json_object();
}

static int commit_edit(json_t **stored, json_t *rec)
{
    json_decref(*stored);
    *stored = rec;
    return 0;
}

/* Finds the index of anchor 'id' among the user rules; AX_ECONFLICT with 'msg' when not usable. */
static int anchor_index(const json_t *rules, const char *id, char *msg, size_t cap, size_t *out)
{
    if (id[0] == '.') {
        snprintf(msg, cap, "Rules cannot be placed relative to the server-default rule %.255s", id);
        return AX_ECONFLICT;
    }
    ssize_t i = user_rule_index(rules, id);
    if (i < 0) {
        snprintf(msg, cap, "before/after rule not found: %.255s", id);
        return AX_ECONFLICT;
    }
    *out = (size_t)i;
    return 0;
}

int ax_push_rule_put(json_t **stored, ax_push_kind_t kind, const char *rule_id, const json_t *body, const char *before,
                     const char *after, char *msg, size_t cap)
{
    int rc = check_rule_id(kind, rule_id, msg, cap);
    if (rc != 0)
        return rc;
    const json_t *actions = json_object_get(body, "actions");
    if ((rc = ax_push_actions_check(actions, msg, cap)) != 0)
        return rc;
    json_t *rule = json_pack("{s:s, s:o}", "rule_id", rule_id, "actions", actions_clean(actions));
    if (kind == AX_PUSH_OVERRIDE || kind == AX_PUSH_UNDERRIDE) {
        const json_t *conds = json_object_get(body, "conditions");
        if (conds != NULL && !json_is_null(conds) && (rc = conditions_check(conds, msg, cap)) != 0) {
            json_decref(rule);
            return rc;
        }
        json_object_set_new(rule, "conditions", json_is_array(conds) ? json_deep_copy(conds) : json_array());
    } else if (kind == AX_PUSH_CONTENT) {
        const json_t *pattern = json_object_get(body, "pattern");
        if (!json_is_string(pattern) || json_string_length(pattern) > MAX_PATTERN_BYTES) {
            json_decref(rule);
            return FAIL("A content rule needs a 'pattern' string");
        }
        json_object_set(rule, "pattern", (json_t *)pattern);
    }

    json_t *rec = begin_edit(stored);
    json_t *rules = user_rules_mut(rec, kind);
    ssize_t old = user_rule_index(rules, rule_id);
    size_t at = 0;
    if (old >= 0) {
        json_t *prev_enabled = json_object_get(json_array_get(rules, (size_t)old), "enabled");
        json_object_set_new(rule, "enabled", json_boolean(!json_is_false(prev_enabled)));
        json_array_remove(rules, (size_t)old);
        at = (size_t)old;
    } else {
        if (user_rule_count(rec) >= MAX_USER_RULES) {
            json_decref(rule);
            json_decref(rec);
            return FAIL("A user can have at most %d push rules", MAX_USER_RULES);
        }
        json_object_set_new(rule, "enabled", json_true()); /* spec: new rules are enabled */
    }
    /* spec: with both, 'before' decides */
    const char *anchor = before != NULL ? before : after;
    if (anchor != NULL) {
        size_t ai;
        if ((rc = anchor_index(rules, anchor, msg, cap, &ai)) != 0) {
            json_decref(rule);
            json_decref(rec);
            return rc;
        }
        at = before != NULL ? ai : ai + 1;
    }
    json_array_insert_new(rules, at, rule);
    return commit_edit(stored, rec);
}

int ax_push_rule_delete(json_t **stored, ax_push_kind_t kind, const char *rule_id, char *msg, size_t cap)
{
    if (default_rule(kind, rule_id) != NULL)
        return FAIL("Server-default rules cannot be deleted; disable them instead");
    ssize_t i = user_rule_index(user_rules(*stored, kind), rule_id);
    if (i < 0) {
        snprintf(msg, cap, "The push rule was not found");
        return AX_ENOTFOUND;
    }
    json_t *rec = begin_edit(stored);
    json_array_remove(user_rules_mut(rec, kind), (size_t)i);
    return commit_edit(stored, rec);
}

/* Applies 'field' = 'value' (stolen) to rule 'rule_id' of any origin. */
static int rule_set_field(json_t **stored, ax_push_kind_t kind, const char *rule_id, const char *field, json_t *value,
                          char *msg, size_t cap)
{
    json_t *target = NULL;
    json_t *rec = NULL;
    if (default_rule(kind, rule_id) != NULL) {
        rec = begin_edit(stored);
        target = default_change_mut(rec, kind, rule_id);
    } else {
        ssize_t i = user_rule_index(user_rules(*stored, kind), rule_id);
        if (i >= 0) {
            rec = begin_edit(stored);
            target = json_array_get(user_rules_mut(rec, kind), (size_t)i);
        }
    }
    if (target == NULL) {
        json_decref(value);
        snprintf(msg, cap, "The push rule was not found");
        return AX_ENOTFOUND;
    }
    json_object_set_new(target, field, value);
    return commit_edit(stored, rec);
}

int ax_push_rule_set_enabled(json_t **stored, ax_push_kind_t kind, const char *rule_id, bool enabled, char *msg,
                             size_t cap)
{
    return rule_set_field(stored, kind, rule_id, "enabled", json_boolean(enabled), msg, cap);
}

int ax_push_rule_set_actions(json_t **stored, ax_push_kind_t kind, const char *rule_id, const json_t *actions,
                             char *msg, size_t cap)
{
    int rc = ax_push_actions_check(actions, msg, cap);
    if (rc != 0)
        return rc;
    return rule_set_field(stored, kind, rule_id, "actions", actions_clean(actions), msg, cap);
}

/* ---- case folding and globs ---- */

#define G_STAR 0xFFFFFFFFu
#define G_ANY  0xFFFFFFFEu

/* Decodes one UTF-8 code point at '*p' (advancing it); invalid bytes stand for themselves. */
static uint32_t utf8_next(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c = s[0];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n <= 1) {
        *p = s + 1;
        return c;
    }
    uint32_t cp = c & (0xFF >> (n + 1));
    for (size_t i = 1; i < n; ++i) {
        if ((s[i] & 0xC0) != 0x80) {
            *p = s + 1;
            return c;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *p = s + n;
    return cp;
}

/* Simple case folding: ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals. */
static uint32_t fold(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3AB && c != 0x3A2) || (c >= 0x410 && c <= 0x42F))
        return c + 32;
    if (c >= 0x400 && c <= 0x40F)
        return c + 80;
    if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F) {
        /* pairs: even capital / odd small, except 0x139-0x148 and 0x179-0x17E which are odd/even */
        bool odd_caps = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if (odd_caps ? (c & 1) : !(c & 1))
            return c + 1;
    }
    return c;
}

static bool word_char(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

typedef struct st_glob_t {
    uint32_t *cp;
    size_t n;
    bool wild; /* has '*' or '?' */
} glob_t_;

static void glob_compile(glob_t_ *g, const char *pattern, bool literal)
{
    size_t len = strlen(pattern);
    g->cp = ax_malloc((len + 1) * sizeof(uint32_t));
    g->n = 0;
    g->wild = false;
    const unsigned char *p = (const unsigned char *)pattern;
    while (*p != '\0') {
        uint32_t c = utf8_next(&p);
        if (!literal && c == '*') {
            if (g->n > 0 && g->cp[g->n - 1] == G_STAR)
                continue; /* "**" is "*" */
            c = G_STAR, g->wild = true;
        } else if (!literal && c == '?') {
            c = G_ANY, g->wild = true;
        } else {
            c = fold(c);
        }
        g->cp[g->n++] = c;
    }
}

static void glob_dispose(glob_t_ *g)
{
    free(g->cp);
    g->cp = NULL;
}

/* Adds the states reachable through stars. */
static void closure(const glob_t_ *g, uint8_t *st)
{
    for (size_t k = 0; k < g->n; ++k)
        if (st[k] && g->cp[k] == G_STAR)
            st[k + 1] = 1;
}

/*
 * Runs the pattern as an NFA over 'value' (code points, case-folded):
 * state k = the first k pattern elements matched.  Whole-value mode starts
 * at 0 and accepts at the end; 'words' mode starts a match at every word
 * boundary and accepts wherever a match ends at one.  O(len x pattern).
 */
static bool glob_run(const glob_t_ *g, const char *value, bool words)
{
    if (!g->wild && !words) {
        /* the common case: a literal compared with the whole value */
        const unsigned char *p = (const unsigned char *)value;
        for (size_t k = 0; k < g->n; ++k) {
            if (*p == '\0' || fold(utf8_next(&p)) != g->cp[k])
                return false;
        }
        return *p == '\0';
    }
    uint8_t small[2][64];
    uint8_t *cur = small[0], *nxt = small[1], *heap = NULL;
    if (g->n + 1 > sizeof(small[0])) {
        heap = ax_calloc(2, g->n + 1);
        cur = heap, nxt = heap + g->n + 1;
    } else {
        memset(small, 0, sizeof(small));
    }
    const unsigned char *p = (const unsigned char *)value;
    bool has_next = *p != '\0';
    uint32_t next = has_next ? utf8_next(&p) : 0; /* the character at the current position */
    bool prev_word = false, at_start = true, matched = false;
    if (!words) {
        cur[0] = 1;
        closure(g, cur);
    }
    for (;;) {
        if (words && (at_start || !prev_word)) {
            /* a match may start here: at the start or after a non-word character */
            cur[0] = 1;
            closure(g, cur);
        }
        if (cur[g->n] && (words ? !has_next || !word_char(next) : !has_next)) {
            matched = true;
            break;
        }
        if (!has_next)
            break;
        uint32_t c = fold(next);
        bool any = false;
        memset(nxt, 0, g->n + 1);
        for (size_t k = 0; k < g->n; ++k) {
            if (!cur[k])
                continue;
            uint32_t e = g->cp[k];
            if (e == G_STAR) {
                nxt[k] = 1, any = true;
            } else if (e == G_ANY || e == c) {
                nxt[k + 1] = 1, any = true;
            }
        }
        closure(g, nxt);
        uint8_t *t = cur;
        cur = nxt, nxt = t;
        prev_word = word_char(next);
        at_start = false;
        has_next = *p != '\0';
        next = has_next ? utf8_next(&p) : 0;
        if (!any && !words)
            break;
    }
    free(heap);
    return matched;
}

bool ax_push_glob(const char *pattern, const char *value, bool words, bool literal)
{
    glob_t_ g;
    glob_compile(&g, pattern, literal);
    bool m = glob_run(&g, value, words);
    glob_dispose(&g);
    return m;
}

/* ---- property paths ---- */

/* Splits 'path' into 'parts' (heap strings, *n of them); the caller frees them. */
static char **path_split(const char *path, size_t *n)
{
    size_t cap = 4;
    char **parts = ax_malloc(cap * sizeof(char *));
    *n = 0;
    ax_buf_t cur = AX_BUF_INIT;
    ax_buf_reserve(&cur, 16);
    for (const char *p = path;; ++p) {
        if (*p == '\\' && (p[1] == '.' || p[1] == '\\')) {
            ax_buf_putc(&cur, *++p);
        } else if (*p == '.' || *p == '\0') {
            if (*n == cap)
                parts = ax_realloc(parts, (cap *= 2) * sizeof(char *));
            parts[(*n)++] = ax_strndup(cur.base, cur.len);
            ax_buf_reset(&cur);
            if (*p == '\0')
                break;
        } else {
            ax_buf_putc(&cur, *p);
        }
    }
    ax_buf_dispose(&cur);
    return parts;
}

static const json_t *path_resolve(const json_t *event, char *const *parts, size_t n)
{
    const json_t *v = event;
    for (size_t i = 0; i < n && v != NULL; ++i)
        v = json_is_object(v) ? json_object_get(v, parts[i]) : NULL;
    return v;
}

const json_t *ax_push_path_get(const json_t *event, const char *path)
{
    size_t n;
    char **parts = path_split(path, &n);
    const json_t *v = path_resolve(event, parts, n);
    for (size_t i = 0; i < n; ++i)
        free(parts[i]);
    free(parts);
    return v;
}

/* ---- compiled rules ---- */

typedef enum {
    C_EVENT_MATCH,
    C_PROP_IS,
    C_PROP_CONTAINS,
    C_DISPLAY_NAME,
    C_MEMBER_COUNT,
    C_SENDER_PERM,
    C_ROOM,   /* room rules: room_id is the rule ID */
    C_SENDER, /* sender rules: sender is the rule ID */
    C_NEVER,  /* an unknown condition: the rule never matches (spec) */
} cond_kind_t;

typedef struct st_cond_t {
    cond_kind_t kind;
    char **path;
    size_t npath;
    bool body;      /* event_match on content.body: word-boundary substring match */
    bool user_id;   /* the pattern or value is the evaluating user's ID */
    glob_t_ glob;   /* event_match */
    json_t *value;  /* event_property_is/contains */
    char *text;     /* room/sender rule ID, sender_notification_permission key */
    int op;         /* room_member_count */
    uint64_t count; /* room_member_count */
} cond_t;

typedef struct st_rule_t {
    char *rule_id;
    cond_t *conds;
    size_t nconds;
    bool notify, highlight, sound;
    json_t *tweaks;
    char *actions_json;
} rule_t;

struct st_ax_push_rules_t {
    rule_t *rules;
    size_t n, cap;
    bool display_name;
};

static void cond_compile(cond_t *c, const json_t *j)
{
    memset(c, 0, sizeof(*c));
    const char *kind = json_string_value(json_object_get(j, "kind"));
    const char *key = json_string_value(json_object_get(j, "key"));
    if (kind == NULL) {
        c->kind = C_NEVER;
        return;
    }
    if (key != NULL && (strcmp(kind, "event_match") == 0 || strcmp(kind, "event_property_is") == 0 ||
                        strcmp(kind, "event_property_contains") == 0))
        c->path = path_split(key, &c->npath);
    if (strcmp(kind, "event_match") == 0) {
        const char *pattern = json_string_value(json_object_get(j, "pattern"));
        if (key == NULL || pattern == NULL) {
            c->kind = C_NEVER;
            return;
        }
        c->kind = C_EVENT_MATCH;
        c->body = c->npath == 2 && strcmp(c->path[0], "content") == 0 && strcmp(c->path[1], "body") == 0;
        c->user_id = strcmp(pattern, USER_ID_PLACEHOLDER) == 0;
        glob_compile(&c->glob, pattern, false);
    } else if (strcmp(kind, "event_property_is") == 0 || strcmp(kind, "event_property_contains") == 0) {
        json_t *v = json_object_get(j, "value");
        if (key == NULL || v == NULL || !comparable_value(v)) {
            c->kind = C_NEVER;
            return;
        }
        c->kind = kind[15] == 'i' ? C_PROP_IS : C_PROP_CONTAINS;
        c->user_id = json_is_string(v) && strcmp(json_string_value(v), USER_ID_PLACEHOLDER) == 0;
        c->value = json_incref(v);
    } else if (strcmp(kind, "contains_display_name") == 0) {
        c->kind = C_DISPLAY_NAME;
    } else if (strcmp(kind, "room_member_count") == 0) {
        const char *is = json_string_value(json_object_get(j, "is"));
        c->kind = is != NULL && parse_member_count(is, &c->op, &c->count) ? C_MEMBER_COUNT : C_NEVER;
    } else if (strcmp(kind, "sender_notification_permission") == 0 && key != NULL) {
        c->kind = C_SENDER_PERM;
        c->text = ax_strdup(key);
    } else {
        c->kind = C_NEVER;
    }
}

static void cond_dispose(cond_t *c)
{
    for (size_t i = 0; i < c->npath; ++i)
        free(c->path[i]);
    free(c->path);
    glob_dispose(&c->glob);
    json_decref(c->value);
    free(c->text);
}

static void compile_rule(void *arg, ax_push_kind_t kind, json_t *j, bool is_default)
{
    (void)is_default;
    ax_push_rules_t *rs = arg;
    if (json_is_false(json_object_get(j, "enabled"))) {
        json_decref(j);
        return;
    }
    if (rs->n == rs->cap)
        rs->rules = ax_realloc(rs->rules, (rs->cap = rs->cap ? rs->cap * 2 : 16) * sizeof(rule_t));
    rule_t *r = &rs->rules[rs->n++];
    memset(r, 0, sizeof(*r));
    r->rule_id = ax_strdup(json_string_value(json_object_get(j, "rule_id")));

    /* the actions */
    r->tweaks = json_object();
    json_t *actions = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(j, "actions"), i, a)
    {
        if (json_is_string(a) && strcmp(json_string_value(a), "notify") == 0) {
            r->notify = true;
        } else if (json_is_object(a) && json_is_string(json_object_get(a, "set_tweak"))) {
            const char *tweak = json_string_value(json_object_get(a, "set_tweak"));
            json_t *value = json_object_get(a, "value");
            /* spec: a highlight tweak without a value is true */
            json_object_set_new(r->tweaks, tweak,
                                value != NULL                     ? json_deep_copy(value)
                                : strcmp(tweak, "highlight") == 0 ? json_true()
                                                                  : json_null());
        } else {
            continue; /* historical or unknown actions are ignored */
        }
        json_array_append(actions, a);
    }
    json_t *hl = json_object_get(r->tweaks, "highlight");
    r->highlight = hl != NULL && !json_is_false(hl);
    r->sound = json_is_string(json_object_get(r->tweaks, "sound"));
    r->actions_json = json_dumps(actions, JSON_COMPACT);
    json_decref(actions);

    /* the conditions: room, sender and content rules have theirs implied */
    if (kind == AX_PUSH_ROOM || kind == AX_PUSH_SENDER) {
        r->conds = ax_calloc(1, sizeof(cond_t));
        r->nconds = 1;
        r->conds[0].kind = kind == AX_PUSH_ROOM ? C_ROOM : C_SENDER;
        r->conds[0].text = ax_strdup(r->rule_id);
    } else if (kind == AX_PUSH_CONTENT) {
        const char *pattern = json_string_value(json_object_get(j, "pattern"));
        r->conds = ax_calloc(1, sizeof(cond_t));
        r->nconds = 1;
        json_t *c = json_pack("{s:s, s:s, s:s}", "kind", "event_match", "key", "content.body", "pattern",
                              pattern != NULL ? pattern : "");
        cond_compile(&r->conds[0], c);
        json_decref(c);
        if (pattern == NULL)
            r->conds[0].kind = C_NEVER;
    } else {
        json_t *conds = json_object_get(j, "conditions");
        r->nconds = json_array_size(conds);
        r->conds = ax_calloc(r->nconds ? r->nconds : 1, sizeof(cond_t));
        json_array_foreach(conds, i, a)
        {
            cond_compile(&r->conds[i], a);
            if (r->conds[i].kind == C_DISPLAY_NAME)
                rs->display_name = true;
        }
    }
    json_decref(j);
}

ax_push_rules_t *ax_push_rules_compile(const json_t *stored)
{
    ax_push_rules_t *rs = ax_calloc(1, sizeof(*rs));
    for (int k = 0; k < AX_PUSH_KINDS; ++k)
        foreach_rule(stored, (ax_push_kind_t)k, NULL, compile_rule, rs);
    return rs;
}

void ax_push_rules_free(ax_push_rules_t *rs)
{
    if (rs == NULL)
        return;
    for (size_t i = 0; i < rs->n; ++i) {
        rule_t *r = &rs->rules[i];
        for (size_t k = 0; k < r->nconds; ++k)
            cond_dispose(&r->conds[k]);
        free(r->conds);
        free(r->rule_id);
        json_decref(r->tweaks);
        free(r->actions_json);
    }
    free(rs->rules);
    free(rs);
}

bool ax_push_rules_need_display_name(const ax_push_rules_t *rules)
{
    return rules->display_name;
}

/* ---- evaluation ---- */

/* Case-insensitive equality of two strings (the folding of the globs). */
static bool fold_equal(const char *a, const char *b)
{
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    while (*p != '\0' && *q != '\0')
        if (fold(utf8_next(&p)) != fold(utf8_next(&q)))
            return false;
    return *p == '\0' && *q == '\0';
}

static bool value_equal(const cond_t *c, const json_t *v, const char *user_id)
{
    if (c->user_id)
        return ax_streq(json_string_value(v), user_id);
    return json_equal((json_t *)v, c->value) && comparable_value(v);
}

static bool cond_holds(const cond_t *c, const ax_push_ctx_t *ctx)
{
    switch (c->kind) {
    case C_EVENT_MATCH: {
        const char *s = json_string_value(path_resolve(ctx->event, c->path, c->npath));
        if (s == NULL)
            return false; /* spec: absent or not a string never matches, even '*' */
        if (c->user_id)
            return fold_equal(s, ctx->user_id);
        return glob_run(&c->glob, s, c->body);
    }
    case C_PROP_IS: {
        const json_t *v = path_resolve(ctx->event, c->path, c->npath);
        return v != NULL && value_equal(c, v, ctx->user_id);
    }
    case C_PROP_CONTAINS: {
        const json_t *arr = path_resolve(ctx->event, c->path, c->npath);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v)
        {
            if (value_equal(c, v, ctx->user_id))
                return true;
        }
        return false;
    }
    case C_DISPLAY_NAME: {
        const char *body = json_string_value(ax_push_path_get(ctx->event, "content.body"));
        const char *name = ctx->display_name != NULL ? ctx->display_name(ctx->arg) : NULL;
        return body != NULL && name != NULL && name[0] != '\0' && ax_push_glob(name, body, true, true);
    }
    case C_MEMBER_COUNT: {
        uint64_t n = ctx->member_count;
        switch (c->op) {
        case 1:
            return n < c->count;
        case 2:
            return n > c->count;
        case 3:
            return n <= c->count;
        case 4:
            return n >= c->count;
        default:
            return n == c->count;
        }
    }
    case C_SENDER_PERM:
        return ctx->sender_may != NULL && ctx->sender_may(ctx->arg, c->text);
    case C_ROOM:
        return ax_streq(json_string_value(json_object_get(ctx->event, "room_id")), c->text);
    case C_SENDER:
        return ax_streq(json_string_value(json_object_get(ctx->event, "sender")), c->text);
    case C_NEVER:
    default:
        return false;
    }
}

void ax_push_eval(const ax_push_rules_t *rules, const ax_push_ctx_t *ctx, ax_push_result_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < rules->n; ++i) {
        const rule_t *r = &rules->rules[i];
        bool all = true;
        for (size_t k = 0; k < r->nconds && all; ++k)
            all = cond_holds(&r->conds[k], ctx);
        if (!all)
            continue;
        out->rule_id = r->rule_id;
        out->notify = r->notify;
        out->highlight = r->notify && r->highlight;
        out->sound = r->sound;
        out->tweaks = r->tweaks;
        out->actions_json = r->actions_json;
        return;
    }
}
