/*
 * server.c - the io_uring network threads.
 *
 * Each thread owns one ring, one SO_REUSEPORT listen socket, a table of
 * connection slots indexed by direct-descriptor index, a provided-buffer ring
 * for receives, and a mailbox for answers coming back from the actors.
 *
 * Life of a connection:
 *   accept (direct) -> multishot recv -> HTTP parse -> answer inline (health,
 *   metrics, errors) or post to the actors and wait -> reply message -> send
 *   -> next pipelined request ... -> cancel recv -> close_direct -> slot free.
 *
 * Invariants:
 * - At most one request per connection is with the actors at a time; later
 *   pipelined bytes wait in conn->in, so answers go out in request order and
 *   a thread never has more replies in flight than slots (its mailbox is sized
 *   for that, so a reply is never dropped).
 * - A slot is reused only after its close_direct completes, and every other
 *   operation on it completed before that close was submitted, so no
 *   completion can name a slot that has a different connection in it; the
 *   generation in user_data is a second line of defence, counted when it
 *   fires.
 * - One submit per loop turn (io_uring_submit_and_wait), CQ advanced once per
 *   batch.
 */
#include "net/server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "actors/actors.h"
#include "actors/api.h"
#include "core/base.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/hmap.h"
#include "core/metrics.h"
#include "core/rbuf.h"
#include "core/tlist.h"
#include "net/apireq.h"
#include "net/conn.h"
#include "net/http.h"
#include "net/ratelimit.h"
#include "net/respond.h"
#include "net/router.h"
#include "net/pace.h"
#include "net/static.h"
#include "net/ud.h"
#include "net/ws.h"
#include "store/store.h"

#define NET_RING_ENTRIES 4096
#define NET_PACE_MS 100 /* how often a worker reviews its results pacing */
#define NET_PACE_INFLIGHT_HIGH 4096 /* requests of a worker with the actors: saturated */
#define NET_CQ_ENTRIES (4 * NET_FILES_PER_RING) /* a send and a receive per connection, twice over */
#define NET_BUF_COUNT 1024
#define NET_BUF_SIZE 2048
#define NET_BGID 1
#define NET_IN_BYTES_MAX (HTTP_HEAD_BYTES_MAX + HTTP_BODY_BYTES_MAX + 16384)
#define NET_TICK_MS 250
#define NET_HEAD_TIMEOUT_MS 10000
#define NET_KEEPALIVE_IDLE_MS 75000
#define NET_MBOX_SLOTS (4 * NET_FILES_PER_RING)
#define NET_REPLY_BATCH 256
#define NET_SEND_MERGE_MAX 16384 /* bytes of queued chunks one send may carry */
#define NET_FLUSH_MAX (2 * NET_FILES_PER_RING) /* connections awaiting a send per turn */
#define NET_STARVED_MAX NET_FILES_PER_RING /* receives waiting for buffers, per ring */
#define NET_STARVED_ARM (NET_BUF_COUNT / 4) /* of them armed again per turn */

static_assert(IS_POW2(NET_BUF_COUNT), "buffer ring size must be a power of two");
static_assert(IS_POW2(NET_STARVED_MAX), "the starved list wraps by mask");
static_assert(NET_FILES_PER_RING <= 0x10000, "a starved entry packs slot and generation");
static_assert(NET_FILES_PER_RING <= (1ull << UD_SLOT_BITS), "slots must fit in user_data");
static_assert(NET_ACCEPTS_INFLIGHT <= (1u << UD_AUX_BITS), "accept slots must fit in aux");
static_assert(NET_MBOX_SLOTS > NET_INFLIGHT_MAX + NET_FILES_PER_RING,
              "every reply fits, with room left for broadcasts");

static void conn_process(struct net_thread *t, struct conn *c);

/* ---- submission helpers ------------------------------------------------ */

static struct io_uring_sqe *get_sqe(struct net_thread *t)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    if (unlikely(sqe == NULL)) {
        /* SQ full: flush what we have and try once more; the ring is sized so
         * that this is rare, and the kernel always makes room after submit. */
        io_uring_submit(&t->ring);
        sqe = io_uring_get_sqe(&t->ring);
    }
    TALLY_ASSERT(sqe != NULL);
    return sqe;
}

uint32_t net__slot(const struct net_thread *t, const struct conn *c)
{
    return (uint32_t)(c - t->conns);
}

static void sqe_target(struct net_thread *t, struct io_uring_sqe *sqe, uint32_t slot)
{
    if (t->fixed)
        sqe->flags |= IOSQE_FIXED_FILE;
    (void)slot;
}

static void arm_accept(struct net_thread *t, unsigned i)
{
    struct accept_slot *a = &t->accepts[i];
    struct io_uring_sqe *sqe = get_sqe(t);
    a->len = sizeof(a->addr);
    if (t->fixed)
        io_uring_prep_accept_direct(sqe, t->listen_fd, (struct sockaddr *)&a->addr, &a->len, 0,
                                    IORING_FILE_INDEX_ALLOC - 1); /* CLOEXEC is refused here */
    else
        io_uring_prep_accept(sqe, t->listen_fd, (struct sockaddr *)&a->addr, &a->len,
                             SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_pack(UD_OP_ACCEPT, 0, 0, i));
    a->armed = true;
}

static void arm_recv(struct net_thread *t, struct conn *c)
{
    uint32_t slot = net__slot(t, c);
    struct io_uring_sqe *sqe = get_sqe(t);
    io_uring_prep_recv_multishot(sqe, (int)slot, NULL, 0, 0);
    sqe_target(t, sqe, slot);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = NET_BGID;
    io_uring_sqe_set_data64(sqe, ud_pack(UD_OP_RECV, c->gen, slot, 0));
    c->recv_armed = true;
}

static void chunk_free(struct conn *c, struct out_chunk *ch);

/*
 * Several small chunks waiting when a send is armed (queued during the turn
 * that flush_sends ends, or behind a send that just completed: a vote's
 * answer, results of several polls, presence) go out as ONE send, copied
 * into one buffer, which costs far less than a send each. Only chunks not
 * yet started are merged, in order, up to NET_SEND_MERGE_MAX bytes; the
 * merged chunk is on its way, so it is no longer counted among the queued
 * messages a slow subscriber is judged by, nor coalesced.
 */
static void merge_queued(struct conn *c)
{
    struct out_chunk *ch = c->out_head, *end = ch;
    size_t total = 0;
    unsigned n = 0;
    while (end && end->off == 0 && end->rb->len <= NET_SEND_MERGE_MAX - total) {
        total += end->rb->len;
        end = end->next;
        n++;
    }
    if (n < 2)
        return;
    struct rbuf *rb = rbuf_alloc(total);
    size_t at = 0;
    while (ch != end) {
        struct out_chunk *next = ch->next;
        memcpy(rb->data + at, ch->rb->data, ch->rb->len);
        at += ch->rb->len;
        chunk_free(c, ch);
        ch = next;
    }
    struct out_chunk *m = xmalloc(sizeof(*m));
    *m = (struct out_chunk){.next = end, .rb = rb, .off = 0, .kind = CHUNK_OTHER, .poll_id = 0};
    c->out_head = m;
    if (end == NULL)
        c->out_tail = m;
}

static void arm_send(struct net_thread *t, struct conn *c)
{
    TALLY_ASSERT(c->out_head != NULL);
    if (c->out_head->next != NULL)
        merge_queued(c);
    struct out_chunk *ch = c->out_head;
    TALLY_ASSERT(!c->send_inflight);
    uint32_t slot = net__slot(t, c);
    struct io_uring_sqe *sqe = get_sqe(t);
    io_uring_prep_send(sqe, (int)slot, ch->rb->data + ch->off, ch->rb->len - ch->off, MSG_NOSIGNAL);
    sqe_target(t, sqe, slot);
    io_uring_sqe_set_data64(sqe, ud_pack(UD_OP_SEND, c->gen, slot, 0));
    c->send_inflight = true;
}

static void arm_wake(struct net_thread *t)
{
    struct io_uring_sqe *sqe = get_sqe(t);
    io_uring_prep_read(sqe, t->wake_fd, &t->wake_value, sizeof(t->wake_value), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(UD_OP_WAKE, 0, 0, 0));
    t->wake_armed = true;
}

static void arm_ring_poll(struct net_thread *t, unsigned ring)
{
    TALLY_ASSERT(ring < t->srv->nthreads);
    struct io_uring_sqe *sqe = get_sqe(t);
    io_uring_prep_poll_multishot(sqe, t->srv->threads[ring].ring.ring_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, ud_pack(UD_OP_RING, 0, 0, ring));
}

static void arm_tick(struct net_thread *t)
{
    struct io_uring_sqe *sqe = get_sqe(t);
    t->tick_ts.tv_sec = 0;
    t->tick_ts.tv_nsec = NET_TICK_MS * 1000000LL;
    io_uring_prep_timeout(sqe, &t->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(UD_OP_TICK, 0, 0, 0));
}

/* ---- output ------------------------------------------------------------- */

void net__queue(struct net_thread *t, struct conn *c, struct rbuf *rb, enum chunk_kind kind,
                int64_t poll_id)
{
    TALLY_ASSERT(rb != NULL && rb->len > 0);
    TALLY_ASSERT(c->state == CONN_OPEN);
    struct out_chunk *ch = xmalloc(sizeof(*ch));
    ch->next = NULL;
    ch->rb = rb;
    ch->off = 0;
    ch->kind = (uint8_t)kind;
    ch->poll_id = poll_id;
    if (c->out_tail)
        c->out_tail->next = ch;
    else
        c->out_head = ch;
    c->out_tail = ch;
    if (kind != CHUNK_OTHER)
        c->out_msgs++;
    if (c->send_inflight || c->send_pending)
        return;
    if (t->n_flush == NET_FLUSH_MAX) {
        arm_send(t, c); /* the list is full (slots reused within a turn): send now */
        return;
    }
    c->send_pending = true;
    t->flush[t->n_flush++] = net__slot(t, c);
}

/* Arms one send for each connection given output since the last flush. */
static void flush_sends(struct net_thread *t)
{
    for (uint32_t i = 0; i < t->n_flush; i++) {
        struct conn *c = &t->conns[t->flush[i]];
        if (!c->send_pending)
            continue; /* listed twice: the slot was freed and reused within the turn */
        c->send_pending = false;
        if (c->state == CONN_OPEN && !c->send_inflight && c->out_head != NULL)
            arm_send(t, c);
    }
    t->n_flush = 0;
}

void net__queue_bytes(struct net_thread *t, struct conn *c, const void *p, size_t len)
{
    net__queue(t, c, rbuf_new(p, len), CHUNK_OTHER, 0);
}

static void chunk_free(struct conn *c, struct out_chunk *ch)
{
    if (ch->kind != CHUNK_OTHER)
        c->out_msgs--;
    rbuf_unref(ch->rb);
    free(ch);
}

static void out_free_all(struct conn *c)
{
    struct out_chunk *ch = c->out_head;
    while (ch) {
        struct out_chunk *next = ch->next;
        chunk_free(c, ch);
        ch = next;
    }
    c->out_head = c->out_tail = NULL;
}

static void count_status(struct net_server *srv, int status)
{
    metric_add(srv->m_requests, 1);
    if (status >= 500)
        metric_add(srv->m_resp_5xx, 1);
    else if (status >= 400)
        metric_add(srv->m_resp_4xx, 1);
}

/* Answers with a JSON error; fatal errors end the connection after the send. */
void net__conn_error(struct net_thread *t, struct conn *c, int status, const char *code,
                     const char *message, bool close_after, uint32_t retry_after_s)
{
    struct buf out = BUF_INIT, body = BUF_INIT;
    if (close_after)
        c->close_after_send = true;
    /* A HEAD answer carries the length of the body it leaves out; sending
     * the body would be read as the start of the next response. */
    respond_error_body(&body, code, message);
    respond_write(&out, status, NULL, body.data, body.len, !c->close_after_send, retry_after_s,
                  c->head_req);
    buf_free(&body);
    count_status(t->srv, status);
    net__queue_bytes(t, c, out.data, out.len);
    buf_free(&out);
}

void net__respond(struct net_thread *t, struct conn *c, int status, const char *ctype,
                  const char *body, size_t len, bool head_only, uint32_t retry_after_s)
{
    struct buf out = BUF_INIT;
    respond_write(&out, status, ctype, body, len, !c->close_after_send, retry_after_s, head_only);
    count_status(t->srv, status);
    net__queue_bytes(t, c, out.data, out.len);
    buf_free(&out);
}

/* ---- connection life ---------------------------------------------------- */

static void conn_open(struct net_thread *t, uint32_t slot, const struct accept_slot *a)
{
    struct conn *c = &t->conns[slot];
    TALLY_ASSERT(c->state == CONN_FREE);
    uint16_t gen = c->gen;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    c->state = CONN_OPEN;
    tlist_node_init(&c->timer);
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->addr;
        c->addr[10] = 0xff;
        c->addr[11] = 0xff;
        memcpy(&c->addr[12], &in->sin_addr, 4);
    } else if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->addr;
        memcpy(c->addr, &in6->sin6_addr, 16);
    }
    t->open++;
    atomic_fetch_add(&t->srv->connections, 1);
    metric_add(t->srv->m_conns, 1);
    metric_add(t->srv->m_accepts, 1);
    tlist_arm(&t->head_timeouts, &c->timer, t->now_ms);
    arm_recv(t, c);
}

/* Submits close_direct once nothing else is in flight on the slot. */
static void conn_maybe_release(struct net_thread *t, struct conn *c)
{
    if (c->state != CONN_CLOSING || c->recv_armed || c->send_inflight || c->close_submitted)
        return;
    uint32_t slot = net__slot(t, c);
    struct io_uring_sqe *sqe = get_sqe(t);
    if (t->fixed)
        io_uring_prep_close_direct(sqe, slot);
    else
        io_uring_prep_close(sqe, (int)slot);
    io_uring_sqe_set_data64(sqe, ud_pack(UD_OP_CLOSE, c->gen, slot, 0));
    c->close_submitted = true;
}

static void submit_cancel(struct net_thread *t, uint64_t target)
{
    struct io_uring_sqe *sqe = get_sqe(t);
    io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(UD_OP_CANCEL, 0, 0, 0));
}

void net__conn_close(struct net_thread *t, struct conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_CLOSING;
    tlist_disarm(&c->timer);
    live__on_close(t, c);
    if (c->parser) {
        http_parser_destroy(c->parser);
        c->parser = NULL;
    }
    buf_free(&c->in);
    c->in_off = 0;
    /* End what is still in flight on the slot by cancelling it by its
     * user_data; the slot is closed only once those completions are in (see
     * conn_maybe_release). A shutdown(2) would need the slot itself and runs
     * asynchronously in io-wq, so it could land after close_direct, on a new
     * connection that reused the slot. */
    if (c->recv_armed)
        submit_cancel(t, ud_pack(UD_OP_RECV, c->gen, net__slot(t, c), 0));
    if (c->send_inflight)
        submit_cancel(t, ud_pack(UD_OP_SEND, c->gen, net__slot(t, c), 0));
    conn_maybe_release(t, c);
}

static void conn_freed(struct net_thread *t, struct conn *c)
{
    TALLY_ASSERT(c->state == CONN_CLOSING);
    out_free_all(c);
    c->state = CONN_FREE;
    c->recv_starved = false; /* its entry in the starved list is skipped */
    c->gen = (uint16_t)((c->gen + 1) & UD_GEN_MASK);
    t->open--;
    atomic_fetch_sub(&t->srv->connections, 1);
    metric_add(t->srv->m_conns, -1);
}

/* ---- requests ----------------------------------------------------------- */

static enum net_ready server_ready(const struct net_server *srv)
{
    if (atomic_load(&srv->draining))
        return NET_DRAINING;
    if (!store_available(srv->store))
        return NET_DB_UNAVAILABLE;
    return NET_READY;
}

static uint32_t server_capacity(const struct net_server *srv)
{
    return srv->cfg->capacity ? srv->cfg->capacity : 500;
}

static void handle_readyz(struct net_thread *t, struct conn *c, bool head_only)
{
    static const char *const names[] = {"ready", "draining", "db_unavailable"};
    struct net_server *srv = t->srv;
    enum net_ready r = server_ready(srv);
    uint64_t conns = atomic_load(&srv->connections);
    uint32_t cap = server_capacity(srv);
    struct buf body = BUF_INIT;
    buf_printf(&body, "{\"status\":\"%s\",\"connections\":%llu,\"capacity\":%u,\"utilization\":%.4f}",
               names[r], (unsigned long long)conns, cap, (double)conns / cap);
    net__respond(t, c, r == NET_READY ? 200 : 503, NULL, body.data, body.len, head_only,
                 r == NET_READY ? 0 : NET_RETRY_AFTER_S);
    buf_free(&body);
}

static void handle_metrics(struct net_thread *t, struct conn *c, bool head_only)
{
    struct buf body = BUF_INIT;
    metric_set(t->srv->m_participants, (int64_t)actors_participants(t->srv->actors));
    metric_set(t->srv->m_capacity, (int64_t)server_capacity(t->srv));
    metrics_render(&body);
    net__respond(t, c, 200, "text/plain; version=0.0.4; charset=utf-8", body.data, body.len,
                 head_only, 0);
    buf_free(&body);
}

/* Runs on any thread: hands the answered request back to its network thread. */
void net__on_api_reply(struct api_req *req)
{
    struct net_thread *t = req->net_ctx;
    struct mbox_msg msg = {.type = NET_MSG_REPLY, .ptr = req};
    /* Cannot fail: the mailbox holds more entries than the thread lets
     * requests out (NET_INFLIGHT_MAX), with room left for broadcasts. */
    bool ok = mbox_post(t->mbox, &msg);
    TALLY_ASSERT(ok);
}

void net__submit(struct net_thread *t, struct conn *c, struct api_req *req, uint32_t flags)
{
    TALLY_ASSERT(t->inflight < NET_INFLIGHT_MAX);
    req->on_reply = net__on_api_reply;
    req->net_ctx = t;
    req->net_thread = t->index;
    req->net_tag = ud_pack(UD_OP_NONE, c->gen, net__slot(t, c), flags);
    t->inflight++;
    atomic_fetch_add(&t->srv->inflight, 1);
    actors_submit(t->srv->actors, req);
}

static bool join_allowed(struct net_thread *t, struct conn *c, uint32_t *retry_after_s)
{
    return ratelimit_take(t->srv->join_limit, c->addr, t->now_ms, retry_after_s);
}

static void handle_api(struct net_thread *t, struct conn *c, const struct http_req *hr,
                       const struct route_match *rm)
{
    struct net_server *srv = t->srv;
    uint32_t retry = 0;
    if (rm->op == API_SESSION_CREATE && atomic_load(&srv->draining)) {
        net__conn_error(t, c, 503, "draining", "this instance is shutting down", false,
                        NET_RETRY_AFTER_S);
        return;
    }
    if (t->inflight >= NET_INFLIGHT_MAX) {
        net__conn_error(t, c, 503, "busy", "too many requests in progress", false,
                        NET_RETRY_AFTER_S);
        return;
    }
    if (rm->op == API_JOIN && !join_allowed(t, c, &retry)) {
        net__conn_error(t, c, 429, "rate_limited", "too many joins from this address", false,
                        retry);
        return;
    }
    struct api_req *req = NULL;
    struct buf err = BUF_INIT;
    int status = apireq_build(hr, rm, &req, &err);
    if (status != 0) {
        net__respond(t, c, status, NULL, err.data, err.len, false, 0);
        buf_free(&err);
        return;
    }
    buf_free(&err);
    c->waiting = true;
    net__submit(t, c, req, hr->method == HTTP_HEAD ? NET_TAG_HEAD : 0);
}

static void handle_405(struct net_thread *t, struct conn *c, const char *allow)
{
    char extra[64];
    struct buf body = BUF_INIT, out = BUF_INIT;
    snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow ? allow : "GET");
    respond_error_body(&body, "method_not_allowed", "method not allowed on this path");
    respond_write_ex(&out, 405, NULL, extra, body.data, body.len, !c->close_after_send, 0, false);
    count_status(t->srv, 405);
    net__queue_bytes(t, c, out.data, out.len);
    buf_free(&body);
    buf_free(&out);
}

/*
 * Pages and assets: answered on this thread from the embedded table, never
 * through the actors. A large body is queued as the shared buffer itself.
 */
static void handle_static(struct net_thread *t, struct conn *c, const struct http_req *hr)
{
    struct rbuf *out[2];
    int status = static_respond(static_site_www(), hr, !c->close_after_send, out);
    count_status(t->srv, status);
    net__queue(t, c, out[0], CHUNK_OTHER, 0);
    if (out[1] != NULL)
        net__queue(t, c, out[1], CHUNK_OTHER, 0);
}

static void dispatch_route(struct net_thread *t, struct conn *c, const struct http_req *hr)
{
    struct route_match rm;
    bool head_only = hr->method == HTTP_HEAD;
    /* While draining, every answer ends its connection: a keep-alive client
     * would otherwise go on sending, and the requests in flight would never
     * reach zero before the budget is spent. */
    if (!hr->keep_alive || atomic_load(&t->srv->draining))
        c->close_after_send = true;
    switch (router_match(hr->method, hr->path, hr->path_len, &rm)) {
    case ROUTE_HEALTHZ:
        net__respond(t, c, 200, NULL, "{\"status\":\"ok\"}", 15, head_only, 0);
        return;
    case ROUTE_READYZ:
        handle_readyz(t, c, head_only);
        return;
    case ROUTE_METRICS:
        handle_metrics(t, c, head_only);
        return;
    case ROUTE_API:
        handle_api(t, c, hr, &rm);
        return;
    case ROUTE_METHOD_NOT_ALLOWED:
        handle_405(t, c, rm.allow);
        return;
    case ROUTE_WS:
        live__upgrade(t, c, hr, &rm);
        return;
    case ROUTE_SSE:
        live__sse(t, c, hr, &rm);
        return;
    case ROUTE_STATIC:
        handle_static(t, c, hr);
        return;
    case ROUTE_NOT_FOUND:
    default:
        net__conn_error(t, c, 404, "not_found", "no such path", false, 0);
        return;
    }
}

/* Errors answered while routing know whether the request was HEAD; those
 * sent outside a request (408, 431, parse errors) always carry their body. */
static void dispatch(struct net_thread *t, struct conn *c, const struct http_req *hr)
{
    c->head_req = hr->method == HTTP_HEAD;
    dispatch_route(t, c, hr);
    c->head_req = false;
}

/* ---- input -------------------------------------------------------------- */

/*
 * Feeds bytes to the parser until it needs more, a request goes to the
 * actors, or the connection must end. Returns how many bytes were used; the
 * caller keeps the rest for later.
 */
static size_t conn_feed(struct net_thread *t, struct conn *c, const char *data, size_t len)
{
    size_t used_total = 0;
    while (used_total < len && c->state == CONN_OPEN && !c->waiting && !c->close_after_send) {
        if (c->parser == NULL)
            c->parser = http_parser_create();
        if (http_parser_idle(c->parser))
            tlist_arm(&t->head_timeouts, &c->timer, t->now_ms);
        size_t used = 0;
        enum http_parse r =
            http_parser_feed(c->parser, data + used_total, len - used_total, &used);
        used_total += used;
        switch (r) {
        case HTTP_PARSE_AGAIN:
            TALLY_ASSERT(used_total == len);
            if (http_parser_take_continue(c->parser))
                net__queue_bytes(t, c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            return used_total;
        case HTTP_PARSE_DONE:
            tlist_disarm(&c->timer);
            dispatch(t, c, http_parser_req(c->parser));
            http_parser_next(c->parser);
            break;
        case HTTP_PARSE_E_HEAD_TOO_LARGE:
            net__conn_error(t, c, 431, "head_too_large", "request head over 8 KiB", true, 0);
            return len;
        case HTTP_PARSE_E_BODY_TOO_LARGE:
            net__conn_error(t, c, 413, "body_too_large", "request body over 64 KiB", true, 0);
            return len;
        case HTTP_PARSE_E_BAD:
        default:
            net__conn_error(t, c, 400, "bad_request", "malformed HTTP request", true, 0);
            return len;
        }
    }
    return c->close_after_send ? len : used_total;
}

/* Parses what waits in conn->in (after a reply freed the connection to go on). */
static void conn_process(struct net_thread *t, struct conn *c)
{
    if (c->in.len > c->in_off) {
        size_t used = conn_feed(t, c, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in_off += used;
    }
    if (c->in_off >= c->in.len) {
        buf_free(&c->in); /* idle connections hold no input memory */
        c->in_off = 0;
    }
    if (c->state == CONN_OPEN && !c->waiting && c->out_head == NULL && c->parser &&
        http_parser_idle(c->parser)) {
        /* Between requests: release the parser and wait quietly. */
        http_parser_destroy(c->parser);
        c->parser = NULL;
        tlist_arm(&t->idle_timeouts, &c->timer, t->now_ms);
    }
}

static void conn_on_bytes(struct net_thread *t, struct conn *c, const char *data, size_t len)
{
    if (c->state != CONN_OPEN || c->close_after_send)
        return; /* the answer that ends it is on its way; further input is ignored */
    if (c->mode != MODE_HTTP) {
        live__on_bytes(t, c, data, len);
        return;
    }
    if (c->in.len == c->in_off && !c->waiting) {
        size_t used = conn_feed(t, c, data, len);
        data += used;
        len -= used;
    }
    if (len == 0 || c->state != CONN_OPEN || c->close_after_send) {
        conn_process(t, c);
        return;
    }
    if (c->in.len - c->in_off + len > NET_IN_BYTES_MAX) {
        /* A client that pipelines this much without reading answers is not
         * one we can serve without unbounded memory. */
        net__conn_close(t, c);
        return;
    }
    buf_append(&c->in, data, len);
}

/* ---- completions -------------------------------------------------------- */

static struct conn *conn_for(struct net_thread *t, uint64_t ud)
{
    uint32_t slot = ud_slot(ud);
    TALLY_ASSERT(slot < NET_FILES_PER_RING);
    struct conn *c = &t->conns[slot];
    if (unlikely(c->gen != ud_gen(ud) || c->state == CONN_FREE)) {
        metric_add(t->srv->m_stale_cqes, 1);
        return NULL;
    }
    return c;
}

static void refuse_conn(struct net_thread *t, struct conn *c)
{
    metric_add(t->srv->m_refused_conns, 1);
    net__conn_error(t, c, 503, "too_many_connections", "connection limit reached", true,
               NET_RETRY_AFTER_S);
}

static void handle_accept(struct net_thread *t, const struct io_uring_cqe *cqe)
{
    unsigned i = ud_aux(cqe->user_data);
    TALLY_ASSERT(i < NET_ACCEPTS_INFLIGHT);
    t->accepts[i].armed = false;
    if (cqe->res < 0) {
        /* -ENFILE: the slot table is full. Whatever the error, the tick
         * re-arms this accept, so a persistent error cannot spin the loop. */
        if (cqe->res != -ENFILE && cqe->res != -ECANCELED)
            log_warn("net thread %u: accept: %s", t->index, strerror(-cqe->res));
        return;
    }
    uint32_t slot = (uint32_t)cqe->res;
    if (slot >= NET_FILES_PER_RING) {
        close(cqe->res); /* plain-fd mode: an fd beyond the table */
        arm_accept(t, i);
        return;
    }
    conn_open(t, slot, &t->accepts[i]);
    struct net_server *srv = t->srv;
    if (atomic_load(&srv->stopping)) {
        /* An accept armed before the stop: close_all has run already, and
         * a connection kept open here would hold the exit until its client
         * gave up. */
        net__conn_close(t, &t->conns[slot]);
        return;
    }
    if (atomic_load(&srv->connections) > srv->cfg->max_connections)
        refuse_conn(t, &t->conns[slot]);
    arm_accept(t, i);
}

static void buf_return(struct net_thread *t, unsigned bid)
{
    io_uring_buf_ring_add(t->br, t->bufs + (size_t)bid * NET_BUF_SIZE, NET_BUF_SIZE, bid,
                          io_uring_buf_ring_mask(NET_BUF_COUNT), (int)t->bufs_returned);
    t->bufs_returned++;
}

/*
 * Under a burst (a vote from every participant at once) more sockets have
 * data than the ring has buffers: their receives end with -ENOBUFS. Armed
 * again at once, each would meet the same empty ring and end again, a storm
 * of receives that do nothing (millions a second). So they wait in a FIFO
 * and NET_STARVED_ARM of them are armed per turn, after that turn's buffers
 * went back, oldest first. A full list falls back to arming at once.
 */
static void starve_push(struct net_thread *t, struct conn *c)
{
    if (c->recv_starved)
        return;
    if (t->n_starved == NET_STARVED_MAX) {
        arm_recv(t, c);
        return;
    }
    uint32_t at = (t->starved_head + t->n_starved) & (NET_STARVED_MAX - 1);
    t->starved[at] = (uint32_t)c->gen << 16 | net__slot(t, c);
    t->n_starved++;
    c->recv_starved = true;
    metric_add(t->srv->m_recv_starved, 1);
}

static void starved_arm(struct net_thread *t)
{
    for (unsigned armed = 0; t->n_starved > 0 && armed < NET_STARVED_ARM;) {
        uint32_t e = t->starved[t->starved_head];
        t->starved_head = (t->starved_head + 1) & (NET_STARVED_MAX - 1);
        t->n_starved--;
        struct conn *c = &t->conns[e & 0xffff];
        if (c->gen != (uint16_t)(e >> 16) || !c->recv_starved)
            continue; /* closed (and maybe reused) while it waited */
        c->recv_starved = false;
        if (c->state == CONN_OPEN && !c->recv_armed) {
            arm_recv(t, c);
            armed++;
        }
    }
}

static void handle_recv(struct net_thread *t, const struct io_uring_cqe *cqe)
{
    bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    struct conn *c = conn_for(t, cqe->user_data);
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (c && !more)
        c->recv_armed = false;
    if (c && cqe->res > 0 && has_buf)
        conn_on_bytes(t, c, t->bufs + (size_t)bid * NET_BUF_SIZE, (size_t)cqe->res);
    if (has_buf)
        buf_return(t, bid);
    if (c == NULL)
        return;
    if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ENOBUFS)) {
        net__conn_close(t, c); /* 0: the peer closed; < 0: an error */
    } else if (!more && c->state == CONN_OPEN) {
        /* A multishot receive also ends without the socket ending: out of
         * buffers (-ENOBUFS), or with data when its completion could not
         * be posted at once. A socket left without a receive would look
         * silent and be closed over unread bytes, so it is armed again:
         * at once after a full completion queue; after -ENOBUFS in turn
         * with the others that found no buffer (starve_push). */
        metric_add(t->srv->m_recv_rearms, 1);
        if (cqe->res == -ENOBUFS)
            starve_push(t, c);
        else
            arm_recv(t, c);
    }
    conn_maybe_release(t, c);
}

static void handle_send(struct net_thread *t, const struct io_uring_cqe *cqe)
{
    struct conn *c = conn_for(t, cqe->user_data);
    if (c == NULL)
        return;
    c->send_inflight = false;
    if (c->state != CONN_OPEN || cqe->res < 0) {
        net__conn_close(t, c);
        conn_maybe_release(t, c);
        return;
    }
    struct out_chunk *ch = c->out_head;
    ch->off += (size_t)cqe->res;
    if (ch->off == ch->rb->len) {
        c->out_head = ch->next;
        if (c->out_head == NULL)
            c->out_tail = NULL;
        chunk_free(c, ch);
    }
    if (c->out_head) {
        arm_send(t, c); /* partial send, or more queued */
        return;
    }
    if (c->close_after_send && !c->waiting) {
        /* The last answer is out. (While a request is still with the
         * actors, its answer is the one that ends the connection.) */
        net__conn_close(t, c);
        return;
    }
    conn_process(t, c);
}

static void deliver_reply(struct net_thread *t, struct api_req *req)
{
    atomic_fetch_sub(&t->srv->inflight, 1);
    TALLY_ASSERT(t->inflight > 0);
    t->inflight--;
    uint32_t flags = ud_aux(req->net_tag);
    struct conn *c = conn_for(t, req->net_tag);
    bool open = c && c->state == CONN_OPEN;
    if (flags & NET_TAG_SUBSCRIBE) {
        /* Takes req. A connection gone meanwhile (NULL) is unsubscribed. */
        live__on_subscribed(t, open ? c : NULL, req);
        return;
    }
    if (open && (flags & NET_TAG_WS_VOTE)) {
        live__on_ws_vote(t, c, req); /* takes req */
        return;
    }
    if (open && c->waiting) {
        c->waiting = false;
        const char *body = req->body ? req->body : "";
        net__respond(t, c, req->status, req->content_type, body, req->body_len,
                     (flags & NET_TAG_HEAD) != 0, req->retry_after_s);
        conn_process(t, c);
    }
    api_req_free(req);
}

static void handle_wake(struct net_thread *t, const struct io_uring_cqe *cqe)
{
    t->wake_armed = false;
    (void)cqe;
    struct mbox_msg msgs[NET_REPLY_BATCH];
    do {
        unsigned n;
        while ((n = mbox_take(t->mbox, msgs, NET_REPLY_BATCH)) > 0) {
            for (unsigned i = 0; i < n; i++) {
                if (msgs[i].type == NET_MSG_STREAM)
                    live__on_stream(t, msgs[i].ptr);
                else
                    deliver_reply(t, msgs[i].ptr);
            }
        }
    } while (mbox_finish(t->mbox));
    if (!atomic_load(&t->srv->stopping))
        arm_wake(t);
}

static void expire_timers(struct net_thread *t)
{
    struct tlist_node *n;
    while ((n = tlist_pop_expired(&t->head_timeouts, t->now_ms)) != NULL) {
        struct conn *c = (struct conn *)((char *)n - offsetof(struct conn, timer));
        if (c->state == CONN_OPEN && !c->waiting)
            net__conn_error(t, c, 408, "request_timeout", "request head not complete within 10 s",
                       true, 0);
    }
    while ((n = tlist_pop_expired(&t->idle_timeouts, t->now_ms)) != NULL) {
        struct conn *c = (struct conn *)((char *)n - offsetof(struct conn, timer));
        net__conn_close(t, c);
    }
    live__expire(t);
}

static void handle_tick(struct net_thread *t)
{
    expire_timers(t);
    for (unsigned i = 0; i < NET_ACCEPTS_INFLIGHT; i++) {
        if (!t->accepts[i].armed && !atomic_load(&t->srv->stopping))
            arm_accept(t, i);
    }
    if (!atomic_load(&t->srv->stopping))
        arm_tick(t);
}

static void handle_cqe(struct net_thread *t, const struct io_uring_cqe *cqe)
{
    switch (ud_op(cqe->user_data)) {
    case UD_OP_ACCEPT:
        handle_accept(t, cqe);
        break;
    case UD_OP_RECV:
        handle_recv(t, cqe);
        break;
    case UD_OP_SEND:
        handle_send(t, cqe);
        break;
    case UD_OP_CANCEL:
        break; /* the cancelled operation's own completion moves the close along */
    case UD_OP_CLOSE: {
        struct conn *c = conn_for(t, cqe->user_data);
        if (c)
            conn_freed(t, c);
        break;
    }
    case UD_OP_WAKE:
        handle_wake(t, cqe);
        break;
    case UD_OP_TICK:
        handle_tick(t);
        break;
    case UD_OP_RING:
        /* Another ring of this worker has completions; the worker loop turns
         * every ring anyway. Re-arm if the kernel ended the multishot poll. */
        if (!(cqe->flags & IORING_CQE_F_MORE) && !atomic_load(&t->srv->stopping))
            arm_ring_poll(t, ud_aux(cqe->user_data));
        break;
    case UD_OP_NONE:
    case UD_OP_COUNT:
    default:
        TALLY_ASSERT(!"bad user_data");
    }
}

static void close_all(struct net_thread *t)
{
    for (uint32_t i = 0; i < NET_FILES_PER_RING; i++) {
        struct conn *c = &t->conns[i];
        if (c->state != CONN_OPEN)
            continue;
        if (c->mode != MODE_HTTP)
            live__shutdown(t, c); /* close 1001 / end the stream, then close */
        else if (c->out_head == NULL)
            net__conn_close(t, c);
        else
            c->close_after_send = true;
    }
}

/*
 * One turn of a ring: publish returned buffers, submit, and handle what
 * completed. With wait, block until at least one completion (the worker's
 * primary ring, when no ring had anything to do). Returns the completions
 * seen plus the submissions left queued: 0 means the ring had nothing to do.
 */
static unsigned ring_turn(struct net_thread *t, bool wait)
{
    flush_sends(t); /* output queued outside a turn (the stop's close frames) */
    if (t->bufs_returned) {
        io_uring_buf_ring_advance(t->br, (int)t->bufs_returned);
        t->bufs_returned = 0;
    }
    int rc;
    if (wait) {
        /* Submitting runs the queued sends inline; only the wait after it
         * is idle time (worker_pace). */
        if (io_uring_sq_ready(&t->ring) > 0)
            io_uring_submit(&t->ring);
        uint64_t t0 = clock_now_ns();
        rc = io_uring_submit_and_wait(&t->ring, 1);
        t->idle_ns += clock_now_ns() - t0;
    } else {
        rc = io_uring_submit_and_get_events(&t->ring);
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
        log_error("net ring %u: io_uring_enter: %s", t->index, strerror(-rc));
    t->now_ms = clock_now_ms();
    unsigned head, seen = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&t->ring, head, cqe)
    {
        handle_cqe(t, cqe);
        seen++;
    }
    io_uring_cq_advance(&t->ring, seen);
    if (t->n_starved > 0)
        starved_arm(t);
    if (!pace_idle(t->pace))
        live__release_held(t);
    flush_sends(t);
    /* Sends prepared here (released results, answers) count as work, so the
     * worker takes another turn to submit them rather than sleeping first. */
    return seen + io_uring_sq_ready(&t->ring);
}

/*
 * Results pacing (net/pace.h): every NET_PACE_MS a worker looks at how much
 * of that time it slept, and sets the hold of its rings from it.
 */
static void worker_pace(struct net_worker *w)
{
    uint64_t now = clock_now_ns();
    uint64_t span = now - w->pace_t0_ns;
    if (span < NET_PACE_MS * 1000000ull)
        return;
    uint64_t idle = 0;
    for (unsigned i = 0; i < w->n_rings; i++) {
        idle += w->rings[i]->idle_ns;
        w->rings[i]->idle_ns = 0;
    }
    double busy = idle >= span ? 0.0 : 1.0 - (double)idle / (double)span;
    /* Requests piling up with the actors (a vote burst) also mean
     * saturation, even while this worker sleeps: the cores are busy with
     * the session actors, PostgreSQL and the rest, and every results send
     * takes CPU from the votes waiting. */
    unsigned inflight = 0;
    for (unsigned i = 0; i < w->n_rings; i++)
        inflight += w->rings[i]->inflight;
    if (inflight >= NET_PACE_INFLIGHT_HIGH)
        busy = 1.0;
    uint32_t hold = pace_next_hold_ms(w->hold_ms, busy);
    if (hold != w->hold_ms) {
        w->hold_ms = hold;
        for (unsigned i = 0; i < w->n_rings; i++)
            w->rings[i]->results_hold_ms = hold;
        metric_set(w->srv->m_results_hold, (int64_t)hold);
    }
    w->pace_t0_ns = now;
}

/*
 * Whether a ring needs a turn: completions already posted (the kernel runs
 * a ring's task work when its thread next leaves the kernel, so they are in
 * shared memory by now), completions the kernel kept aside when the queue
 * was full, or submissions and buffers to hand over. Asking costs no system
 * call, so a worker with many rings enters the kernel only for the busy ones.
 */
static bool ring_has_work(struct net_thread *t)
{
    return io_uring_cq_ready(&t->ring) > 0 || io_uring_cq_has_overflow(&t->ring) ||
           io_uring_sq_ready(&t->ring) > 0 || t->bufs_returned > 0 || t->n_flush > 0 ||
           t->n_starved > 0 || pace_has_due(t->pace, t->results_hold_ms, clock_now_ms());
}

static bool worker_rings_open(const struct net_worker *w)
{
    for (unsigned i = 0; i < w->n_rings; i++)
        if (w->rings[i]->open > 0)
            return true;
    return false;
}

/*
 * A worker thread drives its rings. It sleeps only in its primary ring,
 * which holds a multishot poll on every other ring's fd: a completion on
 * any of them wakes it. While some ring is busy, every ring gets a
 * non-blocking turn, so none waits behind another's traffic.
 */
static void worker_loop(struct net_worker *w)
{
    bool closing = false;
    w->pace_t0_ns = clock_now_ns();
    for (;;) {
        if (atomic_load(&w->srv->stopping) && !closing) {
            for (unsigned i = 0; i < w->n_rings; i++)
                close_all(w->rings[i]);
            closing = true;
        }
        if (closing && !worker_rings_open(w))
            break;
        unsigned busy = 0;
        for (unsigned i = 1; i < w->n_rings; i++)
            if (ring_has_work(w->rings[i]))
                busy += ring_turn(w->rings[i], false);
        ring_turn(w->rings[0], busy == 0);
        worker_pace(w);
    }
}

/* ---- setup -------------------------------------------------------------- */

static int listen_socket(const struct config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->listen_host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(cfg->listen_port);
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, cfg->listen_host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(cfg->listen_port);
        len = sizeof(*in6);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* Each ring has its own listening socket; the kernel spreads new
     * connections over them, so no thread hands connections to another. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        goto err_close;
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0)
        goto err_close;
    return fd;
err_close:;
    int err = -errno;
    close(fd);
    return err;
}

static int ring_init(struct net_thread *t, bool alone)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    /* Deferred task work would keep a ring's completions from waking the
     * poll its worker sleeps on, so only a ring alone on its worker (which
     * sleeps in that very ring) defers. */
    /* A broadcast completes one send per subscriber of the ring at once:
     * the completion queue holds them all, so none overflows (an overflow
     * is the kernel's slow path, and ends multishot receives). */
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE;
    p.cq_entries = NET_CQ_ENTRIES;
    if (alone)
        p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(NET_RING_ENTRIES, &t->ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof(p)); /* an older kernel: plain ring */
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = NET_CQ_ENTRIES;
        rc = io_uring_queue_init_params(NET_RING_ENTRIES, &t->ring, &p);
    }
    if (rc < 0)
        return rc;
    t->fixed = io_uring_register_files_sparse(&t->ring, NET_FILES_PER_RING) == 0;
    if (!t->fixed)
        log_warn("net thread %u: no direct descriptors; using plain file descriptors", t->index);

    size_t ring_bytes = NET_BUF_COUNT * sizeof(struct io_uring_buf);
    if (posix_memalign((void **)&t->br, 4096, ring_bytes) != 0)
        return -ENOMEM;
    memset(t->br, 0, ring_bytes);
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)t->br, .ring_entries = NET_BUF_COUNT, .bgid = NET_BGID};
    rc = io_uring_register_buf_ring(&t->ring, &reg, 0);
    if (rc < 0)
        return rc;
    io_uring_buf_ring_init(t->br);
    t->bufs = xmalloc((size_t)NET_BUF_COUNT * NET_BUF_SIZE);
    for (unsigned i = 0; i < NET_BUF_COUNT; i++)
        buf_return(t, i);
    io_uring_buf_ring_advance(t->br, (int)t->bufs_returned);
    t->bufs_returned = 0;
    return 0;
}

struct worker_start {
    struct net_worker *w;
    int rc;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static int worker_rings_init(struct net_worker *w)
{
    bool alone = w->n_rings == 1;
    for (unsigned i = 0; i < w->n_rings; i++) {
        int rc = ring_init(w->rings[i], alone);
        if (rc < 0)
            return rc;
    }
    for (unsigned i = 0; i < w->n_rings; i++) {
        struct net_thread *t = w->rings[i];
        t->now_ms = clock_now_ms();
        for (unsigned a = 0; a < NET_ACCEPTS_INFLIGHT; a++)
            arm_accept(t, a);
        arm_wake(t);
        arm_tick(t);
    }
    for (unsigned i = 1; i < w->n_rings; i++)
        arm_ring_poll(w->rings[0], w->rings[i]->index);
    return 0;
}

static void *net_worker_boot(void *arg)
{
    struct worker_start *ws = arg;
    struct net_worker *w = ws->w;
    char name[16];
    /* Named so that per-thread CPU (top -H, /proc/PID/task) tells the network
     * threads from the actors and the storage writers. */
    snprintf(name, sizeof(name), "tally-net%u", (unsigned)(w - w->srv->workers));
    pthread_setname_np(pthread_self(), name);
    /* Rings are made on the thread that submits to them (SINGLE_ISSUER). */
    int rc = worker_rings_init(w);
    pthread_mutex_lock(&ws->mu);
    ws->rc = rc;
    ws->done = true;
    pthread_cond_signal(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    if (rc == 0)
        worker_loop(w);
    return NULL;
}

unsigned net_rings_needed(const struct config *cfg)
{
    unsigned by_conns = (cfg->max_connections + NET_FILES_PER_RING - 1) / NET_FILES_PER_RING;
    return by_conns > cfg->threads ? by_conns : cfg->threads;
}

struct net_server *net_server_create(const struct config *cfg, struct actors *as,
                                     struct store *st)
{
    TALLY_ASSERT(cfg != NULL);
    TALLY_ASSERT(as != NULL && st != NULL);
    struct net_server *srv = xcalloc(1, sizeof(*srv));
    static_site_www(); /* built here, not on the first page request */
    srv->cfg = cfg;
    srv->actors = as;
    srv->store = st;
    srv->nthreads = net_rings_needed(cfg);
    srv->threads = xcalloc(srv->nthreads, sizeof(*srv->threads));
    srv->join_limit = ratelimit_create(cfg->join_rate, cfg->join_rate * 5);
    srv->nworkers = cfg->threads < srv->nthreads ? cfg->threads : srv->nthreads;
    srv->workers = xcalloc(srv->nworkers, sizeof(*srv->workers));
    for (unsigned k = 0; k < srv->nworkers; k++) {
        srv->workers[k].srv = srv;
        srv->workers[k].rings = xcalloc(srv->nthreads, sizeof(*srv->workers[k].rings));
    }
    srv->m_conns = metrics_gauge("tally_connections", "Client connections open now.");
    srv->m_accepts = metrics_counter("tally_connections_accepted_total", "Connections accepted.");
    srv->m_requests = metrics_counter("tally_http_requests_total", "HTTP requests answered.");
    srv->m_resp_4xx = metrics_counter("tally_http_responses_4xx_total", "Answers with a 4xx status.");
    srv->m_resp_5xx = metrics_counter("tally_http_responses_5xx_total", "Answers with a 5xx status.");
    srv->m_stale_cqes =
        metrics_counter("tally_net_stale_completions_total", "Completions for a reused slot.");
    srv->m_refused_conns =
        metrics_counter("tally_connections_refused_total", "Connections over --max-connections.");
    srv->m_subscribers = metrics_gauge("tally_subscribers", "WebSocket and SSE subscribers now.");
    srv->m_participants =
        metrics_gauge("tally_participants_joined", "Participants who joined, all sessions.");
    srv->m_capacity = metrics_gauge("tally_capacity", "Planned participants (--capacity).");
    srv->m_deliveries =
        metrics_counter("tally_stream_deliveries_total", "Stream messages queued to subscribers.");
    srv->m_slow_closed = metrics_counter("tally_subscribers_slow_closed_total",
                                         "Subscribers closed (1013) for falling behind.");
    srv->m_coalesced = metrics_counter("tally_stream_coalesced_total",
                                       "Queued results or presence replaced by a newer one.");
    srv->m_results_hold = metrics_gauge(
        "tally_results_hold_ms",
        "Extra spacing of each poll's results while a network thread is saturated (0: none).");
    srv->m_recv_rearms = metrics_counter(
        "tally_net_recv_rearms_total",
        "Multishot receives armed again after ending early (no buffer, or a full completion queue).");
    srv->m_recv_starved = metrics_counter(
        "tally_net_recv_starved_total",
        "Receives that ended for want of a buffer and waited their turn to be armed again.");
    return srv;
}

static int thread_prepare(struct net_server *srv, struct net_thread *t, unsigned i)
{
    t->srv = srv;
    t->index = i;
    t->listen_fd = listen_socket(srv->cfg);
    if (t->listen_fd < 0)
        return t->listen_fd;
    t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->wake_fd < 0)
        return -errno;
    t->mbox = mbox_create(NET_MBOX_SLOTS, mbox_notify_eventfd, (void *)(intptr_t)t->wake_fd);
    t->conns = xcalloc(NET_FILES_PER_RING, sizeof(*t->conns));
    t->flush = xcalloc(NET_FLUSH_MAX, sizeof(*t->flush));
    t->starved = xcalloc(NET_STARVED_MAX, sizeof(*t->starved));
    tlist_init(&t->head_timeouts, NET_HEAD_TIMEOUT_MS);
    tlist_init(&t->idle_timeouts, NET_KEEPALIVE_IDLE_MS);
    tlist_init(&t->ping_timers, NET_WS_PING_MS);
    tlist_init(&t->heartbeat_timers, NET_SSE_HEARTBEAT_MS);
    t->subs = hmap_create(64);
    t->pace = pace_create();
    return 0;
}

static int worker_launch(struct net_worker *w)
{
    struct worker_start ws = {.w = w};
    pthread_mutex_init(&ws.mu, NULL);
    pthread_cond_init(&ws.cv, NULL);
    int rc = pthread_create(&w->tid, NULL, net_worker_boot, &ws);
    if (rc != 0)
        return -rc;
    pthread_mutex_lock(&ws.mu);
    while (!ws.done)
        pthread_cond_wait(&ws.cv, &ws.mu);
    pthread_mutex_unlock(&ws.mu);
    pthread_mutex_destroy(&ws.mu);
    pthread_cond_destroy(&ws.cv);
    if (ws.rc < 0) {
        pthread_join(w->tid, NULL);
        w->tid = 0;
    }
    return ws.rc;
}

int net_server_start(struct net_server *srv)
{
    for (unsigned i = 0; i < srv->nthreads; i++) {
        int rc = thread_prepare(srv, &srv->threads[i], i);
        if (rc < 0) {
            log_error("cannot listen on %s:%u (ring %u): %s", srv->cfg->listen_host,
                      srv->cfg->listen_port, i, strerror(-rc));
            return rc;
        }
    }
    /* Ring i belongs to worker i % workers. */
    for (unsigned i = 0; i < srv->nthreads; i++) {
        struct net_worker *w = &srv->workers[i % srv->nworkers];
        w->rings[w->n_rings++] = &srv->threads[i];
    }
    for (unsigned k = 0; k < srv->nworkers; k++) {
        int rc = worker_launch(&srv->workers[k]);
        if (rc < 0) {
            log_error("network worker %u: %s", k, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

unsigned net_server_rings(const struct net_server *srv)
{
    return srv->nthreads;
}

void net_server_sink(struct net_server *srv, struct stream_sink *sink)
{
    TALLY_ASSERT(sink->threads == srv->nthreads);
    sink->ctx = srv;
    sink->broadcast = live__sink_broadcast;
}

void net_server_drain(struct net_server *srv)
{
    atomic_store(&srv->draining, true);
}

uint64_t net_server_inflight(const struct net_server *srv)
{
    return atomic_load(&srv->inflight);
}

void net_server_stop(struct net_server *srv)
{
    atomic_store(&srv->stopping, true);
    for (unsigned i = 0; i < srv->nthreads; i++) {
        struct net_thread *t = &srv->threads[i];
        if (t->wake_fd > 0)
            mbox_notify_eventfd((void *)(intptr_t)t->wake_fd);
    }
    for (unsigned k = 0; k < srv->nworkers; k++) {
        struct net_worker *w = &srv->workers[k];
        if (w->tid)
            pthread_join(w->tid, NULL);
        w->tid = 0;
    }
}

void net_server_destroy(struct net_server *srv)
{
    if (srv == NULL)
        return;
    for (unsigned i = 0; i < srv->nthreads; i++) {
        struct net_thread *t = &srv->threads[i];
        if (t->conns == NULL)
            continue;
        for (uint32_t s = 0; s < NET_FILES_PER_RING; s++) {
            struct conn *c = &t->conns[s];
            if (c->ws)
                ws_parser_destroy(c->ws);
            rbuf_unref(c->upgrade_answer);
            if (c->parser)
                http_parser_destroy(c->parser);
            buf_free(&c->in);
            out_free_all(c);
        }
        struct mbox_msg m;
        while (mbox_take(t->mbox, &m, 1) == 1) {
            if (m.type == NET_MSG_STREAM)
                stream_msg_unref(m.ptr);
            else
                api_req_free(m.ptr);
        }
        io_uring_queue_exit(&t->ring);
        mbox_destroy(t->mbox);
        close(t->wake_fd);
        close(t->listen_fd);
        pace_destroy(t->pace);
        hmap_destroy(t->subs);
        free(t->conns);
        free(t->flush);
        free(t->starved);
        free(t->bufs);
        free(t->br);
    }
    for (unsigned k = 0; k < srv->nworkers; k++)
        free(srv->workers[k].rings);
    free(srv->workers);
    ratelimit_destroy(srv->join_limit);
    free(srv->threads);
    free(srv);
}
