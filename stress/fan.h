/*
 * fan.h - the results fan-out measurement that `fanout` runs once and
 * `capacity` runs at growing N: idle WebSocket subscribers of one session
 * (the engine), HTTP voters at a steady rate on a fresh poll per step, and
 * the delivery latency from a vote's ack to the first `results` that
 * reflects it at each subscriber.
 *
 * Sampling: a `results` message that moves a subscriber from version a to
 * b (same poll) newly reflects votes a+1..b; it is charged to one of them,
 * k, picked at random. Versions count votes in commit order; the voters
 * number their votes both in the order they go out and in the order their
 * acks arrive (the same order up to the few votes in flight at once), so
 * vote k's ack time and send time are known. The latency is the message's
 * arrival minus vote k's ack, the client-side stand-in for its commit; a
 * message that beats the ack to this client counts as 0 (before_ack). The
 * same is kept from vote k going out (commit included: an upper bound) and
 * from the newest vote each message reflects going out (freshness). A
 * subscriber's first `results` for a poll counts from version 0: every
 * step's poll opens after its subscribers are connected.
 */
#ifndef TALLY_STRESS_FAN_H
#define TALLY_STRESS_FAN_H

#include <stdint.h>

#include "stress/engine.h"
#include "stress/hist.h"
#include "stress/scen.h"

#define FAN_DRAIN_MS 1000 /* after the last ack: coalesced results still come */
#define FAN_QUIESCE_MS 50 /* lets engine threads see `measuring` change before stats are read */

struct fan;

/* One measured step. */
struct fan_step {
    uint32_t subscribers;             /* ready when the votes started */
    uint64_t connect_failed, dropped; /* over the step */
    double connect_s;                 /* time to get the new subscribers ready */
    uint64_t rss_joined, rss_idle;    /* server RSS before and after they connected (idle) */
    uint64_t votes_planned, votes_acked, vote_errors, vote_refused;
    uint64_t delivered;  /* results messages of the step's poll */
    uint64_t unmatched;  /* a version above the votes this run sent: not charged */
    uint64_t before_ack; /* arrived before the ack of the vote charged */
    uint64_t stale;      /* a version not above the last one seen */
    uint64_t behind;     /* subscribers whose last results missed acked votes after the drain */
    double run_s;
    struct hist lat;       /* delivery latency from the vote's ack (0 when it came later), ns */
    struct hist from_send; /* the same from the vote going out */
    struct hist newest;    /* from the newest vote each message reflects going out */
    struct hist ack;       /* vote ack latency (HTTP), ns */
    struct scen_server before, after; /* the server around the step */
};

/**
 * Creates the session, joins the voters (rate x seconds of them), starts
 * an engine sized for max_subs. Exits 1 after printing why on failure.
 */
struct fan *fan_create(const struct scen_opts *o, uint32_t max_subs, unsigned rate,
                       unsigned seconds);

/**
 * Joins and connects subscribers up to n and waits for their hellos
 * (bounded); fills the connection part of *st. 0 or -EPROTO (joins failed).
 */
int fan_grow(struct fan *f, uint32_t n, struct fan_step *st);

/** A fresh poll, votes at the rate for the seconds, the drain; fills the rest of *st. */
int fan_measure(struct fan *f, struct fan_step *st);

/** The joins so far (for the report). */
const struct scen_joins *fan_joins(const struct fan *f);

/** Engine threads in use. */
unsigned fan_threads(const struct fan *f);

/** Stops the engine, sums its stats into *es and frees f. */
void fan_destroy(struct fan *f, struct eng_stats *es);

#endif
