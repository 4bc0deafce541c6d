/* backend_cpu_emulate.c - bf16 products where lockstep emulates them (lk_cpu_bf16_emulated):
 * float32 products of operands rounded to bf16, which are the same values (a product of two
 * bf16 values is exact in float32; the sums are float32 either way).
 *
 * The operands are widened (bf16) or rounded to nearest even (float32) into the device's
 * cast buffer and the float32 product reads them there. A product whose operands hold more
 * than the block's values (EMU_BLOCK: 32 MB of float32) runs in blocks along one dimension,
 * so the buffer stays that size and every operand value is still widened once: along n
 * when A fits in half the block (B's columns a block at a time), along m when B does, else
 * along k (each block adding its part into C). A GPT-2 head's products (50304 x 768 weights,
 * a 1024 x 50304 logits gradient) widened whole took 360 MB here. */
#include "backend_cpu.h"
#include "bf16.h"

#define EMU_BLOCK (1L << 23)

static size_t emu_block = EMU_BLOCK;

size_t lk_cpu_emulation_block(size_t values)
{
    const size_t was = emu_block;
    emu_block = values ? LK_ALIGN_UP(LK_MAX(values, (size_t)64), 16) : EMU_BLOCK;
    return was;
}

static inline void round_row(const void *src, lk_dtype t, float *dst, long n)
{
    if (t == LK_BF16) {
        const uint16_t *s = src;
        for (long i = 0; i < n; i++) dst[i] = lk_bf16_to_f32(s[i]);
    } else {
        const float *s = src;
        for (long i = 0; i < n; i++) dst[i] = lk_bf16_to_f32(lk_bf16_rne(s[i]));
    }
}

void lk_cpu_round_f32(const void *src, lk_dtype t, float *dst, size_t n)
{
    const long ln = (long)n;
    if (t == LK_BF16) {
        const uint16_t *s = src;
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, dst[i] = lk_bf16_to_f32(s[i]););
    } else {
        const float *s = src;
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, dst[i] = lk_bf16_to_f32(lk_bf16_rne(s[i])););
    }
}

/* An operand as a product reads it: op(X) = X, or X^T when trans, X stored row-major with
 * leading dimension ld. */
typedef struct {
    const void *p;
    lk_dtype t;
    int trans, ld;
} operand;

/* op(X)[i0, i0 + ni) x [j0, j0 + nj) rounded into dst, stored as X is (transposed when
 * trans) without gaps; returns dst's leading dimension. */
static int widen(const operand *x, int i0, int ni, int j0, int nj, float *dst)
{
    const int r0 = x->trans ? j0 : i0, nr = x->trans ? nj : ni;
    const int c0 = x->trans ? i0 : j0, nc = x->trans ? ni : nj;
    const size_t es = lk_dtype_size(x->t);
    const char *base = (const char *)x->p + ((size_t)r0 * (size_t)x->ld + (size_t)c0) * es;
    if (nc == x->ld || nr == 1) {
        lk_cpu_round_f32(base, x->t, dst, (size_t)nr * (size_t)nc);
    } else {
        const long n = nr;
        LK_CPU_FOR(n * nc > LK_CPU_PAR_MIN, r, n,
                   round_row(base + (size_t)r * (size_t)x->ld * es, x->t, dst + (size_t)r * (size_t)nc, nc););
    }
    return nc;
}

typedef enum { WHOLE, SPLIT_N, SPLIT_M, SPLIT_K } split;

/* How g runs: whole (its spans rounded as they lie, gaps and all, so its leading dimensions
 * and strides hold; so do batched products, whose operands' spans interleave - attention's
 * heads - and would be widened again for each), or in blocks of *blk along one dimension;
 * *floats: the buffer. */
static split plan_split(const lk_gemm_desc *g, int *blk, size_t *floats)
{
    const size_t sa = LK_ALIGN_UP(lk_gemm_span_a(g), 16), sb = lk_gemm_span_b(g);
    const size_t m = (size_t)g->m, n = (size_t)g->n, k = (size_t)g->k, lim = emu_block;
    *floats = sa + sb;
    *blk = 0;
    if (sa + sb <= lim || g->count > 1) return WHOLE;
    const size_t va = LK_ALIGN_UP(m * k, 16), vb = LK_ALIGN_UP(k * n, 16);
    split s = SPLIT_K;
    size_t b = LK_MAX((size_t)1, lim / (m + n + 16)), dim = k;
    if (va <= lim / 2 && k <= lim / 2) {
        s = SPLIT_N, b = (lim - va) / k, dim = n;
    } else if (vb <= lim / 2 && k <= lim / 2) {
        s = SPLIT_M, b = (lim - vb) / k, dim = m;
    }
    *blk = (int)LK_MIN(b, dim);
    *floats = s == SPLIT_K ? LK_MAX(lim, LK_ALIGN_UP(m * *blk, 16) + n * *blk) : lim;
    return s;
}

/* The float32 product of block [b0, b0 + nb) of g's split dimension s: its descriptor, and
 * (run) its operands rounded into buf and the product into C. */
static void run_block(lk_device *d, const lk_gemm_desc *g, split s, int b0, int nb, const operand *A,
                      const operand *B, float *buf, float *cc, int run, lk_gemm_desc *e)
{
    *e = *g;
    e->compute = e->a_type = e->b_type = LK_F32;
    int m0 = 0, n0 = 0, k0 = 0;
    if (s == SPLIT_N) e->n = nb, n0 = b0;
    if (s == SPLIT_M) e->m = nb, m0 = b0;
    if (s == SPLIT_K) e->k = nb, k0 = b0, e->beta = b0 == 0 ? g->beta : 1.0f;
    e->lda = A->trans ? e->m : e->k;
    e->ldb = B->trans ? e->k : e->n;
    if (!run) return;
    float *ra = buf, *rb = buf + LK_ALIGN_UP((size_t)e->m * (size_t)e->k, 16);
    /* A once, before the first of n's blocks; else with each block */
    if (s != SPLIT_N || b0 == 0) widen(A, m0, e->m, k0, e->k, ra);
    widen(B, k0, e->k, n0, e->n, rb);
    lk_cpu_matmul(d, e, ra, rb, cc + (size_t)m0 * (size_t)g->ldc + (size_t)n0);
}

static lk_gemm_desc whole(const lk_gemm_desc *g)
{
    lk_gemm_desc e = *g;
    e.compute = e.a_type = e.b_type = LK_F32;
    return e;
}

lk_status lk_cpu_emulated_plan(lk_device *d, const lk_gemm_desc *g)
{
    int blk;
    size_t floats;
    const split s = plan_split(g, &blk, &floats);
    if (!lk_cpu_cast_floats(lk_cpu_of(d), floats)) return lk_cpu_status(d);
    if (s == WHOLE) {
        const lk_gemm_desc e = whole(g);
        return lk_cpu_gemm_plan(d, &e);
    }
    const int dim = s == SPLIT_N ? g->n : s == SPLIT_M ? g->m : g->k;
    const operand A = {NULL, g->a_type, g->trans_a, g->lda}, B = {NULL, g->b_type, g->trans_b, g->ldb};
    for (int b0 = 0; b0 < dim; b0 += blk) { /* (every block shape: the full one, the last one, k's first) */
        lk_gemm_desc e;
        run_block(d, g, s, b0, LK_MIN(blk, dim - b0), &A, &B, NULL, NULL, 0, &e);
        LK_CHECK(lk_cpu_gemm_plan(d, &e));
    }
    return LK_OK;
}

void lk_cpu_emulated_matmul(lk_device *d, const lk_gemm_desc *g, const void *a, const void *b, float *cc)
{
    int blk;
    size_t floats;
    const split s = plan_split(g, &blk, &floats);
    float *buf = lk_cpu_cast_floats(lk_cpu_of(d), floats);
    if (!buf) return;
    if (s == WHOLE) {
        const lk_gemm_desc e = whole(g);
        const size_t na = LK_ALIGN_UP(lk_gemm_span_a(g), 16);
        lk_cpu_round_f32(a, g->a_type, buf, lk_gemm_span_a(g));
        lk_cpu_round_f32(b, g->b_type, buf + na, lk_gemm_span_b(g));
        lk_cpu_matmul(d, &e, buf, buf + na, cc);
        return;
    }
    const int dim = s == SPLIT_N ? g->n : s == SPLIT_M ? g->m : g->k;
    const operand A = {a, g->a_type, g->trans_a, g->lda}, B = {b, g->b_type, g->trans_b, g->ldb};
    for (int b0 = 0; b0 < dim; b0 += blk) {
        lk_gemm_desc e;
        run_block(d, g, s, b0, LK_MIN(blk, dim - b0), &A, &B, buf, cc, 1, &e);
    }
}
