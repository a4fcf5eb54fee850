/*
 * sse.c - see sse.h.
 */
#include "net/sse.h"

#include <inttypes.h>
#include <string.h>

#include "core/base.h"

static_assert(SSE_SEQ_MAX <= INT64_MAX / 10, "the digit loop cannot overflow before the check");

/* True when n bytes of s hold a CR or an LF, either of which ends an SSE line. */
static bool has_line_break(const char *s, size_t n)
{
    return memchr(s, '\n', n) != NULL || memchr(s, '\r', n) != NULL;
}

void sse_event(struct buf *out, const char *type, int64_t seq, const char *json, size_t json_len)
{
    TALLY_ASSERT(out != NULL && type != NULL);
    TALLY_ASSERT(json != NULL || json_len == 0);
    TALLY_ASSERT(seq >= 0 && seq <= SSE_SEQ_MAX);
    TALLY_ASSERT(!has_line_break(type, strlen(type)));
    TALLY_ASSERT(json_len == 0 || !has_line_break(json, json_len));
    buf_printf(out, "event: %s\n", type);
    if (seq > 0)
        buf_printf(out, "id: %" PRId64 "\n", seq);
    buf_append(out, "data: ", 6);
    buf_append(out, json, json_len);
    buf_append(out, "\n\n", 2);
}

void sse_head(struct buf *out)
{
    TALLY_ASSERT(out != NULL);
    buf_append_str(out, "HTTP/1.1 200 OK\r\n"
                        "Content-Type: text/event-stream\r\n"
                        "Cache-Control: no-store\r\n"
                        "Connection: keep-alive\r\n"
                        "X-Accel-Buffering: no\r\n"
                        "\r\n");
}

void sse_heartbeat(struct buf *out)
{
    TALLY_ASSERT(out != NULL);
    buf_append(out, ": ping\n\n", 8);
}

bool sse_parse_seq(const char *s, size_t len, int64_t *out)
{
    TALLY_ASSERT(s != NULL || len == 0);
    TALLY_ASSERT(out != NULL);
    if (len == 0)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
        /* checked on every digit, so a long number never overflows */
        if (v > SSE_SEQ_MAX)
            return false;
    }
    *out = v;
    return true;
}
