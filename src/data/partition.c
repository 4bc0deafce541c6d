/* partition.c - the training set dealt to federated clients (partition.h). */
#include "partition.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

/* what the draws of the deal are keyed by (rng a), beside the class or the client */
enum { KEY_PERM = 1, KEY_CLASS_ORDER = 2, KEY_GAMMA = 3 };
#define KEY(what, i) (((uint64_t)(what) << 40) | (uint64_t)(i))

lk_status lk_partition_parse(const char *text, lk_partition_spec *out)
{
    char *end = NULL;
    memset(out, 0, sizeof *out);
    if (!strcmp(text, "iid")) return LK_OK;
    if (!strncmp(text, "classes:", 8)) {
        long k = strtol(text + 8, &end, 10);
        if (end == text + 8 || *end || k < 1 || k > 1 << 16)
            return LK_ERR(LK_ERR_ARG, "--partition %s: classes:K takes a whole K from 1", text);
        out->kind = LK_PART_CLASSES, out->classes = (int)k;
        return LK_OK;
    }
    if (!strncmp(text, "dirichlet:", 10)) {
        double a = strtod(text + 10, &end);
        if (end == text + 10 || *end || !(a > 0.0 && a <= 1e6))
            return LK_ERR(LK_ERR_ARG, "--partition %s: dirichlet:A takes a positive A", text);
        out->kind = LK_PART_DIRICHLET, out->alpha = a;
        return LK_OK;
    }
    return LK_ERR(LK_ERR_ARG, "--partition: expected iid, classes:K or dirichlet:A, got '%s'", text);
}

/* uniform in (0, 1) and standard normal in double, from one counter block each */
static double uniform01(uint64_t seed, uint64_t key, uint64_t i)
{
    uint32_t w[4];
    lk_rng_block(seed, LK_RNG_PARTITION, key, i, w);
    return ((double)(((uint64_t)w[0] << 21) ^ (w[1] >> 11)) + 0.5) / 9007199254740992.0; /* 53 bits */
}

static double normal(uint64_t seed, uint64_t key, uint64_t i)
{
    uint32_t w[4];
    lk_rng_block(seed, LK_RNG_PARTITION, key, i, w);
    const double u1 = ((double)w[0] + 1.0) / 4294967297.0, u2 = (double)w[1] / 4294967296.0;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Gamma(a, 1) by Marsaglia and Tsang (a < 1: Gamma(a + 1) U^(1/a)), draws keyed by key */
static double gamma_draw(double a, uint64_t seed, uint64_t key)
{
    uint64_t i = 0;
    double boost = 1.0;
    if (a < 1.0) boost = pow(uniform01(seed, key, i++), 1.0 / a), a += 1.0;
    const double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        const double x = normal(seed, key, i++), v0 = 1.0 + c * x;
        if (v0 <= 0.0) continue;
        const double v = v0 * v0 * v0, u = uniform01(seed, key, i++);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return boost * d * v;
    }
}

/* The samples of each class, each list in a seeded order: by[c][0, count[c]). */
static lk_status by_class(const lk_dataset *d, uint64_t seed, int32_t ***by, int **count)
{
    const int C = d->nclasses;
    *by = lk_calloc((size_t)C, sizeof **by);
    *count = lk_calloc((size_t)C, sizeof **count);
    if (!*by || !*count) return LK_ERR(LK_ERR_NOMEM, "--partition: out of memory");
    for (int i = 0; i < d->n; i++) (*count)[d->y[i]]++;
    for (int c = 0; c < C; c++)
        if ((*count)[c] && !((*by)[c] = lk_malloc((size_t)(*count)[c] * sizeof ***by)))
            return LK_ERR(LK_ERR_NOMEM, "--partition: out of memory");
    int *fill = lk_calloc((size_t)C, sizeof *fill);
    if (!fill) return LK_ERR(LK_ERR_NOMEM, "--partition: out of memory");
    for (int i = 0; i < d->n; i++) (*by)[d->y[i]][fill[d->y[i]]++] = i;
    lk_free(fill);
    for (int c = 0; c < C; c++) lk_shuffle((*by)[c], (*count)[c], seed, LK_RNG_PARTITION, KEY(KEY_PERM, c));
    return LK_OK;
}

/* classes:K - which clients hold class c: holds[c * world + r] */
static lk_status deal_classes(const lk_dataset *d, int K, int world, uint64_t seed, unsigned char *holds,
                              const int *count)
{
    const int C = d->nclasses;
    int present = 0;
    for (int c = 0; c < C; c++) present += count[c] > 0;
    if (K > present)
        return LK_ERR(LK_ERR_ARG, "--partition classes:%d: the set has %d classes", K, present);
    if ((long)world * K < present)
        return LK_ERR(LK_ERR_ARG, "--partition classes:%d on %d clients holds at most %ld of the %d classes", K,
                      world, (long)world * K, present);
    int32_t *order = lk_malloc((size_t)C * sizeof *order);
    int *clients = lk_calloc((size_t)C, sizeof *clients);
    if (!order || !clients) {
        lk_free(order), lk_free(clients);
        return LK_ERR(LK_ERR_NOMEM, "--partition: out of memory");
    }
    for (int c = 0; c < C; c++) order[c] = c;
    lk_shuffle(order, C, seed, LK_RNG_PARTITION, KEY(KEY_CLASS_ORDER, 0)); /* (ties go in this order) */
    for (int round = 0; round < K; round++)
        for (int r = 0; r < world; r++) {
            int best = -1;
            for (int k = 0; k < C; k++) {
                const int c = order[k];
                if (!count[c] || holds[(size_t)c * world + r]) continue;
                if (best < 0 || clients[c] < clients[best]) best = c;
            }
            holds[(size_t)best * world + r] = 1, clients[best]++;
        }
    lk_free(order);
    lk_free(clients);
    return LK_OK;
}

/* dirichlet:A - how many of class c's samples each client takes: share[c * world + r] */
static void deal_dirichlet(const lk_dataset *d, double alpha, int world, uint64_t seed, const int *count,
                           int *share, double *p)
{
    for (int c = 0; c < d->nclasses; c++) {
        double sum = 0.0;
        for (int r = 0; r < world; r++) sum += p[r] = gamma_draw(alpha, seed, KEY(KEY_GAMMA, (uint64_t)c * world + r));
        double cum = 0.0;
        int given = 0;
        for (int r = 0; r < world; r++) { /* cut points of the cumulative proportions */
            cum += p[r] / sum;
            const int upto = r == world - 1 ? count[c] : (int)floor(cum * count[c] + 0.5);
            share[(size_t)c * world + r] = LK_MAX(0, upto - given);
            given = LK_MAX(given, upto);
        }
    }
}

static int cmp_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

lk_status lk_partition(const lk_dataset *d, const lk_partition_spec *p, int world, uint64_t seed, int rank,
                       int32_t **idx, int *n)
{
    *idx = NULL, *n = 0;
    if (world < 1 || rank < 0 || rank >= world) return LK_ERR(LK_ERR_ARG, "--partition: rank %d of %d", rank, world);
    if (d->n < world) return LK_ERR(LK_ERR_ARG, "--partition: %d samples for %d clients", d->n, world);
    if (p->kind != LK_PART_IID && (!d->y || lk_dataset_ylen(d) != 1 || d->nclasses < 1))
        return LK_ERR(LK_ERR_ARG, "--partition %s: needs a labelled set of classes (one label a sample)",
                      p->kind == LK_PART_CLASSES ? "classes:K" : "dirichlet:A");
    int32_t *out = lk_malloc((size_t)d->n * sizeof *out);
    if (!out) return LK_ERR(LK_ERR_NOMEM, "--partition: out of memory");
    lk_status st = LK_OK;
    int m = 0;
    if (p->kind == LK_PART_IID) {
        for (int i = 0; i < d->n; i++) out[i] = i;
        lk_shuffle(out, d->n, seed, LK_RNG_PARTITION, KEY(KEY_PERM, 0));
        const long lo = (long)d->n * rank / world, hi = (long)d->n * (rank + 1) / world;
        memmove(out, out + lo, (size_t)(hi - lo) * sizeof *out);
        m = (int)(hi - lo);
    } else {
        const int C = d->nclasses;
        int32_t **by = NULL;
        int *count = NULL, *share = lk_calloc((size_t)C * world, sizeof *share);
        unsigned char *holds = lk_calloc((size_t)C * world, 1);
        double *pr = lk_calloc((size_t)world, sizeof *pr);
        st = share && holds && pr ? by_class(d, seed, &by, &count) : LK_ERR(LK_ERR_NOMEM, "--partition: out of memory");
        if (st == LK_OK && p->kind == LK_PART_CLASSES) st = deal_classes(d, p->classes, world, seed, holds, count);
        if (st == LK_OK && p->kind == LK_PART_CLASSES)
            for (int c = 0; c < C; c++) { /* a class's samples evenly among its holders */
                int h = 0, k = 0;
                for (int r = 0; r < world; r++) h += holds[(size_t)c * world + r];
                for (int r = 0; r < world; r++)
                    if (holds[(size_t)c * world + r])
                        share[(size_t)c * world + r] = (int)((long)count[c] * (k + 1) / h - (long)count[c] * k / h), k++;
            }
        if (st == LK_OK && p->kind == LK_PART_DIRICHLET) deal_dirichlet(d, p->alpha, world, seed, count, share, pr);
        for (int c = 0; st == LK_OK && c < C; c++) {
            int from = 0;
            for (int r = 0; r < rank; r++) from += share[(size_t)c * world + r];
            for (int k = 0; k < share[(size_t)c * world + rank]; k++) out[m++] = by[c][from + k];
        }
        for (int r = 0; st == LK_OK && r < world; r++) { /* no client may be empty */
            long total = 0;
            for (int c = 0; c < C; c++) total += share[(size_t)c * world + r];
            if (!total)
                st = LK_ERR(LK_ERR_ARG, "--partition leaves client %d of %d without samples (%s)", r, world,
                            p->kind == LK_PART_DIRICHLET ? "a larger A, or fewer clients" : "fewer clients");
        }
        for (int c = 0; by && c < C; c++) lk_free(by[c]);
        lk_free(by), lk_free(count), lk_free(share), lk_free(holds), lk_free(pr);
    }
    if (st != LK_OK) {
        lk_free(out);
        return st;
    }
    qsort(out, (size_t)m, sizeof *out, cmp_i32);
    *idx = out, *n = m;
    return LK_OK;
}
