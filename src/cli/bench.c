/* bench.c - `lockstep bench comm` (the all-reduce over message sizes) and `lockstep
 * bench gemm` (the matrix products' FLOP/s), on every rank of the job. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../train/bench_comm.h"
#include "../train/peak.h"
#include "cli.h"

static const struct option bench_opts[] = {
    {"min-bytes", 1, 0, O_MIN_BYTES}, {"max-bytes", 1, 0, O_MAX_BYTES}, {"iters", 1, 0, O_ITERS},
    {"warmup", 1, 0, O_WARMUP_ITERS}, {"device", 1, 0, O_DEVICE},       {"shm", 1, 0, O_SHM},
    {"gpu-comm", 1, 0, O_GPU_COMM},   {"comm-timeout", 1, 0, O_COMM_TIMEOUT},
    {"csv", 1, 0, O_CSV},             {"comm", 1, 0, O_COMM},           {"help", 0, 0, O_HELP},
    {"barrier", 0, 0, O_BARRIER},     {0, 0, 0, 0},
};

static void comm_usage(FILE *f)
{
    fprintf(f, "usage: lockstep bench comm [flags]      (run it under mpirun / srun)\n\n"
               "  --min-bytes N --max-bytes N   message sizes, doubling (default 4 .. 256M; K, M, G)\n"
               "  --iters N             timed all-reduces per size (default: ~64 MiB of traffic, 5..1000)\n"
               "  --warmup N            untimed ones first (default 2)\n"
               "  --barrier             a barrier before each all-reduce, each timed alone (as OSU's\n"
               "                        osu_allreduce: the ranks start in step); default: back to back,\n"
               "                        timed together (as nccl-tests)\n"
               "  --device D            where the buffer lives: cpu (default), auto, cuda[:N]\n"
               "  --shm auto|off        same-host ranks through shared memory or MPI (default auto)\n"
               "  --gpu-comm auto|nccl|mpi   device buffers through NCCL or staged through MPI\n"
               "  --comm-timeout S      lockstep's own waits give up after S seconds (default 300)\n"
               "  --csv FILE            also write the rows as CSV\n");
}

static int bench_comm(int argc, char **argv)
{
    lk_bench_comm_opts o = lk_bench_comm_defaults();
    long v;
    int c;
    lk_status s = LK_OK;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":", bench_opts, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        switch (c) {
        case O_MIN_BYTES: s = lk_arg_bytes("--min-bytes", optarg, 4, (size_t)4 << 30, &o.min_bytes); break;
        case O_MAX_BYTES: s = lk_arg_bytes("--max-bytes", optarg, 4, (size_t)4 << 30, &o.max_bytes); break;
        case O_ITERS: s = lk_arg_int("--iters", optarg, 1, 1 << 20, &v), o.iters = (int)v; break;
        case O_WARMUP_ITERS: s = lk_arg_int("--warmup", optarg, 0, 1 << 20, &v), o.warmup = (int)v; break;
        case O_BARRIER: o.barrier = 1; break;
        case O_DEVICE: o.device = optarg; break;
        case O_SHM: s = CHOICE("--shm", o.shm, NAMES("auto", "off"), VALUES(1, 0)); break;
        case O_GPU_COMM:
            s = CHOICE("--gpu-comm", o.gpu_comm, NAMES("auto", "nccl", "mpi"),
                       VALUES(LK_GPU_COMM_AUTO, LK_GPU_COMM_NCCL, LK_GPU_COMM_MPI));
            break;
        case O_COMM_TIMEOUT: s = lk_arg_float("--comm-timeout", optarg, 1e-3, 1e7, &o.timeout_s); break;
        case O_CSV: o.csv = optarg; break;
        case O_COMM: break; /* consumed in main */
        case O_HELP: comm_usage(stdout); return 0;
        case ':': s = LK_ERR(LK_ERR_ARG, "%s needs a value", flag); break;
        default: s = LK_ERR(LK_ERR_ARG, "unknown flag '%s' for bench comm", flag);
        }
    }
    if (s == LK_OK && optind < argc) s = LK_ERR(LK_ERR_ARG, "unexpected argument '%s'", argv[optind]);
    int rows = 0;
    if (s == LK_OK) s = lk_bench_comm(lk_cli_comm(), &o, stdout, NULL, 0, &rows);
    return s == LK_OK ? 0 : lk_cli_fail(s);
}

static const struct option gemm_opts[] = {
    {"sizes", 1, 0, O_SIZES},     {"min-time", 1, 0, O_MIN_TIME}, {"device", 1, 0, O_DEVICE},
    {"threads", 1, 0, O_THREADS}, {"bind", 1, 0, O_BIND},         {"csv", 1, 0, O_CSV},
    {"comm", 1, 0, O_COMM},       {"help", 0, 0, O_HELP},         {0, 0, 0, 0},
};

static void gemm_usage(FILE *f)
{
    fprintf(f, "usage: lockstep bench gemm [flags]      (alone, or under mpirun / srun: every rank)\n\n"
               "  --sizes N,N,...       products of n x n x n (default 512,1024,2048,4096)\n"
               "  --min-time S          seconds per measurement, best repetition kept (default 0.5)\n"
               "  --device D            cpu (default), auto, cuda[:N]\n"
               "  --threads N           CPU threads (default: the rank's bound cores)\n"
               "  --bind cores|none     bind each rank to its share of the host's cores (default cores)\n"
               "  --csv FILE            also write the rows as CSV\n"
               "float32 always; bf16 (float32 accumulation, weights in oneDNN's layout) where the\n"
               "CPU has bf16 instructions; on a GPU the data sheet's bf16 peak where it is known.\n");
}

static lk_status parse_sizes(const char *text, int *sizes, int *n)
{
    *n = 0;
    const char *p = text;
    while (*p) {
        char item[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item || *n == 32)
            return LK_ERR(LK_ERR_ARG, "--sizes: expected up to 32 sizes like 512,1024, got '%s'", text);
        memcpy(item, p, len);
        item[len] = 0;
        long v;
        LK_CHECK(lk_arg_int("--sizes", item, 1, 32768, &v));
        sizes[(*n)++] = (int)v;
        p += len + (p[len] == ',');
    }
    return *n ? LK_OK : LK_ERR(LK_ERR_ARG, "--sizes: no size given");
}

static int bench_gemm(int argc, char **argv)
{
    int sizes[32] = {512, 1024, 2048, 4096};
    lk_bench_gemm_opts o = {sizes, 4, 0.5, "cpu", 0, 1, NULL};
    long v;
    int c;
    lk_status s = LK_OK;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":", gemm_opts, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        switch (c) {
        case O_SIZES: s = parse_sizes(optarg, sizes, &o.nsizes); break;
        case O_MIN_TIME: s = lk_arg_float("--min-time", optarg, 0.0, 600.0, &o.min_s); break;
        case O_DEVICE: o.device = optarg; break;
        case O_THREADS: s = lk_arg_int("--threads", optarg, 1, 4096, &v), o.threads = (int)v; break;
        case O_BIND: s = CHOICE("--bind", o.bind, NAMES("cores", "none"), VALUES(1, 0)); break;
        case O_CSV: o.csv = optarg; break;
        case O_COMM: break; /* consumed in main */
        case O_HELP: gemm_usage(stdout); return 0;
        case ':': s = LK_ERR(LK_ERR_ARG, "%s needs a value", flag); break;
        default: s = LK_ERR(LK_ERR_ARG, "unknown flag '%s' for bench gemm", flag);
        }
    }
    if (s == LK_OK && optind < argc) s = LK_ERR(LK_ERR_ARG, "unexpected argument '%s'", argv[optind]);
    if (s == LK_OK) s = lk_bench_gemm(lk_cli_comm(), &o, stdout);
    return s == LK_OK ? 0 : lk_cli_fail(s);
}

int lk_cli_bench(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        FILE *f = help ? stdout : stderr;
        fprintf(f, "usage: lockstep bench comm|gemm [flags]   (lockstep bench comm --help, ... gemm --help)\n");
        return help ? 0 : lk_cli_fail(LK_ERR(LK_ERR_ARG, "bench: which one? (comm, gemm)"));
    }
    if (!strcmp(argv[1], "comm")) return bench_comm(argc - 1, argv + 1);
    if (!strcmp(argv[1], "gemm")) return bench_gemm(argc - 1, argv + 1);
    return lk_cli_fail(LK_ERR(LK_ERR_ARG, "bench: unknown benchmark '%s' (known: comm, gemm)", argv[1]));
}
