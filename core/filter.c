/*
 * filter.c -- validation and matching of filters (spec: filter.yaml,
 * "Filtering").  Unknown keys are allowed, as the spec's schema does.
 */
#include "core/filter.h"

#include <string.h>

bool ax_glob_match(const char *p, const char *s)
{
    const char *star = NULL, *retry = NULL;
    while (*s != '\0') {
        if (*p == '*') {
            star = ++p;
            retry = s;
        } else if (*p == '?' || *p == *s) {
            ++p;
            ++s;
        } else if (star != NULL) {
            p = star;
            s = ++retry;
        } else {
            return false;
        }
    }
    while (*p == '*')
        ++p;
    return *p == '\0';
}

static int fail(char *err, size_t errlen, const char *path, const char *what)
{
    snprintf(err, errlen, "filter: %s must be %s", path, what);
    return AX_EINVAL;
}

static int check_strings(const json_t *obj, const char *key, const char *path, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    char p[128];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    if (!json_is_array(v))
        return fail(err, errlen, p, "an array of strings");
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        if (!json_is_string(x))
            return fail(err, errlen, p, "an array of strings");
    }
    return 0;
}

static int check_bool(const json_t *obj, const char *key, const char *path, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_boolean(v))
        return 0;
    char p[128];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    return fail(err, errlen, p, "a boolean");
}

/* EventFilter: limit, types, not_types, senders, not_senders */
static int check_event_filter(const json_t *f, const char *path, char *err, size_t errlen)
{
    if (f == NULL)
        return 0;
    if (!json_is_object(f))
        return fail(err, errlen, path, "an object");
    json_t *limit = json_object_get(f, "limit");
    if (limit != NULL && (!json_is_integer(limit) || json_integer_value(limit) < 0)) {
        char p[128];
        snprintf(p, sizeof(p), "%s.limit", path);
        return fail(err, errlen, p, "a non-negative integer");
    }
    static const char *const lists[] = {"types", "not_types", "senders", "not_senders"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(lists); ++i)
        if (check_strings(f, lists[i], path, err, errlen) != 0)
            return AX_EINVAL;
    return 0;
}

/* RoomEventFilter = EventFilter + rooms, not_rooms, contains_url, lazy_load_members, ... */
static int check_room_event_filter(const json_t *f, const char *path, char *err, size_t errlen)
{
    if (check_event_filter(f, path, err, errlen) != 0)
        return AX_EINVAL;
    if (f == NULL)
        return 0;
    static const char *const bools[] = {"contains_url", "lazy_load_members", "include_redundant_members",
                                        "unread_thread_notifications"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(bools); ++i)
        if (check_bool(f, bools[i], path, err, errlen) != 0)
            return AX_EINVAL;
    if (check_strings(f, "rooms", path, err, errlen) != 0 || check_strings(f, "not_rooms", path, err, errlen) != 0)
        return AX_EINVAL;
    return 0;
}

int ax_filter_validate_room_event(const json_t *filter, char *err, size_t errlen)
{
    return check_room_event_filter(filter, "filter", err, errlen);
}

int ax_filter_validate(const json_t *filter, char *err, size_t errlen)
{
    if (!json_is_object(filter))
        return fail(err, errlen, "filter", "an object");
    if (check_strings(filter, "event_fields", "filter", err, errlen) != 0)
        return AX_EINVAL;
    json_t *fmt = json_object_get(filter, "event_format");
    if (fmt != NULL && !(json_is_string(fmt) && (strcmp(json_string_value(fmt), "client") == 0 ||
                                                 strcmp(json_string_value(fmt), "federation") == 0)))
        return fail(err, errlen, "filter.event_format", "\"client\" or \"federation\"");
    if (check_event_filter(json_object_get(filter, "presence"), "filter.presence", err, errlen) != 0 ||
        check_event_filter(json_object_get(filter, "account_data"), "filter.account_data", err, errlen) != 0)
        return AX_EINVAL;
    json_t *room = json_object_get(filter, "room");
    if (room == NULL)
        return 0;
    if (!json_is_object(room))
        return fail(err, errlen, "filter.room", "an object");
    if (check_strings(room, "rooms", "filter.room", err, errlen) != 0 ||
        check_strings(room, "not_rooms", "filter.room", err, errlen) != 0 ||
        check_bool(room, "include_leave", "filter.room", err, errlen) != 0)
        return AX_EINVAL;
    static const char *const subs[] = {"ephemeral", "state", "timeline", "account_data"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(subs); ++i) {
        char path[64];
        snprintf(path, sizeof(path), "filter.room.%s", subs[i]);
        if (check_room_event_filter(json_object_get(room, subs[i]), path, err, errlen) != 0)
            return AX_EINVAL;
    }
    return 0;
}

static bool list_matches(const json_t *list, const char *value)
{
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        if (ax_glob_match(json_string_value(x), value))
            return true;
    }
    return false;
}

static bool list_has(const json_t *list, const char *value)
{
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        if (ax_streq(json_string_value(x), value))
            return true;
    }
    return false;
}

bool ax_filter_event_matches(const json_t *f, const json_t *event)
{
    if (f == NULL)
        return true;
    const char *type = json_string_value(json_object_get(event, "type"));
    const char *sender = json_string_value(json_object_get(event, "sender"));
    const char *room = json_string_value(json_object_get(event, "room_id"));
    json_t *l;
    if (type != NULL) {
        if ((l = json_object_get(f, "not_types")) != NULL && list_matches(l, type))
            return false;
        if ((l = json_object_get(f, "types")) != NULL && !list_matches(l, type))
            return false;
    }
    if (sender != NULL) {
        if ((l = json_object_get(f, "not_senders")) != NULL && list_has(l, sender))
            return false;
        if ((l = json_object_get(f, "senders")) != NULL && !list_has(l, sender))
            return false;
    }
    if (room != NULL) {
        if ((l = json_object_get(f, "not_rooms")) != NULL && list_has(l, room))
            return false;
        if ((l = json_object_get(f, "rooms")) != NULL && !list_has(l, room))
            return false;
    }
    json_t *cu = json_object_get(f, "contains_url");
    if (json_is_boolean(cu)) {
        json_t *url = json_object_get(json_object_get(event, "content"), "url");
        if (json_is_true(cu) != (url != NULL))
            return false;
    }
    return true;
}

bool ax_filter_type_allowed(const json_t *f, const char *type)
{
    json_t *l;
    if (f == NULL || type == NULL)
        return true;
    if ((l = json_object_get(f, "not_types")) != NULL && list_matches(l, type))
        return false;
    return (l = json_object_get(f, "types")) == NULL || list_matches(l, type);
}

bool ax_filter_room_allowed(const json_t *room_filter, const char *room_id)
{
    if (room_filter == NULL)
        return true;
    json_t *l;
    if ((l = json_object_get(room_filter, "not_rooms")) != NULL && list_has(l, room_id))
        return false;
    if ((l = json_object_get(room_filter, "rooms")) != NULL && !list_has(l, room_id))
        return false;
    return true;
}

int ax_filter_limit(const json_t *f, int dflt)
{
    json_t *l = json_object_get(f, "limit");
    if (!json_is_integer(l))
        return dflt;
    json_int_t v = json_integer_value(l);
    return v > 1000 ? 1000 : (int)v;
}
