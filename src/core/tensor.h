/* tensor.h - a non-owning view of device memory with a shape. */
#ifndef LK_TENSOR_H
#define LK_TENSOR_H

#include "device.h"

#define LK_MAX_DIMS 4

typedef struct {
    int ndim;
    int d[LK_MAX_DIMS];
} lk_shape;

typedef struct {
    float *data;    /* LK_BF16: holds bf16 values (uint16_t), read through lk_tensor_in and the
                       layers' staging helpers (layer.h), never as floats */
    lk_shape shape; /* shape[0] is the batch for activations */
    lk_device *dev;
    lk_dtype type;  /* how the values are stored: LK_F32 unless the model stores the
                       activation in bf16 (lk_model's act_type) */
} lk_tensor;

static inline lk_shape lk_shape_make(int ndim, const int *d)
{
    lk_shape s = {ndim, {1, 1, 1, 1}};
    for (int i = 0; i < ndim && i < LK_MAX_DIMS; i++) s.d[i] = d[i];
    return s;
}

static inline size_t lk_shape_numel(const lk_shape *s)
{
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= (size_t)s->d[i];
    return n;
}

static inline int lk_shape_equal(const lk_shape *a, const lk_shape *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->d[i] != b->d[i]) return 0;
    return 1;
}

/* "[64, 1, 28, 28]" into buf; returns buf. */
const char *lk_shape_str(const lk_shape *s, char *buf, size_t size);

/* A view of `batch` samples of per-sample shape `sample` at `data`. */
lk_tensor lk_tensor_batch(lk_device *dev, float *data, int batch, const lk_shape *sample);

static inline size_t lk_tensor_numel(const lk_tensor *t) { return lk_shape_numel(&t->shape); }

#endif
