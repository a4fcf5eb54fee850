/*
 * hmap.h - an open-addressing hash map from a non-zero uint64_t key to a
 * pointer. Owner thread only. Grows at 70% load; deletion uses backward shift,
 * so there are no tombstones. Keys of strings are hashed by the caller
 * (hmap_hash_bytes) and the value keeps the full string to compare.
 */
#ifndef TALLY_CORE_HMAP_H
#define TALLY_CORE_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hmap;

/** Creates a map sized to hold cap_hint entries without growing. */
struct hmap *hmap_create(size_t cap_hint);
/** Frees the map (not the values). NULL is ignored. */
void hmap_destroy(struct hmap *h);
/** Inserts or replaces; key must not be 0. */
void hmap_put(struct hmap *h, uint64_t key, void *val);
/** The value or NULL. */
void *hmap_get(const struct hmap *h, uint64_t key);
/** Removes and returns the value, or NULL. */
void *hmap_del(struct hmap *h, uint64_t key);
/** Number of entries. */
size_t hmap_count(const struct hmap *h);
/** Calls fn for every entry, in no order; fn must not modify the map. */
void hmap_each(const struct hmap *h, void (*fn)(uint64_t key, void *val, void *arg), void *arg);
/**
 * A 64-bit hash of bytes (never 0), keyed at random once per process so that
 * clients cannot pick colliding strings: never persist it or share it.
 */
uint64_t hmap_hash_bytes(const void *p, size_t n);

#endif
