/* shard.c - contiguous, balanced slices of the flat buffer. */
#include "shard.h"

#include "../core/common.h"

void lk_shard_init(lk_shard *s, size_t n, int world, int rank)
{
    s->n = n;
    s->world = world < 1 ? 1 : world;
    s->rank = rank;
    const size_t w = (size_t)s->world;
    s->per = LK_ALIGN_UP((n + w - 1) / w, LK_SHARD_ALIGN);
    s->lo = lk_shard_lo(s, rank);
    s->hi = lk_shard_hi(s, rank);
}

size_t lk_shard_lo(const lk_shard *s, int r) { return LK_MIN(s->n, s->per * (size_t)r); }
size_t lk_shard_hi(const lk_shard *s, int r) { return LK_MIN(s->n, s->per * (size_t)(r + 1)); }

void lk_shard_counts(const lk_shard *s, size_t begin, size_t end, size_t *counts)
{
    for (int r = 0; r < s->world; r++) {
        const size_t a = LK_MAX(begin, lk_shard_lo(s, r)), b = LK_MIN(end, lk_shard_hi(s, r));
        counts[r] = b > a ? b - a : 0;
    }
}

void lk_shard_mine(const lk_shard *s, size_t begin, size_t end, size_t *lo, size_t *hi)
{
    *lo = LK_MAX(begin, s->lo);
    *hi = LK_MAX(*lo, LK_MIN(end, s->hi));
}
