/* flatten.c - [C, H, W] -> [C*H*W]; an alias of its input, so no copy is made. */
#include "../layers.h"

static lk_status flatten_setup(lk_layer *l)
{
    int n = (int)lk_shape_numel(&l->in);
    l->out = lk_shape_make(1, &n);
    return LK_OK;
}

static const lk_layer_vt flatten_vt = {
    .type = "flatten",
    .setup = flatten_setup,
    .alias = 1,
};

lk_layer *lk_flatten(void)
{
    lk_layer *l = lk_calloc(1, sizeof *l);
    if (l) l->vt = &flatten_vt;
    return l;
}
