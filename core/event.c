/*
 * event.c -- identifier grammar (appendices, "Identifier Grammar"), the PDU
 * format of each room version (server-server API PDU schemas, rooms/v1 ..
 * v12 "Event format"), the size limits of the client-server spec ("Size
 * limits"), and small accessors every later stage needs: event IDs, v12
 * room IDs, references and the servers whose signatures an event needs.
 *
 * Exports the ax_id_* predicates, ax_event_check_format() and the
 * ax_event_* accessors declared in core/events.h.
 */
#include "core/events.h"

#include <string.h>

/* ---- Identifier grammar ------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* port = 1*5DIGIT; 'p' points just past the ':' */
static bool valid_port(const char *p)
{
    size_t n = 0;
    for (; is_digit(*p); ++p)
        ++n;
    return *p == '\0' && n >= 1 && n <= 5;
}

bool ax_id_is_valid_server_name(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    const char *p = s;
    if (*p == '[') {
        /* "[" IPv6address "]" with IPv6address = 2*45(HEXDIG / ":" / ".") */
        size_t n = 0;
        for (++p; is_hex(*p) || *p == ':' || *p == '.'; ++p)
            ++n;
        if (*p != ']' || n < 2 || n > 45)
            return false;
        ++p;
    } else {
        /* dns-name = 1*255(DIGIT / ALPHA / "-" / "."), which also covers IPv4address */
        size_t n = 0;
        for (; is_digit(*p) || is_alpha(*p) || *p == '-' || *p == '.'; ++p)
            ++n;
        if (n < 1 || n > 255)
            return false;
    }
    if (*p == '\0')
        return true;
    return *p == ':' && valid_port(p + 1);
}

/* "<sigil>localpart:server_name" where the localpart has no ':' (so the first
 * ':' ends it), at most AX_ID_MAX_BYTES bytes. */
static bool valid_sigil_id(const char *s, char sigil, bool allow_empty_local)
{
    if (s == NULL || s[0] != sigil || strlen(s) > AX_ID_MAX_BYTES)
        return false;
    const char *colon = strchr(s + 1, ':');
    if (colon == NULL || (!allow_empty_local && colon == s + 1))
        return false;
    return ax_id_is_valid_server_name(colon + 1);
}

bool ax_id_is_valid_user_id(const char *s)
{
    /* appendices, "Historical User IDs": any localpart without ':' or NUL, even empty */
    return valid_sigil_id(s, '@', true);
}

bool ax_id_is_compliant_user_id(const char *s)
{
    if (!valid_sigil_id(s, '@', false))
        return false;
    for (const char *p = s + 1; *p != ':'; ++p) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '.' || c == '_' || c == '=' || c == '-' || c == '/' ||
              c == '+'))
            return false;
    }
    return true;
}

/* sigil + 43 characters of (URL-safe) unpadded base64: a SHA-256 reference hash */
static bool valid_hash_id(const char *s, char sigil, bool urlsafe)
{
    if (s == NULL || s[0] != sigil || strlen(s) != AX_HASH_ID_LEN - 1)
        return false;
    for (const char *p = s + 1; *p; ++p) {
        char c = *p;
        bool ok = is_alpha(c) || is_digit(c) || (urlsafe ? (c == '-' || c == '_') : (c == '+' || c == '/'));
        if (!ok)
            return false;
    }
    return true;
}

bool ax_id_is_valid_room_id(const char *s, const ax_room_version_t *rv)
{
    if (rv == NULL)
        return valid_sigil_id(s, '!', false) || valid_hash_id(s, '!', true);
    if (rv->room_id_from_create)
        return valid_hash_id(s, '!', true);
    return valid_sigil_id(s, '!', false);
}

bool ax_id_is_valid_event_id(const char *s, const ax_room_version_t *rv)
{
    if (rv == NULL)
        return valid_sigil_id(s, '$', false) || valid_hash_id(s, '$', false) || valid_hash_id(s, '$', true);
    switch (rv->event_id_format) {
    case AX_EVENT_ID_V1:
        return valid_sigil_id(s, '$', false);
    case AX_EVENT_ID_V3:
        return valid_hash_id(s, '$', false);
    case AX_EVENT_ID_V4:
        return valid_hash_id(s, '$', true);
    }
    return false;
}

bool ax_id_is_valid_room_alias(const char *s)
{
    return valid_sigil_id(s, '#', false);
}

const char *ax_id_domain(const char *id)
{
    const char *colon = id != NULL ? strchr(id, ':') : NULL;
    return colon != NULL ? colon + 1 : NULL;
}

/* ---- Accessors ------------------------------------------------------------------ */

bool ax_event_is_state(const json_t *event)
{
    return json_is_string(json_object_get(event, "state_key"));
}

const char *ax_event_ref_id(const json_t *ref)
{
    if (json_is_array(ref))
        ref = json_array_get(ref, 0);
    return json_string_value(ref);
}

const char *ax_event_redacts(const ax_room_version_t *rv, const json_t *event)
{
    /* room v11 moved "redacts" into content */
    if (rv->msc2176_redaction_rules)
        return json_string_value(json_object_get(json_object_get(event, "content"), "redacts"));
    return json_string_value(json_object_get(event, "redacts"));
}

int ax_event_get_id(const ax_room_version_t *rv, const json_t *event, char *out, size_t cap)
{
    if (rv->event_id_format == AX_EVENT_ID_V1) {
        const char *id = json_string_value(json_object_get(event, "event_id"));
        if (id == NULL || strlen(id) >= cap)
            return AX_EINVAL;
        memcpy(out, id, strlen(id) + 1);
        return 0;
    }
    return ax_event_compute_id(event, rv, out, cap);
}

int ax_event_room_id_from_create(const ax_room_version_t *rv, const json_t *create, char *out, size_t cap)
{
    if (!rv->room_id_from_create || cap < AX_HASH_ID_LEN ||
        !ax_streq(json_string_value(json_object_get(create, "type")), "m.room.create"))
        return AX_EINVAL;
    int rc = ax_event_compute_id(create, rv, out, cap);
    if (rc == 0)
        out[0] = '!'; /* room v12: the room ID is the create event's ID with the "!" sigil */
    return rc;
}

int ax_event_create_id_from_room_id(const ax_room_version_t *rv, const char *room_id, char *out, size_t cap)
{
    if (!rv->room_id_from_create || cap < AX_HASH_ID_LEN || !ax_id_is_valid_room_id(room_id, rv))
        return AX_EINVAL;
    memcpy(out, room_id, AX_HASH_ID_LEN);
    out[0] = '$';
    return 0;
}

static void add_signer(const char *out[AX_EVENT_SIGNERS_MAX], size_t *n, const char *server)
{
    for (size_t i = 0; i < *n; ++i)
        if (strcmp(out[i], server) == 0)
            return;
    out[(*n)++] = server;
}

int ax_event_required_signers(const ax_room_version_t *rv, const json_t *event, const char *out[AX_EVENT_SIGNERS_MAX],
                              size_t *n)
{
    *n = 0;
    const char *type = json_string_value(json_object_get(event, "type"));
    const json_t *content = json_object_get(event, "content");
    const char *membership = json_string_value(json_object_get(content, "membership"));
    bool is_member = ax_streq(type, "m.room.member");

    /* the sender's server, except for invites made from a third-party invite,
     * which the invited user's server may send on the inviter's behalf */
    const char *sender = ax_id_domain(json_string_value(json_object_get(event, "sender")));
    if (sender == NULL)
        return AX_EINVAL;
    if (!(is_member && ax_streq(membership, "invite") && json_object_get(content, "third_party_invite") != NULL))
        add_signer(out, n, sender);

    /* v1-2: the server that chose the event ID */
    if (rv->event_id_format == AX_EVENT_ID_V1) {
        const char *origin = ax_id_domain(json_string_value(json_object_get(event, "event_id")));
        if (origin == NULL)
            return AX_EINVAL;
        add_signer(out, n, origin);
    }

    /* v8+: the server whose user authorised a restricted join (auth rule
     * "If content has a join_authorised_via_users_server key") */
    json_t *via = json_object_get(content, "join_authorised_via_users_server");
    if (rv->restricted && is_member && via != NULL) {
        const char *server = ax_id_domain(json_string_value(via));
        if (server == NULL)
            return AX_EINVAL;
        add_signer(out, n, server);
    }
    return 0;
}

/* ---- Format ------------------------------------------------------------------------ */

/* A string without embedded NULs, or NULL. */
static const char *plain_string(const json_t *v)
{
    const char *s = json_string_value(v);
    return (s != NULL && strlen(s) == json_string_length(v)) ? s : NULL;
}

typedef struct st_format_ctx_t {
    const ax_room_version_t *rv;
    char *reason;
    size_t reasonlen;
} format_ctx_t;

static int fail(format_ctx_t *ctx, int rc, const char *fmt, const char *key)
{
    if (ctx->reason != NULL && ctx->reasonlen > 0)
        snprintf(ctx->reason, ctx->reasonlen, fmt, key);
    return rc;
}

/* A required or optional string field with the 255-byte limit. */
static int check_string_field(format_ctx_t *ctx, const json_t *event, const char *key, bool required, const char **out)
{
    json_t *v = json_object_get(event, key);
    *out = NULL;
    if (v == NULL)
        return required ? fail(ctx, AX_EINVAL, "missing '%s'", key) : 0;
    const char *s = plain_string(v);
    if (s == NULL)
        return fail(ctx, AX_EINVAL, "'%s' is not a string", key);
    if (strlen(s) > AX_ID_MAX_BYTES)
        return fail(ctx, AX_ETOOBIG, "'%s' is longer than 255 bytes", key);
    *out = s;
    return 0;
}

/* auth_events / prev_events: plain IDs from v3, [id, hashes] pairs in v1-2. */
static int check_refs(format_ctx_t *ctx, const json_t *event, const char *key, size_t max)
{
    json_t *refs = json_object_get(event, key);
    if (!json_is_array(refs))
        return fail(ctx, AX_EINVAL, "'%s' is missing or not an array", key);
    if (json_array_size(refs) > max)
        return fail(ctx, AX_EINVAL, "'%s' lists too many events", key);
    size_t i;
    json_t *ref;
    json_array_foreach(refs, i, ref)
    {
        const char *id;
        if (ctx->rv->event_id_format == AX_EVENT_ID_V1) {
            if (!json_is_array(ref) || json_array_size(ref) != 2 || !json_is_object(json_array_get(ref, 1)))
                return fail(ctx, AX_EINVAL, "'%s' entries must be [event_id, hashes] pairs", key);
            id = plain_string(json_array_get(ref, 0));
        } else {
            id = plain_string(ref);
        }
        if (!ax_id_is_valid_event_id(id, ctx->rv))
            return fail(ctx, AX_EINVAL, "'%s' holds an invalid event ID", key);
    }
    return 0;
}

static int check_signatures(format_ctx_t *ctx, const json_t *event)
{
    json_t *sigs = json_object_get(event, "signatures");
    if (!json_is_object(sigs))
        return fail(ctx, AX_EINVAL, "'%s' is missing or not an object", "signatures");
    const char *server;
    json_t *keys;
    json_object_foreach((json_t *)sigs, server, keys)
    {
        if (!json_is_object(keys))
            return fail(ctx, AX_EINVAL, "'%s' must map servers to objects", "signatures");
        const char *key_id;
        json_t *sig;
        json_object_foreach(keys, key_id, sig)
        {
            if (!json_is_string(sig))
                return fail(ctx, AX_EINVAL, "'%s' must hold strings", "signatures");
        }
    }
    json_t *hashes = json_object_get(event, "hashes");
    if (!json_is_object(hashes) || !json_is_string(json_object_get(hashes, "sha256")))
        return fail(ctx, AX_EINVAL, "'%s' must be an object with a sha256 string", "hashes");
    return 0;
}

/* Length of the canonical JSON of 'event'.  Rooms before v6 do not enforce
 * canonical JSON and may hold floats, which the canonical encoder refuses;
 * their size is then measured on the compact sorted encoding. */
static size_t encoded_size(const json_t *event, bool *ok)
{
    ax_buf_t buf = AX_BUF_INIT;
    size_t n = 0;
    *ok = true;
    if (ax_cjson_encode(event, &buf) == 0) {
        n = buf.len;
    } else {
        n = json_dumpb(event, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
        *ok = n != 0;
    }
    ax_buf_dispose(&buf);
    return n;
}

int ax_event_check_format(const ax_room_version_t *rv, const json_t *event, char *reason, size_t reasonlen)
{
    format_ctx_t ctx = {rv, reason, reasonlen};
    const char *type, *sender, *room_id, *state_key, *event_id;
    int rc;

    if (!json_is_object(event))
        return fail(&ctx, AX_EINVAL, "%s", "event is not a JSON object");

    /* rooms v6+: "Servers MUST strictly enforce the JSON format" -- integers only, in range */
    if (rv->strict_canonical_json && ax_cjson_check_strict(event) != 0)
        return fail(&ctx, AX_EINVAL, "%s", "event is not canonical JSON (floats or integers out of range)");

    /* "The complete event MUST NOT be larger than 65536 bytes" as canonical JSON */
    bool ok;
    size_t size = encoded_size(event, &ok);
    if (!ok)
        return fail(&ctx, AX_EINVAL, "%s", "event cannot be encoded");
    if (size > AX_PDU_MAX_BYTES)
        return fail(&ctx, AX_ETOOBIG, "%s", "event is larger than 65536 bytes");

    /* pdu_base: sender, origin_server_ts, type, content, depth, hashes, signatures */
    if ((rc = check_string_field(&ctx, event, "type", true, &type)) != 0 ||
        (rc = check_string_field(&ctx, event, "sender", true, &sender)) != 0 ||
        (rc = check_string_field(&ctx, event, "state_key", false, &state_key)) != 0)
        return rc;
    if (!ax_id_is_valid_user_id(sender))
        return fail(&ctx, AX_EINVAL, "%s", "'sender' is not a valid user ID");
    if (!json_is_integer(json_object_get(event, "origin_server_ts")))
        return fail(&ctx, AX_EINVAL, "'%s' is missing or not an integer", "origin_server_ts");
    if (!json_is_object(json_object_get(event, "content")))
        return fail(&ctx, AX_EINVAL, "'%s' is missing or not an object", "content");
    json_t *depth = json_object_get(event, "depth");
    if (!json_is_integer(depth))
        return fail(&ctx, AX_EINVAL, "'%s' is missing or not an integer", "depth");
    if (json_integer_value(depth) < 0)
        return fail(&ctx, AX_EINVAL, "%s", "'depth' is negative");
    json_t *unsigned_ = json_object_get(event, "unsigned");
    if (unsigned_ != NULL && !json_is_object(unsigned_))
        return fail(&ctx, AX_EINVAL, "'%s' is not an object", "unsigned");
    if ((rc = check_signatures(&ctx, event)) != 0)
        return rc;

    /* room_id: required, except that a v12 m.room.create has none (rule 1.2
     * rejects one that does, so its presence is left to the auth rules) */
    if (!(rv->room_id_from_create && strcmp(type, "m.room.create") == 0)) {
        if ((rc = check_string_field(&ctx, event, "room_id", true, &room_id)) != 0)
            return rc;
        if (!ax_id_is_valid_room_id(room_id, rv))
            return fail(&ctx, AX_EINVAL, "%s", "'room_id' is not a valid room ID for this room version");
    }

    /* v1-2 carry the origin's event ID; later versions derive it */
    if (rv->event_id_format == AX_EVENT_ID_V1) {
        if ((rc = check_string_field(&ctx, event, "event_id", true, &event_id)) != 0)
            return rc;
        if (!ax_id_is_valid_event_id(event_id, rv))
            return fail(&ctx, AX_EINVAL, "%s", "'event_id' is not a valid event ID");
    }

    if ((rc = check_refs(&ctx, event, "auth_events", AX_PDU_MAX_AUTH_EVENTS)) != 0 ||
        (rc = check_refs(&ctx, event, "prev_events", AX_PDU_MAX_PREV_EVENTS)) != 0)
        return rc;

    /* v1-10: a top-level "redacts" string on redactions (v11 moved it into content) */
    json_t *redacts = json_object_get(event, "redacts");
    if (!rv->msc2176_redaction_rules && redacts != NULL && !json_is_string(redacts))
        return fail(&ctx, AX_EINVAL, "'%s' is not a string", "redacts");
    return 0;
}
