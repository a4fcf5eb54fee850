/*
 * httpc.c - see httpc.h. Reads until the head is complete and the body of
 * Content-Length has arrived; anything else from the server is an error.
 */
#include "stress/httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

void httpc_init(struct httpc *h, const char *host, uint16_t port, const char *source)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->host, sizeof(h->host), "%s", host);
    h->port = port;
    snprintf(h->source, sizeof(h->source), "%s", source ? source : "");
    h->fd = -1;
}

void httpc_close(struct httpc *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    h->len = 0;
}

static int httpc_connect(struct httpc *h)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(h->port)};
    if (inet_pton(AF_INET, h->host, &sa.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = HTTPC_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (h->source[0]) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, h->source, &src.sin_addr) == 1)
            bind(fd, (struct sockaddr *)&src, sizeof(src));
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    h->fd = fd;
    h->len = 0;
    return 0;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Parses a complete answer at the start of h->buf; returns its length or 0 if incomplete. */
static size_t parse_answer(struct httpc *h, struct httpc_resp *out)
{
    char *end = memmem(h->buf, h->len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    size_t head = (size_t)(end - h->buf) + 4;
    size_t clen = 0;
    for (char *line = h->buf; line < end;) {
        char *eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            clen = strtoul(line + 15, NULL, 10);
        line = eol + 2;
    }
    if (h->len < head + clen)
        return 0;
    out->status = atoi(h->buf + 9);
    out->body = h->buf + head;
    out->body_len = clen;
    return head + clen;
}

int httpc_request(struct httpc *h, const char *method, const char *path, const char *token,
                  const char *idem_key, const char *body, struct httpc_resp *out)
{
    char req[4096];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: %s:%u\r\nContent-Length: %zu\r\n"
                     "Content-Type: application/json\r\n%s%s%s%s%s%s\r\n",
                     method, path, h->host, h->port, blen, token ? "Authorization: Bearer " : "",
                     token ? token : "", token ? "\r\n" : "", idem_key ? "Idempotency-Key: " : "",
                     idem_key ? idem_key : "", idem_key ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req))
        return -EINVAL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (h->fd < 0) {
            int rc = httpc_connect(h);
            if (rc < 0)
                return rc;
        }
        h->len = 0;
        if (send_all(h->fd, req, (size_t)n) < 0 || (blen && send_all(h->fd, body, blen) < 0)) {
            httpc_close(h); /* the server closed a kept-alive connection: retry once */
            continue;
        }
        for (;;) {
            size_t used = parse_answer(h, out);
            if (used)
                return 0;
            if (h->len == sizeof(h->buf))
                break;
            ssize_t r = recv(h->fd, h->buf + h->len, sizeof(h->buf) - h->len, 0);
            if (r <= 0)
                break;
            h->len += (size_t)r;
        }
        size_t got = h->len;
        httpc_close(h);
        if (got)
            return -EPROTO;
    }
    return -ECONNRESET;
}
