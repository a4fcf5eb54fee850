/*
 * tlist.h - fixed-duration timeouts in O(1).
 *
 * Every node in one list has the same duration, so the list is ordered by
 * deadline just by appending: arm appends, disarm unlinks, expire pops from
 * the head. Intrusive; the owner thread only. Used for the 10 s request-head
 * timeout and the WebSocket idle timeout.
 */
#ifndef TALLY_CORE_TLIST_H
#define TALLY_CORE_TLIST_H

#include <stdbool.h>
#include <stdint.h>

struct tlist_node {
    struct tlist_node *_prev, *_next;
    uint64_t _deadline_ms;
};

struct tlist {
    struct tlist_node _head; /* sentinel */
    uint64_t duration_ms;
};

/** Initialises an empty list whose timers all last duration_ms. */
void tlist_init(struct tlist *l, uint64_t duration_ms);
/** Initialises a node as not armed. */
void tlist_node_init(struct tlist_node *n);
/** (Re)arms n to fire duration_ms after now_ms; unlinks it first if armed. */
void tlist_arm(struct tlist *l, struct tlist_node *n, uint64_t now_ms);
/** Unlinks n if armed; safe on an unarmed node. */
void tlist_disarm(struct tlist_node *n);
/** true while n is in a list. */
bool tlist_armed(const struct tlist_node *n);
/** Pops and returns the first node whose deadline is <= now_ms, or NULL. */
struct tlist_node *tlist_pop_expired(struct tlist *l, uint64_t now_ms);

#endif
