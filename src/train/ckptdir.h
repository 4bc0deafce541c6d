/* ckptdir.h - a checkpoint directory: model.safetensors, optim.safetensors and
 * config.json (what is needed to rebuild the model and resume the run). */
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
    long step;          /* optimizer steps taken */
    uint64_t seed;
    int batch, world;
    lk_optim_config optim;
} lk_run_config;

/* Creates dir if needed; writes weights, optimizer state (when o != NULL) and
 * config.json, each atomically. With gather (a sharded optimizer state, see
 * lk_checkpoint_save_optim_gather) every rank calls it and only the writer writes. */
lk_status lk_ckptdir_save(const char *dir, const lk_run_config *c, const lk_model *m,
                          const lk_optim *o, int writer, lk_ckpt_gather_fn gather, void *user);
/* Reads and validates config.json. */
lk_status lk_ckptdir_load_config(const char *dir, lk_run_config *c);
/* dir/name into buf. */
const char *lk_ckptdir_path(const char *dir, const char *name, char *buf, size_t size);

#endif
