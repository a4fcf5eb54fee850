/*
 * qr.c - libqrencode modules to SVG.
 */
#include "actors/qr.h"

#include <errno.h>
#include <string.h>

#include <qrencode.h>

#include "core/base.h"
#include "core/buf.h"

/* Appends the dark runs of row y as "M x y h n v1 h -n z" rectangles. */
static void qr_row(struct buf *b, const QRcode *qr, int y)
{
    int w = qr->width;
    int x = 0;

    while (x < w) {
        int start;

        /* Bit 0 of each module byte is "dark"; the others describe its role. */
        if (!(qr->data[(size_t)y * (size_t)w + (size_t)x] & 1)) {
            x++;
            continue;
        }
        start = x;
        while (x < w && (qr->data[(size_t)y * (size_t)w + (size_t)x] & 1))
            x++;
        buf_printf(b, "M%d %dh%dv1h-%dz", start + QR_QUIET_MODULES, y + QR_QUIET_MODULES, x - start,
                   x - start);
    }
}

int qr_svg(const char *text, char **out, size_t *out_len)
{
    struct buf b = BUF_INIT;
    QRcode *qr;
    int side;

    *out = NULL;
    *out_len = 0;
    if (text == NULL || text[0] == '\0' || strlen(text) > QR_TEXT_MAX)
        return -EINVAL;
    qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (qr == NULL)
        return -ENOMEM;
    TALLY_ASSERT(qr->width > 0);
    side = qr->width + 2 * QR_QUIET_MODULES;
    buf_printf(&b,
               "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
               "shape-rendering=\"crispEdges\">"
               "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
               side, side, side, side);
    for (int y = 0; y < qr->width; y++)
        qr_row(&b, qr, y);
    buf_append_str(&b, "\"/></svg>\n");
    QRcode_free(qr);
    *out = buf_steal(&b, out_len);
    TALLY_ASSERT(*out != NULL);
    return 0;
}
