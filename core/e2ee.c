/*
 * e2ee.c -- the checks the server makes on end-to-end encryption material
 * it stores without understanding (spec: Client-Server API "End-to-End
 * Encryption", "Cross-signing", "Server-side key backups"): signatures by
 * device and cross-signing keys, the shape of cross-signing keys, "same
 * key, other signatures", and which of two backed-up copies of a room key
 * is the better one.
 */
#include "core/core.h"

#include <string.h>

int ax_e2ee_split_key_id(const char *s, char *algorithm, size_t alen, char *id, size_t idlen)
{
    const char *colon = strchr(s, ':');
    /* exactly one colon with something on both sides, as Synapse requires of "<algorithm>:<key_id>" */
    if (colon == NULL || colon == s || colon[1] == '\0' || strchr(colon + 1, ':') != NULL)
        return AX_EINVAL;
    size_t al = (size_t)(colon - s), il = strlen(colon + 1);
    if (al >= alen || il >= idlen)
        return AX_EINVAL;
    memcpy(algorithm, s, al);
    algorithm[al] = '\0';
    memcpy(id, colon + 1, il + 1);
    return 0;
}

int ax_e2ee_decode_ed25519(const char *b64, uint8_t out[crypto_sign_PUBLICKEYBYTES])
{
    uint8_t buf[crypto_sign_PUBLICKEYBYTES + 4];
    size_t n;
    if (b64 == NULL || ax_b64_decode(buf, sizeof(buf), &n, b64, strlen(b64), false) != 0 ||
        n != crypto_sign_PUBLICKEYBYTES)
        return AX_EINVAL;
    memcpy(out, buf, crypto_sign_PUBLICKEYBYTES);
    return 0;
}

int ax_e2ee_verify(const json_t *obj, const char *user_id, const char *key_id, const char *public_key_b64)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    if (ax_e2ee_decode_ed25519(public_key_b64, pk) != 0)
        return AX_EINVAL;
    return ax_verify_json(obj, user_id, key_id, pk);
}

bool ax_e2ee_same_signed_content(const json_t *a, const json_t *b)
{
    if (!json_is_object(a) || !json_is_object(b))
        return json_equal((json_t *)a, (json_t *)b);
    json_t *x = json_copy((json_t *)a), *y = json_copy((json_t *)b);
    static const char *const drop[] = {"signatures", "unsigned"};
    for (size_t i = 0; i < AX_ARRAY_SIZE(drop); ++i) {
        json_object_del(x, drop[i]);
        json_object_del(y, drop[i]);
    }
    bool same = json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return same;
}

int ax_e2ee_xsign_check(const json_t *key, const char *user_id, const char *usage, const char **public_key)
{
    if (!json_is_object(key) || !ax_streq(json_string_value(json_object_get(key, "user_id")), user_id))
        return AX_EINVAL;
    json_t *usages = json_object_get(key, "usage");
    bool has_usage = false;
    size_t i;
    json_t *u;
    if (!json_is_array(usages))
        return AX_EINVAL;
    json_array_foreach(usages, i, u)
    {
        if (!json_is_string(u))
            return AX_EINVAL;
        has_usage |= strcmp(json_string_value(u), usage) == 0;
    }
    json_t *keys = json_object_get(key, "keys");
    if (!has_usage || !json_is_object(keys) || json_object_size(keys) != 1)
        return AX_EINVAL;
    json_t *sigs = json_object_get(key, "signatures");
    if (sigs != NULL && !json_is_object(sigs))
        return AX_EINVAL;
    /* the one entry is "ed25519:<public key>": <public key> */
    const char *id = json_object_iter_key(json_object_iter(keys));
    const char *value = json_string_value(json_object_get(keys, id));
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    if (value == NULL || strncmp(id, "ed25519:", 8) != 0 || strcmp(id + 8, value) != 0 ||
        ax_e2ee_decode_ed25519(value, pk) != 0)
        return AX_EINVAL;
    if (public_key != NULL)
        *public_key = value;
    return 0;
}

int ax_e2ee_backup_compare(const json_t *a, const json_t *b)
{
    /* spec, "Server-side key backups": is_verified (true is better), then a lower
     * first_message_index, then a lower forwarded_count */
    bool va = json_is_true(json_object_get(a, "is_verified")), vb = json_is_true(json_object_get(b, "is_verified"));
    if (va != vb)
        return va ? 1 : -1;
    json_int_t fa = json_integer_value(json_object_get(a, "first_message_index"));
    json_int_t fb = json_integer_value(json_object_get(b, "first_message_index"));
    if (fa != fb)
        return fa < fb ? 1 : -1;
    json_int_t ca = json_integer_value(json_object_get(a, "forwarded_count"));
    json_int_t cb = json_integer_value(json_object_get(b, "forwarded_count"));
    if (ca != cb)
        return ca < cb ? 1 : -1;
    return 0;
}
