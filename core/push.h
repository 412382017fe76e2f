/*
 * push.h -- push rules and notifications (spec: Client-Server API "Push
 * Notifications"; pushrules.yaml, push_rule/push_condition/push_ruleset).
 *
 * Two halves:
 *
 *   push_rules.c  the rules themselves: the server-default rule set, the
 *                 user's stored changes to it, editing with the spec's
 *                 validation and ordering, and compiled rule sets that are
 *                 evaluated against an event.  Pure functions of their
 *                 arguments, unit-tested in tests/unit/test_core_push.c.
 *
 *   push.c        the engine in the event pipeline: ax_room_send() calls
 *                 ax_push_event() inside the writer's transaction for every
 *                 event, which evaluates the rules of every local member,
 *                 updates their unread counts, records their notifications
 *                 and queues pushes for their pushers; receipts reset the
 *                 counts (ax_push_receipt).  Compiled rules and room data are
 *                 cached on the writer thread (see docs/architecture.md,
 *                 "Push").
 *
 * A user's rules are stored as their m.push_rules account data, but only as
 * changes to the server defaults ("stored record", layout below); what
 * clients see (GET /pushrules/, /sync account_data) is always
 * ax_push_ruleset() of that record, so a newer axon's defaults reach every
 * user without a migration.
 *
 *   stored record = {"rules":    {kind: [{rule_id, enabled, actions, conditions? | pattern?}]},
 *                    "defaults": {kind: {rule_id: {enabled?, actions?}}}}
 */
#ifndef AX_CORE_PUSH_H
#define AX_CORE_PUSH_H

#include "core/rooms.h"

/* ---- push_rules.c -- rules ----------------------------------------------------------- */

/** The rule kinds in the order they are checked (spec: "Push Rules"). */
typedef enum {
    AX_PUSH_OVERRIDE = 0,
    AX_PUSH_CONTENT,
    AX_PUSH_ROOM,
    AX_PUSH_SENDER,
    AX_PUSH_UNDERRIDE,
    AX_PUSH_KINDS
} ax_push_kind_t;

/** "override" -> AX_PUSH_OVERRIDE ...; -1 for anything else. */
int ax_push_kind_parse(const char *name);
/** The kind's name ("override"); static. */
const char *ax_push_kind_name(ax_push_kind_t kind);

/** The account data type the rules are stored and shown as. */
#define AX_PUSH_RULES_TYPE "m.push_rules"

/**
 * The effective rule set of 'user_id' as clients see it: {"global":
 * {override, content, room, sender, underride}}, the server defaults (with
 * the user's ID filled in) merged with 'stored' (borrowed; NULL or
 * malformed parts count as "no changes").  Returns a new reference.
 */
json_t *ax_push_ruleset(const json_t *stored, const char *user_id);

/** One rule of the effective rule set (a new reference), or NULL when there is none. */
json_t *ax_push_rule_get(const json_t *stored, const char *user_id, ax_push_kind_t kind, const char *rule_id);

/*
 * Editing.  Each function changes '*stored' (a record the caller owns; it
 * may be NULL, then a new one is made) and returns 0, or an error with a
 * message in 'msg' (cap bytes) and '*stored' unchanged:
 *   AX_ENOTFOUND  no such rule                       -> 404 M_NOT_FOUND
 *   AX_EINVAL     the rule or its ID is not allowed  -> 400 M_INVALID_PARAM
 *   AX_ECONFLICT  'before'/'after' names no user rule of that kind
 *                 (or a server-default one)          -> 400 M_UNKNOWN
 */

/**
 * Creates or replaces the user rule 'rule_id' of 'kind' from 'body' (the
 * PUT body: actions, and conditions for override/underride, pattern for
 * content; borrowed).  A new rule is enabled and, without 'before'/'after'
 * (may be NULL), becomes the most important user rule of its kind; a
 * replaced rule keeps its place and enabled state unless moved.
 */
int ax_push_rule_put(json_t **stored, ax_push_kind_t kind, const char *rule_id, const json_t *body, const char *before,
                     const char *after, char *msg, size_t cap);
/** Deletes a user rule (server-default rules cannot be deleted: AX_EINVAL). */
int ax_push_rule_delete(json_t **stored, ax_push_kind_t kind, const char *rule_id, char *msg, size_t cap);
/** Enables or disables any rule, user or server-default. */
int ax_push_rule_set_enabled(json_t **stored, ax_push_kind_t kind, const char *rule_id, bool enabled, char *msg,
                             size_t cap);
/** Replaces the actions of any rule ('actions' borrowed; validated, historical actions dropped). */
int ax_push_rule_set_actions(json_t **stored, ax_push_kind_t kind, const char *rule_id, const json_t *actions,
                             char *msg, size_t cap);

/** Checks an actions array; 0 or AX_EINVAL with 'msg'. */
int ax_push_actions_check(const json_t *actions, char *msg, size_t cap);

/* ---- compiled rules and evaluation ---- */

typedef struct st_ax_push_rules_t ax_push_rules_t;

/**
 * Compiles the effective rule set of 'stored' (borrowed, may be NULL) for
 * evaluation: enabled rules only, in priority order, patterns case-folded,
 * property paths split.  The result does not depend on the user: the
 * defaults' "[the user's Matrix ID]" is bound at evaluation, so every user
 * without changes can share one compiled set.  Free with
 * ax_push_rules_free().
 */
ax_push_rules_t *ax_push_rules_compile(const json_t *stored);
void ax_push_rules_free(ax_push_rules_t *rules);

/** What an event is evaluated against for one user; callbacks get 'arg'. */
typedef struct st_ax_push_ctx_t {
    const json_t *event;   /* the event as rules see it: type, sender, room_id, state_key, content, event_id */
    const char *user_id;   /* whose rules these are */
    uint64_t member_count; /* joined members of the room */
    /** The user's display name in the room, or NULL (only asked for contains_display_name). */
    const char *(*display_name)(void *arg);
    /** True when the sender's power level reaches notifications[key] (sender_notification_permission). */
    bool (*sender_may)(void *arg, const char *key);
    void *arg;
} ax_push_ctx_t;

/** The outcome for one user; pointers are borrowed from the compiled rules. */
typedef struct st_ax_push_result_t {
    const char *rule_id;      /* the rule that matched, NULL when none did */
    bool notify;              /* the actions contain "notify" */
    bool highlight;           /* the highlight tweak is set (and not false) */
    bool sound;               /* a sound tweak is set */
    const json_t *tweaks;     /* {tweak: value} of the actions */
    const char *actions_json; /* the actions, compact JSON */
} ax_push_result_t;

/**
 * Evaluates 'rules' for the event and user in 'ctx' (spec: the first
 * enabled rule whose conditions all hold decides).  Fills 'out'.
 */
void ax_push_eval(const ax_push_rules_t *rules, const ax_push_ctx_t *ctx, ax_push_result_t *out);

/** True when the rules use contains_display_name (the caller then needs display names). */
bool ax_push_rules_need_display_name(const ax_push_rules_t *rules);

/* Matching primitives, exposed for the unit tests. */

/**
 * Glob match of 'pattern' ('*' any run, '?' one character) against the
 * whole of 'value', case-insensitively (ASCII, Latin-1, Latin Extended-A,
 * Greek and Cyrillic letters are folded).  With 'words', the pattern may
 * instead match any substring that starts and ends at a word boundary
 * (spec: content.body).  With 'literal', '*' and '?' match themselves.
 */
bool ax_push_glob(const char *pattern, const char *value, bool words, bool literal);

/**
 * Splits a dot-separated property path (spec appendix: "\." is a dot and
 * "\\" a backslash inside a name) and resolves it in 'event'.  Returns the
 * value (borrowed) or NULL when any part is absent.
 */
const json_t *ax_push_path_get(const json_t *event, const char *path);

/* ---- push.c -- the engine in the event pipeline ------------------------------------- */

typedef struct st_ax_push_t ax_push_t;

/**
 * Creates the engine for the server named 'server_name' (borrowed; it
 * tells local users from remote ones).  Its caches belong to the writer
 * thread: every function below that takes a write transaction must run
 * there.  Free with ax_push_free().
 */
ax_push_t *ax_push_new(const char *server_name);
void ax_push_free(ax_push_t *push);

/**
 * Attaches 'push' to 'writer' (before it starts): every event its jobs
 * store, local (ax_room_send) or from another server (ax_room_ingest), and
 * every read receipt then goes through the engine.  A writer without one
 * (`axon admin`, unit tests) evaluates nothing.
 */
void ax_push_attach(ax_push_t *push, ax_writer_t *writer);

/** Inside 'apply': the engine attached to the writer running 'txn', or NULL. */
ax_push_t *ax_push_of(ax_txn_t *txn);

/**
 * Writer side, called by ax_room_send() once 'pdu' (borrowed) is stored as
 * 'event_id' at 'pos' of 'room_id' ('state_group': the room's state after
 * it, which keys the cached member list): evaluates the push rules of every local
 * joined member except the sender (and of a local invitee), then for each
 * notification bumps the unread counts of the room (and thread), records it
 * for GET /notifications and queues a push per pusher.  The sender's own
 * counts of the event's thread are reset (sending counts as reading).
 * Returns 0 or a storage error.
 */
int ax_push_event(ax_push_t *push, ax_txn_t *txn, const ax_room_version_t *rv, const char *room_id,
                  const char *event_id, uint64_t pos, uint64_t state_group, const json_t *pdu);

/**
 * Writer side: 'user_id' sent a read receipt (m.read or m.read.private) at
 * the event at 'event_pos' of 'room_id', unthreaded when 'thread_id' is
 * NULL or "", else for "main" or the thread rooted at 'thread_id'.  Moves
 * the read marks forward and recomputes the affected counts; when they
 * changed, queues a counts-only push (at 'receipt_pos', the receipt's
 * stream position) so phones can update their badge.  Returns 0 or a
 * storage error.
 */
int ax_push_receipt(ax_push_t *push, ax_txn_t *txn, const char *user_id, const char *room_id, const char *thread_id,
                    uint64_t event_pos, uint64_t receipt_pos);

/**
 * Writer side: stores 'user_id''s push rules record 'stored' (borrowed) as
 * their m.push_rules account data at a new stream position and makes the
 * engine recompile.  Returns 0 or a storage error.
 */
int ax_push_rules_store(ax_txn_t *txn, const char *user_id, const json_t *stored);

/**
 * True when the last push queued by the writer has not been announced yet;
 * clears the flag.  The commit hook calls it to wake the push sender.
 */
bool ax_push_take_queued(ax_push_t *push);

/** Counts of one room or thread. */
typedef struct st_ax_push_counts_t {
    uint64_t notifications;
    uint64_t highlights;
} ax_push_counts_t;

/**
 * Reads 'user_id''s unread counts in 'room_id' (any thread): 'main' gets
 * the main timeline's, and 'threads' (when not NULL) a new object
 * {root: {notification_count, highlight_count}} of the threads with
 * unread notifications; when 'threads' is NULL their counts are added to
 * 'main'.
 */
void ax_push_room_counts(ax_txn_t *txn, const char *user_id, const char *room_id, ax_push_counts_t *main,
                         json_t **threads);

/** The user's unread notifications over all rooms (the badge count of pushes). */
uint64_t ax_push_total_unread(ax_txn_t *txn, const char *user_id);

/**
 * The thread an event belongs to (spec: "Threaded read receipts"): the
 * root of an m.thread relation, followed through up to 3 other relations.
 * Writes the root's event ID to 'out' ("" for the main timeline).
 */
void ax_push_thread_of(ax_txn_t *txn, const json_t *pdu, char *out, size_t cap);

#endif
