/*
 * engine.c - see engine.h. One thread per ring; a client's slot in its
 * ring's table is its local index (index / threads), so no slot allocator
 * is needed. Completions carry (generation, local index, operation) in
 * user_data: a client that failed bumps its generation, so completions of
 * its old socket still in flight are recognised and ignored.
 */
#include "stress/engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/base.h"
#include "stress/fanout_common.h"
#include "stress/uring.h"
#include "stress/mpjson.h"

#define ENG_SQ_ENTRIES 4096
#define ENG_CQ_ENTRIES 65536
#define ENG_WAIT_NR 32   /* completions a waiting thread is woken for... */
#define ENG_WAIT_US 1000 /* ...or this long: what it adds to a measured latency at most */
#define ENG_HELLO_PREFIX "{\"type\":\"hello\""
#define ENG_FRAME_OUT_MAX (WSC_CLIENT_HEADER_MAX + 512) /* pongs and votes */

enum op { OP_CONNECT = 1, OP_SEND, OP_RECV, OP_CANCEL };
enum cstate { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD };

struct conn {
    uint8_t state;
    bool ready;
    bool recv_busy;
    bool resuming; /* reconnected on purpose: its hello is a resume, not a new client */
    uint16_t gen;
    uint16_t rlen;
    uint16_t wlen;   /* bytes queued in wbuf */
    uint16_t wbusy;  /* of which the first wbusy are being sent */
    uint64_t t0;     /* socket made; then connected */
    uint64_t t_drop; /* when eng_reconnect() dropped it */
    char key[WSC_KEY_CHARS + 1];
    uint8_t rbuf[ENG_RBUF_BYTES];
    uint8_t wbuf[ENG_WBUF_BYTES];
};

struct eng_thread {
    pthread_t tid;
    struct eng *e;
    unsigned id;
    struct io_uring ring;
    bool batched; /* deferred task running: woken per ENG_WAIT_NR completions */
    struct conn *conns;
    uint32_t n_slots;
    uint32_t opened; /* locals 0..opened-1 have been started */
    uint32_t inflight;
    uint32_t mask_state;
    uint64_t next_sweep_ns;
    atomic_ullong ready, failed, dropped;
    struct eng_stats st;
};

struct eng {
    struct eng_config cfg;
    bool msgpack; /* tally.v1.msgpack: messages are binary MessagePack both ways */
    bool sse;     /* Server-Sent Events instead of a WebSocket: receive only */
    struct sockaddr_in dst, dst2; /* dst2: odd clients' when cfg.port2 is set */
    atomic_uint want; /* clients 0..want-1 should be open */
    atomic_bool stop;
    unsigned n_threads;
    struct eng_thread *threads;
};

static const char *const err_names[ENG_ERR_KINDS] = {
    "socket", "connect", "handshake", "timeout", "closed", "recv", "send", "frame",
};

const char *eng_err_name(enum eng_err e)
{
    return (unsigned)e < ENG_ERR_KINDS ? err_names[e] : "?";
}

static uint64_t ud(uint16_t gen, uint32_t local, enum op op)
{
    return ((uint64_t)gen << 48) | ((uint64_t)local << 8) | (uint64_t)op;
}

static uint32_t global_of(const struct eng_thread *t, uint32_t local)
{
    return local * t->e->n_threads + t->id;
}

/*
 * Cancels whatever is in flight on the client's slot and empties the slot:
 * when the cancelled operations complete, the socket's last reference goes
 * and it closes. The cancel runs inline at submit, before the slot can be
 * given a new socket.
 */
static void conn_release(struct eng_thread *t, uint32_t local)
{
    struct io_uring_sqe *sqe = uring_sqe(&t->ring);
    io_uring_prep_cancel_fd(sqe, (int)local,
                            IORING_ASYNC_CANCEL_FD_FIXED | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, ud(t->conns[local].gen, local, OP_CANCEL));
    io_uring_submit(&t->ring);
    int none = -1;
    (void)io_uring_register_files_update(&t->ring, local, &none, 1);
}

static void conn_fail_errno(struct eng_thread *t, uint32_t local, enum eng_err why, int err)
{
    struct conn *c = &t->conns[local];
    if (c->state == C_DEAD || c->state == C_IDLE)
        return;
    t->st.errors[why]++;
    if (err)
        t->st.last_errno[why] = err;
    if (c->ready) {
        atomic_fetch_add(&t->dropped, 1);
    } else {
        /* A resuming client was ready once: losing it now is a drop, not a failed connect. */
        atomic_fetch_add(c->resuming ? &t->dropped : &t->failed, 1);
        t->inflight--;
    }
    c->resuming = false;
    conn_release(t, local);
    c->state = C_DEAD;
    c->ready = false;
    c->gen++;
}

static void conn_fail(struct eng_thread *t, uint32_t local, enum eng_err why)
{
    conn_fail_errno(t, local, why, 0);
}

static void conn_recv(struct eng_thread *t, uint32_t local)
{
    struct conn *c = &t->conns[local];
    struct io_uring_sqe *sqe = uring_sqe(&t->ring);
    io_uring_prep_recv(sqe, (int)local, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud(c->gen, local, OP_RECV));
    c->recv_busy = true;
}

static void conn_send_start(struct eng_thread *t, uint32_t local)
{
    struct conn *c = &t->conns[local];
    struct io_uring_sqe *sqe = uring_sqe(&t->ring);
    io_uring_prep_send(sqe, (int)local, c->wbuf, c->wlen, MSG_NOSIGNAL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud(c->gen, local, OP_SEND));
    c->wbusy = c->wlen;
}

/* Appends bytes to the client's send queue and starts a send when none is running. */
static int conn_queue(struct eng_thread *t, uint32_t local, const void *p, size_t n)
{
    struct conn *c = &t->conns[local];
    if (c->state == C_DEAD || c->state == C_IDLE || c->state == C_CONNECTING)
        return -ENOTCONN;
    if (c->wlen + n > sizeof(c->wbuf)) {
        conn_fail(t, local, ENG_ERR_SEND);
        return -ENOSPC;
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen = (uint16_t)(c->wlen + n);
    t->st.bytes_out += n;
    if (c->wbusy == 0)
        conn_send_start(t, local);
    return 0;
}

static void conn_open(struct eng_thread *t, uint32_t local)
{
    struct eng *e = t->e;
    struct conn *c = &t->conns[local];
    uint32_t index = global_of(t, local);
    struct sockaddr_in src = {.sin_family = AF_INET};
    /* 127.0.0.2 + k; a reconnect moves on to the next address, so its new connection
     * never meets the old one's 4-tuple while the server has not closed it yet. */
    src.sin_addr.s_addr = htonl(0x7f000002u + (index + c->gen) % e->cfg.sources);
    c->state = C_CONNECTING;
    c->ready = false;
    c->rlen = c->wlen = c->wbusy = 0;
    c->t0 = fo_now_ns();
    t->inflight++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto err;
    int one = 1;
    /* The port is picked at connect time, per destination: ~28k per source address. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = bind(fd, (struct sockaddr *)&src, sizeof(src));
    if (rc == 0)
        rc = io_uring_register_files_update(&t->ring, local, &fd, 1);
    close(fd); /* the ring's table holds the socket now */
    if (rc < 0)
        goto err;
    struct io_uring_sqe *sqe = uring_sqe(&t->ring);
    const struct sockaddr_in *dst = e->cfg.port2 != 0 && (index & 1) ? &e->dst2 : &e->dst;
    io_uring_prep_connect(sqe, (int)local, (const struct sockaddr *)dst, sizeof(*dst));
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud(c->gen, local, OP_CONNECT));
    return;
err:
    t->st.errors[ENG_ERR_SOCKET]++;
    atomic_fetch_add(c->resuming ? &t->dropped : &t->failed, 1);
    t->inflight--;
    c->resuming = false;
    c->state = C_DEAD;
}

/*
 * The SSE request for a scenario's WebSocket path: the same session's
 * /events with the same query (token, since). Length, or < 0.
 */
static int sse_request_format(const struct eng *e, const char *ws_path, char *out, size_t cap)
{
    const char *q = strstr(ws_path, "/ws?");
    if (q == NULL)
        return -EINVAL;
    int n = snprintf(out, cap,
                     "GET %.*s/events?%s HTTP/1.1\r\nHost: %s:%u\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n\r\n",
                     (int)(q - ws_path), ws_path, q + 4, e->cfg.host, e->cfg.port);
    return n > 0 && (size_t)n < cap ? n : -ENOSPC;
}

static void on_connected(struct eng_thread *t, uint32_t local, int res)
{
    struct eng *e = t->e;
    struct conn *c = &t->conns[local];
    if (res < 0) {
        conn_fail_errno(t, local, ENG_ERR_CONNECT, -res);
        return;
    }
    uint64_t now = fo_now_ns();
    hist_add(&t->st.connect_ns, now - c->t0);
    c->t0 = now;
    c->state = C_HANDSHAKE;
    char path[ENG_PATH_MAX], req[ENG_WBUF_BYTES];
    wsc_key_make(c->key);
    int n = e->cfg.path(e->cfg.ctx, global_of(t, local), path, sizeof(path));
    if (n > 0 && (size_t)n < sizeof(path) && e->sse)
        n = sse_request_format(e, path, req, sizeof(req));
    else if (n > 0 && (size_t)n < sizeof(path))
        n = wsc_request_format(req, sizeof(req), e->cfg.host, e->cfg.port, path, c->key,
                               e->cfg.proto);
    if (n <= 0 || conn_queue(t, local, req, (size_t)n) < 0) {
        conn_fail(t, local, ENG_ERR_SEND);
        return;
    }
    conn_recv(t, local);
}

static void on_ready(struct eng_thread *t, struct conn *c, uint64_t now)
{
    c->ready = true;
    t->inflight--;
    if (c->resuming) {
        c->resuming = false;
        hist_add(&t->st.resume_ns, now - c->t_drop);
        return; /* the same client again: counted ready once */
    }
    hist_add(&t->st.hello_ns, now - c->t0);
    atomic_fetch_add(&t->ready, 1);
}

/* One server frame; false when the client must go (why in *err). */
static bool on_frame(struct eng_thread *t, uint32_t local, const struct wsc_frame *f, uint64_t now,
                     enum eng_err *err)
{
    struct eng *e = t->e;
    struct conn *c = &t->conns[local];
    t->st.frames_in++;
    char json[ENG_RBUF_BYTES * 2];
    struct wsc_frame as_text;
    if (e->msgpack && f->opcode == WSC_OP_BINARY && f->fin) {
        /* The same message the json subprotocol would carry: scenarios read one format. */
        int n = mpjson_to_json(f->payload, f->payload_len, json, sizeof(json));
        *err = ENG_ERR_FRAME;
        if (n < 0)
            return false;
        as_text = *f;
        as_text.opcode = WSC_OP_TEXT;
        as_text.payload = (const uint8_t *)json;
        as_text.payload_len = (size_t)n;
        f = &as_text;
    }
    if (f->opcode == WSC_OP_TEXT && f->fin) {
        if (!c->ready && f->payload_len >= sizeof(ENG_HELLO_PREFIX) - 1 &&
            memcmp(f->payload, ENG_HELLO_PREFIX, sizeof(ENG_HELLO_PREFIX) - 1) == 0)
            on_ready(t, c, now);
        e->cfg.on_message(e->cfg.ctx, t, global_of(t, local), f, now);
        return c->state == C_OPEN; /* the scenario may have sent and failed */
    }
    if (f->opcode == WSC_OP_PING) {
        uint8_t out[ENG_FRAME_OUT_MAX];
        t->st.pings++;
        t->mask_state = t->mask_state * 1664525u + 1013904223u;
        int n = wsc_frame_build(out, sizeof(out), WSC_OP_PONG, f->payload, f->payload_len,
                                t->mask_state);
        *err = ENG_ERR_SEND;
        return n > 0 && conn_queue(t, local, out, (size_t)n) == 0;
    }
    if (f->opcode == WSC_OP_CLOSE) {
        if (f->payload_len >= 2)
            t->st.last_close_code = f->payload[0] << 8 | f->payload[1];
        *err = ENG_ERR_CLOSED;
        return false;
    }
    return true; /* binary (another subprotocol), pong, continuation: not measured */
}

/* Consumes the 101 and every complete frame in rbuf. */
/* The SSE answer's head: a 200 with text/event-stream. Its length, 0 for more, < 0 when bad. */
static long sse_head_check(const uint8_t *buf, size_t len)
{
    const uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return len < WSC_HEAD_MAX ? 0 : -1;
    size_t head = (size_t)(end - buf) + 4;
    if (len < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0 ||
        memmem(buf, head, "text/event-stream", 17) == NULL)
        return -1;
    return (long)head;
}

/* Every complete SSE event from off: its data line handed on as a text message. */
static bool sse_consume(struct eng_thread *t, uint32_t local, uint64_t now, size_t off,
                        enum eng_err *err)
{
    struct conn *c = &t->conns[local];
    for (;;) {
        const uint8_t *end = memmem(c->rbuf + off, c->rlen - off, "\n\n", 2);
        if (end == NULL)
            break;
        size_t block = (size_t)(end - (c->rbuf + off));
        const uint8_t *data = memmem(c->rbuf + off, block, "data: ", 6);
        if (data) {
            const uint8_t *eol = memchr(data, '\n', (size_t)(end - data) + 1);
            struct wsc_frame f = {.fin = true,
                                  .opcode = WSC_OP_TEXT,
                                  .payload = data + 6,
                                  .payload_len = (size_t)(eol - data) - 6};
            if (!on_frame(t, local, &f, now, err))
                return false;
        }
        off += block + 2; /* comments (heartbeats) and id-only blocks carry no data */
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen = (uint16_t)(c->rlen - off);
    *err = ENG_ERR_FRAME;
    return c->rlen < sizeof(c->rbuf);
}

static bool conn_consume(struct eng_thread *t, uint32_t local, uint64_t now, enum eng_err *err)
{
    if (t->e->sse) {
        struct conn *c = &t->conns[local];
        size_t off = 0;
        if (c->state == C_HANDSHAKE) {
            long head = sse_head_check(c->rbuf, c->rlen);
            *err = ENG_ERR_HANDSHAKE;
            if (head < 0) {
                int status = 0;
                if (sscanf((const char *)c->rbuf, "HTTP/1.1 %3d", &status) == 1)
                    t->st.last_refusal = status;
                return false;
            }
            if (head == 0)
                return true;
            c->state = C_OPEN;
            off = (size_t)head;
        }
        return sse_consume(t, local, now, off, err);
    }
    struct conn *c = &t->conns[local];
    size_t off = 0;
    *err = ENG_ERR_FRAME;
    if (c->state == C_HANDSHAKE) {
        size_t head = 0;
        enum wsc_parse r = wsc_response_check((const char *)c->rbuf, c->rlen, c->key, &head);
        *err = ENG_ERR_HANDSHAKE;
        if (r == WSC_BAD) {
            int status = 0;
            if (c->rlen > 12 && sscanf((const char *)c->rbuf, "HTTP/1.1 %3d", &status) == 1)
                t->st.last_refusal = status;
            return false;
        }
        if (r == WSC_AGAIN)
            return c->rlen < sizeof(c->rbuf);
        c->state = C_OPEN;
        off = head;
        *err = ENG_ERR_FRAME;
    }
    while (off < c->rlen) {
        struct wsc_frame f;
        enum wsc_parse r = wsc_frame_parse(c->rbuf + off, c->rlen - off, &f);
        if (r == WSC_BAD)
            return false;
        if (r == WSC_AGAIN)
            break;
        if (!on_frame(t, local, &f, now, err))
            return false;
        off += f.frame_len;
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen = (uint16_t)(c->rlen - off);
    *err = ENG_ERR_FRAME;
    return c->rlen < sizeof(c->rbuf); /* a full buffer without a whole frame never empties */
}

static void on_recv(struct eng_thread *t, uint32_t local, int res)
{
    struct conn *c = &t->conns[local];
    c->recv_busy = false;
    if (res <= 0) {
        conn_fail_errno(t, local, res == 0 ? ENG_ERR_CLOSED : ENG_ERR_RECV, -res);
        return;
    }
    t->st.bytes_in += (uint64_t)res;
    c->rlen = (uint16_t)(c->rlen + res);
    enum eng_err err;
    if (!conn_consume(t, local, fo_now_ns(), &err)) {
        conn_fail(t, local, err);
        return;
    }
    conn_recv(t, local);
}

static void on_sent(struct eng_thread *t, uint32_t local, int res)
{
    struct conn *c = &t->conns[local];
    if (res <= 0 || res > c->wbusy) {
        conn_fail_errno(t, local, ENG_ERR_SEND, res < 0 ? -res : 0);
        return;
    }
    size_t done = (size_t)res < sizeof(c->wbuf) ? (size_t)res : sizeof(c->wbuf);
    memmove(c->wbuf, c->wbuf + done, c->wlen - done);
    c->wlen = (uint16_t)(c->wlen - done);
    c->wbusy = 0;
    if (c->wlen > 0)
        conn_send_start(t, local);
}

static void on_cqe(struct eng_thread *t, const struct io_uring_cqe *cqe)
{
    uint64_t d = cqe->user_data;
    uint32_t local = (uint32_t)((d >> 8) & 0xffffffffffull);
    uint16_t gen = (uint16_t)(d >> 48);
    enum op op = (enum op)(d & 0xff);
    if (local >= t->n_slots || t->conns[local].gen != gen || t->conns[local].state == C_DEAD)
        return; /* a failed client's late completion */
    switch (op) {
    case OP_CONNECT:
        on_connected(t, local, cqe->res);
        break;
    case OP_RECV:
        on_recv(t, local, cqe->res);
        break;
    case OP_SEND:
        on_sent(t, local, cqe->res);
        break;
    default:
        break;
    }
}

/* Clients not ready within the handshake timeout fail; runs once a second. */
static void sweep(struct eng_thread *t, uint64_t now)
{
    if (now < t->next_sweep_ns)
        return;
    t->next_sweep_ns = now + 1000000000ull;
    uint64_t limit = (uint64_t)ENG_HANDSHAKE_TIMEOUT_S * 1000000000ull;
    for (uint32_t i = 0; i < t->opened && t->inflight > 0; i++) {
        struct conn *c = &t->conns[i];
        if (!c->ready && c->state != C_DEAD && c->state != C_IDLE && now - c->t0 > limit)
            conn_fail(t, i, ENG_ERR_TIMEOUT);
    }
}

static uint32_t locals_wanted(const struct eng_thread *t)
{
    uint32_t want = atomic_load(&t->e->want), n = t->e->n_threads;
    uint32_t k = want > t->id ? (want - t->id - 1) / n + 1 : 0;
    return k < t->n_slots ? k : t->n_slots;
}

static void *eng_worker(void *arg)
{
    struct eng_thread *t = arg;
    struct eng *e = t->e;
    /* This thread becomes the ring's only issuer (liburing 2.3 has no
     * wrapper for enabling a ring). */
    if (t->batched)
        TALLY_ASSERT(syscall(__NR_io_uring_register, t->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) == 0);
    while (!atomic_load(&e->stop)) {
        uint32_t wanted = locals_wanted(t);
        while (t->opened < wanted && t->inflight < ENG_INFLIGHT_MAX)
            conn_open(t, t->opened++);
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_nsec = t->batched ? ENG_WAIT_US * 1000L : ENG_TICK_MS * 1000000L};
        io_uring_submit_and_wait_timeout(&t->ring, &cqe, t->batched ? ENG_WAIT_NR : 1, &ts, NULL);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&t->ring, head, cqe)
        {
            on_cqe(t, cqe);
            seen++;
        }
        io_uring_cq_advance(&t->ring, seen);
        uint64_t now = fo_now_ns();
        if (e->cfg.on_tick)
            e->cfg.on_tick(e->cfg.ctx, t, now);
        sweep(t, now);
    }
    io_uring_queue_exit(&t->ring); /* drops the table: every socket closes */
    return NULL;
}

static int thread_init(struct eng *e, struct eng_thread *t, unsigned id)
{
    t->e = e;
    t->id = id;
    t->n_slots = (e->cfg.max_clients + e->n_threads - 1) / e->n_threads;
    t->conns = calloc(t->n_slots, sizeof(*t->conns));
    if (t->conns == NULL)
        return -ENOMEM;
    t->mask_state = 0x9e3779b9u ^ id;
    hist_init(&t->st.connect_ns);
    hist_init(&t->st.hello_ns);
    hist_init(&t->st.resume_ns);
    /* Deferred task running: a message for a client no longer wakes this
     * thread inside the sender's send path; the thread collects completions
     * when it waits, and is woken once ENG_WAIT_NR are due (or after
     * ENG_WAIT_US). On loopback the sender is tallyd, which would otherwise
     * be charged a wake-up of the load generator per message. The ring is
     * created disabled so that the worker thread, its only issuer, enables it. */
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED |
                                         IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                .cq_entries = ENG_CQ_ENTRIES};
    int rc = io_uring_queue_init_params(ENG_SQ_ENTRIES, &t->ring, &p);
    t->batched = rc == 0;
    if (rc == -EINVAL) { /* an older kernel: a plain ring, woken per completion */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = ENG_CQ_ENTRIES};
        rc = io_uring_queue_init_params(ENG_SQ_ENTRIES, &t->ring, &p);
    }
    if (rc < 0)
        return rc;
    rc = io_uring_register_files_sparse(&t->ring, t->n_slots);
    if (rc < 0) {
        io_uring_queue_exit(&t->ring);
        return rc;
    }
    return 0;
}

struct eng *eng_start(const struct eng_config *cfg)
{
    TALLY_ASSERT(cfg->path && cfg->on_message && cfg->proto);
    TALLY_ASSERT(cfg->max_clients >= 1 && cfg->max_clients <= ENG_CLIENTS_MAX);
    TALLY_ASSERT(cfg->sources >= 1 && cfg->sources <= ENG_SOURCES_MAX);
    struct eng *e = xcalloc(1, sizeof(*e));
    e->cfg = *cfg;
    e->msgpack = strcmp(cfg->proto, "tally.v1.msgpack") == 0;
    e->sse = strcmp(cfg->proto, ENG_PROTO_SSE) == 0;
    e->dst.sin_family = AF_INET;
    e->dst.sin_port = htons(cfg->port);
    if (inet_pton(AF_INET, cfg->host, &e->dst.sin_addr) != 1) {
        fprintf(stderr, "tally-stress: target host '%s' is not an IPv4 address\n", cfg->host);
        free(e);
        return NULL;
    }
    e->dst2 = e->dst;
    e->dst2.sin_port = htons(cfg->port2);
    unsigned need = (cfg->max_clients + ENG_SLOTS_PER_RING - 1) / ENG_SLOTS_PER_RING;
    e->n_threads = cfg->threads > need ? cfg->threads : need;
    if (e->n_threads > ENG_THREADS_MAX)
        e->n_threads = ENG_THREADS_MAX;
    e->threads = xcalloc(e->n_threads, sizeof(*e->threads));
    for (unsigned i = 0; i < e->n_threads; i++) {
        int rc = thread_init(e, &e->threads[i], i);
        if (rc < 0) {
            fprintf(stderr, "tally-stress: ring %u: %s\n", i, strerror(-rc));
            exit(1); /* a command-line tool: the rings made so far go with the process */
        }
    }
    for (unsigned i = 0; i < e->n_threads; i++)
        TALLY_ASSERT(pthread_create(&e->threads[i].tid, NULL, eng_worker, &e->threads[i]) == 0);
    return e;
}

void eng_open(struct eng *e, uint32_t n)
{
    atomic_store(&e->want, n < e->cfg.max_clients ? n : e->cfg.max_clients);
}

void eng_count(const struct eng *e, uint64_t *ready, uint64_t *failed, uint64_t *dropped)
{
    *ready = *failed = *dropped = 0;
    for (unsigned i = 0; i < e->n_threads; i++) {
        *ready += atomic_load(&e->threads[i].ready);
        *failed += atomic_load(&e->threads[i].failed);
        *dropped += atomic_load(&e->threads[i].dropped);
    }
}

double eng_wait_ready(const struct eng *e, unsigned timeout_s)
{
    uint64_t t0 = fo_now_ns(), deadline = t0 + (uint64_t)timeout_s * 1000000000ull;
    uint64_t ready, failed, dropped;
    for (;;) {
        eng_count(e, &ready, &failed, &dropped);
        if (ready + failed + dropped >= atomic_load(&e->want) || fo_now_ns() >= deadline)
            break;
        fo_sleep_ms(20);
    }
    return (double)(fo_now_ns() - t0) / 1e9;
}

unsigned eng_threads(const struct eng *e)
{
    return e->n_threads;
}

unsigned eng_thread_id(const struct eng_thread *t)
{
    return t->id;
}

int eng_send_text(struct eng_thread *t, uint32_t index, const void *payload, size_t len)
{
    uint8_t out[ENG_FRAME_OUT_MAX], packed[ENG_FRAME_OUT_MAX];
    uint32_t local = index / t->e->n_threads;
    enum wsc_opcode op = WSC_OP_TEXT;
    TALLY_ASSERT(index % t->e->n_threads == t->id && local < t->n_slots);
    if (t->e->sse) {
        t->st.errors[ENG_ERR_SEND]++; /* an SSE client has no way to send */
        return -EPROTONOSUPPORT;
    }
    if (t->e->msgpack) {
        /* A msgpack client sends its own messages in msgpack too. */
        int m = mpjson_from_json(payload, len, packed, sizeof(packed));
        if (m < 0) {
            t->st.errors[ENG_ERR_SEND]++;
            return m;
        }
        payload = packed;
        len = (size_t)m;
        op = WSC_OP_BINARY;
    }
    t->mask_state = t->mask_state * 1664525u + 1013904223u;
    int n = wsc_frame_build(out, sizeof(out), op, payload, len, t->mask_state);
    if (n < 0) {
        t->st.errors[ENG_ERR_SEND]++;
        return n;
    }
    return conn_queue(t, local, out, (size_t)n);
}

int eng_reconnect(struct eng_thread *t, uint32_t index)
{
    uint32_t local = index / t->e->n_threads;
    TALLY_ASSERT(index % t->e->n_threads == t->id && local < t->n_slots);
    struct conn *c = &t->conns[local];
    if (!c->ready || c->state != C_OPEN)
        return -ENOTCONN;
    conn_release(t, local); /* as conn_fail() without counting */
    c->gen++;
    c->ready = false;
    c->t_drop = fo_now_ns();
    t->st.resumes++;
    c->resuming = true;
    conn_open(t, local);
    return 0;
}

bool eng_is_ready(const struct eng_thread *t, uint32_t index)
{
    uint32_t local = index / t->e->n_threads;
    return local < t->n_slots && t->conns[local].ready && t->conns[local].state == C_OPEN;
}

void eng_stop(struct eng *e, struct eng_stats *out)
{
    atomic_store(&e->stop, true);
    memset(out, 0, sizeof(*out));
    hist_init(&out->connect_ns);
    hist_init(&out->hello_ns);
    hist_init(&out->resume_ns);
    for (unsigned i = 0; i < e->n_threads; i++) {
        struct eng_thread *t = &e->threads[i];
        pthread_join(t->tid, NULL);
        out->ready += atomic_load(&t->ready);
        out->failed_before_ready += atomic_load(&t->failed);
        out->dropped_after_ready += atomic_load(&t->dropped);
        for (unsigned k = 0; k < ENG_ERR_KINDS; k++) {
            out->errors[k] += t->st.errors[k];
            if (t->st.last_errno[k])
                out->last_errno[k] = t->st.last_errno[k];
        }
        out->frames_in += t->st.frames_in;
        out->bytes_in += t->st.bytes_in;
        out->bytes_out += t->st.bytes_out;
        out->pings += t->st.pings;
        if (t->st.last_refusal)
            out->last_refusal = t->st.last_refusal;
        if (t->st.last_close_code)
            out->last_close_code = t->st.last_close_code;
        hist_merge(&out->connect_ns, &t->st.connect_ns);
        hist_merge(&out->hello_ns, &t->st.hello_ns);
        hist_merge(&out->resume_ns, &t->st.resume_ns);
        out->resumes += t->st.resumes;
        free(t->conns);
    }
    free(e->threads);
    free(e);
}

uint64_t eng_client_bytes(const struct eng *e)
{
    return (uint64_t)e->cfg.max_clients * sizeof(struct conn);
}
