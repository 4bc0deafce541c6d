/* peak.c - measured and known matrix-product FLOP/s (see peak.h). */
#include "peak.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "../comm/topo.h"
#include "../core/ops.h"

lk_status lk_gemm_rate(lk_device *d, int n, double min_s, double *flops)
{
    *flops = 0.0;
    if (n < 1) return LK_ERR(LK_ERR_ARG, "gemm rate: size %d must be positive", n);
    const size_t bytes = (size_t)n * n * sizeof(float);
    float *a = lk_dev_alloc(d, bytes), *b = lk_dev_alloc(d, bytes), *c = lk_dev_alloc(d, bytes);
    lk_status s = a && b && c ? LK_OK
                              : LK_ERR(LK_ERR_NOMEM, "gemm rate: cannot allocate 3 matrices of %d x %d on %s",
                                       n, n, d->name);
    if (s == LK_OK) { /* any finite values: the time does not depend on them */
        lk_zero(d, a, bytes);
        lk_zero(d, b, bytes);
        s = lk_affine(d, a, 0.0f, 0.5f, (size_t)n * n);
    }
    if (s == LK_OK) s = lk_affine(d, b, 0.0f, 0.25f, (size_t)n * n);
    if (s == LK_OK) s = lk_gemm(d, 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    lk_sync(d);
    double best = INFINITY, spent = 0.0;
    for (int rep = 0; s == LK_OK && (rep < 3 || spent < min_s) && rep < 1000; rep++) {
        double t0 = lk_now();
        s = lk_gemm(d, 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        lk_sync(d);
        double dt = lk_now() - t0;
        spent += dt;
        best = LK_MIN(best, dt);
    }
    if (s == LK_OK) s = lk_device_status(d);
    lk_dev_free(d, a);
    lk_dev_free(d, b);
    lk_dev_free(d, c);
    if (s == LK_OK) *flops = 2.0 * n * (double)n * n / best;
    return s;
}

/* Dense peaks from the vendors' data sheets (boost clocks; SXM unless named). Longer
 * matches first: "A100" must not be taken for "A10". */
static const lk_gpu_peak gpu_peaks[] = {
    {"GH200", "NVIDIA GH200", 67e12, 989e12},
    {"H200", "NVIDIA H200", 67e12, 989e12},
    {"H100 PCIe", "NVIDIA H100 PCIe", 51e12, 756e12},
    {"H100 NVL", "NVIDIA H100 NVL", 60e12, 835e12},
    {"H100", "NVIDIA H100 SXM", 67e12, 989e12},
    {"H800", "NVIDIA H800 SXM", 67e12, 989e12},
    {"B200", "NVIDIA B200", 80e12, 2250e12},
    {"A100-PCIE", "NVIDIA A100 PCIe", 19.5e12, 312e12},
    {"A100", "NVIDIA A100 SXM", 19.5e12, 312e12},
    {"A800", "NVIDIA A800", 19.5e12, 312e12},
    {"L40S", "NVIDIA L40S", 91.6e12, 362e12},
    {"L40", "NVIDIA L40", 90.5e12, 181e12},
    {"L4", "NVIDIA L4", 30.3e12, 121e12},
    {"A10G", "NVIDIA A10G", 31.2e12, 70e12},
    {"A10", "NVIDIA A10", 31.2e12, 125e12},
    {"RTX 4090", "NVIDIA GeForce RTX 4090", 82.6e12, 165e12},
    {"RTX 3090", "NVIDIA GeForce RTX 3090", 35.6e12, 71e12},
    {"V100", "NVIDIA V100", 15.7e12, 0.0}, /* no bf16 (fp16: 125e12) */
    {"T4", "NVIDIA T4", 8.1e12, 0.0},
};

const lk_gpu_peak *lk_gpu_peak_find(const char *device_name)
{
    for (size_t i = 0; i < sizeof gpu_peaks / sizeof *gpu_peaks; i++)
        if (strstr(device_name, gpu_peaks[i].match)) return &gpu_peaks[i];
    return NULL;
}

lk_status lk_peak_find(lk_device *d, lk_dtype precision, double tflops, lk_peak *out)
{
    memset(out, 0, sizeof *out);
    if (tflops > 0) {
        out->flops = tflops * 1e12;
        snprintf(out->source, sizeof out->source, "--peak-tflops %g", tflops);
        return LK_OK;
    }
    const lk_gpu_peak *g = d->kind == LK_DEV_CUDA ? lk_gpu_peak_find(d->name) : NULL;
    const int bf16 = precision == LK_BF16;
    if (g && (!bf16 || g->bf16 > 0)) {
        out->flops = bf16 ? g->bf16 : g->fp32;
        snprintf(out->source, sizeof out->source, "%s: %.1f TFLOP/s %s (data sheet)", g->name,
                 out->flops * 1e-12, bf16 ? "bf16" : "float32");
        return LK_OK;
    }
    const int n = 2048;
    if (bf16 && d->kind == LK_DEV_CPU) {
        LK_CHECK(lk_backend_cpu_bf16_rate(d, n, 0.25, &out->flops));
        if (out->flops > 0) {
            snprintf(out->source, sizeof out->source, "measured: %d^3 bf16 products on %s, %d thread%s", n,
                     d->name, d->threads, d->threads == 1 ? "" : "s");
            return LK_OK;
        }
    }
    LK_CHECK(lk_gemm_rate(d, n, 0.25, &out->flops));
    snprintf(out->source, sizeof out->source, "measured: %d^3 float32 products on %s, %d thread%s", n,
             d->name, d->threads, d->threads == 1 ? "" : "s");
    return LK_OK;
}

/* one measurement of one rank */
typedef struct {
    int n;
    double fp32, bf16; /* FLOP/s; bf16 0: none */
    char bf16_note[48];
} gemm_row;

static lk_status measure(lk_device *d, const lk_bench_gemm_opts *o, gemm_row *rows)
{
    for (int i = 0; i < o->nsizes; i++) {
        gemm_row *r = &rows[i];
        memset(r, 0, sizeof *r);
        r->n = o->sizes[i];
        LK_CHECK(lk_gemm_rate(d, r->n, o->min_s, &r->fp32));
        if (d->kind == LK_DEV_CPU) {
            LK_CHECK(lk_backend_cpu_bf16_rate(d, r->n, o->min_s, &r->bf16));
            snprintf(r->bf16_note, sizeof r->bf16_note, "%s", r->bf16 > 0 ? "measured" : "no bf16 products");
        } else {
            const lk_gpu_peak *g = lk_gpu_peak_find(d->name);
            r->bf16 = g ? g->bf16 : 0.0;
            snprintf(r->bf16_note, sizeof r->bf16_note, "%s", g ? "data sheet peak" : "unknown GPU");
        }
    }
    return LK_OK;
}

lk_status lk_bench_gemm(lk_comm *c, const lk_bench_gemm_opts *o, FILE *out)
{
    if (o->nsizes < 1 || o->nsizes > 32) return LK_ERR(LK_ERR_ARG, "bench gemm: 1 to 32 sizes");
    for (int i = 0; i < o->nsizes; i++)
        if (o->sizes[i] < 1 || o->sizes[i] > 32768)
            return LK_ERR(LK_ERR_ARG, "bench gemm: size %d outside 1..32768", o->sizes[i]);
    char dev[32];
    LK_CHECK(lk_device_resolve(o->device, c->local_rank, dev, sizeof dev));
    lk_topo_binding b;
    const int gpus = strncmp(dev, "cuda", 4) ? 0 : lk_cuda_device_count();
    LK_CHECK(lk_topo_bind(c, o->bind, gpus, &b));
    lk_device *d;
    LK_CHECK(lk_device_open(&d, dev, o->threads > 0 ? o->threads : b.ncores));
    const size_t per_rank = (size_t)o->nsizes * sizeof(gemm_row);
    gemm_row *mine = lk_calloc((size_t)o->nsizes, sizeof *mine);
    gemm_row *all = lk_calloc((size_t)o->nsizes * (size_t)c->world, sizeof *all);
    if (!mine || !all) {
        lk_free(mine);
        lk_free(all);
        lk_device_close(d);
        return LK_ERR(LK_ERR_NOMEM, "bench gemm: out of memory");
    }
    lk_status s = measure(d, o, mine);
    char name[64];
    snprintf(name, sizeof name, "%s", d->name);
    const int threads = d->threads;
    lk_device_close(d);
    /* every rank takes part in the gather, also one whose measurement failed */
    lk_status g = lk_comm_allgather_bytes(c, mine, all, per_rank);
    if (s == LK_OK) s = g;
    FILE *csv = NULL;
    if (s == LK_OK && c->rank == 0 && o->csv && !(csv = fopen(o->csv, "w")))
        s = LK_ERR(LK_ERR_IO, "--csv %s: %s", o->csv, strerror(errno));
    if (s == LK_OK && c->rank == 0) {
        fprintf(out, "# float32 (and bf16) products C = A B of n x n x n: best of repetitions over "
                     "%.2f s each\n", o->min_s);
        fprintf(out, "# rank 0: %s, %d thread%s\n", name, threads, threads == 1 ? "" : "s");
        fprintf(out, "# %4s %6s %12s %12s  %s\n", "rank", "n", "fp32 GFLOP/s", "bf16 GFLOP/s", "bf16");
        if (csv) fprintf(csv, "rank,n,fp32_gflops,bf16_gflops\n");
        for (int r = 0; r < c->world; r++)
            for (int i = 0; i < o->nsizes; i++) {
                const gemm_row *x = &all[(size_t)r * o->nsizes + i];
                fprintf(out, "  %4d %6d %12.1f %12.1f  %s\n", r, x->n, x->fp32 * 1e-9, x->bf16 * 1e-9,
                        x->bf16_note);
                if (csv) fprintf(csv, "%d,%d,%.3f,%.3f\n", r, x->n, x->fp32 * 1e-9, x->bf16 * 1e-9);
            }
    }
    if (csv && fclose(csv) != 0 && s == LK_OK) s = LK_ERR(LK_ERR_IO, "--csv %s: %s", o->csv, strerror(errno));
    lk_free(mine);
    lk_free(all);
    return s;
}
