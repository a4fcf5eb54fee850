/*
 * wire.c - see wire.h. Server frames are never masked (RFC 6455 5.1) and
 * always final: Tally's messages are small enough to go in one frame.
 *
 * The JSON and MessagePack forms of a message are the same tree: the map has
 * the object's keys in the object's order and the same values, so a client
 * may switch subprotocols and read the same fields.
 */
#include "actors/wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "core/base.h"

size_t wire_ws_header(uint8_t out[WIRE_WS_HEADER_MAX], enum ws_opcode op, uint64_t len)
{
    TALLY_ASSERT((unsigned)op <= 0xF);
    out[0] = (uint8_t)(0x80u | (unsigned)op); /* FIN */
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

void wire_ws_frame(struct buf *out, enum ws_opcode op, const void *payload, size_t len)
{
    uint8_t h[WIRE_WS_HEADER_MAX];
    size_t hl = wire_ws_header(h, op, len);
    buf_append(out, h, hl);
    if (len)
        buf_append(out, payload, len);
}

/* ---- messages ---- */

json_t *wire_msg_json(const char *type, int64_t seq, json_t *data)
{
    json_t *m = json_object();

    TALLY_ASSERT(type != NULL && strchr(type, '\n') == NULL);
    TALLY_ASSERT(data != NULL);
    json_object_set_new(m, "type", json_string(type));
    if (seq > 0)
        json_object_set_new(m, "seq", json_integer(seq));
    json_object_set(m, "data", data);
    return m;
}

/* Compact JSON of m, malloc'd. */
static char *wire_dump(const json_t *m, size_t *len)
{
    char *text = json_dumps(m, JSON_COMPACT);

    TALLY_ASSERT(text != NULL); /* fails only without memory */
    *len = strlen(text);
    return text;
}

static void wire_sse_head(struct buf *out, const char *type, int64_t seq)
{
    buf_printf(out, "event: %s\n", type);
    if (seq > 0)
        buf_printf(out, "id: %lld\n", (long long)seq);
    buf_append_str(out, "data: ");
}

void wire_msg_append(struct buf *out, enum stream_fmt fmt, const char *type, int64_t seq,
                     json_t *data)
{
    json_t *m = wire_msg_json(type, seq, data);
    struct buf packed = BUF_INIT;
    size_t len;
    char *text;

    TALLY_ASSERT((unsigned)fmt < STREAM_FMT_COUNT);
    if (fmt == STREAM_WS_MSGPACK) {
        TALLY_ASSERT(wire_json_to_msgpack(m, &packed) == 0); /* our messages nest 5 deep */
        wire_ws_frame(out, WS_OP_BINARY, packed.data, packed.len);
        buf_free(&packed);
        json_decref(m);
        return;
    }
    text = wire_dump(m, &len);
    json_decref(m);
    if (fmt == STREAM_WS_JSON) {
        wire_ws_frame(out, WS_OP_TEXT, text, len);
    } else {
        wire_sse_head(out, type, seq);
        buf_append(out, text, len);
        buf_append(out, "\n\n", 2);
    }
    free(text);
}

/* A new rbuf holding a WebSocket frame of payload. */
static struct rbuf *wire_ws_rbuf(enum ws_opcode op, const void *payload, size_t len)
{
    uint8_t h[WIRE_WS_HEADER_MAX];
    size_t hl = wire_ws_header(h, op, len);
    struct rbuf *b = rbuf_alloc(hl + len);

    memcpy(b->data, h, hl);
    if (len)
        memcpy(b->data + hl, payload, len);
    return b;
}

void wire_msg_encode(const char *type, int64_t seq, json_t *data,
                     struct rbuf *out[STREAM_FMT_COUNT])
{
    json_t *m = wire_msg_json(type, seq, data);
    struct buf b = BUF_INIT;
    size_t len;
    char *text = wire_dump(m, &len);

    static_assert(STREAM_FMT_COUNT == 3, "one encoding per format below");
    out[STREAM_WS_JSON] = wire_ws_rbuf(WS_OP_TEXT, text, len);
    wire_sse_head(&b, type, seq);
    buf_append(&b, text, len);
    buf_append(&b, "\n\n", 2);
    out[STREAM_SSE] = rbuf_new(b.data, b.len);
    buf_reset(&b);
    TALLY_ASSERT(wire_json_to_msgpack(m, &b) == 0); /* our messages nest 5 deep */
    out[STREAM_WS_MSGPACK] = wire_ws_rbuf(WS_OP_BINARY, b.data, b.len);
    buf_free(&b);
    free(text);
    json_decref(m);
}

/* ---- JSON to MessagePack ---- */

static int wire_buf_write(void *data, const char *p, size_t len)
{
    buf_append(data, p, len);
    return 0;
}

static int wire_pack(msgpack_packer *pk, const json_t *j, unsigned depth)
{
    const char *key;
    size_t key_len;
    json_t *v;
    size_t i;

    switch (json_typeof(j)) {
    case JSON_OBJECT:
        if (depth >= WIRE_DEPTH_MAX)
            return -EINVAL;
        msgpack_pack_map(pk, json_object_size(j));
        json_object_keylen_foreach ((json_t *)j, key, key_len, v) {
            msgpack_pack_str_with_body(pk, key, key_len);
            if (wire_pack(pk, v, depth + 1) < 0)
                return -EINVAL;
        }
        return 0;
    case JSON_ARRAY:
        if (depth >= WIRE_DEPTH_MAX)
            return -EINVAL;
        msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach (j, i, v) {
            if (wire_pack(pk, v, depth + 1) < 0)
                return -EINVAL;
        }
        return 0;
    case JSON_STRING:
        return msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(j));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(j));
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    case JSON_NULL:
        return msgpack_pack_nil(pk);
    }
    TALLY_ASSERT(!"unknown JSON type");
    return -EINVAL;
}

int wire_json_to_msgpack(const json_t *j, struct buf *out)
{
    size_t start = out->len;
    msgpack_packer pk;

    TALLY_ASSERT(j != NULL);
    msgpack_packer_init(&pk, out, wire_buf_write);
    if (wire_pack(&pk, j, 0) < 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return -EINVAL;
    }
    return 0;
}

/* ---- MessagePack to JSON ----
 *
 * Hand-written rather than msgpack-c's unpacker: that one allocates a
 * container's slots from the count in its header before reading a single
 * element, so a five-byte message claiming 2^28 elements asks for gigabytes.
 * Here every count is checked against the bytes that are left (an element
 * takes at least one byte) and values go straight into jansson. */

struct mp_reader {
    const uint8_t *p;
    size_t n, off;
};

static int mp_value(struct mp_reader *r, unsigned depth, json_t **out);

/* The next k bytes, or NULL when fewer are left. */
static const uint8_t *mp_take(struct mp_reader *r, size_t k)
{
    const uint8_t *q;

    if (k > r->n - r->off)
        return NULL;
    q = r->p + r->off;
    r->off += k;
    return q;
}

/* A big-endian unsigned of k bytes (1, 2, 4 or 8); false when short. */
static bool mp_uint(struct mp_reader *r, unsigned k, uint64_t *v)
{
    const uint8_t *q = mp_take(r, k);

    if (q == NULL)
        return false;
    *v = 0;
    for (unsigned i = 0; i < k; i++)
        *v = *v << 8 | q[i];
    return true;
}

static int mp_str(struct mp_reader *r, uint64_t len, json_t **out)
{
    const uint8_t *q = len <= r->n - r->off ? mp_take(r, (size_t)len) : NULL;

    if (q == NULL || memchr(q, '\0', (size_t)len) != NULL)
        return -EINVAL;
    *out = json_stringn((const char *)q, (size_t)len); /* NULL when not UTF-8 */
    return *out ? 0 : -EINVAL;
}

static int mp_array(struct mp_reader *r, uint64_t count, unsigned depth, json_t **out)
{
    json_t *a;

    if (depth >= WIRE_DEPTH_MAX || count > r->n - r->off)
        return -EINVAL;
    a = json_array();
    for (uint64_t i = 0; i < count; i++) {
        json_t *v;

        if (mp_value(r, depth + 1, &v) < 0) {
            json_decref(a);
            return -EINVAL;
        }
        json_array_append_new(a, v);
    }
    *out = a;
    return 0;
}

/* A map key: a str, UTF-8 without NUL; points into the input. */
static int mp_key(struct mp_reader *r, const char **key, size_t *len)
{
    const uint8_t *h = mp_take(r, 1);
    uint64_t n;

    if (h == NULL)
        return -EINVAL;
    if ((*h & 0xE0) == 0xA0)
        n = *h & 0x1F;
    else if (*h < 0xD9 || *h > 0xDB || !mp_uint(r, 1u << (*h - 0xD9), &n))
        return -EINVAL;
    if (n > r->n - r->off)
        return -EINVAL;
    *key = (const char *)mp_take(r, (size_t)n);
    *len = (size_t)n;
    return memchr(*key, '\0', *len) ? -EINVAL : 0;
}

static int mp_map(struct mp_reader *r, uint64_t count, unsigned depth, json_t **out)
{
    json_t *o;

    if (depth >= WIRE_DEPTH_MAX || count > (r->n - r->off) / 2)
        return -EINVAL;
    o = json_object();
    for (uint64_t i = 0; i < count; i++) {
        const char *key;
        size_t key_len;
        json_t *v;

        if (mp_key(r, &key, &key_len) < 0 || json_object_getn(o, key, key_len) != NULL ||
            mp_value(r, depth + 1, &v) < 0)
            goto err_free;
        if (json_object_setn_new(o, key, key_len, v) < 0) /* v is freed: the key is not UTF-8 */
            goto err_free;
    }
    *out = o;
    return 0;

err_free:
    json_decref(o);
    return -EINVAL;
}

static int mp_float(struct mp_reader *r, unsigned k, json_t **out)
{
    uint64_t bits;
    double d;

    if (!mp_uint(r, k, &bits))
        return -EINVAL;
    if (k == 4) {
        uint32_t b32 = (uint32_t)bits;
        float f;

        memcpy(&f, &b32, sizeof(f));
        d = f;
    } else {
        memcpy(&d, &bits, sizeof(d));
    }
    *out = json_real(d); /* NULL for NaN and infinities */
    return *out ? 0 : -EINVAL;
}

/* Integer formats: positive and negative fixint, uint 8..64, int 8..64. */
static int mp_int(struct mp_reader *r, uint8_t h, json_t **out)
{
    uint64_t u;

    if (h <= 0x7F || h >= 0xE0) {
        *out = json_integer((int8_t)h);
        return 0;
    }
    if (!mp_uint(r, 1u << (h & 3), &u))
        return -EINVAL;
    if (h <= 0xCF) { /* uint */
        if (u > INT64_MAX)
            return -EINVAL;
        *out = json_integer((json_int_t)u);
        return 0;
    }
    switch (h) { /* int: sign-extend from its width */
    case 0xD0:
        *out = json_integer((int8_t)u);
        break;
    case 0xD1:
        *out = json_integer((int16_t)u);
        break;
    case 0xD2:
        *out = json_integer((int32_t)u);
        break;
    default:
        *out = json_integer((json_int_t)(int64_t)u);
        break;
    }
    return 0;
}

static int mp_value(struct mp_reader *r, unsigned depth, json_t **out)
{
    const uint8_t *hp = mp_take(r, 1);
    uint8_t h;
    uint64_t n;

    *out = NULL;
    if (hp == NULL)
        return -EINVAL;
    h = *hp;
    if (h <= 0x7F || h >= 0xE0 || (h >= 0xCC && h <= 0xD3))
        return mp_int(r, h, out);
    if (h >= 0x80 && h <= 0x8F)
        return mp_map(r, h & 0x0F, depth, out);
    if (h >= 0x90 && h <= 0x9F)
        return mp_array(r, h & 0x0F, depth, out);
    if (h >= 0xA0 && h <= 0xBF)
        return mp_str(r, h & 0x1F, out);
    switch (h) {
    case 0xC0:
        *out = json_null();
        return 0;
    case 0xC2:
        *out = json_false();
        return 0;
    case 0xC3:
        *out = json_true();
        return 0;
    case 0xCA:
    case 0xCB:
        return mp_float(r, h == 0xCA ? 4 : 8, out);
    case 0xD9: /* str 8, 16, 32 */
    case 0xDA:
    case 0xDB:
        return mp_uint(r, 1u << (h - 0xD9), &n) ? mp_str(r, n, out) : -EINVAL;
    case 0xDC: /* array 16, 32 */
    case 0xDD:
        return mp_uint(r, h == 0xDC ? 2 : 4, &n) ? mp_array(r, n, depth, out) : -EINVAL;
    case 0xDE: /* map 16, 32 */
    case 0xDF:
        return mp_uint(r, h == 0xDE ? 2 : 4, &n) ? mp_map(r, n, depth, out) : -EINVAL;
    default: /* 0xC1 (never used), bin, ext, fixext: nothing JSON can hold */
        return -EINVAL;
    }
}

int wire_msgpack_to_json(const void *p, size_t n, json_t **out)
{
    struct mp_reader r = {.p = p, .n = n, .off = 0};
    json_t *j = NULL;

    TALLY_ASSERT(out != NULL);
    TALLY_ASSERT(p != NULL || n == 0);
    *out = NULL;
    if (mp_value(&r, 0, &j) < 0)
        return -EINVAL;
    if (r.off != n) { /* one value, and nothing after it */
        json_decref(j);
        return -EINVAL;
    }
    *out = j;
    return 0;
}
