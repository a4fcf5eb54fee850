/*
 * fanout.c - tally-stress fanout: how results fan out to many idle
 * WebSocket subscribers while votes arrive.
 *
 *   tally-stress fanout --target 127.0.0.1:PORT --subscribers N --seconds S
 *                       --rate R [--server-pid PID] [--threads T] [--json FILE]
 *
 * Setup joins N subscribers and V = R*S voters to one session with one open
 * 4-option poll, over HTTP from 127.0.0.(2+k), at most FANOUT_JOINS_PER_ADDR
 * joins per address so the per-address join limit (burst 1000) never bites.
 * Then N WebSockets connect from 127.0.1.x, spread over T epoll threads, and
 * wait for hello; the server's RSS before and after gives bytes per idle
 * connection. During the run voters post one vote each at R votes/s; the
 * k-th acknowledged vote's time is ack_ns[k]. A results message with
 * version v received at time t counts as delivered, with latency
 * t - ack_ns[v] when that ack is already recorded (votes are acknowledged in
 * about commit order, and version counts committed votes).
 *
 * Every phase has a timeout; only loopback addresses are used.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/base.h"
#include "stress/hist.h"
#include "stress/httpc.h"
#include "stress/wsc.h"

#define FANOUT_SUBSCRIBERS_MAX 19000 /* the fd limit here is 20000 per process */
#define FANOUT_THREADS_MAX 16
#define FANOUT_RATE_MAX 5000
#define FANOUT_SECONDS_MAX 600
#define FANOUT_JOIN_THREADS 8
#define FANOUT_JOINS_PER_ADDR 800 /* below the server's join burst of 1000 */
#define FANOUT_JOIN_ADDRS_MAX 250 /* 127.0.0.2 .. 127.0.0.251 */
#define FANOUT_SUB_ADDRS 8        /* 127.0.1.1 .. 127.0.1.8 */
#define FANOUT_VOTERS 2
#define FANOUT_TOKEN_MAX 96
#define FANOUT_RBUF_BYTES 8192 /* per connection: hello and results are far smaller */
#define FANOUT_INFLIGHT_MAX 256 /* handshakes in flight per thread: stays under the backlog */
#define FANOUT_EPOLL_BATCH 256
#define FANOUT_POLL_MS 50
#define FANOUT_HELLO_BASE_S 30 /* hello phase: this plus one second per 1000 subscribers */
#define FANOUT_SETTLE_MS 1000  /* idle time before the second RSS sample */
#define FANOUT_VOTE_GRACE_S 10 /* how long the voters may overrun S */
#define FANOUT_DRAIN_MS 1000   /* after the last ack: coalesced results still come */
#define FANOUT_FRAME_OUT_MAX (WSC_CLIENT_HEADER_MAX + 125) /* a pong echoes <= 125 bytes */

struct fo_opts {
    char host[64];
    uint16_t port;
    unsigned subscribers;
    unsigned seconds;
    unsigned rate;
    unsigned threads;
    long server_pid; /* 0: no server measurements */
    const char *json_path;
};

/* What every thread reads; counters written by many are atomic. */
struct fo_shared {
    const struct fo_opts *o;
    char code[8];
    int64_t poll_id;
    char (*tokens)[FANOUT_TOKEN_MAX]; /* subscribers first, then voters */
    unsigned n_tokens;
    unsigned n_voters;
    _Atomic uint64_t *ack_ns; /* [1..n_voters]: time of the k-th acknowledged vote */
    atomic_uint acked;
    atomic_uint join_next; /* next join chunk to take */
    atomic_bool join_failed;
    atomic_bool measuring; /* results count only while the run lasts */
    atomic_bool stop;
    uint64_t vote_t0_ns;
};

enum conn_state { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_DEAD };

struct conn {
    int fd;
    enum conn_state state;
    bool hello;
    unsigned index; /* global subscriber index */
    uint32_t len;
    char key[WSC_KEY_CHARS + 1];
    uint8_t rbuf[FANOUT_RBUF_BYTES];
};

struct sub_thread {
    pthread_t tid;
    struct fo_shared *sh;
    struct conn *conns;
    unsigned first, n_conns;
    unsigned next_connect, inflight;
    int ep;
    uint32_t mask_state;
    atomic_uint hellos;
    atomic_uint connect_errors; /* failed before hello */
    atomic_uint dropped;        /* closed after hello */
    uint64_t delivered, unmatched; /* read after the join */
    struct hist hist;
};

struct voter {
    pthread_t tid;
    unsigned index;
    struct fo_shared *sh;
    uint64_t errors, other;
};

static uint64_t fo_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fo_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void fo_usage(void)
{
    fprintf(stderr,
            "usage: tally-stress fanout --target HOST:PORT --subscribers N --seconds S --rate R\n"
            "                           [--server-pid PID] [--threads T] [--json FILE]\n");
    exit(2);
}

static unsigned fo_uint(const char *flag, const char *v, unsigned lo, unsigned hi)
{
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno || *end || x < lo || x > hi) {
        fprintf(stderr, "tally-stress: invalid %s '%s': expected %u..%u\n", flag, v, lo, hi);
        exit(2);
    }
    return (unsigned)x;
}

static void fo_parse(int argc, char **argv, struct fo_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8080;
    o->subscribers = 1000;
    o->seconds = 10;
    o->rate = 200;
    o->threads = 2;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (i + 1 >= argc)
            fo_usage();
        const char *v = argv[++i];
        if (strcmp(f, "--target") == 0) {
            const char *colon = strrchr(v, ':');
            if (!colon || (size_t)(colon - v) >= sizeof(o->host))
                fo_usage();
            memcpy(o->host, v, (size_t)(colon - v));
            o->host[colon - v] = '\0';
            o->port = (uint16_t)fo_uint("--target port", colon + 1, 1, 65535);
        } else if (strcmp(f, "--subscribers") == 0) {
            o->subscribers = fo_uint(f, v, 1, FANOUT_SUBSCRIBERS_MAX);
        } else if (strcmp(f, "--seconds") == 0) {
            o->seconds = fo_uint(f, v, 1, FANOUT_SECONDS_MAX);
        } else if (strcmp(f, "--rate") == 0) {
            o->rate = fo_uint(f, v, 1, FANOUT_RATE_MAX);
        } else if (strcmp(f, "--threads") == 0) {
            o->threads = fo_uint(f, v, 1, FANOUT_THREADS_MAX);
        } else if (strcmp(f, "--server-pid") == 0) {
            o->server_pid = fo_uint(f, v, 1, 1u << 30);
        } else if (strcmp(f, "--json") == 0) {
            o->json_path = v;
        } else {
            fo_usage();
        }
    }
    uint64_t people = (uint64_t)o->subscribers + (uint64_t)o->rate * o->seconds;
    if (people > (uint64_t)FANOUT_JOINS_PER_ADDR * FANOUT_JOIN_ADDRS_MAX) {
        fprintf(stderr, "tally-stress: subscribers + rate*seconds must be at most %u\n",
                (unsigned)(FANOUT_JOINS_PER_ADDR * FANOUT_JOIN_ADDRS_MAX));
        exit(2);
    }
}

/* ---- server measurements ---- */

/* The server's resident set in bytes, 0 when unknown. */
static uint64_t server_rss_bytes(long pid)
{
    char path[64], line[256];
    uint64_t kb = 0;
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = pid > 0 ? fopen(path, "r") : NULL;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtoull(line + 6, NULL, 10);
    fclose(f);
    return kb * 1024;
}

/* The server's user + system CPU time in microseconds, 0 when unknown. */
static uint64_t server_cpu_us(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = pid > 0 ? fopen(path, "r") : NULL;
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields restart after the last ')'. */
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return (ut + st) * 1000000ull / (uint64_t)(hz > 0 ? hz : 100);
}

/* ---- setup over HTTP ---- */

static json_t *fo_call(struct httpc *h, const char *method, const char *path, const char *token,
                       const char *body, int *status)
{
    struct httpc_resp r;
    *status = 0;
    if (httpc_request(h, method, path, token, NULL, body, &r) < 0)
        return NULL;
    *status = r.status;
    return json_loadb(r.body, r.body_len, 0, NULL);
}

/* Creates the session and one open 4-option poll. Returns 0 or -EPROTO. */
static int setup_poll(struct fo_shared *sh)
{
    const struct fo_opts *o = sh->o;
    struct httpc *h = xmalloc(sizeof(*h));
    char path[128], ptok[FANOUT_TOKEN_MAX] = "";
    int st = 0, rc = -EPROTO;
    httpc_init(h, o->host, o->port, NULL);
    json_t *j = fo_call(h, "POST", "/api/v1/sessions", NULL, "{\"title\":\"fan-out benchmark\"}", &st);
    const char *tok = json_string_value(json_object_get(j, "presenter_token"));
    const char *code = json_string_value(json_object_get(json_object_get(j, "session"), "code"));
    if (st != 201 || tok == NULL || code == NULL || strlen(tok) >= sizeof(ptok)) {
        fprintf(stderr, "tally-stress: create session failed (status %d)\n", st);
        goto out_free_json;
    }
    snprintf(ptok, sizeof(ptok), "%s", tok);
    snprintf(sh->code, sizeof(sh->code), "%s", code);
    json_decref(j);
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/polls", sh->code);
    j = fo_call(h, "POST", path, ptok,
                "{\"question\":\"Which?\",\"kind\":\"single\",\"options\":[\"A\",\"B\",\"C\",\"D\"]}",
                &st);
    sh->poll_id = json_integer_value(json_object_get(json_object_get(j, "poll"), "id"));
    if (st != 201 || sh->poll_id <= 0) {
        fprintf(stderr, "tally-stress: create poll failed (status %d)\n", st);
        goto out_free_json;
    }
    json_decref(j);
    snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/open", sh->poll_id);
    j = fo_call(h, "POST", path, ptok, NULL, &st);
    if (st != 200) {
        fprintf(stderr, "tally-stress: open poll failed (status %d)\n", st);
        goto out_free_json;
    }
    rc = 0;
out_free_json:
    json_decref(j);
    httpc_close(h);
    free(h);
    return rc;
}

/* Joins participants [first, end) from one source address. Returns 0 or -EPROTO. */
static int join_chunk(struct fo_shared *sh, struct httpc *h, unsigned first, unsigned end)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/participants", sh->code);
    for (unsigned i = first; i < end && !atomic_load(&sh->join_failed); i++) {
        int st = 0;
        json_t *j = fo_call(h, "POST", path, NULL, "{}", &st);
        const char *tok = json_string_value(json_object_get(j, "participant_token"));
        if (st != 201 || tok == NULL || strlen(tok) >= FANOUT_TOKEN_MAX) {
            fprintf(stderr, "tally-stress: join failed (status %d)\n", st);
            json_decref(j);
            return -EPROTO;
        }
        snprintf(sh->tokens[i], FANOUT_TOKEN_MAX, "%s", tok);
        json_decref(j);
    }
    return 0;
}

static void *join_worker(void *arg)
{
    struct fo_shared *sh = arg;
    struct httpc *h = xmalloc(sizeof(*h));
    char src[32];
    for (;;) {
        unsigned k = atomic_fetch_add(&sh->join_next, 1);
        unsigned first = k * FANOUT_JOINS_PER_ADDR;
        if (first >= sh->n_tokens || atomic_load(&sh->join_failed))
            break;
        unsigned end = first + FANOUT_JOINS_PER_ADDR;
        end = end < sh->n_tokens ? end : sh->n_tokens;
        snprintf(src, sizeof(src), "127.0.0.%u", 2 + k);
        httpc_init(h, sh->o->host, sh->o->port, src);
        int rc = join_chunk(sh, h, first, end);
        httpc_close(h);
        if (rc < 0)
            atomic_store(&sh->join_failed, true);
    }
    free(h);
    return NULL;
}

static int join_all(struct fo_shared *sh)
{
    pthread_t tids[FANOUT_JOIN_THREADS];
    static_assert(FANOUT_JOIN_ADDRS_MAX + 2 <= 255, "join addresses fit in 127.0.0.x");
    for (unsigned i = 0; i < FANOUT_JOIN_THREADS; i++)
        TALLY_ASSERT(pthread_create(&tids[i], NULL, join_worker, sh) == 0);
    for (unsigned i = 0; i < FANOUT_JOIN_THREADS; i++)
        pthread_join(tids[i], NULL);
    return atomic_load(&sh->join_failed) ? -EPROTO : 0;
}

/* ---- subscribers ---- */

static void conn_fail(struct sub_thread *t, struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    if (c->hello) {
        atomic_fetch_add(&t->dropped, 1);
    } else {
        atomic_fetch_add(&t->connect_errors, 1);
        t->inflight--;
    }
    c->state = CS_DEAD;
}

/* Starts one nonblocking connect from 127.0.1.x. */
static void conn_start(struct sub_thread *t, struct conn *c)
{
    const struct fo_opts *o = t->sh->o;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(o->port)};
    struct sockaddr_in src = {.sin_family = AF_INET};
    char src_s[32];
    snprintf(src_s, sizeof(src_s), "127.0.1.%u", 1 + c->index % FANOUT_SUB_ADDRS);
    t->inflight++;
    c->state = CS_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || inet_pton(AF_INET, o->host, &dst.sin_addr) != 1 ||
        inet_pton(AF_INET, src_s, &src.sin_addr) != 1)
        goto err;
    int one = 1;
    /* The port is picked at connect time, per destination, so one source
     * address is not limited to one ephemeral range for all its sockets. */
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0)
        goto err;
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
        goto err;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        goto err;
    return;
err:
    conn_fail(t, c);
}

/* The connect finished: send the upgrade request (small enough for any fresh socket buffer). */
static void conn_on_connected(struct sub_thread *t, struct conn *c)
{
    const struct fo_shared *sh = t->sh;
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0)
        goto err;
    char path[256], req[512];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/ws?token=%s", sh->code, sh->tokens[c->index]);
    wsc_key_make(c->key);
    int n = wsc_request_format(req, sizeof(req), sh->o->host, sh->o->port, path, c->key,
                               "tally.v1.json");
    if (n < 0 || send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        goto err;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        goto err;
    c->state = CS_HANDSHAKE;
    return;
err:
    conn_fail(t, c);
}

/* Parses the decimal after "version": in a results message; 0 when absent. */
static uint64_t results_version(const uint8_t *p, size_t len)
{
    static const char key[] = "\"version\":";
    const uint8_t *v = memmem(p, len, key, sizeof(key) - 1);
    if (v == NULL)
        return 0;
    const uint8_t *end = p + len;
    uint64_t x = 0;
    for (v += sizeof(key) - 1; v < end && *v >= '0' && *v <= '9'; v++)
        x = x * 10 + (uint64_t)(*v - '0');
    return x;
}

static void on_text(struct sub_thread *t, struct conn *c, const struct wsc_frame *f, uint64_t now)
{
    static const char hello[] = "{\"type\":\"hello\"";
    static const char results[] = "{\"type\":\"results\"";
    if (!c->hello && f->payload_len >= sizeof(hello) - 1 &&
        memcmp(f->payload, hello, sizeof(hello) - 1) == 0) {
        c->hello = true;
        t->inflight--;
        atomic_fetch_add(&t->hellos, 1);
        return;
    }
    if (!atomic_load_explicit(&t->sh->measuring, memory_order_relaxed) ||
        f->payload_len < sizeof(results) - 1 ||
        memcmp(f->payload, results, sizeof(results) - 1) != 0)
        return;
    t->delivered++;
    uint64_t v = results_version(f->payload, f->payload_len);
    uint64_t ack = 0;
    if (v >= 1 && v <= t->sh->n_voters)
        ack = atomic_load_explicit(&t->sh->ack_ns[v], memory_order_acquire);
    if (ack == 0) {
        t->unmatched++;
        return;
    }
    /* The ack may be stamped after this batch was read: that is no delay at all. */
    hist_add(&t->hist, now > ack ? now - ack : 0);
}

/* Handles one server frame; returns false when the connection must go. */
static bool on_frame(struct sub_thread *t, struct conn *c, const struct wsc_frame *f, uint64_t now)
{
    uint8_t out[FANOUT_FRAME_OUT_MAX];
    switch (f->opcode) {
    case WSC_OP_TEXT:
        if (f->fin)
            on_text(t, c, f, now);
        return true;
    case WSC_OP_PING: {
        t->mask_state = t->mask_state * 1664525u + 1013904223u;
        int n = wsc_frame_build(out, sizeof(out), WSC_OP_PONG, f->payload, f->payload_len,
                                t->mask_state);
        /* A pong that does not fit in the socket buffer now is skipped: the next ping retries. */
        if (n > 0)
            (void)send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        return true;
    }
    case WSC_OP_CLOSE:
        return false;
    default:
        return true; /* binary, pong, continuation: not used by a json subscriber */
    }
}

/* Consumes the 101 and any complete frames in c->rbuf. */
static bool conn_consume(struct sub_thread *t, struct conn *c, uint64_t now)
{
    size_t off = 0;
    if (c->state == CS_HANDSHAKE) {
        size_t head = 0;
        enum wsc_parse r = wsc_response_check((const char *)c->rbuf, c->len, c->key, &head);
        if (r == WSC_BAD)
            return false;
        if (r == WSC_AGAIN)
            return c->len < sizeof(c->rbuf);
        c->state = CS_OPEN;
        off = head;
    }
    for (;;) {
        struct wsc_frame f;
        enum wsc_parse r = wsc_frame_parse(c->rbuf + off, c->len - off, &f);
        if (r == WSC_BAD)
            return false;
        if (r == WSC_AGAIN)
            break;
        if (!on_frame(t, c, &f, now))
            return false;
        off += f.frame_len;
    }
    memmove(c->rbuf, c->rbuf + off, c->len - off);
    c->len -= (uint32_t)off;
    return c->len < sizeof(c->rbuf); /* a full buffer with no complete frame never empties */
}

static void conn_on_readable(struct sub_thread *t, struct conn *c)
{
    for (;;) {
        ssize_t r = recv(c->fd, c->rbuf + c->len, sizeof(c->rbuf) - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0)
            break;
        c->len += (uint32_t)r;
        if (!conn_consume(t, c, fo_now_ns()))
            break;
    }
    conn_fail(t, c);
}

static void *sub_worker(void *arg)
{
    struct sub_thread *t = arg;
    struct epoll_event evs[FANOUT_EPOLL_BATCH];
    while (!atomic_load(&t->sh->stop)) {
        while (t->next_connect < t->n_conns && t->inflight < FANOUT_INFLIGHT_MAX)
            conn_start(t, &t->conns[t->next_connect++]);
        int n = epoll_wait(t->ep, evs, FANOUT_EPOLL_BATCH, FANOUT_POLL_MS);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state == CS_DEAD)
                continue; /* failed earlier in this batch */
            if (c->state == CS_CONNECTING)
                conn_on_connected(t, c);
            else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_on_readable(t, c);
        }
    }
    for (unsigned i = 0; i < t->n_conns; i++)
        if (t->conns[i].fd >= 0)
            close(t->conns[i].fd);
    return NULL;
}

static struct sub_thread *subs_start(struct fo_shared *sh)
{
    const struct fo_opts *o = sh->o;
    struct sub_thread *ts = xcalloc(o->threads, sizeof(*ts));
    for (unsigned i = 0; i < o->threads; i++) {
        struct sub_thread *t = &ts[i];
        t->sh = sh;
        t->first = (unsigned)((uint64_t)o->subscribers * i / o->threads);
        t->n_conns = (unsigned)((uint64_t)o->subscribers * (i + 1) / o->threads) - t->first;
        t->conns = xcalloc(t->n_conns ? t->n_conns : 1, sizeof(*t->conns));
        for (unsigned k = 0; k < t->n_conns; k++) {
            t->conns[k].fd = -1;
            t->conns[k].index = t->first + k;
        }
        t->mask_state = 0x9e3779b9u ^ i;
        hist_init(&t->hist);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        TALLY_ASSERT(t->ep >= 0);
        TALLY_ASSERT(pthread_create(&t->tid, NULL, sub_worker, t) == 0);
    }
    return ts;
}

/* Hellos and failures so far, summed over the threads. */
static void subs_count(const struct sub_thread *ts, unsigned n, unsigned *hellos, unsigned *errors,
                       unsigned *dropped)
{
    *hellos = *errors = *dropped = 0;
    for (unsigned i = 0; i < n; i++) {
        *hellos += atomic_load(&ts[i].hellos);
        *errors += atomic_load(&ts[i].connect_errors);
        *dropped += atomic_load(&ts[i].dropped);
    }
}

/* Waits until every subscriber has its hello or failed, or the phase times out. */
static double subs_wait_hello(struct sub_thread *ts, const struct fo_opts *o)
{
    uint64_t t0 = fo_now_ns();
    uint64_t deadline = t0 + (FANOUT_HELLO_BASE_S + o->subscribers / 1000ull) * 1000000000ull;
    unsigned hellos, errors, dropped;
    for (;;) {
        subs_count(ts, o->threads, &hellos, &errors, &dropped);
        if (hellos + errors >= o->subscribers || fo_now_ns() >= deadline)
            break;
        fo_sleep_ms(FANOUT_POLL_MS);
    }
    return (double)(fo_now_ns() - t0) / 1e9;
}

/* ---- voters ---- */

static void vote_one(struct voter *v, struct httpc *h, const char *path, unsigned k)
{
    struct fo_shared *sh = v->sh;
    char key[48], body[32];
    snprintf(key, sizeof(key), "fanout-%u", k);
    snprintf(body, sizeof(body), "{\"choice\":[%u]}", k % 4);
    struct httpc_resp r;
    int rc = httpc_request(h, "POST", path, sh->tokens[sh->o->subscribers + k], key, body, &r);
    if (rc < 0) {
        v->errors++;
    } else if (r.status == 201) {
        uint64_t now = fo_now_ns();
        unsigned idx = atomic_fetch_add(&sh->acked, 1) + 1;
        TALLY_ASSERT(idx <= sh->n_voters); /* each voter votes once */
        atomic_store_explicit(&sh->ack_ns[idx], now, memory_order_release);
    } else {
        v->other++;
    }
}

/* Votes k = index, index + FANOUT_VOTERS, ... each at its slot of the R/s schedule. */
static void *vote_worker(void *arg)
{
    struct voter *v = arg;
    struct fo_shared *sh = v->sh;
    const struct fo_opts *o = sh->o;
    struct httpc *h = xmalloc(sizeof(*h));
    char path[96];
    httpc_init(h, o->host, o->port, NULL);
    snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/votes", sh->poll_id);
    uint64_t deadline = sh->vote_t0_ns + (o->seconds + FANOUT_VOTE_GRACE_S) * 1000000000ull;
    for (unsigned k = v->index; k < sh->n_voters; k += FANOUT_VOTERS) {
        uint64_t due = sh->vote_t0_ns + (uint64_t)k * 1000000000ull / o->rate;
        uint64_t now = fo_now_ns();
        if (now >= deadline)
            break;
        if (due > now) {
            struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull),
                                  .tv_nsec = (long)(due % 1000000000ull)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
        }
        vote_one(v, h, path, k);
    }
    httpc_close(h);
    free(h);
    return NULL;
}

/* ---- the run and the report ---- */

struct fo_result {
    unsigned hellos, connect_errors, dropped;
    double hello_s, run_s;
    uint64_t rss_before, rss_idle;
    uint64_t cpu_us;
    uint64_t acked, vote_errors, vote_other;
    uint64_t delivered, unmatched;
    struct hist hist;
};

static void run_votes(struct fo_shared *sh, struct fo_result *res)
{
    struct voter vs[FANOUT_VOTERS];
    uint64_t cpu0 = server_cpu_us(sh->o->server_pid);
    sh->vote_t0_ns = fo_now_ns();
    atomic_store(&sh->measuring, true);
    for (unsigned i = 0; i < FANOUT_VOTERS; i++) {
        vs[i] = (struct voter){.index = i, .sh = sh};
        TALLY_ASSERT(pthread_create(&vs[i].tid, NULL, vote_worker, &vs[i]) == 0);
    }
    for (unsigned i = 0; i < FANOUT_VOTERS; i++) {
        pthread_join(vs[i].tid, NULL);
        res->vote_errors += vs[i].errors;
        res->vote_other += vs[i].other;
    }
    fo_sleep_ms(FANOUT_DRAIN_MS);
    atomic_store(&sh->measuring, false);
    res->run_s = (double)(fo_now_ns() - sh->vote_t0_ns) / 1e9;
    uint64_t cpu1 = server_cpu_us(sh->o->server_pid);
    res->cpu_us = cpu1 > cpu0 ? cpu1 - cpu0 : 0;
    res->acked = atomic_load(&sh->acked);
}

static void subs_finish(struct fo_shared *sh, struct sub_thread *ts, struct fo_result *res)
{
    atomic_store(&sh->stop, true);
    hist_init(&res->hist);
    for (unsigned i = 0; i < sh->o->threads; i++) {
        pthread_join(ts[i].tid, NULL);
        res->delivered += ts[i].delivered;
        res->unmatched += ts[i].unmatched;
        hist_merge(&res->hist, &ts[i].hist);
        close(ts[i].ep);
        free(ts[i].conns);
    }
    subs_count(ts, sh->o->threads, &res->hellos, &res->connect_errors, &res->dropped);
    free(ts);
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void report_json(const struct fo_opts *o, const struct fo_result *r, double bpc,
                        double rate, double cpu_per_msg)
{
    FILE *f = fopen(o->json_path, "w");
    if (f == NULL) {
        perror(o->json_path);
        return;
    }
    fprintf(f,
            "{\"scenario\":\"fanout\",\"subscribers\":%u,\"seconds\":%u,\"rate\":%u,"
            "\"run_s\":%.3f,\"votes_acked\":%" PRIu64 ",\"vote_errors\":%" PRIu64
            ",\"vote_other\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"delivered_per_s\":%.1f,"
            "\"unmatched\":%" PRIu64 ",\"latency_ms\":{\"n\":%" PRIu64 ",\"p50\":%.3f,"
            "\"p95\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"server_cpu_ms\":%.1f,"
            "\"cpu_us_per_msg\":%.3f,\"bytes_per_idle_conn\":%.0f,\"rss_before\":%" PRIu64
            ",\"rss_idle\":%" PRIu64 ",\"connect_errors\":%u,\"missing_hellos\":%u,"
            "\"dropped\":%u,\"hello_s\":%.3f}\n",
            o->subscribers, o->seconds, o->rate, r->run_s, r->acked, r->vote_errors, r->vote_other,
            r->delivered, rate, r->unmatched, r->hist.n, ms(hist_quantile(&r->hist, 0.50)),
            ms(hist_quantile(&r->hist, 0.95)), ms(hist_quantile(&r->hist, 0.99)), ms(r->hist.max),
            (double)r->cpu_us / 1e3, cpu_per_msg, bpc, r->rss_before, r->rss_idle,
            r->connect_errors, o->subscribers - r->hellos, r->dropped, r->hello_s);
    fclose(f);
}

static void report(const struct fo_opts *o, const struct fo_result *r)
{
    double rate = r->run_s > 0 ? (double)r->delivered / r->run_s : 0;
    double bpc = r->rss_idle > r->rss_before && r->hellos
                     ? (double)(r->rss_idle - r->rss_before) / r->hellos
                     : 0;
    double cpu_per_msg = r->delivered ? (double)r->cpu_us / (double)r->delivered : 0;
    printf("fanout: %u subscribers (%u hello in %.1f s), %u connect errors, %u missing hellos, "
           "%u dropped\n",
           o->subscribers, r->hellos, r->hello_s, r->connect_errors, o->subscribers - r->hellos,
           r->dropped);
    if (o->server_pid)
        printf("server RSS: %.1f MiB before, %.1f MiB idle-connected: %.0f bytes per idle "
               "connection\n",
               (double)r->rss_before / 1048576.0, (double)r->rss_idle / 1048576.0, bpc);
    printf("votes: %u/s for %u s: %" PRIu64 " acknowledged, %" PRIu64 " transport errors, %" PRIu64
           " other answers\n",
           o->rate, o->seconds, r->acked, r->vote_errors, r->vote_other);
    printf("delivered: %" PRIu64 " results messages in %.1f s (%.0f messages/s); %" PRIu64
           " with latency, %" PRIu64 " without a recorded ack\n",
           r->delivered, r->run_s, rate, r->hist.n, r->unmatched);
    printf("delivery latency ms (ack -> results): p50 %.2f  p95 %.2f  p99 %.2f  max %.2f\n",
           ms(hist_quantile(&r->hist, 0.50)), ms(hist_quantile(&r->hist, 0.95)),
           ms(hist_quantile(&r->hist, 0.99)), ms(r->hist.max));
    if (o->server_pid)
        printf("server CPU over the run: %.1f ms, %.2f us per delivered message\n",
               (double)r->cpu_us / 1e3, cpu_per_msg);
    if (o->json_path)
        report_json(o, r, bpc, rate, cpu_per_msg);
}

/* Raises the soft fd limit to the hard one; fails when N sockets cannot fit. */
static int fd_limit_check(unsigned subscribers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    /* Room for the voters, the epoll sets, stdio and /proc reads. */
    if ((uint64_t)subscribers + 64 > rl.rlim_cur) {
        fprintf(stderr, "tally-stress: %u subscribers need more than the fd limit %llu\n",
                subscribers, (unsigned long long)rl.rlim_cur);
        return -EMFILE;
    }
    return 0;
}

static int fo_setup(struct fo_shared *sh)
{
    const struct fo_opts *o = sh->o;
    sh->n_voters = o->rate * o->seconds;
    sh->n_tokens = o->subscribers + sh->n_voters;
    sh->tokens = xcalloc(sh->n_tokens, sizeof(*sh->tokens));
    sh->ack_ns = xcalloc(sh->n_voters + 1, sizeof(*sh->ack_ns));
    uint64_t t0 = fo_now_ns();
    if (setup_poll(sh) < 0 || join_all(sh) < 0)
        return -EPROTO;
    printf("setup: session %s, poll %" PRId64 ", %u participants joined in %.1f s\n", sh->code,
           sh->poll_id, sh->n_tokens, (double)(fo_now_ns() - t0) / 1e9);
    return 0;
}

/** Runs `tally-stress fanout`; returns the process exit code. */
int fanout_main(int argc, char **argv);

int fanout_main(int argc, char **argv)
{
    static struct fo_opts o;
    static struct fo_shared sh;
    static struct fo_result res;
    fo_parse(argc, argv, &o);
    sh.o = &o;
    if (fd_limit_check(o.subscribers) < 0 || fo_setup(&sh) < 0)
        return 1;
    res.rss_before = server_rss_bytes(o.server_pid);
    struct sub_thread *ts = subs_start(&sh);
    res.hello_s = subs_wait_hello(ts, &o);
    fo_sleep_ms(FANOUT_SETTLE_MS);
    res.rss_idle = server_rss_bytes(o.server_pid);
    subs_count(ts, o.threads, &res.hellos, &res.connect_errors, &res.dropped);
    printf("connected: %u of %u subscribers got hello in %.1f s\n", res.hellos, o.subscribers,
           res.hello_s);
    fflush(stdout);
    run_votes(&sh, &res);
    subs_finish(&sh, ts, &res);
    report(&o, &res);
    free(sh.tokens);
    free(sh.ack_ns);
    bool clean = res.hellos == o.subscribers && res.dropped == 0 && res.vote_errors == 0 &&
                 res.vote_other == 0;
    return clean ? 0 : 1;
}
