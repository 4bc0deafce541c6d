/* spec.c - parsing and checking model specs (spec.h, docs/model-spec.md); spec_build.c builds them.
 *
 * Parsing checks the structure: known top-level keys, every layer an object of a known
 * type with only its own fields, block references that exist and do not recurse. Building
 * walks the layers in order, evaluating each size (a number, or an expression over the
 * spec's vars, `classes`, `input`, shape(i) and sqrt) against the shape the layer gets, so
 * every error can name the layer, its text and its input. */
#include "spec.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec_impl.h"

/* ---- layer types: the fields each takes (besides type, id, init, comment) ---- */
typedef struct {
    const char *type;
    const char *fields; /* space-separated */
} type_row;
static const type_row types[] = {
    {"linear", "out bias"},
    {"conv2d", "out kernel stride padding bias"},
    {"maxpool2d", "kernel stride padding"},
    {"avgpool2d", "kernel stride padding"},
    {"flatten", ""},
    {"reshape", "shape"},
    {"relu", ""},
    {"sigmoid", ""},
    {"tanh", ""},
    {"gelu", "approximate"},
    {"leaky_relu", "slope"},
    {"dropout", "p"},
    {"batchnorm", "eps momentum"},
    {"layernorm", "eps"},
    {"embedding", "vocab dim positions pad_to"},
    {"attention", "heads"},
    {"lstm", "hidden layers sequences"},
    {"gru", "hidden layers sequences"},
    {"residual", "layers"},
    {"repeat", "times layers"},
    {"block", "name"},
    {"reparam", ""},
    {"tied_head", "to"},
};
#define NTYPES ((int)(sizeof types / sizeof *types))

static const char *const arch_vars[] = {"layers", "heads", "dim", "ctx"};

static int word_in(const char *word, const char *list)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        while (*p == ' ') p++;
        const char *q = p;
        while (*q && *q != ' ') q++;
        if ((size_t)(q - p) == n && !strncmp(p, word, n)) return 1;
        p = q;
    }
    return 0;
}

static const type_row *find_type(const char *t)
{
    for (int i = 0; i < NTYPES; i++)
        if (!strcmp(types[i].type, t)) return &types[i];
    return NULL;
}

const char *lk_spec_node_text(const cJSON *n, char *buf, size_t size)
{
    char *t = cJSON_PrintUnformatted(n);
    snprintf(buf, size, "%s", t ? t : "?");
    if (t && strlen(t) >= size && size > 4) memcpy(buf + size - 4, "...", 4);
    free(t);
    return buf;
}

/* ---- parse-time checks ---- */
typedef struct {
    const lk_spec *s;
    const char *stack[SPEC_MAX_DEPTH]; /* blocks being expanded */
    int depth;
    int nest; /* lists within lists */
    unsigned char *state; /* per block: 0 not seen, 1 being checked, 2 checked */
} pcheck;

static lk_status perr(const pcheck *c, const char *path, const cJSON *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static lk_status perr(const pcheck *c, const char *path, const cJSON *n, const char *fmt, ...)
{
    char msg[512], txt[160] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n) lk_spec_node_text(n, txt, sizeof txt);
    return LK_ERR(LK_ERR_ARG, "%s: %s%s%s%s: %s", c->s->origin, path, n ? " (" : "", txt, n ? ")" : "", msg);
}

static lk_status check_list(pcheck *c, const cJSON *list, const char *path);

static lk_status check_layer(pcheck *c, const cJSON *l, const char *path)
{
    if (!cJSON_IsObject(l)) return perr(c, path, l, "a layer is an object with a \"type\"");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(l, "type");
    if (!cJSON_IsString(t)) return perr(c, path, l, "missing field \"type\"");
    const type_row *row = find_type(t->valuestring);
    if (!row) {
        char known[512] = "";
        for (int i = 0; i < NTYPES; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", types[i].type);
        return perr(c, path, l, "unknown layer type '%s' (known: %s)", t->valuestring, known);
    }
    for (const cJSON *f = l->child; f; f = f->next)
        if (strcmp(f->string, "type") && strcmp(f->string, "id") && strcmp(f->string, "init") &&
            strcmp(f->string, "comment") && !word_in(f->string, row->fields))
            return perr(c, path, l, "a %s layer has no field \"%s\" (its fields: %s%s)", row->type, f->string,
                        row->fields[0] ? row->fields : "none", "; and id, init, comment");
    const cJSON *init = cJSON_GetObjectItemCaseSensitive(l, "init");
    if (init) {
        if (!cJSON_IsObject(init)) return perr(c, path, l, "\"init\" is an object {\"std\": ..., \"tensors\": {...}}");
        for (const cJSON *f = init->child; f; f = f->next)
            if (strcmp(f->string, "std") && strcmp(f->string, "tensors"))
                return perr(c, path, l, "\"init\" has no field \"%s\" (std, tensors)", f->string);
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(l, "id");
    if (id && !cJSON_IsString(id)) return perr(c, path, l, "\"id\" is a string");
    char sub[256];
    if (!strcmp(row->type, "residual") || !strcmp(row->type, "repeat")) {
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(l, "layers");
        if (!ls) return perr(c, path, l, "missing field \"layers\"");
        if (!strcmp(row->type, "repeat") && !cJSON_GetObjectItemCaseSensitive(l, "times"))
            return perr(c, path, l, "missing field \"times\"");
        snprintf(sub, sizeof sub, "%.200s.layers", path);
        return check_list(c, ls, sub);
    }
    if (!strcmp(row->type, "block")) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(l, "name");
        if (!cJSON_IsString(name)) return perr(c, path, l, "missing field \"name\" (a key of \"blocks\")");
        const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(c->s->root, "blocks"), *body = NULL;
        int k = 0;
        for (body = blocks ? blocks->child : NULL; body && strcmp(body->string, name->valuestring); body = body->next) k++;
        if (!body) return perr(c, path, l, "no block named '%s' in \"blocks\"", name->valuestring);
        if (c->state[k] == 2) return LK_OK; /* checked already */
        if (c->state[k] == 1)
            return perr(c, path, l, "block '%s' contains itself (a cycle through %s)", name->valuestring,
                        c->stack[0]);
        if (c->depth == SPEC_MAX_DEPTH) return perr(c, path, l, "blocks nested deeper than %d", SPEC_MAX_DEPTH);
        c->stack[c->depth++] = name->valuestring;
        c->state[k] = 1;
        snprintf(sub, sizeof sub, "blocks.%.200s", name->valuestring);
        lk_status st = check_list(c, body, sub);
        c->state[k] = 2;
        c->depth--;
        return st;
    }
    return LK_OK;
}

static lk_status check_list(pcheck *c, const cJSON *list, const char *path)
{
    if (!cJSON_IsArray(list)) return perr(c, path, list, "a list of layers ([...])");
    if (c->nest == SPEC_MAX_DEPTH) return perr(c, path, NULL, "layers nested deeper than %d", SPEC_MAX_DEPTH);
    c->nest++;
    int i = 0;
    char sub[256];
    lk_status st = LK_OK;
    for (const cJSON *l = list->child; l && st == LK_OK; l = l->next, i++) {
        snprintf(sub, sizeof sub, "%.200s[%d]", path, i);
        st = check_layer(c, l, sub);
    }
    c->nest--;
    return st;
}

static lk_status parse_enum(const lk_spec *s, const cJSON *root, const char *key, const char *const *names,
                            int count, int dflt, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = dflt;
    if (!v) return LK_OK;
    for (int i = 0; i < count && cJSON_IsString(v); i++)
        if (!strcmp(v->valuestring, names[i])) return *out = i, LK_OK;
    char known[160] = "";
    for (int i = 0; i < count; i++) snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", names[i]);
    return LK_ERR(LK_ERR_ARG, "%s: \"%s\" is one of %s", s->origin, key, known);
}

static lk_status check_vars(const lk_spec *s)
{
    const cJSON *vars = cJSON_GetObjectItemCaseSensitive(s->root, "vars");
    if (vars && !cJSON_IsObject(vars)) return LK_ERR(LK_ERR_ARG, "%s: \"vars\" is an object of names and values", s->origin);
    for (const cJSON *v = vars ? vars->child : NULL; v; v = v->next) {
        if (!strcmp(v->string, "classes") || !strcmp(v->string, "input") || !strcmp(v->string, "sqrt") ||
            !strcmp(v->string, "shape"))
            return LK_ERR(LK_ERR_ARG, "%s: var '%s' is a reserved name", s->origin, v->string);
        int ok = v->string[0] && (isalpha((unsigned char)v->string[0]) || v->string[0] == '_');
        for (const char *p = v->string; *p; p++) ok &= isalnum((unsigned char)*p) || *p == '_';
        if (!ok) return LK_ERR(LK_ERR_ARG, "%s: var '%s' is not a name (letters, digits, _)", s->origin, v->string);
        if (!strcmp(v->string, "gelu")) {
            if (!cJSON_IsString(v) || (strcmp(v->valuestring, "erf") && strcmp(v->valuestring, "tanh")))
                return LK_ERR(LK_ERR_ARG, "%s: var gelu is \"erf\" or \"tanh\"", s->origin);
            continue;
        }
        if (!cJSON_IsNumber(v) && !cJSON_IsString(v))
            return LK_ERR(LK_ERR_ARG, "%s: var '%s' is a number or a string", s->origin, v->string);
        for (int i = 0; i < 4; i++)
            if (!strcmp(v->string, arch_vars[i]) &&
                (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e6 || v->valuedouble != floor(v->valuedouble)))
                return LK_ERR(LK_ERR_ARG, "%s: var %s is a whole number from 1 to 1000000", s->origin, v->string);
    }
    const cJSON *fixed = cJSON_GetObjectItemCaseSensitive(s->root, "fixed");
    if (fixed && !cJSON_IsArray(fixed)) return LK_ERR(LK_ERR_ARG, "%s: \"fixed\" is a list of var names", s->origin);
    for (const cJSON *f = fixed ? fixed->child : NULL; f; f = f->next)
        if (!cJSON_IsString(f) || !cJSON_GetObjectItemCaseSensitive(vars, f->valuestring))
            return LK_ERR(LK_ERR_ARG, "%s: \"fixed\" names a var the spec has not", s->origin);
    return LK_OK;
}

static lk_status check_spec(lk_spec *s)
{
    cJSON *r = s->root;
    if (!cJSON_IsObject(r)) return LK_ERR(LK_ERR_ARG, "%s: a spec is a JSON object", s->origin);
    static const char *const keys[] = {"name", "base", "summary", "loss", "target", "loss_reduction", "decay", "init", "vars",
                                       "fixed", "input", "blocks", "layers", "latent", "generator",
                                       "discriminator", "comment"};
    for (const cJSON *f = r->child; f; f = f->next) {
        int ok = 0;
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) ok |= !strcmp(f->string, keys[i]);
        if (!ok) return LK_ERR(LK_ERR_ARG, "%s: unknown key \"%s\" (a spec has name, base, summary, loss, target, "
                                           "loss_reduction, decay, init, vars, fixed, input, blocks, layers; a GAN latent, "
                                           "generator and discriminator)", s->origin, f->string);
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(r, "name");
    if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 63)
        return LK_ERR(LK_ERR_ARG, "%s: missing field \"name\" (a string of 1 to 63 characters)", s->origin);
    const cJSON *summary = cJSON_GetObjectItemCaseSensitive(r, "summary");
    if (summary && !cJSON_IsString(summary)) return LK_ERR(LK_ERR_ARG, "%s: \"summary\" is a string", s->origin);
    s->e.name = name->valuestring;
    s->e.summary = summary ? summary->valuestring : "";
    static const char *const losses[] = {"cross_entropy", "mse", "bce_logits"};
    static const char *const targets[] = {"labels", "input", "real"};
    static const char *const reductions[] = {"mean", "sum"};
    static const char *const decays[] = {"all", "matrices"};
    int v;
    LK_CHECK(parse_enum(s, r, "loss", losses, 3, 0, &v));
    s->e.loss = (lk_loss_kind)v;
    const int gan = cJSON_GetObjectItemCaseSensitive(r, "generator") || cJSON_GetObjectItemCaseSensitive(r, "discriminator");
    LK_CHECK(parse_enum(s, r, "target", targets, 3, gan ? LK_TARGET_REAL : LK_TARGET_LABELS, &v));
    s->e.target = (lk_target)v;
    LK_CHECK(parse_enum(s, r, "loss_reduction", reductions, 2, 0, &s->e.loss_sum));
    LK_CHECK(parse_enum(s, r, "decay", decays, 2, 0, &s->e.decay_matrices));
    const cJSON *init = cJSON_GetObjectItemCaseSensitive(r, "init");
    s->e.init = LK_INIT_DEFAULT;
    if (init && (!cJSON_IsString(init) || lk_init_parse(init->valuestring, &s->e.init) != LK_OK))
        return LK_ERR(LK_ERR_ARG, "%s: \"init\" is a scheme of --init's (default, normal, uniform, xavier, "
                                  "xavier-normal, he, he-uniform)", s->origin);
    if (s->e.target == LK_TARGET_LABELS && s->e.loss != LK_LOSS_XENT)
        return LK_ERR(LK_ERR_ARG, "%s: target labels needs loss cross_entropy", s->origin);
    if (s->e.target != LK_TARGET_LABELS && s->e.loss == LK_LOSS_XENT)
        return LK_ERR(LK_ERR_ARG, "%s: loss cross_entropy needs target labels", s->origin);
    if (s->e.target == LK_TARGET_REAL && s->e.loss != LK_LOSS_BCE_LOGITS)
        return LK_ERR(LK_ERR_ARG, "%s: a GAN (target real) takes loss bce_logits", s->origin);
    LK_CHECK(check_vars(s));
    const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(r, "blocks");
    if (blocks && !cJSON_IsObject(blocks)) return LK_ERR(LK_ERR_ARG, "%s: \"blocks\" maps names to lists of layers", s->origin);
    unsigned char state[4096] = {0};
    if (cJSON_GetArraySize(blocks) > (int)sizeof state) return LK_ERR(LK_ERR_ARG, "%s: more than %d blocks", s->origin, (int)sizeof state);
    pcheck c = {.s = s, .state = state};
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(r, "layers");
    if (s->e.target == LK_TARGET_REAL) {
        if (layers) return LK_ERR(LK_ERR_ARG, "%s: a GAN has \"generator\" and \"discriminator\", not \"layers\"", s->origin);
        const cJSON *latent = cJSON_GetObjectItemCaseSensitive(r, "latent");
        if (!cJSON_IsNumber(latent) || latent->valuedouble < 1 || latent->valuedouble > 65536 ||
            latent->valuedouble != floor(latent->valuedouble))
            return LK_ERR(LK_ERR_ARG, "%s: missing field \"latent\" (the generator's input size, 1 to 65536)", s->origin);
        static const char *const nets[] = {"generator", "discriminator"};
        for (int i = 0; i < 2; i++) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, nets[i]);
            if (!n) return LK_ERR(LK_ERR_ARG, "%s: missing field \"%s\"", s->origin, nets[i]);
            if (cJSON_GetArraySize(n) < 1) return LK_ERR(LK_ERR_ARG, "%s: \"%s\" has no layers", s->origin, nets[i]);
            LK_CHECK(check_list(&c, n, nets[i]));
        }
    } else {
        if (!layers) return LK_ERR(LK_ERR_ARG, "%s: missing field \"layers\"", s->origin);
        if (cJSON_GetArraySize(layers) < 1) return LK_ERR(LK_ERR_ARG, "%s: \"layers\" is empty", s->origin);
        LK_CHECK(check_list(&c, layers, "layers"));
    }
    int k = 0;
    for (const cJSON *b = blocks ? blocks->child : NULL; b; b = b->next, k++) { /* also the unused ones */
        if (state[k]) continue;
        char path[128];
        snprintf(path, sizeof path, "blocks.%s", b->string);
        c.depth = 1, c.stack[0] = b->string, state[k] = 1;
        LK_CHECK(check_list(&c, b, path));
        state[k] = 2;
    }
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(r, "input");
    if (input && (!cJSON_IsArray(input) || cJSON_GetArraySize(input) < 1 || cJSON_GetArraySize(input) > LK_MAX_DIMS))
        return LK_ERR(LK_ERR_ARG, "%s: \"input\" is the sample shape the model needs: a list of 1 to %d sizes",
                      s->origin, LK_MAX_DIMS);
    const cJSON *first = layers ? layers->child : NULL;
    const cJSON *ft = first ? cJSON_GetObjectItemCaseSensitive(first, "type") : NULL;
    s->e.tokens = ft && cJSON_IsString(ft) && !strcmp(ft->valuestring, "embedding");
    return LK_OK;
}

/* "base": NAME - the built-in spec NAME with this one's keys over it ("vars" merged key by
 * key, the rest replaced). Returns the merged root (root itself is used up). */
static cJSON *resolve_base(cJSON *root, const char *origin, int depth, lk_status *st)
{
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(root, "base");
    if (!base || !cJSON_IsObject(root)) return root;
    const char *text = NULL;
    for (int i = 0; cJSON_IsString(base) && i < lk_zoo_count(); i++)
        if (!strcmp(lk_zoo_name(i), base->valuestring)) text = lk_zoo_text(i);
    if (!text || depth > 8) {
        *st = LK_ERR(LK_ERR_ARG, "%s: \"base\" names a built-in model (lockstep models lists them)%s", origin,
                     depth > 8 ? "; bases nest too deeply" : "");
        cJSON_Delete(root);
        return NULL;
    }
    cJSON *b = resolve_base(cJSON_Parse(text), origin, depth + 1, st);
    if (!b) {
        cJSON_Delete(root);
        if (*st == LK_OK) *st = LK_ERR(LK_ERR_NOMEM, "%s: out of memory", origin);
        return NULL;
    }
    while (root->child) {
        cJSON *item = cJSON_DetachItemViaPointer(root, root->child);
        cJSON *bv = cJSON_GetObjectItemCaseSensitive(b, "vars");
        if (!strcmp(item->string, "base")) {
            cJSON_Delete(item);
        } else if (!strcmp(item->string, "vars") && cJSON_IsObject(item) && cJSON_IsObject(bv)) {
            while (item->child) {
                cJSON *v = cJSON_DetachItemViaPointer(item, item->child);
                cJSON_DeleteItemFromObjectCaseSensitive(bv, v->string);
                cJSON_AddItemToObject(bv, v->string, v);
            }
            cJSON_Delete(item);
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(b, item->string);
            cJSON_AddItemToObject(b, item->string, item);
        }
    }
    cJSON_Delete(root);
    static const char *const front[] = {"summary", "name"}; /* (replaced ones went to the end) */
    for (int i = 0; i < 2; i++) {
        cJSON *item = cJSON_DetachItemFromObjectCaseSensitive(b, front[i]);
        if (item) cJSON_InsertItemInArray(b, 0, item);
    }
    return b;
}

lk_status lk_spec_parse(const char *text, const char *origin, lk_spec **out)
{
    *out = NULL;
    lk_spec *s = lk_calloc(1, sizeof *s);
    if (!s) return LK_ERR(LK_ERR_NOMEM, "spec: out of memory");
    snprintf(s->origin, sizeof s->origin, "%s", origin);
    s->root = cJSON_Parse(text);
    if (!s->root) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        for (const char *p = text; at && p < at && *p; p++) line += *p == '\n';
        char near[40] = "";
        if (at) snprintf(near, sizeof near, "%.30s", at);
        for (char *p = near; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        lk_spec_free(s);
        return LK_ERR(LK_ERR_FORMAT, "%s: not valid JSON (line %d, near '%s')", origin, line, near);
    }
    lk_status st = LK_OK;
    s->root = resolve_base(s->root, origin, 0, &st);
    if (st == LK_OK) st = check_spec(s);
    if (st == LK_OK && !(s->text = cJSON_Print(s->root))) st = LK_ERR(LK_ERR_NOMEM, "spec: out of memory");
    for (int i = 0; st == LK_OK && i < lk_zoo_count(); i++) /* the same as a built-in one? */
        if (!strcmp(lk_zoo_name(i), s->e.name)) {
            lk_status ignored = LK_OK;
            cJSON *b = resolve_base(cJSON_Parse(lk_zoo_text(i)), origin, 0, &ignored);
            char *bt = b ? cJSON_Print(b) : NULL;
            s->builtin = bt && !strcmp(bt, s->text);
            free(bt);
            cJSON_Delete(b);
        }
    if (st != LK_OK) {
        lk_spec_free(s);
        return st;
    }
    *out = s;
    return LK_OK;
}

lk_status lk_spec_load(const char *path, lk_spec **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return LK_ERR(LK_ERR_IO, "--model-file %s: cannot open it", path);
    enum { MAX = 4 << 20 };
    char *buf = lk_malloc(MAX + 1);
    if (!buf) {
        fclose(f);
        return LK_ERR(LK_ERR_NOMEM, "--model-file %s: out of memory", path);
    }
    size_t n = fread(buf, 1, MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    lk_status st = LK_OK;
    if (bad) st = LK_ERR(LK_ERR_IO, "--model-file %s: read error", path);
    else if (n > MAX) st = LK_ERR(LK_ERR_FORMAT, "--model-file %s: larger than 4 MB", path);
    else if (memchr(buf, 0, n)) st = LK_ERR(LK_ERR_FORMAT, "--model-file %s: not text (a zero byte)", path);
    if (st == LK_OK) {
        buf[n] = 0;
        st = lk_spec_parse(buf, path, out);
    }
    lk_free(buf);
    return st;
}

lk_status lk_spec_builtin(const char *name, lk_spec **out)
{
    *out = NULL;
    for (int i = 0; i < lk_zoo_count(); i++)
        if (!strcmp(lk_zoo_name(i), name)) {
            char origin[96];
            snprintf(origin, sizeof origin, "built-in model %s", name);
            return lk_spec_parse(lk_zoo_text(i), origin, out);
        }
    char known[512] = "";
    for (int i = 0; i < lk_zoo_count(); i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", lk_zoo_name(i));
    return LK_ERR(LK_ERR_ARG, "unknown --model '%s' (known: %s; or --model-file SPEC.json)", name, known);
}

lk_status lk_spec_open(const char *model, const char *file, lk_spec **out)
{
    return file && file[0] ? lk_spec_load(file, out) : lk_spec_builtin(model, out);
}

void lk_spec_free(lk_spec *s)
{
    if (!s) return;
    cJSON_Delete(s->root);
    free(s->text);
    lk_free(s);
}

const lk_zoo_entry *lk_spec_entry(const lk_spec *s) { return &s->e; }
const char *lk_spec_name(const lk_spec *s) { return s->e.name; }
const char *lk_spec_text(const lk_spec *s) { return s->text; }
int lk_spec_is_builtin(const lk_spec *s) { return s->builtin; }
const char *lk_gelu_name(lk_gelu g) { return g == LK_GELU_TANH ? "tanh" : "erf"; }

/* ---- sizes ---- */
static int spec_var_int(const lk_spec *s, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s->root, "vars"), name);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : 0;
}

static int is_fixed(const lk_spec *s, const char *name)
{
    const cJSON *fixed = cJSON_GetObjectItemCaseSensitive(s->root, "fixed");
    for (const cJSON *f = fixed ? fixed->child : NULL; f; f = f->next)
        if (cJSON_IsString(f) && !strcmp(f->valuestring, name)) return 1;
    return 0;
}

lk_status lk_spec_arch(const lk_spec *s, const lk_arch *given, lk_arch *out)
{
    const lk_arch none = {0, 0, 0, 0, LK_GELU_DEFAULT};
    if (!given) given = &none;
    const int g[4] = {given->layers, given->heads, given->dim, given->ctx};
    int v[4];
    static const char *const flag[4] = {"--layers", "--heads", "--dim", "--ctx"};
    for (int i = 0; i < 4; i++) {
        v[i] = spec_var_int(s, arch_vars[i]);
        if (g[i] <= 0 || g[i] == v[i]) continue;
        if (!v[i]) {
            if (i == 3) { v[i] = g[i]; continue; } /* a window for token data, whatever the model */
            return LK_ERR(LK_ERR_ARG, "%s %d: model %s has no size '%s' (its spec's vars)", flag[i], g[i], s->e.name,
                          arch_vars[i]);
        }
        if (!is_fixed(s, arch_vars[i])) v[i] = g[i];
        else if (i < 3)
            return LK_ERR(LK_ERR_ARG, "%s %d: model %s has %d (its shape is fixed%s)", flag[i], g[i], s->e.name, v[i],
                          strncmp(s->e.name, "gpt2", 4) ? "" : ", GPT-2's; use --model gpt for other sizes");
        else if (g[i] > v[i])
            return LK_ERR(LK_ERR_ARG, "%s %d: model %s's context is at most %d", flag[i], g[i], s->e.name, v[i]);
        else v[i] = g[i];
    }
    if (!v[3]) v[3] = 128; /* token windows for models without a context (an mlp on text) */
    *out = (lk_arch){v[0], v[1], v[2], v[3], LK_GELU_DEFAULT};
    const cJSON *gv = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s->root, "vars"), "gelu");
    if (given->gelu != LK_GELU_DEFAULT) {
        if (!gv) return LK_ERR(LK_ERR_ARG, "--gelu: model %s has no GELU to choose (no var gelu)", s->e.name);
        out->gelu = given->gelu;
    } else if (gv)
        out->gelu = strcmp(gv->valuestring, "tanh") ? LK_GELU_ERF : LK_GELU_TANH;
    return LK_OK;
}
