/*
 * wsplan.c - see wsplan.h.
 */
#include "stress/wsplan.h"

#include <errno.h>

int wsplan_check(const struct wsplan *p)
{
    if (p->clients == 0 || p->ppc == 0 || p->polls == 0 || p->threads == 0)
        return -EINVAL;
    if (p->clients % p->threads != 0)
        return -EINVAL;
    if ((uint64_t)p->clients * p->ppc > UINT32_MAX)
        return -EINVAL;
    return 0;
}

/*
 * Client k is the (k / threads)-th client of thread k % threads; its
 * participants take the next ppc local slots of that thread, and local slot
 * s of thread t is engine index s * threads + t.
 */
uint32_t wsplan_index(const struct wsplan *p, uint32_t k, uint32_t part)
{
    uint32_t local = (k / p->threads) * p->ppc + part;
    return local * p->threads + k % p->threads;
}

void wsplan_owner(const struct wsplan *p, uint32_t i, uint32_t *k, uint32_t *part)
{
    uint32_t local = i / p->threads, t = i % p->threads;
    *k = (local / p->ppc) * p->threads + t;
    *part = local % p->ppc;
}

bool wsplan_has_next(const struct wsplan *p, const struct wsplan_cursor *c)
{
    return c->poll < p->polls;
}

bool wsplan_advance(const struct wsplan *p, struct wsplan_cursor *c)
{
    if (!wsplan_has_next(p, c))
        return false;
    if (++c->part == p->ppc) {
        c->part = 0;
        c->poll++;
    }
    return wsplan_has_next(p, c);
}

bool wsplan_spaced(uint64_t last_ns, uint64_t now_ns)
{
    return last_ns == 0 || now_ns >= last_ns + WSPLAN_GAP_NS;
}
