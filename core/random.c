/*
 * random.c -- random identifiers (device IDs, key IDs) and secret tokens
 * (access, refresh, login) from libsodium's CSPRNG.  Exports
 * ax_random_alnum(), ax_token_generate() and ax_token_hash().
 */
#include "core/core.h"

#include <string.h>

void ax_random_alnum(char *out, size_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i < n; ++i)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    out[n] = '\0';
}

void ax_token_generate(const char *prefix, char *out, uint8_t hash[32])
{
    uint8_t raw[32];
    randombytes_buf(raw, sizeof(raw));
    memcpy(out, prefix, 4);
    ax_b64_encode(out + 4, raw, sizeof(raw), true);
    sodium_memzero(raw, sizeof(raw));
    ax_token_hash(out, hash);
}

void ax_token_hash(const char *token, uint8_t hash[32])
{
    crypto_hash_sha256(hash, (const uint8_t *)token, strlen(token));
}
