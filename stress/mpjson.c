/*
 * mpjson.c - see mpjson.h.
 */
#include "stress/mpjson.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

/* A bounded output: fails once full instead of writing past the end. */
struct sink {
    char *p;
    size_t cap, len;
    bool full;
};

static void put(struct sink *s, const char *b, size_t n)
{
    if (s->full || s->len + n >= s->cap) {
        s->full = true;
        return;
    }
    memcpy(s->p + s->len, b, n);
    s->len += n;
}

static void put_str(struct sink *s, const char *b, size_t n)
{
    put(s, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)b[i];
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            put(s, esc, 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            put(s, esc, 6);
        } else {
            put(s, (const char *)&b[i], 1);
        }
    }
    put(s, "\"", 1);
}

static int put_obj(struct sink *s, const msgpack_object *o, unsigned depth)
{
    char num[48];
    if (depth > MPJSON_DEPTH_MAX)
        return -EINVAL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        put(s, "null", 4);
        return 0;
    case MSGPACK_OBJECT_BOOLEAN:
        put(s, o->via.boolean ? "true" : "false", o->via.boolean ? 4 : 5);
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        put(s, num, (size_t)snprintf(num, sizeof(num), "%" PRIu64, o->via.u64));
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        put(s, num, (size_t)snprintf(num, sizeof(num), "%" PRId64, o->via.i64));
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        put(s, num, (size_t)snprintf(num, sizeof(num), "%.17g", o->via.f64));
        return 0;
    case MSGPACK_OBJECT_STR:
        put_str(s, o->via.str.ptr, o->via.str.size);
        return 0;
    case MSGPACK_OBJECT_ARRAY:
        put(s, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                put(s, ",", 1);
            if (put_obj(s, &o->via.array.ptr[i], depth + 1) < 0)
                return -EINVAL;
        }
        put(s, "]", 1);
        return 0;
    case MSGPACK_OBJECT_MAP:
        put(s, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR)
                return -EINVAL; /* JSON keys are strings */
            if (i)
                put(s, ",", 1);
            put_str(s, kv->key.via.str.ptr, kv->key.via.str.size);
            put(s, ":", 1);
            if (put_obj(s, &kv->val, depth + 1) < 0)
                return -EINVAL;
        }
        put(s, "}", 1);
        return 0;
    default:
        return -EINVAL; /* binary, extension: tallyd sends neither */
    }
}

int mpjson_to_json(const uint8_t *mp, size_t len, char *out, size_t cap)
{
    msgpack_unpacked u;
    size_t off = 0;
    if (cap == 0)
        return -ENOSPC;
    msgpack_unpacked_init(&u);
    int rc = -EINVAL;
    if (msgpack_unpack_next(&u, (const char *)mp, len, &off) == MSGPACK_UNPACK_SUCCESS) {
        struct sink s = {.p = out, .cap = cap};
        rc = put_obj(&s, &u.data, 0);
        if (rc == 0 && s.full)
            rc = -ENOSPC;
        if (rc == 0) {
            out[s.len] = '\0';
            rc = (int)s.len;
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* The packer writes into a bounded buffer through this callback. */
struct packbuf {
    uint8_t *p;
    size_t cap, len;
    bool full;
};

static int pack_write(void *data, const char *buf, size_t n)
{
    struct packbuf *b = data;
    if (b->full || b->len + n > b->cap) {
        b->full = true;
        return -1;
    }
    memcpy(b->p + b->len, buf, n);
    b->len += n;
    return 0;
}

static int pack_json(msgpack_packer *pk, const json_t *j, unsigned depth)
{
    if (depth > MPJSON_DEPTH_MAX)
        return -EINVAL;
    switch (json_typeof(j)) {
    case JSON_NULL:
        return msgpack_pack_nil(pk);
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(j));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(j));
    case JSON_STRING: {
        size_t n = json_string_length(j);
        int rc = msgpack_pack_str(pk, n);
        return rc ? rc : msgpack_pack_str_body(pk, json_string_value(j), n);
    }
    case JSON_ARRAY: {
        int rc = msgpack_pack_array(pk, json_array_size(j));
        for (size_t i = 0; rc == 0 && i < json_array_size(j); i++)
            rc = pack_json(pk, json_array_get(j, i), depth + 1);
        return rc;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        int rc = msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach((json_t *)j, k, v)
        {
            size_t n = strlen(k);
            if (rc == 0)
                rc = msgpack_pack_str(pk, n);
            if (rc == 0)
                rc = msgpack_pack_str_body(pk, k, n);
            if (rc == 0)
                rc = pack_json(pk, v, depth + 1);
        }
        return rc;
    }
    }
    return -EINVAL;
}

int mpjson_from_json(const char *json, size_t len, uint8_t *out, size_t cap)
{
    json_t *j = json_loadb(json, len, JSON_DECODE_ANY, NULL);
    if (j == NULL)
        return -EINVAL;
    struct packbuf b = {.p = out, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, pack_write);
    int rc = pack_json(&pk, j, 0);
    json_decref(j);
    if (b.full)
        return -ENOSPC;
    return rc == 0 ? (int)b.len : -EINVAL;
}
