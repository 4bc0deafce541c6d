/* device.h - a compute device ("cpu" or "cuda:N") and the backend vtable.
 *
 * The vtable is the ONLY place that knows the hardware. Layers, models, the
 * optimizer and the CLI call the checked wrappers in ops.h, which dispatch here.
 * All pointers passed to the compute entries are device pointers; all tensors
 * are float32, row-major, NCHW, except where an entry takes an lk_dtype: a matrix
 * product's operands and a convolution's weights may be bf16 (see lk_gemm_desc and
 * lk_conv2d_desc). Entries never fail (arguments were checked by ops.c); only alloc
 * can return NULL. */
#ifndef LK_DEVICE_H
#define LK_DEVICE_H

#include "common.h"
#include "guard_rule.h"

typedef enum { LK_DEV_CPU = 0, LK_DEV_CUDA = 1 } lk_device_kind;

/* Storage and compute types. bf16 is float32's upper half (8 exponent bits, 8 of
 * mantissa), stored as uint16_t; fp16 is IEEE binary16 (5 and 11: half.h), only a gradient
 * wire (--grad-compress fp16), never a tensor's or a product's type. */
typedef enum { LK_F32 = 0, LK_BF16 = 1, LK_F16 = 2 } lk_dtype;
static inline size_t lk_dtype_size(lk_dtype t) { return t == LK_F32 ? 4 : 2; }
static inline const char *lk_dtype_name(lk_dtype t) { return t == LK_BF16 ? "bf16" : t == LK_F16 ? "fp16" : "fp32"; }

/* How float32 values are rounded to bf16: to nearest even, or stochastically (up with
 * the probability of the distance to the value below), the draw for element i being
 * lk_rng_u32(seed, LK_RNG_ROUND, key, first + i), so every device and rank rounds the
 * same element the same way. */
typedef struct {
    int stochastic;
    uint64_t seed, key, first;
    const float *skip; /* a device flag (guard_rule.h): nonzero leaves the copy as it is (NULL: never) */
} lk_round;

typedef enum {
    LK_ACT_IDENTITY = 0,
    LK_ACT_RELU,
    LK_ACT_LEAKY_RELU, /* alpha = negative slope */
    LK_ACT_SIGMOID,
    LK_ACT_TANH,
    LK_ACT_GELU, /* exact (erf) form, as torch.nn.GELU() */
    LK_ACT_GELU_TANH, /* GPT-2's tanh approximation, as torch.nn.GELU(approximate='tanh') */
    LK_ACT_COUNT,
} lk_act;

/* Convolution on an NCHW batch; weights [k][c][kh][kw] as in PyTorch. */
typedef struct {
    int n, c, h, w;          /* input */
    int k, kh, kw;           /* output channels and kernel */
    int stride_h, stride_w, pad_h, pad_w;
    int oh, ow;              /* output spatial size (filled by lk_conv2d_desc_init) */
    lk_dtype compute;        /* LK_BF16: the products take bf16 inputs (the input and output
                                gradient rounded to nearest even, the weights given in bf16)
                                and accumulate in float32; every other tensor is float32 */
    int f32_weights;         /* bf16: the weights given in float32 and rounded to nearest even
                                as read (a model without a working copy; the CPU only) */
} lk_conv2d_desc;

typedef struct {
    int n, c, h, w;
    int kh, kw, stride_h, stride_w, pad_h, pad_w;
    int oh, ow;
    int is_max; /* 1: max pooling (saves argmax), 0: average (count_include_pad) */
} lk_pool2d_desc;

typedef enum {
    LK_OPT_SGD = 0,
    LK_OPT_MOMENTUM,
    LK_OPT_NESTEROV,
    LK_OPT_ADAM,
    LK_OPT_ADAMW,
    LK_OPT_RMSPROP,
    LK_OPT_ADAGRAD,
} lk_optim_kind;

/* Everything one fused optimizer pass needs, with the same meaning as PyTorch's
 * torch.optim classes. weight_decay is L2 added to the gradient, except for AdamW
 * where it is decoupled (w -= lr*wd*w). l1 adds l1*sign(w) to the gradient.
 * grad_scale multiplies the raw gradient first (clipping, accumulation). */
typedef struct {
    lk_optim_kind kind;
    float lr, momentum, beta1, beta2, eps, alpha, weight_decay, l1, grad_scale;
    long step; /* 1-based step number, for Adam's bias correction */
    lk_round round; /* how the pass writes the bf16 working copy (first: element 0's index) */
    const float *skip; /* a device flag (guard_rule.h): nonzero drops the pass (NULL: never) */
} lk_optim_hparams;

/* One matrix product as a backend plans and runs it: `count` products
 * C_i = alpha op(A_i)[m,k] op(B_i)[k,n] + beta C_i with X_i = X + i * stride_x
 * (count 1 and strides 0 for a plain gemm; strides in elements). A and B are stored as
 * a_type and b_type; C is float32. compute LK_F32: both operands are float32.
 * compute LK_BF16: the products take bf16 inputs (a float32 operand is rounded to
 * nearest even first) and accumulate in float32. */
typedef struct {
    int trans_a, trans_b, m, n, k, lda, ldb, ldc, count;
    long stride_a, stride_b, stride_c;
    float alpha, beta;
    lk_dtype compute, a_type, b_type;
} lk_gemm_desc;

/* Elements an operand spans from its first: `count` matrices `stride` apart of `outer` rows
 * (as stored) `ld` apart holding `inner` values; A's and B's of g (what a backend copies to
 * round an operand over, gaps and all, so its leading dimension and strides hold). */
static inline size_t lk_span(int count, long stride, int outer, int inner, int ld)
{
    return (size_t)(count - 1) * (size_t)stride + (size_t)(outer - 1) * (size_t)ld + (size_t)inner;
}
static inline size_t lk_gemm_span_a(const lk_gemm_desc *g)
{
    return g->trans_a ? lk_span(g->count, g->stride_a, g->k, g->m, g->lda)
                      : lk_span(g->count, g->stride_a, g->m, g->k, g->lda);
}
static inline size_t lk_gemm_span_b(const lk_gemm_desc *g)
{
    return g->trans_b ? lk_span(g->count, g->stride_b, g->n, g->k, g->ldb)
                      : lk_span(g->count, g->stride_b, g->k, g->n, g->ldb);
}

typedef struct lk_device lk_device;

typedef struct lk_backend {
    const char *name;
    /* memory */
    void *(*alloc)(lk_device *d, size_t bytes);
    void (*free)(lk_device *d, void *p);
    void (*copy_h2d)(lk_device *d, void *dst, const void *src, size_t bytes);
    void (*copy_d2h)(lk_device *d, void *dst, const void *src, size_t bytes);
    void (*copy_d2d)(lk_device *d, void *dst, const void *src, size_t bytes);
    void (*memset0)(lk_device *d, void *p, size_t bytes);
    void (*sync)(lk_device *d);
    /* host memory for staging device buffers (pinned on a GPU); 1 when p is memory of
     * this device that the host cannot address (0 for all of a CPU's memory) */
    void *(*host_alloc)(lk_device *d, size_t bytes);
    void (*host_free)(lk_device *d, void *p);
    int (*owns)(lk_device *d, const void *p);
    /* dense algebra: the products g describes (see lk_gemm_desc) */
    void (*matmul)(lk_device *d, const lk_gemm_desc *g, const void *a, const void *b, float *c);
    /* Optional (NULL: nothing to prepare). Called instead of matmul while the
     * device plans (lk_model_build runs forward and backward once with d->planning set and
     * every compute entry skipped), so the backend can create what each product needs
     * (the CPU's oneDNN primitives and their scratchpad) before any step runs. */
    lk_status (*gemm_plan)(lk_device *d, const lk_gemm_desc *g);
    /* Memory (optional; NULL reads as zeros): held, the bytes the backend keeps for itself
     * (the CPU's oneDNN scratchpad and packed operands, sized by what the models built so
     * far planned); used and total, the device's own memory in use and in all (a GPU's,
     * every allocation and context included; 0 where device memory is host memory). */
    void (*mem_info)(lk_device *d, size_t *held, size_t *used, size_t *total);
    /* y[o][c][i] += b[c]; db[c] = beta * db[c] + sum_{o,i} dy[o][c][i] (beta 0 or 1) */
    void (*bias_add)(lk_device *d, float *y, const float *b, int outer, int c, int inner);
    void (*bias_grad)(lk_device *d, float *db, const float *dy, int outer, int c, int inner,
                      float beta);
    /* y = f(x); dx = dy * f'(x): backward reads y for sigmoid and tanh, x for the others
     * (lk_act_reads_output; the identity neither) */
    void (*act_forward)(lk_device *d, lk_act act, float alpha, const float *x, float *y, size_t n);
    void (*act_backward)(lk_device *d, lk_act act, float alpha, const float *x, const float *y,
                         const float *dy, float *dx, size_t n);
    /* convolution. `saved` (conv2d_saved bytes) is kept by the layer from forward to
     * backward (the CPU keeps its im2col matrix there); `ws` (conv2d_workspace bytes)
     * is scratch shared by all layers. dx is overwritten unless NULL; dw and db become
     * beta * themselves + the gradient (beta 0 or 1); b and db may be NULL. */
    size_t (*conv2d_saved)(lk_device *d, const lk_conv2d_desc *cd);
    size_t (*conv2d_workspace)(lk_device *d, const lk_conv2d_desc *cd);
    void (*conv2d_forward)(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                           const float *b, float *y, void *saved, void *ws);
    void (*conv2d_backward)(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                            const float *dy, float *dx, float *dw, float *db, float beta,
                            void *saved, void *ws);
    /* pooling; argmax is an int32 per output element (max pooling only) */
    void (*pool2d_forward)(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                           int32_t *argmax);
    void (*pool2d_backward)(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                            const int32_t *argmax, float *dx);
    /* dropout: element i is kept when lk_rng_uniform(seed, LK_RNG_DROPOUT, a, first + i) >= p
     * (first: the global index of element 0, so ranks draw for their own samples) */
    void (*dropout_forward)(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                            const float *x, float *y, size_t n);
    void (*dropout_backward)(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                             const float *dy, float *dx, size_t n);
    /* losses over n rows / elements: *loss = mean loss (device scalar);
     * when dx != NULL also dx = d(mean loss)/dx * scale. softmax_xent's rows are ld >= c
     * values apart, of which the first c are the classes (a padded vocabulary): dlogits
     * gets 0 in the others. Its logits and dlogits are stored as t says (bf16: a bf16
     * model's logits; computed in float32, the gradient rounded to nearest even); dlogits
     * may be logits. */
    void (*softmax_xent)(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                         int c, int ld, float *loss, void *dlogits, float scale);
    void (*mse)(lk_device *d, const float *pred, const float *target, size_t n, float *loss,
                float *dpred, float scale);
    void (*bce_logits)(lk_device *d, const float *logits, const float *target, size_t n,
                       float *loss, float *dlogits, float scale);
    /* *correct = number of rows whose argmax (over the first c of each row's ld; the
     * logits stored as t says) equals the label (device scalar) */
    void (*count_correct)(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                          int c, int ld, float *correct);
    /* y[o][j][i][k] = x[o][i][j][k], x viewed as [outer][a][b][inner]: swaps the two
     * middle axes (batch-major <-> time-major sequences, attention heads) */
    void (*transpose)(lk_device *d, const float *x, float *y, int outer, int a, int b, int inner);
    /* Recurrent cells over n rows of hidden size h, PyTorch's gate order.
     * LSTM: g [n][4h] holds the pre-activations of i, f, g, o and is overwritten by their
     * activations; c = f*c_prev + i*g, hout = o*tanh(c). */
    void (*lstm_cell_forward)(lk_device *d, int n, int h, float *g, const float *c_prev, float *c,
                              float *hout);
    /* dh (+ dh_out when not NULL) reaches hout; dc: in, the gradient reaching c from the
     * next step, out, the gradient of c_prev; dg [n][4h] gets the pre-activation gradients. */
    void (*lstm_cell_backward)(lk_device *d, int n, int h, const float *g, const float *c_prev,
                               const float *c, const float *dh, const float *dh_out, float *dc,
                               float *dg);
    /* GRU: gx [n][3h] holds W_ih x + b_ih for r, z, n and is overwritten by the activations
     * r, z, n; gh [n][3h] = W_hh h_prev + b_hh; ghn [n][h] keeps gh's n part for backward;
     * n = tanh(gx_n + r*gh_n), hout = (1-z)*n + z*h_prev. */
    void (*gru_cell_forward)(lk_device *d, int n, int h, float *gx, const float *gh,
                             const float *h_prev, float *hout, float *ghn);
    /* dh: in, the gradient reaching hout (+ dh_out when not NULL); out, z*dh, its direct
     * part to h_prev. dgx, dgh [n][3h]: gradients of the input and hidden pre-activations. */
    void (*gru_cell_backward)(lk_device *d, int n, int h, const float *g, const float *ghn,
                              const float *h_prev, float *dh, const float *dh_out, float *dgx,
                              float *dgh);
    /* Causal softmax of attention scores, in place, over rows of length t: row r is
     * query position i = r mod t and sees keys 0..i; p = softmax(scale * s) there and 0
     * beyond (max-subtracted, one pass per row). */
    void (*softmax_causal_forward)(lk_device *d, float *s, int rows, int t, float scale);
    /* In place: dp (the gradient of p) becomes the gradient of the raw scores s. */
    void (*softmax_causal_backward)(lk_device *d, const float *p, float *dp, int rows, int t,
                                    float scale);
    /* Layer norm over the last `dim` values of each of `rows` rows (biased variance, eps
     * inside the root as PyTorch): y = (x - mean) * rstd * w + b; mean and rstd [rows]
     * are kept for backward, which overwrites dx and makes dw, db beta * themselves +
     * the gradient (beta 0 or 1). */
    void (*layernorm_forward)(lk_device *d, const float *x, const float *w, const float *b,
                              float *y, float *mean, float *rstd, int rows, int dim, float eps);
    void (*layernorm_backward)(lk_device *d, const float *x, const float *w, const float *mean,
                               const float *rstd, const float *dy, float *dx, float *dw,
                               float *db, int rows, int dim, float beta);
    /* Embedding lookup: y[i] = w[idx[i]] for n indices stored as floats (exact below
     * 2^24); backward ADDS dy[i] into dw[idx[i]]. */
    void (*embed_forward)(lk_device *d, const float *idx, const float *w, float *y, int n, int dim);
    void (*embed_backward)(lk_device *d, const float *idx, const float *dy, float *dw, int n,
                           int dim);
    /* The VAE's reparameterisation over n rows of ml = [mu (zdim) | logvar (zdim)]:
     * z = mu + exp(logvar / 2) * eps with eps = lk_rng_normal(seed, LK_RNG_NOISE, key,
     * first + row * zdim + j) when `noise`, else z = mu; *kl (device scalar) = the mean over rows
     * of -1/2 sum_j (1 + logvar - mu^2 - exp(logvar)). Backward overwrites dml with
     * d/dml of (dz . z + kl_scale * the sum over rows of the KL). */
    void (*reparam_forward)(lk_device *d, const float *ml, float *z, int n, int zdim, int noise,
                            uint64_t seed, uint64_t key, uint64_t first, float *kl);
    void (*reparam_backward)(lk_device *d, const float *ml, const float *dz, float *dml, int n,
                             int zdim, uint64_t seed, uint64_t key, uint64_t first, float kl_scale);
    /* Batch norm over x [n][c][inner] (statistics per channel c).
     * bn_sums: out[0..c) = sum of x, out[c..2c) = sum of x^2 (dy NULL), or with dy:
     *   out[0..c) = sum of dy, out[c..2c) = sum of dy * xhat (xhat = (x - mean) * rstd);
     *   out[2c] = n * inner, the count (so sums from several ranks add up).
     * bn_stats: from such sums (of x), mean and rstd = 1/sqrt(biased var + eps), and the
     *   running statistics updated when run_mean is not NULL (running = (1 - momentum) *
     *   running + momentum * batch, the variance unbiased) with *tracked += 1; with sums
     *   NULL, mean and rstd from the running statistics instead (evaluation).
     * bn_forward: y = (x - mean) * rstd * w + b.
     * bn_backward: dx from gsums (sums of dy over every sample normalised together). */
    void (*bn_sums)(lk_device *d, const float *x, const float *dy, const float *mean,
                    const float *rstd, int n, int c, int inner, float *out);
    void (*bn_stats)(lk_device *d, const float *sums, int c, float eps, float momentum,
                     float *mean, float *rstd, float *run_mean, float *run_var, float *tracked);
    void (*bn_forward)(lk_device *d, const float *x, const float *mean, const float *rstd,
                       const float *w, const float *b, float *y, int n, int c, int inner);
    void (*bn_backward)(lk_device *d, const float *x, const float *dy, const float *mean,
                        const float *rstd, const float *w, const float *gsums, float *dx, int n,
                        int c, int inner);
    /* out[i] = lk_rng_normal(seed, LK_RNG_NOISE, key, first + i): latent codes (the GAN's z) */
    void (*randn)(lk_device *d, float *out, size_t n, uint64_t seed, uint64_t key, uint64_t first);
    /* x = a * x + b, in place (images in [0, 1] to [-1, 1]) */
    void (*affine)(lk_device *d, float *x, float a, float b, size_t n);
    /* flat-buffer helpers */
    /* ... and, with w16, the updated weights rounded into it as hp->round says (in the same
     * pass where the backend can: the bf16 working copy) */
    void (*optim_update)(lk_device *d, const lk_optim_hparams *hp, float *w, const float *g,
                       float *s1, float *s2, uint16_t *w16, size_t n);
    void (*sumsq)(lk_device *d, const float *x, size_t n, float *out); /* device scalar */
    /* the step check's phase on its state in this device's memory (lk_guard_apply) */
    void (*guard)(lk_device *d, lk_guard_state *g, int phase, lk_guard_cfg c, long long step, float *loss_acc,
                  float samples);
    /* y = bf16(x) rounded as r says (the bf16 working copy of the weights) */
    void (*cast_bf16)(lk_device *d, const float *x, uint16_t *y, size_t n, const lk_round *r);
    /* y = float32(x) (bf16 activations staged for element-wise work) */
    void (*widen_bf16)(lk_device *d, const uint16_t *x, float *y, size_t n);
    /* The 16-bit gradient wire (t: LK_BF16 or LK_F16; --grad-dtype, --grad-compress):
     * y = x * scale rounded to nearest even into t; and back, y = float32(x) * scale */
    void (*pack16)(lk_device *d, lk_dtype t, const float *x, float scale, uint16_t *y, size_t n);
    void (*unpack16)(lk_device *d, lk_dtype t, const uint16_t *x, float scale, float *y, size_t n);
    /* Gram-Schmidt over the r columns of each of `count` row-major n x r matrices stored
     * back to back (PowerSGD's P): column j minus its projections on columns 0..j-1, then
     * divided by its norm. A column (nearly) in the span of the earlier ones (its norm left
     * <= 1e-4 of what it had, or zero) is replaced by unit vector e_((j + t) mod n), t = 0,
     * 1, ..., until one is not, and that is orthonormalised: P always has orthonormal
     * columns (normalised rounding noise would not be orthogonal; a zero column would make
     * the next warm-started Q lose that direction for good). Sums in double, in a fixed
     * order for given (n, r), so every rank of a kind gets the same bits */
    void (*orthonormalize)(lk_device *d, float *p, int n, int r, int count);
    void (*scale)(lk_device *d, float *x, float a, size_t n);
    void (*axpy)(lk_device *d, float a, const float *x, float *y, size_t n); /* y += a*x */
    /* DP-SGD's per-sample gradient norms of a linear layer over flat inputs, never forming the
     * per-sample gradients (dy_i x_i^T has norm |x_i| |dy_i|): for x [n, in] and its output's
     * gradient dy [n, out], sq[i] += (|x_i|^2 + bias) * |dy_i|^2 (bias 1 where the layer has
     * one: its per-sample gradient is dy_i), sums in double */
    void (*ghost_norm)(lk_device *d, const float *x, const float *dy, int n, int in, int out, int bias,
                       float *sq);
    /* the first failure since the device was opened (a GPU's calls are asynchronous:
     * they fail later, and the entries above cannot return it), else LK_OK */
    lk_status (*status)(lk_device *d);
} lk_backend;

struct lk_device {
    lk_device_kind kind;
    int ordinal;            /* GPU index, 0 for the CPU */
    int threads;            /* CPU threads for BLAS and OpenMP loops */
    int host_addressable;   /* device memory is ordinary host memory (the CPU) */
    int planning;           /* 1 while a model plans: ops.c skips every compute entry and
                               hands products to gemm_plan instead */
    int sizing;             /* 1 while a dry model (LK_BUILD_DRY) plans: backends note the
                               buffers they would need (mem_info's held) and allocate none;
                               what they create for it is not used later */
    int bf16_emulated;      /* 1 where bf16 products run as float32 products of bf16-rounded
                               operands (a CPU without AMX, or without oneDNN's bf16
                               primitives): each product then widens its bf16 operands */
    const lk_backend *ops;
    void *impl;             /* backend state (handles, streams) */
    char name[64];
};

/* Opens "cpu", "cuda", "cuda:N" or "auto" (CUDA when built with it and a GPU is
 * present, else the CPU). threads <= 0 keeps the backend's default. */
lk_status lk_device_open(lk_device **out, const char *spec, int threads);
void lk_device_close(lk_device *d);
/* A device for a helper thread (the comm thread) to run main's ops on main's memory while
 * the training thread uses main: its own primitives, caches and scratch, one thread, and
 * the caller's threads left as they were. Only a CPU has one (a GPU's kernels would share
 * its stream with the training thread's): LK_ERR_DEVICE elsewhere. */
lk_status lk_device_open_helper(lk_device **out, const lk_device *main);
/* Called first on a helper thread: what it runs in OpenMP regions runs on it alone, beside
 * the training thread's team rather than with a team of its own. */
void lk_device_helper_thread(void);

/* Backends register a constructor; the CPU one is always linked. */
lk_status lk_backend_cpu_open(lk_device *d, int threads);
lk_status lk_backend_cpu_open_helper(lk_device *d); /* one thread, the caller's OpenMP count kept */
void lk_backend_cpu_close(lk_device *d);
/* The CUDA backend (built when nvcc is found: LK_HAVE_CUDA). */
lk_status lk_backend_cuda_open(lk_device *d, int ordinal, int threads);
void lk_backend_cuda_close(lk_device *d);
int lk_cuda_device_count(void); /* 0 without a usable GPU or driver */
/* e.g. "CUDA runtime 13.0, driver 13.0, cuDNN 9.13.0", or why there is no GPU;
 * "not built" without the CUDA backend */
const char *lk_cuda_describe(void);
/* The PCI bus id ("0000:3b:00.0") of visible GPU `ordinal`; 0 on success. Creates no
 * context, so it may come before the device is chosen. */
int lk_cuda_pci_bus_id(int ordinal, char *buf, int len);
/* The CUDA device's compute stream (a cudaStream_t), for NCCL to order against. */
void *lk_cuda_stream(lk_device *d);
/* The device a local rank uses: "cpu", or "cuda:N" where "auto" and "cuda" become
 * GPU local_rank mod (visible GPUs) - one GPU per rank on a host, as
 * CUDA_VISIBLE_DEVICES shows them - and "auto" becomes "cpu" without a GPU. */
lk_status lk_device_resolve(const char *spec, int local_rank, char *out, size_t len);
/* The CPU's math library and what it dispatches to on this CPU. */
typedef struct {
    char library[64];     /* "oneDNN 2.6.3 (OpenMP runtime)" */
    char isa[32];         /* the instruction set oneDNN dispatches to: "avx512_core_amx" */
    char cpu_isa[32];     /* the best one the CPU and the OS report (cpuid, XCR0) */
    char fp32_kernel[64]; /* oneDNN's implementation of a float32 matmul: "brg:avx512_core" */
    char bf16_kernel[64]; /* and of a bf16 one (float32 accumulation): "brg:avx512_core_amx" */
    int bf16_native;      /* isa has bf16 instructions (AVX-512 BF16 or AMX) */
    int bf16_onednn;      /* bf16 products run as oneDNN's bf16 kernels (bf16_kernel: with
                             AMX); else lockstep rounds the operands to bf16 and multiplies
                             in float32 - the same values, faster than oneDNN 2.6's bf16
                             kernels without AMX ("none": it has none on this CPU) */
    int below;            /* isa is below cpu_isa (an old oneDNN, ONEDNN_MAX_CPU_ISA, ...) */
    int baseline;         /* isa is the baseline (SSE4.1 or less) */
} lk_cpu_math_info;
void lk_backend_cpu_math_info(lk_cpu_math_info *out);
/* FLOP/s of bf16 products of n x n x n accumulated in float32 on this CPU device (the
 * weights kept in the layout oneDNN wants), best of repetitions over min_s seconds; 0
 * when the CPU has no bf16 instructions (avx512_bf16 or AMX). */
lk_status lk_backend_cpu_bf16_rate(lk_device *d, int n, double min_s, double *flops);

#endif
