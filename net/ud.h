/*
 * ud.h - the tagged io_uring user_data of the network threads.
 *
 *   bits 63..60  op    (4 bits)  what completed
 *   bits 59..48  gen   (12 bits) generation of the connection slot
 *   bits 47..16  slot  (32 bits) connection slot = direct descriptor index
 *   bits 15..0   aux   (16 bits) op-specific (accept slot)
 *
 * A connection slot is reused after its close completes; the generation is
 * bumped then, so a late completion for the previous connection in that slot
 * is recognised, counted and dropped instead of being applied to the new one.
 */
#ifndef TALLY_NET_UD_H
#define TALLY_NET_UD_H

#include <assert.h>
#include <stdint.h>

enum ud_op {
    UD_OP_NONE = 0, /* never submitted: catches zeroed user_data */
    UD_OP_ACCEPT,
    UD_OP_RECV,
    UD_OP_SEND,
    UD_OP_CANCEL,
    UD_OP_CLOSE,
    UD_OP_WAKE, /* the thread's mailbox eventfd became readable */
    UD_OP_TICK, /* the periodic timeout that drives connection timers */
    UD_OP_RING, /* another ring of the same worker has completions (aux: ring) */
    UD_OP_COUNT
};

#define UD_OP_BITS 4
#define UD_GEN_BITS 12
#define UD_SLOT_BITS 32
#define UD_AUX_BITS 16

#define UD_AUX_SHIFT 0
#define UD_SLOT_SHIFT (UD_AUX_SHIFT + UD_AUX_BITS)
#define UD_GEN_SHIFT (UD_SLOT_SHIFT + UD_SLOT_BITS)
#define UD_OP_SHIFT (UD_GEN_SHIFT + UD_GEN_BITS)

#define UD_GEN_MASK ((1u << UD_GEN_BITS) - 1)

static_assert(UD_OP_SHIFT + UD_OP_BITS == 64, "user_data fields must fill 64 bits exactly");
static_assert(UD_OP_COUNT <= (1u << UD_OP_BITS), "ops must fit in the op field");

static inline uint64_t ud_pack(enum ud_op op, uint32_t gen, uint32_t slot, uint32_t aux)
{
    return ((uint64_t)op << UD_OP_SHIFT) | ((uint64_t)(gen & UD_GEN_MASK) << UD_GEN_SHIFT) |
           ((uint64_t)slot << UD_SLOT_SHIFT) | ((uint64_t)(aux & 0xffffu) << UD_AUX_SHIFT);
}

static inline enum ud_op ud_op(uint64_t ud)
{
    return (enum ud_op)(ud >> UD_OP_SHIFT);
}

static inline uint32_t ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> UD_GEN_SHIFT) & UD_GEN_MASK;
}

static inline uint32_t ud_slot(uint64_t ud)
{
    return (uint32_t)(ud >> UD_SLOT_SHIFT);
}

static inline uint32_t ud_aux(uint64_t ud)
{
    return (uint32_t)(ud & 0xffffu);
}

#endif
