/* peak.h - what a device's matrix products can do, the denominator of MFU.
 *
 * `lockstep bench gemm` measures float32 (and, on a CPU that has them, bf16) products
 * of n x n x n at a few sizes; training takes its peak from --peak-tflops, else (on a
 * CPU, or a GPU the table does not know) from a short measurement of 2048^3 float32
 * products on the rank's own threads at start-up, else from a table of known GPUs'
 * dense peaks (float32 on the CUDA cores: lockstep's products are float32 without TF32). */
#ifndef LK_PEAK_H
#define LK_PEAK_H

#include <stdio.h>

#include "../comm/comm.h"
#include "../core/device.h"

/* FLOP/s of C = A B, n x n x n float32 on d: the best of repetitions after a warm-up,
 * for at least min_s seconds. */
lk_status lk_gemm_rate(lk_device *d, int n, double min_s, double *flops);

/* A known GPU: dense peaks in FLOP/s (bf16 on the tensor cores, fp32 on the CUDA
 * cores), or NULL when the device's name matches no row. */
typedef struct {
    const char *match; /* a substring of the device name */
    const char *name;
    double fp32, bf16;
} lk_gpu_peak;
const lk_gpu_peak *lk_gpu_peak_find(const char *device_name);

typedef struct {
    double flops;      /* this rank's peak, FLOP/s */
    char source[128];  /* where it comes from */
} lk_peak;

/* The peak MFU divides by, for products in `precision`: tflops > 0 (--peak-tflops), else
 * the table for a GPU it knows, else measured at 2048 (~0.3 s): float32 products, or bf16
 * ones (lk_backend_cpu_bf16_rate) on a CPU that has bf16 instructions (one without runs
 * oneDNN's emulation: its float32 rate is the peak then). */
lk_status lk_peak_find(lk_device *d, lk_dtype precision, double tflops, lk_peak *out);

/* `lockstep bench gemm`: every rank measures its device at each size (fp32, and bf16
 * where the CPU has it); rank 0 prints one row per rank and size (and the CSV). */
typedef struct {
    const int *sizes;
    int nsizes;
    double min_s;      /* seconds per measurement */
    const char *device;
    int threads;       /* 0: the rank's bound cores */
    int bind;
    const char *csv;   /* NULL: none */
} lk_bench_gemm_opts;
lk_status lk_bench_gemm(lk_comm *c, const lk_bench_gemm_opts *o, FILE *out);

#endif
