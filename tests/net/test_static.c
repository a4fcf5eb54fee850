/*
 * test_static.c - embedded pages and assets: Accept-Encoding negotiation,
 * If-None-Match, path validation, and whole responses from a table that
 * tools/embed_www.py made of tests/net/www_fixture/ (the same step that
 * embeds net/www/ into tallyd). Every stored form is decoded with zlib and
 * libbrotli and compared with the file on disk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/decode.h>
#include <zlib.h>

#include "net/static.h"
#include "net/router.h"
#include "core/base.h"
#include "core/buf.h"
#include "core/rbuf.h"
#include "net/http.h"

/* The fixture table (generated into the build dir by tests/net/CMakeLists.txt). */
extern const struct static_entry static_fixture[];
extern const size_t static_fixture_count;

#define ALL_FORMS ((1u << STATIC_ENC_IDENTITY) | (1u << STATIC_ENC_GZIP) | (1u << STATIC_ENC_BR))
#define NO_BR ((1u << STATIC_ENC_IDENTITY) | (1u << STATIC_ENC_GZIP))
#define FILE_BYTES_MAX (1u << 20)

/* ---- negotiation ---------------------------------------------------------- */

static void test_negotiate_defaults(void **state)
{
    (void)state;
    assert_int_equal(static_negotiate(NULL, ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("", ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("gzip, deflate, br, zstd", ALL_FORMS), STATIC_ENC_BR);
    assert_int_equal(static_negotiate("gzip, deflate", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("deflate, compress, zstd", ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("GZip", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("x-gzip", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("BR", ALL_FORMS), STATIC_ENC_BR);
}

static void test_negotiate_qvalues(void **state)
{
    (void)state;
    assert_int_equal(static_negotiate("br;q=0.5, gzip;q=0.8", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("br;q=0.8, gzip;q=0.5", ALL_FORMS), STATIC_ENC_BR);
    /* Equal weights: br, then gzip, then identity. */
    assert_int_equal(static_negotiate("gzip;q=0.5, br;q=0.5", ALL_FORMS), STATIC_ENC_BR);
    assert_int_equal(static_negotiate("identity;q=0.5, gzip;q=0.5", ALL_FORMS), STATIC_ENC_GZIP);
    /* Identity named with a higher weight wins. */
    assert_int_equal(static_negotiate("identity, gzip;q=0.5", ALL_FORMS), STATIC_ENC_IDENTITY);
    /* Identity not named only fills in when nothing named is acceptable. */
    assert_int_equal(static_negotiate("gzip;q=0.5", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("br;q=0.001", ALL_FORMS), STATIC_ENC_BR);
    assert_int_equal(static_negotiate("br;q=1.000", ALL_FORMS), STATIC_ENC_BR);
    assert_int_equal(static_negotiate("gzip;q=1, br;q=0.999", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("br ; q=0.9 , gzip ;Q=0.8", ALL_FORMS), STATIC_ENC_BR);
    assert_int_equal(static_negotiate("br;q=0.9;x=y, gzip;q=0.95", ALL_FORMS), STATIC_ENC_GZIP);
    /* A coding named twice keeps its first weight. */
    assert_int_equal(static_negotiate("br;q=0.1, gzip;q=0.5, br", ALL_FORMS), STATIC_ENC_GZIP);
}

static void test_negotiate_zero_and_star(void **state)
{
    (void)state;
    assert_int_equal(static_negotiate("br;q=0, gzip", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("br;q=0.000, gzip;q=0", ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("*", ALL_FORMS), STATIC_ENC_BR);
    assert_int_equal(static_negotiate("*", NO_BR), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("*;q=0.3, gzip;q=0.2", ALL_FORMS), STATIC_ENC_BR);
    assert_int_equal(static_negotiate("*;q=0, gzip", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("br;q=0, *", ALL_FORMS), STATIC_ENC_GZIP);
    /* Nothing acceptable, identity excluded too: identity is sent anyway. */
    assert_int_equal(static_negotiate("*;q=0", ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("identity;q=0, br;q=0, gzip;q=0", ALL_FORMS),
                     STATIC_ENC_IDENTITY);
    /* identity;q=0 with a coding left: that coding. */
    assert_int_equal(static_negotiate("identity;q=0, gzip;q=0.1", ALL_FORMS), STATIC_ENC_GZIP);
}

static void test_negotiate_available(void **state)
{
    (void)state;
    unsigned id_only = 1u << STATIC_ENC_IDENTITY;
    unsigned no_gz = (1u << STATIC_ENC_IDENTITY) | (1u << STATIC_ENC_BR);
    assert_int_equal(static_negotiate("br", NO_BR), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("br, gzip;q=0.1", NO_BR), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("gzip, br", id_only), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("gzip", no_gz), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("*", id_only), STATIC_ENC_IDENTITY);
}

static void test_negotiate_malformed(void **state)
{
    (void)state;
    assert_int_equal(static_negotiate("br;q=1.5, gzip", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("br;q=0.0001, gzip", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("br;q=, gzip", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("br;q=2", ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("br;q=abc", ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("br gzip", ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate(",,,;;;", ALL_FORMS), STATIC_ENC_IDENTITY);
    assert_int_equal(static_negotiate("@@@, gzip", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate(" , gzip ,", ALL_FORMS), STATIC_ENC_GZIP);
    assert_int_equal(static_negotiate("brotli, gzipx", ALL_FORMS), STATIC_ENC_IDENTITY);
}

/* ---- entity tags ------------------------------------------------------------ */

static void test_etag_match(void **state)
{
    (void)state;
    const char *own = "\"5e4539c7042d3ed1-br\"";
    assert_false(static_etag_match(NULL, own));
    assert_false(static_etag_match("", own));
    assert_true(static_etag_match("\"5e4539c7042d3ed1-br\"", own));
    assert_true(static_etag_match("W/\"5e4539c7042d3ed1-br\"", own)); /* weak comparison */
    assert_false(static_etag_match("\"5e4539c7042d3ed1\"", own));     /* another form */
    assert_false(static_etag_match("\"5e4539c7042d3ed1-gz\"", own));
    assert_true(static_etag_match("\"a\", \"5e4539c7042d3ed1-br\"", own));
    assert_true(static_etag_match(" \"a\" ,W/\"5e4539c7042d3ed1-br\" , \"b\"", own));
    assert_true(static_etag_match(", ,\"5e4539c7042d3ed1-br\"", own));
    assert_false(static_etag_match("\"a\", \"b\"", own));
    assert_true(static_etag_match("*", own));
    assert_true(static_etag_match("  *  ", own));
    assert_false(static_etag_match("*, \"a\"", own));
    assert_false(static_etag_match("\"5e4539c7042d3ed1-br", own));         /* unterminated */
    assert_false(static_etag_match("5e4539c7042d3ed1-br", own));           /* unquoted */
    assert_false(static_etag_match("\"a\" \"5e4539c7042d3ed1-br\"", own)); /* no comma */
    assert_false(static_etag_match("w/\"5e4539c7042d3ed1-br\"", own));     /* W is upper case */
}

/* ---- paths ------------------------------------------------------------------ */

static void expect_file_n(const char *path, size_t len, const char *want,
                          enum static_kind want_kind)
{
    char name[STATIC_NAME_MAX + 1];
    enum static_kind kind;
    assert_int_equal(static_path_file(path, len, name, &kind), 0);
    assert_string_equal(name, want);
    assert_int_equal(kind, want_kind);
}

static void expect_file(const char *path, const char *want, enum static_kind want_kind)
{
    expect_file_n(path, strlen(path), want, want_kind);
}

static void expect_none(const char *path, size_t len)
{
    char name[STATIC_NAME_MAX + 1];
    enum static_kind kind;
    assert_int_equal(static_path_file(path, len, name, &kind), -ENOENT);
}

static void test_path_pages(void **state)
{
    (void)state;
    expect_file("/", "index.html", STATIC_PAGE);
    expect_file("/j/ABCDEF", "join.html", STATIC_PAGE);
    expect_file("/j/k7qx2m", "join.html", STATIC_PAGE);
    expect_file("/present/K7QX2M", "present.html", STATIC_PAGE);
    expect_file("/screen/K7QX2M", "screen.html", STATIC_PAGE);
    expect_none("", 0);
    expect_none("/j/", 3);
    /* A mistyped code still gets the page, whose script explains it. */
    expect_file("/j/ABCDE", "join.html", STATIC_PAGE);
    expect_file("/j/ABCDE0", "join.html", STATIC_PAGE);
    expect_file("/screen/x", "screen.html", STATIC_PAGE);
    char longest[3 + ROUTER_PAGE_SEGMENT_MAX + 2];
    memcpy(longest, "/j/", 3);
    memset(longest + 3, 'A', ROUTER_PAGE_SEGMENT_MAX + 1);
    longest[sizeof(longest) - 1] = '\0';
    expect_none(longest, sizeof(longest) - 1);
    expect_file_n(longest, sizeof(longest) - 2, "join.html", STATIC_PAGE);
    expect_none("/j/ABCDEF/", 10);
    expect_none("/present/", 9);
    expect_none("/index.html", 11);
    expect_none("/j", 2);
    expect_none("//", 2);
}

static void test_path_assets(void **state)
{
    (void)state;
    expect_file("/assets/app.css", "app.css", STATIC_ASSET);
    expect_file("/assets/join.html", "join.html", STATIC_ASSET);
    expect_file("/assets/a..b", "a..b", STATIC_ASSET); /* dots inside a flat name are harmless */
    expect_none("/assets/", 8);
    expect_none("/assets", 7);
    expect_none("/assets/..", 10);
    expect_none("/assets/../secret", 17);
    expect_none("/assets/.hidden", 15);
    expect_none("/assets/a/b.css", 15);
    expect_none("/assets/sub/nested.css", 22);
    expect_none("/assets/a%2fb", 13);
    expect_none("/assets/a%2Fb", 13);
    expect_none("/assets/%2e%2e", 14);
    expect_none("/assets/a\\b", 11);
    expect_none("/assets/a b", 11);
    expect_none("/assets/app.css\0x", 17); /* a NUL inside the path */
    expect_none("/Assets/app.css", 15);
}

static void test_path_length_limit(void **state)
{
    (void)state;
    char path[8 + STATIC_NAME_MAX + 2];
    memcpy(path, "/assets/", 8);
    memset(path + 8, 'a', STATIC_NAME_MAX + 1);
    path[8 + STATIC_NAME_MAX + 1] = '\0';
    expect_none(path, 8 + STATIC_NAME_MAX + 1);
    path[8 + STATIC_NAME_MAX] = '\0'; /* exactly at the limit */
    char name[STATIC_NAME_MAX + 1];
    enum static_kind kind;
    assert_int_equal(static_path_file(path, 8 + STATIC_NAME_MAX, name, &kind), 0);
    assert_int_equal(strlen(name), STATIC_NAME_MAX);
}

/* ---- the generated table ------------------------------------------------------ */

static char *read_fixture(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", FIXTURE_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *data = malloc(FILE_BYTES_MAX);
    assert_non_null(data);
    *len = fread(data, 1, FILE_BYTES_MAX, f);
    assert_true(*len < FILE_BYTES_MAX);
    fclose(f);
    return data;
}

static unsigned char *gunzip(const unsigned char *in, size_t len, size_t *out_len)
{
    unsigned char *out = malloc(FILE_BYTES_MAX);
    assert_non_null(out);
    z_stream z = {0};
    assert_int_equal(inflateInit2(&z, 16 + MAX_WBITS), Z_OK); /* gzip wrapper only */
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = FILE_BYTES_MAX;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = z.total_out;
    inflateEnd(&z);
    return out;
}

static unsigned char *unbrotli(const unsigned char *in, size_t len, size_t *out_len)
{
    unsigned char *out = malloc(FILE_BYTES_MAX);
    assert_non_null(out);
    *out_len = FILE_BYTES_MAX;
    assert_int_equal(BrotliDecoderDecompress(len, in, out_len, out), BROTLI_DECODER_RESULT_SUCCESS);
    return out;
}

static struct static_site *site_setup(void)
{
    return static_site_create(static_fixture, static_fixture_count);
}

static void test_table_contents(void **state)
{
    (void)state;
    static const struct {
        const char *name, *type;
    } want[] = {
        {"app.css", "text/css; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"blob.bin", "application/octet-stream"},
        {"data.json", "application/json"},
        {"favicon.ico", "image/x-icon"},
        {"icon.svg", "image/svg+xml"},
        {"index.html", "text/html; charset=utf-8"},
        {"join.html", "text/html; charset=utf-8"},
        {"logo.png", "image/png"},
        {"manifest.webmanifest", "application/manifest+json"},
        {"notes.txt", "text/plain; charset=utf-8"},
    };
    struct static_site *s = site_setup();
    /* Exactly these: no dotfile, no name with a space, nothing from sub/. */
    assert_int_equal(static_fixture_count, ARRAY_LEN(want));
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        const struct static_entry *e = static_site_find(s, want[i].name);
        assert_non_null(e);
        assert_string_equal(e->name, want[i].name);
        assert_string_equal(e->content_type, want[i].type);
    }
    assert_null(static_site_find(s, ".hidden"));
    assert_null(static_site_find(s, "bad name.txt"));
    assert_null(static_site_find(s, "nested.css"));
    assert_null(static_site_find(s, "sub"));
    assert_null(static_site_find(s, "app.cs"));
    assert_null(static_site_find(s, "zzz"));
    assert_null(static_site_find(s, ""));
    static_site_destroy(s);
}

/* Every stored form decodes to the file; compressed forms are smaller; tags differ. */
static void check_entry(const struct static_entry *e)
{
    size_t len;
    char *want = read_fixture(e->name, &len);
    assert_non_null(e->data[STATIC_ENC_IDENTITY]);
    assert_int_equal(e->len[STATIC_ENC_IDENTITY], len);
    assert_memory_equal(e->data[STATIC_ENC_IDENTITY], want, len);
    for (int f = STATIC_ENC_GZIP; f < STATIC_ENC_COUNT; f++) {
        if (e->data[f] == NULL) {
            assert_null(e->etag[f]);
            continue;
        }
        assert_true(e->len[f] < len);
        size_t got_len;
        unsigned char *got = f == STATIC_ENC_GZIP ? gunzip(e->data[f], e->len[f], &got_len)
                                                  : unbrotli(e->data[f], e->len[f], &got_len);
        assert_int_equal(got_len, len);
        assert_memory_equal(got, want, len);
        free(got);
        assert_string_not_equal(e->etag[f], e->etag[STATIC_ENC_IDENTITY]);
    }
    /* A strong tag: quoted, 16 hex digits of the content's hash, then the form. */
    const char *id = e->etag[STATIC_ENC_IDENTITY];
    assert_int_equal(strlen(id), 18);
    assert_true(id[0] == '"' && id[17] == '"');
    if (e->etag[STATIC_ENC_GZIP])
        assert_int_equal(strncmp(e->etag[STATIC_ENC_GZIP], id, 17), 0);
    free(want);
}

static void test_table_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < static_fixture_count; i++)
        check_entry(&static_fixture[i]);
    /* The gzip form is reproducible: header mtime 0. */
    const struct static_entry *css = &static_fixture[0];
    assert_string_equal(css->name, "app.css");
    assert_non_null(css->data[STATIC_ENC_GZIP]);
    assert_memory_equal(css->data[STATIC_ENC_GZIP], "\x1f\x8b\x08", 3);
    assert_memory_equal(css->data[STATIC_ENC_GZIP] + 4, "\0\0\0\0", 4);
    /* Incompressible files keep the identity form only. */
    struct static_site *s = site_setup();
    const struct static_entry *png = static_site_find(s, "logo.png");
    assert_non_null(png);
    assert_null(png->data[STATIC_ENC_GZIP]);
    assert_null(png->data[STATIC_ENC_BR]);
    static_site_destroy(s);
}

/* The table built into the library from net/www/: whatever is there is servable. */
static void test_www_table(void **state)
{
    (void)state;
    const struct static_site *s = static_site_www();
    assert_non_null(s);
    for (size_t i = 0; i < static_www_count; i++) {
        const struct static_entry *e = &static_www[i];
        assert_ptr_equal(static_site_find(s, e->name), e);
        assert_non_null(e->data[STATIC_ENC_IDENTITY]);
        assert_non_null(e->content_type);
        assert_int_equal(e->etag[STATIC_ENC_IDENTITY][0], '"');
    }
}

/* ---- responses ---------------------------------------------------------------- */

struct answer {
    struct buf out;
    struct rbuf *body;
    int status;
};

static struct answer ask(const struct static_site *s, enum http_method m, const char *path,
                         const char *accept, const char *inm)
{
    struct http_req req = {.method = m,
                           .path = path,
                           .path_len = strlen(path),
                           .accept_encoding = accept,
                           .if_none_match = inm};
    struct answer a = {.out = BUF_INIT};
    struct rbuf *out[2];
    a.status = static_respond(s, &req, true, out);
    assert_non_null(out[0]);
    buf_append(&a.out, out[0]->data, out[0]->len); /* NUL-terminated for strstr */
    rbuf_unref(out[0]);
    a.body = out[1];
    return a;
}

/* The value of a header line of the response head, or NULL. */
static const char *header(const struct answer *a, const char *name, char *val, size_t cap)
{
    char key[64];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *end_head = strstr(a->out.data, "\r\n\r\n");
    assert_non_null(end_head);
    const char *p = strstr(a->out.data, key);
    if (p == NULL || p > end_head)
        return NULL;
    p += strlen(key);
    size_t n = (size_t)(strstr(p, "\r\n") - p);
    assert_true(n < cap);
    memcpy(val, p, n);
    val[n] = '\0';
    return val;
}

static size_t body_len(const struct answer *a)
{
    const char *end_head = strstr(a->out.data, "\r\n\r\n");
    return a->out.len - (size_t)(end_head + 4 - a->out.data);
}

static const char *body_of(const struct answer *a)
{
    return strstr(a->out.data, "\r\n\r\n") + 4;
}

static void answer_free(struct answer *a)
{
    buf_free(&a->out);
    rbuf_unref(a->body);
}

static void test_respond_page(void **state)
{
    (void)state;
    struct static_site *s = site_setup();
    const struct static_entry *e = static_site_find(s, "index.html");
    char v[512];
    struct answer a = ask(s, HTTP_GET, "/", "gzip, deflate, br", NULL);
    assert_int_equal(a.status, 200);
    assert_memory_equal(a.out.data, "HTTP/1.1 200 OK\r\n", 17);
    assert_string_equal(header(&a, "Content-Type", v, sizeof(v)), "text/html; charset=utf-8");
    assert_string_equal(header(&a, "Content-Encoding", v, sizeof(v)), "br");
    assert_string_equal(header(&a, "ETag", v, sizeof(v)), e->etag[STATIC_ENC_BR]);
    assert_string_equal(header(&a, "Vary", v, sizeof(v)), "Accept-Encoding");
    assert_string_equal(header(&a, "Cache-Control", v, sizeof(v)), "no-cache");
    assert_string_equal(header(&a, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
    assert_string_equal(header(&a, "Referrer-Policy", v, sizeof(v)), "no-referrer");
    assert_non_null(header(&a, "Content-Security-Policy", v, sizeof(v)));
    assert_non_null(strstr(v, "default-src 'self'"));
    assert_non_null(strstr(v, "script-src 'self'"));
    assert_non_null(strstr(v, "frame-ancestors 'none'"));
    assert_null(strstr(a.out.data, "no-store"));
    assert_int_equal(atoi(header(&a, "Content-Length", v, sizeof(v))), e->len[STATIC_ENC_BR]);
    assert_null(a.body); /* small: copied behind the head, one send */
    assert_int_equal(body_len(&a), e->len[STATIC_ENC_BR]);
    assert_memory_equal(body_of(&a), e->data[STATIC_ENC_BR], e->len[STATIC_ENC_BR]);
    answer_free(&a);

    a = ask(s, HTTP_GET, "/j/abcdef", NULL, NULL);
    e = static_site_find(s, "join.html");
    assert_int_equal(a.status, 200);
    assert_null(header(&a, "Content-Encoding", v, sizeof(v)));
    assert_string_equal(header(&a, "ETag", v, sizeof(v)), e->etag[STATIC_ENC_IDENTITY]);
    assert_int_equal(body_len(&a), e->len[STATIC_ENC_IDENTITY]);
    assert_memory_equal(body_of(&a), e->data[STATIC_ENC_IDENTITY], e->len[STATIC_ENC_IDENTITY]);
    answer_free(&a);
    static_site_destroy(s);
}

static void test_respond_asset(void **state)
{
    (void)state;
    struct static_site *s = site_setup();
    char v[512];
    struct answer a = ask(s, HTTP_GET, "/assets/app.css", "gzip", NULL);
    const struct static_entry *e = static_site_find(s, "app.css");
    assert_int_equal(a.status, 200);
    assert_string_equal(header(&a, "Content-Encoding", v, sizeof(v)), "gzip");
    assert_string_equal(header(&a, "Cache-Control", v, sizeof(v)), "public, max-age=3600");
    assert_string_equal(header(&a, "ETag", v, sizeof(v)), e->etag[STATIC_ENC_GZIP]);
    assert_null(header(&a, "Content-Security-Policy", v, sizeof(v))); /* not a document */
    assert_string_equal(header(&a, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
    assert_memory_equal(body_of(&a), e->data[STATIC_ENC_GZIP], e->len[STATIC_ENC_GZIP]);
    answer_free(&a);

    /* A page file asked for as an asset is cached as an asset. */
    a = ask(s, HTTP_GET, "/assets/index.html", "br", NULL);
    assert_string_equal(header(&a, "Cache-Control", v, sizeof(v)), "public, max-age=3600");
    assert_non_null(header(&a, "Content-Security-Policy", v, sizeof(v)));
    answer_free(&a);

    a = ask(s, HTTP_GET, "/assets/icon.svg", "br", NULL);
    assert_non_null(header(&a, "Content-Security-Policy", v, sizeof(v)));
    answer_free(&a);

    /* blob.bin has a br form but no gzip form. */
    a = ask(s, HTTP_GET, "/assets/blob.bin", "gzip", NULL);
    e = static_site_find(s, "blob.bin");
    assert_null(header(&a, "Content-Encoding", v, sizeof(v)));
    assert_string_equal(header(&a, "Content-Type", v, sizeof(v)), "application/octet-stream");
    assert_memory_equal(body_of(&a), e->data[STATIC_ENC_IDENTITY], e->len[STATIC_ENC_IDENTITY]);
    answer_free(&a);
    static_site_destroy(s);
}

/* Bodies above the copy threshold go out as the shared buffer, not copied. */
static void test_respond_shared_body(void **state)
{
    (void)state;
    struct static_site *s = site_setup();
    const struct static_entry *e = static_site_find(s, "data.json");
    assert_true(e->len[STATIC_ENC_BR] > STATIC_COPY_BYTES_MAX);
    char v[64];
    struct answer a = ask(s, HTTP_GET, "/assets/data.json", "br", NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(body_len(&a), 0);
    assert_int_equal(atoi(header(&a, "Content-Length", v, sizeof(v))), e->len[STATIC_ENC_BR]);
    assert_non_null(a.body);
    assert_int_equal(a.body->len, e->len[STATIC_ENC_BR]);
    assert_memory_equal(a.body->data, e->data[STATIC_ENC_BR], e->len[STATIC_ENC_BR]);
    struct answer b = ask(s, HTTP_GET, "/assets/data.json", "br", NULL);
    assert_ptr_equal(b.body, a.body); /* the same bytes for every request */
    answer_free(&b);
    answer_free(&a);
    /* HEAD: the head alone, no body reference. */
    a = ask(s, HTTP_HEAD, "/assets/data.json", "gzip", NULL);
    assert_null(a.body);
    assert_int_equal(body_len(&a), 0);
    assert_int_equal(atoi(header(&a, "Content-Length", v, sizeof(v))), e->len[STATIC_ENC_GZIP]);
    answer_free(&a);
    static_site_destroy(s);
}

static void test_respond_conditional(void **state)
{
    (void)state;
    struct static_site *s = site_setup();
    const struct static_entry *e = static_site_find(s, "index.html");
    char v[512];
    struct answer a = ask(s, HTTP_GET, "/", "br", e->etag[STATIC_ENC_BR]);
    assert_int_equal(a.status, 304);
    assert_memory_equal(a.out.data, "HTTP/1.1 304 Not Modified\r\n", 27);
    assert_string_equal(header(&a, "ETag", v, sizeof(v)), e->etag[STATIC_ENC_BR]);
    assert_string_equal(header(&a, "Cache-Control", v, sizeof(v)), "no-cache");
    assert_string_equal(header(&a, "Vary", v, sizeof(v)), "Accept-Encoding");
    assert_null(header(&a, "Content-Length", v, sizeof(v)));
    assert_int_equal(body_len(&a), 0);
    assert_null(a.body);
    answer_free(&a);

    char list[128];
    snprintf(list, sizeof(list), "\"x\", W/%s", e->etag[STATIC_ENC_BR]);
    a = ask(s, HTTP_GET, "/", "br", list); /* in a list, weak */
    assert_int_equal(a.status, 304);
    answer_free(&a);
    a = ask(s, HTTP_GET, "/", "br", "\"x\", \"y\"");
    assert_int_equal(a.status, 200);
    answer_free(&a);
    a = ask(s, HTTP_GET, "/", "br", "*");
    assert_int_equal(a.status, 304);
    answer_free(&a);
    /* The tag of another form: the client has other bytes, send these. */
    a = ask(s, HTTP_GET, "/", "br", e->etag[STATIC_ENC_GZIP]);
    assert_int_equal(a.status, 200);
    answer_free(&a);
    a = ask(s, HTTP_HEAD, "/", "gzip", e->etag[STATIC_ENC_GZIP]);
    assert_int_equal(a.status, 304);
    answer_free(&a);
    static_site_destroy(s);
}

static void test_respond_errors(void **state)
{
    (void)state;
    struct static_site *s = site_setup();
    char v[64];
    struct answer a = ask(s, HTTP_GET, "/present/K7QX2M", "br", NULL); /* no present.html */
    assert_int_equal(a.status, 404);
    assert_string_equal(header(&a, "Content-Type", v, sizeof(v)), "application/json");
    assert_non_null(strstr(body_of(&a), "\"code\":\"not_found\""));
    answer_free(&a);
    a = ask(s, HTTP_GET, "/assets/..", NULL, NULL);
    assert_int_equal(a.status, 404);
    answer_free(&a);
    a = ask(s, HTTP_GET, "/assets/nope.css", NULL, NULL);
    assert_int_equal(a.status, 404);
    answer_free(&a);
    a = ask(s, HTTP_HEAD, "/assets/nope.css", NULL, NULL);
    assert_int_equal(a.status, 404);
    assert_int_equal(body_len(&a), 0); /* HEAD: never a body */
    assert_non_null(header(&a, "Content-Length", v, sizeof(v)));
    answer_free(&a);
    a = ask(s, HTTP_POST, "/", NULL, NULL);
    assert_int_equal(a.status, 405);
    assert_string_equal(header(&a, "Allow", v, sizeof(v)), "GET, HEAD");
    answer_free(&a);
    static_site_destroy(s);
}

static void test_empty_site(void **state)
{
    (void)state;
    struct static_site *s = static_site_create(NULL, 0);
    assert_null(static_site_find(s, "index.html"));
    struct answer a = ask(s, HTTP_GET, "/", "br", NULL);
    assert_int_equal(a.status, 404);
    answer_free(&a);
    static_site_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate_defaults),
        cmocka_unit_test(test_negotiate_qvalues),
        cmocka_unit_test(test_negotiate_zero_and_star),
        cmocka_unit_test(test_negotiate_available),
        cmocka_unit_test(test_negotiate_malformed),
        cmocka_unit_test(test_etag_match),
        cmocka_unit_test(test_path_pages),
        cmocka_unit_test(test_path_assets),
        cmocka_unit_test(test_path_length_limit),
        cmocka_unit_test(test_table_contents),
        cmocka_unit_test(test_table_forms),
        cmocka_unit_test(test_www_table),
        cmocka_unit_test(test_respond_page),
        cmocka_unit_test(test_respond_asset),
        cmocka_unit_test(test_respond_shared_body),
        cmocka_unit_test(test_respond_conditional),
        cmocka_unit_test(test_respond_errors),
        cmocka_unit_test(test_empty_site),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
