/* tensor.c - shape helpers. */
#include "tensor.h"

#include <stdio.h>

const char *lk_shape_str(const lk_shape *s, char *buf, size_t size)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int i = 0; i < s->ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ", %d" : "%d", s->d[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}

lk_tensor lk_tensor_batch(lk_device *dev, float *data, int batch, const lk_shape *sample)
{
    lk_tensor t;
    t.data = data;
    t.dev = dev;
    t.type = LK_F32;
    t.shape.ndim = sample->ndim + 1;
    t.shape.d[0] = batch;
    for (int i = 0; i < LK_MAX_DIMS - 1; i++) t.shape.d[i + 1] = i < sample->ndim ? sample->d[i] : 1;
    return t;
}
