/*
 * actor.h - the actor runtime: a fixed pool of worker threads running actors
 * whose mailboxes have work.
 *
 * An actor runs on at most one worker at a time, so its state needs no lock:
 * everything that happens to it is serialised through its mailbox. A worker
 * takes a bounded batch (ACTOR_BATCH_MAX) per turn and requeues the actor if
 * more is left, so one busy actor cannot starve the others.
 */
#ifndef TALLY_CORE_ACTOR_H
#define TALLY_CORE_ACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/mbox.h"

#define ACTOR_BATCH_MAX 64

/**
 * Message type reserved by the runtime for ticks (see actor_set_tick). Owners
 * never post it; the worker calls on_tick instead of on_msg for it.
 */
#define ACTOR_MSG_TICK UINT32_MAX
/** Tick resolution: the timer thread wakes this often. */
#define ACTOR_TICK_RESOLUTION_MS 10

struct actor_rt;
struct actor;

/** Runs on the actor's thread, one message at a time. */
typedef void (*actor_on_msg_fn)(struct actor *a, void *ctx, const struct mbox_msg *msg);
/** Runs on the actor's thread every tick_ms while the actor exists (0 = no ticks). */
typedef void (*actor_on_tick_fn)(struct actor *a, void *ctx, uint64_t now_ms);

/** Creates a runtime with `threads` workers able to hold up to actors_max actors. */
struct actor_rt *actor_rt_create(unsigned threads, uint32_t actors_max);
/** Starts the workers. Returns 0 or -errno. */
int actor_rt_start(struct actor_rt *rt);
/**
 * Stops and joins the workers after they finish their current batch, and the
 * tick thread. Actors still scheduled stay queued; the runtime cannot restart.
 */
void actor_rt_stop(struct actor_rt *rt);
/**
 * Frees the runtime and every actor still in it. After stop. Messages still
 * queued are dropped without running: owners that post payloads drain first.
 */
void actor_rt_destroy(struct actor_rt *rt);

/**
 * Creates an actor with a mailbox of mbox_slots. Any thread. Returns NULL when
 * the runtime already holds actors_max actors.
 */
struct actor *actor_create(struct actor_rt *rt, uint32_t mbox_slots, actor_on_msg_fn on_msg,
                           void *ctx);
/** Any thread. false when the mailbox is full (backpressure for the caller). */
bool actor_post(struct actor *a, const struct mbox_msg *msg);
/** The ctx given at creation. */
void *actor_ctx(const struct actor *a);
/**
 * After actor_rt_stop: takes up to max messages still queued for a into out
 * (ticks included), so that their owner can free what they carry before
 * actor_rt_destroy drops them. Returns how many; 0 when none is left.
 */
unsigned actor_drain(struct actor *a, struct mbox_msg *out, unsigned max);
/** Number of messages waiting; any thread, approximate. */
unsigned actor_backlog(const struct actor *a);
/**
 * Calls on_tick on the actor's thread about every tick_ms (>= 10). Any thread;
 * tick_ms 0 stops the ticks. A tick is skipped, not queued twice, while the
 * previous one is still waiting in the mailbox.
 */
void actor_set_tick(struct actor *a, uint32_t tick_ms, actor_on_tick_fn on_tick);

#endif
