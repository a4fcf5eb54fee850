/*
 * static.c - serving the embedded web app: path to file, content-coding
 * negotiation, entity tags, and the response head. See static.h.
 *
 * The generated table is const data in the binary. A site adds one pinned
 * rbuf per stored form (made once, never changed), so a large body goes out
 * as a reference to the same bytes for every request and every thread.
 */
#include "net/static.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base.h"
#include "core/buf.h"
#include "core/rbuf.h"
#include "net/http.h"
#include "net/respond.h"
#include "net/router.h"

#define STATIC_Q_MAX 1000 /* q-values in thousandths */
#define STATIC_Q_UNSET (-1)
/* An identity form nobody named is acceptable (RFC 9110 12.5.3), but only
 * when no coding the client asked for is: the lowest positive weight. */
#define STATIC_Q_IDENTITY_IMPLIED 1

static_assert(STATIC_COPY_BYTES_MAX < (64u << 20), "copied bodies stay small");
static_assert(STATIC_ENC_COUNT == 3, "forms: identity, gzip, br");

struct static_site {
    const struct static_entry *entries;
    size_t count;
    struct rbuf **bodies; /* count * STATIC_ENC_COUNT; NULL where a form is not stored */
};

static const char csp_line[] =
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'\r\n";

/* ---- paths --------------------------------------------------------------- */

struct page_route {
    const char *prefix; /* followed by a join code */
    const char *file;
};

static const struct page_route page_routes[] = {
    {"/j/", "join.html"},
    {"/present/", "present.html"},
    {"/screen/", "screen.html"},
};

static bool asset_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int set_name(char name[STATIC_NAME_MAX + 1], const char *s, size_t n)
{
    TALLY_ASSERT(n <= STATIC_NAME_MAX);
    memcpy(name, s, n);
    name[n] = '\0';
    return 0;
}

/* The page's script checks the code and explains a mistyped one, so any one
 * bounded segment serves the page (as the router decides). */
static bool is_page_segment(const char *s, size_t n)
{
    return n > 0 && n <= ROUTER_PAGE_SEGMENT_MAX && memchr(s, '/', n) == NULL;
}

int static_path_file(const char *path, size_t len, char name[STATIC_NAME_MAX + 1],
                     enum static_kind *kind)
{
    static const char assets[] = "/assets/";
    TALLY_ASSERT(name != NULL && kind != NULL);
    TALLY_ASSERT(path != NULL || len == 0);
    *kind = STATIC_PAGE;
    if (len == 1 && path[0] == '/')
        return set_name(name, "index.html", strlen("index.html"));
    for (size_t i = 0; i < ARRAY_LEN(page_routes); i++) {
        size_t plen = strlen(page_routes[i].prefix);
        if (len > plen && memcmp(path, page_routes[i].prefix, plen) == 0)
            return is_page_segment(path + plen, len - plen)
                       ? set_name(name, page_routes[i].file, strlen(page_routes[i].file))
                       : -ENOENT;
    }
    size_t alen = sizeof(assets) - 1;
    if (len <= alen || memcmp(path, assets, alen) != 0)
        return -ENOENT;
    const char *f = path + alen;
    size_t n = len - alen;
    if (n > STATIC_NAME_MAX || f[0] == '.')
        return -ENOENT;
    for (size_t i = 0; i < n; i++)
        if (!asset_char(f[i]))
            return -ENOENT;
    *kind = STATIC_ASSET;
    return set_name(name, f, n);
}

/* ---- Accept-Encoding ----------------------------------------------------- */

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static bool token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ); *end past it. */
static int parse_qvalue(const char *p, const char **end)
{
    if (*p != '0' && *p != '1')
        return STATIC_Q_UNSET;
    int q = (*p - '0') * STATIC_Q_MAX;
    p++;
    if (*p == '.') {
        p++;
        int scale = STATIC_Q_MAX / 10;
        for (int d = 0; d < 3 && *p >= '0' && *p <= '9'; d++, p++, scale /= 10)
            q += (*p - '0') * scale;
    }
    if (q > STATIC_Q_MAX || (*p >= '0' && *p <= '9'))
        return STATIC_Q_UNSET;
    *end = p;
    return q;
}

/*
 * Parses the parameters after a coding up to the next ',' or the end:
 * returns its weight (STATIC_Q_MAX when none is given), or STATIC_Q_UNSET
 * when they are malformed. *end stops at the ',' or NUL.
 */
static int parse_weight(const char *p, const char **end)
{
    int q = STATIC_Q_MAX;
    for (p = skip_ows(p); *p == ';'; p = skip_ows(p)) {
        p = skip_ows(p + 1);
        if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            q = parse_qvalue(p + 2, &p);
            if (q == STATIC_Q_UNSET)
                break;
        } else {
            while (token_char(*p) || *p == '=' || *p == '"')
                p++; /* another parameter: not defined for Accept-Encoding, skipped */
        }
    }
    bool ok = q != STATIC_Q_UNSET && (*p == ',' || *p == '\0');
    while (*p != ',' && *p != '\0')
        p++;
    *end = p;
    return ok ? q : STATIC_Q_UNSET;
}

/* Index in q[]: the stored forms, then "*"; -1 for a coding not served. */
static int coding_index(const char *s, size_t n)
{
    static const struct {
        const char *name;
        int index;
    } codings[] = {
        {"identity", STATIC_ENC_IDENTITY}, {"gzip", STATIC_ENC_GZIP},
        {"x-gzip", STATIC_ENC_GZIP},       {"br", STATIC_ENC_BR},
        {"*", STATIC_ENC_COUNT},
    };
    for (size_t i = 0; i < ARRAY_LEN(codings); i++)
        if (strlen(codings[i].name) == n && strncasecmp(s, codings[i].name, n) == 0)
            return codings[i].index;
    return -1;
}

/* Fills q[form] and q[STATIC_ENC_COUNT] ("*") from the header; unnamed stay unset. */
static void parse_accept_encoding(const char *p, int q[STATIC_ENC_COUNT + 1])
{
    while (*p != '\0') {
        p = skip_ows(p);
        const char *tok = p;
        while (token_char(*p))
            p++;
        size_t n = (size_t)(p - tok);
        int w = parse_weight(p, &p);
        int idx = n > 0 ? coding_index(tok, n) : -1;
        if (idx >= 0 && w != STATIC_Q_UNSET && q[idx] == STATIC_Q_UNSET)
            q[idx] = w; /* a coding named twice keeps its first weight */
        if (*p == ',')
            p++;
    }
}

enum static_enc static_negotiate(const char *accept_encoding, unsigned available)
{
    TALLY_ASSERT(available & (1u << STATIC_ENC_IDENTITY));
    TALLY_ASSERT(available < (1u << STATIC_ENC_COUNT));
    if (accept_encoding == NULL)
        return STATIC_ENC_IDENTITY; /* a client that says nothing gets what every client reads */
    int q[STATIC_ENC_COUNT + 1];
    for (size_t i = 0; i < ARRAY_LEN(q); i++)
        q[i] = STATIC_Q_UNSET;
    parse_accept_encoding(accept_encoding, q);
    int star = q[STATIC_ENC_COUNT];
    enum static_enc best = STATIC_ENC_IDENTITY;
    int best_q = 0;
    /* Walk from identity up to br: at equal q the later (preferred) one wins. */
    for (int e = STATIC_ENC_IDENTITY; e < STATIC_ENC_COUNT; e++) {
        if (!(available & (1u << e)))
            continue;
        int w = q[e] != STATIC_Q_UNSET ? q[e] : star;
        if (w == STATIC_Q_UNSET)
            w = e == STATIC_ENC_IDENTITY ? STATIC_Q_IDENTITY_IMPLIED : 0;
        if (w > 0 && w >= best_q) {
            best = (enum static_enc)e;
            best_q = w;
        }
    }
    return best;
}

/* ---- entity tags --------------------------------------------------------- */

/* The opaque tag's quoted text "..." without a W/ prefix: *s and *n. */
static bool etag_parse(const char **p, const char **s, size_t *n)
{
    const char *c = *p;
    if (c[0] == 'W' && c[1] == '/')
        c += 2;
    if (*c != '"')
        return false;
    const char *close = strchr(c + 1, '"');
    if (close == NULL)
        return false;
    *s = c;
    *n = (size_t)(close + 1 - c);
    *p = close + 1;
    return true;
}

bool static_etag_match(const char *if_none_match, const char *etag)
{
    TALLY_ASSERT(etag != NULL);
    if (if_none_match == NULL)
        return false;
    const char *own = etag, *own_s;
    size_t own_n;
    bool own_ok = etag_parse(&own, &own_s, &own_n);
    TALLY_ASSERT(own_ok); /* the generator writes quoted tags */
    const char *p = skip_ows(if_none_match);
    if (p[0] == '*' && *skip_ows(p + 1) == '\0')
        return true;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++; /* empty list elements are allowed (RFC 9110 5.6.1) */
        if (*p == '\0')
            return false;
        const char *s;
        size_t n;
        if (!etag_parse(&p, &s, &n))
            return false;
        if (n == own_n && memcmp(s, own_s, n) == 0)
            return true;
        p = skip_ows(p);
        if (*p != ',' && *p != '\0')
            return false;
    }
}

/* ---- sites --------------------------------------------------------------- */

struct static_site *static_site_create(const struct static_entry *entries, size_t count)
{
    TALLY_ASSERT(entries != NULL || count == 0);
    struct static_site *s = xcalloc(1, sizeof(*s));
    s->entries = entries;
    s->count = count;
    s->bodies = xcalloc(count * STATIC_ENC_COUNT + 1, sizeof(*s->bodies));
    for (size_t i = 0; i < count; i++) {
        const struct static_entry *e = &entries[i];
        TALLY_ASSERT(e->name != NULL && e->data[STATIC_ENC_IDENTITY] != NULL);
        TALLY_ASSERT(i == 0 || strcmp(entries[i - 1].name, e->name) < 0);
        for (int f = 0; f < STATIC_ENC_COUNT; f++)
            if (e->data[f] != NULL)
                s->bodies[i * STATIC_ENC_COUNT + f] = rbuf_new(e->data[f], e->len[f]);
    }
    return s;
}

void static_site_destroy(struct static_site *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count * STATIC_ENC_COUNT; i++)
        rbuf_unref(s->bodies[i]);
    free(s->bodies);
    free(s);
}

static struct static_site *www_site;
static pthread_once_t www_once = PTHREAD_ONCE_INIT;

static void www_make(void)
{
    www_site = static_site_create(static_www, static_www_count);
}

const struct static_site *static_site_www(void)
{
    pthread_once(&www_once, www_make);
    TALLY_ASSERT(www_site != NULL);
    return www_site;
}

const struct static_entry *static_site_find(const struct static_site *s, const char *name)
{
    TALLY_ASSERT(s != NULL && name != NULL);
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->entries[mid].name);
        if (c == 0)
            return &s->entries[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---- responses ----------------------------------------------------------- */

static bool wants_csp(const char *content_type)
{
    /* SVG opened on its own is a document that can run script too. */
    return strncmp(content_type, "text/html", 9) == 0 ||
           strncmp(content_type, "image/svg+xml", 13) == 0;
}

/* The header lines shared by 200 and 304; Content-Encoding on 200 only. */
static void static_headers(char *out, size_t cap, const struct static_entry *e, enum static_enc enc,
                           enum static_kind kind, bool with_encoding)
{
    static const char *const enc_names[] = {[STATIC_ENC_GZIP] = "gzip", [STATIC_ENC_BR] = "br"};
    char ce[48] = "";
    if (with_encoding && enc != STATIC_ENC_IDENTITY)
        snprintf(ce, sizeof(ce), "Content-Encoding: %s\r\n", enc_names[enc]);
    int n = snprintf(out, cap,
                     "ETag: %s\r\nVary: Accept-Encoding\r\n%sCache-Control: %s\r\n"
                     "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n%s",
                     e->etag[enc], ce, kind == STATIC_PAGE ? "no-cache" : "public, max-age=3600",
                     wants_csp(e->content_type) ? csp_line : "");
    TALLY_ASSERT(n > 0 && (size_t)n < cap); /* etags are generator-made and short */
}

/* The response as one buffer: head, then copy_len bytes of body. */
static struct rbuf *finish(struct buf *head, const void *body, size_t copy_len)
{
    struct rbuf *rb = rbuf_alloc(head->len + copy_len);
    memcpy(rb->data, head->data, head->len);
    if (copy_len > 0)
        memcpy(rb->data + head->len, body, copy_len);
    buf_free(head);
    return rb;
}

static int static_error(struct rbuf *out[2], int status, const char *code, const char *message,
                        bool keep_alive, bool head_only)
{
    struct buf body = BUF_INIT, head = BUF_INIT;
    respond_error_body(&body, code, message);
    /* head_only: the body is added by finish(), and only when it is sent. */
    respond_write_ex(&head, status, NULL, status == 405 ? "Allow: GET, HEAD\r\n" : NULL, body.data,
                     body.len, keep_alive, 0, true);
    out[0] = finish(&head, body.data, head_only ? 0 : body.len);
    buf_free(&body);
    return status;
}

static unsigned forms_of(const struct static_entry *e)
{
    unsigned m = 0;
    for (int f = 0; f < STATIC_ENC_COUNT; f++)
        if (e->data[f] != NULL)
            m |= 1u << f;
    return m;
}

int static_respond(const struct static_site *s, const struct http_req *req, bool keep_alive,
                   struct rbuf *out[2])
{
    TALLY_ASSERT(s != NULL && req != NULL);
    TALLY_ASSERT(out != NULL);
    out[0] = out[1] = NULL;
    bool head_only = req->method == HTTP_HEAD;
    if (req->method != HTTP_GET && !head_only)
        return static_error(out, 405, "method_not_allowed", "method not allowed on this path",
                            keep_alive, false);
    char name[STATIC_NAME_MAX + 1];
    enum static_kind kind;
    const struct static_entry *e = NULL;
    if (static_path_file(req->path, req->path_len, name, &kind) == 0)
        e = static_site_find(s, name);
    if (e == NULL)
        return static_error(out, 404, "not_found", "no such page", keep_alive, head_only);
    enum static_enc enc = static_negotiate(req->accept_encoding, forms_of(e));
    char extra[STATIC_EXTRA_HEADERS_MAX];
    struct buf head = BUF_INIT;
    if (static_etag_match(req->if_none_match, e->etag[enc])) {
        static_headers(extra, sizeof(extra), e, enc, kind, false);
        respond_write_ex(&head, 304, e->content_type, extra, NULL, 0, keep_alive, 0, true);
        out[0] = finish(&head, NULL, 0);
        return 304;
    }
    static_headers(extra, sizeof(extra), e, enc, kind, true);
    const char *data = (const char *)e->data[enc];
    size_t len = e->len[enc];
    /* head_only here: Content-Length tells len, the body is added by finish(). */
    respond_write_ex(&head, 200, e->content_type, extra, data, len, keep_alive, 0, true);
    bool copy = !head_only && len <= STATIC_COPY_BYTES_MAX;
    out[0] = finish(&head, data, copy ? len : 0);
    if (!head_only && !copy)
        out[1] = rbuf_ref(s->bodies[(size_t)(e - s->entries) * STATIC_ENC_COUNT + enc]);
    return 200;
}
