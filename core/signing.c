/*
 * signing.c -- ed25519 signing of JSON (spec appendices, "Signing JSON"),
 * content hashes, reference hashes and event IDs ("Signing events",
 * "Calculating the reference hash for an event"), and the server's own
 * signing key file.
 */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ax_signing_key_from_seed(ax_signing_key_t *key, const char *key_id, const uint8_t seed[crypto_sign_SEEDBYTES])
{
    snprintf(key->key_id, sizeof(key->key_id), "%s", key_id);
    crypto_sign_seed_keypair(key->public_key, key->secret_key, seed);
}

void ax_signing_key_dispose(ax_signing_key_t *key)
{
    sodium_memzero(key->secret_key, sizeof(key->secret_key));
}

/* "ed25519:" followed by 1-60 characters of [A-Za-z0-9_] (spec: key IDs). */
static bool valid_key_version(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > AX_KEY_ID_MAX - 9)
        return false;
    for (; *v; ++v)
        if (!((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') || *v == '_'))
            return false;
    return true;
}

int ax_signing_key_generate(const char *path, ax_signing_key_t *key, char *err, size_t errlen)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    char line[256];
    int rc = 0;
    char version[7];
    ax_random_alnum(version, 6);
    randombytes_buf(seed, sizeof(seed));
    char b64[AX_B64_LEN(crypto_sign_SEEDBYTES) + 1];
    ax_b64_encode(b64, seed, sizeof(seed), false);
    int len = snprintf(line, sizeof(line), "ed25519 a_%s %s\n", version, b64);
    sodium_memzero(b64, sizeof(b64));
    /* written 0600 under a temporary name and renamed: the secret is never exposed, and a
     * crash leaves either the old file or the new one */
    char *tmp = ax_asprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, line, (size_t)len) != len || fsync(fd) != 0 || close(fd) != 0 ||
        (fd = -1, rename(tmp, path) != 0)) {
        snprintf(err, errlen, "signing key %s: cannot write: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        rc = AX_EIO;
    } else {
        char key_id[32];
        snprintf(key_id, sizeof(key_id), "ed25519:a_%s", version);
        ax_signing_key_from_seed(key, key_id, seed);
        ax_log(AX_LOG_INFO, "generated signing key %s in %s", key_id, path);
    }
    free(tmp);
    sodium_memzero(line, sizeof(line));
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

int ax_signing_key_load_or_create(const char *path, ax_signing_key_t *key, char *err, size_t errlen)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    char line[256];
    int rc = 0;
    FILE *fp = fopen(path, "r");
    if (fp != NULL) {
        char alg[16], version[AX_KEY_ID_MAX], b64[128];
        size_t n = 0;
        struct stat st;
        if (fstat(fileno(fp), &st) == 0 && (st.st_mode & 077) != 0)
            ax_log(AX_LOG_WARN, "signing key %s is readable by others (mode %03o); chmod 600 it", path,
                   (unsigned)(st.st_mode & 0777));
        if (fgets(line, sizeof(line), fp) == NULL || sscanf(line, "%15s %63s %127s", alg, version, b64) != 3 ||
            strcmp(alg, "ed25519") != 0 || !valid_key_version(version) ||
            ax_b64_decode(seed, sizeof(seed), &n, b64, strlen(b64), false) != 0 || n != sizeof(seed)) {
            snprintf(err, errlen, "signing key %s: expected one line 'ed25519 <version> <base64 seed>'", path);
            rc = AX_EINVAL;
        } else {
            char key_id[AX_KEY_ID_MAX + 8];
            snprintf(key_id, sizeof(key_id), "ed25519:%s", version);
            ax_signing_key_from_seed(key, key_id, seed);
        }
        sodium_memzero(b64, sizeof(b64));
        fclose(fp);
        goto out;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "signing key %s: %s", path, strerror(errno));
        rc = AX_EIO;
        goto out;
    }
    /* first start: make a key */
    rc = ax_signing_key_generate(path, key, err, errlen);

out:
    sodium_memzero(line, sizeof(line));
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

/* Canonical JSON of 'obj' without the top-level keys in 'drop'. */
static int canonical_without(const json_t *obj, const char *const *drop, ax_buf_t *out)
{
    if (!json_is_object(obj))
        return AX_EINVAL;
    json_t *copy = json_copy((json_t *)obj); /* shallow: only the top level changes */
    for (; *drop != NULL; ++drop)
        json_object_del(copy, *drop);
    int rc = ax_cjson_encode(copy, out);
    json_decref(copy);
    return rc;
}

static const char *const sig_drop[] = {"signatures", "unsigned", NULL};

/* Signs 'obj' as ax_sign_json(); with 'ref', also SHA-256 of the very bytes signed. */
static int sign_json(json_t *obj, const char *server_name, const ax_signing_key_t *key,
                     uint8_t ref[crypto_hash_sha256_BYTES])
{
    ax_buf_t buf = AX_BUF_INIT;
    int rc = canonical_without(obj, sig_drop, &buf);
    if (rc != 0)
        goto out;
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const uint8_t *)buf.base, buf.len, key->secret_key);
    if (ref != NULL)
        crypto_hash_sha256(ref, (const uint8_t *)buf.base, buf.len);
    char b64[AX_B64_LEN(crypto_sign_BYTES) + 1];
    ax_b64_encode(b64, sig, sizeof(sig), false);

    json_t *sigs = json_object_get(obj, "signatures");
    if (!json_is_object(sigs)) {
        sigs = json_object();
        json_object_set_new(obj, "signatures", sigs);
    }
    json_t *mine = json_object_get(sigs, server_name);
    if (!json_is_object(mine)) {
        mine = json_object();
        json_object_set_new(sigs, server_name, mine);
    }
    json_object_set_new(mine, key->key_id, json_string(b64));
out:
    ax_buf_dispose(&buf);
    return rc;
}

int ax_sign_json(json_t *obj, const char *server_name, const ax_signing_key_t *key)
{
    return sign_json(obj, server_name, key, NULL);
}

int ax_verify_json(const json_t *obj, const char *server_name, const char *key_id,
                   const uint8_t public_key[crypto_sign_PUBLICKEYBYTES])
{
    json_t *sigs = json_object_get(obj, "signatures");
    json_t *mine = json_is_object(sigs) ? json_object_get(sigs, server_name) : NULL;
    json_t *sigval = json_is_object(mine) ? json_object_get(mine, key_id) : NULL;
    if (!json_is_string(sigval))
        return AX_ENOTFOUND;
    uint8_t sig[crypto_sign_BYTES + 4];
    size_t siglen;
    if (ax_b64_decode(sig, sizeof(sig), &siglen, json_string_value(sigval), json_string_length(sigval), false) != 0 ||
        siglen != crypto_sign_BYTES)
        return AX_EBADSIG;
    ax_buf_t buf = AX_BUF_INIT;
    int rc = canonical_without(obj, sig_drop, &buf);
    if (rc == 0 && crypto_sign_verify_detached(sig, (const uint8_t *)buf.base, buf.len, public_key) != 0)
        rc = AX_EBADSIG;
    ax_buf_dispose(&buf);
    return rc == AX_EINVAL ? AX_EBADSIG : rc;
}

int ax_event_content_hash(const json_t *event, uint8_t out[crypto_hash_sha256_BYTES])
{
    static const char *const drop[] = {"signatures", "unsigned", "hashes", NULL};
    ax_buf_t buf = AX_BUF_INIT;
    int rc = canonical_without(event, drop, &buf);
    if (rc == 0)
        crypto_hash_sha256(out, (const uint8_t *)buf.base, buf.len);
    ax_buf_dispose(&buf);
    return rc;
}

int ax_event_reference_hash(const json_t *event, const ax_room_version_t *rv, uint8_t out[crypto_hash_sha256_BYTES])
{
    json_t *redacted = ax_event_redact(event, rv);
    ax_buf_t buf = AX_BUF_INIT;
    int rc = canonical_without(redacted, sig_drop, &buf);
    if (rc == 0)
        crypto_hash_sha256(out, (const uint8_t *)buf.base, buf.len);
    ax_buf_dispose(&buf);
    json_decref(redacted);
    return rc;
}

int ax_event_compute_id(const json_t *event, const ax_room_version_t *rv, char *out, size_t cap)
{
    if (rv->event_id_format == AX_EVENT_ID_V1 || cap < AX_B64_LEN(crypto_hash_sha256_BYTES) + 2)
        return AX_EINVAL;
    uint8_t hash[crypto_hash_sha256_BYTES];
    int rc = ax_event_reference_hash(event, rv, hash);
    if (rc != 0)
        return rc;
    out[0] = '$';
    ax_b64_encode(out + 1, hash, sizeof(hash), rv->event_id_format == AX_EVENT_ID_V4);
    return 0;
}

/* ax_event_cosign(); with 'ref', also the reference hash: the bytes signed (the redacted
 * event without "signatures" and "unsigned") are exactly the ones it hashes. */
static int cosign(json_t *event, const ax_room_version_t *rv, const char *server_name, const ax_signing_key_t *key,
                  uint8_t ref[crypto_hash_sha256_BYTES])
{
    int rc;
    json_t *redacted = ax_event_redact(event, rv);
    rc = sign_json(redacted, server_name, key, ref);
    if (rc == 0) {
        json_t *sigs = json_object_get(redacted, "signatures");
        json_t *mine = json_object_get(sigs, server_name);
        json_t *esigs = json_object_get(event, "signatures");
        if (!json_is_object(esigs)) {
            esigs = json_object();
            json_object_set_new(event, "signatures", esigs);
        }
        json_object_set(esigs, server_name, mine);
    }
    json_decref(redacted);
    return rc;
}

static int hash_and_cosign(json_t *event, const ax_room_version_t *rv, const char *server_name,
                           const ax_signing_key_t *key, uint8_t ref[crypto_hash_sha256_BYTES])
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    int rc = ax_event_content_hash(event, hash);
    if (rc != 0)
        return rc;
    char b64[AX_B64_LEN(crypto_hash_sha256_BYTES) + 1];
    ax_b64_encode(b64, hash, sizeof(hash), false);
    json_object_set_new(event, "hashes", json_pack("{s:s}", "sha256", b64));
    return cosign(event, rv, server_name, key, ref);
}

int ax_event_sign(json_t *event, const ax_room_version_t *rv, const char *server_name, const ax_signing_key_t *key)
{
    return hash_and_cosign(event, rv, server_name, key, NULL);
}

int ax_event_sign_id(json_t *event, const ax_room_version_t *rv, const char *server_name, const ax_signing_key_t *key,
                     char *id, size_t cap)
{
    uint8_t ref[crypto_hash_sha256_BYTES];
    bool derived = rv->event_id_format != AX_EVENT_ID_V1 && cap >= AX_B64_LEN(crypto_hash_sha256_BYTES) + 2;
    int rc = hash_and_cosign(event, rv, server_name, key, derived ? ref : NULL);
    if (cap > 0)
        id[0] = '\0';
    if (rc == 0 && derived) {
        id[0] = '$';
        ax_b64_encode(id + 1, ref, sizeof(ref), rv->event_id_format == AX_EVENT_ID_V4);
    }
    return rc;
}

int ax_event_cosign(json_t *event, const ax_room_version_t *rv, const char *server_name, const ax_signing_key_t *key)
{
    return cosign(event, rv, server_name, key, NULL);
}
