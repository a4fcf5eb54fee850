/*
 * test_wire.c - message encodings (actors/wire.c) and stream messages
 * (actors/stream.c). The MessagePack side is checked against msgpack-c's own
 * packer and unpacker, an independent implementation of the format.
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

#include <jansson.h>
#include <msgpack.h>

#include "actors/stream.h"
#include "actors/wire.h"
#include "core/buf.h"
#include "core/rbuf.h"
#include "tests/actors/mp_json.h"

/* ---- helpers ---- */


/* Unpacks exactly one value filling p[0..n) with msgpack-c, as JSON. */
static json_t *unpack_json(const void *p, size_t n)
{
    msgpack_unpacked u;
    size_t off = 0;
    json_t *j;

    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, p, n, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, n);
    j = obj_to_json(&u.data);
    msgpack_unpacked_destroy(&u);
    assert_non_null(j);
    return j;
}

/* The first key of a msgpack map, for order checks. */
static void map_keys(const void *p, size_t n, char *out, size_t out_len)
{
    msgpack_unpacked u;
    size_t off = 0, used = 0;

    out[0] = '\0';
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, p, n, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object_str *k = &u.data.via.map.ptr[i].key.via.str;

        used += (size_t)snprintf(out + used, out_len - used, "%s%.*s", i ? "," : "", (int)k->size,
                                 k->ptr);
    }
    msgpack_unpacked_destroy(&u);
}

/* A WebSocket frame's payload: checks the header and returns the payload's offset. */
static size_t ws_payload(const uint8_t *f, size_t n, uint8_t opcode, size_t *len)
{
    size_t hl;

    assert_true(n >= 2);
    assert_int_equal(f[0], 0x80 | opcode); /* FIN, no RSV bits */
    assert_int_equal(f[1] & 0x80, 0);      /* server frames are unmasked */
    if ((f[1] & 0x7F) < 126) {
        *len = f[1] & 0x7F;
        hl = 2;
    } else if ((f[1] & 0x7F) == 126) {
        *len = (size_t)f[2] << 8 | f[3];
        hl = 4;
        assert_true(*len >= 126);
    } else {
        *len = 0;
        for (int i = 0; i < 8; i++)
            *len = *len << 8 | f[2 + i];
        hl = 10;
        assert_true(*len > 0xFFFF);
    }
    assert_int_equal(hl + *len, n);
    return hl;
}

static json_t *data_sample(void)
{
    return json_pack("{s:I,s:[i,i,i],s:s,s:b,s:n,s:f}", "poll_id", (json_int_t)12, "counts", 3,
                     0, 7, "question", "Qui? \xc3\xa9t\xc3\xa9 \"x\"\n", "open", 1, "none", "r",
                     0.5);
}

/* ---- tests ---- */

static void test_msg_json(void **state)
{
    json_t *d = data_sample();
    json_t *m;
    char *text;

    (void)state;
    m = wire_msg_json("poll.opened", 3, d);
    assert_int_equal(d->refcount, 2); /* borrowed: the message took its own reference */
    text = json_dumps(m, JSON_COMPACT);
    assert_non_null(strstr(text, "{\"type\":\"poll.opened\",\"seq\":3,\"data\":{\"poll_id\":12,"));
    free(text);
    json_decref(m);
    m = wire_msg_json("results", 0, d);
    assert_null(json_object_get(m, "seq"));
    assert_int_equal(json_object_size(m), 2);
    json_decref(m);
    assert_int_equal(d->refcount, 1);
    json_decref(d);
}

static void test_ws_json_and_sse(void **state)
{
    json_t *d = json_pack("{s:i}", "participants", 4);
    struct buf b = BUF_INIT;
    size_t len, hl;

    (void)state;
    wire_msg_append(&b, STREAM_WS_JSON, "presence", 0, d);
    hl = ws_payload((const uint8_t *)b.data, b.len, WS_OP_TEXT, &len);
    assert_int_equal(hl, 2);
    assert_int_equal(len, strlen("{\"type\":\"presence\",\"data\":{\"participants\":4}}"));
    assert_memory_equal(b.data + hl, "{\"type\":\"presence\",\"data\":{\"participants\":4}}", len);
    buf_reset(&b);

    wire_msg_append(&b, STREAM_SSE, "presence", 0, d);
    assert_string_equal(b.data, "event: presence\n"
                                "data: {\"type\":\"presence\",\"data\":{\"participants\":4}}\n\n");
    buf_reset(&b);
    wire_msg_append(&b, STREAM_SSE, "session.closed", 42, d);
    assert_string_equal(b.data,
                        "event: session.closed\nid: 42\n"
                        "data: {\"type\":\"session.closed\",\"seq\":42,\"data\":{\"participants\":4}}"
                        "\n\n");
    buf_reset(&b);
    /* Newlines inside strings stay escaped: an SSE data line is one line. */
    json_object_set_new(d, "note", json_string("a\nb\r\n"));
    wire_msg_append(&b, STREAM_SSE, "presence", 7, d);
    assert_int_equal(strchr(b.data + strlen("event: presence\nid: 7\ndata: "), '\n') -
                         b.data,
                     (long)b.len - 2);
    buf_free(&b);
    json_decref(d);
}

/* Frame lengths at the 125/126 and 65535/65536 boundaries of the header. */
static void test_ws_lengths(void **state)
{
    static const size_t payloads[] = {125, 126, 65535, 65536, 200000};
    /* {"type":"t","data":{"s":"..."}} around a string of n bytes */
    const size_t overhead = strlen("{\"type\":\"t\",\"data\":{\"s\":\"\"}}");

    (void)state;
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        size_t want = payloads[i], len, hl;
        char *s = malloc(want - overhead + 1);
        struct buf b = BUF_INIT;
        json_t *d;

        memset(s, 'x', want - overhead);
        s[want - overhead] = '\0';
        d = json_pack("{s:s}", "s", s);
        wire_msg_append(&b, STREAM_WS_JSON, "t", 0, d);
        hl = ws_payload((const uint8_t *)b.data, b.len, WS_OP_TEXT, &len);
        assert_int_equal(len, want);
        assert_int_equal(hl, want < 126 ? 2 : want <= 0xFFFF ? 4 : 10);
        buf_free(&b);
        json_decref(d);
        free(s);
    }
}

static void test_msgpack_frame(void **state)
{
    json_t *d = data_sample();
    json_t *m = wire_msg_json("poll.closed", 9, d);
    struct buf b = BUF_INIT;
    char keys[128];
    size_t len, hl;
    json_t *back;

    (void)state;
    wire_msg_append(&b, STREAM_WS_MSGPACK, "poll.closed", 9, d);
    hl = ws_payload((const uint8_t *)b.data, b.len, WS_OP_BINARY, &len);
    back = unpack_json(b.data + hl, len);
    assert_true(json_equal(back, m));
    map_keys(b.data + hl, len, keys, sizeof(keys));
    assert_string_equal(keys, "type,seq,data"); /* the JSON object's order */
    json_decref(back);
    /* Our own decoder agrees. */
    assert_int_equal(wire_msgpack_to_json(b.data + hl, len, &back), 0);
    assert_true(json_equal(back, m));
    json_decref(back);
    buf_free(&b);
    json_decref(m);
    json_decref(d);
}

/* wire_msg_encode gives, in one go, the bytes wire_msg_append gives per format. */
static void test_encode_all(void **state)
{
    json_t *d = data_sample();
    struct rbuf *out[STREAM_FMT_COUNT];

    (void)state;
    wire_msg_encode("poll.created", 1, d, out);
    for (int f = 0; f < STREAM_FMT_COUNT; f++) {
        struct buf b = BUF_INIT;

        wire_msg_append(&b, (enum stream_fmt)f, "poll.created", 1, d);
        assert_int_equal(out[f]->len, b.len);
        assert_memory_equal(out[f]->data, b.data, b.len);
        assert_int_equal(out[f]->data[out[f]->len], '\0');
        assert_int_equal(atomic_load(&out[f]->_refs), 1);
        buf_free(&b);
        rbuf_unref(out[f]);
    }
    assert_int_equal(d->refcount, 1);
    json_decref(d);
}

/* A json value -> msgpack -> (msgpack-c and ours) -> the same json. */
static void roundtrip(json_t *j)
{
    struct buf b = BUF_INIT;
    json_t *back;

    assert_int_equal(wire_json_to_msgpack(j, &b), 0);
    back = unpack_json(b.data, b.len);
    assert_true(json_equal(back, j));
    json_decref(back);
    assert_int_equal(wire_msgpack_to_json(b.data, b.len, &back), 0);
    assert_true(json_equal(back, j));
    assert_int_equal(json_typeof(back), json_typeof(j));
    json_decref(back);
    buf_free(&b);
    json_decref(j);
}

/* Nested arrays n deep around a 1. */
static json_t *nested(int n)
{
    json_t *j = json_integer(1);

    for (int i = 0; i < n; i++) {
        json_t *a = json_array();

        json_array_append_new(a, j);
        j = a;
    }
    return j;
}

static void test_json_to_msgpack(void **state)
{
    static const json_int_t ints[] = {0,      1,           127,         128,        255,
                                      256,    65535,       65536,       -1,         -32,
                                      -33,    -128,        -129,        -32768,     -32769,
                                      INT32_MAX, INT32_MIN, (json_int_t)INT32_MAX + 1,
                                      INT64_MAX, INT64_MIN};
    static const size_t strs[] = {0, 31, 32, 255, 256, 65535, 65536};
    struct buf b = BUF_INIT;
    json_t *j;

    (void)state;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        roundtrip(json_integer(ints[i]));
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        char *s = malloc(strs[i] + 1);

        memset(s, 'a' + (int)i, strs[i]);
        s[strs[i]] = '\0';
        roundtrip(json_string(s));
        free(s);
    }
    roundtrip(json_real(0.1));
    roundtrip(json_real(-1e300));
    roundtrip(json_true());
    roundtrip(json_false());
    roundtrip(json_null());
    roundtrip(json_array());
    roundtrip(json_object());
    roundtrip(json_pack("{s:[{s:s},[]],s:{}}", "a", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "z"));
    {
        json_t *big = json_object(); /* map 16 and array 16 */
        json_t *arr = json_array();

        for (int i = 0; i < 70000; i++)
            json_array_append_new(arr, json_integer(i));
        for (int i = 0; i < 20; i++) {
            char k[8];

            snprintf(k, sizeof(k), "k%d", i);
            json_object_set_new(big, k, json_integer(i));
        }
        json_object_set_new(big, "arr", arr);
        roundtrip(big);
    }
    /* Depth: exactly WIRE_DEPTH_MAX nested containers pass, one more fails and leaves b as it was. */
    roundtrip(nested(WIRE_DEPTH_MAX));
    buf_append_str(&b, "keep");
    j = nested(WIRE_DEPTH_MAX + 1);
    assert_int_equal(wire_json_to_msgpack(j, &b), -EINVAL);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    json_decref(j);
    buf_free(&b);
}

/* Bytes packed by msgpack-c, for the decoder. */
struct packed {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void packed_init(struct packed *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

/* Asserts the decoder refuses p's bytes, and leaves *out NULL. */
static void expect_einval(const void *p, size_t n)
{
    json_t *j = json_true();

    assert_int_equal(wire_msgpack_to_json(p, n, &j), -EINVAL);
    assert_null(j);
}

static void expect_packed_einval(struct packed *p)
{
    expect_einval(p->sb.data, p->sb.size);
    msgpack_sbuffer_destroy(&p->sb);
}

/* A vote as a msgpack client sends it decodes to the JSON the WebSocket would carry. */
static void test_msgpack_vote(void **state)
{
    struct packed p;
    json_t *j, *want;

    (void)state;
    packed_init(&p);
    msgpack_pack_map(&p.pk, 4);
    msgpack_pack_str_with_body(&p.pk, "type", 4);
    msgpack_pack_str_with_body(&p.pk, "vote", 4);
    msgpack_pack_str_with_body(&p.pk, "id", 2);
    msgpack_pack_str_with_body(&p.pk, "k-1", 3);
    msgpack_pack_str_with_body(&p.pk, "poll_id", 7);
    msgpack_pack_uint8(&p.pk, 200); /* uint 8 */
    msgpack_pack_str_with_body(&p.pk, "choice", 6);
    msgpack_pack_array(&p.pk, 2);
    msgpack_pack_fix_uint16(&p.pk, 2); /* a needlessly wide uint 16 is still 2 */
    msgpack_pack_fix_int64(&p.pk, 0);
    assert_int_equal(wire_msgpack_to_json(p.sb.data, p.sb.size, &j), 0);
    want = json_loads("{\"type\":\"vote\",\"id\":\"k-1\",\"poll_id\":200,\"choice\":[2,0]}", 0, NULL);
    assert_true(json_equal(j, want));
    json_decref(j);
    json_decref(want);
    msgpack_sbuffer_destroy(&p.sb);

    /* Every integer width, signed and not; float 32. */
    packed_init(&p);
    msgpack_pack_array(&p.pk, 9);
    msgpack_pack_fix_int8(&p.pk, -5);
    msgpack_pack_fix_int16(&p.pk, -300);
    msgpack_pack_fix_int32(&p.pk, -70000);
    msgpack_pack_fix_int64(&p.pk, INT64_MIN);
    msgpack_pack_fix_uint32(&p.pk, UINT32_MAX);
    msgpack_pack_fix_uint64(&p.pk, INT64_MAX);
    msgpack_pack_float(&p.pk, 1.5f);
    msgpack_pack_int(&p.pk, -1);
    msgpack_pack_int(&p.pk, 127);
    assert_int_equal(wire_msgpack_to_json(p.sb.data, p.sb.size, &j), 0);
    want = json_pack("[I,I,I,I,I,I,f,I,I]", (json_int_t)-5, (json_int_t)-300, (json_int_t)-70000,
                     (json_int_t)INT64_MIN, (json_int_t)UINT32_MAX, (json_int_t)INT64_MAX, 1.5,
                     (json_int_t)-1, (json_int_t)127);
    assert_true(json_equal(j, want));
    json_decref(j);
    json_decref(want);
    msgpack_sbuffer_destroy(&p.sb);
}

static void test_msgpack_malformed(void **state)
{
    static const uint8_t never_used[] = {0xC1};
    static const uint8_t huge_array[] = {0xDD, 0x0F, 0xFF, 0xFF, 0xFF};
    static const uint8_t huge_map[] = {0xDF, 0xFF, 0xFF, 0xFF, 0xFF};
    static const uint8_t huge_str[] = {0xDB, 0xFF, 0xFF, 0xFF, 0xF0, 'a'};
    static const uint8_t two_values[] = {0x01, 0x02};
    static const uint8_t bad_utf8[] = {0xA2, 0xC3, 0x28};
    static const uint8_t nul_str[] = {0xA3, 'a', 0, 'b'};
    static const uint8_t nul_key[] = {0x81, 0xA2, 'a', 0, 0x01};
    static const uint8_t int_key[] = {0x81, 0x01, 0x01};
    static const uint8_t dup_key[] = {0x82, 0xA1, 'a', 0x01, 0xA1, 'a', 0x02};
    static const uint8_t array_short[] = {0x93, 0x01, 0x02};
    static const uint8_t bin[] = {0xC4, 0x01, 0x00};
    static const uint8_t fixext[] = {0xD4, 0x01, 0x00};
    static const uint8_t big_uint[] = {0xCF, 0x80, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t nan64[] = {0xCB, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0};
    static const uint8_t inf32[] = {0xCA, 0x7F, 0x80, 0, 0};
    struct packed p;
    json_t *j;
    uint8_t deep[WIRE_DEPTH_MAX + 2];

    (void)state;
    expect_einval(NULL, 0);
    expect_einval(never_used, sizeof(never_used));
    expect_einval(huge_array, sizeof(huge_array));
    expect_einval(huge_map, sizeof(huge_map));
    expect_einval(huge_str, sizeof(huge_str));
    expect_einval(two_values, sizeof(two_values));
    expect_einval(bad_utf8, sizeof(bad_utf8));
    expect_einval(nul_str, sizeof(nul_str));
    expect_einval(nul_key, sizeof(nul_key));
    expect_einval(int_key, sizeof(int_key));
    expect_einval(dup_key, sizeof(dup_key));
    expect_einval(array_short, sizeof(array_short));
    expect_einval(bin, sizeof(bin));
    expect_einval(fixext, sizeof(fixext));
    expect_einval(big_uint, sizeof(big_uint));
    expect_einval(nan64, sizeof(nan64));
    expect_einval(inf32, sizeof(inf32));
    packed_init(&p);
    msgpack_pack_ext_with_body(&p.pk, "abc", 3, 5);
    expect_packed_einval(&p);
    packed_init(&p);
    msgpack_pack_map(&p.pk, 1);
    msgpack_pack_bin_with_body(&p.pk, "k", 1); /* a bin key is not a str key */
    msgpack_pack_int(&p.pk, 1);
    expect_packed_einval(&p);

    /* Depth: 16 nested fixarrays around nil pass, 17 do not. */
    memset(deep, 0x91, sizeof(deep));
    deep[WIRE_DEPTH_MAX] = 0xC0;
    assert_int_equal(wire_msgpack_to_json(deep, WIRE_DEPTH_MAX + 1, &j), 0);
    json_decref(j);
    deep[WIRE_DEPTH_MAX] = 0x91;
    deep[WIRE_DEPTH_MAX + 1] = 0xC0;
    expect_einval(deep, WIRE_DEPTH_MAX + 2);

    /* Every strict prefix of a valid message is refused. */
    packed_init(&p);
    msgpack_pack_map(&p.pk, 2);
    msgpack_pack_str_with_body(&p.pk, "choice", 6);
    msgpack_pack_array(&p.pk, 2);
    msgpack_pack_uint64(&p.pk, 70000);
    msgpack_pack_double(&p.pk, 2.25);
    msgpack_pack_str_with_body(&p.pk, "id", 2);
    msgpack_pack_str(&p.pk, 300);
    for (int i = 0; i < 300; i++)
        msgpack_pack_str_body(&p.pk, "z", 1);
    for (size_t n = 0; n < p.sb.size; n++)
        expect_einval(p.sb.data, n);
    assert_int_equal(wire_msgpack_to_json(p.sb.data, p.sb.size, &j), 0);
    assert_int_equal(json_string_length(json_object_get(j, "id")), 300);
    json_decref(j);
    msgpack_sbuffer_destroy(&p.sb);
}

static void test_stream_msg_refs(void **state)
{
    struct stream_msg *m = stream_msg_new(STREAM_RESULTS, 7);

    (void)state;
    assert_int_equal(atomic_load(&m->_refs), 1);
    assert_int_equal(m->kind, STREAM_RESULTS);
    assert_int_equal(m->session_id, 7);
    assert_int_equal(m->seq, 0);
    assert_false(m->session_closed);
    for (int f = 0; f < STREAM_FMT_COUNT; f++)
        assert_null(m->bytes[f]);
    m->bytes[STREAM_SSE] = rbuf_new("x", 1);
    assert_ptr_equal(stream_msg_ref(m), m);
    assert_int_equal(atomic_load(&m->_refs), 2);
    stream_msg_unref(m);
    assert_int_equal(atomic_load(&m->_refs), 1);
    stream_msg_unref(m); /* frees m and its rbuf: ASan reports a leak otherwise */
    stream_msg_unref(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_json),        cmocka_unit_test(test_ws_json_and_sse),
        cmocka_unit_test(test_ws_lengths),      cmocka_unit_test(test_msgpack_frame),
        cmocka_unit_test(test_encode_all),      cmocka_unit_test(test_json_to_msgpack),
        cmocka_unit_test(test_msgpack_vote),    cmocka_unit_test(test_msgpack_malformed),
        cmocka_unit_test(test_stream_msg_refs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
