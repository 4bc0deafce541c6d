/* explain.c - saliency, integrated gradients and occlusion for image classifiers
 * (explain.h), and `lockstep explain`'s run: checkpoint, images, maps, PNGs and JSON. */
#include "explain.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/checkpoint.h"
#include "../core/ops.h"
#include "../data/bpe.h"
#include "../data/dataset.h"
#include "../models/spec.h"
#include "ckptdir.h"
#include "png.h"
#include "sample.h"

static size_t numel_in(const lk_model *m) { return lk_shape_numel(&m->in_shape); }

lk_status lk_attr_scores(lk_model *m, const float *x, int n, int t, double *score, float *g)
{
    lk_device *d = m->dev;
    const size_t D = numel_in(m);
    if (n < 1 || n > m->max_batch) return LK_ERR(LK_ERR_ARG, "attributions: %d inputs at once (at most %d)", n, m->max_batch);
    lk_copy_to_device(d, lk_model_input(m), x, (size_t)n * D * sizeof *x);
    lk_tensor out;
    LK_CHECK(lk_model_forward(m, n, 0, 0, &out));
    const size_t per = lk_tensor_numel(&out) / (size_t)n;
    if (t < 0 || (size_t)t >= per) return LK_ERR(LK_ERR_ARG, "--target %d: the model has %zu outputs", t, per);
    float *host = lk_malloc((size_t)n * per * sizeof *host);
    if (!host) return LK_ERR(LK_ERR_NOMEM, "attributions: out of memory");
    lk_copy_to_host(d, host, out.data, (size_t)n * per * sizeof *host);
    lk_status st = lk_device_status(d);
    for (int i = 0; st == LK_OK && i < n; i++) score[i] = host[(size_t)i * per + (size_t)t];
    if (st == LK_OK && g) { /* d f_t / d x: the output's gradient is the target's one-hot */
        memset(host, 0, (size_t)n * per * sizeof *host);
        for (int i = 0; i < n; i++) host[(size_t)i * per + (size_t)t] = 1.0f;
        lk_copy_to_device(d, m->dout, host, (size_t)n * per * sizeof *host);
        st = lk_model_backward_ex(m, n, 0, LK_GRADS_REPLACE);
        if (st == LK_OK && !m->din) st = LK_ERR(LK_ERR_STATE, "attributions: the model keeps no input gradient");
        if (st == LK_OK) lk_copy_to_host(d, g, m->din, (size_t)n * D * sizeof *g);
        if (st == LK_OK) st = lk_device_status(d);
    }
    lk_free(host);
    return st;
}

lk_status lk_attr_saliency(lk_model *m, const float *x, int t, float *attr, double *fx)
{
    double f;
    LK_CHECK(lk_attr_scores(m, x, 1, t, &f, attr));
    if (fx) *fx = f;
    for (size_t i = 0; i < numel_in(m); i++) attr[i] = fabsf(attr[i]);
    return LK_OK;
}

/* Gauss-Legendre's n points and weights on [0, 1] (Newton on the Legendre polynomial) */
static void gauss_legendre(int n, double *at, double *w)
{
    for (int k = 0; k < n; k++) {
        double z = cos(M_PI * (k + 0.75) / (n + 0.5)), dp = 1.0;
        for (int it = 0; it < 100; it++) {
            double p0 = 1.0, p1 = z;
            for (int j = 2; j <= n; j++) {
                const double p2 = ((2.0 * j - 1.0) * z * p1 - (j - 1.0) * p0) / j;
                p0 = p1, p1 = p2;
            }
            dp = n * (z * p1 - p0) / (z * z - 1.0);
            const double dz = p1 / dp;
            z -= dz;
            if (fabs(dz) < 1e-15) break;
        }
        at[k] = 0.5 * (1.0 - z);
        w[k] = 1.0 / ((1.0 - z * z) * dp * dp); /* (2 / ((1 - z^2) p'^2), halved for [0, 1]) */
    }
}

lk_status lk_attr_ig(lk_model *m, const float *x, const float *base, int t, int steps, float *attr, double *fx,
                     double *fb)
{
    const size_t D = numel_in(m);
    const int B = m->max_batch;
    if (steps < 1 || steps > 4096) return LK_ERR(LK_ERR_ARG, "--steps %d: 1 to 4096", steps);
    double *at = lk_malloc((size_t)steps * sizeof *at), *w = lk_malloc((size_t)steps * sizeof *w);
    double *acc = lk_calloc(D, sizeof *acc), *score = lk_malloc((size_t)B * sizeof *score);
    float *in = lk_malloc((size_t)B * D * sizeof *in), *g = lk_malloc((size_t)B * D * sizeof *g);
    lk_status st = at && w && acc && score && in && g ? LK_OK : LK_ERR(LK_ERR_NOMEM, "ig: out of memory");
    if (st == LK_OK) gauss_legendre(steps, at, w);
    for (int k0 = 0; st == LK_OK && k0 < steps; k0 += B) {
        const int n = LK_MIN(B, steps - k0);
        for (int k = 0; k < n; k++)
            for (size_t i = 0; i < D; i++) in[(size_t)k * D + i] = base[i] + (float)at[k0 + k] * (x[i] - base[i]);
        st = lk_attr_scores(m, in, n, t, score, g);
        for (int k = 0; st == LK_OK && k < n; k++)
            for (size_t i = 0; i < D; i++) acc[i] += w[k0 + k] * g[(size_t)k * D + i];
    }
    for (size_t i = 0; st == LK_OK && i < D; i++) attr[i] = (float)((x[i] - base[i]) * acc[i]);
    double f[2] = {0, 0};
    if (st == LK_OK) st = lk_attr_scores(m, x, 1, t, &f[0], NULL);
    if (st == LK_OK) st = lk_attr_scores(m, base, 1, t, &f[1], NULL);
    if (fx) *fx = f[0];
    if (fb) *fb = f[1];
    lk_free(at), lk_free(w), lk_free(acc), lk_free(score), lk_free(in), lk_free(g);
    return st;
}

lk_status lk_attr_occlusion(lk_model *m, const float *x, const float *base, int t, int window, int stride,
                            float *attr, double *fxp)
{
    const lk_shape *s = &m->in_shape;
    if (s->ndim != 3) return LK_ERR(LK_ERR_SHAPE, "occlusion: images [C, H, W], not %d axes", s->ndim);
    const int C = s->d[0], H = s->d[1], W = s->d[2], B = m->max_batch;
    if (window < 1 || stride < 1 || window > H || window > W)
        return LK_ERR(LK_ERR_ARG, "occlusion: --window %d (1 to %d) and --stride %d (at least 1)", window,
                      LK_MIN(H, W), stride);
    const size_t D = numel_in(m);
    const int ny = (H - window) / stride + 1, nx = (W - window) / stride + 1, count = ny * nx;
    float *in = lk_malloc((size_t)B * D * sizeof *in);
    double *score = lk_malloc((size_t)B * sizeof *score), *sum = lk_calloc(D, sizeof *sum), fx = 0;
    int *hits = lk_calloc(D, sizeof *hits);
    lk_status st = in && score && sum && hits ? LK_OK : LK_ERR(LK_ERR_NOMEM, "occlusion: out of memory");
    if (st == LK_OK) st = lk_attr_scores(m, x, 1, t, &fx, NULL);
    for (int p0 = 0; st == LK_OK && p0 < count; p0 += B) {
        const int n = LK_MIN(B, count - p0);
        for (int k = 0; k < n; k++) { /* x with window p0 + k taken from the baseline */
            float *v = in + (size_t)k * D;
            const int y0 = (p0 + k) / nx * stride, x0 = (p0 + k) % nx * stride;
            memcpy(v, x, D * sizeof *v);
            for (int c = 0; c < C; c++)
                for (int y = y0; y < y0 + window; y++)
                    for (int xx = x0; xx < x0 + window; xx++) {
                        const size_t i = ((size_t)c * H + y) * W + xx;
                        v[i] = base[i];
                    }
        }
        st = lk_attr_scores(m, in, n, t, score, NULL);
        for (int k = 0; st == LK_OK && k < n; k++) {
            const int y0 = (p0 + k) / nx * stride, x0 = (p0 + k) % nx * stride;
            for (int c = 0; c < C; c++)
                for (int y = y0; y < y0 + window; y++)
                    for (int xx = x0; xx < x0 + window; xx++) {
                        const size_t i = ((size_t)c * H + y) * W + xx;
                        sum[i] += fx - score[k], hits[i]++;
                    }
        }
    }
    for (size_t i = 0; st == LK_OK && i < D; i++) attr[i] = hits[i] ? (float)(sum[i] / hits[i]) : 0.0f;
    if (fxp) *fxp = fx;
    lk_free(in), lk_free(score), lk_free(sum), lk_free(hits);
    return st;
}

/* ---- `lockstep explain` ---- */

/* a box blur of radius 3 of each channel of x [C, H, W] into out */
static void blur(const float *x, const lk_shape *s, float *out)
{
    const int C = s->ndim == 3 ? s->d[0] : 1, H = s->ndim >= 2 ? s->d[s->ndim - 2] : 1, W = s->d[s->ndim - 1], r = 3;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                double sum = 0;
                int n = 0;
                for (int v = LK_MAX(0, y - r); v <= LK_MIN(H - 1, y + r); v++)
                    for (int u = LK_MAX(0, xx - r); u <= LK_MIN(W - 1, xx + r); u++)
                        sum += x[((size_t)c * H + v) * W + u], n++;
                out[((size_t)c * H + y) * W + xx] = (float)(sum / n);
            }
}

/* the image, the map over it and the map alone, side by side (RGB; red positive, blue
 * negative, each pixel's the attributions' mean over channels, scaled by the largest) */
static lk_status write_png(const char *path, const float *x, const float *attr, const lk_shape *s)
{
    const int C = s->ndim == 3 ? s->d[0] : 1, H = s->ndim >= 2 ? s->d[s->ndim - 2] : 1, W = s->d[s->ndim - 1];
    const int k = LK_MAX(1, 112 / LK_MAX(H, W)), gap = 2, PW = 3 * W * k + 4 * gap, PH = H * k + 2 * gap;
    float *map = lk_malloc((size_t)H * W * sizeof *map), *px = lk_malloc((size_t)PW * PH * 3 * sizeof *px);
    if (!map || !px) {
        lk_free(map), lk_free(px);
        return LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
    }
    float top = 0.0f;
    for (int i = 0; i < H * W; i++) {
        float a = 0.0f;
        for (int c = 0; c < C; c++) a += attr[(size_t)c * H * W + i];
        map[i] = a / C, top = fmaxf(top, fabsf(map[i]));
    }
    for (size_t i = 0; i < (size_t)PW * PH * 3; i++) px[i] = 0.5f;
    for (int y = 0; y < H * k; y++)
        for (int xx = 0; xx < W * k; xx++) {
            const int i = (y / k) * W + xx / k;
            float rgb[3];
            for (int c = 0; c < 3; c++) rgb[c] = x[(size_t)(C == 3 ? c : 0) * H * W + i];
            const float v = top > 0 ? map[i] / top : 0.0f, a = fabsf(v);
            const float heat[3] = {v > 0 ? 1.0f : 0.0f, 0.0f, v < 0 ? 1.0f : 0.0f};
            const float alone[3] = {1.0f - fmaxf(0.0f, -v), 1.0f - a, 1.0f - fmaxf(0.0f, v)};
            for (int p = 0; p < 3; p++) {
                const int x0 = gap + p * (W * k + gap);
                float *o = px + (((size_t)(gap + y) * PW) + x0 + xx) * 3;
                for (int c = 0; c < 3; c++)
                    o[c] = p == 0 ? rgb[c] : p == 1 ? (1.0f - a) * rgb[c] + a * heat[c] : alone[c];
            }
        }
    lk_status st = lk_png_write(path, px, PW, PH, 3);
    lk_free(map), lk_free(px);
    return st;
}

typedef struct { /* one image's result */
    int index, target;
    double fx, fb, sum, gap;
    int steps; /* ig: the quadrature points it took */
} explained;

static lk_status write_json(const char *path, const lk_explain_opts *o, const explained *e, const float *attr,
                            const lk_shape *s, const char *class_name)
{
    static const char *const names[] = {"saliency", "ig", "occlusion"};
    cJSON *j = cJSON_CreateObject();
    if (!j) return LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
    cJSON_AddNumberToObject(j, "image", e->index);
    cJSON_AddStringToObject(j, "method", names[o->method]);
    cJSON_AddNumberToObject(j, "target", e->target);
    if (class_name[0]) cJSON_AddStringToObject(j, "class", class_name);
    cJSON_AddNumberToObject(j, "score", e->fx);
    if (o->method != LK_EXPLAIN_SALIENCY) {
        cJSON_AddStringToObject(j, "baseline", o->baseline);
        cJSON_AddNumberToObject(j, "baseline_score", e->fb);
    }
    if (o->method == LK_EXPLAIN_IG) {
        cJSON_AddNumberToObject(j, "steps", e->steps);
        cJSON_AddNumberToObject(j, "completeness_gap", e->gap);
    }
    if (o->method == LK_EXPLAIN_OCCLUSION) {
        cJSON_AddNumberToObject(j, "window", o->window);
        cJSON_AddNumberToObject(j, "stride", o->stride);
    }
    cJSON_AddNumberToObject(j, "sum", e->sum);
    cJSON_AddItemToObject(j, "shape", cJSON_CreateIntArray(s->d, s->ndim));
    cJSON_AddItemToObject(j, "attributions", cJSON_CreateFloatArray(attr, (int)lk_shape_numel(s)));
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    lk_status st = text ? lk_write_file_atomic(path, text, strlen(text)) : LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
    free(text);
    return st;
}

/* the predicted class (or next token): the largest of the model's meaningful outputs for x
 * (one sample) in row `row` of its last axis (0 for a classifier; a window's position) */
static lk_status predicted(lk_model *m, const float *x, int row, int *t)
{
    lk_copy_to_device(m->dev, lk_model_input(m), x, numel_in(m) * sizeof *x);
    lk_tensor out;
    LK_CHECK(lk_model_forward(m, 1, 0, 0, &out));
    const int C = lk_model_out_valid(m);
    const size_t ld = (size_t)out.shape.d[out.shape.ndim - 1];
    float *v = lk_malloc((size_t)C * sizeof *v);
    if (!v) return LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
    lk_copy_to_host(m->dev, v, out.data + (size_t)row * ld, (size_t)C * sizeof *v);
    *t = 0;
    for (int c = 1; c < C; c++) *t = v[c] > v[*t] ? c : *t;
    lk_free(v);
    return lk_device_status(m->dev);
}

/* one image: its attributions, files and line */
static lk_status explain_one(const lk_explain_opts *o, lk_model *m, const lk_run_config *rc, const float *x,
                             const float *base_file, int index, float *attr, float *base, explained *e)
{
    const size_t D = numel_in(m);
    e->index = index, e->gap = 0, e->fb = 0, e->steps = o->steps;
    if (o->target >= 0) e->target = o->target;
    else LK_CHECK(predicted(m, x, 0, &e->target));
    if (!strcmp(o->baseline, "black")) memset(base, 0, D * sizeof *base);
    else if (!strcmp(o->baseline, "blur")) blur(x, &m->in_shape, base);
    else memcpy(base, base_file, D * sizeof *base);
    if (o->method == LK_EXPLAIN_SALIENCY) {
        LK_CHECK(lk_attr_saliency(m, x, e->target, attr, &e->fx));
    } else if (o->method == LK_EXPLAIN_IG) {
        /* (a ReLU network's path gradient jumps where a unit switches, which quadrature meets
         * at O(1/points): an image whose gap is above --max-gap runs again with twice the points) */
        for (e->steps = o->steps;; e->steps *= 2) {
            LK_CHECK(lk_attr_ig(m, x, base, e->target, e->steps, attr, &e->fx, &e->fb));
            double sum = 0;
            for (size_t i = 0; i < D; i++) sum += attr[i];
            const double change = e->fx - e->fb, gap = fabs(sum - change) / fmax(fabs(change), 1e-12);
            if (!(o->max_gap > 0) || gap <= o->max_gap || e->steps * 2 > LK_EXPLAIN_MAX_STEPS) break;
        }
    } else {
        LK_CHECK(lk_attr_occlusion(m, x, base, e->target, o->window, o->stride, attr, &e->fx));
        LK_CHECK(lk_attr_scores(m, base, 1, e->target, &e->fb, NULL));
    }
    e->sum = 0;
    for (size_t i = 0; i < D; i++) e->sum += attr[i];
    const double change = e->fx - e->fb;
    if (o->method == LK_EXPLAIN_IG) e->gap = fabs(e->sum - change) / fmax(fabs(change), 1e-12);
    char path[700], name[40] = "";
    if (e->target < 16 && rc->class_names[e->target][0]) snprintf(name, sizeof name, "%s", rc->class_names[e->target]);
    snprintf(path, sizeof path, "%s/explain-%05d.png", o->out_dir, index);
    LK_CHECK(write_png(path, x, attr, &m->in_shape));
    snprintf(path, sizeof path, "%s/explain-%05d.json", o->out_dir, index);
    return write_json(path, o, e, attr, &m->in_shape, name);
}

/* token id's text, quoted, control bytes escaped */
static void token_text(const lk_bpe *bpe, int vocab, int32_t id, char *buf, size_t size)
{
    unsigned char one = (unsigned char)id;
    size_t n = 0, at = 0;
    const char *p = vocab == 256 ? (const char *)&one : bpe ? lk_bpe_token(bpe, id, &n) : NULL;
    if (vocab == 256) n = 1;
    if (!p) {
        snprintf(buf, size, "#%d", id);
        return;
    }
    buf[at++] = '\'';
    for (size_t i = 0; i < n && at + 6 < size; i++) {
        const unsigned char c = (unsigned char)p[i];
        at += (size_t)snprintf(buf + at, size - at, c < 32 || c == 127 ? "\\x%02x" : "%c", c);
    }
    snprintf(buf + at, size - at, "'");
}

/* a language model's next token after the prompt, attributed to the prompt's tokens */
static lk_status explain_prompt(const lk_explain_opts *o, lk_model *m, const lk_run_config *rc, FILE *log)
{
    const int T = m->in_shape.d[0], V = rc->nclasses, cap = 1 << 16;
    int32_t *tok = lk_malloc((size_t)cap * sizeof *tok);
    float *ids = lk_calloc((size_t)T, sizeof *ids), *attr = lk_calloc((size_t)T, sizeof *attr);
    lk_bpe *bpe = NULL;
    int n = 0, t = o->target;
    lk_status st = tok && ids && attr ? LK_OK : LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
    if (st == LK_OK) st = lk_prompt_open(o->prompt, V, o->tokenizer, &bpe, tok, cap, &n);
    const int len = LK_MIN(n, T), from = n - len; /* (the last --ctx tokens) */
    for (int i = 0; st == LK_OK && i < len; i++) ids[i] = (float)tok[from + i];
    if (st == LK_OK && t < 0) st = predicted(m, ids, len - 1, &t); /* the predicted next token */
    if (st == LK_OK && t >= V) st = LK_ERR(LK_ERR_ARG, "--target %d: the vocabulary has %d tokens", t, V);
    double fx = 0, fb = 0, sum = 0, mag = 0;
    if (st == LK_OK) st = lk_attr_tokens(m, ids, len, t, o->steps, attr, &fx, &fb);
    for (int i = 0; st == LK_OK && i < len; i++) sum += attr[i], mag += fabs(attr[i]);
    char text[160];
    if (st == LK_OK) {
        const double gap = fabs(sum - (fx - fb)) / fmax(fabs(fx - fb), 1e-12);
        token_text(bpe, V, t, text, sizeof text);
        fprintf(log, "next token %s (id %d), logit %.4f; integrated gradients over %d steps from the positions alone: "
                     "sum of attributions %.4f, f(x) - f(baseline) %.4f, completeness gap %.3f%%\n",
                text, t, fx, o->steps, sum, fx - fb, 100.0 * gap);
        for (int i = 0; i < len; i++) {
            token_text(bpe, V, tok[from + i], text, sizeof text);
            fprintf(log, "  %+10.4f %6.1f%%  %s\n", attr[i], 100.0 * fabs(attr[i]) / fmax(mag, 1e-30), text);
        }
    }
    if (st == LK_OK && o->out_dir) {
        cJSON *j = cJSON_CreateObject(), *ts = cJSON_AddArrayToObject(j, "tokens");
        for (int i = 0; i < len; i++) cJSON_AddItemToArray(ts, cJSON_CreateNumber(tok[from + i]));
        cJSON_AddNumberToObject(j, "target", t);
        cJSON_AddNumberToObject(j, "score", fx);
        cJSON_AddNumberToObject(j, "baseline_score", fb);
        cJSON_AddNumberToObject(j, "steps", o->steps);
        cJSON_AddItemToObject(j, "attributions", cJSON_CreateFloatArray(attr, len));
        char *s = cJSON_PrintUnformatted(j), path[700];
        cJSON_Delete(j);
        st = lk_make_dirs(o->out_dir);
        snprintf(path, sizeof path, "%s/explain-tokens.json", o->out_dir);
        if (st == LK_OK) st = s ? lk_write_file_atomic(path, s, strlen(s)) : LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
        free(s);
    }
    lk_bpe_free(bpe);
    lk_free(tok), lk_free(ids), lk_free(attr);
    return st;
}

/* The checkpoint's model, built for attributions (its input's gradient, evaluation mode). */
static lk_status open_model(const lk_explain_opts *o, const char *dir, const lk_run_config *rc, lk_spec **spec,
                            lk_device **dev, lk_model **m)
{
    char path[700];
    LK_CHECK(lk_ckptdir_open_spec(dir, rc, spec));
    const lk_zoo_entry *z = lk_spec_entry(*spec);
    if (z->target != LK_TARGET_LABELS || (!z->tokens && rc->in_shape.ndim != 3))
        return LK_ERR(LK_ERR_ARG, "explain: checkpoint %s holds a %s; explain takes image classifiers and language "
                                  "models", dir, rc->model);
    if (z->tokens != !!o->prompt)
        return LK_ERR(LK_ERR_ARG, "explain: checkpoint %s holds a %s: %s", dir, rc->model,
                      z->tokens ? "a language model explains --prompt TEXT, not --input" : "--prompt is for language models");
    LK_CHECK(lk_device_open(dev, o->device ? o->device : "auto", o->threads));
    LK_CHECK(lk_model_create(m, *dev, &rc->in_shape));
    LK_CHECK(lk_spec_build(*spec, *m, rc->nclasses, &rc->arch));
    (*m)->input_grad = (*m)->backward_eval = 1;
    /* a language model's points in batches whose logits stay within ~200 MB (GPT-2's: 1) */
    const double logits = (double)lk_shape_numel(&rc->in_shape) * rc->nclasses * sizeof(float);
    LK_CHECK(lk_model_build(*m, z->tokens ? (int)LK_MAX(1.0, LK_MIN(8.0, 2e8 / logits)) : 32));
    return lk_checkpoint_load_weights(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path), *m);
}

lk_status lk_explain(const lk_explain_opts *o, FILE *log)
{
    static const char *const names[] = {"saliency", "integrated gradients", "occlusion"};
    char dir[600], a[64], b[64];
    lk_run_config rc;
    LK_CHECK(lk_ckptdir_resolve(o->checkpoint, dir, sizeof dir));
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    if (!o->out_dir && !o->prompt) return LK_ERR(LK_ERR_ARG, "explain: --out DIR is required (where the maps go)");
    lk_spec *spec = NULL;
    lk_device *dev = NULL;
    lk_model *m = NULL;
    lk_dataset d, bd;
    memset(&d, 0, sizeof d), memset(&bd, 0, sizeof bd);
    float *x = NULL, *attr = NULL, *base = NULL;
    lk_status st = open_model(o, dir, &rc, &spec, &dev, &m);
    const int rank = o->comm ? o->comm->rank : 0, world = o->comm ? o->comm->world : 1;
    if (st == LK_OK && o->prompt) { /* a language model: one prompt, on rank 0 */
        st = rank == 0 ? explain_prompt(o, m, &rc, log) : LK_OK;
        lk_model_destroy(m);
        lk_device_close(dev);
        lk_spec_free(spec);
        return st;
    }
    if (st == LK_OK && !o->input) st = LK_ERR(LK_ERR_ARG, "explain: --input FILE is required (the images)");
    if (st == LK_OK) st = lk_image_file_load(o->input, &d);
    if (st == LK_OK && !lk_shape_equal(&d.sample, &rc.in_shape))
        st = LK_ERR(LK_ERR_SHAPE, "%s: images are %s but checkpoint %s expects %s", o->input,
                    lk_shape_str(&d.sample, a, sizeof a), dir, lk_shape_str(&rc.in_shape, b, sizeof b));
    if (st == LK_OK && o->target >= rc.nclasses)
        st = LK_ERR(LK_ERR_ARG, "--target %d: checkpoint %s has %d classes", o->target, dir, rc.nclasses);
    if (st == LK_OK && strcmp(o->baseline, "black") && strcmp(o->baseline, "blur")) { /* an image file */
        st = lk_image_file_load(o->baseline, &bd);
        if (st == LK_OK && !lk_shape_equal(&bd.sample, &rc.in_shape))
            st = LK_ERR(LK_ERR_SHAPE, "--baseline %s: images are %s, the model's %s", o->baseline,
                        lk_shape_str(&bd.sample, a, sizeof a), lk_shape_str(&rc.in_shape, b, sizeof b));
    }
    const size_t D = lk_shape_numel(&rc.in_shape);
    if (st == LK_OK) {
        x = lk_malloc(2 * D * sizeof *x), attr = lk_malloc(D * sizeof *attr), base = lk_malloc(D * sizeof *base);
        if (!x || !attr || !base) st = LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
    }
    if (st == LK_OK) st = lk_make_dirs(o->out_dir);
    if (st == LK_OK && bd.n) lk_dataset_gather(&bd, &(int32_t){0}, 1, x + D, NULL);
    const int n = o->limit > 0 ? LK_MIN(o->limit, d.n) : d.n;
    double gaps[3] = {0, 0, 0}; /* sum and largest of the completeness gaps, images */
    for (int i = rank; st == LK_OK && i < n; i += world) {
        explained e;
        lk_dataset_gather(&d, &(int32_t){i}, 1, x, NULL);
        st = explain_one(o, m, &rc, x, x + D, i, attr, base, &e);
        if (st != LK_OK) break;
        gaps[0] += e.gap, gaps[1] = fmax(gaps[1], e.gap), gaps[2] += 1;
        fprintf(log, "image %d: class %d, logit %.4f; %s", i, e.target, e.fx, names[o->method]);
        if (o->method == LK_EXPLAIN_IG)
            fprintf(log, " over %d steps%s from %s: sum of attributions %.4f, f(x) - f(baseline) %.4f, completeness "
                         "gap %.3f%%", e.steps, e.steps > o->steps ? " (the gap above --max-gap at fewer)" : "",
                    o->baseline, e.sum, e.fx - e.fb, 100.0 * e.gap);
        else if (o->method == LK_EXPLAIN_OCCLUSION)
            fprintf(log, " (%dx%d windows every %d pixels, from %s): sum %.4f", o->window, o->window, o->stride,
                    o->baseline, e.sum);
        fprintf(log, " -> %s/explain-%05d.png, .json\n", o->out_dir, i);
    }
    double all[3] = {gaps[0], gaps[2], 0}, top[1] = {gaps[1]};
    if (o->comm && o->comm->world > 1) { /* (every rank: a failed one is stopped by the caller) */
        if (st == LK_OK) st = lk_comm_allreduce_f64(o->comm, all, 2, LK_REDUCE_SUM);
        if (st == LK_OK) st = lk_comm_allreduce_f64(o->comm, top, 1, LK_REDUCE_MAX);
    }
    if (st == LK_OK && rank == 0 && o->method == LK_EXPLAIN_IG && all[1] > 0)
        fprintf(log, "%d images on %d rank%s: completeness gap mean %.3f%%, largest %.3f%%\n", (int)all[1], world,
                world == 1 ? "" : "s", 100.0 * all[0] / all[1], 100.0 * top[0]);
    lk_free(x), lk_free(attr), lk_free(base);
    lk_dataset_free(&d), lk_dataset_free(&bd);
    lk_model_destroy(m);
    lk_device_close(dev);
    lk_spec_free(spec);
    return st;
}

/* ---- language models: the next token's logit, token by token ---- */

/* f at n points base + a[k] (E - base) between the baseline's embedding outputs and the
 * prompt's E (host, [T, C]), for token t at position pos; with g, the gradients with respect
 * to those embedding outputs into g[n][T * C] */
static lk_status token_points(lk_model *m, const float *emb, const float *base, const double *a, int n, int pos,
                              int t, double *f, float *g)
{
    lk_device *d = m->dev;
    const size_t E = lk_shape_numel(&m->layers[0]->out);
    float *in = lk_malloc((size_t)n * E * sizeof *in);
    if (!in) return LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < E; i++) in[(size_t)k * E + i] = base[i] + (float)a[k] * (emb[i] - base[i]);
    lk_copy_to_device(d, m->act[1], in, (size_t)n * E * sizeof *in);
    lk_free(in);
    lk_tensor out;
    LK_CHECK(lk_model_forward_range(m, 1, m->nlayers, n, 0, 0, &out));
    const size_t per = lk_tensor_numel(&out) / (size_t)n, row = (size_t)out.shape.d[out.shape.ndim - 1];
    const size_t at = (size_t)pos * row + (size_t)t;
    float v;
    for (int k = 0; k < n; k++) {
        lk_copy_to_host(d, &v, out.data + (size_t)k * per + at, sizeof v);
        f[k] = v;
    }
    LK_CHECK(lk_device_status(d));
    if (!g) return LK_OK;
    lk_zero(d, m->dout, (size_t)n * per * sizeof(float)); /* (the output is read: the loss's place is free) */
    const float one = 1.0f;
    for (int k = 0; k < n; k++) lk_copy_to_device(d, m->dout + (size_t)k * per + at, &one, sizeof one);
    LK_CHECK(lk_model_backward_range(m, 1, n, 0, LK_GRADS_REPLACE));
    lk_copy_to_host(d, g, m->din, (size_t)n * E * sizeof *g);
    return lk_device_status(d);
}

lk_status lk_attr_tokens(lk_model *m, const float *ids, int len, int t, int steps, float *attr, double *fx,
                         double *fb)
{
    const int T = m->in_shape.d[0], B = m->max_batch;
    if (m->nlayers < 2 || len < 1 || len > T || steps < 1 || steps > 4096)
        return LK_ERR(LK_ERR_ARG, "explain: %d prompt tokens (1 to --ctx %d), %d steps (1 to 4096)", len, T, steps);
    const size_t E = lk_shape_numel(&m->layers[0]->out), C = E / (size_t)T;
    float *emb = lk_malloc(E * sizeof *emb), *g = lk_malloc((size_t)B * E * sizeof *g), *base = lk_malloc(E * sizeof *base);
    double *at = lk_malloc((size_t)steps * sizeof *at), *w = lk_malloc((size_t)steps * sizeof *w);
    double *acc = lk_calloc(E, sizeof *acc), *f = lk_malloc((size_t)B * sizeof *f);
    lk_status st = emb && g && base && at && w && acc && f ? LK_OK : LK_ERR(LK_ERR_NOMEM, "explain: out of memory");
    lk_tensor e;
    if (st == LK_OK) { /* the prompt's embedding outputs */
        lk_copy_to_device(m->dev, lk_model_input(m), ids, (size_t)T * sizeof *ids);
        st = lk_model_forward_range(m, 0, 1, 1, 0, 0, &e);
    }
    if (st == LK_OK) lk_copy_to_host(m->dev, emb, e.data, E * sizeof *emb), st = lk_device_status(m->dev);
    /* the baseline: the same positions without the tokens (the embedding's output less each
     * token's row of its table; zero for the window's unused tail, which no logit sees) */
    const lk_param *wte = &m->layers[0]->params[0];
    for (int i = 0; st == LK_OK && i < T; i++) {
        float *b = base + (size_t)i * C;
        lk_copy_to_host(m->dev, b, wte->w + (size_t)ids[i] * C, C * sizeof *b);
        for (size_t c = 0; c < C; c++) b[c] = i < len ? emb[(size_t)i * C + c] - b[c] : 0.0f;
    }
    if (st == LK_OK) st = lk_device_status(m->dev);
    if (st == LK_OK) gauss_legendre(steps, at, w);
    for (int k0 = 0; st == LK_OK && k0 < steps; k0 += B) {
        const int n = LK_MIN(B, steps - k0);
        st = token_points(m, emb, base, at + k0, n, len - 1, t, f, g);
        for (int k = 0; st == LK_OK && k < n; k++)
            for (size_t i = 0; i < E; i++) acc[i] += w[k0 + k] * g[(size_t)k * E + i];
    }
    for (int i = 0; st == LK_OK && i < len; i++) {
        double s = 0;
        for (size_t c = 0; c < C; c++) s += (emb[(size_t)i * C + c] - base[(size_t)i * C + c]) * acc[(size_t)i * C + c];
        attr[i] = (float)s;
    }
    const double ends[2] = {1.0, 0.0};
    double fe[2] = {0, 0};
    if (st == LK_OK) st = token_points(m, emb, base, ends, 1, len - 1, t, &fe[0], NULL);
    if (st == LK_OK) st = token_points(m, emb, base, ends + 1, 1, len - 1, t, &fe[1], NULL);
    if (fx) *fx = fe[0];
    if (fb) *fb = fe[1];
    lk_free(emb), lk_free(g), lk_free(base), lk_free(at), lk_free(w), lk_free(acc), lk_free(f);
    return st;
}
