/* train_cmd.c - `lockstep train`: its flags, their help, and the run. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lockstep.h"
#include "../comm/bucket.h" /* lk_progress_mode */
#include "../train/guard.h" /* lk_nan_policy */
#include "../train/fedavg.h"  /* the --dp-* and federated flags' parsers */
#include "args.h"
#include "cli.h"

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
            "  --dp-clip C           DP-SGD: clip each sample's gradient to norm C, add Gaussian\n"
            "                        noise of std SIGMA x C to the global sum (the same draws on\n"
            "                        every rank), divide by the expected global batch; epsilon\n"
            "                        at delta in every evaluation line (RDP accountant)\n"
            "  --dp-noise SIGMA      DP-SGD: the noise multiplier, or\n"
            "  --dp-epsilon E        DP-SGD: the budget: SIGMA solved for the planned steps\n"
            "  --dp-delta D          DP-SGD: delta (default 1e-5)\n"
            "  --dp-sampling S       DP-SGD: poisson (each sample in a step's batch with\n"
            "                        probability batch x accum x ranks / N: what the accountant\n"
            "                        assumes; default) or shuffle (epochs; epsilon heuristic)\n"
            "  --dp-level sample|client  DP-SGD per sample (default), or with --fedavg per client:\n"
            "                        each client's round update clipped to C, noise on their sum\n"
            "  --partition SPEC      deal the training set to the ranks as federated clients: iid,\n"
            "                        classes:K (each client K classes, every class on some\n"
            "                        client) or dirichlet:A; alone: data-parallel over the shards\n"
            "  --fedavg              federated averaging: each round every sampled client runs its\n"
            "                        own optimizer on its own shard (--local-steps K or\n"
            "                        --local-epochs E), then the parameters are averaged weighted\n"
            "                        by shard size (--partition default iid; --epochs: rounds)\n"
            "  --client-fraction F   --fedavg: clients sampled per round (default 1: all)\n"
            "  --local-epochs E      --fedavg: a round is E passes over the mean shard\n"
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
    {"dp-clip", 1, 0, O_DP_CLIP},     {"dp-noise", 1, 0, O_DP_NOISE},
    {"dp-epsilon", 1, 0, O_DP_EPSILON}, {"dp-delta", 1, 0, O_DP_DELTA},
    {"dp-sampling", 1, 0, O_DP_SAMPLING}, {"dp-level", 1, 0, O_DP_LEVEL},
    {"fedavg", 0, 0, O_FEDAVG},       {"partition", 1, 0, O_PARTITION},
    {"client-fraction", 1, 0, O_CLIENT_FRACTION}, {"local-epochs", 1, 0, O_LOCAL_EPOCHS},
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
int lk_cli_arch_flag(int c, lk_arch *a, lk_status *s)
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

int lk_cli_train(int argc, char **argv)
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
        if (lk_cli_arch_flag(c, &o.arch, &s)) continue;
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
        case O_DP_CLIP: s = lk_arg_float("--dp-clip", optarg, 1e-12, 1e12, &o.dp.clip); break;
        case O_DP_NOISE: s = lk_arg_float("--dp-noise", optarg, 1e-6, 1e6, &o.dp.noise); break;
        case O_DP_EPSILON: s = lk_arg_float("--dp-epsilon", optarg, 1e-6, 1e6, &o.dp.epsilon); break;
        case O_DP_DELTA: s = lk_arg_float("--dp-delta", optarg, 1e-300, 0.999999, &o.dp.delta); break;
        case O_DP_SAMPLING: s = lk_dp_sampling_parse(optarg, &o.dp.sampling); break;
        case O_DP_LEVEL: s = lk_dp_level_parse(optarg, &o.fed.dp_client); break;
        case O_FEDAVG: o.fed.fedavg = 1; break;
        case O_PARTITION: {
            lk_partition_spec p;
            s = lk_partition_parse(optarg, &p);
            o.fed.partition = optarg;
            break;
        }
        case O_CLIENT_FRACTION: s = lk_arg_float("--client-fraction", optarg, 1e-9, 1.0, &o.fed.fraction); break;
        case O_LOCAL_EPOCHS: s = lk_arg_float("--local-epochs", optarg, 1e-6, 1e6, &o.fed.local_epochs); break;
        case O_HELP: train_usage(stdout); return 0;
        case ':': s = LK_ERR(LK_ERR_ARG, "%s needs a value", flag); break;
        default: s = LK_ERR(LK_ERR_ARG, "unknown flag '%s' for train (see lockstep train --help)", flag);
        }
    }
    if (s == LK_OK && optind < argc)
        s = LK_ERR(LK_ERR_ARG, "unexpected argument '%s' (flags start with --)", argv[optind]);
    if (s != LK_OK) return lk_cli_fail(s);

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
        return lk_cli_fail(LK_ERR(LK_ERR_ARG, "--schedule step needs --step-size N"));

    o.comm = lk_cli_comm();
    lk_train_result r;
    s = lk_train(&o, &r);
    return s == LK_OK ? 0 : lk_cli_fail(s);
}

