/* checkpoint.c - model weights and optimizer state as safetensors files.
 *
 * Both files are lists of "slots": a name, a PyTorch shape and a device slice
 * (a parameter, or one optimizer state buffer at the parameter's offset).
 * Saving copies the slots to host and writes them; loading checks every slot
 * against the file first and copies only when all of them fit. */
#include "checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[LK_ST_MAX_DIMS];
    size_t numel;
    size_t offset; /* in the flat buffer */
    int state;     /* optimizer state buffer (0, 1), -1 for a parameter */
    float *dev;    /* a parameter's data */
} ck_slot;

static const char *dims_str(const int64_t *d, int ndim, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ", %" PRId64 : "%" PRId64, d[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}

/* Parameters and buffers (o == NULL) or optimizer state buffers, in PyTorch order. */
static lk_status make_slots(const lk_model *m, const lk_optim *o, ck_slot **out, int *nout)
{
    *out = NULL;
    *nout = 0;
    if (!m || !m->params) return LK_ERR(LK_ERR_STATE, "checkpoint: the model is not built");
    int np = lk_model_param_count(m);
    int per = o ? lk_optim_state_count(o->cfg.kind) : 1;
    float *bufs[2] = {o ? o->s1 : NULL, o ? o->s2 : NULL};
    for (int k = 0; o && k < per; k++)
        if (!bufs[k])
            return LK_ERR(LK_ERR_STATE, "checkpoint: %s has no state buffer %d",
                          lk_optim_name(o->cfg.kind), k);
    ck_slot *s = lk_calloc((size_t)np * (size_t)per, sizeof *s);
    if (!s) return LK_ERR(LK_ERR_NOMEM, "checkpoint: out of memory");
    int n = 0;
    for (int i = 0; i < np; i++) {
        char pname[112]; /* leaves room for ".stateN" */
        const lk_param *p = lk_model_param(m, i, pname, sizeof pname);
        if (!p) {
            lk_free(s);
            return LK_ERR(LK_ERR_STATE, "checkpoint: model parameter %d not found", i);
        }
        if (o && p->buffer) continue; /* no optimizer state */
        size_t numel = lk_shape_numel(&p->shape);
        if (o && p->offset + numel > o->n) {
            lk_free(s);
            return LK_ERR(LK_ERR_STATE, "checkpoint: parameter '%s' lies outside the optimizer "
                          "state (%zu floats)", pname, o->n);
        }
        for (int k = 0; k < per; k++, n++) {
            if (o) snprintf(s[n].name, sizeof s[n].name, "%s.state%d", pname, k);
            else snprintf(s[n].name, sizeof s[n].name, "%s", pname);
            s[n].ndim = p->shape.ndim;
            for (int d = 0; d < p->shape.ndim; d++) s[n].shape[d] = p->shape.d[d];
            s[n].numel = numel;
            s[n].offset = p->offset;
            s[n].state = o ? k : -1;
            s[n].dev = o ? NULL : p->w;
        }
    }
    *out = s;
    *nout = n;
    return LK_OK;
}

/* The part of a state slot in the optimizer's slice: [*a, *b) of the flat buffer. */
static float *state_part(const lk_optim *o, const ck_slot *s, size_t *a, size_t *b)
{
    *a = LK_MAX(s->offset, o->lo);
    *b = LK_MAX(*a, LK_MIN(s->offset + s->numel, o->hi));
    float *buf = s->state == 0 ? o->s1 : o->s2;
    return buf + (*a - o->lo);
}

typedef struct {
    lk_device *dev;
    const lk_optim *o;
    lk_ckpt_gather_fn gather;
    void *user;
} ck_source;

/* a slot's floats into host: a parameter from the device, a state slot from the optimizer
 * (all of it here) or through gather (the slices of every rank) */
static lk_status fetch(const ck_source *src, const ck_slot *s, float *host)
{
    if (s->state >= 0 && src->gather) return src->gather(src->user, s->state, s->offset, s->numel, host);
    if (s->state >= 0) {
        size_t a, b;
        const float *p = state_part(src->o, s, &a, &b);
        if (a != s->offset || b != s->offset + s->numel)
            return LK_ERR(LK_ERR_STATE, "checkpoint: '%s' lies outside this optimizer's slice [%zu, %zu)",
                          s->name, src->o->lo, src->o->hi);
        lk_copy_to_host(src->dev, host, p, s->numel * sizeof(float));
    } else {
        lk_copy_to_host(src->dev, host, s->dev, s->numel * sizeof(float));
    }
    lk_sync(src->dev);
    return lk_device_status(src->dev);
}

/* Streams the slots into path one at a time (the largest is all the host memory it takes);
 * with path NULL only fetches them (a rank that takes part in the gathers and writes nothing). */
static lk_status save_slots(const char *path, const ck_source *src, const ck_slot *s, int n,
                            const char *const *mk, const char *const *mv, int nmeta)
{
    size_t biggest = 1;
    for (int i = 0; i < n; i++) biggest = LK_MAX(biggest, s[i].numel);
    float *host = lk_malloc(biggest * sizeof *host);
    lk_st_tensor *t = lk_calloc((size_t)LK_MAX(n, 1), sizeof *t);
    lk_st_writer *w = NULL;
    lk_status st = LK_OK;
    if (!host || !t) st = LK_ERR(LK_ERR_NOMEM, "out of memory saving %s (%zu floats)", path, biggest);
    for (int i = 0; st == LK_OK && i < n; i++) {
        t[i].name = s[i].name;
        t[i].ndim = s[i].ndim;
        memcpy(t[i].shape, s[i].shape, sizeof t[i].shape);
    }
    if (st == LK_OK && path) st = lk_safetensors_begin(&w, path, t, n, mk, mv, nmeta);
    for (int i = 0; st == LK_OK && i < n; i++) {
        st = fetch(src, &s[i], host);
        if (st == LK_OK && w && (st = lk_safetensors_put(w, host, s[i].numel * sizeof(float))) != LK_OK)
            w = NULL; /* a failed put has removed the file */
    }
    if (st == LK_OK && w) st = lk_safetensors_end(w);
    else if (w) lk_safetensors_abort(w);
    lk_free(t);
    lk_free(host);
    return st;
}

/* 1 when the tensor's name is one of the layer `skip`'s ("<skip>.weight"); skip < 0: none. */
static int skipped(const char *name, int skip)
{
    char prefix[24];
    if (skip < 0) return 0;
    int k = snprintf(prefix, sizeof prefix, "%d.", skip);
    return !strncmp(name, prefix, (size_t)k);
}

/* Every slot present with dtype F32 and its exact shape, and nothing else (but the tensors
 * of layer `skip`, which the caller leaves out of s). */
static lk_status check_slots(const char *path, const lk_safetensors *f, const ck_slot *s, int n, int skip)
{
    char want[160], got[160];
    for (int i = 0; i < n; i++) {
        const lk_st_entry *e = lk_safetensors_find(f, s[i].name);
        dims_str(s[i].shape, s[i].ndim, want, sizeof want);
        if (!e)
            return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s' (F32 %s) is missing", path,
                          s[i].name, want);
        if (strcmp(e->dtype, "F32") != 0)
            return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected F32", path,
                          s[i].name, e->dtype);
        int same = e->ndim == s[i].ndim;
        for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == s[i].shape[d];
        if (!same)
            return LK_ERR(LK_ERR_SHAPE, "%s: tensor '%s' has shape %s but the model expects %s",
                          path, s[i].name, dims_str(e->shape, e->ndim, got, sizeof got), want);
    }
    /* All n slots were found, so any further entry is one the model lacks. */
    int count = lk_safetensors_count(f);
    for (int j = 0; count != n && j < count; j++) {
        const lk_st_entry *e = lk_safetensors_entry(f, j);
        int known = skipped(e->name, skip);
        for (int i = 0; i < n && !known; i++) known = strcmp(e->name, s[i].name) == 0;
        if (!known)
            return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s' has no counterpart in the model", path,
                          e->name);
    }
    return LK_OK;
}

/* Copies the file's data into the slots: parameters whole, state slots as far as they
 * lie in the optimizer's slice. */
static void load_slots(lk_device *dev, const lk_optim *o, const lk_safetensors *f, const ck_slot *s, int n)
{
    for (int i = 0; i < n; i++) {
        const float *data = lk_safetensors_find(f, s[i].name)->data;
        if (s[i].state < 0) {
            lk_copy_to_device(dev, s[i].dev, data, s[i].numel * sizeof(float));
            continue;
        }
        size_t a, b;
        float *p = state_part(o, &s[i], &a, &b);
        if (b > a) lk_copy_to_device(dev, p, data + (a - s[i].offset), (b - a) * sizeof(float));
    }
    lk_sync(dev); /* the file buffer is freed next */
}

lk_status lk_checkpoint_save_weights(const char *path, const lk_model *m,
                                     const char *const *meta_keys,
                                     const char *const *meta_vals, int nmeta)
{
    ck_slot *s;
    int n;
    LK_CHECK(make_slots(m, NULL, &s, &n));
    const ck_source src = {m->dev, NULL, NULL, NULL};
    lk_status st = save_slots(path, &src, s, n, meta_keys, meta_vals, nmeta);
    lk_free(s);
    return st;
}

lk_status lk_checkpoint_load_weights(const char *path, lk_model *m)
{
    return lk_checkpoint_load_weights_but(path, m, -1);
}

lk_status lk_checkpoint_load_weights_but(const char *path, lk_model *m, int skip)
{
    ck_slot *s;
    int n, kept = 0;
    LK_CHECK(make_slots(m, NULL, &s, &n));
    for (int i = 0; i < n; i++)
        if (!skipped(s[i].name, skip)) s[kept++] = s[i];
    n = kept;
    lk_safetensors *f = NULL;
    lk_status st = lk_safetensors_read(path, &f);
    if (st == LK_OK) st = check_slots(path, f, s, n, skip);
    if (st == LK_OK) load_slots(m->dev, NULL, f, s, n);
    if (st == LK_OK) lk_model_params_changed(m); /* a bf16 model's working copy follows */
    lk_safetensors_free(f);
    lk_free(s);
    return st;
}

lk_status lk_checkpoint_save_optim(const char *path, const lk_model *m, const lk_optim *o)
{
    return lk_checkpoint_save_optim_gather(path, m, o, NULL, NULL);
}

lk_status lk_checkpoint_save_optim_gather(const char *path, const lk_model *m, const lk_optim *o,
                                          lk_ckpt_gather_fn gather, void *user)
{
    if (!o) return LK_ERR(LK_ERR_ARG, "%s: no optimizer to save", path ? path : "");
    ck_slot *s;
    int n;
    LK_CHECK(make_slots(m, o, &s, &n));
    char step[32];
    snprintf(step, sizeof step, "%ld", o->step);
    const char *keys[] = {"optimizer", "step"};
    const char *vals[] = {lk_optim_name(o->cfg.kind), step};
    const ck_source src = {o->dev ? o->dev : m->dev, o, gather, user};
    lk_status st = save_slots(path, &src, s, n, keys, vals, 2);
    lk_free(s);
    return st;
}

static lk_status check_optim_meta(const char *path, const lk_safetensors *f, const lk_optim *o,
                                  long *step)
{
    const char *want = lk_optim_name(o->cfg.kind);
    const char *name = lk_safetensors_meta(f, "optimizer");
    if (!name || strcmp(name, want) != 0)
        return LK_ERR(LK_ERR_FORMAT, "%s: optimizer state is for '%s' but the run uses '%s'",
                      path, name ? name : "(none)", want);
    const char *txt = lk_safetensors_meta(f, "step");
    char *end = NULL;
    long v = txt ? strtol(txt, &end, 10) : -1;
    if (!txt || !*txt || *end || v < 0)
        return LK_ERR(LK_ERR_FORMAT, "%s: metadata \"step\" is missing or not a step count "
                      "('%s')", path, txt ? txt : "");
    *step = v;
    return LK_OK;
}

lk_status lk_checkpoint_load_optim(const char *path, const lk_model *m, lk_optim *o)
{
    if (!o) return LK_ERR(LK_ERR_ARG, "%s: no optimizer to load into", path ? path : "");
    ck_slot *s;
    int n;
    LK_CHECK(make_slots(m, o, &s, &n));
    lk_safetensors *f = NULL;
    long step = 0;
    lk_status st = lk_safetensors_read(path, &f);
    if (st == LK_OK) st = check_optim_meta(path, f, o, &step);
    if (st == LK_OK) st = check_slots(path, f, s, n, -1);
    if (st == LK_OK) {
        load_slots(o->dev ? o->dev : m->dev, o, f, s, n);
        o->step = step;
    }
    lk_safetensors_free(f);
    lk_free(s);
    return st;
}
