/*
 * engine.h - tally-stress's client engine: many WebSocket clients of tallyd
 * driven by a few threads, one io_uring each, in one process.
 *
 * The process may hold at most 20,000 fds, so sockets live in each ring's
 * table of direct descriptors instead: a client's plain socket is created,
 * bound to its source address (127.0.0.2 and up, port picked at connect
 * time), installed into its slot with io_uring_register_files_update and
 * closed at once; connect, send and receive then name the slot. A ring's
 * table holds ENG_SLOTS_PER_RING clients, so N clients take
 * ceil(N / ENG_SLOTS_PER_RING) rings (threads) or more.
 *
 * Client i belongs to thread i % threads and to source address
 * 127.0.0.(2 + i % sources): one address gives ~28k ports per destination.
 * Each client speaks RFC 6455 as a browser does: random key, 101 checked
 * against it, masked frames, pongs to pings. It counts as ready at its
 * first text message that starts with {"type":"hello". Every text message
 * (hello included) goes to the scenario's on_message on the client's
 * thread; the scenario sends with eng_send_text() from that thread only.
 * With the tally.v1.msgpack subprotocol, binary MessagePack messages are
 * handed over as the compact JSON the json subprotocol carries, and what
 * the scenario sends is packed as MessagePack (mpjson.h). With
 * ENG_PROTO_SSE a client opens the session's /events instead (same query:
 * token, since), checks the 200 and its content type, and hands each
 * event's data line over as a text message; it cannot send.
 *
 * Counters written by many threads are atomics; histograms and the error
 * counts by kind belong to their thread and are read after eng_stop().
 */
#ifndef TALLY_STRESS_ENGINE_H
#define TALLY_STRESS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stress/hist.h"
#include "stress/wsc.h"

#define ENG_CLIENTS_MAX 400000
#define ENG_SLOTS_PER_RING 16000 /* below the 20,000 fd limit that also caps a ring's table */
#define ENG_THREADS_MAX 64
#define ENG_SOURCES_MAX 250        /* 127.0.0.2 .. 127.0.0.251 */
#define ENG_RBUF_BYTES 4096        /* per client: tallyd's messages are far smaller */
#define ENG_WBUF_BYTES 768         /* per client: the upgrade request, a vote, pongs */
#define ENG_PATH_MAX 320           /* request path with query and token */
#define ENG_INFLIGHT_MAX 256       /* handshakes in flight per thread: under the listen backlog */
#define ENG_HANDSHAKE_TIMEOUT_S 30 /* connect to hello */
#define ENG_TICK_MS 5              /* how often on_tick runs at the least */
#define ENG_PROTO_SSE "sse"        /* eng_config.proto for Server-Sent Events clients */

/* Why a client failed, for the report. */
enum eng_err {
    ENG_ERR_SOCKET,    /* socket, bind or slot install */
    ENG_ERR_CONNECT,   /* connect refused or failed */
    ENG_ERR_HANDSHAKE, /* not a 101 with the right accept */
    ENG_ERR_TIMEOUT,   /* no hello within ENG_HANDSHAKE_TIMEOUT_S */
    ENG_ERR_CLOSED,    /* the server closed (close frame or EOF) */
    ENG_ERR_RECV,      /* receive error */
    ENG_ERR_SEND,      /* send error or send buffer full */
    ENG_ERR_FRAME,     /* malformed frame or a message over the buffer */
    ENG_ERR_KINDS
};

/** The name of an error kind, for reports. */
const char *eng_err_name(enum eng_err e);

struct eng;
struct eng_thread;

/** Writes client index's request path (query and token included) into out; length or < 0. */
typedef int (*eng_path_fn)(void *ctx, uint32_t index, char *out, size_t cap);

/** A final text frame f of client index arrived at now_ns. Runs on the client's thread. */
typedef void (*eng_msg_fn)(void *ctx, struct eng_thread *t, uint32_t index,
                           const struct wsc_frame *f, uint64_t now_ns);

/** Runs on each thread at least every ENG_TICK_MS while the engine runs. */
typedef void (*eng_tick_fn)(void *ctx, struct eng_thread *t, uint64_t now_ns);

struct eng_config {
    const char *host; /* IPv4 target */
    uint16_t port;
    uint16_t port2;   /* 0: one target; else clients with an odd index connect to host:port2 */
    uint32_t max_clients; /* 1..ENG_CLIENTS_MAX: sizes the rings */
    unsigned threads;     /* at least this many; raised to fit max_clients */
    unsigned sources;     /* source addresses 127.0.0.2 .. ; 1..ENG_SOURCES_MAX */
    const char *proto;    /* "tally.v1.json", "tally.v1.msgpack" or ENG_PROTO_SSE */
    eng_path_fn path;
    eng_msg_fn on_message;
    eng_tick_fn on_tick; /* may be NULL */
    void *ctx;
};

/* Per-thread results, summed by eng_stats(). */
struct eng_stats {
    uint64_t ready, failed_before_ready, dropped_after_ready;
    uint64_t errors[ENG_ERR_KINDS];
    int last_errno[ENG_ERR_KINDS]; /* the last errno seen of each kind (0: none or not a syscall) */
    int last_refusal;              /* the HTTP status of the last upgrade answered without 101 */
    int last_close_code;           /* the status of the last close frame from the server */
    uint64_t frames_in, bytes_in, bytes_out, pings;
    struct hist connect_ns; /* socket to connected */
    struct hist hello_ns;   /* connected to hello */
    struct hist resume_ns;  /* eng_reconnect() to the new hello */
    uint64_t resumes;       /* eng_reconnect() calls */
};

/** Starts the threads; no client connects before eng_open(). NULL with a message on failure. */
struct eng *eng_start(const struct eng_config *cfg);

/** Asks for clients 0..n-1 to be open (n <= max_clients); returns at once. Any thread. */
void eng_open(struct eng *e, uint32_t n);

/** Ready, failed-before-ready and dropped-after-ready clients so far. Any thread. */
void eng_count(const struct eng *e, uint64_t *ready, uint64_t *failed, uint64_t *dropped);

/**
 * Waits until every client asked for is ready or failed, or timeout_s has
 * passed. Returns the seconds waited.
 */
double eng_wait_ready(const struct eng *e, unsigned timeout_s);

/** The thread count, and which thread t is (0-based). */
unsigned eng_threads(const struct eng *e);
unsigned eng_thread_id(const struct eng_thread *t);

/**
 * Queues a masked text frame with payload for client index (which must
 * belong to t). Returns 0, or -ENOTCONN / -ENOSPC (counted as a send error).
 */
int eng_send_text(struct eng_thread *t, uint32_t index, const void *payload, size_t len);

/**
 * Drops client index (of thread t) on purpose, as a phone losing its
 * network, and connects it again at once (the path callback runs again, so
 * the scenario can ask to resume with `since`). Not counted as an error;
 * the time from the drop to the new hello goes to resume_ns. Returns 0, or
 * -ENOTCONN when the client is not ready.
 */
int eng_reconnect(struct eng_thread *t, uint32_t index);

/** Whether client index (of thread t) has had its hello and is still open. */
bool eng_is_ready(const struct eng_thread *t, uint32_t index);

/** Stops and joins the threads (closing every client) and sums their stats into *out. */
void eng_stop(struct eng *e, struct eng_stats *out);

/** Client-side memory of the engine in bytes (its client tables). */
uint64_t eng_client_bytes(const struct eng *e);

#endif
