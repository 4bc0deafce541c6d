/* shard.h - which part of the flat parameter buffer each rank owns (ZeRO).
 *
 * The flat buffer of n floats is cut into world contiguous slices of `per` floats
 * (n / world rounded up to a multiple of 16 floats, a cache line), rank r owning
 * [min(n, r per), min(n, (r + 1) per)): balanced to within one line, the last slice the
 * short one. Tensors need not divide by the number of ranks: a tensor, or a gradient
 * bucket, may straddle two or more ranks' slices, and lk_shard_counts says how much of a
 * range falls in each, the layout the in-place reduce-scatter and all-gather of comm.h
 * take. */
#ifndef LK_SHARD_H
#define LK_SHARD_H

#include <stddef.h>

#define LK_SHARD_ALIGN 16

typedef struct {
    size_t n;       /* floats of the flat buffer */
    int world, rank;
    size_t per;     /* floats per slice (the last may be shorter, or empty) */
    size_t lo, hi;  /* this rank's slice */
} lk_shard;

void lk_shard_init(lk_shard *s, size_t n, int world, int rank);
size_t lk_shard_lo(const lk_shard *s, int r);
size_t lk_shard_hi(const lk_shard *s, int r);
/* counts[r] = floats of [begin, end) in rank r's slice (world entries); they add up to
 * end - begin and lie back to back in rank order, as comm.h's counts do. */
void lk_shard_counts(const lk_shard *s, size_t begin, size_t end, size_t *counts);
/* [begin, end) intersected with this rank's slice into *lo, *hi (lo == hi: empty). */
void lk_shard_mine(const lk_shard *s, size_t begin, size_t end, size_t *lo, size_t *hi);

#endif
