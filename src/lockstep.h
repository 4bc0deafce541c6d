/* lockstep.h - lockstep's public C API: installed as <lockstep/lockstep.h> by `cmake
 * --install`, found with find_package(lockstep) (target lockstep::lockstep, or
 * lockstep::lockstep_static) or pkg-config (lockstep). docs/api.md describes it with
 * examples; examples/ has two programs built against the installed package.
 *
 * What it covers, and the functions that are the API (the headers below declare more:
 * those are lockstep's internals, which may change between versions):
 *
 *   errors    lk_status, lk_error_message                               core/common.h
 *   devices   lk_device_open, lk_device_close                           core/device.h
 *             lk_dev_alloc, lk_dev_free, lk_copy_to_device, lk_copy_to_host,
 *             lk_read_scalar                                              core/ops.h
 *   models    from a spec: lk_spec_parse, lk_spec_load, lk_spec_builtin, lk_spec_build,
 *             lk_spec_entry, lk_spec_text, lk_spec_free                  models/spec.h
 *             from C: lk_model_create, lk_model_add with the layers of core/layers.h
 *             (lk_linear, lk_conv2d, ...), then lk_model_build, lk_model_init;
 *             lk_model_input, lk_model_forward, lk_loss, lk_model_backward,
 *             lk_model_zero_grad, lk_model_destroy                       core/model.h
 *   optimizers lk_optim_defaults, lk_optim_create, lk_optim_step, lk_optim_destroy
 *                                                                         core/optim.h
 *   data      lk_data_open, lk_dataset_gather, lk_dataset_free; lk_sampler_* (a rank's
 *             share of each global batch)                                 data/dataset.h
 *   ranks     lk_comm_open ("auto": MPI under mpirun, else one process), lk_comm_allreduce,
 *             lk_comm_abort, lk_comm_close                                comm/comm.h
 *   training  lk_train_defaults, lk_train (the data-parallel trainer the CLI runs),
 *             lk_eval_checkpoint                                          train/trainer.h
 *             lk_predict (classes of images), lk_sample (text, images)
 *                                                           train/predict.h, train/sample.h
 *   checkpoints lk_ckptdir_save, lk_ckptdir_load_config, lk_ckptdir_open_spec
 *             (directories `lockstep eval/sample/--resume` read);
 *             lk_checkpoint_save_weights, lk_checkpoint_load_weights (safetensors)
 *                                                           train/ckptdir.h, core/checkpoint.h
 *
 * Conventions: every call returns an lk_status (LK_OK, or a code with a message from
 * lk_error_message() naming what was wrong); nothing exits or prints; objects are freed
 * by their own _free/_destroy/_close. Threads: one model, optimizer or communicator is
 * used by one thread at a time. */
#ifndef LOCKSTEP_H
#define LOCKSTEP_H

#include "core/common.h"
#include "core/device.h"
#include "core/tensor.h"
#include "core/ops.h"
#include "core/layers.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/checkpoint.h"
#include "models/spec.h"
#include "models/zoo.h"
#include "data/dataset.h"
#include "comm/comm.h"
#include "train/trainer.h"
#include "train/ckptdir.h"
#include "train/predict.h"
#include "train/sample.h"

#define LOCKSTEP_VERSION LK_VERSION

#endif
