/*
 * test_wsc.c - the load generator's WebSocket client codec: the RFC 6455
 * accept value, the 101 check, masked client frames, server frame parsing at
 * every length encoding and when split.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "stress/wsc.h"

static void test_accept_rfc_example(void **state)
{
    char accept[WSC_ACCEPT_CHARS + 1];
    (void)state;
    wsc_accept_compute("dGhlIHNhbXBsZSBub25jZQ==", accept);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); /* RFC 6455 section 1.3 */
}

static void test_key_shape(void **state)
{
    char a[WSC_KEY_CHARS + 1], b[WSC_KEY_CHARS + 1];
    (void)state;
    wsc_key_make(a);
    wsc_key_make(b);
    assert_int_equal(strlen(a), WSC_KEY_CHARS);
    assert_true(a[22] == '=' && a[23] == '=');
    assert_string_not_equal(a, b);
}

static void test_response_check(void **state)
{
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    char ok[256], bad[256];
    size_t head = 0;
    (void)state;
    size_t n = (size_t)snprintf(ok, sizeof(ok),
                                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
    ok[n] = (char)0x81; /* a frame right behind the head */
    ok[n + 1] = 0x00;
    assert_int_equal(wsc_response_check(ok, n + 2, key, &head), WSC_OK);
    assert_int_equal(head, n); /* the frame after the head is not consumed */
    assert_int_equal(wsc_response_check(ok, 40, key, &head), WSC_AGAIN);
    snprintf(bad, sizeof(bad),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n");
    assert_int_equal(wsc_response_check(bad, strlen(bad), key, &head), WSC_BAD);
    snprintf(bad, sizeof(bad), "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(wsc_response_check(bad, strlen(bad), key, &head), WSC_BAD);
}

static void test_client_frame_masked(void **state)
{
    uint8_t out[64];
    const char *msg = "{\"type\":\"vote\"}";
    uint32_t mask = 0x11223344;
    (void)state;
    int n = wsc_frame_build(out, sizeof(out), WSC_OP_TEXT, msg, strlen(msg), mask);
    assert_int_equal(n, 2 + 4 + (int)strlen(msg));
    assert_int_equal(out[0], 0x81);                       /* FIN + text */
    assert_int_equal(out[1], 0x80 | (uint8_t)strlen(msg)); /* masked, short length */
    for (size_t i = 0; i < strlen(msg); i++)
        assert_int_equal(out[6 + i] ^ out[2 + i % 4], (uint8_t)msg[i]);
    assert_int_equal(wsc_frame_build(out, 8, WSC_OP_TEXT, msg, strlen(msg), mask), -ENOSPC);
}

/* A server frame of len payload bytes, header in the shortest form. */
static size_t server_frame(uint8_t *out, uint8_t op, size_t len)
{
    size_t h = 2;
    out[0] = 0x80 | op;
    if (len < 126) {
        out[1] = (uint8_t)len;
    } else if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        h = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        h = 10;
    }
    memset(out + h, 'x', len);
    return h + len;
}

static void test_server_frames_every_length(void **state)
{
    static uint8_t buf[WSC_PAYLOAD_MAX + 16];
    const size_t lens[] = {0, 1, 125, 126, 127, 65535, WSC_PAYLOAD_MAX};
    struct wsc_frame f;
    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = server_frame(buf, WSC_OP_TEXT, lens[i]);
        assert_int_equal(wsc_frame_parse(buf, n, &f), WSC_OK);
        assert_int_equal(f.payload_len, lens[i]);
        assert_int_equal(f.frame_len, n);
        assert_true(f.fin);
        assert_int_equal(f.opcode, WSC_OP_TEXT);
        /* Any prefix is incomplete. */
        assert_int_equal(wsc_frame_parse(buf, n - 1, &f), WSC_AGAIN);
        assert_int_equal(wsc_frame_parse(buf, 1, &f), WSC_AGAIN);
    }
}

static void test_server_frame_bad(void **state)
{
    uint8_t masked[] = {0x81, 0x81, 1, 2, 3, 4, 'x'};
    static uint8_t big[WSC_PAYLOAD_MAX + 16];
    struct wsc_frame f;
    (void)state;
    assert_int_equal(wsc_frame_parse(masked, sizeof(masked), &f), WSC_BAD);
    size_t n = server_frame(big, WSC_OP_BINARY, WSC_PAYLOAD_MAX + 1);
    assert_int_equal(wsc_frame_parse(big, n, &f), WSC_BAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_rfc_example),
        cmocka_unit_test(test_key_shape),
        cmocka_unit_test(test_response_check),
        cmocka_unit_test(test_client_frame_masked),
        cmocka_unit_test(test_server_frames_every_length),
        cmocka_unit_test(test_server_frame_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
