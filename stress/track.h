/*
 * track.h - the pure bookkeeping of the tally-stress scenarios, kept apart
 * from I/O so it can be tested: reading fields out of the server's JSON
 * messages without a full parse (each message is read once per subscriber,
 * hundreds of thousands of times a second), following a connection's `seq`
 * to count gaps and repeats, spreading votes over a window, sampling which
 * vote a `results` message is charged to, and the capacity finder's
 * stepping and stop rule.
 *
 * No allocation, no globals: callable from any thread.
 */
#ifndef TALLY_STRESS_TRACK_H
#define TALLY_STRESS_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACK_TYPE_MAX 32 /* longest message type kept, NUL included */

/**
 * Copies the value of the first "type":"..." in msg into out (cap bytes).
 * Returns its length, or -1 when absent or longer than cap - 1.
 */
int track_msg_type(const uint8_t *msg, size_t len, char *out, size_t cap);

/**
 * The unsigned decimal after the first "key": in msg (key without quotes).
 * False when absent or not a number.
 */
bool track_msg_u64(const uint8_t *msg, size_t len, const char *key, uint64_t *out);

/** True when the first "type" of msg equals type. */
bool track_msg_is(const uint8_t *msg, size_t len, const char *type);

/* One connection's sequenced events: the last seq seen and what went wrong. */
struct track_seq {
    uint64_t last;
    uint64_t gaps; /* sequence numbers skipped */
    uint64_t dups; /* events at or below the last one seen */
};

/** Starts following after seq `from` (the hello's seq, or a resume point). */
void track_seq_init(struct track_seq *s, uint64_t from);

/** Records a sequenced event; returns true when it was the next one expected. */
bool track_seq_see(struct track_seq *s, uint64_t seq);

/**
 * When the index-th of n votes is due, spread evenly over window_ns from
 * t0_ns (index 0 at t0). n >= 1.
 */
uint64_t track_spread_due(uint64_t t0_ns, uint64_t window_ns, uint64_t index, uint64_t n);

/**
 * A results message took version from last_seen to version (> last_seen):
 * the vote it is charged to, one of last_seen + 1 .. version picked by rnd,
 * so every vote it newly reflects is equally likely to be sampled.
 */
uint64_t track_sample_version(uint64_t last_seen, uint64_t version, uint64_t rnd);

/** xorshift64: a cheap per-thread pseudo-random step; *state must start nonzero. */
uint64_t track_rand(uint64_t *state);

/* The capacity finder's limits and its verdict on one step. */
struct track_limits {
    double p95_ms;     /* a step passes while its p95 is at most this */
    double error_rate; /* and its errors / attempts at most this */
};

/**
 * Whether a step passes both limits. A step with no delivery at all never
 * passes (nothing was measured).
 */
bool track_step_passes(const struct track_limits *l, double p95_ms, double error_rate,
                       uint64_t delivered);

/**
 * The next N after `current`: current + step when step > 0, else current
 * times factor_pct / 100 (at least current + 1); capped at max. Returns 0
 * when current is already max.
 */
uint32_t track_next_n(uint32_t current, uint32_t step, uint32_t factor_pct, uint32_t max);

#endif
