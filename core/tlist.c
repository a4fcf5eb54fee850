/*
 * tlist.c - fixed-duration timeout lists.
 *
 * Invariant: deadlines never decrease from head to tail. Appending keeps it
 * because every node of a list gets now + duration_ms; a caller whose now_ms
 * went backwards (a cached value older than the tail's) gets the tail's
 * deadline instead, so the order still holds and a timer fires at worst a
 * little late, never out of order.
 */
#include "core/tlist.h"

#include <stddef.h>

#include "core/base.h"

void tlist_init(struct tlist *l, uint64_t duration_ms)
{
    TALLY_ASSERT(l != NULL);
    l->_head._prev = &l->_head;
    l->_head._next = &l->_head;
    l->_head._deadline_ms = 0;
    l->duration_ms = duration_ms;
}

void tlist_node_init(struct tlist_node *n)
{
    TALLY_ASSERT(n != NULL);
    n->_prev = NULL;
    n->_next = NULL;
    n->_deadline_ms = 0;
}

bool tlist_armed(const struct tlist_node *n)
{
    TALLY_ASSERT(n != NULL);
    TALLY_ASSERT((n->_next == NULL) == (n->_prev == NULL));
    return n->_next != NULL;
}

void tlist_disarm(struct tlist_node *n)
{
    if (!tlist_armed(n))
        return;
    TALLY_ASSERT(n->_prev->_next == n);
    TALLY_ASSERT(n->_next->_prev == n);
    n->_prev->_next = n->_next;
    n->_next->_prev = n->_prev;
    n->_prev = NULL;
    n->_next = NULL;
}

void tlist_arm(struct tlist *l, struct tlist_node *n, uint64_t now_ms)
{
    TALLY_ASSERT(l != NULL);
    TALLY_ASSERT(n != &l->_head);
    tlist_disarm(n);

    struct tlist_node *tail = l->_head._prev;
    uint64_t deadline = now_ms + l->duration_ms;
    if (tail != &l->_head && deadline < tail->_deadline_ms)
        deadline = tail->_deadline_ms;
    n->_deadline_ms = deadline;
    n->_prev = tail;
    n->_next = &l->_head;
    tail->_next = n;
    l->_head._prev = n;
}

struct tlist_node *tlist_pop_expired(struct tlist *l, uint64_t now_ms)
{
    TALLY_ASSERT(l != NULL);
    struct tlist_node *n = l->_head._next;
    if (n == &l->_head || n->_deadline_ms > now_ms)
        return NULL;
    tlist_disarm(n);
    return n;
}
