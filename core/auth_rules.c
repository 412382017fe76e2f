/*
 * auth_rules.c -- the authorization rules of room versions 1-12 (rooms/v1 ..
 * v12 "Authorization rules"; server-server API "Checks performed on receipt
 * of a PDU", "Auth events selection"), power levels as the rules read them,
 * and the redaction rules of "Handling redactions".
 *
 * One implementation for local and federated events: the caller chooses the
 * state (auth events, state before the event, current state) through an
 * ax_auth_lookup_fn.  Comments cite the rule numbers of room v11 ("v11
 * 4.3.2"); v1-5 number them one higher from the aliases rule on, v12 one
 * higher from its new rule 2.  Where the spec is silent or Synapse reads it
 * in a particular way, the comment says so.
 */
#include "core/events.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

typedef struct st_auth_ctx_t {
    const ax_room_version_t *rv;
    ax_auth_lookup_fn lookup;
    void *arg;
    char *reason;
    size_t reasonlen;
} auth_ctx_t;

static int deny(auth_ctx_t *ctx, const char *fmt, ...) AX_PRINTF(2, 3);

static int deny(auth_ctx_t *ctx, const char *fmt, ...)
{
    if (ctx->reason != NULL && ctx->reasonlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->reason, ctx->reasonlen, fmt, ap);
        va_end(ap);
    }
    return AX_EFORBIDDEN;
}

static const char *str_of(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static const json_t *state(auth_ctx_t *ctx, const char *type, const char *state_key)
{
    return ctx->lookup(ctx->arg, type, state_key);
}

/* The membership of 'user' in the state, or NULL when it has none. */
static const char *membership_of(auth_ctx_t *ctx, const char *user)
{
    const json_t *ev = state(ctx, "m.room.member", user);
    return ev != NULL ? str_of(json_object_get(ev, "content"), "membership") : NULL;
}

/* ---- Power levels ------------------------------------------------------------------ */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* rooms v1-9, "m.room.power_levels events accept values as strings": base 10,
 * optional single sign, any leading zeroes, surrounding whitespace. */
static int parse_stringy(const char *s, int64_t *out)
{
    while (is_space(*s))
        ++s;
    bool neg = false;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    if (!(*s >= '0' && *s <= '9'))
        return AX_EINVAL;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; ++s) {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > (uint64_t)INT64_MAX)
            return AX_EINVAL;
    }
    while (is_space(*s))
        ++s;
    if (*s != '\0')
        return AX_EINVAL;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* One power level value: an integer; before v10 also an integer string; before
 * v6 also a float, truncated ("m.room.power_levels events accept values as
 * floats").  Anything else cannot be a power level. */
static int pl_parse(const ax_room_version_t *rv, const json_t *v, int64_t *out)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        *out = json_integer_value(v);
        return 0;
    case JSON_STRING:
        if (rv->integer_power_levels || strlen(json_string_value(v)) != json_string_length(v))
            return AX_EINVAL;
        return parse_stringy(json_string_value(v), out);
    case JSON_REAL: {
        double d = json_real_value(v);
        if (rv->strict_canonical_json || !isfinite(d) || d >= 9223372036854775807.0 || d <= -9223372036854775807.0)
            return AX_EINVAL;
        *out = (int64_t)d; /* truncates toward zero */
        return 0;
    }
    default:
        return AX_EINVAL;
    }
}

/* content[key] read as a level: absent or null gives 'def' (Synapse reads null as absent). */
static int pl_read(const ax_room_version_t *rv, const json_t *obj, const char *key, int64_t def, int64_t *out)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return 0;
    }
    return pl_parse(rv, v, out);
}

static const json_t *pl_content(auth_ctx_t *ctx)
{
    const json_t *pl = state(ctx, "m.room.power_levels", "");
    return pl != NULL ? json_object_get(pl, "content") : NULL;
}

/* The creator that gets 100 without power levels and the join right after the
 * create event: content.creator up to v10, the sender from v11 (MSC2175). */
static const char *original_creator(const ax_room_version_t *rv, const json_t *create)
{
    if (rv->msc2175_implicit_creator)
        return str_of(create, "sender");
    return str_of(json_object_get(create, "content"), "creator");
}

static bool is_creator(const ax_room_version_t *rv, const json_t *create, const char *user)
{
    if (create == NULL || user == NULL)
        return false;
    if (ax_streq(original_creator(rv, create), user))
        return true;
    if (rv->privileged_creators) {
        /* v12: "Room creators include ... any user IDs contained in additional_creators" */
        json_t *extra = json_object_get(json_object_get(create, "content"), "additional_creators");
        size_t i;
        json_t *v;
        json_array_foreach(extra, i, v)
        {
            if (ax_streq(json_string_value(v), user))
                return true;
        }
    }
    return false;
}

static int user_level(auth_ctx_t *ctx, const char *user, int64_t *out)
{
    const json_t *create = state(ctx, "m.room.create", "");
    /* v12: "The power level of room creators is infinitely high" */
    if (ctx->rv->privileged_creators && is_creator(ctx->rv, create, user)) {
        *out = AX_PL_INFINITE;
        return 0;
    }
    const json_t *content = pl_content(ctx);
    if (content != NULL) {
        int64_t def;
        json_t *users = json_object_get(content, "users");
        if (users != NULL && !json_is_object(users))
            return AX_EINVAL;
        if (pl_read(ctx->rv, content, "users_default", 0, &def) != 0)
            return AX_EINVAL;
        return pl_read(ctx->rv, users, user, def, out);
    }
    /* no m.room.power_levels: the creator has 100, everyone else 0 */
    *out = ax_streq(original_creator(ctx->rv, create), user) ? 100 : 0;
    return 0;
}

static int required_level(auth_ctx_t *ctx, const char *type, bool is_state, int64_t *out)
{
    const json_t *content = pl_content(ctx);
    json_t *events = json_object_get(content, "events");
    if (events != NULL && !json_is_object(events))
        return AX_EINVAL;
    json_t *v = json_object_get(events, type);
    if (v != NULL && !json_is_null(v))
        return pl_parse(ctx->rv, v, out);
    /* state_default is 50 and events_default 0, with or without a power levels event */
    return is_state ? pl_read(ctx->rv, content, "state_default", 50, out)
                    : pl_read(ctx->rv, content, "events_default", 0, out);
}

static int named_level(auth_ctx_t *ctx, const char *name, int64_t *out)
{
    /* "The invite level defaults to 0 if unspecified. The kick level, ban level
     * and redact level each default to 50 if unspecified." */
    int64_t def;
    if (strcmp(name, "invite") == 0)
        def = 0;
    else if (strcmp(name, "kick") == 0 || strcmp(name, "ban") == 0 || strcmp(name, "redact") == 0)
        def = 50;
    else
        return AX_EINVAL;
    return pl_read(ctx->rv, pl_content(ctx), name, def, out);
}

/* Level lookups inside the rules: a malformed power levels event in state
 * denies the event rather than guessing (Synapse fails the same way). */
#define LEVEL_OR_DENY(ctx, expr)                                                                                       \
    do {                                                                                                               \
        if ((expr) != 0)                                                                                               \
            return deny((ctx), "the power levels in the room state are malformed");                                    \
    } while (0)

/* ---- m.room.create (v11 rule 1, v12 rules 1 and 2) -------------------------------- */

static int check_create(auth_ctx_t *ctx, const json_t *event, const char *sender)
{
    const ax_room_version_t *rv = ctx->rv;
    json_t *content = json_object_get(event, "content");

    /* 1.1: if it has any prev_events, reject */
    if (json_array_size(json_object_get(event, "prev_events")) > 0)
        return deny(ctx, "m.room.create must not have prev_events");

    if (rv->room_id_from_create) {
        /* v12 1.2: if the event has a room_id, reject */
        if (json_object_get(event, "room_id") != NULL)
            return deny(ctx, "m.room.create must not have a room_id in this room version");
    } else {
        /* 1.2: if the domain of the room_id does not match the domain of the sender, reject */
        const char *room_domain = ax_id_domain(str_of(event, "room_id"));
        if (room_domain == NULL || !ax_streq(room_domain, ax_id_domain(sender)))
            return deny(ctx, "m.room.create room_id domain does not match the sender's");
    }

    /* 1.3: if content.room_version is present and is not a recognised version, reject */
    json_t *version = json_object_get(content, "room_version");
    if (version != NULL && ax_room_version_get(json_string_value(version)) == NULL)
        return deny(ctx, "m.room.create names an unknown room_version");

    /* v1-10 1.4: if content has no creator property, reject */
    if (!rv->msc2175_implicit_creator && json_object_get(content, "creator") == NULL)
        return deny(ctx, "m.room.create has no creator");

    /* v12 1.4: additional_creators must be an array of valid user IDs */
    json_t *extra = json_object_get(content, "additional_creators");
    if (rv->privileged_creators && extra != NULL) {
        if (!json_is_array(extra))
            return deny(ctx, "additional_creators is not an array");
        size_t i;
        json_t *v;
        json_array_foreach(extra, i, v)
        {
            const char *s = json_string_value(v);
            if (s == NULL || strlen(s) != json_string_length(v) || !ax_id_is_valid_user_id(s))
                return deny(ctx, "additional_creators holds an invalid user ID");
        }
    }
    /* 1.5: otherwise, allow */
    return 0;
}

/* ---- m.room.member (v11 rule 4) ------------------------------------------------------ */

/* Decodes a third-party invite public key: unpadded base64, standard or URL-safe. */
static bool decode_public_key(const char *b64, uint8_t pk[crypto_sign_PUBLICKEYBYTES])
{
    uint8_t buf[crypto_sign_PUBLICKEYBYTES + 4];
    size_t n;
    if (b64 == NULL)
        return false;
    if (ax_b64_decode(buf, sizeof(buf), &n, b64, strlen(b64), false) != 0 &&
        ax_b64_decode(buf, sizeof(buf), &n, b64, strlen(b64), true) != 0)
        return false;
    if (n != crypto_sign_PUBLICKEYBYTES)
        return false;
    memcpy(pk, buf, n);
    return true;
}

/* Rule 4.4.1.7: does any signature in 'signed' verify with public key 'b64'? */
static bool signed_by_key(const json_t *signed_, const char *b64)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    if (!decode_public_key(b64, pk))
        return false;
    const char *server;
    json_t *keys;
    json_object_foreach(json_object_get(signed_, "signatures"), server, keys)
    {
        const char *key_id;
        json_t *sig;
        json_object_foreach(keys, key_id, sig)
        {
            /* identity servers sign with ed25519 keys; other algorithms are skipped (as Synapse does) */
            if (strncmp(key_id, "ed25519:", 8) == 0 && ax_verify_json(signed_, server, key_id, pk) == 0)
                return true;
        }
    }
    return false;
}

/* v11 4.4.1: an invite made from a third-party invite. */
static int check_third_party_invite(auth_ctx_t *ctx, const json_t *event, const char *sender, const char *target)
{
    json_t *tpi = json_object_get(json_object_get(event, "content"), "third_party_invite");

    /* 4.4.1.1: if target user is banned, reject */
    if (ax_streq(membership_of(ctx, target), "ban"))
        return deny(ctx, "%s is banned from the room", target);
    /* 4.4.1.2: if content.third_party_invite does not have a signed property, reject */
    json_t *signed_ = json_object_get(tpi, "signed");
    if (!json_is_object(signed_))
        return deny(ctx, "third_party_invite has no signed object");
    /* 4.4.1.3: if signed does not have mxid and token properties, reject */
    const char *mxid = str_of(signed_, "mxid");
    const char *token = str_of(signed_, "token");
    if (mxid == NULL || token == NULL)
        return deny(ctx, "third_party_invite.signed lacks mxid or token");
    /* 4.4.1.4: if mxid does not match state_key, reject */
    if (strcmp(mxid, target) != 0)
        return deny(ctx, "third_party_invite.signed.mxid does not match the state_key");
    /* 4.4.1.5: no m.room.third_party_invite with state_key matching token: reject */
    const json_t *invite = state(ctx, "m.room.third_party_invite", token);
    if (invite == NULL)
        return deny(ctx, "no m.room.third_party_invite matches the token");
    /* 4.4.1.6: if sender does not match sender of the m.room.third_party_invite, reject */
    if (!ax_streq(str_of(invite, "sender"), sender))
        return deny(ctx, "the sender did not send the m.room.third_party_invite");
    /* 4.4.1.7: allow if any signature in signed matches public_key or any of public_keys */
    json_t *content = json_object_get(invite, "content");
    if (signed_by_key(signed_, str_of(content, "public_key")))
        return 0;
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(content, "public_keys"), i, k)
    {
        if (signed_by_key(signed_, str_of(k, "public_key")))
            return 0;
    }
    /* 4.4.1.8: otherwise, reject */
    return deny(ctx, "third_party_invite.signed is not signed by a key of the invite");
}

/* Is the join rule one this room version knows and treats like "invite"? */
static bool is_invite_like_rule(const ax_room_version_t *rv, const char *rule)
{
    return ax_streq(rule, "invite") || (rv->knock && ax_streq(rule, "knock"));
}

static bool is_restricted_rule(const ax_room_version_t *rv, const char *rule)
{
    return (rv->restricted && ax_streq(rule, "restricted")) ||
           (rv->knock_restricted && ax_streq(rule, "knock_restricted"));
}

static int check_join(auth_ctx_t *ctx, const json_t *event, const char *sender, const char *target)
{
    const ax_room_version_t *rv = ctx->rv;
    const json_t *create = state(ctx, "m.room.create", "");

    /* 4.3.1: if the only previous event is an m.room.create and the state_key is
     * the creator, allow (v11+: the sender of the m.room.create) */
    json_t *prev = json_object_get(event, "prev_events");
    if (json_array_size(prev) == 1 && ax_streq(original_creator(rv, create), target)) {
        char create_id[256];
        int rc = rv->room_id_from_create
                     ? ax_event_create_id_from_room_id(rv, str_of(event, "room_id"), create_id, sizeof(create_id))
                     : ax_event_get_id(rv, create, create_id, sizeof(create_id));
        if (rc == 0 && ax_streq(ax_event_ref_id(json_array_get(prev, 0)), create_id))
            return 0;
    }
    /* 4.3.2: if the sender does not match state_key, reject */
    if (strcmp(sender, target) != 0)
        return deny(ctx, "cannot join on behalf of another user");
    /* 4.3.3: if the sender is banned, reject */
    const char *current = membership_of(ctx, target);
    if (ax_streq(current, "ban"))
        return deny(ctx, "%s is banned from the room", sender);

    /* A room without m.room.join_rules, or one whose event has no join_rule,
     * is invite-only: the spec is silent, Synapse reads it this way. */
    const json_t *jr = state(ctx, "m.room.join_rules", "");
    json_t *rule_v = jr != NULL ? json_object_get(json_object_get(jr, "content"), "join_rule") : NULL;
    const char *rule = rule_v == NULL ? "invite" : json_string_value(rule_v);
    bool in_or_invited = ax_streq(current, "join") || ax_streq(current, "invite");

    /* 4.3.4: join_rule invite (v7+: or knock): allow if membership is invite or join */
    if (is_invite_like_rule(rv, rule)) {
        if (in_or_invited)
            return 0;
        return deny(ctx, "%s is not invited to this room", sender);
    }
    /* 4.3.5 (v8+ restricted, v10+ knock_restricted) */
    if (is_restricted_rule(rv, rule)) {
        /* 4.3.5.1: if membership state is join or invite, allow */
        if (in_or_invited)
            return 0;
        /* 4.3.5.2: the authorising user must be joined and able to invite */
        const char *via = str_of(json_object_get(event, "content"), "join_authorised_via_users_server");
        if (via == NULL)
            return deny(ctx, "restricted join without join_authorised_via_users_server");
        if (!ax_streq(membership_of(ctx, via), "join"))
            return deny(ctx, "the authorising user %s is not joined to the room", via);
        int64_t via_level, invite_level;
        LEVEL_OR_DENY(ctx, user_level(ctx, via, &via_level));
        LEVEL_OR_DENY(ctx, named_level(ctx, "invite", &invite_level));
        if (via_level < invite_level)
            return deny(ctx, "the authorising user %s may not invite users", via);
        /* 4.3.5.3: otherwise, allow */
        return 0;
    }
    /* 4.3.6: if the join_rule is public, allow */
    if (ax_streq(rule, "public"))
        return 0;
    /* 4.3.7: otherwise, reject */
    return deny(ctx, "the join rule does not allow %s to join", sender);
}

static int check_member(auth_ctx_t *ctx, const json_t *event, const char *sender)
{
    const ax_room_version_t *rv = ctx->rv;
    json_t *content = json_object_get(event, "content");
    const char *target = str_of(event, "state_key");
    const char *membership = str_of(content, "membership");
    int64_t sender_level, target_level, level;

    /* 4.1: if there is no state_key property, or no membership property in content, reject */
    if (target == NULL || json_object_get(content, "membership") == NULL)
        return deny(ctx, "m.room.member needs a state_key and content.membership");

    /* 4.2 (v8+): if content has join_authorised_via_users_server, the event must be
     * signed by that user's server.  Here: the signature must be present;
     * ax_event_required_signers() makes the signature check verify it. */
    json_t *via = json_object_get(content, "join_authorised_via_users_server");
    if (rv->restricted && via != NULL) {
        const char *server = ax_id_domain(json_string_value(via));
        json_t *sigs = server != NULL ? json_object_get(json_object_get(event, "signatures"), server) : NULL;
        if (json_object_size(sigs) == 0)
            return deny(ctx, "not signed by the server of join_authorised_via_users_server");
    }

    const char *sender_membership = membership_of(ctx, sender);
    const char *target_membership = membership_of(ctx, target);

    if (ax_streq(membership, "join"))
        return check_join(ctx, event, sender, target);

    if (ax_streq(membership, "invite")) {
        /* 4.4.1: third-party invites */
        if (json_object_get(content, "third_party_invite") != NULL)
            return check_third_party_invite(ctx, event, sender, target);
        /* 4.4.2: if the sender's current membership state is not join, reject */
        if (!ax_streq(sender_membership, "join"))
            return deny(ctx, "%s is not joined to the room", sender);
        /* 4.4.3: if target user's current membership state is join or ban, reject */
        if (ax_streq(target_membership, "join"))
            return deny(ctx, "%s is already joined to the room", target);
        if (ax_streq(target_membership, "ban"))
            return deny(ctx, "%s is banned from the room", target);
        /* 4.4.4: allow if the sender's power level >= the invite level; 4.4.5: else reject */
        LEVEL_OR_DENY(ctx, user_level(ctx, sender, &sender_level));
        LEVEL_OR_DENY(ctx, named_level(ctx, "invite", &level));
        if (sender_level >= level)
            return 0;
        return deny(ctx, "%s does not have the power level to invite", sender);
    }

    if (ax_streq(membership, "leave")) {
        /* 4.5.1: leaving yourself: allowed iff invited, joined or (v7+) knocking */
        if (strcmp(sender, target) == 0) {
            if (ax_streq(sender_membership, "join") || ax_streq(sender_membership, "invite") ||
                (rv->knock && ax_streq(sender_membership, "knock")))
                return 0;
            return deny(ctx, "%s cannot leave: not joined, invited or knocking", sender);
        }
        /* 4.5.2: if the sender's current membership state is not join, reject */
        if (!ax_streq(sender_membership, "join"))
            return deny(ctx, "%s is not joined to the room", sender);
        LEVEL_OR_DENY(ctx, user_level(ctx, sender, &sender_level));
        LEVEL_OR_DENY(ctx, user_level(ctx, target, &target_level));
        /* 4.5.3: unbanning needs the ban level */
        LEVEL_OR_DENY(ctx, named_level(ctx, "ban", &level));
        if (ax_streq(target_membership, "ban") && sender_level < level)
            return deny(ctx, "%s does not have the power level to unban", sender);
        /* 4.5.4: allow if the sender has the kick level and outranks the target */
        LEVEL_OR_DENY(ctx, named_level(ctx, "kick", &level));
        if (sender_level >= level && target_level < sender_level)
            return 0;
        /* 4.5.5: otherwise, reject */
        return deny(ctx, "%s does not have the power level to kick %s", sender, target);
    }

    if (ax_streq(membership, "ban")) {
        /* 4.6.1: if the sender's current membership state is not join, reject */
        if (!ax_streq(sender_membership, "join"))
            return deny(ctx, "%s is not joined to the room", sender);
        /* 4.6.2: allow if the sender has the ban level and outranks the target */
        LEVEL_OR_DENY(ctx, user_level(ctx, sender, &sender_level));
        LEVEL_OR_DENY(ctx, user_level(ctx, target, &target_level));
        LEVEL_OR_DENY(ctx, named_level(ctx, "ban", &level));
        if (sender_level >= level && target_level < sender_level)
            return 0;
        /* 4.6.3: otherwise, reject */
        return deny(ctx, "%s does not have the power level to ban %s", sender, target);
    }

    if (rv->knock && ax_streq(membership, "knock")) {
        /* 4.7.1: the join_rule must be knock (v10+: or knock_restricted) */
        const json_t *jr = state(ctx, "m.room.join_rules", "");
        const char *rule = jr != NULL ? str_of(json_object_get(jr, "content"), "join_rule") : NULL;
        if (!(ax_streq(rule, "knock") || (rv->knock_restricted && ax_streq(rule, "knock_restricted"))))
            return deny(ctx, "the join rule does not allow knocking");
        /* 4.7.2: if sender does not match state_key, reject */
        if (strcmp(sender, target) != 0)
            return deny(ctx, "cannot knock on behalf of another user");
        /* 4.7.3: allow unless the sender is banned, invited or joined; 4.7.4: else reject */
        if (ax_streq(sender_membership, "ban") || ax_streq(sender_membership, "invite") ||
            ax_streq(sender_membership, "join"))
            return deny(ctx, "%s cannot knock while banned, invited or joined", sender);
        return 0;
    }

    /* 4.8: otherwise, the membership is unknown. Reject. */
    return deny(ctx, "unknown membership");
}

/* ---- m.room.power_levels (v11 rule 9, v12 rule 10) -------------------------------------- */

static const char *const pl_fields[] = {"users_default", "events_default", "state_default", "ban",
                                        "redact",        "kick",           "invite",        NULL};

/* A level in an object being validated: v10+ wants a JSON integer. */
static bool valid_level(const ax_room_version_t *rv, const json_t *v)
{
    int64_t ignored;
    if (rv->integer_power_levels)
        return json_is_integer(v);
    return pl_parse(rv, v, &ignored) == 0;
}

static bool valid_level_map(const ax_room_version_t *rv, const json_t *map)
{
    if (!json_is_object(map))
        return false;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)map, k, v)
    {
        if (!valid_level(rv, v))
            return false;
    }
    return true;
}

/* 9.1-9.3 (v12 10.1-10.4): the shape of the new content.  Before v10 the spec
 * only checks "users"; axon also refuses values it could never read as a level
 * (Synapse fails on them later, at every event checked against this state). */
static int check_pl_content(auth_ctx_t *ctx, const json_t *content)
{
    const ax_room_version_t *rv = ctx->rv;
    /* 9.1 (v10+): users_default, events_default, state_default, ban, redact, kick, invite */
    for (const char *const *f = pl_fields; *f != NULL; ++f) {
        json_t *v = json_object_get(content, *f);
        if (v != NULL && !valid_level(rv, v))
            return deny(ctx, "power levels: '%s' is not an integer", *f);
    }
    /* 9.2 (v10+): events and notifications must be objects of integers */
    json_t *events = json_object_get(content, "events");
    if (events != NULL && !valid_level_map(rv, events))
        return deny(ctx, "power levels: 'events' must map event types to integers");
    json_t *notifications = json_object_get(content, "notifications");
    if (notifications != NULL && (rv->integer_power_levels || rv->limit_notifications_pl) &&
        !valid_level_map(rv, notifications))
        return deny(ctx, "power levels: 'notifications' must map keys to integers");
    /* 9.3: users must map valid user IDs to integers (before v10: or integer strings) */
    json_t *users = json_object_get(content, "users");
    if (users != NULL) {
        if (!valid_level_map(rv, users))
            return deny(ctx, "power levels: 'users' must map user IDs to integers");
        const char *user;
        json_t *v;
        json_object_foreach(users, user, v)
        {
            if (!ax_id_is_valid_user_id(user))
                return deny(ctx, "power levels: '%s' is not a valid user ID", user);
        }
    }
    /* v12 10.4: the users map must not name any room creator */
    if (rv->privileged_creators && users != NULL) {
        const json_t *create = state(ctx, "m.room.create", "");
        const char *user;
        json_t *v;
        json_object_foreach(users, user, v)
        {
            if (is_creator(rv, create, user))
                return deny(ctx, "power levels: room creator %s must not be listed in 'users'", user);
        }
    }
    return 0;
}

/* A level in an old or new content map for a changed-entry rule: 'present'
 * says whether it is there at all (null counts as absent). */
static int entry(const ax_room_version_t *rv, const json_t *map, const char *key, bool *present, int64_t *out)
{
    json_t *v = json_is_object(map) ? json_object_get(map, key) : NULL;
    *present = v != NULL && !json_is_null(v);
    *out = 0;
    return *present ? pl_parse(rv, v, out) : 0;
}

/* Compares one entry of old and new content.  'strict_old' is set for users
 * entries other than the sender's own (9.8: a current value equal to the
 * sender's level already rejects). */
static int check_pl_entry(auth_ctx_t *ctx, const json_t *old_map, const json_t *new_map, const char *key,
                          const char *what, int64_t sender_level, bool strict_old)
{
    bool had, has;
    int64_t old_v, new_v;
    if (entry(ctx->rv, old_map, key, &had, &old_v) != 0 || entry(ctx->rv, new_map, key, &has, &new_v) != 0)
        return deny(ctx, "power levels: unreadable value for '%s'", key);
    if (had == has && (!had || old_v == new_v))
        return 0; /* unchanged */
    /* changed or removed: the current value must not exceed the sender's level
     * (users other than the sender: must be below it) */
    if (had && (old_v > sender_level || (strict_old && old_v >= sender_level)))
        return deny(ctx, "power levels: cannot change %s '%s' from a level at or above your own", what, key);
    /* added or changed: the new value must not exceed the sender's level */
    if (has && new_v > sender_level)
        return deny(ctx, "power levels: cannot set %s '%s' above your own level", what, key);
    return 0;
}

static int check_pl_map(auth_ctx_t *ctx, const json_t *old_c, const json_t *new_c, const char *name,
                        int64_t sender_level, const char *sender)
{
    json_t *old_map = json_object_get(old_c, name), *new_map = json_object_get(new_c, name);
    bool users = strcmp(name, "users") == 0;
    const char *k;
    json_t *v;
    int rc;
    /* every key of either side: changed, removed or added */
    json_object_foreach(old_map, k, v)
    {
        if ((rc = check_pl_entry(ctx, old_map, new_map, k, name, sender_level, users && strcmp(k, sender) != 0)) != 0)
            return rc;
    }
    json_object_foreach(new_map, k, v)
    {
        if (json_object_get(old_map, k) != NULL)
            continue;
        if ((rc = check_pl_entry(ctx, old_map, new_map, k, name, sender_level, users && strcmp(k, sender) != 0)) != 0)
            return rc;
    }
    return 0;
}

static int check_power_levels(auth_ctx_t *ctx, const json_t *event, const char *sender)
{
    json_t *content = json_object_get(event, "content");
    int rc;
    if ((rc = check_pl_content(ctx, content)) != 0)
        return rc;
    /* 9.4: if there is no previous m.room.power_levels event in the room, allow */
    const json_t *old = state(ctx, "m.room.power_levels", "");
    if (old == NULL)
        return 0;
    json_t *old_c = json_object_get(old, "content");
    int64_t sender_level;
    LEVEL_OR_DENY(ctx, user_level(ctx, sender, &sender_level));

    /* 9.5: users_default .. invite, added, changed or removed: neither the current
     * nor the new value may be above the sender's level */
    for (const char *const *f = pl_fields; *f != NULL; ++f)
        if ((rc = check_pl_entry(ctx, old_c, content, *f, "level", sender_level, false)) != 0)
            return rc;
    /* 9.6, 9.7: events (v6+: and notifications) entries */
    if ((rc = check_pl_map(ctx, old_c, content, "events", sender_level, sender)) != 0)
        return rc;
    if (ctx->rv->limit_notifications_pl &&
        (rc = check_pl_map(ctx, old_c, content, "notifications", sender_level, sender)) != 0)
        return rc;
    /* 9.8, 9.9: users entries; others' current levels must be below the sender's */
    return check_pl_map(ctx, old_c, content, "users", sender_level, sender);
}

/* ---- The rules ------------------------------------------------------------------------------- */

int ax_auth_check(const ax_room_version_t *rv, const json_t *event, ax_auth_lookup_fn lookup, void *lookup_arg,
                  char *reason, size_t reasonlen)
{
    auth_ctx_t ctx_ = {rv, lookup, lookup_arg, reason, reasonlen}, *ctx = &ctx_;
    const char *type = str_of(event, "type");
    const char *sender = str_of(event, "sender");
    const char *state_key = str_of(event, "state_key");
    int64_t sender_level, level;

    if (type == NULL || sender == NULL || !json_is_object(json_object_get(event, "content")))
        return deny(ctx, "malformed event: type, sender and content are required");

    /* 1: m.room.create */
    if (strcmp(type, "m.room.create") == 0)
        return check_create(ctx, event, sender);

    const char *room_id = str_of(event, "room_id");
    if (room_id == NULL)
        return deny(ctx, "malformed event: no room_id");
    const json_t *create = state(ctx, "m.room.create", "");
    if (create == NULL)
        return deny(ctx, "no m.room.create event in the state");
    if (rv->room_id_from_create) {
        /* v12 2: the room_id must be the ID of the (accepted) m.room.create event */
        char want[AX_HASH_ID_LEN];
        if (ax_event_room_id_from_create(rv, create, want, sizeof(want)) != 0 || strcmp(want, room_id) != 0)
            return deny(ctx, "room_id is not the ID of the room's m.room.create event");
    }

    /* 3: m.federate false: only the creating server's users take part */
    if (json_is_false(json_object_get(json_object_get(create, "content"), "m.federate")) &&
        !ax_streq(ax_id_domain(sender), ax_id_domain(str_of(create, "sender"))))
        return deny(ctx, "the room does not federate and %s is on another server", sender);

    /* v1-5 4: m.room.aliases needs only a state_key equal to the sender's server */
    if (rv->special_case_aliases && strcmp(type, "m.room.aliases") == 0) {
        if (state_key == NULL)
            return deny(ctx, "m.room.aliases must be a state event");
        if (!ax_streq(state_key, ax_id_domain(sender)))
            return deny(ctx, "m.room.aliases state_key must be the sender's server");
        return 0;
    }

    /* 4: m.room.member */
    if (strcmp(type, "m.room.member") == 0)
        return check_member(ctx, event, sender);

    /* 5: if the sender's current membership state is not join, reject */
    if (!ax_streq(membership_of(ctx, sender), "join"))
        return deny(ctx, "%s is not joined to the room", sender);

    LEVEL_OR_DENY(ctx, user_level(ctx, sender, &sender_level));

    /* 6: m.room.third_party_invite: allow iff the sender has the invite level */
    if (strcmp(type, "m.room.third_party_invite") == 0) {
        LEVEL_OR_DENY(ctx, named_level(ctx, "invite", &level));
        if (sender_level >= level)
            return 0;
        return deny(ctx, "%s does not have the power level to invite", sender);
    }

    /* 7: if the event type's required power level is greater than the sender's, reject */
    LEVEL_OR_DENY(ctx, required_level(ctx, type, state_key != NULL, &level));
    if (level > sender_level)
        return deny(ctx, "%s does not have the power level to send %s", sender, type);

    /* 8: a state_key starting with '@' must be the sender */
    if (state_key != NULL && state_key[0] == '@' && strcmp(state_key, sender) != 0)
        return deny(ctx, "state_key %s belongs to another user", state_key);

    /* 9: m.room.power_levels */
    if (strcmp(type, "m.room.power_levels") == 0)
        return check_power_levels(ctx, event, sender);

    /* v1-2 11: m.room.redaction needs the redact level or an event ID from the same server */
    if (rv->event_id_format == AX_EVENT_ID_V1 && strcmp(type, "m.room.redaction") == 0) {
        LEVEL_OR_DENY(ctx, named_level(ctx, "redact", &level));
        if (sender_level >= level)
            return 0;
        const char *theirs = ax_id_domain(ax_event_redacts(rv, event));
        if (theirs != NULL && ax_streq(theirs, ax_id_domain(str_of(event, "event_id"))))
            return 0;
        return deny(ctx, "%s does not have the power level to redact this event", sender);
    }

    /* 10: otherwise, allow */
    return 0;
}

/* ---- Auth events --------------------------------------------------------------------------- */

static void add_key(ax_state_key_t out[AX_AUTH_TYPES_MAX], size_t *n, const char *type, const char *state_key)
{
    for (size_t i = 0; i < *n; ++i)
        if (strcmp(out[i].type, type) == 0 && strcmp(out[i].state_key, state_key) == 0)
            return;
    out[*n].type = type;
    out[*n].state_key = state_key;
    ++*n;
}

int ax_auth_event_types(const ax_room_version_t *rv, const json_t *event, ax_state_key_t out[AX_AUTH_TYPES_MAX],
                        size_t *n)
{
    const char *type = str_of(event, "type");
    const char *sender = str_of(event, "sender");
    *n = 0;
    if (type == NULL || sender == NULL)
        return AX_EINVAL;
    /* "The auth_events for the m.room.create event in a room is empty" */
    if (strcmp(type, "m.room.create") == 0)
        return 0;
    /* v12: "The m.room.create event MUST NOT be selected for auth_events" */
    if (!rv->room_id_from_create)
        add_key(out, n, "m.room.create", "");
    add_key(out, n, "m.room.power_levels", "");
    add_key(out, n, "m.room.member", sender);
    if (strcmp(type, "m.room.member") != 0)
        return 0;

    const char *target = str_of(event, "state_key");
    json_t *content = json_object_get(event, "content");
    const char *membership = str_of(content, "membership");
    if (target == NULL)
        return AX_EINVAL;
    add_key(out, n, "m.room.member", target);
    if (ax_streq(membership, "join") || ax_streq(membership, "invite") || ax_streq(membership, "knock"))
        add_key(out, n, "m.room.join_rules", "");
    if (ax_streq(membership, "invite")) {
        const char *token = str_of(json_object_get(json_object_get(content, "third_party_invite"), "signed"), "token");
        if (token != NULL)
            add_key(out, n, "m.room.third_party_invite", token);
    }
    if (rv->restricted && ax_streq(membership, "join")) {
        const char *via = str_of(content, "join_authorised_via_users_server");
        if (via != NULL)
            add_key(out, n, "m.room.member", via);
    }
    return 0;
}

int ax_auth_check_auth_events(const ax_room_version_t *rv, const json_t *event, const json_t *const *auth_events,
                              const bool *rejected, size_t n, char *reason, size_t reasonlen)
{
    auth_ctx_t ctx_ = {rv, NULL, NULL, reason, reasonlen}, *ctx = &ctx_;
    ax_state_key_t want[AX_AUTH_TYPES_MAX];
    size_t n_want;
    bool have_create = false;

    if (ax_streq(str_of(event, "type"), "m.room.create"))
        return 0;
    if (ax_auth_event_types(rv, event, want, &n_want) != 0)
        return deny(ctx, "malformed event: cannot select its auth events");
    const char *room_id = str_of(event, "room_id");
    for (size_t i = 0; i < n; ++i) {
        const char *type = str_of(auth_events[i], "type");
        const char *state_key = str_of(auth_events[i], "state_key");
        if (type == NULL || state_key == NULL)
            return deny(ctx, "auth event %zu is not a state event", i);
        /* 2.1: duplicate entries for a given type and state_key pair */
        for (size_t j = 0; j < i; ++j)
            if (ax_streq(type, str_of(auth_events[j], "type")) &&
                ax_streq(state_key, str_of(auth_events[j], "state_key")))
                return deny(ctx, "duplicate auth events for (%s, %s)", type, state_key);
        /* 2.2: entries the auth events selection does not pick (v12: m.room.create) */
        bool wanted = false;
        for (size_t j = 0; j < n_want && !wanted; ++j)
            wanted = strcmp(want[j].type, type) == 0 && strcmp(want[j].state_key, state_key) == 0;
        if (!wanted)
            return deny(ctx, "auth event (%s, %s) is not one this event may cite", type, state_key);
        /* 2.3: entries which were themselves rejected */
        if (rejected != NULL && rejected[i])
            return deny(ctx, "auth event (%s, %s) was rejected", type, state_key);
        /* 2.5: entries from another room */
        if (room_id == NULL || !ax_streq(str_of(auth_events[i], "room_id"), room_id))
            return deny(ctx, "auth event (%s, %s) belongs to another room", type, state_key);
        if (strcmp(type, "m.room.create") == 0)
            have_create = true;
    }
    /* 2.4 (v1-11): if there is no m.room.create event among the entries, reject */
    if (!rv->room_id_from_create && !have_create)
        return deny(ctx, "no m.room.create among the auth events");
    return 0;
}

const json_t *ax_auth_lookup_list(void *arg, const char *type, const char *state_key)
{
    size_t i;
    json_t *ev;
    json_array_foreach((json_t *)arg, i, ev)
    {
        if (ax_streq(str_of(ev, "type"), type) && ax_streq(str_of(ev, "state_key"), state_key))
            return ev;
    }
    return NULL;
}

/* ---- Power levels for callers -------------------------------------------------------------- */

int ax_power_level_of(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg, const char *user_id,
                      int64_t *out)
{
    auth_ctx_t ctx = {rv, lookup, lookup_arg, NULL, 0};
    return user_level(&ctx, user_id, out) == 0 ? 0 : AX_EINVAL;
}

int ax_power_level_required(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg,
                            const char *event_type, bool is_state, int64_t *out)
{
    auth_ctx_t ctx = {rv, lookup, lookup_arg, NULL, 0};
    return required_level(&ctx, event_type, is_state, out) == 0 ? 0 : AX_EINVAL;
}

int ax_power_level_named(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg, const char *name,
                         int64_t *out)
{
    auth_ctx_t ctx = {rv, lookup, lookup_arg, NULL, 0};
    return named_level(&ctx, name, out) == 0 ? 0 : AX_EINVAL;
}

int ax_power_level_notification(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg,
                                const char *key, int64_t *out)
{
    auth_ctx_t ctx = {rv, lookup, lookup_arg, NULL, 0};
    json_t *notifications = json_object_get(pl_content(&ctx), "notifications");
    if (notifications != NULL && !json_is_object(notifications))
        return AX_EINVAL;
    /* notifications.room ("@room") defaults to 50 */
    return pl_read(rv, notifications, key, 50, out) == 0 ? 0 : AX_EINVAL;
}

bool ax_auth_is_creator(const ax_room_version_t *rv, ax_auth_lookup_fn lookup, void *lookup_arg, const char *user_id)
{
    return is_creator(rv, lookup(lookup_arg, "m.room.create", ""), user_id);
}

int ax_auth_redaction_applies(const ax_room_version_t *rv, const json_t *redaction, const json_t *original,
                              ax_auth_lookup_fn lookup, void *lookup_arg)
{
    auth_ctx_t ctx = {rv, lookup, lookup_arg, NULL, 0};
    const char *sender = str_of(redaction, "sender");
    int64_t sender_level, redact_level;
    if (sender == NULL || user_level(&ctx, sender, &sender_level) != 0 ||
        named_level(&ctx, "redact", &redact_level) != 0)
        return AX_EINVAL;
    /* 1: the redaction's sender has the redact level */
    if (sender_level >= redact_level)
        return 0;
    if (rv->event_id_format == AX_EVENT_ID_V1) {
        /* v1-2 auth rule 11.2: both event IDs were minted by the same server */
        const char *theirs = ax_id_domain(ax_event_redacts(rv, redaction));
        const char *ours = ax_id_domain(str_of(redaction, "event_id"));
        return theirs != NULL && ax_streq(theirs, ours) ? 0 : AX_EFORBIDDEN;
    }
    /* v3+ 2: the senders of both events are on the same server */
    const char *a = ax_id_domain(sender), *b = ax_id_domain(str_of(original, "sender"));
    return a != NULL && ax_streq(a, b) ? 0 : AX_EFORBIDDEN;
}
