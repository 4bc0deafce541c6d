/* convert.c - llm.c's GPT-2 checkpoints in and out (convert.h). */
#include "convert.h"

#include <stdio.h>
#include <string.h>

#include "../core/bf16.h"
#include "../core/checkpoint.h"
#include "ckptdir.h"
#include "replica.h"

#define LLMC_MAGIC 20240326
#define LLMC_VERSION 3      /* float32 parameters */
#define LLMC_VERSION_BF16 5 /* bf16 parameters (llm.c's bf16 runs write these; read, widened) */
#define LLMC_HEADER 256

/* llm.c's tensors, in its file's order: the element counts from the header */
enum { WTE, WPE, LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB, LNFW, LNFB, NT };

typedef struct {
    int maxT, V, L, NH, C, Vp;
    size_t n[NT], off[NT], total; /* floats */
} llmc_shape;

static void llmc_sizes(llmc_shape *s)
{
    const size_t Vp = (size_t)s->Vp, T = (size_t)s->maxT, L = (size_t)s->L, C = (size_t)s->C;
    const size_t n[NT] = {Vp * C, T * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
                          L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C};
    s->total = 0;
    for (int i = 0; i < NT; i++) s->n[i] = n[i], s->off[i] = s->total, s->total += n[i];
}

/* The GPT-2 tensors of a lockstep gpt/gpt2 model, by role: the embedding's two, then per
 * block ln_1, attention's four, ln_2, the MLP's two linears, and ln_f; NULL where the
 * model does not have that shape. */
typedef struct {
    const lk_param *wte, *wpe, *lnf[2];
    const lk_param **blk; /* 12 a block: ln1 w b, c_attn w b, c_proj w b, ln2 w b, fc w b, proj w b */
} gpt_params;

static const lk_param *named(const lk_layer *l, const char *name)
{
    for (int j = 0; j < l->nparams; j++)
        if (!strcmp(l->params[j].name, name)) return &l->params[j];
    return NULL;
}

static lk_status gpt_roles(const lk_model *m, int L, gpt_params *g)
{
    memset(g, 0, sizeof *g);
    g->blk = lk_calloc((size_t)LK_MAX(L, 1) * 12, sizeof *g->blk);
    if (!g->blk) return LK_ERR(LK_ERR_NOMEM, "convert: out of memory");
    int norms = 0, attns = 0, lins = 0, ok = 1;
    for (int i = 0; i < m->nlayers && ok; i++) {
        const lk_layer *l = m->layers[i];
        const char *t = l->vt->type;
        if (!strcmp(t, "embedding") && !g->wte) {
            g->wte = named(l, "weight"), g->wpe = named(l, "pos");
        } else if (!strcmp(t, "layernorm")) {
            const lk_param *w = named(l, "weight"), *b = named(l, "bias");
            if (norms < 2 * L) g->blk[(norms / 2) * 12 + (norms % 2 ? 6 : 0)] = w,
                               g->blk[(norms / 2) * 12 + (norms % 2 ? 7 : 1)] = b;
            else if (norms == 2 * L) g->lnf[0] = w, g->lnf[1] = b;
            norms++;
        } else if (!strcmp(t, "attention")) {
            if (attns < L) {
                const char *nm[4] = {"c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias"};
                for (int k = 0; k < 4; k++) g->blk[attns * 12 + 2 + k] = named(l, nm[k]);
            }
            attns++;
        } else if (!strcmp(t, "linear")) {
            if (lins < 2 * L) g->blk[(lins / 2) * 12 + (lins % 2 ? 10 : 8)] = named(l, "weight"),
                              g->blk[(lins / 2) * 12 + (lins % 2 ? 11 : 9)] = named(l, "bias");
            lins++;
        }
    }
    ok = ok && g->wte && g->wpe && g->lnf[0] && g->lnf[1] && norms == 2 * L + 1 && attns == L && lins == 2 * L;
    for (int k = 0; ok && k < L * 12; k++) ok = g->blk[k] != NULL;
    if (!ok) {
        lk_free(g->blk);
        g->blk = NULL;
        return LK_ERR(LK_ERR_ARG, "convert: the model is not GPT-2-shaped (%d layer norms, %d attentions, %d linears "
                                  "for %d blocks)", norms, attns, lins, L);
    }
    return LK_OK;
}

/* For each of llm.c's tensors (and block), the lockstep tensor it is: dst/src pairs of
 * floats, copied one way or the other. */
static lk_status each_tensor(const gpt_params *g, const llmc_shape *s, float *flat, float *llmc, int to_llmc)
{
    const size_t C = (size_t)s->C;
#define MOVE(p, at, count)                                                                        \
    do {                                                                                          \
        if (lk_param_storage(p) != (count) && (p) != g->wte) /* (wte: lockstep pads it too) */  \
            return LK_ERR(LK_ERR_ARG, "convert: tensor %s has %zu values, llm.c's %zu", (p)->name, \
                          lk_param_storage(p), (size_t)(count));                                 \
        if (to_llmc) memcpy(llmc + (at), flat + (p)->offset, (count) * sizeof(float));           \
        else memcpy(flat + (p)->offset, llmc + (at), (count) * sizeof(float));                   \
    } while (0)
    if (lk_param_storage(g->wte) < (size_t)s->V * C)
        return LK_ERR(LK_ERR_ARG, "convert: the embedding has %zu values, fewer than llm.c's %zu", lk_param_storage(g->wte),
                      (size_t)s->V * C);
    MOVE(g->wte, s->off[WTE], (size_t)s->V * C); /* (rows V..Vp of llm.c's are padding: zeros) */
    MOVE(g->wpe, s->off[WPE], (size_t)s->maxT * C);
    static const int role[12] = {LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB};
    for (int b = 0; b < s->L; b++)
        for (int k = 0; k < 12; k++) {
            const size_t per = s->n[role[k]] / (size_t)s->L;
            MOVE(g->blk[b * 12 + k], s->off[role[k]] + (size_t)b * per, per);
        }
    MOVE(g->lnf[0], s->off[LNFW], C);
    MOVE(g->lnf[1], s->off[LNFB], C);
#undef MOVE
    return LK_OK;
}

/* the lockstep model for llm.c's sizes: a GPT-2 preset where they are one's, else gpt */
static const char *model_for(const llmc_shape *s)
{
    static const struct { const char *name; int L, NH, C; } p[] = {
        {"gpt2", 12, 12, 768}, {"gpt2-medium", 24, 16, 1024}, {"gpt2-large", 36, 20, 1280}, {"gpt2-xl", 48, 25, 1600}};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        if (s->L == p[i].L && s->NH == p[i].NH && s->C == p[i].C && s->maxT <= 1024) return p[i].name;
    return "gpt";
}

/* The built-in gpt model (its spec into *spec, for the caller to free after the replica). */
static lk_status open_gpt(lk_replica *r, const char *model, lk_spec **spec, const lk_arch *arch, int V)
{
    const int T = arch->ctx;
    LK_CHECK(lk_spec_builtin(model, spec));
    return lk_replica_open(r, &(lk_replica_spec){"cpu", 1, *spec, *arch, lk_shape_make(1, &T), V, T, 1,
                                                   LK_INIT_DEFAULT, 0, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL, LK_F32, 0, 0});
}

static lk_status from_llmc_layout(const llmc_shape *sp, float *llmc, const char *src, const char *kind,
                                  const char *dir, FILE *log);

lk_status lk_convert_from_llmc(const char *bin, const char *dir, FILE *log)
{
    void *raw = NULL;
    size_t bytes = 0;
    LK_CHECK(lk_read_file(bin, &raw, &bytes));
    const int32_t *h = raw;
    llmc_shape s = {0};
    lk_status st = LK_OK;
    if (bytes < LLMC_HEADER * 4 || h[0] != LLMC_MAGIC)
        st = LK_ERR(LK_ERR_FORMAT, "%s: not an llm.c GPT-2 checkpoint (magic %d, expected %d)", bin,
                    bytes >= 4 ? h[0] : -1, LLMC_MAGIC);
    else if (h[1] != LLMC_VERSION && h[1] != LLMC_VERSION_BF16)
        st = LK_ERR(LK_ERR_FORMAT, "%s: version %d; llm.c's checkpoints are version %d (float32) or %d (bf16)", bin,
                    h[1], LLMC_VERSION, LLMC_VERSION_BF16);
    const size_t width = st == LK_OK && h[1] == LLMC_VERSION_BF16 ? 2 : 4; /* bytes a parameter */
    if (st == LK_OK) {
        s.maxT = h[2], s.V = h[3], s.L = h[4], s.NH = h[5], s.C = h[6], s.Vp = h[7];
        if (s.maxT < 1 || s.maxT > 1 << 16 || s.V < 1 || s.V > 1 << 20 || s.L < 1 || s.L > 1024 || s.NH < 1 ||
            s.C < 1 || s.C > 1 << 16 || s.C % s.NH || s.Vp < s.V || s.Vp > s.V + (1 << 16))
            st = LK_ERR(LK_ERR_FORMAT, "%s: sizes maxT %d, V %d, L %d, NH %d, C %d, Vp %d are not a GPT-2's", bin,
                        s.maxT, s.V, s.L, s.NH, s.C, s.Vp);
    }
    if (st == LK_OK) {
        llmc_sizes(&s);
        if (bytes != LLMC_HEADER * 4 + s.total * width)
            st = LK_ERR(LK_ERR_FORMAT, "%s: %zu bytes, but its sizes make %zu%s", bin, bytes,
                        LLMC_HEADER * 4 + s.total * width, bytes < LLMC_HEADER * 4 + s.total * width ? " (truncated)" : "");
    }
    float *wide = NULL; /* a bf16 file's parameters in float32 (exactly: bf16 is float32's top half) */
    if (st == LK_OK && width == 2) {
        wide = lk_malloc(s.total * sizeof *wide);
        if (!wide) st = LK_ERR(LK_ERR_NOMEM, "convert: cannot hold %zu parameters", s.total);
        const uint16_t *p16 = (const uint16_t *)((char *)raw + LLMC_HEADER * 4);
        for (size_t i = 0; st == LK_OK && i < s.total; i++) wide[i] = lk_bf16_to_f32(p16[i]);
    }
    if (st == LK_OK)
        st = from_llmc_layout(&s, wide ? wide : (float *)((char *)raw + LLMC_HEADER * 4), bin,
                              width == 2 ? "llm.c, bf16" : "llm.c", dir, log);
    lk_free(wide);
    lk_free(raw);
    return st;
}

/* llm.c's tensors (s: their sizes) into a lockstep checkpoint directory */
static lk_status from_llmc_layout(const llmc_shape *sp, float *llmc, const char *src, const char *kind,
                                  const char *dir, FILE *log)
{
    const llmc_shape s = *sp;
    lk_status st = LK_OK;
    lk_replica r = {0};
    const char *model = model_for(&s);
    const lk_arch arch = {s.L, s.NH, s.C, s.maxT, LK_GELU_TANH}; /* (GPT-2's GELU is the tanh one) */
    gpt_params g = {0};
    lk_spec *spec = NULL;
    st = open_gpt(&r, model, &spec, &arch, s.V);
    if (st == LK_OK) st = gpt_roles(r.model, s.L, &g);
    if (st == LK_OK) st = each_tensor(&g, &s, r.model->params, llmc, 0);
    if (st == LK_OK) {
        lk_run_config rc;
        memset(&rc, 0, sizeof rc);
        snprintf(rc.model, sizeof rc.model, "%s", model);
        rc.arch = arch;
        snprintf(rc.data, sizeof rc.data, "%s checkpoint %.400s", kind, src);
        rc.in_shape = lk_shape_make(1, &s.maxT);
        rc.nclasses = s.V;
        rc.batch = rc.world = rc.accum = 1;
        rc.optim = lk_optim_defaults(LK_OPT_ADAMW);
        rc.optim.decay = LK_DECAY_MATRICES;
        rc.spec = spec;
        st = lk_ckptdir_save(dir, &rc, r.model, NULL, 1, NULL, NULL);
    }
    if (st == LK_OK && log)
        fprintf(log, "convert: %s (%s: %d layers, %d heads, %d wide, context %d, vocabulary %d) -> %s (--model %s)\n",
                src, kind, s.L, s.NH, s.C, s.maxT, s.V, dir, model);
    lk_free(g.blk);
    lk_replica_free(&r);
    lk_spec_free(spec);
    return st;
}

lk_status lk_convert_to_llmc(const char *dir_in, const char *bin, FILE *log)
{
    char dir[600], path[700];
    lk_run_config rc;
    LK_CHECK(lk_ckptdir_resolve(dir_in, dir, sizeof dir));
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    lk_spec *spec = NULL;
    LK_CHECK(lk_ckptdir_open_spec(dir, &rc, &spec));
    const int gpt = !strncmp(rc.model, "gpt", 3) && lk_spec_is_builtin(spec);
    lk_spec_free(spec);
    if (!gpt)
        return LK_ERR(LK_ERR_ARG, "convert: %s holds a %s; llm.c's format is GPT-2's (the built-in gpt, gpt2*)", dir,
                      rc.model);
    lk_replica r = {0};
    lk_arch arch = rc.arch;
    arch.ctx = rc.in_shape.d[0];
    lk_status st = open_gpt(&r, rc.model, &spec, &arch, rc.nclasses);
    if (st == LK_OK) st = lk_checkpoint_load_weights(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path), r.model);
    const lk_model *m = r.model;
    gpt_params g = {0};
    llmc_shape s = {0};
    if (st == LK_OK && r.model->layers[0]->params[0].shape.ndim == 2) {
        /* (the sizes from the built model: its arch defaults resolved) */
        const lk_param *wte = &m->layers[0]->params[0];
        s.V = rc.nclasses, s.C = wte->shape.d[1], s.maxT = arch.ctx;
        s.L = 0;
        for (int i = 0; i < m->nlayers; i++) s.L += !strcmp(m->layers[i]->vt->type, "attention");
        s.NH = 0;
        s.Vp = (s.V + 127) / 128 * 128; /* llm.c pads to a multiple of 128 */
    }
    if (st == LK_OK) {
        lk_arch used;
        st = lk_spec_arch(spec, &arch, &used); /* the heads and the GELU as built */
        s.NH = used.heads;
        if (st == LK_OK && used.gelu != LK_GELU_TANH)
            st = LK_ERR(LK_ERR_ARG, "convert: %s uses the exact (erf) GELU, llm.c the tanh one: its activations "
                                    "would differ (train with --gelu tanh)", dir);
    }
    if (st == LK_OK) st = gpt_roles(m, s.L, &g);
    float *out = NULL;
    if (st == LK_OK) {
        llmc_sizes(&s);
        out = lk_calloc(LLMC_HEADER + s.total, sizeof(float));
        if (!out) st = LK_ERR(LK_ERR_NOMEM, "convert: cannot hold %zu parameters", s.total);
    }
    if (st == LK_OK) st = each_tensor(&g, &s, m->params, out + LLMC_HEADER, 1);
    if (st == LK_OK) {
        int32_t *h = (int32_t *)out;
        h[0] = LLMC_MAGIC, h[1] = LLMC_VERSION, h[2] = s.maxT, h[3] = s.V, h[4] = s.L, h[5] = s.NH, h[6] = s.C,
        h[7] = s.Vp;
        st = lk_write_file_atomic(bin, out, (LLMC_HEADER + s.total) * sizeof(float));
    }
    if (st == LK_OK && log)
        fprintf(log, "convert: %s (--model %s) -> %s (llm.c: %d layers, %d heads, %d wide, context %d, vocabulary %d "
                     "padded to %d)\n", dir, rc.model, bin, s.L, s.NH, s.C, s.maxT, s.V, s.Vp);
    lk_free(out);
    lk_free(g.blk);
    lk_replica_free(&r);
    lk_spec_free(spec);
    return st;
}

/* ---- Hugging Face's GPT-2 (transformers' GPT2LMHeadModel saved as model.safetensors) ---- */

/* the tensor NAME (or transformer.NAME), float32 of n values, else NULL with *st set */
static const float *hf_tensor(const lk_safetensors *f, const char *path, const char *name, size_t n, lk_status *st)
{
    char full[160];
    const lk_st_entry *e = lk_safetensors_find(f, name);
    if (!e) {
        snprintf(full, sizeof full, "transformer.%s", name);
        e = lk_safetensors_find(f, full);
    }
    if (!e) {
        *st = LK_ERR(LK_ERR_FORMAT, "%s: no tensor %s: not a Hugging Face GPT-2", path, name);
        return NULL;
    }
    if (strcmp(e->dtype, "F32") || e->bytes != n * sizeof(float)) {
        *st = LK_ERR(LK_ERR_FORMAT, "%s: tensor %s is %s of %zu bytes, expected F32 of %zu", path, e->name, e->dtype,
                     e->bytes, n * sizeof(float));
        return NULL;
    }
    return e->data;
}

/* n rows x m columns of src into dst transposed (Conv1D keeps in x out; Linear out x in) */
static void transpose(float *dst, const float *src, size_t rows, size_t cols)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

lk_status lk_convert_from_hf(const char *path, int heads, const char *dir, FILE *log)
{
    lk_safetensors *f = NULL;
    LK_CHECK(lk_safetensors_read(path, &f));
    lk_status st = LK_OK;
    llmc_shape s = {0};
    const lk_st_entry *wte = lk_safetensors_find(f, "wte.weight"), *wpe = lk_safetensors_find(f, "wpe.weight");
    if (!wte) wte = lk_safetensors_find(f, "transformer.wte.weight");
    if (!wpe) wpe = lk_safetensors_find(f, "transformer.wpe.weight");
    if (!wte || !wpe || wte->ndim != 2 || wpe->ndim != 2 || wte->shape[1] != wpe->shape[1])
        st = LK_ERR(LK_ERR_FORMAT, "%s: no wte.weight [vocabulary, width] and wpe.weight [context, width]: not a "
                                   "Hugging Face GPT-2", path);
    if (st == LK_OK) {
        s.V = (int)wte->shape[0], s.C = (int)wte->shape[1], s.maxT = (int)wpe->shape[0];
        s.Vp = (s.V + 127) / 128 * 128;
        for (int l = 0; l < 1024; l++) { /* layers: h.0 .. h.(L-1) */
            char nm[96];
            snprintf(nm, sizeof nm, "h.%d.ln_1.weight", l);
            char full[128];
            snprintf(full, sizeof full, "transformer.%s", nm);
            if (!lk_safetensors_find(f, nm) && !lk_safetensors_find(f, full)) break;
            s.L = l + 1;
        }
        /* the heads: given, else GPT-2's for its sizes (the weights do not say) */
        static const int sizes[][3] = {{12, 768, 12}, {24, 1024, 16}, {36, 1280, 20}, {48, 1600, 25}};
        s.NH = heads;
        for (size_t i = 0; !s.NH && i < sizeof sizes / sizeof *sizes; i++)
            if (s.L == sizes[i][0] && s.C == sizes[i][1]) s.NH = sizes[i][2];
        if (!s.L) st = LK_ERR(LK_ERR_FORMAT, "%s: no h.0.ln_1.weight: not a Hugging Face GPT-2", path);
        else if (!s.NH)
            st = LK_ERR(LK_ERR_ARG, "%s: %d layers of width %d are no GPT-2 size: give its heads (--heads N, its "
                                    "config.json's n_head)", path, s.L, s.C);
        else if (s.C % s.NH)
            st = LK_ERR(LK_ERR_ARG, "%s: width %d does not split into %d heads", path, s.C, s.NH);
    }
    float *buf = NULL;
    if (st == LK_OK) {
        llmc_sizes(&s);
        buf = lk_calloc(s.total, sizeof(float));
        if (!buf) st = LK_ERR(LK_ERR_NOMEM, "convert: cannot hold %zu parameters", s.total);
    }
    const size_t C = (size_t)s.C;
    if (st == LK_OK) {
        memcpy(buf + s.off[WTE], wte->data, (size_t)s.V * C * sizeof(float));
        memcpy(buf + s.off[WPE], wpe->data, (size_t)s.maxT * C * sizeof(float));
    }
    /* per layer: the HF name, llm.c's tensor, and whether a Conv1D weight (rows x cols in the file) */
    static const struct { const char *name; int role, conv_rows, conv_cols; } per[] = {
        {"ln_1.weight", LN1W, 0, 0},        {"ln_1.bias", LN1B, 0, 0},         {"attn.c_attn.weight", QKVW, 1, 3},
        {"attn.c_attn.bias", QKVB, 0, 0},   {"attn.c_proj.weight", ATTPROJW, 1, 1}, {"attn.c_proj.bias", ATTPROJB, 0, 0},
        {"ln_2.weight", LN2W, 0, 0},        {"ln_2.bias", LN2B, 0, 0},         {"mlp.c_fc.weight", FCW, 1, 4},
        {"mlp.c_fc.bias", FCB, 0, 0},       {"mlp.c_proj.weight", FCPROJW, 4, 1}, {"mlp.c_proj.bias", FCPROJB, 0, 0},
    };
    for (int l = 0; st == LK_OK && l < s.L; l++)
        for (size_t k = 0; st == LK_OK && k < sizeof per / sizeof *per; k++) {
            char nm[96];
            snprintf(nm, sizeof nm, "h.%d.%s", l, per[k].name);
            const size_t n = s.n[per[k].role] / (size_t)s.L;
            const float *src = hf_tensor(f, path, nm, n, &st);
            float *dst = buf + s.off[per[k].role] + (size_t)l * n;
            if (!src) break;
            if (per[k].conv_rows) transpose(dst, src, C * (size_t)per[k].conv_rows, C * (size_t)per[k].conv_cols);
            else memcpy(dst, src, n * sizeof(float));
        }
    const float *lnw = st == LK_OK ? hf_tensor(f, path, "ln_f.weight", C, &st) : NULL;
    const float *lnb = st == LK_OK ? hf_tensor(f, path, "ln_f.bias", C, &st) : NULL;
    if (st == LK_OK) {
        memcpy(buf + s.off[LNFW], lnw, C * sizeof(float));
        memcpy(buf + s.off[LNFB], lnb, C * sizeof(float));
        st = from_llmc_layout(&s, buf, path, "Hugging Face", dir, log);
    }
    lk_free(buf);
    lk_safetensors_free(f);
    return st;
}
