/* backend_cpu_dnnl.c - the CPU backend's compute library: oneDNN.
 *
 * Every matrix product (gemm, gemm_batched) is a oneDNN matmul primitive and every
 * convolution a set of oneDNN convolution primitives (backend_cpu_conv.c). oneDNN
 * chooses its kernels from the CPU's features when a primitive is created (AVX2,
 * AVX-512, AMX, ...), so nothing here knows a CPU model. Primitives are created while
 * the model plans (gemm_plan during lk_model_build's dry run, the convolution size
 * queries), cached by shape in the device and reused; they all share one scratchpad the
 * device owns (oneDNN's user scratchpad mode), so a step allocates no buffer. A shape
 * first met during a step (an epoch's short last batch) creates its primitive then,
 * once. A primitive that cannot be created is the device's first failure, returned by
 * the status entry where the trainer already checks it. */
#include <cpuid.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "bf16.h"

#define CACHE_HEADS 1024 /* hash chains */
#define CACHE_MAX 512    /* live entries; the least recently used goes beyond that */

typedef struct {
    lk_cpu_key key;
    void *obj;
    void (*destroy)(void *obj);
    unsigned long used; /* the cache clock at the last lookup (0: a free slot) */
    int next;           /* next entry of the chain, -1 at its end */
    int live;           /* holds an object (else a free slot, in no chain) */
    int sized;          /* created for a dry plan: dropped at the next lookup outside one */
} cache_entry;

struct lk_cpu {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int heads[CACHE_HEADS];
    cache_entry entries[CACHE_MAX];
    int nentries;
    unsigned long clock;
    void *scratch; /* the scratchpad of every primitive, sized for the largest */
    size_t scratch_bytes;
    void *packed;  /* B of a product in oneDNN's blocked layout (see matmul_create) */
    size_t packed_bytes;
    void *cast;    /* a bf16 product's float32 operands rounded to bf16 */
    size_t cast_bytes;
    size_t want_scratch, want_packed, want_cast; /* what a dry plan (d->sizing) found they need */
    int bf16;      /* 0 not probed yet; 1 oneDNN has bf16 primitives here; 2 it has none (a CPU
                      without AVX-512: lk_cpu_bf16_emulated) */
    const lk_device *dev;
    lk_status failed; /* the first failure (LK_OK: none) and its message */
    char why[320];
};

/* ---- bookkeeping the allocation test reads ---- */

static _Thread_local int in_onednn;
int lk_cpu_in_onednn(void) { return in_onednn; }

lk_cpu *lk_cpu_of(lk_device *d) { return (lk_cpu *)d->impl; }
dnnl_engine_t lk_cpu_engine(lk_cpu *c) { return c->engine; }

void lk_cpu_fail(lk_cpu *c, lk_status s, const char *fmt, ...)
{
    if (c->failed != LK_OK) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    c->failed = s;
}

lk_status lk_cpu_status(lk_device *d)
{
    lk_cpu *c = lk_cpu_of(d);
    if (c->failed == LK_OK) return LK_OK;
    return LK_ERR(c->failed, "%s", c->why);
}

/* ---- the cache ---- */

static unsigned hash_key(const lk_cpu_key *k)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    const unsigned char *p = (const unsigned char *)k;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return (unsigned)(h ^ (h >> 32)) % CACHE_HEADS;
}

static void unlink_entry(lk_cpu *c, int e)
{
    int *link = &c->heads[hash_key(&c->entries[e].key)];
    while (*link != e) link = &c->entries[*link].next;
    *link = c->entries[e].next;
}

static void drop_entry(lk_cpu *c, int e)
{
    unlink_entry(c, e);
    c->entries[e].destroy(c->entries[e].obj);
    c->entries[e].live = 0;
    c->entries[e].used = 0;
}

void *lk_cpu_cache_find(lk_cpu *c, const lk_cpu_key *k)
{
    for (int i = c->heads[hash_key(k)]; i >= 0; i = c->entries[i].next)
        if (!memcmp(&c->entries[i].key, k, sizeof *k)) {
            if (c->entries[i].sized && !c->dev->sizing) { /* its buffers were never grown */
                drop_entry(c, i);
                return NULL;
            }
            c->entries[i].used = ++c->clock;
            return c->entries[i].obj;
        }
    return NULL;
}

void lk_cpu_cache_put(lk_cpu *c, const lk_cpu_key *k, void *obj, void (*destroy)(void *))
{
    int e;
    if (c->nentries < CACHE_MAX) {
        e = c->nentries++;
    } else { /* a free slot, else the least recently used */
        e = 0;
        for (int i = 1; i < CACHE_MAX; i++)
            if (c->entries[i].used < c->entries[e].used) e = i;
        if (c->entries[e].live) drop_entry(c, e);
    }
    unsigned h = hash_key(k);
    c->entries[e] = (cache_entry){*k, obj, destroy, ++c->clock, c->heads[h], 1, c->dev->sizing};
    c->heads[h] = e;
}

/* ---- scratchpad and execution ---- */

/* Grows *buf (of *have bytes) to at least `bytes`, 4 KiB aligned; a dry plan only notes
 * the size in *want. */
static int grow(lk_cpu *c, void **buf, size_t *have, size_t *want, size_t bytes, const char *what)
{
    if (c->dev->sizing) {
        *want = LK_MAX(*want, bytes);
        return 1;
    }
    if (bytes <= *have) return 1;
    void *p = aligned_alloc(4096, LK_ALIGN_UP(bytes, 4096));
    if (!p) {
        lk_cpu_fail(c, LK_ERR_NOMEM, "oneDNN: cannot allocate %s of %zu bytes", what, bytes);
        return 0;
    }
    free(*buf);
    *buf = p;
    *have = bytes;
    return 1;
}

int lk_cpu_step_init(lk_cpu *c, lk_cpu_step *s, const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
    if (dnnl_primitive_create(&s->prim, pd) != dnnl_success) return 0;
    return !bytes || (grow(c, &c->scratch, &c->scratch_bytes, &c->want_scratch, bytes, "a scratchpad") &&
                      dnnl_memory_create(&s->sp, md, c->engine, DNNL_MEMORY_NONE) == dnnl_success);
}

void lk_cpu_step_destroy(lk_cpu_step *s)
{
    if (s->prim) dnnl_primitive_destroy(s->prim);
    if (s->sp) dnnl_memory_destroy(s->sp);
    s->prim = NULL, s->sp = NULL;
}

void lk_cpu_step_run(lk_cpu *c, const lk_cpu_step *s, dnnl_exec_arg_t *args, int nargs,
                     const char *what)
{
    if (s->sp) {
        dnnl_memory_set_data_handle(s->sp, c->scratch);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->sp};
    }
    in_onednn++;
    dnnl_status_t st = dnnl_primitive_execute(s->prim, c->stream, nargs, args);
    in_onednn--;
    if (st != dnnl_success)
        lk_cpu_fail(c, LK_ERR_DEVICE, "oneDNN: %s failed to execute (status %d)", what, (int)st);
}

dnnl_primitive_attr_t lk_cpu_attr(lk_cpu *c, float alpha, float beta)
{
    dnnl_primitive_attr_t a = NULL;
    dnnl_post_ops_t po = NULL;
    if (dnnl_primitive_attr_create(&a) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user) != dnnl_success ||
        (alpha != 1.0f && dnnl_primitive_attr_set_output_scales(a, 1, 0, &alpha) != dnnl_success) ||
        (beta != 0.0f && (dnnl_post_ops_create(&po) != dnnl_success ||
                          dnnl_post_ops_append_sum(po, beta) != dnnl_success ||
                          dnnl_primitive_attr_set_post_ops(a, po) != dnnl_success))) {
        lk_cpu_fail(c, LK_ERR_DEVICE, "oneDNN: cannot set primitive attributes");
        if (a) dnnl_primitive_attr_destroy(a);
        a = NULL;
    }
    if (po) dnnl_post_ops_destroy(po);
    return a;
}

int lk_cpu_reorder_init(lk_cpu *c, lk_cpu_step *s, const dnnl_memory_desc_t *from,
                        const dnnl_memory_desc_t *to, float beta)
{
    dnnl_primitive_attr_t attr = lk_cpu_attr(c, 1.0f, beta);
    dnnl_primitive_desc_t pd = NULL;
    int ok = attr && dnnl_reorder_primitive_desc_create(&pd, from, c->engine, to, c->engine, attr) ==
                         dnnl_success &&
             lk_cpu_step_init(c, s, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok;
}

/* ---- matrix products ---- */

typedef struct {
    lk_cpu_step step;
    dnnl_memory_t a, b, c;
    lk_cpu_step pack;     /* B (b_user, as the caller holds it) -> b (blocked); prim NULL: none */
    dnnl_memory_t b_user;
    lk_cpu_step cast_a;   /* a bf16 product's float32 A (a_user) -> bf16 in the cast buffer */
    dnnl_memory_t a_user;
    int round_b;          /* pack.prim rounds a plain B to bf16, into the cast buffer at
                             cast_b_at (else it packs B into `packed`) */
    size_t cast_b_at;
} matmul;

static void matmul_destroy(void *obj)
{
    matmul *mm = obj;
    lk_cpu_step_destroy(&mm->step);
    lk_cpu_step_destroy(&mm->pack);
    lk_cpu_step_destroy(&mm->cast_a);
    dnnl_memory_t mems[5] = {mm->a, mm->b, mm->c, mm->b_user, mm->a_user};
    for (int i = 0; i < 5; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(mm);
}

/* Whether B goes into oneDNN's blocked layout (a reorder per call) rather than being read
 * as the caller holds it. Measured on GPT-2's and the other models' products (1 and 2
 * threads, AVX-512): blocked B is as fast or faster wherever its reorder is paid for by
 * at least 512 rows of A, and twice as fast from 128 rows on where a plain B's rows are a
 * multiple of 4 KiB apart (3072 floats: GPT-2's MLP, where the plain kernel's copies of B
 * alias in the L1 cache); with 64 rows the reorder costs what it saves. Batched products
 * (attention) stay plain. */
static int pack_b(const lk_gemm_desc *g)
{
    const int aliased = !g->trans_b && (size_t)g->ldb * lk_dtype_size(g->b_type) % 4096 == 0;
    return g->count == 1 && (g->m >= 512 || (aliased && g->m >= 128));
}

static dnnl_data_type_t dnnl_type(lk_dtype t) { return t == LK_BF16 ? dnnl_bf16 : dnnl_f32; }

/* A [rows, cols] operand (transposed: stored [cols, rows] with leading dimension ld)
 * of `count` matrices `stride` apart; stride 0 repeats one matrix. */
static dnnl_status_t operand_md(dnnl_memory_desc_t *md, int count, long stride, int rows, int cols,
                                int trans, int ld, lk_dtype t)
{
    if (count == 1) {
        dnnl_dims_t dims = {rows, cols}, strides = {trans ? 1 : ld, trans ? ld : 1};
        return dnnl_memory_desc_init_by_strides(md, 2, dims, dnnl_type(t), strides);
    }
    dnnl_dims_t dims = {stride ? count : 1, rows, cols};
    dnnl_dims_t strides = {stride ? stride : (long)rows * cols, trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 3, dims, dnnl_type(t), strides);
}

/* The same operand as dense bf16 (the cast buffer's copy of a float32 one). */
static dnnl_status_t rounded_md(dnnl_memory_desc_t *md, int count, long stride, int rows, int cols,
                                int trans)
{
    return operand_md(md, count, stride ? (long)rows * cols : 0, rows, cols, trans,
                      trans ? rows : cols, LK_BF16);
}

static lk_cpu_key gemm_key(const lk_gemm_desc *g)
{
    lk_cpu_key k = {{0}};
    int *v = k.v;
    v[0] = LK_CPU_KEY_MATMUL;
    v[1] = g->trans_a, v[2] = g->trans_b, v[3] = g->m, v[4] = g->n, v[5] = g->k;
    v[6] = g->lda, v[7] = g->ldb, v[8] = g->ldc, v[9] = g->count;
    memcpy(&v[10], &g->stride_a, sizeof(long));
    memcpy(&v[12], &g->stride_b, sizeof(long));
    memcpy(&v[14], &g->stride_c, sizeof(long));
    memcpy(&v[16], &g->alpha, sizeof(float));
    memcpy(&v[17], &g->beta, sizeof(float));
    v[18] = (int)g->compute | (int)g->a_type << 4 | (int)g->b_type << 8;
    return k;
}

static matmul *matmul_create(lk_cpu *c, const lk_gemm_desc *g)
{
    dnnl_memory_desc_t a, a_in, b, b_in, b_any, cm;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = lk_cpu_attr(c, g->alpha, g->beta);
    matmul *mm = calloc(1, sizeof *mm);
    const int pack = pack_b(g), bf16 = g->compute == LK_BF16;
    const int round_a = bf16 && g->a_type == LK_F32, round_b = bf16 && g->b_type == LK_F32 && !pack;
    int ok = attr && mm &&
             operand_md(&a, g->count, g->stride_a, g->m, g->k, g->trans_a, g->lda, g->a_type) == dnnl_success &&
             operand_md(&b, g->count, g->stride_b, g->k, g->n, g->trans_b, g->ldb, g->b_type) == dnnl_success &&
             (!round_a || rounded_md(&a_in, g->count, g->stride_a, g->m, g->k, g->trans_a) == dnnl_success) &&
             (!round_b || rounded_md(&b_in, g->count, g->stride_b, g->k, g->n, g->trans_b) == dnnl_success) &&
             dnnl_memory_desc_init_by_tag(&b_any, 2, (dnnl_dims_t){g->k, g->n}, dnnl_type(g->compute),
                                          dnnl_format_tag_any) == dnnl_success &&
             operand_md(&cm, g->count, g->stride_c, g->m, g->n, 0, g->ldc, LK_F32) == dnnl_success;
    if (ok && !round_a) a_in = a;
    if (ok && !round_b) b_in = b;
    ok = ok && dnnl_matmul_desc_init(&desc, &a_in, pack ? &b_any : &b_in, NULL, &cm) == dnnl_success &&
         dnnl_primitive_desc_create(&pd, &desc, attr, c->engine, NULL) == dnnl_success &&
         lk_cpu_step_init(c, &mm->step, pd) &&
         dnnl_memory_create(&mm->a, &a_in, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&mm->c, &cm, c->engine, DNNL_MEMORY_NONE) == dnnl_success;
    const dnnl_memory_desc_t *bmd = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0) : NULL;
    ok = ok && dnnl_memory_create(&mm->b, bmd, c->engine, DNNL_MEMORY_NONE) == dnnl_success;
    size_t cast = 0;
    if (ok && round_a) { /* A rounded to bf16 at the start of the cast buffer */
        cast = LK_ALIGN_UP(dnnl_memory_desc_get_size(&a_in), 64);
        ok = dnnl_memory_create(&mm->a_user, &a, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
             lk_cpu_reorder_init(c, &mm->cast_a, &a, &a_in, 0.0f);
    }
    if (ok && round_b) { /* B rounded to bf16 after it */
        mm->round_b = 1;
        mm->cast_b_at = cast;
        cast += dnnl_memory_desc_get_size(&b_in);
        ok = dnnl_memory_create(&mm->b_user, &b, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
             lk_cpu_reorder_init(c, &mm->pack, &b, &b_in, 0.0f);
    } else if (ok && pack && !dnnl_memory_desc_equal(bmd, &b)) { /* B into the layout oneDNN chose */
        ok = dnnl_memory_create(&mm->b_user, &b, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
             lk_cpu_reorder_init(c, &mm->pack, &b, bmd, 0.0f) &&
             grow(c, &c->packed, &c->packed_bytes, &c->want_packed, dnnl_memory_desc_get_size(bmd),
                  "a packed matrix");
    }
    ok = ok && (!cast || grow(c, &c->cast, &c->cast_bytes, &c->want_cast, cast, "bf16 operands"));
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        lk_cpu_fail(c, LK_ERR_DEVICE,
                    "oneDNN: cannot create a %s matmul for %d product(s) of [%d x %d] x [%d x %d]%s%s",
                    lk_dtype_name(g->compute), g->count, g->m, g->k, g->k, g->n,
                    g->trans_a ? " (A transposed)" : "", g->trans_b ? " (B transposed)" : "");
        if (mm) matmul_destroy(mm);
        return NULL;
    }
    return mm;
}

static matmul *matmul_get(lk_cpu *c, const lk_gemm_desc *g)
{
    lk_cpu_key k = gemm_key(g);
    matmul *mm = lk_cpu_cache_find(c, &k);
    if (mm) return mm;
    mm = matmul_create(c, g);
    if (mm) lk_cpu_cache_put(c, &k, mm, matmul_destroy);
    return mm;
}

/* ---- bf16 where oneDNN has no bf16 primitives ---- */

/* Whether bf16 products run as oneDNN's bf16 kernels: where it has them (from AVX-512 on)
 * and they are worth it - with AMX, several times its float32 speed. Without AMX, oneDNN
 * 2.6's AVX-512 BF16 kernels run at 0.62-0.67x its float32 ones on this machine
 * (`ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 lockstep bench gemm`), its conversions on plain
 * AVX-512 slower still: float32 products of bf16-rounded operands (the same values) are
 * faster there. LK_BF16=native or emulate overrides (for measurements). */
static int bf16_wanted(void)
{
    const char *e = getenv("LK_BF16");
    if (e && !strcmp(e, "native")) return 1;
    if (e && !strcmp(e, "emulate")) return 0;
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), amx = (unsigned)dnnl_cpu_isa_avx512_core_amx;
    return (isa & amx) == amx;
}

/* 1 when lockstep emulates bf16 products and convolutions (above, or where this oneDNN
 * creates no bf16 primitives); probed once per device. */
int lk_cpu_bf16_emulated(lk_cpu *c)
{
    if (!c->bf16 && !bf16_wanted()) c->bf16 = 2;
    if (!c->bf16) {
        dnnl_memory_desc_t a, cm, src, wei, dst;
        dnnl_matmul_desc_t mmd;
        dnnl_convolution_desc_t cd;
        dnnl_primitive_desc_t pd = NULL, cpd = NULL;
        const dnnl_dims_t st = {1, 1}, pad = {1, 1};
        int ok = dnnl_memory_desc_init_by_tag(&a, 2, (dnnl_dims_t){64, 64}, dnnl_bf16, dnnl_ab) == dnnl_success &&
                 dnnl_memory_desc_init_by_tag(&cm, 2, (dnnl_dims_t){64, 64}, dnnl_f32, dnnl_ab) == dnnl_success &&
                 dnnl_matmul_desc_init(&mmd, &a, &a, NULL, &cm) == dnnl_success &&
                 dnnl_primitive_desc_create(&pd, &mmd, NULL, c->engine, NULL) == dnnl_success &&
                 dnnl_memory_desc_init_by_tag(&src, 4, (dnnl_dims_t){2, 16, 8, 8}, dnnl_bf16,
                                              dnnl_format_tag_any) == dnnl_success &&
                 dnnl_memory_desc_init_by_tag(&wei, 4, (dnnl_dims_t){16, 16, 3, 3}, dnnl_bf16,
                                              dnnl_format_tag_any) == dnnl_success &&
                 dnnl_memory_desc_init_by_tag(&dst, 4, (dnnl_dims_t){2, 16, 8, 8}, dnnl_f32,
                                              dnnl_format_tag_any) == dnnl_success &&
                 dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
                                                    &src, &wei, NULL, &dst, st, pad, pad) == dnnl_success &&
                 dnnl_primitive_desc_create(&cpd, &cd, NULL, c->engine, NULL) == dnnl_success;
        if (pd) dnnl_primitive_desc_destroy(pd);
        if (cpd) dnnl_primitive_desc_destroy(cpd);
        c->bf16 = ok ? 1 : 2;
    }
    return c->bf16 == 2;
}

float *lk_cpu_cast_floats(lk_cpu *c, size_t n)
{
    return grow(c, &c->cast, &c->cast_bytes, &c->want_cast, n * sizeof(float), "bf16 operands") ? c->cast : NULL;
}

void lk_cpu_mem_info(lk_device *d, size_t *held, size_t *used, size_t *total)
{
    const lk_cpu *c = lk_cpu_of(d);
    *held = LK_MAX(c->scratch_bytes, c->want_scratch) + LK_MAX(c->packed_bytes, c->want_packed) +
            LK_MAX(c->cast_bytes, c->want_cast);
    *used = *total = 0;
}

lk_status lk_cpu_gemm_plan(lk_device *d, const lk_gemm_desc *g)
{
    lk_cpu *c = lk_cpu_of(d);
    if (c->failed != LK_OK) return lk_cpu_status(d); /* an earlier failure stands */
    if (g->compute == LK_BF16 && lk_cpu_bf16_emulated(c)) {
        const lk_status s = lk_cpu_emulated_plan(d, g);
        c->failed = LK_OK; /* reported here, as below */
        return s;
    }
    if (matmul_get(c, g)) return LK_OK;
    lk_status s = lk_cpu_status(d);
    c->failed = LK_OK; /* this one is reported here, at plan time, not again later */
    return s;
}

static void reorder(lk_cpu *c, const lk_cpu_step *r, dnnl_memory_t from, const void *src,
                    dnnl_memory_t to, void *dst, const char *what)
{
    dnnl_memory_set_data_handle(from, (void *)src);
    dnnl_memory_set_data_handle(to, dst);
    dnnl_exec_arg_t ra[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    lk_cpu_step_run(c, r, ra, 2, what);
}

void lk_cpu_matmul(lk_device *d, const lk_gemm_desc *g, const void *a, const void *b, float *cc)
{
    lk_cpu *c = lk_cpu_of(d);
    if (g->compute == LK_BF16 && lk_cpu_bf16_emulated(c)) {
        lk_cpu_emulated_matmul(d, g, a, b, cc);
        return;
    }
    matmul *mm = matmul_get(c, g);
    if (!mm) return;
    if (mm->cast_a.prim)
        reorder(c, &mm->cast_a, mm->a_user, a, mm->a, c->cast, "rounding of a product's A to bf16");
    else
        dnnl_memory_set_data_handle(mm->a, (void *)a);
    if (mm->pack.prim) /* B rounded, or packed */
        reorder(c, &mm->pack, mm->b_user, b, mm->b,
                mm->round_b ? (char *)c->cast + mm->cast_b_at : c->packed,
                "reorder of a product's B");
    else
        dnnl_memory_set_data_handle(mm->b, (void *)b);
    dnnl_memory_set_data_handle(mm->c, cc);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, mm->a}, {DNNL_ARG_WEIGHTS, mm->b}, {DNNL_ARG_DST, mm->c}};
    lk_cpu_step_run(c, &mm->step, args, 3, "matmul");
}

/* ---- bf16 products, for `lockstep bench gemm` ---- */

lk_status lk_backend_cpu_bf16_rate(lk_device *d, int n, double min_s, double *flops)
{
    *flops = 0.0;
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (d->kind != LK_DEV_CPU || ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) !=
                                     (unsigned)dnnl_cpu_isa_avx512_core_bf16)
        return LK_OK; /* no bf16 instructions: oneDNN would emulate them */
    lk_cpu *c = lk_cpu_of(d);
    dnnl_memory_desc_t a, b, b_any, cm;
    const dnnl_dims_t dims = {n, n};
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_t mm = NULL, reorder = NULL;
    dnnl_memory_t ma = NULL, mb = NULL, mbb = NULL, mc = NULL;
    void *pa = NULL, *pb = NULL, *pbb = NULL, *pc = NULL;
    const size_t bf = (size_t)n * n * 2;
    int ok = dnnl_memory_desc_init_by_tag(&a, 2, dims, dnnl_bf16, dnnl_ab) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&b, 2, dims, dnnl_bf16, dnnl_ab) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&b_any, 2, dims, dnnl_bf16, dnnl_format_tag_any) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&cm, 2, dims, dnnl_f32, dnnl_ab) == dnnl_success &&
             dnnl_matmul_desc_init(&desc, &a, &b_any, NULL, &cm) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &desc, NULL, c->engine, NULL) == dnnl_success &&
             dnnl_primitive_create(&mm, pd) == dnnl_success;
    const dnnl_memory_desc_t *wmd = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0) : NULL;
    ok = ok && (pa = calloc(1, bf)) && (pb = calloc(1, bf)) && (pc = calloc(1, bf * 2)) &&
         (pbb = calloc(1, dnnl_memory_desc_get_size(wmd))) &&
         dnnl_memory_create(&ma, &a, c->engine, pa) == dnnl_success &&
         dnnl_memory_create(&mb, &b, c->engine, pb) == dnnl_success &&
         dnnl_memory_create(&mbb, wmd, c->engine, pbb) == dnnl_success &&
         dnnl_memory_create(&mc, &cm, c->engine, pc) == dnnl_success &&
         dnnl_reorder_primitive_desc_create(&rpd, &b, c->engine, wmd, c->engine, NULL) == dnnl_success &&
         dnnl_primitive_create(&reorder, rpd) == dnnl_success;
    lk_status s = ok ? LK_OK : LK_ERR(LK_ERR_DEVICE, "bench gemm: cannot set up bf16 products of %d x %d", n, n);
    if (ok) { /* the weights once into oneDNN's layout, as a bf16 working copy would be */
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, mb}, {DNNL_ARG_TO, mbb}};
        ok = dnnl_primitive_execute(reorder, c->stream, 2, ra) == dnnl_success;
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mbb}, {DNNL_ARG_DST, mc}};
    double best = 1e30, spent = 0.0;
    ok = ok && dnnl_primitive_execute(mm, c->stream, 3, args) == dnnl_success; /* warm-up */
    for (int rep = 0; ok && (rep < 3 || spent < min_s) && rep < 1000; rep++) {
        double t0 = lk_now();
        ok = dnnl_primitive_execute(mm, c->stream, 3, args) == dnnl_success;
        double dt = lk_now() - t0;
        spent += dt;
        best = LK_MIN(best, dt);
    }
    if (s == LK_OK && !ok) s = LK_ERR(LK_ERR_DEVICE, "bench gemm: bf16 products of %d x %d failed", n, n);
    else if (ok) *flops = 2.0 * n * (double)n * n / best;
    if (mm) dnnl_primitive_destroy(mm);
    if (reorder) dnnl_primitive_destroy(reorder);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_t mems[4] = {ma, mb, mbb, mc};
    for (int i = 0; i < 4; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(pa), free(pb), free(pbb), free(pc);
    return s;
}

/* ---- opening and closing ---- */

lk_status lk_cpu_dnnl_open(lk_device *d)
{
    lk_cpu *c = calloc(1, sizeof *c);
    if (!c) return LK_ERR(LK_ERR_NOMEM, "cpu: cannot allocate the backend state");
    for (int i = 0; i < CACHE_HEADS; i++) c->heads[i] = -1;
    c->dev = d;
    dnnl_status_t s = dnnl_engine_create(&c->engine, dnnl_cpu, 0);
    if (s == dnnl_success) s = dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags);
    d->impl = c;
    if (s != dnnl_success) {
        lk_cpu_dnnl_close(d);
        return LK_ERR(LK_ERR_DEVICE, "cpu: cannot open a oneDNN engine and stream (status %d)", (int)s);
    }
    return LK_OK;
}

void lk_cpu_dnnl_close(lk_device *d)
{
    lk_cpu *c = lk_cpu_of(d);
    if (!c) return;
    for (int i = 0; i < c->nentries; i++)
        if (c->entries[i].live) c->entries[i].destroy(c->entries[i].obj);
    if (c->stream) dnnl_stream_destroy(c->stream);
    if (c->engine) dnnl_engine_destroy(c->engine);
    free(c->scratch);
    free(c->packed);
    free(c->cast);
    free(c);
    d->impl = NULL;
}

/* ---- what oneDNN dispatches to ---- */

typedef struct {
    dnnl_cpu_isa_t isa;
    const char *name;
} isa_name;

/* oneDNN's x86 ISAs, each a superset (as bits) of the ones before it in its line */
static const isa_name isa_names[] = {
    {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"},
    {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
    {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"},
    {dnnl_cpu_isa_avx512_core, "avx512_core"},
    {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"},
    {dnnl_cpu_isa_avx2, "avx2"},
    {dnnl_cpu_isa_avx, "avx"},
    {dnnl_cpu_isa_sse41, "sse41"},
};

static const char *isa_str(dnnl_cpu_isa_t isa)
{
    for (size_t i = 0; i < sizeof isa_names / sizeof *isa_names; i++)
        if (isa_names[i].isa == isa) return isa_names[i].name;
    return isa == dnnl_cpu_isa_all ? "all" : "baseline";
}

/* The best oneDNN ISA the CPU and the OS support, from cpuid and XCR0. */
static dnnl_cpu_isa_t cpu_reported_isa(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return dnnl_cpu_isa_all;
    const int sse41 = (c >> 19) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, osxsave = (c >> 27) & 1;
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    const int os_avx = (xcr0 & 0x6) == 0x6, os_avx512 = (xcr0 & 0xe6) == 0xe6;
    const int os_amx = (xcr0 & 0x60000) == 0x60000;
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d7);
        unsigned x, y, z;
        __cpuid_count(7, 1, a71, x, y, z);
    }
    const int avx2 = (b7 >> 5) & 1;
    const int avx512 = ((b7 >> 16) & 1) && ((b7 >> 17) & 1) && ((b7 >> 30) & 1) && ((b7 >> 31) & 1);
    const int vnni = (c7 >> 11) & 1, bf16 = (a71 >> 5) & 1, avx_vnni = (a71 >> 4) & 1;
    const int amx = ((d7 >> 22) & 1) && ((d7 >> 24) & 1) && ((d7 >> 25) & 1);
    if (os_avx512 && avx512) {
        if (vnni && bf16 && amx && os_amx) return dnnl_cpu_isa_avx512_core_amx;
        if (vnni && bf16) return dnnl_cpu_isa_avx512_core_bf16;
        if (vnni) return dnnl_cpu_isa_avx512_core_vnni;
        return dnnl_cpu_isa_avx512_core;
    }
    if (os_avx && avx2 && fma) return avx_vnni ? dnnl_cpu_isa_avx2_vnni : dnnl_cpu_isa_avx2;
    if (os_avx && avx) return dnnl_cpu_isa_avx;
    return sse41 ? dnnl_cpu_isa_sse41 : dnnl_cpu_isa_all;
}

/* The implementation oneDNN picks for a float32 matmul of n x n x n. */
static void probe_kernel(char *out, size_t len, dnnl_data_type_t t)
{
    snprintf(out, len, "unknown");
    dnnl_engine_t e = NULL;
    dnnl_memory_desc_t md, dst;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    if (dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&md, 2, (dnnl_dims_t){512, 512}, t, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&dst, 2, (dnnl_dims_t){512, 512}, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_matmul_desc_init(&desc, &md, &md, NULL, &dst) == dnnl_success &&
        dnnl_primitive_desc_create(&pd, &desc, NULL, e, NULL) == dnnl_success &&
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(out, len, "%s", impl);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (e) dnnl_engine_destroy(e);
}

void lk_backend_cpu_math_info(lk_cpu_math_info *out)
{
    memset(out, 0, sizeof *out);
    const dnnl_version_t *v = dnnl_version();
    snprintf(out->library, sizeof out->library, "oneDNN %d.%d.%d (%s runtime)", v->major, v->minor,
             v->patch, v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other");
    dnnl_cpu_isa_t eff = dnnl_get_effective_cpu_isa(), cpu = cpu_reported_isa();
    snprintf(out->isa, sizeof out->isa, "%s", isa_str(eff));
    snprintf(out->cpu_isa, sizeof out->cpu_isa, "%s", isa_str(cpu));
    probe_kernel(out->fp32_kernel, sizeof out->fp32_kernel, dnnl_f32);
    probe_kernel(out->bf16_kernel, sizeof out->bf16_kernel, dnnl_bf16);
    if (!strcmp(out->bf16_kernel, "unknown")) snprintf(out->bf16_kernel, sizeof out->bf16_kernel, "none");
    out->bf16_native = ((unsigned)eff & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
                       (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    out->bf16_onednn = bf16_wanted() && strcmp(out->bf16_kernel, "none");
    out->below = ((unsigned)eff & (unsigned)cpu) != (unsigned)cpu;
    out->baseline = eff == dnnl_cpu_isa_all || eff == dnnl_cpu_isa_sse41;
}
