/*
 * track.c - see track.h.
 */
#include "stress/track.h"

#include <string.h>

/* The first "key": in msg; returns the byte after the colon, or NULL. */
static const uint8_t *find_key(const uint8_t *msg, size_t len, const char *key)
{
    char pat[TRACK_TYPE_MAX + 4];
    size_t klen = strlen(key);
    if (klen + 3 > sizeof(pat))
        return NULL;
    pat[0] = '"';
    memcpy(pat + 1, key, klen);
    pat[klen + 1] = '"';
    pat[klen + 2] = ':';
    const uint8_t *p = memmem(msg, len, pat, klen + 3);
    return p ? p + klen + 3 : NULL;
}

int track_msg_type(const uint8_t *msg, size_t len, char *out, size_t cap)
{
    const uint8_t *p = find_key(msg, len, "type");
    const uint8_t *end = msg + len;
    if (p == NULL || p >= end || *p != '"' || cap == 0)
        return -1;
    p++;
    size_t n = 0;
    while (p + n < end && p[n] != '"') {
        if (n + 1 >= cap)
            return -1;
        n++;
    }
    if (p + n >= end)
        return -1; /* no closing quote */
    memcpy(out, p, n);
    out[n] = '\0';
    return (int)n;
}

bool track_msg_u64(const uint8_t *msg, size_t len, const char *key, uint64_t *out)
{
    const uint8_t *p = find_key(msg, len, key);
    const uint8_t *end = msg + len;
    if (p == NULL || p >= end || *p < '0' || *p > '9')
        return false;
    uint64_t x = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (x > (UINT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *out = x;
    return true;
}

bool track_msg_is(const uint8_t *msg, size_t len, const char *type)
{
    char t[TRACK_TYPE_MAX];
    return track_msg_type(msg, len, t, sizeof(t)) >= 0 && strcmp(t, type) == 0;
}

void track_seq_init(struct track_seq *s, uint64_t from)
{
    s->last = from;
    s->gaps = 0;
    s->dups = 0;
}

bool track_seq_see(struct track_seq *s, uint64_t seq)
{
    if (seq <= s->last) {
        s->dups++;
        return false;
    }
    bool next = seq == s->last + 1;
    s->gaps += seq - s->last - 1;
    s->last = seq;
    return next;
}

uint64_t track_spread_due(uint64_t t0_ns, uint64_t window_ns, uint64_t index, uint64_t n)
{
    if (n == 0)
        return t0_ns;
    /* 128-bit product: window (ns) times index overflows 64 bits past ~18 s x 1e9. */
    return t0_ns + (uint64_t)((unsigned __int128)window_ns * index / n);
}

uint64_t track_sample_version(uint64_t last_seen, uint64_t version, uint64_t rnd)
{
    if (version <= last_seen)
        return version;
    return last_seen + 1 + rnd % (version - last_seen);
}

uint64_t track_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

bool track_step_passes(const struct track_limits *l, double p95_ms, double error_rate,
                       uint64_t delivered)
{
    return delivered > 0 && p95_ms <= l->p95_ms && error_rate <= l->error_rate;
}

uint32_t track_next_n(uint32_t current, uint32_t step, uint32_t factor_pct, uint32_t max)
{
    if (current >= max)
        return 0;
    uint64_t next = step > 0 ? (uint64_t)current + step : (uint64_t)current * factor_pct / 100;
    if (next <= current)
        next = (uint64_t)current + 1;
    return next > max ? max : (uint32_t)next;
}
