/*
 * wsplan.h - the vote plan of `tally-stress wsvotes`: which (participant,
 * poll) pair a WebSocket client votes next, which engine client index each
 * participant's connection has, and the spacing that keeps every
 * participant under tallyd's limit of 10 votes a second.
 *
 * Client k (0..clients-1) acts for participants 0..ppc-1 of its own
 * session, each over its own WebSocket; it votes with participant 0, 1, ...,
 * ppc-1 on its session's poll 0, then again on poll 1, and so on, so every
 * vote is a new (participant, poll) pair and the session has one or two
 * polls with fresh votes at a time (few `results` per subscriber). The
 * engine runs client index i on thread i % threads and the client must send
 * from that thread, so all of client k's connections get indexes on thread
 * k % threads. Pure arithmetic: no allocation, no I/O.
 */
#ifndef TALLY_STRESS_WSPLAN_H
#define TALLY_STRESS_WSPLAN_H

#include <stdbool.h>
#include <stdint.h>

#define WSPLAN_GAP_NS 105000000ull /* one vote per participant per 105 ms: under 10/s */

/* The layout: clients x ppc connections on `threads` engine threads. */
struct wsplan {
    uint32_t clients, ppc, polls;
    uint32_t threads; /* clients must be a multiple of it */
};

/* Where a client is in its plan. */
struct wsplan_cursor {
    uint32_t part; /* next participant, 0..ppc-1 */
    uint32_t poll; /* next poll of its session, 0..polls-1; polls when done */
};

/** 0, or -EINVAL when a count is 0 or clients is not a multiple of threads. */
int wsplan_check(const struct wsplan *p);

/** The engine index of participant part of client k. */
uint32_t wsplan_index(const struct wsplan *p, uint32_t k, uint32_t part);

/** The client and participant of engine index i (< clients * ppc). */
void wsplan_owner(const struct wsplan *p, uint32_t i, uint32_t *k, uint32_t *part);

/**
 * Steps c past its current pair: next participant, or the next poll after
 * the last one. False when the client has voted on every poll.
 */
bool wsplan_advance(const struct wsplan *p, struct wsplan_cursor *c);

/** Whether c has a pair left. */
bool wsplan_has_next(const struct wsplan *p, const struct wsplan_cursor *c);

/** Whether a participant whose last vote went out at last_ns (0: none) may vote at now_ns. */
bool wsplan_spaced(uint64_t last_ns, uint64_t now_ns);

#endif
