/*
 * tallyctl_http.c - tallyctl create: one POST /api/v1/sessions to a running
 * tallyd, over a minimal blocking HTTP/1.1 client (plain http only, one
 * request per connection, "Connection: close").
 *
 * Every step runs under one deadline (CTL_HTTP_TIMEOUT_MS): name lookup
 * aside, connect, send and receive poll() with what is left of it, so an
 * address that drops packets fails in bounded time. The answer is read up
 * to CTL_HTTP_RESPONSE_MAX bytes; tallyd's answer to a create is < 1 KiB.
 */
#include "tools/tallyctl.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define CTL_HTTP_TIMEOUT_MS 10000
#define CTL_HTTP_RESPONSE_MAX (64 * 1024)
#define CTL_HTTP_REQUEST_MAX 8192
#define CTL_HOST_MAX 256
#define CTL_TITLE_MAX 1024 /* bytes; tallyd has its own limit and says so */
#define CTL_DEFAULT_URL "http://127.0.0.1:8080"
#define CTL_LINK_MAX 1024

struct http_url {
    char host[CTL_HOST_MAX];           /* without brackets, for getaddrinfo */
    char port[8];                      /* "8080" */
    char authority[CTL_HOST_MAX + 16]; /* as given: "127.0.0.1:8080", "[::1]:80" */
};

struct http_answer {
    int status;
    const char *body; /* into the receive buffer, NUL-terminated */
    size_t body_len;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "http://host[:port][/]" into u. Returns NULL or what is wrong. */
static const char *url_parse(const char *s, struct http_url *u)
{
    if (strncasecmp(s, "http://", 7) != 0)
        return strncasecmp(s, "https://", 8) == 0 ? "https is not supported; give tallyd's own "
                                                    "http://address:port"
                                                  : "expected http://host[:port]";
    const char *a = s + 7, *end = a + strcspn(a, "/?#");
    if (*end != '\0' && strcmp(end, "/") != 0)
        return "expected http://host[:port] without a path";
    size_t alen = (size_t)(end - a);
    if (alen == 0 || alen >= sizeof(u->authority))
        return "expected http://host[:port]";
    memcpy(u->authority, a, alen);
    u->authority[alen] = '\0';
    const char *h = u->authority, *colon;
    size_t hlen;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return "expected http://[IPv6]:port";
        h++;
        hlen = (size_t)(close - h);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strchr(h, ':');
        hlen = colon ? (size_t)(colon - h) : alen;
    }
    if (hlen == 0 || hlen >= sizeof(u->host))
        return "expected a host name or address";
    memcpy(u->host, h, hlen);
    u->host[hlen] = '\0';
    const char *port = colon ? colon + 1 : "80";
    size_t plen = strlen(port);
    long pn =
        plen > 0 && plen <= 5 && strspn(port, "0123456789") == plen ? strtol(port, NULL, 10) : 0;
    if (pn < 1 || pn > 65535)
        return "expected a port from 1 to 65535";
    snprintf(u->port, sizeof(u->port), "%ld", pn);
    return NULL;
}

/* Waits for ev on fd until the deadline. 0, or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = ev};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* Non-blocking connect to one address, finished within the deadline. */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : -errno;
    if (rc == -EINPROGRESS) {
        rc = wait_fd(fd, POLLOUT, deadline);
        int err = 0;
        socklen_t len = sizeof(err);
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
            rc = -err;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* A connected socket to u, or -errno of the last address tried (-EHOSTUNREACH
 * with *gai set when the name does not resolve). */
static int http_connect(const struct http_url *u, int64_t deadline, int *gai)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *res = NULL;
    *gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (*gai != 0)
        return -EHOSTUNREACH;
    int fd = -ECONNREFUSED;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = connect_one(ai, deadline);
        if (fd >= 0 || fd == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *p, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        int rc = wait_fd(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Content-Length of a head (NUL-terminated), or -1 when absent. */
static long head_content_length(const char *head)
{
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "content-length:", 15) == 0)
            return strtol(p + 17, NULL, 10);
    }
    return -1;
}

/* True once buf holds a whole answer: its head and Content-Length bytes of body. */
static bool answer_complete(char *buf, size_t len)
{
    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL)
        return false;
    *end = '\0';
    long cl = head_content_length(buf);
    *end = '\r';
    return cl >= 0 && len >= (size_t)(end + 4 - buf) + (size_t)cl;
}

/* Reads the answer into buf (NUL-terminated) until complete, EOF, the bound or the deadline. */
static int recv_answer(int fd, char *buf, size_t cap, size_t *len, int64_t deadline)
{
    *len = 0;
    buf[0] = '\0';
    for (;;) {
        ssize_t n = recv(fd, buf + *len, cap - 1 - *len, 0);
        if (n > 0) {
            *len += (size_t)n;
            buf[*len] = '\0';
            if (answer_complete(buf, *len))
                return 0;
            if (*len == cap - 1)
                return -EMSGSIZE;
            continue;
        }
        if (n == 0)
            return 0; /* Connection: close ends the body */
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        int rc = wait_fd(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}

/* "HTTP/1.1 201 Created\r\n...\r\n\r\nbody" into a. */
static int answer_parse(char *buf, size_t len, struct http_answer *a)
{
    char *end = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || len < 12 || end == NULL)
        return -EPROTO;
    a->status = (int)strtol(buf + 9, NULL, 10);
    *end = '\0';
    long cl = head_content_length(buf);
    if (strcasestr(buf, "\r\ntransfer-encoding:") != NULL)
        return -EPROTO; /* tallyd sends Content-Length; a proxy that chunks is not supported */
    a->body = end + 4;
    a->body_len = len - (size_t)(a->body - buf);
    if (cl >= 0 && (size_t)cl < a->body_len)
        a->body_len = (size_t)cl;
    else if (cl >= 0 && (size_t)cl > a->body_len)
        return -EPROTO; /* cut short */
    buf[a->body - buf + (long)a->body_len] = '\0';
    return a->status >= 100 && a->status <= 599 ? 0 : -EPROTO;
}

/* POST body to path; the answer lands in buf. 0, or -errno with *gai for name errors. */
static int http_post(const struct http_url *u, const char *path, const char *body, char *buf,
                     size_t cap, struct http_answer *a, int *gai)
{
    int64_t deadline = now_ms() + CTL_HTTP_TIMEOUT_MS;
    char req[CTL_HTTP_REQUEST_MAX];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tallyctl\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, u->authority, strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof(req))
        return -E2BIG;
    int fd = http_connect(u, deadline, gai);
    if (fd < 0)
        return fd;
    size_t len = 0;
    int rc = send_all(fd, req, (size_t)n, deadline);
    if (rc == 0)
        rc = recv_answer(fd, buf, cap, &len, deadline);
    close(fd);
    return rc == 0 ? answer_parse(buf, len, a) : rc;
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
static void url_encode(const char *s, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && o + 4 < len; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p) != NULL) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

/* Prints the error tallyd answered: {"error":{"code":..,"message":..}} when it is one. */
static int answer_error(const struct ctl_opts *o, const struct http_answer *a)
{
    json_t *j = json_loads(a->body, 0, NULL);
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (code != NULL && msg != NULL)
        ctl_fail(o, "tallyd answered %d %s: %s", a->status, code, msg);
    else
        ctl_fail(o, "the server answered %d, not like tallyd", a->status);
    json_decref(j);
    return CTL_EXIT_FAIL;
}

static int print_created(const struct ctl_opts *o, const struct http_url *u,
                         const struct http_answer *a)
{
    json_t *j = json_loads(a->body, 0, NULL);
    const char *code = json_string_value(json_object_get(json_object_get(j, "session"), "code"));
    const char *token = json_string_value(json_object_get(j, "presenter_token"));
    if (code == NULL || token == NULL) {
        json_decref(j);
        return ctl_fail(o, "tallyd answered 201 without a session code and presenter token");
    }
    char enc[CTL_LINK_MAX];
    url_encode(token, enc, sizeof(enc));
    printf("code:            %s\n"
           "presenter token: %s\n"
           "join URL:        http://%s/j/%s\n"
           "presenter URL:   http://%s/present/%s#token=%s\n",
           code, token, u->authority, code, u->authority, code, enc);
    json_decref(j);
    return fflush(stdout) == 0 ? CTL_EXIT_OK : ctl_fail(o, "cannot write the answer");
}

static int create_checks(const struct ctl_opts *o, struct http_url *u)
{
    if (o->title == NULL || o->title[0] == '\0')
        return ctl_usage_error(o, "missing --title (tallyctl create --title T)");
    if (strlen(o->title) > CTL_TITLE_MAX)
        return ctl_usage_error(o, "invalid --title: longer than %d bytes", CTL_TITLE_MAX);
    const char *url = o->url ? o->url : CTL_DEFAULT_URL;
    const char *bad = url_parse(url, u);
    if (bad != NULL)
        return ctl_usage_error(o, "invalid --url '%s': %s", url, bad);
    return 0;
}

int ctl_create(const struct ctl_opts *o)
{
    struct http_url u;
    int rc = create_checks(o, &u);
    if (rc != 0)
        return rc;
    json_t *req = json_pack("{s:s}", "title", o->title);
    if (req == NULL)
        return ctl_usage_error(o, "invalid --title: not valid UTF-8");
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char *buf = malloc(CTL_HTTP_RESPONSE_MAX);
    struct http_answer a = {0};
    int gai = 0;
    rc = body && buf ? http_post(&u, "/api/v1/sessions", body, buf, CTL_HTTP_RESPONSE_MAX, &a, &gai)
                     : -ENOMEM;
    free(body);
    if (rc == -EHOSTUNREACH && gai != 0)
        rc = ctl_fail(o, "cannot resolve %s: %s", u.host, gai_strerror(gai));
    else if (rc == -ETIMEDOUT)
        rc = ctl_fail(o, "no answer from tallyd at http://%s within %d s", u.authority,
                      CTL_HTTP_TIMEOUT_MS / 1000);
    else if (rc == -EPROTO || rc == -EMSGSIZE)
        rc = ctl_fail(o, "http://%s did not answer like tallyd (%s)", u.authority,
                      rc == -EPROTO ? "not a complete HTTP answer" : "answer too large");
    else if (rc < 0)
        rc = ctl_fail(o, "cannot reach tallyd at http://%s: %s", u.authority, strerror(-rc));
    else
        rc = a.status == 201 ? print_created(o, &u, &a) : answer_error(o, &a);
    free(buf);
    return rc;
}
