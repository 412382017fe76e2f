/*
 * core.h -- what the Client-Server and Server-Server APIs share: encodings,
 * canonical JSON, room versions, redaction, signing and hashing.  One banner
 * per source file, as in Redis's server.h.
 *
 * Thread safety: every function here is safe to call from any thread; none
 * keeps state between calls except the signing key, which is immutable once
 * loaded.
 */
#ifndef AX_CORE_H
#define AX_CORE_H

#include "common/common.h"

#include <jansson.h>
#include <sodium.h>

/* ---- base64.c -- unpadded base64 (standard and URL-safe) -------------------- */

/** Length of the unpadded encoding of 'n' bytes, without the NUL. */
#define AX_B64_LEN(n) (((n) / 3) * 4 + (((n) % 3) ? ((n) % 3) + 1 : 0))

/**
 * Encodes 'in' (n bytes) as unpadded base64 into 'out', which must hold
 * AX_B64_LEN(n) + 1 bytes; 'urlsafe' selects the RFC 4648 URL alphabet.
 * Returns the length written (without the NUL).
 */
size_t ax_b64_encode(char *out, const uint8_t *in, size_t n, bool urlsafe);

/**
 * Decodes 'in' (len chars, padded or not) into 'out' (cap bytes).  Returns 0
 * and the decoded length in '*outlen', or AX_EINVAL on bad input or a short
 * buffer.
 */
int ax_b64_decode(uint8_t *out, size_t cap, size_t *outlen, const char *in, size_t len, bool urlsafe);

/* ---- canonical_json.c -- the spec's Canonical JSON --------------------------- */

/** Largest integer canonical JSON allows (2^53 - 1). */
#define AX_CJSON_MAX_INT 9007199254740991LL

/**
 * Appends the canonical encoding of 'v' (borrowed) to 'out': sorted keys, no
 * insignificant whitespace, raw UTF-8, shortest escapes.  Integral reals
 * within range are written as integers (-0 becomes 0).
 *
 * @return 0, or AX_EINVAL when 'v' holds a number that canonical JSON cannot
 *         represent (a fraction, or magnitude above 2^53 - 1).
 */
int ax_cjson_encode(const json_t *v, ax_buf_t *out);

/**
 * Returns AX_EINVAL if 'v' holds a value that room versions with strict
 * canonical JSON reject (any real, integers out of range), else 0.
 */
int ax_cjson_check_strict(const json_t *v);

/* ---- random.c -------------------------------------------------------------- */

/** Fills out[0..n) with random characters from [A-Za-z0-9] and NUL-terminates out[n]. */
void ax_random_alnum(char *out, size_t n);

/** Length of a token from ax_token_generate, without the NUL. */
#define AX_TOKEN_LEN (4 + AX_B64_LEN(32))

/**
 * Makes a new secret token: 'prefix' (4 characters, e.g. "axo_") followed
 * by 256 random bits in URL-safe base64, into 'out' (AX_TOKEN_LEN + 1
 * bytes), and its SHA-256 into 'hash' (what the database keeps).
 */
void ax_token_generate(const char *prefix, char *out, uint8_t hash[32]);

/** SHA-256 of a token presented by a client. */
void ax_token_hash(const char *token, uint8_t hash[32]);

/* ---- password.c -- argon2id password hashes (blocking: worker pool only) ------------ */

#define AX_PASSWORD_HASH_MAX 128

/** Hashes 'password' into 'out' (AX_PASSWORD_HASH_MAX bytes).  Returns 0 or AX_ERR (out of memory). */
int ax_password_hash(const char *password, char *out);

/**
 * Checks 'password' against 'hash'.  When 'hash' is NULL (no such user, or
 * no password) it verifies against a fixed dummy hash so the answer takes
 * the same time, then reports a mismatch.  Returns 0 on a match, AX_EFORBIDDEN otherwise.
 */
int ax_password_verify(const char *hash, const char *password);

/* ---- room_versions.c -- per-version rules ----------------------------------- */

typedef enum {
    AX_EVENT_ID_V1 = 1, /* "$random:server", chosen by the origin (v1, v2) */
    AX_EVENT_ID_V3 = 3, /* "$" + base64(reference hash) */
    AX_EVENT_ID_V4 = 4, /* "$" + urlsafe base64(reference hash) (v4+) */
} ax_event_id_format_t;

typedef struct st_ax_room_version_t {
    const char *id;
    ax_event_id_format_t event_id_format;
    int state_res;                                  /* 1 or 2 */
    unsigned enforce_key_validity : 1;              /* v5+ */
    unsigned special_case_aliases : 1;              /* v1-5: m.room.aliases auth and redaction */
    unsigned strict_canonical_json : 1;             /* v6+ */
    unsigned limit_notifications_pl : 1;            /* v6+ */
    unsigned knock : 1;                             /* v7+ */
    unsigned restricted : 1;                        /* v8+ */
    unsigned restricted_redacts_authorised_via : 1; /* v9+ keeps join_authorised_via_users_server */
    unsigned knock_restricted : 1;                  /* v10+ */
    unsigned integer_power_levels : 1;              /* v10+ */
    unsigned msc2175_implicit_creator : 1;          /* v11+: creator is the sender of m.room.create */
    unsigned msc2176_redaction_rules : 1;           /* v11+ redaction algorithm */
    unsigned msc3821_redact_3pid_signed : 1;        /* v11+ */
    unsigned msc3989_redact_origin : 1;             /* v11+: top-level origin is not kept */
    unsigned room_id_from_create : 1;               /* v12: room ID is the create event's reference hash */
    unsigned privileged_creators : 1;               /* v12: creators have infinite power */
} ax_room_version_t;

/** Returns the rules of room version 'id', or NULL when axon does not know it. */
const ax_room_version_t *ax_room_version_get(const char *id);

/** Versions axon can take part in, NULL-terminated, oldest first. */
extern const char *const ax_room_versions_supported[];

/** Versions axon creates rooms in (createRoom, upgrades), NULL-terminated. */
extern const char *const ax_room_versions_creatable[];

/* ---- redaction.c -- the redaction algorithm ------------------------------------- */

/**
 * Returns a new reference: the redacted form of 'event' (borrowed) under
 * room version 'rv'.  Keys the algorithm does not keep are dropped; an
 * 'unsigned' object is not kept (callers re-add redacted_because).
 */
json_t *ax_event_redact(const json_t *event, const ax_room_version_t *rv);

/* ---- signing.c -- ed25519 JSON signing, event hashes and IDs ---------------------- */

#define AX_KEY_ID_MAX 64

typedef struct st_ax_signing_key_t {
    char key_id[AX_KEY_ID_MAX]; /* "ed25519:abc123" */
    uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
    uint8_t secret_key[crypto_sign_SECRETKEYBYTES];
} ax_signing_key_t;

/** Derives a key from a 32-byte seed; 'key_id' is copied ("ed25519:..."). */
void ax_signing_key_from_seed(ax_signing_key_t *key, const char *key_id, const uint8_t seed[crypto_sign_SEEDBYTES]);

/** Wipes the secret key (sodium_memzero). */
void ax_signing_key_dispose(ax_signing_key_t *key);

/**
 * Loads the server key from 'path' ("ed25519 <version> <unpadded base64
 * seed>", the format Synapse uses) or, when the file does not exist,
 * generates one with key id "ed25519:<random>" and writes it with mode 0600.
 * Returns 0, or AX_EIO / AX_EINVAL with 'err' set.
 */
int ax_signing_key_load_or_create(const char *path, ax_signing_key_t *key, char *err, size_t errlen);

/**
 * Generates a new key with key id "ed25519:a_<random>" into 'key' and
 * writes it to 'path' (mode 0600, through a temporary file renamed over
 * any existing one, so a crash leaves the old key or the new one).
 * Returns 0, or AX_EIO with 'err' set.
 */
int ax_signing_key_generate(const char *path, ax_signing_key_t *key, char *err, size_t errlen);

/**
 * Signs JSON object 'obj' in place as 'server_name' with 'key': the
 * signature covers the canonical JSON of 'obj' without "signatures" and
 * "unsigned", and is added under signatures.<server_name>.<key_id>.
 * Returns 0 or AX_EINVAL (not an object, or not representable canonically).
 */
int ax_sign_json(json_t *obj, const char *server_name, const ax_signing_key_t *key);

/**
 * Checks the signature of 'server_name' with key 'key_id' over 'obj'
 * (borrowed) using 'public_key'.  Returns 0, AX_ENOTFOUND when there is no
 * such signature, or AX_EBADSIG.
 */
int ax_verify_json(const json_t *obj, const char *server_name, const char *key_id,
                   const uint8_t public_key[crypto_sign_PUBLICKEYBYTES]) AX_WARN_UNUSED;

/**
 * Computes the content hash of 'event' (borrowed): SHA-256 of its canonical
 * JSON without "unsigned", "signatures" and "hashes".  Returns 0 or AX_EINVAL.
 */
int ax_event_content_hash(const json_t *event, uint8_t out[crypto_hash_sha256_BYTES]);

/**
 * Computes the reference hash of 'event' under 'rv': SHA-256 of the
 * canonical JSON of the redacted event without "signatures" and "unsigned".
 */
int ax_event_reference_hash(const json_t *event, const ax_room_version_t *rv, uint8_t out[crypto_hash_sha256_BYTES]);

/**
 * Writes the event ID of 'event' for room versions 3+ ("$" + base64 of the
 * reference hash, URL-safe from v4) into 'out' (at least 48 bytes).
 * Returns 0, AX_EINVAL, or AX_EINVAL for v1/v2 rooms whose IDs are not derived.
 */
int ax_event_compute_id(const json_t *event, const ax_room_version_t *rv, char *out, size_t cap);

/**
 * Hashes and signs a PDU in place, as the spec's "Signing events" says: adds
 * hashes.sha256 (content hash), then signs the redacted form and copies the
 * signature into 'event'.  Returns 0 or AX_EINVAL.
 */
int ax_event_sign(json_t *event, const ax_room_version_t *rv, const char *server_name, const ax_signing_key_t *key);

/**
 * ax_event_sign(), and the event ID (ax_event_compute_id()) into 'id' from
 * the same canonical bytes, which the signature and the reference hash
 * share: one redaction and one encoding fewer on the writer.  'id' is ""
 * where IDs are not derived (v1/v2) or 'cap' is too small.
 */
int ax_event_sign_id(json_t *event, const ax_room_version_t *rv, const char *server_name, const ax_signing_key_t *key,
                     char *id, size_t cap);

/**
 * Adds the signature of 'server_name' to an event another server made and
 * hashed (a restricted join it vouches for, an invite of one of its users),
 * leaving its hashes alone.  Returns 0 or AX_EINVAL.
 */
int ax_event_cosign(json_t *event, const ax_room_version_t *rv, const char *server_name, const ax_signing_key_t *key);

/* ---- e2ee.c -- checks on end-to-end encryption keys and backups --------------------------- */

/**
 * Splits "<algorithm>:<key_id>" (exactly one colon, both parts non-empty)
 * into 'algorithm' (alen bytes) and 'id' (idlen bytes).  Returns 0 or
 * AX_EINVAL (malformed, or a part does not fit).
 */
int ax_e2ee_split_key_id(const char *s, char *algorithm, size_t alen, char *id, size_t idlen);

/** Decodes an unpadded base64 ed25519 public key.  Returns 0, or AX_EINVAL unless it is 32 bytes. */
int ax_e2ee_decode_ed25519(const char *b64, uint8_t out[crypto_sign_PUBLICKEYBYTES]);

/**
 * Checks the signature of 'user_id' with key 'key_id' ("ed25519:...") over
 * 'obj' (borrowed), made by the ed25519 public key 'public_key_b64'.
 * Returns 0, AX_ENOTFOUND (no such signature), AX_EBADSIG, or AX_EINVAL
 * (the public key is not an ed25519 key).
 */
int ax_e2ee_verify(const json_t *obj, const char *user_id, const char *key_id,
                   const char *public_key_b64) AX_WARN_UNUSED;

/** True when 'a' and 'b' are equal once their top-level "signatures" and "unsigned" are ignored. */
bool ax_e2ee_same_signed_content(const json_t *a, const json_t *b);

/**
 * Checks the shape of cross-signing key 'key' (borrowed): it belongs to
 * 'user_id', lists 'usage', and has exactly one key "ed25519:<public key>"
 * whose value is that 32-byte public key.  Signatures are not checked.
 * On success stores the public key (borrowed from 'key') in '*public_key'
 * when not NULL.  Returns 0 or AX_EINVAL.
 */
int ax_e2ee_xsign_check(const json_t *key, const char *user_id, const char *usage, const char **public_key);

/**
 * Orders two backed-up copies of one room key (KeyBackupData) the spec's
 * way: positive when 'a' is better than 'b', negative when worse, 0 when
 * neither is.
 */
int ax_e2ee_backup_compare(const json_t *a, const json_t *b);

#endif
