/*
 * test_hmap.c - the open-addressing map against a reference array: random
 * inserts, replaces and deletes with growth, forced collisions with
 * wrap-around, and the SipHash core against the published test vector.
 *
 * Includes hmap.c to reach hmap_home() and siphash(); hmap.c is therefore
 * not linked a second time (tally_core's copy stays out of the link).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/hmap.c"

#define KEYSPACE 2000
#define RANDOM_OPS 300000

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Every slot's key sits between its home and the first empty slot after it. */
static void check_probe_invariant(const struct hmap *h)
{
    size_t mask = h->cap - 1, n = 0;
    for (size_t i = 0; i < h->cap; i++) {
        if (h->slots[i].key == 0)
            continue;
        n++;
        for (size_t j = hmap_home(h, h->slots[i].key); j != i; j = (j + 1) & mask)
            assert_true(h->slots[j].key != 0);
    }
    assert_int_equal(n, h->count);
    assert_true(h->count * 10 <= h->cap * 7); /* never above 70% */
}

struct each_acc {
    void **ref;
    size_t seen;
};

static void each_check(uint64_t key, void *val, void *arg)
{
    struct each_acc *acc = arg;
    assert_true(key >= 1 && key <= KEYSPACE);
    assert_ptr_equal(acc->ref[key - 1], val);
    acc->seen++;
}

static void test_random_against_reference(void **state)
{
    (void)state;
    static void *ref[KEYSPACE];
    static char vals[KEYSPACE];
    size_t ref_count = 0;
    struct hmap *h = hmap_create(0);

    for (int op = 0; op < RANDOM_OPS; op++) {
        /* Early on mostly inserts (growth), later a churn of both. */
        uint64_t key = 1 + rng() % KEYSPACE;
        uint64_t r = rng() % 100;
        unsigned put_pct = op < RANDOM_OPS / 3 ? 70 : 50;
        if (r < put_pct) {
            void *val = &vals[(key + (uint64_t)op) % KEYSPACE];
            if (ref[key - 1] == NULL)
                ref_count++;
            ref[key - 1] = val;
            hmap_put(h, key, val);
        } else {
            void *got = hmap_del(h, key);
            assert_ptr_equal(got, ref[key - 1]);
            if (ref[key - 1] != NULL)
                ref_count--;
            ref[key - 1] = NULL;
        }
        assert_int_equal(hmap_count(h), ref_count);
        uint64_t probe = 1 + rng() % KEYSPACE;
        assert_ptr_equal(hmap_get(h, probe), ref[probe - 1]);
        if (op % 10000 == 0)
            check_probe_invariant(h);
    }
    for (uint64_t k = 1; k <= KEYSPACE; k++)
        assert_ptr_equal(hmap_get(h, k), ref[k - 1]);
    struct each_acc acc = {ref, 0};
    hmap_each(h, each_check, &acc);
    assert_int_equal(acc.seen, ref_count);
    check_probe_invariant(h);
    hmap_destroy(h);
}

/* Keys whose home slot in an 8-slot map is `home`. */
static size_t keys_with_home(const struct hmap *h, size_t home, uint64_t *out, size_t n)
{
    size_t found = 0;
    for (uint64_t k = 1; found < n; k++) {
        if (hmap_home(h, k) == home)
            out[found++] = k;
    }
    return found;
}

static void test_collisions_wrap_and_backward_shift(void **state)
{
    (void)state;
    struct hmap *h = hmap_create(0);
    assert_int_equal(h->cap, 8);
    int v[8];

    /* Five keys all homed in the last slot: the run wraps to slots 0..3. */
    uint64_t same[5];
    keys_with_home(h, 7, same, 5);
    for (int i = 0; i < 5; i++)
        hmap_put(h, same[i], &v[i]);
    assert_int_equal(h->cap, 8); /* 5 of 8 is under 70%: no growth yet */
    check_probe_invariant(h);

    /* Deleting from the middle of the run must shift the rest back. */
    assert_ptr_equal(hmap_del(h, same[1]), &v[1]);
    check_probe_invariant(h);
    for (int i = 0; i < 5; i++)
        assert_ptr_equal(hmap_get(h, same[i]), i == 1 ? NULL : &v[i]);
    assert_ptr_equal(hmap_del(h, same[0]), &v[0]);
    check_probe_invariant(h);
    assert_null(hmap_del(h, same[0]));
    assert_int_equal(hmap_count(h), 3);

    /* A key homed in slot 0 lands after the wrapped run; deleting the run
     * ahead of it must not strand it. */
    uint64_t zero;
    keys_with_home(h, 0, &zero, 1);
    hmap_put(h, zero, &v[5]);
    check_probe_invariant(h);
    assert_ptr_equal(hmap_del(h, same[2]), &v[2]);
    assert_ptr_equal(hmap_del(h, same[3]), &v[3]);
    check_probe_invariant(h);
    assert_ptr_equal(hmap_get(h, zero), &v[5]);
    assert_ptr_equal(hmap_get(h, same[4]), &v[4]);

    /* Replace keeps the count. */
    hmap_put(h, zero, &v[6]);
    assert_int_equal(hmap_count(h), 2);
    assert_ptr_equal(hmap_get(h, zero), &v[6]);
    hmap_destroy(h);
}

static void test_growth_boundary(void **state)
{
    (void)state;
    struct hmap *h = hmap_create(0);
    int v;
    for (uint64_t k = 1; k <= 5; k++)
        hmap_put(h, k, &v);
    assert_int_equal(h->cap, 8); /* 5/8 = 62.5% */
    hmap_put(h, 6, &v);
    assert_int_equal(h->cap, 16); /* 6/8 = 75% would cross 70% */
    hmap_put(h, 6, NULL); /* a replace never grows */
    assert_int_equal(h->cap, 16);
    for (uint64_t k = 1; k <= 6; k++)
        assert_ptr_equal(hmap_get(h, k), k == 6 ? NULL : &v);
    hmap_destroy(h);

    /* cap_hint sizes the table so that many fit without growth. */
    h = hmap_create(1000);
    size_t cap = h->cap;
    for (uint64_t k = 1; k <= 1000; k++)
        hmap_put(h, k, &v);
    assert_int_equal(h->cap, cap);
    assert_int_equal(hmap_count(h), 1000);
    hmap_destroy(h);
}

static void test_zero_key_and_empty(void **state)
{
    (void)state;
    struct hmap *h = hmap_create(3);
    assert_null(hmap_get(h, 0));
    assert_null(hmap_del(h, 0));
    assert_null(hmap_get(h, 12345));
    assert_null(hmap_del(h, 12345));
    assert_int_equal(hmap_count(h), 0);
    hmap_destroy(h);
    hmap_destroy(NULL);
}

static void test_hash_bytes(void **state)
{
    (void)state;
    /* SipHash-2-4 reference vectors (key 00..0f): the core is the published one. */
    const uint64_t key[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    unsigned char msg[15];
    for (int i = 0; i < 15; i++)
        msg[i] = (unsigned char)i;
    assert_true(siphash(key, msg, 15, 2, 4) == 0xa129ca6149be45e5ULL);
    assert_true(siphash(key, msg, 0, 2, 4) == 0x726fdb47dd0e0e31ULL);

    /* Stable within the process, sensitive to every byte and to length. */
    uint64_t a = hmap_hash_bytes("K7QX2M", 6);
    assert_true(a != 0);
    assert_true(a == hmap_hash_bytes("K7QX2M", 6));
    assert_true(a != hmap_hash_bytes("K7QX2N", 6));
    assert_true(a != hmap_hash_bytes("K7QX2M", 5));
    assert_true(hmap_hash_bytes(NULL, 0) == hmap_hash_bytes("", 0));
    assert_true(hmap_hash_bytes("", 0) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_collisions_wrap_and_backward_shift),
        cmocka_unit_test(test_growth_boundary),
        cmocka_unit_test(test_zero_key_and_empty),
        cmocka_unit_test(test_hash_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
