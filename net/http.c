/*
 * http.c - HTTP/1.1 requests over llhttp.
 *
 * llhttp does the syntax; this file keeps what the rest of the server reads
 * and enforces the size limits:
 *  - The head budget is enforced by never handing llhttp more head bytes than
 *    are left of HTTP_HEAD_BYTES_MAX: until on_headers_complete fires, input
 *    goes in slices no longer than the budget, so a head that ends within the
 *    budget is accepted and any byte beyond it is refused before it is read.
 *  - Only the URL and the headers of interest are copied (into `head`, which
 *    grows as needed up to the head limit, since copied bytes are a subset of
 *    the head); their positions are offsets because the buffer moves when it
 *    grows, and pointers are made at DONE.
 *  - Content-Length is checked against HTTP_BODY_BYTES_MAX when the head is
 *    complete, before any body byte is read; chunked bodies are counted as
 *    they arrive. Chunk framing, extensions and trailers are not stored but
 *    count toward HTTP_WIRE_BYTES_MAX, so a request cannot stream without end.
 *  - llhttp 8 in its default mode still takes a few things RFC 9112 says a
 *    server must refuse, all of them ways to make two parsers disagree about
 *    a header: obs-fold continuation lines, whitespace before the colon,
 *    spaces in and empty header names. A byte-wise scan of the head (state
 *    in `scan`, so splits do not matter) refuses them before llhttp sees
 *    the bytes.
 *  - on_message_complete pauses llhttp, so one feed stops after one request
 *    and llhttp_get_error_pos() says where; llhttp_resume() continues.
 */
#include "net/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* llhttp names its method enumerators HTTP_GET, HTTP_HEAD and HTTP_POST, as
 * http.h does; rename llhttp's while its header is read. */
#define HTTP_GET LLHTTP_METHOD_GET
#define HTTP_HEAD LLHTTP_METHOD_HEAD
#define HTTP_POST LLHTTP_METHOD_POST
#include <llhttp.h>
#undef HTTP_GET
#undef HTTP_HEAD
#undef HTTP_POST

#include "core/base.h"

/* Every byte of one request on the wire (head, framing, trailers); the body
 * limit proper is checked on the decoded bytes. 1-byte chunks take 6 bytes
 * on the wire ("1\r\nX\r\n"), so a legal body always fits. */
#define HTTP_WIRE_BYTES_MAX (HTTP_HEAD_BYTES_MAX + 8 * HTTP_BODY_BYTES_MAX)
#define HTTP_HEAD_STORE_MIN 256 /* first size of the copy buffer; typical heads fit */
#define HTTP_HDR_NAME_MAX 32    /* longer names are of no interest */

static_assert(IS_POW2(HTTP_HEAD_BYTES_MAX), "head store grows by doubling up to the limit");
static_assert(HTTP_HEAD_STORE_MIN <= HTTP_HEAD_BYTES_MAX, "first size within the limit");
static_assert(HTTP_WIRE_BYTES_MAX <= UINT32_MAX, "wire count is 32 bits");

enum http_hdr {
    HDR_AUTHORIZATION,
    HDR_IDEMPOTENCY_KEY,
    HDR_HOST,
    HDR_CONTENT_TYPE,
    HDR_UPGRADE,
    HDR_CONNECTION,
    HDR_WS_KEY,
    HDR_WS_VERSION,
    HDR_WS_PROTOCOL,
    HDR_LAST_EVENT_ID,
    HDR_ACCEPT_ENCODING,
    HDR_EXPECT,
    HDR_IF_NONE_MATCH,
    HDR_COUNT
};

static const char *const hdr_names[HDR_COUNT] = {
    [HDR_AUTHORIZATION] = "authorization",
    [HDR_IDEMPOTENCY_KEY] = "idempotency-key",
    [HDR_HOST] = "host",
    [HDR_CONTENT_TYPE] = "content-type",
    [HDR_UPGRADE] = "upgrade",
    [HDR_CONNECTION] = "connection",
    [HDR_WS_KEY] = "sec-websocket-key",
    [HDR_WS_VERSION] = "sec-websocket-version",
    [HDR_WS_PROTOCOL] = "sec-websocket-protocol",
    [HDR_LAST_EVENT_ID] = "last-event-id",
    [HDR_ACCEPT_ENCODING] = "accept-encoding",
    [HDR_EXPECT] = "expect",
    [HDR_IF_NONE_MATCH] = "if-none-match",
};

#define HDR_NONE (-1)

/* Where the head scan is; it stops at the empty line that ends the head. */
enum head_scan {
    SCAN_START,      /* empty lines before the request line, which llhttp skips */
    SCAN_REQ_LINE,   /* llhttp checks the request line itself */
    SCAN_LINE_START, /* first byte of a header line, or CR of the empty line */
    SCAN_NAME,       /* header name: tchars up to the colon */
    SCAN_VALUE,      /* header value up to LF; llhttp checks its bytes */
    SCAN_DONE,
};

/* One request in progress: allocated at its first byte, freed by _next(). */
struct http_msg {
    struct http_req req;
    char *head; /* URL, NUL, then each kept header value with its NUL */
    uint32_t head_len, head_cap;
    char *body; /* decoded body plus a NUL */
    uint32_t body_len, body_cap;
    uint32_t url_len;                /* the URL sits at head[0] */
    bool url_done;
    int32_t hdr_off[HDR_COUNT];      /* offset in head, or HDR_NONE */
    int cur_hdr;                     /* header whose value is being copied, or HDR_NONE */
    uint32_t cur_off;                /* where that value starts */
    char name[HTTP_HDR_NAME_MAX];    /* the header name being read, lower-cased */
    uint32_t name_len;               /* may exceed the array: then no match */
};

struct http_parser {
    llhttp_t ll;
    struct http_msg *msg;
    uint32_t head_fed;  /* bytes of this request given to llhttp before its head ended */
    uint32_t wire_fed;  /* bytes of this request given to llhttp */
    enum http_parse err;/* a final error once set; AGAIN while none */
    enum http_parse cb_err; /* the limit a callback hit, to tell it from bad syntax */
    enum head_scan scan;
    bool headers_done;
    bool continue_due;  /* Expect: 100-continue with a body to come: answer 100 once */
    bool done;          /* DONE returned, http_parser_next() not yet called */
};

static const char empty_body[1] = "";

/* ---- the copy buffers --------------------------------------------------- */

/* Returns false when the bytes do not fit the head limit. */
static bool head_append(struct http_msg *m, const char *at, size_t n)
{
    if (unlikely(n > HTTP_HEAD_BYTES_MAX - m->head_len))
        return false;
    if (m->head_len + n > m->head_cap) {
        uint32_t cap = m->head_cap ? m->head_cap : HTTP_HEAD_STORE_MIN;
        while (cap < m->head_len + n)
            cap *= 2;
        TALLY_ASSERT(cap <= HTTP_HEAD_BYTES_MAX);
        m->head = xrealloc(m->head, cap);
        m->head_cap = cap;
    }
    memcpy(m->head + m->head_len, at, n);
    m->head_len += (uint32_t)n;
    return true;
}

/* The body buffer keeps one byte more than its contents for the NUL. */
static void body_reserve(struct http_msg *m, size_t n)
{
    TALLY_ASSERT(n <= HTTP_BODY_BYTES_MAX);
    if (m->body_len + n + 1 <= m->body_cap)
        return;
    size_t cap = m->body_cap ? m->body_cap : 1024;
    while (cap < m->body_len + n + 1)
        cap *= 2;
    if (cap > HTTP_BODY_BYTES_MAX + 1)
        cap = HTTP_BODY_BYTES_MAX + 1;
    m->body = xrealloc(m->body, cap);
    m->body_cap = (uint32_t)cap;
}

static void msg_free(struct http_msg *m)
{
    if (m == NULL)
        return;
    free(m->head);
    free(m->body);
    free(m);
}

/* ---- head scan ---------------------------------------------------------- */

/* RFC 9110 tchar: the characters of a header name. */
static bool is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && memchr(extra, c, sizeof(extra) - 1) != NULL;
}

/* Scans head bytes llhttp is about to see; false when the head is to be refused. */
static bool head_scan(struct http_parser *p, const char *data, size_t n)
{
    enum head_scan s = p->scan;
    for (size_t i = 0; i < n && s != SCAN_DONE; i++) {
        unsigned char c = (unsigned char)data[i];
        switch (s) {
        case SCAN_START:
            if (c != '\r' && c != '\n')
                s = SCAN_REQ_LINE;
            break;
        case SCAN_REQ_LINE:
        case SCAN_VALUE:
            if (c == '\n')
                s = SCAN_LINE_START;
            break;
        case SCAN_LINE_START:
            if (c == '\r')
                s = SCAN_DONE;
            else if (is_tchar(c))
                s = SCAN_NAME; /* a space here would be obs-fold, a colon an empty name */
            else
                return false;
            break;
        case SCAN_NAME:
            if (c == ':')
                s = SCAN_VALUE;
            else if (!is_tchar(c))
                return false;
            break;
        case SCAN_DONE:
            break;
        }
    }
    p->scan = s;
    return true;
}

/* ---- llhttp callbacks --------------------------------------------------- */

static struct http_parser *parser_of(llhttp_t *ll)
{
    struct http_parser *p = ll->data;
    TALLY_ASSERT(p != NULL);
    TALLY_ASSERT(&p->ll == ll);
    return p;
}

static int on_message_begin(llhttp_t *ll)
{
    struct http_parser *p = parser_of(ll);
    TALLY_ASSERT(p->msg == NULL);
    struct http_msg *m = xcalloc(1, sizeof(*m));
    for (int i = 0; i < HDR_COUNT; i++)
        m->hdr_off[i] = HDR_NONE;
    m->cur_hdr = HDR_NONE;
    p->msg = m;
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    struct http_parser *p = parser_of(ll);
    if (!head_append(p->msg, at, n)) {
        p->cb_err = HTTP_PARSE_E_HEAD_TOO_LARGE;
        return -1;
    }
    p->msg->url_len += (uint32_t)n;
    return 0;
}

static int on_url_complete(llhttp_t *ll)
{
    struct http_parser *p = parser_of(ll);
    TALLY_ASSERT(p->msg->head_len == p->msg->url_len);
    if (!head_append(p->msg, "", 1)) {
        p->cb_err = HTTP_PARSE_E_HEAD_TOO_LARGE;
        return -1;
    }
    p->msg->url_done = true;
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    struct http_parser *p = parser_of(ll);
    struct http_msg *m = p->msg;
    if (p->headers_done)
        return 0; /* a trailer: counted on the wire, not kept */
    for (size_t i = 0; i < n && m->name_len < HTTP_HDR_NAME_MAX; i++)
        m->name[m->name_len++] = (char)(at[i] | 0x20); /* header names are tokens: ASCII */
    if (n > 0 && m->name_len == HTTP_HDR_NAME_MAX)
        m->name_len = HTTP_HDR_NAME_MAX + 1; /* too long to be of interest */
    return 0;
}

static int on_header_field_complete(llhttp_t *ll)
{
    struct http_parser *p = parser_of(ll);
    struct http_msg *m = p->msg;
    m->cur_hdr = HDR_NONE;
    if (!p->headers_done && m->name_len <= HTTP_HDR_NAME_MAX) {
        for (int i = 0; i < HDR_COUNT; i++) {
            if (strlen(hdr_names[i]) == m->name_len &&
                memcmp(hdr_names[i], m->name, m->name_len) == 0) {
                if (m->hdr_off[i] == HDR_NONE)
                    m->cur_hdr = i; /* a repeated header keeps its first value */
                break;
            }
        }
    }
    m->name_len = 0;
    m->cur_off = m->head_len;
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    struct http_parser *p = parser_of(ll);
    if (p->msg->cur_hdr == HDR_NONE)
        return 0;
    if (!head_append(p->msg, at, n)) {
        p->cb_err = HTTP_PARSE_E_HEAD_TOO_LARGE;
        return -1;
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    struct http_parser *p = parser_of(ll);
    struct http_msg *m = p->msg;
    if (m->cur_hdr == HDR_NONE)
        return 0;
    /* llhttp skips the spaces before a value but hands over those after it. */
    while (m->head_len > m->cur_off &&
           (m->head[m->head_len - 1] == ' ' || m->head[m->head_len - 1] == '\t'))
        m->head_len--;
    if (!head_append(m, "", 1)) {
        p->cb_err = HTTP_PARSE_E_HEAD_TOO_LARGE;
        return -1;
    }
    m->hdr_off[m->cur_hdr] = (int32_t)m->cur_off;
    m->cur_hdr = HDR_NONE;
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct http_parser *p = parser_of(ll);
    p->headers_done = true;
    /* llhttp also takes HTTP/0.9 ("GET /") and other versions; answers here are 1.x. */
    if (ll->http_major != 1 || ll->http_minor > 1)
        return -1;
    if ((ll->flags & F_CONTENT_LENGTH) && !(ll->flags & F_CHUNKED)) {
        if (ll->content_length > HTTP_BODY_BYTES_MAX) {
            p->cb_err = HTTP_PARSE_E_BODY_TOO_LARGE;
            return -1;
        }
        if (ll->content_length > 0)
            body_reserve(p->msg, (size_t)ll->content_length);
    }
    int32_t exp = p->msg->hdr_off[HDR_EXPECT];
    bool body_to_come = (ll->flags & F_CHUNKED) || ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > 0);
    if (exp != HDR_NONE && body_to_come && strcasecmp(p->msg->head + exp, "100-continue") == 0)
        p->continue_due = true;
    return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    struct http_parser *p = parser_of(ll);
    struct http_msg *m = p->msg;
    if (n > HTTP_BODY_BYTES_MAX - m->body_len) {
        p->cb_err = HTTP_PARSE_E_BODY_TOO_LARGE;
        return -1;
    }
    body_reserve(m, n);
    memcpy(m->body + m->body_len, at, n);
    m->body_len += (uint32_t)n;
    return 0;
}

/* Fills the request the caller will read; the buffers do not move any more. */
static void msg_finish(struct http_parser *p)
{
    struct http_msg *m = p->msg;
    struct http_req *r = &m->req;
    TALLY_ASSERT(m->url_done);
    switch (p->ll.method) {
    case LLHTTP_METHOD_GET: r->method = HTTP_GET; break;
    case LLHTTP_METHOD_HEAD: r->method = HTTP_HEAD; break;
    case LLHTTP_METHOD_POST: r->method = HTTP_POST; break;
    default: r->method = HTTP_OTHER; break;
    }
    const char *url = m->head;
    const char *q = memchr(url, '?', m->url_len);
    r->path = url;
    r->path_len = q ? (size_t)(q - url) : m->url_len;
    r->query = q ? q + 1 : url + m->url_len;
    r->query_len = q ? m->url_len - r->path_len - 1 : 0;
    const char **slots[HDR_COUNT] = {
        [HDR_AUTHORIZATION] = &r->authorization, [HDR_IDEMPOTENCY_KEY] = &r->idempotency_key,
        [HDR_HOST] = &r->host,                   [HDR_CONTENT_TYPE] = &r->content_type,
        [HDR_UPGRADE] = &r->upgrade,             [HDR_CONNECTION] = &r->connection,
        [HDR_WS_KEY] = &r->ws_key,               [HDR_WS_VERSION] = &r->ws_version,
        [HDR_WS_PROTOCOL] = &r->ws_protocol,     [HDR_LAST_EVENT_ID] = &r->last_event_id,
        [HDR_ACCEPT_ENCODING] = &r->accept_encoding, [HDR_EXPECT] = &r->expect,
        [HDR_IF_NONE_MATCH] = &r->if_none_match,
    };
    for (int i = 0; i < HDR_COUNT; i++)
        *slots[i] = m->hdr_off[i] == HDR_NONE ? NULL : m->head + m->hdr_off[i];
    if (m->body_len > 0) {
        m->body[m->body_len] = '\0';
        r->body = m->body;
    } else {
        r->body = empty_body;
    }
    r->body_len = m->body_len;
    r->keep_alive = llhttp_should_keep_alive(&p->ll) != 0;
    /* llhttp also counts CONNECT as an upgrade; only the header pair is one here. */
    r->is_upgrade = (p->ll.flags & F_UPGRADE) && (p->ll.flags & F_CONNECTION_UPGRADE);
}

static int on_message_complete(llhttp_t *ll)
{
    struct http_parser *p = parser_of(ll);
    TALLY_ASSERT(p->headers_done);
    msg_finish(p);
    p->done = true;
    /* An upgrade stops by itself (HPE_PAUSED_UPGRADE) right after this. */
    return ll->upgrade ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t http_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- public ------------------------------------------------------------- */

struct http_parser *http_parser_create(void)
{
    struct http_parser *p = xcalloc(1, sizeof(*p));
    llhttp_init(&p->ll, HTTP_REQUEST, &http_settings);
    p->ll.data = p;
    p->err = HTTP_PARSE_AGAIN;
    p->cb_err = HTTP_PARSE_AGAIN;
    return p;
}

void http_parser_destroy(struct http_parser *p)
{
    if (p == NULL)
        return;
    msg_free(p->msg);
    free(p);
}

static enum http_parse parser_fail(struct http_parser *p, enum http_parse e)
{
    TALLY_ASSERT(e != HTTP_PARSE_AGAIN && e != HTTP_PARSE_DONE);
    p->err = e;
    return e;
}

/* How many of len bytes llhttp may see now without passing a limit. */
static size_t feed_budget(const struct http_parser *p, size_t len)
{
    size_t n = len;
    if (!p->headers_done && n > HTTP_HEAD_BYTES_MAX - p->head_fed)
        n = HTTP_HEAD_BYTES_MAX - p->head_fed;
    if (n > HTTP_WIRE_BYTES_MAX - p->wire_fed)
        n = HTTP_WIRE_BYTES_MAX - p->wire_fed;
    return n;
}

enum http_parse http_parser_feed(struct http_parser *p, const char *data, size_t len,
                                 size_t *consumed)
{
    TALLY_ASSERT(!p->done);
    TALLY_ASSERT(data != NULL || len == 0);
    *consumed = 0;
    if (p->err != HTTP_PARSE_AGAIN)
        return p->err;
    size_t off = 0;
    while (off < len) {
        size_t n = feed_budget(p, len - off);
        if (n == 0) {
            *consumed = off;
            return parser_fail(p, p->headers_done ? HTTP_PARSE_E_BODY_TOO_LARGE
                                                  : HTTP_PARSE_E_HEAD_TOO_LARGE);
        }
        bool in_head = !p->headers_done;
        if (in_head && !head_scan(p, data + off, n)) {
            *consumed = off;
            return parser_fail(p, HTTP_PARSE_E_BAD);
        }
        llhttp_errno_t e = llhttp_execute(&p->ll, data + off, n);
        if (e == HPE_OK) {
            if (in_head && !p->headers_done)
                p->head_fed += (uint32_t)n;
            p->wire_fed += (uint32_t)n;
            off += n;
            continue;
        }
        const char *pos = llhttp_get_error_pos(&p->ll);
        if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && p->done) {
            TALLY_ASSERT(pos >= data + off && pos <= data + off + n);
            *consumed = (size_t)(pos - data);
            return HTTP_PARSE_DONE;
        }
        if (pos >= data + off && pos <= data + off + n)
            *consumed = (size_t)(pos - data);
        return parser_fail(p, p->cb_err != HTTP_PARSE_AGAIN ? p->cb_err : HTTP_PARSE_E_BAD);
    }
    *consumed = len;
    return HTTP_PARSE_AGAIN;
}

const struct http_req *http_parser_req(const struct http_parser *p)
{
    TALLY_ASSERT(p->done);
    TALLY_ASSERT(p->msg != NULL);
    return &p->msg->req;
}

void http_parser_next(struct http_parser *p)
{
    TALLY_ASSERT(p->done);
    TALLY_ASSERT(p->err == HTTP_PARSE_AGAIN);
    if (p->ll.upgrade) {
        /* What follows an upgrade is another protocol; should the caller
         * still read HTTP from here, it starts from a clean parser. */
        llhttp_reset(&p->ll);
    } else {
        llhttp_resume(&p->ll);
    }
    msg_free(p->msg);
    p->msg = NULL;
    p->head_fed = 0;
    p->wire_fed = 0;
    p->headers_done = false;
    p->continue_due = false;
    p->scan = SCAN_START;
    p->done = false;
}

bool http_parser_take_continue(struct http_parser *p)
{
    bool due = p->continue_due && !p->done;
    p->continue_due = false;
    return due;
}

bool http_parser_idle(const struct http_parser *p)
{
    return !p->done && p->wire_fed == 0 && p->msg == NULL;
}

size_t http_parser_mem(const struct http_parser *p)
{
    size_t n = sizeof(*p);
    if (p->msg)
        n += sizeof(*p->msg) + p->msg->head_cap + p->msg->body_cap;
    return n;
}
