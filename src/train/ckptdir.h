/* ckptdir.h - a checkpoint directory: model.safetensors, optim.safetensors, model.json
 * (the model's spec) and config.json (what else is needed to rebuild the model and resume
 * the run); and a directory of step checkpoints (--save-every): ROOT/step-NNNNNNNN/, one
 * each, and ROOT/latest, a symbolic link to the newest complete one, replaced atomically
 * once it is written. */
#ifndef LK_CKPTDIR_H
#define LK_CKPTDIR_H

#include "../core/model.h"
#include "../core/checkpoint.h"
#include "../core/optim.h"
#include "../models/zoo.h"

typedef struct {
    char model[64];
    lk_arch arch;       /* the model's sizes (0: its defaults) */
    char data[512];
    lk_shape in_shape;
    int nclasses;
    char class_names[16][32];
    int epoch;          /* epochs completed */
    long epoch_step;    /* optimizer steps taken in the epoch after those (the sampler's place) */
    long step;          /* optimizer steps taken */
    uint64_t seed;
    int batch, world, accum;
    long train_samples; /* the training set's size (--train-limit) */
    lk_optim_config optim;
    const lk_spec *spec; /* saving: the model's spec, written as model.json (NULL: none); never
                            set by lk_ckptdir_load_config (lk_ckptdir_open_spec reads it) */
} lk_run_config;

/* Creates dir if needed; writes weights, optimizer state (when o != NULL) and
 * config.json, each atomically. With gather (a sharded optimizer state, see
 * lk_checkpoint_save_optim_gather) every rank calls it and only the writer writes. */
lk_status lk_ckptdir_save(const char *dir, const lk_run_config *c, const lk_model *m,
                          const lk_optim *o, int writer, lk_ckpt_gather_fn gather, void *user);
/* For the tests of a failure while saving: called, when set, after the weights and the
 * optimizer state are written and before config.json is (LK_INJECT_FAULT=savekill). */
extern void (*lk_ckptdir_before_config)(void);
/* Reads and validates config.json. */
lk_status lk_ckptdir_load_config(const char *dir, lk_run_config *c);
/* The model's spec: dir/model.json, or (a checkpoint written before specs were stored) the
 * built-in model c->model names. The spec's name must be c->model. */
lk_status lk_ckptdir_open_spec(const char *dir, const lk_run_config *c, lk_spec **out);
/* mkdir -p dir. */
lk_status lk_make_dirs(const char *dir);
/* dir/name into buf. */
const char *lk_ckptdir_path(const char *dir, const char *name, char *buf, size_t size);

/* ROOT/step-NNNNNNNN into buf. */
const char *lk_ckptdir_step(const char *root, long step, char *buf, size_t size);
/* The checkpoint a directory names: ROOT/latest's target where it has one, else dir. */
lk_status lk_ckptdir_resolve(const char *dir, char *buf, size_t size);
/* Points ROOT/latest at step's (complete) directory - a new link renamed over the old one,
 * so a reader sees the old or the new - then removes all but the keep newest step
 * directories (keep 0: none removed). */
lk_status lk_ckptdir_publish(const char *root, long step, int keep);

#endif
