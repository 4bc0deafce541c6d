/* dataset.c - --data SPEC parsing and the in-memory dataset helpers. */
#include "dataset.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define SPEC_FORMS "fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, text:FILE or tokens:PATTERN"

static const char *const fashion_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};
static const char *const digit_names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static lk_status join(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) return LK_ERR(LK_ERR_ARG, "path too long: %s/%s", dir, name);
    return LK_OK;
}

/* Where the data came from and how to get it, for "missing file" messages. */
static lk_status missing(const char *spec, const char *dir, const char *tried, int is_default)
{
    struct stat st;
    const char *why = stat(dir, &st) != 0 ? "directory does not exist" : "file not found";
    if (is_default)
        return LK_ERR(LK_ERR_IO,
                      "dataset '%s': %s (tried %s); install it with "
                      "`apt-get install dataset-fashion-mnist` or pass --data fashion-mnist:DIR",
                      spec, why, tried);
    return LK_ERR(LK_ERR_IO, "dataset '%s': %s (tried %s)", spec, why, tried);
}

/* Finds DIR/NAME or DIR/NAME.gz; "tried" lists both for the error message. */
static lk_status find_idx(const char *spec, const char *dir, const char *name, int is_default,
                          char *path, size_t size)
{
    char gz[1100];
    LK_CHECK(join(path, size, dir, name));
    if (is_file(path)) return LK_OK;
    LK_CHECK(join(gz, sizeof gz, dir, name));
    strncat(gz, ".gz", sizeof gz - strlen(gz) - 1);
    if (is_file(gz)) {
        if (strlen(gz) >= size) return LK_ERR(LK_ERR_ARG, "path too long: %s", gz);
        memcpy(path, gz, strlen(gz) + 1);
        return LK_OK;
    }
    char tried[2300];
    snprintf(tried, sizeof tried, "%s and %s", path, gz);
    return missing(spec, dir, tried, is_default);
}

static lk_status open_idx(const char *spec, const char *name, const char *dir, int is_default,
                          const char *prefix, const char *const *class_names, lk_dataset *out)
{
    char images[1024], labels[1024], file[64];
    snprintf(file, sizeof file, "%s-images-idx3-ubyte", prefix);
    LK_CHECK(find_idx(spec, dir, file, is_default, images, sizeof images));
    snprintf(file, sizeof file, "%s-labels-idx1-ubyte", prefix);
    LK_CHECK(find_idx(spec, dir, file, is_default, labels, sizeof labels));
    LK_CHECK(lk_idx_load(images, labels, out));
    snprintf(out->name, sizeof out->name, "%s", name);
    snprintf(out->source, sizeof out->source, "%s", dir);
    out->class_names = out->nclasses == 10 ? class_names : NULL; /* (another set in the same format) */
    return LK_OK;
}

static lk_status open_cifar(const char *spec, const char *dir, int train, lk_dataset *out)
{
    char paths[5][1024];
    const char *ptrs[5];
    int n = train ? 5 : 1;
    for (int i = 0; i < n; i++) {
        char file[32];
        if (train) snprintf(file, sizeof file, "data_batch_%d.bin", i + 1);
        else snprintf(file, sizeof file, "test_batch.bin");
        LK_CHECK(join(paths[i], sizeof paths[i], dir, file));
        if (!is_file(paths[i])) return missing(spec, dir, paths[i], 0);
        ptrs[i] = paths[i];
    }
    LK_CHECK(lk_cifar10_load(ptrs, n, out));
    snprintf(out->source, sizeof out->source, "%s", dir);
    return LK_OK;
}

lk_status lk_data_open(const char *spec, const char *split, int ctx, lk_dataset *out)
{
    memset(out, 0, sizeof *out);
    if (!spec || !*spec)
        return LK_ERR(LK_ERR_ARG, "empty --data spec; expected " SPEC_FORMS);
    int train;
    if (split && strcmp(split, "train") == 0) train = 1;
    else if (split && strcmp(split, "test") == 0) train = 0;
    else return LK_ERR(LK_ERR_ARG, "unknown split '%s' for dataset '%s'; expected train or test",
                       split ? split : "(null)", spec);

    const char *colon = strchr(spec, ':');
    size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *dir = colon ? colon + 1 : NULL;
    if (colon && !*dir)
        return LK_ERR(LK_ERR_ARG, "dataset '%s': empty directory after ':'; expected " SPEC_FORMS,
                      spec);
    const char *prefix = train ? "train" : "t10k";
    if (dir && ((nlen == 4 && !strncmp(spec, "text", 4)) || (nlen == 6 && !strncmp(spec, "tokens", 6)))) {
        char kind[8];
        snprintf(kind, sizeof kind, "%.*s", (int)nlen, spec);
        return lk_tokens_open(kind, dir, train, ctx, out);
    }
    if (nlen == 13 && strncmp(spec, "fashion-mnist", nlen) == 0)
        return open_idx(spec, "fashion-mnist", dir ? dir : DEFAULT_FASHION_DIR, !dir, prefix,
                        fashion_names, out);
    if (nlen == 5 && strncmp(spec, "mnist", nlen) == 0 && dir)
        return open_idx(spec, "mnist", dir, 0, prefix, digit_names, out);
    if (nlen == 7 && strncmp(spec, "cifar10", nlen) == 0 && dir)
        return open_cifar(spec, dir, train, out);
    if ((nlen == 5 && strncmp(spec, "mnist", 5) == 0) ||
        (nlen == 7 && strncmp(spec, "cifar10", 7) == 0))
        return LK_ERR(LK_ERR_ARG, "dataset '%s' needs a directory ('%s:DIR'); expected " SPEC_FORMS,
                      spec, spec);
    if ((nlen == 4 && !strncmp(spec, "text", 4)) || (nlen == 6 && !strncmp(spec, "tokens", 6)))
        return LK_ERR(LK_ERR_ARG, "dataset '%s' needs a file ('text:FILE' or 'tokens:PATTERN')", spec);
    return LK_ERR(LK_ERR_ARG, "unknown dataset '%s'; expected " SPEC_FORMS, spec);
}

void lk_dataset_free(lk_dataset *d)
{
    if (!d) return;
    lk_free(d->x);
    lk_free(d->y);
    lk_free(d->tok);
    memset(d, 0, sizeof *d);
}

size_t lk_dataset_sample_numel(const lk_dataset *d) { return lk_shape_numel(&d->sample); }

lk_dataset lk_dataset_view(const lk_dataset *d, int lo, int hi)
{
    lk_dataset v = *d;
    size_t m = lk_dataset_sample_numel(d);
    if (d->x) v.x = d->x + (size_t)lo * m;
    if (d->y) v.y = d->y + lo;
    if (d->tok) v.tok = d->tok + (size_t)lo * m; /* window i starts at token i * ctx */
    v.n = hi - lo;
    return v;
}

lk_status lk_dataset_subset(const lk_dataset *d, const int32_t *idx, int n, lk_dataset *out)
{
    if (!d->x || !d->y) return LK_ERR(LK_ERR_ARG, "%s: only labelled images can be dealt to clients", d->name);
    const size_t m = lk_dataset_sample_numel(d);
    *out = *d;
    out->n = n;
    out->x = lk_malloc((size_t)LK_MAX(n, 1) * m);
    out->y = lk_malloc((size_t)LK_MAX(n, 1) * sizeof *out->y);
    if (!out->x || !out->y) {
        lk_free(out->x), lk_free(out->y);
        memset(out, 0, sizeof *out);
        return LK_ERR(LK_ERR_NOMEM, "%s: cannot copy %d samples", d->name, n);
    }
    for (int i = 0; i < n; i++) {
        memcpy(out->x + (size_t)i * m, d->x + (size_t)idx[i] * m, m);
        out->y[i] = d->y[idx[i]];
    }
    return LK_OK;
}

void lk_dataset_truncate(lk_dataset *d, int n)
{
    /* The buffers keep their size; only the visible count shrinks. */
    if (n >= 0 && n < d->n) d->n = n;
}

void lk_dataset_gather(const lk_dataset *d, const int32_t *idx, int count, float *x, int32_t *y)
{
    size_t m = lk_dataset_sample_numel(d);
    if (d->tok) { /* a window and the window one token on */
        for (int i = 0; i < count; i++) {
            const uint16_t *src = d->tok + (size_t)idx[i] * m;
            for (size_t k = 0; k < m; k++) x[(size_t)i * m + k] = (float)src[k];
            if (y)
                for (size_t k = 0; k < m; k++) y[(size_t)i * m + k] = src[k + 1];
        }
        return;
    }
    for (int i = 0; i < count; i++) {
        const uint8_t *src = d->x + (size_t)idx[i] * m;
        float *dst = x + (size_t)i * m;
        if (i + 1 < count) { /* samples are scattered: fetch the next one meanwhile */
            const uint8_t *next = d->x + (size_t)idx[i + 1] * m;
            for (size_t k = 0; k < m; k += 64) __builtin_prefetch(next + k);
        }
        for (size_t k = 0; k < m; k++) dst[k] = (float)src[k] * (1.0f / 255.0f);
        if (y) y[i] = d->y[idx[i]];
    }
}
