/* test_data.c - IDX and CIFAR-10 readers, --data specs, and the sharded sampler. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/rng.h"
#include "data/dataset.h"

#define N_IMG 3
#define ROWS 2
#define COLS 3
#define PIX (N_IMG * ROWS * COLS)

static uint8_t pixel(int i) { return (uint8_t)(i * 37 % 256); }

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void assert_shape3(const lk_shape *s, int c, int h, int w)
{
    assert_int_equal(s->ndim, 3);
    assert_true(s->d[0] == c && s->d[1] == h && s->d[2] == w);
}

/* IDX bytes: magic, dims, payload. Returns the length written to buf. */
static size_t make_idx(uint8_t *buf, uint32_t magic, int ndim, const uint32_t *dims,
                       const uint8_t *data, size_t n)
{
    put32(buf, magic);
    for (int i = 0; i < ndim; i++) put32(buf + 4 + 4 * i, dims[i]);
    memcpy(buf + 4 + 4 * ndim, data, n);
    return 4 + 4 * (size_t)ndim + n;
}

/* A valid images file (16 + 18 bytes); the caller may corrupt it. */
static size_t good_images(uint8_t *buf)
{
    uint8_t px[PIX];
    for (int i = 0; i < PIX; i++) px[i] = pixel(i);
    uint32_t dims[3] = {N_IMG, ROWS, COLS};
    return make_idx(buf, 0x00000803u, 3, dims, px, PIX);
}

static size_t labels_with(uint8_t *buf, uint32_t n, const uint8_t *labels)
{
    return make_idx(buf, 0x00000801u, 1, &n, labels, n);
}

static size_t good_labels(uint8_t *buf)
{
    static const uint8_t lab[N_IMG] = {7, 0, 9};
    return labels_with(buf, N_IMG, lab);
}

static const char *write_gz(const char *name, const void *bytes, size_t n)
{
    static char paths[8][600];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 600, "%s/%s", tu_tmpdir(), name);
    gzFile gz = gzopen(p, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, bytes, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
    return p;
}

static void check_good(const lk_dataset *d)
{
    assert_int_equal(d->n, N_IMG);
    assert_shape3(&d->sample, 1, ROWS, COLS);
    assert_int_equal(lk_dataset_sample_numel(d), ROWS * COLS);
    assert_int_equal(d->nclasses, 10);
    for (int i = 0; i < PIX; i++) assert_true(d->x[i] == pixel(i));
    assert_true(d->y[0] == 7 && d->y[1] == 0 && d->y[2] == 9);
}

/* Writes an images and a labels file (each plain or gzip, under fresh names that
 * never end in .gz) and loads them; the paths stay in im_path/lb_path. */
static const char *im_path, *lb_path;
static lk_status load(const uint8_t *im, size_t ni, int im_gz, const uint8_t *lb, size_t nl,
                      int lb_gz, lk_dataset *d)
{
    static int seq;
    char a[32], b[32];
    snprintf(a, sizeof a, "images%d", seq);
    snprintf(b, sizeof b, "labels%d", seq++);
    im_path = im_gz ? write_gz(a, im, ni) : tu_write(a, im, ni);
    lb_path = lb_gz ? write_gz(b, lb, nl) : tu_write(b, lb, nl);
    return lk_idx_load(im_path, lb_path, d);
}

static void test_idx_good(void **state)
{
    (void)state;
    uint8_t im[64], lb[16];
    size_t ni = good_images(im), nl = good_labels(lb);
    lk_dataset d;
    for (int mode = 0; mode < 4; mode++) { /* plain/gzip images x plain/gzip labels */
        TU_OK(load(im, ni, mode & 1, lb, nl, mode >> 1, &d));
        check_good(&d);
        assert_string_equal(d.source, im_path);
        lk_dataset_free(&d);
        assert_null(d.x);
    }
}

static void test_idx_truncated(void **state)
{
    (void)state;
    uint8_t im[64], lb[16];
    size_t ni = good_images(im), nl = good_labels(lb);
    lk_dataset d;
    for (int gz = 0; gz < 2; gz++) {
        TU_FAILS_WITH(load(im, ni - 2, gz, lb, nl, 0, &d), LK_ERR_FORMAT,
                      "truncated: expected 18 bytes of data, found 16");
        assert_non_null(strstr(lk_error_message(), im_path));
        assert_null(d.x);
        TU_FAILS_WITH(load(im, ni, 0, lb, nl - 1, gz, &d), LK_ERR_FORMAT,
                      "truncated: expected 3 bytes of data, found 2");
        assert_non_null(strstr(lk_error_message(), lb_path));
    }
    /* A gzip file cut inside the compressed data, or inside its CRC trailer. */
    struct stat st;
    TU_OK(load(im, ni, 1, lb, nl, 0, &d));
    lk_dataset_free(&d);
    assert_int_equal(stat(im_path, &st), 0);
    assert_int_equal(truncate(im_path, st.st_size - 12), 0);
    TU_FAILS_WITH(lk_idx_load(im_path, lb_path, &d), LK_ERR_FORMAT, "(gzip stream cut short)");
    TU_OK(load(im, ni, 1, lb, nl, 0, &d));
    lk_dataset_free(&d);
    assert_int_equal(truncate(im_path, st.st_size - 3), 0);
    TU_FAILS_WITH(lk_idx_load(im_path, lb_path, &d), LK_ERR_FORMAT,
                  "gzip stream cut short after the data");
    /* Header shorter than the 16 bytes it announces; empty file. */
    TU_FAILS_WITH(load(im, 10, 0, lb, nl, 0, &d), LK_ERR_FORMAT, "truncated header");
    TU_FAILS_WITH(load(im, 0, 1, lb, nl, 0, &d), LK_ERR_FORMAT, "empty");
}

static void test_idx_magic(void **state)
{
    (void)state;
    uint8_t im[64], lb[16];
    size_t ni = good_images(im), nl = good_labels(lb);
    lk_dataset d;
    put32(im, 0x00000903u);
    TU_FAILS_WITH(load(im, ni, 0, lb, nl, 0, &d), LK_ERR_FORMAT,
                  "expected 0x00000803, found 0x00000903");
    put32(im, 0x00000802u); /* right element type, wrong number of dimensions */
    TU_FAILS_WITH(load(im, ni, 0, lb, nl, 0, &d), LK_ERR_FORMAT, "2 dimensions, expected 3");
    TU_FAILS_WITH(load(lb, nl, 0, lb, nl, 0, &d), LK_ERR_FORMAT, "this is a labels file");
    good_images(im);
    put32(lb, 0x12345678u);
    TU_FAILS_WITH(load(im, ni, 0, lb, nl, 1, &d), LK_ERR_FORMAT,
                  "expected 0x00000801, found 0x12345678");
    assert_null(d.x);
    good_labels(lb);
    put32(im + 8, 0);
    TU_FAILS_WITH(load(im, ni, 0, lb, nl, 0, &d), LK_ERR_FORMAT, "dimension 1 is 0");
}

static void test_idx_labels(void **state)
{
    (void)state;
    uint8_t im[64], lb[16];
    size_t ni = good_images(im);
    lk_dataset d;
    static const uint8_t four[4] = {1, 2, 3, 4}, eleven[N_IMG] = {1, 10, 3};
    TU_FAILS_WITH(load(im, ni, 0, lb, labels_with(lb, 4, four), 0, &d), LK_ERR_FORMAT,
                  "has 4 labels but images file");
    assert_non_null(strstr(lk_error_message(), im_path));
    /* the format does not say how many classes: the largest label does (EMNIST's letters: 27) */
    TU_OK(load(im, ni, 1, lb, labels_with(lb, N_IMG, eleven), 1, &d));
    assert_int_equal(d.nclasses, 11);
    lk_dataset_free(&d);
    static const uint8_t two[N_IMG] = {1, 0, 1};
    TU_OK(load(im, ni, 1, lb, labels_with(lb, N_IMG, two), 1, &d));
    assert_int_equal(d.nclasses, 2);
    lk_dataset_free(&d);
}

static void test_idx_trailing(void **state)
{
    (void)state;
    uint8_t im[64], lb[16];
    size_t ni = good_images(im), nl = good_labels(lb);
    im[ni] = im[ni + 1] = im[ni + 2] = 0xAB;
    lk_dataset d;
    for (int gz = 0; gz < 2; gz++)
        TU_FAILS_WITH(load(im, ni + 3, gz, lb, nl, 0, &d), LK_ERR_FORMAT, "3 trailing bytes");
}

static void test_idx_missing(void **state)
{
    (void)state;
    uint8_t lb[16];
    const char *lp = tu_write("x-labels", lb, good_labels(lb));
    char ip[700];
    snprintf(ip, sizeof ip, "%s/no-such-images", tu_tmpdir());
    lk_dataset d;
    TU_FAILS_WITH(lk_idx_load(ip, lp, &d), LK_ERR_IO, ip);
    TU_FAILS_WITH(lk_idx_load(tu_tmpdir(), lp, &d), LK_ERR_IO, "not a regular file");
}

/* CIFAR-10: nrec records with label (i * 3) % 10 and pixel bytes (i + k) % 256. */
static const char *write_cifar(const char *name, int nrec, size_t cut, int bad_label)
{
    size_t len = (size_t)nrec * 3073;
    uint8_t *buf = malloc(len);
    for (int i = 0; i < nrec; i++) {
        buf[(size_t)i * 3073] = (uint8_t)(bad_label && i == 1 ? 10 : i * 3 % 10);
        for (int k = 0; k < 3072; k++) buf[(size_t)i * 3073 + 1 + k] = (uint8_t)(i + k);
    }
    const char *p = tu_write(name, buf, len - cut);
    free(buf);
    return p;
}

static void test_cifar(void **state)
{
    (void)state;
    const char *paths[2] = {write_cifar("c1.bin", 2, 0, 0), write_cifar("c2.bin", 1, 0, 0)};
    lk_dataset d;
    TU_OK(lk_cifar10_load(paths, 2, &d));
    assert_int_equal(d.n, 3);
    assert_shape3(&d.sample, 3, 32, 32);
    assert_int_equal(d.nclasses, 10);
    assert_string_equal(d.class_names[0], "airplane");
    assert_string_equal(d.class_names[9], "truck");
    assert_true(d.y[0] == 0 && d.y[1] == 3 && d.y[2] == 0); /* y[2]: second file */
    assert_true(d.x[3072 + 5] == (uint8_t)(1 + 5));
    assert_true(d.x[2 * 3072 + 300] == (uint8_t)300);
    lk_dataset_free(&d);
}

static void test_cifar_bad(void **state)
{
    (void)state;
    lk_dataset d;
    const char *good = write_cifar("cg.bin", 2, 0, 0);
    const char *cut[2] = {good, write_cifar("cut.bin", 2, 7, 0)};
    TU_FAILS_WITH(lk_cifar10_load(cut, 2, &d), LK_ERR_FORMAT, "length 6139 is not");
    assert_non_null(strstr(lk_error_message(), cut[1]));
    const char *empty = write_cifar("empty.bin", 0, 0, 0);
    TU_FAILS_WITH(lk_cifar10_load(&empty, 1, &d), LK_ERR_FORMAT, "positive multiple of the 3073");
    const char *bad[2] = {good, write_cifar("bad.bin", 3, 0, 1)};
    TU_FAILS_WITH(lk_cifar10_load(bad, 2, &d), LK_ERR_FORMAT, "record 1 has label 10");
    assert_null(d.x);
    char missing[700];
    snprintf(missing, sizeof missing, "%s/nope.bin", tu_tmpdir());
    const char *mp = missing;
    TU_FAILS_WITH(lk_cifar10_load(&mp, 1, &d), LK_ERR_IO, missing);
    TU_FAILS_WITH(lk_cifar10_load(NULL, 0, &d), LK_ERR_ARG, "at least one file");
}

static void test_data_open_specs(void **state)
{
    (void)state;
    lk_dataset d;
    TU_FAILS_WITH(lk_data_open("imagenet", "train", 0, &d), LK_ERR_ARG, "unknown dataset 'imagenet'");
    assert_non_null(strstr(lk_error_message(), "fashion-mnist:DIR"));
    assert_non_null(strstr(lk_error_message(), "cifar10:DIR"));
    TU_FAILS_WITH(lk_data_open("fashion-mnist", "val", 0, &d), LK_ERR_ARG, "unknown split 'val'");
    TU_FAILS_WITH(lk_data_open("mnist", "train", 0, &d), LK_ERR_ARG, "needs a directory");
    TU_FAILS_WITH(lk_data_open("cifar10:", "train", 0, &d), LK_ERR_ARG, "empty directory");
    TU_FAILS_WITH(lk_data_open("mnist:/no/such/dir", "test", 0, &d), LK_ERR_IO,
                  "/no/such/dir/t10k-images-idx3-ubyte");
    assert_non_null(strstr(lk_error_message(), "does not exist"));

    /* A directory with the t10k pair (images plain, labels gzip'd). */
    char dir[700], spec[800];
    snprintf(dir, sizeof dir, "%s/fm", tu_tmpdir());
    assert_int_equal(mkdir(dir, 0755), 0);
    uint8_t im[64], lb[16];
    tu_write("fm/t10k-images-idx3-ubyte", im, good_images(im));
    write_gz("fm/t10k-labels-idx1-ubyte.gz", lb, good_labels(lb));
    snprintf(spec, sizeof spec, "fashion-mnist:%s", dir);
    TU_OK(lk_data_open(spec, "test", 0, &d));
    check_good(&d);
    assert_string_equal(d.name, "fashion-mnist");
    assert_string_equal(d.source, dir);
    assert_string_equal(d.class_names[0], "T-shirt/top");
    assert_string_equal(d.class_names[9], "Ankle boot");
    lk_dataset_free(&d);
    snprintf(spec, sizeof spec, "mnist:%s", dir);
    TU_OK(lk_data_open(spec, "test", 0, &d));
    assert_string_equal(d.name, "mnist");
    assert_string_equal(d.class_names[7], "7");
    lk_dataset_free(&d);
    TU_FAILS_WITH(lk_data_open(spec, "train", 0, &d), LK_ERR_IO, "train-images-idx3-ubyte.gz");
    assert_non_null(strstr(lk_error_message(), "file not found"));

    /* cifar10:DIR test split. */
    snprintf(dir, sizeof dir, "%s/cf", tu_tmpdir());
    assert_int_equal(mkdir(dir, 0755), 0);
    write_cifar("cf/test_batch.bin", 2, 0, 0);
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    TU_OK(lk_data_open(spec, "test", 0, &d));
    assert_int_equal(d.n, 2);
    assert_string_equal(d.name, "cifar10");
    lk_dataset_free(&d);
    TU_FAILS_WITH(lk_data_open(spec, "train", 0, &d), LK_ERR_IO, "data_batch_1.bin");
}

static void test_gather_truncate(void **state)
{
    (void)state;
    uint8_t im[64], lb[16];
    const char *ip = tu_write("gt-images", im, good_images(im));
    const char *lp = tu_write("gt-labels", lb, good_labels(lb));
    lk_dataset d;
    TU_OK(lk_idx_load(ip, lp, &d));
    int32_t idx[2] = {2, 0}, y[2];
    float x[2 * ROWS * COLS];
    lk_dataset_gather(&d, idx, 2, x, y);
    for (int k = 0; k < ROWS * COLS; k++) {
        assert_true(x[k] == d.x[2 * ROWS * COLS + k] * (1.0f / 255.0f));
        assert_true(x[ROWS * COLS + k] == d.x[k] * (1.0f / 255.0f));
    }
    assert_int_equal(y[0], 9);
    assert_int_equal(y[1], 7);
    lk_dataset_truncate(&d, 2);
    assert_int_equal(d.n, 2);
    lk_dataset_truncate(&d, 5); /* never grows */
    assert_int_equal(d.n, 2);
    lk_dataset_free(&d);
}

/* Real Fashion-MNIST, when the Debian package is installed. */
static void test_fashion_mnist_real(void **state)
{
    (void)state;
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist", &st) != 0) {
        print_message("skipping: /usr/share/datasets/fashion-mnist not installed "
                      "(apt-get install dataset-fashion-mnist)\n");
        skip();
    }
    lk_dataset d;
    TU_OK(lk_data_open("fashion-mnist", "test", 0, &d));
    assert_int_equal(d.n, 10000);
    assert_shape3(&d.sample, 1, 28, 28);
    int counts[10] = {0};
    for (int i = 0; i < d.n; i++) {
        assert_in_range(d.y[i], 0, 9);
        counts[d.y[i]]++;
    }
    for (int c = 0; c < 10; c++) assert_int_equal(counts[c], 1000); /* balanced test set */
    unsigned brightest = 0; /* real images use the whole 8-bit range */
    for (size_t i = 0; i < (size_t)d.n * 784; i++) brightest = d.x[i] > brightest ? d.x[i] : brightest;
    assert_int_equal(brightest, 255);
    lk_dataset_free(&d);
}

/* Checks every step of one epoch for world ranks: slices are disjoint, have the
 * advertised sizes, and together cover exactly the kept part of each global batch. */
static void check_shards(int n, int batch, int world, int epoch)
{
    lk_sampler s[3];
    for (int r = 0; r < world; r++) {
        TU_OK(lk_sampler_init(&s[r], n, batch, r, world, 42, 1));
        lk_sampler_set_epoch(&s[r], epoch);
    }
    int G = batch * world, R = n % G;
    int expect_steps = n / G + (R >= world);
    int *seen = calloc((size_t)n, sizeof(int));
    int32_t *idx = malloc((size_t)batch * sizeof(int32_t));
    int covered = 0;
    for (int t = 0; t < s[0].steps; t++) {
        int total = 0;
        for (int r = 0; r < world; r++) {
            assert_int_equal(s[r].steps, expect_steps);
            int c = lk_sampler_batch(&s[r], t, idx);
            int want = t < n / G ? batch : (r + 1) * R / world - r * R / world;
            assert_int_equal(c, want);
            for (int k = 0; k < c; k++) {
                assert_in_range(idx[k], 0, n - 1);
                assert_int_equal(seen[idx[k]]++, 0); /* disjoint across ranks and steps */
                /* Every index belongs to this step's window of the permutation. */
                int pos = -1;
                for (int p = 0; p < n; p++)
                    if (s[r].perm[p] == idx[k]) pos = p;
                assert_in_range(pos, t * G, t * G + G - 1);
            }
            total += c;
        }
        assert_int_equal(total, lk_sampler_global_count(&s[0], t));
        assert_int_equal(total, t < n / G ? G : R);
        covered += total;
    }
    assert_int_equal(covered, n / G * G + (R >= world ? R : 0));
    assert_int_equal(lk_sampler_batch(&s[0], s[0].steps, idx), 0);
    assert_int_equal(lk_sampler_global_count(&s[0], -1), 0);
    free(seen);
    free(idx);
    for (int r = 0; r < world; r++) lk_sampler_free(&s[r]);
}

static void test_sampler_permutation(void **state)
{
    (void)state;
    enum { N = 1000 };
    lk_sampler a, b, c;
    TU_OK(lk_sampler_init(&a, N, 10, 0, 1, 7, 1));
    TU_OK(lk_sampler_init(&b, N, 10, 0, 1, 7, 1));
    TU_OK(lk_sampler_init(&c, N, 10, 0, 1, 8, 1));
    lk_sampler_set_epoch(&a, 3);
    lk_sampler_set_epoch(&b, 3);
    lk_sampler_set_epoch(&c, 3);
    static char hit[N];
    memset(hit, 0, sizeof hit);
    int fixed = 0;
    for (int i = 0; i < N; i++) {
        assert_in_range(a.perm[i], 0, N - 1);
        assert_int_equal(hit[a.perm[i]]++, 0);
        fixed += a.perm[i] == i;
    }
    assert_true(fixed < 20); /* shuffled, not identity */
    int32_t ref[N]; /* the documented algorithm, so every rank can reproduce it */
    for (int i = 0; i < N; i++) ref[i] = i;
    for (int i = N - 1; i > 0; i--) {
        uint32_t j = lk_rng_below(7, LK_RNG_SHUFFLE, 3, (uint64_t)i, (uint32_t)i + 1);
        int32_t t = ref[i];
        ref[i] = ref[j], ref[j] = t;
    }
    assert_memory_equal(a.perm, ref, sizeof ref);
    assert_memory_equal(a.perm, b.perm, N * sizeof(int32_t));
    assert_memory_not_equal(a.perm, c.perm, N * sizeof(int32_t)); /* seed matters */
    lk_sampler_set_epoch(&b, 4);
    assert_memory_not_equal(a.perm, b.perm, N * sizeof(int32_t));
    lk_sampler_set_epoch(&b, 3); /* epochs are reproducible out of order */
    assert_memory_equal(a.perm, b.perm, N * sizeof(int32_t));
    lk_sampler_free(&a);
    lk_sampler_free(&b);
    lk_sampler_free(&c);
    TU_OK(lk_sampler_init(&a, 5, 2, 0, 1, 7, 0));
    lk_sampler_set_epoch(&a, 9);
    for (int i = 0; i < 5; i++) assert_int_equal(a.perm[i], i);
    lk_sampler_free(&a);
}

static void test_sampler_shards(void **state)
{
    (void)state;
    static const int cases[][2] = {{10, 3}, {7, 3}, {12, 3}, {13, 3}, {14, 3}, {11, 3}, {100, 8}, {5, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int world = 2; world <= 3; world++)
            for (int epoch = 0; epoch < 2; epoch++)
                check_shards(cases[i][0], cases[i][1], world, epoch);
    check_shards(10, 4, 1, 0);
}

/* With shuffle off, a slice is `count` consecutive indices from `first`. */
static void expect_batch(const lk_sampler *s, int step, int count, int first)
{
    int32_t idx[8];
    assert_int_equal(lk_sampler_batch(s, step, idx), count);
    for (int k = 0; k < count; k++) assert_int_equal(idx[k], first + k);
}

static void test_sampler_tail(void **state)
{
    (void)state;
    lk_sampler s[3];
    /* n=10, batch 3, world 2: G=6, then a tail of 4 split 2/2. */
    for (int r = 0; r < 2; r++) TU_OK(lk_sampler_init(&s[r], 10, 3, r, 2, 1, 0));
    assert_int_equal(s[0].steps, 2);
    expect_batch(&s[0], 0, 3, 0);
    expect_batch(&s[1], 0, 3, 3);
    expect_batch(&s[0], 1, 2, 6);
    expect_batch(&s[1], 1, 2, 8);
    assert_int_equal(lk_sampler_global_count(&s[0], 0), 6);
    assert_int_equal(lk_sampler_global_count(&s[1], 1), 4);
    for (int r = 0; r < 2; r++) lk_sampler_free(&s[r]);
    /* n=7, batch 3, world 2: a tail of 1 < world is dropped. */
    TU_OK(lk_sampler_init(&s[0], 7, 3, 0, 2, 1, 1));
    assert_int_equal(s[0].steps, 1);
    lk_sampler_free(&s[0]);
    /* n=14, batch 3, world 3: a tail of 5 split by floors 0,1,3,5 as 1/2/2. */
    for (int r = 0; r < 3; r++) TU_OK(lk_sampler_init(&s[r], 14, 3, r, 3, 1, 0));
    expect_batch(&s[0], 1, 1, 9);
    expect_batch(&s[1], 1, 2, 10);
    expect_batch(&s[2], 1, 2, 12);
    for (int r = 0; r < 3; r++) lk_sampler_free(&s[r]);
}

static void test_sampler_args(void **state)
{
    (void)state;
    lk_sampler s;
    TU_FAILS_WITH(lk_sampler_init(&s, 10, 0, 0, 1, 1, 1), LK_ERR_ARG, "batch");
    TU_FAILS_WITH(lk_sampler_init(&s, 10, 2, 0, 0, 1, 1), LK_ERR_ARG, "world");
    TU_FAILS_WITH(lk_sampler_init(&s, 10, 2, -1, 2, 1, 1), LK_ERR_ARG, "rank -1");
    TU_FAILS_WITH(lk_sampler_init(&s, 10, 2, 2, 2, 1, 1), LK_ERR_ARG, "rank 2");
    TU_FAILS_WITH(lk_sampler_init(&s, 0, 2, 0, 1, 1, 1), LK_ERR_ARG, "empty");
    TU_FAILS_WITH(lk_sampler_init(&s, 2, 2, 0, 3, 1, 1), LK_ERR_ARG, "3 ranks");
    assert_null(s.perm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_good),
        cmocka_unit_test(test_idx_truncated),
        cmocka_unit_test(test_idx_magic),
        cmocka_unit_test(test_idx_labels),
        cmocka_unit_test(test_idx_trailing),
        cmocka_unit_test(test_idx_missing),
        cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_cifar_bad),
        cmocka_unit_test(test_data_open_specs),
        cmocka_unit_test(test_gather_truncate),
        cmocka_unit_test(test_fashion_mnist_real),
        cmocka_unit_test(test_sampler_permutation),
        cmocka_unit_test(test_sampler_shards),
        cmocka_unit_test(test_sampler_tail),
        cmocka_unit_test(test_sampler_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
