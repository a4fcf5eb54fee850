/*
 * mbox.h - a bounded multi-producer, single-consumer mailbox on a Concurrency
 * Kit ring, with coalesced wake-ups.
 *
 * Messages are fixed-size and copied into the slot; big payloads travel as a
 * pointer in msg.ptr and their ownership moves only when mbox_post() returns
 * true. The consumer is notified only on the idle -> pending transition: the
 * owner keeps the mailbox "pending" while it drains, and mbox_finish() ends a
 * turn, telling the owner whether something arrived meanwhile.
 */
#ifndef TALLY_CORE_MBOX_H
#define TALLY_CORE_MBOX_H

#include <stdbool.h>
#include <stdint.h>

struct mbox_msg {
    uint32_t type; /* meaning is the owner's */
    uint32_t u32;
    uint64_t u64;
    void *ptr; /* owned by the receiver once posted */
};

struct mbox;

/** Called by a producer when the mailbox goes from idle to pending. Must not block. */
typedef void (*mbox_notify_fn)(void *arg);

/**
 * Creates a mailbox that holds up to slots_max messages (rounded up to a power
 * of two minus one). notify is called on the idle -> pending transition.
 */
struct mbox *mbox_create(uint32_t slots_max, mbox_notify_fn notify, void *arg);
/** Owner only, after every producer has stopped. */
void mbox_destroy(struct mbox *m);
/** Any thread. false when full: the caller keeps the payload and answers "busy". */
bool mbox_post(struct mbox *m, const struct mbox_msg *msg);
/** Owner only. Copies up to max messages into out; returns how many. */
unsigned mbox_take(struct mbox *m, struct mbox_msg *out, unsigned max);
/**
 * Owner only: ends a drain turn. Returns true when messages are still queued
 * and the owner must keep draining (no notify will come for them).
 */
bool mbox_finish(struct mbox *m);
/** Approximate number of queued messages; any thread. */
unsigned mbox_size(const struct mbox *m);

/** A notify function that writes 1 to the eventfd passed as arg (cast from intptr_t). */
void mbox_notify_eventfd(void *arg);

struct ck_ring;
/**
 * Internal to core (mbox.c, actor.c): publishes the slot reserved as `ticket`
 * on a multi-producer Concurrency Kit ring, after every earlier reservation.
 * Unlike ck's own commit it yields the CPU after a short spin, so producers
 * queued behind a descheduled one do not burn their time slices.
 */
void mbox__ring_commit(struct ck_ring *ring, unsigned ticket);

#endif
