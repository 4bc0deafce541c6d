/* loss.c - the losses that end a model: fused softmax cross-entropy, MSE and
 * BCE-with-logits, each the batch mean like PyTorch's default reduction. */
#include "../layers.h"
#include "../ops.h"

const char *lk_loss_name(lk_loss_kind kind)
{
    switch (kind) {
    case LK_LOSS_XENT: return "cross_entropy";
    case LK_LOSS_MSE: return "mse";
    case LK_LOSS_BCE_LOGITS: return "bce_with_logits";
    }
    return "?";
}

lk_status lk_loss(lk_device *d, lk_loss_kind kind, const lk_loss_args *a, float *loss, void *dout,
                  float scale)
{
    if (a->batch <= 0 || a->features <= 0)
        return LK_ERR(LK_ERR_ARG, "%s: empty batch (batch=%d features=%d)", lk_loss_name(kind),
                      a->batch, a->features);
    size_t n = (size_t)a->batch * a->features;
    if (a->type == LK_BF16 && kind != LK_LOSS_XENT)
        return LK_ERR(LK_ERR_ARG, "%s: takes float32 outputs, not bf16", lk_loss_name(kind));
    switch (kind) {
    case LK_LOSS_XENT:
        return lk_softmax_xent(d, a->type, a->out, a->labels, a->batch, a->features,
                               a->ld > 0 ? a->ld : a->features, loss, dout, scale);
    case LK_LOSS_MSE: return lk_mse(d, a->out, a->targets, n, loss, dout, scale);
    case LK_LOSS_BCE_LOGITS: return lk_bce_logits(d, a->out, a->targets, n, loss, dout, scale);
    }
    return LK_ERR(LK_ERR_ARG, "unknown loss %d", (int)kind);
}
