/* checkpoint.h - safetensors files and training checkpoints.
 *
 * A checkpoint DIR holds:
 *   model.safetensors  weights with PyTorch's nn.Sequential names ("1.weight") and
 *                      shapes; __metadata__ carries "format":"pt" and a CRC-32 of
 *                      the tensor data ("lockstep_crc32")
 *   optim.safetensors  optimizer state per parameter and state buffer
 *                      ("1.weight.state0", "1.weight.state1"); __metadata__ carries
 *                      "optimizer" (its name) and "step" (steps taken, decimal)
 *   config.json        model name, input shape, classes, data spec, hyperparameters,
 *                      and the epoch/step reached
 * Every file is written to a temporary name, fsync'ed and renamed into place. */
#ifndef LK_CHECKPOINT_H
#define LK_CHECKPOINT_H

#include "common.h"
#include "model.h"
#include "optim.h"

#define LK_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[LK_ST_MAX_DIMS];
    const float *data; /* host, row-major float32 */
} lk_st_tensor;

/* Writes an F32 safetensors file atomically. meta_keys/meta_vals: extra
 * __metadata__ string pairs (may be NULL/0). */
lk_status lk_safetensors_write(const char *path, const lk_st_tensor *tensors, int n,
                               const char *const *meta_keys, const char *const *meta_vals,
                               int nmeta);

/* The same, streamed: begin writes a placeholder header for these tensors (their data
 * pointers unused; tensors and metadata stay alive until end), put appends the next
 * bytes of their data in order, end fills in the CRC, syncs and renames into place.
 * Any failure removes the temporary file; abort gives up on purpose. */
typedef struct lk_st_writer lk_st_writer;
lk_status lk_safetensors_begin(lk_st_writer **w, const char *path, const lk_st_tensor *tensors, int n,
                               const char *const *meta_keys, const char *const *meta_vals, int nmeta);
lk_status lk_safetensors_put(lk_st_writer *w, const void *data, size_t bytes);
lk_status lk_safetensors_end(lk_st_writer *w);
void lk_safetensors_abort(lk_st_writer *w);

typedef struct lk_safetensors lk_safetensors;
typedef struct {
    char name[128];
    char dtype[8];   /* "F32", ... as in the file */
    int ndim;
    int64_t shape[LK_ST_MAX_DIMS];
    const void *data; /* points into the loaded file (the data area is 8-byte aligned) */
    size_t bytes;
} lk_st_entry;

/* Reads and validates a whole file: header JSON, offsets inside the data area,
 * byte counts matching dtype x shape, no overlaps, and the CRC-32 when present.
 * Errors name the file and the offending tensor. */
lk_status lk_safetensors_read(const char *path, lk_safetensors **out);
int lk_safetensors_count(const lk_safetensors *st);
const lk_st_entry *lk_safetensors_entry(const lk_safetensors *st, int i);
const lk_st_entry *lk_safetensors_find(const lk_safetensors *st, const char *name);
/* A __metadata__ value or NULL. */
const char *lk_safetensors_meta(const lk_safetensors *st, const char *key);
void lk_safetensors_free(lk_safetensors *st);

/* Writes data to path via path.tmp.<pid> + fsync + rename + directory fsync; on
 * failure the temporary file is removed and path is left as it was. */
lk_status lk_write_file_atomic(const char *path, const void *data, size_t bytes);
/* Reads a whole file (lk_malloc'ed, free with lk_free; NUL-terminated past the end). */
lk_status lk_read_file(const char *path, void **data, size_t *bytes);

/* ---- model-level checkpoints (checkpoint.c) ---- */

/* Writes every parameter of m as an F32 tensor named and shaped as in PyTorch;
 * meta_keys/meta_vals are extra __metadata__ pairs (may be NULL/0). */
lk_status lk_checkpoint_save_weights(const char *path, const lk_model *m,
                                     const char *const *meta_keys,
                                     const char *const *meta_vals, int nmeta);
/* Loads weights into m. Every parameter must be present as F32 with exactly its
 * shape and the file may hold no other tensor; m is untouched on any error. */
lk_status lk_checkpoint_load_weights(const char *path, lk_model *m);
/* The same but for layer `skip`'s tensors ("<skip>.*"), which keep their values and may be
 * in the file with any shape or not at all (a new head, --new-head); skip < 0: none. */
lk_status lk_checkpoint_load_weights_but(const char *path, lk_model *m, int skip);
/* Writes the optimizer's state buffers ("<param>.state<i>") and its step. */
lk_status lk_checkpoint_save_optim(const char *path, const lk_model *m, const lk_optim *o);
/* Optimizer state sharded over ranks (each holds [o->lo, o->hi), lk_optim_shard): every rank
 * calls this, in the same order, and gather(user, state, offset, n, host) fills host[0, n)
 * with state buffer `state` of parameters [offset, offset + n), assembled from every rank's
 * slice (a collective). One tensor is gathered at a time, so no rank holds the whole state;
 * the rank given a path writes the file (the same file lk_checkpoint_save_optim writes
 * from a whole state), the others pass NULL. */
typedef lk_status (*lk_ckpt_gather_fn)(void *user, int state, size_t offset, size_t n, float *host);
lk_status lk_checkpoint_save_optim_gather(const char *path, const lk_model *m, const lk_optim *o,
                                          lk_ckpt_gather_fn gather, void *user);
/* Restores state and step; the file's optimizer must match o->cfg.kind and every
 * tensor must fit. A sharded optimizer takes the part of each tensor in its slice, from
 * a file of any run: any number of ranks, any sharding. o is untouched on any error. */
lk_status lk_checkpoint_load_optim(const char *path, const lk_model *m, lk_optim *o);

#endif
