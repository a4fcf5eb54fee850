/*
 * fanout_common.h - what the tally-stress scenarios share: the monotonic
 * clock and sleeps, option parsing helpers, /proc readers for the server
 * under test, the fd limit check, and the epoll pool of idle WebSocket
 * subscribers that `fanout-nchan` (nginx + nchan) drives. The tallyd
 * scenarios use the io_uring engine (engine.h), which the fd limit does not
 * bind.
 *
 * Subscriber pool: N connections spread over T epoll threads, each opened
 * from 127.0.1.x with at most FO_INFLIGHT_MAX handshakes in flight per
 * thread. A connection counts as ready either at its 101 or at its first
 * text message starting with a given prefix (tallyd's hello); ready,
 * connect_errors and dropped are atomics any thread may read. Every other
 * per-thread counter is written only by its subscriber thread and read
 * after fo_subs_finish() joined it. Pongs answer pings; a close frame, a
 * malformed frame or a full receive buffer drops the connection.
 *
 * Option parsing helpers print the reason and exit(2) on bad input: they
 * serve a command line, not a library caller.
 */
#ifndef TALLY_STRESS_FANOUT_COMMON_H
#define TALLY_STRESS_FANOUT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stress/hist.h"
#include "stress/wsc.h"

#define FO_SUBSCRIBERS_MAX 19000 /* the fd limit here is 20000 per process */
#define FO_THREADS_MAX 16
#define FO_SUB_ADDRS 8      /* subscribers connect from 127.0.1.1 .. 127.0.1.8 */
#define FO_RBUF_BYTES 8192  /* per connection: every message measured is far smaller */
#define FO_INFLIGHT_MAX 256 /* handshakes in flight per thread: stays under the backlog */
#define FO_EPOLL_BATCH 256
#define FO_POLL_MS 50      /* epoll wait and readiness polling period */
#define FO_UPGRADE_MAX 512 /* the upgrade request, token and path included */
#define FO_FD_SPARE 64     /* fds beyond the subscribers: HTTP clients, epoll sets, /proc */

/** Now on CLOCK_MONOTONIC, in ns. Any thread. */
uint64_t fo_now_ns(void);

/** Sleeps ms milliseconds, resuming after signals. Any thread. */
void fo_sleep_ms(unsigned ms);

/** Sleeps until CLOCK_MONOTONIC reaches due_ns (at once when it has passed). Any thread. */
void fo_sleep_until_ns(uint64_t due_ns);

/** ns as milliseconds, for reports. */
double fo_ms(uint64_t ns);

/* The delivery latency quantiles every fan-out report prints, in ms. */
struct fo_latency_ms {
    double p50, p95, p99, max;
};

/** The p50/p95/p99/max of h (values in ns) in ms. */
struct fo_latency_ms fo_latency_ms(const struct hist *h);

/**
 * Steps *i over one "--flag value" pair of argv (start with *i = 2, after
 * the subcommand). Returns 1 with *flag and *val set, 0 after the last pair,
 * or -EINVAL when the last flag has no value (the caller prints its usage).
 */
int fo_opt_next(int argc, char **argv, int *i, const char **flag, const char **val);

/**
 * Parses v as a decimal in lo..hi; on anything else prints which flag was
 * wrong and exits with status 2.
 */
unsigned fo_parse_uint(const char *flag, const char *v, unsigned lo, unsigned hi);

/**
 * Splits v = HOST:PORT into host (cap bytes) and *port. Returns -EINVAL when
 * there is no ':' or the host does not fit, so the caller prints its own
 * usage; a bad port exits as fo_parse_uint() does.
 */
int fo_parse_target(const char *v, char *host, size_t cap, uint16_t *port);

/**
 * Reads /proc/PID/stat: *ppid and the user + system CPU time in *cpu_us.
 * False (outputs untouched) when pid <= 0 or the process is gone.
 */
bool fo_proc_stat(long pid, long *ppid, uint64_t *cpu_us);

/**
 * The kB value on the line of /proc/PID/file starting with key, in bytes
 * (the last such line); 0 when pid <= 0 or the file or line is missing.
 */
uint64_t fo_proc_kb(long pid, const char *file, const char *key);

/**
 * Raises the soft fd limit to the hard one. Returns -EMFILE (after saying
 * so) when `subscribers` sockets plus FO_FD_SPARE do not fit, or -errno.
 */
int fo_fd_limit_check(unsigned subscribers);

/* Delivery counters of one subscriber thread, or their sum over all. */
struct fo_sub_stats {
    uint64_t delivered; /* messages counted while measuring */
    uint64_t unmatched; /* fanout: results whose version had no recorded ack */
    uint64_t gaps;      /* fanout-nchan: sequence numbers skipped */
    uint64_t malformed; /* fanout-nchan: messages without seq or t_ns */
    struct hist hist;   /* delivery latency, ns */
};

/**
 * Formats the upgrade request of subscriber `index` with Sec-WebSocket-Key
 * key into out (cap bytes). Returns its length, or < 0 when it does not fit.
 * Runs on a subscriber thread.
 */
typedef int (*fo_format_upgrade_fn)(void *ctx, unsigned index, const char *key, char *out,
                                    size_t cap);

/**
 * A final text or binary frame f arrived at now_ns on a ready connection
 * (or, for a text frame, on one still waiting for its ready prefix).
 * conn_seq is one word of per-connection state the scenario owns, 0 at
 * first. Runs on the connection's subscriber thread, which owns st.
 */
typedef void (*fo_on_message_fn)(void *ctx, struct fo_sub_stats *st, uint64_t *conn_seq,
                                 const struct wsc_frame *f, uint64_t now_ns);

/* What the pool connects to and how a scenario reads what arrives. */
struct fo_subs_config {
    const char *host; /* an IPv4 address */
    uint16_t port;
    unsigned subscribers; /* 1..FO_SUBSCRIBERS_MAX */
    unsigned threads;     /* 1..FO_THREADS_MAX */
    /* NULL: ready at the 101. Otherwise ready at the first text message
     * starting with this, which is not passed to on_message. */
    const char *ready_prefix;
    fo_format_upgrade_fn format_upgrade;
    fo_on_message_fn on_message;
    void *ctx; /* passed to both callbacks; must outlive the pool */
};

/* The pool: opaque, owned by the thread that started it. */
struct fo_subs;

/**
 * Starts cfg->threads subscriber threads, which connect cfg->subscribers
 * WebSockets and read them until fo_subs_finish(). cfg is copied.
 */
struct fo_subs *fo_subs_start(const struct fo_subs_config *cfg);

/** Ready connections, connects that failed before ready, and drops after. Any thread. */
void fo_subs_count(const struct fo_subs *s, unsigned *ready, unsigned *errors, unsigned *dropped);

/**
 * Waits until every subscriber is ready or failed, or base_s seconds plus
 * one per 1000 subscribers have passed. Returns the seconds waited.
 */
double fo_subs_wait_ready(const struct fo_subs *s, unsigned base_s);

/**
 * Stops and joins the threads, closes every connection, writes the summed
 * counters into *total and the final counts, and frees s.
 */
void fo_subs_finish(struct fo_subs *s, struct fo_sub_stats *total, unsigned *ready,
                    unsigned *errors, unsigned *dropped);

#endif
