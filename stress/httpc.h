/*
 * httpc.h - a minimal blocking HTTP/1.1 keep-alive client for the load
 * generator: one connection, one request at a time, Content-Length bodies
 * only (what tallyd sends). Reconnects when the server closes.
 */
#ifndef TALLY_STRESS_HTTPC_H
#define TALLY_STRESS_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#define HTTPC_BUF_MAX 262144
#define HTTPC_TIMEOUT_S 30

struct httpc {
    char host[64];
    uint16_t port;
    char source[64]; /* local address to bind, "" for any */
    int fd;
    char buf[HTTPC_BUF_MAX];
    size_t len;
};

struct httpc_resp {
    int status;
    const char *body; /* valid until the next request */
    size_t body_len;
};

/** Prepares a client; connects on the first request. */
void httpc_init(struct httpc *h, const char *host, uint16_t port, const char *source);
/** Sends and waits for the answer. Returns 0 or -errno (then the connection is dropped). */
int httpc_request(struct httpc *h, const char *method, const char *path, const char *token,
                  const char *idem_key, const char *body, struct httpc_resp *out);
void httpc_close(struct httpc *h);

#endif
