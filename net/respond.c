/*
 * respond.c - response heads and JSON error bodies.
 */
#include "net/respond.h"

#include <string.h>
#include <time.h>
#include <strings.h>

#include "core/base.h"

const char *respond_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* True when one of the "Name: value\r\n" lines is a Cache-Control line. */
static bool has_cache_control(const char *extra)
{
    static const char name[] = "cache-control:";
    for (const char *line = extra; line && *line != '\0';) {
        if (strncasecmp(line, name, sizeof(name) - 1) == 0)
            return true;
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    return false;
}

/* RFC 9110 6.6.1: a server with a clock sends Date. The line changes once a
 * second, so each thread formats it once a second (the C locale gives the
 * English day and month names the format requires). */
static void append_date(struct buf *out)
{
    static __thread time_t cached_sec;
    static __thread char cached[48];
    time_t now = time(NULL);

    if (now != cached_sec || cached[0] == '\0') {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(cached, sizeof(cached), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        cached_sec = now;
    }
    buf_append_str(out, cached);
}

void respond_write_ex(struct buf *out, int status, const char *content_type,
                      const char *extra_headers, const char *body, size_t body_len,
                      bool keep_alive, uint32_t retry_after_s, bool head_only)
{
    TALLY_ASSERT(status >= 100 && status <= 599);
    TALLY_ASSERT(body != NULL || body_len == 0);
    /* 204 and 304 never have a body (RFC 9110 §15.3.5, §15.4.5). */
    bool no_body = status == 204 || status == 304;
    TALLY_ASSERT(!no_body || body_len == 0);
    buf_append_str(out, "HTTP/1.1 ");
    buf_append_i64(out, status);
    buf_append(out, " ", 1);
    buf_append_str(out, respond_reason(status));
    buf_append_str(out, "\r\nContent-Type: ");
    buf_append_str(out, content_type ? content_type : "application/json");
    buf_append_str(out, "\r\n");
    if (!no_body) {
        buf_append_str(out, "Content-Length: ");
        buf_append_i64(out, (long long)body_len);
        buf_append_str(out, "\r\n");
    }
    buf_append_str(out, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    if (retry_after_s > 0)
        buf_printf(out, "Retry-After: %u\r\n", retry_after_s);
    if (!has_cache_control(extra_headers))
        buf_append_str(out, "Cache-Control: no-store\r\n");
    append_date(out);
    if (extra_headers)
        buf_append_str(out, extra_headers);
    buf_append(out, "\r\n", 2);
    if (!head_only && body_len > 0)
        buf_append(out, body, body_len);
}

void respond_write(struct buf *out, int status, const char *content_type, const char *body,
                   size_t body_len, bool keep_alive, uint32_t retry_after_s, bool head_only)
{
    respond_write_ex(out, status, content_type, NULL, body, body_len, keep_alive, retry_after_s,
                     head_only);
}

void respond_error_body(struct buf *out, const char *code, const char *message)
{
    TALLY_ASSERT(code != NULL);
    TALLY_ASSERT(message != NULL);
    buf_append_str(out, "{\"error\":{\"code\":");
    buf_append_json_str(out, code, strlen(code));
    buf_append_str(out, ",\"message\":");
    buf_append_json_str(out, message, strlen(message));
    buf_append_str(out, "}}");
}

void respond_error(struct buf *out, int status, const char *code, const char *message,
                   bool keep_alive, uint32_t retry_after_s)
{
    TALLY_ASSERT(status >= 400 && status <= 599);
    struct buf body = BUF_INIT;
    respond_error_body(&body, code, message);
    respond_write(out, status, NULL, body.data, body.len, keep_alive, retry_after_s, false);
    buf_free(&body);
}
