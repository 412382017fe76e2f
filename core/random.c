/*
 * random.c -- random identifiers (device IDs, key IDs, transaction-free
 * names) from libsodium's CSPRNG.  Exports ax_random_alnum().
 */
#include "core/core.h"

void ax_random_alnum(char *out, size_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i < n; ++i)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    out[n] = '\0';
}
