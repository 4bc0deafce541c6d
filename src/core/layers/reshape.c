/* reshape.c - layers that reinterpret their input with another shape: aliases of
 * the input, so no copy is made and dx is dy. */
#include "../layers.h"

typedef struct {
    lk_layer base;
    lk_shape to; /* ndim 0: flatten */
} reshape;

static lk_status reshape_setup(lk_layer *l)
{
    reshape *s = (reshape *)l;
    int n = (int)lk_shape_numel(&l->in);
    if (s->to.ndim == 0) {
        l->out = lk_shape_make(1, &n);
        return LK_OK;
    }
    if (lk_shape_numel(&s->to) != (size_t)n) {
        char a[64], b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (reshape): cannot view %s as %s", l->index,
                      lk_shape_str(&l->in, a, sizeof a), lk_shape_str(&s->to, b, sizeof b));
    }
    l->out = s->to;
    return LK_OK;
}

static const lk_layer_vt flatten_vt = {
    .type = "flatten",
    .setup = reshape_setup,
    .alias = 1,
};

static const lk_layer_vt reshape_vt = {
    .type = "reshape",
    .setup = reshape_setup,
    .alias = 1,
};

lk_layer *lk_flatten(void)
{
    reshape *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &flatten_vt;
    return &s->base;
}

lk_layer *lk_reshape(int ndim, const int *dims)
{
    if (ndim < 1 || ndim > LK_MAX_DIMS) {
        LK_ERR(LK_ERR_ARG, "reshape: 1..%d dimensions, got %d", LK_MAX_DIMS, ndim);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (dims[i] <= 0) {
            LK_ERR(LK_ERR_ARG, "reshape: dimension %d is %d (must be positive)", i, dims[i]);
            return NULL;
        }
    reshape *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &reshape_vt;
    s->to = lk_shape_make(ndim, dims);
    return &s->base;
}
