/*
 * ratelimit.h - token buckets keyed by client address, for the join rate
 * (CONTRACT section 4: --join-rate per second per address, burst of 5 s).
 *
 * One table per network thread, no locks: a client's connections may land on
 * several threads, so the effective limit is at most rings x rate; the burst
 * that matters (a stadium behind one NAT address opening many connections)
 * spreads evenly, which keeps the per-address total close to the limit.
 * The table is bounded; the least recently refilled entries are recycled.
 */
#ifndef TALLY_NET_RATELIMIT_H
#define TALLY_NET_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define RATELIMIT_ENTRIES_MAX 4096

struct ratelimit;

/** rate per second, burst in tokens. */
struct ratelimit *ratelimit_create(uint32_t rate, uint32_t burst);
void ratelimit_destroy(struct ratelimit *rl);
/**
 * Takes one token for addr (16 bytes, IPv4 mapped into IPv6) at now_ms.
 * Returns true when allowed; otherwise false and *retry_after_s is set.
 */
bool ratelimit_take(struct ratelimit *rl, const uint8_t addr[16], uint64_t now_ms,
                    uint32_t *retry_after_s);

#endif
