/*
 * ratelimit.h - token buckets keyed by client address, for the join rate
 * (CONTRACT section 4: --join-rate per second per address, burst of 5 s).
 *
 * One table for the whole server, behind a lock: a client's connections land
 * on any ring, and the limit is per address, not per ring. Only joins take
 * it (thousands a second at most, each a short critical section), so the
 * lock costs nothing next to the join itself. The table is bounded; an entry
 * is recycled when another address maps to its slot.
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
