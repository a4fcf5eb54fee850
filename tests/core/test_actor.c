/*
 * test_actor.c - the actor runtime: many actors fed by many threads, each
 * handler checking it is never entered concurrently; exact totals and
 * per-sender order; ticks firing, skipping and stopping; the actor limit and
 * mailbox backpressure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/actor.h"
#include "core/base.h"

#define N_ACTORS 64
#define N_POSTERS 4
#define PER_POSTER 50000u
#define MSG_WORK 7

struct counted {
    atomic_bool inside;        /* set while a handler of this actor runs */
    uint64_t msgs;             /* plain: only the actor's own turns touch it */
    uint32_t next[N_POSTERS];  /* per-poster sequence: FIFO per sender */
    uint64_t ticks;
    uint64_t last_tick_ms;
    atomic_uint ticks_seen;    /* readable by the test thread while running */
    unsigned tick_sleep_ms;
    atomic_uint max_backlog;
};

static atomic_uint_fast64_t handled_total;
static atomic_uint concurrent_entries;
/* cmocka's asserts may only fail on the test thread; handlers count instead. */
static atomic_uint handler_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            atomic_fetch_add(&handler_failures, 1);                                                \
    } while (0)

static int reset_counters(void **state)
{
    (void)state;
    atomic_store(&handled_total, 0);
    atomic_store(&concurrent_entries, 0);
    atomic_store(&handler_failures, 0);
    return 0;
}

static int check_counters(void **state)
{
    (void)state;
    assert_int_equal(atomic_load(&handler_failures), 0);
    assert_int_equal(atomic_load(&concurrent_entries), 0);
    return 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void enter(struct counted *c)
{
    if (atomic_exchange(&c->inside, true))
        atomic_fetch_add(&concurrent_entries, 1);
}

static void leave(struct counted *c)
{
    atomic_store(&c->inside, false);
}

static void on_msg_count(struct actor *a, void *ctx, const struct mbox_msg *msg)
{
    struct counted *c = ctx;
    CHECK(actor_ctx(a) == ctx);
    enter(c);
    CHECK(msg->type < N_POSTERS);
    if (msg->type < N_POSTERS) {
        CHECK(msg->u32 == c->next[msg->type]);
        c->next[msg->type]++;
    }
    /* The payload the poster wrote before posting is complete and now ours. */
    const uint32_t *payload = msg->ptr;
    CHECK(payload != NULL && payload[0] == msg->type && payload[1] == msg->u32);
    free(msg->ptr);
    volatile unsigned spin = 0;
    for (unsigned i = 0; i < MSG_WORK; i++)
        spin += i; /* a little work widens any overlap window */
    c->msgs++;
    leave(c);
    atomic_fetch_add(&handled_total, 1);
}

struct poster_arg {
    struct actor **actors;
    uint32_t id;
    uint64_t sent_to[N_ACTORS];
    uint32_t seq_to[N_ACTORS];
};

static void *poster_main(void *p)
{
    struct poster_arg *pa = p;
    uint32_t rng = pa->id * 2654435761u + 1;
    for (uint32_t i = 0; i < PER_POSTER; i++) {
        rng = rng * 1664525u + 1013904223u;
        uint32_t k = (rng >> 8) % N_ACTORS;
        uint32_t *payload = malloc(2 * sizeof(*payload));
        payload[0] = pa->id;
        payload[1] = pa->seq_to[k];
        struct mbox_msg msg = {.type = pa->id, .u32 = pa->seq_to[k], .ptr = payload};
        while (!actor_post(pa->actors[k], &msg))
            sched_yield(); /* backpressure: retry later */
        pa->seq_to[k]++;
        pa->sent_to[k]++;
    }
    return NULL;
}

static void wait_total(uint64_t want, unsigned timeout_ms)
{
    for (unsigned waited = 0; atomic_load(&handled_total) < want && waited < timeout_ms;
         waited += 5)
        sleep_ms(5);
    assert_int_equal(atomic_load(&handled_total), want);
}

static void test_many_actors_many_posters(void **state)
{
    (void)state;
    struct actor_rt *rt = actor_rt_create(4, N_ACTORS);
    struct counted *cs = calloc(N_ACTORS, sizeof(*cs));
    struct actor *actors[N_ACTORS];
    for (int i = 0; i < N_ACTORS; i++) {
        actors[i] = actor_create(rt, 31, on_msg_count, &cs[i]);
        assert_non_null(actors[i]);
    }
    assert_int_equal(actor_rt_start(rt), 0);

    pthread_t th[N_POSTERS];
    struct poster_arg *args = calloc(N_POSTERS, sizeof(*args));
    for (uint32_t i = 0; i < N_POSTERS; i++) {
        args[i].actors = actors;
        args[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, poster_main, &args[i]), 0);
    }
    for (int i = 0; i < N_POSTERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    wait_total((uint64_t)N_POSTERS * PER_POSTER, 30000);
    actor_rt_stop(rt); /* joins the workers: their plain writes are visible now */

    assert_int_equal(atomic_load(&concurrent_entries), 0);
    for (int k = 0; k < N_ACTORS; k++) {
        uint64_t want = 0;
        for (int p = 0; p < N_POSTERS; p++) {
            want += args[p].sent_to[k];
            assert_int_equal(cs[k].next[p], args[p].seq_to[k]);
        }
        assert_int_equal(cs[k].msgs, want);
        assert_int_equal(actor_backlog(actors[k]), 0);
    }
    actor_rt_destroy(rt);
    free(args);
    free(cs);
}

/* ---- ticks --------------------------------------------------------------- */

static void on_msg_none(struct actor *a, void *ctx, const struct mbox_msg *msg)
{
    (void)a;
    (void)ctx;
    (void)msg;
    CHECK(!"no message was posted");
}

static void on_tick_count(struct actor *a, void *ctx, uint64_t now_ms)
{
    struct counted *c = ctx;
    enter(c);
    CHECK(now_ms >= c->last_tick_ms);
    c->last_tick_ms = now_ms;
    c->ticks++;
    unsigned backlog = actor_backlog(a);
    if (backlog > atomic_load(&c->max_backlog))
        atomic_store(&c->max_backlog, backlog);
    if (c->tick_sleep_ms > 0)
        sleep_ms(c->tick_sleep_ms);
    leave(c);
    atomic_fetch_add(&c->ticks_seen, 1);
}

/* Waits until *counter reaches want (or 10 s pass); returns the elapsed ms. */
static uint64_t wait_ticks(atomic_uint *counter, unsigned want, uint64_t since_ms)
{
    for (int i = 0; i < 2000 && atomic_load(counter) < want; i++)
        sleep_ms(5);
    assert_true(atomic_load(counter) >= want);
    return clock_now_ms() - since_ms;
}

static void test_ticks(void **state)
{
    (void)state;
    struct actor_rt *rt = actor_rt_create(2, 8);
    struct counted fast = {0}, slow = {.tick_sleep_ms = 100}, off = {0};
    struct actor *a_fast = actor_create(rt, 7, on_msg_none, &fast);
    struct actor *a_slow = actor_create(rt, 7, on_msg_none, &slow);
    struct actor *a_off = actor_create(rt, 7, on_msg_none, &off);
    uint64_t t0 = clock_now_ms();
    actor_set_tick(a_fast, 20, on_tick_count);
    actor_set_tick(a_slow, 10, on_tick_count);
    actor_set_tick(a_off, 10, on_tick_count);
    actor_set_tick(a_off, 0, NULL); /* stopped before it ever fired */
    assert_int_equal(actor_rt_start(rt), 0);

    /* Ticks fire, and never more often than their period. */
    uint64_t fast_ms = wait_ticks(&fast.ticks_seen, 10, t0);
    unsigned fast_n = atomic_load(&fast.ticks_seen);
    assert_true(fast_ms >= 20 * 10);
    assert_true(fast_n <= fast_ms / 20 + 1);

    /* A 100 ms handler on a 10 ms tick: ticks are skipped, not queued up, so
     * the mailbox never holds more than the one tick waiting behind it. */
    wait_ticks(&slow.ticks_seen, 4, t0);
    assert_true(atomic_load(&slow.max_backlog) <= 1);

    /* Stopping: at most the one tick already queued is still delivered. */
    actor_set_tick(a_fast, 0, NULL);
    unsigned at_stop = atomic_load(&fast.ticks_seen);
    sleep_ms(150);
    assert_true(atomic_load(&fast.ticks_seen) <= at_stop + 1);
    actor_rt_stop(rt);

    assert_int_equal(off.ticks, 0);
    assert_int_equal(fast.ticks, atomic_load(&fast.ticks_seen));
    actor_rt_destroy(rt);
}

/* ---- limits ---------------------------------------------------------------- */

static void test_actor_limit(void **state)
{
    (void)state;
    struct actor_rt *rt = actor_rt_create(1, 3);
    struct counted c = {0};
    for (int i = 0; i < 3; i++)
        assert_non_null(actor_create(rt, 1, on_msg_count, &c));
    assert_null(actor_create(rt, 1, on_msg_count, &c));
    assert_null(actor_create(rt, 1, on_msg_count, &c));
    actor_rt_destroy(rt); /* never started: destroy alone frees everything */
}

static void test_backpressure_then_drain(void **state)
{
    (void)state;
    struct actor_rt *rt = actor_rt_create(2, 2);
    struct counted c = {0};
    struct actor *a = actor_create(rt, 3, on_msg_count, &c);
    uint32_t *payloads[4];
    for (uint32_t i = 0; i < 4; i++) {
        payloads[i] = malloc(2 * sizeof(uint32_t));
        payloads[i][0] = 0;
        payloads[i][1] = i;
    }
    for (uint32_t i = 0; i < 3; i++) {
        struct mbox_msg msg = {.type = 0, .u32 = i, .ptr = payloads[i]};
        assert_true(actor_post(a, &msg));
    }
    struct mbox_msg extra = {.type = 0, .u32 = 3, .ptr = payloads[3]};
    assert_false(actor_post(a, &extra)); /* full, and no worker runs yet: we keep the payload */
    assert_int_equal(actor_backlog(a), 3);

    assert_int_equal(actor_rt_start(rt), 0);
    wait_total(3, 10000);
    assert_true(actor_post(a, &extra));
    wait_total(4, 10000);
    actor_rt_stop(rt);
    assert_int_equal(c.msgs, 4);
    assert_int_equal(c.next[0], 4);
    actor_rt_destroy(rt);
}

/* A turn takes at most ACTOR_BATCH_MAX messages; an actor with a deep
 * mailbox must not starve another on a single worker. */
struct fair {
    atomic_uint handled_a, handled_b;
    atomic_uint b_done_when_a; /* a's count when b's only message ran */
};

static struct fair fair_state;

static void on_msg_fair_a(struct actor *a, void *ctx, const struct mbox_msg *msg)
{
    (void)a;
    (void)ctx;
    (void)msg;
    atomic_fetch_add(&fair_state.handled_a, 1);
}

static void on_msg_fair_b(struct actor *a, void *ctx, const struct mbox_msg *msg)
{
    (void)a;
    (void)ctx;
    (void)msg;
    atomic_store(&fair_state.b_done_when_a, atomic_load(&fair_state.handled_a));
    atomic_fetch_add(&fair_state.handled_b, 1);
}

static void test_batch_fairness(void **state)
{
    (void)state;
    memset(&fair_state, 0, sizeof(fair_state));
    struct actor_rt *rt = actor_rt_create(1, 2);
    struct actor *a = actor_create(rt, 1023, on_msg_fair_a, NULL);
    struct actor *b = actor_create(rt, 1, on_msg_fair_b, NULL);
    struct mbox_msg msg = {.type = 1};
    for (int i = 0; i < 1000; i++)
        assert_true(actor_post(a, &msg));
    assert_true(actor_post(b, &msg)); /* queued behind a's first turn */
    assert_int_equal(actor_rt_start(rt), 0);
    for (int i = 0; i < 2000 && atomic_load(&fair_state.handled_a) < 1000; i++)
        sleep_ms(5);
    actor_rt_stop(rt);
    assert_int_equal(atomic_load(&fair_state.handled_a), 1000);
    assert_int_equal(atomic_load(&fair_state.handled_b), 1);
    assert_int_equal(atomic_load(&fair_state.b_done_when_a), ACTOR_BATCH_MAX);
    actor_rt_destroy(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_actors_many_posters, reset_counters, check_counters),
        cmocka_unit_test_setup_teardown(test_ticks, reset_counters, check_counters),
        cmocka_unit_test_setup_teardown(test_actor_limit, reset_counters, check_counters),
        cmocka_unit_test_setup_teardown(test_backpressure_then_drain, reset_counters, check_counters),
        cmocka_unit_test_setup_teardown(test_batch_fairness, reset_counters, check_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
