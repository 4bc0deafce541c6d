/* explain.h - attributions of an image classifier's prediction to its input pixels
 * (`lockstep explain`), the methods Captum users know:
 *
 *   saliency   |d f_t / d x|: the gradient's magnitude at the image
 *   ig         integrated gradients (Sundararajan et al., 2017): (x - x') times the mean
 *              gradient on the straight path from a baseline x' to x, by Gauss-Legendre
 *              quadrature over `steps` points; their sum should equal f_t(x) - f_t(x')
 *              (completeness), and the gap is printed
 *   occlusion  f_t(x) - f_t(x with a window replaced by the baseline), the window slid over
 *              the image (all channels at once), each pixel's the mean of its windows'
 *
 * For a language model (gpt, gpt2*) --prompt gives the tokens, and the attribution is of the
 * next token's logit to each token: integrated gradients on the layers above the embedding,
 * from the positions alone (the embedding's output less the tokens' rows) to the prompt's,
 * each token's the dot product of its row with its mean gradient, printed as text.
 *
 * f_t is the target class's logit; the target is --target or the predicted class. The
 * model runs in evaluation mode (batch norm's running statistics, no dropout) and
 * back-propagates down to its input. Baselines: black (zeros), blur (each channel box-blurred,
 * radius 3) or the first image of a file. Under mpirun the images are dealt to the ranks.
 * Per image: DIR/explain-NNNNN.png (the image, the map over it, the map alone: red
 * positive, blue negative) and DIR/explain-NNNNN.json (the attributions and the scores). */
#ifndef LK_EXPLAIN_H
#define LK_EXPLAIN_H

#include <stdio.h>

#include "../comm/comm.h"
#include "../core/model.h"

typedef enum { LK_EXPLAIN_SALIENCY = 0, LK_EXPLAIN_IG, LK_EXPLAIN_OCCLUSION } lk_explain_method;

typedef struct {
    const char *checkpoint, *input, *out_dir;
    const char *prompt, *tokenizer; /* a language model's: its tokens (sample.h's lk_prompt_open) */
    const char *device;
    int threads;
    lk_explain_method method;
    int target;           /* -1: the predicted class */
    int steps;            /* ig: quadrature points (64) */
    double max_gap;       /* ig: an image whose completeness gap is above this (0.01) runs again
                             with twice the points, up to LK_EXPLAIN_MAX_STEPS (0: never) */
    const char *baseline; /* "black", "blur" or an image file */
    int window, stride;   /* occlusion's (4, 4) */
    int limit;            /* images (0: all) */
    lk_comm *comm;        /* NULL: one process */
} lk_explain_opts;

#define LK_EXPLAIN_MAX_STEPS 1024
lk_status lk_explain(const lk_explain_opts *o, FILE *log);

/* The pieces, on a model built with input_grad and backward_eval (model.h) for batches of
 * up to m->max_batch: the attributions of x ([in_shape]) for class t into attr, f_t(x) into
 * *fx and (ig) f_t(x') into *fb (either may be NULL). */
lk_status lk_attr_saliency(lk_model *m, const float *x, int t, float *attr, double *fx);
lk_status lk_attr_ig(lk_model *m, const float *x, const float *base, int t, int steps, float *attr, double *fx,
                     double *fb);
lk_status lk_attr_occlusion(lk_model *m, const float *x, const float *base, int t, int window, int stride,
                            float *attr, double *fx);
/* A language model's: ids[0, len) of its window (the rest 0); the logit of t at position
 * len - 1 into *fx, and at the baseline (the positions alone) into *fb. */
lk_status lk_attr_tokens(lk_model *m, const float *ids, int len, int t, int steps, float *attr, double *fx,
                         double *fb);
/* f_t of n inputs x[n][in_shape] into score[n]; with g, their gradients into g[n][in_shape]. */
lk_status lk_attr_scores(lk_model *m, const float *x, int n, int t, double *score, float *g);

#endif
