/* dataset.h - in-memory datasets (labelled images, token streams cut into windows)
 * and the rank-sharded sampler. */
#ifndef LK_DATASET_H
#define LK_DATASET_H

#include "../core/tensor.h"

typedef struct {
    char name[64];          /* "fashion-mnist", "cifar10", ... */
    char source[512];       /* file or directory it came from */
    int n;                  /* samples */
    lk_shape sample;        /* per sample, e.g. {3, {1, 28, 28}} */
    int nclasses;
    uint8_t *x;             /* n * numel(sample) 8-bit pixels, host (a quarter of the
                               memory traffic of floats); gather scales them to [0, 1] */
    int32_t *y;             /* n labels in [0, nclasses) */
    const char *const *class_names; /* static table or NULL */
    /* token streams (text:, tokens:): sample i is the window tok[i*ylen, i*ylen + ylen),
     * its labels the window one token later; x and y stay NULL */
    uint16_t *tok;
    long ntok;
    int ylen;               /* labels per sample: 1 for images (0 reads as 1), ctx for windows */
} lk_dataset;

/* IDX pair (images idx3/ubyte, labels idx1/ubyte); each may be plain or gzip
 * (detected from the content, not the name). Checks magic, dimensions, the file
 * length and that the counts agree; errors name the file and what was wrong. */
lk_status lk_idx_load(const char *images_path, const char *labels_path, lk_dataset *out);
/* An IDX image file alone (for inference); labels are all 0. */
lk_status lk_idx_load_images(const char *images_path, lk_dataset *out);
/* The images of a file to classify: a binary PGM (P5, 8-bit: one sample) when it starts
 * with "P5", else an IDX image file (plain or gzip; labels all 0). */
lk_status lk_image_file_load(const char *path, lk_dataset *out);
/* CIFAR-10 binary batches (each record: 1 label byte + 3072 pixel bytes). */
lk_status lk_cifar10_load(const char *const *paths, int npaths, lk_dataset *out);

/* Token windows of ctx tokens (tokens.c): kind "text" (arg: a file) or "tokens" (arg: a
 * glob of llm.c shards); train selects the split. */
lk_status lk_tokens_open(const char *kind, const char *arg, int train, int ctx, lk_dataset *out);
/* Reads an llm.c shard's tokens (checked: header, length, GPT-2's vocabulary). */
lk_status lk_tokens_read_shard(const char *path, uint16_t **tok, long *ntok);
/* Writes n tokens as an llm.c shard (header: magic 20240520, version 1, count), atomically. */
lk_status lk_tokens_write_shard(const char *path, const uint16_t *tok, size_t n);

/* Opens a dataset split from a --data SPEC:
 *   fashion-mnist[:DIR]  (default DIR /usr/share/datasets/fashion-mnist)
 *   mnist:DIR            (same IDX layout)
 *   cifar10:DIR          (cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin)
 *   text:FILE            bytes as tokens, windows of ctx
 *   tokens:PATTERN       llm.c token shards, windows of ctx
 * split: "train" or "test" (the validation part for token data); ctx is used by the
 * token kinds only. */
lk_status lk_data_open(const char *spec, const char *split, int ctx, lk_dataset *out);
/* Labels per sample: 1 for images, the window length for token data. */
static inline int lk_dataset_ylen(const lk_dataset *d) { return d->ylen > 0 ? d->ylen : 1; }
void lk_dataset_free(lk_dataset *d);
size_t lk_dataset_sample_numel(const lk_dataset *d);
/* A view of samples [lo, hi) of d (shares its memory; not to be freed). */
lk_dataset lk_dataset_view(const lk_dataset *d, int lo, int hi);
/* Keeps only the first n samples (n <= d->n). */
void lk_dataset_truncate(lk_dataset *d, int n);

/* Gathers samples idx[0..count) into x (count * sample numel floats: pixel/255, or token
 * ids) and y (count * ylen labels; may be NULL). */
void lk_dataset_gather(const lk_dataset *d, const int32_t *idx, int count, float *x, int32_t *y);

/* Sampler: one seeded permutation per epoch, identical on every rank; the global
 * batch is batch * world, and rank r takes its slice [r*batch, (r+1)*batch) of
 * each global batch. The final, short global batch is split as evenly as possible
 * across ranks; if it would leave a rank with nothing it is dropped, so no rank
 * ever waits for a batch another rank does not have. */
typedef struct {
    int n, batch, rank, world;
    uint64_t seed;
    int shuffle;
    long epoch;
    int steps;              /* steps per epoch */
    int32_t *perm;          /* n entries */
} lk_sampler;

lk_status lk_sampler_init(lk_sampler *s, int n, int batch, int rank, int world, uint64_t seed,
                          int shuffle);
void lk_sampler_free(lk_sampler *s);
/* Computes the epoch's permutation in place (no allocation). */
void lk_sampler_set_epoch(lk_sampler *s, long epoch);
/* v[0, n) shuffled in place (Fisher-Yates from the top), the draws those of the counter-based
 * generator's (seed, stream, key) - the same on every rank and device. */
void lk_shuffle(int32_t *v, int n, uint64_t seed, uint32_t stream, uint64_t key);
/* This rank's indices for step `step` of the epoch; returns how many (<= batch). */
int lk_sampler_batch(const lk_sampler *s, int step, int32_t *idx);
/* Where this rank's slice starts within the global batch of `step`. */
int lk_sampler_first(const lk_sampler *s, int step);
/* Samples in the whole global batch of `step` (for averaging across ranks). */
int lk_sampler_global_count(const lk_sampler *s, int step);
/* The sampler's t-th step counted over epochs (a federated client going round its own
 * shard): moves to epoch t / steps where it is not there and returns the step in it. */
int lk_sampler_cycle(lk_sampler *s, long t);
/* A copy of samples idx[0..n) of an image set d, in that order (free with lk_dataset_free). */
lk_status lk_dataset_subset(const lk_dataset *d, const int32_t *idx, int n, lk_dataset *out);

#endif
