/* backend_cpu_conv.c - convolution through oneDNN, and pooling.
 *
 * Each convolution shape (batch included) gets, once, oneDNN's forward, backward-data
 * and backward-weights primitives, created with "any" layouts so oneDNN picks its
 * fastest kernels and the blocked layouts they want (nChw16c activations, blocked
 * weights), plus the reorders between those layouts and the layers' NCHW / OIHW
 * tensors. Direct convolution only: oneDNN 2.6's Winograd F(4x4, 3x3) kernels allocate
 * inside their execute and crashed on partial batches here. Forward inputs with fewer
 * than 16 channels stay NCHW (oneDNN's first-layer kernels read it; a blocked copy
 * would pad the channels to 16).
 *
 * saved (per layer, forward to backward): the input and the weights in the layouts the
 * primitives read, so backward does not reorder them again.
 * ws (shared): the blocked output, output gradient, input gradient and weight gradient.
 * In bf16 (cd->compute) the primitives read the input, the weights (the layer's bf16
 * working copy, or its float32 master: cd->f32_weights) and the output gradient as bf16
 * (the views round the float32 ones) and write the output and the gradients in float32.
 * The bias is added by the forward primitive and its gradient computed by the
 * backward-weights one (into a buffer of the convolution's, then added with beta). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"

/* A tensor as the layer holds it (plain: NCHW / OIHW) and as a primitive reads or writes
 * it (prim), with the reorders between them when they differ. */
typedef struct {
    dnnl_memory_desc_t plain, prim;
    int same;                    /* prim is the plain layout: no reorder, no buffer */
    lk_cpu_step in, out;         /* plain -> prim; prim -> plain */
    lk_cpu_step out_add;         /* prim -> plain, adding to what is there (beta 1) */
    dnnl_memory_t mplain, mprim; /* handles set at each use */
    size_t bytes;                /* of prim */
} view;

typedef struct {
    lk_cpu_step fwd, bwd_d, bwd_w;
    view src, wei, dst;     /* forward */
    view ddst, dwei, dsrc;  /* backward-data: output gradient in, weights in, input gradient out */
    view wsrc, wddst, gwei; /* backward-weights: input in, output gradient in, weight gradient out */
    dnnl_memory_t bias, dbias; /* forward's bias, backward-weights' bias gradient (plain) */
    float *zeros, *dbias_buf;  /* [k]: the bias of a layer without one; the bias gradient */
    int dwei_is_wei, wsrc_is_src, wddst_is_ddst; /* backward reuses forward's / data's buffers */
    size_t saved, saved_wei;                    /* saved: blocked input | blocked weights */
    size_t ws;
    size_t ws_ddst, ws_dsrc, ws_gwei, ws_other; /* offsets in ws (backward) */
} conv;

static void view_destroy(view *v)
{
    lk_cpu_step_destroy(&v->in);
    lk_cpu_step_destroy(&v->out);
    lk_cpu_step_destroy(&v->out_add);
    if (v->mplain) dnnl_memory_destroy(v->mplain);
    if (v->mprim) dnnl_memory_destroy(v->mprim);
}

static void conv_destroy(void *obj)
{
    conv *cv = obj;
    lk_cpu_step *steps[3] = {&cv->fwd, &cv->bwd_d, &cv->bwd_w};
    for (int i = 0; i < 3; i++) lk_cpu_step_destroy(steps[i]);
    view *views[9] = {&cv->src, &cv->wei, &cv->dst, &cv->ddst, &cv->dwei, &cv->dsrc,
                      &cv->wsrc, &cv->wddst, &cv->gwei};
    for (int i = 0; i < 9; i++) view_destroy(views[i]);
    if (cv->bias) dnnl_memory_destroy(cv->bias);
    if (cv->dbias) dnnl_memory_destroy(cv->dbias);
    free(cv->zeros);
    free(cv->dbias_buf);
    free(cv);
}

/* dir: 1 the primitive reads the tensor, 0 it writes it (out_add too when add) */
static int view_init(lk_cpu *c, view *v, const dnnl_memory_desc_t *plain,
                     const dnnl_memory_desc_t *prim, int dir, int add)
{
    dnnl_engine_t e = lk_cpu_engine(c);
    v->plain = *plain;
    v->prim = *prim;
    v->same = dnnl_memory_desc_equal(plain, prim);
    v->bytes = v->same ? 0 : dnnl_memory_desc_get_size(prim);
    if (dnnl_memory_create(&v->mplain, plain, e, DNNL_MEMORY_NONE) != dnnl_success ||
        dnnl_memory_create(&v->mprim, prim, e, DNNL_MEMORY_NONE) != dnnl_success)
        return 0;
    if (v->same && !add) return 1;
    if (dir) return lk_cpu_reorder_init(c, &v->in, plain, prim, 0.0f);
    return (v->same || lk_cpu_reorder_init(c, &v->out, prim, plain, 0.0f)) &&
           (!add || lk_cpu_reorder_init(c, &v->out_add, prim, plain, 1.0f));
}

static void run_reorder(lk_cpu *c, const lk_cpu_step *r, dnnl_memory_t from, dnnl_memory_t to)
{
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    lk_cpu_step_run(c, r, args, 2, "reorder");
}

/* The tensor in the primitive's layout: the user's memory, or buf after a reorder. */
static void *view_in(lk_cpu *c, view *v, const void *user, void *buf)
{
    if (v->same) return (void *)user;
    dnnl_memory_set_data_handle(v->mplain, (void *)user);
    dnnl_memory_set_data_handle(v->mprim, buf);
    run_reorder(c, &v->in, v->mplain, v->mprim);
    return buf;
}

/* Where the primitive should write: the user's memory (plain, beta 0) or buf. */
static void *view_target(const view *v, void *user, void *buf, float beta)
{
    return v->same && beta == 0.0f ? user : buf;
}

/* Moves what the primitive wrote into buf to the user's memory (replacing, or adding
 * when beta is 1). */
static void view_out(lk_cpu *c, view *v, void *buf, void *user, float beta)
{
    if (v->same && beta == 0.0f) return;
    dnnl_memory_set_data_handle(v->mprim, buf);
    dnnl_memory_set_data_handle(v->mplain, user);
    run_reorder(c, beta != 0.0f ? &v->out_add : &v->out, v->mprim, v->mplain);
}

static const dnnl_memory_desc_t *query(dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* The primitive descriptor of oneDNN's first choice for op, unless that is a gemm-based
 * convolution (those allocate inside their execute) and a jit kernel comes later in its
 * list. */
static int make_pd(dnnl_primitive_desc_t *pd, const void *op, const_dnnl_primitive_attr_t attr,
                   dnnl_engine_t e, const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_iterator_t it = NULL;
    *pd = NULL;
    if (dnnl_primitive_desc_iterator_create(&it, (const_dnnl_op_desc_t)op, attr, e, hint) !=
        dnnl_success)
        return 0;
    dnnl_primitive_desc_t first = dnnl_primitive_desc_iterator_fetch(it);
    const char *impl = NULL;
    if (first) dnnl_primitive_desc_query(first, dnnl_query_impl_info_str, 0, &impl);
    if (impl && strstr(impl, "gemm"))
        while (dnnl_primitive_desc_iterator_next(it) == dnnl_success) {
            dnnl_primitive_desc_t alt = dnnl_primitive_desc_iterator_fetch(it);
            const char *ai = NULL;
            if (alt) dnnl_primitive_desc_query(alt, dnnl_query_impl_info_str, 0, &ai);
            if (ai && strstr(ai, "jit") && !strstr(ai, "gemm")) {
                dnnl_primitive_desc_destroy(first);
                first = alt;
                break;
            }
            if (alt) dnnl_primitive_desc_destroy(alt);
        }
    dnnl_primitive_desc_iterator_destroy(it);
    *pd = first;
    return first != NULL;
}

static int md4(dnnl_memory_desc_t *md, int a, int b, int h, int w, dnnl_format_tag_t tag, lk_dtype t)
{
    return dnnl_memory_desc_init_by_tag(md, 4, (dnnl_dims_t){a, b, h, w},
                                        t == LK_BF16 ? dnnl_bf16 : dnnl_f32, tag) == dnnl_success;
}

static int conv_build(lk_cpu *c, const lk_conv2d_desc *cd, conv *cv)
{
    dnnl_engine_t e = lk_cpu_engine(c);
    const dnnl_alg_kind_t alg = dnnl_convolution_direct;

    /* The primitives read the input, the weights and the output gradient in the compute
     * type (the views round a float32 input to bf16) and write float32. */
    const lk_dtype t = cd->compute, f = LK_F32;
    dnnl_memory_desc_t src, wei, gw, bias, dst, src_fwd, src_any, dsrc_any, wei_any, gwei_any, dst_any,
        ddst_any;
    dnnl_dims_t strides = {cd->stride_h, cd->stride_w}, pad = {cd->pad_h, cd->pad_w};
    dnnl_convolution_desc_t fd, bd, wd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t attr = lk_cpu_attr(c, 1.0f, 0.0f);
    const dnnl_format_tag_t any = dnnl_format_tag_any;
    int ok = attr && md4(&src, cd->n, cd->c, cd->h, cd->w, dnnl_nchw, f) &&
             md4(&wei, cd->k, cd->c, cd->kh, cd->kw, dnnl_oihw, cd->f32_weights ? f : t) &&
             md4(&gw, cd->k, cd->c, cd->kh, cd->kw, dnnl_oihw, f) &&
             md4(&dst, cd->n, cd->k, cd->oh, cd->ow, dnnl_nchw, f) &&
             md4(&src_fwd, cd->n, cd->c, cd->h, cd->w, cd->c >= 16 ? any : dnnl_nchw, t) &&
             md4(&src_any, cd->n, cd->c, cd->h, cd->w, any, t) &&
             md4(&dsrc_any, cd->n, cd->c, cd->h, cd->w, any, f) &&
             md4(&wei_any, cd->k, cd->c, cd->kh, cd->kw, any, t) &&
             md4(&gwei_any, cd->k, cd->c, cd->kh, cd->kw, any, f) &&
             md4(&dst_any, cd->n, cd->k, cd->oh, cd->ow, any, f) &&
             md4(&ddst_any, cd->n, cd->k, cd->oh, cd->ow, any, t) &&
             dnnl_memory_desc_init_by_tag(&bias, 1, (dnnl_dims_t){cd->k}, dnnl_f32, dnnl_x) == dnnl_success &&
             dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &src_fwd, &wei_any,
                                                &bias, &dst_any, strides, pad, pad) == dnnl_success &&
             make_pd(&fpd, &fd, attr, e, NULL) &&
             dnnl_convolution_backward_data_desc_init(&bd, alg, &dsrc_any, &wei_any, &ddst_any, strides,
                                                      pad, pad) == dnnl_success &&
             make_pd(&bpd, &bd, attr, e, fpd) &&
             dnnl_convolution_backward_weights_desc_init(&wd, alg, &src_any, &gwei_any, &bias,
                                                         &ddst_any, strides, pad, pad) == dnnl_success &&
             make_pd(&wpd, &wd, attr, e, fpd);
    ok = ok && lk_cpu_step_init(c, &cv->fwd, fpd) && lk_cpu_step_init(c, &cv->bwd_d, bpd) &&
         lk_cpu_step_init(c, &cv->bwd_w, wpd) &&
         view_init(c, &cv->src, &src, query(fpd, dnnl_query_src_md), 1, 0) &&
         view_init(c, &cv->wei, &wei, query(fpd, dnnl_query_weights_md), 1, 0) &&
         view_init(c, &cv->dst, &dst, query(fpd, dnnl_query_dst_md), 0, 0) &&
         view_init(c, &cv->ddst, &dst, query(bpd, dnnl_query_diff_dst_md), 1, 0) &&
         view_init(c, &cv->dwei, &wei, query(bpd, dnnl_query_weights_md), 1, 0) &&
         view_init(c, &cv->dsrc, &src, query(bpd, dnnl_query_diff_src_md), 0, 0) &&
         view_init(c, &cv->wsrc, &src, query(wpd, dnnl_query_src_md), 1, 0) &&
         view_init(c, &cv->wddst, &dst, query(wpd, dnnl_query_diff_dst_md), 1, 0) &&
         view_init(c, &cv->gwei, &gw, query(wpd, dnnl_query_diff_weights_md), 0, 1) &&
         dnnl_memory_create(&cv->bias, &bias, e, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&cv->dbias, &bias, e, DNNL_MEMORY_NONE) == dnnl_success &&
         (cv->zeros = calloc((size_t)cd->k, sizeof(float))) != NULL &&
         (cv->dbias_buf = calloc((size_t)cd->k, sizeof(float))) != NULL;
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) return 0;
    cv->dwei_is_wei = dnnl_memory_desc_equal(&cv->dwei.prim, &cv->wei.prim);
    cv->wsrc_is_src = dnnl_memory_desc_equal(&cv->wsrc.prim, &cv->src.prim);
    cv->wddst_is_ddst = dnnl_memory_desc_equal(&cv->wddst.prim, &cv->ddst.prim);
    const size_t align = 64;
    cv->saved_wei = LK_ALIGN_UP(cv->src.bytes, align);
    cv->saved = cv->saved_wei + LK_ALIGN_UP(cv->wei.bytes, align);
    /* backward's ws: output gradient | input gradient | weight gradient (always: beta 1
     * adds it) | the inputs backward cannot share with forward's or backward-data's */
    cv->ws_ddst = 0;
    cv->ws_dsrc = LK_ALIGN_UP(cv->ddst.bytes, align);
    cv->ws_gwei = cv->ws_dsrc + LK_ALIGN_UP(cv->dsrc.bytes, align);
    cv->ws_other = cv->ws_gwei + LK_ALIGN_UP(dnnl_memory_desc_get_size(&cv->gwei.prim), align);
    size_t other = (cv->wsrc_is_src ? 0 : LK_ALIGN_UP(cv->wsrc.bytes, align)) +
                   (cv->dwei_is_wei ? 0 : LK_ALIGN_UP(cv->dwei.bytes, align)) +
                   (cv->wddst_is_ddst ? 0 : LK_ALIGN_UP(cv->wddst.bytes, align));
    cv->ws = LK_MAX(LK_ALIGN_UP(cv->dst.bytes, align), cv->ws_other + other);
    return 1;
}

static lk_cpu_key conv_key(const lk_conv2d_desc *cd)
{
    lk_cpu_key k = {{0}};
    int f[] = {LK_CPU_KEY_CONV, cd->n, cd->c, cd->h, cd->w, cd->k, cd->kh, cd->kw,
               cd->stride_h, cd->stride_w, cd->pad_h, cd->pad_w, (int)cd->compute, cd->f32_weights};
    memcpy(k.v, f, sizeof f);
    return k;
}

static conv *conv_get(lk_device *d, const lk_conv2d_desc *cd)
{
    lk_cpu *c = lk_cpu_of(d);
    lk_cpu_key k = conv_key(cd);
    conv *cv = lk_cpu_cache_find(c, &k);
    if (cv) return cv;
    cv = calloc(1, sizeof *cv);
    int ok = cv && conv_build(c, cd, cv);
    if (!ok) {
        lk_cpu_fail(c, LK_ERR_DEVICE,
                    "oneDNN: cannot create a %s convolution of [%d, %d, %d, %d] with %d %dx%d filters "
                    "(stride %d, padding %d)",
                    lk_dtype_name(cd->compute), cd->n, cd->c, cd->h, cd->w, cd->k, cd->kh, cd->kw, cd->stride_h, cd->pad_h);
        if (cv) conv_destroy(cv);
        return NULL;
    }
    lk_cpu_cache_put(c, &k, cv, conv_destroy);
    return cv;
}

/* ---- bf16 where oneDNN has none (lk_cpu_bf16_emulated): the float32 convolution on
 * the input rounded to bf16 (kept in `saved` after the float32 one's part, for the weight
 * gradient), the weights widened and the output gradient rounded (in `ws` after the
 * float32 one's part) ---- */

static size_t numel_x(const lk_conv2d_desc *cd) { return (size_t)cd->n * cd->c * cd->h * cd->w; }
static size_t numel_y(const lk_conv2d_desc *cd) { return (size_t)cd->n * cd->k * cd->oh * cd->ow; }
static size_t numel_w(const lk_conv2d_desc *cd) { return (size_t)cd->k * cd->c * cd->kh * cd->kw; }
static size_t f32_bytes(size_t n) { return LK_ALIGN_UP(n * sizeof(float), 64); }

/* 1 (and the float32 descriptor in *f) when cd is a bf16 convolution to emulate */
static int emulate(lk_device *d, const lk_conv2d_desc *cd, lk_conv2d_desc *f)
{
    if (cd->compute != LK_BF16 || !lk_cpu_bf16_emulated(lk_cpu_of(d))) return 0;
    *f = *cd;
    f->compute = LK_F32;
    return 1;
}

size_t lk_cpu_conv2d_saved(lk_device *d, const lk_conv2d_desc *cd)
{
    lk_conv2d_desc f;
    if (emulate(d, cd, &f)) return LK_ALIGN_UP(lk_cpu_conv2d_saved(d, &f), 64) + f32_bytes(numel_x(cd));
    conv *cv = conv_get(d, cd);
    return cv ? cv->saved : 0;
}

size_t lk_cpu_conv2d_workspace(lk_device *d, const lk_conv2d_desc *cd)
{
    lk_conv2d_desc f;
    if (emulate(d, cd, &f))
        return LK_ALIGN_UP(lk_cpu_conv2d_workspace(d, &f), 64) + f32_bytes(numel_w(cd)) + f32_bytes(numel_y(cd));
    conv *cv = conv_get(d, cd);
    return cv ? cv->ws : 0;
}

void lk_cpu_conv2d_forward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                           const float *b, float *y, void *saved, void *ws)
{
    lk_conv2d_desc f;
    if (emulate(d, cd, &f)) {
        float *xr = (float *)((char *)saved + LK_ALIGN_UP(lk_cpu_conv2d_saved(d, &f), 64));
        float *wr = (float *)((char *)ws + LK_ALIGN_UP(lk_cpu_conv2d_workspace(d, &f), 64));
        lk_cpu_round_f32(x, LK_F32, xr, numel_x(cd));
        lk_cpu_round_f32(w, cd->f32_weights ? LK_F32 : LK_BF16, wr, numel_w(cd));
        lk_cpu_conv2d_forward(d, &f, xr, wr, b, y, saved, ws);
        return;
    }
    lk_cpu *c = lk_cpu_of(d);
    conv *cv = conv_get(d, cd);
    if (!cv) return;
    char *sv = saved;
    void *src = view_in(c, &cv->src, x, sv);
    void *wei = view_in(c, &cv->wei, w, sv + cv->saved_wei);
    void *dst = view_target(&cv->dst, y, ws, 0.0f);
    dnnl_memory_set_data_handle(cv->src.mprim, src);
    dnnl_memory_set_data_handle(cv->wei.mprim, wei);
    dnnl_memory_set_data_handle(cv->dst.mprim, dst);
    dnnl_memory_set_data_handle(cv->bias, b ? (void *)b : cv->zeros);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, cv->src.mprim}, {DNNL_ARG_WEIGHTS, cv->wei.mprim},
                               {DNNL_ARG_DST, cv->dst.mprim}, {DNNL_ARG_BIAS, cv->bias}};
    lk_cpu_step_run(c, &cv->fwd, args, 4, "convolution forward");
    view_out(c, &cv->dst, dst, y, 0.0f);
}

void lk_cpu_conv2d_backward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                            const float *dy, float *dx, float *dw, float *db, float beta,
                            void *saved, void *ws)
{
    lk_conv2d_desc f;
    if (emulate(d, cd, &f)) { /* the rounded input is forward's, in saved */
        const float *xr = (const float *)((char *)saved + LK_ALIGN_UP(lk_cpu_conv2d_saved(d, &f), 64));
        float *wr = (float *)((char *)ws + LK_ALIGN_UP(lk_cpu_conv2d_workspace(d, &f), 64));
        float *dyr = (float *)((char *)wr + f32_bytes(numel_w(cd)));
        lk_cpu_round_f32(w, cd->f32_weights ? LK_F32 : LK_BF16, wr, numel_w(cd));
        lk_cpu_round_f32(dy, LK_F32, dyr, numel_y(cd));
        lk_cpu_conv2d_backward(d, &f, xr, wr, dyr, dx, dw, NULL, beta, saved, ws);
        if (db) lk_cpu_bias_grad(d, db, dy, cd->n, cd->k, cd->oh * cd->ow, beta); /* float32 dy */
        return;
    }
    lk_cpu *c = lk_cpu_of(d);
    conv *cv = conv_get(d, cd);
    if (!cv) return;
    char *sv = saved, *wb = ws, *other = wb + cv->ws_other;
    void *ddst = view_in(c, &cv->ddst, dy, wb + cv->ws_ddst);
    if (dx) {
        void *wei;
        if (cv->dwei_is_wei) { /* forward kept them in this layout */
            wei = cv->wei.same ? (void *)w : sv + cv->saved_wei;
        } else {
            wei = view_in(c, &cv->dwei, w, other);
            other += LK_ALIGN_UP(cv->dwei.bytes, 64);
        }
        void *dsrc = view_target(&cv->dsrc, dx, wb + cv->ws_dsrc, 0.0f);
        dnnl_memory_set_data_handle(cv->ddst.mprim, ddst);
        dnnl_memory_set_data_handle(cv->dwei.mprim, wei);
        dnnl_memory_set_data_handle(cv->dsrc.mprim, dsrc);
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, cv->ddst.mprim},
                                   {DNNL_ARG_WEIGHTS, cv->dwei.mprim},
                                   {DNNL_ARG_DIFF_SRC, cv->dsrc.mprim}};
        lk_cpu_step_run(c, &cv->bwd_d, args, 3, "convolution backward (data)");
        view_out(c, &cv->dsrc, dsrc, dx, 0.0f);
    }
    void *src = cv->wsrc_is_src ? (cv->src.same ? (void *)x : sv) : view_in(c, &cv->wsrc, x, other);
    if (!cv->wsrc_is_src) other += LK_ALIGN_UP(cv->wsrc.bytes, 64);
    void *wddst = cv->wddst_is_ddst ? ddst : view_in(c, &cv->wddst, dy, other);
    void *gwei = view_target(&cv->gwei, dw, wb + cv->ws_gwei, beta);
    dnnl_memory_set_data_handle(cv->wsrc.mprim, src);
    dnnl_memory_set_data_handle(cv->wddst.mprim, wddst);
    dnnl_memory_set_data_handle(cv->gwei.mprim, gwei);
    dnnl_memory_set_data_handle(cv->dbias, cv->dbias_buf);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, cv->wsrc.mprim}, {DNNL_ARG_DIFF_DST, cv->wddst.mprim},
                               {DNNL_ARG_DIFF_WEIGHTS, cv->gwei.mprim},
                               {DNNL_ARG_DIFF_BIAS, cv->dbias}};
    lk_cpu_step_run(c, &cv->bwd_w, args, 4, "convolution backward (weights)");
    view_out(c, &cv->gwei, gwei, dw, beta);
    if (db && cd->compute == LK_BF16) /* from the float32 gradient: a sum, not a product */
        lk_cpu_bias_grad(d, db, dy, cd->n, cd->k, cd->oh * cd->ow, beta);
    else if (db) /* replace with beta 0: even a stale NaN goes */
        for (int k = 0; k < cd->k; k++) db[k] = beta != 0.0f ? db[k] + cv->dbias_buf[k] : cv->dbias_buf[k];
}

/* The common 2x2/2 max pooling without the generic window loops. Ties keep the
 * first element in row-major order, as the generic path does. */
static void maxpool_2x2(const lk_pool2d_desc *pd, const float *x, float *y, int32_t *argmax)
{
    const long planes = (long)pd->n * pd->c;
    const int W = pd->w, OW = pd->ow, OH = pd->oh;
    LK_CPU_FOR(planes * pd->h * W > LK_CPU_PAR_MIN, pl, planes, {
        const float *in = x + (size_t)pl * pd->h * W;
        float *out = y + (size_t)pl * OH * OW;
        int32_t *am = argmax + (size_t)pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = in + (size_t)(2 * oh) * W, *r1 = r0 + W;
            float *o = out + (size_t)oh * OW;
            int32_t *a = am + (size_t)oh * OW;
            const int b0 = 2 * oh * W, b1 = b0 + W;
            /* max first, then the first position holding it: a select chain that
             * vectorises, with the same ties-to-first rule as the generic path */
            for (int ow = 0; ow < OW; ow++) {
                const int i = 2 * ow;
                const float v0 = r0[i], v1 = r0[i + 1], v2 = r1[i], v3 = r1[i + 1];
                const float m01 = v1 > v0 ? v1 : v0, m23 = v3 > v2 ? v3 : v2;
                const float m = m23 > m01 ? m23 : m01; /* (not fmaxf: a libm call) */
                o[ow] = m;
                a[ow] = v0 == m ? b0 + i : v1 == m ? b0 + i + 1 : v2 == m ? b1 + i : b1 + i + 1;
            }
        }
    });
}

void lk_cpu_pool2d_forward(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                           int32_t *argmax)
{
    (void)d;
    const long planes = (long)pd->n * pd->c;
    const float inv = 1.0f / (float)(pd->kh * pd->kw);
    if (pd->is_max && pd->kh == 2 && pd->kw == 2 && pd->stride_h == 2 && pd->stride_w == 2 &&
        pd->pad_h == 0 && pd->pad_w == 0) {
        maxpool_2x2(pd, x, y, argmax);
        return;
    }
    LK_CPU_FOR(planes * pd->h * pd->w > LK_CPU_PAR_MIN, pl, planes, {
        const float *in = x + (size_t)pl * pd->h * pd->w;
        float *out = y + (size_t)pl * pd->oh * pd->ow;
        int32_t *am = argmax ? argmax + (size_t)pl * pd->oh * pd->ow : NULL;
        for (int oh = 0; oh < pd->oh; oh++)
            for (int ow = 0; ow < pd->ow; ow++) {
                int h0 = oh * pd->stride_h - pd->pad_h, w0 = ow * pd->stride_w - pd->pad_w;
                float best = -INFINITY, sum = 0.0f;
                int besti = -1;
                for (int i = h0; i < h0 + pd->kh; i++) {
                    if (i < 0 || i >= pd->h) continue;
                    for (int j = w0; j < w0 + pd->kw; j++) {
                        if (j < 0 || j >= pd->w) continue;
                        float v = in[i * pd->w + j];
                        sum += v;
                        if (v > best || besti < 0) {
                            best = v;
                            besti = i * pd->w + j;
                        }
                    }
                }
                size_t o = (size_t)oh * pd->ow + ow;
                if (pd->is_max) {
                    out[o] = best;
                    am[o] = besti;
                } else {
                    out[o] = sum * inv; /* count_include_pad, as PyTorch's default */
                }
            }
    });
}

void lk_cpu_pool2d_backward(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                            const int32_t *argmax, float *dx)
{
    (void)d;
    const long planes = (long)pd->n * pd->c;
    const float inv = 1.0f / (float)(pd->kh * pd->kw);
    LK_CPU_FOR(planes * pd->h * pd->w > LK_CPU_PAR_MIN, pl, planes, {
        float *in = dx + (size_t)pl * pd->h * pd->w;
        const float *g = dy + (size_t)pl * pd->oh * pd->ow;
        memset(in, 0, (size_t)pd->h * pd->w * sizeof(float));
        if (pd->is_max) {
            const int32_t *am = argmax + (size_t)pl * pd->oh * pd->ow;
            for (int o = 0; o < pd->oh * pd->ow; o++) in[am[o]] += g[o];
            continue;
        }
        for (int oh = 0; oh < pd->oh; oh++)
            for (int ow = 0; ow < pd->ow; ow++) {
                int h0 = oh * pd->stride_h - pd->pad_h, w0 = ow * pd->stride_w - pd->pad_w;
                float v = g[oh * pd->ow + ow] * inv;
                for (int i = h0; i < h0 + pd->kh; i++) {
                    if (i < 0 || i >= pd->h) continue;
                    for (int j = w0; j < w0 + pd->kw; j++)
                        if (j >= 0 && j < pd->w) in[i * pd->w + j] += v;
                }
            }
    });
}
