/* sampler.c - the rank-sharded, per-epoch shuffled sampler.
 *
 * Every rank computes the same permutation from (seed, epoch) with the
 * counter-based RNG, so no indices are ever exchanged between ranks. */
#include "dataset.h"

#include <limits.h>
#include <string.h>

#include "../core/rng.h"

/* The last global batch holds R = n mod G samples; it is kept only if every
 * rank gets at least one of them (R >= world). */
static int tail_size(const lk_sampler *s)
{
    return s->n % (s->batch * s->world);
}

static int tail_kept(const lk_sampler *s) { return tail_size(s) >= s->world; }

lk_status lk_sampler_init(lk_sampler *s, int n, int batch, int rank, int world, uint64_t seed,
                          int shuffle)
{
    memset(s, 0, sizeof *s);
    if (batch < 1) return LK_ERR(LK_ERR_ARG, "sampler: batch must be >= 1 (got %d)", batch);
    if (world < 1) return LK_ERR(LK_ERR_ARG, "sampler: world must be >= 1 (got %d)", world);
    if (rank < 0 || rank >= world)
        return LK_ERR(LK_ERR_ARG, "sampler: rank %d is outside 0..%d", rank, world - 1);
    if (n < 1) return LK_ERR(LK_ERR_ARG, "sampler: dataset is empty (n = %d)", n);
    if ((long long)batch * world > INT_MAX)
        return LK_ERR(LK_ERR_ARG, "sampler: global batch %d x %d ranks is too large", batch,
                      world);
    if (n < world)
        return LK_ERR(LK_ERR_ARG,
                      "sampler: %d samples cannot give every one of %d ranks a sample", n, world);
    s->perm = lk_malloc((size_t)n * sizeof(int32_t));
    if (!s->perm) return LK_ERR(LK_ERR_NOMEM, "sampler: cannot allocate %d indices", n);
    s->n = n;
    s->batch = batch;
    s->rank = rank;
    s->world = world;
    s->seed = seed;
    s->shuffle = shuffle;
    s->steps = n / (batch * world) + tail_kept(s);
    lk_sampler_set_epoch(s, 0);
    return LK_OK;
}

void lk_sampler_free(lk_sampler *s)
{
    if (!s) return;
    lk_free(s->perm);
    memset(s, 0, sizeof *s);
}

void lk_shuffle(int32_t *v, int n, uint64_t seed, uint32_t stream, uint64_t key)
{
    /* Fisher-Yates from the top: position i swaps with a uniform j in [0, i]. */
    for (int i = n - 1; i > 0; i--) {
        uint32_t j = lk_rng_below(seed, stream, key, (uint64_t)i, (uint32_t)i + 1);
        int32_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

void lk_sampler_set_epoch(lk_sampler *s, long epoch)
{
    s->epoch = epoch;
    for (int i = 0; i < s->n; i++) s->perm[i] = i;
    if (s->shuffle) lk_shuffle(s->perm, s->n, s->seed, LK_RNG_SHUFFLE, (uint64_t)epoch);
}

int lk_sampler_batch(const lk_sampler *s, int step, int32_t *idx)
{
    if (step < 0 || step >= s->steps) return 0;
    int global = s->batch * s->world;
    int full = s->n / global;
    size_t start;
    int count;
    if (step < full) {
        start = (size_t)step * global + (size_t)s->rank * s->batch;
        count = s->batch;
    } else {
        /* Floor split: rank r takes [r*R/world, (r+1)*R/world) of the tail. */
        long long r = tail_size(s);
        long long lo = s->rank * r / s->world, hi = (s->rank + 1) * r / s->world;
        start = (size_t)full * global + (size_t)lo;
        count = (int)(hi - lo);
    }
    memcpy(idx, s->perm + start, (size_t)count * sizeof(int32_t));
    return count;
}

int lk_sampler_first(const lk_sampler *s, int step)
{
    if (step < 0 || step >= s->steps) return 0;
    if (step < s->n / (s->batch * s->world)) return s->rank * s->batch;
    return (int)((long long)s->rank * tail_size(s) / s->world);
}

int lk_sampler_global_count(const lk_sampler *s, int step)
{
    if (step < 0 || step >= s->steps) return 0;
    int global = s->batch * s->world;
    return step < s->n / global ? global : tail_size(s);
}

int lk_sampler_cycle(lk_sampler *s, long t)
{
    const long e = t / s->steps;
    if (e != s->epoch) lk_sampler_set_epoch(s, e);
    return (int)(t % s->steps);
}
