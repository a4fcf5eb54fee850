/*
 * ratelimit.c - per-address token buckets in a fixed, direct-mapped table.
 *
 * A collision replaces the older entry: at worst an abusive address gets a
 * fresh bucket, never a legitimate one a refused request. The table is small
 * enough (RATELIMIT_ENTRIES_MAX x 32 bytes) to live in cache.
 */
#include "net/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/base.h"
#include "core/hmap.h"

struct rl_entry {
    uint8_t addr[16];
    uint64_t refill_ms; /* when tokens were last topped up */
    double tokens;
};

struct ratelimit {
    pthread_mutex_t lock; /* every ring takes from the same table */
    uint32_t rate;
    uint32_t burst;
    struct rl_entry entries[RATELIMIT_ENTRIES_MAX];
};

static_assert(IS_POW2(RATELIMIT_ENTRIES_MAX), "index is taken with a mask");

struct ratelimit *ratelimit_create(uint32_t rate, uint32_t burst)
{
    TALLY_ASSERT(rate > 0);
    TALLY_ASSERT(burst >= 1);
    struct ratelimit *rl = xcalloc(1, sizeof(*rl));
    rl->rate = rate;
    rl->burst = burst;
    pthread_mutex_init(&rl->lock, NULL);
    return rl;
}

void ratelimit_destroy(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static bool take_locked(struct ratelimit *rl, const uint8_t addr[16], uint64_t now_ms,
                        uint32_t *retry_after_s)
{
    uint64_t h = hmap_hash_bytes(addr, 16);
    struct rl_entry *e = &rl->entries[h & (RATELIMIT_ENTRIES_MAX - 1)];

    if (memcmp(e->addr, addr, 16) != 0 || e->refill_ms == 0) {
        memcpy(e->addr, addr, 16);
        e->refill_ms = now_ms;
        e->tokens = rl->burst;
    }
    if (now_ms > e->refill_ms) {
        e->tokens += (double)(now_ms - e->refill_ms) * rl->rate / 1000.0;
        if (e->tokens > rl->burst)
            e->tokens = rl->burst;
        e->refill_ms = now_ms;
    }
    if (e->tokens >= 1.0) {
        e->tokens -= 1.0;
        return true;
    }
    double wait_s = (1.0 - e->tokens) / rl->rate;
    *retry_after_s = (uint32_t)wait_s + 1;
    return false;
}

bool ratelimit_take(struct ratelimit *rl, const uint8_t addr[16], uint64_t now_ms,
                    uint32_t *retry_after_s)
{
    TALLY_ASSERT(rl != NULL);
    pthread_mutex_lock(&rl->lock);
    bool ok = take_locked(rl, addr, now_ms, retry_after_s);
    pthread_mutex_unlock(&rl->lock);
    return ok;
}
