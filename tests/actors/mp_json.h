/*
 * mp_json.h - test helper: msgpack-c's view of a packed value as a jansson
 * value, so a test can compare a MessagePack frame with its JSON twin.
 * Include after <cmocka.h>, <jansson.h> and <msgpack.h>.
 */
#ifndef TALLY_TESTS_ACTORS_MP_JSON_H
#define TALLY_TESTS_ACTORS_MP_JSON_H

static json_t *obj_to_json(const msgpack_object *o)
{
    json_t *j;

    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return json_stringn(o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        j = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(j, obj_to_json(&o->via.array.ptr[i]));
        return j;
    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];

            assert_int_equal(kv->key.type, MSGPACK_OBJECT_STR);
            json_object_setn_new(j, kv->key.via.str.ptr, kv->key.via.str.size,
                                 obj_to_json(&kv->val));
        }
        return j;
    default:
        fail_msg("unexpected msgpack type %d", o->type);
        return NULL;
    }
}

#endif
