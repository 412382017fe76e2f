/*
 * redaction.c -- the redaction algorithm (spec: room versions, "Redactions"),
 * used both to serve redacted events and to compute reference hashes and
 * signatures.  Exports ax_event_redact().
 *
 * v1-v10: top-level origin, membership and prev_state are kept; content keys
 * per type as listed below.  v11 (MSC2176, MSC3821, MSC3989) drops those
 * top-level keys, keeps all of m.room.create's content, power_levels'
 * invite, m.room.redaction's redacts and third_party_invite.signed.  v12
 * redacts as v11.
 */
#include "core/core.h"

#include <string.h>

static bool in_list(const char *key, const char *const *list)
{
    for (; *list != NULL; ++list)
        if (strcmp(key, *list) == 0)
            return true;
    return false;
}

static void copy_keys(json_t *dst, const json_t *src, const char *const *keep)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)src, k, v)
    {
        if (in_list(k, keep))
            json_object_set(dst, k, v);
    }
}

static json_t *redact_content(const char *type, const json_t *content, const ax_room_version_t *rv)
{
    json_t *out = json_object();
    if (!json_is_object(content) || type == NULL)
        return out;

    if (strcmp(type, "m.room.member") == 0) {
        static const char *const v1[] = {"membership", NULL};
        static const char *const v9[] = {"membership", "join_authorised_via_users_server", NULL};
        copy_keys(out, content, rv->restricted_redacts_authorised_via ? v9 : v1);
        if (rv->msc3821_redact_3pid_signed) {
            /* keep only third_party_invite.signed (room v11, MSC3821) */
            json_t *tpi = json_object_get(content, "third_party_invite");
            json_t *signed_ = json_is_object(tpi) ? json_object_get(tpi, "signed") : NULL;
            if (signed_ != NULL)
                json_object_set_new(out, "third_party_invite", json_pack("{s:O}", "signed", signed_));
        }
    } else if (strcmp(type, "m.room.create") == 0) {
        if (rv->msc2176_redaction_rules) {
            json_object_update(out, (json_t *)content);
        } else {
            static const char *const keep[] = {"creator", NULL};
            copy_keys(out, content, keep);
        }
    } else if (strcmp(type, "m.room.join_rules") == 0) {
        static const char *const v1[] = {"join_rule", NULL};
        static const char *const v8[] = {"join_rule", "allow", NULL};
        copy_keys(out, content, rv->restricted ? v8 : v1);
    } else if (strcmp(type, "m.room.power_levels") == 0) {
        static const char *const v1[] = {"ban",           "events", "events_default", "kick", "redact",
                                         "state_default", "users",  "users_default",  NULL};
        static const char *const v11[] = {"ban",    "events",        "events_default", "invite",        "kick",
                                          "redact", "state_default", "users",          "users_default", NULL};
        copy_keys(out, content, rv->msc2176_redaction_rules ? v11 : v1);
    } else if (strcmp(type, "m.room.aliases") == 0 && rv->special_case_aliases) {
        static const char *const keep[] = {"aliases", NULL};
        copy_keys(out, content, keep);
    } else if (strcmp(type, "m.room.history_visibility") == 0) {
        static const char *const keep[] = {"history_visibility", NULL};
        copy_keys(out, content, keep);
    } else if (strcmp(type, "m.room.redaction") == 0 && rv->msc2176_redaction_rules) {
        static const char *const keep[] = {"redacts", NULL};
        copy_keys(out, content, keep);
    }
    return out;
}

json_t *ax_event_redact(const json_t *event, const ax_room_version_t *rv)
{
    static const char *const top_v1[] = {
        "event_id",   "type",  "room_id",     "sender",     "state_key",   "content", "hashes",
        "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",  "origin_server_ts",
        "membership", NULL};
    static const char *const top_v11[] = {
        "event_id",   "type",  "room_id",     "sender",      "state_key",        "content", "hashes",
        "signatures", "depth", "prev_events", "auth_events", "origin_server_ts", NULL};
    json_t *out = json_object();
    if (!json_is_object(event))
        return out;
    copy_keys(out, event, rv->msc3989_redact_origin ? top_v11 : top_v1);
    json_t *type = json_object_get(event, "type");
    json_object_set_new(out, "content", redact_content(json_string_value(type), json_object_get(event, "content"), rv));
    return out;
}
