/*
 * static.h - the web app's pages and assets, embedded in the binary at build
 * time (tools/embed_www.py turns net/www/ into a table of struct
 * static_entry) and served from memory, precompressed.
 *
 * Paths (the router sends only GET and HEAD here):
 *   /                 index.html    page
 *   /j/{code}         join.html     page
 *   /present/{code}   present.html  page
 *   /screen/{code}    screen.html   page
 *   /assets/{file}    {file}        asset (any embedded file, flat names only)
 * Pages are "Cache-Control: no-cache" (revalidated with their ETag on every
 * load, so a new build shows at once); assets "public, max-age=3600".
 *
 * Each file is stored as identity bytes plus gzip and brotli forms when those
 * are smaller; Accept-Encoding picks one (br before gzip before identity at
 * equal q), each form has its own strong ETag, and If-None-Match answers 304.
 *
 * Nothing here touches the actors or the database, and a file's bytes are
 * never copied per request above STATIC_COPY_BYTES_MAX: the body is a shared
 * reference-counted buffer made once per process.
 *
 * Threading: the pure functions run on any thread. A static_site is immutable
 * after static_site_create(); any thread may read it.
 */
#ifndef TALLY_NET_STATIC_H
#define TALLY_NET_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_req;
struct rbuf;

/** Longest file name under /assets/ (tools/embed_www.py skips longer ones). */
#define STATIC_NAME_MAX 128

/*
 * Bodies up to this size are copied behind the response head so the answer
 * leaves in one send; a second send costs more than copying a few KiB.
 * Larger bodies are queued as the shared buffer itself.
 */
#ifndef STATIC_COPY_BYTES_MAX
#define STATIC_COPY_BYTES_MAX 16384
#endif

/** Room for the header lines static_respond() adds to the standard ones. */
#define STATIC_EXTRA_HEADERS_MAX 640

/** The stored forms of a file. */
enum static_enc { STATIC_ENC_IDENTITY, STATIC_ENC_GZIP, STATIC_ENC_BR, STATIC_ENC_COUNT };

/** What a path names: a page (no-cache, with a CSP when HTML) or an asset. */
enum static_kind { STATIC_PAGE, STATIC_ASSET };

/**
 * One embedded file, as tools/embed_www.py writes it. data[e] is NULL when
 * form e is not stored (compressed forms are kept only when smaller); the
 * identity form is always there. etag[e] is a quoted strong entity tag.
 */
struct static_entry {
    const char *name;
    const char *content_type;
    const unsigned char *data[STATIC_ENC_COUNT];
    uint32_t len[STATIC_ENC_COUNT];
    const char *etag[STATIC_ENC_COUNT];
};

/** The table built from net/www/ (sorted by name; count may be 0). */
extern const struct static_entry static_www[];
/** Number of entries in static_www. */
extern const size_t static_www_count;

/**
 * Maps a request path (not NUL-terminated, not decoded) to the name of the
 * file it asks for and its kind. Returns 0, or -ENOENT for a path that names
 * no file: an unknown prefix, a {code} that is not a join code, or an asset
 * name that is empty, longer than STATIC_NAME_MAX, starts with '.', or holds
 * anything but [A-Za-z0-9._-] ('/', '%' and so "..", "%2f" included).
 */
int static_path_file(const char *path, size_t len, char name[STATIC_NAME_MAX + 1],
                     enum static_kind *kind);

/**
 * Picks the form to send for an Accept-Encoding value (NULL: header absent).
 * available has bit (1 << e) set for each stored form e. The highest q wins
 * and br beats gzip beats identity at equal q; "q=0" excludes a coding; "*"
 * stands for every coding not named. x-gzip is gzip. When nothing listed is
 * acceptable the identity form is sent (RFC 9110 12.5.3). Malformed entries
 * are ignored.
 */
enum static_enc static_negotiate(const char *accept_encoding, unsigned available);

/**
 * True when an If-None-Match value matches etag with the weak comparison
 * (RFC 9110 8.8.3.2: W/ ignored on both sides): "*", or one entry of the
 * comma-separated list of entity tags equal to etag. Malformed input never
 * matches.
 */
bool static_etag_match(const char *if_none_match, const char *etag);

struct static_site;

/**
 * Makes a site of count entries (sorted by name, as the generator writes
 * them), with one shared buffer per stored form. Asserts on an unsorted
 * table. The caller owns it; entries must outlive it.
 */
struct static_site *static_site_create(const struct static_entry *entries, size_t count);

/** Frees a site; buffers still queued on connections live until sent. NULL is allowed. */
void static_site_destroy(struct static_site *s);

/** The process-wide site of net/www/, made on first call; never freed. Any thread. */
const struct static_site *static_site_www(void);

/** The entry named name (NUL-terminated), or NULL. */
const struct static_entry *static_site_find(const struct static_site *s, const char *name);

/**
 * Answers one request for a static path and returns its status (200, 304,
 * 404 or 405). out[0] is the complete response, ready to send; on a 200 to
 * a GET whose body is over STATIC_COPY_BYTES_MAX, out[0] is the head only
 * and out[1] the shared body, to be sent right after it, else out[1] is
 * NULL. The caller owns one reference to each.
 */
int static_respond(const struct static_site *s, const struct http_req *req, bool keep_alive,
                   struct rbuf *out[2]);

#endif
