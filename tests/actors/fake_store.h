/*
 * fake_store.h - an in-memory stand-in for store/store.h, for the actors'
 * tests.
 *
 * It implements store_submit, store_load, store_available and store_op_free
 * with the database's semantics for what the actors observe: ids and per
 * session seqs are assigned in commit order, a vote repeating a
 * (participant, key) completes STORE_DUPLICATE with the original, a second
 * vote on a poll STORE_CONFLICT, a taken join code STORE_CONFLICT;
 * EVENTS_SINCE returns the session's events after a seq, EVENTS_PRUNE is
 * counted. Ops complete on the fake's own thread, one at a time, in
 * submission order. Tests can make the next ops fail, hold completions back,
 * park the ops of one kind while others go on, forget old events (as the
 * retention would), and read the event payloads.
 */
#ifndef TALLY_TESTS_FAKE_STORE_H
#define TALLY_TESTS_FAKE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define FAKE_EVENTS_MAX 4096

struct fake_event {
    int64_t session_id;
    int64_t seq;
    enum store_op_kind kind;
    char *payload; /* NULL once forgotten */
};

/** Creates the fake and starts its thread. */
struct store *fake_store_create(void);
/** Completes what is queued, stops the thread and frees everything. */
void fake_store_destroy(struct store *s);

/**
 * The next count ops of kind complete with status without changing anything;
 * with commit, they are applied first (an acknowledgement lost after commit).
 */
void fake_store_fail_next(struct store *s, enum store_op_kind kind, enum store_status status,
                          unsigned count, bool commit);
/** While on, store_submit refuses every op (queue full). */
void fake_store_refuse(struct store *s, bool on);
/** While on, submitted ops wait; turning it off completes them in order. */
void fake_store_hold(struct store *s, bool on);
/** Ops submitted and not yet completed. */
unsigned fake_store_pending(struct store *s);
/** Waits until every submitted op has completed (on_done returned). */
void fake_store_wait_idle(struct store *s);

/** Commits a vote directly, as another instance would. Returns its id. */
int64_t fake_store_add_vote(struct store *s, const struct store_vote *v);
/** Copies the i-th event (in commit order); false past the end. Payload stays owned. */
bool fake_store_event(struct store *s, size_t i, struct fake_event *out);
/** Number of events. */
size_t fake_store_events(struct store *s);
/** Number of ops submitted so far (accepted by store_submit). */
uint64_t fake_store_submitted(struct store *s);

/**
 * While on, ops of kind wait aside, neither applied nor completed, while the
 * others go on; turning it off applies and completes them (reading the state
 * as it is then). Tests turn it off before destroying the fake.
 */
void fake_store_park(struct store *s, enum store_op_kind kind, bool on);
/** Ops parked now. */
size_t fake_store_parked(struct store *s);
/** Drops the events of session_id up to upto_seq, as the 24-hour retention would. */
void fake_store_forget_events(struct store *s, int64_t session_id, int64_t upto_seq);
/** EVENTS_PRUNE ops applied so far, and the retention the last one asked for. */
uint64_t fake_store_prunes(struct store *s, int64_t *keep_s);

#endif
