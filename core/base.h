/*
 * base.h - assertions, branch hints and the allocator that never returns NULL.
 *
 * TALLY_ASSERT is for programmer errors only and is never compiled out: a
 * broken invariant stops the process with file, line and expression. Anything
 * a client can trigger is handled, never asserted.
 */
#ifndef TALLY_CORE_BASE_H
#define TALLY_CORE_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <assert.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define IS_POW2(x) ((x) != 0 && ((x) & ((x)-1)) == 0)

/** Logs "assertion failed: EXPR at FILE:LINE" and aborts. */
_Noreturn void tally__assert_fail(const char *expr, const char *file, int line);

#define TALLY_ASSERT(expr)                                                                         \
    do {                                                                                           \
        if (unlikely(!(expr)))                                                                     \
            tally__assert_fail(#expr, __FILE__, __LINE__);                                         \
    } while (0)

/** Allocates or aborts the process: out of memory is not a recoverable state here. */
void *xmalloc(size_t n);
/** Zeroed allocation of n * size bytes, or abort (overflow is checked). */
void *xcalloc(size_t n, size_t size);
/** Resizes or aborts. */
void *xrealloc(void *p, size_t n);
/** Memory aligned to align (a power of two) for n bytes, or abort. Freed with free(). */
void *xaligned_alloc(size_t align, size_t n);
/** Copies a NUL-terminated string, or aborts. */
char *xstrdup(const char *s);
/** Copies len bytes and appends a NUL, or aborts. */
char *xstrndup(const char *s, size_t len);
/**
 * Copies src (NULL: "") into dst of cap > 0 bytes, cut to fit and always
 * NUL-terminated, as snprintf(dst, cap, "%s", src) does without its cost.
 */
void str_copy(char *dst, size_t cap, const char *src);

/** Monotonic clock in milliseconds / nanoseconds (CLOCK_MONOTONIC). */
uint64_t clock_now_ms(void);
uint64_t clock_now_ns(void);

/*
 * Race-detector hooks for lock-free code the detector cannot see into.
 *
 * Concurrency Kit's ring publishes slots with inline assembly, which
 * ThreadSanitizer does not instrument: it would report the slot copies as
 * races although the ring orders them. Code around a ring operation therefore
 * (1) hides the slot copy with TALLY_RACE_IGNORE_BEGIN/END and (2) states the
 * happens-before edge the ring provides: the producer calls
 * TALLY_HB_RELEASE(obj) before enqueueing, the consumer TALLY_HB_ACQUIRE(obj)
 * after dequeueing. Outside -fsanitize=thread all four compile to nothing.
 */
#if defined(__SANITIZE_THREAD__)
#define TALLY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TALLY_TSAN 1
#endif
#endif

#if defined(TALLY_TSAN)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define TALLY_RACE_IGNORE_BEGIN()                                                                  \
    do {                                                                                           \
        AnnotateIgnoreReadsBegin(__FILE__, __LINE__);                                              \
        AnnotateIgnoreWritesBegin(__FILE__, __LINE__);                                             \
    } while (0)
#define TALLY_RACE_IGNORE_END()                                                                    \
    do {                                                                                           \
        AnnotateIgnoreWritesEnd(__FILE__, __LINE__);                                               \
        AnnotateIgnoreReadsEnd(__FILE__, __LINE__);                                                \
    } while (0)
#define TALLY_HB_RELEASE(obj) __tsan_release((void *)(obj))
#define TALLY_HB_ACQUIRE(obj) __tsan_acquire((void *)(obj))
#else
#define TALLY_RACE_IGNORE_BEGIN() ((void)0)
#define TALLY_RACE_IGNORE_END() ((void)0)
#define TALLY_HB_RELEASE(obj) ((void)(obj))
#define TALLY_HB_ACQUIRE(obj) ((void)(obj))
#endif

#endif
