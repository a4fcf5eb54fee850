/*
 * pace.c - results pacing; see pace.h. Per ring, the polls whose results
 * were offered while a hold was on (bounded by PACE_POLLS_MAX): a list to
 * walk, a map to find one by poll id, and the earliest time anything held
 * is due, so the check after every loop turn costs nothing until then.
 */
#include "net/pace.h"

#include <stdlib.h>

#include "core/base.h"
#include "core/hmap.h"

#define PACE_SWEEP_MS 1000 /* how often quiet polls are looked for */

struct pace_poll {
    struct pace_poll *next;
    int64_t session_id, poll_id;
    uint64_t last_ms;       /* this poll's results last went out on this ring */
    struct stream_msg *msg; /* the newest one waiting, or NULL */
};

struct pace {
    struct pace_poll *polls;
    unsigned n;
    unsigned held;          /* polls with a message waiting */
    struct hmap *by_poll;   /* poll id -> struct pace_poll */
    uint64_t next_due_ms;   /* nothing held is due before; 0: look again */
    uint64_t next_sweep_ms; /* next look for quiet polls */
};

struct pace *pace_create(void)
{
    struct pace *p = xcalloc(1, sizeof(struct pace));
    p->by_poll = hmap_create(PACE_POLLS_MAX);
    return p;
}

void pace_destroy(struct pace *p)
{
    if (p == NULL)
        return;
    while (p->polls) {
        struct pace_poll *pp = p->polls;
        p->polls = pp->next;
        if (pp->msg)
            stream_msg_unref(pp->msg);
        free(pp);
    }
    hmap_destroy(p->by_poll);
    free(p);
}

uint32_t pace_next_hold_ms(uint32_t hold_ms, double busy)
{
    TALLY_ASSERT(hold_ms <= PACE_HOLD_MS_MAX);
    if (busy > PACE_BUSY_HIGH) {
        if (hold_ms == 0)
            return PACE_HOLD_MS_MIN;
        return 2 * hold_ms < PACE_HOLD_MS_MAX ? 2 * hold_ms : PACE_HOLD_MS_MAX;
    }
    if (busy < PACE_BUSY_LOW)
        return hold_ms / 2 < PACE_HOLD_MS_MIN / 2 ? 0 : hold_ms / 2;
    return hold_ms;
}

bool pace_offer(struct pace *p, struct stream_msg *m, uint32_t hold_ms, uint64_t now_ms)
{
    TALLY_ASSERT(m != NULL && m->kind == STREAM_RESULTS);
    TALLY_ASSERT(m->poll_id > 0); /* poll ids start at 1: also the map's key */
    if (hold_ms == 0)
        return false;
    struct pace_poll *pp = hmap_get(p->by_poll, (uint64_t)m->poll_id);
    if (pp == NULL) {
        if (p->n >= PACE_POLLS_MAX)
            return false;
        pp = xcalloc(1, sizeof(*pp));
        pp->session_id = m->session_id;
        pp->poll_id = m->poll_id;
        pp->next = p->polls;
        p->polls = pp;
        p->n++;
        hmap_put(p->by_poll, (uint64_t)m->poll_id, pp);
        /* A poll first seen under a hold waits one hold too: its first
         * results to a large audience is the costliest send there is, and
         * under a burst the next one follows within the hold anyway. */
        pp->last_ms = now_ms;
    }
    if (now_ms < pp->last_ms + hold_ms) {
        if (pp->msg)
            stream_msg_unref(pp->msg); /* superseded */
        else
            p->held++;
        pp->msg = m;
        if (p->next_due_ms > pp->last_ms + hold_ms)
            p->next_due_ms = pp->last_ms + hold_ms;
        return true;
    }
    if (pp->msg) { /* superseded by m, which goes out now */
        stream_msg_unref(pp->msg);
        pp->msg = NULL;
        p->held--;
    }
    pp->last_ms = now_ms;
    return false;
}

static struct stream_msg *take(struct pace *p, struct pace_poll *pp, uint64_t now_ms)
{
    struct stream_msg *m = pp->msg;
    TALLY_ASSERT(m != NULL);
    TALLY_ASSERT(p->held > 0);
    pp->msg = NULL;
    pp->last_ms = now_ms;
    p->held--;
    return m;
}

struct stream_msg *pace_take_session(struct pace *p, int64_t session_id, uint64_t now_ms)
{
    if (p->held == 0)
        return NULL;
    for (struct pace_poll *pp = p->polls; pp; pp = pp->next)
        if (pp->session_id == session_id && pp->msg)
            return take(p, pp, now_ms);
    return NULL;
}

/* Forgets polls with nothing held and no results for PACE_IDLE_MS (all of
 * them when the hold is off). */
static void sweep(struct pace *p, uint32_t hold_ms, uint64_t now_ms)
{
    struct pace_poll **link = &p->polls;
    while (*link) {
        struct pace_poll *pp = *link;
        if (pp->msg == NULL && (hold_ms == 0 || now_ms - pp->last_ms > PACE_IDLE_MS)) {
            *link = pp->next;
            hmap_del(p->by_poll, (uint64_t)pp->poll_id);
            p->n--;
            free(pp);
            continue;
        }
        link = &pp->next;
    }
    p->next_sweep_ms = now_ms + PACE_SWEEP_MS;
    TALLY_ASSERT(p->polls != NULL || p->n == 0);
}

struct stream_msg *pace_take_due(struct pace *p, uint32_t hold_ms, uint64_t now_ms)
{
    if (hold_ms != 0 && now_ms < p->next_due_ms && now_ms < p->next_sweep_ms)
        return NULL; /* the common case after a loop turn */
    uint64_t next_due = UINT64_MAX;
    if (p->held > 0) {
        for (struct pace_poll *pp = p->polls; pp; pp = pp->next) {
            if (pp->msg == NULL)
                continue;
            if (hold_ms == 0 || now_ms >= pp->last_ms + hold_ms) {
                p->next_due_ms = 0; /* more may be due: look again */
                return take(p, pp, now_ms);
            }
            if (pp->last_ms + hold_ms < next_due)
                next_due = pp->last_ms + hold_ms;
        }
    }
    p->next_due_ms = next_due;
    if (hold_ms == 0 || now_ms >= p->next_sweep_ms)
        sweep(p, hold_ms, now_ms);
    return NULL;
}

bool pace_has_due(const struct pace *p, uint32_t hold_ms, uint64_t now_ms)
{
    return p->held > 0 && (hold_ms == 0 || now_ms >= p->next_due_ms);
}

bool pace_idle(const struct pace *p)
{
    return p->polls == NULL;
}
