/* alloc_count.h - a counting allocator for the "nothing is allocated inside a step"
 * tests. Include it in exactly one file of a test executable: it interposes glibc's
 * malloc family (not under ASan, which owns malloc itself; ALLOC_COUNTED is 0 there).
 *
 * lockstep allocates nothing inside a step. The one exception it cannot avoid is
 * oneDNN's execute, which builds a small map of the primitive's arguments (a few
 * blocks of tens of bytes) and frees it before it returns; the CPU backend marks those
 * calls (lk_cpu_in_onednn), so every allocation is sorted: outside oneDNN's execute
 * (must be none), or inside it (must be small and freed before it returns). */
#ifndef LK_TEST_ALLOC_COUNT_H
#define LK_TEST_ALLOC_COUNT_H

#include <errno.h>
#include <stddef.h>

#include "core/backend_cpu.h"

typedef struct {
    long outside;      /* allocations and frees outside oneDNN's execute */
    long in_allocs;    /* allocations inside it */
    long in_frees;     /* frees inside it */
    size_t in_largest; /* the largest of those, in bytes */
} alloc_counts;

/* Blocks oneDNN's execute may take and free again: its argument map's, and, on CPUs where
 * its convolutions and products go through its JIT gemm (AVX2 without AVX-512: an AMD EPYC
 * of that kind), the gemm driver's per-call packing buffer (16640 bytes there). Lockstep's
 * own code allocates nothing after the build; a larger block would be a scratchpad oneDNN
 * was not handed. */
#define ALLOC_SMALL 32768

#ifndef LK_SANITIZE
#define ALLOC_COUNTED 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

static _Atomic int alloc_counting;
static _Atomic long alloc_outside, alloc_in, free_in;
static _Atomic size_t alloc_in_largest;

static void count_alloc(size_t n)
{
    if (!alloc_counting) return;
    if (!lk_cpu_in_onednn()) {
        alloc_outside++;
        return;
    }
    alloc_in++;
    size_t big = alloc_in_largest;
    while (n > big && !__atomic_compare_exchange_n(&alloc_in_largest, &big, n, 0, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST)) {
    }
}

void *malloc(size_t n) { return count_alloc(n), __libc_malloc(n); }
void *calloc(size_t a, size_t b) { return count_alloc(a * b), __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return count_alloc(n), __libc_realloc(p, n); }
void *aligned_alloc(size_t al, size_t n) { return count_alloc(n), __libc_memalign(al, n); }
void *memalign(size_t al, size_t n) { return count_alloc(n), __libc_memalign(al, n); }
void *valloc(size_t n) { return count_alloc(n), __libc_valloc(n); }
void *pvalloc(size_t n) { return count_alloc(n), __libc_pvalloc(n); }
int posix_memalign(void **out, size_t al, size_t n)
{
    count_alloc(n);
    if (al < sizeof(void *) || (al & (al - 1))) return EINVAL;
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p)
{
    if (p && alloc_counting) {
        if (lk_cpu_in_onednn()) free_in++;
        else alloc_outside++;
    }
    __libc_free(p);
}

static inline void alloc_count_start(void)
{
    alloc_outside = alloc_in = free_in = 0;
    alloc_in_largest = 0;
    alloc_counting = 1;
}

static inline alloc_counts alloc_count_stop(void)
{
    alloc_counting = 0;
    return (alloc_counts){alloc_outside, alloc_in, free_in, alloc_in_largest};
}
#else
#define ALLOC_COUNTED 0
static inline void alloc_count_start(void) {}
static inline alloc_counts alloc_count_stop(void) { return (alloc_counts){0, 0, 0, 0}; }
#endif

/* 1 when the counts show no allocation but oneDNN's small, freed argument maps. */
static inline int alloc_counts_clean(alloc_counts c)
{
    return c.outside == 0 && c.in_allocs == c.in_frees && c.in_largest <= ALLOC_SMALL;
}

#endif
