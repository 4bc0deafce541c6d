/* layer.c - parameter declaration and initialisation shared by all layers. */
#include "layer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"
#include "rng.h"

lk_param *lk_layer_add_param(lk_layer *l, const char *name, int ndim, const int *shape,
                             int fan_in, int fan_out, int is_bias)
{
    if (l->nparams >= LK_LAYER_MAX_PARAMS) return NULL;
    lk_param *p = &l->params[l->nparams++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->shape = lk_shape_make(ndim, shape);
    p->fan_in = fan_in;
    p->fan_out = fan_out;
    p->is_bias = is_bias;
    return p;
}

lk_param *lk_layer_add_buffer(lk_layer *l, const char *name, int ndim, const int *shape,
                              lk_pinit init)
{
    lk_param *p = lk_layer_add_param(l, name, ndim, shape, 1, 1, 0);
    if (p) {
        p->buffer = 1;
        p->fixed = init;
    }
    return p;
}

lk_status lk_layer_f32(lk_device *d, const lk_tensor *t, float *buf, const float **out)
{
    *out = t->type == LK_BF16 ? buf : t->data;
    return t->type == LK_BF16 ? lk_widen_bf16(d, (const uint16_t *)t->data, buf, lk_tensor_numel(t)) : LK_OK;
}

lk_status lk_layer_store(lk_device *d, const lk_tensor *y, const float *buf)
{
    if (y->type != LK_BF16) return LK_OK;
    return lk_cast_bf16_rne(d, buf, (uint16_t *)y->data, lk_tensor_numel(y));
}

static const char *const init_names[] = {
    [LK_INIT_DEFAULT] = "default",         [LK_INIT_NORMAL] = "normal",
    [LK_INIT_UNIFORM] = "uniform",         [LK_INIT_XAVIER_UNIFORM] = "xavier",
    [LK_INIT_XAVIER_NORMAL] = "xavier-normal", [LK_INIT_HE_UNIFORM] = "he-uniform",
    [LK_INIT_HE_NORMAL] = "he",
};

lk_status lk_init_parse(const char *name, lk_init_kind *out)
{
    for (size_t i = 0; i < sizeof init_names / sizeof *init_names; i++)
        if (!strcmp(name, init_names[i])) {
            *out = (lk_init_kind)i;
            return LK_OK;
        }
    if (!strcmp(name, "xavier-uniform")) {
        *out = LK_INIT_XAVIER_UNIFORM;
        return LK_OK;
    }
    if (!strcmp(name, "he-normal")) {
        *out = LK_INIT_HE_NORMAL;
        return LK_OK;
    }
    return LK_ERR(LK_ERR_ARG,
                  "unknown --init '%s' (expected default, normal, uniform, xavier, xavier-normal, "
                  "he, he-uniform)",
                  name);
}

/* Fills n values for one tensor. Weight rules follow torch.nn.init; biases are 0
 * except under PyTorch's default scheme. */
static void init_values(lk_init_kind kind, const lk_param *p, uint64_t seed, uint64_t tensor_id,
                        float *out, size_t n)
{
    double fi = p->fan_in > 0 ? p->fan_in : 1, fo = p->fan_out > 0 ? p->fan_out : 1;
    int normal = 0;
    double a = 0.0; /* uniform bound, or normal std */
    switch (kind) {
    case LK_INIT_DEFAULT: /* kaiming_uniform(a=sqrt(5)) == 1/sqrt(fan_in) */
        a = p->default_bound > 0.0f ? p->default_bound : 1.0 / sqrt(fi);
        break;
    case LK_INIT_NORMAL: a = 0.01, normal = 1; break;
    case LK_INIT_UNIFORM: a = 0.05; break;
    case LK_INIT_XAVIER_UNIFORM: a = sqrt(6.0 / (fi + fo)); break;
    case LK_INIT_XAVIER_NORMAL: a = sqrt(2.0 / (fi + fo)), normal = 1; break;
    case LK_INIT_HE_UNIFORM: a = sqrt(6.0 / fi); break;
    case LK_INIT_HE_NORMAL: a = sqrt(2.0 / fi), normal = 1; break;
    }
    if (p->fixed == LK_PINIT_ZEROS || p->fixed == LK_PINIT_ONES) {
        for (size_t i = 0; i < n; i++) out[i] = p->fixed == LK_PINIT_ONES ? 1.0f : 0.0f;
        return;
    }
    if (p->fixed == LK_PINIT_NORMAL) a = p->fixed_std, normal = 1;
    else if (p->is_bias && kind != LK_INIT_DEFAULT) {
        memset(out, 0, n * sizeof *out);
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = normal ? (float)a * lk_rng_normal(seed, LK_RNG_INIT, tensor_id, i)
                        : (float)a * (2.0f * lk_rng_uniform(seed, LK_RNG_INIT, tensor_id, i) - 1.0f);
}

lk_status lk_layer_init_params(lk_layer *l, lk_device *dev, lk_init_kind kind, uint64_t seed,
                               float *host_scratch)
{
    for (int i = 0; i < l->nparams; i++) {
        lk_param *p = &l->params[i];
        if (!p->w) return LK_ERR(LK_ERR_STATE, "layer %d: parameters not allocated", l->index);
        size_t n = lk_shape_numel(&p->shape);
        /* ids of the first four tensors of a layer are index*4 + i (as before layers
         * had more); each further block of four gets an id space of its own */
        uint64_t id = ((uint64_t)(i / 4) << 40) + (uint64_t)l->index * 4 + (uint64_t)(i % 4);
        if (dev->host_addressable) { /* straight into the parameters: no scratch */
            init_values(kind, p, seed, id, p->w, n);
            continue;
        }
        init_values(kind, p, seed, id, host_scratch, n);
        lk_copy_to_device(dev, p->w, host_scratch, n * sizeof(float));
    }
    return LK_OK;
}

void lk_layer_destroy(lk_layer *l) { lk_free(l); }

size_t lk_param_storage(const lk_param *p)
{
    const size_t n = lk_shape_numel(&p->shape);
    return n + (p->pad_rows && p->shape.d[0] ? (size_t)p->pad_rows * (n / (size_t)p->shape.d[0]) : 0);
}
