/*
 * test_mbox.c - the mailbox: FIFO order, the exact capacity, coalesced
 * notifies, mbox_finish() semantics and a 4-producer stress run woken through
 * an eventfd.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/mbox.h"

static atomic_uint notifies;

static void count_notify(void *arg)
{
    (void)arg;
    atomic_fetch_add(&notifies, 1);
}

static struct mbox_msg msg_n(uint32_t n)
{
    struct mbox_msg m = {.type = 1, .u32 = n, .u64 = (uint64_t)n * 3, .ptr = &notifies};
    return m;
}

static int reset_notifies(void **state)
{
    (void)state;
    atomic_store(&notifies, 0);
    return 0;
}

static void test_order_single_thread(void **state)
{
    (void)state;
    struct mbox *m = mbox_create(100, count_notify, NULL);
    for (uint32_t i = 0; i < 100; i++) {
        struct mbox_msg msg = msg_n(i);
        assert_true(mbox_post(m, &msg));
    }
    assert_int_equal(mbox_size(m), 100);

    struct mbox_msg out[32];
    uint32_t next = 0;
    unsigned n;
    while ((n = mbox_take(m, out, 32)) > 0) {
        assert_true(n <= 32);
        for (unsigned i = 0; i < n; i++, next++) {
            assert_int_equal(out[i].type, 1);
            assert_int_equal(out[i].u32, next);
            assert_int_equal(out[i].u64, (uint64_t)next * 3);
            assert_ptr_equal(out[i].ptr, &notifies);
        }
    }
    assert_int_equal(next, 100);
    assert_int_equal(mbox_size(m), 0);
    assert_int_equal(mbox_take(m, out, 0), 0);
    assert_false(mbox_finish(m));
    mbox_destroy(m);
}

/* slots_max rounds up to 2^k - 1: exactly that many fit, one more is refused. */
static void check_capacity(uint32_t slots_max, uint32_t expected)
{
    struct mbox *m = mbox_create(slots_max, count_notify, NULL);
    struct mbox_msg msg = msg_n(0);
    for (uint32_t i = 0; i < expected; i++) {
        msg.u32 = i;
        assert_true(mbox_post(m, &msg));
    }
    assert_int_equal(mbox_size(m), expected);
    msg.u32 = expected;
    assert_false(mbox_post(m, &msg));
    assert_false(mbox_post(m, &msg));
    assert_int_equal(mbox_size(m), expected);

    /* One slot freed, one post accepted again; the refused ones left no trace. */
    struct mbox_msg out;
    assert_int_equal(mbox_take(m, &out, 1), 1);
    assert_int_equal(out.u32, 0);
    assert_true(mbox_post(m, &msg));
    assert_false(mbox_post(m, &msg));
    mbox_destroy(m);
}

static void test_full_at_capacity(void **state)
{
    (void)state;
    check_capacity(1, 1);
    check_capacity(3, 3);
    check_capacity(7, 7);
    check_capacity(8, 15);
    check_capacity(1000, 1023);
    check_capacity(65535, 65535); /* a mapped ring (1.5 MiB), as a session's */
}

static void test_notify_once_per_transition(void **state)
{
    (void)state;
    struct mbox *m = mbox_create(15, count_notify, NULL);
    struct mbox_msg msg = msg_n(1), out[16];

    assert_true(mbox_post(m, &msg));
    assert_int_equal(atomic_load(&notifies), 1);
    assert_true(mbox_post(m, &msg));
    assert_true(mbox_post(m, &msg));
    assert_int_equal(atomic_load(&notifies), 1); /* still pending: coalesced */

    assert_int_equal(mbox_take(m, out, 16), 3);
    assert_true(mbox_post(m, &msg));
    assert_int_equal(atomic_load(&notifies), 1); /* the owner is mid-turn */
    assert_true(mbox_post(m, &msg));
    assert_int_equal(mbox_take(m, out, 16), 2);
    assert_false(mbox_finish(m));

    assert_true(mbox_post(m, &msg)); /* idle -> pending again */
    assert_int_equal(atomic_load(&notifies), 2);
    /* A refused post never notifies. */
    for (int i = 0; i < 14; i++)
        assert_true(mbox_post(m, &msg));
    assert_false(mbox_post(m, &msg));
    assert_int_equal(atomic_load(&notifies), 2);
    mbox_destroy(m);
}

static void test_finish_semantics(void **state)
{
    (void)state;
    struct mbox *m = mbox_create(15, count_notify, NULL);
    struct mbox_msg msg = msg_n(7), out[16];

    /* A partial drain: finish says keep going, and no notify is sent for it. */
    for (int i = 0; i < 5; i++)
        assert_true(mbox_post(m, &msg));
    assert_int_equal(mbox_take(m, out, 2), 2);
    assert_true(mbox_finish(m));
    assert_int_equal(atomic_load(&notifies), 1);
    assert_int_equal(mbox_take(m, out, 16), 3);

    /* A message arriving between take and finish: the owner keeps the turn. */
    assert_true(mbox_post(m, &msg));
    assert_true(mbox_finish(m));
    assert_int_equal(atomic_load(&notifies), 1);
    assert_int_equal(mbox_take(m, out, 16), 1);
    assert_false(mbox_finish(m));

    /* Idle now: the next post notifies, and a finish without a take keeps the turn. */
    assert_true(mbox_post(m, &msg));
    assert_int_equal(atomic_load(&notifies), 2);
    assert_true(mbox_finish(m));
    assert_int_equal(mbox_take(m, out, 16), 1);
    assert_false(mbox_finish(m));
    assert_false(mbox_finish(m)); /* an empty, idle mailbox stays idle */
    assert_int_equal(atomic_load(&notifies), 2);
    mbox_destroy(m);
}

static void test_notify_eventfd(void **state)
{
    (void)state;
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd >= 0);
    struct mbox *m = mbox_create(7, mbox_notify_eventfd, (void *)(intptr_t)efd);
    struct mbox_msg msg = msg_n(1), out[8];
    uint64_t v = 0;

    assert_int_equal(read(efd, &v, sizeof(v)), -1);
    assert_int_equal(errno, EAGAIN);
    assert_true(mbox_post(m, &msg));
    assert_true(mbox_post(m, &msg));
    assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
    assert_int_equal(v, 1);
    assert_int_equal(mbox_take(m, out, 8), 2);
    assert_false(mbox_finish(m));
    assert_true(mbox_post(m, &msg));
    assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
    assert_int_equal(v, 1);
    mbox_destroy(m);
    close(efd);
}

/* ---- 4 producers x 100k, one consumer woken by an eventfd --------------- */

#define STRESS_PRODUCERS 4
#define STRESS_PER_PRODUCER 100000u
#define STRESS_SLOTS 255

struct stress {
    struct mbox *m;
    atomic_uint full_retries;
};

struct producer_arg {
    struct stress *s;
    uint32_t id;
};

/* A payload written by the producer and read (then freed) by the consumer:
 * its ownership moves with the message. */
struct payload {
    uint32_t producer, seq;
    char text[16];
};

static void *producer_main(void *p)
{
    struct producer_arg *pa = p;
    for (uint32_t seq = 0; seq < STRESS_PER_PRODUCER; seq++) {
        struct payload *pl = malloc(sizeof(*pl));
        pl->producer = pa->id;
        pl->seq = seq;
        snprintf(pl->text, sizeof(pl->text), "p%u/%u", pa->id, seq);
        struct mbox_msg msg = {.type = pa->id, .u32 = seq, .u64 = ((uint64_t)pa->id << 32) | seq,
                               .ptr = pl};
        while (!mbox_post(pa->s->m, &msg)) {
            atomic_fetch_add_explicit(&pa->s->full_retries, 1, memory_order_relaxed);
            sched_yield();
        }
    }
    return NULL;
}

static void test_stress_eventfd(void **state)
{
    (void)state;
    struct stress s = {0};
    int efd = eventfd(0, EFD_CLOEXEC);
    assert_true(efd >= 0);
    s.m = mbox_create(STRESS_SLOTS, mbox_notify_eventfd, (void *)(intptr_t)efd);

    pthread_t th[STRESS_PRODUCERS];
    struct producer_arg args[STRESS_PRODUCERS];
    for (uint32_t i = 0; i < STRESS_PRODUCERS; i++) {
        args[i] = (struct producer_arg){&s, i};
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &args[i]), 0);
    }

    uint32_t next[STRESS_PRODUCERS] = {0};
    uint64_t received = 0, wakes = 0;
    const uint64_t total = (uint64_t)STRESS_PRODUCERS * STRESS_PER_PRODUCER;
    struct mbox_msg batch[64];
    while (received < total) {
        struct pollfd pfd = {.fd = efd, .events = POLLIN};
        /* A lost wake-up would hang here: fail after 10 s instead. */
        assert_int_equal(poll(&pfd, 1, 10000), 1);
        uint64_t v;
        assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
        wakes++;
        do {
            unsigned n;
            while ((n = mbox_take(s.m, batch, 64)) > 0) {
                for (unsigned i = 0; i < n; i++) {
                    uint32_t p = batch[i].type;
                    assert_true(p < STRESS_PRODUCERS);
                    assert_int_equal(batch[i].u32, next[p]); /* per-producer FIFO, no loss */
                    assert_int_equal(batch[i].u64, ((uint64_t)p << 32) | next[p]);
                    const struct payload *pl = batch[i].ptr;
                    char want[16];
                    snprintf(want, sizeof(want), "p%u/%u", p, next[p]);
                    assert_int_equal(pl->producer, p);
                    assert_int_equal(pl->seq, next[p]);
                    assert_string_equal(pl->text, want);
                    free(batch[i].ptr);
                    next[p]++;
                }
                received += n;
            }
        } while (mbox_finish(s.m));
    }
    for (uint32_t i = 0; i < STRESS_PRODUCERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(next[i], STRESS_PER_PRODUCER);
    }
    assert_int_equal(received, total); /* and nothing twice: the order check covers it */
    assert_int_equal(mbox_size(s.m), 0);
    assert_true(wakes >= 1 && wakes <= total);
    mbox_destroy(s.m);
    close(efd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_order_single_thread, reset_notifies),
        cmocka_unit_test_setup(test_full_at_capacity, reset_notifies),
        cmocka_unit_test_setup(test_notify_once_per_transition, reset_notifies),
        cmocka_unit_test_setup(test_finish_semantics, reset_notifies),
        cmocka_unit_test_setup(test_notify_eventfd, reset_notifies),
        cmocka_unit_test_setup(test_stress_eventfd, reset_notifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
