/*
 * scen.h - what the engine-based tally-stress scenarios (fanout, burst,
 * capacity, join, resume, soak) share: their common options, the setup a
 * presenter does over HTTP (session, polls, opening them), joining many
 * participants in parallel with the join latency measured, HTTP voters at
 * a steady rate, samples of the server's RSS and CPU from /proc, and the
 * JSON pieces every report uses.
 *
 * Setup runs on the main thread; scen_join() and scen_voters_run() start
 * and join their own threads. Option parsing prints the reason and exits 2
 * on bad input: it serves a command line.
 */
#ifndef TALLY_STRESS_SCEN_H
#define TALLY_STRESS_SCEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "stress/engine.h"
#include "stress/hist.h"

#define SCEN_TOKEN_MAX 96
#define SCEN_JOIN_THREADS 16
#define SCEN_JOIN_CHUNK 500 /* joins per source address in a row */
#define SCEN_JOIN_RETRIES 5 /* a 429 or 503 is retried after Retry-After (1 s) */
#define SCEN_VOTER_THREADS 4
#define SCEN_SECONDS_MAX 3600
#define SCEN_DEADLINE_SLACK_S 600 /* a run ends at most this long after its planned length */

/* Options every scenario takes. */
struct scen_opts {
    char host[64];
    uint16_t port;
    unsigned threads; /* engine threads at the least */
    unsigned sources; /* source addresses 127.0.0.2 .. */
    long server_pid;  /* 0: no server measurements */
    const char *json_path;
    const char *proto;   /* tally.v1.json */
    unsigned deadline_s; /* the whole run's bound; 0: derived from the scenario */
};

/** Sets the defaults: 127.0.0.1:8080, 2 threads, 8 sources, json subprotocol. */
void scen_opts_init(struct scen_opts *o);

/**
 * Takes flag/val when it is a common option (--target, --threads,
 * --sources, --server-pid, --json, --proto, --deadline); returns false
 * otherwise.
 */
bool scen_opts_take(struct scen_opts *o, const char *flag, const char *val);

/** Arms a watchdog that ends the process (exit 3) once deadline_s have passed. */
void scen_deadline_arm(unsigned deadline_s);

/* A session made by the presenter. */
struct scen_session {
    char code[8];
    char presenter_token[SCEN_TOKEN_MAX];
};

/** Creates a session. 0 or -EPROTO (after printing why). */
int scen_session_create(const struct scen_opts *o, const char *title, struct scen_session *s);

/** Creates a single-choice poll with `options` options (2..8). 0 or -EPROTO. */
int scen_poll_create(const struct scen_opts *o, const struct scen_session *s, unsigned options,
                     int64_t *poll_id);

/**
 * Opens (open = true) or closes a poll (closed already counts as closed);
 * *sent_ns is when the request went out. 0 or -EPROTO.
 */
int scen_poll_state(const struct scen_opts *o, const struct scen_session *s, int64_t poll_id,
                    bool open, uint64_t *sent_ns);

/* Joined participants and how joining went; tokens never move once allocated. */
struct scen_joins {
    char (*tokens)[SCEN_TOKEN_MAX];
    uint32_t cap;
    uint32_t n;      /* tokens[0..n-1] are joined */
    uint32_t target; /* while joining: up to here */
    atomic_uint next_chunk;
    atomic_ullong ok, errors, retries;
    double seconds;  /* spent joining, over every call */
    struct hist lat; /* per join, ns */
};

/** Allocates room for cap tokens. */
void scen_joins_init(struct scen_joins *j, uint32_t cap);

/**
 * Joins participants n..upto-1 (upto <= cap) from SCEN_JOIN_THREADS threads;
 * 0 or -EPROTO (then n is unchanged).
 */
int scen_join(const struct scen_opts *o, const struct scen_session *s, struct scen_joins *j,
              uint32_t upto);

/** Frees what scen_join() allocated. */
void scen_joins_free(struct scen_joins *j);

/* HTTP voters: one vote per token at `rate` per second, acks stamped in order. */
struct scen_voters {
    const struct scen_opts *o;
    int64_t poll_id;
    const char (*tokens)[SCEN_TOKEN_MAX]; /* one per vote */
    uint32_t n;
    unsigned rate;
    const char *key_prefix;    /* Idempotency-Key prefix, unique per poll */
    _Atomic uint64_t *ack_ns;  /* [1..n]: when the k-th ack arrived */
    _Atomic uint64_t *sent_ns; /* [1..n]: when the k-th vote went out */
    atomic_uint acked;
    atomic_uint sent;
    atomic_ullong errors, refused; /* transport errors; answers other than 201 */
    struct hist lat;
};

/** Runs the voters to the end (or deadline_ns); fills acked/errors/lat. */
void scen_voters_run(struct scen_voters *v, uint64_t deadline_ns);

/* A sample of the server from /proc. */
struct scen_server {
    uint64_t rss;    /* bytes; 0 when unknown */
    uint64_t cpu_us; /* user + system */
    bool known;
};

/** Samples pid (0: unknown). */
struct scen_server scen_server_sample(long pid);

/** {"n","p50","p90","p95","p99","p999","max"} of h (ns) in ms. */
json_t *scen_hist_json(const struct hist *h);

/** One line "p50 X  p90 X  p95 X  p99 X  p99.9 X  max X" (ms) into out. */
void scen_hist_line(const struct hist *h, char *out, size_t cap);

/** {"socket":N,...} of the engine's errors by kind. */
json_t *scen_errors_json(const struct eng_stats *st);

/** Prints "client errors: kind N (last: reason), ..." or "client errors: none". */
void scen_errors_print(const struct eng_stats *st);

/** Writes root to path (when path is set) and drops it. Prints an error on failure. */
void scen_json_write(const char *path, json_t *root);

/** This process's user + system CPU time so far, in seconds. */
double scen_self_cpu_s(void);

/** RFC 3339 UTC now into out. */
void scen_now_rfc3339(char *out, size_t cap);

#endif
