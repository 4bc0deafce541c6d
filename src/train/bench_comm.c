/* bench_comm.c - the all-reduce sweep: check, warm up, time, report the slowest rank. */
#include "bench_comm.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "../core/ops.h"

lk_bench_comm_opts lk_bench_comm_defaults(void)
{
    lk_bench_comm_opts o;
    memset(&o, 0, sizeof o);
    o.min_bytes = 4;
    o.max_bytes = (size_t)256 << 20;
    o.warmup = 2;
    o.device = "cpu";
    o.shm = 1;
    o.timeout_s = LK_COMM_TIMEOUT_S;
    return o;
}

/* each rank holds rank + 1 + (i mod 7): every sum is an integer below 2^24, exact in float */
static lk_status check(lk_comm *c, lk_device *dev, float *buf, float *host, size_t n, long *wrong)
{
    for (size_t i = 0; i < n; i++) host[i] = (float)(c->rank + 1 + (int)(i % 7));
    lk_copy_to_device(dev, buf, host, n * sizeof *host);
    LK_CHECK(lk_comm_allreduce(c, buf, n, LK_REDUCE_SUM));
    lk_copy_to_host(dev, host, buf, n * sizeof *host);
    LK_CHECK(lk_device_status(dev));
    const double w = c->world;
    *wrong = 0;
    for (size_t i = 0; i < n; i++) {
        double want = w * (w + 1) / 2 + w * (double)(i % 7);
        *wrong += host[i] != (float)want;
    }
    double all = (double)*wrong;
    LK_CHECK(lk_comm_allreduce_f64(c, &all, 1, LK_REDUCE_SUM));
    *wrong = (long)all;
    return LK_OK;
}

static int auto_iters(size_t bytes)
{
    double k = ceil((double)(64 << 20) / (double)bytes);
    return (int)LK_MAX(5.0, LK_MIN(1000.0, k));
}

static lk_status sweep(lk_comm *c, const lk_bench_comm_opts *o, lk_device *dev, float *buf, float *host,
                       FILE *out, FILE *csv, lk_bench_comm_row *rows, int max_rows, int *nrows)
{
    const double factor = c->world > 1 ? 2.0 * (c->world - 1) / c->world : 0.0;
    for (size_t bytes = o->min_bytes; bytes <= o->max_bytes; bytes *= 2) {
        const size_t n = bytes / sizeof(float);
        long wrong = 0;
        LK_CHECK(check(c, dev, buf, host, n, &wrong));
        lk_zero(dev, buf, bytes); /* sums of zeros stay finite over any number of iterations */
        const int iters = o->iters > 0 ? o->iters : auto_iters(bytes);
        for (int i = 0; i < o->warmup; i++) LK_CHECK(lk_comm_allreduce(c, buf, n, LK_REDUCE_SUM));
        lk_sync(dev);
        LK_CHECK(lk_comm_barrier(c));
        double t = 0.0;
        if (o->barrier) { /* each one alone, the ranks in step, as a training step's first bucket */
            for (int i = 0; i < iters; i++) {
                LK_CHECK(lk_comm_barrier(c));
                double t0 = lk_now();
                LK_CHECK(lk_comm_allreduce(c, buf, n, LK_REDUCE_SUM));
                lk_sync(dev);
                t += lk_now() - t0;
            }
        } else { /* back to back, as nccl-tests */
            double t0 = lk_now();
            for (int i = 0; i < iters; i++) LK_CHECK(lk_comm_allreduce(c, buf, n, LK_REDUCE_SUM));
            lk_sync(dev);
            t = lk_now() - t0;
        }
        LK_CHECK(lk_device_status(dev));
        t /= iters; /* the slowest rank's */
        LK_CHECK(lk_comm_allreduce_f64(c, &t, 1, LK_REDUCE_MAX));
        lk_bench_comm_row r = {bytes, t * 1e6, (double)bytes / t / 1e9, 0.0, wrong};
        r.busbw = r.algbw * factor;
        if (rows && *nrows < max_rows) rows[*nrows] = r;
        ++*nrows;
        if (c->rank == 0) {
            fprintf(out, "%12zu %11zu %7d %11.2f %12.3f %12.3f %7ld\n", bytes, n, iters, r.time_us, r.algbw,
                    r.busbw, wrong);
            fflush(out);
            if (csv) fprintf(csv, "%zu,%zu,%d,%.3f,%.6f,%.6f,%ld,%d\n", bytes, n, iters, r.time_us, r.algbw,
                             r.busbw, wrong, c->world);
        }
        if (bytes > o->max_bytes / 2) break; /* no overflow of the doubling */
    }
    return LK_OK;
}

lk_status lk_bench_comm(lk_comm *c, const lk_bench_comm_opts *o, FILE *out, lk_bench_comm_row *rows,
                        int max_rows, int *nrows)
{
    *nrows = 0;
    if (o->min_bytes < sizeof(float) || o->min_bytes % sizeof(float) || o->max_bytes < o->min_bytes)
        return LK_ERR(LK_ERR_ARG, "bench comm: sizes must be whole floats, 4 <= --min-bytes <= --max-bytes "
                                  "(got %zu and %zu)", o->min_bytes, o->max_bytes);
    char spec[32];
    LK_CHECK(lk_device_resolve(o->device, c->local_rank, spec, sizeof spec));
    lk_device *dev = NULL;
    LK_CHECK(lk_device_open(&dev, spec, 1));
    c->timeout_s = o->timeout_s;
    float *buf = lk_dev_alloc(dev, o->max_bytes), *host = lk_malloc(o->max_bytes);
    FILE *csv = NULL;
    lk_status st = buf && host ? LK_OK : LK_ERR(LK_ERR_NOMEM, "bench comm: cannot allocate %zu bytes", o->max_bytes);
    if (st == LK_OK && !dev->host_addressable) st = lk_comm_use_device(c, dev, o->max_bytes);
    if (st == LK_OK) st = lk_comm_use_nccl(c, (lk_gpu_comm)o->gpu_comm);
    if (st == LK_OK) st = lk_comm_use_shm(c, o->shm, 0, NULL);
    if (st == LK_OK && o->csv && c->rank == 0 && !(csv = fopen(o->csv, "w")))
        st = LK_ERR(LK_ERR_IO, "--csv %s: %s", o->csv, strerror(errno));
    if (st == LK_OK && c->rank == 0) {
        fprintf(out, "# lockstep bench comm: all-reduce (in place, float32, sum), %d rank%s (%d on this host), "
                     "buffers on %s, through %s\n",
                c->world, c->world == 1 ? "" : "s", c->local_world, dev->name,
                c->nccl ? lk_nccl_version() : c->shm ? c->shm_note : c->library[0] ? c->library : c->vt->name);
        fprintf(out, "# %s\n", o->barrier ? "each all-reduce timed alone, after a barrier (--barrier)"
                                          : "all-reduces back to back, timed together");
        fprintf(out, "# time: the slowest rank's mean; algbw = size / time; busbw = algbw x 2(n-1)/n (GB/s = 1e9 B/s)\n");
        fprintf(out, "#%11s %11s %7s %11s %12s %12s %7s\n", "size(B)", "count", "iters", "time(us)",
                "algbw(GB/s)", "busbw(GB/s)", "#wrong");
        if (csv) fprintf(csv, "bytes,count,iters,time_us,algbw_gbs,busbw_gbs,wrong,ranks\n");
    }
    if (st == LK_OK) st = sweep(c, o, dev, buf, host, out, csv, rows, max_rows, nrows);
    if (csv && fclose(csv) != 0 && st == LK_OK) st = LK_ERR(LK_ERR_IO, "--csv %s: %s", o->csv, strerror(errno));
    lk_comm_use_device(c, NULL, 0);
    lk_dev_free(dev, buf);
    lk_free(host);
    lk_device_close(dev);
    return st;
}
