/*
 * ratelimit.c -- token-bucket rate limits keyed by a string (a client IP),
 * for login and registration.  Exports ax_ratelimit_*() and
 * ax_req_ratelimit_or_reply().
 *
 * Buckets live in a fixed table (4-way set-associative, keyed with a secret
 * SipHash key so clients cannot aim collisions), so memory stays bounded
 * whatever the number of clients; an evicted bucket only forgets a client
 * that has been quiet the longest.
 */
#include "server/server.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SETS    2048
#define WAYS    4
#define KEY_MAX 64

typedef struct st_bucket_t {
    char key[KEY_MAX];
    double tokens;
    uint64_t last_ms;
} bucket_t;

struct st_ax_ratelimit_t {
    double per_ms;
    double burst;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    pthread_mutex_t mutex;
    bucket_t buckets[SETS][WAYS];
};

ax_ratelimit_t *ax_ratelimit_new(double per_second, double burst)
{
    ax_ratelimit_t *rl = ax_calloc(1, sizeof(*rl));
    rl->per_ms = per_second / 1000.0;
    rl->burst = burst;
    crypto_shorthash_keygen(rl->hash_key);
    pthread_mutex_init(&rl->mutex, NULL);
    return rl;
}

void ax_ratelimit_free(ax_ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->mutex);
    free(rl);
}

uint64_t ax_ratelimit_take(ax_ratelimit_t *rl, const char *key, uint64_t now_ms)
{
    uint8_t h[crypto_shorthash_BYTES];
    size_t klen = strnlen(key, KEY_MAX - 1);
    crypto_shorthash(h, (const uint8_t *)key, klen, rl->hash_key);
    uint64_t hv;
    memcpy(&hv, h, sizeof(hv));
    bucket_t *set = rl->buckets[hv % SETS];

    pthread_mutex_lock(&rl->mutex);
    bucket_t *b = NULL, *oldest = &set[0];
    for (int i = 0; i < WAYS; ++i) {
        if (strncmp(set[i].key, key, KEY_MAX - 1) == 0 && set[i].key[0] != '\0') {
            b = &set[i];
            break;
        }
        if (set[i].last_ms < oldest->last_ms)
            oldest = &set[i];
    }
    if (b == NULL) {
        b = oldest;
        memcpy(b->key, key, klen);
        b->key[klen] = '\0';
        b->tokens = rl->burst;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens = fmin(rl->burst, b->tokens + (double)(now_ms - b->last_ms) * rl->per_ms);
        b->last_ms = now_ms;
    }
    uint64_t wait = 0;
    if (b->tokens >= 1.0)
        b->tokens -= 1.0;
    else
        wait = (uint64_t)ceil((1.0 - b->tokens) / rl->per_ms);
    pthread_mutex_unlock(&rl->mutex);
    return wait;
}

int ax_req_ratelimit_or_reply(ax_req_t *r, ax_ratelimit_t *rl)
{
    uint64_t wait = ax_ratelimit_take(rl, ax_req_client_ip(r), ax_now_ms());
    if (wait == 0)
        return 0;
    ax_reply_limit_exceeded(r, wait);
    return -1;
}
