/*
 * actor.c - the actor runtime: worker threads, a run queue and a tick timer.
 *
 * Scheduling. An actor is "scheduled" when its mailbox notify fires (the
 * mailbox went idle -> pending) or when a worker's mbox_finish() says more
 * messages arrived during its turn; either way the actor is pushed onto the
 * run queue, a Concurrency Kit MPMC ring of actor pointers. The mailbox's
 * pending flag stays true from that push until the running worker's
 * mbox_finish() clears it, so an actor is in the run queue at most once, and
 * a ring with more slots than actors_max can never overflow.
 *
 * Invariant: an actor's handlers never run on two threads at once. The only
 * way onto a worker is a pop from the run queue and the only pushes are the
 * single false -> true transitions of `pending` (see mbox.c), so at most one
 * worker holds the actor between two such transitions. The `running` flag
 * asserts this on every turn; it is cleared before mbox_finish() because the
 * moment pending is cleared the next turn may begin on another worker.
 *
 * Idle workers sleep on a condition variable. A pusher signals only when a
 * worker sleeps (a counter read after a full fence; the sleeper increments it
 * and fences before re-checking the queue, the same Dekker pairing as the
 * mailbox), and it signals under the mutex so a sleeper between its check and
 * its wait cannot miss it.
 *
 * Ticks. One timer thread wakes every ACTOR_TICK_RESOLUTION_MS and posts an
 * ACTOR_MSG_TICK message to each ticking actor that is due, unless the
 * previous tick is still waiting in the mailbox (`tick_queued`). Missed
 * periods are skipped, not caught up.
 *
 * Locks. rt->lock guards the actor table and the ticking set; rt->idle_lock
 * guards sleeping. The timer posts while holding rt->lock, and posting may
 * take idle_lock, so the order is always rt->lock -> idle_lock.
 */
#include "core/actor.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ck_ring.h>

#include "core/base.h"
#include "core/log.h"

#define ACTOR_THREADS_MAX 1024
#define ACTOR_ACTORS_MAX (1u << 28)
#define TICK_SLOT_NONE UINT32_MAX

struct actor {
    struct actor_rt *rt;
    struct mbox *mbox;
    actor_on_msg_fn on_msg;
    void *ctx;
    atomic_bool running;     /* a worker is inside this actor's handlers */
    atomic_bool tick_queued; /* an ACTOR_MSG_TICK waits in the mailbox */
    _Atomic uint32_t tick_ms;
    _Atomic(actor_on_tick_fn) on_tick;
    uint64_t tick_due_ms; /* rt->lock */
    uint32_t tick_slot;   /* index in rt->ticking or TICK_SLOT_NONE; rt->lock */
};

struct actor_rt {
    struct ck_ring runq;
    ck_ring_buffer_t *runq_slots;
    unsigned threads;
    uint32_t actors_max;
    atomic_bool stopping;

    pthread_mutex_t idle_lock;
    pthread_cond_t idle_cond;
    atomic_uint sleepers;

    pthread_mutex_t lock;
    pthread_cond_t timer_cond; /* CLOCK_MONOTONIC; the timer's sleep, cut short by stop */
    struct actor **actors;     /* actors_max entries */
    uint32_t n_actors;
    struct actor **ticking;    /* actors_max entries */
    uint32_t n_ticking;

    pthread_t *workers;
    unsigned workers_started;
    pthread_t timer;
    bool timer_started;
};

static uint32_t pow2_above(uint32_t n)
{
    uint32_t p = 1;
    while (p <= n)
        p <<= 1;
    return p;
}

/* ---- run queue ---------------------------------------------------------- */

static void runq_push(struct actor_rt *rt, struct actor *a)
{
    unsigned ticket;

    TALLY_HB_RELEASE(a); /* the pusher's posts are visible to the worker that pops */
    TALLY_RACE_IGNORE_BEGIN();
    /* ck's MPMC reserve, published by the yielding commit (see mbox.c for why). */
    struct ck_ring_buffer *slot = ck_ring_enqueue_reserve_mpmc(&rt->runq, rt->runq_slots, &ticket);
    if (slot != NULL) {
        slot->value = a;
        mbox__ring_commit(&rt->runq, ticket);
    }
    TALLY_RACE_IGNORE_END();
    TALLY_ASSERT(slot != NULL); /* sized above actors_max and an actor is queued at most once */

    /* The push must be visible before we read sleepers (Dekker with worker_idle). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&rt->sleepers, memory_order_relaxed) > 0) {
        /* Taking the lock waits out a sleeper between its check of the
         * queue and its wait; signalling after releasing it spares the
         * woken worker from blocking at once on the lock we still hold. */
        pthread_mutex_lock(&rt->idle_lock);
        pthread_mutex_unlock(&rt->idle_lock);
        pthread_cond_signal(&rt->idle_cond);
    }
}

static struct actor *runq_pop(struct actor_rt *rt)
{
    void *p = NULL;
    TALLY_RACE_IGNORE_BEGIN();
    bool ok = ck_ring_dequeue_mpmc(&rt->runq, rt->runq_slots, &p);
    TALLY_RACE_IGNORE_END();
    if (!ok)
        return NULL;
    TALLY_ASSERT(p != NULL);
    TALLY_HB_ACQUIRE(p); /* pairs with TALLY_HB_RELEASE in runq_push */
    return p;
}

/* The mailbox notify: the actor has work and is not yet scheduled. */
static void actor_notify(void *arg)
{
    struct actor *a = arg;
    runq_push(a->rt, a);
}

/* ---- workers ------------------------------------------------------------ */

static void actor_dispatch_tick(struct actor *a)
{
    /* Cleared first so the timer may queue the next tick while this one runs. */
    atomic_store_explicit(&a->tick_queued, false, memory_order_release);
    actor_on_tick_fn fn = atomic_load_explicit(&a->on_tick, memory_order_acquire);
    /* A tick queued before actor_set_tick(a, 0, ...) is dropped. */
    if (fn != NULL && atomic_load_explicit(&a->tick_ms, memory_order_relaxed) != 0)
        fn(a, a->ctx, clock_now_ms());
}

/* One turn: at most ACTOR_BATCH_MAX messages, then requeue if more are left. */
static void actor_run(struct actor *a, struct mbox_msg *batch)
{
    /* Acquire: see everything the previous turn (maybe another worker) wrote. */
    bool was_running = atomic_exchange_explicit(&a->running, true, memory_order_acquire);
    TALLY_ASSERT(!was_running);

    unsigned n = mbox_take(a->mbox, batch, ACTOR_BATCH_MAX);
    TALLY_ASSERT(n <= ACTOR_BATCH_MAX);
    for (unsigned i = 0; i < n; i++) {
        if (batch[i].type == ACTOR_MSG_TICK)
            actor_dispatch_tick(a);
        else
            a->on_msg(a, a->ctx, &batch[i]);
    }

    /* Release before finishing: once pending clears, the next turn may start elsewhere. */
    atomic_store_explicit(&a->running, false, memory_order_release);
    if (mbox_finish(a->mbox))
        runq_push(a->rt, a);
}

static void worker_idle(struct actor_rt *rt)
{
    pthread_mutex_lock(&rt->idle_lock);
    atomic_fetch_add_explicit(&rt->sleepers, 1, memory_order_relaxed);
    /* sleepers must be visible before we re-check the queue (Dekker with runq_push). */
    atomic_thread_fence(memory_order_seq_cst);
    while (!atomic_load_explicit(&rt->stopping, memory_order_acquire) &&
           ck_ring_size(&rt->runq) == 0)
        pthread_cond_wait(&rt->idle_cond, &rt->idle_lock);
    atomic_fetch_sub_explicit(&rt->sleepers, 1, memory_order_relaxed);
    pthread_mutex_unlock(&rt->idle_lock);
}

static void *worker_main(void *arg)
{
    struct actor_rt *rt = arg;
    struct mbox_msg batch[ACTOR_BATCH_MAX];

    while (!atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
        struct actor *a = runq_pop(rt);
        if (a == NULL) {
            worker_idle(rt);
            continue;
        }
        TALLY_ASSERT(a->rt == rt);
        actor_run(a, batch);
    }
    /* Stopping: mail posted before the stop (the network's last
     * unsubscriptions, as its connections closed) is still handled, so no
     * payload is left behind in a mailbox. */
    for (struct actor *a; (a = runq_pop(rt)) != NULL;)
        actor_run(a, batch);
    return NULL;
}

/* ---- ticks -------------------------------------------------------------- */

/* Posts a tick to every due actor. Caller holds rt->lock. */
static void timer_fire_due(struct actor_rt *rt, uint64_t now_ms)
{
    for (uint32_t i = 0; i < rt->n_ticking; i++) {
        struct actor *a = rt->ticking[i];
        TALLY_ASSERT(a->tick_slot == i);
        if (now_ms < a->tick_due_ms)
            continue;
        a->tick_due_ms = now_ms + atomic_load_explicit(&a->tick_ms, memory_order_relaxed);
        if (atomic_exchange_explicit(&a->tick_queued, true, memory_order_acq_rel))
            continue; /* the previous tick still waits: skip this one */
        struct mbox_msg msg = {.type = ACTOR_MSG_TICK, .u64 = now_ms};
        if (!mbox_post(a->mbox, &msg))
            atomic_store_explicit(&a->tick_queued, false, memory_order_release);
    }
}

static void timespec_after_ms(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *timer_main(void *arg)
{
    struct actor_rt *rt = arg;

    pthread_mutex_lock(&rt->lock);
    while (!atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
        struct timespec deadline;
        timespec_after_ms(&deadline, ACTOR_TICK_RESOLUTION_MS);
        int rc = 0;
        while (rc != ETIMEDOUT && !atomic_load_explicit(&rt->stopping, memory_order_acquire))
            rc = pthread_cond_timedwait(&rt->timer_cond, &rt->lock, &deadline);
        if (rc == ETIMEDOUT)
            timer_fire_due(rt, clock_now_ms());
    }
    pthread_mutex_unlock(&rt->lock);
    return NULL;
}

/* Adds a to or removes it from the ticking set. Caller holds rt->lock. */
static void ticking_update(struct actor_rt *rt, struct actor *a, bool on)
{
    if (on && a->tick_slot == TICK_SLOT_NONE) {
        TALLY_ASSERT(rt->n_ticking < rt->actors_max);
        a->tick_slot = rt->n_ticking;
        rt->ticking[rt->n_ticking++] = a;
    } else if (!on && a->tick_slot != TICK_SLOT_NONE) {
        struct actor *last = rt->ticking[--rt->n_ticking];
        rt->ticking[a->tick_slot] = last;
        last->tick_slot = a->tick_slot;
        a->tick_slot = TICK_SLOT_NONE;
    }
}

void actor_set_tick(struct actor *a, uint32_t tick_ms, actor_on_tick_fn on_tick)
{
    TALLY_ASSERT(a != NULL);
    TALLY_ASSERT(tick_ms == 0 || tick_ms >= ACTOR_TICK_RESOLUTION_MS);
    TALLY_ASSERT(tick_ms == 0 || on_tick != NULL);
    struct actor_rt *rt = a->rt;

    pthread_mutex_lock(&rt->lock);
    if (tick_ms != 0) {
        atomic_store_explicit(&a->on_tick, on_tick, memory_order_release);
        a->tick_due_ms = clock_now_ms() + tick_ms;
    }
    atomic_store_explicit(&a->tick_ms, tick_ms, memory_order_relaxed);
    ticking_update(rt, a, tick_ms != 0);
    pthread_mutex_unlock(&rt->lock);
}

/* ---- actors ------------------------------------------------------------- */

struct actor *actor_create(struct actor_rt *rt, uint32_t mbox_slots, actor_on_msg_fn on_msg,
                           void *ctx)
{
    TALLY_ASSERT(rt != NULL);
    TALLY_ASSERT(on_msg != NULL);
    TALLY_ASSERT(mbox_slots >= 1);

    struct actor *a = xcalloc(1, sizeof(*a));
    a->rt = rt;
    a->on_msg = on_msg;
    a->ctx = ctx;
    a->tick_slot = TICK_SLOT_NONE;
    atomic_init(&a->running, false);
    atomic_init(&a->tick_queued, false);
    atomic_init(&a->tick_ms, 0);
    atomic_init(&a->on_tick, NULL);
    a->mbox = mbox_create(mbox_slots, actor_notify, a);

    pthread_mutex_lock(&rt->lock);
    bool full = rt->n_actors == rt->actors_max;
    if (!full)
        rt->actors[rt->n_actors++] = a;
    pthread_mutex_unlock(&rt->lock);
    if (full) {
        mbox_destroy(a->mbox);
        free(a);
        return NULL;
    }
    return a;
}

bool actor_post(struct actor *a, const struct mbox_msg *msg)
{
    TALLY_ASSERT(a != NULL);
    TALLY_ASSERT(msg->type != ACTOR_MSG_TICK);
    return mbox_post(a->mbox, msg);
}

void *actor_ctx(const struct actor *a)
{
    TALLY_ASSERT(a != NULL);
    return a->ctx;
}

unsigned actor_backlog(const struct actor *a)
{
    TALLY_ASSERT(a != NULL);
    return mbox_size(a->mbox);
}

/* ---- runtime ------------------------------------------------------------ */

struct actor_rt *actor_rt_create(unsigned threads, uint32_t actors_max)
{
    TALLY_ASSERT(threads >= 1 && threads <= ACTOR_THREADS_MAX);
    TALLY_ASSERT(actors_max >= 1 && actors_max <= ACTOR_ACTORS_MAX);

    struct actor_rt *rt = xcalloc(1, sizeof(*rt));
    uint32_t slots = pow2_above(actors_max);
    TALLY_ASSERT(slots - 1 >= actors_max); /* a ring of N slots holds N - 1 */
    rt->runq_slots = xcalloc(slots, sizeof(*rt->runq_slots));
    ck_ring_init(&rt->runq, slots);
    rt->threads = threads;
    rt->actors_max = actors_max;
    atomic_init(&rt->stopping, false);
    atomic_init(&rt->sleepers, 0);
    rt->actors = xcalloc(actors_max, sizeof(*rt->actors));
    rt->ticking = xcalloc(actors_max, sizeof(*rt->ticking));
    rt->workers = xcalloc(threads, sizeof(*rt->workers));

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    TALLY_ASSERT(pthread_cond_init(&rt->timer_cond, &ca) == 0);
    pthread_condattr_destroy(&ca);
    TALLY_ASSERT(pthread_cond_init(&rt->idle_cond, NULL) == 0);
    TALLY_ASSERT(pthread_mutex_init(&rt->idle_lock, NULL) == 0);
    TALLY_ASSERT(pthread_mutex_init(&rt->lock, NULL) == 0);
    return rt;
}

/* Wakes the sleeping workers and the timer so they notice `stopping`. */
static void rt_wake_all(struct actor_rt *rt)
{
    pthread_mutex_lock(&rt->idle_lock);
    pthread_cond_broadcast(&rt->idle_cond);
    pthread_mutex_unlock(&rt->idle_lock);
    pthread_mutex_lock(&rt->lock);
    pthread_cond_signal(&rt->timer_cond);
    pthread_mutex_unlock(&rt->lock);
}

static void rt_join_all(struct actor_rt *rt)
{
    atomic_store_explicit(&rt->stopping, true, memory_order_release);
    rt_wake_all(rt);
    for (unsigned i = 0; i < rt->workers_started; i++)
        pthread_join(rt->workers[i], NULL);
    rt->workers_started = 0;
    if (rt->timer_started)
        pthread_join(rt->timer, NULL);
    rt->timer_started = false;
}

int actor_rt_start(struct actor_rt *rt)
{
    TALLY_ASSERT(rt != NULL);
    TALLY_ASSERT(rt->workers_started == 0 && !rt->timer_started);

    /* Runtime threads never take signals: the main thread owns them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    int rc = pthread_create(&rt->timer, NULL, timer_main, rt);
    if (rc == 0) {
        rt->timer_started = true;
        pthread_setname_np(rt->timer, "tally-tick");
    }
    for (unsigned i = 0; rc == 0 && i < rt->threads; i++) {
        rc = pthread_create(&rt->workers[i], NULL, worker_main, rt);
        if (rc == 0) {
            char name[32];
            snprintf(name, sizeof(name), "tally-actor%u", i);
            name[15] = '\0'; /* the kernel's limit for thread names */
            pthread_setname_np(rt->workers[i], name);
            rt->workers_started++;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("actor runtime: cannot start thread: %s", strerror(rc));
        rt_join_all(rt);
        atomic_store_explicit(&rt->stopping, false, memory_order_release);
        return -rc;
    }
    return 0;
}

void actor_rt_stop(struct actor_rt *rt)
{
    TALLY_ASSERT(rt != NULL);
    rt_join_all(rt);
}

unsigned actor_drain(struct actor *a, struct mbox_msg *out, unsigned max)
{
    TALLY_ASSERT(a != NULL && out != NULL);
    TALLY_ASSERT(a->rt->workers_started == 0); /* nobody else takes from it now */
    return mbox_take(a->mbox, out, max);
}

void actor_rt_destroy(struct actor_rt *rt)
{
    if (rt == NULL)
        return;
    TALLY_ASSERT(rt->workers_started == 0);
    TALLY_ASSERT(!rt->timer_started);

    /* Messages still queued are dropped with their actors; payloads are the owners'. */
    for (uint32_t i = 0; i < rt->n_actors; i++) {
        mbox_destroy(rt->actors[i]->mbox);
        free(rt->actors[i]);
    }
    pthread_mutex_destroy(&rt->lock);
    pthread_mutex_destroy(&rt->idle_lock);
    pthread_cond_destroy(&rt->idle_cond);
    pthread_cond_destroy(&rt->timer_cond);
    free(rt->workers);
    free(rt->ticking);
    free(rt->actors);
    free(rt->runq_slots);
    free(rt);
}
