/* model.c - planning, the flat parameter/gradient buffers, forward and backward. */
#include "model.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "ops.h"

static void point_grads(lk_model *m);
static lk_status plan_ops(lk_model *m);
static lk_status build_arena_and_plan(lk_model *m);

#define PARAM_ALIGN 16 /* floats: every tensor starts on a 64-byte boundary */

lk_status lk_model_create(lk_model **out, lk_device *dev, const lk_shape *in_sample)
{
    lk_model *m = lk_calloc(1, sizeof *m);
    if (!m) return LK_ERR(LK_ERR_NOMEM, "cannot allocate a model");
    m->dev = dev;
    m->in_shape = *in_sample;
    m->loss_scale = 1.0f;
    *out = m;
    return LK_OK;
}

lk_shape lk_model_out_shape(const lk_model *m)
{
    return m->nlayers ? m->layers[m->nlayers - 1]->out : m->in_shape;
}

int lk_model_out_valid(const lk_model *m)
{
    const lk_shape s = lk_model_out_shape(m);
    const lk_layer *l = m->nlayers ? m->layers[m->nlayers - 1] : NULL;
    return l && l->out_valid ? l->out_valid : s.d[s.ndim - 1];
}

lk_status lk_model_add(lk_model *m, lk_layer *l)
{
    if (!l) return LK_ERR(LK_ERR_ARG, "layer %d: %s", m->nlayers, lk_error_message());
    if (m->params) {
        lk_layer_destroy(l);
        return LK_ERR(LK_ERR_STATE, "cannot add a layer after the model is built");
    }
    if (m->nlayers == m->cap) {
        int cap = m->cap ? 2 * m->cap : 16;
        lk_layer **grown = lk_malloc((size_t)cap * sizeof *grown);
        if (!grown) {
            lk_layer_destroy(l);
            return LK_ERR(LK_ERR_NOMEM, "cannot grow the layer list");
        }
        if (m->nlayers) memcpy(grown, m->layers, (size_t)m->nlayers * sizeof *grown);
        lk_free(m->layers);
        m->layers = grown;
        m->cap = cap;
    }
    l->index = m->nlayers;
    l->in = lk_model_out_shape(m);
    lk_status s = l->vt->setup(l);
    if (s != LK_OK) {
        lk_layer_destroy(l);
        return s;
    }
    m->layers[m->nlayers++] = l;
    return LK_OK;
}

enum { RC_KEEP = 0, RC_OUT, RC_BLOCK };

lk_status lk_recompute_parse(const char *name, lk_recompute *out)
{
    if (!strcmp(name, "none")) *out = LK_RECOMPUTE_NONE;
    else if (!strcmp(name, "act")) *out = LK_RECOMPUTE_ACT;
    else if (!strcmp(name, "block")) *out = LK_RECOMPUTE_BLOCK;
    else return LK_ERR(LK_ERR_ARG, "--recompute: expected none, act or block, got '%s'", name);
    return LK_OK;
}

const char *lk_recompute_name(lk_recompute r)
{
    return r == LK_RECOMPUTE_ACT ? "act" : r == LK_RECOMPUTE_BLOCK ? "block" : "none";
}

lk_status lk_precision_parse(const char *name, lk_dtype *out)
{
    if (!strcmp(name, "fp32")) *out = LK_F32;
    else if (!strcmp(name, "bf16")) *out = LK_BF16;
    else return LK_ERR(LK_ERR_ARG, "unknown --precision '%s' (fp32, bf16)", name);
    return LK_OK;
}

lk_status lk_model_set_precision(lk_model *m, lk_dtype compute, const lk_round *r)
{
    if (m->params) return LK_ERR(LK_ERR_STATE, "--precision must be chosen before the model is built");
    if (compute != LK_F32 && compute != LK_BF16) return LK_ERR(LK_ERR_ARG, "unknown precision %d", (int)compute);
    m->compute = compute;
    m->round = r ? *r : (lk_round){0, 0, 0, 0, NULL};
    return LK_OK;
}

lk_status lk_model_set_output_bf16(lk_model *m)
{
    if (m->params) return LK_ERR(LK_ERR_STATE, "the output's type must be chosen before the model is built");
    m->output_bf16 = 1;
    return LK_OK;
}

int lk_model_keeps_working_copy(const lk_model *m)
{
    return m->compute == LK_BF16 && (m->round.stochastic || !m->dev->bf16_emulated);
}

lk_status lk_model_refresh_working(lk_model *m, size_t lo, size_t hi, long step, const float *skip)
{
    if (!m->params16 || lo >= hi) return LK_OK;
    if (hi > m->nparams)
        return LK_ERR(LK_ERR_ARG, "working copy refresh over [%zu, %zu) of %zu parameters", lo, hi,
                      m->nparams);
    const lk_round r = {m->round.stochastic, m->round.seed, (uint64_t)step, lo, skip};
    return lk_cast_bf16(m->dev, m->params + lo, m->params16 + lo, hi - lo, &r);
}

void lk_model_params_changed(lk_model *m) { m->working_stale = m->params16 != NULL; }

lk_status lk_model_set_recompute(lk_model *m, lk_recompute r)
{
    if (m->params) return LK_ERR(LK_ERR_STATE, "--recompute must be chosen before the model is built");
    m->recompute = r;
    return LK_OK;
}

/* Which layers keep no copy of what they produce: a cheap layer's output (act: not when the
 * next layer is an alias, which would keep its pointer, nor right after another such
 * output, which it is recomputed from), or everything inside a residual block (block: the
 * begin's saved gradient too; not a block holding a stateful layer or another block). */
static void mark_recompute(lk_model *m)
{
    memset(m->recomp, RC_KEEP, (size_t)m->nlayers);
    if (m->recompute == LK_RECOMPUTE_ACT) {
        for (int i = 0; i + 1 < m->nlayers; i++) {
            const lk_layer *l = m->layers[i];
            if (l->vt->cheap && !l->vt->alias && !m->layers[i + 1]->vt->alias &&
                (i == 0 || m->recomp[i - 1] != RC_OUT))
                m->recomp[i] = RC_OUT;
        }
    } else if (m->recompute == LK_RECOMPUTE_BLOCK) {
        for (int e = 0; e < m->nlayers; e++) {
            const int b = m->layers[e]->block_begin - 1;
            if (b < 0) continue;
            int ok = 1;
            for (int i = b + 1; i < e && ok; i++)
                ok = !m->layers[i]->vt->stateful && !m->layers[i]->block_begin;
            for (int i = b; i < e && ok; i++) m->recomp[i] = RC_BLOCK;
        }
    }
}

/* Each layer's precision, and how each activation is stored: in bf16 where a bf16 model's
 * producer writes and its consumer reads bf16 (not the input, an alias's (which keeps its
 * input's pointer and type), nor an input the caller writes; the output where the caller
 * takes it so and the loss's gradient can go over it). */
static void assign_types(lk_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        lk_layer *l = m->layers[i], *next = i + 1 < m->nlayers ? m->layers[i + 1] : NULL;
        l->compute = m->compute;
        l->in_type = i ? m->layers[i - 1]->out_type : LK_F32;
        l->out_type = l->vt->alias ? l->in_type : LK_F32;
        if (m->compute == LK_BF16 && l->vt->writes_bf16 && !l->vt->alias &&
            (next ? next->vt->reads_bf16 && !next->vt->alias && !next->input_f32
                  : m->output_bf16 && l->vt->y_unused && l->vt->dy_bf16))
            l->out_type = LK_BF16;
    }
}

lk_dtype lk_model_act_type(const lk_model *m, int i)
{
    return i > 0 && i <= m->nlayers ? m->layers[i - 1]->out_type : LK_F32;
}

static size_t take_bytes(size_t bytes) { return LK_ALIGN_UP(bytes, LK_ARENA_ALIGN); }

/* Takes every activation-arena pointer in a fixed order; run once to measure and
 * once on the real arena. --recompute's outputs share one scratch output, and the
 * recomputed blocks one region, taken first. */
static void plan_arena(lk_model *m, lk_arena *a)
{
    const size_t start = a->used;
    const int B = m->max_batch;
    size_t in_bytes = (size_t)B * lk_shape_numel(&m->in_shape) * sizeof(float);
    size_t dmax = in_bytes, ws = 0, scratch = 0, region = 0, block = 0;
    for (int i = 0; i < m->nlayers; i++) { /* the shared parts' sizes */
        const lk_layer *l = m->layers[i];
        const size_t out_bytes = (size_t)B * lk_shape_numel(&l->out) * lk_dtype_size(l->out_type);
        const size_t sb = l->vt->saved_bytes ? l->vt->saved_bytes(l, m->dev, B) : 0;
        if (m->recomp[i] == RC_OUT) scratch = LK_MAX(scratch, out_bytes);
        if (m->recomp[i] != RC_BLOCK) continue;
        if (i == 0 || m->recomp[i - 1] != RC_BLOCK) block = 0; /* a block starts */
        block += (l->vt->alias ? 0 : take_bytes(out_bytes)) + (sb ? take_bytes(sb) : 0);
        region = LK_MAX(region, block);
    }
    m->act[0] = lk_arena_take(a, in_bytes);
    float *scratch_at = scratch ? lk_arena_take(a, scratch) : NULL;
    char *region_at = region ? lk_arena_take(a, region) : NULL;
    lk_arena inside = {NULL, region_at, region, 0};
    for (int i = 0; i < m->nlayers; i++) {
        lk_layer *l = m->layers[i];
        const size_t outs = (size_t)B * lk_shape_numel(&l->out), out_bytes = outs * lk_dtype_size(l->out_type);
        lk_arena *from = m->recomp[i] == RC_BLOCK ? &inside : a;
        if (m->recomp[i] == RC_BLOCK && (i == 0 || m->recomp[i - 1] != RC_BLOCK)) inside.used = 0;
        m->act[i + 1] = l->vt->alias ? m->act[i] : m->recomp[i] == RC_OUT ? scratch_at
                                                                            : lk_arena_take(from, out_bytes);
        size_t sb = l->vt->saved_bytes ? l->vt->saved_bytes(l, m->dev, B) : 0;
        l->saved = sb ? lk_arena_take(from, sb) : NULL;
        if (l->vt->workspace_bytes) ws = LK_MAX(ws, l->vt->workspace_bytes(l, m->dev, B));
        if (i + 1 < m->nlayers) dmax = LK_MAX(dmax, outs * sizeof(float)); /* the gradients of layer inputs */
    }
    if (m->input_grad) dmax = LK_MAX(dmax, in_bytes); /* (the input's gradient) */
    const lk_layer *last = m->layers[m->nlayers - 1];
    m->dbuf[0] = lk_arena_take(a, dmax);
    m->dbuf[1] = lk_arena_take(a, dmax);
    /* the losses write their gradient element by element after reading the output (every
     * backend's may write over it): over the output itself when backward does not read it */
    m->dout = last->vt->y_unused && !last->vt->alias
                  ? m->act[m->nlayers]
                  : lk_arena_take(a, (size_t)B * lk_shape_numel(&last->out) * sizeof(float));
    const size_t before_ws = a->used;
    m->workspace = ws ? lk_arena_take(a, ws) : NULL;
    m->ws_bytes = a->used - before_ws;
    m->aux_loss = lk_arena_take(a, sizeof(float));
    m->aux_scratch = lk_arena_take(a, sizeof(float));
    m->act_bytes = a->used - start - m->ws_bytes;
}

/* Address space for `bytes` that no memory backs (slot k): the pointers of a dry build. */
static void *reserve(lk_model *m, int k, size_t bytes)
{
    bytes = LK_ALIGN_UP(LK_MAX(bytes, 1), 4096);
    void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    m->reserved[k] = p;
    m->reserved_bytes[k] = bytes;
    return p;
}

static void unreserve(lk_model *m, int k)
{
    if (m->reserved[k]) munmap(m->reserved[k], m->reserved_bytes[k]);
    m->reserved[k] = NULL;
    m->reserved_bytes[k] = 0;
}

enum { RES_PARAMS, RES_GRADS, RES_ARENA, RES_PARAMS16 };

lk_status lk_model_build(lk_model *m, int max_batch) { return lk_model_build_ex(m, max_batch, LK_BUILD_FULL); }

lk_status lk_model_build_ex(lk_model *m, int max_batch, lk_build how)
{
    if (m->params) return LK_ERR(LK_ERR_STATE, "model already built");
    if (m->nlayers == 0) return LK_ERR(LK_ERR_ARG, "model has no layers");
    if (max_batch <= 0) return LK_ERR(LK_ERR_ARG, "batch size must be positive (got %d)", max_batch);
    m->max_batch = max_batch;
    assign_types(m); /* before any plan */

    /* reverse layer order: the last layer's gradients are final first */
    size_t off = 0;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        lk_layer *l = m->layers[i];
        l->param_offset = off;
        for (int j = 0; j < l->nparams; j++) {
            if (l->params[j].buffer) continue;
            l->params[j].offset = off;
            off += LK_ALIGN_UP(lk_param_storage(&l->params[j]), PARAM_ALIGN);
        }
        l->param_count = off - l->param_offset;
    }
    m->nparams = off;
    for (int i = 0; i < m->nlayers; i++) m->has_aux |= m->layers[i]->vt->own_loss;
    for (int i = 0; i < m->nlayers; i++) /* buffers after every trainable float */
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            lk_param *p = &m->layers[i]->params[j];
            if (!p->buffer) continue;
            p->offset = off;
            off += LK_ALIGN_UP(lk_param_storage(p), PARAM_ALIGN);
        }
    m->nbuffers = off - m->nparams;
    size_t pbytes = LK_MAX(off, 1) * sizeof(float), gbytes = LK_MAX(m->nparams, 1) * sizeof(float);
    m->dry = how == LK_BUILD_DRY;
    m->params = m->dry ? reserve(m, RES_PARAMS, pbytes) : lk_dev_alloc(m->dev, pbytes);
    m->grads = how != LK_BUILD_FULL ? reserve(m, RES_GRADS, gbytes) : lk_dev_alloc(m->dev, gbytes);
    m->grads_borrowed = how != LK_BUILD_FULL; /* not the device's to free */
    const size_t wbytes = LK_MAX(m->nparams, 1) * sizeof(uint16_t);
    const int copy = lk_model_keeps_working_copy(m);
    if (copy) m->params16 = m->dry ? reserve(m, RES_PARAMS16, wbytes) : lk_dev_alloc(m->dev, wbytes);
    m->act = lk_calloc((size_t)m->nlayers + 1, sizeof *m->act);
    m->recomp = lk_calloc((size_t)m->nlayers, 1);
    if (m->recomp) mark_recompute(m);
    if (!m->params || !m->grads || !m->act || !m->recomp || (copy && !m->params16))
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate %zu parameters (%.1f MB) on %s", off,
                      (double)pbytes / 1e6, m->dev->name);
    if (!m->dry) lk_zero(m->dev, m->params, pbytes);
    if (how == LK_BUILD_FULL) lk_zero(m->dev, m->grads, gbytes);
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            lk_param *p = &m->layers[i]->params[j];
            p->w = m->params + p->offset;
            p->w16 = m->params16 && !p->buffer ? m->params16 + p->offset : NULL;
        }
    lk_model_params_changed(m);
    point_grads(m);

    m->dev->sizing = m->dry; /* the backend notes its buffers' sizes, allocates none */
    lk_status st = build_arena_and_plan(m);
    m->dev->sizing = 0;
    return st;
}

static lk_status build_arena_and_plan(lk_model *m)
{
    lk_arena measure = lk_arena_measure();
    plan_arena(m, &measure);
    if (m->dry) {
        m->arena = (lk_arena){NULL, reserve(m, RES_ARENA, measure.used), measure.used, 0};
        if (!m->arena.base) return LK_ERR(LK_ERR_NOMEM, "cannot reserve address space for a plan");
    } else {
        LK_CHECK(lk_arena_create(&m->arena, m->dev, measure.used));
    }
    plan_arena(m, &m->arena);
    if (!m->dry) lk_zero(m->dev, m->aux_loss, sizeof(float));
    return plan_ops(m);
}

/* Runs forward and backward once at max_batch with the device planning: nothing is
 * computed and no hook is called, but every matrix product reaches the backend's
 * gemm_plan (and every convolution its size queries, above), so what a step needs
 * (the CPU's oneDNN primitives and their scratchpad) exists before the first one. */
static lk_status plan_ops(lk_model *m)
{
    lk_grad_ready_fn ready = m->on_grad_ready, before = m->before_grads;
    lk_status (*sync)(void *, float *, size_t) = m->sync_sum;
    m->on_grad_ready = m->before_grads = NULL;
    m->sync_sum = NULL;
    m->dev->planning = 1;
    lk_tensor out;
    lk_status s = lk_model_forward(m, m->max_batch, 1, 0, &out);
    /* both ways gradients are written: a step's first micro-batch replaces, the rest add */
    if (s == LK_OK) s = lk_model_backward_range(m, 0, m->max_batch, 0, LK_GRADS_REPLACE);
    if (s == LK_OK) s = lk_model_backward_range(m, 0, m->max_batch, 0, LK_GRADS_ADD);
    m->dev->planning = 0;
    if (s == LK_OK) s = lk_device_status(m->dev); /* a convolution its size queries could not create */
    m->on_grad_ready = ready;
    m->before_grads = before;
    m->sync_sum = sync;
    return s;
}

static void point_grads(lk_model *m)
{
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            lk_param *p = &m->layers[i]->params[j];
            p->g = p->buffer ? NULL : m->grads + p->offset;
        }
}

lk_status lk_model_alloc_grads(lk_model *m)
{
    if (!m->params || m->dry) return LK_ERR(LK_ERR_STATE, "model must be built before its gradients");
    if (m->grads && m->grads != m->reserved[RES_GRADS]) return LK_OK; /* it has them */
    const size_t bytes = LK_MAX(m->nparams, 1) * sizeof(float);
    float *g = lk_dev_alloc(m->dev, bytes);
    if (!g)
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate the gradients of %zu parameters (%.1f MB) on %s",
                      m->nparams, (double)bytes / 1e6, m->dev->name);
    lk_zero(m->dev, g, bytes);
    m->grads = g;
    m->grads_borrowed = 0;
    unreserve(m, RES_GRADS);
    point_grads(m);
    return LK_OK;
}

lk_status lk_model_borrow_grads(lk_model *m, float *buf)
{
    if (!m->params) return LK_ERR(LK_ERR_STATE, "model must be built before its gradients move");
    if (!m->dev->host_addressable)
        return LK_ERR(LK_ERR_ARG, "gradients on %s cannot live in host memory", m->dev->name);
    if (!buf) return LK_ERR(LK_ERR_ARG, "lk_model_borrow_grads: null buffer");
    if (!m->grads_borrowed) lk_dev_free(m->dev, m->grads);
    m->grads = buf;
    m->grads_borrowed = 1;
    unreserve(m, RES_GRADS);
    memset(buf, 0, m->nparams * sizeof(float));
    point_grads(m);
    return LK_OK;
}

lk_status lk_model_place_grads(lk_model *m, float *(*at)(void *user, size_t offset), void *user)
{
    if (!m->params) return LK_ERR(LK_ERR_STATE, "model must be built before its gradients move");
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            lk_param *p = &m->layers[i]->params[j];
            float *g = p->buffer ? NULL : at(user, p->offset);
            if (g) p->g = g;
        }
    return LK_OK;
}

lk_status lk_model_drop_grads(lk_model *m)
{
    if (!m->grads) return LK_OK;
    const float *lo = m->grads, *hi = m->grads + m->nparams;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *p = &m->layers[i]->params[j];
            if (!p->buffer && p->g >= lo && p->g < hi)
                return LK_ERR(LK_ERR_STATE, "layer %d: the gradients of parameter '%s' were not placed "
                              "elsewhere", i, p->name);
        }
    if (!m->grads_borrowed) lk_dev_free(m->dev, m->grads);
    unreserve(m, RES_GRADS);
    m->grads = NULL;
    m->grads_borrowed = 0;
    m->grads_transient = 1;
    return LK_OK;
}

lk_status lk_model_init(lk_model *m, lk_init_kind kind, uint64_t seed)
{
    if (!m->params || m->dry) return LK_ERR(LK_ERR_STATE, "model must be built before init");
    size_t biggest = 1; /* a device that is not host memory fills its tensors from here */
    for (int i = 0; i < m->nlayers && !m->dev->host_addressable; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++)
            biggest = LK_MAX(biggest, lk_shape_numel(&m->layers[i]->params[j].shape));
    float *scratch = lk_malloc(biggest * sizeof(float));
    if (!scratch) return LK_ERR(LK_ERR_NOMEM, "cannot allocate init scratch");
    lk_status s = LK_OK;
    for (int i = 0; i < m->nlayers && s == LK_OK; i++)
        s = lk_layer_init_params(m->layers[i], m->dev, kind, seed, scratch);
    lk_free(scratch);
    m->seed = seed;
    lk_model_params_changed(m);
    lk_model_zero_grad(m);
    return s;
}

void lk_model_destroy(lk_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->nlayers; i++) lk_layer_destroy(m->layers[i]);
    lk_free(m->layers);
    lk_free(m->act);
    lk_free(m->recomp);
    if (!m->dry) lk_dev_free(m->dev, m->params);
    if (!m->dry) lk_dev_free(m->dev, m->params16);
    if (!m->grads_borrowed && m->grads) lk_dev_free(m->dev, m->grads);
    if (!m->dry) lk_arena_destroy(&m->arena);
    for (int k = 0; k < 4; k++) unreserve(m, k);
    lk_free(m);
}

float *lk_model_input(lk_model *m) { return m->act ? m->act[0] : NULL; }

static lk_status check_batch(const lk_model *m, int batch)
{
    if (!m->params) return LK_ERR(LK_ERR_STATE, "model is not built");
    if (batch <= 0 || batch > m->max_batch)
        return LK_ERR(LK_ERR_ARG, "batch of %d samples outside 1..%d (the size the model was built for)",
                      batch, m->max_batch);
    return LK_OK;
}

lk_status lk_model_forward(lk_model *m, int batch, int training, long step, lk_tensor *out)
{
    return lk_model_forward_range(m, 0, m->nlayers, batch, training, step, out);
}

/* act[i] for batch samples, typed */
static lk_tensor act_view(const lk_model *m, int i, int batch)
{
    lk_tensor t = lk_tensor_batch(m->dev, m->act[i], batch, i ? &m->layers[i - 1]->out : &m->in_shape);
    t.type = lk_model_act_type(m, i);
    return t;
}

/* layers [lo, hi) forward, each from act[i] into act[i + 1] */
static lk_status run_forward(lk_model *m, const lk_ctx *c, int lo, int hi, int batch)
{
    for (int i = lo; i < hi; i++) {
        lk_layer *l = m->layers[i];
        if (l->vt->alias && !l->vt->forward) continue;
        lk_tensor x = act_view(m, i, batch), y = act_view(m, i + 1, batch);
        LK_CHECK(l->vt->forward(l, c, &x, &y));
    }
    return LK_OK;
}

lk_status lk_model_forward_range(lk_model *m, int lo, int hi, int batch, int training, long step,
                                 lk_tensor *out)
{
    LK_CHECK(check_batch(m, batch));
    if (lo < 0 || hi > m->nlayers || lo >= hi)
        return LK_ERR(LK_ERR_ARG, "forward over layers [%d, %d) of a model of %d", lo, hi, m->nlayers);
    lk_ctx c = {m->dev, training, m->seed, step, m->sample_base, m->workspace, 0, m->aux_loss, 1.0f,
                m->sync_sum, m->sync_user};
    if (m->working_stale && !m->dev->planning) { /* (a planning pass has no values to round) */
        LK_CHECK(lk_model_refresh_working(m, 0, m->nparams, step, NULL));
        m->working_stale = 0;
    }
    if (m->has_aux) lk_zero(m->dev, m->aux_loss, sizeof(float)); /* zeroed at build otherwise */
    LK_CHECK(run_forward(m, &c, lo, hi, batch));
    *out = act_view(m, hi, batch);
    return LK_OK;
}

lk_status lk_model_backward(lk_model *m, int batch, long step)
{
    return lk_model_backward_ex(m, batch, step, LK_GRADS_ADD);
}

lk_status lk_model_backward_ex(lk_model *m, int batch, long step, lk_grads_mode mode)
{
    return lk_model_backward_range(m, 0, batch, step, mode);
}

/* Layers [lo, hi) forward again, as in the step's forward (training, same step and
 * samples: the same dropout masks), their own loss terms aside. */
static lk_status forward_again(lk_model *m, int lo, int hi, int batch, long step)
{
    lk_ctx c = {m->dev, 1, m->seed, step, m->sample_base, m->workspace, 0, m->aux_scratch, 1.0f,
                m->sync_sum, m->sync_user};
    return run_forward(m, &c, lo, hi, batch);
}

/* What backward is about to need at layer i and forward did not keep: its input (the
 * recomputed output of layer i - 1), or, at the end of a recomputed block, the block. */
static lk_status recompute_for(lk_model *m, int i, int batch, long step)
{
    if (i > 0 && m->recomp[i - 1] == RC_OUT) return forward_again(m, i - 1, i, batch, step);
    const int b = m->layers[i]->block_begin - 1;
    if (b >= 0 && m->recomp[b] == RC_BLOCK) return forward_again(m, b, i, batch, step);
    return LK_OK;
}

lk_status lk_model_backward_range(lk_model *m, int lo, int batch, long step, lk_grads_mode mode)
{
    LK_CHECK(check_batch(m, batch));
    if (lo < 0 || lo >= m->nlayers)
        return LK_ERR(LK_ERR_ARG, "backward down to layer %d of a model of %d", lo, m->nlayers);
    lk_ctx c = {m->dev, !m->backward_eval, m->seed, step, m->sample_base, m->workspace,
                mode == LK_GRADS_REPLACE || m->grads_transient, m->aux_loss, m->loss_scale, m->sync_sum,
                m->sync_user};
    float *dy = m->dout;
    const int to_input = m->input_grad; /* the gradient down to layer lo's input (din) */
    int first = lo; /* below the first layer with parameters no gradient is needed */
    while (!to_input && first < m->nlayers && m->layers[first]->nparams == 0) first++;
    for (int i = m->nlayers - 1; i >= first; i--) {
        lk_layer *l = m->layers[i];
        if (m->recompute) LK_CHECK(recompute_for(m, i, batch, step));
        if (l->vt->alias) { /* dx is dy reinterpreted; a backward may add to it in place */
            if (l->vt->backward) {
                lk_tensor t = lk_tensor_batch(m->dev, dy, batch, &l->out);
                LK_CHECK(l->vt->backward(l, &c, &t, &t, &t, &t));
            }
            continue;
        }
        int need_dx = i > first || to_input;
        float *dx = need_dx ? (dy == m->dbuf[0] ? m->dbuf[1] : m->dbuf[0]) : NULL;
        lk_tensor tx = act_view(m, i, batch), ty = act_view(m, i + 1, batch);
        lk_tensor tdy = lk_tensor_batch(m->dev, dy, batch, &l->out);
        if (dy == m->dout) tdy.type = l->out_type; /* (a bf16 output's gradient is bf16) */
        lk_tensor tdx = lk_tensor_batch(m->dev, dx, batch, &l->in);
        if (m->before_grads) { /* where the gradients go must be free (ZeRO-2's staging) */
            if (l->param_count) m->before_grads(m->grad_ready_user, l->param_offset, l->param_count);
            const lk_layer *t = l->grads_into;
            if (t && t->param_count) m->before_grads(m->grad_ready_user, t->param_offset, t->param_count);
        }
        if (m->sample_sq && l->param_count) {
            if (!l->vt->sample_sqnorms)
                return LK_ERR(LK_ERR_STATE, "layer %d (%s) has no per-sample gradient norms", i, l->vt->type);
            LK_CHECK(l->vt->sample_sqnorms(l, &c, &tx, &tdy, m->sample_sq));
        }
        LK_CHECK(l->vt->backward(l, &c, &tx, &ty, &tdy, &tdx));
        if (l->param_count && m->on_grad_ready)
            m->on_grad_ready(m->grad_ready_user, l->param_offset, l->param_count);
        dy = dx;
    }
    if (to_input) m->din = dy;
    return LK_OK;
}

void lk_model_set_sample_norms(lk_model *m)
{
    for (int i = 0; i < m->nlayers; i++) m->layers[i]->sample_norms = 1;
}

int lk_model_direct_norms(const lk_model *m, const lk_layer **why)
{
    for (int i = 0; i < m->nlayers; i++) {
        const lk_layer *l = m->layers[i];
        if (l->param_count && !l->vt->sample_sqnorms) {
            if (why) *why = l;
            return 0;
        }
    }
    return 1;
}

void lk_model_zero_grad(lk_model *m)
{
    if (m->grads && m->grads != m->reserved[RES_GRADS]) lk_zero(m->dev, m->grads, m->nparams * sizeof(float));
}

int lk_model_param_count(const lk_model *m)
{
    int n = 0;
    for (int i = 0; i < m->nlayers; i++) n += m->layers[i]->nparams;
    return n;
}

const lk_param *lk_model_param(const lk_model *m, int idx, char *name, size_t name_size)
{
    if (idx < 0) return NULL;
    for (int i = 0; i < m->nlayers; i++) {
        const lk_layer *l = m->layers[i];
        if (idx < l->nparams) {
            if (name) snprintf(name, name_size, "%d.%s", l->index, l->params[idx].name);
            return &l->params[idx];
        }
        idx -= l->nparams;
    }
    return NULL;
}

double lk_model_flops(const lk_model *m, int lo, int hi)
{
    double f = 0.0;
    for (int i = LK_MAX(lo, 0); i < LK_MIN(hi, m->nlayers); i++)
        if (m->layers[i]->vt->flops) f += m->layers[i]->vt->flops(m->layers[i]);
    return f;
}

lk_status lk_model_decay_ranges(const lk_model *m, size_t **out, int *n)
{
    int cap = 0;
    for (int i = 0; i < m->nlayers; i++) cap += m->layers[i]->nparams;
    size_t *r = lk_malloc((size_t)LK_MAX(cap, 1) * 2 * sizeof *r);
    if (!r) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the decay ranges");
    int k = 0;
    for (int i = m->nlayers - 1; i >= 0; i--) /* offsets grow backwards through the layers */
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *p = &m->layers[i]->params[j];
            if (p->buffer || p->shape.ndim < 2) continue;
            const size_t lo = p->offset, hi = lo + LK_ALIGN_UP(lk_param_storage(p), PARAM_ALIGN);
            if (k && r[2 * k - 1] == lo) r[2 * k - 1] = hi;
            else r[2 * k] = lo, r[2 * k + 1] = hi, k++;
        }
    *out = r;
    *n = k;
    return LK_OK;
}

lk_status lk_model_name_ranges(const lk_model *m, const char *patterns, size_t **out, int *n, int *matched)
{
    *out = NULL, *n = 0, *matched = 0;
    int cap = 0, npat = 1;
    for (int i = 0; i < m->nlayers; i++) cap += m->layers[i]->nparams;
    for (const char *c = patterns; *c; c++) npat += *c == ',';
    size_t *r = lk_malloc((size_t)LK_MAX(cap, 1) * 2 * sizeof *r);
    char *pats = lk_malloc(strlen(patterns) + 1), **pat = lk_calloc((size_t)npat, sizeof *pat);
    int *hits = lk_calloc((size_t)npat, sizeof *hits);
    lk_status st = r && pats && pat && hits ? LK_OK : LK_ERR(LK_ERR_NOMEM, "cannot allocate the parameter ranges");
    int np = 0, k = 0;
    if (st == LK_OK) {
        strcpy(pats, patterns);
        char *save = NULL;
        for (char *t = strtok_r(pats, ",", &save); t; t = strtok_r(NULL, ",", &save)) pat[np++] = t;
    }
    /* in offset order (they grow backwards through the layers), as lk_model_decay_ranges */
    for (int i = m->nlayers - 1; st == LK_OK && i >= 0; i--)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *p = &m->layers[i]->params[j];
            char name[128];
            snprintf(name, sizeof name, "%d.%s", m->layers[i]->index, p->name);
            int any = 0;
            for (int q = 0; q < np; q++)
                if (!fnmatch(pat[q], name, 0)) hits[q]++, any = 1;
            if (!any) continue;
            (*matched)++;
            const size_t lo = p->offset, hi = lo + LK_ALIGN_UP(lk_param_storage(p), PARAM_ALIGN);
            if (k && r[2 * k - 1] == lo) r[2 * k - 1] = hi;
            else r[2 * k] = lo, r[2 * k + 1] = hi, k++;
        }
    for (int q = 0; st == LK_OK && q < np; q++) {
        if (hits[q]) continue;
        char names[160] = "";
        for (int e = 0, at = 0; e < 4; e++) {
            char one[48];
            if (!lk_model_param(m, e, one, sizeof one)) break;
            at += snprintf(names + at, sizeof names - (size_t)at, "%s%s", e ? ", " : "", one);
        }
        st = LK_ERR(LK_ERR_ARG, "'%s' matches no parameter of the model (its names are like %s, ...)", pat[q], names);
    }
    lk_free(pats), lk_free(pat), lk_free(hits);
    if (st != LK_OK) {
        lk_free(r);
        *matched = 0;
        return st;
    }
    *out = r;
    *n = k;
    return LK_OK;
}

size_t lk_model_trainable(const lk_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++)
            if (!m->layers[i]->params[j].buffer) n += lk_shape_numel(&m->layers[i]->params[j].shape);
    return n;
}

void lk_model_describe(const lk_model *m, char *buf, size_t size)
{
    size_t n = 0;
    char s1[64], s2[64];
    for (int i = 0; i < m->nlayers && n < size; i++) {
        const lk_layer *l = m->layers[i];
        size_t np = 0;
        for (int j = 0; j < l->nparams; j++)
            if (!l->params[j].buffer) np += lk_shape_numel(&l->params[j].shape);
        n += (size_t)snprintf(buf + n, size - n, "  %2d %-11s %-14s -> %-14s %9zu params\n", i,
                              l->vt->type, lk_shape_str(&l->in, s1, sizeof s1),
                              lk_shape_str(&l->out, s2, sizeof s2), np);
    }
    if (n < size)
        snprintf(buf + n, size - n, "  total %zu trainable parameters\n", lk_model_trainable(m));
}
