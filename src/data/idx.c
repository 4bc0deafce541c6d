/* idx.c - IDX image/label files (the MNIST and Fashion-MNIST format).
 *
 * A file is a big-endian header (magic 0x000008NN: ubyte data, NN dimensions,
 * then NN 32-bit sizes) followed by the raw bytes. Files may be gzip'd; zlib's
 * gzread reads plain files transparently, so the format is found from the
 * content, never from the name. */
#include "dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_NCLASSES 10   /* unlabelled images (predict's input): MNIST's and Fashion-MNIST's; a
                             labelled set has as many classes as its largest label says */
#define IDX_MAX_SIDE 16384 /* keeps rows*cols well inside an int */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Turns the state of a failed gzread into a status naming the file. */
static lk_status gz_fail(gzFile gz, const char *path)
{
    int err = Z_OK;
    const char *msg = gzerror(gz, &err);
    if (err == Z_ERRNO) return LK_ERR(LK_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    return LK_ERR(LK_ERR_FORMAT, "%s: corrupt gzip data (%s)", path, msg);
}

static lk_status idx_open(const char *path, const char *what, gzFile *gz)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return LK_ERR(LK_ERR_IO, "cannot open %s file %s: %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return LK_ERR(LK_ERR_IO, "%s file %s is not a regular file", what, path);
    *gz = gzopen(path, "rb");
    if (!*gz)
        return LK_ERR(LK_ERR_IO, "cannot open %s file %s: %s", what, path,
                      errno ? strerror(errno) : "out of memory");
    gzbuffer(*gz, 1u << 17); /* fewer syscalls on the 26 MB training images */
    return LK_OK;
}

static lk_status size_error(const char *path, size_t want, size_t found, const char *note)
{
    if (found < want)
        return LK_ERR(LK_ERR_FORMAT, "%s: truncated: expected %zu bytes of data, found %zu%s",
                      path, want, found, note);
    return LK_ERR(LK_ERR_FORMAT, "%s: %zu trailing bytes after the %zu bytes of data%s", path,
                  found - want, want, note);
}

/* Reads the header; *dims gets ndim sizes. Checks magic, dimension count and
 * sizes, and for a plain file the exact length before anything is allocated. */
static lk_status idx_header(gzFile gz, const char *path, uint32_t magic, uint32_t *dims,
                            size_t *payload)
{
    int ndim = (int)(magic & 0xff);
    size_t hlen = 4 + 4 * (size_t)ndim;
    uint8_t h[16];
    int r = gzread(gz, h, (unsigned)hlen);
    if (r < 0) return gz_fail(gz, path);
    if (r == 0) return LK_ERR(LK_ERR_FORMAT, "%s: file is empty", path);
    if (r < 4)
        return LK_ERR(LK_ERR_FORMAT, "%s: truncated header: expected %zu bytes, found %d", path,
                      hlen, r);
    uint32_t found = be32(h);
    if (found != magic) {
        int known = found == IDX_LABELS_MAGIC || found == IDX_IMAGES_MAGIC;
        if ((found >> 8) == 0x08 && !known) /* ubyte data, other rank */
            return LK_ERR(LK_ERR_FORMAT,
                          "%s: bad IDX magic: expected 0x%08x, found 0x%08x (%u dimensions, "
                          "expected %d)", path, magic, found, found & 0xff, ndim);
        const char *hint = !known ? ""
                           : found == IDX_LABELS_MAGIC ? " (this is a labels file)"
                                                       : " (this is an images file)";
        return LK_ERR(LK_ERR_FORMAT, "%s: bad IDX magic: expected 0x%08x, found 0x%08x%s", path,
                      magic, found, hint);
    }
    if ((size_t)r < hlen)
        return LK_ERR(LK_ERR_FORMAT, "%s: truncated header: expected %zu bytes, found %d", path,
                      hlen, r);
    size_t total = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(h + 4 + 4 * i);
        uint32_t max = i == 0 ? (uint32_t)INT_MAX : IDX_MAX_SIDE;
        if (dims[i] == 0 || dims[i] > max)
            return LK_ERR(LK_ERR_FORMAT, "%s: dimension %d is %u, expected 1..%u", path, i,
                          dims[i], max);
        total *= dims[i]; /* < 2^31 * 2^28: no overflow in 64 bits */
    }
    *payload = total;
    if (gzdirect(gz)) {
        struct stat st;
        if (stat(path, &st) == 0 && (size_t)st.st_size != hlen + total)
            return size_error(path, total,
                              (size_t)st.st_size > hlen ? (size_t)st.st_size - hlen : 0, "");
    }
    return LK_OK;
}

/* Reads want payload bytes into *x (as they are; grown from *cap bytes as they arrive) or
 * y, then checks the file ends. */
static lk_status idx_payload(gzFile gz, const char *path, size_t want, uint8_t **x, size_t *cap, int32_t *y)
{
    uint8_t buf[16384];
    size_t got = 0;
    while (got < want) {
        size_t chunk = LK_MIN(sizeof buf, want - got);
        int r = gzread(gz, buf, (unsigned)chunk);
        if (r < 0) return gz_fail(gz, path);
        if (r == 0) break;
        if (x && got + (size_t)r > *cap) { /* a gzip stream: memory as the data comes, not as claimed */
            const size_t grow = LK_MIN(want, LK_MAX(*cap * 2, got + (size_t)r));
            uint8_t *more = lk_realloc(*x, grow);
            if (!more)
                return LK_ERR(LK_ERR_NOMEM, "%s: cannot allocate %zu bytes for its images", path, grow);
            *x = more, *cap = grow;
        }
        if (x)
            memcpy(*x + got, buf, (size_t)r);
        else
            for (int i = 0; i < r; i++) y[got + (size_t)i] = buf[i];
        got += (size_t)r;
    }
    if (got < want) {
        int err = Z_OK;
        gzerror(gz, &err);
        return size_error(path, want, got, err == Z_BUF_ERROR ? " (gzip stream cut short)" : "");
    }
    /* Reading past the end also makes zlib verify the gzip CRC and length. */
    size_t extra = 0;
    for (;;) {
        int r = gzread(gz, buf, sizeof buf);
        if (r < 0) return gz_fail(gz, path);
        if (r == 0) break;
        extra += (size_t)r;
    }
    if (extra) return size_error(path, want, want + extra, "");
    int err = Z_OK;
    gzerror(gz, &err);
    if (err == Z_BUF_ERROR) /* data complete but the gzip trailer (CRC, length) is missing */
        return LK_ERR(LK_ERR_FORMAT, "%s: gzip stream cut short after the data", path);
    return LK_OK;
}

static lk_status load_images(const char *path, lk_dataset *d)
{
    gzFile gz;
    LK_CHECK(idx_open(path, "images", &gz));
    uint32_t dims[3];
    size_t bytes = 0, cap = 0;
    lk_status s = idx_header(gz, path, IDX_IMAGES_MAGIC, dims, &bytes);
    if (s == LK_OK) {
        /* a plain file's length was checked against the header; a gzip stream's is known at
         * its end only, so its buffer starts at 64 MiB at most and grows with the data */
        cap = gzdirect(gz) ? bytes : LK_MIN(bytes, (size_t)64 << 20);
        d->x = lk_malloc(LK_MAX(cap, 1));
        if (!d->x)
            s = LK_ERR(LK_ERR_NOMEM, "%s: cannot allocate %zu bytes for %u images of %ux%u", path,
                       cap, dims[0], dims[1], dims[2]);
    }
    if (s == LK_OK) s = idx_payload(gz, path, bytes, &d->x, &cap, NULL);
    gzclose(gz);
    if (s != LK_OK) return s;
    d->n = (int)dims[0];
    int shape[3] = {1, (int)dims[1], (int)dims[2]};
    d->sample = lk_shape_make(3, shape);
    return LK_OK;
}

static lk_status load_labels(const char *path, const char *images_path, lk_dataset *d)
{
    gzFile gz;
    LK_CHECK(idx_open(path, "labels", &gz));
    uint32_t n = 0;
    size_t bytes = 0;
    lk_status s = idx_header(gz, path, IDX_LABELS_MAGIC, &n, &bytes);
    if (s == LK_OK && n != (uint32_t)d->n)
        s = LK_ERR(LK_ERR_FORMAT, "%s has %u labels but images file %s has %d images", path, n,
                   images_path, d->n);
    if (s == LK_OK) {
        d->y = lk_malloc(bytes * sizeof(int32_t));
        if (!d->y) s = LK_ERR(LK_ERR_NOMEM, "%s: cannot allocate %u labels", path, n);
    }
    if (s == LK_OK) s = idx_payload(gz, path, bytes, NULL, NULL, d->y);
    gzclose(gz);
    if (s != LK_OK) return s;
    d->nclasses = 1; /* the format does not say: the largest label's (a byte: at most 256) */
    for (int i = 0; i < d->n; i++) d->nclasses = LK_MAX(d->nclasses, d->y[i] + 1);
    return LK_OK;
}

/* Images, then the labels file, or all-zero labels when labels_path is NULL. */
static lk_status idx_load(const char *images_path, const char *labels_path, lk_dataset *out)
{
    memset(out, 0, sizeof *out);
    if (!images_path) return LK_ERR(LK_ERR_ARG, "lk_idx_load: NULL images path");
    lk_status s = load_images(images_path, out);
    if (s == LK_OK && labels_path) s = load_labels(labels_path, images_path, out);
    if (s == LK_OK && !labels_path) {
        out->y = lk_calloc((size_t)out->n, sizeof(int32_t)); /* unlabelled: all 0 */
        if (!out->y) s = LK_ERR(LK_ERR_NOMEM, "%s: cannot allocate labels", images_path);
    }
    if (s != LK_OK) {
        lk_dataset_free(out);
        return s;
    }
    snprintf(out->name, sizeof out->name, "idx");
    snprintf(out->source, sizeof out->source, "%s", images_path);
    if (!labels_path) out->nclasses = IDX_NCLASSES;
    return LK_OK;
}

lk_status lk_idx_load(const char *images_path, const char *labels_path, lk_dataset *out)
{
    if (!labels_path) {
        memset(out, 0, sizeof *out);
        return LK_ERR(LK_ERR_ARG, "lk_idx_load: NULL labels path");
    }
    return idx_load(images_path, labels_path, out);
}

lk_status lk_idx_load_images(const char *images_path, lk_dataset *out)
{
    return idx_load(images_path, NULL, out);
}
