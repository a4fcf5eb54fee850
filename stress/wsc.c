/*
 * wsc.c - see wsc.h. The accept check is exact (RFC 6455 §4.1): SHA-1 of
 * key + GUID, base64, compared byte for byte, so a server that answers 101
 * without understanding the key is caught.
 */
#include "stress/wsc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/evp.h>

#include "core/base.h"

#define WSC_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WSC_NONCE_BYTES 16
#define WSC_SHA1_BYTES 20

static_assert(4 * ((WSC_NONCE_BYTES + 2) / 3) == WSC_KEY_CHARS, "key is base64 of the nonce");
static_assert(4 * ((WSC_SHA1_BYTES + 2) / 3) == WSC_ACCEPT_CHARS, "accept is base64 of SHA-1");

void wsc_key_make(char key[WSC_KEY_CHARS + 1])
{
    unsigned char nonce[WSC_NONCE_BYTES];
    /* A load generator needs distinct keys, not secret ones: a short read
     * only makes the key less random, which the server cannot tell. */
    if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
        memset(nonce, 0x5a, sizeof(nonce));
    int n = EVP_EncodeBlock((unsigned char *)key, nonce, WSC_NONCE_BYTES);
    TALLY_ASSERT(n == WSC_KEY_CHARS);
}

void wsc_accept_compute(const char *key, char accept[WSC_ACCEPT_CHARS + 1])
{
    char input[WSC_KEY_CHARS + sizeof(WSC_GUID)];
    TALLY_ASSERT(strlen(key) == WSC_KEY_CHARS);
    memcpy(input, key, WSC_KEY_CHARS);
    memcpy(input + WSC_KEY_CHARS, WSC_GUID, sizeof(WSC_GUID));
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    int ok = EVP_Digest(input, WSC_KEY_CHARS + sizeof(WSC_GUID) - 1, digest, &digest_len,
                        EVP_sha1(), NULL);
    TALLY_ASSERT(ok == 1); /* fails only when libcrypto has no default provider */
    TALLY_ASSERT(digest_len == WSC_SHA1_BYTES);
    int n = EVP_EncodeBlock((unsigned char *)accept, digest, WSC_SHA1_BYTES);
    TALLY_ASSERT(n == WSC_ACCEPT_CHARS);
}

int wsc_request_format(char *out, size_t cap, const char *host, uint16_t port, const char *path,
                       const char *key, const char *proto)
{
    TALLY_ASSERT(out != NULL && path != NULL);
    TALLY_ASSERT(strlen(key) == WSC_KEY_CHARS);
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
                     path, host, port, key, proto);
    if (n < 0 || (size_t)n >= cap)
        return -ENOSPC;
    return n;
}

/* The value of header name in the head [buf, end), trimmed, or NULL. */
static const char *header_find(const char *buf, const char *end, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *line = memmem(buf, (size_t)(end - buf), "\r\n", 2);
    while (line != NULL && line < end) {
        line += 2;
        const char *eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
        if (eol == NULL)
            return NULL;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol;
    }
    return NULL;
}

enum wsc_parse wsc_response_check(const char *buf, size_t len, const char *key, size_t *head_len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return len > WSC_HEAD_MAX ? WSC_BAD : WSC_AGAIN;
    if ((size_t)(end - buf) < 12 || strncmp(buf, "HTTP/1.1 101", 12) != 0)
        return WSC_BAD;
    size_t vlen = 0;
    const char *up = header_find(buf, end, "Upgrade", &vlen);
    if (up == NULL || vlen != 9 || strncasecmp(up, "websocket", 9) != 0)
        return WSC_BAD;
    const char *acc = header_find(buf, end, "Sec-WebSocket-Accept", &vlen);
    char want[WSC_ACCEPT_CHARS + 1];
    wsc_accept_compute(key, want);
    if (acc == NULL || vlen != WSC_ACCEPT_CHARS || memcmp(acc, want, WSC_ACCEPT_CHARS) != 0)
        return WSC_BAD;
    *head_len = (size_t)(end - buf) + 4;
    return WSC_OK;
}

enum wsc_parse wsc_frame_parse(const uint8_t *buf, size_t len, struct wsc_frame *f)
{
    if (len < 2)
        return WSC_AGAIN;
    if (buf[0] & 0x70 || buf[1] & 0x80) /* reserved bits, or a masked server frame */
        return WSC_BAD;
    uint64_t plen = buf[1] & 0x7f;
    size_t hl = 2;
    if (plen == 126) {
        if (len < 4)
            return WSC_AGAIN;
        plen = (uint64_t)buf[2] << 8 | buf[3];
        hl = 4;
    } else if (plen == 127) {
        if (len < 10)
            return WSC_AGAIN;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        hl = 10;
    }
    if (plen > WSC_PAYLOAD_MAX)
        return WSC_BAD;
    if (len < hl + plen)
        return WSC_AGAIN;
    f->fin = (buf[0] & 0x80) != 0;
    f->opcode = (enum wsc_opcode)(buf[0] & 0x0f);
    f->payload = buf + hl;
    f->payload_len = (size_t)plen;
    f->frame_len = hl + (size_t)plen;
    return WSC_OK;
}

int wsc_frame_build(uint8_t *out, size_t cap, enum wsc_opcode opcode, const void *payload,
                    size_t len, uint32_t mask)
{
    TALLY_ASSERT(out != NULL);
    TALLY_ASSERT(len == 0 || payload != NULL);
    size_t hl = len < 126 ? 6 : len <= 0xffff ? 8 : WSC_CLIENT_HEADER_MAX;
    if (cap < hl + len)
        return -ENOSPC;
    out[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[1] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[1] = 0x80 | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    uint8_t m[4] = {(uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8),
                    (uint8_t)mask};
    memcpy(out + hl - 4, m, 4);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        out[hl + i] = p[i] ^ m[i & 3];
    return (int)(hl + len);
}
