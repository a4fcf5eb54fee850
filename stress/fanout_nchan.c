/*
 * fanout_nchan.c - tally-stress fanout-nchan: the same fan-out load as
 * `tally-stress fanout`, aimed at nginx + nchan, so both servers can be
 * compared at the same N, message size and per-subscriber rate.
 *
 *   tally-stress fanout-nchan --target 127.0.0.1:PORT --subscribers N --seconds S
 *                             [--rate M] [--bytes B] [--channel NAME]
 *                             [--server-pid MASTER] [--threads T] [--json FILE]
 *
 * N WebSockets connect (no subprotocol) from 127.0.1.x to /sub/CHANNEL and
 * count as connected once their 101 checks out. The server's memory is
 * sampled before and after they connect and settle; nginx is a master and
 * its workers, so every measurement sums the master and its children
 * (found by parent pid in /proc). Then one publisher POSTs a B-byte JSON
 * message M times a second to /pub/CHANNEL, each holding its sequence number
 * and the publish time (CLOCK_MONOTONIC of this process, taken just before
 * the POST). A subscriber receiving it at time t counts one delivery with
 * latency t - publish time; sequence gaps per connection are counted too.
 *
 * Every phase has a timeout; only loopback addresses are used.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
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

#include "core/base.h"
#include "stress/hist.h"
#include "stress/httpc.h"
#include "stress/wsc.h"

#define NF_SUBSCRIBERS_MAX 19000 /* the fd limit here is 20000 per process */
#define NF_THREADS_MAX 16
#define NF_RATE_MAX 1000
#define NF_SECONDS_MAX 600
#define NF_BYTES_MIN 64   /* room for the type, sequence and time fields */
#define NF_BYTES_MAX 4096 /* far below the receive buffer */
#define NF_CHANNEL_MAX 64
#define NF_SUB_ADDRS 8 /* 127.0.1.1 .. 127.0.1.8 */
#define NF_RBUF_BYTES 8192
#define NF_INFLIGHT_MAX 256 /* handshakes in flight per thread: stays under the backlog */
#define NF_EPOLL_BATCH 256
#define NF_POLL_MS 50
#define NF_CONNECT_BASE_S 30 /* connect phase: this plus one second per 1000 subscribers */
#define NF_SETTLE_MS 1000    /* idle time before the second memory sample */
#define NF_DRAIN_MS 1000     /* after the last publish, as `fanout` waits after the last ack */
#define NF_PROCS_MAX 64      /* master + workers + cache helpers */
#define NF_FRAME_OUT_MAX (WSC_CLIENT_HEADER_MAX + 125) /* a pong echoes <= 125 bytes */

struct nf_opts {
    char host[64];
    uint16_t port;
    unsigned subscribers, seconds, rate, bytes, threads;
    char channel[NF_CHANNEL_MAX];
    long server_pid; /* the nginx master; 0: no server measurements */
    const char *json_path;
};

struct nf_shared {
    const struct nf_opts *o;
    atomic_bool measuring; /* deliveries count only while the run lasts */
    atomic_bool stop;
};

enum nf_state { NS_CONNECTING, NS_HANDSHAKE, NS_OPEN, NS_DEAD };

struct nf_conn {
    int fd;
    enum nf_state state;
    unsigned index;
    uint64_t next_seq; /* the sequence number expected next; 0 before the first */
    uint32_t len;
    char key[WSC_KEY_CHARS + 1];
    uint8_t rbuf[NF_RBUF_BYTES];
};

struct nf_thread {
    pthread_t tid;
    struct nf_shared *sh;
    struct nf_conn *conns;
    unsigned n_conns, next_connect, inflight;
    int ep;
    uint32_t mask_state;
    atomic_uint opened;
    atomic_uint connect_errors; /* failed before the 101 */
    atomic_uint dropped;        /* closed after the 101 */
    uint64_t delivered, gaps, malformed; /* read after the join */
    struct hist hist;
};

/* Sums over the nginx master and its children. */
struct nf_server {
    uint64_t cpu_us, rss, pss;
    unsigned procs;
};

static uint64_t nf_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nf_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void nf_usage(void)
{
    fprintf(stderr,
            "usage: tally-stress fanout-nchan --target HOST:PORT --subscribers N --seconds S\n"
            "                                 [--rate M] [--bytes B] [--channel NAME]\n"
            "                                 [--server-pid MASTER] [--threads T] [--json FILE]\n");
    exit(2);
}

static unsigned nf_uint(const char *flag, const char *v, unsigned lo, unsigned hi)
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

static void nf_parse_target(struct nf_opts *o, const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || (size_t)(colon - v) >= sizeof(o->host))
        nf_usage();
    memcpy(o->host, v, (size_t)(colon - v));
    o->host[colon - v] = '\0';
    o->port = (uint16_t)nf_uint("--target port", colon + 1, 1, 65535);
}

static void nf_parse(int argc, char **argv, struct nf_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    snprintf(o->channel, sizeof(o->channel), "bench");
    o->port = 8080;
    o->subscribers = 1000;
    o->seconds = 10;
    o->rate = 10;   /* tallyd sends a subscriber at most one results per 100 ms */
    o->bytes = 100; /* about a 4-option results message */
    o->threads = 2;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (i + 1 >= argc)
            nf_usage();
        const char *v = argv[++i];
        if (strcmp(f, "--target") == 0)
            nf_parse_target(o, v);
        else if (strcmp(f, "--subscribers") == 0)
            o->subscribers = nf_uint(f, v, 1, NF_SUBSCRIBERS_MAX);
        else if (strcmp(f, "--seconds") == 0)
            o->seconds = nf_uint(f, v, 1, NF_SECONDS_MAX);
        else if (strcmp(f, "--rate") == 0)
            o->rate = nf_uint(f, v, 1, NF_RATE_MAX);
        else if (strcmp(f, "--bytes") == 0)
            o->bytes = nf_uint(f, v, NF_BYTES_MIN, NF_BYTES_MAX);
        else if (strcmp(f, "--threads") == 0)
            o->threads = nf_uint(f, v, 1, NF_THREADS_MAX);
        else if (strcmp(f, "--server-pid") == 0)
            o->server_pid = nf_uint(f, v, 1, 1u << 30);
        else if (strcmp(f, "--json") == 0)
            o->json_path = v;
        else if (strcmp(f, "--channel") == 0 && strlen(v) < sizeof(o->channel) &&
                 strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-_") == strlen(v) && *v)
            snprintf(o->channel, sizeof(o->channel), "%s", v);
        else
            nf_usage();
    }
}

/* ---- server measurements: the master and its children ---- */

/* Fills *ppid and *cpu_us from /proc/PID/stat; false when the process is gone. */
static bool proc_stat(long pid, long *ppid, uint64_t *cpu_us)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields restart after the last ')'. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", ppid, &ut, &st) != 3)
        return false;
    long hz = sysconf(_SC_CLK_TCK);
    *cpu_us = (ut + st) * 1000000ull / (uint64_t)(hz > 0 ? hz : 100);
    return true;
}

/* The value in kB of the line starting with key in file, as bytes; 0 when absent. */
static uint64_t proc_kb(long pid, const char *file, const char *key)
{
    char path[64], line[256];
    uint64_t kb = 0;
    size_t klen = strlen(key);
    snprintf(path, sizeof(path), "/proc/%ld/%s", pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0)
            kb = strtoull(line + klen, NULL, 10);
    fclose(f);
    return kb * 1024;
}

static void server_add(struct nf_server *s, long pid, uint64_t cpu_us)
{
    s->cpu_us += cpu_us;
    s->rss += proc_kb(pid, "status", "VmRSS:");
    /* Pss counts a shared page once across the processes that map it
     * (nchan's shared memory zone), where summed VmRSS counts it per worker. */
    s->pss += proc_kb(pid, "smaps_rollup", "Pss:");
    s->procs++;
}

/* Samples the master pid and every process whose parent it is. */
static void server_sample(long master, struct nf_server *s)
{
    memset(s, 0, sizeof(*s));
    long ppid = 0;
    uint64_t cpu = 0;
    if (master <= 0 || !proc_stat(master, &ppid, &cpu))
        return;
    server_add(s, master, cpu);
    DIR *d = opendir("/proc");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && s->procs < NF_PROCS_MAX) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        long pid = strtol(e->d_name, NULL, 10);
        if (pid != master && proc_stat(pid, &ppid, &cpu) && ppid == master)
            server_add(s, pid, cpu);
    }
    closedir(d);
}

/* ---- subscribers ---- */

static void conn_fail(struct nf_thread *t, struct nf_conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    if (c->state == NS_OPEN) {
        atomic_fetch_add(&t->dropped, 1);
    } else {
        atomic_fetch_add(&t->connect_errors, 1);
        t->inflight--;
    }
    c->state = NS_DEAD;
}

/* Starts one nonblocking connect from 127.0.1.x. */
static void conn_start(struct nf_thread *t, struct nf_conn *c)
{
    const struct nf_opts *o = t->sh->o;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(o->port)};
    struct sockaddr_in src = {.sin_family = AF_INET};
    char src_s[32];
    snprintf(src_s, sizeof(src_s), "127.0.1.%u", 1 + c->index % NF_SUB_ADDRS);
    t->inflight++;
    c->state = NS_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || inet_pton(AF_INET, o->host, &dst.sin_addr) != 1 ||
        inet_pton(AF_INET, src_s, &src.sin_addr) != 1)
        goto err;
    int one = 1;
    /* The port is picked at connect time, per destination, as in `fanout`. */
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

/* The connect finished: send the upgrade request, without a subprotocol
 * (nchan's only one, ws+meta.nchan, would prefix metadata to every message). */
static void conn_on_connected(struct nf_thread *t, struct nf_conn *c)
{
    const struct nf_opts *o = t->sh->o;
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0)
        goto err;
    char req[512];
    wsc_key_make(c->key);
    int n = snprintf(req, sizeof(req),
                     "GET /sub/%s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     o->channel, o->host, o->port, c->key);
    if (n < 0 || (size_t)n >= sizeof(req) || send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        goto err;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        goto err;
    c->state = NS_HANDSHAKE;
    return;
err:
    conn_fail(t, c);
}

/* Parses the decimal after key in the message; false when absent. */
static bool msg_field(const uint8_t *p, size_t len, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    const uint8_t *v = memmem(p, len, key, klen);
    if (v == NULL)
        return false;
    const uint8_t *end = p + len;
    uint64_t x = 0;
    bool any = false;
    for (v += klen; v < end && *v >= '0' && *v <= '9'; v++, any = true)
        x = x * 10 + (uint64_t)(*v - '0');
    *out = x;
    return any;
}

static void on_message(struct nf_thread *t, struct nf_conn *c, const struct wsc_frame *f,
                       uint64_t now)
{
    uint64_t seq = 0, sent = 0;
    if (!msg_field(f->payload, f->payload_len, "\"seq\":", &seq) ||
        !msg_field(f->payload, f->payload_len, "\"t_ns\":", &sent)) {
        t->malformed++;
        return;
    }
    if (c->next_seq != 0 && seq > c->next_seq)
        t->gaps += seq - c->next_seq;
    c->next_seq = seq + 1;
    if (!atomic_load_explicit(&t->sh->measuring, memory_order_relaxed))
        return;
    t->delivered++;
    hist_add(&t->hist, now > sent ? now - sent : 0);
}

/* Handles one server frame; returns false when the connection must go. */
static bool on_frame(struct nf_thread *t, struct nf_conn *c, const struct wsc_frame *f,
                     uint64_t now)
{
    uint8_t out[NF_FRAME_OUT_MAX];
    switch (f->opcode) {
    case WSC_OP_TEXT:
    case WSC_OP_BINARY: /* nchan picks the opcode from the message's content type */
        if (f->fin)
            on_message(t, c, f, now);
        return true;
    case WSC_OP_PING: {
        t->mask_state = t->mask_state * 1664525u + 1013904223u;
        int n = wsc_frame_build(out, sizeof(out), WSC_OP_PONG, f->payload, f->payload_len,
                                t->mask_state);
        if (n > 0) /* a pong that does not fit now is skipped: the next ping retries */
            (void)send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        return true;
    }
    case WSC_OP_CLOSE:
        return false;
    default:
        return true;
    }
}

/* Consumes the 101 and any complete frames in c->rbuf. */
static bool conn_consume(struct nf_thread *t, struct nf_conn *c, uint64_t now)
{
    size_t off = 0;
    if (c->state == NS_HANDSHAKE) {
        size_t head = 0;
        enum wsc_parse r = wsc_response_check((const char *)c->rbuf, c->len, c->key, &head);
        if (r == WSC_BAD)
            return false;
        if (r == WSC_AGAIN)
            return c->len < sizeof(c->rbuf);
        c->state = NS_OPEN;
        t->inflight--;
        atomic_fetch_add(&t->opened, 1);
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

static void conn_on_readable(struct nf_thread *t, struct nf_conn *c)
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
        if (!conn_consume(t, c, nf_now_ns()))
            break;
    }
    conn_fail(t, c);
}

static void *sub_worker(void *arg)
{
    struct nf_thread *t = arg;
    struct epoll_event evs[NF_EPOLL_BATCH];
    while (!atomic_load(&t->sh->stop)) {
        while (t->next_connect < t->n_conns && t->inflight < NF_INFLIGHT_MAX)
            conn_start(t, &t->conns[t->next_connect++]);
        int n = epoll_wait(t->ep, evs, NF_EPOLL_BATCH, NF_POLL_MS);
        for (int i = 0; i < n; i++) {
            struct nf_conn *c = evs[i].data.ptr;
            if (c->state == NS_DEAD)
                continue; /* failed earlier in this batch */
            if (c->state == NS_CONNECTING)
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

static struct nf_thread *subs_start(struct nf_shared *sh)
{
    const struct nf_opts *o = sh->o;
    struct nf_thread *ts = xcalloc(o->threads, sizeof(*ts));
    for (unsigned i = 0; i < o->threads; i++) {
        struct nf_thread *t = &ts[i];
        unsigned first = (unsigned)((uint64_t)o->subscribers * i / o->threads);
        t->sh = sh;
        t->n_conns = (unsigned)((uint64_t)o->subscribers * (i + 1) / o->threads) - first;
        t->conns = xcalloc(t->n_conns ? t->n_conns : 1, sizeof(*t->conns));
        for (unsigned k = 0; k < t->n_conns; k++) {
            t->conns[k].fd = -1;
            t->conns[k].index = first + k;
        }
        t->mask_state = 0x9e3779b9u ^ i;
        hist_init(&t->hist);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        TALLY_ASSERT(t->ep >= 0);
        TALLY_ASSERT(pthread_create(&t->tid, NULL, sub_worker, t) == 0);
    }
    return ts;
}

static void subs_count(const struct nf_thread *ts, unsigned n, unsigned *opened, unsigned *errors,
                       unsigned *dropped)
{
    *opened = *errors = *dropped = 0;
    for (unsigned i = 0; i < n; i++) {
        *opened += atomic_load(&ts[i].opened);
        *errors += atomic_load(&ts[i].connect_errors);
        *dropped += atomic_load(&ts[i].dropped);
    }
}

/* Waits until every subscriber is open or failed, or the phase times out. */
static double subs_wait_open(struct nf_thread *ts, const struct nf_opts *o)
{
    uint64_t t0 = nf_now_ns();
    uint64_t deadline = t0 + (NF_CONNECT_BASE_S + o->subscribers / 1000ull) * 1000000000ull;
    unsigned opened, errors, dropped;
    for (;;) {
        subs_count(ts, o->threads, &opened, &errors, &dropped);
        if (opened + errors >= o->subscribers || nf_now_ns() >= deadline)
            break;
        nf_sleep_ms(NF_POLL_MS);
    }
    return (double)(nf_now_ns() - t0) / 1e9;
}

/* ---- publisher ---- */

struct nf_result {
    unsigned opened, connect_errors, dropped, channel_subs;
    double connect_s, run_s;
    struct nf_server before, idle, run0, run1;
    uint64_t published, publish_errors, publish_other;
    uint64_t delivered, gaps, malformed;
    struct hist hist;
};

/* Writes message seq, stamped now, padded to exactly o->bytes; returns its length. */
static size_t msg_build(const struct nf_opts *o, uint64_t seq, char *out, size_t cap)
{
    TALLY_ASSERT(cap > o->bytes);
    int n = snprintf(out, cap, "{\"type\":\"results\",\"seq\":%" PRIu64 ",\"t_ns\":%" PRIu64
                     ",\"pad\":\"", seq, nf_now_ns());
    TALLY_ASSERT(n > 0 && (size_t)n + 2 <= o->bytes); /* NF_BYTES_MIN leaves room */
    memset(out + n, 'x', o->bytes - 2 - (size_t)n);
    memcpy(out + o->bytes - 2, "\"}", 3);
    return o->bytes;
}

/* Publishes rate*seconds messages, message k at t0 + k/rate; 201 and 202 are accepted. */
static void publish_all(const struct nf_opts *o, struct nf_result *res)
{
    struct httpc *h = xmalloc(sizeof(*h));
    char path[96], body[NF_BYTES_MAX + 1];
    httpc_init(h, o->host, o->port, NULL);
    snprintf(path, sizeof(path), "/pub/%s", o->channel);
    uint64_t n_msgs = (uint64_t)o->rate * o->seconds;
    uint64_t t0 = nf_now_ns();
    for (uint64_t k = 0; k < n_msgs; k++) {
        uint64_t due = t0 + k * 1000000000ull / o->rate;
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull),
                              .tv_nsec = (long)(due % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        msg_build(o, k + 1, body, sizeof(body));
        struct httpc_resp r;
        if (httpc_request(h, "POST", path, NULL, NULL, body, &r) < 0)
            res->publish_errors++;
        else if (r.status == 201 || r.status == 202)
            res->published++;
        else
            res->publish_other++;
    }
    httpc_close(h);
    free(h);
}

/* The channel's subscriber count as nchan reports it, 0 when unknown. */
static unsigned channel_subscribers(const struct nf_opts *o)
{
    struct httpc *h = xmalloc(sizeof(*h));
    char path[96];
    uint64_t subs = 0;
    httpc_init(h, o->host, o->port, NULL);
    snprintf(path, sizeof(path), "/pub/%s", o->channel);
    struct httpc_resp r;
    if (httpc_request(h, "GET", path, NULL, NULL, NULL, &r) == 0 && r.status == 200)
        (void)msg_field((const uint8_t *)r.body, r.body_len, "subscribers: ", &subs);
    httpc_close(h);
    free(h);
    return (unsigned)subs;
}

/* ---- the run and the report ---- */

static void subs_finish(struct nf_shared *sh, struct nf_thread *ts, struct nf_result *res)
{
    atomic_store(&sh->stop, true);
    hist_init(&res->hist);
    for (unsigned i = 0; i < sh->o->threads; i++) {
        pthread_join(ts[i].tid, NULL);
        res->delivered += ts[i].delivered;
        res->gaps += ts[i].gaps;
        res->malformed += ts[i].malformed;
        hist_merge(&res->hist, &ts[i].hist);
        close(ts[i].ep);
        free(ts[i].conns);
    }
    subs_count(ts, sh->o->threads, &res->opened, &res->connect_errors, &res->dropped);
    free(ts);
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static double per_conn(uint64_t before, uint64_t after, unsigned n)
{
    return after > before && n ? (double)(after - before) / n : 0;
}

static void report_json(const struct nf_opts *o, const struct nf_result *r, double rate,
                        uint64_t cpu, double cpu_per_msg)
{
    FILE *f = fopen(o->json_path, "w");
    if (f == NULL) {
        perror(o->json_path);
        return;
    }
    fprintf(f,
            "{\"scenario\":\"fanout-nchan\",\"subscribers\":%u,\"seconds\":%u,\"rate\":%u,"
            "\"bytes\":%u,\"run_s\":%.3f,\"published\":%" PRIu64 ",\"publish_errors\":%" PRIu64
            ",\"publish_other\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"delivered_per_s\":%.1f,"
            "\"gaps\":%" PRIu64 ",\"malformed\":%" PRIu64 ",\"latency_ms\":{\"n\":%" PRIu64
            ",\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"server_cpu_ms\":%.1f,"
            "\"cpu_us_per_msg\":%.3f,\"bytes_per_idle_conn\":%.0f,"
            "\"bytes_per_idle_conn_rss_sum\":%.0f,\"pss_before\":%" PRIu64 ",\"pss_idle\":%" PRIu64
            ",\"rss_before\":%" PRIu64 ",\"rss_idle\":%" PRIu64 ",\"server_procs\":%u,"
            "\"connect_errors\":%u,\"missing\":%u,\"dropped\":%u,\"connect_s\":%.3f,"
            "\"channel_subscribers\":%u}\n",
            o->subscribers, o->seconds, o->rate, o->bytes, r->run_s, r->published,
            r->publish_errors, r->publish_other, r->delivered, rate, r->gaps, r->malformed,
            r->hist.n, ms(hist_quantile(&r->hist, 0.50)), ms(hist_quantile(&r->hist, 0.95)),
            ms(hist_quantile(&r->hist, 0.99)), ms(r->hist.max),
            (double)cpu / 1e3, cpu_per_msg,
            per_conn(r->before.pss, r->idle.pss, r->opened),
            per_conn(r->before.rss, r->idle.rss, r->opened), r->before.pss, r->idle.pss,
            r->before.rss, r->idle.rss, r->idle.procs, r->connect_errors,
            o->subscribers - r->opened, r->dropped, r->connect_s, r->channel_subs);
    fclose(f);
}

static void report(const struct nf_opts *o, const struct nf_result *r)
{
    double rate = r->run_s > 0 ? (double)r->delivered / r->run_s : 0;
    uint64_t cpu = r->run1.cpu_us > r->run0.cpu_us ? r->run1.cpu_us - r->run0.cpu_us : 0;
    double cpu_per_msg = r->delivered ? (double)cpu / (double)r->delivered : 0;
    printf("fanout-nchan: %u subscribers (%u open in %.1f s; nchan channel info: %u), %u connect "
           "errors, %u dropped\n",
           o->subscribers, r->opened, r->connect_s, r->channel_subs, r->connect_errors,
           r->dropped);
    if (o->server_pid)
        printf("server (%u processes): PSS %.1f -> %.1f MiB (%.0f bytes per idle connection), "
               "summed VmRSS %.1f -> %.1f MiB (%.0f bytes)\n",
               r->idle.procs, (double)r->before.pss / 1048576.0, (double)r->idle.pss / 1048576.0,
               per_conn(r->before.pss, r->idle.pss, r->opened), (double)r->before.rss / 1048576.0,
               (double)r->idle.rss / 1048576.0, per_conn(r->before.rss, r->idle.rss, r->opened));
    printf("published: %u/s of %u bytes for %u s: %" PRIu64 " accepted, %" PRIu64
           " transport errors, %" PRIu64 " other answers\n",
           o->rate, o->bytes, o->seconds, r->published, r->publish_errors, r->publish_other);
    printf("delivered: %" PRIu64 " messages in %.1f s (%.0f messages/s), %" PRIu64
           " sequence gaps, %" PRIu64 " malformed\n",
           r->delivered, r->run_s, rate, r->gaps, r->malformed);
    printf("delivery latency ms (publish -> receive): p50 %.2f  p95 %.2f  p99 %.2f  max %.2f\n",
           ms(hist_quantile(&r->hist, 0.50)), ms(hist_quantile(&r->hist, 0.95)),
           ms(hist_quantile(&r->hist, 0.99)), ms(r->hist.max));
    if (o->server_pid)
        printf("server CPU over the run: %.1f ms, %.2f us per delivered message\n",
               (double)cpu / 1e3, cpu_per_msg);
    if (o->json_path)
        report_json(o, r, rate, cpu, cpu_per_msg);
}

/* Raises the soft fd limit to the hard one; fails when N sockets cannot fit. */
static int nf_fd_limit_check(unsigned subscribers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((uint64_t)subscribers + 64 > rl.rlim_cur) { /* the publisher, epoll sets, /proc reads */
        fprintf(stderr, "tally-stress: %u subscribers need more than the fd limit %llu\n",
                subscribers, (unsigned long long)rl.rlim_cur);
        return -EMFILE;
    }
    return 0;
}

/* The measured run: publish for S seconds, then drain, sampling the server around it. */
static void nf_run(struct nf_shared *sh, struct nf_result *res)
{
    const struct nf_opts *o = sh->o;
    server_sample(o->server_pid, &res->run0);
    uint64_t t0 = nf_now_ns();
    atomic_store(&sh->measuring, true);
    publish_all(o, res);
    nf_sleep_ms(NF_DRAIN_MS);
    atomic_store(&sh->measuring, false);
    res->run_s = (double)(nf_now_ns() - t0) / 1e9;
    server_sample(o->server_pid, &res->run1);
}

/** Runs `tally-stress fanout-nchan`; returns the process exit code. */
int fanout_nchan_main(int argc, char **argv);

int fanout_nchan_main(int argc, char **argv)
{
    static struct nf_opts o;
    static struct nf_shared sh;
    static struct nf_result res;
    nf_parse(argc, argv, &o);
    sh.o = &o;
    if (nf_fd_limit_check(o.subscribers) < 0)
        return 1;
    server_sample(o.server_pid, &res.before);
    struct nf_thread *ts = subs_start(&sh);
    res.connect_s = subs_wait_open(ts, &o);
    nf_sleep_ms(NF_SETTLE_MS);
    server_sample(o.server_pid, &res.idle);
    res.channel_subs = channel_subscribers(&o);
    subs_count(ts, o.threads, &res.opened, &res.connect_errors, &res.dropped);
    printf("connected: %u of %u subscribers open in %.1f s\n", res.opened, o.subscribers,
           res.connect_s);
    fflush(stdout);
    nf_run(&sh, &res);
    subs_finish(&sh, ts, &res);
    report(&o, &res);
    bool clean = res.opened == o.subscribers && res.dropped == 0 && res.publish_errors == 0 &&
                 res.publish_other == 0 && res.malformed == 0;
    return clean ? 0 : 1;
}
