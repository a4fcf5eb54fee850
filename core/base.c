/*
 * base.c - assertion failure, the aborting allocator and the monotonic clock.
 */
#include "core/base.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

_Noreturn void tally__assert_fail(const char *expr, const char *file, int line)
{
    log_write(LOG_ERROR, "assertion failed: %s at %s:%d", expr, file, line);
    abort();
}

/* Out of memory is reported once, with the size, and is never survived. */
static _Noreturn void oom(size_t n)
{
    log_write(LOG_ERROR, "out of memory allocating %zu bytes", n);
    abort();
}

void *xmalloc(size_t n)
{
    /* malloc(0) may return NULL legitimately; ask for one byte so NULL always means OOM. */
    void *p = malloc(n ? n : 1);
    if (unlikely(p == NULL))
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    if (unlikely(size != 0 && n > SIZE_MAX / size))
        oom(SIZE_MAX);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (unlikely(p == NULL))
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    /* realloc(p, 0) may free p and return NULL; keep one byte instead. */
    void *q = realloc(p, n ? n : 1);
    if (unlikely(q == NULL))
        oom(n);
    return q;
}

void *xaligned_alloc(size_t align, size_t n)
{
    TALLY_ASSERT(IS_POW2(align));
    TALLY_ASSERT(align >= sizeof(void *));
    void *p = NULL;
    int rc = posix_memalign(&p, align, n ? n : 1);
    if (unlikely(rc != 0))
        oom(n);
    return p;
}

char *xstrdup(const char *s)
{
    TALLY_ASSERT(s != NULL);
    return xstrndup(s, strlen(s));
}

void str_copy(char *dst, size_t cap, const char *src)
{
    TALLY_ASSERT(dst != NULL && cap > 0);
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

char *xstrndup(const char *s, size_t len)
{
    TALLY_ASSERT(s != NULL || len == 0);
    TALLY_ASSERT(len < SIZE_MAX);
    char *p = xmalloc(len + 1);
    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

uint64_t clock_now_ns(void)
{
    struct timespec ts;
    int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
    TALLY_ASSERT(rc == 0);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t clock_now_ms(void)
{
    return clock_now_ns() / 1000000u;
}
