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
        if (lk_cli_arch_flag(c, &o.train.arch, &s)) continue;
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
        rc = lk_cli_train(argc - 1, argv + 1);
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
