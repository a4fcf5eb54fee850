/*
 * hvotes.h - the voting loop of `tally-stress votes`: HTTP/1.1 keep-alive
 * clients driven by io_uring, a few threads with one ring each, instead of
 * one blocked thread per client. On loopback an answer to a thread blocked
 * in recv() wakes that thread inside tallyd's send path, so a thread per
 * client charges tallyd a wake-up per vote; a ring collects the answers of
 * all its clients in one wait.
 *
 * Each client has one connection from its own source address and one vote
 * in flight: it votes with participant 0, 1, ..., n-1 on poll 0, then on
 * poll 1, and so on, until the deadline or the last pair. The request is
 * the one httpc_request() writes (Bearer token, Idempotency-Key
 * "k-INDEX-POLL-PART", body {"choice":[1]}).
 */
#ifndef TALLY_STRESS_HVOTES_H
#define TALLY_STRESS_HVOTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stress/hist.h"

#define HVOTES_TOKEN_MAX 80  /* a participant token, NUL included */
#define HVOTES_SOURCE_MAX 32 /* a dotted IPv4 source address, NUL included */
#define HVOTES_TIMEOUT_S 30  /* a connect or a request unanswered this long fails */
#define HVOTES_THREADS_MAX 64

/* One voting client: what it votes as and where it connects from. */
struct hvotes_voter {
    unsigned index;                   /* in the Idempotency-Key */
    char source[HVOTES_SOURCE_MAX];   /* local address to bind */
    char (*tokens)[HVOTES_TOKEN_MAX]; /* read only */
    unsigned n_tokens;
};

struct hvotes_config {
    const char *host; /* dotted IPv4 */
    uint16_t port;
    const struct hvotes_voter *voters;
    unsigned n_voters;
    const int64_t *polls;
    unsigned n_polls;
    unsigned threads;     /* rings; voter k runs on thread k % threads */
    uint64_t deadline_ns; /* CLOCK_MONOTONIC: no vote starts after it */
};

/* What the clients saw. */
struct hvotes_result {
    struct hist hist;      /* ack latency of the 201s, send to complete answer */
    uint64_t ok;           /* 201 */
    uint64_t errors;       /* transport: connect, send, receive, timeout, malformed answer */
    uint64_t other;        /* any other status */
    uint64_t by_status[6]; /* other answers by status class: 1xx..5xx */
};

/**
 * Runs the voters until each is past the deadline or its last pair, and
 * fills out. A client whose connection fails counts a transport error and
 * reconnects; a second failure in a row ends that client. Blocks the
 * calling thread; returns 0 or -errno when a ring could not be set up.
 * cfg and everything it points to must stay untouched until it returns.
 */
int hvotes_run(const struct hvotes_config *cfg, struct hvotes_result *out);

enum hvotes_parse {
    HVOTES_PARSE_OK,    /* a complete answer: head and Content-Length body */
    HVOTES_PARSE_AGAIN, /* a prefix of one: more bytes needed */
    HVOTES_PARSE_E_BAD, /* not an HTTP/1.x answer tallyd sends */
};

struct hvotes_answer {
    int status;
    size_t len; /* head + body; bytes after it are not part of the answer */
    bool close; /* Connection: close */
};

/**
 * Parses the answer at the start of buf[0..len). Bodies are framed by
 * Content-Length only (absent means empty); Transfer-Encoding is E_BAD.
 * Pure: any thread.
 */
enum hvotes_parse hvotes_parse_answer(const char *buf, size_t len, struct hvotes_answer *out);

#endif
