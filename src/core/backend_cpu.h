/* backend_cpu.h - pieces of the CPU backend shared between its files. */
#ifndef LK_BACKEND_CPU_H
#define LK_BACKEND_CPU_H

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>

#include "device.h"

/* Below this many elements a loop runs on one thread. */
#define LK_CPU_PAR_MIN 32768L

/* 1 when loops may fork: more than one OpenMP thread is configured. */
int lk_cpu_multithreaded(void);

/* for (long i = 0; i < n; i++) { body } on the OpenMP team when `par` holds and more
 * than one thread is configured, else as a plain loop. The plain path never enters
 * OpenMP: libgomp allocates a team even for a region whose if() clause is false,
 * and a training step must not allocate. */
#define LK_CPU_FOR(par, i, n, ...)                                      \
    do {                                                                \
        const long lk_n_ = (n);                                         \
        if ((par) && lk_cpu_multithreaded()) {                          \
            _Pragma("omp parallel for schedule(static)")                \
            for (long i = 0; i < lk_n_; i++) { __VA_ARGS__ }            \
        } else {                                                        \
            for (long i = 0; i < lk_n_; i++) { __VA_ARGS__ }            \
        }                                                               \
    } while (0)
/* The same for bodies that vectorise (no calls, no loop-carried state). */
#define LK_CPU_FOR_SIMD(par, i, n, ...)                                 \
    do {                                                                \
        const long lk_n_ = (n);                                         \
        if ((par) && lk_cpu_multithreaded()) {                          \
            _Pragma("omp parallel for simd schedule(static)")           \
            for (long i = 0; i < lk_n_; i++) { __VA_ARGS__ }            \
        } else {                                                        \
            _Pragma("omp simd")                                         \
            for (long i = 0; i < lk_n_; i++) { __VA_ARGS__ }            \
        }                                                               \
    } while (0)

/* oneDNN (backend_cpu_dnnl.c): the device's engine, stream, primitive cache, shared
 * scratchpad and first failure. */
typedef struct lk_cpu lk_cpu;
lk_status lk_cpu_dnnl_open(lk_device *d);
void lk_cpu_dnnl_close(lk_device *d);
lk_cpu *lk_cpu_of(lk_device *d);
dnnl_engine_t lk_cpu_engine(lk_cpu *c);
/* Records the first failure; the status entry returns it (and clears nothing). */
void lk_cpu_fail(lk_cpu *c, lk_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
lk_status lk_cpu_status(lk_device *d);
/* Cache keys: a kind, then the shape (unused ints zero). */
enum { LK_CPU_KEY_MATMUL = 1, LK_CPU_KEY_CONV = 2 };
typedef struct {
    int v[20];
} lk_cpu_key;
void *lk_cpu_cache_find(lk_cpu *c, const lk_cpu_key *k);
/* Takes obj (freed with destroy when evicted or at close). */
void lk_cpu_cache_put(lk_cpu *c, const lk_cpu_key *k, void *obj, void (*destroy)(void *));
/* Attributes: the user scratchpad, alpha as output scale, beta as a sum post-op. */
dnnl_primitive_attr_t lk_cpu_attr(lk_cpu *c, float alpha, float beta);
/* A primitive and the memory object of its scratchpad (the device's shared one; NULL
 * when it needs none): every product, convolution and reorder runs as one. */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t sp;
} lk_cpu_step;
/* Creates s from pd, growing the shared scratchpad to what it needs (0 on a failure,
 * which the caller reports). */
int lk_cpu_step_init(lk_cpu *c, lk_cpu_step *s, const_dnnl_primitive_desc_t pd);
/* A reorder from -> to, adding to what `to` holds when beta is 1. */
int lk_cpu_reorder_init(lk_cpu *c, lk_cpu_step *s, const dnnl_memory_desc_t *from,
                        const dnnl_memory_desc_t *to, float beta);
/* Executes s on args[0..nargs) (args has room for one more: the scratchpad); a failure
 * becomes the device's first, naming `what`. */
void lk_cpu_step_run(lk_cpu *c, const lk_cpu_step *s, dnnl_exec_arg_t *args, int nargs,
                     const char *what);
void lk_cpu_step_destroy(lk_cpu_step *s);
/* 1 while this thread is inside oneDNN's execute, whose argument map allocates a few
 * small blocks it frees before returning (the allocation test tells them apart). */
int lk_cpu_in_onednn(void);
void lk_cpu_matmul(lk_device *d, const lk_gemm_desc *g, const void *a, const void *b, float *c);
lk_status lk_cpu_gemm_plan(lk_device *d, const lk_gemm_desc *g);
void lk_cpu_mem_info(lk_device *d, size_t *held, size_t *used, size_t *total);
/* 1 where oneDNN has no bf16 primitives (a CPU without AVX-512): bf16 products and
 * convolutions then run in float32 on operands rounded to bf16 (lk_cpu_round_f32), which
 * gives the same values (bf16 x bf16 is exact in float32). */
int lk_cpu_bf16_emulated(lk_cpu *c);
/* dst = the float32 value of src's bf16 rounding (to nearest even; src float32), or of src
 * itself (bf16) */
void lk_cpu_round_f32(const void *src, lk_dtype t, float *dst, size_t n);
/* The emulated bf16 product g (backend_cpu_emulate.c): planned, run. */
lk_status lk_cpu_emulated_plan(lk_device *d, const lk_gemm_desc *g);
void lk_cpu_emulated_matmul(lk_device *d, const lk_gemm_desc *g, const void *a, const void *b, float *c);
/* The most float32 values an emulated product rounds its operands into at a time (0: the
 * default, 2^23); returns the previous setting. For tests. */
size_t lk_cpu_emulation_block(size_t values);
/* The device's buffer for bf16 operands, at least n floats (NULL: the device failed). */
float *lk_cpu_cast_floats(lk_cpu *c, size_t n);

size_t lk_cpu_conv2d_saved(lk_device *d, const lk_conv2d_desc *cd);
size_t lk_cpu_conv2d_workspace(lk_device *d, const lk_conv2d_desc *cd);
void lk_cpu_conv2d_forward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                           const float *b, float *y, void *saved, void *ws);
void lk_cpu_conv2d_backward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                            const float *dy, float *dx, float *dw, float *db, float beta,
                            void *saved, void *ws);
void lk_cpu_pool2d_forward(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                           int32_t *argmax);
void lk_cpu_pool2d_backward(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                            const int32_t *argmax, float *dx);
void lk_cpu_bias_grad(lk_device *d, float *db, const float *dy, int outer, int c, int inner,
                      float beta);
void lk_cpu_guard(lk_device *d, lk_guard_state *g, int phase, lk_guard_cfg c, long long step, float *loss_acc,
                  float samples);
void lk_cpu_optim_update(lk_device *d, const lk_optim_hparams *hp, float *w, const float *g,
                         float *s1, float *s2, uint16_t *w16, size_t n);
void lk_cpu_cast_bf16(lk_device *d, const float *x, uint16_t *y, size_t n, const lk_round *r);
void lk_cpu_widen_bf16(lk_device *d, const uint16_t *x, float *y, size_t n);
void lk_cpu_pack16(lk_device *d, lk_dtype t, const float *x, float scale, uint16_t *y, size_t n);
void lk_cpu_unpack16(lk_device *d, lk_dtype t, const uint16_t *x, float scale, float *y, size_t n);

/* sequences (backend_cpu_seq.c) */
void lk_cpu_transpose(lk_device *d, const float *x, float *y, int outer, int a, int b, int inner);
void lk_cpu_lstm_cell_forward(lk_device *d, int n, int h, float *g, const float *c_prev, float *c,
                              float *hout);
void lk_cpu_lstm_cell_backward(lk_device *d, int n, int h, const float *g, const float *c_prev,
                               const float *c, const float *dh, const float *dh_out, float *dc,
                               float *dg);
void lk_cpu_gru_cell_forward(lk_device *d, int n, int h, float *gx, const float *gh,
                             const float *h_prev, float *hout, float *ghn);
void lk_cpu_gru_cell_backward(lk_device *d, int n, int h, const float *g, const float *ghn,
                              const float *h_prev, float *dh, const float *dh_out, float *dgx,
                              float *dgh);
void lk_cpu_softmax_causal_forward(lk_device *d, float *s, int rows, int t, float scale);
void lk_cpu_softmax_causal_backward(lk_device *d, const float *p, float *dp, int rows, int t,
                                    float scale);
void lk_cpu_embed_forward(lk_device *d, const float *idx, const float *w, float *y, int n, int dim);
void lk_cpu_embed_backward(lk_device *d, const float *idx, const float *dy, float *dw, int n,
                           int dim);
void lk_cpu_reparam_forward(lk_device *d, const float *ml, float *z, int n, int zdim, int noise,
                            uint64_t seed, uint64_t key, uint64_t first, float *kl);
void lk_cpu_reparam_backward(lk_device *d, const float *ml, const float *dz, float *dml, int n,
                             int zdim, uint64_t seed, uint64_t key, uint64_t first, float kl_scale);
/* normalisation (backend_cpu_norm.c) */
void lk_cpu_layernorm_forward(lk_device *d, const float *x, const float *w, const float *b,
                              float *y, float *mean, float *rstd, int rows, int dim, float eps);
void lk_cpu_layernorm_backward(lk_device *d, const float *x, const float *w, const float *mean,
                               const float *rstd, const float *dy, float *dx, float *dw,
                               float *db, int rows, int dim, float beta);
void lk_cpu_bn_sums(lk_device *d, const float *x, const float *dy, const float *mean,
                    const float *rstd, int n, int c, int inner, float *out);
void lk_cpu_bn_stats(lk_device *d, const float *sums, int c, float eps, float momentum,
                     float *mean, float *rstd, float *run_mean, float *run_var, float *tracked);
void lk_cpu_bn_forward(lk_device *d, const float *x, const float *mean, const float *rstd,
                       const float *w, const float *b, float *y, int n, int c, int inner);
void lk_cpu_bn_backward(lk_device *d, const float *x, const float *dy, const float *mean,
                        const float *rstd, const float *w, const float *gsums, float *dx, int n,
                        int c, int inner);

#endif
