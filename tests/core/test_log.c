/*
 * test_log.c - log lines on stderr: exact format, level threshold, the 2 KiB
 * cut, errno preserved, level names, and whole lines under concurrent writers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Captures stderr into a pipe drained by a reader thread, so writers never
 * block on a full pipe; capture_end() returns everything written. */
static int saved_stderr = -1;
static int pipe_rd = -1;
static pthread_t reader_th;
static char *captured;
static size_t captured_len;

static void *reader_main(void *arg)
{
    (void)arg;
    size_t cap = 1 << 16;
    captured = malloc(cap);
    captured_len = 0;
    ssize_t r;
    while ((r = read(pipe_rd, captured + captured_len, cap - captured_len - 1)) > 0) {
        captured_len += (size_t)r;
        if (cap - captured_len - 1 == 0)
            captured = realloc(captured, cap *= 2);
    }
    captured[captured_len] = '\0';
    return NULL;
}

static void capture_begin(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    close(p[1]);
    pipe_rd = p[0];
    assert_int_equal(pthread_create(&reader_th, NULL, reader_main, NULL), 0);
}

static char *capture_end(size_t *len)
{
    /* Restoring stderr closes the pipe's last write end: the reader sees EOF. */
    assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
    close(saved_stderr);
    assert_int_equal(pthread_join(reader_th, NULL), 0);
    close(pipe_rd);
    if (len != NULL)
        *len = captured_len;
    return captured;
}

static void assert_matches(const char *s, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, s, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("'%s' does not match /%s/", s, pattern);
}

#define TS "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

static void test_format_and_threshold(void **state)
{
    (void)state;
    log_init(LOG_INFO, "node-a:8080");
    capture_begin();
    log_debug("hidden %d", 1);
    log_info("hello %s", "world");
    log_warn("w");
    log_error("e=%d", 5);
    char *out = capture_end(NULL);

    char *lines[4] = {0};
    int n = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l && n < 4;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    assert_int_equal(n, 3);
    assert_matches(lines[0], TS "INFO node-a:8080 hello world$");
    assert_matches(lines[1], TS "WARN node-a:8080 w$");
    assert_matches(lines[2], TS "ERROR node-a:8080 e=5$");
    free(out);

    log_init(LOG_ERROR, "node-a:8080");
    capture_begin();
    log_warn("hidden");
    log_error("shown");
    out = capture_end(NULL);
    assert_matches(out, TS "ERROR node-a:8080 shown\n$");
    free(out);

    log_init(LOG_DEBUG, "node-b");
    capture_begin();
    log_debug("dbg");
    out = capture_end(NULL);
    assert_matches(out, TS "DEBUG node-b dbg\n$");
    free(out);
}

static void test_long_line_is_cut(void **state)
{
    (void)state;
    log_init(LOG_INFO, "i");
    char *big = malloc(5000);
    memset(big, 'q', 4999);
    big[4999] = '\0';
    capture_begin();
    log_info("%s", big);
    log_info("next");
    size_t len;
    char *out = capture_end(&len);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_int_equal(nl - out + 1, 2048); /* the cut line is exactly 2 KiB with its newline */
    assert_int_equal(nl[-1], 'q');
    assert_matches(nl + 1, TS "INFO i next\n$");
    free(out);
    free(big);
}

static void test_errno_preserved(void **state)
{
    (void)state;
    log_init(LOG_INFO, "i");
    capture_begin();
    errno = ENOSPC;
    log_info("x");
    int after = errno;
    free(capture_end(NULL));
    assert_int_equal(after, ENOSPC);
}

static void test_level_parse(void **state)
{
    (void)state;
    enum log_level l = LOG_ERROR;
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_level_parse("info", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_level_parse("warning", &l), -EINVAL);
    assert_int_equal(log_level_parse("", &l), -EINVAL);
    assert_int_equal(log_level_parse("Info", &l), -EINVAL);
    assert_int_equal(log_level_parse(NULL, &l), -EINVAL);
    assert_int_equal(l, LOG_ERROR); /* untouched on error */
}

#define WRITERS 4
#define LINES_EACH 2000

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[300];
    memset(pad, 'a' + id, sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < LINES_EACH; i++)
        log_info("w%d %d %s", id, i, pad);
    return NULL;
}

static void test_concurrent_lines_whole(void **state)
{
    (void)state;
    log_init(LOG_INFO, "c");
    capture_begin();
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    char *out = capture_end(NULL);

    int next[WRITERS] = {0};
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int id, seq;
        char pad[400];
        assert_int_equal(sscanf(l + 24, " INFO c w%d %d %399s", &id, &seq, pad), 3);
        assert_true(id >= 0 && id < WRITERS);
        assert_int_equal(seq, next[id]);
        next[id]++;
        assert_int_equal(strlen(pad), 299);
        assert_true(strspn(pad, (char[]){(char)('a' + id), 0}) == 299);
    }
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(next[i], LINES_EACH);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_threshold),
        cmocka_unit_test(test_long_line_is_cut),
        cmocka_unit_test(test_errno_preserved),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_concurrent_lines_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
