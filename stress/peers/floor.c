/*
 * floor.c - tally-floor: the least a server can do to fan a message out over
 * loopback TCP, to measure what the kernel alone charges per delivery on
 * this machine.
 *
 *   tally-floor --port PORT [--mode write|uring]
 *
 * It speaks just enough of nchan's protocol for `tally-stress fanout-nchan`:
 * GET /sub/<any> with a WebSocket upgrade subscribes (the 101, and a
 * {"type":"hello"} frame if a subprotocol was asked for), POST /pub/<any> sends its body as one unmasked text frame to every
 * subscriber and answers 201, GET /pub/<any> answers "subscribers: N".
 * POST /api/... answers the few calls of `tally-stress votes` at once (a
 * vote is stored nowhere), for the same floor under HTTP votes. The
 * frame is built once; each delivery is one send of the same bytes, with
 * write() per subscriber (--mode write) or one io_uring send per subscriber
 * submitted in batches (--mode uring, as tallyd's network threads send).
 * There is no framing of what subscribers send, no queue, no timer, no
 * protocol state: whatever a real server adds on top of this is overhead
 * this floor does not have, so its CPU per delivery, measured as tallyd's is
 * (the process's utime + stime), is the lower bound for any server on this
 * machine and kernel with clients on loopback.
 *
 * One thread, epoll, plain fds: at most FLOOR_CONNS_MAX connections, under
 * the 20,000 fd limit. A subscriber whose socket buffer is full misses the
 * message (counted on stderr at exit): the clients read everything at
 * 10 messages a second, so none should.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define FLOOR_CONNS_MAX 19500
#define FLOOR_IN_MAX 8192     /* a request head and a body of at most 4 KiB */
#define FLOOR_FRAME_MAX 8200  /* header + the largest body */
#define FLOOR_EVENTS 256
#define FLOOR_RING_ENTRIES 4096
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct floor_conn {
    int fd;
    bool sub;
    size_t in_len;
    char in[FLOOR_IN_MAX];
};

struct floor {
    int lfd, ep;
    bool uring;
    struct io_uring ring;
    int subs[FLOOR_CONNS_MAX];
    unsigned n_subs;
    unsigned long long sent, missed, api_seq;
    unsigned char frame[FLOOR_FRAME_MAX];
};

static volatile sig_atomic_t floor_stop;

static void on_signal(int sig)
{
    (void)sig;
    floor_stop = 1;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* The header value after name (case-insensitive), copied into out; false when absent. */
static bool header(const char *head, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) != 0 || p[2 + n] != ':')
            continue;
        const char *v = p + 3 + n, *e;
        while (*v == ' ')
            v++;
        e = strstr(v, "\r\n");
        if (e == NULL || (size_t)(e - v) >= cap)
            return false;
        memcpy(out, v, (size_t)(e - v));
        out[e - v] = '\0';
        return true;
    }
    return false;
}

static void write_all(int fd, const char *s, size_t n)
{
    if (write(fd, s, n) != (ssize_t)n)
        fprintf(stderr, "tally-floor: short answer on fd %d\n", fd);
}

/* A string literal, without its NUL. */
#define WRITE_LIT(fd, lit) write_all((fd), (lit), sizeof(lit) - 1)

static void subscribe(struct floor *f, struct floor_conn *c, const char *head)
{
    char key[128], cat[200], out[256];
    unsigned char sha[SHA_DIGEST_LENGTH], accept[64];

    if (!header(head, "Sec-WebSocket-Key", key, sizeof(key)) || f->n_subs == FLOOR_CONNS_MAX) {
        WRITE_LIT(c->fd, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    snprintf(cat, sizeof(cat), "%s" WS_GUID, key);
    SHA1((const unsigned char *)cat, strlen(cat), sha);
    EVP_EncodeBlock(accept, sha, SHA_DIGEST_LENGTH);
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    write_all(c->fd, out, (size_t)n);
    /* tally-stress's io_uring client counts a subscriber ready at a hello;
     * it asks for tally.v1.json, the epoll client for nothing. */
    if (header(head, "Sec-WebSocket-Protocol", key, sizeof(key)))
        WRITE_LIT(c->fd, "\x81\x10{\"type\":\"hello\"}");
    c->sub = true;
    f->subs[f->n_subs++] = c->fd;
}

/* One send per subscriber through io_uring, submitted a ring's worth at a time. */
static void broadcast_uring(struct floor *f, size_t len)
{
    unsigned queued = 0;
    for (unsigned i = 0; i <= f->n_subs; i++) {
        struct io_uring_sqe *sqe = i < f->n_subs ? io_uring_get_sqe(&f->ring) : NULL;
        if (sqe == NULL || i == f->n_subs) {
            io_uring_submit_and_wait(&f->ring, queued);
            struct io_uring_cqe *cqe;
            unsigned head, seen = 0;
            io_uring_for_each_cqe(&f->ring, head, cqe)
            {
                if (cqe->res == (int)len)
                    f->sent++;
                else
                    f->missed++;
                seen++;
            }
            io_uring_cq_advance(&f->ring, seen);
            queued = 0;
            if (i == f->n_subs)
                break;
            sqe = io_uring_get_sqe(&f->ring);
        }
        io_uring_prep_send(sqe, f->subs[i], f->frame, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        queued++;
    }
}

static void broadcast(struct floor *f, const char *body, size_t n)
{
    size_t h = 2;
    f->frame[0] = 0x81; /* FIN, text */
    if (n < 126) {
        f->frame[1] = (unsigned char)n;
    } else {
        f->frame[1] = 126;
        f->frame[2] = (unsigned char)(n >> 8);
        f->frame[3] = (unsigned char)n;
        h = 4;
    }
    memcpy(f->frame + h, body, n);
    if (f->uring) {
        broadcast_uring(f, h + n);
        return;
    }
    for (unsigned i = 0; i < f->n_subs; i++) {
        if (send(f->subs[i], f->frame, h + n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)(h + n))
            f->sent++;
        else
            f->missed++;
    }
}

/*
 * Just enough of tallyd's API for `tally-stress votes`: a session, polls,
 * participants and votes that are answered at once and stored nowhere. A
 * vote's answer has the size and shape of tallyd's.
 */
static void api_answer(struct floor *f, struct floor_conn *c, const char *path)
{
    char body[256], out[512];
    int status = 201, n;

    f->api_seq++;
    if (strncmp(path, "/api/v1/sessions ", 17) == 0) {
        n = snprintf(body, sizeof(body), "{\"session\":{\"id\":1,\"code\":\"FLOOR1\"},"
                                         "\"presenter_token\":\"floor-presenter\"}");
    } else if (strstr(path, "/participants ") != NULL) {
        n = snprintf(body, sizeof(body), "{\"participant_token\":\"floor-%llu\"}", f->api_seq);
    } else if (strstr(path, "/polls ") != NULL) {
        n = snprintf(body, sizeof(body), "{\"poll\":{\"id\":%llu}}", f->api_seq);
    } else if (strstr(path, "/open ") != NULL) {
        status = 200;
        n = snprintf(body, sizeof(body), "{\"poll\":{\"state\":\"open\"}}");
    } else if (strstr(path, "/votes ") != NULL) {
        n = snprintf(body, sizeof(body),
                     "{\"vote\":{\"id\":%llu,\"poll_id\":1,\"participant_id\":%llu,\"choice\":[1],"
                     "\"created_at\":\"2026-11-22T18:00:00.000Z\"}}",
                     f->api_seq, f->api_seq);
    } else {
        status = 404;
        n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"not_found\"}}");
    }
    n = snprintf(out, sizeof(out),
                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 "Cache-Control: no-store\r\n\r\n%s",
                 status, status == 201 ? "Created" : status == 200 ? "OK" : "Not Found", n, body);
    write_all(c->fd, out, (size_t)n);
}

/* A complete request in c->in: answers it and keeps the rest. false: wait for more. */
static bool request(struct floor *f, struct floor_conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4), cl[32], out[96];
    if (end == NULL)
        return false;
    end[2] = '\0'; /* the last header line keeps its CRLF, which header() looks for */
    size_t head = (size_t)(end - c->in) + 4, body = 0;
    if (header(c->in, "Content-Length", cl, sizeof(cl)))
        body = strtoul(cl, NULL, 10);
    if (body > 4096) { /* not a publish this floor sends; forget it */
        c->in_len = 0;
        return false;
    }
    if (head + body > c->in_len) {
        end[2] = '\r';
        return false;
    }
    if (strncmp(c->in, "GET /sub/", 9) == 0) {
        subscribe(f, c, c->in);
    } else if (strncmp(c->in, "POST /pub/", 10) == 0) {
        broadcast(f, c->in + head, body);
        WRITE_LIT(c->fd, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    } else if (strncmp(c->in, "POST /api/", 10) == 0) {
        api_answer(f, c, c->in + 5);
    } else {
        int n = snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nsubscribers: %u",
                         13 + snprintf(NULL, 0, "%u", f->n_subs), f->n_subs);
        write_all(c->fd, out, (size_t)n);
    }
    memmove(c->in, c->in + head + body, c->in_len - head - body);
    c->in_len -= head + body;
    return !c->sub;
}

static void drop(struct floor *f, struct floor_conn *c)
{
    for (unsigned i = 0; c->sub && i < f->n_subs; i++) {
        if (f->subs[i] == c->fd) {
            f->subs[i] = f->subs[--f->n_subs];
            break;
        }
    }
    close(c->fd);
    free(c);
}

static void readable(struct floor *f, struct floor_conn *c)
{
    for (;;) {
        char discard[4096];
        char *dst = c->sub ? discard : c->in + c->in_len;
        size_t cap = c->sub ? sizeof(discard) : sizeof(c->in) - c->in_len;
        ssize_t n = read(c->fd, dst, cap);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || (!c->sub && cap == 0)) {
            drop(f, c);
            return;
        }
        if (n < 0)
            return;
        if (!c->sub) {
            c->in_len += (size_t)n;
            while (request(f, c))
                ;
        }
    }
}

static void accept_all(struct floor *f)
{
    for (;;) {
        int fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct floor_conn *c = calloc(1, sizeof(*c));
        if (c == NULL)
            die("calloc");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
    }
}

static void listen_on(struct floor *f, unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(0x7f000001)};
    int one = 1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->lfd < 0 || setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(f->lfd, 4096) < 0)
        die("listen");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(f->ep, EPOLL_CTL_ADD, f->lfd, &ev) < 0)
        die("epoll_ctl");
}

int main(int argc, char **argv)
{
    static struct floor f;
    unsigned port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--mode") == 0)
            f.uring = strcmp(argv[i + 1], "uring") == 0;
    }
    if (port == 0 || port > 65535) {
        fprintf(stderr, "usage: tally-floor --port PORT [--mode write|uring]\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    f.ep = epoll_create1(EPOLL_CLOEXEC);
    if (f.ep < 0)
        die("epoll_create1");
    if (f.uring && io_uring_queue_init(FLOOR_RING_ENTRIES, &f.ring, 0) < 0)
        die("io_uring_queue_init");
    listen_on(&f, port);
    while (!floor_stop) {
        struct epoll_event evs[FLOOR_EVENTS];
        int n = epoll_wait(f.ep, evs, FLOOR_EVENTS, 200);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                accept_all(&f);
            else
                readable(&f, evs[i].data.ptr);
        }
    }
    fprintf(stderr, "tally-floor: %llu sent, %llu missed, %u subscribers at exit\n", f.sent, f.missed,
            f.n_subs);
    return 0;
}
