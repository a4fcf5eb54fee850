/*
 * apireq.c - from HTTP request to struct api_req.
 *
 * Each body-carrying op has one reader that takes the parsed JSON object and
 * either fills the request or names the first field at fault. Bodies are
 * parsed by jansson, which checks UTF-8 and refuses NUL inside strings, so
 * every string copied here is valid UTF-8 without embedded NULs.
 */
#include "net/apireq.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "core/base.h"
#include "net/respond.h"

#define APIREQ_MESSAGE_MAX 160 /* every message is a fixed text plus a few numbers */

static_assert(API_CHOICES_MAX <= UINT8_MAX + 1, "choices are stored as uint8_t indexes");
static_assert(API_CODE_LEN + 1 == sizeof(((struct route_match *)0)->code), "same code size");

/* Appends the error body and returns the status for the caller to return. */
__attribute__((format(printf, 2, 3))) static int invalid(struct buf *err, const char *fmt, ...)
{
    char msg[APIREQ_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    respond_error_body(err, "invalid_request", msg);
    return 400;
}

/* ---- query, token, headers ---------------------------------------------- */

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int percent_decode(const char *s, size_t n, char *out, size_t out_size, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -EINVAL;
            int h = hex_val(s[i + 1]);
            int l = hex_val(s[i + 2]);
            if (h < 0 || l < 0)
                return -EINVAL;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (c == '\0')
            return -EINVAL;
        if (o + 1 >= out_size)
            return -E2BIG;
        out[o++] = c;
    }
    out[o] = '\0';
    *out_len = o;
    return 0;
}

int apireq_query_param(const char *query, size_t query_len, const char *name, char *out,
                       size_t out_size, size_t *out_len)
{
    TALLY_ASSERT(name != NULL && out != NULL);
    TALLY_ASSERT(out_size > 0);
    size_t name_len = strlen(name);
    size_t i = 0;
    while (i < query_len) {
        const char *amp = memchr(query + i, '&', query_len - i);
        size_t end = amp ? (size_t)(amp - query) : query_len;
        const char *pair = query + i;
        size_t pair_len = end - i;
        if (pair_len > name_len && memcmp(pair, name, name_len) == 0 && pair[name_len] == '=')
            return percent_decode(pair + name_len + 1, pair_len - name_len - 1, out, out_size,
                                  out_len);
        i = end + 1;
    }
    return -ENOENT;
}

static bool token_chars_ok(const char *t)
{
    for (; *t != '\0'; t++) {
        unsigned char c = (unsigned char)*t;
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

bool apireq_token(const struct http_req *hr, char token[API_TOKEN_MAX + 1])
{
    token[0] = '\0';
    if (hr->authorization != NULL) {
        const char *a = hr->authorization;
        if (strncasecmp(a, "bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t'))
            return false;
        a += 6;
        while (*a == ' ' || *a == '\t')
            a++;
        size_t n = strlen(a);
        if (n == 0 || n > API_TOKEN_MAX)
            return false;
        memcpy(token, a, n + 1);
    } else {
        size_t n = 0;
        if (apireq_query_param(hr->query, hr->query_len, "token", token, API_TOKEN_MAX + 1,
                               &n) != 0 ||
            n == 0) {
            token[0] = '\0';
            return false;
        }
    }
    if (!token_chars_ok(token)) {
        token[0] = '\0';
        return false;
    }
    return true;
}

/* Host ends up in a join link and a QR code: keep it only if it looks like host[:port]. */
static void copy_host(const struct http_req *hr, char host[API_HOST_MAX + 1])
{
    host[0] = '\0';
    if (hr->host == NULL)
        return;
    size_t n = strnlen(hr->host, API_HOST_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = hr->host[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
        if (!ok)
            return;
    }
    memcpy(host, hr->host, n);
    host[n] = '\0';
}

static int read_idem_key(const struct http_req *hr, struct api_req *req, struct buf *err)
{
    const char *k = hr->idempotency_key;
    if (k == NULL)
        return invalid(err, "header 'Idempotency-Key' is required");
    size_t n = strlen(k);
    bool ok = n >= 1 && n <= API_IDEM_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)k[i] >= 0x20 && (unsigned char)k[i] <= 0x7e;
    if (!ok)
        return invalid(err, "header 'Idempotency-Key' must be 1 to %d printable ASCII characters",
                       API_IDEM_KEY_MAX);
    memcpy(req->idem_key, k, n + 1);
    return 0;
}

/* ---- bodies ------------------------------------------------------------- */

/* A string member of min..max bytes, copied; NULL member allowed when optional. */
static bool get_string(json_t *obj, const char *key, size_t min, size_t max, bool optional,
                       char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return optional;
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    if (n < min || n > max)
        return false;
    *out = xstrndup(json_string_value(v), n);
    return true;
}

static int body_session_create(json_t *root, struct api_req *req, struct buf *err)
{
    if (!get_string(root, "title", 1, API_TITLE_MAX, false, &req->text))
        return invalid(err, "field 'title' must be a string of 1 to %d bytes", API_TITLE_MAX);
    return 0;
}

static int body_join(json_t *root, struct api_req *req, struct buf *err)
{
    if (!get_string(root, "name", 0, API_NAME_MAX, true, &req->text))
        return invalid(err, "field 'name' must be a string of at most %d bytes", API_NAME_MAX);
    if (req->text != NULL && req->text[0] == '\0') {
        free(req->text);
        req->text = NULL;
    }
    return 0;
}

static int poll_options(json_t *root, struct api_poll_spec *spec, struct buf *err)
{
    json_t *opts = json_object_get(root, "options");
    size_t n = json_is_array(opts) ? json_array_size(opts) : 0;
    if (n < 2 || n > API_OPTIONS_MAX)
        goto bad_array;
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(json_array_get(opts, i)))
            goto bad_array;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(opts, i);
        size_t len = json_string_length(o);
        if (len < 1 || len > API_OPTION_MAX)
            return invalid(err, "field 'options[%zu]' must be a string of 1 to %d bytes", i,
                           API_OPTION_MAX);
        spec->options[i] = xstrndup(json_string_value(o), len);
        spec->n_options = (uint32_t)(i + 1);
    }
    return 0;
bad_array:
    return invalid(err, "field 'options' must be an array of 2 to %d strings", API_OPTIONS_MAX);
}

static int poll_max_choices(json_t *root, struct api_poll_spec *spec, struct buf *err)
{
    json_t *v = json_object_get(root, "max_choices");
    bool absent = v == NULL || json_is_null(v);
    json_int_t m = json_is_integer(v) ? json_integer_value(v) : -1;
    if (spec->kind == POLL_MULTI) {
        if (absent) {
            spec->max_choices = spec->n_options;
            return 0;
        }
        if (m < 1 || m > (json_int_t)spec->n_options)
            return invalid(err, "field 'max_choices' must be an integer from 1 to %u",
                           spec->n_options);
        spec->max_choices = (uint32_t)m;
        return 0;
    }
    if (!absent && m != 1)
        return invalid(err, "field 'max_choices' must be 1 for kind '%s'",
                       poll_kind_name(spec->kind));
    spec->max_choices = 1;
    return 0;
}

static int body_poll_create(json_t *root, struct api_req *req, struct buf *err)
{
    struct api_poll_spec *spec = &req->poll;
    if (!get_string(root, "question", 1, API_QUESTION_MAX, false, &spec->question))
        return invalid(err, "field 'question' must be a string of 1 to %d bytes",
                       API_QUESTION_MAX);
    json_t *kind = json_object_get(root, "kind");
    if (!json_is_string(kind) || !poll_kind_parse(json_string_value(kind), &spec->kind))
        return invalid(err, "field 'kind' must be one of single, multi, rating");
    int status = poll_options(root, spec, err);
    if (status != 0)
        return status;
    return poll_max_choices(root, spec, err);
}

static int body_vote(json_t *root, struct api_req *req, struct buf *err)
{
    json_t *choice = json_object_get(root, "choice");
    size_t n = json_is_array(choice) ? json_array_size(choice) : 0;
    if (n == 0)
        goto bad_array;
    for (size_t i = 0; i < n; i++) {
        if (!json_is_integer(json_array_get(choice, i)))
            goto bad_array;
    }
    if (n > API_CHOICES_MAX)
        return invalid(err, "field 'choice' must have at most %d entries", API_CHOICES_MAX);
    for (size_t i = 0; i < n; i++) {
        json_int_t c = json_integer_value(json_array_get(choice, i));
        if (c < 0 || c >= API_OPTIONS_MAX)
            return invalid(err, "field 'choice' must hold option indexes from 0 to %d",
                           API_OPTIONS_MAX - 1);
        req->choices[i] = (uint8_t)c;
    }
    req->n_choices = (uint32_t)n;
    return 0;
bad_array:
    return invalid(err, "field 'choice' must be a non-empty array of option indexes");
}

static bool op_reads_body(enum api_op op)
{
    return op == API_SESSION_CREATE || op == API_JOIN || op == API_POLL_CREATE || op == API_VOTE;
}

static int read_body(const struct http_req *hr, struct api_req *req, struct buf *err)
{
    if (hr->body_len == 0) {
        if (req->op == API_JOIN)
            return 0; /* the name is optional, and so is the whole body */
        return invalid(err, "body is required");
    }
    json_error_t jerr;
    json_t *root = json_loadb(hr->body, hr->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return invalid(err, "body is not valid JSON");
    int status = 0;
    if (!json_is_object(root)) {
        status = invalid(err, "body must be a JSON object");
        goto out_decref;
    }
    switch (req->op) {
    case API_SESSION_CREATE: status = body_session_create(root, req, err); break;
    case API_JOIN: status = body_join(root, req, err); break;
    case API_POLL_CREATE: status = body_poll_create(root, req, err); break;
    case API_VOTE: status = body_vote(root, req, err); break;
    default: TALLY_ASSERT(!"op without a body");
    }
out_decref:
    json_decref(root);
    return status;
}

int apireq_build(const struct http_req *hr, const struct route_match *rm, struct api_req **out,
                 struct buf *err_body)
{
    TALLY_ASSERT(rm->kind == ROUTE_API);
    TALLY_ASSERT(rm->op < API_OP_COUNT);
    *out = NULL;
    struct api_req *req = api_req_new(rm->op);
    memcpy(req->code, rm->code, sizeof(req->code));
    req->poll_id = rm->poll_id;
    apireq_token(hr, req->token);
    copy_host(hr, req->host);
    int status = 0;
    if (rm->op == API_VOTE)
        status = read_idem_key(hr, req, err_body);
    if (status == 0 && op_reads_body(rm->op))
        status = read_body(hr, req, err_body);
    if (status != 0) {
        api_req_free(req);
        return status;
    }
    *out = req;
    return 0;
}
