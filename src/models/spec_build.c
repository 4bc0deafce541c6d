/* spec_build.c - a parsed spec into a model's layers (spec.h): sizes evaluated against
 * the shape each layer gets, every error naming the layer, its text and its input. */
#include "spec_impl.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int isalnum_ascii(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

#define MAX_VISITS 1000000 /* layer entries expanded (repeats and blocks count each time) */
#define MAX_IDS 64

typedef struct {
    const lk_spec *s;
    lk_model *m;
    int nclasses;
    lk_arch a;
    double input; /* elements of the data's sample */
    long visits;
    int depth; /* lists within lists as built (blocks referring to blocks included) */
    struct {
        const char *id;
        lk_layer *l;
    } ids[MAX_IDS];
    int nids;
    lk_layer *last_emb;
} bctx;

/* Where a layer is, for messages. */
typedef struct {
    const char *path;
    const cJSON *node;
} at;

static lk_status berr(const bctx *b, const at *w, lk_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static lk_status berr(const bctx *b, const at *w, lk_status code, const char *fmt, ...)
{
    char msg[600], txt[160], shape[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lk_shape in = lk_model_out_shape(b->m);
    return LK_ERR(code, "%s: %s (%s): %s; its input is %s", b->s->origin, w->path,
                  lk_spec_node_text(w->node, txt, sizeof txt), msg, lk_shape_str(&in, shape, sizeof shape));
}

/* ---- expressions: + - * / ( ), numbers, names (vars, classes, input), sqrt(x), shape(i) ---- */
/* One field's evaluation: the vars it has worked out (each once, however often named) and
 * the ones being worked out (a var that needs itself is a cycle). */
typedef struct {
    const char *done[32];
    double value[32];
    int ndone;
    const char *active[16];
    int nactive;
} ex_vars;

typedef struct {
    const char *p;
    const bctx *b;
    int single; /* each step rounded to float (float fields: the same value C's float arithmetic gives) */
    ex_vars *vars;
    int nest;   /* parentheses and signs, nested (bounded: no stack to exhaust) */
    char err[160];
} expr;

static double ex_sum(expr *e);

/* v as the nearest float (a value beyond float's range: an infinity, which the ranges refuse) */
static double f32(double v) { return fabs(v) > FLT_MAX ? (v > 0 ? INFINITY : -INFINITY) : (double)(float)v; }
static double rnd(const expr *e, double v) { return e->single ? f32(v) : v; }

static void ex_space(expr *e)
{
    while (*e->p == ' ' || *e->p == '\t') e->p++;
}

static double ex_fail(expr *e, const char *fmt, const char *arg)
{
    if (!e->err[0]) snprintf(e->err, sizeof e->err, fmt, arg);
    return 0;
}

static double ex_eval(const bctx *b, const char *text, int single, ex_vars *vars, char *err, size_t esize);

static double ex_name(expr *e, const char *name)
{
    const bctx *b = e->b;
    if (!strcmp(name, "classes")) return b->nclasses;
    if (!strcmp(name, "input")) return b->input;
    const int av[4] = {b->a.layers, b->a.heads, b->a.dim, b->a.ctx};
    static const char *const an[4] = {"layers", "heads", "dim", "ctx"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, an[i]) && av[i] > 0) return av[i];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b->s->root, "vars"), name);
    if (cJSON_IsNumber(v)) return rnd(e, v->valuedouble);
    if (cJSON_IsString(v)) {
        ex_vars *c = e->vars;
        for (int i = 0; i < c->ndone; i++)
            if (!strcmp(c->done[i], name)) return c->value[i];
        for (int i = 0; i < c->nactive; i++)
            if (!strcmp(c->active[i], name)) return ex_fail(e, "var '%s' needs itself (a cycle)", name);
        if (c->nactive == 16) return ex_fail(e, "var '%s': vars refer to vars more than 16 deep", name);
        c->active[c->nactive++] = v->string; /* (the tree's: name is the caller's buffer) */
        char err[160] = "";
        double r = ex_eval(b, v->valuestring, e->single, c, err, sizeof err);
        c->nactive--;
        if (err[0]) {
            char m[160];
            snprintf(m, sizeof m, "var '%.40s' (%.100s)", name, err);
            return ex_fail(e, "%s", m);
        }
        if (c->ndone < 32) c->done[c->ndone] = v->string, c->value[c->ndone++] = r;
        return r;
    }
    return ex_fail(e, "unknown name '%s' (the spec's vars, classes, input, sqrt(x), shape(i))", name);
}

static double ex_atom(expr *e)
{
    ex_space(e);
    const char *p = e->p;
    if ((*p == '(' || *p == '-') && e->nest >= 64) return ex_fail(e, "nested more than 64 deep%s", "");
    if (*p == '(') {
        e->p++, e->nest++;
        double v = ex_sum(e);
        e->nest--;
        ex_space(e);
        if (*e->p != ')') return ex_fail(e, "expected ')' at '%s'", e->p);
        e->p++;
        return v;
    }
    if (*p == '-') {
        e->p++, e->nest++;
        double v = -ex_atom(e);
        e->nest--;
        return v;
    }
    if ((*p >= '0' && *p <= '9') || *p == '.') {
        char *end;
        double v = strtod(p, &end);
        e->p = end;
        return rnd(e, v);
    }
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
        char name[64];
        size_t n = 0;
        while ((isalnum_ascii(*e->p) || *e->p == '_') && n < sizeof name - 1) name[n++] = *e->p++;
        name[n] = 0;
        ex_space(e);
        if (*e->p != '(') return ex_name(e, name);
        if (e->nest >= 64) return ex_fail(e, "nested more than 64 deep%s", "");
        e->p++, e->nest++;
        double arg = ex_sum(e);
        e->nest--;
        ex_space(e);
        if (*e->p != ')') return ex_fail(e, "expected ')' at '%s'", e->p);
        e->p++;
        if (!strcmp(name, "sqrt")) {
            if (arg < 0) return ex_fail(e, "%s: sqrt of a negative number", "sqrt");
            return rnd(e, sqrt(arg));
        }
        if (!strcmp(name, "shape")) {
            lk_shape in = lk_model_out_shape(e->b->m);
            if (arg != floor(arg) || arg < -in.ndim || arg >= in.ndim) /* (before the cast: any double comes) */
                return ex_fail(e, "shape(i): i is an axis of the layer's input (from 0, or from -1 at the end)%s", "");
            const int i = (int)arg < 0 ? (int)arg + in.ndim : (int)arg;
            return in.d[i];
        }
        return ex_fail(e, "unknown function '%s' (sqrt, shape)", name);
    }
    return ex_fail(e, "expected a number, a name or '(' at '%s'", p);
}

static double ex_prod(expr *e)
{
    double v = ex_atom(e);
    for (;;) {
        ex_space(e);
        char op = *e->p;
        if (op != '*' && op != '/') return v;
        e->p++;
        double r = ex_atom(e);
        if (op == '/' && r == 0) return ex_fail(e, "division by zero%s", "");
        v = rnd(e, op == '*' ? v * r : v / r);
    }
}

static double ex_sum(expr *e)
{
    double v = ex_prod(e);
    for (;;) {
        ex_space(e);
        char op = *e->p;
        if (op != '+' && op != '-') return v;
        e->p++;
        double r = ex_prod(e);
        v = rnd(e, op == '+' ? v + r : v - r);
    }
}

static double ex_eval(const bctx *b, const char *text, int single, ex_vars *vars, char *err, size_t esize)
{
    expr e = {.p = text, .b = b, .single = single, .vars = vars};
    double v = ex_sum(&e);
    ex_space(&e);
    if (!e.err[0] && *e.p) snprintf(e.err, sizeof e.err, "unexpected '%.40s'", e.p);
    if (!e.err[0] && !isfinite(v)) snprintf(e.err, sizeof e.err, "not a finite number");
    snprintf(err, esize, "%s", e.err);
    return v;
}

/* ---- fields ---- */
/* A number field: a JSON number or an expression string; dflt when absent (NAN: required). */
static lk_status get_num(const bctx *b, const at *w, const cJSON *node, const char *key, int single, double dflt,
                         double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, key);
    if (!v) {
        if (isnan(dflt)) return berr(b, w, LK_ERR_ARG, "missing field \"%s\"", key);
        *out = dflt;
        return LK_OK;
    }
    if (cJSON_IsNumber(v)) {
        *out = single ? f32(v->valuedouble) : v->valuedouble;
        return LK_OK;
    }
    if (!cJSON_IsString(v)) return berr(b, w, LK_ERR_ARG, "\"%s\" is a number or an expression", key);
    char err[200];
    ex_vars vars = {.ndone = 0};
    *out = ex_eval(b, v->valuestring, single, &vars, err, sizeof err);
    if (err[0]) return berr(b, w, LK_ERR_ARG, "\"%s\": %s", key, err);
    return LK_OK;
}

static lk_status get_int(const bctx *b, const at *w, const cJSON *node, const char *key, double dflt, int lo, int hi,
                         int *out)
{
    double v = 0;
    LK_CHECK(get_num(b, w, node, key, 0, dflt, &v));
    if (v != floor(v) || v < lo || v > hi)
        return berr(b, w, LK_ERR_ARG, "\"%s\" is %g: a whole number from %d to %d", key, v, lo, hi);
    *out = (int)v;
    return LK_OK;
}

static lk_status get_float(const bctx *b, const at *w, const cJSON *node, const char *key, double dflt, double lo,
                           double hi, float *out)
{
    double v = 0;
    LK_CHECK(get_num(b, w, node, key, 1, dflt, &v));
    if (!(v >= lo && v <= hi)) return berr(b, w, LK_ERR_ARG, "\"%s\" is %g: from %g to %g", key, v, lo, hi);
    *out = (float)v;
    return LK_OK;
}

static lk_status get_bool(const bctx *b, const at *w, const cJSON *node, const char *key, int dflt, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, key);
    if (!v) return *out = dflt, LK_OK;
    if (!cJSON_IsBool(v)) return berr(b, w, LK_ERR_ARG, "\"%s\" is true or false", key);
    *out = cJSON_IsTrue(v);
    return LK_OK;
}

/* A string field; "$name" reads the var (gelu: the run's --gelu). */
static lk_status get_str(const bctx *b, const at *w, const cJSON *node, const char *key, const char *dflt,
                         const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, key);
    if (!v) return *out = dflt, LK_OK;
    if (!cJSON_IsString(v)) return berr(b, w, LK_ERR_ARG, "\"%s\" is a string", key);
    *out = v->valuestring;
    if (v->valuestring[0] != '$') return LK_OK;
    const char *name = v->valuestring + 1;
    if (!strcmp(name, "gelu") && b->a.gelu != LK_GELU_DEFAULT) return *out = lk_gelu_name(b->a.gelu), LK_OK;
    const cJSON *var = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b->s->root, "vars"), name);
    if (!cJSON_IsString(var)) return berr(b, w, LK_ERR_ARG, "\"%s\": no string var '%s'", key, name);
    *out = var->valuestring;
    return LK_OK;
}

/* ---- layers ---- */
static lk_status add(bctx *b, const at *w, lk_layer *l)
{
    lk_status st = lk_model_add(b->m, l);
    if (st == LK_OK) return LK_OK;
    char why[400];
    snprintf(why, sizeof why, "%s", lk_error_message());
    return berr(b, w, st, "%s", why);
}

/* "init": {"std": s, "tensors": {"name": s}}: N(0, s^2) weights, zero biases. */
static lk_status apply_init(const bctx *b, const at *w, lk_layer *l)
{
    const cJSON *init = cJSON_GetObjectItemCaseSensitive(w->node, "init");
    if (!init) return LK_OK;
    if (cJSON_GetObjectItemCaseSensitive(init, "std")) {
        float std = 0;
        LK_CHECK(get_float(b, w, init, "std", NAN, 0, 1e3, &std));
        for (int j = 0; j < l->nparams; j++) {
            lk_param *p = &l->params[j];
            if (p->buffer) continue;
            p->fixed = p->is_bias ? LK_PINIT_ZEROS : LK_PINIT_NORMAL;
            p->fixed_std = std;
        }
    }
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(init, "tensors");
    if (tensors && !cJSON_IsObject(tensors)) return berr(b, w, LK_ERR_ARG, "\"init\".\"tensors\" maps names to stds");
    for (const cJSON *t = tensors ? tensors->child : NULL; t; t = t->next) {
        lk_param *p = NULL;
        for (int j = 0; j < l->nparams; j++)
            if (!strcmp(l->params[j].name, t->string) && !l->params[j].buffer) p = &l->params[j];
        if (!p) return berr(b, w, LK_ERR_ARG, "\"init\": the layer has no tensor '%s'", t->string);
        float std = 0;
        LK_CHECK(get_float(b, w, tensors, t->string, NAN, 0, 1e3, &std));
        p->fixed = LK_PINIT_NORMAL;
        p->fixed_std = std;
    }
    return LK_OK;
}

static lk_status build_list(bctx *b, const cJSON *list, const char *path);

static lk_status act_layer(bctx *b, const at *w, const char *t, lk_layer **l)
{
    if (!strcmp(t, "relu")) *l = lk_activation(LK_ACT_RELU, 0);
    else if (!strcmp(t, "sigmoid")) *l = lk_activation(LK_ACT_SIGMOID, 0);
    else if (!strcmp(t, "tanh")) *l = lk_activation(LK_ACT_TANH, 0);
    else if (!strcmp(t, "leaky_relu")) {
        float slope = 0;
        LK_CHECK(get_float(b, w, w->node, "slope", 0.01, 0, 1e3, &slope));
        *l = lk_activation(LK_ACT_LEAKY_RELU, slope);
    } else { /* gelu */
        const char *ap = "none";
        LK_CHECK(get_str(b, w, w->node, "approximate", "none", &ap));
        if (strcmp(ap, "none") && strcmp(ap, "erf") && strcmp(ap, "tanh"))
            return berr(b, w, LK_ERR_ARG, "\"approximate\" is none (erf) or tanh, not '%s'", ap);
        *l = lk_activation(strcmp(ap, "tanh") ? LK_ACT_GELU : LK_ACT_GELU_TANH, 0);
    }
    return LK_OK;
}

/* The layer a type makes from the input shape `in` (residual, repeat, block: NULL, added
 * in place). */
static lk_status make_layer(bctx *b, const at *w, const char *t, const lk_shape *in, lk_layer **l)
{
    const cJSON *n = w->node;
    const int last = in->ndim ? in->d[in->ndim - 1] : 1, big = 1 << 24;
    int out = 0, k = 0, stride = 0, pad = 0, bias = 0;
    *l = NULL;
    if (!strcmp(t, "linear")) {
        LK_CHECK(get_int(b, w, n, "out", NAN, 1, big, &out));
        LK_CHECK(get_bool(b, w, n, "bias", 1, &bias));
        *l = lk_linear(last, out, bias);
    } else if (!strcmp(t, "conv2d") || !strcmp(t, "maxpool2d") || !strcmp(t, "avgpool2d")) {
        if (in->ndim != 3) return berr(b, w, LK_ERR_SHAPE, "%s takes images [C, H, W]", t);
        const int conv = t[0] == 'c';
        if (conv) LK_CHECK(get_int(b, w, n, "out", NAN, 1, big, &out));
        LK_CHECK(get_int(b, w, n, "kernel", NAN, 1, 4096, &k));
        LK_CHECK(get_int(b, w, n, "stride", conv ? 1 : k, 1, 4096, &stride));
        LK_CHECK(get_int(b, w, n, "padding", 0, 0, 4096, &pad));
        if (conv) {
            LK_CHECK(get_bool(b, w, n, "bias", 1, &bias));
            *l = lk_conv2d(in->d[0], out, k, stride, pad, bias);
        } else
            *l = t[0] == 'm' ? lk_maxpool2d(k, stride, pad) : lk_avgpool2d(k, stride, pad);
    } else if (!strcmp(t, "flatten")) {
        *l = lk_flatten();
    } else if (!strcmp(t, "reshape")) {
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(n, "shape");
        const int nd = cJSON_GetArraySize(shape);
        if (!cJSON_IsArray(shape) || nd < 1 || nd > LK_MAX_DIMS)
            return berr(b, w, LK_ERR_ARG, "\"shape\" is a list of 1 to %d sizes (one may be -1)", LK_MAX_DIMS);
        int d[LK_MAX_DIMS], infer = -1;
        size_t known = 1;
        for (int i = 0; i < nd; i++) {
            char key[16];
            snprintf(key, sizeof key, "%d", i);
            cJSON *wrap = cJSON_CreateObject(); /* the element as a field, so it reads like one */
            if (!wrap || !cJSON_AddItemReferenceToObject(wrap, key, cJSON_GetArrayItem(shape, i))) {
                cJSON_Delete(wrap);
                return LK_ERR(LK_ERR_NOMEM, "spec: out of memory");
            }
            lk_status st = get_int(b, w, wrap, key, NAN, -1, big, &d[i]);
            cJSON_Delete(wrap);
            LK_CHECK(st);
            if (d[i] == -1 && infer >= 0) return berr(b, w, LK_ERR_ARG, "\"shape\" has more than one -1");
            if (d[i] == -1) infer = i;
            else if (d[i] == 0) return berr(b, w, LK_ERR_ARG, "\"shape\" has a size 0");
            else if ((known *= (size_t)d[i]) > lk_shape_numel(in))
                return berr(b, w, LK_ERR_SHAPE, "\"shape\" holds more values than the input's %zu", lk_shape_numel(in));
        }
        size_t numel = lk_shape_numel(in);
        if (infer >= 0) {
            if (numel % known || numel / known > (size_t)big)
                return berr(b, w, LK_ERR_SHAPE, "%zu values do not divide into the shape", numel);
            d[infer] = (int)(numel / known);
        }
        *l = lk_reshape(nd, d);
    } else if (!strcmp(t, "relu") || !strcmp(t, "sigmoid") || !strcmp(t, "tanh") || !strcmp(t, "gelu") ||
               !strcmp(t, "leaky_relu")) {
        LK_CHECK(act_layer(b, w, t, l));
    } else if (!strcmp(t, "dropout")) {
        float p = 0;
        LK_CHECK(get_float(b, w, n, "p", 0.5, 0, 1, &p));
        *l = lk_dropout(p);
    } else if (!strcmp(t, "batchnorm") || !strcmp(t, "layernorm")) {
        float eps = 0, mom = 0;
        LK_CHECK(get_float(b, w, n, "eps", 1e-5, 0, 1, &eps));
        if (t[0] == 'b') LK_CHECK(get_float(b, w, n, "momentum", 0.1, 0, 1, &mom));
        *l = t[0] == 'b' ? lk_batchnorm(in->d[0], eps, mom) : lk_layernorm(last, eps);
    } else if (!strcmp(t, "embedding")) {
        int vocab = 0, dim = 0, pos = 0;
        LK_CHECK(get_int(b, w, n, "vocab", b->nclasses, 1, big, &vocab));
        LK_CHECK(get_int(b, w, n, "dim", NAN, 1, big, &dim));
        LK_CHECK(get_bool(b, w, n, "positions", 0, &pos));
        /* a large vocabulary padded to a multiple of 128 by default (GPT-2's 50257 to 50304:
         * the head's products read aligned rows; see docs/model-spec.md) */
        LK_CHECK(get_int(b, w, n, "pad_to", vocab >= 4096 ? 128 : 0, 0, 4096, &pad));
        *l = lk_embedding(vocab, dim, pos, pad);
        if (*l) b->last_emb = *l;
    } else if (!strcmp(t, "attention")) {
        int heads = 0;
        LK_CHECK(get_int(b, w, n, "heads", NAN, 1, 4096, &heads));
        if (last % heads) return berr(b, w, LK_ERR_ARG, "its dim %d is not a multiple of heads %d", last, heads);
        *l = lk_attention(last, heads);
    } else if (!strcmp(t, "lstm") || !strcmp(t, "gru")) {
        int hidden = 0, layers = 0, seq = 0;
        if (in->ndim != 2) return berr(b, w, LK_ERR_SHAPE, "%s takes sequences [T, features] (reshape first)", t);
        LK_CHECK(get_int(b, w, n, "hidden", NAN, 1, big, &hidden));
        LK_CHECK(get_int(b, w, n, "layers", 1, 1, 4, &layers));
        LK_CHECK(get_bool(b, w, n, "sequences", 0, &seq));
        *l = lk_rnn(t[0] == 'l' ? LK_RNN_LSTM : LK_RNN_GRU, last, hidden, layers, seq);
    } else if (!strcmp(t, "reparam")) {
        if (in->ndim != 1 || last % 2) return berr(b, w, LK_ERR_SHAPE, "reparam takes [2 * z] (mu, then log variance)");
        *l = lk_reparam(last / 2);
    } else if (!strcmp(t, "tied_head")) {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(n, "to");
        lk_layer *emb = b->last_emb;
        if (to) {
            emb = NULL;
            for (int i = 0; cJSON_IsString(to) && i < b->nids; i++)
                if (!strcmp(b->ids[i].id, to->valuestring)) emb = b->ids[i].l;
            if (!emb) return berr(b, w, LK_ERR_ARG, "\"to\" names no earlier layer's \"id\"");
        }
        if (!emb) return berr(b, w, LK_ERR_ARG, "a tied head needs an embedding before it");
        *l = lk_tied_head(emb);
    }
    return LK_OK;
}

static lk_status build_layer(bctx *b, const cJSON *node, const char *path)
{
    const at w = {path, node};
    if (++b->visits > MAX_VISITS) return berr(b, &w, LK_ERR_ARG, "more than %d layers expanded", MAX_VISITS);
    const char *t = cJSON_GetObjectItemCaseSensitive(node, "type")->valuestring; /* (checked by parse) */
    char sub[256];
    if (!strcmp(t, "residual")) {
        lk_layer *begin = lk_residual_begin();
        LK_CHECK(add(b, &w, begin));
        snprintf(sub, sizeof sub, "%.200s.layers", path);
        LK_CHECK(build_list(b, cJSON_GetObjectItemCaseSensitive(node, "layers"), sub));
        return add(b, &w, lk_residual_end(begin));
    }
    if (!strcmp(t, "repeat")) {
        int times = 0;
        LK_CHECK(get_int(b, &w, node, "times", NAN, 0, MAX_VISITS, &times));
        snprintf(sub, sizeof sub, "%.200s.layers", path);
        for (int i = 0; i < times; i++) { /* (each time counts: a repeat of nothing is no free loop) */
            if (++b->visits > MAX_VISITS) return berr(b, &w, LK_ERR_ARG, "more than %d layers expanded", MAX_VISITS);
            LK_CHECK(build_list(b, cJSON_GetObjectItemCaseSensitive(node, "layers"), sub));
        }
        return LK_OK;
    }
    if (!strcmp(t, "block")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(node, "name")->valuestring;
        snprintf(sub, sizeof sub, "blocks.%.200s", name);
        return build_list(b, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b->s->root, "blocks"), name),
                          sub);
    }
    const lk_shape in = lk_model_out_shape(b->m);
    lk_layer *l;
    LK_CHECK(make_layer(b, &w, t, &in, &l));
    LK_CHECK(add(b, &w, l));
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(node, "id");
    if (id) {
        if (b->nids == MAX_IDS) return berr(b, &w, LK_ERR_ARG, "more than %d ids", MAX_IDS);
        b->ids[b->nids].id = id->valuestring;
        b->ids[b->nids++].l = l;
    }
    return apply_init(b, &w, l);
}

static lk_status build_list(bctx *b, const cJSON *list, const char *path)
{
    char sub[256];
    int i = 0;
    if (b->depth >= 2 * SPEC_MAX_DEPTH)
        return LK_ERR(LK_ERR_ARG, "%s: %s: layers nested deeper than %d (through blocks)", b->s->origin, path,
                      2 * SPEC_MAX_DEPTH);
    b->depth++;
    lk_status st = LK_OK;
    for (const cJSON *l = list->child; l && st == LK_OK; l = l->next, i++) {
        snprintf(sub, sizeof sub, "%.200s[%d]", path, i);
        st = build_layer(b, l, sub);
    }
    b->depth--;
    return st;
}

/* The data's samples against the spec's "input", where it has one. */
static lk_status check_input(const bctx *b)
{
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(b->s->root, "input");
    if (!input) return LK_OK;
    const at w = {"input", input};
    lk_shape want = {cJSON_GetArraySize(input), {1, 1, 1, 1}};
    for (int i = 0; i < want.ndim; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        cJSON *wrap = cJSON_CreateObject();
        if (!wrap || !cJSON_AddItemReferenceToObject(wrap, key, cJSON_GetArrayItem(input, i))) {
            cJSON_Delete(wrap);
            return LK_ERR(LK_ERR_NOMEM, "spec: out of memory");
        }
        lk_status st = get_int(b, &w, wrap, key, NAN, 1, 1 << 24, &want.d[i]);
        cJSON_Delete(wrap);
        LK_CHECK(st);
    }
    if (lk_shape_equal(&want, &b->m->in_shape)) return LK_OK;
    char ws[64], hs[64];
    lk_shape_str(&want, ws, sizeof ws);
    lk_shape_str(&b->m->in_shape, hs, sizeof hs);
    if (b->s->e.tokens)
        return LK_ERR(LK_ERR_SHAPE, "model %s needs token windows of --ctx %d (text:FILE or tokens:PATTERN data); "
                                    "the data's samples are %s", b->s->e.name, want.d[0], hs);
    return LK_ERR(LK_ERR_SHAPE, "model %s needs samples %s; the data's are %s", b->s->e.name, ws, hs);
}

lk_status lk_spec_build(const lk_spec *s, lk_model *m, int nclasses, const lk_arch *arch)
{
    if (m->nlayers) return LK_ERR(LK_ERR_STATE, "%s: the model must be empty", s->origin);
    bctx b = {.s = s, .m = m, .nclasses = nclasses, .input = (double)lk_shape_numel(&m->in_shape)};
    LK_CHECK(lk_spec_arch(s, arch, &b.a));
    LK_CHECK(check_input(&b));
    if (s->e.target != LK_TARGET_REAL) return build_list(&b, cJSON_GetObjectItemCaseSensitive(s->root, "layers"), "layers");
    /* a GAN: the generator from z, then the discriminator, which also reads the real samples */
    const lk_shape data = m->in_shape;
    int z = (int)cJSON_GetObjectItemCaseSensitive(s->root, "latent")->valuedouble;
    m->in_shape = lk_shape_make(1, &z);
    LK_CHECK(build_list(&b, cJSON_GetObjectItemCaseSensitive(s->root, "generator"), "generator"));
    lk_shape g = lk_model_out_shape(m);
    if (lk_shape_numel(&g) != lk_shape_numel(&data)) {
        char gs[64], ds[64];
        return LK_ERR(LK_ERR_SHAPE, "%s: the generator makes %s, the data's samples are %s (as many values needed)",
                      s->origin, lk_shape_str(&g, gs, sizeof gs), lk_shape_str(&data, ds, sizeof ds));
    }
    const int first = m->nlayers;
    LK_CHECK(build_list(&b, cJSON_GetObjectItemCaseSensitive(s->root, "discriminator"), "discriminator"));
    if (m->nlayers == first) return LK_ERR(LK_ERR_ARG, "%s: the discriminator has no layers", s->origin);
    if (m->layers[first]->vt->alias)
        return LK_ERR(LK_ERR_ARG, "%s: the discriminator's first layer reads the real samples, so it cannot be a "
                                  "%s (reshape at the generator's end instead)", s->origin, m->layers[first]->vt->type);
    m->layers[first]->input_f32 = 1; /* the trainer writes the real images there (float32) */
    lk_shape d = lk_model_out_shape(m);
    if (lk_shape_numel(&d) != 1) {
        char ds[64];
        return LK_ERR(LK_ERR_SHAPE, "%s: the discriminator's output is %s; it is one logit per sample", s->origin,
                      lk_shape_str(&d, ds, sizeof ds));
    }
    return LK_OK;
}

int lk_spec_gan_split(const lk_model *m)
{
    for (int i = 1; i < m->nlayers; i++)
        if (m->layers[i]->input_f32) return i;
    return 0;
}

size_t lk_spec_gan_d_params(const lk_model *m)
{
    size_t end = 0;
    for (int i = lk_spec_gan_split(m); i > 0 && i < m->nlayers; i++)
        end = LK_MAX(end, m->layers[i]->param_offset + m->layers[i]->param_count);
    return end;
}
