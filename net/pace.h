/*
 * pace.h - results pacing on a network thread while it is saturated.
 *
 * Results are the one message whose cost grows with the audience and that a
 * newer one makes useless. When a network worker is awake nearly all the
 * time, or thousands of its requests wait with the actors (a vote burst to
 * a large audience), each poll's results go out on its rings at most once
 * per hold, the newest waiting one replacing older ones, so votes, acks and
 * sequenced events are not starved by sends that the next results would
 * supersede anyway. A poll first offered under a hold waits one hold too
 * (under a burst, its first results to the whole audience would be the
 * costliest send of all, and superseded within the hold). Below saturation
 * the hold is 0 and nothing is held: results go out as the session actor
 * sends them (at most one per poll per 100 ms).
 *
 * Order: what is held is older than anything the actor sends later, so a
 * session's held results are taken out (and sent) before its next
 * sequenced event, which keeps "no results after poll.closed", and before a
 * new subscriber joins, which keeps "version only grows" for it.
 *
 * One struct pace per ring, used by that ring's thread only.
 */
#ifndef TALLY_NET_PACE_H
#define TALLY_NET_PACE_H

#include <stdbool.h>
#include <stdint.h>

#include "actors/stream.h"

#define PACE_POLLS_MAX 256       /* polls paced on one ring; beyond, not paced */
#define PACE_IDLE_MS 10000       /* a paced poll quiet this long is forgotten */
#define PACE_BUSY_HIGH 0.9       /* a worker awake this share of the time: saturated */
#define PACE_BUSY_LOW 0.6        /* below this share: room again */
#define PACE_HOLD_MS_MIN 100     /* first hold: one more coalescing window */
#define PACE_HOLD_MS_MAX 6400    /* bars still move at least this often */

struct pace;

/** An empty pacer. */
struct pace *pace_create(void);
/** Frees the pacer and drops (unreferences) whatever it holds. */
void pace_destroy(struct pace *p);

/**
 * The next hold from the current one and the share of the last period the
 * worker was awake (0..1): doubled from PACE_HOLD_MS_MIN up to
 * PACE_HOLD_MS_MAX while saturated, halved down to 0 once there is room.
 */
uint32_t pace_next_hold_ms(uint32_t hold_ms, double busy);

/**
 * Offers a results message at now_ms under hold_ms. Returns true when it is
 * kept back (the pacer takes m's reference, dropping an older one of the
 * same poll): within hold_ms of the poll's last results on this ring, or of
 * its first offer; false when it is to be sent now (the caller keeps m).
 */
bool pace_offer(struct pace *p, struct stream_msg *m, uint32_t hold_ms, uint64_t now_ms);

/**
 * Takes one held message of session_id, to be sent before that session's
 * next message; NULL when none is left. The caller owns the reference.
 */
struct stream_msg *pace_take_session(struct pace *p, int64_t session_id, uint64_t now_ms);

/**
 * Takes one held message whose hold is over at now_ms (any, when hold_ms is
 * 0), and forgets polls quiet for PACE_IDLE_MS; NULL when none is due.
 */
struct stream_msg *pace_take_due(struct pace *p, uint32_t hold_ms, uint64_t now_ms);

/**
 * True when a held message may be due at now_ms (pace_take_due would look):
 * a ring with nothing else to do still needs a turn then, or what it holds
 * would wait for the ring's next traffic.
 */
bool pace_has_due(const struct pace *p, uint32_t hold_ms, uint64_t now_ms);

/** True when nothing is held or remembered. */
bool pace_idle(const struct pace *p);

#endif
