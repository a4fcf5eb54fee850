/*
 * conn.h - the network threads' internal types, shared by server.c (rings,
 * accept, I/O, HTTP) and live.c (WebSocket, SSE, broadcasts). Not a public
 * interface: everything here runs on the thread that owns the connection.
 */
#ifndef TALLY_NET_CONN_H
#define TALLY_NET_CONN_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <liburing.h>

#include "actors/api.h"
#include "actors/stream.h"
#include "core/buf.h"
#include "core/rbuf.h"
#include "core/tlist.h"

#define NET_FILES_PER_RING 16384
#define NET_ACCEPTS_INFLIGHT 32
#define NET_RETRY_AFTER_S 1
#define NET_SUB_QUEUE_MAX 256      /* stream messages queued on one subscriber before 1013 */
#define NET_WS_PING_MS 20000       /* ping a silent WebSocket peer this often */
#define NET_WS_SILENCE_MS_MAX 60000 /* close a WebSocket peer silent this long */
#define NET_SSE_HEARTBEAT_MS 15000
#define NET_INFLIGHT_MAX (NET_FILES_PER_RING) /* requests with the actors, per thread */

struct net_server;
struct hmap;
struct http_req;
struct route_match;
struct ws_parser;

enum conn_state { CONN_FREE, CONN_OPEN, CONN_CLOSING };
enum conn_mode { MODE_HTTP, MODE_WS, MODE_SSE };

/* What a queued chunk is, so a slow subscriber's queue can be coalesced. */
enum chunk_kind { CHUNK_OTHER, CHUNK_SEQUENCED, CHUNK_RESULTS, CHUNK_PRESENCE };

struct out_chunk {
    struct out_chunk *next;
    struct rbuf *rb; /* shared bytes; a broadcast's are sent to many connections */
    size_t off;
    uint8_t kind; /* enum chunk_kind */
    int64_t poll_id;
};

struct conn {
    uint16_t gen;
    uint8_t state;
    uint8_t mode;
    bool recv_armed;
    bool recv_starved; /* in the thread's starved list: its receive ended for want of a buffer */
    bool send_inflight;
    bool send_pending; /* in the thread's flush list: a send is armed at the end of the turn */
    bool close_submitted;
    bool waiting;          /* an HTTP request (or a subscription) is with the actors */
    bool close_after_send; /* Connection: close, or an error that ends the connection */
    bool head_req;         /* the request being answered is HEAD: headers only */
    bool head_only;        /* the request waiting is a HEAD */
    bool sub_is_participant;
    uint8_t ws_proto;       /* enum ws_proto */
    uint8_t ws_votes;       /* votes of this WebSocket with the actors */
    uint8_t addr[16];       /* peer, IPv4 mapped into IPv6 */
    struct http_parser *parser;
    struct ws_parser *ws;
    struct buf in; /* bytes received but not yet parsed */
    size_t in_off;
    struct out_chunk *out_head, *out_tail;
    uint32_t out_msgs; /* stream chunks queued */
    struct tlist_node timer; /* head, keep-alive, ping or heartbeat timer */
    struct rbuf *upgrade_answer; /* the 101, sent once the subscription is accepted */
    uint64_t last_rx_ms;
    /* Subscription (MODE_WS, MODE_SSE): the session's list on this thread. */
    int64_t session_id;
    int64_t subscriber_id;
    struct conn *sub_prev, *sub_next;
    char code[API_CODE_LEN + 1];
    char token[API_TOKEN_MAX + 1]; /* for votes sent over the WebSocket */
};

struct accept_slot {
    struct sockaddr_storage addr;
    socklen_t len;
    bool armed;
};

/* A ring and everything it owns ("thread" for history: a worker thread may
 * drive several rings, see struct net_worker). */
struct net_thread {
    struct net_server *srv;
    unsigned index;
    struct io_uring ring;
    bool fixed; /* direct descriptors; plain fds when the kernel lacks them */
    int listen_fd;
    int wake_fd;
    struct mbox *mbox;
    struct conn *conns;
    struct accept_slot accepts[NET_ACCEPTS_INFLIGHT];
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned bufs_returned; /* added to the buffer ring, not yet published */
    struct tlist head_timeouts;
    struct tlist idle_timeouts;
    struct tlist ping_timers;      /* WebSocket subscribers */
    struct tlist heartbeat_timers; /* SSE subscribers */
    struct hmap *subs;             /* session id -> first subscriber conn */
    struct __kernel_timespec tick_ts;
    bool wake_armed;
    unsigned open; /* connections of this thread not yet freed */
    unsigned inflight; /* requests of this thread with the actors */
    uint64_t wake_value;
    uint64_t now_ms;
    /* Results pacing (net/pace.h): the hold is set by the worker. */
    uint32_t results_hold_ms;
    struct pace *pace;
    uint64_t idle_ns; /* time this ring's worker slept in it since the last pacing */
    /* Connections given output this turn whose send is not armed yet: armed
     * together at the end of the turn, so what a turn queues on one
     * connection (an answer, results of several polls) leaves as one send. */
    uint32_t *flush;
    uint32_t n_flush;
    /* Connections whose receive ended with -ENOBUFS, oldest first (slot and
     * generation): armed again a few at a time as buffers come back, not
     * all at once into a buffer ring that is still empty. */
    uint32_t *starved;
    uint32_t starved_head, n_starved;
};

/* One network thread: drives rings[0..n_rings), sleeping in rings[0]. */
struct net_worker {
    struct net_server *srv;
    pthread_t tid;
    struct net_thread **rings;
    unsigned n_rings;
    uint64_t pace_t0_ns; /* start of the current pacing period */
    uint32_t hold_ms;    /* results pacing of this worker's rings, 0: none */
};

struct net_server {
    const struct config *cfg;
    struct actors *actors;
    struct store *store;
    unsigned nthreads; /* rings */
    struct net_thread *threads;
    unsigned nworkers; /* threads driving them: min(--threads, rings) */
    struct net_worker *workers;
    atomic_bool stopping;
    atomic_bool draining;
    atomic_uint_fast64_t connections;
    atomic_uint_fast64_t inflight;
    struct ratelimit *join_limit; /* one for every ring: --join-rate is per address */
    struct metric *m_conns, *m_accepts, *m_requests, *m_resp_4xx, *m_resp_5xx;
    struct metric *m_stale_cqes, *m_refused_conns;
    struct metric *m_subscribers, *m_deliveries, *m_slow_closed, *m_coalesced;
    struct metric *m_recv_rearms, *m_recv_starved, *m_results_hold;
    struct metric *m_participants, *m_capacity;
};

/* Mailbox message types of a network thread. */
enum net_msg { NET_MSG_REPLY = 1, NET_MSG_STREAM = 2 };

/* server.c */
uint32_t net__slot(const struct net_thread *t, const struct conn *c);
/** Queues one reference of rb on c (taken by the queue) and starts sending if idle. */
void net__queue(struct net_thread *t, struct conn *c, struct rbuf *rb, enum chunk_kind kind,
                int64_t poll_id);
/** Copies bytes into a new chunk and queues it. */
void net__queue_bytes(struct net_thread *t, struct conn *c, const void *p, size_t len);
void net__conn_close(struct net_thread *t, struct conn *c);
void net__respond(struct net_thread *t, struct conn *c, int status, const char *ctype,
                  const char *body, size_t len, bool head_only, uint32_t retry_after_s);
void net__conn_error(struct net_thread *t, struct conn *c, int status, const char *code,
                     const char *message, bool close_after, uint32_t retry_after_s);
void net__on_api_reply(struct api_req *req);
/** Hands req to the actors for connection c (counting it in flight). */
void net__submit(struct net_thread *t, struct conn *c, struct api_req *req, uint32_t flags);

/* Flags carried in a request's net_tag aux field. */
#define NET_TAG_HEAD 0x1u    /* answer without a body */
#define NET_TAG_WS_VOTE 0x2u /* a vote sent over a WebSocket: answer with ack/error */
#define NET_TAG_SUBSCRIBE 0x4u

/* live.c */
void live__upgrade(struct net_thread *t, struct conn *c, const struct http_req *hr,
                   const struct route_match *rm);
void live__sse(struct net_thread *t, struct conn *c, const struct http_req *hr,
               const struct route_match *rm);
void live__on_subscribed(struct net_thread *t, struct conn *c, struct api_req *req);
void live__on_ws_vote(struct net_thread *t, struct conn *c, struct api_req *req);
void live__on_bytes(struct net_thread *t, struct conn *c, const char *data, size_t len);
void live__on_stream(struct net_thread *t, struct stream_msg *m);
/** Sends the held results of a session now (before its sequenced events). */
void live__release_session(struct net_thread *t, int64_t session_id);
/** Sends held results whose hold is over (all of them when the hold is 0). */
void live__release_held(struct net_thread *t);
void live__expire(struct net_thread *t);
void live__on_close(struct net_thread *t, struct conn *c);
void live__shutdown(struct net_thread *t, struct conn *c);
void live__sink_broadcast(void *ctx, unsigned thread, struct stream_msg *m);

#endif
