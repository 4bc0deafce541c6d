/* cli.h - what the files of the `lockstep` command share: the flags' ids, the
 * named-value flag helper, the job's communicator and the error exit. */
#ifndef LK_CLI_H
#define LK_CLI_H

#include "../comm/comm.h"
#include "../models/zoo.h" /* lk_arch */
#include "args.h"

enum {
    O_MODEL = 256, O_DATA, O_EPOCHS, O_STEPS, O_BATCH, O_OPTIM, O_LR, O_MOMENTUM, O_BETA1, O_BETA2,
    O_EPS, O_ALPHA, O_WD, O_L1, O_CLIP, O_SCHEDULE, O_WARMUP, O_STEP_SIZE, O_GAMMA, O_INIT,
    O_SEED, O_DEVICE, O_THREADS, O_SAVE, O_RESUME, O_METRICS, O_EVAL_EVERY, O_LOG_EVERY,
    O_TRAIN_LIMIT, O_VAL_LIMIT, O_PROGRESS, O_QUIET, O_HELP, O_CHECKPOINT, O_INPUT, O_TOP,
    O_LIMIT, O_COMM, O_ACCUM, O_BUCKET_MB, O_CHECK_EVERY, O_BIND,
    O_COMM_PROGRESS, O_SHM, O_COMM_TIMEOUT, O_GPU_COMM, O_LAYERS, O_HEADS, O_DIM, O_CTX, O_SYNC_BN,
    O_PROMPT, O_TOKENS, O_TEMPERATURE, O_TOP_K, O_COUNT, O_OUT, O_MIN_BYTES, O_MAX_BYTES, O_ITERS, O_SHARED_CORES,
    O_WARMUP_ITERS, O_BARRIER, O_CSV, O_RANKS, O_LINK_GBPS, O_LATENCY_US, O_COMM_CSV,
    O_SIZES, O_MIN_TIME, O_PEAK_TFLOPS, O_GELU, O_DECAY, O_ZERO, O_RECOMPUTE, O_PRECISION, O_STOCHASTIC_ROUND, O_GRAD_DTYPE, O_GRAD_COMPRESS, O_LOCAL_STEPS, O_LOCAL_START, O_COMPRESS_START, O_MEMORY, O_SAVE_EVERY, O_KEEP, O_FORCE_RESUME, O_NAN_POLICY, O_MAX_SKIPS, O_SKIP_SPIKES, O_TOKENIZER, O_INIT_FROM, O_FREEZE, O_MODEL_FILE, O_NEW_HEAD,
    O_DP_CLIP, O_DP_NOISE, O_DP_EPSILON, O_DP_DELTA, O_DP_SAMPLING, O_DP_LEVEL, O_FEDAVG, O_PARTITION,
    O_CLIENT_FRACTION, O_LOCAL_EPOCHS,
};

/* a flag with named values: CHOICE("--shm", o.shm, NAMES("auto", "off"), VALUES(1, 0)) */
#define NAMES(...) ((const char *const[]){__VA_ARGS__})
#define VALUES(...) ((const int[]){__VA_ARGS__})
#define CHOICE(flag, field, names, values) \
    lk_arg_choice(flag, optarg, (int)(sizeof names / sizeof *names), names, values, &(field))

/* The job's communicator (set once in main). */
lk_comm *lk_cli_comm(void);
/* Prints the error (rank-prefixed in a job), makes every rank stop, returns the exit
 * status (2 for a bad argument, else 1). */
int lk_cli_fail(lk_status s);

/* `lockstep train` (train_cmd.c) */
int lk_cli_train(int argc, char **argv);
/* --layers --heads --dim --ctx --gelu into a (1: c was one of them; *s its parse) */
int lk_cli_arch_flag(int c, lk_arch *a, lk_status *s);
/* lockstep bench comm|gemm (bench.c) */
int lk_cli_bench(int argc, char **argv);
/* lockstep tokenize (tokenize_cmd.c) */
int lk_cli_tokenize(int argc, char **argv);
/* lockstep convert (convert_cmd.c) */
int lk_cli_convert(int argc, char **argv);
/* `lockstep models [NAME]`: the built-in models, or one's spec (models_cmd.c). */
int lk_cli_models(int argc, char **argv);
/* `lockstep explain`: attributions of an image classifier (explain_cmd.c). */
int lk_cli_explain(int argc, char **argv);

#endif
