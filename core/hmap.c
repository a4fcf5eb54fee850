/*
 * hmap.c - open addressing with linear probing.
 *
 * Invariants: the slot count is a power of two; key 0 marks an empty slot;
 * count stays at or below 70% of the slots (grown before an insert would
 * cross it), so a probe always ends at an empty slot; and every key sits
 * between its home slot and the first empty slot after it. Deletion keeps the
 * last invariant by shifting later entries of the same probe run back into
 * the hole, so there are no tombstones and lookups never slow down with churn.
 *
 * Keys are mixed before use because ids are often sequential. String hashes
 * come from hmap_hash_bytes(): SipHash-1-3 with a key drawn at random once
 * per process, so clients cannot choose strings that collide (the values
 * differ between processes: never persist or share them).
 */
#include "core/hmap.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/base.h"

#define HMAP_CAP_MIN 8
#define HMAP_LOAD_NUM 7 /* grow above 7/10 full */
#define HMAP_LOAD_DEN 10
#define HMAP_HUGE_BYTES ((size_t)2 << 20) /* one transparent huge page on x86-64 */

struct hmap_slot {
    uint64_t key; /* 0 = empty */
    void *val;
};

struct hmap {
    struct hmap_slot *slots;
    size_t cap; /* power of two */
    size_t count;
};

/* splitmix64's finaliser: a bijection, so distinct keys stay distinct. */
static uint64_t hmap_mix(uint64_t k)
{
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ULL;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebULL;
    k ^= k >> 31;
    return k;
}

static size_t hmap_home(const struct hmap *h, uint64_t key)
{
    return (size_t)hmap_mix(key) & (h->cap - 1);
}

/*
 * Zeroed slots. A large table (a session's votes: 16 MiB at a million
 * slots) is read at random, so with 4 KiB pages nearly every lookup also
 * misses the TLB, which on a virtual machine costs a two-level page walk;
 * a profile of HTTP votes put a third of the session actor's time in
 * hmap_find. Tables of 2 MiB and more are therefore aligned to and advised
 * for transparent huge pages (when the system allows them; it is only
 * advice).
 */
static struct hmap_slot *hmap_slots_alloc(size_t cap)
{
    size_t bytes = cap * sizeof(struct hmap_slot);
    void *p = NULL;

    if (bytes < HMAP_HUGE_BYTES)
        return xcalloc(cap, sizeof(struct hmap_slot));
    if (posix_memalign(&p, HMAP_HUGE_BYTES, bytes) != 0)
        return xcalloc(cap, sizeof(struct hmap_slot));
    (void)madvise(p, bytes, MADV_HUGEPAGE);
    memset(p, 0, bytes);
    return p;
}

static bool hmap_over_load(size_t count, size_t cap)
{
    return count * HMAP_LOAD_DEN > cap * HMAP_LOAD_NUM;
}

struct hmap *hmap_create(size_t cap_hint)
{
    TALLY_ASSERT(cap_hint < SIZE_MAX / (2 * HMAP_LOAD_DEN));
    size_t cap = HMAP_CAP_MIN;
    while (hmap_over_load(cap_hint, cap))
        cap *= 2;
    struct hmap *h = xcalloc(1, sizeof(*h));
    h->slots = hmap_slots_alloc(cap);
    h->cap = cap;
    TALLY_ASSERT(IS_POW2(h->cap));
    return h;
}

void hmap_destroy(struct hmap *h)
{
    if (h == NULL)
        return;
    free(h->slots);
    free(h);
}

/* The slot holding key, or the empty slot that ends its probe run. */
static size_t hmap_find(const struct hmap *h, uint64_t key)
{
    size_t mask = h->cap - 1;
    size_t i = hmap_home(h, key);
    for (size_t probes = 0; probes < h->cap; probes++) {
        if (h->slots[i].key == key || h->slots[i].key == 0)
            return i;
        i = (i + 1) & mask;
    }
    TALLY_ASSERT(!"hmap has no empty slot"); /* the load limit makes this impossible */
    return 0;
}

static void hmap_grow(struct hmap *h)
{
    struct hmap_slot *old = h->slots;
    size_t old_cap = h->cap;
    TALLY_ASSERT(old_cap < SIZE_MAX / 2 / sizeof(*old));

    h->cap = old_cap * 2;
    h->slots = hmap_slots_alloc(h->cap);
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key == 0)
            continue;
        size_t j = hmap_find(h, old[i].key);
        TALLY_ASSERT(h->slots[j].key == 0);
        h->slots[j] = old[i];
    }
    free(old);
}

void hmap_put(struct hmap *h, uint64_t key, void *val)
{
    TALLY_ASSERT(h != NULL);
    TALLY_ASSERT(key != 0);
    size_t i = hmap_find(h, key);
    if (h->slots[i].key == key) {
        h->slots[i].val = val;
        return;
    }
    if (hmap_over_load(h->count + 1, h->cap)) {
        hmap_grow(h);
        i = hmap_find(h, key);
    }
    TALLY_ASSERT(h->slots[i].key == 0);
    h->slots[i].key = key;
    h->slots[i].val = val;
    h->count++;
}

void *hmap_get(const struct hmap *h, uint64_t key)
{
    TALLY_ASSERT(h != NULL);
    if (key == 0)
        return NULL;
    size_t i = hmap_find(h, key);
    return h->slots[i].key == key ? h->slots[i].val : NULL;
}

void *hmap_del(struct hmap *h, uint64_t key)
{
    TALLY_ASSERT(h != NULL);
    if (key == 0)
        return NULL;
    size_t mask = h->cap - 1;
    size_t hole = hmap_find(h, key);
    if (h->slots[hole].key != key)
        return NULL;
    void *val = h->slots[hole].val;

    /* Backward shift: pull back each later entry of the run that may legally
     * sit in the hole (its probe distance reaches back at least that far). */
    for (size_t j = (hole + 1) & mask; h->slots[j].key != 0; j = (j + 1) & mask) {
        size_t dist = (j - hmap_home(h, h->slots[j].key)) & mask;
        size_t gap = (j - hole) & mask;
        if (dist >= gap) {
            h->slots[hole] = h->slots[j];
            hole = j;
        }
    }
    h->slots[hole].key = 0;
    h->slots[hole].val = NULL;
    h->count--;
    return val;
}

size_t hmap_count(const struct hmap *h)
{
    TALLY_ASSERT(h != NULL);
    return h->count;
}

void hmap_each(const struct hmap *h, void (*fn)(uint64_t key, void *val, void *arg), void *arg)
{
    TALLY_ASSERT(h != NULL);
    TALLY_ASSERT(fn != NULL);
    for (size_t i = 0; i < h->cap; i++) {
        if (h->slots[i].key != 0)
            fn(h->slots[i].key, h->slots[i].val, arg);
    }
}

/* ---- SipHash (1-3) -------------------------------------------------------- */

static uint64_t sip_key[2];
static pthread_once_t sip_key_once = PTHREAD_ONCE_INIT;

static void sip_key_init(void)
{
    ssize_t n = getrandom(sip_key, sizeof(sip_key), 0);
    if (n != (ssize_t)sizeof(sip_key)) {
        /* No entropy source: still vary per process, though guessable. */
        sip_key[0] = hmap_mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
        sip_key[1] = hmap_mix(clock_now_ns());
    }
}

#define SIP_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = SIP_ROTL(v[1], 13);
    v[1] ^= v[0];
    v[0] = SIP_ROTL(v[0], 32);
    v[2] += v[3];
    v[3] = SIP_ROTL(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = SIP_ROTL(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = SIP_ROTL(v[1], 17);
    v[1] ^= v[2];
    v[2] = SIP_ROTL(v[2], 32);
}

static uint64_t sip_load_le(const unsigned char *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

/* SipHash with c compression and d finalisation rounds (1 and 3 here). */
static uint64_t siphash(const uint64_t key[2], const unsigned char *p, size_t n, int c, int d)
{
    uint64_t v[4] = {key[0] ^ 0x736f6d6570736575ULL, key[1] ^ 0x646f72616e646f6dULL,
                     key[0] ^ 0x6c7967656e657261ULL, key[1] ^ 0x7465646279746573ULL};
    size_t full = n & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = sip_load_le(p + i, 8);
        v[3] ^= m;
        for (int r = 0; r < c; r++)
            sip_round(v);
        v[0] ^= m;
    }
    uint64_t last = ((uint64_t)n << 56) | sip_load_le(p + full, n - full);
    v[3] ^= last;
    for (int r = 0; r < c; r++)
        sip_round(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for (int r = 0; r < d; r++)
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

uint64_t hmap_hash_bytes(const void *p, size_t n)
{
    TALLY_ASSERT(p != NULL || n == 0);
    pthread_once(&sip_key_once, sip_key_init);
    uint64_t h = siphash(sip_key, n > 0 ? p : (const void *)"", n, 1, 3);
    return h != 0 ? h : 1; /* 0 is the empty-slot key */
}
