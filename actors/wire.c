/*
 * wire.c - see wire.h. Server frames are never masked (RFC 6455 5.1) and
 * always final: Tally's messages are small enough to go in one frame.
 */
#include "actors/wire.h"

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
