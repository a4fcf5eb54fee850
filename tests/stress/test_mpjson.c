/*
 * test_mpjson.c - the msgpack bridge: server maps come out as the compact
 * JSON the json subprotocol sends (keys in order, escapes, numbers of every
 * kind), client JSON packs to MessagePack that reads back the same, and
 * bad or oversized input is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <msgpack.h>

#include "stress/mpjson.h"

struct buf {
    uint8_t b[1024];
    size_t n;
};

static int buf_write(void *data, const char *p, size_t n)
{
    struct buf *b = data;
    if (b->n + n > sizeof(b->b))
        return -1;
    memcpy(b->b + b->n, p, n);
    b->n += n;
    return 0;
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

/* {"type":"results","data":{"poll_id":7,"counts":[1,-2],"ok":true,"x":null,"q":"a\"b\n","f":0.5}}
 */
static void pack_results(struct buf *b)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, buf_write);
    msgpack_pack_map(&pk, 2);
    pack_key(&pk, "type");
    pack_key(&pk, "results");
    pack_key(&pk, "data");
    msgpack_pack_map(&pk, 6);
    pack_key(&pk, "poll_id");
    msgpack_pack_uint64(&pk, 7);
    pack_key(&pk, "counts");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, -2);
    pack_key(&pk, "ok");
    msgpack_pack_true(&pk);
    pack_key(&pk, "x");
    msgpack_pack_nil(&pk);
    pack_key(&pk, "q");
    pack_key(&pk, "a\"b\n");
    pack_key(&pk, "f");
    msgpack_pack_double(&pk, 0.5);
}

static void test_to_json(void **state)
{
    (void)state;
    struct buf b = {.n = 0};
    char out[256];
    pack_results(&b);
    int n = mpjson_to_json(b.b, b.n, out, sizeof(out));
    const char *want =
        "{\"type\":\"results\",\"data\":{\"poll_id\":7,\"counts\":[1,-2],\"ok\":true,"
        "\"x\":null,\"q\":\"a\\\"b\\u000a\",\"f\":0.5}}";
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(out, want);
    /* One byte short of the text and its NUL: refused, not cut. */
    assert_int_equal(mpjson_to_json(b.b, b.n, out, strlen(want)), -ENOSPC);
    /* A truncated message and an empty one are malformed. */
    assert_int_equal(mpjson_to_json(b.b, b.n - 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(mpjson_to_json(b.b, 0, out, sizeof(out)), -EINVAL);
}

static void test_from_json_round_trip(void **state)
{
    (void)state;
    const char *vote = "{\"type\":\"vote\",\"id\":\"b3-17\",\"poll_id\":3,\"choice\":[1]}";
    uint8_t mp[128];
    char back[128];
    int n = mpjson_from_json(vote, strlen(vote), mp, sizeof(mp));
    assert_true(n > 0 && n < (int)strlen(vote)); /* MessagePack is the smaller */
    assert_int_equal(mp[0], 0x84);               /* a fixmap of four entries */
    assert_int_equal(mpjson_to_json(mp, (size_t)n, back, sizeof(back)), (int)strlen(vote));
    assert_string_equal(back, vote);
    assert_int_equal(mpjson_from_json(vote, strlen(vote), mp, 8), -ENOSPC);
    assert_int_equal(mpjson_from_json("{\"type\":", 8, mp, sizeof(mp)), -EINVAL);
}

static void test_unsupported(void **state)
{
    (void)state;
    struct buf b = {.n = 0};
    msgpack_packer pk;
    char out[64];
    msgpack_packer_init(&pk, &b, buf_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, 1); /* a key that is not a string */
    msgpack_pack_int(&pk, 2);
    assert_int_equal(mpjson_to_json(b.b, b.n, out, sizeof(out)), -EINVAL);
    b.n = 0;
    msgpack_pack_bin(&pk, 2);
    msgpack_pack_bin_body(&pk, "ab", 2);
    assert_int_equal(mpjson_to_json(b.b, b.n, out, sizeof(out)), -EINVAL);
    b.n = 0;
    for (int i = 0; i < MPJSON_DEPTH_MAX + 2; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    assert_int_equal(mpjson_to_json(b.b, b.n, out, sizeof(out)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_to_json),
        cmocka_unit_test(test_from_json_round_trip),
        cmocka_unit_test(test_unsupported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
