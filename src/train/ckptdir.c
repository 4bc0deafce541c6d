/* ckptdir.c - checkpoint directories. config.json is written last, so a directory
 * whose config.json names step N holds weights at least that new. */
#include "ckptdir.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/checkpoint.h"

const char *lk_ckptdir_path(const char *dir, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

lk_status lk_make_dirs(const char *dir)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return LK_ERR(LK_ERR_IO, "cannot create directory %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return LK_ERR(LK_ERR_IO, "cannot create directory %s: %s", tmp, strerror(errno));
    return LK_OK;
}

static cJSON *optim_json(const lk_optim_config *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", lk_optim_name(o->kind));
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddNumberToObject(j, "momentum", o->momentum);
    cJSON_AddNumberToObject(j, "beta1", o->beta1);
    cJSON_AddNumberToObject(j, "beta2", o->beta2);
    cJSON_AddNumberToObject(j, "eps", o->eps);
    cJSON_AddNumberToObject(j, "alpha", o->alpha);
    cJSON_AddNumberToObject(j, "weight_decay", o->weight_decay);
    cJSON_AddNumberToObject(j, "l1", o->l1);
    cJSON_AddNumberToObject(j, "clip_norm", o->clip_norm);
    cJSON_AddStringToObject(j, "schedule", lk_schedule_name(o->schedule));
    cJSON_AddNumberToObject(j, "warmup", (double)o->warmup);
    cJSON_AddNumberToObject(j, "total_steps", (double)o->total_steps);
    cJSON_AddNumberToObject(j, "step_size", (double)o->step_size);
    cJSON_AddNumberToObject(j, "gamma", o->gamma);
    cJSON_AddStringToObject(j, "decay", lk_decay_name(o->decay));
    return j;
}

void (*lk_ckptdir_before_config)(void);

lk_status lk_ckptdir_save(const char *dir, const lk_run_config *c, const lk_model *m,
                          const lk_optim *o, int writer, lk_ckpt_gather_fn gather, void *user)
{
    char path[600];
    if (writer) {
        LK_CHECK(lk_make_dirs(dir));
        char step[32];
        snprintf(step, sizeof step, "%ld", c->step);
        const char *keys[] = {"model", "step"}, *vals[] = {c->model, step};
        LK_CHECK(lk_checkpoint_save_weights(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path),
                                            m, keys, vals, 2));
    }
    if (o)
        LK_CHECK(lk_checkpoint_save_optim_gather(
            writer ? lk_ckptdir_path(dir, "optim.safetensors", path, sizeof path) : NULL, m, o, gather,
            user));
    if (!writer) return LK_OK;
    lk_ckptdir_path(dir, "model.json", path, sizeof path);
    if (c->spec) LK_CHECK(lk_write_file_atomic(path, lk_spec_text(c->spec), strlen(lk_spec_text(c->spec))));
    else if (unlink(path) && errno != ENOENT) /* (an earlier save's would describe another model) */
        return LK_ERR(LK_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    if (lk_ckptdir_before_config) lk_ckptdir_before_config();

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "lockstep-checkpoint");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "model", c->model);
    cJSON *arch = cJSON_AddObjectToObject(j, "arch");
    cJSON_AddNumberToObject(arch, "layers", c->arch.layers);
    cJSON_AddNumberToObject(arch, "heads", c->arch.heads);
    cJSON_AddNumberToObject(arch, "dim", c->arch.dim);
    cJSON_AddNumberToObject(arch, "ctx", c->arch.ctx);
    if (c->arch.gelu != LK_GELU_DEFAULT) cJSON_AddStringToObject(arch, "gelu", lk_gelu_name(c->arch.gelu));
    cJSON_AddStringToObject(j, "data", c->data);
    cJSON_AddItemToObject(j, "input_shape", cJSON_CreateIntArray(c->in_shape.d, c->in_shape.ndim));
    cJSON_AddNumberToObject(j, "classes", c->nclasses);
    cJSON *names = cJSON_AddArrayToObject(j, "class_names");
    for (int i = 0; i < c->nclasses && i < 16; i++)
        cJSON_AddItemToArray(names, cJSON_CreateString(c->class_names[i]));
    cJSON_AddNumberToObject(j, "epoch", c->epoch);
    cJSON_AddNumberToObject(j, "epoch_step", (double)c->epoch_step);
    cJSON_AddNumberToObject(j, "step", (double)c->step);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "batch", c->batch);
    cJSON_AddNumberToObject(j, "world", c->world);
    cJSON_AddNumberToObject(j, "accum", c->accum);
    cJSON_AddNumberToObject(j, "train_samples", (double)c->train_samples);
    cJSON_AddItemToObject(j, "optimizer", optim_json(&c->optim));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return LK_ERR(LK_ERR_NOMEM, "cannot render config.json");
    lk_status s = lk_write_file_atomic(lk_ckptdir_path(dir, "config.json", path, sizeof path), text,
                                       strlen(text));
    cJSON_free(text);
    return s;
}

static const cJSON *field(const cJSON *j, const char *key, int want_string, const char *path,
                          lk_status *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || (want_string ? !cJSON_IsString(v) : !cJSON_IsNumber(v))) {
        *err = LK_ERR(LK_ERR_FORMAT, "%s: field \"%s\" is missing or not a %s", path, key,
                      want_string ? "string" : "number");
        return NULL;
    }
    return v;
}

/* An optional whole number in [0, 2^53]: absent leaves *dst; anything else (a fraction, a
 * negative, a value past what a double holds exactly - a cast of one past LONG_MAX is
 * undefined) is an error naming the field. */
static lk_status opt_count(const cJSON *o, const char *key, const char *path, long *dst)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return LK_OK;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(long)d)
        return LK_ERR(LK_ERR_FORMAT, "%s: \"%s\" is not a count", path, key);
    *dst = (long)d;
    return LK_OK;
}

static lk_status parse_config(const cJSON *j, const char *path, lk_run_config *c)
{
    lk_status err = LK_OK;
    const cJSON *v;
    if (!cJSON_IsObject(j)) return LK_ERR(LK_ERR_FORMAT, "%s: not a JSON object", path);
    if (!(v = field(j, "format", 1, path, &err))) return err;
    if (strcmp(v->valuestring, "lockstep-checkpoint"))
        return LK_ERR(LK_ERR_FORMAT, "%s: not a lockstep checkpoint (format \"%s\")", path,
                      v->valuestring);
    if (!(v = field(j, "model", 1, path, &err))) return err;
    snprintf(c->model, sizeof c->model, "%s", v->valuestring);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(j, "arch"); /* absent before gpt */
    if (arch && !cJSON_IsObject(arch)) return LK_ERR(LK_ERR_FORMAT, "%s: \"arch\" is not an object", path);
    const char *const keys[4] = {"layers", "heads", "dim", "ctx"};
    int *dst[4] = {&c->arch.layers, &c->arch.heads, &c->arch.dim, &c->arch.ctx};
    for (int i = 0; i < 4 && arch; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(arch, keys[i]);
        if (!a) continue;
        if (!cJSON_IsNumber(a) || a->valueint < 0 || a->valueint > 1 << 20)
            return LK_ERR(LK_ERR_FORMAT, "%s: \"arch\".\"%s\" is not a size", path, keys[i]);
        *dst[i] = a->valueint;
    }
    const cJSON *gelu = arch ? cJSON_GetObjectItemCaseSensitive(arch, "gelu") : NULL;
    if (gelu) {
        if (!cJSON_IsString(gelu) || (strcmp(gelu->valuestring, "erf") && strcmp(gelu->valuestring, "tanh")))
            return LK_ERR(LK_ERR_FORMAT, "%s: \"arch\".\"gelu\" is not erf or tanh", path);
        c->arch.gelu = strcmp(gelu->valuestring, "tanh") ? LK_GELU_ERF : LK_GELU_TANH;
    }
    if (!(v = field(j, "data", 1, path, &err))) return err;
    snprintf(c->data, sizeof c->data, "%s", v->valuestring);
    if (!(v = field(j, "classes", 0, path, &err))) return err;
    c->nclasses = v->valueint;
    if (c->nclasses < 1 || c->nclasses > 1 << 20)
        return LK_ERR(LK_ERR_FORMAT, "%s: \"classes\" = %d is not valid", path, c->nclasses);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "input_shape");
    int nd = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : 0;
    if (nd < 1 || nd > 3) return LK_ERR(LK_ERR_FORMAT, "%s: \"input_shape\" must have 1-3 dims", path);
    c->in_shape.ndim = nd;
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valueint < 1)
            return LK_ERR(LK_ERR_FORMAT, "%s: \"input_shape\"[%d] is not a positive integer", path, i);
        c->in_shape.d[i] = d->valueint;
    }
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(j, "class_names");
    for (int i = 0; i < c->nclasses && i < 16; i++) {
        const cJSON *nm = cJSON_IsArray(names) ? cJSON_GetArrayItem(names, i) : NULL;
        if (cJSON_IsString(nm))
            snprintf(c->class_names[i], sizeof c->class_names[i], "%s", nm->valuestring);
        else
            snprintf(c->class_names[i], sizeof c->class_names[i], "%d", i);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "epoch")) && cJSON_IsNumber(v)) c->epoch = v->valueint;
    LK_CHECK(opt_count(j, "step", path, &c->step));
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "batch")) && cJSON_IsNumber(v)) c->batch = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "world")) && cJSON_IsNumber(v)) c->world = v->valueint;
    /* (absent before step checkpoints: the start of the epoch, one micro-batch, unknown) */
    c->accum = 1;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "accum")) && cJSON_IsNumber(v)) c->accum = v->valueint;
    LK_CHECK(opt_count(j, "epoch_step", path, &c->epoch_step));
    LK_CHECK(opt_count(j, "train_samples", path, &c->train_samples));
    if (c->epoch < 0 || c->epoch_step < 0 || c->step < 0 || c->accum < 1 || c->train_samples < 0 ||
        c->epoch_step > c->step)
        return LK_ERR(LK_ERR_FORMAT, "%s: epoch %d, epoch_step %ld, step %ld, accum %d, train_samples %ld: "
                                     "not a run's position", path, c->epoch, c->epoch_step, c->step, c->accum,
                      c->train_samples);
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "seed")) && cJSON_IsString(v))
        c->seed = strtoull(v->valuestring, NULL, 10);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "optimizer");
    if (cJSON_IsObject(o)) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
        if (cJSON_IsString(nm)) {
            lk_status s = lk_optim_parse(nm->valuestring, &c->optim.kind);
            if (s != LK_OK) return LK_ERR(LK_ERR_FORMAT, "%s: %s", path, lk_error_message());
        }
        c->optim = lk_optim_defaults(c->optim.kind);
#define GETF(key, dst)                                                  \
    if ((v = cJSON_GetObjectItemCaseSensitive(o, key)) && cJSON_IsNumber(v)) dst = v->valuedouble
        GETF("lr", c->optim.lr);
        GETF("momentum", c->optim.momentum);
        GETF("beta1", c->optim.beta1);
        GETF("beta2", c->optim.beta2);
        GETF("eps", c->optim.eps);
        GETF("alpha", c->optim.alpha);
        GETF("weight_decay", c->optim.weight_decay);
        GETF("l1", c->optim.l1);
        GETF("clip_norm", c->optim.clip_norm);
        GETF("gamma", c->optim.gamma);
#undef GETF
        LK_CHECK(opt_count(o, "warmup", path, &c->optim.warmup));
        LK_CHECK(opt_count(o, "total_steps", path, &c->optim.total_steps));
        LK_CHECK(opt_count(o, "step_size", path, &c->optim.step_size));
        const cJSON *dc = cJSON_GetObjectItemCaseSensitive(o, "decay"); /* absent: all, as before */
        lk_decay decay = LK_DECAY_ALL;
        if (dc && (!cJSON_IsString(dc) || lk_decay_parse(dc->valuestring, &decay) != LK_OK))
            return LK_ERR(LK_ERR_FORMAT, "%s: \"optimizer\".\"decay\" is not all or matrices", path);
        c->optim.decay = decay;
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "schedule");
        if (cJSON_IsString(sc) && lk_schedule_parse(sc->valuestring, &c->optim.schedule) != LK_OK)
            return LK_ERR(LK_ERR_FORMAT, "%s: %s", path, lk_error_message());
    }
    return LK_OK;
}

lk_status lk_ckptdir_load_config(const char *dir, lk_run_config *c)
{
    char path[600];
    void *text = NULL;
    size_t n = 0;
    memset(c, 0, sizeof *c);
    lk_ckptdir_path(dir, "config.json", path, sizeof path);
    LK_CHECK(lk_read_file(path, &text, &n));
    cJSON *j = cJSON_ParseWithLength(text, n);
    lk_free(text);
    if (!j) return LK_ERR(LK_ERR_FORMAT, "%s: not valid JSON", path);
    lk_status s = parse_config(j, path, c);
    cJSON_Delete(j);
    return s;
}

lk_status lk_ckptdir_open_spec(const char *dir, const lk_run_config *c, lk_spec **out)
{
    char path[600];
    lk_ckptdir_path(dir, "model.json", path, sizeof path);
    *out = NULL;
    if (access(path, F_OK)) return lk_spec_builtin(c->model, out);
    void *text = NULL;
    size_t n = 0;
    LK_CHECK(lk_read_file(path, &text, &n)); /* (NUL-terminated) */
    lk_status st = strlen(text) == n ? lk_spec_parse(text, path, out) : LK_ERR(LK_ERR_FORMAT, "%s: not text", path);
    lk_free(text);
    LK_CHECK(st);
    if (strcmp(lk_spec_name(*out), c->model)) {
        st = LK_ERR(LK_ERR_FORMAT, "%s: model '%s', but config.json says '%s'", path, lk_spec_name(*out), c->model);
        lk_spec_free(*out);
        *out = NULL;
    }
    return st;
}

const char *lk_ckptdir_step(const char *root, long step, char *buf, size_t size)
{
    snprintf(buf, size, "%s/step-%08ld", root, step);
    return buf;
}

lk_status lk_ckptdir_resolve(const char *dir, char *buf, size_t size)
{
    char link[600], target[256];
    lk_ckptdir_path(dir, "latest", link, sizeof link);
    const ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) {
        if (errno != ENOENT && errno != EINVAL)
            return LK_ERR(LK_ERR_IO, "%s: %s", link, strerror(errno));
        snprintf(buf, size, "%s", dir); /* a checkpoint itself */
        return LK_OK;
    }
    target[n] = 0;
    if (strchr(target, '/') || strncmp(target, "step-", 5))
        return LK_ERR(LK_ERR_FORMAT, "%s points at '%s', not a step directory beside it", link, target);
    lk_ckptdir_path(dir, target, buf, size);
    return LK_OK;
}

static int is_step_dir(const char *name, long *step)
{
    char *end = NULL;
    if (strncmp(name, "step-", 5) || !name[5]) return 0;
    *step = strtol(name + 5, &end, 10);
    return *end == 0 && *step >= 0;
}

static int cmp_long_desc(const void *a, const void *b)
{
    const long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

/* a step directory and the plain files in it */
static lk_status remove_step_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return LK_ERR(LK_ERR_IO, "cannot open %s to remove it: %s", dir, strerror(errno));
    struct dirent *e;
    const int fd = dirfd(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(fd, e->d_name, 0);
    closedir(d);
    if (rmdir(dir) != 0) return LK_ERR(LK_ERR_IO, "cannot remove %s: %s", dir, strerror(errno));
    return LK_OK;
}

lk_status lk_ckptdir_publish(const char *root, long step, int keep)
{
    char name[32], tmp[600], link[600];
    snprintf(name, sizeof name, "step-%08ld", step);
    snprintf(tmp, sizeof tmp, "%s/latest.tmp.%ld", root, (long)getpid());
    lk_ckptdir_path(root, "latest", link, sizeof link);
    unlink(tmp);
    if (symlink(name, tmp) != 0) return LK_ERR(LK_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    if (rename(tmp, link) != 0) {
        const int err = errno;
        unlink(tmp);
        return LK_ERR(LK_ERR_IO, "cannot replace %s: %s", link, strerror(err));
    }
    const int fd = open(root, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { /* the rename itself on disk */
        fsync(fd);
        close(fd);
    }
    if (keep <= 0) return LK_OK;
    DIR *d = opendir(root);
    if (!d) return LK_ERR(LK_ERR_IO, "cannot list %s: %s", root, strerror(errno));
    long steps[4096];
    int n = 0;
    struct dirent *e;
    long s;
    /* (step directories past this one - a timeline abandoned by resuming from an older
     * one - are left alone: they are overwritten as the run reaches them) */
    while ((e = readdir(d)) && n < (int)(sizeof steps / sizeof *steps))
        if (is_step_dir(e->d_name, &s) && s <= step) steps[n++] = s;
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_long_desc);
    for (int i = keep; i < n; i++) {
        char dir[600];
        LK_CHECK(remove_step_dir(lk_ckptdir_step(root, steps[i], dir, sizeof dir)));
    }
    return LK_OK;
}
