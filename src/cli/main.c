/* main.c - the `lockstep` command: train, eval, predict, sample, bench (comm, gemm:
 * bench.c), plan, info. Library errors arrive as lk_status + message; here they
 * become a clear line on stderr and a non-zero exit status. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lockstep.h" /* the public API; and the internals the command reports on or sets: */
#include "../comm/bucket.h" /* lk_progress_mode */
#include "../comm/topo.h"   /* info's bindings */
#include "../train/guard.h" /* lk_nan_policy */
#include "../train/plan.h"
#include "args.h"
#include "cli.h"

/* The job's communicator: set once in main, so an error on any rank can stop
 * every rank (never a hang in a collective the failed rank will not join). */
static lk_comm *g_comm;
static int fail(lk_status s);

lk_comm *lk_cli_comm(void) { return g_comm; }

int lk_cli_fail(lk_status s) { return fail(s); }

static int fail(lk_status s)
{
    const char *debug = getenv("LK_DEBUG");
    char who[32] = "";
    if (g_comm && g_comm->world > 1) snprintf(who, sizeof who, "rank %d: ", g_comm->rank);
    if (debug && *debug && *debug != '0')
        fprintf(stderr, "lockstep: %serror: %s [%s]\n", who, lk_error_message(), lk_error_where());
    else
        fprintf(stderr, "lockstep: %serror: %s\n", who, lk_error_message());
    /* 2: the command line; 3: a rank or the communication between ranks (launch/run.sh
     * restarts on it); 1: everything else (data, files, numerics, the device) */
    int code = s == LK_ERR_ARG ? 2 : s == LK_ERR_COMM ? 3 : 1;
    if (g_comm && g_comm->world > 1) g_comm->vt->abort(g_comm, code);
    return code;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lockstep <command> [flags]\n\n"
            "commands:\n"
            "  train    train a model (lockstep train --help)\n"
            "  eval     accuracy and loss of a checkpoint on a dataset's test split\n"
            "  predict  class predictions of a checkpoint for images in a file\n"
            "  sample   text from a gpt, images from a gan or vae, reconstructions from an autoencoder\n"
            "  bench    bench comm: all-reduce time and bandwidth over message sizes (under mpirun);\n"
            "           bench gemm: the matrix products' FLOP/s (float32, bf16)\n"
            "  plan     project a model's step time, samples/s and efficiency on N ranks\n"
            "  tokenize text files into llm.c token shards with GPT-2's tokenizer\n"
            "  convert  GPT-2 weights between llm.c's checkpoints and lockstep's\n"
            "  models   the built-in models; `models NAME` prints one's spec (--model-file)\n"
            "  explain  which pixels (tokens) made an image classifier's (language model's) prediction\n"
            "  info     build, devices and libraries\n\n"
            "  --help, --version\n");
}

static void train_usage(FILE *f)
{
    fprintf(f,
            "usage: lockstep train --model NAME [flags]\n\n"
            "  --model NAME          mlp, mlp-wide, cnn, cnn-bn, lstm, gru, gpt, gpt2, gpt2-medium,\n"
            "                        gpt2-large, gpt2-xl, autoencoder, vae, gan (default cnn; with\n"
            "                        --resume alone, the checkpoint's)\n"
            "  --model-file SPEC.json  a model of your own (docs/model-spec.md; lockstep models NAME\n"
            "                        prints a built-in one to start from)\n"
            "  --layers N --heads N --dim N --ctx N   gpt's sizes (default 4, 4, 256, 128); the\n"
            "                        gpt2 presets have GPT-2's, --ctx may shorten their 1024\n"
            "  --gelu erf|tanh       the MLP's GELU (default: erf for gpt, tanh for gpt2*)\n"
            "  --data SPEC           fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, text:FILE,\n"
            "                        tokens:PATTERN (llm.c shards) (default fashion-mnist)\n"
            "  --epochs N | --steps N  length of the run (default 1 epoch)\n"
            "  --batch B             samples per rank per step (default 64)\n"
            "  --optim NAME          sgd momentum nesterov adam adamw rmsprop adagrad (default momentum)\n"
            "  --lr X                learning rate (default: the optimizer's PyTorch default)\n"
            "  --momentum X --beta1 X --beta2 X --eps X --alpha X   optimizer constants\n"
            "  --weight-decay X      L2 penalty (decoupled for adamw)\n"
            "  --decay all|matrices  what --weight-decay and --l1 apply to: every tensor, or\n"
            "                        matrices and embeddings only, not biases and norms\n"
            "                        (default: matrices for gpt2*, all otherwise)\n"
            "  --l1 X                L1 penalty\n"
            "  --clip X              clip the global gradient norm to X\n"
            "  --schedule NAME       constant, step, cosine (default constant)\n"
            "  --warmup N            linear warm-up steps\n"
            "  --step-size N --gamma X   step schedule: lr *= gamma every N steps\n"
            "  --init NAME           default (PyTorch), normal, uniform, xavier, xavier-normal, he, he-uniform\n"
            "  --seed S              seed of init, shuffling and dropout (default 0)\n"
            "  --device D            auto, cpu, cuda, cuda:N (default auto)\n"
            "  --threads N           CPU threads for BLAS and loops (default: all cores)\n"
            "  --save DIR            write a checkpoint after every epoch\n"
            "  --save-every N        also every N steps: DIR/step-NNNNNNNN, DIR/latest the newest\n"
            "                        complete one (epoch ends are step checkpoints too then)\n"
            "  --keep K              keep the newest K step checkpoints (default: all)\n"
            "  --resume DIR          continue from a checkpoint written by --save (DIR/latest\n"
            "                        where it has one): the same batches and learning rates on\n"
            "                        from there, bitwise on the same world size\n"
            "  --force-resume        continue although the data, the global batch, the seed or\n"
            "                        the learning rates differ from the checkpoint's run\n"
            "  --init-from DIR       start from a checkpoint's weights (DIR/latest where it has\n"
            "                        one) with a fresh optimizer and schedule: fine-tuning\n"
            "  --new-head            ... but for its head (the last layer with weights), which\n"
            "                        starts afresh for the data's number of classes\n"
            "  --freeze PATTERNS     keep the parameters whose names match (comma-separated shell\n"
            "                        patterns over checkpoint names, e.g. '0.*,2.weight') as they\n"
            "                        are: no update, and no all-reduce where they lie outside\n"
            "                        the layers that train\n"
            "  --nan-policy P        a step whose loss or gradient is not finite (checked every\n"
            "                        step, agreed by every rank): stop (default: names the step\n"
            "                        and the first layer) or skip (no update on any rank)\n"
            "  --max-skips N         stop after N steps skipped in a row (default 10)\n"
            "  --skip-spikes Z       also skip a step whose loss is Z standard deviations above\n"
            "                        the mean of the last 100 steps\n"
            "  --metrics FILE        JSON lines: steps, evaluations, summary\n"
            "  --eval-every N        also validate every N steps (always after each epoch)\n"
            "  --log-every N         log/metrics line every N steps (default 50)\n"
            "  --train-limit N       use the first N training samples only\n"
            "  --val-limit N         use the first N validation samples only\n"
            "  --progress bar|lines  console output (default: bar on a terminal)\n"
            "  --quiet               no console output\n"
            "  --comm auto|local|mpi how ranks talk (default auto: mpi under mpirun/srun)\n"
            "  --accum N             micro-batches per optimizer step (communication on the last)\n"
            "  --bucket-mb X         gradient all-reduce bucket size in MiB (default 1)\n"
            "  --comm-progress M     who drives the all-reduces during backward: thread (a comm\n"
            "                        thread, blocking MPI_Allreduce per bucket), layers (the\n"
            "                        training thread, non-blocking MPI between layers) or auto\n"
            "                        (default: thread where MPI allows a second thread)\n"
            "  --shm auto|off        ranks on one host all-reduce through shared memory, waiting\n"
            "                        without spinning (auto, with the comm thread) or through MPI\n"
            "  --comm-timeout S      give up on a rank that does not arrive in lockstep's own\n"
            "                        waits (shared memory, NCCL) after S seconds (default 300)\n"
            "  --gpu-comm auto|nccl|mpi  GPU replicas all-reduce through NCCL on its own stream\n"
            "                        (auto: when built with NCCL) or MPI via pinned host memory\n"
            "  --check-every N       compare replica checksums every N steps (default 100)\n"
            "  --bind cores|none     bind each rank to its share of the host's cores (default cores)\n"
            "  --sync-bn             batch norm over the global batch (SyncBatchNorm; with\n"
            "                        --comm-progress layers)\n"
            "  --zero 0|1|2          shard over the ranks: 1 the optimizer state, 2 also the\n"
            "                        gradients (ZeRO); same traffic as 0 (default 0)\n"
            "  --recompute none|act|block  recompute in backward instead of keeping: act the\n"
            "                        element-wise activations and layer norms' outputs, block\n"
            "                        whole residual blocks from their inputs (default none)\n"
            "  --precision fp32|bf16 bf16: mixed precision - products and convolutions take bf16\n"
            "                        inputs and accumulate in float32 (a bf16 working copy of\n"
            "                        the float32 weights, rewritten by each optimizer step; the\n"
            "                        rest, gradients and optimizer state float32; default fp32)\n"
            "  --stochastic-round    bf16: round the weights' working copy stochastically (the\n"
            "                        same draws on every rank) instead of to nearest even\n"
            "  --grad-compress none|bf16|fp16|powersgd:R  bf16, fp16: gradient buckets travel\n"
            "                        between ranks in 16 bits (half the bytes), scaled by 1/world\n"
            "                        (so fp16 holds what the sum would overflow), each rank's part\n"
            "                        summed in float32 and rounded once, back to float32 times\n"
            "                        world; powersgd:R: each gradient matrix sent as rank-R factors\n"
            "                        with error feedback (PowerSGD), the rest uncompressed\n"
            "                        (default none)\n"
            "  --compress-start N    plain all-reduces for the first N steps (default 0)\n"
            "  --grad-dtype fp32|bf16  the same as --grad-compress none|bf16\n"
            "  --local-steps K       local SGD: each rank steps on its own gradients and the\n"
            "                        ranks average parameters and optimizer state every K\n"
            "                        steps (and before evaluations, checkpoints, the end)\n"
            "  --local-start N       local SGD: after N data-parallel steps (default 0)\n"
            "  --peak-tflops X       each rank's peak, the denominator of mfu (default: a GPU's\n"
            "                        data-sheet peak in the run's precision, else 2048^3 products\n"
            "                        in it measured at start-up on the rank's threads)\n");
}


static const struct option train_opts[] = {
    {"model", 1, 0, O_MODEL},         {"model-file", 1, 0, O_MODEL_FILE}, {"data", 1, 0, O_DATA},
    {"epochs", 1, 0, O_EPOCHS},       {"steps", 1, 0, O_STEPS},
    {"batch", 1, 0, O_BATCH},         {"optim", 1, 0, O_OPTIM},
    {"lr", 1, 0, O_LR},               {"momentum", 1, 0, O_MOMENTUM},
    {"beta1", 1, 0, O_BETA1},         {"beta2", 1, 0, O_BETA2},
    {"eps", 1, 0, O_EPS},             {"alpha", 1, 0, O_ALPHA},
    {"weight-decay", 1, 0, O_WD},     {"l1", 1, 0, O_L1},
    {"clip", 1, 0, O_CLIP},           {"schedule", 1, 0, O_SCHEDULE},
    {"warmup", 1, 0, O_WARMUP},       {"step-size", 1, 0, O_STEP_SIZE},
    {"gamma", 1, 0, O_GAMMA},         {"init", 1, 0, O_INIT},
    {"seed", 1, 0, O_SEED},           {"device", 1, 0, O_DEVICE},
    {"threads", 1, 0, O_THREADS},     {"save", 1, 0, O_SAVE},
    {"resume", 1, 0, O_RESUME},       {"metrics", 1, 0, O_METRICS},     {"init-from", 1, 0, O_INIT_FROM},   {"new-head", 0, 0, O_NEW_HEAD},   {"freeze", 1, 0, O_FREEZE},
    {"eval-every", 1, 0, O_EVAL_EVERY}, {"log-every", 1, 0, O_LOG_EVERY},
    {"train-limit", 1, 0, O_TRAIN_LIMIT}, {"val-limit", 1, 0, O_VAL_LIMIT},
    {"progress", 1, 0, O_PROGRESS},   {"quiet", 0, 0, O_QUIET},
    {"comm", 1, 0, O_COMM},           {"accum", 1, 0, O_ACCUM},
    {"bucket-mb", 1, 0, O_BUCKET_MB}, {"check-every", 1, 0, O_CHECK_EVERY},
    {"bind", 1, 0, O_BIND},           {"comm-progress", 1, 0, O_COMM_PROGRESS},
    {"shm", 1, 0, O_SHM},             {"comm-timeout", 1, 0, O_COMM_TIMEOUT},
    {"gpu-comm", 1, 0, O_GPU_COMM},   {"layers", 1, 0, O_LAYERS},
    {"heads", 1, 0, O_HEADS},         {"dim", 1, 0, O_DIM},
    {"ctx", 1, 0, O_CTX},             {"sync-bn", 0, 0, O_SYNC_BN},
    {"peak-tflops", 1, 0, O_PEAK_TFLOPS}, {"gelu", 1, 0, O_GELU},
    {"decay", 1, 0, O_DECAY},         {"zero", 1, 0, O_ZERO},
    {"recompute", 1, 0, O_RECOMPUTE}, {"precision", 1, 0, O_PRECISION},
    {"stochastic-round", 0, 0, O_STOCHASTIC_ROUND}, {"grad-dtype", 1, 0, O_GRAD_DTYPE},
    {"grad-compress", 1, 0, O_GRAD_COMPRESS}, {"local-steps", 1, 0, O_LOCAL_STEPS},
    {"local-start", 1, 0, O_LOCAL_START}, {"compress-start", 1, 0, O_COMPRESS_START},
    {"save-every", 1, 0, O_SAVE_EVERY}, {"keep", 1, 0, O_KEEP},
    {"force-resume", 0, 0, O_FORCE_RESUME}, {"nan-policy", 1, 0, O_NAN_POLICY},
    {"max-skips", 1, 0, O_MAX_SKIPS}, {"skip-spikes", 1, 0, O_SKIP_SPIKES},
    {"help", 0, 0, O_HELP},           {0, 0, 0, 0},
};

/* Optimizer constants given on the command line; applied over the chosen
 * optimizer's defaults whatever the flag order. */
typedef struct {
    int set;
    double v;
} opt_val;

static lk_status parse_float_flag(const char *flag, double lo, double hi, opt_val *dst)
{
    dst->set = 1;
    return lk_arg_float(flag, optarg, lo, hi, &dst->v);
}


/* --layers --heads --dim --ctx (train and plan); returns 0 when c is not one of them */
static int arch_flag(int c, lk_arch *a, lk_status *s)
{
    long v = 0;
    switch (c) {
    case O_LAYERS: *s = lk_arg_int("--layers", optarg, 1, 1024, &v), a->layers = (int)v; return 1;
    case O_HEADS: *s = lk_arg_int("--heads", optarg, 1, 1024, &v), a->heads = (int)v; return 1;
    case O_DIM: *s = lk_arg_int("--dim", optarg, 1, 1 << 16, &v), a->dim = (int)v; return 1;
    case O_CTX: *s = lk_arg_int("--ctx", optarg, 1, 1 << 16, &v), a->ctx = (int)v; return 1;
    }
    return 0;
}

static int cmd_train(int argc, char **argv)
{
    lk_train_opts o = lk_train_defaults();
    lk_optim_kind kind = LK_OPT_MOMENTUM;
    lk_schedule sched = LK_SCHED_CONSTANT;
    opt_val lr = {0}, mom = {0}, b1 = {0}, b2 = {0}, eps = {0}, alpha = {0}, wd = {0}, l1 = {0},
            clip = {0}, gamma = {0};
    long warmup = 0, step_size = 0, v;
    lk_decay decay = LK_DECAY_DEFAULT;
    int c, wire_given = 0;
    lk_status s = LK_OK;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":", train_opts, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        if (arch_flag(c, &o.arch, &s)) continue;
        switch (c) {
        case O_MODEL: o.model = optarg; break;
        case O_MODEL_FILE: o.model_file = optarg; break;
        case O_DATA: o.data = optarg; break;
        case O_EPOCHS: s = lk_arg_int("--epochs", optarg, 1, 100000, &v), o.epochs = (int)v; break;
        case O_STEPS: s = lk_arg_int("--steps", optarg, 1, 1L << 40, &v), o.steps = v; break;
        case O_BATCH: s = lk_arg_int("--batch", optarg, 1, 1 << 20, &v), o.batch = (int)v; break;
        case O_OPTIM: s = lk_optim_parse(optarg, &kind); break;
        case O_LR: s = parse_float_flag("--lr", 0, 1e6, &lr); break;
        case O_MOMENTUM: s = parse_float_flag("--momentum", 0, 0.999999, &mom); break;
        case O_BETA1: s = parse_float_flag("--beta1", 0, 0.999999, &b1); break;
        case O_BETA2: s = parse_float_flag("--beta2", 0, 0.999999, &b2); break;
        case O_EPS: s = parse_float_flag("--eps", 0, 1, &eps); break;
        case O_ALPHA: s = parse_float_flag("--alpha", 0, 1, &alpha); break;
        case O_WD: s = parse_float_flag("--weight-decay", 0, 1e3, &wd); break;
        case O_L1: s = parse_float_flag("--l1", 0, 1e3, &l1); break;
        case O_CLIP: s = parse_float_flag("--clip", 0, 1e12, &clip); break;
        case O_GAMMA: s = parse_float_flag("--gamma", 0, 1e3, &gamma); break;
        case O_SCHEDULE: s = lk_schedule_parse(optarg, &sched); break;
        case O_WARMUP: s = lk_arg_int("--warmup", optarg, 0, 1L << 40, &warmup); break;
        case O_STEP_SIZE: s = lk_arg_int("--step-size", optarg, 1, 1L << 40, &step_size); break;
        case O_INIT: s = lk_init_parse(optarg, &o.init); break;
        case O_SEED: s = lk_arg_u64("--seed", optarg, &o.seed); break;
        case O_DEVICE: o.device = optarg; break;
        case O_THREADS: s = lk_arg_int("--threads", optarg, 1, 4096, &v), o.threads = (int)v; break;
        case O_SAVE: o.save_dir = optarg; break;
        case O_RESUME: o.resume_dir = optarg; break;
        case O_INIT_FROM: o.init_from = optarg; break;
        case O_NEW_HEAD: o.new_head = 1; break;
        case O_FREEZE: o.freeze = optarg; break;
        case O_SAVE_EVERY: s = lk_arg_int("--save-every", optarg, 1, 1L << 40, &o.save_every); break;
        case O_KEEP: s = lk_arg_int("--keep", optarg, 1, 1 << 20, &v), o.keep = (int)v; break;
        case O_FORCE_RESUME: o.force_resume = 1; break;
        case O_NAN_POLICY: {
            lk_nan_policy p = LK_NAN_STOP;
            s = lk_nan_policy_parse(optarg, &p);
            o.nan_policy = (int)p;
            break;
        }
        case O_MAX_SKIPS: s = lk_arg_int("--max-skips", optarg, 0, 1L << 40, &o.max_skips); break;
        case O_SKIP_SPIKES: s = lk_arg_float("--skip-spikes", optarg, 0.5, 1e6, &o.skip_spikes); break;
        case O_METRICS: o.metrics_path = optarg; break;
        case O_EVAL_EVERY: s = lk_arg_int("--eval-every", optarg, 0, 1L << 40, &o.eval_every); break;
        case O_LOG_EVERY: s = lk_arg_int("--log-every", optarg, 1, 1L << 40, &o.log_every); break;
        case O_TRAIN_LIMIT: s = lk_arg_int("--train-limit", optarg, 1, 1 << 30, &v), o.train_limit = (int)v; break;
        case O_VAL_LIMIT: s = lk_arg_int("--val-limit", optarg, 1, 1 << 30, &v), o.val_limit = (int)v; break;
        case O_PROGRESS:
            s = CHOICE("--progress", o.progress, NAMES("bar", "lines"), VALUES(1, 0));
            break;
        case O_QUIET: o.quiet = 1; break;
        case O_SYNC_BN: o.sync_bn = 1; break;
        case O_ZERO: s = CHOICE("--zero", o.zero, NAMES("0", "1", "2"), VALUES(0, 1, 2)); break;
        case O_RECOMPUTE:
            s = CHOICE("--recompute", o.recompute, NAMES("none", "act", "block"),
                       VALUES(LK_RECOMPUTE_NONE, LK_RECOMPUTE_ACT, LK_RECOMPUTE_BLOCK));
            break;
        case O_PRECISION:
            s = CHOICE("--precision", o.precision, NAMES("fp32", "bf16"), VALUES(LK_F32, LK_BF16));
            break;
        case O_STOCHASTIC_ROUND: o.stochastic_round = 1; break;
        case O_GRAD_DTYPE:
        case O_GRAD_COMPRESS: {
            const int was = o.grad_dtype;
            if (c == O_GRAD_COMPRESS) o.powersgd_rank = 0;
            if (c == O_GRAD_COMPRESS && !strncmp(optarg, "powersgd:", 9)) {
                long r = 0;
                s = lk_arg_int("--grad-compress powersgd:R", optarg + 9, 1, 1024, &r);
                o.powersgd_rank = (int)r, o.grad_dtype = LK_F32;
            } else if (c == O_GRAD_DTYPE) {
                s = CHOICE("--grad-dtype", o.grad_dtype, NAMES("fp32", "bf16"), VALUES(LK_F32, LK_BF16));
            } else {
                s = CHOICE("--grad-compress", o.grad_dtype, NAMES("none", "bf16", "fp16"),
                           VALUES(LK_F32, LK_BF16, LK_F16));
                if (s != LK_OK)
                    s = LK_ERR(LK_ERR_ARG, "--grad-compress: expected none, bf16, fp16 or powersgd:R, got '%s'",
                               optarg);
            }
            /* the other flag asking for another wire is refused; the same one again: the last wins */
            if (s == LK_OK && wire_given && wire_given != c && was != o.grad_dtype)
                s = LK_ERR(LK_ERR_ARG, "--grad-dtype and --grad-compress ask for different gradient wires "
                                       "(%s, %s): give one", lk_dtype_name((lk_dtype)was),
                           lk_dtype_name((lk_dtype)o.grad_dtype));
            wire_given = c;
            break;
        }
        case O_GELU: {
            int g = 0;
            s = CHOICE("--gelu", g, NAMES("erf", "tanh"), VALUES(LK_GELU_ERF, LK_GELU_TANH));
            o.arch.gelu = (lk_gelu)g;
            break;
        }
        case O_DECAY: s = lk_decay_parse(optarg, &decay); break;
        case O_PEAK_TFLOPS: s = lk_arg_float("--peak-tflops", optarg, 1e-6, 1e9, &o.peak_tflops); break;
        case O_COMM: break; /* consumed in main */
        case O_ACCUM: s = lk_arg_int("--accum", optarg, 1, 1 << 20, &v), o.accum = (int)v; break;
        case O_BUCKET_MB: {
            double mb;
            s = lk_arg_float("--bucket-mb", optarg, 1e-6, 1e6, &mb);
            o.bucket_mb = mb;
            break;
        }
        case O_COMM_PROGRESS:
            s = CHOICE("--comm-progress", o.comm_progress, NAMES("auto", "layers", "thread"),
                       VALUES(LK_PROGRESS_AUTO, LK_PROGRESS_LAYERS, LK_PROGRESS_THREAD));
            break;
        case O_SHM:
            s = CHOICE("--shm", o.shm, NAMES("auto", "off"), VALUES(1, 0));
            break;
        case O_GPU_COMM:
            s = CHOICE("--gpu-comm", o.gpu_comm, NAMES("auto", "nccl", "mpi"),
                       VALUES(LK_GPU_COMM_AUTO, LK_GPU_COMM_NCCL, LK_GPU_COMM_MPI));
            break;
        case O_COMM_TIMEOUT: s = lk_arg_float("--comm-timeout", optarg, 1e-3, 1e7, &o.comm_timeout); break;
        case O_CHECK_EVERY: s = lk_arg_int("--check-every", optarg, 0, 1L << 40, &o.check_every); break;
        case O_LOCAL_STEPS: s = lk_arg_int("--local-steps", optarg, 1, 1L << 40, &o.local_steps); break;
        case O_LOCAL_START: s = lk_arg_int("--local-start", optarg, 0, 1L << 40, &o.local_start); break;
        case O_COMPRESS_START: s = lk_arg_int("--compress-start", optarg, 0, 1L << 40, &o.compress_start); break;
        case O_BIND:
            s = CHOICE("--bind", o.bind, NAMES("cores", "none"), VALUES(1, 0));
            break;
        case O_HELP: train_usage(stdout); return 0;
        case ':': s = LK_ERR(LK_ERR_ARG, "%s needs a value", flag); break;
        default: s = LK_ERR(LK_ERR_ARG, "unknown flag '%s' for train (see lockstep train --help)", flag);
        }
    }
    if (s == LK_OK && optind < argc)
        s = LK_ERR(LK_ERR_ARG, "unexpected argument '%s' (flags start with --)", argv[optind]);
    if (s != LK_OK) return fail(s);

    o.optim = lk_optim_defaults(kind);
    if (lr.set) o.optim.lr = (float)lr.v;
    if (mom.set) o.optim.momentum = (float)mom.v;
    if (b1.set) o.optim.beta1 = (float)b1.v;
    if (b2.set) o.optim.beta2 = (float)b2.v;
    if (eps.set) o.optim.eps = (float)eps.v;
    if (alpha.set) o.optim.alpha = (float)alpha.v;
    if (wd.set) o.optim.weight_decay = (float)wd.v;
    if (l1.set) o.optim.l1 = (float)l1.v;
    if (clip.set) o.optim.clip_norm = (float)clip.v;
    if (gamma.set) o.optim.gamma = (float)gamma.v;
    o.optim.decay = decay;
    o.optim.schedule = sched;
    o.optim.warmup = warmup;
    o.optim.step_size = step_size;
    if (sched == LK_SCHED_STEP && step_size == 0)
        return fail(LK_ERR(LK_ERR_ARG, "--schedule step needs --step-size N"));

    o.comm = g_comm;
    lk_train_result r;
    s = lk_train(&o, &r);
    return s == LK_OK ? 0 : fail(s);
}

static const struct option ckpt_opts[] = {
    {"checkpoint", 1, 0, O_CHECKPOINT}, {"data", 1, 0, O_DATA},     {"input", 1, 0, O_INPUT},
    {"device", 1, 0, O_DEVICE},         {"threads", 1, 0, O_THREADS}, {"batch", 1, 0, O_BATCH},
    {"top", 1, 0, O_TOP},               {"limit", 1, 0, O_LIMIT},   {"help", 0, 0, O_HELP},
    {0, 0, 0, 0},
};

/* eval and predict share their flags; each checks the ones it needs. */
static int cmd_checkpoint(int argc, char **argv, int predict)
{
    const char *ckpt = NULL, *data = NULL, *input = NULL, *device = "auto";
    long threads = 0, batch = 256, top = 1, limit = 0;
    int c;
    lk_status s = LK_OK;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":", ckpt_opts, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        switch (c) {
        case O_CHECKPOINT: ckpt = optarg; break;
        case O_DATA: data = optarg; break;
        case O_INPUT: input = optarg; break;
        case O_DEVICE: device = optarg; break;
        case O_THREADS: s = lk_arg_int("--threads", optarg, 1, 4096, &threads); break;
        case O_BATCH: s = lk_arg_int("--batch", optarg, 1, 1 << 20, &batch); break;
        case O_TOP: s = lk_arg_int("--top", optarg, 1, 1000, &top); break;
        case O_LIMIT: s = lk_arg_int("--limit", optarg, 1, 1 << 30, &limit); break;
        case O_HELP:
            printf(predict ? "usage: lockstep predict --checkpoint DIR --input FILE [--top K] "
                             "[--limit N] [--device D] [--threads N]\n"
                             "  FILE: an IDX image file (plain or .gz) or a binary PGM (P5) image\n"
                           : "usage: lockstep eval --checkpoint DIR [--data SPEC] [--batch B] "
                             "[--device D] [--threads N]\n"
                             "  SPEC defaults to the data the checkpoint was trained on\n");
            return 0;
        case ':': s = LK_ERR(LK_ERR_ARG, "%s needs a value", flag); break;
        default:
            s = LK_ERR(LK_ERR_ARG, "unknown flag '%s' for %s", flag, predict ? "predict" : "eval");
        }
    }
    if (s == LK_OK && optind < argc)
        s = LK_ERR(LK_ERR_ARG, "unexpected argument '%s'", argv[optind]);
    if (s == LK_OK && !ckpt) s = LK_ERR(LK_ERR_ARG, "--checkpoint DIR is required");
    if (s == LK_OK && predict && !input) s = LK_ERR(LK_ERR_ARG, "--input FILE is required");
    if (s != LK_OK) return fail(s);
    if (predict) {
        s = lk_predict(ckpt, input, device, (int)threads, (int)top, (int)limit, stdout);
        return s == LK_OK ? 0 : fail(s);
    }
    lk_eval_result r;
    s = lk_eval_checkpoint(ckpt, data, device, (int)threads, (int)batch, &r);
    if (s != LK_OK) return fail(s);
    if (isnan(r.acc)) /* reconstruction models have no accuracy */
        printf("test loss %.4f  (%d samples, checkpoint %s)\n", r.loss, r.n, ckpt);
    else
        printf("test accuracy %.4f  loss %.4f  (%d samples, checkpoint %s)\n", r.acc, r.loss, r.n, ckpt);
    return 0;
}

static const struct option sample_opts[] = {
    {"checkpoint", 1, 0, O_CHECKPOINT}, {"prompt", 1, 0, O_PROMPT},   {"tokens", 1, 0, O_TOKENS},
    {"temperature", 1, 0, O_TEMPERATURE}, {"top-k", 1, 0, O_TOP_K},   {"seed", 1, 0, O_SEED},
    {"count", 1, 0, O_COUNT},           {"out", 1, 0, O_OUT},         {"device", 1, 0, O_DEVICE},
    {"threads", 1, 0, O_THREADS},       {"help", 0, 0, O_HELP},       {"tokenizer", 1, 0, O_TOKENIZER},
    {0, 0, 0, 0},
};

static int cmd_sample(int argc, char **argv)
{
    lk_sample_opts o = lk_sample_defaults();
    long v;
    int c;
    lk_status s = LK_OK;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":", sample_opts, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        switch (c) {
        case O_CHECKPOINT: o.checkpoint = optarg; break;
        case O_PROMPT: o.prompt = optarg; break;
        case O_TOKENIZER: o.tokenizer = optarg; break;
        case O_TOKENS: s = lk_arg_int("--tokens", optarg, 1, 1 << 20, &v), o.tokens = (int)v; break;
        case O_TEMPERATURE: s = lk_arg_float("--temperature", optarg, 0, 100, &o.temperature); break;
        case O_TOP_K: s = lk_arg_int("--top-k", optarg, 0, 1 << 24, &v), o.top_k = (int)v; break;
        case O_SEED: s = lk_arg_u64("--seed", optarg, &o.seed); break;
        case O_COUNT: s = lk_arg_int("--count", optarg, 1, 4096, &v), o.count = (int)v; break;
        case O_OUT: o.out = optarg; break;
        case O_DEVICE: o.device = optarg; break;
        case O_THREADS: s = lk_arg_int("--threads", optarg, 1, 4096, &v), o.threads = (int)v; break;
        case O_HELP:
            printf("usage: lockstep sample --checkpoint DIR [flags]\n"
                   "  gpt:         --prompt TEXT (GPT-2-token models: text through GPT-2's tokenizer,\n"
                   "               --tokenizer DIR; or ids:1,2,3 for ids out) --tokens N (200)\n"
                   "               --temperature T (0.8; 0: greedy) --top-k K (40; 0: all) --seed S\n"
                   "  gan, vae:    --out FILE.png --count N (64): a grid of generated images\n"
                   "  autoencoder: --out FILE.png --count N: test images above their reconstructions\n"
                   "  --device D --threads N\n");
            return 0;
        case ':': s = LK_ERR(LK_ERR_ARG, "%s needs a value", flag); break;
        default: s = LK_ERR(LK_ERR_ARG, "unknown flag '%s' for sample", flag);
        }
    }
    if (s == LK_OK && optind < argc) s = LK_ERR(LK_ERR_ARG, "unexpected argument '%s'", argv[optind]);
    if (s == LK_OK && !o.checkpoint) s = LK_ERR(LK_ERR_ARG, "--checkpoint DIR is required");
    if (s == LK_OK) s = lk_sample(&o, stdout);
    return s == LK_OK ? 0 : fail(s);
}

static const struct option plan_opts[] = {
    {"model", 1, 0, O_MODEL},         {"model-file", 1, 0, O_MODEL_FILE}, {"data", 1, 0, O_DATA},
    {"batch", 1, 0, O_BATCH},
    {"threads", 1, 0, O_THREADS},     {"bucket-mb", 1, 0, O_BUCKET_MB}, {"optim", 1, 0, O_OPTIM},
    {"layers", 1, 0, O_LAYERS},       {"heads", 1, 0, O_HEADS},         {"dim", 1, 0, O_DIM},
    {"ctx", 1, 0, O_CTX},             {"ranks", 1, 0, O_RANKS},         {"link-gbps", 1, 0, O_LINK_GBPS},
    {"latency-us", 1, 0, O_LATENCY_US}, {"comm-csv", 1, 0, O_COMM_CSV}, {"steps", 1, 0, O_STEPS},
    {"shared-cores", 0, 0, O_SHARED_CORES}, {"memory", 0, 0, O_MEMORY}, {"zero", 1, 0, O_ZERO},
    {"shm", 1, 0, O_SHM},             {"device", 1, 0, O_DEVICE},       {"recompute", 1, 0, O_RECOMPUTE},
    {"precision", 1, 0, O_PRECISION}, {"help", 0, 0, O_HELP},           {"grad-compress", 1, 0, O_GRAD_COMPRESS},
    {"local-steps", 1, 0, O_LOCAL_STEPS}, {0, 0, 0, 0},
};

static int cmd_plan(int argc, char **argv)
{
    lk_plan_opts o;
    memset(&o, 0, sizeof o);
    o.train = lk_train_defaults();
    o.train.threads = 1;
    o.ranks = 8;
    o.link_gbps = 10;
    o.latency_us = 50;
    o.steps = 20;
    int memory = 0, ranks_given = 0;
    lk_optim_kind kind = LK_OPT_MOMENTUM;
    long v;
    int c;
    lk_status s = LK_OK;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":", plan_opts, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        if (arch_flag(c, &o.train.arch, &s)) continue;
        switch (c) {
        case O_MODEL: o.train.model = optarg; break;
        case O_MODEL_FILE: o.train.model_file = optarg; break;
        case O_DATA: o.train.data = optarg; break;
        case O_BATCH: s = lk_arg_int("--batch", optarg, 1, 1 << 20, &v), o.train.batch = (int)v; break;
        case O_THREADS: s = lk_arg_int("--threads", optarg, 1, 4096, &v), o.train.threads = (int)v; break;
        case O_BUCKET_MB: s = lk_arg_float("--bucket-mb", optarg, 1e-6, 1e6, &o.train.bucket_mb); break;
        case O_OPTIM: s = lk_optim_parse(optarg, &kind); break;
        case O_RANKS: s = lk_arg_int("--ranks", optarg, 1, 1 << 20, &v), o.ranks = (int)v, ranks_given = 1; break;
        case O_LOCAL_STEPS: s = lk_arg_int("--local-steps", optarg, 1, 1L << 40, &o.train.local_steps); break;
        case O_GRAD_COMPRESS:
            s = strncmp(optarg, "powersgd:", 9)
                    ? LK_ERR(LK_ERR_ARG, "plan --grad-compress: expected powersgd:R (the rank its row models; "
                                         "every option is compared), got '%s'", optarg)
                    : lk_arg_int("--grad-compress powersgd:R", optarg + 9, 1, 1024, &v);
            o.train.powersgd_rank = (int)v;
            break;
        case O_LINK_GBPS: s = lk_arg_float("--link-gbps", optarg, 1e-3, 1e6, &o.link_gbps); break;
        case O_LATENCY_US: s = lk_arg_float("--latency-us", optarg, 0, 1e7, &o.latency_us); break;
        case O_COMM_CSV: o.comm_csv = optarg; break;
        case O_STEPS: s = lk_arg_int("--steps", optarg, 1, 100000, &v), o.steps = (int)v; break;
        case O_SHARED_CORES: o.shared_cores = 1; break;
        case O_MEMORY: memory = 1; break;
        case O_ZERO: s = CHOICE("--zero", o.train.zero, NAMES("0", "1", "2"), VALUES(0, 1, 2)); break;
        case O_SHM: s = CHOICE("--shm", o.train.shm, NAMES("auto", "off"), VALUES(1, 0)); break;
        case O_DEVICE: o.train.device = optarg; break;
        case O_RECOMPUTE:
            s = CHOICE("--recompute", o.train.recompute, NAMES("none", "act", "block"),
                       VALUES(LK_RECOMPUTE_NONE, LK_RECOMPUTE_ACT, LK_RECOMPUTE_BLOCK));
            break;
        case O_PRECISION:
            s = CHOICE("--precision", o.train.precision, NAMES("fp32", "bf16"), VALUES(LK_F32, LK_BF16));
            break;
        case O_HELP:
            printf("usage: lockstep plan --model NAME [flags]       (or --model-file SPEC.json)\n"
                   "       lockstep plan --memory --model NAME [--ranks N --zero 0|1|2 ...]\n\n"
                   "  --memory              the memory a rank of the run would hold, by kind, and\n"
                   "                        whether N ranks on this host fit (--ranks default 1;\n"
                   "                        --zero, --recompute, --precision, --shm, --device,\n"
                   "                        --optim as for train)\n"
                   "  --ranks N             project 1, 2, 4 ... N ranks (default 8)\n"
                   "  --link-gbps B --latency-us A   the links (default 10 Gbit/s, 50 us)\n"
                   "  --grad-compress powersgd:R --local-steps K   the rank and period the comparison of\n"
                   "                        ways to send less models (default 4 and 8)\n"
                   "  --comm-csv FILE       fit the all-reduce to `lockstep bench comm --csv` instead\n"
                   "  --steps K             steps measured here, after 3 of warm-up (default 20)\n"
                   "  --shared-cores        the all-reduces need the cores that compute (CPU ranks over TCP):\n"
                   "                        under mpirun, steps with the job's all-reduces after and beside\n"
                   "                        backward measure their level and how much slower they run beside\n"
                   "                        it; on one rank, their --comm-csv time beyond the --link-gbps\n"
                   "                        wire's is taken from backward\n"
                   "  under mpirun -np K, K ranks measure at once (K sharing a host), each step the slowest\n"
                   "  --data SPEC --batch B --threads N --bucket-mb X --optim NAME\n"
                   "  --layers --heads --dim --ctx   as for train\n");
            return 0;
        case ':': s = LK_ERR(LK_ERR_ARG, "%s needs a value", flag); break;
        default: s = LK_ERR(LK_ERR_ARG, "unknown flag '%s' for plan", flag);
        }
    }
    if (s == LK_OK && optind < argc) s = LK_ERR(LK_ERR_ARG, "unexpected argument '%s'", argv[optind]);
    o.train.optim = lk_optim_defaults(kind);
    o.comm = g_comm;
    if (memory && !ranks_given) o.ranks = 1;
    if (s == LK_OK) s = memory ? lk_plan_memory(&o, stdout) : lk_plan(&o, stdout);
    return s == LK_OK ? 0 : fail(s);
}

static int cmd_info(void)
{
    lk_comm *c = g_comm;
    lk_topo_binding b;
    const int gpus = lk_cuda_device_count();
    lk_status s = lk_topo_bind(c, 1, gpus, &b);
    if (s != LK_OK) return fail(s);
    lk_device *d;
    s = lk_device_open(&d, "cpu", b.ncores);
    if (s != LK_OK) return fail(s);
    char gpu[160] = "none";
    if (gpus > 0) snprintf(gpu, sizeof gpu, "%s of %d", b.gpu, gpus); /* "cuda:1 (0000:3b:00.0) of 4" */
    if (c->rank == 0) {
        printf("lockstep %s\n", LK_VERSION);
        printf("communication: %s backend, %s, %d rank%s\n", c->vt->name, c->library, c->world,
               c->world == 1 ? "" : "s");
        lk_cpu_math_info mi;
        lk_backend_cpu_math_info(&mi);
        printf("cpu math: %s, dispatching to %s (the CPU reports %s); float32 products: %s\n",
               mi.library, mi.isa, mi.cpu_isa, mi.fp32_kernel);
        if (mi.bf16_onednn)
            printf("bf16 products (--precision bf16): oneDNN's bf16 kernels, %s\n", mi.bf16_kernel);
        else
            printf("bf16 products (--precision bf16): float32 products of bf16-rounded operands (the "
                   "same values; oneDNN's bf16 matmul here: %s%s)\n", mi.bf16_kernel,
                   !strcmp(mi.bf16_kernel, "none") ? ""
                   : mi.bf16_native ? ", slower than its float32 one without AMX"
                                    : ", converting: no bf16 instructions");
        if (mi.below)
            fprintf(stderr,
                    "warning: oneDNN dispatches to %s but this CPU supports %s: an old oneDNN, a "
                    "limit in ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA, or an OS that hides the "
                    "registers; products will run below the CPU's speed\n",
                    mi.isa, mi.cpu_isa);
        printf("cuda: %s\n", lk_cuda_describe());
        printf("nccl: %s\n", lk_nccl_version());
        printf("models:");
        for (int i = 0; i < lk_zoo_count(); i++) printf(" %s", lk_zoo_name(i));
        printf("\n");
    }
    /* one line per rank, in rank order */
    char line[1024];
    snprintf(line, sizeof line,
             "rank %d/%d: host %s, local rank %d/%d, cores %s of %d (NUMA %s)%s%s, GPU %s, "
             "device %s, %d thread%s",
             c->rank, c->world, c->host, c->local_rank, c->local_world, b.cores, b.host_cores,
             b.numa, b.bound ? " bound" : ", ", b.bound ? "" : b.note, gpu, d->name, d->threads,
             d->threads == 1 ? "" : "s");
    lk_device_close(d);
    char *all = lk_calloc((size_t)c->world, sizeof line);
    if (!all) return fail(LK_ERR(LK_ERR_NOMEM, "out of memory"));
    s = lk_comm_allgather_bytes(c, line, all, sizeof line);
    if (s != LK_OK) {
        lk_free(all);
        return fail(s);
    }
    if (c->rank == 0)
        for (int r = 0; r < c->world; r++) printf("%s\n", all + (size_t)r * sizeof line);
    lk_free(all);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("lockstep %s\n", LK_VERSION);
        return 0;
    }
    int known = !strcmp(cmd, "train") || !strcmp(cmd, "eval") || !strcmp(cmd, "predict") ||
                !strcmp(cmd, "sample") || !strcmp(cmd, "bench") || !strcmp(cmd, "plan") ||
                !strcmp(cmd, "info") || !strcmp(cmd, "tokenize") || !strcmp(cmd, "convert") ||
                !strcmp(cmd, "models") || !strcmp(cmd, "explain");
    if (!known) {
        fprintf(stderr, "lockstep: error: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    /* --comm is read before anything else: every rank must join before one can fail */
    const char *backend = "auto";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--comm") && i + 1 < argc) backend = argv[i + 1];
        else if (!strncmp(argv[i], "--comm=", 7)) backend = argv[i] + 7;
    }
    if (strcmp(cmd, "train") && strcmp(cmd, "info") && strcmp(cmd, "bench") && strcmp(cmd, "plan") &&
        strcmp(cmd, "tokenize") && strcmp(cmd, "explain"))
        backend = "local"; /* eval, predict, sample: one process */
    lk_status s = lk_comm_open(&g_comm, backend, &argc, &argv);
    if (s != LK_OK) return fail(s);
    int rc;
    if (!strcmp(cmd, "train"))
        rc = cmd_train(argc - 1, argv + 1);
    else if (!strcmp(cmd, "eval"))
        rc = cmd_checkpoint(argc - 1, argv + 1, 0);
    else if (!strcmp(cmd, "predict"))
        rc = cmd_checkpoint(argc - 1, argv + 1, 1);
    else if (!strcmp(cmd, "sample"))
        rc = cmd_sample(argc - 1, argv + 1);
    else if (!strcmp(cmd, "bench"))
        rc = lk_cli_bench(argc - 1, argv + 1);
    else if (!strcmp(cmd, "plan"))
        rc = cmd_plan(argc - 1, argv + 1);
    else if (!strcmp(cmd, "tokenize"))
        rc = lk_cli_tokenize(argc - 1, argv + 1);
    else if (!strcmp(cmd, "convert"))
        rc = lk_cli_convert(argc - 1, argv + 1);
    else if (!strcmp(cmd, "models"))
        rc = lk_cli_models(argc - 1, argv + 1);
    else if (!strcmp(cmd, "explain"))
        rc = lk_cli_explain(argc - 1, argv + 1);
    else
        rc = cmd_info();
    lk_comm_close(g_comm);
    return rc;
}
