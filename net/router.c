/*
 * router.c - table-driven routing: each route is a path pattern whose
 * {code}, {id} and {file} parts are checked and extracted while the path is
 * walked once. Patterns never overlap, so the first match is the only one.
 * Nothing is allocated.
 */
#include "net/router.h"

#include <string.h>

#include "core/base.h"

enum route_method { RM_GET, RM_POST }; /* RM_GET also takes HEAD */

struct route {
    const char *pattern;
    enum route_method method;
    enum route_kind kind;
    enum api_op op; /* ROUTE_API only */
};

static const struct route routes[] = {
    {"/healthz", RM_GET, ROUTE_HEALTHZ, API_OP_COUNT},
    {"/readyz", RM_GET, ROUTE_READYZ, API_OP_COUNT},
    {"/metrics", RM_GET, ROUTE_METRICS, API_OP_COUNT},
    {"/api/v1/sessions", RM_POST, ROUTE_API, API_SESSION_CREATE},
    {"/api/v1/sessions/{code}", RM_GET, ROUTE_API, API_SESSION_GET},
    {"/api/v1/sessions/{code}/participants", RM_POST, ROUTE_API, API_JOIN},
    {"/api/v1/sessions/{code}/polls", RM_POST, ROUTE_API, API_POLL_CREATE},
    {"/api/v1/sessions/{code}/close", RM_POST, ROUTE_API, API_SESSION_CLOSE},
    {"/api/v1/sessions/{code}/export.csv", RM_GET, ROUTE_API, API_EXPORT_CSV},
    {"/api/v1/sessions/{code}/qr.svg", RM_GET, ROUTE_API, API_QR_SVG},
    {"/api/v1/sessions/{code}/ws", RM_GET, ROUTE_WS, API_OP_COUNT},
    {"/api/v1/sessions/{code}/events", RM_GET, ROUTE_SSE, API_OP_COUNT},
    {"/api/v1/polls/{id}/open", RM_POST, ROUTE_API, API_POLL_OPEN},
    {"/api/v1/polls/{id}/close", RM_POST, ROUTE_API, API_POLL_CLOSE},
    {"/api/v1/polls/{id}/votes", RM_POST, ROUTE_API, API_VOTE},
    {"/api/v1/polls/{id}/results", RM_GET, ROUTE_API, API_RESULTS},
    {"/", RM_GET, ROUTE_STATIC, API_OP_COUNT},
    {"/j/{page}", RM_GET, ROUTE_STATIC, API_OP_COUNT},
    {"/present/{page}", RM_GET, ROUTE_STATIC, API_OP_COUNT},
    {"/screen/{page}", RM_GET, ROUTE_STATIC, API_OP_COUNT},
    {"/assets/{file}", RM_GET, ROUTE_STATIC, API_OP_COUNT},
};

static const char *const allow_of[] = {[RM_GET] = "GET, HEAD", [RM_POST] = "POST"};

/* Digits of 2^53 = 9007199254740992. */
#define ROUTE_POLL_ID_DIGITS_MAX 16
static_assert(ROUTE_POLL_ID_MAX == 9007199254740992LL, "poll id bound is 2^53");

bool router_code_char(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    if (c >= 'A' && c <= 'Z')
        return c != 'O' && c != 'I' && c != 'L';
    return c >= '2' && c <= '9';
}

static bool parse_code(const char *s, size_t n, char code[API_CODE_LEN + 1])
{
    if (n != API_CODE_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!router_code_char(s[i]))
            return false;
        code[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 'a' + 'A') : s[i];
    }
    code[n] = '\0';
    return true;
}

static bool parse_id(const char *s, size_t n, int64_t *id)
{
    if (n == 0 || n > ROUTE_POLL_ID_DIGITS_MAX || s[0] == '0')
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0'); /* 16 digits cannot overflow 63 bits */
    }
    if (v > ROUTE_POLL_ID_MAX)
        return false;
    *id = v;
    return true;
}

/* Non-empty segments of [A-Za-z0-9._-], none starting with '.'. */
static bool valid_file(const char *s, size_t n)
{
    bool seg_start = true;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '/') {
            if (seg_start)
                return false;
            seg_start = true;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || (c == '.' && !seg_start);
        if (!ok)
            return false;
        seg_start = false;
    }
    return !seg_start;
}

/* Walks pattern and path together; placeholders fill *m. */
static bool match_pattern(const char *pat, const char *path, size_t len, struct route_match *m)
{
    size_t i = 0;
    while (*pat != '\0') {
        if (*pat != '{') {
            if (i >= len || path[i] != *pat)
                return false;
            i++;
            pat++;
            continue;
        }
        const char *close = strchr(pat, '}');
        TALLY_ASSERT(close != NULL);
        size_t end = i;
        while (end < len && path[end] != '/')
            end++;
        bool ok;
        if (strncmp(pat, "{code}", 6) == 0) {
            ok = parse_code(path + i, end - i, m->code);
        } else if (strncmp(pat, "{page}", 6) == 0) {
            /* A page's code is checked by its script, which can explain a
             * mistyped one; any one bounded segment serves the page. */
            ok = end > i && end - i <= ROUTER_PAGE_SEGMENT_MAX;
            if (ok && !parse_code(path + i, end - i, m->code))
                m->code[0] = '\0';
        } else if (strncmp(pat, "{id}", 4) == 0) {
            ok = parse_id(path + i, end - i, &m->poll_id);
        } else {
            TALLY_ASSERT(strncmp(pat, "{file}", 6) == 0);
            TALLY_ASSERT(close[1] == '\0'); /* {file} takes the rest of the path */
            end = len;
            ok = valid_file(path + i, end - i);
        }
        if (!ok)
            return false;
        i = end;
        pat = close + 1;
    }
    return i == len;
}

enum route_kind router_match(enum http_method m, const char *path, size_t path_len,
                             struct route_match *out)
{
    TALLY_ASSERT(out != NULL);
    TALLY_ASSERT(path != NULL || path_len == 0);
    for (size_t r = 0; r < ARRAY_LEN(routes); r++) {
        struct route_match cand = {.kind = ROUTE_NOT_FOUND, .op = API_OP_COUNT};
        if (!match_pattern(routes[r].pattern, path, path_len, &cand))
            continue;
        bool method_ok = routes[r].method == RM_GET ? (m == HTTP_GET || m == HTTP_HEAD)
                                                    : m == HTTP_POST;
        if (!method_ok) {
            *out = (struct route_match){.kind = ROUTE_METHOD_NOT_ALLOWED, .op = API_OP_COUNT,
                                        .allow = allow_of[routes[r].method]};
            return out->kind;
        }
        cand.kind = routes[r].kind;
        cand.op = routes[r].op;
        *out = cand;
        return out->kind;
    }
    *out = (struct route_match){.kind = ROUTE_NOT_FOUND, .op = API_OP_COUNT};
    return out->kind;
}
