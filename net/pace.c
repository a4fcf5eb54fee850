/*
 * pace.c - results pacing; see pace.h. A short list per ring: only polls
 * whose results were offered while a hold was on are in it, a handful in
 * practice, bounded by PACE_POLLS_MAX.
 */
#include "net/pace.h"

#include <stdlib.h>

#include "core/base.h"

struct pace_poll {
    struct pace_poll *next;
    int64_t session_id, poll_id;
    uint64_t last_ms;       /* this poll's results last went out on this ring */
    struct stream_msg *msg; /* the newest one waiting, or NULL */
};

struct pace {
    struct pace_poll *polls;
    unsigned n;
};

struct pace *pace_create(void)
{
    return xcalloc(1, sizeof(struct pace));
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

static struct pace_poll *find(const struct pace *p, int64_t poll_id)
{
    for (struct pace_poll *pp = p->polls; pp; pp = pp->next)
        if (pp->poll_id == poll_id)
            return pp;
    return NULL;
}

bool pace_offer(struct pace *p, struct stream_msg *m, uint32_t hold_ms, uint64_t now_ms)
{
    TALLY_ASSERT(m != NULL && m->kind == STREAM_RESULTS);
    if (hold_ms == 0)
        return false;
    struct pace_poll *pp = find(p, m->poll_id);
    if (pp == NULL) {
        if (p->n >= PACE_POLLS_MAX)
            return false;
        pp = xcalloc(1, sizeof(*pp));
        pp->session_id = m->session_id;
        pp->poll_id = m->poll_id;
        pp->next = p->polls;
        p->polls = pp;
        p->n++;
    } else if (now_ms < pp->last_ms + hold_ms) {
        if (pp->msg)
            stream_msg_unref(pp->msg); /* superseded */
        pp->msg = m;
        return true;
    }
    if (pp->msg) { /* superseded by m, which goes out now */
        stream_msg_unref(pp->msg);
        pp->msg = NULL;
    }
    pp->last_ms = now_ms;
    return false;
}

static struct stream_msg *take(struct pace_poll *pp, uint64_t now_ms)
{
    struct stream_msg *m = pp->msg;
    TALLY_ASSERT(m != NULL);
    pp->msg = NULL;
    pp->last_ms = now_ms;
    return m;
}

struct stream_msg *pace_take_session(struct pace *p, int64_t session_id, uint64_t now_ms)
{
    for (struct pace_poll *pp = p->polls; pp; pp = pp->next)
        if (pp->session_id == session_id && pp->msg)
            return take(pp, now_ms);
    return NULL;
}

struct stream_msg *pace_take_due(struct pace *p, uint32_t hold_ms, uint64_t now_ms)
{
    struct pace_poll **link = &p->polls;
    while (*link) {
        struct pace_poll *pp = *link;
        if (pp->msg && (hold_ms == 0 || now_ms >= pp->last_ms + hold_ms))
            return take(pp, now_ms);
        if (pp->msg == NULL && (hold_ms == 0 || now_ms - pp->last_ms > PACE_IDLE_MS)) {
            *link = pp->next;
            p->n--;
            free(pp);
            continue;
        }
        link = &pp->next;
    }
    TALLY_ASSERT(p->polls != NULL || p->n == 0);
    return NULL;
}

bool pace_idle(const struct pace *p)
{
    return p->polls == NULL;
}
