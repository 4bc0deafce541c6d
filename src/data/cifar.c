/* cifar.c - CIFAR-10 binary batches.
 *
 * The format has no header: a file is a sequence of 3073-byte records (label
 * byte, then 3x32x32 pixels, channel-major). Its length is therefore the only
 * thing that can be checked before reading. */
#include "dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_PIXELS 3072
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_NCLASSES 10

static const char *const cifar10_names[CIFAR_NCLASSES] = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
};

/* Opens a batch file and returns its record count after checking the length. */
static lk_status cifar_open(const char *path, FILE **f, long *records)
{
    *f = fopen(path, "rb");
    if (!*f) return LK_ERR(LK_ERR_IO, "cannot open CIFAR-10 file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(*f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(*f);
        *f = NULL;
        return LK_ERR(LK_ERR_IO, "CIFAR-10 file %s is not a readable regular file", path);
    }
    if (st.st_size <= 0 || st.st_size % CIFAR_RECORD != 0) {
        fclose(*f);
        *f = NULL;
        return LK_ERR(LK_ERR_FORMAT,
                      "%s: length %lld is not a positive multiple of the %d-byte record "
                      "(1 label byte + %d pixel bytes); truncated or not a CIFAR-10 batch?",
                      path, (long long)st.st_size, CIFAR_RECORD, CIFAR_PIXELS);
    }
    *records = (long)(st.st_size / CIFAR_RECORD);
    return LK_OK;
}

/* Reads `records` records of f into x/y starting at sample `first`. */
static lk_status cifar_read(FILE *f, const char *path, long records, lk_dataset *d, long first)
{
    uint8_t rec[CIFAR_RECORD];
    for (long r = 0; r < records; r++) {
        if (fread(rec, 1, sizeof rec, f) != sizeof rec)
            return LK_ERR(LK_ERR_IO, "%s: short read at record %ld of %ld (file changed?)", path,
                          r, records);
        if (rec[0] >= CIFAR_NCLASSES)
            return LK_ERR(LK_ERR_FORMAT, "%s: record %ld has label %d, expected 0..%d", path, r,
                          rec[0], CIFAR_NCLASSES - 1);
        d->y[first + r] = rec[0];
        memcpy(d->x + (size_t)(first + r) * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
    }
    return LK_OK;
}

lk_status lk_cifar10_load(const char *const *paths, int npaths, lk_dataset *out)
{
    memset(out, 0, sizeof *out);
    if (!paths || npaths < 1)
        return LK_ERR(LK_ERR_ARG, "lk_cifar10_load: need at least one file (got %d)", npaths);
    /* First pass: validate every length before allocating anything. */
    long total = 0;
    for (int i = 0; i < npaths; i++) {
        FILE *f;
        long records;
        LK_CHECK(cifar_open(paths[i], &f, &records));
        fclose(f);
        total += records;
        if (total > INT_MAX / CIFAR_PIXELS)
            return LK_ERR(LK_ERR_FORMAT, "CIFAR-10 files up to %s hold too many records (%ld)",
                          paths[i], total);
    }
    out->x = lk_malloc((size_t)total * CIFAR_PIXELS);
    out->y = lk_malloc((size_t)total * sizeof(int32_t));
    lk_status s = LK_OK;
    if (!out->x || !out->y)
        s = LK_ERR(LK_ERR_NOMEM, "cannot allocate %ld CIFAR-10 images", total);
    long first = 0;
    for (int i = 0; i < npaths && s == LK_OK; i++) {
        FILE *f;
        long records;
        s = cifar_open(paths[i], &f, &records);
        if (s != LK_OK) break;
        if (first + records > total)
            s = LK_ERR(LK_ERR_IO, "%s grew while it was being read", paths[i]);
        else
            s = cifar_read(f, paths[i], records, out, first);
        fclose(f);
        first += records;
    }
    if (s == LK_OK && first != total)
        s = LK_ERR(LK_ERR_IO, "CIFAR-10 files changed while they were being read");
    if (s != LK_OK) {
        lk_dataset_free(out);
        return s;
    }
    snprintf(out->name, sizeof out->name, "cifar10");
    snprintf(out->source, sizeof out->source, "%s", paths[0]);
    out->n = (int)total;
    int shape[3] = {3, 32, 32};
    out->sample = lk_shape_make(3, shape);
    out->nclasses = CIFAR_NCLASSES;
    out->class_names = cifar10_names;
    return LK_OK;
}
