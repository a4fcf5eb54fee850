/*
 * test_qr.c - the join link's QR code as SVG: the path draws exactly the
 * encoder's dark modules, inside the quiet zone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qrencode.h>

#include "actors/qr.h"

/* Redraws the path of svg into grid (side x side) and returns side. */
static int draw(const char *svg, unsigned char *grid, int grid_max)
{
    int side = 0, side2 = 0;
    const char *d;

    assert_int_equal(sscanf(strstr(svg, "viewBox=\""), "viewBox=\"0 0 %d %d\"", &side, &side2), 2);
    assert_int_equal(side, side2);
    assert_true(side <= grid_max);
    memset(grid, 0, (size_t)side * (size_t)side);
    d = strstr(svg, " d=\"");
    assert_non_null(d);
    d += 4;
    while (*d == 'M') {
        int x, y, w, w2, n = 0;

        assert_int_equal(sscanf(d, "M%d %dh%dv1h-%dz%n", &x, &y, &w, &w2, &n), 4);
        assert_int_equal(w, w2);
        assert_true(w > 0 && x >= 0 && y >= 0 && x + w <= side && y < side);
        for (int i = 0; i < w; i++) {
            assert_int_equal(grid[y * side + x + i], 0); /* runs never overlap */
            grid[y * side + x + i] = 1;
        }
        d += n;
    }
    assert_int_equal(*d, '"');
    return side;
}

static void check_text(const char *text)
{
    static unsigned char grid[200 * 200];
    char *svg = NULL;
    size_t len = 0;
    QRcode *ref;
    int side;

    assert_int_equal(qr_svg(text, &svg, &len), 0);
    assert_non_null(svg);
    assert_int_equal(strlen(svg), len);
    assert_int_equal(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39), 0);
    assert_string_equal(svg + len - 7, "</svg>\n");
    assert_non_null(strstr(svg, "<path"));
    assert_null(strstr(strstr(svg, "<path") + 1, "<path")); /* one path */
    ref = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    assert_non_null(ref);
    side = draw(svg, grid, 200);
    assert_int_equal(side, ref->width + 2 * QR_QUIET_MODULES);
    for (int y = 0; y < side; y++) {
        for (int x = 0; x < side; x++) {
            int mx = x - QR_QUIET_MODULES, my = y - QR_QUIET_MODULES;
            int dark = mx >= 0 && my >= 0 && mx < ref->width && my < ref->width &&
                       (ref->data[my * ref->width + mx] & 1);

            assert_int_equal(grid[y * side + x], dark);
        }
    }
    QRcode_free(ref);
    free(svg);
}

static void test_join_link(void **state)
{
    char *svg = NULL;
    size_t len = 0;

    (void)state;
    /* 30 bytes at level M need version 3: 29 modules and 8 of quiet zone. */
    assert_int_equal(qr_svg("http://127.0.0.1:8080/j/K7QX2M", &svg, &len), 0);
    assert_non_null(strstr(svg, "viewBox=\"0 0 37 37\""));
    free(svg);
    check_text("http://127.0.0.1:8080/j/K7QX2M");
    check_text("http://Example.ORG/j/ABCDEF"); /* case is kept: 8-bit mode */
}

static void test_limits(void **state)
{
    char text[QR_TEXT_MAX + 2];
    char *svg = (char *)1;
    size_t len = 7;

    (void)state;
    assert_int_equal(qr_svg("", &svg, &len), -EINVAL);
    assert_null(svg);
    assert_int_equal(len, 0);
    assert_int_equal(qr_svg(NULL, &svg, &len), -EINVAL);
    memset(text, 'a', sizeof(text));
    text[QR_TEXT_MAX + 1] = '\0';
    assert_int_equal(qr_svg(text, &svg, &len), -EINVAL);
    text[QR_TEXT_MAX] = '\0'; /* exactly the limit */
    check_text(text);
    check_text("x");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_link),
        cmocka_unit_test(test_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
