/*
 * hist.h - a log-linear latency histogram (HDR-style): values in
 * nanoseconds, 2^HIST_SUB_BITS linear sub-buckets per power of two, so any
 * percentile is exact to within 1/2^HIST_SUB_BITS (about 3%). Fixed size, no
 * allocation; one per thread, merged at the end.
 */
#ifndef TALLY_STRESS_HIST_H
#define TALLY_STRESS_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAGS 40 /* up to 2^40 ns, about 18 minutes */
#define HIST_BUCKETS (HIST_MAGS * HIST_SUB)

struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t n;
    uint64_t max;
    uint64_t min;
    double sum;
};

/** Empties h. */
void hist_init(struct hist *h);
/** Records one value (ns). */
void hist_add(struct hist *h, uint64_t v);
/** Adds every value of src into dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/** The value at quantile q (0..1): the upper edge of its bucket, at most max. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
