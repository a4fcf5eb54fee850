/*
 * hist.c - see hist.h. Bucket index: values below HIST_SUB map linearly;
 * above, the magnitude (position of the top bit) picks a group and the next
 * HIST_SUB_BITS bits below the top bit pick the sub-bucket.
 */
#include "stress/hist.h"

#include <string.h>

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned top = 63u - (unsigned)__builtin_clzll(v);
    unsigned mag = top - HIST_SUB_BITS + 1;
    if (mag >= HIST_MAGS)
        return HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (top - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return mag * HIST_SUB + sub;
}

static uint64_t bucket_upper(unsigned b)
{
    unsigned mag = b / HIST_SUB, sub = b % HIST_SUB;
    if (mag == 0)
        return sub;
    unsigned shift = mag - 1;
    return (((uint64_t)(HIST_SUB + sub + 1)) << shift) - 1;
}

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void hist_add(struct hist *h, uint64_t v)
{
    h->counts[bucket_of(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->n += src->n;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
    if (src->min < dst->min)
        dst->min = src->min;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n)
        rank = h->n - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > rank) {
            if (i == HIST_BUCKETS - 1)
                return h->max; /* the overflow bucket has no upper edge of its own */
            uint64_t up = bucket_upper(i);
            return up > h->max ? h->max : up;
        }
    }
    return h->max;
}
