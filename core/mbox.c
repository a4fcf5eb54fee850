/*
 * mbox.c - bounded MPSC mailbox on a Concurrency Kit ring with coalesced
 * wake-ups.
 *
 * Messages are stored by value (CK_RING_PROTOTYPE). Producers enqueue with
 * ck's multi-producer reserve (the same claim ck_ring_enqueue_mpsc makes),
 * copy the message into the slot and publish it with mbox__ring_commit(); the
 * single owner dequeues with the single-consumer dequeue. A ring of N slots
 * holds N - 1 messages, so the ring is sized to the power of two above
 * slots_max.
 *
 * Why not ck_ring_enqueue_mpsc itself: its publish step spins, without ever
 * yielding, until every earlier producer has published. When threads
 * outnumber cores and a producer is preempted between claiming and
 * publishing its slot, every later producer spins away its whole time slice;
 * producers posting back to back then form a convoy that advances one
 * message per scheduler tick (measured: 4 producers on 2 cores fell to a few
 * hundred messages a second). Our commit is the same two stores after a
 * bounded spin that then yields.
 *
 * The wake-up protocol uses one atomic flag, `pending`:
 *
 *   producer (mbox_post)                owner (mbox_take ... mbox_finish)
 *   P1 enqueue the message               O1 pending = false
 *   P2 full fence                        O2 full fence
 *   P3 if exchange(pending, true)        O3 if the ring is empty: return false
 *        was false: notify()             O4 if CAS(pending, false -> true)
 *                                             wins: return true (keep draining)
 *                                        O5 return false (a producer won P3
 *                                             and its notify will wake us)
 *
 * Hazard without the fences: the owner drains the ring, a producer enqueues
 * and reads pending == true (the owner has not cleared it yet), so it skips
 * notify; the owner then clears pending and, its read of the ring having been
 * reordered before the clear, sees an empty ring and goes idle. The message
 * sits in the ring with nobody to wake the owner. With both fences this is
 * Dekker's pattern: either the owner's O3 sees the message or the producer's
 * P3 sees pending == false, possibly both.
 *
 * Exactly one party handles the wake: when both see each other, P3 and O4
 * race on the same flag and only one of them moves it from false to true.
 * So between two mbox_finish() calls that return false, notify() runs at
 * most once, and `pending` is true exactly while the owner is scheduled,
 * running, or about to be notified. A notify can be spurious (the owner
 * drained the message in its O4 turn before the producer's P3): the owner
 * then takes nothing and finishes again, which is harmless.
 *
 * Once O1 has run, a producer may notify and a new owner turn may start
 * (another thread, for actors) while this thread is still in O2..O5. That is
 * safe: O3 only reads the ring counters and O4 only touches `pending`; and
 * O4 can win only after the new turn's own O1, so two turns never drain at
 * once.
 * For the same reason an owner that drains opportunistically (without having
 * been notified) may call mbox_finish() too: the worst case is one spurious
 * notify.
 */
#include "core/mbox.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ck_ring.h>

#include "core/base.h"

/* Largest mailbox: a ring of 2^24 slots of 24 bytes is 384 MiB. */
#define MBOX_SLOTS_MAX ((1u << 24) - 1)
#define MBOX_MAP_BYTES (256u * 1024) /* rings this big are mapped (slots_alloc) */
#define MBOX_CACHELINE 64
/*
 * Pauses a producer spends waiting for an earlier producer to publish before
 * it yields instead. Publishing takes nanoseconds, so a wait this long (a few
 * microseconds) means that producer lost its CPU: spinning on would only keep
 * it off the CPU for the rest of our time slice.
 */
#define MBOX_COMMIT_SPINS 128

CK_RING_PROTOTYPE(mbox, mbox_msg)

struct mbox {
    struct ck_ring ring; /* padded inside between consumer and producer counters */
    struct mbox_msg *slots;
    size_t slots_bytes;
    mbox_notify_fn notify;
    void *notify_arg;
    /* Producers and the owner both hit this flag: keep it off the ring's lines. */
    _Alignas(MBOX_CACHELINE) atomic_bool pending;
};

static_assert(sizeof(struct mbox_msg) == 24, "mailbox slots are three words");
static_assert(IS_POW2(MBOX_SLOTS_MAX + 1u), "ring sizes are powers of two");

static uint32_t pow2_above(uint32_t n)
{
    uint32_t p = 1;
    while (p <= n)
        p <<= 1;
    return p;
}

/*
 * A big ring is mapped, not taken from the heap: its pages become resident
 * only as messages first reach them, so a mailbox sized for a burst costs a
 * quiet owner next to nothing. (calloc gives no such promise: a reused heap
 * chunk is zeroed by writing every page.)
 */
static struct mbox_msg *slots_alloc(size_t bytes)
{
    if (bytes < MBOX_MAP_BYTES)
        return xcalloc(1, bytes);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TALLY_ASSERT(p != MAP_FAILED);
    return p;
}

struct mbox *mbox_create(uint32_t slots_max, mbox_notify_fn notify, void *arg)
{
    TALLY_ASSERT(slots_max >= 1);
    TALLY_ASSERT(slots_max <= MBOX_SLOTS_MAX);
    TALLY_ASSERT(notify != NULL);

    uint32_t size = pow2_above(slots_max);
    struct mbox *m = xaligned_alloc(MBOX_CACHELINE, sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->slots_bytes = (size_t)size * sizeof(*m->slots);
    m->slots = slots_alloc(m->slots_bytes);
    ck_ring_init(&m->ring, size);
    m->notify = notify;
    m->notify_arg = arg;
    atomic_init(&m->pending, false);
    TALLY_ASSERT(ck_ring_capacity(&m->ring) == size);
    return m;
}

void mbox_destroy(struct mbox *m)
{
    if (m == NULL)
        return;
    if (m->slots_bytes >= MBOX_MAP_BYTES)
        munmap(m->slots, m->slots_bytes);
    else
        free(m->slots);
    free(m);
}

void mbox__ring_commit(struct ck_ring *ring, unsigned ticket)
{
    for (unsigned spins = 0; ck_pr_load_uint(&ring->p_tail) != ticket; spins++) {
        if (spins < MBOX_COMMIT_SPINS)
            ck_pr_stall();
        else
            sched_yield(); /* an earlier producer was preempted mid-enqueue */
    }
    ck_pr_fence_store(); /* the slot contents are written before the slot is published */
    ck_pr_store_uint(&ring->p_tail, ticket + 1);
}

bool mbox_post(struct mbox *m, const struct mbox_msg *msg)
{
    TALLY_ASSERT(m != NULL);
    TALLY_ASSERT(msg != NULL);
    unsigned ticket;

    TALLY_HB_RELEASE(m); /* the payload written before posting is visible to the owner */
    TALLY_RACE_IGNORE_BEGIN();
    struct mbox_msg *slot = ck_ring_enqueue_reserve_mpsc_mbox(&m->ring, m->slots, &ticket);
    if (likely(slot != NULL)) {
        *slot = *msg;
        mbox__ring_commit(&m->ring, ticket);
    }
    TALLY_RACE_IGNORE_END();
    if (unlikely(slot == NULL))
        return false;

    /* P2: the enqueue must be visible before we read pending (Dekker with O2). */
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_exchange_explicit(&m->pending, true, memory_order_acq_rel))
        m->notify(m->notify_arg);
    return true;
}

unsigned mbox_take(struct mbox *m, struct mbox_msg *out, unsigned max)
{
    TALLY_ASSERT(m != NULL);
    TALLY_ASSERT(out != NULL || max == 0);
    unsigned n = 0;

    TALLY_RACE_IGNORE_BEGIN();
    while (n < max && ck_ring_dequeue_mpsc_mbox(&m->ring, m->slots, &out[n]))
        n++;
    TALLY_RACE_IGNORE_END();
    if (n > 0)
        TALLY_HB_ACQUIRE(m); /* pairs with TALLY_HB_RELEASE in mbox_post */
    TALLY_ASSERT(n <= max);
    return n;
}

bool mbox_finish(struct mbox *m)
{
    TALLY_ASSERT(m != NULL);
    TALLY_ASSERT(m->notify != NULL);

    atomic_store_explicit(&m->pending, false, memory_order_release); /* O1 */
    /* O2: the clear must be visible before we read the ring (Dekker with P2). */
    atomic_thread_fence(memory_order_seq_cst);
    if (ck_ring_size(&m->ring) == 0) /* O3 */
        return false;
    bool expected = false;
    /* O4: acquire so a turn we win sees what the losing producer published. */
    return atomic_compare_exchange_strong_explicit(&m->pending, &expected, true,
                                                   memory_order_acq_rel, memory_order_acquire);
}

unsigned mbox_size(const struct mbox *m)
{
    TALLY_ASSERT(m != NULL);
    return ck_ring_size(&m->ring);
}

void mbox_notify_eventfd(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint64_t one = 1;
    ssize_t w;

    TALLY_ASSERT(fd >= 0);
    do {
        w = write(fd, &one, sizeof(one));
    } while (w < 0 && errno == EINTR);
    /* EAGAIN: the counter is saturated, so the reader is already due to wake. */
    TALLY_ASSERT(w == (ssize_t)sizeof(one) || (w < 0 && errno == EAGAIN));
}
